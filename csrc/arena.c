/*
 * arena.c: node memory. Slabs of FG_SLAB_NODES nodes, handed out by a bump pointer and
 * recycled through a free list; reference counting with iterative release.
 */
#include <stdlib.h>

#include "arena.h"
#include "ops.h"

#ifdef FG_ASAN
#define ASAN_UNPOISON_SLAB(s) ASAN_UNPOISON_MEMORY_REGION((s), sizeof(fg_slab))
#else
#define ASAN_UNPOISON_SLAB(s) ((void)(s))
#endif

fg_arena *fg_arena_new(void)
{
    fg_arena *A = (fg_arena *)calloc(1, sizeof(fg_arena));
    int op;
    if (A != NULL)
        for (op = 0; op < FG_OP_COUNT; op++)
            A->may_fail[op] = (uint8_t)fg_derivative_may_fail((fg_op)op);
    return A;
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
        free(s);
    }
    free(A->order.items);
    free(A->stack);
    free(A);
}

void fg_arena_set_release_hook(fg_arena *A, fg_release_hook hook, void *context)
{
    A->release_hook = hook;
    A->release_context = context;
}

size_t fg_arena_live(const fg_arena *A)
{
    return A->live;
}

size_t fg_arena_capacity(const fg_arena *A)
{
    return A->slab_count * FG_SLAB_NODES;
}

size_t fg_arena_bytes(const fg_arena *A)
{
    return sizeof(fg_arena) + A->slab_count * sizeof(fg_slab) + A->operand_bytes
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
    fg_slab *s = (fg_slab *)malloc(sizeof(fg_slab));
    if (s == NULL)
        return NULL;
    s->next = A->slabs;
    A->slabs = s;
    A->slab_count++;
    A->bump = &s->nodes[1];
    A->bump_end = &s->nodes[FG_SLAB_NODES];
    return &s->nodes[0];
}

void fg_new_epoch(fg_arena *A)
{
    fg_slab *s;
    size_t i;
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
            if (--operand->refs == 0) {
                operand->link.next = pending;
                pending = operand;
            }
        }
        if (kind >= FG_KIND_NARY) {
            A->operand_bytes -= (size_t)count * sizeof(fg_node *);
            free(n->u.nary.args);
        }
        if (n->flags & FG_EXTRA) {
            if (A->release_hook != NULL)
                A->release_hook(A->release_context, n);
        }
        n->op = FG_FREED;
        n->link.next = A->free_list;
        A->free_list = n;
        A->live--;
        FG_POISON(n);
    }
}

void fg_decref(fg_arena *A, fg_node *n)
{
    if (--n->refs == 0)
        release(A, n);
}
