/*
 * rows.c: run(), the step program replayed over the rows of a dataset, a block of rows at a
 * time, on worker threads.
 *
 * A block holds B rows side by side: every slot whose value differs between rows (a fed leaf,
 * a step's result) has a row of B lanes, and each step's rule runs over the lanes in one loop
 * that the compiler vectorises, so the dispatch is paid once per block and the arithmetic is
 * the same IEEE operations per row (no contraction, libm called per element). Parameters and
 * constants, the same in every row, stay single numbers.
 *
 * The contract fixes the order of the leaves' grads: each row's gradient from zero, added to
 * the leaf's grad row after row. So a run goes in chunks of one block per thread, in two
 * phases. Phase 1: each thread replays its block, forward and backward, into its own buffer,
 * the rows' gradients of the fed leaves and of the parameters that have lanes staying there.
 * Phase 2: each thread adds, for the leaves it owns, the chunk's rows into their grads in row
 * order. A parameter used once, as a term of an n-ary node (a weight of a neuron), gets no
 * lanes at all: phase 2 computes its row gradients from the node's grad and the term's other
 * operand, which the block keeps. Leaves are split between threads, never rows of a leaf, so
 * the bits are those of one thread.
 */
#include <stdlib.h>
#include <string.h>

#include "tape.h"
#include "threads.h"

#define NONE UINT32_MAX
#define BLOCK_BYTES (384 * 1024)    /* a block's lanes: about half of a core's L2 */
#define MAX_LANES 64

/* A parameter whose row gradients phase 2 computes: term k's operand `side` (2: the start). */
typedef struct deferred_term {
    uint32_t leaf;
    uint32_t k;
    uint32_t side;
} deferred_term;

/* An n-ary step with such terms: the block keeps its node's grad in head row `head`. */
typedef struct deferred_step {
    uint32_t step;
    uint32_t head;
    uint32_t first, count;          /* its terms in fg_plan.terms */
    int dot_fast;                   /* every term is (parameter, lanes): the 8-chain loop */
} deferred_step;

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
    size_t terms_count;
    uint8_t *on_lanes;              /* step -> how its n-ary operands lie (NARY_*) */
    uint32_t *head_of;              /* step -> its head row, or NONE */
} fg_plan;

/* How an n-ary step's operands lie, for its fast loops. */
enum { NARY_GENERIC, NARY_DOT_PARAMS_LANES, NARY_SUM_LANES };

struct fg_rows_cache {
    fg_plan plan;
};

static void plan_free(fg_plan *p)
{
    free(p->fed);
    free(p->lane);
    free(p->summed);
    free(p->deferred);
    free(p->terms);
    free(p->on_lanes);
    free(p->head_of);
    memset(p, 0, sizeof *p);
}

void fg_rows_cache_free(fg_rows_cache *cache)
{
    if (cache != NULL)
        plan_free(&cache->plan);
    free(cache);
}

static int is_leaf(const fg_tape *T, uint32_t slot)
{
    return slot < T->leaf_count;
}

/* ---- the plan ---- */

