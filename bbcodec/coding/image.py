"""Coding the pixel planes of one image of any size with an RGB model.

An image's channels are coded in plane groups, each cut into tiles and
batched as its :class:`~bbcodec.tiling.TileLayout` says (three colour
channels together, every other plane alone). A lone plane is shown to the
model as grey (the plane repeated three times) and only the likelihood of the
model's grey channel is coded. All tiles of all groups are coded on one
bits-back chain, so that later tiles get back bits that earlier tiles pushed.

:class:`TileView` presents the model to the coders for one batch of tiles:
its inference side sees the tile as the model expects it (three channels), and
its pixel likelihood is cropped to the tile's real pixels and channels. The
coders in :mod:`bbcodec.coding.bitsback` need nothing else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from bbcodec.coding import calibration, level_sets as level_sets_
from bbcodec.coding.bitsback import CODERS
from bbcodec.coding.chain import STARTS, EncodedChain, decode_steps, encode_steps, is_start
from bbcodec.container import batch_limit
from bbcodec.errors import BBCodecError, CorruptDataError
from bbcodec.tiling import TileLayout


ARITHMETIC = ("exact", "float")


@dataclass(frozen=True)
class CoderSettings:
    """How an image is coded; stored in the file header and needed to decode.

    ``arithmetic`` is how the network computes the coder's probabilities:
    ``"exact"`` on integers (:mod:`bbcodec.exact`: the same bits on every
    device, thread count and batch split), ``"float"`` in the model's own
    float32 (the decoder must then run on the same kind of device, CPU and
    software as the encoder), or ``"auto"``: exact (every model supports it).
    Files store the resolved choice (:meth:`resolve`); files written before
    the field existed are float.

    ``start`` is which of the chain's batches are coded without bits back
    (:func:`~bbcodec.coding.chain.leading_batches`: none, the first, the
    first N, all): ``"auto"`` lets the encoder choose how many first batches
    (:func:`~bbcodec.coding.chain.encode_steps`; :func:`bbcodec.compress` may
    then try all), and files store the one it kept; files written before the
    field existed start with bits back.

    ``coder`` is one of :data:`~bbcodec.coding.bitsback.CODERS` that the
    model's family codes with (its ``coders``), or ``"auto"``: the family's
    first. Files store the resolved name.

    ``tile`` is the side of the square tiles the image is coded in (8 to
    1024 pixels), or ``"auto"``: the family's ``default_tile``. Files store
    the resolved side.

    ``calibration``: the per-image calibration of the pixel likelihood
    (:mod:`bbcodec.coding.calibration`: a row of scale-factor and offset
    indices per coding step, flattened, or a shipped calibration of the
    model named by :func:`~bbcodec.coding.calibration.preset`); () for none.
    The header stores it in
    a field of its own (``pixel_calibration``), not with the rest
    (:meth:`to_dict`).

    ``level_sets``: the values each plane takes, for planes that take few
    (:mod:`bbcodec.coding.level_sets`, its stored form); () for none. The
    header stores them in a field of their own too (``pixel_level_sets``).
    """

    coder: str = "auto"
    tile: int | str = "auto"
    max_batch: int = 16
    arithmetic: str = "auto"
    start: str = "auto"
    calibration: tuple[int, ...] = ()
    level_sets: tuple[int, ...] = ()

    def __post_init__(self):
        if self.coder not in CODERS and self.coder != "auto":
            raise ValueError(f"unknown coder {self.coder!r} (one of {', '.join(CODERS)}, auto)")
        side = self.tile == "auto" or isinstance(self.tile, int) and 8 <= self.tile <= 1024
        if not (side and 1 <= self.max_batch <= 256):
            raise ValueError(f"tile must be 8..1024 or auto and max_batch 1..256, got {self.tile}, {self.max_batch}")
        if self.arithmetic not in ARITHMETIC + ("auto",):
            raise ValueError(f"unknown arithmetic {self.arithmetic!r} (one of {', '.join(ARITHMETIC)}, auto)")
        if not (is_start(self.start) or self.start == "auto"):
            raise ValueError(f"unknown start {self.start!r} (one of {', '.join(STARTS)}, no-bits-back-first-N, auto)")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in self.calibration + self.level_sets):
            raise ValueError("calibration and level-set values must be integers")

    def resolve(self, model) -> "CoderSettings":
        """These settings decided for ``model``: ``auto`` arithmetic is exact (every model supports it), an
        ``auto`` coder the first of the model's family, an ``auto`` tile the family's ``default_tile``; a
        BBCodecError if the family cannot use the coder."""
        coder = model.coders[0] if self.coder == "auto" and model.coders else self.coder
        check_coder(model, coder)
        return replace(self, coder=coder, arithmetic="exact" if self.arithmetic == "auto" else self.arithmetic,
                       tile=model.default_tile if self.tile == "auto" else self.tile)

    def for_encoding(self, model) -> "CoderSettings":
        """These settings as :meth:`resolve` decides them for coding with ``model``, in batches no larger than the
        decoder's work limit allows for a pass of its tiles (:func:`~bbcodec.container.batch_limit`: only very large
        tiles need smaller ones). Only an encoder shrinks them: a file's own settings are decoded as they are."""
        resolved = self.resolve(model)
        return replace(resolved, max_batch=batch_limit(resolved.tile, resolved.max_batch))

    def to_dict(self) -> dict:
        """The settings as the header's ``coder`` object (without ``calibration`` and ``level_sets``)."""
        settings = asdict(self)
        del settings["calibration"], settings["level_sets"]
        return settings

    def calibration_rows(self, model) -> list[tuple] | None:
        """The calibration as one (scale factors, offsets) row per step for ``model``, or None without one; a
        CorruptDataError for values that are out of range or a model whose likelihood has no calibration."""
        if not self.calibration:
            return None
        if not calibration.applies(model):
            raise CorruptDataError("a calibration of a likelihood that has none (only Laplace pixels of RGB)")
        try:
            return calibration.rows(calibration.expanded(self.calibration, model.calibration_presets))
        except ValueError as error:
            raise CorruptDataError(f"corrupt calibration ({error})") from None

    def plane_level_sets(self, model, planes: int) -> list | None:
        """Each plane's level set (:func:`bbcodec.coding.level_sets.parse`), or None without any; a
        CorruptDataError for sets that do not describe these planes or a model that cannot code among them."""
        if not self.level_sets:
            return None
        if not level_sets_.applies(model):
            raise CorruptDataError("level sets for a likelihood that has none (only Laplace pixels)")
        try:
            return level_sets_.parse(self.level_sets, planes)
        except ValueError as error:
            raise CorruptDataError(f"corrupt .bbc header (level sets: {error})") from None

    def layout(self, height: int, width: int, channels: int) -> TileLayout:
        """How an image of this size is tiled and batched with these settings (resolved: :meth:`resolve`)."""
        if self.tile == "auto":
            raise ValueError("resolve the tile before coding (CoderSettings.resolve)")
        return TileLayout(height, width, channels, self.tile, self.max_batch)


