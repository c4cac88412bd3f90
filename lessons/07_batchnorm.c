/* 07_batchnorm.c - BatchNorm, LayerNorm, InstanceNorm, GroupNorm and RunningBatchNorm on
   the course's CNN (notebook 07_batchnorm, "Deep Learning from the Foundations", fast.ai;
   the docs page is docs/norm.md, the code stage 9 of dlf.h: grep '>>stage9' dlf.h).

   What it shows
     1. BatchNorm's forward and backward by hand on a tiny (4, 2) batch, step by step,
        next to dlf_batchnorm: the batch mean and biased variance per channel,
        rstd = 1/sqrt(var + eps), xhat, y = w * xhat + b; then the running statistics
        (momentum 0.1, unbiased variance, num_batches_tracked); then the backward in its
        three terms
            dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = dy * w
                         term 1  term 2          term 3
        against dlf__bn_backward, and eval mode (running statistics, terms 2 and 3 gone).
     2. The course's table: the CNN of lesson 06 (conv 8,16,32,32 stride 2, GeneralRelu,
        global average pool, Linear 32 -> 10, Kaiming init), with a normalization after
        every activation as the course places it: none, BatchNorm, LayerNorm,
        InstanceNorm, GroupNorm (4 groups). Each trains the same way: 1 epoch of MNIST
        at batch size 64, one-cycle SGD with momentum 0.9, peak lr 0.2, seed 1. Each row
        prints the test accuracy and the training time. InstanceNorm throws away each
        image's per-channel mean and contrast, which is what tells the digits apart here,
        so it trains far worse.
     3. Batch size 2, where BatchNorm's batch statistics are noise (2 images -> 8 values
        per channel at the last conv): BatchNorm against RunningBatchNorm, which
        normalizes with running sums and so sees nearly the same statistics in training
        and in evaluation. 5000 steps of batch size 2 (the first 10000 training images),
        one-cycle SGD with peak lr 0.1 and no momentum (the course's plain SGD). The
        train loss column is the mean loss of the epoch in training mode: BatchNorm's is
        about twice RunningBatchNorm's, because every step normalizes with the mean and
        variance of two images. In eval mode BatchNorm uses its running averages, which
        are sane, so its test accuracy suffers less than in the course's run (lr 0.4,
        wider net, a full epoch), where the validation loss blew up.
   Data: data/mnist (run `make data`); when it is missing the lesson falls back to the
   1000-image subset in tests/data and says so. About 35 s on the 2-core development machine.

   In a debugger:   make debug && gdb build/debug/lessons/07_batchnorm
     break dlf_batchnorm        finish the stats loop, then `p mean->data[0]@C`,
                                `p rstd->data[0]@C`, `p st->running_mean->data[0]@C`,
                                `p st->num_batches_tracked->data[0]`, `p training`
     break dlf__bn_backward     `next` past the declarations, then `p k` (1/M in training:
                                0.25 for the (4, 2) batch; 0 in eval), `p sum_g`, `p sum_gx`
                                per channel, `p mean[0]@C`, `p rstd[0]@C`; step to `dx`:
                                term 1, 2, 3 are the three lines that build it
     break dlf_running_batchnorm   `p mom1`, `p st->count->data[0]`, `p st->dbias->data[0]`
     break bn_by_hand           our own copy of the steps: `p mu`, `p var`, `p rstd`
   Variables to watch in main: `acc`, `rep.train_seconds`; in bn_by_hand: `xhat`, `term`. */
#include <stdio.h>
#include <string.h>
#include <math.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

/* ---------------------------------------------------------------- 1. by hand */

#define BN_N 4
#define BN_C 2

