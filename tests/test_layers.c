/* test_layers.c - stage 6: linear, conv2d (im2col vs naive), activations, softmax,
   pooling, flatten, embedding, Sequential; the arena's zero-allocation promise
   with conv in the graph. Every op's backward is checked by finite differences. */
#include <stdlib.h>
#define TH_COUNT_ALLOCS  /* count dlf's heap allocations (see harness.h) */
#define DLF_IMPLEMENTATION
#include "harness.h"

static dlf_rng rng;

static dlf_tensor *randn(int ndim, int d0, int d1, int d2, int d3)
{
    int s[4];
    dlf_tensor *x;
    s[0] = d0; s[1] = d1; s[2] = d2; s[3] = d3;
    x = dlf_tensor_new(ndim, s);
    dlf_fill_normal(x, &rng, 0.0f, 1.0f);
    return x;
}

/* Distinct values at least 0.05 apart, shuffled: max-pool ties cannot flip under
   the gradcheck's 1e-2 steps. */
static void fill_distinct(dlf_tensor *x)
{
    int *perm = (int *)malloc((size_t)x->size * sizeof(int)), i;
    dlf_rng_permutation(&rng, perm, x->size);
    for (i = 0; i < x->size; i++) x->data[i] = 0.05f * (float)(perm[i] - x->size / 2);
    free(perm);
}

static void free_all(dlf_tensor **ts, int n)
{
    int i;
    for (i = 0; i < n; i++) dlf_tensor_free(ts[i]);
}

/* ---------------------------------------------------------------- linear */

static dlf_tensor *g_linear(dlf_tape *t, dlf_tensor **in, void *u)
{
    return dlf_linear(t, in[0], in[1], u ? in[2] : NULL);
}

static void test_linear(void)
{
    dlf_tensor *in[3];
    dlf_tape t;
    dlf_tensor *y;
    float ref;
    int i;
    GROUP("linear");
    in[0] = randn(2, 4, 5, 1, 1);
    in[1] = randn(2, 3, 5, 1, 1);
    in[2] = randn(1, 3, 1, 1, 1);
    dlf_tape_init(&t);
    y = dlf_linear(&t, in[0], in[1], in[2]);
    CHECK(y->ndim == 2 && y->shape[0] == 4 && y->shape[1] == 3, "linear shape");
    ref = in[2]->data[2];
    for (i = 0; i < 5; i++) ref += in[0]->data[1 * 5 + i] * in[1]->data[2 * 5 + i];
    CHECK(fabsf(y->data[1 * 3 + 2] - ref) < 1e-5f, "y[1][2] = %g, want %g", y->data[5], ref);
    {
        dlf_tensor *w2 = randn(2, 3, 4, 1, 1);
        EXPECT_PANIC(dlf_linear(&t, in[0], w2, NULL),
                     "dlf_linear: want x (N, in), w (out, in), b (out,) or NULL; got x (4, 5), w (3, 4)");
        dlf_tensor_free(w2);
    }
    EXPECT_PANIC(dlf_linear(&t, in[0], in[1], in[0]), "(4, 5)");
    dlf_tape_destroy(&t);
    GRADCHECK(g_linear, in, 3, (void *)1, "linear + bias");
    GRADCHECK(g_linear, in, 2, NULL, "linear, no bias");
    free_all(in, 3);
}

/* ---------------------------------------------------------------- conv2d */

typedef struct conv_case { int N, C, H, W, K, R, S, stride, pad, bias; } conv_case;
typedef struct conv_user { const conv_case *c; int naive; } conv_user;

static dlf_tensor *g_conv(dlf_tape *t, dlf_tensor **in, void *u)
{
    conv_user *cu = (conv_user *)u;
    dlf_tensor *b = cu->c->bias ? in[2] : NULL;
    return cu->naive ? dlf_conv2d_naive(t, in[0], in[1], b, cu->c->stride, cu->c->pad)
                     : dlf_conv2d(t, in[0], in[1], b, cu->c->stride, cu->c->pad);
}

