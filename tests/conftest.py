"""Every behavioural test takes `impl`: the C extension or the pure-Python reference.

Both are imported directly, whatever FASTGRAD_PURE_PYTHON says, so every run tests both;
a C extension that fails to import is an error here, not a skip.
"""

from __future__ import annotations

import os
import types

import pytest
from hypothesis import HealthCheck, settings

import fastgrad._core
import fastgrad.reference

IMPLEMENTATIONS: dict[str, types.ModuleType] = {
    "c": fastgrad._core,
    "python": fastgrad.reference,
}
# FASTGRAD_TEST_ENGINES=c runs the `impl` tests on the extension alone: the sanitized build's
# run (tests/test_sanitized_extension.py), where the pure-Python engine has nothing to check.
ENGINES = sorted(os.environ.get("FASTGRAD_TEST_ENGINES", ",".join(IMPLEMENTATIONS)).split(","))
if not set(ENGINES) <= set(IMPLEMENTATIONS):
    raise ValueError(f"FASTGRAD_TEST_ENGINES names {ENGINES}; the engines are "
                     f"{sorted(IMPLEMENTATIONS)}")

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.register_profile(
    "thorough", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=2000
)
settings.register_profile(
    "quick", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=40
)
# FASTGRAD_HYPOTHESIS=quick for the runs that test installed wheels beside the full suite
settings.load_profile(os.environ.get("FASTGRAD_HYPOTHESIS", "default"))


@pytest.fixture(scope="session", params=ENGINES, ids=lambda name: name)
def impl(request: pytest.FixtureRequest) -> types.ModuleType:
    """fastgrad._core or fastgrad.reference: the same API, Value, sum and dot."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture(scope="session")
def c_impl() -> types.ModuleType:
    return fastgrad._core


@pytest.fixture(scope="session")
def py_impl() -> types.ModuleType:
    return fastgrad.reference
