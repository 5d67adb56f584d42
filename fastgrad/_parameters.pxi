# Part of _core.pyx (included there): loops over many parameters at once: the optimizers'
# steps (optim.c's table) and nn.utils' flat arrays.


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
        if out.shape[0] != self.count:
            raise ValueError(f"{out.shape[0]} places for {self.count} grads")
        with cython.critical_section(self):
            for i in range(self.count):
                out[i] = self.nodes[i].grad
