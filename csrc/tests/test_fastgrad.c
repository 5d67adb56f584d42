/*
 * test_fastgrad.c: the C library's own tests. Built and run by tests/test_c_library.py,
 * plainly and under -fsanitize=address,undefined. Exits 0 when every check passes.
 * Usage: test_fastgrad [chain_length]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastgrad.h"
#include "rows.h"

static int failures = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static int same_bits(double x, double y)
{
    return memcmp(&x, &y, sizeof x) == 0;
}

static fg_arena *A;

static fg_node *leaf(double x)
{
    fg_node *n = NULL;
    CHECK(fg_new_leaf(A, x, &n) == FG_OK);
    return n;
}

/* Binary op on two handles; the result is a new handle. Operands stay owned by the caller. */
static fg_node *bin(fg_op op, fg_node *a, fg_node *b)
{
    fg_node *n = NULL;
    CHECK(fg_new_binary(A, op, a, b, &n) == FG_OK);
    return n;
}

/* Binary op with a number on the right, as Value * 2.0 does it: a constant leaf. */
static fg_node *bin_c(fg_op op, fg_node *a, double c)
{
    fg_node *k = leaf(c), *n = bin(op, a, k);
    fg_decref(A, k);
    return n;
}

static fg_node *bin_c_left(fg_op op, double c, fg_node *b)
{
    fg_node *k = leaf(c), *n = bin(op, k, b);
    fg_decref(A, k);
    return n;
}

static fg_node *un(fg_op op, fg_node *a)
{
    fg_node *n = NULL;
    CHECK(fg_new_unary(A, op, a, &n) == FG_OK);
    return n;
}

static fg_node *powc(fg_node *a, double c)
{
    fg_node *n = NULL;
    CHECK(fg_new_powc(A, a, c, &n) == FG_OK);
    return n;
}

/* x = f(x, ...): replaces the handle x with the new one. */
static void assign(fg_node **x, fg_node *value)
{
    fg_decref(A, *x);
    *x = value;
}

/* The example of micrograd's README; its numbers are printed there. */
static void test_micrograd_readme(void)
{
    fg_node *a = leaf(-4.0), *b = leaf(2.0), *c, *d, *e, *f, *g, *t, *u;
    size_t live_before = fg_arena_live(A);
    fg_node *failed = NULL;
    c = bin(FG_ADD, a, b);                                   /* c = a + b */
    d = bin(FG_ADD, t = bin(FG_MUL, a, b), u = powc(b, 3));  /* d = a * b + b**3 */
    fg_decref(A, t);
    fg_decref(A, u);
    t = bin_c(FG_ADD, c, 1.0);                               /* c += c + 1 */
    assign(&c, bin(FG_ADD, c, t));
    fg_decref(A, t);
    t = bin(FG_ADD, u = bin_c_left(FG_ADD, 1.0, c), e = un(FG_NEG, a)); /* c += 1 + c + (-a) */
    fg_decref(A, u);
    fg_decref(A, e);
    assign(&c, bin(FG_ADD, c, t));
    fg_decref(A, t);
    u = bin(FG_ADD, b, a);                                   /* d += d * 2 + (b + a).relu() */
    e = un(FG_RELU, u);
    fg_decref(A, u);
    u = bin_c(FG_MUL, d, 2.0);
    t = bin(FG_ADD, u, e);
    fg_decref(A, u);
    fg_decref(A, e);
    assign(&d, bin(FG_ADD, d, t));
    fg_decref(A, t);
    u = bin(FG_SUB, b, a);                                   /* d += 3 * d + (b - a).relu() */
    e = un(FG_RELU, u);
    fg_decref(A, u);
    u = bin_c_left(FG_MUL, 3.0, d);
    t = bin(FG_ADD, u, e);
    fg_decref(A, u);
    fg_decref(A, e);
    assign(&d, bin(FG_ADD, d, t));
    fg_decref(A, t);
    e = bin(FG_SUB, c, d);                                   /* e = c - d */
    f = powc(e, 2);                                          /* f = e**2 */
    g = bin_c(FG_DIV, f, 2.0);                               /* g = f / 2.0 */
    t = bin_c_left(FG_DIV, 10.0, f);                         /* g += 10.0 / f */
    assign(&g, bin(FG_ADD, g, t));
    fg_decref(A, t);
    CHECK(fabs(g->data - 24.7041) < 5e-5);
    CHECK(fg_backward(A, g, &failed) == FG_OK);
    CHECK(fabs(a->grad - 138.8338) < 5e-5);
    CHECK(fabs(b->grad - 645.5773) < 5e-5);
    fg_decref(A, c);
    fg_decref(A, d);
    fg_decref(A, e);
    fg_decref(A, f);
    fg_decref(A, g);
    CHECK(fg_arena_live(A) == live_before);
    fg_decref(A, a);
    fg_decref(A, b);
}

/* The order is depth-first post-order over operands left to right, as the SPEC fixes it. */
static void test_topological_order(void)
{
    fg_node *x = leaf(1.0), *y = leaf(2.0);
    fg_node *p = bin(FG_MUL, x, y), *q = bin(FG_ADD, y, p), *r = bin(FG_SUB, q, x);
    fg_node *const *order;
    size_t length = 0;
    CHECK(fg_topo(A, r, &order, &length) == FG_OK);
    CHECK(length == 5);
    if (length == 5) {
        /* r -> q -> y (leaf), p -> x, y(seen); then x(seen) */
        CHECK(order[0] == y && order[1] == x && order[2] == p && order[3] == q
              && order[4] == r);
    }
    /* a second traversal sees every node again */
    CHECK(fg_topo(A, r, &order, &length) == FG_OK && length == 5);
    fg_decref(A, r);
    fg_decref(A, q);
    fg_decref(A, p);
    fg_decref(A, x);
    fg_decref(A, y);
}

