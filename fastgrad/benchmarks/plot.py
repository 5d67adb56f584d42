"""python -m fastgrad bench --plot FILE.png: the table's ratios as a picture, one bar per
baseline: how many times faster (right of 1) or slower (left) fastgrad ran beside it, on a
log axis, with the machine and the vector kernel the figures used in the title."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

RATIO = re.compile(r"fastgrad ([0-9.]+)x (faster|slower|smaller|larger)")


def ratios(rows: Sequence[tuple[str, str, str, str]]) -> list[tuple[str, str, float]]:
    """(case, baseline, speed-up) from the table's rows: above 1 where fastgrad was faster (or
    smaller), below where it was slower; rows without such a verdict (fastgrad's own, the
    float op's "takes Nx", compile times) are left out."""
    out = []
    case = ""
    for row_case, contender, _figure, verdict in rows:
        case = row_case or case
        said = RATIO.fullmatch(verdict)
        if said is None:
            continue
        factor = float(said.group(1))
        out.append((case, contender, factor if said.group(2) in ("faster", "smaller")
                    else 1.0 / factor))  # fmt: skip
    return out


def plot(rows: Sequence[tuple[str, str, str, str]], path: str, machine: str) -> int:
    """Draws the rows' ratios to path (PNG); returns how many bars it drew."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = ratios(rows)
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(bars) + 1.6))
    labels = [textwrap.shorten(f"{case}  vs {who}", 95, placeholder="...")
              for case, who, _ in bars]  # fmt: skip
    values = [r for _, _, r in bars]
    positions = list(range(len(bars)))[::-1]
    ax.barh(positions, values, color=["#2e7d32" if v >= 1 else "#c62828" for v in values])
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=7)
    for y, v in zip(positions, values):
        ax.annotate(f"{v:.2g}x" if v >= 1 else f"1/{1 / v:.2g}x", (v, y), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7)  # fmt: skip
    ax.set_xlabel("fastgrad's speed beside the baseline (right of 1: faster; log scale)")
    ax.set_title(textwrap.fill(f"python -m fastgrad bench: {machine}", 110), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(bars)
