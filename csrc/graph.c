/*
 * graph.c: passes over whole graphs. Topological order by an iterative depth-first
 * search, and micrograd's backward over it, bit for bit.
 */
#include <stdlib.h>

#include "arena.h"
#include "ops.h"

fg_status fg_eval(const fg_node *n, double *out)
{
    fg_status st = FG_OK;
    double value;
    fg_op op = (fg_op)n->op;
    switch (fg_kind_of(n)) {
    case FG_KIND_UNARY:
        value = fg_forward(op, n->u.arg[0]->data, 0.0,
                           op == FG_POWC ? n->u.powc.exponent : 0.0, &st);
        break;
    case FG_KIND_BINARY:
        value = fg_forward(op, n->u.arg[0]->data, n->u.arg[1]->data, 0.0, &st);
        break;
    case FG_KIND_NARY: {
        fg_node *const *args = n->u.nary.args;
        uint32_t stride = fg_op_table[op].stride, i;
        value = args[0]->data;
        for (i = 1; i < n->u.nary.count; i += stride)
            value = value + fg_term(op, args[i]->data, stride > 1 ? args[i + 1]->data : 0.0);
        break;
    }
    default:
        value = n->data;
    }
    if (st == FG_OK)
        *out = value;
    return st;
}

/* Term k of an NARY node's backward (ops.h has the rule). */
static inline void nary_term_backward(fg_node *n, uint32_t k)
{
    fg_node *const *args = n->u.nary.args;
    uint32_t stride = fg_op_table[n->op].stride;
    fg_node *v0 = args[1 + k * stride], *v1 = stride > 1 ? args[2 + k * stride] : v0;
    double to_start, to_v0, to_v1;
    fg_nary_term_amounts((fg_op)n->op, k, (n->u.nary.count - 1) / stride, FG_GRAD_READ(n),
                         v0->data, v1->data, &to_start, &to_v0, &to_v1);
    if (k == 0 && FG_WANTS_GRAD(args[0]))
        FG_GRAD_ADD(&args[0]->grad, to_start);
    if (FG_WANTS_GRAD(v0))
        FG_GRAD_ADD(&v0->grad, to_v0);
    if (stride > 1 && FG_WANTS_GRAD(v1))
        FG_GRAD_ADD(&v1->grad, to_v1);
}

/* Whether n's local derivatives can be computed at its operands' current data: backward
 * checks every node first. */
static inline fg_status check_backward(const fg_node *n, fg_kind kind)
{
    fg_status st_a = FG_OK, st_b = FG_OK;
    fg_op op = (fg_op)n->op;
    double d_da, d_db;
    if (!FG_WANTS_GRAD(n))
        return FG_OK;
    if (kind == FG_KIND_UNARY)
        fg_derivatives_apart(op, n->u.arg[0]->data, 0.0,
                             op == FG_POWC ? n->u.powc.exponent : 0.0, n->data, &d_da, &d_db,
                             &st_a, &st_b);
    else if (kind == FG_KIND_BINARY)
        fg_derivatives_apart(op, n->u.arg[0]->data, n->u.arg[1]->data, 0.0, n->data, &d_da,
                             &d_db, &st_a, &st_b);
    else
        return FG_OK;
    /* only the derivatives toward operands that want grads matter */
    if (st_a != FG_OK && FG_WANTS_GRAD(n->u.arg[0]))
        return st_a;
    return kind == FG_KIND_BINARY && FG_WANTS_GRAD(n->u.arg[1]) ? st_b : FG_OK;
}

fg_status fg_node_backward(fg_node *n)
{
    fg_kind kind = fg_kind_of(n);
    fg_status st = check_backward(n, kind);
    uint32_t k;
    if (st != FG_OK || !FG_WANTS_GRAD(n))
        return st;
    if (kind == FG_KIND_NARY)
        for (k = (n->u.nary.count - 1) / fg_op_table[n->op].stride; k-- > 0;)
            nary_term_backward(n, k);
    else
        fg_chain_rule(n);
    return FG_OK;
}

static fg_status grow_stack(fg_arena *A)
{
    size_t capacity = A->stack_capacity ? 2 * A->stack_capacity : 256;
    fg_frame *stack;
    if (capacity > (size_t)-1 / sizeof(fg_frame))
        return FG_NO_MEMORY;
    stack = (fg_frame *)realloc(A->stack, capacity * sizeof(fg_frame));
    if (stack == NULL)
        return FG_NO_MEMORY;
    A->stack = stack;
    A->stack_capacity = capacity;
    return FG_OK;
}

