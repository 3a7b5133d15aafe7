"""Shared fixtures: tiny random models and the optional image data in ../shared/data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bbcodec.models.config import VAEConfig
from bbcodec.models.markov_vae import MarkovVAE

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# The test models are tiny; torch's intra-op threads only add synchronisation cost on them
# (on a 2-vCPU VM, 2 threads made a 2x16x4x4 convolution ~500x slower than 1 thread).
torch.set_num_threads(1)

TINY_CONFIG = VAEConfig(hidden_channels=16, latent_layers=4, blocks_per_net=1)


def make_model(seed: int = 0, config: VAEConfig = TINY_CONFIG) -> MarkovVAE:
    """A random (untrained) MarkovVAE in eval mode, its weights fixed by ``seed``."""
    torch.manual_seed(seed)
    return MarkovVAE(config).eval()


@pytest.fixture
def tiny_model() -> MarkovVAE:
    """Tiny 4-layer model with binary residual weights, seed 0."""
    return make_model(0)


@pytest.fixture
def other_model() -> MarkovVAE:
    """Same architecture as ``tiny_model``, different weights (seed 1)."""
    return make_model(1)


@pytest.fixture
def rng() -> torch.Generator:
    """A seeded generator for test inputs, independent of the global torch seed."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def random_images(rng):
    """``random_images(batch, height=8, width=8)``: uniform random uint8 images (B, 3, H, W), seeded."""

    def make(batch: int, height: int = 8, width: int = 8) -> torch.Tensor:
        return torch.randint(0, 256, (batch, 3, height, width), generator=rng, dtype=torch.uint8)

    return make


def shared_data_dir(*parts: str) -> Path:
    """``../shared/data/<parts>`` from the repository root; skips the test if it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test data not available: {path}")
    return path


@pytest.fixture(scope="session")
def cifar_images() -> torch.Tensor:
    """The first 16 CIFAR-10 test images of the shared subset, uint8 NCHW."""
    path = shared_data_dir("cifar10-subset", "cifar10_subset_uint8_nhwc.npz")
    with np.load(path) as data:
        images = data["test_x"][:16]
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="session")
def photo_crop() -> torch.Tensor:
    """A 48x64 (H x W) crop from the centre of one shared photo, uint8 (1, 3, 48, 64)."""
    from PIL import Image

    path = shared_data_dir("photos", "041.png")
    with Image.open(path) as image:
        image = image.convert("RGB")
        left, top = image.width // 2 - 32, image.height // 2 - 24
        crop = np.asarray(image.crop((left, top, left + 64, top + 48)), dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None]


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    """A tiny random model saved as a model file (for the API and the CLI)."""
    from fixtures.samples import make_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    make_tiny_model(path, seed=0)
    return path


@pytest.fixture(scope="session")
def other_model_file(tmp_path_factory) -> Path:
    """Same architecture as ``model_file``, other weights."""
    from fixtures.samples import make_tiny_model

    path = tmp_path_factory.mktemp("models") / "other.safetensors"
    make_tiny_model(path, seed=1)
    return path


@pytest.fixture(scope="session")
def coupled_polyphase():
    """A random two-level polyphase model with a linear path and residual coupling: what the per-image
    calibration, level sets and error feedback apply to."""
    from test_polyphase import LINEAR, make_polyphase
    return make_polyphase(seed=5, config=LINEAR.replace(residual_coupling=True))


@pytest.fixture(scope="session")
def coupled_polyphase_file(coupled_polyphase, tmp_path_factory) -> Path:
    """:func:`coupled_polyphase` saved as a model file."""
    from bbcodec.models.export import save_model
    path = tmp_path_factory.mktemp("coupled_polyphase") / "polyphase.safetensors"
    save_model(coupled_polyphase, path)
    return path
