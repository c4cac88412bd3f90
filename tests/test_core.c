/* test_core.c - stages 0-5: rng, tensors, broadcasting, reductions, matmul ladder,
   tape autograd (gradcheck of every op), arena reuse, determinism, errors. */
#include <stdlib.h>

#define TH_COUNT_ALLOCS  /* count dlf's heap allocations (see harness.h) */
#define DLF_IMPLEMENTATION
#include "harness.h"

static dlf_tensor *randn(dlf_rng *r, int ndim, const int *shape)
{
    dlf_tensor *t = dlf_tensor_new(ndim, shape);
    dlf_fill_normal(t, r, 0.0f, 1.0f);
    return t;
}

static dlf_tensor *randn2(dlf_rng *r, int a, int b)
{
    int s[2];
    s[0] = a; s[1] = b;
    return randn(r, 2, s);
}

/* ---------------------------------------------------------------- random numbers */
static void test_rng(void)
{
    dlf_rng a, b;
    int i, same = 1, perm[100], seen[100], ok = 1;
    double sum = 0, sq = 0, lo = 1, hi = 0;
    GROUP("rng");
    dlf_rng_seed(&a, 42);
    dlf_rng_seed(&b, 42);
    for (i = 0; i < 1000; i++) same &= dlf_rng_u32(&a) == dlf_rng_u32(&b);
    CHECK(same, "same seed gives the same stream");
    dlf_rng_seed(&b, 43);
    CHECK(dlf_rng_u32(&a) != dlf_rng_u32(&b), "different seeds differ");
    for (i = 0; i < 100000; i++) {
        float u = dlf_rng_uniform(&a);
        if (u < lo) lo = u;
        if (u > hi) hi = u;
        sum += u;
    }
    CHECK(lo >= 0.0 && hi < 1.0, "uniform in [0,1): saw [%g, %g]", lo, hi);
    CHECK(fabs(sum / 100000 - 0.5) < 0.01, "uniform mean %g", sum / 100000);
    sum = 0;
    for (i = 0; i < 100000; i++) {
        float z = dlf_rng_normal(&a);
        sum += z;
        sq += (double)z * z;
    }
    CHECK(fabs(sum / 100000) < 0.02, "normal mean %g", sum / 100000);
    CHECK(fabs(sqrt(sq / 100000) - 1.0) < 0.02, "normal std %g", sqrt(sq / 100000));
    dlf_rng_permutation(&a, perm, 100);
    memset(seen, 0, sizeof seen);
    for (i = 0; i < 100; i++) {
        if (perm[i] < 0 || perm[i] >= 100 || seen[perm[i]]) ok = 0;
        else seen[perm[i]] = 1;
    }
    CHECK(ok, "permutation holds every index once");
    ok = 1;
    for (i = 0; i < 10000; i++) ok &= dlf_rng_below(&a, 7) < 7;
    CHECK(ok, "below(7) stays below 7");
    CHECK(dlf_rng_below(&a, 1) == 0, "below(1) is 0");
}

/* ---------------------------------------------------------------- tensors */
static void test_tensors(void)
{
    dlf_tape t;
    float v[6] = {1, 2, 3, 4, 5, 6};
    int s23[2] = {2, 3}, s32[2] = {3, -1}, bad[2] = {4, -1}, s5[5] = {1, 1, 1, 1, 1};
    dlf_tensor *a, *r, *c, *z;
    char buf[64];
    GROUP("tensors");
    dlf_tape_init(&t);
    a = dlf_tensor_from(2, s23, v);
    CHECK(a->ndim == 2 && a->size == 6 && a->shape[0] == 2 && a->shape[1] == 3, "shape of from()");
    CHECK(strcmp(dlf_shape_str(a, buf, sizeof buf), "(2, 3)") == 0, "shape string %s", buf);
    z = dlf_tensor_new1(4);
    CHECK(strcmp(dlf_shape_str(z, buf, sizeof buf), "(4,)") == 0, "1-d shape string %s", buf);
    CHECK(z->data[0] == 0 && z->data[3] == 0, "new tensors are zeros");
    dlf_fill_arange(z, 1, 2);
    CHECK(z->data[3] == 7.0f, "arange");
    r = dlf_reshape(&t, a, 2, s32);
    CHECK(r->shape[0] == 3 && r->shape[1] == 2, "reshape infers -1");
    CHECK(r->data == a->data, "reshape is a view");
    EXPECT_PANIC(dlf_reshape(&t, a, 2, bad), "dlf_reshape");
    EXPECT_PANIC(dlf_tensor_new(5, s5), "ndim 5");
    c = dlf_clone(&t, a);
    CHECK(c->data != a->data && c->data[5] == 6.0f, "clone copies");
    CHECK(dlf_allclose(c, a, 0, 0), "allclose of a copy");
    c->data[0] += 1e-3f;
    CHECK(!dlf_allclose(c, a, 1e-4f, 0), "allclose notices 1e-3");
    CHECK(dlf_allclose(c, a, 2e-3f, 0), "allclose within atol");
    CHECK(fabsf(dlf_max_abs_diff(c, a) - 1e-3f) < 1e-6f, "max_abs_diff");
    c->data[1] = NAN;
    CHECK(dlf_max_abs_diff(c, a) != dlf_max_abs_diff(c, a), "NaN shows in max_abs_diff");
    CHECK(!dlf_allclose(c, a, 1, 1), "NaN is never close");
    EXPECT_PANIC(dlf_tensor_free(c), "not a heap tensor");
    {   /* the constructors of the course: ones, rand, randn, arange */
        dlf_rng r1, r2;
        dlf_tensor *o = dlf_tensor_ones(2, s23), *u, *n1, *n2, *ar = dlf_tensor_arange(5);
        int k, ok = 1;
        dlf_rng_seed(&r1, 3);
        dlf_rng_seed(&r2, 3);
        u = dlf_tensor_rand(2, s23, &r1);
        n1 = dlf_tensor_randn(2, s23, &r1);
        n2 = dlf_tensor_randn(2, s23, &r2);  /* r2 is one tensor behind r1 */
        for (k = 0; k < 6; k++) ok &= o->data[k] == 1.0f && u->data[k] >= 0.0f && u->data[k] < 1.0f;
        CHECK(ok, "ones are 1, rand is in [0, 1)");
        CHECK(memcmp(n1->data, n2->data, sizeof(float) * 6) != 0, "randn draws move the generator on");
        CHECK(ar->ndim == 1 && ar->size == 5 && ar->data[4] == 4.0f, "arange(5) ends at 4");
        dlf_tensor_free(o); dlf_tensor_free(u); dlf_tensor_free(n1); dlf_tensor_free(n2); dlf_tensor_free(ar);
    }
    EXPECT_PANIC(dlf_tensor_copy(z, a), "dlf_tensor_copy");
    dlf_tensor_free(a);
    dlf_tensor_free(z);
    dlf_tape_destroy(&t);
}

