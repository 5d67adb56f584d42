/*
 * simd.h: a few vector operations on doubles for blocks.c's loops, so that they vectorise
 * whatever the compiler's mood: each lane is its own IEEE multiply or add (never a fused
 * multiply-add), so the bits are those of scalar code.
 *
 * The width is the platform's baseline (SSE2 on x86-64, NEON on AArch64) unless one of
 * FG_AVX512, FG_AVX2 or FG_SCALAR is defined, as the other copies of blocks.c define it
 * (blocks_avx512.c, blocks_avx2.c, blocks_scalar.c; kernels.c chooses one at run time).
 * Elsewhere a vector is one double.
 */
#ifndef FASTGRAD_SIMD_H
#define FASTGRAD_SIMD_H

#if defined(FG_SCALAR)
#define FG_ONE_DOUBLE 1
#elif defined(FG_AVX512)
#include <immintrin.h>
typedef __m512d fg_simd;
#define FG_WIDTH 8
#define fg_load(p) _mm512_loadu_pd(p)
#define fg_store(p, v) _mm512_storeu_pd((p), (v))
#define fg_add(a, b) _mm512_add_pd((a), (b))
#define fg_mul(a, b) _mm512_mul_pd((a), (b))
#define fg_splat(x) _mm512_set1_pd(x)
/* (a broadcast and a masked one: _mm512_set_pd of eight values costs seven inserts) */
#define fg_splat_last(x, y) \
    _mm512_mask_broadcastsd_pd(_mm512_set1_pd(x), (__mmask8)0x80, _mm_set_sd(y))
#elif defined(FG_AVX2)
#include <immintrin.h>
typedef __m256d fg_simd;
#define FG_WIDTH 4
#define fg_load(p) _mm256_loadu_pd(p)
#define fg_store(p, v) _mm256_storeu_pd((p), (v))
#define fg_add(a, b) _mm256_add_pd((a), (b))
#define fg_mul(a, b) _mm256_mul_pd((a), (b))
#define fg_splat(x) _mm256_set1_pd(x)
#define fg_splat_last(x, y) _mm256_set_pd((y), (x), (x), (x))
#elif defined(__SSE2__) || defined(_M_X64) || defined(_M_AMD64)
#include <emmintrin.h>
typedef __m128d fg_simd;
#define FG_WIDTH 2
#define fg_load(p) _mm_loadu_pd(p)
#define fg_store(p, v) _mm_storeu_pd((p), (v))
#define fg_add(a, b) _mm_add_pd((a), (b))
#define fg_mul(a, b) _mm_mul_pd((a), (b))
#define fg_splat(x) _mm_set1_pd(x)
#define fg_splat_last(x, y) _mm_set_pd((y), (x))
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
typedef float64x2_t fg_simd;
#define FG_WIDTH 2
#define fg_load(p) vld1q_f64(p)
#define fg_store(p, v) vst1q_f64((p), (v))
#define fg_add(a, b) vaddq_f64((a), (b))
#define fg_mul(a, b) vmulq_f64((a), (b))
#define fg_splat(x) vdupq_n_f64(x)
#define fg_splat_last(x, y) vsetq_lane_f64((y), vdupq_n_f64(x), 1)
#else
#define FG_ONE_DOUBLE 1
#endif

#ifdef FG_ONE_DOUBLE
typedef double fg_simd;
#define FG_WIDTH 1
#define fg_load(p) (*(p))
#define fg_store(p, v) (*(p) = (v))
#define fg_add(a, b) ((a) + (b))
#define fg_mul(a, b) ((a) * (b))
#define fg_splat(x) (x)
#define fg_splat_last(x, y) (y)
#endif
/* (fg_splat_last(x, y): x in every lane but the last, which holds y.) */

/* Vectors in 8 doubles: a block's loops take 8 rows, or 8 weights, at a time. */
#define FG_VECS (8 / FG_WIDTH)

#endif /* FASTGRAD_SIMD_H */
