/* dlf.h - v0.1 - deep learning from the foundations - MIT/public domain

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

   TABLE OF CONTENTS (`grep '>>' dlf.h` prints it)
       stage0_config     config, versions, errors, allocation hooks
       stage1_random     random numbers with explicit state
       stage2_tensor     tensors: create, view, copy, print, compare
       stage3_elementwise  elementwise ops, broadcasting, reductions
       stage4_matmul     the matmul ladder: naive, i-k-j, blocked, packed micro-kernel
       stage5_autograd   the tape: arena, nodes, backward, gradient check
       (later: layers, init, losses, normalization, dropout, optimizers, schedules,
        data, learner, serialization, CUDA bridge)

   COMPILE-TIME OPTIONS
       #define DLF_STATIC        all functions static (private copy in one translation unit)
       #define DLF_NO_STDIO      no printing to stdout/stderr, no file functions
       #define DLF_MALLOC(sz)    \
       #define DLF_REALLOC(p,sz)  } define all three or none: route every heap allocation
       #define DLF_FREE(p)       /  (tests count allocations through these)
       #define DLF_ASSERT(x)     internal invariant check (default: assert.h)
       #define DLF_NO_SIMD       use the portable micro-kernel even when AVX2/FMA is on

   THREAD SAFETY
       dlf keeps no global state of its own except two thread-local slots: the last
       error message (dlf_last_error) and the programmer-error handler
       (dlf_set_panic_handler). Tensors, tapes and RNG states are plain structs the
       caller owns; different threads may use different ones freely, but one tape or
       tensor must not be written by two threads at once. Internally, heavy loops run
       on OpenMP threads; every result is computed in a fixed order, so the numbers
       do not depend on the thread count.

   REVISION HISTORY
       0.1  (2026-11-23)  tensors, broadcasting, reductions, matmul ladder, tape
                          autograd with arena, gradient check.

   LICENSE: see the end of the file.
*/
#ifndef DLF_H
#define DLF_H

#include <stddef.h>
#include <stdint.h>

#define DLF_VERSION_MAJOR 0
#define DLF_VERSION_MINOR 1
#define DLF_VERSION_PATCH 0

#ifdef DLF_STATIC
#define DLFDEF static
#else
#define DLFDEF extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

// >>stage0_config ---------------------------------------------------------------
// Errors come in two kinds (see DESIGN.md):
//  * fallible calls (files, parsing, allocation) return a dlf_result code or NULL
//    and leave a message in dlf_last_error();
//  * programmer errors (shape mismatch, bad axis) call the panic handler with a
//    message that names the op and the shapes. The default handler prints it and
//    calls abort(); tests install one that longjmps out. If a handler returns,
//    the op returns NULL.

typedef enum dlf_result {
    DLF_OK = 0,
    DLF_ERR_NOMEM = -1,    /* an allocation failed */
    DLF_ERR_IO = -2,       /* a file could not be opened, read or written */
    DLF_ERR_FORMAT = -3,   /* a file's bytes are not what its format says */
    DLF_ERR_ARG = -4       /* an argument is out of range */
} dlf_result;

typedef struct dlf_tape dlf_tape;  /* stage 5: every op records onto a tape */

typedef void (*dlf_panic_fn)(const char *message, void *user);

DLFDEF const char  *dlf_version_string(void);               /* "0.1.0" */
DLFDEF const char  *dlf_last_error(void);                   /* "" when none */
DLFDEF void         dlf_clear_error(void);
DLFDEF void         dlf_set_panic_handler(dlf_panic_fn fn, void *user); /* NULL: default */
DLFDEF void         dlf_set_threads(int n);                 /* OpenMP threads; no-op without */
DLFDEF int          dlf_get_threads(void);

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
DLFDEF void dlf_gemm_fast(int ta, int tb, int M, int N, int K, const float *A,
                          const float *B, float *C, int acc, float *work); /* packed + micro-kernel; work NULL: allocate */
DLFDEF void dlf_gemm(int ta, int tb, int M, int N, int K, const float *A,
                     const float *B, float *C, int acc, float *work);  /* picks a rung by size */

DLFDEF dlf_tensor *dlf_matmul(dlf_tape *t, dlf_tensor *a, dlf_tensor *b);  /* (M,K)@(K,N) */
DLFDEF dlf_tensor *dlf_matmul_ex(dlf_tape *t, dlf_tensor *a, dlf_tensor *b, int ta, int tb);

// >>stage5_autograd -------------------------------------------------------------
// The tape is the autograd engine and the memory of one step. Each op computes its
// output in the tape's arena and, when grad is enabled and an input requires grad,
// appends a node: op kind, inputs, output, scalar arguments. dlf_backward walks the
// nodes in reverse and a switch on the op kind calls that op's backward.
// dlf_tape_reset drops every node and rewinds the arena without freeing it, so from
// the second step on a training step allocates nothing.

typedef enum dlf_op {
    DLF_OP_NONE = 0,
    DLF_OP_ADD, DLF_OP_SUB, DLF_OP_MUL, DLF_OP_DIV,      /* binary, broadcasting */
    DLF_OP_ADD_SCALAR, DLF_OP_MUL_SCALAR, DLF_OP_POW_SCALAR,
    DLF_OP_NEG, DLF_OP_EXP, DLF_OP_LOG, DLF_OP_SQRT, DLF_OP_SQUARE, DLF_OP_ABS,
    DLF_OP_RELU, DLF_OP_SIGMOID, DLF_OP_TANH,
    DLF_OP_SUM, DLF_OP_MEAN, DLF_OP_MAX, DLF_OP_VAR,     /* reductions over one axis */
    DLF_OP_RESHAPE, DLF_OP_MATMUL,
    DLF_OP_COUNT
} dlf_op;

