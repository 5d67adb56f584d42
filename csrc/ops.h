/*
 * ops.h: the rules of ops.def as inline C, for the passes in ops.c and graph.c.
 *
 * The helpers behave exactly like Python's float division and math module functions:
 * they return what Python would return, and where Python would raise they record the
 * status in *st (the first failure wins) instead. Everything is plain IEEE double
 * arithmetic, one operation at a time, so with -ffp-contract=off the results are the
 * bits the pure-Python reference computes.
 */
#ifndef FASTGRAD_OPS_H
#define FASTGRAD_OPS_H

#include <math.h>

#include "fastgrad.h"

/* What the table says of each op, beyond its formulas. */
typedef struct fg_op_info {
    const char *symbol;
    fg_kind kind;
    uint32_t stride;                /* NARY: operands per term */
    const char *derivatives;        /* the derivative formulas' text, to see which can fail */
} fg_op_info;

extern const fg_op_info fg_op_table[FG_OP_COUNT];

static inline fg_kind fg_kind_of(const fg_node *n)
{
    return fg_op_table[n->op].kind;
}

/* The operands of n, in order, and their number. */
static inline fg_node *const *fg_operands_of(const fg_node *n, uint32_t *count)
{
    switch (fg_kind_of(n)) {
    case FG_KIND_UNARY:
        *count = 1;
        return n->u.arg;
    case FG_KIND_BINARY:
        *count = 2;
        return n->u.arg;
    case FG_KIND_NARY:
    case FG_KIND_OPAQUE:
        *count = n->u.nary.count;
        return n->u.nary.args;
    default:
        *count = 0;
        return n->u.arg;
    }
}

static inline void fg_fail(fg_status *st, fg_status why)
{
    if (*st == FG_OK)
        *st = why;
}

/* x / y as Python computes it for floats. */
static inline double fg_div(double x, double y, fg_status *st)
{
    if (y == 0.0) {
        fg_fail(st, FG_ZERO_DIVISION);
        return 0.0;
    }
    return x / y;
}

/* math.pow(x, y) as CPython 3.11+ computes it: IEEE specials first, then libm. */
static inline double fg_pow(double x, double y, fg_status *st)
{
    double r;
    if (!isfinite(x) || !isfinite(y)) {
        if (isnan(x))
            return y == 0.0 ? 1.0 : x;
        if (isnan(y))
            return x == 1.0 ? 1.0 : y;
        if (isinf(x)) {
            int odd_y = isfinite(y) && fmod(fabs(y), 2.0) == 1.0;
            if (y > 0.0)
                return odd_y ? x : fabs(x);
            if (y == 0.0)
                return 1.0;
            return odd_y ? copysign(0.0, x) : 0.0;
        }
        if (fabs(x) == 1.0)
            return 1.0;
        if (y > 0.0 && fabs(x) > 1.0)
            return y;
        if (y < 0.0 && fabs(x) < 1.0)
            return -y;
        return 0.0;
    }
    r = pow(x, y);
    if (isnan(r))
        fg_fail(st, FG_DOMAIN_ERROR);           /* a negative base, a fractional exponent */
    else if (isinf(r))
        fg_fail(st, x == 0.0 ? FG_DOMAIN_ERROR : FG_RANGE_ERROR); /* 0 ** -y, or overflow */
    return r;
}

/* math.exp(x): overflow of a finite x raises. */
static inline double fg_exp(double x, fg_status *st)
{
    double r = exp(x);
    if (isinf(r) && isfinite(x))
        fg_fail(st, FG_RANGE_ERROR);
    return r;
}

/* math.log(x): zero, negatives and -inf are outside the domain. */
static inline double fg_log(double x, fg_status *st)
{
    if (isnan(x) || x == INFINITY)
        return x;
    if (x > 0.0)
        return log(x);
    fg_fail(st, FG_DOMAIN_ERROR);
    return NAN;
}

/* math.sqrt(x): below zero (not -0.0, whose root is -0.0) is outside the domain. */
static inline double fg_sqrt(double x, fg_status *st)
{
    if (x < 0.0) {
        fg_fail(st, FG_DOMAIN_ERROR);
        return NAN;
    }
    return sqrt(x);
}

/* math.sin(x), math.cos(x): the infinities are outside the domain. */
static inline double fg_sin(double x, fg_status *st)
{
    if (isinf(x)) {
        fg_fail(st, FG_DOMAIN_ERROR);
        return NAN;
    }
    return sin(x);
}

