/*
 * derive.c: gradients that touch no grad, as numbers or as new nodes (create_graph).
 *
 * fg_gradients runs micrograd's backward again, over the order fg_backward uses and with the
 * same formulas, but each node's grad is a derivative value of the pass's own instead of the
 * node's grad field: a number, or a node built from ops.def's derivative formulas, so that a
 * derivative can be differentiated again. ops.def's vocabulary (NUM, ADD, MUL, IF...) is
 * defined here over derivative values; no op has code of its own in this file.
 *
 * The bits are backward's: a node's grad is ((0.0 + c1) + c2) + ... over its contributions
 * c = d * g in the order backward adds them, built as one n-ary node (0.0 + c1 for one), and
 * every derivative node computes what backward computes in doubles. The folds below keep
 * the bits: 1.0 * x is x, and 0.0 + x is x for a node that is never -0.0; and where some
 * contributions are products this pass just made for them alone (a weight times the grad of
 * the dot that reads it, the usual case), the sum is one DOT over the products' operands
 * (the others times 1.0) instead of a SUM over product nodes: DOT rounds each product and
 * adds them in the same order, so the bits are the same and the graph is a third the size.
 */
#include <math.h>
#include <stdlib.h>

#include "arena.h"
#include "ops.h"

/* A derivative value: a node of the derivative graph, or (node NULL) a number. */
typedef struct dval {
    fg_node *node;
    double value;                   /* the number, or the node's data */
} dval;

/* What the pass knows of one node of the graph below the root. */
typedef struct slot {
    fg_node *node;
    dval grad;                      /* d root / d node, once final */
    size_t last;                    /* its last position in the order */
    uint32_t first_in, last_in;     /* its contributions, a list through contribution.next */
    uint32_t inputs;                /* how many contributions it has */
    uint8_t needed;                 /* on a path from the root to an input */
    uint8_t input;
    uint8_t final;
} slot;

typedef struct contribution {
    dval amount;
    uint32_t next;
    uint8_t product;                /* amount is a MUL node made for this contribution alone */
} contribution;

#define NONE UINT32_MAX

typedef struct derive {
    fg_arena *A;
    int graph;                      /* build nodes; else every value is a number */
    fg_status st;                   /* the first failure */
    fg_vec made;                    /* the nodes built, one reference each */
    uint32_t *table;                /* node -> slot number, open addressing */
    size_t mask;
    slot *slots;
    size_t slot_count;
    uint32_t *at;                   /* order position -> its node's slot number */
    fg_node *const *inputs;         /* the nodes differentiated against */
    size_t input_count;
    contribution *contributions;
    size_t contribution_count, contribution_capacity;
    fg_node **scratch;              /* a SUM's or DOT's operands */
    size_t scratch_capacity;
    fg_node **owned;                /* the constants made for them, released once it holds them */
    size_t made_mark;               /* D->made's length when the current chain rule began */
} derive;

static dval number(double x)
{
    dval v;
    v.node = NULL;
    v.value = x;
    return v;
}

static void fail(derive *D, fg_status st)
{
    if (D->st == FG_OK)
        D->st = st;
}

/* A node just built (status st), kept in D->made until the pass ends. */
static dval built(derive *D, fg_status st, fg_node *n)
{
    dval v;
    if (st != FG_OK) {
        fail(D, st);
        return number(0.0);
    }
    if (D->made.length == D->made.capacity && fg_vec_reserve(&D->made, 1) != FG_OK) {
        fg_decref(D->A, n);
        fail(D, FG_NO_MEMORY);
        return number(0.0);
    }
    D->made.items[D->made.length++] = n;
    v.node = n;
    v.value = n->data;
    return v;
}

static int is_number(dval x, double y)
{
    return x.node == NULL && x.value == y && signbit(x.value) == signbit(y);
}

/* x + y is -0.0 only where both are, so an ADD with a constant that is not -0.0, or a SUM or
 * DOT starting from one, never is: 0.0 + such a node is the node itself, bit for bit. */
static int positive_constant(const fg_node *n)
{
    return (n->flags & FG_CONSTANT) && !(n->data == 0.0 && signbit(n->data));
}

static int never_negative_zero(dval x)
{
    const fg_node *n = x.node;
    if (n == NULL)
        return 0;
    if (n->op == FG_ADD)
        return positive_constant(n->u.arg[0]) || positive_constant(n->u.arg[1]);
    if (n->op == FG_SUM || n->op == FG_DOT)
        return positive_constant(n->u.nary.args[0]);
    return 0;
}

