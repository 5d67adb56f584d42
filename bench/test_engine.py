"""B1, B2, B3 and B6 of SPEC section 5: fastgrad beside its baselines, in one run."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import BYTES

from fastgrad import benchmarks

CONTENDERS = {
    "B1": ["fastgrad", "float", "micrograd"],
    "B2": ["fastgrad", "float", "micrograd"],
    "B3": ["fastgrad", "micrograd"],
    "B4": ["fastgrad", "micrograd, gc on", "micrograd, gc off"],
    "B5": ["fastgrad tape", "pytorch, float64, 1 thread"],
    "B7": ["fastgrad tape", "fastgrad eager (rebuilt each time)", "pure-Python reference, eager"],
}
PAIRS = [(case, name) for case in benchmarks.CASES for name in CONTENDERS[case.id]]


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
        pytest.skip(f"{contender} is not installed")
    benchmark.group = key
    if case.statistic == "mean":  # pauses are part of the cost: consecutive rounds, no minimum
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
