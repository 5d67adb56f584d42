"""Draws the pictures of "How the engine works" from the engine itself:
python docs/make_engine_pictures.py (needs matplotlib). The arena and backward pictures show a
real graph's nodes as fastgrad._core holds them; the op table is read from csrc/ops.def; the
run plan draws how Tape.run cuts rows into blocks for the vector kernel this machine uses."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

import fastgrad
from fastgrad import _core

HERE = Path(__file__).parent / "images"
OPS_DEF = Path(__file__).resolve().parent.parent / "csrc" / "ops.def"


def neuron_graph() -> tuple[list[tuple], list[int]]:
    """tanh(x w + b) with its grads after backward(): the records of _core._graph (post-order,
    operands first) and, per record, the indices of its operands."""
    x, w, b = _core.Value(2.0), _core.Value(-1.5), _core.Value(0.5)
    x.label, w.label, b.label = "x", "w", "b"
    out = (x * w + b).tanh()
    out.backward()
    records = _core._graph([out])
    index = {id(r[0]): i for i, r in enumerate(records)}
    operands = [[index[id(o)] for o in r[2]] for r in records]
    return records, operands


def _name(record: tuple) -> str:
    v, op = record[0], record[1]
    return v.label or op or "leaf"


def draw_arena(path: Path) -> None:
    records, operands = neuron_graph()
    fig, ax = plt.subplots(figsize=(11, 3.2))
    width = 1.6
    for i, r in enumerate(records):
        x0 = i * (width + 0.25)
        ax.add_patch(Rectangle((x0, 0), width, 1.6, fill=True, facecolor="#e3f2fd",
                               edgecolor="#1565c0"))  # fmt: skip
        v = r[0]
        text = (f"node {i} ({_name(r)})\nop: {r[1] or 'leaf'}\ndata {v.data:.4g}\n"
                f"grad {v.grad:.4g}\noperands {operands[i] or '-'}")  # fmt: skip
        ax.text(x0 + width / 2, 0.8, text, ha="center", va="center", fontsize=8,
                family="monospace")  # fmt: skip
        for k in operands[i]:
            ax.add_patch(FancyArrowPatch((x0 + width / 2, 1.6), (k * (width + 0.25) + width / 2,
                                                                 1.6),
                                         connectionstyle="arc3,rad=-0.35", arrowstyle="->",
                                         mutation_scale=10, color="#555555"))  # fmt: skip
    ax.set_xlim(-0.2, len(records) * (width + 0.25))
    ax.set_ylim(-0.4, 3.0)
    ax.axis("off")
    ax.set_title("The arena: tanh(x w + b)'s nodes as fastgrad._core holds them (one slab, "
                 "56 bytes each; arrows: operands)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_backward(path: Path) -> None:
    records, operands = neuron_graph()
    depth: list[int] = []
    for ops in operands:
        depth.append(1 + max((depth[k] for k in ops), default=-1))
    rows: dict[int, int] = {}
    place = []
    for d in depth:
        place.append((d * 2.4, -rows.get(d, 0) * 1.3))
        rows[d] = rows.get(d, 0) + 1
    fig, ax = plt.subplots(figsize=(10, 3.6))
    last = len(records) - 1
    for i, (x, y) in enumerate(place):
        for k in operands[i]:
            ax.annotate("", xy=(x - 0.75, y), xytext=(place[k][0] + 0.75, place[k][1]),
                        arrowprops={"arrowstyle": "->", "color": "#777777"})  # fmt: skip
        v = records[i][0]
        ax.add_patch(Rectangle((x - 0.75, y - 0.45), 1.5, 0.9, facecolor="#fff3e0",
                               edgecolor="#ef6c00"))  # fmt: skip
        ax.text(x, y, f"{_name(records[i])}\n{v.data:.3g} | grad {v.grad:.3g}", ha="center",
                va="center", fontsize=8)  # fmt: skip
        ax.text(x + 0.78, y + 0.38, f"#{last - i + 1}", fontsize=8, color="#c62828")
    ax.set_xlim(-1, max(p[0] for p in place) + 1.2)
    ax.set_ylim(min(p[1] for p in place) - 0.8, 0.9)
    ax.axis("off")
    ax.set_title("Backward: the post-order (operands left to right, as micrograd's build_topo),"
                 " walked in reverse;\nred: the order in which each node passes its grad to its "
                 "operands (iterative: no recursion limit)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _split_top(args: str) -> list[str]:
    parts, level, current = [], 0, ""
    for ch in args:
        if ch == "," and level == 0:
            parts.append(current.strip())
            current = ""
            continue
        level += ch == "("
        level -= ch == ")"
        current += ch
    parts.append(current.strip())
    return parts


def op_rows() -> list[list[str]]:
    """(kind, op, symbol, forward, derivatives) of every row of csrc/ops.def."""
    rows = []
    for line in OPS_DEF.read_text().splitlines():
        m = re.match(r"FG_(\w+)\s*\((.*)\)\s*$", line.strip())
        if m is None or m.group(1) == "LEAF" or m.group(2).startswith("name"):
            continue  # (the leaf, and the comment that shows a row's form)
        parts = _split_top(m.group(2))
        rows.append([m.group(1).lower(), parts[0], parts[1].strip('"'), parts[2] if len(parts) > 2
                     else "", "; ".join(parts[3:])])  # fmt: skip
    return rows


def draw_op_table(path: Path) -> None:
    rows = op_rows()
    fig, ax = plt.subplots(figsize=(12, 0.26 * len(rows) + 1.0))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=["kind", "op", "symbol", "forward", "d/d operand"],
                     loc="center", cellLoc="left", colWidths=[0.1, 0.09, 0.07, 0.26, 0.48])
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    table.scale(1, 1.05)
    ax.set_title(f"csrc/ops.def: the {len(rows)} ops, each one row with its forward rule and "
                 "local derivatives; every pass expands these rows", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_run_plan(path: Path) -> None:
    rows, lanes, threads = 64, 8, 2
    steps = ["dot (layer 1)", "relu", "dot (layer 2)", "logsumexp - dot", "backward"]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    colours = ["#bbdefb", "#c8e6c9"]
    for block in range(rows // lanes):
        thread = block % threads
        for s in range(len(steps)):
            ax.add_patch(Rectangle((s * 1.9, -block * 0.42), 1.8, 0.36, facecolor=colours[thread],
                                   edgecolor="#607d8b", linewidth=0.5))  # fmt: skip
        ax.text(-0.15, -block * 0.42 + 0.18, f"rows {block * lanes}-{block * lanes + lanes - 1}",
                ha="right", va="center", fontsize=7)  # fmt: skip
    for s, name in enumerate(steps):
        ax.text(s * 1.9 + 0.9, 0.55, name, ha="center", fontsize=8)
    ax.text(len(steps) * 1.9 + 0.2, -1.4,
            "then each leaf's grad +=\nthe rows' gradients,\none row at a time, in row\n"
            "order (the bits never\ndepend on threads)", fontsize=8, va="center")  # fmt: skip
    ax.set_xlim(-2.2, len(steps) * 1.9 + 3.2)
    ax.set_ylim(-(rows // lanes) * 0.42 - 0.2, 1.0)
    ax.axis("off")
    ax.set_title(f"Tape.run's plan: the tape's fused steps run over blocks of rows, one vector "
                 f"loop per step ({fastgrad.simd()} here: lanes are rows);\nweights and constants "
                 f"are scalars; blue and green: the blocks of two threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PICTURES = {"engine-arena.png": draw_arena, "engine-ops.png": draw_op_table,
            "engine-backward.png": draw_backward, "engine-run.png": draw_run_plan}


def main(folder: Path = HERE) -> None:
    folder.mkdir(exist_ok=True)
    for name, draw in PICTURES.items():
        draw(folder / name)


if __name__ == "__main__":
    main()
