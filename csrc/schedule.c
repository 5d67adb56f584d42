/*
 * schedule.c: the plain program rescheduled and fused into the step program.
 *
 * Replay's bits depend only on two things: each node is computed from its operands by its
 * rule, and each grad receives its contributions in the plain program's order. So an entry
 * may move to another place in the program when its operands are computed before that place,
 * its result is used only after it, and no other entry adds into the grads it adds into (its
 * operands') in between. Three moves are made, each checked against that rule:
 *
 *   gathering: an n-ary node whose terms the eager order spreads over several entries runs
 *   them all at its last entry (a layer's neuron that reads the layer below, a sum whose
 *   terms are computed one by one);
 *
 *   grouping: divisions by the same denominator run together at the first of them, sharing
 *   1 / b and b * b (a softmax's outputs);
 *
 *   tails: a unary op, or an op whose other operand is a number, on a node that nothing else
 *   uses, runs right after that node's entry, with the node in a register (exp, 1 + t, log
 *   of a softplus; a neuron's relu). Such a node has one consumer, so nothing else adds into
 *   its grad, and number operands (constant leaves) are not part of the step program's grads.
 *
 * Steps are then laid out over compact slots: the leaves, the constants that steps read,
 * then each step's result in step order, so that replay walks its arrays front to back.
 */
#include <stdlib.h>
#include <string.h>

#include "tape.h"

#define NONE UINT32_MAX

/* A sorted, growable list of entries that read a slot. */
typedef struct readers {
    uint32_t *at;
    uint32_t length, capacity;
} readers;

typedef struct scheduler {
    fg_tape *T;
    readers *read;                  /* plain slot -> the entries that read it, in order */
    uint32_t *made_by;              /* plain slot -> the entry that computes it, or NONE */
    uint32_t *uses;                 /* plain slot -> operand places reading it, the root +1 */
    uint8_t *gone;                  /* entry -> absorbed into another entry's step */
    uint32_t *first;                /* entry -> NARY: the first term it runs (after gathering) */
    uint32_t *tail_next;            /* entry -> the next entry of its tail, or NONE */
    uint32_t *group_next;           /* entry -> DIVS: the next division of its group, or NONE */
    uint8_t *grouped;               /* entry -> heads a DIVS group */
    uint32_t *prev_run;             /* entry -> NARY: the node's entry before it, or NONE */
    uint32_t *scratch;              /* operand lists being looked at */
    size_t scratch_capacity;
} scheduler;

static int is_constant(const fg_tape *T, uint32_t slot)
{
    return slot >= T->leaf_count && slot < T->constant_end;
}

/* The operand slots an entry reads, into S->scratch: for an NARY entry those of the terms
 * from `first` to its last (and the start with term 0); constants and the sink are left out,
 * since the step program keeps no grads for them. Returns their number, or -1 without memory. */
static long operands_read(scheduler *S, const fg_instr *ins, uint32_t first)
{
    const fg_tape *T = S->T;
    size_t n = 0, need = 2;
    uint32_t k, j;
    if (ins->kind == FG_KIND_NARY)
        need = (size_t)(ins->u.run.last + 1 - first) * ins->stride + 1;
    if (need > S->scratch_capacity) {
        uint32_t *grown = (uint32_t *)realloc(S->scratch, need * sizeof(uint32_t));
        if (grown == NULL)
            return -1;
        S->scratch = grown;
        S->scratch_capacity = need;
    }
    if (ins->kind == FG_KIND_NARY) {
        const uint32_t *args = &T->args[ins->a + 1];
        for (k = first; k <= ins->u.run.last; k++)
            for (j = 0; j < ins->stride; j++)
                if (!is_constant(T, args[1 + k * ins->stride + j]))
                    S->scratch[n++] = args[1 + k * ins->stride + j];
        if (first == 0 && !is_constant(T, args[0]))
            S->scratch[n++] = args[0];
        return (long)n;
    }
    if (!is_constant(T, ins->a))
        S->scratch[n++] = ins->a;
    if (ins->kind == FG_KIND_BINARY && !is_constant(T, ins->b) && ins->b != ins->a)
        S->scratch[n++] = ins->b;
    return (long)n;
}

