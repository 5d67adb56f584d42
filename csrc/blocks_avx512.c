/*
 * blocks_avx512.c: blocks.c for AVX-512's eight-double vectors, on x86-64 CPUs that have
 * AVX-512F. The lanes' arithmetic is the same IEEE operations, one per lane, so the bits are
 * too.
 */
#include "rows.h"

#if FG_X86_KERNELS
#define FG_TARGET "avx512f"
#define FG_AVX512 1
#define FG_BLOCKS_WORK fg_blocks_work_avx512
#define FG_BLOCKS_CHECK_RULES fg_blocks_check_rules_avx512
#include "blocks_target.h"
#else
typedef int fg_no_avx512_here; /* (ISO C wants a translation unit to declare something) */
#endif
