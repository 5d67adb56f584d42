/*
 * blocks_avx2.c: blocks.c built a second time for AVX2's four-double vectors, for x86-64 CPUs
 * that have it (chosen at run time by fg_blocks_have_avx2; the wheels target the baseline).
 * The lanes' arithmetic is the same IEEE operations, one per lane, so the bits are too.
 */
#include "rows.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) \
    && !defined(FG_NO_AVX2)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif
#define FG_AVX2 1
#define FG_BLOCKS_WORK fg_blocks_work_avx2
#define FG_BLOCKS_CHECK_RULES fg_blocks_check_rules_avx2
#include "blocks.c"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

static int allowed = 1;

int fg_blocks_have_avx2(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") != 0;
    }
    return known && allowed;
}

int fg_blocks_allow_avx2(int allow)
{
    allowed = allow;
    return fg_blocks_have_avx2();
}

#else

int fg_blocks_have_avx2(void)
{
    return 0;
}

int fg_blocks_allow_avx2(int allow)
{
    (void)allow;
    return 0;
}

void fg_blocks_work_avx2(run_context *ctx, unsigned thread)
{
    fg_blocks_work(ctx, thread);
}

int fg_blocks_check_rules_avx2(void)
{
    return 0;
}

#endif
