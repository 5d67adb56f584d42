/*
 * atomics.h: the few atomic operations a free-threaded build needs, over plain fields.
 *
 * With FG_THREADSAFE defined (setup.py defines it for a free-threaded CPython), nodes may be
 * shared between threads: reference counts and grads are changed atomically and the arenas
 * take nodes that other threads free. Without it every operation here is the plain one, so
 * a GIL build compiles to exactly what it did before. GCC and Clang get __atomic builtins,
 * MSVC its Interlocked intrinsics; all are sequentially consistent except where named.
 */
#ifndef FASTGRAD_ATOMICS_H
#define FASTGRAD_ATOMICS_H

#include <stdint.h>
#include <string.h>

#ifdef FG_THREADSAFE

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define FG_THREAD_LOCAL __declspec(thread)
static inline uint32_t fg_atomic_add_u32(uint32_t *p, int32_t delta)   /* returns the new value */
{
    return (uint32_t)_InterlockedExchangeAdd((volatile long *)p, (long)delta) + (uint32_t)delta;
}
static inline uint32_t fg_atomic_load_u32_acquire(const uint32_t *p)
{
    return (uint32_t)_InterlockedOr((volatile long *)p, 0);
}
static inline int fg_atomic_cas_u64(uint64_t *p, uint64_t *expected, uint64_t desired)
{
    uint64_t seen = (uint64_t)_InterlockedCompareExchange64((volatile __int64 *)p,
                                                             (__int64)desired, (__int64)*expected);
    if (seen == *expected)
        return 1;
    *expected = seen;
    return 0;
}
static inline uint64_t fg_atomic_load_u64(const uint64_t *p)
{
    return (uint64_t)_InterlockedCompareExchange64((volatile __int64 *)p, 0, 0);
}
static inline void fg_atomic_store_u64(uint64_t *p, uint64_t v)
{
    _InterlockedExchange64((volatile __int64 *)p, (__int64)v);
}
static inline void *fg_atomic_load_ptr(void *const *p)
{
    return _InterlockedCompareExchangePointer((void *volatile *)p, NULL, NULL);
}
static inline void *fg_relaxed_load_ptr(void *const *p)
{
    return *(void *const volatile *)p;
}
static inline void fg_relaxed_store_ptr(void **p, void *v)
{
    *(void *volatile *)p = v;
}
static inline void fg_atomic_store_ptr(void **p, void *v)
{
    _InterlockedExchangePointer((void *volatile *)p, v);
}
static inline void *fg_atomic_exchange_ptr(void **p, void *v)
{
    return _InterlockedExchangePointer((void *volatile *)p, v);
}
static inline int fg_atomic_cas_ptr(void **p, void **expected, void *desired)
{
    void *seen = _InterlockedCompareExchangePointer((void *volatile *)p, desired, *expected);
    if (seen == *expected)
        return 1;
    *expected = seen;
    return 0;
}
static inline size_t fg_atomic_add_size(size_t *p, size_t delta)
{
#ifdef _WIN64
    return (size_t)_InterlockedExchangeAdd64((volatile __int64 *)p, (__int64)delta) + delta;
#else
    return (size_t)_InterlockedExchangeAdd((volatile long *)p, (long)delta) + delta;
#endif
}
static inline size_t fg_atomic_load_size(const size_t *p)
{
    return *(const volatile size_t *)p;  /* aligned word reads are whole on Windows' targets */
}
#else
#define FG_THREAD_LOCAL __thread
static inline uint32_t fg_atomic_add_u32(uint32_t *p, int32_t delta)
{
    /* acquire-release: the thread that takes a count to zero sees every other thread's
     * writes to the node before it frees it */
    return __atomic_add_fetch(p, (uint32_t)delta, __ATOMIC_ACQ_REL);
}
static inline uint32_t fg_atomic_load_u32_acquire(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline int fg_atomic_cas_u64(uint64_t *p, uint64_t *expected, uint64_t desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
}
static inline uint64_t fg_atomic_load_u64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void fg_atomic_store_u64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void *fg_atomic_load_ptr(void *const *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void *fg_relaxed_load_ptr(void *const *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void fg_relaxed_store_ptr(void **p, void *v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void fg_atomic_store_ptr(void **p, void *v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline void *fg_atomic_exchange_ptr(void **p, void *v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL);
}
static inline int fg_atomic_cas_ptr(void **p, void **expected, void *desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}
static inline size_t fg_atomic_add_size(size_t *p, size_t delta)
{
    return __atomic_add_fetch(p, delta, __ATOMIC_RELAXED);
}
static inline size_t fg_atomic_load_size(const size_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
#endif

/* A double read or changed whole, through its bits (no lost addition, no torn value). */
static inline double fg_atomic_load_double(const double *p)
{
    uint64_t bits = fg_atomic_load_u64((const uint64_t *)(const void *)p);
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* *p = update(*p, a, b) as one step: update is retried on what another thread wrote. */
#define FG_ATOMIC_UPDATE_DOUBLE(p, NEW_FROM_OLD)                                           \
    do {                                                                                   \
        uint64_t *bits_ = (uint64_t *)(void *)(p);                                         \
        uint64_t seen_ = fg_atomic_load_u64(bits_), want_;                                 \
        double old_, new_;                                                                 \
        do {                                                                               \
            memcpy(&old_, &seen_, sizeof old_);                                            \
            new_ = NEW_FROM_OLD(old_);                                                     \
            memcpy(&want_, &new_, sizeof want_);                                           \
        } while (!fg_atomic_cas_u64(bits_, &seen_, want_));                                \
    } while (0)

static inline void fg_atomic_add_double(double *p, double x)
{
#define FG_PLUS_X_(old) ((old) + x)
    FG_ATOMIC_UPDATE_DOUBLE(p, FG_PLUS_X_);
#undef FG_PLUS_X_
}

static inline void fg_atomic_store_double(double *p, double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    fg_atomic_store_u64((uint64_t *)(void *)p, bits);
}

/* A grad is read and added to by whichever thread runs a backward through it. */
#define FG_GRAD_READ(n) fg_atomic_load_double(&(n)->grad)
#define FG_GRAD_ADD(target, x) fg_atomic_add_double((target), (x))
#define FG_GRAD_SET(n, x) fg_atomic_store_double(&(n)->grad, (x))

/* Node flags are set by whichever thread compiles a tape over the node. */
#if defined(_MSC_VER) && !defined(__clang__)
#define FG_FLAGS_SET(n, f) ((void)_InterlockedOr8((volatile char *)&(n)->flags, (char)(f)))
#else
#define FG_FLAGS_SET(n, f) ((void)__atomic_fetch_or(&(n)->flags, (uint8_t)(f), __ATOMIC_RELAXED))
#endif

#else /* one thread at a time: the plain operations */

#define FG_GRAD_READ(n) ((n)->grad)
#define FG_GRAD_ADD(target, x) (*(target) += (x))
#define FG_GRAD_SET(n, x) ((n)->grad = (x))
#define FG_FLAGS_SET(n, f) ((n)->flags |= (uint8_t)(f))

#endif /* FG_THREADSAFE */

#endif /* FASTGRAD_ATOMICS_H */
