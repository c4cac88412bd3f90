/* 07a_lsuv.c - LSUV, layer-sequential unit-variance init (notebook 07a_lsuv, "Deep Learning
   from the Foundations", fast.ai; Mishkin & Matas 2015, "All you need is a good init";
   the docs pages are docs/init.md and docs/norm.md, the code dlf_lsuv_init and
   dlf_seq_lsuv in stage 7 of dlf.h).

   What it shows
     The CNN of lessons 06 and 07 without any normalization layer: conv 8,16,32,32
     stride 2, each followed by GeneralRelu(leak 0.1, sub 0.4, maxv 6), global average
     pool, Linear 32 -> 10, every layer with PyTorch's default init (kaiming_uniform,
     a = sqrt(5)), as the notebook starts.
     1. The mean and std of each layer's output (after its activation) on one fixed
        batch of 512 training images, with the default init: the std shrinks layer by
        layer and the means sit at the GeneralRelu's -0.4 offset.
     2. LSUV on that batch: for each conv/linear layer in order, run the model up to
        its activation, then   bias -= mean   until |mean| < tol, and   weight /= std
        until |std - 1| < tol   (and again while the rescaling moved the mean). It
        is BatchNorm's normalization done once, at init, on one batch, and folded into
        the weights, so it costs nothing per step. The table again: every layer now at
        mean 0, std 1 on that batch. (dlf_seq_lsuv also visits the final Linear, layer 9,
        so the logits start at std 1; the course's loop visits only its ConvLayers.)
     3. Both models trained the same way (1 epoch, batch size 64, one-cycle SGD with
        momentum 0.9, peak lr 0.2, the same shuffle), their test accuracy side by side.
   Data: data/mnist (run `make data`); when it is missing the lesson falls back to the
   1000-image subset in tests/data and says so. About 10 s on a quiet 2-core machine.

   In a debugger:   make debug && gdb build/debug/lessons/07a_lsuv
     break dlf_lsuv_init        `p *w`, then step the loops: `p mean`, `p std` after each
                                forward pass, `p passes`
     break dlf_seq_lsuv         `p i`, `p ctx.upto`: which layers run for layer i's stats
     break layer_table          `p st->mean[0]@5`, `p st->std[0]@5` after the loop
   Variables to watch in main: `acc[0]`, `acc[1]`, `rep.train_loss`. */
#include <stdio.h>
#include <string.h>
#include <math.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"


typedef struct layer_stats {
    float mean[5], std[5];   /* after GeneralRelu 1..4, after the linear */
} layer_stats;

/* mean and population std of every layer's output on x, by running the first n layers */
static void layer_table(const dlf_seq *s, dlf_tensor *x, layer_stats *st)
{
    static const int upto[5] = {2, 4, 6, 8, 10};
    dlf_tape t;
    int j, i;
    dlf_tape_init(&t);
    dlf_tape_set_grad(&t, 0);
    for (j = 0; j < 5; j++) {
        dlf_tensor *h;
        double sum = 0.0, sq = 0.0;
        dlf_tape_reset(&t);
        h = dlf_seq_forward_n(&t, s, x, upto[j]);
        for (i = 0; i < h->size; i++) { sum += h->data[i]; sq += (double)h->data[i] * h->data[i]; }
        st->mean[j] = (float)(sum / h->size);
        st->std[j] = (float)sqrt(sq / h->size - (sum / h->size) * (sum / h->size));
    }
    dlf_tape_destroy(&t);
}

static void print_tables(const layer_stats *a, const layer_stats *b, const char *la, const char *lb)
{
    static const char *names[5] = {"conv1+relu (8,14,14)", "conv2+relu (16,7,7)", "conv3+relu (32,4,4)",
                                   "conv4+relu (32,2,2)", "linear (10)"};
    int j;
    printf("  %-22s %19s   %19s\n", "", la, lb);
    printf("  %-22s %9s %9s", "layer output", "mean", "std");
    printf(b ? "   %9s %9s\n" : "\n", "mean", "std");
    for (j = 0; j < 5; j++) {
        printf("  %-22s %9.4f %9.4f", names[j], a->mean[j], a->std[j]);
        if (b) printf("   %9.4f %9.4f", b->mean[j], b->std[j]);
        printf("\n");
    }
}

