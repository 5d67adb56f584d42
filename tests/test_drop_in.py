"""Unmodified micrograd programs run on fastgrad: `python -m fastgrad run script.py` and
fastgrad.install_as_micrograd() make `import micrograd` give fastgrad, and the program
prints what it prints under micrograd 0.1.0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROGRAM = Path(__file__).parent / "data" / "micrograd_program.py"
CHECK_ENGINE = "import micrograd.engine as e, sys; print(e.Value.__module__, file=sys.stderr)"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTGRAD_PURE_PYTHON"}
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_fastgrad_run_prints_what_micrograd_prints() -> None:
    under_micrograd = run(str(PROGRAM), "7").stdout
    under_fastgrad = run("-m", "fastgrad", "run", str(PROGRAM), "7").stdout
    assert under_fastgrad == under_micrograd
    assert "step 6: loss" in under_fastgrad and "MLP of [Layer of [ReLUNeuron(3)" in under_fastgrad


def test_install_as_micrograd_prints_what_micrograd_prints() -> None:
    under_micrograd = run(str(PROGRAM)).stdout
    code = (
        "import fastgrad, runpy, sys\n"
        "fastgrad.install_as_micrograd()\n"
        f"{CHECK_ENGINE}\n"
        f"sys.argv = [{str(PROGRAM)!r}]\n"
        f"runpy.run_path({str(PROGRAM)!r}, run_name='__main__')\n"
    )
    result = run("-c", code)
    assert result.stdout == under_micrograd
    assert result.stderr.strip() == "fastgrad._core"


def test_the_real_micrograd_is_what_runs_without_fastgrad() -> None:
    assert run("-c", CHECK_ENGINE).stderr.strip() == "micrograd.engine"