/* x (4, 2), dy (4, 2): the forward and the three backward terms for channel c. */
static void bn_by_hand(const float *x, const float *dy, const float *w, const float *b, int c, float eps,
                       float *y_out, float *dx_out)
{
    double mu = 0.0, var = 0.0, rstd, sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    double xhat[BN_N], dxhat[BN_N], term[3];
    int n;
    for (n = 0; n < BN_N; n++) mu += x[n * BN_C + c];
    mu /= BN_N;                                             /* batch mean */
    for (n = 0; n < BN_N; n++) var += (x[n * BN_C + c] - mu) * (x[n * BN_C + c] - mu);
    var /= BN_N;                                            /* biased variance: / M */
    rstd = 1.0 / sqrt(var + eps);
    printf("  channel %d: mean %.4f  var %.4f (biased)  rstd = 1/sqrt(var + eps) %.4f\n", c, mu, var, rstd);
    for (n = 0; n < BN_N; n++) {
        xhat[n] = (x[n * BN_C + c] - mu) * rstd;
        y_out[n * BN_C + c] = (float)(w[c] * xhat[n] + b[c]);
        dxhat[n] = dy[n * BN_C + c] * w[c];
        sum_dxhat += dxhat[n];
        sum_dxhat_xhat += dxhat[n] * xhat[n];
    }
    printf("    %-6s %9s %9s %9s %9s %9s %9s %9s\n", "n", "x", "xhat", "y", "term1", "term2", "term3", "dx");
    for (n = 0; n < BN_N; n++) {
        term[0] = dxhat[n];                                  /* straight through xhat */
        term[1] = -sum_dxhat / BN_N;                         /* through the mean */
        term[2] = -xhat[n] * sum_dxhat_xhat / BN_N;          /* through the variance */
        dx_out[n * BN_C + c] = (float)(rstd * (term[0] + term[1] + term[2]));
        printf("    %-6d %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f\n", n, x[n * BN_C + c], xhat[n],
               y_out[n * BN_C + c], term[0], term[1], term[2], dx_out[n * BN_C + c]);
    }
}

static void section1(void)
{
    static const float xv[BN_N * BN_C] = {1.0f, 10.0f, 2.0f, 20.0f, 3.0f, 30.0f, 6.0f, 0.0f};
    static const float dyv[BN_N * BN_C] = {0.1f, -0.2f, 0.4f, 0.3f, -0.3f, 0.1f, 0.5f, 0.5f};
    float y_hand[BN_N * BN_C], dx_hand[BN_N * BN_C], wv[BN_C] = {1.5f, 0.5f}, bv[BN_C] = {0.1f, -0.2f};
    int shape[2] = {BN_N, BN_C}, c, i;
    dlf_tape t;
    dlf_layer bn = dlf_layer_batchnorm(BN_C);
    dlf_tensor *x = dlf_param_new(2, shape), *y, *loss, *dy = dlf_tensor_from(2, shape, dyv);
    float dy_err = 0.0f, dx_err = 0.0f;

    printf("1. BatchNorm by hand on x (4, 2), w = (1.5, 0.5), b = (0.1, -0.2), eps 1e-5\n");
    memcpy(x->data, xv, sizeof xv);
    memcpy(bn.weight->data, wv, sizeof wv);
    memcpy(bn.bias->data, bv, sizeof bv);
    for (c = 0; c < BN_C; c++) bn_by_hand(xv, dyv, wv, bv, c, 1e-5f, y_hand, dx_hand);

    dlf_tape_init(&t);                                   /* training mode */
    y = dlf_batchnorm(&t, x, bn.weight, bn.bias, &bn.bn);
    loss = dlf_sum_all(&t, dlf_mul(&t, y, dy));         /* d loss / dy = dy */
    dlf_backward(&t, loss);
    for (i = 0; i < BN_N * BN_C; i++) {
        if (fabsf(y->data[i] - y_hand[i]) > dy_err) dy_err = fabsf(y->data[i] - y_hand[i]);
        if (fabsf(x->grad[i] - dx_hand[i]) > dx_err) dx_err = fabsf(x->grad[i] - dx_hand[i]);
    }
    printf("  dlf_batchnorm: max |y - by hand| %.2g, dlf__bn_backward: max |dx - by hand| %.2g\n", dy_err, dx_err);
    printf("  dw = sum dy * xhat = (%.4f, %.4f), db = sum dy = (%.4f, %.4f)\n", bn.weight->grad[0],
           bn.weight->grad[1], bn.bias->grad[0], bn.bias->grad[1]);
    printf("  the sum over n of each channel's dx is 0 (term 2 removes it): %.2g, %.2g\n",
           x->grad[0] + x->grad[2] + x->grad[4] + x->grad[6], x->grad[1] + x->grad[3] + x->grad[5] + x->grad[7]);
    printf("  running statistics after this one batch (momentum 0.1, PyTorch's update):\n"
           "    running_mean = 0.9 * 0 + 0.1 * mean          = (%.4f, %.4f)\n"
           "    running_var  = 0.9 * 1 + 0.1 * var * M/(M-1) = (%.4f, %.4f)  (unbiased, M = 4)\n"
           "    num_batches_tracked = %.0f\n",
           bn.bn.running_mean->data[0], bn.bn.running_mean->data[1], bn.bn.running_var->data[0],
           bn.bn.running_var->data[1], bn.bn.num_batches_tracked->data[0]);

    /* eval mode: the running statistics, no dependence of mean/var on x */
    dlf_tape_reset(&t);
    dlf_zero_grad(x);
    dlf_tape_set_training(&t, 0);
    y = dlf_batchnorm(&t, x, bn.weight, bn.bias, &bn.bn);
    loss = dlf_sum_all(&t, dlf_mul(&t, y, dy));
    dlf_backward(&t, loss);
    printf("  eval mode: y[0] = %.4f (running stats), dx[0] = %.4f = dy * w * rstd_running = %.4f\n\n", y->data[0],
           x->grad[0], dyv[0] * wv[0] / sqrtf(bn.bn.running_var->data[0] + 1e-5f));

    dlf_tensor_free(x);
    dlf_tensor_free(dy);
    dlf_layer_free(&bn);
    dlf_tape_destroy(&t);
}

