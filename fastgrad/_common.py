"""What both implementations share: which objects count as numbers, how an op is shown,
and how its failures read.

The C extension and the pure-Python reference take every rule here from the one place, so
the two cannot drift apart.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import Any

# A Value's __array_priority__: above a numpy scalar's (-1e6), so np.float64(2) * v calls
# v.__rmul__ at once instead of going through a 0-d object array; below an array's (0.0), so
# that np.array([1.0, 2.0]) * v still works elementwise.
NUMPY_SCALAR_DEFERS = -1.0

REASONS: dict[type[Exception], str] = {
    ZeroDivisionError: "float division by zero",
    ValueError: "math domain error",
    OverflowError: "math range error",
    IndexError: "not a class index (a whole number from 0 to the number of classes - 1)",
}


def exponent_text(c: float) -> str:
    """How ``a ** c`` shows its constant exponent in ``_op``: ``**2``, ``**-1``, ``**0.5``."""
    if math.isfinite(c) and c == int(c) and abs(c) < 2.0**53:
        return str(int(c))
    return repr(c)


def _operand(x: float) -> str:
    text = repr(x)
    return f"({text})" if text.startswith("-") else text


def describe(op: str, operands: tuple[float, ...], exponent: float = 0.0) -> str:
    """The failing expression as the user wrote it: ``1.0 / 0.0``, ``log(-1.0)``."""
    if op == "**c":
        return f"{_operand(operands[0])} ** {_operand(exponent)}"
    if op == "class":
        return f"class index {operands[0]!r} among {operands[1]:g} classes"
    if len(operands) == 2:
        return f"{_operand(operands[0])} {op} {_operand(operands[1])}"
    return f"{op}({operands[0]!r})"


def op_error(
    kind: type[Exception],
    op: str,
    operands: tuple[float, ...],
    exponent: float = 0.0,
    in_backward: bool = False,
    row: int | None = None,
) -> Exception:
    """The exception an op raises: Python's own type, naming the op and its operands (and
    the row of a Tape.run that failed)."""
    where = "" if row is None else f"row {row}: "
    where += "in the backward pass of " if in_backward else ""
    return kind(f"{where}{describe(op, operands, exponent)}: {REASONS[kind]}")


def with_row(error: Exception, row: int) -> Exception:
    """The same failure, said to have happened in row `row` of a Tape.run."""
    return type(error)(f"row {row}: {error}")


def rows_later(error: BaseException, offset: int) -> BaseException:
    """A Tape.run failure of a slice of rows that starts at row `offset`, naming its row in
    the whole: "row 3: ..." becomes "row {offset + 3}: ..."; any other error as it is."""
    import re

    said = re.match(r"row (\d+): (.*)", str(error.args[0]) if error.args else "", re.S)
    if offset == 0 or said is None or len(error.args) != 1:
        return error
    return type(error)(f"row {int(said.group(1)) + offset}: {said.group(2)}")


# The Value classes of both implementations (each registers itself when imported), and the
# module each belongs to: a Value is never taken for a number operand.
VALUE_CLASSES: dict[type, str] = {}
_value_classes: tuple[type, ...] = ()


def register_value_class(kind: type, module: str) -> None:
    global _value_classes
    VALUE_CLASSES[kind] = module
    _value_classes = tuple(VALUE_CLASSES)


def engine_of(x: object) -> str | None:
    """The name of the implementation module whose Value x is, or None for anything else."""
    if isinstance(x, _value_classes):
        return next(module for kind, module in VALUE_CLASSES.items() if isinstance(x, kind))
    return None


def engine_for(values: Any, engine: Any = None) -> Any:
    """The implementation the values belong to (the first Value decides), else fastgrad's
    chosen one; `engine` when given."""
    if engine is not None:
        return engine
    import importlib

    for v in values:
        module = engine_of(v)
        if module is not None:
            return importlib.import_module(module)
    from . import _implementation

    return _implementation


def value_is_not_a_number(v: Any) -> TypeError:
    """What float(v), math.exp(v) and np.float64(v) raise: each would take the number and drop
    the graph, so that every gradient through that step would be silently lost."""
    return TypeError(f"a Value is not a number: float(), the math module and numpy would drop it "
                     f"from the graph, and the gradients through it would be lost. Build the "
                     f"computation from Value's ops (v.exp(), v.log(), ...), or use v.data "
                     f"(or v.item()) for its number, {v.data!r}")


ENGINE_NAMES = {"fastgrad._core": "the C engine (fastgrad._core)",
                "fastgrad.reference": "the pure-Python engine (fastgrad.reference)"}


def not_a_number(what: str, x: object) -> TypeError:
    engine = engine_of(x)
    if engine is not None:
        return TypeError(f"{what} must be a real number, not a Value of "
                         f"{ENGINE_NAMES.get(engine, engine)}")  # fmt: skip
    return TypeError(f"{what} must be a real number, not {type(x).__name__!r}")


def mixed_engines(a: object, b: object) -> TypeError | None:
    """The error for an op between Values of the two engines, or None if it is not one."""
    first, second = engine_of(a), engine_of(b)
    if first is None or second is None or first == second:
        return None
    return TypeError(f"a Value of {ENGINE_NAMES.get(first, first)} and a Value of "
                     f"{ENGINE_NAMES.get(second, second)} cannot meet in one graph: build it "
                     "with one engine's Values")  # fmt: skip


def as_float(x: object, what: str) -> float:
    """x as a float by the rule Python's float arithmetic uses (PyFloat_AsDouble): floats and
    ints by value, then anything whose type has __float__ or __index__ (numpy scalars,
    Fraction, Decimal). Anything else, a Value included, raises TypeError naming its type."""
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, int):
        return int.__float__(x)
    if isinstance(x, _value_classes):  # a Value is not a number
        raise not_a_number(what, x)
    kind = type(x)
    if not (hasattr(kind, "__float__") or hasattr(kind, "__index__")):
        raise not_a_number(what, x)
    return float(x)  # type: ignore[arg-type]


def tape_roots(roots: object, value_type: type) -> tuple[list[Any], bool]:
    """A Tape's roots and whether there are several: one Value, or a list or tuple of Values
    (a classifier's scores), whose backward then takes one seed per root."""
    if isinstance(roots, value_type):
        return [roots], False
    if not isinstance(roots, (list, tuple)):
        raise TypeError(f"Tape needs a Value to start from, or a list of Values, not "
                        f"{type(roots).__name__!r}")
    items = list(roots)
    if not items:
        raise ValueError("Tape needs at least one root")
    for v in items:
        if not isinstance(v, value_type):
            raise TypeError(f"a Tape's roots must be Values, not {type(v).__name__!r}")
    return items, True


def several_roots_have_no_root(count: int) -> str:
    return f"this Tape has {count} roots: they are in .roots"


def root_seeds(seeds: object, count: int, what: str) -> list[float]:
    """One seed per root: a number gives every root that seed, a sequence one each."""
    if isinstance(seeds, (str, bytes)) or not hasattr(type(seeds), "__iter__"):
        return [as_float(seeds, what)] * count
    items = list(seeds)  # type: ignore[call-overload]
    if len(items) != count:
        raise ValueError(f"{what} has {len(items)} seed(s) for {count} root(s)")
    return [as_float(s, what) for s in items]


# no_grad(): each thread's depth, and how many threads are inside one, which the engines
# are told of (watch_no_grad), so that an op outside any pays one test of a number
_no_grad_depth = threading.local()
_no_grad_lock = threading.Lock()
_no_grad_threads = 0
_no_grad_watchers: list[Callable[[int], None]] = []


def watch_no_grad(watcher: Callable[[int], None]) -> None:
    """watcher(n) is called whenever n, the number of threads inside no_grad(), changes."""
    _no_grad_watchers.append(watcher)


def inside_no_grad() -> bool:
    """Whether this thread is inside no_grad()."""
    return getattr(_no_grad_depth, "depth", 0) > 0


class no_grad:
    """Inside ``with fastgrad.no_grad():`` ops make constants: Values that require no grad,
    with no graph behind them (evaluation, an update by hand), in this thread only, as
    PyTorch's torch.no_grad(). Also a decorator."""

    def __enter__(self) -> no_grad:
        self._count(+1)
        return self

    def __exit__(self, *exc: object) -> None:
        self._count(-1)

    @staticmethod
    def _count(step: int) -> None:
        global _no_grad_threads
        depth = getattr(_no_grad_depth, "depth", 0)
        _no_grad_depth.depth = depth + step
        if depth + step == 0 or depth == 0:  # this thread left or entered
            with _no_grad_lock:
                _no_grad_threads += step
                for watcher in _no_grad_watchers:
                    watcher(_no_grad_threads)

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        import functools

        @functools.wraps(func)
        def without_grad(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return func(*args, **kwargs)

        return without_grad


def no_grad_root(what: str) -> str:
    return (f"{what} of a Value that requires no grad (a constant, or made from constants "
            "alone): there is nothing to differentiate")


def no_grad_input(index: int) -> str:
    return (f"gradients(): input {index} requires no grad (a constant, or made from constants "
            "alone): make it with requires_grad=True to differentiate by it")


def targets_without_y(count: int) -> str:
    return (f"run() was given {count} target leaves but no y: pass y, one column per target "
            "(or a vector for one target)")


def never_initialised(what: str) -> str:
    return f"this {what} was never initialised ({what}.__new__ without __init__)"


INITIALISED_TWICE = ("Value.__init__ called on a Value that holds a node already: the graph "
                     "built on it would keep the old one; make a new Value instead")

TAPE_IS_BUSY = ("this Tape is replaying in another thread; a Tape replays one call at a time "
                "(make a Tape per thread)")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


# The cores this process may run on: more worker threads than these only wait for them.
CORES = max(_usable_cores(), 1)


def check_threads(threads: object) -> int:
    """Tape.run's worker thread count: an int of at least 1, as many as there are cores at
    most (more would only take turns on them; the bits are the same)."""
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int, not {type(threads).__name__!r}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    return min(threads, CORES)


def rows_of(np: Any, array: Any, columns: int | None, name: str) -> Any:
    """array as a float64 matrix of `columns` columns (any number where None; a vector is one
    column); refuses anything that does not hold real numbers."""
    matrix = np.asarray(array)
    if matrix.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; its dtype is {matrix.dtype}")
    matrix = matrix.astype(np.float64, copy=False)
    if matrix.ndim == 1 and columns in (1, None):
        matrix = matrix.reshape(-1, 1)
    if columns is None and matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of rows, not of shape {matrix.shape}")
    if columns is not None and (matrix.ndim != 2 or matrix.shape[1] != columns):
        raise ValueError(f"{name} must have {columns} column(s), one per leaf; its shape is "
                         f"{matrix.shape}")  # fmt: skip
    return matrix
