"""Named model shapes, from a quick test model to the largest that is useful here.

The sizes are chosen for CPU coding speed as much as rate: ``stride`` 4 puts
the latents at 1/4 of the image resolution, which makes a network pass about
four times cheaper per pixel than ``stride`` 2. ``photo-polyphase`` is ``photo`` with a pixel
likelihood that also sees decoded pixels (its context networks run at half resolution);
``photo-multiscale`` splits twice, so that only 1/16 of the pixels see no decoded neighbour;
``photo-topdown`` is the same likelihood under a top-down ResNet VAE instead of a Markov chain.
``flowpp`` is Flow++ at a width this CPU can train (it codes sets of images as flow chains, not single files).
"""
import dataclasses

from bbcodec.models.config import VAEConfig
from bbcodec.models.flowpp import FlowConfig
from bbcodec.models.polyphase_vae import PolyphaseConfig
from bbcodec.models.topdown_vae import TopDownConfig

PHOTO = dict(hidden_channels=64, latent_channels=12, latent_layers=4, blocks_per_net=2, stride=4,
             pixel_distribution="laplace", channel_coupling=True)

PRESETS = {
    "tiny": VAEConfig(hidden_channels=16, latent_channels=4, latent_layers=2, blocks_per_net=1),
    "small": VAEConfig(hidden_channels=32, latent_channels=8, latent_layers=4, blocks_per_net=1),
    "cifar": VAEConfig(hidden_channels=64, latent_channels=8, latent_layers=4, blocks_per_net=2),
    "photo": VAEConfig(**PHOTO),
    # the photo model whose pixels are decoded in four polyphase steps (bbcodec/models/polyphase_vae.py)
    "photo-polyphase": PolyphaseConfig(**PHOTO, feature_channels=16, context_channels=32, context_blocks=1),
    "photo-multiscale": PolyphaseConfig(**PHOTO, feature_channels=16, context_channels=32, context_blocks=1, levels=2),
    # the top-down ResNet VAE (bbcodec/models/topdown_vae.py) with the two-level likelihood and its linear path
    "photo-topdown": TopDownConfig(**PHOTO, feature_channels=16, context_channels=32, context_blocks=1, levels=2,
                                   linear_prediction=True),
    # Flow++ (bbcodec/models/flowpp.py) at a width this CPU trains: flow chains only, no single files
    "flowpp": FlowConfig(hidden_channels=32, blocks_per_net=2, mixture_components=4, attention_heads=1),
    "large": VAEConfig(hidden_channels=128, latent_channels=16, latent_layers=6, blocks_per_net=3, stride=2),
}


def preset(name: str, **changes) -> VAEConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (one of {', '.join(PRESETS)})")
    base = PRESETS[name]
    unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(base)})
    if unknown:
        raise ValueError(f"preset {name!r} has no {', '.join(unknown)} (its model family has no such setting)")
    return base.replace(**changes)


def parse_settings(base: VAEConfig, settings: list[str]) -> dict:
    """``FIELD=VALUE`` texts as changes to ``base``'s fields, each value read as the field's type
    (``true``/``false`` for a flag). Raises ValueError naming the fields that exist."""
    fields = dataclasses.asdict(base)
    changes = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"{setting!r}: expected FIELD=VALUE, FIELD one of {', '.join(sorted(fields))}")
        kind = type(fields[key])
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{key} is true or false, not {text!r}")
            changes[key] = text.lower() == "true"
        else:
            try:
                changes[key] = kind(text)
            except ValueError:
                raise ValueError(f"{key} is {'an integer' if kind is int else 'a ' + kind.__name__}, "
                                 f"not {text!r}") from None
    return changes


def checked(config: VAEConfig) -> VAEConfig:
    """``config`` if a model file holding it would load (every field in its range), else BBCodecError."""
    return type(config).from_file(dataclasses.asdict(config))