static const conv_case conv_cases[] = {
    /* N  C  H  W  K  R  S  st pad bias */
    {1, 1, 5, 5, 1, 1, 1, 1, 0, 1},   /* 1x1, batch 1 */
    {2, 3, 6, 5, 4, 3, 3, 1, 1, 1},   /* 3x3 pad 1, non-square input */
    {1, 2, 7, 6, 3, 3, 3, 2, 1, 0},   /* stride 2 */
    {2, 2, 9, 8, 2, 5, 5, 2, 2, 1},   /* 5x5 stride 2 pad 2, as the course's first conv */
    {1, 3, 5, 7, 2, 3, 3, 1, 0, 1},   /* pad 0 */
    {2, 1, 8, 6, 2, 3, 2, 2, 2, 1},   /* non-square kernel, pad 2 */
    {1, 2, 4, 4, 3, 1, 1, 2, 1, 0},   /* 1x1 with stride 2 and padding */
};

static void test_conv_gradcheck(void)
{
    int i, naive;
    GROUP("conv2d gradcheck");
    for (i = 0; i < (int)(sizeof conv_cases / sizeof conv_cases[0]); i++) {
        const conv_case *c = &conv_cases[i];
        dlf_tensor *in[3];
        for (naive = 0; naive < 2; naive++) {
            conv_user u;
            char what[128];
            u.c = c;
            u.naive = naive;
            in[0] = randn(4, c->N, c->C, c->H, c->W);
            in[1] = randn(4, c->K, c->C, c->R, c->S);
            in[2] = randn(1, c->K, 1, 1, 1);
            snprintf(what, sizeof what, "%s case %d (N%d C%d %dx%d K%d %dx%d stride %d pad %d)",
                     naive ? "naive" : "im2col", i, c->N, c->C, c->H, c->W, c->K, c->R, c->S, c->stride, c->pad);
            GRADCHECK(g_conv, in, c->bias ? 3 : 2, &u, what);
            free_all(in, 3);
        }
    }
}

/* im2col against the direct loops, forward and all three gradients, on shapes
   that do not divide the micro-kernel's tiles. */