static dval binary(derive *D, fg_op op, dval x, dval y)
{
    fg_node *n = NULL;
    fg_status st = FG_OK;
    double r;
    if (D->st != FG_OK)
        return number(0.0);
    if (op == FG_MUL && is_number(x, 1.0))
        return y;
    if (op == FG_MUL && is_number(y, 1.0))
        return x;
    if (op == FG_ADD && is_number(x, 0.0) && never_negative_zero(y))
        return y;
    if (op == FG_ADD && is_number(y, 0.0) && never_negative_zero(x))
        return x;
    if (x.node == NULL && y.node == NULL) {
        r = fg_forward(op, x.value, y.value, 0.0, &st);
        if (st != FG_OK)
            fail(D, st);
        return number(r);
    }
    if (x.node == NULL)
        st = fg_new_binary_number(D->A, op, y.node, x.value, 1, &n);
    else if (y.node == NULL)
        st = fg_new_binary_number(D->A, op, x.node, y.value, 0, &n);
    else
        st = fg_new_binary(D->A, op, x.node, y.node, &n);
    return built(D, st, n);
}

static dval unary(derive *D, fg_op op, dval x)
{
    fg_node *n = NULL;
    fg_status st = FG_OK;
    double r;
    if (D->st != FG_OK)
        return number(0.0);
    if (x.node == NULL) {
        r = fg_forward(op, x.value, 0.0, 0.0, &st);
        if (st != FG_OK)
            fail(D, st);
        return number(r);
    }
    st = fg_new_unary(D->A, op, x.node, &n);
    return built(D, st, n);
}

/* x ** y: a POWC node for a number exponent, as Value's ** makes one. */
static dval power(derive *D, dval x, dval y)
{
    fg_node *n = NULL;
    fg_status st;
    if (D->st != FG_OK)
        return number(0.0);
    if (x.node != NULL && y.node == NULL) {
        st = fg_new_powc(D->A, x.node, y.value, &n);
        return built(D, st, n);
    }
    return binary(D, FG_POW, x, y);
}

/* ops.def's vocabulary over derivative values. */
#undef NUM
#undef DATA
#undef IF
#undef NEG
#undef ADD
#undef SUB
#undef MUL
#undef DIV
#undef POW
#undef EXP
#undef LOG
#undef SQRT
#undef SIN
#undef COS
#undef SIGMOID
#undef SOFTPLUS
#undef SIGN
#undef ISFINITE
#undef ISZERO
#undef PICKS_A
#define NUM(x) number(x)
#define DATA(x) ((x).value)
#define IF(cond, x, y) ((cond) ? (x) : (y))
#define NEG(x) unary(D, FG_NEG, (x))
#define ADD(x, y) binary(D, FG_ADD, (x), (y))
#define SUB(x, y) binary(D, FG_SUB, (x), (y))
#define MUL(x, y) binary(D, FG_MUL, (x), (y))
#define DIV(x, y) binary(D, FG_DIV, (x), (y))
#define POW(x, y) power(D, (x), (y))
#define EXP(x) unary(D, FG_EXP, (x))
#define LOG(x) unary(D, FG_LOG, (x))
#define SQRT(x) unary(D, FG_SQRT, (x))
#define SIN(x) unary(D, FG_SIN, (x))
#define COS(x) unary(D, FG_COS, (x))
#define SIGMOID(x) unary(D, FG_SIGMOID, (x))
#define SOFTPLUS(x) unary(D, FG_SOFTPLUS, (x))
#define SIGN(x) unary(D, FG_SIGN, (x))
#define ISFINITE(x) unary(D, FG_ISFINITE, (x))
#define ISZERO(x) unary(D, FG_ISZERO, (x))
#define PICKS_A(x, y) binary(D, FG_PICKS_A, (x), (y))

/* d out / d a (which 0) or d out / d b (which 1) of a unary or binary op. */
static dval local_derivative(derive *D, fg_op op, int which, dval a, dval b, double c, dval out)
{
    (void)which;
    (void)b;
    (void)c;
    (void)out;
    switch (op) {
#define FG_UNARY(name, symbol, forward, d_da) \
    case FG_##name: \
        return (d_da);
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
    case FG_##name: \
        return which == 0 ? (d_da) : (d_db);
#include "ops.def"
    default:
        return number(0.0);
    }
}

static void term_derivatives(derive *D, fg_op op, dval v0, dval v1, dval *d_dv0, dval *d_dv1)
{
    (void)D;
    (void)v0;
    (void)v1;
    switch (op) {
#define FG_NARY(name, symbol, stride, term, d_dv0_rule, d_dv1_rule) \
    case FG_##name: \
        *d_dv0 = (d_dv0_rule); \
        *d_dv1 = (d_dv1_rule); \
        return;
#include "ops.def"
    default:
        *d_dv0 = *d_dv1 = number(0.0);
    }
}

