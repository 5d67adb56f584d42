"""The extension itself under AddressSanitizer and UndefinedBehaviorSanitizer: a copy of the
package is built with the sanitizers and the behavioural tests run against it in a child
interpreter with the sanitizer runtimes preloaded. A use-after-free or overflow anywhere in
the wrapper or the engine stops that run with a report."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GCC = shutil.which("gcc")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.source_tree,
    pytest.mark.skipif(not (ROOT / "csrc" / "fastgrad.h").exists(), reason="needs the source tree"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or GCC is None,
                       reason="the sanitizer runtimes are preloaded the Linux/gcc way"),
]  # fmt: skip

# The suites whose tests drive the engine's C; nn's are Python over the same n-ary nodes that
# test_nary runs here
SUITES = ["test_value.py", "test_errors.py", "test_parity.py", "test_nary.py", "test_tape.py",
          "test_files.py", "test_run.py", "test_gradients.py", "test_optim.py",
          "test_free_threading.py", "test_roots.py", "test_shards.py"]
# PyTorch's 300 steps per option set: the C steps of the same option sets run here in
# test_c_and_reference_take_the_same_steps; beside PyTorch they only cost time
NOT_UNDER_SANITIZERS = "not within_1e12_of_pytorch"


def runtime(name: str) -> str:
    path = subprocess.run([GCC, f"-print-file-name={name}"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    if not os.path.isabs(path):
        pytest.skip(f"gcc has no {name}")
    return path


def test_extension_under_sanitizers(tmp_path: Path) -> None:
    pytest.importorskip("Cython")
    preload = f"{runtime('libasan.so')}:{runtime('libubsan.so')}"
    for part in ("fastgrad", "csrc", "tests"):
        shutil.copytree(ROOT / part, tmp_path / part,
                        ignore=shutil.ignore_patterns("*.so", "*.pyd", "_core.c", "__pycache__"))
    shutil.copy(ROOT / "setup.py", tmp_path)
    # -O0: gcc instruments the optimised kernels six times as slowly, and finds the same errors
    flags = "-O0 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
    env = dict(os.environ, CFLAGS=flags, LDFLAGS="-fsanitize=address,undefined",
               CC=GCC, LDSHARED=f"{GCC} -shared")  # fmt: skip
    env.pop("FASTGRAD_PURE_PYTHON", None)
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert any((tmp_path / "fastgrad").glob(f"_core*{sysconfig.get_config_var('EXT_SUFFIX')}"))

    # hypothesis's quick profile: every test and op under the sanitizers, fewer random programs;
    # the tests of both engines on the extension only (the pure-Python one has no C to check)
    env = dict(os.environ, LD_PRELOAD=preload, PYTHONPATH=str(tmp_path),
               ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1",
               FASTGRAD_HYPOTHESIS="quick", FASTGRAD_TEST_ENGINES="c")  # fmt: skip
    env.pop("FASTGRAD_PURE_PYTHON", None)
    check = subprocess.run(
        [sys.executable, "-c", "import fastgrad._core as c; print(c.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert check.stdout.startswith(str(tmp_path)), check.stdout + check.stderr
    # --capture=sys leaves file descriptor 2 alone, so a sanitizer's report reaches us.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "--capture=sys", "-p", "no:cacheprovider",
         "-m", "not slow", "-k", NOT_UNDER_SANITIZERS,
         *[f"tests/{suite}" for suite in SUITES]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
