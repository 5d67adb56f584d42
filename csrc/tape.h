/*
 * tape.h: the compiled tape's private layout, shared by the files that build and replay it.
 * Not part of the public API.
 *
 * A tape holds one graph as two programs over the same leaves:
 *
 *   the plain program (plain.c): one instruction per entry of the eager backward's order, in
 *   that order, over a slot per node. It is the exact definition of a replay: errors are
 *   found and named by it, and sync() writes every node from it.
 *
 *   the step program (schedule.c): the same computation rescheduled and fused into steps, over
 *   compact slots for the nodes that steps exchange. Two executors run it: replay.c one row
 *   at a time (forward(), backward()), rows.c over blocks of rows on worker threads (run()).
 *
 * A step is a head (a unary, binary or n-ary op, or a group of divisions by one denominator)
 * and a tail: a chain of unary ops and ops with a number operand applied to the head's result
 * while it is in a register, each on a node that nothing else uses. Both executors compute
 * exactly the plain program's formulas in its order of accumulation (schedule.c moves an
 * entry only where no other entry adds into the same grads in between), so every bit is the
 * plain program's.
 */
#ifndef FASTGRAD_TAPE_H
#define FASTGRAD_TAPE_H

#include "arena.h"
#include "ops.h"

/* A pointer that nothing else aliases, for the loops the compiler should vectorise. */
#if defined(__GNUC__) || defined(__clang__)
#define FG_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define FG_RESTRICT __restrict
#else
#define FG_RESTRICT restrict
#endif

/* A helper inlined wherever it is called, so that its constant arguments (a loop's vector
 * count) specialise it: its accumulators then live in registers. */
#if defined(__GNUC__) || defined(__clang__)
#define FG_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define FG_ALWAYS_INLINE inline
#endif

/* ---- the plain program ---- */

typedef struct fg_instr {
    uint8_t op;                     /* an fg_op; never LEAF or OPAQUE */
    uint8_t kind;                   /* its fg_kind, here to spare a table lookup */
    uint8_t stride;                 /* NARY: operands per term */
    uint32_t out;                   /* the node's slot */
    uint32_t a;                     /* operand slot; NARY: offset of its operand list in args */
    uint32_t b;                     /* second operand slot; NARY: the first term this entry runs */
    union {
        double c;                   /* POWC's exponent */
        struct {
            uint32_t last;          /* NARY: the last term this entry runs */
            uint32_t terms;         /* NARY: its number of terms */
        } run;
    } u;
} fg_instr;

/* A rule that failed: where and at which operand values, for the caller's message. */
typedef struct fg_failure {
    fg_status status;
    uint32_t slot;                  /* the node whose rule failed (a plain slot) */
    double operands[2];             /* its operands' values */
} fg_failure;

/* ---- the step program ---- */

enum {
    FG_STEP_UNARY,                  /* op(a); POWC's exponent in c */
    FG_STEP_BINARY,                 /* op(a, b) */
    FG_STEP_NARY,                   /* terms first..last of an n-ary node (all of them, once
                                     * gathered); its value is made by the step with the last */
    FG_STEP_DIVS,                   /* count divisions by the denominator b */
    FG_STEP_TAILED = 4,             /* added to the kind of a step that has a tail */
    FG_STEP_STORED = 8,             /* added to the kind of a unary or binary step whose head's
                                     * derivatives forward stores: those that can fail (they
                                     * must be checked as forward runs) and a tailed head's (its
                                     * result is in no slot); the others are taken again from
                                     * the operands and the result, as eager backward does */
    /* derivatives whose failure does not count, as eager backward never evaluates them: all
     * of a step whose head requires no grad (FG_NO_GRAD), or those toward its operand a or b
     * (their values reach only grads that nothing reads) */
    FG_STEP_QUIET = 16,
    FG_STEP_QUIET_A = 32,
    FG_STEP_QUIET_B = 64
};

/* The status a derivative's failure goes to in a step's forward: derivative_st, unless the
 * step's `quiet` bits say that it does not count. */
