/*
 * rows.c: run(), the step program replayed over the rows of a dataset, a block of rows at a
 * time, on worker threads.
 *
 * A block holds B rows side by side: every slot whose value differs between rows (a fed leaf,
 * a step's result) has a row of B lanes, and each step's rule runs over the lanes in one loop
 * that the compiler vectorises, so the dispatch is paid once per block and the arithmetic is
 * the same IEEE operations per row (no contraction, libm called per element). Parameters and
 * constants, the same in every row, stay single numbers.
 *
 * The contract fixes the order of the leaves' grads: each row's gradient from zero, added to
 * the leaf's grad row after row. So a run goes in chunks of one block per thread, in two
 * phases. Phase 1: each thread replays its block, forward and backward, into its own buffer,
 * the rows' gradients of the fed leaves and of the parameters that have lanes staying there.
 * Phase 2: each thread adds, for the leaves it owns, the chunk's rows into their grads in row
 * order. A parameter used once, as a term of an n-ary node (a weight of a neuron), gets no
 * lanes at all: phase 2 computes its row gradients from the node's grad and the term's other
 * operand, which the block keeps. One that several n-ary terms read and nothing else (a
 * weight that several dots read) gets none either: phase 2 forms each row's gradient from
 * its uses, in backward's order, before adding it. Leaves are split between threads, never
 * rows of a leaf, so the bits are those of one thread.
 */
#include <stdlib.h>
#include <string.h>

#include "rows.h"
#include "threads.h"

/* The last run's plan, and the buffers it ran in, kept for the next run with the same fed
 * leaves, rows per block and threads (a training loop's every call). */
struct fg_rows_cache {
    fg_plan plan;
    run_context kept;
    int has_kept;
};

static void plan_free(fg_plan *p)
{
    free(p->fed);
    free(p->lane);
    free(p->summed);
    free(p->deferred);
    free(p->terms);
    free(p->shared);
    free(p->uses);
    free(p->on_lanes);
    free(p->lead);
    free(p->head_of);
    free(p->quiet_x);
    free(p->layer);
    free(p->in_layer);
    free(p->layer_member);
    free(p->layer_at);
    free(p->layer_color);
    memset(p, 0, sizeof *p);
}

static void forget_buffers(run_context *ctx);

/* `count` doubles starting on a cache line (so that no 64-byte vector load of a row of lanes
 * straddles two lines), zeroed if `zero`, or NULL; given back with free_lines. The address
 * malloc returned is kept just before them. */
#define LINE 64
static double *alloc_lines(size_t count, int zero)
{
    size_t bytes = (count + 1) * sizeof(double);
    unsigned char *raw = (unsigned char *)malloc(bytes + LINE + sizeof(void *)), *lines;
    if (raw == NULL)
        return NULL;
    lines = raw + sizeof(void *);
    lines += (LINE - (uintptr_t)lines % LINE) % LINE;
    memcpy(lines - sizeof(void *), &raw, sizeof raw);
    if (zero)
        memset(lines, 0, bytes);
    return (double *)lines;
}

static void free_lines(double *lines)
{
    void *raw;
    if (lines == NULL)
        return;
    memcpy(&raw, (unsigned char *)lines - sizeof(void *), sizeof raw);
    free(raw);
}

static size_t min_work_per_thread = MIN_WORK_PER_THREAD;

size_t fg_run_min_work(size_t node_rows)
{
    size_t before = min_work_per_thread;
    min_work_per_thread = node_rows;
    return before;
}

void fg_rows_cache_free(fg_rows_cache *cache)
{
    if (cache != NULL) {
        plan_free(&cache->plan);
        if (cache->has_kept)
            forget_buffers(&cache->kept);
    }
    free(cache);
}

static int is_leaf(const fg_tape *T, uint32_t slot)
{
    return slot < T->leaf_count;
}

/* ---- the plan ---- */

/* Whether terms first.. of a DOT read, as their second operand, only leaves that require no
 * grad. */
static uint8_t lanes_want_no_grad(const fg_tape *T, const uint32_t *args, uint32_t first,
                                  uint32_t terms)
{
    uint32_t k;
    for (k = first; k < terms; k++)
        if (!is_leaf(T, args[2 + 2 * k]) || FG_WANTS_GRAD(T->nodes[args[2 + 2 * k]]))
            return 0;
    return 1;
}

static int grow_terms(fg_plan *p)
{
    if (p->terms_count == p->terms_capacity) {
        size_t capacity = p->terms_capacity ? 2 * p->terms_capacity : 64;
        void *grown = realloc(p->terms, capacity * sizeof(deferred_term));
        if (grown == NULL)
            return 0;
        p->terms = (deferred_term *)grown;
        p->terms_capacity = capacity;
    }
    return 1;
}

/* The column of X that a DOT's first term's second operand comes from, if every term's comes
 * from the next column (a neuron over the inputs in order), so that X's rows are the
 * partners' values row-major; else NONE. */