/* ---------------------------------------------------------------- broadcasting */
typedef struct { int na; int sa[4]; int nb; int sb[4]; int no; int so[4]; } bcase;

static void test_broadcast(void)
{
    static const bcase cases[] = {
        {2, {2, 3}, 1, {3}, 2, {2, 3}},
        {2, {4, 1}, 2, {1, 5}, 2, {4, 5}},
        {3, {2, 1, 3}, 2, {4, 1}, 3, {2, 4, 3}},
        {0, {0}, 2, {2, 3}, 2, {2, 3}},
        {1, {3}, 2, {2, 3}, 2, {2, 3}},
        {4, {2, 1, 3, 1}, 4, {1, 4, 1, 5}, 4, {2, 4, 3, 5}},
        {2, {1, 1}, 1, {1}, 2, {1, 1}},
    };
    dlf_tape t;
    dlf_rng rng;
    int i, k, op;
    GROUP("broadcast");
    dlf_tape_init(&t);
    dlf_rng_seed(&rng, 7);
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        const bcase *c = &cases[i];
        dlf_tensor *a = randn(&rng, c->na, c->sa), *b = randn(&rng, c->nb, c->sb);
        for (op = 0; op < 4; op++) {
            dlf_tensor *o;
            int good = 1, idx[4], da[4], db[4], pa, pb;
            if (op == 3) dlf_fill_uniform(b, &rng, 0.5f, 2.0f);
            o = op == 0 ? dlf_add(&t, a, b) : op == 1 ? dlf_sub(&t, a, b) : op == 2 ? dlf_mul(&t, a, b) : dlf_div(&t, a, b);
            good = o->ndim == c->no;
            for (k = 0; k < c->no; k++) good &= o->shape[k] == c->so[k];
            CHECK(good, "case %d op %d: output shape", i, op);
            /* reference: index each output element back into a and b by hand */
            for (k = 0; k < 4; k++) {
                da[k] = k >= 4 - c->na ? c->sa[k - (4 - c->na)] : 1;
                db[k] = k >= 4 - c->nb ? c->sb[k - (4 - c->nb)] : 1;
            }
            for (k = 0; k < o->size && good; k++) {
                int rem = k, d, ow[4];
                float want;
                for (d = 3; d >= 0; d--) {
                    ow[d] = d >= 4 - c->no ? c->so[d - (4 - c->no)] : 1;
                }
                for (d = 3; d >= 0; d--) { idx[d] = rem % ow[d]; rem /= ow[d]; }
                pa = 0; pb = 0;
                for (d = 0; d < 4; d++) {
                    pa = pa * da[d] + (da[d] == 1 ? 0 : idx[d]);
                    pb = pb * db[d] + (db[d] == 1 ? 0 : idx[d]);
                }
                want = op == 0 ? a->data[pa] + b->data[pb] : op == 1 ? a->data[pa] - b->data[pb]
                     : op == 2 ? a->data[pa] * b->data[pb] : a->data[pa] / b->data[pb];
                good &= o->data[k] == want;
            }
            CHECK(good, "case %d op %d: values", i, op);
        }
        dlf_tensor_free(a);
        dlf_tensor_free(b);
    }
    {   /* errors name the op and both shapes */
        int s23[2] = {2, 3}, s4[1] = {4}, s32[2] = {3, 2};
        dlf_tensor *a = dlf_tensor_new(2, s23), *b = dlf_tensor_new(1, s4), *c = dlf_tensor_new(2, s32);
        EXPECT_PANIC(dlf_add(&t, a, b), "dlf_add: shapes (2, 3) and (4,) do not broadcast");
        EXPECT_PANIC(dlf_mul(&t, a, c), "dlf_mul: shapes (2, 3) and (3, 2)");
        EXPECT_PANIC(dlf_sub(&t, c, b), "dlf_sub");
        EXPECT_PANIC(dlf_div(&t, b, a), "(4,) and (2, 3)");
        dlf_tensor_free(a); dlf_tensor_free(b); dlf_tensor_free(c);
    }
    dlf_tape_destroy(&t);
}

