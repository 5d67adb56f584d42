/*
 * tape.c: a graph compiled once into a program over dense slots, replayed in C.
 *
 * Every node below the root gets a slot in value[] and grad[]: the leaves first, then the
 * constants (leaves made for numbers, part of the program), then the interior nodes in
 * topological order. The program is the eager backward's order, an NARY node once per
 * term, except that terms with nothing between them are one instruction; forward runs it
 * first to last, computing each node's local derivatives with it, and backward last to
 * first, only multiplying and adding. The formulas are graph.c's, from ops.def, in the same
 * order, so a replay gives the bits of building the graph afresh and calling fg_backward.
 *
 * What replay writes into nodes: forward the root's data, backward the root's grad and the
 * leaves' grads. Other nodes keep the values they had until fg_tape_sync. A failed call
 * writes nothing: forward computes into a spare state swapped in on success and notes the
 * first derivative that fails, which backward raises before it adds anything; run() puts
 * back what its earlier rows changed.
 */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ops.h"

typedef struct fg_instr {
    uint8_t op;                     /* an fg_op; never LEAF or OPAQUE */
    uint8_t kind;                   /* its fg_kind, here to spare a table lookup */
    uint8_t stride;                 /* NARY: operands per term */
    uint32_t out;                   /* the node's slot */
    uint32_t a;                     /* operand slot; NARY: offset of its operand list in args */
    uint32_t b;                     /* second operand slot; NARY: the first term this entry runs */
    union {
        double c;                   /* POWC's exponent */
        struct {
            uint32_t last;          /* NARY: the last term this entry runs */
            uint32_t terms;         /* NARY: its number of terms */
        } run;
    } u;
} fg_instr;

/* A derivative that cannot be computed: found by forward, raised by backward. */
typedef struct fg_failure {
    fg_status status;
    uint32_t slot;                  /* the node whose rule failed */
    double operands[2];             /* its operands' values */
} fg_failure;

/* What a forward computes: values, every unary and binary node's local derivatives (so
 * that backward is only multiplications and additions), and the first derivative that
 * failed. A forward computes into the spare state and swaps it in on success. */
typedef struct fg_state {
    double *value;                  /* slot -> data; one more slot, the sink, holds 0 */
    double *deriv;                  /* instruction i -> d/da at 2i, d/db at 2i + 1 */
    fg_failure pending;
} fg_state;

struct fg_tape {
    fg_arena *arena;
    size_t slots;                   /* distinct nodes: leaves, then constants, then interior;
                                     * then the sink, a unary op's second operand */
    size_t leaf_count;              /* slots [0, leaf_count) */
    size_t constant_end;            /* constants in [leaf_count, constant_end) */
    fg_node **nodes;                /* slot -> node, each holding one reference */
    fg_state now, spare;
    double *grad;                   /* slot -> grad */
    fg_instr *code;
    size_t length;
    uint32_t *args;                 /* NARY operand lists: count, then the operand slots */
    size_t args_length;
    uint32_t root;
    fg_failure failed;              /* the last failure, for the caller's message */
};

/* ---- compiling: node -> slot through an open-addressing table ---- */

typedef struct slot_map {
    fg_node **keys;
    uint32_t *slots;
    size_t mask;
} slot_map;

static size_t hash_node(const fg_node *n, size_t mask)
{
    return (size_t)(((uintptr_t)n >> 4) * (uintptr_t)0x9E3779B97F4A7C15ull) & mask;
}

static uint32_t find_slot(const slot_map *m, const fg_node *n)
{
    size_t i = hash_node(n, m->mask);
    while (m->keys[i] != n)
        i = (i + 1) & m->mask;
    return m->slots[i];
}

/* Records n with the given slot unless it is already there; returns whether it was new. */
static int add_slot(slot_map *m, fg_node *n, uint32_t slot)
{
    size_t i = hash_node(n, m->mask);
    while (m->keys[i] != NULL) {
        if (m->keys[i] == n)
            return 0;
        i = (i + 1) & m->mask;
    }
    m->keys[i] = n;
    m->slots[i] = slot;
    return 1;
}

