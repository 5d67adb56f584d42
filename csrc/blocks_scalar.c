/*
 * blocks_scalar.c: blocks.c with one double a vector, for any CPU: the fallback where the
 * platform has no vectors fastgrad knows, and FASTGRAD_SIMD=scalar's choice.
 */
#include "rows.h"

#define FG_SCALAR 1
#define FG_BLOCKS_WORK fg_blocks_work_scalar
#define FG_BLOCKS_CHECK_RULES fg_blocks_check_rules_scalar
#include "blocks.c"
