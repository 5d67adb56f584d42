/*
 * _threads.h: how fastgrad._core finds the calling thread's arena and a node's Python
 * handle, on a GIL build and on a free-threaded one.
 *
 * GIL build: one arena for the process (fg_thread_arena is a plain global, set at import)
 * and a handle is read and written plainly, as always.
 *
 * Free-threaded build (FG_THREADSAFE, defined by setup.py where Py_GIL_DISABLED is): each
 * thread allocates from an arena of its own (fg_thread_arena is thread-local; _core.pyx
 * gives a thread one on its first node and takes it back into a pool when the thread ends).
 * A node's handle may be dropped by one thread while another asks for it: fg_take_handle
 * takes a reference only while the object is provably alive, else reports none, and the
 * caller makes a new handle.
 */
#ifndef FASTGRAD_THREADS_GLUE_H
#define FASTGRAD_THREADS_GLUE_H

#include <Python.h>

#include "fastgrad.h"

#ifdef FG_THREADSAFE
#define FG_FREE_THREADED 1
static FG_THREAD_LOCAL fg_arena *fg_thread_arena = NULL;

#ifndef _Py_REF_SHARED_SHIFT
#define _Py_REF_SHARED_SHIFT 2
#endif

/* A new reference to op if op is alive, else 0 (then it is being freed, or may be: the
 * caller makes a new handle instead). The owner thread's own count can only fall in that
 * thread; another thread's share is added to only while it is above zero (CPython's
 * _Py_TryIncrefFast and _Py_TryIncRefShared, which an extension cannot call before 3.14). */
static inline int fg_try_incref(PyObject *op)
{
    Py_ssize_t shared;
    if (_Py_IsOwnedByCurrentThread(op)) {
        uint32_t local = _Py_atomic_load_uint32_relaxed(&op->ob_ref_local);
        if (local == UINT32_MAX)
            return 1;  /* immortal */
        if (local > 0) {
            _Py_atomic_store_uint32_relaxed(&op->ob_ref_local, local + 1);
            return 1;
        }
    }
    shared = _Py_atomic_load_ssize_relaxed(&op->ob_ref_shared);
    while ((shared >> _Py_REF_SHARED_SHIFT) > 0)
        if (_Py_atomic_compare_exchange_ssize(&op->ob_ref_shared, &shared,
                                              shared + ((Py_ssize_t)1 << _Py_REF_SHARED_SHIFT)))
            return 1;
    return 0;
}

/* n's handle with a new reference, or NULL; *seen gets the handle read (for
 * fg_install_handle). */
static inline PyObject *fg_take_handle(fg_node *n, void **seen)
{
    PyObject *h = (PyObject *)fg_atomic_load_ptr(&n->link.handle);
    *seen = h;
    return h != NULL && fg_try_incref(h) ? h : NULL;
}

/* Makes v n's handle if the handle is still the one seen (else another thread installed
 * one: v stays a second handle on the node, which is harmless). */
static inline void fg_install_handle(fg_node *n, void *seen, void *v)
{
    fg_atomic_cas_ptr(&n->link.handle, &seen, v);
}

/* A handle being freed stops being n's handle, unless another has replaced it. Without an
 * atomic read-modify-write: a handle installed by another thread between the read and the
 * write is then forgotten, and the next request makes another (identity is lost, nothing
 * else: each handle holds its own reference). */
static inline void fg_clear_handle(fg_node *n, void *v)
{
    if (fg_relaxed_load_ptr(&n->link.handle) == v)
        fg_relaxed_store_ptr(&n->link.handle, NULL);
}
#else
#define FG_FREE_THREADED 0
static fg_arena *fg_thread_arena = NULL;

static inline PyObject *fg_take_handle(fg_node *n, void **seen)
{
    PyObject *h = (PyObject *)n->link.handle;
    *seen = h;
    Py_XINCREF(h);
    return h;
}

static inline void fg_install_handle(fg_node *n, void *seen, void *v)
{
    (void)seen;
    n->link.handle = v;
}

static inline void fg_clear_handle(fg_node *n, void *v)
{
    (void)v;  /* with the GIL a node's handle is the only Value made for it */
    n->link.handle = NULL;
}
#endif

static inline void fg_set_thread_arena(fg_arena *A)
{
    fg_thread_arena = A;
}

#endif /* FASTGRAD_THREADS_GLUE_H */