def check_coder(model, coder: str, error=BBCodecError) -> None:
    """An ``error`` unless ``model``'s family codes with ``coder`` (a Markov chain cannot be coded top-down, nor a
    top-down model with Bit-Swap, and a flow codes only sets of images, in flow chains)."""
    if not model.coders:
        raise error(f"a {model.family} model {model.without_coders}")
    if coder not in model.coders:
        raise error(f"a {model.family} model codes with {' or '.join(model.coders)}, not {coder}")


def coding_model(model, arithmetic: str):
    """The model as the coder runs it: its exact integer version, or itself (float)."""
    if arithmetic == "auto":
        raise ValueError("resolve the arithmetic before coding (CoderSettings.resolve)")
    return model.exact() if arithmetic == "exact" else model


class TileView:
    """The model as the coders see it for one batch of tiles of ``channels`` (1 or 3) planes: what it is shown
    of pixels is three channels (``posterior`` of layer 0, ``bottom_up``), and its pixel likelihood
    (``conditional`` of layer 0, ``likelihood``) codes among the planes' level sets (``level_sets``: one for
    each of the model's channels, or None), is calibrated for the image (``calibration``: one row a step, or
    None) and cropped to the tile's real pixels and channels."""

    def __init__(self, model, channels: int, height: int, width: int, calibration: list | None = None,
                 level_sets: tuple | None = None):
        self.model, self.channels, self.height, self.width = model, channels, height, width
        self.calibration, self.level_sets = calibration, level_sets
        self.depth = model.depth

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if self.channels == 1 else x

    def posterior(self, layer, below):
        return self.model.posterior(layer, self._model_input(below) if layer == 0 else below)

    def conditional(self, layer, z):
        dist = self.model.conditional(layer, z)
        return self._coded(dist) if layer == 0 else dist

    def _coded(self, likelihood):
        """The pixel likelihood as this batch codes it: among the level sets, calibrated, cropped to the coded
        channels and pixels."""
        if self.level_sets is not None:
            likelihood = likelihood.restricted(self.level_sets)
        if self.calibration is not None:
            try:
                likelihood = likelihood.calibrated(self.calibration)
            except ValueError as error:
                raise CorruptDataError(f"the file's calibration does not fit the model ({error})") from None
        return likelihood.crop(self._coded_channels(), self.height, self.width)

    def _coded_channels(self) -> slice:
        """All three for colour; for a lone plane, the model's grey channel."""
        if self.channels == 3:
            return slice(0, 3)
        return slice(self.model.grey_channel, self.model.grey_channel + 1)

    def bottom_up(self, x):
        return self.model.bottom_up(self._model_input(x))

    def likelihood(self, state):
        return self._coded(self.model.likelihood(state))

    def __getattr__(self, name):
        """Every other call of the coders (``top_prior``, ``latent_shape``, ``prior``...) is the model's own."""
        return getattr(self.model, name)


