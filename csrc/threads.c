/*
 * threads.c: threads, a barrier and a gate over POSIX threads, or Win32 where there are none.
 * The platform gives threads, a lock and a condition variable; the barrier and the gate are
 * written once over those.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "threads.h"

#ifdef _WIN32
#include <windows.h>

typedef CRITICAL_SECTION fg_lock;
typedef CONDITION_VARIABLE fg_cond;

static int sync_init(fg_lock *lock, fg_cond *cond)
{
    InitializeCriticalSection(lock);
    InitializeConditionVariable(cond);
    return 0;
}

static void sync_destroy(fg_lock *lock, fg_cond *cond)
{
    (void)cond;  /* a Win32 condition variable holds nothing to free */
    DeleteCriticalSection(lock);
}

#define lock_take(l) EnterCriticalSection(l)
#define lock_give(l) LeaveCriticalSection(l)
#define cond_wait(c, l) SleepConditionVariableCS((c), (l), INFINITE)
#define cond_wake_all(c) WakeAllConditionVariable(c)

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

static int thread_create(fg_thread *t)
{
    t->handle = CreateThread(NULL, 0, trampoline, t, 0, NULL);
    return t->handle != NULL;
}

void fg_thread_join(fg_thread *t)
{
    WaitForSingleObject(t->handle, INFINITE);
    CloseHandle(t->handle);
    free(t);
}

#else
#include <pthread.h>
#include <unistd.h>

typedef pthread_mutex_t fg_lock;
typedef pthread_cond_t fg_cond;

static int sync_init(fg_lock *lock, fg_cond *cond)
{
    if (pthread_mutex_init(lock, NULL) != 0)
        return -1;
    if (pthread_cond_init(cond, NULL) != 0) {
        pthread_mutex_destroy(lock);
        return -1;
    }
    return 0;
}

static void sync_destroy(fg_lock *lock, fg_cond *cond)
{
    pthread_cond_destroy(cond);
    pthread_mutex_destroy(lock);
}

#define lock_take(l) pthread_mutex_lock(l)
#define lock_give(l) pthread_mutex_unlock(l)
#define cond_wait(c, l) pthread_cond_wait((c), (l))
#define cond_wake_all(c) pthread_cond_broadcast(c)

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

static int thread_create(fg_thread *t)
{
    return pthread_create(&t->id, NULL, trampoline, t) == 0;
}

void fg_thread_join(fg_thread *t)
{
    pthread_join(t->id, NULL);
    free(t);
}
#endif

unsigned fg_idle_cores(void)
{
#if defined(__linux__)
    double load[3];
    unsigned running, total;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    FILE *f = fopen("/proc/loadavg", "r");
    int read;
    if (f == NULL)
        return UINT_MAX;
    read = fscanf(f, "%lf %lf %lf %u/%u", &load[0], &load[1], &load[2], &running, &total);
    fclose(f);
    if (read != 5 || cores < 1)
        return UINT_MAX;
    return running >= (unsigned long)cores ? 0 : (unsigned)cores - running;
#else
    return UINT_MAX;
#endif
}

fg_thread *fg_thread_start(void (*fn)(void *), void *arg)
{
    fg_thread *t = (fg_thread *)malloc(sizeof *t);
    if (t == NULL)
        return NULL;
    t->fn = fn;
    t->arg = arg;
    if (!thread_create(t)) {
        free(t);
        return NULL;
    }
    return t;
}

/* Threads arriving early at a barrier spin a little on its generation before they sleep: a
 * block's work is often shorter than waking a sleeping thread takes. That needs atomics; a
 * compiler without GCC's builtins sleeps at once. */
#if defined(__GNUC__) || defined(__clang__)
#define SPINS 20000
#define load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#else
#define SPINS 0
#define load_acquire(p) (*(p))
#define store_release(p, v) (*(p) = (v))
#endif

struct fg_barrier {
    fg_lock lock;
    fg_cond changed;
    unsigned count, waiting, generation;
    int flags, result;
};

fg_barrier *fg_barrier_new(unsigned count)
{
    fg_barrier *b = (fg_barrier *)calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    if (sync_init(&b->lock, &b->changed) != 0) {
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
    sync_destroy(&b->lock, &b->changed);
    free(b);
}

int fg_barrier_wait(fg_barrier *b, int flag)
{
    int result;
    unsigned generation, spin;
    lock_take(&b->lock);
    b->flags |= flag;
    if (++b->waiting == b->count) {
        b->result = b->flags;
        b->flags = 0;
        b->waiting = 0;
        store_release(&b->generation, b->generation + 1);
        cond_wake_all(&b->changed);
        result = b->result;
        lock_give(&b->lock);
        return result;
    }
    generation = b->generation;
    lock_give(&b->lock);
    for (spin = 0; spin < SPINS; spin++)
        if (load_acquire(&b->generation) != generation)
            return b->result;   /* stable until every thread reaches the next barrier */
    lock_take(&b->lock);
    while (generation == b->generation)
        cond_wait(&b->changed, &b->lock);
    result = b->result;
    lock_give(&b->lock);
    return result;
}

struct fg_gate {
    fg_lock lock;
    fg_cond opened;
    int open, value;
};

fg_gate *fg_gate_new(void)
{
    fg_gate *g = (fg_gate *)calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    if (sync_init(&g->lock, &g->opened) != 0) {
        free(g);
        return NULL;
    }
    return g;
}

void fg_gate_free(fg_gate *g)
{
    if (g == NULL)
        return;
    sync_destroy(&g->lock, &g->opened);
    free(g);
}

void fg_gate_open(fg_gate *g, int value)
{
    lock_take(&g->lock);
    g->value = value;
    g->open = 1;
    cond_wake_all(&g->opened);
    lock_give(&g->lock);
}

int fg_gate_wait(fg_gate *g)
{
    int value;
    lock_take(&g->lock);
    while (!g->open)
        cond_wait(&g->opened, &g->lock);
    value = g->value;
    lock_give(&g->lock);
    return value;
}