/* ---------------------------------------------------------------- reductions */
static void test_reductions(void)
{
    dlf_tape t;
    dlf_rng rng;
    int shape[3] = {2, 3, 4}, axis, keep, op;
    dlf_tensor *a;
    GROUP("reductions");
    dlf_tape_init(&t);
    dlf_rng_seed(&rng, 3);
    a = randn(&rng, 3, shape);
    for (op = 0; op < 6; op++)
    for (axis = -3; axis < 3; axis++)
    for (keep = 0; keep < 2; keep++) {
        int ax = axis < 0 ? axis + 3 : axis, o, i, k, outer = 1, inner = 1, n = shape[ax], good = 1;
        dlf_tensor *r;
        float ref[24];
        for (i = 0; i < ax; i++) outer *= shape[i];
        for (i = ax + 1; i < 3; i++) inner *= shape[i];
        r = op == 0 ? dlf_sum(&t, a, axis, keep) : op == 1 ? dlf_mean(&t, a, axis, keep)
          : op == 2 ? dlf_max(&t, a, axis, keep) : op == 3 ? dlf_argmax(&t, a, axis, keep)
          : dlf_var(&t, a, axis, keep, op == 4 ? 1 : 0);
        for (o = 0; o < outer; o++)
        for (i = 0; i < inner; i++) {
            double s = 0, m, v = 0;
            float best = -INFINITY;
            int bi = 0;
            for (k = 0; k < n; k++) {
                float x = a->data[(o * n + k) * inner + i];
                s += x;
                if (x > best) { best = x; bi = k; }
            }
            m = s / n;
            for (k = 0; k < n; k++) {
                double d = a->data[(o * n + k) * inner + i] - m;
                v += d * d;
            }
            ref[o * inner + i] = op == 0 ? (float)s : op == 1 ? (float)m : op == 2 ? best
                               : op == 3 ? (float)bi : (float)(v / (n - (op == 4 ? 1 : 0)));
        }
        good = r->ndim == (keep ? 3 : 2) && r->size == outer * inner;
        if (keep) good &= r->shape[ax] == 1;
        CHECK(good, "op %d axis %d keepdim %d: shape", op, axis, keep);
        CHECK_CLOSE(r->data, ref, outer * inner, 1e-5f, 1e-5f, "reduction values");
    }
    {
        dlf_tensor *s = dlf_sum_all(&t, a), *m = dlf_mean_all(&t, a);
        double ref = 0;
        int i;
        for (i = 0; i < a->size; i++) ref += a->data[i];
        CHECK(s->ndim == 0 && s->size == 1, "sum_all is a 0-dim scalar");
        CHECK(fabs(s->data[0] - ref) < 1e-5, "sum_all value");
        CHECK(fabs(m->data[0] - ref / 24) < 1e-6, "mean_all value");
    }
    EXPECT_PANIC(dlf_sum(&t, a, 3, 0), "dlf_sum: axis 3 is out of range for shape (2, 3, 4)");
    EXPECT_PANIC(dlf_mean(&t, a, -4, 0), "dlf_mean: axis -4");
    dlf_tensor_free(a);
    dlf_tape_destroy(&t);
}

/* ---------------------------------------------------------------- matmul */
typedef void (*gemm_fn)(int, int, int, int, int, const float *, const float *, float *, int);
static void gemm_fast_nowork(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int acc)
{
    dlf_gemm_fast(ta, tb, M, N, K, A, B, C, acc, NULL);
}

/* Every kernel this build and CPU run, the portable one included, against the naive
   reference; the others must be refused with a message. */
static const char *const kernels[] = {"portable", "avx2-fma", "avx512"};

static void test_kernels(void)
{
    const char *before = dlf_kernel_name();
    int k, n_run = 0;
    GROUP("kernels");
    for (k = 0; k < 3; k++) {
        int rc = dlf_set_kernel(kernels[k]);
        if (dlf_kernel_available(kernels[k])) {
            CHECK(rc == DLF_OK && strcmp(dlf_kernel_name(), kernels[k]) == 0, "dlf_set_kernel selects an available kernel");
            n_run++;
        } else {
            CHECK(rc == DLF_ERR_ARG && strstr(dlf_last_error(), kernels[k]) != NULL, "an unavailable kernel is refused by name");
            printf("SKIP kernel %s: not compiled in or not supported by this CPU\n", kernels[k]);
        }
    }
    CHECK(dlf_set_kernel("sse9") == DLF_ERR_ARG && strstr(dlf_last_error(), "no kernel called \"sse9\"") != NULL,
          "unknown kernel name refused");
    CHECK(dlf_set_kernel("avx2") == (dlf_kernel_available("avx2-fma") ? DLF_OK : DLF_ERR_ARG), "avx2 is avx2-fma's alias");
    CHECK(dlf_set_kernel("auto") == DLF_OK, "auto always works");
    CHECK(dlf_kernel_available("portable") && n_run >= 1, "the portable kernel always runs");
    dlf_set_kernel(before);
}