static void test_conv_vs_naive(void)
{
    static const conv_case cases[] = {
        {3, 5, 11, 7, 6, 3, 3, 1, 1, 1},
        {2, 7, 13, 10, 17, 5, 5, 2, 2, 1},
        {4, 3, 9, 9, 5, 3, 2, 3, 1, 0},
        {1, 32, 14, 14, 32, 3, 3, 1, 1, 1},
        {5, 4, 6, 11, 9, 1, 1, 1, 0, 1},
        {2, 8, 7, 7, 16, 3, 3, 2, 1, 1},
        {37, 2, 10, 10, 3, 3, 3, 1, 1, 0},   /* dx in groups of 20 images (2048 columns / 100), the last of 17 */
    };
    int i, j;
    static char group[64];
    snprintf(group, sizeof group, "conv2d im2col vs naive (%s)", dlf_kernel_name());
    GROUP(group);
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        const conv_case *c = &cases[i];
        dlf_tensor *x = randn(4, c->N, c->C, c->H, c->W), *w = randn(4, c->K, c->C, c->R, c->S);
        dlf_tensor *b = randn(1, c->K, 1, 1, 1), *seed;
        dlf_tensor *gx[3], *gw[3], *gb[3], *y[3];
        dlf_tape t[3];
        char what[96];
        for (j = 0; j < 3; j++) {   /* 0: dlf_conv2d (implicit), 1: naive, 2: im2col */
            dlf_tape_init(&t[j]);
            dlf_tensor_requires_grad(x); dlf_tensor_requires_grad(w); dlf_tensor_requires_grad(b);
            dlf_zero_grad(x); dlf_zero_grad(w); dlf_zero_grad(b);
            y[j] = j == 1 ? dlf_conv2d_naive(&t[j], x, w, c->bias ? b : NULL, c->stride, c->pad)
                 : j == 2 ? dlf_conv2d_im2col(&t[j], x, w, c->bias ? b : NULL, c->stride, c->pad)
                          : dlf_conv2d(&t[j], x, w, c->bias ? b : NULL, c->stride, c->pad);
            seed = dlf_tape_tensor(&t[j], y[j]->ndim, y[j]->shape);
            {
                dlf_rng r2;
                dlf_rng_seed(&r2, 7);
                dlf_fill_normal(seed, &r2, 0.0f, 1.0f);
            }
            dlf_backward_seed(&t[j], y[j], seed->data);
            gx[j] = dlf_clone(&t[j], x); memcpy(gx[j]->data, x->grad, (size_t)x->size * 4);
            gw[j] = dlf_clone(&t[j], w); memcpy(gw[j]->data, w->grad, (size_t)w->size * 4);
            gb[j] = dlf_clone(&t[j], b); memcpy(gb[j]->data, b->grad, (size_t)b->size * 4);
        }
        snprintf(what, sizeof what, "case %d y", i);
        CHECK(dlf_same_shape(y[0], y[1]), "case %d shapes", i);
        CHECK_CLOSE(y[0]->data, y[1]->data, y[1]->size, 1e-4f, 1e-4f, what);
        snprintf(what, sizeof what, "case %d dx", i);
        CHECK_CLOSE(gx[0]->data, gx[1]->data, x->size, 1e-4f, 1e-4f, what);
        snprintf(what, sizeof what, "case %d dw", i);
        CHECK_CLOSE(gw[0]->data, gw[1]->data, w->size, 2e-4f, 1e-4f, what);
        snprintf(what, sizeof what, "case %d db", i);
        CHECK_CLOSE(gb[0]->data, gb[1]->data, b->size, 2e-4f, 1e-4f, what);
        CHECK(memcmp(y[2]->data, y[0]->data, (size_t)y[0]->size * 4) == 0, "case %d: im2col forward, same bits as implicit", i);
        CHECK(memcmp(gx[2]->data, gx[0]->data, (size_t)x->size * 4) == 0, "case %d: im2col dx, same bits", i);
        snprintf(what, sizeof what, "case %d dw im2col vs naive", i);
        CHECK_CLOSE(gw[2]->data, gw[1]->data, w->size, 2e-4f, 1e-4f, what);
        {   /* without grad, dlf_conv2d packs straight from the image (no col): same bits */
            dlf_tensor *y_eval;
            int same;
            dlf_tape_set_grad(&t[0], 0);
            y_eval = dlf_conv2d(&t[0], x, w, c->bias ? b : NULL, c->stride, c->pad);
            dlf_tape_set_grad(&t[0], 1);
            same = dlf_same_shape(y_eval, y[0]) && memcmp(y_eval->data, y[0]->data, (size_t)y[0]->size * 4) == 0;
            CHECK(same, "case %d: the no-grad forward gives the training forward's bits", i);
        }
        dlf_tape_destroy(&t[0]);
        dlf_tape_destroy(&t[1]);
        dlf_tape_destroy(&t[2]);
        dlf_tensor_free(x); dlf_tensor_free(w); dlf_tensor_free(b);
    }
}

