/*
 * arena.c: node memory. Slabs of FG_SLAB_NODES nodes, handed out by a bump pointer and
 * recycled through a free list; reference counting with iterative release.
 */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ops.h"

#ifdef FG_ASAN
#define ASAN_UNPOISON_SLAB(s) ASAN_UNPOISON_MEMORY_REGION((s), sizeof(fg_slab))
#else
#define ASAN_UNPOISON_SLAB(s) ((void)(s))
#endif

#ifdef FG_THREADSAFE
#if defined(_MSC_VER) && !defined(__clang__)
#include <malloc.h>
static fg_slab *slab_alloc(void) { return (fg_slab *)_aligned_malloc(sizeof(fg_slab), FG_SLAB_ALIGN); }
static void slab_free(fg_slab *s) { _aligned_free(s); }
#else
static fg_slab *slab_alloc(void)
{
    void *p = NULL;
    return posix_memalign(&p, FG_SLAB_ALIGN, sizeof(fg_slab)) == 0 ? (fg_slab *)p : NULL;
}
static void slab_free(fg_slab *s) { free(s); }
#endif

static FG_THREAD_LOCAL char thread_tag;

void *fg_thread_tag(void)
{
    return &thread_tag;
}
#else
static fg_slab *slab_alloc(void) { return (fg_slab *)malloc(sizeof(fg_slab)); }
static void slab_free(fg_slab *s) { free(s); }
#endif

fg_arena *fg_arena_new(void)
{
    fg_arena *A = (fg_arena *)calloc(1, sizeof(fg_arena));
    int op;
    if (A != NULL)
        for (op = 0; op < FG_OP_COUNT; op++)
            A->may_fail[op] = (uint8_t)fg_derivative_may_fail((fg_op)op);
    fg_arena_adopt(A);
    return A;
}

void fg_arena_adopt(fg_arena *A)
{
#ifdef FG_THREADSAFE
    if (A != NULL)
        fg_atomic_store_ptr(&A->owner, fg_thread_tag());
#else
    (void)A;
#endif
}

void fg_arena_disown(fg_arena *A)
{
#ifdef FG_THREADSAFE
    if (A != NULL)
        fg_atomic_store_ptr(&A->owner, NULL);
#else
    (void)A;
#endif
}

void fg_arena_free(fg_arena *A)
{
    fg_slab *s, *next;
    size_t i;
    if (A == NULL)
        return;
    for (s = A->slabs; s != NULL; s = next) {
        /* only the newest slab has nodes never handed out: those from the bump pointer on */
        ASAN_UNPOISON_SLAB(s);
        size_t used = s == A->slabs ? (size_t)(A->bump - s->nodes) : FG_SLAB_NODES;
        next = s->next;
        for (i = 0; i < used; i++) {
            fg_node *n = &s->nodes[i];
            if (n->op != FG_FREED && fg_kind_of(n) >= FG_KIND_NARY)
                free(n->u.nary.args);
        }
        slab_free(s);
    }
    free(A->order.items);
    free(A->stack);
#ifdef FG_THREADSAFE
    free(A->foreign.keys);
    free(A->foreign.cursors);
    free(A->foreign.stamps);
#endif
    free(A);
}

void fg_arena_set_release_hook(fg_arena *A, fg_release_hook hook, void *context)
{
    A->release_hook = hook;
    A->release_context = context;
}

size_t fg_arena_live(const fg_arena *A)
{
#ifdef FG_THREADSAFE
    return A->live - fg_atomic_load_size(&A->remote_released);
#else
    return A->live;
#endif
}

size_t fg_arena_capacity(const fg_arena *A)
{
    return A->slab_count * FG_SLAB_NODES;
}

size_t fg_arena_bytes(const fg_arena *A)
{
    size_t operand_bytes = A->operand_bytes;
#ifdef FG_THREADSAFE
    operand_bytes -= fg_atomic_load_size(&A->remote_operand_bytes);
#endif
    return sizeof(fg_arena) + A->slab_count * sizeof(fg_slab) + operand_bytes
           + A->order.capacity * sizeof(fg_node *) + A->stack_capacity * sizeof(fg_frame);
}

