/* 06_cnn.c - the course's CNN, GeneralRelu and Kaiming init (notebook 06_cuda_cnn_hooks_init,
   "Deep Learning from the Foundations", fast.ai; the docs pages are docs/init.md and
   docs/data.md).

   What it shows
     The stride-2 CNN of examples/mnist_cnn.c:
         conv 1->8 5x5, conv 8->16, 16->32, 32->32 3x3, all stride 2 (28 -> 14 -> 7 -> 4 -> 2),
         activation after each, global average pool, Linear 32 -> 10.
     1. What the notebook's hooks showed: the mean and std of every layer's activations
        for one batch, right after init. With PyTorch's default init
        (kaiming_uniform with a = sqrt(5), i.e. std = 1/sqrt(3 fan_in)) and ReLU the std
        shrinks about 2.5x per layer (0.33 after conv1, 0.02 after conv4 on full MNIST),
        so the last layers barely see a signal and their gradients vanish. With Kaiming
        normal init (std = gain / sqrt(fan_in), gain = sqrt(2 / (1 + a^2))) and the
        course's GeneralRelu(leak 0.1, sub 0.4, maxv 6) the means stay near 0 and the
        std stays of order 1 (0.73 -> 0.42): no batchnorm yet (lesson 07), so not
        exactly 1, but no collapse either.
     2. A short training run of the second model (one epoch of one-cycle SGD with
        momentum, peak lr 0.1, on MNIST; 20 epochs on the subset) and its accuracy.
        (Try lr 0.4, the notebook's value without momentum: with momentum 0.9 the
        effective step is 10x larger and the loss goes to NaN, which dlf_fit reports.)
   Data: data/mnist (run `make data`); when it is missing the lesson falls back to the
   1000-image subset in tests/data and says so. It takes well under 30 seconds.

   In a debugger:   make debug && gdb build/debug/lessons/06_cnn
     break layer_stats          `p *x`: the activation; mean and std are where the results
                                go (pointers, not yet written), so `finish`, then in forward
                                `p m->mean[i]`, `p m->std[i]` (`p m->mean`: every layer so far)
     break dlf_init_kaiming_normal   `p *w` : the shape it reads fan_in from
     break dlf_general_relu     `p leak`, `p sub`, `p maxv`
   Variables to watch in main: `acc`, `loss_v`; in forward: `h` after each layer. */
#include <stdio.h>
#include <string.h>
#include <math.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

static const int conv_k[4] = {8, 16, 32, 32};   /* output channels */
static const int conv_c[4] = {1, 8, 16, 32};    /* input channels */
static const int conv_r[4] = {5, 3, 3, 3};      /* kernel size */

typedef struct cnn {
    dlf_tensor *w[4];      /* conv weights (K,C,R,S) */
    dlf_tensor *b[4];      /* conv biases (K) */
    dlf_tensor *fc_w;      /* (10, 32) */
    dlf_tensor *fc_b;      /* (10) */
    int general;           /* 1: GeneralRelu(0.1, 0.4, 6); 0: plain ReLU */
    int record;            /* 1: forward stores each activation's mean and std below */
    float mean[5], std[5]; /* after conv+act 1..4 and after the final linear */
} cnn;

/* mean and population std of x, in double */
static void layer_stats(const dlf_tensor *x, float *mean, float *std)
{
    double s = 0, s2 = 0;
    int i;
    for (i = 0; i < x->size; i++) { s += x->data[i]; s2 += (double)x->data[i] * x->data[i]; }
    *mean = (float)(s / x->size);
    *std = (float)sqrt(s2 / x->size - (s / x->size) * (s / x->size));
}

static dlf_tensor *forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    cnn *m = (cnn *)user;
    dlf_tensor *h = x;
    int i;
    for (i = 0; i < 4; i++) {
        h = dlf_conv2d(t, h, m->w[i], m->b[i], 2, conv_r[i] / 2);
        h = m->general ? dlf_general_relu(t, h, 0.1f, 0.4f, 6.0f) : dlf_relu(t, h);
        if (m->record) layer_stats(h, &m->mean[i], &m->std[i]);
    }
    h = dlf_global_avgpool(t, h);               /* (N, 32) */
    h = dlf_linear(t, h, m->fc_w, m->fc_b);     /* (N, 10) */
    if (m->record) layer_stats(h, &m->mean[4], &m->std[4]);
    return h;
}