static fg_status readers_insert(readers *r, uint32_t e)
{
    uint32_t lo = 0, hi = r->length;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (r->at[mid] < e)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < r->length && r->at[lo] == e)
        return FG_OK;
    if (r->length == r->capacity) {
        uint32_t capacity = r->capacity ? 2 * r->capacity : 4;
        uint32_t *at = (uint32_t *)realloc(r->at, capacity * sizeof(uint32_t));
        if (at == NULL)
            return FG_NO_MEMORY;
        r->at = at;
        r->capacity = capacity;
    }
    memmove(r->at + lo + 1, r->at + lo, (r->length - lo) * sizeof(uint32_t));
    r->at[lo] = e;
    r->length++;
    return FG_OK;
}

static void readers_remove(readers *r, uint32_t e)
{
    uint32_t lo = 0, hi = r->length;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (r->at[mid] < e)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < r->length && r->at[lo] == e) {
        memmove(r->at + lo, r->at + lo + 1, (r->length - lo - 1) * sizeof(uint32_t));
        r->length--;
    }
}

/* Whether every entry reading `slot` strictly between positions p and q satisfies `ok`
 * (an entry of the node being gathered, a division of the group being formed). */
static int only_between(const scheduler *S, uint32_t slot, uint32_t p, uint32_t q,
                        int (*ok)(const scheduler *, uint32_t, const void *), const void *arg)
{
    const readers *r = &S->read[slot];
    uint32_t lo = 0, hi = r->length;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (r->at[mid] <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < r->length && r->at[lo] < q; lo++)
        if (!ok(S, r->at[lo], arg))
            return 0;
    return 1;
}

/* Moves entry e's reads (of the terms from `first`) to position `to`. */
static fg_status move_reads(scheduler *S, uint32_t e, uint32_t first, uint32_t to)
{
    long n = operands_read(S, &S->T->code[e], first), i;
    fg_status st = FG_OK;
    if (n < 0)
        return FG_NO_MEMORY;
    for (i = 0; i < n && st == FG_OK; i++) {
        readers_remove(&S->read[S->scratch[i]], e);
        st = readers_insert(&S->read[S->scratch[i]], to);
    }
    return st;
}

/* ---- gathering ---- */

static int of_node(const scheduler *S, uint32_t e, const void *arg)
{
    const fg_instr *ins = &S->T->code[e];
    return ins->kind == FG_KIND_NARY && ins->out == *(const uint32_t *)arg;
}

/* Whether entry e's reads may move to position `to`, later, where node `out` runs whole:
 * 1, 0, or -1 without memory. */
static int may_gather(scheduler *S, uint32_t e, uint32_t to, uint32_t out)
{
    long n = operands_read(S, &S->T->code[e], S->first[e]), i;
    if (n < 0)
        return -1;
    for (i = 0; i < n; i++)
        if (!only_between(S, S->scratch[i], e, to, of_node, &out))
            return 0;
    return 1;
}

/* Gathers every n-ary node whose entries may all move to its last one. */
static fg_status gather(scheduler *S)
{
    fg_tape *T = S->T;
    uint32_t e, from;
    fg_status st;
    for (e = 0; e < T->length; e++) {
        const fg_instr *last = &T->code[e];
        int ok = 1;
        if (last->kind != FG_KIND_NARY || last->u.run.last + 1 != last->u.run.terms
            || S->first[e] == 0)
            continue;
        for (from = S->prev_run[e]; from != NONE && ok == 1; from = S->prev_run[from])
            ok = may_gather(S, from, e, last->out);
        if (ok < 0)
            return FG_NO_MEMORY;
        if (!ok)
            continue;
        for (from = S->prev_run[e]; from != NONE; from = S->prev_run[from]) {
            if ((st = move_reads(S, from, S->first[from], e)) != FG_OK)
                return st;
            S->gone[from] = 1;
        }
        S->first[e] = 0;
    }
    return FG_OK;
}