static fg_status make_plan(const fg_tape *T, const fg_run *job, fg_plan *p)
{
    const fg_program *P = &T->program;
    size_t i, j, values = fg_program_values(P);
    uint32_t *reads_in_steps = NULL;    /* slot -> reads outside n-ary steps */
    uint8_t *fed = NULL;
    fg_status st = FG_NO_MEMORY;
    memset(p, 0, sizeof *p);
    p->fed_count = job->input_count + job->target_count;
    p->fed = (size_t *)malloc((p->fed_count + 1) * sizeof(size_t));
    p->lane = (uint32_t *)malloc(values * sizeof(uint32_t));
    p->summed = (uint32_t *)malloc((T->leaf_count + 1) * sizeof(uint32_t));
    p->on_lanes = (uint8_t *)calloc(P->length + 1, 1);
    p->head_of = (uint32_t *)malloc((P->length + 1) * sizeof(uint32_t));
    reads_in_steps = (uint32_t *)calloc(values, sizeof(uint32_t));
    fed = (uint8_t *)calloc(T->leaf_count + 1, 1);
    if (!p->fed || !p->lane || !p->summed || !p->on_lanes || !p->head_of || !reads_in_steps || !fed)
        goto done;
    for (i = 0; i < job->input_count; i++)
        p->fed[i] = job->inputs[i];
    for (i = 0; i < job->target_count; i++)
        p->fed[job->input_count + i] = job->targets[i];
    for (i = 0; i < p->fed_count; i++)
        fed[p->fed[i]] = 1;
    /* operand places outside n-ary steps need lanes whatever they hold */
    for (i = 0; i < P->length; i++) {
        const fg_step *s = &P->steps[i];
        p->head_of[i] = NONE;
        switch (FG_STEP_KIND(s)) {
        case FG_STEP_UNARY:
            reads_in_steps[s->a]++;
            break;
        case FG_STEP_BINARY:
            reads_in_steps[s->a]++;
            reads_in_steps[s->b]++;
            break;
        case FG_STEP_DIVS:
            reads_in_steps[s->b]++;
            for (j = 0; j < s->count; j++)
                reads_in_steps[P->args[s->terms + j]]++;
            break;
        default:
            break;
        }
    }
    /* lanes: every fed leaf and step result; a parameter or constant read outside n-ary
     * steps (broadcast once); a parameter read more than once (its row gradient collects
     * several contributions); the root */
    for (i = 0; i < values; i++) {
        int lanes = i >= P->constant_end || (is_leaf(T, (uint32_t)i) && fed[i])
                    || reads_in_steps[i] > 0 || i == P->root
                    || (is_leaf(T, (uint32_t)i) && P->uses[i] > 1);
        p->lane[i] = lanes && i < P->slots ? (uint32_t)p->lanes++ : NONE;
        if (lanes && is_leaf(T, (uint32_t)i))
            p->summed[p->summed_count++] = (uint32_t)i;
    }
    /* n-ary steps: the parameters used once in them are deferred to phase 2 */
    p->deferred = (deferred_step *)malloc((P->length + 1) * sizeof(deferred_step));
    if (p->deferred == NULL)
        goto done;
    for (i = 0; i < P->length; i++) {
        const fg_step *s = &P->steps[i];
        const uint32_t *args = P->args + s->a;
        uint32_t stride, k, first_term, all_dot = 1, all_sum_lanes = 1, count = 0;
        if (FG_STEP_KIND(s) != FG_STEP_NARY)
            continue;
        stride = fg_stride((fg_op)s->code);
        first_term = (uint32_t)p->terms_count;
        for (k = s->b; k <= s->count; k++) {
            uint32_t side;
            for (side = 0; side < stride; side++) {
                uint32_t slot = args[1 + k * stride + side];
                if (p->lane[slot] == NONE && is_leaf(T, slot)) {
                    deferred_term t;
                    void *grown = realloc(p->terms, (p->terms_count + 1) * sizeof(deferred_term));
                    if (grown == NULL)
                        goto done;
                    p->terms = (deferred_term *)grown;
                    t.leaf = slot;
                    t.k = k;
                    t.side = side;
                    p->terms[p->terms_count++] = t;
                    count++;
                }
            }
            if (stride == 2 && !(p->lane[args[1 + 2 * k]] == NONE && p->lane[args[2 + 2 * k]] != NONE))
                all_dot = 0;
            if (stride == 1 && p->lane[args[1 + k]] == NONE)
                all_sum_lanes = 0;
        }
        if (s->b == 0 && p->lane[args[0]] == NONE && is_leaf(T, args[0])) {
            deferred_term t;
            void *grown = realloc(p->terms, (p->terms_count + 1) * sizeof(deferred_term));
            if (grown == NULL)
                goto done;
            p->terms = (deferred_term *)grown;
            t.leaf = args[0];
            t.k = 0;
            t.side = 2;
            p->terms[p->terms_count++] = t;
            count++;
        }
        if (stride == 2 && all_dot)
            p->on_lanes[i] = NARY_DOT_PARAMS_LANES;
        else if (stride == 1 && all_sum_lanes)
            p->on_lanes[i] = NARY_SUM_LANES;
        if (count > 0) {
            deferred_step *d = &p->deferred[p->deferred_count];
            d->step = (uint32_t)i;
            d->head = (uint32_t)p->deferred_count;
            d->first = first_term;
            d->count = count;
            d->dot_fast = p->on_lanes[i] == NARY_DOT_PARAMS_LANES;
            p->head_of[i] = d->head;
            p->deferred_count++;
        }
    }
    st = FG_OK;
done:
    free(reads_in_steps);
    free(fed);
    if (st != FG_OK)
        plan_free(p);
    return st;
}

/* The plan for this run's fed leaves: the cached one if they are the same. */
static fg_status plan_for(fg_tape *T, const fg_run *job, const fg_plan **out)
{
    fg_rows_cache *cache = T->rows;
    size_t i, count = job->input_count + job->target_count;
    fg_status st;
    if (cache != NULL && cache->plan.fed_count == count) {
        int same = 1;
        for (i = 0; i < job->input_count && same; i++)
            same = cache->plan.fed[i] == job->inputs[i];
        for (i = 0; i < job->target_count && same; i++)
            same = cache->plan.fed[job->input_count + i] == job->targets[i];
        if (same) {
            *out = &cache->plan;
            return FG_OK;
        }
    }
    if (cache == NULL) {
        if ((cache = (fg_rows_cache *)calloc(1, sizeof *cache)) == NULL)
            return FG_NO_MEMORY;
        T->rows = cache;
    }
    plan_free(&cache->plan);
    if ((st = make_plan(T, job, &cache->plan)) != FG_OK)
        return st;
    *out = &cache->plan;
    return FG_OK;
}

/* ---- a block ---- */

typedef struct block {
    double *value;                  /* lanes: row lane[slot] holds the slot's lanes */
    double *grad;                   /* the same rows, their grads */
    double *deriv;                  /* the stored derivatives, a row each, in step order */
    double *head;                   /* the deferred steps' node grads, a row each */
    double *scratch;                /* three rows */
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
    uint32_t *work;                 /* phase 2's items: a summed leaf (its index in
                                     * plan->summed), or NONE - deferred step index */
    size_t *split;                  /* thread t's items: work[split[t], split[t + 1]) */
    size_t failed_chunk;
    int failed, interrupted;
} run_context;

#define ROW(blk, base, slot) ((blk)->base + (size_t)ctx->plan->lane[slot] * ctx->n)
#define HAS_LANES(slot) (ctx->plan->lane[slot] != NONE)