static void test_matmul_kernel(const char *kernel)
{
    static const int sizes[] = {1, 3, 17, 64, 129, 257};
    static const int shapes[][3] = {{5, 784, 10}, {1, 300, 7}, {130, 2, 97}, {33, 65, 1}, {200, 31, 300}, {7, 1, 9}, {3, 513, 3100}};
    gemm_fn rungs[4];
    const char *names[4] = {"ikj", "blocked", "fast", "fast(no work)"};
    dlf_rng rng;
    int si, ri, ta, tb, acc;
    rungs[0] = dlf_gemm_ikj;
    rungs[1] = dlf_gemm_blocked;
    rungs[2] = gemm_fast_nowork;
    rungs[3] = gemm_fast_nowork;
    GROUP(kernel);
    dlf_set_kernel(kernel);
    dlf_rng_seed(&rng, 11);
    for (si = 0; si < 6 + 7; si++) {
        int M, N, K;
        float *A, *B, *C0, *C;
        if (si < 6) { M = N = K = sizes[si]; }
        else { M = shapes[si - 6][0]; K = shapes[si - 6][1]; N = shapes[si - 6][2]; }
        A = (float *)malloc(sizeof(float) * M * K);
        B = (float *)malloc(sizeof(float) * K * N);
        C0 = (float *)malloc(sizeof(float) * M * N);
        C = (float *)malloc(sizeof(float) * M * N);
        for (ri = 0; ri < M * K; ri++) A[ri] = dlf_rng_uniform(&rng) - 0.5f;
        for (ri = 0; ri < K * N; ri++) B[ri] = dlf_rng_uniform(&rng) - 0.5f;
        for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++) {
            for (acc = 0; acc < 2; acc++) {
                int i;
                for (i = 0; i < M * N; i++) C0[i] = acc ? 0.25f : 0.0f;
                dlf_gemm_naive(ta, tb, M, N, K, A, B, C0, acc);
                for (ri = (si < 6 ? 0 : 2); ri < 3; ri++) {  /* the slow rungs only on the square sizes */
                    char what[128];
                    for (i = 0; i < M * N; i++) C[i] = acc ? 0.25f : 123.0f;
                    rungs[ri](ta, tb, M, N, K, A, B, C, acc);
                    snprintf(what, sizeof what, "%s M%d N%d K%d ta%d tb%d acc%d", names[ri], M, N, K, ta, tb, acc);
                    CHECK_CLOSE(C, C0, M * N, 1e-4f * sqrtf((float)K), 1e-4f, what);
                }
                if (ta == 0 && tb == 1) {   /* the dot-product rung computes the same A B^T */
                    char what[128];
                    for (i = 0; i < M * N; i++) C[i] = acc ? 0.25f : 123.0f;
                    dlf_gemm_dot(M, N, K, A, B, C, acc);
                    snprintf(what, sizeof what, "dot M%d N%d K%d acc%d", M, N, K, acc);
                    CHECK_CLOSE(C, C0, M * N, 1e-4f * sqrtf((float)K), 1e-4f, what);
                }
            }
        }
        free(A); free(B); free(C0); free(C);
    }
    {   /* K = 0 gives zeros; tensor matmul checks its shapes */
        float c[4] = {1, 2, 3, 4}, zero[4] = {0, 0, 0, 0};
        dlf_tape t;
        dlf_tensor *a = randn2(&rng, 2, 3), *b = randn2(&rng, 4, 3), *v = dlf_tensor_new1(3);
        dlf_gemm_fast(0, 0, 2, 2, 0, NULL, NULL, c, 0, NULL);
        CHECK_CLOSE(c, zero, 4, 0, 0, "K=0 product is zero");
        dlf_tape_init(&t);
        EXPECT_PANIC(dlf_matmul(&t, a, b), "dlf_matmul: inner dims differ: (2, 3) @ (4, 3)");
        EXPECT_PANIC(dlf_matmul_ex(&t, a, v, 0, 0), "both inputs must be 2-D");
        CHECK(dlf_matmul_ex(&t, a, b, 0, 1)->shape[1] == 4, "A B^T shape");
        dlf_tape_destroy(&t);
        dlf_tensor_free(a); dlf_tensor_free(b); dlf_tensor_free(v);
    }
}

/* dlf_gemm_dot, C = A @ B^T with B stored (N,K), against the naive rung: edges of the
   4x3 blocks, K around the 512-long chunks and not a multiple of 8, acc on and off. */
static void test_matmul_dot(void)
{
    static const int shapes[][3] = {{1, 1, 1}, {4, 3, 8}, {5, 7, 13}, {8, 25, 1100}, {33, 2, 512},
                                    {3, 40, 1031}, {16, 72, 3136}, {2, 5, 0}};
    dlf_rng rng;
    int si, acc, i;
    GROUP("matmul_dot");
    dlf_rng_seed(&rng, 12);
    for (si = 0; si < 8; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        float *A = (float *)malloc(sizeof(float) * (M * K + 1));
        float *B = (float *)malloc(sizeof(float) * (N * K + 1));
        float *C0 = (float *)malloc(sizeof(float) * M * N);
        float *C = (float *)malloc(sizeof(float) * M * N);
        for (i = 0; i < M * K; i++) A[i] = dlf_rng_uniform(&rng) - 0.5f;
        for (i = 0; i < N * K; i++) B[i] = dlf_rng_uniform(&rng) - 0.5f;
        for (acc = 0; acc < 2; acc++) {
            char what[128];
            for (i = 0; i < M * N; i++) C0[i] = acc ? 0.25f : 0.0f;
            for (i = 0; i < M * N; i++) C[i] = acc ? 0.25f : 123.0f;
            dlf_gemm_naive(0, 1, M, N, K, A, B, C0, acc);
            dlf_gemm_dot(M, N, K, A, B, C, acc);
            snprintf(what, sizeof what, "dot M%d N%d K%d acc%d", M, N, K, acc);
            CHECK_CLOSE(C, C0, M * N, 1e-4f * sqrtf((float)K + 1), 1e-4f, what);
        }
        free(A); free(B); free(C0); free(C);
    }
}

/* ---------------------------------------------------------------- gradcheck of every op */
typedef struct { int op; int iarg[3]; float farg; } gspec;

