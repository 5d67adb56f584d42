/*
 * threads.c: threads and a barrier over POSIX threads, or Win32 where there are none.
 */
#include <stdlib.h>

#include "threads.h"

#ifdef _WIN32
#include <windows.h>

struct fg_thread {
    HANDLE handle;
    void (*fn)(void *);
    void *arg;
};

static DWORD WINAPI trampoline(LPVOID p)
{
    fg_thread *t = (fg_thread *)p;
    t->fn(t->arg);
    return 0;
}

fg_thread *fg_thread_start(void (*fn)(void *), void *arg)
{
    fg_thread *t = (fg_thread *)malloc(sizeof *t);
    if (t == NULL)
        return NULL;
    t->fn = fn;
    t->arg = arg;
    t->handle = CreateThread(NULL, 0, trampoline, t, 0, NULL);
    if (t->handle == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void fg_thread_join(fg_thread *t)
{
    WaitForSingleObject(t->handle, INFINITE);
    CloseHandle(t->handle);
    free(t);
}

struct fg_barrier {
    CRITICAL_SECTION lock;
    CONDITION_VARIABLE changed;
    unsigned count, waiting, generation;
    int flags, result;
};

fg_barrier *fg_barrier_new(unsigned count)
{
    fg_barrier *b = (fg_barrier *)calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    InitializeCriticalSection(&b->lock);
    InitializeConditionVariable(&b->changed);
    b->count = count;
    return b;
}

void fg_barrier_free(fg_barrier *b)
{
    if (b == NULL)
        return;
    DeleteCriticalSection(&b->lock);
    free(b);
}

int fg_barrier_wait(fg_barrier *b, int flag)
{
    int result;
    EnterCriticalSection(&b->lock);
    b->flags |= flag;
    if (++b->waiting == b->count) {
        b->result = b->flags;
        b->flags = 0;
        b->waiting = 0;
        b->generation++;
        WakeAllConditionVariable(&b->changed);
    } else {
        unsigned generation = b->generation;
        while (generation == b->generation)
            SleepConditionVariableCS(&b->changed, &b->lock, INFINITE);
    }
    result = b->result;
    LeaveCriticalSection(&b->lock);
    return result;
}

struct fg_gate {
    CRITICAL_SECTION lock;
    CONDITION_VARIABLE opened;
    int open, value;
};

fg_gate *fg_gate_new(void)
{
    fg_gate *g = (fg_gate *)calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    InitializeCriticalSection(&g->lock);
    InitializeConditionVariable(&g->opened);
    return g;
}

void fg_gate_free(fg_gate *g)
{
    if (g == NULL)
        return;
    DeleteCriticalSection(&g->lock);
    free(g);
}

void fg_gate_open(fg_gate *g, int value)
{
    EnterCriticalSection(&g->lock);
    g->value = value;
    g->open = 1;
    WakeAllConditionVariable(&g->opened);
    LeaveCriticalSection(&g->lock);
}

int fg_gate_wait(fg_gate *g)
{
    int value;
    EnterCriticalSection(&g->lock);
    while (!g->open)
        SleepConditionVariableCS(&g->opened, &g->lock, INFINITE);
    value = g->value;
    LeaveCriticalSection(&g->lock);
    return value;
}

#else
#include <pthread.h>

struct fg_thread {
    pthread_t id;
    void (*fn)(void *);
    void *arg;
};

static void *trampoline(void *p)
{
    fg_thread *t = (fg_thread *)p;
    t->fn(t->arg);
    return NULL;
}

fg_thread *fg_thread_start(void (*fn)(void *), void *arg)
{
    fg_thread *t = (fg_thread *)malloc(sizeof *t);
    if (t == NULL)
        return NULL;
    t->fn = fn;
    t->arg = arg;
    if (pthread_create(&t->id, NULL, trampoline, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void fg_thread_join(fg_thread *t)
{
    pthread_join(t->id, NULL);
    free(t);
}

struct fg_barrier {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned count, waiting, generation;
    int flags, result;
};

fg_barrier *fg_barrier_new(unsigned count)
{
    fg_barrier *b = (fg_barrier *)calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b);
        return NULL;
    }
    if (pthread_cond_init(&b->changed, NULL) != 0) {
        pthread_mutex_destroy(&b->lock);
        free(b);
        return NULL;
    }
    b->count = count;
    return b;
}

void fg_barrier_free(fg_barrier *b)
{
    if (b == NULL)
        return;
    pthread_cond_destroy(&b->changed);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* Threads arriving early spin a little on the generation before they sleep: a block's work
 * is often shorter than waking a sleeping thread takes. */
#define SPINS 20000

int fg_barrier_wait(fg_barrier *b, int flag)
{
    int result;
    unsigned generation, spin;
    pthread_mutex_lock(&b->lock);
    b->flags |= flag;
    if (++b->waiting == b->count) {
        b->result = b->flags;
        b->flags = 0;
        b->waiting = 0;
        __atomic_store_n(&b->generation, b->generation + 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&b->changed);
        result = b->result;
        pthread_mutex_unlock(&b->lock);
        return result;
    }
    generation = b->generation;
    pthread_mutex_unlock(&b->lock);
    for (spin = 0; spin < SPINS; spin++)
        if (__atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) != generation)
            return b->result;   /* stable until every thread reaches the next barrier */
    pthread_mutex_lock(&b->lock);
    while (generation == b->generation)
        pthread_cond_wait(&b->changed, &b->lock);
    result = b->result;
    pthread_mutex_unlock(&b->lock);
    return result;
}

struct fg_gate {
    pthread_mutex_t lock;
    pthread_cond_t opened;
    int open, value;
};

fg_gate *fg_gate_new(void)
{
    fg_gate *g = (fg_gate *)calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        free(g);
        return NULL;
    }
    if (pthread_cond_init(&g->opened, NULL) != 0) {
        pthread_mutex_destroy(&g->lock);
        free(g);
        return NULL;
    }
    return g;
}

void fg_gate_free(fg_gate *g)
{
    if (g == NULL)
        return;
    pthread_cond_destroy(&g->opened);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

void fg_gate_open(fg_gate *g, int value)
{
    pthread_mutex_lock(&g->lock);
    g->value = value;
    g->open = 1;
    pthread_cond_broadcast(&g->opened);
    pthread_mutex_unlock(&g->lock);
}

int fg_gate_wait(fg_gate *g)
{
    int value;
    pthread_mutex_lock(&g->lock);
    while (!g->open)
        pthread_cond_wait(&g->opened, &g->lock);
    value = g->value;
    pthread_mutex_unlock(&g->lock);
    return value;
}
#endif