void fg_tape_free(fg_tape *T)
{
    size_t i;
    if (T == NULL)
        return;
    for (i = 0; i < T->slots && T->nodes != NULL; i++)
        fg_decref(T->arena, T->nodes[i]);
    free(T->nodes);
    free(T->now.value);
    free(T->now.deriv);
    free(T->spare.value);
    free(T->spare.deriv);
    free(T->grad);
    free(T->code);
    free(T->args);
    free(T);
}

/* 0 for a leaf the tape reads (LEAF or OPAQUE), 1 for a constant, 2 for an interior node. */
static int slot_class(const fg_node *n)
{
    fg_kind kind = fg_kind_of(n);
    if (kind == FG_KIND_OPAQUE || (kind == FG_KIND_LEAF && !(n->flags & FG_CONSTANT)))
        return 0;
    return kind == FG_KIND_LEAF ? 1 : 2;
}

/* One instruction for an entry of the order; `nary_at[slot]` remembers where an NARY node's
 * operand list went and `terms_done[slot]` how many of its terms the program has so far. */
static void compile_entry(fg_tape *T, const slot_map *map, fg_node *n, fg_instr *ins,
                          uint32_t *nary_at, uint32_t *terms_done, size_t *args_used)
{
    ins->op = n->op;
    ins->kind = (uint8_t)fg_kind_of(n);
    ins->stride = (uint8_t)fg_op_table[n->op].stride;
    ins->out = find_slot(map, n);
    ins->u.c = n->op == FG_POWC ? n->u.powc.exponent : 0.0;
    if (fg_kind_of(n) == FG_KIND_NARY) {
        uint32_t j, count = n->u.nary.count, at = ins->out - (uint32_t)T->constant_end;
        ins->u.run.terms = (count - 1) / ins->stride;
        if (terms_done[at] == 0) {
            nary_at[at] = (uint32_t)*args_used;
            T->args[*args_used] = count;
            for (j = 0; j < count; j++)
                T->args[*args_used + 1 + j] = find_slot(map, n->u.nary.args[j]);
            *args_used += 1 + count;
        }
        ins->a = nary_at[at];
        ins->b = ins->u.run.last = terms_done[at]++;
    } else {
        ins->a = find_slot(map, n->u.arg[0]);
        ins->b = fg_kind_of(n) == FG_KIND_BINARY ? find_slot(map, n->u.arg[1])
                                                 : (uint32_t)T->slots;  /* the sink */
    }
}

static fg_status forward_into(fg_tape *T, fg_state *state);

