"""fastgrad.sum and fastgrad.dot are one node each, and give the bits of the chains of + and *
they replace, forward and backward, in micrograd's order: sum((wi*xi for ...), b).

The graphs share operands between terms and with the start, and put interior nodes in the
terms, so that the order in which gradients accumulate is visible in the bits."""

from __future__ import annotations

import types
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from programs import bits, edge_floats

# A recipe builds the same graph twice: leaves, interior nodes over earlier entries, then the
# operands of the n-ary op (an index into the entries, or ("const", x) for a number). Values
# like 1e17 and -1e17 make gradient contributions cancel, so that their order shows.
cancelling = st.sampled_from([1.0, -1.0, 0.1, 3.0, 2.0**53, -(2.0**53), 1e17, -1e17, 1e-17])
numbers = st.one_of(cancelling, cancelling, cancelling, edge_floats)
ref = st.one_of(st.integers(0, 10**6), numbers.map(lambda x: ("const", x)))
interior = st.tuples(st.sampled_from(["*", "*", "+", "-", "tanh"]), st.integers(0, 10**6),
                     st.one_of(st.integers(0, 10**6), cancelling.map(lambda x: ("const", x))))
recipes = st.fixed_dictionaries(
    {
        "leaves": st.lists(numbers, min_size=1, max_size=3),
        "interior": st.lists(interior, max_size=5),
        "terms": st.lists(ref, min_size=1, max_size=8),
        "others": st.lists(ref, min_size=8, max_size=8),
        "start": ref,
    }
)


def build(impl: types.ModuleType, recipe: dict[str, Any]) -> list[Any]:
    entries = [impl.Value(x) for x in recipe["leaves"]]
    for op, i, j in recipe["interior"]:
        a, b = entries[i % len(entries)], resolve(entries, j)
        entries.append({"+": a + b, "*": a * b, "-": a - b, "tanh": a.tanh()}[op])
    return entries


def resolve(entries: list[Any], r: Any) -> Any:
    return r[1] if isinstance(r, tuple) else entries[r % len(entries)]


def chain_start(impl: types.ModuleType, entries: list[Any], r: Any) -> Any:
    """The chain's first partial sum: a number start is the constant leaf the fused node makes."""
    start = resolve(entries, r)
    return start if isinstance(start, impl.Value) else impl.Value(start)


def observe(root: Any, entries: list[Any]) -> list[bytes]:
    root.backward()
    return [bits(root.data)] + [bits(v.grad) for v in entries]


# About 1 recipe in 200 tells a naive fused backward from the chain's order; 1000 examples
# make that near certain (test_gradients_accumulate_in_the_chains_order pins one such case).
@settings(max_examples=1000)
@given(recipes)
def test_sum_is_the_chain_of_adds(impl: types.ModuleType, recipe: dict[str, Any]) -> None:
    entries = build(impl, recipe)
    terms = [resolve(entries, t) for t in recipe["terms"]]
    fused = impl.sum(terms, resolve(entries, recipe["start"]))
    assert fused._op == "sum"
    fused_result = observe(fused, entries)

    entries = build(impl, recipe)
    chain = chain_start(impl, entries, recipe["start"])
    for t in recipe["terms"]:
        chain = chain + resolve(entries, t)
    assert fused_result == observe(chain, entries)


@settings(max_examples=1000)
@given(recipes)
def test_dot_is_the_chain_of_adds_and_products(impl: types.ModuleType,
                                                recipe: dict[str, Any]) -> None:
    ws, xs = recipe["terms"], recipe["others"][: len(recipe["terms"])]
    entries = build(impl, recipe)
    fused = impl.dot([resolve(entries, w) for w in ws], [resolve(entries, x) for x in xs],
                     resolve(entries, recipe["start"]))
    fused_result = observe(fused, entries)

    entries = build(impl, recipe)
    chain = chain_start(impl, entries, recipe["start"])  # micrograd: sum((wi*xi ...), b)
    for w, x in zip(ws, xs):
        chain = chain + resolve(entries, w) * resolve(entries, x)
    assert fused_result == observe(chain, entries)


def test_gradients_accumulate_in_the_chains_order(impl: types.ModuleType) -> None:
    """x receives 1e17, -1e17 and small contributions: their sum depends on the order."""
    for fused in (True, False):
        x, v1, w = impl.Value(0.1), impl.Value(-2.5), impl.Value(1.001)
        terms = [x, v1, x * 1e17, x * -1e17]
        if fused:
            root = impl.dot([w, w, 1.0, 1.0], terms, v1)
        else:
            root = v1 + w * x + w * v1 + 1.0 * terms[2] + 1.0 * terms[3]
        root.backward()
        if fused:
            fused_grads = (x.grad, v1.grad, w.grad)
        else:
            assert (x.grad, v1.grad, w.grad) == fused_grads
    assert fused_grads[0] == 1.0009999999999999  # (1e17 - 1e17) + 1.001, not 0.0


def test_neuron_sized_dot_is_one_node(impl: types.ModuleType) -> None:
    w = [impl.Value(0.1 * i) for i in range(16)]
    x = [impl.Value(1.0 - 0.05 * i) for i in range(16)]
    b = impl.Value(0.5)
    act = impl.dot(w, x, b)
    assert act._prev == {b, *w, *x}
    act.backward()
    assert [wi.grad for wi in w] == [xi.data for xi in x]
    assert [xi.grad for xi in x] == [wi.data for wi in w]
    assert b.grad == 1.0
