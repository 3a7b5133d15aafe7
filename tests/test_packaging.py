"""What the distribution installs: the bbcodec packages and the command line as bbcodec_cli, never a top-level cli."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setuptools_table() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_listed_and_the_command_line_is_mapped():
    """The package list is written out (a find would not see the mapped cli/ folder): a new subpackage of
    bbcodec must be added there, or a regular install would leave it out."""
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "bbcodec").rglob("__init__.py")}
    table = setuptools_table()
    assert set(table["packages"]) == found | {"bbcodec_cli"}
    assert table["package-dir"] == {"bbcodec_cli": "cli"}


def test_the_installed_command_is_bbcodec_cli_and_there_is_no_top_level_cli(tmp_path):
    (script,) = [entry for entry in metadata.entry_points(group="console_scripts") if entry.name == "bbcodec"]
    assert script.value == "bbcodec_cli.main:main"
    probe = ("import importlib.util, bbcodec_cli.main; "
             "print(importlib.util.find_spec('cli') is None, bbcodec_cli.main.__file__)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    missing, location = done.stdout.split()
    assert done.returncode == 0 and missing == "True", done.stderr
    assert Path(location).parent.name in ("cli", "bbcodec_cli")  # editable: the folder; installed: the package