static size_t fed_columns(const fg_tape *T, const fg_run *job, const uint32_t *args,
                          uint32_t terms)
{
    size_t j, column = NONE;
    uint32_t k;
    for (j = 0; j < job->input_count; j++)
        if (job->inputs[j] == args[2])
            column = j;
    if (column == NONE || column + terms > job->input_count || !is_leaf(T, args[2]))
        return NONE;
    for (k = 1; k < terms; k++)
        if (job->inputs[column + k] != args[2 + 2 * k])
            return NONE;
    return column;
}

static int compare_slots(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* Whether a dot's inputs are all different: a layer group's backward adds into its inputs'
 * grads input by input, which for an input read twice would not be the eager order of
 * additions (each neuron's terms last-first). */
static int inputs_distinct(const uint32_t *args, uint32_t terms)
{
    uint32_t *sorted = (uint32_t *)malloc((terms + 1) * sizeof(uint32_t)), k;
    int distinct = sorted != NULL;
    for (k = 0; distinct && k < terms; k++)
        sorted[k] = args[2 + 2 * k];
    if (distinct)
        qsort(sorted, terms, sizeof(uint32_t), compare_slots);
    for (k = 1; distinct && k < terms; k++)
        distinct = sorted[k] != sorted[k - 1];
    free(sorted);
    return distinct;
}

/* Whether fast DOT step j can join the layer group that starts at step `first`: the same
 * inputs, all different, and a start that is neither an input nor a member's result, made
 * before `first` (whose forward makes every member's head). */
static int joins_layer(const fg_program *P, size_t first, size_t j)
{
    const fg_step *a = &P->steps[first], *b = &P->steps[j];
    const uint32_t *aa = P->args + a->a, *ba = P->args + b->a;
    uint32_t k;
    if (a->terms != b->terms || (j != first && ba[0] >= a->out))
        return 0;
    for (k = 0; k < a->terms; k++)
        if (aa[2 + 2 * k] != ba[2 + 2 * k] || aa[2 + 2 * k] == ba[0])
            return 0;
    return j != first || inputs_distinct(aa, a->terms);
}

/* The slots step s reads, as a list (pair holds a unary or binary step's); how many. */
static size_t step_reads(const fg_program *P, const fg_step *s, const uint32_t **list,
                         uint32_t pair[2])
{
    switch (FG_STEP_KIND(s)) {
    case FG_STEP_UNARY:
        pair[0] = s->a;
        *list = pair;
        return 1;
    case FG_STEP_BINARY:
        pair[0] = s->a;
        pair[1] = s->b;
        *list = pair;
        return 2;
    case FG_STEP_DIVS:
        *list = P->args + s->terms;
        return s->count;    /* and the denominator b, which the callers take apart */
    default:
        *list = P->args + s->a;
        return 1 + fg_stride((fg_op)s->code) * s->terms;
    }
}

/* Whether step s reads a slot marked in `marks`. */
static int reads_marked(const fg_program *P, const fg_step *s, const uint8_t *marks)
{
    const uint32_t *list;
    uint32_t pair[2];
    size_t k, count = step_reads(P, s, &list, pair);
    if (FG_STEP_KIND(s) == FG_STEP_DIVS && marks[s->b])
        return 1;
    for (k = 0; k < count; k++)
        if (marks[list[k]])
            return 1;
    return 0;
}

/* Marks slot x, noting it in touched (to be cleared after). */
static void mark(uint8_t *marks, uint32_t x, uint32_t *touched, size_t *count)
{
    if (!marks[x]) {
        marks[x] = 1;
        touched[(*count)++] = x;
    }
}

/* The most steps between a layer group's first and last member that are not members (a
 * forward-mode graph's other dots and unit rules, neuron after neuron). */
#define MAX_BETWEEN 96

/* Layer groups: up to MAX_LAYER fast DOT steps that join the first. Other steps may lie
 * between them, other groups' members among them, none reading a member's operand that has
 * lanes (its inputs, a start with lanes): the group's backward runs at its first member,
 * after theirs, and adds into those operands' grads alone, so each grad still takes its
 * additions in the plain program's order (a weight's are phase 2's, in backward's order
 * whatever the order here). Groups whose members interleave take different colours, their
 * members' tail derivatives kept apart while backward walks between them. */
static fg_status find_layers(const fg_program *P, fg_plan *p, size_t values)
{
    size_t i, j, q, marked = 0;
    size_t open_until[MAX_OPEN] = {0};    /* each colour's group's last member (0: none) */
    uint8_t *member_operand = (uint8_t *)calloc(values + 1, 1);
    uint8_t *read_between = (uint8_t *)calloc(values + 1, 1);
    uint32_t *touched = (uint32_t *)malloc((values + 1) * sizeof(uint32_t));
    if (member_operand == NULL || read_between == NULL || touched == NULL) {
        free(member_operand);
        free(read_between);
        free(touched);
        return FG_NO_MEMORY;
    }
    for (i = 0; i < P->length; i++) {
        size_t members[MAX_LAYER], g = 1, b = 0, colour;
        const fg_step *first = &P->steps[i];
        const uint32_t *args = P->args + first->a;
        if (p->in_layer[i] > 0 || p->on_lanes[i] != NARY_DOT_PARAMS_LANES || !joins_layer(P, i, i))
            continue;
        for (colour = 0; colour < MAX_OPEN && open_until[colour] > i; colour++)
            ;
        if (colour == MAX_OPEN)
            continue;
        members[0] = i;
        for (q = 0; q < first->terms; q++)
            if (p->lane[args[2 + 2 * q]] != NONE)
                mark(member_operand, args[2 + 2 * q], touched, &marked);
        if (p->lane[args[0]] != NONE)
            mark(member_operand, args[0], touched, &marked);
        for (j = i + 1; j < P->length && g < MAX_LAYER; j++) {
            const fg_step *s = &P->steps[j];
            if (p->in_layer[j] == 0 && p->on_lanes[j] == NARY_DOT_PARAMS_LANES
                && joins_layer(P, i, j)) {
                uint32_t start = P->args[s->a];
                if (p->lane[start] != NONE && read_between[start])
                    break;
                members[g++] = j;
                if (p->lane[start] != NONE)
                    mark(member_operand, start, touched, &marked);
            } else {
                const uint32_t *list;
                uint32_t pair[2];
                size_t k, count;
                if (b == MAX_BETWEEN || reads_marked(P, s, member_operand))
                    break;
                b++;
                count = step_reads(P, s, &list, pair);
                for (k = 0; k < count; k++)
                    mark(read_between, list[k], touched, &marked);
                if (FG_STEP_KIND(s) == FG_STEP_DIVS)
                    mark(read_between, s->b, touched, &marked);
            }
        }
        while (marked > 0) {
            marked--;
            member_operand[touched[marked]] = 0;
            read_between[touched[marked]] = 0;
        }
        if (g > 1) {
            p->layer[i] = (uint8_t)g;
            p->layer_at[i] = (uint32_t)p->layer_members;
            for (q = 0; q < g; q++) {
                p->in_layer[members[q]] = (uint8_t)(q + 1);
                p->layer_color[members[q]] = (uint8_t)colour;
                p->layer_member[p->layer_members++] = (uint32_t)members[q];
            }
            open_until[colour] = members[g - 1];
        }
    }
    free(member_operand);
    free(read_between);
    free(touched);
    return FG_OK;
}

/* The uses of the shared parameters, each one's in backward's order: steps last first, an
 * n-ary step's terms last first, and in a term the start (term 0's), then its operands. */
static fg_status list_shared_uses(const fg_program *P, fg_plan *p, const uint32_t *shared_of)
{
    size_t i, total = 0, pass;
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < p->shared_count; i++)
            p->shared[i].count = 0;
        for (i = P->length; i-- > 0;) {
            const fg_step *s = &P->steps[i];
            const uint32_t *args = P->args + s->a;
            uint32_t stride, k, side;
            if (FG_STEP_KIND(s) != FG_STEP_NARY)
                continue;
            stride = fg_stride((fg_op)s->code);
            for (k = s->count + 1; k-- > s->b;)
                for (side = 0; side < 3; side++) {
                    uint32_t slot = side == 0 ? (k == 0 ? args[0] : NONE)
                                    : side == 1 ? args[1 + k * stride]
                                    : stride > 1 ? args[2 + k * stride] : NONE;
                    shared_param *sp;
                    if (slot == NONE || shared_of[slot] == NONE)
                        continue;
                    sp = &p->shared[shared_of[slot]];
                    if (pass == 1) {
                        shared_use *u = &p->uses[sp->first + sp->count];
                        u->step = (uint32_t)i;
                        u->k = k;
                        u->side = side == 0 ? 2 : side - 1;
                    }
                    sp->count++;
                }
        }
        if (pass == 0) {
            for (i = 0; i < p->shared_count; i++) {
                p->shared[i].first = (uint32_t)total;
                total += p->shared[i].count;
            }
            if ((p->uses = (shared_use *)malloc((total + 1) * sizeof(shared_use))) == NULL)
                return FG_NO_MEMORY;
        }
    }
    return FG_OK;
}