void fg_arena_trim(fg_arena *A)
{
    free(A->order.items);
    A->order.items = NULL;
    A->order.length = A->order.capacity = 0;
    free(A->stack);
    A->stack = NULL;
    A->stack_capacity = 0;
}

fg_node *fg_alloc_slow(fg_arena *A)
{
    fg_slab *s;
#ifdef FG_THREADSAFE
    /* nodes other threads freed come back before a new slab is taken */
    fg_node *taken = (fg_node *)fg_atomic_exchange_ptr((void **)&A->remote_free, NULL);
    if (taken != NULL) {
        A->free_list = taken->link.next;
        return taken;
    }
#endif
    s = slab_alloc();
    if (s == NULL)
        return NULL;
    s->arena = A;
    s->next = A->slabs;
    A->slabs = s;
    A->slab_count++;
    A->bump = &s->nodes[1];
    A->bump_end = &s->nodes[FG_SLAB_NODES];
    return &s->nodes[0];
}

#ifdef FG_THREADSAFE
static size_t foreign_hash(const fg_node *n, size_t capacity)
{
    return (size_t)(((uint64_t)(uintptr_t)n >> 4) * 0x9E3779B97F4A7C15ull >> 20) & (capacity - 1);
}

void fg_foreign_begin(fg_arena *A)
{
    fg_foreign *F = &A->foreign;
    F->count = 0;
    if (++F->stamp == 0) {  /* wrapped: forget every old entry */
        if (F->capacity)
            memset(F->stamps, 0, F->capacity * sizeof(uint32_t));
        F->stamp = 1;
    }
}

static size_t foreign_find(const fg_foreign *F, const fg_node *n)
{
    size_t i = foreign_hash(n, F->capacity);
    while (F->stamps[i] == F->stamp && F->keys[i] != n)
        i = (i + 1) & (F->capacity - 1);
    return i;
}

static int foreign_grow(fg_foreign *F)
{
    fg_foreign old = *F, grown = *F;
    size_t i;
    grown.capacity = old.capacity ? 2 * old.capacity : 64;
    grown.keys = (fg_node **)malloc(grown.capacity * sizeof(fg_node *));
    grown.cursors = (uint32_t *)malloc(grown.capacity * sizeof(uint32_t));
    grown.stamps = (uint32_t *)calloc(grown.capacity, sizeof(uint32_t));
    if (grown.keys == NULL || grown.cursors == NULL || grown.stamps == NULL) {
        free(grown.keys);
        free(grown.cursors);
        free(grown.stamps);
        return -1;
    }
    for (i = 0; i < old.capacity; i++)
        if (old.stamps[i] == old.stamp) {
            size_t j = foreign_find(&grown, old.keys[i]);
            grown.keys[j] = old.keys[i];
            grown.cursors[j] = old.cursors[i];
            grown.stamps[j] = grown.stamp;
        }
    free(old.keys);
    free(old.cursors);
    free(old.stamps);
    *F = grown;
    return 0;
}

int fg_foreign_visit(fg_arena *A, fg_node *n)
{
    fg_foreign *F = &A->foreign;
    size_t i;
    if (2 * (F->count + 1) > F->capacity && foreign_grow(F) != 0)
        return -1;
    i = foreign_find(F, n);
    if (F->stamps[i] == F->stamp)
        return 0;
    F->keys[i] = n;
    F->cursors[i] = 0;
    F->stamps[i] = F->stamp;
    F->count++;
    return 1;
}

uint32_t *fg_foreign_cursor(fg_arena *A, const fg_node *n)
{
    return &A->foreign.cursors[foreign_find(&A->foreign, n)];
}
#endif

void fg_new_epoch(fg_arena *A)
{
    fg_slab *s;
    size_t i;
#ifdef FG_THREADSAFE
    fg_foreign_begin(A);
#endif
    if (++A->epoch != 0)
        return;
    /* once in 65535 traversals the counter wraps: forget every old mark */
    for (s = A->slabs; s != NULL; s = s->next)
        for (i = 0; i < FG_SLAB_NODES; i++)
            s->nodes[i].mark = 0;
    A->epoch = 1;
}

