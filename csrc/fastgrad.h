/*
 * fastgrad.h: a scalar reverse-mode autograd engine in plain C99.
 *
 * Nodes live in an arena of fixed-size slabs that never move, so a node pointer stays valid
 * for the node's whole life. A node is reference counted: each parent node and each handle
 * (for the Python wrapper, the Value object) holds one reference; when the count drops to
 * zero the node goes back to the arena's free list and its operands are released in turn,
 * iteratively. Nothing here recurses, so graphs of any depth are safe.
 *
 * Every function that can fail returns an fg_status and changes nothing when it fails.
 * The failures mirror Python's: FG_ZERO_DIVISION where float division raises
 * ZeroDivisionError, FG_DOMAIN_ERROR / FG_RANGE_ERROR where the math module raises
 * ValueError / OverflowError, so a wrapper can raise exactly what Python would.
 *
 * The arena is not thread-safe; the Python wrapper serialises access with the GIL.
 */
#ifndef FASTGRAD_H
#define FASTGRAD_H

#include <stddef.h>
#include <stdint.h>
#include "atomics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One opcode per row of ops.def, in the table's order. */
typedef enum fg_op {
#define FG_ROW(name, symbol) FG_##name,
#include "ops.def"
    FG_OP_COUNT
} fg_op;

/* How an op takes its operands. */
typedef enum fg_kind {
    FG_KIND_LEAF,       /* none */
    FG_KIND_UNARY,      /* u.arg[0] (POWC: and u.powc.exponent) */
    FG_KIND_BINARY,     /* u.arg[0], u.arg[1] */
    FG_KIND_NARY,       /* u.nary.args: start, then terms of `stride` operands each */
    FG_KIND_OPAQUE      /* u.nary.args, any number; no derivative */
} fg_kind;

typedef enum fg_status {
    FG_OK = 0,
    FG_ZERO_DIVISION,   /* a float division by zero (Python: ZeroDivisionError) */
    FG_DOMAIN_ERROR,    /* outside a math function's domain (Python: ValueError) */
    FG_RANGE_ERROR,     /* a math function overflowed (Python: OverflowError) */
    FG_NO_MEMORY,       /* an allocation failed (Python: MemoryError) */
    FG_BAD_ARGUMENT,    /* an op, operand count or kind the call does not take */
    FG_INTERRUPTED,     /* a run's interrupted callback asked it to stop */
    FG_INDEX_ERROR      /* a class index that is no class (Python: IndexError) */
} fg_status;

/* Node flags. */
enum {
    FG_EXTRA = 1,       /* the owner keeps data beside this node: the release hook is called */
    FG_CONSTANT = 2,    /* a leaf made for a number operand (micrograd's Value(other)) */
    /* recorded by a tape below its outputs (FG_TAPED) or as one of them (FG_TAPED_OUTPUT):
     * its data and grad may wait in the tape until fg_tape_sync (a wrapper checks this bit
     * before it lets anyone see or use the node); never cleared */
    FG_TAPED = 4,
    FG_TAPED_OUTPUT = 8,
    /* requires no grad: a leaf made so (Value(x, requires_grad=False)), or a node whose
     * operands all require none (numbers aside): backward never evaluates a local derivative
     * toward it nor adds into its grad, so a singular derivative there never raises */
    FG_NO_GRAD = 16,
    /* requires no grad because a choice made from data is below it (ops.def's SIGN...: a
     * derivative's relu step), not by the user's wish: backward of it is no mistake, and
     * leaves every grad below it as it was, as backward of a constant does */
    FG_CHOSEN = 32
};

/* Whether backward reaches n: its grad is wanted. */
#define FG_WANTS_GRAD(n) (((n)->flags & FG_NO_GRAD) == 0)

typedef struct fg_node fg_node;
struct fg_node {
    double data;                                    /* forward value */
    double grad;                                    /* d root / d this node, accumulated */
    union {
        fg_node *arg[2];                            /* operands of unary and binary ops */
        struct { fg_node *base; double exponent; } powc; /* POWC: base is arg[0]; the constant c */
        struct {
            fg_node **args;                         /* NARY, OPAQUE: operands, owned by the node */
            uint32_t count;                         /* number of operands */
            uint32_t cursor;                        /* NARY: terms still to run in this backward */
        } nary;
    } u;
    uint32_t refs;                                  /* parents plus handles holding this node */
    uint8_t op;                                     /* an fg_op */
    uint8_t flags;                                  /* FG_EXTRA, FG_CONSTANT, FG_TAPED... */
    uint16_t mark;                                  /* the last traversal that reached it */
    union {
        void *handle;                               /* while live: the owner's object, or NULL */
        fg_node *next;                              /* while free: the next free node */
    } link;
    uint64_t serial;                                /* creation order within its arena: of
                                                     * two failing nodes, eager code met the
                                                     * one with the smaller first */
};

