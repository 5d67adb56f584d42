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
def test_case(benchmark: Any, record: Any, built: dict[str, benchmarks.Contenders],
              case: benchmarks.Case, contender: str) -> None:
    key = f"{case.id} {case.title}"
    if key not in built:
        built[key] = case.build()
    if contender not in built[key]:
        pytest.skip(f"{contender} is not installed (or, hand-written C, no C compiler)")
    benchmark.group = key
    with case.conditions():
        if case.statistic == "mean":  # pauses are part of the cost: consecutive rounds
            benchmark.pedantic(built[key][contender], rounds=case.rounds, warmup_rounds=1)
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
    from fastgrad import _core, _tape_benchmarks

    root = _tape_benchmarks.mixed_graph(_core)
    assert len(_core.Tape(root)) == _tape_benchmarks.MIXED_GRAPH_NODES
