/*
 * replay.c: one row of the step program, forward and backward.
 *
 * Forward runs the steps first to last; each computes its head and its tail in registers and
 * stores the local derivatives it will need, in step order, so that backward is only
 * multiplications and additions, run last to first. A rule that fails only stops the forward
 * (or, for a local derivative, marks the state): plain.c then names the rule, as the eager
 * order has it.
 */
#include <string.h>

#include "tape.h"

/* A group of divisions by v[s->b]: 1 / b (DIV's d/da, which its row computes from b alone)
 * is computed by the first member and serves them all. */
static inline void divs_forward(const fg_program *P, const fg_step *s, double *v, double *d,
                                fg_status *forward_st, fg_status *derivative_st)
{
    const uint32_t *numerators = P->args + s->terms;
    double b = v[s->b], db;
    uint32_t j;
    v[s->out] = fg_forward_and_derivatives(FG_DIV, v[numerators[0]], b, 0.0, &d[0], &d[1],
                                           forward_st, derivative_st);
    for (j = 1; j < s->count; j++) {
        v[s->out + j] = fg_div_and_db(v[numerators[j]], b, &db, forward_st, derivative_st);
        d[1 + j] = db;
    }
}

/* The rules of ops.def, expanded in place: a, b and c are the operands and POWC's exponent,
 * `out` the result; a failing forward rule records its status in forward_st, a failing
 * local derivative in derivative_st (the helpers write to *st). */
#define FORWARD(forward) (st = &forward_st, (forward))
#define DERIVATIVE(d) (st = FG_DERIVATIVE_STATUS(s, 0), (d))
#define DERIVATIVE_A(d) (st = FG_DERIVATIVE_STATUS(s, FG_STEP_QUIET_A), (d))
#define DERIVATIVE_B(d) (st = FG_DERIVATIVE_STATUS(s, FG_STEP_QUIET_B), (d))

/* What forward switches on: the head's op and its form, so that the common step, a head with
 * no tail and nothing to store, runs straight through without testing either (a tenth of
 * B7's time). schedule.c gives every unary or binary head with a tail STORED as well. */
#define FORM_TAILED (FG_STEP_TAILED << 3)
#define FORM_STORED (FG_STEP_STORED << 3)
#define FORWARD_CASE(s) ((s)->code | ((s)->kind & (FG_STEP_TAILED | FG_STEP_STORED)) << 3)
typedef char fg_codes_below_forms[FG_DIVS_CODE < FORM_TAILED ? 1 : -1];
/* A head's value made: into its slot, or on through its tail. */
#define HEAD_DONE(value) \
    if (!(s->kind & FG_STEP_TAILED)) { \
        v[s->out] = (value); \
        continue; \
    } \
    x = (value); \
    break

fg_status fg_replay_forward(const fg_program *P, fg_row_state *state)
{
    double *v = state->value, *d = state->deriv;
    const fg_step *s = P->steps, *end = P->steps + P->length;
    const fg_micro *m = P->micro;
    fg_status forward_st = FG_OK, derivative_st = FG_OK, quiet_st = FG_OK, *st;
    for (; s < end; s++) {
        double x;
        uint8_t t;
        switch (FORWARD_CASE(s)) {
#define FG_UNARY(name, symbol, forward, d_da) \
        case FG_##name: { \
            double a = v[s->a], b = 0.0, c = P->numbers[s->terms]; \
            (void)b; \
            (void)c; \
            v[s->out] = FORWARD(forward); \
            continue; \
        } \
        case FG_##name | FORM_STORED: \
        case FG_##name | FORM_STORED | FORM_TAILED: { \
            double a = v[s->a], b = 0.0, c = P->numbers[s->terms], out = FORWARD(forward); \
            (void)b; \
            (void)c; \
            d[0] = DERIVATIVE_A(d_da); \
            d += 1; \
            HEAD_DONE(out); \
        }
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
        case FG_##name: { \
            double a = v[s->a], b = v[s->b], c = 0.0; \
            (void)c; \
            v[s->out] = FORWARD(forward); \
            continue; \
        } \
        case FG_##name | FORM_STORED: \
        case FG_##name | FORM_STORED | FORM_TAILED: { \
            double a = v[s->a], b = v[s->b], c = 0.0, out = FORWARD(forward); \
            (void)c; \
            d[0] = DERIVATIVE_A(d_da); \
            d[1] = DERIVATIVE_B(d_db); \
            d += 2; \
            HEAD_DONE(out); \
        }
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
        case FG_##name: \
        case FG_##name | FORM_TAILED: { \
            const uint32_t *args = P->args + s->a; \
            uint32_t k; \
            if (s->count + 1 != s->terms) \
                continue;   /* the node's value is made by its last run */ \
            x = v[args[0]]; \
            for (k = 0; k < s->terms; k++) { \
                double v0 = v[args[1 + k * (stride)]]; \
                double v1 = (stride) > 1 ? v[args[(stride) > 1 ? 2 + k * (stride) : 0]] : 0.0; \
                (void)v1; \
                x = x + (term); \
            } \
            HEAD_DONE(x); \
        }
