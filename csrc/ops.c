/*
 * ops.c: the op table's facts, and the eager pass: making a node computes its forward
 * value by the table's rule, and allocates only once that has succeeded.
 */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ops.h"

const fg_op_info fg_op_table[FG_OP_COUNT] = {
#define FG_LEAF(name, symbol) {symbol, FG_KIND_LEAF, 0, ""},
#define FG_UNARY(name, symbol, forward, d_da) {symbol, FG_KIND_UNARY, 0, #d_da},
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
    {symbol, FG_KIND_BINARY, 0, #d_da " " #d_db},
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
    {symbol, FG_KIND_NARY, stride, #d_dv0 " " #d_dv1},
#define FG_OPAQUE(name, symbol) {symbol, FG_KIND_OPAQUE, 0, ""},
#include "ops.def"
};

int fg_derivative_may_fail(fg_op op)
{
    static const char *const fallible[] = FG_FALLIBLE_HELPERS;
    size_t i;
    for (i = 0; i < sizeof fallible / sizeof fallible[0]; i++)
        if (strstr(fg_op_table[op].derivatives, fallible[i]) != NULL)
            return 1;
    return 0;
}

const char *fg_op_symbol(fg_op op)
{
    return (unsigned)op < FG_OP_COUNT ? fg_op_table[op].symbol : "?";
}

fg_kind fg_op_kind(fg_op op)
{
    return (unsigned)op < FG_OP_COUNT ? fg_op_table[op].kind : FG_KIND_LEAF;
}

uint32_t fg_op_stride(fg_op op)
{
    return (unsigned)op < FG_OP_COUNT ? fg_op_table[op].stride : 0;
}

fg_node *const *fg_operands(const fg_node *n, uint32_t *count)
{
    return fg_operands_of(n, count);
}

static fg_node *new_node(fg_arena *A, fg_op op, double data)
{
    fg_node *n = fg_alloc(A);
    if (n != NULL) {
        n->op = (uint8_t)op;
        n->data = data;
    }
    return n;
}

/* n requires no grad when its operands require none, numbers (constants) aside. */
static void inherit_no_grad(fg_node *n, fg_node *const *operands, uint32_t count)
{
    uint32_t i;
    int any = 0;
    uint8_t chosen = 0;
    if (fg_op_is_choice((fg_op)n->op)) {     /* a number chosen from data: no gradient */
        n->flags |= FG_NO_GRAD | FG_CHOSEN;
        return;
    }
    if (count <= 2 && !((operands[0]->flags | operands[count - 1]->flags) & FG_NO_GRAD))
        return;     /* the common case, at the cost of one test */
    for (i = 0; i < count; i++) {
        if (operands[i]->flags & FG_NO_GRAD)
            any = 1;
        else if (!(operands[i]->flags & FG_CONSTANT))
            return;
        chosen |= operands[i]->flags & FG_CHOSEN;
    }
    if (any)
        n->flags |= FG_NO_GRAD | chosen;
}

fg_status fg_new_leaf(fg_arena *A, double data, fg_node **out)
{
    fg_node *n = new_node(A, FG_LEAF, data);
    if (n == NULL)
        return FG_NO_MEMORY;
    n->u.arg[0] = n->u.arg[1] = NULL;
    *out = n;
    return FG_OK;
}

static fg_status new_unary(fg_arena *A, fg_op op, fg_node *a, double c, fg_node **out)
{
    fg_status st = FG_OK;
    double data = fg_forward(op, a->data, 0.0, c, &st);
    fg_node *n;
    if (st != FG_OK)
        return st;
    if ((n = new_node(A, op, data)) == NULL)
        return FG_NO_MEMORY;
    n->u.arg[0] = a;
    if (op == FG_POWC)
        n->u.powc.exponent = c;
    else
        n->u.arg[1] = NULL;
    fg_incref(a);
    inherit_no_grad(n, &a, 1);
    *out = n;
    return FG_OK;
}

fg_status fg_new_unary(fg_arena *A, fg_op op, fg_node *a, fg_node **out)
{
    if (fg_op_kind(op) != FG_KIND_UNARY || op == FG_POWC)
        return FG_BAD_ARGUMENT;
    return new_unary(A, op, a, 0.0, out);
}

fg_status fg_new_powc(fg_arena *A, fg_node *a, double exponent, fg_node **out)
{
    return new_unary(A, FG_POWC, a, exponent, out);
}

fg_status fg_new_constant(fg_arena *A, double data, fg_node **out)
{
    fg_status st = fg_new_leaf(A, data, out);
    if (st == FG_OK)
        (*out)->flags |= FG_CONSTANT;
    return st;
}

static inline int is_binary(fg_op op)
{
    return (unsigned)op < FG_OP_COUNT && fg_op_table[op].kind == FG_KIND_BINARY;
}

/* The hottest constructor (every a + b): its rule and helpers inlined, whatever the
 * compiler's size heuristics say now that the table has grown. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((flatten))
#endif
fg_status fg_new_binary(fg_arena *A, fg_op op, fg_node *a, fg_node *b, fg_node **out)
{
    fg_status st = FG_OK;
    double data;
    fg_node *n;
    if (!is_binary(op))
        return FG_BAD_ARGUMENT;
    data = fg_forward(op, a->data, b->data, 0.0, &st);
    if (st != FG_OK)
        return st;
    if ((n = new_node(A, op, data)) == NULL)
        return FG_NO_MEMORY;
    n->u.arg[0] = a;
    n->u.arg[1] = b;
    fg_incref(a);
    fg_incref(b);
    inherit_no_grad(n, n->u.arg, 2);
    *out = n;
    return FG_OK;
}

fg_status fg_new_binary_number(fg_arena *A, fg_op op, fg_node *a, double x, int number_first,
                               fg_node **out)
{
    fg_status st = FG_OK;
    double data;
    fg_node *n, *constant;
    if (!is_binary(op))
        return FG_BAD_ARGUMENT;
    data = number_first ? fg_forward(op, x, a->data, 0.0, &st)
                        : fg_forward(op, a->data, x, 0.0, &st);
    if (st != FG_OK)
        return st;
    if ((constant = new_node(A, FG_LEAF, x)) == NULL)
        return FG_NO_MEMORY;
    if ((n = new_node(A, op, data)) == NULL) {
        fg_decref(A, constant);
        return FG_NO_MEMORY;
    }
    constant->u.arg[0] = constant->u.arg[1] = NULL;
    constant->flags = FG_CONSTANT;
    n->u.arg[number_first ? 1 : 0] = a;
    n->u.arg[number_first ? 0 : 1] = constant;  /* the leaf's one reference is n's */
    fg_incref(a);
    inherit_no_grad(n, &a, 1);
    *out = n;
    return FG_OK;
}

/* A node owning a copy of the operand list, each operand referenced once per position. */
static fg_status new_list_node(fg_arena *A, fg_op op, double data, fg_node *const *args,
                               uint32_t count, fg_node **out)
{
    fg_node **copy = NULL;
    fg_node *n;
    uint32_t i;
    if (count > 0) {
        copy = (fg_node **)malloc((size_t)count * sizeof(fg_node *));
        if (copy == NULL)
            return FG_NO_MEMORY;
    }
    if ((n = new_node(A, op, data)) == NULL) {
        free(copy);
        return FG_NO_MEMORY;
    }
    for (i = 0; i < count; i++) {
        copy[i] = args[i];
        fg_incref(args[i]);
    }
    n->u.nary.args = copy;
    n->u.nary.count = count;
    n->u.nary.cursor = 0;
    A->operand_bytes += (size_t)count * sizeof(fg_node *);
    *out = n;
    return FG_OK;
}

fg_status fg_new_nary(fg_arena *A, fg_op op, fg_node *const *args, uint32_t count,
                      fg_node **out)
{
    uint32_t stride = fg_op_stride(op), i;
    double acc;
    if (fg_op_kind(op) != FG_KIND_NARY || count < 1 + stride || (count - 1) % stride != 0)
        return FG_BAD_ARGUMENT;
    fg_status st;
    acc = args[0]->data;
    for (i = 1; i < count; i += stride)
        acc = acc + fg_term(op, args[i]->data, stride > 1 ? args[i + 1]->data : 0.0);
    if ((st = new_list_node(A, op, acc, args, count, out)) == FG_OK)
        inherit_no_grad(*out, args, count);
    return st;
}

fg_status fg_new_opaque(fg_arena *A, double data, fg_node *const *args, uint32_t count,
                        fg_node **out)
{
    return new_list_node(A, FG_OPAQUE, data, args, count, out);
}

fg_status fg_new_node(fg_arena *A, fg_op op, double data, fg_node *const *args, uint32_t count,
                      double exponent, fg_node **out)
{
    fg_node *n;
    uint32_t stride;
    switch (fg_op_kind(op)) {
    case FG_KIND_LEAF:
        if ((unsigned)op >= FG_OP_COUNT || count != 0)
            return FG_BAD_ARGUMENT;
        return fg_new_leaf(A, data, out);
    case FG_KIND_UNARY:
    case FG_KIND_BINARY:
        if (count != (fg_op_kind(op) == FG_KIND_UNARY ? 1u : 2u))
            return FG_BAD_ARGUMENT;
        if ((n = new_node(A, op, data)) == NULL)
            return FG_NO_MEMORY;
        n->u.arg[0] = args[0];
        fg_incref(args[0]);
        if (count == 2) {
            n->u.arg[1] = args[1];
            fg_incref(args[1]);
        } else if (op == FG_POWC) {
            n->u.powc.exponent = exponent;
        } else {
            n->u.arg[1] = NULL;
        }
        inherit_no_grad(n, args, count);
        *out = n;
        return FG_OK;
    case FG_KIND_NARY: {
        fg_status st;
        stride = fg_op_stride(op);
        if (count < 1 + stride || (count - 1) % stride != 0)
            return FG_BAD_ARGUMENT;
        if ((st = new_list_node(A, op, data, args, count, out)) == FG_OK)
            inherit_no_grad(*out, args, count);
        return st;
    }
    default:
        return new_list_node(A, op, data, args, count, out);
    }
}
