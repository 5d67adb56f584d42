"""python -m fastgrad demo | bench | run script.py [args]"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable


def _case_ids(text: str) -> frozenset[str]:
    """An argparse type: benchmark case ids, comma-separated, each one that exists."""
    from .benchmarks import case_ids

    ids = frozenset(part.strip().upper() for part in text.split(",") if part.strip())
    unknown = sorted(ids - case_ids())
    if unknown or not ids:
        named = ", ".join(unknown) if unknown else repr(text)
        raise argparse.ArgumentTypeError(
            f"no benchmark case {named}; the cases are "
            f"{', '.join(sorted(case_ids(), key=lambda c: (len(c), c)))}")
    return ids


def _counting(least: int) -> Callable[[str], int]:
    """An argparse type: an int of at least `least` (a usage error otherwise)."""
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"{number} is less than {least}")
        return number

    parse.__name__ = "count"
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastgrad", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a small model and report its speed")
    demo.add_argument("--digits", action="store_true",
                      help="classify scikit-learn's handwritten digits, trained with Tape.run "
                           "(instead of micrograd's moons)")
    demo.add_argument("--pinn", action="store_true",
                      help="solve u'' = -pi^2 sin(pi x) on [0, 1], u(0) = u(1) = 0, with a "
                           "network trained through its own second derivative")
    demo.add_argument("--steps", type=_counting(1),
                      help="moons, pinn: training steps (default 100, 2000)")
    demo.add_argument("--epochs", type=_counting(1), default=15, help="digits: epochs (default 15)")
    demo.add_argument("--threads", type=_counting(1), default=1,
                      help="digits, pinn: Tape.run's worker threads (default 1)")
    demo.add_argument("--workers", type=_counting(1),
                      help="digits: train through fastgrad.distributed.DataParallel on this "
                           "many Dask worker processes (needs fastgrad[distributed])")
    demo.add_argument("--seed", type=_counting(0), default=0, help="random seed (default 0)")
    demo.add_argument("--backend", choices=["c", "python"], default="c",
                      help="train on the C engine (default) or the pure-Python reference")
    demo.add_argument("--plot", metavar="FILE.png",
                      help="draw the decision boundary, the digits' predictions, or the "
                           "pinn's solution and residual (matplotlib)")
    demo.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                      help="moons, digits: micrograd's SGD update (moons), SGD with momentum "
                           "(digits), or fastgrad.optim.Adam (default sgd)")
    demo.add_argument("--tape", action="store_true",
                      help="moons: record the loss graph once and replay it in C (fastgrad.Tape)")
    bench = commands.add_parser(
        "bench", help="time fastgrad beside float ops, micrograd, PyTorch, JAX and "
                      "hand-written C in one run, and print the ratios")
    bench.add_argument("--quick", action="store_true", help="shorter timings, rougher figures")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="also draw the ratios (fastgrad beside each baseline) to a PNG "
                            "(needs matplotlib)")
    bench.add_argument("--cases", type=_case_ids, metavar="IDS",
                       help="only the cases of these ids, comma-separated (e.g. B8,B12)")
    run = commands.add_parser("run", help="run a micrograd script on fastgrad, unchanged")
    run.add_argument("script", help="the script; `import micrograd` in it gives fastgrad")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from .benchmarks import main as bench_main

        bench_main(quick=args.quick, cases=args.cases, plot_path=args.plot)
    elif args.command == "run":
        from ._compat import run_script

        if not os.path.isfile(args.script):
            why = "is a directory" if os.path.isdir(args.script) else "does not exist"
            run.error(f"the script {args.script!r} {why}")

        run_script(args.script, args.args)
    elif args.pinn:
        from .demos import pinn as pinn_demo
        from .demos.moons import engine_named

        steps = 2000 if args.steps is None else args.steps
        pinn_demo.main(engine_named(args.backend), steps=steps, seed=args.seed,
                       threads=args.threads, plot_path=args.plot)  # fmt: skip
    elif args.digits and args.workers is not None:
        from .demos import digits as digits_demo
        from .demos.moons import engine_named

        digits_demo.main_workers(engine_named(args.backend), workers=args.workers,
                                 steps=300 if args.steps is None else args.steps,
                                 seed=args.seed)  # fmt: skip
    elif args.digits:
        from .demos import digits as digits_demo
        from .demos.moons import engine_named

        digits_demo.main(engine_named(args.backend), epochs=args.epochs, seed=args.seed,
                         threads=args.threads, plot_path=args.plot,
                         optimizer=args.optimizer)  # fmt: skip
    else:
        from .demos.moons import main as demo_main

        demo_main(steps=100 if args.steps is None else args.steps, seed=args.seed,
                  backend=args.backend,
                  plot_path=args.plot,
                  tape=args.tape, optimizer=args.optimizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