#include "ops.def"
        default:
            divs_forward(P, s, v, d, &forward_st, &derivative_st);
            d += 1 + s->count;
            continue;
        }
        for (t = s->tail; t > 0; t--, m++, d++) {
            switch (m->code) {
#define FG_UNARY(name, symbol, forward, d_da) \
            case FG_MICRO_CODE(FG_##name, FG_MICRO_UNARY): { \
                double a = x, b = 0.0, c = m->c, out = FORWARD(forward); \
                (void)b; \
                (void)c; \
                *d = DERIVATIVE(d_da); \
                x = out; \
                break; \
            }
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
            case FG_MICRO_CODE(FG_##name, FG_MICRO_NUMBER_RIGHT): { \
                double a = x, b = m->c, c = 0.0, out = FORWARD(forward); \
                (void)c; \
                *d = DERIVATIVE(d_da); \
                (void)DERIVATIVE(d_db); /* a failure of the number's own is the node's */ \
                x = out; \
                break; \
            } \
            case FG_MICRO_CODE(FG_##name, FG_MICRO_NUMBER_LEFT): { \
                double a = m->c, b = x, c = 0.0, out = FORWARD(forward); \
                (void)c; \
                (void)DERIVATIVE(d_da); \
                *d = DERIVATIVE(d_db); \
                x = out; \
                break; \
            }
#include "ops.def"
            default:
                break;
            }
        }
        v[s->out] = x;
    }
    state->pending = derivative_st != FG_OK;
    return forward_st;
}

#undef FORWARD
#undef DERIVATIVE
#undef DERIVATIVE_A
#undef DERIVATIVE_B

/* Terms s->b..s->count of an NARY node whose grad is g, last first (ops.h's rule), with the op
 * a constant in one loop per NARY row of ops.def. */
static inline void nary_backward(const fg_program *P, const fg_step *s, const double *v,
                                 double *grad, double g)
{
    const uint32_t *args = P->args + s->a;
    uint32_t k = s->count + 1;
    switch ((fg_op)s->code) {
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
    case FG_##name: \
        while (k-- > s->b) { \
            uint32_t v0 = args[1 + k * (stride)], v1 = args[(stride) > 1 ? 2 + k * (stride) : 1 + k]; \
            fg_nary_term_backward(FG_##name, k, s->terms, g, v[v0], v[v1], &grad[args[0]], \
                                  &grad[v0], &grad[v1]); \
        } \
        return;
#include "ops.def"
    default:
        return;
    }
}

/* The grad of a tail's first node, from the grad g of its last: each node of a tail has one
 * consumer, so its grad is 0.0 plus one contribution. d holds the tail's derivatives. */
static inline double tail_backward(const double *d, uint8_t tail, double g)
{
    while (tail-- > 0)
        g = 0.0 + d[tail] * g;
    return g;
}

void fg_replay_backward(const fg_program *P, const fg_row_state *state, size_t leaf_count,
                        double seed, double *grad)
{
    const double *v = state->value, *d = state->deriv + P->derivs;
    size_t i = P->length;
    fg_status unchecked = FG_OK, *st = &unchecked;    /* forward checked every derivative */
    memset(grad + leaf_count, 0, (P->slots + 1 - leaf_count) * sizeof(double));
    grad[P->root] = seed;
    while (i-- > 0) {
        const fg_step *s = &P->steps[i];
        double g;
        switch (s->back) {
#define FG_UNARY(name, symbol, forward, d_da) \
        case FG_BACK_##name: { \
            double a = v[s->a], b = 0.0, c = P->numbers[s->terms], out = v[s->out]; \
            (void)a; (void)b; (void)c; (void)out; \
            grad[s->a] += (d_da) * grad[s->out]; \
            break; \
        }
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
        case FG_BACK_##name: { \
            double a = v[s->a], b = v[s->b], c = 0.0, out = v[s->out], da = (d_da), db = (d_db); \
            (void)a; (void)b; (void)c; (void)out; \
            g = grad[s->out]; \
            grad[s->a] += da * g; \
            grad[s->b] += db * g; \
            break; \
        }
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
        case FG_BACK_##name: \
            nary_backward(P, s, v, grad, grad[s->out]); \
            break; \
        case FG_BACK_TAILED_##name: \
            d -= s->tail; \
            nary_backward(P, s, v, grad, tail_backward(d, s->tail, grad[s->out])); \
            break;
#include "ops.def"
        case FG_BACK_UNARY_STORED:
            d -= 1;
            grad[s->a] += d[0] * grad[s->out];
            break;
        case FG_BACK_UNARY_TAILED:
            d -= 1 + s->tail;
            grad[s->a] += d[0] * tail_backward(d + 1, s->tail, grad[s->out]);
            break;
        case FG_BACK_BINARY_STORED:
            d -= 2;
            g = grad[s->out];
            grad[s->a] += d[0] * g;
            grad[s->b] += d[1] * g;
            break;
        case FG_BACK_BINARY_TAILED:
            d -= 2 + s->tail;
            g = tail_backward(d + 2, s->tail, grad[s->out]);
            grad[s->a] += d[0] * g;
            grad[s->b] += d[1] * g;
            break;
        default: {  /* a group of divisions: the denominator's grad gathered in a register */
            const uint32_t *numerators = P->args + s->terms;
            double inv, gb = grad[s->b];
            uint32_t j = s->count;
            d -= 1 + s->count;
            inv = d[0];
            while (j-- > 0) {
                double go = grad[s->out + j];
                grad[numerators[j]] += inv * go;
                gb += d[1 + j] * go;
            }
            grad[s->b] = gb;
        }
        }
    }
    (void)st;
}
