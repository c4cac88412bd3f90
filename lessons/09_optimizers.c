/* 09_optimizers.c - SGD, momentum, RMSProp, Adam, AdamW and LAMB, built from "stats" and
   "steppers" (notebook 09_optimizers, "Deep Learning from the Foundations", fast.ai; the
   docs page is docs/optim.md, the code stage 11 of dlf.h: grep '>>stage11' dlf.h).

   What it shows
     1. The course's decomposition. An optimizer keeps, per parameter, some running
        statistics of the gradient ("stats") and applies one or more update rules
        ("steppers"):
            stats    average_grad       grad_avg = mom grad_avg + (1 - mom or 1) g
                     average_sqr_grad   sqr_avg  = beta sqr_avg + (1 - beta) g^2
                     step_count         t += 1
            steppers l2_reg             g += wd p            (before the stats)
                     weight_decay       p *= 1 - lr wd       (AdamW: apart from the gradient)
                     sgd_step           p -= lr * (grad_avg or g)
                     rmsprop_step       p -= lr g / (sqrt(sqr_avg) + eps)
                     adam_step          p -= lr/debias1(t) * grad_avg / (sqrt(sqr_avg/debias2(t)) + eps)
                     lamb_step          u = the Adam direction + wd p; p -= lr * min(rms(p)/rms(u), 10) * u
        Each optimizer is a choice of these. This file writes them as small functions
        (the course's Python, in C) and runs five steps of each on one parameter tensor
        beside dlf_optim, which has one switch over the kinds and one update function
        per kind in dlf.h (dlf__sgd_update, dlf__rmsprop_update, dlf__adam_update,
        dlf__lamb_update), and prints the largest difference: the same updates.
     2. The 784-50-10 MLP of lesson 03 trained for 2 epochs (1564 steps of batch size 64)
        by each optimizer, every run from the same init and the same shuffle, one-cycle
        schedule, each at a learning rate usual for it; the training loss (averaged over
        50 steps) after 100, 400 and 1564 steps, and the test accuracy.
   Data: data/mnist (run `make data`); when it is missing the lesson falls back to the
   1000-image subset in tests/data and says so. A few seconds on a quiet 2-core machine.

   In a debugger:   make debug && gdb build/debug/lessons/09_optimizers
     break dlf_optim_step       `p o->kind`, `p o->groups[0]`, `p o->params[0].step`
     break dlf__adam_update     `p bias_correction1`, `p step_size`, then `p m[0]`, `p v[0]`,
                                `p p[0]` before and after the loop
     break dlf__lamb_update     finish the first loop: `p r1`, `p r2`, `p trust`
     break adam_step            our copy, the same numbers: `p debias1`, `p debias2`
   Variables to watch in main: `loss_at`, `acc`; in train_one: `run_loss`. */
#include <stdio.h>
#include <string.h>
#include <math.h>
#include <stdlib.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

/* ---------------------------------------------------------------- 1. stats and steppers */

#define NP 64   /* values in the demo parameter */

typedef struct state {
    float grad_avg[NP];   /* average_grad's statistic (PyTorch: momentum_buffer or exp_avg) */
    float sqr_avg[NP];    /* average_sqr_grad's (PyTorch: square_avg or exp_avg_sq) */
    int step;             /* step_count's */
} state;

/* stats */
static void average_grad(float *avg, const float *g, float mom, int dampening, int first)
{
    int i;
    for (i = 0; i < NP; i++)   /* PyTorch's SGD starts its buffer at g, not at mom*0 + g */
        avg[i] = (first && !dampening) ? g[i] : avg[i] * mom + (dampening ? 1.0f - mom : 1.0f) * g[i];
}
static void average_sqr_grad(float *avg, const float *g, float beta)
{
    int i;
    for (i = 0; i < NP; i++) avg[i] = avg[i] * beta + (1.0f - beta) * g[i] * g[i];
}