static dlf_tensor *graph_op(dlf_tape *t, dlf_tensor **x, void *user)
{
    const gspec *g = (const gspec *)user;
    switch (g->op) {
    case DLF_OP_ADD: return dlf_add(t, x[0], x[1]);
    case DLF_OP_SUB: return dlf_sub(t, x[0], x[1]);
    case DLF_OP_MUL: return dlf_mul(t, x[0], x[1]);
    case DLF_OP_DIV: return dlf_div(t, x[0], x[1]);
    case DLF_OP_ADD_SCALAR: return dlf_add_scalar(t, x[0], g->farg);
    case DLF_OP_MUL_SCALAR: return dlf_mul_scalar(t, x[0], g->farg);
    case DLF_OP_POW_SCALAR: return dlf_pow_scalar(t, x[0], g->farg);
    case DLF_OP_NEG: return dlf_neg(t, x[0]);
    case DLF_OP_EXP: return dlf_exp(t, x[0]);
    case DLF_OP_LOG: return dlf_log(t, x[0]);
    case DLF_OP_SQRT: return dlf_sqrt(t, x[0]);
    case DLF_OP_SQUARE: return dlf_square(t, x[0]);
    case DLF_OP_ABS: return dlf_abs(t, x[0]);
    case DLF_OP_RELU: return dlf_relu(t, x[0]);
    case DLF_OP_SIGMOID: return dlf_sigmoid(t, x[0]);
    case DLF_OP_TANH: return dlf_tanh(t, x[0]);
    case DLF_OP_SUM: return g->iarg[0] == 9 ? dlf_sum_all(t, x[0]) : dlf_sum(t, x[0], g->iarg[0], g->iarg[1]);
    case DLF_OP_MEAN: return g->iarg[0] == 9 ? dlf_mean_all(t, x[0]) : dlf_mean(t, x[0], g->iarg[0], g->iarg[1]);
    case DLF_OP_MAX: return dlf_max(t, x[0], g->iarg[0], g->iarg[1]);
    case DLF_OP_VAR: return dlf_var(t, x[0], g->iarg[0], g->iarg[1], g->iarg[2]);
    case DLF_OP_RESHAPE: {
        int s[2] = {-1, 2};
        return dlf_mul(t, dlf_reshape(t, x[0], 2, s), dlf_reshape(t, x[0], 2, s));
    }
    case DLF_OP_MATMUL: return dlf_matmul_ex(t, x[0], x[1], g->iarg[0], g->iarg[1]);
    default: return NULL;
    }
}

static void gcheck(const char *what, gspec *g, dlf_tensor *a, dlf_tensor *b)
{
    dlf_tensor *in[2];
    dlf_gradcheck_report rep;
    int ok;
    in[0] = a;
    in[1] = b;
    ok = dlf_gradcheck(graph_op, in, b ? 2 : 1, g, NULL, &rep);
    CHECK(ok, "gradcheck %s: %d failed of %d (max abs err %.3g at input %d [%d], %d kinks)",
          what, rep.n_failed, rep.n_checked, rep.max_abs_err, rep.worst_input, rep.worst_index, rep.n_kinks);
}

/* a graph whose backward is deliberately wrong: the gradcheck must catch it */
static dlf_tensor *graph_liar(dlf_tape *t, dlf_tensor **x, void *user)
{
    (void)user;
    return dlf_mul_scalar(t, x[0], t->grad_enabled ? 2.0f : 3.0f);
}

static void test_gradcheck(void)
{
    static const int bshapes[][2][4] = {  /* pairs (ndim, dims) for a and b */
        {{2, 3, 4, 0}, {2, 3, 4, 0}},
        {{2, 3, 4, 0}, {1, 4, 0, 0}},
        {{2, 3, 1, 0}, {2, 1, 5, 0}},
        {{1, 4, 0, 0}, {3, 2, 3, 4}},
    };
    dlf_rng rng;
    int op, c, axis, keep;
    char what[96];
    GROUP("gradcheck");
    dlf_rng_seed(&rng, 5);
    for (op = DLF_OP_ADD; op <= DLF_OP_DIV; op++)
    for (c = 0; c < 4; c++) {
        gspec g;
        dlf_tensor *a = randn(&rng, bshapes[c][0][0], bshapes[c][0] + 1);
        dlf_tensor *b = randn(&rng, bshapes[c][1][0], bshapes[c][1] + 1);
        memset(&g, 0, sizeof g);
        g.op = op;
        if (op == DLF_OP_DIV) dlf_fill_uniform(b, &rng, 0.5f, 2.0f);
        snprintf(what, sizeof what, "%s case %d", dlf_op_name((dlf_op)op), c);
        gcheck(what, &g, a, b);
        dlf_tensor_free(a); dlf_tensor_free(b);
    }
    for (op = DLF_OP_ADD_SCALAR; op <= DLF_OP_TANH; op++) {
        int s[3] = {2, 3, 5};
        gspec g;
        dlf_tensor *a = randn(&rng, 3, s);
        memset(&g, 0, sizeof g);
        g.op = op;
        g.farg = op == DLF_OP_POW_SCALAR ? 2.5f : -1.5f;
        if (op == DLF_OP_LOG || op == DLF_OP_SQRT || op == DLF_OP_POW_SCALAR) dlf_fill_uniform(a, &rng, 0.5f, 3.0f);
        gcheck(dlf_op_name((dlf_op)op), &g, a, NULL);
        dlf_tensor_free(a);
    }
    for (op = DLF_OP_SUM; op <= DLF_OP_VAR; op++)
    for (axis = -1; axis < 3; axis++)
    for (keep = 0; keep < 2; keep++) {
        int s[3] = {3, 4, 5};
        gspec g;
        dlf_tensor *a = randn(&rng, 3, s);
        memset(&g, 0, sizeof g);
        g.op = op;
        g.iarg[0] = axis;
        g.iarg[1] = keep;
        g.iarg[2] = keep;  /* var: correction 1 with keepdim, 0 without */
        snprintf(what, sizeof what, "%s axis %d keepdim %d", dlf_op_name((dlf_op)op), axis, keep);
        gcheck(what, &g, a, NULL);
        dlf_tensor_free(a);
    }
    for (op = DLF_OP_SUM; op <= DLF_OP_MEAN; op++) {
        int s[2] = {3, 4};
        gspec g;
        dlf_tensor *a = randn(&rng, 2, s);
        memset(&g, 0, sizeof g);
        g.op = op;
        g.iarg[0] = 9;
        gcheck(op == DLF_OP_SUM ? "sum_all" : "mean_all", &g, a, NULL);
        dlf_tensor_free(a);
    }
    {
        int s[3] = {2, 3, 2};
        gspec g;
        dlf_tensor *a = randn(&rng, 3, s);
        memset(&g, 0, sizeof g);
        g.op = DLF_OP_RESHAPE;
        gcheck("reshape (used twice)", &g, a, NULL);
        dlf_tensor_free(a);
    }
    for (c = 0; c < 4; c++) {
        int ta = c & 1, tb = c >> 1, M = 5, K = 7, N = 3;
        gspec g;
        dlf_tensor *a = ta ? randn2(&rng, K, M) : randn2(&rng, M, K);
        dlf_tensor *b = tb ? randn2(&rng, N, K) : randn2(&rng, K, N);
        memset(&g, 0, sizeof g);
        g.op = DLF_OP_MATMUL;
        g.iarg[0] = ta;
        g.iarg[1] = tb;
        snprintf(what, sizeof what, "matmul ta%d tb%d", ta, tb);
        gcheck(what, &g, a, b);
        dlf_tensor_free(a); dlf_tensor_free(b);
    }
    {   /* relu exactly at its kink: reported as a kink, not a failure */
        gspec g;
        dlf_tensor *a = dlf_tensor_new1(4), *in[1];
        dlf_gradcheck_report rep;
        memset(&g, 0, sizeof g);
        g.op = DLF_OP_RELU;
        a->data[0] = 0.0f; a->data[1] = 1.0f; a->data[2] = -1.0f; a->data[3] = 0.0f;
        in[0] = a;
        CHECK(dlf_gradcheck(graph_op, in, 1, &g, NULL, &rep), "relu with kinks passes");
        CHECK(rep.n_kinks == 2 && rep.n_checked == 2, "two kinks found (%d), two checked (%d)", rep.n_kinks, rep.n_checked);
        dlf_tensor_free(a);
    }
    {   /* the check can fail */
        dlf_tensor *a = randn2(&rng, 2, 2), *in[1];
        dlf_gradcheck_report rep;
        in[0] = a;
        CHECK(!dlf_gradcheck(graph_liar, in, 1, NULL, NULL, &rep), "a wrong backward is caught");
        CHECK(rep.n_failed == 4, "every element flagged (%d)", rep.n_failed);
        dlf_tensor_free(a);
    }
}