/* ---- grouping divisions ---- */

typedef struct group {
    uint32_t head, slot;            /* the first division, the denominator */
    const uint8_t *member;          /* entry -> in the group */
} group;

static int in_group(const scheduler *S, uint32_t e, const void *arg)
{
    (void)S;
    return ((const group *)arg)->member[e];
}

static fg_status group_divisions(scheduler *S)
{
    fg_tape *T = S->T;
    uint8_t *member = (uint8_t *)calloc(T->length + 1, 1);
    uint32_t *members = (uint32_t *)malloc((T->length + 1) * sizeof(uint32_t));
    uint32_t s, i;
    fg_status st = FG_OK;
    if (member == NULL || members == NULL) {
        free(member);
        free(members);
        return FG_NO_MEMORY;
    }
    for (s = (uint32_t)T->leaf_count; s < T->slots && st == FG_OK; s++) {
        readers *r = &S->read[s];
        uint32_t count = 0, head = NONE, m;
        group g;
        if (is_constant(T, s) || r->length < 2)
            continue;
        for (i = 0; i < r->length; i++) {
            uint32_t e = r->at[i];
            const fg_instr *ins = &T->code[e];
            if (S->gone[e] || ins->op != FG_DIV || ins->b != s || ins->a == s)
                continue;
            if (head == NONE) {
                head = e;
            } else {
                uint32_t a = ins->a;
                g.head = head;
                g.slot = s;
                g.member = member;
                if (S->made_by[a] != NONE && S->made_by[a] >= head)
                    break;
                if (!only_between(S, s, head, e, in_group, &g)
                    || (!is_constant(T, a) && !only_between(S, a, head, e, in_group, &g)))
                    break;
            }
            member[e] = 1;
            members[count++] = e;
        }
        if (count >= 2) {
            S->grouped[head] = 1;
            for (m = 1; m < count && st == FG_OK; m++) {
                S->group_next[members[m - 1]] = members[m];
                S->gone[members[m]] = 1;
                st = move_reads(S, members[m], 0, head);
            }
        }
        for (m = 0; m < count; m++)
            member[members[m]] = 0;
    }
    free(member);
    free(members);
    return st;
}

/* ---- tails ---- */

/* The entry that reads node `slot` if it is its only reader and may join a tail: a unary op,
 * or a binary op whose other operand is a number (a constant leaf). */
static uint32_t tail_op_on(const scheduler *S, uint32_t slot)
{
    const fg_tape *T = S->T;
    const readers *r = &S->read[slot];
    const fg_instr *ins;
    uint32_t e;
    if (S->uses[slot] != 1 || r->length != 1)
        return NONE;
    e = r->at[0];
    ins = &T->code[e];
    if (S->gone[e] || S->grouped[e])
        return NONE;
    if (ins->kind == FG_KIND_UNARY)
        return e;
    if (ins->kind == FG_KIND_BINARY
        && ((ins->a == slot && is_constant(T, ins->b)) || (ins->b == slot && is_constant(T, ins->a))))
        return e;
    return NONE;
}

static void form_tails(scheduler *S)
{
    fg_tape *T = S->T;
    uint32_t e, next, at, length;
    for (e = 0; e < T->length; e++) {
        const fg_instr *ins = &T->code[e];
        if (S->gone[e] || S->grouped[e])
            continue;
        if (ins->kind == FG_KIND_NARY && !(S->first[e] == 0 && ins->u.run.last + 1 == ins->u.run.terms))
            continue;   /* a node split over entries keeps its grad in a slot */
        for (at = e, length = 0; length < 255 && (next = tail_op_on(S, T->code[at].out)) != NONE;
             at = next, length++) {
            S->tail_next[at] = next;
            S->gone[next] = 1;
        }
    }
}

/* ---- laying out the steps ---- */