/* The fed leaves' lanes from X and Y: row row0 + r, and the last real row again past the end. */
static void feed(const run_context *ctx, block *blk)
{
    const fg_run *job = ctx->job;
    size_t j, r, n = ctx->n;
    for (j = 0; j < job->input_count; j++) {
        double *lanes = ROW(blk, value, job->inputs[j]);
        for (r = 0; r < n; r++)
            lanes[r] = job->X[(blk->row0 + (r < blk->rows ? r : blk->rows - 1)) * job->input_count + j];
    }
    for (j = 0; j < job->target_count; j++) {
        double *lanes = ROW(blk, value, job->targets[j]);
        for (r = 0; r < n; r++)
            lanes[r] = job->Y[(blk->row0 + (r < blk->rows ? r : blk->rows - 1)) * job->target_count + j];
    }
}

/* The lanes of the leaves and constants that have them and are not fed: one number each. */
static void broadcast(const run_context *ctx, block *blk)
{
    size_t i, r;
    for (i = 0; i < ctx->P->constant_end; i++)
        if (HAS_LANES(i)) {
            double *lanes = ROW(blk, value, i);
            for (r = 0; r < ctx->n; r++)
                lanes[r] = ctx->scalars[i];
        }
}

/* An n-ary node's value, from all its terms, into the lanes O. */
static void nary_forward(const run_context *ctx, block *blk, size_t i, double *O)
{
    const fg_step *s = &ctx->P->steps[i];
    const uint32_t *args = ctx->P->args + s->a;
    fg_op op = (fg_op)s->code;
    uint32_t stride = fg_stride(op), k;
    size_t n = ctx->n, r, j;
    const double *start = HAS_LANES(args[0]) ? ROW(blk, value, args[0]) : NULL;
    double start_value = ctx->scalars[args[0]];
    if (ctx->plan->on_lanes[i] == NARY_DOT_PARAMS_LANES) {
        /* ((start + w0 * x0) + w1 * x1) + ...: 8 rows' sums in registers at once */
        for (r = 0; r < n; r += 8) {
            double acc[8];
            for (j = 0; j < 8; j++)
                acc[j] = start != NULL ? start[r + j] : start_value;
            for (k = 0; k < s->terms; k++) {
                double w = ctx->scalars[args[1 + 2 * k]];
                const double *x = ROW(blk, value, args[2 + 2 * k]) + r;
                for (j = 0; j < 8; j++)
                    acc[j] = acc[j] + fg_term(FG_DOT, w, x[j]);
            }
            for (j = 0; j < 8; j++)
                O[r + j] = acc[j];
        }
        return;
    }
    for (r = 0; r < n; r++)
        O[r] = start != NULL ? start[r] : start_value;
    for (k = 0; k < s->terms; k++) {
        uint32_t slot0 = args[1 + k * stride], slot1 = stride > 1 ? args[2 + k * stride] : slot0;
        const double *v0 = HAS_LANES(slot0) ? ROW(blk, value, slot0) : NULL;
        const double *v1 = HAS_LANES(slot1) ? ROW(blk, value, slot1) : NULL;
        double u0 = ctx->scalars[slot0], u1 = ctx->scalars[slot1];
        for (r = 0; r < n; r++)
            O[r] = O[r] + fg_term(op, v0 != NULL ? v0[r] : u0, v1 != NULL ? v1[r] : u1);
    }
}

#define FORWARD(forward) (st = &forward_st, (forward))
#define DERIVATIVE(d) (st = &derivative_st, (d))

