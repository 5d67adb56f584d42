"""Builds fastgrad._core: the Cython wrapper compiled together with the C engine in csrc/.

Floating point must round exactly as the pure-Python reference does, so contraction into
fused multiply-adds is off and fast-math is never on; the flags are chosen per compiler. The
engine is built optimised whatever the interpreter was (-O3 vectorises run()'s loops).
"""

import os
import sysconfig
from collections.abc import Callable
from typing import Any

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

C_SOURCES = ["csrc/arena.c", "csrc/ops.c", "csrc/graph.c", "csrc/derive.c", "csrc/optim.c",
             "csrc/tape.c", "csrc/plain.c", "csrc/schedule.c", "csrc/replay.c", "csrc/rows.c",
             "csrc/blocks.c", "csrc/blocks_avx2.c", "csrc/blocks_avx512.c",
             "csrc/blocks_scalar.c", "csrc/kernels.c", "csrc/threads.c"]

STRICT_FLOAT_FLAGS = {
    "msvc": ["/fp:precise", "/O2"],
    "unix": ["-ffp-contract=off", "-fno-fast-math", "-O3"],
    "mingw32": ["-ffp-contract=off", "-fno-fast-math", "-O3"],
}
# A sanitized build (CFLAGS with -fsanitize=..., tests/test_sanitized_extension.py) keeps the
# optimisation level CFLAGS gives: gcc instruments optimised kernels six times as slowly.
SANITIZED = "-fsanitize" in os.environ.get("CFLAGS", "")


class StrictFloatBuildExt(build_ext):
    def build_extensions(self) -> None:
        compiler = self.compiler.compiler_type
        flags = STRICT_FLOAT_FLAGS.get(compiler, STRICT_FLOAT_FLAGS["unix"])
        if SANITIZED:
            flags = [f for f in flags if not f.startswith(("-O", "/O"))]
        for extension in self.extensions:
            extension.extra_compile_args = [*flags, *extension.extra_compile_args]
            if compiler != "msvc":
                # libm by name, so that exp and log bind to the versions Python's math module
                # uses (on glibc, 2.29's, without the legacy errno wrapper): the same bits;
                # POSIX threads for run()'s workers (csrc/threads.c; Win32 threads on Windows)
                extension.libraries = [*extension.libraries, "m", "pthread"]
        if compiler != "msvc":
            self.compiler.compile = _on_every_core(self.compiler.compile)
        super().build_extensions()


def _on_every_core(compile_sources: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """The compiler's compile(), one source file per process on every core: the extension is
    one Cython file and sixteen C files, four of them vector kernels that take a while each."""

    def compile_each(sources: list[str], *args: Any, **kwargs: Any) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            objects = pool.map(lambda source: compile_sources([source], *args, **kwargs),
                               sources)  # fmt: skip
            return [obj for made in objects for obj in made]

    return compile_each


extensions = [
    Extension(
        "fastgrad._core",
        sources=["fastgrad/_core.pyx", *C_SOURCES],
        include_dirs=["csrc", "fastgrad"],
        depends=["csrc/fastgrad.h", "csrc/ops.def", "csrc/ops.h", "csrc/arena.h", "csrc/tape.h",
                 "csrc/threads.h", "csrc/rows.h", "csrc/simd.h", "csrc/atomics.h",
                 "fastgrad/_threads.h", "fastgrad/_tape.pxi", "fastgrad/_derive.pxi",
                 "fastgrad/_nary.pxi", "fastgrad/_parameters.pxi"],
        # a free-threaded CPython (3.13t, 3.14t): nodes may be shared between threads that run
        # at once, so the engine keeps an arena per thread and changes counts and grads
        # atomically (csrc/atomics.h)
        define_macros=[("FG_THREADSAFE", "1")] if sysconfig.get_config_var("Py_GIL_DISABLED")
        else [],
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": StrictFloatBuildExt},
)