static fg_status reserve(void **items, size_t *capacity, size_t need, size_t size)
{
    void *grown;
    size_t capacity_now = *capacity ? *capacity : 16;
    if (need <= *capacity)
        return FG_OK;
    while (capacity_now < need)
        capacity_now *= 2;
    if ((grown = realloc(*items, capacity_now * size)) == NULL)
        return FG_NO_MEMORY;
    *items = grown;
    *capacity = capacity_now;
    return FG_OK;
}

typedef struct layout {
    uint32_t *slot;                 /* plain slot -> step slot, or NONE */
    uint32_t next;                  /* the next result slot */
    size_t steps_capacity, args_capacity, micro_capacity, numbers_capacity;
    uint32_t *nary_args;            /* plain slot of an NARY node -> its operand list, or NONE */
} layout;

static fg_micro micro_of(const fg_instr *ins, uint32_t from, const fg_tape *T)
{
    fg_micro m;
    m.op = ins->op;
    m.c = ins->op == FG_POWC ? ins->u.c : 0.0;
    m.form = FG_MICRO_UNARY;
    if (ins->kind == FG_KIND_BINARY) {
        m.form = ins->a == from ? FG_MICRO_NUMBER_RIGHT : FG_MICRO_NUMBER_LEFT;
        m.c = T->nodes[ins->a == from ? ins->b : ins->a]->data;
    }
    m.code = (uint16_t)FG_MICRO_CODE(m.op, m.form);
    return m;
}

static fg_status push_step(fg_program *P, layout *L, const fg_step *step)
{
    fg_status st = reserve((void **)&P->steps, &L->steps_capacity, P->length + 1,
                           sizeof(fg_step));
    if (st == FG_OK)
        P->steps[P->length++] = *step;
    return st;
}

static fg_status push_args(fg_program *P, layout *L, size_t count)
{
    return reserve((void **)&P->args, &L->args_capacity, P->args_length + count,
                   sizeof(uint32_t));
}

/* Numbers the constants that steps read as operands (tail numbers are written into the
 * tail itself), after the leaves and before every result. */
static uint32_t number_constants(scheduler *S, layout *L)
{
    fg_tape *T = S->T;
    uint32_t e, i, next = (uint32_t)T->leaf_count;
    for (e = 0; e < T->length; e++) {
        const fg_instr *ins = &T->code[e];
        uint32_t m;
        if (S->gone[e])
            continue;
        if (ins->kind == FG_KIND_NARY) {
            for (i = 0; i < T->args[ins->a]; i++) {
                uint32_t plain = T->args[ins->a + 1 + i];
                if (is_constant(T, plain) && L->slot[plain] == NONE)
                    L->slot[plain] = next++;
            }
            continue;
        }
        for (m = e; m != NONE; m = S->group_next[m]) {
            const fg_instr *mine = &T->code[m];
            if (is_constant(T, mine->a) && L->slot[mine->a] == NONE)
                L->slot[mine->a] = next++;
            if (mine->kind == FG_KIND_BINARY && is_constant(T, mine->b) && L->slot[mine->b] == NONE)
                L->slot[mine->b] = next++;
        }
    }
    return next;
}

/* The case of replay.c's backward that runs this step. */
static uint8_t back_case(const fg_step *s)
{
    int tailed = (s->kind & FG_STEP_TAILED) != 0, stored = (s->kind & FG_STEP_STORED) != 0;
    switch (FG_STEP_KIND(s)) {
    case FG_STEP_UNARY:
        if (stored)
            return tailed ? FG_BACK_UNARY_TAILED : FG_BACK_UNARY_STORED;
        break;
    case FG_STEP_BINARY:
        if (stored)
            return tailed ? FG_BACK_BINARY_TAILED : FG_BACK_BINARY_STORED;
        break;
    case FG_STEP_DIVS:
        return FG_BACK_DIVS;
    default:
        break;
    }
    switch ((fg_op)s->code) {
#define FG_UNARY(name, symbol, forward, d_da) \
    case FG_##name: return FG_BACK_##name;
#define FG_BINARY(name, symbol, forward, d_da, d_db) \
    case FG_##name: return FG_BACK_##name;
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) \
    case FG_##name: return tailed ? FG_BACK_TAILED_##name : FG_BACK_##name;
#include "ops.def"
    default:
        return FG_BACK_DIVS;
    }
}