/* Forward over a block: nonzero if a rule or a local derivative failed in some row. */
static int block_forward(const run_context *ctx, block *blk)
{
    const fg_program *P = ctx->P;
    const fg_micro *m = P->micro;
    double *D = blk->deriv;
    size_t n = ctx->n, r, i;
    fg_status forward_st = FG_OK, derivative_st = FG_OK, *st = &forward_st;
    for (i = 0; i < P->length; i++) {
        const fg_step *s = &P->steps[i];
        double *O;
        uint8_t t;
        if (FG_STEP_KIND(s) == FG_STEP_NARY && s->count + 1 != s->terms)
            continue;   /* the node's value is made by its last run */
        O = s->code == FG_DIVS_CODE ? NULL : ROW(blk, value, s->out);
        switch (s->code) {
#define FG_UNARY(name, symbol, forward, d_da) \
        case FG_##name: { \
            const double *A = ROW(blk, value, s->a); \
            double b = 0.0, c = P->numbers[s->terms]; \
            (void)b; \
            (void)c; \
            if (s->kind & FG_STEP_STORED) { \
                for (r = 0; r < n; r++) { \
                    double a = A[r], out = FORWARD(forward); \
                    D[r] = DERIVATIVE(d_da); \
                    O[r] = out; \
                } \
                D += n; \
            } else { \
                for (r = 0; r < n; r++) { \
                    double a = A[r]; \
                    O[r] = FORWARD(forward); \
                } \
            } \
            break; \
        }
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
        case FG_##name: { \
            const double *A = ROW(blk, value, s->a), *Bv = ROW(blk, value, s->b); \
            double c = 0.0; \
            (void)c; \
            if (s->kind & FG_STEP_STORED) { \
                for (r = 0; r < n; r++) { \
                    double a = A[r], b = Bv[r], out = FORWARD(forward); \
                    D[r] = DERIVATIVE(d_da); \
                    D[n + r] = DERIVATIVE(d_db); \
                    O[r] = out; \
                } \
                D += 2 * n; \
            } else { \
                for (r = 0; r < n; r++) { \
                    double a = A[r], b = Bv[r]; \
                    O[r] = FORWARD(forward); \
                } \
            } \
            break; \
        }
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
        case FG_##name: \
            nary_forward(ctx, blk, i, O); \
            break;
#include "ops.def"
        default: {  /* a group of divisions by one denominator */
            const uint32_t *numerators = P->args + s->terms;
            const double *den = ROW(blk, value, s->b);
            uint32_t j;
            for (j = 0; j < s->count; j++) {
                const double *num = ROW(blk, value, numerators[j]);
                double *Oj = ROW(blk, value, s->out + j), db;
                for (r = 0; r < n; r++) {
                    if (j == 0)
                        Oj[r] = fg_forward_and_derivatives(FG_DIV, num[r], den[r], 0.0, &D[r],
                                                           &D[n + r], &forward_st, &derivative_st);
                    else
                        Oj[r] = fg_div_and_db(num[r], den[r], &db, &forward_st, &derivative_st);
                    if (j > 0)
                        D[(1 + j) * n + r] = db;
                }
            }
            D += (1 + s->count) * n;
            continue;
        }
        }
        for (t = 0; t < s->tail; t++, m++, D += n) {
            switch (m->code) {
#define FG_UNARY(name, symbol, forward, d_da) \
            case FG_MICRO_CODE(FG_##name, FG_MICRO_UNARY): { \
                double b = 0.0, c = m->c; \
                (void)b; \
                (void)c; \
                for (r = 0; r < n; r++) { \
                    double a = O[r], out = FORWARD(forward); \
                    D[r] = DERIVATIVE(d_da); \
                    O[r] = out; \
                } \
                break; \
            }
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
            case FG_MICRO_CODE(FG_##name, FG_MICRO_NUMBER_RIGHT): { \
                double b = m->c, c = 0.0; \
                (void)c; \
                for (r = 0; r < n; r++) { \
                    double a = O[r], out = FORWARD(forward); \
                    D[r] = DERIVATIVE(d_da); \
                    (void)DERIVATIVE(d_db); \
                    O[r] = out; \
                } \
                break; \
            } \
            case FG_MICRO_CODE(FG_##name, FG_MICRO_NUMBER_LEFT): { \
                double a = m->c, c = 0.0; \
                (void)c; \
                for (r = 0; r < n; r++) { \
                    double b = O[r], out = FORWARD(forward); \
                    (void)DERIVATIVE(d_da); \
                    D[r] = DERIVATIVE(d_db); \
                    O[r] = out; \
                } \
                break; \
            }
#include "ops.def"
            default:
                break;
            }
        }
    }
    (void)st;
    return forward_st != FG_OK || derivative_st != FG_OK;
}

#undef FORWARD
#undef DERIVATIVE

/* The grad of a tail's first node into the lanes S, from its last node's grads G: each node
 * of a tail has one consumer, so its grad is 0.0 plus one contribution. */
static const double *tail_backward(const run_context *ctx, const double *D, uint8_t tail,
                                   const double *G, double *S)
{
    size_t n = ctx->n, r;
    for (r = 0; r < n; r++)
        S[r] = G[r];
    while (tail-- > 0) {
        const double *Dt = D + (size_t)tail * n;
        for (r = 0; r < n; r++)
            S[r] = 0.0 + Dt[r] * S[r];
    }
    return S;
}

/* Terms s->count down to s->b of an n-ary node whose grads are G: into the operands that have
 * lanes, in the order ops.h's rule adds them; a parameter without lanes waits for phase 2. */
static void nary_backward(const run_context *ctx, block *blk, size_t i, const double *G)
{
    const fg_step *s = &ctx->P->steps[i];
    const uint32_t *args = ctx->P->args + s->a;
    fg_op op = (fg_op)s->code;
    uint32_t stride = fg_stride(op), k = s->count + 1;
    size_t n = ctx->n, r;
    double *start = HAS_LANES(args[0]) ? ROW(blk, grad, args[0]) : NULL;
    if (ctx->plan->head_of[i] != NONE)
        memcpy(blk->head + (size_t)ctx->plan->head_of[i] * n, G, n * sizeof(double));
    if (ctx->plan->on_lanes[i] == NARY_DOT_PARAMS_LANES) {
        /* d(w x)/dx = w: each x's grads take w times the term's grad, which is 0.0 + g */
        double *last = blk->scratch + n, *rest = blk->scratch + 2 * n;
        for (r = 0; r < n; r++) {
            double to_start, to_w, to_x;
            fg_nary_term_amounts(op, s->terms - 1, s->terms, G[r], 0.0, 0.0, &to_start, &to_w,
                                 &to_x);
            last[r] = to_start;         /* 1.0 * g */
            fg_nary_term_amounts(op, 0, s->terms + 1, G[r], 0.0, 0.0, &to_start, &to_w, &to_x);
            rest[r] = to_start;         /* 1.0 * (0.0 + g) */
        }
        while (k-- > s->b) {
            const double *sum_grad = k + 1 == s->terms ? last : rest;
            double w = ctx->scalars[args[1 + 2 * k]];
            double *gx = ROW(blk, grad, args[2 + 2 * k]);
            if (k == 0 && start != NULL)
                for (r = 0; r < n; r++)
                    start[r] += sum_grad[r];
            for (r = 0; r < n; r++) {
                double d_dw, d_dx;
                fg_term_derivatives(FG_DOT, w, 0.0, &d_dw, &d_dx);
                gx[r] += d_dx * (0.0 + 1.0 * sum_grad[r]);
            }
        }
        return;
    }
    while (k-- > s->b) {
        uint32_t slot0 = args[1 + k * stride], slot1 = stride > 1 ? args[2 + k * stride] : slot0;
        const double *v0 = HAS_LANES(slot0) ? ROW(blk, value, slot0) : NULL;
        const double *v1 = HAS_LANES(slot1) ? ROW(blk, value, slot1) : NULL;
        double *g0 = v0 != NULL ? ROW(blk, grad, slot0) : NULL;
        double *g1 = v1 != NULL && stride > 1 ? ROW(blk, grad, slot1) : NULL;
        double u0 = ctx->scalars[slot0], u1 = ctx->scalars[slot1];
        for (r = 0; r < n; r++) {
            double to_start, to_v0, to_v1;
            fg_nary_term_amounts(op, k, s->terms, G[r], v0 != NULL ? v0[r] : u0,
                                 v1 != NULL ? v1[r] : u1, &to_start, &to_v0, &to_v1);
            if (k == 0 && start != NULL)
                start[r] += to_start;
            if (g0 != NULL)
                g0[r] += to_v0;
            if (g1 != NULL)
                g1[r] += to_v1;
        }
    }
}

