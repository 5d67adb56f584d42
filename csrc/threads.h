/*
 * threads.h: the few thread primitives run() needs, over POSIX threads or Win32. Private.
 */
#ifndef FASTGRAD_THREADS_H
#define FASTGRAD_THREADS_H

#include <stddef.h>

typedef struct fg_thread fg_thread;
typedef struct fg_barrier fg_barrier;

/* Starts fn(arg) on a new thread; NULL if it could not be started. */
fg_thread *fg_thread_start(void (*fn)(void *), void *arg);
void fg_thread_join(fg_thread *t);              /* waits for it, then frees it */

/* A reusable barrier for `count` threads. */
fg_barrier *fg_barrier_new(unsigned count);
void fg_barrier_free(fg_barrier *b);
/* Waits until all `count` threads have arrived; what each wrote before is then visible to
 * all. Returns the OR of the flags the threads passed in (a failure, a stop). */
int fg_barrier_wait(fg_barrier *b, int flag);

/* A gate that threads wait at until it is opened with a value, which they all receive. */
typedef struct fg_gate fg_gate;
fg_gate *fg_gate_new(void);
void fg_gate_free(fg_gate *g);
void fg_gate_open(fg_gate *g, int value);
int fg_gate_wait(fg_gate *g);

/* How many more threads could run now without waiting for a core: the cores less the
 * threads already runnable, the calling one included (Linux's /proc/loadavg counts them);
 * where that cannot be read, UINT_MAX. */
unsigned fg_idle_cores(void);

#endif /* FASTGRAD_THREADS_H */
