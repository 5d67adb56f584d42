"""Drawing a graph as the micrograd lecture draws it: a record per Value showing
label | data | grad, a small node per operation, edges from operands to the operation and
from the operation to its result.

``to_dot(root)`` gives Graphviz DOT text and needs nothing; ``draw_dot(root)`` gives a
``graphviz.Digraph`` (``pip install 'fastgrad[viz]'``) that notebooks display and that
``.render()`` draws with Graphviz's ``dot`` program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_VALUES = 500  # beyond this a drawing is no longer readable

__all__ = ["MAX_VALUES", "Drawing", "draw_dot", "to_dot"]


@dataclass
class Drawing:
    """The graph below a root, ready to draw: nodes numbered in the order they are found.

    Args:
        values: the Values, the root first.
        edges: (operand, result) pairs of numbers into values, sorted.
    """

    values: list[Any]
    edges: list[tuple[int, int]]  # (operand, result) by number

    @classmethod
    def of(cls, root: Any, max_values: int = MAX_VALUES) -> Drawing:
        """The drawing of the graph below root, walked without recursion.

        Args:
            root: the Value whose graph is drawn.
            max_values: the most Values drawn.

        Returns:
            The Drawing.

        Raises:
            ValueError: the graph has more than max_values Values.
        """
        number = {id(root): 0}
        values, edges, stack = [root], [], [root]  # holding every Value keeps ids stable
        while stack:
            v = stack.pop()
            for child in v._prev:
                if id(child) not in number:
                    if len(values) == max_values:
                        raise ValueError(
                            f"the graph has more than {max_values} values, too many to draw "
                            f"readably; to draw it anyway, pass max_values= a larger number "
                            f"(for example max_values={10 * max_values})"
                        )
                    number[id(child)] = len(values)
                    values.append(child)
                    stack.append(child)
                edges.append((number[id(child)], number[id(v)]))
        return cls(values, sorted(set(edges)))

    def record(self, i: int) -> str:
        """The drawing's record for one node.

        Args:
            i: the node's number.

        Returns:
            Graphviz record text: "{ label | data 1.0000 | grad 0.0000 }".
        """
        v = self.values[i]
        return f"{{ {_escape(v.label)} | data {v.data:.4f} | grad {v.grad:.4f} }}"


def _escape(text: str) -> str:
    """Record labels give backslash and {}|<> meanings of their own; say them literally."""
    for char in "\\{}|<>":
        text = text.replace(char, "\\" + char)
    return text


def _plain(text: str) -> str:
    """A plain label: Graphviz reads \\n and the like in it, so backslashes are doubled."""
    return text.replace("\\", "\\\\")


def _quote(text: str) -> str:
    """A DOT string: its only escape is \\" (backslashes pass through to the label)."""
    return '"' + text.replace('"', '\\"') + '"'


def to_dot(root: Any, rankdir: str = "LR", max_values: int = MAX_VALUES) -> str:
    """The graph below root as Graphviz DOT text, needing nothing installed.

    Args:
        root: the Value whose graph is drawn.
        rankdir: Graphviz's direction: "LR" (left to right) or "TB" (top to bottom).
        max_values: the most Values drawn.

    Returns:
        The DOT text, which `dot -Tsvg` renders.

    Raises:
        ValueError: the graph has more than max_values Values.
    """
    drawing = Drawing.of(root, max_values)
    lines = ["digraph {", f"  rankdir={_quote(rankdir)};"]
    for i, v in enumerate(drawing.values):
        lines.append(f"  v{i} [shape=record, label={_quote(drawing.record(i))}];")
        if v._op:
            lines.append(f"  v{i}op [label={_quote(_plain(v._op))}];")
            lines.append(f"  v{i}op -> v{i};")
    for operand, result in drawing.edges:
        lines.append(f"  v{operand} -> v{result}op;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_dot(root: Any, format: str = "svg", rankdir: str = "LR",
             max_values: int = MAX_VALUES) -> Any:  # fmt: skip
    """The graph below root as a graphviz.Digraph, as in the micrograd lecture.

    Args:
        root: the Value whose graph is drawn.
        format: the format render() writes ("svg", "png", ...).
        rankdir: Graphviz's direction: "LR" (left to right) or "TB" (top to bottom).
        max_values: the most Values drawn.

    Returns:
        A graphviz.Digraph: notebooks display it, .render() draws it with Graphviz's dot.

    Raises:
        ImportError: the graphviz package is not installed.
        ValueError: the graph has more than max_values Values.
    """
    try:
        from graphviz import Digraph
    except ImportError as error:
        raise ImportError(
            "draw_dot needs the graphviz package: pip install 'fastgrad[viz]' "
            "(or use fastgrad.viz.to_dot, which needs nothing)"
        ) from error
    drawing = Drawing.of(root, max_values)
    dot = Digraph(format=format, graph_attr={"rankdir": rankdir})
    for i, v in enumerate(drawing.values):
        dot.node(name=f"v{i}", label=drawing.record(i), shape="record")
        if v._op:
            dot.node(name=f"v{i}op", label=_plain(v._op))
            dot.edge(f"v{i}op", f"v{i}")
    for operand, result in drawing.edges:
        dot.edge(f"v{operand}", f"v{result}op")
    return dot