static fg_status make_plan(const fg_tape *T, const fg_run *job, fg_plan *p)
{
    const fg_program *P = &T->program;
    size_t i, j, values = fg_program_values(P);
    uint32_t *reads_in_steps = NULL;    /* slot -> reads outside n-ary steps */
    uint32_t *shared_of = NULL;         /* slot -> its index in p->shared, or NONE */
    uint8_t *fed = NULL;
    fg_status st = FG_NO_MEMORY;
    memset(p, 0, sizeof *p);
    p->fed_count = job->input_count + job->target_count;
    p->fed = (size_t *)malloc((p->fed_count + 1) * sizeof(size_t));
    p->lane = (uint32_t *)malloc(values * sizeof(uint32_t));
    p->summed = (uint32_t *)malloc((T->leaf_count + 1) * sizeof(uint32_t));
    p->on_lanes = (uint8_t *)calloc(P->length + 1, 1);
    p->lead = (uint32_t *)calloc(P->length + 1, sizeof(uint32_t));
    p->head_of = (uint32_t *)malloc((P->length + 1) * sizeof(uint32_t));
    p->quiet_x = (uint8_t *)calloc(P->length + 1, 1);
    p->layer = (uint8_t *)calloc(P->length + 1, 1);
    p->in_layer = (uint8_t *)calloc(P->length + 1, 1);
    p->layer_member = (uint32_t *)malloc((P->length + 1) * sizeof(uint32_t));
    p->layer_at = (uint32_t *)malloc((P->length + 1) * sizeof(uint32_t));
    p->layer_color = (uint8_t *)calloc(P->length + 1, 1);
    reads_in_steps = (uint32_t *)calloc(values, sizeof(uint32_t));
    shared_of = (uint32_t *)malloc(values * sizeof(uint32_t));
    p->shared = (shared_param *)malloc((T->leaf_count + 1) * sizeof(shared_param));
    fed = (uint8_t *)calloc(T->leaf_count + 1, 1);
    if (!p->fed || !p->lane || !p->summed || !p->on_lanes || !p->lead || !p->head_of
        || !p->quiet_x || !p->layer
        || !p->in_layer || !p->layer_member || !p->layer_at || !p->layer_color || !reads_in_steps || !shared_of || !p->shared || !fed)
        goto done;
    for (i = 0; i < job->input_count; i++)
        p->fed[i] = job->inputs[i];
    for (i = 0; i < job->target_count; i++)
        p->fed[job->input_count + i] = job->targets[i];
    for (i = 0; i < p->fed_count; i++)
        fed[p->fed[i]] = 1;
    /* operand places outside n-ary steps need lanes whatever they hold */
    for (i = 0; i < P->length; i++) {
        const fg_step *s = &P->steps[i];
        p->head_of[i] = NONE;
        switch (FG_STEP_KIND(s)) {
        case FG_STEP_UNARY:
            reads_in_steps[s->a]++;
            break;
        case FG_STEP_BINARY:
            reads_in_steps[s->a]++;
            reads_in_steps[s->b]++;
            break;
        case FG_STEP_DIVS:
            reads_in_steps[s->b]++;
            for (j = 0; j < s->count; j++)
                reads_in_steps[P->args[s->terms + j]]++;
            break;
        default:
            break;
        }
    }
    for (i = 0; i < T->output_count; i++)    /* the outputs are read by the result rows */
        reads_in_steps[P->outputs[i]]++;
    /* lanes: every fed leaf and step result; a parameter or constant read outside n-ary
     * steps (broadcast once), or an output; the root. A parameter that only n-ary terms read
     * has none: read once it is deferred, read more often shared. */
    for (i = 0; i < values; i++) {
        int lanes = i >= P->constant_end || (is_leaf(T, (uint32_t)i) && fed[i])
                    || reads_in_steps[i] > 0 || i == P->root;
        p->lane[i] = lanes && i < P->slots ? (uint32_t)p->lanes++ : NONE;
        shared_of[i] = NONE;
        if (lanes && is_leaf(T, (uint32_t)i))
            p->summed[p->summed_count++] = (uint32_t)i;
        else if (!lanes && is_leaf(T, (uint32_t)i) && P->uses[i] > 1) {
            shared_of[i] = (uint32_t)p->shared_count;
            p->shared[p->shared_count++].leaf = (uint32_t)i;
        }
    }
    /* n-ary steps: the parameters used once in them are deferred to phase 2 */
    p->deferred = (deferred_step *)malloc((P->length + 1) * sizeof(deferred_step));
    if (p->deferred == NULL)
        goto done;
    for (i = 0; i < P->length; i++) {
        const fg_step *s = &P->steps[i];
        const uint32_t *args = P->args + s->a;
        uint32_t stride, k, first_term, lead = 0, all_sum_lanes = 1, count = 0, shares = 0;
        if (FG_STEP_KIND(s) != FG_STEP_NARY)
            continue;
        stride = fg_stride((fg_op)s->code);
        first_term = (uint32_t)p->terms_count;
        for (k = s->b; k <= s->count; k++) {
            uint32_t side;
            for (side = 0; side < stride; side++) {
                uint32_t slot = args[1 + k * stride + side];
                if (shared_of[slot] != NONE) {
                    shares = 1;
                } else if (p->lane[slot] == NONE && is_leaf(T, slot)) {
                    deferred_term t;
                    if (!grow_terms(p))
                        goto done;
                    t.leaf = slot;
                    t.k = k;
                    t.side = side;
                    p->terms[p->terms_count++] = t;
                    count++;
                }
            }
            if (stride == 2 && !(p->lane[args[1 + 2 * k]] == NONE && p->lane[args[2 + 2 * k]] != NONE))
                lead = k + 1;   /* the fast terms come after this one */
            if (stride == 1 && p->lane[args[1 + k]] == NONE)
                all_sum_lanes = 0;
        }
        if (s->b == 0 && shared_of[args[0]] != NONE) {
            shares = 1;
        } else if (s->b == 0 && p->lane[args[0]] == NONE && is_leaf(T, args[0])) {
            deferred_term t;
            if (!grow_terms(p))
                goto done;
            t.leaf = args[0];
            t.k = 0;
            t.side = 2;
            p->terms[p->terms_count++] = t;
            count++;
        }
        if (stride == 2 && s->b == 0 && s->count + 1 == s->terms && lead == 0) {
            p->on_lanes[i] = NARY_DOT_PARAMS_LANES;
        } else if (stride == 2 && s->b == 0 && s->count + 1 == s->terms && lead <= MAX_LEAD
                   && lead < s->terms) {
            p->on_lanes[i] = NARY_DOT_LED;
            p->lead[i] = lead;
        } else if (stride == 1 && all_sum_lanes)
            p->on_lanes[i] = NARY_SUM_LANES;
        if (FAST_DOT(p, i))
            p->quiet_x[i] = lanes_want_no_grad(T, args, FAST_FROM(p, i), s->terms);
        if (count > 0 || shares) {     /* phase 2 reads the node's grads */
            deferred_step *d = &p->deferred[p->deferred_count];
            d->step = (uint32_t)i;
            d->head = (uint32_t)p->deferred_count;
            d->first = first_term;
            d->count = count;
            d->dot_fast = p->on_lanes[i] == NARY_DOT_PARAMS_LANES && count >= s->terms
                          && p->terms[first_term + s->terms - 1].side == 0;
            d->column = d->dot_fast ? fed_columns(T, job, args, s->terms) : NONE;
            d->partners = (uint32_t)p->deferred_count;
            if (d->dot_fast && p->deferred_count > 0) {
                const deferred_step *prev = &p->deferred[p->deferred_count - 1];
                const fg_step *ps = &P->steps[prev->step];
                if (prev->dot_fast && ps->terms == s->terms) {
                    const uint32_t *pargs = P->args + ps->a;
                    uint32_t q;
                    for (q = 0; q < s->terms && pargs[2 + 2 * q] == args[2 + 2 * q]; q++)
                        ;
                    if (q == s->terms)
                        d->partners = prev->partners;
                }
            }
            p->head_of[i] = d->head;
            p->deferred_count++;
        }
    }
    st = find_layers(P, p, values);
    if (st == FG_OK)
        st = list_shared_uses(P, p, shared_of);
done:
    free(reads_in_steps);
    free(shared_of);
    free(fed);
    if (st != FG_OK)
        plan_free(p);
    return st;
}

