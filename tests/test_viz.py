"""fastgrad.viz: DOT text parsed back by Graphviz itself, drawings rendered by its dot
program, and a clear refusal for graphs too big to read."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import types
from typing import Any

import pytest

from fastgrad import nn, viz

DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(
    DOT is None, reason="needs Graphviz's dot program (apt install graphviz)"
)


def graph(impl: types.ModuleType) -> tuple[Any, list[Any]]:
    a, b = impl.Value(2.0, label="a"), impl.Value(-3.0, label="b")
    c = a * b
    c.label = "c{|}"  # record syntax, to be escaped
    d = (c + a).tanh() + impl.dot([a, b], [b, 1.5], c)
    d.label = "d"
    d.backward()
    return d, [a, b, c, d]


def structure(root: Any) -> tuple[int, int, int]:
    """Values, operation nodes and edges, counted by walking _prev, independently of viz."""
    seen, stack, values = {id(root)}, [root], [root]
    while stack:
        for child in stack.pop()._prev:
            if id(child) not in seen:
                seen.add(id(child))
                values.append(child)
                stack.append(child)
    ops = [v for v in values if v._op]
    return len(values), len(ops), sum(len(v._prev) for v in ops) + len(ops)


@needs_dot
def test_to_dot_parses_back_with_the_counts_of_the_graph(impl: types.ModuleType) -> None:
    root, _ = graph(impl)
    text = viz.to_dot(root)
    parsed = json.loads(subprocess.run([DOT, "-Tjson"], input=text, capture_output=True,
                                       text=True, check=True).stdout)  # fmt: skip
    values, ops, edges = structure(root)
    assert len(parsed["objects"]) == values + ops
    assert len(parsed["edges"]) == edges
    records = [o["label"] for o in parsed["objects"] if o.get("shape") == "record"]
    assert len(records) == values
    assert any(r.startswith("{ c\\{\\|\\} | data -6.0000 | grad") for r in records)


def test_to_dot_needs_nothing_and_shows_every_value(impl: types.ModuleType) -> None:
    root, named = graph(impl)
    text = viz.to_dot(root)
    assert text.startswith("digraph {") and text.rstrip().endswith("}")
    for v in named:
        assert f"data {v.data:.4f} | grad {v.grad:.4f}" in text
    assert '[label="tanh"]' in text and '[label="dot"]' in text


@needs_dot
def test_draw_dot_renders_to_svg_with_every_label(impl: types.ModuleType, tmp_path: Any) -> None:
    pytest.importorskip("graphviz", reason="draw_dot needs the viz extra")
    root, named = graph(impl)
    drawing = viz.draw_dot(root, format="svg", rankdir="TB")
    assert drawing.graph_attr["rankdir"] == "TB"
    svg = open(drawing.render(tmp_path / "graph")).read()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    texts = {html.unescape(t).strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)}
    for v in named:
        assert {v.label, f"data {v.data:.4f}", f"grad {v.grad:.4f}"} <= texts
    assert {"tanh", "dot", "*", "+"} <= texts


def test_a_neuron_draws_as_one_dot_node(impl: types.ModuleType) -> None:
    n = nn.Neuron(3, engine=impl)
    out = n([1.0, -2.0, 0.5])
    text = viz.to_dot(out)
    assert text.count('[label="dot"]') == 1 and text.count('[label="ReLU"]') == 1


def test_big_graphs_are_refused_with_the_way_out(impl: types.ModuleType) -> None:
    x = impl.Value(1.0)
    y = x
    for _ in range(600):
        y = y * 1.0001
    with pytest.raises(ValueError, match=r"more than 500 values.*max_values="):
        viz.to_dot(y)
    assert viz.to_dot(y, max_values=2000).count("shape=record") == 1201
    with pytest.raises(ValueError, match="more than 10 values"):
        viz.draw_dot(y, max_values=10) if _has_graphviz() else viz.to_dot(y, max_values=10)


def _has_graphviz() -> bool:
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return True