typedef struct dlf_node {
    dlf_op op;               /* which forward made `out` */
    dlf_tensor *out;         /* the output (its grad is read by backward) */
    dlf_tensor *in[2];       /* the inputs (their grads are written), NULL if unused */
    int iarg[4];             /* integer arguments: axis, keepdim, transpose flags ... */
    float farg[2];           /* float arguments: the scalar of *_SCALAR ops ... */
    dlf_tensor *aux;         /* extra tensor kept for backward (e.g. argmax indices) */
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
    int grad_enabled;        /* 0: no-grad / eval mode, records nothing */
    float *scratch;          /* (scratch_floats) workspace for packed matmul */
    size_t scratch_floats;
};

DLFDEF int  dlf_tape_init(dlf_tape *t);            /* DLF_OK; grad enabled */
DLFDEF void dlf_tape_destroy(dlf_tape *t);         /* frees arena, nodes, scratch */
DLFDEF void dlf_tape_reset(dlf_tape *t);           /* drop nodes, rewind the arena */
DLFDEF int  dlf_tape_set_grad(dlf_tape *t, int enabled); /* returns previous setting */
DLFDEF dlf_tensor *dlf_tape_tensor(dlf_tape *t, int ndim, const int *shape); /* arena, zeros */
DLFDEF void dlf_backward(dlf_tape *t, dlf_tensor *loss);  /* loss must have size 1 */
DLFDEF void dlf_backward_seed(dlf_tape *t, dlf_tensor *out, const float *seed); /* d?/dout */
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

typedef struct dlf_gradcheck_cfg {
    double eps;              /* step h (default 1e-2, in the float input's units) */
    double atol;             /* pass if |num - ana| <= atol + rtol*|num| (default 1e-3) */
    double rtol;             /* (default 1e-2) */
    int verbose;             /* print one line per input */
    uint64_t seed;           /* for the weights w (default 1) */
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

// >>stage11_optim ---------------------------------------------------------------
// Stochastic gradient descent, the update of torch.optim.SGD exactly. For each
// parameter p with gradient g, at step t (t = 1 is the first):
//     g   = g + lambda * p                         (weight decay, L2 penalty)
//     b_1 = g;   b_t = mu * b_{t-1} + (1 - tau) * g (momentum buffer, when mu != 0)
//     g   = g + mu * b_t   (nesterov)   or   g = b_t   (classic momentum)
//     p   = p - lr * g
// lr learning rate, mu momentum, tau dampening, lambda weight decay. The buffers
// are allocated once, in dlf_sgd_create; a step allocates nothing. Parameters whose
// grad is NULL are skipped, as PyTorch skips p.grad None.

typedef struct dlf_sgd_cfg {
    float lr;                /* learning rate (default 1e-3, PyTorch's); change freely between steps */
    float momentum;          /* mu (default 0: plain SGD, no buffers) */
    float dampening;         /* tau (default 0) */
    float weight_decay;      /* lambda (default 0) */
    int nesterov;            /* Nesterov momentum; needs momentum > 0 and dampening 0 */
} dlf_sgd_cfg;

typedef struct dlf_sgd {
    dlf_sgd_cfg cfg;         /* the values in use, defaults filled in */
    dlf_tensor **params;     /* (n_params) the parameters, not owned */
    int n_params;            /* how many */
    float **buf;             /* (n_params) momentum buffers, each (params[i]->size); NULL without momentum */
    int *has_buf;            /* (n_params) 1 once buf[i] holds b_t (its first step copies g); NULL without momentum */
    int steps;               /* steps taken */
} dlf_sgd;

DLFDEF dlf_sgd *dlf_sgd_create(dlf_tensor **params, int n_params, const dlf_sgd_cfg *cfg); /* NULL on OOM */
DLFDEF void     dlf_sgd_free(dlf_sgd *o);
DLFDEF void     dlf_sgd_step(dlf_sgd *o);       /* p -= lr * (update above) */
DLFDEF void     dlf_sgd_zero_grad(dlf_sgd *o);  /* every parameter's grad = 0 */
#ifndef DLF_NO_STDIO
DLFDEF void     dlf_sgd_print_cfg(const dlf_sgd *o); /* the values actually used */
#endif

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
    uint8_t *images;         /* (n, rows, cols) pixels 0..255 */
    uint8_t *labels;         /* (n) class ids */
    int n;                   /* items */
    int rows, cols;          /* image size (28, 28 for MNIST) */
    int n_classes;           /* 1 + the largest label */
    int owns;                /* 1: dlf_dataset_free frees images and labels; 0: a view */
} dlf_dataset;

DLFDEF int  dlf_dataset_from_idx(dlf_dataset *d, dlf_idx *images, dlf_idx *labels, const char *name); /* takes both buffers */
DLFDEF void dlf_dataset_free(dlf_dataset *d);
DLFDEF dlf_dataset dlf_dataset_view(const dlf_dataset *d, int start, int count); /* items [start, start+count) */
DLFDEF void dlf_dataset_stats(const dlf_dataset *d, float *mean, float *std); /* of pixel/255, population std */
DLFDEF void dlf_dataset_fill(const dlf_dataset *d, const int *idx, int count, const float *lut,
                             dlf_tensor *x, dlf_tensor *y);  /* x[i] = lut[pixels of idx[i]], y[i] = label */
DLFDEF void dlf_normalize_lut(float lut[256], float mean, float std); /* lut[v] = (v/255 - mean)/std */