/* The plan for this run's fed leaves: the cached one if they are the same. */
static void forget_buffers(run_context *ctx);

static fg_status plan_for(fg_tape *T, const fg_run *job, const fg_plan **out)
{
    fg_rows_cache *cache = T->rows;
    size_t i, count = job->input_count + job->target_count;
    fg_status st;
    if (cache != NULL && cache->plan.fed_count == count) {
        int same = 1;
        for (i = 0; i < job->input_count && same; i++)
            same = cache->plan.fed[i] == job->inputs[i];
        for (i = 0; i < job->target_count && same; i++)
            same = cache->plan.fed[job->input_count + i] == job->targets[i];
        if (same) {
            *out = &cache->plan;
            return FG_OK;
        }
    }
    if (cache == NULL) {
        if ((cache = (fg_rows_cache *)calloc(1, sizeof *cache)) == NULL)
            return FG_NO_MEMORY;
        T->rows = cache;
    }
    plan_free(&cache->plan);
    if (cache->has_kept)
        forget_buffers(&cache->kept);
    cache->has_kept = 0;
    if ((st = make_plan(T, job, &cache->plan)) != FG_OK)
        return st;
    *out = &cache->plan;
    return FG_OK;
}

/* ---- the run ---- */

typedef struct worker {
    run_context *ctx;
    unsigned index;
} worker;

