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
    """stores a single scalar value and its gradient"""

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
        return _node_of(self).data

    @data.setter
    def data(self, value):
        _node_of(self).data = _as_double(value, "data")

    @data.deleter
    def data(self):
        raise AttributeError("a Value's data cannot be deleted (set it to a number instead)")

    @property
    def grad(self):
        return _node_of(self).grad

    @grad.setter
    def grad(self, value):
        _node_of(self).grad = _as_double(value, "grad")

    @grad.deleter
    def grad(self):
        raise AttributeError("a Value's grad cannot be deleted (set it to 0.0 instead)")

    @property
    def label(self):
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
        return _unary(FG_RELU, self)

    def tanh(self):
        return _unary(FG_TANH, self)

    def exp(self):
        return _unary(FG_EXP, self)

    def log(self):
        return _unary(FG_LOG, self)

    def sigmoid(self):
        return _unary(FG_SIGMOID, self)

    def __abs__(self):  # abs(self)
        return _unary(FG_ABS, self)

    def sqrt(self):
        return _unary(FG_SQRT, self)

    def sin(self):
        return _unary(FG_SIN, self)

    def cos(self):
        return _unary(FG_COS, self)

    def softplus(self):
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


def gradients(output, inputs, *, create_graph=False):
    """d output / d input for each input (a Value, or a list of Values: then a list), as
    output.backward() leaves them in the inputs' .grad when every grad is 0.0 first, bit for
    bit, without touching any .grad. With create_graph=True, Values holding those numbers,
    built as ordinary nodes from each op's derivative formula, so that they can be combined,
    backpropagated and differentiated again. An input the output does not reach gets 0.0.
    A derivative that fails raises what backward() raises, and builds nothing."""
    cdef fg_node **nodes
    cdef fg_node **made
    cdef double *values
    cdef fg_node *failed = NULL
    cdef fg_status status
    cdef Py_ssize_t i, count
    if not isinstance(output, Value):
        raise TypeError(f"gradients() of {type(output).__name__!r}: the output must be a Value")
    single = isinstance(inputs, Value)
    items = [inputs] if single else _gradient_inputs(inputs)
    count = len(items)
    nodes = <fg_node **>PyMem_Malloc((2 * count + 1) * sizeof(fg_node *))
    values = <double *>PyMem_Malloc((count + 1) * sizeof(double))
    if nodes is NULL or values is NULL:
        PyMem_Free(nodes)
        PyMem_Free(values)
        raise MemoryError()
    made = nodes + count
    try:
        _sync_all_tapes()
        for i in range(count):
            nodes[i] = _node_of(<Value>items[i])
            if nodes[i].flags & FG_NO_GRAD:
                raise RuntimeError(no_grad_input(i))
        status = fg_gradients(_arena(), _node_of(<Value>output), nodes, count,
                              1 if create_graph else 0, values, made, &failed)
        if status != FG_OK:
            _raise_backward(status, failed)
        if create_graph:
            result = [_take(made[i]) for i in range(count)]
        else:
            result = [values[i] for i in range(count)]
    finally:
        PyMem_Free(nodes)
        PyMem_Free(values)
    return result[0] if single else result


def _constant_leaf(x):
    """A constant leaf for the number x, as the 2.0 of x * 2.0: a Tape keeps it in its program."""
    return _wrap(_constant(_as_double(x, "constant")))


cdef list _gradient_inputs(object inputs):
    try:
        items = list(inputs)
    except TypeError:
        raise TypeError(f"gradients() inputs must be a Value or a list of Values, not "
                        f"{type(inputs).__name__!r}") from None
    for v in items:
        if not isinstance(v, Value):
            raise TypeError(f"gradients() inputs must be Values, not {type(v).__name__!r}")
    return items


cdef object _take(fg_node *n):
    """n's Value, taking over the caller's reference: its live handle if it has one."""
    cdef void *seen
    cdef PyObject *h = fg_take_handle(n, &seen)
    if h is not NULL:
        fg_decref(_arena(), n)
        return _owned(h)
    return _new_handle(n, seen)


cdef dict _op_of_rule = {("**c" if i == FG_POWC else _symbols[i]): i
                         for i in range(FG_OP_COUNT) if i != FG_LEAF and i != FG_OPAQUE}


