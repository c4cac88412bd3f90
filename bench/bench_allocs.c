/* bench_allocs.c - heap allocations per training step after the first, for the three
   MNIST models of examples/ (mlp, cnn, cnnbn), counted through dlf's allocation hooks.

   usage: bench_allocs [--steps N] [--data DIR] [--threads T]

   DLF_MALLOC, DLF_REALLOC and DLF_FREE route every heap allocation dlf makes through
   the counters below (as tests/harness.h does). Each model trains for N steps (default
   20) on the real MNIST loader with the loop dlf_fit runs: next batch, tape reset,
   forward, loss, backward, optimizer step, zero the gradients. The first step sizes the
   tape's arena and the optimizer's state; every later step should find its memory
   there. Prints, per model,
       case=allocs-<model> value=<allocations per step after the first> unit=allocs/step
       case=allocs-first-step-<model> value=<allocations of the first step> unit=allocs
   Allocations OpenMP or the C library make on their own are not counted: only dlf's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long bench_allocs, bench_frees;
static void *bench_malloc(size_t n) { bench_allocs++; return malloc(n); }
static void *bench_realloc(void *p, size_t n) { bench_allocs++; return realloc(p, n); }
static void bench_free(void *p) { if (p) bench_frees++; free(p); }
#define DLF_MALLOC(n) bench_malloc(n)
#define DLF_REALLOC(p, n) bench_realloc(p, n)
#define DLF_FREE(p) bench_free(p)
#define DLF_IMPLEMENTATION
#include "../dlf.h"

/* The models of examples/mnist_mlp.c and examples/mnist_cnn.c (with and without --bn);
   the weights' values do not change what is allocated, so the layers' own init stays. */
static int build(dlf_seq *s, const char *model, dlf_rng *rng)
{
    static const int plain[] = {8, 16, 32, 32}, bn[] = {16, 32, 64, 64, 64};
    int ok = 1, i;
    dlf_seq_init(s);
    if (strcmp(model, "mlp") == 0) {
        ok = dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_FLATTEN)) == DLF_OK &&
             dlf_seq_add(s, dlf_layer_linear(784, 50, 1, rng)) == DLF_OK &&
             dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU)) == DLF_OK &&
             dlf_seq_add(s, dlf_layer_linear(50, 10, 1, rng)) == DLF_OK;
    } else {
        int with_bn = strcmp(model, "cnnbn") == 0, n = with_bn ? 5 : 4;
        const int *nfs = with_bn ? bn : plain;
        for (i = 0; i < n && ok; i++) {
            int c_in = i == 0 ? 1 : nfs[i - 1], ks = i == 0 ? 5 : 3;
            ok = dlf_seq_add(s, dlf_layer_conv2d(c_in, nfs[i], ks, 2, ks / 2, !with_bn, rng)) == DLF_OK;
            if (ok && with_bn) ok = dlf_seq_add(s, dlf_layer_batchnorm(nfs[i])) == DLF_OK;
            if (ok) ok = dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU)) == DLF_OK;
        }
        if (ok) ok = dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL)) == DLF_OK;
        if (ok) ok = dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_FLATTEN)) == DLF_OK;
        if (ok) ok = dlf_seq_add(s, dlf_layer_linear(nfs[n - 1], 10, 1, rng)) == DLF_OK;
    }
    return ok;
}

/* Train `model` for `steps` steps; 0 on failure. */
static int count(const char *model, const dlf_mnist *data, int steps)
{
    dlf_seq seq;
    dlf_params params;
    dlf_optim_cfg g[2];
    dlf_optim *opt = NULL;
    dlf_loader *train = NULL, *valid = NULL, *test = NULL;
    dlf_tape t;
    dlf_rng rng;
    long after_first = 0, before = 0;
    int step, ok = 0, adamw = strcmp(model, "cnnbn") == 0;
    dlf_rng_seed(&rng, 1);
    dlf_params_init(&params);
    dlf_tape_init(&t);
    memset(g, 0, sizeof g);
    if (!build(&seq, model, &rng) || dlf_seq_collect(&seq, &params) != DLF_OK) goto done;
    if (adamw) {                     /* as mnist_cnn --bn: AdamW, no decay on biases and BatchNorm */
        g[0].lr = 0.01f;
        g[0].weight_decay = 0.1f;
        g[1] = g[0];
        g[1].weight_decay = 0.0f;
        dlf_params_group_no_decay(&params, 1);
        opt = dlf_optim_create_groups(DLF_OPTIM_ADAMW, &params, g, 2);
    } else {                         /* SGD with momentum 0.9 */
        g[0].lr = strcmp(model, "mlp") == 0 ? 0.03f : 0.08f;
        g[0].momentum = 0.9f;
        opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &params, g, 1);
    }
    if (!opt || dlf_mnist_loaders(data, 64, 500, 1, &train, &valid, &test) != DLF_OK) goto done;
    if (steps > train->n_batches) steps = train->n_batches;
    dlf_tape_set_training(&t, 1);
    before = bench_allocs;
    for (step = 0; step < steps; step++) {
        dlf_tensor *logits, *loss;
        if (dlf_loader_next(train) <= 0) break;
        dlf_tape_reset(&t);
        opt->groups[0].lr = g[0].lr * (float)(steps - step) / (float)steps;  /* a schedule moves lr */
        logits = dlf_seq_forward(&t, &seq, train->x);
        loss = logits ? dlf_cross_entropy(&t, logits, train->y) : NULL;
        if (!loss) goto done;
        dlf_backward(&t, loss);
        dlf_optim_step(opt);
        dlf_optim_zero_grad(opt);
        if (step == 0) after_first = bench_allocs;
    }
    if (step < 2) goto done;
    printf("case=allocs-%s value=%.2f unit=allocs/step kernel=%s\n", model,
           (double)(bench_allocs - after_first) / (step - 1), dlf_kernel_name());
    printf("case=allocs-first-step-%s value=%ld unit=allocs kernel=%s\n", model, after_first - before,
           dlf_kernel_name());
    fflush(stdout);
    ok = 1;
done:
    if (!ok) fprintf(stderr, "bench_allocs: %s: %s\n", model, dlf_last_error());
    dlf_tape_destroy(&t);
    dlf_optim_free(opt);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_loader_free(test);
    dlf_params_free(&params);
    dlf_seq_free(&seq);
    return ok;
}

int main(int argc, char **argv)
{
    const char *dir = "data/mnist";
    int steps = 20, threads = 0, i, ok = 1;
    dlf_mnist data;
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--steps") == 0) steps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--data") == 0) dir = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else break;
    }
    if (i != argc || steps < 2) {
        fprintf(stderr, "usage: bench_allocs [--steps N (>= 2)] [--data DIR] [--threads T]\n");
        return 2;
    }
    if (threads > 0) dlf_set_threads(threads);
    if (dlf_mnist_load(&data, dir, NULL) != DLF_OK) {
        fprintf(stderr, "bench_allocs: %s (make data)\n", dlf_last_error());
        return 1;
    }
    ok = count("mlp", &data, steps) && ok;
    ok = count("cnn", &data, steps) && ok;
    ok = count("cnnbn", &data, steps) && ok;
    dlf_mnist_free(&data);
    return ok ? 0 : 1;
}