/* The block executor this CPU runs best. */
static void work(run_context *ctx, unsigned t)
{
    ctx->kernel->work(ctx, t);
}

static void work_on_thread(void *p)
{
    worker *w = (worker *)p;
    if (fg_gate_wait(w->ctx->gate))
        work(w->ctx, w->index);
}

/* Phase 2's item i: its additions per row. */
static size_t work_cost(const fg_plan *plan, size_t i)
{
    if (i < plan->summed_count)
        return 1;
    i -= plan->summed_count;
    if (i < plan->deferred_count)
        return plan->deferred[i].count;
    return plan->shared[i - plan->deferred_count].count;
}

/* Phase 2's items shared between the threads, each a contiguous share of about equal cost. */
static fg_status split_work(run_context *ctx)
{
    const fg_plan *plan = ctx->plan;
    size_t items = plan->summed_count + plan->deferred_count + plan->shared_count;
    size_t i, t, total = 0, done = 0;
    ctx->work = (uint32_t *)malloc((items + 1) * sizeof(uint32_t));
    ctx->split = (size_t *)malloc((ctx->threads + 1) * sizeof(size_t));
    if (ctx->work == NULL || ctx->split == NULL)
        return FG_NO_MEMORY;
    for (i = 0; i < items; i++) {
        ctx->work[i] = (uint32_t)i;
        total += work_cost(plan, i);
    }
    ctx->split[0] = 0;
    for (i = 0, t = 1; i < items; i++) {
        done += work_cost(plan, i);
        while (t < ctx->threads && done * ctx->threads >= total * t)
            ctx->split[t++] = i + 1;
    }
    while (t <= ctx->threads)
        ctx->split[t++] = items;
    return FG_OK;
}

