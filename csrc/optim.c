/*
 * optim.c: parameter updates over nodes, one pass each with no Python in the loop.
 *
 * Each step is PyTorch's single-tensor rule (torch.optim with foreach=False) for a parameter
 * that is one number, in PyTorch's order of operations: lerp as its CPU kernel computes it
 * (the branch on the weight), addcmul as self + value * t1 * t2, addcdiv as
 * self + value * (t1 / t2), and the bias corrections' powers with pow() as Python's float
 * ** does. fastgrad/reference/optim.py is the same loop over Python floats.
 */
#include <math.h>

#include "fastgrad.h"

/* torch.lerp(start, end, weight) for one number */
static double lerp(double start, double end, double weight)
{
    return fabs(weight) < 0.5 ? start + weight * (end - start)
                              : end - (end - start) * (1.0 - weight);
}

void fg_sgd_step(fg_node *const *params, size_t count, const fg_sgd_options *o,
                 double *momentum_buffer, unsigned char *has_buffer)
{
    size_t i;
    for (i = 0; i < count; i++) {
        fg_node *p = params[i];
        double d = o->maximize ? -p->grad : p->grad;
        if (o->weight_decay != 0.0)
            d = d + o->weight_decay * p->data;
        if (o->momentum != 0.0) {
            if (!has_buffer[i]) {
                momentum_buffer[i] = d;
                has_buffer[i] = 1;
            } else {
                momentum_buffer[i] = momentum_buffer[i] * o->momentum + (1.0 - o->dampening) * d;
            }
            d = o->nesterov ? d + o->momentum * momentum_buffer[i] : momentum_buffer[i];
        }
        p->data = p->data + -o->lr * d;
    }
}

void fg_adam_step(fg_node *const *params, size_t count, const fg_adam_options *o,
                  double *step, double *exp_avg, double *exp_avg_sq, double *max_exp_avg_sq)
{
    size_t i;
    /* the parameters' steps are almost always equal: the powers are taken once per step */
    double last_step = -1.0, bias_correction1 = 0.0, bias_correction2 = 0.0, sqrt2 = 0.0;
    for (i = 0; i < count; i++) {
        fg_node *p = params[i];
        double g = o->maximize ? -p->grad : p->grad;
        double step_size, denom;
        step[i] += 1.0;
        if (o->weight_decay != 0.0) {
            if (o->decoupled)
                p->data = p->data * (1.0 - o->lr * o->weight_decay);
            else
                g = g + o->weight_decay * p->data;
        }
        exp_avg[i] = lerp(exp_avg[i], g, 1.0 - o->beta1);
        exp_avg_sq[i] = exp_avg_sq[i] * o->beta2 + (1.0 - o->beta2) * g * g;
        if (step[i] != last_step) {
            last_step = step[i];
            bias_correction1 = 1.0 - pow(o->beta1, step[i]);
            bias_correction2 = 1.0 - pow(o->beta2, step[i]);
            sqrt2 = pow(bias_correction2, 0.5);
        }
        step_size = o->lr / bias_correction1;
        if (o->amsgrad) {
            /* torch.maximum: nan wins */
            if (isnan(exp_avg_sq[i]) || exp_avg_sq[i] > max_exp_avg_sq[i])
                max_exp_avg_sq[i] = exp_avg_sq[i];
            denom = sqrt(max_exp_avg_sq[i]) / sqrt2 + o->eps;
        } else {
            denom = sqrt(exp_avg_sq[i]) / sqrt2 + o->eps;
        }
        p->data = p->data + -step_size * (exp_avg[i] / denom);
    }
}

void fg_rmsprop_step(fg_node *const *params, size_t count, const fg_rmsprop_options *o,
                     double *step, double *square_avg, double *grad_avg,
                     double *momentum_buffer)
{
    size_t i;
    for (i = 0; i < count; i++) {
        fg_node *p = params[i];
        double g = o->maximize ? -p->grad : p->grad;
        double avg;
        step[i] += 1.0;
        if (o->weight_decay != 0.0)
            g = g + o->weight_decay * p->data;
        square_avg[i] = square_avg[i] * o->alpha + (1.0 - o->alpha) * g * g;
        if (o->centered) {
            grad_avg[i] = lerp(grad_avg[i], g, 1.0 - o->alpha);
            avg = sqrt(square_avg[i] + -1.0 * grad_avg[i] * grad_avg[i]);
        } else {
            avg = sqrt(square_avg[i]);
        }
        avg = avg + o->eps;
        if (o->momentum > 0.0) {
            momentum_buffer[i] = momentum_buffer[i] * o->momentum + 1.0 * (g / avg);
            p->data = p->data + -o->lr * momentum_buffer[i];
        } else {
            p->data = p->data + -o->lr * (g / avg);
        }
    }
}

void fg_zero_grad(fg_node *const *params, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        params[i]->grad = 0.0;
}
