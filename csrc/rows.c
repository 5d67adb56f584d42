/*
 * rows.c: run(), the tape replayed over the rows of a dataset.
 */
#include <stdlib.h>
#include <string.h>

#include "tape.h"

struct fg_rows_cache {
    int unused;
};

void fg_rows_cache_free(fg_rows_cache *cache)
{
    free(cache);
}

void fg_tape_load_run(fg_tape *T)
{
    fg_tape_load_data(T);
    fg_tape_load_grads(T);
}

static void feed(fg_tape *T, const fg_run *job, size_t row, double *leaves)
{
    size_t j;
    memcpy(leaves, T->leaf_data, T->leaf_count * sizeof(double));
    for (j = 0; j < job->input_count; j++)
        leaves[job->inputs[j]] = job->X[row * job->input_count + j];
    for (j = 0; j < job->target_count; j++)
        leaves[job->targets[j]] = job->Y[row * job->target_count + j];
}

fg_status fg_tape_compute_run(fg_tape *T, const fg_run *job)
{
    const fg_program *P = &T->program;
    size_t L = T->leaf_count, row, i;
    double *totals = (double *)malloc((L + 1) * sizeof(double));
    fg_status st = FG_OK;
    if (totals == NULL)
        return FG_NO_MEMORY;
    memcpy(totals, T->leaf_grad_before, L * sizeof(double));
    for (row = 0; row < job->rows; row++) {
        feed(T, job, row, T->spare.value);
        if (fg_replay_forward(P, &T->spare) != FG_OK || T->spare.pending) {
            double *leaves = (double *)malloc((L + 1) * sizeof(double));
            if (leaves == NULL) {
                st = FG_NO_MEMORY;
                break;
            }
            memcpy(leaves, T->spare.value, L * sizeof(double));
            st = fg_plain_prepare(T);
            if (st == FG_OK) {
                st = fg_plain_forward(T, leaves);
                if (st == FG_OK) {
                    T->failed = T->plain->pending;
                    st = T->failed.status;
                }
            }
            free(leaves);
            T->failed_row = row;
            break;
        }
        for (i = 0; i < L; i++)
            T->grad[i] = -0.0;
        fg_replay_backward(P, &T->spare, L, T->grad);
        for (i = 0; i < L; i++)
            totals[i] = totals[i] + T->grad[i];
        job->out[row] = T->spare.value[P->root];
        if (row + 1 == job->rows) {
            fg_row_state s = T->now;
            T->now = T->spare;
            T->spare = s;
        }
    }
    if (st == FG_OK && job->rows > 0) {
        double root_grad = T->grad[P->root];
        memcpy(T->grad, totals, L * sizeof(double));
        if (P->root >= L)
            T->grad[P->root] = root_grad;
        T->backward_done = 1;
    }
    free(totals);
    return st;
}

void fg_tape_store_run(fg_tape *T, const fg_run *job)
{
    size_t j;
    if (job->rows == 0)
        return;
    fg_tape_store_grads(T);
    for (j = 0; j < job->input_count; j++)
        T->nodes[job->inputs[j]]->data = job->X[(job->rows - 1) * job->input_count + j];
    for (j = 0; j < job->target_count; j++)
        T->nodes[job->targets[j]]->data = job->Y[(job->rows - 1) * job->target_count + j];
    fg_tape_store_forward(T);
}

fg_status fg_tape_run(fg_tape *T, const fg_run *job, fg_node **failed, size_t *failed_row)
{
    fg_status st;
    fg_tape_load_run(T);
    if ((st = fg_tape_compute_run(T, job)) != FG_OK) {
        *failed = fg_tape_failed_node(T);
        *failed_row = T->failed_row;
        return st;
    }
    fg_tape_store_run(T, job);
    return FG_OK;
}
