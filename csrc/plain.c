/*
 * plain.c: the plain program, replayed exactly as the eager backward's order has it.
 *
 * This is the definition the step program's executors are held to, and the path that every
 * rare case takes: it names the rule that failed (the first in eager order, with its operand
 * values), and it computes every node's data and grad for sync(). It touches no node: the
 * leaves' values and grads come in as arrays.
 */
#include <stdlib.h>
#include <string.h>

#include "tape.h"

fg_status fg_plain_prepare(fg_tape *T)
{
    fg_plain_state *p;
    size_t i;
    if (T->plain != NULL)
        return FG_OK;
    if ((p = (fg_plain_state *)calloc(1, sizeof *p)) == NULL)
        return FG_NO_MEMORY;
    p->value = (double *)malloc((T->slots + 1) * sizeof(double));
    p->grad = (double *)malloc((T->slots + 1) * sizeof(double));
    p->deriv = (double *)malloc((2 * T->length + 1) * sizeof(double));
    if (!p->value || !p->grad || !p->deriv) {
        free(p->value);
        free(p->grad);
        free(p->deriv);
        free(p);
        return FG_NO_MEMORY;
    }
    for (i = 0; i < T->slots; i++)
        p->value[i] = T->nodes[i]->data;    /* the constants keep the data they had */
    p->value[T->slots] = 0.0;               /* the sink: a unary op's second operand */
    T->plain = p;
    return FG_OK;
}

static void note_failure(fg_failure *f, fg_status st, const fg_instr *ins, const double *v)
{
    f->status = st;
    f->slot = ins->out;
    f->operands[0] = v[ins->a];
    f->operands[1] = ins->kind == FG_KIND_BINARY ? v[ins->b] : 0.0;
}

/* The failure of ins's derivatives that eager backward would meet: none toward an operand
 * that requires no grad, none at all for a node that requires none. */
static fg_status counted_failure(const fg_tape *T, const fg_instr *ins, const double *v)
{
    fg_status st_a = FG_OK, st_b = FG_OK;
    double da, db;
    if (!FG_WANTS_GRAD(T->nodes[ins->out]))
        return FG_OK;
    fg_derivatives_apart((fg_op)ins->op, v[ins->a], v[ins->b], ins->u.c, v[ins->out], &da, &db,
                         &st_a, &st_b);
    if (st_a != FG_OK && FG_WANTS_GRAD(T->nodes[ins->a]))
        return st_a;
    return ins->kind == FG_KIND_BINARY && FG_WANTS_GRAD(T->nodes[ins->b]) ? st_b : FG_OK;
}

/* An NARY node's value, computed whole at its last term, when every operand is. */
static void nary_forward(const fg_tape *T, const fg_instr *ins, double *v)
{
    const uint32_t *args = &T->args[ins->a + 1];
    uint32_t count = T->args[ins->a], stride = ins->stride, k;
    double acc;
    if (ins->u.run.last + 1 != ins->u.run.terms)
        return;
    acc = v[args[0]];
    for (k = 1; k < count; k += stride)
        acc = acc + fg_term((fg_op)ins->op, v[args[k]], stride > 1 ? v[args[k + 1]] : 0.0);
    v[ins->out] = acc;
}

/* Where the forward at instruction `at` failed with st: of all the nodes whose forward fails
 * in this row, the failure of the one created first, which is where eager code stops. Its
 * operands were created before it and did not fail, so its failure is a true one; the rest
 * of the program is evaluated on whatever the failed nodes left. */
static void first_created_failure(fg_tape *T, size_t at, fg_status st)
{
    double *v = T->plain->value, *dv = T->plain->deriv;
    size_t i;
    note_failure(&T->failed, st, &T->code[at], v);
    for (i = at + 1; i < T->length; i++) {
        const fg_instr *ins = &T->code[i];
        fg_status later = FG_OK, derivative_st = FG_OK;
        if (ins->kind == FG_KIND_NARY) {
            nary_forward(T, ins, v);
            continue;
        }
        v[ins->out] = fg_forward_and_derivatives((fg_op)ins->op, v[ins->a], v[ins->b], ins->u.c,
                                                 &dv[2 * i], &dv[2 * i + 1], &later,
                                                 &derivative_st);
        if (later != FG_OK && T->nodes[ins->out]->serial < T->nodes[T->failed.slot]->serial)
            note_failure(&T->failed, later, ins, v);
    }
}