static inline double fg_cos(double x, fg_status *st)
{
    if (isinf(x)) {
        fg_fail(st, FG_DOMAIN_ERROR);
        return NAN;
    }
    return cos(x);
}

/* a as an index into b classes, as a list index: a whole number from 0 to b - 1. */
static inline double fg_class_index(double a, double b, fg_status *st)
{
    if (!(a >= 0.0 && a < b && a == floor(a)))
        fg_fail(st, FG_INDEX_ERROR);
    return a;
}

/* log(1 + exp(x)) in the form that cannot overflow: exp is only taken of x <= 0. */
static inline double fg_softplus(double x)
{
    if (x > 0.0)
        return x + log1p(exp(-x));
    return log1p(exp(x));
}

/* The logistic function, in the form that cannot overflow for either sign of x. */
static inline double fg_sigmoid(double x)
{
    double e;
    if (x >= 0.0)
        return 1.0 / (1.0 + exp(-x));
    e = exp(x);
    return e / (1.0 + e);
}

/* Whether op is a choice made from data (ops.def's FG_CHOICE_* rows): its nodes carry no
 * gradient, whatever their operands. */
static inline int fg_op_is_choice(fg_op op)
{
    switch (op) {
#define FG_UNARY(name, symbol, forward, d_da)
#define FG_BINARY(name, symbol, forward, d_da, d_db)
#define FG_CHOICE_UNARY(name, symbol, forward) case FG_##name:
#define FG_CHOICE_BINARY(name, symbol, forward) case FG_##name:
#include "ops.def"
        return 1;
    default:
        return 0;
    }
}

/* The vocabulary of ops.def's formulas, as doubles: a pass that expands them has a
 * `fg_status *st` in scope, where a failing helper records why. derive.c defines the same
 * names over nodes. */
#define NUM(x) (x)
#define DATA(x) (x)
#define IF(cond, x, y) ((cond) ? (x) : (y))
#define NEG(x) (-(x))
#define ADD(x, y) ((x) + (y))
#define SUB(x, y) ((x) - (y))
#define MUL(x, y) ((x) * (y))
#define DIV(x, y) fg_div((x), (y), st)
#define POW(x, y) fg_pow((x), (y), st)
#define EXP(x) fg_exp((x), st)
#define LOG(x) fg_log((x), st)
#define SQRT(x) fg_sqrt((x), st)
#define SIN(x) fg_sin((x), st)
#define COS(x) fg_cos((x), st)
#define CLASS_INDEX(x, y) fg_class_index((x), (y), st)
#define SIGMOID(x) fg_sigmoid(x)
#define SOFTPLUS(x) fg_softplus(x)
#define SIGN(x) ((x) > 0.0 ? 1.0 : (x) < 0.0 ? -1.0 : 0.0)
#define ISFINITE(x) (isfinite(x) ? 1.0 : 0.0)
#define ISZERO(x) ((x) == 0.0 ? 1.0 : 0.0)
#define PICKS_A(x, y) ((x) >= (y) || (x) != (x) ? 1.0 : 0.0)

/* The helpers above that can fail, by name: a derivative formula of ops.def that calls one is
 * checked before backward adds anything (fg_derivative_may_fail reads the formulas' text). */
#define FG_FALLIBLE_HELPERS {"DIV(", "POW(", "EXP(", "LOG(", "SQRT(", "SIN(", "COS("}

/* Forward rule of a unary or binary op at operand values a, b; c is POWC's exponent. */
static inline double fg_forward(fg_op op, double a, double b, double c, fg_status *st)
{
    (void)b;
    (void)c;
    switch (op) {
#define FG_UNARY(name, symbol, forward, d_da) \
    case FG_##name: return (forward);
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
    case FG_##name: return (forward);
#include "ops.def"
    default:
        fg_fail(st, FG_BAD_ARGUMENT);
        return 0.0;
    }
}

/* Local derivatives d out/d a, d out/d b of a unary or binary op (d_db is 0 for unary),
 * each one's failure in a status of its own (st_a for d/da, st_b for d/db), for a backward
 * that wants only some of them. */
