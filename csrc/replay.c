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

/* A tail op on x: its result, and d result / d x into *d. */
static inline double micro_forward(const fg_micro *m, double x, double *d, fg_status *st,
                                   fg_status *derivative_st)
{
    double da, db, out;
    switch (m->form) {
    case FG_MICRO_NUMBER_RIGHT:
        out = fg_forward_and_derivatives((fg_op)m->op, x, m->c, 0.0, &da, &db, st, derivative_st);
        *d = da;
        return out;
    case FG_MICRO_NUMBER_LEFT:
        out = fg_forward_and_derivatives((fg_op)m->op, m->c, x, 0.0, &da, &db, st, derivative_st);
        *d = db;
        return out;
    default:
        out = fg_forward_and_derivatives((fg_op)m->op, x, 0.0, m->c, &da, &db, st, derivative_st);
        *d = da;
        return out;
    }
}

/* A group of divisions by v[s->b]: 1 / b and b * b are the same for every member, so the
 * first member's d/da (DIV's row reads only b there) serves them all. */
static inline fg_status divs_forward(const fg_program *P, const fg_step *s, double *v, double *d,
                                     fg_status *derivative_st)
{
    const uint32_t *numerators = P->args + s->terms;
    double b = v[s->b], db;
    fg_status st = FG_OK;
    uint32_t j;
    v[s->out] = fg_forward_and_derivatives(FG_DIV, v[numerators[0]], b, 0.0, &d[0], &d[1], &st,
                                           derivative_st);
    if (st != FG_OK)
        return st;
    for (j = 1; j < s->count; j++) {
        v[s->out + j] = fg_div_and_db(v[numerators[j]], b, &db, &st, derivative_st);
        d[1 + j] = db;
    }
    return st;
}

fg_status fg_replay_forward(const fg_program *P, fg_row_state *state)
{
    double *v = state->value, *d = state->deriv, x = 0.0, unused;
    const fg_step *s = P->steps, *end = P->steps + P->length;
    const fg_micro *m = P->micro;
    fg_status st = FG_OK, derivative_st = FG_OK;
    uint16_t t;
    for (; s < end; s++) {
        switch (s->kind) {
        case FG_STEP_UNARY:
            x = fg_forward_and_derivatives((fg_op)s->op, v[s->a], 0.0, s->c, d, &unused, &st,
                                           &derivative_st);
            d += 1;
            break;
        case FG_STEP_BINARY:
            x = fg_forward_and_derivatives((fg_op)s->op, v[s->a], v[s->b], 0.0, d, d + 1, &st,
                                           &derivative_st);
            d += 2;
            break;
        case FG_STEP_NARY: {
            const uint32_t *args = P->args + s->a;
            uint32_t stride = fg_op_table[s->op].stride, k, count = 1 + s->terms * stride;
            if (s->count + 1 != s->terms)
                continue;   /* the node's value is made by its last run */
            x = v[args[0]];
            for (k = 1; k < count; k += stride)
                x = x + fg_term((fg_op)s->op, v[args[k]], stride > 1 ? v[args[k + 1]] : 0.0);
            break;
        }
        default:
            st = divs_forward(P, s, v, d, &derivative_st);
            d += 1 + s->count;
            if (st != FG_OK)
                return st;
            continue;
        }
        for (t = 0; t < s->tail; t++, m++, d++)
            x = micro_forward(m, x, d, &st, &derivative_st);
        if (FG_UNLIKELY(st != FG_OK))
            return st;
        v[s->out] = x;
    }
    state->pending = derivative_st != FG_OK;
    return FG_OK;
}

/* Terms s->b..s->count of an NARY node whose grad is g, last first (ops.h's rule), with the op
 * a constant in one loop per NARY row of ops.def. */
static inline void nary_backward(const fg_program *P, const fg_step *s, const double *v,
                                 double *grad, double g)
{
    const uint32_t *args = P->args + s->a;
    uint32_t k = s->count + 1;
    switch ((fg_op)s->op) {
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

void fg_replay_backward(const fg_program *P, const fg_row_state *state, size_t leaf_count,
                        double *grad)
{
    const double *v = state->value, *d = state->deriv + P->derivs;
    const fg_micro *m = P->micro + P->micro_length;
    const fg_step *s = P->steps + P->length;
    memset(grad + leaf_count, 0, (P->slots + 1 - leaf_count) * sizeof(double));
    grad[P->root] = 1.0;
    while (s-- > P->steps) {
        double g;
        uint16_t t;
        if (s->kind == FG_STEP_DIVS) {
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
            continue;
        }
        g = grad[s->out];
        d -= s->tail;
        m -= s->tail;
        for (t = s->tail; t-- > 0;)
            g = 0.0 + d[t] * g;     /* a node of the tail: its grad from 0, one contribution */
        switch (s->kind) {
        case FG_STEP_UNARY:
            d -= 1;
            grad[s->a] += d[0] * g;
            break;
        case FG_STEP_BINARY:
            d -= 2;
            grad[s->a] += d[0] * g;
            grad[s->b] += d[1] * g;
            break;
        default:
            nary_backward(P, s, v, grad, g);
        }
    }
}
