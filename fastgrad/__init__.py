"""fastgrad: micrograd's API and numbers, at C speed.

The engine is the C extension ``fastgrad._core``. Setting ``FASTGRAD_PURE_PYTHON=1`` picks
the pure-Python reference (``fastgrad.reference``) instead, as does a failed import of the
extension, with one warning. ``fastgrad.BACKEND`` says which is in use: ``"c"`` or ``"python"``.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:  # both implementations have one API; the C extension's stub describes it
    from . import _core as _implementation

    BACKEND: str
elif os.environ.get("FASTGRAD_PURE_PYTHON", "") not in ("", "0"):
    from . import reference as _implementation

    BACKEND = "python"
else:
    try:
        from . import _core as _implementation

        BACKEND = "c"
    except ImportError as error:
        from importlib.machinery import EXTENSION_SUFFIXES
        from pathlib import Path

        _here = Path(__file__).parent
        if any((_here / f"_core{suffix}").exists() for suffix in EXTENSION_SUFFIXES):
            _why = f"could not be imported ({error})"
        else:  # a source checkout: Python's own message guesses at a circular import
            _why = "is not built here"
        warnings.warn(
            f"fastgrad's C extension {_why}: run `pip install -e .` in the source checkout "
            "to build it. Using the pure-Python reference meanwhile, which computes the same "
            "numbers much more slowly",
            RuntimeWarning,
            stacklevel=2,
        )
        from . import reference as _implementation

        BACKEND = "python"

Value = _implementation.Value
sum = _implementation.sum
dot = _implementation.dot
maximum = _implementation.maximum
simd = _implementation.simd
no_grad = _implementation.no_grad
gradients = _implementation.gradients
Tape = _implementation.Tape


def install_as_micrograd() -> None:
    """Makes `import micrograd` (and micrograd.engine, micrograd.nn) give fastgrad."""
    from ._compat import install_as_micrograd as install

    install()


# after the implementation is chosen: these are written over it
from ._gradcheck import GradcheckError, GradcheckReport, gradcheck  # noqa: E402
from .functional import cross_entropy, logsumexp, softmax  # noqa: E402
from .transforms import grad, hessian, hvp, jacobian, jvp, value_and_grad, vjp  # noqa: E402

if TYPE_CHECKING:
    from . import datasets, engine, functional, nn, optim, viz
    from ._files import load, save

# Loaded on first use (PEP 562), so that `import fastgrad` stays light: the submodules, as
# torch.optim is an attribute of torch, and save/load with the nn they build on.
_LAZY = {
    "datasets": ("datasets", None),
    "engine": ("engine", None),
    "nn": ("nn", None),
    "optim": ("optim", None),
    "viz": ("viz", None),
    "load": ("_files", "load"),
    "save": ("_files", "save"),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'fastgrad' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "BACKEND",
    "GradcheckError",
    "GradcheckReport",
    "Tape",
    "Value",
    "__version__",
    "cross_entropy",
    "datasets",
    "dot",
    "engine",
    "functional",
    "grad",
    "gradcheck",
    "gradients",
    "hessian",
    "hvp",
    "install_as_micrograd",
    "jacobian",
    "jvp",
    "load",
    "logsumexp",
    "maximum",
    "nn",
    "no_grad",
    "optim",
    "save",
    "simd",
    "softmax",
    "sum",
    "value_and_grad",
    "viz",
    "vjp",
]