/* Only the ops whose derivatives divide, or call pow, exp, log, sqrt, sin or cos, are checked
 * in backward. */
static void test_fallible_derivatives(void)
{
    int op, fallible = 0;
    for (op = 0; op < FG_OP_COUNT; op++)
        fallible |= fg_derivative_may_fail((fg_op)op) << op;
    CHECK(fallible == (1 << FG_DIV | 1 << FG_POWC | 1 << FG_POW | 1 << FG_LOG | 1 << FG_SQRT
                       | 1 << FG_SIN | 1 << FG_COS));
}

/* A leaf that requires no grad: what is made of it alone needs none either, and backward
 * (eager and a tape's) takes no derivative toward it, so sqrt's and x ** 0.5's at 0 never
 * fail; d/dx x ** 0 is 0 at 0. */
static void test_no_grad(void)
{
    fg_node *x = leaf(0.0), *c = leaf(2.0), *r = un(FG_SQRT, x), *p = powc(x, 0.5);
    fg_node *y, *sum, *z, *failed = NULL, *zero = leaf(0.0), *one, *scaled = NULL;
    fg_tape *T;
    x->flags |= FG_NO_GRAD;
    assign(&r, un(FG_SQRT, x));
    assign(&p, powc(x, 0.5));
    CHECK(!FG_WANTS_GRAD(r) && !FG_WANTS_GRAD(p) && FG_WANTS_GRAD(c));
    y = bin(FG_MUL, c, r);
    CHECK(fg_new_binary_number(A, FG_MUL, p, 3.0, 0, &scaled) == FG_OK);  /* numbers aside */
    sum = bin(FG_ADD, y, scaled);
    CHECK(FG_WANTS_GRAD(y) && FG_WANTS_GRAD(sum) && !FG_WANTS_GRAD(scaled));
    CHECK(fg_backward(A, sum, &failed) == FG_OK && c->grad == 0.0 && x->grad == 0.0);
    CHECK(fg_tape_new(A, sum, &T) == FG_OK);
    CHECK(fg_tape_forward(T, &failed) == FG_OK && fg_tape_backward(T, &failed) == FG_OK);
    CHECK(fg_tape_sync(T) == FG_OK && r->grad == 0.0 && x->grad == 0.0 && c->grad == 0.0);
    fg_tape_free(T);
    one = powc(zero, 0.0);
    CHECK(fg_backward(A, one, &failed) == FG_OK && one->data == 1.0 && zero->grad == 0.0);
    z = bin(FG_MUL, c, un(FG_SQRT, zero));
    fg_decref(A, z->u.arg[1]);
    CHECK(fg_backward(A, z, &failed) == FG_ZERO_DIVISION);    /* zero requires grad */
    fg_decref(A, z);
    fg_decref(A, one);
    fg_decref(A, zero);
    fg_decref(A, sum);
    fg_decref(A, scaled);
    fg_decref(A, y);
    fg_decref(A, p);
    fg_decref(A, r);
    fg_decref(A, c);
    fg_decref(A, x);
}

/* SGD as PyTorch has it: weight decay into the gradient, then momentum, then the step. */
static void test_sgd(void)
{
    fg_node *p = leaf(1.0), *q = leaf(-2.0), *params[2];
    double velocity[2] = {0.0, 0.0};
    unsigned char has[2] = {0, 0};
    fg_sgd_options plain = {0.1, 0.0, 0.0, 0.0, 0, 0};
    fg_sgd_options heavy = {0.1, 0.9, 0.0, 0.01, 0, 0};
    fg_sgd_options nesterov = {0.1, 0.9, 0.0, 0.0, 1, 1};
    params[0] = p;
    params[1] = q;
    p->grad = 0.5;
    q->grad = -1.0;
    fg_sgd_step(params, 2, &plain, velocity, has);
    CHECK(p->data == 1.0 - 0.1 * 0.5 && q->data == -2.0 - 0.1 * -1.0 && !has[0]);
    p->data = 1.0;
    fg_sgd_step(params, 1, &heavy, velocity, has);   /* v = 0.5 + 0.01 */
    CHECK(has[0] && velocity[0] == 0.5 + 0.01 * 1.0 && p->data == 1.0 - 0.1 * (0.5 + 0.01));
    heavy.weight_decay = 0.0;
    fg_sgd_step(params, 1, &heavy, velocity, has);   /* v = 0.9 v + 0.5 */
    CHECK(velocity[0] == 0.9 * (0.5 + 0.01) + 0.5);
    p->data = 1.0;
    fg_sgd_step(params, 1, &nesterov, velocity, has);  /* maximize: d = -0.5 */
    CHECK(velocity[0] == (0.9 * (0.5 + 0.01) + 0.5) * 0.9 + -0.5);
    CHECK(p->data == 1.0 - 0.1 * (-0.5 + 0.9 * velocity[0]));
    fg_zero_grad(params, 2);
    CHECK(p->grad == 0.0 && q->grad == 0.0);
    fg_decref(A, p);
    fg_decref(A, q);
}

/* Adam's first step moves every parameter by lr (times the sign of its gradient), less eps. */
/* The rule table: Adagrad's first step, and counts that do not fit its row refused. */
static void test_rule_table(void)
{
    fg_node *p = leaf(1.0);
    double hyper[5] = {0.1, 0.0, 0.0, 0.0, 0.0}, step = 0.0, sum = 0.0;
    double *state[2] = {&step, &sum};
    p->grad = 0.5;
    CHECK(fg_rule_step(FG_RULE_ADAGRAD, &p, 1, hyper, 5, state, 2) == FG_OK);
    CHECK(step == 1.0 && sum == 0.25 && p->data == 1.0 + -0.1 * (0.5 / 0.5));
    CHECK(fg_rule_step(FG_RULE_ADAGRAD, &p, 1, hyper, 4, state, 2) == FG_BAD_ARGUMENT);
    CHECK(fg_rule_step(FG_RULE_COUNT, &p, 1, hyper, 5, state, 2) == FG_BAD_ARGUMENT);
    CHECK(strcmp(fg_rule_name(FG_RULE_NADAM), "nadam") == 0 && fg_rule_name(FG_RULE_COUNT) == NULL);
    fg_decref(A, p);
}