typedef struct fg_arena fg_arena;

/* Called once for each node flagged FG_EXTRA as it is freed, before its memory is reused. */
typedef void (*fg_release_hook)(void *context, fg_node *node);

/* ---- the op table (ops.c) ---- */

const char *fg_op_symbol(fg_op op);                 /* "+", "ReLU", "**", "" for leaves */
fg_kind fg_op_kind(fg_op op);                       /* how the op takes operands */
uint32_t fg_op_stride(fg_op op);                    /* operands per term of an NARY op, else 0 */
fg_node *const *fg_operands(const fg_node *n, uint32_t *count); /* n's operands, in order */
/* Whether the op's derivatives call a helper that can fail (DIV, POW, SQRT... in ops.def),
 * read off the formulas' text so that a new row needs no hand-kept flag. */
int fg_derivative_may_fail(fg_op op);

/* ---- the arena (arena.c) ---- */

fg_arena *fg_arena_new(void);                       /* an empty arena, or NULL without memory */
void fg_arena_free(fg_arena *A);                    /* frees every node and slab at once */
void fg_arena_set_release_hook(fg_arena *A, fg_release_hook hook, void *context);
size_t fg_arena_live(const fg_arena *A);            /* nodes allocated and not yet freed */
size_t fg_arena_capacity(const fg_arena *A);        /* nodes the slabs hold, live or free */
size_t fg_arena_bytes(const fg_arena *A);           /* bytes held: slabs, operand lists, scratch */
void fg_arena_trim(fg_arena *A);                    /* gives back scratch space kept for reuse */
/* With FG_THREADSAFE, an arena belongs to one thread at a time: only that thread allocates
 * from it or traverses with it, and any thread may free its nodes. fg_arena_new gives the
 * arena to the calling thread; a thread that stops using one disowns it, and another thread
 * adopts it. Without FG_THREADSAFE both do nothing. */
void fg_arena_adopt(fg_arena *A);
void fg_arena_disown(fg_arena *A);

/* Node constructors. Each computes the forward value from the operands' current data,
 * and on FG_OK stores in *out a new node holding one reference for the caller and one
 * reference to each operand. On failure nothing is allocated and *out is untouched. */
fg_status fg_new_leaf(fg_arena *A, double data, fg_node **out);
fg_status fg_new_constant(fg_arena *A, double data, fg_node **out); /* a leaf, FG_CONSTANT */
fg_status fg_new_unary(fg_arena *A, fg_op op, fg_node *a, fg_node **out);
fg_status fg_new_powc(fg_arena *A, fg_node *a, double exponent, fg_node **out);
fg_status fg_new_binary(fg_arena *A, fg_op op, fg_node *a, fg_node *b, fg_node **out);
/* a op x (or x op a when number_first) for a number x, which becomes a constant leaf held
 * only by the new node, as micrograd's Value(other) is (flagged FG_CONSTANT). */
fg_status fg_new_binary_number(fg_arena *A, fg_op op, fg_node *a, double x, int number_first,
                               fg_node **out);
/* NARY: args = start, then at least one term of fg_op_stride(op) operands. */
fg_status fg_new_nary(fg_arena *A, fg_op op, fg_node *const *args, uint32_t count,
                      fg_node **out);
/* OPAQUE: a node with the given data and operands whose backward does nothing. */
fg_status fg_new_opaque(fg_arena *A, double data, fg_node *const *args, uint32_t count,
                        fg_node **out);

/* Any op's node with the given data, not computed (to rebuild a graph exactly as it was
 * stored): operands as for the op's kind (none for LEAF), exponent for POWC only. */
fg_status fg_new_node(fg_arena *A, fg_op op, double data, fg_node *const *args, uint32_t count,
                      double exponent, fg_node **out);

#ifdef FG_THREADSAFE
/* Atomic: graphs of other threads may hold n too. */
static inline void fg_incref(fg_node *n) { fg_atomic_add_u32(&n->refs, 1); }
#else
static inline void fg_incref(fg_node *n) { n->refs++; }
#endif
void fg_decref(fg_arena *A, fg_node *n);            /* frees n, iteratively, at zero */

/* ---- graphs (graph.c) ---- */