static void build(cnn *m, int kaiming, uint64_t seed)
{
    dlf_rng rng;
    int i;
    memset(m, 0, sizeof *m);
    dlf_rng_seed(&rng, seed);
    for (i = 0; i < 4; i++) {
        m->w[i] = dlf_param_new(4, (int[]){conv_k[i], conv_c[i], conv_r[i], conv_r[i]});
        m->b[i] = dlf_param_new(1, &conv_k[i]);
        if (kaiming) dlf_init_kaiming_normal(m->w[i], &rng, 0.1f, DLF_FAN_IN);  /* bias 0 */
        else dlf_init_torch_default(m->w[i], m->b[i], &rng);
    }
    m->fc_w = dlf_param_new(2, (int[]){10, 32});
    m->fc_b = dlf_param_new(1, (int[]){10});
    dlf_init_torch_default(m->fc_w, m->fc_b, &rng);
    m->general = kaiming;
}

static void destroy(cnn *m)
{
    int i;
    for (i = 0; i < 4; i++) { dlf_tensor_free(m->w[i]); dlf_tensor_free(m->b[i]); }
    dlf_tensor_free(m->fc_w);
    dlf_tensor_free(m->fc_b);
}

static void print_stats(const char *title, cnn *m, dlf_tape *t, dlf_loader *l)
{
    static const char *names[5] = {"conv1 (8,14,14)", "conv2 (16,7,7)", "conv3 (32,4,4)",
                                   "conv4 (32,2,2)", "linear (10)"};
    int i, prev = dlf_tape_set_grad(t, 0);
    l->pos = 0;
    dlf_loader_next(l);
    m->record = 1;
    dlf_tape_reset(t);
    forward(t, l->x, m);
    m->record = 0;
    l->pos = 0;
    dlf_tape_set_grad(t, prev);
    printf("%s\n  %-18s %9s %9s\n", title, "layer", "mean", "std");
    for (i = 0; i < 5; i++) printf("  %-18s %9.4f %9.4f\n", names[i], m->mean[i], m->std[i]);
    printf("\n");
}

int main(void)
{
    dlf_mnist data;
    dlf_loader *train, *valid, *test;
    dlf_optim_cfg sc;
    dlf_optim *opt;
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    dlf_tape t;
    cnn a, b;
    dlf_tensor *params[10];
    float acc, loss_v;
    int i, full = 1;

    full = lesson_load_mnist(&data, "");
    if (full < 0) return 1;
    dlf_mnist_loaders(&data, 64, 500, 1, &train, &valid, &test);
    dlf_tape_init(&t);

    printf("1. activations of one batch of %d validation images right after init (inputs: mean 0, std 1)\n\n",
           valid->ds->n < valid->cfg.batch_size ? valid->ds->n : valid->cfg.batch_size);
    build(&a, 0, 1);
    print_stats("PyTorch default init (kaiming_uniform, a = sqrt(5)) + ReLU", &a, &t, valid);
    build(&b, 1, 1);
    print_stats("Kaiming normal (a = 0.1, fan_in) + GeneralRelu(leak 0.1, sub 0.4, maxv 6)", &b, &t, valid);

    printf("2. training the Kaiming + GeneralRelu model: %s, one-cycle SGD lr 0.1, momentum 0.9\n",
           full ? "1 epoch" : "20 epochs of the subset");
    for (i = 0; i < 4; i++) { params[2 * i] = b.w[i]; params[2 * i + 1] = b.b[i]; }
    params[8] = b.fc_w;
    params[9] = b.fc_b;
    memset(&sc, 0, sizeof sc);
    sc.lr = 0.1f;
    sc.momentum = 0.9f;
    opt = dlf_optim_create(DLF_OPTIM_SGD, params, 10, &sc);
    memset(&fc, 0, sizeof fc);
    fc.epochs = full ? 1 : 20;
    fc.sched = DLF_SCHED_ONE_CYCLE;
    if (dlf_fit(&t, forward, &b, dlf_cross_entropy, opt, train, valid, &fc, &rep) != DLF_OK) {
        printf("training stopped: %s\n", dlf_last_error());
        return 1;
    }
    acc = dlf_evaluate(&t, forward, &b, test, &loss_v);
    printf("test loss %.4f, test accuracy %.4f after %d steps (%.1fs of training)\n", loss_v, acc, rep.steps,
           rep.train_seconds);
    print_stats("\nthe same batch after training", &b, &t, valid);

    dlf_optim_free(opt);
    destroy(&a);
    destroy(&b);
    dlf_tape_destroy(&t);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_loader_free(test);
    dlf_mnist_free(&data);
    return 0;
}