/* A hand-computed case, and the same numbers whatever the thread count. */
static void test_conv_values_threads(void)
{
    float xv[16], wv[4] = {1, 2, 3, 4};
    int xs[4] = {1, 1, 4, 4}, ws[4] = {1, 1, 2, 2}, i, nt;
    dlf_tensor *x, *w, *y;
    dlf_tape t;
    float first[2][64];
    GROUP("conv2d values");
    for (i = 0; i < 16; i++) xv[i] = (float)i;
    x = dlf_tensor_from(4, xs, xv);
    w = dlf_tensor_from(4, ws, wv);
    dlf_tape_init(&t);
    y = dlf_conv2d(&t, x, w, NULL, 2, 0);   /* 2x2 windows, stride 2: (1,1,2,2) */
    /* window at (0,0): 0*1 + 1*2 + 4*3 + 5*4 = 34; at (1,1): 10 + 22 + 42 + 60 = 134 */
    CHECK(y->shape[2] == 2 && y->shape[3] == 2, "shape");
    CHECK(y->data[0] == 34.0f && y->data[3] == 134.0f, "y = %g %g", y->data[0], y->data[3]);
    y = dlf_conv2d(&t, x, w, NULL, 1, 1);   /* pad 1: (1,1,5,5), corner sees only x[0][0]*w[1][1] */
    CHECK(y->shape[2] == 5 && y->data[0] == 0.0f && y->data[24] == 15.0f * 1.0f, "padded corners %g %g", y->data[0], y->data[24]);
    EXPECT_PANIC(dlf_conv2d(&t, w, x, NULL, 1, 0), "kernel is larger");
    {
        dlf_tensor *w3 = randn(4, 2, 3, 3, 3);
        EXPECT_PANIC(dlf_conv2d(&t, x, w3, NULL, 1, 1), "(2, 3, 3, 3)");
        EXPECT_PANIC(dlf_conv2d(&t, x, w, w3, 1, 1), "dlf_conv2d: want b");
        EXPECT_PANIC(dlf_conv2d(&t, x, w, NULL, 0, 1), "stride");
        dlf_tensor_free(w3);
    }
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
    dlf_tensor_free(w);
    /* thread-count independence of forward and backward */
    x = randn(4, 8, 16, 12, 12);
    w = randn(4, 16, 16, 3, 3);
    for (nt = 0; nt < 2; nt++) {
        dlf_tensor *l;
        dlf_set_threads(nt + 1);
        dlf_tape_init(&t);
        dlf_tensor_requires_grad(x); dlf_tensor_requires_grad(w);
        dlf_zero_grad(x); dlf_zero_grad(w);
        y = dlf_conv2d(&t, x, w, NULL, 1, 1);
        l = dlf_sum_all(&t, dlf_square(&t, y));
        dlf_backward(&t, l);
        for (i = 0; i < 32; i++) first[nt][i] = y->data[i * 97];
        for (i = 0; i < 16; i++) first[nt][32 + i] = x->grad[i * 101];
        for (i = 0; i < 16; i++) first[nt][48 + i] = w->grad[i * 71];
        dlf_tape_destroy(&t);
    }
    dlf_set_threads(2);
    CHECK(memcmp(first[0], first[1], sizeof first[0]) == 0, "conv results differ between 1 and 2 threads");
    dlf_tensor_free(x);
    dlf_tensor_free(w);
}

/* ---------------------------------------------------------------- activations */

typedef struct act_user { int which; float a, b, c; int axis; } act_user;

static dlf_tensor *g_act(dlf_tape *t, dlf_tensor **in, void *u)
{
    act_user *au = (act_user *)u;
    switch (au->which) {
    case 0: return dlf_leaky_relu(t, in[0], au->a);
    case 1: return dlf_general_relu(t, in[0], au->a, au->b, au->c);
    case 2: return dlf_softmax(t, in[0], au->axis);
    default: return dlf_log_softmax(t, in[0], au->axis);
    }
}