/* Backward over a block: the rows' grads, from 0 for interior nodes and from -0.0 (the zero
 * that passes a single contribution on unchanged) for the leaves with lanes. */
static void block_backward(const run_context *ctx, block *blk)
{
    const fg_program *P = ctx->P;
    const double *D = blk->deriv + P->derivs * ctx->n;
    size_t n = ctx->n, r, i, j;
    fg_status unchecked = FG_OK, *st = &unchecked;    /* forward checked every derivative */
    memset(blk->grad, 0, ctx->plan->lanes * n * sizeof(double));
    for (j = 0; j < ctx->plan->summed_count; j++) {
        double *g = ROW(blk, grad, ctx->plan->summed[j]);
        for (r = 0; r < n; r++)
            g[r] = -0.0;
    }
    {
        double *g = ROW(blk, grad, P->root);
        for (r = 0; r < n; r++)
            g[r] = 1.0;
    }
    for (i = P->length; i-- > 0;) {
        const fg_step *s = &P->steps[i];
        const double *GO = s->code == FG_DIVS_CODE ? NULL : ROW(blk, grad, s->out);
        const double *S;
        switch (s->back) {
#define FG_UNARY(name, symbol, forward, d_da) \
        case FG_BACK_##name: { \
            const double *A = ROW(blk, value, s->a), *O = ROW(blk, value, s->out); \
            double *GA = ROW(blk, grad, s->a), b = 0.0, c = P->numbers[s->terms]; \
            (void)b; \
            (void)c; \
            for (r = 0; r < n; r++) { \
                double a = A[r], out = O[r]; \
                (void)a; \
                (void)out; \
                GA[r] += (d_da) * GO[r]; \
            } \
            break; \
        }
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
        case FG_BACK_##name: { \
            const double *A = ROW(blk, value, s->a), *Bv = ROW(blk, value, s->b); \
            const double *O = ROW(blk, value, s->out); \
            double *GA = ROW(blk, grad, s->a), *GB = ROW(blk, grad, s->b), c = 0.0; \
            (void)c; \
            for (r = 0; r < n; r++) { \
                double a = A[r], b = Bv[r], out = O[r], da = (d_da), db = (d_db), g = GO[r]; \
                (void)a; \
                (void)b; \
                (void)out; \
                GA[r] += da * g; \
                GB[r] += db * g; \
            } \
            break; \
        }
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
        case FG_BACK_##name: \
            nary_backward(ctx, blk, i, GO); \
            break; \
        case FG_BACK_TAILED_##name: \
            D -= (size_t)s->tail * n; \
            nary_backward(ctx, blk, i, tail_backward(ctx, D, s->tail, GO, blk->scratch)); \
            break;
#include "ops.def"
        case FG_BACK_UNARY_STORED:
        case FG_BACK_UNARY_TAILED: {
            double *GA = ROW(blk, grad, s->a);
            D -= (1 + (size_t)s->tail) * n;
            S = s->tail ? tail_backward(ctx, D + n, s->tail, GO, blk->scratch) : GO;
            for (r = 0; r < n; r++)
                GA[r] += D[r] * S[r];
            break;
        }
        case FG_BACK_BINARY_STORED:
        case FG_BACK_BINARY_TAILED: {
            double *GA = ROW(blk, grad, s->a), *GB = ROW(blk, grad, s->b);
            D -= (2 + (size_t)s->tail) * n;
            S = s->tail ? tail_backward(ctx, D + 2 * n, s->tail, GO, blk->scratch) : GO;
            for (r = 0; r < n; r++) {
                GA[r] += D[r] * S[r];
                GB[r] += D[n + r] * S[r];
            }
            break;
        }
        default: {  /* a group of divisions, members last first as the plain program has them */
            const uint32_t *numerators = P->args + s->terms;
            double *GB = ROW(blk, grad, s->b);
            uint32_t member = s->count;
            D -= (1 + (size_t)s->count) * n;
            while (member-- > 0) {
                double *GN = ROW(blk, grad, numerators[member]);
                const double *GM = ROW(blk, grad, s->out + member), *db = D + (1 + member) * n;
                for (r = 0; r < n; r++) {
                    GN[r] += D[r] * GM[r];
                    GB[r] += db[r] * GM[r];
                }
            }
        }
        }
    }
    (void)st;
}

