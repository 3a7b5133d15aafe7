"""Files decode on every machine: exact files made under other CPU kernel choices are byte-identical and decode here.

Other CPUs are stood in for by the settings that make torch, oneDNN and MKL
pick other float kernels on this machine (each changes the bytes of a
float-arithmetic file; ``bench/portability.py`` shows it for every shipped
model). A fresh process under each setting compresses the same images with a
logistic-pixel and a Laplace-pixel model; every exact file must be the same,
byte for byte, and decode here.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import bbcodec
from bbcodec import container, imageio
from bbcodec.portability import STAND_INS, environment_with
from conftest import REPO_ROOT
from fixtures.samples import binary_pixels

MODELS = {"logistic": str(REPO_ROOT / "tests" / "golden" / "tiny.safetensors"), "laplace": "default"}
"""Two models and the image each codes below its raw size: random binary pixels for the untrained tiny
model, a photo crop for the trained default."""

COMPRESS = """
import sys, json, numpy as np, torch
import bbcodec
from bbcodec import imageio
from bbcodec.coding.image import CoderSettings
torch.set_num_threads(int(sys.argv[1]))
images, settings = np.load(sys.argv[2]), CoderSettings(tile=16, arithmetic=sys.argv[4])
out = {}
for name, model in json.loads(sys.argv[3]).items():
    out[name] = bbcodec.compress(imageio.Image(images[name], "RGB"), model=model, settings=settings).hex()
print(json.dumps(out))
"""


def compress_under(stand_in: str, threads: int, images_path, models=MODELS, arithmetic="auto") -> dict[str, bytes]:
    """Each model's .bbc bytes of its image, compressed in a fresh process under ``stand_in``."""
    done = subprocess.run([sys.executable, "-c", COMPRESS, str(threads), str(images_path), json.dumps(models),
                           arithmetic], env=dict(environment_with(stand_in), PYTHONPATH=str(REPO_ROOT)),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return {name: bytes.fromhex(data) for name, data in json.loads(done.stdout.splitlines()[-1]).items()}


def images() -> dict[str, np.ndarray]:
    photo = imageio.read_image(REPO_ROOT / "data" / "chelsea.png").pixels
    return {"logistic": binary_pixels(32, 32, 3, seed=9), "laplace": np.ascontiguousarray(photo[100:132, 150:182])}


def test_exact_files_made_under_other_kernels_are_identical_and_decode_here(tmp_path):
    np.savez(tmp_path / "images.npz", **images())
    made = {(setting, threads): compress_under(setting, threads, tmp_path / "images.npz")
            for setting, threads in [(s, 1) for s in STAND_INS] + [("none", 2)]}
    for name, model in MODELS.items():
        files = {key: files[name] for key, files in made.items()}
        first = files["none", 1]
        assert bbcodec.info(first)["method"] == "bits-back" and bbcodec.info(first)["coder"]["arithmetic"] == "exact"
        assert all(data == first for data in files.values()), (name, [k for k, d in files.items() if d != first])
        assert np.array_equal(bbcodec.decompress(first, model=model).pixels, images()[name])


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="no vector kernels to turn off")
@pytest.mark.parametrize("setting", ["ATEN_CPU_CAPABILITY=default"])
def test_the_stand_in_really_changes_float_files(tmp_path, setting):
    """The control: without it the test above could pass on settings that change nothing."""
    np.savez(tmp_path / "images.npz", **images())
    payloads = [container.from_bytes(compress_under(chosen, 1, tmp_path / "images.npz", {"laplace": "default"},
                                                    "float")["laplace"]).sections["payload"]
                for chosen in ("none", setting)]
    assert payloads[0] != payloads[1]
