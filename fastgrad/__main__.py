"""python -m fastgrad demo | bench | run script.py [args]"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastgrad", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a small model and report its speed")
    demo.add_argument("--digits", action="store_true",
                      help="classify scikit-learn's handwritten digits, trained with Tape.run "
                           "(instead of micrograd's moons)")
    demo.add_argument("--steps", type=int, default=100, help="moons: training steps (default 100)")
    demo.add_argument("--epochs", type=int, default=15, help="digits: epochs (default 15)")
    demo.add_argument("--threads", type=int, default=1,
                      help="digits: Tape.run's worker threads (default 1)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--backend", choices=["c", "python"], default="c",
                      help="train on the C engine (default) or the pure-Python reference")
    demo.add_argument("--plot", metavar="FILE.png",
                      help="draw the decision boundary, or the digits' predictions (matplotlib)")
    demo.add_argument("--tape", action="store_true",
                      help="moons: record the loss graph once and replay it in C (fastgrad.Tape)")
    bench = commands.add_parser("bench", help="print the benchmark table (SPEC section 5)")
    bench.add_argument("--quick", action="store_true", help="shorter timings, rougher figures")
    run = commands.add_parser("run", help="run a micrograd script on fastgrad, unchanged")
    run.add_argument("script", help="the script; `import micrograd` in it gives fastgrad")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from .benchmarks import main as bench_main

        bench_main(quick=args.quick)
    elif args.command == "run":
        from ._compat import run_script

        run_script(args.script, args.args)
    elif args.digits:
        from . import digits_demo
        from .demo import engine_named

        digits_demo.main(engine_named(args.backend), epochs=args.epochs, seed=args.seed,
                         threads=args.threads, plot_path=args.plot)  # fmt: skip
    else:
        from .demo import main as demo_main

        demo_main(steps=args.steps, seed=args.seed, backend=args.backend, plot_path=args.plot,
                  tape=args.tape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
