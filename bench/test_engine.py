"""The benchmark cases: fastgrad beside its baselines, in one run."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import BYTES

from fastgrad import benchmarks

PAIRS = [(case, name) for case in benchmarks.CASES for name in case.names]


@pytest.fixture(scope="module")
def built() -> dict[str, benchmarks.Contenders]:
    return {}


@pytest.mark.parametrize(
    "case, contender", PAIRS, ids=[f"{c.id} {c.title} {name}" for c, name in PAIRS]
)
def test_case(
    benchmark: Any,
    record: Any,
    built: dict[str, benchmarks.Contenders],
    case: benchmarks.Case,
    contender: str,
) -> None:
    key = f"{case.id} {case.title}"
    if key not in built:
        built[key] = case.build()
    if contender not in built[key]:
        pytest.skip(f"{contender} is not installed (or, hand-written C, no C compiler)")
    benchmark.group = key
    with case.conditions():
        if case.statistic == "mean":  # pauses are part of the cost: consecutive rounds
            benchmark.pedantic(
                built[key][contender], rounds=case.rounds_for(contender), warmup_rounds=1
            )
        else:
            benchmark(built[key][contender])
    record(key, contender, case.per_call, case.statistic)


@pytest.mark.parametrize("engine", ["fastgrad", "micrograd"])
def test_b6_bytes_per_retained_step(benchmark: Any, engine: str) -> None:
    if engine not in benchmarks._engines():
        pytest.skip(f"{engine} is not installed")
    steps = benchmarks.B6_STEPS if benchmark.enabled else 10**4
    per_step = benchmark.pedantic(benchmarks.retained_bytes, args=(engine, steps), rounds=1)
    benchmark.group = "B6 retained y = y * c (bytes per step in extra_info)"
    benchmark.extra_info["bytes_per_step"] = per_step
    BYTES[engine] = per_step
    assert per_step > 0


def test_every_case_builds_the_contenders_it_names() -> None:
    for case in benchmarks.CASES:
        assert set(case.build()) <= set(case.names)


def test_the_mixed_graph_has_the_nodes_its_title_says() -> None:
    from fastgrad import _core
    from fastgrad.benchmarks import tape as _tape_benchmarks

    root = _tape_benchmarks.mixed_graph(_core)
    assert len(_core.Tape(root)) == _tape_benchmarks.MIXED_GRAPH_NODES


def _tree_nodes(tree: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return [tree, *(n for child in tree[1:] if isinstance(child, tuple)
                    for n in _tree_nodes(child))]  # fmt: skip


def test_b12_programs_are_what_the_case_says() -> None:
    from fastgrad.benchmarks import trees as b12

    X = b12.dataset()
    programs = b12.programs(X, count=20)
    for program in programs:
        nodes = _tree_nodes(program.tree)
        ops = [n for n in nodes if n[0] not in ("x", "c")]
        assert len(ops) == b12.OPS
        assert {n for n in nodes if n[0] == "x"} == {("x", i) for i in range(b12.INPUTS)}
        assert any(n[0] == "c" for n in nodes)
        # the floor's calls: each sin, cos, exp, tanh once, a sin or cos above a constant
        # (whose derivative is wanted) as its sin and cos together
        above_constant = [n for n in ops if n[0] in ("sin", "cos")
                          and any(m[0] == "c" for m in _tree_nodes(n))]  # fmt: skip
        unary = [n for n in ops if n[0] in b12.UNARY]
        assert len(program.calls) == len(unary)
        assert sum(name == "sin and cos" for name, _ in program.calls) == len(above_constant)


def test_b12_programs_give_the_same_bits_on_both_engines() -> None:
    from fastgrad import _core, reference
    from fastgrad.benchmarks import trees as b12

    X = b12.dataset()[:40]
    for program in b12.programs(X, count=4):
        (ours, grads), (theirs, their_grads) = (
            b12.fastgrad_program(_core, program, X),
            b12.fastgrad_program(reference, program, X),
        )
        assert ours.tolist() == theirs.tolist() and grads == their_grads


def test_jax_runs_in_float64_on_one_core_and_gives_the_process_its_cores_back() -> None:
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is an optional baseline")
    # A fresh process: the first import of JAX is the one whose thread pool is confined.
    check = """
import os, sys
from fastgrad.benchmarks.case import jax_x64_one_thread
assert "jax" not in sys.modules
before = os.sched_getaffinity(0)
jax = jax_x64_one_thread()
assert jax is not None and os.sched_getaffinity(0) == before
assert jax.numpy.asarray(1.0).dtype == jax.numpy.float64
"""
    subprocess.run([sys.executable, "-c", check], check=True)


def test_jax_imported_elsewhere_first_still_runs_in_float64() -> None:
    jax = pytest.importorskip("jax", reason="JAX is an optional baseline")
    from fastgrad.benchmarks.case import jax_x64_one_thread

    assert jax_x64_one_thread() is jax
    assert jax.numpy.asarray(1.0).dtype == jax.numpy.float64
