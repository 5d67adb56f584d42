# The C engine's API (csrc/fastgrad.h) as Cython sees it, and the Value that wraps a node.

from libc.stdint cimport uint32_t

cdef extern from "fastgrad.h" nogil:
    ctypedef enum fg_op:
        FG_LEAF, FG_NEG, FG_POWC, FG_RELU, FG_TANH, FG_EXP, FG_LOG, FG_SIGMOID,
        FG_ABS, FG_SQRT, FG_SIN, FG_COS, FG_SOFTPLUS, FG_FINITE, FG_SIGN, FG_ISFINITE, FG_ISZERO,
        FG_ADD, FG_SUB, FG_MUL, FG_DIV, FG_POW, FG_MAX, FG_CLASS, FG_PICK, FG_PICKS_A, FG_SUM, FG_DOT, FG_OPAQUE, FG_OP_COUNT

    ctypedef enum fg_status:
        FG_OK, FG_ZERO_DIVISION, FG_DOMAIN_ERROR, FG_RANGE_ERROR, FG_NO_MEMORY,
        FG_BAD_ARGUMENT, FG_INTERRUPTED, FG_INDEX_ERROR

    enum:
        FG_EXTRA
        FG_CONSTANT
        FG_TAPED
        FG_TAPED_OUTPUT
        FG_NO_GRAD
        FG_CHOSEN
        FG_TAPE_UNSYNCED_OUTPUTS

    ctypedef struct fg_node:
        double data
        double grad
        double exponent "u.powc.exponent"
        uint32_t refs
        unsigned char op
        unsigned char flags
        void *handle "link.handle"

    ctypedef struct fg_arena:
        pass

    const char *fg_op_symbol(fg_op op)
    fg_node *const *fg_operands(const fg_node *n, uint32_t *count)

    fg_arena *fg_arena_new()
    size_t fg_arena_live(const fg_arena *A)
    void fg_arena_adopt(fg_arena *A)
    void fg_arena_disown(fg_arena *A)
    size_t fg_arena_capacity(const fg_arena *A)
    size_t fg_arena_bytes(const fg_arena *A)
    void fg_arena_trim(fg_arena *A)

    fg_status fg_new_leaf(fg_arena *A, double data, fg_node **out)
    fg_status fg_new_constant(fg_arena *A, double data, fg_node **out)
    fg_status fg_new_unary(fg_arena *A, fg_op op, fg_node *a, fg_node **out)
    fg_status fg_new_powc(fg_arena *A, fg_node *a, double exponent, fg_node **out)
    fg_status fg_new_binary(fg_arena *A, fg_op op, fg_node *a, fg_node *b, fg_node **out)
    fg_status fg_new_binary_number(fg_arena *A, fg_op op, fg_node *a, double x,
                                   int number_first, fg_node **out)
    fg_status fg_new_nary(fg_arena *A, fg_op op, fg_node **args, uint32_t count,
                          fg_node **out)
    fg_status fg_new_opaque(fg_arena *A, double data, fg_node **args, uint32_t count,
                            fg_node **out)
    void fg_incref(fg_node *n)
    void fg_decref(fg_arena *A, fg_node *n)

    ctypedef struct fg_tape:
        pass
    ctypedef struct fg_run:
        size_t rows
        const size_t *inputs
        size_t input_count
        const double *X
        const size_t *targets
        size_t target_count
        const double *Y
        double *out
        double root_grad
        int backward
        unsigned threads
        int (*interrupted)(void *context) noexcept nogil
        void *context
    fg_status fg_tape_compile(fg_arena *A, fg_node *root, int fuse, fg_tape **out)
    fg_status fg_tape_compile_outputs(fg_arena *A, fg_node *root, fg_node *const *outputs,
                                      size_t count, int fuse, fg_tape **out)
    size_t fg_tape_output_count(const fg_tape *T)
    void fg_tape_set_leaf_value(fg_tape *T, size_t leaf, double value)
    void fg_tape_free(fg_tape *T)
    size_t fg_tape_size(const fg_tape *T)
    size_t fg_tape_steps(const fg_tape *T)
    size_t fg_tape_leaf_count(const fg_tape *T)
    fg_node *fg_tape_leaf(const fg_tape *T, size_t i)
    fg_node *fg_tape_root(const fg_tape *T)
    long fg_tape_leaf_index(const fg_tape *T, const fg_node *n)
    void fg_tape_load_data(fg_tape *T)
    void fg_tape_load_grads(fg_tape *T)
    fg_status fg_tape_compute_forward(fg_tape *T)
    fg_status fg_tape_compute_backward(fg_tape *T)
    fg_status fg_tape_compute_backward_from(fg_tape *T, double seed)
    void fg_tape_store_forward(fg_tape *T)
    void fg_tape_store_grads(fg_tape *T)
    fg_node *fg_tape_failed_node(const fg_tape *T)
    const double *fg_tape_failed_operands(const fg_tape *T)
    size_t fg_tape_failed_row(const fg_tape *T)
    int fg_tape_failed_in_backward(const fg_tape *T)
    void fg_tape_load_run(fg_tape *T)
    fg_status fg_tape_compute_run(fg_tape *T, const fg_run *job)
    void fg_tape_store_run(fg_tape *T, const fg_run *job)
    fg_status fg_tape_sync(fg_tape *T)
    int fg_tape_unsynced(const fg_tape *T)
    const char *fg_simd_kernel(size_t i)
    int fg_simd_supported(const char *name)
    int fg_simd_select(const char *name)
    const char *fg_simd_selected()
    size_t fg_run_min_work(size_t node_rows)
    ctypedef struct fg_plan_step:
        int kind
        int op
        int tail
        int loop
        long layer
        int colour
    fg_status fg_tape_run_plan(const fg_tape *T, fg_plan_step *steps, size_t *lanes,
                               size_t *rows_per_block)

    ctypedef struct fg_sgd_options:
        double lr, momentum, dampening, weight_decay
        int nesterov, maximize
    ctypedef struct fg_adam_options:
        double lr, beta1, beta2, eps, weight_decay
        int decoupled, amsgrad, maximize
    ctypedef struct fg_rmsprop_options:
        double lr, alpha, eps, weight_decay, momentum
        int centered, maximize
    void fg_sgd_step(fg_node **params, size_t count, const fg_sgd_options *o,
                     double *momentum_buffer, unsigned char *has_buffer)
    void fg_adam_step(fg_node **params, size_t count, const fg_adam_options *o,
                      double *step, double *exp_avg, double *exp_avg_sq, double *max_exp_avg_sq)
    void fg_rmsprop_step(fg_node **params, size_t count, const fg_rmsprop_options *o,
                         double *step, double *square_avg, double *grad_avg,
                         double *momentum_buffer)
    void fg_zero_grad(fg_node **params, size_t count)
    ctypedef enum fg_rule:
        FG_RULE_COUNT
    const char *fg_rule_name(fg_rule rule)
    fg_status fg_rule_step(fg_rule rule, fg_node **params, size_t count, const double *hyper,
                           size_t hyper_count, double **state, size_t state_count)

    fg_status fg_new_node(fg_arena *A, fg_op op, double data, fg_node **args, uint32_t count,
                          double exponent, fg_node **out)
    fg_status fg_topo(fg_arena *A, fg_node *root, fg_node *const **order, size_t *length)
    fg_status fg_eval(const fg_node *n, double *out)
    fg_status fg_node_backward(fg_node *n)
    fg_status fg_backward(fg_arena *A, fg_node *root, fg_node **failed)
    fg_status fg_gradients(fg_arena *A, fg_node *root, fg_node **inputs, size_t count,
                           int create_graph, double *values, fg_node **nodes,
                           fg_node **failed)


# The release hook calls back into Python (it edits dicts), so it is not nogil.
cdef extern from "fastgrad.h":
    ctypedef void (*fg_release_hook)(void *context, fg_node *node) noexcept
    void fg_arena_set_release_hook(fg_arena *A, fg_release_hook hook, void *context)


cdef class Value:
    cdef fg_node *node