/* Emits the step program in the order of the entries that remain. */
static fg_status lay_out(scheduler *S, layout *L, fg_program *P)
{
    fg_tape *T = S->T;
    uint32_t e, i;
    fg_status st;
    P->constant_end = number_constants(S, L);
    L->next = (uint32_t)P->constant_end;
    if ((st = reserve((void **)&P->numbers, &L->numbers_capacity, 1, sizeof(double))) != FG_OK)
        return st;
    P->numbers[P->numbers_length++] = 0.0;      /* what the other unary heads read as c */
    P->constants = (double *)malloc((P->constant_end - T->leaf_count + 1) * sizeof(double));
    if (P->constants == NULL)
        return FG_NO_MEMORY;
    for (i = (uint32_t)T->leaf_count; i < T->constant_end; i++)
        if (L->slot[i] != NONE)
            P->constants[L->slot[i] - T->leaf_count] = T->nodes[i]->data;
    for (e = 0; e < T->length; e++) {
        const fg_instr *ins = &T->code[e];
        fg_step step;
        uint32_t at, m, tail = 0;
        if (S->gone[e])
            continue;
        memset(&step, 0, sizeof step);
        step.code = ins->op;
        if (ins->kind == FG_KIND_NARY) {
            step.kind = FG_STEP_NARY;
            step.b = S->first[e];
            step.count = ins->u.run.last;
            step.terms = ins->u.run.terms;
            if (L->nary_args[ins->out] == NONE) {   /* filled once every operand has a slot */
                if ((st = push_args(P, L, T->args[ins->a])) != FG_OK)
                    return st;
                L->nary_args[ins->out] = (uint32_t)P->args_length;
                P->args_length += T->args[ins->a];
            }
            step.a = L->nary_args[ins->out];
        } else if (S->grouped[e]) {
            step.kind = FG_STEP_DIVS;
            step.code = FG_DIVS_CODE;
            step.b = L->slot[ins->b];
            for (m = e; m != NONE; m = S->group_next[m])
                step.count++;
            if ((st = push_args(P, L, step.count)) != FG_OK)
                return st;
            step.terms = (uint32_t)P->args_length;
            for (m = e; m != NONE; m = S->group_next[m])
                P->args[P->args_length++] = L->slot[T->code[m].a];
        } else {
            step.kind = ins->kind == FG_KIND_UNARY ? FG_STEP_UNARY : FG_STEP_BINARY;
            step.a = L->slot[ins->a];
            step.b = ins->kind == FG_KIND_BINARY ? L->slot[ins->b] : (uint32_t)0;
            if (ins->op == FG_POWC) {
                if ((st = reserve((void **)&P->numbers, &L->numbers_capacity,
                                  P->numbers_length + 1, sizeof(double))) != FG_OK)
                    return st;
                step.terms = (uint32_t)P->numbers_length;
                P->numbers[P->numbers_length++] = ins->u.c;
            }
        }
        for (at = e; S->tail_next[at] != NONE; at = S->tail_next[at]) {
            if ((st = reserve((void **)&P->micro, &L->micro_capacity, P->micro_length + 1,
                              sizeof(fg_micro))) != FG_OK)
                return st;
            P->micro[P->micro_length++] = micro_of(&T->code[S->tail_next[at]], T->code[at].out, T);
            tail++;
        }
        step.tail = (uint8_t)tail;
        if (tail > 0)
            step.kind |= FG_STEP_TAILED;
        if ((step.kind & 3) <= FG_STEP_BINARY && (tail > 0 || fg_derivative_may_fail((fg_op)step.code)))
            step.kind |= FG_STEP_STORED;
        if ((step.kind & 3) <= FG_STEP_BINARY) {
            if (!FG_WANTS_GRAD(T->nodes[ins->out]))
                step.kind |= FG_STEP_QUIET;
            else if (!FG_WANTS_GRAD(T->nodes[ins->a]))
                step.kind |= FG_STEP_QUIET_A;
            if (ins->kind == FG_KIND_BINARY && !FG_WANTS_GRAD(T->nodes[ins->b]))
                step.kind |= FG_STEP_QUIET_B;
        }
        step.back = back_case(&step);
        if (step.kind == FG_STEP_DIVS) {
            step.out = L->next;
            for (m = e; m != NONE; m = S->group_next[m])
                L->slot[T->code[m].out] = L->next++;
        } else if (step.kind != FG_STEP_NARY || step.count + 1 == step.terms) {
            step.out = L->next;
            L->slot[T->code[at].out] = L->next++;
        } else {
            step.out = NONE;        /* the slot its node's last run makes, set below */
        }
        P->derivs += (size_t)tail + (!(step.kind & FG_STEP_STORED) ? 0u
                                     : (step.kind & 3) == FG_STEP_UNARY ? 1u
                                     : (step.kind & 3) == FG_STEP_BINARY ? 2u : 0u)
                     + ((step.kind & 3) == FG_STEP_DIVS ? 1u + step.count : 0u);
        if ((st = push_step(P, L, &step)) != FG_OK)
            return st;
    }
    /* the n-ary operand lists, now that every operand has its slot; an n-ary node's earlier
     * runs read its grad from the slot its last run made */
    for (e = 0; e < T->length; e++) {
        const fg_instr *ins = &T->code[e];
        if (ins->kind == FG_KIND_NARY && ins->u.run.last + 1 == ins->u.run.terms)
            for (i = 0; i < T->args[ins->a]; i++)
                P->args[L->nary_args[ins->out] + i] = L->slot[T->args[ins->a + 1 + i]];
    }
    if (P->length > 0) {
        uint32_t *made = (uint32_t *)malloc((P->args_length + 1) * sizeof(uint32_t));
        if (made == NULL)
            return FG_NO_MEMORY;
        for (i = 0; i < P->length; i++) {   /* operand list -> the slot of its node */
            const fg_step *step = &P->steps[i];
            if ((step->kind & 3) == FG_STEP_NARY && step->count + 1 == step->terms)
                made[step->a] = step->out;
        }
        for (i = 0; i < P->length; i++)
            if ((P->steps[i].kind & 3) == FG_STEP_NARY && P->steps[i].out == NONE)
                P->steps[i].out = made[P->steps[i].a];
        free(made);
    }
    P->slots = L->next;
    P->root = L->slot[T->root];
    if ((P->outputs = (uint32_t *)malloc((T->output_count + 1) * sizeof(uint32_t))) == NULL)
        return FG_NO_MEMORY;
    for (i = 0; i < T->output_count; i++)
        P->outputs[i] = L->slot[T->outputs[i]];
    return FG_OK;
}

