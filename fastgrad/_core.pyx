# cython: language_level=3, c_api_binop_methods=True, auto_pickle=False, autotestdict=False
# cython: freethreading_compatible=True
"""fastgrad's C engine: a Value is a handle on a node of the C arena (csrc/).

The Python object is only a handle. Intermediate results a program drops cost their 56-byte
node and no Python object; a node lives while a handle or a parent node refers to it.
Labels and the _op names given to Value(data, children, _op) live in dicts beside the arena,
keyed by node address, and leave them when the node is freed (the arena's release hook).

Threads: on a free-threaded CPython each thread allocates nodes from an arena of its own,
handed out on its first node and pooled again when the thread ends (_threads.h); any thread
may use and free any node. On a GIL build there is one arena, as there always was.

Operators are C-API binary slots (c_api_binop_methods): Python passes the operands in the
order they were written, the Value on either side, and _binary handles both; Python itself
provides the reflected __radd__ etc. for a type with these slots.
"""

cimport cython
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release,
                             PyObject_GetBuffer)
from cpython.exc cimport PyErr_Clear, PyErr_Fetch, PyErr_Restore
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check, PyFloat_CheckExact
from cpython.long cimport PyLong_AsDouble, PyLong_Check
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject, Py_DECREF
from cpython.sequence cimport PySequence_Fast_ITEMS
from libc.stdint cimport uint32_t

from ._common import CORES as _CORES
from ._common import INITIALISED_TWICE as _INITIALISED_TWICE
from ._common import NUMPY_SCALAR_DEFERS as _NUMPY_SCALAR_DEFERS
from ._common import TAPE_IS_BUSY as _TAPE_IS_BUSY
from ._common import (as_float, check_threads, exponent_text, inside_no_grad, mixed_engines,
                      never_initialised, no_grad, no_grad_input, no_grad_root, not_a_number,
                      op_error, register_value_class, root_seeds, rows_of,
                      several_roots_have_no_root, tape_roots, targets_without_y,
                      value_is_not_a_number, watch_no_grad, with_row)

import os
import threading
import weakref
from builtins import sum as builtins_sum

cdef extern from "_threads.h":
    enum: FG_FREE_THREADED
    fg_arena *fg_thread_arena
    void fg_set_thread_arena(fg_arena *A)
    PyObject *fg_take_handle(fg_node *n, void **seen)
    void fg_install_handle(fg_node *n, void *seen, void *v)
    void fg_clear_handle(fg_node *n, void *v)

cdef dict _labels = {}
cdef dict _opnames = {}
# Tapes whose last replay left writes waiting in them (fg_tape_unsynced), oldest first, as
# id -> weak reference: they write them before anyone sees a node they recorded (_node_of).
cdef dict _unsynced_tapes = {}
cdef tuple _symbols = tuple(fg_op_symbol(<fg_op>i).decode() for i in range(FG_OP_COUNT))

cdef list _arenas = []            # every arena made, as addresses (they live as long as the module)
cdef list _arena_pool = []        # arenas of threads that have ended, for the next thread
_arena_lock = threading.Lock()
_arena_lease = threading.local()  # the calling thread's _ArenaLease


cdef class _ArenaLease:
    """A thread's hold on its arena: the thread's local storage drops it when the thread
    ends, and the arena goes back to the pool (its nodes stay valid: other threads' graphs
    may still use them, and free them into it)."""
    cdef fg_arena *arena

    def __dealloc__(self):
        fg_arena_disown(self.arena)
        if fg_thread_arena == self.arena:
            fg_set_thread_arena(NULL)
        try:
            with _arena_lock:
                _arena_pool.append(<size_t>self.arena)
        except Exception:  # the interpreter is shutting down: nothing will use it again
            pass


cdef fg_arena *_adopt_arena() except NULL:
    """The calling thread's first arena: one from the pool, or a new one."""
    cdef fg_arena *A = NULL
    cdef _ArenaLease lease
    with _arena_lock:
        if _arena_pool:
            A = <fg_arena *><size_t>_arena_pool.pop()
    if A is NULL:
        A = fg_arena_new()
        if A is NULL:
            raise MemoryError("fastgrad could not allocate its node arena")
        fg_arena_set_release_hook(A, _forget_extras, NULL)
        with _arena_lock:
            _arenas.append(<size_t>A)
    else:
        fg_arena_adopt(A)
    if FG_FREE_THREADED:
        lease = _ArenaLease.__new__(_ArenaLease)
        lease.arena = A
        _arena_lease.lease = lease
    fg_set_thread_arena(A)
    return A