/* ---- phase 2: the rows' gradients added into the leaves, in row order ---- */

/* A deferred step's parameters, for the blocks from `first` on of this chunk: what phase 1
 * left out, computed from the node's grads and each term's other operand. */
static void add_deferred(run_context *ctx, const deferred_step *ds, size_t chunk)
{
    const fg_step *s = &ctx->P->steps[ds->step];
    const uint32_t *args = ctx->P->args + s->a;
    const deferred_term *terms = ctx->plan->terms + ds->first;
    fg_op op = (fg_op)s->code;
    uint32_t stride = fg_stride(op);
    size_t n = ctx->n, t, j, r, b;
    for (b = 0; b < ctx->threads; b++) {
        size_t index = chunk * ctx->threads + b;
        block *blk;
        const double *G;
        if (index >= ctx->blocks)
            break;
        blk = &ctx->buffers[b];
        G = blk->head + (size_t)ds->head * n;
        t = 0;
        if (ds->dot_fast) {
            /* w's row gradients, x * (0.0 + g): eight weights' sums in registers at once */
            for (; t + 8 <= ds->count && terms[t + 7].side == 0; t += 8) {
                double acc[8];
                const double *x[8];
                int last[8];
                for (j = 0; j < 8; j++) {
                    acc[j] = ctx->totals[terms[t + j].leaf];
                    x[j] = ROW(blk, value, args[2 + 2 * terms[t + j].k]);
                    last[j] = terms[t + j].k + 1 == s->terms;
                }
                for (r = 0; r < blk->rows; r++) {
                    double to_start, to_w, to_x, g_rest, g_last;
                    fg_nary_term_amounts(FG_DOT, 0, 2, G[r], 0.0, 1.0, &to_start, &to_w, &to_x);
                    g_rest = to_w;          /* d(w x)/dw * term grad, at x = 1.0 */
                    fg_nary_term_amounts(FG_DOT, 0, 1, G[r], 0.0, 1.0, &to_start, &to_w, &to_x);
                    g_last = to_w;
                    for (j = 0; j < 8; j++)
                        acc[j] = acc[j] + x[j][r] * (last[j] ? g_last : g_rest);
                }
                for (j = 0; j < 8; j++)
                    ctx->totals[terms[t + j].leaf] = acc[j];
            }
        }
        for (; t < ds->count; t++) {
            const deferred_term *term = &terms[t];
            uint32_t k = term->k, slot0, slot1;
            const double *v0, *v1;
            double u0, u1, total = ctx->totals[term->leaf];
            slot0 = term->side == 2 ? args[0] : args[1 + k * stride];
            slot1 = term->side == 2 ? args[0] : stride > 1 ? args[2 + k * stride] : slot0;
            if (term->side == 2) {  /* the start: its amount needs no operand */
                slot0 = args[1];
                slot1 = stride > 1 ? args[2] : slot0;
            }
            v0 = HAS_LANES(slot0) ? ROW(blk, value, slot0) : NULL;
            v1 = HAS_LANES(slot1) ? ROW(blk, value, slot1) : NULL;
            u0 = ctx->scalars[slot0];
            u1 = ctx->scalars[slot1];
            for (r = 0; r < blk->rows; r++) {
                double to_start, to_v0, to_v1;
                fg_nary_term_amounts(op, k, s->terms, G[r], v0 != NULL ? v0[r] : u0,
                                     v1 != NULL ? v1[r] : u1, &to_start, &to_v0, &to_v1);
                total = total + (term->side == 2 ? to_start : term->side == 1 ? to_v1 : to_v0);
            }
            ctx->totals[term->leaf] = total;
        }
    }
}

static void add_summed(run_context *ctx, uint32_t leaf, size_t chunk)
{
    size_t b, r;
    double total = ctx->totals[leaf];
    for (b = 0; b < ctx->threads; b++) {
        size_t index = chunk * ctx->threads + b;
        const double *g;
        if (index >= ctx->blocks)
            break;
        g = ROW(&ctx->buffers[b], grad, leaf);
        for (r = 0; r < ctx->buffers[b].rows; r++)
            total = total + g[r];
    }
    ctx->totals[leaf] = total;
}

/* ---- the run ---- */

typedef struct worker {
    run_context *ctx;
    unsigned index;
} worker;

