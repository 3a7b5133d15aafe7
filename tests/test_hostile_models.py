"""Hostile and malformed model files: never unpickled, never a huge allocation, one clear line each.

A model file can come from anyone (``-m FILE``, ``bbcodec models add``). Each case below must give a
BBCodecError with a one-line message from the API (``bbcodec.load_model``, ``bbcodec.compress``) and
exit status 1 with one stderr line from the command, quickly and in bounded memory: a config that asks
for billions of parameters is refused from a skeleton on PyTorch's ``meta`` device, before any weight
is allocated.
"""
from __future__ import annotations

import json
import os
import pickle
import resource
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import bbcodec
from bbcodec import imageio, modelfile, zoo
from bbcodec.errors import BBCodecError
from bbcodec.models import export
from bbcodec_cli.main import main
from fixtures.samples import noise_pixels


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user-models"
    monkeypatch.setenv("BBCODEC_MODELS", str(folder))
    monkeypatch.delenv("BBCODEC_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    return folder


def header_of(data: bytes) -> dict:
    return json.loads(data[8: 8 + int.from_bytes(data[:8], "little")])


def resaved(data: bytes, tensors=None, **metadata) -> bytes:
    """The same file with tensors and metadata fields replaced (a valid safetensors file)."""
    meta = {**header_of(data)["__metadata__"], **metadata}
    return st_save(st_load(data) if tensors is None else tensors, metadata=meta)


def with_config(data: bytes, **changes) -> bytes:
    config = {**json.loads(header_of(data)["__metadata__"]["config"]), **changes}
    return resaved(data, config=json.dumps(config))


def raw_header(data: bytes, header: dict) -> bytes:
    """A file whose safetensors header is ``header`` and whose tensor bytes are kept."""
    text = json.dumps(header).encode()
    body = data[8 + int.from_bytes(data[:8], "little"):]
    return len(text).to_bytes(8, "little") + text + body


def retyped(data: bytes, name_part: str, dtype) -> bytes:
    tensors = st_load(data)
    name = next(n for n in sorted(tensors) if name_part in n)
    tensors[name] = tensors[name].astype(dtype)
    return resaved(data, tensors)


def reshaped(data: bytes) -> bytes:
    tensors = st_load(data)
    name = next(n for n in sorted(tensors) if not n.endswith(export.PACKED_SUFFIX) and tensors[n].size > 1)
    tensors[name] = tensors[name].reshape(-1)[:-1].copy()
    return resaved(data, tensors)


def dropped(data: bytes, suffix: str) -> bytes:
    tensors = st_load(data)
    del tensors[next(n for n in sorted(tensors) if n.endswith(suffix))]
    return resaved(data, tensors)


def poisoned(data: bytes, value: float) -> bytes:
    tensors = st_load(data)
    name = next(n for n in sorted(tensors) if tensors[n].dtype == np.float32)
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] = value
    return resaved(data, tensors)


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


