/*
 * optim.c: parameter updates over nodes, one pass each with no Python in the loop.
 *
 * Each step is PyTorch's single-tensor rule (torch.optim with foreach=False) for a parameter
 * that is one number, in PyTorch's order of operations: lerp as its CPU kernel computes it
 * (the branch on the weight), addcmul as self + value * t1 * t2, addcdiv as
 * self + value * (t1 / t2), and the bias corrections' powers with pow() as Python's float
 * ** does. fastgrad/reference/optim.py is the same loop over Python floats. SGD, Adam and
 * RMSprop have an entry point each; the later rules share one, fg_rule_step, over a table.
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

/* ---- the table of per-parameter rules: one function each, one row each ----
 *
 * A rule updates parameter p (number i of its group) from its hyperparameters h, in the order
 * its row lists them (booleans as 0 or 1), and its state arrays s, in the row's order. */

typedef void rule_update(fg_node *p, const double *h, double *const *s, size_t i);

/* torch.maximum of two numbers: nan wins */
static double maximum(double a, double b)
{
    return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
}

static double rule_grad(const fg_node *p, double maximize, double weight_decay)
{
    double g = maximize != 0.0 ? -p->grad : p->grad;
    return weight_decay != 0.0 ? g + weight_decay * p->data : g;
}

/* NAdam (Dozat): h lr beta1 beta2 eps weight_decay momentum_decay decoupled maximize;
 * s step mu_product exp_avg exp_avg_sq */
static void nadam(fg_node *p, const double *h, double *const *s, size_t i)
{
    double lr = h[0], beta1 = h[1], beta2 = h[2], eps = h[3], wd = h[4], decay = h[5];
    double g = rule_grad(p, h[7], h[6] != 0.0 ? 0.0 : wd), t, bias_correction2, mu, mu_next;
    double denom, mu_product_next;
    t = s[0][i] += 1.0;
    bias_correction2 = 1.0 - pow(beta2, t);
    if (wd != 0.0 && h[6] != 0.0)
        p->data = p->data * (1.0 - lr * wd);
    mu = beta1 * (1.0 - 0.5 * pow(0.96, t * decay));
    mu_next = beta1 * (1.0 - 0.5 * pow(0.96, (t + 1.0) * decay));
    s[1][i] *= mu;
    s[2][i] = lerp(s[2][i], g, 1.0 - beta1);
    s[3][i] = s[3][i] * beta2 + (1.0 - beta2) * g * g;
    denom = sqrt(s[3][i] / bias_correction2) + eps;
    mu_product_next = s[1][i] * mu_next;
    p->data = p->data + (-lr * (1.0 - mu) / (1.0 - s[1][i])) * (g / denom);
    p->data = p->data + (-lr * mu_next / (1.0 - mu_product_next)) * (s[2][i] / denom);
}

/* RAdam (Liu et al.): h lr beta1 beta2 eps weight_decay decoupled maximize;
 * s step exp_avg exp_avg_sq */
static void radam(fg_node *p, const double *h, double *const *s, size_t i)
{
    double lr = h[0], beta1 = h[1], beta2 = h[2], eps = h[3], wd = h[4];
    double g = rule_grad(p, h[6], h[5] != 0.0 ? 0.0 : wd), t;
    double bias_correction1, bias_correction2, corrected, rho_inf, rho_t;
    t = s[0][i] += 1.0;
    if (wd != 0.0 && h[5] != 0.0)
        p->data = p->data * (1.0 - lr * wd);
    s[1][i] = lerp(s[1][i], g, 1.0 - beta1);
    s[2][i] = s[2][i] * beta2 + (1.0 - beta2) * g * g;
    bias_correction1 = 1.0 - pow(beta1, t);
    bias_correction2 = 1.0 - pow(beta2, t);
    corrected = s[1][i] / bias_correction1;
    rho_inf = 2.0 / (1.0 - beta2) - 1.0;
    rho_t = rho_inf - 2.0 * t * pow(beta2, t) / bias_correction2;
    if (rho_t > 5.0) {
        double rect = pow((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                          / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t), 0.5);
        double adaptive = pow(bias_correction2, 0.5) / (sqrt(s[2][i]) + eps);
        p->data = p->data + -1.0 * (corrected * lr * adaptive * rect);
    } else {
        p->data = p->data + -1.0 * (corrected * lr);
    }
}

/* Adagrad (Duchi et al.): h lr lr_decay weight_decay eps maximize; s step sum */
static void adagrad(fg_node *p, const double *h, double *const *s, size_t i)
{
    double g = rule_grad(p, h[4], h[2]), t, clr;
    t = s[0][i] += 1.0;
    clr = h[0] / (1.0 + (t - 1.0) * h[1]);
    s[1][i] = s[1][i] + 1.0 * g * g;
    p->data = p->data + -clr * (g / (sqrt(s[1][i]) + h[3]));
}

/* Adamax (Kingma and Ba): h lr beta1 beta2 eps weight_decay maximize;
 * s step exp_avg exp_inf */
static void adamax(fg_node *p, const double *h, double *const *s, size_t i)
{
    double lr = h[0], beta1 = h[1], g = rule_grad(p, h[5], h[4]), t;
    t = s[0][i] += 1.0;
    s[1][i] = lerp(s[1][i], g, 1.0 - beta1);
    s[2][i] = maximum(s[2][i] * h[2], fabs(g) + h[3]);
    p->data = p->data + -(lr / (1.0 - pow(beta1, t))) * (s[1][i] / s[2][i]);
}

/* Adadelta (Zeiler): h lr rho eps weight_decay maximize; s step square_avg acc_delta */
static void adadelta(fg_node *p, const double *h, double *const *s, size_t i)
{
    double rho = h[1], eps = h[2], g = rule_grad(p, h[4], h[3]), delta;
    s[0][i] += 1.0;
    s[1][i] = s[1][i] * rho + (1.0 - rho) * g * g;
    delta = sqrt(s[2][i] + eps) / sqrt(s[1][i] + eps) * g;
    s[2][i] = s[2][i] * rho + (1.0 - rho) * delta * delta;
    p->data = p->data + -h[0] * delta;
}

static const struct {
    const char *name;
    unsigned hyper, state;          /* how many of each the rule reads */
    rule_update *update;
} rules[FG_RULE_COUNT] = {
    /* name       hyper state  */
    {"nadam",     8,    4,     nadam},
    {"radam",     7,    3,     radam},
    {"adagrad",   5,    2,     adagrad},
    {"adamax",    6,    3,     adamax},
    {"adadelta",  5,    3,     adadelta},
};

const char *fg_rule_name(fg_rule rule)
{
    return (unsigned)rule < FG_RULE_COUNT ? rules[rule].name : NULL;
}

fg_status fg_rule_step(fg_rule rule, fg_node *const *params, size_t count, const double *hyper,
                       size_t hyper_count, double *const *state, size_t state_count)
{
    size_t i;
    if ((unsigned)rule >= FG_RULE_COUNT || hyper_count != rules[rule].hyper
        || state_count != rules[rule].state)
        return FG_BAD_ARGUMENT;
    for (i = 0; i < count; i++)
        rules[rule].update(params[i], hyper, state, i);
    return FG_OK;
}

void fg_zero_grad(fg_node *const *params, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        params[i]->grad = 0.0;
}
