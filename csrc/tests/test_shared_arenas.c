/*
 * test_shared_arenas.c: the free-threaded build (FG_THREADSAFE) with one arena per thread.
 * Threads build random graphs over leaves of their own and leaves a main arena shares with
 * all of them, run backward and fg_gradients at the same time, and free each other's graphs.
 * Built and run by tests/test_c_library.py, plainly and under ThreadSanitizer and
 * AddressSanitizer. Exits 0 when every check passes.
 * Usage: test_shared_arenas [rounds]
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#ifndef FG_THREADSAFE
#error "build with -DFG_THREADSAFE"
#endif

#define THREADS 4
#define OWN 20
#define SHARED 50
#define OPS 500
#define SHARED_DOT_TERMS 10          /* the shared DOT node reads shared leaves 0..19 */

static int failures = 0;
static pthread_mutex_t failures_lock = PTHREAD_MUTEX_INITIALIZER;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            pthread_mutex_lock(&failures_lock);                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
            failures++;                                                                 \
            pthread_mutex_unlock(&failures_lock);                                       \
        }                                                                               \
    } while (0)

static int same_bits(double x, double y)
{
    return memcmp(&x, &y, sizeof x) == 0;
}

static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static fg_node *shared[SHARED];
static fg_node *shared_dot;                 /* an interior node every thread's graphs read */

/* One thread's graph: OPS random ops over its own leaves, the shared ones and the shared
 * dot, summed into a root; the caller holds a reference to the root and to the own leaves. */
static fg_node *build(fg_arena *A, uint64_t seed, fg_node *own[OWN])
{
    fg_node *pool[OWN + SHARED + 1 + OPS];
    size_t size = 0, i;
    uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    fg_node *root = NULL;
    for (i = 0; i < OWN; i++)
        pool[size++] = own[i];
    for (i = 0; i < SHARED; i++)
        pool[size++] = shared[i];
    pool[size++] = shared_dot;
    for (i = 0; i < OPS; i++) {
        fg_node *a = pool[next_random(&state) % size], *b = pool[next_random(&state) % size];
        fg_node *out = NULL;
        fg_status st;
        switch (next_random(&state) % 4) {
        case 0: st = fg_new_binary(A, FG_ADD, a, b, &out); break;
        case 1: st = fg_new_binary(A, FG_MUL, a, b, &out); break;
        case 2: st = fg_new_unary(A, FG_TANH, a, &out); break;
        default: {
            fg_node *args[5] = {a, b, a, pool[size - 1], b};
            st = fg_new_nary(A, FG_DOT, args, 5, &out);
        }
        }
        CHECK(st == FG_OK);
        pool[size++] = out;
    }
    CHECK(fg_new_nary(A, FG_SUM, pool + OWN + SHARED + 1, OPS, &root) == FG_OK);
    for (i = OWN + SHARED + 1; i < size; i++)
        fg_decref(A, pool[i]);      /* the root holds them now */
    return root;
}

/* What one thread's graph gives when built alone: its root's data, its own leaves' grads
 * after backward, fg_gradients' values, and what it adds to each shared leaf. */
typedef struct outcome {
    double root;
    double own_grad[OWN];
    double gradients[OWN];
    double shared_grad[SHARED];
} outcome;

static void run_graph(fg_arena *A, uint64_t seed, fg_node *own[OWN], outcome *o,
                      fg_node **root_out)
{
    fg_node *root = build(A, seed, own), *failed = NULL;
    size_t i;
    double values[OWN];
    CHECK(fg_gradients(A, root, own, OWN, 0, values, NULL, &failed) == FG_OK);
    CHECK(fg_backward(A, root, &failed) == FG_OK);
    o->root = root->data;
    for (i = 0; i < OWN; i++) {
        o->own_grad[i] = own[i]->grad;
        o->gradients[i] = values[i];
    }
    *root_out = root;
}

static outcome alone[THREADS];
static fg_node *handoff[THREADS];
static pthread_barrier_t barrier;
static int rounds = 20;
static size_t final_live[THREADS], final_capacity[THREADS];