static void test_adam_and_rmsprop(void)
{
    fg_node *p = leaf(1.0), *params[1];
    double step[1] = {0.0}, m[1] = {0.0}, v[1] = {0.0}, vmax[1] = {0.0};
    fg_adam_options adam = {0.01, 0.9, 0.999, 0.0, 0.0, 0, 1, 0};
    fg_rmsprop_options rms = {0.01, 0.99, 0.0, 0.0, 0.0, 0, 0};
    params[0] = p;
    p->grad = 3.0;
    fg_adam_step(params, 1, &adam, step, m, v, vmax);
    CHECK(step[0] == 1.0 && fabs(p->data - 0.99) < 1e-15 && vmax[0] == v[0]);
    p->data = 1.0;
    step[0] = m[0] = v[0] = 0.0;
    fg_rmsprop_step(params, 1, &rms, step, v, m, vmax);  /* square_avg = 0.01 * 9 */
    CHECK(fabs(p->data - (1.0 - 0.01 * 3.0 / sqrt(0.01 * 9.0))) < 1e-15);
    fg_decref(A, p);
}

/* f(x, w) = log(1 + exp(x * w)) / (w + 1), with a sum and a dot: built fresh each time. */
static fg_node *with_number(fg_op op, fg_node *a, double x, int number_first)
{
    fg_node *n = NULL;
    CHECK(fg_new_binary_number(A, op, a, x, number_first, &n) == FG_OK);
    return n;
}

static fg_node *tape_graph(fg_node *x, fg_node *w)
{
    fg_node *p = bin(FG_MUL, x, w), *e = un(FG_EXP, p), *s = with_number(FG_ADD, e, 1.0, 1);
    fg_node *l = un(FG_LOG, s), *d = with_number(FG_ADD, w, 1.0, 0), *q = bin(FG_DIV, l, d);
    fg_node *args[5], *n = NULL;
    args[0] = q;
    args[1] = x;
    args[2] = q;
    args[3] = w;
    args[4] = x;
    CHECK(fg_new_nary(A, FG_DOT, args, 5, &n) == FG_OK);
    fg_decref(A, p);
    fg_decref(A, e);
    fg_decref(A, s);
    fg_decref(A, l);
    fg_decref(A, d);
    fg_decref(A, q);
    return n;
}

/* A run of `rows` rows that feeds one leaf from xs, with backward seeded 1.0, on one thread. */
static fg_run one_input_job(const size_t *input, const double *xs, double *outs, size_t rows)
{
    fg_run job;
    memset(&job, 0, sizeof job);
    job.rows = rows;
    job.inputs = input;
    job.input_count = 1;
    job.X = xs;
    job.out = outs;
    job.threads = 1;
    job.backward = 1;
    job.root_grad = 1.0;
    return job;
}

/* Replays give the bits of building the graph again and calling backward. */
static void test_tape(void)
{
    fg_node *x = leaf(0.3), *w = leaf(-1.7), *root = tape_graph(x, w), *failed = NULL;
    fg_node *x2 = leaf(0.0), *w2 = leaf(0.0), *fresh;
    fg_tape *T = NULL;
    double xs[3] = {0.5, -2.0, 4.0}, outs[3], before, totals[2];
    size_t inputs[1], row = 99, k;
    fg_run job;
    int r;
    CHECK(fg_tape_new(A, root, &T) == FG_OK);
    CHECK(fg_tape_root(T) == root && fg_tape_leaf_count(T) == 2);   /* x, w; not the 1.0s */
    CHECK(fg_tape_size(T) == 11);
    for (r = 0; r < 3; r++) {
        x->data = xs[r];
        x2->data = xs[r];
        w2->data = w->data;
        x->grad = w->grad = x2->grad = w2->grad = 0.25;
        fresh = tape_graph(x2, w2);
        CHECK(fg_tape_forward(T, &failed) == FG_OK && fg_tape_backward(T, &failed) == FG_OK);
        CHECK(fg_backward(A, fresh, &failed) == FG_OK);
        CHECK(same_bits(root->data, fresh->data));
        CHECK(same_bits(x->grad, x2->grad) && same_bits(w->grad, w2->grad));
        fg_decref(A, fresh);
    }
    /* run: each row's grads from zero (-0.0), added to the leaves' row after row */
    x->grad = w->grad = 0.0;
    inputs[0] = (size_t)fg_tape_leaf_index(T, x);
    job = one_input_job(inputs, xs, outs, 3);
    x->data = 7.0;
    CHECK(fg_tape_run(T, &job, &failed, &row) == FG_OK && x->data == 7.0);  /* x keeps its data */
    totals[0] = totals[1] = 0.0;
    for (r = 0; r < 3; r++) {
        x2->data = xs[r];
        x2->grad = w2->grad = -0.0;
        fresh = tape_graph(x2, w2);
        CHECK(fg_backward(A, fresh, &failed) == FG_OK && same_bits(outs[r], fresh->data));
        totals[0] = totals[0] + x2->grad;
        totals[1] = totals[1] + w2->grad;
        fg_decref(A, fresh);
    }
    CHECK(same_bits(x->grad, totals[0]) && same_bits(w->grad, totals[1]));
    /* forward only: the same values per row, no grad touched */
    job.backward = 0;
    x->grad = 0.125;
    CHECK(fg_tape_run(T, &job, &failed, &row) == FG_OK && x->grad == 0.125);
    for (r = 0; r < 3; r++) {
        x2->data = xs[r];
        fresh = tape_graph(x2, w2);
        CHECK(same_bits(outs[r], fresh->data));
        fg_decref(A, fresh);
    }
    job.backward = 1;
    x->data = 4.0;
    /* failures change nothing: w = -1 divides by zero forward; a bad row in run */
    before = root->data;
    w->data = -1.0;
    x->grad = 0.5;
    CHECK(fg_tape_forward(T, &failed) == FG_ZERO_DIVISION && failed->op == FG_DIV);
    CHECK(same_bits(root->data, before));
    CHECK(fg_tape_backward(T, &failed) == FG_OK);   /* still the last good forward's values */
    x->grad = 0.5;
    xs[1] = 1000.0;                                 /* exp(-1700) is fine, exp(1700) is not */
    w->data = 1.7;
    CHECK(fg_tape_run(T, &job, &failed, &row) == FG_RANGE_ERROR);
    CHECK(row == 1 && failed != NULL && failed->op == FG_EXP);
    CHECK(x->data == 4.0 && x->grad == 0.5);
    CHECK(fg_tape_leaf_index(T, x2) == -1);
    for (k = 0; k < fg_tape_size(T); k++)
        CHECK(fg_tape_node(T, k) != NULL);
    fg_tape_sync(T);
    fg_tape_free(T);
    fg_decref(A, root);
    fg_decref(A, x);
    fg_decref(A, w);
    fg_decref(A, x2);
    fg_decref(A, w2);
}

