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
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(bars) + 1.6))
    labels = [f"{_short(case)}\nvs {_short(who)}" for case, who, _ in bars]
    values = [r for _, _, r in bars]
    positions = list(range(len(bars)))[::-1]
    ax.barh(positions, values, color=["#2e7d32" if v >= 1 else "#c62828" for v in values])
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=6.5)
    for y, v in zip(positions, values):
        ax.annotate(_times(v) if v >= 1 else "1/" + _times(1 / v), (v, y), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7)  # fmt: skip
    ax.set_xlabel("fastgrad's speed beside the baseline (right of 1: faster; log scale)")
    ax.set_title(textwrap.fill(f"python -m fastgrad bench: {machine}", 110), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(bars)


def _times(factor: float) -> str:
    return f"{factor:.2f}x" if factor < 10 else f"{factor:,.0f}x"


def _short(text: str) -> str:
    return textwrap.shorten(text, 52, placeholder="...")
