"""Before and after: B1 and B7 (and B9L) of two built fastgrad trees, each timed in a process
of its own, the two alternating, so that a change of the machine's load weighs on both.

    python bench/compare_builds.py OLD_TREE NEW_TREE [--rounds 5]

A tree is a checkout with its extension built in place (`python setup.py build_ext
--inplace`); `git worktree add /tmp/old <commit>` gives the old one. Prints each figure's
best and median over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

# One round in a tree: B1 (a + b; a * b per op), B7 (one forward + backward of its graph)
# and B9L's two threads against one while every core is busy, in seconds.
ROUND = """
import contextlib, os, subprocess, sys, time, timeit
sys.path.insert(0, sys.argv[1])
from fastgrad import _core as C
try:
    from fastgrad.benchmarks import tape as T
except ImportError:  # a tree from before the benchmarks package
    from fastgrad import _tape_benchmarks as T
@contextlib.contextmanager
def every_core_busy():  # (its own: an older tree has none)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 1)]
    time.sleep(0.2)
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
a, b = C.Value(1.5), C.Value(-2.0)
b1 = min(timeit.repeat("a + b; a * b", globals=globals(), number=100000, repeat=7)) / 2e5
root, _ = T.fastest_autograd_graph(C)
tape = C.Tape(root)
def replay():
    tape.forward(); tape.backward()
b7 = min(timeit.repeat(replay, number=100, repeat=7)) / 100
tape, _, inputs, targets = T.per_sample_model(C, [64, 32, 10], "cross_entropy")
X, Y = T.dataset(1797, [64, 32, 10], "cross_entropy")
def run(threads):
    return min(timeit.repeat(lambda: tape.run(inputs, X, targets, Y, threads=threads),
                             number=1, repeat=30))
with every_core_busy():
    b9l = run(2) / run(1)
print(b1, b7, b9l)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[list[float]]] = {args.old: [], args.new: []}
    for _ in range(args.rounds):
        for tree in (args.old, args.new):
            out = subprocess.run([sys.executable, "-c", ROUND, tree], capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
            figures[tree].append([float(x) for x in out.split()])
    for tree, rows in figures.items():
        b1, b7, b9l = zip(*rows)
        print(f"{tree}: B1 {min(b1) * 1e9:.1f} ns (median {statistics.median(b1) * 1e9:.1f}), "
              f"B7 {min(b7) * 1e6:.1f} us (median {statistics.median(b7) * 1e6:.1f}), "
              f"B9L threads=2 / threads=1 {min(b9l):.2f}x (median {statistics.median(b9l):.2f}x)")


if __name__ == "__main__":
    main()