static void test_activations(void)
{
    dlf_tensor *x = randn(3, 2, 3, 4, 1), *y, *big;
    act_user u;
    dlf_tape t;
    int i, j, axis;
    GROUP("activations");
    memset(&u, 0, sizeof u);
    u.which = 0; u.a = 0.1f;
    GRADCHECK(g_act, &x, 1, &u, "leaky_relu");
    u.which = 1; u.a = 0.1f; u.b = 0.4f; u.c = 0.8f;
    GRADCHECK(g_act, &x, 1, &u, "general_relu with clamp");
    u.c = 0.0f;
    GRADCHECK(g_act, &x, 1, &u, "general_relu without clamp");
    for (axis = -1; axis < 3; axis++) {
        char what[64];
        u.axis = axis;
        u.which = 2;
        snprintf(what, sizeof what, "softmax axis %d", axis);
        GRADCHECK(g_act, &x, 1, &u, what);
        u.which = 3;
        snprintf(what, sizeof what, "log_softmax axis %d", axis);
        GRADCHECK(g_act, &x, 1, &u, what);
    }
    dlf_tape_init(&t);
    /* values: general_relu(x, 0.1, 0.4, 0.8) */
    {
        float xv[4] = {-2.0f, 0.5f, 3.0f, 1.0f};
        int s = 4;
        dlf_tensor *xx = dlf_tensor_from(1, &s, xv);
        y = dlf_general_relu(&t, xx, 0.1f, 0.4f, 0.8f);
        volatile float maxv = 0.8f;  /* a stored float: a literal may carry more precision (x87) */
        CHECK(fabsf(y->data[0] + 0.6f) < 1e-6f && fabsf(y->data[1] - 0.1f) < 1e-6f &&
              y->data[2] == maxv && fabsf(y->data[3] - 0.6f) < 1e-6f,
              "general_relu values %g %g %g %g", y->data[0], y->data[1], y->data[2], y->data[3]);
        y = dlf_leaky_relu(&t, xx, 0.01f);
        CHECK(fabsf(y->data[0] + 0.02f) < 1e-7f && y->data[2] == 3.0f, "leaky_relu values");
        dlf_tensor_free(xx);
    }
    /* softmax rows sum to 1 */
    y = dlf_softmax(&t, x, 1);
    for (i = 0; i < 2; i++)
        for (j = 0; j < 4; j++) {
            float s = y->data[i * 12 + 0 * 4 + j] + y->data[i * 12 + 1 * 4 + j] + y->data[i * 12 + 2 * 4 + j];
            CHECK(fabsf(s - 1.0f) < 1e-6f, "softmax sum %g", s);
        }
    /* log_softmax at 1000: the naive log(exp(x)/sum) overflows, logsumexp does not */
    big = dlf_tensor_new2(2, 3);
    big->data[0] = 1000.0f; big->data[1] = 1001.0f; big->data[2] = 1002.0f;
    big->data[3] = -1000.0f; big->data[4] = 0.0f; big->data[5] = 1000.0f;
    y = dlf_log_softmax(&t, big, -1);
    {
        /* reference: x - (1002 + log(e^-2 + e^-1 + 1)) */
        double lse = 1002.0 + log(exp(-2.0) + exp(-1.0) + 1.0);
        float ref[6];
        ref[0] = (float)(1000.0 - lse); ref[1] = (float)(1001.0 - lse); ref[2] = (float)(1002.0 - lse);
        ref[3] = -2000.0f; ref[4] = -1000.0f; ref[5] = 0.0f;
        CHECK_CLOSE(y->data, ref, 6, 1e-4f, 1e-6f, "log_softmax at +-1000");
    }
    y = dlf_softmax(&t, big, -1);
    CHECK(y->data[5] == 1.0f && y->data[3] == 0.0f && isfinite(y->data[0]), "softmax at 1000 finite");
    EXPECT_PANIC(dlf_softmax(&t, big, 2), "dlf_softmax");
    dlf_tensor_free(big);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
}

/* ---------------------------------------------------------------- pooling */

typedef struct pool_case { int N, C, H, W, k, stride, pad; } pool_case;
typedef struct pool_user { const pool_case *c; int avg; } pool_user;

static dlf_tensor *g_pool(dlf_tape *t, dlf_tensor **in, void *u)
{
    pool_user *pu = (pool_user *)u;
    return pu->avg ? dlf_avgpool2d(t, in[0], pu->c->k, pu->c->stride, pu->c->pad)
                   : dlf_maxpool2d(t, in[0], pu->c->k, pu->c->stride, pu->c->pad);
}

static dlf_tensor *g_gap(dlf_tape *t, dlf_tensor **in, void *u)
{
    (void)u;
    return dlf_global_avgpool(t, in[0]);
}