#define TERM_DERIVATIVES(op, v0, v1, d_dv0, d_dv1) term_derivatives(D, op, v0, v1, d_dv0, d_dv1)

/* ---- the slots: node -> what the pass knows of it ---- */

static size_t hash(const fg_node *n, size_t mask)
{
    uint64_t h = (uint64_t)(uintptr_t)n;
    h ^= h >> 29;
    h *= UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 17) & mask;
}

/* n's slot, or NULL for a node not below the root. */
static slot *slot_of(const derive *D, const fg_node *n)
{
    size_t i;
    for (i = hash(n, D->mask);; i = (i + 1) & D->mask) {
        uint32_t s = D->table[i];
        if (s == NONE)
            return NULL;
        if (D->slots[s].node == n)
            return &D->slots[s];
    }
}

/* n's slot, made if new. */
static slot *slot_for(derive *D, fg_node *n)
{
    size_t i;
    slot *s;
    for (i = hash(n, D->mask);; i = (i + 1) & D->mask) {
        uint32_t k = D->table[i];
        if (k == NONE)
            break;
        if (D->slots[k].node == n)
            return &D->slots[k];
    }
    D->table[i] = (uint32_t)D->slot_count;
    s = &D->slots[D->slot_count++];
    s->node = n;
    s->grad = number(0.0);
    s->first_in = s->last_in = NONE;
    s->inputs = 0;
    s->needed = s->input = s->final = 0;
    return s;
}

/* n as a value of a derivative formula: itself, or its data for a number (a constant, or
 * everything when no graph is built). */
static dval operand(const derive *D, fg_node *n)
{
    dval v;
    v.node = D->graph && !(n->flags & FG_CONSTANT) ? n : NULL;
    v.value = n->data;
    return v;
}

/* n's slot where n is needed, else NULL. A leaf is needed only as an input: where the
 * inputs are few, a scan of them spares the hash lookup (most leaves are weights). */
static slot *needed_slot(const derive *D, const fg_node *n)
{
    slot *s;
    if (fg_kind_of(n) == FG_KIND_LEAF && D->input_count <= 8) {
        size_t i;
        for (i = 0; i < D->input_count; i++)
            if (D->inputs[i] == n)
                break;
        if (i == D->input_count)
            return NULL;
    }
    s = slot_of(D, n);
    return s->needed ? s : NULL;
}

/* Whether x is a MUL node the current chain rule made, which nothing else holds. */
static int fresh_product(const derive *D, dval x)
{
    size_t i;
    if (x.node == NULL || x.node->op != FG_MUL || x.node->refs != 1)
        return 0;
    for (i = D->made_mark; i < D->made.length; i++)
        if (D->made.items[i] == x.node)
            return 1;
    return 0;
}

/* Adds amount to the contributions of s's grad, after those before it. */
static void contribute(derive *D, slot *s, dval amount)
{
    contribution *c;
    if (D->st != FG_OK)
        return;
    if (D->contribution_count == D->contribution_capacity) {
        size_t capacity = D->contribution_capacity ? 2 * D->contribution_capacity : 256;
        contribution *grown;
        if (capacity >= NONE
            || (grown = (contribution *)realloc(D->contributions,
                                                capacity * sizeof(contribution))) == NULL) {
            fail(D, FG_NO_MEMORY);
            return;
        }
        D->contributions = grown;
        D->contribution_capacity = capacity;
    }
    c = &D->contributions[D->contribution_count];
    c->amount = amount;
    c->next = NONE;
    c->product = (uint8_t)fresh_product(D, amount);
    if (s->last_in == NONE)
        s->first_in = (uint32_t)D->contribution_count;
    else
        D->contributions[s->last_in].next = (uint32_t)D->contribution_count;
    s->last_in = (uint32_t)D->contribution_count++;
    s->inputs++;
}

/* Room for `count` operands in D->scratch and D->owned. */
static int reserve_operands(derive *D, size_t count)
{
    fg_node **scratch, **owned;
    if (count <= D->scratch_capacity)
        return 1;
    scratch = (fg_node **)realloc(D->scratch, 2 * count * sizeof(fg_node *));
    if (scratch != NULL)
        D->scratch = scratch;
    owned = scratch == NULL ? NULL : (fg_node **)realloc(D->owned, 2 * count * sizeof(fg_node *));
    if (owned == NULL) {
        fail(D, FG_NO_MEMORY);
        return 0;
    }
    D->owned = owned;
    D->scratch_capacity = 2 * count;
    return 1;
}