/* ---------------------------------------------------------------- tape behaviour */
typedef struct { dlf_tensor *w1, *b1, *w2, *b2, *x, *y; } mlp;

static dlf_tensor *mlp_loss(dlf_tape *t, mlp *m)  /* mean((relu(x W1 + b1) W2 + b2 - y)^2) */
{
    dlf_tensor *h = dlf_relu(t, dlf_add(t, dlf_matmul(t, m->x, m->w1), m->b1));
    dlf_tensor *o = dlf_add(t, dlf_matmul(t, h, m->w2), m->b2);
    return dlf_mean_all(t, dlf_square(t, dlf_sub(t, o, m->y)));
}

static void mlp_init(mlp *m, dlf_rng *r, int n, int in, int hid)
{
    int s1[2] = {in, hid}, s2[2] = {hid, 1};
    m->w1 = dlf_param_new(2, s1); dlf_fill_normal(m->w1, r, 0, 1.0f / sqrtf((float)in));
    m->b1 = dlf_param_new(1, &hid);
    m->w2 = dlf_param_new(2, s2); dlf_fill_normal(m->w2, r, 0, 1.0f / sqrtf((float)hid));
    m->b2 = dlf_param_new(1, s2 + 1);
    m->x = randn2(r, n, in);
    m->y = randn2(r, n, 1);
}

static void mlp_free(mlp *m)
{
    dlf_tensor_free(m->w1); dlf_tensor_free(m->b1); dlf_tensor_free(m->w2);
    dlf_tensor_free(m->b2); dlf_tensor_free(m->x); dlf_tensor_free(m->y);
}

static void sgd(dlf_tensor *p, float lr)
{
    int i;
    for (i = 0; i < p->size; i++) p->data[i] -= lr * p->grad[i];
}

/* n training steps; returns the final loss; writes every loss into losses[] if given */
static float mlp_train(mlp *m, dlf_tape *t, int steps, float *losses, long *allocs_after_first)
{
    int s;
    float l = 0;
    dlf_tensor *ps[4];
    ps[0] = m->w1; ps[1] = m->b1; ps[2] = m->w2; ps[3] = m->b2;
    for (s = 0; s < steps; s++) {
        dlf_tensor *loss;
        if (s == 1) th_allocs = 0;
        dlf_tape_reset(t);
        dlf_zero_grads(ps, 4);
        loss = mlp_loss(t, m);
        dlf_backward(t, loss);
        sgd(m->w1, 0.002f); sgd(m->b1, 0.002f); sgd(m->w2, 0.002f); sgd(m->b2, 0.002f);
        l = loss->data[0];
        if (losses) losses[s] = l;
    }
    if (allocs_after_first) *allocs_after_first = th_allocs;
    return l;
}