fg_status fg_vec_reserve(fg_vec *v, size_t n)
{
    size_t want, capacity;
    fg_node **items;
    if (n > (size_t)-1 / sizeof(fg_node *) - v->length)
        return FG_NO_MEMORY;
    want = v->length + n;
    if (want <= v->capacity)
        return FG_OK;
    capacity = v->capacity ? v->capacity : 1024;
    while (capacity < want)
        capacity = capacity > (size_t)-1 / (2 * sizeof(fg_node *)) ? want : capacity * 2;
    items = (fg_node **)realloc(v->items, capacity * sizeof(fg_node *));
    if (items == NULL)
        return FG_NO_MEMORY;
    v->items = items;
    v->capacity = capacity;
    return FG_OK;
}

#ifdef FG_THREADSAFE
/* Takes one reference away: whether it was the last. A count of one is the caller's own
 * reference, and no other thread can reach the node to add one (every path to a node holds
 * a reference), so the last drop needs no atomic step, only to see the other threads' writes
 * from before their drops (the acquire load). */
static inline int dropped(fg_node *n)
{
    if (fg_atomic_load_u32_acquire(&n->refs) == 1) {
        n->refs = 0;
        return 1;
    }
    return fg_atomic_add_u32(&n->refs, -1) == 0;
}

/* Puts a freed node on its arena's free list: in place if the calling thread owns the
 * arena, else on the arena's list of nodes freed elsewhere, which its owner takes back. */
static void give_back(fg_arena *caller, fg_node *n, size_t operand_bytes)
{
    fg_arena *A = fg_slab_of(n)->arena;
    (void)caller;
    if (fg_atomic_load_ptr(&A->owner) == fg_thread_tag()) {
        A->operand_bytes -= operand_bytes;
        n->link.next = A->free_list;
        A->free_list = n;
        A->live--;
    } else {
        void *head = fg_atomic_load_ptr((void **)&A->remote_free);
        fg_atomic_add_size(&A->remote_operand_bytes, operand_bytes);
        fg_atomic_add_size(&A->remote_released, 1);
        do
            n->link.next = (fg_node *)head;
        while (!fg_atomic_cas_ptr((void **)&A->remote_free, &head, n));
    }
    FG_POISON(n);
}
#else
static inline int dropped(fg_node *n)
{
    return --n->refs == 0;
}

static inline void give_back(fg_arena *A, fg_node *n, size_t operand_bytes)
{
    A->operand_bytes -= operand_bytes;
    n->link.next = A->free_list;
    A->free_list = n;
    A->live--;
    FG_POISON(n);
}
#endif

/* Frees n, whose count has reached zero, and every operand that only it kept alive.
 * Nodes waiting to be freed form a stack linked through link.next: a freed node no
 * longer has a handle, so that field is free to use, and the walk needs no memory. */
static void release(fg_arena *A, fg_node *n)
{
    fg_node *pending = n;
    n->link.next = NULL;
    while (pending != NULL) {
        uint32_t count, i;
        fg_node *const *operands;
        fg_kind kind;
        n = pending;
        pending = n->link.next;
        kind = fg_kind_of(n);
        operands = fg_operands_of(n, &count);
        for (i = 0; i < count; i++) {
            fg_node *operand = operands[i];
            if (dropped(operand)) {
                operand->link.next = pending;
                pending = operand;
            }
        }
        if (kind >= FG_KIND_NARY)
            free(n->u.nary.args);
        if (n->flags & FG_EXTRA) {
            if (A->release_hook != NULL)
                A->release_hook(A->release_context, n);
        }
        n->op = FG_FREED;
        give_back(A, n, kind >= FG_KIND_NARY ? (size_t)count * sizeof(fg_node *) : 0);
    }
}

void fg_decref(fg_arena *A, fg_node *n)
{
    if (dropped(n))
        release(A, n);
}
