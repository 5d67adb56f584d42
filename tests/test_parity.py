"""The C extension and the pure-Python reference agree bit for bit on random programs:
every value's data, grad and _op, every exception's type and message, at every step."""

from __future__ import annotations

import types

from hypothesis import given, settings
from programs import Program, programs, run


@given(programs())
def test_random_programs_agree_bit_for_bit(
    c_impl: types.ModuleType, py_impl: types.ModuleType, program: Program
) -> None:
    assert run(c_impl, program) == run(py_impl, program)


@settings(max_examples=25)
@given(programs(max_steps=1000))
def test_long_programs_agree_bit_for_bit(
    c_impl: types.ModuleType, py_impl: types.ModuleType, program: Program
) -> None:
    assert run(c_impl, program) == run(py_impl, program)