/* A node rebuilt with stored data keeps it, whatever its operands say now. */
/* Two roots sharing a node, and a leaf, reported as the outputs of a tape whose root is a DOT
 * of seed leaves and the roots: forward writes their data, backward their grads, run() their
 * values per row; a changed seed is backward's as if forward had read it. */
static fg_node *two_roots(fg_node *x, fg_node *w, fg_node **r1)
{
    fg_node *p = bin(FG_MUL, x, w), *r0 = un(FG_TANH, p), *q = bin(FG_MUL, r0, x);
    fg_node *e = un(FG_EXP, w);
    *r1 = bin(FG_ADD, q, e);
    fg_decref(A, p);
    fg_decref(A, q);
    fg_decref(A, e);
    return r0;
}

static fg_node *seeded(fg_node *s0, fg_node *r0, fg_node *s1, fg_node *r1)
{
    fg_node *zero = leaf(0.0), *args[5], *top = NULL;
    zero->flags |= FG_CONSTANT;
    args[0] = zero;
    args[1] = s0;
    args[2] = r0;
    args[3] = s1;
    args[4] = r1;
    CHECK(fg_new_nary(A, FG_DOT, args, 5, &top) == FG_OK);
    fg_decref(A, zero);
    return top;
}

static void test_tape_outputs(void)
{
    fg_node *x = leaf(0.3), *w = leaf(-0.6), *s0 = leaf(1.0), *s1 = leaf(1.0), *r1, *r0, *top;
    fg_node *x2 = leaf(0.0), *w2 = leaf(0.0), *t0 = leaf(0.0), *t1 = leaf(0.0), *f1, *f0, *fresh;
    fg_node *outputs[3], *failed = NULL, *stranger = leaf(2.0);
    fg_tape *T = NULL;
    double xs[3] = {0.5, -2.0, 4.0}, outs[9], gx = 0.0, gw = 0.0;
    size_t inputs[1], row = 0;
    fg_run job;
    int r;
    r0 = two_roots(x, w, &r1);
    top = seeded(s0, r0, s1, r1);
    outputs[0] = r0;
    outputs[1] = r1;
    outputs[2] = x;
    CHECK(fg_tape_compile_outputs(A, top, &stranger, 1, 1, &T) == FG_BAD_ARGUMENT && T == NULL);
    CHECK(fg_tape_compile_outputs(A, top, outputs, 3, 1, &T) == FG_OK);
    CHECK(fg_tape_output_count(T) == 3);
    x->data = 0.7;
    r0->data = r1->data = 0.0;
    CHECK(fg_tape_forward(T, &failed) == FG_OK);
    x2->data = 0.7;
    w2->data = w->data;
    t0->data = 2.5;
    t1->data = -1.5;
    f0 = two_roots(x2, w2, &f1);
    fresh = seeded(t0, f0, t1, f1);
    CHECK(same_bits(r0->data, f0->data) && same_bits(r1->data, f1->data) && x->data == 0.7);
    fg_tape_set_leaf_value(T, (size_t)fg_tape_leaf_index(T, s0), 2.5);
    fg_tape_set_leaf_value(T, (size_t)fg_tape_leaf_index(T, s1), -1.5);
    x->grad = w->grad = 0.0;
    x2->grad = w2->grad = 0.0;
    CHECK(fg_tape_backward(T, &failed) == FG_OK && fg_backward(A, fresh, &failed) == FG_OK);
    CHECK(same_bits(x->grad, x2->grad) && same_bits(w->grad, w2->grad));
    CHECK(same_bits(r0->grad, f0->grad) && same_bits(r1->grad, f1->grad));
    fg_decref(A, fresh);
    fg_decref(A, f0);
    fg_decref(A, f1);
    /* run: row-major outputs, seeds as the seed leaves hold them */
    inputs[0] = (size_t)fg_tape_leaf_index(T, x);
    job = one_input_job(inputs, xs, outs, 3);
    s0->data = 0.5;
    s1->data = 3.0;
    x->grad = w->grad = 0.0;
    CHECK(fg_tape_run(T, &job, &failed, &row) == FG_OK && x->data == 0.7);
    for (r = 0; r < 3; r++) {
        x2->data = xs[r];
        t0->data = 0.5;
        t1->data = 3.0;
        x2->grad = w2->grad = -0.0;
        f0 = two_roots(x2, w2, &f1);
        fresh = seeded(t0, f0, t1, f1);
        CHECK(fg_backward(A, fresh, &failed) == FG_OK);
        CHECK(same_bits(outs[3 * r], f0->data) && same_bits(outs[3 * r + 1], f1->data));
        CHECK(outs[3 * r + 2] == xs[r]);
        gx = gx + x2->grad;
        gw = gw + w2->grad;
        fg_decref(A, fresh);
        fg_decref(A, f0);
        fg_decref(A, f1);
    }
    CHECK(same_bits(x->grad, gx) && same_bits(w->grad, gw));
    /* the graph is then the one at the leaves' data (x keeps 0.7), written by sync */
    CHECK(fg_tape_unsynced(T) != 0 && fg_tape_sync(T) == FG_OK && fg_tape_unsynced(T) == 0);
    x2->data = 0.7;
    f0 = two_roots(x2, w2, &f1);
    CHECK(same_bits(r0->data, f0->data) && same_bits(r1->data, f1->data));
    CHECK(same_bits(r0->grad, 0.0) && same_bits(r1->grad, 0.0));
    fg_decref(A, f0);
    fg_decref(A, f1);
    fg_tape_free(T);
    fg_decref(A, top);
    fg_decref(A, r0);
    fg_decref(A, r1);
    fg_decref(A, x);
    fg_decref(A, w);
    fg_decref(A, s0);
    fg_decref(A, s1);
    fg_decref(A, x2);
    fg_decref(A, w2);
    fg_decref(A, t0);
    fg_decref(A, t1);
    fg_decref(A, stranger);
}