/* A constant leaf for x among the operands being gathered. */
static void push_constant(derive *D, double x, size_t *count, size_t *owned)
{
    fg_node *leaf;
    fg_status st = fg_new_constant(D->A, x, &leaf);
    if (st != FG_OK) {
        fail(D, st);
        return;
    }
    D->scratch[(*count)++] = leaf;
    D->owned[(*owned)++] = leaf;
}

/* ((0.0 + c1) + c2) + ... over s's contributions: a number if they all are, 0.0 + c1 for one,
 * else one n-ary node from a constant 0.0 (numbers among them as constant leaves, as sum()
 * makes them): a DOT where some are fresh products, else a SUM. */
static dval sum_of(derive *D, const slot *s)
{
    uint32_t c;
    size_t count = 0, owned = 0, i;
    int numbers = 1, products = 0;
    fg_node *n = NULL;
    fg_status st = FG_OK;
    double acc = 0.0;
    for (c = s->first_in; c != NONE; c = D->contributions[c].next) {
        const contribution *k = &D->contributions[c];
        numbers &= k->amount.node == NULL;
        products |= k->product && k->amount.node->refs == 1;
        acc = acc + k->amount.value;
    }
    if (numbers || D->st != FG_OK)
        return number(acc);
    if (s->inputs == 1)
        return ADD(NUM(0.0), D->contributions[s->first_in].amount);
    if (!reserve_operands(D, 2 * (size_t)s->inputs + 1))
        return number(0.0);
    push_constant(D, 0.0, &count, &owned);
    for (c = s->first_in; D->st == FG_OK && c != NONE; c = D->contributions[c].next) {
        const contribution *k = &D->contributions[c];
        fg_node *x = k->amount.node;
        if (products && k->product && x->refs == 1) {
            D->scratch[count++] = x->u.arg[0];      /* the product's factors */
            D->scratch[count++] = x->u.arg[1];
            continue;
        }
        if (x != NULL)
            D->scratch[count++] = x;
        else
            push_constant(D, k->amount.value, &count, &owned);
        if (products)
            push_constant(D, 1.0, &count, &owned);  /* x * 1.0 is x, exactly */
    }
    if (D->st == FG_OK)
        st = fg_new_nary(D->A, products ? FG_DOT : FG_SUM, D->scratch, (uint32_t)count, &n);
    for (i = 0; i < owned; i++)
        fg_decref(D->A, D->owned[i]);   /* the n-ary node holds them now, or nothing does */
    if (D->st != FG_OK)
        return number(0.0);
    return built(D, st, n);
}

/* One node's chain rule at one of its places in the order (term k for an NARY node). */
static void chain_rule(derive *D, fg_node *n, dval g)
{
    fg_op op = (fg_op)n->op;
    D->made_mark = D->made.length;
    switch (fg_kind_of(n)) {
    case FG_KIND_UNARY: {
        fg_node *a = n->u.arg[0];
        slot *sa = needed_slot(D, a);
        if (sa != NULL) {
            double c = op == FG_POWC ? n->u.powc.exponent : 0.0;
            dval d = local_derivative(D, op, 0, operand(D, a), number(0.0), c, operand(D, n));
            contribute(D, sa, MUL(d, g));
        }
        return;
    }
    case FG_KIND_BINARY: {
        fg_node *a = n->u.arg[0], *b = n->u.arg[1];
        dval da = number(0.0), db = number(0.0);
        slot *sa = needed_slot(D, a), *sb = needed_slot(D, b);
        int want_a = sa != NULL, want_b = sb != NULL;
        if (want_a)
            da = local_derivative(D, op, 0, operand(D, a), operand(D, b), 0.0, operand(D, n));
        if (want_b)
            db = local_derivative(D, op, 1, operand(D, a), operand(D, b), 0.0, operand(D, n));
        if (want_a)
            contribute(D, sa, MUL(da, g));
        if (want_b)
            contribute(D, sb, MUL(db, g));
        return;
    }
    case FG_KIND_NARY: {
        fg_node *const *args = n->u.nary.args;
        uint32_t stride = fg_stride(op), terms = (n->u.nary.count - 1) / stride;
        uint32_t k = --*fg_cursor_of(D->A, n);
        fg_node *v0 = args[1 + k * stride], *v1 = stride > 1 ? args[2 + k * stride] : v0;
        slot *s0 = needed_slot(D, v0), *s1 = stride > 1 ? needed_slot(D, v1) : NULL;
        slot *start = k == 0 ? needed_slot(D, args[0]) : NULL;
        int want_start = start != NULL, want_v0 = s0 != NULL, want_v1 = s1 != NULL;
        dval to_start, to_v0, to_v1;
        FG_NARY_TERM_RULE(dval, TERM_DERIVATIVES, op, k, terms, g, operand(D, v0),
                          operand(D, v1), want_v0, want_v1, &to_start, &to_v0, &to_v1);
        if (want_start)
            contribute(D, start, to_start);
        if (want_v0)
            contribute(D, s0, to_v0);
        if (want_v1)
            contribute(D, s1, to_v1);
        return;
    }
    default:
        return;     /* leaves; OPAQUE nodes have no derivative */
    }
}

