"""fastgrad standing in for micrograd: existing micrograd code runs unchanged."""

from __future__ import annotations

import runpy
import sys
import types


def install_as_micrograd() -> None:
    """Makes `import micrograd`, `micrograd.engine` and `micrograd.nn` resolve to fastgrad
    from now on in this interpreter. Call it before the program imports micrograd."""
    from . import engine, nn

    package = types.ModuleType("micrograd", "fastgrad, standing in for micrograd")
    package.__path__ = []  # a package, so that `import micrograd.engine` is accepted
    package.engine = engine  # type: ignore[attr-defined]
    package.nn = nn  # type: ignore[attr-defined]
    sys.modules.update({"micrograd": package, "micrograd.engine": engine, "micrograd.nn": nn})


def run_script(path: str, args: list[str]) -> None:
    """python -m fastgrad run script.py [args]: the script as __main__, micrograd being fastgrad."""
    install_as_micrograd()
    sys.argv = [path, *args]
    runpy.run_path(path, run_name="__main__")