/* Recomputes n's forward value from its operands' current data into *out (n unchanged). */
fg_status fg_eval(const fg_node *n, double *out);

/* Runs n's local chain rule once, adding into its operands' grads (micrograd's
 * _backward). Computes every local derivative before it adds anything. */
fg_status fg_node_backward(fg_node *n);

/* The nodes below root in depth-first post-order (operands in order), root last. An NARY
 * node appears once per term, where the chain of + it replaces would have its nodes.
 * The array belongs to the arena and is valid until the next traversal. */
fg_status fg_topo(fg_arena *A, fg_node *root, fg_node *const **order, size_t *length);

/* micrograd's backward(): sets root->grad = 1 and runs every node's chain rule in reverse
 * topological order. Checks first that no local derivative fails; if one does, stores the
 * node in *failed, returns its status and changes nothing. */
fg_status fg_backward(fg_arena *A, fg_node *root, fg_node **failed);

/* ---- gradients that touch no grad (derive.c) ---- */

/* d root / d inputs[i] for each i, exactly as fg_backward would leave them in the inputs'
 * grads with every grad 0.0 first (signed zeros included), without touching any grad:
 * values[i] gets the number. With create_graph, nodes[i] also gets a node holding it (one
 * reference for the caller): the derivative built as an ordinary graph over root's from
 * ops.def's derivative formulas, so that it can be differentiated again; a constant leaf
 * where the derivative is a number (0.0 for an input the root does not reach). Only the
 * grads on paths from the root to the inputs are built, each node's contributions summed in
 * one SUM node. Fails where fg_backward fails, naming the node in *failed, and then leaves
 * no node behind. */
fg_status fg_gradients(fg_arena *A, fg_node *root, fg_node *const *inputs, size_t count,
                       int create_graph, double *values, fg_node **nodes, fg_node **failed);

/* ---- compiled tapes (tape.c) ---- */

/* A graph compiled once into a program over dense slots, replayed in C. The tape holds a
 * reference to every node below its root. Its leaves are the LEAF nodes that are not
 * FG_CONSTANT, and OPAQUE nodes, numbered in slot order: forward reads their data, backward
 * adds to their grads. Constants are part of the program: their data is read when the tape
 * is made. Replay writes the outputs' data (forward), their grads and the leaves' (backward)
 * into their nodes; the rest waits for fg_tape_sync, and the nodes are flagged FG_TAPED so
 * that a wrapper knows when to call it. Every call either
 * succeeds or changes nothing, and names the failing node. */
typedef struct fg_tape fg_tape;

fg_status fg_tape_new(fg_arena *A, fg_node *root, fg_tape **out);  /* compiled and fused */
/* fuse = 0 keeps one step per node, as the eager order has them (to measure what fusing buys) */
fg_status fg_tape_compile(fg_arena *A, fg_node *root, int fuse, fg_tape **out);
/* The same, reporting the values of `outputs` (nodes below root; fg_tape_compile's output is
 * the root): forward writes their data, backward their grads, run() their values per row.
 * FG_BAD_ARGUMENT for an output that is not below root. */
fg_status fg_tape_compile_outputs(fg_arena *A, fg_node *root, fg_node *const *outputs,
                                  size_t count, int fuse, fg_tape **out);
size_t fg_tape_output_count(const fg_tape *T);
/* Replaces the value the last forward read for leaf number `leaf`, for the next backward:
 * only for a leaf that no derivative of another node reads (a DOT's seed of several roots). */
void fg_tape_set_leaf_value(fg_tape *T, size_t leaf, double value);
void fg_tape_free(fg_tape *T);                      /* drops the references */
size_t fg_tape_size(const fg_tape *T);              /* nodes, one slot each */
size_t fg_tape_steps(const fg_tape *T);             /* steps of its fused program */
size_t fg_tape_leaf_count(const fg_tape *T);
fg_node *fg_tape_leaf(const fg_tape *T, size_t i);
fg_node *fg_tape_node(const fg_tape *T, size_t slot);
fg_node *fg_tape_root(const fg_tape *T);
long fg_tape_leaf_index(const fg_tape *T, const fg_node *n); /* its leaf number, or -1; O(1) */

/* Recomputes every node from the leaves' current data (as building the graph again would). */
fg_status fg_tape_forward(fg_tape *T, fg_node **failed);
/* micrograd's backward over the last forward: interior and constant grads from 0, the
 * root's 1, the leaves' added to what their nodes hold. */
fg_status fg_tape_backward(fg_tape *T, fg_node **failed);