static void test_tape(void)
{
    dlf_rng rng;
    dlf_tape t;
    mlp m;
    long allocs;
    float first, last, g0;
    dlf_tensor *loss, *a, *b;
    GROUP("tape");
    dlf_rng_seed(&rng, 9);
    dlf_tape_init(&t);
    t.chunk_bytes = 4096;  /* small blocks: the arena must grow in step 1 and then stop */
    mlp_init(&m, &rng, 64, 100, 300);
    loss = mlp_loss(&t, &m);
    first = loss->data[0];
    CHECK(t.n_nodes == 8, "an MLP loss records 8 nodes (%d)", t.n_nodes);
    last = mlp_train(&m, &t, 6, NULL, &allocs);
    CHECK(allocs == 0, "steps 2..6 made %ld heap allocations (want 0)", allocs);
    CHECK(last < first, "training lowers the loss (%g -> %g)", first, last);
    CHECK(t.peak_bytes > 0 && t.first && t.first->next, "arena grew to several blocks (peak %zu bytes)", t.peak_bytes);
    /* gradients accumulate until zeroed */
    dlf_tape_reset(&t);
    dlf_zero_grad(m.w2);
    dlf_backward(&t, mlp_loss(&t, &m));
    g0 = m.w2->grad[0];
    dlf_tape_reset(&t);
    dlf_backward(&t, mlp_loss(&t, &m));
    CHECK(fabsf(m.w2->grad[0] - 2 * g0) <= 1e-6f * fabsf(g0) + 1e-9f, "two backwards accumulate (%g vs 2*%g)", m.w2->grad[0], g0);
    dlf_zero_grad(m.w2);
    CHECK(m.w2->grad[0] == 0.0f, "zero_grad zeroes");
    /* no-grad mode records nothing */
    dlf_tape_reset(&t);
    CHECK(dlf_tape_set_grad(&t, 0) == 1, "grad was on");
    loss = mlp_loss(&t, &m);
    CHECK(t.n_nodes == 0 && !loss->requires_grad, "no-grad records no node (%d)", t.n_nodes);
    EXPECT_PANIC(dlf_backward(&t, loss), "does not require grad");
    dlf_tape_set_grad(&t, 1);
    /* inputs that need no grad record nothing either */
    a = randn2(&rng, 2, 2);
    b = randn2(&rng, 2, 2);
    dlf_tape_reset(&t);
    CHECK(!dlf_add(&t, a, b)->requires_grad && t.n_nodes == 0, "constants record nothing");
    EXPECT_PANIC(dlf_backward(&t, dlf_add(&t, m.w1, m.w1)), "loss must have one element, got shape (100, 300)");
    dlf_tensor_free(a); dlf_tensor_free(b);
    mlp_free(&m);
    dlf_tape_destroy(&t);
}

/* ---------------------------------------------------------------- determinism */
static void test_determinism(void)
{
    dlf_rng rng;
    dlf_tape t;
    float l1[5], l2[5], l3[5];
    int n = 300, i, threads = dlf_get_threads();
    float *A, *B, *C1, *C2;
    mlp m;
    GROUP("determinism");
    dlf_tape_init(&t);
    for (i = 0; i < 3; i++) {
        dlf_set_threads(i == 2 ? 1 : 2);
        dlf_rng_seed(&rng, 1234);
        mlp_init(&m, &rng, 128, 400, 200);
        mlp_train(&m, &t, 5, i == 0 ? l1 : i == 1 ? l2 : l3, NULL);
        mlp_free(&m);
    }
    CHECK(memcmp(l1, l2, sizeof l1) == 0, "same seed, same losses, bit for bit");
    CHECK(memcmp(l1, l3, sizeof l1) == 0, "1 vs 2 threads: same losses, bit for bit");
    A = (float *)malloc(sizeof(float) * n * n);
    B = (float *)malloc(sizeof(float) * n * n);
    C1 = (float *)malloc(sizeof(float) * n * n);
    C2 = (float *)malloc(sizeof(float) * n * n);
    for (i = 0; i < n * n; i++) { A[i] = dlf_rng_normal(&rng); B[i] = dlf_rng_normal(&rng); }
    {
        const char *before = dlf_kernel_name();
        int k, tr;
        for (k = 0; k < 3; k++) {   /* for each kernel: the same bits whatever the thread count */
            if (!dlf_kernel_available(kernels[k])) continue;
            dlf_set_kernel(kernels[k]);
            for (tr = 0; tr < 4; tr++) {
                char what[96];
                dlf_set_threads(1);
                dlf_gemm_fast(tr >> 1, tr & 1, n, n, n, A, B, C1, 0, NULL);
                dlf_set_threads(2);
                dlf_gemm_fast(tr >> 1, tr & 1, n, n, n, A, B, C2, 0, NULL);
                snprintf(what, sizeof what, "matmul %s ta%d tb%d: 1 vs 2 threads, same bits", kernels[k], tr >> 1, tr & 1);
                CHECK(memcmp(C1, C2, sizeof(float) * n * n) == 0, what);
            }
            dlf_set_threads(1);
            dlf_gemm_dot(n, n, n, A, B, C1, 0);
            dlf_set_threads(2);
            dlf_gemm_dot(n, n, n, A, B, C2, 0);
            CHECK(memcmp(C1, C2, sizeof(float) * n * n) == 0, "matmul_dot: 1 vs 2 threads, same bits");
        }
        dlf_set_kernel(before);
    }
    {
        int s[2] = {n, n};
        dlf_tensor *a = dlf_tensor_from(2, s, A), *r1, *r2;
        dlf_set_threads(1);
        r1 = dlf_sum(&t, dlf_exp(&t, a), 0, 0);
        dlf_set_threads(2);
        r2 = dlf_sum(&t, dlf_exp(&t, a), 0, 0);
        CHECK(memcmp(r1->data, r2->data, sizeof(float) * n) == 0, "exp+sum: 1 vs 2 threads, same bits");
        dlf_tensor_free(a);
    }
    dlf_set_threads(threads);
    free(A); free(B); free(C1); free(C2);
    dlf_tape_destroy(&t);
}

