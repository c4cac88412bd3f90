/* bench_matmul.c - dlf's fast matmul against OpenBLAS sgemm, same sizes, same run.

   Build and run:  make bench     (needs libopenblas-dev; `make bench` says so if missing)
   Prints GFLOP/s for both and the ratio dlf/OpenBLAS, on 1 thread and on all threads.
   A benchmark, not a test: the machine is shared, so read the ratios, not the seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

void openblas_set_num_threads(int n);  /* OpenBLAS extensions, declared here for old headers */
char *openblas_get_corename(void);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* best of `reps` runs, in seconds */
static double time_dlf(int n, const float *a, const float *b, float *c, float *work, int reps)
{
    double best = 1e30;
    int r;
    for (r = 0; r < reps; r++) {
        double t0 = now();
        dlf_gemm_fast(0, 0, n, n, n, a, b, c, 0, work);
        t0 = now() - t0;
        if (t0 < best) best = t0;
    }
    return best;
}

static double time_blas(int n, const float *a, const float *b, float *c, int reps)
{
    double best = 1e30;
    int r;
    for (r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t0 = now() - t0;
        if (t0 < best) best = t0;
    }
    return best;
}

int main(int argc, char **argv)
{
    int sizes[] = {128, 256, 512, 1024, 2048};
    int threads[] = {1, 2};
    int si, ti, max_n = argc > 1 ? atoi(argv[1]) : 2048;
    dlf_rng rng;
    dlf_rng_seed(&rng, 1);
    printf("dlf kernel %s; OpenBLAS kernel %s (OPENBLAS_CORETYPE %s)\n", dlf_kernel_name(),
           openblas_get_corename(), getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
    printf("%-6s %-7s %12s %12s %8s\n", "N", "threads", "dlf GFLOP/s", "BLAS GFLOP/s", "ratio");
    for (ti = 0; ti < 2; ti++) {
        for (si = 0; si < 5; si++) {
            int n = sizes[si], i, reps;
            float *a, *b, *c1, *c2, *work;
            double td, tb, flops = 2.0 * n * n * n, maxdiff = 0.0;
            if (n > max_n) continue;
            reps = n <= 256 ? 50 : n <= 1024 ? 8 : 3;
            dlf_set_threads(threads[ti]);
            openblas_set_num_threads(threads[ti]);
            a = (float *)malloc(sizeof(float) * n * n);
            b = (float *)malloc(sizeof(float) * n * n);
            c1 = (float *)malloc(sizeof(float) * n * n);
            c2 = (float *)malloc(sizeof(float) * n * n);
            work = (float *)malloc(sizeof(float) * dlf_gemm_fast_scratch(n, n, n));
            for (i = 0; i < n * n; i++) { a[i] = dlf_rng_uniform(&rng) - 0.5f; b[i] = dlf_rng_uniform(&rng) - 0.5f; }
            td = time_dlf(n, a, b, c1, work, reps);
            tb = time_blas(n, a, b, c2, reps);
            for (i = 0; i < n * n; i++) {
                double d = c1[i] - c2[i];
                if (d < 0) d = -d;
                if (d > maxdiff) maxdiff = d;
            }
            printf("%-6d %-7d %12.1f %12.1f %8.2f   (max |diff| %.2g)\n", n, threads[ti],
                   flops / td * 1e-9, flops / tb * 1e-9, tb / td, maxdiff);
            free(a); free(b); free(c1); free(c2); free(work);
        }
    }
    return 0;
}
