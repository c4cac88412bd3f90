/* dlf.h - v0.2 - deep learning from the foundations - MIT/public domain

   A single-header C library that builds deep learning from scratch, in the order a
   student learns it: tensors, matmul, autograd, ... Readable enough to be a course,
   fast enough to train small networks on a CPU.

   Do this:
       #define DLF_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation.
   Every other file includes it without the define. (dlf.c in the repository does
   exactly this, for people who prefer to build a normal library.)

       #include ...
       #include ...
       #define DLF_IMPLEMENTATION
       #include "dlf.h"

   Build with -O2 -march=native -fopenmp for speed; without -fopenmp it runs on one
   thread, without AVX2/FMA it uses the portable C micro-kernel. Link with -lm.

   TABLE OF CONTENTS (`grep '// >>' dlf.h` prints it; each stage has a declarations
   part near the top and an implementation part below, in the same order)
       stage0_config       config, versions, errors, allocation hooks
       stage1_random       random numbers with explicit state
       stage2_tensor       tensors: create, view, copy, print, compare
       stage3_elementwise  elementwise ops, broadcasting, reductions
       stage4_matmul       the matmul ladder: naive, i-k-j, blocked, packed micro-kernel
       stage5_autograd     the tape: arena, nodes, backward, gradient check
       stage6_layers       linear, conv2d (im2col; strides, dilation, groups), pooling
                           (any window, ceil mode, adaptive), activations, softmax,
                           embedding, Sequential
       stage7_init         uniform, normal, Xavier, Kaiming, PyTorch's default, LSUV
       stage8_losses       MSE, L1, NLL, cross-entropy, BCE (with logits), accuracy;
                           reductions, class weights, ignore_index
       stage9_norm         BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RunningBatchNorm
       stage10_dropout     inverted dropout, Dropout2d (train and eval mode)
       stage11_optim       one optimizer type: SGD, RMSProp, Adagrad, Adam, AdamW, LAMB;
                           parameter groups, weight decay two ways, gradient clipping
       stage12_schedules   schedule shapes, combined phases, one-cycle (lr and momentum),
                           SGDR, warm-up
       stage13_data        IDX files, datasets (tables, images), CSV, MNIST, seeded loaders
       stage14_learner     progress display, evaluate, the Learner and its callbacks
                           (recorder, scheduler, progress table, early stopping,
                           save-best, clipping, autosave), resumable runs, LR finder
       stage15_serialization  safetensors reader/writer, checkpoints
       stage16_pictures    SVG plots and images, activation telemetry (hooks)
       stage17_cuda        the optional GPU: declarations of dlf_cuda.cu (only with DLF_CUDA)

   COMPILE-TIME OPTIONS
       #define DLF_STATIC        all functions static (private copy in one translation unit);
                                 clean under -Wall -Wextra -Werror
       #define DLFDEF ...        the linkage of every public function, if you want your own
       #define DLF_NO_STDIO      no printing to stdout/stderr, no file functions
       #define DLF_MALLOC(sz)    \
       #define DLF_REALLOC(p,sz)  } define all three or none: route every heap allocation
       #define DLF_FREE(p)       /  (tests count allocations through these)
       #define DLF_ASSERT(x)     internal invariant check (default: assert.h)
       #define DLF_NO_SIMD       compile only the portable micro-kernel (by default gcc and clang
                                 on x86 also compile AVX2+FMA and AVX-512 ones and pick the
                                 widest the CPU runs; dlf_kernel_name() says which runs,
                                 dlf_set_kernel() or env DLF_KERNEL forces one)
       #define DLF_THREAD_LOCAL  the thread-local keyword for the error slot (default:
                                 thread_local, _Thread_local, __declspec(thread) or
                                 __thread, whichever the compiler has; none on tcc)
       #define DLF_ALLOW_FAST_MATH  build under -ffast-math anyway (refused otherwise:
                                 it breaks NaN detection, see below)

   THREAD SAFETY
       dlf keeps no global state of its own except two thread-local slots: the last
       error message (dlf_last_error) and the programmer-error handler
       (dlf_set_panic_handler). Tensors, tapes and RNG states are plain structs the
       caller owns; different threads may use different ones freely, but one tape or
       tensor must not be written by two threads at once. Internally, heavy loops run
       on OpenMP threads; every result is computed in a fixed order, so the numbers
       do not depend on the thread count.

   REVISION HISTORY
       0.2  (2026-11-27)  normalization (batch, layer, instance, group, running batch),
                          dropout, train/eval mode and an rng on the tape; one optimizer
                          type (SGD, RMSProp, Adagrad, Adam, AdamW, LAMB) with parameter
                          groups; parameter lists with buffers; checkpoints of any
                          optimizer. dlf_sgd is gone: see CHANGES.md.
       0.1  (2026-11-23)  tensors, broadcasting, reductions, matmul ladder, tape
                          autograd with arena, gradient check; layers, init, losses;
                          SGD, IDX data and loaders, the training loop; safetensors
                          and checkpoints with bit-exact resume.

   LICENSE: see the end of the file.
*/
#ifndef DLF_H
#define DLF_H

#include <stddef.h>
#include <stdint.h>

#define DLF_VERSION_MAJOR 0
#define DLF_VERSION_MINOR 2
#define DLF_VERSION_PATCH 0

/* DLFDEF: the linkage of every public function. A user may predefine it (stb's
   convention). With DLF_STATIC each function is static and marked unused, so a
   program that calls a few of them compiles clean under -Wall -Wextra -Werror
   (sokol marks its static functions the same way). */
#ifndef DLFDEF
#ifdef DLF_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define DLFDEF static __attribute__((unused))
#else
#define DLFDEF static
#endif
#else
#define DLFDEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

// >>stage0_config ---------------------------------------------------------------
// Errors come in two kinds (docs/design.md):
//  * fallible calls (files, parsing, allocation) return a dlf_result code or NULL
//    and leave a message in dlf_last_error();
//  * programmer errors (shape mismatch, bad axis) call the panic handler with a
//    message that names the op and the shapes. The default handler prints it and
//    calls abort(); tests install one that longjmps out. A NULL pointer argument is
//    one too: "<function>: <argument> is NULL".
// If a handler returns, the function returns NULL, DLF_ERR_ARG, or nothing (void),
// never a half-made result. An op that fails (out of memory, or a panic whose handler
// returned) marks its tape (dlf_tape_error); until dlf_tape_reset every op on that tape
// returns NULL without a new message, and dlf_backward returns the tape's error.

typedef enum dlf_result {
    DLF_OK = 0,
    DLF_ERR_NOMEM = -1,    /* an allocation failed */
    DLF_ERR_IO = -2,       /* a file could not be opened, read or written */
    DLF_ERR_FORMAT = -3,   /* a file's bytes are not what its format says */
    DLF_ERR_ARG = -4,      /* an argument is out of range */
    DLF_ERR_BUSY = -5,     /* stage 15: another save to the same path holds its lock (DLF_SAVE_NOWAIT) */
    DLF_ERR_DEVICE = -6    /* a GPU, its driver or a call on it failed (stage 17, DLF_CUDA) */
} dlf_result;

typedef struct dlf_tape dlf_tape;  /* stage 5: every op records onto a tape */

typedef void (*dlf_panic_fn)(const char *message, void *user);

DLFDEF const char  *dlf_version_string(void);               /* "0.2.0" */
DLFDEF const char  *dlf_last_error(void);                   /* "" when none */
DLFDEF void         dlf_clear_error(void);
DLFDEF int          dlf_set_error(int code, const char *message); /* sets dlf_last_error(), returns
                                                             code: for code outside the header
                                                             (dlf_cuda.cu, your own ops) */
DLFDEF void         dlf_set_panic_handler(dlf_panic_fn fn, void *user); /* NULL: default */
DLFDEF void         dlf_set_threads(int n);                 /* OpenMP threads; no-op without */
DLFDEF int          dlf_get_threads(void);

/* A busy machine: when another process wants a core, a team of threads waits at every
   barrier for its slowest member, and a training step can get many times slower than
   on one thread. The thread governor measures instead of guessing: a training loop
   passes it each step's time, and it runs short trials (DLF_GOV_TRIAL steps on `hi`
   threads, then on `lo` = hi/2), keeps the faster count for a period of DLF_GOV_PERIOD
   steps, and starts a new trial early when steps get 1.5x slower than the trial said.
   While `lo` keeps winning, the period doubles (up to 16x), and a trial on `hi` stops at
   its first step that takes over twice `lo`'s time: on a machine that stays busy, the
   trials cost little. Results do not depend on the thread count, so switching never
   changes the numbers. */
enum { DLF_GOV_TRIAL = 5, DLF_GOV_PERIOD = 200 };
typedef struct dlf_threadgov {
    int hi, lo;              /* the two counts tried (hi: dlf_get_threads() at init) */
    int cur;                 /* the count in use */
    int state;               /* 0 off (hi == lo), 1 trial on hi, 2 trial on lo, 3 running */
    int n;                   /* steps so far in this state */
    float t[DLF_GOV_TRIAL];  /* step times of the state (trial) or the last few (running) */
    float med_hi, med_lo;    /* trial medians, seconds per step */
    long steps;              /* steps seen */
    int trials;              /* trials run */
    int period;              /* steps between trials now */
} dlf_threadgov;
DLFDEF void dlf_threadgov_init(dlf_threadgov *g);                  /* hi = dlf_get_threads() */
DLFDEF int  dlf_threadgov_step(dlf_threadgov *g, double seconds);  /* after a step: sets and
                                                                      returns the next count */

// >>stage1_random ---------------------------------------------------------------
// All randomness flows from an explicit state (llm.c style): same seed, same numbers,
// on every machine. The generator is xoshiro128** (Blackman & Vigna, 2018), seeded
// through splitmix64; normals come from Box-Muller.

typedef struct dlf_rng {
    uint32_t s[4];        /* xoshiro128** state, never all zero */
    int has_spare;        /* Box-Muller makes normals in pairs: is `spare` valid? */
    float spare;          /* the second normal of the last pair */
} dlf_rng;

DLFDEF void     dlf_rng_seed(dlf_rng *r, uint64_t seed);
DLFDEF uint32_t dlf_rng_u32(dlf_rng *r);                    /* uniform on [0, 2^32) */
DLFDEF uint32_t dlf_rng_below(dlf_rng *r, uint32_t n);      /* uniform on [0, n), unbiased */
DLFDEF float    dlf_rng_uniform(dlf_rng *r);                /* uniform on [0, 1) */
DLFDEF float    dlf_rng_normal(dlf_rng *r);                 /* N(0, 1) */
DLFDEF void     dlf_rng_permutation(dlf_rng *r, int *out, int n); /* Fisher-Yates of 0..n-1 */
DLFDEF float    dlf_rng_gamma(dlf_rng *r, float alpha);     /* Gamma(alpha, 1), alpha > 0 (Marsaglia-Tsang) */
DLFDEF float    dlf_rng_beta(dlf_rng *r, float a, float b); /* Beta(a, b) = X / (X + Y), X ~ Gamma(a), Y ~ Gamma(b) */

// >>stage2_tensor ---------------------------------------------------------------
// A tensor is float32, 0 to 4 dims, contiguous row-major (NCHW for images).
// Dimension letters used in shape comments: N batch, C channels, H height, W width,
// K output channels, M/K/N for matrices (M rows, K inner, N columns).
//
// Where a tensor lives:
//  * heap tensors (dlf_tensor_new, dlf_param_new ...) belong to the caller, who frees
//    them with dlf_tensor_free;
//  * op outputs live in the arena of the tape that made them and disappear at the
//    next dlf_tape_reset (stage 5).

#define DLF_MAX_DIMS 4

typedef struct dlf_tensor {
    float *data;             /* (size) values, row-major */
    float *grad;             /* (size) gradient, or NULL when none is kept */
    int ndim;                /* 0 (a scalar) to DLF_MAX_DIMS */
    int shape[DLF_MAX_DIMS]; /* shape[0..ndim-1]; unused entries are 1 */
    int size;                /* product of the shape */
    int requires_grad;       /* does backward compute a gradient for it? */
    int flags;               /* DLF_TENSOR_* below: who owns what */
    const char *name;        /* optional label used by printing; may be NULL */
    unsigned version;        /* bumped by every in-place write of data (fill, copy, a loader's
                                next batch, an optimizer step): backward checks that what an op
                                saved was not overwritten since (PyTorch's version counter) */
} dlf_tensor;

#define DLF_TENSOR_HEAP   1  /* struct and data from DLF_MALLOC: dlf_tensor_free frees */
#define DLF_TENSOR_VIEW   2  /* data belongs to another tensor */
#define DLF_TENSOR_ARENA  4  /* lives in a tape's arena: freed by dlf_tape_reset */

DLFDEF dlf_tensor *dlf_tensor_new(int ndim, const int *shape);  /* zeros; NULL on OOM */
DLFDEF dlf_tensor *dlf_tensor_new1(int d0);
DLFDEF dlf_tensor *dlf_tensor_new2(int d0, int d1);
DLFDEF dlf_tensor *dlf_tensor_new3(int d0, int d1, int d2);
DLFDEF dlf_tensor *dlf_tensor_new4(int d0, int d1, int d2, int d3);
DLFDEF dlf_tensor *dlf_tensor_from(int ndim, const int *shape, const float *values);
DLFDEF dlf_tensor *dlf_tensor_ones(int ndim, const int *shape);                  /* all 1 */
DLFDEF dlf_tensor *dlf_tensor_rand(int ndim, const int *shape, dlf_rng *r);      /* U[0, 1) */
DLFDEF dlf_tensor *dlf_tensor_randn(int ndim, const int *shape, dlf_rng *r);     /* N(0, 1) */
DLFDEF dlf_tensor *dlf_tensor_arange(int n);                                     /* 0, 1, ..., n-1 */
DLFDEF void        dlf_tensor_free(dlf_tensor *t);
DLFDEF dlf_tensor *dlf_param_new(int ndim, const int *shape);   /* zeros, requires_grad */
DLFDEF int         dlf_tensor_requires_grad(dlf_tensor *t);     /* allocate grad; DLF_OK */

DLFDEF void dlf_fill(dlf_tensor *t, float value);                /* t = value */
DLFDEF void dlf_fill_uniform(dlf_tensor *t, dlf_rng *r, float lo, float hi); /* U[lo,hi) */
DLFDEF void dlf_fill_normal(dlf_tensor *t, dlf_rng *r, float mean, float std);
DLFDEF void dlf_fill_arange(dlf_tensor *t, float start, float step); /* t[i] = start+i*step */
DLFDEF void dlf_tensor_copy(dlf_tensor *dst, const dlf_tensor *src); /* same size */
DLFDEF int  dlf_same_shape(const dlf_tensor *a, const dlf_tensor *b);
DLFDEF char *dlf_shape_str(const dlf_tensor *t, char *buf, size_t n); /* "(2, 3)" */

DLFDEF float dlf_max_abs_diff(const dlf_tensor *a, const dlf_tensor *b);
DLFDEF float dlf_max_abs_diff_n(const float *a, const float *b, int n); /* the same on raw arrays */
DLFDEF int   dlf_allclose(const dlf_tensor *a, const dlf_tensor *b, float atol, float rtol);
#ifndef DLF_NO_STDIO
DLFDEF void  dlf_tensor_print(const dlf_tensor *t, const char *label); /* NumPy-like */
#endif

// >>stage3_elementwise ------------------------------------------------------------
// Binary ops broadcast like NumPy: align shapes on the right; a dim of 1 stretches.
//   (2,3) + (3,) -> (2,3);  (4,1) * (1,5) -> (4,5);  (2,3) + (4,) -> error.
// Reductions take an axis (negative counts from the end) and keepdim, like PyTorch.
// The _all variants reduce every element to a 0-dim scalar.

DLFDEF dlf_tensor *dlf_add(dlf_tape *t, dlf_tensor *a, dlf_tensor *b);  /* a + b */
DLFDEF dlf_tensor *dlf_sub(dlf_tape *t, dlf_tensor *a, dlf_tensor *b);  /* a - b */
DLFDEF dlf_tensor *dlf_mul(dlf_tape *t, dlf_tensor *a, dlf_tensor *b);  /* a * b */
DLFDEF dlf_tensor *dlf_div(dlf_tape *t, dlf_tensor *a, dlf_tensor *b);  /* a / b */
DLFDEF dlf_tensor *dlf_add_scalar(dlf_tape *t, dlf_tensor *a, float s); /* a + s */
DLFDEF dlf_tensor *dlf_mul_scalar(dlf_tape *t, dlf_tensor *a, float s); /* a * s */
DLFDEF dlf_tensor *dlf_pow_scalar(dlf_tape *t, dlf_tensor *a, float p); /* a ^ p */
DLFDEF dlf_tensor *dlf_neg(dlf_tape *t, dlf_tensor *a);                 /* -a */
DLFDEF dlf_tensor *dlf_exp(dlf_tape *t, dlf_tensor *a);                 /* e^a */
DLFDEF dlf_tensor *dlf_log(dlf_tape *t, dlf_tensor *a);                 /* ln a */
DLFDEF dlf_tensor *dlf_sqrt(dlf_tape *t, dlf_tensor *a);                /* sqrt(a) */
DLFDEF dlf_tensor *dlf_square(dlf_tape *t, dlf_tensor *a);              /* a^2 */
DLFDEF dlf_tensor *dlf_abs(dlf_tape *t, dlf_tensor *a);                 /* |a| */
DLFDEF dlf_tensor *dlf_relu(dlf_tape *t, dlf_tensor *a);                /* max(a, 0) */
DLFDEF dlf_tensor *dlf_sigmoid(dlf_tape *t, dlf_tensor *a);             /* 1/(1+e^-a) */
DLFDEF dlf_tensor *dlf_tanh(dlf_tape *t, dlf_tensor *a);                /* tanh(a) */

DLFDEF dlf_tensor *dlf_sum(dlf_tape *t, dlf_tensor *a, int axis, int keepdim);
DLFDEF dlf_tensor *dlf_mean(dlf_tape *t, dlf_tensor *a, int axis, int keepdim);
DLFDEF dlf_tensor *dlf_max(dlf_tape *t, dlf_tensor *a, int axis, int keepdim);
DLFDEF dlf_tensor *dlf_argmax(dlf_tape *t, dlf_tensor *a, int axis, int keepdim); /* no grad; indices as floats */
DLFDEF dlf_tensor *dlf_var(dlf_tape *t, dlf_tensor *a, int axis, int keepdim, int correction);
DLFDEF dlf_tensor *dlf_sum_all(dlf_tape *t, dlf_tensor *a);
DLFDEF dlf_tensor *dlf_mean_all(dlf_tape *t, dlf_tensor *a);

DLFDEF dlf_tensor *dlf_reshape(dlf_tape *t, dlf_tensor *a, int ndim, const int *shape); /* view; one -1 allowed */
DLFDEF dlf_tensor *dlf_clone(dlf_tape *t, const dlf_tensor *a);  /* arena copy, no grad link */

// more reductions: several axes at once, min (NaN wins, as in max), argmin (first index).
// Every single-axis reduction also takes axis 0 or -1 on a 0-dim tensor (PyTorch allows it)
// and returns the 0-dim tensor's value (var: NaN with correction 1, as PyTorch).
DLFDEF dlf_tensor *dlf_sum_axes(dlf_tape *t, dlf_tensor *a, const int *axes, int n_axes, int keepdim);
DLFDEF dlf_tensor *dlf_mean_axes(dlf_tape *t, dlf_tensor *a, const int *axes, int n_axes, int keepdim);
                                            /* n_axes 0: every axis (PyTorch 1.13's dim=[]) */
DLFDEF dlf_tensor *dlf_min(dlf_tape *t, dlf_tensor *a, int axis, int keepdim);
DLFDEF dlf_tensor *dlf_argmin(dlf_tape *t, dlf_tensor *a, int axis, int keepdim); /* no grad; indices as floats */

// tensor ops. A dlf tensor is contiguous, so these shape ops COPY (dlf_reshape is the one
// view); negative dims count from the end. Indices are floats holding integers >= 0.
DLFDEF dlf_tensor *dlf_permute(dlf_tape *t, dlf_tensor *a, const int *perm); /* out dim i = a dim perm[i] */
DLFDEF dlf_tensor *dlf_transpose(dlf_tape *t, dlf_tensor *a, int dim0, int dim1); /* swap two dims */
DLFDEF dlf_tensor *dlf_narrow(dlf_tape *t, dlf_tensor *a, int dim, int start, int length); /* a slice */
DLFDEF dlf_tensor *dlf_cat(dlf_tape *t, dlf_tensor **ts, int n, int dim);   /* join along an existing dim */
DLFDEF dlf_tensor *dlf_stack(dlf_tape *t, dlf_tensor **ts, int n, int dim); /* join along a new dim */
DLFDEF dlf_tensor *dlf_index_select(dlf_tape *t, dlf_tensor *a, int dim, const dlf_tensor *index); /* index 1-D */
DLFDEF dlf_tensor *dlf_gather(dlf_tape *t, dlf_tensor *a, int dim, const dlf_tensor *index); /* out shape = index's */
DLFDEF dlf_tensor *dlf_clamp(dlf_tape *t, dlf_tensor *a, float lo, float hi); /* -INFINITY/INFINITY: one side */
DLFDEF dlf_tensor *dlf_minimum(dlf_tape *t, dlf_tensor *a, dlf_tensor *b);  /* elementwise, broadcasting */
DLFDEF dlf_tensor *dlf_maximum(dlf_tape *t, dlf_tensor *a, dlf_tensor *b);
DLFDEF dlf_tensor *dlf_where(dlf_tape *t, dlf_tensor *cond, dlf_tensor *a, dlf_tensor *b); /* cond != 0 ? a : b */

// >>stage4_matmul -----------------------------------------------------------------
// C (M,N) = op(A) op(B), where op(A) is A (M,K) or, with ta, A^T for A stored (K,M);
// op(B) is B (K,N) or, with tb, B^T for B stored (N,K). With acc, C += ... instead.
// The ladder (lesson 01): every rung computes the same thing, faster.

DLFDEF void dlf_gemm_naive(int ta, int tb, int M, int N, int K, const float *A,
                           const float *B, float *C, int acc);   /* i-j-k dot products */
DLFDEF void dlf_gemm_ikj(int ta, int tb, int M, int N, int K, const float *A,
                         const float *B, float *C, int acc);     /* rows of B stream */
DLFDEF void dlf_gemm_blocked(int ta, int tb, int M, int N, int K, const float *A,
                             const float *B, float *C, int acc); /* cache tiles */
DLFDEF size_t dlf_gemm_fast_scratch(int M, int N, int K);        /* floats `work` needs */
DLFDEF const char *dlf_kernel_name(void);  /* the micro-kernel that runs: "portable", "avx2-fma" or "avx512" */
DLFDEF int dlf_kernel_available(const char *name);  /* 1: compiled in and this CPU runs it */
DLFDEF double dlf_peak_gflops(const char *kernel, double seconds);  /* measured fp32 peak of one core
                                                 running kernel's instructions (NULL: the one that runs):
                                                 independent FMA chains for about `seconds` */
DLFDEF int dlf_set_kernel(const char *name);  /* force one for this thread ("auto": the best); DLF_OK or
                                                 DLF_ERR_ARG. The DLF_KERNEL environment variable does the same */
DLFDEF void dlf_gemm_fast(int ta, int tb, int M, int N, int K, const float *A,
                          const float *B, float *C, int acc, float *work); /* packed + micro-kernel; work NULL: allocate */
DLFDEF void dlf_gemm(int ta, int tb, int M, int N, int K, const float *A,
                     const float *B, float *C, int acc, float *work);  /* what the ops call: today the fast rung */
DLFDEF void dlf_gemm_dot(int M, int N, int K, const float *A, const float *B,
                         float *C, int acc);  /* C (M,N) = A (M,K) @ B^T, B stored (N,K): dot products, long K */

DLFDEF dlf_tensor *dlf_matmul(dlf_tape *t, dlf_tensor *a, dlf_tensor *b);  /* torch.matmul: (M,K)@(K,N), and 1-D
                                                  and batched inputs (batch dims broadcast), see docs/tensors.md */
DLFDEF dlf_tensor *dlf_matmul_ex(dlf_tape *t, dlf_tensor *a, dlf_tensor *b, int ta, int tb); /* 2-D only */
DLFDEF dlf_tensor *dlf_bmm(dlf_tape *t, dlf_tensor *a, dlf_tensor *b);  /* (B,M,K)@(B,K,N) -> (B,M,N) */

// >>stage5_autograd -------------------------------------------------------------
// The tape is the autograd engine and the memory of one step. Each op computes its
// output in the tape's arena and, when grad is enabled and an input requires grad,
// appends a node: op kind, inputs, output, scalar arguments. dlf_backward marks the
// nodes its output was computed from, walks those in reverse, and a switch on the op
// kind calls that op's backward; the nodes it walked are then used up (PyTorch frees
// the graph), unless DLF_BACKWARD_KEEP_GRAPH keeps them for another backward.
// dlf_tape_reset drops every node and rewinds the arena without freeing it, so from
// the second step on a training step allocates nothing; it also starts a new
// generation, and ops refuse tensors of an earlier one.

typedef enum dlf_op {
    DLF_OP_NONE = 0,
    DLF_OP_ADD, DLF_OP_SUB, DLF_OP_MUL, DLF_OP_DIV,      /* binary, broadcasting */
    DLF_OP_ADD_SCALAR, DLF_OP_MUL_SCALAR, DLF_OP_POW_SCALAR,
    DLF_OP_NEG, DLF_OP_EXP, DLF_OP_LOG, DLF_OP_SQRT, DLF_OP_SQUARE, DLF_OP_ABS,
    DLF_OP_RELU, DLF_OP_SIGMOID, DLF_OP_TANH,
    DLF_OP_SUM, DLF_OP_MEAN, DLF_OP_MAX, DLF_OP_VAR,     /* reductions over one axis */
    DLF_OP_RESHAPE, DLF_OP_MATMUL,
    DLF_OP_CONV2D, DLF_OP_BIAS, DLF_OP_LEAKY_RELU, DLF_OP_GENERAL_RELU,   /* stage 6 layers */
    DLF_OP_SOFTMAX, DLF_OP_LOG_SOFTMAX, DLF_OP_MAXPOOL2D, DLF_OP_AVGPOOL2D, DLF_OP_EMBEDDING,
    DLF_OP_MSE_LOSS, DLF_OP_L1_LOSS, DLF_OP_BCE_LOGITS, DLF_OP_NLL_LOSS, DLF_OP_CROSS_ENTROPY, /* stage 8 */
    DLF_OP_BATCHNORM, DLF_OP_GROUPNORM, DLF_OP_RUNNING_BATCHNORM,  /* stage 9 normalization */
    DLF_OP_DROPOUT,                                                 /* stage 10 */
    DLF_OP_CROSS_ENTROPY_SOFT,                         /* stage 8: soft targets (label smoothing, mixup) */
    DLF_OP_BCE_LOSS,                                   /* layers/losses parity: plain BCE */
    DLF_OP_MAXPOOL2D_EX, DLF_OP_AVGPOOL2D_EX,          /* layers/losses parity: window tables */
    DLF_OP_CONV2D_EX,                                  /* layers/losses parity: general conv2d */
    DLF_OP_PERMUTE, DLF_OP_NARROW, DLF_OP_CAT, DLF_OP_INDEX_SELECT, DLF_OP_GATHER,  /* tensor ops */
    DLF_OP_CLAMP, DLF_OP_MINIMUM, DLF_OP_MAXIMUM, DLF_OP_WHERE, DLF_OP_MIN,         /* tensor ops */
    DLF_OP_SUM_AXES, DLF_OP_MEAN_AXES, DLF_OP_BMM,                                  /* tensor ops */
    DLF_OP_CUSTOM,                                  /* tensor ops: a user's op (dlf_custom) */
    DLF_OP_COUNT
} dlf_op;
/* Adding an op, the checklist (the compiler enforces the starred steps):
     1. a DLF_OP_ value above, before DLF_OP_COUNT;
   * 2. its name in dlf_op_name's table (a compile-time check counts the entries);
   * 3. a case in dlf_backward_ex's switch (it has no default: -Wswitch names a
        missing case);
     4. forward and backward side by side in its stage, the math in comments; the
        forward calls dlf__live on its tensor arguments before reading their data
        (a tensor of an earlier step); a backward that reads none of its inputs'
        values goes into dlf__backward_reads (else writing an input in place panics);
     5. a gradcheck in tests/ and a PyTorch fixture in tools/gen_reference.py. */

#define DLF_NODE_INPUTS 3    /* most tensors an op reads that may need a gradient */
#define DLF_NODE_SAVED 2     /* most tensors an op keeps for its backward */

typedef struct dlf_node {
    dlf_op op;               /* which forward made `out` */
    dlf_tensor *out;         /* the output (its grad is read by backward) */
    dlf_tensor *in[DLF_NODE_INPUTS]; /* the inputs (their grads are written), NULL if unused;
                                        BatchNorm: x, weight, bias */
    int iarg[4];             /* integer arguments: axis, keepdim, transpose flags ... */
    float farg[3];           /* float arguments: the scalar of *_SCALAR ops ... */
    dlf_tensor *aux;         /* extra tensor kept for backward (e.g. argmax indices) */
    dlf_tensor *saved[DLF_NODE_SAVED]; /* more tensors kept for backward, in the arena
                                          (BatchNorm: per-channel mean and 1/std) */
    unsigned ver[DLF_NODE_INPUTS + 1]; /* the versions of in[0..2] and out when recorded:
                                          backward refuses what was written in place since */
    int same_out;            /* an earlier node with the same output (a layer's matmul under
                                its bias node), or -1 */
    unsigned walk;           /* the backward that last reached it (dlf_tape.walks) */
    int consumed;            /* 1: a backward without DLF_BACKWARD_KEEP_GRAPH walked it */
    struct dlf_custom_ctx *ctx; /* DLF_OP_CUSTOM: the call's context (in the arena), else NULL */
} dlf_node;

typedef struct dlf__chunk dlf__chunk;  /* one block of the arena (implementation) */

struct dlf_tape {
    dlf__chunk *first;       /* list of arena blocks, kept across resets */
    dlf__chunk *cur;         /* the block allocations come from now */
    size_t chunk_bytes;      /* size of a new block (default 1 MiB) */
    size_t used_bytes;       /* bytes handed out since the last reset */
    size_t peak_bytes;       /* most bytes ever handed out in one step */
    dlf_node *nodes;         /* (cap_nodes) the recorded ops, in forward order */
    int n_nodes;             /* how many are recorded */
    int cap_nodes;           /* allocated length of nodes */
    int grad_enabled;        /* 0: no-grad, records nothing */
    int training;            /* 1 (default): training mode, BatchNorm uses batch statistics and
                                updates its running ones, dropout drops; 0: eval mode */
    dlf_rng rng;             /* the random numbers ops draw in training mode (dropout masks);
                                seeded with 0 by dlf_tape_init, reseed with dlf_tape_seed */
    float *scratch;          /* (scratch_floats) workspace for packed matmul */
    size_t scratch_floats;
    struct dlf_telemetry *telemetry; /* activation statistics (stage 16), NULL: off */
    unsigned generation;     /* dlf_tape_reset counts up: the step the arena's tensors are of */
    unsigned stamp;          /* generation mixed with the tape's address, carried by every arena
                                tensor: ops refuse one of an earlier step of this tape */
    unsigned walks;          /* backward calls ever (marks the nodes one of them reaches) */
    int backwards;           /* backward calls since the last reset */
    size_t warn_step_bytes;  /* soft bound on the arena bytes of one step: past it, one warning
                                (stderr, dlf_last_error); default 1 GiB; 0: none */
    size_t max_step_bytes;   /* hard bound: an allocation past it panics (a forgotten
                                dlf_tape_reset); default 4 GiB; 0: unbounded */
    int warned;              /* the one warning was given */
    uintptr_t arena_lo, arena_hi; /* the span of the arena blocks' memory */
    struct dlf_cuda *cuda;   /* stage 17: the GPU context matmul and conv2d run on, NULL (always,
                                without DLF_CUDA): the CPU. Set with dlf_tape_set_cuda */
    int anomaly;             /* 1: dlf_backward checks every recorded output and every gradient
                                for NaN and infinity and names the op that made the first one
                                (as torch.autograd.detect_anomaly); 0 (default): one test, free */
    int error;               /* DLF_OK, or the first failure since the last reset: DLF_ERR_NOMEM
                                (an op ran out of memory), DLF_ERR_ARG (an op was given NULL, or
                                its panic handler returned). Sticky: every op then returns NULL */
};

DLFDEF int  dlf_tape_init(dlf_tape *t);            /* DLF_OK; grad enabled */
DLFDEF void dlf_tape_destroy(dlf_tape *t);         /* frees arena, nodes, scratch */
DLFDEF void dlf_tape_reset(dlf_tape *t);           /* drop nodes, rewind the arena */
DLFDEF int  dlf_tape_set_grad(dlf_tape *t, int enabled); /* returns previous setting */
DLFDEF int  dlf_tape_set_training(dlf_tape *t, int training); /* train (1) / eval (0); returns previous */
DLFDEF void dlf_tape_seed(dlf_tape *t, uint64_t seed);   /* reseed the tape's rng (dropout masks) */
DLFDEF int  dlf_tape_set_anomaly(dlf_tape *t, int on);   /* anomaly mode on (1) / off (0); returns previous.
                                                            A NaN or inf then panics, naming the op */
DLFDEF int  dlf_tape_error(const dlf_tape *t);     /* DLF_OK, or the first failure since the last reset
                                                      (DLF_ERR_NOMEM, DLF_ERR_ARG); dlf_last_error says more */
DLFDEF dlf_tensor *dlf_tape_tensor(dlf_tape *t, int ndim, const int *shape); /* arena, zeros */
DLFDEF int  dlf_backward(dlf_tape *t, dlf_tensor *loss);  /* loss must have size 1. DLF_OK, or the
                                                            tape's error (a failed forward: nothing is
                                                            walked), DLF_ERR_NOMEM (gradients) */
DLFDEF int  dlf_backward_seed(dlf_tape *t, dlf_tensor *out, const float *seed); /* d?/dout (seed NULL:
                                                            ones); returns as dlf_backward */
#define DLF_BACKWARD_KEEP_GRAPH 1  /* keep the walked nodes for another backward (retain_graph=True) */
DLFDEF int  dlf_backward_ex(dlf_tape *t, dlf_tensor *out, const float *seed, int flags);
                                   /* seed NULL: all ones; flags 0 or DLF_BACKWARD_KEEP_GRAPH;
                                      returns as dlf_backward */
DLFDEF void dlf_zero_grad(dlf_tensor *t);                  /* grad = 0 (if any) */
DLFDEF void dlf_zero_grads(dlf_tensor **ts, int n);
DLFDEF const char *dlf_op_name(dlf_op op);
#ifndef DLF_NO_STDIO
DLFDEF void dlf_tape_print(const dlf_tape *t);             /* one line per node */
#endif

// gradient check
// Central finite differences, accumulated in double (kann's kad_check_grad, genann).
// `fn` builds any output from the inputs on the tape; the checker reduces it to the
// scalar L = sum_i w_i * out_i with fixed random weights w (so every output element
// matters), and compares dL/dx from backward against (L(x+h) - L(x-h)) / 2h.
// Points where the function has a kink (relu at 0, max ties) are detected by
// comparing the two one-sided slopes and skipped.

typedef dlf_tensor *(*dlf_graph_fn)(dlf_tape *t, dlf_tensor **inputs, void *user);

typedef struct dlf_gradcheck_cfg { /* zero (or negative) fields mean the defaults; cfg may be NULL */
    double eps;              /* step h (default 1e-2, in the float input's units) */
    double atol;             /* pass if |num - ana| <= atol + rtol*|num| (default 1e-3) */
    double rtol;             /* (default 1e-2) */
    int verbose;             /* print one line per input */
    uint64_t seed;           /* for the weights w (default 1) */
    int eval_mode;           /* 1: run fn in eval mode (dlf_tape_set_training(t, 0)) */
} dlf_gradcheck_cfg;

typedef struct dlf_gradcheck_report {
    double max_abs_err;      /* over all checked elements */
    double max_rel_err;
    int worst_input;         /* which input holds the worst element */
    int worst_index;         /* its flat index */
    int n_checked;           /* elements compared */
    int n_kinks;             /* elements skipped as kinks */
    int n_failed;            /* elements outside the tolerance */
} dlf_gradcheck_report;

DLFDEF int dlf_gradcheck(dlf_graph_fn fn, dlf_tensor **inputs, int n_inputs, void *user,
                         const dlf_gradcheck_cfg *cfg, dlf_gradcheck_report *rep); /* 1 = pass */

// custom ops
// A user's op with its own forward and backward, recorded and replayed like a built-in one
// (a DLF_OP_CUSTOM node; docs/tensors.md has an example, lessons/03a_your_own_op.c a model).
//   forward(ctx, in, n_in, user): returns the output, a new tensor from dlf_custom_output or
//     from dlf ops on ctx->tape (recording is off inside); may keep tensors (dlf_custom_save)
//     and numbers (ctx->farg, ctx->iarg) for the backward.
//   backward(ctx, gout, gin, user): gout = dL/dout (ctx->out->size floats); gin[i] is the
//     gradient of ctx->in[i], to ADD to (+=), or NULL when that input needs none.
// The dlf_custom_op must outlive the tape's backward (a static const struct is simplest).

#define DLF_CUSTOM_MAX_INPUTS 8
#define DLF_CUSTOM_MAX_SAVED 4

typedef struct dlf_custom_ctx {
    const struct dlf_custom_op *op;     /* the op this call runs */
    dlf_tape *tape;                     /* the tape of the call (its arena holds the context) */
    dlf_tensor *in[DLF_CUSTOM_MAX_INPUTS]; /* the inputs, as passed */
    int n_in;
    dlf_tensor *out;                    /* the forward's output (set after forward returns) */
    dlf_tensor *saved[DLF_CUSTOM_MAX_SAVED]; /* what dlf_custom_save kept, in order */
    int n_saved;
    float farg[4];                      /* the forward's own numbers, for the backward */
    int iarg[4];
    int done;                           /* backward already ran for this call */
} dlf_custom_ctx;

typedef dlf_tensor *(*dlf_custom_forward_fn)(dlf_custom_ctx *ctx, dlf_tensor **in, int n_in, void *user);
typedef void (*dlf_custom_backward_fn)(dlf_custom_ctx *ctx, const float *gout, float **gin, void *user);

typedef struct dlf_custom_op {
    const char *name;                   /* for messages and dlf_tape_print */
    dlf_custom_forward_fn forward;
    dlf_custom_backward_fn backward;    /* NULL: the op has no gradient (backward panics if asked) */
    void *user;                         /* passed to both */
} dlf_custom_op;

DLFDEF dlf_tensor *dlf_custom(dlf_tape *t, const dlf_custom_op *op, dlf_tensor **inputs, int n_inputs);
DLFDEF dlf_tensor *dlf_custom_output(dlf_custom_ctx *ctx, int ndim, const int *shape); /* arena, zeros */
DLFDEF void dlf_custom_save(dlf_custom_ctx *ctx, dlf_tensor *x);  /* keep x for the backward */

// >>stage6_layers ---------------------------------------------------------------
// The layers of a network. Each is an op on the tape: the forward computes its
// output in the arena and records a node; its backward sits beside it below.
// Dimension letters: N batch, C input channels, H W input height and width,
// K output channels (filters), R S kernel height and width, P Q output height and
// width, with   P = (H + 2*pad - R) / stride + 1,   Q = (W + 2*pad - S) / stride + 1.
// Parameters use PyTorch's layout (Linear weight (out,in), Conv2d weight (K,C,R,S)),
// so weights move between dlf and PyTorch state_dicts without transposes.

DLFDEF dlf_tensor *dlf_linear(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b);
    /* y (N,out) = x (N,in) W^T (in,out) + b (out,); b may be NULL */
DLFDEF dlf_tensor *dlf_conv2d(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, int stride, int pad);
    /* y[n][k][p][q] = b[k] + sum_{c,r,s} w[k][c][r][s] * x[n][c][p*stride-pad+r][q*stride-pad+s]
       (x (N,C,H,W), w (K,C,R,S), b (K,) or NULL, y (N,K,P,Q); outside x counts as 0).
       Fast path: implicit gemm (panels packed straight from x, no col); the weight
       gradient the same way; the input gradient gemm + col2im. */
DLFDEF dlf_tensor *dlf_conv2d_im2col(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, int stride, int pad);
    /* the same through im2col + one dlf_gemm over the whole batch (col kept for dW):
       the readable fast path, and the reference for the implicit one */
DLFDEF dlf_tensor *dlf_conv2d_naive(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, int stride, int pad);
    /* the same by the seven direct loops, forward and backward: the reference */
typedef struct dlf_conv2d_cfg {  /* zeroed: stride 1, pad 0, dilation 1, groups 1 */
    int sh, sw;              /* stride along h and w (0: 1) */
    int ph, pw;              /* zero padding along h and w */
    int dh, dw;              /* dilation: tap (r, s) reads h = p*sh - ph + r*dh (0: 1) */
    int groups;              /* C and K split into groups convolved apart (0: 1); w is
                                (K, C/groups, R, S); groups = C = K is depthwise */
} dlf_conv2d_cfg;
DLFDEF dlf_tensor *dlf_conv2d_ex(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, const dlf_conv2d_cfg *cfg);
    /* F.conv2d(x, w, b, stride=(sh,sw), padding=(ph,pw), dilation=(dh,dw), groups):
       y[n][k][p][q] = b[k] + sum_{c<C/groups,r,s} w[k][c][r][s] * x[n][g*C/groups + c][p*sh-ph+r*dh][q*sw-pw+s*dw]
       (g = k / (K/groups)), P = (H + 2ph - dh(R-1) - 1) / sh + 1, Q likewise. The common
       case is dlf_conv2d itself; other geometries take the same implicit gemm with other
       tap offsets, groups run it once per group */
DLFDEF dlf_tensor *dlf_conv2d_naive_ex(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, const dlf_conv2d_cfg *cfg);
    /* the same by the direct loops: the reference */
DLFDEF void dlf_im2col(const float *x, int N, int C, int H, int W, int R, int S, int stride, int pad,
                       float *col);  /* col (C*R*S, N*P*Q): row (c,r,s), column (n,p,q) */
DLFDEF void dlf_col2im(const float *col, int N, int C, int H, int W, int R, int S, int stride, int pad,
                       float *x);    /* x (N,C,H,W) += the adjoint of im2col: patches summed back */
DLFDEF dlf_tensor *dlf_leaky_relu(dlf_tape *t, dlf_tensor *x, float slope); /* y = x > 0 ? x : slope*x */
DLFDEF dlf_tensor *dlf_general_relu(dlf_tape *t, dlf_tensor *x, float leak, float sub, float maxv);
    /* the course's GeneralRelu: y = min(leaky_relu(x, leak) - sub, maxv).
       maxv <= 0 or INFINITY means no clamp (the course's maxv=None); leak 0 is plain relu */
DLFDEF dlf_tensor *dlf_softmax(dlf_tape *t, dlf_tensor *x, int axis);     /* y_i = e^x_i / sum_j e^x_j */
DLFDEF dlf_tensor *dlf_log_softmax(dlf_tape *t, dlf_tensor *x, int axis); /* y_i = x_i - logsumexp_j x_j */
DLFDEF dlf_tensor *dlf_maxpool2d(dlf_tape *t, dlf_tensor *x, int k, int stride, int pad);
    /* y = max over each k x k window (N,C,H,W) -> (N,C,P,Q); padding never wins (-inf);
       stride <= 0 means stride = k (PyTorch's default); pad <= k/2 */
DLFDEF dlf_tensor *dlf_avgpool2d(dlf_tape *t, dlf_tensor *x, int k, int stride, int pad);
    /* y = sum over each k x k window / (k*k): padding counts as zeros (PyTorch's
       count_include_pad=True); stride <= 0 means k; pad <= k/2 */
typedef struct dlf_pool_cfg {  /* zeroed fields: PyTorch's defaults (the window must be set) */
    int kh, kw;              /* window height and width, >= 1 */
    int sh, sw;              /* stride; <= 0: the window's size (PyTorch's default) */
    int ph, pw;              /* padding (max: never wins; avg: zeros), at most half the window */
    int ceil_mode;           /* 1: P = ceil((H + 2ph - kh) / sh) + 1, less one if the last window
                                would start in the bottom padding (PyTorch's ceil_mode=True) */
    int exclude_pad;         /* avg: 1 = count_include_pad=False: divide by the cells inside x
                                only; 0: padding counts as zeros in the divisor */
} dlf_pool_cfg;
DLFDEF dlf_tensor *dlf_maxpool2d_ex(dlf_tape *t, dlf_tensor *x, const dlf_pool_cfg *cfg);
DLFDEF dlf_tensor *dlf_avgpool2d_ex(dlf_tape *t, dlf_tensor *x, const dlf_pool_cfg *cfg);
    /* F.max_pool2d / F.avg_pool2d with (kh, kw) windows, separate strides and padding,
       ceil_mode and (avg) count_include_pad=False; a NaN in a max window wins */
DLFDEF dlf_tensor *dlf_adaptive_avgpool2d(dlf_tape *t, dlf_tensor *x, int P, int Q);
DLFDEF dlf_tensor *dlf_adaptive_maxpool2d(dlf_tape *t, dlf_tensor *x, int P, int Q);
    /* (N,C,H,W) -> (N,C,P,Q), output (p, q) pooling rows floor(p*H/P) .. ceil((p+1)*H/P)-1
       and the columns likewise (F.adaptive_avg_pool2d / F.adaptive_max_pool2d) */
DLFDEF dlf_tensor *dlf_global_avgpool(dlf_tape *t, dlf_tensor *x); /* (N,C,H,W) -> (N,C), mean over H,W */
DLFDEF dlf_tensor *dlf_flatten(dlf_tape *t, dlf_tensor *x);        /* (N,...) -> (N,rest), a view */
DLFDEF dlf_tensor *dlf_embedding(dlf_tape *t, dlf_tensor *idx, dlf_tensor *w);
    /* y[i] = w[idx[i]]: idx (N) or (N,L) row ids stored as floats, w (V,D) -> (N,D) or (N,L,D) */

// The state of the normalization layers of stage 9, which a dlf_layer holds.
typedef struct dlf_bn_state {  /* BatchNorm's buffers; the layer owns them */
    dlf_tensor *running_mean;  /* (C) starts at 0 */
    dlf_tensor *running_var;   /* (C) starts at 1; unbiased: var * M / (M - 1) */
    dlf_tensor *num_batches_tracked; /* () training batches seen (int64 in PyTorch) */
    float momentum;            /* running = (1 - momentum) * running + momentum * batch (0.1) */
    float eps;                 /* added to the variance (1e-5) */
} dlf_bn_state;
typedef struct dlf_rbn_state { /* the buffers, named as the course's module names them */
    dlf_tensor *sums;          /* (1,C,1,1) running sum of x */
    dlf_tensor *sqrs;          /* (1,C,1,1) running sum of x^2 */
    dlf_tensor *batch;         /* () items seen */
    dlf_tensor *count;         /* () running count of values per channel */
    dlf_tensor *step;          /* () training steps */
    dlf_tensor *dbias;         /* () debiasing factor */
    float momentum;            /* 0.1 */
    float eps;                 /* 1e-5 */
} dlf_rbn_state;

// Sequential: a list of layers run in order, like nn.Sequential. A dlf_layer is a
// kind, the parameters it owns and its settings; dlf_layer_forward is one switch.
typedef enum dlf_layer_kind {
    DLF_LAYER_LINEAR = 0,     /* weight (out,in), bias (out) */
    DLF_LAYER_CONV2D,         /* weight (K,C/groups,R,S), bias (K); stride, pad, or conv */
    DLF_LAYER_RELU,
    DLF_LAYER_LEAKY_RELU,     /* leak */
    DLF_LAYER_GENERAL_RELU,   /* leak, sub, maxv */
    DLF_LAYER_SIGMOID,
    DLF_LAYER_TANH,
    DLF_LAYER_SOFTMAX,        /* over the last axis */
    DLF_LAYER_LOG_SOFTMAX,    /* over the last axis */
    DLF_LAYER_MAXPOOL2D,      /* k, stride, pad, or pool */
    DLF_LAYER_AVGPOOL2D,      /* k, stride, pad, or pool */
    DLF_LAYER_GLOBAL_AVGPOOL, /* (N,C,H,W) -> (N,C) */
    DLF_LAYER_FLATTEN,        /* (N,...) -> (N,rest) */
    DLF_LAYER_EMBEDDING,      /* weight (V,D) */
    DLF_LAYER_RESIDUAL,       /* y = x + body(x): the residual connection of a ResNet block */
    DLF_LAYER_BATCHNORM,      /* weight, bias (C); buffers running_mean, running_var, num_batches_tracked */
    DLF_LAYER_LAYERNORM,      /* weight, bias (d): over the last d values */
    DLF_LAYER_GROUPNORM,      /* weight, bias (C); groups */
    DLF_LAYER_INSTANCENORM,   /* weight, bias (C) when affine */
    DLF_LAYER_RUNNING_BATCHNORM, /* mults, adds (C,1,1); buffers sums, sqrs, batch, count, step, dbias */
    DLF_LAYER_DROPOUT,        /* p */
    DLF_LAYER_DROPOUT2D,      /* p: whole channels */
    DLF_LAYER_ADAPTIVE_AVGPOOL2D, /* out_h, out_w (layers/losses parity) */
    DLF_LAYER_ADAPTIVE_MAXPOOL2D, /* out_h, out_w (layers/losses parity) */
    DLF_LAYER_KIND_COUNT
} dlf_layer_kind;

typedef struct dlf_layer {
    dlf_layer_kind kind;      /* which op dlf_layer_forward runs */
    dlf_tensor *weight;       /* LINEAR (out,in), CONV2D (K,C,R,S), EMBEDDING (V,D); else NULL */
    dlf_tensor *bias;         /* LINEAR (out,), CONV2D (K,); NULL when the layer has none */
    int k;                    /* pooling window (k x k) */
    int stride;               /* CONV2D and pooling */
    int pad;                  /* CONV2D and pooling */
    float leak;               /* LEAKY_RELU slope, GENERAL_RELU leak */
    float sub;                /* GENERAL_RELU: subtracted after the leaky relu */
    float maxv;               /* GENERAL_RELU: clamp (<= 0: none) */
    struct dlf_seq *body;     /* RESIDUAL: the layers inside, owned; else NULL */
    struct dlf_seq *shortcut; /* RESIDUAL: the path x takes to the sum (pool, 1x1 conv), owned;
                                 NULL: the identity */
    dlf_bn_state bn;          /* BATCHNORM: running statistics (buffers, owned), momentum, eps */
    dlf_rbn_state rbn;        /* RUNNING_BATCHNORM: running sums (buffers, owned), momentum, eps */
    int groups;               /* GROUPNORM: channel groups */
    int d;                    /* LAYERNORM: values normalized together */
    float eps;                /* LAYERNORM, GROUPNORM, INSTANCENORM: added to the variance (1e-5) */
    float p;                  /* DROPOUT, DROPOUT2D: probability of dropping */
    dlf_conv2d_cfg conv;      /* CONV2D from dlf_layer_conv2d_ex (conv.groups >= 1): this
                                 geometry instead of stride and pad */
    dlf_pool_cfg pool;        /* MAXPOOL2D, AVGPOOL2D from dlf_layer_pool_ex (pool.kh >= 1):
                                 this window instead of k, stride and pad */
    int out_h, out_w;         /* ADAPTIVE_AVGPOOL2D, ADAPTIVE_MAXPOOL2D: the output size */
} dlf_layer;

#define DLF_LAYER_MAX_TENSORS 8 /* most named tensors a layer owns (RunningBatchNorm has 8) */

typedef struct dlf_seq {
    dlf_layer *layers;        /* (n) in forward order; the seq owns their parameters */
    int n;                    /* number of layers */
    int cap;                  /* allocated length of layers */
} dlf_seq;

#define DLF_PARAM_NAME_MAX 64 /* "12.weight", "3.body.0.weight" fit easily */

/* A parameter list: every tensor of a model under its PyTorch state_dict name, with
   its optimizer group and whether it is a buffer (running statistics: saved and
   loaded with the model, never given to an optimizer). dlf_seq_collect fills one
   from a Sequential; hand-written models add their tensors one by one. */
typedef struct dlf_param {
    dlf_tensor *t;                 /* the tensor, not owned */
    char name[DLF_PARAM_NAME_MAX]; /* its state_dict name, "0.weight", "1.running_mean" ... */
    int group;                     /* optimizer parameter group (0 unless set) */
    int is_buffer;                 /* 1: a buffer, not trained */
    int no_decay;                  /* 1: a bias or a normalization's weight (dlf_params_group_no_decay) */
} dlf_param;

typedef struct dlf_params {
    dlf_param *items;              /* (n) in state_dict order */
    int n;                         /* how many */
    int cap;                       /* allocated length of items */
} dlf_params;

DLFDEF void dlf_params_init(dlf_params *p);     /* empty */
DLFDEF int  dlf_params_add(dlf_params *p, dlf_tensor *t, const char *name, int is_buffer); /* DLF_OK or NOMEM */
DLFDEF void dlf_params_free(dlf_params *p);     /* the list only; the tensors stay */
DLFDEF dlf_param *dlf_params_find(const dlf_params *p, const char *name);  /* NULL if absent */
DLFDEF int  dlf_params_group_no_decay(dlf_params *p, int group);
    /* move biases and normalization weights (no_decay) to `group`; returns how many */
DLFDEF int  dlf_params_set_group(dlf_params *p, const char *prefix, int group);
    /* every parameter whose name starts with prefix ("10." is layer 10 of a seq) goes to group;
       returns how many: discriminative learning rates, one group per part of the model */
DLFDEF int  dlf_params_tensors(const dlf_params *p, dlf_tensor **out, int cap);
    /* the trainable tensors (buffers skipped) in order; returns how many there are */

/* Constructors return the layer by value; parameters are heap tensors with grads,
   initialized as PyTorch does (dlf_init_torch_default; Embedding N(0,1)). A NULL
   weight after a parameterized constructor means out of memory (dlf_last_error). */
DLFDEF dlf_layer dlf_layer_linear(int in, int out, int bias, dlf_rng *r);
DLFDEF dlf_layer dlf_layer_conv2d(int c_in, int c_out, int ks, int stride, int pad, int bias, dlf_rng *r);
DLFDEF dlf_layer dlf_layer_conv2d_ex(int c_in, int c_out, int kh, int kw, const dlf_conv2d_cfg *cfg, int bias,
                                     dlf_rng *r);
    /* nn.Conv2d(c_in, c_out, (kh, kw), stride, padding, dilation, groups, bias): weight
       (c_out, c_in/groups, kh, kw); cfg NULL: the defaults. Panics unless groups divides
       c_in and c_out */
DLFDEF dlf_layer dlf_layer_embedding(int vocab, int dim, dlf_rng *r);
DLFDEF dlf_layer dlf_layer_simple(dlf_layer_kind kind);  /* RELU, SIGMOID, TANH, (LOG_)SOFTMAX, FLATTEN, GLOBAL_AVGPOOL */
DLFDEF dlf_layer dlf_layer_leaky_relu(float slope);
DLFDEF dlf_layer dlf_layer_general_relu(float leak, float sub, float maxv);
DLFDEF dlf_layer dlf_layer_pool(dlf_layer_kind kind, int k, int stride, int pad); /* MAXPOOL2D, AVGPOOL2D */
DLFDEF dlf_layer dlf_layer_pool_ex(dlf_layer_kind kind, const dlf_pool_cfg *cfg);
    /* MAXPOOL2D, AVGPOOL2D through dlf_maxpool2d_ex / dlf_avgpool2d_ex (cfg copied) */
DLFDEF dlf_layer dlf_layer_adaptive_pool(dlf_layer_kind kind, int out_h, int out_w);
    /* ADAPTIVE_AVGPOOL2D, ADAPTIVE_MAXPOOL2D: nn.AdaptiveAvgPool2d((out_h, out_w)) and the max */
DLFDEF dlf_layer dlf_layer_batchnorm(int c);
    /* BatchNorm1d/2d(c): weight 1, bias 0, running_mean 0, running_var 1, momentum 0.1,
       eps 1e-5 (change l.bn.momentum, l.bn.eps after; free weight and bias for affine=False) */
DLFDEF dlf_layer dlf_layer_layernorm(int d);              /* LayerNorm(d): weight 1, bias 0, eps 1e-5 */
DLFDEF dlf_layer dlf_layer_groupnorm(int groups, int c);  /* GroupNorm(groups, c): weight 1, bias 0 */
DLFDEF dlf_layer dlf_layer_instancenorm(int c, int affine); /* InstanceNorm2d(c, affine) */
DLFDEF dlf_layer dlf_layer_running_batchnorm(int c);      /* the course's RunningBatchNorm(c) */
DLFDEF dlf_layer dlf_layer_dropout(float p);              /* Dropout(p) */
DLFDEF dlf_layer dlf_layer_dropout2d(float p);            /* Dropout2d(p) */
DLFDEF dlf_layer dlf_layer_residual(dlf_seq *body);
    /* y = x + body(x); takes body's layers (body is left empty). Like a PyTorch module
       with `self.body = nn.Sequential(...)`, its parameters are named "<i>.body.<j>.weight".
       body must keep the shape: a mismatch is an error, never a silent broadcast. */
DLFDEF dlf_layer dlf_layer_residual_ex(dlf_seq *body, dlf_seq *shortcut);
    /* y = shortcut(x) + body(x) (shortcut NULL: x); takes both seqs' layers. The shortcut's
       parameters are named "<i>.shortcut.<j>.weight" */

/* ResNets (lesson 11; docs/layers.md). A ResBlock, as the course writes it:
       body:     conv(ni -> nf, ks, stride 1) BatchNorm act  conv(nf -> nf, ks, stride) BatchNorm
       shortcut: AvgPool2d(2, ceil_mode) when stride 2, then conv 1x1 (ni -> nf, bias) when ni != nf
       then act(body(x) + shortcut(x))
   dlf_resblock appends the residual layer and the activation to s. Convs have no bias (the
   BatchNorm's shift does that job) and Kaiming-normal weights for the activation's leak;
   zero_bn starts the body's last BatchNorm at weight 0, so the block starts as its shortcut. */
typedef struct dlf_resnet_cfg {
    int c_in;                /* input channels */
    int n_classes;           /* outputs of the linear head */
    int n_stages;            /* entries used in widths and depths (1 to 8) */
    int widths[8];           /* output channels of each stage */
    int depths[8];           /* ResBlocks in each stage (0 counts as 1); the first block of every
                                stage after the first has stride 2 */
    int stem;                /* 0: the first block takes c_in with a 5x5 kernel (the course's
                                Fashion-MNIST ResNet); 1: the XResNet stem, conv layers to 32, 32,
                                64 channels (the first stride 2) and a 3x3 stride-2 max pool */
    float leak, sub;         /* the activation: GeneralRelu(leak, sub); both 0: ReLU */
    int zero_bn;             /* 1: every block's last BatchNorm starts at weight 0 */
    int head_bn;             /* 1: the head is Linear without bias, then BatchNorm1d (the course) */
    int first_ks;            /* stem 0: the first block's kernel (odd; 0: 5, the course's) */
} dlf_resnet_cfg;
DLFDEF int dlf_resblock(dlf_seq *s, int ni, int nf, int stride, int ks, float leak, float sub, int zero_bn,
                        dlf_rng *r);   /* DLF_OK, DLF_ERR_NOMEM, DLF_ERR_ARG (stride not 1 or 2, ks even) */
DLFDEF int dlf_resnet_build(dlf_seq *s, const dlf_resnet_cfg *cfg, dlf_rng *r);
    /* s (empty, initialized) gets: stem or first block, the stages, global average pool, the
       head. DLF_OK, DLF_ERR_NOMEM (s freed and empty) or DLF_ERR_ARG (bad cfg, with a message) */
DLFDEF dlf_tensor *dlf_layer_forward(dlf_tape *t, const dlf_layer *l, dlf_tensor *x);
DLFDEF void dlf_layer_free(dlf_layer *l);                /* frees every tensor it owns */
DLFDEF int  dlf_layer_ok(const dlf_layer *l);            /* 0 when a constructor ran out of memory */
DLFDEF int  dlf_layer_tensors(const dlf_layer *l, dlf_tensor **ts, const char **names, int *is_buffer);
    /* the layer's own named set in PyTorch's order (weight, bias, then buffers); fills
       up to DLF_LAYER_MAX_TENSORS entries, returns how many */
DLFDEF const char *dlf_layer_kind_name(dlf_layer_kind kind); /* "Linear", "BatchNorm" ... */

DLFDEF void dlf_seq_init(dlf_seq *s);                    /* empty */
DLFDEF int  dlf_seq_add(dlf_seq *s, dlf_layer l);        /* DLF_OK; the seq takes l's parameters */
DLFDEF void dlf_seq_free(dlf_seq *s);                    /* frees every layer's parameters */
DLFDEF int  dlf_seq_freeze(dlf_seq *s, int n_layers, int train_bn);
    /* transfer learning: the parameters of layers [0, n_layers) stop requiring grad (backward
       skips them, optimizers leave them alone), except BatchNorm's weight and bias when train_bn
       (the course keeps them trainable); residual bodies included. Returns the tensors frozen */
DLFDEF int  dlf_seq_unfreeze(dlf_seq *s);               /* every parameter trainable again; returns how many */
DLFDEF dlf_tensor *dlf_seq_forward(dlf_tape *t, const dlf_seq *s, dlf_tensor *x);
DLFDEF dlf_tensor *dlf_seq_forward_n(dlf_tape *t, const dlf_seq *s, dlf_tensor *x, int n_layers); /* first n only */
DLFDEF int  dlf_seq_params(const dlf_seq *s, dlf_tensor **params, char (*names)[DLF_PARAM_NAME_MAX], int cap);
    /* the trainable parameters in PyTorch state_dict order, named "0.weight", "0.bias" ...;
       returns how many there are (fills at most cap; params and names may be NULL) */
DLFDEF int  dlf_seq_collect(const dlf_seq *s, dlf_params *p);
    /* append every tensor, buffers included, under its state_dict name; DLF_OK or NOMEM */
#ifndef DLF_NO_STDIO
DLFDEF void dlf_seq_print(const dlf_seq *s);             /* one line per layer, PyTorch style */
#endif

// >>stage7_init -----------------------------------------------------------------
// Where the first weights come from. A layer's output variance is
//     Var(y) = fan_in * Var(w) * E[x^2]
// so to keep activations at unit scale through depth, Var(w) must be about 1/fan_in
// (Glorot & Bengio 2010), and 2/fan_in after a ReLU, which zeroes half of x
// (He et al. 2015). fan_in = in * receptive field (R*S), fan_out = out * R*S.
// See lessons/02a_why_sqrt5.c, lessons/02b_initializing.c and docs/init.md.

typedef enum { DLF_FAN_IN = 0, DLF_FAN_OUT = 1 } dlf_fan_mode;

DLFDEF int   dlf_fan(const dlf_tensor *w, dlf_fan_mode mode); /* shape[1 or 0] * prod(shape[2:]) */
DLFDEF float dlf_kaiming_gain(float a);                       /* sqrt(2 / (1 + a^2)) */
DLFDEF void dlf_init_uniform(dlf_tensor *w, dlf_rng *r, float lo, float hi);   /* U[lo, hi) */
DLFDEF void dlf_init_normal(dlf_tensor *w, dlf_rng *r, float mean, float std); /* N(mean, std^2) */
DLFDEF void dlf_init_xavier_uniform(dlf_tensor *w, dlf_rng *r, float gain);
    /* U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) */
DLFDEF void dlf_init_xavier_normal(dlf_tensor *w, dlf_rng *r, float gain);
    /* N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)) */
DLFDEF void dlf_init_kaiming_uniform(dlf_tensor *w, dlf_rng *r, float a, dlf_fan_mode mode);
    /* U(-b, b), b = sqrt(3) * gain / sqrt(fan), gain = sqrt(2 / (1 + a^2)) */
DLFDEF void dlf_init_kaiming_normal(dlf_tensor *w, dlf_rng *r, float a, dlf_fan_mode mode);
    /* N(0, std^2), std = gain / sqrt(fan) */
DLFDEF void dlf_init_torch_default(dlf_tensor *w, dlf_tensor *b, dlf_rng *r);
    /* nn.Linear / nn.Conv2d reset_parameters: kaiming_uniform(a = sqrt(5)), which is
       U(+-1/sqrt(fan_in)), and the bias U(+-1/sqrt(fan_in)); b may be NULL */

// LSUV, layer-sequential unit-variance (Mishkin & Matas 2015, "All you need is a
// good init"; the course's 07a): with a fixed batch, run the model, look at one
// layer's output, subtract its mean from the bias and divide the weight by its std,
// until mean ~ 0 and std ~ 1. Then the next layer.
typedef dlf_tensor *(*dlf_lsuv_fn)(dlf_tape *t, void *user);
    /* run the model forward on a fixed batch and return the output to normalize */

typedef struct dlf_lsuv_cfg {  /* zero (or negative) fields mean the defaults; cfg may be NULL */
    float tol;               /* stop when |mean| and |std - 1| are below (default 1e-3) */
    int max_iter;            /* at most this many passes per phase, and rounds (default 10) */
    int verbose;             /* print mean and std after each layer */
} dlf_lsuv_cfg;

DLFDEF int dlf_lsuv_init(dlf_tensor *w, dlf_tensor *b, dlf_lsuv_fn fn, void *user,
                         const dlf_lsuv_cfg *cfg, float *mean_out, float *std_out);
    /* b -= mean until |mean| < tol (skipped when b is NULL), then w /= std until
       |std - 1| < tol; both again while the scaling moved the mean (at most
       max_iter rounds); returns the number of forward passes; final stats in *_out */
DLFDEF int dlf_seq_lsuv(dlf_seq *s, dlf_tensor *x, const dlf_lsuv_cfg *cfg);
    /* every LINEAR/CONV2D layer in order, measured after its activation when one
       follows it (as the course does); returns DLF_OK */

// >>stage8_losses ---------------------------------------------------------------
// Losses reduce to a 0-dim scalar, the mean over the batch (PyTorch's
// reduction='mean'). Class targets are class ids stored as floats, (N,), each checked
// to be a whole number in 0..C-1 (a NaN or out-of-range label panics, naming it).
// The _ex variants take a dlf_loss_cfg (NULL: the defaults above): the reduction
// ('mean', 'sum', 'none'), and for NLL and cross-entropy class weights and ignore_index.

typedef enum dlf_reduction {
    DLF_REDUCTION_MEAN = 0,  /* the mean (default); with class weights sum_i w_i l_i / sum_i w_i */
    DLF_REDUCTION_SUM,       /* the sum of the per-element (per-row) losses */
    DLF_REDUCTION_NONE       /* no reduction: the losses themselves, pred's shape ((N,) for NLL, CE) */
} dlf_reduction;

typedef struct dlf_loss_cfg {   /* zeroed: PyTorch's defaults */
    dlf_reduction reduction;    /* MEAN (0), SUM, NONE */
    dlf_tensor *weight;         /* NLL, CE: (C,) weight of each class (PyTorch's weight=), read
                                   only, no gradient; NULL: all 1. Mean: divided by the sum of
                                   the weights of the targets not ignored */
    int use_ignore_index;       /* NLL, CE: 1: a target equal to ignore_index adds no loss, no
                                   gradient and no weight. 0: nothing is ignored, every target
                                   must be a valid id (PyTorch's default ignore_index=-100 matches
                                   no valid id; set 1 and -100 to skip -100 labels as it does) */
    int ignore_index;           /* the class id to ignore when use_ignore_index (any int) */
} dlf_loss_cfg;

DLFDEF dlf_tensor *dlf_mse_loss(dlf_tape *t, dlf_tensor *pred, dlf_tensor *target);
    /* L = mean (pred - target)^2; the shapes must be equal (no broadcasting: (N,1)
       against (N,) is the classic silent bug, so it is an error here) */
DLFDEF dlf_tensor *dlf_l1_loss(dlf_tape *t, dlf_tensor *pred, dlf_tensor *target);  /* L = mean |pred - target| */
DLFDEF dlf_tensor *dlf_nll_loss(dlf_tape *t, dlf_tensor *logp, dlf_tensor *target);
    /* L = -1/N sum_i logp[i][target_i]; logp (N,C) log-probabilities, target (N,) */
DLFDEF dlf_tensor *dlf_cross_entropy(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target);
    /* L = 1/N sum_i (logsumexp_j x[i][j] - x[i][target_i]) = nll(log_softmax(x)), fused;
       dL/dx = (softmax(x) - onehot(target)) / N */
DLFDEF dlf_tensor *dlf_bce_with_logits(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target);
    /* L = mean [max(x,0) - x*y + log(1 + e^-|x|)] = mean BCE(sigmoid(x), y), stable for any x */
DLFDEF dlf_tensor *dlf_bce_loss(dlf_tape *t, dlf_tensor *prob, dlf_tensor *target);
    /* L = mean -[y max(log p, -100) + (1-y) max(log(1-p), -100)]: F.binary_cross_entropy on
       probabilities p in [0, 1] (anything else panics), logs clamped at -100 as PyTorch does;
       dL/dp = (p - y) / max(p(1-p), 1e-12) / n. Prefer dlf_bce_with_logits after a sigmoid */
DLFDEF dlf_tensor *dlf_mse_loss_ex(dlf_tape *t, dlf_tensor *pred, dlf_tensor *target, const dlf_loss_cfg *cfg);
DLFDEF dlf_tensor *dlf_l1_loss_ex(dlf_tape *t, dlf_tensor *pred, dlf_tensor *target, const dlf_loss_cfg *cfg);
DLFDEF dlf_tensor *dlf_bce_with_logits_ex(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target, const dlf_loss_cfg *cfg);
DLFDEF dlf_tensor *dlf_bce_loss_ex(dlf_tape *t, dlf_tensor *prob, dlf_tensor *target, const dlf_loss_cfg *cfg);
    /* the elementwise losses with cfg's reduction (weight and ignore_index must be unset) */
DLFDEF dlf_tensor *dlf_nll_loss_ex(dlf_tape *t, dlf_tensor *logp, dlf_tensor *target, const dlf_loss_cfg *cfg);
DLFDEF dlf_tensor *dlf_cross_entropy_ex(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target, const dlf_loss_cfg *cfg);
    /* with cfg's reduction, class weights and ignore_index, as F.nll_loss / F.cross_entropy */
DLFDEF float dlf_accuracy(const dlf_tensor *logits, const dlf_tensor *target);
    /* fraction of rows whose argmax (first on ties) equals the target; no tape */
DLFDEF dlf_tensor *dlf_cross_entropy_soft(dlf_tape *t, dlf_tensor *logits, dlf_tensor *q);
    /* soft targets: L = 1/N sum_i sum_j q[i][j] (logsumexp_k x[i][k] - x[i][j]), q (N,C) rows of
       probabilities (PyTorch's F.cross_entropy with a probability target);
       dL/dx = (softmax(x) * sum_j q[i][j] - q) / N, dL/dq = (logsumexp - x) / N */
DLFDEF dlf_tensor *dlf_cross_entropy_smooth(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target, float eps);
    /* label smoothing: soft targets q = (1 - eps) onehot(target) + eps / C
       (F.cross_entropy(x, y, label_smoothing=eps)); eps in [0, 1] */

// >>stage9_norm -----------------------------------------------------------------
// Normalization (lesson 07, docs/norm.md). Every one of them computes
//     xhat = (x - mean) / sqrt(var + eps),   y = weight * xhat + bias
// and they differ only in which elements share a mean and a variance (the biased
// one, divided by M, like PyTorch's):
//     BatchNorm     per channel c, over (N, H, W)       M = N*H*W
//     LayerNorm     per item, over its last D values    M = D
//     GroupNorm     per item and group of C/G channels  M = (C/G)*H*W
//     InstanceNorm  per item and channel (GroupNorm with G = C)
// weight and bias are per channel (per value for LayerNorm), and may be NULL (no
// affine). In the backward, with dxhat = dy * weight, every one of them gives
//     dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
//                  term 1   term 2          term 3
// term 2 is the path through the mean, term 3 the path through the variance.
// BatchNorm in eval mode (dlf_tape_set_training(t, 0)) uses its running statistics
// instead, so terms 2 and 3 vanish. Shapes: x (N,C) or (N,C,L) or (N,C,H,W).


DLFDEF dlf_tensor *dlf_batchnorm(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, const dlf_bn_state *st);
    /* training: batch statistics, and st's running ones updated (st may be NULL: no
       tracking, as track_running_stats=False); eval: st's running statistics */
DLFDEF dlf_tensor *dlf_batchnorm_naive(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b,
                                       const dlf_bn_state *st);
    /* the same straight from the formulas, forward and backward (one value at a time, in
       double): the reference for dlf_batchnorm's fused loops */
DLFDEF dlf_tensor *dlf_layernorm(dlf_tape *t, dlf_tensor *x, int d, dlf_tensor *w, dlf_tensor *b, float eps);
    /* normalize each item over its last d values (normalized_shape); w, b (d) or NULL */
DLFDEF dlf_tensor *dlf_groupnorm(dlf_tape *t, dlf_tensor *x, int groups, dlf_tensor *w, dlf_tensor *b, float eps);
    /* x (N,C,...) with C % groups == 0; w, b (C) or NULL */
DLFDEF dlf_tensor *dlf_instancenorm(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, float eps);
    /* dlf_groupnorm with groups = C (InstanceNorm2d; no running statistics) */

// RunningBatchNorm (the course's lesson 07): BatchNorm that normalizes with running
// sums instead of the batch's own statistics, so it trains at batch size 2. Each
// training step, per channel, with s = sum x, ss = sum x^2 over the batch (M values):
//     mom1 = 1 - (1 - momentum) / sqrt(N - 1)          (a smaller batch moves less)
//     sums = lerp(sums, s, mom1)   sqrs = lerp(sqrs, ss, mom1)   count = lerp(count, M, mom1)
//     dbias = dbias * (1 - mom1) + mom1,   batch += N,   step += 1
//     mean = sums / count,   var = sqrs / count - mean^2  (>= 0.01 while batch < 20; >= 0 always)
// (sums, sqrs and count are divided by dbias while step < 100, the debiasing; it
// cancels in mean and var.) y = (x - mean) / sqrt(var + eps) * mults + adds.
// Gradients flow into this batch's share of the sums: d mean / dx_i = mom1 / count,
// so its backward is BatchNorm's with 1/M replaced by k = mom1 / count.
// (dlf_bn_state and dlf_rbn_state are declared with the layers, in stage 6.)

DLFDEF dlf_tensor *dlf_running_batchnorm(dlf_tape *t, dlf_tensor *x, dlf_tensor *mults, dlf_tensor *adds,
                                         const dlf_rbn_state *st);  /* mults, adds (C,1,1) */

// >>stage10_dropout ---------------------------------------------------------------
// Inverted dropout (Srivastava et al. 2014): in training mode each value is kept
// with probability 1 - p and scaled by 1/(1 - p), so the expected output is x and
// eval mode is the identity (it returns x itself). Dropout2d drops whole channels
// (N,C,H,W) -> one draw per (n, c). The mask comes from the tape's rng and lives in
// the arena: no allocation per step, and the same seed gives the same masks.
//     y = x * m,  m = keep / (1 - p);   backward: dx = dy * m

DLFDEF dlf_tensor *dlf_dropout(dlf_tape *t, dlf_tensor *x, float p);
DLFDEF dlf_tensor *dlf_dropout2d(dlf_tape *t, dlf_tensor *x, float p);
DLFDEF dlf_tensor *dlf_dropout_mask(dlf_tape *t, dlf_tensor *x, const dlf_tensor *keep, float p);
    /* with a given 0/1 keep mask: keep the shape of x (dropout) or (N,C) (dropout2d);
       used by the tests to replay PyTorch's masks */

// >>stage11_optim ---------------------------------------------------------------
// Optimizers (lesson 09, docs/optim.md): one type for every kind, a switch on the
// kind in the step, like the op dispatch of the tape. Each update is PyTorch's, float
// operation for float operation (torch.optim, single-tensor path); for parameter p
// with gradient g at its step t (t = 1 first), hyper-parameters of p's group:
//   SGD      g += wd p;  b = t==1 ? g : mu b + (1 - tau) g;  g = nesterov ? g + mu b : b;  p -= lr g
//   RMSProp  g += wd p;  v = alpha v + (1 - alpha) g^2;  (centered: a = alpha a + (1 - alpha) g,
//            v' = v - a^2);  d = sqrt(v') + eps;  mu > 0: b = mu b + g / d, p -= lr b;  else p -= lr g / d
//   Adagrad  g += wd p;  s += g^2;  p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)
//   Adam     g += wd p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//            p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   AdamW    p *= 1 - lr wd (decoupled, Loshchilov & Hutter 2019), then Adam without the g += wd p
//   LAMB     m, v as Adam;  u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd p;
//            p -= lr * min(rms(p) / rms(u), 10) * u   (You et al. 2019; the course's lamb_step;
//            ratio 1 when either rms is 0, as the paper's implementations do)
// Weight decay two ways: SGD, RMSProp, Adagrad and Adam add wd * p to the gradient (an
// L2 penalty, which the adaptive kinds then rescale); AdamW decays the weights apart
// from the gradient. decoupled_wd = 1 makes any kind decay the AdamW way.
// State per parameter, named as PyTorch names it (checkpoints use the names):
// momentum_buffer, square_avg, grad_avg, sum, exp_avg, exp_avg_sq, and step.
// Everything is allocated by dlf_optim_create: a step allocates nothing.

typedef enum dlf_optim_kind {
    DLF_OPTIM_SGD = 0,
    DLF_OPTIM_RMSPROP,
    DLF_OPTIM_ADAGRAD,
    DLF_OPTIM_ADAM,
    DLF_OPTIM_ADAMW,
    DLF_OPTIM_LAMB,
    DLF_OPTIM_KIND_COUNT
} dlf_optim_kind;

/* The hyper-parameters of one parameter group. Zero means default: a field left 0
   (lr, alpha, beta1, beta2, eps) gets the kind's default (PyTorch's) at create, so
   lr = 0 trains with 1e-3 (1e-2 for RMSProp and Adagrad), never with 0.
   dlf_optim_defaults shows the values. The values in use live in o->groups[g] and
   may be changed freely between steps (a schedule does): a field that must really be
   0 (lr = 0, beta1 = 0) is set there after create, e.g.
   dlf_optim_set_hyper(o, -1, DLF_HYPER_LR, 0.0f). The other fields' default is 0. */
typedef struct dlf_optim_cfg {
    float lr;                /* learning rate; 0: 1e-3 (SGD, Adam, AdamW, LAMB), 1e-2 (RMSProp, Adagrad) */
    float weight_decay;      /* wd (default 0 for every kind; PyTorch's AdamW uses 1e-2: pass it) */
    int decoupled_wd;        /* 1: p *= 1 - lr wd instead of g += wd p (AdamW always decouples) */
    float momentum;          /* mu of SGD and RMSProp (default 0) */
    float dampening;         /* tau of SGD (default 0) */
    int nesterov;            /* SGD: Nesterov momentum; needs momentum > 0 and dampening 0 */
    float alpha;             /* RMSProp smoothing (0.99) */
    int centered;            /* RMSProp: divide by the variance, not the second moment */
    float beta1, beta2;      /* Adam, AdamW, LAMB (0.9, 0.999) */
    float eps;               /* 1e-8 (Adam, AdamW, RMSProp), 1e-10 (Adagrad), 1e-6 (LAMB) */
    float lr_decay;          /* Adagrad (default 0) */
    float initial_accumulator_value; /* Adagrad: the sum's start (default 0) */
} dlf_optim_cfg;

#define DLF_OPTIM_MAX_GROUPS 8
#define DLF_OPTIM_MAX_STATE 3  /* most state buffers per parameter (centered RMSProp with momentum) */

typedef struct dlf_optim_param {
    dlf_tensor *p;                     /* the parameter, not owned */
    char name[DLF_PARAM_NAME_MAX];     /* its state_dict name ("" when created from a bare array) */
    int group;                         /* index into groups */
    float *state[DLF_OPTIM_MAX_STATE]; /* (p->size) each, or NULL: see dlf_optim_state_name */
    int step;                          /* PyTorch's state["step"]: updates this parameter received */
} dlf_optim_param;

typedef struct dlf_optim {
    dlf_optim_kind kind;                        /* which update */
    dlf_optim_cfg groups[DLF_OPTIM_MAX_GROUPS]; /* (n_groups) hyper-parameters in use */
    int n_groups;
    dlf_optim_param *params;                    /* (n_params) */
    int n_params;
    int steps;                                  /* dlf_optim_step calls so far */
} dlf_optim;

DLFDEF void dlf_optim_defaults(dlf_optim_kind kind, dlf_optim_cfg *cfg);  /* fill cfg's zero fields */
DLFDEF const char *dlf_optim_kind_name(dlf_optim_kind kind);  /* "sgd", "adam" ... */
DLFDEF int  dlf_optim_kind_from_name(const char *name);       /* the kind, or -1 */
DLFDEF const char *dlf_optim_state_name(dlf_optim_kind kind, int slot); /* "exp_avg" ...; NULL past the last */
DLFDEF dlf_optim *dlf_optim_create(dlf_optim_kind kind, dlf_tensor **params, int n_params, const dlf_optim_cfg *cfg);
    /* one group; NULL on OOM (dlf_last_error) */
DLFDEF dlf_optim *dlf_optim_create_groups(dlf_optim_kind kind, const dlf_params *pl, const dlf_optim_cfg *groups,
                                          int n_groups);
    /* the trainable tensors of pl (buffers skipped), each in group pl->items[i].group,
       with groups[g] its hyper-parameters; names kept for checkpoints */
DLFDEF void dlf_optim_free(dlf_optim *o);
DLFDEF int  dlf_optim_step(dlf_optim *o);        /* one update of every parameter with a grad; DLF_OK
                                                    (it allocates nothing), DLF_ERR_ARG when o is NULL */
DLFDEF void dlf_optim_zero_grad(dlf_optim *o);   /* every parameter's grad = 0 */
DLFDEF float dlf_clip_grad_norm(dlf_tensor **params, int n, float max_norm);
    /* clip_grad_norm_: total = sqrt(sum of every grad^2); when total > max_norm, every
       grad *= max_norm / (total + 1e-6); returns total (before clipping) */
DLFDEF float dlf_optim_clip_grad_norm(dlf_optim *o, float max_norm); /* the same over o's parameters */

/* One hyper-parameter of a group by name, for schedules and recorders that work with
   any kind: "mom" is SGD's and RMSProp's momentum, Adam's, AdamW's and LAMB's beta1
   (what OneCycleLR's cycle_momentum cycles); Adagrad has none (get 0, set ignored). */
typedef enum dlf_hyper {
    DLF_HYPER_LR = 0,        /* lr */
    DLF_HYPER_MOM,           /* momentum or beta1 */
    DLF_HYPER_WD,            /* weight_decay */
    DLF_HYPER_BETA2,         /* beta2 (Adam, AdamW, LAMB), RMSProp's alpha */
    DLF_HYPER_COUNT
} dlf_hyper;

DLFDEF const char *dlf_hyper_name(dlf_hyper h);                       /* "lr", "mom", "wd", "beta2" */
DLFDEF float dlf_optim_get_hyper(const dlf_optim *o, int group, dlf_hyper h);
DLFDEF void  dlf_optim_set_hyper(dlf_optim *o, int group, dlf_hyper h, float v); /* group < 0: every group */
#ifndef DLF_NO_STDIO
DLFDEF void dlf_optim_print_cfg(const dlf_optim *o); /* the values actually used, one line per group */
#endif

// >>stage12_schedules -----------------------------------------------------------
// Schedules (lesson 05, docs/schedules.md): a hyper-parameter's value at step i of a
// run of `total` steps. A schedule is a plain value (no allocation, copy it freely):
// up to DLF_SCHED_MAX_PHASES phases, each a shape between a start and an end value,
//   const   start
//   linear  start + (end - start) p
//   cos     end + (start - end) (1 + cos(pi p)) / 2
//   exp     start (end / start)^p        (start and end > 0)
// where p in [0, 1] is the position inside the phase. How p comes from the step is
// the schedule's kind:
//   FRAC       phases by fraction of the run, pos = step / total (fastai's
//              combine_scheds); a single phase gives CosineAnnealingLR(T_max = total),
//              LinearLR(total_iters = total), ExponentialLR(gamma = (end/start)^(1/total))
//   STEPS      phases by step counts, the last one running to the end of the run
//              (SequentialLR: a linear warm-up of n steps, then anything)
//   ONE_CYCLE  OneCycleLR's own arithmetic: phase i ends at step pct_i * total - k_i,
//              the last at total - 1 (so a very short run keeps a negative first end)
//   SGDR       CosineAnnealingWarmRestarts: cosine from base to eta_min over T_0
//              steps, restarts, each cycle T_mult times longer
// p is clamped to [0, 1]: pos = 1.0 (or a step past the end) gives the last phase's
// end value, never an index past the last phase. Every kind is checked step by step
// against torch.optim.lr_scheduler (tests/test_sched.c, tools/gen_sched.py).

#define DLF_SCHED_MAX_PHASES 4

typedef enum dlf_shape {
    DLF_SHAPE_CONST = 0, DLF_SHAPE_LINEAR, DLF_SHAPE_COS, DLF_SHAPE_EXP
} dlf_shape;

typedef enum dlf_schedule_kind {
    DLF_SCHEDULE_FRAC = 0, DLF_SCHEDULE_STEPS, DLF_SCHEDULE_ONE_CYCLE, DLF_SCHEDULE_SGDR
} dlf_schedule_kind;

typedef struct dlf_sched_phase {
    dlf_shape shape;
    double start, end;       /* the values at p = 0 and p = 1 */
    double until;            /* where the phase ends: FRAC a fraction of the run (the last 1),
                                STEPS a step count (the last: the run's end), ONE_CYCLE the
                                fraction pct_i (the end step is until * total - off) */
    double off;              /* ONE_CYCLE only: k_i above */
} dlf_sched_phase;

typedef struct dlf_schedule {
    dlf_schedule_kind kind;
    int n;                   /* phases in use (SGDR: 0) */
    dlf_sched_phase ph[DLF_SCHED_MAX_PHASES];
    double base, eta_min;    /* SGDR */
    long T_0;                /* SGDR: the first cycle's length in steps */
    int T_mult;              /* SGDR: each cycle is T_mult times the previous one (>= 1) */
} dlf_schedule;

DLFDEF double dlf_schedule_at(const dlf_schedule *s, long step, long total); /* value at step (0-based) of total */
DLFDEF dlf_schedule dlf_sched_const(double v);
DLFDEF dlf_schedule dlf_sched_linear(double start, double end);
DLFDEF dlf_schedule dlf_sched_cos(double start, double end);
DLFDEF dlf_schedule dlf_sched_exp(double start, double end);
DLFDEF dlf_schedule dlf_sched_one_cycle(double max_lr, double pct_start, double div_factor,
                                        double final_div_factor, int three_phase);
    /* OneCycleLR's lr: max_lr / div_factor -> max_lr -> max_lr / div_factor / final_div_factor
       (three_phase: up, back down to max_lr / div_factor, then the final annealing).
       pct_start <= 0: 0.3, div_factor <= 0: 25, final_div_factor <= 0: 1e4 (PyTorch's defaults) */
DLFDEF dlf_schedule dlf_sched_one_cycle_mom(double base_mom, double max_mom, double pct_start,
                                            int three_phase);
    /* its momentum (cycle_momentum, or Adam's beta1): max_mom -> base_mom -> max_mom, the
       mirror of the lr (0.85 and 0.95 are PyTorch's defaults; pass them) */
DLFDEF dlf_schedule dlf_sched_sgdr(double base, double eta_min, long T_0, int T_mult);
DLFDEF dlf_schedule dlf_sched_combine(const double *fracs, const dlf_schedule *parts, int n);
    /* fastai's combine_scheds: part i (a one-phase FRAC schedule: const, linear, cos, exp)
       covers the fraction fracs[i] of the run (the fractions should add up to 1) */
DLFDEF dlf_schedule dlf_sched_sequential(const dlf_schedule *parts, const long *milestones, int n);
    /* SequentialLR: part i (one-phase) runs from step milestones[i-1] (0 for the first) to
       milestones[i], the last one from milestones[n-2] to the end of the run */
DLFDEF dlf_schedule dlf_sched_warmup(long steps, double start_factor, dlf_schedule after);
    /* linear warm-up from start_factor * v0 to v0 over `steps` steps, then `after` (a
       one-phase schedule whose first value is v0) over the rest of the run */
DLFDEF dlf_schedule dlf_sched_with_shape(dlf_schedule s, dlf_shape from, dlf_shape to);
    /* every phase of shape `from` gets shape `to` (OneCycleLR's anneal_strategy "linear":
       dlf_sched_with_shape(s, DLF_SHAPE_COS, DLF_SHAPE_LINEAR)) */

// >>stage13_data ----------------------------------------------------------------
// IDX files (the format of MNIST and Fashion-MNIST; docs/data.md has it field by
// field): a 4-byte magic 00 00 08 D (08 = unsigned bytes, D = number of dims), D
// big-endian uint32 dims, then the bytes, row-major. Labels are 0x00000801 (N),
// images 0x00000803 (N, rows, cols). The reader checks the magic, every dim, and
// that the file holds exactly 4 + 4D + prod(dims) bytes; anything else is
// DLF_ERR_FORMAT (DLF_ERR_IO when the file cannot be read) with a message naming
// the file and the problem. It never reads past what it checked.
//
// A dataset keeps the pixels as bytes, (N, rows, cols) uint8: all of MNIST is 55 MB
// this way, 4x that as floats. Batches are converted and normalized on the fly,
//     x = (pixel / 255 - mean) / std,
// with the mean and std of the *training* pixels, computed once from the bytes.
// A loader walks a dataset in batches: a seeded shuffle at each epoch start
// (dlf_rng_permutation), drop_last, and a preallocated float batch (N,1,rows,cols)
// plus labels (N) as floats, so a training step allocates nothing.
//
// General datasets (docs/data.md): the inputs are either bytes (N, C, H, W) (images
// with C channels, pixel/255 before normalization) or floats (N, C, H, W) or (N, F)
// (a table: `table` = 1, its F features in `channels`, rows = cols = 1), and the
// labels either class ids (uint8 `labels` from IDX files, or int32 `ids`) or float
// targets (N, T) (regression, several outputs). The loader normalizes per channel
// (per feature for a table), x = (v - mean[c]) / std[c] with v = pixel/255 or the
// float, then calls the config's transform hook on the batch (augmentation). The
// batch is x (N, C, H, W) or (N, F), y (N) class ids as floats or (N, T) targets.
// A CSV reader (dlf_csv_parse, dlf_csv_load) turns a numeric table into a dataset.

#define DLF_IDX_LABELS 0x00000801u  /* magic of a label file: unsigned bytes, 1 dim */
#define DLF_IDX_IMAGES 0x00000803u  /* magic of an image file: unsigned bytes, 3 dims */

typedef struct dlf_idx {
    uint8_t *data;           /* (dims[0], ..., dims[ndim-1]) the payload, row-major; owned */
    int ndim;                /* 1 (labels) or 3 (images) */
    int dims[3];             /* dims[0] is the item count; unused entries are 1 */
    size_t size;             /* bytes in data = product of the dims */
} dlf_idx;

DLFDEF int  dlf_idx_parse(const void *bytes, size_t n_bytes, const char *name, dlf_idx *out); /* copies; DLF_OK or error */
#ifndef DLF_NO_STDIO
DLFDEF int  dlf_idx_load(const char *path, dlf_idx *out);  /* DLF_OK or DLF_ERR_IO / _FORMAT / _NOMEM */
#endif
DLFDEF void dlf_idx_free(dlf_idx *x);

typedef struct dlf_dataset {
    uint8_t *images;         /* (n, channels, rows, cols) pixels 0..255; NULL when `features` */
    uint8_t *labels;         /* (n) class ids 0..255; NULL when `ids` or `targets` */
    int n;                   /* items */
    int rows, cols;          /* image size (28, 28 for MNIST); 1, 1 for a table */
    int n_classes;           /* 1 + the largest class id; 0 for float targets */
    int owns;                /* 1: dlf_dataset_free frees the buffers; 0: a view */
    /* general datasets; all 0 / NULL is the single-channel IDX kind above */
    int channels;            /* channels per item (0 means 1); a table's features */
    int table;               /* 1: items are vectors of `channels` features, batches (N, channels) */
    float *features;         /* (n, channels, rows, cols) floats, instead of images */
    int32_t *ids;            /* (n) class ids 0..n_classes-1, instead of labels */
    float *targets;          /* (n, n_targets) float targets, instead of class ids */
    int n_targets;           /* floats per target (0 with class ids) */
} dlf_dataset;

DLFDEF int  dlf_dataset_from_idx(dlf_dataset *d, dlf_idx *images, dlf_idx *labels, const char *name); /* takes both buffers */
DLFDEF void dlf_dataset_free(dlf_dataset *d);
DLFDEF dlf_dataset dlf_dataset_view(const dlf_dataset *d, int start, int count); /* items [start, start+count) */
DLFDEF void dlf_dataset_stats(const dlf_dataset *d, float *mean, float *std); /* of pixel/255, population std */
DLFDEF void dlf_dataset_fill(const dlf_dataset *d, const int *idx, int count, const float *lut,
                             dlf_tensor *x, dlf_tensor *y);  /* x[i] = lut[pixels of idx[i]], y[i] = label;
                                                                x and y get shape[0] = count */
DLFDEF void dlf_normalize_lut(float lut[256], float mean, float std); /* lut[v] = (v/255 - mean)/std */

/* General datasets. Both constructors copy their inputs; the dataset owns the copies.
   y holds class ids as floats (N) when n_classes > 0 (each an integer in
   [0, n_classes)), or float targets (N) or (N, T) when n_classes == 0.
   DLF_OK or DLF_ERR_NOMEM; wrong shapes or ids panic. */
DLFDEF int  dlf_dataset_from_tensor(dlf_dataset *d, const dlf_tensor *x, const dlf_tensor *y, int n_classes);
    /* x (N, F): a table; x (N, C, H, W): float images */
DLFDEF int  dlf_dataset_from_images(dlf_dataset *d, const uint8_t *pixels, int n, int channels, int rows,
                                    int cols, const dlf_tensor *y, int n_classes); /* pixels (n, C, H, W) */
DLFDEF int  dlf_dataset_channels(const dlf_dataset *d);   /* channels per item (a table's features) */
DLFDEF int  dlf_dataset_item_size(const dlf_dataset *d);  /* floats per item: channels * rows * cols */
DLFDEF int  dlf_dataset_subset(const dlf_dataset *d, const int *idx, int count, dlf_dataset *out);
    /* a copy of items idx[0..count), in that order; DLF_OK or DLF_ERR_NOMEM */
DLFDEF int  dlf_dataset_split(const dlf_dataset *d, double test_frac, uint64_t seed, dlf_dataset *train,
                              dlf_dataset *test);
    /* a seeded random split (copies): test gets ceil(test_frac * n) items (scikit-learn's
       train_test_split count), train the rest; DLF_OK or DLF_ERR_NOMEM */
DLFDEF void dlf_dataset_channel_stats(const dlf_dataset *d, float *mean, float *std);
    /* (channels) each channel's (a table: each feature's) mean and population std over all
       items and positions, of pixel/255 for bytes, of the value for floats */

/* A numeric CSV table (docs/data.md): fields separated by `delim`, one row per line
   ("\n" or "\r\n"), every row with the same number of fields, every field a decimal
   number ([+-]digits[.digits][(e|E)[+-]digits], spaces around it allowed). NaN, inf,
   empty fields, hex and anything else are errors naming the file, line and column.
   One column is the label; the others become the features of a table dataset. */
typedef struct dlf_csv_cfg {
    int header;              /* 0: detect (a first row with no number in it is a header, one of
                                numbers only a row, a mix an error), 1: the first row is a header,
                                -1: no header */
    int skip_lines;          /* lines skipped before the header or the first row */
    int label_col;           /* the label's column, 0-based; negative counts from the end (-1: last) */
    int regression;          /* 1: the label is a float target (n_targets 1); 0: a class id, an
                                integer in [0, 2^24) */
    char delim;              /* field separator (default ',') */
} dlf_csv_cfg;

DLFDEF int  dlf_csv_parse(const char *text, size_t len, const char *name, const dlf_csv_cfg *cfg,
                          dlf_dataset *out);  /* DLF_OK, DLF_ERR_FORMAT (bad table) or DLF_ERR_NOMEM */
#ifndef DLF_NO_STDIO
DLFDEF int  dlf_csv_load(const char *path, const dlf_csv_cfg *cfg, dlf_dataset *out);
    /* DLF_OK or DLF_ERR_IO / _FORMAT / _NOMEM; messages name path, line and column */
#endif

/* Called on every batch after it is filled and normalized: x and y may be changed in
   place (same shapes), e.g. augmentation with the program's own rng in user. */
typedef void (*dlf_transform_fn)(dlf_tensor *x, dlf_tensor *y, void *user);

typedef struct dlf_mnist_cfg {  /* zero fields mean the defaults; cfg may be NULL */
    int n_valid;             /* training items held out, from the end (default n/6: 10000 of 60000); < 0: none */
    const char *prefix;      /* file-name prefix (default ""; the test subset uses "mnist-sub-") */
    const char *test_split;  /* the test files' middle name (default "t10k"; the test subset uses "test") */
} dlf_mnist_cfg;

typedef struct dlf_mnist {
    dlf_dataset all_train;   /* the whole train file; owns the bytes */
    dlf_dataset train;       /* view: the first n - n_valid items of all_train */
    dlf_dataset valid;       /* view: the last n_valid items (n = 0 when none) */
    dlf_dataset test;        /* the t10k files; owns its bytes */
    float mean;              /* mean of train's pixels / 255 (0.1310 for the default 50000; 0.1307 for all 60000) */
    float std;               /* their std (0.3085 for the default 50000; 0.3081 for all 60000) */
} dlf_mnist;

#ifndef DLF_NO_STDIO
DLFDEF int  dlf_mnist_load(dlf_mnist *m, const char *dir, const dlf_mnist_cfg *cfg); /* DLF_OK or error */
#endif
DLFDEF void dlf_mnist_free(dlf_mnist *m);

typedef struct dlf_loader_cfg {  /* zero fields mean the defaults (batch_size 0: 64; std 0: pixel/255); cfg may be NULL */
    int batch_size;          /* items per batch (default 64) */
    int shuffle;             /* 1: a new seeded permutation at each epoch start; 0: in order */
    int drop_last;           /* 1: skip the last batch when it is short */
    uint64_t seed;           /* shuffle seed; same seed, same order of every epoch */
    float mean, std;         /* normalization of every channel (std 0: mean 0, std 1, i.e. pixel/255
                                for bytes, the value itself for floats) */
    const float *ch_mean;    /* (channels) per-channel (a table: per-feature) means; with ch_std they
                                replace mean and std; copied. NULL: mean and std above */
    const float *ch_std;     /* (channels) per-channel stds (a std <= 0 counts as 1) */
    dlf_transform_fn transform; /* NULL, or called on each batch after normalization */
    void *transform_user;    /* its user pointer */
} dlf_loader_cfg;

typedef struct dlf_loader {
    const dlf_dataset *ds;   /* the data, not owned */
    dlf_loader_cfg cfg;      /* the values in use */
    int *order;              /* (ds->n) the item index at each position of this epoch */
    int pos;                 /* next position in order; 0: the next call starts an epoch */
    int epoch;               /* epochs started so far */
    int n_batches;           /* batches per epoch */
    dlf_rng rng;             /* shuffle state, seeded once from cfg.seed */
    dlf_tensor *x;           /* (batch_size, C, rows, cols) or (batch_size, F) the current batch;
                                shape[0] shrinks for a short one */
    dlf_tensor *y;           /* (batch_size) its class ids as floats, or (batch_size, T) targets */
    float lut[256];          /* normalized value of each pixel byte (channel 0) */
    int channels;            /* channels per item (a table's features) */
    float *norm_mean;        /* (channels) the normalization in use, x = (v - mean) / std with */
    float *norm_std;         /* (channels)   v = pixel/255 for bytes; mean 0, std 1 when none */
    float *luts;             /* (channels * 256) byte datasets: each channel's table; else NULL */
} dlf_loader;

DLFDEF dlf_loader *dlf_loader_create(const dlf_dataset *ds, const dlf_loader_cfg *cfg); /* NULL on OOM */
DLFDEF void dlf_loader_free(dlf_loader *l);
DLFDEF int  dlf_loader_next(dlf_loader *l);  /* fills l->x, l->y; items in the batch, 0 at the end of an epoch */
DLFDEF void dlf_normalize(dlf_tensor *x, const float *mean, const float *std, int channels);
    /* in place, x (N, C, ...) or (N, F): x = (x - mean[c]) / std[c] along dim 1 (a std <= 0
       counts as 1); the loader's normalization, for inputs prepared outside a loader */
/* The usual three: a shuffled training loader (seeded) and in-order valid and test
   loaders with a larger batch, all normalized with the training set's mean and std.
   Any output may be NULL (not wanted). DLF_OK, or DLF_ERR_NOMEM with all freed. */
DLFDEF int  dlf_mnist_loaders(const dlf_mnist *m, int batch_size, int eval_batch_size, uint64_t seed,
                              dlf_loader **train, dlf_loader **valid, dlf_loader **test);

/* A loader's position in memory: this epoch's order, the next position, the epoch
   count and the shuffle rng. Restoring it makes the loader continue mid-epoch with
   exactly the batches it would have given (the LR finder puts the training loader
   back this way; checkpoints store the same fields, dlf_ckpt_add_loader). */
typedef struct dlf_loader_state {
    int *order;              /* (n) owned */
    int n, pos, epoch;
    dlf_rng rng;
} dlf_loader_state;

DLFDEF int  dlf_loader_get_state(const dlf_loader *l, dlf_loader_state *s); /* DLF_OK or DLF_ERR_NOMEM */
DLFDEF void dlf_loader_set_state(dlf_loader *l, const dlf_loader_state *s);
DLFDEF void dlf_loader_state_free(dlf_loader_state *s);

/* Data augmentation (the course's lesson 10, docs/augment.md): transforms of a float batch
   x (N,C,H,W), in place, each image drawing its own random numbers from r in a fixed order
   (same seed, same images). The transforms follow torchvision's definitions:
     flip          RandomHorizontalFlip(p)
     crop_pad      RandomCrop((H, W), padding=pad): pad with zeros, take a random H x W window
     resized_crop  RandomResizedCrop((H, W), scale, ratio): a random area fraction and aspect
                   ratio (10 tries, then the centre), resized back to H x W (bilinear)
     affine        with probability p, RandomAffine(degrees, translate, scale): rotation about
                   the centre, a whole-pixel shift, a zoom; bilinear, zero outside
     erase         RandomErasing(p, scale, ratio, value): a random rectangle set to value
     normalize     Normalize(mean, std) per channel
   A dlf_augment applies an ordered list of them; its scratch (one image) is made once. */
#define DLF_AUG_MAX 8
#define DLF_AUG_MAX_C 4
typedef enum dlf_aug_kind {
    DLF_AUG_FLIP = 1, DLF_AUG_CROP_PAD, DLF_AUG_RESIZED_CROP, DLF_AUG_AFFINE, DLF_AUG_ERASE, DLF_AUG_NORMALIZE
} dlf_aug_kind;
typedef struct dlf_aug {
    dlf_aug_kind kind;
    float p;                 /* probability per image (flip, affine, erase) */
    int pad;                 /* crop_pad */
    float lo, hi;            /* resized_crop: area fraction range; erase: the same; affine: zoom range */
    float ratio_lo, ratio_hi;/* resized_crop and erase: aspect ratio (w/h) range, drawn log-uniform */
    float degrees;           /* affine: rotation drawn from U(-degrees, degrees) */
    float translate;         /* affine: shift up to translate*W and translate*H pixels, rounded */
    float value;             /* erase: the fill */
    int channels;            /* normalize: C */
    float mean[DLF_AUG_MAX_C], std[DLF_AUG_MAX_C];
} dlf_aug;
DLFDEF dlf_aug dlf_aug_flip(float p);
DLFDEF dlf_aug dlf_aug_crop_pad(int pad);
DLFDEF dlf_aug dlf_aug_resized_crop(float scale_lo, float scale_hi, float ratio_lo, float ratio_hi);
DLFDEF dlf_aug dlf_aug_affine(float p, float degrees, float translate, float scale_lo, float scale_hi);
DLFDEF dlf_aug dlf_aug_erase(float p, float area_lo, float area_hi, float ratio_lo, float ratio_hi, float value);
DLFDEF dlf_aug dlf_aug_normalize(int channels, const float *mean, const float *std);
DLFDEF int dlf_aug_image(const dlf_aug *a, float *img, int C, int H, int W, dlf_rng *r, float *scratch);
    /* one transform on one image (C,H,W); scratch: C*H*W floats. DLF_OK or DLF_ERR_ARG */

typedef struct dlf_augment {
    dlf_aug steps[DLF_AUG_MAX];  /* applied in this order */
    int n;
    float *scratch;              /* one image, made by the first apply (or dlf_augment_reserve) */
    size_t scratch_n;
} dlf_augment;
DLFDEF void dlf_augment_init(dlf_augment *a);
DLFDEF int  dlf_augment_add(dlf_augment *a, dlf_aug step);   /* DLF_OK, DLF_ERR_ARG (full or a bad value) */
DLFDEF int  dlf_augment_reserve(dlf_augment *a, int C, int H, int W);  /* DLF_OK or DLF_ERR_NOMEM */
DLFDEF int  dlf_augment_apply(dlf_augment *a, dlf_tensor *x, dlf_rng *r);
    /* every step on every image of x (N,C,H,W), in place; DLF_OK, DLF_ERR_NOMEM or DLF_ERR_ARG */
DLFDEF void dlf_augment_free(dlf_augment *a);

/* Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", 2018; the course's
   lesson 10b): each item i of a batch is mixed with a partner perm(i) of the same batch,
       x_i <- lam_i x_i + (1 - lam_i) x_perm(i),   lam_i = max(b, 1 - b),  b ~ Beta(alpha, alpha)
   (max: the item keeps the larger share, so its own label stays the main one), and the
   loss mixes the same way: lam_i CE(x_i, y_i) + (1 - lam_i) CE(x_i, y_perm(i)), which is
   cross-entropy against the soft target lam_i onehot(y_i) + (1 - lam_i) onehot(y_perm(i)). */
typedef struct dlf_mixup {
    float alpha;
    int cap;                 /* most items in a batch */
    size_t item;             /* floats per item */
    int n;                   /* items in the last mixed batch */
    int *perm;               /* (cap) each item's partner */
    float *lam;              /* (cap) each item's share */
    float *buf;              /* (cap * item) the batch before mixing */
    float *y, *y2;           /* (cap) labels and the partners' labels */
} dlf_mixup;
DLFDEF int  dlf_mixup_init(dlf_mixup *m, float alpha, int max_batch, int item_floats); /* DLF_OK, NOMEM, ARG */
DLFDEF void dlf_mixup_free(dlf_mixup *m);
DLFDEF int  dlf_mixup_apply(dlf_mixup *m, dlf_tensor *x, const dlf_tensor *y, dlf_rng *r);
    /* mixes x (N, ...) in place and keeps the labels y (N,) of both; DLF_OK or DLF_ERR_ARG */
DLFDEF dlf_tensor *dlf_mixup_loss(dlf_tape *t, const dlf_mixup *m, dlf_tensor *logits);
    /* the mixed cross-entropy of the last mixed batch: soft targets, dlf_cross_entropy_soft */

// >>stage14_learner -------------------------------------------------------------
// The training loop, in pieces a program can use or write out itself (lesson 03
// writes it by hand):  for each epoch { for each batch { reset tape; logits =
// model(x); loss = loss_fn(logits, y); backward; set lr; step; zero grads }
// evaluate on the validation set }. A progress line shows batch i/N, the running
// loss, items/s and the ETA; on a terminal it redraws in place with '\r', otherwise
// (a log file, CI) it prints one line per epoch. Then the Learner (below): the same
// loop with events that callbacks extend; dlf_fit is a thin wrapper over it.

typedef dlf_tensor *(*dlf_model_fn)(dlf_tape *t, dlf_tensor *x, void *model);
    /* a loader's batch x ((N,C,H,W) or (N,F)) -> logits (N,C) or outputs (N,T) */
typedef dlf_tensor *(*dlf_loss_fn)(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target); /* -> scalar */

/* The loss a dataset's labels call for: dlf_cross_entropy for class ids, dlf_mse_loss
   for float targets. dlf_fit, dlf_learner_fit and dlf_learner_validate make the same
   choice when their loss function is NULL, by each batch's labels: y (N) class ids,
   y (N, T) float targets. */
DLFDEF dlf_loss_fn dlf_default_loss(const dlf_dataset *d);

typedef enum dlf_sched {
    DLF_SCHED_CONSTANT = 0,  /* lr all the way */
    DLF_SCHED_ONE_CYCLE      /* cosine lr/25 -> lr over pct_start, then cosine -> lr/25e4 (OneCycleLR) */
} dlf_sched;

DLFDEF float  dlf_sched_lr(dlf_sched kind, float lr, float pct_start, int step, int total); /* lr at step (0-based) */
DLFDEF double dlf_seconds(void);        /* wall clock, for timing */
DLFDEF int    dlf_stdout_is_tty(void);  /* 0 where unknown */

typedef struct dlf_progress {
    char label[32];          /* "epoch 2/5" */
    int total;               /* batches in the epoch */
    int done;                /* batches finished */
    long items;              /* items seen */
    double loss_sum;         /* sum of batch losses; running loss = loss_sum / done */
    double t_start;          /* dlf_seconds() at the start */
    double t_drawn;          /* last redraw */
    double t_end;            /* when the last batch finished (0 until then): "took" excludes evaluation */
    int tty;                 /* redraw in place with '\r' */
    int quiet;               /* print nothing */
} dlf_progress;

DLFDEF void dlf_progress_start(dlf_progress *p, const char *label, int total, int quiet);
DLFDEF void dlf_progress_step(dlf_progress *p, int items, float loss);
DLFDEF void dlf_progress_end(dlf_progress *p, const char *extra);  /* the epoch's last line */

typedef struct dlf_fit_cfg {  /* zero fields mean the defaults (lr 0: the groups' own lr); cfg may be NULL */
    int epochs;              /* default 1 */
    float lr;                /* peak learning rate of group 0 (default: its lr); other groups keep
                                their ratio to group 0 (discriminative learning rates) */
    dlf_sched sched;         /* default DLF_SCHED_CONSTANT */
    float pct_start;         /* one-cycle warm-up fraction (default 0.3, PyTorch's) */
    int quiet;               /* 1: no progress lines */
    int fixed_threads;       /* 1: always dlf_get_threads() threads; 0: the thread governor
                                (dlf_threadgov) may run on fewer while that is faster */
} dlf_fit_cfg;

typedef struct dlf_fit_report {
    float train_loss;        /* mean batch loss of the last epoch */
    float valid_loss;        /* after the last epoch (0 when no valid loader) */
    float valid_acc;         /* after the last epoch */
    double train_seconds;    /* training time, evaluation excluded */
    int steps;               /* optimizer steps taken */
} dlf_fit_report;

/* One pass over l from its start in eval mode with no tape recording (both restored
   after); returns the accuracy (argmax == label) and stores the mean cross-entropy
   in *mean_loss (may be NULL). For float targets it returns 0 and *mean_loss is the
   mean squared error over every output (dlf_mse_loss's); both NaN when the model returned NULL (out of
   memory: dlf_last_error) or a label is out of range. */
DLFDEF float dlf_evaluate(dlf_tape *t, dlf_model_fn model, void *m, dlf_loader *l, float *mean_loss);

/* Test-time augmentation (fastai's Learner.tta; the course's notebook 14): every batch
   is seen in several fixed views, the model's softmax probabilities are averaged over
   the views, and the average is scored. The views of an image (N, C, H, W batches):
   itself; with flip, its mirror image; with shift > 0, each of those moved by shift
   pixels left, right, up and down with zeros coming in (the extreme positions of
   training's crop with padding, dlf_aug_crop_pad). So 1, 2, 5 or 10 views. */
typedef struct dlf_tta_cfg {
    int flip;                /* 1: add the horizontally flipped view(s) */
    int shift;               /* > 0: add the four moved views of each (pixels) */
} dlf_tta_cfg;
DLFDEF float dlf_evaluate_tta(dlf_tape *t, dlf_model_fn model, void *m, dlf_loader *l, const dlf_tta_cfg *cfg,
                              float *mean_loss);
    /* accuracy over l's set, scored on the averaged probabilities; *mean_loss (may be
       NULL) is the mean of -log(averaged probability of the label). cfg NULL or all 0:
       one view, the same as dlf_evaluate. NAN when the model fails (out of memory:
       DLF_ERR_NOMEM); flip or shift on data that is not (N, C, H, W), or float
       targets, panic */

/* Inference, in eval mode with no tape recording (both restored after). What comes out
   of the model (N, C): its logits; their probabilities (softmax over C, or the sigmoid
   when C is 1: one binary logit); or the class (argmax, first on ties; for C = 1,
   logit > 0), as floats. */
typedef enum dlf_pred_kind { DLF_PRED_LOGITS = 0, DLF_PRED_PROBS, DLF_PRED_CLASS } dlf_pred_kind;
DLFDEF int dlf_predict(dlf_tape *t, dlf_model_fn model, void *m, dlf_tensor *x, dlf_pred_kind kind, dlf_tensor *out);
    /* x one batch (normalized as in training); out (N, C) for logits and probabilities,
       (N) for classes. DLF_OK, or DLF_ERR_ARG when the model returns NULL */
DLFDEF int dlf_predict_loader(dlf_tape *t, dlf_model_fn model, void *m, dlf_loader *l, dlf_pred_kind kind,
                              float *out, size_t cap, int *n_items);
    /* one pass over l from its start: row i of out (C floats, or 1 for classes) is the
       i-th item the loader gives (the dataset's order when it does not shuffle); cap is
       out's length in floats (too small panics); *n_items (may be NULL) the items done */
/* cfg->epochs epochs over train (from the start of an epoch) in training mode, each
   group's lr set every step from the schedule and restored at the end, one progress
   line per epoch with the validation loss and accuracy when valid is not NULL.
   DLF_OK, or the first failing step's code with the weights as before that step:
   DLF_ERR_NOMEM (out of memory on the tape), DLF_ERR_ARG (the model or loss returned
   NULL, or the loss turned NaN/inf), or a callback's or file's code. */
DLFDEF int   dlf_fit(dlf_tape *t, dlf_model_fn model, void *m, dlf_loss_fn loss, dlf_optim *opt,
                     dlf_loader *train, dlf_loader *valid, const dlf_fit_cfg *cfg, dlf_fit_report *rep);
    /* a thin wrapper over the Learner below: the lr schedule and the progress lines
       are two callbacks; the validation loss is loss's (cross-entropy before 0.3).
       loss NULL: dlf_default_loss of train's dataset. The accuracy metric (valid_acc)
       only with class ids; with float targets valid_acc is 0. rep is zeroed first,
       so it holds zeros (or the partial run) when the fit fails */

// The Learner (lessons 04, 05b and 09b; docs/learner.md): the training loop of the
// course's notebooks 04 and 05b, which callbacks extend. Its fit is, per epoch,
//   begin_epoch
//   for each training batch: (tape reset) begin_batch, model -> after_pred,
//       loss -> after_loss, backward -> after_backward, optimizer step -> after_step,
//       zero the grads, after_batch
//   begin_validate, then each validation batch in eval mode without recording:
//       begin_batch, after_pred, after_loss, after_batch
//   after_epoch
// between begin_fit and after_fit. Callbacks run in increasing `order` (equal orders in
// the order they were added), each event a case of the callback's switch. A callback
// returns DLF_CB_OK or a cancel code; the first non-zero code stops the remaining
// callbacks of that event and acts as the course's exceptions (notebook 05b):
//   DLF_CB_CANCEL_BATCH  the rest of this batch is skipped (a training batch before its
//                        step: no step), after_cancel_batch runs, then after_batch
//                        (always, as 05b's `finally`); the epoch goes on
//   DLF_CB_CANCEL_EPOCH  in a training batch: after_batch, then after_cancel_epoch; the
//                        rest of the training batches are skipped and the loader starts
//                        a fresh epoch next time; validation and after_epoch still run.
//                        From begin_epoch: no training this epoch (after_cancel_epoch),
//                        validation still runs. From begin_validate or a validation
//                        batch: the rest of validation is skipped; after_epoch runs.
//   DLF_CB_CANCEL_FIT    from anywhere: after_batch when inside a batch, then
//                        after_cancel_fit and after_fit; nothing else runs
// A code that makes no sense where it is returned (CANCEL_BATCH at begin_epoch,
// anything from after_fit) is ignored. One difference from 05b, on purpose: the
// gradients are zeroed after any batch whose backward ran, cancelled or not (05b left
// them to accumulate into the next batch).
// Validation uses the learner's own loss function and metrics, each batch's value
// weighted by its number of items; the training loss of an epoch is weighted the same
// way. Step counters: `step` counts the training batches of the fit (a cancelled one
// too, as fastai's train_iter), incremented before after_batch; `iter` the batches of
// the current epoch (training or validation).
// A run's whole state saves at any training step (after_batch) or epoch end
// (after_epoch) into one checkpoint: weights and buffers, optimizer state, the
// training loader's order, position and rng, the tape's rng, the counters and the
// partial epoch's sums, and each callback's own state through its save/load hooks.
// dlf_learner_load then makes the next dlf_learner_fit continue exactly there: a
// stopped and resumed run ends with the same bits as an uninterrupted one.

typedef enum dlf_event {
    DLF_EV_BEGIN_FIT = 0, DLF_EV_BEGIN_EPOCH, DLF_EV_BEGIN_BATCH, DLF_EV_AFTER_PRED, DLF_EV_AFTER_LOSS,
    DLF_EV_AFTER_BACKWARD, DLF_EV_AFTER_STEP, DLF_EV_AFTER_BATCH, DLF_EV_BEGIN_VALIDATE, DLF_EV_AFTER_EPOCH,
    DLF_EV_AFTER_FIT,
    DLF_EV_AFTER_CANCEL_BATCH, DLF_EV_AFTER_CANCEL_EPOCH, DLF_EV_AFTER_CANCEL_FIT,
    DLF_EV_COUNT
} dlf_event;

typedef enum dlf_cb_code {
    DLF_CB_OK = 0, DLF_CB_CANCEL_BATCH, DLF_CB_CANCEL_EPOCH, DLF_CB_CANCEL_FIT
} dlf_cb_code;

typedef struct dlf_learner dlf_learner;
typedef struct dlf_callback dlf_callback;
struct dlf_ckpt;

/* A callback: the built-in ones below embed it as their first member, so a pointer to
   one is a pointer to its callback; a program's own does the same (or uses `user`). */
struct dlf_callback {
    const char *name;        /* checkpoint keys "cb.<name>.*"; unique in a learner when it saves */
    int order;               /* lower runs first (fastai's _order) */
    int (*on)(dlf_callback *cb, dlf_learner *l, dlf_event ev);  /* a dlf_cb_code */
    int (*save)(const dlf_callback *cb, const dlf_learner *l, struct dlf_ckpt *c, const char *prefix);
        /* NULL: no state; keys start with prefix ("cb.<name>.") */
    int (*load)(dlf_callback *cb, dlf_learner *l, const struct dlf_ckpt *c, const char *prefix);
        /* called by dlf_learner_get_state, after the learner's counters are back */
    void *user;              /* for the program's own callbacks */
};

typedef float (*dlf_metric_fn)(const dlf_tensor *pred, const dlf_tensor *target); /* the batch's mean */

typedef struct dlf_metric {
    const char *name;        /* "accuracy": a column of the progress table, a monitor name */
    dlf_metric_fn fn;
} dlf_metric;

#define DLF_LEARNER_MAX_CBS 16
#define DLF_LEARNER_MAX_METRICS 4

struct dlf_learner {
    /* what it trains (dlf_learner_init; may be changed between fits) */
    dlf_tape *tape;
    dlf_model_fn model;
    void *m;                 /* passed to model */
    dlf_loss_fn loss_fn;     /* NULL: chosen by the batch's labels, cross-entropy for class ids
                                y (N), MSE for float targets y (N, T) (dlf_default_loss) */
    dlf_optim *opt;
    dlf_loader *train, *valid;   /* valid may be NULL: no validation */
    const dlf_params *params;    /* weights and buffers by name, for checkpoints, save-best and
                                    the LR finder (NULL: the optimizer's parameters only) */
    dlf_callback *cbs[DLF_LEARNER_MAX_CBS];  /* sorted by order; not owned */
    int n_cbs;
    dlf_metric metrics[DLF_LEARNER_MAX_METRICS];
    int n_metrics;
    int check_finite;        /* 1 (default): a NaN or infinite training loss, gradient (before the step)
                                or parameter (after it) stops the fit with DLF_ERR_ARG, naming it */
    int fixed_threads;       /* 1: always dlf_get_threads() threads; 0 (default): the thread governor
                                times each training batch and may run on fewer threads while that is
                                faster (a busy machine), restoring the count after the fit */
    dlf_threadgov gov;       /* the governor's state during a fit */
    /* the run, for callbacks to read */
    int epochs, epoch;       /* the fit's epochs; the current one, 0-based */
    int iter, n_iter;        /* batches done in this epoch (training or validation); its batch count */
    long step, total_steps;  /* training batches of the fit so far; epochs * batches per epoch */
    int in_train;            /* 1 in the training batches, 0 in validation */
    dlf_tensor *xb, *yb;     /* the current batch */
    int bs;                  /* its items */
    dlf_tensor *pred, *loss; /* after_pred, after_loss */
    float loss_value;        /* loss->data[0] */
    double tl_sum;           /* this epoch: sum of training loss * items */
    long tl_items;           /*   items */
    double tl_batch_sum;     /*   sum of batch losses (dlf_fit's mean of batch losses) */
    int tl_batches;          /*   batches */
    float train_loss;        /* the epoch's, weighted (at after_epoch) */
    float valid_loss;        /* the epoch's validation loss (at after_epoch; 0 without valid) */
    float metric_values[DLF_LEARNER_MAX_METRICS];
    int validated;           /* 1: valid_loss and metric_values are this epoch's */
    double train_seconds;    /* training time of the fit, validation excluded */
    int cancelled;           /* the last fit ended by DLF_CB_CANCEL_FIT */
    int rc;                  /* DLF_OK or the error that stopped the fit */
    /* internal */
    int where;               /* 0 between fits, 1 training, 2 validating, 3 at after_epoch, 4 at after_fit */
    int train_iter;          /* training batches done in the current epoch */
    int epoch_over;          /* 1 from the epoch's after_epoch until the next epoch starts */
    int resume;              /* 1: state was loaded, the next fit continues it (callbacks'
                                begin_fit keep their loaded state when it is set) */
    int no_cbs;              /* dlf_learner_validate: no events */
    double vl_sum;           /* validation sums: loss * items, items, metric * items */
    long v_items;
    double vm_sum[DLF_LEARNER_MAX_METRICS];
    dlf_callback train_eval; /* the built-in train/eval switch (order -10), always there; so a
                                learner must not be copied once initialised */
    int prev_training;
};

DLFDEF void dlf_learner_init(dlf_learner *l, dlf_tape *t, dlf_model_fn model, void *m, dlf_loss_fn loss,
                             dlf_optim *opt, dlf_loader *train, dlf_loader *valid);
DLFDEF void dlf_learner_free(dlf_learner *l);          /* what the learner holds; callbacks are the caller's */
DLFDEF int  dlf_learner_add_cb(dlf_learner *l, dlf_callback *cb);   /* DLF_OK, DLF_ERR_ARG when full */
DLFDEF void dlf_learner_remove_cb(dlf_learner *l, dlf_callback *cb);
DLFDEF int  dlf_learner_add_metric(dlf_learner *l, const char *name, dlf_metric_fn fn);
DLFDEF int  dlf_learner_fit(dlf_learner *l, int epochs);
    /* DLF_OK (also when a callback cancelled: l->cancelled), or the error that stopped it.
       After dlf_learner_load, epochs <= 0 takes the saved run's count */
DLFDEF int  dlf_learner_validate(dlf_learner *l, dlf_loader *dl, float *loss, float *metrics);
    /* one pass over dl from its start, eval mode, no recording, no callbacks: the
       weighted loss and metrics (metrics may be NULL); DLF_OK or an error */
DLFDEF float dlf_metric_accuracy(const dlf_tensor *pred, const dlf_tensor *target); /* dlf_accuracy */
DLFDEF const char *dlf_event_name(dlf_event ev);        /* "begin_fit" ... */
DLFDEF int  dlf_learner_add_state(dlf_learner *l, struct dlf_ckpt *c);
    /* the run's whole state into c (at after_batch of a training batch or at after_epoch,
       or between fits); add the program's own metadata to c too, then dlf_ckpt_save */
DLFDEF int  dlf_learner_get_state(dlf_learner *l, const struct dlf_ckpt *c);
    /* restore it, each callback's through its load hook; l->resume is then 1 until the
       next fit's begin_fit has run (a callback's begin_fit keeps its state when set) */
#ifndef DLF_NO_STDIO
DLFDEF int  dlf_learner_save(dlf_learner *l, const char *path);   /* add_state + atomic save */
DLFDEF int  dlf_learner_load(dlf_learner *l, const char *path);   /* load + get_state */
#endif

// Built-in callbacks. Each is a struct whose first member is its dlf_callback: fill it
// with its dlf_cb_*_init, then dlf_learner_add_cb(l, &x.cb). None allocates per step.

typedef struct dlf_cb_recorder {     /* lr, mom and loss of group 0 at every training batch */
    dlf_callback cb;                 /* "recorder", order 20 */
    float *lr, *mom, *loss;          /* (cap) */
    int n, cap;                      /* recorded; capacity (allocated at begin_fit) */
    float *epoch_train, *epoch_valid;/* (epochs) per-epoch losses */
    float *epoch_metric;             /* (epochs) the first metric, if any */
    float *epoch_step;               /* (epochs) l->step at each epoch's end */
    int n_epochs, cap_epochs;
} dlf_cb_recorder;
DLFDEF void dlf_cb_recorder_init(dlf_cb_recorder *r);
DLFDEF void dlf_cb_recorder_free(dlf_cb_recorder *r);
#ifndef DLF_NO_STDIO
DLFDEF int  dlf_cb_recorder_plot_loss(const dlf_cb_recorder *r, const char *path, const char *title);
    /* training loss per step and validation loss per epoch (SVG) */
DLFDEF int  dlf_cb_recorder_plot_sched(const dlf_cb_recorder *r, const char *path, const char *title);
    /* lr and mom per step, two panels (SVG) */
#endif

#define DLF_CB_SCHED_MAX 8
typedef struct dlf_cb_sched_item {
    dlf_hyper hyper;
    int group;               /* < 0: every group */
    dlf_schedule sched;      /* evaluated at (l->step, l->total_steps) */
} dlf_cb_sched_item;
typedef struct dlf_cb_sched {        /* ParamScheduler: any hyper-parameter of any group */
    dlf_callback cb;                 /* "sched", order 10; sets the values at begin_batch */
    dlf_cb_sched_item items[DLF_CB_SCHED_MAX];
    int n;
} dlf_cb_sched;
DLFDEF void dlf_cb_sched_init(dlf_cb_sched *s);
DLFDEF int  dlf_cb_sched_add(dlf_cb_sched *s, dlf_hyper h, int group, dlf_schedule sched); /* DLF_OK, ERR_ARG full */

typedef struct dlf_cb_progress {     /* fastprogress: a bar per epoch, then a table row */
    dlf_callback cb;                 /* "progress", order 30 */
    dlf_progress p;                  /* the epoch's bar: counters and clock */
    int tty;                         /* redraw the bar in place; otherwise rows only */
    int quiet;
    double t_epoch;                  /* the epoch's start (training and validation) */
} dlf_cb_progress;
DLFDEF void dlf_cb_progress_init(dlf_cb_progress *p, int quiet);

/* Which number a tracker watches: "valid_loss", "train_loss" or a metric's name; a
   name containing "loss" is better when smaller, anything else when larger (fastai). */
typedef struct dlf_tracker {
    const char *monitor;
    float min_delta;         /* an improvement must beat the best by more than this */
    int higher_better;
    float best;              /* the best value so far (+-inf at the start) */
    int best_epoch;          /* its epoch, -1 before any */
    int wait;                /* epochs since the last improvement */
} dlf_tracker;

typedef struct dlf_cb_early_stop {   /* stop when monitor has not improved for patience epochs */
    dlf_callback cb;                 /* "early_stop", order 40; cancels the fit at after_epoch */
    dlf_tracker t;
    int patience;
    int stopped_epoch;               /* the epoch it stopped after, -1 if it did not */
    int verbose;
} dlf_cb_early_stop;
DLFDEF void dlf_cb_early_stop_init(dlf_cb_early_stop *e, const char *monitor, float min_delta, int patience);

typedef struct dlf_cb_save_best {    /* SaveModelCallback: weights at the best epoch */
    dlf_callback cb;                 /* "save_best", order 35 (before early stopping) */
    dlf_tracker t;
    const char *path;                /* atomic checkpoint of l->params (weights and buffers) */
    int restore_at_end;              /* 1: load it back at after_fit */
    int saves;                       /* how many times it wrote */
} dlf_cb_save_best;
DLFDEF void dlf_cb_save_best_init(dlf_cb_save_best *s, const char *monitor, const char *path, int restore_at_end);

typedef struct dlf_cb_clip {         /* clip_grad_norm_ over the optimizer's parameters */
    dlf_callback cb;                 /* "clip", order 0; at after_backward */
    float max_norm;
    float last_norm;                 /* the norm before clipping at the last step */
} dlf_cb_clip;
DLFDEF void dlf_cb_clip_init(dlf_cb_clip *c, float max_norm);

typedef struct dlf_cb_autosave {     /* the run's state every `every` steps (resume from it) */
    dlf_callback cb;                 /* "autosave", order 50; at after_batch */
    const char *path;
    long every;                      /* 0: never periodically */
    long stop_at;                    /* > 0: at this step save, then cancel the fit */
    const char *const *meta;         /* n_meta key,value pairs written into each file */
    int n_meta;
    int saves;
} dlf_cb_autosave;
DLFDEF void dlf_cb_autosave_init(dlf_cb_autosave *a, const char *path, long every, long stop_at);

typedef struct dlf_cb_augment {      /* a dlf_augment pipeline on every training batch */
    dlf_callback cb;                 /* "augment", order -5; at begin_batch, training only */
    dlf_augment *aug;                /* not owned */
    dlf_rng rng;                     /* its draws (saved and loaded with the run) */
} dlf_cb_augment;
DLFDEF void dlf_cb_augment_init(dlf_cb_augment *c, dlf_augment *aug, uint64_t seed);

typedef struct dlf_cb_mixup {        /* mixup of every training batch, the mixed loss */
    dlf_callback cb;                 /* "mixup", order -4 (after augment); begin_batch mixes the
                                        batch, after_loss replaces the loss (training only) */
    dlf_mixup *mix;                  /* not owned; sized for the training batch */
    dlf_rng rng;
} dlf_cb_mixup;
DLFDEF void dlf_cb_mixup_init(dlf_cb_mixup *c, dlf_mixup *mix, uint64_t seed);

// The LR finder (Smith 2015; fastai's lr_find): train from the current state with the
// lr of every group rising exponentially from start_lr to end_lr over num_it steps,
// stop early when the smoothed loss passes 4 times its minimum (or turns NaN), then
// put the weights, buffers, optimizer state, training loader and tape rng back bit for
// bit. The loss is smoothed as fastai's Recorder does (beta 0.98, debiased). The
// suggestions, over the points without the first num_it/10 and the last 5 (fastai):
//   lr_steep  where d loss / d log(lr) is most negative (the steepest descent)
//   lr_min    the lr of the smallest loss, divided by 10
// Only the train/eval switch and the finder run as callbacks during the sweep.
typedef struct dlf_lr_find_cfg {  /* zero (or negative) fields mean the defaults; cfg may be NULL */
    double start_lr, end_lr; /* 1e-7, 10 */
    int num_it;              /* 100 */
    float stop_div;          /* 4 (0 < stop_div: stop when smooth loss > stop_div * min) */
} dlf_lr_find_cfg;
typedef struct dlf_lr_find_result {
    float *lrs, *losses;     /* (n) the lr of each step and its smoothed loss; owned */
    int n;
    float lr_steep, lr_min;  /* the suggestions (0 when too few points) */
} dlf_lr_find_result;
DLFDEF int  dlf_lr_find(dlf_learner *l, const dlf_lr_find_cfg *cfg, dlf_lr_find_result *res);
DLFDEF void dlf_lr_find_free(dlf_lr_find_result *res);
#ifndef DLF_NO_STDIO
DLFDEF int  dlf_lr_find_plot(const dlf_lr_find_result *res, const char *path, const char *title);
    /* loss against lr on a log axis without the last 5 points, lr_steep marked (SVG) */
#endif

// >>stage15_serialization ---------------------------------------------------------
// safetensors (the format of Hugging Face's safetensors library):
//   bytes 0..7    N, the header length, unsigned 64-bit little-endian
//   bytes 8..8+N  a JSON object: for each tensor
//                   "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
//                 and optionally "__metadata__": {"key": "value", ...} (strings only)
//   the rest      the data buffer; offsets are relative to its start, little-endian
// The reader is strict: header length bounded and inside the file, valid JSON, no
// duplicate names, valid UTF-8 (surrogate pairs in \u escapes joined, lone ones and
// \u0000 refused), offsets in bounds, not overlapping and covering the whole buffer,
// end - begin == product(shape) * dtype size. Any violation is an error code and a
// message naming the file and the problem; no byte outside the buffer is ever read.
// Everything is converted to float32 on load (F32, F16, BF16, F64 and the integer
// types, so PyTorch's int64 num_batches_tracked loads too).

#define DLF_ST_MAX_HEADER (100u << 20)  /* 100 MiB, the same bound the reference reader uses */

typedef struct dlf_st_tensor {
    char *name;               /* NUL-terminated tensor name, e.g. "0.weight" */
    char dtype[8];            /* the dtype as stored: "F32", "F16", "BF16", "I64" ... */
    int ndim;                 /* 0 to DLF_MAX_DIMS */
    int shape[DLF_MAX_DIMS];  /* shape[0..ndim-1] */
    int size;                 /* product of the shape */
    float *data;              /* (size) values converted to float32, owned */
} dlf_st_tensor;

typedef struct dlf_safetensors {
    dlf_st_tensor *tensors;   /* (n) in file order */
    int n;
    char **meta_keys;         /* (n_meta) the __metadata__ pairs, owned */
    char **meta_values;
    int n_meta;
} dlf_safetensors;

typedef struct dlf_named_tensor {
    const char *name;         /* name to store it under */
    const dlf_tensor *t;      /* written as F32 with t's shape */
} dlf_named_tensor;

DLFDEF int  dlf_safetensors_parse(dlf_safetensors *st, const void *bytes, size_t len, const char *what);
DLFDEF void dlf_safetensors_free(dlf_safetensors *st);
DLFDEF const dlf_st_tensor *dlf_safetensors_find(const dlf_safetensors *st, const char *name);
DLFDEF const char *dlf_safetensors_meta(const dlf_safetensors *st, const char *key); /* NULL if absent */
/* Serialize into a new DLF_MALLOC buffer (*out, *len); meta is n_meta key,value pairs. */
DLFDEF int  dlf_safetensors_serialize(const dlf_named_tensor *ts, int n, const char *const *meta,
                                      int n_meta, unsigned char **out, size_t *len);
#ifndef DLF_NO_STDIO
DLFDEF int  dlf_safetensors_load(dlf_safetensors *st, const char *path);
/* Atomic and safe against concurrent saves to one path (docs/checkpoints.md, "Saving"):
   under an advisory lock on path.lock (POSIX), remove the temporaries that killed or
   failed saves of path left, write a new path.<pid>.<n>.tmp, fsync it, rename it over
   path, fsync the directory. DLF_OK: path holds exactly the bytes of this call (until
   the next save to it). A second save to the same path waits for the lock, or with
   flags DLF_SAVE_NOWAIT returns DLF_ERR_BUSY at once. Elsewhere (Windows, other
   systems) there is no lock and no cleanup; the unique temporary and the rename stay. */
enum { DLF_SAVE_NOWAIT = 1 };
DLFDEF int  dlf_safetensors_save(const char *path, const dlf_named_tensor *ts, int n,
                                 const char *const *meta, int n_meta);   /* flags 0: waits */
DLFDEF int  dlf_safetensors_save_ex(const char *path, const dlf_named_tensor *ts, int n,
                                    const char *const *meta, int n_meta, int flags);
#endif

// Checkpoints are safetensors files holding everything a run needs to continue
// exactly where it stopped:
//   tensors   the parameters under their PyTorch state_dict names ("0.weight" ...),
//             and buffers (BatchNorm's running_mean ...), optimizer state as
//             "optim.<state>.<param name>" with PyTorch's state keys (momentum_buffer,
//             exp_avg, exp_avg_sq, square_avg, grad_avg, sum) and "optim.step.<param
//             name>" (a 0-dim tensor), a loader's epoch order as "loader.<key>.order"
//   metadata  "rng.<key>" = the generator state, "optim.kind" ("sgd", "adam" ...),
//             "optim.steps", "loader.<key>.pos",
//             and any "epoch", "step", "lr" ... the program adds (strings, as the
//             format requires; integers in decimal, floats as %a hex for exactness)
// Building one: dlf_ckpt_init, dlf_ckpt_add_*, dlf_ckpt_save (atomic), dlf_ckpt_free.
// Reading one:  dlf_ckpt_load, dlf_ckpt_get_*, dlf_ckpt_free. Every get checks the
// name exists and the shape matches, and says which one did not.

typedef struct dlf_ckpt {
    dlf_named_tensor *items; /* (n_items) tensors to write; names owned, tensors not */
    int n_items, cap_items;
    char **meta;             /* (2 * n_meta) key, value, key, value ...; owned */
    int n_meta, cap_meta;
    dlf_tensor **owned;      /* (n_owned) tensors made by add_sgd/add_loader, freed by dlf_ckpt_free */
    int n_owned, cap_owned;
    dlf_safetensors file;    /* what dlf_ckpt_load read */
} dlf_ckpt;

DLFDEF void dlf_ckpt_init(dlf_ckpt *c);
DLFDEF void dlf_ckpt_free(dlf_ckpt *c);
DLFDEF int  dlf_ckpt_add_tensor(dlf_ckpt *c, const char *name, const dlf_tensor *t);
DLFDEF int  dlf_ckpt_add_params(dlf_ckpt *c, dlf_tensor *const *params, const char *const *names, int n);
DLFDEF int  dlf_ckpt_add_param_list(dlf_ckpt *c, const dlf_params *pl);  /* parameters and buffers by name */
DLFDEF int  dlf_ckpt_add_optim(dlf_ckpt *c, const dlf_optim *o, const char *const *names);
    /* names[i] of o->params[i]; NULL: the names o keeps (dlf_optim_create_groups) */
DLFDEF int  dlf_ckpt_add_rng(dlf_ckpt *c, const char *key, const dlf_rng *r);
DLFDEF int  dlf_ckpt_add_loader(dlf_ckpt *c, const char *key, const dlf_loader *l);
DLFDEF int  dlf_ckpt_set_meta(dlf_ckpt *c, const char *key, const char *value);
DLFDEF int  dlf_ckpt_set_int(dlf_ckpt *c, const char *key, long long v);
DLFDEF int  dlf_ckpt_set_float(dlf_ckpt *c, const char *key, double v);   /* exact (%a) */
#ifndef DLF_NO_STDIO
DLFDEF int  dlf_ckpt_save(const dlf_ckpt *c, const char *path);  /* dlf_safetensors_save's protocol */
DLFDEF int  dlf_ckpt_save_ex(const dlf_ckpt *c, const char *path, int flags); /* DLF_SAVE_NOWAIT */
DLFDEF int  dlf_ckpt_load(dlf_ckpt *c, const char *path);
#endif
DLFDEF int  dlf_ckpt_get_tensor(const dlf_ckpt *c, const char *name, dlf_tensor *dst); /* copy in; shapes must match */
DLFDEF int  dlf_ckpt_get_params(const dlf_ckpt *c, dlf_tensor *const *params, const char *const *names, int n);
DLFDEF int  dlf_ckpt_get_param_list(const dlf_ckpt *c, const dlf_params *pl); /* every entry must be there */
/* Transfer learning: copy in every tensor of the model that the checkpoint holds by the same
   name and shape; the others (a new head, a layer of another size) keep their values and are
   reported. DLF_OK, or DLF_ERR_FORMAT when not one tensor matched (surely the wrong file). */
typedef struct dlf_transfer_report {
    int n_loaded;            /* copied from the file */
    int n_missing;           /* the file lacks them: left as they were */
    int n_mismatched;        /* in both, shapes differ: left as they were */
    char text[512];          /* the ones left, with shapes: "10.weight: file (5, 64), model (10, 64); ..." */
} dlf_transfer_report;
DLFDEF int  dlf_ckpt_get_param_list_matching(const dlf_ckpt *c, const dlf_params *pl, dlf_transfer_report *rep);
DLFDEF int  dlf_ckpt_get_optim(const dlf_ckpt *c, dlf_optim *o, const char *const *names); /* kinds must match */
DLFDEF int  dlf_ckpt_get_rng(const dlf_ckpt *c, const char *key, dlf_rng *r);
DLFDEF int  dlf_ckpt_get_loader(const dlf_ckpt *c, const char *key, dlf_loader *l);
DLFDEF const char *dlf_ckpt_get_meta(const dlf_ckpt *c, const char *key);         /* NULL if absent */
DLFDEF int  dlf_ckpt_get_int(const dlf_ckpt *c, const char *key, long long *v);
DLFDEF int  dlf_ckpt_get_float(const dlf_ckpt *c, const char *key, double *v);
/* The input normalization, so that another program prepares its inputs as training
   did: x = (v / divisor - mean[c]) / std[c] per channel (a table: per feature), v the
   raw value (a pixel byte: divisor 255; a float: divisor 1). Stored as metadata
   "norm.<key>.mean" and "norm.<key>.std" (n comma-separated %a floats, exact) and
   "norm.<key>.divisor"; the Learner's run state holds its training loader's as "input". */
DLFDEF int  dlf_ckpt_add_norm(dlf_ckpt *c, const char *key, const float *mean, const float *std, int n,
                              float divisor);  /* DLF_OK or DLF_ERR_NOMEM */
DLFDEF int  dlf_ckpt_add_loader_norm(dlf_ckpt *c, const char *key, const dlf_loader *l);
    /* l's norm_mean and norm_std, divisor 255 for byte images, 1 for floats */
DLFDEF int  dlf_ckpt_get_norm(const dlf_ckpt *c, const char *key, float *mean, float *std, int cap, int *n,
                              float *divisor);
    /* up to cap values each; *n the count, divisor may be NULL. DLF_OK, DLF_ERR_FORMAT
       (absent or malformed) or DLF_ERR_ARG (more than cap values) */
#ifndef DLF_NO_STDIO
/* The common case in one call each: every entry of pl (parameters and buffers) by
   name plus, when opt is not NULL, the optimizer state (each parameter under the name
   the optimizer keeps, or else the name pl gives the same tensor); meta is n_meta
   key,value pairs (e.g. "epoch", "3"). Loading takes the optimizer state only when
   the file has it (a weights-only file from PyTorch loads too). */
DLFDEF int  dlf_ckpt_save_training(const char *path, const dlf_params *pl, const dlf_optim *opt,
                                   const char *const *meta, int n_meta);
DLFDEF int  dlf_ckpt_load_training(const char *path, const dlf_params *pl, dlf_optim *opt);
#endif

// >>stage16_pictures ------------------------------------------------------------
// Pictures and activation telemetry (lessons 05 and 06b, docs/pictures.md).
// dlf writes SVG: text, so a picture is a file any browser shows and git can diff.
// A line plot has axes with "nice" ticks (1, 2 or 5 times a power of ten; decades on a
// log10 axis), axis labels, a title, a legend when there is more than one line, and an
// optional vertical marker. Points that are NaN or infinite (or <= 0 on a log axis) are
// skipped: the line breaks there. Text is XML-escaped. Files are written atomically
// like checkpoints (path.<pid>.<n>.tmp, then a rename), and a failure is an error code with a
// message naming the path.

typedef struct dlf_series {
    const char *name;        /* legend entry (may be NULL) */
    const float *x;          /* (n) x values; NULL: 0, 1, ..., n-1 */
    const float *y;          /* (n) y values */
    int n;
} dlf_series;

typedef struct dlf_plot_cfg {
    const char *title, *xlabel, *ylabel;
    int logx, logy;          /* log10 axes */
    int has_mark;            /* draw a vertical marker at mark_x, labelled mark_label */
    float mark_x;
    const char *mark_label;
} dlf_plot_cfg;

#ifndef DLF_NO_STDIO
DLFDEF int dlf_svg_lines(const char *path, const dlf_plot_cfg *cfg, const dlf_series *s, int n_series);
    /* axes with ticks, labels, title, legend when n_series > 1; DLF_OK or an error code (+ dlf_last_error) */
DLFDEF int dlf_svg_image(const char *path, const char *title, const char *xlabel, const char *ylabel,
                         const float *v, int rows, int cols);  /* heat map, row 0 at the top */
DLFDEF int dlf_svg_lines_grid(const char *path, const char *title, const dlf_plot_cfg *cfgs,
                              const dlf_series *const *series, const int *n_series, int n_panels,
                              int grid_cols);
    /* n_panels line plots side by side, grid_cols per row, under one title */
DLFDEF int dlf_svg_image_grid(const char *path, const char *title, const char *const *titles,
                              const char *xlabel, const char *ylabel, const float *const *v,
                              int rows, int cols, int n_images, int grid_cols);
    /* n_images heat maps of rows x cols each (row 0 at the top), one color scale each */
DLFDEF int dlf_svg_schedule(const char *path, const char *title, const dlf_schedule *lr,
                            const dlf_schedule *mom, long total);
    /* the lr (and, when mom is not NULL, the momentum beside it) over steps 0 .. total-1 */
#endif

// Telemetry: the course's "colorful dimension" (lesson 06b). Per recording point and
// per training step it keeps the mean and (unbiased) std of the activations, the
// fraction near zero (|a| <= zero_eps) and a histogram of `bins` bins over [lo, hi]
// (torch.histc: values outside are not counted; the histogram image plots log(1 + count)).
// Points are a dlf_seq's layer outputs (dlf_telemetry_attach: after each layer, or
// after the kinds in kinds_mask) and any tensor a model function marks with
// dlf_telemetry_mark. Points are numbered in the order a step records them; a new step
// starts at the first record after a dlf_tape_reset. Only training mode records
// (eval passes leave it alone, as the course's hooks do). Off (the tape's telemetry
// pointer NULL) costs one pointer test per layer; on, every array is sized at create
// (max_steps x max_points), so recording allocates nothing: steps past max_steps or
// points past max_points are counted in `dropped` and otherwise ignored (cfg.every
// keeps one step in k for long runs).

#define DLF_TELEMETRY_NAME 32

typedef struct dlf_telemetry_cfg {  /* zero (or negative) fields mean the defaults; cfg may be NULL */
    int max_steps;           /* rows kept (default 1000) */
    int max_points;          /* recording points per step (default 16) */
    int bins;                /* histogram bins (default 40, the course's) */
    float lo, hi;            /* histogram range (default 0 .. 10, the course's); hi > lo */
    float zero_eps;          /* |a| <= zero_eps counts as near zero (default: two bins'
                                width, 0.5 for 0..10: the course's "first two bins") */
    unsigned long kinds_mask;/* a dlf_seq records after layer i when bit (1 << kind) is set;
                                0: after every layer */
    int every;               /* record one training step in `every` (default 1: each), so a
                                long run fits in max_steps rows: row r is step r * every */
} dlf_telemetry_cfg;

typedef struct dlf_telemetry {
    dlf_telemetry_cfg cfg;   /* the values in use */
    int n_steps;             /* steps recorded (rows filled) */
    int n_points;            /* most points any step recorded (<= max_points) */
    int cursor;              /* the next point index in the current step */
    int open;                /* nonzero while a step is being recorded; a tape reset closes it */
    long seen;               /* training steps seen (recorded or skipped by `every`) */
    long dropped;            /* records ignored for lack of room */
    float *mean;             /* (max_steps * max_points) [step * max_points + point] */
    float *std;
    float *near_zero;        /* fraction of values with |a| <= zero_eps */
    float *hist;             /* (max_steps * max_points * bins) counts */
    char (*names)[DLF_TELEMETRY_NAME]; /* (max_points) "3 ReLU" for seq layers, or the mark's name */
} dlf_telemetry;

DLFDEF dlf_telemetry *dlf_telemetry_create(const dlf_telemetry_cfg *cfg); /* NULL on OOM */
DLFDEF void dlf_telemetry_free(dlf_telemetry *tl);
DLFDEF void dlf_telemetry_clear(dlf_telemetry *tl);  /* forget every step, keep the arrays */
DLFDEF void dlf_telemetry_attach(dlf_tape *t, dlf_telemetry *tl); /* NULL: off */
DLFDEF void dlf_telemetry_mark(dlf_tape *t, const char *name, const dlf_tensor *x);
    /* record x at this point of the model; nothing when the tape has no telemetry */
DLFDEF void dlf_telemetry_record(dlf_telemetry *tl, const char *name, const dlf_tensor *x);
    /* record x as the next point of the current step (what mark and the seq hook call) */
DLFDEF const float *dlf_telemetry_hist(const dlf_telemetry *tl, int step, int point); /* (bins) */
#ifndef DLF_NO_STDIO
DLFDEF int dlf_telemetry_plot_stats(const dlf_telemetry *tl, const char *path, const char *title);
    /* mean and std of each point over steps, two panels */
DLFDEF int dlf_telemetry_plot_near_zero(const dlf_telemetry *tl, const char *path, const char *title);
DLFDEF int dlf_telemetry_plot_hist(const dlf_telemetry *tl, const char *path, const char *title);
    /* the colorful dimension: per point an image of log(1 + count), bins bottom (lo) to
       top (hi), steps left to right */
#endif

// >>stage17_cuda -----------------------------------------------------------------
// The optional GPU (docs/cuda.md). dlf_cuda.cu, compiled with nvcc, defines these; a
// program that wants them builds its DLF_IMPLEMENTATION file with -DDLF_CUDA and links
// dlf_cuda.o with -lcudart. Without DLF_CUDA nothing here exists and nothing is linked.
// A context holds the device, its reusable buffers and the copies of the weights
// (resident between steps: a copy is used while the tensor's version is unchanged).
// Once dlf_tape_set_cuda(t, ctx) has attached one, dlf_matmul and dlf_conv2d on that
// tape (forward and backward) run there; the rest stays on the CPU.
#ifdef DLF_CUDA
typedef struct dlf_cuda dlf_cuda;
typedef enum dlf_cuda_kernel {       /* the matmul ladder, each rung adds one idea */
    DLF_CUDA_NAIVE = 0,      /* one thread per output, threads walk down a column: uncoalesced */
    DLF_CUDA_COALESCED,      /* neighbouring threads take neighbouring columns */
    DLF_CUDA_SHARED,         /* 32x32 tiles staged in shared memory */
    DLF_CUDA_BLOCK1D,        /* each thread computes 8 outputs of a column (registers) */
    DLF_CUDA_BLOCK2D,        /* each thread computes an 8x8 block of outputs */
    DLF_CUDA_VEC4,           /* the same with 128-bit loads and a transposed A tile */
    DLF_CUDA_TF32,           /* tensor cores (WMMA, TF32 inputs, FP32 sums); compute 8.0+ */
    DLF_CUDA_KERNEL_COUNT
} dlf_cuda_kernel;
DLFDEF int  dlf_cuda_init(dlf_cuda **out, int device); /* DLF_OK, or DLF_ERR_DEVICE (no driver, no
                                                          GPU, ...: dlf_last_error says which) */
DLFDEF void dlf_cuda_free(dlf_cuda *c);
DLFDEF const char *dlf_cuda_device_name(const dlf_cuda *c);   /* "NVIDIA H100 80GB HBM3 (sm_90)" */
DLFDEF const char *dlf_cuda_kernel_name(int kernel);           /* "naive" ... "tf32" */
DLFDEF int  dlf_cuda_set_kernel(dlf_cuda *c, int kernel);      /* the rung ops use (default: vec4,
                                                                 exact FP32); DLF_ERR_ARG */
DLFDEF int  dlf_tape_set_cuda(dlf_tape *t, dlf_cuda *c);       /* NULL: back to the CPU */
DLFDEF void dlf_cuda_forget(dlf_cuda *c);  /* drop the resident weight copies (after writing a
                                              weight's data by hand without dlf_fill/copy) */
DLFDEF int  dlf_cuda_gemm(dlf_cuda *c, int kernel, int ta, int tb, int M, int N, int K,
                          const float *A, const float *B, float *C, int acc); /* host pointers,
                                                          dlf_gemm's meaning; DLF_OK or an error */
DLFDEF int  dlf_cuda_gemm_device(dlf_cuda *c, int kernel, int ta, int tb, int M, int N, int K,
                                 const float *dA, const float *dB, float *dC, int acc);
                                                       /* device pointers, no copies (benchmarks) */
DLFDEF int  dlf_cuda_matmul(dlf_cuda *c, int ta, int tb, const dlf_tensor *a, const dlf_tensor *b,
                            float *out, int acc);      /* out (M,N) (host) = op(a) op(b): heap
                                                          tensors stay resident by version */
DLFDEF int  dlf_cuda_conv2d_forward(dlf_cuda *c, const dlf_tensor *x, const dlf_tensor *w,
                                    int stride, int pad, float *y);  /* y (N,K,P,Q), no bias */
DLFDEF int  dlf_cuda_conv2d_backward(dlf_cuda *c, const dlf_tensor *x, const dlf_tensor *w,
                                     const float *dy, int stride, int pad, float *dx, float *dw);
                                   /* dx += ..., dw += ... (either may be NULL); dy (N,K,P,Q) */
#endif

#ifdef __cplusplus
}
#endif
#endif /* DLF_H */

/* ================================================================================
   IMPLEMENTATION
   ================================================================================ */
#if defined(DLF_IMPLEMENTATION) && !defined(DLF__IMPLEMENTED)
#define DLF__IMPLEMENTED   /* a second include with DLF_IMPLEMENTATION in one file adds nothing */

/* -ffast-math lets the compiler assume no NaN or infinity exists, so every check for
   one (dlf_max_abs_diff, dlf_allclose, max and max-pooling letting NaN win, dlf_fit
   stopping on a NaN loss) silently turns into "all is well". Refuse, unless asked. */
#if defined(__FAST_MATH__) && !defined(DLF_ALLOW_FAST_MATH)
#error "dlf: -ffast-math breaks dlf's NaN and infinity checks; build without it, or define DLF_ALLOW_FAST_MATH to accept that"
#endif

#include <stdarg.h>
#include <stdio.h>     /* vsnprintf for messages; printing unless DLF_NO_STDIO */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
/* fsync makes a checkpoint durable. It is POSIX, not C99: under a strict -std=c99
   the system headers hide it, so declare it (and fileno) ourselves. */
#if !defined(DLF_NO_STDIO) && (defined(__unix__) || defined(__APPLE__))
#if defined(__cplusplus) || defined(_POSIX_C_SOURCE) || defined(_DEFAULT_SOURCE) || defined(__APPLE__)
#include <unistd.h>
#else
extern int fsync(int fd);
extern int fileno(FILE *stream);
#endif
#define DLF__HAVE_FSYNC 1
#endif
/* Windows: rename() refuses to replace an existing file, so a save goes through
   MoveFileExA (kernel32, declared here so that <windows.h> and its macros stay out),
   and _commit (<io.h>) plays fsync's part. */
#if !defined(DLF_NO_STDIO) && defined(_WIN32)
#include <io.h>
#ifdef __cplusplus
extern "C"
#endif
__declspec(dllimport) int __stdcall MoveFileExA(const char *existing, const char *replacement, unsigned long flags);
#define DLF__MOVEFILE_REPLACE_EXISTING 0x1ul
#define DLF__MOVEFILE_WRITE_THROUGH 0x8ul
#endif
/* SIMD micro-kernels (stage 4). With gcc or clang on x86 each fast kernel is compiled
   for its own instruction set with __attribute__((target(...))), whatever the build's
   flags, and the one to run is chosen from what the CPU reports (cpuid, through
   __builtin_cpu_supports): a plain `cc -O2 prog.c -lm` runs AVX2 or AVX-512 code where
   the CPU has it. Other compilers get the AVX2 kernel only when the build enables it
   (-mavx2 -mfma, /arch:AVX2), else the portable one. DLF_NO_SIMD: portable only. */
#if !defined(DLF_NO_SIMD) && (defined(__GNUC__) || defined(__clang__)) && !defined(__TINYC__) \
    && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define DLF__AVX2 1                  /* an AVX2+FMA kernel is compiled in */
#define DLF__AVX512 1                /* an AVX-512 kernel is compiled in */
#define DLF__CPU_DETECT 1            /* and the CPU is asked which of them it can run */
#define DLF__TARGET_AVX2 __attribute__((target("avx2,fma")))
#define DLF__TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#elif !defined(DLF_NO_SIMD) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DLF__AVX2 1                  /* the build's flags allow AVX2: the CPU must have it */
#define DLF__TARGET_AVX2
#endif

// >>stage0_config (implementation) ------------------------------------------------

#if defined(DLF_MALLOC) && defined(DLF_REALLOC) && defined(DLF_FREE)
/* all three given: use them */
#elif !defined(DLF_MALLOC) && !defined(DLF_REALLOC) && !defined(DLF_FREE)
#define DLF_MALLOC(sz) malloc(sz)
#define DLF_REALLOC(p, sz) realloc(p, sz)
#define DLF_FREE(p) free(p)
#else
#error "dlf.h: define all of DLF_MALLOC, DLF_REALLOC and DLF_FREE, or none of them"
#endif

#ifndef DLF_ASSERT
#include <assert.h>
#define DLF_ASSERT(x) assert(x)
#endif

/* _Pragma lets OpenMP directives vanish cleanly when OpenMP is off, so a build
   without -fopenmp has no "unknown pragma" warnings. */
#ifdef _OPENMP
#define DLF__OMP(x) _Pragma(#x)
#else
#define DLF__OMP(x)
#endif

/* Thread-local storage for the error slot and the panic handler (stb's way: the user
   may predefine DLF_THREAD_LOCAL, e.g. as nothing for a single-threaded program).
   Otherwise the language's own keyword when there is one, then the compilers'
   extensions; a compiler with none of them (tcc) gets plain statics: dlf then works,
   but the last error and the panic handler are shared by all threads. */
#ifndef DLF_THREAD_LOCAL
#if defined(__cplusplus) && __cplusplus >= 201103L
#define DLF_THREAD_LOCAL thread_local
#elif defined(_MSC_VER)
#define DLF_THREAD_LOCAL __declspec(thread)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define DLF_THREAD_LOCAL _Thread_local
#elif defined(__GNUC__) || defined(__clang__)
#define DLF_THREAD_LOCAL __thread
#else
#define DLF_THREAD_LOCAL
#endif
#endif
#define DLF__TLS DLF_THREAD_LOCAL

/* The random number generators (and the tape's stamp hash) wrap around modulo 2^32 and
   2^64 on purpose; clang's -fsanitize=integer (unsigned overflow, shifts that drop bits)
   is told so for them alone. Other compilers have no such check, and the attribute is empty there. */
#if defined(__clang__) && defined(__has_attribute)
#if __has_attribute(no_sanitize) && __clang_major__ >= 13
#define DLF__WRAPS __attribute__((no_sanitize("unsigned-integer-overflow", "unsigned-shift-base")))
#elif __has_attribute(no_sanitize)
#define DLF__WRAPS __attribute__((no_sanitize("unsigned-integer-overflow")))
#endif
#endif
#ifndef DLF__WRAPS
#define DLF__WRAPS
#endif

/* The only state dlf keeps: per thread, the last message and the panic handler. */
static DLF__TLS char dlf__error_buf[512];
static DLF__TLS dlf_panic_fn dlf__panic_fn;
static DLF__TLS void *dlf__panic_user;

DLFDEF const char *dlf_version_string(void) { return "0.2.0"; }
DLFDEF const char *dlf_last_error(void) { return dlf__error_buf; }
DLFDEF void dlf_clear_error(void) { dlf__error_buf[0] = 0; }
DLFDEF int dlf_set_error(int code, const char *message)
{
    size_t n = message ? strlen(message) : 0;
    if (n >= sizeof dlf__error_buf) n = sizeof dlf__error_buf - 1;
    if (n) memcpy(dlf__error_buf, message, n);
    dlf__error_buf[n] = 0;
    return code;
}

DLFDEF void dlf_set_panic_handler(dlf_panic_fn fn, void *user)
{
    dlf__panic_fn = fn;
    dlf__panic_user = user;
}

/* Record a recoverable error: the message stays readable through dlf_last_error(). */
static int dlf__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dlf__error_buf, sizeof dlf__error_buf, fmt, ap);
    va_end(ap);
    return code;
}

/* A programmer error: format, store, hand to the handler. Set a breakpoint here
   (`break dlf__panic`) and `bt` shows the call site in your program. */
static void dlf__panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dlf__error_buf, sizeof dlf__error_buf, fmt, ap);
    va_end(ap);
    if (dlf__panic_fn) {
        dlf__panic_fn(dlf__error_buf, dlf__panic_user);
        return;  /* the handler returned: the caller returns NULL */
    }
#ifndef DLF_NO_STDIO
    fprintf(stderr, "dlf: %s\n(break on dlf__panic in a debugger to see the call site)\n",
            dlf__error_buf);
#endif
    abort();
}

static void *dlf__malloc(size_t n, const char *what)
{
    void *p = DLF_MALLOC(n ? n : 1);
    if (!p) dlf__fail(DLF_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

/* The argument checks at the top of every public function. A NULL pointer is a
   programmer error; the message names the function and the argument. If the panic
   handler returns, the function returns `ret`: NULL, DLF_ERR_ARG, or nothing (void). */
#define DLF__NOT_NULL(x, ret) do {                                              \
        if (!(x)) { dlf__panic("%s: %s is NULL", __func__, #x); return ret; }   \
    } while (0)

/* An op's first line: its tape must be given, must have no pending error (an earlier op
   failed: this one returns NULL quietly, the first failure was reported), and has room
   for the op's nodes (so recording never fails halfway through an op). */
static int dlf__tape_ready(dlf_tape *t);   /* stage 5 */
#define DLF__OP(t) do {                                                         \
        DLF__NOT_NULL(t, NULL);                                                 \
        if (!dlf__tape_ready(t)) return NULL;                                   \
    } while (0)

/* An op's tensor input: NULL is a programmer error (with no pending error on the tape,
   which DLF__OP has checked); the tape is marked so that later ops stay quiet. */
#define DLF__INPUT(t, x) do {                                                   \
        if (!(x)) {                                                             \
            (t)->error = DLF_ERR_ARG;                                           \
            dlf__panic("%s: %s is NULL", __func__, #x);                         \
            return NULL;                                                        \
        } } while (0)

DLFDEF void dlf_set_threads(int n)
{
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

DLFDEF int dlf_get_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static float dlf__median(const float *v, int n)   /* n <= DLF_GOV_TRIAL: insertion sort a copy */
{
    float a[DLF_GOV_TRIAL];
    int i, j;
    for (i = 0; i < n; i++) {
        float x = v[i];
        for (j = i; j > 0 && a[j - 1] > x; j--) a[j] = a[j - 1];
        a[j] = x;
    }
    return n ? a[n / 2] : 0.0f;
}

DLFDEF void dlf_threadgov_init(dlf_threadgov *g)
{
    DLF__NOT_NULL(g, );
    memset(g, 0, sizeof *g);
    g->hi = dlf_get_threads();
    g->lo = g->hi / 2 > 0 ? g->hi / 2 : 1;
    g->cur = g->hi;
    g->state = g->hi > g->lo ? 1 : 0;
    g->period = DLF_GOV_PERIOD;
}

DLFDEF int dlf_threadgov_step(dlf_threadgov *g, double seconds)
{
    DLF__NOT_NULL(g, 1);
    g->steps++;
    switch (g->state) {
    case 0:
        return g->cur;
    case 1: case 2:              /* a trial: the first step on a new count only warms up */
        if (g->state == 1 && g->n > 0 && g->med_lo > 0.0f && seconds > 2.0 * g->med_lo) {
            g->med_hi = (float)seconds;   /* hi is still far slower: back to lo at once */
            g->cur = g->lo;
            g->state = 3;
            g->trials++;
            g->period = g->period < 16 * DLF_GOV_PERIOD ? 2 * g->period : g->period;
            g->n = 0;
            break;
        }
        if (g->n > 0) g->t[g->n - 1] = (float)seconds;
        if (++g->n <= DLF_GOV_TRIAL) break;
        if (g->state == 1) {
            g->med_hi = dlf__median(g->t, DLF_GOV_TRIAL);
            g->state = 2;
            g->cur = g->lo;
        } else {
            g->med_lo = dlf__median(g->t, DLF_GOV_TRIAL);
            g->cur = g->med_lo < 0.95f * g->med_hi ? g->lo : g->hi;  /* more threads unless clearly slower */
            g->period = g->cur == g->lo && g->period < 16 * DLF_GOV_PERIOD ? 2 * g->period : DLF_GOV_PERIOD;
            g->state = 3;
            g->trials++;
        }
        g->n = 0;
        break;
    case 3: {                    /* running: watch the last few steps */
        float expect = g->cur == g->lo ? g->med_lo : g->med_hi;
        g->t[g->n % DLF_GOV_TRIAL] = (float)seconds;
        g->n++;
        if (g->n >= g->period ||
            (g->n >= DLF_GOV_TRIAL && dlf__median(g->t, DLF_GOV_TRIAL) > 1.5f * expect)) {
            g->state = 1;        /* time for a new trial */
            g->cur = g->hi;
            g->n = 0;
        }
        break;
    }
    }
    dlf_set_threads(g->cur);
    return g->cur;
}

// >>stage1_random (implementation) ------------------------------------------------

/* splitmix64 (Steele, Lea, Flood 2014): spreads any 64-bit seed over the state. */
static DLF__WRAPS uint64_t dlf__splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

DLFDEF void dlf_rng_seed(dlf_rng *r, uint64_t seed)
{
    DLF__NOT_NULL(r, );
    uint64_t x = seed;
    uint64_t a = dlf__splitmix64(&x);
    uint64_t b = dlf__splitmix64(&x);
    r->s[0] = (uint32_t)a;
    r->s[1] = (uint32_t)(a >> 32);
    r->s[2] = (uint32_t)b;
    r->s[3] = (uint32_t)(b >> 32);
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) r->s[0] = 1;
    r->has_spare = 0;
    r->spare = 0.0f;
}

static DLF__WRAPS uint32_t dlf__rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

/* xoshiro128**: result = rotl(s1 * 5, 7) * 9, then the xor-shift state update. */
DLFDEF DLF__WRAPS uint32_t dlf_rng_u32(dlf_rng *r)
{
    DLF__NOT_NULL(r, 0);
    uint32_t *s = r->s;
    uint32_t result = dlf__rotl(s[1] * 5, 7) * 9;
    uint32_t t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = dlf__rotl(s[3], 11);
    return result;
}

/* Lemire's multiply-shift with rejection: uniform on [0, n) with no modulo bias. */
DLFDEF uint32_t dlf_rng_below(dlf_rng *r, uint32_t n)
{
    DLF__NOT_NULL(r, 0);
    uint64_t m;
    uint32_t low, threshold;
    if (n == 0) return 0;
    m = (uint64_t)dlf_rng_u32(r) * n;
    low = (uint32_t)m;
    if (low < n) {
        threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)dlf_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

/* The top 24 bits make a float in [0, 1) with every value equally spaced. */
DLFDEF float dlf_rng_uniform(dlf_rng *r)
{
    DLF__NOT_NULL(r, 0.0f);
    return (float)(dlf_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* Box-Muller: for u1, u2 uniform, r = sqrt(-2 ln u1), z0 = r cos(2 pi u2),
   z1 = r sin(2 pi u2) are two independent N(0,1). The second is kept for the next call. */
DLFDEF float dlf_rng_normal(dlf_rng *r)
{
    DLF__NOT_NULL(r, 0.0f);
    double u1, u2, radius, angle;
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    u1 = ((double)(dlf_rng_u32(r) >> 8) + 1.0) / 16777217.0;  /* (0, 1]: log is finite */
    u2 = (double)(dlf_rng_u32(r) >> 8) / 16777216.0;
    radius = sqrt(-2.0 * log(u1));
    angle = 6.283185307179586 * u2;
    r->spare = (float)(radius * sin(angle));
    r->has_spare = 1;
    return (float)(radius * cos(angle));
}

/* Gamma(alpha, 1) by Marsaglia and Tsang, "A simple method for generating gamma
   variables" (ACM TOMS, 2000): for alpha >= 1, with d = alpha - 1/3 and c = 1/sqrt(9d),
   draw x ~ N(0,1), v = (1 + c x)^3, and accept d*v when v > 0 and
   log u < x^2/2 + d - d v + d log v  (u ~ U(0,1); the squeeze u < 1 - 0.0331 x^4 accepts
   most draws without a log). For alpha < 1: Gamma(alpha + 1) * u^(1/alpha). */
DLFDEF float dlf_rng_gamma(dlf_rng *r, float alpha)
{
    double d, c, boost = 1.0;
    if (!(alpha > 0.0f)) {
        dlf__panic("dlf_rng_gamma: alpha must be > 0, got %g", (double)alpha);
        return 0.0f;
    }
    if (alpha < 1.0f) {
        double u = ((double)(dlf_rng_u32(r) >> 8) + 1.0) / 16777217.0;   /* (0, 1] */
        boost = pow(u, 1.0 / alpha);
        alpha += 1.0f;
    }
    d = alpha - 1.0 / 3.0;
    c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = dlf_rng_normal(r), v = 1.0 + c * x, u;
        if (v <= 0.0) continue;
        v = v * v * v;
        u = ((double)(dlf_rng_u32(r) >> 8) + 1.0) / 16777217.0;
        if (u < 1.0 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return (float)(d * v * boost);
    }
}

DLFDEF float dlf_rng_beta(dlf_rng *r, float a, float b)
{
    double x = dlf_rng_gamma(r, a), y = dlf_rng_gamma(r, b);
    return x + y > 0.0 ? (float)(x / (x + y)) : 0.5f;   /* both underflowed (tiny a, b): the middle */
}

/* Fisher-Yates: walk down from the end, swap each slot with a random earlier one. */
DLFDEF void dlf_rng_permutation(dlf_rng *r, int *out, int n)
{
    DLF__NOT_NULL(r, ); DLF__NOT_NULL(out, );
    int i;
    for (i = 0; i < n; i++) out[i] = i;
    for (i = n - 1; i > 0; i--) {
        int j = (int)dlf_rng_below(r, (uint32_t)(i + 1));
        int tmp = out[i];
        out[i] = out[j];
        out[j] = tmp;
    }
}

// >>stage2_tensor (implementation) ------------------------------------------------

DLFDEF char *dlf_shape_str(const dlf_tensor *t, char *buf, size_t n)
{
    DLF__NOT_NULL(buf, NULL);
    size_t len = 0;
    int i;
    if (n == 0) return buf;
    buf[0] = 0;
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    len += (size_t)snprintf(buf + len, n - len, "(");
    for (i = 0; i < t->ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, i ? ", %d" : "%d", t->shape[i]);
    if (len < n) snprintf(buf + len, n - len, t->ndim == 1 ? ",)" : ")");
    return buf;
}

/* Check a shape and compute its size; 0 and a message on a bad one. */
static int dlf__check_shape(const char *op, int ndim, const int *shape, int *size)
{
    long long s = 1;
    int i;
    if (ndim < 0 || ndim > DLF_MAX_DIMS) {
        dlf__panic("%s: ndim %d is outside 0..%d", op, ndim, DLF_MAX_DIMS);
        return 0;
    }
    if (ndim > 0 && !shape) {   /* a scalar (ndim 0) may pass NULL */
        dlf__panic("%s: shape is NULL", op);
        return 0;
    }
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            dlf__panic("%s: dim %d is negative (%d)", op, i, shape[i]);
            return 0;
        }
        s *= shape[i];
        if (s > 0x7fffffffLL) {
            dlf__panic("%s: shape has more than 2^31-1 elements", op);
            return 0;
        }
    }
    *size = (int)s;
    return 1;
}

/* Every function that writes into an existing tensor's data in place calls this. */
static void dlf__written(dlf_tensor *t)
{
    if (t) t->version++;
}

static void dlf__set_shape(dlf_tensor *t, int ndim, const int *shape, int size)
{
    int i;
    t->ndim = ndim;
    for (i = 0; i < DLF_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    t->size = size;
}

/* Header and data in one block; data 64-byte aligned for SIMD. */
DLFDEF dlf_tensor *dlf_tensor_new(int ndim, const int *shape)
{
    int size;
    size_t head = (sizeof(dlf_tensor) + 63) & ~(size_t)63;
    char *block;
    dlf_tensor *t;
    if (!dlf__check_shape("dlf_tensor_new", ndim, shape, &size)) return NULL;
    block = (char *)dlf__malloc(head + (size_t)size * sizeof(float) + 64, "a tensor");
    if (!block) return NULL;
    t = (dlf_tensor *)block;
    memset(t, 0, sizeof *t);
    t->data = (float *)(((uintptr_t)(block + head) + 63) & ~(uintptr_t)63);
    memset(t->data, 0, (size_t)size * sizeof(float));
    dlf__set_shape(t, ndim, shape, size);
    t->flags = DLF_TENSOR_HEAP;
    return t;
}

DLFDEF dlf_tensor *dlf_tensor_new1(int d0) { return dlf_tensor_new(1, &d0); }
DLFDEF dlf_tensor *dlf_tensor_new2(int d0, int d1)
{
    int s[2];
    s[0] = d0; s[1] = d1;
    return dlf_tensor_new(2, s);
}
DLFDEF dlf_tensor *dlf_tensor_new3(int d0, int d1, int d2)
{
    int s[3];
    s[0] = d0; s[1] = d1; s[2] = d2;
    return dlf_tensor_new(3, s);
}
DLFDEF dlf_tensor *dlf_tensor_new4(int d0, int d1, int d2, int d3)
{
    int s[4];
    s[0] = d0; s[1] = d1; s[2] = d2; s[3] = d3;
    return dlf_tensor_new(4, s);
}

DLFDEF dlf_tensor *dlf_tensor_from(int ndim, const int *shape, const float *values)
{
    dlf_tensor *t = dlf_tensor_new(ndim, shape);
    if (t && values) memcpy(t->data, values, (size_t)t->size * sizeof(float));
    return t;
}

DLFDEF dlf_tensor *dlf_tensor_ones(int ndim, const int *shape)
{
    dlf_tensor *t = dlf_tensor_new(ndim, shape);
    if (t) dlf_fill(t, 1.0f);
    return t;
}

DLFDEF dlf_tensor *dlf_tensor_rand(int ndim, const int *shape, dlf_rng *r)
{
    DLF__NOT_NULL(r, NULL);
    dlf_tensor *t = dlf_tensor_new(ndim, shape);
    if (t) dlf_fill_uniform(t, r, 0.0f, 1.0f);
    return t;
}

DLFDEF dlf_tensor *dlf_tensor_randn(int ndim, const int *shape, dlf_rng *r)
{
    DLF__NOT_NULL(r, NULL);
    dlf_tensor *t = dlf_tensor_new(ndim, shape);
    if (t) dlf_fill_normal(t, r, 0.0f, 1.0f);
    return t;
}

DLFDEF dlf_tensor *dlf_tensor_arange(int n)
{
    dlf_tensor *t = dlf_tensor_new(1, &n);
    if (t) dlf_fill_arange(t, 0.0f, 1.0f);
    return t;
}

DLFDEF void dlf_tensor_free(dlf_tensor *t)
{
    if (!t) return;
    if (!(t->flags & DLF_TENSOR_HEAP)) {
        dlf__panic("dlf_tensor_free: tensor %s is not a heap tensor (it lives in a tape's arena)",
                   t->name ? t->name : "");
        return;
    }
    if (t->grad) DLF_FREE(t->grad);
    DLF_FREE(t);
}

DLFDEF int dlf_tensor_requires_grad(dlf_tensor *t)
{
    DLF__NOT_NULL(t, DLF_ERR_ARG);
    t->requires_grad = 1;
    if (t->grad || !(t->flags & DLF_TENSOR_HEAP)) return DLF_OK;
    t->grad = (float *)dlf__malloc((size_t)t->size * sizeof(float), "a gradient");
    if (!t->grad) return DLF_ERR_NOMEM;
    memset(t->grad, 0, (size_t)t->size * sizeof(float));
    return DLF_OK;
}

DLFDEF dlf_tensor *dlf_param_new(int ndim, const int *shape)
{
    dlf_tensor *t = dlf_tensor_new(ndim, shape);
    if (t && dlf_tensor_requires_grad(t) != DLF_OK) {
        dlf_tensor_free(t);
        return NULL;
    }
    return t;
}

DLFDEF void dlf_fill(dlf_tensor *t, float value)
{
    DLF__NOT_NULL(t, );
    int i;
    for (i = 0; i < t->size; i++) t->data[i] = value;
    dlf__written(t);
}

DLFDEF void dlf_fill_uniform(dlf_tensor *t, dlf_rng *r, float lo, float hi)
{
    DLF__NOT_NULL(t, ); DLF__NOT_NULL(r, );
    int i;
    for (i = 0; i < t->size; i++) t->data[i] = lo + (hi - lo) * dlf_rng_uniform(r);
    dlf__written(t);
}

DLFDEF void dlf_fill_normal(dlf_tensor *t, dlf_rng *r, float mean, float std)
{
    DLF__NOT_NULL(t, ); DLF__NOT_NULL(r, );
    int i;
    for (i = 0; i < t->size; i++) t->data[i] = mean + std * dlf_rng_normal(r);
    dlf__written(t);
}

DLFDEF void dlf_fill_arange(dlf_tensor *t, float start, float step)
{
    DLF__NOT_NULL(t, );
    int i;
    for (i = 0; i < t->size; i++) t->data[i] = start + (float)i * step;
    dlf__written(t);
}

DLFDEF int dlf_same_shape(const dlf_tensor *a, const dlf_tensor *b)
{
    DLF__NOT_NULL(a, 0); DLF__NOT_NULL(b, 0);
    int i;
    if (a->ndim != b->ndim) return 0;
    for (i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

DLFDEF void dlf_tensor_copy(dlf_tensor *dst, const dlf_tensor *src)
{
    DLF__NOT_NULL(dst, ); DLF__NOT_NULL(src, );
    if (dst->size != src->size) {
        char sa[64], sb[64];
        dlf__panic("dlf_tensor_copy: dst %s and src %s differ in size",
                   dlf_shape_str(dst, sa, sizeof sa), dlf_shape_str(src, sb, sizeof sb));
        return;
    }
    if (dst->data != src->data) memcpy(dst->data, src->data, (size_t)src->size * sizeof(float));
    dlf__written(dst);
}

/* Largest |a - b| over all elements; NaN anywhere makes it NaN (so tests notice). */
DLFDEF float dlf_max_abs_diff_n(const float *a, const float *b, int n)
{
    DLF__NOT_NULL(a, NAN); DLF__NOT_NULL(b, NAN);
    float m = 0.0f;
    int i;
    for (i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d != d) return NAN;
        if (d > m) m = d;
    }
    return m;
}

DLFDEF float dlf_max_abs_diff(const dlf_tensor *a, const dlf_tensor *b)
{
    DLF__NOT_NULL(a, NAN); DLF__NOT_NULL(b, NAN);
    if (a->size != b->size) {
        char sa[64], sb[64];
        dlf__panic("dlf_max_abs_diff: shapes %s and %s differ",
                   dlf_shape_str(a, sa, sizeof sa), dlf_shape_str(b, sb, sizeof sb));
        return NAN;
    }
    return dlf_max_abs_diff_n(a->data, b->data, a->size);
}

/* NumPy's rule: |a - b| <= atol + rtol * |b| for every element (b is the reference). */
DLFDEF int dlf_allclose(const dlf_tensor *a, const dlf_tensor *b, float atol, float rtol)
{
    DLF__NOT_NULL(a, 0); DLF__NOT_NULL(b, 0);
    int i;
    if (!dlf_same_shape(a, b)) return 0;
    for (i = 0; i < a->size; i++) {
        float d = fabsf(a->data[i] - b->data[i]);
        if (!(d <= atol + rtol * fabsf(b->data[i]))) return 0;
    }
    return 1;
}

#ifndef DLF_NO_STDIO
/* Print one dimension of a tensor, NumPy style: rows nested in brackets, and for
   more than 1000 elements only the first and last 3 entries of each dim. */
static void dlf__print_dim(const dlf_tensor *t, int dim, int offset, int indent, int summarize)
{
    int n, stride = 1, i, d;
    if (dim >= DLF_MAX_DIMS) return;   /* never (dim < ndim); says so to the compiler's bounds check */
    n = t->shape[dim];
    for (d = dim + 1; d < t->ndim && d < DLF_MAX_DIMS; d++) stride *= t->shape[d];
    printf("[");
    for (i = 0; i < n; i++) {
        if (summarize && n > 6 && i == 3) {
            printf(dim == t->ndim - 1 ? "..., " : "...,\n%*s", dim == t->ndim - 1 ? 0 : indent + 1, "");
            i = n - 3;
        }
        if (dim == t->ndim - 1)
            printf("%.4f", t->data[offset + i]);
        else
            dlf__print_dim(t, dim + 1, offset + i * stride, indent + 1, summarize);
        if (i < n - 1) {
            if (dim == t->ndim - 1)
                printf(", ");
            else
                printf(",\n%*s", indent + 1, "");
        }
    }
    printf("]");
}

DLFDEF void dlf_tensor_print(const dlf_tensor *t, const char *label)
{
    DLF__NOT_NULL(t, );
    char s[64];
    const char *name = label ? label : (t->name ? t->name : "tensor");
    int indent = (int)strlen(name) + 1;
    printf("%s%s\n%s ", name, dlf_shape_str(t, s, sizeof s), name);
    if (t->ndim == 0)
        printf("%.4f", t->data[0]);
    else
        dlf__print_dim(t, 0, 0, indent, t->size > 1000);
    printf("\n");
}
#endif

// >>stage3_elementwise (implementation) -------------------------------------------

/* From stage 5: the arena and the recording of nodes. */
static dlf_tensor *dlf__out(dlf_tape *t, int ndim, const int *shape);
static int dlf__live(const dlf_tape *t, const char *op, const dlf_tensor *a, const dlf_tensor *b, const dlf_tensor *c);
static void dlf__view_of(const dlf_tape *t, dlf_tensor *view, dlf_tensor *a);
static dlf_node *dlf__record(dlf_tape *t, dlf_op op, dlf_tensor *out, dlf_tensor *a, dlf_tensor *b);
static dlf_node *dlf__record3(dlf_tape *t, dlf_op op, dlf_tensor *out, dlf_tensor *a, dlf_tensor *b, dlf_tensor *c);
static void *dlf__arena_alloc(dlf_tape *t, size_t bytes);
static float *dlf__grad(dlf_tape *t, dlf_tensor *x);

#define DLF__PAR_MIN 32768  /* below this many elements, threads cost more than they save */

/* Broadcasting. Both shapes are padded on the left to 4 dims; then, dim by dim,
   equal sizes match and a size of 1 stretches (its stride becomes 0).
     a (2,3) -> (1,1,2,3)    b (3,) -> (1,1,1,3)    out (2,3), b's stride on dim 2 is 0 */
typedef struct dlf__bcast {
    int n[4];    /* output extent per padded dim */
    int sa[4];   /* a's stride per padded dim, 0 where a is stretched */
    int sb[4];   /* b's stride per padded dim */
    int ndim;    /* output ndim = max(a.ndim, b.ndim) */
} dlf__bcast;

static void dlf__pad4(const dlf_tensor *x, int *dims, int *strides)
{
    int i, s = 1, off = 4 - x->ndim;
    for (i = 3; i >= 0; i--) {
        dims[i] = i >= off ? x->shape[i - off] : 1;
        strides[i] = s;
        s *= dims[i];
    }
}

static int dlf__broadcast(const char *op, const dlf_tensor *a, const dlf_tensor *b, dlf__bcast *bc)
{
    int da[4], db[4], i;
    dlf__pad4(a, da, bc->sa);
    dlf__pad4(b, db, bc->sb);
    bc->ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (i = 0; i < 4; i++) {
        if (da[i] == db[i]) {
            bc->n[i] = da[i];
        } else if (da[i] == 1) {
            bc->n[i] = db[i];
            bc->sa[i] = 0;
        } else if (db[i] == 1) {
            bc->n[i] = da[i];
            bc->sb[i] = 0;
        } else {
            char sa[64], sb[64];
            dlf__panic("%s: shapes %s and %s do not broadcast (dim %d: %d vs %d)",
                       op, dlf_shape_str(a, sa, sizeof sa), dlf_shape_str(b, sb, sizeof sb),
                       i - 4, da[i], db[i]);
            return 0;
        }
    }
    for (i = 0; i < 4; i++) {   /* a stretched dim of size 1 must have stride 0 too */
        if (da[i] == 1) bc->sa[i] = 0;
        if (db[i] == 1) bc->sb[i] = 0;
    }
    return 1;
}

/* One innermost row of a binary op: o[i] = a[i*sa] (op) b[i*sb]. */
static void dlf__binary_row(dlf_op op, int n, const float *a, int sa, const float *b, int sb, float *o)
{
    int i;
    switch (op) {
    case DLF_OP_ADD: for (i = 0; i < n; i++) o[i] = a[i * sa] + b[i * sb]; break;
    case DLF_OP_SUB: for (i = 0; i < n; i++) o[i] = a[i * sa] - b[i * sb]; break;
    case DLF_OP_MUL: for (i = 0; i < n; i++) o[i] = a[i * sa] * b[i * sb]; break;
    case DLF_OP_DIV: for (i = 0; i < n; i++) o[i] = a[i * sa] / b[i * sb]; break;
    case DLF_OP_MINIMUM:   /* a NaN on either side wins; a tie gives a (0 vs -0), as torch.minimum/maximum */
        for (i = 0; i < n; i++) { float x = a[i * sa], y = b[i * sb]; o[i] = x != x || x <= y ? x : y; }
        break;
    case DLF_OP_MAXIMUM:
        for (i = 0; i < n; i++) { float x = a[i * sa], y = b[i * sb]; o[i] = x != x || x >= y ? x : y; }
        break;
    default: DLF_ASSERT(0);
    }
}

static const char *dlf__binary_name(dlf_op op)
{
    switch (op) {
    case DLF_OP_ADD: return "dlf_add";
    case DLF_OP_SUB: return "dlf_sub";
    case DLF_OP_MUL: return "dlf_mul";
    case DLF_OP_MINIMUM: return "dlf_minimum";
    case DLF_OP_MAXIMUM: return "dlf_maximum";
    default: return "dlf_div";
    }
}

/* DLF__OP and DLF__INPUT for the ops that share one body (elementwise, reductions), with
   the public function's name passed in: 1 to go on, 0 (return NULL) otherwise. */
static int dlf__op_args(dlf_tape *t, const char *fn, const dlf_tensor *a, const dlf_tensor *b, int two)
{
    if (!t) {
        dlf__panic("%s: t is NULL", fn);
        return 0;
    }
    if (!dlf__tape_ready(t)) return 0;   /* an earlier op failed: quietly NULL */
    if (!a || (two && !b)) {
        t->error = DLF_ERR_ARG;
        dlf__panic("%s: %s is NULL", fn, !a ? "a" : "b");
        return 0;
    }
    return 1;
}

/* The same for a unary op; its public name ("dlf_relu") is made only when a message needs it. */
static int dlf__unary_args(dlf_tape *t, dlf_op op, const dlf_tensor *a)
{
    char fn[32];
    if (t && a && !t->error) return dlf__tape_ready(t);
    snprintf(fn, sizeof fn, "dlf_%s", dlf_op_name(op));
    return dlf__op_args(t, fn, a, NULL, 0);
}

static dlf_tensor *dlf__binary(dlf_tape *t, dlf_op op, dlf_tensor *a, dlf_tensor *b)
{
    dlf__bcast bc;
    dlf_tensor *out;
    int shape[4], i, rows;
    if (!dlf__op_args(t, dlf__binary_name(op), a, b, 1)) return NULL;
    if (!dlf__live(t, dlf__binary_name(op), a, b, NULL)) return NULL;
    if (!dlf__broadcast(dlf__binary_name(op), a, b, &bc)) return NULL;
    for (i = 0; i < bc.ndim; i++) shape[i] = bc.n[4 - bc.ndim + i];
    out = dlf__out(t, bc.ndim, shape);
    if (!out) return NULL;
    rows = bc.n[0] * bc.n[1] * bc.n[2];
    /* each row of the last dim is independent: split rows over threads */
    DLF__OMP(omp parallel for if (out->size > DLF__PAR_MIN))
    for (i = 0; i < rows; i++) {
        int i0 = i / (bc.n[1] * bc.n[2]), i1 = (i / bc.n[2]) % bc.n[1], i2 = i % bc.n[2];
        const float *pa = a->data + i0 * bc.sa[0] + i1 * bc.sa[1] + i2 * bc.sa[2];
        const float *pb = b->data + i0 * bc.sb[0] + i1 * bc.sb[1] + i2 * bc.sb[2];
        dlf__binary_row(op, bc.n[3], pa, bc.sa[3], pb, bc.sb[3], out->data + (size_t)i * bc.n[3]);
    }
    dlf__record(t, op, out, a, b);
    return out;
}

DLFDEF dlf_tensor *dlf_add(dlf_tape *t, dlf_tensor *a, dlf_tensor *b) { return dlf__binary(t, DLF_OP_ADD, a, b); }
DLFDEF dlf_tensor *dlf_sub(dlf_tape *t, dlf_tensor *a, dlf_tensor *b) { return dlf__binary(t, DLF_OP_SUB, a, b); }
DLFDEF dlf_tensor *dlf_mul(dlf_tape *t, dlf_tensor *a, dlf_tensor *b) { return dlf__binary(t, DLF_OP_MUL, a, b); }
DLFDEF dlf_tensor *dlf_div(dlf_tape *t, dlf_tensor *a, dlf_tensor *b) { return dlf__binary(t, DLF_OP_DIV, a, b); }

/* Backward of the binary ops. In the forward pass this was o = a (op) b, with a and b
   stretched by broadcasting. The chain rule gives, per output element, with g = dL/do:
     add: da += g          db += g
     sub: da += g          db -= g
     mul: da += g * b      db += g * a
     div: da += g / b      db -= g * a / b^2
     maximum: the larger side gets g; a tie gives g/2 to each (PyTorch's rule); where a
              NaN won, both sides get g (no comparison holds, as in PyTorch)
     minimum: the same with the smaller side
   A stretched input received the same value at many outputs, so its gradient is the
   SUM over them: the 0 strides make every such output add into the same slot.
   The loop is serial so the sums happen in one fixed order (determinism). */
static void dlf__binary_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *a = nd->in[0], *b = nd->in[1], *o = nd->out;
    float *ga = dlf__grad(t, a), *gb = dlf__grad(t, b);
    dlf__bcast bc;
    int i0, i1, i2, i3;
    const float *g = o->grad;
    if (!dlf__broadcast(dlf__binary_name(nd->op), a, b, &bc)) return;
    for (i0 = 0; i0 < bc.n[0]; i0++)
    for (i1 = 0; i1 < bc.n[1]; i1++)
    for (i2 = 0; i2 < bc.n[2]; i2++)
    for (i3 = 0; i3 < bc.n[3]; i3++) {
        int ia = i0 * bc.sa[0] + i1 * bc.sa[1] + i2 * bc.sa[2] + i3 * bc.sa[3];
        int ib = i0 * bc.sb[0] + i1 * bc.sb[1] + i2 * bc.sb[2] + i3 * bc.sb[3];
        float gi = *g++;
        float av = a->data[ia], bv = b->data[ib];
        switch (nd->op) {
        case DLF_OP_ADD:
            if (ga) ga[ia] += gi;
            if (gb) gb[ib] += gi;
            break;
        case DLF_OP_SUB:
            if (ga) ga[ia] += gi;
            if (gb) gb[ib] -= gi;
            break;
        case DLF_OP_MUL:
            if (ga) ga[ia] += gi * bv;
            if (gb) gb[ib] += gi * av;
            break;
        case DLF_OP_MAXIMUM:
            if (ga) ga[ia] += av == bv ? 0.5f * gi : av < bv ? 0.0f : gi;
            if (gb) gb[ib] += av == bv ? 0.5f * gi : av > bv ? 0.0f : gi;
            break;
        case DLF_OP_MINIMUM:
            if (ga) ga[ia] += av == bv ? 0.5f * gi : av > bv ? 0.0f : gi;
            if (gb) gb[ib] += av == bv ? 0.5f * gi : av < bv ? 0.0f : gi;
            break;
        default: /* DLF_OP_DIV */
            if (ga) ga[ia] += gi / bv;
            if (gb) gb[ib] -= gi * av / (bv * bv);
            break;
        }
    }
}

/* x^p as PyTorch's CPU pow computes it: these exponents take their own formula (so x^0.5
   is sqrt: (-inf)^0.5 and (-1)^0.5 are NaN, (-0)^0.5 is -0), the rest C's powf. */
static float dlf__powf(float x, float p)
{
    if (p == 2.0f) return x * x;
    if (p == 3.0f) return x * x * x;
    if (p == 0.5f) return sqrtf(x);
    if (p == -0.5f) return 1.0f / sqrtf(x);
    if (p == -1.0f) return 1.0f / x;
    if (p == -2.0f) return 1.0f / (x * x);
    return powf(x, p);
}

/* Unary ops (and ops with one scalar argument s): forward by a switch, element by element.
   NaN in, NaN out for every one (relu too: NaN < 0 is false, so relu(NaN) = NaN, as
   PyTorch); relu(-0) is -0, as PyTorch. */
static dlf_tensor *dlf__unary(dlf_tape *t, dlf_op op, dlf_tensor *a, float s)
{
    dlf_tensor *out;
    dlf_node *nd;
    int i, n;
    if (!dlf__unary_args(t, op, a)) return NULL;
    out = dlf__live(t, dlf_op_name(op), a, NULL, NULL) ? dlf__out(t, a->ndim, a->shape) : NULL;
    if (!out) return NULL;
    n = a->size;
    if (op == DLF_OP_RELU) {
        /* the hot one in every network gets its own loop, which the compiler
           vectorizes; it computes exactly the RELU case below */
        const float *x = a->data;
        float *y = out->data;
        DLF__OMP(omp parallel for if (n > DLF__PAR_MIN))
        for (i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
        n = 0;  /* done: skip the general loop */
    }
    DLF__OMP(omp parallel for if (n > DLF__PAR_MIN))
    for (i = 0; i < n; i++) {
        float x = a->data[i], y;
        switch (op) {
        case DLF_OP_ADD_SCALAR: y = x + s; break;                  /* y = x + s */
        case DLF_OP_MUL_SCALAR: y = x * s; break;                  /* y = x * s */
        case DLF_OP_POW_SCALAR: y = dlf__powf(x, s); break;        /* y = x^s */
        case DLF_OP_NEG: y = -x; break;                            /* y = -x */
        case DLF_OP_EXP: y = expf(x); break;                       /* y = e^x */
        case DLF_OP_LOG: y = logf(x); break;                       /* y = ln x */
        case DLF_OP_SQRT: y = sqrtf(x); break;                     /* y = sqrt x */
        case DLF_OP_SQUARE: y = x * x; break;                      /* y = x^2 */
        case DLF_OP_ABS: y = fabsf(x); break;                      /* y = |x| */
        case DLF_OP_RELU: y = x < 0.0f ? 0.0f : x; break;          /* y = max(x, 0) */
        case DLF_OP_SIGMOID: y = 1.0f / (1.0f + expf(-x)); break;  /* y = 1/(1+e^-x) */
        case DLF_OP_TANH: y = tanhf(x); break;                     /* y = tanh x */
        default: y = 0.0f; DLF_ASSERT(0);
        }
        out->data[i] = y;
    }
    nd = dlf__record(t, op, out, a, NULL);
    if (nd) nd->farg[0] = s;
    return out;
}

/* Backward of the unary ops: da += g * dy/dx, with y the saved output where that is
   cheaper (exp, sqrt, sigmoid, tanh reuse y; the rest need x). At NaN and the infinities
   each gives PyTorch's value: relu passes g where y is not <= 0 (so at NaN too), abs
   gives 0 at NaN (sign(NaN) = 0), pow with s = 0 gives 0 everywhere. */
static void dlf__unary_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *a = nd->in[0], *o = nd->out;
    float *ga = dlf__grad(t, a);
    const float *g = o->grad;
    float s = nd->farg[0];
    int i, n = a->size;
    if (!ga) return;
    if (nd->op == DLF_OP_RELU) {  /* its own vectorized loop, as in the forward */
        const float *y = o->data;
        DLF__OMP(omp parallel for if (n > DLF__PAR_MIN))
        for (i = 0; i < n; i++) ga[i] += y[i] <= 0.0f ? 0.0f : g[i];
        return;
    }
    DLF__OMP(omp parallel for if (n > DLF__PAR_MIN))
    for (i = 0; i < n; i++) {
        float x = a->data[i], y = o->data[i], d;
        switch (nd->op) {
        case DLF_OP_ADD_SCALAR: d = 1.0f; break;                     /* d(x+s)/dx = 1 */
        case DLF_OP_MUL_SCALAR: d = s; break;                        /* d(xs)/dx = s */
        case DLF_OP_POW_SCALAR: d = s == 0.0f ? 0.0f : s * dlf__powf(x, s - 1.0f); break; /* s x^(s-1) */
        case DLF_OP_NEG: d = -1.0f; break;
        case DLF_OP_EXP: d = y; break;                               /* (e^x)' = e^x = y */
        case DLF_OP_LOG: d = 1.0f / x; break;                        /* (ln x)' = 1/x */
        case DLF_OP_SQRT: d = 0.5f / y; break;                       /* 1/(2 sqrt x) */
        case DLF_OP_SQUARE: d = 2.0f * x; break;
        case DLF_OP_ABS: d = x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); break; /* sign x */
        case DLF_OP_RELU: d = y <= 0.0f ? 0.0f : 1.0f; break;        /* step; 0 at x = 0 */
        case DLF_OP_SIGMOID: d = y * (1.0f - y); break;              /* s(x)(1 - s(x)) */
        case DLF_OP_TANH: d = 1.0f - y * y; break;                   /* 1 - tanh^2 */
        default: d = 0.0f; DLF_ASSERT(0);
        }
        ga[i] += nd->op == DLF_OP_POW_SCALAR && s == 0.0f ? 0.0f : g[i] * d;  /* x^0 = 1: zero slope */
    }
}

DLFDEF dlf_tensor *dlf_add_scalar(dlf_tape *t, dlf_tensor *a, float s) { return dlf__unary(t, DLF_OP_ADD_SCALAR, a, s); }
DLFDEF dlf_tensor *dlf_mul_scalar(dlf_tape *t, dlf_tensor *a, float s) { return dlf__unary(t, DLF_OP_MUL_SCALAR, a, s); }
DLFDEF dlf_tensor *dlf_pow_scalar(dlf_tape *t, dlf_tensor *a, float p) { return dlf__unary(t, DLF_OP_POW_SCALAR, a, p); }
DLFDEF dlf_tensor *dlf_neg(dlf_tape *t, dlf_tensor *a) { return dlf__unary(t, DLF_OP_NEG, a, 0.0f); }
DLFDEF dlf_tensor *dlf_exp(dlf_tape *t, dlf_tensor *a) { return dlf__unary(t, DLF_OP_EXP, a, 0.0f); }
DLFDEF dlf_tensor *dlf_log(dlf_tape *t, dlf_tensor *a) { return dlf__unary(t, DLF_OP_LOG, a, 0.0f); }
DLFDEF dlf_tensor *dlf_sqrt(dlf_tape *t, dlf_tensor *a) { return dlf__unary(t, DLF_OP_SQRT, a, 0.0f); }
DLFDEF dlf_tensor *dlf_square(dlf_tape *t, dlf_tensor *a) { return dlf__unary(t, DLF_OP_SQUARE, a, 0.0f); }
DLFDEF dlf_tensor *dlf_abs(dlf_tape *t, dlf_tensor *a) { return dlf__unary(t, DLF_OP_ABS, a, 0.0f); }
DLFDEF dlf_tensor *dlf_relu(dlf_tape *t, dlf_tensor *a) { return dlf__unary(t, DLF_OP_RELU, a, 0.0f); }
DLFDEF dlf_tensor *dlf_sigmoid(dlf_tape *t, dlf_tensor *a) { return dlf__unary(t, DLF_OP_SIGMOID, a, 0.0f); }
DLFDEF dlf_tensor *dlf_tanh(dlf_tape *t, dlf_tensor *a) { return dlf__unary(t, DLF_OP_TANH, a, 0.0f); }

/* Reductions view the input as (outer, n, inner) around the reduced axis:
     a (2,3,4), axis 1  ->  outer 2, n 3, inner 4;  out[o][i] = reduce_k a[o][k][i].
   Sums accumulate in double, in index order, so results do not depend on threads. */
static int dlf__reduce_setup(const char *op, const dlf_tensor *a, int axis, int keepdim,
                             int *outer, int *n, int *inner, int *ndim, int *shape)
{
    int i, j = 0;
    char s[64];
    if (a->ndim == 0 && (axis == 0 || axis == -1)) {  /* PyTorch: a 0-dim tensor reduces to itself */
        *outer = *n = *inner = 1;
        *ndim = 0;
        return 1;
    }
    if (axis < 0) axis += a->ndim;
    if (axis < 0 || axis >= a->ndim) {
        dlf__panic("%s: axis %d is out of range for shape %s", op, axis < 0 ? axis - a->ndim : axis,
                   dlf_shape_str(a, s, sizeof s));
        return 0;
    }
    if (a->shape[axis] == 0) {
        dlf__panic("%s: cannot reduce over empty axis %d of shape %s", op, axis,
                   dlf_shape_str(a, s, sizeof s));
        return 0;
    }
    *outer = 1;
    *inner = 1;
    for (i = 0; i < axis; i++) *outer *= a->shape[i];
    for (i = axis + 1; i < a->ndim; i++) *inner *= a->shape[i];
    *n = a->shape[axis];
    for (i = 0; i < a->ndim; i++) {
        if (i == axis && !keepdim) continue;
        shape[j++] = i == axis ? 1 : a->shape[i];
    }
    *ndim = j;
    return 1;
}

static dlf_tensor *dlf__reduce(dlf_tape *t, dlf_op op, dlf_tensor *a, int axis, int keepdim, int correction,
                               const char *name, int want_argmax)
{
    int outer, n, inner, ndim, shape[4] = {1, 1, 1, 1}, o;
    dlf_tensor *out, *idx = NULL;
    dlf_node *nd;
    if (!dlf__op_args(t, name, a, NULL, 0)) return NULL;
    if (!dlf__live(t, name, a, NULL, NULL)) return NULL;
    if (axis == 127) {  /* the _all variants: one reduction over everything */
        outer = 1; n = a->size; inner = 1; ndim = 0;
        if (n == 0) { dlf__panic("%s: cannot reduce an empty tensor", name); return NULL; }
    } else if (!dlf__reduce_setup(name, a, axis, keepdim, &outer, &n, &inner, &ndim, shape)) {
        return NULL;
    }
    out = dlf__out(t, ndim, shape);
    if (!out) return NULL;
    if (op == DLF_OP_MAX || op == DLF_OP_MIN) {
        idx = dlf__out(t, ndim, shape);
        if (!idx) return NULL;
    }
    DLF__OMP(omp parallel for if (a->size > DLF__PAR_MIN))
    for (o = 0; o < outer; o++) {
        int i, k;
        for (i = 0; i < inner; i++) {
            const float *p = a->data + (size_t)o * n * inner + i;
            double acc = 0.0, mean, ss;
            float best;
            int besti;
            switch (op) {
            case DLF_OP_SUM:
            case DLF_OP_MEAN:   /* sum = sum_k x_k;  mean = sum / n */
                for (k = 0; k < n; k++) acc += p[k * inner];
                out->data[o * inner + i] = (float)(op == DLF_OP_MEAN ? acc / n : acc);
                break;
            case DLF_OP_VAR:    /* var = sum_k (x_k - mean)^2 / (n - correction), two passes */
                for (k = 0; k < n; k++) acc += p[k * inner];
                mean = acc / n;
                ss = 0.0;
                for (k = 0; k < n; k++) ss += (p[k * inner] - mean) * (p[k * inner] - mean);
                out->data[o * inner + i] = (float)(ss / (double)(n - correction));
                break;
            default:            /* max = max_k x_k (min: min_k), ties go to the first k; NaN wins */
                best = p[0];
                besti = 0;
                for (k = 1; k < n; k++) {
                    float v = p[k * inner];
                    if ((op == DLF_OP_MIN ? v < best : v > best) || (v != v && best == best)) { best = v; besti = k; }
                }
                out->data[o * inner + i] = want_argmax ? (float)besti : best;
                if (idx) idx->data[o * inner + i] = (float)besti;
                break;
            }
        }
    }
    if (want_argmax) return out;  /* indices carry no gradient */
    nd = dlf__record(t, op, out, a, NULL);
    if (nd) {
        nd->iarg[0] = outer;
        nd->iarg[1] = n;
        nd->iarg[2] = inner;
        nd->iarg[3] = correction;
        nd->aux = idx;
    }
    return out;
}

/* Backward of the reductions, g = dL/dout broadcast back over the reduced axis:
     sum:  dx_k += g                     (every x_k counted once)
     mean: dx_k += g / n
     var:  dx_k += g * 2 (x_k - mean) / (n - correction)
     max:  dx_argmax += g                (only the winner moved the output; min: the argmin) */
static void dlf__reduce_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *a = nd->in[0];
    float *ga = dlf__grad(t, a);
    const float *g = nd->out->grad;
    int outer = nd->iarg[0], n = nd->iarg[1], inner = nd->iarg[2], correction = nd->iarg[3];
    int o, i, k;
    if (!ga) return;
    for (o = 0; o < outer; o++)
    for (i = 0; i < inner; i++) {
        float gi = g[o * inner + i];
        float *gp = ga + (size_t)o * n * inner + i;
        const float *p = a->data + (size_t)o * n * inner + i;
        double mean = 0.0;
        switch (nd->op) {
        case DLF_OP_SUM:
            for (k = 0; k < n; k++) gp[k * inner] += gi;
            break;
        case DLF_OP_MEAN:
            for (k = 0; k < n; k++) gp[k * inner] += gi / (float)n;
            break;
        case DLF_OP_VAR:
            for (k = 0; k < n; k++) mean += p[k * inner];
            mean /= n;
            for (k = 0; k < n; k++)
                gp[k * inner] += (float)(gi * 2.0 * (p[k * inner] - mean) / (double)(n - correction));
            break;
        default: /* DLF_OP_MAX, DLF_OP_MIN */
            gp[(int)nd->aux->data[o * inner + i] * inner] += gi;
            break;
        }
    }
}

DLFDEF dlf_tensor *dlf_sum(dlf_tape *t, dlf_tensor *a, int axis, int keepdim) { return dlf__reduce(t, DLF_OP_SUM, a, axis, keepdim, 0, "dlf_sum", 0); }
DLFDEF dlf_tensor *dlf_mean(dlf_tape *t, dlf_tensor *a, int axis, int keepdim) { return dlf__reduce(t, DLF_OP_MEAN, a, axis, keepdim, 0, "dlf_mean", 0); }
DLFDEF dlf_tensor *dlf_max(dlf_tape *t, dlf_tensor *a, int axis, int keepdim) { return dlf__reduce(t, DLF_OP_MAX, a, axis, keepdim, 0, "dlf_max", 0); }
DLFDEF dlf_tensor *dlf_argmax(dlf_tape *t, dlf_tensor *a, int axis, int keepdim) { return dlf__reduce(t, DLF_OP_MAX, a, axis, keepdim, 0, "dlf_argmax", 1); }
DLFDEF dlf_tensor *dlf_var(dlf_tape *t, dlf_tensor *a, int axis, int keepdim, int correction) { return dlf__reduce(t, DLF_OP_VAR, a, axis, keepdim, correction, "dlf_var", 0); }
DLFDEF dlf_tensor *dlf_sum_all(dlf_tape *t, dlf_tensor *a) { return dlf__reduce(t, DLF_OP_SUM, a, 127, 0, 0, "dlf_sum_all", 0); }
DLFDEF dlf_tensor *dlf_mean_all(dlf_tape *t, dlf_tensor *a) { return dlf__reduce(t, DLF_OP_MEAN, a, 127, 0, 0, "dlf_mean_all", 0); }
DLFDEF dlf_tensor *dlf_min(dlf_tape *t, dlf_tensor *a, int axis, int keepdim) { return dlf__reduce(t, DLF_OP_MIN, a, axis, keepdim, 0, "dlf_min", 0); }
DLFDEF dlf_tensor *dlf_argmin(dlf_tape *t, dlf_tensor *a, int axis, int keepdim) { return dlf__reduce(t, DLF_OP_MIN, a, axis, keepdim, 0, "dlf_argmin", 1); }

/* Reshape is a view: a new header over the same data. One dim may be -1 (inferred). */
DLFDEF dlf_tensor *dlf_reshape(dlf_tape *t, dlf_tensor *a, int ndim, const int *shape)
{
    DLF__OP(t); DLF__INPUT(t, a);
    int s[4], i, infer = -1, known = 1, size;
    char sa[64];
    dlf_tensor *out;
    if (!dlf__live(t, "dlf_reshape", a, NULL, NULL)) return NULL;
    if (ndim < 0 || ndim > DLF_MAX_DIMS) {
        dlf__panic("dlf_reshape: ndim %d is outside 0..%d", ndim, DLF_MAX_DIMS);
        return NULL;
    }
    for (i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0) { infer = i; continue; }
        if (s[i] < 0) { dlf__panic("dlf_reshape: bad dim %d in the new shape of %s", s[i], dlf_shape_str(a, sa, sizeof sa)); return NULL; }
        known *= s[i];
    }
    if (infer >= 0) {
        if (known == 0 || a->size % known) {
            dlf__panic("dlf_reshape: cannot infer the -1 dim: %s has %d elements, the rest of the new shape %d",
                       dlf_shape_str(a, sa, sizeof sa), a->size, known);
            return NULL;
        }
        s[infer] = a->size / known;
    }
    if (!dlf__check_shape("dlf_reshape", ndim, s, &size)) return NULL;
    if (size != a->size) {
        dlf__panic("dlf_reshape: %s has %d elements, the new shape has %d",
                   dlf_shape_str(a, sa, sizeof sa), a->size, size);
        return NULL;
    }
    out = dlf__out(t, 0, NULL);  /* header only: data is a's */
    if (!out) return NULL;
    dlf__set_shape(out, ndim, s, size);
    out->data = a->data;
    out->flags |= DLF_TENSOR_VIEW;
    dlf__view_of(t, out, a);
    dlf__record(t, DLF_OP_RESHAPE, out, a, NULL);
    return out;
}

/* Backward of reshape: the same elements in the same order, so da += g. */
static void dlf__reshape_backward(dlf_tape *t, dlf_node *nd)
{
    float *ga = dlf__grad(t, nd->in[0]);
    int i;
    if (!ga) return;
    for (i = 0; i < nd->out->size; i++) ga[i] += nd->out->grad[i];
}

DLFDEF dlf_tensor *dlf_clone(dlf_tape *t, const dlf_tensor *a)
{
    DLF__OP(t); DLF__INPUT(t, a);
    dlf_tensor *out = dlf__live(t, "dlf_clone", a, NULL, NULL) ? dlf__out(t, a->ndim, a->shape) : NULL;
    if (out) memcpy(out->data, a->data, (size_t)a->size * sizeof(float));
    return out;
}

// more reductions: several axes at once

/* sum/mean over a set of axes. With a padded to 4 dims, every element a[i0,i1,i2,i3] lands
   in out[os . i], where os[k] is 0 for a reduced dim and out's stride for a kept one:
     sum:  out_j = sum_{i -> j} a_i          dx_i += g_j
     mean: out_j = sum_{i -> j} a_i / count   dx_i += g_j / count   (count: elements per j)
   Sums accumulate in double, in index order (determinism). */
static void dlf__axes_map(const dlf_tensor *a, int mask, int *dims, ptrdiff_t *os)
{
    int k, st[4], off = 4 - a->ndim;
    ptrdiff_t s = 1;
    dlf__pad4(a, dims, st);
    for (k = 3; k >= 0; k--) {
        int reduced = k >= off && (mask >> (k - off) & 1);
        os[k] = reduced ? 0 : s;
        if (!reduced) s *= dims[k];
    }
}

static dlf_tensor *dlf__reduce_axes(dlf_tape *t, dlf_op op, dlf_tensor *a, const int *axes, int n_axes,
                                    int keepdim, const char *name)
{
    int mask = 0, i, nd = 0, shape[4] = {1, 1, 1, 1}, dims[4], i0, i1, i2, i3;
    double count = 1.0, *acc;
    ptrdiff_t os[4];
    dlf_tensor *out;
    dlf_node *node;
    char sa[64];
    if (!t) { dlf__panic("%s: t is NULL", name); return NULL; }
    if (!a) { dlf__panic("%s: a is NULL", name); return NULL; }
    if (n_axes > 0 && !axes) { dlf__panic("%s: axes is NULL", name); return NULL; }
    if (n_axes < 0 || n_axes > DLF_MAX_DIMS) {
        dlf__panic("%s: n_axes %d is outside 0..%d", name, n_axes, DLF_MAX_DIMS);
        return NULL;
    }
    for (i = 0; i < n_axes; i++) {
        int ax = axes[i], lim = a->ndim ? a->ndim : 1;  /* a 0-dim tensor takes axis 0 or -1 */
        if (ax < -lim || ax >= lim) {
            dlf__panic("%s: axis %d is out of range for shape %s", name, ax, dlf_shape_str(a, sa, sizeof sa));
            return NULL;
        }
        if (ax < 0) ax += lim;
        if (mask >> ax & 1) {
            dlf__panic("%s: axis %d appears more than once in the list", name, axes[i]);
            return NULL;
        }
        mask |= 1 << ax;
    }
    if (a->ndim == 0) mask = 0;                      /* nothing to reduce: out = a */
    else if (n_axes == 0) mask = (1 << a->ndim) - 1;  /* every axis */
    for (i = 0; i < a->ndim; i++) {
        if (mask >> i & 1) {
            count *= a->shape[i];
            if (keepdim) shape[nd++] = 1;
        } else {
            shape[nd++] = a->shape[i];
        }
    }
    out = dlf__out(t, nd, shape);
    if (!out) return NULL;
    acc = (double *)dlf__arena_alloc(t, (size_t)out->size * sizeof(double) + 1);
    if (!acc) return NULL;
    memset(acc, 0, (size_t)out->size * sizeof(double));
    dlf__axes_map(a, mask, dims, os);
    {
        const float *p = a->data;
        for (i0 = 0; i0 < dims[0]; i0++)
        for (i1 = 0; i1 < dims[1]; i1++)
        for (i2 = 0; i2 < dims[2]; i2++)
        for (i3 = 0; i3 < dims[3]; i3++)
            acc[i0 * os[0] + i1 * os[1] + i2 * os[2] + i3 * os[3]] += *p++;
    }
    for (i = 0; i < out->size; i++)   /* mean over 0 elements: 0/0 = NaN, as PyTorch */
        out->data[i] = (float)(op == DLF_OP_MEAN_AXES ? acc[i] / count : acc[i]);
    node = dlf__record(t, op, out, a, NULL);
    if (node) {
        node->iarg[0] = mask;
        node->farg[0] = op == DLF_OP_MEAN_AXES ? (float)(1.0 / count) : 1.0f;
    }
    return out;
}

static void dlf__reduce_axes_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *a = nd->in[0];
    float *ga = dlf__grad(t, a), scale = nd->farg[0];
    const float *g = nd->out->grad;
    int dims[4], i0, i1, i2, i3;
    ptrdiff_t os[4];
    if (!ga) return;
    dlf__axes_map(a, nd->iarg[0], dims, os);
    for (i0 = 0; i0 < dims[0]; i0++)
    for (i1 = 0; i1 < dims[1]; i1++)
    for (i2 = 0; i2 < dims[2]; i2++)
    for (i3 = 0; i3 < dims[3]; i3++)
        *ga++ += g[i0 * os[0] + i1 * os[1] + i2 * os[2] + i3 * os[3]] * scale;
}

DLFDEF dlf_tensor *dlf_sum_axes(dlf_tape *t, dlf_tensor *a, const int *axes, int n_axes, int keepdim)
{
    DLF__OP(t);
    return dlf__reduce_axes(t, DLF_OP_SUM_AXES, a, axes, n_axes, keepdim, "dlf_sum_axes");
}

DLFDEF dlf_tensor *dlf_mean_axes(dlf_tape *t, dlf_tensor *a, const int *axes, int n_axes, int keepdim)
{
    DLF__OP(t);
    return dlf__reduce_axes(t, DLF_OP_MEAN_AXES, a, axes, n_axes, keepdim, "dlf_mean_axes");
}

// tensor ops

/* Every shape op moves whole elements: out[i] = a[src(i)] for an index map src, and its
   backward runs the map the other way: da[src(i)] += g[i]. Where the map is a strided block
   (permute, narrow, one input of cat), dlf__copy4 runs it, on a block n[0] x ... x n[3]:
     dst[i . ds] = src[i . ss]     or, with acc,     dst[i . ds] += src[i . ss]
   These maps never send two elements to one place, so rows may run on threads. */
static void dlf__copy4(const int *n, const float *src, const ptrdiff_t *ss, float *dst, const ptrdiff_t *ds, int acc)
{
    int r, rows = n[0] * n[1] * n[2];
    if (rows == 0 || n[3] == 0) return;
    DLF__OMP(omp parallel for if ((size_t)rows * n[3] > DLF__PAR_MIN))
    for (r = 0; r < rows; r++) {
        int i0 = r / (n[1] * n[2]), i1 = (r / n[2]) % n[1], i2 = r % n[2], i3;
        const float *s = src + i0 * ss[0] + i1 * ss[1] + i2 * ss[2];
        float *d = dst + i0 * ds[0] + i1 * ds[1] + i2 * ds[2];
        if (acc) for (i3 = 0; i3 < n[3]; i3++) d[i3 * ds[3]] += s[i3 * ss[3]];
        else     for (i3 = 0; i3 < n[3]; i3++) d[i3 * ds[3]] = s[i3 * ss[3]];
    }
}

/* x padded on the left to 4 dims: its extents and contiguous strides. */
static void dlf__dims4(const dlf_tensor *x, int *dims, ptrdiff_t *st)
{
    int k, s[4];
    dlf__pad4(x, dims, s);
    for (k = 0; k < 4; k++) st[k] = s[k];
}

/* A dim argument checked against ndim and made non-negative; -1 after a panic. */
static int dlf__dim(const char *name, const char *what, int dim, int ndim, const dlf_tensor *a)
{
    char s[64];
    if (dim < -ndim || dim >= ndim) {
        dlf__panic("%s: %s %d is out of range for shape %s (%d dims)", name, what, dim,
                   dlf_shape_str(a, s, sizeof s), ndim);
        return -1;
    }
    return dim < 0 ? dim + ndim : dim;
}

/* permute: out (a.shape[p[0]], ..., a.shape[p[d-1]]), out[i_0..i_{d-1}] = a at index j with
   j[p[k]] = i_k. As a strided block: out dim k walks a with a's stride of dim p[k].
   Backward: the same block with source and destination swapped, da (strided) += g. */
static void dlf__permute_run(const dlf_tensor *a, const int *p, float *adata, float *odata, int back)
{
    int da[4], n[4], k, off = 4 - a->ndim;
    ptrdiff_t sa[4], sp[4], so[4], s = 1;
    dlf__dims4(a, da, sa);
    for (k = 0; k < 4; k++) {
        n[k] = k < off ? 1 : da[off + p[k - off]];
        sp[k] = k < off ? 0 : sa[off + p[k - off]];
    }
    for (k = 3; k >= 0; k--) { so[k] = s; s *= n[k]; }
    if (!back) dlf__copy4(n, adata, sp, odata, so, 0);
    else       dlf__copy4(n, odata, so, adata, sp, 1);
}

static dlf_tensor *dlf__permute(dlf_tape *t, dlf_tensor *a, const int *perm, const char *name)
{
    int p[4], shape[4] = {1, 1, 1, 1}, seen = 0, i;
    dlf_tensor *out;
    dlf_node *nd;
    for (i = 0; i < a->ndim; i++) {
        if ((p[i] = dlf__dim(name, "dim", perm[i], a->ndim, a)) < 0) return NULL;
        if (seen >> p[i] & 1) {
            dlf__panic("%s: dim %d appears more than once in the permutation", name, perm[i]);
            return NULL;
        }
        seen |= 1 << p[i];
        shape[i] = a->shape[p[i]];
    }
    out = dlf__out(t, a->ndim, shape);
    if (!out) return NULL;
    dlf__permute_run(a, p, a->data, out->data, 0);
    nd = dlf__record(t, DLF_OP_PERMUTE, out, a, NULL);
    if (nd) for (i = 0; i < a->ndim; i++) nd->iarg[i] = p[i];
    return out;
}

DLFDEF dlf_tensor *dlf_permute(dlf_tape *t, dlf_tensor *a, const int *perm)
{
    DLF__OP(t);
    if (!t) { dlf__panic("dlf_permute: t is NULL"); return NULL; }
    if (!a) { dlf__panic("dlf_permute: a is NULL"); return NULL; }
    if (!perm && a->ndim > 0) { dlf__panic("dlf_permute: perm is NULL"); return NULL; }
    return dlf__permute(t, a, perm, "dlf_permute");
}

DLFDEF dlf_tensor *dlf_transpose(dlf_tape *t, dlf_tensor *a, int dim0, int dim1)
{
    DLF__OP(t);
    int p[4] = {0, 1, 2, 3}, d0, d1, lim;
    if (!t) { dlf__panic("dlf_transpose: t is NULL"); return NULL; }
    if (!a) { dlf__panic("dlf_transpose: a is NULL"); return NULL; }
    lim = a->ndim ? a->ndim : 1;  /* PyTorch: a 0-dim tensor transposes dims 0/-1 to itself */
    if ((d0 = dlf__dim("dlf_transpose", "dim0", dim0, lim, a)) < 0) return NULL;
    if ((d1 = dlf__dim("dlf_transpose", "dim1", dim1, lim, a)) < 0) return NULL;
    p[d0] = d1;
    p[d1] = d0;
    return dlf__permute(t, a, p, "dlf_transpose");
}

static void dlf__permute_backward(dlf_tape *t, dlf_node *nd)
{
    float *ga = dlf__grad(t, nd->in[0]);
    if (ga) dlf__permute_run(nd->in[0], nd->iarg, ga, nd->out->grad, 1);
}

/* narrow: out = a with dim `dim` cut to [start, start + length): a strided block of a
   starting at a + start * stride[dim]. Backward: that block of da += g. */
DLFDEF dlf_tensor *dlf_narrow(dlf_tape *t, dlf_tensor *a, int dim, int start, int length)
{
    DLF__OP(t);
    int shape[4] = {1, 1, 1, 1}, d, i, n[4], da[4], k;
    ptrdiff_t sa[4], so[4];
    dlf_tensor *out;
    dlf_node *nd;
    char s[64];
    if (!t) { dlf__panic("dlf_narrow: t is NULL"); return NULL; }
    if (!a) { dlf__panic("dlf_narrow: a is NULL"); return NULL; }
    if (a->ndim == 0) { dlf__panic("dlf_narrow: a is 0-dim; it has no dim to narrow"); return NULL; }
    if ((d = dlf__dim("dlf_narrow", "dim", dim, a->ndim, a)) < 0) return NULL;
    if (start < 0 && start >= -a->shape[d]) start += a->shape[d];  /* PyTorch wraps a negative start */
    if (start < 0 || length < 0 || start > a->shape[d] - length) {
        dlf__panic("dlf_narrow: start %d, length %d do not fit dim %d of shape %s", start, length, d,
                   dlf_shape_str(a, s, sizeof s));
        return NULL;
    }
    for (i = 0; i < a->ndim; i++) shape[i] = i == d ? length : a->shape[i];
    out = dlf__out(t, a->ndim, shape);
    if (!out) return NULL;
    dlf__dims4(a, da, sa);
    dlf__dims4(out, n, so);
    k = 4 - a->ndim + d;
    dlf__copy4(n, a->data + start * sa[k], sa, out->data, so, 0);
    nd = dlf__record(t, DLF_OP_NARROW, out, a, NULL);
    if (nd) {
        nd->iarg[0] = k;
        nd->iarg[1] = start;
    }
    return out;
}

static void dlf__narrow_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *a = nd->in[0];
    float *ga = dlf__grad(t, a);
    int da[4], n[4];
    ptrdiff_t sa[4], so[4];
    if (!ga) return;
    dlf__dims4(a, da, sa);
    dlf__dims4(nd->out, n, so);
    dlf__copy4(n, nd->out->grad, so, ga + nd->iarg[1] * sa[nd->iarg[0]], sa, 1);
}

/* cat: the inputs side by side along dim; input k fills the block of out that starts at
   offset_k = sum_{j<k} ts[j].shape[dim] along dim. Backward: dts[k] += that block of g.
   A node holds 3 inputs, so n inputs make ceil(n/3) nodes with one output, each knowing
   the offset of its first input (iarg[1]). */
static void dlf__cat_block(const dlf_tensor *out, int k, int offset, const dlf_tensor *x, float *xdata,
                           float *odata, int back)
{
    int n[4], no[4];
    ptrdiff_t sx[4], so[4];
    dlf__dims4(x, n, sx);
    dlf__dims4(out, no, so);
    if (!back) dlf__copy4(n, xdata, sx, odata + offset * so[k], so, 0);
    else       dlf__copy4(n, odata + offset * so[k], so, xdata, sx, 1);
}

DLFDEF dlf_tensor *dlf_cat(dlf_tape *t, dlf_tensor **ts, int n, int dim)
{
    DLF__OP(t);
    int shape[4] = {1, 1, 1, 1}, d, i, j, k, offset;
    dlf_tensor *out;
    char s0[64], s1[64];
    if (!t) { dlf__panic("dlf_cat: t is NULL"); return NULL; }
    if (!ts) { dlf__panic("dlf_cat: ts is NULL"); return NULL; }
    if (n < 1) { dlf__panic("dlf_cat: n is %d; it needs at least one tensor", n); return NULL; }
    for (i = 0; i < n; i++)
        if (!ts[i]) { dlf__panic("dlf_cat: ts[%d] is NULL", i); return NULL; }
    if (ts[0]->ndim == 0) { dlf__panic("dlf_cat: ts[0] is 0-dim; 0-dim tensors cannot be concatenated"); return NULL; }
    if ((d = dlf__dim("dlf_cat", "dim", dim, ts[0]->ndim, ts[0])) < 0) return NULL;
    for (j = 0; j < ts[0]->ndim; j++) shape[j] = ts[0]->shape[j];
    for (i = 1; i < n; i++) {
        int ok = ts[i]->ndim == ts[0]->ndim;
        for (j = 0; ok && j < ts[0]->ndim; j++) ok = j == d || ts[i]->shape[j] == ts[0]->shape[j];
        if (!ok) {
            dlf__panic("dlf_cat: ts[%d] %s does not match ts[0] %s outside dim %d", i,
                       dlf_shape_str(ts[i], s1, sizeof s1), dlf_shape_str(ts[0], s0, sizeof s0), d);
            return NULL;
        }
        shape[d] += ts[i]->shape[d];
    }
    out = dlf__out(t, ts[0]->ndim, shape);
    if (!out) return NULL;
    k = 4 - out->ndim + d;
    for (i = 0, offset = 0; i < n; offset += ts[i]->shape[d], i++)
        dlf__cat_block(out, k, offset, ts[i], ts[i]->data, out->data, 0);
    for (i = 0, offset = 0; i < n; i += 3) {
        dlf_node *nd = dlf__record3(t, DLF_OP_CAT, out, ts[i], i + 1 < n ? ts[i + 1] : NULL,
                                    i + 2 < n ? ts[i + 2] : NULL);
        if (nd) {
            nd->iarg[0] = k;
            nd->iarg[1] = offset;
        }
        for (j = i; j < n && j < i + 3; j++) offset += ts[j]->shape[d];
    }
    return out;
}

static void dlf__cat_backward(dlf_tape *t, dlf_node *nd)
{
    int j, k = nd->iarg[0], offset = nd->iarg[1];
    for (j = 0; j < DLF_NODE_INPUTS && nd->in[j]; j++) {
        dlf_tensor *x = nd->in[j];
        float *gx = dlf__grad(t, x);
        if (gx) dlf__cat_block(nd->out, k, offset, x, gx, nd->out->grad, 1);
        offset += x->shape[k - 4 + x->ndim];
    }
}

/* stack: every input gets a new dim of size 1 at dim (a reshape, a view), then cat. */
DLFDEF dlf_tensor *dlf_stack(dlf_tape *t, dlf_tensor **ts, int n, int dim)
{
    DLF__OP(t);
    dlf_tensor **xs;
    int shape[4] = {1, 1, 1, 1}, i, j, d;
    char s0[64], s1[64];
    if (!t) { dlf__panic("dlf_stack: t is NULL"); return NULL; }
    if (!ts) { dlf__panic("dlf_stack: ts is NULL"); return NULL; }
    if (n < 1) { dlf__panic("dlf_stack: n is %d; it needs at least one tensor", n); return NULL; }
    for (i = 0; i < n; i++)
        if (!ts[i]) { dlf__panic("dlf_stack: ts[%d] is NULL", i); return NULL; }
    if (ts[0]->ndim >= DLF_MAX_DIMS) {
        dlf__panic("dlf_stack: the inputs %s have %d dims already; the result would have more than %d",
                   dlf_shape_str(ts[0], s0, sizeof s0), ts[0]->ndim, DLF_MAX_DIMS);
        return NULL;
    }
    if ((d = dlf__dim("dlf_stack", "dim", dim, ts[0]->ndim + 1, ts[0])) < 0) return NULL;
    for (i = 1; i < n; i++)
        if (!dlf_same_shape(ts[i], ts[0])) {
            dlf__panic("dlf_stack: ts[%d] %s and ts[0] %s differ; stack needs equal shapes", i,
                       dlf_shape_str(ts[i], s1, sizeof s1), dlf_shape_str(ts[0], s0, sizeof s0));
            return NULL;
        }
    for (i = 0, j = 0; i <= ts[0]->ndim; i++) shape[i] = i == d ? 1 : ts[0]->shape[j++];
    xs = (dlf_tensor **)dlf__arena_alloc(t, (size_t)n * sizeof(dlf_tensor *));
    if (!xs) return NULL;
    for (i = 0; i < n; i++)
        if (!(xs[i] = dlf_reshape(t, ts[i], ts[0]->ndim + 1, shape))) return NULL;
    return dlf_cat(t, xs, n, d);
}

/* An index value as an int in [0, n), or -1 after a panic. */
static int dlf__index(const char *name, float v, int pos, int n, int dim)
{
    if (!(v >= 0.0f && v < (float)n && v == (float)(int)v)) {
        dlf__panic("%s: index %g at position %d is not an integer in [0, %d) (dim %d)", name, v, pos, n, dim);
        return -1;
    }
    return (int)v;
}

/* index_select: out = a with dim d replaced by the picked entries, index 1-D (or 0-dim) of m:
     out[o, k, i] = a[o, index[k], i]      (a viewed as (outer, n, inner) around d)
   Backward: da[o, index[k], i] += g[o, k, i]; a repeated index adds up (serial loop). */
DLFDEF dlf_tensor *dlf_index_select(dlf_tape *t, dlf_tensor *a, int dim, const dlf_tensor *index)
{
    DLF__OP(t);
    int shape[4] = {1, 1, 1, 1}, d, i, m, outer = 1, inner = 1, n, o, k;
    dlf_tensor *out;
    dlf_node *nd;
    char s[64];
    if (!t) { dlf__panic("dlf_index_select: t is NULL"); return NULL; }
    if (!a) { dlf__panic("dlf_index_select: a is NULL"); return NULL; }
    if (!index) { dlf__panic("dlf_index_select: index is NULL"); return NULL; }
    if (a->ndim == 0) { dlf__panic("dlf_index_select: a is 0-dim"); return NULL; }
    if (index->ndim > 1) {
        dlf__panic("dlf_index_select: index must be 1-D, got shape %s", dlf_shape_str(index, s, sizeof s));
        return NULL;
    }
    if ((d = dlf__dim("dlf_index_select", "dim", dim, a->ndim, a)) < 0) return NULL;
    m = index->size;
    n = a->shape[d];
    for (i = 0; i < m; i++)
        if (dlf__index("dlf_index_select", index->data[i], i, n, d) < 0) return NULL;
    for (i = 0; i < a->ndim; i++) {
        shape[i] = i == d ? m : a->shape[i];
        if (i < d) outer *= a->shape[i];
        if (i > d) inner *= a->shape[i];
    }
    out = dlf__out(t, a->ndim, shape);
    if (!out) return NULL;
    for (o = 0; o < outer; o++)
        for (k = 0; k < m; k++)
            memcpy(out->data + ((size_t)o * m + k) * inner,
                   a->data + ((size_t)o * n + (int)index->data[k]) * inner, (size_t)inner * sizeof(float));
    nd = dlf__record(t, DLF_OP_INDEX_SELECT, out, a, (dlf_tensor *)index);
    if (nd) {
        nd->iarg[0] = outer;
        nd->iarg[1] = n;
        nd->iarg[2] = inner;
    }
    return out;
}

static void dlf__index_select_backward(dlf_tape *t, dlf_node *nd)
{
    float *ga = dlf__grad(t, nd->in[0]);
    const float *idx = nd->in[1]->data, *g = nd->out->grad;
    int outer = nd->iarg[0], n = nd->iarg[1], inner = nd->iarg[2], m = nd->in[1]->size, o, k, i;
    if (!ga) return;
    for (o = 0; o < outer; o++)
        for (k = 0; k < m; k++) {
            float *dst = ga + ((size_t)o * n + (int)idx[k]) * inner;
            const float *src = g + ((size_t)o * m + k) * inner;
            for (i = 0; i < inner; i++) dst[i] += src[i];
        }
}

/* gather: out has index's shape (as many dims as a; index.shape[j] <= a.shape[j] off dim d):
     out[i] = a[i with its dim-d coordinate replaced by index[i]]
   Backward: da[that place] += g[i]; places hit twice add up (serial loop). The loop walks
   index's elements in order with a 4-D counter; a's flat position is c . stride(a). */
static void dlf__gather_run(const dlf_tensor *a, int k, const dlf_tensor *index, const float *src, float *dst,
                            float *ga, const float *g)
{
    int di[4], da[4], c[4] = {0, 0, 0, 0}, i, j;
    ptrdiff_t si[4], sa[4];
    dlf__dims4(index, di, si);
    dlf__dims4(a, da, sa);
    for (i = 0; i < index->size; i++) {
        ptrdiff_t p = 0;
        for (j = 0; j < 4; j++) p += (j == k ? (ptrdiff_t)index->data[i] : c[j]) * sa[j];
        if (dst) dst[i] = src[p];
        else ga[p] += g[i];
        for (j = 3; j >= 0 && ++c[j] == di[j]; j--) c[j] = 0;  /* next coordinate */
    }
}

DLFDEF dlf_tensor *dlf_gather(dlf_tape *t, dlf_tensor *a, int dim, const dlf_tensor *index)
{
    DLF__OP(t);
    int d, i, lim;
    dlf_tensor *out;
    dlf_node *nd;
    char sa[64], si[64];
    if (!t) { dlf__panic("dlf_gather: t is NULL"); return NULL; }
    if (!a) { dlf__panic("dlf_gather: a is NULL"); return NULL; }
    if (!index) { dlf__panic("dlf_gather: index is NULL"); return NULL; }
    lim = a->ndim ? a->ndim : 1;
    if ((d = dlf__dim("dlf_gather", "dim", dim, lim, a)) < 0) return NULL;
    for (i = 0; i < a->ndim && index->ndim == a->ndim; i++)
        if (i != d && index->shape[i] > a->shape[i]) break;
    if (index->ndim != a->ndim || i < a->ndim) {
        dlf__panic("dlf_gather: index %s must have the dims of a %s, none larger outside dim %d",
                   dlf_shape_str(index, si, sizeof si), dlf_shape_str(a, sa, sizeof sa), d);
        return NULL;
    }
    for (i = 0; i < index->size; i++)
        if (dlf__index("dlf_gather", index->data[i], i, a->ndim ? a->shape[d] : 1, d) < 0) return NULL;
    out = dlf__out(t, index->ndim, index->shape);
    if (!out) return NULL;
    dlf__gather_run(a, a->ndim ? 4 - a->ndim + d : 3, index, a->data, out->data, NULL, NULL);
    nd = dlf__record(t, DLF_OP_GATHER, out, a, (dlf_tensor *)index);
    if (nd) nd->iarg[0] = a->ndim ? 4 - a->ndim + d : 3;
    return out;
}

static void dlf__gather_backward(dlf_tape *t, dlf_node *nd)
{
    float *ga = dlf__grad(t, nd->in[0]);
    if (ga) dlf__gather_run(nd->in[0], nd->iarg[0], nd->in[1], NULL, NULL, ga, nd->out->grad);
}

/* clamp (PyTorch's torch.clamp): y = min(max(x, lo), hi); so lo > hi gives hi everywhere,
   a NaN x stays NaN, a NaN bound is ignored. Backward: dx += g where lo <= x <= hi (both
   ends included, as PyTorch), else 0; NaN x gets 0. */
DLFDEF dlf_tensor *dlf_clamp(dlf_tape *t, dlf_tensor *a, float lo, float hi)
{
    DLF__OP(t);
    dlf_tensor *out;
    dlf_node *nd;
    int i;
    if (!t) { dlf__panic("dlf_clamp: t is NULL"); return NULL; }
    if (!a) { dlf__panic("dlf_clamp: a is NULL"); return NULL; }
    out = dlf__out(t, a->ndim, a->shape);
    if (!out) return NULL;
    DLF__OMP(omp parallel for if (a->size > DLF__PAR_MIN))
    for (i = 0; i < a->size; i++) {
        float y = a->data[i];
        y = y < lo ? lo : y;   /* NaN compares false: stays NaN */
        out->data[i] = y > hi ? hi : y;
    }
    nd = dlf__record(t, DLF_OP_CLAMP, out, a, NULL);
    if (nd) {
        nd->farg[0] = lo;
        nd->farg[1] = hi;
    }
    return out;
}

static void dlf__clamp_backward(dlf_tape *t, dlf_node *nd)
{
    const float *x = nd->in[0]->data, *g = nd->out->grad;
    float *ga = dlf__grad(t, nd->in[0]), lo = nd->farg[0], hi = nd->farg[1];
    int i;
    if (!ga) return;
    for (i = 0; i < nd->out->size; i++) ga[i] += x[i] >= lo && x[i] <= hi ? g[i] : 0.0f;
}

DLFDEF dlf_tensor *dlf_minimum(dlf_tape *t, dlf_tensor *a, dlf_tensor *b) { return dlf__binary(t, DLF_OP_MINIMUM, a, b); }
DLFDEF dlf_tensor *dlf_maximum(dlf_tape *t, dlf_tensor *a, dlf_tensor *b) { return dlf__binary(t, DLF_OP_MAXIMUM, a, b); }

/* where: out = cond != 0 ? a : b, the three broadcast together (cond gets no gradient).
   Backward: da += cond ? g : 0,  db += cond ? 0 : g, summed over stretched dims (serial). */
static int dlf__broadcast3(dlf_tensor **x, int *n, ptrdiff_t (*st)[4], int *ndim)
{
    int d[3][4], j, k;
    char s0[64], s1[64], s2[64];
    *ndim = 0;
    for (j = 0; j < 3; j++) {
        dlf__dims4(x[j], d[j], st[j]);
        if (x[j]->ndim > *ndim) *ndim = x[j]->ndim;
    }
    for (k = 0; k < 4; k++) {
        n[k] = 1;
        for (j = 0; j < 3; j++) {
            if (d[j][k] == 1) { st[j][k] = 0; continue; }
            if (n[k] != 1 && n[k] != d[j][k]) {
                dlf__panic("dlf_where: shapes %s, %s and %s do not broadcast (dim %d)",
                           dlf_shape_str(x[0], s0, sizeof s0), dlf_shape_str(x[1], s1, sizeof s1),
                           dlf_shape_str(x[2], s2, sizeof s2), k - 4);
                return 0;
            }
            n[k] = d[j][k];
        }
    }
    return 1;
}

static void dlf__where_run(dlf_tensor **x, float *out, const float *g, float *ga, float *gb)
{
    int n[4], ndim, i0, i1, i2, i3;
    ptrdiff_t st[3][4];
    if (!dlf__broadcast3(x, n, st, &ndim)) return;
    for (i0 = 0; i0 < n[0]; i0++)
    for (i1 = 0; i1 < n[1]; i1++)
    for (i2 = 0; i2 < n[2]; i2++)
    for (i3 = 0; i3 < n[3]; i3++) {
        ptrdiff_t p[3];
        int j;
        for (j = 0; j < 3; j++) p[j] = i0 * st[j][0] + i1 * st[j][1] + i2 * st[j][2] + i3 * st[j][3];
        if (out) {
            *out++ = x[0]->data[p[0]] != 0.0f ? x[1]->data[p[1]] : x[2]->data[p[2]];
        } else {
            float gi = *g++;
            if (x[0]->data[p[0]] != 0.0f) { if (ga) ga[p[1]] += gi; }
            else if (gb) gb[p[2]] += gi;
        }
    }
}

DLFDEF dlf_tensor *dlf_where(dlf_tape *t, dlf_tensor *cond, dlf_tensor *a, dlf_tensor *b)
{
    DLF__OP(t);
    dlf_tensor *x[3], *out;
    int n[4], shape[4] = {1, 1, 1, 1}, ndim, k;
    ptrdiff_t st[3][4];
    if (!t) { dlf__panic("dlf_where: t is NULL"); return NULL; }
    if (!cond) { dlf__panic("dlf_where: cond is NULL"); return NULL; }
    if (!a) { dlf__panic("dlf_where: a is NULL"); return NULL; }
    if (!b) { dlf__panic("dlf_where: b is NULL"); return NULL; }
    x[0] = cond; x[1] = a; x[2] = b;
    if (!dlf__broadcast3(x, n, st, &ndim)) return NULL;
    for (k = 0; k < ndim; k++) shape[k] = n[4 - ndim + k];
    out = dlf__out(t, ndim, shape);
    if (!out) return NULL;
    dlf__where_run(x, out->data, NULL, NULL, NULL);
    dlf__record3(t, DLF_OP_WHERE, out, cond, a, b);
    return out;
}

static void dlf__where_backward(dlf_tape *t, dlf_node *nd)
{
    float *ga = dlf__grad(t, nd->in[1]), *gb = dlf__grad(t, nd->in[2]);
    if (ga || gb) dlf__where_run(nd->in, NULL, nd->out->grad, ga, gb);
}

// >>stage4_matmul (implementation) ------------------------------------------------
// Lesson 01 climbs this ladder. Element (i,j) of C is the dot product of row i of
// op(A) and column j of op(B):  C[i][j] = sum_k A[i][k] * B[k][j].
// With ta, A is stored (K,M) and A[i][k] lives at A[k*M + i]; with tb, B is stored
// (N,K) and B[k][j] lives at B[j*K + k].

#define DLF__AT(i, k) (ta ? A[(size_t)(k) * M + (i)] : A[(size_t)(i) * K + (k)])
#define DLF__BT(k, j) (tb ? B[(size_t)(j) * K + (k)] : B[(size_t)(k) * N + (j)])

/* Rung 1, the reference: three loops, i-j-k. The inner loop walks a column of B,
   jumping N floats each step, so almost every load misses the cache (~0.4 GFLOP/s). */
DLFDEF void dlf_gemm_naive(int ta, int tb, int M, int N, int K, const float *A,
                           const float *B, float *C, int acc)
{
    if (M > 0 && N > 0) {   /* an empty product may pass NULL buffers */
        DLF__NOT_NULL(C, );
        if (K > 0) { DLF__NOT_NULL(A, ); DLF__NOT_NULL(B, ); }
    }
    int i, j, k;
    for (i = 0; i < M; i++) {
        for (j = 0; j < N; j++) {
            float sum = 0.0f;
            for (k = 0; k < K; k++) sum += DLF__AT(i, k) * DLF__BT(k, j);
            C[(size_t)i * N + j] = acc ? C[(size_t)i * N + j] + sum : sum;
        }
    }
}

/* Rung 2: swap the two inner loops (i-k-j). Now the inner loop reads a row of B and
   writes a row of C, both contiguous, and the compiler vectorizes it. */
DLFDEF void dlf_gemm_ikj(int ta, int tb, int M, int N, int K, const float *A,
                         const float *B, float *C, int acc)
{
    if (M > 0 && N > 0) {   /* an empty product may pass NULL buffers */
        DLF__NOT_NULL(C, );
        if (K > 0) { DLF__NOT_NULL(A, ); DLF__NOT_NULL(B, ); }
    }
    int i, j, k;
    if (!acc) memset(C, 0, (size_t)M * N * sizeof(float));
    for (i = 0; i < M; i++) {
        float *c_i = C + (size_t)i * N;
        for (k = 0; k < K; k++) {
            float a_ik = DLF__AT(i, k);
            if (tb) {
                for (j = 0; j < N; j++) c_i[j] += a_ik * B[(size_t)j * K + k];
            } else {
                const float *b_k = B + (size_t)k * N;
                for (j = 0; j < N; j++) c_i[j] += a_ik * b_k[j];
            }
        }
    }
}

/* Rung 3: cut the loops into 64x256x256 tiles so the pieces of A, B and C being
   worked on stay in cache while they are reused; i-k-j inside a tile. */
DLFDEF void dlf_gemm_blocked(int ta, int tb, int M, int N, int K, const float *A,
                             const float *B, float *C, int acc)
{
    if (M > 0 && N > 0) {   /* an empty product may pass NULL buffers */
        DLF__NOT_NULL(C, );
        if (K > 0) { DLF__NOT_NULL(A, ); DLF__NOT_NULL(B, ); }
    }
    enum { BI = 64, BK = 256, BJ = 256 };
    int i0, k0, j0, i, k, j;
    if (!acc) memset(C, 0, (size_t)M * N * sizeof(float));
    for (i0 = 0; i0 < M; i0 += BI)
    for (k0 = 0; k0 < K; k0 += BK)
    for (j0 = 0; j0 < N; j0 += BJ) {
        int i1 = i0 + BI < M ? i0 + BI : M;
        int k1 = k0 + BK < K ? k0 + BK : K;
        int j1 = j0 + BJ < N ? j0 + BJ : N;
        for (i = i0; i < i1; i++) {
            float *c_i = C + (size_t)i * N;
            for (k = k0; k < k1; k++) {
                float a_ik = DLF__AT(i, k);
                for (j = j0; j < j1; j++) c_i[j] += a_ik * DLF__BT(k, j);
            }
        }
    }
}

/* Rung 4, the fast path (the design of GotoBLAS and BLIS: Goto & van de Geijn 2008,
   "Anatomy of high-performance matrix multiplication"):
   * copy ("pack") a KC x NC block of B into column panels NR wide, and an MC x KC
     block of A into row panels MR tall, so the kernel reads both strictly in order;
   * a micro-kernel keeps an MR x NR tile of C in registers (6 x 16 floats = 12 AVX
     registers) and for each k does one rank-1 update: 2 loads of B, 6 broadcasts of
     A, 12 fused multiply-adds;
   * block sizes fit the caches: a B panel (KC x NR) in L1, the A block (MC x KC) in
     L2, the packed B block in L3.
   Threads split the (A block, B panels) work items; every element of C is summed in
   the same order whatever the thread count, so the result does not depend on it. */
#define DLF__MR 6
#define DLF__NR 32
/* 0: the kernel reads A in place (six rows, or six neighbours of A^T, side by side) and
   only a short last panel of rows is packed; 1: every A panel is packed first, as Goto's
   design does. In place measured faster (packing A cost as much as the arithmetic on the
   MLP's 64 x 784 products); the A block stays in L2 either way. */
#define DLF__PACK_A 0
#define DLF__MC 96
#define DLF__KC 256
#define DLF__NC 3072

/* Pack rows i0..i0+mr-1, columns p0..p0+kc-1 of op(A): dst[p*MR + r], zero-padded to MR. */
static void dlf__pack_a(int ta, int M, int K, const float *A, int i0, int mr, int p0, int kc, float *dst)
{
    int p, r;
    if (ta) {        /* the MR values of one k sit side by side in A */
        for (p = 0; p < kc; p++) {
            const float *a_p = A + (size_t)(p0 + p) * M + i0;
            for (r = 0; r < DLF__MR; r++) dst[p * DLF__MR + r] = r < mr ? a_p[r] : 0.0f;
        }
        return;
    }
    for (p = 0; p < kc; p++)   /* the rows side by side: the memory system fetches them at once */
        for (r = 0; r < DLF__MR; r++)
            dst[p * DLF__MR + r] = r < mr ? A[(size_t)(i0 + r) * K + p0 + p] : 0.0f;
}

/* Pack rows p0..p0+kc-1, columns j0..j0+nr-1 of op(B): dst[p*NR + c], zero-padded to NR. */
static void dlf__pack_b(int tb, int K, int N, const float *B, int p0, int kc, int j0, int nr, float *dst)
{
    int p, c;
    if (tb) {   /* column j of op(B) is row j of B: read each along k, write it down the panel */
        for (c = 0; c < DLF__NR; c++) {
            const float *b_c = B + (size_t)(j0 + c) * K + p0;
            if (c < nr)
                for (p = 0; p < kc; p++) dst[p * DLF__NR + c] = b_c[p];
            else
                for (p = 0; p < kc; p++) dst[p * DLF__NR + c] = 0.0f;
        }
        return;
    }
    for (p = 0; p < kc; p++) {
        float *d = dst + p * DLF__NR;
        if (nr == DLF__NR) {
            memcpy(d, B + (size_t)(p0 + p) * N + j0, DLF__NR * sizeof(float));
            continue;
        }
        for (c = 0; c < DLF__NR; c++) d[c] = c < nr ? B[(size_t)(p0 + p) * N + j0 + c] : 0.0f;
    }
}

/* The micro-kernel's math, in portable C: ab[r][j] = sum_p a[p][r] * b[p][j], then
   C = ab or, with add, C += ab, for C's rows r at c + r*ldc. a[p][r] is a[p*ps + r*rs]:
   a packed A panel (ps = MR, rs = 1), or A itself, unpacked (ps = 1, rs = lda for A
   stored (M,K); ps = lda, rs = 1 for A^T). Every kernel below
   computes exactly this for one MR x NR = 6 x 32 tile, writing C straight from its
   registers. The tile is
   shaped for AVX-512 (32 floats = two 16-float registers per row); AVX2 does it in two
   halves. Each kernel sums p in order, but the fused multiply-add rounds once where this
   C rounds twice, so the kernels agree to rounding, not bit for bit. */
static void dlf__kernel_ref(int kc, const float *a, size_t ps, size_t rs, const float *b, float *c,
                            size_t ldc, int add)
{
    float ab[DLF__MR * DLF__NR];
    int p, r, j;
    for (r = 0; r < DLF__MR * DLF__NR; r++) ab[r] = 0.0f;
    for (p = 0; p < kc; p++) {
        for (r = 0; r < DLF__MR; r++) {
            float a_r = a[p * ps + r * rs];
            for (j = 0; j < DLF__NR; j++) ab[r * DLF__NR + j] += a_r * b[p * DLF__NR + j];
        }
    }
    for (r = 0; r < DLF__MR; r++)
        for (j = 0; j < DLF__NR; j++)
            c[r * ldc + j] = add ? c[r * ldc + j] + ab[r * DLF__NR + j] : ab[r * DLF__NR + j];
}

#ifdef DLF__AVX2
/* AVX2/FMA has 16 ymm registers of 8 floats. A 6 x 16 tile takes 12 of them as
   accumulators (row r: c_r0, c_r1), 2 hold the B row, 1 the broadcast a[r]: per k, 2
   loads of B, 6 broadcasts, 12 FMAs. Twelve independent sums hide the FMA latency (4
   cycles, 2 per cycle). The 6 x 32 tile is two such halves: the A panel (6 x kc, in L1)
   is read twice, each half of the B panel once. */
static DLF__TARGET_AVX2 void dlf__kernel_avx2_half(int kc, const float *a, size_t ps, size_t rs, const float *b,
                                                   float *c, size_t ldc, int add)
{
    const float *a0 = a, *a1 = a + rs, *a2 = a + 2 * rs, *a3 = a + 3 * rs, *a4 = a + 4 * rs, *a5 = a + 5 * rs;
    size_t o = 0;
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    int p;
    for (p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = _mm256_loadu_ps(b + 8);
        __m256 a_r;
        a_r = _mm256_broadcast_ss(a0 + o); c00 = _mm256_fmadd_ps(a_r, b0, c00); c01 = _mm256_fmadd_ps(a_r, b1, c01);
        a_r = _mm256_broadcast_ss(a1 + o); c10 = _mm256_fmadd_ps(a_r, b0, c10); c11 = _mm256_fmadd_ps(a_r, b1, c11);
        a_r = _mm256_broadcast_ss(a2 + o); c20 = _mm256_fmadd_ps(a_r, b0, c20); c21 = _mm256_fmadd_ps(a_r, b1, c21);
        a_r = _mm256_broadcast_ss(a3 + o); c30 = _mm256_fmadd_ps(a_r, b0, c30); c31 = _mm256_fmadd_ps(a_r, b1, c31);
        a_r = _mm256_broadcast_ss(a4 + o); c40 = _mm256_fmadd_ps(a_r, b0, c40); c41 = _mm256_fmadd_ps(a_r, b1, c41);
        a_r = _mm256_broadcast_ss(a5 + o); c50 = _mm256_fmadd_ps(a_r, b0, c50); c51 = _mm256_fmadd_ps(a_r, b1, c51);
        o += ps;
        b += DLF__NR;
    }
    if (add) {                                   /* C += tile: load, add, store */
#define DLF__ST2(r, lo, hi) \
        _mm256_storeu_ps(c + (r) * ldc, _mm256_add_ps(_mm256_loadu_ps(c + (r) * ldc), lo)); \
        _mm256_storeu_ps(c + (r) * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + (r) * ldc + 8), hi))
        DLF__ST2(0, c00, c01); DLF__ST2(1, c10, c11); DLF__ST2(2, c20, c21);
        DLF__ST2(3, c30, c31); DLF__ST2(4, c40, c41); DLF__ST2(5, c50, c51);
#undef DLF__ST2
    } else {
#define DLF__ST2(r, lo, hi) _mm256_storeu_ps(c + (r) * ldc, lo); _mm256_storeu_ps(c + (r) * ldc + 8, hi)
        DLF__ST2(0, c00, c01); DLF__ST2(1, c10, c11); DLF__ST2(2, c20, c21);
        DLF__ST2(3, c30, c31); DLF__ST2(4, c40, c41); DLF__ST2(5, c50, c51);
#undef DLF__ST2
    }
}

static DLF__TARGET_AVX2 void dlf__kernel_avx2(int kc, const float *a, size_t ps, size_t rs, const float *b,
                                              float *c, size_t ldc, int add)
{
    dlf__kernel_avx2_half(kc, a, ps, rs, b, c, ldc, add);              /* columns 0..15 */
    dlf__kernel_avx2_half(kc, a, ps, rs, b + 16, c + 16, ldc, add);    /* columns 16..31 */
}
#endif

#ifdef DLF__AVX512
/* AVX-512 has 32 zmm registers of 16 floats: the whole 6 x 32 tile is 12 accumulators,
   with 2 for the B row and 1 for the broadcast. Per k: 2 loads, 6 broadcasts, 12 FMAs
   of 16 lanes, twice the work of an AVX2 step for the same instruction count. (A
   wider tile, 12 x 32 in 24 registers, loads less per FMA; measured no faster here,
   and it wastes more of the tile when M is a small batch.) */
static DLF__TARGET_AVX512 void dlf__kernel_avx512(int kc, const float *a, size_t ps, size_t rs, const float *b,
                                                  float *c, size_t ldc, int add)
{
    const float *a0 = a, *a1 = a + rs, *a2 = a + 2 * rs, *a3 = a + 3 * rs, *a4 = a + 4 * rs, *a5 = a + 5 * rs;
    size_t o = 0;
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
    int p;
    for (p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b);
        __m512 b1 = _mm512_loadu_ps(b + 16);
        __m512 a_r;
        a_r = _mm512_set1_ps(a0[o]); c00 = _mm512_fmadd_ps(a_r, b0, c00); c01 = _mm512_fmadd_ps(a_r, b1, c01);
        a_r = _mm512_set1_ps(a1[o]); c10 = _mm512_fmadd_ps(a_r, b0, c10); c11 = _mm512_fmadd_ps(a_r, b1, c11);
        a_r = _mm512_set1_ps(a2[o]); c20 = _mm512_fmadd_ps(a_r, b0, c20); c21 = _mm512_fmadd_ps(a_r, b1, c21);
        a_r = _mm512_set1_ps(a3[o]); c30 = _mm512_fmadd_ps(a_r, b0, c30); c31 = _mm512_fmadd_ps(a_r, b1, c31);
        a_r = _mm512_set1_ps(a4[o]); c40 = _mm512_fmadd_ps(a_r, b0, c40); c41 = _mm512_fmadd_ps(a_r, b1, c41);
        a_r = _mm512_set1_ps(a5[o]); c50 = _mm512_fmadd_ps(a_r, b0, c50); c51 = _mm512_fmadd_ps(a_r, b1, c51);
        o += ps;
        b += DLF__NR;
    }
    if (add) {
#define DLF__ST5(r, lo, hi) \
        _mm512_storeu_ps(c + (r) * ldc, _mm512_add_ps(_mm512_loadu_ps(c + (r) * ldc), lo)); \
        _mm512_storeu_ps(c + (r) * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + (r) * ldc + 16), hi))
        DLF__ST5(0, c00, c01); DLF__ST5(1, c10, c11); DLF__ST5(2, c20, c21);
        DLF__ST5(3, c30, c31); DLF__ST5(4, c40, c41); DLF__ST5(5, c50, c51);
#undef DLF__ST5
    } else {
#define DLF__ST5(r, lo, hi) _mm512_storeu_ps(c + (r) * ldc, lo); _mm512_storeu_ps(c + (r) * ldc + 16, hi)
        DLF__ST5(0, c00, c01); DLF__ST5(1, c10, c11); DLF__ST5(2, c20, c21);
        DLF__ST5(3, c30, c31); DLF__ST5(4, c40, c41); DLF__ST5(5, c50, c51);
#undef DLF__ST5
    }
}
#endif

/* Which kernel runs. Chosen the first time a thread multiplies: the DLF_KERNEL
   environment variable if set ("portable", "avx2-fma" or "avx2", "avx512", "auto"),
   else the widest one this build has and this CPU runs; dlf_set_kernel changes it for
   the calling thread. Each product reads it once on entry and hands it to its worker
   threads, so one product never mixes kernels. */
enum { DLF__KERNEL_PORTABLE, DLF__KERNEL_AVX2, DLF__KERNEL_AVX512, DLF__KERNEL_COUNT };
static const char *const dlf__kernel_names[DLF__KERNEL_COUNT] = { "portable", "avx2-fma", "avx512" };
static DLF__TLS int dlf__kernel_chosen;   /* 0: not chosen yet, else kernel index + 1 */

/* 1 when kernel k is compiled into this build and this CPU can run it. */
static int dlf__kernel_runs(int k)
{
#ifdef DLF__CPU_DETECT
    __builtin_cpu_init();
#endif
    switch (k) {
    case DLF__KERNEL_PORTABLE: return 1;
    case DLF__KERNEL_AVX2:
#if defined(DLF__AVX2) && defined(DLF__CPU_DETECT)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(DLF__AVX2)
        return 1;                          /* built with -mavx2 -mfma: the program needs them anyway */
#else
        return 0;
#endif
    case DLF__KERNEL_AVX512:
#if defined(DLF__AVX512)
        return __builtin_cpu_supports("avx512f");
#else
        return 0;
#endif
    }
    return 0;
}

/* The kernel called `name` (-1 if none): the names above, "avx2" for "avx2-fma". */
static int dlf__kernel_index(const char *name)
{
    int k;
    if (!name) return -1;
    if (strcmp(name, "avx2") == 0) return DLF__KERNEL_AVX2;
    for (k = 0; k < DLF__KERNEL_COUNT; k++)
        if (strcmp(name, dlf__kernel_names[k]) == 0) return k;
    return -1;
}

static int dlf__kernel_best(void)
{
    int k = DLF__KERNEL_COUNT - 1;
    while (k > 0 && !dlf__kernel_runs(k)) k--;
    return k;
}

static int dlf__kernel(void)
{
    if (!dlf__kernel_chosen) {
        const char *env = getenv("DLF_KERNEL");
        int k = dlf__kernel_best();
        if (env && *env && strcmp(env, "auto") != 0) {
            int e = dlf__kernel_index(env);
            if (e >= 0 && dlf__kernel_runs(e)) k = e;
#ifndef DLF_NO_STDIO
            else fprintf(stderr, "dlf: DLF_KERNEL=%s is not a kernel this build and CPU can run "
                         "(portable, avx2-fma, avx512); using %s\n", env, dlf__kernel_names[k]);
#endif
        }
        dlf__kernel_chosen = k + 1;
    }
    return dlf__kernel_chosen - 1;
}

DLFDEF const char *dlf_kernel_name(void) { return dlf__kernel_names[dlf__kernel()]; }

DLFDEF int dlf_kernel_available(const char *name)
{
    DLF__NOT_NULL(name, 0);
    int k = dlf__kernel_index(name);
    return k >= 0 && dlf__kernel_runs(k);
}

DLFDEF int dlf_set_kernel(const char *name)
{
    int k = (!name || strcmp(name, "auto") == 0) ? dlf__kernel_best() : dlf__kernel_index(name);
    if (k < 0)
        return dlf__fail(DLF_ERR_ARG, "dlf_set_kernel: no kernel called \"%s\" (portable, avx2-fma, avx512, auto)", name);
    if (!dlf__kernel_runs(k))
        return dlf__fail(DLF_ERR_ARG, "dlf_set_kernel: %s is not %s", name,
                         k == DLF__KERNEL_PORTABLE ? "available" : "compiled into this build or not supported by this CPU");
    dlf__kernel_chosen = k + 1;
    return DLF_OK;
}

/* The roofline's ceiling, measured rather than assumed: peak = FMA units x lanes x 2
   flops x clock, and a loop of independent FMAs reaches it. 12 accumulators (more than
   units x latency, 2 x 4, on the x86 cores of recent years; 14 registers with the two
   constants, so AVX2's 16 suffice) each get `iters` multiply-adds, written out so that
   an optimizing compiler keeps them in registers; the best of a few timed runs of
   about `seconds` / 4 each counts. The start values come through a volatile and
   differ, so the compiler can neither fold the chains nor merge them. */
#define DLF__PEAK_BODY(FMA) \
    FMA(c0); FMA(c1); FMA(c2); FMA(c3); FMA(c4); FMA(c5); \
    FMA(c6); FMA(c7); FMA(c8); FMA(c9); FMA(c10); FMA(c11)
static double dlf__peak_ref(long iters)
{
    volatile float seed = 1.0f;
    float m = 0.999999f, a = 1e-7f;
    float c0 = seed, c1 = c0 + 1, c2 = c0 + 2, c3 = c0 + 3, c4 = c0 + 4, c5 = c0 + 5;
    float c6 = c0 + 6, c7 = c0 + 7, c8 = c0 + 8, c9 = c0 + 9, c10 = c0 + 10, c11 = c0 + 11;
    long i;
#define DLF__FMA1(c) c = c * m + a
    for (i = 0; i < iters; i++) { DLF__PEAK_BODY(DLF__FMA1); }
#undef DLF__FMA1
    seed = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
    return 12.0 * 2.0;                                     /* flops per iteration */
}
#ifdef DLF__AVX2
static DLF__TARGET_AVX2 double dlf__peak_avx2(long iters)
{
    volatile float seed = 1.0f;
    __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
    float s0 = seed;                      /* distinct starts: equal chains would be merged */
    __m256 c0 = _mm256_set1_ps(s0), c1 = _mm256_set1_ps(s0 + 1), c2 = _mm256_set1_ps(s0 + 2);
    __m256 c3 = _mm256_set1_ps(s0 + 3), c4 = _mm256_set1_ps(s0 + 4), c5 = _mm256_set1_ps(s0 + 5);
    __m256 c6 = _mm256_set1_ps(s0 + 6), c7 = _mm256_set1_ps(s0 + 7), c8 = _mm256_set1_ps(s0 + 8);
    __m256 c9 = _mm256_set1_ps(s0 + 9), c10 = _mm256_set1_ps(s0 + 10), c11 = _mm256_set1_ps(s0 + 11);
    float out[8];
    long i;
#define DLF__FMA8(c) c = _mm256_fmadd_ps(c, m, a)
    for (i = 0; i < iters; i++) { DLF__PEAK_BODY(DLF__FMA8); }
#undef DLF__FMA8
    c0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                       _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    c0 = _mm256_add_ps(c0, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    _mm256_storeu_ps(out, c0);
    seed = out[0];
    return 12.0 * 8 * 2;
}
#endif
#ifdef DLF__AVX512
static DLF__TARGET_AVX512 double dlf__peak_avx512(long iters)
{
    volatile float seed = 1.0f;
    __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
    float s0 = seed;                      /* distinct starts: equal chains would be merged */
    __m512 c0 = _mm512_set1_ps(s0), c1 = _mm512_set1_ps(s0 + 1), c2 = _mm512_set1_ps(s0 + 2);
    __m512 c3 = _mm512_set1_ps(s0 + 3), c4 = _mm512_set1_ps(s0 + 4), c5 = _mm512_set1_ps(s0 + 5);
    __m512 c6 = _mm512_set1_ps(s0 + 6), c7 = _mm512_set1_ps(s0 + 7), c8 = _mm512_set1_ps(s0 + 8);
    __m512 c9 = _mm512_set1_ps(s0 + 9), c10 = _mm512_set1_ps(s0 + 10), c11 = _mm512_set1_ps(s0 + 11);
    long i;
#define DLF__FMA16(c) c = _mm512_fmadd_ps(c, m, a)
    for (i = 0; i < iters; i++) { DLF__PEAK_BODY(DLF__FMA16); }
#undef DLF__FMA16
    c0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                       _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    c0 = _mm512_add_ps(c0, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    {   /* keep the sums alive (stored, not _mm512_reduce_add_ps: g++ warns inside that one) */
        float lanes[16];
        _mm512_storeu_ps(lanes, c0);
        seed = lanes[0] + lanes[15];
    }
    return 12.0 * 16 * 2;
}
#endif

static double dlf__peak_run(int kern, long iters)
{
    switch (kern) {
#ifdef DLF__AVX512
    case DLF__KERNEL_AVX512: return dlf__peak_avx512(iters);
#endif
#ifdef DLF__AVX2
    case DLF__KERNEL_AVX2: return dlf__peak_avx2(iters);
#endif
    default: return dlf__peak_ref(iters);
    }
}

DLFDEF double dlf_peak_gflops(const char *kernel, double seconds)
{
    int kern = kernel ? dlf__kernel_index(kernel) : dlf__kernel();
    long iters = 1 << 16;
    double best = 0.0, t0, dt, flops;
    int rep;
    if (kern < 0 || !dlf__kernel_runs(kern)) {
        dlf__fail(DLF_ERR_ARG, "dlf_peak_gflops: kernel \"%s\" does not run here", kernel);
        return 0.0;
    }
    if (seconds <= 0.0) seconds = 0.2;
    for (;;) {                                        /* grow until one run takes seconds/4 */
        t0 = dlf_seconds();
        flops = dlf__peak_run(kern, iters) * (double)iters;
        dt = dlf_seconds() - t0;
        if (dt >= seconds / 4 || iters >= (1L << 30)) break;   /* long may be 32 bits */
        iters *= 2;
    }
    best = flops / dt;
    for (rep = 0; rep < 3; rep++) {
        t0 = dlf_seconds();
        flops = dlf__peak_run(kern, iters) * (double)iters;
        dt = dlf_seconds() - t0;
        if (flops / dt > best) best = flops / dt;
    }
    return best * 1e-9;
}

/* C (= or +=) A-panel x B-panel with kernel `kern`, a whole MR x NR tile. */
static void dlf__kernel_run(int kern, int kc, const float *a, size_t ps, size_t rs, const float *b, float *c,
                            size_t ldc, int add)
{
    switch (kern) {
#ifdef DLF__AVX512
    case DLF__KERNEL_AVX512: dlf__kernel_avx512(kc, a, ps, rs, b, c, ldc, add); return;
#endif
#ifdef DLF__AVX2
    case DLF__KERNEL_AVX2: dlf__kernel_avx2(kc, a, ps, rs, b, c, ldc, add); return;
#endif
    default: dlf__kernel_ref(kc, a, ps, rs, b, c, ldc, add); return;
    }
}

/* One MR x NR tile: C = A-panel x B-panel (first K block, no acc) or C += ..., for
   the mr x nr corner that lies inside C. A whole tile goes straight to C; an edge
   tile goes through ab, and only its corner is copied. */
static void dlf__tile(int kern, int kc, const float *a, size_t ps, size_t rs, const float *b, float *c, int ldc,
                      int mr, int nr, int add)
{
    float ab[DLF__MR * DLF__NR];
    int r, j;
    if (mr == DLF__MR && nr == DLF__NR) {
        dlf__kernel_run(kern, kc, a, ps, rs, b, c, (size_t)ldc, add);
        return;
    }
    dlf__kernel_run(kern, kc, a, ps, rs, b, ab, DLF__NR, 0);
    for (r = 0; r < mr; r++) {
        float *c_r = c + (size_t)r * ldc;
        const float *ab_r = ab + r * DLF__NR;
        if (add)
            for (j = 0; j < nr; j++) c_r[j] += ab_r[j];
        else
            for (j = 0; j < nr; j++) c_r[j] = ab_r[j];
    }
}

/* Threads for one product: 1 for small ones (thread start-up would dominate), else
   the OpenMP setting, but never more than the processors. The workspace is sized
   for the processor count, so a buffer from dlf_gemm_fast_scratch stays big enough
   whatever dlf_set_threads says later. */
static int dlf__gemm_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

static int dlf__gemm_threads(int M, int N, int K)
{
    double flops = 2.0 * M * N * K;
    int nt = dlf_get_threads(), cap = dlf__gemm_max_threads();
    if (flops < 2.0e6) return 1;
    return nt < cap ? nt : cap;
}

DLFDEF size_t dlf_gemm_fast_scratch(int M, int N, int K)
{
    size_t kc = (size_t)(K < DLF__KC ? K : DLF__KC);
    size_t nc = (size_t)(N < DLF__NC ? N : DLF__NC);
    size_t nc_pad = (nc + DLF__NR - 1) / DLF__NR * DLF__NR;
    (void)M;
    if (kc == 0) kc = 1;
    return nc_pad * kc + (size_t)dlf__gemm_max_threads() * DLF__MC * kc + 16;
}

DLFDEF void dlf_gemm_fast(int ta, int tb, int M, int N, int K, const float *A,
                          const float *B, float *C, int acc, float *work)
{
    if (M > 0 && N > 0) {   /* an empty product may pass NULL buffers */
        DLF__NOT_NULL(C, );
        if (K > 0) { DLF__NOT_NULL(A, ); DLF__NOT_NULL(B, ); }
    }
    float *own = NULL, *packed_b, *packed_a_all;
    int nt, jc, pc, kern = dlf__kernel();
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!acc) memset(C, 0, (size_t)M * N * sizeof(float));
        return;
    }
    nt = dlf__gemm_threads(M, N, K);
    if (!work) {
        own = (float *)dlf__malloc(dlf_gemm_fast_scratch(M, N, K) * sizeof(float), "matmul packing");
        if (!own) { dlf__panic("dlf_gemm_fast: out of memory for the packing buffers"); return; }
        work = own;
    }
    packed_b = (float *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
    {
        int kc_max = K < DLF__KC ? K : DLF__KC;
        int nc_max = N < DLF__NC ? N : DLF__NC;
        packed_a_all = packed_b + (size_t)((nc_max + DLF__NR - 1) / DLF__NR * DLF__NR) * kc_max;
    }
    for (jc = 0; jc < N; jc += DLF__NC) {
        int nc = N - jc < DLF__NC ? N - jc : DLF__NC;
        int n_panels = (nc + DLF__NR - 1) / DLF__NR;
        for (pc = 0; pc < K; pc += DLF__KC) {
            int kc = K - pc < DLF__KC ? K - pc : DLF__KC;
            int add = acc || pc > 0;
            int n_blocks = (M + DLF__MC - 1) / DLF__MC;
            /* enough work items for every thread: split the B panels into groups too */
            int groups = n_blocks >= 4 * nt ? 1 : (4 * nt + n_blocks - 1) / n_blocks;
            int items, jp;
            if (groups > n_panels) groups = n_panels;
            items = n_blocks * groups;
            /* One parallel region per K block: pack B's panels, a barrier, then the
               tiles. Both loops hand out items dynamically: on a busy machine a thread
               that lost its core holds up one item, not a fixed half of them. Which
               thread computes an item never changes its bits. */
            DLF__OMP(omp parallel num_threads(nt))
            {
                int tid = 0, w;
#ifdef _OPENMP
                tid = omp_get_thread_num();
#endif
                DLF__OMP(omp for schedule(dynamic))
                for (jp = 0; jp < n_panels; jp++) {
                    int nr = nc - jp * DLF__NR < DLF__NR ? nc - jp * DLF__NR : DLF__NR;
                    dlf__pack_b(tb, K, N, B, pc, kc, jc + jp * DLF__NR, nr, packed_b + (size_t)jp * DLF__NR * kc);
                }
                DLF__OMP(omp for schedule(dynamic))
                for (w = 0; w < items; w++) {
                    float *packed_a = packed_a_all + (size_t)tid * DLF__MC * kc;
                    int ic = (w / groups) * DLF__MC, g = w % groups;
                    int mc = M - ic < DLF__MC ? M - ic : DLF__MC;
                    int jp0 = g * n_panels / groups, jp1 = (g + 1) * n_panels / groups;
                    int ir, j;
                    for (ir = 0; ir < mc; ir += DLF__MR) {   /* only a short last panel is packed */
                        int mr = mc - ir < DLF__MR ? mc - ir : DLF__MR;
                        if (!DLF__PACK_A && mr == DLF__MR) continue;
                        dlf__pack_a(ta, M, K, A, ic + ir, mr, pc, kc, packed_a + (size_t)ir * kc);
                    }
                    for (j = jp0; j < jp1; j++) {
                        int nr = nc - j * DLF__NR < DLF__NR ? nc - j * DLF__NR : DLF__NR;
                        const float *b_panel = packed_b + (size_t)j * DLF__NR * kc;
                        for (ir = 0; ir < mc; ir += DLF__MR) {
                            int mr = mc - ir < DLF__MR ? mc - ir : DLF__MR;
                            float *c_tile = C + (size_t)(ic + ir) * N + jc + j * DLF__NR;
                            if (!DLF__PACK_A && mr == DLF__MR)      /* A read in place */
                                dlf__tile(kern, kc, ta ? A + (size_t)pc * M + ic + ir : A + (size_t)(ic + ir) * K + pc,
                                          ta ? (size_t)M : 1, ta ? 1 : (size_t)K, b_panel, c_tile, N, mr, nr, add);
                            else
                                dlf__tile(kern, kc, packed_a + (size_t)ir * kc, DLF__MR, 1, b_panel, c_tile, N, mr, nr, add);
                        }
                    }
                }
            }
        }
    }
    if (own) DLF_FREE(own);
}

/* The entry point the ops use. Today every size goes to the fast path; the other
   rungs stay as references for tests and the lesson. */
DLFDEF void dlf_gemm(int ta, int tb, int M, int N, int K, const float *A,
                     const float *B, float *C, int acc, float *work)
{
    if (M > 0 && N > 0) {   /* an empty product may pass NULL buffers */
        DLF__NOT_NULL(C, );
        if (K > 0) { DLF__NOT_NULL(A, ); DLF__NOT_NULL(B, ); }
    }
    dlf_gemm_fast(ta, tb, M, N, K, A, B, C, acc, work);
}

/* A side rung for C (M,N) = A (M,K) @ B^T with B stored (N,K) (dlf_gemm_naive(0, 1, ...)),
   when K is long and both operands run along it in memory: the weight gradient of a
   convolution, dW = dY @ col^T, sums over all N*P*Q pixels this way. Element (i,j) is
   the dot product of row i of A and row j of B, both contiguous, so nothing is packed:
   * a micro-kernel computes a 4 x 3 block of dot products (4 rows of A, 3 of B) with
     8-wide partial sums, 12 AVX registers, over one chunk of DLF__DOT_KC k's, then adds
     the 12 totals to C;
   * chunks go in order of k, so a chunk of A (M rows) stays in L2 while one thread
     walks its 3-row blocks of B;
   * threads split the columns j (the blocks of B), never k: every C element is summed
     in the same order whatever the thread count. */
#define DLF__DOT_MR 4
#define DLF__DOT_NR 3
#define DLF__DOT_KC 512

/* The micro-kernel's math, in portable C: ab[r][c] = sum_p a[r][p] * b[c][p]. */
static void dlf__dot_kernel_ref(int kc, const float *const *a, const float *const *b, float *ab)
{
    int r, c, p;
    for (r = 0; r < DLF__DOT_MR; r++)
        for (c = 0; c < DLF__DOT_NR; c++) {
            float sum = 0.0f;
            for (p = 0; p < kc; p++) sum += a[r][p] * b[c][p];
            ab[r * DLF__DOT_NR + c] = sum;
        }
}

#ifdef DLF__AVX2
/* The 8 lanes of v added up: (v0+v4) + (v2+v6) + ... in a fixed order. */
static DLF__TARGET_AVX2 float dlf__hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The same in AVX2/FMA: lane l of acc_rc sums a[r][p] * b[c][p] over p = l mod 8; the
   lanes are added up at the end, then the k's left over (kc not a multiple of 8). */
static DLF__TARGET_AVX2 void dlf__dot_kernel_avx2(int kc, const float *const *a, const float *const *b, float *ab)
{
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *b0 = b[0], *b1 = b[1], *b2 = b[2];
    __m256 acc00 = _mm256_setzero_ps(), acc01 = _mm256_setzero_ps(), acc02 = _mm256_setzero_ps();
    __m256 acc10 = _mm256_setzero_ps(), acc11 = _mm256_setzero_ps(), acc12 = _mm256_setzero_ps();
    __m256 acc20 = _mm256_setzero_ps(), acc21 = _mm256_setzero_ps(), acc22 = _mm256_setzero_ps();
    __m256 acc30 = _mm256_setzero_ps(), acc31 = _mm256_setzero_ps(), acc32 = _mm256_setzero_ps();
    int p, r, c;
    for (p = 0; p + 8 <= kc; p += 8) {
        __m256 b0_p = _mm256_loadu_ps(b0 + p);
        __m256 b1_p = _mm256_loadu_ps(b1 + p);
        __m256 b2_p = _mm256_loadu_ps(b2 + p);
        __m256 a_p;
        a_p = _mm256_loadu_ps(a0 + p);
        acc00 = _mm256_fmadd_ps(a_p, b0_p, acc00); acc01 = _mm256_fmadd_ps(a_p, b1_p, acc01); acc02 = _mm256_fmadd_ps(a_p, b2_p, acc02);
        a_p = _mm256_loadu_ps(a1 + p);
        acc10 = _mm256_fmadd_ps(a_p, b0_p, acc10); acc11 = _mm256_fmadd_ps(a_p, b1_p, acc11); acc12 = _mm256_fmadd_ps(a_p, b2_p, acc12);
        a_p = _mm256_loadu_ps(a2 + p);
        acc20 = _mm256_fmadd_ps(a_p, b0_p, acc20); acc21 = _mm256_fmadd_ps(a_p, b1_p, acc21); acc22 = _mm256_fmadd_ps(a_p, b2_p, acc22);
        a_p = _mm256_loadu_ps(a3 + p);
        acc30 = _mm256_fmadd_ps(a_p, b0_p, acc30); acc31 = _mm256_fmadd_ps(a_p, b1_p, acc31); acc32 = _mm256_fmadd_ps(a_p, b2_p, acc32);
    }
    ab[0] = dlf__hsum8(acc00); ab[1] = dlf__hsum8(acc01); ab[2] = dlf__hsum8(acc02);
    ab[3] = dlf__hsum8(acc10); ab[4] = dlf__hsum8(acc11); ab[5] = dlf__hsum8(acc12);
    ab[6] = dlf__hsum8(acc20); ab[7] = dlf__hsum8(acc21); ab[8] = dlf__hsum8(acc22);
    ab[9] = dlf__hsum8(acc30); ab[10] = dlf__hsum8(acc31); ab[11] = dlf__hsum8(acc32);
    for (r = 0; r < DLF__DOT_MR; r++)
        for (c = 0; c < DLF__DOT_NR; c++) {
            int q;
            for (q = p; q < kc; q++) ab[r * DLF__DOT_NR + c] += a[r][q] * b[c][q];
        }
}
#endif


/* One 4 x 3 block at rows i0.., columns j0.. of C, over k = p0 .. p0+kc-1: C += block.
   Past the edge of A or B the last row is read again and its result dropped. */
static void dlf__dot_block(int kern, int M, int N, int K, const float *A, const float *B, float *C,
                           int i0, int j0, int p0, int kc)
{
    const float *a[DLF__DOT_MR], *b[DLF__DOT_NR];
    float ab[DLF__DOT_MR * DLF__DOT_NR];
    int r, c;
    for (r = 0; r < DLF__DOT_MR; r++) a[r] = A + (size_t)(i0 + r < M ? i0 + r : M - 1) * K + p0;
    for (c = 0; c < DLF__DOT_NR; c++) b[c] = B + (size_t)(j0 + c < N ? j0 + c : N - 1) * K + p0;
    switch (kern) {   /* this side rung has no AVX-512 version: no hot path uses it any more */
#ifdef DLF__AVX2
    case DLF__KERNEL_AVX512:
    case DLF__KERNEL_AVX2: dlf__dot_kernel_avx2(kc, a, b, ab); break;
#endif
    default: dlf__dot_kernel_ref(kc, a, b, ab); break;
    }
    for (r = 0; r < DLF__DOT_MR && i0 + r < M; r++)
        for (c = 0; c < DLF__DOT_NR && j0 + c < N; c++)
            C[(size_t)(i0 + r) * N + j0 + c] += ab[r * DLF__DOT_NR + c];
}

DLFDEF void dlf_gemm_dot(int M, int N, int K, const float *A, const float *B, float *C, int acc)
{
    if (M > 0 && N > 0) {   /* an empty product may pass NULL buffers */
        DLF__NOT_NULL(C, );
        if (K > 0) { DLF__NOT_NULL(A, ); DLF__NOT_NULL(B, ); }
    }
    int n_jb = (N + DLF__DOT_NR - 1) / DLF__DOT_NR, nt, parts, part, kern = dlf__kernel();
    if (M <= 0 || N <= 0) return;
    if (!acc) memset(C, 0, (size_t)M * N * sizeof(float));
    if (K <= 0) return;
    nt = dlf__gemm_threads(M, N, K);
    parts = nt > 1 ? 4 * nt : 1;                    /* handed out dynamically (a busy machine) */
    if (parts > n_jb) parts = n_jb;
    if (nt > parts) nt = parts;
    DLF__OMP(omp parallel for num_threads(nt) schedule(dynamic))
    for (part = 0; part < parts; part++) {          /* blocks jb0 .. jb1-1 of B */
        int jb0 = part * n_jb / parts, jb1 = (part + 1) * n_jb / parts, p0, jb, i0;
        for (p0 = 0; p0 < K; p0 += DLF__DOT_KC) {
            int kc = K - p0 < DLF__DOT_KC ? K - p0 : DLF__DOT_KC;
            for (jb = jb0; jb < jb1; jb++)
                for (i0 = 0; i0 < M; i0 += DLF__DOT_MR)
                    dlf__dot_block(kern, M, N, K, A, B, C, i0, jb * DLF__DOT_NR, p0, kc);
        }
    }
}

static float *dlf__tape_scratch(dlf_tape *t, size_t floats);

/* Shapes of op(a) (M,K) and op(b) (K,N), checked; names both shapes on a mismatch. */
DLFDEF dlf_tensor *dlf_matmul_ex(dlf_tape *t, dlf_tensor *a, dlf_tensor *b, int ta, int tb)
{
    int M, K, Kb, N, shape[2];
    dlf_tensor *out;
    dlf_node *nd;
    float *work;
    char sa[64], sb[64];
    DLF__OP(t);
    DLF__INPUT(t, a);
    DLF__INPUT(t, b);
    if (!dlf__live(t, "dlf_matmul", a, b, NULL)) return NULL;
    if (a->ndim != 2 || b->ndim != 2) {
        dlf__panic("dlf_matmul: both inputs must be 2-D, got %s and %s",
                   dlf_shape_str(a, sa, sizeof sa), dlf_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    M = ta ? a->shape[1] : a->shape[0];
    K = ta ? a->shape[0] : a->shape[1];
    Kb = tb ? b->shape[1] : b->shape[0];
    N = tb ? b->shape[0] : b->shape[1];
    if (K != Kb) {
        dlf__panic("dlf_matmul: inner dims differ: %s%s @ %s%s (%d vs %d)",
                   dlf_shape_str(a, sa, sizeof sa), ta ? "^T" : "",
                   dlf_shape_str(b, sb, sizeof sb), tb ? "^T" : "", K, Kb);
        return NULL;
    }
    shape[0] = M;
    shape[1] = N;
    out = dlf__out(t, 2, shape);
    if (!out) return NULL;
#ifdef DLF_CUDA
    if (t->cuda) {   /* stage 17: on the GPU (dlf_last_error says why when it fails) */
        if (dlf_cuda_matmul(t->cuda, ta, tb, a, b, out->data, 0) != DLF_OK) return NULL;
    } else
#endif
    {
        work = dlf__tape_scratch(t, dlf_gemm_fast_scratch(M, N, K));
        if (!work) return NULL;    /* out of memory: the tape has the error */
        dlf_gemm(ta, tb, M, N, K, a->data, b->data, out->data, 0, work);
    }
    nd = dlf__record(t, DLF_OP_MATMUL, out, a, b);
    if (nd) {
        nd->iarg[0] = ta;
        nd->iarg[1] = tb;
    }
    return out;
}

/* Batched matmul: a (..., M, K) @ b (..., K, N) -> (..., M, N), the batch dims (at most two,
   since DLF_MAX_DIMS is 4) broadcast like elementwise ops. One dlf_gemm per batch entry:
     C_i = A_i B_i          dA_i += G_i B_i^T          dB_i += A_i^T G_i
   A stretched batch dim (stride 0) sends several entries' gradients into one A_i; they
   add up in batch order (serial, deterministic). */
typedef struct dlf__bmm_dims {
    int M, K, N, n[2];        /* sizes; n: the output's two (padded) batch dims */
    ptrdiff_t sa[2], sb[2];   /* a's and b's batch strides, 0 where stretched */
} dlf__bmm_dims;

static int dlf__bmm_setup(const char *name, const dlf_tensor *a, const dlf_tensor *b, dlf__bmm_dims *d, int *ndim,
                          int *shape)
{
    int ba[2], bb[2], k;
    char s0[64], s1[64];
    d->M = a->shape[a->ndim - 2];
    d->K = a->shape[a->ndim - 1];
    d->N = b->shape[b->ndim - 1];
    if (b->shape[b->ndim - 2] != d->K) {
        dlf__panic("%s: inner dims differ: %s @ %s (%d vs %d)", name, dlf_shape_str(a, s0, sizeof s0),
                   dlf_shape_str(b, s1, sizeof s1), d->K, b->shape[b->ndim - 2]);
        return 0;
    }
    for (k = 0; k < 2; k++) {   /* batch dim k of the padded (B0, B1, rows, cols) */
        ba[k] = k - 2 + a->ndim - 2 >= 0 ? a->shape[k - 2 + a->ndim - 2] : 1;
        bb[k] = k - 2 + b->ndim - 2 >= 0 ? b->shape[k - 2 + b->ndim - 2] : 1;
        if (ba[k] != bb[k] && ba[k] != 1 && bb[k] != 1) {
            dlf__panic("%s: batch dims of %s and %s do not broadcast (%d vs %d)", name,
                       dlf_shape_str(a, s0, sizeof s0), dlf_shape_str(b, s1, sizeof s1), ba[k], bb[k]);
            return 0;
        }
        d->n[k] = ba[k] == 1 ? bb[k] : ba[k];
    }
    d->sa[1] = ba[1] == 1 ? 0 : (ptrdiff_t)d->M * d->K;
    d->sa[0] = ba[0] == 1 ? 0 : (ptrdiff_t)ba[1] * d->M * d->K;
    d->sb[1] = bb[1] == 1 ? 0 : (ptrdiff_t)d->K * d->N;
    d->sb[0] = bb[0] == 1 ? 0 : (ptrdiff_t)bb[1] * d->K * d->N;
    *ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (k = 0; k < *ndim - 2; k++) shape[k] = d->n[2 - (*ndim - 2) + k];
    shape[*ndim - 2] = d->M;
    shape[*ndim - 1] = d->N;
    return 1;
}

static dlf_tensor *dlf__bmm(dlf_tape *t, dlf_tensor *a, dlf_tensor *b, const char *name)
{
    dlf__bmm_dims d;
    int ndim, shape[4] = {1, 1, 1, 1}, i0, i1;
    dlf_tensor *out;
    float *w;
    if (!dlf__bmm_setup(name, a, b, &d, &ndim, shape)) return NULL;
    out = dlf__out(t, ndim, shape);
    if (!out) return NULL;
    w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(d.M, d.N, d.K));
    for (i0 = 0; i0 < d.n[0]; i0++)
        for (i1 = 0; i1 < d.n[1]; i1++)
            dlf_gemm(0, 0, d.M, d.N, d.K, a->data + i0 * d.sa[0] + i1 * d.sa[1], b->data + i0 * d.sb[0] + i1 * d.sb[1],
                     out->data + ((ptrdiff_t)i0 * d.n[1] + i1) * d.M * d.N, 0, w);
    dlf__record(t, DLF_OP_BMM, out, a, b);
    return out;
}

static void dlf__bmm_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *a = nd->in[0], *b = nd->in[1];
    float *ga = dlf__grad(t, a), *gb = dlf__grad(t, b), *w;
    dlf__bmm_dims d;
    int ndim, shape[4] = {1, 1, 1, 1}, i0, i1;
    if (!dlf__bmm_setup("dlf_bmm", a, b, &d, &ndim, shape)) return;
    w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(d.M > d.K ? d.M : d.K, d.N > d.K ? d.N : d.K,
                                                   d.M > d.N ? d.M : d.N));
    for (i0 = 0; i0 < d.n[0]; i0++)
        for (i1 = 0; i1 < d.n[1]; i1++) {
            const float *G = nd->out->grad + ((ptrdiff_t)i0 * d.n[1] + i1) * d.M * d.N;
            ptrdiff_t pa = i0 * d.sa[0] + i1 * d.sa[1], pb = i0 * d.sb[0] + i1 * d.sb[1];
            if (ga) dlf_gemm(0, 1, d.M, d.K, d.N, G, b->data + pb, ga + pa, 1, w);  /* G B^T */
            if (gb) dlf_gemm(1, 0, d.K, d.N, d.M, a->data + pa, G, gb + pb, 1, w);  /* A^T G */
        }
}

DLFDEF dlf_tensor *dlf_bmm(dlf_tape *t, dlf_tensor *a, dlf_tensor *b)
{
    DLF__OP(t);
    char s0[64], s1[64];
    if (!t) { dlf__panic("dlf_bmm: t is NULL"); return NULL; }
    if (!a) { dlf__panic("dlf_bmm: a is NULL"); return NULL; }
    if (!b) { dlf__panic("dlf_bmm: b is NULL"); return NULL; }
    if (a->ndim != 3 || b->ndim != 3 || a->shape[0] != b->shape[0]) {
        dlf__panic("dlf_bmm: needs (B,M,K) and (B,K,N) with one B, got %s and %s",
                   dlf_shape_str(a, s0, sizeof s0), dlf_shape_str(b, s1, sizeof s1));
        return NULL;
    }
    return dlf__bmm(t, a, b, "dlf_bmm");
}

/* torch.matmul's rules: 2-D @ 2-D is the plain product (dlf_matmul_ex). A 1-D a becomes
   (1,K) and a 1-D b (K,1), that added dim removed from the result: 1-D @ 1-D is a dot
   product (0-dim), (K,) @ (K,N) -> (N,), (M,K) @ (K,) -> (M,). With 3 or 4 dims on either
   side the leading dims are batch dims and broadcast. The reshapes are views, recorded as
   such, so the backward needs nothing more. */
DLFDEF dlf_tensor *dlf_matmul(dlf_tape *t, dlf_tensor *a, dlf_tensor *b)
{
    DLF__OP(t); DLF__INPUT(t, a); DLF__INPUT(t, b);
    int sa[2], sb[2], shape[4] = {1, 1, 1, 1}, k, ndim, Ka, Kb;
    dlf_tensor *x, *y, *out;
    char s0[64], s1[64];
    if (a->ndim == 2 && b->ndim == 2) return dlf_matmul_ex(t, a, b, 0, 0);
    if (a->ndim == 0 || b->ndim == 0) {
        dlf__panic("dlf_matmul: both inputs need at least 1 dim, got %s and %s",
                   dlf_shape_str(a, s0, sizeof s0), dlf_shape_str(b, s1, sizeof s1));
        return NULL;
    }
    Ka = a->shape[a->ndim - 1];
    Kb = b->shape[b->ndim == 1 ? 0 : b->ndim - 2];
    if (Ka != Kb) {
        dlf__panic("dlf_matmul: inner dims differ: %s @ %s (%d vs %d)",
                   dlf_shape_str(a, s0, sizeof s0), dlf_shape_str(b, s1, sizeof s1), Ka, Kb);
        return NULL;
    }
    sa[0] = 1; sa[1] = Ka;
    sb[0] = Kb; sb[1] = 1;
    x = a->ndim == 1 ? dlf_reshape(t, a, 2, sa) : a;
    y = b->ndim == 1 ? dlf_reshape(t, b, 2, sb) : b;
    if (!x || !y) return NULL;
    out = x->ndim == 2 && y->ndim == 2 ? dlf_matmul_ex(t, x, y, 0, 0) : dlf__bmm(t, x, y, "dlf_matmul");
    if (!out || (a->ndim > 1 && b->ndim > 1)) return out;
    for (k = 0, ndim = 0; k < out->ndim; k++) {  /* drop the dim a 1-D input added */
        if (a->ndim == 1 && k == out->ndim - 2) continue;
        if (b->ndim == 1 && k == out->ndim - 1) continue;
        shape[ndim++] = out->shape[k];
    }
    return dlf_reshape(t, out, ndim, shape);
}

/* Backward of C = op(A) op(B), with G = dL/dC (M,N). The rule for C = A B is
     dA = G B^T      dB = A^T G
   and with transposed storage the same rule is transposed back:
     ta=0 tb=0:  dA (M,K) += G B^T      dB (K,N) += A^T G
     ta=0 tb=1:  dA (M,K) += G B        dB (N,K) += G^T A
     ta=1 tb=0:  dA (K,M) += B G^T      dB (K,N) += A G
     ta=1 tb=1:  dA (K,M) += B^T G^T    dB (N,K) += G^T A^T */
static void dlf__matmul_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *a = nd->in[0], *b = nd->in[1], *c = nd->out;
    int ta = nd->iarg[0], tb = nd->iarg[1];
    int M = c->shape[0], N = c->shape[1];
    int K = ta ? a->shape[0] : a->shape[1];
    float *ga = dlf__grad(t, a), *gb = dlf__grad(t, b);
    const float *G = c->grad;
#ifdef DLF_CUDA
    if (t->cuda) {   /* stage 17: the same four rules on the GPU; g views G as a tensor */
        dlf_tensor g = *c;
        g.data = c->grad;
        g.flags = DLF_TENSOR_VIEW;
        if (ga && (!ta ? dlf_cuda_matmul(t->cuda, 0, !tb, &g, b, ga, 1)
                       : dlf_cuda_matmul(t->cuda, tb, 1, b, &g, ga, 1)) != DLF_OK)
            dlf__panic("dlf_matmul backward on the GPU: %s", dlf_last_error());
        if (gb && (!tb ? dlf_cuda_matmul(t->cuda, !ta, 0, a, &g, gb, 1)
                       : dlf_cuda_matmul(t->cuda, 1, ta, &g, a, gb, 1)) != DLF_OK)
            dlf__panic("dlf_matmul backward on the GPU: %s", dlf_last_error());
        return;
    }
#endif
    if (ga) {
        if (!ta) {   /* dA (M,K) = G (M,N) op(B)^T: B^T (N,K) is B (K,N) transposed, or B itself when tb */
            float *w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(M, K, N));
            if (!w) return;   /* the walk reports the tape's error */
            dlf_gemm(0, !tb, M, K, N, G, b->data, ga, 1, w);
        } else {     /* dA (K,M) = op(B) (K,N) G^T (N,M) */
            float *w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(K, M, N));
            if (!w) return;   /* the walk reports the tape's error */
            dlf_gemm(tb, 1, K, M, N, b->data, G, ga, 1, w);
        }
    }
    if (gb) {
        if (!tb) {   /* dB (K,N) = op(A)^T (K,M) G (M,N) */
            float *w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(K, N, M));
            if (!w) return;   /* the walk reports the tape's error */
            dlf_gemm(!ta, 0, K, N, M, a->data, G, gb, 1, w);
        } else {     /* dB (N,K) = G^T (N,M) op(A) (M,K) */
            float *w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(N, K, M));
            if (!w) return;   /* the walk reports the tape's error */
            dlf_gemm(1, ta, N, K, M, G, a->data, gb, 1, w);
        }
    }
}

// >>stage5_autograd (implementation) ----------------------------------------------

/* The arena: a list of blocks. Allocation bumps a pointer in the current block and
   moves to the next block (or appends one) when it is full. Reset rewinds every
   block. A training step asks for the same sizes in the same order every time, so
   from the second step on every request lands where it did before: no malloc. */
struct dlf__chunk {
    dlf__chunk *next;    /* the following block, or NULL */
    size_t cap;          /* usable bytes in mem */
    size_t used;         /* bytes handed out since the last reset */
    char *mem;           /* 64-byte aligned start of the usable bytes */
};

/* An op failed: the first failure since the last reset is kept on the tape (sticky), its
   message in dlf_last_error(). Returns code. */
static int dlf__tape_fail(dlf_tape *t, int code, const char *fmt, ...)
{
    va_list ap;
    if (t->error) return code;    /* the first failure is the one to report */
    t->error = code;
    va_start(ap, fmt);
    vsnprintf(dlf__error_buf, sizeof dlf__error_buf, fmt, ap);
    va_end(ap);
    return code;
}

/* The one warning a tape gives (a forgotten dlf_tape_reset, most likely): kept in
   dlf_last_error and printed to stderr unless DLF_NO_STDIO. */
static void dlf__tape_warn(dlf_tape *t, const char *why)
{
    t->warned = 1;
    dlf__fail(DLF_OK, "dlf tape: warning: %s; %zu bytes of arena and %d nodes since the last dlf_tape_reset "
              "(%d backward calls): is the reset between steps missing? Each step's forward needs a fresh "
              "tape: dlf_tape_reset after its backward", why, t->used_bytes, t->n_nodes, t->backwards);
#ifndef DLF_NO_STDIO
    fprintf(stderr, "%s\n", dlf_last_error());
#endif
}

static void *dlf__arena_alloc(dlf_tape *t, size_t bytes)
{
    dlf__chunk *c = t->cur;
    void *p;
    bytes = (bytes + 63) & ~(size_t)63;
    if (t->max_step_bytes && (bytes > t->max_step_bytes || t->used_bytes > t->max_step_bytes - bytes)) {
        dlf__panic("dlf tape: %zu more bytes would take the arena past max_step_bytes = %zu since the last "
                   "dlf_tape_reset (%zu in use, %d nodes, %d backward calls): is the reset between steps "
                   "missing? If one step really needs more, raise tape.max_step_bytes (0: no bound)",
                   bytes, t->max_step_bytes, t->used_bytes, t->n_nodes, t->backwards);
        return NULL;
    }
    while (c && c->used + bytes > c->cap) {
        c = c->next;
        if (c) c->used = 0;
    }
    if (!c) {
        size_t cap = bytes > t->chunk_bytes ? bytes : t->chunk_bytes;
        char *block = (char *)DLF_MALLOC(sizeof(dlf__chunk) + 64 + cap);
        if (!block) {   /* not a programmer error: the op returns NULL, the tape keeps the code */
            dlf__tape_fail(t, DLF_ERR_NOMEM, "dlf tape: out of memory growing the arena by %zu bytes", cap);
            return NULL;
        }
        c = (dlf__chunk *)block;
        c->next = NULL;
        c->cap = cap;
        c->used = 0;
        c->mem = (char *)(((uintptr_t)(block + sizeof(dlf__chunk)) + 63) & ~(uintptr_t)63);
        if (!t->arena_hi || (uintptr_t)c->mem < t->arena_lo) t->arena_lo = (uintptr_t)c->mem;
        if ((uintptr_t)c->mem + cap > t->arena_hi) t->arena_hi = (uintptr_t)c->mem + cap;
        if (t->cur) {
            /* the walk above ended at the last block: append after it */
            while (t->cur->next) t->cur = t->cur->next;
            t->cur->next = c;
        } else {
            t->first = c;
        }
    }
    t->cur = c;
    p = c->mem + c->used;
    c->used += bytes;
    t->used_bytes += bytes;
    if (t->used_bytes > t->peak_bytes) t->peak_bytes = t->used_bytes;
    if (t->warn_step_bytes && t->used_bytes > t->warn_step_bytes && !t->warned)
        dlf__tape_warn(t, "the arena passed warn_step_bytes");
    return p;
}

/* An arena tensor's header: the tensor, then what the tape knows of it. */
typedef struct dlf__arena_tensor {
    dlf_tensor t;        /* first, so a dlf_tensor * to it points to this */
    unsigned stamp;      /* the tape's stamp when it was made: its tape and step */
    int node;            /* the node that made it, -1 for none (dlf_tape_tensor) */
    dlf_tensor *base;    /* a view (dlf_reshape): the tensor that owns the data, else NULL */
} dlf__arena_tensor;

/* Generations. dlf_tape_reset rewinds the arena, so a pointer to a tensor of an
   earlier step points into memory that now holds other tensors (or, when the new
   step has not reached it yet, the old values). Every arena tensor carries the
   stamp of its tape and step; an op given a tensor whose stamp is not its tape's
   checks whether the pointer lies in its tape's arena: if so, the tensor is of an
   earlier step. The check reads only the header, which lies in memory the tape
   still owns, never the data a stale header may point anywhere with. A tensor
   that is neither (a heap tensor, another tape's) passes. */
static DLF__WRAPS void dlf__tape_new_stamp(dlf_tape *t)   /* a hash: wraps on purpose */
{
    unsigned s = t->generation * 2654435761u ^ (unsigned)(((uintptr_t)t >> 4) * 2246822519u);
    t->stamp = s ? s : 1;
}

static int dlf__stale(const dlf_tape *t, const dlf_tensor *x)
{
    uintptr_t p = (uintptr_t)x;
    const dlf__chunk *c;
    if (!x || p < t->arena_lo || p >= t->arena_hi) return 0;
    if ((x->flags & DLF_TENSOR_ARENA) && ((const dlf__arena_tensor *)x)->stamp == t->stamp) return 0;
    for (c = t->first; c; c = c->next)
        if (p >= (uintptr_t)c->mem && p < (uintptr_t)c->mem + c->cap) return 1;
    return 0;
}

/* Every op checks its tensor arguments before reading their data. */
static int dlf__live(const dlf_tape *t, const char *op, const dlf_tensor *a, const dlf_tensor *b, const dlf_tensor *c)
{
    const dlf_tensor *x[3];
    int j;
    x[0] = a; x[1] = b; x[2] = c;
    for (j = 0; j < 3; j++)
        if (dlf__stale(t, x[j])) {
            dlf__panic("%s%s: argument %d is a tensor from a previous step of this tape (dlf_tape_reset ran "
                       "since it was made, and its memory now belongs to this step): compute it again, or "
                       "dlf_tensor_copy it into a heap tensor before the reset",
                       strncmp(op, "dlf", 3) ? "dlf_" : "", op, j);
            return 0;
        }
    return 1;
}

/* x's version as backward compares it. A view (dlf_reshape, dlf_flatten) shows its
   base's data, so a write to either counts: the sum of both versions. (A write
   through another view of the same base is not seen; PyTorch shares one counter.) */
static unsigned dlf__version(const dlf_tape *t, const dlf_tensor *x)
{
    const dlf__arena_tensor *h = (const dlf__arena_tensor *)x;
    if (!x) return 0;
    if ((x->flags & DLF_TENSOR_VIEW) && (x->flags & DLF_TENSOR_ARENA) && h->stamp == t->stamp && h->base)
        return x->version + h->base->version;
    return x->version;
}

/* The node that made x on this tape, or -1 (a leaf, a heap tensor, another tape's). */
static int dlf__producer(const dlf_tape *t, const dlf_tensor *x)
{
    const dlf__arena_tensor *h = (const dlf__arena_tensor *)x;
    if (!x || !(x->flags & DLF_TENSOR_ARENA) || h->stamp != t->stamp) return -1;
    return h->node >= 0 && h->node < t->n_nodes && t->nodes[h->node].out == x ? h->node : -1;
}

/* view (a new arena header) shows a's data: remember the tensor that owns it. */
static void dlf__view_of(const dlf_tape *t, dlf_tensor *view, dlf_tensor *a)
{
    const dlf__arena_tensor *ha = (const dlf__arena_tensor *)a;
    int a_view = (a->flags & DLF_TENSOR_VIEW) && (a->flags & DLF_TENSOR_ARENA) && ha->stamp == t->stamp && ha->base;
    ((dlf__arena_tensor *)view)->base = a_view ? ha->base : a;
}

/* A new tensor in the arena, header and data together; data left uninitialized
   (every op writes all of its output). */
static dlf_tensor *dlf__out(dlf_tape *t, int ndim, const int *shape)
{
    int size = 1;
    size_t head = (sizeof(dlf__arena_tensor) + 63) & ~(size_t)63;
    char *block;
    dlf__arena_tensor *h;
    if (!dlf__check_shape("dlf tape", ndim, shape, &size)) return NULL;
    block = (char *)dlf__arena_alloc(t, head + (size_t)size * sizeof(float));
    if (!block) return NULL;
    h = (dlf__arena_tensor *)block;
    memset(h, 0, sizeof *h);
    h->t.data = (float *)(block + head);
    dlf__set_shape(&h->t, ndim, shape, size);
    h->t.flags = DLF_TENSOR_ARENA;
    h->stamp = t->stamp;
    h->node = -1;
    return &h->t;
}

DLFDEF dlf_tensor *dlf_tape_tensor(dlf_tape *t, int ndim, const int *shape)
{
    DLF__OP(t);
    dlf_tensor *x = dlf__out(t, ndim, shape);
    if (x) memset(x->data, 0, (size_t)x->size * sizeof(float));
    return x;
}

/* The gradient buffer of x, created (zeroed, in the arena) the first time backward
   needs it; NULL when x does not require grad. */
static float *dlf__grad(dlf_tape *t, dlf_tensor *x)
{
    if (!x || !x->requires_grad) return NULL;
    if (!x->grad) {
        x->grad = (float *)dlf__arena_alloc(t, (size_t)x->size * sizeof(float));
        if (x->grad) memset(x->grad, 0, (size_t)x->size * sizeof(float));
    }
    return x->grad;
}

/* Append a node when grad is on and some input requires grad; the output then
   requires grad too. Returns the node (to fill arguments) or NULL. Ops with a third
   input (the normalizations: x, weight, bias) call dlf__record3. */
static dlf_node *dlf__record3(dlf_tape *t, dlf_op op, dlf_tensor *out, dlf_tensor *a, dlf_tensor *b, dlf_tensor *c)
{
    dlf_node *nd;
    if (!dlf__live(t, dlf_op_name(op), a, b, c)) return NULL;   /* for ops that did not check */
    if (!t->grad_enabled) return NULL;
    if (!(a && a->requires_grad) && !(b && b->requires_grad) && !(c && c->requires_grad)) return NULL;
    if (t->n_nodes == t->cap_nodes) {   /* DLF__OP made room: reached only by a caller that did not */
        int cap = t->cap_nodes ? 2 * t->cap_nodes : 256;
        dlf_node *nodes = (dlf_node *)DLF_REALLOC(t->nodes, (size_t)cap * sizeof(dlf_node));
        if (!nodes) {
            dlf__tape_fail(t, DLF_ERR_NOMEM, "dlf tape: out of memory recording node %d (%s)", t->n_nodes,
                           dlf_op_name(op));
            return NULL;
        }
        t->nodes = nodes;
        t->cap_nodes = cap;
    }
    nd = &t->nodes[t->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->out = out;
    nd->in[0] = a;
    nd->in[1] = b;
    nd->in[2] = c;
    nd->ver[0] = dlf__version(t, a);   /* what backward will compare (dlf__backward_reads) */
    nd->ver[1] = dlf__version(t, b);
    nd->ver[2] = dlf__version(t, c);
    nd->ver[3] = dlf__version(t, out);
    nd->same_out = dlf__producer(t, out);
    if ((out->flags & DLF_TENSOR_ARENA) && ((dlf__arena_tensor *)out)->stamp == t->stamp)
        ((dlf__arena_tensor *)out)->node = t->n_nodes - 1;
    out->requires_grad = 1;
    return nd;
}

static dlf_node *dlf__record(dlf_tape *t, dlf_op op, dlf_tensor *out, dlf_tensor *a, dlf_tensor *b)
{
    return dlf__record3(t, op, out, a, b, NULL);
}

/* A workspace that only grows (matmul packing); like the arena, it stops growing
   after the first step. */
static float *dlf__tape_scratch(dlf_tape *t, size_t floats)
{
    if (floats > t->scratch_floats) {
        float *s = (float *)DLF_REALLOC(t->scratch, floats * sizeof(float));
        if (!s) {   /* the caller returns NULL (a forward) or stops (a backward: the walk reports it) */
            dlf__tape_fail(t, DLF_ERR_NOMEM, "dlf tape: out of memory for %zu floats of matmul workspace", floats);
            return NULL;
        }
        t->scratch = s;
        t->scratch_floats = floats;
    }
    return t->scratch;
}

/* Room for two more nodes (an op records at most two: a layer's own and its bias's) when
   grad is on; 0 when the tape has a pending error or the node list cannot grow. */
static int dlf__tape_ready(dlf_tape *t)
{
    if (t->error) return 0;
    if (t->grad_enabled && t->n_nodes + 2 > t->cap_nodes) {
        int cap = t->cap_nodes ? 2 * t->cap_nodes : 256;
        dlf_node *nodes = (dlf_node *)DLF_REALLOC(t->nodes, (size_t)cap * sizeof(dlf_node));
        if (!nodes) {
            dlf__tape_fail(t, DLF_ERR_NOMEM, "dlf tape: out of memory growing the node list to %d nodes", cap);
            return 0;
        }
        t->nodes = nodes;
        t->cap_nodes = cap;
    }
    return 1;
}

DLFDEF int dlf_tape_error(const dlf_tape *t)
{
    DLF__NOT_NULL(t, DLF_ERR_ARG);
    return t->error;
}

DLFDEF int dlf_tape_init(dlf_tape *t)
{
    DLF__NOT_NULL(t, DLF_ERR_ARG);
    memset(t, 0, sizeof *t);
    t->chunk_bytes = (size_t)1 << 20;
    t->grad_enabled = 1;
    t->training = 1;
    dlf_rng_seed(&t->rng, 0);
    t->generation = 1;
    dlf__tape_new_stamp(t);
    t->warn_step_bytes = (size_t)1 << 30;                                      /* 1 GiB */
    t->max_step_bytes = t->warn_step_bytes <= (size_t)-1 / 4 ? 4 * t->warn_step_bytes
                                                             : (size_t)-1 / 4 * 3;  /* 4 GiB; 32-bit: 3 */
    return DLF_OK;
}

DLFDEF void dlf_tape_destroy(dlf_tape *t)
{
    DLF__NOT_NULL(t, );
    dlf__chunk *c = t->first;
    while (c) {
        dlf__chunk *next = c->next;
        DLF_FREE(c);
        c = next;
    }
    if (t->nodes) DLF_FREE(t->nodes);
    if (t->scratch) DLF_FREE(t->scratch);
    memset(t, 0, sizeof *t);
}

DLFDEF void dlf_tape_reset(dlf_tape *t)
{
    DLF__NOT_NULL(t, );
    dlf__chunk *c;
    for (c = t->first; c; c = c->next) c->used = 0;
    t->cur = t->first;
    t->used_bytes = 0;
    t->n_nodes = 0;
    t->error = DLF_OK;
    t->backwards = 0;
    t->generation++;
    dlf__tape_new_stamp(t);   /* the tensors made so far are of an earlier step now */
    if (t->telemetry) t->telemetry->open = 0;  /* the next record starts a new step */
}

DLFDEF int dlf_tape_set_grad(dlf_tape *t, int enabled)
{
    DLF__NOT_NULL(t, 0);
    int prev = t->grad_enabled;
    t->grad_enabled = enabled;
    return prev;
}

DLFDEF int dlf_tape_set_training(dlf_tape *t, int training)
{
    DLF__NOT_NULL(t, 0);
    int prev = t->training;
    t->training = training;
    return prev;
}

DLFDEF void dlf_tape_seed(dlf_tape *t, uint64_t seed)
{
    DLF__NOT_NULL(t, );
    dlf_rng_seed(&t->rng, seed);
}

/* A table that checks itself (ggml's static_assert on GGML_OP_COUNT): the array has
   no size of its own, and a negative-size typedef stops the build when the count of
   names differs from DLF_OP_COUNT. */
static const char *const dlf__op_names[] = {
        "none", "add", "sub", "mul", "div", "add_scalar", "mul_scalar", "pow_scalar",
        "neg", "exp", "log", "sqrt", "square", "abs", "relu", "sigmoid", "tanh",
        "sum", "mean", "max", "var", "reshape", "matmul",
        "conv2d", "bias", "leaky_relu", "general_relu", "softmax", "log_softmax", "maxpool2d",
        "avgpool2d", "embedding", "mse_loss", "l1_loss", "bce_with_logits", "nll_loss", "cross_entropy",
        "batchnorm", "groupnorm", "running_batchnorm", "dropout",
        "cross_entropy_soft",
        "bce_loss", "maxpool2d_ex", "avgpool2d_ex", "conv2d_ex",   /* layers/losses parity */
        "permute", "narrow", "cat", "index_select", "gather",          /* tensor ops */
        "clamp", "minimum", "maximum", "where", "min",                 /* tensor ops */
        "sum_axes", "mean_axes", "bmm", "custom"                       /* tensor ops */
};
typedef char dlf__op_names_match_enum[(sizeof dlf__op_names / sizeof dlf__op_names[0] == DLF_OP_COUNT) ? 1 : -1];

DLFDEF const char *dlf_op_name(dlf_op op)
{
    return ((int)op >= 0 && op < DLF_OP_COUNT) ? dlf__op_names[op] : "?";
}

/* The backwards of the later stages, defined in their own sections below. */
static void dlf__bias_backward(dlf_tape *t, dlf_node *nd);
static void dlf__conv2d_backward(dlf_tape *t, dlf_node *nd);
static void dlf__general_relu_backward(dlf_tape *t, dlf_node *nd);
static void dlf__softmax_backward(dlf_tape *t, dlf_node *nd);
static void dlf__pool_backward(dlf_tape *t, dlf_node *nd);
static void dlf__pool_win_backward(dlf_tape *t, dlf_node *nd);
static void dlf__embedding_backward(dlf_tape *t, dlf_node *nd);
static void dlf__elem_loss_backward(dlf_tape *t, dlf_node *nd);
static void dlf__class_loss_backward(dlf_tape *t, dlf_node *nd);
static void dlf__bn_backward(dlf_tape *t, dlf_node *nd);
static void dlf__groupnorm_backward(dlf_tape *t, dlf_node *nd);
static void dlf__dropout_backward(dlf_tape *t, dlf_node *nd);
static void dlf__cross_entropy_soft_backward(dlf_tape *t, dlf_node *nd);
static void dlf__custom_backward(dlf_tape *t, dlf_node *nd);

/* Walk the tape backwards. Every node's output gradient is complete when its turn
   comes, because all the ops that used that output were recorded after it. */
DLFDEF int dlf_tape_set_anomaly(dlf_tape *t, int on)
{
    DLF__NOT_NULL(t, 0);
    int prev = t->anomaly;
    t->anomaly = on != 0;
    return prev;
}

/* Anomaly mode. Forward: the first recorded node, in forward order, whose output holds a NaN
   or an infinity is named; it made the value if its inputs were finite, else the value came
   in from outside the tape (the data, a constant). Backward: after each node's backward,
   the gradients it added to are checked. Off, it costs one test per dlf_backward and one per
   node. */
static int dlf__first_nonfinite(const dlf_tensor *x, const float *v)
{
    int k;
    for (k = 0; v && k < x->size; k++)
        if (!(fabsf(v[k]) <= 3.4028235e38f)) return k;
    return -1;
}

static const char *dlf__nonfinite_str(float v)   /* the same words on every C library */
{
    return v != v ? "NaN" : v > 0.0f ? "inf" : "-inf";
}

static int dlf__anomaly_forward(dlf_tape *t)
{
    int i, j, k;
    char s[64];
    for (i = 0; i < t->n_nodes; i++) {
        dlf_node *nd = &t->nodes[i];
        if ((k = dlf__first_nonfinite(nd->out, nd->out->data)) < 0) continue;
        for (j = 0; j < 3; j++) {
            int kj;
            if (!nd->in[j] || (kj = dlf__first_nonfinite(nd->in[j], nd->in[j]->data)) < 0) continue;
            dlf__panic("anomaly mode: node %d (%s) got %s at index %d of its input %d %s from outside the tape "
                       "(the data or a constant): its output holds %s at index %d", i, dlf_op_name(nd->op),
                       dlf__nonfinite_str(nd->in[j]->data[kj]), kj, j, dlf_shape_str(nd->in[j], s, sizeof s),
                       dlf__nonfinite_str(nd->out->data[k]), k);
            return 0;
        }
        dlf__panic("anomaly mode: node %d (%s) produced %s at index %d of its output %s from finite inputs",
                   i, dlf_op_name(nd->op), dlf__nonfinite_str(nd->out->data[k]), k, dlf_shape_str(nd->out, s, sizeof s));
        return 0;
    }
    return 1;
}

static int dlf__anomaly_backward(const dlf_node *nd, int i)
{
    int j, k;
    char s[64];
    for (j = 0; j < 3; j++) {
        if (!nd->in[j] || (k = dlf__first_nonfinite(nd->in[j], nd->in[j]->grad)) < 0) continue;
        dlf__panic("anomaly mode: the backward of node %d (%s) made the gradient of its input %d %s %s at index %d",
                   i, dlf_op_name(nd->op), j, dlf_shape_str(nd->in[j], s, sizeof s), dlf__nonfinite_str(nd->in[j]->grad[k]), k);
        return 0;
    }
    return 1;
}

/* Which values an op's backward reads, so which in-place writes since the forward
   would change its gradients: bit j for in[j], bit 3 for out. The gradient of an
   add needs neither input's value, so writing them is harmless (PyTorch agrees:
   AddBackward saves nothing); the gradient of a mul needs both. Ops not listed
   read everything they were given. */
static int dlf__backward_reads(dlf_op op)
{
    switch (op) {
    case DLF_OP_ADD: case DLF_OP_SUB: case DLF_OP_ADD_SCALAR: case DLF_OP_MUL_SCALAR: case DLF_OP_NEG:
    case DLF_OP_SUM: case DLF_OP_MEAN: case DLF_OP_MAX: case DLF_OP_RESHAPE: case DLF_OP_BIAS:
    case DLF_OP_AVGPOOL2D: case DLF_OP_MAXPOOL2D: case DLF_OP_DROPOUT:
        return 0;                   /* only shapes, or what the op saved itself (indices, mask) */
    case DLF_OP_EXP: case DLF_OP_SQRT: case DLF_OP_SIGMOID: case DLF_OP_TANH:
    case DLF_OP_SOFTMAX: case DLF_OP_LOG_SOFTMAX:
        return 8;                   /* the output y */
    case DLF_OP_EMBEDDING:
        return 1;                   /* the indices */
    case DLF_OP_NLL_LOSS:
        return 2;                   /* the targets */
    default:
        return 15;
    }
}

/* Before any gradient is written: mark the nodes `root` was computed from and check
   that each may be walked (not used up by an earlier backward, nothing it reads
   written since). Inputs are always recorded before the ops that read them, so one
   sweep down from the root, carrying a count of marked nodes not yet reached, finds
   them all and stops at the lowest. The gradients of the marked nodes' outputs are
   zeroed: an intermediate gradient belongs to one backward. Returns the lowest
   marked index, or -1 after a panic. */
static int dlf__backward_mark(dlf_tape *t, int root, unsigned walk)
{
    int i, j, pending = 1, lowest = root;
    char s[64];
    static const char *const what[DLF_NODE_INPUTS + 1] = {"input 0", "input 1", "input 2", "output"};
    t->nodes[root].walk = walk;
    for (i = root; i >= 0 && pending > 0; i--) {
        dlf_node *nd = &t->nodes[i];
        int reads;
        if (nd->walk != walk) continue;
        pending--;
        lowest = i;
        if (nd->consumed) {
            dlf__panic("dlf_backward: trying to backward through node %d (%s) a second time: an earlier "
                       "backward went through it and used it up. Pass DLF_BACKWARD_KEEP_GRAPH to "
                       "dlf_backward_ex for each backward but the last through shared nodes (PyTorch's "
                       "retain_graph=True), or dlf_tape_reset and run the forward again", i, dlf_op_name(nd->op));
            return -1;
        }
        reads = dlf__backward_reads(nd->op);
        for (j = 0; j < DLF_NODE_INPUTS + 1; j++) {
            const dlf_tensor *x = j < DLF_NODE_INPUTS ? nd->in[j] : nd->out;
            if (!x || !(reads >> j & 1) || dlf__version(t, x) == nd->ver[j]) continue;
            dlf__panic("dlf_backward: node %d (%s) needs the values of its %s %s%s%s, which were modified "
                       "in place after the forward (version %u, recorded %u): a dlf_fill, dlf_tensor_copy, "
                       "dlf_loader_next into it, or an optimizer step before this backward. PyTorch: \"one of "
                       "the variables needed for gradient computation has been modified by an inplace "
                       "operation\"", i, dlf_op_name(nd->op), what[j], dlf_shape_str(x, s, sizeof s), x->name ? " " : "", x->name ? x->name : "",
                       dlf__version(t, x), nd->ver[j]);
            return -1;
        }
        for (j = 0; j <= DLF_NODE_INPUTS; j++) {
            int p = j < DLF_NODE_INPUTS ? dlf__producer(t, nd->in[j]) : nd->same_out;
            if (p >= 0 && t->nodes[p].walk != walk) {
                t->nodes[p].walk = walk;
                pending++;
            }
        }
        if (nd->out->grad) memset(nd->out->grad, 0, (size_t)nd->out->size * sizeof(float));
    }
    return lowest;
}

DLFDEF int dlf_backward_ex(dlf_tape *t, dlf_tensor *out, const float *seed, int flags)
{
    int i, root, lowest;
    unsigned walk;
    float *g;
    DLF__NOT_NULL(t, DLF_ERR_ARG);
    if (t->error) return t->error;   /* the forward failed (reported then): nothing to walk */
    DLF__NOT_NULL(out, DLF_ERR_ARG);
    if (flags & ~DLF_BACKWARD_KEEP_GRAPH) {
        dlf__panic("dlf_backward_ex: unknown flags 0x%x (0 or DLF_BACKWARD_KEEP_GRAPH)", (unsigned)flags);
        return DLF_ERR_ARG;
    }
    if (!dlf__live(t, "dlf_backward", out, NULL, NULL)) return DLF_ERR_ARG;
    if (!out->requires_grad) {
        dlf__panic("dlf_backward: the output does not require grad (no input requires grad, or grad was off)");
        return DLF_ERR_ARG;
    }
    if ((out->flags & DLF_TENSOR_ARENA) && ((dlf__arena_tensor *)out)->stamp != t->stamp) {
        dlf__panic("dlf_backward: the output was made on another tape: call backward on the tape that made it");
        return DLF_ERR_ARG;
    }
    if (++t->backwards == 100 && !t->warned)
        dlf__tape_warn(t, "100 backward calls on one tape without a reset");
    if (t->anomaly && !dlf__anomaly_forward(t)) return DLF_ERR_ARG;
    root = dlf__producer(t, out);
    lowest = root + 1;
    walk = ++t->walks;
    if (!walk) walk = t->walks = 1;    /* 0 is every new node's value */
    if (root >= 0 && (lowest = dlf__backward_mark(t, root, walk)) < 0) return DLF_ERR_ARG;
    g = dlf__grad(t, out);
    if (!g) return t->error ? t->error : DLF_ERR_ARG;
    for (i = 0; i < out->size; i++) g[i] += seed ? seed[i] : 1.0f;
    for (i = root; i >= lowest; i--) {
        dlf_node *nd = &t->nodes[i];
        if (nd->walk != walk) continue;    /* not on a path to out */
        if (!(flags & DLF_BACKWARD_KEEP_GRAPH)) nd->consumed = 1;
        if (!nd->out->grad) continue;  /* nothing flowed back into this node */
        switch (nd->op) {
        case DLF_OP_ADD:
        case DLF_OP_SUB:
        case DLF_OP_MUL:
        case DLF_OP_DIV:
        case DLF_OP_MINIMUM:
        case DLF_OP_MAXIMUM:
            dlf__binary_backward(t, nd);
            break;
        case DLF_OP_ADD_SCALAR:
        case DLF_OP_MUL_SCALAR:
        case DLF_OP_POW_SCALAR:
        case DLF_OP_NEG:
        case DLF_OP_EXP:
        case DLF_OP_LOG:
        case DLF_OP_SQRT:
        case DLF_OP_SQUARE:
        case DLF_OP_ABS:
        case DLF_OP_RELU:
        case DLF_OP_SIGMOID:
        case DLF_OP_TANH:
            dlf__unary_backward(t, nd);
            break;
        case DLF_OP_SUM:
        case DLF_OP_MEAN:
        case DLF_OP_MAX:
        case DLF_OP_MIN:
        case DLF_OP_VAR:
            dlf__reduce_backward(t, nd);
            break;
        case DLF_OP_SUM_AXES:
        case DLF_OP_MEAN_AXES:
            dlf__reduce_axes_backward(t, nd);
            break;
        case DLF_OP_PERMUTE:
            dlf__permute_backward(t, nd);
            break;
        case DLF_OP_NARROW:
            dlf__narrow_backward(t, nd);
            break;
        case DLF_OP_CAT:
            dlf__cat_backward(t, nd);
            break;
        case DLF_OP_INDEX_SELECT:
            dlf__index_select_backward(t, nd);
            break;
        case DLF_OP_GATHER:
            dlf__gather_backward(t, nd);
            break;
        case DLF_OP_CLAMP:
            dlf__clamp_backward(t, nd);
            break;
        case DLF_OP_WHERE:
            dlf__where_backward(t, nd);
            break;
        case DLF_OP_BMM:
            dlf__bmm_backward(t, nd);
            break;
        case DLF_OP_CUSTOM:
            dlf__custom_backward(t, nd);
            break;
        case DLF_OP_RESHAPE:
            dlf__reshape_backward(t, nd);
            break;
        case DLF_OP_MATMUL:
            dlf__matmul_backward(t, nd);
            break;
        case DLF_OP_CONV2D:
        case DLF_OP_CONV2D_EX:
            dlf__conv2d_backward(t, nd);
            break;
        case DLF_OP_BIAS:
            dlf__bias_backward(t, nd);
            break;
        case DLF_OP_LEAKY_RELU:
        case DLF_OP_GENERAL_RELU:
            dlf__general_relu_backward(t, nd);
            break;
        case DLF_OP_SOFTMAX:
        case DLF_OP_LOG_SOFTMAX:
            dlf__softmax_backward(t, nd);
            break;
        case DLF_OP_MAXPOOL2D:
        case DLF_OP_AVGPOOL2D:
            dlf__pool_backward(t, nd);
            break;
        case DLF_OP_MAXPOOL2D_EX:
        case DLF_OP_AVGPOOL2D_EX:
            dlf__pool_win_backward(t, nd);
            break;
        case DLF_OP_EMBEDDING:
            dlf__embedding_backward(t, nd);
            break;
        case DLF_OP_MSE_LOSS:
        case DLF_OP_L1_LOSS:
        case DLF_OP_BCE_LOGITS:
        case DLF_OP_BCE_LOSS:
            dlf__elem_loss_backward(t, nd);
            break;
        case DLF_OP_NLL_LOSS:
        case DLF_OP_CROSS_ENTROPY:
            dlf__class_loss_backward(t, nd);
            break;
        case DLF_OP_BATCHNORM:
        case DLF_OP_RUNNING_BATCHNORM:
            dlf__bn_backward(t, nd);
            break;
        case DLF_OP_GROUPNORM:
            dlf__groupnorm_backward(t, nd);
            break;
        case DLF_OP_DROPOUT:
            dlf__dropout_backward(t, nd);
            break;
        case DLF_OP_CROSS_ENTROPY_SOFT:
            dlf__cross_entropy_soft_backward(t, nd);
            break;
        case DLF_OP_NONE:
        case DLF_OP_COUNT:
            dlf__panic("dlf_backward: node %d has no op (%d)", i, (int)nd->op);
            return DLF_ERR_ARG;
        }
        if (t->error) return t->error;   /* a gradient or workspace could not be allocated */
        if (t->anomaly && !dlf__anomaly_backward(nd, i)) return DLF_ERR_ARG;
    }
    return DLF_OK;
}

DLFDEF int dlf_backward_seed(dlf_tape *t, dlf_tensor *out, const float *seed)
{
    return dlf_backward_ex(t, out, seed, 0);
}

DLFDEF int dlf_backward(dlf_tape *t, dlf_tensor *loss)
{
    char s[64];
    DLF__NOT_NULL(t, DLF_ERR_ARG);
    if (t->error) return t->error;   /* the forward failed (reported then): loss is NULL */
    DLF__NOT_NULL(loss, DLF_ERR_ARG);
    if (!dlf__live(t, "dlf_backward", loss, NULL, NULL)) return DLF_ERR_ARG;
    if (loss->size != 1) {
        dlf__panic("dlf_backward: the loss must have one element, got shape %s "
                   "(reduce it, or use dlf_backward_seed)", dlf_shape_str(loss, s, sizeof s));
        return DLF_ERR_ARG;
    }
    return dlf_backward_ex(t, loss, NULL, 0);
}

DLFDEF void dlf_zero_grad(dlf_tensor *t)
{
    if (t && t->grad) memset(t->grad, 0, (size_t)t->size * sizeof(float));
}

DLFDEF void dlf_zero_grads(dlf_tensor **ts, int n)
{
    DLF__NOT_NULL(ts, );
    int i;
    for (i = 0; i < n; i++) dlf_zero_grad(ts[i]);
}

#ifndef DLF_NO_STDIO
DLFDEF void dlf_tape_print(const dlf_tape *t)
{
    DLF__NOT_NULL(t, );
    int i, j;
    char s[64];
    printf("tape: %d nodes, %zu bytes in use (peak %zu)\n", t->n_nodes, t->used_bytes, t->peak_bytes);
    for (i = 0; i < t->n_nodes; i++) {
        const dlf_node *nd = &t->nodes[i];
        printf("  #%-3d %-10s -> %s", i, dlf_op_name(nd->op), dlf_shape_str(nd->out, s, sizeof s));
        if (nd->op == DLF_OP_CUSTOM && nd->ctx && nd->ctx->op->name) printf("  \"%s\"", nd->ctx->op->name);
        for (j = 0; j < DLF_NODE_INPUTS; j++)
            if (nd->in[j]) printf("  in%d %s%s%s", j, dlf_shape_str(nd->in[j], s, sizeof s),
                                  nd->in[j]->name ? " " : "", nd->in[j]->name ? nd->in[j]->name : "");
        printf("\n");
    }
}
#endif

// custom ops

/* dlf_custom: the context goes in the arena; the user's forward runs with recording off
   (dlf ops on ctx->tape make plain arena tensors); then the call is recorded as
   DLF_OP_CUSTOM nodes. A node holds 3 inputs, so n inputs make ceil(n/3) nodes, all with
   the same output and context; the first of them the backward walk meets (the last one
   recorded) calls the user's backward once for all inputs, the others find it done. */
DLFDEF dlf_tensor *dlf_custom(dlf_tape *t, const dlf_custom_op *op, dlf_tensor **inputs, int n_inputs)
{
    DLF__OP(t);
    dlf_custom_ctx *ctx;
    dlf_tensor *out;
    int i, prev;
    const char *name;
    if (!t) { dlf__panic("dlf_custom: t is NULL"); return NULL; }
    if (!op) { dlf__panic("dlf_custom: op is NULL"); return NULL; }
    name = op->name ? op->name : "(unnamed)";
    if (!op->forward) { dlf__panic("dlf_custom: op \"%s\": forward is NULL", name); return NULL; }
    if (!inputs && n_inputs > 0) { dlf__panic("dlf_custom: op \"%s\": inputs is NULL", name); return NULL; }
    if (n_inputs < 1 || n_inputs > DLF_CUSTOM_MAX_INPUTS) {
        dlf__panic("dlf_custom: op \"%s\": n_inputs %d is outside 1..%d", name, n_inputs, DLF_CUSTOM_MAX_INPUTS);
        return NULL;
    }
    for (i = 0; i < n_inputs; i++)
        if (!inputs[i]) { dlf__panic("dlf_custom: op \"%s\": inputs[%d] is NULL", name, i); return NULL; }
    ctx = (dlf_custom_ctx *)dlf__arena_alloc(t, sizeof *ctx);
    if (!ctx) return NULL;
    memset(ctx, 0, sizeof *ctx);
    ctx->op = op;
    ctx->tape = t;
    ctx->n_in = n_inputs;
    for (i = 0; i < n_inputs; i++) ctx->in[i] = inputs[i];
    prev = dlf_tape_set_grad(t, 0);
    out = op->forward(ctx, ctx->in, n_inputs, op->user);
    dlf_tape_set_grad(t, prev);
    if (!out) return NULL;  /* the forward failed; it set dlf_last_error or panicked */
    for (i = 0; i < n_inputs; i++)
        if (out == inputs[i] || out->data == inputs[i]->data) {
            dlf__panic("dlf_custom: op \"%s\": forward returned its input %d (or a view of it); return a new "
                       "tensor (dlf_custom_output, dlf_clone)", name, i);
            return NULL;
        }
    ctx->out = out;
    for (i = 0; i < n_inputs; i += DLF_NODE_INPUTS) {
        dlf_node *nd = dlf__record3(t, DLF_OP_CUSTOM, out, ctx->in[i], i + 1 < n_inputs ? ctx->in[i + 1] : NULL,
                                    i + 2 < n_inputs ? ctx->in[i + 2] : NULL);
        if (nd) {
            nd->ctx = ctx;
            nd->iarg[0] = i;  /* the position of this node's first input */
        }
    }
    return out;
}

DLFDEF dlf_tensor *dlf_custom_output(dlf_custom_ctx *ctx, int ndim, const int *shape)
{
    if (!ctx) { dlf__panic("dlf_custom_output: ctx is NULL"); return NULL; }
    if (!shape && ndim > 0) { dlf__panic("dlf_custom_output: shape is NULL"); return NULL; }
    return dlf_tape_tensor(ctx->tape, ndim, shape);
}

DLFDEF void dlf_custom_save(dlf_custom_ctx *ctx, dlf_tensor *x)
{
    if (!ctx) { dlf__panic("dlf_custom_save: ctx is NULL"); return; }
    if (!x) { dlf__panic("dlf_custom_save: x is NULL"); return; }
    if (ctx->n_saved == DLF_CUSTOM_MAX_SAVED) {
        dlf__panic("dlf_custom_save: op \"%s\" saves more than %d tensors", ctx->op->name ? ctx->op->name : "(unnamed)",
                   DLF_CUSTOM_MAX_SAVED);
        return;
    }
    ctx->saved[ctx->n_saved++] = x;
}

/* The user's backward, once per call, with recording off (it may use dlf ops on the tape
   for temporaries; recording would grow the node list the walk is reading). */
static void dlf__custom_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_custom_ctx *ctx = nd->ctx;
    float *gin[DLF_CUSTOM_MAX_INPUTS];
    int i, any = -1, prev;
    if (ctx->done) return;
    ctx->done = 1;
    for (i = 0; i < ctx->n_in; i++)
        if ((gin[i] = dlf__grad(t, ctx->in[i])) && any < 0) any = i;
    if (any < 0) return;
    if (!ctx->op->backward) {
        dlf__panic("dlf_backward: custom op \"%s\" has no backward, but its input %d needs a gradient",
                   ctx->op->name ? ctx->op->name : "(unnamed)", any);
        return;
    }
    prev = dlf_tape_set_grad(t, 0);
    ctx->op->backward(ctx, ctx->out->grad, gin, ctx->op->user);
    dlf_tape_set_grad(t, prev);
}

/* L = sum_i w_i * out_i, in double. */
static double dlf__weighted_sum(const dlf_tensor *out, const float *w)
{
    double s = 0.0;
    int i;
    for (i = 0; i < out->size; i++) s += (double)w[i] * (double)out->data[i];
    return s;
}

/* Every evaluation of fn starts from the same tape rng state, so ops that draw random
   numbers (dropout) draw the same ones each time and the differences are meaningful. */
static double dlf__eval_graph(dlf_graph_fn fn, dlf_tape *t, dlf_tensor **inputs, void *user, const float *w)
{
    dlf_tensor *out;
    dlf_tape_reset(t);
    dlf_tape_seed(t, 0x5eed);
    out = fn(t, inputs, user);
    return out ? dlf__weighted_sum(out, w) : NAN;
}

DLFDEF int dlf_gradcheck(dlf_graph_fn fn, dlf_tensor **inputs, int n_inputs, void *user,
                         const dlf_gradcheck_cfg *cfg_in, dlf_gradcheck_report *rep)
{
    DLF__NOT_NULL(fn, 0); DLF__NOT_NULL(inputs, 0);
    dlf_gradcheck_cfg cfg;
    dlf_gradcheck_report r;
    dlf_tape tape;
    dlf_tensor *out;
    float *w = NULL;
    int i, j;
    dlf_rng rng;
    memset(&cfg, 0, sizeof cfg);
    if (cfg_in) cfg = *cfg_in;
    if (cfg.eps <= 0) cfg.eps = 1e-2;
    if (cfg.atol <= 0) cfg.atol = 1e-3;
    if (cfg.rtol <= 0) cfg.rtol = 1e-2;
    if (!cfg.seed) cfg.seed = 1;
    memset(&r, 0, sizeof r);
    r.worst_input = -1;
    dlf_tape_init(&tape);
    dlf_tape_set_training(&tape, !cfg.eval_mode);
    dlf_tape_seed(&tape, 0x5eed);
    /* analytic: one forward and one backward seeded with w */
    for (i = 0; i < n_inputs; i++) {
        dlf_tensor_requires_grad(inputs[i]);
        dlf_zero_grad(inputs[i]);
    }
    out = fn(&tape, inputs, user);
    if (!out) { dlf_tape_destroy(&tape); return 0; }
    w = (float *)dlf__malloc((size_t)out->size * sizeof(float) + 1, "gradcheck weights");
    if (!w) { dlf_tape_destroy(&tape); return 0; }
    dlf_rng_seed(&rng, cfg.seed);
    for (j = 0; j < out->size; j++) w[j] = dlf_rng_uniform(&rng) * 2.0f - 1.0f;
    dlf_backward_seed(&tape, out, w);
    /* numeric: perturb one element at a time, no tape recording */
    dlf_tape_set_grad(&tape, 0);
    for (i = 0; i < n_inputs; i++) {
        dlf_tensor *x = inputs[i];
        double in_abs = 0.0, in_rel = 0.0;
        for (j = 0; j < x->size; j++) {
            float x0 = x->data[j];
            float xp = (float)(x0 + cfg.eps), xm = (float)(x0 - cfg.eps);
            double hp = (double)xp - x0, hm = (double)x0 - xm;
            float xp2 = (float)(x0 + cfg.eps / 2), xm2 = (float)(x0 - cfg.eps / 2);
            double l0, lp, lm, lp2, lm2, right, left, num, num2, ana, err, rel;
            l0 = dlf__eval_graph(fn, &tape, inputs, user, w);
            x->data[j] = xp;
            lp = dlf__eval_graph(fn, &tape, inputs, user, w);
            x->data[j] = xm;
            lm = dlf__eval_graph(fn, &tape, inputs, user, w);
            x->data[j] = xp2;
            lp2 = dlf__eval_graph(fn, &tape, inputs, user, w);
            x->data[j] = xm2;
            lm2 = dlf__eval_graph(fn, &tape, inputs, user, w);
            x->data[j] = x0;
            right = (lp - l0) / hp;
            left = (l0 - lm) / hm;
            num = (lp - lm) / (hp + hm);
            num2 = (lp2 - lm2) / ((double)xp2 - (double)xm2);
            ana = x->grad[j];
            /* A kink inside [x-h, x+h] (relu at 0, a near-tie in max) shows in one of
               two ways: the one-sided slopes disagree by far more than curvature
               explains, or the central difference changes when h is halved (for a
               smooth function it changes by O(h^2) only). Such points are skipped. */
            if ((fabs(right - left) > 0.5 * (fabs(right) + fabs(left)) + cfg.atol) ||
                fabs(num - num2) > cfg.atol + cfg.rtol * (fabs(num) > fabs(num2) ? fabs(num) : fabs(num2))) {
                r.n_kinks++;
                continue;
            }
            err = fabs(num - ana);
            rel = err / (fabs(num) > fabs(ana) ? (fabs(num) > 1e-8 ? fabs(num) : 1e-8)
                                               : (fabs(ana) > 1e-8 ? fabs(ana) : 1e-8));
            r.n_checked++;
            if (!(err <= cfg.atol + cfg.rtol * fabs(num))) r.n_failed++;
            if (err > in_abs) in_abs = err;
            if (fabs(num) <= cfg.atol) rel = 0.0;  /* relative error means nothing near 0 */
            if (rel > in_rel) in_rel = rel;
            if (err > r.max_abs_err || r.worst_input < 0) {
                r.max_abs_err = err;
                r.worst_input = i;
                r.worst_index = j;
            }
            if (rel > r.max_rel_err) r.max_rel_err = rel;
        }
#ifndef DLF_NO_STDIO
        if (cfg.verbose)
            printf("  gradcheck input %d (%d elements): max abs err %.3g, max rel err %.3g\n",
                   i, x->size, in_abs, in_rel);
#endif
    }
    DLF_FREE(w);
    dlf_tape_destroy(&tape);
    if (rep) *rep = r;
    return r.n_failed == 0 && r.n_checked > 0;
}

// >>stage6_layers (implementation) ------------------------------------------------

/* A layer's forward writes its bias in place into the output y (no extra pass over
   memory) and records a separate DLF_OP_BIAS node on the same y: y[o][k][i] += b[k].
   Both nodes only READ y's gradient in backward, so sharing y is safe.
   (outer, K, inner) = (N, out, 1) for linear, (N, K, P*Q) for conv. */
static void dlf__bias_add(dlf_tape *t, dlf_tensor *y, dlf_tensor *b, int outer, int K, int inner)
{
    dlf_node *nd;
    int ok;
    DLF__OMP(omp parallel for if (y->size > DLF__PAR_MIN))
    for (ok = 0; ok < outer * K; ok++) {
        float b_k = b->data[ok % K];
        float *y_ok = y->data + (size_t)ok * inner;
        int i;
        for (i = 0; i < inner; i++) y_ok[i] += b_k;
    }
    nd = dlf__record(t, DLF_OP_BIAS, y, b, NULL);
    if (nd) {
        nd->iarg[0] = outer;
        nd->iarg[1] = K;
        nd->iarg[2] = inner;
    }
}

/* Backward of the bias: in the forward pass this was y[o][k][i] += b[k], so
     db[k] += sum_{o,i} g[o][k][i]
   summed in double in (o, i) order. DLF__BIAS_KB channels are summed side by side,
   one accumulator each: independent chains of additions that the processor overlaps
   (one channel alone waits on every addition's latency). Threads split the blocks of
   channels, so each sum's order never changes. */
#define DLF__BIAS_KB 4
static void dlf__bias_backward(dlf_tape *t, dlf_node *nd)
{
    float *gb = dlf__grad(t, nd->in[0]);
    const float *g = nd->out->grad;
    int outer = nd->iarg[0], K = nd->iarg[1], inner = nd->iarg[2];
    int blocks = (K + DLF__BIAS_KB - 1) / DLF__BIAS_KB, kb;
    if (!gb) return;
    DLF__OMP(omp parallel for if (nd->out->size > DLF__PAR_MIN))
    for (kb = 0; kb < blocks; kb++) {
        int k0 = kb * DLF__BIAS_KB, k1 = k0 + DLF__BIAS_KB < K ? k0 + DLF__BIAS_KB : K;
        double acc[DLF__BIAS_KB] = {0.0};     /* acc[k - k0]: channel k's running sum */
        int o, k, i;
        for (o = 0; o < outer; o++)
            for (k = k0; k < k1; k++) {
                const float *g_ok = g + ((size_t)o * K + k) * inner;
                double acc_k = acc[k - k0];
                for (i = 0; i < inner; i++) acc_k += g_ok[i];
                acc[k - k0] = acc_k;
            }
        for (k = k0; k < k1; k++) gb[k] += (float)acc[k - k0];
    }
}

// linear

/* y (N,out) = x (N,in) W^T + b: a matmul with W transposed (PyTorch stores W as
   (out,in)), then the bias. Backward is the matmul's and the bias's:
     dx = g W,   dW = g^T x,   db = sum over rows of g. */
DLFDEF dlf_tensor *dlf_linear(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b)
{
    DLF__OP(t); DLF__INPUT(t, x); DLF__INPUT(t, w);
    dlf_tensor *y;
    if (!dlf__live(t, "dlf_linear", x, w, b)) return NULL;
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1] ||
        (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))) {
        char sx[64], sw[64], sb[64];
        dlf__panic("dlf_linear: want x (N, in), w (out, in), b (out,) or NULL; got x %s, w %s, b %s",
                   dlf_shape_str(x, sx, sizeof sx), dlf_shape_str(w, sw, sizeof sw),
                   dlf_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    y = dlf_matmul_ex(t, x, w, 0, 1);
    if (y && b) dlf__bias_add(t, y, b, y->shape[0], y->shape[1], 1);
    return y;
}

// conv2d

/* The geometry of a convolution: stride, padding and dilation along h and w. The simple
   calls (dlf_conv2d ...) have sh = sw = stride, ph = pw = pad, dh = dw = 1. */
typedef struct dlf__conv_geo { int sh, sw, ph, pw, dh, dw; } dlf__conv_geo;

static dlf__conv_geo dlf__geo_simple(int stride, int pad)
{
    dlf__conv_geo g;
    g.sh = g.sw = stride;
    g.ph = g.pw = pad;
    g.dh = g.dw = 1;
    return g;
}

/* Output size along one axis: (in + 2 pad - d (k - 1) - 1) / s + 1 (PyTorch's formula;
   with d = 1 it is (in + 2 pad - k) / s + 1). */
static int dlf__conv_out(int in, int k, int s, int pad, int d)
{
    return (in + 2 * pad - d * (k - 1) - 1) / s + 1;
}

/* Check the shapes of a convolution and compute P, Q; a panic naming all of them.
   w is (K, C/groups, R, S). */
static int dlf__conv_check(const char *op, const dlf_tensor *x, const dlf_tensor *w, const dlf_tensor *b,
                           const dlf__conv_geo *g, int groups, int *P, int *Q)
{
    const char *why = NULL;
    if (!x || !w) why = !x ? "x is NULL" : "w is NULL";
    else if (x->ndim != 4 || w->ndim != 4) why = "want x (N, C, H, W) and w (K, C/groups, R, S)";
    else if (groups < 1 || x->shape[1] % groups || w->shape[0] % groups)
        why = "want groups >= 1 dividing both C and K";
    else if (x->shape[1] / groups != w->shape[1])
        why = groups == 1 ? "x's channels C differ from w's (dim 1)" : "w's dim 1 must be C/groups";
    else if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) why = "want b (K,) or NULL";
    else if (g->sh < 1 || g->sw < 1 || g->ph < 0 || g->pw < 0 || g->dh < 1 || g->dw < 1)
        why = "want stride >= 1, pad >= 0 and dilation >= 1";
    else if (x->shape[2] + 2 * g->ph < g->dh * (w->shape[2] - 1) + 1 ||
             x->shape[3] + 2 * g->pw < g->dw * (w->shape[3] - 1) + 1)
        why = "the (dilated) kernel is larger than the padded input";
    if (why) {
        char sx[64], sw[64], sb[64];
        dlf__panic("%s: %s; got x %s, w %s, b %s, stride (%d, %d), pad (%d, %d), dilation (%d, %d), groups %d",
                   op, why, dlf_shape_str(x, sx, sizeof sx), dlf_shape_str(w, sw, sizeof sw),
                   dlf_shape_str(b, sb, sizeof sb), g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, groups);
        return 0;
    }
    *P = dlf__conv_out(x->shape[2], w->shape[2], g->sh, g->ph, g->dh);
    *Q = dlf__conv_out(x->shape[3], w->shape[3], g->sw, g->pw, g->dw);
    return 1;
}

/* Where kernel tap (r, s) reads for the output pixels i0 .. i0+len-1 (pixel i is
   (p, q) = (i / Q, i % Q)):
     off[i - i0] = h*W + w     (h = p*sh - ph + r*dh,  w = q*sw - pw + s*dw)
   the pixel's index inside one (H, W) plane, or -1 where it falls in the padding.
   It is the same for every image n and channel c, so im2col and col2im run ONE
   loop over P*Q pixels per (row, n) instead of a short loop per output row p
   (Q is 14, 7, 4, 2 in the course CNN, where the per-p overhead dominated). */
#define DLF__CONV_CHUNK 256   /* pixels per offset table: 1 KB on the stack */
static void dlf__tap_offsets(int H, int W, int Q, const dlf__conv_geo *g, int r, int s,
                             int i0, int len, int *off)
{
    /* copied out: off may alias g's ints, so the loop would reload them */
    int i, sh = g->sh, sw = g->sw, h_r = r * g->dh - g->ph, w_s = s * g->dw - g->pw;
    for (i = 0; i < len; i++) {
        int p = (i0 + i) / Q, q = (i0 + i) % Q;
        int h = p * sh + h_r, w = q * sw + w_s;
        int inside = h >= 0 && h < H && w >= 0 && w < W;
        off[i] = inside ? h * W + w : -1;
    }
}

/* im2col: copy every receptive field of x into a column, so that the convolution
   becomes ONE matrix product  Y (K, N*P*Q) = W (K, C*R*S) @ col (C*R*S, N*P*Q).
     col[(c*R + r)*S + s][(n*P + p)*Q + q] = x[n][c][p*stride - pad + r][q*stride - pad + s]
   (0 where that falls in the padding; with the general geometry h = p*sh - ph + r*dh,
   w = q*sw - pw + s*dw). Threads split the rows: disjoint writes. */
static void dlf__im2col(const float *x, int N, int C, int H, int W, int R, int S, const dlf__conv_geo *g,
                        float *col)
{
    DLF__NOT_NULL(x, ); DLF__NOT_NULL(col, );
    int P = dlf__conv_out(H, R, g->sh, g->ph, g->dh), Q = dlf__conv_out(W, S, g->sw, g->pw, g->dw), PQ = P * Q;
    size_t NPQ = (size_t)N * PQ;
    int row, rows = C * R * S;
    DLF__OMP(omp parallel for if ((size_t)rows * NPQ > DLF__PAR_MIN))
    for (row = 0; row < rows; row++) {
        int c = row / (R * S), r = (row / S) % R, s = row % S;
        float *col_row = col + (size_t)row * NPQ;
        int off[DLF__CONV_CHUNK], i0, n, i;
        for (i0 = 0; i0 < PQ; i0 += DLF__CONV_CHUNK) {
            int len = PQ - i0 < DLF__CONV_CHUNK ? PQ - i0 : DLF__CONV_CHUNK;
            dlf__tap_offsets(H, W, Q, g, r, s, i0, len, off);
            for (n = 0; n < N; n++) {
                const float *x_nc = x + ((size_t)n * C + c) * H * W;
                float *dst = col_row + (size_t)n * PQ + i0;
                for (i = 0; i < len; i++) dst[i] = off[i] >= 0 ? x_nc[off[i]] : 0.0f;
            }
        }
    }
}

/* col2im, the adjoint of im2col: every column entry is added back into the pixel it
   was copied from (overlapping windows add up). x += col2im(col). Threads split the
   channels c; every x[n][c][h][w] gets its terms in a fixed (r, s) order (for one
   tap (r, s) the pixels (p, q) read distinct h*W + w). */
static void dlf__col2im(const float *col, int N, int C, int H, int W, int R, int S, const dlf__conv_geo *g,
                        float *x)
{
    DLF__NOT_NULL(col, ); DLF__NOT_NULL(x, );
    int P = dlf__conv_out(H, R, g->sh, g->ph, g->dh), Q = dlf__conv_out(W, S, g->sw, g->pw, g->dw), PQ = P * Q;
    size_t NPQ = (size_t)N * PQ;
    int c;
    DLF__OMP(omp parallel for if ((size_t)C * R * S * NPQ > DLF__PAR_MIN))
    for (c = 0; c < C; c++) {
        int off[DLF__CONV_CHUNK], r, s, i0, n, i;
        for (r = 0; r < R; r++)
        for (s = 0; s < S; s++) {
            const float *col_row = col + (size_t)((c * R + r) * S + s) * NPQ;
            for (i0 = 0; i0 < PQ; i0 += DLF__CONV_CHUNK) {
                int len = PQ - i0 < DLF__CONV_CHUNK ? PQ - i0 : DLF__CONV_CHUNK;
                dlf__tap_offsets(H, W, Q, g, r, s, i0, len, off);
                for (n = 0; n < N; n++) {
                    float *x_nc = x + ((size_t)n * C + c) * H * W;
                    const float *src = col_row + (size_t)n * PQ + i0;
                    for (i = 0; i < len; i++)
                        if (off[i] >= 0) x_nc[off[i]] += src[i];
                }
            }
        }
    }
}

DLFDEF void dlf_im2col(const float *x, int N, int C, int H, int W, int R, int S, int stride, int pad,
                       float *col)
{
    dlf__conv_geo g = dlf__geo_simple(stride, pad);
    dlf__im2col(x, N, C, H, W, R, S, &g, col);
}

DLFDEF void dlf_col2im(const float *col, int N, int C, int H, int W, int R, int S, int stride, int pad,
                       float *x)
{
    dlf__conv_geo g = dlf__geo_simple(stride, pad);
    dlf__col2im(col, N, C, H, W, R, S, &g, x);
}

/* Implicit im2col, the forward's fast path: the same product as
     Y (K, N*P*Q) = W (K, C*R*S) @ col (C*R*S, N*P*Q)
   but the gemm's B panels (KC x NR, see dlf_gemm_fast) are packed straight from x
   through the tap offsets, so col is never written, and each tile is stored straight
   into y (N, K, P*Q), so there is no (K, N, PQ) -> (N, K, PQ) reorder. Column j of col is
   pixel i = j % (P*Q) of image n = j / (P*Q); a panel may span several images, so panels
   stay full even where P*Q is 4. Each panel holds the values dlf__pack_b would copy out
   of im2col's col, the K blocks and the micro-kernel are dlf_gemm_fast's, so every y
   element is the same sum in the same order: bit-identical to im2col + dlf_gemm, for
   any thread count. Work items are chunks of DLF__CONV_NC columns, split among threads. */
#define DLF__CONV_NC 512   /* columns per work item: a KC x NC packed block is 512 KB */

/* Pack rows p0..p0+kc-1, columns j0..j0+nr-1 of col without making col:
     dst[p*NR + c] = col[row][j] = x[n][c_in][off[tap][i]]   (row = c_in*R*S + tap,
                                                              j = j0 + c = n*P*Q + i)
   0 in the padding (off -1) and in the columns past nr. off is (R*S, P*Q), from
   dlf__tap_offsets. A panel may span images: it is packed one image's run of pixels
   (a segment, columns c0 .. c1-1) at a time. */
static void dlf__pack_b_image(const float *x, int C, int HW, int RS, int PQ, const int *off,
                              int p0, int kc, int j0, int nr, float *dst)
{
    int p, c, c0, c1;
    for (c0 = 0; c0 < nr; c0 = c1) {
        int n = (j0 + c0) / PQ, i0 = (j0 + c0) % PQ;       /* the segment starts at pixel i0 of image n */
        const float *x_n = x + (size_t)n * C * HW;
        c1 = c0 + (PQ - i0) < nr ? c0 + (PQ - i0) : nr;
        for (p = 0; p < kc; p++) {
            int row = p0 + p;
            const float *x_nc = x_n + (size_t)(row / RS) * HW;
            const int *off_seg = off + (size_t)(row % RS) * PQ + i0 - c0;
            float *d = dst + p * DLF__NR;
            if (c1 - c0 == DLF__NR) {                          /* whole panel: a fixed count, vectorized */
                for (c = 0; c < DLF__NR; c++) d[c] = off_seg[c] >= 0 ? x_nc[off_seg[c]] : 0.0f;
                continue;
            }
            for (c = c0; c < c1; c++) d[c] = off_seg[c] >= 0 ? x_nc[off_seg[c]] : 0.0f;
        }
    }
    for (p = 0; p < kc; p++)
        for (c = nr; c < DLF__NR; c++) dst[p * DLF__NR + c] = 0.0f;
}

/* dlf__tile for the implicit path: ab = A-panel x B-panel (rows k0 .. k0+mr-1, columns
   j0 .. j0+nr-1 of Y), then each column j = n*P*Q + i goes to y[n][k][i], one image's
   segment at a time: y = ab on the first K block, y += ab on the others. */
static void dlf__tile_nchw(int kern, int kc, const float *a, const float *b, float *y, int K, int PQ,
                           int k0, int mr, int j0, int nr, int add)
{
    float ab[DLF__MR * DLF__NR];
    int r, c, c0, c1;
    dlf__kernel_run(kern, kc, a, DLF__MR, 1, b, ab, DLF__NR, 0);
    for (c0 = 0; c0 < nr; c0 = c1) {
        int n = (j0 + c0) / PQ, i0 = (j0 + c0) % PQ;
        float *y_seg = y + ((size_t)n * K + k0) * PQ + i0 - c0;   /* y_seg[r*PQ + c] = y[n][k0+r][i] */
        c1 = c0 + (PQ - i0) < nr ? c0 + (PQ - i0) : nr;
        for (r = 0; r < mr; r++) {
            float *y_r = y_seg + (size_t)r * PQ;
            const float *ab_r = ab + r * DLF__NR;
            if (c1 - c0 == DLF__NR) {                              /* whole panel: a fixed count */
                if (add)
                    for (c = 0; c < DLF__NR; c++) y_r[c] += ab_r[c];
                else
                    for (c = 0; c < DLF__NR; c++) y_r[c] = ab_r[c];
                continue;
            }
            if (add)
                for (c = c0; c < c1; c++) y_r[c] += ab_r[c];
            else
                for (c = c0; c < c1; c++) y_r[c] = ab_r[c];
        }
    }
}

/* Floats of workspace dlf__conv2d_implicit needs: W packed in MR-row panels (K rounded
   up to MR, C*R*S), the tap offsets (R*S, P*Q ints), one KC x DLF__CONV_NC B block per
   processor (as dlf_gemm_fast_scratch, so dlf_set_threads can't outgrow it), alignment. */
static size_t dlf__conv2d_implicit_scratch(int K, int CRS, int RS, int PQ)
{
    size_t k_pad = (size_t)(K + DLF__MR - 1) / DLF__MR * DLF__MR;
    size_t off_floats = ((size_t)RS * PQ * sizeof(int) + sizeof(float) - 1) / sizeof(float);
    size_t kc = (size_t)(CRS < DLF__KC ? CRS : DLF__KC);
    return k_pad * CRS + off_floats + (size_t)dlf__gemm_max_threads() * kc * DLF__CONV_NC + 32;
}

/* y (N, K, P*Q) = conv(x (N, C, H, W), w (K, C, R, S)), no bias; work from the scratch above. */
static void dlf__conv2d_implicit(const float *x, int N, int C, int H, int W, const float *w, int K,
                                 int R, int S, const dlf__conv_geo *g, int P, int Q, float *y, float *work)
{
    int CRS = C * R * S, RS = R * S, PQ = P * Q, HW = H * W, NPQ = N * P * Q;
    int k_pad = (K + DLF__MR - 1) / DLF__MR * DLF__MR;
    int items = (NPQ + DLF__CONV_NC - 1) / DLF__CONV_NC;
    int nt = dlf__gemm_threads(K, NPQ, CRS), kc_max = CRS < DLF__KC ? CRS : DLF__KC, kern = dlf__kernel();
    float *packed_w = work;                                  /* K blocks of (k_pad, kc) */
    int *off = (int *)(packed_w + (size_t)k_pad * CRS);      /* (R*S, P*Q) */
    float *packed_b_all = packed_w + (size_t)k_pad * CRS
                          + ((size_t)RS * PQ * sizeof(int) + sizeof(float) - 1) / sizeof(float);
    int pc, ir, tap;
    (void)nt;                                                /* unused without OpenMP */
    packed_b_all = (float *)(((uintptr_t)packed_b_all + 63) & ~(uintptr_t)63);
    for (pc = 0; pc < CRS; pc += DLF__KC) {                  /* W's K block pc starts at pc*k_pad */
        int kc = CRS - pc < DLF__KC ? CRS - pc : DLF__KC;
        for (ir = 0; ir < K; ir += DLF__MR) {
            int mr = K - ir < DLF__MR ? K - ir : DLF__MR;
            dlf__pack_a(0, K, CRS, w, ir, mr, pc, kc, packed_w + (size_t)pc * k_pad + (size_t)ir * kc);
        }
    }
    for (tap = 0; tap < RS; tap++)
        dlf__tap_offsets(H, W, Q, g, tap / S, tap % S, 0, PQ, off + (size_t)tap * PQ);
    DLF__OMP(omp parallel num_threads(nt))
    {
        int tid = 0, it;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        DLF__OMP(omp for schedule(dynamic))
        for (it = 0; it < items; it++) {
            float *packed_b = packed_b_all + (size_t)tid * kc_max * DLF__CONV_NC;
            int jc = it * DLF__CONV_NC;                          /* columns jc .. jc+nc-1 */
            int nc = NPQ - jc < DLF__CONV_NC ? NPQ - jc : DLF__CONV_NC;
            int n_panels = (nc + DLF__NR - 1) / DLF__NR;
            int p0, jp, r0;
            for (p0 = 0; p0 < CRS; p0 += DLF__KC) {
                int kc = CRS - p0 < DLF__KC ? CRS - p0 : DLF__KC;
                int add = p0 > 0;                                /* first K block sets, the rest add */
                for (jp = 0; jp < n_panels; jp++) {
                    int nr = nc - jp * DLF__NR < DLF__NR ? nc - jp * DLF__NR : DLF__NR;
                    dlf__pack_b_image(x, C, HW, RS, PQ, off, p0, kc, jc + jp * DLF__NR, nr,
                                      packed_b + (size_t)jp * DLF__NR * kc);
                }
                for (jp = 0; jp < n_panels; jp++) {
                    int nr = nc - jp * DLF__NR < DLF__NR ? nc - jp * DLF__NR : DLF__NR;
                    const float *b_panel = packed_b + (size_t)jp * DLF__NR * kc;
                    for (r0 = 0; r0 < K; r0 += DLF__MR) {
                        int mr = K - r0 < DLF__MR ? K - r0 : DLF__MR;
                        dlf__tile_nchw(kern, kc, packed_w + (size_t)p0 * k_pad + (size_t)r0 * kc, b_panel,
                                       y, K, PQ, r0, mr, jc + jp * DLF__NR, nr, add);
                    }
                }
            }
        }
    }
}

/* The weight gradient without col: the product of dlf__conv2d_backward
     dW^T (C*R*S, K) = col (C*R*S, N*P*Q) @ dY^T (N*P*Q, K)
   with col's A panels packed straight from x through the tap offsets (as the forward's
   B panels are) and dY^T's B panels straight from dY (N, K, P*Q), so neither col nor the
   (N, K, PQ) -> (K, N, PQ) reorder is made. The sum runs along N*P*Q, the long axis, so
   that is what threads share: it is cut into slices of a fixed number of K blocks (set by
   the shape alone), each slice sums into its own (C*R*S, K) partial, and the partials are
   added in slice order: the same bits whatever the thread count. */
#define DLF__DW_SLICE 8   /* K blocks (of DLF__KC columns) per slice */

/* A panel: rows crs0 .. crs0+mr-1 of col, columns p0 .. p0+kc-1: dst[p*MR + r]. */
static void dlf__pack_a_image(const float *x, int C, int HW, int RS, int PQ, const int *off,
                              int crs0, int mr, int p0, int kc, float *dst)
{
    int p, r, c0, c1;
    for (c0 = 0; c0 < kc; c0 = c1) {                      /* one image's run of pixels at a time */
        int n = (p0 + c0) / PQ, i0 = (p0 + c0) % PQ;
        c1 = c0 + (PQ - i0) < kc ? c0 + (PQ - i0) : kc;
        if (mr == DLF__MR) {       /* a whole panel: the MR rows side by side, writes in order */
            const float *x_r[DLF__MR];
            const int *off_r[DLF__MR];
            for (r = 0; r < DLF__MR; r++) {
                int crs = crs0 + r;
                x_r[r] = x + ((size_t)n * C + crs / RS) * HW;
                off_r[r] = off + (size_t)(crs % RS) * PQ + i0;
            }
            for (p = c0; p < c1; p++) {
                float *d = dst + (size_t)p * DLF__MR;
                int i = p - c0;
                for (r = 0; r < DLF__MR; r++) d[r] = off_r[r][i] >= 0 ? x_r[r][off_r[r][i]] : 0.0f;
            }
            continue;
        }
        for (r = 0; r < DLF__MR; r++) {
            float *d = dst + r;
            if (r < mr) {
                int crs = crs0 + r;
                const float *x_nc = x + ((size_t)n * C + crs / RS) * HW;
                const int *off_seg = off + (size_t)(crs % RS) * PQ + i0;
                for (p = c0; p < c1; p++) d[p * DLF__MR] = off_seg[p - c0] >= 0 ? x_nc[off_seg[p - c0]] : 0.0f;
            } else {
                for (p = c0; p < c1; p++) d[p * DLF__MR] = 0.0f;
            }
        }
    }
}

/* B panel: rows p0 .. p0+kc-1 of dY^T (pixels), columns k0 .. k0+nr-1: dst[p*NR + c]. */
static void dlf__pack_b_dy(const float *dy, int K, int PQ, int p0, int kc, int k0, int nr, float *dst)
{
    int p, c, c0, c1;
    for (c0 = 0; c0 < kc; c0 = c1) {
        int n = (p0 + c0) / PQ, i0 = (p0 + c0) % PQ;
        c1 = c0 + (PQ - i0) < kc ? c0 + (PQ - i0) : kc;
        for (c = 0; c < DLF__NR; c++) {
            if (c < nr) {
                const float *dy_nk = dy + ((size_t)n * K + k0 + c) * PQ + i0;
                for (p = c0; p < c1; p++) dst[p * DLF__NR + c] = dy_nk[p - c0];
            } else {
                for (p = c0; p < c1; p++) dst[p * DLF__NR + c] = 0.0f;
            }
        }
    }
}

/* The other orientation, dW (K, C*R*S) = dY (K, N*P*Q) @ col^T: A panels are rows of dY
   (k0 .. k0+mr-1, pixels p0 ..), B panels columns of col^T, i.e. rows crs0 .. crs0+nr-1 of
   col gathered from x: dst[p*NR + c] = x[n][crs/RS][off[crs%RS][i]]. */
static void dlf__pack_a_dy(const float *dy, int K, int PQ, int k0, int mr, int p0, int kc, float *dst)
{
    int p, r, c0, c1;
    for (c0 = 0; c0 < kc; c0 = c1) {
        int n = (p0 + c0) / PQ, i0 = (p0 + c0) % PQ;
        c1 = c0 + (PQ - i0) < kc ? c0 + (PQ - i0) : kc;
        for (r = 0; r < DLF__MR; r++) {
            const float *dy_nk = dy + ((size_t)n * K + k0 + (r < mr ? r : 0)) * PQ + i0;
            for (p = c0; p < c1; p++) dst[p * DLF__MR + r] = r < mr ? dy_nk[p - c0] : 0.0f;
        }
    }
}

static void dlf__pack_b_col_t(const float *x, int C, int HW, int RS, int PQ, const int *off,
                              int p0, int kc, int crs0, int nr, float *dst)
{
    int p, c, c0, c1;
    for (c0 = 0; c0 < kc; c0 = c1) {
        int n = (p0 + c0) / PQ, i0 = (p0 + c0) % PQ;
        c1 = c0 + (PQ - i0) < kc ? c0 + (PQ - i0) : kc;
        const float *x_c[DLF__NR];   /* column c: its channel's plane and its tap's offsets */
        const int *off_c[DLF__NR];
        for (c = 0; c < nr; c++) {
            x_c[c] = x + ((size_t)n * C + (crs0 + c) / RS) * HW;
            off_c[c] = off + (size_t)((crs0 + c) % RS) * PQ + i0;
        }
        for (p = c0; p < c1; p++) {  /* a row of the panel at a time: the writes run in order */
            float *d = dst + (size_t)p * DLF__NR;
            int i = p - c0;
            for (c = 0; c < nr; c++) d[c] = off_c[c][i] >= 0 ? x_c[c][off_c[c][i]] : 0.0f;
            for (; c < DLF__NR; c++) d[c] = 0.0f;
        }
    }
}

/* Which way round: the one whose 6 x 32 tiles waste less on padding. The course CNN's
   first layer (K = 8, C*R*S = 25) fills 200 of 960 tile slots one way, 200 of 384 the other. */
static int dlf__conv2d_dw_kmajor(int K, int CRS)
{
    long rows_crs = (long)(CRS + DLF__MR - 1) / DLF__MR * DLF__MR, cols_k = (long)(K + DLF__NR - 1) / DLF__NR * DLF__NR;
    long rows_k = (long)(K + DLF__MR - 1) / DLF__MR * DLF__MR, cols_crs = (long)(CRS + DLF__NR - 1) / DLF__NR * DLF__NR;
    return rows_k * cols_crs < rows_crs * cols_k;
}

/* Floats of workspace: the offsets, per slice a (C*R*S, K) partial, per processor an A
   block (all rows, rounded up to MR) and B panels (rounded up to NR), alignment. */
static size_t dlf__conv2d_dw_scratch(int K, int CRS, int RS, int PQ, size_t NPQ)
{
    size_t slice_cols = (size_t)DLF__DW_SLICE * DLF__KC;
    size_t slices = (NPQ + slice_cols - 1) / slice_cols;
    size_t off_floats = ((size_t)RS * PQ * sizeof(int) + sizeof(float) - 1) / sizeof(float);
    size_t a = (size_t)(CRS + DLF__MR - 1) / DLF__MR * DLF__MR + (size_t)(K + DLF__NR - 1) / DLF__NR * DLF__NR;
    size_t b = (size_t)(K + DLF__MR - 1) / DLF__MR * DLF__MR + (size_t)(CRS + DLF__NR - 1) / DLF__NR * DLF__NR;
    return off_floats + slices * (size_t)CRS * K + (size_t)dlf__gemm_max_threads() * (a > b ? a : b) * DLF__KC + 32;
}

/* gw (K, C*R*S) += col @ dY^T transposed, or dY @ col^T (see dlf__conv2d_dw_kmajor), for
   x (N, C, H, W) and dy (N, K, P*Q). */
static void dlf__conv2d_dw_implicit(const float *x, const float *dy, int N, int C, int H, int W, int K,
                                    int R, int S, const dlf__conv_geo *g, int P, int Q, float *gw, float *work)
{
    int CRS = C * R * S, RS = R * S, PQ = P * Q, HW = H * W, tap, kern = dlf__kernel();
    int kmajor = dlf__conv2d_dw_kmajor(K, CRS);
    int rows = kmajor ? K : CRS, cols = kmajor ? CRS : K;          /* the product's M and N */
    int rows_pad = (rows + DLF__MR - 1) / DLF__MR * DLF__MR, cols_pad = (cols + DLF__NR - 1) / DLF__NR * DLF__NR;
    size_t NPQ = (size_t)N * PQ, slice_cols = (size_t)DLF__DW_SLICE * DLF__KC;
    int slices = (int)((NPQ + slice_cols - 1) / slice_cols), sl;
    int nt = dlf__gemm_threads(CRS, K, (int)NPQ);
    int *off = (int *)work;
    float *partial = work + ((size_t)RS * PQ * sizeof(int) + sizeof(float) - 1) / sizeof(float);
    float *pack_all = partial + (size_t)slices * CRS * K;
    size_t n_out = (size_t)CRS * K;
    int i;
    (void)nt;
    pack_all = (float *)(((uintptr_t)pack_all + 63) & ~(uintptr_t)63);
    for (tap = 0; tap < RS; tap++)
        dlf__tap_offsets(H, W, Q, g, tap / S, tap % S, 0, PQ, off + (size_t)tap * PQ);
    if (nt > slices) nt = slices;
    DLF__OMP(omp parallel num_threads(nt))
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        DLF__OMP(omp for schedule(dynamic))
        for (sl = 0; sl < slices; sl++) {
            float *pa = pack_all + (size_t)tid * (rows_pad + cols_pad) * DLF__KC, *pb = pa + (size_t)rows_pad * DLF__KC;
            float *c_s = partial + (size_t)sl * n_out;              /* (rows, cols) */
            size_t p_end = (size_t)(sl + 1) * slice_cols < NPQ ? (size_t)(sl + 1) * slice_cols : NPQ;
            size_t p0;
            for (p0 = (size_t)sl * slice_cols; p0 < p_end; p0 += DLF__KC) {
                int kc = (int)(p_end - p0 < DLF__KC ? p_end - p0 : DLF__KC), add = p0 > (size_t)sl * slice_cols;
                int jp, ir;
                for (jp = 0; jp < cols_pad / DLF__NR; jp++) {
                    int nr = cols - jp * DLF__NR < DLF__NR ? cols - jp * DLF__NR : DLF__NR;
                    float *d = pb + (size_t)jp * DLF__NR * kc;
                    if (kmajor) dlf__pack_b_col_t(x, C, HW, RS, PQ, off, (int)p0, kc, jp * DLF__NR, nr, d);
                    else        dlf__pack_b_dy(dy, K, PQ, (int)p0, kc, jp * DLF__NR, nr, d);
                }
                for (ir = 0; ir < rows; ir += DLF__MR) {
                    int mr = rows - ir < DLF__MR ? rows - ir : DLF__MR;
                    float *d = pa + (size_t)ir * kc;
                    if (kmajor) dlf__pack_a_dy(dy, K, PQ, ir, mr, (int)p0, kc, d);
                    else        dlf__pack_a_image(x, C, HW, RS, PQ, off, ir, mr, (int)p0, kc, d);
                    for (jp = 0; jp < cols_pad / DLF__NR; jp++) {
                        int nr = cols - jp * DLF__NR < DLF__NR ? cols - jp * DLF__NR : DLF__NR;
                        dlf__tile(kern, kc, d, DLF__MR, 1, pb + (size_t)jp * DLF__NR * kc,
                                  c_s + (size_t)ir * cols + jp * DLF__NR, cols, mr, nr, add);
                    }
                }
            }
        }
    }
    for (i = 0; i < (int)n_out; i++) {                    /* the partials in slice order, into gw */
        float sum = partial[i];
        int k = kmajor ? i / CRS : i % K, crs = kmajor ? i % CRS : i / K;
        for (sl = 1; sl < slices; sl++) sum += partial[(size_t)sl * n_out + i];
        gw[(size_t)k * CRS + crs] += sum;
    }
}

/* The convolution as one matrix product. The readable way (dlf_conv2d_im2col): when w
   will get a gradient, backward's dW = dY @ col^T needs col, so it is made: im2col over
   the whole batch into the arena (node aux), one big gemm
     Y (K, N*P*Q) = W (K, C*R*S) @ col (C*R*S, N*P*Q)
   in the tape's scratch workspace, then the reorder (K, N, PQ) -> (N, K, PQ). The fast
   way (dlf_conv2d) never makes col: dlf__conv2d_implicit packs the same product's B
   panels straight from x and writes y in NCHW, bit-identical to the im2col forward, and
   backward's dlf__conv2d_dw_implicit packs col's panels from x again for dW. col is 9x
   the input for a 3x3 kernel; the forward alone measured about a third faster. */
/* A copy of the channels c0 .. c0+Cs-1 of every image of a (N, C, HW) array, into the
   contiguous (N, Cs, HW) dst: one group's slice of x (or of y's gradient). */
static void dlf__gather_channels(const float *src, int N, int C, size_t HW, int c0, int Cs, float *dst)
{
    int n;
    for (n = 0; n < N; n++)
        memcpy(dst + (size_t)n * Cs * HW, src + ((size_t)n * C + c0) * HW, (size_t)Cs * HW * sizeof(float));
}

/* groups > 1: group gi is a convolution of its own, input channels gi*Cg .. (Cg = C/groups)
   with filters gi*Kg .. (Kg = K/groups, w's rows gi*Kg ..: contiguous), so
     y[n][gi*Kg + k] = sum_{c < Cg, r, s} w[gi*Kg + k][c][r][s] * x[n][gi*Cg + c][h][w]
   Each group runs through the implicit path on a contiguous copy of its slice of x and
   its output is copied into its channels of y: the same gemm, once per group. */
static int dlf__conv2d_grouped(dlf_tape *t, const float *x, const float *w, int N, int C, int H, int W, int K,
                               int R, int S, const dlf__conv_geo *g, int groups, int P, int Q, float *y)
{
    int Cg = C / groups, Kg = K / groups, gi, n;
    size_t HW = (size_t)H * W, PQ = (size_t)P * Q;
    size_t xg_n = (size_t)N * Cg * HW, yg_n = (size_t)N * Kg * PQ;
    float *xg = dlf__tape_scratch(t, xg_n + yg_n + dlf__conv2d_implicit_scratch(Kg, Cg * R * S, R * S, P * Q));
    float *yg = xg + xg_n, *work = yg + yg_n;
    if (!xg) return 0;
    for (gi = 0; gi < groups; gi++) {
        dlf__gather_channels(x, N, C, HW, gi * Cg, Cg, xg);
        dlf__conv2d_implicit(xg, N, Cg, H, W, w + (size_t)gi * Kg * Cg * R * S, Kg, R, S, g, P, Q, yg, work);
        for (n = 0; n < N; n++)
            memcpy(y + ((size_t)n * K + (size_t)gi * Kg) * PQ, yg + (size_t)n * Kg * PQ, (size_t)Kg * PQ * sizeof(float));
    }
    return 1;
}

/* The node's geometry: DLF_OP_CONV2D keeps stride and pad in iarg[0..1]; DLF_OP_CONV2D_EX
   keeps (sh, sw, ph, pw, dh, dw) in the arena tensor saved[0] and groups in iarg[0]. */
static void dlf__conv_node_geo(const dlf_node *nd, dlf__conv_geo *g, int *groups)
{
    if (nd->op == DLF_OP_CONV2D) {
        *g = dlf__geo_simple(nd->iarg[0], nd->iarg[1]);
        *groups = 1;
    } else {
        const float *v = nd->saved[0]->data;
        g->sh = (int)v[0]; g->sw = (int)v[1]; g->ph = (int)v[2]; g->pw = (int)v[3]; g->dh = (int)v[4]; g->dw = (int)v[5];
        *groups = nd->iarg[0];
    }
}

#ifdef DLF_CUDA
/* What dlf_cuda.cu's convolution covers: one stride and one pad for both axes, no
   dilation, one group; the im2col reference stays on the CPU (it is the reference). */
static int dlf__conv_on_gpu(const dlf__conv_geo *g, int groups, int use_col)
{
    return !use_col && groups == 1 && g->sh == g->sw && g->ph == g->pw && g->dh == 1 && g->dw == 1;
}
#endif

static dlf_tensor *dlf__conv2d(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, const dlf__conv_geo *g,
                               int groups, int use_col, dlf_op op, const char *name)
{
    int N, C, H, W, K, R, S, P, Q, CRS, shape[4], cshape[2], nk, six = 6;
    size_t PQ, NPQ;
    dlf_tensor *y, *col = NULL, *geo = NULL;
    float *ybuf, *work;
    dlf_node *nd;
    if (!t) {
        dlf__panic("%s: t is NULL", name);
        return NULL;
    }
    if (!dlf__live(t, name, x, w, b)) return NULL;
    if (!dlf__conv_check(name, x, w, b, g, groups, &P, &Q)) return NULL;
    N = x->shape[0]; C = x->shape[1]; H = x->shape[2]; W = x->shape[3];
    K = w->shape[0]; R = w->shape[2]; S = w->shape[3];
    CRS = C * R * S;
    PQ = (size_t)P * Q;
    NPQ = (size_t)N * PQ;
    shape[0] = N; shape[1] = K; shape[2] = P; shape[3] = Q;
    cshape[0] = CRS; cshape[1] = N * P * Q;
    y = dlf__out(t, 4, shape);
    if (!y) return NULL;
    if (op == DLF_OP_CONV2D_EX) {
        if (!(geo = dlf__out(t, 1, &six))) return NULL;
        geo->data[0] = (float)g->sh; geo->data[1] = (float)g->sw; geo->data[2] = (float)g->ph;
        geo->data[3] = (float)g->pw; geo->data[4] = (float)g->dh; geo->data[5] = (float)g->dw;
    }
#ifdef DLF_CUDA
    if (t->cuda && dlf__conv_on_gpu(g, groups, use_col)) {   /* stage 17: on the GPU */
        if (dlf_cuda_conv2d_forward(t->cuda, x, w, g->sh, g->ph, y->data) != DLF_OK) return NULL;
    } else
#endif
    if (groups > 1) {
        if (!dlf__conv2d_grouped(t, x->data, w->data, N, C, H, W, K, R, S, g, groups, P, Q, y->data)) return NULL;
    } else if (use_col && t->grad_enabled && w->requires_grad) {   /* backward's dW reads col */
        col = dlf__out(t, 2, cshape);                   /* (C*R*S, N*P*Q) */
        if (!col) return NULL;
        dlf__im2col(x->data, N, C, H, W, R, S, g, col->data);
        ybuf = dlf__tape_scratch(t, (size_t)K * NPQ + dlf_gemm_fast_scratch(K, (int)NPQ, CRS));
        if (!ybuf) return NULL;
        work = ybuf + (size_t)K * NPQ;                  /* ybuf (K, N*P*Q), then gemm packing */
        dlf_gemm(0, 0, K, (int)NPQ, CRS, w->data, col->data, ybuf, 0, work);
        DLF__OMP(omp parallel for if (y->size > DLF__PAR_MIN))
        for (nk = 0; nk < N * K; nk++) {                /* (K, N, PQ) -> (N, K, PQ) */
            int n = nk / K, k = nk % K;
            memcpy(y->data + (size_t)nk * PQ, ybuf + (size_t)k * NPQ + (size_t)n * PQ, PQ * sizeof(float));
        }
    } else {
        work = dlf__tape_scratch(t, dlf__conv2d_implicit_scratch(K, CRS, R * S, P * Q));
        if (!work) return NULL;
        dlf__conv2d_implicit(x->data, N, C, H, W, w->data, K, R, S, g, P, Q, y->data, work);
    }
    nd = dlf__record(t, op, y, x, w);
    if (nd) {
        if (op == DLF_OP_CONV2D) {
            nd->iarg[0] = g->sh;
            nd->iarg[1] = g->ph;
        } else {
            nd->iarg[0] = groups;
            nd->saved[0] = geo;
        }
        nd->iarg[2] = 0;     /* 0: fast path (col in aux when made, else dW implicit), 1: naive */
        nd->aux = col;
    }
    if (b) dlf__bias_add(t, y, b, N, K, P * Q);
    return y;
}

DLFDEF dlf_tensor *dlf_conv2d(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, int stride, int pad)
{
    DLF__OP(t); DLF__INPUT(t, x); DLF__INPUT(t, w);
    dlf__conv_geo g = dlf__geo_simple(stride, pad);
    return dlf__conv2d(t, x, w, b, &g, 1, 0, DLF_OP_CONV2D, "dlf_conv2d");
}

DLFDEF dlf_tensor *dlf_conv2d_im2col(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, int stride, int pad)
{
    DLF__OP(t); DLF__INPUT(t, x); DLF__INPUT(t, w);
    dlf__conv_geo g = dlf__geo_simple(stride, pad);
    return dlf__conv2d(t, x, w, b, &g, 1, 1, DLF_OP_CONV2D, "dlf_conv2d_im2col");
}

/* A dlf_conv2d_cfg as a geometry and a group count; zeros are the defaults (stride 1,
   pad 0, dilation 1, groups 1), negative values are left for the check to refuse. */
static dlf__conv_geo dlf__geo_of_cfg(const dlf_conv2d_cfg *cfg, int *groups)
{
    dlf__conv_geo g;
    g.sh = cfg->sh ? cfg->sh : 1;
    g.sw = cfg->sw ? cfg->sw : 1;
    g.ph = cfg->ph;
    g.pw = cfg->pw;
    g.dh = cfg->dh ? cfg->dh : 1;
    g.dw = cfg->dw ? cfg->dw : 1;
    *groups = cfg->groups ? cfg->groups : 1;
    return g;
}

/* The general convolution. The common case (one stride, one pad, no dilation, no groups)
   records the same DLF_OP_CONV2D node as dlf_conv2d; everything else a DLF_OP_CONV2D_EX
   node. groups == 1 runs the implicit fast path with the general tap offsets (dilation
   and the separate strides and pads only change where each tap reads); groups > 1 runs
   it once per group on a copy of the group's channels (dlf__conv2d_grouped). */
DLFDEF dlf_tensor *dlf_conv2d_ex(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, const dlf_conv2d_cfg *cfg)
{
    DLF__OP(t);
    dlf__conv_geo g;
    int groups;
    if (!cfg) {
        dlf__panic("dlf_conv2d_ex: cfg is NULL");
        return NULL;
    }
    g = dlf__geo_of_cfg(cfg, &groups);
    if (g.sh == g.sw && g.ph == g.pw && g.dh == 1 && g.dw == 1 && groups == 1)
        return dlf__conv2d(t, x, w, b, &g, 1, 0, DLF_OP_CONV2D, "dlf_conv2d_ex");
    return dlf__conv2d(t, x, w, b, &g, groups, 0, DLF_OP_CONV2D_EX, "dlf_conv2d_ex");
}

/* The reference: seven loops straight from the formula, one output at a time:
     y[n][k][p][q] = sum_{c < Cg, r, s} w[k][c][r][s] * x[n][k/Kg*Cg + c][p*sh - ph + r*dh][q*sw - pw + s*dw]
   (Cg = C/groups input channels and Kg = K/groups filters per group; with the simple
   geometry and one group, the familiar x[n][c][p*stride - pad + r][q*stride - pad + s]). */
static dlf_tensor *dlf__conv2d_naive(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b,
                                     const dlf__conv_geo *g, int groups, dlf_op op, const char *name)
{
    int N, C, H, W, K, R, S, P, Q, Cg, Kg, shape[4], n, k, p, q, c, r, s, six = 6;
    dlf_tensor *y, *geo = NULL;
    dlf_node *nd;
    if (!t) {
        dlf__panic("%s: t is NULL", name);
        return NULL;
    }
    if (!dlf__live(t, name, x, w, b)) return NULL;
    if (!dlf__conv_check(name, x, w, b, g, groups, &P, &Q)) return NULL;
    N = x->shape[0]; C = x->shape[1]; H = x->shape[2]; W = x->shape[3];
    K = w->shape[0]; R = w->shape[2]; S = w->shape[3];
    Cg = C / groups; Kg = K / groups;
    shape[0] = N; shape[1] = K; shape[2] = P; shape[3] = Q;
    y = dlf__out(t, 4, shape);
    if (!y) return NULL;
    if (op == DLF_OP_CONV2D_EX) {
        if (!(geo = dlf__out(t, 1, &six))) return NULL;
        geo->data[0] = (float)g->sh; geo->data[1] = (float)g->sw; geo->data[2] = (float)g->ph;
        geo->data[3] = (float)g->pw; geo->data[4] = (float)g->dh; geo->data[5] = (float)g->dw;
    }
    for (n = 0; n < N; n++)
    for (k = 0; k < K; k++)
    for (p = 0; p < P; p++)
    for (q = 0; q < Q; q++) {
        float acc = 0.0f;
        for (c = 0; c < Cg; c++)
        for (r = 0; r < R; r++)
        for (s = 0; s < S; s++) {
            int h = p * g->sh - g->ph + r * g->dh, ww = q * g->sw - g->pw + s * g->dw;
            int cx = k / Kg * Cg + c;                            /* the channel of x */
            if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
            acc += w->data[((k * Cg + c) * R + r) * S + s] * x->data[(((size_t)n * C + cx) * H + h) * W + ww];
        }
        y->data[(((size_t)n * K + k) * P + p) * Q + q] = acc;
    }
    nd = dlf__record(t, op, y, x, w);
    if (nd) {
        if (op == DLF_OP_CONV2D) {
            nd->iarg[0] = g->sh;
            nd->iarg[1] = g->ph;
        } else {
            nd->iarg[0] = groups;
            nd->saved[0] = geo;
        }
        nd->iarg[2] = 1;
    }
    if (b) dlf__bias_add(t, y, b, N, K, P * Q);
    return y;
}

DLFDEF dlf_tensor *dlf_conv2d_naive(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, int stride, int pad)
{
    DLF__OP(t);
    dlf__conv_geo g = dlf__geo_simple(stride, pad);
    return dlf__conv2d_naive(t, x, w, b, &g, 1, DLF_OP_CONV2D, "dlf_conv2d_naive");
}

DLFDEF dlf_tensor *dlf_conv2d_naive_ex(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b,
                                       const dlf_conv2d_cfg *cfg)
{
    DLF__OP(t);
    dlf__conv_geo g;
    int groups;
    if (!cfg) {
        dlf__panic("dlf_conv2d_naive_ex: cfg is NULL");
        return NULL;
    }
    g = dlf__geo_of_cfg(cfg, &groups);
    return dlf__conv2d_naive(t, x, w, b, &g, groups, DLF_OP_CONV2D_EX, "dlf_conv2d_naive_ex");
}

/* Naive backward: in the forward pass every output did
     y[n][k][p][q] += w[k][c][r][s] * x[n][cx][h][w]     (cx = k/Kg*Cg + c, h = p*sh - ph + r*dh ...)
   so with g = dL/dy[n][k][p][q]:  dx[n][cx][h][w] += g * w[k][c][r][s],
                                   dw[k][c][r][s]  += g * x[n][cx][h][w]. */
static void dlf__conv2d_naive_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *w = nd->in[1], *y = nd->out;
    dlf__conv_geo geo;
    int groups, Cg, Kg;
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int K = w->shape[0], R = w->shape[2], S = w->shape[3], P = y->shape[2], Q = y->shape[3];
    float *gx = dlf__grad(t, x), *gw = dlf__grad(t, w);
    int n, k, p, q, c, r, s;
    dlf__conv_node_geo(nd, &geo, &groups);
    Cg = C / groups;
    Kg = K / groups;
    for (n = 0; n < N; n++)
    for (k = 0; k < K; k++)
    for (p = 0; p < P; p++)
    for (q = 0; q < Q; q++) {
        float g = y->grad[(((size_t)n * K + k) * P + p) * Q + q];
        for (c = 0; c < Cg; c++)
        for (r = 0; r < R; r++)
        for (s = 0; s < S; s++) {
            int h = p * geo.sh - geo.ph + r * geo.dh, ww = q * geo.sw - geo.pw + s * geo.dw, iw;
            size_t ix;
            if (h < 0 || h >= H || ww < 0 || ww >= W) continue;  /* padding: no input there */
            ix = (((size_t)n * C + k / Kg * Cg + c) * H + h) * W + ww;   /* formed only once in bounds */
            iw = ((k * Cg + c) * R + r) * S + s;
            if (gx) gx[ix] += g * w->data[iw];
            if (gw) gw[iw] += g * x->data[ix];
        }
    }
}

/* Fast backward. In the forward pass this was Y = W @ col with Y (K, N*P*Q), so
     dW (K, C*R*S) += dY @ col^T,  computed transposed: dW^T (C*R*S, K) = col @ dY^T
                                   (the packed gemm; col is its A, read row by row, and
                                   dY^T its B: K columns, one or two panels. This beat
                                   dlf_gemm_dot's dot products, 64 against 40 GFLOP/s
                                   on the bench layer, and dY @ col^T packed, 44)
     dcol (C*R*S, N*P*Q) = W^T @ dY,  dx += col2im(dcol)
   (Tried: with stride 1, dx is itself a convolution of dY with W flipped in space and
   its channel axes swapped, padded by R-1-pad, so dlf__conv2d_implicit can add it into
   dx with no dcol and no col2im. On the bench layer it took as long: its gather while
   packing costs what col2im costs.)
   dY is y's gradient reordered from (N, K, PQ) to (K, N, PQ). dcol is as big as col, so
   it is made and summed back a group of G images at a time (about DLF__CONV_COLS
   columns), while it is still in cache; each image's dx comes out the same whatever G.
   The buffers (dY, one group's dY and dcol, gemm packing) come from the tape's scratch.
   dlf__conv2d_backward_core does this for raw arrays (x (N,C,H,W), w (K,C,R,S), dyall
   (N,K,P,Q), col or NULL; gx, gw += or NULL), so grouped convolutions run it per group. */
#define DLF__CONV_COLS 2048
static void dlf__conv2d_backward_core(dlf_tape *t, const float *x, const float *w, const float *dyall,
                                      const float *col, int N, int C, int H, int W, int K, int R, int S,
                                      const dlf__conv_geo *geo, int P, int Q, float *gx, float *gw)
{
    int CRS = C * R * S, nk, n0, k, full;
    size_t PQ = (size_t)P * Q, NPQ = (size_t)N * P * Q, ws, GPQ;
    int G = PQ >= DLF__CONV_COLS ? 1 : (int)(DLF__CONV_COLS / PQ);   /* images per group */
    float *dy, *dy_g, *dcol_g, *gwt, *work;
    if (G > N) G = N;
    GPQ = (size_t)G * PQ;
    full = gw && col;            /* the im2col path's dW wants dY as (K, N*P*Q) and a (C*R*S, K) result */
    ws = gx ? dlf_gemm_fast_scratch(CRS, (int)GPQ, K) : 0;
    if (full && dlf_gemm_fast_scratch(CRS, K, (int)NPQ) > ws) ws = dlf_gemm_fast_scratch(CRS, K, (int)NPQ);
    if (gw && !col && dlf__conv2d_dw_scratch(K, CRS, R * S, (int)PQ, NPQ) > ws)
        ws = dlf__conv2d_dw_scratch(K, CRS, R * S, (int)PQ, NPQ);
    dy = dlf__tape_scratch(t, (full ? (size_t)K * NPQ + (size_t)CRS * K : 0) + (gx ? (size_t)(K + CRS) * GPQ : 0) + ws);
    if (!dy) return;
    dy_g = dy + (full ? (size_t)K * NPQ : 0);             /* (K, G*P*Q) */
    dcol_g = dy_g + (gx ? (size_t)K * GPQ : 0);           /* (C*R*S, G*P*Q) */
    gwt = dcol_g + (gx ? (size_t)CRS * GPQ : 0);          /* (C*R*S, K), the im2col path only */
    work = gwt + (full ? (size_t)CRS * K : 0);
    if (full) {
        DLF__OMP(omp parallel for if ((size_t)K * NPQ > DLF__PAR_MIN))
        for (nk = 0; nk < N * K; nk++) {                  /* (N, K, PQ) -> (K, N, PQ) */
            int n = nk / K, k = nk % K;
            memcpy(dy + (size_t)k * NPQ + (size_t)n * PQ, dyall + (size_t)nk * PQ, PQ * sizeof(float));
        }
    }
    if (gw) {                                             /* dW^T = col @ dY^T, then dW += (dW^T)^T */
        int crs;
        if (col) {
            dlf_gemm(0, 1, CRS, K, (int)NPQ, col, dy, gwt, 0, work);
            for (k = 0; k < K; k++)
                for (crs = 0; crs < CRS; crs++) gw[(size_t)k * CRS + crs] += gwt[(size_t)crs * K + k];
        } else {                                          /* no col: straight from x and dY */
            dlf__conv2d_dw_implicit(x, dyall, N, C, H, W, K, R, S, geo, P, Q, gw, work);
        }
    }
    for (n0 = 0; gx && n0 < N; n0 += G) {                 /* images n0 .. n0+g-1 */
        int g = N - n0 < G ? N - n0 : G;
        size_t gpq = (size_t)g * PQ;
        for (nk = 0; nk < g * K; nk++) {                  /* images n0.., (g, K, PQ) -> (K, g, PQ) */
            int n = nk / K;
            k = nk % K;
            memcpy(dy_g + (size_t)k * gpq + (size_t)n * PQ, dyall + ((size_t)(n0 + n) * K + k) * PQ,
                   PQ * sizeof(float));
        }
        dlf_gemm(1, 0, CRS, (int)gpq, K, w, dy_g, dcol_g, 0, work);
        dlf__col2im(dcol_g, g, C, H, W, R, S, geo, gx + (size_t)n0 * C * H * W);
    }
}

/* Backward of a grouped convolution: each group's slice of x and of dY copied out (into
   the arena: the core's workspace is the tape's scratch), the core run on them, group gi's
   dx added back into its channels and its dW straight into w's rows gi*Kg .. (contiguous). */
static void dlf__conv2d_grouped_backward(dlf_tape *t, const float *x, const float *w, const float *dyall,
                                         int N, int C, int H, int W, int K, int R, int S,
                                         const dlf__conv_geo *geo, int groups, int P, int Q, float *gx, float *gw)
{
    int Cg = C / groups, Kg = K / groups, gi, n;
    size_t HW = (size_t)H * W, PQ = (size_t)P * Q, i;
    size_t xg_n = (size_t)N * Cg * HW, dyg_n = (size_t)N * Kg * PQ;
    float *xg = (float *)dlf__arena_alloc(t, (2 * xg_n + dyg_n) * sizeof(float));
    float *gxg = xg + xg_n, *dyg = gxg + xg_n;
    if (!xg) return;
    for (gi = 0; gi < groups; gi++) {
        dlf__gather_channels(x, N, C, HW, gi * Cg, Cg, xg);
        dlf__gather_channels(dyall, N, K, PQ, gi * Kg, Kg, dyg);
        if (gx) memset(gxg, 0, xg_n * sizeof(float));
        dlf__conv2d_backward_core(t, xg, w + (size_t)gi * Kg * Cg * R * S, dyg, NULL, N, Cg, H, W, Kg, R, S,
                                  geo, P, Q, gx ? gxg : NULL, gw ? gw + (size_t)gi * Kg * Cg * R * S : NULL);
        if (gx)
            for (n = 0; n < N; n++) {
                float *dst = gx + ((size_t)n * C + (size_t)gi * Cg) * HW;
                const float *src = gxg + (size_t)n * Cg * HW;
                for (i = 0; i < (size_t)Cg * HW; i++) dst[i] += src[i];
            }
    }
}

static void dlf__conv2d_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *w = nd->in[1], *y = nd->out, *col = nd->aux;
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int K = w->shape[0], R = w->shape[2], S = w->shape[3], P = y->shape[2], Q = y->shape[3];
    int groups;
    dlf__conv_geo geo;
    float *gx, *gw;
    if (nd->iarg[2]) {
        dlf__conv2d_naive_backward(t, nd);
        return;
    }
    dlf__conv_node_geo(nd, &geo, &groups);
    gx = dlf__grad(t, x);
    gw = dlf__grad(t, w);
    if (!gx && !gw) return;
#ifdef DLF_CUDA
    if (t->cuda && dlf__conv_on_gpu(&geo, groups, col != NULL)) {   /* stage 17: the forward ran there too */
        if (dlf_cuda_conv2d_backward(t->cuda, x, w, y->grad, geo.sh, geo.ph, gx, gw) != DLF_OK)
            dlf__panic("dlf_conv2d backward on the GPU: %s", dlf_last_error());
        return;
    }
#endif
    if (groups > 1)
        dlf__conv2d_grouped_backward(t, x->data, w->data, y->grad, N, C, H, W, K, R, S, &geo, groups, P, Q, gx, gw);
    else
        dlf__conv2d_backward_core(t, x->data, w->data, y->grad, col ? col->data : NULL, N, C, H, W, K, R, S,
                                  &geo, P, Q, gx, gw);
}

// activations

/* leaky_relu and general_relu share one forward:
     v = x > 0 ? x : leak * x;   v = v - sub;   y = min(v, maxv)   (maxv = INFINITY: no clamp)
   NaN and the infinities as PyTorch: a NaN x gives NaN (leaky_relu(NaN) = NaN; NaN > maxv is
   false, so the clamp keeps it, as clamp_max). leaky_relu is F.leaky_relu exactly, so with
   slope 0 it gives 0 * -inf = NaN at -inf, as F.leaky_relu(x, 0.0) does; general_relu with
   leak 0 is the course's GeneralRelu without a leak, i.e. F.relu: 0 at -inf. */
static dlf_tensor *dlf__general_relu(dlf_tape *t, dlf_op op, dlf_tensor *x, float leak, float sub, float maxv)
{
    dlf_tensor *y = dlf__live(t, dlf_op_name(op), x, NULL, NULL) ? dlf__out(t, x->ndim, x->shape) : NULL;
    dlf_node *nd;
    int i;
    if (!y) return NULL;
    DLF__OMP(omp parallel for if (x->size > DLF__PAR_MIN))
    for (i = 0; i < x->size; i++) {
        float xi = x->data[i];
        float v = xi > 0.0f ? xi : leak * xi;
        if (op == DLF_OP_GENERAL_RELU && leak == 0.0f) v = xi < 0.0f ? 0.0f : xi;  /* relu: NaN stays */
        v = v - sub;
        y->data[i] = v > maxv ? maxv : v;
    }
    nd = dlf__record(t, op, y, x, NULL);
    if (nd) {
        nd->farg[0] = leak;
        nd->farg[1] = maxv;
        nd->farg[2] = sub;
    }
    return y;
}

DLFDEF dlf_tensor *dlf_leaky_relu(dlf_tape *t, dlf_tensor *x, float slope)
{
    DLF__OP(t); DLF__INPUT(t, x);
    return dlf__general_relu(t, DLF_OP_LEAKY_RELU, x, slope, 0.0f, INFINITY);
}

DLFDEF dlf_tensor *dlf_general_relu(dlf_tape *t, dlf_tensor *x, float leak, float sub, float maxv)
{
    DLF__OP(t); DLF__INPUT(t, x);
    return dlf__general_relu(t, DLF_OP_GENERAL_RELU, x, leak, sub, maxv > 0.0f ? maxv : INFINITY);
}

/* Backward: dy/dx = (x > 0 ? 1 : leak), times 0 where the clamp held y at maxv
   (the subtraction of sub does not change the slope). At x = 0 and at v = maxv
   the function has kinks; we take PyTorch's slopes there: leak at 0, and 1 at
   v = maxv (clamp_max passes g where v <= maxv). At a NaN x: leak (F.leaky_relu),
   1 for general_relu with leak 0 (F.relu passes g where its result is not <= 0),
   and 0 where a clamp is on (NaN <= maxv is false). */
static void dlf__general_relu_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *y = nd->out;
    float *gx = dlf__grad(t, x);
    float leak = nd->farg[0], maxv = nd->farg[1];
    int i;
    if (!gx) return;
    for (i = 0; i < x->size; i++) {
        float xi = x->data[i], v = xi > 0.0f ? xi : leak * xi, slope = xi > 0.0f ? 1.0f : leak;
        float sub = nd->farg[2], pass;
        if (nd->op == DLF_OP_GENERAL_RELU && leak == 0.0f) {
            v = xi < 0.0f ? 0.0f : xi;
            slope = v <= 0.0f ? 0.0f : 1.0f;
        }
        pass = maxv == INFINITY || v - sub <= maxv ? 1.0f : 0.0f;
        gx[i] += pass * slope * y->grad[i];
    }
}

// softmax and log_softmax

/* Along one axis, viewed as (outer, n, inner) like the reductions. With m = max_j x_j,
     logsumexp(x) = m + log sum_j e^(x_j - m)      (no e^x overflows: every x_j - m <= 0)
     softmax_i = e^(x_i - m) / sum_j e^(x_j - m),   log_softmax_i = x_i - logsumexp(x)
   computed as (x_i - m) - log sum_j e^(x_j - m), never as x_i - (m + log sum): at
   |x| ~ 1000 the float m + log(sum) rounds to a step of 6e-5 (1e4: 5e-4) and that error
   would land in every output; x_i - m is exact for x_i near m (Sterbenz), so the result
   is as accurate as at small x (PyTorch's order too). */
static dlf_tensor *dlf__softmax(dlf_tape *t, dlf_op op, dlf_tensor *x, int axis, const char *name)
{
    int outer, n, inner, ndim, shape[4] = {1, 1, 1, 1}, o;
    dlf_tensor *y;
    dlf_node *nd;
    if (!dlf__live(t, name, x, NULL, NULL)) return NULL;
    if (!dlf__reduce_setup(name, x, axis, 1, &outer, &n, &inner, &ndim, shape)) return NULL;
    y = dlf__out(t, x->ndim, x->shape);
    if (!y) return NULL;
    DLF__OMP(omp parallel for if (x->size > DLF__PAR_MIN))
    for (o = 0; o < outer; o++) {
        int i, k;
        for (i = 0; i < inner; i++) {
            const float *x_oi = x->data + (size_t)o * n * inner + i;
            float *y_oi = y->data + (size_t)o * n * inner + i;
            float m = x_oi[0];
            double sum = 0.0;
            float log_sum;
            for (k = 1; k < n; k++) m = x_oi[k * inner] > m ? x_oi[k * inner] : m;
            for (k = 0; k < n; k++) sum += exp((double)x_oi[k * inner] - m);
            log_sum = (float)log(sum);
            for (k = 0; k < n; k++) {
                float logp = (x_oi[k * inner] - m) - log_sum;
                y_oi[k * inner] = op == DLF_OP_SOFTMAX ? expf(logp) : logp;
            }
        }
    }
    nd = dlf__record(t, op, y, x, NULL);
    if (nd) {
        nd->iarg[0] = outer;
        nd->iarg[1] = n;
        nd->iarg[2] = inner;
    }
    return y;
}

DLFDEF dlf_tensor *dlf_softmax(dlf_tape *t, dlf_tensor *x, int axis)
{
    DLF__OP(t); DLF__INPUT(t, x);
    return dlf__softmax(t, DLF_OP_SOFTMAX, x, axis, "dlf_softmax");
}

DLFDEF dlf_tensor *dlf_log_softmax(dlf_tape *t, dlf_tensor *x, int axis)
{
    DLF__OP(t); DLF__INPUT(t, x);
    return dlf__softmax(t, DLF_OP_LOG_SOFTMAX, x, axis, "dlf_log_softmax");
}

/* Backward, g = dL/dy along the axis:
     softmax:      dy_i/dx_j = y_i (delta_ij - y_j)  ->  dx_j += y_j (g_j - sum_i g_i y_i)
     log_softmax:  dy_i/dx_j = delta_ij - softmax_j  ->  dx_j += g_j - e^(y_j) sum_i g_i */
static void dlf__softmax_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *y = nd->out;
    float *gx = dlf__grad(t, x);
    int outer = nd->iarg[0], n = nd->iarg[1], inner = nd->iarg[2], o, i, k;
    if (!gx) return;
    for (o = 0; o < outer; o++)
    for (i = 0; i < inner; i++) {
        size_t base = (size_t)o * n * inner + i;
        const float *y_oi = y->data + base, *g_oi = y->grad + base;
        float *gx_oi = gx + base;
        double dot = 0.0;
        if (nd->op == DLF_OP_SOFTMAX) {
            for (k = 0; k < n; k++) dot += (double)g_oi[k * inner] * y_oi[k * inner];
            for (k = 0; k < n; k++) gx_oi[k * inner] += y_oi[k * inner] * (g_oi[k * inner] - (float)dot);
        } else {
            for (k = 0; k < n; k++) dot += g_oi[k * inner];
            for (k = 0; k < n; k++) gx_oi[k * inner] += g_oi[k * inner] - expf(y_oi[k * inner]) * (float)dot;
        }
    }
}

// pooling

static int dlf__pool_check(const char *op, const dlf_tensor *x, int k, int *stride, int pad, int *P, int *Q)
{
    const char *why = NULL;
    if (*stride <= 0) *stride = k;
    if (x->ndim != 4) why = "want x (N, C, H, W)";
    else if (k < 1 || pad < 0 || pad > k / 2) why = "want k >= 1 and 0 <= pad <= k/2";
    else if (x->shape[2] + 2 * pad < k || x->shape[3] + 2 * pad < k) why = "the window is larger than the padded input";
    if (why) {
        char sx[64];
        dlf__panic("%s: %s; got x %s, k %d, stride %d, pad %d", op, why,
                   dlf_shape_str(x, sx, sizeof sx), k, *stride, pad);
        return 0;
    }
    *P = (x->shape[2] + 2 * pad - k) / *stride + 1;
    *Q = (x->shape[3] + 2 * pad - k) / *stride + 1;
    return 1;
}

/* Max and average pooling, one (n, c) plane at a time (threads split planes).
     max: y[p][q] = max over the window of x; the winner's index in the plane is
          kept in aux for backward (ties: the first; a NaN wins, the last NaN's index
          kept, like PyTorch's "v > best or isnan(v)")
     avg: y[p][q] = sum over the window of x / (k*k)   (padding counts as 0) */
static dlf_tensor *dlf__pool(dlf_tape *t, dlf_op op, dlf_tensor *x, int k, int stride, int pad, const char *name)
{
    int P, Q, H, W, shape[4], pl, planes;
    dlf_tensor *y, *idx = NULL;
    dlf_node *nd;
    if (!dlf__live(t, name, x, NULL, NULL)) return NULL;
    if (!dlf__pool_check(name, x, k, &stride, pad, &P, &Q)) return NULL;
    H = x->shape[2];
    W = x->shape[3];
    planes = x->shape[0] * x->shape[1];
    shape[0] = x->shape[0]; shape[1] = x->shape[1]; shape[2] = P; shape[3] = Q;
    y = dlf__out(t, 4, shape);
    if (!y) return NULL;
    if (op == DLF_OP_MAXPOOL2D) {
        idx = dlf__out(t, 4, shape);                     /* (N,C,P,Q) flat h*W+w, as floats */
        if (!idx) return NULL;
    }
    DLF__OMP(omp parallel for if (x->size > DLF__PAR_MIN))
    for (pl = 0; pl < planes; pl++) {
        const float *x_pl = x->data + (size_t)pl * H * W;
        float *y_pl = y->data + (size_t)pl * P * Q;
        int p, q, i, j;
        for (p = 0; p < P; p++)
        for (q = 0; q < Q; q++) {
            float best = -INFINITY;
            int besti = -1;
            double sum = 0.0;
            for (i = 0; i < k; i++)
            for (j = 0; j < k; j++) {
                int h = p * stride - pad + i, w = q * stride - pad + j;
                float v;
                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                v = x_pl[h * W + w];
                sum += v;
                if (besti < 0 || v > best || v != v) {
                    best = v;
                    besti = h * W + w;
                }
            }
            if (idx) {
                y_pl[p * Q + q] = best;
                idx->data[(size_t)pl * P * Q + p * Q + q] = (float)besti;
            } else {
                y_pl[p * Q + q] = (float)(sum / (k * k));
            }
        }
    }
    nd = dlf__record(t, op, y, x, NULL);
    if (nd) {
        nd->iarg[0] = k;
        nd->iarg[1] = stride;
        nd->iarg[2] = pad;
        nd->aux = idx;
    }
    return y;
}

DLFDEF dlf_tensor *dlf_maxpool2d(dlf_tape *t, dlf_tensor *x, int k, int stride, int pad)
{
    DLF__OP(t); DLF__INPUT(t, x);
    return dlf__pool(t, DLF_OP_MAXPOOL2D, x, k, stride, pad, "dlf_maxpool2d");
}

DLFDEF dlf_tensor *dlf_avgpool2d(dlf_tape *t, dlf_tensor *x, int k, int stride, int pad)
{
    DLF__OP(t); DLF__INPUT(t, x);
    return dlf__pool(t, DLF_OP_AVGPOOL2D, x, k, stride, pad, "dlf_avgpool2d");
}

/* Backward of pooling, g = dL/dy[p][q]:
     max: dx[winner] += g              (only the winner moved y)
     avg: dx[h][w] += g / (k*k)        for every in-bounds (h, w) of the window
   Threads split planes; inside a plane the order is fixed. */
static void dlf__pool_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *y = nd->out;
    float *gx = dlf__grad(t, x);
    int k = nd->iarg[0], stride = nd->iarg[1], pad = nd->iarg[2];
    int H = x->shape[2], W = x->shape[3], P = y->shape[2], Q = y->shape[3];
    int pl, planes = x->shape[0] * x->shape[1];
    if (!gx) return;
    DLF__OMP(omp parallel for if (x->size > DLF__PAR_MIN))
    for (pl = 0; pl < planes; pl++) {
        float *gx_pl = gx + (size_t)pl * H * W;
        const float *g_pl = y->grad + (size_t)pl * P * Q;
        int p, q, i, j;
        for (p = 0; p < P; p++)
        for (q = 0; q < Q; q++) {
            float g = g_pl[p * Q + q];
            if (nd->op == DLF_OP_MAXPOOL2D) {
                gx_pl[(int)nd->aux->data[(size_t)pl * P * Q + p * Q + q]] += g;
                continue;
            }
            for (i = 0; i < k; i++)
            for (j = 0; j < k; j++) {
                int h = p * stride - pad + i, w = q * stride - pad + j;
                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                gx_pl[h * W + w] += g / (float)(k * k);
            }
        }
    }
}

/* Pooling over windows given by a table (dlf_maxpool2d_ex, dlf_avgpool2d_ex and the
   adaptive ones). The window of output (p, q) is the in-bounds rectangle
     rows h0[p] .. h1[p]-1,  columns w0[q] .. w1[q]-1
   and average pooling divides by div_h[p] * div_w[q]. Every PyTorch pooling has windows
   that split this way into a row part and a column part:
     strided, window kh, stride sh, pad ph (PyTorch's avg_pool2d / max_pool2d):
       hs = p*sh - ph,  he = min(hs + kh, H + ph),  h0 = max(hs, 0),  h1 = min(he, H)
       div_h = he - hs (count_include_pad: padding counts, the part past H + ph never)
             or h1 - h0 (count_include_pad=False: the cells inside x only)
     adaptive, P outputs from H rows (PyTorch's adaptive pools):
       h0 = floor(p*H / P),  h1 = ceil((p+1)*H / P),  div_h = h1 - h0
   The table is one arena tensor, (3, P + Q): rows h0|w0, h1|w1, div_h|div_w (whole
   numbers, exact in floats), kept for backward in saved[0]. */
static dlf_tensor *dlf__pool_table(dlf_tape *t, int P, int Q)
{
    int shape[2];
    shape[0] = 3;
    shape[1] = P + Q;
    return dlf__out(t, 2, shape);
}

/* One axis of the table: n outputs from `in` cells; adaptive when k == 0. */
static void dlf__pool_axis(float *tab, int stride_tab, int n, int in, int k, int s, int pad, int exclude_pad)
{
    int i;
    for (i = 0; i < n; i++) {
        int lo, hi, div;
        if (k == 0) {
            lo = (int)(((long long)i * in) / n);
            hi = (int)(((long long)(i + 1) * in + n - 1) / n);
            div = hi - lo;
        } else {
            int hs = i * s - pad, he = hs + k < in + pad ? hs + k : in + pad;
            lo = hs > 0 ? hs : 0;
            hi = he < in ? he : in;
            div = exclude_pad ? hi - lo : he - hs;
        }
        tab[i] = (float)lo;
        tab[stride_tab + i] = (float)hi;
        tab[2 * stride_tab + i] = (float)div;
    }
}

/* The table's windows, forward, one (n, c) plane at a time (threads split planes):
     max: y[p][q] = max of x over the window; its flat index h*W + w kept in aux (N,C,P,Q)
          for backward. Scanned in row-major order with "v > best or v is NaN", PyTorch's
          rule: a NaN in the window wins (the last NaN, whose index gets the gradient), and
          on ties the first maximum wins
     avg: y[p][q] = sum of x over the window / (div_h[p] * div_w[q]) */
static dlf_tensor *dlf__pool_win(dlf_tape *t, dlf_op op, dlf_tensor *x, dlf_tensor *tab, int P, int Q)
{
    int H = x->shape[2], W = x->shape[3], shape[4], pl, planes = x->shape[0] * x->shape[1];
    dlf_tensor *y, *idx = NULL;
    dlf_node *nd;
    const float *tb = tab->data;
    shape[0] = x->shape[0]; shape[1] = x->shape[1]; shape[2] = P; shape[3] = Q;
    y = dlf__out(t, 4, shape);
    if (!y) return NULL;
    if (op == DLF_OP_MAXPOOL2D_EX && !(idx = dlf__out(t, 4, shape))) return NULL;
    DLF__OMP(omp parallel for if (x->size > DLF__PAR_MIN))
    for (pl = 0; pl < planes; pl++) {
        const float *x_pl = x->data + (size_t)pl * H * W;
        float *y_pl = y->data + (size_t)pl * P * Q;
        int p, q, h, w;
        for (p = 0; p < P; p++)
        for (q = 0; q < Q; q++) {
            int h0 = (int)tb[p], h1 = (int)tb[P + Q + p], w0 = (int)tb[P + q], w1 = (int)tb[P + Q + P + q];
            if (idx) {
                float best = -INFINITY;
                int besti = h0 * W + w0;
                for (h = h0; h < h1; h++)
                    for (w = w0; w < w1; w++) {
                        float v = x_pl[h * W + w];
                        if (v > best || v != v) {
                            best = v;
                            besti = h * W + w;
                        }
                    }
                y_pl[p * Q + q] = best;
                idx->data[(size_t)pl * P * Q + p * Q + q] = (float)besti;
            } else {
                double sum = 0.0;
                for (h = h0; h < h1; h++)
                    for (w = w0; w < w1; w++) sum += x_pl[h * W + w];
                y_pl[p * Q + q] = (float)(sum / ((double)tb[2 * (P + Q) + p] * tb[2 * (P + Q) + P + q]));
            }
        }
    }
    nd = dlf__record(t, op, y, x, NULL);
    if (nd) {
        nd->aux = idx;
        nd->saved[0] = tab;
    }
    return y;
}

/* Backward, g = dL/dy[p][q]:
     max: dx[winner] += g                                   (only the winner moved y)
     avg: dx[h][w] += g / (div_h[p] div_w[q])  for every (h, w) of the window
   Threads split planes; inside a plane the order is fixed. */
static void dlf__pool_win_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *y = nd->out;
    float *gx = dlf__grad(t, x);
    const float *tb = nd->saved[0]->data;
    int H = x->shape[2], W = x->shape[3], P = y->shape[2], Q = y->shape[3];
    int pl, planes = x->shape[0] * x->shape[1];
    if (!gx) return;
    DLF__OMP(omp parallel for if (x->size > DLF__PAR_MIN))
    for (pl = 0; pl < planes; pl++) {
        float *gx_pl = gx + (size_t)pl * H * W;
        const float *g_pl = y->grad + (size_t)pl * P * Q;
        int p, q, h, w;
        for (p = 0; p < P; p++)
        for (q = 0; q < Q; q++) {
            float g = g_pl[p * Q + q];
            int h0 = (int)tb[p], h1 = (int)tb[P + Q + p], w0 = (int)tb[P + q], w1 = (int)tb[P + Q + P + q];
            if (nd->op == DLF_OP_MAXPOOL2D_EX) {
                gx_pl[(int)nd->aux->data[(size_t)pl * P * Q + p * Q + q]] += g;
                continue;
            }
            g /= tb[2 * (P + Q) + p] * tb[2 * (P + Q) + P + q];
            for (h = h0; h < h1; h++)
                for (w = w0; w < w1; w++) gx_pl[h * W + w] += g;
        }
    }
}

/* Output size along one axis, PyTorch's pooling_output_shape:
     floor or ceil((in + 2 pad - k) / s) + 1,  and in ceil mode one less when the last
   window would start past the input and its left padding ((n - 1) s >= in + pad). */
static int dlf__pool_out(int in, int k, int s, int pad, int ceil_mode)
{
    int n = (in + 2 * pad - k + (ceil_mode ? s - 1 : 0)) / s + 1;
    if (ceil_mode && (n - 1) * s >= in + pad) n--;
    return n;
}

static dlf_tensor *dlf__pool_ex(dlf_tape *t, dlf_op op, dlf_tensor *x, const dlf_pool_cfg *cfg, const char *name)
{
    int kh, kw, sh, sw, ph, pw, P, Q;
    const char *why = NULL;
    dlf_tensor *tab;
    if (!t || !x || !cfg) {
        dlf__panic("%s: %s is NULL", name, !t ? "t" : !x ? "x" : "cfg");
        return NULL;
    }
    kh = cfg->kh; kw = cfg->kw; ph = cfg->ph; pw = cfg->pw;
    sh = cfg->sh > 0 ? cfg->sh : kh;
    sw = cfg->sw > 0 ? cfg->sw : kw;
    if (x->ndim != 4) why = "want x (N, C, H, W)";
    else if (kh < 1 || kw < 1) why = "want a window kh, kw >= 1";
    else if (ph < 0 || pw < 0 || ph > kh / 2 || pw > kw / 2) why = "want 0 <= pad <= half the window";
    else if (x->shape[2] + 2 * ph < kh || x->shape[3] + 2 * pw < kw) why = "the window is larger than the padded input";
    if (why) {
        char sx[64];
        dlf__panic("%s: %s; got x %s, window %dx%d, stride %dx%d, pad %dx%d", name, why,
                   dlf_shape_str(x, sx, sizeof sx), kh, kw, sh, sw, ph, pw);
        return NULL;
    }
    P = dlf__pool_out(x->shape[2], kh, sh, ph, cfg->ceil_mode);
    Q = dlf__pool_out(x->shape[3], kw, sw, pw, cfg->ceil_mode);
    if (!(tab = dlf__pool_table(t, P, Q))) return NULL;
    dlf__pool_axis(tab->data, P + Q, P, x->shape[2], kh, sh, ph, cfg->exclude_pad);
    dlf__pool_axis(tab->data + P, P + Q, Q, x->shape[3], kw, sw, pw, cfg->exclude_pad);
    return dlf__pool_win(t, op, x, tab, P, Q);
}

DLFDEF dlf_tensor *dlf_maxpool2d_ex(dlf_tape *t, dlf_tensor *x, const dlf_pool_cfg *cfg)
{
    DLF__OP(t);
    return dlf__pool_ex(t, DLF_OP_MAXPOOL2D_EX, x, cfg, "dlf_maxpool2d_ex");
}

DLFDEF dlf_tensor *dlf_avgpool2d_ex(dlf_tape *t, dlf_tensor *x, const dlf_pool_cfg *cfg)
{
    DLF__OP(t);
    return dlf__pool_ex(t, DLF_OP_AVGPOOL2D_EX, x, cfg, "dlf_avgpool2d_ex");
}

static dlf_tensor *dlf__adaptive_pool(dlf_tape *t, dlf_op op, dlf_tensor *x, int P, int Q, const char *name)
{
    dlf_tensor *tab;
    if (!t || !x) {
        dlf__panic("%s: %s is NULL", name, !t ? "t" : "x");
        return NULL;
    }
    if (x->ndim != 4 || P < 1 || Q < 1) {
        char sx[64];
        dlf__panic("%s: want x (N, C, H, W) and an output size P, Q >= 1; got x %s, P %d, Q %d", name,
                   dlf_shape_str(x, sx, sizeof sx), P, Q);
        return NULL;
    }
    if (!(tab = dlf__pool_table(t, P, Q))) return NULL;
    dlf__pool_axis(tab->data, P + Q, P, x->shape[2], 0, 0, 0, 0);
    dlf__pool_axis(tab->data + P, P + Q, Q, x->shape[3], 0, 0, 0, 0);
    return dlf__pool_win(t, op, x, tab, P, Q);
}

DLFDEF dlf_tensor *dlf_adaptive_avgpool2d(dlf_tape *t, dlf_tensor *x, int P, int Q)
{
    DLF__OP(t);
    return dlf__adaptive_pool(t, DLF_OP_AVGPOOL2D_EX, x, P, Q, "dlf_adaptive_avgpool2d");
}

DLFDEF dlf_tensor *dlf_adaptive_maxpool2d(dlf_tape *t, dlf_tensor *x, int P, int Q)
{
    return dlf__adaptive_pool(t, DLF_OP_MAXPOOL2D_EX, x, P, Q, "dlf_adaptive_maxpool2d");
}

/* Global average pooling is a mean over the pixels of each plane:
   view (N,C,H,W) as (N,C,H*W) and take the mean over the last axis. */
DLFDEF dlf_tensor *dlf_global_avgpool(dlf_tape *t, dlf_tensor *x)
{
    DLF__OP(t); DLF__INPUT(t, x);
    int shape[3];
    dlf_tensor *v;
    if (x->ndim != 4) {
        char sx[64];
        dlf__panic("dlf_global_avgpool: want x (N, C, H, W), got %s", dlf_shape_str(x, sx, sizeof sx));
        return NULL;
    }
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    shape[2] = x->shape[2] * x->shape[3];
    v = dlf_reshape(t, x, 3, shape);
    return v ? dlf_mean(t, v, 2, 0) : NULL;
}

/* Flatten keeps the batch dim and views the rest as one row: a reshape to (N, -1). */
DLFDEF dlf_tensor *dlf_flatten(dlf_tape *t, dlf_tensor *x)
{
    DLF__OP(t); DLF__INPUT(t, x);
    int shape[2];
    if (x->ndim < 1) {
        dlf__panic("dlf_flatten: want x (N, ...), got a 0-dim tensor");
        return NULL;
    }
    shape[0] = x->shape[0];
    shape[1] = x->shape[0] ? x->size / x->shape[0] : 0;
    return dlf_reshape(t, x, 2, shape);
}

// embedding

/* Read class/row id i of `ids` as an int, checking it is a whole number in [0, n). */
static int dlf__index_at(const char *op, const dlf_tensor *ids, int i, int n)
{
    float v = ids->data[i];
    int id;
    if (!(v >= 0.0f && v < (float)n) || (float)(int)v != v) {   /* range first: (int) of a NaN
                                                                   or a huge float is undefined */
        char s[64];
        dlf__panic("%s: index %d of %s is %g, not a whole number in 0..%d", op, i,
                   dlf_shape_str(ids, s, sizeof s), (double)v, n - 1);
        return -1;
    }
    id = (int)v;
    return id;
}

/* y[i][:] = w[idx[i]][:] : a lookup table, the same as onehot(idx) @ w but without
   building the one-hot matrix. */
DLFDEF dlf_tensor *dlf_embedding(dlf_tape *t, dlf_tensor *idx, dlf_tensor *w)
{
    DLF__OP(t); DLF__INPUT(t, idx); DLF__INPUT(t, w);
    int shape[3], i, D;
    dlf_tensor *y;
    if (!dlf__live(t, "dlf_embedding", idx, w, NULL)) return NULL;
    if (w->ndim != 2 || idx->ndim < 1 || idx->ndim > 2) {
        char si[64], sw[64];
        dlf__panic("dlf_embedding: want idx (N,) or (N, L) and w (V, D); got idx %s, w %s",
                   dlf_shape_str(idx, si, sizeof si), dlf_shape_str(w, sw, sizeof sw));
        return NULL;
    }
    D = w->shape[1];
    for (i = 0; i < idx->ndim; i++) shape[i] = idx->shape[i];
    shape[idx->ndim] = D;
    y = dlf__out(t, idx->ndim + 1, shape);
    if (!y) return NULL;
    for (i = 0; i < idx->size; i++) {
        int row = dlf__index_at("dlf_embedding", idx, i, w->shape[0]);
        if (row < 0) return NULL;
        memcpy(y->data + (size_t)i * D, w->data + (size_t)row * D, (size_t)D * sizeof(float));
    }
    dlf__record(t, DLF_OP_EMBEDDING, y, idx, w);
    return y;
}

/* Backward: every use of row idx[i] adds its gradient back, dw[idx[i]] += g[i];
   serial, so repeated ids add in index order. idx gets no gradient. */
static void dlf__embedding_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *idx = nd->in[0], *w = nd->in[1];
    float *gw = dlf__grad(t, w);
    int i, j, D = w->shape[1];
    if (!gw) return;
    for (i = 0; i < idx->size; i++) {
        float *gw_row = gw + (size_t)idx->data[i] * D;
        const float *g_i = nd->out->grad + (size_t)i * D;
        for (j = 0; j < D; j++) gw_row[j] += g_i[j];
    }
}

// sequential

static dlf_layer dlf__layer_zero(dlf_layer_kind kind)
{
    dlf_layer l;
    memset(&l, 0, sizeof l);
    l.kind = kind;
    return l;
}

DLFDEF dlf_layer dlf_layer_linear(int in, int out, int bias, dlf_rng *r)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_LINEAR);
    int ws[2];
    DLF__NOT_NULL(r, l);
    ws[0] = out;
    ws[1] = in;
    l.weight = dlf_param_new(2, ws);
    if (bias) l.bias = dlf_param_new(1, &out);
    if (!l.weight || (bias && !l.bias)) {
        dlf_layer_free(&l);
        return l;
    }
    dlf_init_torch_default(l.weight, l.bias, r);
    return l;
}

DLFDEF dlf_layer dlf_layer_conv2d(int c_in, int c_out, int ks, int stride, int pad, int bias, dlf_rng *r)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_CONV2D);
    int ws[4];
    DLF__NOT_NULL(r, l);
    ws[0] = c_out; ws[1] = c_in; ws[2] = ks; ws[3] = ks;
    l.stride = stride;
    l.pad = pad;
    l.k = ks;
    l.weight = dlf_param_new(4, ws);
    if (bias) l.bias = dlf_param_new(1, &c_out);
    if (!l.weight || (bias && !l.bias)) {
        dlf_layer_free(&l);
        return l;
    }
    dlf_init_torch_default(l.weight, l.bias, r);
    return l;
}

DLFDEF dlf_layer dlf_layer_conv2d_ex(int c_in, int c_out, int kh, int kw, const dlf_conv2d_cfg *cfg, int bias,
                                     dlf_rng *r)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_CONV2D);
    int ws[4], groups;
    if (!r) {
        dlf__panic("dlf_layer_conv2d_ex: r is NULL");
        return l;
    }
    if (cfg) l.conv = *cfg;
    groups = l.conv.groups ? l.conv.groups : 1;
    if (c_in < 1 || c_out < 1 || kh < 1 || kw < 1 || groups < 1 || c_in % groups || c_out % groups) {
        dlf__panic("dlf_layer_conv2d_ex: want c_in, c_out, kh, kw >= 1 and groups >= 1 dividing c_in and c_out; "
                   "got c_in %d, c_out %d, kernel %dx%d, groups %d", c_in, c_out, kh, kw, groups);
        return l;
    }
    l.conv.groups = groups;              /* >= 1: dlf_layer_forward takes dlf_conv2d_ex */
    l.stride = l.conv.sh ? l.conv.sh : 1;
    l.pad = l.conv.ph;
    l.k = kh;
    ws[0] = c_out; ws[1] = c_in / groups; ws[2] = kh; ws[3] = kw;
    l.weight = dlf_param_new(4, ws);
    if (bias) l.bias = dlf_param_new(1, &c_out);
    if (!l.weight || (bias && !l.bias)) {
        dlf_layer_free(&l);
        return l;
    }
    dlf_init_torch_default(l.weight, l.bias, r);   /* fan_in = (c_in/groups)*kh*kw, as PyTorch's */
    return l;
}

DLFDEF dlf_layer dlf_layer_embedding(int vocab, int dim, dlf_rng *r)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_EMBEDDING);
    int ws[2];
    DLF__NOT_NULL(r, l);
    ws[0] = vocab;
    ws[1] = dim;
    l.weight = dlf_param_new(2, ws);
    if (l.weight) dlf_init_normal(l.weight, r, 0.0f, 1.0f);
    return l;
}

DLFDEF dlf_layer dlf_layer_simple(dlf_layer_kind kind) { return dlf__layer_zero(kind); }

DLFDEF dlf_layer dlf_layer_leaky_relu(float slope)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_LEAKY_RELU);
    l.leak = slope;
    return l;
}

DLFDEF dlf_layer dlf_layer_general_relu(float leak, float sub, float maxv)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_GENERAL_RELU);
    l.leak = leak;
    l.sub = sub;
    l.maxv = maxv;
    return l;
}

DLFDEF dlf_layer dlf_layer_pool(dlf_layer_kind kind, int k, int stride, int pad)
{
    dlf_layer l = dlf__layer_zero(kind);
    l.k = k;
    l.stride = stride;
    l.pad = pad;
    return l;
}

DLFDEF dlf_layer dlf_layer_pool_ex(dlf_layer_kind kind, const dlf_pool_cfg *cfg)
{
    dlf_layer l = dlf__layer_zero(kind);
    if (!cfg || (kind != DLF_LAYER_MAXPOOL2D && kind != DLF_LAYER_AVGPOOL2D) || cfg->kh < 1 || cfg->kw < 1) {
        dlf__panic("dlf_layer_pool_ex: want kind MAXPOOL2D or AVGPOOL2D and a cfg with kh, kw >= 1; got kind %d, cfg %s",
                   (int)kind, cfg ? "with a window below 1" : "NULL");
        return l;
    }
    l.pool = *cfg;
    l.k = cfg->kh;
    l.stride = cfg->sh;
    l.pad = cfg->ph;
    return l;
}

DLFDEF dlf_layer dlf_layer_adaptive_pool(dlf_layer_kind kind, int out_h, int out_w)
{
    dlf_layer l = dlf__layer_zero(kind);
    if ((kind != DLF_LAYER_ADAPTIVE_AVGPOOL2D && kind != DLF_LAYER_ADAPTIVE_MAXPOOL2D) || out_h < 1 || out_w < 1) {
        dlf__panic("dlf_layer_adaptive_pool: want kind ADAPTIVE_AVGPOOL2D or ADAPTIVE_MAXPOOL2D and an output "
                   "size >= 1; got kind %d, %d x %d", (int)kind, out_h, out_w);
        return l;
    }
    l.out_h = out_h;
    l.out_w = out_w;
    return l;
}

DLFDEF dlf_layer dlf_layer_residual(dlf_seq *body)
{
    return dlf_layer_residual_ex(body, NULL);
}

DLFDEF dlf_layer dlf_layer_residual_ex(dlf_seq *body, dlf_seq *shortcut)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_RESIDUAL);
    DLF__NOT_NULL(body, l);
    l.body = (dlf_seq *)dlf__malloc(sizeof(dlf_seq), "a residual block");
    if (shortcut && l.body) {
        l.shortcut = (dlf_seq *)dlf__malloc(sizeof(dlf_seq), "a residual block's shortcut");
        if (!l.shortcut) {
            DLF_FREE(l.body);
            l.body = NULL;
        }
    }
    if (!l.body) return l;   /* dlf_layer_ok says so; the caller still owns body and shortcut */
    *l.body = *body;         /* the layers move into the block */
    dlf_seq_init(body);
    if (shortcut) {
        *l.shortcut = *shortcut;
        dlf_seq_init(shortcut);
    }
    return l;
}

/* A tensor of the given shape filled with v, as a parameter (grad) or a buffer. */
static dlf_tensor *dlf__layer_tensor(int ndim, const int *shape, float v, int param)
{
    dlf_tensor *x = param ? dlf_param_new(ndim, shape) : dlf_tensor_new(ndim, shape);
    if (x && v != 0.0f) dlf_fill(x, v);
    return x;
}

/* weight = 1 and bias = 0 of n values: the affine part of a normalization. */
static void dlf__layer_affine(dlf_layer *l, int n)
{
    l->weight = dlf__layer_tensor(1, &n, 1.0f, 1);
    l->bias = dlf__layer_tensor(1, &n, 0.0f, 1);
}

DLFDEF dlf_layer dlf_layer_batchnorm(int c)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_BATCHNORM);
    dlf__layer_affine(&l, c);
    l.bn.running_mean = dlf__layer_tensor(1, &c, 0.0f, 0);
    l.bn.running_var = dlf__layer_tensor(1, &c, 1.0f, 0);
    l.bn.num_batches_tracked = dlf__layer_tensor(0, NULL, 0.0f, 0);
    l.bn.momentum = 0.1f;
    l.bn.eps = 1e-5f;
    return l;
}

DLFDEF dlf_layer dlf_layer_layernorm(int d)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_LAYERNORM);
    dlf__layer_affine(&l, d);
    l.d = d;
    l.eps = 1e-5f;
    return l;
}

DLFDEF dlf_layer dlf_layer_groupnorm(int groups, int c)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_GROUPNORM);
    dlf__layer_affine(&l, c);
    l.groups = groups;
    l.eps = 1e-5f;
    return l;
}

DLFDEF dlf_layer dlf_layer_instancenorm(int c, int affine)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_INSTANCENORM);
    if (affine) dlf__layer_affine(&l, c);
    l.eps = 1e-5f;
    return l;
}

DLFDEF dlf_layer dlf_layer_running_batchnorm(int c)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_RUNNING_BATCHNORM);
    int wshape[3], sshape[4];
    wshape[0] = c; wshape[1] = 1; wshape[2] = 1;
    sshape[0] = 1; sshape[1] = c; sshape[2] = 1; sshape[3] = 1;
    l.weight = dlf__layer_tensor(3, wshape, 1.0f, 1);   /* the course's mults */
    l.bias = dlf__layer_tensor(3, wshape, 0.0f, 1);     /* the course's adds */
    l.rbn.sums = dlf__layer_tensor(4, sshape, 0.0f, 0);
    l.rbn.sqrs = dlf__layer_tensor(4, sshape, 0.0f, 0);
    l.rbn.batch = dlf__layer_tensor(0, NULL, 0.0f, 0);
    l.rbn.count = dlf__layer_tensor(0, NULL, 0.0f, 0);
    l.rbn.step = dlf__layer_tensor(0, NULL, 0.0f, 0);
    l.rbn.dbias = dlf__layer_tensor(0, NULL, 0.0f, 0);
    l.rbn.momentum = 0.1f;
    l.rbn.eps = 1e-5f;
    return l;
}

DLFDEF dlf_layer dlf_layer_dropout(float p)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_DROPOUT);
    l.p = p;
    return l;
}

DLFDEF dlf_layer dlf_layer_dropout2d(float p)
{
    dlf_layer l = dlf__layer_zero(DLF_LAYER_DROPOUT2D);
    l.p = p;
    return l;
}

/* A layer's named set of tensors, in the order PyTorch's state_dict lists them:
   parameters first (registered in __init__ order), then buffers. */
DLFDEF int dlf_layer_tensors(const dlf_layer *l, dlf_tensor **ts, const char **names, int *is_buffer)
{
    DLF__NOT_NULL(l, 0);
    dlf_tensor *t[DLF_LAYER_MAX_TENSORS];
    const char *nm[DLF_LAYER_MAX_TENSORS];
    int buf[DLF_LAYER_MAX_TENSORS], n = 0, i;
#define DLF__NAMED(tensor, name, is_buf) do { if (tensor) { t[n] = (tensor); nm[n] = (name); buf[n] = (is_buf); n++; } } while (0)
    switch (l->kind) {
    case DLF_LAYER_RUNNING_BATCHNORM:
        DLF__NAMED(l->weight, "mults", 0);
        DLF__NAMED(l->bias, "adds", 0);
        DLF__NAMED(l->rbn.sums, "sums", 1);
        DLF__NAMED(l->rbn.sqrs, "sqrs", 1);
        DLF__NAMED(l->rbn.batch, "batch", 1);
        DLF__NAMED(l->rbn.count, "count", 1);
        DLF__NAMED(l->rbn.step, "step", 1);
        DLF__NAMED(l->rbn.dbias, "dbias", 1);
        break;
    case DLF_LAYER_BATCHNORM:
        DLF__NAMED(l->weight, "weight", 0);
        DLF__NAMED(l->bias, "bias", 0);
        DLF__NAMED(l->bn.running_mean, "running_mean", 1);
        DLF__NAMED(l->bn.running_var, "running_var", 1);
        DLF__NAMED(l->bn.num_batches_tracked, "num_batches_tracked", 1);
        break;
    default:  /* every other kind owns at most a weight and a bias */
        DLF__NAMED(l->weight, "weight", 0);
        DLF__NAMED(l->bias, "bias", 0);
        break;
    }
#undef DLF__NAMED
    for (i = 0; i < n; i++) {
        if (ts) ts[i] = t[i];
        if (names) names[i] = nm[i];
        if (is_buffer) is_buffer[i] = buf[i];
    }
    return n;
}

/* 1 when every tensor the kind needs was allocated. */
DLFDEF int dlf_layer_ok(const dlf_layer *l)
{
    DLF__NOT_NULL(l, 0);
    switch (l->kind) {
    case DLF_LAYER_LINEAR: case DLF_LAYER_CONV2D: case DLF_LAYER_EMBEDDING:
        return l->weight != NULL;
    case DLF_LAYER_BATCHNORM:
        return l->weight && l->bias && l->bn.running_mean && l->bn.running_var && l->bn.num_batches_tracked;
    case DLF_LAYER_LAYERNORM: case DLF_LAYER_GROUPNORM:
        return l->weight && l->bias;
    case DLF_LAYER_RUNNING_BATCHNORM:
        return dlf_layer_tensors(l, NULL, NULL, NULL) == 8;
    case DLF_LAYER_RESIDUAL:
        return l->body != NULL;
    default:
        return 1;
    }
}

DLFDEF void dlf_layer_free(dlf_layer *l)
{
    DLF__NOT_NULL(l, );
    dlf_tensor *ts[DLF_LAYER_MAX_TENSORS];
    int i, n = dlf_layer_tensors(l, ts, NULL, NULL);
    for (i = 0; i < n; i++) dlf_tensor_free(ts[i]);
    if (l->body) {
        dlf_seq_free(l->body);
        DLF_FREE(l->body);
    }
    if (l->shortcut) {
        dlf_seq_free(l->shortcut);
        DLF_FREE(l->shortcut);
    }
    l->shortcut = NULL;
    memset(&l->bn, 0, sizeof l->bn);
    memset(&l->rbn, 0, sizeof l->rbn);
    l->weight = NULL;
    l->bias = NULL;
    l->body = NULL;
}

/* The residual connection: in the forward pass y = x + body(x), so backward gives x
   the gradient twice, g directly and g through the body: dL/dx = g + J_body^T g. The
   tape does this by itself: the add node sends g to both of its inputs. */
static dlf_tensor *dlf__residual_forward(dlf_tape *t, const dlf_layer *l, dlf_tensor *x)
{
    dlf_tensor *h = dlf_seq_forward(t, l->body, x), *id = l->shortcut ? dlf_seq_forward(t, l->shortcut, x) : x;
    char sx[64], sh[64];
    if (!h || !id) return NULL;
    if (!dlf_same_shape(id, h)) {
        dlf__panic("dlf residual: the body turns %s into %s but the %s gives %s; the sum needs one shape",
                   dlf_shape_str(x, sx, sizeof sx), dlf_shape_str(h, sh, sizeof sh), l->shortcut ? "shortcut" : "identity",
                   dlf_shape_str(id, sx, sizeof sx));
        return NULL;
    }
    return dlf_add(t, id, h);
}

/* One layer's forward: a plain switch, so `step` in a debugger lands in the op. */
DLFDEF dlf_tensor *dlf_layer_forward(dlf_tape *t, const dlf_layer *l, dlf_tensor *x)
{
    DLF__OP(t); DLF__NOT_NULL(l, NULL); DLF__INPUT(t, x);
    if (!x) return NULL;
    switch (l->kind) {
    case DLF_LAYER_LINEAR: return dlf_linear(t, x, l->weight, l->bias);
    case DLF_LAYER_CONV2D:
        if (l->conv.groups >= 1) return dlf_conv2d_ex(t, x, l->weight, l->bias, &l->conv);
        return dlf_conv2d(t, x, l->weight, l->bias, l->stride, l->pad);
    case DLF_LAYER_RELU: return dlf_relu(t, x);
    case DLF_LAYER_LEAKY_RELU: return dlf_leaky_relu(t, x, l->leak);
    case DLF_LAYER_GENERAL_RELU: return dlf_general_relu(t, x, l->leak, l->sub, l->maxv);
    case DLF_LAYER_SIGMOID: return dlf_sigmoid(t, x);
    case DLF_LAYER_TANH: return dlf_tanh(t, x);
    case DLF_LAYER_SOFTMAX: return dlf_softmax(t, x, -1);
    case DLF_LAYER_LOG_SOFTMAX: return dlf_log_softmax(t, x, -1);
    case DLF_LAYER_MAXPOOL2D:
        if (l->pool.kh >= 1) return dlf_maxpool2d_ex(t, x, &l->pool);
        return dlf_maxpool2d(t, x, l->k, l->stride, l->pad);
    case DLF_LAYER_AVGPOOL2D:
        if (l->pool.kh >= 1) return dlf_avgpool2d_ex(t, x, &l->pool);
        return dlf_avgpool2d(t, x, l->k, l->stride, l->pad);
    case DLF_LAYER_GLOBAL_AVGPOOL: return dlf_global_avgpool(t, x);
    case DLF_LAYER_FLATTEN: return dlf_flatten(t, x);
    case DLF_LAYER_EMBEDDING: return dlf_embedding(t, x, l->weight);
    case DLF_LAYER_RESIDUAL: return dlf__residual_forward(t, l, x);
    case DLF_LAYER_BATCHNORM: return dlf_batchnorm(t, x, l->weight, l->bias, &l->bn);
    case DLF_LAYER_LAYERNORM: return dlf_layernorm(t, x, l->d, l->weight, l->bias, l->eps);
    case DLF_LAYER_GROUPNORM: return dlf_groupnorm(t, x, l->groups, l->weight, l->bias, l->eps);
    case DLF_LAYER_INSTANCENORM: return dlf_instancenorm(t, x, l->weight, l->bias, l->eps);
    case DLF_LAYER_RUNNING_BATCHNORM:
        return dlf_running_batchnorm(t, x, l->weight, l->bias, &l->rbn);
    case DLF_LAYER_DROPOUT: return dlf_dropout(t, x, l->p);
    case DLF_LAYER_DROPOUT2D: return dlf_dropout2d(t, x, l->p);
    case DLF_LAYER_ADAPTIVE_AVGPOOL2D: return dlf_adaptive_avgpool2d(t, x, l->out_h, l->out_w);
    case DLF_LAYER_ADAPTIVE_MAXPOOL2D: return dlf_adaptive_maxpool2d(t, x, l->out_h, l->out_w);
    case DLF_LAYER_KIND_COUNT: break;
    }
    dlf__panic("dlf_layer_forward: unknown layer kind %d", (int)l->kind);
    return NULL;
}

DLFDEF void dlf_seq_init(dlf_seq *s)
{
    DLF__NOT_NULL(s, );
    memset(s, 0, sizeof *s);
}

DLFDEF int dlf_seq_add(dlf_seq *s, dlf_layer l)
{
    DLF__NOT_NULL(s, DLF_ERR_ARG);
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        dlf_layer *ls = (dlf_layer *)DLF_REALLOC(s->layers, (size_t)cap * sizeof(dlf_layer));
        if (!ls) return dlf__fail(DLF_ERR_NOMEM, "dlf_seq_add: out of memory for %d layers", cap);
        s->layers = ls;
        s->cap = cap;
    }
    s->layers[s->n++] = l;
    return DLF_OK;
}

DLFDEF void dlf_seq_free(dlf_seq *s)
{
    DLF__NOT_NULL(s, );
    int i;
    for (i = 0; i < s->n; i++) dlf_layer_free(&s->layers[i]);
    if (s->layers) DLF_FREE(s->layers);
    memset(s, 0, sizeof *s);
}

static void dlf__telemetry_seq_hook(dlf_tape *t, int layer, int kind, const dlf_tensor *x); /* stage 16 */

DLFDEF dlf_tensor *dlf_seq_forward_n(dlf_tape *t, const dlf_seq *s, dlf_tensor *x, int n_layers)
{
    DLF__OP(t); DLF__NOT_NULL(s, NULL); DLF__INPUT(t, x);
    int i;
    for (i = 0; i < n_layers && i < s->n && x; i++) {
        x = dlf_layer_forward(t, &s->layers[i], x);
        if (t->telemetry && x) dlf__telemetry_seq_hook(t, i, (int)s->layers[i].kind, x); /* off: one test */
    }
    return x;
}

DLFDEF dlf_tensor *dlf_seq_forward(dlf_tape *t, const dlf_seq *s, dlf_tensor *x)
{
    DLF__OP(t); DLF__NOT_NULL(s, NULL); DLF__INPUT(t, x);
    return dlf_seq_forward_n(t, s, x, s->n);
}

/* requires_grad of the first n layers' parameters (all of a residual body) set to `on`;
   BatchNorm's weight and bias stay trainable when keep_bn. Returns the tensors changed. */
static int dlf__seq_set_trainable(dlf_seq *s, int n_layers, int on, int keep_bn)
{
    int i, changed = 0;
    for (i = 0; i < n_layers && i < s->n; i++) {
        dlf_layer *l = &s->layers[i];
        int bn = l->kind == DLF_LAYER_BATCHNORM || l->kind == DLF_LAYER_RUNNING_BATCHNORM;
        dlf_tensor *ts[2];
        int k;
        if (l->body) changed += dlf__seq_set_trainable(l->body, l->body->n, on, keep_bn);
        if (l->shortcut) changed += dlf__seq_set_trainable(l->shortcut, l->shortcut->n, on, keep_bn);
        if (bn && keep_bn && !on) continue;
        ts[0] = l->weight;
        ts[1] = l->bias;
        for (k = 0; k < 2; k++)
            if (ts[k] && ts[k]->requires_grad != on) {
                ts[k]->requires_grad = on;
                if (on && !ts[k]->grad && dlf_tensor_requires_grad(ts[k]) != DLF_OK) return -1;
                changed++;
            }
    }
    return changed;
}

DLFDEF int dlf_seq_freeze(dlf_seq *s, int n_layers, int train_bn)
{
    if (!s) {
        dlf__panic("dlf_seq_freeze: s is NULL");
        return 0;
    }
    return dlf__seq_set_trainable(s, n_layers, 0, train_bn);
}

DLFDEF int dlf_seq_unfreeze(dlf_seq *s)
{
    if (!s) {
        dlf__panic("dlf_seq_unfreeze: s is NULL");
        return 0;
    }
    return dlf__seq_set_trainable(s, s->n, 1, 0);
}

// ResNets

/* Add l to s, or free it: DLF_OK or DLF_ERR_NOMEM (a constructor or the seq ran out). */
static int dlf__seq_take(dlf_seq *s, dlf_layer l)
{
    if (!dlf_layer_ok(&l) || dlf_seq_add(s, l) != DLF_OK) {
        dlf_layer_free(&l);
        return dlf__fail(DLF_ERR_NOMEM, "dlf ResNet: out of memory adding a layer");
    }
    return DLF_OK;
}

static dlf_layer dlf__act_layer(float leak, float sub)
{
    return leak == 0.0f && sub == 0.0f ? dlf_layer_simple(DLF_LAYER_RELU) : dlf_layer_general_relu(leak, sub, 0.0f);
}

/* conv (no bias, Kaiming normal for the leak) then BatchNorm, then the activation when act */
static int dlf__conv_bn(dlf_seq *s, int ni, int nf, int ks, int stride, float leak, float sub, int act, int zero_bn,
                        dlf_rng *r)
{
    dlf_layer c = dlf_layer_conv2d(ni, nf, ks, stride, ks / 2, 0, r), bn;
    int rc;
    if (c.weight) dlf_init_kaiming_normal(c.weight, r, leak, DLF_FAN_IN);
    if ((rc = dlf__seq_take(s, c)) != DLF_OK) return rc;
    bn = dlf_layer_batchnorm(nf);
    if (zero_bn && bn.weight) dlf_fill(bn.weight, 0.0f);
    if ((rc = dlf__seq_take(s, bn)) != DLF_OK) return rc;
    return act ? dlf__seq_take(s, dlf__act_layer(leak, sub)) : DLF_OK;
}

DLFDEF int dlf_resblock(dlf_seq *s, int ni, int nf, int stride, int ks, float leak, float sub, int zero_bn, dlf_rng *r)
{
    dlf_seq body, sc;
    int rc;
    if (!s || !r) {
        dlf__panic("dlf_resblock: %s is NULL", !s ? "s" : "r");
        return DLF_ERR_ARG;
    }
    if (ni < 1 || nf < 1 || (stride != 1 && stride != 2) || ks < 1 || ks % 2 == 0)
        return dlf__fail(DLF_ERR_ARG, "dlf_resblock: want channels >= 1, stride 1 or 2 and an odd kernel; got %d -> %d, "
                         "stride %d, kernel %d", ni, nf, stride, ks);
    dlf_seq_init(&body);
    dlf_seq_init(&sc);
    rc = dlf__conv_bn(&body, ni, nf, ks, 1, leak, sub, 1, 0, r);
    if (rc == DLF_OK) rc = dlf__conv_bn(&body, nf, nf, ks, stride, leak, sub, 0, zero_bn, r);
    if (rc == DLF_OK && stride == 2) {   /* the shortcut halves the size as the body does: 2x2 average */
        dlf_pool_cfg pc;
        memset(&pc, 0, sizeof pc);
        pc.kh = pc.kw = 2;
        pc.ceil_mode = 1;
        rc = dlf__seq_take(&sc, dlf_layer_pool_ex(DLF_LAYER_AVGPOOL2D, &pc));
    }
    if (rc == DLF_OK && ni != nf) rc = dlf__seq_take(&sc, dlf_layer_conv2d(ni, nf, 1, 1, 0, 1, r));
    if (rc == DLF_OK) {
        dlf_layer l = dlf_layer_residual_ex(&body, sc.n ? &sc : NULL);
        if (!dlf_layer_ok(&l)) rc = dlf__fail(DLF_ERR_NOMEM, "dlf_resblock: out of memory");
        else if ((rc = dlf_seq_add(s, l)) != DLF_OK) dlf_layer_free(&l);
    }
    dlf_seq_free(&body);   /* empty when the residual took them */
    dlf_seq_free(&sc);
    return rc == DLF_OK ? dlf__seq_take(s, dlf__act_layer(leak, sub)) : rc;
}

DLFDEF int dlf_resnet_build(dlf_seq *s, const dlf_resnet_cfg *cfg, dlf_rng *r)
{
    int i, j, rc = DLF_OK, c;
    if (!s || !cfg || !r) {
        dlf__panic("dlf_resnet_build: %s is NULL", !s ? "s" : !cfg ? "cfg" : "r");
        return DLF_ERR_ARG;
    }
    if (cfg->c_in < 1 || cfg->n_classes < 1 || cfg->n_stages < 1 || cfg->n_stages > 8)
        return dlf__fail(DLF_ERR_ARG, "dlf_resnet_build: want c_in, n_classes >= 1 and 1 to 8 stages; got %d, %d, %d",
                         cfg->c_in, cfg->n_classes, cfg->n_stages);
    if (cfg->first_ks < 0 || (cfg->first_ks > 0 && cfg->first_ks % 2 == 0))
        return dlf__fail(DLF_ERR_ARG, "dlf_resnet_build: first_ks %d is not odd (0 means 5)", cfg->first_ks);
    for (i = 0; i < cfg->n_stages; i++)
        if (cfg->widths[i] < 1 || cfg->depths[i] < 0)
            return dlf__fail(DLF_ERR_ARG, "dlf_resnet_build: stage %d has width %d and depth %d", i, cfg->widths[i],
                             cfg->depths[i]);
    c = cfg->c_in;
    if (cfg->stem) {   /* XResNet: three conv layers, then a max pool */
        static const int stem_w[3] = {32, 32, 64};
        dlf_pool_cfg pc;
        for (i = 0; i < 3 && rc == DLF_OK; i++) {
            rc = dlf__conv_bn(s, c, stem_w[i], 3, i == 0 ? 2 : 1, cfg->leak, cfg->sub, 1, 0, r);
            c = stem_w[i];
        }
        memset(&pc, 0, sizeof pc);
        pc.kh = pc.kw = 3;
        pc.sh = pc.sw = 2;
        pc.ph = pc.pw = 1;
        if (rc == DLF_OK) rc = dlf__seq_take(s, dlf_layer_pool_ex(DLF_LAYER_MAXPOOL2D, &pc));
    }
    for (i = 0; i < cfg->n_stages && rc == DLF_OK; i++) {
        int depth = cfg->depths[i] > 0 ? cfg->depths[i] : 1;
        for (j = 0; j < depth && rc == DLF_OK; j++) {
            int first_conv = !cfg->stem && i == 0 && j == 0;   /* the course's 5x5 on the raw image */
            int ks = first_conv ? (cfg->first_ks ? cfg->first_ks : 5) : 3;
            rc = dlf_resblock(s, c, cfg->widths[i], i > 0 && j == 0 ? 2 : 1, ks, cfg->leak, cfg->sub,
                              cfg->zero_bn, r);
            c = cfg->widths[i];
        }
    }
    if (rc == DLF_OK) rc = dlf__seq_take(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));
    if (rc == DLF_OK) rc = dlf__seq_take(s, dlf_layer_linear(c, cfg->n_classes, !cfg->head_bn, r));
    if (rc == DLF_OK && cfg->head_bn) rc = dlf__seq_take(s, dlf_layer_batchnorm(cfg->n_classes));
    if (rc != DLF_OK) dlf_seq_free(s);
    return rc;
}

/* Walk every named tensor of s in state_dict order, names prefixed (e.g. "3.body.");
   recurses into blocks. Each one goes to the list p (when not NULL) and, if it is a
   parameter, to params/names (the first cap). Returns the parameter count so far. */
static int dlf__seq_walk(const dlf_seq *s, const char *prefix, dlf_params *p, dlf_tensor **params,
                         char (*names)[DLF_PARAM_NAME_MAX], int cap, int n, int *rc)
{
    int i, j;
    for (i = 0; i < s->n; i++) {
        const dlf_layer *l = &s->layers[i];
        dlf_tensor *ts[DLF_LAYER_MAX_TENSORS];
        const char *what[DLF_LAYER_MAX_TENSORS];
        int buf[DLF_LAYER_MAX_TENSORS], k = dlf_layer_tensors(l, ts, what, buf);
        for (j = 0; j < k; j++) {
            char name[DLF_PARAM_NAME_MAX];
            snprintf(name, sizeof name, "%s%d.%s", prefix, i, what[j]);
            if (p && *rc == DLF_OK) {
                *rc = dlf_params_add(p, ts[j], name, buf[j]);
                if (*rc == DLF_OK && !buf[j])  /* biases and normalization weights: no weight decay */
                    p->items[p->n - 1].no_decay = strcmp(what[j], "bias") == 0 ||
                        (l->kind >= DLF_LAYER_BATCHNORM && l->kind <= DLF_LAYER_RUNNING_BATCHNORM);
            }
            if (buf[j]) continue;
            if (n < cap) {
                if (params) params[n] = ts[j];
                if (names) memcpy(names[n], name, sizeof name);
            }
            n++;
        }
        if (l->body) {
            char inner[DLF_PARAM_NAME_MAX];
            snprintf(inner, sizeof inner, "%s%d.body.", prefix, i);
            n = dlf__seq_walk(l->body, inner, p, params, names, cap, n, rc);
        }
        if (l->shortcut) {
            char inner[DLF_PARAM_NAME_MAX];
            snprintf(inner, sizeof inner, "%s%d.shortcut.", prefix, i);
            n = dlf__seq_walk(l->shortcut, inner, p, params, names, cap, n, rc);
        }
    }
    return n;
}

DLFDEF int dlf_seq_params(const dlf_seq *s, dlf_tensor **params, char (*names)[DLF_PARAM_NAME_MAX], int cap)
{
    int rc = DLF_OK;
    DLF__NOT_NULL(s, 0);
    return dlf__seq_walk(s, "", NULL, params, names, cap, 0, &rc);
}

DLFDEF int dlf_seq_collect(const dlf_seq *s, dlf_params *p)
{
    DLF__NOT_NULL(s, DLF_ERR_ARG); DLF__NOT_NULL(p, DLF_ERR_ARG);
    int rc = DLF_OK;
    dlf__seq_walk(s, "", p, NULL, NULL, 0, 0, &rc);
    return rc;
}

// parameter lists

DLFDEF void dlf_params_init(dlf_params *p)
{
    DLF__NOT_NULL(p, );
    memset(p, 0, sizeof *p);
}

DLFDEF int dlf_params_add(dlf_params *p, dlf_tensor *t, const char *name, int is_buffer)
{
    dlf_param *it;
    DLF__NOT_NULL(p, DLF_ERR_ARG); DLF__NOT_NULL(t, DLF_ERR_ARG); DLF__NOT_NULL(name, DLF_ERR_ARG);
    if (strlen(name) >= DLF_PARAM_NAME_MAX)
        return dlf__fail(DLF_ERR_ARG, "dlf_params_add: name \"%s\" is longer than %d characters", name, DLF_PARAM_NAME_MAX - 1);
    if (dlf_params_find(p, name))
        return dlf__fail(DLF_ERR_ARG, "dlf_params_add: \"%s\" is already in the list", name);
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        dlf_param *items = (dlf_param *)DLF_REALLOC(p->items, (size_t)cap * sizeof(dlf_param));
        if (!items) return dlf__fail(DLF_ERR_NOMEM, "dlf_params_add: out of memory for %d entries", cap);
        p->items = items;
        p->cap = cap;
    }
    it = &p->items[p->n++];
    memset(it, 0, sizeof *it);
    it->t = t;
    memcpy(it->name, name, strlen(name) + 1);
    it->is_buffer = is_buffer;
    it->no_decay = !is_buffer && t->ndim <= 1;
    return DLF_OK;
}

DLFDEF void dlf_params_free(dlf_params *p)
{
    DLF__NOT_NULL(p, );
    if (p->items) DLF_FREE(p->items);
    memset(p, 0, sizeof *p);
}

DLFDEF dlf_param *dlf_params_find(const dlf_params *p, const char *name)
{
    DLF__NOT_NULL(p, NULL); DLF__NOT_NULL(name, NULL);
    int i;
    for (i = 0; i < p->n; i++)
        if (strcmp(p->items[i].name, name) == 0) return &p->items[i];
    return NULL;
}

DLFDEF int dlf_params_group_no_decay(dlf_params *p, int group)
{
    DLF__NOT_NULL(p, DLF_ERR_ARG);
    int i, n = 0;
    for (i = 0; i < p->n; i++)
        if (!p->items[i].is_buffer && p->items[i].no_decay) {
            p->items[i].group = group;
            n++;
        }
    return n;
}

DLFDEF int dlf_params_set_group(dlf_params *p, const char *prefix, int group)
{
    int i, n = 0;
    size_t len;
    if (!p || !prefix) {
        dlf__panic("dlf_params_set_group: %s is NULL", !p ? "p" : "prefix");
        return 0;
    }
    len = strlen(prefix);
    for (i = 0; i < p->n; i++)
        if (!p->items[i].is_buffer && strncmp(p->items[i].name, prefix, len) == 0) {
            p->items[i].group = group;
            n++;
        }
    return n;
}

DLFDEF int dlf_params_tensors(const dlf_params *p, dlf_tensor **out, int cap)
{
    DLF__NOT_NULL(p, 0);
    int i, n = 0;
    for (i = 0; i < p->n; i++) {
        if (p->items[i].is_buffer) continue;
        if (n < cap && out) out[n] = p->items[i].t;
        n++;
    }
    return n;
}

/* The kind names, PyTorch's class names; checked against the enum like the op names. */
static const char *const dlf__layer_names[] = {
    "Linear", "Conv2d", "ReLU", "LeakyReLU", "GeneralRelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d(1)+Flatten", "Flatten", "Embedding", "Residual",
    "BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm2d", "RunningBatchNorm", "Dropout", "Dropout2d",
    "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"
};
typedef char dlf__layer_names_match_enum[(sizeof dlf__layer_names / sizeof dlf__layer_names[0] == DLF_LAYER_KIND_COUNT) ? 1 : -1];

DLFDEF const char *dlf_layer_kind_name(dlf_layer_kind kind)
{
    return ((int)kind >= 0 && kind < DLF_LAYER_KIND_COUNT) ? dlf__layer_names[kind] : "?";
}

#ifndef DLF_NO_STDIO
DLFDEF void dlf_seq_print(const dlf_seq *s)
{
    DLF__NOT_NULL(s, );
    int i;
    char s1[64];
    printf("Sequential(\n");
    for (i = 0; i < s->n; i++) {
        const dlf_layer *l = &s->layers[i];
        printf("  (%d): %s", i, dlf_layer_kind_name(l->kind));
        if (l->weight) printf(" weight %s%s", dlf_shape_str(l->weight, s1, sizeof s1), l->bias ? " +bias" : "");
        if (l->kind == DLF_LAYER_CONV2D && l->conv.groups >= 1)
            printf(" stride=(%d,%d) pad=(%d,%d) dilation=(%d,%d) groups=%d", l->conv.sh ? l->conv.sh : 1,
                   l->conv.sw ? l->conv.sw : 1, l->conv.ph, l->conv.pw, l->conv.dh ? l->conv.dh : 1,
                   l->conv.dw ? l->conv.dw : 1, l->conv.groups);
        else if ((l->kind == DLF_LAYER_MAXPOOL2D || l->kind == DLF_LAYER_AVGPOOL2D) && l->pool.kh >= 1)
            printf(" kernel=(%d,%d) stride=(%d,%d) pad=(%d,%d)%s%s", l->pool.kh, l->pool.kw,
                   l->pool.sh > 0 ? l->pool.sh : l->pool.kh, l->pool.sw > 0 ? l->pool.sw : l->pool.kw,
                   l->pool.ph, l->pool.pw, l->pool.ceil_mode ? " ceil_mode" : "",
                   l->pool.exclude_pad ? " count_include_pad=False" : "");
        else if (l->kind == DLF_LAYER_CONV2D || l->kind == DLF_LAYER_MAXPOOL2D || l->kind == DLF_LAYER_AVGPOOL2D)
            printf(" k=%d stride=%d pad=%d", l->k, l->stride, l->pad);
        if (l->kind == DLF_LAYER_LEAKY_RELU || l->kind == DLF_LAYER_GENERAL_RELU)
            printf(" leak=%g", (double)l->leak);
        if (l->kind == DLF_LAYER_GENERAL_RELU) printf(" sub=%g maxv=%g", (double)l->sub, (double)l->maxv);
        if (l->body && l->shortcut)
            printf(" shortcut(x) + body(x), body: %d layers, shortcut: %d", l->body->n, l->shortcut->n);
        else if (l->body) printf(" x + body(x), body: %d layers", l->body->n);
        if (l->kind == DLF_LAYER_BATCHNORM) printf(" eps=%g momentum=%g", (double)l->bn.eps, (double)l->bn.momentum);
        if (l->kind == DLF_LAYER_GROUPNORM) printf(" groups=%d", l->groups);
        if (l->kind == DLF_LAYER_DROPOUT || l->kind == DLF_LAYER_DROPOUT2D) printf(" p=%g", (double)l->p);
        if (l->kind == DLF_LAYER_ADAPTIVE_AVGPOOL2D || l->kind == DLF_LAYER_ADAPTIVE_MAXPOOL2D)
            printf(" output_size=(%d,%d)", l->out_h, l->out_w);
        printf("\n");
    }
    printf(")\n");
}
#endif

// >>stage7_init (implementation) --------------------------------------------------

DLFDEF int dlf_fan(const dlf_tensor *w, dlf_fan_mode mode)
{
    DLF__NOT_NULL(w, 0);
    int receptive = 1, i;
    if (w->ndim < 2) {
        char s[64];
        dlf__panic("dlf_fan: fan in/out need a weight with at least 2 dims, got %s",
                   dlf_shape_str(w, s, sizeof s));
        return 1;
    }
    for (i = 2; i < w->ndim; i++) receptive *= w->shape[i];
    return (mode == DLF_FAN_OUT ? w->shape[0] : w->shape[1]) * receptive;
}

DLFDEF float dlf_kaiming_gain(float a) { return sqrtf(2.0f / (1.0f + a * a)); }

DLFDEF void dlf_init_uniform(dlf_tensor *w, dlf_rng *r, float lo, float hi)
{
    DLF__NOT_NULL(w, ); DLF__NOT_NULL(r, );
    dlf_fill_uniform(w, r, lo, hi);
}
DLFDEF void dlf_init_normal(dlf_tensor *w, dlf_rng *r, float mean, float std)
{
    DLF__NOT_NULL(w, ); DLF__NOT_NULL(r, );
    dlf_fill_normal(w, r, mean, std);
}

/* Glorot & Bengio 2010: keep the variance of both the forward activations and the
   backward gradients, a compromise Var(w) = 2 / (fan_in + fan_out).
   A uniform U(-b, b) has variance b^2/3, hence b = sqrt(3) * std. */
DLFDEF void dlf_init_xavier_uniform(dlf_tensor *w, dlf_rng *r, float gain)
{
    DLF__NOT_NULL(w, ); DLF__NOT_NULL(r, );
    float std = gain * sqrtf(2.0f / (float)(dlf_fan(w, DLF_FAN_IN) + dlf_fan(w, DLF_FAN_OUT)));
    float bound = sqrtf(3.0f) * std;
    dlf_fill_uniform(w, r, -bound, bound);
}

DLFDEF void dlf_init_xavier_normal(dlf_tensor *w, dlf_rng *r, float gain)
{
    DLF__NOT_NULL(w, ); DLF__NOT_NULL(r, );
    float std = gain * sqrtf(2.0f / (float)(dlf_fan(w, DLF_FAN_IN) + dlf_fan(w, DLF_FAN_OUT)));
    dlf_fill_normal(w, r, 0.0f, std);
}

/* He et al. 2015: after a (leaky) ReLU with negative slope a, E[x^2] is (1 + a^2)/2
   of Var(pre-activation), so Var(w) = gain^2 / fan with gain^2 = 2 / (1 + a^2). */
DLFDEF void dlf_init_kaiming_uniform(dlf_tensor *w, dlf_rng *r, float a, dlf_fan_mode mode)
{
    DLF__NOT_NULL(w, ); DLF__NOT_NULL(r, );
    float std = dlf_kaiming_gain(a) / sqrtf((float)dlf_fan(w, mode));
    float bound = sqrtf(3.0f) * std;
    dlf_fill_uniform(w, r, -bound, bound);
}

DLFDEF void dlf_init_kaiming_normal(dlf_tensor *w, dlf_rng *r, float a, dlf_fan_mode mode)
{
    DLF__NOT_NULL(w, ); DLF__NOT_NULL(r, );
    float std = dlf_kaiming_gain(a) / sqrtf((float)dlf_fan(w, mode));
    dlf_fill_normal(w, r, 0.0f, std);
}

/* PyTorch's nn.Linear / nn.Conv2d default: kaiming_uniform with a = sqrt(5), i.e.
   gain^2 = 2/6 = 1/3 and bound = sqrt(3) * sqrt(1/3) / sqrt(fan_in) = 1/sqrt(fan_in):
   a std of 1/sqrt(3 fan_in), too small to keep a ReLU net's signal alive (lesson 02a).
   The bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
DLFDEF void dlf_init_torch_default(dlf_tensor *w, dlf_tensor *b, dlf_rng *r)
{
    DLF__NOT_NULL(w, ); DLF__NOT_NULL(r, );
    float bound = 1.0f / sqrtf((float)dlf_fan(w, DLF_FAN_IN));
    dlf_init_kaiming_uniform(w, r, sqrtf(5.0f), DLF_FAN_IN);
    if (b) dlf_fill_uniform(b, r, -bound, bound);
}

/* Mean and (unbiased, as torch.std) standard deviation of a tensor, in double. */
static void dlf__mean_std(const dlf_tensor *x, double *mean, double *std)
{
    double s = 0.0, ss = 0.0;
    int i;
    for (i = 0; i < x->size; i++) s += x->data[i];
    *mean = x->size ? s / x->size : 0.0;
    for (i = 0; i < x->size; i++) ss += (x->data[i] - *mean) * (x->data[i] - *mean);
    *std = x->size > 1 ? sqrt(ss / (x->size - 1)) : 0.0;
}

DLFDEF int dlf_lsuv_init(dlf_tensor *w, dlf_tensor *b, dlf_lsuv_fn fn, void *user,
                         const dlf_lsuv_cfg *cfg_in, float *mean_out, float *std_out)
{
    DLF__NOT_NULL(w, 0); DLF__NOT_NULL(fn, 0);
    dlf_lsuv_cfg cfg;
    dlf_tape tape;
    dlf_tensor *h = NULL;
    double mean = 0.0, std = 0.0;
    int passes = 0, it, i;
    memset(&cfg, 0, sizeof cfg);
    if (cfg_in) cfg = *cfg_in;
    if (cfg.tol <= 0.0f) cfg.tol = 1e-3f;
    if (cfg.max_iter <= 0) cfg.max_iter = 10;
    dlf_tape_init(&tape);
    dlf_tape_set_grad(&tape, 0);
    /* The course runs the two phases once each; the weight scaling then moves the
       mean again when an activation with an offset (relu, sub) follows. Repeating
       the pair until both hold fixes that; the first round is the course's. */
    for (it = 0; it < cfg.max_iter; it++) {
        int k;
        for (k = 0; k < cfg.max_iter; k++) {       /* shift the bias: mean -> 0 */
            dlf_tape_reset(&tape);
            h = fn(&tape, user);
            passes++;
            if (!h) break;
            dlf__mean_std(h, &mean, &std);
            if (!b || fabs(mean) < cfg.tol) break;
            for (i = 0; i < b->size; i++) b->data[i] -= (float)mean;
        }
        for (k = 0; k < cfg.max_iter; k++) {       /* scale the weight: std -> 1 */
            dlf_tape_reset(&tape);
            h = fn(&tape, user);
            passes++;
            if (!h) break;
            dlf__mean_std(h, &mean, &std);
            if (fabs(std - 1.0) < cfg.tol || std == 0.0) break;
            for (i = 0; i < w->size; i++) w->data[i] /= (float)std;
        }
        if (!h || ((!b || fabs(mean) < cfg.tol) && (fabs(std - 1.0) < cfg.tol || std == 0.0))) break;
    }
    dlf_tape_destroy(&tape);
    if (mean_out) *mean_out = (float)mean;
    if (std_out) *std_out = (float)std;
    return passes;
}

typedef struct dlf__seq_lsuv_ctx {
    const dlf_seq *s;     /* the model */
    dlf_tensor *x;        /* the fixed batch */
    int upto;             /* run this many layers */
} dlf__seq_lsuv_ctx;

static dlf_tensor *dlf__seq_lsuv_fn(dlf_tape *t, void *user)
{
    dlf__seq_lsuv_ctx *c = (dlf__seq_lsuv_ctx *)user;
    return dlf_seq_forward_n(t, c->s, c->x, c->upto);
}

DLFDEF int dlf_seq_lsuv(dlf_seq *s, dlf_tensor *x, const dlf_lsuv_cfg *cfg)
{
    DLF__NOT_NULL(s, DLF_ERR_ARG); DLF__NOT_NULL(x, DLF_ERR_ARG);
    dlf__seq_lsuv_ctx ctx;
    int i;
    ctx.s = s;
    ctx.x = x;
    for (i = 0; i < s->n; i++) {
        dlf_layer *l = &s->layers[i];
        dlf_layer_kind next = i + 1 < s->n ? s->layers[i + 1].kind : DLF_LAYER_FLATTEN;
        float mean = 0.0f, std = 0.0f;
        int passes;
        if (l->kind != DLF_LAYER_LINEAR && l->kind != DLF_LAYER_CONV2D) continue;
        ctx.upto = i + 1;
        if (next == DLF_LAYER_RELU || next == DLF_LAYER_LEAKY_RELU || next == DLF_LAYER_GENERAL_RELU ||
            next == DLF_LAYER_SIGMOID || next == DLF_LAYER_TANH)
            ctx.upto = i + 2;   /* measure after the activation, as the course does */
        passes = dlf_lsuv_init(l->weight, l->bias, dlf__seq_lsuv_fn, &ctx, cfg, &mean, &std);
#ifndef DLF_NO_STDIO
        if (cfg && cfg->verbose)
            printf("lsuv layer %d: mean %.4f std %.4f after %d passes\n", i, (double)mean, (double)std, passes);
#else
        (void)passes;
#endif
    }
    return DLF_OK;
}

// >>stage8_losses (implementation) ------------------------------------------------

static int dlf__same_shape_or_panic(const char *op, const dlf_tensor *a, const dlf_tensor *b)
{
    if (!dlf_same_shape(a, b)) {
        char sa[64], sb[64];
        dlf__panic("%s: pred %s and target %s must have the same shape (reshape one; broadcasting "
                   "(N,1) against (N,) would silently compare every pair)", op,
                   dlf_shape_str(a, sa, sizeof sa), dlf_shape_str(b, sb, sizeof sb));
        return 0;
    }
    return 1;
}

/* The reduction of a loss (dlf_loss_cfg): NULL is PyTorch's defaults (mean, no class
   weights, nothing ignored). Panics on a bad value, naming the loss. */
static const dlf_loss_cfg *dlf__loss_cfg(const char *op, const dlf_loss_cfg *cfg, int class_loss)
{
    static const dlf_loss_cfg dflt = {DLF_REDUCTION_MEAN, NULL, 0, 0};
    if (!cfg) return &dflt;
    if ((int)cfg->reduction < (int)DLF_REDUCTION_MEAN || (int)cfg->reduction > (int)DLF_REDUCTION_NONE) {
        dlf__panic("%s: reduction %d is none of DLF_REDUCTION_MEAN, _SUM, _NONE", op, (int)cfg->reduction);
        return NULL;
    }
    if (!class_loss && (cfg->weight || cfg->use_ignore_index)) {
        dlf__panic("%s: class weights and ignore_index are for dlf_nll_loss_ex and dlf_cross_entropy_ex only", op);
        return NULL;
    }
    return cfg;
}

/* Elementwise losses, per element i (n of them), then reduced (summed in double):
     mse: l_i = (p - y)^2
     l1:  l_i = |p - y|
     bce_with_logits: l_i = max(x,0) - x*y + log(1 + e^-|x|)
     bce (probabilities): l_i = -[y max(log p, -100) + (1-y) max(log(1-p), -100)]
   reduction mean: L = 1/n sum l_i;  sum: L = sum l_i;  none: out = l (p's shape).
   The bce_with_logits line is -[y log s(x) + (1-y) log(1 - s(x))] rewritten so that no exp
   overflows and no log sees 0: for x >= 0, log(1 + e^-x) is small and safe; for
   x < 0, -log s(x) = -x + log(1 + e^x) = max(x,0) - x + log(1 + e^-|x|).
   The plain bce clamps each log at -100 as PyTorch does, so p = 0 or 1 gives a finite
   loss (100 per element at most); p must lie in [0, 1] (PyTorch's check too). */
static dlf_tensor *dlf__elem_loss(dlf_tape *t, dlf_op op, dlf_tensor *p, dlf_tensor *y, const dlf_loss_cfg *cfg,
                                  const char *name)
{
    dlf_tensor *out;
    dlf_node *nd;
    double acc = 0.0;
    int i, none;
    if (!t || !p || !y) {
        dlf__panic("%s: %s is NULL", name, !t ? "t" : !p ? "pred" : "target");
        return NULL;
    }
    if (!(cfg = dlf__loss_cfg(name, cfg, 0))) return NULL;
    if (!dlf__same_shape_or_panic(name, p, y)) return NULL;
    none = cfg->reduction == DLF_REDUCTION_NONE;
    if (p->size == 0 && cfg->reduction == DLF_REDUCTION_MEAN) {
        dlf__panic("%s: empty input (the mean of nothing)", name);
        return NULL;
    }
    if (op == DLF_OP_BCE_LOSS)
        for (i = 0; i < p->size; i++)
            if (!(p->data[i] >= 0.0f && p->data[i] <= 1.0f)) {
                dlf__panic("%s: input %d is %g; a probability must lie in [0, 1] (for logits use "
                           "dlf_bce_with_logits)", name, i, (double)p->data[i]);
                return NULL;
            }
    out = none ? dlf__out(t, p->ndim, p->shape) : dlf__out(t, 0, NULL);
    if (!out) return NULL;
    for (i = 0; i < p->size; i++) {
        double x = p->data[i], d = x - y->data[i], l, lp, l1p;
        switch (op) {
        case DLF_OP_MSE_LOSS: l = d * d; break;
        case DLF_OP_L1_LOSS: l = fabs(d); break;
        case DLF_OP_BCE_LOSS:
            lp = x > 0.0 ? log(x) : -100.0;          /* log 0 = -inf, clamped */
            l1p = x < 1.0 ? log1p(-x) : -100.0;
            l = -(y->data[i] * (lp > -100.0 ? lp : -100.0) + (1.0 - y->data[i]) * (l1p > -100.0 ? l1p : -100.0));
            break;
        default: l = (x > 0 ? x : 0) - x * y->data[i] + log1p(exp(-fabs(x))); break;
        }
        if (none) out->data[i] = (float)l;
        else acc += l;
    }
    if (!none) out->data[0] = (float)(cfg->reduction == DLF_REDUCTION_MEAN ? acc / p->size : acc);
    nd = dlf__record(t, op, out, p, y);
    if (nd) nd->iarg[0] = (int)cfg->reduction;
    return out;
}

DLFDEF dlf_tensor *dlf_mse_loss(dlf_tape *t, dlf_tensor *pred, dlf_tensor *target)
{
    DLF__OP(t); DLF__INPUT(t, pred); DLF__INPUT(t, target);
    return dlf__elem_loss(t, DLF_OP_MSE_LOSS, pred, target, NULL, "dlf_mse_loss");
}

DLFDEF dlf_tensor *dlf_mse_loss_ex(dlf_tape *t, dlf_tensor *pred, dlf_tensor *target, const dlf_loss_cfg *cfg)
{
    DLF__OP(t);
    return dlf__elem_loss(t, DLF_OP_MSE_LOSS, pred, target, cfg, "dlf_mse_loss_ex");
}

DLFDEF dlf_tensor *dlf_l1_loss(dlf_tape *t, dlf_tensor *pred, dlf_tensor *target)
{
    DLF__OP(t); DLF__INPUT(t, pred); DLF__INPUT(t, target);
    return dlf__elem_loss(t, DLF_OP_L1_LOSS, pred, target, NULL, "dlf_l1_loss");
}

DLFDEF dlf_tensor *dlf_l1_loss_ex(dlf_tape *t, dlf_tensor *pred, dlf_tensor *target, const dlf_loss_cfg *cfg)
{
    DLF__OP(t);
    return dlf__elem_loss(t, DLF_OP_L1_LOSS, pred, target, cfg, "dlf_l1_loss_ex");
}

DLFDEF dlf_tensor *dlf_bce_with_logits(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target)
{
    DLF__OP(t); DLF__INPUT(t, logits); DLF__INPUT(t, target);
    return dlf__elem_loss(t, DLF_OP_BCE_LOGITS, logits, target, NULL, "dlf_bce_with_logits");
}

DLFDEF dlf_tensor *dlf_bce_with_logits_ex(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target, const dlf_loss_cfg *cfg)
{
    DLF__OP(t);
    return dlf__elem_loss(t, DLF_OP_BCE_LOGITS, logits, target, cfg, "dlf_bce_with_logits_ex");
}

DLFDEF dlf_tensor *dlf_bce_loss(dlf_tape *t, dlf_tensor *prob, dlf_tensor *target)
{
    DLF__OP(t);
    return dlf__elem_loss(t, DLF_OP_BCE_LOSS, prob, target, NULL, "dlf_bce_loss");
}

DLFDEF dlf_tensor *dlf_bce_loss_ex(dlf_tape *t, dlf_tensor *prob, dlf_tensor *target, const dlf_loss_cfg *cfg)
{
    DLF__OP(t);
    return dlf__elem_loss(t, DLF_OP_BCE_LOSS, prob, target, cfg, "dlf_bce_loss_ex");
}

/* Backward, per element, with g_i = dL/dl_i: the output's gradient (reduction none),
   out.grad / n (mean) or out.grad (sum):
     mse: dp = g_i * 2 (p - y)                dy = -dp
     l1:  dp = g_i * sign(p - y)              dy = -dp   (0 at p = y)
     bce_with_logits: dx = g_i * (s(x) - y)   dy = -g_i * x
     bce: dp = g_i * (p - y) / max(p (1-p), 1e-12)    (PyTorch's guard at p = 0 or 1)
          dy = g_i * (log(1-p) - log p)               (unclamped, as PyTorch) */
static void dlf__elem_loss_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *p = nd->in[0], *y = nd->in[1];
    float *gp = dlf__grad(t, p), *gy = dlf__grad(t, y);
    int i, red = nd->iarg[0];
    float scale = red == DLF_REDUCTION_MEAN ? 1.0f / (float)p->size : 1.0f;
    for (i = 0; i < p->size; i++) {
        float x = p->data[i], d = x - y->data[i], dp, dy, den;
        float g = (red == DLF_REDUCTION_NONE ? nd->out->grad[i] : nd->out->grad[0]) * scale;
        switch (nd->op) {
        case DLF_OP_MSE_LOSS: dp = 2.0f * d; dy = -dp; break;
        case DLF_OP_L1_LOSS: dp = d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f); dy = -dp; break;
        case DLF_OP_BCE_LOSS:
            den = (1.0f - x) * x;
            dp = d / (den > 1e-12f ? den : 1e-12f);
            dy = (float)(log1p(-(double)x) - log((double)x));
            break;
        default: dp = 1.0f / (1.0f + expf(-x)) - y->data[i]; dy = -x; break;
        }
        if (gp) gp[i] += g * dp;
        if (gy) gy[i] += g * dy;
    }
}

static int dlf__class_check(const char *op, const dlf_tensor *x, const dlf_tensor *target,
                            const dlf_loss_cfg *cfg)
{
    if (x->ndim != 2 || target->ndim != 1 || target->shape[0] != x->shape[0] ||
        (x->shape[0] == 0 && cfg->reduction == DLF_REDUCTION_MEAN)) {
        char sx[64], st[64];
        dlf__panic("%s: want input (N, C) and target (N,) (N > 0 for the mean); got input %s, target %s", op,
                   dlf_shape_str(x, sx, sizeof sx), dlf_shape_str(target, st, sizeof st));
        return 0;
    }
    if (cfg->weight && (cfg->weight->ndim != 1 || cfg->weight->shape[0] != x->shape[1])) {
        char sx[64], sw[64];
        dlf__panic("%s: want class weights (C,) for input %s; got %s", op, dlf_shape_str(x, sx, sizeof sx),
                   dlf_shape_str(cfg->weight, sw, sizeof sw));
        return 0;
    }
    return 1;
}

/* Target i's class: -1 when it equals the ignored index (cfg->use_ignore_index), else
   dlf__index_at's check (a whole number in 0..C-1, range-checked before any conversion
   to int: a NaN or huge label panics, never undefined behavior); -2 after a panic. */
static int dlf__class_at(const char *op, const dlf_tensor *target, int i, int C, int use_ignore, int ignore_index)
{
    int y;
    if (use_ignore && target->data[i] == (float)ignore_index) return -1;
    y = dlf__index_at(op, target, i, C);
    return y < 0 ? -2 : y;
}

/* NLL and cross-entropy, one function: per row i with target y_i and weight w = weight[y_i]
   (1 without weights),
     nll: l_i = -w logp[i][y_i]
     ce:  l_i = w (log sum_j e^(x[i][j] - m_i) - (x[i][y_i] - m_i)),   m_i = max_j x[i][j]
          (= w (logsumexp_i - x[i][y_i]) = nll(log_softmax(x)), fused; written with x - m
          first, as log_softmax is, so large logits keep their precision)
   ignored rows (target == ignore_index) give l_i = 0 and count nowhere. Reduction
     mean: L = sum_i l_i / sum_i w_{y_i} over the rows not ignored (PyTorch's weighted mean;
           without weights that is the number of rows counted: all ignored gives 0/0 = NaN)
     sum:  L = sum_i l_i;   none: out (N,) = l.
   The divisor goes in farg[0]; for ce, m_i and log sum_i go in aux (N, 2) so backward
   rebuilds softmax without a max pass; the class weights are saved[0]. */
static dlf_tensor *dlf__class_loss(dlf_tape *t, dlf_op op, dlf_tensor *x, dlf_tensor *target,
                                   const dlf_loss_cfg *cfg, const char *name)
{
    dlf_tensor *out, *stats = NULL;
    dlf_node *nd;
    double acc = 0.0, wsum = 0.0;
    int i, j, N, C, none, sshape[2];
    if (!t || !x || !target) {
        dlf__panic("%s: %s is NULL", name, !t ? "t" : !x ? (op == DLF_OP_NLL_LOSS ? "logp" : "logits") : "target");
        return NULL;
    }
    if (!(cfg = dlf__loss_cfg(name, cfg, 1))) return NULL;
    if (!dlf__class_check(name, x, target, cfg)) return NULL;
    N = x->shape[0];
    C = x->shape[1];
    none = cfg->reduction == DLF_REDUCTION_NONE;
    out = none ? dlf__out(t, 1, &N) : dlf__out(t, 0, NULL);
    if (!out) return NULL;
    if (op == DLF_OP_CROSS_ENTROPY) {
        sshape[0] = N;
        sshape[1] = 2;
        if (!(stats = dlf__out(t, 2, sshape))) return NULL;
    }
    for (i = 0; i < N; i++) {
        const float *x_i = x->data + (size_t)i * C;
        int y = dlf__class_at(name, target, i, C, cfg->use_ignore_index, cfg->ignore_index);
        double l = 0.0, w;
        if (y == -2) return NULL;
        if (stats) {                                   /* every row, ignored or not: backward reads them */
            float m = x_i[0];
            double sum = 0.0;
            for (j = 1; j < C; j++) m = x_i[j] > m ? x_i[j] : m;
            for (j = 0; j < C; j++) sum += exp((double)x_i[j] - m);
            stats->data[2 * i] = m;
            stats->data[2 * i + 1] = (float)log(sum);
        }
        if (y >= 0) {
            w = cfg->weight ? cfg->weight->data[y] : 1.0;
            if (stats) l = w * ((double)stats->data[2 * i + 1] - (double)(x_i[y] - stats->data[2 * i]));
            else l = -w * x_i[y];
            wsum += w;
        }
        if (none) out->data[i] = (float)l;
        else acc += l;
    }
    if (!none) out->data[0] = (float)(cfg->reduction == DLF_REDUCTION_MEAN ? acc / wsum : acc);
    nd = dlf__record(t, op, out, x, target);
    if (nd) {
        nd->iarg[0] = (int)cfg->reduction;
        nd->iarg[1] = cfg->use_ignore_index;
        nd->iarg[2] = cfg->ignore_index;
        nd->farg[0] = cfg->reduction == DLF_REDUCTION_MEAN ? (float)wsum : 1.0f;
        nd->aux = stats;
        nd->saved[0] = cfg->weight;
    }
    return out;
}

DLFDEF dlf_tensor *dlf_nll_loss(dlf_tape *t, dlf_tensor *logp, dlf_tensor *target)
{
    DLF__OP(t); DLF__INPUT(t, logp); DLF__INPUT(t, target);
    return dlf__class_loss(t, DLF_OP_NLL_LOSS, logp, target, NULL, "dlf_nll_loss");
}

DLFDEF dlf_tensor *dlf_nll_loss_ex(dlf_tape *t, dlf_tensor *logp, dlf_tensor *target, const dlf_loss_cfg *cfg)
{
    DLF__OP(t);
    return dlf__class_loss(t, DLF_OP_NLL_LOSS, logp, target, cfg, "dlf_nll_loss_ex");
}

DLFDEF dlf_tensor *dlf_cross_entropy(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target)
{
    DLF__OP(t); DLF__INPUT(t, logits); DLF__INPUT(t, target);
    return dlf__class_loss(t, DLF_OP_CROSS_ENTROPY, logits, target, NULL, "dlf_cross_entropy");
}

DLFDEF dlf_tensor *dlf_cross_entropy_ex(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target, const dlf_loss_cfg *cfg)
{
    DLF__OP(t);
    return dlf__class_loss(t, DLF_OP_CROSS_ENTROPY, logits, target, cfg, "dlf_cross_entropy_ex");
}

/* Backward of both, row i not ignored, with g_i = w_{y_i} * (out.grad[i] (none) or
   out.grad / divisor (mean, sum)):
     nll: only the picked entry moved L:      dlogp[i][y_i] -= g_i
     ce:  dx[i][j] += g_i (softmax(x_i)_j - [j == y_i]),  softmax_j = e^((x_j - m_i) - log sum_i):
          the prediction minus the one-hot truth. Ignored rows get nothing. */
static void dlf__class_loss_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *target = nd->in[1], *stats = nd->aux, *weight = nd->saved[0];
    float *gx = dlf__grad(t, x);
    int i, j, N = x->shape[0], C = x->shape[1], red = nd->iarg[0];
    const char *name = nd->op == DLF_OP_NLL_LOSS ? "dlf_nll_loss backward" : "dlf_cross_entropy backward";
    if (!gx) return;
    for (i = 0; i < N; i++) {
        const float *x_i = x->data + (size_t)i * C;
        float *gx_i = gx + (size_t)i * C;
        int y = dlf__class_at(name, target, i, C, nd->iarg[1], nd->iarg[2]);
        float g;
        if (y == -2) return;
        if (y < 0) continue;
        g = red == DLF_REDUCTION_NONE ? nd->out->grad[i] : nd->out->grad[0] / nd->farg[0];
        if (weight) g *= weight->data[y];
        if (!stats) {
            gx_i[y] -= g;
            continue;
        }
        for (j = 0; j < C; j++) {
            float softmax_j = expf((x_i[j] - stats->data[2 * i]) - stats->data[2 * i + 1]);
            float onehot_j = j == y ? 1.0f : 0.0f;
            gx_i[j] += g * (softmax_j - onehot_j);
        }
    }
}

DLFDEF float dlf_accuracy(const dlf_tensor *logits, const dlf_tensor *target)
{
    DLF__NOT_NULL(logits, NAN); DLF__NOT_NULL(target, NAN);
    int i, j, N, C, correct = 0;
    if (logits->ndim != 2 || target->ndim != 1 || target->shape[0] != logits->shape[0]) {
        char sx[64], st[64];
        dlf__panic("dlf_accuracy: want logits (N, C) and target (N,); got logits %s, target %s",
                   dlf_shape_str(logits, sx, sizeof sx), dlf_shape_str(target, st, sizeof st));
        return 0.0f;
    }
    N = logits->shape[0];
    C = logits->shape[1];
    if (N == 0) return 0.0f;
    for (i = 0; i < N; i++) {
        const float *x_i = logits->data + (size_t)i * C;
        int best = 0;
        for (j = 1; j < C; j++)
            if (x_i[j] > x_i[best]) best = j;
        correct += (float)best == target->data[i];
    }
    return (float)correct / (float)N;
}

/* Cross-entropy against soft targets q (N,C): the row's loss is
     l_i = sum_j q_ij (lse_i - x_ij),   lse_i = log sum_k e^x_ik,
   with lse_i - x_ij computed as log(sum_k e^(x_ik - m)) - (x_ij - m) (m the row's max),
   which keeps its precision for large logits. PyTorch's F.cross_entropy(x, q) for a
   probability target. Backward (g the upstream scalar):
     dL/dx_ij = g/N (softmax_ij sum_k q_ik - q_ij)    (sum_k q_ik = 1 for a distribution)
     dL/dq_ij = g/N (lse_i - x_ij)
   m_i and log sum_k e^(x_ik - m_i) go in aux (N, 2), as dlf_cross_entropy's do: backward
   rebuilds softmax_ij = e^((x_ij - m_i) - log sum) and lse_i - x_ij from them, never from
   lse_i rounded to a float (at logits near 1e4 that rounding alone costs ~1e-4 relative). */
DLFDEF dlf_tensor *dlf_cross_entropy_soft(dlf_tape *t, dlf_tensor *logits, dlf_tensor *q)
{
    DLF__OP(t);
    dlf_tensor *out, *stats;
    dlf_node *nd;
    double acc = 0.0;
    int i, j, N, C, stats_shape[2];
    if (!t || !logits || !q) {
        dlf__panic("dlf_cross_entropy_soft: %s is NULL", !t ? "the tape" : !logits ? "logits" : "q");
        return NULL;
    }
    if (logits->ndim != 2 || !dlf_same_shape(logits, q)) {
        char sx[64], sq[64];
        dlf__panic("dlf_cross_entropy_soft: want logits (N, C) and q of the same shape; got %s and %s",
                   dlf_shape_str(logits, sx, sizeof sx), dlf_shape_str(q, sq, sizeof sq));
        return NULL;
    }
    N = logits->shape[0];
    C = logits->shape[1];
    if (N == 0 || C == 0) {
        dlf__panic("dlf_cross_entropy_soft: empty logits (%d, %d)", N, C);
        return NULL;
    }
    out = dlf__out(t, 0, NULL);
    stats_shape[0] = N;
    stats_shape[1] = 2;
    stats = dlf__out(t, 2, stats_shape);   /* per row: m_i and log sum e^(x - m_i), for backward */
    if (!out || !stats) return NULL;
    for (i = 0; i < N; i++) {
        const float *x_i = logits->data + (size_t)i * C, *q_i = q->data + (size_t)i * C;
        float m = x_i[0];
        double sum = 0.0, ls;
        for (j = 1; j < C; j++) m = x_i[j] > m || x_i[j] != x_i[j] ? x_i[j] : m;
        for (j = 0; j < C; j++) sum += exp((double)x_i[j] - m);
        ls = log(sum);
        for (j = 0; j < C; j++) acc += (double)q_i[j] * (ls - ((double)x_i[j] - m));
        stats->data[2 * i] = m;
        stats->data[2 * i + 1] = (float)ls;
    }
    out->data[0] = (float)(acc / N);
    nd = dlf__record(t, DLF_OP_CROSS_ENTROPY_SOFT, out, logits, q);
    if (nd) nd->aux = stats;
    return out;
}

static void dlf__cross_entropy_soft_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *q = nd->in[1], *stats = nd->aux;
    float *gx = dlf__grad(t, x), *gq = dlf__grad(t, q);
    int i, j, N = x->shape[0], C = x->shape[1];
    float g = nd->out->grad[0] / (float)N;
    for (i = 0; i < N; i++) {
        const float *x_i = x->data + (size_t)i * C, *q_i = q->data + (size_t)i * C;
        float m = stats->data[2 * i], ls = stats->data[2 * i + 1], qsum = 0.0f;
        for (j = 0; j < C; j++) qsum += q_i[j];
        for (j = 0; j < C; j++) {
            float d = x_i[j] - m;   /* exact when x_ij is near m: the digits that matter */
            if (gx) gx[(size_t)i * C + j] += g * (expf(d - ls) * qsum - q_i[j]);
            if (gq) gq[(size_t)i * C + j] += g * (ls - d);
        }
    }
}

/* Label smoothing (Szegedy et al., "Rethinking the Inception Architecture", 2016; the
   course's LabelSmoothingCrossEntropy): the target keeps 1 - eps of its weight on the
   true class and spreads eps evenly over all C classes. */
DLFDEF dlf_tensor *dlf_cross_entropy_smooth(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target, float eps)
{
    DLF__OP(t);
    dlf_tensor *q;
    dlf_loss_cfg mean_cfg;
    int i, N, C;
    if (!t) {
        dlf__panic("dlf_cross_entropy_smooth: the tape is NULL");
        return NULL;
    }
    memset(&mean_cfg, 0, sizeof mean_cfg);   /* reduction mean, no weights */
    if (!logits || !target) {
        dlf__panic("dlf_cross_entropy_smooth: %s is NULL", !logits ? "logits" : "target");
        return NULL;
    }
    if (!dlf__class_check("dlf_cross_entropy_smooth", logits, target, &mean_cfg)) return NULL;
    if (!(eps >= 0.0f && eps <= 1.0f)) {
        dlf__panic("dlf_cross_entropy_smooth: eps must be in [0, 1], got %g", (double)eps);
        return NULL;
    }
    N = logits->shape[0];
    C = logits->shape[1];
    q = dlf__out(t, 2, logits->shape);
    if (!q) return NULL;
    for (i = 0; i < N; i++) {
        int j, y = dlf__index_at("dlf_cross_entropy_smooth", target, i, C);
        if (y < 0) return NULL;
        for (j = 0; j < C; j++) q->data[(size_t)i * C + j] = eps / (float)C + (j == y ? 1.0f - eps : 0.0f);
    }
    return dlf_cross_entropy_soft(t, logits, q);
}


// >>stage9_norm (implementation) --------------------------------------------------

/* x (N,C,...) as (N, C, L), L = the product of the rest (1 for (N,C)). */
static int dlf__ncl(const char *op, const dlf_tensor *x, int *N, int *C, int *L)
{
    char s[64];
    if (!x) { dlf__panic("%s: x is NULL", op); return 0; }
    if (x->ndim < 2) {
        dlf__panic("%s: x must be (N,C), (N,C,L) or (N,C,H,W), got %s", op, dlf_shape_str(x, s, sizeof s));
        return 0;
    }
    *N = x->shape[0];
    *C = x->shape[1];
    *L = x->size / (*N * *C > 0 ? *N * *C : 1);
    return 1;
}

/* weight or bias of a normalization: NULL, or exactly n values. */
static int dlf__norm_affine_ok(const char *op, const char *what, const dlf_tensor *p, int n)
{
    char s[64];
    if (!p || p->size == n) return 1;
    dlf__panic("%s: %s has shape %s, needs %d values (one per channel)", op, what, dlf_shape_str(p, s, sizeof s), n);
    return 0;
}

/* Sums over one contiguous row of n floats: 8 independent float accumulators (which
   the compiler keeps in one vector register; a single double accumulator would
   serialize every add), combined in double. Rows are at most a few thousand values,
   so the float partial sums lose nothing that matters. */
#define DLF__LANES 8
static double dlf__row_sum(const float *a, const float *b, float shift, int n)
{   /* sum_j (a_j - shift) * (b ? b_j : a_j - shift) */
    float acc[DLF__LANES] = {0};
    double s = 0.0;
    int j = 0, k;
    if (b) {
        for (; j + DLF__LANES <= n; j += DLF__LANES)
            for (k = 0; k < DLF__LANES; k++) acc[k] += (a[j + k] - shift) * b[j + k];
        for (; j < n; j++) s += (double)(a[j] - shift) * b[j];
    } else {
        for (; j + DLF__LANES <= n; j += DLF__LANES)
            for (k = 0; k < DLF__LANES; k++) acc[k] += (a[j + k] - shift) * (a[j + k] - shift);
        for (; j < n; j++) s += (double)(a[j] - shift) * (a[j] - shift);
    }
    for (k = 0; k < DLF__LANES; k++) s += acc[k];
    return s;
}

static double dlf__row_plain_sum(const float *a, int n)
{
    float acc[DLF__LANES] = {0};
    double s = 0.0;
    int j = 0, k;
    for (; j + DLF__LANES <= n; j += DLF__LANES)
        for (k = 0; k < DLF__LANES; k++) acc[k] += a[j + k];
    for (; j < n; j++) s += a[j];
    for (k = 0; k < DLF__LANES; k++) s += acc[k];
    return s;
}

/* Mean and biased variance of nb blocks of len contiguous values, block starts
   stride apart. Two passes: the mean, then the squared deviations (never
   E[x^2] - mean^2, which cancels badly when the mean is large). */
static void dlf__block_stats(const float *x, int nb, int len, size_t stride, double *mean, double *var)
{
    double s = 0.0, ss = 0.0, m, count = (double)nb * len;
    int i;
    for (i = 0; i < nb; i++) s += dlf__row_plain_sum(x + (size_t)i * stride, len);
    m = s / count;
    for (i = 0; i < nb; i++) ss += dlf__row_sum(x + (size_t)i * stride, NULL, (float)m, len);
    *mean = m;
    *var = ss / count;
}

/* y = (x - mean[c]) * rstd[c] * w[c] + b[c] over x (N,C,L), one mean per channel,
   computed as y = x * alpha + beta with alpha = rstd w, beta = b - mean alpha: one
   multiply-add per value. */
static void dlf__bn_apply(const dlf_tensor *x, dlf_tensor *y, const float *mean, const float *rstd,
                          const dlf_tensor *w, const dlf_tensor *b, int N, int C, int L)
{
    int n, c, l;
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            const float *x_nc = x->data + ((size_t)n * C + c) * L;
            float *y_nc = y->data + ((size_t)n * C + c) * L;
            float alpha = rstd[c] * (w ? w->data[c] : 1.0f);
            float beta = (b ? b->data[c] : 0.0f) - mean[c] * alpha;
            for (l = 0; l < L; l++) y_nc[l] = x_nc[l] * alpha + beta;
        }
}

DLFDEF dlf_tensor *dlf_batchnorm(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, const dlf_bn_state *st)
{
    DLF__OP(t); DLF__INPUT(t, x);
    int N, C, L, c, M, training;
    dlf_tensor *y, *mean, *rstd;
    dlf_node *nd;
    float eps = st ? st->eps : 1e-5f, mom = st ? st->momentum : 0.1f;
    if (!dlf__live(t, "dlf_batchnorm", x, w, b)) return NULL;
    if (!dlf__ncl("dlf_batchnorm", x, &N, &C, &L)) return NULL;
    if (!dlf__norm_affine_ok("dlf_batchnorm", "weight", w, C) || !dlf__norm_affine_ok("dlf_batchnorm", "bias", b, C))
        return NULL;
    M = N * L;
    training = t->training || !st;  /* no running statistics: batch statistics in eval too, as PyTorch */
    if (training && M < 2) {
        dlf__panic("dlf_batchnorm: training needs more than one value per channel, got N=%d with %d per item "
                   "(use eval mode, or RunningBatchNorm, GroupNorm)", N, L);
        return NULL;
    }
    y = dlf__out(t, x->ndim, x->shape);
    mean = dlf__out(t, 1, &C);
    rstd = dlf__out(t, 1, &C);
    if (!y || !mean || !rstd) return NULL;
    DLF__OMP(omp parallel for if (x->size > DLF__PAR_MIN))
    for (c = 0; c < C; c++) {
        double m, v;
        if (!training) {
            mean->data[c] = st->running_mean->data[c];
            rstd->data[c] = (float)(1.0 / sqrt((double)st->running_var->data[c] + eps));
            continue;
        }
        dlf__block_stats(x->data + (size_t)c * L, N, L, (size_t)C * L, &m, &v);
        mean->data[c] = (float)m;
        rstd->data[c] = (float)(1.0 / sqrt(v + eps));           /* 1/sqrt(var + eps), biased var */
        if (st) {                                               /* the unbiased variance is tracked */
            st->running_mean->data[c] = (float)(mom * m + (1.0 - mom) * st->running_mean->data[c]);
            st->running_var->data[c] = (float)(mom * v * M / (M - 1) + (1.0 - mom) * st->running_var->data[c]);
        }
    }
    if (training && st && st->num_batches_tracked) st->num_batches_tracked->data[0] += 1.0f;
    if (training && st) {   /* the buffers were updated in place */
        dlf__written(st->running_mean);
        dlf__written(st->running_var);
        dlf__written(st->num_batches_tracked);
    }
    dlf__bn_apply(x, y, mean->data, rstd->data, w, b, N, C, L);
    nd = dlf__record3(t, DLF_OP_BATCHNORM, y, x, w, b);
    if (nd) {
        nd->saved[0] = mean;
        nd->saved[1] = rstd;
        nd->farg[0] = training ? 1.0f / (float)M : 0.0f;  /* k = d mean / d x_i */
    }
    return y;
}

/* The reference: the formulas one value at a time, every sum in double, no fusing.
     mean_c = 1/M sum x,  var_c = 1/M sum (x - mean_c)^2,  xhat = (x - mean_c) / sqrt(var_c + eps),
     y = xhat w_c + b_c;  the running statistics as in dlf_batchnorm.
   Its node has iarg[0] = 1, so backward takes dlf__bn_naive_backward. */
DLFDEF dlf_tensor *dlf_batchnorm_naive(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, const dlf_bn_state *st)
{
    DLF__OP(t); DLF__INPUT(t, x);
    int N, C, L, c, n, l, M, training;
    dlf_tensor *y, *mean, *rstd;
    dlf_node *nd;
    float eps = st ? st->eps : 1e-5f, mom = st ? st->momentum : 0.1f;
    if (!dlf__live(t, "dlf_batchnorm_naive", x, w, b)) return NULL;
    if (!dlf__ncl("dlf_batchnorm_naive", x, &N, &C, &L)) return NULL;
    if (!dlf__norm_affine_ok("dlf_batchnorm_naive", "weight", w, C) || !dlf__norm_affine_ok("dlf_batchnorm_naive", "bias", b, C))
        return NULL;
    M = N * L;
    training = t->training || !st;
    if (training && M < 2) {
        dlf__panic("dlf_batchnorm_naive: training needs more than one value per channel, got N=%d with %d per item", N, L);
        return NULL;
    }
    y = dlf__out(t, x->ndim, x->shape);
    mean = dlf__out(t, 1, &C);
    rstd = dlf__out(t, 1, &C);
    if (!y || !mean || !rstd) return NULL;
    for (c = 0; c < C; c++) {
        double m = 0.0, v = 0.0;
        if (training) {
            for (n = 0; n < N; n++)
                for (l = 0; l < L; l++) m += x->data[((size_t)n * C + c) * L + l];
            m /= M;
            for (n = 0; n < N; n++)
                for (l = 0; l < L; l++) {
                    double d = x->data[((size_t)n * C + c) * L + l] - m;
                    v += d * d;
                }
            v /= M;
            if (st) {
                st->running_mean->data[c] = (float)(mom * m + (1.0 - mom) * st->running_mean->data[c]);
                st->running_var->data[c] = (float)(mom * v * M / (M - 1) + (1.0 - mom) * st->running_var->data[c]);
            }
        } else {
            m = st->running_mean->data[c];
            v = st->running_var->data[c];
        }
        mean->data[c] = (float)m;
        rstd->data[c] = (float)(1.0 / sqrt(v + eps));
        for (n = 0; n < N; n++)
            for (l = 0; l < L; l++) {
                size_t i = ((size_t)n * C + c) * L + l;
                double xhat = (x->data[i] - m) / sqrt(v + eps);
                y->data[i] = (float)(xhat * (w ? w->data[c] : 1.0) + (b ? b->data[c] : 0.0));
            }
    }
    if (training && st && st->num_batches_tracked) st->num_batches_tracked->data[0] += 1.0f;
    if (training && st) {   /* the buffers were updated in place */
        dlf__written(st->running_mean);
        dlf__written(st->running_var);
        dlf__written(st->num_batches_tracked);
    }
    nd = dlf__record3(t, DLF_OP_BATCHNORM, y, x, w, b);
    if (nd) {
        nd->saved[0] = mean;
        nd->saved[1] = rstd;
        nd->farg[0] = training ? 1.0f / (float)M : 0.0f;
        nd->iarg[0] = 1;
    }
    return y;
}

/* Naive backward, term by term (in training; in eval the mean and variance are
   constants and only the first term is left):
     dxhat = dy w;  dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
     dw = sum dy xhat,  db = sum dy. */
static void dlf__bn_naive_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    const float *mean = nd->saved[0]->data, *rstd = nd->saved[1]->data, *g = nd->out->grad;
    float *gx = dlf__grad(t, x), *gw = dlf__grad(t, w), *gb = dlf__grad(t, b);
    int N = x->shape[0], C = x->shape[1], L = x->size / (N * C), c, n, l, training = nd->farg[0] != 0.0f;
    for (c = 0; c < C; c++) {
        double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0, sum_g = 0.0, sum_g_xhat = 0.0, M = (double)N * L;
        double wc = w ? w->data[c] : 1.0;
        for (n = 0; n < N; n++)
            for (l = 0; l < L; l++) {
                size_t i = ((size_t)n * C + c) * L + l;
                double xhat = (x->data[i] - mean[c]) * (double)rstd[c];
                sum_g += g[i];
                sum_g_xhat += g[i] * xhat;
                sum_dxhat += g[i] * wc;
                sum_dxhat_xhat += g[i] * wc * xhat;
            }
        if (gw) gw[c] += (float)sum_g_xhat;
        if (gb) gb[c] += (float)sum_g;
        if (!gx) continue;
        for (n = 0; n < N; n++)
            for (l = 0; l < L; l++) {
                size_t i = ((size_t)n * C + c) * L + l;
                double xhat = (x->data[i] - mean[c]) * (double)rstd[c], dxhat = g[i] * wc;
                if (training) dxhat -= sum_dxhat / M + xhat * sum_dxhat_xhat / M;
                gx[i] += (float)(rstd[c] * dxhat);
            }
    }
}

/* Backward of BatchNorm and RunningBatchNorm. In the forward pass this was
   y = xhat * w + b with xhat = (x - mean) * rstd, where mean and var depend on x with
   d mean / dx_i = k (1/M for BatchNorm; mom1/count for RunningBatchNorm; 0 in eval).
   Per channel, with dxhat = dy * w:
       dw = sum dy * xhat,   db = sum dy,
       dx_i = rstd * (dxhat_i - k sum dxhat - xhat_i kv sum dxhat*xhat)
   kv = k, except 0 where RunningBatchNorm clamped the variance (aux holds kv per channel). */
static void dlf__bn_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    const float *mean = nd->saved[0]->data, *rstd = nd->saved[1]->data, *g = nd->out->grad;
    float *gx = dlf__grad(t, x), *gw = dlf__grad(t, w), *gb = dlf__grad(t, b);
    int N = x->shape[0], C = x->shape[1], L = x->size / (N * C), c;
    double k = nd->farg[0];
    if (nd->op == DLF_OP_BATCHNORM && nd->iarg[0] == 1) {
        dlf__bn_naive_backward(t, nd);
        return;
    }
    DLF__OMP(omp parallel for if (x->size > DLF__PAR_MIN))
    for (c = 0; c < C; c++) {
        double sum_g = 0.0, sum_gx = 0.0, kv = nd->aux ? nd->aux->data[c] : k;
        double r = rstd[c], wc = w ? w->data[c] : 1.0, gain, a_g, a_x, a_0;
        int n, l;
        for (n = 0; n < N; n++) {   /* sum dy, and sum dy * xhat = rstd * sum dy * (x - mean) */
            const float *x_nc = x->data + ((size_t)n * C + c) * L, *g_nc = g + ((size_t)n * C + c) * L;
            sum_g += dlf__row_plain_sum(g_nc, L);
            sum_gx += dlf__row_sum(x_nc, g_nc, mean[c], L);
        }
        sum_gx *= r;
        if (gw) gw[c] += (float)sum_gx;
        if (gb) gb[c] += (float)sum_g;
        if (!gx) continue;
        /* dx = rstd w (dy - k sum_g - xhat kv sum_gx), as a_g dy + a_x (x - mean) + a_0:
             term 1   a_g = rstd w
             term 2   a_0 = -rstd w k sum_g            (through the mean)
             term 3   a_x = -rstd^2 w kv sum_gx        (through the variance) */
        gain = r * wc;
        a_g = gain;
        a_x = -gain * r * kv * sum_gx;
        a_0 = -gain * k * sum_g;
        for (n = 0; n < N; n++) {
            const float *x_nc = x->data + ((size_t)n * C + c) * L, *g_nc = g + ((size_t)n * C + c) * L;
            float *gx_nc = gx + ((size_t)n * C + c) * L;
            float fa_g = (float)a_g, fa_x = (float)a_x, fa_0 = (float)a_0, m = mean[c];
            for (l = 0; l < L; l++) gx_nc[l] += fa_g * g_nc[l] + fa_x * (x_nc[l] - m) + fa_0;
        }
    }
}

DLFDEF dlf_tensor *dlf_groupnorm(dlf_tape *t, dlf_tensor *x, int groups, dlf_tensor *w, dlf_tensor *b, float eps)
{
    DLF__OP(t); DLF__INPUT(t, x);
    int N, C, L, G = groups, Cg, n, g, c, l, sizes[2];
    dlf_tensor *y, *mean, *rstd;
    dlf_node *nd;
    char s[64];
    if (!dlf__live(t, "dlf_groupnorm", x, w, b)) return NULL;
    if (!dlf__ncl("dlf_groupnorm", x, &N, &C, &L)) return NULL;
    if (G <= 0 || C % G != 0) {
        dlf__panic("dlf_groupnorm: %d groups do not divide the %d channels of x %s", G, C, dlf_shape_str(x, s, sizeof s));
        return NULL;
    }
    if (!dlf__norm_affine_ok("dlf_groupnorm", "weight", w, C) || !dlf__norm_affine_ok("dlf_groupnorm", "bias", b, C))
        return NULL;
    if (eps <= 0.0f) eps = 1e-5f;
    Cg = C / G;
    sizes[0] = N;
    sizes[1] = G;
    y = dlf__out(t, x->ndim, x->shape);
    mean = dlf__out(t, 2, sizes);
    rstd = dlf__out(t, 2, sizes);
    if (!y || !mean || !rstd) return NULL;
    DLF__OMP(omp parallel for if (x->size > DLF__PAR_MIN))
    for (n = 0; n < N; n++)
        for (g = 0; g < G; g++) {
            size_t at = ((size_t)n * C + (size_t)g * Cg) * L;   /* the group's values are contiguous */
            double m, v;
            dlf__block_stats(x->data + at, 1, Cg * L, 0, &m, &v);
            mean->data[n * G + g] = (float)m;
            rstd->data[n * G + g] = (float)(1.0 / sqrt(v + eps));
            for (c = g * Cg; c < (g + 1) * Cg; c++) {
                const float *x_nc = x->data + ((size_t)n * C + c) * L;
                float *y_nc = y->data + ((size_t)n * C + c) * L;
                float wc = w ? w->data[c] : 1.0f, bc = b ? b->data[c] : 0.0f;
                for (l = 0; l < L; l++) y_nc[l] = (x_nc[l] - mean->data[n * G + g]) * rstd->data[n * G + g] * wc + bc;
            }
        }
    nd = dlf__record3(t, DLF_OP_GROUPNORM, y, x, w, b);
    if (nd) {
        nd->saved[0] = mean;
        nd->saved[1] = rstd;
        nd->iarg[0] = G;
    }
    return y;
}

/* Backward of GroupNorm (and so of LayerNorm and InstanceNorm). In the forward pass
   this was y = xhat * w[c] + b[c], xhat = (x - mean) * rstd, with mean and var over
   the group's S = (C/G)*L values. Per group, with dxhat = dy * w[c]:
       dx_i = rstd * (dxhat_i - mean(dxhat) - xhat_i * mean(dxhat * xhat))
   and per channel dw[c] = sum over n, l of dy * xhat, db[c] = sum dy. */
static void dlf__groupnorm_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    const float *mean = nd->saved[0]->data, *rstd = nd->saved[1]->data, *g = nd->out->grad;
    float *gx = dlf__grad(t, x), *gw = dlf__grad(t, w), *gb = dlf__grad(t, b);
    int N = x->shape[0], C = x->shape[1], L = x->size / (N * C), G = nd->iarg[0], Cg = C / G, n, gi, c, l;
    for (n = 0; n < N; n++)
        for (gi = 0; gi < G; gi++) {
            float m = mean[n * G + gi], r = rstd[n * G + gi];
            double sum_d = 0.0, sum_dx = 0.0, S = (double)Cg * L;
            for (c = gi * Cg; c < (gi + 1) * Cg; c++) {
                const float *x_nc = x->data + ((size_t)n * C + c) * L, *g_nc = g + ((size_t)n * C + c) * L;
                float wc = w ? w->data[c] : 1.0f;
                double cw = 0.0, cb = 0.0;
                for (l = 0; l < L; l++) {
                    double xhat = ((double)x_nc[l] - m) * r;
                    sum_d += (double)g_nc[l] * wc;
                    sum_dx += (double)g_nc[l] * wc * xhat;
                    cw += g_nc[l] * xhat;
                    cb += g_nc[l];
                }
                if (gw) gw[c] += (float)cw;
                if (gb) gb[c] += (float)cb;
            }
            if (!gx) continue;
            for (c = gi * Cg; c < (gi + 1) * Cg; c++) {
                const float *x_nc = x->data + ((size_t)n * C + c) * L, *g_nc = g + ((size_t)n * C + c) * L;
                float *gx_nc = gx + ((size_t)n * C + c) * L;
                float wc = w ? w->data[c] : 1.0f;
                for (l = 0; l < L; l++) {
                    double xhat = ((double)x_nc[l] - m) * r;
                    double dx = (double)g_nc[l] * wc;  /* term 1: dxhat */
                    dx -= sum_d / S;                   /* term 2: through the mean */
                    dx -= xhat * sum_dx / S;           /* term 3: through the variance */
                    gx_nc[l] += (float)(r * dx);
                }
            }
        }
}

/* LayerNorm is GroupNorm with one group over a (rows, d) view: each row is an item
   of d "channels" with L = 1, so w and b are per value. */
DLFDEF dlf_tensor *dlf_layernorm(dlf_tape *t, dlf_tensor *x, int d, dlf_tensor *w, dlf_tensor *b, float eps)
{
    DLF__OP(t); DLF__INPUT(t, x);
    int shape[2];
    char s[64];
    dlf_tensor *x2, *y2;
    if (d <= 0 || x->size % d != 0) {
        dlf__panic("dlf_layernorm: cannot normalize x %s over its last %d values", dlf_shape_str(x, s, sizeof s), d);
        return NULL;
    }
    shape[0] = x->size / d;
    shape[1] = d;
    x2 = dlf_reshape(t, x, 2, shape);
    y2 = x2 ? dlf_groupnorm(t, x2, 1, w, b, eps) : NULL;
    return y2 ? dlf_reshape(t, y2, x->ndim, x->shape) : NULL;
}

DLFDEF dlf_tensor *dlf_instancenorm(dlf_tape *t, dlf_tensor *x, dlf_tensor *w, dlf_tensor *b, float eps)
{
    DLF__OP(t); DLF__INPUT(t, x);
    if (!x || x->ndim < 3) {
        char s[64];
        dlf__panic("dlf_instancenorm: x must be (N,C,L) or (N,C,H,W), got %s", x ? dlf_shape_str(x, s, sizeof s) : "NULL");
        return NULL;
    }
    return dlf_groupnorm(t, x, x->shape[1], w, b, eps);
}

/* torch.lerp's formula: a + w (b - a) for w < 0.5, else b - (b - a)(1 - w). */
static float dlf__lerp(float a, float b, float w)
{
    return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

/* The running statistics update of one training step (see the stage comment). */
static void dlf__rbn_update(const dlf_rbn_state *st, const dlf_tensor *x, int N, int C, int L, float mom1)
{
    int c;
    for (c = 0; c < C; c++) {
        double s = 0.0, ss = 0.0;
        int n, l;
        for (n = 0; n < N; n++) {
            const float *x_nc = x->data + ((size_t)n * C + c) * L;
            for (l = 0; l < L; l++) {
                s += x_nc[l];
                ss += (double)x_nc[l] * x_nc[l];
            }
        }
        st->sums->data[c] = dlf__lerp(st->sums->data[c], (float)s, mom1);
        st->sqrs->data[c] = dlf__lerp(st->sqrs->data[c], (float)ss, mom1);
    }
    st->count->data[0] = dlf__lerp(st->count->data[0], (float)N * L, mom1);
    st->dbias->data[0] = st->dbias->data[0] * (1.0f - mom1) + mom1;
    st->batch->data[0] += (float)N;
    st->step->data[0] += 1.0f;
    dlf__written(st->sums); dlf__written(st->sqrs); dlf__written(st->count);
    dlf__written(st->dbias); dlf__written(st->batch); dlf__written(st->step);
}

DLFDEF dlf_tensor *dlf_running_batchnorm(dlf_tape *t, dlf_tensor *x, dlf_tensor *mults, dlf_tensor *adds,
                                         const dlf_rbn_state *st)
{
    DLF__OP(t); DLF__INPUT(t, x); DLF__INPUT(t, mults); DLF__INPUT(t, adds);
    int N, C, L, c;
    float mom1 = 0.0f, eps, cnt, db;
    dlf_tensor *y, *mean, *rstd, *kv;
    dlf_node *nd;
    if (!dlf__live(t, "dlf_running_batchnorm", x, mults, adds)) return NULL;
    if (!dlf__ncl("dlf_running_batchnorm", x, &N, &C, &L)) return NULL;
    if (!st || !st->sums || st->sums->size != C) {
        dlf__panic("dlf_running_batchnorm: needs a state with %d channels (dlf_layer_running_batchnorm makes one)", C);
        return NULL;
    }
    if (!dlf__norm_affine_ok("dlf_running_batchnorm", "mults", mults, C) ||
        !dlf__norm_affine_ok("dlf_running_batchnorm", "adds", adds, C))
        return NULL;
    if (t->training && N < 2) {
        dlf__panic("dlf_running_batchnorm: training needs a batch of at least 2, got %d", N);
        return NULL;
    }
    eps = st->eps > 0.0f ? st->eps : 1e-5f;
    y = dlf__out(t, x->ndim, x->shape);
    mean = dlf__out(t, 1, &C);
    rstd = dlf__out(t, 1, &C);
    kv = dlf__out(t, 1, &C);
    if (!y || !mean || !rstd || !kv) return NULL;
    if (t->training) {
        mom1 = (float)(1.0 - (1.0 - st->momentum) / sqrt((double)N - 1.0));
        dlf__rbn_update(st, x, N, C, L, mom1);
    }
    cnt = st->count->data[0];
    db = st->step->data[0] < 100.0f ? st->dbias->data[0] : 1.0f;  /* debias early steps */
    for (c = 0; c < C; c++) {
        float sums = st->sums->data[c] / db, sqrs = st->sqrs->data[c] / db, count = cnt / db;
        float m = sums / count;
        float var = sqrs / count - m * m;
        int clamped = st->batch->data[0] < 20.0f && var < 0.01f;  /* early batches: keep var sane */
        if (!(cnt > 0.0f && db > 0.0f)) {   /* eval before any training batch: no statistics yet, */
            m = 0.0f;                       /* so mean 0 and variance 1, the starting running */
            var = 1.0f;                     /* statistics of PyTorch's BatchNorm (0/0 gave NaN) */
            clamped = 0;
        }
        if (clamped) var = 0.01f;
        if (var < 0.0f) {  /* E[x^2] - mean^2 can round below 0 in float (the course's formula): */
            var = 0.0f;    /* clamp, so sqrt(var + eps) stays a number; no variance gradient */
            clamped = 1;
        }
        mean->data[c] = m;
        rstd->data[c] = 1.0f / sqrtf(var + eps);
        kv->data[c] = t->training && !clamped ? mom1 / cnt : 0.0f;
    }
    dlf__bn_apply(x, y, mean->data, rstd->data, mults, adds, N, C, L);
    nd = dlf__record3(t, DLF_OP_RUNNING_BATCHNORM, y, x, mults, adds);
    if (nd) {
        nd->saved[0] = mean;
        nd->saved[1] = rstd;
        nd->aux = kv;
        nd->farg[0] = t->training ? mom1 / cnt : 0.0f;  /* k = d mean / d x_i */
    }
    return y;
}

// >>stage10_dropout (implementation) -----------------------------------------------

/* y = x * m with m = keep / (1 - p) per value (inner = 1) or per (n, c) block of
   inner values (Dropout2d). The mask is an arena tensor the node keeps. */
static dlf_tensor *dlf__dropout_apply(dlf_tape *t, dlf_tensor *x, dlf_tensor *m, int inner)
{
    dlf_tensor *y = dlf__out(t, x->ndim, x->shape);
    dlf_node *nd;
    int i;
    if (!y) return NULL;
    for (i = 0; i < x->size; i++) y->data[i] = x->data[i] * m->data[i / inner];
    nd = dlf__record(t, DLF_OP_DROPOUT, y, x, NULL);
    if (nd) {
        nd->saved[0] = m;
        nd->iarg[0] = inner;
    }
    return y;
}

/* Backward: in the forward pass this was y = x * m, so dx = dy * m. */
static void dlf__dropout_backward(dlf_tape *t, dlf_node *nd)
{
    float *gx = dlf__grad(t, nd->in[0]);
    const float *g = nd->out->grad, *m = nd->saved[0]->data;
    int i, inner = nd->iarg[0];
    if (!gx) return;
    for (i = 0; i < nd->out->size; i++) gx[i] += g[i] * m[i / inner];
}

static dlf_tensor *dlf__dropout(dlf_tape *t, dlf_tensor *x, float p, int per_channel, const char *op)
{
    dlf_tensor *m;
    float scale;
    int i, n, inner = 1;
    char s[64];
    if (!x) { dlf__panic("%s: x is NULL", op); return NULL; }
    if (!dlf__live(t, op, x, NULL, NULL)) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) { dlf__panic("%s: p = %g must be in [0, 1]", op, (double)p); return NULL; }
    if (!t->training || p == 0.0f) return x;  /* eval mode: the identity, x itself */
    if (per_channel) {
        if (x->ndim < 3) {
            dlf__panic("%s: x must be (N,C,H,W) or (N,C,L), got %s", op, dlf_shape_str(x, s, sizeof s));
            return NULL;
        }
        inner = x->size / (x->shape[0] * x->shape[1]);
    }
    n = x->size / inner;
    m = dlf__out(t, 1, &n);
    if (!m) return NULL;
    scale = p < 1.0f ? 1.0f / (float)(1.0 - (double)p) : 0.0f;
    for (i = 0; i < n; i++) m->data[i] = dlf_rng_uniform(&t->rng) >= p ? scale : 0.0f;  /* kept with prob 1 - p */
    return dlf__dropout_apply(t, x, m, inner);
}

DLFDEF dlf_tensor *dlf_dropout(dlf_tape *t, dlf_tensor *x, float p)
{
    DLF__OP(t); DLF__INPUT(t, x);
    return dlf__dropout(t, x, p, 0, "dlf_dropout");
}
DLFDEF dlf_tensor *dlf_dropout2d(dlf_tape *t, dlf_tensor *x, float p)
{
    DLF__OP(t); DLF__INPUT(t, x);
    return dlf__dropout(t, x, p, 1, "dlf_dropout2d");
}

DLFDEF dlf_tensor *dlf_dropout_mask(dlf_tape *t, dlf_tensor *x, const dlf_tensor *keep, float p)
{
    DLF__OP(t); DLF__INPUT(t, x); DLF__INPUT(t, keep);
    dlf_tensor *m;
    float scale;
    int i, inner;
    char s1[64], s2[64];
    if (!x || !keep) { dlf__panic("dlf_dropout_mask: x or keep is NULL"); return NULL; }
    if (!dlf__live(t, "dlf_dropout_mask", x, keep, NULL)) return NULL;
    if (keep->size <= 0 || x->size % keep->size != 0 || !(p >= 0.0f && p < 1.0f)) {
        dlf__panic("dlf_dropout_mask: keep %s does not fit x %s (or p = %g is not in [0, 1))",
                   dlf_shape_str(keep, s1, sizeof s1), dlf_shape_str(x, s2, sizeof s2), (double)p);
        return NULL;
    }
    inner = x->size / keep->size;
    m = dlf__out(t, 1, &keep->size);
    if (!m) return NULL;
    scale = 1.0f / (float)(1.0 - (double)p);
    for (i = 0; i < keep->size; i++) m->data[i] = keep->data[i] != 0.0f ? scale : 0.0f;
    return dlf__dropout_apply(t, x, m, inner);
}

// >>stage11_optim (implementation) ------------------------------------------------

static const char *const dlf__optim_names[] = {"sgd", "rmsprop", "adagrad", "adam", "adamw", "lamb"};
typedef char dlf__optim_names_match_enum[(sizeof dlf__optim_names / sizeof dlf__optim_names[0] == DLF_OPTIM_KIND_COUNT) ? 1 : -1];

/* State slot names by kind, in slot order; PyTorch's state keys. */
static const char *const dlf__optim_state[DLF_OPTIM_KIND_COUNT][DLF_OPTIM_MAX_STATE] = {
    {"momentum_buffer", NULL, NULL},                  /* SGD */
    {"square_avg", "momentum_buffer", "grad_avg"},    /* RMSProp */
    {"sum", NULL, NULL},                              /* Adagrad */
    {"exp_avg", "exp_avg_sq", NULL},                  /* Adam */
    {"exp_avg", "exp_avg_sq", NULL},                  /* AdamW */
    {"exp_avg", "exp_avg_sq", NULL}                   /* LAMB */
};

DLFDEF const char *dlf_optim_kind_name(dlf_optim_kind kind)
{
    return ((int)kind >= 0 && kind < DLF_OPTIM_KIND_COUNT) ? dlf__optim_names[kind] : "?";
}

DLFDEF int dlf_optim_kind_from_name(const char *name)
{
    int k;
    for (k = 0; k < DLF_OPTIM_KIND_COUNT; k++)
        if (name && strcmp(name, dlf__optim_names[k]) == 0) return k;
    return -1;
}

DLFDEF const char *dlf_optim_state_name(dlf_optim_kind kind, int slot)
{
    if ((int)kind < 0 || kind >= DLF_OPTIM_KIND_COUNT || slot < 0 || slot >= DLF_OPTIM_MAX_STATE) return NULL;
    return dlf__optim_state[kind][slot];
}

/* sokol's _sg_def: a zero field takes its default. */
static float dlf__def(float v, float def) { return v == 0.0f ? def : v; }

DLFDEF void dlf_optim_defaults(dlf_optim_kind kind, dlf_optim_cfg *c)
{
    DLF__NOT_NULL(c, );
    int adaptive_lr = kind == DLF_OPTIM_RMSPROP || kind == DLF_OPTIM_ADAGRAD;
    c->lr = dlf__def(c->lr, adaptive_lr ? 1e-2f : 1e-3f);
    c->alpha = dlf__def(c->alpha, 0.99f);
    c->beta1 = dlf__def(c->beta1, 0.9f);
    c->beta2 = dlf__def(c->beta2, 0.999f);
    c->eps = dlf__def(c->eps, kind == DLF_OPTIM_ADAGRAD ? 1e-10f : kind == DLF_OPTIM_LAMB ? 1e-6f : 1e-8f);
    if (kind == DLF_OPTIM_ADAMW) c->decoupled_wd = 1;
}

/* Which slots a parameter of group c needs: PyTorch keeps no momentum buffer
   without momentum, and no grad_avg unless centered. */
static int dlf__optim_slot_used(dlf_optim_kind kind, const dlf_optim_cfg *c, int slot)
{
    if (!dlf_optim_state_name(kind, slot)) return 0;
    if (kind == DLF_OPTIM_SGD) return c->momentum != 0.0f;
    if (kind == DLF_OPTIM_RMSPROP && slot == 1) return c->momentum > 0.0f;
    if (kind == DLF_OPTIM_RMSPROP && slot == 2) return c->centered;
    return 1;
}

static int dlf__optim_check(dlf_optim_kind kind, const dlf_optim_cfg *c, int g)
{
    if ((int)kind < 0 || kind >= DLF_OPTIM_KIND_COUNT) {
        dlf__panic("dlf_optim_create: unknown kind %d", (int)kind);
        return 0;
    }
    if (c->lr < 0.0f || c->momentum < 0.0f || c->weight_decay < 0.0f || c->eps < 0.0f ||
        c->beta1 >= 1.0f || c->beta2 >= 1.0f || c->alpha > 1.0f) {
        dlf__panic("dlf_optim_create: group %d of %s: lr %g, momentum %g, weight_decay %g, eps %g must not be "
                   "negative, beta1 %g and beta2 %g must be < 1, alpha %g <= 1", g, dlf_optim_kind_name(kind),
                   c->lr, c->momentum, c->weight_decay, c->eps, c->beta1, c->beta2, c->alpha);
        return 0;
    }
    if (kind == DLF_OPTIM_SGD && c->nesterov && (c->momentum <= 0.0f || c->dampening != 0.0f)) {
        dlf__panic("dlf_optim_create: nesterov needs momentum > 0 and dampening 0 (got momentum %g, dampening %g)",
                   c->momentum, c->dampening);
        return 0;
    }
    return 1;
}

/* The common body of both creators: params[i] goes to group group_of[i] (NULL: 0),
   named names[i] (NULL: ""). */
static dlf_optim *dlf__optim_new(dlf_optim_kind kind, dlf_tensor **params, const int *group_of,
                                 const char *const *names, int n, const dlf_optim_cfg *groups, int n_groups)
{
    dlf_optim *o;
    int i, g, k;
    if (n < 0 || n_groups < 1 || n_groups > DLF_OPTIM_MAX_GROUPS) {
        dlf__panic("dlf_optim_create: %d parameters in %d groups (1 to %d groups)", n, n_groups, DLF_OPTIM_MAX_GROUPS);
        return NULL;
    }
    for (g = 0; g < n_groups; g++) {  /* check before allocating: a panic handler may longjmp out */
        dlf_optim_cfg c;
        memset(&c, 0, sizeof c);
        if (groups) c = groups[g];
        dlf_optim_defaults(kind, &c);
        if (!dlf__optim_check(kind, &c, g)) return NULL;
    }
    o = (dlf_optim *)dlf__malloc(sizeof *o, "an optimizer");
    if (!o) return NULL;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->n_groups = n_groups;
    for (g = 0; g < n_groups; g++) {
        if (groups) o->groups[g] = groups[g];
        dlf_optim_defaults(kind, &o->groups[g]);
        if (!dlf__optim_check(kind, &o->groups[g], g)) { DLF_FREE(o); return NULL; }
    }
    o->params = (dlf_optim_param *)dlf__malloc((size_t)(n ? n : 1) * sizeof(dlf_optim_param), "optimizer parameters");
    if (!o->params) { DLF_FREE(o); return NULL; }
    memset(o->params, 0, (size_t)(n ? n : 1) * sizeof(dlf_optim_param));
    o->n_params = n;
    for (i = 0; i < n; i++) {
        dlf_optim_param *q = &o->params[i];
        const dlf_optim_cfg *c;
        q->p = params[i];
        q->group = group_of ? group_of[i] : 0;
        if (!q->p || q->group < 0 || q->group >= n_groups) {
            dlf__panic("dlf_optim_create: parameter %d is NULL or in group %d of %d", i, q->group, n_groups);
            dlf_optim_free(o);
            return NULL;
        }
        if (names && names[i]) snprintf(q->name, sizeof q->name, "%s", names[i]);
        c = &o->groups[q->group];
        for (k = 0; k < DLF_OPTIM_MAX_STATE; k++) {
            if (!dlf__optim_slot_used(kind, c, k)) continue;
            q->state[k] = (float *)dlf__malloc((size_t)q->p->size * sizeof(float), "optimizer state");
            if (!q->state[k]) { dlf_optim_free(o); return NULL; }
            memset(q->state[k], 0, (size_t)q->p->size * sizeof(float));
        }
        if (kind == DLF_OPTIM_ADAGRAD && c->initial_accumulator_value != 0.0f) {
            int j;
            for (j = 0; j < q->p->size; j++) q->state[0][j] = c->initial_accumulator_value;
        }
    }
    return o;
}

DLFDEF dlf_optim *dlf_optim_create(dlf_optim_kind kind, dlf_tensor **params, int n_params, const dlf_optim_cfg *cfg)
{
    DLF__NOT_NULL(params, NULL);
    return dlf__optim_new(kind, params, NULL, NULL, n_params, cfg, 1);
}

DLFDEF dlf_optim *dlf_optim_create_groups(dlf_optim_kind kind, const dlf_params *pl, const dlf_optim_cfg *groups,
                                          int n_groups)
{
    DLF__NOT_NULL(pl, NULL);
    int n = dlf_params_tensors(pl, NULL, 0), i, k = 0;
    dlf_tensor **ts = (dlf_tensor **)dlf__malloc((size_t)(n ? n : 1) * sizeof(dlf_tensor *), "optimizer setup");
    int *grp = (int *)dlf__malloc((size_t)(n ? n : 1) * sizeof(int), "optimizer setup");
    const char **names = (const char **)dlf__malloc((size_t)(n ? n : 1) * sizeof(char *), "optimizer setup");
    dlf_optim *o = NULL;
    if (ts && grp && names) {
        for (i = 0; i < pl->n; i++) {
            if (pl->items[i].is_buffer) continue;
            ts[k] = pl->items[i].t;
            grp[k] = pl->items[i].group;
            names[k] = pl->items[i].name;
            k++;
        }
        o = dlf__optim_new(kind, ts, grp, names, n, groups, n_groups);
    }
    if (ts) DLF_FREE(ts);
    if (grp) DLF_FREE(grp);
    if (names) DLF_FREE((void *)names);
    return o;
}

DLFDEF void dlf_optim_free(dlf_optim *o)
{
    int i, k;
    if (!o) return;
    for (i = 0; i < o->n_params; i++)
        for (k = 0; k < DLF_OPTIM_MAX_STATE; k++)
            if (o->params[i].state[k]) DLF_FREE(o->params[i].state[k]);
    if (o->params) DLF_FREE(o->params);
    DLF_FREE(o);
}

/* SGD: the same float operations in the same order as torch.optim.SGD. b is the
   momentum buffer (NULL without momentum); first: this is its first step. */
static void dlf__sgd_update(const dlf_optim_cfg *c, float *p, const float *grad, float *b, int first, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        float g = grad[i];
        if (c->weight_decay != 0.0f && !c->decoupled_wd) g = g + c->weight_decay * p[i]; /* g + lambda p */
        if (b) {
            float b_t;
            if (first) b_t = g;                                         /* b_1 = g */
            else b_t = c->momentum * b[i] + (1.0f - c->dampening) * g;  /* mu b + (1 - tau) g */
            b[i] = b_t;
            if (c->nesterov) g = g + c->momentum * b_t;                  /* look ahead */
            else g = b_t;
        }
        p[i] = p[i] - c->lr * g;
    }
}

/* RMSProp (Hinton's lecture 6e; torch.optim.RMSprop): v = square_avg, a = grad_avg, b = momentum_buffer. */
static void dlf__rmsprop_update(const dlf_optim_cfg *c, float *p, const float *grad, float *v, float *b, float *a, int n)
{
    float one_minus_alpha = (float)(1.0 - (double)c->alpha);
    int i;
    for (i = 0; i < n; i++) {
        float g = grad[i], denom;
        if (c->weight_decay != 0.0f && !c->decoupled_wd) g = g + c->weight_decay * p[i];
        v[i] = v[i] * c->alpha + one_minus_alpha * g * g;            /* v = alpha v + (1 - alpha) g^2 */
        if (a) {
            a[i] = a[i] * c->alpha + g * one_minus_alpha;            /* a = alpha a + (1 - alpha) g */
            denom = sqrtf(v[i] + -1.0f * a[i] * a[i]) + c->eps;      /* sqrt(v - a^2) + eps */
        } else {
            denom = sqrtf(v[i]) + c->eps;                            /* sqrt(v) + eps */
        }
        if (b) {
            b[i] = b[i] * c->momentum + g / denom;                   /* b = mu b + g / denom */
            p[i] = p[i] + b[i] * -c->lr;
        } else {
            p[i] = p[i] + -c->lr * (g / denom);
        }
    }
}

/* Adagrad (Duchi et al. 2011; torch.optim.Adagrad): s = sum of squared gradients. */
static void dlf__adagrad_update(const dlf_optim_cfg *c, float *p, const float *grad, float *s, int step, int n)
{
    float clr = (float)((double)c->lr / (1.0 + (step - 1) * (double)c->lr_decay)); /* decayed lr */
    int i;
    for (i = 0; i < n; i++) {
        float g = grad[i], std_i;
        if (c->weight_decay != 0.0f && !c->decoupled_wd) g = g + c->weight_decay * p[i];
        s[i] = s[i] + 1.0f * g * g;                                   /* s += g^2 */
        std_i = sqrtf(s[i]) + c->eps;
        p[i] = p[i] + -clr * (g / std_i);
    }
}

/* Adam (Kingma & Ba 2015; torch.optim.Adam): m = exp_avg, v = exp_avg_sq. The bias
   corrections are computed in double, as PyTorch computes them in Python. */
static void dlf__adam_update(const dlf_optim_cfg *c, float *p, const float *grad, float *m, float *v, int step, int n)
{
    double bias_correction1 = 1.0 - pow((double)c->beta1, step);
    double bias_correction2 = 1.0 - pow((double)c->beta2, step);
    float step_size = (float)((double)c->lr / bias_correction1);
    float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    float one_minus_b1 = (float)(1.0 - (double)c->beta1), one_minus_b2 = (float)(1.0 - (double)c->beta2);
    int i;
    for (i = 0; i < n; i++) {
        float g = grad[i], denom;
        if (c->weight_decay != 0.0f && !c->decoupled_wd) g = g + c->weight_decay * p[i];  /* L2 */
        m[i] = m[i] * c->beta1 + g * one_minus_b1;                    /* m = b1 m + (1 - b1) g */
        v[i] = v[i] * c->beta2 + one_minus_b2 * g * g;                /* v = b2 v + (1 - b2) g^2 */
        denom = sqrtf(v[i]) / bias_correction2_sqrt + c->eps;         /* sqrt(v_hat) + eps, v_hat unbiased */
        p[i] = p[i] + -step_size * (m[i] / denom);                    /* p -= lr m_hat / denom */
    }
}

/* LAMB (You et al. 2019), as the course's lamb_step: the Adam direction u plus wd p,
   scaled per parameter tensor by the trust ratio rms(p) / rms(u), at most 10. Two
   passes over the tensor (u is recomputed in the second), so no buffer is needed. */
static void dlf__lamb_update(const dlf_optim_cfg *c, float *p, const float *grad, float *m, float *v, int step, int n)
{
    double debias1 = 1.0 - pow((double)c->beta1, step), debias2 = 1.0 - pow((double)c->beta2, step);
    double p_sq = 0.0, u_sq = 0.0, r1, r2, trust;
    float one_minus_b1 = (float)(1.0 - (double)c->beta1), one_minus_b2 = (float)(1.0 - (double)c->beta2);
    int i;
    for (i = 0; i < n; i++) {
        float g = grad[i];
        double u;
        m[i] = m[i] * c->beta1 + g * one_minus_b1;
        v[i] = v[i] * c->beta2 + one_minus_b2 * g * g;
        u = (m[i] / debias1) / (sqrt(v[i] / debias2) + c->eps) + (double)c->weight_decay * p[i];
        p_sq += (double)p[i] * p[i];
        u_sq += u * u;
    }
    r1 = sqrt(p_sq / n);                          /* rms of the weights */
    r2 = sqrt(u_sq / n);                          /* rms of the step */
    trust = (r1 > 0.0 && r2 > 0.0) ? (r1 / r2 < 10.0 ? r1 / r2 : 10.0) : 1.0;
    for (i = 0; i < n; i++) {
        double u = (m[i] / debias1) / (sqrt(v[i] / debias2) + c->eps) + (double)c->weight_decay * p[i];
        p[i] = (float)(p[i] - (double)c->lr * trust * u);
    }
}

DLFDEF int dlf_optim_step(dlf_optim *o)
{
    DLF__NOT_NULL(o, DLF_ERR_ARG);
    int k;
    for (k = 0; k < o->n_params; k++) {
        dlf_optim_param *q = &o->params[k];
        const dlf_optim_cfg *c = &o->groups[q->group];
        float *p = q->p->data;
        const float *g = q->p->grad;
        int n = q->p->size;
        if (!g || !q->p->requires_grad) continue;  /* no gradient, or frozen: PyTorch skips p.grad None too */
        q->step++;
        dlf__written(q->p);   /* a backward still to come through a graph that read p would be wrong */
        if (c->weight_decay != 0.0f && (c->decoupled_wd || o->kind == DLF_OPTIM_ADAMW) && o->kind != DLF_OPTIM_LAMB) {
            float decay = (float)(1.0 - (double)c->lr * (double)c->weight_decay);  /* p *= 1 - lr wd */
            int i;
            for (i = 0; i < n; i++) p[i] = p[i] * decay;
        }
        switch (o->kind) {
        case DLF_OPTIM_SGD:
            dlf__sgd_update(c, p, g, q->state[0], q->step == 1, n);
            break;
        case DLF_OPTIM_RMSPROP:
            dlf__rmsprop_update(c, p, g, q->state[0], q->state[1], q->state[2], n);
            break;
        case DLF_OPTIM_ADAGRAD:
            dlf__adagrad_update(c, p, g, q->state[0], q->step, n);
            break;
        case DLF_OPTIM_ADAM:
        case DLF_OPTIM_ADAMW:
            dlf__adam_update(c, p, g, q->state[0], q->state[1], q->step, n);
            break;
        case DLF_OPTIM_LAMB:
            dlf__lamb_update(c, p, g, q->state[0], q->state[1], q->step, n);
            break;
        case DLF_OPTIM_KIND_COUNT:
            break;
        }
    }
    o->steps++;
    return DLF_OK;
}

DLFDEF void dlf_optim_zero_grad(dlf_optim *o)
{
    DLF__NOT_NULL(o, );
    int k;
    for (k = 0; k < o->n_params; k++) dlf_zero_grad(o->params[k].p);
}

/* torch.nn.utils.clip_grad_norm_: the 2-norm of all the gradients together, and one
   scale max_norm / (total + 1e-6) for all of them when it is below 1. The parameters
   come as a pointer array (stride 1) or inside dlf_optim_param (a larger stride). */
static float dlf__clip_grad_norm(dlf_tensor *const *first, size_t stride_bytes, int n, float max_norm)
{
    double sq = 0.0, total, coef;
    int k, i;
#define DLF__PARAM_K(k) (*(dlf_tensor *const *)((const char *)first + (size_t)(k) * stride_bytes))
    for (k = 0; k < n; k++) {
        const dlf_tensor *p = DLF__PARAM_K(k);
        if (!p || !p->grad) continue;
        for (i = 0; i < p->size; i++) sq += (double)p->grad[i] * p->grad[i];
    }
    total = sqrt(sq);
    coef = (double)max_norm / (total + 1e-6);
    if (coef < 1.0)
        for (k = 0; k < n; k++) {
            dlf_tensor *p = DLF__PARAM_K(k);
            if (!p || !p->grad) continue;
            for (i = 0; i < p->size; i++) p->grad[i] *= (float)coef;
        }
#undef DLF__PARAM_K
    return (float)total;
}

DLFDEF float dlf_clip_grad_norm(dlf_tensor **params, int n, float max_norm)
{
    DLF__NOT_NULL(params, NAN);
    return dlf__clip_grad_norm(params, sizeof(dlf_tensor *), n, max_norm);
}

DLFDEF float dlf_optim_clip_grad_norm(dlf_optim *o, float max_norm)
{
    DLF__NOT_NULL(o, NAN);
    return o->n_params ? dlf__clip_grad_norm(&o->params[0].p, sizeof(dlf_optim_param), o->n_params, max_norm) : 0.0f;
}

DLFDEF const char *dlf_hyper_name(dlf_hyper h)
{
    static const char *const names[DLF_HYPER_COUNT] = {"lr", "mom", "wd", "beta2"};
    return ((int)h >= 0 && h < DLF_HYPER_COUNT) ? names[h] : "?";
}

/* The field of cfg that hyper-parameter h names for kind k, or NULL (Adagrad's mom). */
static float *dlf__hyper_field(dlf_optim_kind k, dlf_optim_cfg *cfg, dlf_hyper h)
{
    int adam_like = k == DLF_OPTIM_ADAM || k == DLF_OPTIM_ADAMW || k == DLF_OPTIM_LAMB;
    switch (h) {
    case DLF_HYPER_LR: return &cfg->lr;
    case DLF_HYPER_WD: return &cfg->weight_decay;
    case DLF_HYPER_MOM: return adam_like ? &cfg->beta1 : k == DLF_OPTIM_ADAGRAD ? NULL : &cfg->momentum;
    case DLF_HYPER_BETA2: return adam_like ? &cfg->beta2 : k == DLF_OPTIM_RMSPROP ? &cfg->alpha : NULL;
    case DLF_HYPER_COUNT: break;
    }
    return NULL;
}

DLFDEF float dlf_optim_get_hyper(const dlf_optim *o, int group, dlf_hyper h)
{
    DLF__NOT_NULL(o, NAN);
    float *f;
    if (group < 0 || group >= o->n_groups) {
        dlf__panic("dlf_optim_get_hyper: group %d of %d", group, o->n_groups);
        return 0.0f;
    }
    f = dlf__hyper_field(o->kind, (dlf_optim_cfg *)&o->groups[group], h);
    return f ? *f : 0.0f;
}

DLFDEF void dlf_optim_set_hyper(dlf_optim *o, int group, dlf_hyper h, float v)
{
    DLF__NOT_NULL(o, );
    int g;
    if (group >= o->n_groups) {
        dlf__panic("dlf_optim_set_hyper: group %d of %d", group, o->n_groups);
        return;
    }
    for (g = group < 0 ? 0 : group; g < (group < 0 ? o->n_groups : group + 1); g++) {
        float *f = dlf__hyper_field(o->kind, &o->groups[g], h);
        if (f) *f = v;
    }
}

#ifndef DLF_NO_STDIO
DLFDEF void dlf_optim_print_cfg(const dlf_optim *o)
{
    DLF__NOT_NULL(o, );
    int g;
    printf("%s: %d parameters, %d steps\n", dlf_optim_kind_name(o->kind), o->n_params, o->steps);
    for (g = 0; g < o->n_groups; g++) {
        const dlf_optim_cfg *c = &o->groups[g];
        printf("  group %d: lr %g weight_decay %g%s", g, c->lr, c->weight_decay,
               c->decoupled_wd || o->kind == DLF_OPTIM_ADAMW ? " (decoupled)" : "");
        switch (o->kind) {  /* only the fields this kind reads */
        case DLF_OPTIM_SGD:
            printf(" momentum %g dampening %g nesterov %d", c->momentum, c->dampening, c->nesterov);
            break;
        case DLF_OPTIM_RMSPROP:
            printf(" alpha %g eps %g momentum %g centered %d", c->alpha, c->eps, c->momentum, c->centered);
            break;
        case DLF_OPTIM_ADAGRAD:
            printf(" eps %g lr_decay %g initial_accumulator_value %g", c->eps, c->lr_decay,
                   c->initial_accumulator_value);
            break;
        case DLF_OPTIM_ADAM:
        case DLF_OPTIM_ADAMW:
        case DLF_OPTIM_LAMB:
            printf(" betas (%g, %g) eps %g", c->beta1, c->beta2, c->eps);
            break;
        case DLF_OPTIM_KIND_COUNT:
            break;
        }
        printf("\n");
    }
}
#endif

// >>stage12_schedules (implementation) --------------------------------------------
#define DLF__PI 3.141592653589793

/* One shape from a (p = 0) to b (p = 1). linear and cos are written exactly as
   torch.optim.lr_scheduler's _annealing_linear and _annealing_cos, so OneCycleLR's
   values come out to the last bit or so. */
static double dlf__shape_at(dlf_shape shape, double a, double b, double p)
{
    switch (shape) {
    case DLF_SHAPE_CONST:  return a;
    case DLF_SHAPE_LINEAR: return (b - a) * p + a;
    case DLF_SHAPE_COS:    return b + (a - b) / 2.0 * (cos(DLF__PI * p) + 1.0);
    case DLF_SHAPE_EXP:    return a * pow(b / a, p);
    }
    return a;
}

/* SGDR (Loshchilov & Hutter 2017), as CosineAnnealingWarmRestarts steps it: T_cur counts
   the steps since the last restart, T_i is the current cycle's length;
     value = eta_min + (base - eta_min) (1 + cos(pi T_cur / T_i)) / 2. */
static double dlf__sgdr_at(const dlf_schedule *s, long step)
{
    long T_i = s->T_0 > 0 ? s->T_0 : 1, t = step < 0 ? 0 : step;
    if (s->T_mult <= 1) t %= T_i;
    else while (t >= T_i) { t -= T_i; T_i *= s->T_mult; }
    return s->eta_min + (s->base - s->eta_min) * (1.0 + cos(DLF__PI * (double)t / (double)T_i)) / 2.0;
}

/* Phase i covers the steps (prev, end_i]: it starts where the previous one ended (0 for
   the first) and p = (step - prev) / (end_i - prev), clamped to [0, 1]. FRAC and STEPS
   take the first phase with step < end_i (a phase owns its start, fastai's rule);
   ONE_CYCLE the first with step <= end_i (OneCycleLR's rule: the value is the same at a
   boundary, the phase that computes it differs). Whatever the step, the search ends at
   the last phase: pos = 1.0 cannot index past it. */
DLFDEF double dlf_schedule_at(const dlf_schedule *s, long step, long total)
{
    DLF__NOT_NULL(s, NAN);
    double x = (double)step, prev = 0.0, end = 0.0, p;
    int i;
    if (s->kind == DLF_SCHEDULE_SGDR) return dlf__sgdr_at(s, step);
    if (s->n <= 0) return 0.0;
    if (total < 1) total = 1;
    for (i = 0; i < s->n; i++) {
        const dlf_sched_phase *ph = &s->ph[i];
        int last = i == s->n - 1, here;
        switch (s->kind) {
        case DLF_SCHEDULE_STEPS:     end = last ? (double)total : ph->until; break;
        case DLF_SCHEDULE_ONE_CYCLE: end = last ? (double)total - 1.0 : ph->until * (double)total - ph->off; break;
        default:                     end = last ? (double)total : ph->until * (double)total; break;
        }
        here = s->kind == DLF_SCHEDULE_ONE_CYCLE ? x <= end : x < end;
        if (here || last) {
            p = end > prev ? (x - prev) / (end - prev) : 1.0;
            if (p < 0.0) p = 0.0;
            if (p > 1.0) p = 1.0;
            return dlf__shape_at(ph->shape, ph->start, ph->end, p);
        }
        prev = end;
    }
    return 0.0;  /* not reached */
}

static dlf_schedule dlf__sched_one(dlf_shape shape, double start, double end)
{
    dlf_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = DLF_SCHEDULE_FRAC;
    s.n = 1;
    s.ph[0].shape = shape;
    s.ph[0].start = start;
    s.ph[0].end = end;
    s.ph[0].until = 1.0;
    return s;
}

DLFDEF dlf_schedule dlf_sched_const(double v) { return dlf__sched_one(DLF_SHAPE_CONST, v, v); }
DLFDEF dlf_schedule dlf_sched_linear(double start, double end) { return dlf__sched_one(DLF_SHAPE_LINEAR, start, end); }
DLFDEF dlf_schedule dlf_sched_cos(double start, double end) { return dlf__sched_one(DLF_SHAPE_COS, start, end); }
DLFDEF dlf_schedule dlf_sched_exp(double start, double end)
{
    if (!(start > 0.0 && end > 0.0)) dlf__panic("dlf_sched_exp: start %g and end %g must be > 0", start, end);
    return dlf__sched_one(DLF_SHAPE_EXP, start, end);
}

static void dlf__phase(dlf_schedule *s, double start, double end, double until, double off)
{
    dlf_sched_phase *ph = &s->ph[s->n++];
    ph->shape = DLF_SHAPE_COS;
    ph->start = start;
    ph->end = end;
    ph->until = until;
    ph->off = off;
}

/* OneCycleLR (Smith & Topin 2017; torch.optim.lr_scheduler.OneCycleLR, anneal_strategy
   "cos"). With u = max_lr / div_factor and m = u / final_div_factor, phase ends
     two phases:    u -> max_lr until pct*total - 1,  max_lr -> m until total - 1
     three phases:  u -> max_lr until pct*total - 1,  max_lr -> u until 2*pct*total - 2,
                    u -> m until total - 1
   When pct * total < 1 the first end is negative and the run starts inside the second
   phase, as in PyTorch (total 2, max_lr 3: 2.4352 at step 0; total 1: m = 1.2e-5). */
DLFDEF dlf_schedule dlf_sched_one_cycle(double max_lr, double pct_start, double div_factor,
                                        double final_div_factor, int three_phase)
{
    dlf_schedule s;
    double u, m;
    if (pct_start <= 0.0) pct_start = 0.3;
    if (div_factor <= 0.0) div_factor = 25.0;
    if (final_div_factor <= 0.0) final_div_factor = 1e4;
    if (pct_start >= 1.0 || (three_phase && pct_start >= 0.5))
        dlf__panic("dlf_sched_one_cycle: pct_start %g leaves no room for the last phase", pct_start);
    u = max_lr / div_factor;
    m = u / final_div_factor;
    memset(&s, 0, sizeof s);
    s.kind = DLF_SCHEDULE_ONE_CYCLE;
    dlf__phase(&s, u, max_lr, pct_start, 1.0);
    if (three_phase) {
        dlf__phase(&s, max_lr, u, 2.0 * pct_start, 2.0);
        dlf__phase(&s, u, m, 1.0, 1.0);
    } else {
        dlf__phase(&s, max_lr, m, 1.0, 1.0);
    }
    return s;
}

/* cycle_momentum: the momentum mirrors the lr, max_mom -> base_mom while the lr rises,
   back to max_mom while it falls (three phases: and it stays at max_mom for the last). */
DLFDEF dlf_schedule dlf_sched_one_cycle_mom(double base_mom, double max_mom, double pct_start, int three_phase)
{
    dlf_schedule s = dlf_sched_one_cycle(1.0, pct_start, 0, 0, three_phase);
    s.ph[0].start = max_mom; s.ph[0].end = base_mom;
    s.ph[1].start = base_mom; s.ph[1].end = max_mom;
    if (three_phase) { s.ph[2].start = max_mom; s.ph[2].end = max_mom; }
    return s;
}

DLFDEF dlf_schedule dlf_sched_sgdr(double base, double eta_min, long T_0, int T_mult)
{
    dlf_schedule s;
    if (T_0 < 1 || T_mult < 1) dlf__panic("dlf_sched_sgdr: T_0 %ld and T_mult %d must be >= 1", T_0, T_mult);
    memset(&s, 0, sizeof s);
    s.kind = DLF_SCHEDULE_SGDR;
    s.base = base;
    s.eta_min = eta_min;
    s.T_0 = T_0 < 1 ? 1 : T_0;
    s.T_mult = T_mult < 1 ? 1 : T_mult;
    return s;
}

/* The parts of a combined schedule are single phases; their kinds are replaced by
   the combination's. */
static int dlf__sched_parts_ok(const char *who, const dlf_schedule *parts, int n)
{
    int i;
    if (n < 1 || n > DLF_SCHED_MAX_PHASES) {
        dlf__panic("%s: %d parts (1 to %d)", who, n, DLF_SCHED_MAX_PHASES);
        return 0;
    }
    for (i = 0; i < n; i++)
        if (parts[i].n != 1 || parts[i].kind == DLF_SCHEDULE_SGDR) {
            dlf__panic("%s: part %d is not a single shape (const, linear, cos or exp)", who, i);
            return 0;
        }
    return 1;
}

DLFDEF dlf_schedule dlf_sched_combine(const double *fracs, const dlf_schedule *parts, int n)
{
    dlf_schedule s;
    double acc = 0.0;
    int i;
    memset(&s, 0, sizeof s);
    DLF__NOT_NULL(fracs, s); DLF__NOT_NULL(parts, s);
    if (!dlf__sched_parts_ok("dlf_sched_combine", parts, n)) return s;
    s.kind = DLF_SCHEDULE_FRAC;
    for (i = 0; i < n; i++) {
        s.ph[i] = parts[i].ph[0];
        acc += fracs[i];
        s.ph[i].until = acc;
        s.ph[i].off = 0.0;
    }
    s.n = n;
    return s;
}

DLFDEF dlf_schedule dlf_sched_sequential(const dlf_schedule *parts, const long *milestones, int n)
{
    dlf_schedule s;
    int i;
    memset(&s, 0, sizeof s);
    DLF__NOT_NULL(parts, s); DLF__NOT_NULL(milestones, s);
    if (!dlf__sched_parts_ok("dlf_sched_sequential", parts, n)) return s;
    s.kind = DLF_SCHEDULE_STEPS;
    for (i = 0; i < n; i++) {
        s.ph[i] = parts[i].ph[0];
        s.ph[i].until = i < n - 1 ? (double)milestones[i] : 0.0;
        s.ph[i].off = 0.0;
    }
    s.n = n;
    return s;
}

/* LinearLR(start_factor, total_iters = steps) followed by `after` (SequentialLR). */
DLFDEF dlf_schedule dlf_sched_warmup(long steps, double start_factor, dlf_schedule after)
{
    dlf_schedule parts[2];
    long m = steps;
    if (!dlf__sched_parts_ok("dlf_sched_warmup", &after, 1)) return after;
    parts[0] = dlf_sched_linear(start_factor * after.ph[0].start, after.ph[0].start);
    parts[1] = after;
    return dlf_sched_sequential(parts, &m, 2);
}

DLFDEF dlf_schedule dlf_sched_with_shape(dlf_schedule s, dlf_shape from, dlf_shape to)
{
    int i;
    for (i = 0; i < s.n; i++)
        if (s.ph[i].shape == from) s.ph[i].shape = to;
    return s;
}

// >>stage13_data (implementation) -------------------------------------------------
#include <limits.h>
#ifndef DLF_NO_STDIO
#include <errno.h>
#endif

static uint32_t dlf__be32(const uint8_t *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

/* Validate an IDX header against the whole file's size `total`. `head` holds the
   first min(total, 16) bytes. On success x gets ndim, dims and size (the payload
   bytes) and *offset the header length. Every check happens before any payload
   byte is touched, so a lying header can never cause an over-read. */
static int dlf__idx_header(const uint8_t *head, uint64_t total, const char *name, dlf_idx *x, size_t *offset)
{
    uint32_t magic;
    uint64_t hdr, payload, need = 1;
    int ndim, i;
    memset(x, 0, sizeof *x);
    if (total < 4)
        return dlf__fail(DLF_ERR_FORMAT, "%s: truncated: %llu bytes, too short for the 4-byte IDX magic",
                         name, (unsigned long long)total);
    magic = dlf__be32(head);
    if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || (head[3] != 1 && head[3] != 3))
        return dlf__fail(DLF_ERR_FORMAT, "%s: bad magic 0x%08x: not an IDX file of unsigned bytes "
                         "(expected 0x%08x labels or 0x%08x images)", name, (unsigned)magic,
                         (unsigned)DLF_IDX_LABELS, (unsigned)DLF_IDX_IMAGES);
    ndim = head[3];
    hdr = 4 + 4 * (uint64_t)ndim;
    if (total < hdr)
        return dlf__fail(DLF_ERR_FORMAT, "%s: truncated: %llu bytes, the header of a %d-dim IDX file needs %llu",
                         name, (unsigned long long)total, ndim, (unsigned long long)hdr);
    payload = total - hdr;
    x->ndim = ndim;
    for (i = 0; i < 3; i++) x->dims[i] = 1;
    for (i = 0; i < ndim; i++) {   /* each dim on its own first */
        uint32_t d = dlf__be32(head + 4 + 4 * i);
        if (d == 0)
            return dlf__fail(DLF_ERR_FORMAT, "%s: dim %d is 0%s", name, i, i == 0 ? " (0 items)" : "");
        if (d > (uint32_t)INT_MAX)
            return dlf__fail(DLF_ERR_FORMAT, "%s: absurd dims: dim %d is %lu, more than 2^31-1", name, i,
                             (unsigned long)d);
    }
    for (i = 0; i < ndim; i++) {   /* then their product against the file size */
        uint32_t d = dlf__be32(head + 4 + 4 * i);
        /* need * d overflows or exceeds the file: it cannot fit, stop before multiplying */
        if (need > payload / d)
            return dlf__fail(DLF_ERR_FORMAT, "%s: file size does not match the dims: dims up to dim %d "
                             "already need more than the %llu data bytes the file has (truncated, or corrupt dims)",
                             name, i, (unsigned long long)payload);
        need *= d;
        x->dims[i] = (int)d;
    }
    if (need != payload)
        return dlf__fail(DLF_ERR_FORMAT, "%s: file size does not match the dims: they need %llu data bytes, "
                         "the file has %llu (%s)", name, (unsigned long long)need, (unsigned long long)payload,
                         need > payload ? "truncated" : "trailing bytes");
    if (need > (uint64_t)INT_MAX)
        return dlf__fail(DLF_ERR_FORMAT, "%s: absurd dims: %llu bytes of data, more than 2^31-1",
                         name, (unsigned long long)need);
    x->size = (size_t)need;
    *offset = (size_t)hdr;
    return DLF_OK;
}

DLFDEF int dlf_idx_parse(const void *bytes, size_t n_bytes, const char *name, dlf_idx *out)
{
    DLF__NOT_NULL(bytes, DLF_ERR_ARG); DLF__NOT_NULL(out, DLF_ERR_ARG);
    const uint8_t *b = (const uint8_t *)bytes;
    size_t off = 0;
    int rc = dlf__idx_header(b, (uint64_t)n_bytes, name ? name : "(memory)", out, &off);
    if (rc != DLF_OK) return rc;
    out->data = (uint8_t *)dlf__malloc(out->size, "IDX data");
    if (!out->data) return DLF_ERR_NOMEM;
    memcpy(out->data, b + off, out->size);
    return DLF_OK;
}

#ifndef DLF_NO_STDIO
/* Read 16 bytes (or the whole file if shorter), validate them against the file's
   size, then read exactly the payload into one allocation. */
DLFDEF int dlf_idx_load(const char *path, dlf_idx *out)
{
    DLF__NOT_NULL(path, DLF_ERR_ARG); DLF__NOT_NULL(out, DLF_ERR_ARG);
    FILE *f;
    long total;
    uint8_t head[16];
    size_t got, off = 0;
    int rc;
    memset(out, 0, sizeof *out);
    f = fopen(path, "rb");
    if (!f) return dlf__fail(DLF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (total = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return dlf__fail(DLF_ERR_IO, "%s: cannot find the file's size (not a regular file?)", path);
    }
    memset(head, 0, sizeof head);
    got = fread(head, 1, (size_t)total < sizeof head ? (size_t)total : sizeof head, f);
    if (got != ((size_t)total < sizeof head ? (size_t)total : sizeof head)) {
        fclose(f);
        return dlf__fail(DLF_ERR_IO, "%s: read error in the header", path);
    }
    rc = dlf__idx_header(head, (uint64_t)total, path, out, &off);
    if (rc != DLF_OK) { fclose(f); return rc; }
    out->data = (uint8_t *)dlf__malloc(out->size, "IDX data");
    if (!out->data) { fclose(f); return DLF_ERR_NOMEM; }
    if (fseek(f, (long)off, SEEK_SET) != 0 || fread(out->data, 1, out->size, f) != out->size) {
        fclose(f);
        dlf_idx_free(out);
        return dlf__fail(DLF_ERR_IO, "%s: short read of the %zu data bytes (file changed while reading?)",
                         path, out->size);
    }
    fclose(f);
    return DLF_OK;
}
#endif

DLFDEF void dlf_idx_free(dlf_idx *x)
{
    DLF__NOT_NULL(x, );
    if (x->data) DLF_FREE(x->data);
    memset(x, 0, sizeof *x);
}

/* Pair an image file with a label file. On success d owns both byte buffers and
   the two dlf_idx are emptied; on failure they are left as they were. */
DLFDEF int dlf_dataset_from_idx(dlf_dataset *d, dlf_idx *images, dlf_idx *labels, const char *name)
{
    DLF__NOT_NULL(d, DLF_ERR_ARG); DLF__NOT_NULL(images, DLF_ERR_ARG);
    DLF__NOT_NULL(labels, DLF_ERR_ARG);
    size_t i;
    int top = 0;
    memset(d, 0, sizeof *d);
    if (!name) name = "dataset";
    if (images->ndim != 3)
        return dlf__fail(DLF_ERR_FORMAT, "%s: the image file has %d dims, expected 3 (magic 0x%08x)",
                         name, images->ndim, (unsigned)DLF_IDX_IMAGES);
    if (labels->ndim != 1)
        return dlf__fail(DLF_ERR_FORMAT, "%s: the label file has %d dims, expected 1 (magic 0x%08x)",
                         name, labels->ndim, (unsigned)DLF_IDX_LABELS);
    if (images->dims[0] != labels->dims[0])
        return dlf__fail(DLF_ERR_FORMAT, "%s: %d images but %d labels", name, images->dims[0], labels->dims[0]);
    for (i = 0; i < labels->size; i++)
        if (labels->data[i] > top) top = labels->data[i];
    d->images = images->data;
    d->labels = labels->data;
    d->n = images->dims[0];
    d->rows = images->dims[1];
    d->cols = images->dims[2];
    d->n_classes = top + 1;
    d->owns = 1;
    memset(images, 0, sizeof *images);
    memset(labels, 0, sizeof *labels);
    return DLF_OK;
}

DLFDEF void dlf_dataset_free(dlf_dataset *d)
{
    DLF__NOT_NULL(d, );
    if (d->owns) {
        if (d->images) DLF_FREE(d->images);
        if (d->labels) DLF_FREE(d->labels);
        if (d->features) DLF_FREE(d->features);
        if (d->ids) DLF_FREE(d->ids);
        if (d->targets) DLF_FREE(d->targets);
    }
    memset(d, 0, sizeof *d);
}

DLFDEF int dlf_dataset_channels(const dlf_dataset *d)
{
    if (!d) { dlf__panic("dlf_dataset_channels: d is NULL"); return 0; }
    return d->channels > 0 ? d->channels : 1;
}

DLFDEF int dlf_dataset_item_size(const dlf_dataset *d)
{
    if (!d) { dlf__panic("dlf_dataset_item_size: d is NULL"); return 0; }
    return dlf_dataset_channels(d) * d->rows * d->cols;
}

/* floats per label: 1 for a class id, n_targets for float targets */
static int dlf__label_size(const dlf_dataset *d) { return d->targets ? d->n_targets : 1; }

DLFDEF dlf_dataset dlf_dataset_view(const dlf_dataset *d, int start, int count)
{
    dlf_dataset v;
    size_t per;
    memset(&v, 0, sizeof v);
    DLF__NOT_NULL(d, v);
    if (start < 0 || count < 0 || start > d->n - count) {
        dlf__panic("dlf_dataset_view: items [%d, %d) are outside the dataset's %d", start, start + count, d->n);
        return v;
    }
    per = (size_t)dlf_dataset_item_size(d);
    v = *d;
    if (d->images) v.images = d->images + (size_t)start * per;
    if (d->features) v.features = d->features + (size_t)start * per;
    if (d->labels) v.labels = d->labels + start;
    if (d->ids) v.ids = d->ids + start;
    if (d->targets) v.targets = d->targets + (size_t)start * d->n_targets;
    v.n = count;
    v.owns = 0;
    return v;
}

/* Over the N = n*rows*cols bytes v:  mean = sum(v) / (255 N),
   std = sqrt(sum(v^2) / (255^2 N) - mean^2). The sums are exact integers. */
DLFDEF void dlf_dataset_stats(const dlf_dataset *d, float *mean, float *std)
{
    DLF__NOT_NULL(d, ); DLF__NOT_NULL(mean, ); DLF__NOT_NULL(std, );
    size_t i, n = (size_t)d->n * dlf_dataset_item_size(d);
    uint64_t s = 0, s2 = 0;
    double m, var;
    if (d->features) {   /* floats: two passes, mean then the squared deviations */
        double sum = 0.0, sq = 0.0;
        for (i = 0; i < n; i++) sum += d->features[i];
        m = n ? sum / (double)n : 0.0;
        for (i = 0; i < n; i++) sq += ((double)d->features[i] - m) * ((double)d->features[i] - m);
        *mean = (float)m;
        *std = n ? (float)sqrt(sq / (double)n) : 0.0f;
        return;
    }
    for (i = 0; i < n; i++) {
        uint64_t v = d->images[i];
        s += v;
        s2 += v * v;
    }
    if (n == 0) { *mean = 0.0f; *std = 0.0f; return; }
    m = (double)s / (255.0 * (double)n);
    var = (double)s2 / (255.0 * 255.0 * (double)n) - m * m;
    *mean = (float)m;
    *std = (float)sqrt(var > 0.0 ? var : 0.0);
}

DLFDEF void dlf_normalize_lut(float lut[256], float mean, float std)
{
    DLF__NOT_NULL(lut, );
    int v;
    if (std <= 0.0f) { mean = 0.0f; std = 1.0f; }
    for (v = 0; v < 256; v++) lut[v] = ((float)v / 255.0f - mean) / std;
}

/* The batch of items idx[0..count): x[i] = normalized item idx[i], y[i] its label.
   Bytes go through the per-channel tables luts + c * lut_stride (lut_stride 0: one
   table for every channel); floats become (v - mean[c]) / std[c] (mean NULL: v). */
static void dlf__fill_batch(const dlf_dataset *d, const int *idx, int count, const float *luts, int lut_stride,
                            const float *mean, const float *std, dlf_tensor *x, dlf_tensor *y, const char *fn)
{
    int C = dlf_dataset_channels(d), hw = d->rows * d->cols, per = C * hw, T = dlf__label_size(d), i, c, j;
    char sx[64], sy[64];
    if (count < 0 || x->size < count * per || y->size < count * T) {
        dlf__panic("%s: %d items of %dx%dx%d do not fit x %s and y %s", fn, count, C, d->rows, d->cols,
                   dlf_shape_str(x, sx, sizeof sx), dlf_shape_str(y, sy, sizeof sy));
        return;
    }
    if (d->n > 0 && ((!d->images && !d->features) || (!d->labels && !d->ids && !d->targets))) {
        dlf__panic("%s: the dataset has no %s", fn, !d->images && !d->features ? "images or features" :
                   "labels, ids or targets");
        return;
    }
    for (i = 0; i < count; i++) {
        int item = idx[i];
        float *dst = x->data + (size_t)i * per;
        if (item < 0 || item >= d->n) {
            dlf__panic("%s: index %d (position %d) is outside the dataset's %d items", fn, item, i, d->n);
            return;
        }
        if (d->images) {
            const uint8_t *src = d->images + (size_t)item * per;
            for (c = 0; c < C; c++) {
                const float *lut = luts + (size_t)c * lut_stride;
                for (j = 0; j < hw; j++) dst[c * hw + j] = lut[src[c * hw + j]];
            }
        } else {
            const float *src = d->features + (size_t)item * per;
            if (!mean) memcpy(dst, src, (size_t)per * sizeof(float));
            else
                for (c = 0; c < C; c++)
                    for (j = 0; j < hw; j++) dst[c * hw + j] = (src[c * hw + j] - mean[c]) / std[c];
        }
        if (d->targets) memcpy(y->data + (size_t)i * T, d->targets + (size_t)item * T, (size_t)T * sizeof(float));
        else y->data[i] = d->ids ? (float)d->ids[item] : (float)d->labels[item];
    }
    dlf__written(x);    /* the previous batch's graph, if still to be walked, read the old values */
    dlf__written(y);
    x->shape[0] = count;
    x->size = count * per;
    y->shape[0] = count;
    y->size = count * T;
}

/* The one-table form: every channel of a byte image through lut; floats copied. */
DLFDEF void dlf_dataset_fill(const dlf_dataset *d, const int *idx, int count, const float *lut,
                             dlf_tensor *x, dlf_tensor *y)
{
    DLF__NOT_NULL(d, ); DLF__NOT_NULL(idx, ); DLF__NOT_NULL(x, ); DLF__NOT_NULL(y, );
    dlf__fill_batch(d, idx, count, lut, 0, NULL, NULL, x, y, "dlf_dataset_fill");
}

/* ---------------------------------------------------------------- general datasets */

/* Labels from y: class ids (N) as floats when n_classes > 0, else float targets (N) or
   (N, T). Allocates d->ids or d->targets. */
static int dlf__dataset_labels(dlf_dataset *d, const dlf_tensor *y, int N, int n_classes, const char *fn)
{
    int i;
    char sy[64];
    if (n_classes < 0) { dlf__panic("%s: n_classes %d is negative", fn, n_classes); return DLF_ERR_ARG; }
    if (n_classes > 0) {
        if (y->size != N || y->ndim > 2 || (y->ndim == 2 && y->shape[1] != 1)) {
            dlf__panic("%s: class ids y %s do not match %d items (want (%d))", fn, dlf_shape_str(y, sy, sizeof sy),
                       N, N);
            return DLF_ERR_ARG;
        }
        for (i = 0; i < N; i++) {
            float v = y->data[i];
            if (!(v >= 0.0f && v < (float)n_classes) || v != (float)(int)v) {
                dlf__panic("%s: y[%d] = %g is not a class id in [0, %d)", fn, i, (double)v, n_classes);
                return DLF_ERR_ARG;
            }
        }
        d->ids = (int32_t *)dlf__malloc((size_t)(N > 0 ? N : 1) * sizeof(int32_t), "dataset class ids");
        if (!d->ids) return DLF_ERR_NOMEM;
        for (i = 0; i < N; i++) d->ids[i] = (int32_t)y->data[i];
        d->n_classes = n_classes;
        return DLF_OK;
    }
    if (y->ndim < 1 || y->ndim > 2 || y->shape[0] != N) {
        dlf__panic("%s: targets y %s do not match %d items (want (%d) or (%d, T))", fn,
                   dlf_shape_str(y, sy, sizeof sy), N, N, N);
        return DLF_ERR_ARG;
    }
    d->n_targets = y->ndim == 2 ? y->shape[1] : 1;
    d->targets = (float *)dlf__malloc((size_t)(y->size > 0 ? y->size : 1) * sizeof(float), "dataset targets");
    if (!d->targets) return DLF_ERR_NOMEM;
    memcpy(d->targets, y->data, (size_t)y->size * sizeof(float));
    return DLF_OK;
}

DLFDEF int dlf_dataset_from_tensor(dlf_dataset *d, const dlf_tensor *x, const dlf_tensor *y, int n_classes)
{
    int rc;
    char sx[64];
    if (!d) { dlf__panic("dlf_dataset_from_tensor: d is NULL"); return DLF_ERR_ARG; }
    memset(d, 0, sizeof *d);
    if (!x) { dlf__panic("dlf_dataset_from_tensor: x is NULL"); return DLF_ERR_ARG; }
    if (!y) { dlf__panic("dlf_dataset_from_tensor: y is NULL"); return DLF_ERR_ARG; }
    if (x->ndim != 2 && x->ndim != 4) {
        dlf__panic("dlf_dataset_from_tensor: x %s must be (N, F) or (N, C, H, W)", dlf_shape_str(x, sx, sizeof sx));
        return DLF_ERR_ARG;
    }
    d->n = x->shape[0];
    d->channels = x->shape[1];
    d->table = x->ndim == 2;
    d->rows = x->ndim == 4 ? x->shape[2] : 1;
    d->cols = x->ndim == 4 ? x->shape[3] : 1;
    d->owns = 1;
    rc = dlf__dataset_labels(d, y, d->n, n_classes, "dlf_dataset_from_tensor");
    if (rc != DLF_OK) { dlf_dataset_free(d); return rc; }
    d->features = (float *)dlf__malloc((size_t)(x->size > 0 ? x->size : 1) * sizeof(float), "dataset features");
    if (!d->features) { dlf_dataset_free(d); return DLF_ERR_NOMEM; }
    memcpy(d->features, x->data, (size_t)x->size * sizeof(float));
    return DLF_OK;
}

DLFDEF int dlf_dataset_from_images(dlf_dataset *d, const uint8_t *pixels, int n, int channels, int rows,
                                   int cols, const dlf_tensor *y, int n_classes)
{
    size_t bytes;
    int rc;
    if (!d) { dlf__panic("dlf_dataset_from_images: d is NULL"); return DLF_ERR_ARG; }
    memset(d, 0, sizeof *d);
    if (!pixels) { dlf__panic("dlf_dataset_from_images: pixels is NULL"); return DLF_ERR_ARG; }
    if (!y) { dlf__panic("dlf_dataset_from_images: y is NULL"); return DLF_ERR_ARG; }
    if (n < 0 || channels <= 0 || rows <= 0 || cols <= 0 || (double)n * channels * rows * cols > (double)INT_MAX) {
        dlf__panic("dlf_dataset_from_images: bad size n %d, channels %d, rows %d, cols %d", n, channels, rows, cols);
        return DLF_ERR_ARG;
    }
    d->n = n;
    d->channels = channels;
    d->rows = rows;
    d->cols = cols;
    d->owns = 1;
    rc = dlf__dataset_labels(d, y, n, n_classes, "dlf_dataset_from_images");
    if (rc != DLF_OK) { dlf_dataset_free(d); return rc; }
    bytes = (size_t)n * channels * rows * cols;
    d->images = (uint8_t *)dlf__malloc(bytes ? bytes : 1, "dataset images");
    if (!d->images) { dlf_dataset_free(d); return DLF_ERR_NOMEM; }
    memcpy(d->images, pixels, bytes);
    return DLF_OK;
}

DLFDEF int dlf_dataset_subset(const dlf_dataset *d, const int *idx, int count, dlf_dataset *out)
{
    size_t per, T;
    int i;
    if (!out) { dlf__panic("dlf_dataset_subset: out is NULL"); return DLF_ERR_ARG; }
    memset(out, 0, sizeof *out);
    if (!d) { dlf__panic("dlf_dataset_subset: d is NULL"); return DLF_ERR_ARG; }
    if (!idx && count > 0) { dlf__panic("dlf_dataset_subset: idx is NULL"); return DLF_ERR_ARG; }
    if (count < 0) { dlf__panic("dlf_dataset_subset: count %d is negative", count); return DLF_ERR_ARG; }
    for (i = 0; i < count; i++)
        if (idx[i] < 0 || idx[i] >= d->n) {
            dlf__panic("dlf_dataset_subset: idx[%d] = %d is outside the dataset's %d items", i, idx[i], d->n);
            return DLF_ERR_ARG;
        }
    per = (size_t)dlf_dataset_item_size(d);
    T = (size_t)dlf__label_size(d);
    *out = *d;
    out->n = count;
    out->owns = 1;
    out->images = NULL; out->features = NULL; out->labels = NULL; out->ids = NULL; out->targets = NULL;
    if (d->images && !(out->images = (uint8_t *)dlf__malloc(per * count + 1, "dataset images"))) goto oom;
    if (d->features && !(out->features = (float *)dlf__malloc((per * count + 1) * sizeof(float), "dataset features")))
        goto oom;
    if (d->labels && !(out->labels = (uint8_t *)dlf__malloc((size_t)count + 1, "dataset labels"))) goto oom;
    if (d->ids && !(out->ids = (int32_t *)dlf__malloc(((size_t)count + 1) * sizeof(int32_t), "dataset class ids")))
        goto oom;
    if (d->targets && !(out->targets = (float *)dlf__malloc((T * count + 1) * sizeof(float), "dataset targets")))
        goto oom;
    for (i = 0; i < count; i++) {
        size_t k = (size_t)idx[i];
        if (d->images) memcpy(out->images + i * per, d->images + k * per, per);
        if (d->features) memcpy(out->features + i * per, d->features + k * per, per * sizeof(float));
        if (d->labels) out->labels[i] = d->labels[k];
        if (d->ids) out->ids[i] = d->ids[k];
        if (d->targets) memcpy(out->targets + i * T, d->targets + k * T, T * sizeof(float));
    }
    return DLF_OK;
oom:
    dlf_dataset_free(out);
    return DLF_ERR_NOMEM;
}

DLFDEF int dlf_dataset_split(const dlf_dataset *d, double test_frac, uint64_t seed, dlf_dataset *train,
                             dlf_dataset *test)
{
    dlf_rng rng;
    int *perm, n_test, rc;
    if (!train) { dlf__panic("dlf_dataset_split: train is NULL"); return DLF_ERR_ARG; }
    if (!test) { dlf__panic("dlf_dataset_split: test is NULL"); return DLF_ERR_ARG; }
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if (!d) { dlf__panic("dlf_dataset_split: d is NULL"); return DLF_ERR_ARG; }
    if (!(test_frac >= 0.0 && test_frac <= 1.0)) {
        dlf__panic("dlf_dataset_split: test_frac %g is not in [0, 1]", test_frac);
        return DLF_ERR_ARG;
    }
    n_test = (int)ceil(test_frac * (double)d->n);
    perm = (int *)dlf__malloc((size_t)(d->n > 0 ? d->n : 1) * sizeof(int), "split permutation");
    if (!perm) return DLF_ERR_NOMEM;
    dlf_rng_seed(&rng, seed);
    dlf_rng_permutation(&rng, perm, d->n);
    rc = dlf_dataset_subset(d, perm, n_test, test);
    if (rc == DLF_OK) rc = dlf_dataset_subset(d, perm + n_test, d->n - n_test, train);
    DLF_FREE(perm);
    if (rc != DLF_OK) { dlf_dataset_free(train); dlf_dataset_free(test); }
    return rc;
}

/* Bytes: exact integer sums per channel, as dlf_dataset_stats. Floats: per channel,
   the mean, then the mean squared deviation from it (two passes, in double). */
DLFDEF void dlf_dataset_channel_stats(const dlf_dataset *d, float *mean, float *std)
{
    int C, hw, i, c, j;
    if (!d) { dlf__panic("dlf_dataset_channel_stats: d is NULL"); return; }
    if (!mean) { dlf__panic("dlf_dataset_channel_stats: mean is NULL"); return; }
    if (!std) { dlf__panic("dlf_dataset_channel_stats: std is NULL"); return; }
    C = dlf_dataset_channels(d);
    hw = d->rows * d->cols;
    for (c = 0; c < C; c++) {
        double cnt = (double)d->n * hw, m = 0.0, var = 0.0;
        if (cnt == 0.0) { mean[c] = 0.0f; std[c] = 0.0f; continue; }
        if (d->images) {
            uint64_t s = 0, s2 = 0;
            for (i = 0; i < d->n; i++) {
                const uint8_t *p = d->images + ((size_t)i * C + c) * hw;
                for (j = 0; j < hw; j++) { s += p[j]; s2 += (uint64_t)p[j] * p[j]; }
            }
            m = (double)s / (255.0 * cnt);
            var = (double)s2 / (255.0 * 255.0 * cnt) - m * m;
        } else if (d->features) {
            double sum = 0.0, sq = 0.0;
            for (i = 0; i < d->n; i++) {
                const float *p = d->features + ((size_t)i * C + c) * hw;
                for (j = 0; j < hw; j++) sum += p[j];
            }
            m = sum / cnt;
            for (i = 0; i < d->n; i++) {
                const float *p = d->features + ((size_t)i * C + c) * hw;
                for (j = 0; j < hw; j++) sq += ((double)p[j] - m) * ((double)p[j] - m);
            }
            var = sq / cnt;
        }
        mean[c] = (float)m;
        std[c] = (float)sqrt(var > 0.0 ? var : 0.0);
    }
}

/* ---------------------------------------------------------------- CSV */

/* One field [s, e) after trimming spaces and tabs: 1 and *v when it is a decimal
   number, [+-]digits[.digits][(e|E)[+-]digits] with at least one digit before the
   exponent; 0 when it is not (NaN, inf, hex, text, empty); 2 when it is a number out
   of float range. */
static int dlf__csv_number(const char *s, const char *e, double *v)
{
    char buf[128], *end;
    const char *p;
    int digits = 0;
    double x;
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    p = s;
    if (p < e && (*p == '+' || *p == '-')) p++;
    while (p < e && *p >= '0' && *p <= '9') { p++; digits++; }
    if (p < e && *p == '.') {
        p++;
        while (p < e && *p >= '0' && *p <= '9') { p++; digits++; }
    }
    if (!digits) return 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        int ed = 0;
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        while (p < e && *p >= '0' && *p <= '9') { p++; ed++; }
        if (!ed) return 0;
    }
    if (p != e || (size_t)(e - s) >= sizeof buf) return 0;
    memcpy(buf, s, (size_t)(e - s));
    buf[e - s] = 0;
    x = strtod(buf, &end);
    if (!(x >= -3.4028234663852886e38 && x <= 3.4028234663852886e38)) return 2;
    *v = x;
    return 1;
}

/* The field text for a message: at most 24 characters. */
static void dlf__csv_show(const char *s, const char *e, char *out, size_t cap)
{
    size_t n = (size_t)(e - s);
    if (n > 24) n = 24;
    if (n >= cap) n = cap - 1;
    memcpy(out, s, n);
    out[n] = 0;
}

/* The line starting at p: its end (without "\r") in *le, the next line's start returned. */
static const char *dlf__csv_line(const char *p, const char *end, const char **le)
{
    const char *q = p;
    while (q < end && *q != '\n') q++;
    *le = q > p && q[-1] == '\r' ? q - 1 : q;
    return q < end ? q + 1 : end;
}

static int dlf__csv_count_fields(const char *s, const char *e, char delim)
{
    int n = 1;
    for (; s < e; s++) n += *s == delim;
    return n;
}

DLFDEF int dlf_csv_parse(const char *text, size_t len, const char *name, const dlf_csv_cfg *cfg_in,
                         dlf_dataset *out)
{
    dlf_csv_cfg cfg;
    const char *p, *end, *ls, *le, *next;
    size_t max_rows = 1, k;
    float *feat = NULL, *lab = NULL;
    int line = 0, ncols = 0, label, rows = 0, header, col, rc = DLF_OK, top = -1, first;
    char show[32];
    if (!out) { dlf__panic("dlf_csv_parse: out is NULL"); return DLF_ERR_ARG; }
    memset(out, 0, sizeof *out);
    if (!text && len > 0) { dlf__panic("dlf_csv_parse: text is NULL"); return DLF_ERR_ARG; }
    memset(&cfg, 0, sizeof cfg);
    if (cfg_in) cfg = *cfg_in;
    if (!cfg.delim) cfg.delim = ',';
    if (!name) name = "(memory)";
    p = text;
    end = text + len;
    for (; line < cfg.skip_lines && p < end; line++) p = dlf__csv_line(p, end, &le);
    /* the first line that holds anything */
    if (p >= end)
        return dlf__fail(DLF_ERR_FORMAT, "%s: empty file: no rows%s", name, cfg.skip_lines ? " after the skipped lines" : "");
    ls = p;
    next = dlf__csv_line(p, end, &le);
    first = ++line;
    if (le == ls)
        return dlf__fail(DLF_ERR_FORMAT, "%s: line %d is empty, expected the %s", name, line,
                         cfg.header > 0 ? "header" : "first row");
    ncols = dlf__csv_count_fields(ls, le, cfg.delim);
    header = cfg.header > 0;
    if (cfg.header == 0) {   /* detect: no field a number, a header; every field, a row; a mix, an error */
        const char *f = ls, *bad = NULL, *bad_end = NULL;
        int numbers = 0, bad_col = 0;
        for (col = 0; col < ncols; col++) {
            const char *fe = f;
            double v;
            while (fe < le && *fe != cfg.delim) fe++;
            if (dlf__csv_number(f, fe, &v) != 0) numbers++;
            else if (!bad) { bad = f; bad_end = fe; bad_col = col + 1; }
            f = fe + 1;
        }
        header = numbers == 0;
        if (numbers > 0 && bad) {
            dlf__csv_show(bad, bad_end, show, sizeof show);
            return dlf__fail(DLF_ERR_FORMAT, "%s: line %d mixes numbers and text (column %d: \"%s\"), so it is "
                             "neither a header nor a row; say which (header 1 or -1) or fix it", name, line, bad_col, show);
        }
    }
    if (ncols < 2)
        return dlf__fail(DLF_ERR_FORMAT, "%s: line %d has %d column; a table needs a label and at least one feature",
                         name, line, ncols);
    label = cfg.label_col < 0 ? ncols + cfg.label_col : cfg.label_col;
    if (label < 0 || label >= ncols)
        return dlf__fail(DLF_ERR_ARG, "%s: label column %d is outside the table's %d columns", name, cfg.label_col, ncols);
    if (header) p = next;
    else line--;   /* the first line is a row: read it again below */
    for (k = (size_t)(p - text); k < len; k++) max_rows += text[k] == '\n';
    /* a row of ncols fields takes at least ncols bytes (its separators and line end),
       so the allocation stays linear in the file's size whatever the first row says */
    if (max_rows > (len - (size_t)(p - text)) / (size_t)ncols + 1) max_rows = (len - (size_t)(p - text)) / (size_t)ncols + 1;
    feat = (float *)dlf__malloc(max_rows * (size_t)(ncols - 1) * sizeof(float), "CSV features");
    lab = (float *)dlf__malloc(max_rows * sizeof(float), "CSV labels");
    if (!feat || !lab) { rc = DLF_ERR_NOMEM; goto done; }
    while (p < end) {
        const char *f, *q;
        float *row = feat + (size_t)rows * (ncols - 1);
        int nf, j = 0;
        ls = p;
        p = dlf__csv_line(p, end, &le);
        line++;
        if (le == ls) {   /* an empty line: only at the end of the file */
            for (q = p; q < end && (*q == '\n' || *q == '\r' || *q == ' ' || *q == '\t'); q++) {}
            if (q == end) break;
            rc = dlf__fail(DLF_ERR_FORMAT, "%s: line %d is empty (an empty line inside the table)", name, line);
            goto done;
        }
        nf = dlf__csv_count_fields(ls, le, cfg.delim);
        if (nf != ncols) {
            rc = dlf__fail(DLF_ERR_FORMAT, "%s: line %d has %d column%s, expected %d (as line %d)", name, line, nf,
                           nf == 1 ? "" : "s", ncols, first);
            goto done;
        }
        if ((size_t)rows >= max_rows) {   /* cannot happen (see max_rows); a guard, not a path */
            rc = dlf__fail(DLF_ERR_FORMAT, "%s: line %d: more rows than the file's size allows", name, line);
            goto done;
        }
        f = ls;
        for (col = 0; col < ncols; col++) {
            const char *fe = f;
            double v = 0.0;
            int r;
            while (fe < le && *fe != cfg.delim) fe++;
            r = dlf__csv_number(f, fe, &v);
            dlf__csv_show(f, fe, show, sizeof show);
            if (r != 1) {
                if (r == 2)
                    rc = dlf__fail(DLF_ERR_FORMAT, "%s: line %d, column %d: \"%s\" is out of float range", name,
                                   line, col + 1, show);
                else if (show[0] == 0 || strspn(show, " \t") == strlen(show))
                    rc = dlf__fail(DLF_ERR_FORMAT, "%s: line %d, column %d: an empty field, expected a number", name,
                                   line, col + 1);
                else
                    rc = dlf__fail(DLF_ERR_FORMAT, "%s: line %d, column %d: \"%s\" is not a number (decimal "
                                   "digits only; no NaN or inf)", name, line, col + 1, show);
                goto done;
            }
            if (col == label) {
                if (!cfg.regression && (v < 0.0 || v >= 16777216.0 || v != floor(v))) {
                    rc = dlf__fail(DLF_ERR_FORMAT, "%s: line %d, column %d: label \"%s\" is not a class id (an "
                                   "integer in [0, 2^24)); set regression for float targets", name, line, col + 1, show);
                    goto done;
                }
                lab[rows] = (float)v;
                if (!cfg.regression && (int)v > top) top = (int)v;
            } else {
                row[j++] = (float)v;
            }
            f = fe + 1;
        }
        rows++;
    }
    if (rows == 0) {
        rc = dlf__fail(DLF_ERR_FORMAT, "%s: no data rows after the header (line %d)", name, line);
        goto done;
    }
    out->n = rows;
    out->channels = ncols - 1;
    out->table = 1;
    out->rows = out->cols = 1;
    out->owns = 1;
    out->features = feat;
    feat = NULL;
    if (cfg.regression) {
        out->targets = lab;
        out->n_targets = 1;
        lab = NULL;
    } else {
        out->ids = (int32_t *)dlf__malloc((size_t)rows * sizeof(int32_t), "CSV class ids");
        if (!out->ids) { dlf_dataset_free(out); rc = DLF_ERR_NOMEM; goto done; }
        for (col = 0; col < rows; col++) out->ids[col] = (int32_t)lab[col];
        out->n_classes = top + 1;
    }
done:
    if (feat) DLF_FREE(feat);
    if (lab) DLF_FREE(lab);
    return rc;
}

#ifndef DLF_NO_STDIO
DLFDEF int dlf_csv_load(const char *path, const dlf_csv_cfg *cfg, dlf_dataset *out)
{
    FILE *f;
    long total;
    char *buf;
    int rc;
    if (!out) { dlf__panic("dlf_csv_load: out is NULL"); return DLF_ERR_ARG; }
    memset(out, 0, sizeof *out);
    if (!path) { dlf__panic("dlf_csv_load: path is NULL"); return DLF_ERR_ARG; }
    f = fopen(path, "rb");
    if (!f) return dlf__fail(DLF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (total = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return dlf__fail(DLF_ERR_IO, "%s: cannot find the file's size (not a regular file?)", path);
    }
    buf = (char *)dlf__malloc((size_t)total + 1, "CSV text");
    if (!buf) { fclose(f); return DLF_ERR_NOMEM; }
    if (fread(buf, 1, (size_t)total, f) != (size_t)total) {
        fclose(f);
        DLF_FREE(buf);
        return dlf__fail(DLF_ERR_IO, "%s: short read of %ld bytes", path, total);
    }
    fclose(f);
    rc = dlf_csv_parse(buf, (size_t)total, path, cfg, out);
    DLF_FREE(buf);
    return rc;
}
#endif

#ifndef DLF_NO_STDIO
static int dlf__load_pair(dlf_dataset *d, const char *dir, const char *prefix, const char *split)
{
    char pi[1024], pl[1024];
    dlf_idx im, lb;
    int rc;
    int ni = snprintf(pi, sizeof pi, "%s/%s%s-images-idx3-ubyte", dir, prefix, split);
    int nl = snprintf(pl, sizeof pl, "%s/%s%s-labels-idx1-ubyte", dir, prefix, split);
    if (ni < 0 || ni >= (int)sizeof pi || nl < 0 || nl >= (int)sizeof pl)
        return dlf__fail(DLF_ERR_ARG, "%s: data directory path is too long", dir);
    rc = dlf_idx_load(pi, &im);
    if (rc != DLF_OK) return rc;
    rc = dlf_idx_load(pl, &lb);
    if (rc != DLF_OK) { dlf_idx_free(&im); return rc; }
    if (im.ndim != 3) {
        dlf_idx_free(&im); dlf_idx_free(&lb);
        return dlf__fail(DLF_ERR_FORMAT, "%s: expected an image file (magic 0x%08x), got %d dims",
                         pi, (unsigned)DLF_IDX_IMAGES, im.ndim);
    }
    rc = dlf_dataset_from_idx(d, &im, &lb, pi);
    dlf_idx_free(&im);
    dlf_idx_free(&lb);
    return rc;
}

DLFDEF int dlf_mnist_load(dlf_mnist *m, const char *dir, const dlf_mnist_cfg *cfg_in)
{
    DLF__NOT_NULL(m, DLF_ERR_ARG); DLF__NOT_NULL(dir, DLF_ERR_ARG);
    dlf_mnist_cfg cfg;
    int rc, n_valid, n;
    memset(m, 0, sizeof *m);
    memset(&cfg, 0, sizeof cfg);
    if (cfg_in) cfg = *cfg_in;
    if (!cfg.prefix) cfg.prefix = "";
    if (!cfg.test_split) cfg.test_split = "t10k";
    rc = dlf__load_pair(&m->all_train, dir, cfg.prefix, "train");
    if (rc != DLF_OK) return rc;
    rc = dlf__load_pair(&m->test, dir, cfg.prefix, cfg.test_split);
    if (rc != DLF_OK) { dlf_mnist_free(m); return rc; }
    n = m->all_train.n;
    n_valid = cfg.n_valid < 0 ? 0 : (cfg.n_valid == 0 ? n / 6 : cfg.n_valid);
    if (n_valid >= n) {
        dlf_mnist_free(m);
        return dlf__fail(DLF_ERR_ARG, "%s: n_valid %d leaves no training items (the train file has %d)",
                         dir, n_valid, n);
    }
    m->train = dlf_dataset_view(&m->all_train, 0, n - n_valid);
    m->valid = dlf_dataset_view(&m->all_train, n - n_valid, n_valid);
    dlf_dataset_stats(&m->train, &m->mean, &m->std);
    return DLF_OK;
}
#endif

DLFDEF void dlf_mnist_free(dlf_mnist *m)
{
    DLF__NOT_NULL(m, );
    dlf_dataset_free(&m->all_train);
    dlf_dataset_free(&m->test);
    memset(m, 0, sizeof *m);
}

DLFDEF dlf_loader *dlf_loader_create(const dlf_dataset *ds, const dlf_loader_cfg *cfg_in)
{
    DLF__NOT_NULL(ds, NULL);
    dlf_loader *l;
    int bs, C, c, v;
    if (!ds) { dlf__panic("dlf_loader_create: ds is NULL"); return NULL; }
    if (cfg_in && !cfg_in->ch_mean != !cfg_in->ch_std) {   /* checked before allocating: a panic handler may not return */
        dlf__panic("dlf_loader_create: ch_mean and ch_std go together (ch_mean %s, ch_std %s)",
                   cfg_in->ch_mean ? "set" : "NULL", cfg_in->ch_std ? "set" : "NULL");
        return NULL;
    }
    if (ds->targets && ds->n_targets <= 0) {
        dlf__panic("dlf_loader_create: the dataset has targets but n_targets is %d", ds->n_targets);
        return NULL;
    }
    l = (dlf_loader *)dlf__malloc(sizeof *l, "a data loader");
    if (!l) return NULL;
    memset(l, 0, sizeof *l);
    if (cfg_in) l->cfg = *cfg_in;
    if (l->cfg.batch_size == 0) l->cfg.batch_size = 64;
    bs = l->cfg.batch_size;
    if (bs < 0) {
        dlf__panic("dlf_loader_create: batch_size %d is negative", bs);
        DLF_FREE(l);
        return NULL;
    }
    C = dlf_dataset_channels(ds);
    l->ds = ds;
    l->channels = C;
    l->n_batches = l->cfg.drop_last ? ds->n / bs : (ds->n + bs - 1) / bs;
    dlf_rng_seed(&l->rng, l->cfg.seed);
    l->order = (int *)dlf__malloc((size_t)(ds->n > 0 ? ds->n : 1) * sizeof(int), "loader order");
    l->norm_mean = (float *)dlf__malloc((size_t)C * sizeof(float), "loader normalization");
    l->norm_std = (float *)dlf__malloc((size_t)C * sizeof(float), "loader normalization");
    if (!ds->features) l->luts = (float *)dlf__malloc((size_t)C * 256 * sizeof(float), "loader tables");
    l->x = ds->table ? dlf_tensor_new2(bs, C) : dlf_tensor_new4(bs, C, ds->rows, ds->cols);
    l->y = ds->targets ? dlf_tensor_new2(bs, ds->n_targets) : dlf_tensor_new1(bs);
    if (!l->order || !l->norm_mean || !l->norm_std || (!ds->features && !l->luts) || !l->x || !l->y) {
        dlf_loader_free(l);
        return NULL;
    }
    for (c = 0; c < C; c++) {
        if (l->cfg.ch_mean) {
            l->norm_mean[c] = l->cfg.ch_mean[c];
            l->norm_std[c] = l->cfg.ch_std[c] > 0.0f ? l->cfg.ch_std[c] : 1.0f;
        } else if (l->cfg.std > 0.0f) {
            l->norm_mean[c] = l->cfg.mean;
            l->norm_std[c] = l->cfg.std;
        } else {
            l->norm_mean[c] = 0.0f;
            l->norm_std[c] = 1.0f;
        }
        if (l->luts)   /* the same float expression as dlf_normalize_lut */
            for (v = 0; v < 256; v++)
                l->luts[c * 256 + v] = ((float)v / 255.0f - l->norm_mean[c]) / l->norm_std[c];
    }
    if (l->luts) memcpy(l->lut, l->luts, sizeof l->lut);
    else dlf_normalize_lut(l->lut, l->norm_mean[0], l->norm_std[0]);
    return l;
}

DLFDEF void dlf_loader_free(dlf_loader *l)
{
    if (!l) return;
    if (l->order) DLF_FREE(l->order);
    if (l->norm_mean) DLF_FREE(l->norm_mean);
    if (l->norm_std) DLF_FREE(l->norm_std);
    if (l->luts) DLF_FREE(l->luts);
    dlf_tensor_free(l->x);
    dlf_tensor_free(l->y);
    DLF_FREE(l);
}

/* Position 0 starts an epoch: a fresh permutation drawn from the loader's own rng,
   so epoch e's order depends only on the seed and e. */
DLFDEF int dlf_loader_next(dlf_loader *l)
{
    DLF__NOT_NULL(l, 0);
    int i, bs = l->cfg.batch_size, n = l->ds->n, count;
    if (l->pos == 0) {
        if (l->cfg.shuffle) dlf_rng_permutation(&l->rng, l->order, n);
        else for (i = 0; i < n; i++) l->order[i] = i;
        l->epoch++;
    }
    count = n - l->pos < bs ? n - l->pos : bs;
    if (count <= 0 || (l->cfg.drop_last && count < bs)) {
        l->pos = 0;  /* the epoch is over; the next call starts another */
        return 0;
    }
    l->x->shape[0] = bs;                  /* back to full capacity before filling */
    l->x->size = bs * dlf_dataset_item_size(l->ds);
    l->y->shape[0] = bs;
    l->y->size = bs * dlf__label_size(l->ds);
    dlf__fill_batch(l->ds, l->order + l->pos, count, l->luts, 256, l->norm_mean, l->norm_std, l->x, l->y,
                    "dlf_loader_next");
    if (l->cfg.transform) {
        l->cfg.transform(l->x, l->y, l->cfg.transform_user);
        dlf__written(l->x);
        dlf__written(l->y);
    }
    l->pos += count;
    return count;
}

DLFDEF void dlf_normalize(dlf_tensor *x, const float *mean, const float *std, int channels)
{
    int N, inner, i, c, j;
    char sx[64];
    if (!x) { dlf__panic("dlf_normalize: x is NULL"); return; }
    if (!mean) { dlf__panic("dlf_normalize: mean is NULL"); return; }
    if (!std) { dlf__panic("dlf_normalize: std is NULL"); return; }
    if (x->ndim < 2 || x->shape[1] != channels) {
        dlf__panic("dlf_normalize: x %s does not have %d channels in dim 1", dlf_shape_str(x, sx, sizeof sx), channels);
        return;
    }
    N = x->shape[0];
    inner = N > 0 && channels > 0 ? x->size / (N * channels) : 0;
    for (i = 0; i < N; i++)
        for (c = 0; c < channels; c++) {
            float *p = x->data + ((size_t)i * channels + c) * inner, s = std[c] > 0.0f ? std[c] : 1.0f;
            for (j = 0; j < inner; j++) p[j] = (p[j] - mean[c]) / s;
        }
    dlf__written(x);
}

DLFDEF int dlf_mnist_loaders(const dlf_mnist *m, int batch_size, int eval_batch_size, uint64_t seed,
                             dlf_loader **train, dlf_loader **valid, dlf_loader **test)
{
    DLF__NOT_NULL(m, DLF_ERR_ARG);
    dlf_loader_cfg cfg;
    dlf_loader *tr = NULL, *va = NULL, *te = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.mean = m->mean;
    cfg.std = m->std;
    cfg.batch_size = batch_size;
    cfg.shuffle = 1;
    cfg.seed = seed;
    if (train && !(tr = dlf_loader_create(&m->train, &cfg))) goto oom;
    cfg.batch_size = eval_batch_size;
    cfg.shuffle = 0;
    if (valid && m->valid.n > 0 && !(va = dlf_loader_create(&m->valid, &cfg))) goto oom;
    if (test && !(te = dlf_loader_create(&m->test, &cfg))) goto oom;
    if (train) *train = tr;
    if (valid) *valid = va;
    if (test) *test = te;
    return DLF_OK;
oom:
    dlf_loader_free(tr);
    dlf_loader_free(va);
    dlf_loader_free(te);
    return DLF_ERR_NOMEM;
}

DLFDEF int dlf_loader_get_state(const dlf_loader *l, dlf_loader_state *s)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(s, DLF_ERR_ARG);
    s->n = l->ds->n;
    s->order = (int *)dlf__malloc((size_t)(s->n ? s->n : 1) * sizeof(int), "loader state");
    if (!s->order) return DLF_ERR_NOMEM;
    memcpy(s->order, l->order, (size_t)s->n * sizeof(int));
    s->pos = l->pos;
    s->epoch = l->epoch;
    s->rng = l->rng;
    return DLF_OK;
}

DLFDEF void dlf_loader_set_state(dlf_loader *l, const dlf_loader_state *s)
{
    DLF__NOT_NULL(l, ); DLF__NOT_NULL(s, );
    if (s->n != l->ds->n) {
        dlf__panic("dlf_loader_set_state: the state has %d items, the loader's dataset %d", s->n, l->ds->n);
        return;
    }
    memcpy(l->order, s->order, (size_t)s->n * sizeof(int));
    l->pos = s->pos;
    l->epoch = s->epoch;
    l->rng = s->rng;
}

DLFDEF void dlf_loader_state_free(dlf_loader_state *s)
{
    DLF__NOT_NULL(s, );
    if (s->order) DLF_FREE(s->order);
    memset(s, 0, sizeof *s);
}

/* ---- augmentation: the transforms, then the pipeline ---- */

static dlf_aug dlf__aug_new(dlf_aug_kind kind)
{
    dlf_aug a;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    return a;
}
DLFDEF dlf_aug dlf_aug_flip(float p)
{
    dlf_aug a = dlf__aug_new(DLF_AUG_FLIP);
    a.p = p;
    return a;
}
DLFDEF dlf_aug dlf_aug_crop_pad(int pad)
{
    dlf_aug a = dlf__aug_new(DLF_AUG_CROP_PAD);
    a.pad = pad;
    return a;
}
DLFDEF dlf_aug dlf_aug_resized_crop(float scale_lo, float scale_hi, float ratio_lo, float ratio_hi)
{
    dlf_aug a = dlf__aug_new(DLF_AUG_RESIZED_CROP);
    a.lo = scale_lo;
    a.hi = scale_hi;
    a.ratio_lo = ratio_lo;
    a.ratio_hi = ratio_hi;
    return a;
}
DLFDEF dlf_aug dlf_aug_affine(float p, float degrees, float translate, float scale_lo, float scale_hi)
{
    dlf_aug a = dlf__aug_new(DLF_AUG_AFFINE);
    a.p = p;
    a.degrees = degrees;
    a.translate = translate;
    a.lo = scale_lo;
    a.hi = scale_hi;
    return a;
}
DLFDEF dlf_aug dlf_aug_erase(float p, float area_lo, float area_hi, float ratio_lo, float ratio_hi, float value)
{
    dlf_aug a = dlf__aug_new(DLF_AUG_ERASE);
    a.p = p;
    a.lo = area_lo;
    a.hi = area_hi;
    a.ratio_lo = ratio_lo;
    a.ratio_hi = ratio_hi;
    a.value = value;
    return a;
}
DLFDEF dlf_aug dlf_aug_normalize(int channels, const float *mean, const float *std)
{
    dlf_aug a = dlf__aug_new(DLF_AUG_NORMALIZE);
    int c;
    a.channels = channels;
    for (c = 0; c < channels && c < DLF_AUG_MAX_C && mean && std; c++) {
        a.mean[c] = mean[c];
        a.std[c] = std[c];
    }
    return a;
}

/* Is the transform's setting valid (for C channels; C <= 0: not known yet)? */
static int dlf__aug_valid(const dlf_aug *a, int C)
{
    int c;
    switch (a->kind) {
    case DLF_AUG_FLIP: return a->p >= 0.0f && a->p <= 1.0f;
    case DLF_AUG_CROP_PAD: return a->pad >= 0 && a->pad <= 4096;
    case DLF_AUG_RESIZED_CROP:
        return a->lo > 0.0f && a->lo <= a->hi && a->hi <= 1.0f && a->ratio_lo > 0.0f && a->ratio_lo <= a->ratio_hi;
    case DLF_AUG_AFFINE:
        return a->p >= 0.0f && a->p <= 1.0f && a->degrees >= 0.0f && a->degrees <= 360.0f && a->translate >= 0.0f &&
               a->translate <= 1.0f && a->lo > 0.0f && a->lo <= a->hi;
    case DLF_AUG_ERASE:
        return a->p >= 0.0f && a->p <= 1.0f && a->lo > 0.0f && a->lo <= a->hi && a->hi <= 1.0f && a->ratio_lo > 0.0f &&
               a->ratio_lo <= a->ratio_hi;
    case DLF_AUG_NORMALIZE:
        if (a->channels < 1 || a->channels > DLF_AUG_MAX_C || (C > 0 && a->channels != C)) return 0;
        for (c = 0; c < a->channels; c++)
            if (!(a->std[c] > 0.0f) || a->mean[c] != a->mean[c]) return 0;
        return 1;
    }
    return 0;
}

static float dlf__aug_uniform(dlf_rng *r, float lo, float hi) { return lo + (hi - lo) * dlf_rng_uniform(r); }

/* The bilinear value of plane (H,W) at (y, x); neighbours outside the plane count as 0. */
static float dlf__bilinear(const float *plane, int H, int W, float y, float x)
{
    int y0 = (int)floorf(y), x0 = (int)floorf(x), dy, dx;
    float fy = y - (float)y0, fx = x - (float)x0, v = 0.0f;
    for (dy = 0; dy < 2; dy++)
        for (dx = 0; dx < 2; dx++) {
            int yy = y0 + dy, xx = x0 + dx;
            float w = (dy ? fy : 1.0f - fy) * (dx ? fx : 1.0f - fx);
            if (w != 0.0f && yy >= 0 && yy < H && xx >= 0 && xx < W) v += w * plane[(size_t)yy * W + xx];
        }
    return v;
}

/* A random box of area fraction U(lo, hi) and aspect ratio w/h log-uniform in
   [ratio_lo, ratio_hi], 10 tries (torchvision's RandomResizedCrop.get_params and
   RandomErasing.get_params). strict: the box must be smaller than the image (erasing).
   Returns 1 with the box, or 0 when no try fitted. */
static int dlf__aug_box(const dlf_aug *a, int H, int W, int strict, dlf_rng *r, int *top, int *left, int *h, int *w)
{
    int tries;
    double area = (double)H * W, lr0 = log(a->ratio_lo), lr1 = log(a->ratio_hi);
    for (tries = 0; tries < 10; tries++) {
        double target = area * dlf__aug_uniform(r, a->lo, a->hi);
        double ar = exp(lr0 + (lr1 - lr0) * dlf_rng_uniform(r));
        int bw = (int)floor(sqrt(target * ar) + 0.5), bh = (int)floor(sqrt(target / ar) + 0.5);
        if (strict) {   /* erasing: h from the ratio times the area, as torchvision does */
            int t = bw;
            bw = bh;
            bh = t;
        }
        if (bw > 0 && bh > 0 && (strict ? (bw < W && bh < H) : (bw <= W && bh <= H))) {
            *top = (int)dlf_rng_below(r, (uint32_t)(H - bh + 1));
            *left = (int)dlf_rng_below(r, (uint32_t)(W - bw + 1));
            *h = bh;
            *w = bw;
            return 1;
        }
    }
    return 0;
}

DLFDEF int dlf_aug_image(const dlf_aug *a, float *img, int C, int H, int W, dlf_rng *r, float *scratch)
{
    size_t HW = (size_t)H * W, n = (size_t)C * HW;
    int c, i, j;
    if (!a || !img || !r || !scratch) {
        dlf__panic("dlf_aug_image: %s is NULL", !a ? "the transform" : !img ? "img" : !r ? "the rng" : "scratch");
        return DLF_ERR_ARG;
    }
    if (C < 1 || H < 1 || W < 1 || !dlf__aug_valid(a, C))
        return dlf__fail(DLF_ERR_ARG, "dlf_aug_image: transform %d does not fit an image (%d, %d, %d) or has a bad setting",
                         (int)a->kind, C, H, W);
    switch (a->kind) {
    case DLF_AUG_FLIP:
        if (dlf_rng_uniform(r) < a->p)
            for (c = 0; c < C * H; c++) {   /* every row of every channel, reversed */
                float *row = img + (size_t)c * W;
                for (j = 0; j < W / 2; j++) {
                    float tmp = row[j];
                    row[j] = row[W - 1 - j];
                    row[W - 1 - j] = tmp;
                }
            }
        break;
    case DLF_AUG_CROP_PAD: {   /* out(i, j) = in(i + dy - pad, j + dx - pad), zero outside */
        int dy = (int)dlf_rng_below(r, (uint32_t)(2 * a->pad + 1)) - a->pad;
        int dx = (int)dlf_rng_below(r, (uint32_t)(2 * a->pad + 1)) - a->pad;
        memcpy(scratch, img, n * sizeof(float));
        for (c = 0; c < C; c++)
            for (i = 0; i < H; i++)
                for (j = 0; j < W; j++) {
                    int si = i + dy, sj = j + dx;
                    img[c * HW + (size_t)i * W + j] =
                        si >= 0 && si < H && sj >= 0 && sj < W ? scratch[c * HW + (size_t)si * W + sj] : 0.0f;
                }
        break;
    }
    case DLF_AUG_RESIZED_CROP: {
        int top, left, h, w;
        if (!dlf__aug_box(a, H, W, 0, r, &top, &left, &h, &w)) {   /* the centre, ratio clamped */
            double in_ratio = (double)W / H;
            if (in_ratio < a->ratio_lo) { w = W; h = (int)floor(w / a->ratio_lo + 0.5); }
            else if (in_ratio > a->ratio_hi) { h = H; w = (int)floor(h * a->ratio_hi + 0.5); }
            else { w = W; h = H; }
            top = (H - h) / 2;
            left = (W - w) / 2;
        }
        memcpy(scratch, img, n * sizeof(float));
        for (c = 0; c < C; c++)
            for (i = 0; i < H; i++) {
                /* pixel centres map to pixel centres (align_corners=False), clamped to the box */
                float sy = (float)top + ((float)i + 0.5f) * (float)h / (float)H - 0.5f;
                sy = sy < (float)top ? (float)top : sy > (float)(top + h - 1) ? (float)(top + h - 1) : sy;
                for (j = 0; j < W; j++) {
                    float sx = (float)left + ((float)j + 0.5f) * (float)w / (float)W - 0.5f;
                    sx = sx < (float)left ? (float)left : sx > (float)(left + w - 1) ? (float)(left + w - 1) : sx;
                    img[c * HW + (size_t)i * W + j] = dlf__bilinear(scratch + c * HW, H, W, sy, sx);
                }
            }
        break;
    }
    case DLF_AUG_AFFINE: {
        /* forward: dst = s R(angle) (src - ctr) + ctr + t; each output pixel samples the input
           at src = R(-angle) (dst - ctr - t) / s + ctr */
        double ang, co, si, sc, ty, tx, cy = (H - 1) / 2.0, cx = (W - 1) / 2.0;
        if (!(dlf_rng_uniform(r) < a->p)) break;
        ang = dlf__aug_uniform(r, -a->degrees, a->degrees) * 3.14159265358979323846 / 180.0;
        sc = dlf__aug_uniform(r, a->lo, a->hi);
        tx = floor(dlf__aug_uniform(r, -a->translate * W, a->translate * W) + 0.5);
        ty = floor(dlf__aug_uniform(r, -a->translate * H, a->translate * H) + 0.5);
        co = cos(ang);
        si = sin(ang);
        memcpy(scratch, img, n * sizeof(float));
        for (i = 0; i < H; i++)
            for (j = 0; j < W; j++) {
                double dx = j - cx - tx, dy = i - cy - ty;
                float sx = (float)((co * dx + si * dy) / sc + cx), sy = (float)((-si * dx + co * dy) / sc + cy);
                for (c = 0; c < C; c++) img[c * HW + (size_t)i * W + j] = dlf__bilinear(scratch + c * HW, H, W, sy, sx);
            }
        break;
    }
    case DLF_AUG_ERASE: {
        int top, left, h, w;
        if (!(dlf_rng_uniform(r) < a->p)) break;
        if (!dlf__aug_box(a, H, W, 1, r, &top, &left, &h, &w)) break;   /* no box fitted: unchanged */
        for (c = 0; c < C; c++)
            for (i = top; i < top + h; i++)
                for (j = left; j < left + w; j++) img[c * HW + (size_t)i * W + j] = a->value;
        break;
    }
    case DLF_AUG_NORMALIZE:
        for (c = 0; c < C; c++) {
            float m = a->mean[c], inv = 1.0f / a->std[c];
            for (i = 0; i < (int)HW; i++) img[c * HW + i] = (img[c * HW + i] - m) * inv;
        }
        break;
    }
    return DLF_OK;
}

DLFDEF void dlf_augment_init(dlf_augment *a)
{
    if (a) memset(a, 0, sizeof *a);
}

DLFDEF int dlf_augment_add(dlf_augment *a, dlf_aug step)
{
    if (!a) {
        dlf__panic("dlf_augment_add: the pipeline is NULL");
        return DLF_ERR_ARG;
    }
    if (a->n == DLF_AUG_MAX)
        return dlf__fail(DLF_ERR_ARG, "dlf_augment_add: the pipeline already holds %d transforms", DLF_AUG_MAX);
    if (!dlf__aug_valid(&step, 0))
        return dlf__fail(DLF_ERR_ARG, "dlf_augment_add: transform %d has a setting out of range "
                         "(probabilities in [0,1], ranges lo <= hi, positive std ...)", (int)step.kind);
    a->steps[a->n++] = step;
    return DLF_OK;
}

DLFDEF int dlf_augment_reserve(dlf_augment *a, int C, int H, int W)
{
    size_t n = (size_t)(C > 0 ? C : 1) * (size_t)(H > 0 ? H : 1) * (size_t)(W > 0 ? W : 1);
    if (!a) {
        dlf__panic("dlf_augment_reserve: the pipeline is NULL");
        return DLF_ERR_ARG;
    }
    if (n > a->scratch_n) {
        float *p = (float *)dlf__malloc(n * sizeof(float), "the augmentation scratch image");
        if (!p) return DLF_ERR_NOMEM;
        if (a->scratch) DLF_FREE(a->scratch);
        a->scratch = p;
        a->scratch_n = n;
    }
    return DLF_OK;
}

DLFDEF int dlf_augment_apply(dlf_augment *a, dlf_tensor *x, dlf_rng *r)
{
    int N, C, H, W, i, k, rc;
    if (!a || !x || !r) {
        dlf__panic("dlf_augment_apply: %s is NULL", !a ? "the pipeline" : !x ? "x" : "the rng");
        return DLF_ERR_ARG;
    }
    if (x->ndim != 4) {
        char sx[64];
        dlf__panic("dlf_augment_apply: x must be (N, C, H, W), got %s", dlf_shape_str(x, sx, sizeof sx));
        return DLF_ERR_ARG;
    }
    N = x->shape[0]; C = x->shape[1]; H = x->shape[2]; W = x->shape[3];
    if ((rc = dlf_augment_reserve(a, C, H, W)) != DLF_OK) return rc;
    for (i = 0; i < N; i++)   /* one image at a time: the draws come in a fixed order */
        for (k = 0; k < a->n; k++)
            if ((rc = dlf_aug_image(&a->steps[k], x->data + (size_t)i * C * H * W, C, H, W, r, a->scratch)) != DLF_OK)
                return rc;
    dlf__written(x);
    return DLF_OK;
}

DLFDEF void dlf_augment_free(dlf_augment *a)
{
    if (!a) return;
    if (a->scratch) DLF_FREE(a->scratch);
    memset(a, 0, sizeof *a);
}

/* ---- mixup ---- */

DLFDEF void dlf_mixup_free(dlf_mixup *m)
{
    if (!m) return;
    if (m->perm) DLF_FREE(m->perm);
    if (m->lam) DLF_FREE(m->lam);
    if (m->buf) DLF_FREE(m->buf);
    if (m->y) DLF_FREE(m->y);
    if (m->y2) DLF_FREE(m->y2);
    memset(m, 0, sizeof *m);
}

DLFDEF int dlf_mixup_init(dlf_mixup *m, float alpha, int max_batch, int item_floats)
{
    if (!m) {
        dlf__panic("dlf_mixup_init: m is NULL");
        return DLF_ERR_ARG;
    }
    memset(m, 0, sizeof *m);
    if (!(alpha > 0.0f) || max_batch < 1 || item_floats < 1)
        return dlf__fail(DLF_ERR_ARG, "dlf_mixup_init: want alpha > 0, max_batch >= 1, item_floats >= 1; got %g, %d, %d",
                         (double)alpha, max_batch, item_floats);
    m->alpha = alpha;
    m->cap = max_batch;
    m->item = (size_t)item_floats;
    m->perm = (int *)dlf__malloc((size_t)max_batch * sizeof(int), "mixup");
    m->lam = (float *)dlf__malloc((size_t)max_batch * sizeof(float), "mixup");
    m->buf = (float *)dlf__malloc((size_t)max_batch * m->item * sizeof(float), "mixup");
    m->y = (float *)dlf__malloc((size_t)max_batch * sizeof(float), "mixup");
    m->y2 = (float *)dlf__malloc((size_t)max_batch * sizeof(float), "mixup");
    if (!m->perm || !m->lam || !m->buf || !m->y || !m->y2) {
        dlf_mixup_free(m);
        return DLF_ERR_NOMEM;
    }
    return DLF_OK;
}

DLFDEF int dlf_mixup_apply(dlf_mixup *m, dlf_tensor *x, const dlf_tensor *y, dlf_rng *r)
{
    int i, N;
    size_t k;
    if (!m || !x || !y || !r) {
        dlf__panic("dlf_mixup_apply: %s is NULL", !m ? "m" : !x ? "x" : !y ? "y" : "the rng");
        return DLF_ERR_ARG;
    }
    N = x->ndim > 0 ? x->shape[0] : 0;
    if (N < 1 || N > m->cap || (size_t)x->size != (size_t)N * m->item || y->size != N) {
        char sx[64], sy[64];
        dlf__panic("dlf_mixup_apply: x %s and y %s do not fit the mixup's batch (at most %d items of %zu floats)",
                   dlf_shape_str(x, sx, sizeof sx), dlf_shape_str(y, sy, sizeof sy), m->cap, m->item);
        return DLF_ERR_ARG;
    }
    dlf_rng_permutation(r, m->perm, N);
    for (i = 0; i < N; i++) {
        float b = dlf_rng_beta(r, m->alpha, m->alpha);
        m->lam[i] = b > 1.0f - b ? b : 1.0f - b;
    }
    memcpy(m->buf, x->data, (size_t)N * m->item * sizeof(float));
    for (i = 0; i < N; i++) {
        const float *a = m->buf + (size_t)i * m->item, *b = m->buf + (size_t)m->perm[i] * m->item;
        float *o = x->data + (size_t)i * m->item, l = m->lam[i];
        for (k = 0; k < m->item; k++) o[k] = l * a[k] + (1.0f - l) * b[k];
        m->y[i] = y->data[i];
        m->y2[i] = y->data[m->perm[i]];
    }
    m->n = N;
    dlf__written(x);
    return DLF_OK;
}

DLFDEF dlf_tensor *dlf_mixup_loss(dlf_tape *t, const dlf_mixup *m, dlf_tensor *logits)
{
    DLF__OP(t);
    dlf_tensor *q;
    int i, j, C;
    if (!t || !m || !logits) {
        dlf__panic("dlf_mixup_loss: %s is NULL", !t ? "the tape" : !m ? "m" : "logits");
        return NULL;
    }
    if (logits->ndim != 2 || logits->shape[0] != m->n || m->n < 1) {
        char sx[64];
        dlf__panic("dlf_mixup_loss: logits %s do not match the last mixed batch of %d items",
                   dlf_shape_str(logits, sx, sizeof sx), m->n);
        return NULL;
    }
    C = logits->shape[1];
    q = dlf__out(t, 2, logits->shape);
    if (!q) return NULL;
    for (i = 0; i < m->n; i++) {
        float ya = m->y[i], yb = m->y2[i];
        if (!(ya >= 0.0f && ya < (float)C && ya == floorf(ya)) || !(yb >= 0.0f && yb < (float)C && yb == floorf(yb))) {
            dlf__panic("dlf_mixup_loss: label %g of item %d is not a class id in [0, %d)",
                       (double)(ya >= 0.0f && ya < (float)C && ya == floorf(ya) ? yb : ya), i, C);
            return NULL;
        }
        for (j = 0; j < C; j++) q->data[(size_t)i * C + j] = 0.0f;
        q->data[(size_t)i * C + (int)ya] += m->lam[i];
        q->data[(size_t)i * C + (int)yb] += 1.0f - m->lam[i];
    }
    return dlf_cross_entropy_soft(t, logits, q);
}

// >>stage14_learner (implementation) ----------------------------------------------
#if defined(__unix__) || defined(__APPLE__)
#include <sys/time.h>
#include <unistd.h>
#define DLF__POSIX 1
#endif
#include <time.h>

DLFDEF double dlf_seconds(void)
{
#ifdef DLF__POSIX
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

DLFDEF int dlf_stdout_is_tty(void)
{
#ifdef DLF__POSIX
    return isatty(1);
#else
    return 0;
#endif
}

/* The lr of the one-cycle schedule, OneCycleLR's with its lr defaults (div_factor 25,
   final_div_factor 1e4, anneal_strategy "cos", two phases), very short runs included:
   dlf_sched_one_cycle (stage 12) does the arithmetic. Its momentum half is
   dlf_sched_one_cycle_mom. */
DLFDEF float dlf_sched_lr(dlf_sched kind, float lr, float pct_start, int step, int total)
{
    dlf_schedule s;
    if (kind != DLF_SCHED_ONE_CYCLE) return lr;
    if (pct_start <= 0.0f || pct_start >= 1.0f) pct_start = 0.3f;
    s = dlf_sched_one_cycle((double)lr, (double)pct_start, 25.0, 1e4, 0);
    return (float)dlf_schedule_at(&s, step, total);
}

DLFDEF void dlf_progress_start(dlf_progress *p, const char *label, int total, int quiet)
{
    DLF__NOT_NULL(p, );
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->quiet = quiet;
    p->tty = dlf_stdout_is_tty();
    p->t_start = dlf_seconds();
}

#ifndef DLF_NO_STDIO
/* "epoch 1/5 batch 120/782 loss 0.4312 51234 items/s ETA 3.1s" */
static void dlf__progress_draw(const dlf_progress *p, double now, const char *end)
{
    double el = (p->t_end > 0.0 ? p->t_end : now) - p->t_start;
    double rate = el > 0 ? (double)p->items / el : 0.0;
    double eta = p->done > 0 ? el * (double)(p->total - p->done) / (double)p->done : 0.0;
    printf("%s%s batch %d/%d loss %.4f %.0f items/s %s %.1fs%s", p->tty ? "\r" : "", p->label, p->done,
           p->total, p->done ? p->loss_sum / p->done : 0.0, rate, p->done < p->total ? "ETA" : "took",
           p->done < p->total ? eta : el, end);
    fflush(stdout);
}
#endif

DLFDEF void dlf_progress_step(dlf_progress *p, int items, float loss)
{
    DLF__NOT_NULL(p, );
    double now;
    p->done++;
    p->items += items;
    p->loss_sum += loss;
    if (p->done == p->total) p->t_end = dlf_seconds();
    if (p->quiet || !p->tty) return;
    now = dlf_seconds();
    if (now - p->t_drawn < 0.1 && p->done < p->total) return;
    p->t_drawn = now;
#ifndef DLF_NO_STDIO
    dlf__progress_draw(p, now, "   ");
#endif
}

DLFDEF void dlf_progress_end(dlf_progress *p, const char *extra)
{
    DLF__NOT_NULL(p, );
#ifndef DLF_NO_STDIO
    if (p->quiet) return;
    dlf__progress_draw(p, dlf_seconds(), "");
    printf("%s%s\n", extra && extra[0] ? " " : "", extra ? extra : "");
    fflush(stdout);
#else
    (void)p;
    (void)extra;
#endif
}

/* No tape recording. Per item, from the logits z (C): loss = logsumexp(z) - z_y,
   in double with the max subtracted; correct when argmax z == y. */
DLFDEF dlf_loss_fn dlf_default_loss(const dlf_dataset *d)
{
    if (!d) { dlf__panic("dlf_default_loss: d is NULL"); return NULL; }
    return d->targets ? dlf_mse_loss : dlf_cross_entropy;
}

/* Float targets: the squared error summed over every output of every item, divided by
   their count at the end (dlf_mse_loss over the whole set). */
DLFDEF float dlf_evaluate(dlf_tape *t, dlf_model_fn model, void *m, dlf_loader *l, float *mean_loss)
{
    if (mean_loss) *mean_loss = NAN;   /* until there is one */
    DLF__NOT_NULL(t, NAN); DLF__NOT_NULL(model, NAN); DLF__NOT_NULL(l, NAN);
    int prev = dlf_tape_set_grad(t, 0), prev_training = dlf_tape_set_training(t, 0), n, i, j;
    int regression = l->ds->targets != NULL;
    long seen = 0, correct = 0, outputs = 0;
    double loss = 0.0;
    int failed = 0;
    l->pos = 0;
    while (!failed && (n = dlf_loader_next(l)) > 0) {
        dlf_tensor *z;
        dlf_tape_reset(t);
        z = model(t, l->x, m);
        if (!z) { failed = 1; break; }   /* out of memory, or a panic whose handler returned */
        if (regression) {
            char sz[64], sy[64];
            if (z->size != l->y->size) {
                dlf__panic("dlf_evaluate: the model's outputs %s do not match the targets %s",
                           dlf_shape_str(z, sz, sizeof sz), dlf_shape_str(l->y, sy, sizeof sy));
                break;
            }
            for (i = 0; i < z->size; i++) {
                double d = (double)z->data[i] - (double)l->y->data[i];
                loss += d * d;
            }
            outputs += z->size;
            seen += n;
            continue;
        }
        for (i = 0; i < n; i++) {
            int C = z->size / n, label, best = 0;
            const float *z_i = z->data + (size_t)i * C;
            double mx, s = 0.0;
            if (!(l->y->data[i] >= 0.0f && l->y->data[i] < (float)C)) {   /* NaN too, before the conversion */
                dlf__panic("dlf_evaluate: label %g of batch item %d is outside the model's %d classes",
                           (double)l->y->data[i], i, C);
                failed = 1;
                break;
            }
            label = (int)l->y->data[i];
            for (j = 1; j < C; j++)
                if (z_i[j] > z_i[best]) best = j;
            mx = z_i[best];
            for (j = 0; j < C; j++) s += exp((double)z_i[j] - mx);
            loss += mx + log(s) - (double)z_i[label];
            correct += best == label;
        }
        seen += n;
    }
    dlf_tape_reset(t);
    dlf_tape_set_grad(t, prev);
    dlf_tape_set_training(t, prev_training);
    if (failed) {
        if (mean_loss) *mean_loss = NAN;
        return NAN;
    }
    if (regression) {
        if (mean_loss) *mean_loss = outputs ? (float)(loss / (double)outputs) : 0.0f;
        return 0.0f;
    }
    if (mean_loss) *mean_loss = seen ? (float)(loss / (double)seen) : 0.0f;
    return seen ? (float)correct / (float)seen : 0.0f;
}

/* View v of the batch x (N, C, H, W) into out: out(i, j) = x'(i + dy, j + dx), zero
   outside, where x' is x mirrored left to right when flip is set. */
static void dlf__tta_view(const dlf_tensor *x, dlf_tensor *out, int flip, int dy, int dx)
{
    int H = x->shape[2], W = x->shape[3], planes = x->shape[0] * x->shape[1], p, i, j;
    for (p = 0; p < planes; p++) {
        const float *src = x->data + (size_t)p * H * W;
        float *dst = out->data + (size_t)p * H * W;
        for (i = 0; i < H; i++)
            for (j = 0; j < W; j++) {
                int si = i + dy, sj = j + dx;
                dst[(size_t)i * W + j] = si >= 0 && si < H && sj >= 0 && sj < W
                                             ? src[(size_t)si * W + (flip ? W - 1 - sj : sj)] : 0.0f;
            }
    }
}

DLFDEF float dlf_evaluate_tta(dlf_tape *t, dlf_model_fn model, void *m, dlf_loader *l, const dlf_tta_cfg *cfg,
                              float *mean_loss)
{
    static const int moves[5][2] = {{0, 0}, {0, 1}, {0, -1}, {1, 0}, {-1, 0}};   /* (dy, dx) per shift view */
    if (mean_loss) *mean_loss = NAN;
    DLF__NOT_NULL(t, NAN); DLF__NOT_NULL(model, NAN); DLF__NOT_NULL(l, NAN);
    int flips = cfg && cfg->flip ? 2 : 1, shifts = cfg && cfg->shift > 0 ? 5 : 1, n_views = flips * shifts;
    if (n_views == 1) return dlf_evaluate(t, model, m, l, mean_loss);
    if (l->ds->targets) {
        dlf__panic("dlf_evaluate_tta: the views are averaged as class probabilities; this set has float targets");
        return NAN;
    }
    int prev = dlf_tape_set_grad(t, 0), prev_training = dlf_tape_set_training(t, 0), n, i, j, v, C = 0, failed = 0;
    long seen = 0, correct = 0;
    double loss = 0.0, *acc = NULL;
    size_t acc_cap = 0;
    l->pos = 0;
    while (!failed && (n = dlf_loader_next(l)) > 0) {
        if (l->x->ndim != 4) {
            char sx[64];
            dlf__panic("dlf_evaluate_tta: flip and shift views need (N, C, H, W) batches, got %s",
                       dlf_shape_str(l->x, sx, sizeof sx));
            failed = 1;
            break;
        }
        for (v = 0; v < n_views && !failed; v++) {
            int flip = v % flips, mv = v / flips, dy = moves[mv][0] * (shifts > 1 ? cfg->shift : 0),
                dx = moves[mv][1] * (shifts > 1 ? cfg->shift : 0);
            dlf_tensor *view, *z;
            dlf_tape_reset(t);
            view = dlf_tape_tensor(t, 4, l->x->shape);
            if (!view) { failed = 1; break; }
            dlf__tta_view(l->x, view, flip, dy, dx);
            z = model(t, view, m);
            if (!z) { failed = 1; break; }
            if (v == 0) {   /* the first view sets the class count and clears the sums */
                C = z->size / n;
                if ((size_t)n * C > acc_cap) {
                    double *grown = (double *)DLF_REALLOC(acc, (size_t)n * C * sizeof *acc);
                    if (!grown) { dlf__fail(DLF_ERR_NOMEM, "dlf_evaluate_tta: out of memory"); failed = 1; break; }
                    acc = grown;
                    acc_cap = (size_t)n * C;
                }
                memset(acc, 0, (size_t)n * C * sizeof *acc);
            }
            for (i = 0; i < n; i++) {   /* acc += softmax(z_i) / n_views, in double with the max subtracted */
                const float *z_i = z->data + (size_t)i * C;
                double mx = z_i[0], s = 0.0;
                for (j = 1; j < C; j++) if (z_i[j] > mx) mx = z_i[j];
                for (j = 0; j < C; j++) s += exp((double)z_i[j] - mx);
                for (j = 0; j < C; j++) acc[(size_t)i * C + j] += exp((double)z_i[j] - mx) / s / n_views;
            }
        }
        for (i = 0; i < n && !failed; i++) {
            float y = l->y->data[i];
            int best = 0;
            const double *p_i = acc + (size_t)i * C;
            if (!(y >= 0.0f && y < (float)C)) {   /* NaN too: checked before the conversion */
                dlf__panic("dlf_evaluate_tta: label %g of batch item %d is outside the model's %d classes", (double)y, i, C);
                failed = 1;
                break;
            }
            for (j = 1; j < C; j++) if (p_i[j] > p_i[best]) best = j;
            loss -= log(p_i[(int)y] > 1e-300 ? p_i[(int)y] : 1e-300);   /* a probability that underflowed */
            correct += best == (int)y;
        }
        seen += n;
    }
    DLF_FREE(acc);
    dlf_tape_reset(t);
    dlf_tape_set_grad(t, prev);
    dlf_tape_set_training(t, prev_training);
    if (failed) return NAN;
    if (mean_loss) *mean_loss = seen ? (float)(loss / (double)seen) : 0.0f;
    return seen ? (float)correct / (float)seen : 0.0f;
}

/* Row z (C) of the model's output into dst: as it is, its softmax (in double with the
   max subtracted) or sigmoid, or its argmax. */
static void dlf__pred_row(const float *z, int C, dlf_pred_kind kind, float *dst)
{
    int j, best = 0;
    double mx, s = 0.0;
    if (kind == DLF_PRED_LOGITS) { memcpy(dst, z, (size_t)C * sizeof(float)); return; }
    if (C == 1) {   /* one binary logit */
        if (kind == DLF_PRED_CLASS) dst[0] = z[0] > 0.0f ? 1.0f : 0.0f;
        else dst[0] = (float)(1.0 / (1.0 + exp(-(double)z[0])));
        return;
    }
    for (j = 1; j < C; j++)
        if (z[j] > z[best]) best = j;
    if (kind == DLF_PRED_CLASS) { dst[0] = (float)best; return; }
    mx = z[best];
    for (j = 0; j < C; j++) s += exp((double)z[j] - mx);
    for (j = 0; j < C; j++) dst[j] = (float)(exp((double)z[j] - mx) / s);
}

/* The model on x with no recording in eval mode; *z its output (N, C), valid until
   the next tape reset. */
static int dlf__pred_forward(dlf_tape *t, dlf_model_fn model, void *m, dlf_tensor *x, dlf_tensor **z,
                             const char *fn)
{
    char sx[64];
    dlf_tape_reset(t);
    *z = model(t, x, m);
    if (!*z) return dlf__fail(DLF_ERR_ARG, "%s: the model returned NULL", fn);
    if ((*z)->ndim < 1 || (*z)->shape[0] != x->shape[0] || (*z)->size % (x->shape[0] ? x->shape[0] : 1) != 0) {
        dlf__panic("%s: the model's output %s does not have one row per input item (%d)", fn,
                   dlf_shape_str(*z, sx, sizeof sx), x->shape[0]);
        return DLF_ERR_ARG;
    }
    return DLF_OK;
}

DLFDEF int dlf_predict(dlf_tape *t, dlf_model_fn model, void *m, dlf_tensor *x, dlf_pred_kind kind, dlf_tensor *out)
{
    int prev, prev_training, rc, N, C, i;
    dlf_tensor *z = NULL;
    char so[64], sz[64];
    if (!t) { dlf__panic("dlf_predict: t is NULL"); return DLF_ERR_ARG; }
    if (!model) { dlf__panic("dlf_predict: model is NULL"); return DLF_ERR_ARG; }
    if (!x) { dlf__panic("dlf_predict: x is NULL"); return DLF_ERR_ARG; }
    if (!out) { dlf__panic("dlf_predict: out is NULL"); return DLF_ERR_ARG; }
    if (kind != DLF_PRED_LOGITS && kind != DLF_PRED_PROBS && kind != DLF_PRED_CLASS) {
        dlf__panic("dlf_predict: kind %d is not a dlf_pred_kind", (int)kind);
        return DLF_ERR_ARG;
    }
    prev = dlf_tape_set_grad(t, 0);
    prev_training = dlf_tape_set_training(t, 0);
    rc = dlf__pred_forward(t, model, m, x, &z, "dlf_predict");
    if (rc == DLF_OK) {
        N = x->shape[0];
        C = N ? z->size / N : 0;
        if (kind == DLF_PRED_CLASS ? out->size != N : (out->size != z->size || out->ndim != z->ndim ||
                                                        out->shape[0] != N)) {
            dlf__panic("dlf_predict: out %s does not fit the %s of the model's output %s",
                       dlf_shape_str(out, so, sizeof so), kind == DLF_PRED_CLASS ? "classes" : "rows",
                       dlf_shape_str(z, sz, sizeof sz));
            rc = DLF_ERR_ARG;
        } else {
            for (i = 0; i < N; i++)
                dlf__pred_row(z->data + (size_t)i * C, C, kind, out->data + (size_t)i * (kind == DLF_PRED_CLASS ? 1 : C));
            dlf__written(out);
        }
    }
    dlf_tape_reset(t);
    dlf_tape_set_grad(t, prev);
    dlf_tape_set_training(t, prev_training);
    return rc;
}

DLFDEF int dlf_predict_loader(dlf_tape *t, dlf_model_fn model, void *m, dlf_loader *l, dlf_pred_kind kind,
                              float *out, size_t cap, int *n_items)
{
    int prev, prev_training, rc = DLF_OK, n, i, C;
    size_t used = 0;
    long done = 0;
    if (n_items) *n_items = 0;
    if (!t) { dlf__panic("dlf_predict_loader: t is NULL"); return DLF_ERR_ARG; }
    if (!model) { dlf__panic("dlf_predict_loader: model is NULL"); return DLF_ERR_ARG; }
    if (!l) { dlf__panic("dlf_predict_loader: l is NULL"); return DLF_ERR_ARG; }
    if (!out) { dlf__panic("dlf_predict_loader: out is NULL"); return DLF_ERR_ARG; }
    if (kind != DLF_PRED_LOGITS && kind != DLF_PRED_PROBS && kind != DLF_PRED_CLASS) {
        dlf__panic("dlf_predict_loader: kind %d is not a dlf_pred_kind", (int)kind);
        return DLF_ERR_ARG;
    }
    prev = dlf_tape_set_grad(t, 0);
    prev_training = dlf_tape_set_training(t, 0);
    l->pos = 0;
    while ((n = dlf_loader_next(l)) > 0) {
        dlf_tensor *z;
        size_t per;
        rc = dlf__pred_forward(t, model, m, l->x, &z, "dlf_predict_loader");
        if (rc != DLF_OK) { l->pos = 0; break; }
        C = z->size / n;
        per = kind == DLF_PRED_CLASS ? 1 : (size_t)C;
        if (used + (size_t)n * per > cap) {
            dlf__panic("dlf_predict_loader: out holds %zu floats, the predictions need more than %zu (%ld items "
                       "done, %d more of %zu each)", cap, used + (size_t)n * per, done, n, per);
            rc = DLF_ERR_ARG;
            l->pos = 0;
            break;
        }
        for (i = 0; i < n; i++) dlf__pred_row(z->data + (size_t)i * C, C, kind, out + used + (size_t)i * per);
        used += (size_t)n * per;
        done += n;
    }
    dlf_tape_reset(t);
    dlf_tape_set_grad(t, prev);
    dlf_tape_set_training(t, prev_training);
    if (n_items) *n_items = (int)done;
    return rc;
}

/* ---------------------------------------------------------------- the Learner */

#define DLF__ABORT 100   /* internal: an error (l->rc) ends the fit; after_fit still runs */

DLFDEF const char *dlf_event_name(dlf_event ev)
{
    static const char *const names[DLF_EV_COUNT] = {
        "begin_fit", "begin_epoch", "begin_batch", "after_pred", "after_loss", "after_backward", "after_step",
        "after_batch", "begin_validate", "after_epoch", "after_fit", "after_cancel_batch", "after_cancel_epoch",
        "after_cancel_fit"};
    return ((int)ev >= 0 && ev < DLF_EV_COUNT) ? names[ev] : "?";
}

DLFDEF float dlf_metric_accuracy(const dlf_tensor *pred, const dlf_tensor *target)
{
    DLF__NOT_NULL(pred, NAN); DLF__NOT_NULL(target, NAN);
    return dlf_accuracy(pred, target);
}

/* fastai's TrainEvalCallback: training mode for the epoch, eval mode for validation
   (BatchNorm's batch statistics and dropout only while training). */
static int dlf__cb_train_eval(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    (void)cb;
    if (ev == DLF_EV_BEGIN_EPOCH) dlf_tape_set_training(l->tape, 1);
    else if (ev == DLF_EV_BEGIN_VALIDATE) dlf_tape_set_training(l->tape, 0);
    return DLF_CB_OK;
}

DLFDEF void dlf_learner_init(dlf_learner *l, dlf_tape *t, dlf_model_fn model, void *m, dlf_loss_fn loss,
                             dlf_optim *opt, dlf_loader *train, dlf_loader *valid)
{
    DLF__NOT_NULL(l, );
    memset(l, 0, sizeof *l);   /* first: a learner refused here is refused again by dlf_learner_fit */
    DLF__NOT_NULL(t, ); DLF__NOT_NULL(model, ); DLF__NOT_NULL(opt, ); DLF__NOT_NULL(train, );   /* loss NULL: by the labels */
    l->tape = t;
    l->model = model;
    l->m = m;
    l->loss_fn = loss;
    l->opt = opt;
    l->train = train;
    l->valid = valid;
    l->check_finite = 1;
    l->train_eval.name = "train_eval";
    l->train_eval.order = -10;
    l->train_eval.on = dlf__cb_train_eval;
    dlf_learner_add_cb(l, &l->train_eval);
}

DLFDEF void dlf_learner_free(dlf_learner *l)
{
    DLF__NOT_NULL(l, );
    memset(l, 0, sizeof *l);  /* holds nothing allocated today; kept for the API's symmetry */
}

/* Sorted by order; a new callback goes after those of equal order (stable). */
DLFDEF int dlf_learner_add_cb(dlf_learner *l, dlf_callback *cb)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(cb, DLF_ERR_ARG);
    int i;
    if (l->n_cbs == DLF_LEARNER_MAX_CBS)
        return dlf__fail(DLF_ERR_ARG, "learner: more than %d callbacks", DLF_LEARNER_MAX_CBS);
    for (i = l->n_cbs; i > 0 && l->cbs[i - 1]->order > cb->order; i--) l->cbs[i] = l->cbs[i - 1];
    l->cbs[i] = cb;
    l->n_cbs++;
    return DLF_OK;
}

DLFDEF void dlf_learner_remove_cb(dlf_learner *l, dlf_callback *cb)
{
    DLF__NOT_NULL(l, ); DLF__NOT_NULL(cb, );
    int i, j = 0;
    for (i = 0; i < l->n_cbs; i++)
        if (l->cbs[i] != cb) l->cbs[j++] = l->cbs[i];
    l->n_cbs = j;
}

DLFDEF int dlf_learner_add_metric(dlf_learner *l, const char *name, dlf_metric_fn fn)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(name, DLF_ERR_ARG); DLF__NOT_NULL(fn, DLF_ERR_ARG);
    if (l->n_metrics == DLF_LEARNER_MAX_METRICS)
        return dlf__fail(DLF_ERR_ARG, "learner: more than %d metrics", DLF_LEARNER_MAX_METRICS);
    l->metrics[l->n_metrics].name = name;
    l->metrics[l->n_metrics].fn = fn;
    l->n_metrics++;
    return DLF_OK;
}

/* Every callback in order; the first non-zero code stops the event (as an exception). */
static int dlf__event(dlf_learner *l, dlf_event ev)
{
    int i, rc;
    if (l->no_cbs) return DLF_CB_OK;
    for (i = 0; i < l->n_cbs; i++) {
        dlf_callback *cb = l->cbs[i];
        if (cb->on && (rc = cb->on(cb, l, ev)) != DLF_CB_OK) return rc;
    }
    return DLF_CB_OK;
}

static int dlf__learner_abort(dlf_learner *l, int rc)
{
    l->rc = rc;
    return DLF__ABORT;
}

/* check_finite beyond the loss: a NaN or infinity in a gradient (after the after_backward
   callbacks, e.g. clipping, so as the step would use it) stops the fit before the step, with
   the weights as they were; one in a parameter after the step (an overflow in the update)
   stops it after. The message names the step and the first parameter affected (by its
   name where the optimizer or l->params has one, else its index). One pass over the
   parameters and gradients per step: small beside the forward and backward. */
static const char *dlf__learner_param_name(const dlf_learner *l, int i, char *buf, size_t n)
{
    const dlf_optim *o = l->opt;
    int j;
    if (o->params[i].name[0]) return o->params[i].name;
    for (j = 0; l->params && j < l->params->n; j++)
        if (l->params->items[j].t == o->params[i].p) return l->params->items[j].name;
    snprintf(buf, n, "parameter %d", i);
    return buf;
}

static int dlf__learner_nonfinite(const dlf_learner *l, int grads, int *which, int *at)
{
    const dlf_optim *o = l->opt;
    int i, k;
    for (i = 0; i < o->n_params; i++) {
        const dlf_tensor *p = o->params[i].p;
        const float *v = grads ? p->grad : p->data;
        if (!v) continue;
        for (k = 0; k < p->size; k++)
            if (!(fabsf(v[k]) <= 3.4028235e38f)) {   /* FLT_MAX: not NaN, not infinite */
                *which = i;
                *at = k;
                return 1;
            }
    }
    return 0;
}

/* One batch, notebook 05b's one_batch: DLF_CB_OK, _CANCEL_EPOCH, _CANCEL_FIT or DLF__ABORT. */
static int dlf__one_batch(dlf_learner *l)
{
    int rc, r2, k, backward_ran = 0;
    double t_batch = dlf_seconds();
    dlf_tape_reset(l->tape);
    l->pred = l->loss = NULL;
    if ((rc = dlf__event(l, DLF_EV_BEGIN_BATCH)) != DLF_CB_OK) goto done;
    l->pred = l->model(l->tape, l->xb, l->m);
    if (!l->pred) {   /* the tape's error (out of memory ...) keeps its own message */
        rc = dlf__learner_abort(l, l->tape->error ? l->tape->error :
                                dlf__fail(DLF_ERR_ARG, "learner: the model returned NULL at step %ld", l->step));
        goto done;
    }
    if ((rc = dlf__event(l, DLF_EV_AFTER_PRED)) != DLF_CB_OK) goto done;
    l->loss = l->loss_fn ? l->loss_fn(l->tape, l->pred, l->yb)
                         : (l->yb->ndim >= 2 ? dlf_mse_loss : dlf_cross_entropy)(l->tape, l->pred, l->yb);
    if (!l->loss) {
        rc = dlf__learner_abort(l, l->tape->error ? l->tape->error :
                                dlf__fail(DLF_ERR_ARG, "learner: the loss function returned NULL at step %ld", l->step));
        goto done;
    }
    l->loss_value = l->loss->data[0];
    if (l->in_train) {
        if (l->check_finite && !(fabsf(l->loss_value) <= 3.0e38f)) {
            rc = dlf__learner_abort(l, dlf__fail(DLF_ERR_ARG, "learner: the loss is %g at step %ld (epoch %d): lr %g too high?",
                                                 l->loss_value, l->step, l->epoch + 1, l->opt->groups[0].lr));
            goto done;
        }
        l->tl_sum += (double)l->loss_value * l->bs;
        l->tl_items += l->bs;
        l->tl_batch_sum += l->loss_value;
        l->tl_batches++;
    } else {
        l->vl_sum += (double)l->loss_value * l->bs;
        l->v_items += l->bs;
        for (k = 0; k < l->n_metrics; k++) l->vm_sum[k] += (double)l->metrics[k].fn(l->pred, l->yb) * l->bs;
    }
    if ((rc = dlf__event(l, DLF_EV_AFTER_LOSS)) != DLF_CB_OK || !l->in_train) goto done;
    backward_ran = 1;
    if ((r2 = dlf_backward(l->tape, l->loss)) != DLF_OK) {   /* no step: the weights stay as they were */
        dlf_optim_zero_grad(l->opt);   /* a walk stopped halfway leaves part of the gradients */
        rc = dlf__learner_abort(l, r2);
        goto done;
    }
    if ((rc = dlf__event(l, DLF_EV_AFTER_BACKWARD)) != DLF_CB_OK) goto done;
    if (l->check_finite && dlf__learner_nonfinite(l, 1, &k, &r2)) {
        char buf[32];
        rc = dlf__learner_abort(l, dlf__fail(DLF_ERR_ARG, "learner: the gradient of %s is %s at index %d at step %ld "
                                             "(epoch %d), loss %g; stopped before the step, the weights are unchanged",
                                             dlf__learner_param_name(l, k, buf, sizeof buf),
                                             dlf__nonfinite_str(l->opt->params[k].p->grad[r2]), r2, l->step, l->epoch + 1,
                                             l->loss_value));
        goto done;
    }
    if ((r2 = dlf_optim_step(l->opt)) != DLF_OK) {
        rc = dlf__learner_abort(l, r2);
        goto done;
    }
    if (l->check_finite && dlf__learner_nonfinite(l, 0, &k, &r2)) {
        char buf[32];
        rc = dlf__learner_abort(l, dlf__fail(DLF_ERR_ARG, "learner: %s became %s at index %d in the step at step %ld "
                                             "(epoch %d): lr %g too high?", dlf__learner_param_name(l, k, buf, sizeof buf),
                                             dlf__nonfinite_str(l->opt->params[k].p->data[r2]), r2, l->step, l->epoch + 1,
                                             l->opt->groups[0].lr));
        goto done;
    }
    rc = dlf__event(l, DLF_EV_AFTER_STEP);
done:
    if (rc == DLF__ABORT) return rc;
    if (backward_ran) dlf_optim_zero_grad(l->opt);  /* also after a cancel (05b did not) */
    if (rc == DLF_CB_CANCEL_BATCH) {
        rc = dlf__event(l, DLF_EV_AFTER_CANCEL_BATCH);
        if (rc == DLF_CB_CANCEL_BATCH) rc = DLF_CB_OK;
    }
    l->iter++;
    if (l->in_train) {
        l->step++;
        l->train_iter = l->iter;
        if (!l->fixed_threads) dlf_threadgov_step(&l->gov, dlf_seconds() - t_batch);
    }
    r2 = dlf__event(l, DLF_EV_AFTER_BATCH);  /* always: 05b's `finally` */
    if (r2 == DLF_CB_CANCEL_EPOCH || r2 == DLF_CB_CANCEL_FIT) rc = r2;
    return rc;
}

/* Every batch of dl from where it stands (05b's all_batches). */
static int dlf__all_batches(dlf_learner *l, dlf_loader *dl)
{
    int n, rc = DLF_CB_OK;
    while ((n = dlf_loader_next(dl)) > 0) {
        l->xb = dl->x;
        l->yb = dl->y;
        l->bs = n;
        rc = dlf__one_batch(l);
        if (rc == DLF_CB_CANCEL_EPOCH) {
            dl->pos = 0;  /* the next call starts a fresh epoch */
            rc = dlf__event(l, DLF_EV_AFTER_CANCEL_EPOCH);
            if (rc != DLF_CB_CANCEL_FIT) rc = DLF_CB_OK;
            break;
        }
        if (rc != DLF_CB_OK) break;  /* CANCEL_FIT or an error */
    }
    return rc;
}

/* Validation over dl from its start: no recording, weighted loss and metrics. */
static int dlf__run_validation(dlf_learner *l, dlf_loader *dl)
{
    int prev_grad = dlf_tape_set_grad(l->tape, 0), rc, k;
    l->in_train = 0;
    l->iter = 0;
    l->n_iter = dl->n_batches;
    l->vl_sum = 0.0;
    l->v_items = 0;
    for (k = 0; k < DLF_LEARNER_MAX_METRICS; k++) l->vm_sum[k] = 0.0;
    dl->pos = 0;
    rc = dlf__all_batches(l, dl);
    dlf_tape_reset(l->tape);
    dlf_tape_set_grad(l->tape, prev_grad);
    l->valid_loss = l->v_items ? (float)(l->vl_sum / (double)l->v_items) : 0.0f;
    for (k = 0; k < l->n_metrics; k++)
        l->metric_values[k] = l->v_items ? (float)(l->vm_sum[k] / (double)l->v_items) : 0.0f;
    return rc;
}

DLFDEF int dlf_learner_validate(dlf_learner *l, dlf_loader *dl, float *loss, float *metrics)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(dl, DLF_ERR_ARG);
    int prev_training = dlf_tape_set_training(l->tape, 0), in_train = l->in_train, iter = l->iter;
    int n_iter = l->n_iter, rc, k;
    l->no_cbs = 1;
    l->rc = DLF_OK;
    rc = dlf__run_validation(l, dl);
    l->no_cbs = 0;
    dlf_tape_set_training(l->tape, prev_training);
    l->in_train = in_train;
    l->iter = iter;
    l->n_iter = n_iter;
    if (rc == DLF__ABORT) return l->rc;
    if (loss) *loss = l->valid_loss;
    for (k = 0; metrics && k < l->n_metrics; k++) metrics[k] = l->metric_values[k];
    return DLF_OK;
}

DLFDEF int dlf_learner_fit(dlf_learner *l, int epochs)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(l->tape, DLF_ERR_ARG); DLF__NOT_NULL(l->model, DLF_ERR_ARG);
    DLF__NOT_NULL(l->opt, DLF_ERR_ARG); DLF__NOT_NULL(l->train, DLF_ERR_ARG);   /* loss_fn NULL: by the labels */
    int rc, prev_grad, mid;
    double t0;
    if (l->resume) {
        if (epochs > 0 && epochs != l->epochs)
            return dlf__fail(DLF_ERR_ARG, "learner: the saved run has %d epochs, the fit asks for %d", l->epochs, epochs);
    } else {
        l->epochs = epochs > 0 ? epochs : 1;
        l->epoch = 0;
        l->step = 0;
        l->iter = 0;
        l->train_seconds = 0.0;
        l->train->pos = 0;
    }
    l->total_steps = (long)l->epochs * l->train->n_batches;
    l->rc = DLF_OK;
    l->cancelled = 0;
    l->validated = 0;
    l->prev_training = dlf_tape_set_training(l->tape, 1);
    prev_grad = dlf_tape_set_grad(l->tape, 1);
    l->where = 0;
    dlf_threadgov_init(&l->gov);
    rc = dlf__event(l, DLF_EV_BEGIN_FIT);
    mid = l->resume && l->train_iter > 0;
    l->resume = 0;
    if (rc == DLF_CB_CANCEL_FIT) goto end;
    for (; l->epoch < l->epochs; l->epoch++) {
        l->epoch_over = 0;
        if (!mid) {
            l->train_iter = 0;
            l->iter = 0;
            l->tl_sum = l->tl_batch_sum = 0.0;
            l->tl_items = 0;
            l->tl_batches = 0;
        }
        mid = 0;
        l->n_iter = l->train->n_batches;
        l->in_train = 1;
        l->validated = 0;
        l->where = 1;
        rc = dlf__event(l, DLF_EV_BEGIN_EPOCH);
        if (rc == DLF_CB_CANCEL_FIT) break;
        t0 = dlf_seconds();
        if (rc == DLF_CB_CANCEL_EPOCH) {
            l->train->pos = 0;
            rc = dlf__event(l, DLF_EV_AFTER_CANCEL_EPOCH);
            if (rc != DLF_CB_CANCEL_FIT) rc = DLF_CB_OK;
        } else {
            rc = dlf__all_batches(l, l->train);
        }
        l->train_seconds += dlf_seconds() - t0;
        if (rc == DLF_CB_CANCEL_FIT || rc == DLF__ABORT) break;
        l->train_loss = l->tl_items ? (float)(l->tl_sum / (double)l->tl_items) : 0.0f;
        if (l->valid) {
            l->where = 2;
            l->in_train = 0;
            rc = dlf__event(l, DLF_EV_BEGIN_VALIDATE);
            if (rc == DLF_CB_CANCEL_FIT) break;
            if (rc == DLF_CB_CANCEL_EPOCH) {
                rc = dlf__event(l, DLF_EV_AFTER_CANCEL_EPOCH);
                if (rc != DLF_CB_CANCEL_FIT) rc = DLF_CB_OK;
            } else {
                rc = dlf__run_validation(l, l->valid);
                if (rc == DLF_CB_OK) l->validated = 1;
            }
            if (rc == DLF_CB_CANCEL_FIT || rc == DLF__ABORT) break;
        }
        l->where = 3;
        l->epoch_over = 1;
        rc = dlf__event(l, DLF_EV_AFTER_EPOCH);
        if (rc == DLF_CB_CANCEL_FIT) break;
        l->epoch_over = 0;   /* the next epoch starts from its first batch */
        l->train_iter = 0;
        rc = DLF_CB_OK;
    }
end:
    if (rc == DLF_CB_CANCEL_FIT) {
        l->cancelled = 1;
        dlf__event(l, DLF_EV_AFTER_CANCEL_FIT);
    }
    l->where = 4;
    dlf__event(l, DLF_EV_AFTER_FIT);
    l->where = 0;
    if (!l->fixed_threads && l->gov.hi > 0) dlf_set_threads(l->gov.hi);   /* the count before the fit */
    l->gov.state = 0;
    dlf_tape_reset(l->tape);
    dlf_tape_set_training(l->tape, l->prev_training);
    dlf_tape_set_grad(l->tape, prev_grad);
    return l->rc;
}

/* ---------------------------------------------------------------- saving a run */

static dlf_tensor *dlf__ckpt_own(dlf_ckpt *c, int ndim, const int *shape);  /* stage 15 */

/* The checkpoint name of each optimizer parameter: its own, else l->params'. A
   DLF_MALLOC array, or NULL with *rc set. */
static const char **dlf__learner_names(const dlf_learner *l, int *rc)
{
    const dlf_optim *o = l->opt;
    const char **names = (const char **)dlf__malloc((size_t)(o->n_params ? o->n_params : 1) * sizeof(char *),
                                                    "optimizer parameter names");
    int i, j;
    *rc = DLF_ERR_NOMEM;
    if (!names) return NULL;
    for (i = 0; i < o->n_params; i++) {
        names[i] = o->params[i].name[0] ? o->params[i].name : NULL;
        for (j = 0; !names[i] && l->params && j < l->params->n; j++)
            if (l->params->items[j].t == o->params[i].p) names[i] = l->params->items[j].name;
        if (!names[i]) {
            DLF_FREE((void *)names);
            *rc = dlf__fail(DLF_ERR_ARG, "learner: optimizer parameter %d has no name (set l->params, or create the "
                            "optimizer with dlf_optim_create_groups)", i);
            return NULL;
        }
    }
    return names;
}

static int dlf__ck_setf(dlf_ckpt *c, const char *prefix, const char *key, double v)
{
    char k[192];
    snprintf(k, sizeof k, "%s%s", prefix, key);
    return dlf_ckpt_set_float(c, k, v);
}

static int dlf__ck_seti(dlf_ckpt *c, const char *prefix, const char *key, long long v)
{
    char k[192];
    snprintf(k, sizeof k, "%s%s", prefix, key);
    return dlf_ckpt_set_int(c, k, v);
}

static int dlf__ck_getf(const dlf_ckpt *c, const char *prefix, const char *key, double *v)
{
    char k[192];
    snprintf(k, sizeof k, "%s%s", prefix, key);
    return dlf_ckpt_get_float(c, k, v);
}

static int dlf__ck_geti(const dlf_ckpt *c, const char *prefix, const char *key, long long *v)
{
    char k[192];
    snprintf(k, sizeof k, "%s%s", prefix, key);
    return dlf_ckpt_get_int(c, k, v);
}

DLFDEF int dlf_learner_add_state(dlf_learner *l, dlf_ckpt *c)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(c, DLF_ERR_ARG);
    const char **names;
    char prefix[96];
    int rc = DLF_OK, g, h, i, at_end = l->epoch_over;
    if (l->where == 2 || l->where == 4)
        return dlf__fail(DLF_ERR_ARG, "learner: a run saves at after_batch of a training batch, at after_epoch or between fits");
    if (!(names = dlf__learner_names(l, &rc))) return rc;
    if (l->params) rc = dlf_ckpt_add_param_list(c, l->params);
    else
        for (i = 0; rc == DLF_OK && i < l->opt->n_params; i++) rc = dlf_ckpt_add_tensor(c, names[i], l->opt->params[i].p);
    if (rc == DLF_OK) rc = dlf_ckpt_add_optim(c, l->opt, names);
    DLF_FREE((void *)names);
    for (g = 0; rc == DLF_OK && g < l->opt->n_groups; g++)
        for (h = 0; rc == DLF_OK && h < DLF_HYPER_COUNT; h++) {
            snprintf(prefix, sizeof prefix, "learner.group%d.", g);
            rc = dlf__ck_setf(c, prefix, dlf_hyper_name((dlf_hyper)h), dlf_optim_get_hyper(l->opt, g, (dlf_hyper)h));
        }
    if (rc == DLF_OK) rc = dlf_ckpt_add_loader(c, "train", l->train);
    if (rc == DLF_OK) rc = dlf_ckpt_add_loader_norm(c, "input", l->train);  /* for inference elsewhere */
    if (rc == DLF_OK) rc = dlf_ckpt_add_rng(c, "tape", &l->tape->rng);
    /* at after_epoch the epoch is over: the run continues with the next one */
    if (rc == DLF_OK) rc = dlf__ck_seti(c, "learner.", "epochs", l->epochs);
    if (rc == DLF_OK) rc = dlf__ck_seti(c, "learner.", "epoch", at_end ? l->epoch + 1 : l->epoch);
    if (rc == DLF_OK) rc = dlf__ck_seti(c, "learner.", "iter", at_end ? 0 : l->train_iter);
    if (rc == DLF_OK) rc = dlf__ck_seti(c, "learner.", "step", l->step);
    if (rc == DLF_OK) rc = dlf__ck_setf(c, "learner.", "tl_sum", at_end ? 0.0 : l->tl_sum);
    if (rc == DLF_OK) rc = dlf__ck_seti(c, "learner.", "tl_items", at_end ? 0 : l->tl_items);
    if (rc == DLF_OK) rc = dlf__ck_setf(c, "learner.", "tl_batch_sum", at_end ? 0.0 : l->tl_batch_sum);
    if (rc == DLF_OK) rc = dlf__ck_seti(c, "learner.", "tl_batches", at_end ? 0 : l->tl_batches);
    if (rc == DLF_OK) rc = dlf__ck_setf(c, "learner.", "train_seconds", l->train_seconds);
    for (i = 0; rc == DLF_OK && i < l->n_cbs; i++) {
        dlf_callback *cb = l->cbs[i];
        if (!cb->save) continue;
        snprintf(prefix, sizeof prefix, "cb.%s.", cb->name ? cb->name : "?");
        rc = cb->save(cb, l, c, prefix);
    }
    return rc;
}

DLFDEF int dlf_learner_get_state(dlf_learner *l, const dlf_ckpt *c)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(c, DLF_ERR_ARG);
    const char **names;
    char prefix[96];
    long long v[6] = {0, 0, 0, 0, 0, 0};
    double f[3] = {0.0, 0.0, 0.0}, hv = 0.0;
    int rc = DLF_OK, g, h, i;
    if (!(names = dlf__learner_names(l, &rc))) return rc;
    if (l->params) rc = dlf_ckpt_get_param_list(c, l->params);
    else
        for (i = 0; rc == DLF_OK && i < l->opt->n_params; i++) rc = dlf_ckpt_get_tensor(c, names[i], l->opt->params[i].p);
    if (rc == DLF_OK) rc = dlf_ckpt_get_optim(c, l->opt, names);
    DLF_FREE((void *)names);
    for (g = 0; rc == DLF_OK && g < l->opt->n_groups; g++)
        for (h = 0; rc == DLF_OK && h < DLF_HYPER_COUNT; h++) {
            snprintf(prefix, sizeof prefix, "learner.group%d.", g);
            if ((rc = dlf__ck_getf(c, prefix, dlf_hyper_name((dlf_hyper)h), &hv)) == DLF_OK)
                dlf_optim_set_hyper(l->opt, g, (dlf_hyper)h, (float)hv);
        }
    if (rc == DLF_OK) rc = dlf_ckpt_get_loader(c, "train", l->train);
    if (rc == DLF_OK) rc = dlf_ckpt_get_rng(c, "tape", &l->tape->rng);
    if (rc == DLF_OK) rc = dlf__ck_geti(c, "learner.", "epochs", &v[0]);
    if (rc == DLF_OK) rc = dlf__ck_geti(c, "learner.", "epoch", &v[1]);
    if (rc == DLF_OK) rc = dlf__ck_geti(c, "learner.", "iter", &v[2]);
    if (rc == DLF_OK) rc = dlf__ck_geti(c, "learner.", "step", &v[3]);
    if (rc == DLF_OK) rc = dlf__ck_geti(c, "learner.", "tl_items", &v[4]);
    if (rc == DLF_OK) rc = dlf__ck_getf(c, "learner.", "tl_sum", &f[0]);
    if (rc == DLF_OK) rc = dlf__ck_getf(c, "learner.", "tl_batch_sum", &f[1]);
    if (rc == DLF_OK) rc = dlf__ck_getf(c, "learner.", "train_seconds", &f[2]);
    if (rc == DLF_OK) rc = dlf__ck_geti(c, "learner.", "tl_batches", &v[5]);
    if (rc != DLF_OK) return rc;
    if (v[0] < 1 || v[1] < 0 || v[1] > v[0] || v[2] < 0 || v[2] > l->train->n_batches || v[3] < 0)
        return dlf__fail(DLF_ERR_FORMAT, "checkpoint: learner counters out of range (epochs %lld epoch %lld iter %lld step %lld)",
                         v[0], v[1], v[2], v[3]);
    l->epochs = (int)v[0];
    l->epoch = (int)v[1];
    l->iter = l->train_iter = (int)v[2];
    l->epoch_over = 0;
    l->step = (long)v[3];
    l->tl_items = (long)v[4];
    l->tl_batches = (int)v[5];
    l->tl_sum = f[0];
    l->tl_batch_sum = f[1];
    l->train_seconds = f[2];
    l->total_steps = (long)l->epochs * l->train->n_batches;
    l->resume = 1;
    for (i = 0; rc == DLF_OK && i < l->n_cbs; i++) {
        dlf_callback *cb = l->cbs[i];
        if (!cb->load) continue;
        snprintf(prefix, sizeof prefix, "cb.%s.", cb->name ? cb->name : "?");
        rc = cb->load(cb, l, c, prefix);
    }
    return rc;
}

#ifndef DLF_NO_STDIO
static int dlf__learner_save_meta(dlf_learner *l, const char *path, const char *const *meta, int n_meta)
{
    dlf_ckpt c;
    int i, rc;
    dlf_ckpt_init(&c);
    rc = dlf_learner_add_state(l, &c);
    for (i = 0; rc == DLF_OK && i < n_meta; i++) rc = dlf_ckpt_set_meta(&c, meta[2 * i], meta[2 * i + 1]);
    if (rc == DLF_OK) rc = dlf_ckpt_save(&c, path);
    dlf_ckpt_free(&c);
    return rc;
}

DLFDEF int dlf_learner_save(dlf_learner *l, const char *path)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    return dlf__learner_save_meta(l, path, NULL, 0);
}

DLFDEF int dlf_learner_load(dlf_learner *l, const char *path)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    dlf_ckpt c;
    int rc;
    dlf_ckpt_init(&c);
    rc = dlf_ckpt_load(&c, path);
    if (rc == DLF_OK) rc = dlf_learner_get_state(l, &c);
    if (rc != DLF_OK && strncmp(dlf_last_error(), path, strlen(path)) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dlf_last_error());
        dlf__fail(rc, "%s: %s", path, msg);
    }
    dlf_ckpt_free(&c);
    return rc;
}
#endif

/* ---------------------------------------------------------------- built-in callbacks */

/* The value a tracker watches, 0 when it has none this epoch (no validation). */
static int dlf__monitor_value(const dlf_learner *l, const char *name, float *v)
{
    int k;
    if (strcmp(name, "train_loss") == 0) { *v = l->train_loss; return 1; }
    if (!l->validated) return 0;
    if (strcmp(name, "valid_loss") == 0) { *v = l->valid_loss; return 1; }
    for (k = 0; k < l->n_metrics; k++)
        if (strcmp(name, l->metrics[k].name) == 0) { *v = l->metric_values[k]; return 1; }
    dlf__panic("learner: nothing to monitor named \"%s\" (valid_loss, train_loss or a metric's name)", name);
    return 0;
}

static void dlf__tracker_reset(dlf_tracker *t)
{
    t->best = t->higher_better ? -HUGE_VALF : HUGE_VALF;
    t->best_epoch = -1;
    t->wait = 0;
}

static void dlf__tracker_init(dlf_tracker *t, const char *monitor, float min_delta)
{
    t->monitor = monitor ? monitor : "valid_loss";
    t->min_delta = min_delta < 0.0f ? -min_delta : min_delta;
    t->higher_better = strstr(t->monitor, "loss") == NULL;
    dlf__tracker_reset(t);
}

/* fastai's TrackerCallback: new best when value beats best by more than min_delta.
   Returns 1 for a new best, 0 for none, -1 when there was no value this epoch. */
static int dlf__tracker_update(dlf_tracker *t, const dlf_learner *l)
{
    float v;
    int better;
    if (!dlf__monitor_value(l, t->monitor, &v)) return -1;
    better = t->higher_better ? v - t->min_delta > t->best : v + t->min_delta < t->best;
    if (better) {
        t->best = v;
        t->best_epoch = l->epoch;
        t->wait = 0;
    } else {
        t->wait++;
    }
    return better;
}

static int dlf__tracker_save(const dlf_tracker *t, dlf_ckpt *c, const char *prefix)
{
    int rc = dlf__ck_setf(c, prefix, "best", t->best);
    if (rc == DLF_OK) rc = dlf__ck_seti(c, prefix, "best_epoch", t->best_epoch);
    if (rc == DLF_OK) rc = dlf__ck_seti(c, prefix, "wait", t->wait);
    return rc;
}

static int dlf__tracker_load(dlf_tracker *t, const dlf_ckpt *c, const char *prefix)
{
    double best = 0.0;
    long long be = 0, w = 0;
    char k[192];
    int rc;
    snprintf(k, sizeof k, "%sbest", prefix);
    if (!dlf_ckpt_get_meta(c, k)) {  /* a run saved without this callback: it starts afresh */
        dlf__tracker_reset(t);
        return DLF_OK;
    }
    rc = dlf__ck_getf(c, prefix, "best", &best);
    if (rc == DLF_OK) rc = dlf__ck_geti(c, prefix, "best_epoch", &be);
    if (rc == DLF_OK) rc = dlf__ck_geti(c, prefix, "wait", &w);
    if (rc != DLF_OK) return rc;
    t->best = (float)best;
    t->best_epoch = (int)be;
    t->wait = (int)w;
    return DLF_OK;
}

/* Recorder */
static int dlf__grow_floats(float **p, int n)
{
    float *q = (float *)DLF_REALLOC(*p, (size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!q) return dlf__fail(DLF_ERR_NOMEM, "recorder: out of memory for %d values", n);
    *p = q;
    return DLF_OK;
}

/* Room for the whole fit, once, at begin_fit (or at a resume's load). */
static int dlf__recorder_alloc(dlf_cb_recorder *r, const dlf_learner *l)
{
    int cap = (int)l->total_steps, ce = l->epochs;
    if (cap > r->cap) {
        if (dlf__grow_floats(&r->lr, cap) || dlf__grow_floats(&r->mom, cap) || dlf__grow_floats(&r->loss, cap))
            return DLF_ERR_NOMEM;
        r->cap = cap;
    }
    if (ce > r->cap_epochs) {
        if (dlf__grow_floats(&r->epoch_train, ce) || dlf__grow_floats(&r->epoch_valid, ce) ||
            dlf__grow_floats(&r->epoch_metric, ce) || dlf__grow_floats(&r->epoch_step, ce))
            return DLF_ERR_NOMEM;
        r->cap_epochs = ce;
    }
    return DLF_OK;
}

static int dlf__cb_recorder_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf_cb_recorder *r = (dlf_cb_recorder *)cb;
    switch (ev) {
    case DLF_EV_BEGIN_FIT:
        if (!l->resume) r->n = r->n_epochs = 0;
        if (dlf__recorder_alloc(r, l) != DLF_OK) {
            l->rc = DLF_ERR_NOMEM;
            return DLF_CB_CANCEL_FIT;
        }
        break;
    case DLF_EV_AFTER_BATCH:
        if (!l->in_train || r->n >= r->cap) break;
        r->lr[r->n] = dlf_optim_get_hyper(l->opt, 0, DLF_HYPER_LR);
        r->mom[r->n] = dlf_optim_get_hyper(l->opt, 0, DLF_HYPER_MOM);
        r->loss[r->n] = l->loss ? l->loss_value : (float)NAN;
        r->n++;
        break;
    case DLF_EV_AFTER_EPOCH:
        if (r->n_epochs >= r->cap_epochs) break;
        r->epoch_train[r->n_epochs] = l->train_loss;
        r->epoch_valid[r->n_epochs] = l->validated ? l->valid_loss : (float)NAN;
        r->epoch_metric[r->n_epochs] = l->validated && l->n_metrics ? l->metric_values[0] : (float)NAN;
        r->epoch_step[r->n_epochs] = (float)l->step;
        r->n_epochs++;
        break;
    default:
        break;
    }
    return DLF_CB_OK;
}

static int dlf__recorder_save(const dlf_callback *cb, const dlf_learner *l, dlf_ckpt *c, const char *prefix)
{
    (void)l;
    const dlf_cb_recorder *r = (const dlf_cb_recorder *)cb;
    const float *src[7];
    static const char *const keys[7] = {"lr", "mom", "loss", "epoch_train", "epoch_valid", "epoch_metric", "epoch_step"};
    char k[192];
    int i, rc = dlf__ck_seti(c, prefix, "n", r->n);
    if (rc == DLF_OK) rc = dlf__ck_seti(c, prefix, "n_epochs", r->n_epochs);
    src[0] = r->lr; src[1] = r->mom; src[2] = r->loss;
    src[3] = r->epoch_train; src[4] = r->epoch_valid; src[5] = r->epoch_metric; src[6] = r->epoch_step;
    for (i = 0; rc == DLF_OK && i < 7; i++) {
        int n = i < 3 ? r->n : r->n_epochs;
        dlf_tensor *t;
        if (n == 0) continue;
        if (!(t = dlf__ckpt_own(c, 1, &n))) return DLF_ERR_NOMEM;
        memcpy(t->data, src[i], (size_t)n * sizeof(float));
        snprintf(k, sizeof k, "%s%s", prefix, keys[i]);
        rc = dlf_ckpt_add_tensor(c, k, t);
    }
    return rc;
}

static int dlf__recorder_load(dlf_callback *cb, dlf_learner *l, const dlf_ckpt *c, const char *prefix)
{
    dlf_cb_recorder *r = (dlf_cb_recorder *)cb;
    float *dst[7];
    static const char *const keys[7] = {"lr", "mom", "loss", "epoch_train", "epoch_valid", "epoch_metric", "epoch_step"};
    char k[192];
    long long n = 0, ne = 0;
    int i, rc;
    if ((rc = dlf__recorder_alloc(r, l)) != DLF_OK) return rc;
    if ((rc = dlf__ck_geti(c, prefix, "n", &n)) != DLF_OK || (rc = dlf__ck_geti(c, prefix, "n_epochs", &ne)) != DLF_OK)
        return rc;
    if (n < 0 || n > r->cap || ne < 0 || ne > r->cap_epochs)
        return dlf__fail(DLF_ERR_FORMAT, "checkpoint: the recorder holds %lld steps and %lld epochs, more than the run has",
                         n, ne);
    dst[0] = r->lr; dst[1] = r->mom; dst[2] = r->loss;
    dst[3] = r->epoch_train; dst[4] = r->epoch_valid; dst[5] = r->epoch_metric; dst[6] = r->epoch_step;
    for (i = 0; i < 7; i++) {
        long long m = i < 3 ? n : ne;
        const dlf_st_tensor *t;
        if (m == 0) continue;
        snprintf(k, sizeof k, "%s%s", prefix, keys[i]);
        t = dlf_safetensors_find(&c->file, k);
        if (!t || t->size != m) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: \"%s\" is missing or has the wrong size", k);
        memcpy(dst[i], t->data, (size_t)m * sizeof(float));
    }
    r->n = (int)n;
    r->n_epochs = (int)ne;
    return DLF_OK;
}

DLFDEF void dlf_cb_recorder_init(dlf_cb_recorder *r)
{
    DLF__NOT_NULL(r, );
    memset(r, 0, sizeof *r);
    r->cb.name = "recorder";
    r->cb.order = 20;
    r->cb.on = dlf__cb_recorder_on;
    r->cb.save = dlf__recorder_save;
    r->cb.load = dlf__recorder_load;
}

DLFDEF void dlf_cb_recorder_free(dlf_cb_recorder *r)
{
    DLF__NOT_NULL(r, );
    float *const arrays[7] = {r->lr, r->mom, r->loss, r->epoch_train, r->epoch_valid, r->epoch_metric, r->epoch_step};
    int i;
    for (i = 0; i < 7; i++)
        if (arrays[i]) DLF_FREE(arrays[i]);
    dlf_cb_recorder_init(r);
}

#ifndef DLF_NO_STDIO
DLFDEF int dlf_cb_recorder_plot_loss(const dlf_cb_recorder *r, const char *path, const char *title)
{
    DLF__NOT_NULL(r, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    dlf_plot_cfg cfg;
    dlf_series s[2];
    memset(&cfg, 0, sizeof cfg);
    memset(s, 0, sizeof s);
    cfg.title = title ? title : "loss";
    cfg.xlabel = "step";
    cfg.ylabel = "loss";
    s[0].name = "train (each batch)";
    s[0].y = r->loss;
    s[0].n = r->n;
    s[1].name = "valid (each epoch)";
    s[1].x = r->epoch_step;
    s[1].y = r->epoch_valid;
    s[1].n = r->n_epochs;
    return dlf_svg_lines(path, &cfg, s, r->n_epochs > 0 ? 2 : 1);
}

DLFDEF int dlf_cb_recorder_plot_sched(const dlf_cb_recorder *r, const char *path, const char *title)
{
    DLF__NOT_NULL(r, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    dlf_plot_cfg cfg[2];
    dlf_series s[2];
    const dlf_series *ps[2];
    int ns[2] = {1, 1};
    memset(cfg, 0, sizeof cfg);
    memset(s, 0, sizeof s);
    cfg[0].title = "lr";
    cfg[1].title = "mom (momentum or beta1)";
    cfg[0].xlabel = cfg[1].xlabel = "step";
    s[0].name = "lr";
    s[0].y = r->lr;
    s[0].n = r->n;
    s[1].name = "mom";
    s[1].y = r->mom;
    s[1].n = r->n;
    ps[0] = &s[0];
    ps[1] = &s[1];
    return dlf_svg_lines_grid(path, title ? title : "schedules (group 0)", cfg, ps, ns, 2, 2);
}
#endif

/* ParamScheduler */
static int dlf__cb_sched_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf_cb_sched *s = (dlf_cb_sched *)cb;
    int i;
    if (ev != DLF_EV_BEGIN_BATCH || !l->in_train) return DLF_CB_OK;
    for (i = 0; i < s->n; i++) {
        const dlf_cb_sched_item *it = &s->items[i];
        dlf_optim_set_hyper(l->opt, it->group, it->hyper, (float)dlf_schedule_at(&it->sched, l->step, l->total_steps));
    }
    return DLF_CB_OK;
}

DLFDEF void dlf_cb_sched_init(dlf_cb_sched *s)
{
    DLF__NOT_NULL(s, );
    memset(s, 0, sizeof *s);
    s->cb.name = "sched";
    s->cb.order = 10;
    s->cb.on = dlf__cb_sched_on;
}

DLFDEF int dlf_cb_sched_add(dlf_cb_sched *s, dlf_hyper h, int group, dlf_schedule sched)
{
    DLF__NOT_NULL(s, DLF_ERR_ARG);
    if (s->n == DLF_CB_SCHED_MAX) return dlf__fail(DLF_ERR_ARG, "dlf_cb_sched_add: more than %d schedules", DLF_CB_SCHED_MAX);
    s->items[s->n].hyper = h;
    s->items[s->n].group = group;
    s->items[s->n].sched = sched;
    s->n++;
    return DLF_OK;
}

/* Progress (fastprogress): on a terminal a bar redrawn in place while the epoch runs,
       [##########..........] 120/391 00:03<00:05 loss 0.4312
   (epoch 2/5 before it), then for every epoch one row of the results table (a log
   gets the rows only):
       epoch  train_loss  valid_loss  accuracy  time
       0      0.312345    0.123456    0.961200  00:04 */
#ifndef DLF_NO_STDIO
static void dlf__fmt_time(char *buf, size_t n, double s)
{
    int t = s > 0.0 && s < 3.6e6 ? (int)(s + 0.5) : 0;
    if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%02d:%02d", t / 60, t % 60);
}

static void dlf__progress_bar(const dlf_cb_progress *p, double now)
{
    char bar[21], el[32], eta[32];
    const dlf_progress *q = &p->p;
    int i, fill = q->total > 0 ? 20 * q->done / q->total : 20;
    double e = now - q->t_start;
    for (i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
    bar[20] = 0;
    dlf__fmt_time(el, sizeof el, e);
    dlf__fmt_time(eta, sizeof eta, q->done > 0 ? e * (double)(q->total - q->done) / (double)q->done : 0.0);
    printf("\r%s [%s] %d/%d %s<%s loss %.4f  ", q->label, bar, q->done, q->total, el, eta,
           q->done ? q->loss_sum / q->done : 0.0);
    fflush(stdout);
}
#endif

static int dlf__cb_progress_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
#ifndef DLF_NO_STDIO
    dlf_cb_progress *p = (dlf_cb_progress *)cb;
    int k;
    char tm[32];
    if (p->quiet) return DLF_CB_OK;
    switch (ev) {
    case DLF_EV_BEGIN_FIT:
        printf("%-5s  %-10s  %-10s", "epoch", "train_loss", "valid_loss");
        for (k = 0; k < l->n_metrics; k++) printf("  %-10s", l->metrics[k].name);
        printf("  time\n");
        fflush(stdout);
        break;
    case DLF_EV_BEGIN_EPOCH:
        snprintf(tm, sizeof tm, "epoch %d/%d", l->epoch + 1, l->epochs);
        dlf_progress_start(&p->p, tm, l->n_iter, 1);  /* counters and clock; we draw */
        p->p.done = l->iter;                           /* a resumed epoch */
        p->t_epoch = p->p.t_start;
        break;
    case DLF_EV_AFTER_BATCH:
        if (!l->in_train) break;
        dlf_progress_step(&p->p, l->bs, l->loss ? l->loss_value : 0.0f);
        if (p->tty) {
            double now = dlf_seconds();
            if (now - p->p.t_drawn >= 0.1 || p->p.done == p->p.total) {
                p->p.t_drawn = now;
                dlf__progress_bar(p, now);
            }
        }
        break;
    case DLF_EV_AFTER_EPOCH:
        if (p->tty) printf("\r\033[K");  /* the bar gives way to the row */
        dlf__fmt_time(tm, sizeof tm, dlf_seconds() - p->t_epoch);
        printf("%-5d  %-10.6f  ", l->epoch, l->train_loss);
        if (l->validated) printf("%-10.6f", l->valid_loss);
        else printf("%-10s", "#na#");
        for (k = 0; k < l->n_metrics; k++) {
            if (l->validated) printf("  %-10.6f", l->metric_values[k]);
            else printf("  %-10s", "#na#");
        }
        printf("  %s\n", tm);
        fflush(stdout);
        break;
    case DLF_EV_AFTER_FIT:
        if (p->tty && l->where == 4 && p->p.done > 0 && p->p.done < p->p.total) printf("\r\033[K");
        fflush(stdout);
        break;
    default:
        break;
    }
#else
    (void)cb;
    (void)l;
    (void)ev;
#endif
    return DLF_CB_OK;
}

DLFDEF void dlf_cb_progress_init(dlf_cb_progress *p, int quiet)
{
    DLF__NOT_NULL(p, );
    memset(p, 0, sizeof *p);
    p->cb.name = "progress";
    p->cb.order = 30;
    p->cb.on = dlf__cb_progress_on;
    p->quiet = quiet;
    p->tty = dlf_stdout_is_tty();
}

/* Early stopping */
static int dlf__cb_early_stop_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf_cb_early_stop *e = (dlf_cb_early_stop *)cb;
    if (ev == DLF_EV_BEGIN_FIT && !l->resume) {
        dlf__tracker_reset(&e->t);
        e->stopped_epoch = -1;
    } else if (ev == DLF_EV_AFTER_EPOCH) {
        if (dlf__tracker_update(&e->t, l) == 0 && e->t.wait >= e->patience) {
            e->stopped_epoch = l->epoch;
#ifndef DLF_NO_STDIO
            if (e->verbose)
                printf("no improvement of %s since epoch %d: early stopping\n", e->t.monitor, l->epoch - e->t.wait);
#endif
            return DLF_CB_CANCEL_FIT;
        }
    }
    return DLF_CB_OK;
}

static int dlf__early_stop_save(const dlf_callback *cb, const dlf_learner *l, dlf_ckpt *c, const char *prefix)
{
    (void)l;
    return dlf__tracker_save(&((const dlf_cb_early_stop *)cb)->t, c, prefix);
}

static int dlf__early_stop_load(dlf_callback *cb, dlf_learner *l, const dlf_ckpt *c, const char *prefix)
{
    (void)l;
    ((dlf_cb_early_stop *)cb)->stopped_epoch = -1;
    return dlf__tracker_load(&((dlf_cb_early_stop *)cb)->t, c, prefix);
}

DLFDEF void dlf_cb_early_stop_init(dlf_cb_early_stop *e, const char *monitor, float min_delta, int patience)
{
    DLF__NOT_NULL(e, );
    memset(e, 0, sizeof *e);
    e->cb.name = "early_stop";
    e->cb.order = 40;
    e->cb.on = dlf__cb_early_stop_on;
    e->cb.save = dlf__early_stop_save;
    e->cb.load = dlf__early_stop_load;
    dlf__tracker_init(&e->t, monitor, min_delta);
    e->patience = patience > 0 ? patience : 1;
    e->stopped_epoch = -1;
    e->verbose = 1;
}

/* Save-best (fastai's SaveModelCallback, with_opt=False): weights and buffers only. */
static int dlf__cb_save_best_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf_cb_save_best *s = (dlf_cb_save_best *)cb;
    if (!l->params) {
        l->rc = dlf__fail(DLF_ERR_ARG, "save_best: the learner has no parameter list (l->params)");
        return ev == DLF_EV_AFTER_FIT ? DLF_CB_OK : DLF_CB_CANCEL_FIT;
    }
    switch (ev) {
    case DLF_EV_BEGIN_FIT:
        if (!l->resume) {
            dlf__tracker_reset(&s->t);
            s->saves = 0;
        }
        break;
    case DLF_EV_AFTER_EPOCH:
#ifndef DLF_NO_STDIO
        if (dlf__tracker_update(&s->t, l) == 1) {
            char ep[24], val[48];
            const char *meta[4];
            int rc;
            snprintf(ep, sizeof ep, "%d", l->epoch);
            snprintf(val, sizeof val, "%a", (double)s->t.best);
            meta[0] = "epoch"; meta[1] = ep; meta[2] = s->t.monitor; meta[3] = val;
            if ((rc = dlf_ckpt_save_training(s->path, l->params, NULL, meta, 2)) != DLF_OK) {
                l->rc = rc;
                return DLF_CB_CANCEL_FIT;
            }
            s->saves++;
        }
#endif
        break;
    case DLF_EV_AFTER_FIT:
#ifndef DLF_NO_STDIO
        if (s->restore_at_end && s->saves > 0 && l->rc == DLF_OK) {
            int rc = dlf_ckpt_load_training(s->path, l->params, NULL);
            if (rc != DLF_OK) l->rc = rc;
        }
#endif
        break;
    default:
        break;
    }
    return DLF_CB_OK;
}

static int dlf__save_best_save(const dlf_callback *cb, const dlf_learner *l, dlf_ckpt *c, const char *prefix)
{
    const dlf_cb_save_best *s = (const dlf_cb_save_best *)cb;
    int rc = dlf__tracker_save(&s->t, c, prefix);
    (void)l;
    return rc == DLF_OK ? dlf__ck_seti(c, prefix, "saves", s->saves) : rc;
}

static int dlf__save_best_load(dlf_callback *cb, dlf_learner *l, const dlf_ckpt *c, const char *prefix)
{
    dlf_cb_save_best *s = (dlf_cb_save_best *)cb;
    long long n;
    int rc = dlf__tracker_load(&s->t, c, prefix);
    (void)l;
    s->saves = 0;
    if (rc == DLF_OK && dlf__ck_geti(c, prefix, "saves", &n) == DLF_OK) s->saves = (int)n;
    return rc;
}

DLFDEF void dlf_cb_save_best_init(dlf_cb_save_best *s, const char *monitor, const char *path, int restore_at_end)
{
    DLF__NOT_NULL(s, ); DLF__NOT_NULL(path, );
    memset(s, 0, sizeof *s);
    s->cb.name = "save_best";
    s->cb.order = 35;
    s->cb.on = dlf__cb_save_best_on;
    s->cb.save = dlf__save_best_save;
    s->cb.load = dlf__save_best_load;
    dlf__tracker_init(&s->t, monitor, 0.0f);
    s->path = path;
    s->restore_at_end = restore_at_end;
}

/* Gradient clipping */
static int dlf__cb_clip_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf_cb_clip *c = (dlf_cb_clip *)cb;
    if (ev == DLF_EV_AFTER_BACKWARD) c->last_norm = dlf_optim_clip_grad_norm(l->opt, c->max_norm);
    return DLF_CB_OK;
}

DLFDEF void dlf_cb_clip_init(dlf_cb_clip *c, float max_norm)
{
    DLF__NOT_NULL(c, );
    memset(c, 0, sizeof *c);
    c->cb.name = "clip";
    c->cb.order = 0;
    c->cb.on = dlf__cb_clip_on;
    c->max_norm = max_norm;
}

/* Autosave: the run's state at after_batch, every `every` steps and at stop_at. */
static int dlf__cb_autosave_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf_cb_autosave *a = (dlf_cb_autosave *)cb;
    int stop;
    if (ev != DLF_EV_AFTER_BATCH || !l->in_train) return DLF_CB_OK;
    stop = a->stop_at > 0 && l->step == a->stop_at;
    if (stop || (a->every > 0 && l->step % a->every == 0)) {
#ifndef DLF_NO_STDIO
        int rc = dlf__learner_save_meta(l, a->path, a->meta, a->n_meta);
        if (rc != DLF_OK) {
            l->rc = rc;
            return DLF_CB_CANCEL_FIT;
        }
        a->saves++;
#endif
    }
    return stop ? DLF_CB_CANCEL_FIT : DLF_CB_OK;
}

DLFDEF void dlf_cb_autosave_init(dlf_cb_autosave *a, const char *path, long every, long stop_at)
{
    DLF__NOT_NULL(a, ); DLF__NOT_NULL(path, );
    memset(a, 0, sizeof *a);
    a->cb.name = "autosave";
    a->cb.order = 50;
    a->cb.on = dlf__cb_autosave_on;
    a->path = path;
    a->every = every;
    a->stop_at = stop_at;
}

/* Augmentation and mixup as callbacks: their rng goes into the run's checkpoint, so a
   resumed run draws the same transforms as an uninterrupted one. */
static int dlf__cb_rng_save(const dlf_callback *cb, const dlf_learner *l, dlf_ckpt *c, const char *prefix)
{
    char key[96];
    (void)l;
    snprintf(key, sizeof key, "%srng", prefix);
    return dlf_ckpt_add_rng(c, key, (const dlf_rng *)cb->user);   /* user: the callback's rng */
}

static int dlf__cb_rng_load(dlf_callback *cb, dlf_learner *l, const dlf_ckpt *c, const char *prefix)
{
    char key[96];
    (void)l;
    snprintf(key, sizeof key, "%srng", prefix);
    return dlf_ckpt_get_rng(c, key, (dlf_rng *)cb->user);
}

static int dlf__cb_augment_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf_cb_augment *a = (dlf_cb_augment *)cb;
    if (ev == DLF_EV_BEGIN_BATCH && l->in_train && dlf_augment_apply(a->aug, l->xb, &a->rng) != DLF_OK) {
        l->rc = DLF_ERR_ARG;   /* the message is in dlf_last_error() */
        return DLF_CB_CANCEL_FIT;
    }
    return DLF_CB_OK;
}
DLFDEF void dlf_cb_augment_init(dlf_cb_augment *c, dlf_augment *aug, uint64_t seed)
{
    DLF__NOT_NULL(c, ); DLF__NOT_NULL(aug, );
    memset(c, 0, sizeof *c);
    c->cb.name = "augment";
    c->cb.order = -5;
    c->cb.on = dlf__cb_augment_on;
    c->cb.save = dlf__cb_rng_save;
    c->cb.load = dlf__cb_rng_load;
    c->cb.user = &c->rng;
    c->aug = aug;
    dlf_rng_seed(&c->rng, seed);
}

static int dlf__cb_mixup_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf_cb_mixup *m = (dlf_cb_mixup *)cb;
    if (!l->in_train) return DLF_CB_OK;
    if (ev == DLF_EV_BEGIN_BATCH && dlf_mixup_apply(m->mix, l->xb, l->yb, &m->rng) != DLF_OK) {
        l->rc = DLF_ERR_ARG;
        return DLF_CB_CANCEL_FIT;
    }
    if (ev == DLF_EV_AFTER_LOSS) {   /* the loss against the mixed targets replaces the plain one */
        dlf_tensor *loss = dlf_mixup_loss(l->tape, m->mix, l->pred);
        if (!loss) {
            l->rc = DLF_ERR_ARG;
            return DLF_CB_CANCEL_FIT;
        }
        /* the learner counted the plain loss into the epoch's sums already: count this one */
        l->tl_sum += ((double)loss->data[0] - l->loss_value) * l->bs;
        l->tl_batch_sum += (double)loss->data[0] - l->loss_value;
        l->loss = loss;
        l->loss_value = loss->data[0];
    }
    return DLF_CB_OK;
}
DLFDEF void dlf_cb_mixup_init(dlf_cb_mixup *c, dlf_mixup *mix, uint64_t seed)
{
    DLF__NOT_NULL(c, ); DLF__NOT_NULL(mix, );
    memset(c, 0, sizeof *c);
    c->cb.name = "mixup";
    c->cb.order = -4;
    c->cb.on = dlf__cb_mixup_on;
    c->cb.save = dlf__cb_rng_save;
    c->cb.load = dlf__cb_rng_load;
    c->cb.user = &c->rng;
    c->mix = mix;
    dlf_rng_seed(&c->rng, seed);
}

/* ---------------------------------------------------------------- the LR finder */

typedef struct dlf__lr_finder {
    dlf_callback cb;
    dlf_lr_find_cfg cfg;
    dlf_lr_find_result *res;
    double avg, best;        /* the smoothed loss's running average, its minimum */
    int count;
    float lr;                /* this step's */
} dlf__lr_finder;

static int dlf__cb_lr_finder_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf__lr_finder *f = (dlf__lr_finder *)cb;
    double sm;
    switch (ev) {
    case DLF_EV_BEGIN_BATCH:  /* lr_i = start (end/start)^(i/num_it), fastai's SchedExp at train_iter/num_it */
        if (!l->in_train) break;
        f->lr = (float)(f->cfg.start_lr * pow(f->cfg.end_lr / f->cfg.start_lr, (double)l->step / f->cfg.num_it));
        dlf_optim_set_hyper(l->opt, -1, DLF_HYPER_LR, f->lr);
        break;
    case DLF_EV_AFTER_BATCH:
        if (!l->in_train || !l->loss) break;
        f->count++;  /* fastai's Recorder: an exponential average of the loss, debiased */
        f->avg = 0.98 * f->avg + 0.02 * (double)l->loss_value;
        sm = f->avg / (1.0 - pow(0.98, f->count));
        f->res->lrs[f->res->n] = f->lr;
        f->res->losses[f->res->n] = (float)sm;
        f->res->n++;
        if (sm < f->best) f->best = sm;
        if (f->cfg.stop_div > 0.0f && (sm > f->cfg.stop_div * f->best || sm != sm)) return DLF_CB_CANCEL_FIT;
        if (l->step >= f->cfg.num_it) return DLF_CB_CANCEL_FIT;
        break;
    case DLF_EV_BEGIN_VALIDATE:
        return DLF_CB_CANCEL_EPOCH;  /* no validation during the sweep */
    default:
        break;
    }
    return DLF_CB_OK;
}

/* Everything the sweep changes, copied once before it and put back after. */
typedef struct dlf__snapshot {
    float *buf;              /* tensors' data, then the optimizer's state buffers */
    int *steps;              /* (n_params) each parameter's step */
    dlf_optim_cfg groups[DLF_OPTIM_MAX_GROUPS];
    int opt_steps;
    dlf_loader_state loader;
    dlf_rng tape_rng;
} dlf__snapshot;

/* dir 1: take, 0: restore. The tensors are l->params' (buffers included) or else the
   optimizer's parameters. */
static void dlf__snapshot_copy(dlf_learner *l, dlf__snapshot *s, int take)
{
    dlf_optim *o = l->opt;
    size_t off = 0;
    int i, k, n = l->params ? l->params->n : o->n_params;
    for (i = 0; i < n; i++) {
        dlf_tensor *t = l->params ? l->params->items[i].t : o->params[i].p;
        if (take) memcpy(s->buf + off, t->data, (size_t)t->size * sizeof(float));
        else { memcpy(t->data, s->buf + off, (size_t)t->size * sizeof(float)); dlf__written(t); }
        off += (size_t)t->size;
    }
    for (i = 0; i < o->n_params; i++) {
        dlf_optim_param *q = &o->params[i];
        for (k = 0; k < DLF_OPTIM_MAX_STATE; k++) {
            if (!q->state[k]) continue;
            if (take) memcpy(s->buf + off, q->state[k], (size_t)q->p->size * sizeof(float));
            else memcpy(q->state[k], s->buf + off, (size_t)q->p->size * sizeof(float));
            off += (size_t)q->p->size;
        }
        if (take) s->steps[i] = q->step;
        else q->step = s->steps[i];
    }
    if (take) {
        memcpy(s->groups, o->groups, sizeof s->groups);
        s->opt_steps = o->steps;
        s->tape_rng = l->tape->rng;
    } else {
        memcpy(o->groups, s->groups, sizeof s->groups);
        o->steps = s->opt_steps;
        l->tape->rng = s->tape_rng;
        dlf_loader_set_state(l->train, &s->loader);
    }
}

static void dlf__snapshot_free(dlf__snapshot *s)
{
    if (s->buf) DLF_FREE(s->buf);
    if (s->steps) DLF_FREE(s->steps);
    dlf_loader_state_free(&s->loader);
}

static int dlf__snapshot_take(dlf_learner *l, dlf__snapshot *s)
{
    dlf_optim *o = l->opt;
    size_t total = 0;
    int i, k, n = l->params ? l->params->n : o->n_params;
    memset(s, 0, sizeof *s);
    for (i = 0; i < n; i++) total += (size_t)(l->params ? l->params->items[i].t : o->params[i].p)->size;
    for (i = 0; i < o->n_params; i++)
        for (k = 0; k < DLF_OPTIM_MAX_STATE; k++)
            if (o->params[i].state[k]) total += (size_t)o->params[i].p->size;
    s->buf = (float *)dlf__malloc((total ? total : 1) * sizeof(float), "the LR finder's snapshot");
    s->steps = (int *)dlf__malloc((size_t)(o->n_params ? o->n_params : 1) * sizeof(int), "the LR finder's snapshot");
    if (!s->buf || !s->steps || dlf_loader_get_state(l->train, &s->loader) != DLF_OK) {
        dlf__snapshot_free(s);
        return DLF_ERR_NOMEM;
    }
    dlf__snapshot_copy(l, s, 1);
    return DLF_OK;
}

DLFDEF int dlf_lr_find(dlf_learner *l, const dlf_lr_find_cfg *cfg, dlf_lr_find_result *res)
{
    DLF__NOT_NULL(l, DLF_ERR_ARG); DLF__NOT_NULL(res, DLF_ERR_ARG);
    dlf__lr_finder f;
    dlf__snapshot snap;
    dlf_learner saved = *l;  /* counters, callbacks, a pending resume: all put back after */
    int rc, epochs, i, lo, hi, best;
    memset(res, 0, sizeof *res);
    memset(&f, 0, sizeof f);
    if (cfg) f.cfg = *cfg;
    if (f.cfg.start_lr <= 0.0) f.cfg.start_lr = 1e-7;
    if (f.cfg.end_lr <= 0.0) f.cfg.end_lr = 10.0;
    if (f.cfg.num_it <= 0) f.cfg.num_it = 100;
    if (f.cfg.stop_div == 0.0f) f.cfg.stop_div = 4.0f;
    if (l->train->n_batches <= 0) return dlf__fail(DLF_ERR_ARG, "dlf_lr_find: the training loader has no batches");
    res->lrs = (float *)dlf__malloc((size_t)f.cfg.num_it * sizeof(float), "the LR finder's curve");
    res->losses = (float *)dlf__malloc((size_t)f.cfg.num_it * sizeof(float), "the LR finder's curve");
    if (!res->lrs || !res->losses || dlf__snapshot_take(l, &snap) != DLF_OK) {
        dlf_lr_find_free(res);
        return DLF_ERR_NOMEM;
    }
    f.cb.name = "lr_finder";
    f.cb.on = dlf__cb_lr_finder_on;
    f.res = res;
    f.best = HUGE_VAL;
    l->n_cbs = 0;  /* only train/eval and the finder run during the sweep */
    l->check_finite = 0;   /* a diverging loss is the finder's to see (it stops on NaN), not an error */
    dlf_learner_add_cb(l, &l->train_eval);
    dlf_learner_add_cb(l, &f.cb);
    epochs = (f.cfg.num_it + l->train->n_batches - 1) / l->train->n_batches;
    l->resume = 0;
    rc = dlf_learner_fit(l, epochs);
    *l = saved;
    dlf__snapshot_copy(l, &snap, 0);
    dlf__snapshot_free(&snap);
    if (rc != DLF_OK) return rc;
    /* the suggestions, over points num_it/10 .. n-6 (fastai's lrs[num_it//10:-5]) */
    lo = f.cfg.num_it / 10;
    hi = res->n - 5;
    if (hi - lo < 2) {
        lo = 0;
        hi = res->n;
    }
    if (hi - lo >= 2) {
        float steepest = HUGE_VALF;
        best = lo;
        for (i = lo; i < hi; i++)
            if (res->losses[i] < res->losses[best]) best = i;
        res->lr_min = res->lrs[best] / 10.0f;
        best = lo;
        for (i = lo; i + 1 < hi; i++) {
            float g = (res->losses[i + 1] - res->losses[i]) / (logf(res->lrs[i + 1]) - logf(res->lrs[i]));
            if (g < steepest) {
                steepest = g;
                best = i;
            }
        }
        res->lr_steep = res->lrs[best];
    }
    return DLF_OK;
}

DLFDEF void dlf_lr_find_free(dlf_lr_find_result *res)
{
    DLF__NOT_NULL(res, );
    if (res->lrs) DLF_FREE(res->lrs);
    if (res->losses) DLF_FREE(res->losses);
    memset(res, 0, sizeof *res);
}

#ifndef DLF_NO_STDIO
DLFDEF int dlf_lr_find_plot(const dlf_lr_find_result *res, const char *path, const char *title)
{
    DLF__NOT_NULL(res, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    dlf_plot_cfg cfg;
    dlf_series s;
    char mark[96];
    memset(&cfg, 0, sizeof cfg);
    memset(&s, 0, sizeof s);
    snprintf(mark, sizeof mark, "steepest %.3g", (double)res->lr_steep);
    cfg.title = title ? title : "LR finder";
    cfg.xlabel = "learning rate";
    cfg.ylabel = "loss (smoothed)";
    cfg.logx = 1;
    cfg.has_mark = res->lr_steep > 0.0f;
    cfg.mark_x = res->lr_steep;
    cfg.mark_label = mark;
    s.name = "loss";
    s.x = res->lrs;
    s.y = res->losses;
    s.n = res->n > 10 ? res->n - 5 : res->n;  /* fastai's plot skips the last 5: the blow-up */
    return dlf_svg_lines(path, &cfg, &s, 1);
}
#endif

/* ---------------------------------------------------------------- dlf_fit */

/* The old loop's lr schedule and progress lines as one callback, so dlf_fit gives the
   bits and the lines it always gave. */
typedef struct dlf__fit_cb {
    dlf_callback cb;
    dlf_fit_cfg cfg;
    float base[DLF_OPTIM_MAX_GROUPS], scale;
    dlf_progress prog;
} dlf__fit_cb;

static int dlf__fit_cb_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    dlf__fit_cb *f = (dlf__fit_cb *)cb;
    char label[32], extra[96];
    int g;
    switch (ev) {
    case DLF_EV_BEGIN_EPOCH:
        snprintf(label, sizeof label, "epoch %d/%d", l->epoch + 1, l->epochs);
        dlf_progress_start(&f->prog, label, l->n_iter, f->cfg.quiet);
        break;
    case DLF_EV_BEGIN_BATCH:
        if (!l->in_train) break;
        for (g = 0; g < l->opt->n_groups; g++)
            l->opt->groups[g].lr = dlf_sched_lr(f->cfg.sched, f->base[g] * f->scale, f->cfg.pct_start, (int)l->step,
                                                (int)l->total_steps);
        break;
    case DLF_EV_AFTER_BATCH:
        if (l->in_train) dlf_progress_step(&f->prog, l->bs, l->loss_value);
        break;
    case DLF_EV_AFTER_EPOCH:
        extra[0] = 0;
        if (l->validated && l->n_metrics > 0)
            snprintf(extra, sizeof extra, "| valid_loss %.4f valid_acc %.4f", l->valid_loss, l->metric_values[0]);
        else if (l->validated)
            snprintf(extra, sizeof extra, "| valid_loss %.4f", l->valid_loss);
        dlf_progress_end(&f->prog, extra);
        break;
    default:
        break;
    }
    return DLF_CB_OK;
}

DLFDEF int dlf_fit(dlf_tape *t, dlf_model_fn model, void *m, dlf_loss_fn loss_fn, dlf_optim *opt,
                   dlf_loader *train, dlf_loader *valid, const dlf_fit_cfg *cfg_in, dlf_fit_report *rep)
{
    if (rep) memset(rep, 0, sizeof *rep);   /* first: every return leaves it defined */
    DLF__NOT_NULL(t, DLF_ERR_ARG); DLF__NOT_NULL(model, DLF_ERR_ARG);
    DLF__NOT_NULL(opt, DLF_ERR_ARG); DLF__NOT_NULL(train, DLF_ERR_ARG);   /* loss_fn NULL: by the labels */
    dlf_learner l;
    dlf__fit_cb f;
    int g, rc;
    memset(&f, 0, sizeof f);
    if (cfg_in) f.cfg = *cfg_in;
    if (f.cfg.epochs <= 0) f.cfg.epochs = 1;
    f.scale = 1.0f;
    for (g = 0; g < opt->n_groups; g++) f.base[g] = opt->groups[g].lr;  /* restored at the end */
    if (f.cfg.lr > 0.0f && f.base[0] > 0.0f) f.scale = f.cfg.lr / f.base[0];
    f.cb.name = "fit";
    f.cb.on = dlf__fit_cb_on;
    dlf_learner_init(&l, t, model, m, loss_fn, opt, train, valid);
    l.fixed_threads = f.cfg.fixed_threads;
    if (!loss_fn) l.loss_fn = dlf_default_loss(train->ds);
    if (!train->ds->targets) dlf_learner_add_metric(&l, "accuracy", dlf_metric_accuracy);
    dlf_learner_add_cb(&l, &f.cb);
    rc = dlf_learner_fit(&l, f.cfg.epochs);
    for (g = 0; g < opt->n_groups; g++) opt->groups[g].lr = f.base[g];  /* a second fit starts where this one did */
    if (rep) {
        memset(rep, 0, sizeof *rep);
        rep->train_loss = l.tl_batches ? (float)(l.tl_batch_sum / l.tl_batches) : 0.0f;
        rep->valid_loss = l.validated ? l.valid_loss : 0.0f;
        rep->valid_acc = l.validated && l.n_metrics > 0 ? l.metric_values[0] : 0.0f;
        rep->train_seconds = l.train_seconds;
        rep->steps = (int)l.step;
    }
    dlf_learner_free(&l);
    return rc;
}

// >>stage15_serialization (implementation) -----------------------------------------

/* A cursor over the JSON header: every read checks `p < end` first. */
typedef struct dlf__json {
    const unsigned char *p;   /* next byte */
    const unsigned char *end; /* one past the last byte of the header */
    const unsigned char *start;
    const char *what;         /* file name for messages */
    int failed;               /* an error has been recorded */
} dlf__json;

static int dlf__json_err(dlf__json *j, const char *msg)
{
    if (!j->failed)
        dlf__fail(DLF_ERR_FORMAT, "%s: safetensors header, byte %ld: %s", j->what,
                  (long)(j->p - j->start) + 8, msg);
    j->failed = 1;
    return 0;
}

static void dlf__json_ws(dlf__json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int dlf__json_eat(dlf__json *j, char c)
{
    dlf__json_ws(j);
    if (j->p < j->end && *j->p == (unsigned char)c) {
        j->p++;
        return 1;
    }
    return 0;
}

static int dlf__json_expect(dlf__json *j, char c, const char *msg)
{
    return dlf__json_eat(j, c) ? 1 : dlf__json_err(j, msg);
}

static int dlf__hex(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A JSON string into a new NUL-terminated buffer (UTF-8; \uXXXX escapes decoded,
   surrogate pairs joined, lone surrogates and \u0000 refused). Returns NULL on error. */
static char *dlf__json_string(dlf__json *j)
{
    const unsigned char *q;
    char *out, *o;
    dlf__json_ws(j);
    if (j->p >= j->end || *j->p != '"') { dlf__json_err(j, "expected a string"); return NULL; }
    j->p++;
    /* the decoded string is never longer than the encoded one */
    for (q = j->p; q < j->end && *q != '"'; q++)
        if (*q == '\\') q++;
    if (q >= j->end) { dlf__json_err(j, "unterminated string"); return NULL; }
    out = (char *)dlf__malloc((size_t)(q - j->p) + 1, "a safetensors name");
    if (!out) { j->failed = 1; return NULL; }
    o = out;
    while (j->p < j->end && *j->p != '"') {
        unsigned c = *j->p++;
        if (c < 0x20) { DLF_FREE(out); dlf__json_err(j, "control character in a string"); return NULL; }
        if (c != '\\') { *o++ = (char)c; continue; }
        if (j->p >= j->end) break;
        c = *j->p++;
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            int k;
            if (j->end - j->p < 4) { DLF_FREE(out); dlf__json_err(j, "short \\u escape"); return NULL; }
            for (k = 0; k < 4; k++) {
                int h = dlf__hex(j->p[k]);
                if (h < 0) { DLF_FREE(out); dlf__json_err(j, "bad \\u escape"); return NULL; }
                cp = cp * 16 + (unsigned)h;
            }
            j->p += 4;
            if (cp == 0) {   /* names, dtypes and metadata are C strings: a NUL would cut them short */
                DLF_FREE(out);
                dlf__json_err(j, "\\u0000 (NUL) is not allowed in a string");
                return NULL;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {  /* a low surrogate must follow a high one */
                DLF_FREE(out);
                dlf__json_err(j, "lone low surrogate \\u escape (invalid UTF-16)");
                return NULL;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {  /* a high surrogate: joined with the low one after it */
                unsigned lo = 0;
                for (k = 0; k < 4 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u'; k++) {
                    int h = dlf__hex(j->p[2 + k]);
                    if (h < 0) break;
                    lo = lo * 16 + (unsigned)h;
                }
                if (k < 4 || lo < 0xDC00 || lo > 0xDFFF) {
                    DLF_FREE(out);
                    dlf__json_err(j, "high surrogate \\u escape not followed by a low one (invalid UTF-16)");
                    return NULL;
                }
                j->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            /* \uXXXX takes 6 bytes and encodes in at most 3, a pair takes 12 and encodes in 4: it fits */
            if (cp >= 0x10000) {
                *o++ = (char)(0xF0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            DLF_FREE(out);
            dlf__json_err(j, "unknown escape in a string");
            return NULL;
        }
    }
    if (j->p >= j->end) { DLF_FREE(out); dlf__json_err(j, "unterminated string"); return NULL; }
    j->p++;  /* closing quote */
    *o = 0;
    return out;
}

/* The offset of the first byte of p[0..n) that is not part of valid UTF-8 (RFC 3629:
   no overlong forms, no surrogates, nothing past U+10FFFF), or n when all is valid. */
static size_t dlf__utf8_check(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i], cp, k, len;
        if (c < 0x80) { i++; continue; }
        len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0 || n - i < len) return i;
        cp = c & (0x7Fu >> len);
        for (k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (p[i + k] & 0x3Fu);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += len;
    }
    return n;
}

/* A non-negative JSON integer (shape dims and offsets); rejects signs, fractions,
   exponents, leading zeros and values above `max`. */
static int dlf__json_uint(dlf__json *j, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    const unsigned char *start;
    dlf__json_ws(j);
    start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (x > (max - d) / 10) return dlf__json_err(j, "integer too large");
        x = x * 10 + d;
        j->p++;
    }
    if (j->p == start) return dlf__json_err(j, "expected a non-negative integer");
    if (j->p - start > 1 && *start == '0') return dlf__json_err(j, "integer with a leading zero");
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return dlf__json_err(j, "expected an integer, got a fraction or exponent");
    *v = x;
    return 1;
}

typedef struct dlf__st_info {
    int dtype;                /* index into dlf__st_dtypes, -1 until seen */
    int ndim;                 /* -1 until seen */
    int shape[DLF_MAX_DIMS];
    uint64_t begin, end;      /* data_offsets */
    int have_offsets;
} dlf__st_info;

static const struct { const char *name; int bytes; } dlf__st_dtypes[] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8},
    {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1}
};
#define DLF__ST_NDTYPES ((int)(sizeof dlf__st_dtypes / sizeof dlf__st_dtypes[0]))

/* {"dtype": "...", "shape": [...], "data_offsets": [b, e]}, each key exactly once. */
static int dlf__st_parse_info(dlf__json *j, const char *name, dlf__st_info *info)
{
    char msg[160];
    info->dtype = -1;
    info->ndim = -1;
    info->have_offsets = 0;
    if (!dlf__json_expect(j, '{', "expected an object for a tensor")) return 0;
    if (dlf__json_eat(j, '}')) goto check;
    do {
        char *key = dlf__json_string(j);
        if (!key) return 0;
        if (!dlf__json_expect(j, ':', "expected ':'")) { DLF_FREE(key); return 0; }
        if (strcmp(key, "dtype") == 0 && info->dtype < 0) {
            char *d = dlf__json_string(j);
            int k;
            DLF_FREE(key);
            if (!d) return 0;
            for (k = 0; k < DLF__ST_NDTYPES; k++)
                if (strcmp(d, dlf__st_dtypes[k].name) == 0) info->dtype = k;
            if (info->dtype < 0) {
                snprintf(msg, sizeof msg, "tensor \"%.40s\" has unknown dtype \"%.16s\"", name, d);
                DLF_FREE(d);
                return dlf__json_err(j, msg);
            }
            DLF_FREE(d);
        } else if (strcmp(key, "shape") == 0 && info->ndim < 0) {
            DLF_FREE(key);
            info->ndim = 0;
            if (!dlf__json_expect(j, '[', "expected '[' for shape")) return 0;
            if (!dlf__json_eat(j, ']')) {
                do {
                    uint64_t d;
                    if (info->ndim == DLF_MAX_DIMS) {
                        snprintf(msg, sizeof msg, "tensor \"%.40s\" has more than %d dims", name, DLF_MAX_DIMS);
                        return dlf__json_err(j, msg);
                    }
                    if (!dlf__json_uint(j, 0x7fffffff, &d)) return 0;
                    info->shape[info->ndim++] = (int)d;
                } while (dlf__json_eat(j, ','));
                if (!dlf__json_expect(j, ']', "expected ']' after shape")) return 0;
            }
        } else if (strcmp(key, "data_offsets") == 0 && !info->have_offsets) {
            DLF_FREE(key);
            if (!dlf__json_expect(j, '[', "expected '[' for data_offsets")) return 0;
            if (!dlf__json_uint(j, UINT64_MAX, &info->begin)) return 0;
            if (!dlf__json_expect(j, ',', "data_offsets needs two integers")) return 0;
            if (!dlf__json_uint(j, UINT64_MAX, &info->end)) return 0;
            if (!dlf__json_expect(j, ']', "data_offsets needs exactly two integers")) return 0;
            info->have_offsets = 1;
        } else {
            snprintf(msg, sizeof msg, "tensor \"%.40s\": unexpected or repeated key \"%.40s\"", name, key);
            DLF_FREE(key);
            return dlf__json_err(j, msg);
        }
    } while (dlf__json_eat(j, ','));
    if (!dlf__json_expect(j, '}', "expected '}' after a tensor")) return 0;
check:
    if (info->dtype < 0 || info->ndim < 0 || !info->have_offsets) {
        snprintf(msg, sizeof msg, "tensor \"%.40s\" lacks dtype, shape or data_offsets", name);
        return dlf__json_err(j, msg);
    }
    return 1;
}

/* {"key": "value", ...} into the metadata arrays. */
static int dlf__st_parse_meta(dlf__json *j, dlf_safetensors *st)
{
    if (!dlf__json_expect(j, '{', "__metadata__ must be an object")) return 0;
    if (dlf__json_eat(j, '}')) return 1;
    do {
        char *k, *v, **nk, **nv;
        k = dlf__json_string(j);
        if (!k) return 0;
        if (!dlf__json_expect(j, ':', "expected ':'")) { DLF_FREE(k); return 0; }
        dlf__json_ws(j);
        if (j->p < j->end && *j->p != '"') { DLF_FREE(k); return dlf__json_err(j, "__metadata__ values must be strings"); }
        v = dlf__json_string(j);
        if (!v) { DLF_FREE(k); return 0; }
        if (dlf_safetensors_meta(st, k)) {
            DLF_FREE(k); DLF_FREE(v);
            return dlf__json_err(j, "duplicate key in __metadata__");
        }
        nk = (char **)DLF_REALLOC(st->meta_keys, (size_t)(st->n_meta + 1) * sizeof(char *));
        if (nk) st->meta_keys = nk;
        nv = nk ? (char **)DLF_REALLOC(st->meta_values, (size_t)(st->n_meta + 1) * sizeof(char *)) : NULL;
        if (nv) st->meta_values = nv;
        if (!nk || !nv) {
            DLF_FREE(k); DLF_FREE(v);
            j->failed = 1;
            dlf__fail(DLF_ERR_NOMEM, "%s: out of memory reading __metadata__", j->what);
            return 0;
        }
        st->meta_keys[st->n_meta] = k;
        st->meta_values[st->n_meta] = v;
        st->n_meta++;
    } while (dlf__json_eat(j, ','));
    return dlf__json_expect(j, '}', "expected '}' after __metadata__");
}

/* IEEE half (1 sign, 5 exponent, 10 mantissa bits) to float. */
static float dlf__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    float f;
    if (exp == 0) {                       /* zero or subnormal: man * 2^-24 */
        f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    if (exp == 31) bits = sign | 0x7F800000u | (man << 13);   /* inf / NaN */
    else bits = sign | ((exp + 112) << 23) | (man << 13);      /* rebias 15 -> 127 */
    memcpy(&f, &bits, 4);
    return f;
}

/* Element i of a little-endian buffer of the given dtype, as a float. */
static float dlf__st_read(const unsigned char *p, int dtype, size_t i)
{
    const unsigned char *q = p + i * (size_t)dlf__st_dtypes[dtype].bytes;
    uint64_t u = 0;
    int k;
    for (k = dlf__st_dtypes[dtype].bytes - 1; k >= 0; k--) u = (u << 8) | q[k];
    switch (dtype) {
    case 0: { uint32_t b = (uint32_t)u; float f; memcpy(&f, &b, 4); return f; }
    case 1: return dlf__f16_to_f32((uint16_t)u);
    case 2: { uint32_t b = (uint32_t)u << 16; float f; memcpy(&f, &b, 4); return f; }  /* bf16 = top half of f32 */
    case 3: { double d; memcpy(&d, &u, 8); return (float)d; }
    case 4: return (float)(int64_t)u;
    case 5: return (float)(int32_t)(uint32_t)u;
    case 6: return (float)(int16_t)(uint16_t)u;
    case 7: return (float)(int8_t)(uint8_t)u;
    default: return (float)u;  /* U8, BOOL */
    }
}

DLFDEF void dlf_safetensors_free(dlf_safetensors *st)
{
    DLF__NOT_NULL(st, );
    int i;
    for (i = 0; i < st->n; i++) {
        DLF_FREE(st->tensors[i].name);
        if (st->tensors[i].data) DLF_FREE(st->tensors[i].data);
    }
    for (i = 0; i < st->n_meta; i++) {
        DLF_FREE(st->meta_keys[i]);
        DLF_FREE(st->meta_values[i]);
    }
    if (st->tensors) DLF_FREE(st->tensors);
    if (st->meta_keys) DLF_FREE(st->meta_keys);
    if (st->meta_values) DLF_FREE(st->meta_values);
    memset(st, 0, sizeof *st);
}

DLFDEF const dlf_st_tensor *dlf_safetensors_find(const dlf_safetensors *st, const char *name)
{
    DLF__NOT_NULL(st, NULL); DLF__NOT_NULL(name, NULL);
    int i;
    for (i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

DLFDEF const char *dlf_safetensors_meta(const dlf_safetensors *st, const char *key)
{
    DLF__NOT_NULL(st, NULL); DLF__NOT_NULL(key, NULL);
    int i;
    for (i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

/* Offsets must tile the data buffer exactly: sort tensors by (begin, end), as the reference
   reader does, and walk them (so a zero-size tensor at the same begin as a non-empty one is
   not an overlap, whichever the header lists first). */
static int dlf__st_check_layout(dlf_safetensors *st, const dlf__st_info *info, uint64_t data_len, const char *what)
{
    int i, *order, n = st->n;
    uint64_t pos = 0;
    order = (int *)dlf__malloc((size_t)(n ? n : 1) * sizeof(int), "safetensors offsets");
    if (!order) return DLF_ERR_NOMEM;
    for (i = 0; i < n; i++) order[i] = i;
    for (i = 1; i < n; i++) {  /* insertion sort by (begin, end): headers are small */
        int k = order[i], m = i - 1;
        while (m >= 0 && (info[order[m]].begin > info[k].begin ||
                          (info[order[m]].begin == info[k].begin && info[order[m]].end > info[k].end))) {
            order[m + 1] = order[m];
            m--;
        }
        order[m + 1] = k;
    }
    for (i = 0; i < n; i++) {
        const dlf__st_info *f = &info[order[i]];
        const char *name = st->tensors[order[i]].name;
        if (f->begin != pos) {
            int code = dlf__fail(DLF_ERR_FORMAT, "%s: tensor \"%.60s\" starts at %llu but the previous data ends at %llu (%s)",
                                 what, name, (unsigned long long)f->begin, (unsigned long long)pos,
                                 f->begin < pos ? "overlap" : "gap");
            DLF_FREE(order);
            return code;
        }
        pos = f->end;
    }
    DLF_FREE(order);
    if (pos != data_len)
        return dlf__fail(DLF_ERR_FORMAT, "%s: tensors cover %llu bytes of data but the file holds %llu (%s)",
                         what, (unsigned long long)pos, (unsigned long long)data_len,
                         pos < data_len ? "trailing bytes" : "truncated");
    return DLF_OK;
}

DLFDEF int dlf_safetensors_parse(dlf_safetensors *st, const void *bytes, size_t len, const char *what)
{
    DLF__NOT_NULL(st, DLF_ERR_ARG); DLF__NOT_NULL(bytes, DLF_ERR_ARG);
    const unsigned char *b = (const unsigned char *)bytes;
    uint64_t hlen = 0, data_len;
    dlf__json j;
    dlf__st_info *info = NULL;
    int cap = 0, k, code = DLF_OK, seen_meta = 0;
    memset(st, 0, sizeof *st);
    if (!what) what = "safetensors";
    if (len < 8) return dlf__fail(DLF_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file (need 8 for the header length)", what, len);
    for (k = 7; k >= 0; k--) hlen = (hlen << 8) | b[k];
    if (hlen > DLF_ST_MAX_HEADER)
        return dlf__fail(DLF_ERR_FORMAT, "%s: header length %llu is over the %u-byte limit", what,
                         (unsigned long long)hlen, DLF_ST_MAX_HEADER);
    if (hlen > len - 8)
        return dlf__fail(DLF_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                         what, (unsigned long long)hlen, len);
    if (hlen < 2) return dlf__fail(DLF_ERR_FORMAT, "%s: header of %llu bytes cannot hold a JSON object", what, (unsigned long long)hlen);
    data_len = len - 8 - hlen;
    {   /* the header is UTF-8 JSON (the reference reader refuses anything else too) */
        size_t bad = dlf__utf8_check(b + 8, (size_t)hlen);
        if (bad != (size_t)hlen)
            return dlf__fail(DLF_ERR_FORMAT, "%s: safetensors header, byte %zu: not valid UTF-8 (byte 0x%02x)",
                             what, bad + 8, b[8 + bad]);
    }
    j.start = j.p = b + 8;
    j.end = b + 8 + hlen;
    j.what = what;
    j.failed = 0;
    if (!dlf__json_expect(&j, '{', "the header must be a JSON object")) goto fail;
    if (!dlf__json_eat(&j, '}')) {
        do {
            char *name = dlf__json_string(&j);
            if (!name) goto fail;
            if (!dlf__json_expect(&j, ':', "expected ':' after a name")) { DLF_FREE(name); goto fail; }
            if (strcmp(name, "__metadata__") == 0) {
                DLF_FREE(name);
                if (seen_meta) { dlf__json_err(&j, "__metadata__ appears twice"); goto fail; }
                seen_meta = 1;
                if (!dlf__st_parse_meta(&j, st)) goto fail;
                continue;
            }
            if (dlf_safetensors_find(st, name)) {
                char msg[120];
                snprintf(msg, sizeof msg, "duplicate tensor name \"%.60s\"", name);
                DLF_FREE(name);
                dlf__json_err(&j, msg);
                goto fail;
            }
            if (st->n == cap) {
                int nc = cap ? 2 * cap : 16;
                dlf_st_tensor *nt = (dlf_st_tensor *)DLF_REALLOC(st->tensors, (size_t)nc * sizeof *nt);
                dlf__st_info *ni = nt ? (dlf__st_info *)DLF_REALLOC(info, (size_t)nc * sizeof *ni) : NULL;
                if (nt) st->tensors = nt;
                if (ni) info = ni;
                if (!nt || !ni) { DLF_FREE(name); code = dlf__fail(DLF_ERR_NOMEM, "%s: out of memory", what); goto fail_code; }
                cap = nc;
            }
            memset(&st->tensors[st->n], 0, sizeof st->tensors[st->n]);
            st->tensors[st->n].name = name;
            st->n++;
            if (!dlf__st_parse_info(&j, name, &info[st->n - 1])) goto fail;
        } while (dlf__json_eat(&j, ','));
        if (!dlf__json_expect(&j, '}', "expected ',' or '}' in the header")) goto fail;
    }
    dlf__json_ws(&j);
    if (j.p != j.end) { dlf__json_err(&j, "bytes after the JSON object (only spaces may pad it)"); goto fail; }
    /* every tensor: offsets ordered and in bounds, size = product(shape) * dtype size */
    for (k = 0; k < st->n; k++) {
        dlf__st_info *f = &info[k];
        dlf_st_tensor *t = &st->tensors[k];
        uint64_t elems = 1, want;
        int d, big = 0;
        for (d = 0; d < f->ndim; d++) {  /* saturate instead of overflowing */
            uint64_t s = (uint64_t)f->shape[d];
            elems = (s && elems > UINT64_MAX / 16 / s) ? UINT64_MAX / 16 : elems * s;
            big |= elems > 0x7fffffffull;  /* dlf_tensor_new refuses such a shape even when a later dim is 0 */
        }
        if (f->end < f->begin || f->end > data_len) {
            code = dlf__fail(DLF_ERR_FORMAT, "%s: tensor \"%.60s\" data_offsets [%llu, %llu] are outside the %llu-byte data buffer",
                             what, t->name, (unsigned long long)f->begin, (unsigned long long)f->end, (unsigned long long)data_len);
            goto fail_code;
        }
        if (big) {
            code = dlf__fail(DLF_ERR_FORMAT, "%s: tensor \"%.60s\" has more than 2^31-1 elements%s", what, t->name,
                             elems ? "" : " before its 0 dim (a dlf tensor cannot have that shape)");
            goto fail_code;
        }
        want = elems * (uint64_t)dlf__st_dtypes[f->dtype].bytes;
        if (f->end - f->begin != want) {
            code = dlf__fail(DLF_ERR_FORMAT, "%s: tensor \"%.60s\" (%s, %llu elements) needs %llu bytes but data_offsets give %llu",
                             what, t->name, dlf__st_dtypes[f->dtype].name, (unsigned long long)elems,
                             (unsigned long long)want, (unsigned long long)(f->end - f->begin));
            goto fail_code;
        }
        t->ndim = f->ndim;
        for (d = 0; d < DLF_MAX_DIMS; d++) t->shape[d] = d < f->ndim ? f->shape[d] : 1;
        t->size = (int)elems;
        strcpy(t->dtype, dlf__st_dtypes[f->dtype].name);
    }
    code = dlf__st_check_layout(st, info, data_len, what);
    if (code != DLF_OK) goto fail_code;
    for (k = 0; k < st->n; k++) {  /* convert the data */
        dlf_st_tensor *t = &st->tensors[k];
        const unsigned char *src = b + 8 + hlen + info[k].begin;
        size_t i;
        t->data = (float *)dlf__malloc((size_t)t->size * sizeof(float), "safetensors data");
        if (!t->data) { code = DLF_ERR_NOMEM; goto fail_code; }
        for (i = 0; i < (size_t)t->size; i++) t->data[i] = dlf__st_read(src, info[k].dtype, i);
    }
    if (info) DLF_FREE(info);
    return DLF_OK;
fail:
    code = DLF_ERR_FORMAT;
fail_code:
    if (info) DLF_FREE(info);
    dlf_safetensors_free(st);
    return code;
}

/* Append to a growing byte buffer; returns 0 on OOM. */
typedef struct dlf__buf { unsigned char *p; size_t len, cap; int oom; } dlf__buf;

static void dlf__buf_put(dlf__buf *b, const void *src, size_t n)
{
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        unsigned char *p;
        while (cap < b->len + n) cap *= 2;
        p = (unsigned char *)DLF_REALLOC(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void dlf__buf_str(dlf__buf *b, const char *s) { dlf__buf_put(b, s, strlen(s)); }

/* A JSON string literal: quote, escape ", \ and control characters. */
static void dlf__buf_json_string(dlf__buf *b, const char *s)
{
    dlf__buf_str(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2];
            e[0] = '\\';
            e[1] = (char)c;
            dlf__buf_put(b, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            dlf__buf_str(b, e);
        } else {
            dlf__buf_put(b, &c, 1);
        }
    }
    dlf__buf_str(b, "\"");
}

DLFDEF int dlf_safetensors_serialize(const dlf_named_tensor *ts, int n, const char *const *meta,
                                     int n_meta, unsigned char **out, size_t *len)
{
    if (n > 0) DLF__NOT_NULL(ts, DLF_ERR_ARG);   /* no tensors (metadata only): ts may be NULL */
    DLF__NOT_NULL(out, DLF_ERR_ARG); DLF__NOT_NULL(len, DLF_ERR_ARG);
    dlf__buf h, all;
    uint64_t offset = 0, hlen;
    int i, d;
    char num[64];
    memset(&h, 0, sizeof h);
    memset(&all, 0, sizeof all);
    *out = NULL;
    *len = 0;
    for (i = 0; i < n; i++) {
        int k;
        for (k = 0; k < i; k++)
            if (strcmp(ts[i].name, ts[k].name) == 0)
                return dlf__fail(DLF_ERR_ARG, "dlf_safetensors_serialize: duplicate name \"%s\"", ts[i].name);
    }
    dlf__buf_str(&h, "{");
    if (n_meta > 0) {
        dlf__buf_str(&h, "\"__metadata__\":{");
        for (i = 0; i < n_meta; i++) {
            if (i) dlf__buf_str(&h, ",");
            dlf__buf_json_string(&h, meta[2 * i]);
            dlf__buf_str(&h, ":");
            dlf__buf_json_string(&h, meta[2 * i + 1]);
        }
        dlf__buf_str(&h, "}");
    }
    for (i = 0; i < n; i++) {
        const dlf_tensor *t = ts[i].t;
        if (i || n_meta > 0) dlf__buf_str(&h, ",");
        dlf__buf_json_string(&h, ts[i].name);
        dlf__buf_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, d ? ",%d" : "%d", t->shape[d]);
            dlf__buf_str(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                 (unsigned long long)(offset + (uint64_t)t->size * 4));
        dlf__buf_str(&h, num);
        offset += (uint64_t)t->size * 4;
    }
    dlf__buf_str(&h, "}");
    while (!h.oom && (8 + h.len) % 8) dlf__buf_str(&h, " ");  /* pad: data starts 8-byte aligned */
    if (h.oom) {
        if (h.p) DLF_FREE(h.p);
        return dlf__fail(DLF_ERR_NOMEM, "dlf_safetensors_serialize: out of memory");
    }
    hlen = h.len;
    for (i = 0; i < 8; i++) {
        unsigned char c = (unsigned char)(hlen >> (8 * i));
        dlf__buf_put(&all, &c, 1);
    }
    dlf__buf_put(&all, h.p, h.len);
    DLF_FREE(h.p);
    for (i = 0; i < n; i++) {  /* float32 little-endian, byte by byte: any host */
        const dlf_tensor *t = ts[i].t;
        int e;
        for (e = 0; e < t->size; e++) {
            uint32_t u;
            unsigned char c[4];
            memcpy(&u, &t->data[e], 4);
            c[0] = (unsigned char)u; c[1] = (unsigned char)(u >> 8);
            c[2] = (unsigned char)(u >> 16); c[3] = (unsigned char)(u >> 24);
            dlf__buf_put(&all, c, 4);
        }
    }
    if (all.oom) {
        if (all.p) DLF_FREE(all.p);
        return dlf__fail(DLF_ERR_NOMEM, "dlf_safetensors_serialize: out of memory");
    }
    *out = all.p;
    *len = all.len;
    return DLF_OK;
}

#ifndef DLF_NO_STDIO
/* Read a whole file into a new buffer; the size comes from seeking to the end. */
static int dlf__read_file(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long size;
    unsigned char *buf;
    *out = NULL;
    *len = 0;
    if (!f) return dlf__fail(DLF_ERR_IO, "%s: cannot open for reading", path);
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return dlf__fail(DLF_ERR_IO, "%s: cannot determine the file size", path);
    }
    buf = (unsigned char *)dlf__malloc((size_t)size + 1, path);
    if (!buf) { fclose(f); return DLF_ERR_NOMEM; }
    if (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        DLF_FREE(buf);
        return dlf__fail(DLF_ERR_IO, "%s: read error", path);
    }
    fclose(f);
    *out = buf;
    *len = (size_t)size;
    return DLF_OK;
}

DLFDEF int dlf_safetensors_load(dlf_safetensors *st, const char *path)
{
    DLF__NOT_NULL(st, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    unsigned char *buf;
    size_t len;
    int code = dlf__read_file(path, &buf, &len);
    memset(st, 0, sizeof *st);
    if (code != DLF_OK) return code;
    code = dlf_safetensors_parse(st, buf, len, path);
    DLF_FREE(buf);
    return code;
}

/* Saving a file (docs/checkpoints.md, "Saving"). On POSIX systems, with DLF__SAVE_LOCK
   (checkpoints):
     1. open path.lock (created once, never removed: removing a lock file lets two
        savers lock two different files) and flock it, waiting unless DLF_SAVE_NOWAIT;
        the lock is on its own file because a rename replaces path's inode, so a lock
        on path would not be seen by the next saver;
     2. remove every temporary of path in its directory: path.<digits>.<digits>.tmp
        and the path.tmp of older versions. A temporary is only ever created under the
        lock, so while we hold it any other one belongs to a save that was killed or
        failed to clean up;
     3. create path.<pid>.<n>.tmp with O_CREAT|O_EXCL (n counts up past a name in use),
        write the bytes, fsync, close;
     4. rename it over path (atomic), then fsync the directory so the rename is on the
        disk too;
     5. close path.lock, which releases the lock (the kernel releases it as well when
        the process dies, so a killed saver never blocks the next one).
   A failure before step 4 removes the temporary and leaves path as it was. Without
   DLF__SAVE_LOCK (pictures) steps 1, 2 and 5 are skipped. Where flock is not
   supported by the filesystem the save goes on unlocked and removes no temporaries.
   Windows and other systems: a unique temporary name (pid or time, and n), flushed
   (_commit on Windows), closed and moved over path (MoveFileEx with REPLACE_EXISTING
   on Windows, rename elsewhere); no lock, no cleanup, no directory sync.
   DLF_SAVE_HOOK(event, path), when defined before the implementation, is called at
   each step ("locked", "written", "renamed", "unlocking"); tests use it to see the
   order in which concurrent saves held the lock. */
#ifndef DLF_SAVE_HOOK
#define DLF_SAVE_HOOK(event, path) ((void)0)
#endif
#define DLF__SAVE_LOCK 0x100   /* internal flag: take path.lock, clean stale temporaries */
#define DLF__PATH_MAX 4096

#if defined(DLF__HAVE_FSYNC)
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/file.h>
#ifndef LOCK_EX  /* hidden on some systems under a strict _POSIX_C_SOURCE; same values on all */
#define LOCK_EX 2
#define LOCK_NB 4
extern int flock(int fd, int operation);
#endif

/* 1 if name (a directory entry) is a temporary of base: base.tmp or base.<d>.<d>.tmp */
static int dlf__is_tmp_of(const char *name, const char *base)
{
    size_t bl = strlen(base);
    const char *p;
    int group;
    if (strncmp(name, base, bl) != 0 || name[bl] != '.') return 0;
    p = name + bl + 1;
    if (strcmp(p, "tmp") == 0) return 1;
    for (group = 0; group < 2; group++) {
        if (*p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9') p++;
        if (*p++ != '.') return 0;
    }
    return strcmp(p, "tmp") == 0;
}

/* Remove the regular files in dir that are temporaries of base (we hold the lock). */
static void dlf__remove_stale_tmps(const char *dir, const char *base)
{
    char full[DLF__PATH_MAX + 256];
    struct dirent *e;
    struct stat sb;
    DIR *d = opendir(dir);
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (!dlf__is_tmp_of(e->d_name, base)) continue;
        if (strlen(dir) + strlen(e->d_name) + 2 > sizeof full) continue;
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode)) unlink(full);  /* unlink: never a directory */
    }
    closedir(d);
}

static int dlf__save_file(const char *path, const unsigned char *bytes, size_t len, int flags)
{
    char tmp[DLF__PATH_MAX + 64], lockp[DLF__PATH_MAX + 8], dir[DLF__PATH_MAX];
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    size_t plen = strlen(path), off = 0;
    int lfd = -1, fd = -1, ok = 1, err, r;
    unsigned long k;
    if (plen == 0 || plen >= DLF__PATH_MAX || *base == 0)
        return dlf__fail(DLF_ERR_ARG, "\"%s\": not a file path (empty, too long or ending in /)", path);
    if (!slash) strcpy(dir, ".");
    else if (slash == path) strcpy(dir, "/");
    else { memcpy(dir, path, (size_t)(slash - path)); dir[slash - path] = 0; }
    if (flags & DLF__SAVE_LOCK) {
        snprintf(lockp, sizeof lockp, "%s.lock", path);
        lfd = open(lockp, O_RDWR | O_CREAT, 0666);
        if (lfd < 0)
            return dlf__fail(DLF_ERR_IO, "%s: cannot open the lock file %s (%s); %s is unchanged",
                             path, lockp, strerror(errno), path);
        fcntl(lfd, F_SETFD, FD_CLOEXEC);
        while ((r = flock(lfd, LOCK_EX | ((flags & DLF_SAVE_NOWAIT) ? LOCK_NB : 0))) != 0 && errno == EINTR) {}
        if (r != 0) {
            err = errno;
            close(lfd);
            lfd = -1;
            if (err == EWOULDBLOCK || err == EAGAIN)
                return dlf__fail(DLF_ERR_BUSY, "%s: another save to this path holds %s; not waiting "
                                 "(DLF_SAVE_NOWAIT); %s is unchanged", path, lockp, path);
            if (err != ENOLCK && err != EINVAL && err != ENOSYS && err != EOPNOTSUPP)
                return dlf__fail(DLF_ERR_IO, "%s: cannot lock %s (%s); %s is unchanged",
                                 path, lockp, strerror(err), path);
            /* the filesystem has no locks: save unlocked, remove no temporaries */
        } else {
            DLF_SAVE_HOOK("locked", path);
            dlf__remove_stale_tmps(dir, base);
        }
    }
    for (k = 0;; k++) {
        snprintf(tmp, sizeof tmp, "%s.%ld.%lu.tmp", path, (long)getpid(), k);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd >= 0 || errno != EEXIST || k >= 1000) break;
    }
    if (fd < 0) {
        err = errno;
        if (lfd >= 0) close(lfd);
        return dlf__fail(DLF_ERR_IO, "%s: cannot create %s (%s); %s is unchanged", path, tmp, strerror(err), path);
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    err = 0;
    while (off < len) {
        size_t chunk = len - off < ((size_t)1 << 30) ? len - off : ((size_t)1 << 30);
        ssize_t w = write(fd, bytes + off, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { err = w < 0 ? errno : EIO; ok = 0; break; }
        off += (size_t)w;
    }
    if (ok && fsync(fd) != 0) { err = errno; ok = 0; }
    if (close(fd) != 0 && ok) { err = errno; ok = 0; }
    if (!ok) {
        unlink(tmp);
        if (lfd >= 0) close(lfd);
        return dlf__fail(DLF_ERR_IO, "%s: writing %s failed (%s); %s is unchanged", path, tmp, strerror(err), path);
    }
    DLF_SAVE_HOOK("written", path);
    if (rename(tmp, path) != 0) {
        err = errno;
        unlink(tmp);
        if (lfd >= 0) close(lfd);
        return dlf__fail(DLF_ERR_IO, "%s: cannot rename %s into place (%s); %s is unchanged",
                         path, tmp, strerror(err), path);
    }
    DLF_SAVE_HOOK("renamed", path);
    /* The rename is in the directory: sync it, or a power cut may bring the old name back.
       Some filesystems cannot sync a directory (EINVAL); that is no error. */
    err = 0;
    if ((fd = open(dir, O_RDONLY)) >= 0) {
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) err = errno;
        close(fd);
    }
    if (lfd >= 0) {
        DLF_SAVE_HOOK("unlocking", path);
        close(lfd);
    }
    if (err)
        return dlf__fail(DLF_ERR_IO, "%s: saved, but syncing its directory %s failed (%s): the new file "
                         "is in place but may not survive a power loss", path, dir, strerror(err));
    return DLF_OK;
}
#else
/* Windows and other systems: a unique temporary name, no lock (see above). */
#ifdef _WIN32
#include <process.h>
#define DLF__SAVE_ID() ((unsigned long)_getpid())
#else
#include <time.h>
#define DLF__SAVE_ID() ((unsigned long)time(NULL))
#endif
static int dlf__save_file(const char *path, const unsigned char *bytes, size_t len, int flags)
{
    char tmp[DLF__PATH_MAX + 64];
    FILE *f = NULL;
    unsigned long k;
    int ok;
    (void)flags;
    if (strlen(path) == 0 || strlen(path) >= DLF__PATH_MAX)
        return dlf__fail(DLF_ERR_ARG, "\"%s\": not a file path (empty or too long)", path);
    for (k = 0; k < 1000; k++) {  /* skip names in use (C99 has no exclusive create) */
        snprintf(tmp, sizeof tmp, "%s.%lu.%lu.tmp", path, DLF__SAVE_ID(), k);
        if ((f = fopen(tmp, "rb")) == NULL) break;
        fclose(f);
    }
    f = fopen(tmp, "wb");
    if (!f) return dlf__fail(DLF_ERR_IO, "%s: cannot open for writing", tmp);
    ok = fwrite(bytes, 1, len, f) == len;
    ok = fflush(f) == 0 && ok;
#if defined(_WIN32)
    ok = _commit(_fileno(f)) == 0 && ok;
#endif
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        remove(tmp);
        return dlf__fail(DLF_ERR_IO, "%s: write failed (disk full?); %s is unchanged", tmp, path);
    }
    DLF_SAVE_HOOK("written", path);
#ifdef _WIN32  /* replace path if it exists; return once the move is on the disk */
    if (!MoveFileExA(tmp, path, DLF__MOVEFILE_REPLACE_EXISTING | DLF__MOVEFILE_WRITE_THROUGH)) {
#else
    if (rename(tmp, path) != 0) {
#endif
        remove(tmp);
        return dlf__fail(DLF_ERR_IO, "%s: cannot rename the temporary file into place", path);
    }
    DLF_SAVE_HOOK("renamed", path);
    return DLF_OK;
}
#endif

/* Pictures: a unique temporary and a rename, no lock. */
static int dlf__write_atomic(const char *path, const unsigned char *bytes, size_t len)
{
    return dlf__save_file(path, bytes, len, 0);
}

DLFDEF int dlf_safetensors_save_ex(const char *path, const dlf_named_tensor *ts, int n,
                                   const char *const *meta, int n_meta, int flags)
{
    unsigned char *bytes;
    size_t len;
    int code;
    if (!path) { dlf__panic("dlf_safetensors_save: path is NULL"); return DLF_ERR_ARG; }
    if (flags & ~DLF_SAVE_NOWAIT) {
        dlf__panic("dlf_safetensors_save: flags %d has bits other than DLF_SAVE_NOWAIT", flags);
        return DLF_ERR_ARG;
    }
    code = dlf_safetensors_serialize(ts, n, meta, n_meta, &bytes, &len);
    if (code != DLF_OK) return code;
    code = dlf__save_file(path, bytes, len, flags | DLF__SAVE_LOCK);
    DLF_FREE(bytes);
    return code;
}

DLFDEF int dlf_safetensors_save(const char *path, const dlf_named_tensor *ts, int n,
                                const char *const *meta, int n_meta)
{
    DLF__NOT_NULL(path, DLF_ERR_ARG);
    if (n > 0) DLF__NOT_NULL(ts, DLF_ERR_ARG);
    return dlf_safetensors_save_ex(path, ts, n, meta, n_meta, 0);
}
#endif

/* Checkpoints: small growable arrays of owned names and metadata strings. */
static char *dlf__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = (char *)dlf__malloc(n, "a checkpoint string");
    if (d) memcpy(d, s, n);
    return d;
}

static int dlf__grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return 1;
    {
        int nc = *cap ? *cap * 2 : 16;
        void *q;
        while (nc < need) nc *= 2;
        q = DLF_REALLOC(*p, (size_t)nc * elem);
        if (!q) return dlf__fail(DLF_ERR_NOMEM, "checkpoint: out of memory"), 0;
        *p = q;
        *cap = nc;
    }
    return 1;
}

DLFDEF void dlf_ckpt_init(dlf_ckpt *c)
{
    DLF__NOT_NULL(c, );
    memset(c, 0, sizeof *c);
}

DLFDEF void dlf_ckpt_free(dlf_ckpt *c)
{
    DLF__NOT_NULL(c, );
    int i;
    for (i = 0; i < c->n_items; i++) DLF_FREE((void *)c->items[i].name);
    for (i = 0; i < 2 * c->n_meta; i++) DLF_FREE(c->meta[i]);
    for (i = 0; i < c->n_owned; i++) dlf_tensor_free(c->owned[i]);
    if (c->items) DLF_FREE(c->items);
    if (c->meta) DLF_FREE(c->meta);
    if (c->owned) DLF_FREE(c->owned);
    dlf_safetensors_free(&c->file);
    memset(c, 0, sizeof *c);
}

DLFDEF int dlf_ckpt_add_tensor(dlf_ckpt *c, const char *name, const dlf_tensor *t)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(name, DLF_ERR_ARG); DLF__NOT_NULL(t, DLF_ERR_ARG);
    char *n;
    if (!dlf__grow((void **)&c->items, &c->cap_items, c->n_items + 1, sizeof *c->items)) return DLF_ERR_NOMEM;
    n = dlf__strdup(name);
    if (!n) return DLF_ERR_NOMEM;
    c->items[c->n_items].name = n;
    c->items[c->n_items].t = t;
    c->n_items++;
    return DLF_OK;
}

DLFDEF int dlf_ckpt_set_meta(dlf_ckpt *c, const char *key, const char *value)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(key, DLF_ERR_ARG); DLF__NOT_NULL(value, DLF_ERR_ARG);
    char *k, *v;
    int i;
    for (i = 0; i < c->n_meta; i++) {
        if (strcmp(c->meta[2 * i], key) == 0) {  /* replace */
            v = dlf__strdup(value);
            if (!v) return DLF_ERR_NOMEM;
            DLF_FREE(c->meta[2 * i + 1]);
            c->meta[2 * i + 1] = v;
            return DLF_OK;
        }
    }
    if (!dlf__grow((void **)&c->meta, &c->cap_meta, 2 * c->n_meta + 2, sizeof(char *))) return DLF_ERR_NOMEM;
    k = dlf__strdup(key);
    v = dlf__strdup(value);
    if (!k || !v) {
        if (k) DLF_FREE(k);
        if (v) DLF_FREE(v);
        return DLF_ERR_NOMEM;
    }
    c->meta[2 * c->n_meta] = k;
    c->meta[2 * c->n_meta + 1] = v;
    c->n_meta++;
    return DLF_OK;
}

DLFDEF int dlf_ckpt_set_int(dlf_ckpt *c, const char *key, long long v)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(key, DLF_ERR_ARG);
    char s[32];
    snprintf(s, sizeof s, "%lld", v);
    return dlf_ckpt_set_meta(c, key, s);
}

/* %a prints the exact binary value in hex, so the float reads back bit for bit. */
DLFDEF int dlf_ckpt_set_float(dlf_ckpt *c, const char *key, double v)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(key, DLF_ERR_ARG);
    char s[48];
    snprintf(s, sizeof s, "%a", v);
    return dlf_ckpt_set_meta(c, key, s);
}

/* A tensor made by the checkpoint itself (optimizer buffers, loader order). */
static dlf_tensor *dlf__ckpt_own(dlf_ckpt *c, int ndim, const int *shape)
{
    dlf_tensor *t;
    if (!dlf__grow((void **)&c->owned, &c->cap_owned, c->n_owned + 1, sizeof *c->owned)) return NULL;
    t = dlf_tensor_new(ndim, shape);
    if (t) c->owned[c->n_owned++] = t;
    return t;
}

DLFDEF int dlf_ckpt_add_params(dlf_ckpt *c, dlf_tensor *const *params, const char *const *names, int n)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(params, DLF_ERR_ARG);
    DLF__NOT_NULL(names, DLF_ERR_ARG);
    int i, rc;
    for (i = 0; i < n; i++)
        if ((rc = dlf_ckpt_add_tensor(c, names[i], params[i])) != DLF_OK) return rc;
    return DLF_OK;
}

DLFDEF int dlf_ckpt_add_param_list(dlf_ckpt *c, const dlf_params *pl)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(pl, DLF_ERR_ARG);
    int i, rc;
    for (i = 0; i < pl->n; i++)
        if ((rc = dlf_ckpt_add_tensor(c, pl->items[i].name, pl->items[i].t)) != DLF_OK) return rc;
    return DLF_OK;
}

/* The name parameter i goes by in a checkpoint; NULL (with the error set) if none. */
static const char *dlf__optim_param_name(const dlf_optim *o, const char *const *names, int i)
{
    const char *nm = names ? names[i] : o->params[i].name;
    if (!nm || !nm[0]) {
        dlf__fail(DLF_ERR_ARG, "checkpoint: optimizer parameter %d has no name (pass names, or create the "
                  "optimizer with dlf_optim_create_groups)", i);
        return NULL;
    }
    return nm;
}

DLFDEF int dlf_ckpt_add_optim(dlf_ckpt *c, const dlf_optim *o, const char *const *names)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(o, DLF_ERR_ARG);
    char key[256];
    int i, k, rc;
    if ((rc = dlf_ckpt_set_meta(c, "optim.kind", dlf_optim_kind_name(o->kind))) != DLF_OK) return rc;
    if ((rc = dlf_ckpt_set_int(c, "optim.steps", o->steps)) != DLF_OK) return rc;
    for (i = 0; i < o->n_params; i++) {
        const dlf_optim_param *q = &o->params[i];
        const char *nm = dlf__optim_param_name(o, names, i);
        dlf_tensor *st;
        if (!nm) return DLF_ERR_ARG;
        if (q->step == 0) continue;  /* as PyTorch: no state until the first step */
        st = dlf__ckpt_own(c, 0, NULL);
        if (!st) return DLF_ERR_NOMEM;
        st->data[0] = (float)q->step;  /* exact below 2^24 steps */
        snprintf(key, sizeof key, "optim.step.%s", nm);
        if ((rc = dlf_ckpt_add_tensor(c, key, st)) != DLF_OK) return rc;
        for (k = 0; k < DLF_OPTIM_MAX_STATE; k++) {
            dlf_tensor *b;
            if (!q->state[k]) continue;
            b = dlf__ckpt_own(c, q->p->ndim, q->p->shape);
            if (!b) return DLF_ERR_NOMEM;
            memcpy(b->data, q->state[k], (size_t)b->size * sizeof(float));
            snprintf(key, sizeof key, "optim.%s.%s", dlf_optim_state_name(o->kind, k), nm);
            if ((rc = dlf_ckpt_add_tensor(c, key, b)) != DLF_OK) return rc;
        }
    }
    return DLF_OK;
}

/* "s0 s1 s2 s3 has_spare spare" with the spare float in %a: exact. */
DLFDEF int dlf_ckpt_add_rng(dlf_ckpt *c, const char *key, const dlf_rng *r)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(key, DLF_ERR_ARG); DLF__NOT_NULL(r, DLF_ERR_ARG);
    char k[192], v[160];
    snprintf(k, sizeof k, "rng.%s", key);
    snprintf(v, sizeof v, "%lu %lu %lu %lu %d %a", (unsigned long)r->s[0], (unsigned long)r->s[1],
             (unsigned long)r->s[2], (unsigned long)r->s[3], r->has_spare, (double)r->spare);
    return dlf_ckpt_set_meta(c, k, v);
}

DLFDEF int dlf_ckpt_add_loader(dlf_ckpt *c, const char *key, const dlf_loader *l)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(key, DLF_ERR_ARG); DLF__NOT_NULL(l, DLF_ERR_ARG);
    char k[160];
    int i, rc, n = l->ds->n;
    dlf_tensor *order = dlf__ckpt_own(c, 1, &n);
    if (!order) return DLF_ERR_NOMEM;
    for (i = 0; i < n; i++) order->data[i] = (float)l->order[i];  /* exact below 2^24 items */
    snprintf(k, sizeof k, "loader.%s.order", key);
    if ((rc = dlf_ckpt_add_tensor(c, k, order)) != DLF_OK) return rc;
    snprintf(k, sizeof k, "loader.%s.pos", key);
    if ((rc = dlf_ckpt_set_int(c, k, l->pos)) != DLF_OK) return rc;
    snprintf(k, sizeof k, "loader.%s.epoch", key);
    if ((rc = dlf_ckpt_set_int(c, k, l->epoch)) != DLF_OK) return rc;
    snprintf(k, sizeof k, "loader.%s", key);
    return dlf_ckpt_add_rng(c, k, &l->rng);
}

#ifndef DLF_NO_STDIO
DLFDEF int dlf_ckpt_save_ex(const dlf_ckpt *c, const char *path, int flags)
{
    if (!c) { dlf__panic("dlf_ckpt_save: c is NULL"); return DLF_ERR_ARG; }
    return dlf_safetensors_save_ex(path, c->items, c->n_items, (const char *const *)c->meta, c->n_meta, flags);
}

DLFDEF int dlf_ckpt_save(const dlf_ckpt *c, const char *path)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    return dlf_ckpt_save_ex(c, path, 0);
}

DLFDEF int dlf_ckpt_load(dlf_ckpt *c, const char *path)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    dlf_ckpt_free(c);
    return dlf_safetensors_load(&c->file, path);
}
#endif

DLFDEF const char *dlf_ckpt_get_meta(const dlf_ckpt *c, const char *key)
{
    DLF__NOT_NULL(c, NULL); DLF__NOT_NULL(key, NULL);
    return dlf_safetensors_meta(&c->file, key);
}

DLFDEF int dlf_ckpt_get_int(const dlf_ckpt *c, const char *key, long long *v)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(key, DLF_ERR_ARG); DLF__NOT_NULL(v, DLF_ERR_ARG);
    const char *s = dlf_ckpt_get_meta(c, key);
    char *end;
    if (!s) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: no metadata \"%s\"", key);
    *v = strtoll(s, &end, 10);
    if (end == s || *end) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: metadata \"%s\" = \"%s\" is not an integer", key, s);
    return DLF_OK;
}

DLFDEF int dlf_ckpt_get_float(const dlf_ckpt *c, const char *key, double *v)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(key, DLF_ERR_ARG); DLF__NOT_NULL(v, DLF_ERR_ARG);
    const char *s = dlf_ckpt_get_meta(c, key);
    char *end;
    if (!s) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: no metadata \"%s\"", key);
    *v = strtod(s, &end);
    if (end == s || *end) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: metadata \"%s\" = \"%s\" is not a number", key, s);
    return DLF_OK;
}

/* "v0,v1,..." in %a, exact */
static int dlf__ckpt_set_list(dlf_ckpt *c, const char *key, const float *v, int n)
{
    size_t cap = (size_t)n * 32 + 1, used = 0;
    char *s = (char *)dlf__malloc(cap, "checkpoint metadata");
    int i, rc;
    if (!s) return DLF_ERR_NOMEM;
    s[0] = 0;
    for (i = 0; i < n; i++) {
        int w = snprintf(s + used, cap - used, "%s%a", i ? "," : "", (double)v[i]);
        if (w < 0 || (size_t)w >= cap - used) { DLF_FREE(s); return dlf__fail(DLF_ERR_ARG, "checkpoint: %s too long", key); }
        used += (size_t)w;
    }
    rc = dlf_ckpt_set_meta(c, key, s);
    DLF_FREE(s);
    return rc;
}

static int dlf__ckpt_get_list(const dlf_ckpt *c, const char *key, float *v, int cap, int *n)
{
    const char *s = dlf_ckpt_get_meta(c, key), *p;
    char *end;
    int k = 0;
    if (!s) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: no metadata \"%s\"", key);
    for (p = s; *p; p = end + (*end == ',')) {
        double x = strtod(p, &end);
        if (end == p || (*end != ',' && *end != 0) || (*end == ',' && end[1] == 0))
            return dlf__fail(DLF_ERR_FORMAT, "checkpoint: metadata \"%s\" is not a list of numbers at value %d", key, k);
        if (k >= cap)
            return dlf__fail(DLF_ERR_ARG, "checkpoint: \"%s\" holds more than the %d values the caller has room for",
                             key, cap);
        v[k++] = (float)x;
    }
    *n = k;
    return DLF_OK;
}

DLFDEF int dlf_ckpt_add_norm(dlf_ckpt *c, const char *key, const float *mean, const float *std, int n, float divisor)
{
    char k[160];
    int rc;
    if (!c) { dlf__panic("dlf_ckpt_add_norm: c is NULL"); return DLF_ERR_ARG; }
    if (!key) { dlf__panic("dlf_ckpt_add_norm: key is NULL"); return DLF_ERR_ARG; }
    if (!mean) { dlf__panic("dlf_ckpt_add_norm: mean is NULL"); return DLF_ERR_ARG; }
    if (!std) { dlf__panic("dlf_ckpt_add_norm: std is NULL"); return DLF_ERR_ARG; }
    if (n <= 0) { dlf__panic("dlf_ckpt_add_norm: n %d is not positive", n); return DLF_ERR_ARG; }
    snprintf(k, sizeof k, "norm.%s.mean", key);
    if ((rc = dlf__ckpt_set_list(c, k, mean, n)) != DLF_OK) return rc;
    snprintf(k, sizeof k, "norm.%s.std", key);
    if ((rc = dlf__ckpt_set_list(c, k, std, n)) != DLF_OK) return rc;
    snprintf(k, sizeof k, "norm.%s.divisor", key);
    return dlf_ckpt_set_float(c, k, divisor);
}

DLFDEF int dlf_ckpt_add_loader_norm(dlf_ckpt *c, const char *key, const dlf_loader *l)
{
    if (!l) { dlf__panic("dlf_ckpt_add_loader_norm: l is NULL"); return DLF_ERR_ARG; }
    return dlf_ckpt_add_norm(c, key, l->norm_mean, l->norm_std, l->channels, l->ds->features ? 1.0f : 255.0f);
}

DLFDEF int dlf_ckpt_get_norm(const dlf_ckpt *c, const char *key, float *mean, float *std, int cap, int *n,
                             float *divisor)
{
    char k[160];
    int rc, n_mean = 0, n_std = 0;
    double dv = 0.0;
    if (!c) { dlf__panic("dlf_ckpt_get_norm: c is NULL"); return DLF_ERR_ARG; }
    if (!key) { dlf__panic("dlf_ckpt_get_norm: key is NULL"); return DLF_ERR_ARG; }
    if (!mean) { dlf__panic("dlf_ckpt_get_norm: mean is NULL"); return DLF_ERR_ARG; }
    if (!std) { dlf__panic("dlf_ckpt_get_norm: std is NULL"); return DLF_ERR_ARG; }
    if (!n) { dlf__panic("dlf_ckpt_get_norm: n is NULL"); return DLF_ERR_ARG; }
    *n = 0;
    snprintf(k, sizeof k, "norm.%s.mean", key);
    if ((rc = dlf__ckpt_get_list(c, k, mean, cap, &n_mean)) != DLF_OK) return rc;
    snprintf(k, sizeof k, "norm.%s.std", key);
    if ((rc = dlf__ckpt_get_list(c, k, std, cap, &n_std)) != DLF_OK) return rc;
    if (n_mean != n_std)
        return dlf__fail(DLF_ERR_FORMAT, "checkpoint: norm.%s has %d means but %d stds", key, n_mean, n_std);
    snprintf(k, sizeof k, "norm.%s.divisor", key);
    if ((rc = dlf_ckpt_get_float(c, k, &dv)) != DLF_OK) return rc;
    if (!(dv > 0.0))
        return dlf__fail(DLF_ERR_FORMAT, "checkpoint: norm.%s.divisor %g is not positive", key, dv);
    if (divisor) *divisor = (float)dv;
    *n = n_mean;
    return DLF_OK;
}

DLFDEF int dlf_ckpt_get_tensor(const dlf_ckpt *c, const char *name, dlf_tensor *dst)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(name, DLF_ERR_ARG); DLF__NOT_NULL(dst, DLF_ERR_ARG);
    const dlf_st_tensor *t = dlf_safetensors_find(&c->file, name);
    char s[64];
    int d, same;
    if (!t) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: no tensor \"%s\"", name);
    same = t->ndim == dst->ndim;
    for (d = 0; same && d < t->ndim; d++) same = t->shape[d] == dst->shape[d];
    if (!same) {
        char f[64];
        dlf_tensor view;
        memset(&view, 0, sizeof view);
        view.ndim = t->ndim;
        memcpy(view.shape, t->shape, sizeof view.shape);
        return dlf__fail(DLF_ERR_FORMAT, "checkpoint: tensor \"%s\" has shape %s in the file but %s in the model",
                         name, dlf_shape_str(&view, f, sizeof f), dlf_shape_str(dst, s, sizeof s));
    }
    memcpy(dst->data, t->data, (size_t)t->size * sizeof(float));
    dlf__written(dst);
    return DLF_OK;
}

DLFDEF int dlf_ckpt_get_params(const dlf_ckpt *c, dlf_tensor *const *params, const char *const *names, int n)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(params, DLF_ERR_ARG);
    DLF__NOT_NULL(names, DLF_ERR_ARG);
    int i, rc;
    for (i = 0; i < n; i++)
        if ((rc = dlf_ckpt_get_tensor(c, names[i], params[i])) != DLF_OK) return rc;
    return DLF_OK;
}

DLFDEF int dlf_ckpt_get_param_list(const dlf_ckpt *c, const dlf_params *pl)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(pl, DLF_ERR_ARG);
    int i, rc;
    for (i = 0; i < pl->n; i++)
        if ((rc = dlf_ckpt_get_tensor(c, pl->items[i].name, pl->items[i].t)) != DLF_OK) return rc;
    return DLF_OK;
}

DLFDEF int dlf_ckpt_get_param_list_matching(const dlf_ckpt *c, const dlf_params *pl, dlf_transfer_report *rep)
{
    int i;
    size_t used = 0;
    if (!c || !pl || !rep) {
        dlf__panic("dlf_ckpt_get_param_list_matching: %s is NULL", !c ? "c" : !pl ? "pl" : "rep");
        return DLF_ERR_ARG;
    }
    memset(rep, 0, sizeof *rep);
    for (i = 0; i < pl->n; i++) {
        const dlf_param *p = &pl->items[i];
        const dlf_st_tensor *f = dlf_safetensors_find(&c->file, p->name);
        char note[160];
        int d, same = f && f->ndim == p->t->ndim;
        for (d = 0; same && d < f->ndim; d++) same = f->shape[d] == p->t->shape[d];
        if (same) {
            memcpy(p->t->data, f->data, (size_t)f->size * sizeof(float));
            dlf__written(p->t);
            rep->n_loaded++;
            continue;
        }
        if (f) {
            dlf_tensor view;
            char sf[64], sm[64];
            memset(&view, 0, sizeof view);
            view.ndim = f->ndim;
            memcpy(view.shape, f->shape, sizeof view.shape);
            snprintf(note, sizeof note, "%s%s: file %s, model %s", used ? "; " : "", p->name,
                     dlf_shape_str(&view, sf, sizeof sf), dlf_shape_str(p->t, sm, sizeof sm));
            rep->n_mismatched++;
        } else {
            snprintf(note, sizeof note, "%s%s: not in the file", used ? "; " : "", p->name);
            rep->n_missing++;
        }
        if (used + strlen(note) < sizeof rep->text - 4) {
            memcpy(rep->text + used, note, strlen(note) + 1);
            used += strlen(note);
        } else if (used < sizeof rep->text - 4) {
            memcpy(rep->text + used, "...", 4);
            used = sizeof rep->text;   /* full */
        }
    }
    if (rep->n_loaded == 0 && pl->n > 0)
        return dlf__fail(DLF_ERR_FORMAT, "checkpoint: not one of the model's %d tensors is in the file by name and shape "
                         "(%s)", pl->n, rep->text);
    return DLF_OK;
}

/* Everything is checked before anything is copied: a file that does not fit leaves
   the optimizer as it was. Files written before "optim.kind" existed hold SGD state. */
DLFDEF int dlf_ckpt_get_optim(const dlf_ckpt *c, dlf_optim *o, const char *const *names)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(o, DLF_ERR_ARG);
    char key[256];
    const char *kind = dlf_ckpt_get_meta(c, "optim.kind");
    long long steps;
    int i, k, rc, pass;
    if (!kind) kind = "sgd";
    if (dlf_optim_kind_from_name(kind) != (int)o->kind)
        return dlf__fail(DLF_ERR_FORMAT, "checkpoint: it holds %s state, the optimizer is %s", kind,
                         dlf_optim_kind_name(o->kind));
    if ((rc = dlf_ckpt_get_int(c, "optim.steps", &steps)) != DLF_OK) return rc;
    for (pass = 0; pass < 2; pass++)  /* pass 0 checks, pass 1 copies */
        for (i = 0; i < o->n_params; i++) {
            dlf_optim_param *q = &o->params[i];
            const char *nm = dlf__optim_param_name(o, names, i);
            const dlf_st_tensor *st, *sv[DLF_OPTIM_MAX_STATE];
            int step = 0, any = 0;
            if (!nm) return DLF_ERR_ARG;
            snprintf(key, sizeof key, "optim.step.%s", nm);
            st = dlf_safetensors_find(&c->file, key);
            if (st && (st->size != 1 || !(st->data[0] >= 0.0f && st->data[0] < 16777216.0f)))
                return dlf__fail(DLF_ERR_FORMAT, "checkpoint: \"%s\" is not a step count", key);
            for (k = 0; k < DLF_OPTIM_MAX_STATE; k++) {
                int d, same;
                sv[k] = NULL;
                if (!q->state[k] || !dlf_optim_state_name(o->kind, k)) continue;
                snprintf(key, sizeof key, "optim.%s.%s", dlf_optim_state_name(o->kind, k), nm);
                sv[k] = dlf_safetensors_find(&c->file, key);
                if (!sv[k]) continue;
                any = 1;
                same = sv[k]->ndim == q->p->ndim;
                for (d = 0; same && d < sv[k]->ndim; d++) same = sv[k]->shape[d] == q->p->shape[d];
                if (!same)
                    return dlf__fail(DLF_ERR_FORMAT, "checkpoint: \"%s\" does not have the shape of parameter %s", key, nm);
            }
            step = st ? (int)st->data[0] : any ? (steps > 0 ? (int)steps : 1) : 0;
            for (k = 0; k < DLF_OPTIM_MAX_STATE; k++)
                if (q->state[k] && step > 0 && !sv[k])
                    return dlf__fail(DLF_ERR_FORMAT, "checkpoint: parameter %s has taken %d steps but no \"optim.%s.%s\"",
                                     nm, step, dlf_optim_state_name(o->kind, k), nm);
            if (pass == 0) continue;
            q->step = step;
            for (k = 0; k < DLF_OPTIM_MAX_STATE; k++)
                if (q->state[k]) {
                    if (sv[k]) memcpy(q->state[k], sv[k]->data, (size_t)q->p->size * sizeof(float));
                    else memset(q->state[k], 0, (size_t)q->p->size * sizeof(float));
                }
        }
    o->steps = (int)steps;
    return DLF_OK;
}

DLFDEF int dlf_ckpt_get_rng(const dlf_ckpt *c, const char *key, dlf_rng *r)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(key, DLF_ERR_ARG); DLF__NOT_NULL(r, DLF_ERR_ARG);
    char k[192];
    const char *s;
    unsigned long v[4];
    int spare_flag;
    double spare;
    snprintf(k, sizeof k, "rng.%s", key);
    s = dlf_ckpt_get_meta(c, k);
    if (!s) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: no metadata \"%s\"", k);
    if (sscanf(s, "%lu %lu %lu %lu %d %la", &v[0], &v[1], &v[2], &v[3], &spare_flag, &spare) != 6)
        return dlf__fail(DLF_ERR_FORMAT, "checkpoint: \"%s\" = \"%s\" is not an rng state", k, s);
    r->s[0] = (uint32_t)v[0];
    r->s[1] = (uint32_t)v[1];
    r->s[2] = (uint32_t)v[2];
    r->s[3] = (uint32_t)v[3];
    r->has_spare = spare_flag;
    r->spare = (float)spare;
    return DLF_OK;
}

DLFDEF int dlf_ckpt_get_loader(const dlf_ckpt *c, const char *key, dlf_loader *l)
{
    DLF__NOT_NULL(c, DLF_ERR_ARG); DLF__NOT_NULL(key, DLF_ERR_ARG); DLF__NOT_NULL(l, DLF_ERR_ARG);
    char k[160];
    const dlf_st_tensor *order;
    long long pos, epoch;
    int i, rc;
    snprintf(k, sizeof k, "loader.%s.order", key);
    order = dlf_safetensors_find(&c->file, k);
    if (!order) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: no tensor \"%s\"", k);
    if (order->size != l->ds->n)
        return dlf__fail(DLF_ERR_FORMAT, "checkpoint: \"%s\" has %d items, the dataset %d", k, order->size, l->ds->n);
    snprintf(k, sizeof k, "loader.%s.pos", key);
    if ((rc = dlf_ckpt_get_int(c, k, &pos)) != DLF_OK) return rc;
    snprintf(k, sizeof k, "loader.%s.epoch", key);
    if ((rc = dlf_ckpt_get_int(c, k, &epoch)) != DLF_OK) return rc;
    if (pos < 0 || pos > l->ds->n) return dlf__fail(DLF_ERR_FORMAT, "checkpoint: loader position %lld is out of range", pos);
    for (i = 0; i < l->ds->n; i++) {  /* check the float before converting: NaN or huge is UB in a cast */
        float v = order->data[i];
        if (!(v >= 0.0f && v < (float)l->ds->n) || v != (float)(int)v)
            return dlf__fail(DLF_ERR_FORMAT, "checkpoint: loader order entry %d (%g) is not an item of the dataset", i, (double)v);
        l->order[i] = (int)v;
    }
    l->pos = (int)pos;
    l->epoch = (int)epoch;
    snprintf(k, sizeof k, "loader.%s", key);
    return dlf_ckpt_get_rng(c, k, &l->rng);
}

#ifndef DLF_NO_STDIO
/* The checkpoint name of each optimizer parameter: the one it keeps, else the name
   pl gives the same tensor (an optimizer made by dlf_optim_create keeps none).
   A DLF_MALLOC array the caller frees; NULL on OOM. */
static const char **dlf__optim_names_in(const dlf_params *pl, const dlf_optim *o)
{
    const char **names = (const char **)dlf__malloc((size_t)(o->n_params ? o->n_params : 1) * sizeof(char *),
                                                    "optimizer parameter names");
    int i, j;
    if (!names) return NULL;
    for (i = 0; i < o->n_params; i++) {
        names[i] = o->params[i].name[0] ? o->params[i].name : NULL;
        for (j = 0; !names[i] && j < pl->n; j++)
            if (pl->items[j].t == o->params[i].p) names[i] = pl->items[j].name;
    }
    return names;
}

DLFDEF int dlf_ckpt_save_training(const char *path, const dlf_params *pl, const dlf_optim *opt,
                                  const char *const *meta, int n_meta)
{
    DLF__NOT_NULL(path, DLF_ERR_ARG); DLF__NOT_NULL(pl, DLF_ERR_ARG);
    dlf_ckpt c;
    int i, rc;
    const char **names = opt ? dlf__optim_names_in(pl, opt) : NULL;
    if (opt && !names) return DLF_ERR_NOMEM;
    dlf_ckpt_init(&c);
    rc = dlf_ckpt_add_param_list(&c, pl);
    if (rc == DLF_OK && opt) rc = dlf_ckpt_add_optim(&c, opt, names);
    for (i = 0; rc == DLF_OK && i < n_meta; i++) rc = dlf_ckpt_set_meta(&c, meta[2 * i], meta[2 * i + 1]);
    if (rc == DLF_OK) rc = dlf_ckpt_save(&c, path);
    dlf_ckpt_free(&c);
    if (names) DLF_FREE((void *)names);
    return rc;
}

DLFDEF int dlf_ckpt_load_training(const char *path, const dlf_params *pl, dlf_optim *opt)
{
    DLF__NOT_NULL(path, DLF_ERR_ARG); DLF__NOT_NULL(pl, DLF_ERR_ARG);
    dlf_ckpt c;
    int rc;
    const char **names = opt ? dlf__optim_names_in(pl, opt) : NULL;
    if (opt && !names) return DLF_ERR_NOMEM;
    dlf_ckpt_init(&c);
    rc = dlf_ckpt_load(&c, path);
    if (rc == DLF_OK) rc = dlf_ckpt_get_param_list(&c, pl);
    if (rc == DLF_OK && opt && dlf_ckpt_get_meta(&c, "optim.steps")) rc = dlf_ckpt_get_optim(&c, opt, names);
    if (rc != DLF_OK && strncmp(dlf_last_error(), path, strlen(path)) != 0) {
        char msg[512];  /* make sure the message names the file */
        snprintf(msg, sizeof msg, "%s", dlf_last_error());
        dlf__fail(rc, "%s: %s", path, msg);
    }
    dlf_ckpt_free(&c);
    if (names) DLF_FREE((void *)names);
    return rc;
}
#endif

// >>stage16_pictures (implementation) ---------------------------------------------
// telemetry
DLFDEF dlf_telemetry *dlf_telemetry_create(const dlf_telemetry_cfg *cfg)
{
    dlf_telemetry *tl;
    dlf_telemetry_cfg c;
    size_t cells;
    memset(&c, 0, sizeof c);
    if (cfg) c = *cfg;
    if (c.max_steps <= 0) c.max_steps = 1000;
    if (c.max_points <= 0) c.max_points = 16;
    if (c.bins <= 0) c.bins = 40;
    if (!(c.hi > c.lo)) { c.lo = 0.0f; c.hi = 10.0f; }
    if (c.zero_eps <= 0.0f) c.zero_eps = 2.0f * (c.hi - c.lo) / (float)c.bins;
    if (c.every <= 0) c.every = 1;
    cells = (size_t)c.max_steps * (size_t)c.max_points;
    tl = (dlf_telemetry *)dlf__malloc(sizeof *tl, "dlf_telemetry_create");
    if (!tl) return NULL;
    memset(tl, 0, sizeof *tl);
    tl->cfg = c;
    tl->mean = (float *)dlf__malloc(cells * sizeof(float), "dlf_telemetry_create: mean");
    tl->std = (float *)dlf__malloc(cells * sizeof(float), "dlf_telemetry_create: std");
    tl->near_zero = (float *)dlf__malloc(cells * sizeof(float), "dlf_telemetry_create: near_zero");
    tl->hist = (float *)dlf__malloc(cells * (size_t)c.bins * sizeof(float), "dlf_telemetry_create: hist");
    tl->names = (char (*)[DLF_TELEMETRY_NAME])dlf__malloc((size_t)c.max_points * DLF_TELEMETRY_NAME,
                                                          "dlf_telemetry_create: names");
    if (!tl->mean || !tl->std || !tl->near_zero || !tl->hist || !tl->names) {
        dlf_telemetry_free(tl);
        return NULL;
    }
    dlf_telemetry_clear(tl);
    return tl;
}

DLFDEF void dlf_telemetry_free(dlf_telemetry *tl)
{
    if (!tl) return;
    if (tl->mean) DLF_FREE(tl->mean);
    if (tl->std) DLF_FREE(tl->std);
    if (tl->near_zero) DLF_FREE(tl->near_zero);
    if (tl->hist) DLF_FREE(tl->hist);
    if (tl->names) DLF_FREE(tl->names);
    DLF_FREE(tl);
}

/* Statistics of steps a point was not recorded at stay NaN, so their lines break. */
DLFDEF void dlf_telemetry_clear(dlf_telemetry *tl)
{
    DLF__NOT_NULL(tl, );
    size_t i, cells = (size_t)tl->cfg.max_steps * (size_t)tl->cfg.max_points;
    float nan = (float)NAN;
    for (i = 0; i < cells; i++) tl->mean[i] = tl->std[i] = tl->near_zero[i] = nan;
    memset(tl->hist, 0, cells * (size_t)tl->cfg.bins * sizeof(float));
    memset(tl->names, 0, (size_t)tl->cfg.max_points * DLF_TELEMETRY_NAME);
    tl->n_steps = tl->n_points = tl->cursor = tl->open = 0;
    tl->seen = tl->dropped = 0;
}

DLFDEF void dlf_telemetry_attach(dlf_tape *t, dlf_telemetry *tl)
{
    DLF__NOT_NULL(t, );
    t->telemetry = tl;
    if (tl) tl->open = 0;
}

/* The next point of this step: its slot, or -1 when the step is skipped (`every`) or
   there is no room (counted in dropped). A step opens at the first record after a tape
   reset. */
static int dlf__telemetry_slot(dlf_telemetry *tl)
{
    int pt;
    if (!tl->open) {
        tl->cursor = 0;
        if (tl->seen++ % tl->cfg.every != 0) tl->open = 3;  /* not one to keep */
        else if (tl->n_steps < tl->cfg.max_steps) { tl->n_steps++; tl->open = 1; }
        else tl->open = 2;   /* recording, but the arrays are full */
    }
    if (tl->open == 3) return -1;
    pt = tl->cursor++;
    if (tl->open == 2 || pt >= tl->cfg.max_points) { tl->dropped++; return -1; }
    if (pt >= tl->n_points) tl->n_points = pt + 1;
    return pt;
}

/* mean, unbiased std (torch.Tensor.std), the fraction with |a| <= zero_eps, and the
   histogram as torch.histc counts it (its CPU kernel, in float): bin
   (a - lo) * bins / (hi - lo), truncated, a == hi in the last bin, values outside
   [lo, hi] (and NaN) not counted. Two passes in double, so the std does not lose digits
   to cancellation; four running sums break the chain of dependent adds (their order is
   fixed: the result depends on the data only), and four sub-histograms keep a run of
   equal values (a ReLU's zeros) from waiting on one counter. */
static void dlf__telemetry_stats(dlf_telemetry *tl, int pt, const dlf_tensor *x)
{
    size_t cell = (size_t)(tl->n_steps - 1) * (size_t)tl->cfg.max_points + (size_t)pt;
    float *h = tl->hist + cell * (size_t)tl->cfg.bins;
    const float *v = x->data;
    float lo = tl->cfg.lo, hi = tl->cfg.hi, w = hi - lo, eps = tl->cfg.zero_eps, fnb;
    int i, k, n = x->size, n4 = n - n % 4, nb = tl->cfg.bins;
    double s[4] = {0.0, 0.0, 0.0, 0.0}, q[4] = {0.0, 0.0, 0.0, 0.0}, mean, ss;
    long nz = 0;
    unsigned cnt[4][257];    /* the extra bin takes the values outside [lo, hi] */
    fnb = (float)nb;
    for (i = 0; i < n4; i += 4)
        for (k = 0; k < 4; k++) s[k] += v[i + k];
    for (; i < n; i++) s[0] += v[i];
    mean = n > 0 ? ((s[0] + s[1]) + (s[2] + s[3])) / n : 0.0;
    for (i = 0; i < n4; i += 4)
        for (k = 0; k < 4; k++) {
            double d = v[i + k] - mean;
            q[k] += d * d;
        }
    for (; i < n; i++) {
        double d = v[i] - mean;
        q[0] += d * d;
    }
    ss = (q[0] + q[1]) + (q[2] + q[3]);
    for (i = 0; i < n; i++) nz += fabsf(v[i]) <= eps;
    if (nb <= 256) {
        /* in chunks: first every value's bin, without a branch on the value (the compiler
           can vectorize it; activations fall inside and outside at random, and a
           mispredicted branch per value would cost more than the rest together), then
           the counting */
        int idx[256], j, m;
        for (k = 0; k < 4; k++) memset(cnt[k], 0, sizeof(unsigned) * (size_t)(nb + 1));
        for (i = 0; i < n; i += m) {
            m = n - i < 256 ? n - i : 256;
            for (j = 0; j < m; j++) {
                float a = v[i + j], t = (a - lo) * fnb / w;
                int inside = (a >= lo) & (a <= hi), b = (int)(inside ? t : 0.0f);
                b = b < nb ? b : nb - 1;
                idx[j] = inside ? b : nb;
            }
            for (j = 0; j + 4 <= m; j += 4) {
                cnt[0][idx[j]]++;
                cnt[1][idx[j + 1]]++;
                cnt[2][idx[j + 2]]++;
                cnt[3][idx[j + 3]]++;
            }
            for (; j < m; j++) cnt[0][idx[j]]++;
        }
        for (k = 0; k < nb; k++) h[k] = (float)cnt[0][k] + (float)cnt[1][k] + (float)cnt[2][k] + (float)cnt[3][k];
    } else {
        for (k = 0; k < nb; k++) h[k] = 0.0f;
        for (i = 0; i < n; i++) {
            float a = v[i];
            if (a >= lo && a <= hi) {
                int b = (int)((a - lo) * fnb / w);
                h[b < nb ? b : nb - 1] += 1.0f;
            }
        }
    }
    tl->mean[cell] = (float)mean;
    tl->std[cell] = (float)(n > 1 ? sqrt(ss / (n - 1)) : 0.0);
    tl->near_zero[cell] = n > 0 ? (float)((double)nz / n) : 0.0f;
}

DLFDEF void dlf_telemetry_record(dlf_telemetry *tl, const char *name, const dlf_tensor *x)
{
    int pt;
    if (!tl || !x) return;
    pt = dlf__telemetry_slot(tl);
    if (pt < 0) return;
    if (!tl->names[pt][0]) snprintf(tl->names[pt], DLF_TELEMETRY_NAME, "%s", name ? name : "?");
    dlf__telemetry_stats(tl, pt, x);
}

DLFDEF void dlf_telemetry_mark(dlf_tape *t, const char *name, const dlf_tensor *x)
{
    DLF__NOT_NULL(t, ); DLF__NOT_NULL(x, );
    if (t->telemetry && t->training) dlf_telemetry_record(t->telemetry, name, x);
}

/* Called by dlf_seq_forward_n after layer `layer` when the tape has telemetry. */
static void dlf__telemetry_seq_hook(dlf_tape *t, int layer, int kind, const dlf_tensor *x)
{
    dlf_telemetry *tl = t->telemetry;
    int pt;
    if (!t->training) return;
    if (tl->cfg.kinds_mask && !(tl->cfg.kinds_mask & (1ul << kind))) return;
    pt = dlf__telemetry_slot(tl);
    if (pt < 0) return;
    if (!tl->names[pt][0])
        snprintf(tl->names[pt], DLF_TELEMETRY_NAME, "%d %s", layer, dlf_layer_kind_name((dlf_layer_kind)kind));
    dlf__telemetry_stats(tl, pt, x);
}

DLFDEF const float *dlf_telemetry_hist(const dlf_telemetry *tl, int step, int point)
{
    DLF__NOT_NULL(tl, NULL);
    if (step < 0 || step >= tl->n_steps || point < 0 || point >= tl->n_points) return NULL;
    return tl->hist + ((size_t)step * (size_t)tl->cfg.max_points + (size_t)point) * (size_t)tl->cfg.bins;
}

#ifndef DLF_NO_STDIO
// SVG
/* finite and not NaN; written without isfinite so the check survives any flags */
static int dlf__finite(double v) { return fabs(v) <= 1.7976931348623157e308; }

/* The picture is built in a growing string, then written with dlf__write_atomic. */
typedef struct dlf__sb {
    char *p;
    size_t n, cap;
    int oom;
} dlf__sb;

static void dlf__sb_printf(dlf__sb *b, const char *fmt, ...)
{
    va_list ap;
    int k;
    if (b->oom) return;
    for (;;) {
        size_t room = b->cap - b->n;
        va_start(ap, fmt);
        k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->p && (size_t)k < room) { b->n += (size_t)k; return; }
        {
            size_t cap = b->cap ? b->cap : 4096;
            char *np;
            while (cap < b->n + (size_t)k + 1) cap *= 2;
            np = (char *)DLF_REALLOC(b->p, cap);
            if (!np) { b->oom = 1; return; }
            b->p = np;
            b->cap = cap;
        }
    }
}

/* Text content and attribute values: & < > " ' become entities; control characters
   (not allowed in XML 1.0) become spaces. */
static void dlf__sb_text(dlf__sb *b, const char *s)
{
    if (!s) return;
    for (; *s; s++) {
        switch (*s) {
        case '&': dlf__sb_printf(b, "&amp;"); break;
        case '<': dlf__sb_printf(b, "&lt;"); break;
        case '>': dlf__sb_printf(b, "&gt;"); break;
        case '"': dlf__sb_printf(b, "&quot;"); break;
        case '\'': dlf__sb_printf(b, "&apos;"); break;
        default:
            dlf__sb_printf(b, "%c", (unsigned char)*s < 0x20 ? ' ' : *s);
        }
    }
}

static void dlf__svg_label(dlf__sb *b, double x, double y, const char *anchor, int size,
                           const char *extra, const char *s)
{
    dlf__sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\"%s%s>", x, y, anchor,
                   size, extra ? " " : "", extra ? extra : "");
    dlf__sb_text(b, s);
    dlf__sb_printf(b, "</text>\n");
}

static int dlf__svg_finish(dlf__sb *b, const char *path)
{
    int rc;
    dlf__sb_printf(b, "</svg>\n");
    if (b->oom) {
        if (b->p) DLF_FREE(b->p);
        return dlf__fail(DLF_ERR_NOMEM, "%s: out of memory building the SVG", path);
    }
    rc = dlf__write_atomic(path, (const unsigned char *)b->p, b->n);
    DLF_FREE(b->p);
    return rc;
}

static void dlf__svg_begin(dlf__sb *b, double w, double h)
{
    memset(b, 0, sizeof *b);
    dlf__sb_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                   "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
                   "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", w, h, w, h);
}

/* Tableau's ten colors, matplotlib's default cycle. */
static const char *const dlf__palette[10] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"
};

/* An axis maps [lo, hi] (log10 of the values on a log axis) to pixels; its ticks are
   1, 2 or 5 times a power of ten apart (Heckbert's "nice numbers"), or whole decades. */
typedef struct dlf__axis {
    double lo, hi;           /* the range, in axis units (log10 for a log axis) */
    double step;             /* tick spacing in axis units */
    int log;
} dlf__axis;

static double dlf__nice(double x)
{
    double e = floor(log10(x)), f = x / pow(10.0, e);
    return (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * pow(10.0, e);
}

static void dlf__axis_fit(dlf__axis *a, double lo, double hi, int log_axis)
{
    a->log = log_axis;
    if (!(lo <= hi)) { lo = log_axis ? 1.0 : 0.0; hi = log_axis ? 10.0 : 1.0; }  /* no point to show */
    if (log_axis) {
        lo = floor(log10(lo));
        hi = ceil(log10(hi));
        if (hi <= lo) hi = lo + 1.0;
        a->step = hi - lo > 8.0 ? ceil((hi - lo) / 8.0) : 1.0;
        a->lo = lo;
        a->hi = hi;
        return;
    }
    if (hi - lo <= 1e-12 * (fabs(lo) + fabs(hi))) {  /* a flat line: widen around it */
        double d = fabs(lo) > 0.0 ? fabs(lo) * 0.1 : 1.0;
        lo -= d;
        hi += d;
    }
    a->step = dlf__nice((hi - lo) / 5.0);
    a->lo = floor(lo / a->step) * a->step;
    a->hi = ceil(hi / a->step) * a->step;
}

static double dlf__axis_unit(const dlf__axis *a, double v) { return a->log ? log10(v) : v; }

static void dlf__tick_text(char *buf, size_t n, const dlf__axis *a, double u)
{
    if (a->log) snprintf(buf, n, "1e%d", (int)floor(u + 0.5));
    else {
        if (fabs(u) < a->step * 1e-9) u = 0.0;
        snprintf(buf, n, "%g", u);
    }
}

/* The frame of one panel: box, ticks with labels and grid lines, title, axis labels.
   px0..px1, py0..py1: the plot area in pixels (py0 at the top). */
static void dlf__svg_frame(dlf__sb *b, const dlf__axis *ax, const dlf__axis *ay, double px0, double px1,
                           double py0, double py1, const char *title, const char *xlabel,
                           const char *ylabel, int grid)
{
    double u;
    char t[48];
    for (u = ax->lo; u <= ax->hi + ax->step * 1e-6; u += ax->step) {
        double x = px0 + (u - ax->lo) / (ax->hi - ax->lo) * (px1 - px0);
        if (grid) dlf__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n",
                                 x, py0, x, py1);
        dlf__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, py1, x, py1 + 5);
        dlf__tick_text(t, sizeof t, ax, u);
        dlf__svg_label(b, x, py1 + 18, "middle", 11, NULL, t);
    }
    for (u = ay->lo; u <= ay->hi + ay->step * 1e-6; u += ay->step) {
        double y = py1 - (u - ay->lo) / (ay->hi - ay->lo) * (py1 - py0);
        if (grid) dlf__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n",
                                 px0, y, px1, y);
        dlf__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", px0 - 5, y, px0, y);
        dlf__tick_text(t, sizeof t, ay, u);
        dlf__svg_label(b, px0 - 8, y + 4, "end", 11, NULL, t);
    }
    /* minor ticks at 2..9 times each decade of a log axis spanning up to 6 decades */
    if (ax->log && ax->step == 1.0 && ax->hi - ax->lo <= 6.0)
        for (u = ax->lo; u < ax->hi; u += 1.0) {
            int m;
            for (m = 2; m <= 9; m++) {
                double x = px0 + (u + log10((double)m) - ax->lo) / (ax->hi - ax->lo) * (px1 - px0);
                dlf__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
                               x, py1, x, py1 + 3);
            }
        }
    if (ay->log && ay->step == 1.0 && ay->hi - ay->lo <= 6.0)
        for (u = ay->lo; u < ay->hi; u += 1.0) {
            int m;
            for (m = 2; m <= 9; m++) {
                double y = py1 - (u + log10((double)m) - ay->lo) / (ay->hi - ay->lo) * (py1 - py0);
                dlf__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
                               px0 - 3, y, px0, y);
            }
        }
    dlf__sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n",
                   px0, py0, px1 - px0, py1 - py0);
    if (title) dlf__svg_label(b, (px0 + px1) / 2, py0 - 12, "middle", 14, "font-weight=\"bold\"", title);
    if (xlabel) dlf__svg_label(b, (px0 + px1) / 2, py1 + 38, "middle", 12, NULL, xlabel);
    if (ylabel) {
        char rot[96];
        double yx = px0 - 58, yy = (py0 + py1) / 2;
        snprintf(rot, sizeof rot, "transform=\"rotate(-90 %.1f %.1f)\"", yx, yy);
        dlf__svg_label(b, yx, yy, "middle", 12, rot, ylabel);
    }
}

static int dlf__point_ok(const dlf__axis *a, double v)
{
    return dlf__finite(v) && (!a->log || v > 0.0);
}

#define DLF__PANEL_W 560.0
#define DLF__PANEL_H 360.0
#define DLF__TITLE_H 30.0

/* One line plot in the panel whose top-left corner is (x0, y0). */
static void dlf__svg_panel(dlf__sb *b, double x0, double y0, const dlf_plot_cfg *cfg, const dlf_series *s, int ns)
{
    double px0 = x0 + 80, px1 = x0 + DLF__PANEL_W - 20, py0 = y0 + 34, py1 = y0 + DLF__PANEL_H - 50;
    double xlo = HUGE_VAL, xhi = -HUGE_VAL, ylo = HUGE_VAL, yhi = -HUGE_VAL;
    dlf_plot_cfg none;
    dlf__axis ax, ay;
    int i, j, n_named = 0;
    if (!cfg) { memset(&none, 0, sizeof none); cfg = &none; }
    ax.log = cfg->logx;
    ay.log = cfg->logy;
    for (i = 0; i < ns; i++)
        for (j = 0; j < s[i].n; j++) {
            double x = s[i].x ? s[i].x[j] : j, y = s[i].y[j];
            if (!dlf__point_ok(&ax, x) || !dlf__point_ok(&ay, y)) continue;
            if (x < xlo) xlo = x;
            if (x > xhi) xhi = x;
            if (y < ylo) ylo = y;
            if (y > yhi) yhi = y;
        }
    if (cfg->has_mark && dlf__point_ok(&ax, cfg->mark_x)) {
        if (cfg->mark_x < xlo) xlo = cfg->mark_x;
        if (cfg->mark_x > xhi) xhi = cfg->mark_x;
    }
    dlf__axis_fit(&ax, xlo, xhi, cfg->logx);
    dlf__axis_fit(&ay, ylo, yhi, cfg->logy);
    dlf__svg_frame(b, &ax, &ay, px0, px1, py0, py1, cfg->title, cfg->xlabel, cfg->ylabel, 1);
    for (i = 0; i < ns; i++) {
        int open = 0;
        for (j = 0; j < s[i].n; j++) {
            double x = s[i].x ? s[i].x[j] : j, y = s[i].y[j], sx, sy;
            if (!dlf__point_ok(&ax, x) || !dlf__point_ok(&ay, y)) {  /* a gap: end the line here */
                if (open) dlf__sb_printf(b, "\"/>\n");
                open = 0;
                continue;
            }
            sx = px0 + (dlf__axis_unit(&ax, x) - ax.lo) / (ax.hi - ax.lo) * (px1 - px0);
            sy = py1 - (dlf__axis_unit(&ay, y) - ay.lo) / (ay.hi - ay.lo) * (py1 - py0);
            if (!open) dlf__sb_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                                      dlf__palette[i % 10]);
            dlf__sb_printf(b, "%s%.2f,%.2f", open ? " " : "", sx, sy);
            open = 1;
        }
        if (open) dlf__sb_printf(b, "\"/>\n");
        if (s[i].name) n_named++;
    }
    if (cfg->has_mark && dlf__point_ok(&ax, cfg->mark_x)) {
        double sx = px0 + (dlf__axis_unit(&ax, cfg->mark_x) - ax.lo) / (ax.hi - ax.lo) * (px1 - px0);
        dlf__sb_printf(b, "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#d62728\" "
                       "stroke-dasharray=\"6,4\"/>\n", sx, py0, sx, py1);
        if (cfg->mark_label) dlf__svg_label(b, sx + 4, py0 + 14, "start", 11, "fill=\"#d62728\"", cfg->mark_label);
    }
    if (ns > 1 && n_named > 0) {  /* the legend, top right inside the plot */
        double lw, lx, ly = py0 + 8;
        size_t longest = 4;
        for (i = 0; i < ns; i++)
            if (s[i].name && strlen(s[i].name) > longest) longest = strlen(s[i].name);
        lw = 42.0 + 6.4 * (double)longest;   /* about 6.4 px a character at 11 px */
        if (lw > px1 - px0 - 16) lw = px1 - px0 - 16;
        lx = px1 - lw - 8;
        dlf__sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" "
                       "fill-opacity=\"0.85\" stroke=\"#999\"/>\n", lx, ly, lw, 8.0 + 16.0 * ns);
        for (i = 0; i < ns; i++) {
            double yy = ly + 14 + 16.0 * i;
            dlf__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                           lx + 6, yy - 4, lx + 26, yy - 4, dlf__palette[i % 10]);
            dlf__svg_label(b, lx + 32, yy, "start", 11, NULL, s[i].name ? s[i].name : "");
        }
    }
}

DLFDEF int dlf_svg_lines_grid(const char *path, const char *title, const dlf_plot_cfg *cfgs,
                              const dlf_series *const *series, const int *n_series, int n_panels, int grid_cols)
{
    DLF__NOT_NULL(path, DLF_ERR_ARG); DLF__NOT_NULL(series, DLF_ERR_ARG);
    DLF__NOT_NULL(n_series, DLF_ERR_ARG);
    dlf__sb b;
    int i, rows;
    double top = title ? DLF__TITLE_H : 0.0;
    if (n_panels < 1) return dlf__fail(DLF_ERR_ARG, "%s: no panels to draw", path);
    if (grid_cols < 1 || grid_cols > n_panels) grid_cols = n_panels;
    rows = (n_panels + grid_cols - 1) / grid_cols;
    dlf__svg_begin(&b, DLF__PANEL_W * grid_cols, top + DLF__PANEL_H * rows);
    if (title) dlf__svg_label(&b, DLF__PANEL_W * grid_cols / 2, 22, "middle", 16, "font-weight=\"bold\"", title);
    for (i = 0; i < n_panels; i++)
        dlf__svg_panel(&b, DLF__PANEL_W * (i % grid_cols), top + DLF__PANEL_H * (i / grid_cols),
                       cfgs ? &cfgs[i] : NULL, series[i], n_series[i]);
    return dlf__svg_finish(&b, path);
}

DLFDEF int dlf_svg_lines(const char *path, const dlf_plot_cfg *cfg, const dlf_series *s, int n_series)
{
    DLF__NOT_NULL(path, DLF_ERR_ARG);   /* cfg NULL: the defaults */
    dlf__sb b;
    if (n_series < 0 || (n_series > 0 && !s)) return dlf__fail(DLF_ERR_ARG, "%s: bad series list", path);
    dlf__svg_begin(&b, DLF__PANEL_W, DLF__PANEL_H);
    dlf__svg_panel(&b, 0, 0, cfg, s, n_series);
    return dlf__svg_finish(&b, path);
}

/* Heat maps go in as a PNG inside the SVG (a data: URI), one pixel per cell, scaled
   up without smoothing: a rectangle per cell would make files 20 times larger. The
   PNG is the simplest valid one: one byte per pixel indexing a 256-color palette
   (viridis, grey for NaN), filter 0, zlib with stored (uncompressed) deflate blocks
   (RFC 1950/1951), each chunk with its CRC-32. */
static uint32_t dlf__crc32(uint32_t crc, const unsigned char *p, size_t n)
{
    size_t i;
    int k;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++) crc = (crc >> 1) ^ ((crc & 1u) ? 0xEDB88320u : 0u);
    }
    return ~crc;
}

static void dlf__put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);  p[3] = (unsigned char)v;
}

/* viridis at nine points, linearly interpolated between them */
static void dlf__viridis(double t, unsigned char *rgb)
{
    static const unsigned char c[9][3] = {
        {68, 1, 84}, {71, 44, 122}, {59, 81, 139}, {44, 113, 142}, {33, 144, 141},
        {39, 173, 129}, {92, 200, 99}, {170, 220, 50}, {253, 231, 37}};
    double f;
    int i, k;
    if (!(t >= 0.0)) t = 0.0;
    if (t > 1.0) t = 1.0;
    f = t * 8.0;
    i = (int)f;
    if (i > 7) i = 7;
    f -= i;
    for (k = 0; k < 3; k++) rgb[k] = (unsigned char)(c[i][k] + (c[i + 1][k] - c[i][k]) * f + 0.5);
}

/* Append the base64 of a PNG of the image (NaN cells grey) to b. */
static void dlf__sb_png(dlf__sb *b, const float *v, int rows, int cols, double vmin, double vmax)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t raw_n = (size_t)rows * (1 + (size_t)cols), nblocks = (raw_n + 65534) / 65535;
    size_t idat_n = 2 + raw_n + 5 * nblocks + 4, png_n = 8 + 25 + 780 + 12 + idat_n + 12, i, o, at;
    unsigned char *png = (unsigned char *)DLF_MALLOC(png_n), *raw, *q;
    uint32_t s1 = 1, s2 = 0;
    int r, c, k;
    if (!png) { b->oom = 1; return; }
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    dlf__put_be32(png + 8, 13);                 /* IHDR: 8-bit palette indices */
    memcpy(png + 12, "IHDR", 4);
    dlf__put_be32(png + 16, (uint32_t)cols);
    dlf__put_be32(png + 20, (uint32_t)rows);
    png[24] = 8; png[25] = 3; png[26] = 0; png[27] = 0; png[28] = 0;
    dlf__put_be32(png + 29, dlf__crc32(0, png + 12, 17));
    dlf__put_be32(png + 33, 768);               /* PLTE: 255 viridis levels, then grey for NaN */
    memcpy(png + 37, "PLTE", 4);
    for (k = 0; k < 255; k++) dlf__viridis(k / 254.0, png + 41 + 3 * k);
    png[41 + 765] = png[41 + 766] = png[41 + 767] = 160;
    dlf__put_be32(png + 809, dlf__crc32(0, png + 37, 772));
    at = 813;                                   /* IDAT */
    dlf__put_be32(png + at, (uint32_t)idat_n);
    memcpy(png + at + 4, "IDAT", 4);
    q = png + at + 8;
    *q++ = 0x78; *q++ = 0x01;                   /* zlib header: deflate, 32K window */
    raw = q + 5 * nblocks;                      /* build the scanlines after the block headers' room */
    o = 0;
    for (r = 0; r < rows; r++) {
        raw[o++] = 0;                           /* filter: none */
        for (c = 0; c < cols; c++) {
            double x = v[(size_t)r * cols + c], f = vmax > vmin ? (x - vmin) / (vmax - vmin) : 0.5;
            if (!(f >= 0.0)) f = 0.0;           /* (an overflowing range gives NaN) */
            if (f > 1.0) f = 1.0;
            raw[o++] = (unsigned char)(dlf__finite(x) ? (int)(f * 254.0 + 0.5) : 255);
        }
    }
    for (i = 0; i < raw_n; i++) {              /* adler-32 of the raw bytes */
        s1 = (s1 + raw[i]) % 65521u;
        s2 = (s2 + s1) % 65521u;
    }
    {   /* move each 65535-byte piece behind its 5-byte stored-block header */
        unsigned char *dst = q;
        size_t left = raw_n, from = 0;
        for (i = 0; i < nblocks; i++) {
            size_t len = left > 65535 ? 65535 : left;
            left -= len;
            memmove(dst + 5, raw + from, len); /* dst + 5 <= raw + from: moves only backwards */
            dst[0] = left == 0 ? 1 : 0;
            dst[1] = (unsigned char)len; dst[2] = (unsigned char)(len >> 8);
            dst[3] = (unsigned char)~len; dst[4] = (unsigned char)(~len >> 8);
            dst += 5 + len;
            from += len;
        }
        dlf__put_be32(dst, (s2 << 16) | s1);
    }
    dlf__put_be32(png + at + 8 + idat_n, dlf__crc32(0, png + at + 4, 4 + idat_n));
    o = at + 12 + idat_n;
    dlf__put_be32(png + o, 0);
    memcpy(png + o + 4, "IEND", 4);
    dlf__put_be32(png + o + 8, dlf__crc32(0, png + o + 4, 4));
    for (i = 0; i < png_n; i += 3) {
        uint32_t w = (uint32_t)png[i] << 16 | (i + 1 < png_n ? (uint32_t)png[i + 1] << 8 : 0) |
                     (i + 2 < png_n ? png[i + 2] : 0);
        dlf__sb_printf(b, "%c%c%c%c", b64[w >> 18], b64[(w >> 12) & 63],
                       i + 1 < png_n ? b64[(w >> 6) & 63] : '=', i + 2 < png_n ? b64[w & 63] : '=');
    }
    DLF_FREE(png);
}

/* One heat map panel: the image stretched over the plot area, x axis xlo..xhi over the
   columns, y axis from ytop (row 0) to ybot (the last row), a color bar on the right. */
static void dlf__svg_image_panel(dlf__sb *b, double x0, double y0, const char *title, const char *xlabel,
                                 const char *ylabel, const float *v, int rows, int cols,
                                 double xlo, double xhi, double ytop, double ybot)
{
    double px0 = x0 + 80, px1 = x0 + DLF__PANEL_W - 70, py0 = y0 + 34, py1 = y0 + DLF__PANEL_H - 50;
    double vmin = HUGE_VAL, vmax = -HUGE_VAL, u;
    dlf__axis ax, ay;
    char t[48];
    size_t i, n = (size_t)rows * (size_t)cols;
    int k;
    for (i = 0; i < n; i++)
        if (dlf__finite(v[i])) {
            if (v[i] < vmin) vmin = v[i];
            if (v[i] > vmax) vmax = v[i];
        }
    if (!(vmin <= vmax)) vmin = vmax = 0.0;
    ax.log = ay.log = 0;
    ax.lo = xlo; ax.hi = xhi; ax.step = dlf__nice((xhi - xlo) / 5.0);
    /* the y axis runs bottom (ybot) to top (ytop) in value; ticks at nice values inside */
    ay.lo = ybot < ytop ? ybot : ytop; ay.hi = ybot < ytop ? ytop : ybot; ay.step = dlf__nice((ay.hi - ay.lo) / 5.0);
    dlf__sb_printf(b, "<image x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" preserveAspectRatio=\"none\" "
                   "image-rendering=\"optimizeSpeed\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,",
                   px0, py0, px1 - px0, py1 - py0);
    dlf__sb_png(b, v, rows, cols, vmin, vmax);
    dlf__sb_printf(b, "\"/>\n");
    for (u = ceil(ax.lo / ax.step) * ax.step; u <= ax.hi + ax.step * 1e-6; u += ax.step) {
        double x = px0 + (u - ax.lo) / (ax.hi - ax.lo) * (px1 - px0);
        dlf__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, py1, x, py1 + 5);
        dlf__tick_text(t, sizeof t, &ax, u);
        dlf__svg_label(b, x, py1 + 18, "middle", 11, NULL, t);
    }
    for (u = ceil(ay.lo / ay.step) * ay.step; u <= ay.hi + ay.step * 1e-6; u += ay.step) {
        /* value u sits at fraction (u - ytop) / (ybot - ytop) down from the top */
        double y = py0 + (u - ytop) / (ybot - ytop) * (py1 - py0);
        dlf__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", px0 - 5, y, px0, y);
        dlf__tick_text(t, sizeof t, &ay, u);
        dlf__svg_label(b, px0 - 8, y + 4, "end", 11, NULL, t);
    }
    dlf__sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n",
                   px0, py0, px1 - px0, py1 - py0);
    if (title) dlf__svg_label(b, (px0 + px1) / 2, py0 - 12, "middle", 14, "font-weight=\"bold\"", title);
    if (xlabel) dlf__svg_label(b, (px0 + px1) / 2, py1 + 38, "middle", 12, NULL, xlabel);
    if (ylabel) {
        char rot[96];
        snprintf(rot, sizeof rot, "transform=\"rotate(-90 %.1f %.1f)\"", px0 - 58, (py0 + py1) / 2);
        dlf__svg_label(b, px0 - 58, (py0 + py1) / 2, "middle", 12, rot, ylabel);
    }
    for (k = 0; k < 16; k++) {   /* the color bar, vmax at the top */
        unsigned char rgb[3];
        double h = (py1 - py0) / 16;
        dlf__viridis(1.0 - (k + 0.5) / 16.0, rgb);
        dlf__sb_printf(b, "<rect x=\"%.1f\" y=\"%.2f\" width=\"12\" height=\"%.2f\" fill=\"#%02x%02x%02x\"/>\n",
                       px1 + 10, py0 + k * h, h + 0.3, rgb[0], rgb[1], rgb[2]);
    }
    snprintf(t, sizeof t, "%.3g", vmax);
    dlf__svg_label(b, px1 + 26, py0 + 9, "start", 10, NULL, t);
    snprintf(t, sizeof t, "%.3g", vmin);
    dlf__svg_label(b, px1 + 26, py1, "start", 10, NULL, t);
}

static int dlf__image_args(const char *path, const void *v, int rows, int cols)
{
    if (!v || rows < 1 || cols < 1 || (double)rows * cols > 1e8)
        return dlf__fail(DLF_ERR_ARG, "%s: bad image (%d x %d)", path, rows, cols);
    return DLF_OK;
}

DLFDEF int dlf_svg_image(const char *path, const char *title, const char *xlabel, const char *ylabel,
                         const float *v, int rows, int cols)
{
    DLF__NOT_NULL(path, DLF_ERR_ARG); DLF__NOT_NULL(v, DLF_ERR_ARG);
    dlf__sb b;
    int rc = dlf__image_args(path, v, rows, cols);
    if (rc != DLF_OK) return rc;
    dlf__svg_begin(&b, DLF__PANEL_W, DLF__PANEL_H);
    dlf__svg_image_panel(&b, 0, 0, title, xlabel, ylabel, v, rows, cols, 0.0, cols, 0.0, rows);
    return dlf__svg_finish(&b, path);
}

DLFDEF int dlf_svg_image_grid(const char *path, const char *title, const char *const *titles,
                              const char *xlabel, const char *ylabel, const float *const *v,
                              int rows, int cols, int n_images, int grid_cols)
{
    DLF__NOT_NULL(path, DLF_ERR_ARG); DLF__NOT_NULL(v, DLF_ERR_ARG);
    dlf__sb b;
    int i, grid_rows, rc;
    double top = title ? DLF__TITLE_H : 0.0;
    if (n_images < 1) return dlf__fail(DLF_ERR_ARG, "%s: no images to draw", path);
    for (i = 0; i < n_images; i++)
        if ((rc = dlf__image_args(path, v[i], rows, cols)) != DLF_OK) return rc;
    if (grid_cols < 1 || grid_cols > n_images) grid_cols = n_images;
    grid_rows = (n_images + grid_cols - 1) / grid_cols;
    dlf__svg_begin(&b, DLF__PANEL_W * grid_cols, top + DLF__PANEL_H * grid_rows);
    if (title) dlf__svg_label(&b, DLF__PANEL_W * grid_cols / 2, 22, "middle", 16, "font-weight=\"bold\"", title);
    for (i = 0; i < n_images; i++)
        dlf__svg_image_panel(&b, DLF__PANEL_W * (i % grid_cols), top + DLF__PANEL_H * (i / grid_cols),
                             titles ? titles[i] : NULL, xlabel, ylabel, v[i], rows, cols, 0.0, cols, 0.0, rows);
    return dlf__svg_finish(&b, path);
}

DLFDEF int dlf_svg_schedule(const char *path, const char *title, const dlf_schedule *lr,
                            const dlf_schedule *mom, long total)
{
    DLF__NOT_NULL(path, DLF_ERR_ARG); DLF__NOT_NULL(lr, DLF_ERR_ARG);
    float *y;
    dlf_series s[2];
    const dlf_series *ps[2];
    dlf_plot_cfg cfg[2];
    int ns[2] = {1, 1}, rc;
    long i;
    if (total < 1 || total > 100000000L) return dlf__fail(DLF_ERR_ARG, "%s: total %ld steps", path, total);
    y = (float *)dlf__malloc(2 * (size_t)total * sizeof(float), "dlf_svg_schedule");
    if (!y) return DLF_ERR_NOMEM;
    for (i = 0; i < total; i++) {
        y[i] = (float)dlf_schedule_at(lr, i, total);
        if (mom) y[total + i] = (float)dlf_schedule_at(mom, i, total);
    }
    memset(s, 0, sizeof s);
    memset(cfg, 0, sizeof cfg);
    s[0].name = "lr"; s[0].y = y; s[0].n = (int)total;
    s[1].name = "momentum"; s[1].y = y + total; s[1].n = (int)total;
    cfg[0].title = "learning rate"; cfg[0].xlabel = "step"; cfg[0].ylabel = "lr";
    cfg[1].title = "momentum"; cfg[1].xlabel = "step"; cfg[1].ylabel = "momentum";
    ps[0] = &s[0];
    ps[1] = &s[1];
    rc = dlf_svg_lines_grid(path, title, cfg, ps, ns, mom ? 2 : 1, 2);
    DLF_FREE(y);
    return rc;
}

/* Telemetry pictures: each point's values over the steps, copied out of the strided
   arrays (a plot may allocate; recording may not). */
static int dlf__telemetry_lines(const dlf_telemetry *tl, const char *path, const char *title,
                                const float *const *fields, const char *const *ylabels, int n_fields)
{
    int P = tl->n_points, S = tl->n_steps, f, p, st, rc, ns[2];
    float *y, *x;
    dlf_series *s;
    const dlf_series *ps[2];
    dlf_plot_cfg cfg[2];
    if (P < 1 || S < 1) return dlf__fail(DLF_ERR_ARG, "%s: the telemetry has recorded nothing", path);
    y = (float *)dlf__malloc(((size_t)n_fields * P + 1) * S * sizeof(float), "telemetry plot");
    s = (dlf_series *)dlf__malloc((size_t)n_fields * P * sizeof(dlf_series), "telemetry plot");
    if (!y || !s) {
        if (y) DLF_FREE(y);
        if (s) DLF_FREE(s);
        return DLF_ERR_NOMEM;
    }
    x = y + (size_t)n_fields * P * S;      /* the training step of each row */
    for (st = 0; st < S; st++) x[st] = (float)((long)st * tl->cfg.every);
    memset(cfg, 0, sizeof cfg);
    for (f = 0; f < n_fields; f++) {
        for (p = 0; p < P; p++) {
            float *row = y + ((size_t)f * P + p) * S;
            for (st = 0; st < S; st++) row[st] = fields[f][(size_t)st * tl->cfg.max_points + p];
            s[f * P + p].name = tl->names[p];
            s[f * P + p].x = x;
            s[f * P + p].y = row;
            s[f * P + p].n = S;
        }
        ps[f] = s + f * P;
        ns[f] = P;
        cfg[f].title = ylabels[f];
        cfg[f].xlabel = "step";
        cfg[f].ylabel = ylabels[f];
    }
    rc = dlf_svg_lines_grid(path, title, cfg, ps, ns, n_fields, 2);
    DLF_FREE(y);
    DLF_FREE(s);
    return rc;
}

DLFDEF int dlf_telemetry_plot_stats(const dlf_telemetry *tl, const char *path, const char *title)
{
    DLF__NOT_NULL(tl, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    const float *fields[2];
    static const char *const labels[2] = {"activation mean", "activation std"};
    fields[0] = tl->mean;
    fields[1] = tl->std;
    return dlf__telemetry_lines(tl, path, title, fields, labels, 2);
}

DLFDEF int dlf_telemetry_plot_near_zero(const dlf_telemetry *tl, const char *path, const char *title)
{
    DLF__NOT_NULL(tl, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    const float *fields[1];
    static const char *const labels[1] = {"fraction near zero"};
    fields[0] = tl->near_zero;
    return dlf__telemetry_lines(tl, path, title, fields, labels, 1);
}

/* The course's get_hist: per point, log(1 + count) with bins as rows (lo at the bottom)
   and steps as columns; more than 400 steps are averaged into 400 columns. */
DLFDEF int dlf_telemetry_plot_hist(const dlf_telemetry *tl, const char *path, const char *title)
{
    DLF__NOT_NULL(tl, DLF_ERR_ARG); DLF__NOT_NULL(path, DLF_ERR_ARG);
    int P = tl->n_points, S = tl->n_steps, nb = tl->cfg.bins, C, p, c, k, i, rc, grid;
    float *img;
    const float **v;
    const char **titles;
    dlf__sb b;
    double top = title ? DLF__TITLE_H : 0.0;
    if (P < 1 || S < 1) return dlf__fail(DLF_ERR_ARG, "%s: the telemetry has recorded nothing", path);
    C = S < 400 ? S : 400;
    img = (float *)dlf__malloc((size_t)P * nb * C * sizeof(float), "telemetry histogram");
    v = (const float **)dlf__malloc((size_t)P * sizeof *v, "telemetry histogram");
    titles = (const char **)dlf__malloc((size_t)P * sizeof *titles, "telemetry histogram");
    if (!img || !v || !titles) {
        if (img) DLF_FREE(img);
        if (v) DLF_FREE((void *)v);
        if (titles) DLF_FREE((void *)titles);
        return DLF_ERR_NOMEM;
    }
    for (p = 0; p < P; p++) {
        float *im = img + (size_t)p * nb * C;
        for (c = 0; c < C; c++) {
            int s0 = (int)((long)c * S / C), s1 = (int)((long)(c + 1) * S / C);
            for (k = 0; k < nb; k++) {
                double acc = 0.0;
                for (i = s0; i < s1; i++) acc += log1p(dlf_telemetry_hist(tl, i, p)[k]);
                im[(size_t)(nb - 1 - k) * C + c] = (float)(acc / (s1 - s0));
            }
        }
        v[p] = im;
        titles[p] = tl->names[p];
    }
    grid = P < 2 ? P : 2;
    dlf__svg_begin(&b, DLF__PANEL_W * grid, top + DLF__PANEL_H * ((P + grid - 1) / grid));
    if (title) dlf__svg_label(&b, DLF__PANEL_W * grid / 2, 22, "middle", 16, "font-weight=\"bold\"", title);
    for (p = 0; p < P; p++)
        dlf__svg_image_panel(&b, DLF__PANEL_W * (p % grid), top + DLF__PANEL_H * (p / grid), titles[p],
                             "step", "activation", v[p], nb, C, 0.0, (double)S * tl->cfg.every, tl->cfg.hi,
                             tl->cfg.lo);
    rc = dlf__svg_finish(&b, path);
    DLF_FREE(img);
    DLF_FREE((void *)v);
    DLF_FREE((void *)titles);
    return rc;
}
#endif /* DLF_NO_STDIO */

#endif /* DLF_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the dlf authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication in perpetuity for the benefit of our software
and to the detriment of others. The above copyright notice and this permission
notice shall be included in all copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