static inline void fg_derivatives_apart(fg_op op, double a, double b, double c, double out,
                                        double *da, double *db, fg_status *st_a,
                                        fg_status *st_b)
{
    fg_status *st = st_a;
    (void)a;
    (void)b;
    (void)c;
    (void)out;
    switch (op) {
#define FG_UNARY(name, symbol, forward, d_da) \
    case FG_##name: *da = (d_da); *db = 0.0; return;
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
    case FG_##name: *da = (d_da); st = st_b; *db = (d_db); return;
#include "ops.def"
    default:
        *da = *db = 0.0;
        fg_fail(st, FG_BAD_ARGUMENT);
    }
}

/* The forward rule and the local derivatives together, for a tape's forward: a failing
 * forward sets *forward_st, a failing derivative only *derivative_st (backward raises it
 * later). One case per row of ops.def, like fg_chain_rule: two switches cost a replay a
 * fifth of its time. */
static inline double fg_forward_and_derivatives(fg_op op, double a, double b, double c,
                                                double *da, double *db,
                                                fg_status *forward_st,
                                                fg_status *derivative_st)
{
    fg_status *st = forward_st; /* the status DIV, POW, EXP and LOG report to */
    double out;
    (void)b;
    (void)c;
    switch (op) {
#define FORWARD_CASE(name, forward, d_da, d_db) \
    case FG_##name: \
        out = (forward); \
        if (*st != FG_OK) \
            return out; \
        st = derivative_st; \
        *da = (d_da); \
        *db = (d_db); \
        return out;
#define FG_UNARY(name, symbol, forward, d_da) FORWARD_CASE(name, forward, d_da, 0.0)
#define FG_BINARY(name, symbol, forward, d_da, d_db) FORWARD_CASE(name, forward, d_da, d_db)
#include "ops.def"
#undef FORWARD_CASE
    default:
        fg_fail(st, FG_BAD_ARGUMENT);
        return 0.0;
    }
}

/* Each binary row's formulas as functions of their own, fg_forward_NAME, fg_d_da_NAME and
 * fg_d_db_NAME, for the passes that fuse nodes of one op (replay.c's groups of divisions). */
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
    static inline double fg_forward_##name(double a, double b, fg_status *st) \
    { \
        (void)a; (void)b; (void)st; \
        return (forward); \
    } \
    static inline double fg_d_da_##name(double a, double b, double out, fg_status *st) \
    { \
        (void)a; (void)b; (void)out; (void)st; \
        return (d_da); \
    } \
    static inline double fg_d_db_##name(double a, double b, double out, fg_status *st) \
    { \
        (void)a; (void)b; (void)out; (void)st; \
        return (d_db); \
    }
#include "ops.def"

/* a / b and d(a / b)/db, for a division whose d/da (which DIV's row computes from b alone)
 * another division by the same b has computed already. */
static inline double fg_div_and_db(double a, double b, double *db, fg_status *st,
                                   fg_status *derivative_st)
{
    double out = fg_forward_DIV(a, b, st);
    *db = fg_d_db_DIV(a, b, out, derivative_st);
    return out;
}

/* n's local chain rule, for a unary or binary node whose derivatives backward has already
 * checked: one case per row of ops.def, each computing its derivatives and adding them in
 * place (a shared tail for all ops costs the loop a third of its speed on some CPUs). */
static inline void fg_chain_rule(fg_node *n)
{
    fg_status unchecked = FG_OK, *st = &unchecked;
    double g = FG_GRAD_READ(n);
    switch ((fg_op)n->op) {
#define FG_UNARY(name, symbol, forward, d_da) \
    case FG_##name: { \
        double a = n->u.arg[0]->data, b = 0.0, out = n->data; \
        double c = FG_##name == FG_POWC ? n->u.powc.exponent : 0.0; \
        (void)a; (void)b; (void)c; (void)out; \
        if (FG_WANTS_GRAD(n->u.arg[0])) \
            FG_GRAD_ADD(&n->u.arg[0]->grad, (d_da) * g); \
        return; \
    }
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
    case FG_##name: { \
        double a = n->u.arg[0]->data, b = n->u.arg[1]->data, c = 0.0, out = n->data; \
        double da = (d_da), db = (d_db); \
        (void)a; (void)b; (void)c; (void)out; \
        if (FG_WANTS_GRAD(n->u.arg[0])) \
            FG_GRAD_ADD(&n->u.arg[0]->grad, da * g); \
        if (FG_WANTS_GRAD(n->u.arg[1])) \
            FG_GRAD_ADD(&n->u.arg[1]->grad, db * g); \
        return; \
    }
