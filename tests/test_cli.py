"""python -m fastgrad demo | bench | run, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def fastgrad(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTGRAD_PURE_PYTHON"}
    return subprocess.run([sys.executable, "-m", "fastgrad", *args], capture_output=True,
                          text=True, env=env)  # fmt: skip


def fastgrad_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m fastgrad args` in an interpreter where importing `module` (or a submodule
    of it) raises ImportError, as if it were not installed or not built."""
    blocker = (
        "import sys, importlib.abc, runpy\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name == {module!r} or name.startswith({module + '.'!r}):\n"
        "            raise ImportError(f'{name} is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['fastgrad', *{list(args)!r}]\n"
        "runpy.run_module('fastgrad', run_name='__main__')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FASTGRAD_PURE_PYTHON"}
    return subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True,
                          env=env)  # fmt: skip


def test_demo_trains_and_compares_the_engines() -> None:
    result = fastgrad("demo", "--steps", "12", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert "c engine: 12 steps" in result.stdout and "ms per step" in result.stdout
    assert "the same bits" in result.stdout
    assert "training" in result.stderr  # tqdm's progress bar


def test_demo_through_a_tape() -> None:
    result = fastgrad("demo", "--steps", "12", "--tape")
    assert result.returncode == 0, result.stderr
    assert "c engine through a tape: 12 steps" in result.stdout
    assert "the c engine eagerly on the first 10 steps: the same bits" in result.stdout


def test_demo_on_the_reference_engine() -> None:
    result = fastgrad("demo", "--steps", "3", "--backend", "python")
    assert result.returncode == 0, result.stderr
    assert "python engine: 3 steps" in result.stdout and "the same bits" in result.stdout


def test_demo_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the demo extra")
    picture = tmp_path / "moons.png"
    result = fastgrad("demo", "--steps", "5", "--plot", str(picture))
    assert result.returncode == 0, result.stderr
    assert picture.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_bench_prints_the_table() -> None:
    # a case of each kind of figure: best of repeats (B1-B3), a mean with the collector's
    # pauses (B4), retained memory (B6); bench/test_engine.py builds and runs every case
    result = fastgrad("bench", "--quick", "--cases", "B1,B2,B3,B4,B6")  # (all: minutes)
    assert result.returncode == 0, result.stderr
    for line in ("B1 `a + b`", "B2 `2.0 + a`", "B3 backward", "B4 a training step",
                 "B6 retained"):
        assert line in result.stdout
    assert "x the float op" in result.stdout and "faster" in result.stdout
    assert "SPEC" not in result.stdout  # users have no such document: the table says it all


def test_bench_plots_its_ratios(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--plot draws with matplotlib")
    picture = tmp_path / "ratios.png"
    result = fastgrad("bench", "--quick", "--cases", "B1,B3", "--plot", str(picture))
    assert result.returncode == 0, result.stderr
    drawn = int(result.stdout.split(" ratios drawn to ")[0].split()[-1])
    assert drawn >= 2  # B3 beside micrograd, and each B1 op's (micrograd: where installed)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_cites_no_document_users_lack() -> None:
    for args in (["--help"], ["demo", "--help"], ["bench", "--help"]):
        result = fastgrad(*args)
        assert result.returncode == 0 and "SPEC" not in result.stdout, args


def test_demo_without_the_extension_runs_on_the_reference() -> None:
    result = fastgrad_without("fastgrad._core", "demo", "--steps", "2")
    assert result.returncode == 0, result.stderr
    assert "not built here: running on the pure-Python reference" in result.stdout
    assert "python engine: 2 steps" in result.stdout


def test_bad_arguments_are_reported() -> None:
    result = fastgrad("demo", "--backend", "gpu")
    assert result.returncode == 2 and "invalid choice: 'gpu'" in result.stderr
    assert fastgrad().returncode == 2


def test_demo_pinn_solves_the_equation(tmp_path: Path) -> None:
    path = tmp_path / "pinn.png"
    result = fastgrad("demo", "--pinn", "--plot", str(path))
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "max |u - sin(pi x)|" in line)
    assert float(line.rsplit("=", 1)[1]) <= 1e-2, line
    assert "2000 steps over 64 collocation points" in line
    assert path.stat().st_size > 10_000


@pytest.mark.parametrize("extra", [[], ["--tape"]])
def test_demo_with_adam(extra: list[str]) -> None:
    result = fastgrad("demo", "--optimizer", "adam", "--steps", "30", *extra)
    assert result.returncode == 0, result.stderr
    assert "with Adam: 30 steps" in result.stdout and "the same bits" in result.stdout


def test_digits_demo_with_adam() -> None:
    pytest.importorskip("sklearn")
    result = fastgrad("demo", "--digits", "--optimizer", "adam", "--epochs", "3")
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy >= 85.0 and "the same bits" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["demo", "--steps", "0"], "--steps: 0 is less than 1"),
    (["demo", "--steps", "-5"], "--steps: -5 is less than 1"),
    (["demo", "--steps", "ten"], "--steps: 'ten' is not a whole number"),
    (["demo", "--digits", "--epochs", "0"], "--epochs: 0 is less than 1"),
    (["demo", "--digits", "--threads", "-3"], "--threads: -3 is less than 1"),
    (["demo", "--seed", "-1"], "--seed: -1 is less than 0"),
    (["run", "missing.py"], "the script 'missing.py' does not exist"),
    (["run", "."], "the script '.' is a directory"),
])  # fmt: skip
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    """A usage line and exit status 2, as argparse answers, never a traceback (--steps 0
    trained the default 100 steps)."""
    result = fastgrad(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "usage:" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_bench_runs_only_the_cases_it_is_given() -> None:
    result = fastgrad("bench", "--quick", "--cases", "b1, B2")
    assert result.returncode == 0, result.stderr
    assert "B1 `a + b`" in result.stdout and "B2 `2.0 + a`" in result.stdout
    assert "B3" not in result.stdout and "B6" not in result.stdout
    assert "SIMD kernel: " in result.stdout  # which kernel the figures used


def test_bench_names_an_unknown_case_and_the_cases_there_are() -> None:
    result = fastgrad("bench", "--cases", "B1,B99")
    assert result.returncode == 2
    assert "no benchmark case B99" in result.stderr and "B12" in result.stderr