cdef list _records(fg_node *root):
    """The graph below root, operands before the nodes that use them, one record a node:
    (rule, data, grad, label, operand numbers, exponent, constant, op name). The format of
    reference.Value._records too."""
    cdef fg_node *const *order
    cdef fg_node *const *operands
    cdef fg_node *n
    cdef size_t length, i
    cdef uint32_t count, j
    cdef fg_status status = fg_topo(_arena(), root, &order, &length)
    if status != FG_OK:
        _raise(status, "pickle", ())
    last = {<size_t>order[i]: i for i in range(length)}  # an n-ary node is there per term
    number = {}
    records = []
    for i in range(length):
        n = order[i]
        if last[<size_t>n] != i:
            continue  # recorded at its last entry, once all its operands are
        operands = fg_operands(n, &count)
        extra = n.flags & FG_EXTRA
        leaf_like = n.op == FG_LEAF or n.op == FG_OPAQUE
        records.append((
            "" if leaf_like else _rule(n), n.data, n.grad,
            _labels.get(<size_t>n, "") if extra else "",
            tuple([number[<size_t>operands[j]] for j in range(count)]),
            n.exponent if n.op == FG_POWC else 0.0,
            bool(n.flags & FG_CONSTANT),
            _opnames.get(<size_t>n, "") if extra and leaf_like else "",
            not (n.flags & FG_NO_GRAD),
        ))
        number[<size_t>n] = len(records) - 1
    return records


def _graph(roots):
    """The graph below the roots, each node once, operands before the nodes that use them:
    per node (its Value, rule, operand Values, exponent, constant); a leaf's rule is "".
    Forward mode (fastgrad.jvp) walks it. The twin of reference.value._graph."""
    cdef fg_node *const *order
    cdef fg_node *const *operands
    cdef fg_node *n
    cdef size_t length, i
    cdef uint32_t count, j
    cdef fg_status status
    _sync_all_tapes()
    handles = {}
    nodes = []
    for root in roots:
        status = fg_topo(_arena(), _node_of(<Value>root), &order, &length)
        if status != FG_OK:
            _raise(status, "jvp", ())
        last = {<size_t>order[i]: i for i in range(length)}  # an n-ary node is there per term
        for i in range(length):
            n = order[i]
            if last[<size_t>n] != i or <size_t>n in handles:
                continue
            operands = fg_operands(n, &count)
            v = _handle(n)
            leaf_like = n.op == FG_LEAF or n.op == FG_OPAQUE
            nodes.append((v, "" if leaf_like else _rule(n),
                          tuple([handles[<size_t>operands[j]] for j in range(count)]),
                          n.exponent if n.op == FG_POWC else 0.0, bool(n.flags & FG_CONSTANT)))
            handles[<size_t>n] = v
    return nodes


def _rebuild(records):
    """The Value (and the graph below it) that _records described, data and grads as
    stored: nothing is computed again."""
    cdef Py_ssize_t i, made = 0, count = len(records)
    cdef fg_node **nodes
    cdef fg_node *args[SMALL]
    cdef fg_node **operands
    cdef fg_node *n = NULL
    cdef fg_status status
    cdef uint32_t k, arity
    if count == 0:
        raise ValueError("no records to rebuild a Value from")
    nodes = <fg_node **>PyMem_Malloc(count * sizeof(fg_node *))
    if nodes is NULL:
        raise MemoryError()
    try:
        for i in range(count):
            rule, data, grad, label, children, exponent, constant, opname = records[i][:8]
            requires_grad = records[i][8] if len(records[i]) > 8 else True
            arity = len(children)
            if any(not (0 <= c < i) for c in children):
                raise ValueError(f"record {i} refers to a node not before it")
            leaf_like = rule == ""
            op = (FG_OPAQUE if arity else FG_LEAF) if leaf_like else _op_of_rule.get(rule)
            if op is None:
                raise ValueError(f"record {i}: unknown op {rule!r}")
            operands = &args[0]
            if arity > SMALL:
                operands = <fg_node **>PyMem_Malloc(arity * sizeof(fg_node *))
                if operands is NULL:
                    raise MemoryError()
            for k in range(arity):
                operands[k] = nodes[children[k]]
            status = fg_new_node(_arena(), <fg_op>op, _as_double(data, "data"), operands, arity,
                                 _as_double(exponent, "exponent"), &n)
            if operands is not &args[0]:
                PyMem_Free(operands)
            if status == FG_BAD_ARGUMENT:
                raise ValueError(f"record {i}: {rule!r} does not take {arity} operands")
            if status != FG_OK:
                _raise(status, "unpickle", ())
            nodes[made] = n
            made += 1
            n.grad = _as_double(grad, "grad")
            if constant:
                n.flags |= FG_CONSTANT
            if leaf_like and not requires_grad:  # (an op's node is the operands' to say)
                n.flags |= FG_NO_GRAD
            if label or opname:
                n.flags |= FG_EXTRA
                if label:
                    _labels[<size_t>n] = str(label)
                if opname:
                    _opnames[<size_t>n] = str(opname)
        made -= 1  # the root's reference goes to its Value; parents hold the others
        return _wrap(nodes[made])
    finally:
        for i in range(made):
            fg_decref(_arena(), nodes[i])
        PyMem_Free(nodes)