/* The fast DOT steps' input rows, laid out contiguously for their loops, and room for their
 * weights (fast_weights fills it, every run): their fast terms', a step's from FAST_FROM. */
static fg_status fast_dots(run_context *ctx)
{
    const fg_program *P = ctx->P;
    size_t i, total = 0, at = 0;
    uint32_t k;
    for (i = 0; i < P->length; i++)
        if (FAST_DOT(ctx->plan, i))
            total += P->steps[i].terms - FAST_FROM(ctx->plan, i);
    ctx->fast_w = (double *)malloc((total + 1) * sizeof(double));
    ctx->fast_x = (size_t *)malloc((total + 1) * sizeof(size_t));
    ctx->fast_at = (size_t *)malloc((P->length + 1) * sizeof(size_t));
    if (ctx->fast_w == NULL || ctx->fast_x == NULL || ctx->fast_at == NULL)
        return FG_NO_MEMORY;
    for (i = 0; i < P->length; i++) {
        const fg_step *s = &P->steps[i];
        const uint32_t *args = P->args + s->a;
        ctx->fast_at[i] = at;
        if (!FAST_DOT(ctx->plan, i))
            continue;
        for (k = FAST_FROM(ctx->plan, i); k < s->terms; k++, at++)
            ctx->fast_x[at] = (size_t)ctx->plan->lane[args[2 + 2 * k]] * ctx->n;
    }
    return FG_OK;
}

/* The fast DOT steps' weights as this run reads them. */
static void fast_weights(run_context *ctx)
{
    const fg_program *P = ctx->P;
    size_t i, at;
    uint32_t k;
    for (i = 0; i < P->length; i++) {
        const uint32_t *args = P->args + P->steps[i].a;
        if (!FAST_DOT(ctx->plan, i))
            continue;
        for (k = FAST_FROM(ctx->plan, i), at = ctx->fast_at[i]; k < P->steps[i].terms; k++, at++)
            ctx->fast_w[at] = ctx->scalars[args[1 + 2 * k]];
    }
}

/* Lanes per block: no more than fit its rows in BLOCK_BYTES (8 to MAX_LANES), then as few as
 * cut the rows into that many blocks (at least one per thread) with the least padding; a
 * multiple of 8, for the loops that take 8 rows at a time. */
static size_t lanes_per_block(const fg_tape *T, const fg_plan *plan, size_t rows,
                              unsigned threads)
{
    size_t per_lane = (2 * plan->lanes + T->program.derivs + 3 * plan->deferred_count + 3 + MAX_LAYER)
                      * sizeof(double);
    size_t most = BLOCK_BYTES / per_lane / 8 * 8, blocks;
    if (most > MAX_LANES)
        most = MAX_LANES;
    if (most < 8)
        most = 8;
    blocks = (rows + most - 1) / most;
    if (blocks < threads)
        blocks = threads < (rows + 7) / 8 ? threads : (rows + 7) / 8;
    return ((rows + blocks - 1) / blocks + 7) / 8 * 8;
}

/* Frees every buffer of a run context. */
static void forget_buffers(run_context *ctx)
{
    unsigned t;
    if (ctx->buffers != NULL)
        for (t = 0; t < ctx->threads; t++) {
            free_lines(ctx->buffers[t].value);
            free_lines(ctx->buffers[t].grad);
            free_lines(ctx->buffers[t].deriv);
            free_lines(ctx->buffers[t].head);
            free_lines(ctx->buffers[t].scratch);
        }
    free(ctx->buffers);
    if (ctx->partners != NULL)
        for (t = 0; t < ctx->threads; t++)
            free_lines(ctx->partners[t]);
    free(ctx->partners);
    if (ctx->row_sums != NULL)
        for (t = 0; t < ctx->threads; t++)
            free_lines(ctx->row_sums[t]);
    free(ctx->row_sums);
    free(ctx->partners_tag);
    free(ctx->accumulators);
    free(ctx->fast_w);
    free(ctx->fast_x);
    free(ctx->fast_at);
    free(ctx->work);
    free(ctx->split);
    free(ctx->totals);
    free((double *)ctx->scalars);
    memset(ctx, 0, sizeof *ctx);
}

