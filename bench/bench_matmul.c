/* bench_matmul.c - one side of the matmul benchmark: dlf's gemm or OpenBLAS's sgemm on
   the same shapes, one process per side, so bench/bench.py can alternate them round by
   round and give each its own environment (the reference's OPENBLAS_* settings never
   reach dlf).

   usage: bench_matmul dlf|ref --threads T [--sizes 64,128,...] [--flags nn,nt,tn,tt]
                       [--square] [--mnist] [--min-time S]
          bench_matmul info          the header lines (kernels, measured FMA peak)

   --square  C (N,N) = op(A) op(B) for every N in --sizes and every transpose flag
   --mnist   the products the course's MNIST models run at batch 64 (see mnist_shapes)
   Each case prints one line
       case=<name> value=<GFLOP/s> unit=GFLOP/s kernel=<kernel> check=<sum |C|>
   where value is the best of the timed samples (at least 3, and at least --min-time
   seconds of them, after one warm-up call; a sample repeats a small product until it
   takes about 2 ms, so the clock's microseconds do not matter). check lets the driver see that both sides
   computed the same product (same inputs on both sides, same seed).

   Built by `make bench` with -DBENCH_BLAS and -lopenblas when OpenBLAS is installed;
   without it only the dlf side exists. A benchmark, not a test. */
#define _POSIX_C_SOURCE 200809L   /* unsetenv, execv */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#ifdef BENCH_BLAS
#include <cblas.h>
void openblas_set_num_threads(int n);  /* OpenBLAS extensions, declared here for old headers */
char *openblas_get_corename(void);
char *openblas_get_config(void);
#endif
#define DLF_IMPLEMENTATION
#include "../dlf.h"

typedef struct shape {
    const char *name;  /* the product, for the case name */
    int ta, tb, M, N, K;
} shape;

/* The gemm products one training step of the MNIST models runs (batch 64), written
   the way dlf's ops call dlf_gemm; C (M,N) = op(A) op(B), op(A) (M,K), op(B) (K,N).
   MLP 784-50-10, Linear(x) = x @ W^T with W (out, in):
     forward  Y (64,50)   = X (64,784) @ W1^T        nt
     dX       (64,784)    = dY (64,50) @ W1          nn
     dW1      (50,784)    = dY^T (50,64) @ X         tn
   and the same three for the second layer (50 -> 10).
   CNN (conv 1->8 5x5, 8->16, 16->32, 32->32 3x3, all stride 2; 28 -> 14 -> 7 -> 4 -> 2),
   as im2col products with CRS = C*R*S, NPQ = 64*P*Q:
     forward  Y (K,NPQ)   = W (K,CRS) @ col (CRS,NPQ)      nn
     dW       (K,CRS)     = dY (K,NPQ) @ col^T              nt
     dcol     (CRS,NPQ)   = W^T (CRS,K) @ dY (K,NPQ)        tn   (not for conv1: x needs no gradient)
   conv1: K 8,  CRS 25,  NPQ 12544    conv2: K 16, CRS 72,  NPQ 3136
   conv3: K 32, CRS 144, NPQ 1024     conv4: K 32, CRS 288, NPQ 256
   dlf may split or orient a product differently (the weight gradient as col @ dY^T, the
   input gradient in groups of images); these are the products as the math states them. */
static const shape mnist_shapes[] = {
    {"mlp-fc1-fwd", 0, 1, 64, 50, 784},
    {"mlp-fc1-dx", 0, 0, 64, 784, 50},
    {"mlp-fc1-dw", 1, 0, 50, 784, 64},
    {"mlp-fc2-fwd", 0, 1, 64, 10, 50},
    {"mlp-fc2-dx", 0, 0, 64, 50, 10},
    {"mlp-fc2-dw", 1, 0, 10, 50, 64},
    {"cnn-conv1-fwd", 0, 0, 8, 12544, 25},
    {"cnn-conv1-dw", 0, 1, 8, 25, 12544},
    {"cnn-conv2-fwd", 0, 0, 16, 3136, 72},
    {"cnn-conv2-dw", 0, 1, 16, 72, 3136},
    {"cnn-conv2-dcol", 1, 0, 72, 3136, 16},
    {"cnn-conv3-fwd", 0, 0, 32, 1024, 144},
    {"cnn-conv3-dw", 0, 1, 32, 144, 1024},
    {"cnn-conv3-dcol", 1, 0, 144, 1024, 32},
    {"cnn-conv4-fwd", 0, 0, 32, 256, 288},
    {"cnn-conv4-dw", 0, 1, 32, 288, 256},
    {"cnn-conv4-dcol", 1, 0, 288, 256, 32},
};

