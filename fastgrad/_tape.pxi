# The compiled tape's Python face: Tape, over csrc/tape.c and rows.c. Included by _core.pyx,
# whose Value, arena and error helpers it uses (one extension module, one arena per thread).

cdef int _raise_tape(fg_status status, fg_tape *tape, bint in_backward, object row=None) except -1:
    """A replay's failure, worded as eager code words it (the operands' values are the
    tape's, which interior nodes do not hold until sync)."""
    cdef const double *values = fg_tape_failed_operands(tape)
    cdef fg_node *failed = fg_tape_failed_node(tape)
    cdef uint32_t count
    if status == FG_INTERRUPTED:
        return -1   # the signal handler's exception (KeyboardInterrupt) is set already
    if status == FG_NO_MEMORY or failed is NULL:
        _raise(status, "tape", ())
    fg_operands(failed, &count)
    operands = tuple([values[i] for i in range(count)])
    error = op_error(_exception_type(status), _rule(failed), operands,
                     failed.exponent if failed.op == FG_POWC else 0.0, in_backward)
    raise error if row is None else with_row(error, row)


cdef extern from "Python.h":
    # declared without Cython's `except -1`: the exception a signal handler raised (Ctrl-C's
    # KeyboardInterrupt) stays set for run() to raise once the C work has stopped
    int _signal_handler_raised "PyErr_CheckSignals" ()


cdef extern from "Python.h":
    # without Cython's `except -1`: run() falls back to converting what has no such buffer
    int _try_get_buffer "PyObject_GetBuffer" (object, Py_buffer *, int)


cdef int _check_signals(void *context) noexcept nogil:
    """Between a run's blocks: whether a signal handler raised, the GIL taken."""
    with gil:
        return _signal_handler_raised() != 0


cdef int _sync_tapes(bint only_outputs) except -1:
    """Each tape that left writes waiting writes them, oldest first (for a node flagged
    FG_TAPED_OUTPUT alone, only those that left an output's). A tape that another thread
    replays now is skipped: its replay leaves writes waiting again."""
    for ref in list(_unsynced_tapes.values()):
        tape = ref()
        if tape is not None:
            (<Tape>tape)._write_waiting(only_outputs, False)
    return 0


