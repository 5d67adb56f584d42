"""fastgrad/__init__.py picks the implementation in one place: the C extension, or the
reference when FASTGRAD_PURE_PYTHON=1 or when the extension cannot be imported (one warning)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import fastgrad
import fastgrad.engine


def probe(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "FASTGRAD_PURE_PYTHON"}
    environment.update(env)
    run = subprocess.run([sys.executable, "-W", "always", "-c", code], env=environment,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return run.stdout.strip() + "|" + run.stderr.strip()


REPORT = "import fastgrad, fastgrad.engine as e; print(fastgrad.BACKEND, e.Value.__module__)"


def test_the_c_extension_by_default() -> None:
    assert probe(REPORT) == "c fastgrad._core|"


def test_pure_python_when_asked() -> None:
    assert probe(REPORT, FASTGRAD_PURE_PYTHON="1") == "python fastgrad.reference|"
    assert probe(REPORT, FASTGRAD_PURE_PYTHON="0") == "c fastgrad._core|"


def test_pure_python_with_one_warning_when_the_extension_is_missing() -> None:
    block = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'fastgrad._core': raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    out, err = probe(block + REPORT).split("|")
    assert out == "python fastgrad.reference"
    assert err.count("RuntimeWarning") == 1 and "blocked for the test" in err
    assert "run `pip install -e .`" in err


def test_a_checkout_without_the_built_extension_says_what_to_run(tmp_path: Path) -> None:
    package = Path(fastgrad.__file__).parent
    shutil.copytree(package, tmp_path / "fastgrad",
                    ignore=shutil.ignore_patterns("_core*.so", "_core*.pyd", "__pycache__"))
    code = ("import sys\n"  # the copy, not the installed package (nor an editable finder's)
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
            "import fastgrad; print(fastgrad.BACKEND)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert result.stdout.strip() == "python"
    assert "is not built here: run `pip install -e .`" in result.stderr
    assert "circular import" not in result.stderr


def test_engine_exports_the_chosen_value() -> None:
    assert fastgrad.engine.Value is fastgrad.Value
    assert fastgrad.Tape is fastgrad._implementation.Tape
    chosen = fastgrad._core if fastgrad.BACKEND == "c" else fastgrad.reference
    assert fastgrad.Value is chosen.Value
    assert fastgrad.__version__
