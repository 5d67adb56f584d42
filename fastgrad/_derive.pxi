# Part of _core.pyx (included there): derivatives as numbers or graphs (gradients), and a
# graph as plain records and back (_graph, _rebuild: pickling, fastgrad.transforms's
# forward mode).


def gradients(output, inputs, *, create_graph=False):
    """d output / d input for each input (a Value, or a list of Values: then a list), as
    output.backward() leaves them in the inputs' .grad when every grad is 0.0 first, bit for
    bit, without touching any .grad. With create_graph=True, Values holding those numbers,
    built as ordinary nodes from each op's derivative formula, so that they can be combined,
    backpropagated and differentiated again. An input the output does not reach gets 0.0.
    torch.autograd.grad's counterpart.

    Args:
        output: the Value to differentiate.
        inputs: a Value, or a list of Values, to differentiate with respect to.
        create_graph: True returns Values that are nodes of a graph (differentiable again)
            instead of floats.

    Returns:
        A float per input (a Value with create_graph=True), a list when inputs is a list.

    Raises:
        TypeError: output is not a Value, or inputs are not Values.
        RuntimeError: an input requires no grad.
        ZeroDivisionError, ValueError, OverflowError: a derivative that fails, as
            backward() raises it; nothing is built then.
    """
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
