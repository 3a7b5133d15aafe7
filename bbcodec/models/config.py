"""The configuration of a hierarchical VAE: everything needed to rebuild it, and its checks for model files."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from bbcodec.distributions import LatentGrid
from bbcodec.errors import BBCodecError, shorten

FILE_LIMITS = {"image_channels": (1, 4), "hidden_channels": (1, 1024), "latent_channels": (1, 256),
               "latent_layers": (1, 16), "stride": (1, 8), "blocks_per_net": (0, 16), "head_kernel_size": (1, 7),
               "grid_bits": (0, 12)}
"""Allowed ranges of the integer config fields of a model file (generous: the presets are far inside)."""
MAX_GRID_POINTS = 1 << 16
FILE_DEFAULTS = {
    "image_channels": 3, "hidden_channels": 64, "latent_channels": 8, "latent_layers": 4, "stride": 2,
    "blocks_per_net": 2, "head_kernel_size": 1, "binary_weights": True, "binary_activations": False,
    "pixel_distribution": "logistic", "channel_coupling": False, "residual_coupling": False, "min_std": 0.02,
    "grid_bits": 5, "grid_bound": 4.0,
}
"""What a config field missing from a model file means, fixed for this format (VAEConfig's defaults may change)."""


def check_integers(fields: dict, limits: dict) -> None:
    """A BBCodecError unless each field named in ``limits`` is an integer in its range (a missing one is not)."""
    for name, (low, high) in limits.items():
        value = fields.get(name)
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            raise BBCodecError(f"model file: config {name} = {shorten(value)}, expected an integer in {low}..{high}")


def check_flags(fields: dict, names) -> None:
    """A BBCodecError unless each field in ``names`` is true or false."""
    for name in names:
        if not isinstance(fields.get(name), bool):
            raise BBCodecError(f"model file: config {name} = {shorten(fields.get(name))}, expected true or false")


class ConfigFields:
    """What every family's config (a frozen dataclass) offers: JSON in and out, and a changed copy."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        fields = json.loads(text)
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**fields)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class VAEConfig(ConfigFields):
    """Shape of a :class:`~bbcodec.models.markov_vae.MarkovVAE` and its coding grid.

    ``binary_weights`` binarizes the residual blocks (BWN); the pixel-facing
    layers and the latent heads stay float. ``binary_activations`` also
    replaces ELU by sign in the residual blocks.
    """

    image_channels: int = 3
    hidden_channels: int = 64
    latent_channels: int = 8
    latent_layers: int = 4
    stride: int = 2
    blocks_per_net: int = 2
    head_kernel_size: int = 1
    binary_weights: bool = True
    binary_activations: bool = False
    pixel_distribution: str = "logistic"  # or "laplace" (coded natively by constriction: fast)
    channel_coupling: bool = False         # laplace, RGB: G and B means depend on the earlier channels
    residual_coupling: bool = False        # ... on their residuals (value - mean), not their values
    min_std: float = 0.02
    grid_bits: int = 5
    grid_bound: float = 8.0

    def __post_init__(self):
        from bbcodec.distributions import PIXEL_DISTRIBUTIONS

        if self.pixel_distribution not in PIXEL_DISTRIBUTIONS:
            raise ValueError(f"unknown pixel distribution {self.pixel_distribution!r}")
        if self.stride < 1 or self.latent_layers < 1:
            raise ValueError("stride and latent_layers must be at least 1")
        if self.channel_coupling and (self.pixel_distribution != "laplace" or self.image_channels != 3):
            raise ValueError("channel_coupling needs the laplace pixel distribution and 3 image channels")
        if self.residual_coupling and not self.channel_coupling:
            raise ValueError("residual_coupling needs channel_coupling")

    @property
    def grid(self) -> LatentGrid:
        return LatentGrid(bits=self.grid_bits, bound=self.grid_bound)

    @classmethod
    def from_file(cls, fields: dict) -> "VAEConfig":
        """The config from a model file's (untrusted) fields, each checked for type and range before use."""
        fields = {**FILE_DEFAULTS, **fields}
        check_integers(fields, FILE_LIMITS)
        for name in ("min_std", "grid_bound"):
            value = fields[name]
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and 0 < value <= 64):
                raise BBCodecError(f"model file: config {name} = {shorten(value)}, expected a number in (0, 64]")
        check_flags(fields, ("binary_weights", "binary_activations", "channel_coupling", "residual_coupling"))
        if not isinstance(fields["pixel_distribution"], str):
            raise BBCodecError("model file: config pixel_distribution is not a name")
        try:
            config = cls.from_json(json.dumps(fields))
        except (ValueError, TypeError) as error:
            raise BBCodecError(f"model file: bad config ({shorten(error, 120)})") from None
        if 2 * config.grid_bound * 2 ** config.grid_bits + 1 > MAX_GRID_POINTS:
            raise BBCodecError(f"model file: a latent grid of more than {MAX_GRID_POINTS} points")
        return config