void fg_program_free(fg_program *P)
{
    free(P->steps);
    free(P->args);
    free(P->micro);
    free(P->constants);
    free(P->numbers);
    free(P->uses);
    free(P->outputs);
    memset(P, 0, sizeof *P);
}

size_t fg_program_values(const fg_program *P)
{
    return P->slots + 1;
}

static fg_status count_reads(scheduler *S)
{
    fg_tape *T = S->T;
    uint32_t e, i, *last_run = S->made_by;  /* borrowed: node -> its latest entry so far */
    long n, j;
    fg_status st;
    for (e = 0; e < T->length; e++) {
        const fg_instr *ins = &T->code[e];
        if ((n = operands_read(S, ins, S->first[e])) < 0)
            return FG_NO_MEMORY;
        for (j = 0; j < n; j++)
            if ((st = readers_insert(&S->read[S->scratch[j]], e)) != FG_OK)
                return st;
        /* operand places, each counted as often as it appears in the node's operand list */
        if (ins->kind == FG_KIND_NARY) {
            S->prev_run[e] = last_run[ins->out];
            last_run[ins->out] = e;
            if (ins->u.run.last + 1 == ins->u.run.terms)
                for (i = 0; i < T->args[ins->a]; i++)
                    S->uses[T->args[ins->a + 1 + i]]++;
        } else {
            S->uses[ins->a]++;
            if (ins->kind == FG_KIND_BINARY)
                S->uses[ins->b]++;
        }
    }
    /* made_by: the entry that computes each node (an NARY node's last) */
    for (i = 0; i <= T->slots; i++)
        S->made_by[i] = NONE;
    for (e = 0; e < T->length; e++)
        if (T->code[e].kind != FG_KIND_NARY || T->code[e].u.run.last + 1 == T->code[e].u.run.terms)
            S->made_by[T->code[e].out] = e;
    /* the root and the outputs are read once more, by the caller: they keep their slots */
    S->uses[T->root]++;
    for (i = 0; i < T->output_count; i++)
        if (T->outputs[i] != T->root)
            S->uses[T->outputs[i]]++;
    return FG_OK;
}

