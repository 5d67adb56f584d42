"""Draws the pictures of "How the engine works" from the engine itself:
python docs/make_engine_pictures.py (needs matplotlib). The arena and backward pictures show a
real graph's nodes as fastgrad._core holds them; the op table is read from csrc/ops.def; the
run plan is the one Tape.run made for two real tapes (Tape._run_plan)."""

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


def planned_tapes() -> list[tuple[str, dict]]:
    """Two tapes run over rows, and the plan run made for each (Tape._run_plan): the moons
    demo's classifier, and the PINN's loss with u'' carried forward by hand, whose value,
    d/dx and d2/dx2 dots of one layer interleave neuron by neuron."""
    import numpy as np

    from fastgrad.benchmarks.derivatives import forward_mode_loss
    from fastgrad.demos.moons import per_sample_model
    from fastgrad.demos.pinn import network

    tape, _, xs, targets = per_sample_model(_core, [2, 16, 16, 1], "margin", 0)
    tape.run(xs, np.random.default_rng(0).normal(size=(100, 2)), targets,
             np.ones((100, len(targets))))  # fmt: skip
    x = _core.Value(0.5)
    pinn = _core.Tape(forward_mode_loss(_core, network(_core, 8), x))
    pinn.run([x], np.linspace(0.0, 1.0, 1000).reshape(-1, 1))
    return [("moons classifier, MLP 2-16-16-1, 100 rows", tape._run_plan()),
            ("PINN loss, u'' carried forward, MLP 1-8-8-1, 1,000 rows", pinn._run_plan())]


LOOK = {"unary": "#ffe0b2", "binary": "#ffcc80", "terms": "#cfd8dc", "sum": "#b0bec5",
        "led dot": "#90caf9", "dot": "#64b5f6"}  # fmt: skip
GROUP_COLOURS = ["#2e7d32", "#c62828", "#6a1b9a", "#ef6c00"]


def draw_run_plan(path: Path) -> None:
    tapes = planned_tapes()
    fig, axes = plt.subplots(len(tapes), 1, figsize=(11, 4.2))
    for ax, (title, plan) in zip(axes, tapes):
        steps = plan["steps"]
        for i, step in enumerate(steps):
            look = LOOK[step["loop"] or step["kind"]] if step["kind"] != "divisions" else "#fff59d"
            ax.add_patch(Rectangle((i, 0), 0.9, 1.0, facecolor=look, edgecolor="none"))
            if step["tail"]:
                ax.add_patch(Rectangle((i, 1.0), 0.9, 0.25 * step["tail"], facecolor="#ffe0b2",
                                       edgecolor="none"))  # fmt: skip
            if step["layer"] is not None:
                colour = GROUP_COLOURS[step["colour"] % len(GROUP_COLOURS)]
                ax.add_patch(Rectangle((i, -0.45), 0.9, 0.3, facecolor=colour, edgecolor="none"))
        groups = len({s["layer"] for s in steps if s["layer"] is not None})
        ax.set_xlim(-1, len(steps) + 1)
        ax.set_ylim(-0.7, 2.2)
        ax.axis("off")
        ax.set_title(f"{title}: {len(steps)} steps, {groups} layer groups, "
                     f"{plan['lanes']} values per row, {plan['rows_per_block']} rows a block",
                     fontsize=9, loc="left")  # fmt: skip
    handles = [Rectangle((0, 0), 1, 1, facecolor=c) for c in LOOK.values()]
    labels = ["unary step", "binary step", "n-ary, term by term", "sum of rows",
              "dot led by other terms", "dot of (weight, row) terms"]  # fmt: skip
    handles.append(Rectangle((0, 0), 1, 1, facecolor=GROUP_COLOURS[0]))
    labels.append("below: a layer group's member (a colour per open group)")
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Tape.run's plan, read from the engine (Tape._run_plan): each step one vector "
                 f"loop over a block's rows ({fastgrad.simd()} here: lanes are rows);\na layer "
                 f"group's dots run together at its first member; above a step, the unary ops "
                 f"fused after it", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.92))
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