cdef inline fg_arena *_arena() except NULL:
    """The arena the calling thread allocates from (on a GIL build, the one arena)."""
    if not FG_FREE_THREADED or fg_thread_arena is not NULL:
        return fg_thread_arena
    return _adopt_arena()


cdef inline fg_arena *_releasing_arena() noexcept:
    """An arena to free nodes through (which arena does not matter: each node goes back to
    its own), without making one for a thread that only drops Values."""
    if not FG_FREE_THREADED or fg_thread_arena is not NULL:  # with the GIL: always set
        return fg_thread_arena
    return <fg_arena *><size_t>_arenas[0]


cdef void _forget_extras(void *context, fg_node *node) noexcept:
    cdef PyObject *kind
    cdef PyObject *value
    cdef PyObject *traceback
    PyErr_Fetch(&kind, &value, &traceback)  # a dealloc may run while an exception is set
    key = <size_t>node
    _labels.pop(key, None)
    _opnames.pop(key, None)
    PyErr_Restore(kind, value, traceback)

_adopt_arena()  # the importing thread's (on a GIL build, every thread's)


cdef object _exception_type(fg_status status):
    if status == FG_ZERO_DIVISION:
        return ZeroDivisionError
    if status == FG_DOMAIN_ERROR:
        return ValueError
    if status == FG_RANGE_ERROR:
        return OverflowError
    if status == FG_INDEX_ERROR:
        return IndexError
    if status == FG_NO_MEMORY:
        return MemoryError
    return SystemError


cdef str _rule(const fg_node *n):
    """The op's name in the reference's tables (reference.UNARY, BINARY, NARY)."""
    return "**c" if n.op == FG_POWC else _symbols[n.op]


cdef int _raise(fg_status status, str rule, tuple operands, double exponent=0.0,
                bint in_backward=False) except -1:
    if status == FG_NO_MEMORY:
        raise MemoryError("fastgrad's node arena is out of memory")
    raise op_error(_exception_type(status), rule, operands, exponent, in_backward)


cdef int _raise_backward(fg_status status, fg_node *failed) except -1:
    cdef uint32_t count, i
    cdef fg_node *const *operands
    if status == FG_NO_MEMORY or failed is NULL:
        _raise(status, "backward", ())
    operands = fg_operands(failed, &count)
    values = tuple([operands[i].data for i in range(count)])
    exponent = failed.exponent if failed.op == FG_POWC else 0.0
    _raise(status, _rule(failed), values, exponent, True)


cdef inline int _number(object x, double *out) except -1:
    """1 with x's value in *out if x is a real number (_common.as_float's rule), else 0."""
    if PyFloat_Check(x):
        out[0] = PyFloat_AS_DOUBLE(x)
        return 1
    if PyLong_Check(x):
        out[0] = PyLong_AsDouble(x)
        return 1
    try:
        out[0] = as_float(x, "operand")
    except TypeError:
        return 0
    return 1


cdef inline int _compared(object x, double *out) except -1:
    """1 with what a comparison compares a Value with (a Value's data, a number) in *out."""
    if isinstance(x, Value):
        out[0] = _node_of(<Value>x).data
        return 1
    return _number(x, out)


cdef inline double _as_double(object x, str what) except? -1.0:
    if PyFloat_Check(x):
        return PyFloat_AS_DOUBLE(x)
    return as_float(x, what)


cdef inline fg_node *_leaf(double x) except NULL:
    cdef fg_node *n = NULL
    if fg_new_leaf(_arena(), x, &n) != FG_OK:
        raise MemoryError("fastgrad's node arena is out of memory")
    return n


cdef inline fg_node *_constant(double x) except NULL:
    """A leaf for a number operand, as micrograd's Value(other): part of a Tape's program."""
    cdef fg_node *n = NULL
    if fg_new_constant(_arena(), x, &n) != FG_OK:
        raise MemoryError("fastgrad's node arena is out of memory")
    return n


# how many threads are inside no_grad() now, so that an op outside any pays one C test
cdef int _no_grad_threads = 0