static void work(run_context *ctx, unsigned t)
{
    const fg_run *job = ctx->job;
    block *blk = &ctx->buffers[t];
    size_t chunk, chunks = (ctx->blocks + ctx->threads - 1) / ctx->threads, w;
    broadcast(ctx, blk);
    for (chunk = 0; chunk < chunks; chunk++) {
        size_t index = chunk * ctx->threads + t;
        int flag = 0;
        if (index < ctx->blocks) {
            blk->row0 = index * ctx->n;
            blk->rows = job->rows - blk->row0 < ctx->n ? job->rows - blk->row0 : ctx->n;
            feed(ctx, blk);
            flag = block_forward(ctx, blk);
            if (!flag) {
                const double *root = ROW(blk, value, ctx->P->root);
                memcpy(job->out + blk->row0, root, blk->rows * sizeof(double));
                block_backward(ctx, blk);
            }
        }
        if (ctx->threads > 1)
            flag = fg_barrier_wait(ctx->barrier, flag);
        if (flag) {
            if (t == 0) {
                ctx->failed = 1;
                ctx->failed_chunk = chunk;
            }
            return;
        }
        for (w = ctx->split[t]; w < ctx->split[t + 1]; w++) {
            uint32_t item = ctx->work[w];
            if (item < ctx->plan->summed_count)
                add_summed(ctx, ctx->plan->summed[item], chunk);
            else
                add_deferred(ctx, &ctx->plan->deferred[item - ctx->plan->summed_count], chunk);
        }
        flag = t == 0 && chunk + 1 < chunks && job->interrupted != NULL
               && job->interrupted(job->context);
        if (ctx->threads > 1)
            flag = fg_barrier_wait(ctx->barrier, flag);
        if (flag) {
            if (t == 0)
                ctx->interrupted = 1;
            return;
        }
    }
}

static void work_on_thread(void *p)
{
    worker *w = (worker *)p;
    if (fg_gate_wait(w->ctx->gate))
        work(w->ctx, w->index);
}

/* Phase 2's items shared between the threads, each a contiguous share of about equal cost. */
static fg_status split_work(run_context *ctx)
{
    const fg_plan *plan = ctx->plan;
    size_t items = plan->summed_count + plan->deferred_count, i, t, total = 0, done = 0;
    ctx->work = (uint32_t *)malloc((items + 1) * sizeof(uint32_t));
    ctx->split = (size_t *)malloc((ctx->threads + 1) * sizeof(size_t));
    if (ctx->work == NULL || ctx->split == NULL)
        return FG_NO_MEMORY;
    for (i = 0; i < items; i++) {
        ctx->work[i] = (uint32_t)i;
        total += i < plan->summed_count ? 1 : plan->deferred[i - plan->summed_count].count;
    }
    ctx->split[0] = 0;
    for (i = 0, t = 1; i < items; i++) {
        done += i < plan->summed_count ? 1 : plan->deferred[i - plan->summed_count].count;
        while (t < ctx->threads && done * ctx->threads >= total * t)
            ctx->split[t++] = i + 1;
    }
    while (t <= ctx->threads)
        ctx->split[t++] = items;
    return FG_OK;
}

/* Lanes per block: as many as fit the block's rows in BLOCK_BYTES, a multiple of 8 from 8 to
 * MAX_LANES, and no more than it takes to give every thread a block. */
static size_t lanes_per_block(const fg_tape *T, const fg_plan *plan, size_t rows,
                              unsigned threads)
{
    size_t per_lane = (2 * plan->lanes + T->program.derivs + plan->deferred_count + 3)
                      * sizeof(double);
    size_t n = BLOCK_BYTES / (per_lane ? per_lane : 1), share = (rows + threads - 1) / threads;
    n = n / 8 * 8;
    if (n > MAX_LANES)
        n = MAX_LANES;
    if (n > (share + 7) / 8 * 8)
        n = (share + 7) / 8 * 8;
    return n < 8 ? 8 : n;
}

static void free_buffers(run_context *ctx)
{
    unsigned t;
    if (ctx->buffers == NULL)
        return;
    for (t = 0; t < ctx->threads; t++) {
        free(ctx->buffers[t].value);
        free(ctx->buffers[t].grad);
        free(ctx->buffers[t].deriv);
        free(ctx->buffers[t].head);
        free(ctx->buffers[t].scratch);
    }
    free(ctx->buffers);
}

/* The leaves' values of one row, in the step program's layout. */
static void row_leaves(const fg_tape *T, const fg_run *job, size_t row, double *leaves)
{
    size_t j;
    memcpy(leaves, T->leaf_data, T->leaf_count * sizeof(double));
    for (j = 0; j < job->input_count; j++)
        leaves[job->inputs[j]] = job->X[row * job->input_count + j];
    for (j = 0; j < job->target_count; j++)
        leaves[job->targets[j]] = job->Y[row * job->target_count + j];
}

/* Names the first failing row of a chunk whose blocks reported a failure, by the plain
 * program, as one-row replay would raise it. */
static fg_status name_failed_row(fg_tape *T, const run_context *ctx)
{
    size_t row = ctx->failed_chunk * ctx->threads * ctx->n;
    double *leaves = (double *)malloc((T->leaf_count + 1) * sizeof(double));
    fg_status st = leaves == NULL ? FG_NO_MEMORY : fg_plain_prepare(T);
    for (; st == FG_OK && row < ctx->job->rows; row++) {
        row_leaves(T, ctx->job, row, leaves);
        st = fg_plain_forward(T, leaves);
        T->failed_in_backward = st == FG_OK && T->plain->pending.status != FG_OK;
        if (T->failed_in_backward) {
            T->failed = T->plain->pending;
            st = T->failed.status;
        }
        T->failed_row = row;
    }
    free(leaves);
    return st == FG_OK ? FG_BAD_ARGUMENT : st;  /* (none failing would be a bug) */
}

void fg_tape_load_run(fg_tape *T)
{
    fg_tape_load_data(T);
    fg_tape_load_grads(T);
}

