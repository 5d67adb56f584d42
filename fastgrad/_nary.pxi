# Part of _core.pyx (included there): the n-ary ops (sum, dot) built in one call from
# Python sequences, maximum, and the choice ops a derivative graph records.


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
    """((start + v0) + v1) + ... as one node, bit for bit the chain of + it replaces.

    Args:
        values: the terms, Values or numbers.
        start: the number the sum starts from.

    Returns:
        The sum, a Value (one node, however many terms).

    Raises:
        TypeError: a term is not a Value or a real number.
    """
    return _nary(FG_SUM, values, None, start, "sum() term")


def dot(ws, xs, start=0.0):
    """start + w0*x0 + w1*x1 + ... as one node, bit for bit the chain it replaces.

    Args:
        ws: the weights, Values or numbers.
        xs: the inputs, Values or numbers, as many as ws.
        start: the number the sum starts from (a neuron's bias goes here as a Value).

    Returns:
        The dot product, a Value (one node).

    Raises:
        TypeError: an operand is not a Value or a real number.
        ValueError: ws and xs of different lengths.
    """
    return _nary(FG_DOT, ws, xs, start, "dot() operand")


no_grad = no_grad  # the one context manager of both engines (fastgrad._common)


def maximum(a, b):
    """The larger of a and b as one node (a on a tie, nan if either is nan), evaluated again
    by every replay; its grad goes to the one it picked.

    Args:
        a: a Value or a number.
        b: a Value or a number (one of a and b is a Value).

    Returns:
        The larger, a Value.

    Raises:
        TypeError: neither is a Value, or one is not a number.
    """
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
