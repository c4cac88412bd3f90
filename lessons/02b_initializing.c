/* 02b_initializing.c - why the scale of the first weights decides whether a deep
   network can learn at all (the course's notebook 02b_initializing).

   What it shows
     1. Push a vector through 100 layers of 512x512 random matrices with std 1: the
        activations' std grows by sqrt(512) ~ 22.6 per layer and overflows to inf
        (then NaN) within ~30 layers. With std 0.01 it shrinks by 0.23 per layer and
        reaches 0.
     2. Scale the matrices by 1/sqrt(512) (Var(w) = 1/fan_in, Glorot & Bengio 2010):
        the std stays near 1 through all 100 layers.
     3. Add a ReLU after each layer: it zeroes half of the signal, so 1/sqrt(n) now
        shrinks the signal by sqrt(2) per layer; the gain sqrt(2/n) of He et al. (2015)
        keeps it at scale.

   In a debugger (make debug; gdb build/debug/lessons/02b_initializing)
     break run_chain        then `display std` inside the loop; watch it explode
     break layer_std        to see how one layer's output statistics are computed
   Variables to watch: scale (the std of each matrix), std (the activations' std
   after layer i), x->data[0..3].

   Prints: the std every 10 layers for each experiment, then a summary. */
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include <stdio.h>
#include <math.h>

enum { N_DIM = 512, DEPTH = 100 };

/* Standard deviation of a tensor (population; in double). */
static double layer_std(const dlf_tensor *x)
{
    double s = 0.0, ss = 0.0;
    int i;
    for (i = 0; i < x->size; i++) s += x->data[i];
    for (i = 0; i < x->size; i++) ss += (x->data[i] - s / x->size) * (x->data[i] - s / x->size);
    return sqrt(ss / x->size);
}

/* x <- relu?(A x) DEPTH times, a fresh A ~ N(0, scale^2) (N_DIM, N_DIM) each layer.
   Returns the final std; prints the std every 10 layers. */
static double run_chain(const char *label, float scale, int use_relu, dlf_rng *r)
{
    dlf_tape t;
    dlf_tensor *a = dlf_tensor_new2(N_DIM, N_DIM);   /* (out, in) */
    dlf_tensor *x = dlf_tensor_new2(N_DIM, 1);       /* a column, (in, 1) */
    dlf_tensor *h = x;
    double std = 0.0;
    int i;
    dlf_tape_init(&t);
    dlf_tape_set_grad(&t, 0);                        /* forward only: record nothing */
    dlf_fill_normal(x, r, 0.0f, 1.0f);
    printf("%-34s", label);
    for (i = 1; i <= DEPTH; i++) {
        dlf_fill_normal(a, r, 0.0f, scale);
        h = dlf_matmul(&t, a, h);                     /* (512,512) @ (512,1) */
        if (use_relu) h = dlf_relu(&t, h);
        std = layer_std(h);
        if (i % 10 == 0) printf(" %9.3g", std);
    }
    printf("\n");
    dlf_tape_destroy(&t);
    dlf_tensor_free(a);
    dlf_tensor_free(x);
    return std;
}

int main(void)
{
    dlf_rng r;
    double n = N_DIM, s_big, s_small, s_scaled, s_relu_plain, s_relu_he;
    double mean = 0.0, sqr = 0.0, sqr_relu = 0.0;
    int i, j, k;
    dlf_rng_seed(&r, 2);
    printf("std of the activations after layer      10        20        30        40"
           "        50        60        70        80        90       100\n");
    s_big = run_chain("std 1 (torch.randn)", 1.0f, 0, &r);
    s_small = run_chain("std 0.01", 0.01f, 0, &r);
    s_scaled = run_chain("std 1/sqrt(512)", (float)(1.0 / sqrt(n)), 0, &r);
    s_relu_plain = run_chain("relu, std 1/sqrt(512)", (float)(1.0 / sqrt(n)), 1, &r);
    s_relu_he = run_chain("relu, std sqrt(2/512) (Kaiming)", (float)sqrt(2.0 / n), 1, &r);

    /* Why sqrt(n): one output y = sum_k a_k x_k of n products of independent unit
       normals has mean 0 and E[y^2] = n. After a relu only half survives: n/2. */
    {
        dlf_tensor *a = dlf_tensor_new2(N_DIM, N_DIM), *x = dlf_tensor_new1(N_DIM);
        for (i = 0; i < 100; i++) {
            double m = 0.0, q = 0.0, qr = 0.0;
            dlf_fill_normal(a, &r, 0.0f, 1.0f);
            dlf_fill_normal(x, &r, 0.0f, 1.0f);
            for (j = 0; j < N_DIM; j++) {
                double y = 0.0;
                for (k = 0; k < N_DIM; k++) y += (double)a->data[j * N_DIM + k] * x->data[k];
                m += y;
                q += y * y;
                qr += y > 0 ? y * y : 0.0;
            }
            mean += m / N_DIM / 100.0;
            sqr += q / N_DIM / 100.0;
            sqr_relu += qr / N_DIM / 100.0;
        }
        dlf_tensor_free(a);
        dlf_tensor_free(x);
    }
    printf("\none layer, unit normals, n = 512, averaged over 100 draws:\n");
    printf("  mean of y = %.3f   E[y^2] = %.1f (theory n = 512)   after relu E[y^2] = %.1f (theory n/2 = 256)\n",
           mean, sqr, sqr_relu);
    printf("\nsummary (std after 100 layers): std 1 -> %g, std 0.01 -> %g, 1/sqrt(n) -> %.3f,\n"
           "  relu with 1/sqrt(n) -> %.3g, relu with sqrt(2/n) -> %.3f\n",
           s_big, s_small, s_scaled, s_relu_plain, s_relu_he);
    return 0;
}
