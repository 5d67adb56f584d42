/*
 * blocks.c: what a thread of run() does: replays its blocks of rows (phase 1) and adds its
 * share of the rows' gradients into the leaves in row order (phase 2). rows.c has the plan
 * and explains the two phases.
 *
 * The loops over a block's lanes are written with simd.h's vectors where they carry the work
 * (a neuron's terms, the inputs' grads, the weights' row sums); blocks_avx2.c compiles this
 * file again with AVX2's wider vectors, chosen at run time.
 */
#include <stdlib.h>
#include <string.h>

#include "rows.h"
#include "simd.h"

#ifndef FG_BLOCKS_WORK
#define FG_BLOCKS_WORK fg_blocks_work
#define FG_BLOCKS_CHECK_RULES fg_blocks_check_rules
#endif

/* Rows row0.. of a row-major matrix of `columns` columns into the lanes of `leaves`: row
 * row0 + r, and the last real row again past the end. Eight rows at a time, so that the rows
 * being read stay in the first-level cache while every column takes its eight. */
static void feed_matrix(const run_context *ctx, block *blk, const double *M, size_t columns,
                        const size_t *leaves)
{
    size_t j, r, r0, n = ctx->n;
    if (columns == 0)
        return;
    for (r0 = 0; r0 < n; r0 += 8) {
        const double *from[8];
        for (r = 0; r < 8; r++)
            from[r] = M + (blk->row0 + (r0 + r < blk->rows ? r0 + r : blk->rows - 1)) * columns;
        for (j = 0; j < columns; j++) {
            double *lanes = ROW(blk, value, leaves[j]) + r0;
            for (r = 0; r < 8; r++)
                lanes[r] = from[r][j];
        }
    }
}