typedef struct dlf_mnist_cfg {
    int n_valid;             /* training items held out, from the end (default n/6: 10000 of 60000); < 0: none */
    const char *prefix;      /* file-name prefix (default ""; the test subset uses "mnist-sub-") */
} dlf_mnist_cfg;

typedef struct dlf_mnist {
    dlf_dataset all_train;   /* the whole train file; owns the bytes */
    dlf_dataset train;       /* view: the first n - n_valid items of all_train */
    dlf_dataset valid;       /* view: the last n_valid items (n = 0 when none) */
    dlf_dataset test;        /* the t10k files; owns its bytes */
    float mean;              /* mean of train's pixels / 255 (0.1307 for all of MNIST) */
    float std;               /* their std (0.3081 for all of MNIST) */
} dlf_mnist;

#ifndef DLF_NO_STDIO
DLFDEF int  dlf_mnist_load(dlf_mnist *m, const char *dir, const dlf_mnist_cfg *cfg); /* DLF_OK or error */
#endif
DLFDEF void dlf_mnist_free(dlf_mnist *m);

typedef struct dlf_loader_cfg {
    int batch_size;          /* items per batch (default 64) */
    int shuffle;             /* 1: a new seeded permutation at each epoch start; 0: in order */
    int drop_last;           /* 1: skip the last batch when it is short */
    uint64_t seed;           /* shuffle seed; same seed, same order of every epoch */
    float mean, std;         /* normalization (std 0: mean 0, std 1, i.e. pixel/255) */
} dlf_loader_cfg;

typedef struct dlf_loader {
    const dlf_dataset *ds;   /* the data, not owned */
    dlf_loader_cfg cfg;      /* the values in use */
    int *order;              /* (ds->n) the item index at each position of this epoch */
    int pos;                 /* next position in order; 0: the next call starts an epoch */
    int epoch;               /* epochs started so far */
    int n_batches;           /* batches per epoch */
    dlf_rng rng;             /* shuffle state, seeded once from cfg.seed */
    dlf_tensor *x;           /* (batch_size, 1, rows, cols) the current batch; shape[0] shrinks for a short one */
    dlf_tensor *y;           /* (batch_size) its labels as floats */
    float lut[256];          /* normalized value of each pixel byte */
} dlf_loader;

DLFDEF dlf_loader *dlf_loader_create(const dlf_dataset *ds, const dlf_loader_cfg *cfg); /* NULL on OOM */
DLFDEF void dlf_loader_free(dlf_loader *l);
DLFDEF int  dlf_loader_next(dlf_loader *l);  /* fills l->x, l->y; items in the batch, 0 at the end of an epoch */

// >>stage14_learner -------------------------------------------------------------
// The training loop, in pieces a program can use or write out itself (lesson 03
// writes it by hand):  for each epoch { for each batch { reset tape; logits =
// model(x); loss = loss_fn(logits, y); backward; set lr; step; zero grads }
// evaluate on the validation set }. A progress line shows batch i/N, the running
// loss, items/s and the ETA; on a terminal it redraws in place with '\r', otherwise
// (a log file, CI) it prints one line per epoch.

typedef dlf_tensor *(*dlf_model_fn)(dlf_tape *t, dlf_tensor *x, void *model); /* x (N,1,H,W) -> logits (N,C) */
typedef dlf_tensor *(*dlf_loss_fn)(dlf_tape *t, dlf_tensor *logits, dlf_tensor *target); /* -> scalar */

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
    int tty;                 /* redraw in place with '\r' */
    int quiet;               /* print nothing */
} dlf_progress;

DLFDEF void dlf_progress_start(dlf_progress *p, const char *label, int total, int quiet);
DLFDEF void dlf_progress_step(dlf_progress *p, int items, float loss);
DLFDEF void dlf_progress_end(dlf_progress *p, const char *extra);  /* the epoch's last line */

typedef struct dlf_fit_cfg {
    int epochs;              /* default 1 */
    float lr;                /* peak learning rate (default: the optimizer's cfg.lr) */
    dlf_sched sched;         /* default DLF_SCHED_CONSTANT */
    float pct_start;         /* one-cycle warm-up fraction (default 0.3, PyTorch's) */
    int quiet;               /* 1: no progress lines */
} dlf_fit_cfg;

typedef struct dlf_fit_report {
    float train_loss;        /* mean batch loss of the last epoch */
    float valid_loss;        /* after the last epoch (0 when no valid loader) */
    float valid_acc;         /* after the last epoch */
    double train_seconds;    /* training time, evaluation excluded */
    int steps;               /* optimizer steps taken */
} dlf_fit_report;

DLFDEF float dlf_evaluate(dlf_tape *t, dlf_model_fn model, void *m, dlf_loader *l, float *mean_loss); /* accuracy */
DLFDEF int   dlf_fit(dlf_tape *t, dlf_model_fn model, void *m, dlf_loss_fn loss, dlf_sgd *opt,
                     dlf_loader *train, dlf_loader *valid, const dlf_fit_cfg *cfg, dlf_fit_report *rep);

#ifdef __cplusplus
}
#endif
#endif /* DLF_H */

/* ================================================================================
   IMPLEMENTATION
   ================================================================================ */
#ifdef DLF_IMPLEMENTATION

#include <stdarg.h>
#include <stdio.h>     /* vsnprintf for messages; printing unless DLF_NO_STDIO */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__) && !defined(DLF_NO_SIMD)
#include <immintrin.h>
#define DLF__AVX2 1
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

#if defined(_MSC_VER)
#define DLF__TLS __declspec(thread)
#else
#define DLF__TLS __thread
#endif

