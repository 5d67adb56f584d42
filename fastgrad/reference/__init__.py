"""The pure-Python implementation: fastgrad's executable specification.

Everything the C extension computes is computed here, readably, with the same formulas in
the same order, so the two give the same bits. ops.py holds the op tables, the twins of the
rows of csrc/ops.def; value.py the Value that applies them as micrograd's closures do, with
sum and dot; derive.py gradients (create_graph: derivatives as graphs of their own); tape.py
the compiled Tape; optim.py the optimizers' update loops.
"""

from .._common import no_grad, register_value_class
from .derive import gradients
from .optim import (  # noqa: F401  (fastgrad.optim's kernels, nn.utils' flat arrays)
    _Parameters,
    _read_parameters,
    _write_parameters,
)
from .tape import Tape
from .value import (  # noqa: F401
    Value,
    _choice,
    _class_index,
    _constant_leaf,
    _finite,
    _graph,
    _pick,
    dot,
    maximum,
    sum,
)

__all__ = ["Tape", "Value", "dot", "gradients", "maximum", "no_grad", "simd", "sum"]


def simd() -> str:
    """The vector kernel of Tape.run: here none, the rows run one by one in Python."""
    return "python"


# their public home, for reprs and pickles
for _public in (Tape, Value, dot, gradients, maximum, sum):
    _public.__module__ = __name__
register_value_class(Value, __name__)