fg_status fg_tape_compute_run(fg_tape *T, const fg_run *job)
{
    const fg_program *P = &T->program;
    run_context ctx;
    fg_thread **threads = NULL;
    worker *workers = NULL;
    double *scalars = NULL;
    unsigned t, started = 0;
    size_t i;
    fg_status st;
    memset(&ctx, 0, sizeof ctx);
    if (job->rows == 0)
        return FG_OK;
    if ((st = plan_for(T, job, &ctx.plan)) != FG_OK)
        return st;
    st = FG_NO_MEMORY;
    ctx.T = T;
    ctx.P = P;
    ctx.job = job;
    ctx.threads = job->threads < 1 ? 1 : job->threads;
    ctx.n = lanes_per_block(T, ctx.plan, job->rows, ctx.threads);
    ctx.blocks = (job->rows + ctx.n - 1) / ctx.n;
    if (ctx.threads > ctx.blocks)
        ctx.threads = (unsigned)ctx.blocks;
    scalars = (double *)calloc(fg_program_values(P), sizeof(double));
    ctx.totals = (double *)malloc((T->leaf_count + 1) * sizeof(double));
    ctx.buffers = (block *)calloc(ctx.threads, sizeof(block));
    if (scalars == NULL || ctx.totals == NULL || ctx.buffers == NULL || split_work(&ctx) != FG_OK)
        goto done;
    memcpy(scalars, T->leaf_data, T->leaf_count * sizeof(double));
    memcpy(scalars + T->leaf_count, P->constants,
           (P->constant_end - T->leaf_count) * sizeof(double));
    ctx.scalars = scalars;
    memcpy(ctx.totals, T->leaf_grad_before, T->leaf_count * sizeof(double));
    for (t = 0; t < ctx.threads; t++) {
        block *blk = &ctx.buffers[t];
        blk->value = (double *)calloc(ctx.plan->lanes * ctx.n + 1, sizeof(double));
        blk->grad = (double *)malloc((ctx.plan->lanes * ctx.n + 1) * sizeof(double));
        blk->deriv = (double *)malloc((P->derivs * ctx.n + 1) * sizeof(double));
        blk->head = (double *)malloc((ctx.plan->deferred_count * ctx.n + 1) * sizeof(double));
        blk->scratch = (double *)malloc(3 * ctx.n * sizeof(double));
        if (!blk->value || !blk->grad || !blk->deriv || !blk->head || !blk->scratch)
            goto done;
    }
    if (ctx.threads > 1) {
        ctx.barrier = fg_barrier_new(ctx.threads);
        ctx.gate = fg_gate_new();
        threads = (fg_thread **)calloc(ctx.threads, sizeof(fg_thread *));
        workers = (worker *)calloc(ctx.threads, sizeof(worker));
        if (ctx.barrier == NULL || ctx.gate == NULL || threads == NULL || workers == NULL)
            goto done;
        for (t = 1; t < ctx.threads; t++) {
            workers[t].ctx = &ctx;
            workers[t].index = t;
            if ((threads[t] = fg_thread_start(work_on_thread, &workers[t])) == NULL)
                break;
            started++;
        }
        fg_gate_open(ctx.gate, started + 1 == ctx.threads);
        if (started + 1 != ctx.threads) {
            for (t = 1; t <= started; t++)
                fg_thread_join(threads[t]);
            goto done;
        }
    }
    work(&ctx, 0);
    for (t = 1; t <= started; t++)
        fg_thread_join(threads[t]);
    if (ctx.interrupted) {
        st = FG_INTERRUPTED;
    } else if (ctx.failed) {
        st = name_failed_row(T, &ctx);
    } else {
        /* the tape's state is then the last row's, as if it had been replayed alone */
        row_leaves(T, job, job->rows - 1, T->spare.value);
        if ((st = fg_replay_forward(P, &T->spare)) == FG_OK) {
            fg_row_state s = T->now;
            T->now = T->spare;
            T->spare = s;
            memcpy(T->grad, ctx.totals, T->leaf_count * sizeof(double));
            for (i = T->leaf_count; i < fg_program_values(P); i++)
                T->grad[i] = 0.0;
            T->grad[P->root] = P->root < T->leaf_count ? ctx.totals[P->root] : 1.0;
            T->backward_done = 1;
        }
    }
done:
    free_buffers(&ctx);
    fg_barrier_free(ctx.barrier);
    fg_gate_free(ctx.gate);
    free(threads);
    free(workers);
    free(ctx.work);
    free(ctx.split);
    free(ctx.totals);
    free(scalars);
    return st;
}

void fg_tape_store_run(fg_tape *T, const fg_run *job)
{
    size_t j;
    if (job->rows == 0)
        return;
    fg_tape_store_grads(T);
    for (j = 0; j < job->input_count; j++)
        T->nodes[job->inputs[j]]->data = job->X[(job->rows - 1) * job->input_count + j];
    for (j = 0; j < job->target_count; j++)
        T->nodes[job->targets[j]]->data = job->Y[(job->rows - 1) * job->target_count + j];
    fg_tape_store_forward(T);
}

fg_status fg_tape_run(fg_tape *T, const fg_run *job, fg_node **failed, size_t *failed_row)
{
    fg_status st;
    fg_tape_load_run(T);
    if ((st = fg_tape_compute_run(T, job)) != FG_OK) {
        *failed = fg_tape_failed_node(T);
        *failed_row = T->failed_row;
        return st;
    }
    fg_tape_store_run(T, job);
    return FG_OK;
}
