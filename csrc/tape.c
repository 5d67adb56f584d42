/*
 * tape.c: a graph compiled once into programs over dense slots, replayed in C.
 *
 * Every node below the root gets a plain slot: the leaves first, then the constants (leaves
 * made for numbers, part of the program), then the interior nodes in topological order. The
 * plain program (plain.c) is the eager backward's order, an NARY node once per term except
 * that terms with nothing between them are one instruction; schedule.c turns it into the
 * step program that replay.c and rows.c run (tape.h describes both).
 *
 * What replay writes into nodes: forward the outputs' data (and their grads 0.0), backward
 * the outputs' grads and the leaves', run() the leaves' grads. Every other write waits in
 * T->unsynced until fg_tape_sync, which a wrapper calls before anyone sees a node flagged
 * FG_TAPED (only a wrapper knows when that is). Nodes are only read by the load functions and
 * only written by the store functions and sync, so that a wrapper can hold its lock for those
 * alone; what lies between touches nothing but the tape. A failed call writes nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "tape.h"

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

/* n's slot, or UINT32_MAX for a node not below the root */
static uint32_t find_slot(const slot_map *m, const fg_node *n)
{
    size_t i = hash_node(n, m->mask);
    while (m->keys[i] != n) {
        if (m->keys[i] == NULL)
            return UINT32_MAX;
        i = (i + 1) & m->mask;
    }
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

static void free_state(fg_row_state *s)
{
    free(s->value);
    free(s->deriv);
}

void fg_tape_free(fg_tape *T)
{
    size_t i;
    if (T == NULL)
        return;
    for (i = 0; i < T->slots && T->nodes != NULL; i++)
        fg_decref(T->arena, T->nodes[i]);
    free(T->nodes);
    free(T->lookup);
    free(T->lookup_leaf);
    free(T->code);
    free(T->args);
    if (T->plain != NULL) {
        free(T->plain->value);
        free(T->plain->deriv);
        free(T->plain->grad);
        free(T->plain);
    }
    fg_program_free(&T->program);
    free_state(&T->now);
    free_state(&T->spare);
    free(T->grad);
    free(T->leaf_data);
    free(T->leaf_grad_before);
    free(T->outputs);
    free(T->is_output);
    fg_rows_cache_free(T->rows);
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

/* The leaves by node, for fg_tape_leaf_index. */
static fg_status index_leaves(fg_tape *T)
{
    size_t capacity = 16, i;
    while (capacity < 2 * T->leaf_count)
        capacity *= 2;
    T->lookup = (fg_node **)calloc(capacity, sizeof(fg_node *));
    T->lookup_leaf = (uint32_t *)malloc(capacity * sizeof(uint32_t));
    if (T->lookup == NULL || T->lookup_leaf == NULL)
        return FG_NO_MEMORY;
    T->lookup_mask = capacity - 1;
    for (i = 0; i < T->leaf_count; i++) {
        size_t h = hash_node(T->nodes[i], T->lookup_mask);
        while (T->lookup[h] != NULL)
            h = (h + 1) & T->lookup_mask;
        T->lookup[h] = T->nodes[i];
        T->lookup_leaf[h] = (uint32_t)i;
    }
    return FG_OK;
}

/* The nodes whose writes may wait for fg_tape_sync, flagged so: all but the leaves. */
static fg_status mark_lazy_nodes(fg_tape *T)
{
    size_t i;
    if ((T->is_output = (uint8_t *)calloc(T->slots + 1, 1)) == NULL)
        return FG_NO_MEMORY;
    for (i = 0; i < T->output_count; i++)
        T->is_output[T->outputs[i]] = 1;
    for (i = T->leaf_count; i < T->slots; i++)
        FG_FLAGS_SET(T->nodes[i], T->is_output[i] ? FG_TAPED_OUTPUT : FG_TAPED);
    return FG_OK;
}

/* Slots, plain program and step program for the graph below root, reporting `outputs`. */
static fg_status compile(fg_tape *T, fg_node *root, fg_node *const *outputs, size_t count,
                         int fuse)
{
    fg_node *const *order;
    size_t length, capacity = 16, i, args_used = 0, counts[3] = {0, 0, 0}, next[3];
    slot_map map = {NULL, NULL, 0};
    uint32_t *nary_at = NULL, *terms_done = NULL;
    fg_status st = fg_topo(T->arena, root, &order, &length);
    if (st != FG_OK)
        return st;
    if (length >= UINT32_MAX / 4)
        return FG_NO_MEMORY;
    st = FG_NO_MEMORY;
    while (capacity < 2 * length)
        capacity *= 2;
    map.keys = (fg_node **)calloc(capacity, sizeof(fg_node *));
    map.slots = (uint32_t *)malloc(capacity * sizeof(uint32_t));
    map.mask = capacity - 1;
    if (map.keys == NULL || map.slots == NULL)
        goto done;
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
    if ((T->nodes = (fg_node **)malloc(T->slots * sizeof(fg_node *))) == NULL)
        goto done;
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
    T->code = (fg_instr *)malloc((length + 1) * sizeof(fg_instr));
    T->args = (uint32_t *)malloc((T->args_length + 1) * sizeof(uint32_t));
    nary_at = (uint32_t *)malloc((counts[2] + 1) * sizeof(uint32_t));
    terms_done = (uint32_t *)calloc(counts[2] + 1, sizeof(uint32_t));
    if (!T->code || !T->args || !nary_at || !terms_done)
        goto done;
    /* the plain program: every entry of the order but the leaves and constants, in order. An
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
    if ((T->outputs = (uint32_t *)malloc((count + 1) * sizeof(uint32_t))) == NULL)
        goto done;
    for (i = 0; i < count; i++)
        if ((T->outputs[i] = find_slot(&map, outputs[i])) == UINT32_MAX) {
            st = FG_BAD_ARGUMENT;
            goto done;
        }
    T->output_count = count;
    if ((st = index_leaves(T)) == FG_OK && (st = mark_lazy_nodes(T)) == FG_OK)
        st = fg_schedule(T, fuse);
done:
    free(map.keys);
    free(map.slots);
    free(nary_at);
    free(terms_done);
    return st;
}

static fg_status new_state(const fg_program *P, size_t leaf_count, fg_row_state *s)
{
    size_t values = fg_program_values(P);
    s->value = (double *)calloc(values, sizeof(double));
    s->deriv = (double *)calloc(P->derivs + 1, sizeof(double));
    if (s->value == NULL || s->deriv == NULL)
        return FG_NO_MEMORY;
    memcpy(s->value + leaf_count, P->constants, (P->constant_end - leaf_count) * sizeof(double));
    return FG_OK;
}

fg_status fg_tape_compile_outputs(fg_arena *A, fg_node *root, fg_node *const *outputs,
                                  size_t count, int fuse, fg_tape **out)
{
    fg_tape *T = (fg_tape *)calloc(1, sizeof(fg_tape));
    fg_program *P;
    fg_status st;
    size_t L;
    if (T == NULL)
        return FG_NO_MEMORY;
    T->arena = A;
    T->seed = 1.0;
    if ((st = compile(T, root, outputs, count, fuse)) != FG_OK)
        goto failed;
    P = &T->program;
    L = T->leaf_count;
    st = FG_NO_MEMORY;
    if (new_state(P, L, &T->now) != FG_OK || new_state(P, L, &T->spare) != FG_OK)
        goto failed;
    T->grad = (double *)calloc(fg_program_values(P), sizeof(double));
    T->leaf_data = (double *)malloc((L + 1) * sizeof(double));
    T->leaf_grad_before = (double *)malloc((L + 1) * sizeof(double));
    if (T->grad == NULL || T->leaf_data == NULL || T->leaf_grad_before == NULL)
        goto failed;
    /* the state of the data the nodes hold now, for a backward before any forward */
    fg_tape_load_data(T);
    if (fg_tape_compute_forward(T) != FG_OK) {
        memcpy(T->now.value, T->leaf_data, L * sizeof(double));
        T->now.pending = 1;     /* backward names the failure, as it would after it */
    }
    *out = T;
    return FG_OK;
failed:
    fg_tape_free(T);
    return st;
}

fg_status fg_tape_compile(fg_arena *A, fg_node *root, int fuse, fg_tape **out)
{
    return fg_tape_compile_outputs(A, root, &root, 1, fuse, out);
}

fg_status fg_tape_new(fg_arena *A, fg_node *root, fg_tape **out)
{
    return fg_tape_compile(A, root, 1, out);
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

size_t fg_tape_output_count(const fg_tape *T)
{
    return T->output_count;
}

void fg_tape_set_leaf_value(fg_tape *T, size_t leaf, double value)
{
    T->now.value[leaf] = value;
}

long fg_tape_leaf_index(const fg_tape *T, const fg_node *n)
{
    size_t h = hash_node(n, T->lookup_mask);
    while (T->lookup[h] != NULL) {
        if (T->lookup[h] == n)
            return (long)T->lookup_leaf[h];
        h = (h + 1) & T->lookup_mask;
    }
    return -1;
}

size_t fg_tape_steps(const fg_tape *T)
{
    return T->program.length;
}

/* ---- replaying one row ---- */

void fg_tape_load_data(fg_tape *T)
{
    size_t i;
    for (i = 0; i < T->leaf_count; i++)
        T->leaf_data[i] = T->nodes[i]->data;
}

void fg_tape_load_grads(fg_tape *T)
{
    size_t i;
    for (i = 0; i < T->leaf_count; i++)
        T->leaf_grad_before[i] = FG_GRAD_READ(T->nodes[i]);
}

/* Names a failure of the step program by the plain program, from the same leaf values. */
static fg_status name_failure(fg_tape *T, const double *leaves, int in_backward)
{
    fg_status st = fg_plain_prepare(T);
    if (st != FG_OK)
        return st;
    st = fg_plain_forward(T, leaves);
    T->failed_in_backward = 0;
    if (st == FG_OK && in_backward) {
        T->failed = T->plain->pending;
        T->failed_in_backward = 1;
        st = T->failed.status;
    }
    return st == FG_OK ? FG_BAD_ARGUMENT : st;  /* (the two programs disagreeing: a bug) */
}

fg_status fg_tape_compute_forward(fg_tape *T)
{
    fg_status st;
    memcpy(T->spare.value, T->leaf_data, T->leaf_count * sizeof(double));
    st = fg_replay_forward(&T->program, &T->spare);
    if (FG_UNLIKELY(st != FG_OK))
        return name_failure(T, T->leaf_data, 0);
    {
        fg_row_state s = T->now;
        T->now = T->spare;
        T->spare = s;
    }
    T->backward_done = 0;
    T->now_stale = 0;
    return FG_OK;
}

/* The outputs' data, and their grads 0.0 as a graph built anew has them; a leaf's are the
 * user's, even when it is an output. */
void fg_tape_store_forward(fg_tape *T)
{
    size_t i;
    for (i = 0; i < T->output_count; i++)
        if (T->outputs[i] >= T->leaf_count) {
            T->nodes[T->outputs[i]]->data = T->now.value[T->program.outputs[i]];
            FG_GRAD_SET(T->nodes[T->outputs[i]], 0.0);
        }
    T->unsynced = FG_TAPE_UNSYNCED_DATA | FG_TAPE_UNSYNCED_GRADS;
}

fg_status fg_tape_compute_backward(fg_tape *T)
{
    return fg_tape_compute_backward_from(T, 1.0);
}

fg_status fg_tape_compute_backward_from(fg_tape *T, double seed)
{
    if (T->now_stale) {   /* the leaves as a run read them: their forward may fail */
        if (fg_replay_forward(&T->program, &T->now) != FG_OK)
            T->now.pending = 1;
        T->now_stale = 0;
    }
    if (FG_UNLIKELY(T->now.pending))
        return name_failure(T, T->now.value, 1);
    memcpy(T->grad, T->leaf_grad_before, T->leaf_count * sizeof(double));
    fg_replay_backward(&T->program, &T->now, T->leaf_count, seed, T->grad);
    T->backward_done = 1;
    T->seed = seed;
    return FG_OK;
}

/* A leaf's grad after a replay: what the replay computed from the grad it read, unless the
 * grad changed meanwhile (another thread's replay), which then gets this replay's part added. */
static double added_grad(double now, double before, double computed)
{
    if (memcmp(&now, &before, sizeof now) == 0)
        return computed;
    return now + (computed - before);
}

void fg_tape_store_leaf_grads(fg_tape *T)
{
    size_t i;
    for (i = 0; i < T->leaf_count; i++) {
        if (!FG_WANTS_GRAD(T->nodes[i]))
            continue;   /* a leaf that requires no grad keeps its grad */
#ifdef FG_THREADSAFE
        double before = T->leaf_grad_before[i], computed = T->grad[i];
#define FG_ADDED_(now) added_grad((now), before, computed)
        FG_ATOMIC_UPDATE_DOUBLE(&T->nodes[i]->grad, FG_ADDED_);
#undef FG_ADDED_
#else
        T->nodes[i]->grad = added_grad(T->nodes[i]->grad, T->leaf_grad_before[i], T->grad[i]);
#endif
    }
}

void fg_tape_store_grads(fg_tape *T)
{
    size_t i;
    fg_tape_store_leaf_grads(T);
    FG_GRAD_SET(T->nodes[T->root], T->grad[T->program.root]);
    for (i = 0; i < T->output_count; i++)
        if (T->outputs[i] >= T->leaf_count)
            FG_GRAD_SET(T->nodes[T->outputs[i]], FG_WANTS_GRAD(T->nodes[T->outputs[i]])
                                                     ? T->grad[T->program.outputs[i]] : 0.0);
    T->unsynced |= FG_TAPE_UNSYNCED_GRADS;
}

fg_status fg_tape_forward(fg_tape *T, fg_node **failed)
{
    fg_status st;
    fg_tape_load_data(T);
    if ((st = fg_tape_compute_forward(T)) != FG_OK) {
        *failed = fg_tape_failed_node(T);
        return st;
    }
    fg_tape_store_forward(T);
    return FG_OK;
}

fg_status fg_tape_backward(fg_tape *T, fg_node **failed)
{
    fg_status st;
    fg_tape_load_grads(T);
    if ((st = fg_tape_compute_backward(T)) != FG_OK) {
        *failed = fg_tape_failed_node(T);
        return st;
    }
    fg_tape_store_grads(T);
    return FG_OK;
}

fg_node *fg_tape_failed_node(const fg_tape *T)
{
    return T->failed.status == FG_OK || T->failed.status == FG_NO_MEMORY
               ? NULL : T->nodes[T->failed.slot];
}

const double *fg_tape_failed_operands(const fg_tape *T)
{
    return T->failed.operands;
}

size_t fg_tape_failed_row(const fg_tape *T)
{
    return T->failed_row;
}

int fg_tape_failed_in_backward(const fg_tape *T)
{
    return T->failed_in_backward;
}

/* ---- sync ---- */

int fg_tape_unsynced(const fg_tape *T)
{
    return T->unsynced;
}

fg_status fg_tape_sync(fg_tape *T)
{
    fg_status st;
    size_t i;
    int outputs = T->unsynced & FG_TAPE_UNSYNCED_OUTPUTS;
    if (!T->unsynced)
        return FG_OK;
    if ((st = fg_plain_prepare(T)) != FG_OK)
        return st;
    if (fg_plain_forward(T, T->now.value) != FG_OK) {
        T->unsynced = 0;    /* a run's leaves that no graph could be built at: none changes */
        return FG_OK;
    }
    if (T->backward_done && (st = fg_plain_backward(T, T->grad)) != FG_OK)
        return st;
    for (i = T->leaf_count; i < T->slots; i++) {  /* the leaves' data is the user's */
        if (T->is_output[i] && !outputs)
            continue;                             /* written by the replay already */
        if (T->unsynced & FG_TAPE_UNSYNCED_DATA)
            T->nodes[i]->data = T->plain->value[i];
        if (T->unsynced & (FG_TAPE_UNSYNCED_GRADS | FG_TAPE_UNSYNCED_OUTPUTS))
            FG_GRAD_SET(T->nodes[i], T->backward_done ? T->plain->grad[i] : 0.0);
    }
    T->unsynced = 0;
    return FG_OK;
}
