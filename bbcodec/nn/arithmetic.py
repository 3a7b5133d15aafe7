"""The arithmetic a network computes in: one forward code, float or exact.

A model writes its forward pass once, against the operations of an
arithmetic object (``ops``): its convolutions, activations, residual sums,
network inputs and the distributions its heads produce. :data:`FLOAT` runs
them as ordinary float32 PyTorch (training, and the faster coding that
decodes only on the same kind of machine); the exact backend
(:class:`bbcodec.exact.backend.ExactArithmetic`) runs the same calls on
integers, so the coder's probabilities are the same on every machine.

The operations:

* ``pixels(x)``, ``latents(z)``: a uint8 image or grid-valued latents as a
  network input;
* ``conv(layer, x, source)``: a weight-normalized or binary convolution;
  ``source`` says what ``x`` holds (``"pixels"``, ``"latents"`` or
  ``"hidden"``), which the exact backend needs for its integer units;
* ``sign_conv(layer, x)``: ``conv(layer, sign(x))``, binary activations
  (sign(0) = +1), which the exact backend sums with XNOR and popcount;
* ``elu(x)``: the float activation;
* ``residual(x, y)``: ``x + y`` (the exact backend saturates);
* ``run(net, x)``: ``net(x, ops)``, the exact backend in parts to bound memory;
* ``gaussian(params, min_std, grid)``: a latent Gaussian from its head's
  output (mean, pre-softplus std);
* ``logistic(mean, log_scale)``, ``laplace(mean, log_scale, coupling,
  residual)``: the pixel likelihoods (coupling pre-tanh, or None; residual:
  coupling on the earlier channels' residuals, see DiscretizedLaplace).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bbcodec.distributions import DiscretizedLaplace, DiscretizedLogistic, GridGaussian, LatentGrid
from bbcodec.nn.binary import sign_ste

LOG_SCALE_MIN = -7.0
"""Pixel log-scales are clamped from below (in [-1, 1] pixel units): the exact ``exp`` table starts here."""


class FloatArithmetic:
    """Ordinary float32 PyTorch: differentiable, fast; its last bits depend on the machine."""

    name = "float"

    @staticmethod
    def pixels(x: torch.Tensor) -> torch.Tensor:
        return x.float() * (2.0 / 255.0) - 1.0

    @staticmethod
    def latents(z: torch.Tensor) -> torch.Tensor:
        return z

    @staticmethod
    def conv(layer, x: torch.Tensor, source: str = "hidden") -> torch.Tensor:
        return layer(x)

    @staticmethod
    def sign_conv(layer, x: torch.Tensor) -> torch.Tensor:
        return layer(sign_ste(x))

    elu = staticmethod(F.elu)

    @staticmethod
    def residual(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y

    def run(self, net, x: torch.Tensor) -> torch.Tensor:
        return net(x, self)

    @staticmethod
    def gaussian(params: torch.Tensor, min_std: float, grid: LatentGrid) -> GridGaussian:
        mean, raw_std = params.chunk(2, dim=1)
        return GridGaussian(mean, F.softplus(raw_std) + min_std, grid)

    @staticmethod
    def logistic(mean: torch.Tensor, log_scale: torch.Tensor) -> DiscretizedLogistic:
        return DiscretizedLogistic(mean, log_scale.clamp_min(LOG_SCALE_MIN))

    @staticmethod
    def laplace(mean: torch.Tensor, log_scale: torch.Tensor, coupling: torch.Tensor | None,
                residual: bool = False) -> DiscretizedLaplace:
        return DiscretizedLaplace(mean, torch.exp(log_scale.clamp_min(LOG_SCALE_MIN)),
                                  torch.tanh(coupling) if coupling is not None else None, residual)


FLOAT = FloatArithmetic()