static void test_pooling(void)
{
    static const pool_case cases[] = {
        {1, 1, 4, 4, 2, 2, 0},  /* batch 1, the classic 2x2 */
        {2, 3, 5, 7, 3, 1, 1},  /* stride 1 pad 1, non-square */
        {1, 2, 7, 6, 3, 2, 1},  /* stride 2 */
        {2, 1, 9, 8, 5, 2, 2},  /* 5x5 pad 2 */
        {1, 2, 3, 5, 1, 1, 0},  /* 1x1 */
        {1, 1, 6, 5, 3, 0, 0},  /* stride 0 means k */
    };
    int i, avg;
    dlf_tape t;
    dlf_tensor *x, *y;
    GROUP("pooling");
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        const pool_case *c = &cases[i];
        for (avg = 0; avg < 2; avg++) {
            pool_user u;
            char what[96];
            x = randn(4, c->N, c->C, c->H, c->W);
            fill_distinct(x);
            u.c = c;
            u.avg = avg;
            snprintf(what, sizeof what, "%s case %d (%dx%d k%d stride %d pad %d)", avg ? "avgpool" : "maxpool",
                     i, c->H, c->W, c->k, c->stride, c->pad);
            GRADCHECK(g_pool, &x, 1, &u, what);
            dlf_tensor_free(x);
        }
    }
    x = randn(4, 2, 3, 5, 4);
    GRADCHECK(g_gap, &x, 1, NULL, "global_avgpool");
    dlf_tensor_free(x);
    /* values */
    dlf_tape_init(&t);
    x = dlf_tensor_new4(1, 1, 4, 4);
    dlf_fill_arange(x, 0.0f, 1.0f);
    y = dlf_maxpool2d(&t, x, 2, 2, 0);
    CHECK(y->shape[2] == 2 && y->data[0] == 5.0f && y->data[3] == 15.0f, "maxpool values %g %g", y->data[0], y->data[3]);
    y = dlf_avgpool2d(&t, x, 2, 0, 0);
    CHECK(y->data[0] == 2.5f && y->data[3] == 12.5f, "avgpool values %g %g", y->data[0], y->data[3]);
    y = dlf_avgpool2d(&t, x, 3, 1, 1);   /* corner: (0+1+4+5)/9, padding counts */
    CHECK(y->shape[2] == 4 && fabsf(y->data[0] - 10.0f / 9.0f) < 1e-6f, "avgpool padded corner %g", y->data[0]);
    y = dlf_maxpool2d(&t, dlf_mul_scalar(&t, x, -1.0f), 3, 1, 1);  /* all negative: pad must not win */
    CHECK(y->data[0] == 0.0f && y->data[15] == -10.0f, "maxpool ignores padding: %g %g", y->data[0], y->data[15]);
    y = dlf_global_avgpool(&t, x);
    CHECK(y->ndim == 2 && y->shape[1] == 1 && y->data[0] == 7.5f, "global avgpool %g", y->data[0]);
    EXPECT_PANIC(dlf_maxpool2d(&t, x, 2, 2, 2), "pad <= k/2");
    EXPECT_PANIC(dlf_avgpool2d(&t, y, 2, 2, 0), "dlf_avgpool2d: want x (N, C, H, W); got x (1, 1)");
    EXPECT_PANIC(dlf_global_avgpool(&t, y), "dlf_global_avgpool");
    dlf_tensor_free(x);
    dlf_tape_destroy(&t);
}

/* ---------------------------------------------------------------- flatten, embedding */

static dlf_tensor *g_flatten(dlf_tape *t, dlf_tensor **in, void *u)
{
    (void)u;
    return dlf_mul(t, dlf_flatten(t, in[0]), dlf_flatten(t, in[0]));
}

static dlf_tensor *g_embedding(dlf_tape *t, dlf_tensor **in, void *u)
{
    return dlf_embedding(t, (dlf_tensor *)u, in[0]);
}

static void test_flatten_embedding(void)
{
    dlf_tensor *x = randn(4, 2, 3, 2, 2), *w, *idx, *y;
    dlf_tape t;
    float ids[6] = {1, 4, 1, 0, 2, 1};
    int is[2] = {2, 3};
    GROUP("flatten, embedding");
    dlf_tape_init(&t);
    y = dlf_flatten(&t, x);
    CHECK(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 12 && y->data == x->data, "flatten is a (2,12) view");
    dlf_tape_destroy(&t);
    GRADCHECK(g_flatten, &x, 1, NULL, "flatten");
    w = randn(2, 5, 3, 1, 1);
    idx = dlf_tensor_from(2, is, ids);
    GRADCHECK(g_embedding, &w, 1, idx, "embedding (2,3) ids, repeated");
    dlf_tape_init(&t);
    y = dlf_embedding(&t, idx, w);
    CHECK(y->ndim == 3 && y->shape[2] == 3 && y->data[1 * 3 * 3 + 2 * 3 + 1] == w->data[1 * 3 + 1], "embedding rows");
    idx->data[3] = 5.0f;
    EXPECT_PANIC(dlf_embedding(&t, idx, w), "dlf_embedding: index 3");
    idx->data[3] = 0.5f;
    EXPECT_PANIC(dlf_embedding(&t, idx, w), "not a whole number");
    idx->data[3] = NAN;       /* checked before any conversion to int (undefined for NaN: UBSan) */
    EXPECT_PANIC(dlf_embedding(&t, idx, w), "index 3 of (2, 3) is nan");
    idx->data[3] = 3.0e9f;    /* past INT_MAX */
    EXPECT_PANIC(dlf_embedding(&t, idx, w), "not a whole number");
    {   /* the losses take the same path: a NaN class id in cross-entropy */
        int s2[2] = {2, 3}, s1[1] = {2};
        float lg[6] = {0, 1, 2, 3, 4, 5}, tg[2] = {1, NAN};
        dlf_tensor *logits = dlf_tensor_from(2, s2, lg), *target = dlf_tensor_from(1, s1, tg);
        EXPECT_PANIC(dlf_cross_entropy(&t, logits, target), "is nan, not a whole number");
        dlf_tensor_free(logits); dlf_tensor_free(target);
    }
    dlf_tape_destroy(&t);
    dlf_tensor_free(x); dlf_tensor_free(w); dlf_tensor_free(idx);
}