/* The same in three parts, for a wrapper that must hold a lock whenever nodes are touched
 * (a GIL): load reads the leaves' data or grads, compute touches only the tape, store writes
 * the results. A leaf grad that changed between load and store (another tape's replay) gets
 * this replay's contribution added to it. On failure, fg_tape_failed_node names the node. */
void fg_tape_load_data(fg_tape *T);
void fg_tape_load_grads(fg_tape *T);
fg_status fg_tape_compute_forward(fg_tape *T);
fg_status fg_tape_compute_backward(fg_tape *T);
/* The same from the root's grad `seed` instead of 1.0 (Tape.backward's seed). */
fg_status fg_tape_compute_backward_from(fg_tape *T, double seed);
/* the outputs' data (not a leaf's), their grads 0.0 as in a graph built anew */
void fg_tape_store_forward(fg_tape *T);
void fg_tape_store_grads(fg_tape *T);               /* the leaves', root's and outputs' grads */
fg_node *fg_tape_failed_node(const fg_tape *T);     /* NULL for FG_NO_MEMORY */
const double *fg_tape_failed_operands(const fg_tape *T); /* its operands' values */
size_t fg_tape_failed_row(const fg_tape *T);        /* run(): the row that failed */
int fg_tape_failed_in_backward(const fg_tape *T);   /* a local derivative failed, not a rule */

/* run(): the tape replayed once per row of X (and Y), the given leaves (by leaf number)
 * taking each row's values. Each row's forward and backward are those of fg_tape_forward and
 * fg_tape_backward at that row, its leaf gradients computed from zero (-0.0); each leaf's
 * grad becomes its grad before the call plus the rows' gradients added one row at a time in
 * row order, so the bits depend neither on `threads` nor on how the rows are cut into
 * blocks. out[row * outputs + i] is output i's value (fg_tape_output_count outputs; the root
 * alone for fg_tape_compile's tapes). X and Y are row-major. */
typedef struct fg_run {
    size_t rows;
    const size_t *inputs;           /* leaf numbers fed by X's columns */
    size_t input_count;
    const double *X;
    const size_t *targets;          /* leaf numbers fed by Y's columns */
    size_t target_count;
    const double *Y;
    double *out;                    /* rows * fg_tape_output_count(T) doubles */
    double root_grad;               /* the seed of each row's backward (1.0: the rows' sum) */
    int backward;                   /* 0: forward only, no grad read or written */
    unsigned threads;               /* worker threads, the calling one included (>= 1) */
    /* called by the calling thread between blocks; nonzero stops the run (FG_INTERRUPTED) */
    int (*interrupted)(void *context);
    void *context;
} fg_run;

fg_status fg_tape_run(fg_tape *T, const fg_run *job, fg_node **failed, size_t *failed_row);
/* in three parts, as forward and backward: load reads every leaf's data and grad */
void fg_tape_load_run(fg_tape *T);
fg_status fg_tape_compute_run(fg_tape *T, const fg_run *job);
/* the leaves' grads (with backward); the rest waits for fg_tape_sync: the nodes' data at
 * the leaves' data as read, not a row's, and their grads 0.0 */
void fg_tape_store_run(fg_tape *T, const fg_run *job);

/* How the last run laid out one step of the program (fg_tape_run_plan), for drawings and
 * tests of the plan: which loop runs it and which steps run together. */
typedef struct fg_plan_step {
    int kind;                       /* 0 unary, 1 binary, 2 n-ary, 3 divisions by one value */
    int op;                         /* its head's op (fg_op); FG_DIV for divisions */
    int tail;                       /* single-use unary ops fused after it */
    int loop;                       /* an n-ary step's loop: 0 term by term, 1 (parameter, row)
                                     * dot, 2 sum of rows, 3 dot led by a few other terms */
    long layer;                     /* the first step of the layer group it belongs to, or -1 */
    int colour;                     /* that group's colour (interleaved groups differ) */
} fg_plan_step;

/* The plan of the last run's rows (the leaves it fed): fg_tape_steps(T) entries into steps,
 * the slots that hold a row of values (*lanes) and the rows a block takes (*rows_per_block).
 * FG_BAD_ARGUMENT if the tape has not run rows. */
fg_status fg_tape_run_plan(const fg_tape *T, fg_plan_step *steps, size_t *lanes,
                           size_t *rows_per_block);

/* The node-rows of work below which run() gives a thread no share (fewer threads than asked
 * where the rows are few, or where other programs keep the cores busy; the bits are the
 * same). Sets it, returns the one before; tests set 0 so that every thread they ask for
 * runs, whatever the machine is doing. */