/* Which nodes lie on a path from the root to an input: only their grads are built (a node
 * that requires no grad is on none, as backward adds nothing into it). */
static void mark_needed(derive *D, fg_node *const *order, size_t length)
{
    size_t i;
    for (i = 0; i < length; i++) {
        slot *s = &D->slots[D->at[i]];
        uint32_t count, j;
        fg_node *const *operands;
        if (s->last != i)
            continue;   /* an NARY node: decided at its last term */
        s->needed = s->input;
        if (fg_kind_of(order[i]) == FG_KIND_OPAQUE || !FG_WANTS_GRAD(order[i])) {
            s->needed = s->needed && FG_WANTS_GRAD(order[i]);
            continue;
        }
        operands = fg_operands_of(order[i], &count);
        for (j = 0; j < count && !s->needed; j++)
            s->needed = slot_of(D, operands[j])->needed;
    }
}

static fg_status derive_all(derive *D, fg_node *root, fg_node *const *inputs, size_t count,
                            double *values, fg_node **nodes)
{
    fg_arena *A = D->A;
    fg_node *const *order = A->order.items;
    size_t length = A->order.length, capacity = 16, i;
    while (capacity < 2 * length)
        capacity *= 2;
    if (length >= NONE / 2)
        return FG_NO_MEMORY;
    D->table = (uint32_t *)malloc(capacity * sizeof(uint32_t));
    D->slots = (slot *)malloc(length * sizeof(slot));
    D->at = (uint32_t *)malloc(length * sizeof(uint32_t));
    if (D->table == NULL || D->slots == NULL || D->at == NULL)
        return FG_NO_MEMORY;
    D->mask = capacity - 1;
    D->inputs = inputs;
    D->input_count = count;
    for (i = 0; i < capacity; i++)
        D->table[i] = NONE;
    for (i = 0; i < length; i++) {
        slot *s = slot_for(D, order[i]);
        s->last = i;
        D->at[i] = (uint32_t)(s - D->slots);
    }
    for (i = 0; i < count; i++) {
        slot *s = slot_of(D, inputs[i]);
        if (s != NULL)
            s->input = 1;
    }
    mark_needed(D, order, length);
    for (i = length; i-- > 0 && D->st == FG_OK;) {
        fg_node *n = order[i];
        slot *s = &D->slots[D->at[i]];
        if (!s->needed)
            continue;
        if (!s->final) {
            s->grad = n == root ? number(1.0) : sum_of(D, s);
            s->final = 1;
        }
        chain_rule(D, n, s->grad);
    }
    for (i = 0; i < count && D->st == FG_OK; i++) {
        slot *s = slot_of(D, inputs[i]);
        dval g = s != NULL && s->needed ? s->grad : number(0.0);
        values[i] = g.value;
        if (nodes == NULL)
            continue;
        if (g.node != NULL) {
            fg_incref(g.node);
            nodes[i] = g.node;
        } else if ((D->st = fg_new_constant(A, g.value, &nodes[i])) != FG_OK) {
            while (i-- > 0)
                fg_decref(A, nodes[i]);
        }
    }
    return D->st;
}

fg_status fg_gradients(fg_arena *A, fg_node *root, fg_node *const *inputs, size_t count,
                       int create_graph, double *values, fg_node **nodes, fg_node **failed)
{
    derive D = {0};
    fg_status st;
    size_t i;
    if (failed != NULL)
        *failed = NULL;
    st = fg_order(A, root, 1, failed);
    if (st != FG_OK)
        return st;
    D.A = A;
    D.graph = create_graph;
    st = derive_all(&D, root, inputs, count, values, create_graph ? nodes : NULL);
    for (i = 0; i < D.made.length; i++)
        fg_decref(A, D.made.items[i]);
    free(D.made.items);
    free(D.table);
    free(D.slots);
    free(D.at);
    free(D.contributions);
    free(D.scratch);
    free(D.owned);
    return st;
}
