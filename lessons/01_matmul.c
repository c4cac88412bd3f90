/* 01_matmul.c - the matmul ladder, from three loops to a packed SIMD micro-kernel
   (the second half of the course's notebook 01_matmul, "Deep Learning from the
   Foundations", fast.ai; the docs page is docs/matmul.md).

   What it shows
     Four ways to compute C = A B, each a rung of dlf.h's stage 4:
       naive    dlf_gemm_naive    i-j-k: a dot product per element, strided column reads
       ikj      dlf_gemm_ikj      i-k-j: rows of B and C stream, the compiler vectorizes
       blocked  dlf_gemm_blocked  i-k-j on cache-sized tiles
       fast     dlf_gemm_fast     packed panels + a 6x32 register tile (AVX-512, AVX2 or
                                  portable C, chosen for this CPU at run time), threads
     on the course's shape, a batch of 5 MNIST images times a 784x10 weight matrix,
     and on a square 1024x1024 product. For each rung it prints the best time of a
     few runs, GFLOP/s, the speedup over naive, the fraction of this CPU's fp32 peak
     and the max |difference| from the naive result. Then the fast rung on one thread
     and on all threads, and a check that both give the same bits.

   Usage:  ./build/lessons/01_matmul [--quick] [--peak GFLOPS]
     --quick        512x512 instead of 1024x1024 (what `make demo` runs; a few seconds)
     --peak G       fp32 peak of ONE core in GFLOP/s (also: env DLF_PEAK_GFLOPS)
   By default the peak is measured, not assumed: dlf_peak_gflops runs independent FMA
   chains with the widest instructions this CPU has, which reach FMA units x float lanes
   x 2 flops x clock (a Zen 4 core: 2 x 8 x 2 x 3.6 GHz = 115 GFLOP/s, with AVX2 or
   AVX-512 alike, since Zen 4 splits a 512-bit FMA in two). All-thread results are
   compared with threads x that peak.

   In a debugger:   make debug && gdb --args build/debug/lessons/01_matmul --quick
     break dlf_gemm_naive       step the i-j-k loop; `p sum` grows one product at a time
     break dlf__pack_b          see a KC x 32 panel of B copied into `dst` in k order
     break dlf__kernel_ref      the micro-kernel's math in plain C (run with DLF_KERNEL=portable
                                to make it the one that runs); `p ab[0]@32`
     break dlf__tile            `p mr`, `p nr`: edge tiles are smaller than 6 x 32
   Variables to watch in run_rung: `seconds`, `gflops`, `max_diff`.
   (The -O0 debug build is 10-50x slower; timings there mean nothing.) */
#define _POSIX_C_SOURCE 199309L  /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"


typedef enum { RUNG_NAIVE, RUNG_IKJ, RUNG_BLOCKED, RUNG_FAST } rung_kind;

static const char *rung_names[] = {"naive i-j-k", "i-k-j", "blocked", "fast (packed)"};

/* One matrix product to time: C (M,N) = A (M,K) B (K,N), and its naive result. */
typedef struct problem {
    const char *title;
    int M, N, K;
    float *A;          /* (M,K) */
    float *B;          /* (K,N) */
    float *C;          /* (M,N) output of the rung being timed */
    float *C_naive;    /* (M,N) the reference */
    float *work;       /* packing buffer for dlf_gemm_fast, sized for all threads */
    double naive_seconds;
} problem;

typedef struct options {
    int quick;
    double peak_per_core;  /* GFLOP/s */
    int peak_measured;     /* 1: dlf_peak_gflops measured it */
} options;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void run_once(rung_kind rung, problem *p)
{
    switch (rung) {
    case RUNG_NAIVE:   dlf_gemm_naive(0, 0, p->M, p->N, p->K, p->A, p->B, p->C, 0); break;
    case RUNG_IKJ:     dlf_gemm_ikj(0, 0, p->M, p->N, p->K, p->A, p->B, p->C, 0); break;
    case RUNG_BLOCKED: dlf_gemm_blocked(0, 0, p->M, p->N, p->K, p->A, p->B, p->C, 0); break;
    case RUNG_FAST:    dlf_gemm_fast(0, 0, p->M, p->N, p->K, p->A, p->B, p->C, 0, p->work); break;
    }
}

/* Best time of one call, in seconds. Short calls are repeated in batches of at
   least ~30 ms so the clock's resolution does not matter, and the best of 7
   batches is kept (the machine may be shared: the minimum is the least disturbed
   run). A call over a second (naive at 1024) runs once. */
static double time_rung(rung_kind rung, problem *p)
{
    double t0 = now_seconds();
    double first;
    double best;
    int reps;
    int batch;
    int r;
    run_once(rung, p);
    first = now_seconds() - t0;
    best = first;
    if (first > 1.0) return best;
    reps = first < 0.030 ? (int)(0.030 / (first + 1e-9)) + 1 : 1;
    for (batch = 0; batch < 7; batch++) {
        double per_call;
        t0 = now_seconds();
        for (r = 0; r < reps; r++) run_once(rung, p);
        per_call = (now_seconds() - t0) / reps;
        if (per_call < best) best = per_call;
    }
    return best;
}

static float max_abs_diff(const float *a, const float *b, int n)
{
    float m = 0.0f;
    int i;
    for (i = 0; i < n; i++) {
        float d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
        if (d > m) m = d;
    }
    return m;
}