static inline fg_status append(fg_arena *A, fg_node *n)
{
    fg_status st;
    if (A->order.length == A->order.capacity && (st = fg_vec_reserve(&A->order, 1)) != FG_OK)
        return st;
    A->order.items[A->order.length++] = n;
    return FG_OK;
}

/* Called when the first `done` operands of an NARY node have been fully visited: the node
 * takes its place in the order once per term, where the chain's partial sum would. */
static fg_status nary_operand_done(fg_arena *A, fg_node *n, uint32_t done)
{
    uint32_t stride = fg_op_table[n->op].stride, terms;
    fg_status st;
    if (done < 1 + stride || (done - 1) % stride != 0)
        return FG_OK;
    if ((st = append(A, n)) != FG_OK)
        return st;
    terms = (n->u.nary.count - 1) / stride;
    if ((done - 1) / stride == terms)
        *fg_cursor_of(A, n) = terms;                   /* backward runs them last first */
    return FG_OK;
}

/* 1 if this traversal reaches n for the first time (and records that it has), 0 if it has
 * been here, -1 without memory. The arena's own nodes are marked with the traversal's epoch;
 * another thread's nodes go into the traversal's foreign set instead (arena.h). */
static inline int first_visit(fg_arena *A, fg_node *n, uint16_t epoch)
{
#ifdef FG_THREADSAFE
    if (!fg_owned(A, n))
        return fg_foreign_visit(A, n);
#else
    (void)A;
#endif
    if (n->mark == epoch)
        return 0;
    n->mark = epoch;
    return 1;
}

/* Depth-first post-order below root into A->order (arena.h). The frame of the node being
 * visited lives in locals; only its ancestors' frames are on A->stack. */
fg_status fg_order(fg_arena *A, fg_node *root, int check, fg_node **failed)
{
    size_t depth = 0;
    fg_node *n = root;
    fg_node *const *operands;
    uint32_t next = 0, count;
    uint16_t epoch;
    fg_kind kind;
    fg_status st = FG_OK;
    fg_new_epoch(A);
    epoch = A->epoch;
    A->order.length = 0;
    if (first_visit(A, root, epoch) < 0)
        return FG_NO_MEMORY;
    operands = fg_operands_of(root, &count);
    for (;;) {
        if (next < count) {
            fg_node *operand = operands[next++];
            int first = first_visit(A, operand, epoch);
            if (first < 0) {
                st = FG_NO_MEMORY;
                break;
            }
            if (first) {
                fg_frame *f;
                if (depth == A->stack_capacity && (st = grow_stack(A)) != FG_OK)
                    break;
                f = &A->stack[depth++];
                f->node = n;
                f->operands = operands;
                f->next = next;
                f->count = count;
                n = operand;
                operands = fg_operands_of(n, &count);
                next = 0;
            } else if (fg_kind_of(n) == FG_KIND_NARY
                       && (st = nary_operand_done(A, n, next)) != FG_OK) {
                break;
            }
            continue;
        }
        kind = fg_kind_of(n);
        if (check && A->may_fail[n->op] && (st = check_backward(n, kind)) != FG_OK) {
            if (failed != NULL)
                *failed = n;
            break;
        }
        if (kind != FG_KIND_NARY && (st = append(A, n)) != FG_OK)
            break;
        if (depth == 0)
            break;
        depth--;
        n = A->stack[depth].node;
        operands = A->stack[depth].operands;
        next = A->stack[depth].next;
        count = A->stack[depth].count;
        if (fg_kind_of(n) == FG_KIND_NARY && (st = nary_operand_done(A, n, next)) != FG_OK)
            break;
    }
    if (st != FG_OK)
        A->order.length = 0;
    return st;
}

fg_status fg_topo(fg_arena *A, fg_node *root, fg_node *const **order, size_t *length)
{
    fg_status st = fg_order(A, root, 0, NULL);
    if (st == FG_OK) {
        *order = A->order.items;
        *length = A->order.length;
    }
    return st;
}

fg_status fg_backward(fg_arena *A, fg_node *root, fg_node **failed)
{
    fg_node **order;
    size_t i;
    fg_status st = fg_order(A, root, 1, failed);
    if (st != FG_OK)
        return st;
    order = A->order.items;
    FG_GRAD_SET(root, 1.0);
    for (i = A->order.length; i-- > 0;) {
        fg_node *n = order[i];
        if (fg_kind_of(n) == FG_KIND_NARY) {
            uint32_t k = --*fg_cursor_of(A, n);
            if (FG_WANTS_GRAD(n))
                nary_term_backward(n, k);
        } else if (FG_WANTS_GRAD(n)) {
            fg_chain_rule(n);
        }
    }
    return FG_OK;
}