/* ---------------------------------------------------------------- 2. the CNN table */

typedef enum norm_kind { NORM_NONE, NORM_BATCH, NORM_LAYER, NORM_INSTANCE, NORM_GROUP, NORM_RUNNING } norm_kind;
static const char *norm_names[] = {"no norm", "BatchNorm", "LayerNorm", "InstanceNorm", "GroupNorm (4 groups)",
                                   "RunningBatchNorm"};

static const int conv_k[4] = {8, 16, 32, 32};   /* output channels */
static const int conv_c[4] = {1, 8, 16, 32};    /* input channels */
static const int conv_r[4] = {5, 3, 3, 3};      /* kernel size */
static const int conv_hw[4] = {14, 7, 4, 2};    /* output height = width on 28x28 inputs */

/* conv (no bias when a norm follows: the norm's own bias replaces it, as the course's
   bias=not bn) -> GeneralRelu(0.1, 0.4, 6) -> norm, four times; pool; linear. */
static void build(dlf_seq *s, norm_kind nk, uint64_t seed)
{
    dlf_rng rng;
    int i;
    dlf_rng_seed(&rng, seed);
    dlf_seq_init(s);
    for (i = 0; i < 4; i++) {
        dlf_layer conv = dlf_layer_conv2d(conv_c[i], conv_k[i], conv_r[i], 2, conv_r[i] / 2, nk == NORM_NONE, &rng);
        dlf_init_kaiming_normal(conv.weight, &rng, 0.1f, DLF_FAN_IN);
        if (conv.bias) memset(conv.bias->data, 0, sizeof(float) * conv.bias->size);
        dlf_seq_add(s, conv);
        dlf_seq_add(s, dlf_layer_general_relu(0.1f, 0.4f, 6.0f));
        switch (nk) {
        case NORM_BATCH: dlf_seq_add(s, dlf_layer_batchnorm(conv_k[i])); break;
        case NORM_LAYER: dlf_seq_add(s, dlf_layer_layernorm(conv_k[i] * conv_hw[i] * conv_hw[i])); break;
        case NORM_INSTANCE: dlf_seq_add(s, dlf_layer_instancenorm(conv_k[i], 1)); break;
        case NORM_GROUP: dlf_seq_add(s, dlf_layer_groupnorm(4, conv_k[i])); break;
        case NORM_RUNNING: dlf_seq_add(s, dlf_layer_running_batchnorm(conv_k[i])); break;
        case NORM_NONE: break;
        }
    }
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));
    dlf_seq_add(s, dlf_layer_linear(32, 10, 1, &rng));
}

static dlf_tensor *seq_model(dlf_tape *t, dlf_tensor *x, void *m)
{
    return dlf_seq_forward(t, (const dlf_seq *)m, x);
}