cdef class Tape:
    """The graph below root compiled once into a C program over dense slots, and replayed.

    forward() recomputes every node from the leaves' current data; backward() is micrograd's
    backward over that forward, as on a freshly built graph: interior grads (and the
    constants') from 0, the root's 1, the leaves' added to what they hold. The results are
    the bits of building the graph again and calling backward(), and no Python object is
    made per node. Replay writes the root's data and grad and the leaves' grads into their
    Values; sync() writes every interior Value too. A call that fails raises what eager code
    raises and changes nothing. forward, backward and run release the GIL while they
    compute: the leaves are read before and written after, holding it. fuse=False keeps one
    step per node, unfused, to measure what fusing buys (the bits are the same).

    Tape([r0, r1, ...]) records several roots (a classifier's scores): forward() returns
    their values, run() a column per root, and backward(seeds) starts from one seed per root,
    as torch.autograd.backward(roots, seeds) does; its bits are those of
    fastgrad.dot([Value(s) for s in seeds], roots).backward().

    Args:
        roots (Value | list[Value]): the Value to record the graph below, or a list of
            Values (several roots).
        fuse (bool): False keeps one step per node (the same bits, to measure what fusing buys).

    Raises:
        TypeError: a root is not a Value of this engine.
        ValueError: an empty list of roots, or a graph that cannot be recorded.
        RuntimeError: __init__ called on a Tape that already recorded.
    """

    cdef fg_tape *tape
    cdef Value _top                 # what the program starts from: the root, or the DOT
    cdef list _roots
    cdef list _seeds                # several roots: the DOT's seed leaves, else None
    cdef list _seed_numbers         # their leaf numbers
    cdef bint busy                  # replaying: a second replay at once is refused
    cdef bint syncing               # another thread writes what the last replay left waiting
    cdef tuple _fed                 # the leaves the last run fed, inputs then targets
    cdef Py_ssize_t _fed_inputs     # how many of them are inputs
    cdef size_t *_fed_numbers       # their leaf numbers (run's job points at them)
    cdef object _weak               # a weak reference to itself, for _unsynced_tapes
    cdef object __weakref__

    def __init__(self, roots, *, fuse=True):
        cdef fg_status status
        cdef Py_ssize_t i, count
        cdef fg_node **outputs
        if self.tape is not NULL:
            raise RuntimeError("a Tape records once; make another for another graph")
        self._roots, several = tape_roots(roots, Value)
        _sync_all_tapes()  # compiling reads the nodes
        count = len(self._roots)
        self._seeds = [Value(1.0) for _ in range(count)] if several else None
        self._top = dot(self._seeds, self._roots) if several else <Value>self._roots[0]
        outputs = <fg_node **>PyMem_Malloc(count * sizeof(fg_node *))
        if outputs is NULL:
            raise MemoryError()
        try:
            for i in range(count):
                outputs[i] = _node_of(<Value>self._roots[i])
            status = fg_tape_compile_outputs(_arena(), _node_of(self._top), outputs, count,
                                             1 if fuse else 0, &self.tape)
        finally:
            PyMem_Free(outputs)
        if status != FG_OK:
            _raise(status, "tape", ())
        if several:
            self._seed_numbers = [fg_tape_leaf_index(self.tape, (<Value>v).node)
                                  for v in self._seeds]
        self._weak = weakref.ref(self)

    def __dealloc__(self):
        if self.tape is not NULL and fg_tape_unsynced(self.tape):
            fg_tape_sync(self.tape)  # its nodes may outlive it (without memory: left as they are)
            if _unsynced_tapes is not None:
                _unsynced_tapes.pop(id(self), None)
        fg_tape_free(self.tape)
        PyMem_Free(self._fed_numbers)

    cdef void _writes_wait(self):
        """After a replay: its writes wait, this tape now the newest of those waiting."""
        key = id(self)
        _unsynced_tapes.pop(key, None)
        _unsynced_tapes[key] = self._weak

    cdef int _write_waiting(self, bint only_outputs, bint claimed) except -1:
        """Writes what the last replay left waiting (fg_tape_sync), unless another thread
        replays the tape now (then claimed=False skips it)."""
        cdef fg_status status
        cdef int unsynced = fg_tape_unsynced(self.tape) if self.tape is not NULL else 0
        if not unsynced or (only_outputs and not unsynced & FG_TAPE_UNSYNCED_OUTPUTS):
            return 0
        if not claimed:
            with cython.critical_section(self):
                if self.busy or self.syncing:
                    return 0
                self.syncing = True
        try:
            status = fg_tape_sync(self.tape)
        finally:
            if not claimed:
                with cython.critical_section(self):
                    self.syncing = False
        _unsynced_tapes.pop(id(self), None)
        if status != FG_OK:
            _raise(status, "sync", ())
        return 0

    cdef fg_tape *_claim(self) except NULL:
        """The tape, marked busy for one replay: two threads replaying one tape at once
        would share its state."""
        cdef bint claimed = False
        if self.tape is NULL:
            raise ValueError(never_initialised("Tape"))
        while not claimed:
            with cython.critical_section(self):  # one test-and-set, also without the GIL
                if self.busy:
                    raise RuntimeError(_TAPE_IS_BUSY)
                if not self.syncing:
                    self.busy = claimed = True
            if not claimed:  # another thread, reading a Value this tape recorded, is writing
                _time().sleep(0)  # what the tape's last replay left waiting: a moment
        return self.tape

    cdef fg_tape *_recorded(self) except NULL:
        if self.tape is NULL:
            raise ValueError(never_initialised("Tape"))
        return self.tape

    @property
    def root(self):
        """The root of a Tape of one root (a Tape of several has roots)."""
        self._recorded()
        if self._seeds is not None:
            raise AttributeError(several_roots_have_no_root(len(self._roots)))
        return self._top

    @property
    def roots(self):
        """The roots, as given: one, or several."""
        self._recorded()
        return list(self._roots)

    @property
    def leaves(self):
        """The Values the graph starts from (parameters, inputs, constants), in the order
        the tape numbers them: run's per_row gradients come in this order."""
        cdef fg_tape *tape = self._recorded()
        leaves = [_handle(fg_tape_leaf(tape, i)) for i in range(fg_tape_leaf_count(tape))]
        if self._seeds is None:
            return leaves
        hidden = {id(s) for s in self._seeds}
        return [v for v in leaves if id(v) not in hidden]

    def __len__(self):
        """The nodes below the roots (a Tape of several roots adds none of its own)."""
        cdef size_t hidden = 0 if self._seeds is None else len(self._seeds) + 2
        return fg_tape_size(self._recorded()) - hidden

    @property
    def steps(self):
        """How many steps its program runs (nodes fused into one step count once)."""
        return fg_tape_steps(self._recorded())

    def _run_plan(self):
        """How the last run laid out the program over rows, for drawings and tests: "lanes"
        (the slots that hold a row of values), "rows_per_block", and "steps", one dict per
        step: its kind ("unary", "binary", "n-ary", "divisions"), op, how many unary ops are
        fused after it ("tail"), an n-ary step's loop ("terms", "dot", "sum", "led dot"),
        the first step of its layer group (or None) and that group's colour. ValueError
        before the tape has run rows."""
        cdef fg_tape *tape = self._recorded()
        cdef size_t i, count = fg_tape_steps(tape), lanes = 0, rows = 0
        cdef fg_plan_step *steps = <fg_plan_step *>PyMem_Malloc((count + 1) * sizeof(fg_plan_step))
        if steps is NULL:
            raise MemoryError()
        try:
            if fg_tape_run_plan(tape, steps, &lanes, &rows) != FG_OK:
                raise ValueError("this tape has not run rows yet: its plan is made by run()")
            kinds = ("unary", "binary", "n-ary", "divisions")
            loops = ("terms", "dot", "sum", "led dot")
            listed = [{"kind": kinds[steps[i].kind], "op": _symbols[steps[i].op],
                       "tail": steps[i].tail,
                       "loop": loops[steps[i].loop] if steps[i].kind == 2 else None,
                       "layer": steps[i].layer if steps[i].layer >= 0 else None,
                       "colour": steps[i].colour if steps[i].layer >= 0 else None}
                      for i in range(count)]
        finally:
            PyMem_Free(steps)
        return {"lanes": lanes, "rows_per_block": rows, "steps": listed}

    def __repr__(self):
        cdef fg_tape *tape = self._recorded()
        leaves = fg_tape_leaf_count(tape) - (0 if self._seeds is None else len(self._seeds))
        shown = f"root={self._top!r}" if self._seeds is None else f"{len(self._roots)} roots"
        return f"Tape({len(self)} nodes, {leaves} leaves, {shown})"

    cdef int _check_differentiable(self, str what) except -1:
        """RuntimeError where no root requires grad, as backward() of one raises."""
        for r in self._roots:
            if (<Value>r).node.flags & (FG_NO_GRAD | FG_CHOSEN) != FG_NO_GRAD:
                return 0
        raise RuntimeError(no_grad_root(what))

    cdef object _root_values(self):
        if self._seeds is None:
            return self._top.node.data
        return [(<Value>r).node.data for r in self._roots]

    def forward(self):
        """Recomputes every node from the leaves' data; returns the root's new data (a list,
        one per root, for several)."""
        cdef fg_tape *tape = self._claim()
        cdef fg_status status
        try:
            fg_tape_load_data(tape)
            with nogil:
                status = fg_tape_compute_forward(tape)
            if status != FG_OK:
                _raise_tape(status, tape, False)
            fg_tape_store_forward(tape)
            self._writes_wait()
        finally:
            self.busy = False
        return self._root_values()

    def backward(self, seeds=None):
        """Backward over the last forward, as Value.backward() on the graph rebuilt.

        Args:
            seeds: the root's grad to start from (1.0 by default); for several roots one
                number per root (1.0 each by default).

        Raises:
            RuntimeError: nothing was recorded, the root requires no grad, or another
                replay of this tape is running.
            ValueError: seeds of the wrong length.
            ZeroDivisionError, ValueError, OverflowError: a local derivative that fails, as
                eager backward() raises it; no grad changes then.
        """
        self._recorded()
        self._check_differentiable("Tape.backward()")
        cdef list values = root_seeds(1.0 if seeds is None else seeds, len(self._roots),
                                      "backward's seeds")
        cdef fg_tape *tape = self._claim()
        cdef fg_status status
        cdef double seed = 1.0
        cdef list before = None
        try:
            fg_tape_load_grads(tape)
            if self._seeds is None:
                seed = values[0]
            else:
                before = [(<Value>s).node.data for s in self._seeds]
                self._set_seeds(tape, values)
            with nogil:
                status = fg_tape_compute_backward_from(tape, seed)
            if status != FG_OK:
                if before is not None:
                    self._set_seeds(tape, before)
                _raise_tape(status, tape, fg_tape_failed_in_backward(tape))
            fg_tape_store_grads(tape)
            self._writes_wait()
        finally:
            self.busy = False

    cdef void _set_seeds(self, fg_tape *tape, list values):
        """The seed leaves' data, and their values in the last forward's state, as if it
        had read them (the state's seeds are always their data)."""
        cdef Py_ssize_t i
        for i in range(len(values)):
            (<Value>self._seeds[i]).node.data = <double>values[i]
            fg_tape_set_leaf_value(tape, <size_t>self._seed_numbers[i], <double>values[i])

    def sync(self):
        """Writes now what the last replay left for the nodes to hold; they write it anyway
        before anyone sees them, so this is never needed (it stays for old code)."""
        self._claim()
        try:
            self._write_waiting(False, True)
        finally:
            self.busy = False

    cdef list _leaf_numbers(self, values, str what):
        numbers = []
        cdef long number
        cdef fg_tape *tape = self._recorded()
        hidden = () if self._seeds is None else self._seeds
        for v in values:
            number = fg_tape_leaf_index(tape, (<Value>v).node) if isinstance(v, Value) else -1
            if number < 0 or any(v is s for s in hidden):
                raise ValueError(f"{what} {v!r} is not a leaf of this tape")
            numbers.append(number)
        return numbers

    def run(self, inputs, X, targets=(), y=None, *, threads=1, backward=True, root_grad=1.0,
            per_row=False, wrt=None, shards=1):
        """Replays the tape once per row of X (and y), the input leaves taking the row's
        values (the target leaves y's).

        Each row's forward and backward are
        those of forward(); backward(root_grad) at that row, its leaf gradients computed from
        zero; each leaf's grad becomes its grad before the call plus the rows' gradients,
        added one row at a time in row order: their sum (root_grad=1 / len(X) gives the
        mean's, as PyTorch's reduction="mean"). backward=False runs forward only and touches
        no grad. The bits never depend on `threads`, the most worker threads (the calling one
        included) that share the rows; the fed leaves keep their .data. A failing row raises
        what eager code raises, naming the row, and changes nothing.

        per_row=True returns (the values per row, an array (rows, leaves) of each row's
        gradient) instead and touches no grad: for the leaves that require grad and are
        neither inputs nor targets, in the order of .leaves, or for those of wrt; each row's
        entries are the bits the summed run adds for that row.

        shards=K (with backward) cuts the rows into K contiguous shards as
        numpy.array_split cuts them, sums each shard's rows' gradients from zero in row
        order, and makes each leaf's grad its grad before plus shard 0, shard 1, ... in
        shard order: the bits fastgrad.distributed.DataParallel gives on any number of
        workers. shards=1 is the one sum above; the values per row and per_row's results
        never depend on K.

        Args:
            inputs: the leaves that take each row of X, in X's column order.
            X: the rows: a 2-D array-like of floats, one column per input (1-D with one
                input).
            targets: the leaves that take each row of y.
            y: the targets' rows (1-D with one target); needed when targets are given.
            threads: the most threads that share the rows, the calling one included.
            backward: False runs forward only and touches no grad.
            root_grad: the root's grad each row's backward starts from (one per root for
                several roots); 1 / len(X) gives the mean's gradient.
            per_row: True returns each row's gradient instead of adding their sum.
            wrt: with per_row, the leaves whose gradients are returned, in that order.
            shards: K, the number of contiguous shards whose sums are added in order.

        Returns:
            The root's value per row, a float64 array of shape (rows,), or (rows, roots) for
            several roots; with per_row=True the pair (values, gradients), gradients of
            shape (rows, leaves).

        Raises:
            ValueError: X or y of the wrong shape, a leaf that is not an input of this tape,
                wrt without per_row, or shards that is not a positive int.
            TypeError: X or y that is not numbers.
            RuntimeError: nothing was recorded, or another replay of this tape is running.
            ZeroDivisionError, ValueError, OverflowError: a row whose forward or backward
                fails as eager code would, naming the row; no grad or data changes then.
        """
        if shards != 1 or type(shards) is not int:
            from ._shards import check_shards, sharded_run

            if check_shards(shards) > 1 and backward and not per_row:
                if wrt is not None:
                    raise ValueError("wrt names the leaves of per_row=True's gradients")
                return sharded_run(self, inputs, X, targets, y, shards, threads, root_grad)
        if per_row:
            from ._per_row import per_row_run

            return per_row_run(self, inputs, X, targets, y, root_grad, wrt)
        if wrt is not None:
            raise ValueError("wrt names the leaves of per_row=True's gradients")
        cdef unsigned workers
        cdef list seeds
        cdef Py_buffer xv, yv, ov
        cdef bint has_x = False, has_y = False, has_out = False
        cdef fg_run job
        cdef fg_status status
        cdef size_t i, rows
        cdef fg_tape *tape
        self._recorded()
        if backward:
            self._check_differentiable("Tape.run(backward=True)")
        # the common call (an int, one float, C-ordered float64 arrays) skips the general checks
        if type(threads) is int and 1 <= threads <= _CORES:
            workers = threads
        else:
            workers = check_threads(threads)
        if type(root_grad) is float and self._seeds is None:
            seeds = [root_grad]
        else:
            seeds = root_seeds(root_grad, len(self._roots), "root_grad")
        tape = self._claim()
        try:
            self._feed(inputs, targets)
            _matrix(X, self._fed_inputs, "X", &xv)
            has_x = True
            rows = <size_t>xv.shape[0]
            if y is None:
                if len(self._fed) != self._fed_inputs:
                    raise ValueError(targets_without_y(len(self._fed) - self._fed_inputs))
                y = _np().empty((rows, 0))
            _matrix(y, len(self._fed) - self._fed_inputs, "y", &yv)
            has_y = True
            if <size_t>yv.shape[0] != rows:
                raise ValueError(f"X has {rows} rows and y {yv.shape[0]}")
            out = _np().empty((rows, len(self._roots)))
            PyObject_GetBuffer(out, &ov, PyBUF_C_CONTIGUOUS)
            has_out = True
            job.rows = rows
            job.inputs = self._fed_numbers
            job.input_count = self._fed_inputs
            job.X = <double *>xv.buf if rows * job.input_count else NULL
            job.targets = self._fed_numbers + self._fed_inputs
            job.target_count = len(self._fed) - self._fed_inputs
            job.Y = <double *>yv.buf if rows * job.target_count else NULL
            job.out = <double *>ov.buf if rows else NULL
            job.root_grad = seeds[0] if self._seeds is None else 1.0
            job.backward = 1 if backward else 0
            job.threads = workers
            job.interrupted = _check_signals
            job.context = NULL
            before = None
            if self._seeds is not None and job.rows:  # each row's seeds, as the seed leaves hold them
                before = [(<Value>s).node.data for s in self._seeds]
                for i in range(len(seeds)):
                    (<Value>self._seeds[i]).node.data = seeds[i]
            fg_tape_load_run(tape)
            with nogil:
                status = fg_tape_compute_run(tape, &job)
            if status != FG_OK:
                for i in range(len(before or ())):  # a failed run changes nothing
                    (<Value>self._seeds[i]).node.data = before[i]
                _raise_tape(status, tape, fg_tape_failed_in_backward(tape),
                            fg_tape_failed_row(tape))
            fg_tape_store_run(tape, &job)
            if rows:
                self._writes_wait()
        finally:
            if has_x:
                PyBuffer_Release(&xv)
            if has_y:
                PyBuffer_Release(&yv)
            if has_out:
                PyBuffer_Release(&ov)
            self.busy = False
        return out if self._seeds is not None else out.reshape(rows)

    cdef int _feed(self, inputs, targets) except -1:
        """_fed and _fed_numbers for these inputs and targets: the last run's again when it
        fed the same Values; else checked (leaves of this tape, none fed twice)."""
        cdef tuple given_inputs = tuple(inputs)     # (each iterable read once)
        cdef tuple fed = given_inputs + tuple(targets)
        cdef Py_ssize_t i, count = len(fed), input_count = len(given_inputs)
        cdef size_t *numbers
        if self._fed is not None and count == len(self._fed) and input_count == self._fed_inputs:
            for i in range(count):
                if fed[i] is not self._fed[i]:
                    break
            else:
                return 0
        numbers_list = (self._leaf_numbers(fed[:input_count], "input")
                        + self._leaf_numbers(fed[input_count:], "target"))
        if len(set(numbers_list)) != count:
            raise ValueError("a leaf is fed twice: inputs and targets must be different leaves")
        numbers = <size_t *>PyMem_Malloc((count + 1) * sizeof(size_t))
        if numbers is NULL:
            raise MemoryError()
        for i in range(count):
            numbers[i] = numbers_list[i]
        PyMem_Free(self._fed_numbers)
        self._fed_numbers, self._fed, self._fed_inputs = numbers, fed, input_count
        return 0


cdef object _numpy = None
cdef object _time_module = None


cdef object _time():
    global _time_module
    if _time_module is None:
        import time
        _time_module = time
    return _time_module


cdef object _np():
    """numpy, imported on first use (fastgrad imports without it)."""
    global _numpy
    if _numpy is None:
        import numpy
        _numpy = numpy
    return _numpy


cdef int _matrix(object M, Py_ssize_t columns, str name, Py_buffer *view) except -1:
    """A C-ordered float64 view of M's rows (`columns` numbers each) into view, to be
    released: M's own memory when it is such a matrix already, else a converted copy's
    (rows_of checks what M holds and its shape)."""
    if _try_get_buffer(M, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0:
        if (view.ndim == 2 and view.shape[1] == columns and view.itemsize == 8
                and view.format[0] == b'd' and view.format[1] == 0):
            return 0
        PyBuffer_Release(view)
    else:
        PyErr_Clear()
    rows = _np().ascontiguousarray(rows_of(_np(), M, columns, name))
    PyObject_GetBuffer(rows, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    return 0