cdef enum:
    SMALL = 64  # operands that fit on the stack: a neuron of up to 31 inputs


cdef inline int _operand_node(PyObject *item, fg_node **slot, fg_node **constants,
                              Py_ssize_t *made, str what) except -1:
    """The node for one operand of sum or dot: a Value's own, or a new constant leaf for a
    number (kept in `constants`, whose references the caller drops once the node holds them)."""
    cdef double x
    if isinstance(<object>item, Value):
        slot[0] = _node_of(<Value>item)
    elif _number(<object>item, &x):
        slot[0] = constants[made[0]] = _constant(x)
        made[0] += 1
    else:
        raise not_a_number(what, <object>item)
    return 0


cdef object _nary(fg_op op, object first, object second, object start, str what):
    """One SUM node over start and `first`, or one DOT node over start and the pairs of
    `first` and `second`; numbers become constant leaves."""
    cdef Py_ssize_t i, n, terms, count, made = 0
    cdef fg_node *small_args[SMALL]
    cdef fg_node *small_constants[SMALL]
    cdef fg_node **args = small_args
    cdef fg_node **constants = small_constants
    cdef fg_node *out = NULL
    cdef fg_status status = FG_OK
    cdef int stride = 1 if second is None else 2
    cdef PyObject **first_items
    cdef PyObject **second_items
    firsts = first if type(first) is list or type(first) is tuple else list(first)
    seconds = None
    terms = len(firsts)
    if stride == 2:
        seconds = second if type(second) is list or type(second) is tuple else list(second)
        if len(seconds) != terms:
            raise ValueError(f"dot() of {terms} weights and {len(seconds)} inputs")
    if terms == 0:
        return start if isinstance(start, Value) else _wrap(_leaf(_as_double(start, "start")))
    count = 1 + stride * terms
    if count > <Py_ssize_t>0xFFFFFFFF:
        raise OverflowError(f"{_symbols[op]}() of more than 2**32 - 1 operands")
    if count > SMALL:
        args = <fg_node **>PyMem_Malloc(count * sizeof(fg_node *))
        constants = <fg_node **>PyMem_Malloc(count * sizeof(fg_node *))
        if args is NULL or constants is NULL:
            PyMem_Free(args)
            PyMem_Free(constants)
            raise MemoryError()
    try:
        _operand_node(<PyObject *>start, &args[0], constants, &made, "start")
        first_items = PySequence_Fast_ITEMS(firsts)  # firsts, seconds: lists or tuples
        if stride == 1:
            for i in range(terms):
                _operand_node(first_items[i], &args[1 + i], constants, &made, what)
        else:
            second_items = PySequence_Fast_ITEMS(seconds)
            for i in range(terms):
                _operand_node(first_items[i], &args[1 + 2 * i], constants, &made, what)
                _operand_node(second_items[i], &args[2 + 2 * i], constants, &made, what)
        status = fg_new_nary(_arena(), op, args, <uint32_t>count, &out)
    finally:
        for i in range(made):
            fg_decref(_arena(), constants[i])
        if args is not small_args:
            PyMem_Free(args)
            PyMem_Free(constants)
    if status != FG_OK:
        _raise(status, _symbols[op], ())
    return _result(out)


def sum(values, start=0.0):
    """((start + v0) + v1) + ... as one node, bit for bit the chain of + it replaces."""
    return _nary(FG_SUM, values, None, start, "sum() term")


def dot(ws, xs, start=0.0):
    """start + w0*x0 + w1*x1 + ... as one node, bit for bit the chain it replaces."""
    return _nary(FG_DOT, ws, xs, start, "dot() operand")


no_grad = no_grad  # the one context manager of both engines (fastgrad._common)


def maximum(a, b):
    """The larger of a and b as one node (a on a tie, nan if either is nan), evaluated again
    by every replay; its grad goes to the one it picked. Either may be a number."""
    result = _binary(FG_MAX, a, b)
    if result is NotImplemented:
        raise TypeError(f"maximum() takes Values or numbers, one a Value, not "
                        f"{type(a).__name__!r} and {type(b).__name__!r}")
    return result