/* steppers */
static void l2_reg(float *g, const float *p, float wd)
{
    int i;
    for (i = 0; i < NP; i++) g[i] = g[i] + wd * p[i];
}
static void weight_decay(float *p, float lr, float wd)
{
    int i;
    for (i = 0; i < NP; i++) p[i] = p[i] * (1.0f - lr * wd);
}
static void sgd_step(float *p, const float *dir, float lr)
{
    int i;
    for (i = 0; i < NP; i++) p[i] = p[i] - lr * dir[i];
}
static void rmsprop_step(float *p, const float *g, const float *sqr_avg, float lr, float eps)
{
    int i;
    for (i = 0; i < NP; i++) p[i] = p[i] - lr * (g[i] / (sqrtf(sqr_avg[i]) + eps));
}
static void adam_step(float *p, const state *s, float lr, float b1, float b2, float eps)
{
    double debias1 = 1.0 - pow(b1, s->step), debias2 = 1.0 - pow(b2, s->step);
    int i;
    for (i = 0; i < NP; i++)
        p[i] = p[i] - (float)(lr / debias1) * (s->grad_avg[i] / (sqrtf(s->sqr_avg[i]) / (float)sqrt(debias2) + eps));
}
static void lamb_step(float *p, const state *s, float lr, float b1, float b2, float eps, float wd)
{
    double debias1 = 1.0 - pow(b1, s->step), debias2 = 1.0 - pow(b2, s->step), u[NP], r1 = 0, r2 = 0, ratio;
    int i;
    for (i = 0; i < NP; i++) {
        u[i] = (s->grad_avg[i] / debias1) / (sqrt(s->sqr_avg[i] / debias2) + eps) + wd * p[i];
        r1 += (double)p[i] * p[i];
        r2 += u[i] * u[i];
    }
    r1 = sqrt(r1 / NP);
    r2 = sqrt(r2 / NP);
    ratio = (r1 > 0 && r2 > 0) ? (r1 / r2 < 10 ? r1 / r2 : 10) : 1;
    for (i = 0; i < NP; i++) p[i] = (float)(p[i] - lr * ratio * u[i]);
}

typedef enum recipe { R_SGD, R_MOMENTUM, R_RMSPROP, R_ADAM, R_ADAMW, R_LAMB, R_COUNT } recipe;
static const char *recipe_names[R_COUNT] = {"SGD", "momentum", "RMSProp", "Adam", "AdamW", "LAMB"};
static const dlf_optim_kind recipe_kind[R_COUNT] = {DLF_OPTIM_SGD, DLF_OPTIM_SGD, DLF_OPTIM_RMSPROP,
                                                    DLF_OPTIM_ADAM, DLF_OPTIM_ADAMW, DLF_OPTIM_LAMB};
static const char *recipe_parts[R_COUNT] = {
    "stats: none                                     steppers: l2_reg, sgd_step(g)",
    "stats: average_grad (mom 0.9, no dampening)     steppers: l2_reg, sgd_step(grad_avg)",
    "stats: average_sqr_grad (alpha 0.99)            steppers: l2_reg, rmsprop_step",
    "stats: average_grad (dampened), average_sqr_grad, step_count   steppers: l2_reg, adam_step",
    "stats: average_grad (dampened), average_sqr_grad, step_count   steppers: weight_decay, adam_step",
    "stats: average_grad (dampened), average_sqr_grad, step_count   steppers: lamb_step (wd inside)"};
static const char *recipe_code[R_COUNT] = {"dlf__sgd_update, no buffer", "dlf__sgd_update", "dlf__rmsprop_update",
                                           "dlf__adam_update", "p *= 1 - lr wd in dlf_optim_step, dlf__adam_update",
                                           "dlf__lamb_update"};

/* one step of recipe r by the stats and steppers above */
static void recipe_step(recipe r, float *p, const float *grad, state *s, const dlf_optim_cfg *c)
{
    float g[NP];
    memcpy(g, grad, sizeof g);
    s->step++;                                                        /* step_count */
    switch (r) {
    case R_SGD:
        l2_reg(g, p, c->weight_decay);
        sgd_step(p, g, c->lr);
        break;
    case R_MOMENTUM:
        l2_reg(g, p, c->weight_decay);
        average_grad(s->grad_avg, g, c->momentum, 0, s->step == 1);
        sgd_step(p, s->grad_avg, c->lr);
        break;
    case R_RMSPROP:
        l2_reg(g, p, c->weight_decay);
        average_sqr_grad(s->sqr_avg, g, c->alpha);
        rmsprop_step(p, g, s->sqr_avg, c->lr, c->eps);
        break;
    case R_ADAM:
    case R_ADAMW:
        if (r == R_ADAM) l2_reg(g, p, c->weight_decay);
        else weight_decay(p, c->lr, c->weight_decay);
        average_grad(s->grad_avg, g, c->beta1, 1, 0);
        average_sqr_grad(s->sqr_avg, g, c->beta2);
        adam_step(p, s, c->lr, c->beta1, c->beta2, c->eps);
        break;
    case R_LAMB:
        average_grad(s->grad_avg, g, c->beta1, 1, 0);
        average_sqr_grad(s->sqr_avg, g, c->beta2);
        lamb_step(p, s, c->lr, c->beta1, c->beta2, c->eps, c->weight_decay);
        break;
    case R_COUNT:
        break;
    }
}