/* The only state dlf keeps: per thread, the last message and the panic handler. */
static DLF__TLS char dlf__error_buf[512];
static DLF__TLS dlf_panic_fn dlf__panic_fn;
static DLF__TLS void *dlf__panic_user;

DLFDEF const char *dlf_version_string(void) { return "0.1.0"; }
DLFDEF const char *dlf_last_error(void) { return dlf__error_buf; }
DLFDEF void dlf_clear_error(void) { dlf__error_buf[0] = 0; }

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

// >>stage1_random (implementation) ------------------------------------------------

/* splitmix64 (Steele, Lea, Flood 2014): spreads any 64-bit seed over the state. */
static uint64_t dlf__splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

DLFDEF void dlf_rng_seed(dlf_rng *r, uint64_t seed)
{
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

static uint32_t dlf__rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

/* xoshiro128**: result = rotl(s1 * 5, 7) * 9, then the xor-shift state update. */
DLFDEF uint32_t dlf_rng_u32(dlf_rng *r)
{
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
    return (float)(dlf_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* Box-Muller: for u1, u2 uniform, r = sqrt(-2 ln u1), z0 = r cos(2 pi u2),
   z1 = r sin(2 pi u2) are two independent N(0,1). The second is kept for the next call. */
DLFDEF float dlf_rng_normal(dlf_rng *r)
{
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

/* Fisher-Yates: walk down from the end, swap each slot with a random earlier one. */
DLFDEF void dlf_rng_permutation(dlf_rng *r, int *out, int n)
{
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
    int i;
    for (i = 0; i < t->size; i++) t->data[i] = value;
}

DLFDEF void dlf_fill_uniform(dlf_tensor *t, dlf_rng *r, float lo, float hi)
{
    int i;
    for (i = 0; i < t->size; i++) t->data[i] = lo + (hi - lo) * dlf_rng_uniform(r);
}

DLFDEF void dlf_fill_normal(dlf_tensor *t, dlf_rng *r, float mean, float std)
{
    int i;
    for (i = 0; i < t->size; i++) t->data[i] = mean + std * dlf_rng_normal(r);
}

DLFDEF void dlf_fill_arange(dlf_tensor *t, float start, float step)
{
    int i;
    for (i = 0; i < t->size; i++) t->data[i] = start + (float)i * step;
}

DLFDEF int dlf_same_shape(const dlf_tensor *a, const dlf_tensor *b)
{
    int i;
    if (a->ndim != b->ndim) return 0;
    for (i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

DLFDEF void dlf_tensor_copy(dlf_tensor *dst, const dlf_tensor *src)
{
    if (dst->size != src->size) {
        char sa[64], sb[64];
        dlf__panic("dlf_tensor_copy: dst %s and src %s differ in size",
                   dlf_shape_str(dst, sa, sizeof sa), dlf_shape_str(src, sb, sizeof sb));
        return;
    }
    if (dst->data != src->data) memcpy(dst->data, src->data, (size_t)src->size * sizeof(float));
}

/* Largest |a - b| over all elements; NaN anywhere makes it NaN (so tests notice). */
DLFDEF float dlf_max_abs_diff(const dlf_tensor *a, const dlf_tensor *b)
{
    float m = 0.0f;
    int i;
    if (a->size != b->size) {
        char sa[64], sb[64];
        dlf__panic("dlf_max_abs_diff: shapes %s and %s differ",
                   dlf_shape_str(a, sa, sizeof sa), dlf_shape_str(b, sb, sizeof sb));
        return NAN;
    }
    for (i = 0; i < a->size; i++) {
        float d = fabsf(a->data[i] - b->data[i]);
        if (d != d) return NAN;
        if (d > m) m = d;
    }
    return m;
}

/* NumPy's rule: |a - b| <= atol + rtol * |b| for every element (b is the reference). */
DLFDEF int dlf_allclose(const dlf_tensor *a, const dlf_tensor *b, float atol, float rtol)
{
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
    int n = t->shape[dim], stride = 1, i, d;
    for (d = dim + 1; d < t->ndim; d++) stride *= t->shape[d];
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
static dlf_node *dlf__record(dlf_tape *t, dlf_op op, dlf_tensor *out, dlf_tensor *a, dlf_tensor *b);
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
            dlf__panic("%s: shapes %s and %s do not broadcast (dim %d from the right: %d vs %d)",
                       op, dlf_shape_str(a, sa, sizeof sa), dlf_shape_str(b, sb, sizeof sb),
                       3 - i, da[i], db[i]);
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
    default: DLF_ASSERT(0);
    }
}

static const char *dlf__binary_name(dlf_op op)
{
    switch (op) {
    case DLF_OP_ADD: return "dlf_add";
    case DLF_OP_SUB: return "dlf_sub";
    case DLF_OP_MUL: return "dlf_mul";
    default: return "dlf_div";
    }
}

static dlf_tensor *dlf__binary(dlf_tape *t, dlf_op op, dlf_tensor *a, dlf_tensor *b)
{
    dlf__bcast bc;
    dlf_tensor *out;
    int shape[4], i, rows;
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
        default: /* DLF_OP_DIV */
            if (ga) ga[ia] += gi / bv;
            if (gb) gb[ib] -= gi * av / (bv * bv);
            break;
        }
    }
}

/* Unary ops (and ops with one scalar argument s): forward by a switch, element by element. */
static dlf_tensor *dlf__unary(dlf_tape *t, dlf_op op, dlf_tensor *a, float s)
{
    dlf_tensor *out = dlf__out(t, a->ndim, a->shape);
    dlf_node *nd;
    int i, n;
    if (!out) return NULL;
    n = a->size;
    DLF__OMP(omp parallel for if (n > DLF__PAR_MIN))
    for (i = 0; i < n; i++) {
        float x = a->data[i], y;
        switch (op) {
        case DLF_OP_ADD_SCALAR: y = x + s; break;                  /* y = x + s */
        case DLF_OP_MUL_SCALAR: y = x * s; break;                  /* y = x * s */
        case DLF_OP_POW_SCALAR: y = powf(x, s); break;             /* y = x^s */
        case DLF_OP_NEG: y = -x; break;                            /* y = -x */
        case DLF_OP_EXP: y = expf(x); break;                       /* y = e^x */
        case DLF_OP_LOG: y = logf(x); break;                       /* y = ln x */
        case DLF_OP_SQRT: y = sqrtf(x); break;                     /* y = sqrt x */
        case DLF_OP_SQUARE: y = x * x; break;                      /* y = x^2 */
        case DLF_OP_ABS: y = fabsf(x); break;                      /* y = |x| */
        case DLF_OP_RELU: y = x > 0.0f ? x : 0.0f; break;          /* y = max(x, 0) */
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
   cheaper (exp, sqrt, sigmoid, tanh reuse y; the rest need x). */
static void dlf__unary_backward(dlf_tape *t, dlf_node *nd)
{
    dlf_tensor *a = nd->in[0], *o = nd->out;
    float *ga = dlf__grad(t, a);
    const float *g = o->grad;
    float s = nd->farg[0];
    int i;
    if (!ga) return;
    for (i = 0; i < a->size; i++) {
        float x = a->data[i], y = o->data[i], d;
        switch (nd->op) {
        case DLF_OP_ADD_SCALAR: d = 1.0f; break;                     /* d(x+s)/dx = 1 */
        case DLF_OP_MUL_SCALAR: d = s; break;                        /* d(xs)/dx = s */
        case DLF_OP_POW_SCALAR: d = s * powf(x, s - 1.0f); break;    /* s x^(s-1) */
        case DLF_OP_NEG: d = -1.0f; break;
        case DLF_OP_EXP: d = y; break;                               /* (e^x)' = e^x = y */
        case DLF_OP_LOG: d = 1.0f / x; break;                        /* (ln x)' = 1/x */
        case DLF_OP_SQRT: d = 0.5f / y; break;                       /* 1/(2 sqrt x) */
        case DLF_OP_SQUARE: d = 2.0f * x; break;
        case DLF_OP_ABS: d = x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); break; /* sign x */
        case DLF_OP_RELU: d = x > 0.0f ? 1.0f : 0.0f; break;         /* step; 0 at x = 0 */
        case DLF_OP_SIGMOID: d = y * (1.0f - y); break;              /* s(x)(1 - s(x)) */
        case DLF_OP_TANH: d = 1.0f - y * y; break;                   /* 1 - tanh^2 */
        default: d = 0.0f; DLF_ASSERT(0);
        }
        ga[i] += g[i] * d;
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
    if (axis == 127) {  /* the _all variants: one reduction over everything */
        outer = 1; n = a->size; inner = 1; ndim = 0;
        if (n == 0) { dlf__panic("%s: cannot reduce an empty tensor", name); return NULL; }
    } else if (!dlf__reduce_setup(name, a, axis, keepdim, &outer, &n, &inner, &ndim, shape)) {
        return NULL;
    }
    out = dlf__out(t, ndim, shape);
    if (!out) return NULL;
    if (op == DLF_OP_MAX) {
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
            default:            /* max = max_k x_k, ties go to the first k; NaN wins */
                best = p[0];
                besti = 0;
                for (k = 1; k < n; k++) {
                    float v = p[k * inner];
                    if (v > best || (v != v && best == best)) { best = v; besti = k; }
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
     max:  dx_argmax += g                (only the winner moved the output) */
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
        default: /* DLF_OP_MAX */
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

/* Reshape is a view: a new header over the same data. One dim may be -1 (inferred). */
DLFDEF dlf_tensor *dlf_reshape(dlf_tape *t, dlf_tensor *a, int ndim, const int *shape)
{
    int s[4], i, infer = -1, known = 1, size;
    char sa[64];
    dlf_tensor *out;
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
    dlf_tensor *out = dlf__out(t, a->ndim, a->shape);
    if (out) memcpy(out->data, a->data, (size_t)a->size * sizeof(float));
    return out;
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
#define DLF__NR 16
#define DLF__MC 96
#define DLF__KC 256
#define DLF__NC 3072

/* Pack rows i0..i0+mr-1, columns p0..p0+kc-1 of op(A): dst[p*MR + r], zero-padded to MR. */
static void dlf__pack_a(int ta, int M, int K, const float *A, int i0, int mr, int p0, int kc, float *dst)
{
    int p, r;
    for (p = 0; p < kc; p++)
        for (r = 0; r < DLF__MR; r++)
            dst[p * DLF__MR + r] = r < mr ? DLF__AT(i0 + r, p0 + p) : 0.0f;
}

/* Pack rows p0..p0+kc-1, columns j0..j0+nr-1 of op(B): dst[p*NR + c], zero-padded to NR. */
static void dlf__pack_b(int tb, int K, int N, const float *B, int p0, int kc, int j0, int nr, float *dst)
{
    int p, c;
    for (p = 0; p < kc; p++) {
        float *d = dst + p * DLF__NR;
        if (!tb && nr == DLF__NR) {
            memcpy(d, B + (size_t)(p0 + p) * N + j0, DLF__NR * sizeof(float));
            continue;
        }
        for (c = 0; c < DLF__NR; c++) d[c] = c < nr ? DLF__BT(p0 + p, j0 + c) : 0.0f;
    }
}

/* The micro-kernel's math, in portable C: ab[r][c] = sum_p a[p][r] * b[p][c]. */
static void dlf__kernel_ref(int kc, const float *a, const float *b, float *ab)
{
    int p, r, c;
    for (r = 0; r < DLF__MR * DLF__NR; r++) ab[r] = 0.0f;
    for (p = 0; p < kc; p++) {
        for (r = 0; r < DLF__MR; r++) {
            float a_r = a[p * DLF__MR + r];
            for (c = 0; c < DLF__NR; c++) ab[r * DLF__NR + c] += a_r * b[p * DLF__NR + c];
        }
    }
}

#ifdef DLF__AVX2
/* The same in AVX2/FMA: row r of the tile is two 8-float registers c_r0, c_r1. */
static void dlf__kernel_avx2(int kc, const float *a, const float *b, float *ab)
{
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
        a_r = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(a_r, b0, c00); c01 = _mm256_fmadd_ps(a_r, b1, c01);
        a_r = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(a_r, b0, c10); c11 = _mm256_fmadd_ps(a_r, b1, c11);
        a_r = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(a_r, b0, c20); c21 = _mm256_fmadd_ps(a_r, b1, c21);
        a_r = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(a_r, b0, c30); c31 = _mm256_fmadd_ps(a_r, b1, c31);
        a_r = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(a_r, b0, c40); c41 = _mm256_fmadd_ps(a_r, b1, c41);
        a_r = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(a_r, b0, c50); c51 = _mm256_fmadd_ps(a_r, b1, c51);
        a += DLF__MR;
        b += DLF__NR;
    }
    _mm256_storeu_ps(ab + 0 * 16, c00); _mm256_storeu_ps(ab + 0 * 16 + 8, c01);
    _mm256_storeu_ps(ab + 1 * 16, c10); _mm256_storeu_ps(ab + 1 * 16 + 8, c11);
    _mm256_storeu_ps(ab + 2 * 16, c20); _mm256_storeu_ps(ab + 2 * 16 + 8, c21);
    _mm256_storeu_ps(ab + 3 * 16, c30); _mm256_storeu_ps(ab + 3 * 16 + 8, c31);
    _mm256_storeu_ps(ab + 4 * 16, c40); _mm256_storeu_ps(ab + 4 * 16 + 8, c41);
    _mm256_storeu_ps(ab + 5 * 16, c50); _mm256_storeu_ps(ab + 5 * 16 + 8, c51);
}
#endif

/* One MR x NR tile: ab = A-panel x B-panel, then C = ab (first K block, no acc) or
   C += ab, for the mr x nr corner that lies inside C. */
static void dlf__tile(int kc, const float *a, const float *b, float *c, int ldc, int mr, int nr, int add)
{
    float ab[DLF__MR * DLF__NR];
    int r, j;
#ifdef DLF__AVX2
    dlf__kernel_avx2(kc, a, b, ab);
#else
    dlf__kernel_ref(kc, a, b, ab);
#endif
    for (r = 0; r < mr; r++) {
        float *c_r = c + (size_t)r * ldc;
        const float *ab_r = ab + r * DLF__NR;
        if (add)
            for (j = 0; j < nr; j++) c_r[j] += ab_r[j];
        else
            for (j = 0; j < nr; j++) c_r[j] = ab_r[j];
    }
}

static int dlf__gemm_threads(int M, int N, int K)
{
    double flops = 2.0 * M * N * K;
    return flops < 2.0e6 ? 1 : dlf_get_threads();  /* small products: no thread start-up */
}

DLFDEF size_t dlf_gemm_fast_scratch(int M, int N, int K)
{
    size_t kc = (size_t)(K < DLF__KC ? K : DLF__KC);
    size_t nc = (size_t)(N < DLF__NC ? N : DLF__NC);
    size_t nc_pad = (nc + DLF__NR - 1) / DLF__NR * DLF__NR;
    (void)M;
    if (kc == 0) kc = 1;
    return nc_pad * kc + (size_t)dlf__gemm_threads(M, N, K) * DLF__MC * kc + 16;
}

DLFDEF void dlf_gemm_fast(int ta, int tb, int M, int N, int K, const float *A,
                          const float *B, float *C, int acc, float *work)
{
    float *own = NULL, *packed_b, *packed_a_all;
    int nt, jc, pc;
    (void)dlf__kernel_ref;
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
            DLF__OMP(omp parallel for num_threads(nt) schedule(static))
            for (jp = 0; jp < n_panels; jp++) {
                int nr = nc - jp * DLF__NR < DLF__NR ? nc - jp * DLF__NR : DLF__NR;
                dlf__pack_b(tb, K, N, B, pc, kc, jc + jp * DLF__NR, nr, packed_b + (size_t)jp * DLF__NR * kc);
            }
            DLF__OMP(omp parallel num_threads(nt))
            {
                int tid = 0, w;
#ifdef _OPENMP
                tid = omp_get_thread_num();
#endif
                DLF__OMP(omp for schedule(static))
                for (w = 0; w < items; w++) {
                    float *packed_a = packed_a_all + (size_t)tid * DLF__MC * kc;
                    int ic = (w / groups) * DLF__MC, g = w % groups;
                    int mc = M - ic < DLF__MC ? M - ic : DLF__MC;
                    int jp0 = g * n_panels / groups, jp1 = (g + 1) * n_panels / groups;
                    int ir, j;
                    for (ir = 0; ir < mc; ir += DLF__MR) {
                        int mr = mc - ir < DLF__MR ? mc - ir : DLF__MR;
                        dlf__pack_a(ta, M, K, A, ic + ir, mr, pc, kc, packed_a + (size_t)ir * kc);
                    }
                    for (j = jp0; j < jp1; j++) {
                        int nr = nc - j * DLF__NR < DLF__NR ? nc - j * DLF__NR : DLF__NR;
                        const float *b_panel = packed_b + (size_t)j * DLF__NR * kc;
                        for (ir = 0; ir < mc; ir += DLF__MR) {
                            int mr = mc - ir < DLF__MR ? mc - ir : DLF__MR;
                            dlf__tile(kc, packed_a + (size_t)ir * kc, b_panel,
                                      C + (size_t)(ic + ir) * N + jc + j * DLF__NR, N, mr, nr, add);
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
    dlf_gemm_fast(ta, tb, M, N, K, A, B, C, acc, work);
}

static float *dlf__tape_scratch(dlf_tape *t, size_t floats);

/* Shapes of op(a) (M,K) and op(b) (K,N), checked; names both shapes on a mismatch. */
DLFDEF dlf_tensor *dlf_matmul_ex(dlf_tape *t, dlf_tensor *a, dlf_tensor *b, int ta, int tb)
{
    int M, K, Kb, N, shape[2];
    dlf_tensor *out;
    dlf_node *nd;
    char sa[64], sb[64];
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
    dlf_gemm(ta, tb, M, N, K, a->data, b->data, out->data, 0,
             dlf__tape_scratch(t, dlf_gemm_fast_scratch(M, N, K)));
    nd = dlf__record(t, DLF_OP_MATMUL, out, a, b);
    if (nd) {
        nd->iarg[0] = ta;
        nd->iarg[1] = tb;
    }
    return out;
}

DLFDEF dlf_tensor *dlf_matmul(dlf_tape *t, dlf_tensor *a, dlf_tensor *b)
{
    return dlf_matmul_ex(t, a, b, 0, 0);
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
    if (ga) {
        if (!ta) {   /* dA (M,K) = G (M,N) op(B)^T: B^T (N,K) is B (K,N) transposed, or B itself when tb */
            float *w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(M, K, N));
            dlf_gemm(0, !tb, M, K, N, G, b->data, ga, 1, w);
        } else {     /* dA (K,M) = op(B) (K,N) G^T (N,M) */
            float *w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(K, M, N));
            dlf_gemm(tb, 1, K, M, N, b->data, G, ga, 1, w);
        }
    }
    if (gb) {
        if (!tb) {   /* dB (K,N) = op(A)^T (K,M) G (M,N) */
            float *w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(K, N, M));
            dlf_gemm(!ta, 0, K, N, M, a->data, G, gb, 1, w);
        } else {     /* dB (N,K) = G^T (N,M) op(A) (M,K) */
            float *w = dlf__tape_scratch(t, dlf_gemm_fast_scratch(N, K, M));
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

static void *dlf__arena_alloc(dlf_tape *t, size_t bytes)
{
    dlf__chunk *c = t->cur;
    void *p;
    bytes = (bytes + 63) & ~(size_t)63;
    while (c && c->used + bytes > c->cap) {
        c = c->next;
        if (c) c->used = 0;
    }
    if (!c) {
        size_t cap = bytes > t->chunk_bytes ? bytes : t->chunk_bytes;
        char *block = (char *)dlf__malloc(sizeof(dlf__chunk) + 64 + cap, "the tape arena");
        if (!block) {
            dlf__panic("dlf tape: out of memory growing the arena by %zu bytes", cap);
            return NULL;
        }
        c = (dlf__chunk *)block;
        c->next = NULL;
        c->cap = cap;
        c->used = 0;
        c->mem = (char *)(((uintptr_t)(block + sizeof(dlf__chunk)) + 63) & ~(uintptr_t)63);
        if (t->cur) {
            c->next = t->cur->next;  /* (NULL: we only get here at the end of the list) */
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
    return p;
}

/* A new tensor in the arena, header and data together; data left uninitialized
   (every op writes all of its output). */
static dlf_tensor *dlf__out(dlf_tape *t, int ndim, const int *shape)
{
    int size = 1;
    size_t head = (sizeof(dlf_tensor) + 63) & ~(size_t)63;
    char *block;
    dlf_tensor *x;
    if (!dlf__check_shape("dlf tape", ndim, shape, &size)) return NULL;
    block = (char *)dlf__arena_alloc(t, head + (size_t)size * sizeof(float));
    if (!block) return NULL;
    x = (dlf_tensor *)block;
    memset(x, 0, sizeof *x);
    x->data = (float *)(block + head);
    dlf__set_shape(x, ndim, shape, size);
    x->flags = DLF_TENSOR_ARENA;
    return x;
}

DLFDEF dlf_tensor *dlf_tape_tensor(dlf_tape *t, int ndim, const int *shape)
{
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
   requires grad too. Returns the node (to fill arguments) or NULL. */
static dlf_node *dlf__record(dlf_tape *t, dlf_op op, dlf_tensor *out, dlf_tensor *a, dlf_tensor *b)
{
    dlf_node *nd;
    if (!t->grad_enabled) return NULL;
    if (!(a && a->requires_grad) && !(b && b->requires_grad)) return NULL;
    if (t->n_nodes == t->cap_nodes) {
        int cap = t->cap_nodes ? 2 * t->cap_nodes : 256;
        dlf_node *nodes = (dlf_node *)DLF_REALLOC(t->nodes, (size_t)cap * sizeof(dlf_node));
        if (!nodes) {
            dlf__panic("dlf tape: out of memory recording node %d (%s)", t->n_nodes, dlf_op_name(op));
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
    out->requires_grad = 1;
    return nd;
}

/* A workspace that only grows (matmul packing); like the arena, it stops growing
   after the first step. */
static float *dlf__tape_scratch(dlf_tape *t, size_t floats)
{
    if (floats > t->scratch_floats) {
        float *s = (float *)DLF_REALLOC(t->scratch, floats * sizeof(float));
        if (!s) {
            dlf__panic("dlf tape: out of memory for %zu floats of matmul workspace", floats);
            return NULL;
        }
        t->scratch = s;
        t->scratch_floats = floats;
    }
    return t->scratch;
}

DLFDEF int dlf_tape_init(dlf_tape *t)
{
    memset(t, 0, sizeof *t);
    t->chunk_bytes = (size_t)1 << 20;
    t->grad_enabled = 1;
    return DLF_OK;
}

DLFDEF void dlf_tape_destroy(dlf_tape *t)
{
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
    dlf__chunk *c;
    for (c = t->first; c; c = c->next) c->used = 0;
    t->cur = t->first;
    t->used_bytes = 0;
    t->n_nodes = 0;
}

DLFDEF int dlf_tape_set_grad(dlf_tape *t, int enabled)
{
    int prev = t->grad_enabled;
    t->grad_enabled = enabled;
    return prev;
}

DLFDEF const char *dlf_op_name(dlf_op op)
{
    static const char *names[DLF_OP_COUNT] = {
        "none", "add", "sub", "mul", "div", "add_scalar", "mul_scalar", "pow_scalar",
        "neg", "exp", "log", "sqrt", "square", "abs", "relu", "sigmoid", "tanh",
        "sum", "mean", "max", "var", "reshape", "matmul"
    };
    return (op >= 0 && op < DLF_OP_COUNT) ? names[op] : "?";
}

/* Walk the tape backwards. Every node's output gradient is complete when its turn
   comes, because all the ops that used that output were recorded after it. */
DLFDEF void dlf_backward_seed(dlf_tape *t, dlf_tensor *out, const float *seed)
{
    int i;
    float *g;
    if (!out->requires_grad) {
        dlf__panic("dlf_backward: the output does not require grad (no input requires grad, or grad was off)");
        return;
    }
    g = dlf__grad(t, out);
    if (!g) return;
    for (i = 0; i < out->size; i++) g[i] += seed ? seed[i] : 1.0f;
    for (i = t->n_nodes - 1; i >= 0; i--) {
        dlf_node *nd = &t->nodes[i];
        if (!nd->out->grad) continue;  /* nothing flowed back into this node */
        switch (nd->op) {
        case DLF_OP_ADD:
        case DLF_OP_SUB:
        case DLF_OP_MUL:
        case DLF_OP_DIV:
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
        case DLF_OP_VAR:
            dlf__reduce_backward(t, nd);
            break;
        case DLF_OP_RESHAPE:
            dlf__reshape_backward(t, nd);
            break;
        case DLF_OP_MATMUL:
            dlf__matmul_backward(t, nd);
            break;
        default:
            dlf__panic("dlf_backward: node %d has unknown op %d", i, (int)nd->op);
            return;
        }
    }
}

DLFDEF void dlf_backward(dlf_tape *t, dlf_tensor *loss)
{
    char s[64];
    if (loss->size != 1) {
        dlf__panic("dlf_backward: the loss must have one element, got shape %s "
                   "(reduce it, or use dlf_backward_seed)", dlf_shape_str(loss, s, sizeof s));
        return;
    }
    dlf_backward_seed(t, loss, NULL);
}

DLFDEF void dlf_zero_grad(dlf_tensor *t)
{
    if (t && t->grad) memset(t->grad, 0, (size_t)t->size * sizeof(float));
}

DLFDEF void dlf_zero_grads(dlf_tensor **ts, int n)
{
    int i;
    for (i = 0; i < n; i++) dlf_zero_grad(ts[i]);
}

#ifndef DLF_NO_STDIO
DLFDEF void dlf_tape_print(const dlf_tape *t)
{
    int i, j;
    char s[64];
    printf("tape: %d nodes, %zu bytes in use (peak %zu)\n", t->n_nodes, t->used_bytes, t->peak_bytes);
    for (i = 0; i < t->n_nodes; i++) {
        const dlf_node *nd = &t->nodes[i];
        printf("  #%-3d %-10s -> %s", i, dlf_op_name(nd->op), dlf_shape_str(nd->out, s, sizeof s));
        for (j = 0; j < 2; j++)
            if (nd->in[j]) printf("  in%d %s%s", j, dlf_shape_str(nd->in[j], s, sizeof s),
                                  nd->in[j]->name ? nd->in[j]->name : "");
        printf("\n");
    }
}
#endif

/* L = sum_i w_i * out_i, in double. */
static double dlf__weighted_sum(const dlf_tensor *out, const float *w)
{
    double s = 0.0;
    int i;
    for (i = 0; i < out->size; i++) s += (double)w[i] * (double)out->data[i];
    return s;
}

static double dlf__eval_graph(dlf_graph_fn fn, dlf_tape *t, dlf_tensor **inputs, void *user, const float *w)
{
    dlf_tensor *out;
    dlf_tape_reset(t);
    out = fn(t, inputs, user);
    return out ? dlf__weighted_sum(out, w) : NAN;
}

DLFDEF int dlf_gradcheck(dlf_graph_fn fn, dlf_tensor **inputs, int n_inputs, void *user,
                         const dlf_gradcheck_cfg *cfg_in, dlf_gradcheck_report *rep)
{
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