def _watch_no_grad(count):
    global _no_grad_threads
    _no_grad_threads = count


watch_no_grad(_watch_no_grad)


cdef inline object _result(fg_node *out):
    """The Value of an op's new node; inside no_grad(), a constant leaf with its data instead
    (no graph, no grad)."""
    cdef double data
    cdef fg_node *leaf
    if _no_grad_threads and inside_no_grad():
        data = out.data
        fg_decref(_arena(), out)
        leaf = _leaf(data)
        leaf.flags |= FG_NO_GRAD
        return _wrap(leaf)
    return _wrap(out)


cdef inline Value _wrap(fg_node *n):
    """A new Value handle on n, taking over the caller's reference."""
    cdef Value v = Value.__new__(Value)
    v.node = n
    n.handle = <void *>v
    return v


cdef inline object _handle(fg_node *n):
    """n's live handle if it has one (so that _prev gives back the same objects), else a new one."""
    cdef void *seen
    cdef PyObject *h = fg_take_handle(n, &seen)
    cdef Value v
    if h is not NULL:
        return _owned(h)
    fg_incref(n)
    return _new_handle(n, seen)


cdef inline Value _new_handle(fg_node *n, void *seen):
    """A new Value on n, taking over a reference, made n's handle unless another thread
    made one since `seen` was read."""
    cdef Value v = Value.__new__(Value)
    v.node = n
    fg_install_handle(n, seen, <void *>v)
    return v


cdef inline object _owned(PyObject *h):
    """An object from a new reference (Cython's <object> would add another)."""
    result = <object>h
    Py_DECREF(result)
    return result


cdef inline fg_node *_node_of(Value v) except NULL:
    """v's node, holding what eager code would have left in it: a node that a tape recorded
    gets the writes its replay left waiting first."""
    cdef fg_node *n = v.node
    if n is NULL or (n.flags & (FG_TAPED | FG_TAPED_OUTPUT) and _unsynced_tapes):
        return _node_brought_up_to_date(v)
    return n


cdef fg_node *_node_brought_up_to_date(Value v) except NULL:
    """_node_of's rare path, apart so that the common one inlines."""
    cdef fg_node *n = v.node
    if n is NULL:
        raise ValueError(never_initialised("Value"))
    _sync_tapes(not (n.flags & FG_TAPED))
    return n


cdef inline int _sync_all_tapes() except -1:
    """Every node as eager code would have left it, before a pass that reads whole graphs."""
    if _unsynced_tapes:
        _sync_tapes(False)
    return 0


cdef object _binary(fg_op op, object left, object right):
    """left op right, with a Value on either side or both; a number becomes a constant leaf."""
    cdef fg_node *a
    cdef fg_node *out = NULL
    cdef fg_status status
    cdef double x
    cdef bint number_first
    if PyFloat_CheckExact(left):  # 2.0 * a: spare isinstance its walk over float's bases
        x = PyFloat_AS_DOUBLE(left)
        number_first = True
    elif isinstance(left, Value):
        a = _node_of(<Value>left)
        if isinstance(right, Value):
            status = fg_new_binary(_arena(), op, a, _node_of(<Value>right), &out)
            if status != FG_OK:
                _raise(status, _symbols[op], (a.data, (<Value>right).node.data))
            return _result(out)
        if not _number(right, &x):
            return _not_implemented(left, right)
        number_first = False
    elif _number(left, &x):
        number_first = True
    else:
        return _not_implemented(left, right)
    if number_first:
        if not isinstance(right, Value):
            return NotImplemented
        a = _node_of(<Value>right)
    status = fg_new_binary_number(_arena(), op, a, x, number_first, &out)
    if status != FG_OK:
        _raise(status, _symbols[op], (x, a.data) if number_first else (a.data, x))
    return _result(out)


cdef object _not_implemented(object left, object right):
    """NotImplemented (Python then raises its TypeError), but for Values of both engines,
    which get a TypeError naming them."""
    error = mixed_engines(left, right)
    if error is not None:
        raise error
    return NotImplemented


cdef Value _unary(fg_op op, Value v, double exponent=0.0):
    cdef fg_node *a = _node_of(v)
    cdef fg_node *out = NULL
    cdef fg_status status
    if op == FG_POWC:
        status = fg_new_powc(_arena(), a, exponent, &out)
    else:
        status = fg_new_unary(_arena(), op, a, &out)
    if status != FG_OK:
        _raise(status, "**c" if op == FG_POWC else _symbols[op], (a.data,), exponent)
    return _result(out)