fg_status fg_tape_new(fg_arena *A, fg_node *root, fg_tape **out)
{
    fg_node *const *order;
    size_t length, capacity = 16, i, args_used = 0, counts[3] = {0, 0, 0}, next[3];
    slot_map map = {NULL, NULL, 0};
    uint32_t *nary_at = NULL, *terms_done = NULL;
    fg_tape *T = NULL;
    fg_status st = fg_topo(A, root, &order, &length);
    if (st != FG_OK)
        return st;
    if (length >= UINT32_MAX / 4)
        return FG_NO_MEMORY;
    while (capacity < 2 * length)
        capacity *= 2;
    map.keys = (fg_node **)calloc(capacity, sizeof(fg_node *));
    map.slots = (uint32_t *)malloc(capacity * sizeof(uint32_t));
    map.mask = capacity - 1;
    T = (fg_tape *)calloc(1, sizeof(fg_tape));
    if (T == NULL || map.keys == NULL || map.slots == NULL)
        goto no_memory;
    T->arena = A;
    /* count each class among the distinct nodes, then number them class by class, each in
     * order of first appearance */
    for (i = 0; i < length; i++)
        if (add_slot(&map, order[i], 0))
            counts[slot_class(order[i])]++;
    T->leaf_count = counts[0];
    T->constant_end = counts[0] + counts[1];
    T->slots = T->constant_end + counts[2];
    next[0] = 0;
    next[1] = counts[0];
    next[2] = T->constant_end;
    memset(map.keys, 0, capacity * sizeof(fg_node *));
    T->nodes = (fg_node **)malloc(T->slots * sizeof(fg_node *));
    if (T->nodes == NULL)
        goto no_memory;
    for (i = 0; i < length; i++) {
        fg_node *n = order[i];
        int class = slot_class(n);
        if (add_slot(&map, n, (uint32_t)next[class])) {
            T->nodes[next[class]++] = n;
            if (fg_kind_of(n) == FG_KIND_NARY)
                T->args_length += 1 + (size_t)n->u.nary.count;
        }
    }
    for (i = 0; i < T->slots; i++)
        fg_incref(T->nodes[i]);
    T->now.value = (double *)malloc((T->slots + 1) * sizeof(double));
    T->spare.value = (double *)malloc((T->slots + 1) * sizeof(double));
    T->grad = (double *)malloc((T->slots + 1) * sizeof(double));
    T->code = (fg_instr *)malloc((length + 1) * sizeof(fg_instr));
    T->args = (uint32_t *)malloc((T->args_length + 1) * sizeof(uint32_t));
    nary_at = (uint32_t *)malloc((counts[2] + 1) * sizeof(uint32_t));
    terms_done = (uint32_t *)calloc(counts[2] + 1, sizeof(uint32_t));
    if (!T->now.value || !T->spare.value || !T->grad || !T->code || !T->args || !nary_at
        || !terms_done)
        goto no_memory;
    for (i = 0; i < T->slots; i++) {
        T->now.value[i] = T->spare.value[i] = T->nodes[i]->data;  /* constants stay so */
        T->grad[i] = T->nodes[i]->grad;
    }
    T->now.value[T->slots] = T->spare.value[T->slots] = T->grad[T->slots] = 0.0;
    /* the program: every entry of the order but the leaves and constants, in order. An
     * NARY node's consecutive terms are one instruction: with nothing between them, running
     * them one after another (last first) is what the separate entries would do. */
    for (i = 0; i < length; i++) {
        fg_node *n = order[i];
        fg_instr *ins = &T->code[T->length], *prev = T->length ? ins - 1 : NULL;
        if (slot_class(n) != 2)
            continue;
        compile_entry(T, &map, n, ins, nary_at, terms_done, &args_used);
        if (prev != NULL && ins->kind == FG_KIND_NARY && prev->kind == FG_KIND_NARY
            && prev->out == ins->out) {
            prev->u.run.last = ins->u.run.last;
            continue;
        }
        T->length++;
    }
    T->root = find_slot(&map, root);
    T->now.deriv = (double *)malloc((2 * T->length + 1) * sizeof(double));
    T->spare.deriv = (double *)malloc((2 * T->length + 1) * sizeof(double));
    if (!T->now.deriv || !T->spare.deriv)
        goto no_memory;
    free(map.keys);
    free(map.slots);
    free(nary_at);
    free(terms_done);
    /* the derivatives for the values the nodes hold now */
    if (forward_into(T, &T->spare) == FG_OK)
        memcpy(T->now.deriv, T->spare.deriv, 2 * T->length * sizeof(double));
    T->now.pending = T->spare.pending;
    memcpy(T->spare.value, T->now.value, T->slots * sizeof(double));
    *out = T;
    return FG_OK;
no_memory:
    free(map.keys);
    free(map.slots);
    free(nary_at);
    free(terms_done);
    fg_tape_free(T);
    return FG_NO_MEMORY;
}

size_t fg_tape_size(const fg_tape *T)
{
    return T->slots;
}

size_t fg_tape_leaf_count(const fg_tape *T)
{
    return T->leaf_count;
}

fg_node *fg_tape_leaf(const fg_tape *T, size_t i)
{
    return T->nodes[i];
}

fg_node *fg_tape_node(const fg_tape *T, size_t slot)
{
    return T->nodes[slot];
}

fg_node *fg_tape_root(const fg_tape *T)
{
    return T->nodes[T->root];
}

long fg_tape_leaf_index(const fg_tape *T, const fg_node *n)
{
    size_t i;
    for (i = 0; i < T->leaf_count; i++)
        if (T->nodes[i] == n)
            return (long)i;
    return -1;
}

/* ---- replaying ---- */

static void note_failure(fg_failure *f, fg_status st, const fg_instr *ins, const double *v)
{
    f->status = st;
    f->slot = ins->out;
    f->operands[0] = v[ins->a];
    f->operands[1] = ins->kind == FG_KIND_BINARY ? v[ins->b] : 0.0;
}

