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
        warnings.warn(
            f"fastgrad's C extension could not be imported ({error}); using the pure-Python "
            "reference, which computes the same numbers much more slowly",
            RuntimeWarning,
            stacklevel=2,
        )
        from . import reference as _implementation

        BACKEND = "python"

Value = _implementation.Value
sum = _implementation.sum
dot = _implementation.dot
Tape = _implementation.Tape


def install_as_micrograd() -> None:
    """Makes `import micrograd` (and micrograd.engine, micrograd.nn) give fastgrad."""
    from ._compat import install_as_micrograd as install

    install()


# after the implementation is chosen: fastgrad.nn, which _files uses, is written over it
from ._files import load, save  # noqa: E402
from ._gradcheck import GradcheckError, GradcheckReport, gradcheck  # noqa: E402

__all__ = [
    "BACKEND",
    "GradcheckError",
    "GradcheckReport",
    "Tape",
    "Value",
    "__version__",
    "dot",
    "gradcheck",
    "install_as_micrograd",
    "load",
    "save",
    "sum",
]