/* ---------------------------------------------------------------- Sequential, arena */

/* The course's CNN: conv 1->8 5x5, 8->16, 16->32, 32->32 3x3, all stride 2, pad ks//2,
   ReLU after each, global average pool, Linear 32->10. */
static void build_cnn(dlf_seq *s)
{
    dlf_seq_init(s);
    dlf_seq_add(s, dlf_layer_conv2d(1, 8, 5, 2, 2, 1, &rng));
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(s, dlf_layer_conv2d(8, 16, 3, 2, 1, 1, &rng));
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(s, dlf_layer_conv2d(16, 32, 3, 2, 1, 1, &rng));
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(s, dlf_layer_conv2d(32, 32, 3, 2, 1, 1, &rng));
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));
    dlf_seq_add(s, dlf_layer_linear(32, 10, 1, &rng));
}

static void test_seq_and_arena(void)
{
    dlf_seq s;
    dlf_tensor *params[16], *x, *target, *out = NULL, *loss;
    char names[16][DLF_PARAM_NAME_MAX];
    dlf_tape t;
    int n, i, step;
    long before = 0;
    GROUP("sequential");
    build_cnn(&s);
    n = dlf_seq_params(&s, params, names, 16);
    CHECK(n == 10, "10 parameters, got %d", n);
    CHECK(strcmp(names[0], "0.weight") == 0 && strcmp(names[1], "0.bias") == 0 &&
          strcmp(names[2], "2.weight") == 0 && strcmp(names[9], "9.bias") == 0,
          "state_dict names %s %s %s %s", names[0], names[1], names[2], names[9]);
    CHECK(params[0]->shape[0] == 8 && params[0]->shape[1] == 1 && params[0]->shape[2] == 5, "0.weight (8,1,5,5)");
    CHECK(dlf_seq_params(&s, NULL, NULL, 0) == 10, "count only");
    x = randn(4, 16, 1, 28, 28);
    target = dlf_tensor_new1(16);
    for (i = 0; i < 16; i++) target->data[i] = (float)(i % 10);
    GROUP("arena: zero allocations after the first step");
    dlf_tape_init(&t);
    for (step = 0; step < 3; step++) {
        if (step == 1) before = th_allocs;
        dlf_tape_reset(&t);
        dlf_zero_grads(params, n);
        out = dlf_seq_forward(&t, &s, x);
        loss = dlf_cross_entropy(&t, out, target);
        dlf_backward(&t, loss);
        for (i = 0; i < n; i++) {   /* a plain SGD step, so every step sees new numbers */
            int j;
            for (j = 0; j < params[i]->size; j++) params[i]->data[j] -= 0.01f * params[i]->grad[j];
        }
    }
    CHECK(out && out->shape[0] == 16 && out->shape[1] == 10, "cnn output (16,10)");
    CHECK(th_allocs == before, "steps 2 and 3 allocated %ld times", th_allocs - before);
    CHECK(params[0]->grad[0] != 0.0f, "conv1 weight got a gradient");
    dlf_tape_destroy(&t);
    dlf_seq_free(&s);
    dlf_tensor_free(x);
    dlf_tensor_free(target);
}

/* A ResNet-style block: conv-tanh-conv inside y = x + body(x), then a tanh. Smooth
   activations here: with ReLUs, a 1e-2 step on a weight moves dozens of pre-activations
   and some cross 0, so finite differences stop meaning anything (relu's own kinks are
   tested above). */
static dlf_seq *res_model;
static dlf_tensor *res_x;   /* the block's input; the checked tensor may be it or a parameter */