/* The program's forward into state: the leaves' data first (constants are already there),
 * then every instruction with its local derivatives; the first derivative that fails is
 * noted for backward to raise. */
static fg_status forward_into(fg_tape *T, fg_state *state)
{
    double *v = state->value, *dv = state->deriv;
    size_t i;
    for (i = 0; i < T->leaf_count; i++)
        v[i] = T->nodes[i]->data;
    state->pending.status = FG_OK;
    for (i = 0; i < T->length; i++) {
        const fg_instr *ins = &T->code[i];
        fg_op op = (fg_op)ins->op;
        fg_status st = FG_OK, derivative_st = FG_OK;
        if (ins->kind == FG_KIND_NARY) {
            /* computed whole at its last term, when every operand is */
            const uint32_t *args = &T->args[ins->a + 1];
            uint32_t count = T->args[ins->a], stride = ins->stride, k;
            double acc;
            if (ins->u.run.last + 1 != ins->u.run.terms)
                continue;
            acc = v[args[0]];
            for (k = 1; k < count; k += stride)
                acc = acc + fg_term(op, v[args[k]], stride > 1 ? v[args[k + 1]] : 0.0);
            v[ins->out] = acc;
            continue;
        }
        v[ins->out] = fg_forward_and_derivatives(op, v[ins->a], v[ins->b], ins->u.c, &dv[2 * i],
                                                 &dv[2 * i + 1], &st, &derivative_st);
        if (FG_UNLIKELY((st | derivative_st) != FG_OK)) {
            if (st != FG_OK) {
                note_failure(&T->failed, st, ins, v);
                return st;
            }
            if (state->pending.status == FG_OK)
                note_failure(&state->pending, derivative_st, ins, v);
        }
    }
    return FG_OK;
}

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
            fg_nary_term_backward(FG_##name, k, terms, gout, v[v0], v[v1], &g[args[0]], &g[v0], \
                                  &g[v1]); \
        } \
        return;
#include "ops.def"
    default:
        return;
    }
}

/* Backward over the current state into T->grad, whose leaf and constant entries hold what
 * to add to: interior grads from 0, the root's 1, then the chain rule last to first. */
static fg_status backward_into(fg_tape *T)
{
    const double *v = T->now.value, *dv = T->now.deriv;
    double *g = T->grad;
    size_t i;
    if (T->now.pending.status != FG_OK) {
        T->failed = T->now.pending;
        return T->failed.status;
    }
    memset(g + T->constant_end, 0, (T->slots - T->constant_end) * sizeof(double));
    g[T->root] = 1.0;
    for (i = T->length; i-- > 0;) {
        const fg_instr *ins = &T->code[i];
        double gout = g[ins->out];
        if (ins->kind == FG_KIND_BINARY) {
            g[ins->a] += dv[2 * i] * gout;
            g[ins->b] += dv[2 * i + 1] * gout;
        } else if (ins->kind == FG_KIND_UNARY) {
            g[ins->a] += dv[2 * i] * gout;
        } else {
            nary_run_backward(T, ins, v, g, gout);
        }
    }
    return FG_OK;
}

static void swap_states(fg_tape *T)
{
    fg_state s = T->now;
    T->now = T->spare;
    T->spare = s;
}

static void load_leaf_grads(fg_tape *T)
{
    size_t i;
    for (i = 0; i < T->leaf_count; i++)
        T->grad[i] = T->nodes[i]->grad;
}

static void commit_grads(fg_tape *T)
{
    size_t i;
    for (i = 0; i < T->leaf_count; i++)
        T->nodes[i]->grad = T->grad[i];
    T->nodes[T->root]->grad = T->grad[T->root];
}

fg_status fg_tape_forward(fg_tape *T, fg_node **failed)
{
    fg_status st = forward_into(T, &T->spare);
    if (st != FG_OK) {
        *failed = T->nodes[T->failed.slot];
        return st;
    }
    swap_states(T);
    T->nodes[T->root]->data = T->now.value[T->root];
    return FG_OK;
}

