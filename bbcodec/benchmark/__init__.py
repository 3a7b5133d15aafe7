"""Measuring bbcodec against the classical lossless codecs, with real files.

What :func:`run` measures, for every image of every set:

* each bbcodec model: a real ``.bbc`` file written to disk (metadata
  stripped, so that pixels are compared with pixels), its size on disk, and
  the file decoded again and compared with the pixels; beside it the model's
  −ELBO on exactly the tiles the coder codes, and the split of the file's
  size into −ELBO + discretization + initial bits + stored fallback +
  container (:class:`ModelResult`);
* each classical codec (:func:`classical_codecs`): the bytes it writes,
  decoded again and compared with the pixels;
* compress and decompress time of every codec, as throughput in MB/s of raw
  pixels (one byte per sub-pixel);
* optionally (``chain=True``), for sets of equal-sized images, every image
  coded on ONE bits-back chain, which is how the bits-back papers count a
  data set's rate (:class:`ChainResult`); a Flow++ model codes no files,
  only such chains (local bits-back in float arithmetic,
  :mod:`bbcodec.coding.flow_coder`), its bound beside the rate;
* optionally (``archive=True``), every image of a set packed into ONE
  archive (:mod:`bbcodec.archive`: chunked chains, headers and checksums
  included), read back and checked (:class:`ArchiveResult`).

A file that does not decode to the exact pixels is a *failure*: it is
recorded in :attr:`Report.failures` (the command reports it loudly and exits
non-zero), and the rest is still measured.

    from bbcodec import benchmark
    sets = benchmark.open_sets(["waterloo=../shared/data/waterloo"], limit=4)
    codecs, notes = benchmark.classical_codecs(["png", "webp"])
    report = benchmark.run(sets, models=["default"], codecs=codecs, notes=notes)
    print(benchmark.format_table(report))
    benchmark.write_json(report, "bench.json")
    benchmark.plot(report, "bench.png")          # needs matplotlib

Images are measured as they look: palette images are expanded to their
colours (to grey when the palette is grey), bilevel images become 0/255 grey,
so every codec gets the same plain planes: grey, RGB or RGBA.
"""
from bbcodec.benchmark.codecs import (ALL_KEYS, DEFAULT_KEYS, Codec, classical_codecs, measure_classical,
                                      parse_codec_keys)
from bbcodec.benchmark.measure import (MAX_CHAIN_PIXELS, chain_steps, environment, image_nelbo_bits, measure_archive,
                                       measure_chain, measure_model, model_label, resolve_device, run)
from bbcodec.benchmark.report import format_table, markdown, plot
from bbcodec.benchmark.results import (ArchiveResult, ChainResult, CodecResult, ModelResult, Report, SetResult,
                                       read_json, report_from_dict, write_json)
from bbcodec.benchmark.sets import ImageSet, open_set, open_sets, plain_planes

__all__ = [
    "ALL_KEYS", "DEFAULT_KEYS", "Codec", "classical_codecs", "measure_classical",
    "parse_codec_keys",
    "ImageSet", "open_set", "open_sets", "plain_planes",
    "ArchiveResult", "ChainResult", "CodecResult", "ModelResult", "Report", "SetResult", "read_json",
    "report_from_dict", "write_json",
    "MAX_CHAIN_PIXELS", "chain_steps", "environment", "image_nelbo_bits", "measure_archive", "measure_chain",
    "measure_model", "model_label", "resolve_device", "run",
    "format_table", "markdown", "plot",
]
