"""Before and after: any benchmark case's fastgrad contender in two built trees, each timed
in a process of its own, the two alternating, so that a change of the machine's load weighs on
both. For the cases compare_builds.py does not time (B8, B10, B12...).

    python bench/compare_cases.py OLD_TREE NEW_TREE --case B8:MNIST --case B8:moons [--rounds 4]

A case is ID:words of its title; the figure is the best of `--calls` calls of its first
fastgrad contender. A tree is a checkout with its extension built in place; `git worktree add
/tmp/old <commit>` gives the old one. Prints each case's best and median over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

ROUND = """
import sys, time
sys.path.insert(0, sys.argv[1])
from fastgrad import _core, benchmarks
assert _core.__file__.startswith(sys.argv[1]), _core.__file__
calls = int(sys.argv[2])
for spec in sys.argv[3:]:
    case_id, words = spec.split(":", 1)
    case = next(c for c in benchmarks.CASES if c.id == case_id and words in c.title)
    contenders = case.build()
    run = next(f for name, f in contenders.items() if name.startswith("fastgrad"))
    run()
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    print(best)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--case", action="append", required=True, help="ID:words of its title")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    seen: dict[str, dict[str, list[float]]] = {args.old: {}, args.new: {}}
    for _ in range(args.rounds):
        for tree in (args.old, args.new):
            out = subprocess.run([sys.executable, "-c", ROUND, tree, str(args.calls), *args.case],
                                 capture_output=True, text=True, check=True, cwd="/")
            for case, line in zip(args.case, out.stdout.split()):
                seen[tree].setdefault(case, []).append(float(line))
    for case in args.case:
        before, after = seen[args.old][case], seen[args.new][case]
        print(f"{case}: before best {min(before) * 1e3:.3f} ms (median "
              f"{statistics.median(before) * 1e3:.3f}), after best {min(after) * 1e3:.3f} ms "
              f"(median {statistics.median(after) * 1e3:.3f}): {min(before) / min(after):.2f}x")


if __name__ == "__main__":
    main()