#define FG_DERIVATIVE_STATUS(s, quiet) \
    (((s)->kind & (FG_STEP_QUIET | (quiet))) ? &quiet_st : &derivative_st)
#define FG_STEP_KIND(s) ((s)->kind & 3)

/* What replay.c's backward switches on: a stored derivatives' case by kind, or an op's own
 * case for a head whose derivatives it computes again. */
enum {
#define FG_UNARY(name, symbol, forward, d_da) FG_BACK_##name,
#define FG_BINARY(name, symbol, forward, d_da, d_db) FG_BACK_##name,
#define FG_NARY(name, symbol, stride, term, d_dv0, d_dv1) FG_BACK_##name, FG_BACK_TAILED_##name,
#include "ops.def"
    FG_BACK_UNARY_STORED,
    FG_BACK_UNARY_TAILED,
    FG_BACK_BINARY_STORED,
    FG_BACK_BINARY_TAILED,
    FG_BACK_DIVS
};

/* How a tail op takes its operand: alone, or with a number on its right or left. */
enum { FG_MICRO_UNARY, FG_MICRO_NUMBER_RIGHT, FG_MICRO_NUMBER_LEFT };

typedef struct fg_micro {
    uint8_t op;                     /* a unary or binary fg_op */
    uint8_t form;                   /* FG_MICRO_* */
    uint16_t code;                  /* FG_MICRO_CODE(op, form): what replay.c switches on */
    double c;                       /* POWC's exponent, or the number operand */
} fg_micro;

#define FG_MICRO_CODE(op, form) ((op) * 3 + (form))

/* A step's code, what the executors switch on: the head's op, or FG_DIVS_CODE for a group. */
#define FG_DIVS_CODE FG_OP_COUNT

/* The op of a step's head (a group's is DIV). */
#define FG_STEP_OP(s) ((fg_op)((s)->code == FG_DIVS_CODE ? FG_DIV : (s)->code))

typedef struct fg_step {
    uint8_t code;                   /* the head's op, or FG_DIVS_CODE */
    uint8_t kind;                   /* FG_STEP_*, and FG_STEP_TAILED, FG_STEP_STORED */
    uint8_t back;                   /* FG_BACK_*: backward's case */
    uint8_t tail;                   /* tail ops, the next ones of fg_program.micro */
    uint32_t out;                   /* the slot of the step's result, after its tail; DIVS:
                                     * the first of count consecutive slots */
    uint32_t a, b;                  /* operand slots; NARY: a indexes fg_program.args (the
                                     * operand slots, start first), b is the first term run */
    uint32_t count;                 /* NARY: the last term run; DIVS: divisions */
    uint32_t terms;                 /* NARY: the node's terms; DIVS: offset of the numerator
                                     * slots in fg_program.args; POWC: its exponent's index in
                                     * fg_program.numbers */
} fg_step;

/* The step program over compact slots: the leaves in the tape's leaf order, then the
 * constants that steps read, then every step result in step order. */
typedef struct fg_program {
    fg_step *steps;
    size_t length;
    uint32_t *args;                 /* NARY operand lists and DIVS numerators */
    size_t args_length;
    fg_micro *micro;                /* the tails, in step order */
    size_t micro_length;
    size_t slots;                   /* leaves, constants and results; the sink is slot `slots` */
    size_t constant_end;            /* constants in [leaf_count, constant_end) */
    double *constants;              /* their values, constant_end - leaf_count of them */
    double *numbers;                /* POWC heads' exponents; numbers[0] is 0.0 */
    size_t numbers_length;
    size_t derivs;                  /* doubles of local derivatives a forward stores */
    uint32_t root;                  /* the root's slot */
    uint32_t *outputs;              /* the outputs' slots, fg_tape.output_count of them */
    uint32_t *uses;                 /* slot -> how many operand places read it (the root and
                                     * each output one more), for rows.c's plan */
} fg_program;

/* ---- the tape ---- */