def tile_views(model, layout: TileLayout, calibration: list | None = None, plane_level_sets: list | None = None):
    """(the model's view, plane group, tile batch) for every batch of the layout, in coding order."""
    for group, batch in layout.steps():
        level_sets = level_sets_.for_model(plane_level_sets[group], model.grey_channel) if plane_level_sets else None
        view = TileView(model, group.stop - group.start, batch[0].height, batch[0].width, calibration, level_sets)
        yield view, group, batch


def cut_batch(pixels: np.ndarray, group: slice, batch, device) -> torch.Tensor:
    """The (B, planes, H, W) tensor of one batch of tiles of one plane group of an (H, W, C) image."""
    tiles = [pixels[t.top:t.top + t.height, t.left:t.left + t.width, group] for t in batch]
    return torch.from_numpy(np.ascontiguousarray(np.stack(tiles).transpose(0, 3, 1, 2))).to(device)


def paste_batch(pixels: np.ndarray, group: slice, batch, tiles: torch.Tensor) -> None:
    """Write one decoded batch of tiles (B, planes, H, W) into an (H, W, C) image: the inverse of :func:`cut_batch`."""
    for t, tile in zip(batch, tiles.cpu().numpy()):
        pixels[t.top:t.top + t.height, t.left:t.left + t.width, group] = tile.transpose(1, 2, 0)


def batch_shape(group: slice, batch) -> tuple[int, int, int, int]:
    """The (B, planes, H, W) shape of one batch of tiles of one plane group."""
    return len(batch), group.stop - group.start, batch[0].height, batch[0].width


def encode_image(model, pixels: np.ndarray, settings: CoderSettings = CoderSettings(), progress=None) -> EncodedChain:
    """Code an (H, W, C) uint8 array losslessly; returns the chain's payload and accounting.

    ``progress(tiles)``, if given, is called after each batch of tiles.
    """
    settings = settings.resolve(model)
    rows, sets = settings.calibration_rows(model), settings.plane_level_sets(model, pixels.shape[2])
    model = coding_model(model, settings.arithmetic)
    steps = [(view, cut_batch(pixels, group, batch, model.device))
             for view, group, batch in tile_views(model, settings.layout(*pixels.shape), rows, sets)]
    return encode_steps(steps, settings.coder, progress=progress, start=settings.start)


def decode_image(model, encoded: EncodedChain, height: int, width: int, channels: int,
                 settings: CoderSettings = CoderSettings(), progress=None) -> np.ndarray:
    """Inverse of :func:`encode_image` (a CorruptDataError if the model cannot use the coder a file names)."""
    if settings.coder != "auto":
        check_coder(model, settings.coder, CorruptDataError)
    settings = settings.resolve(model)
    rows, sets = settings.calibration_rows(model), settings.plane_level_sets(model, channels)
    model = coding_model(model, settings.arithmetic)
    steps = list(tile_views(model, settings.layout(height, width, channels), rows, sets))
    shapes = [(view, batch_shape(group, batch)) for view, group, batch in steps]
    decoded = decode_steps(shapes, encoded, settings.coder, progress=progress)
    pixels = np.empty((height, width, channels), dtype=np.uint8)
    for (_, group, batch), tiles in zip(steps, decoded):
        paste_batch(pixels, group, batch, tiles)
    return pixels