static dlf_tensor *graph_res(dlf_tape *t, dlf_tensor **in, void *user)
{
    (void)in;   /* gradcheck perturbs in[0] in place: x or one of the model's parameters */
    (void)user;
    return dlf_seq_forward(t, res_model, res_x);
}

static void test_residual(void)
{
    dlf_seq body, s, bad_body;
    dlf_tensor *params[8], *x, *in[1], *out;
    char names[8][DLF_PARAM_NAME_MAX];
    dlf_tape t;
    int n, i;
    GROUP("residual");
    dlf_seq_init(&body);
    dlf_seq_add(&body, dlf_layer_conv2d(3, 3, 3, 1, 1, 1, &rng));
    dlf_seq_add(&body, dlf_layer_simple(DLF_LAYER_TANH));
    dlf_seq_add(&body, dlf_layer_conv2d(3, 3, 3, 1, 1, 0, &rng));
    dlf_seq_init(&s);
    dlf_seq_add(&s, dlf_layer_conv2d(2, 3, 1, 1, 0, 1, &rng));
    dlf_seq_add(&s, dlf_layer_residual(&body));
    dlf_seq_add(&s, dlf_layer_simple(DLF_LAYER_TANH));
    CHECK(body.n == 0, "the block took the body's layers");
    n = dlf_seq_params(&s, params, names, 8);
    CHECK(n == 5, "5 parameters, got %d", n);
    CHECK(n == 5 && strcmp(names[2], "1.body.0.weight") == 0 && strcmp(names[3], "1.body.0.bias") == 0 &&
          strcmp(names[4], "1.body.2.weight") == 0, "nested state_dict names: %s %s %s", names[2], names[3], names[4]);
    x = randn(4, 2, 2, 5, 4);
    /* y = x + body(x) by hand, against the layer */
    dlf_tape_init(&t);
    {
        dlf_tensor *h0 = dlf_layer_forward(&t, &s.layers[0], x);
        dlf_tensor *b = dlf_seq_forward(&t, s.layers[1].body, h0);
        dlf_tensor *want = dlf_add(&t, h0, b);
        dlf_tensor *got = dlf_layer_forward(&t, &s.layers[1], h0);
        CHECK_CLOSE(got->data, want->data, want->size, 0.0f, 0.0f, "residual forward = x + body(x)");
    }
    res_model = &s;
    res_x = x;
    in[0] = x;
    GRADCHECK(graph_res, in, 1, NULL, "residual block, input");
    for (i = 0; i < n; i++) {
        char what[DLF_PARAM_NAME_MAX * 8 + 32];
        in[0] = params[i];
        snprintf(what, sizeof what, "residual block, %s", names[i]);
        GRADCHECK(graph_res, in, 1, NULL, what);
    }
    /* a body that changes the shape is an error, not a broadcast */
    dlf_seq_init(&bad_body);
    dlf_seq_add(&bad_body, dlf_layer_conv2d(3, 1, 1, 1, 0, 1, &rng));
    {
        dlf_layer bad = dlf_layer_residual(&bad_body);
        dlf_tape_reset(&t);
        out = dlf_layer_forward(&t, &s.layers[0], x);
        EXPECT_PANIC(dlf_layer_forward(&t, &bad, out), "the body turns (2, 3, 5, 4) into (2, 1, 5, 4)");
        dlf_layer_free(&bad);
    }
    dlf_tape_destroy(&t);
    dlf_seq_free(&s);
    dlf_tensor_free(x);
}

int main(void)
{
    th_init();
    dlf_rng_seed(&rng, 42);
    test_linear();
    test_conv_gradcheck();
    {   /* every micro-kernel this CPU runs, the portable one included */
        static const char *const kernels[] = {"portable", "avx2-fma", "avx512"};
        const char *before = dlf_kernel_name();
        int k;
        for (k = 0; k < 3; k++) {
            if (!dlf_kernel_available(kernels[k])) continue;
            dlf_set_kernel(kernels[k]);
            test_conv_vs_naive();
        }
        dlf_set_kernel(before);
    }
    test_conv_values_threads();
    test_activations();
    test_pooling();
    test_flatten_embedding();
    test_seq_and_arena();
    test_residual();
    TEST_MAIN_END();
}
