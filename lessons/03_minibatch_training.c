/* 03_minibatch_training.c - log-softmax three ways, cross-entropy, and the first real
   training loop with minibatches (the course's notebook 03_minibatch_training,
   "Deep Learning from the Foundations", fast.ai; the docs page is docs/data.md).

   What it shows
     1. log-softmax three ways, on plain float arrays:
            naive       log(exp(x_i) / sum_j exp(x_j))
            log(a/b)    x_i - log(sum_j exp(x_j))          (log(a/b) = log a - log b)
            logsumexp   x_i - (m + log(sum_j exp(x_j - m))),  m = max_j x_j
        on ordinary logits all three agree; on large logits (1000, 1001, 1002) exp
        overflows to inf and the first two give NaN or -inf, while logsumexp is exact.
        dlf_log_softmax uses the third; we print the difference.
     2. cross-entropy = mean of -log p[target] (the NLL of the log-softmax), and
        accuracy, checked against dlf_cross_entropy and dlf_accuracy.
     3. the 784-50-10 MLP trained with minibatches, the loop written out by hand:
            for each epoch: for each batch (shuffled by the loader):
                reset the tape; loss = cross_entropy(model(x), y); backward;
                p -= lr * p.grad for every parameter; zero the grads
        one epoch with that hand-written update (lr 0.5, as in the notebook), then
        one with dlf_optim (kind SGD: the same update, plus momentum), printing the validation
        accuracy after each.
   Data: data/mnist (run `make data`); when it is missing the lesson falls back to the
   1000-image subset in tests/data and says so, so `make lessons` runs anywhere.

   In a debugger:   make debug && gdb build/debug/lessons/03_minibatch_training
     break log_softmax_naive     step the loop and `p e` / `p sum` on the big logits:
                                 watch them become inf
     break dlf_loader_next       `p l->pos`, `p l->order[0]@8`: the shuffled positions
     break sgd_by_hand           `p lr`, `p w->data[0]`, `p w->grad[0]` before and after
   Variables to watch in main: `loss_v`, `acc`, and `batch` in the training loop. */
#include <stdio.h>
#include <string.h>
#include <math.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

#define N_CLASSES 3

/* log(exp(x_i) / sum_j exp(x_j)): overflows as soon as some x_j > 88 (exp > FLT_MAX). */
static void log_softmax_naive(const float *x, float *out, int n)
{
    float sum = 0.0f;
    int i;
    for (i = 0; i < n; i++) {
        float e = expf(x[i]);
        sum += e;
    }
    for (i = 0; i < n; i++) out[i] = logf(expf(x[i]) / sum);
}

/* log(a/b) = log a - log b:  x_i - log(sum_j exp(x_j)). One exp fewer per element,
   but the sum still overflows. */
static void log_softmax_div(const float *x, float *out, int n)
{
    float sum = 0.0f;
    int i;
    for (i = 0; i < n; i++) sum += expf(x[i]);
    for (i = 0; i < n; i++) out[i] = x[i] - logf(sum);
}

/* logsumexp: log sum_j exp(x_j) = m + log sum_j exp(x_j - m), m = max_j x_j. Every
   exponent is <= 0, so nothing overflows, and the largest term is exactly 1. */