int main(void)
{
    dlf_mnist data;
    dlf_loader *train = NULL, *test = NULL, *fixed;
    dlf_loader_cfg lc;
    dlf_lsuv_cfg cfg;
    dlf_fit_report rep[2];
    dlf_tape t;
    dlf_seq s[2];
    layer_stats before, after, trained[2];
    float acc[2], loss_v[2];
    int m;
    double t0 = dlf_seconds();

    if (lesson_load_mnist(&data, "") < 0) return 1;
    if (dlf_mnist_loaders(&data, 64, 500, 1, &train, NULL, &test) != DLF_OK) return 1;
    /* the fixed batch: the first 512 training images, normalized like every batch */
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 512;
    lc.mean = data.mean;
    lc.std = data.std;
    fixed = dlf_loader_create(&data.train, &lc);
    dlf_loader_next(fixed);

    lesson_build_cnn(&s[0], 1, 0);
    lesson_build_cnn(&s[1], 1, 0);                       /* the same weights: the same seed */
    layer_table(&s[0], fixed->x, &before);
    printf("\n1. each layer's output on a fixed batch of the first %d training images, default init\n",
           fixed->x->shape[0]);
    print_tables(&before, NULL, "default init", "");

    printf("\n2. dlf_seq_lsuv on one batch of %d (tol 1e-3, at most 10 passes per phase):\n", fixed->x->shape[0]);
    memset(&cfg, 0, sizeof cfg);
    cfg.verbose = 1;
    dlf_seq_lsuv(&s[1], fixed->x, &cfg);
    layer_table(&s[1], fixed->x, &after);
    printf("\n   each layer's output on the fixed batch, before and after\n");
    print_tables(&before, &after, "default init", "after LSUV");

    printf("\n3. 1 epoch (%d steps), batch size 64, one-cycle SGD lr 0.2, momentum 0.9\n", train->n_batches);
    dlf_tape_init(&t);
    for (m = 0; m < 2; m++) {
        dlf_params pl;
        dlf_optim_cfg oc;
        dlf_optim *opt;
        dlf_fit_cfg fc;
        dlf_params_init(&pl);
        dlf_seq_collect(&s[m], &pl);
        memset(&oc, 0, sizeof oc);
        oc.lr = 0.2f;
        oc.momentum = 0.9f;
        opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &pl, &oc, 1);
        memset(&fc, 0, sizeof fc);
        fc.epochs = 1;
        fc.sched = DLF_SCHED_ONE_CYCLE;
        fc.quiet = 1;
        train->pos = 0;
        if (dlf_fit(&t, lesson_seq_model, &s[m], dlf_cross_entropy, opt, train, NULL, &fc, &rep[m]) != DLF_OK) {
            printf("  training stopped: %s\n", dlf_last_error());
            acc[m] = 0.0f;
            loss_v[m] = NAN;
        } else {
            acc[m] = dlf_evaluate(&t, lesson_seq_model, &s[m], test, &loss_v[m]);
        }
        layer_table(&s[m], fixed->x, &trained[m]);
        dlf_optim_free(opt);
        dlf_params_free(&pl);
    }
    printf("  %-14s %10s %10s %10s %9s\n", "init", "train loss", "test loss", "test acc", "time");
    printf("  %-14s %10.4f %10.4f %10.4f %8.1fs\n", "default", rep[0].train_loss, loss_v[0], acc[0],
           rep[0].train_seconds);
    printf("  %-14s %10.4f %10.4f %10.4f %8.1fs\n", "LSUV", rep[1].train_loss, loss_v[1], acc[1],
           rep[1].train_seconds);
    printf("\n  the fixed batch after training\n");
    print_tables(&trained[0], &trained[1], "trained, default", "trained, LSUV");
    printf("\ntotal %.1fs\n", dlf_seconds() - t0);

    dlf_seq_free(&s[0]);
    dlf_seq_free(&s[1]);
    dlf_tape_destroy(&t);
    dlf_loader_free(fixed);
    dlf_loader_free(train);
    dlf_loader_free(test);
    dlf_mnist_free(&data);
    return 0;
}
