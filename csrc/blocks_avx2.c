/*
 * blocks_avx2.c: blocks.c for AVX2's four-double vectors, on x86-64 CPUs that have it. The
 * lanes' arithmetic is the same IEEE operations, one per lane, so the bits are too.
 */
#include "rows.h"

#if FG_X86_KERNELS
#define FG_TARGET "avx2"
#define FG_AVX2 1
#define FG_BLOCKS_WORK fg_blocks_work_avx2
#define FG_BLOCKS_CHECK_RULES fg_blocks_check_rules_avx2
#include "blocks_target.h"
#else
typedef int fg_no_avx2_here; /* (ISO C wants a translation unit to declare something) */
#endif