fg_status fg_tape_backward(fg_tape *T, fg_node **failed)
{
    fg_status st;
    load_leaf_grads(T);
    st = backward_into(T);
    if (st != FG_OK) {
        *failed = T->nodes[T->failed.slot];
        return st;
    }
    commit_grads(T);
    return FG_OK;
}

/* run() changes nothing when a row fails: what it would change is kept here first. */
typedef struct fg_saved {
    double *data;                   /* the input and target leaves' data */
    double *value;                  /* the tape's values, derivatives and pending failure */
    double *deriv;
    fg_failure pending;
    double *constant_grads;
} fg_saved;

static void drop_saved(fg_saved *k)
{
    free(k->data);
    free(k->value);
    free(k->deriv);
    free(k->constant_grads);
}

static fg_status save(fg_tape *T, fg_saved *k, size_t leaves)
{
    size_t constants = T->constant_end - T->leaf_count;
    k->data = (double *)malloc((leaves + 1) * sizeof(double));
    k->value = (double *)malloc(T->slots * sizeof(double));
    k->deriv = (double *)malloc((2 * T->length + 1) * sizeof(double));
    k->constant_grads = (double *)malloc((constants + 1) * sizeof(double));
    if (!k->data || !k->value || !k->deriv || !k->constant_grads) {
        drop_saved(k);
        return FG_NO_MEMORY;
    }
    memcpy(k->value, T->now.value, T->slots * sizeof(double));
    memcpy(k->deriv, T->now.deriv, 2 * T->length * sizeof(double));
    memcpy(k->constant_grads, T->grad + T->leaf_count, constants * sizeof(double));
    k->pending = T->now.pending;
    return FG_OK;
}

static void restore(fg_tape *T, const fg_saved *k)
{
    memcpy(T->now.value, k->value, T->slots * sizeof(double));
    memcpy(T->now.deriv, k->deriv, 2 * T->length * sizeof(double));
    memcpy(T->grad + T->leaf_count, k->constant_grads,
           (T->constant_end - T->leaf_count) * sizeof(double));
    T->now.pending = k->pending;
}

fg_status fg_tape_run(fg_tape *T, size_t rows, const size_t *inputs, size_t input_count,
                      const double *X, const size_t *targets, size_t target_count,
                      const double *Y, double *out, fg_node **failed, size_t *failed_row)
{
    size_t row, j;
    fg_saved saved = {NULL, NULL, NULL, {FG_OK, 0, {0.0, 0.0}}, NULL};
    fg_status st = save(T, &saved, input_count + target_count);
    if (st != FG_OK)
        return st;
    for (j = 0; j < input_count; j++)
        saved.data[j] = T->nodes[inputs[j]]->data;
    for (j = 0; j < target_count; j++)
        saved.data[input_count + j] = T->nodes[targets[j]]->data;
    load_leaf_grads(T);
    for (row = 0; row < rows; row++) {
        for (j = 0; j < input_count; j++)
            T->nodes[inputs[j]]->data = X[row * input_count + j];
        for (j = 0; j < target_count; j++)
            T->nodes[targets[j]]->data = Y[row * target_count + j];
        if ((st = forward_into(T, &T->spare)) != FG_OK)
            break;
        swap_states(T);
        if ((st = backward_into(T)) != FG_OK)
            break;
        out[row] = T->now.value[T->root];
    }
    if (st != FG_OK) {
        for (j = 0; j < input_count; j++)
            T->nodes[inputs[j]]->data = saved.data[j];
        for (j = 0; j < target_count; j++)
            T->nodes[targets[j]]->data = saved.data[input_count + j];
        restore(T, &saved);
        *failed = T->nodes[T->failed.slot];
        *failed_row = row;
    } else if (rows > 0) {
        commit_grads(T);
        T->nodes[T->root]->data = T->now.value[T->root];
    }
    drop_saved(&saved);
    return st;
}

const double *fg_tape_failed_operands(const fg_tape *T)
{
    return T->failed.operands;
}

void fg_tape_sync(fg_tape *T)
{
    size_t i;
    for (i = T->leaf_count; i < T->slots; i++) {  /* the leaves' data is the user's */
        T->nodes[i]->data = T->now.value[i];
        T->nodes[i]->grad = T->grad[i];
    }
}