/* The fed leaves' lanes from X and Y (n is a multiple of 8). */
static void feed(const run_context *ctx, block *blk)
{
    const fg_run *job = ctx->job;
    feed_matrix(ctx, blk, job->X, job->input_count, job->inputs);
    feed_matrix(ctx, blk, job->Y, job->target_count, job->targets);
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

/* A led dot's first terms' operands (NARY_DOT_LED): each side's lanes in `base` (the block's
 * values or grads), or NULL for a single number. */
typedef struct lead_terms {
    double *lanes[2][MAX_LEAD];
    double number[2][MAX_LEAD];
} lead_terms;

static void find_lead_terms(const run_context *ctx, const uint32_t *args, uint32_t lead,
                            double *base, lead_terms *t)
{
    uint32_t k, side;
    for (k = 0; k < lead; k++)
        for (side = 0; side < 2; side++) {
            uint32_t slot = args[1 + 2 * k + side];
            t->lanes[side][k] = HAS_LANES(slot) ? base + (size_t)ctx->plan->lane[slot] * ctx->n
                                                : NULL;
            t->number[side][k] = ctx->scalars[slot];
        }
}

/* Operand `side` of lead term k, at rows r..: its lanes or its number in every lane. */
static FG_ALWAYS_INLINE fg_simd lead_operand(const lead_terms *t, int side, uint32_t k, size_t r)
{
    return t->lanes[side][k] != NULL ? fg_load(t->lanes[side][k] + r) : fg_splat(t->number[side][k]);
}

/* A fast DOT step's value into the lanes O: ((start + w0 * x0) + w1 * x1) + ..., 8 rows'
 * sums in registers at once, each term DOT's v0 * v1 as ops.def has it; a led dot's first
 * `lead` terms are any two operands (inlined with lead 0 for the others). */
static FG_ALWAYS_INLINE void fast_dot_forward(const run_context *ctx, const block *blk, size_t i,
                                              double *O, const double *start, double start_value,
                                              uint32_t lead, const lead_terms *leads)
{
    const fg_step *s = &ctx->P->steps[i];
    const double *FG_RESTRICT w = ctx->fast_w + ctx->fast_at[i];
    const size_t *FG_RESTRICT x = ctx->fast_x + ctx->fast_at[i];
    const double *FG_RESTRICT value = blk->value;
    size_t n = ctx->n, r, j;
    uint32_t k;
    for (r = 0; r < n; r += 8) {
        fg_simd acc[FG_VECS];
        for (j = 0; j < FG_VECS; j++)
            acc[j] = start != NULL ? fg_load(start + r + j * FG_WIDTH) : fg_splat(start_value);
        for (k = 0; k < lead; k++)
            for (j = 0; j < FG_VECS; j++)
                acc[j] = fg_add(acc[j], fg_mul(lead_operand(leads, 0, k, r + j * FG_WIDTH),
                                               lead_operand(leads, 1, k, r + j * FG_WIDTH)));
        for (k = lead; k < s->terms; k++) {
            const double *FG_RESTRICT xk = value + x[k - lead] + r;
            const fg_simd wk = fg_splat(w[k - lead]);
            for (j = 0; j < FG_VECS; j++)
                acc[j] = fg_add(acc[j], fg_mul(wk, fg_load(xk + j * FG_WIDTH)));
        }
        for (j = 0; j < FG_VECS; j++)
            fg_store(O + r + j * FG_WIDTH, acc[j]);
    }
}

/* An n-ary node's value, from all its terms, into the lanes O. */
static void nary_forward(const run_context *ctx, block *blk, size_t i, double *O)
{
    const fg_step *s = &ctx->P->steps[i];
    const uint32_t *args = ctx->P->args + s->a;
    fg_op op = (fg_op)s->code;
    uint32_t stride = fg_stride(op), k;
    size_t n = ctx->n, r;
    const double *start = HAS_LANES(args[0]) ? ROW(blk, value, args[0]) : NULL;
    double start_value = ctx->scalars[args[0]];
    if (ctx->plan->on_lanes[i] == NARY_DOT_PARAMS_LANES) {
        fast_dot_forward(ctx, blk, i, O, start, start_value, 0, NULL);
        return;
    }
    if (ctx->plan->on_lanes[i] == NARY_DOT_LED) {
        lead_terms leads;
        find_lead_terms(ctx, args, ctx->plan->lead[i], blk->value, &leads);
        fast_dot_forward(ctx, blk, i, O, start, start_value, ctx->plan->lead[i], &leads);
        return;
    }
    for (r = 0; r < n; r++)
        O[r] = start != NULL ? start[r] : start_value;
    /* term after term over the rows: a loop per op and per way its operands lie (lanes or
     * one number), so that the rule is compiled into each loop */
    switch (op) {
#define FG_UNARY(name, symbol, forward, d_da)
#define FG_BINARY(name, symbol, forward, d_da, d_db)
#define FG_NARY(name, symbol, stride_, term, d_dv0, d_dv1) \
    case FG_##name: \
        for (k = 0; k < s->terms; k++) { \
            uint32_t slot0 = args[1 + k * stride], slot1 = stride > 1 ? args[2 + k * stride] : slot0; \
            const double *v0 = HAS_LANES(slot0) ? ROW(blk, value, slot0) : NULL; \
            const double *v1 = HAS_LANES(slot1) ? ROW(blk, value, slot1) : NULL; \
            double u0 = ctx->scalars[slot0], u1 = ctx->scalars[slot1]; \
            if (v0 != NULL && v1 != NULL) \
                for (r = 0; r < n; r++) \
                    O[r] = O[r] + fg_term(FG_##name, v0[r], v1[r]); \
            else if (v0 != NULL) \
                for (r = 0; r < n; r++) \
                    O[r] = O[r] + fg_term(FG_##name, v0[r], u1); \
            else if (v1 != NULL) \
                for (r = 0; r < n; r++) \
                    O[r] = O[r] + fg_term(FG_##name, u0, v1[r]); \
            else { \
                double t = fg_term(FG_##name, u0, u1); \
                for (r = 0; r < n; r++) \
                    O[r] = O[r] + t; \
            } \
        } \
        break;
#include "ops.def"
    default:
        break;
    }
}

/* How many neurons of a layer group the vector loops take at once: their sums and the input's
 * lanes must stay in the registers the vector width leaves. */
#if FG_WIDTH >= 4
#define FG_LAYER 4
#else
#define FG_LAYER 2
#endif

/* The heads of a layer group's g neurons, fast DOT steps over the same inputs: each input's
 * lanes loaded once for FG_LAYER neurons, whose sums grow term by term in registers (each
 * neuron's own order of additions, DOT's v0 * v1 as ops.def has it). */
static void layer_forward(const run_context *ctx, block *blk, size_t first, size_t g)
{
    const fg_program *P = ctx->P;
    const size_t *FG_RESTRICT x = ctx->fast_x + ctx->fast_at[first];
    const double *FG_RESTRICT value = blk->value;
    size_t n = ctx->n, r, j, q, q0, k, terms = P->steps[first].terms;
    for (q0 = 0; q0 < g; q0 += FG_LAYER) {
        const double *w[FG_LAYER], *start[FG_LAYER];
        double start_value[FG_LAYER], *O[FG_LAYER];
        for (q = 0; q < FG_LAYER; q++) {
            size_t step = MEMBER(first, q0 + q < g ? q0 + q : g - 1);  /* past the end: the last again */
            const uint32_t *args = P->args + P->steps[step].a;
            w[q] = ctx->fast_w + ctx->fast_at[step];
            start[q] = HAS_LANES(args[0]) ? ROW(blk, value, args[0]) : NULL;
            start_value[q] = ctx->scalars[args[0]];
            O[q] = ROW(blk, value, P->steps[step].out);
        }
        for (r = 0; r < n; r += 8) {
            fg_simd acc[FG_LAYER][FG_VECS];
            for (q = 0; q < FG_LAYER; q++)
                for (j = 0; j < FG_VECS; j++)
                    acc[q][j] = start[q] != NULL ? fg_load(start[q] + r + j * FG_WIDTH)
                                                 : fg_splat(start_value[q]);
            for (k = 0; k < terms; k++) {
                fg_simd xv[FG_VECS];
                for (j = 0; j < FG_VECS; j++)
                    xv[j] = fg_load(value + x[k] + r + j * FG_WIDTH);
                for (q = 0; q < FG_LAYER; q++) {
                    const fg_simd wq = fg_splat(w[q][k]);
                    for (j = 0; j < FG_VECS; j++)
                        acc[q][j] = fg_add(acc[q][j], fg_mul(wq, xv[j]));
                }
            }
            for (q = 0; q < FG_LAYER; q++)
                if (q0 + q < g)
                    for (j = 0; j < FG_VECS; j++)
                        fg_store(O[q] + r + j * FG_WIDTH, acc[q][j]);
        }
    }
}

/* The term grads of a fast DOT step for a vector of node grads g (dot_term_grads: 8 rows of
 * G; the neuron lanes of phase 2: a row of FG_WIDTH neurons): ops.h's rule
 * (fg_nary_term_amounts) at v0 = 1.0, v1 = 0.0, where the amount d(w x)/dx takes is the term
 * grad itself, written out in vector operations, each the rule's own IEEE operation:
 *   sum_grad = g for the last term, 0.0 + g for the others;
 *   amount to x = d_dv1 * (0.0 + 1.0 * sum_grad), d_dv1 = v0 = 1.0;
 *   amount to the start = 1.0 * sum_grad of term 0.
 * fg_blocks_check_rules holds this to the rule. */
static FG_ALWAYS_INLINE void dot_term_grad_vector(uint32_t terms, fg_simd g, fg_simd *last,
                                                  fg_simd *rest, fg_simd *first)
{
    const fg_simd zero = fg_splat(0.0), one = fg_splat(1.0), g_rest = fg_add(zero, g);
    *last = fg_mul(one, fg_add(zero, fg_mul(one, g)));
    *rest = fg_mul(one, fg_add(zero, fg_mul(one, g_rest)));
    *first = fg_mul(one, terms == 1 ? g : g_rest);
}

static void dot_term_grads(uint32_t terms, const double *G, fg_simd *last, fg_simd *rest,
                           fg_simd *first)
{
    size_t j;
    for (j = 0; j < FG_VECS; j++)
        dot_term_grad_vector(terms, fg_load(G + j * FG_WIDTH), &last[j], &rest[j], &first[j]);
}

/* A led dot's first terms' amounts as nary_backward forms them, v1 times the term grad to v0
 * and v0 times it to v1, against the rule at terms 0 and the last of 1 to 3: lanes that
 * disagree. */
static int check_lead_terms(const double *values)
{
    static const double others[8] = {1.0, -0.0, 0.0, 3.0, -1e300, 2.5, -1.0 / 0.0, 1e-320};
    fg_simd last[FG_VECS], rest[FG_VECS], first[FG_VECS];
    double to_v0[8], to_v1[8];
    int wrong = 0;
    uint32_t terms, k, j, which;
    for (terms = 1; terms <= 3; terms++)
        for (which = 0; which < 2; which++) {
            k = which == 0 ? 0 : terms - 1;     /* the first term, then the last */
            dot_term_grads(terms, values, last, rest, first);
            for (j = 0; j < FG_VECS; j++) {
                const fg_simd *term_grad = k + 1 == terms ? last : rest;
                fg_store(to_v0 + j * FG_WIDTH, fg_mul(fg_load(values + j * FG_WIDTH), term_grad[j]));
                fg_store(to_v1 + j * FG_WIDTH, fg_mul(fg_load(others + j * FG_WIDTH), term_grad[j]));
            }
            for (j = 0; j < 8; j++) {
                double to_start, a, b;   /* v0 = others[j], v1 = values[j]; the grad values[j] */
                fg_nary_term_amounts(FG_DOT, k, terms, values[j], others[j], values[j], &to_start,
                                     &a, &b);
                wrong += memcmp(&a, &to_v0[j], sizeof(double)) != 0;
                wrong += memcmp(&b, &to_v1[j], sizeof(double)) != 0;
            }
        }
    return wrong;
}

/* dot_term_grads and the led terms' amounts against the scalar rule, on values where rounding
 * and signs of zero differ: the number of lanes that disagree (0). The C tests call it, for
 * both copies. */
int FG_BLOCKS_CHECK_RULES(void)
{
    static const double values[8] = {0.0, -0.0, 1.5, -2.5e-310, 1e308, -1e-17, 1.0 / 0.0,
                                     -1.0 / 0.0};
    fg_simd last[FG_VECS], rest[FG_VECS], first[FG_VECS];
    double l[8], r[8], f[8];
    int wrong = 0;
    uint32_t terms, j;
    for (terms = 1; terms <= 3; terms++) {
        dot_term_grads(terms, values, last, rest, first);
        for (j = 0; j < FG_VECS; j++) {
            fg_store(l + j * FG_WIDTH, last[j]);
            fg_store(r + j * FG_WIDTH, rest[j]);
            fg_store(f + j * FG_WIDTH, first[j]);
        }
        for (j = 0; j < 8; j++) {
            double to_start, to_w, to_x;
            fg_nary_term_amounts(FG_DOT, terms - 1, terms, values[j], 1.0, 0.0, &to_start, &to_w,
                                 &to_x);
            wrong += memcmp(&to_x, &l[j], sizeof(double)) != 0;
            fg_nary_term_amounts(FG_DOT, 0, terms + 1, values[j], 1.0, 0.0, &to_start, &to_w,
                                 &to_x);
            wrong += memcmp(&to_x, &r[j], sizeof(double)) != 0;
            fg_nary_term_amounts(FG_DOT, 0, terms, values[j], 1.0, 0.0, &to_start, &to_w, &to_x);
            wrong += memcmp(&to_start, &f[j], sizeof(double)) != 0;
        }
    }
    return wrong + check_lead_terms(values);
}

/* A layer group's backward into its inputs' grads, for `vectors` vectors of rows from r (8, 16
 * or 32 rows; inlined with a constant count): for each input, the neurons' contributions last
 * neuron first (the plain program's order), added in registers before one store; then the
 * starts, last neuron first. The rows' sums are independent chains, so more rows at a time
 * overlap more of the adds' latency. */
static FG_ALWAYS_INLINE void layer_backward_rows(const run_context *ctx, block *blk, size_t first,
                                                 size_t g, const double *const *G,
                                                 const double *const *w, size_t r, size_t vectors)
{
    const fg_program *P = ctx->P;
    const size_t *FG_RESTRICT x = ctx->fast_x + ctx->fast_at[first];
    double *FG_RESTRICT grad = blk->grad;
    size_t j, q, k, h, terms = P->steps[first].terms;
    fg_simd last_v[MAX_LAYER][4 * FG_VECS], rest_v[MAX_LAYER][4 * FG_VECS];
    fg_simd starts[MAX_LAYER][4 * FG_VECS];
    for (q = 0; q < g; q++) {
        for (h = 0; h < vectors; h += FG_VECS)
            dot_term_grads((uint32_t)terms, G[q] + r + h * FG_WIDTH, last_v[q] + h, rest_v[q] + h,
                           starts[q] + h);
        const uint32_t head = ctx->plan->head_of[MEMBER(first, q)];
        if (head != NONE) {     /* phase 2's weights take them too */
            double *rest_row = HEAD(blk, head, 1) + r;
            double *last_row = HEAD(blk, head, 2) + r;
            for (j = 0; j < vectors; j++) {
                fg_store(rest_row + j * FG_WIDTH, rest_v[q][j]);
                fg_store(last_row + j * FG_WIDTH, last_v[q][j]);
            }
        }
    }
    for (k = ctx->plan->quiet_x[first] ? 0 : terms; k-- > 0;) {
        const int is_last = k + 1 == terms;
        double *FG_RESTRICT gx = grad + x[k] + r;
        fg_simd acc[4 * FG_VECS];
        for (j = 0; j < vectors; j++)
            acc[j] = fg_load(gx + j * FG_WIDTH);
        for (q = g; q-- > 0;) {
            double d_dw, d_dx;
            fg_simd d;
            fg_term_derivatives(FG_DOT, w[q][k], 0.0, &d_dw, &d_dx);   /* (a layer's are DOTs) */
            d = fg_splat(d_dx);
            for (j = 0; j < vectors; j++)
                acc[j] = fg_add(acc[j], fg_mul(d, is_last ? last_v[q][j] : rest_v[q][j]));
        }
        for (j = 0; j < vectors; j++)
            fg_store(gx + j * FG_WIDTH, acc[j]);
    }
    for (q = g; q-- > 0;) {
        const uint32_t *args = P->args + P->steps[MEMBER(first, q)].a;
        if (HAS_LANES(args[0])) {
            double *start = ROW(blk, grad, args[0]) + r;
            for (j = 0; j < vectors; j++)
                fg_store(start + j * FG_WIDTH, fg_add(fg_load(start + j * FG_WIDTH), starts[q][j]));
        }
    }
}

/* A layer group's backward into its inputs' grads, with the neurons' node grads G[q]. */
static void layer_backward(const run_context *ctx, block *blk, size_t first, size_t g,
                           const double *const *G)
{
    size_t n = ctx->n, r, q;
    const double *w[MAX_LAYER];
    for (q = 0; q < g; q++)
        w[q] = ctx->fast_w + ctx->fast_at[MEMBER(first, q)];
    for (r = 0; r + 32 <= n; r += 32)
        layer_backward_rows(ctx, blk, first, g, G, w, r, 4 * FG_VECS);
    if (r + 16 <= n) {
        layer_backward_rows(ctx, blk, first, g, G, w, r, 2 * FG_VECS);
        r += 16;
    }
    if (r < n)   /* n is a multiple of 8 */
        layer_backward_rows(ctx, blk, first, g, G, w, r, FG_VECS);
}

#define FORWARD(forward) (st = &forward_st, (forward))
#define DERIVATIVE(d) (st = FG_DERIVATIVE_STATUS(s, 0), (d))
#define DERIVATIVE_A(d) (st = FG_DERIVATIVE_STATUS(s, FG_STEP_QUIET_A), (d))
#define DERIVATIVE_B(d) (st = FG_DERIVATIVE_STATUS(s, FG_STEP_QUIET_B), (d))

/* Forward over a block: nonzero if a rule or a local derivative failed in some row. */
static int block_forward(const run_context *ctx, block *blk)
{
    const fg_program *P = ctx->P;
    const fg_micro *m = P->micro;
    double *D = blk->deriv;
    size_t n = ctx->n, r, i;
    fg_status forward_st = FG_OK, derivative_st = FG_OK, quiet_st = FG_OK, *st = &forward_st;
    for (i = 0; i < P->length; i++) {
        const fg_step *s = &P->steps[i];
        double *O;
        uint8_t t;
        if (FG_STEP_KIND(s) == FG_STEP_NARY && s->count + 1 != s->terms)
            continue;   /* the node's value is made by its last run */
        O = s->code == FG_DIVS_CODE ? NULL : ROW(blk, value, s->out);
        if (ctx->plan->layer[i] > 0)
            layer_forward(ctx, blk, i, ctx->plan->layer[i]);
        if (ctx->plan->in_layer[i] > 0)
            goto tail;  /* its head is made */
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
                    D[r] = DERIVATIVE_A(d_da); \
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
                    D[r] = DERIVATIVE_A(d_da); \
                    D[n + r] = DERIVATIVE_B(d_db); \
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
    tail:
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
    (void)st;   /* a derivative that fails matters only to a backward */
    return forward_st != FG_OK || (ctx->job->backward && derivative_st != FG_OK);
}

#undef FORWARD
#undef DERIVATIVE
#undef DERIVATIVE_A
#undef DERIVATIVE_B

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

/* FG_VECS vectors added into the 8 rows at p. */
static FG_ALWAYS_INLINE void add_vectors(double *p, const fg_simd *add)
{
    size_t j;
    for (j = 0; j < FG_VECS; j++)
        fg_store(p + j * FG_WIDTH, fg_add(fg_load(p + j * FG_WIDTH), add[j]));
}

/* A fast DOT step's backward from its node's grads G. d(w x)/dx = w: each x's grads take w
 * times its term grad, which is the same for every term but the last (ops.h's rule at v0 =
 * 1.0 gives the term grad itself); 8 rows at a time, terms last first as the rule runs them.
 * A led dot's first `lead` terms then give each operand with lanes the other operand times
 * the term grad, v0's first (inlined with lead 0 for the others). */
static FG_ALWAYS_INLINE void fast_dot_backward(const run_context *ctx, block *blk, size_t i,
                                               const double *G, double *start, uint32_t lead,
                                               const lead_terms *values, const lead_terms *grads)
{
    const fg_step *s = &ctx->P->steps[i];
    fg_op op = (fg_op)s->code;
    const double *FG_RESTRICT w = ctx->fast_w + ctx->fast_at[i];
    const size_t *FG_RESTRICT x = ctx->fast_x + ctx->fast_at[i];
    double *FG_RESTRICT grad = blk->grad;
    size_t n = ctx->n, r, j;
    uint32_t k;
    for (r = 0; r < n; r += 8) {
        double d_dw, d_dx;
        fg_simd last_v[FG_VECS], rest_v[FG_VECS], first_v[FG_VECS];
        dot_term_grads(s->terms, G + r, last_v, rest_v, first_v);
        if (ctx->plan->head_of[i] != NONE) {    /* phase 2's weights take them too */
            double *rest_row = HEAD(blk, ctx->plan->head_of[i], 1) + r;
            double *last_row = HEAD(blk, ctx->plan->head_of[i], 2) + r;
            for (j = 0; j < FG_VECS; j++) {
                fg_store(rest_row + j * FG_WIDTH, rest_v[j]);
                fg_store(last_row + j * FG_WIDTH, last_v[j]);
            }
        }
        if (ctx->plan->quiet_x[i]) {   /* no one reads the lanes' grads: only the start's */
            if (lead == 0 && start != NULL)
                add_vectors(start + r, first_v);
        }
        for (k = ctx->plan->quiet_x[i] ? lead : s->terms; k-- > lead;) {
            const fg_simd *term_grad = k + 1 == s->terms ? last_v : rest_v;
            double *FG_RESTRICT gx = grad + x[k - lead] + r;
            fg_simd dx;
            fg_term_derivatives(op, w[k - lead], 0.0, &d_dw, &d_dx);
            dx = fg_splat(d_dx);
            if (k == 0 && start != NULL)
                add_vectors(start + r, first_v);
            for (j = 0; j < FG_VECS; j++)
                fg_store(gx + j * FG_WIDTH, fg_add(fg_load(gx + j * FG_WIDTH),
                                                   fg_mul(dx, term_grad[j])));
        }
        for (k = lead; k-- > 0;) {  /* DOT's d(v0 v1)/dv0 = v1, d/dv1 = v0 */
            const fg_simd *term_grad = k + 1 == s->terms ? last_v : rest_v;
            int side;
            if (k == 0 && start != NULL)
                add_vectors(start + r, first_v);
            for (side = 0; side < 2; side++) {
                double *g = grads->lanes[side][k];
                if (g == NULL)
                    continue;   /* a parameter's waits for phase 2; a constant's is dropped */
                for (j = 0; j < FG_VECS; j++)
                    fg_store(g + r + j * FG_WIDTH,
                             fg_add(fg_load(g + r + j * FG_WIDTH),
                                    fg_mul(lead_operand(values, 1 - side, k, r + j * FG_WIDTH),
                                           term_grad[j])));
            }
        }
    }
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
        memcpy(HEAD(blk, ctx->plan->head_of[i], 0), G, n * sizeof(double));
    if (ctx->plan->on_lanes[i] == NARY_DOT_PARAMS_LANES) {
        fast_dot_backward(ctx, blk, i, G, start, 0, NULL, NULL);
        return;
    }
    if (ctx->plan->on_lanes[i] == NARY_DOT_LED) {
        lead_terms values, grads;
        find_lead_terms(ctx, args, ctx->plan->lead[i], blk->value, &values);
        find_lead_terms(ctx, args, ctx->plan->lead[i], blk->grad, &grads);
        fast_dot_backward(ctx, blk, i, G, start, ctx->plan->lead[i], &values, &grads);
        return;
    }
    /* terms last first, each over the rows: a loop per op and per way its operands lie, so
     * that the rule is compiled into each loop; what has no lanes to add into (a parameter,
     * which waits for phase 2, a constant, the start of a term but the first) goes into a
     * scratch row that nothing reads */
    switch (op) {
#define FG_UNARY(name, symbol, forward, d_da)
#define FG_BINARY(name, symbol, forward, d_da, d_db)
#define FG_NARY_TERM_ROWS(name, A, B) \
    for (r = 0; r < n; r++) { \
        double to_start, to_v0, to_v1; \
        fg_nary_term_amounts(FG_##name, k, s->terms, G[r], A, B, &to_start, &to_v0, &to_v1); \
        gs[r] += to_start; \
        g0[r] += to_v0; \
        g1[r] += to_v1; \
    }
#define FG_NARY(name, symbol, stride_, term, d_dv0, d_dv1) \
    case FG_##name: \
        while (k-- > s->b) { \
            uint32_t slot0 = args[1 + k * stride], slot1 = stride > 1 ? args[2 + k * stride] : slot0; \
            const double *v0 = HAS_LANES(slot0) ? ROW(blk, value, slot0) : NULL; \
            const double *v1 = HAS_LANES(slot1) ? ROW(blk, value, slot1) : NULL; \
            double *gs = k == 0 && start != NULL ? start : blk->scratch + n; \
            double *g0 = v0 != NULL ? ROW(blk, grad, slot0) : blk->scratch + 2 * n; \
            double *g1 = v1 != NULL && stride > 1 ? ROW(blk, grad, slot1) : blk->scratch + 3 * n; \
            double u0 = ctx->scalars[slot0], u1 = ctx->scalars[slot1]; \
            if (v0 != NULL && v1 != NULL) \
                FG_NARY_TERM_ROWS(name, v0[r], v1[r]) \
            else if (v0 != NULL) \
                FG_NARY_TERM_ROWS(name, v0[r], u1) \
            else if (v1 != NULL) \
                FG_NARY_TERM_ROWS(name, u0, v1[r]) \
            else \
                FG_NARY_TERM_ROWS(name, u0, u1) \
        } \
        break;
#include "ops.def"
#undef FG_NARY_TERM_ROWS
    default:
        break;
    }
}

/* Backward over a block: the rows' grads, from 0 for interior nodes and from -0.0 (the zero
 * that passes a single contribution on unchanged) for the leaves with lanes. */
static void block_backward(const run_context *ctx, block *blk)
{
    const fg_program *P = ctx->P;
    const double *D = blk->deriv + P->derivs * ctx->n;
    const double *member_D[MAX_OPEN][MAX_LAYER];  /* open layer groups' members' tail
                                                   * derivatives, by colour */
    size_t n = ctx->n, r, i, j;
    fg_status unchecked = FG_OK, *st = &unchecked;    /* forward checked every derivative */
    memset(blk->grad, 0, ctx->plan->lanes * n * sizeof(double));
    for (j = 0; j < ctx->plan->summed_count; j++) {
        double *g = ROW(blk, grad, ctx->plan->summed[j]);
        for (r = 0; r < n; r++)
            g[r] = -0.0;
    }
    {
        double *g = ROW(blk, grad, P->root), seed = ctx->job->root_grad;
        for (r = 0; r < n; r++)
            g[r] = seed;
    }
    for (i = P->length; i-- > 0;) {
        const fg_step *s = &P->steps[i];
        const double *GO = s->code == FG_DIVS_CODE ? NULL : ROW(blk, grad, s->out);
        const double *S;
        if (ctx->plan->in_layer[i] > 0) {
            /* a layer group's member: its tail's derivatives are here in step order; the
             * group's backward waits for its first member, where every consumer of every
             * member has added into their grads */
            size_t q = ctx->plan->in_layer[i] - 1, g = ctx->plan->layer[i];
            const double **tails = member_D[ctx->plan->layer_color[i]];
            const double *heads[MAX_LAYER];
            D -= (size_t)s->tail * n;
            tails[q] = D;
            if (q > 0)
                continue;
            for (q = g; q-- > 0;) {
                const uint32_t step = MEMBER(i, q);
                const fg_step *member = &P->steps[step];
                const double *GM = ROW(blk, grad, member->out);
                if (member->tail > 0)
                    GM = tail_backward(ctx, tails[q], member->tail, GM, blk->scratch + (3 + q) * n);
                if (ctx->plan->head_of[step] != NONE)
                    memcpy(HEAD(blk, ctx->plan->head_of[step], 0), GM, n * sizeof(double));
                heads[q] = GM;
            }
            layer_backward(ctx, blk, i, g, heads);
            continue;
        }
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

/* A block's partner operands of a fast deferred step, row-major (row r's from r * stride):
 * X itself when they are its columns in order, else the lanes transposed (a layer's neurons
 * share their inputs: the last transpose is kept). */
static const double *partner_rows(run_context *ctx, const deferred_step *ds, const block *blk,
                                  size_t index, unsigned thread, size_t *stride)
{
    const fg_step *s = &ctx->P->steps[ds->step];
    const uint32_t *args = ctx->P->args + s->a;
    double *rows = ctx->partners[thread];
    size_t r, k, k0, tag = index * (ctx->plan->deferred_count + 1) + ds->partners;
    if (ds->column != NONE) {
        *stride = ctx->job->input_count;
        return ctx->job->X + blk->row0 * ctx->job->input_count + ds->column;
    }
    *stride = s->terms;
    if (ctx->partners_tag[thread] == tag)
        return rows;
    /* eight terms at a time, row by row: eight lanes read side by side, eight numbers written
     * together (a lane at a time would write one number to every row's cache line) */
    for (k0 = 0; k0 < s->terms; k0 += 8) {
        const double *lanes[8];
        size_t width = s->terms - k0 < 8 ? s->terms - k0 : 8;
        for (k = 0; k < width; k++)
            lanes[k] = ROW(blk, value, args[2 + 2 * (k0 + k)]);
        for (r = 0; r < blk->rows; r++)
            for (k = 0; k < width; k++)
                rows[r * s->terms + k0 + k] = lanes[k][r];
    }
    ctx->partners_tag[thread] = tag;
    return rows;
}

/* The most vectors of weights one pass over the rows sums side by side. */
#define PASS_VECTORS 8

/* One pass over a block's rows for some of a fast dot's weights: totals[j] += x[r * stride + j]
 * * rest[r], row by row, for `vectors` vectors of them and `tail` (< FG_WIDTH) more; with `finish`,
 * also the last term's weight (its grad is `last`) at last_at and, with a start term, the
 * deferred start after it. Every sum is its own chain of additions, all in registers: one pass
 * overlaps their latencies. Where the tail and the last term fill one vector (a dot of 2^k
 * terms), they are summed as one. Inlined with a constant `vectors`. */
static FG_ALWAYS_INLINE void weight_pass(double *FG_RESTRICT totals, const double *FG_RESTRICT x,
                                         size_t stride, const double *FG_RESTRICT rest,
                                         size_t rows, size_t vectors, size_t tail, int finish,
                                         const double *FG_RESTRICT last, size_t last_at,
                                         const deferred_term *start, uint32_t terms,
                                         const double *FG_RESTRICT G)
{
    fg_simd acc[PASS_VECTORS], mixed_acc;
    size_t j, q, r, at = vectors * FG_WIDTH;
    const int mixed = finish && tail + 1 == FG_WIDTH;    /* then at + tail == last_at */
    /* the tail's weights, each its own sum (a loop of constant count, unrolled: registers) */
    double w[FG_WIDTH > 1 ? FG_WIDTH - 1 : 1], w_last = 0.0, w_start = 0.0;
    for (j = 0; j < vectors; j++)
        acc[j] = fg_load(totals + j * FG_WIDTH);
    mixed_acc = mixed ? fg_load(totals + at) : fg_splat(0.0);
    for (q = 0; q + 1 < FG_WIDTH; q++)
        w[q] = !mixed && tail > q ? totals[at + q] : 0.0;
    if (finish) {
        w_last = totals[last_at];
        w_start = start != NULL ? totals[last_at + 1] : 0.0;
    }
    for (r = 0; r < rows; r++) {
        const double *xr = x + r * stride;
        const fg_simd g = fg_splat(rest[r]);
        for (j = 0; j < vectors; j++)
            acc[j] = fg_add(acc[j], fg_mul(fg_load(xr + j * FG_WIDTH), g));
        if (mixed) {
            const fg_simd g_mixed = fg_splat_last(rest[r], last[r]);
            mixed_acc = fg_add(mixed_acc, fg_mul(fg_load(xr + at), g_mixed));
        } else {
            for (q = 0; q + 1 < FG_WIDTH; q++)
                if (tail > q)
                    w[q] = w[q] + xr[at + q] * rest[r];
            if (finish)
                w_last = w_last + xr[last_at] * last[r];
        }
        if (finish && start != NULL) {
            double to_start, to_v0, to_v1;
            fg_nary_term_amounts(FG_DOT, start->k, terms, G[r], 0.0, 0.0, &to_start, &to_v0,
                                 &to_v1);
            w_start = w_start + to_start;
        }
    }
    for (j = 0; j < vectors; j++)
        fg_store(totals + j * FG_WIDTH, acc[j]);
    if (mixed) {
        fg_store(totals + at, mixed_acc);
    } else {
        for (q = 0; q + 1 < FG_WIDTH; q++)
            if (tail > q)
                totals[at + q] = w[q];
        if (finish)
            totals[last_at] = w_last;
    }
    if (finish && start != NULL)
        totals[last_at + 1] = w_start;
}

/* A fast dot's weights from term k0 on (and its deferred start): full passes of PASS_VECTORS
 * vectors while more are left, then one pass for the rest, the last term and the start. */
static void fast_dot_sums(double *FG_RESTRICT totals, const double *FG_RESTRICT x, size_t stride,
                          const double *FG_RESTRICT rest, const double *FG_RESTRICT last,
                          size_t rows, uint32_t terms, const deferred_term *start,
                          const double *FG_RESTRICT G, size_t k0)
{
    size_t before_last = terms - 1, left, tail;
    for (; before_last - k0 > PASS_VECTORS * FG_WIDTH; k0 += PASS_VECTORS * FG_WIDTH)
        weight_pass(totals + k0, x + k0, stride, rest, rows, PASS_VECTORS, 0, 0, NULL, 0, NULL,
                    terms, G);
    left = before_last - k0;    /* at most PASS_VECTORS vectors, and a tail of fewer than one */
    tail = left % FG_WIDTH;
    switch (left / FG_WIDTH) {
#define PASS(v) \
    case v: \
        weight_pass(totals + k0, x + k0, stride, rest, rows, v, tail, 1, last, before_last - k0, \
                    start, terms, G); \
        break;
    PASS(0) PASS(1) PASS(2) PASS(3) PASS(4) PASS(5) PASS(6) PASS(7) PASS(8)
#undef PASS
    }
}

/* A fast dot's deferred start (its term after the dot's own), or NULL: the fast loop sums it. */
static const deferred_term *fast_start(const run_context *ctx, const deferred_step *ds)
{
    uint32_t terms = ctx->P->steps[ds->step].terms;
    const deferred_term *start = ctx->plan->terms + ds->first + terms;
    return ds->count > terms && start->side == 2 ? start : NULL;
}

/* A deferred step's parameters, rows r0 to r1 - 1 of block `index`: what phase 1 left out,
 * computed from the node's grads and each term's other operand; a fast dot's weights from
 * term k0 on (layer_weight_tiles did those before). */
static void add_deferred(run_context *ctx, const deferred_step *ds, size_t index, unsigned thread,
                         size_t r0, size_t r1, size_t k0, int fast_done)
{
    const fg_step *s = &ctx->P->steps[ds->step];
    const uint32_t *args = ctx->P->args + s->a;
    const deferred_term *terms = ctx->plan->terms + ds->first;
    double *FG_RESTRICT totals = ctx->accumulators + ds->first;
    fg_op op = (fg_op)s->code;
    uint32_t stride = fg_stride(op);
    size_t t, r;
    {
        block *blk = &ctx->buffers[index % ctx->threads];
        const double *G = HEAD(blk, ds->head, 0);
        int start_done = ds->dot_fast && fast_start(ctx, ds) != NULL;
        if (ds->dot_fast && !fast_done) {   /* w's row gradients are x * (its term grad) */
            size_t row_stride;
            const double *x = partner_rows(ctx, ds, blk, index, thread, &row_stride);
            fast_dot_sums(totals, x + r0 * row_stride, row_stride, HEAD(blk, ds->head, 1) + r0,
                          HEAD(blk, ds->head, 2) + r0, r1 - r0, s->terms,
                          start_done ? &terms[s->terms] : NULL, G + r0, k0);
        }
        for (t = ds->dot_fast ? s->terms + (size_t)start_done : 0; t < ds->count; t++) {
            const deferred_term *term = &terms[t];
            uint32_t k = term->k, slot0, slot1;
            const double *v0, *v1;
            double u0, u1, total = totals[t];
            slot0 = term->side == 2 ? args[1] : args[1 + k * stride];
            slot1 = term->side == 2 ? (stride > 1 ? args[2] : args[1])
                                    : stride > 1 ? args[2 + k * stride] : slot0;
            v0 = HAS_LANES(slot0) ? ROW(blk, value, slot0) : NULL;
            v1 = HAS_LANES(slot1) ? ROW(blk, value, slot1) : NULL;
            u0 = ctx->scalars[slot0];
            u1 = ctx->scalars[slot1];
            for (r = r0; r < r1; r++) {
                double to_start, to_v0, to_v1;
                fg_nary_term_amounts(op, k, s->terms, G[r], v0 != NULL ? v0[r] : u0,
                                     v1 != NULL ? v1[r] : u1, &to_start, &to_v0, &to_v1);
                total = total + (term->side == 2 ? to_start : term->side == 1 ? to_v1 : to_v0);
            }
            totals[t] = total;
        }
    }
}

/* Bytes of partner rows that phase 2 keeps in the first-level cache while it sums a layer. */
#define PARTNER_CHUNK_BYTES (16 * 1024)

/* Deferred steps work[w], work[w + 1], ... up to `end` that are fast dots over the same
 * partners (a layer's neurons): how many, at least 1. */
static size_t same_partners(const run_context *ctx, size_t w, size_t end)
{
    const deferred_step *first = &ctx->plan->deferred[ctx->work[w] - ctx->plan->summed_count];
    size_t count = 1;
    if (!first->dot_fast)
        return 1;
    for (; w + count < end; count++) {
        size_t item = ctx->work[w + count] - ctx->plan->summed_count;
        if (ctx->work[w + count] < ctx->plan->summed_count || item >= ctx->plan->deferred_count
            || !ctx->plan->deferred[item].dot_fast
            || ctx->plan->deferred[item].partners != first->partners)
            break;
    }
    return count;
}

/* Neurons a weight tile takes side by side, and vectors of their shared inputs: each row of
 * inputs loaded once for all of them (a neuron at a time would read the partners' rows from
 * the second-level cache once per neuron), 4 x TILE_VECTORS sums in registers. */
#define TILE_NEURONS 4
#define TILE_VECTORS 2

/* The weights of TILE_NEURONS fast dots over the same partners x, terms 0 to columns - 1 (a
 * multiple of TILE_VECTORS vectors, none of them a last term), rows 0 to rows - 1: each
 * weight's total plus x * its neuron's term grad, row by row, as weight_pass adds them. */
static void layer_weight_tiles(double *const *totals, const double *FG_RESTRICT x, size_t stride,
                               const double *const *rest, size_t rows, size_t columns)
{
    size_t k0, q, j, r;
    for (k0 = 0; k0 < columns; k0 += TILE_VECTORS * FG_WIDTH) {
        fg_simd acc[TILE_NEURONS][TILE_VECTORS];
        for (q = 0; q < TILE_NEURONS; q++)
            for (j = 0; j < TILE_VECTORS; j++)
                acc[q][j] = fg_load(totals[q] + k0 + j * FG_WIDTH);
        for (r = 0; r < rows; r++) {
            const double *xr = x + r * stride + k0;
            fg_simd xv[TILE_VECTORS];
            for (j = 0; j < TILE_VECTORS; j++)
                xv[j] = fg_load(xr + j * FG_WIDTH);
            for (q = 0; q < TILE_NEURONS; q++) {
                const fg_simd g = fg_splat(rest[q][r]);
                for (j = 0; j < TILE_VECTORS; j++)
                    acc[q][j] = fg_add(acc[q][j], fg_mul(xv[j], g));
            }
        }
        for (q = 0; q < TILE_NEURONS; q++)
            for (j = 0; j < TILE_VECTORS; j++)
                fg_store(totals[q] + k0 + j * FG_WIDTH, acc[q][j]);
    }
}

/* The most weights before the last that a neuron-lane pass sums for each neuron, plus one:
 * what whole tiles leave (fewer than TILE_VECTORS vectors), or a neuron with few inputs. */
#if FG_WIDTH >= 8
#define LANE_TERMS 16
#else
#define LANE_TERMS 8
#endif

/* Number `at` of each of FG_WIDTH neurons' totals, a neuron a lane (and back). */
static FG_ALWAYS_INLINE fg_simd gather_totals(double *const *totals, size_t at)
{
    double lane[FG_WIDTH];
    size_t q;
    for (q = 0; q < FG_WIDTH; q++)
        lane[q] = totals[q][at];
    return fg_load(lane);
}

static FG_ALWAYS_INLINE void scatter_totals(double *const *totals, size_t at, fg_simd v)
{
    double lane[FG_WIDTH];
    size_t q;
    fg_store(lane, v);
    for (q = 0; q < FG_WIDTH; q++)
        totals[q][at] = lane[q];
}

/* FG_WIDTH neurons' weights from term k0 on, one neuron a lane, rows 0 to rows - 1: weight k's
 * total plus x[r][k] * the neuron's term grad, its last term's with the last term grad, and
 * the start's (term 0's) total plus its amount, each a chain of its own in row order, as
 * weight_pass adds them. G holds the neurons' node grads row-major, FG_WIDTH a row; the term
 * grads are dot_term_grads' rule on them. A neuron alone has few weights left after the tiles
 * (moons' first layer: two and its start), so its chains would wait on each addition; side by
 * side, the neurons' chains overlap. Inlined with a constant `left`. */
static FG_ALWAYS_INLINE void neuron_lane_pass(double *const *totals, const double *FG_RESTRICT x,
                                              size_t stride, const double *FG_RESTRICT G,
                                              size_t rows, uint32_t terms, size_t k0,
                                              size_t left, int with_start)
{
    const size_t last_at = terms - 1;
    fg_simd acc[LANE_TERMS];
    fg_simd acc_last = gather_totals(totals, last_at);
    fg_simd acc_start = with_start ? gather_totals(totals, last_at + 1) : fg_splat(0.0);
    size_t k, r;
    for (k = 0; k < left; k++)
        acc[k] = gather_totals(totals, k0 + k);
    for (r = 0; r < rows; r++) {
        const double *xr = x + r * stride;
        fg_simd last, rest, first;
        dot_term_grad_vector(terms, fg_load(G + r * FG_WIDTH), &last, &rest, &first);
        for (k = 0; k < left; k++)
            acc[k] = fg_add(acc[k], fg_mul(fg_splat(xr[k0 + k]), rest));
        acc_last = fg_add(acc_last, fg_mul(fg_splat(xr[last_at]), last));
        if (with_start)
            acc_start = fg_add(acc_start, first);
    }
    for (k = 0; k < left; k++)
        scatter_totals(totals, k0 + k, acc[k]);
    scatter_totals(totals, last_at, acc_last);
    if (with_start)
        scatter_totals(totals, last_at + 1, acc_start);
}

/* The deferred step of phase 2's work item w. */
#define DEFERRED(ctx, w) (&(ctx)->plan->deferred[(ctx)->work[w] - (ctx)->plan->summed_count])

/* The fast sums of the FG_WIDTH neurons of work items w, w + 1, ... from term k0 on, rows r0
 * to r1 - 1 of `blk`, side by side in neuron_lane_pass; 0 (nothing done) where they differ in
 * shape (a start or not) or have more weights left than it takes. */
static int neuron_lanes(run_context *ctx, size_t w, const block *blk, unsigned thread,
                        const double *x, size_t stride, size_t r0, size_t r1, size_t k0)
{
    const deferred_step *first = DEFERRED(ctx, w);
    const deferred_term *first_start = fast_start(ctx, first);
    const uint32_t terms = ctx->P->steps[first->step].terms;
    double *lanes = ctx->row_sums[thread], *totals[FG_WIDTH];
    size_t q, r, rows = r1 - r0, left = terms - 1 - k0;
    if (left > LANE_TERMS - 1)
        return 0;
    for (q = 0; q < FG_WIDTH; q++) {   /* one shape, whose start (if any) is term 0's */
        const deferred_step *ds = DEFERRED(ctx, w + q);
        const deferred_term *start = fast_start(ctx, ds);
        if (ctx->P->steps[ds->step].terms != terms || (start == NULL) != (first_start == NULL)
            || (start != NULL && start->k != 0))
            return 0;
    }
    for (q = 0; q < FG_WIDTH; q++) {   /* the neurons' node grads, a lane each */
        const deferred_step *ds = DEFERRED(ctx, w + q);
        const double *G = HEAD(blk, ds->head, 0) + r0;
        totals[q] = ctx->accumulators + ds->first;
        for (r = 0; r < rows; r++)
            lanes[r * FG_WIDTH + q] = G[r];
    }
    switch (left) {
#define LANES(v) \
    case v: \
        neuron_lane_pass(totals, x, stride, lanes, rows, terms, k0, v, first_start != NULL); \
        break;
    LANES(0) LANES(1) LANES(2) LANES(3) LANES(4) LANES(5) LANES(6) LANES(7)
#if LANE_TERMS > 8
    LANES(8) LANES(9) LANES(10) LANES(11) LANES(12) LANES(13) LANES(14) LANES(15)
#endif
#undef LANES
    }
    return 1;
}

/* A layer's deferred dots (work[w] to work[w + count - 1]), block `index`: a chunk of rows at
 * a time for all of them, so that the partners' rows they all read come from the first-level
 * cache (one neuron's pass over the block's rows would read them from the second level); in
 * each chunk, TILE_NEURONS neurons at a time take their leading weights together, then
 * FG_WIDTH neurons at a time the rest of their terms, one a lane (a neuron alone where fewer
 * are left). Each weight still takes its rows in order. */
static void add_layer_deferred(run_context *ctx, size_t w, size_t count, size_t index,
                               unsigned thread)
{
    const block *blk = &ctx->buffers[index % ctx->threads];
    const deferred_step *first = DEFERRED(ctx, w);
    const fg_step *s = &ctx->P->steps[first->step];
    size_t stride = first->column != NONE ? ctx->job->input_count : s->terms;
    size_t chunk = count > 1 ? PARTNER_CHUNK_BYTES / sizeof(double) / stride : blk->rows;
    /* whole tiles of leading terms, the last term left to the lanes or fast_dot_sums */
    size_t tiled = count >= TILE_NEURONS ? (s->terms - 1) / (TILE_VECTORS * FG_WIDTH)
                                               * (TILE_VECTORS * FG_WIDTH) : 0;
    size_t r0, j, q;
    if (chunk < 16)
        chunk = 16;
    for (r0 = 0; r0 < blk->rows; r0 += chunk) {
        size_t r1 = blk->rows - r0 < chunk ? blk->rows : r0 + chunk;
        const double *x = NULL;
        size_t row_stride = stride;
        if (tiled > 0 || (FG_WIDTH > 1 && count >= FG_WIDTH))
            x = partner_rows(ctx, first, blk, index, thread, &row_stride);
        for (j = 0; tiled > 0 && j + TILE_NEURONS <= count; j += TILE_NEURONS) {
            double *totals[TILE_NEURONS];
            const double *rest[TILE_NEURONS];
            for (q = 0; q < TILE_NEURONS; q++) {
                const deferred_step *dq = DEFERRED(ctx, w + j + q);
                totals[q] = ctx->accumulators + dq->first;
                rest[q] = HEAD(blk, dq->head, 1) + r0;
            }
            layer_weight_tiles(totals, x + r0 * row_stride, row_stride, rest, r1 - r0, tiled);
        }
        for (j = 0; j < count; j++) {
            /* the weights the tiles took: those of a whole tile's neurons */
            size_t k0 = j - j % TILE_NEURONS + TILE_NEURONS <= count ? tiled : 0;
            if (FG_WIDTH > 1 && j % FG_WIDTH == 0 && j + FG_WIDTH <= count
                && neuron_lanes(ctx, w + j, blk, thread, x + r0 * row_stride, row_stride, r0, r1,
                                k0)) {
                for (q = 0; q < FG_WIDTH; q++)
                    add_deferred(ctx, DEFERRED(ctx, w + j + q), index, thread, r0, r1, k0, 1);
                j += FG_WIDTH - 1;
                continue;
            }
            add_deferred(ctx, DEFERRED(ctx, w + j), index, thread, r0, r1, k0, 0);
        }
    }
}

/* *totals[j] plus rows[j][0], rows[j][1], ... in row order, for count (1 to SIDE_BY_SIDE)
 * sums side by side: their chains of additions overlap, where one alone would wait on each
 * addition. */
static void add_rows(double *const *totals, const double *const *rows, size_t count, size_t n)
{
    const double *from[SIDE_BY_SIDE];
    double total[SIDE_BY_SIDE];
    size_t r, j;
    for (j = 0; j < SIDE_BY_SIDE; j++) {   /* past count: the last sum again, not written */
        from[j] = rows[j < count ? j : count - 1];
        total[j] = *totals[j < count ? j : count - 1];
    }
    for (r = 0; r < n; r++)
        for (j = 0; j < SIDE_BY_SIDE; j++)
            total[j] = total[j] + from[j][r];
    for (j = 0; j < count; j++)
        *totals[j] = total[j];
}

/* The most uses of a weight that only dots read that shared_rows sums in one pass. */
#define FUSED_USES 4

/* A weight's row gradients where each of its `uses` (a constant, inlined) is as v0 of a term
 * of a dot whose v1 has lanes: each row's from -0.0, its uses' amounts added in order, in
 * registers (a pass per use would load and store every row's sum once per use). */
static FG_ALWAYS_INLINE void dot_weight_rows(double *FG_RESTRICT sums, size_t rows, size_t uses,
                                             const double *const *G, const double *const *B,
                                             const uint32_t *k, const uint32_t *terms, double w)
{
    size_t r, u;
    for (r = 0; r < rows; r++) {
        double sum = -0.0;
        for (u = 0; u < uses; u++) {
            double to_start, to_v0, to_v1;
            fg_nary_term_amounts(FG_DOT, k[u], terms[u], G[u][r], w, B[u][r], &to_start, &to_v0,
                                 &to_v1);
            sum += to_v0;
        }
        sums[r] = sum;
    }
}

/* dot_weight_rows where every use of sp is such a one and they are few; else 0. */
static int fused_dot_weight_rows(const run_context *ctx, const shared_param *sp,
                                 const block *blk, double *FG_RESTRICT sums)
{
    const double *G[FUSED_USES], *B[FUSED_USES];
    uint32_t k[FUSED_USES], terms[FUSED_USES], u;
    if (sp->count > FUSED_USES)
        return 0;
    for (u = 0; u < sp->count; u++) {
        const shared_use *use = &ctx->plan->uses[sp->first + u];
        const fg_step *s = &ctx->P->steps[use->step];
        uint32_t partner;
        if (s->code != FG_DOT || use->side != 0)
            return 0;
        partner = ctx->P->args[s->a + 2 + 2 * use->k];     /* (a dot's operands are pairs) */
        if (!HAS_LANES(partner))
            return 0;
        G[u] = HEAD(blk, ctx->plan->head_of[use->step], 0);
        B[u] = ROW(blk, value, partner);
        k[u] = use->k;
        terms[u] = s->terms;
    }
    switch (sp->count) {
#define USES(n) \
    case n: \
        dot_weight_rows(sums, blk->rows, n, G, B, k, terms, ctx->scalars[sp->leaf]); \
        return 1;
    USES(1) USES(2) USES(3) USES(4)
#undef USES
    default:
        return 0;
    }
}

/* A shared parameter's row gradients of a block into `sums`: each row's from -0.0, its uses'
 * contributions added in backward's order, as lanes would collect them. */
static void shared_rows(const run_context *ctx, const shared_param *sp, const block *blk,
                        double *FG_RESTRICT sums)
{
    size_t r, rows = blk->rows;
    uint32_t u;
    if (fused_dot_weight_rows(ctx, sp, blk, sums))
        return;
    for (r = 0; r < rows; r++)
        sums[r] = -0.0;
    for (u = 0; u < sp->count; u++) {
        const shared_use *use = &ctx->plan->uses[sp->first + u];
        const fg_step *s = &ctx->P->steps[use->step];
        const uint32_t *args = ctx->P->args + s->a;
        const double *FG_RESTRICT G = HEAD(blk, ctx->plan->head_of[use->step], 0);
        uint32_t stride = fg_stride((fg_op)s->code), k = use->k, side = use->side;
        uint32_t slot0 = args[1 + k * stride], slot1 = stride > 1 ? args[2 + k * stride] : slot0;
        const double *A = HAS_LANES(slot0) ? ROW(blk, value, slot0) : NULL;
        const double *B = HAS_LANES(slot1) ? ROW(blk, value, slot1) : NULL;
        double a = ctx->scalars[slot0], b = ctx->scalars[slot1];
        /* one loop per op, so that its rule is known where the loop is compiled */
        switch (s->code) {
#define FG_UNARY(name, symbol, forward, d_da)
#define FG_BINARY(name, symbol, forward, d_da, d_db)
#define FG_NARY(name, symbol, stride_, term, d_dv0, d_dv1) \
        case FG_##name: \
            for (r = 0; r < rows; r++) { \
                double to_start, to_v0, to_v1; \
                fg_nary_term_amounts(FG_##name, k, s->terms, G[r], A != NULL ? A[r] : a, \
                                     B != NULL ? B[r] : b, &to_start, &to_v0, &to_v1); \
                sums[r] += side == 2 ? to_start : side == 1 ? to_v1 : to_v0; \
            } \
            break;
#include "ops.def"
        default:
            break;
        }
    }
}

/* Shared parameters first .. first + count - 1 (count <= SIDE_BY_SIDE), the rows of block
 * `index` added to their grads in row order. */
static void add_shared(run_context *ctx, size_t first, size_t count, size_t index,
                       unsigned thread)
{
    const block *blk = &ctx->buffers[index % ctx->threads];
    const shared_param *sp = ctx->plan->shared + first;
    double *sums = ctx->row_sums[thread], *totals[SIDE_BY_SIDE];
    const double *rows[SIDE_BY_SIDE];
    size_t j;
    for (j = 0; j < count; j++) {
        shared_rows(ctx, &sp[j], blk, sums + j * ctx->n);
        totals[j] = &ctx->totals[sp[j].leaf];
        rows[j] = sums + j * ctx->n;
    }
    add_rows(totals, rows, count, blk->rows);
}

/* Summed leaves (work items `items`, count <= SIDE_BY_SIDE of them): the rows of block
 * `index` added to their grads in row order. */
static void add_summed(run_context *ctx, const uint32_t *items, size_t count, size_t index)
{
    const block *blk = &ctx->buffers[index % ctx->threads];
    double *totals[SIDE_BY_SIDE];
    const double *rows[SIDE_BY_SIDE];
    size_t j;
    for (j = 0; j < count; j++) {
        uint32_t leaf = ctx->plan->summed[items[j]];
        totals[j] = &ctx->totals[leaf];
        rows[j] = ROW(blk, grad, leaf);
    }
    add_rows(totals, rows, count, blk->rows);
}

/* The outputs' values of the block's rows, into the run's row-major result. */
static void write_outputs(const run_context *ctx, const block *blk)
{
    size_t count = ctx->T->output_count, i, r;
    double *out = ctx->job->out + blk->row0 * count;
    if (count == 1) {
        memcpy(out, ROW(blk, value, ctx->P->outputs[0]), blk->rows * sizeof(double));
        return;
    }
    for (i = 0; i < count; i++) {
        const double *values = ROW(blk, value, ctx->P->outputs[i]);
        for (r = 0; r < blk->rows; r++)
            out[r * count + i] = values[r];
    }
}

void FG_BLOCKS_WORK(run_context *ctx, unsigned t)
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
                write_outputs(ctx, blk);
                if (job->backward)
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
        /* block by block in row order: each leaf still gets its rows in order */
        for (index = chunk * ctx->threads; job->backward && index < (chunk + 1) * ctx->threads && index < ctx->blocks;
             index++)
            for (w = ctx->split[t]; w < ctx->split[t + 1]; w++) {
                uint32_t item = ctx->work[w];
                if (item < ctx->plan->summed_count) {
                    size_t count = 1;
                    while (count < SIDE_BY_SIDE && w + count < ctx->split[t + 1]
                           && ctx->work[w + count] < ctx->plan->summed_count)
                        count++;
                    add_summed(ctx, ctx->work + w, count, index);
                    w += count - 1;
                } else if ((item -= (uint32_t)ctx->plan->summed_count) < ctx->plan->deferred_count) {
                    size_t count = same_partners(ctx, w, ctx->split[t + 1]);
                    add_layer_deferred(ctx, w, count, index, t);
                    w += count - 1;
                } else {  /* shared parameters: this thread's next ones, a group at a time */
                    size_t count = ctx->split[t + 1] - w;
                    if (count > SIDE_BY_SIDE)
                        count = SIDE_BY_SIDE;
                    add_shared(ctx, item - ctx->plan->deferred_count, count, index, t);
                    w += count - 1;
                }
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

