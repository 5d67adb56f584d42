"""micrograd's module layout: ``from fastgrad.engine import Value`` as from micrograd.engine."""

from . import Value

__all__ = ["Value"]