size_t fg_run_min_work(size_t node_rows);

/* run()'s vector kernels: its row loops built once per instruction set, widest first
 * ("avx512", "avx2", "sse2" on x86-64; "neon" on arm64; "scalar", one double a vector,
 * everywhere). Every kernel gives the same bits: lanes are rows, one IEEE operation each.
 * The widest this CPU runs is chosen on first use; select another only while no run is. */
const char *fg_simd_kernel(size_t i);               /* the i-th kernel's name, NULL past them */
int fg_simd_supported(const char *name);            /* 1 this CPU runs it, 0 not, -1 unknown */
int fg_simd_select(const char *name);               /* what fg_simd_supported says; 1: chosen */
const char *fg_simd_selected(void);                 /* the kernel run() uses */

/* What a replay left to write into the nodes, which fg_tape_sync writes: the interior
 * nodes' and constants' data and grads (after forward, backward and run), and the outputs'
 * too (after run, which leaves the graph at the leaves' data as it read them). */
enum {
    FG_TAPE_UNSYNCED_DATA = 1,      /* the data of the nodes below the outputs */
    FG_TAPE_UNSYNCED_GRADS = 2,     /* their grads */
    FG_TAPE_UNSYNCED_OUTPUTS = 4    /* the outputs' data and grads too */
};
int fg_tape_unsynced(const fg_tape *T);             /* FG_TAPE_UNSYNCED_* bits, 0 if none */

/* Writes what the last replay left unwritten (fg_tape_unsynced), by the plain program: every
 * node's data (but the leaves') as the last forward computed it, and their grads from the
 * backward over it, or 0.0 where none ran since (a graph built anew has zero grads), so that
 * the nodes hold what building the graph again at the leaves' values would. Does nothing
 * where nothing waits. A run whose leaves' data give a failing forward leaves the nodes as
 * they were. */
fg_status fg_tape_sync(fg_tape *T);

/* ---- optimisers (optim.c) ---- */

/* Each step is PyTorch's single-tensor rule (foreach=False) for parameters that are one number
 * each, in its order of operations; the state arrays hold one double per parameter and are
 * updated in place. */
typedef struct fg_sgd_options {
    double lr, momentum, dampening, weight_decay;
    int nesterov, maximize;               /* booleans */
} fg_sgd_options;

/* SGD: a parameter's momentum buffer starts as its first d (has_buffer[i] set then). */
void fg_sgd_step(fg_node *const *params, size_t count, const fg_sgd_options *o,
                 double *momentum_buffer, unsigned char *has_buffer);

typedef struct fg_adam_options {
    double lr, beta1, beta2, eps, weight_decay;
    int decoupled;                        /* AdamW: decay the data, not the gradient */
    int amsgrad, maximize;                /* booleans */
} fg_adam_options;

/* Adam and AdamW; max_exp_avg_sq is used with amsgrad only. */
void fg_adam_step(fg_node *const *params, size_t count, const fg_adam_options *o,
                  double *step, double *exp_avg, double *exp_avg_sq, double *max_exp_avg_sq);

typedef struct fg_rmsprop_options {
    double lr, alpha, eps, weight_decay, momentum;
    int centered, maximize;               /* booleans */
} fg_rmsprop_options;

/* RMSprop; grad_avg is used when centered, momentum_buffer when momentum > 0. */
void fg_rmsprop_step(fg_node *const *params, size_t count, const fg_rmsprop_options *o,
                     double *step, double *square_avg, double *grad_avg,
                     double *momentum_buffer);
void fg_zero_grad(fg_node *const *params, size_t count); /* every grad to 0.0 */

/* The per-parameter rules of optim.c's table, by number. */
typedef enum fg_rule {
    FG_RULE_NADAM, FG_RULE_RADAM, FG_RULE_ADAGRAD, FG_RULE_ADAMAX, FG_RULE_ADADELTA,
    FG_RULE_COUNT
} fg_rule;
const char *fg_rule_name(fg_rule rule);             /* "nadam"..., NULL past the table */
/* One step of `rule` over the parameters, from its hyperparameters and per-parameter state
 * arrays in the order of its row in optim.c (FG_BAD_ARGUMENT for other counts). */
fg_status fg_rule_step(fg_rule rule, fg_node *const *params, size_t count, const double *hyper,
                       size_t hyper_count, double *const *state, size_t state_count);

#ifdef __cplusplus
}
#endif

#endif /* FASTGRAD_H */