/* Time one rung on `threads` threads and print its row of the table. */
static void run_rung(rung_kind rung, problem *p, int threads, const options *opt)
{
    double flops = 2.0 * p->M * p->N * p->K;
    double seconds;
    double gflops;
    double speedup;
    double peak;
    float max_diff;
    dlf_set_threads(threads);
    seconds = time_rung(rung, p);
    if (rung == RUNG_NAIVE) {
        memcpy(p->C_naive, p->C, sizeof(float) * p->M * p->N);
        p->naive_seconds = seconds;
    }
    gflops = flops / seconds * 1e-9;
    speedup = p->naive_seconds / seconds;
    peak = opt->peak_per_core * threads;
    max_diff = max_abs_diff(p->C, p->C_naive, p->M * p->N);
    printf("  %-14s %3d  %11.3f  %9.2f  %8.1fx  %6.1f%%  %9.2g\n", rung_names[rung], threads,
           seconds * 1e3, gflops, speedup, 100.0 * gflops / peak, max_diff);
}

static void print_header(const problem *p)
{
    printf("\n%s: (%d x %d) @ (%d x %d), %.3g GFLOP per product\n", p->title, p->M, p->K,
           p->K, p->N, 2.0 * p->M * p->N * p->K * 1e-9);
    printf("  %-14s %3s  %11s  %9s  %9s  %7s  %9s\n", "rung", "thr", "best ms", "GFLOP/s",
           "speedup", "% peak", "max|diff|");
}

static void fill(float *x, int n, dlf_rng *rng, int normal)
{
    int i;
    for (i = 0; i < n; i++) x[i] = normal ? dlf_rng_normal(rng) : dlf_rng_uniform(rng);
}

static void problem_init(problem *p, const char *title, int M, int N, int K, dlf_rng *rng)
{
    p->title = title;
    p->M = M;
    p->N = N;
    p->K = K;
    p->A = (float *)malloc(sizeof(float) * M * K);
    p->B = (float *)malloc(sizeof(float) * K * N);
    p->C = (float *)malloc(sizeof(float) * M * N);
    p->C_naive = (float *)malloc(sizeof(float) * M * N);
    p->work = (float *)malloc(sizeof(float) * dlf_gemm_fast_scratch(M, N, K));
    p->naive_seconds = 0.0;
    fill(p->A, M * K, rng, 0);  /* like pixels in [0, 1) */
    fill(p->B, K * N, rng, 1);  /* like weights from randn */
}

static void problem_free(problem *p)
{
    free(p->work);
    free(p->C_naive);
    free(p->C);
    free(p->B);
    free(p->A);
}

/* All four rungs on one thread, then the fast one on every thread, and a check
   that the thread count does not change a single bit of the result. */
static void climb(problem *p, int all_threads, const options *opt)
{
    float *C_one_thread = (float *)malloc(sizeof(float) * p->M * p->N);
    int same_bits;
    print_header(p);
    run_rung(RUNG_NAIVE, p, 1, opt);
    run_rung(RUNG_IKJ, p, 1, opt);
    run_rung(RUNG_BLOCKED, p, 1, opt);
    run_rung(RUNG_FAST, p, 1, opt);
    memcpy(C_one_thread, p->C, sizeof(float) * p->M * p->N);
    if (all_threads == 1) {
        printf("  (one thread only: built without OpenMP, or OMP_NUM_THREADS=1)\n");
        free(C_one_thread);
        return;
    }
    run_rung(RUNG_FAST, p, all_threads, opt);
    same_bits = memcmp(C_one_thread, p->C, sizeof(float) * p->M * p->N) == 0;
    printf("  fast on 1 thread vs %d threads: %s\n", all_threads,
           same_bits ? "bit-identical" : "DIFFERENT (a bug: see docs/design.md, Determinism)");
    free(C_one_thread);
}

static void parse_options(int argc, char **argv, options *opt)
{
    const char *env = getenv("DLF_PEAK_GFLOPS");
    int i;
    opt->quick = 0;
    opt->peak_per_core = env ? atof(env) : 0.0;   /* 0: measure it */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            opt->quick = 1;
        else if (strcmp(argv[i], "--peak") == 0 && i + 1 < argc)
            opt->peak_per_core = atof(argv[++i]);
        else
            fprintf(stderr, "01_matmul: ignoring unknown argument %s\n", argv[i]);
    }
    opt->peak_measured = opt->peak_per_core <= 0.0;
    if (opt->peak_measured) opt->peak_per_core = dlf_peak_gflops(NULL, 0.4);
}

int main(int argc, char **argv)
{
    options opt;
    problem mnist;
    problem square;
    dlf_rng rng;
    int all_threads = dlf_get_threads();  /* before any dlf_set_threads */
    int n_square;
    double t_start = now_seconds();
    parse_options(argc, argv, &opt);
    n_square = opt.quick ? 512 : 1024;
    dlf_rng_seed(&rng, 42);
    printf("lesson 01: the matmul ladder (dlf %s)\n", dlf_version_string());
    printf("peak %s: %.1f GFLOP/s per core (%s; override with --peak G or\n"
           "  DLF_PEAK_GFLOPS); %d thread(s) available; micro-kernel: %s\n",
           opt.peak_measured ? "measured" : "given", opt.peak_per_core,
           opt.peak_measured ? "a loop of independent FMAs, dlf_peak_gflops" : "from the command line",
           all_threads, dlf_kernel_name());
    problem_init(&mnist, "course shape, 5 images x 784 pixels @ 784 x 10 weights", 5, 10, 784, &rng);
    climb(&mnist, all_threads, &opt);
    printf("  (below 2 MFLOP dlf_gemm_fast stays on one thread: starting threads costs more)\n");
    problem_init(&square, "square", n_square, n_square, n_square, &rng);
    climb(&square, all_threads, &opt);
    dlf_set_threads(all_threads);
    printf("\ntotal time %.1f s\n", now_seconds() - t_start);
    problem_free(&square);
    problem_free(&mnist);
    return 0;
}