def _finite(v):
    """v where it is finite, else 0.0, as a node: logsumexp's shift."""
    return _unary(FG_FINITE, v)


def _choice(rule, a, b=None):
    """A node of a choice op (sign, isfinite, iszero of a; picks_a of a and b), which
    carries no gradient: how a derivative built as a graph keeps a choice made from data."""
    op = {"sign": FG_SIGN, "isfinite": FG_ISFINITE, "iszero": FG_ISZERO,
          "picks_a": FG_PICKS_A}.get(rule)
    if op is None:
        raise ValueError(f"{rule!r} is not a choice")
    if op == FG_PICKS_A:
        return _binary(op, a, b)
    if not isinstance(a, Value):
        a = _constant_leaf(a)
    return _unary(op, a)


def _class_index(target, classes):
    """target as an index among `classes` classes, as a node (IndexError where it is not a
    whole number from 0 to classes - 1), checked again by every replay."""
    return _binary(FG_CLASS, target, classes)


def _pick(v, offset):
    """v where offset is 0, else -0.0, as a node: one class's term of a picked score."""
    return _binary(FG_PICK, v, offset)


cdef dict _rules = {fg_rule_name(<fg_rule>i).decode(): i for i in range(FG_RULE_COUNT)}


def _read_parameters(parameters, double[::1] out, bint grads):
    """Each parameter's data (or grad) into out, in order, in one pass (nn.utils'
    parameters_to_vector and grads_to_vector)."""
    cdef list listed = parameters if type(parameters) is list else list(parameters)
    cdef Py_ssize_t i, count = len(listed)
    cdef object p
    cdef fg_node *n
    if out.shape[0] != count:
        raise ValueError(f"{out.shape[0]} places for {count} parameters")
    for i in range(count):
        p = listed[i]
        if type(p) is not Value and not isinstance(p, Value):
            raise TypeError(f"parameters must be Values, not {type(p).__name__!r}")
        n = _node_of(<Value>p)
        out[i] = n.grad if grads else n.data


def _write_parameters(parameters, const double[::1] values, bint grads):
    """Each parameter's data (or grad) to values' entry, in order; every item is checked
    before any is written (nn.utils' vector_to_parameters and vector_to_grads)."""
    cdef list listed = parameters if type(parameters) is list else list(parameters)
    cdef Py_ssize_t i, count = len(listed)
    cdef object p
    cdef fg_node **nodes
    if values.shape[0] != count:
        raise ValueError(f"{values.shape[0]} numbers for {count} parameters")
    nodes = <fg_node **>PyMem_Malloc(max(count, 1) * sizeof(fg_node *))
    if nodes is NULL:
        raise MemoryError()
    try:
        for i in range(count):
            p = listed[i]
            if type(p) is not Value and not isinstance(p, Value):
                raise TypeError(f"parameters must be Values, not {type(p).__name__!r}")
            nodes[i] = _node_of(<Value>p)
        if grads:
            for i in range(count):
                nodes[i].grad = values[i]
        else:
            for i in range(count):
                nodes[i].data = values[i]
    finally:
        PyMem_Free(nodes)