static void test_rebuilt_node(void)
{
    fg_node *x = leaf(-1.0), *args[2], *n = NULL;
    args[0] = x;
    CHECK(fg_new_node(A, FG_LOG, 0.5, args, 1, 0.0, &n) == FG_OK);  /* log(-1) would fail */
    CHECK(n->data == 0.5 && n->op == FG_LOG && x->refs == 2);
    fg_decref(A, n);
    CHECK(fg_new_node(A, FG_POWC, 4.0, args, 1, 2.0, &n) == FG_OK && n->u.powc.exponent == 2.0);
    fg_decref(A, n);
    CHECK(fg_new_node(A, FG_ADD, 1.0, args, 1, 0.0, &n) == FG_BAD_ARGUMENT);
    CHECK(fg_new_node(A, FG_LEAF, 1.0, args, 1, 0.0, &n) == FG_BAD_ARGUMENT);
    CHECK(fg_new_node(A, (fg_op)200, 1.0, args, 0, 0.0, &n) == FG_BAD_ARGUMENT);
    args[1] = x;
    CHECK(fg_new_node(A, FG_SUM, 3.0, args, 2, 0.0, &n) == FG_OK && n->u.nary.count == 2);
    fg_decref(A, n);
    CHECK(x->refs == 1);
    fg_decref(A, x);
}

/* Visits are told apart by a 16-bit epoch; traversals keep working across its wrap. */
static void test_epoch_wrap(void)
{
    fg_node *x = leaf(1.0), *y = bin(FG_MUL, x, x), *z = bin(FG_ADD, y, x);
    fg_node *const *order;
    size_t length = 0;
    long i;
    int wrong = 0;
    for (i = 0; i < 70000; i++) {
        if (fg_topo(A, z, &order, &length) != FG_OK || length != 3 || order[2] != z)
            wrong++;
        if (i == 30000) {
            /* a node made mid-way starts unvisited */
            fg_decref(A, z);
            z = bin(FG_ADD, y, x);
        }
    }
    CHECK(wrong == 0);
    fg_decref(A, z);
    fg_decref(A, y);
    fg_decref(A, x);
}

/* y = y * c a million times: builds, backpropagates and frees without recursion, and the
 * freed nodes are all reused by a second chain. */
static void test_long_chain(long length)
{
    fg_node *c = leaf(1.0000001), *y = leaf(1.0), *x = y, *failed = NULL;
    size_t capacity;
    long i;
    fg_incref(x);
    for (i = 0; i < length; i++)
        assign(&y, bin(FG_MUL, y, c));
    CHECK(fg_arena_live(A) >= (size_t)length);
    CHECK(fg_backward(A, y, &failed) == FG_OK);
    CHECK(x->grad > 1.0 && isfinite(x->grad));
    fg_decref(A, y);
    CHECK(fg_arena_live(A) == 2);
    capacity = fg_arena_capacity(A);
    y = x;
    fg_incref(y);
    for (i = 0; i < length; i++)
        assign(&y, bin(FG_ADD, y, c));
    CHECK(fg_arena_capacity(A) == capacity);
    fg_decref(A, y);
    fg_decref(A, x);
    fg_decref(A, c);
    CHECK(fg_arena_live(A) == 0);
}