static void *worker(void *arg)
{
    size_t t = (size_t)arg, i;
    int round;
    fg_arena *A = fg_arena_new();
    fg_node *own[OWN];
    CHECK(A != NULL);
    for (i = 0; i < OWN; i++)
        CHECK(fg_new_leaf(A, 0.25 * (double)(i + 1) - 2.0, &own[i]) == FG_OK);
    for (round = 0; round < rounds; round++) {
        outcome o;
        fg_node *root = NULL;
        for (i = 0; i < OWN; i++)
            own[i]->grad = 0.0;
        run_graph(A, t + 1, own, &o, &root);
        CHECK(same_bits(o.root, alone[t].root));
        for (i = 0; i < OWN; i++) {
            CHECK(same_bits(o.own_grad[i], alone[t].own_grad[i]));
            CHECK(same_bits(o.gradients[i], alone[t].gradients[i]));
        }
        /* the next thread frees this graph: most of its nodes go back to this arena from
         * another thread */
        handoff[t] = root;
        pthread_barrier_wait(&barrier);
        fg_decref(A, handoff[(t + 1) % THREADS]);
        pthread_barrier_wait(&barrier);
    }
    for (i = 0; i < OWN; i++)
        fg_decref(A, own[i]);
    final_live[t] = fg_arena_live(A);
    final_capacity[t] = fg_arena_capacity(A);
    fg_arena_free(A);
    return NULL;
}

int main(int argc, char **argv)
{
    fg_arena *M = fg_arena_new();
    pthread_t threads[THREADS];
    size_t t, i;
    if (argc > 1)
        rounds = atoi(argv[1]);
    for (i = 0; i < SHARED; i++)
        CHECK(fg_new_leaf(M, sin((double)i), &shared[i]) == FG_OK);
    {
        fg_node *args[1 + 2 * SHARED_DOT_TERMS];
        args[0] = shared[0];
        for (i = 0; i < 2 * SHARED_DOT_TERMS; i++)
            args[1 + i] = shared[i];
        CHECK(fg_new_nary(M, FG_DOT, args, 1 + 2 * SHARED_DOT_TERMS, &shared_dot) == FG_OK);
    }

    /* each graph alone, in the main thread, from zero shared grads */
    for (t = 0; t < THREADS; t++) {
        fg_arena *A = fg_arena_new();
        fg_node *own[OWN], *root = NULL;
        for (i = 0; i < SHARED; i++)
            shared[i]->grad = 0.0;
        shared_dot->grad = 0.0;
        for (i = 0; i < OWN; i++)
            CHECK(fg_new_leaf(A, 0.25 * (double)(i + 1) - 2.0, &own[i]) == FG_OK);
        run_graph(A, t + 1, own, &alone[t], &root);
        for (i = 0; i < SHARED; i++)
            alone[t].shared_grad[i] = shared[i]->grad;
        fg_decref(A, root);
        for (i = 0; i < OWN; i++)
            fg_decref(A, own[i]);
        CHECK(fg_arena_live(A) == 0);
        fg_arena_free(A);
    }

    for (i = 0; i < SHARED; i++)
        shared[i]->grad = 0.0;
    shared_dot->grad = 0.0;
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (t = 0; t < THREADS; t++)
        CHECK(pthread_create(&threads[t], NULL, worker, (void *)t) == 0);
    for (t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&barrier);

    /* every addition whole: the shared leaves that only the threads' own chain rules reach
     * hold the sum of what each graph adds alone, once per round, up to the order of the
     * additions (the shared dot's grad, and so what it adds to leaves 0..19, depends on that
     * order: those are only checked to be finite) */
    for (i = 0; i < SHARED; i++) {
        double expected = 0.0, scale = 0.0;
        for (t = 0; t < THREADS; t++) {
            expected += rounds * alone[t].shared_grad[i];
            scale += rounds * fabs(alone[t].shared_grad[i]);
        }
        if (i >= 2 * SHARED_DOT_TERMS)
            CHECK(fabs(shared[i]->grad - expected) <= 1e-9 * (scale + 1.0));
        else
            CHECK(isfinite(shared[i]->grad));
    }
    for (t = 0; t < THREADS; t++) {
        CHECK(final_live[t] == 0);
        CHECK(final_capacity[t] <= 2 * FG_SLAB_NODES);   /* memory comes back, not new slabs */
    }
    fg_decref(M, shared_dot);
    for (i = 0; i < SHARED; i++)
        fg_decref(M, shared[i]);
    CHECK(fg_arena_live(M) == 0);
    fg_arena_free(M);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all shared-arena checks passed (%d threads, %d rounds)\n", THREADS, rounds);
    return 0;
}