static int use_ref;          /* 0: dlf, 1: OpenBLAS */
static int threads = 1;
static double min_time = 0.2;

static void run_gemm(const shape *s, const float *a, const float *b, float *c, float *work)
{
#ifdef BENCH_BLAS
    if (use_ref) {
        int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                    s->M, s->N, s->K, 1.0f, a, lda, b, ldb, 0.0f, c, s->N);
        return;
    }
#endif
    dlf_gemm(s->ta, s->tb, s->M, s->N, s->K, a, b, c, 0, work);
}

/* Time one shape and print its line. Inputs are uniform in [-0.5, 0.5) from seed 1,
   the same on both sides. */
static void bench_shape(const shape *s, const char *case_name)
{
    size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N, i;
    float *a = (float *)malloc(na * sizeof(float)), *b = (float *)malloc(nb * sizeof(float));
    float *c = (float *)malloc(nc * sizeof(float));
    float *work = use_ref ? NULL : (float *)malloc(dlf_gemm_fast_scratch(s->M, s->N, s->K) * sizeof(float));
    double best = 1e30, spent = 0.0, flops = 2.0 * s->M * s->N * s->K, check = 0.0;
    int reps = 0, inner;
    dlf_rng rng;
    if (!a || !b || !c || (!use_ref && !work)) { fprintf(stderr, "bench_matmul: out of memory\n"); exit(1); }
    dlf_rng_seed(&rng, 1);
    for (i = 0; i < na; i++) a[i] = dlf_rng_uniform(&rng) - 0.5f;
    for (i = 0; i < nb; i++) b[i] = dlf_rng_uniform(&rng) - 0.5f;
    run_gemm(s, a, b, c, work);                       /* warm-up: pages, thread pools, caches */
    {   /* calls per sample: enough for about 2 ms, so the microsecond clock can time small products */
        double t0 = dlf_seconds();
        run_gemm(s, a, b, c, work);
        inner = (int)(2e-3 / (dlf_seconds() - t0 + 1e-7)) + 1;
        if (inner > 100000) inner = 100000;
    }
    while (reps < 3 || spent < min_time) {
        double t0 = dlf_seconds(), dt;
        int k;
        for (k = 0; k < inner; k++) run_gemm(s, a, b, c, work);
        dt = (dlf_seconds() - t0) / inner;
        spent += dt * inner;
        if (dt < best) best = dt;
        reps++;
    }
    for (i = 0; i < nc; i++) check += fabs((double)c[i]);
#ifdef BENCH_BLAS
    printf("case=%s value=%.2f unit=GFLOP/s kernel=%s check=%.6e\n", case_name, flops / best * 1e-9,
           use_ref ? openblas_get_corename() : dlf_kernel_name(), check);
#else
    printf("case=%s value=%.2f unit=GFLOP/s kernel=%s check=%.6e\n", case_name, flops / best * 1e-9,
           dlf_kernel_name(), check);
#endif
    fflush(stdout);
    free(a); free(b); free(c); free(work);
}

static void info(void)
{
    static const char *kernels[] = {"portable", "avx2-fma", "avx512"};
    int k;
    printf("info dlf_kernel=%s\n", dlf_kernel_name());
    printf("info dlf_threads=%d\n", dlf_get_threads());
    for (k = 0; k < 3; k++)
        if (dlf_kernel_available(kernels[k]))
            printf("info dlf_peak_gflops_%s=%.1f\n", kernels[k], dlf_peak_gflops(kernels[k], 0.2));
#ifdef BENCH_BLAS
    printf("info openblas_core=%s\n", openblas_get_corename());
    printf("info openblas_config=%s\n", openblas_get_config());
#else
    printf("info openblas_core=n/a\n");
#endif
}