HOSTILE = {
    "empty": (lambda d: b"", "too short"),
    "truncated-header": (lambda d: d[:50], "past the end"),
    "truncated-tensors": (lambda d: d[: len(d) * 2 // 3], "cannot read model file"),
    "huge-header-length": (lambda d: (1 << 62).to_bytes(8, "little") + d[8:], "past the end"),
    "header-not-json": (lambda d: (8).to_bytes(8, "little") + b"{{{{{{{{" + d[16:], "not JSON"),
    "header-nested": (lambda d: (20000).to_bytes(8, "little") + b"[" * 10000 + b"]" * 10000 + d[16:], "not JSON"),
    "header-a-list": (lambda d: raw_header(d, [1, 2]), "not a JSON object"),
    "pickle-renamed": (lambda d: pickle.dumps(Boom()), "not a safetensors model file"),
    "torch-save-renamed": (None, "not a safetensors model file"),
    "random-bytes": (lambda d: np.random.default_rng(1).bytes(len(d)), "not a"),
    "metadata-not-dict": (lambda d: raw_header(d, {**header_of(d), "__metadata__": [1]}), "metadata"),
    "no-format": (lambda d: resaved(d, format=""), "not a bbcodec model file"),
    "no-config": (lambda d: raw_header(d, {**header_of(d), "__metadata__": {"format": modelfile.FORMAT}}),
                  "no model config"),
    "config-not-json": (lambda d: resaved(d, config="{oops"), "config is not JSON"),
    "config-a-list": (lambda d: resaved(d, config="[1]"), "not a JSON object"),
    "config-unknown-field": (lambda d: with_config(d, colour=3), "unknown model config fields"),
    "config-text-number": (lambda d: with_config(d, hidden_channels="16"), "hidden_channels"),
    "config-bool-number": (lambda d: with_config(d, latent_layers=True), "latent_layers"),
    "config-zero-stride": (lambda d: with_config(d, stride=0), "stride"),
    "config-huge-width": (lambda d: with_config(d, hidden_channels=1 << 30), "hidden_channels"),
    "config-billions": (lambda d: with_config(d, hidden_channels=1024, latent_layers=16, blocks_per_net=16),
                        "parameters"),
    "config-deep-layers": (lambda d: with_config(d, latent_layers=10 ** 6), "latent_layers"),
    "config-nan-std": (lambda d: with_config(d, min_std=float("nan")), "min_std"),
    "config-huge-grid": (lambda d: with_config(d, grid_bits=12, grid_bound=64.0), "grid"),
    "config-unknown-pixels": (lambda d: with_config(d, pixel_distribution="gauss"), "pixel distribution"),
    "config-other-shape": (lambda d: with_config(d, hidden_channels=8), "shape"),
    "tensor-missing": (lambda d: dropped(d, ".bias"), "missing"),
    "packed-missing": (lambda d: dropped(d, export.PACKED_SUFFIX), "missing"),
    "tensor-extra": (lambda d: resaved(d, {**st_load(d), "extra": np.zeros(3, np.float32)}), "unexpected"),
    "tensor-float64": (lambda d: retyped(d, ".bias", np.float64), "dtype"),
    "tensor-int32": (lambda d: retyped(d, ".bias", np.int32), "dtype"),
    "packed-as-float": (lambda d: retyped(d, export.PACKED_SUFFIX, np.float32), "dtype"),
    "tensor-wrong-shape": (reshaped, "shape"),
    "tensor-nan": (lambda d: poisoned(d, float("nan")), "NaN"),
    "tensor-inf": (lambda d: poisoned(d, float("inf")), "NaN or infinite"),
    "offsets-overlap": (lambda d: raw_header(d, {k: ({**v, "data_offsets": [0, v["data_offsets"][1] -
                                                                            v["data_offsets"][0]]}
                                                      if k != "__metadata__" else v)
                                                 for k, v in header_of(d).items()}), "cannot read model file"),
}


def torch_saved(tmp_path) -> bytes:
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def good() -> bytes:
    from fixtures.samples import make_tiny_model

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bbcodec-good-{os.getpid()}.safetensors"
    try:
        make_tiny_model(path, seed=0)
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def hostile_bytes(case: str, good: bytes, tmp_path) -> bytes:
    make, _ = HOSTILE[case]
    return torch_saved(tmp_path) if make is None else make(good)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_the_good_file_loads(good):
    model = export.model_from_bytes(good)
    assert model.config.hidden_channels == 16


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_model_file_is_one_clear_line(case, good, tmp_path):
    data = hostile_bytes(case, good, tmp_path)
    fragment = HOSTILE[case][1]
    start, peak = time.perf_counter(), peak_rss_mib()
    with pytest.raises(BBCodecError) as caught:
        export.model_from_bytes(data)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    assert fragment in message, message
    assert time.perf_counter() - start < 10
    assert peak_rss_mib() - peak < 200  # nothing of the size the config asks for was allocated
    assert not Path("pwned").exists()


@pytest.mark.parametrize("case", ["pickle-renamed", "truncated-tensors", "config-billions", "tensor-nan",
                                  "tensor-float64"])
def test_hostile_model_through_api_and_command(case, good, tmp_path):
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(hostile_bytes(case, good, tmp_path))
    image = imageio.Image(noise_pixels(8, 8, 3), "RGB")
    with pytest.raises(BBCodecError):
        zoo.load(str(path))
    with pytest.raises(BBCodecError):
        bbcodec.compress(image, model=str(path))
    Path("a.png").write_bytes(imageio.encode(image, "PNG"))
    before = sorted(os.listdir())
    for args in (["compress", "-m", str(path), "a.png"], ["models", "add", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("bbcodec: ") and "Traceback" not in result.output, lines
    assert sorted(os.listdir()) == before  # no output, no installed model, and no "pwned"
    assert not (tmp_path / "user-models").exists()


def test_a_damaged_user_model_is_skipped_in_listings_and_reported_by_name(good, user_models):
    user_models.mkdir(parents=True)
    (user_models / "broken.safetensors").write_bytes(pickle.dumps(Boom()))
    (user_models / "fine.safetensors").write_bytes(good)
    names = [entry.name for entry in zoo.installed()]
    assert "fine" in names and "broken" not in names
    with pytest.raises(BBCodecError, match="not a safetensors model file"):
        zoo.load("broken")
    assert not Path("pwned").exists()


def test_an_oversized_model_file_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as handle:  # sparse: costs no disk
        handle.truncate(modelfile.MAX_MODEL_BYTES + 1)
    read = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(BBCodecError, match="too large"):
        zoo.load(str(path))
    assert read == []


def test_model_files_are_never_unpickled():
    """Loading goes through safetensors only: no pickle and no torch.load anywhere in the package."""
    package = Path(bbcodec.__file__).resolve().parent
    cli_folder = package.parent / "cli"
    for source in list(package.rglob("*.py")) + list(cli_folder.rglob("*.py")):
        text = source.read_text()
        assert "torch.load(" not in text and "import pickle" not in text and "pickle.load" not in text, source


def _special_model_files(tmp_path) -> dict[str, Path]:
    """Special files named like models: a FIFO (reading it would wait for a writer forever), /dev/zero and
    a link to it (endless), a directory."""
    os.mkfifo(tmp_path / "fifo.safetensors")
    (tmp_path / "zero.safetensors").symlink_to("/dev/zero")
    (tmp_path / "folder.safetensors").mkdir()
    names = ["fifo", "zero", "folder"]
    return {name: tmp_path / f"{name}.safetensors" for name in names} | {"dev-zero": Path("/dev/zero")}


def test_special_files_are_refused_as_models_without_blocking(tmp_path):
    """``models add`` and ``-m`` read only regular files (issue 18, item 2: a FIFO blocked forever, /dev/zero
    was read until memory ran out, and ``-m`` called them "not found")."""
    Path("a.png").write_bytes(imageio.encode(imageio.Image(noise_pixels(8, 8, 3), "RGB"), "PNG"))
    for name, path in _special_model_files(tmp_path).items():
        with pytest.raises(BBCodecError, match="not a regular file|is a directory"):
            zoo.load(str(path))
        for args in (["models", "add", str(path)], ["compress", "-m", str(path), "a.png"]):
            result = CliRunner().invoke(main, args)
            lines = result.stderr.splitlines()
            assert result.exit_code in (1, 2) and len(lines) >= 1, (name, args, result.output)
            if result.exit_code == 1:
                assert len(lines) == 1 and ("not a regular file" in lines[0] or "directory" in lines[0]), lines
    assert not (tmp_path / "user-models").exists() and not Path("a.png.bbc").exists()


def test_a_model_file_is_read_no_further_than_the_limit(tmp_path, monkeypatch):
    """The size limit holds while reading, not only as the size reported before (a file may grow)."""
    from bbcodec import safeio

    path = tmp_path / "m.safetensors"
    path.write_bytes(bytes(1000))
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((0o100644, 0, 0, 1, 0, 0, 10, 0, 0, 0)))
    with pytest.raises(BBCodecError, match="too large"):
        safeio.read_regular(path, 100, "model file")