#include "ops.def"
    default:
        (void)st;
        return;
    }
}

/* One term of an NARY op over its operand values v0 (and v1 when the stride is 2). */
static inline double fg_term(fg_op op, double v0, double v1)
{
    (void)v1;
    switch (op) {
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
    case FG_##name: return (term);
#include "ops.def"
    default:
        return 0.0;
    }
}

/* The derivatives of one term of an NARY op with respect to its operands. */
static inline void fg_term_derivatives(fg_op op, double v0, double v1, double *dv0,
                                       double *dv1)
{
    (void)v0;
    (void)v1;
    switch (op) {
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
    case FG_##name: *dv0 = (d_dv0); *dv1 = (d_dv1); return;
#include "ops.def"
    default:
        *dv0 = *dv1 = 0.0;
    }
}

/* Operands per term of an NARY op: a constant wherever op is one. */
static inline uint32_t fg_stride(fg_op op)
{
    switch (op) {
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
    case FG_##name: return (stride);
#include "ops.def"
    default:
        return 0;
    }
}

/* Term k (of `terms`) of an NARY node's backward, g being the node's grad: what the chain of
 * + (and * for stride 2) that the node replaces does between its partial sums s_k and
 * s_k+1. The chain's last partial sum is the node itself; every earlier one, and every
 * product term, is a fresh node whose grad starts at 0.0 and receives one addition, so it
 * holds 0.0 + g. v0, v1 are the term's operands. The amounts it adds: to the start's grad
 * (term 0 only: s_1 = start + term 0), then to v0's and v1's.
 * Written in ops.def's vocabulary, so that the float backward (fg_nary_term_amounts, below)
 * and the graph-building one (derive.c) expand one rule: T is the type of a derivative value,
 * TERM_DERIVATIVES(op, v0, v1, &d_dv0, &d_dv1) the row's term derivatives in that type, and
 * want_v0 / want_v1 say whether the pass needs those amounts (NUM(0.0) otherwise). */
#define FG_NARY_TERM_RULE(T, TERM_DERIVATIVES, op, k, terms, g, v0, v1, want_v0, want_v1, \
                          to_start, to_v0, to_v1) \
    do { \
        T sum_grad_ = (k) + 1 == (terms) ? (g) : ADD(NUM(0.0), (g)); /* the grad of s_k+1 */ \
        T d_dv0_, d_dv1_; \
        TERM_DERIVATIVES((op), (v0), (v1), &d_dv0_, &d_dv1_); \
        *(to_start) = MUL(NUM(1.0), sum_grad_); \
        if (fg_stride(op) == 1) { \
            *(to_v0) = (want_v0) ? MUL(d_dv0_, MUL(NUM(1.0), sum_grad_)) : NUM(0.0); \
            *(to_v1) = NUM(0.0); \
        } else { \
            T term_grad_ = ADD(NUM(0.0), MUL(NUM(1.0), sum_grad_)); /* the product's grad */ \
            *(to_v0) = (want_v0) ? MUL(d_dv0_, term_grad_) : NUM(0.0); \
            *(to_v1) = (want_v1) ? MUL(d_dv1_, term_grad_) : NUM(0.0); \
        } \
    } while (0)

/* The amounts of that rule, as doubles. */
static inline void fg_nary_term_amounts(fg_op op, uint32_t k, uint32_t terms, double g,
                                        double v0, double v1, double *to_start, double *to_v0,
                                        double *to_v1)
{
    FG_NARY_TERM_RULE(double, fg_term_derivatives, op, k, terms, g, v0, v1, 1, 1, to_start,
                      to_v0, to_v1);
}

/* The same term's backward, added in that order into the grads given. */
static inline void fg_nary_term_backward(fg_op op, uint32_t k, uint32_t terms, double g,
                                         double v0, double v1, double *start_grad,
                                         double *g0, double *g1)
{
    double to_start, to_v0, to_v1;
    fg_nary_term_amounts(op, k, terms, g, v0, v1, &to_start, &to_v0, &to_v1);
    if (k == 0)
        *start_grad += to_start;
    *g0 += to_v0;
    if (fg_stride(op) > 1)
        *g1 += to_v1;
}

#endif /* FASTGRAD_OPS_H */