/* A failed op allocates nothing; a failed backward changes no grad. */
static void test_errors(void)
{
    fg_node *zero = leaf(0.0), *neg = leaf(-1.0), *big = leaf(1000.0), *eight = leaf(-8.0);
    fg_node *one = leaf(1.0), *out = NULL, *failed = NULL, *tiny, *q, *s;
    size_t live = fg_arena_live(A);
    CHECK(fg_new_binary(A, FG_DIV, one, zero, &out) == FG_ZERO_DIVISION);
    CHECK(fg_new_unary(A, FG_LOG, zero, &out) == FG_DOMAIN_ERROR);
    CHECK(fg_new_unary(A, FG_LOG, neg, &out) == FG_DOMAIN_ERROR);
    CHECK(fg_new_unary(A, FG_EXP, big, &out) == FG_RANGE_ERROR);
    CHECK(fg_new_powc(A, eight, 1.0 / 3.0, &out) == FG_DOMAIN_ERROR);
    CHECK(fg_new_powc(A, zero, -1.0, &out) == FG_DOMAIN_ERROR);
    CHECK(fg_new_binary(A, FG_POW, big, big, &out) == FG_RANGE_ERROR);
    CHECK(fg_new_unary(A, FG_ADD, one, &out) == FG_BAD_ARGUMENT);
    CHECK(out == NULL);
    CHECK(fg_arena_live(A) == live);
    CHECK(one->refs == 1 && zero->refs == 1);

    /* 1 / 1e-200 is fine forward, but its derivative divides by 1e-400 == 0 */
    tiny = leaf(1e-200);
    q = bin(FG_DIV, one, tiny);
    s = bin(FG_ADD, q, one);
    one->grad = 0.25;
    CHECK(fg_backward(A, s, &failed) == FG_ZERO_DIVISION);
    CHECK(failed == q);
    CHECK(s->grad == 0.0 && q->grad == 0.0 && one->grad == 0.25 && tiny->grad == 0.0);
    one->grad = 0.0;
    CHECK(fg_backward(A, one, &failed) == FG_OK && one->grad == 1.0);
    fg_decref(A, s);
    fg_decref(A, q);
    fg_decref(A, tiny);
    fg_decref(A, zero);
    fg_decref(A, neg);
    fg_decref(A, big);
    fg_decref(A, eight);
    fg_decref(A, one);
}

/* Builds start + sum or dot of four terms over fresh leaves, fused or as the chain of + and *
 * it replaces. The terms share the leaf x = v0: v2 = x * 1e17 and v3 = x * -1e17, so x's
 * grad gathers 1e17, -1e17 and small terms, whose sum depends on the order of addition.
 * Stores the result's data, v2's grad and the leaves' grads after backward. */
static void nary_or_chain(fg_op op, int fused, double results[10])
{
    static const double values[4] = {0.1, -2.5, 3.0000001, 1e-3};
    fg_node *v[4], *w[4], *args[9], *root = NULL, *t, *leaves[8], *failed = NULL;
    uint32_t count = op == FG_SUM ? 5 : 9;
    int i;
    for (i = 0; i < 4; i++) {
        leaves[i] = v[i] = leaf(values[i]);
        leaves[4 + i] = w[i] = leaf(i >= 2 ? 1.0 : 1.0 + values[3 - i]);
    }
    v[2] = bin_c(FG_MUL, v[0], 1e17);
    v[3] = bin_c(FG_MUL, v[0], -1e17);
    args[0] = v[1];                                 /* the start is also a term's operand */
    for (i = 0; i < 4; i++) {
        if (op == FG_SUM) {
            args[1 + i] = v[i];
        } else {
            args[1 + 2 * i] = w[i];
            args[2 + 2 * i] = v[i];
        }
    }
    if (fused) {
        CHECK(fg_new_nary(A, op, args, count, &root) == FG_OK);
    } else {
        root = args[0];
        fg_incref(root);
        for (i = 0; i < 4; i++) {
            if (op == FG_SUM) {
                t = v[i];
                fg_incref(t);
            } else {
                t = bin(FG_MUL, w[i], v[i]);
            }
            assign(&root, bin(FG_ADD, root, t));
            fg_decref(A, t);
        }
    }
    results[0] = root->data;
    CHECK(fg_backward(A, root, &failed) == FG_OK);
    results[1] = v[2]->grad;
    for (i = 0; i < 8; i++)
        results[2 + i] = leaves[i]->grad;
    fg_decref(A, root);
    fg_decref(A, v[2]);
    fg_decref(A, v[3]);
    for (i = 0; i < 8; i++)
        fg_decref(A, leaves[i]);
}

/* sum and dot give the bits of the chains of + and * they replace, forward and backward. */
/* A class index held by a node picks a score with the score's own bits, and a label that is
 * no class fails as a list index would, allocating nothing. */
static void test_class_pick(void)
{
    double scores_at[3] = {0.5, -0.0, INFINITY};
    fg_node *scores[3], *label = leaf(1.0), *three = leaf(3.0), *k, *terms[4], *picked = NULL;
    fg_node *failed = NULL, *out = NULL, *offset;
    size_t live, j;
    k = bin(FG_CLASS, label, three);
    terms[0] = leaf(-0.0);
    for (j = 0; j < 3; j++) {
        scores[j] = leaf(scores_at[j]);
        offset = j ? bin_c(FG_SUB, k, (double)j) : k;
        terms[j + 1] = bin(FG_PICK, scores[j], offset);
        if (j)
            fg_decref(A, offset);
    }
    CHECK(fg_new_nary(A, FG_SUM, terms, 4, &picked) == FG_OK);
    CHECK(same_bits(picked->data, -0.0));
    CHECK(fg_backward(A, picked, &failed) == FG_OK);
    CHECK(scores[1]->grad == 1.0 && scores[0]->grad == 0.0 && scores[2]->grad == 0.0);
    CHECK(label->grad == 0.0);
    live = fg_arena_live(A);
    label->data = 1.5;
    CHECK(fg_new_binary(A, FG_CLASS, label, three, &out) == FG_INDEX_ERROR);
    label->data = 3.0;
    CHECK(fg_new_binary(A, FG_CLASS, label, three, &out) == FG_INDEX_ERROR);
    label->data = NAN;
    CHECK(fg_new_binary(A, FG_CLASS, label, three, &out) == FG_INDEX_ERROR);
    CHECK(out == NULL && fg_arena_live(A) == live);
    fg_decref(A, picked);
    for (j = 0; j < 4; j++)
        fg_decref(A, terms[j]);
    for (j = 0; j < 3; j++)
        fg_decref(A, scores[j]);
    fg_decref(A, k);
    fg_decref(A, label);
    fg_decref(A, three);
}