@cython.freelist(1024)
cdef class Value:
    """Stores a single scalar value and its gradient: micrograd's Value, a node of a C arena.

    Arithmetic (+ - * / **, and the reflected forms with plain numbers), relu(), tanh(),
    exp(), log() and the rest build new Values; backward() fills every .grad below.

    Args:
        data (float): the number, a real number (an int, a float, a numpy scalar, anything
            with __float__).
        _children (Iterable[Value]): micrograd's internal argument: the Values this one was made from; a
            Value made this way is opaque to backward (its children get no gradient).
        _op (str): micrograd's internal argument: the op's name, for drawings.
        label (str): a name, shown by drawings and repr.
        requires_grad (bool): False makes a constant: backward() gives it no gradient and skips
            the nodes made from constants alone.

    Raises:
        TypeError: data is not a real number, a child is not a Value, or _op, label or
            requires_grad has the wrong type.
    """

    __array_priority__ = _NUMPY_SCALAR_DEFERS  # np.float64(2) * v calls v.__rmul__ directly

    def __init__(self, data, _children=(), _op="", label="", *, requires_grad=True):
        cdef double x = _as_double(data, "Value data")
        cdef tuple children = tuple(_children)
        cdef Py_ssize_t i, count = len(children)
        cdef fg_node **args
        cdef fg_node *n = NULL
        cdef fg_status status
        if self.node is not NULL:
            raise RuntimeError(_INITIALISED_TWICE)
        for child in children:
            if not isinstance(child, Value):
                raise TypeError(f"Value children must be Values, not {type(child).__name__!r}")
            _node_of(<Value>child)
        if not isinstance(_op, str):
            raise TypeError(f"Value _op must be a str, not {type(_op).__name__!r}")
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, not {type(label).__name__!r}")
        if type(requires_grad) is not bool:
            raise TypeError(f"requires_grad must be True or False, not "
                            f"{type(requires_grad).__name__!r}")
        if count == 0:
            n = _leaf(x)
        else:
            args = <fg_node **>PyMem_Malloc(count * sizeof(fg_node *))
            if args is NULL:
                raise MemoryError()
            for i in range(count):
                args[i] = (<Value>children[i]).node
            status = fg_new_opaque(_arena(), x, args, <uint32_t>count, &n)
            PyMem_Free(args)
            if status != FG_OK:
                _raise(status, "Value", ())
        self.node = n
        n.handle = <void *>self
        if not requires_grad:
            n.flags |= FG_NO_GRAD
        if _op:
            _opnames[<size_t>n] = str(_op)
            n.flags |= FG_EXTRA
        if label:
            self.label = label

    def __dealloc__(self):
        cdef fg_node *n = self.node
        if n is not NULL:
            fg_clear_handle(n, <void *>self)
            fg_decref(_releasing_arena(), n)

    # ---- attributes ----

    @property
    def data(self):
        """The number this Value holds (a float); settable, as micrograd's attribute."""
        return _node_of(self).data

    @data.setter
    def data(self, value):
        _node_of(self).data = _as_double(value, "data")

    @data.deleter
    def data(self):
        raise AttributeError("a Value's data cannot be deleted (set it to a number instead)")

    @property
    def grad(self):
        """d root / d self after root.backward() (a float, 0.0 before); settable."""
        return _node_of(self).grad

    @grad.setter
    def grad(self, value):
        _node_of(self).grad = _as_double(value, "grad")

    @grad.deleter
    def grad(self):
        raise AttributeError("a Value's grad cannot be deleted (set it to 0.0 instead)")

    @property
    def label(self):
        """A name for drawings (fastgrad.viz.draw_dot); "" unless set."""
        cdef fg_node *n = _node_of(self)
        if not (n.flags & FG_EXTRA):
            return ""
        return _labels.get(<size_t>n, "")

    @label.setter
    def label(self, value):
        cdef fg_node *n = _node_of(self)
        if not isinstance(value, str):
            raise TypeError(f"label must be a str, not {type(value).__name__!r}")
        if value:
            _labels[<size_t>n] = str(value)
            n.flags |= FG_EXTRA
        else:
            _labels.pop(<size_t>n, None)

    @property
    def _op(self):
        cdef fg_node *n = _node_of(self)
        if n.flags & FG_EXTRA:
            name = _opnames.get(<size_t>n)
            if name is not None:
                return name
        if n.op == FG_POWC:
            return "**" + exponent_text(n.exponent)
        return _symbols[n.op]

    @property
    def _prev(self):
        cdef uint32_t count, i
        cdef fg_node *const *operands = fg_operands(_node_of(self), &count)
        return {_handle(operands[i]) for i in range(count)}

    def __repr__(self):
        cdef fg_node *n = _node_of(self)
        return f"Value(data={n.data!r}, grad={n.grad!r})"

    # ---- building the graph ----

    def __add__(left, right):  # left + right, either of them this Value
        return _binary(FG_ADD, left, right)

    def __sub__(left, right):
        return _binary(FG_SUB, left, right)

    def __mul__(left, right):
        return _binary(FG_MUL, left, right)

    def __truediv__(left, right):
        return _binary(FG_DIV, left, right)

    def __pow__(left, right, modulo):  # a ** c with a number c is micrograd's **c node
        cdef double exponent
        if modulo is not None:
            return NotImplemented
        if isinstance(left, Value) and not isinstance(right, Value):
            if not _number(right, &exponent):
                return _not_implemented(left, right)
            return _unary(FG_POWC, <Value>left, exponent)
        return _binary(FG_POW, left, right)

    def __neg__(self):  # -self
        return _unary(FG_NEG, self)

    def relu(self):
        """max(0, x) as a new Value; its derivative is 1 where x > 0, else 0."""
        return _unary(FG_RELU, self)

    def tanh(self):
        """tanh(x) as a new Value; derivative 1 - tanh(x)**2."""
        return _unary(FG_TANH, self)

    def exp(self):
        """e**x as a new Value; derivative e**x."""
        return _unary(FG_EXP, self)

    def log(self):
        """The natural log as a new Value; derivative 1 / x.

        Raises:
            ValueError: x <= 0 (math domain error, as math.log raises it)."""
        return _unary(FG_LOG, self)

    def sigmoid(self):
        """1 / (1 + e**-x) as a new Value; derivative s * (1 - s)."""
        return _unary(FG_SIGMOID, self)

    def __abs__(self):  # abs(self)
        return _unary(FG_ABS, self)

    def sqrt(self):
        """The square root as a new Value; derivative 1 / (2 sqrt(x)).

        Raises:
            ValueError: x < 0 (math domain error)."""
        return _unary(FG_SQRT, self)

    def sin(self):
        """sin(x) as a new Value; derivative cos(x)."""
        return _unary(FG_SIN, self)

    def cos(self):
        """cos(x) as a new Value; derivative -sin(x)."""
        return _unary(FG_COS, self)

    def softplus(self):
        """log(1 + e**x), computed without overflow, as a new Value; derivative sigmoid(x)."""
        return _unary(FG_SOFTPLUS, self)

    # ---- comparisons: on .data, so max() and min() pick a Value; == stays identity ----

    def __lt__(self, other):
        cdef double x
        return _node_of(self).data < x if _compared(other, &x) else NotImplemented

    def __le__(self, other):
        cdef double x
        return _node_of(self).data <= x if _compared(other, &x) else NotImplemented

    def __gt__(self, other):
        cdef double x
        return _node_of(self).data > x if _compared(other, &x) else NotImplemented

    def __ge__(self, other):
        cdef double x
        return _node_of(self).data >= x if _compared(other, &x) else NotImplemented

    def __hash__(self):  # identity, as micrograd's (Values live in sets)
        return object.__hash__(self)

    def __float__(self):
        raise value_is_not_a_number(self)

    def item(self):
        """The number this Value holds (its .data), as PyTorch's Tensor.item()."""
        return _node_of(self).data

    def __format__(self, spec):
        """format(v, ".3f") and f"{v:.3f}" format .data; an empty spec gives repr(v)."""
        return format(_node_of(self).data, spec) if spec else repr(self)

    def detach(self):
        """A new leaf holding this Value's data, outside any graph, that requires no grad (a
        constant: no gradient flows back through it)."""
        return Value(_node_of(self).data, requires_grad=False)

    @property
    def requires_grad(self):
        """Whether backward computes a grad for it: False for a Value(x, requires_grad=False),
        a detach(), and what ops make from such Values alone (numbers aside)."""
        return not (_node_of(self).flags & FG_NO_GRAD)

    # ---- the chain rule ----

    def _backward(self):
        """Runs this node's local chain rule once, as micrograd's closure does."""
        _sync_all_tapes()
        cdef fg_node *n = _node_of(self)
        cdef fg_status status = fg_node_backward(n)
        if status != FG_OK:
            _raise_backward(status, n)

    def backward(self):
        """Backpropagates from this Value (its grad seeded with 1.0, as micrograd does): adds
        d self / d node to the .grad of every node below it that requires grad, in one
        iterative pass (no recursion limit). Grads accumulate; zero them between steps.

        Raises:
            RuntimeError: this Value requires no grad (made under no_grad(), or from leaves
                that require none).
            ZeroDivisionError, ValueError, OverflowError: a local derivative that fails, as
                micrograd's Python arithmetic raises it; no grad changes then.
        """
        cdef fg_node *failed = NULL
        _sync_all_tapes()
        if _node_of(self).flags & (FG_NO_GRAD | FG_CHOSEN) == FG_NO_GRAD:
            raise RuntimeError(no_grad_root("backward()"))
        cdef fg_status status = fg_backward(_arena(), _node_of(self), &failed)
        if status != FG_OK:
            _raise_backward(status, failed)

    # ---- pickle and copy.deepcopy: the graph below this Value, as records ----

    def __reduce__(self):
        _sync_all_tapes()
        return (_rebuild, (_records(_node_of(self)),))


