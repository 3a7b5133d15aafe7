"""The Markov-chain VAE with a pixel likelihood that also sees decoded pixels, in four parallel steps.

In :mod:`bbcodec.models.markov_vae` the pixels are independent given the
first latent layer, so every edge and every flat area must be carried by the
latents. Here the image is split 2x2 into four *phases* (``pixel_unshuffle``
by 2): phase k holds the pixels (2i + k // 2, 2j + k % 2), a half-resolution
image. The first conditional network no longer outputs pixel parameters but
``feature_channels`` features at half resolution, and a small context network
per phase maps those features and the phases before it to the parameters of
phase k's pixels:

    p(x | z1) = p(x_0 | f) p(x_1 | f, x_0) p(x_2 | f, x_0, x_1) p(x_3 | f, x_0, x_1, x_2),   f = features(z1).

With ``levels`` L > 1 the split recurs on phase 0, a multi-scale pyramid:
x^(0) = x, x^(l) = phase 0 of x^(l-1). The coarsest image x^(L) is coded
given the features alone, then phases 1, 2, 3 of x^(L-1) given x^(L), and so
on down to the full image: only 1/4^L of the pixels see no decoded
neighbour. Level l's context networks run at 1/2^l resolution on the
features folded to that resolution (``pixel_unshuffle``, exact in both
arithmetics), so the extra levels cost a third of the first one together.

Each step is one network pass over all pixels of a phase at once: between
per-pixel autoregression and a fully factorized likelihood, like the
autoregressive sub-pixel convolution of split hierarchical variational
compression (Ryder, Zhang, Kang & Zhang, CVPR 2022). Within a pixel the
channels stay coupled R -> G -> B through the means (PixelCNN++, Salimans
et al. 2017; :class:`~bbcodec.distributions.DiscretizedLaplace`).

A context network feeds the decoded pixels (``source="pixels"``) and the
features (``source="hidden"``) through separate convolutions and adds them,
then binary residual blocks, then a float head: the layers next to the pixels
and the latents stay float, the residual blocks are binary (Bird, Kingma &
Barber, ICLR 2021). With ``linear_prediction`` a float 3x3 convolution also
takes the decoded pixels straight to the head's output, starting as the mean
of each pixel's nearest decoded neighbours (:data:`NEAREST_NEIGHBOURS`), so
the network learns a correction to an interpolation instead of the
interpolation itself: the classical predictor of lossless coding (the
median/gradient predictors of LOCO-I and CALIC) as a trained linear layer. Being written against the arithmetic ``ops``
(:mod:`bbcodec.nn.arithmetic`), it runs in exact integers with no code of
its own.

Coding (:class:`PolyphasePixels`): the likelihood is one push and one pop in
the bits-back order of :mod:`bbcodec.coding.bitsback`; its push pushes the
steps of :func:`coding_steps` in reverse and its pop pops them in order
(phases 0, 1, 2, 3 for one level), recomputing each phase's parameters
from the pixels decoded so far, exactly as the encoder computed them. Pixels
outside the coded tile (the padding up to a multiple of the stride) are zero
wherever a context network sees them, on both sides. A lone (grey, alpha)
plane enters the context networks as three equal channels, as the posterior
sees it, and only the model's ``grey_channel`` is coded. Where the file's
calibration has error feedback, each step's Laplace is also moved and scaled
by the residuals of the pixels decoded before it (:mod:`bbcodec.error_feedback`),
which coding, decoding, sampling and scoring all compute in one walk over the
steps (:meth:`PolyphasePixels._walk`).
:meth:`PolyphasePixels.sample` draws the steps in the same order as pop decodes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bbcodec import error_feedback
from bbcodec.errors import BBCodecError, shorten
from bbcodec.models.config import VAEConfig, check_integers
from bbcodec.models.family import register
from bbcodec.models.markov_vae import ConditionalNet, MarkovVAE, pixel_distribution, pixel_head_channels
from bbcodec.nn import ResidualBlock, WNConv2d
from bbcodec.nn.arithmetic import FLOAT
from bbcodec.neighbour_copy import CopyOrLaplace
from bbcodec.phases import NEAREST_NEIGHBOURS, PHASES, join_phases, nearest_neighbours, split_phases

CONTEXT_LIMITS = {"feature_channels": (1, 256), "context_channels": (1, 1024), "context_blocks": (0, 16),
                  "levels": (1, 3)}
"""Allowed ranges of the context fields of a model file."""


def coding_steps(levels: int) -> list[tuple[int, int]]:
    """The (level, phase) steps in decoding order: step (l, k) codes phase k of x^(l-1).

    The coarsest image x^(levels) (phase 0 of level ``levels``) comes first,
    then phases 1, 2, 3 of each level from the coarsest to the full image.
    """
    return [(levels, 0)] + [(level, k) for level in range(levels, 0, -1) for k in range(1, PHASES)]


@dataclass(frozen=True)
class PolyphaseConfig(VAEConfig):
    """A :class:`VAEConfig` and the shape of the polyphase pixel likelihood.

    ``feature_channels``: the features the first conditional gives each
    half-resolution pixel; ``context_channels`` and ``context_blocks``: the
    width and the residual blocks of each phase's context network;
    ``levels``: the depth of the multi-scale split (1: four phases);
    ``linear_prediction``: a linear path from the decoded neighbours to the
    pixel parameters (module docstring).
    """

    feature_channels: int = 16
    context_channels: int = 32
    context_blocks: int = 1
    levels: int = 1
    linear_prediction: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.levels < 1 or self.stride % 2 ** self.levels:
            raise ValueError(f"a polyphase likelihood of {self.levels} level(s) needs a stride that "
                             f"{2 ** max(self.levels, 1)} divides (each level halves the resolution)")

    @classmethod
    def from_file(cls, fields: dict) -> "PolyphaseConfig":
        """The config from a model file's fields: the context fields checked here, the rest as a VAEConfig's
        (files from before ``levels`` have one level, from before ``linear_prediction`` none)."""
        fields = {"levels": 1, "linear_prediction": False, **fields}
        check_integers(fields, CONTEXT_LIMITS)
        if not isinstance(fields["linear_prediction"], bool):
            raise BBCodecError(f"model file: config linear_prediction = {shorten(fields['linear_prediction'])}, "
                               "expected true or false")
        return super().from_file(fields)


class ContextNet(nn.Module):
    """Phase k's pixel parameters from the features and the ``earlier`` phases' pixels (see module docstring)."""

    def __init__(self, config: PolyphaseConfig, level: int, earlier: int, out_channels: int):
        super().__init__()
        width = config.context_channels
        self.features = WNConv2d(config.feature_channels * 4 ** (level - 1), width, 3)
        self.pixels = WNConv2d(config.image_channels * earlier, width, 3) if earlier else None
        self.blocks = nn.ModuleList([
            ResidualBlock(width, binary_weights=config.binary_weights, binary_activations=config.binary_activations)
            for _ in range(config.context_blocks)
        ])
        self.head = WNConv2d(width, out_channels, 3, init_scale=0.1)
        self.linear = None
        if earlier and config.linear_prediction:
            self.linear = WNConv2d(config.image_channels * earlier, out_channels, 3, init_scale=0.0)
            if not self.linear.v.is_meta:
                interpolate_(self.linear, earlier, config.image_channels)

    def forward(self, features: torch.Tensor, earlier: torch.Tensor | None, ops=FLOAT) -> torch.Tensor:
        """``features``: hidden activations; ``earlier``: uint8 pixels of the phases before, or None for phase 0."""
        h = ops.conv(self.features, ops.elu(features))
        pixels = ops.pixels(earlier) if earlier is not None else None
        if self.pixels is not None:
            h = ops.residual(h, ops.conv(self.pixels, pixels, "pixels"))
        for block in self.blocks:
            h = block(h, ops)
        out = ops.conv(self.head, ops.elu(h))
        if self.linear is not None:
            out = ops.residual(out, ops.conv(self.linear, pixels, "pixels"))
        return out


@torch.no_grad()
def interpolate_(layer: WNConv2d, phase: int, channels: int) -> None:
    """Start ``layer`` (decoded phases -> pixel parameters, means first) as the mean of each channel's nearest
    neighbours in :data:`NEAREST_NEIGHBOURS`; its other outputs start at zero (gain 0, random direction)."""
    neighbours = NEAREST_NEIGHBOURS[phase]
    for channel in range(channels):
        layer.v[channel].zero_()
        for earlier, dy, dx in neighbours:
            layer.v[channel, earlier * channels + channel, 1 + dy, 1 + dx] = 1.0 / len(neighbours)
        layer.g[channel] = layer.v[channel].norm()


class PolyphasePixels:
    """p(x | z1) as the steps of :func:`coding_steps`, each given the pixels before it (see module docstring).

    ``phase(step, earlier)`` is the pixel distribution of step ``step`` (an
    index into :func:`coding_steps`) over all channels, given ``earlier``:
    the uint8 phases before it at its level stacked on the channels (None for
    the coarsest image). ``size``: the height and width the features cover
    (multiples of 2**levels). :meth:`crop` restricts the coded pixels to some
    channels and the top-left ``height`` x ``width``. ``feedback``: each step's
    error feedback row (:mod:`bbcodec.error_feedback`; None for the first
    step), or None for none.
    """

    def __init__(self, phase: Callable, channels: int, size: tuple[int, int], levels: int = 1,
                 coded: slice | None = None, height: int | None = None, width: int | None = None,
                 feedback: list | None = None):
        self.phase, self.channels, self.size, self.levels = phase, channels, size, levels
        self.steps = coding_steps(levels)
        self.coded = coded if coded is not None else slice(0, channels)
        self.height, self.width = height or size[0], width or size[1]
        self.feedback = feedback

    def _with(self, **changes) -> "PolyphasePixels":
        """The same likelihood with some constructor arguments changed."""
        fields = dict(phase=self.phase, channels=self.channels, size=self.size, levels=self.levels,
                      coded=self.coded, height=self.height, width=self.width, feedback=self.feedback)
        return PolyphasePixels(**{**fields, **changes})

    def calibrated(self, rows: list[tuple]) -> "PolyphasePixels":
        """The same likelihood with each step's distribution calibrated by its row of ``rows`` (one a step; see
        :meth:`DiscretizedLaplace.calibrated <bbcodec.distributions.DiscretizedLaplace.calibrated>`); a row whose
        copy weights are not all 0 also lets the step copy its decoded neighbours
        (:class:`~bbcodec.neighbour_copy.CopyOrLaplace`; the coarsest image, whose pixels have none decoded, its
        own in the order of a :class:`~bbcodec.neighbour_copy.CopyPyramid`); a row's error feedback (its fifth
        entry; None for the first step) then moves and scales the step's Laplace (:mod:`bbcodec.error_feedback`)."""
        if len(rows) != len(self.steps):
            raise ValueError(f"a calibration of {len(rows)} steps for a likelihood of {len(self.steps)}")
        if rows[0][4] is not None:
            raise ValueError("error feedback for the coarsest image, whose pixels see no decoded pixel")
        phase, channels = self.phase, self.channels

        def calibrated_phase(step, earlier):
            if step == 0:
                return phase(step, earlier).calibrated(rows[:1])
            factors, offsets, copy, buckets, _ = rows[step]
            distribution = phase(step, earlier).calibrated([(factors, offsets, None, buckets, None)])
            if copy is None or not any(copy):
                return distribution
            return CopyOrLaplace(distribution, nearest_neighbours(earlier, self.steps[step][1], channels), copy)

        feedback = [row[4] for row in rows] if any(row[4] is not None for row in rows) else None
        return self._with(phase=calibrated_phase, feedback=feedback)

    def remembering(self) -> "PolyphasePixels":
        """The same likelihood remembering each step's distribution the first time it is computed: for several
        teacher-forced passes over the same pixels (the encoder's choice of a calibration), never for coding."""
        phase, remembered = self.phase, {}

        def remembered_phase(step, earlier):
            if step not in remembered:
                remembered[step] = phase(step, earlier)
            return remembered[step]

        return self._with(phase=remembered_phase)

    def restricted(self, level_sets: tuple) -> "PolyphasePixels":
        """The same likelihood with every step coding each channel's pixels among its level set (see
        :meth:`DiscretizedLaplace.restricted <bbcodec.distributions.DiscretizedLaplace.restricted>`)."""
        phase = self.phase
        return self._with(phase=lambda step, earlier: phase(step, earlier).restricted(level_sets))

    def crop(self, channels: slice, height: int, width: int) -> "PolyphasePixels":
        """The same likelihood coding only ``channels`` of the top-left ``height`` x ``width`` pixels."""
        if channels.stop - channels.start not in (1, self.channels):
            raise ValueError("a polyphase likelihood codes one channel or all")
        return self._with(coded=channels, height=height, width=width)

    # -- helpers ---------------------------------------------------------------------
    def _full(self, x: torch.Tensor) -> torch.Tensor:
        """The coded pixels ``x`` as the context networks see them: a lone plane as equal channels, the rest 0."""
        full = x.new_zeros(len(x), self.channels, *self.size)
        full[:, :, :self.height, :self.width] = x
        return full

    def _pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[x^(0), ..., x^(levels)] of the coded pixels ``x``: each image phase 0 of the one before."""
        pyramid = [self._full(x)]
        for _ in range(self.levels):
            pyramid.append(split_phases(pyramid[-1])[0])
        return pyramid

    def _extent(self, level: int, k: int) -> tuple[int, int]:
        """Rows and columns of phase k of x^(level - 1) that hold coded pixels."""
        height, width = self.height, self.width
        for _ in range(level - 1):
            height, width = -(-height // 2), -(-width // 2)
        return -(-(height - k // 2) // 2), -(-(width - k % 2) // 2)

    def _padded(self, values: torch.Tensor, level: int, channels: int) -> torch.Tensor:
        """A step's ``values`` (B, C, rows, columns) in a phase of x^(level - 1) of ``channels`` channels, zeros
        past them (a lone plane in every channel)."""
        phase = values.new_zeros(len(values), channels, self.size[0] >> level, self.size[1] >> level)
        phase[:, :, :values.shape[2], :values.shape[3]] = values
        return phase

    def _joined(self, steps: list[torch.Tensor]) -> torch.Tensor:
        """The image of the steps' ``steps`` (one tensor each, as :meth:`_walk` gives their values), cut to the coded
        pixels: the inverse of the split into steps."""
        channels = steps[0].shape[1]
        image = self._padded(steps[0], self.levels, channels)
        for index, level in enumerate(range(self.levels, 0, -1)):   # x^(l-1) from x^(l) and phases 1-3 of level l
            image = join_phases([image] + [self._padded(step, level, channels)
                                           for step in steps[1 + 3 * index:4 + 3 * index]])
        return image[:, :, :self.height, :self.width]

    def _step_given(self, step: int, earlier: list[torch.Tensor]):
        """Step ``step``'s distribution over all its channels and pixels, given the ``earlier`` phases (a list)."""
        return self.phase(step, torch.cat(earlier, dim=1) if earlier else None)

    def _known(self, pyramid: list[torch.Tensor], step: int) -> torch.Tensor:
        """Step ``step``'s coded pixels of the ``pyramid`` of known pixels."""
        level, k = self.steps[step]
        rows, columns = self._extent(level, k)
        return split_phases(pyramid[level - 1])[k][:, self.coded, :rows, :columns]

    def _walk(self, values_of: Callable, feedback_of: Callable | None = None):
        """Each step's distribution (restricted to the coded channels and pixels, its error feedback applied) and
        its values, in decoding order: ``values_of(step, distribution)`` gives them (popped, drawn or known), and
        the steps after it see them. ``feedback_of(step, distribution, energy, bias)`` gives each step's feedback
        row (default: the stored rows)."""
        if feedback_of is None and self.feedback is not None:
            feedback_of = lambda step, *_: self.feedback[step]   # noqa: E731
        phases, residuals = [], []
        for step, (level, k) in enumerate(self.steps):
            if k == 1 and step > 1:   # a finer level: its phase 0 is the image decoded so far
                phases, residuals = [join_phases(phases)], [join_phases(residuals)] if residuals else []
            extent = self._extent(level, k)
            distribution = self._step_given(step, phases).crop(self.coded, *extent)
            if feedback_of is not None and step > 0:
                energy, bias = error_feedback.features(residuals, k, *extent)
                row = feedback_of(step, distribution, energy, bias)
                if row is not None:
                    weights, factors = row
                    distribution = error_feedback.apply(distribution, energy, bias,
                                                        (weights[self.coded], factors[self.coded]))
            values = values_of(step, distribution)
            yield distribution, values
            phases.append(self._padded(values, level, self.channels))
            if feedback_of is not None:
                residuals.append(self._padded(error_feedback.residuals(distribution, values), level,
                                              1 + values.shape[1]))

    # -- training --------------------------------------------------------------------
    def terms(self, x: torch.Tensor) -> list:
        """(distribution, values) of each step for the pixels ``x``, all given the true earlier phases (teacher
        forcing), over all channels and the padded size, without error feedback."""
        pyramid = self._pyramid(x)
        terms = []
        for step, (level, k) in enumerate(self.steps):
            phases = split_phases(pyramid[level - 1])
            terms.append((self._step_given(step, phases[:k]), phases[k]))
        return terms

    def neighbours(self, x: torch.Tensor) -> list:
        """Each step's nearest decoded neighbours of the pixels ``x`` (:func:`nearest_neighbours`; None for the
        coarsest image), as :meth:`terms` gives their steps."""
        pyramid = self._pyramid(x)
        return [None if k == 0 else nearest_neighbours(torch.cat(split_phases(pyramid[level - 1])[:k], dim=1), k,
                                                       self.channels)
                for level, k in self.steps]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log probability (nats) of the coded pixels ``x`` per sub-pixel, all steps in one pass (teacher
        forcing); shaped like ``x``."""
        pyramid = self._pyramid(x)
        return self._joined([distribution.log_prob(values) for distribution, values
                             in self._walk(lambda step, _: self._known(pyramid, step))])

    def choose_feedback(self, x: torch.Tensor, choose: Callable) -> list:
        """What ``choose(distribution, energy, bias, values)`` returns for each step after the first, walked
        over the pixels ``x`` in decoding order (teacher forcing): a step's error feedback row (three weights,
        three tuples of factors; None: none) and anything else; each step sees the steps before it coded with
        the rows chosen for them. The encoder's choice of rows (:mod:`bbcodec.coding.calibration`)."""
        pyramid, chosen = self._pyramid(x), []

        def feedback_of(step, distribution, energy, bias):
            chosen.append(choose(distribution, energy, bias, self._known(pyramid, step)))
            return chosen[-1][0]

        for _ in self._walk(lambda step, _: self._known(pyramid, step), feedback_of):
            pass
        return chosen

    # -- coding ----------------------------------------------------------------------
    def push(self, ans, x: torch.Tensor) -> None:
        pyramid = self._pyramid(x)
        steps = list(self._walk(lambda step, _: self._known(pyramid, step)))
        for distribution, values in reversed(steps):   # the decoder pops the coarsest image first
            distribution.push(ans, values)

    def pop(self, ans) -> torch.Tensor:
        return self._joined([values for _, values in self._walk(lambda _, distribution: distribution.pop(ans))])

    # -- sampling --------------------------------------------------------------------
    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 pixels drawn step by step in decoding order, each step given the pixels drawn before it;
        shaped as :meth:`pop` decodes them (the coded channels and the top-left height x width pixels)."""
        drawn = self._walk(lambda _, distribution: distribution.sample(generator))
        return self._joined([values for _, values in drawn])


class PolyphaseHead(nn.ModuleList):
    """The context networks of every step of :func:`coding_steps`, and the likelihood they make of features.

    A family gives it ``feature_channels`` features at half the image's
    resolution (from its latents) and gets p(x | features) back as
    :class:`PolyphasePixels`, in the arithmetic ``ops``.
    """

    def __init__(self, config: PolyphaseConfig):
        out = pixel_head_channels(config)
        super().__init__([ContextNet(config, level, k, out) for level, k in coding_steps(config.levels)])
        self.config = config

    def likelihood(self, features: torch.Tensor, ops=FLOAT) -> PolyphasePixels:
        """p(x | features): ``features`` (B, feature_channels, H/2, W/2) as the hidden activations of ``ops``."""
        size = (2 * features.shape[2], 2 * features.shape[3])
        levels = self.config.levels
        by_level = [features] + [F.pixel_unshuffle(features, 2 ** level) for level in range(1, levels)]
        return PolyphasePixels(partial(self._phase, by_level, ops), self.config.image_channels, size, levels)

    def _phase(self, features: list[torch.Tensor], ops, step: int, earlier: torch.Tensor | None):
        """Step ``step``'s pixel distribution given the features of its level and the earlier phases' pixels."""
        level = coding_steps(self.config.levels)[step][0]
        return pixel_distribution(self.config, self[step](features[level - 1], earlier, ops), ops)


@register
class PolyphaseVAE(MarkovVAE):
    """The Markov-chain VAE whose pixels come in four steps, each given the steps before (module docstring)."""

    family = "markov-vae-polyphase"
    config_type = PolyphaseConfig
    default_tile = 128
    """Larger tiles give the phases more decoded neighbours and fewer tile borders: photos 041-043 1-2 % smaller
    files than with 64 (bench/README.md, "Error feedback")."""

    def __init__(self, config: PolyphaseConfig):
        super().__init__(config)
        self.phases = PolyphaseHead(config)

    def _likelihood_net(self, config: PolyphaseConfig) -> nn.Module:
        """Features at half resolution from the latents (a 1/stride grid)."""
        return ConditionalNet(config, config.latent_channels, config.feature_channels, unfold=config.stride // 2)

    def conditional(self, layer: int, z: torch.Tensor, ops=FLOAT):
        """p(below | z_{layer+1}): the polyphase pixel likelihood for layer 0, else a latent Gaussian."""
        if layer > 0:
            return super().conditional(layer, z, ops)
        return self.phases.likelihood(ops.run(self.conditionals[0], ops.latents(z)), ops)
