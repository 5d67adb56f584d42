"""B8's three cases alone, fastgrad's run beside PyTorch (float64, one thread), best of a
few calls each, with the SIMD kernel that ran: a quick before/after for the dense loops.

    python bench/b8_ratios.py            # the kernel fastgrad picks for this CPU
    FASTGRAD_SIMD=avx2 python bench/b8_ratios.py

`python -m fastgrad bench` gives the full table with its statistics.
"""

from __future__ import annotations

import time

import torch

from fastgrad import _core
from fastgrad.benchmarks import tape as _tape_benchmarks

torch.set_num_threads(1)
print(f"kernel: {_core.simd()}")
for case in [c for c in _tape_benchmarks.TAPE_CASES if c.id == "B8"]:
    best = {}
    for name, call in case.build().items():
        call()
        times = []
        for _ in range(7 if "MNIST" in case.title else 15):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    ours, theirs = best["fastgrad run"], best[_tape_benchmarks.PYTORCH]
    print(f"{case.title}: fastgrad {ours * 1e3:.3f} ms, PyTorch {theirs * 1e3:.3f} ms, "
          f"PyTorch / fastgrad {theirs / ours:.2f}")