register_value_class(Value, __name__)


include "_derive.pxi"
include "_nary.pxi"
include "_parameters.pxi"

include "_tape.pxi"


def simd():
    """The vector kernel Tape.run's row loops use: "avx512", "avx2" or "sse2" on x86-64,
    "neon" on arm64, "scalar" (one double at a time) anywhere. The widest the CPU runs is
    chosen at import, unless the environment variable FASTGRAD_SIMD names another. Every
    kernel gives the same bits."""
    return fg_simd_selected().decode()


def _simd_kernels():
    """Every kernel built in, widest first, as (name, whether this CPU runs it)."""
    kernels = []
    cdef size_t i = 0
    while fg_simd_kernel(i) is not NULL:
        name = fg_simd_kernel(i).decode()
        kernels.append((name, fg_simd_supported(fg_simd_kernel(i)) == 1))
        i += 1
    return kernels


def _select_simd(name, str source="_select_simd"):
    """Makes the kernel called name Tape.run's (while no run is going on); returns the one
    before. ValueError for a name that is not a kernel or that this CPU cannot run."""
    before = simd()
    encoded = str(name).encode()
    chosen = fg_simd_select(encoded)
    if chosen != 1:
        kernels = _simd_kernels()
        runs = ", ".join(k for k, supported in kernels if supported)
        if chosen < 0:
            why = f"is not one of fastgrad's SIMD kernels ({', '.join(k for k, _ in kernels)})"
        else:
            why = "needs an instruction set this CPU lacks"
        raise ValueError(f"{source}: {name!r} {why}; this CPU runs {runs}")
    return before


if os.environ.get("FASTGRAD_SIMD"):
    _select_simd(os.environ["FASTGRAD_SIMD"], "FASTGRAD_SIMD")


def _run_min_work(node_rows):
    """Sets the node-rows of work below which run() uses fewer threads than asked (tests set
    0, so that every thread they ask for runs); returns the one before."""
    return fg_run_min_work(node_rows)


def _arena_stats():
    """Live nodes, node capacity and bytes held by the calling thread's arena (for tests and
    benchmarks)."""
    cdef fg_arena *A = _arena()
    return fg_arena_live(A), fg_arena_capacity(A), fg_arena_bytes(A)


def _arena_count():
    """How many arenas there are: threads that end give theirs back to the next (for tests)."""
    return len(_arenas)


def _all_arenas_live():
    """Live nodes over every thread's arena (for tests; exact when no other thread runs)."""
    with _arena_lock:
        addresses = list(_arenas)
    return builtins_sum(fg_arena_live(<fg_arena *><size_t>a) for a in addresses)
