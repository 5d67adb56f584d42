/*
 * rows.h: run()'s plan and blocks, shared by rows.c (the plan, the threads, the run) and
 * blocks.c (what each thread does with a block: its replay and phase 2). Private.
 */
#ifndef FASTGRAD_ROWS_H
#define FASTGRAD_ROWS_H

#include "tape.h"
#include "threads.h"

#define NONE UINT32_MAX
/* A block's lanes, at most. Each step's dispatch and each layer's pass over its weights are
 * paid once per block, so the lanes must be many even where a row is long (a derivative
 * graph's); a step reads a few of its rows at a time, so they need not all fit a core's L2.
 * Measured: 1 MB ran B10's gradients graph at H=32 1.9x faster than 384 KB (8 lanes per
 * block), no case slower; 1.5 MB and more lost 5-10% on MLPs with a wide layer. */
#define BLOCK_BYTES (1024 * 1024)
#define MAX_LANES 128
/* Node-rows of work a thread must get to pay for being started (tens of microseconds): a
 * minibatch of 32 rows through a small MLP is done sooner by the calling thread alone. */
#define MIN_WORK_PER_THREAD 200000

/* A parameter whose row gradients phase 2 computes: term k's operand `side` (2: the start). */
typedef struct deferred_term {
    uint32_t leaf;
    uint32_t k;
    uint32_t side;
} deferred_term;

/* An n-ary step with such terms: the block keeps its node's grad in head row `head`. Phase 2
 * sums its terms' row gradients in accumulators of its own, contiguous, from `first` on. */
typedef struct deferred_step {
    uint32_t step;
    uint32_t head;
    uint32_t first, count;          /* its terms in fg_plan.terms (and accumulators) */
    int dot_fast;                   /* every term is (parameter, lanes): the fast loop sums
                                     * them; a deferred start comes after them */
    size_t column;                  /* dot_fast: the partners are X's columns from this one on,
                                     * in order; or NONE */
    uint32_t partners;              /* dot_fast: the first deferred step with the same partner
                                     * operands (a layer's neurons share them) */
} deferred_step;

/* A use of a shared parameter: term k's operand `side` (2: the start) of n-ary step `step`. */
typedef struct shared_use {
    uint32_t step;
    uint32_t k;
    uint32_t side;
} shared_use;

/* A parameter that several n-ary terms read and nothing else (a weight that several dots
 * read: a derivative graph's, a recurrent model's): it gets no lanes either. Phase 2 forms
 * each row's gradient from -0.0, adding its uses' contributions (fg_plan.uses, from `first`)
 * in backward's order, and adds it to the leaf's grad. */
typedef struct shared_param {
    uint32_t leaf;
    uint32_t first, count;
} shared_param;

#define SIDE_BY_SIDE 8              /* leaves whose rows phase 2 adds up together */

/* What a run that feeds a given list of leaves needs to know about the step program. */
typedef struct fg_plan {
    size_t *fed;                    /* the leaf numbers fed by X then Y, as given */
    size_t fed_count;
    uint32_t *lane;                 /* step slot -> its row of lanes, or NONE: a single number */
    size_t lanes;
    uint32_t *summed;               /* leaves whose row gradients sit in lanes: their leaf */
    size_t summed_count;            /* numbers (their lane is lane[leaf]) */
    deferred_step *deferred;
    size_t deferred_count;
    deferred_term *terms;
    size_t terms_count, terms_capacity;
    shared_param *shared;
    size_t shared_count;
    shared_use *uses;               /* the shared parameters' uses, each one's contiguous */
    uint8_t *on_lanes;              /* step -> how its n-ary operands lie (NARY_*) */
    uint32_t *lead;                 /* step -> NARY_DOT_LED: the terms before the fast ones */
    uint8_t *layer;                 /* step -> a layer group's size at its first step, else 0 */
    uint8_t *in_layer;              /* step -> its place in a layer group, from 1; 0 if none */
    uint32_t *layer_at;             /* a layer group's first step -> where its members' steps
                                     * start in layer_member (MEMBER) */
    uint32_t *layer_member;         /* the groups' members' steps, each group's together;
                                     * members need not be consecutive steps */
    size_t layer_members;
    uint8_t *layer_color;           /* step -> its layer group's colour: groups whose members
                                     * interleave have different ones (< MAX_OPEN) */
    uint32_t *head_of;              /* step -> its head row, or NONE */
    uint8_t *quiet_x;               /* step -> 1 for a fast DOT whose lane operands are all
                                     * leaves that require no grad (a dataset's inputs): no
                                     * one reads their grads, so backward skips them */
} fg_plan;

/* Fast DOT steps over the same inputs (a layer's neurons, maybe with other steps between
 * them) run together, this many at most: each input's lanes are loaded once for all of them,
 * and its grads gather their contributions in registers. */
#define MAX_LAYER 8

/* Layer groups whose members interleave (a forward-mode graph's value, first and second
 * derivative dots, neuron after neuron), this many at most. */
#define MAX_OPEN 4

/* Member q of the layer group that starts at step `first`. */
#define MEMBER(first, q) (ctx->plan->layer_member[ctx->plan->layer_at[first] + (q)])