cdef class _Parameters:
    """The parameter nodes of one optimizer group, and the C loops that update them: the
    kernels of fastgrad.optim (reference/optim.py has their Python twins). The state arrays
    are float64 numpy arrays of one entry per parameter, updated in place."""

    cdef fg_node **nodes
    cdef Py_ssize_t count
    cdef readonly list params

    def __init__(self, params):
        cdef Py_ssize_t i
        if self.nodes is not NULL:
            raise RuntimeError("_Parameters is initialised once")
        cdef list listed = list(params)
        cdef object p
        self.nodes = <fg_node **>PyMem_Malloc(max(len(listed), 1) * sizeof(fg_node *))
        if self.nodes is NULL:
            raise MemoryError()
        for i in range(len(listed)):
            p = listed[i]
            if type(p) is not Value and not isinstance(p, Value):
                raise TypeError(f"optimizer parameters must be Values, not {type(p).__name__!r}")
            self.nodes[i] = _node_of(<Value>p)  # alive while self.params holds them
        self.params, self.count = listed, len(listed)

    def __dealloc__(self):
        PyMem_Free(self.nodes)

    def __len__(self):
        return self.count

    cdef double *_state(self, double[::1] array) except? NULL:
        if array.shape[0] != self.count:
            raise ValueError(f"an optimizer state array has {array.shape[0]} entries for "
                             f"{self.count} parameters")
        return &array[0] if self.count else NULL

    def sgd(self, double lr, double momentum, double dampening, double weight_decay,
            bint nesterov, bint maximize, double[::1] momentum_buffer,
            unsigned char[::1] has_buffer):
        cdef fg_sgd_options o = fg_sgd_options(lr, momentum, dampening, weight_decay,
                                               nesterov, maximize)
        cdef double *buffer = self._state(momentum_buffer)
        if has_buffer.shape[0] != self.count:
            raise ValueError("an optimizer state array does not fit its parameters")
        with cython.critical_section(self):  # one step at a time per parameter group
            fg_sgd_step(self.nodes, self.count, &o, buffer,
                        &has_buffer[0] if self.count else NULL)

    def adam(self, double lr, double beta1, double beta2, double eps, double weight_decay,
             bint decoupled, bint amsgrad, bint maximize, double[::1] step,
             double[::1] exp_avg, double[::1] exp_avg_sq, double[::1] max_exp_avg_sq):
        cdef fg_adam_options o = fg_adam_options(lr, beta1, beta2, eps, weight_decay, decoupled,
                                                 amsgrad, maximize)
        with cython.critical_section(self):  # one step at a time per parameter group
            fg_adam_step(self.nodes, self.count, &o, self._state(step), self._state(exp_avg),
                         self._state(exp_avg_sq), self._state(max_exp_avg_sq))

    def rmsprop(self, double lr, double alpha, double eps, double weight_decay,
                double momentum, bint centered, bint maximize, double[::1] step,
                double[::1] square_avg, double[::1] grad_avg, double[::1] momentum_buffer):
        cdef fg_rmsprop_options o = fg_rmsprop_options(lr, alpha, eps, weight_decay, momentum,
                                                       centered, maximize)
        with cython.critical_section(self):  # one step at a time per parameter group
            fg_rmsprop_step(self.nodes, self.count, &o, self._state(step), self._state(square_avg),
                            self._state(grad_avg), self._state(momentum_buffer))

    def rule(self, str name, hyper, states):
        """One step of a rule of optim.c's table: its hyperparameters (numbers, booleans as
        0 or 1) and state arrays, in its row's order."""
        cdef double values[16]
        cdef double *arrays[8]
        cdef Py_ssize_t i, hyper_count = len(hyper), state_count = len(states)
        cdef fg_status status
        rule = _rules.get(name)
        if rule is None or hyper_count > 16 or state_count > 8:
            raise ValueError(f"no optimizer rule {name!r} of {hyper_count} hyperparameters and "
                             f"{state_count} states")
        for i in range(hyper_count):
            values[i] = hyper[i]
        for i in range(state_count):
            arrays[i] = self._state(states[i])
        with cython.critical_section(self):  # one step at a time per parameter group
            status = fg_rule_step(<fg_rule>rule, self.nodes, self.count, values, hyper_count,
                                  arrays, state_count)
        if status != FG_OK:
            raise ValueError(f"optimizer rule {name!r} takes other counts than {hyper_count} "
                             f"hyperparameters and {state_count} states")

    def zero_grad(self):
        with cython.critical_section(self):  # one step at a time per parameter group
            fg_zero_grad(self.nodes, self.count)

    def fill_grads(self, double value):
        """Every parameter's grad to value."""
        cdef Py_ssize_t i
        with cython.critical_section(self):
            for i in range(self.count):
                self.nodes[i].grad = value

    def read_grads(self, double[::1] out):
        """The parameters' grads into out, in order."""
        cdef Py_ssize_t i
        self._fits(out.shape[0], "grads")
        with cython.critical_section(self):
            for i in range(self.count):
                out[i] = self.nodes[i].grad

    def write_grads(self, const double[::1] values):
        """Each parameter's grad to values' entry, in order."""
        cdef Py_ssize_t i
        self._fits(values.shape[0], "grads")
        with cython.critical_section(self):
            for i in range(self.count):
                self.nodes[i].grad = values[i]

    def read_data(self, double[::1] out):
        """The parameters' data into out, in order."""
        cdef Py_ssize_t i
        self._fits(out.shape[0], "data")
        with cython.critical_section(self):
            for i in range(self.count):
                out[i] = self.nodes[i].data

    def write_data(self, const double[::1] values):
        """Each parameter's data to values' entry, in order."""
        cdef Py_ssize_t i
        self._fits(values.shape[0], "data")
        with cython.critical_section(self):
            for i in range(self.count):
                self.nodes[i].data = values[i]

    cdef int _fits(self, Py_ssize_t length, str what) except -1:
        if length != self.count:
            raise ValueError(f"{length} numbers for the {what} of {self.count} parameters")
        return 0


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