/* Train s on train for one epoch, one-cycle SGD, then the test accuracy. */
static float train_eval(dlf_seq *s, dlf_tape *t, dlf_loader *train, dlf_loader *test, float lr, float momentum,
                        dlf_fit_report *rep, float *test_loss)
{
    dlf_params pl;
    dlf_optim_cfg oc;
    dlf_optim *opt;
    dlf_fit_cfg fc;
    float acc = 0.0f;
    dlf_params_init(&pl);
    dlf_seq_collect(s, &pl);
    memset(&oc, 0, sizeof oc);
    oc.lr = lr;
    oc.momentum = momentum;
    opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &pl, &oc, 1);   /* buffers are skipped */
    memset(&fc, 0, sizeof fc);
    fc.epochs = 1;
    fc.sched = DLF_SCHED_ONE_CYCLE;
    fc.quiet = 1;
    memset(rep, 0, sizeof *rep);
    train->pos = 0;
    if (dlf_fit(t, seq_model, s, dlf_cross_entropy, opt, train, NULL, &fc, rep) != DLF_OK) {
        printf("    (training stopped: %s)\n", dlf_last_error());
        *test_loss = NAN;
    } else {
        acc = dlf_evaluate(t, seq_model, s, test, test_loss);
    }
    dlf_optim_free(opt);
    dlf_params_free(&pl);
    return acc;
}

int main(void)
{
    static const norm_kind table[5] = {NORM_NONE, NORM_BATCH, NORM_LAYER, NORM_INSTANCE, NORM_GROUP};
    dlf_mnist data;
    dlf_loader *train = NULL, *test = NULL, *small;
    dlf_loader_cfg lc;
    dlf_dataset sub;
    dlf_fit_report rep;
    dlf_tape t;
    dlf_seq s;
    float acc, loss_v;
    int i, full = 1, small_n;
    double t_all = dlf_seconds();

    section1();

    full = lesson_load_mnist(&data, "");
    if (full < 0) return 1;
    if (dlf_mnist_loaders(&data, 64, 500, 1, &train, NULL, &test) != DLF_OK) return 1;
    dlf_tape_init(&t);

    printf("\n2. the course's CNN, 1 epoch (%d steps of batch size 64), one-cycle SGD lr 0.2, momentum 0.9\n",
           train->n_batches);
    printf("  %-22s %10s %10s %10s %9s\n", "normalization", "train loss", "test loss", "test acc", "time");
    for (i = 0; i < 5; i++) {
        build(&s, table[i], 1);
        acc = train_eval(&s, &t, train, test, 0.2f, 0.9f, &rep, &loss_v);
        printf("  %-22s %10.4f %10.4f %10.4f %8.1fs\n", norm_names[table[i]], rep.train_loss, loss_v, acc,
               rep.train_seconds);
        fflush(stdout);
        dlf_seq_free(&s);
    }

    /* 3. batch size 2 on the first images of the training set */
    small_n = full ? 10000 : 1000;
    sub = dlf_dataset_view(&data.train, 0, small_n);
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 2;
    lc.shuffle = 1;
    lc.drop_last = 1;
    lc.seed = 1;
    lc.mean = data.mean;
    lc.std = data.std;
    small = dlf_loader_create(&sub, &lc);
    printf("\n3. batch size 2: %d steps (%d images), one-cycle SGD lr 0.1, no momentum\n", small->n_batches, small_n);
    printf("  %-22s %10s %10s %10s %9s\n", "normalization", "train loss", "test loss", "test acc", "time");
    for (i = 0; i < 2; i++) {
        norm_kind nk = i == 0 ? NORM_BATCH : NORM_RUNNING;
        build(&s, nk, 1);
        acc = train_eval(&s, &t, small, test, 0.1f, 0.0f, &rep, &loss_v);
        printf("  %-22s %10.4f %10.4f %10.4f %8.1fs\n", norm_names[nk], rep.train_loss, loss_v, acc,
               rep.train_seconds);
        if (nk == NORM_BATCH)
            printf("    (last BatchNorm: running_var[0..3] %.3f %.3f %.3f %.3f after %.0f batches)\n",
                   s.layers[11].bn.running_var->data[0], s.layers[11].bn.running_var->data[1],
                   s.layers[11].bn.running_var->data[2], s.layers[11].bn.running_var->data[3],
                   s.layers[11].bn.num_batches_tracked->data[0]);
        else
            printf("    (last RunningBatchNorm: batch %.0f, step %.0f, count %.2f, dbias %.4f)\n",
                   s.layers[11].rbn.batch->data[0], s.layers[11].rbn.step->data[0], s.layers[11].rbn.count->data[0],
                   s.layers[11].rbn.dbias->data[0]);
        fflush(stdout);
        dlf_seq_free(&s);
    }
    printf("\ntotal %.1fs\n", dlf_seconds() - t_all);

    dlf_loader_free(small);
    dlf_loader_free(train);
    dlf_loader_free(test);
    dlf_tape_destroy(&t);
    dlf_mnist_free(&data);
    return 0;
}