/* How an n-ary step's operands lie, for its fast loops. NARY_DOT_LED: a dot whose terms are
 * (parameter or constant, lanes) from plan->lead[step] on, after up to MAX_LEAD terms of any
 * kind (a derivative graph sums a few products of two rows before a weighted column). */
enum { NARY_GENERIC, NARY_DOT_PARAMS_LANES, NARY_SUM_LANES, NARY_DOT_LED };
#define MAX_LEAD 8

/* The first of step i's terms that the fast DOT loops take: 0 for NARY_DOT_PARAMS_LANES. */
#define FAST_FROM(plan, i) ((plan)->on_lanes[i] == NARY_DOT_LED ? (plan)->lead[i] : 0u)
#define FAST_DOT(plan, i) \
    ((plan)->on_lanes[i] == NARY_DOT_PARAMS_LANES || (plan)->on_lanes[i] == NARY_DOT_LED)


typedef struct block {
    double *value;                  /* lanes: row lane[slot] holds the slot's lanes */
    double *grad;                   /* the same rows, their grads */
    double *deriv;                  /* the stored derivatives, a row each, in step order */
    double *head;                   /* the deferred steps' node grads, a row each */
    double *scratch;                /* 3 + MAX_LAYER rows */
    size_t row0, rows;              /* its first row and how many are real (the rest repeat
                                     * the last real row) */
} block;

typedef struct run_context {
    const fg_tape *T;
    const fg_program *P;
    const fg_plan *plan;
    const fg_run *job;
    const double *scalars;          /* step slot -> value, for those without lanes */
    double *totals;                 /* leaf -> grad: before the call, then the rows added */
    size_t n;                       /* lanes per block (a multiple of 8) */
    size_t blocks;
    unsigned threads;
    block *buffers;                 /* one per thread */
    fg_barrier *barrier;
    fg_gate *gate;
    double *fast_w;                 /* fast DOT steps' weights, each step's contiguous */
    size_t *fast_x;                 /* and their inputs' lane rows (offsets in a block) */
    size_t *fast_at;                /* step -> where its weights and offsets start */
    double *accumulators;           /* deferred terms' leaf grads during the run, in the
                                     * order of plan->terms: each deferred step's contiguous */
    double **partners;              /* per thread: a block's partner operands, row-major */
    size_t *partners_tag;           /* per thread: which (block, partner group) they are */
    size_t partners_width;          /* the widest partner list */
    double **row_sums;              /* per thread: SIDE_BY_SIDE rows: shared parameters'
                                     * row gradients, or a layer's node grads with up to 8
                                     * neurons side by side */
    uint32_t *work;                 /* phase 2's items: a summed leaf (its index in
                                     * plan->summed), then the deferred steps, then the shared
                                     * parameters, numbered on from there */
    size_t *split;                  /* thread t's items: work[split[t], split[t + 1]) */
    size_t failed_chunk;
    int failed, interrupted;
    const struct fg_kernel *kernel; /* the copy of blocks.c every thread runs */
} run_context;

#define ROW(blk, base, slot) ((blk)->base + (size_t)ctx->plan->lane[slot] * ctx->n)
#define HAS_LANES(slot) (ctx->plan->lane[slot] != NONE)
/* A deferred step's rows in a block: its node's grads (0), and for a fast DOT step the
 * term grads of every term but the last (1) and of the last (2). */
#define HEAD(blk, which, row) ((blk)->head + ((size_t)(which) * 3 + (row)) * ctx->n)


/* x86-64 under GCC or Clang: the AVX2 and AVX-512 copies of blocks.c are built too. */
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) \
    && !defined(FG_NO_X86_KERNELS)
#define FG_X86_KERNELS 1
#else
#define FG_X86_KERNELS 0
#endif

/* A copy of blocks.c for one instruction set (kernels.c lists them, widest first). */
typedef struct fg_kernel {
    const char *name;                               /* "avx512", "avx2", "sse2", "neon", "scalar" */
    void (*work)(run_context *ctx, unsigned thread); /* a thread's blocks and phase-2 share */
    int (*check_rules)(void);                       /* lanes that disagree with ops.h: 0 */
    int (*supported)(void);                         /* whether this CPU runs it */
} fg_kernel;

/* Each copy's two functions: the platform's baseline (blocks.c), one double a vector
 * (blocks_scalar.c), AVX2 and AVX-512 (blocks_avx2.c, blocks_avx512.c). */
void fg_blocks_work(run_context *ctx, unsigned thread);
int fg_blocks_check_rules(void);
void fg_blocks_work_scalar(run_context *ctx, unsigned thread);
int fg_blocks_check_rules_scalar(void);
#if FG_X86_KERNELS
void fg_blocks_work_avx2(run_context *ctx, unsigned thread);
int fg_blocks_check_rules_avx2(void);
void fg_blocks_work_avx512(run_context *ctx, unsigned thread);
int fg_blocks_check_rules_avx512(void);
#endif

const fg_kernel *fg_kernel_at(size_t i);            /* the i-th copy, NULL past the last */
const fg_kernel *fg_kernel_selected(void);          /* the one run() uses */

#endif /* FASTGRAD_ROWS_H */
