"""Model families: the interface the coders rely on, and the registry that model files name.

A *family* is one kind of codec model, for example the Markov-chain VAE that
Bit-Swap needs (:mod:`bbcodec.models.markov_vae`). Each family is a subclass
of :class:`CodecModel` registered under a name with :func:`register`. A model
file records its family's name (files from before the field are
``markov-vae``), and export, loading, training and the zoo build every model
through :func:`family` and :func:`family_of`, never naming a concrete class,
so a new family is one new module that registers itself.

What the coders need of a model is :class:`CodingModel`: a hierarchy of
``depth`` latent layers, coded in the order of BB-ANS (Townsend, Bird &
Barber, ICLR 2019) or Bit-Swap (Kingma, Abbeel & Ho, ICML 2019), with

* ``posterior(layer, below)``: q(z_{layer+1} | below), ``below`` being the
  uint8 image for layer 0 and the latent z_layer above it;
* ``conditional(layer, z)``: p(below | z_{layer+1}), the pixel likelihood for
  layer 0, a latent distribution otherwise;
* ``top_prior(like)``: p(z_depth), shaped like ``like``;
* ``latent_shape(image_shape)``: (channels, height, width) of the latents;
* ``grey_channel``: the channel whose likelihood codes a lone plane;
* ``device``.

Bit-Swap needs the latents to form a Markov chain (each posterior sees only
the layer below, each conditional only the layer above); BB-ANS needs only
ordered posterior, prior and likelihood steps. A family whose posteriors run
top-down (:mod:`bbcodec.models.topdown_vae`) offers instead the six calls
its coder (``topdown`` in :mod:`bbcodec.coding.bitsback`) makes, and names
the coders it can use in ``coders``. Every distribution offers
``push(ans, value)`` and ``pop(ans)`` (:mod:`bbcodec.distributions`).

Beside coding, a family may draw images from its generative model
(:meth:`CodecModel.sample`, used by :mod:`bbcodec.sampling`) by implementing
``draw``.
"""
from __future__ import annotations

from typing import ClassVar, Protocol

import torch
from torch import nn

from bbcodec.errors import BBCodecError
from bbcodec.exact.backend import exact_model

LEGACY_FAMILY = "markov-vae"
"""The family of model files that do not name one (every file before the field existed)."""


class CodingModel(Protocol):
    """The model as the coders see it (see module docstring); float or exact arithmetic alike."""

    depth: int
    grey_channel: int
    device: torch.device

    def posterior(self, layer: int, below: torch.Tensor): ...

    def conditional(self, layer: int, z: torch.Tensor): ...

    def top_prior(self, like: torch.Tensor): ...

    def latent_shape(self, image_shape) -> tuple[int, int, int]: ...


class CodecModel(nn.Module):
    """The base class of every family: a trainable network that is also a :class:`CodingModel`.

    A family sets ``family`` (its registered name) and ``config_type`` (a
    frozen dataclass with ``to_json``, ``from_file`` and ``replace``), and
    implements the coders' interface with an arithmetic argument
    (``posterior(layer, below, ops)``, ``conditional(layer, z, ops)``) and
    :meth:`forward` (the training loss); :meth:`exact` then gives the same
    model in exact integer arithmetic.
    """

    family: ClassVar[str]
    config_type: ClassVar[type]
    coders: ClassVar[tuple[str, ...]] = ("bitswap", "bbans")
    """The coders (:data:`bbcodec.coding.bitsback.CODERS`) that can code this family, the default first: a
    Markov chain of latents takes Bit-Swap or BB-ANS."""
    without_coders: ClassVar[str] = "codes no files"
    """What a family without ``coders`` does instead, for the one-line refusal to code a file with it."""
    calibration_presets: tuple[tuple[int, ...], ...] = ()
    """The calibrations of the pixel likelihood shipped for these weights, which a file may name by number
    (:func:`bbcodec.coding.calibration.preset`); set by the zoo when it loads a model whose hash has some
    (:func:`bbcodec.zoo.calibration_presets`)."""
    default_tile: ClassVar[int] = 64
    """The tile side (pixels) its images are coded in unless a user says otherwise
    (:class:`~bbcodec.coding.image.CoderSettings`, ``tile="auto"``)."""

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, self.config_type):
            raise TypeError(f"{type(self).__name__} needs a {self.config_type.__name__}, not {type(config).__name__}")
        self.config = config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor, free_bits: float = 0.0) -> dict:
        """The training loss of a uint8 batch: a dict with ``loss`` and ``nelbo`` in bits per sub-pixel (and, if
        the family has latent layers to report, ``kl``: one entry per layer)."""
        raise NotImplementedError

    def sample(self, count: int, height: int, width: int, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """``count`` images (uint8, (count, image_channels, height, width)) drawn from the generative model,
        in float arithmetic and eval mode, the noise from ``generator`` (torch's global one if None).

        ``height`` and ``width`` must be multiples of ``config.stride`` (ValueError); a family draws through
        :meth:`draw`, which this class leaves to the families (NotImplementedError).
        """
        stride = self.config.stride
        if count < 1 or height < 1 or width < 1 or height % stride or width % stride:
            raise ValueError(f"cannot sample {count} image(s) of {height}x{width}: the count must be positive "
                             f"and the sides positive multiples of the model's stride, {stride}")
        like = torch.zeros(count, *self.latent_shape((self.config.image_channels, height, width)),
                           device=self.device)
        training = self.training
        try:
            with torch.no_grad():
                return self.eval().draw(like, generator)
        finally:
            self.train(training)

    def likelihood_given(self, x: torch.Tensor):
        """p(x | z) in float arithmetic with the latents z at their posterior means given the uint8 batch ``x``:
        the pixel likelihood the coder will use, near enough for the encoder's per-image choices
        (:mod:`bbcodec.coding.calibration`). A family without it is never calibrated."""
        raise NotImplementedError(f"the {self.family} model family has no likelihood given an image")

    def draw(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """uint8 images drawn from the generative model, their latents shaped like ``like`` (called by
        :meth:`sample`, which checks the sizes and sets no_grad and eval mode)."""
        raise NotImplementedError(f"the {self.family} model family cannot draw samples")

    def exact(self) -> CodingModel:
        """This model computed in exact integer arithmetic: the same probabilities on every machine.

        A family whose ``posterior`` and ``conditional`` take an arithmetic
        (``ops``, :mod:`bbcodec.nn.arithmetic`) and compute only through it
        gets this for free; its latents must sit on ``config.grid``.
        """
        return exact_model(self)


FAMILIES: dict[str, type[CodecModel]] = {}


def register(cls: type[CodecModel]) -> type[CodecModel]:
    """Class decorator: make a family known to model files, export, training and the zoo by its name."""
    if FAMILIES.get(cls.family, cls) is not cls:
        raise ValueError(f"model family {cls.family!r} is already registered")
    FAMILIES[cls.family] = cls
    return cls


def family(name: str) -> type[CodecModel]:
    """The family registered under ``name``; a BBCodecError (a model file may name anything) if none is."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(FAMILIES))
        raise BBCodecError(f"unknown model family {str(name)[:40]!r} (known: {known})") from None


def family_of(config) -> type[CodecModel]:
    """The family whose config type ``config`` is."""
    for cls in FAMILIES.values():
        if type(config) is cls.config_type:
            return cls
    raise TypeError(f"no model family takes a {type(config).__name__}")


def build(config) -> CodecModel:
    """A new model of ``config``'s family."""
    return family_of(config)(config)