/* OpenBLAS reads OPENBLAS_CORETYPE (which can hold it to AVX2 kernels on an AVX-512 CPU)
   and OPENBLAS_L2_SIZE when the library loads, before main. The reference side must run
   unrestricted however this program is started, so if either is set it removes them and
   starts itself again. */
static void drop_openblas_limits(char **argv)
{
#ifdef BENCH_BLAS
    if (!getenv("OPENBLAS_CORETYPE") && !getenv("OPENBLAS_L2_SIZE")) return;
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("OPENBLAS_L2_SIZE");
    execv("/proc/self/exe", argv);
    execvp(argv[0], argv);
    fprintf(stderr, "bench_matmul: could not restart without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE\n");
    exit(3);
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    int sizes[16] = {64, 128, 256, 512, 1024, 2048}, n_sizes = 6;
    const char *flags = "nn,nt,tn,tt";
    int square = 0, mnist = 0, i;
    if (argc < 2) goto usage;
    if (strcmp(argv[1], "info") == 0 || strcmp(argv[1], "ref") == 0) drop_openblas_limits(argv);
    if (strcmp(argv[1], "info") == 0) { info(); return 0; }
    if (strcmp(argv[1], "dlf") == 0) use_ref = 0;
    else if (strcmp(argv[1], "ref") == 0) use_ref = 1;
    else goto usage;
#ifndef BENCH_BLAS
    if (use_ref) { fprintf(stderr, "bench_matmul: built without OpenBLAS (apt-get install libopenblas-dev)\n"); return 3; }
#endif
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--square") == 0) { square = 1; continue; }
        if (strcmp(a, "--mnist") == 0) { mnist = 1; continue; }
        if (!v) goto usage;
        i++;
        if (strcmp(a, "--threads") == 0) threads = atoi(v);
        else if (strcmp(a, "--min-time") == 0) min_time = atof(v);
        else if (strcmp(a, "--flags") == 0) flags = v;
        else if (strcmp(a, "--sizes") == 0) {
            const char *p = v;
            n_sizes = 0;
            while (*p) {
                char *end;
                long n = strtol(p, &end, 10);
                if (end == p || n < 1 || n > 16384 || n_sizes == 16 || (*end && *end != ',')) goto usage;
                sizes[n_sizes++] = (int)n;
                p = *end ? end + 1 : end;
            }
        } else goto usage;
    }
    if (threads < 1 || (!square && !mnist)) goto usage;
#ifdef BENCH_BLAS
    if (use_ref) openblas_set_num_threads(threads);
#endif
    if (!use_ref) dlf_set_threads(threads);
    if (square) {
        int si;
        for (si = 0; si < n_sizes; si++) {
            const char *f = flags;
            while (*f) {
                shape s;
                char name[64];
                if (*f == ',') { f++; continue; }
                if ((f[0] != 'n' && f[0] != 't') || (f[1] != 'n' && f[1] != 't')) goto usage;
                s.name = "sgemm";
                s.ta = f[0] == 't';
                s.tb = f[1] == 't';
                s.M = s.N = s.K = sizes[si];
                snprintf(name, sizeof name, "sgemm-%d-%c%c-t%d", sizes[si], f[0], f[1], threads);
                bench_shape(&s, name);
                f += 2;
            }
        }
    }
    if (mnist) {
        for (i = 0; i < (int)(sizeof mnist_shapes / sizeof mnist_shapes[0]); i++) {
            const shape *s = &mnist_shapes[i];
            char name[96];
            snprintf(name, sizeof name, "gemm-%s-%dx%dx%d-%c%c-t%d", s->name, s->M, s->N, s->K,
                     s->ta ? 't' : 'n', s->tb ? 't' : 'n', threads);
            bench_shape(s, name);
        }
    }
    return 0;
usage:
    fprintf(stderr, "usage: bench_matmul dlf|ref --threads T [--square [--sizes 64,128] [--flags nn,nt]] "
                    "[--mnist] [--min-time S]\n       bench_matmul info\n");
    return 2;
}