/* A derivative graph's choices from data are nodes of the choice ops: relu's step is SIGN of
 * its output, made again when the data changes, requiring no grad (FG_CHOSEN: no mistake). */
static void test_choices_are_nodes(void)
{
    fg_node *x = leaf(0.5), *y = NULL, *d = NULL, *failed = NULL, *m, *dm;
    double value;
    double at[5] = {-1.0, 0.0, -0.0, NAN, INFINITY};
    uint32_t count;
    size_t i;
    CHECK(fg_new_unary(A, FG_RELU, x, &y) == FG_OK);
    CHECK(fg_gradients(A, y, &x, 1, 1, &value, &d, &failed) == FG_OK);
    CHECK(d->data == 1.0);     /* 0.0 + SIGN(relu(x)) */
    CHECK(d->op == FG_SIGN || (d->op == FG_ADD && fg_operands(d, &count)[1]->op == FG_SIGN));
    CHECK((d->flags & (FG_NO_GRAD | FG_CHOSEN)) == (FG_NO_GRAD | FG_CHOSEN));
    CHECK(fg_backward(A, d, &failed) == FG_OK && x->grad == 0.0);  /* nothing reaches x */
    for (i = 0; i < 5; i++) {
        fg_status st = FG_OK;
        double sign = fg_forward(FG_SIGN, at[i], 0.0, 0.0, &st);
        CHECK(st == FG_OK && sign == (at[i] > 0.0 ? 1.0 : at[i] < 0.0 ? -1.0 : 0.0));
        CHECK(fg_forward(FG_ISFINITE, at[i], 0.0, 0.0, &st) == (isfinite(at[i]) ? 1.0 : 0.0));
        CHECK(fg_forward(FG_ISZERO, at[i], 0.0, 0.0, &st) == (at[i] == 0.0 ? 1.0 : 0.0));
        CHECK(fg_forward(FG_PICKS_A, at[i], 0.25, 0.0, &st) == (at[i] >= 0.25 || isnan(at[i])));
    }
    m = bin_c(FG_MAX, x, 0.25);     /* d max / d a is PICKS_A(a, b), a node over x */
    CHECK(fg_gradients(A, m, &x, 1, 1, &value, &dm, &failed) == FG_OK);
    CHECK(dm->data == 1.0);
    CHECK(dm->op == FG_PICKS_A
          || (dm->op == FG_ADD && fg_operands(dm, &count)[1]->op == FG_PICKS_A));
    fg_decref(A, dm);
    fg_decref(A, m);
    fg_decref(A, d);
    fg_decref(A, y);
    fg_decref(A, x);
}

static void test_nary_matches_chain(void)
{
    double fused[10], chain[10];
    fg_node *args[3] = {NULL, NULL, NULL}, *out = NULL;
    int i, round;
    for (round = 0; round < 2; round++) {
        fg_op op = round == 0 ? FG_SUM : FG_DOT;
        nary_or_chain(op, 1, fused);
        nary_or_chain(op, 0, chain);
        for (i = 0; i < 10; i++) {
            if (!same_bits(fused[i], chain[i]))
                fprintf(stderr, "%s result %d: fused %.17g chain %.17g\n", fg_op_symbol(op), i,
                        fused[i], chain[i]);
            CHECK(same_bits(fused[i], chain[i]));
        }
    }
    CHECK(fg_new_nary(A, FG_DOT, args, 2, &out) == FG_BAD_ARGUMENT);
    CHECK(fg_new_nary(A, FG_ADD, args, 3, &out) == FG_BAD_ARGUMENT);
    CHECK(out == NULL);
}

static int hook_calls;

static void count_release(void *context, fg_node *n)
{
    (void)n;
    *(int *)context += 1;
}

/* The release hook runs for flagged nodes only, once, when they are freed. */
static void test_release_hook(void)
{
    fg_node *x = leaf(1.0), *y = leaf(2.0), *z = bin(FG_ADD, x, y);
    hook_calls = 0;
    fg_arena_set_release_hook(A, count_release, &hook_calls);
    x->flags |= FG_EXTRA;
    fg_decref(A, x);
    CHECK(hook_calls == 0);         /* z still holds x */
    fg_decref(A, z);
    CHECK(hook_calls == 1);
    fg_decref(A, y);
    CHECK(hook_calls == 1);
    fg_arena_set_release_hook(A, NULL, NULL);
}

/* Opaque nodes keep their operands alive and pass no gradient. */
static void test_opaque(void)
{
    fg_node *x = leaf(3.0), *args[2], *o = NULL, *failed = NULL;
    args[0] = args[1] = x;
    CHECK(fg_new_opaque(A, 7.0, args, 2, &o) == FG_OK);
    CHECK(o->data == 7.0 && x->refs == 3);
    CHECK(fg_backward(A, o, &failed) == FG_OK);
    CHECK(o->grad == 1.0 && x->grad == 0.0);
    CHECK(fg_new_opaque(A, 1.0, NULL, 0, &failed) == FG_OK);
    fg_decref(A, failed);
    fg_decref(A, o);
    fg_decref(A, x);
}

