/* 02a_why_sqrt5.c - what PyTorch's default init, kaiming_uniform(a = sqrt(5)), does
   to a conv net's signal, compared with Kaiming init (the course's notebook
   02a_why_sqrt5).

   What it shows
     1. One conv layer (1 -> 32 channels, 5x5) on unit-variance input: the default
        init gives an output std of about 0.58 = 1/sqrt(3), because its weights have
        Var = 1/(3 fan_in) instead of 1/fan_in; after the ReLU the mean square is
        halved again. Kaiming (a = 0) gives std ~1.4 = sqrt(2) before the ReLU, so
        E[relu^2] ~ 1: the signal keeps its scale.
     2. The course's 4-conv stride-2 stack (1->8 5x5, 8->16, 16->32, 32->1 3x3, pad
        ks//2, ReLU between, global average pool): with the default init the output
        std collapses layer by layer, and so does the first layer's weight gradient;
        with Kaiming both stay at a healthy scale.
   No data files: the input is normalized random noise (100 images, 1x28x28).

   In a debugger (make debug; gdb build/debug/lessons/02a_why_sqrt5)
     break stats           to see mean/std of any tensor
     break dlf_conv2d      then `finish` and `p *$` to inspect a conv's output
   Variables to watch: w->data (the init), y (each layer's output), the printed std.

   Prints: mean/std tables for both experiments. */
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include <stdio.h>
#include <math.h>

static void stats(const dlf_tensor *x, double *mean, double *std)
{
    double s = 0.0, ss = 0.0;
    int i;
    for (i = 0; i < x->size; i++) s += x->data[i];
    *mean = s / x->size;
    for (i = 0; i < x->size; i++) ss += (x->data[i] - *mean) * (x->data[i] - *mean);
    *std = sqrt(ss / (x->size - 1));
}

/* the init schemes under comparison, applied to a conv's weight and bias */
enum { INIT_TORCH_DEFAULT, INIT_KAIMING, INIT_KAIMING_SQRT5 };
static const char *init_name[] = {"torch default (a=sqrt5)", "kaiming_normal a=0", "kaiming_normal a=sqrt5"};

static void init_layer(dlf_tensor *w, dlf_tensor *b, int scheme, dlf_rng *r)
{
    switch (scheme) {
    case INIT_TORCH_DEFAULT: dlf_init_torch_default(w, b, r); break;
    case INIT_KAIMING: dlf_init_kaiming_normal(w, r, 0.0f, DLF_FAN_IN); dlf_fill(b, 0.0f); break;
    default: dlf_init_kaiming_normal(w, r, sqrtf(5.0f), DLF_FAN_IN); dlf_fill(b, 0.0f); break;
    }
}

/* Experiment 1: a single conv 1 -> 32, 5x5, no padding. */
static void one_layer(dlf_tensor *x, dlf_rng *r)
{
    int ws[4] = {32, 1, 5, 5}, scheme;
    dlf_tensor *w = dlf_tensor_new(4, ws), *b = dlf_tensor_new1(32);
    dlf_tape t;
    dlf_tape_init(&t);
    dlf_tape_set_grad(&t, 0);
    printf("1. one conv 1->32 5x5 on x with mean 0, std 1 (fan_in = 25)\n");
    printf("   %-26s %10s %10s %12s %12s\n", "init", "w std", "y std", "relu(y) std", "E[relu(y)^2]");
    for (scheme = 0; scheme < 3; scheme++) {
        dlf_tensor *y, *a;
        double m, s, wm, ws_, am, as, sq = 0.0;
        int i;
        dlf_tape_reset(&t);
        init_layer(w, b, scheme, r);
        y = dlf_conv2d(&t, x, w, b, 1, 0);
        a = dlf_relu(&t, y);
        stats(w, &wm, &ws_);
        stats(y, &m, &s);
        stats(a, &am, &as);
        for (i = 0; i < a->size; i++) sq += (double)a->data[i] * a->data[i];
        printf("   %-26s %10.4f %10.4f %12.4f %12.4f\n", init_name[scheme], ws_, s, as, sq / a->size);
    }
    printf("   (theory: w std = gain/sqrt(25) with gain sqrt(2/(1+a^2)): 0.2828 for a=0, 0.1155 for a=sqrt5)\n\n");
    dlf_tape_destroy(&t);
    dlf_tensor_free(w);
    dlf_tensor_free(b);
}

