/* bench_conv.c - dlf's side of the convolution benchmark; bench/torch_conv.py is
   PyTorch's side, with the same cases, the same names and the same timing rules.

   usage: bench_conv --threads T [--min-time S] [--cases layer,cnn]

   layer: the reference conv layer x (64,32,14,14), w (32,32,3,3), bias, pad 1, stride 1:
            fwd     the training forward (the tape records it for backward)
            fwdbwd  forward, then backward of sum(y): dx, dw, db
            infer   the forward without a tape recording (evaluation)
   cnn:   each conv layer of the course's MNIST CNN at batch 64 (8,16,32,32 channels,
          5x5 then 3x3, stride 2, bias), fwdbwd; the first layer's input needs no
          gradient, as in training.
   Each case prints one line
       case=<name> value=<ms> unit=ms kernel=<dlf kernel>
   value is the best sample (at least 5, and at least --min-time seconds of them, after
   2 warm-up calls); a sample repeats the call until it takes about 2 ms. Every call
   starts with dlf_tape_reset, as a training step does. A benchmark, not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

typedef struct conv_case {
    const char *name;
    int N, C, H, W, K, R, stride, pad;
    int x_grad;        /* 1: x needs a gradient (every layer but the first) */
} conv_case;

static double min_time = 0.3;

enum { FWD, FWDBWD, INFER };

/* One call: the forward (recorded unless INFER), and with FWDBWD its backward. */
static void step(dlf_tape *t, int what, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, const conv_case *c)
{
    dlf_tensor *y;
    dlf_tape_reset(t);
    y = dlf_conv2d(t, x, w, b, c->stride, c->pad);
    if (what == FWDBWD) dlf_backward(t, dlf_sum_all(t, y));
}

static void bench_case(const conv_case *c, int what, const char *suffix, int threads)
{
    dlf_rng rng;
    dlf_tape t;
    dlf_tensor *x = dlf_tensor_new4(c->N, c->C, c->H, c->W);
    dlf_tensor *w = dlf_param_new(4, (int[]){c->K, c->C, c->R, c->R});
    dlf_tensor *b = dlf_param_new(1, (int[]){c->K});
    double best = 1e30, spent = 0.0, t0;
    int reps = 0, inner, k, prev_grad;
    dlf_rng_seed(&rng, 1);
    dlf_fill_normal(x, &rng, 0, 1);
    dlf_init_torch_default(w, b, &rng);
    if (c->x_grad) dlf_tensor_requires_grad(x);
    dlf_tape_init(&t);
    prev_grad = dlf_tape_set_grad(&t, what != INFER);
    step(&t, what, x, w, b, c);                 /* warm-up: the arena grows to its size once */
    t0 = dlf_seconds();
    step(&t, what, x, w, b, c);
    inner = (int)(2e-3 / (dlf_seconds() - t0 + 1e-7)) + 1;
    while (reps < 5 || spent < min_time) {
        double dt;
        t0 = dlf_seconds();
        for (k = 0; k < inner; k++) step(&t, what, x, w, b, c);
        dt = dlf_seconds() - t0;
        spent += dt;
        if (dt / inner < best) best = dt / inner;
        reps++;
    }
    printf("case=%s-%s-t%d value=%.4f unit=ms kernel=%s\n", c->name, suffix, threads, best * 1e3, dlf_kernel_name());
    fflush(stdout);
    dlf_tape_set_grad(&t, prev_grad);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x); dlf_tensor_free(w); dlf_tensor_free(b);
}

int main(int argc, char **argv)
{
    static const conv_case layer = {"conv-64x32x14x14-k32-3x3p1", 64, 32, 14, 14, 32, 3, 1, 1, 1};
    static const conv_case cnn[] = {
        {"cnn-conv1-64x1x28x28-k8-5x5s2", 64, 1, 28, 28, 8, 5, 2, 2, 0},
        {"cnn-conv2-64x8x14x14-k16-3x3s2", 64, 8, 14, 14, 16, 3, 2, 1, 1},
        {"cnn-conv3-64x16x7x7-k32-3x3s2", 64, 16, 7, 7, 32, 3, 2, 1, 1},
        {"cnn-conv4-64x32x4x4-k32-3x3s2", 64, 32, 4, 4, 32, 3, 2, 1, 1},
    };
    const char *cases = "layer,cnn";
    int threads = 0, i;
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--min-time") == 0) min_time = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--cases") == 0) cases = argv[i + 1];
        else break;
    }
    if (i != argc || threads < 1) {
        fprintf(stderr, "usage: bench_conv --threads T [--min-time S] [--cases layer,cnn]\n");
        return 2;
    }
    dlf_set_threads(threads);
    if (strstr(cases, "layer")) {
        bench_case(&layer, FWD, "fwd", threads);
        bench_case(&layer, FWDBWD, "fwdbwd", threads);
        bench_case(&layer, INFER, "infer", threads);
    }
    if (strstr(cases, "cnn"))
        for (i = 0; i < 4; i++) bench_case(&cnn[i], FWDBWD, "fwdbwd", threads);
    return 0;
}
