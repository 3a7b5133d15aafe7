"""The configuration of a hierarchical VAE: everything needed to rebuild it."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from bbcodec.coding.distributions import LatentGrid


@dataclass(frozen=True)
class VAEConfig:
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
    min_std: float = 0.02
    grid_bits: int = 5
    grid_bound: float = 8.0

    def __post_init__(self):
        from bbcodec.coding.distributions import PIXEL_DISTRIBUTIONS

        if self.pixel_distribution not in PIXEL_DISTRIBUTIONS:
            raise ValueError(f"unknown pixel distribution {self.pixel_distribution!r}")
        if self.stride < 1 or self.latent_layers < 1:
            raise ValueError("stride and latent_layers must be at least 1")
        if self.channel_coupling and (self.pixel_distribution != "laplace" or self.image_channels != 3):
            raise ValueError("channel_coupling needs the laplace pixel distribution and 3 image channels")

    @property
    def grid(self) -> LatentGrid:
        return LatentGrid(bits=self.grid_bits, bound=self.grid_bound)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "VAEConfig":
        fields = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**fields)

    def replace(self, **changes) -> "VAEConfig":
        return dataclasses.replace(self, **changes)
