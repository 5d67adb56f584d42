/*
 * blocks_target.h: blocks.c compiled once more, for the instruction set FG_TARGET names (a
 * GCC/Clang target string), its functions named by FG_BLOCKS_WORK and FG_BLOCKS_CHECK_RULES.
 * Included by the files of the copies that need a target beyond the platform's baseline
 * (blocks_avx2.c, blocks_avx512.c); kernels.c runs a copy only on a CPU that has it.
 */
#define FG_PRAGMA(text) _Pragma(#text)
#define FG_TARGET_PUSH(isa) FG_PRAGMA(GCC target(isa))

#if defined(__clang__)
#define FG_CLANG_TARGET_PUSH(isa) \
    FG_PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function))
FG_CLANG_TARGET_PUSH(FG_TARGET)
#else
#pragma GCC push_options
FG_TARGET_PUSH(FG_TARGET)
#endif

#include "blocks.c"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
