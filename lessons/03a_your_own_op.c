/* 03a_your_own_op.c - your own op on the tape: the course's GeneralRelu written as a custom
   op, with its forward and its backward by hand, checked, and trained in a model
   (after "Deep Learning from the Foundations", fast.ai, whose notebooks write every layer's
   forward and backward by hand before autograd does it; the docs page is docs/tensors.md).

   What it shows
     1. a custom op: dlf_custom runs our forward and records one DLF_OP_CUSTOM node; the
        tape's backward calls our backward with dL/dout and the input's gradient to add to.
        GeneralRelu(leak, sub, maxv), with v = leaky part:
            forward   v = x > 0 ? x : leak * x        y = min(v - sub, maxv)
            backward  dy/dx = (x > 0 ? 1 : leak) where v - sub <= maxv, else 0 (clamped)
        It must agree with the built-in dlf_general_relu, values and gradients.
     2. dlf_gradcheck on it: central finite differences against our backward.
     3. the 784-50-10 MLP of lesson 03 with our GeneralRelu(0.1, 0.4, 6) in place of relu,
        beside the same MLP with dlf_relu, trained on 800 MNIST images (200 for validation)
        for a few epochs with SGD and momentum: a table of the losses and accuracies.
   Data: data/mnist (run `make data`), else the subset in tests/data (lesson.h).

   In a debugger:   make debug && gdb build/debug/lessons/03a_your_own_op
     break grelu_forward         `p *ctx`, `p ctx->farg`: the context the op keeps
     break grelu_backward        `p gout[0]@8`, `p gin[0]`: what the tape hands over
     break dlf__custom_backward  the tape side: one call however many nodes
   Variables to watch in main: `rep` (the gradcheck report) and `acc`. */
#include <stdio.h>
#include <string.h>
#include <math.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

#define N_TRAIN 800
#define N_VALID 200
#define EPOCHS 4

/* The op's own numbers, given once as the op's user pointer. */
typedef struct grelu_args {
    float leak, sub, maxv;   /* maxv <= 0: no clamp */
} grelu_args;

/* forward: y = min(leaky(x) - sub, maxv). The output comes from dlf_custom_output (the
   tape's arena); x is all the backward needs, and the tape keeps the inputs anyway. */
static dlf_tensor *grelu_forward(dlf_custom_ctx *ctx, dlf_tensor **in, int n_in, void *user)
{
    const grelu_args *a = (const grelu_args *)user;
    dlf_tensor *x = in[0], *y = dlf_custom_output(ctx, x->ndim, x->shape);
    float maxv = a->maxv > 0.0f ? a->maxv : INFINITY;
    int i;
    (void)n_in;
    for (i = 0; i < x->size; i++) {
        float v = x->data[i] > 0.0f ? x->data[i] : a->leak * x->data[i];
        v -= a->sub;
        y->data[i] = v > maxv ? maxv : v;
    }
    ctx->farg[0] = maxv;     /* kept for the backward */
    return y;
}

/* backward: dL/dx += dL/dy * dy/dx, dy/dx = slope of the leaky part, 0 where clamped. */
static void grelu_backward(dlf_custom_ctx *ctx, const float *gout, float **gin, void *user)
{
    const grelu_args *a = (const grelu_args *)user;
    const dlf_tensor *x = ctx->in[0];
    float maxv = ctx->farg[0];
    int i;
    if (!gin[0]) return;     /* x needs no gradient */
    for (i = 0; i < x->size; i++) {
        float xi = x->data[i];
        float v = (xi > 0.0f ? xi : a->leak * xi) - a->sub;
        float slope = xi > 0.0f ? 1.0f : a->leak;
        gin[0][i] += v <= maxv ? gout[i] * slope : 0.0f;
    }
}

static const grelu_args GRELU_ARGS = {0.1f, 0.4f, 6.0f};
static const dlf_custom_op GRELU = {"general_relu (ours)", grelu_forward, grelu_backward, (void *)&GRELU_ARGS};

static dlf_tensor *grelu(dlf_tape *t, dlf_tensor *x)
{
    return dlf_custom(t, &GRELU, &x, 1);
}

/* ---- 1. against the built-in ---------------------------------------------------------- */

static void compare_with_builtin(void)
{
    dlf_rng rng;
    dlf_tape t;
    int shape[2] = {4, 25}, i;
    dlf_tensor *x = dlf_tensor_new(2, shape), *seed = dlf_tensor_new(2, shape), *y;
    float ours[100], ours_g[100], dy = 0.0f, dg = 0.0f;
    printf("1. GeneralRelu(0.1, 0.4, 6) as a custom op, against dlf_general_relu\n");
    dlf_rng_seed(&rng, 1);
    dlf_fill_normal(x, &rng, 0.0f, 4.0f);  /* wide enough that some reach the clamp at 6 */
    dlf_fill_normal(seed, &rng, 0.0f, 1.0f);
    dlf_tensor_requires_grad(x);
    dlf_tape_init(&t);
    y = grelu(&t, x);
    dlf_tape_print(&t);
    dlf_backward_seed(&t, y, seed->data);
    memcpy(ours, y->data, sizeof ours);     /* the arena is reused after the reset */
    memcpy(ours_g, x->grad, sizeof ours_g);
    dlf_tape_reset(&t);
    dlf_zero_grad(x);
    y = dlf_general_relu(&t, x, 0.1f, 0.4f, 6.0f);
    dlf_backward_seed(&t, y, seed->data);
    for (i = 0; i < 100; i++) {
        dy = fmaxf(dy, fabsf(ours[i] - y->data[i]));
        dg = fmaxf(dg, fabsf(ours_g[i] - x->grad[i]));
    }
    printf("  max |ours - built-in|: output %g, gradient %g\n\n", dy, dg);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
    dlf_tensor_free(seed);
}

