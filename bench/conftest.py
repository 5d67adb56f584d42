"""pytest-benchmark runs the benchmark cases (fastgrad/benchmarks.py); at the end this
prints each case's ratios, fastgrad against the baselines timed in the same run.

Timing is off in the plain test run (--benchmark-disable in pyproject.toml: each case runs
once, as a smoke test); measure with  pytest bench --benchmark-enable -n 0"""

from __future__ import annotations

from collections import defaultdict

import pytest

from fastgrad.benchmarks import compare, subject

RESULTS: dict[str, dict[str, float]] = defaultdict(dict)
BYTES: dict[str, float] = {}


@pytest.fixture
def record(benchmark):  # type: ignore[no-untyped-def]
    """Call after benchmark(...): keeps the best time of this contender for the summary."""

    def keep(case: str, contender: str, per_call: int, statistic: str) -> None:
        if benchmark.enabled and benchmark.stats is not None:
            RESULTS[case][contender] = getattr(benchmark.stats.stats, statistic) / per_call

    return keep


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    lines = [
        f"{case}: {compare(times[subject(times)], seconds, name, 'faster than ' + name)}"
        for case, times in RESULTS.items()
        if any(name.startswith("fastgrad") for name in times)
        for name, seconds in times.items()
        if name != subject(times)
    ]
    lines += [
        f"B6 retained y = y * c: {name} {size:,.0f} bytes per step" for name, size in BYTES.items()
    ]
    if lines:
        terminalreporter.section("fastgrad against its baselines, this run")
        for line in lines:
            terminalreporter.write_line(line)