static void log_softmax_lse(const float *x, float *out, int n)
{
    float m = x[0], sum = 0.0f, lse;
    int i;
    for (i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    for (i = 0; i < n; i++) sum += expf(x[i] - m);
    lse = m + logf(sum);
    for (i = 0; i < n; i++) out[i] = x[i] - lse;
}

static void print_row(const char *label, const float *v, int n)
{
    int i;
    printf("  %-22s", label);
    for (i = 0; i < n; i++) printf(" %12.6g", v[i]);
    printf("\n");
}

static void three_ways(const char *title, const float *x)
{
    float a[N_CLASSES], b[N_CLASSES], c[N_CLASSES];
    dlf_tape t;
    dlf_tensor *in, *out;
    int shape[2] = {1, N_CLASSES}, i;
    float diff = 0.0f;
    printf("%s\n", title);
    print_row("logits", x, N_CLASSES);
    log_softmax_naive(x, a, N_CLASSES);
    log_softmax_div(x, b, N_CLASSES);
    log_softmax_lse(x, c, N_CLASSES);
    print_row("naive log(e^x/sum)", a, N_CLASSES);
    print_row("x - log(sum e^x)", b, N_CLASSES);
    print_row("logsumexp trick", c, N_CLASSES);
    dlf_tape_init(&t);
    in = dlf_tensor_from(2, shape, x);
    out = dlf_log_softmax(&t, in, -1);
    for (i = 0; i < N_CLASSES; i++)
        if (fabsf(out->data[i] - c[i]) > diff) diff = fabsf(out->data[i] - c[i]);
    print_row("dlf_log_softmax", out->data, N_CLASSES);
    printf("  max |dlf_log_softmax - logsumexp| = %g\n\n", diff);
    dlf_tensor_free(in);
    dlf_tape_destroy(&t);
}

/* Section 2: cross-entropy by hand on a tiny batch, against dlf. */
static void cross_entropy_demo(void)
{
    static const float z[4 * N_CLASSES] = {2.0f, 1.0f, 0.1f, 0.5f, 2.5f, 0.3f,
                                           -1.0f, 0.0f, 3.0f, 1.2f, 1.1f, 1.0f};
    static const float y[4] = {0, 1, 2, 2};   /* the last one is a wrong guess */
    float logp[N_CLASSES], nll = 0.0f;
    int i, j, right = 0, shape[2] = {4, N_CLASSES};
    dlf_tape t;
    dlf_tensor *zt, *yt, *loss;
    printf("2. cross-entropy = mean_i -log p_i[y_i]\n");
    for (i = 0; i < 4; i++) {
        int best = 0;
        log_softmax_lse(z + i * N_CLASSES, logp, N_CLASSES);
        nll -= logp[(int)y[i]];
        for (j = 1; j < N_CLASSES; j++)
            if (z[i * N_CLASSES + j] > z[i * N_CLASSES + best]) best = j;
        right += best == (int)y[i];
    }
    nll /= 4.0f;
    dlf_tape_init(&t);
    zt = dlf_tensor_from(2, shape, z);
    yt = dlf_tensor_from(1, shape, y);
    loss = dlf_cross_entropy(&t, zt, yt);
    printf("  by hand: loss %.6f accuracy %.2f    dlf: loss %.6f accuracy %.2f\n\n", nll, right / 4.0f,
           loss->data[0], dlf_accuracy(zt, yt));
    dlf_tensor_free(zt);
    dlf_tensor_free(yt);
    dlf_tape_destroy(&t);
}

typedef struct mlp {
    dlf_tensor *w1;   /* (50, 784) */
    dlf_tensor *b1;   /* (50) */
    dlf_tensor *w2;   /* (10, 50) */
    dlf_tensor *b2;   /* (10) */
} mlp;

static dlf_tensor *mlp_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    mlp *m = (mlp *)user;
    dlf_tensor *h = dlf_flatten(t, x);                  /* (N, 784) */
    h = dlf_relu(t, dlf_linear(t, h, m->w1, m->b1));    /* (N, 50) */
    return dlf_linear(t, h, m->w2, m->b2);              /* (N, 10) */
}

/* The notebook's update: with torch.no_grad(): for p in params: p -= p.grad * lr; then zero. */
static void sgd_by_hand(dlf_tensor **params, int n, float lr)
{
    int k, i;
    for (k = 0; k < n; k++) {
        dlf_tensor *w = params[k];
        for (i = 0; i < w->size; i++) w->data[i] -= lr * w->grad[i];
        dlf_zero_grad(w);
    }
}