/* The buffers of a run with this plan, rows per block and threads. */
static fg_status make_buffers(const fg_tape *T, run_context *ctx)
{
    const fg_program *P = &T->program;
    unsigned t;
    size_t i;
    ctx->scalars = (double *)calloc(fg_program_values(P), sizeof(double));
    ctx->totals = (double *)malloc((T->leaf_count + 1) * sizeof(double));
    ctx->buffers = (block *)calloc(ctx->threads, sizeof(block));
    ctx->accumulators = (double *)malloc((ctx->plan->terms_count + 1) * sizeof(double));
    ctx->partners = (double **)calloc(ctx->threads, sizeof(double *));
    ctx->row_sums = (double **)calloc(ctx->threads, sizeof(double *));
    ctx->partners_tag = (size_t *)malloc(ctx->threads * sizeof(size_t));
    if (!ctx->scalars || !ctx->totals || !ctx->buffers || !ctx->accumulators || !ctx->partners
        || !ctx->row_sums || !ctx->partners_tag || split_work(ctx) != FG_OK || fast_dots(ctx) != FG_OK)
        return FG_NO_MEMORY;
    for (i = 0; i < ctx->plan->deferred_count; i++) {
        const deferred_step *ds = &ctx->plan->deferred[i];
        if (ds->dot_fast && ds->column == NONE && P->steps[ds->step].terms > ctx->partners_width)
            ctx->partners_width = P->steps[ds->step].terms;
    }
    for (t = 0; t < ctx->threads; t++) {
        block *blk = &ctx->buffers[t];
        ctx->partners[t] = alloc_lines(ctx->partners_width * ctx->n, 0);
        ctx->row_sums[t] = alloc_lines(SIDE_BY_SIDE * ctx->n, 0);
        blk->value = alloc_lines(ctx->plan->lanes * ctx->n, 1);
        blk->grad = alloc_lines(ctx->plan->lanes * ctx->n, 0);
        blk->deriv = alloc_lines(P->derivs * ctx->n, 0);
        blk->head = alloc_lines(3 * ctx->plan->deferred_count * ctx->n, 0);
        blk->scratch = alloc_lines((3 + MAX_LAYER) * ctx->n, 0);
        if (!ctx->partners[t] || !ctx->row_sums[t] || !blk->value || !blk->grad || !blk->deriv || !blk->head
            || !blk->scratch)
            return FG_NO_MEMORY;
    }
    return FG_OK;
}

/* The leaves' values of one row, in the step program's layout. */
static void row_leaves(const fg_tape *T, const fg_run *job, size_t row, double *leaves)
{
    size_t j;
    memcpy(leaves, T->leaf_data, T->leaf_count * sizeof(double));
    for (j = 0; j < job->input_count; j++)
        leaves[job->inputs[j]] = job->X[row * job->input_count + j];
    for (j = 0; j < job->target_count; j++)
        leaves[job->targets[j]] = job->Y[row * job->target_count + j];
}

/* Names the first failing row of a chunk whose blocks reported a failure, by the plain
 * program, as one-row replay would raise it. */
static fg_status name_failed_row(fg_tape *T, const run_context *ctx)
{
    size_t row = ctx->failed_chunk * ctx->threads * ctx->n;
    double *leaves = (double *)malloc((T->leaf_count + 1) * sizeof(double));
    fg_status st = leaves == NULL ? FG_NO_MEMORY : fg_plain_prepare(T);
    for (; st == FG_OK && row < ctx->job->rows; row++) {
        row_leaves(T, ctx->job, row, leaves);
        st = fg_plain_forward(T, leaves);
        T->failed_in_backward = ctx->job->backward && st == FG_OK
                                && T->plain->pending.status != FG_OK;
        if (T->failed_in_backward) {
            T->failed = T->plain->pending;
            st = T->failed.status;
        }
        T->failed_row = row;
    }
    free(leaves);
    return st == FG_OK ? FG_BAD_ARGUMENT : st;  /* (none failing would be a bug) */
}

fg_status fg_tape_run_plan(const fg_tape *T, fg_plan_step *steps, size_t *lanes,
                           size_t *rows_per_block)
{
    const fg_program *P = &T->program;
    const fg_rows_cache *cache = T->rows;
    const fg_plan *p;
    size_t i, q;
    if (cache == NULL || !cache->has_kept)
        return FG_BAD_ARGUMENT;
    p = &cache->plan;
    for (i = 0; i < P->length; i++) {
        const fg_step *s = &P->steps[i];
        fg_plan_step *out = &steps[i];
        out->kind = (int)FG_STEP_KIND(s);
        out->op = (int)FG_STEP_OP(s);
        out->tail = (int)s->tail;
        out->loop = FG_STEP_KIND(s) == FG_STEP_NARY ? (int)p->on_lanes[i] : 0;
        out->layer = -1;
        out->colour = p->layer_color[i];
    }
    for (i = 0; i < P->length; i++)
        for (q = 0; q < p->layer[i]; q++)
            steps[p->layer_member[p->layer_at[i] + q]].layer = (long)i;
    *lanes = p->lanes;
    *rows_per_block = cache->kept.n;
    return FG_OK;
}

void fg_tape_load_run(fg_tape *T)
{
    fg_tape_load_data(T);
    fg_tape_load_grads(T);
}