fg_status fg_schedule(fg_tape *T, int fuse)
{
    scheduler S;
    layout L;
    fg_program *P = &T->program;
    size_t slots = T->slots + 1, length = T->length + 1, i;
    fg_status st = FG_NO_MEMORY;
    memset(&S, 0, sizeof S);
    memset(&L, 0, sizeof L);
    memset(P, 0, sizeof *P);
    S.T = T;
    S.read = (readers *)calloc(slots, sizeof(readers));
    S.made_by = (uint32_t *)malloc(slots * sizeof(uint32_t));
    S.uses = (uint32_t *)calloc(slots, sizeof(uint32_t));
    S.gone = (uint8_t *)calloc(length, 1);
    S.grouped = (uint8_t *)calloc(length, 1);
    S.first = (uint32_t *)malloc(length * sizeof(uint32_t));
    S.tail_next = (uint32_t *)malloc(length * sizeof(uint32_t));
    S.group_next = (uint32_t *)malloc(length * sizeof(uint32_t));
    S.prev_run = (uint32_t *)malloc(length * sizeof(uint32_t));
    L.slot = (uint32_t *)malloc(slots * sizeof(uint32_t));
    L.nary_args = (uint32_t *)malloc(slots * sizeof(uint32_t));
    if (!S.read || !S.made_by || !S.uses || !S.gone || !S.grouped || !S.first || !S.tail_next
        || !S.group_next || !S.prev_run || !L.slot || !L.nary_args)
        goto done;
    for (i = 0; i < slots; i++)
        S.made_by[i] = L.slot[i] = L.nary_args[i] = NONE;
    for (i = 0; i < T->leaf_count; i++)
        L.slot[i] = (uint32_t)i;
    for (i = 0; i < T->length; i++) {
        S.first[i] = T->code[i].kind == FG_KIND_NARY ? T->code[i].b : 0;
        S.tail_next[i] = S.group_next[i] = S.prev_run[i] = NONE;
    }
    if ((st = count_reads(&S)) != FG_OK)
        goto done;
    if (fuse) {
        if ((st = gather(&S)) != FG_OK || (st = group_divisions(&S)) != FG_OK)
            goto done;
        form_tails(&S);
    }
    if ((st = lay_out(&S, &L, P)) != FG_OK)
        goto done;
    /* operand places per step slot, for the rows executor's plan */
    if ((P->uses = (uint32_t *)calloc(P->slots + 1, sizeof(uint32_t))) == NULL) {
        st = FG_NO_MEMORY;
        goto done;
    }
    for (i = 0; i < T->slots; i++)
        if (L.slot[i] != NONE)
            P->uses[L.slot[i]] = S.uses[i];
    st = FG_OK;
done:
    if (S.read != NULL)
        for (i = 0; i < slots; i++)
            free(S.read[i].at);
    free(S.read);
    free(S.made_by);
    free(S.uses);
    free(S.gone);
    free(S.grouped);
    free(S.first);
    free(S.tail_next);
    free(S.group_next);
    free(S.prev_run);
    free(S.scratch);
    free(L.slot);
    free(L.nary_args);
    if (st != FG_OK)
        fg_program_free(P);
    return st;
}
