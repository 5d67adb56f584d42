/*
 * optim.c: parameter updates over nodes, in one pass with no Python in the loop.
 */
#include "fastgrad.h"

void fg_sgd_step(fg_node *const *params, size_t count, double lr, double momentum,
                 double weight_decay, double *velocity, int first_step)
{
    size_t i;
    for (i = 0; i < count; i++) {
        fg_node *p = params[i];
        double d = p->grad;
        if (weight_decay != 0.0)
            d = d + weight_decay * p->data;
        if (momentum != 0.0) {
            velocity[i] = first_step ? d : momentum * velocity[i] + d;
            d = velocity[i];
        }
        p->data = p->data - lr * d;
    }
}

void fg_zero_grad(fg_node *const *params, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        params[i]->grad = 0.0;
}