fg_status fg_tape_compute_run(fg_tape *T, const fg_run *job)
{
    const fg_program *P = &T->program;
    const fg_plan *plan;
    fg_rows_cache *cache;
    run_context ctx;
    fg_thread **threads = NULL;
    worker *workers = NULL;
    unsigned t, started = 0, wanted;
    size_t i, n;
    fg_status st;
    if (job->rows == 0)
        return FG_OK;
    if ((st = plan_for(T, job, &plan)) != FG_OK)
        return st;
    cache = T->rows;
    wanted = job->threads < 1 ? 1 : job->threads;
    if (min_work_per_thread > 0) {  /* (tests set 0: every thread they ask for runs) */
        /* the most threads with that much work each, at least 1 */
        size_t shares = job->rows * T->slots / min_work_per_thread;
        if (shares < wanted)
            wanted = shares > 1 ? (unsigned)shares : 1;
        /* only on cores nothing else wants: a worker that waits for a core holds up every
         * barrier, so on a busy machine two threads ran 3.7x slower than one */
        if (wanted > 1) {
            unsigned idle = fg_idle_cores();
            if (idle < wanted - 1)
                wanted = idle + 1;
        }
    }
    n = lanes_per_block(T, plan, job->rows, wanted);
    if ((size_t)wanted > (job->rows + n - 1) / n)
        wanted = (unsigned)((job->rows + n - 1) / n);
    if (!cache->has_kept || cache->kept.n != n || cache->kept.threads != wanted) {
        if (cache->has_kept)
            forget_buffers(&cache->kept);
        cache->has_kept = 0;
        memset(&cache->kept, 0, sizeof cache->kept);
        cache->kept.T = T;
        cache->kept.P = P;
        cache->kept.plan = plan;
        cache->kept.n = n;
        cache->kept.threads = wanted;
        if ((st = make_buffers(T, &cache->kept)) != FG_OK) {
            forget_buffers(&cache->kept);
            return st;
        }
        cache->has_kept = 1;
    }
    ctx = cache->kept;
    ctx.job = job;
    ctx.kernel = fg_kernel_selected();
    ctx.blocks = (job->rows + n - 1) / n;
    ctx.failed = ctx.interrupted = 0;
    /* this run's numbers: the leaves' data and grads as read, the weights among them */
    memcpy((double *)ctx.scalars, T->leaf_data, T->leaf_count * sizeof(double));
    memcpy((double *)ctx.scalars + T->leaf_count, P->constants,
           (P->constant_end - T->leaf_count) * sizeof(double));
    memcpy(ctx.totals, T->leaf_grad_before, T->leaf_count * sizeof(double));
    for (i = 0; i < plan->terms_count; i++)
        ctx.accumulators[i] = ctx.totals[plan->terms[i].leaf];
    for (t = 0; t < ctx.threads; t++)
        ctx.partners_tag[t] = (size_t)-1;
    fast_weights(&ctx);
    st = FG_NO_MEMORY;
    if (ctx.threads > 1) {
        ctx.barrier = fg_barrier_new(ctx.threads);
        ctx.gate = fg_gate_new();
        threads = (fg_thread **)calloc(ctx.threads, sizeof(fg_thread *));
        workers = (worker *)calloc(ctx.threads, sizeof(worker));
        if (ctx.barrier == NULL || ctx.gate == NULL || threads == NULL || workers == NULL)
            goto done;
        for (t = 1; t < ctx.threads; t++) {
            workers[t].ctx = &ctx;
            workers[t].index = t;
            if ((threads[t] = fg_thread_start(work_on_thread, &workers[t])) == NULL)
                break;
            started++;
        }
        fg_gate_open(ctx.gate, started + 1 == ctx.threads);
        if (started + 1 != ctx.threads) {
            for (t = 1; t <= started; t++)
                fg_thread_join(threads[t]);
            goto done;
        }
    }
    work(&ctx, 0);
    for (t = 1; t <= started; t++)
        fg_thread_join(threads[t]);
    if (ctx.interrupted) {
        st = FG_INTERRUPTED;
    } else if (ctx.failed) {
        st = name_failed_row(T, &ctx);
    } else {
        /* the tape's state is then the graph at the leaves' data as the run read them (the
         * fed leaves keep theirs): its leaves now, the rest when a backward or sync needs it */
        memcpy(T->now.value, T->leaf_data, T->leaf_count * sizeof(double));
        T->now.pending = 0;
        T->now_stale = 1;
        T->backward_done = 0;
        if (job->backward) {
            for (i = 0; i < plan->terms_count; i++)
                ctx.totals[plan->terms[i].leaf] = ctx.accumulators[i];
            memcpy(T->grad, ctx.totals, T->leaf_count * sizeof(double));
        }
        st = FG_OK;
    }
done:
    fg_barrier_free(ctx.barrier);
    fg_gate_free(ctx.gate);
    free(threads);
    free(workers);
    return st;
}

/* The fed leaves keep the data they had: the rows are the run's, not the leaves'. */
void fg_tape_store_run(fg_tape *T, const fg_run *job)
{
    if (job->rows == 0)
        return;
    if (job->backward)
        fg_tape_store_leaf_grads(T);
    T->unsynced = FG_TAPE_UNSYNCED_DATA | FG_TAPE_UNSYNCED_GRADS | FG_TAPE_UNSYNCED_OUTPUTS;
}

fg_status fg_tape_run(fg_tape *T, const fg_run *job, fg_node **failed, size_t *failed_row)
{
    fg_status st;
    fg_tape_load_run(T);
    if ((st = fg_tape_compute_run(T, job)) != FG_OK) {
        *failed = fg_tape_failed_node(T);
        *failed_row = T->failed_row;
        return st;
    }
    fg_tape_store_run(T, job);
    return FG_OK;
}