fg_status fg_plain_forward(fg_tape *T, const double *leaves)
{
    fg_plain_state *p = T->plain;
    double *v = p->value, *dv = p->deriv;
    size_t i;
    memcpy(v, leaves, T->leaf_count * sizeof(double));
    p->pending.status = FG_OK;
    for (i = 0; i < T->length; i++) {
        const fg_instr *ins = &T->code[i];
        fg_op op = (fg_op)ins->op;
        fg_status st = FG_OK, derivative_st = FG_OK;
        if (ins->kind == FG_KIND_NARY) {
            nary_forward(T, ins, v);
            continue;
        }
        v[ins->out] = fg_forward_and_derivatives(op, v[ins->a], v[ins->b], ins->u.c, &dv[2 * i],
                                                 &dv[2 * i + 1], &st, &derivative_st);
        if (FG_UNLIKELY((st | derivative_st) != FG_OK)) {
            if (st != FG_OK) {
                first_created_failure(T, i, st);
                return T->failed.status;
            }
            if (p->pending.status == FG_OK && (derivative_st = counted_failure(T, ins, v)))
                note_failure(&p->pending, derivative_st, ins, v);
        }
    }
    return FG_OK;
}

/* A slot's grad, or the sink's for a node that requires no grad (what goes there is lost). */
#define WANTED(slot) (FG_WANTS_GRAD(T->nodes[slot]) ? (slot) : (uint32_t)T->slots)

/* Terms b..last of an NARY node, last first: ops.h's fg_nary_term_backward, called with
 * the op as a constant in one loop per NARY row of ops.def, so that each loop is compiled
 * for its own row (the op's switch once per run, not once per term). */
static inline void nary_run_backward(const fg_tape *T, const fg_instr *ins, const double *v,
                                     double *g, double gout)
{
    const uint32_t *args = &T->args[ins->a + 1];
    uint32_t k = ins->u.run.last + 1, terms = ins->u.run.terms;
    switch ((fg_op)ins->op) {
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
    case FG_##name: \
        while (k-- > ins->b) { \
            uint32_t v0 = args[1 + k * (stride)], v1 = args[(stride) > 1 ? 2 + k * (stride) : 1 + k]; \
            fg_nary_term_backward(FG_##name, k, terms, gout, v[v0], v[v1], &g[WANTED(args[0])], \
                                  &g[WANTED(v0)], &g[WANTED(v1)]); \
        } \
        return;
#include "ops.def"
    default:
        return;
    }
}

fg_status fg_plain_backward(fg_tape *T, const double *leaf_grads)
{
    fg_plain_state *p = T->plain;
    const double *v = p->value, *dv = p->deriv;
    double *g = p->grad;
    size_t i;
    if (p->pending.status != FG_OK) {
        T->failed = p->pending;
        return T->failed.status;
    }
    memcpy(g, leaf_grads, T->leaf_count * sizeof(double));
    /* interior nodes and constants from 0, as on a graph built afresh */
    memset(g + T->leaf_count, 0, (T->slots + 1 - T->leaf_count) * sizeof(double));
    g[T->root] = T->seed;
    for (i = T->length; i-- > 0;) {
        const fg_instr *ins = &T->code[i];
        double gout = g[ins->out];
        if (!FG_WANTS_GRAD(T->nodes[ins->out]))
            continue;   /* as eager backward: nothing from a node that requires no grad */
        if (ins->kind == FG_KIND_BINARY) {
            if (FG_WANTS_GRAD(T->nodes[ins->a]))
                g[ins->a] += dv[2 * i] * gout;
            if (FG_WANTS_GRAD(T->nodes[ins->b]))
                g[ins->b] += dv[2 * i + 1] * gout;
        } else if (ins->kind == FG_KIND_UNARY) {
            if (FG_WANTS_GRAD(T->nodes[ins->a]))
                g[ins->a] += dv[2 * i] * gout;
        } else {
            nary_run_backward(T, ins, v, g, gout);
        }
    }
    return FG_OK;
}
