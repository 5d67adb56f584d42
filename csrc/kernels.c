/*
 * kernels.c: the copies of run()'s row loops, one per instruction set, and the one in use:
 * the widest this CPU runs, unless another is selected (FASTGRAD_SIMD, tests).
 */
#include <string.h>

#include "rows.h"

static int always(void)
{
    return 1;
}

#if FG_X86_KERNELS
static int has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
}

static int has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
}
#endif

static const fg_kernel kernels[] = {
#if FG_X86_KERNELS
    {"avx512", fg_blocks_work_avx512, fg_blocks_check_rules_avx512, has_avx512},
    {"avx2", fg_blocks_work_avx2, fg_blocks_check_rules_avx2, has_avx2},
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(_M_AMD64)
    {"sse2", fg_blocks_work, fg_blocks_check_rules, always},
#elif defined(__aarch64__) && defined(__ARM_NEON)
    {"neon", fg_blocks_work, fg_blocks_check_rules, always},
#endif
    {"scalar", fg_blocks_work_scalar, fg_blocks_check_rules_scalar, always},
};

#define KERNELS (sizeof kernels / sizeof kernels[0])

static const fg_kernel *selected = NULL;

const fg_kernel *fg_kernel_at(size_t i)
{
    return i < KERNELS ? &kernels[i] : NULL;
}

const fg_kernel *fg_kernel_selected(void)
{
    size_t i;
    if (selected == NULL) {
        for (i = 0; i < KERNELS && !kernels[i].supported(); i++)
            ;
        selected = &kernels[i < KERNELS ? i : KERNELS - 1];
    }
    return selected;
}

const char *fg_simd_kernel(size_t i)
{
    return i < KERNELS ? kernels[i].name : NULL;
}

static const fg_kernel *named(const char *name)
{
    size_t i;
    for (i = 0; i < KERNELS; i++)
        if (strcmp(kernels[i].name, name) == 0)
            return &kernels[i];
    return NULL;
}

int fg_simd_supported(const char *name)
{
    const fg_kernel *k = named(name);
    return k == NULL ? -1 : k->supported() != 0;
}

int fg_simd_select(const char *name)
{
    const fg_kernel *k = named(name);
    if (k == NULL)
        return -1;
    if (!k->supported())
        return 0;
    selected = k;
    return 1;
}

const char *fg_simd_selected(void)
{
    return fg_kernel_selected()->name;
}
