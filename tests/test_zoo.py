"""The shipped models: each loads, has its own hash, and decodes the golden file made with it.

Files name their model by hash, so a shipped model must stay installed for as
long as files made with it may exist; a new default is added beside the old one
(``tests/golden/zoo/make_zoo_golden.py`` explains how its golden file is made).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bbcodec
from bbcodec import zoo

GOLDEN = Path(__file__).resolve().parent / "golden" / "zoo"
SHIPPED = [entry for entry in zoo.installed() if entry.shipped]


def test_the_default_and_every_shipped_model_load_with_distinct_hashes():
    names = [entry.name for entry in SHIPPED]
    assert zoo.DEFAULT_MODEL in names
    assert len({entry.hash for entry in SHIPPED}) == len(SHIPPED)


@pytest.mark.parametrize("entry", SHIPPED, ids=[entry.name for entry in SHIPPED])
def test_every_shipped_model_decodes_its_golden_file(entry):
    golden = GOLDEN / f"{entry.hash[:12]}.bbc"
    assert golden.exists(), f"no golden file for shipped model {entry.name}: run make_zoo_golden.py {entry.name}"
    data = golden.read_bytes()
    header = bbcodec.info(data)
    assert header["model"] == entry.hash and header["method"] == "bits-back"
    assert np.array_equal(bbcodec.decompress(data).pixels, np.load(GOLDEN / f"{entry.hash[:12]}.npy"))


def test_every_golden_file_has_its_model_shipped():
    """No model whose files exist may leave the package."""
    shipped = {entry.hash[:12] for entry in SHIPPED}
    assert {path.stem for path in GOLDEN.glob("*.bbc")} <= shipped
