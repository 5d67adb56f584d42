"""The C engine's own tests (csrc/tests/test_fastgrad.c), compiled and run as they are, and
again under AddressSanitizer and UndefinedBehaviorSanitizer; and the free-threaded build's
(-DFG_THREADSAFE, csrc/tests/test_shared_arenas.c: threads with arenas of their own sharing
leaves), plainly and under ThreadSanitizer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
ENGINE = ["arena.c", "ops.c", "graph.c", "derive.c", "optim.c",
           "tape.c", "plain.c", "schedule.c", "replay.c", "rows.c", "blocks.c", "blocks_avx2.c",
           "blocks_avx512.c", "blocks_scalar.c", "kernels.c", "threads.c"]
SOURCES = ["tests/test_fastgrad.c", *ENGINE]
SHARED_ARENAS = ["tests/test_shared_arenas.c", *ENGINE]
FREE_THREADED = ["-DFG_THREADSAFE", "-D_POSIX_C_SOURCE=200809L"]
COMPILER = os.environ.get("CC") or next(
    filter(None, (shutil.which(name) for name in ("cc", "gcc", "clang"))), None
)
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-ffp-contract=off", "-I."]

pytestmark = [
    pytest.mark.source_tree,
    pytest.mark.skipif(not (CSRC / "fastgrad.h").exists(), reason="needs the source tree's csrc/"),
    pytest.mark.skipif(COMPILER is None, reason="needs a C compiler"),
    pytest.mark.skipif(sys.platform == "win32", reason="the C tests build with a Unix compiler"),
]


def build_and_run(tmp_path: Path, flags: list[str], chain: int,
                  sources: list[str] = SOURCES) -> str:
    binary = tmp_path / "test_fastgrad"
    build = subprocess.run([COMPILER, *STRICT, *flags, "-o", str(binary), *sources, "-lm",
                            "-lpthread"],
                           cwd=CSRC, capture_output=True, text=True)  # fmt: skip
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(binary), str(chain)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_c_library(tmp_path: Path) -> None:
    assert "all C checks passed" in build_and_run(tmp_path, ["-O2"], chain=10**7)


def test_c_library_under_sanitizers(tmp_path: Path) -> None:
    flags = ["-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all"]  # fmt: skip
    assert "all C checks passed" in build_and_run(tmp_path, flags, chain=10**6)


def test_c_library_threads_under_thread_sanitizer(tmp_path: Path) -> None:
    """run()'s worker threads (test_run_threads, threads 1 to 4) under ThreadSanitizer: any data
    race between the blocks of phase 1 and the leaf sums of phase 2 stops the run."""
    flags = ["-O0", "-g", "-fsanitize=thread"]
    out = build_and_run(tmp_path, flags, chain=10**4)
    assert "all C checks passed" in out and "ThreadSanitizer" not in out


def test_c_library_free_threaded_build(tmp_path: Path) -> None:
    """The free-threaded build's atomic counts and grads, and its foreign-node bookkeeping,
    give every single-threaded check the same bits."""
    flags = [*FREE_THREADED, "-O0", "-g", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all"]  # fmt: skip
    assert "all C checks passed" in build_and_run(tmp_path, flags, chain=10**6)


@pytest.mark.parametrize("sanitizer", ["none", "thread", "address,undefined"])
def test_threads_sharing_leaves(tmp_path: Path, sanitizer: str) -> None:
    """Four threads, each with its own arena, build graphs over shared leaves and a shared
    interior node, run backward and fg_gradients at once and free each other's graphs: every
    private result has the bits it has alone, every addition into a shared grad is whole, and
    the memory comes back (no data race, under ThreadSanitizer)."""
    flags = [*FREE_THREADED, "-O2"] if sanitizer == "none" else [
        *FREE_THREADED, "-O0", "-g", f"-fsanitize={sanitizer}", "-fno-sanitize-recover=all"]
    out = build_and_run(tmp_path, flags, chain=200 if sanitizer == "none" else 30,
                        sources=SHARED_ARENAS)
    assert "all shared-arena checks passed" in out and "ThreadSanitizer" not in out