/* The thread governor, fed made-up step times: it must keep the faster count. */
static void test_threadgov(void)
{
    dlf_threadgov g;
    int before = dlf_get_threads(), i, saw_lo = 0;
    GROUP("thread governor");
    dlf_set_threads(4);
    dlf_threadgov_init(&g);
    if (dlf_get_threads() < 2) {   /* a build without OpenMP: one thread, nothing to govern */
        CHECK(g.state == 0 && dlf_threadgov_step(&g, 1.0) == 1, "one thread: the governor stays off");
        dlf_set_threads(before);
        return;
    }
    CHECK(g.hi == 4 && g.lo == 2 && g.cur == 4 && g.state == 1, "starts with a trial on all threads");
    for (i = 0; i < 1 + DLF_GOV_TRIAL; i++) dlf_threadgov_step(&g, 0.010);          /* hi: 10 ms */
    CHECK(g.cur == 2 && g.state == 2, "then a trial on half");
    for (i = 0; i < 1 + DLF_GOV_TRIAL; i++) dlf_threadgov_step(&g, 0.004);          /* lo: 4 ms (busy machine) */
    CHECK(g.cur == 2 && g.state == 3 && dlf_get_threads() == 2, "the faster count wins and is set");
    CHECK(g.period == 2 * DLF_GOV_PERIOD, "lo winning doubles the period");
    for (i = 0; i < DLF_GOV_TRIAL; i++) dlf_threadgov_step(&g, 0.009);             /* lo got 2x slower */
    CHECK(g.state == 1 && g.cur == 4, "steps 1.5x slower than the trial start a new trial");
    dlf_threadgov_step(&g, 0.050);                                                  /* warm-up step on hi */
    dlf_threadgov_step(&g, 0.050);                                                  /* > 2x lo's 4 ms */
    CHECK(g.state == 3 && g.cur == 2 && g.trials == 2, "a hopeless trial on hi stops at its first timed step");
    dlf_set_threads(4);                                 /* the governor set 2 */
    dlf_threadgov_init(&g);
    for (i = 0; i < 1 + DLF_GOV_TRIAL; i++) dlf_threadgov_step(&g, 0.005);
    for (i = 0; i < 1 + DLF_GOV_TRIAL; i++) dlf_threadgov_step(&g, 0.009);
    CHECK(g.cur == 4 && g.state == 3 && g.period == DLF_GOV_PERIOD, "a quiet machine keeps all threads");
    for (i = 0; i < DLF_GOV_PERIOD; i++) saw_lo |= dlf_threadgov_step(&g, 0.005) == 2;
    CHECK(!saw_lo && g.state == 1, "after a period, a new trial");
    dlf_set_threads(before);
}

/* Anomaly mode names the op that made the first NaN or inf, forward or backward; off, it
   checks nothing. */
static void test_anomaly(void)
{
    dlf_tape t;
    dlf_tensor *x, *loss;
    int s[1] = {4};
    float v[4] = {1, 2, -1, 3};
    GROUP("anomaly mode");
    dlf_tape_init(&t);
    x = dlf_tensor_from(1, s, v);
    dlf_tensor_requires_grad(x);
    CHECK(dlf_tape_set_anomaly(&t, 1) == 0, "off by default");
    loss = dlf_sum_all(&t, dlf_log(&t, dlf_mul_scalar(&t, x, 2.0f)));   /* log(-2) */
    EXPECT_PANIC(dlf_backward(&t, loss), "anomaly mode: node 1 (log) produced NaN at index 2");
    dlf_tape_reset(&t);
    dlf_zero_grad(x);
    x->data[2] = 0.0f;                                                   /* sqrt'(0) = inf */
    loss = dlf_sum_all(&t, dlf_sqrt(&t, x));
    EXPECT_PANIC(dlf_backward(&t, loss), "the backward of node 0 (sqrt) made the gradient of its input 0");
    dlf_tape_reset(&t);
    dlf_zero_grad(x);
    x->data[2] = NAN;                                                    /* NaN in the data */
    loss = dlf_sum_all(&t, dlf_mul_scalar(&t, x, 2.0f));
    EXPECT_PANIC(dlf_backward(&t, loss), "node 0 (mul_scalar) got NaN at index 2 of its input 0");
    dlf_tape_reset(&t);
    dlf_zero_grad(x);
    x->data[2] = 0.0f;
    CHECK(dlf_tape_set_anomaly(&t, 0) == 1, "switched off");
    loss = dlf_sum_all(&t, dlf_sqrt(&t, x));
    dlf_backward(&t, loss);
    CHECK(isinf(x->grad[2]) && x->grad[0] == 0.5f, "off: nothing is checked, the gradient is what it is");
    GROUP("backward twice");
    EXPECT_PANIC(dlf_backward(&t, loss), "trying to backward through node 1 (sum) a second time");
    CHECK(x->grad[0] == 0.5f, "the refused second backward added nothing");
    dlf_zero_grad(x);
    loss = dlf_sum_all(&t, dlf_mul_scalar(&t, x, 3.0f));    /* the next step, reset forgotten */
    dlf_backward(&t, loss);
    CHECK(x->grad[1] == 3.0f && x->grad[2] == 3.0f, "without the reset, backward walks only the new nodes");
    dlf_tape_reset(&t);
    dlf_zero_grad(x);
    loss = dlf_sum_all(&t, dlf_mul_scalar(&t, x, 3.0f));
    dlf_backward(&t, loss);
    CHECK(x->grad[1] == 3.0f, "after a reset, backward works again");
    dlf_tensor_free(x);
    dlf_tape_destroy(&t);
}

int main(void)
{
    th_init();
    printf("dlf %s, %d threads\n", dlf_version_string(), dlf_get_threads());
    test_rng();
    test_tensors();
    test_broadcast();
    test_reductions();
    test_kernels();
    test_threadgov();
    test_anomaly();
    {
        const char *before = dlf_kernel_name();
        int k;
        for (k = 0; k < 3; k++)
            if (dlf_kernel_available(kernels[k])) test_matmul_kernel(kernels[k]);
        dlf_set_kernel(before);
    }
    test_matmul_dot();
    test_gradcheck();
    test_tape();
    test_determinism();
    TEST_MAIN_END();
}
