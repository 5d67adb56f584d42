"""The compiled tape, readably: a graph recorded once into a program over slots and
replayed, the twin of csrc/tape.c (whose fast paths give these bits)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar

from .._common import (
    TAPE_IS_BUSY,
    check_threads,
    never_initialised,
    no_grad_root,
    root_seeds,
    rows_of,
    several_roots_have_no_root,
    tape_roots,
    targets_without_y,
    with_row,
)
from .ops import _FAILURES, BINARY, NARY, _derivatives, _forward, _nary_forward, _term_contributions
from .value import GRADS_LOCK, Value, dot

_P = ParamSpec("_P")
_R = TypeVar("_R")


_Method = Callable[Concatenate["Tape", _P], _R]


def _one_call_at_a_time(method: _Method[_P, _R]) -> _Method[_P, _R]:
    """A replay owns its tape: another thread's call meanwhile raises RuntimeError (as the C
    Tape does). Grads change under GRADS_LOCK, so that every addition is whole."""

    def claimed(self: Tape, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not hasattr(self, "_claimed"):
            raise ValueError(never_initialised("Tape"))
        if not self._claimed.acquire(blocking=False):
            raise RuntimeError(TAPE_IS_BUSY)
        try:
            with GRADS_LOCK:
                return method(self, *args, **kwargs)
        finally:
            self._claimed.release()

    claimed.__doc__, claimed.__name__ = method.__doc__, method.__name__
    return claimed


__all__ = ["Tape"]


class Tape:
    """The graph below root compiled once into a program over slots, and replayed.

    forward() recomputes every node from the leaves' current data; backward() is micrograd's
    backward over that forward, as on a freshly built graph: interior grads (and the
    constants') from 0, the root's 1, the leaves' added to what they hold. The results are
    the bits of building the graph again and calling backward(). The leaves are the Values
    the program reads; the constant leaves made for numbers in expressions are part of the
    program, read once. Replay writes the root's data and grad and the leaves' grads into
    their Values; sync() writes every other node. A call that fails raises what eager code
    raises and changes nothing. fuse is the C engine's switch for merging nodes into steps;
    this program runs one node per step either way, and the bits never depend on it.

    Tape([r0, r1, ...]) records several roots (a classifier's scores): forward() returns
    their values, run() a column per root, and backward(seeds) starts from one seed per root,
    as torch.autograd.backward(roots, seeds) does; its bits are those of
    fastgrad.dot([Value(s) for s in seeds], roots).backward()."""

    def __init__(self, roots: Value | list[Value] | tuple[Value, ...], *,
                 fuse: bool = True) -> None:  # fmt: skip
        self._roots, several = tape_roots(roots, Value)
        # several roots: the program starts from a DOT of hidden seed leaves and the roots
        self._seeds = [Value(1.0) for _ in self._roots] if several else None
        root = dot(self._seeds, self._roots) if self._seeds else self._roots[0]
        order = root._topo()
        slot: dict[Value, int] = {}
        for v, _ in order:
            slot.setdefault(v, len(slot))
        self._top = root
        self._claimed = threading.Lock()
        self._nodes = list(slot)
        self._slot = slot
        self._root = slot[root]
        self._leaves = [i for i, v in enumerate(self._nodes) if not v._rule and not v._constant]
        self._leaf_number = {slot: number for number, slot in enumerate(self._leaves)}
        self._seed_slots = [slot[s] for s in self._seeds or ()]
        self._outputs = [slot[r] for r in self._roots]
        self._constants = [i for i, v in enumerate(self._nodes) if not v._rule and v._constant]
        # one instruction per entry of the order but the leaves: an n-ary node once per term
        self._code = [(v._rule, slot[v], tuple(slot[c] for c in v._children), v._exponent, k)
                      for v, k in order if v._rule]  # fmt: skip
        self._constant_value = [v._data for v in self._nodes]
        self._grad = [v._grad for v in self._nodes]
        leaves = set(self._leaves)
        self._below = [i for i in range(len(self._nodes)) if i not in leaves]
        # the last forward's values, for backward; None where none could be computed at the
        # leaves a run or the recording left the graph at (_failed_leaves): backward raises
        self._value: list[float] | None = None
        self._ran_rows = False  # whether run() has taken rows: _run_plan describes its plan
        self._failed_leaves = [self._nodes[i]._data for i in self._leaves]
        try:  # a backward before any forward is over the leaves' data as they are now
            self._value = self._forward_values()
        except _FAILURES:
            pass

    @property
    def root(self) -> Value:
        """The root of a Tape of one root (a Tape of several has roots)."""
        if self._seeds is not None:
            raise AttributeError(several_roots_have_no_root(len(self._roots)))
        return self._top

    @property
    def roots(self) -> list[Value]:
        """The roots, as given: one, or several."""
        return list(self._roots)

    @property
    def leaves(self) -> list[Value]:
        """The Values the graph starts from (parameters, inputs, constants), in the order
        the tape numbers them: run's per_row gradients come in this order."""
        hidden = set(self._seed_slots)
        return [self._nodes[i] for i in self._leaves if i not in hidden]

    @property
    def steps(self) -> int:
        """How many steps its program runs: here one per interior node, an n-ary node's
        once per run of terms the program reaches together (the C engine's unfused count)."""
        return len(self._step_heads())

    def _step_heads(self) -> list[tuple[Any, ...]]:
        """The program's entries that begin a step: each node's, an n-ary node's first of
        each run of terms."""
        code = self._code
        return [entry for i, entry in enumerate(code) if i == 0 or code[i - 1][1] != entry[1]]

    def _run_plan(self) -> dict[str, Any]:
        """How run() lays out the program over rows, as the C engine's _run_plan says it:
        here a row at a time, every node a step of its own (an n-ary node's runs of terms
        each a step), no layer groups. ValueError before the tape has run rows."""
        if not self._ran_rows:
            raise ValueError("this tape has not run rows yet: its plan is made by run()")
        steps = []
        for rule, _, children, _, _ in self._step_heads():
            kind = "n-ary" if rule in NARY else "unary" if len(children) == 1 else "binary"
            steps.append({"kind": kind, "op": rule, "tail": 0,
                          "loop": "terms" if kind == "n-ary" else None, "layer": None,
                          "colour": None})  # fmt: skip
        return {"lanes": len(self._nodes), "rows_per_block": 1, "steps": steps}

    def __len__(self) -> int:
        """The nodes below the roots (a Tape of several roots adds none of its own)."""
        return len(self._nodes) - (0 if self._seeds is None else len(self._seeds) + 2)

    def __repr__(self) -> str:
        shown = f"root={self._top!r}" if self._seeds is None else f"{len(self._roots)} roots"
        return f"Tape({len(self)} nodes, {len(self.leaves)} leaves, {shown})"

    def _forward_values(self, leaves: list[float] | None = None) -> list[float]:
        """Every slot's value from the leaves' data (or these values, one per leaf)."""
        value = list(self._constant_value)  # constants keep the data they had when compiled
        for n, i in enumerate(self._leaves):
            value[i] = self._nodes[i]._data if leaves is None else leaves[n]
        first: tuple[int, Exception] | None = None  # the failure eager code meets first
        for rule, out, operands, exponent, k in self._code:
            if rule in NARY:  # computed whole at its last term, when every operand is
                if k + 1 == (len(operands) - 1) // NARY[rule][0]:
                    value[out] = _nary_forward(rule, [value[i] for i in operands])
                continue
            try:
                value[out] = _forward(rule, tuple(value[i] for i in operands), exponent)
            except _FAILURES as e:
                # of the nodes that fail, eager code stops at the one created first; its
                # operands came before it and did not fail, so its failure is a true one
                serial = self._nodes[out]._serial
                if first is None or serial < first[0]:
                    first = (serial, e)
                value[out] = math.nan
        if first is not None:
            raise first[1]
        return value

    def _check_differentiable(self, what: str) -> None:
        """RuntimeError where no root requires grad, as backward() of one raises."""
        if all(r._no_grad and not r._chosen for r in self._roots):
            raise RuntimeError(no_grad_root(what))

    def _wanted(self, operands: tuple[int, ...]) -> tuple[bool, bool]:
        wants = [not self._nodes[i]._no_grad for i in operands] + [False]
        return wants[0], wants[1]

    def _backward_grads(self, value: list[float], grad: list[float], seed: float = 1.0) -> None:
        """Backward over `value` into `grad`, whose leaf entries hold the grads to add to,
        from the root's grad `seed`; as eager backward, nothing from or into a node that
        requires no grad."""
        nodes = self._nodes
        for rule, out, operands, exponent, _ in self._code:  # check first: change nothing
            if rule not in NARY and not nodes[out]._no_grad:
                _derivatives(rule, tuple(value[i] for i in operands), exponent, value[out],
                             self._wanted(operands))  # fmt: skip
        for _, out, _, _, _ in self._code:
            grad[out] = 0.0
        for i in self._constants:  # fresh constant leaves, as a rebuilt graph has
            grad[i] = 0.0
        grad[self._root] = seed
        for rule, out, operands, exponent, k in reversed(self._code):
            if nodes[out]._no_grad:
                continue
            values = [value[i] for i in operands]
            if rule in NARY:
                stride = NARY[rule][0]
                terms = (len(operands) - 1) // stride
                v0, v1 = values[1 + k * stride], values[stride + k * stride]
                for position, amount in _term_contributions(rule, k, terms, grad[out], v0, v1):
                    if not nodes[operands[position]]._no_grad:
                        grad[operands[position]] += amount
            else:
                wanted = self._wanted(operands)
                d_da, d_db = _derivatives(rule, tuple(values), exponent, value[out], wanted)
                if wanted[0]:
                    grad[operands[0]] += d_da * grad[out]
                if rule in BINARY and wanted[1]:
                    grad[operands[1]] += d_db * grad[out]

    def _leaf_grads(self) -> list[float]:
        grad = list(self._grad)
        for i in self._leaves:
            grad[i] = self._nodes[i]._grad
        return grad

    def _commit_grads(self, grad: list[float], roots: bool = True) -> None:
        self._grad = grad
        for i in self._leaves:
            if not self._nodes[i]._no_grad:
                self._nodes[i]._grad = grad[i]
        self._top._grad = grad[self._root]
        for i in self._outputs if roots else ():
            if i not in self._leaf_number:
                self._nodes[i]._grad = grad[i]

    def _store_outputs(self, value: list[float]) -> Any:
        """The roots' data (a leaf's is the user's); returns them as forward() does."""
        for i in self._outputs:
            if i not in self._leaf_number:
                self._nodes[i]._data = value[i]
        values = [value[i] for i in self._outputs]
        return values if self._seeds is not None else values[0]

    def _set_seeds(self, seeds: list[float]) -> None:
        """The seed leaves' data, and their values in the last forward, as if it had read
        them."""
        for i, s in zip(self._seed_slots, seeds):
            self._nodes[i]._data = s
            if self._value is not None:
                self._value[i] = s

    def _write_nodes(self, value: list[float] | None, grad: list[float] | None) -> None:
        """Every node but the leaves as eager code leaves it: the data (unless value is
        None), and the grads of a backward, or 0.0 (grad None: a graph built anew)."""
        for i in self._below:
            v = self._nodes[i]
            if value is not None:
                v._data = value[i]
            v._grad = 0.0 if grad is None else grad[i]

    def _state(self) -> list[float]:
        """The last forward's values (a run that left the graph at leaves no forward can be
        computed at raises that forward's failure)."""
        if self._value is None:
            self._forward_values(self._failed_leaves)
            raise AssertionError("the C engine's forward failed here")  # pragma: no cover
        return self._value

    @_one_call_at_a_time
    def forward(self) -> Any:
        """Recomputes every node from the leaves' data; returns the root's new data (a list,
        one per root, for several)."""
        self._value = self._forward_values()
        self._write_nodes(self._value, None)
        return self._store_outputs(self._value)

    @_one_call_at_a_time
    def backward(self, seeds: float | Iterable[float] | None = None) -> None:
        """Backward over the last forward, from the root's grad 1.0, or from `seeds`: a
        number, or for several roots one number per root (1.0 each by default)."""
        self._check_differentiable("Tape.backward()")
        values = root_seeds(1.0 if seeds is None else seeds, len(self._roots), "backward's seeds")
        grad = self._leaf_grads()
        state = self._state()
        before = [state[i] for i in self._seed_slots]
        self._set_seeds(values)
        try:
            self._backward_grads(state, grad, 1.0 if self._seeds else values[0])
        except BaseException:
            self._set_seeds(before)
            raise
        self._commit_grads(grad)
        self._write_nodes(None, grad)

    def _leaf_numbers(self, values: Iterable[Value], what: str) -> list[int]:
        numbers = []
        for v in values:
            i = self._slot.get(v) if isinstance(v, Value) else None
            if i not in self._leaf_number:
                raise ValueError(f"{what} {v!r} is not a leaf of this tape")
            numbers.append(self._leaf_number[i])
        return numbers

    def run(self, inputs: Iterable[Value], X: Any, targets: Iterable[Value] = (),
            y: Any = None, *, threads: int = 1, backward: bool = True,
            root_grad: float | Iterable[float] = 1.0, per_row: bool = False,
            wrt: Iterable[Value] | None = None, shards: int = 1) -> Any:  # fmt: skip
        """Replays the tape once per row of X (and y), the input leaves taking the row's
        values (the target leaves y's), and returns the root's value per row (an array of
        shape (rows, len(roots)) for several roots). Each row's forward and backward are
        those of forward(); backward(root_grad) at that row, its leaf gradients computed from
        zero; each leaf's grad becomes its grad before the call plus the rows' gradients,
        added one row at a time in row order: their sum (root_grad=1 / len(X) gives the
        mean's). backward=False runs
        forward only and touches no grad. The bits never depend on `threads` (the C engine's
        worker threads; here the rows run one after another); the fed leaves keep their
        .data. A failing row raises what eager code raises, naming the row, and changes
        nothing.

        per_row=True returns (the values per row, an array (rows, leaves) of each row's
        gradient) instead and touches no grad: for the leaves that require grad and are
        neither inputs nor targets, in the order of .leaves, or for those of wrt; each row's
        entries are the bits the summed run adds for that row.

        shards=K (with backward) cuts the rows into K contiguous shards as
        numpy.array_split cuts them, sums each shard's rows' gradients from zero in row
        order, and makes each leaf's grad its grad before plus shard 0, shard 1, ... in
        shard order: the bits fastgrad.distributed.DataParallel gives on any number of
        workers. shards=1 is the one sum above; the values per row and per_row's results
        never depend on K."""
        if shards != 1 or type(shards) is not int:
            from .._shards import check_shards, sharded_run

            if check_shards(shards) > 1 and backward and not per_row:
                if wrt is not None:
                    raise ValueError("wrt names the leaves of per_row=True's gradients")
                return sharded_run(self, inputs, X, targets, y, shards, threads, root_grad)
        if per_row:
            from .._per_row import per_row_run

            return per_row_run(self, inputs, X, targets, y, root_grad, wrt)
        if wrt is not None:
            raise ValueError("wrt names the leaves of per_row=True's gradients")
        return self._run(inputs, X, targets, y, threads=threads, backward=backward,
                         root_grad=root_grad)

    @_one_call_at_a_time
    def _run(self, inputs: Iterable[Value], X: Any, targets: Iterable[Value] = (),
             y: Any = None, *, threads: int = 1, backward: bool = True,
             root_grad: float | Iterable[float] = 1.0) -> Any:  # fmt: skip
        import numpy as np

        check_threads(threads)
        if backward:
            self._check_differentiable("Tape.run(backward=True)")
        seeds = root_seeds(root_grad, len(self._roots), "root_grad")
        seed = 1.0 if self._seeds else seeds[0]
        leaves = [self._leaves[i] for i in self._leaf_numbers(inputs, "input")]
        target_leaves = [self._leaves[i] for i in self._leaf_numbers(targets, "target")]
        X_rows = rows_of(np, X, len(leaves), "X")
        if y is None and target_leaves:
            raise ValueError(targets_without_y(len(target_leaves)))
        y_rows = rows_of(np, y if y is not None else np.empty((len(X_rows), 0)),
                         len(target_leaves), "y")  # fmt: skip
        if len(y_rows) != len(X_rows):
            raise ValueError(f"X has {len(X_rows)} rows and y {len(y_rows)}")
        fed = leaves + target_leaves
        if len(set(fed)) != len(fed):
            raise ValueError("a leaf is fed twice: inputs and targets must be different leaves")
        self._ran_rows = self._ran_rows or len(X_rows) > 0
        seeds_before = [self._nodes[i]._data for i in self._seed_slots]
        if len(X_rows):  # each row's seeds, as the seed leaves hold them
            for i, s in zip(self._seed_slots, seeds):
                self._nodes[i]._data = s
        saved = [self._nodes[i]._data for i in fed]
        totals = {i: self._nodes[i]._grad for i in self._leaves}  # the grads before the call
        grad, value, out = self._grad, self._value, np.empty((len(X_rows), len(self._outputs)))
        for row, (xs, ys) in enumerate(zip(X_rows.tolist(), y_rows.tolist())):
            for i, x in zip(fed, xs + ys):
                self._nodes[i]._data = x
            grad = list(self._grad)
            for i in self._leaves:  # the row's gradient, from zero: -0.0, the zero that
                grad[i] = -0.0  # passes a single contribution on unchanged
            try:
                value = self._forward_values()
                if backward:
                    self._backward_grads(value, grad, seed)
            except _FAILURES as e:
                for i, s in zip(self._seed_slots, seeds_before):  # a failed run changes nothing
                    self._nodes[i]._data = s
                raise with_row(e, row) from None
            finally:
                for i, x in zip(fed, saved):  # the rows are the run's, not the leaves'
                    self._nodes[i]._data = x
            for i in self._leaves:
                totals[i] = totals[i] + grad[i]
            out[row] = [value[i] for i in self._outputs]
        if len(X_rows):
            if backward:
                self._commit_grads([totals.get(i, g) for i, g in enumerate(grad)], roots=False)
            # the graph is then as built anew at the leaves' data (the fed leaves keep theirs)
            try:
                self._value = self._forward_values()
            except _FAILURES:  # none can be built there: the nodes stay as they are
                self._value = None
                self._failed_leaves = [self._nodes[i]._data for i in self._leaves]
            else:
                self._write_nodes(self._value, None)
        return out if self._seeds else out.reshape(len(X_rows))

    @_one_call_at_a_time
    def sync(self) -> None:
        """Does nothing: every replay writes all the nodes at once (the C engine writes them
        before anyone sees them). It stays for old code."""