/* One row's replay state for the step program: what forward computed, for backward. */
typedef struct fg_row_state {
    double *value;                  /* slot -> data, the sink last */
    double *deriv;                  /* the local derivatives, in step order */
    int pending;                    /* a local derivative failed: backward must raise */
} fg_row_state;

/* The plain program's state, made when first needed (a failure to name, sync). */
typedef struct fg_plain_state {
    double *value;                  /* plain slot -> data, the sink last */
    double *deriv;                  /* instruction i -> d/da at 2i, d/db at 2i + 1 */
    double *grad;                   /* plain slot -> grad */
    fg_failure pending;             /* the first local derivative that failed */
} fg_plain_state;

typedef struct fg_rows_cache fg_rows_cache;

struct fg_tape {
    fg_arena *arena;
    /* the graph */
    size_t slots;                   /* plain slots: leaves, then constants, then interior */
    size_t leaf_count;              /* slots [0, leaf_count) in both programs */
    size_t constant_end;            /* plain constants in [leaf_count, constant_end) */
    fg_node **nodes;                /* plain slot -> node, each holding one reference */
    uint32_t root;                  /* the root's plain slot */
    uint32_t *outputs;              /* the plain slots of the nodes whose values replay reports */
    size_t output_count;
    uint8_t *is_output;             /* plain slot -> whether it is one of outputs */
    fg_node **lookup;               /* open-addressing table node -> leaf number */
    uint32_t *lookup_leaf;
    size_t lookup_mask;
    /* the plain program */
    fg_instr *code;
    size_t length;
    uint32_t *args;                 /* NARY operand lists: count, then the operand slots */
    size_t args_length;
    fg_plain_state *plain;
    /* the step program and the state of one-row replay */
    fg_program program;
    fg_row_state now, spare;        /* forward computes into spare and swaps on success */
    double *grad;                   /* step slot -> grad; the leaves' hold what to add to */
    double *leaf_data;              /* the leaves' data as read by fg_tape_load_data */
    double *leaf_grad_before;       /* the leaves' grads as read, to add into them after */
    int backward_done;              /* backward ran over `now` (sync writes its grads) */
    double seed;                    /* the root's grad that backward started from */
    int now_stale;                  /* `now` holds only its leaves (as a run read them): a
                                     * backward replays the rest first */
    int unsynced;                   /* FG_TAPE_UNSYNCED_*: what fg_tape_sync has to write */
    fg_rows_cache *rows;            /* rows.c's plans, by the leaves run() feeds */
    /* the last failure */
    fg_failure failed;
    size_t failed_row;
    int failed_in_backward;         /* the failure was a local derivative's */
};

/* schedule.c: compiles the plain program into T->program (fuse = 0: one step per entry). */
fg_status fg_schedule(fg_tape *T, int fuse);
void fg_program_free(fg_program *P);
size_t fg_program_values(const fg_program *P);   /* value slots incl. the sink */

/* plain.c: the exact replay, into T->plain, from leaf values given in the step layout. */
fg_status fg_plain_prepare(fg_tape *T);
/* Forward of the plain program from these leaf values: the first rule that fails is named
 * in T->failed; the first local derivative that fails in T->plain->pending. */
fg_status fg_plain_forward(fg_tape *T, const double *leaves);
/* Backward over the last plain forward; leaf grads start from `leaf_grads`. */
fg_status fg_plain_backward(fg_tape *T, const double *leaf_grads);

/* replay.c: one row of the step program; FG_DOMAIN_ERROR-like statuses only say that a rule
 * failed, and plain.c names it. */
fg_status fg_replay_forward(const fg_program *P, fg_row_state *state);
void fg_replay_backward(const fg_program *P, const fg_row_state *state, size_t leaf_count,
                        double seed, double *grad);

/* tape.c: the leaves' grads (run() writes no other grad: those are sync()'s) */
void fg_tape_store_leaf_grads(fg_tape *T);

/* rows.c */
void fg_rows_cache_free(fg_rows_cache *cache);

#endif /* FASTGRAD_TAPE_H */