/* A two-layer network of dots for one row, its inputs fed by run(). */
static fg_node *network(fg_node **inputs, size_t count, fg_node **params, size_t *made)
{
    fg_node *hidden[6], *args[64], *start, *t, *shared, *scaled, *root;
    size_t h, i, p = 0;
    for (h = 0; h < 6; h++) {
        fg_new_constant(A, 0.0, &start);
        args[0] = params[p++];
        for (i = 0; i < count; i++) {
            args[1 + 2 * i] = params[p++];
            args[2 + 2 * i] = inputs[i];
        }
        CHECK(fg_new_nary(A, FG_DOT, args, (uint32_t)(1 + 2 * count), &t) == FG_OK);
        fg_decref(A, start);
        CHECK(fg_new_unary(A, h % 2 ? FG_TANH : FG_RELU, t, &hidden[h]) == FG_OK);
        fg_decref(A, t);
    }
    args[0] = params[p++];
    for (h = 0; h < 6; h++) {
        args[1 + 2 * h] = params[p++];
        args[2 + 2 * h] = hidden[h];
    }
    CHECK(fg_new_nary(A, FG_DOT, args, 13, &t) == FG_OK);
    /* the same weights read by a second dot, over the hidden units turned by one: shared
     * parameters, whose row grads phase 2 forms from both dots */
    fg_new_constant(A, 0.0, &start);
    args[0] = start;
    for (h = 0; h < 6; h++)
        args[2 + 2 * h] = hidden[(h + 1) % 6];
    CHECK(fg_new_nary(A, FG_DOT, args, 13, &shared) == FG_OK);
    fg_decref(A, start);
    for (h = 0; h < 6; h++)
        fg_decref(A, hidden[h]);
    /* a parameter used twice, so that some row grads gather in lanes */
    CHECK(fg_new_binary(A, FG_MUL, t, params[0], &scaled) == FG_OK);
    CHECK(fg_new_binary(A, FG_ADD, scaled, shared, &root) == FG_OK);
    fg_decref(A, t);
    fg_decref(A, scaled);
    fg_decref(A, shared);
    *made = p;
    return root;
}

/* run(): any number of threads gives the bits of one, which are the row-by-row definition. */
static void test_run_threads(void)
{
    enum { IN = 5, ROWS = 203 };
    fg_node *inputs[IN], *params[64], *root, *failed = NULL;
    static double X[ROWS * IN], out[4][ROWS], grads[4][64];
    size_t fed[IN], i, made, row = 0;
    unsigned threads;
    fg_tape *T = NULL;
    fg_run job;
    for (i = 0; i < IN; i++)
        CHECK(fg_new_leaf(A, 0.0, &inputs[i]) == FG_OK);
    for (i = 0; i < 64; i++)
        CHECK(fg_new_leaf(A, sin(1.0 + (double)i), &params[i]) == FG_OK);
    root = network(inputs, IN, params, &made);
    for (i = 0; i < ROWS * IN; i++)
        X[i] = cos((double)i * 0.37);
    CHECK(fg_tape_new(A, root, &T) == FG_OK);
    for (i = 0; i < IN; i++)
        fed[i] = (size_t)fg_tape_leaf_index(T, inputs[i]);
    memset(&job, 0, sizeof job);
    job.rows = ROWS;
    job.inputs = fed;
    job.input_count = IN;
    job.X = X;
    job.backward = 1;
    job.root_grad = 1.0;
    fg_run_min_work(0);     /* every thread asked for, however few the rows */
    for (threads = 1; threads <= 4; threads++) {
        for (i = 0; i < made; i++)
            params[i]->grad = 0.5;
        job.out = out[threads - 1];
        job.threads = threads;
        CHECK(fg_tape_run(T, &job, &failed, &row) == FG_OK);
        for (i = 0; i < made; i++)
            grads[threads - 1][i] = params[i]->grad;
        if (threads > 1) {
            CHECK(memcmp(out[threads - 1], out[0], sizeof out[0]) == 0);
            CHECK(memcmp(grads[threads - 1], grads[0], made * sizeof(double)) == 0);
        }
    }
    /* the definition, one row at a time: row grads from -0.0, added in row order */
    for (i = 0; i < made; i++)
        params[i]->grad = 0.5;
    {
        double totals[64];
        size_t r, j;
        for (i = 0; i < made; i++)
            totals[i] = 0.5;
        for (r = 0; r < ROWS; r++) {
            for (j = 0; j < IN; j++)
                inputs[j]->data = X[r * IN + j];
            for (i = 0; i < made; i++)
                params[i]->grad = -0.0;
            CHECK(fg_tape_forward(T, &failed) == FG_OK && fg_tape_backward(T, &failed) == FG_OK);
            CHECK(same_bits(root->data, out[0][r]));
            for (i = 0; i < made; i++)
                totals[i] = totals[i] + params[i]->grad;
        }
        for (i = 0; i < made; i++)
            CHECK(same_bits(totals[i], grads[0][i]));
    }
    fg_tape_free(T);
    fg_decref(A, root);
    for (i = 0; i < IN; i++)
        fg_decref(A, inputs[i]);
    for (i = 0; i < 64; i++)
        fg_decref(A, params[i]);
}

int main(int argc, char **argv)
{
    long chain = argc > 1 ? atol(argv[1]) : 1000000;
    size_t i;
    A = fg_arena_new();
    if (A == NULL)
        return 2;
    test_micrograd_readme();
    test_topological_order();
    test_errors();
    test_nary_matches_chain();
    test_class_pick();
    test_choices_are_nodes();
    test_release_hook();
    test_opaque();
    test_epoch_wrap();
    test_fallible_derivatives();
    test_no_grad();
    test_sgd();
    test_adam_and_rmsprop();
    test_rule_table();
    test_tape();
    test_tape_outputs();
    test_run_threads();
    for (i = 0; fg_kernel_at(i) != NULL; i++)  /* each copy of the loops this CPU runs */
        CHECK(!fg_kernel_at(i)->supported() || fg_kernel_at(i)->check_rules() == 0);
    test_rebuilt_node();
    test_long_chain(chain);
    CHECK(fg_arena_live(A) == 0);
    fg_arena_free(A);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all C checks passed\n");
    return 0;
}