static void section1(void)
{
    dlf_rng rng;
    int r, k, i, shape[1] = {NP};
    printf("1. each optimizer as stats + steppers, 5 steps on one (%d,) parameter with wd 0.01, against dlf_optim\n",
           NP);
    for (r = 0; r < R_COUNT; r++) {
        dlf_tensor *p = dlf_param_new(1, shape);
        float mine[NP], diff = 0.0f;
        dlf_optim_cfg c;
        dlf_optim *o;
        state s;
        memset(&c, 0, sizeof c);
        c.lr = r <= R_MOMENTUM ? 0.1f : 0.01f;
        c.weight_decay = 0.01f;
        if (r == R_MOMENTUM) c.momentum = 0.9f;
        o = dlf_optim_create(recipe_kind[r], &p, 1, &c);
        memset(&s, 0, sizeof s);
        dlf_rng_seed(&rng, 7);
        for (i = 0; i < NP; i++) mine[i] = p->data[i] = dlf_rng_normal(&rng);
        for (k = 0; k < 5; k++) {
            for (i = 0; i < NP; i++) p->grad[i] = dlf_rng_normal(&rng) + 0.5f * p->data[i];
            recipe_step((recipe)r, mine, p->grad, &s, &o->groups[0]);   /* the defaults dlf filled in */
            dlf_optim_step(o);
        }
        for (i = 0; i < NP; i++)
            if (fabsf(mine[i] - p->data[i]) > diff) diff = fabsf(mine[i] - p->data[i]);
        printf("  %-9s %s\n            dlf.h: %s; state:", recipe_names[r], recipe_parts[r], recipe_code[r]);
        for (k = 0; k < DLF_OPTIM_MAX_STATE; k++)
            if (o->params[0].state[k]) printf(" %s", dlf_optim_state_name(o->kind, k));
        printf(" step=%d;  max |ours - dlf_optim| = %.2g\n", o->params[0].step, diff);
        dlf_optim_free(o);
        dlf_tensor_free(p);
    }
}

/* ---------------------------------------------------------------- 2. the MLP race */

typedef struct mlp {
    dlf_tensor *p[4];   /* w1 (50,784), b1 (50), w2 (10,50), b2 (10) */
} mlp;

static dlf_tensor *mlp_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    mlp *m = (mlp *)user;
    dlf_tensor *h = dlf_relu(t, dlf_linear(t, dlf_flatten(t, x), m->p[0], m->p[1]));
    return dlf_linear(t, h, m->p[2], m->p[3]);
}

#define N_MARKS 3
#define AVG_OVER 50

/* epochs over train with opt, lr by the one-cycle schedule; the mean loss of the AVG_OVER
   steps before each mark. Returns the number of steps. */
static int train_one(dlf_tape *t, mlp *m, dlf_optim *opt, dlf_loader *train, int epochs, float lr,
                     const int *marks, float *loss_at)
{
    int total = epochs * train->n_batches, step = 0, e, k = 0;
    double run_loss = 0.0;
    train->pos = 0;
    for (e = 0; e < epochs; e++)
        while (dlf_loader_next(train) > 0) {
            dlf_tensor *loss;
            dlf_tape_reset(t);
            loss = dlf_cross_entropy(t, mlp_forward(t, train->x, m), train->y);
            dlf_backward(t, loss);
            opt->groups[0].lr = dlf_sched_lr(DLF_SCHED_ONE_CYCLE, lr, 0.3f, step, total);
            dlf_optim_step(opt);
            dlf_optim_zero_grad(opt);
            step++;
            if (k < N_MARKS && step > marks[k] - AVG_OVER) run_loss += loss->data[0];
            if (k < N_MARKS && step == marks[k]) {
                loss_at[k++] = (float)(run_loss / AVG_OVER);
                run_loss = 0.0;
            }
        }
    return step;
}

