/*
 * arena.h: the arena's private layout and its allocation fast path, shared by the
 * library's own files. Not part of the public API.
 */
#ifndef FASTGRAD_ARENA_H
#define FASTGRAD_ARENA_H

#include "atomics.h"
#include "fastgrad.h"

/* Nodes per slab: 4096 * 56 bytes is 224 KiB, large enough that slab headers cost nothing
 * and small enough that a tiny program does not reserve megabytes. */
#define FG_SLAB_NODES 4096

/* Under AddressSanitizer a free node's data, grad and operands are poisoned, so that a
 * stale pointer that reads them stops the program; elsewhere these are no-ops. The fields
 * from refs on stay readable: the allocator's own bookkeeping uses them. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FG_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FG_ASAN 1
#endif
#ifdef FG_ASAN
#include <sanitizer/asan_interface.h>
#define FG_POISON(n) ASAN_POISON_MEMORY_REGION((n), offsetof(fg_node, refs))
#define FG_UNPOISON(n) ASAN_UNPOISON_MEMORY_REGION((n), offsetof(fg_node, refs))
#else
#define FG_POISON(n) ((void)(n))
#define FG_UNPOISON(n) ((void)(n))
#endif

/* Marks a node on the free list; no row of ops.def has this opcode. */
#define FG_FREED 0xFF

typedef struct fg_slab fg_slab;
struct fg_slab {
    fg_slab *next;                  /* the slab allocated before this one */
    fg_arena *arena;                /* the arena the slab belongs to */
    fg_node nodes[FG_SLAB_NODES];
};

#ifdef FG_THREADSAFE
/* Slabs start at multiples of this, so that a node's slab, and so its arena, is its address
 * rounded down: a thread tells its own nodes from other threads' with one load. */
#define FG_SLAB_ALIGN ((uintptr_t)1 << 18)
static inline fg_slab *fg_slab_of(const fg_node *n)
{
    return (fg_slab *)((uintptr_t)n & ~(FG_SLAB_ALIGN - 1));
}

/* The nodes of other threads' arenas that one traversal has reached: a traversal marks its
 * own arena's nodes in place, and these here, so that two threads walking one shared node
 * never write to it. An entry is valid while its stamp is the traversal's. */
typedef struct fg_foreign {
    fg_node **keys;
    uint32_t *cursors;              /* an NARY node's terms still to run, as nary.cursor */
    uint32_t *stamps;
    size_t capacity;                /* a power of two, or 0 */
    size_t count;                   /* entries of this traversal */
    uint32_t stamp;
} fg_foreign;
#endif

/* A growable array of node pointers, kept by the arena between traversals. */
typedef struct fg_vec {
    fg_node **items;
    size_t length;
    size_t capacity;
} fg_vec;

/* One frame of the iterative depth-first search: a node, its operands and the next to visit. */
typedef struct fg_frame {
    fg_node *node;
    fg_node *const *operands;
    uint32_t next;
    uint32_t count;
} fg_frame;

/* Hints to the compiler: p will be read soon; a condition is rarely true (an error). */
#if defined(__GNUC__) || defined(__clang__)
#define FG_PREFETCH(p) __builtin_prefetch(p)
#define FG_UNLIKELY(c) __builtin_expect(!!(c), 0)
#else
#define FG_PREFETCH(p) ((void)(p))
#define FG_UNLIKELY(c) (c)
#endif

struct fg_arena {
    fg_node *free_list;             /* released nodes, linked through link.next */
    fg_node *bump;                  /* next never-used node of the newest slab */
    fg_node *bump_end;              /* end of the newest slab */
    fg_slab *slabs;                 /* every slab, newest first, freed with the arena */
    size_t slab_count;
    size_t live;                    /* nodes handed out and not yet freed */
    size_t operand_bytes;           /* bytes of NARY/OPAQUE operand lists */
    fg_release_hook release_hook;   /* see fg_arena_set_release_hook */
    void *release_context;
    uint64_t serial;                /* the next node's fg_node.serial */
    uint16_t epoch;                 /* the traversal in progress; marks equal to it are visited */
    uint8_t may_fail[FG_OP_COUNT];  /* fg_derivative_may_fail, per op, read once */
    fg_vec order;                   /* scratch: the last topological order */
    fg_frame *stack;                /* scratch: depth-first search stack */
    size_t stack_capacity;
#ifdef FG_THREADSAFE
    void *owner;                    /* the thread that allocates from it (fg_thread_tag) */
    fg_node *remote_free;           /* nodes other threads freed, pushed atomically */
    size_t remote_released;         /* how many, ever (atomic) */
    size_t remote_operand_bytes;    /* their operand lists' bytes, ever (atomic) */
    fg_foreign foreign;             /* scratch: other arenas' nodes in this traversal */
#endif
};

#ifdef FG_THREADSAFE
/* The calling thread's identity: the address of a thread-local variable. */
void *fg_thread_tag(void);

/* Whether n belongs to A (to the calling thread, whose arena A is). */
static inline int fg_owned(const fg_arena *A, const fg_node *n)
{
    return fg_slab_of(n)->arena == A;
}

/* Starts a traversal's set of foreign nodes. */
void fg_foreign_begin(fg_arena *A);

/* Adds n to this traversal's foreign set: 1 if it was not there, 0 if it was, -1 without
 * memory. */
int fg_foreign_visit(fg_arena *A, fg_node *n);

/* The entry of a foreign node already visited by this traversal. */
uint32_t *fg_foreign_cursor(fg_arena *A, const fg_node *n);

/* The cursor of an NARY node that the current traversal reached, wherever it belongs. */
static inline uint32_t *fg_cursor_of(fg_arena *A, fg_node *n)
{
    return fg_owned(A, n) ? &n->u.nary.cursor : fg_foreign_cursor(A, n);
}
#else
static inline int fg_owned(const fg_arena *A, const fg_node *n)
{
    (void)A;
    (void)n;
    return 1;
}

static inline uint32_t *fg_cursor_of(fg_arena *A, fg_node *n)
{
    (void)A;
    return &n->u.nary.cursor;
}
#endif

fg_node *fg_alloc_slow(fg_arena *A);

/* A fresh node with refs 1 and no operands, or NULL without memory. O(1). */
static inline fg_node *fg_alloc(fg_arena *A)
{
    fg_node *n = A->free_list;
    if (n != NULL)
        A->free_list = n->link.next;
    else if (A->bump < A->bump_end)
        n = A->bump++;
    else if ((n = fg_alloc_slow(A)) == NULL)
        return NULL;
    FG_UNPOISON(n);
    A->live++;
    n->grad = 0.0;
    n->refs = 1;
    n->flags = 0;
    n->mark = 0;
    n->link.handle = NULL;
    n->serial = A->serial++;
    return n;
}

/* Starts a traversal: a new epoch, so that no node counts as visited. */
void fg_new_epoch(fg_arena *A);

/* The nodes below root in depth-first post-order into A->order (fg_topo's order; an NARY
 * node once per term, its cursor set for backward). With `check`, also checks that every
 * node's local derivatives can be computed, and names the first that cannot in *failed. */
fg_status fg_order(fg_arena *A, fg_node *root, int check, fg_node **failed);

/* Makes room for n more items in v; FG_NO_MEMORY leaves v as it was. */
fg_status fg_vec_reserve(fg_vec *v, size_t n);

#endif /* FASTGRAD_ARENA_H */