int main(void)
{
    static const float small[N_CLASSES] = {1.0f, 2.0f, 3.0f};
    static const float big[N_CLASSES] = {1000.0f, 1001.0f, 1002.0f};
    dlf_mnist data;
    dlf_loader *train, *valid;
    dlf_optim_cfg sc;
    dlf_optim *opt;
    dlf_tape t;
    dlf_rng rng;
    mlp m;
    dlf_tensor *params[4];
    float acc, loss_v;
    int n, batch;
    double t0;

    printf("1. log-softmax three ways\n");
    three_ways("  ordinary logits: all agree", small);
    three_ways("  large logits: exp(1000) = inf, so the first two break", big);
    cross_entropy_demo();

    printf("3. the 784-50-10 MLP, minibatch SGD\n");
    if (lesson_load_mnist(&data, "  ") < 0) return 1;
    printf("  %d train, %d valid; normalized with the train mean %.4f and std %.4f\n",
           data.train.n, data.valid.n, data.mean, data.std);

    dlf_rng_seed(&rng, 42);
    m.w1 = dlf_param_new(2, (int[]){50, 784});
    m.b1 = dlf_param_new(1, (int[]){50});
    m.w2 = dlf_param_new(2, (int[]){10, 50});
    m.b2 = dlf_param_new(1, (int[]){10});
    dlf_init_torch_default(m.w1, m.b1, &rng);
    dlf_init_torch_default(m.w2, m.b2, &rng);
    params[0] = m.w1; params[1] = m.b1; params[2] = m.w2; params[3] = m.b2;
    /* a shuffled training loader and an in-order validation loader, both normalized
       with the training mean and std */
    dlf_mnist_loaders(&data, 64, 500, 42, &train, &valid, NULL);
    dlf_tape_init(&t);
    acc = dlf_evaluate(&t, mlp_forward, &m, valid, &loss_v);
    printf("  before training:                valid loss %.4f accuracy %.4f\n", loss_v, acc);

    /* epoch 1: the loop and the update written out by hand */
    t0 = dlf_seconds();
    batch = 0;
    while ((n = dlf_loader_next(train)) > 0) {
        dlf_tensor *loss;
        dlf_tape_reset(&t);   /* a new step: forgotten, the old steps' nodes and outputs would pile up
                                 (backward would still walk only this loss's nodes; docs/tape.md) */
        loss = dlf_cross_entropy(&t, mlp_forward(&t, train->x, &m), train->y);
        dlf_backward(&t, loss);
        sgd_by_hand(params, 4, 0.5f);
        batch++;
    }
    acc = dlf_evaluate(&t, mlp_forward, &m, valid, &loss_v);
    printf("  epoch 1, by hand, lr 0.5:       valid loss %.4f accuracy %.4f (%d batches, %.2fs)\n",
           loss_v, acc, batch, dlf_seconds() - t0);

    /* epoch 2: dlf_optim of kind SGD (torch.optim.SGD's update) with momentum */
    memset(&sc, 0, sizeof sc);
    sc.lr = 0.05f;
    sc.momentum = 0.9f;
    opt = dlf_optim_create(DLF_OPTIM_SGD, params, 4, &sc);
    dlf_optim_print_cfg(opt);
    t0 = dlf_seconds();
    while ((n = dlf_loader_next(train)) > 0) {
        dlf_tensor *loss;
        dlf_tape_reset(&t);
        loss = dlf_cross_entropy(&t, mlp_forward(&t, train->x, &m), train->y);
        dlf_backward(&t, loss);
        dlf_optim_step(opt);
        dlf_optim_zero_grad(opt);
    }
    acc = dlf_evaluate(&t, mlp_forward, &m, valid, &loss_v);
    printf("  epoch 2, SGD, momentum 0.9:     valid loss %.4f accuracy %.4f (%.2fs)\n",
           loss_v, acc, dlf_seconds() - t0);

    dlf_optim_free(opt);
    dlf_tape_destroy(&t);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_tensor_free(m.w1); dlf_tensor_free(m.b1); dlf_tensor_free(m.w2); dlf_tensor_free(m.b2);
    dlf_mnist_free(&data);
    return 0;
}