int main(int argc, char **argv)
{
    dlf_mnist data;
    dlf_loader *train = NULL, *test = NULL;
    dlf_tape t;
    mlp m;
    int r, i, epochs = 2, marks[N_MARKS] = {100, 400, 0}, full = 1;
    double t_all = dlf_seconds();
    /* peak learning rates: each kind at a value usual for it on this net */
    float lrs[R_COUNT] = {0.5f, 0.05f, 3e-3f, 3e-3f, 3e-3f, 1e-2f};

    for (r = 1; r < argc && r <= R_COUNT; r++) lrs[r - 1] = (float)atof(argv[r]);  /* try your own */
    section1();

    printf("\n");
    full = lesson_load_mnist(&data, "");
    if (full < 0) return 1;
    if (!full) epochs = 20;
    if (dlf_mnist_loaders(&data, 64, 500, 42, &train, NULL, &test) != DLF_OK) return 1;
    marks[2] = epochs * train->n_batches;
    if (!full) { marks[0] = marks[2] / 4; marks[1] = marks[2] / 2; }
    dlf_tape_init(&t);
    m.p[0] = dlf_param_new(2, (int[]){50, 784});
    m.p[1] = dlf_param_new(1, (int[]){50});
    m.p[2] = dlf_param_new(2, (int[]){10, 50});
    m.p[3] = dlf_param_new(1, (int[]){10});

    printf("\n2. the 784-50-10 MLP, %d epochs (%d steps of batch size 64), one-cycle, same init and shuffle\n",
           epochs, marks[2]);
    printf("  %-9s %8s %6s %10s %10s %10s %9s %8s\n", "optimizer", "peak lr", "wd", "loss@", "loss@", "loss@",
           "test acc", "time");
    printf("  %-9s %8s %6s %10d %10d %10d\n", "", "", "", marks[0], marks[1], marks[2]);
    for (r = 0; r < R_COUNT; r++) {
        dlf_rng rng;
        dlf_optim_cfg c;
        dlf_optim *opt;
        float loss_at[N_MARKS] = {0}, acc;
        double t0;
        dlf_rng_seed(&rng, 42);                                  /* the same init every time */
        dlf_init_torch_default(m.p[0], m.p[1], &rng);
        dlf_init_torch_default(m.p[2], m.p[3], &rng);
        for (i = 0; i < 4; i++) dlf_zero_grad(m.p[i]);
        memset(&c, 0, sizeof c);
        c.lr = lrs[r];
        if (r == R_MOMENTUM) c.momentum = 0.9f;
        if (r >= R_ADAMW) c.weight_decay = 1e-2f;                /* AdamW's and LAMB's usual decay */
        opt = dlf_optim_create(recipe_kind[r], m.p, 4, &c);
        dlf_loader_free(train);                                   /* a fresh loader: the same shuffle */
        if (dlf_mnist_loaders(&data, 64, 500, 42, &train, NULL, NULL) != DLF_OK) return 1;
        t0 = dlf_seconds();
        train_one(&t, &m, opt, train, epochs, lrs[r], marks, loss_at);
        t0 = dlf_seconds() - t0;
        acc = dlf_evaluate(&t, mlp_forward, &m, test, NULL);
        printf("  %-9s %8g %6g %10.4f %10.4f %10.4f %9.4f %7.1fs\n", recipe_names[r], lrs[r], c.weight_decay,
               loss_at[0], loss_at[1], loss_at[2], acc, t0);
        fflush(stdout);
        dlf_optim_free(opt);
    }
    printf("\ntotal %.1fs\n", dlf_seconds() - t_all);

    for (i = 0; i < 4; i++) dlf_tensor_free(m.p[i]);
    dlf_tape_destroy(&t);
    dlf_loader_free(train);
    dlf_loader_free(test);
    dlf_mnist_free(&data);
    return 0;
}