/* ---- 2. gradcheck ------------------------------------------------------------------- */

static dlf_tensor *grelu_graph(dlf_tape *t, dlf_tensor **in, void *user)
{
    (void)user;
    return grelu(t, in[0]);
}

static void check_gradient(void)
{
    dlf_rng rng;
    int shape[1] = {60}, ok;
    dlf_tensor *x = dlf_tensor_new(1, shape);
    dlf_gradcheck_report rep;
    printf("2. dlf_gradcheck of our backward (central differences, kinks at 0 and at the clamp skipped)\n");
    dlf_rng_seed(&rng, 2);
    dlf_fill_normal(x, &rng, 0.0f, 4.0f);
    ok = dlf_gradcheck(grelu_graph, &x, 1, NULL, NULL, &rep);
    printf("  %s: %d elements checked, %d kinks skipped, max abs err %.2g, max rel err %.2g\n\n",
           ok ? "pass" : "FAIL", rep.n_checked, rep.n_kinks, rep.max_abs_err, rep.max_rel_err);
    dlf_tensor_free(x);
}

/* ---- 3. in a model --------------------------------------------------------------------- */

typedef struct mlp {
    dlf_tensor *w1, *b1, *w2, *b2;   /* (50, 784) (50) (10, 50) (10) */
    int ours;                        /* 1: our GeneralRelu, 0: dlf_relu */
} mlp;

static dlf_tensor *mlp_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    mlp *m = (mlp *)user;
    dlf_tensor *h = dlf_linear(t, dlf_flatten(t, x), m->w1, m->b1);
    h = m->ours ? grelu(t, h) : dlf_relu(t, h);
    return dlf_linear(t, h, m->w2, m->b2);
}

/* train both models side by side; one row per epoch */
static int train_both(void)
{
    dlf_mnist data;
    dlf_loader *train[2], *valid;
    dlf_tape t;
    mlp m[2];
    dlf_tensor *params[2][4];
    dlf_optim *opt[2];
    dlf_optim_cfg oc;
    int k, epoch;
    printf("3. the 784-50-10 MLP with relu and with our GeneralRelu\n");
    if (lesson_load_mnist(&data, "  ") < 0) return 1;
    data.train = dlf_dataset_view(&data.train, 0, N_TRAIN);
    data.valid = dlf_dataset_view(&data.valid, 0, N_VALID);
    printf("  %d train, %d valid images; SGD lr 0.05, momentum 0.9, batch 32\n", data.train.n, data.valid.n);
    /* one training loader per model, same seed: the same batches in the same order */
    dlf_mnist_loaders(&data, 32, 200, 42, &train[0], &valid, NULL);
    dlf_mnist_loaders(&data, 32, 200, 42, &train[1], NULL, NULL);
    memset(&oc, 0, sizeof oc);
    oc.lr = 0.05f;
    oc.momentum = 0.9f;
    for (k = 0; k < 2; k++) {
        dlf_rng rng;
        dlf_rng_seed(&rng, 42);     /* the same initial weights for both */
        m[k].w1 = dlf_param_new(2, (int[]){50, 784});
        m[k].b1 = dlf_param_new(1, (int[]){50});
        m[k].w2 = dlf_param_new(2, (int[]){10, 50});
        m[k].b2 = dlf_param_new(1, (int[]){10});
        dlf_init_torch_default(m[k].w1, m[k].b1, &rng);
        dlf_init_torch_default(m[k].w2, m[k].b2, &rng);
        m[k].ours = k;
        params[k][0] = m[k].w1; params[k][1] = m[k].b1; params[k][2] = m[k].w2; params[k][3] = m[k].b2;
        opt[k] = dlf_optim_create(DLF_OPTIM_SGD, params[k], 4, &oc);
    }
    dlf_tape_init(&t);
    printf("  epoch | relu: train loss  valid loss  accuracy | ours: train loss  valid loss  accuracy\n");
    for (epoch = 1; epoch <= EPOCHS; epoch++) {
        float tl[2], vl[2], acc[2];
        printf("  %5d |", epoch);
        for (k = 0; k < 2; k++) {
            double sum = 0.0;
            int n, batches = 0;
            while ((n = dlf_loader_next(train[k])) > 0) {
                dlf_tensor *loss;
                dlf_tape_reset(&t);
                loss = dlf_cross_entropy(&t, mlp_forward(&t, train[k]->x, &m[k]), train[k]->y);
                dlf_backward(&t, loss);
                dlf_optim_step(opt[k]);
                dlf_optim_zero_grad(opt[k]);
                sum += loss->data[0];
                batches++;
            }
            tl[k] = (float)(sum / batches);
            acc[k] = dlf_evaluate(&t, mlp_forward, &m[k], valid, &vl[k]);
            printf("       %10.4f  %10.4f  %8.4f |", tl[k], vl[k], acc[k]);
        }
        printf("\n");
    }
    dlf_tape_destroy(&t);
    for (k = 0; k < 2; k++) {
        dlf_optim_free(opt[k]);
        dlf_tensor_free(m[k].w1); dlf_tensor_free(m[k].b1); dlf_tensor_free(m[k].w2); dlf_tensor_free(m[k].b2);
    }
    dlf_loader_free(train[0]);
    dlf_loader_free(train[1]);
    dlf_loader_free(valid);
    dlf_mnist_free(&data);
    return 0;
}

int main(void)
{
    compare_with_builtin();
    check_gradient();
    return train_both();
}