/* Experiment 2: the course's 4-conv stack, forward and backward through an MSE loss. */
static void four_layers(dlf_tensor *x, dlf_tensor *target, dlf_rng *r)
{
    static const int chans[5] = {1, 8, 16, 32, 1}, ks[4] = {5, 3, 3, 3};
    dlf_tensor *w[4], *b[4];
    dlf_tape t;
    int l, scheme;
    for (l = 0; l < 4; l++) {
        int s[4];
        s[0] = chans[l + 1]; s[1] = chans[l]; s[2] = ks[l]; s[3] = ks[l];
        w[l] = dlf_param_new(4, s);
        b[l] = dlf_param_new(1, &s[0]);
    }
    dlf_tape_init(&t);
    printf("2. four convs, stride 2, pad ks//2, ReLU between, global average pool: std of each output\n");
    printf("   %-26s %9s %9s %9s %9s %11s %14s\n", "init", "conv1", "conv2", "conv3", "conv4", "pooled", "grad std w1");
    for (scheme = 0; scheme < 2; scheme++) {
        dlf_tensor *h = x, *loss;
        double m, s, gs = 0.0;
        int i;
        dlf_tape_reset(&t);
        printf("   %-26s", init_name[scheme]);
        for (l = 0; l < 4; l++) {
            init_layer(w[l], b[l], scheme, r);
            dlf_zero_grad(w[l]);
            dlf_zero_grad(b[l]);
        }
        for (l = 0; l < 4; l++) {
            h = dlf_conv2d(&t, h, w[l], b[l], 2, ks[l] / 2);
            stats(h, &m, &s);
            printf(" %9.4f", s);
            if (l < 3) h = dlf_relu(&t, h);
        }
        h = dlf_global_avgpool(&t, h);                    /* (100, 1) */
        stats(h, &m, &s);
        printf(" %11.4f", s);
        loss = dlf_mse_loss(&t, h, target);
        dlf_backward(&t, loss);
        {
            double gm = 0.0, gss = 0.0;
            for (i = 0; i < w[0]->size; i++) gm += w[0]->grad[i];
            gm /= w[0]->size;
            for (i = 0; i < w[0]->size; i++) gss += (w[0]->grad[i] - gm) * (w[0]->grad[i] - gm);
            gs = sqrt(gss / (w[0]->size - 1));
        }
        printf(" %14.3g\n", gs);
    }
    printf("   (the default init loses signal at every layer; Kaiming keeps it)\n");
    dlf_tape_destroy(&t);
    for (l = 0; l < 4; l++) {
        dlf_tensor_free(w[l]);
        dlf_tensor_free(b[l]);
    }
}

int main(void)
{
    dlf_rng r;
    dlf_tensor *x = dlf_tensor_new4(100, 1, 28, 28), *target = dlf_tensor_new2(100, 1);
    double m, s;
    int i;
    dlf_rng_seed(&r, 5);
    dlf_fill_normal(x, &r, 0.0f, 1.0f);
    stats(x, &m, &s);
    for (i = 0; i < x->size; i++) x->data[i] = (float)((x->data[i] - m) / s);  /* exactly normalized */
    for (i = 0; i < 100; i++) target->data[i] = (float)(i % 10);               /* digit-like targets */
    printf("input x (100, 1, 28, 28): mean %.3f std %.3f\n\n", 0.0, 1.0);
    one_layer(x, &r);
    four_layers(x, target, &r);
    dlf_tensor_free(x);
    dlf_tensor_free(target);
    return 0;
}
