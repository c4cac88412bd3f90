/* test_layers_ext.c - the general conv2d (separate strides and pads, dilation, groups,
   non-square kernels: fast path against the naive loops and finite differences), pooling
   windows (non-square, ceil_mode, count_include_pad=False, adaptive; NaN in max windows),
   the losses' reductions, class weights, ignore_index and the plain BCE, and softmax's
   precision at large logits. The PyTorch values are in tests/ref (test_reference). */
#include <stdlib.h>
#define DLF_IMPLEMENTATION
#include "harness.h"

static dlf_rng rng;

static dlf_tensor *randn4(int d0, int d1, int d2, int d3)
{
    int s[4];
    dlf_tensor *x;
    s[0] = d0; s[1] = d1; s[2] = d2; s[3] = d3;
    x = dlf_tensor_new(4, s);
    dlf_fill_normal(x, &rng, 0.0f, 1.0f);
    return x;
}

static dlf_tensor *randn_n(int ndim, const int *s)
{
    dlf_tensor *x = dlf_tensor_new(ndim, s);
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

/* ---------------------------------------------------------------- conv2d_ex */

typedef struct conv_case {
    int N, C, H, W, K, R, S;
    dlf_conv2d_cfg cfg;            /* sh, sw, ph, pw, dh, dw, groups */
} conv_case;

static const conv_case CONVS[] = {
    {2, 3, 9, 8, 4, 3, 3, {2, 1, 1, 0, 1, 1, 1}},       /* stride (2,1), pad (1,0) */
    {1, 2, 10, 9, 3, 3, 3, {1, 1, 2, 2, 2, 2, 1}},      /* dilation 2 */
    {2, 4, 7, 7, 6, 3, 3, {1, 1, 1, 1, 1, 1, 2}},       /* groups 2 */
    {2, 4, 8, 8, 4, 3, 3, {2, 2, 1, 1, 1, 1, 4}},       /* depthwise */
    {1, 3, 7, 6, 2, 3, 1, {1, 1, 1, 0, 1, 1, 1}},       /* 3x1 kernel */
    {2, 6, 9, 11, 6, 3, 5, {2, 3, 1, 2, 2, 1, 3}},      /* everything */
    {1, 2, 5, 5, 2, 2, 2, {0, 0, 0, 0, 0, 0, 0}},       /* zeroed cfg: the defaults */
};

static dlf_tensor *g_conv_ex(dlf_tape *t, dlf_tensor **in, void *u)
{
    return dlf_conv2d_ex(t, in[0], in[1], in[2], (const dlf_conv2d_cfg *)u);
}

static dlf_tensor *g_conv_ex_naive(dlf_tape *t, dlf_tensor **in, void *u)
{
    return dlf_conv2d_naive_ex(t, in[0], in[1], in[2], (const dlf_conv2d_cfg *)u);
}

static void test_conv_ex_gradcheck(void)
{
    int i;
    GROUP("conv2d_ex gradcheck");
    for (i = 0; i < (int)(sizeof CONVS / sizeof CONVS[0]); i++) {
        const conv_case *c = &CONVS[i];
        int groups = c->cfg.groups ? c->cfg.groups : 1;
        dlf_tensor *in[3];
        char what[64];
        in[0] = randn4(c->N, c->C, c->H, c->W);
        in[1] = randn4(c->K, c->C / groups, c->R, c->S);
        in[2] = dlf_tensor_new(1, &c->K);
        dlf_fill_normal(in[2], &rng, 0.0f, 1.0f);
        dlf_tensor_requires_grad(in[0]); dlf_tensor_requires_grad(in[1]); dlf_tensor_requires_grad(in[2]);
        snprintf(what, sizeof what, "conv2d_ex case %d", i);
        GRADCHECK(g_conv_ex, in, 3, (void *)&c->cfg, what);
        snprintf(what, sizeof what, "conv2d_naive_ex case %d", i);
        GRADCHECK(g_conv_ex_naive, in, 3, (void *)&c->cfg, what);
        dlf_tensor_free(in[0]); dlf_tensor_free(in[1]); dlf_tensor_free(in[2]);
    }
}

/* The fast path against the naive loops, forward and both gradients, on shapes large
   enough for several K blocks and panels and for the threads to split the work. */
static void test_conv_ex_fast_vs_naive(void)
{
    static const conv_case BIG[] = {
        {3, 16, 14, 13, 24, 3, 3, {2, 1, 1, 0, 1, 1, 1}},
        {2, 32, 12, 12, 32, 3, 3, {1, 1, 2, 2, 2, 2, 1}},
        {2, 32, 10, 10, 32, 3, 3, {1, 1, 1, 1, 1, 1, 32}},   /* depthwise */
        {2, 24, 11, 9, 36, 5, 3, {2, 1, 2, 1, 1, 2, 4}},
        {4, 40, 8, 8, 40, 3, 3, {1, 1, 1, 1, 1, 1, 1}},      /* the common case through _ex */
    };
    int i, j;
    GROUP("conv2d_ex fast vs naive");
    for (i = 0; i < (int)(sizeof BIG / sizeof BIG[0]); i++) {
        const conv_case *c = &BIG[i];
        dlf_tensor *x = randn4(c->N, c->C, c->H, c->W), *w = randn4(c->K, c->C / c->cfg.groups, c->R, c->S);
        dlf_tensor *y[2], *gx[2], *gw[2];
        dlf_tape t[2];
        char what[64];
        dlf_tensor_requires_grad(x);
        dlf_tensor_requires_grad(w);
        for (j = 0; j < 2; j++) {
            dlf_tensor *seed;
            dlf_tape_init(&t[j]);
            dlf_zero_grad(x);
            dlf_zero_grad(w);
            y[j] = j ? dlf_conv2d_naive_ex(&t[j], x, w, NULL, &c->cfg) : dlf_conv2d_ex(&t[j], x, w, NULL, &c->cfg);
            seed = dlf_tensor_new(y[j]->ndim, y[j]->shape);
            { dlf_rng r2; dlf_rng_seed(&r2, 7); dlf_fill_normal(seed, &r2, 0.0f, 1.0f); }
            dlf_backward_seed(&t[j], y[j], seed->data);
            dlf_tensor_free(seed);
            gx[j] = dlf_tensor_new(x->ndim, x->shape);
            gw[j] = dlf_tensor_new(w->ndim, w->shape);
            memcpy(gx[j]->data, x->grad, (size_t)x->size * sizeof(float));
            memcpy(gw[j]->data, w->grad, (size_t)w->size * sizeof(float));
        }
        snprintf(what, sizeof what, "case %d: y", i);
        CHECK_CLOSE(y[0]->data, y[1]->data, y[1]->size, 1e-4f, 1e-4f, what);
        snprintf(what, sizeof what, "case %d: dx", i);
        CHECK_CLOSE(gx[0]->data, gx[1]->data, gx[1]->size, 1e-4f, 1e-4f, what);
        snprintf(what, sizeof what, "case %d: dw", i);
        CHECK_CLOSE(gw[0]->data, gw[1]->data, gw[1]->size, 1e-3f, 1e-4f, what);
        for (j = 0; j < 2; j++) {
            dlf_tape_destroy(&t[j]);
            dlf_tensor_free(gx[j]);
            dlf_tensor_free(gw[j]);
        }
        dlf_tensor_free(x);
        dlf_tensor_free(w);
    }
}

/* The common case through dlf_conv2d_ex is dlf_conv2d itself (same node, same bits);
   the simple calls still agree with the naive loops; the checks name the bad argument. */
static void test_conv_ex_api(void)
{
    dlf_tape t;
    dlf_tensor *x = randn4(2, 4, 6, 6), *w = randn4(6, 4, 3, 3), *w2 = randn4(6, 2, 3, 3), *y1, *y2;
    dlf_conv2d_cfg cfg;
    dlf_layer l;
    dlf_rng r;
    GROUP("conv2d_ex api");
    dlf_tape_init(&t);
    dlf_tensor_requires_grad(x);
    memset(&cfg, 0, sizeof cfg);
    cfg.sh = cfg.sw = 2;
    cfg.ph = cfg.pw = 1;
    y1 = dlf_conv2d(&t, x, w, NULL, 2, 1);
    y2 = dlf_conv2d_ex(&t, x, w, NULL, &cfg);
    CHECK(memcmp(y1->data, y2->data, (size_t)y1->size * sizeof(float)) == 0, "conv2d_ex common case = conv2d bit for bit");
    CHECK(t.nodes[t.n_nodes - 1].op == DLF_OP_CONV2D, "the common case records a plain conv2d node");
    cfg.pw = 0;
    y2 = dlf_conv2d_ex(&t, x, w, NULL, &cfg);
    CHECK(t.nodes[t.n_nodes - 1].op == DLF_OP_CONV2D_EX && y2->shape[2] == 3 && y2->shape[3] == 2,
          "pad (1,0): a conv2d_ex node, output (3, 2)");
    CHECK(strcmp(dlf_op_name(DLF_OP_CONV2D_EX), "conv2d_ex") == 0, "op name");
    cfg.pw = 1;
    cfg.groups = 3;
    EXPECT_PANIC(dlf_conv2d_ex(&t, x, w2, NULL, &cfg), "groups >= 1 dividing both C and K");
    cfg.groups = 2;
    EXPECT_PANIC(dlf_conv2d_ex(&t, x, w, NULL, &cfg), "w's dim 1 must be C/groups");
    cfg.dh = 4;
    EXPECT_PANIC(dlf_conv2d_ex(&t, x, w2, NULL, &cfg), "dilated");
    cfg.dh = -1;
    EXPECT_PANIC(dlf_conv2d_ex(&t, x, w2, NULL, &cfg), "dilation >= 1");
    EXPECT_PANIC(dlf_conv2d_ex(&t, x, w2, NULL, NULL), "dlf_conv2d_ex: cfg is NULL");
    EXPECT_PANIC(dlf_conv2d_ex(&t, NULL, w2, NULL, &cfg), "x is NULL");
    /* the layer: PyTorch's weight shape and init fan, the layer forward = the op */
    dlf_rng_seed(&r, 3);
    memset(&cfg, 0, sizeof cfg);
    cfg.sh = 2; cfg.pw = 1; cfg.dw = 2; cfg.groups = 2;
    l = dlf_layer_conv2d_ex(4, 6, 3, 2, &cfg, 1, &r);
    CHECK(dlf_layer_ok(&l) && l.weight->shape[0] == 6 && l.weight->shape[1] == 2 && l.weight->shape[2] == 3 &&
          l.weight->shape[3] == 2 && l.bias && l.bias->shape[0] == 6, "dlf_layer_conv2d_ex: weight (6, 2, 3, 2), bias (6)");
    {
        float bound = 1.0f / sqrtf(2.0f * 3 * 2), mx = 0.0f;
        int i;
        for (i = 0; i < l.weight->size; i++) mx = fabsf(l.weight->data[i]) > mx ? fabsf(l.weight->data[i]) : mx;
        CHECK(mx <= bound && mx > 0.5f * bound, "init bound 1/sqrt(fan_in = C/groups*R*S): max %g, bound %g",
              (double)mx, (double)bound);
    }
    y1 = dlf_layer_forward(&t, &l, x);
    y2 = dlf_conv2d_ex(&t, x, l.weight, l.bias, &l.conv);
    CHECK(y1 && y2 && dlf_same_shape(y1, y2) && memcmp(y1->data, y2->data, (size_t)y1->size * 4) == 0,
          "the layer runs dlf_conv2d_ex with its cfg");
    EXPECT_PANIC(dlf_layer_conv2d_ex(4, 6, 3, 3, &cfg, 1, NULL), "r is NULL");
    cfg.groups = 4;
    EXPECT_PANIC(dlf_layer_conv2d_ex(4, 6, 3, 3, &cfg, 1, &r), "groups >= 1 dividing c_in and c_out");
    dlf_layer_free(&l);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x); dlf_tensor_free(w); dlf_tensor_free(w2);
}

/* ---------------------------------------------------------------- pooling */

typedef struct pool_user { int which; dlf_pool_cfg cfg; int P, Q; } pool_user;

static dlf_tensor *g_pool(dlf_tape *t, dlf_tensor **in, void *u)
{
    pool_user *pu = (pool_user *)u;
    switch (pu->which) {
    case 0: return dlf_maxpool2d_ex(t, in[0], &pu->cfg);
    case 1: return dlf_avgpool2d_ex(t, in[0], &pu->cfg);
    case 2: return dlf_adaptive_maxpool2d(t, in[0], pu->P, pu->Q);
    default: return dlf_adaptive_avgpool2d(t, in[0], pu->P, pu->Q);
    }
}

static void test_pool_ex(void)
{
    static const dlf_pool_cfg CFGS[] = {
        {3, 2, 2, 1, 1, 0, 0, 0}, {3, 3, 2, 2, 1, 1, 1, 0}, {3, 3, 2, 2, 1, 1, 0, 1},
        {2, 3, 2, 2, 1, 1, 1, 1}, {3, 3, 3, 3, 0, 0, 1, 0}, {4, 2, 3, 2, 2, 1, 1, 1},
    };
    static const int ADAPT[][2] = {{3, 4}, {2, 2}, {9, 8}, {1, 1}, {4, 3}};
    dlf_tensor *x = randn4(2, 2, 9, 8), *in[1];
    dlf_tape t;
    pool_user pu;
    char what[64];
    int i, w;
    GROUP("pooling windows");
    fill_distinct(x);
    dlf_tensor_requires_grad(x);
    in[0] = x;
    for (i = 0; i < (int)(sizeof CFGS / sizeof CFGS[0]); i++)
        for (w = 0; w < 2; w++) {
            pu.which = w;
            pu.cfg = CFGS[i];
            snprintf(what, sizeof what, "%s cfg %d", w ? "avgpool2d_ex" : "maxpool2d_ex", i);
            GRADCHECK(g_pool, in, 1, &pu, what);
        }
    for (i = 0; i < (int)(sizeof ADAPT / sizeof ADAPT[0]); i++)
        for (w = 2; w < 4; w++) {
            pu.which = w;
            pu.P = ADAPT[i][0];
            pu.Q = ADAPT[i][1];
            snprintf(what, sizeof what, "adaptive %s to %dx%d", w == 2 ? "max" : "avg", pu.P, pu.Q);
            GRADCHECK(g_pool, in, 1, &pu, what);
        }
    /* square windows through _ex = the simple calls, bit for bit */
    dlf_tape_init(&t);
    {
        dlf_pool_cfg c;
        dlf_tensor *a, *b;
        memset(&c, 0, sizeof c);
        c.kh = c.kw = 3; c.sh = c.sw = 2; c.ph = c.pw = 1;
        a = dlf_maxpool2d(&t, x, 3, 2, 1);
        b = dlf_maxpool2d_ex(&t, x, &c);
        CHECK(dlf_same_shape(a, b) && memcmp(a->data, b->data, (size_t)a->size * 4) == 0, "maxpool2d_ex = maxpool2d");
        a = dlf_avgpool2d(&t, x, 3, 2, 1);
        b = dlf_avgpool2d_ex(&t, x, &c);
        CHECK(dlf_same_shape(a, b), "avgpool2d_ex shape = avgpool2d");
        CHECK_CLOSE(b->data, a->data, a->size, 1e-6f, 1e-6f, "avgpool2d_ex = avgpool2d");
        /* adaptive to 1x1 is the global average */
        a = dlf_adaptive_avgpool2d(&t, x, 1, 1);
        b = dlf_global_avgpool(&t, x);
        CHECK_CLOSE(a->data, b->data, b->size, 1e-6f, 1e-6f, "adaptive_avgpool2d(1, 1) = global_avgpool");
        /* ceil_mode: H = 9, k 3, s 3, pad 0: 3 either way; W = 8: floor 2, ceil 3 */
        memset(&c, 0, sizeof c);
        c.kh = c.kw = 3; c.ceil_mode = 1;
        b = dlf_maxpool2d_ex(&t, x, &c);
        CHECK(b->shape[2] == 3 && b->shape[3] == 3, "ceil_mode output 3x3, got %dx%d", b->shape[2], b->shape[3]);
        /* the window may not start in the padding: H 5, k 2, s 2, pad 1 -> ceil gives 4, less one = 3 */
        {
            dlf_tensor *x5 = randn4(1, 1, 5, 5);
            c.kh = c.kw = 2; c.sh = c.sw = 2; c.ph = c.pw = 1;
            b = dlf_avgpool2d_ex(&t, x5, &c);
            CHECK(b->shape[2] == 3, "ceil_mode drops the window starting in the padding: P %d", b->shape[2]);
            dlf_tensor_free(x5);
        }
        EXPECT_PANIC(dlf_maxpool2d_ex(&t, x, NULL), "dlf_maxpool2d_ex: cfg is NULL");
        c.ph = 2;
        EXPECT_PANIC(dlf_maxpool2d_ex(&t, x, &c), "half the window");
        EXPECT_PANIC(dlf_adaptive_maxpool2d(&t, x, 0, 2), "P, Q >= 1");
        EXPECT_PANIC(dlf_layer_pool_ex(DLF_LAYER_RELU, &c), "MAXPOOL2D or AVGPOOL2D");
        EXPECT_PANIC(dlf_layer_adaptive_pool(DLF_LAYER_ADAPTIVE_MAXPOOL2D, 0, 1), "output size >= 1");
        CHECK(strcmp(dlf_layer_kind_name(DLF_LAYER_ADAPTIVE_MAXPOOL2D), "AdaptiveMaxPool2d") == 0, "layer kind name");
    }
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
}

/* count_include_pad=False by hand: a 2x2 image of ones, window 3, pad 1, stride 1:
   include counts 9 cells (4 ones: 4/9), exclude only the 4 in bounds (1). */
static void test_avgpool_exclude_values(void)
{
    int s[4] = {1, 1, 2, 2};
    dlf_tensor *x = dlf_tensor_new(4, s), *y;
    dlf_pool_cfg c;
    dlf_tape t;
    GROUP("avgpool count_include_pad");
    dlf_fill(x, 1.0f);
    dlf_tape_init(&t);
    memset(&c, 0, sizeof c);
    c.kh = c.kw = 3; c.sh = c.sw = 1; c.ph = c.pw = 1;
    y = dlf_avgpool2d_ex(&t, x, &c);
    CHECK(fabsf(y->data[0] - 4.0f / 9.0f) < 1e-7f, "count_include_pad: 4/9, got %g", (double)y->data[0]);
    c.exclude_pad = 1;
    y = dlf_avgpool2d_ex(&t, x, &c);
    CHECK(y->data[0] == 1.0f && y->data[3] == 1.0f, "count_include_pad=False: 1, got %g", (double)y->data[0]);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
}

/* A NaN in a max window wins, and PyTorch's rule ("v > best or v is NaN", row-major)
   gives the gradient to the LAST NaN of the window (torch 1.13: index 3 for the window
   [1, nan, 3, nan]). The same in every max pooling. */
static void test_maxpool_nan(void)
{
    int s[4] = {1, 1, 2, 2}, k;
    float v[4];
    dlf_tensor *x, *y = NULL;
    dlf_tape t;
    dlf_pool_cfg c;
    GROUP("maxpool NaN");
    v[0] = 1.0f; v[1] = NAN; v[2] = 3.0f; v[3] = NAN;
    x = dlf_tensor_from(4, s, v);
    dlf_tensor_requires_grad(x);
    memset(&c, 0, sizeof c);
    c.kh = c.kw = 2;
    for (k = 0; k < 3; k++) {
        float one = 1.0f;
        dlf_tape_init(&t);
        dlf_zero_grad(x);
        if (k == 0) y = dlf_maxpool2d(&t, x, 2, 2, 0);
        if (k == 1) y = dlf_maxpool2d_ex(&t, x, &c);
        if (k == 2) y = dlf_adaptive_maxpool2d(&t, x, 1, 1);
        CHECK(y->size == 1 && y->data[0] != y->data[0], "pool %d: NaN wins, got %g", k, (double)y->data[0]);
        dlf_backward_seed(&t, y, &one);
        CHECK(x->grad[3] == 1.0f && x->grad[1] == 0.0f && x->grad[0] == 0.0f && x->grad[2] == 0.0f,
              "pool %d: the gradient goes to the last NaN (index 3): %g %g %g %g", k, (double)x->grad[0],
              (double)x->grad[1], (double)x->grad[2], (double)x->grad[3]);
        dlf_tape_destroy(&t);
    }
    dlf_tensor_free(x);
}

/* ---------------------------------------------------------------- losses */

typedef struct loss_user { int which; dlf_loss_cfg cfg; dlf_tensor *target; } loss_user;
/* NLL and cross-entropy take their class ids from the user struct: the checker perturbs
   every input it is given, and a class id 2.01 is (rightly) refused. */

static dlf_tensor *g_loss(dlf_tape *t, dlf_tensor **in, void *u)
{
    loss_user *lu = (loss_user *)u;
    switch (lu->which) {
    case 0: return dlf_mse_loss_ex(t, in[0], in[1], &lu->cfg);
    case 1: return dlf_l1_loss_ex(t, in[0], in[1], &lu->cfg);
    case 2: return dlf_bce_with_logits_ex(t, in[0], in[1], &lu->cfg);
    case 3: return dlf_bce_loss_ex(t, in[0], in[1], &lu->cfg);
    case 4: return dlf_nll_loss_ex(t, in[0], lu->target, &lu->cfg);
    default: return dlf_cross_entropy_ex(t, in[0], lu->target, &lu->cfg);
    }
}

static void test_loss_gradcheck(void)
{
    static const char *names[] = {"mse", "l1", "bce_with_logits", "bce", "nll", "cross_entropy"};
    int s2[2] = {5, 4}, n5 = 5, n4 = 4, which, red, variant, i;
    dlf_tensor *in[2], *target, *weight;
    loss_user lu;
    char what[96];
    GROUP("loss gradcheck");
    target = dlf_tensor_new(1, &n5);
    weight = dlf_tensor_new(1, &n4);
    for (i = 0; i < 4; i++) weight->data[i] = 0.5f + 0.4f * (float)i;
    target->data[0] = 1; target->data[1] = 3; target->data[2] = 0; target->data[3] = 3; target->data[4] = 2;
    for (which = 0; which < 6; which++)
        for (red = 0; red < 3; red++)
            for (variant = 0; variant < (which >= 4 ? 3 : 1); variant++) {
                memset(&lu, 0, sizeof lu);
                lu.which = which;
                lu.cfg.reduction = (dlf_reduction)red;
                in[0] = randn_n(2, s2);
                if (which == 3)                         /* probabilities away from 0 and 1 */
                    for (i = 0; i < in[0]->size; i++) in[0]->data[i] = 0.2f + 0.6f / (1.0f + expf(-in[0]->data[i]));
                if (which == 1)                         /* |p - y| away from its kink */
                    for (i = 0; i < in[0]->size; i++) in[0]->data[i] += 3.0f;
                if (which == 4) {                       /* log-probabilities */
                    dlf_tape t;
                    dlf_tensor *lp;
                    dlf_tape_init(&t);
                    lp = dlf_log_softmax(&t, in[0], 1);
                    memcpy(in[0]->data, lp->data, (size_t)lp->size * sizeof(float));
                    dlf_tape_destroy(&t);
                }
                if (which < 4) {
                    in[1] = dlf_tensor_new(2, s2);
                    dlf_fill_uniform(in[1], &rng, 0.0f, 1.0f);
                } else {
                    in[1] = dlf_tensor_new(1, &n5);
                    memcpy(in[1]->data, target->data, 5 * sizeof(float));
                    if (variant >= 1) lu.cfg.weight = weight;
                    if (variant == 2) {
                        lu.cfg.use_ignore_index = 1;
                        lu.cfg.ignore_index = 3;
                    }
                }
                dlf_tensor_requires_grad(in[0]);
                if (which < 4) dlf_tensor_requires_grad(in[1]);   /* the soft targets' gradient too */
                snprintf(what, sizeof what, "%s reduction %d variant %d", names[which], red, variant);
                lu.target = in[1];
                GRADCHECK(g_loss, in, which < 4 ? 2 : 1, &lu, what);
                dlf_tensor_free(in[0]);
                dlf_tensor_free(in[1]);
            }
    dlf_tensor_free(target);
    dlf_tensor_free(weight);
}

/* Values by hand: the reductions, PyTorch's weighted mean, ignore_index, BCE's clamp. */
static void test_loss_values(void)
{
    int s2[2] = {3, 2}, n3 = 3, n2 = 2;
    float lp[6], tv[3] = {0, 1, 1}, wv[2] = {2.0f, 0.5f};
    dlf_tensor *logp, *target, *weight, *out, *p, *y;
    dlf_loss_cfg cfg;
    dlf_tape t;
    GROUP("loss values");
    lp[0] = -0.1f; lp[1] = -2.0f; lp[2] = -3.0f; lp[3] = -0.2f; lp[4] = -1.0f; lp[5] = -0.5f;
    logp = dlf_tensor_from(2, s2, lp);
    target = dlf_tensor_from(1, &n3, tv);
    weight = dlf_tensor_from(1, &n2, wv);
    dlf_tape_init(&t);
    memset(&cfg, 0, sizeof cfg);
    out = dlf_nll_loss_ex(&t, logp, target, &cfg);
    CHECK(fabsf(out->data[0] - (0.1f + 0.2f + 0.5f) / 3.0f) < 1e-6f, "nll mean %g", (double)out->data[0]);
    cfg.reduction = DLF_REDUCTION_SUM;
    out = dlf_nll_loss_ex(&t, logp, target, &cfg);
    CHECK(fabsf(out->data[0] - 0.8f) < 1e-6f, "nll sum %g", (double)out->data[0]);
    cfg.reduction = DLF_REDUCTION_NONE;
    out = dlf_nll_loss_ex(&t, logp, target, &cfg);
    CHECK(out->ndim == 1 && out->shape[0] == 3 && fabsf(out->data[2] - 0.5f) < 1e-7f, "nll none");
    cfg.reduction = DLF_REDUCTION_MEAN;
    cfg.weight = weight;   /* (2*0.1 + 0.5*0.2 + 0.5*0.5) / (2 + 0.5 + 0.5) */
    out = dlf_nll_loss_ex(&t, logp, target, &cfg);
    CHECK(fabsf(out->data[0] - 0.55f / 3.0f) < 1e-6f, "weighted mean divides by the weights: %g", (double)out->data[0]);
    cfg.use_ignore_index = 1;
    cfg.ignore_index = 1;  /* only row 0 left: (2*0.1) / 2 */
    out = dlf_nll_loss_ex(&t, logp, target, &cfg);
    CHECK(fabsf(out->data[0] - 0.1f) < 1e-6f, "ignore_index: %g", (double)out->data[0]);
    cfg.ignore_index = -100;   /* out of range and never met: nothing ignored */
    out = dlf_nll_loss_ex(&t, logp, target, &cfg);
    CHECK(fabsf(out->data[0] - 0.55f / 3.0f) < 1e-6f, "ignore_index -100: %g", (double)out->data[0]);
    memset(&cfg, 0, sizeof cfg);
    cfg.use_ignore_index = 1;
    cfg.ignore_index = 1;
    target->data[0] = 1;   /* everything ignored: 0/0, as PyTorch */
    out = dlf_cross_entropy_ex(&t, logp, target, &cfg);
    CHECK(out->data[0] != out->data[0], "all ignored, mean: NaN, got %g", (double)out->data[0]);
    target->data[0] = 0;
    /* NaN and out-of-range labels: a clear panic, never a cast of a NaN */
    target->data[1] = NAN;
    EXPECT_PANIC(dlf_nll_loss_ex(&t, logp, target, &cfg), "index 1 of (3,) is nan");
    EXPECT_PANIC(dlf_cross_entropy(&t, logp, target), "is nan, not a whole number");
    target->data[1] = 2.0f;
    EXPECT_PANIC(dlf_cross_entropy_ex(&t, logp, target, &cfg), "not a whole number in 0..1");
    target->data[1] = 1e30f;
    EXPECT_PANIC(dlf_nll_loss(&t, logp, target), "not a whole number in 0..1");
    target->data[1] = 1;
    cfg.weight = target;   /* (3,) for 2 classes */
    EXPECT_PANIC(dlf_nll_loss_ex(&t, logp, target, &cfg), "want class weights (C,)");
    cfg.weight = NULL;
    cfg.reduction = (dlf_reduction)7;
    EXPECT_PANIC(dlf_cross_entropy_ex(&t, logp, target, &cfg), "reduction 7");
    memset(&cfg, 0, sizeof cfg);
    cfg.use_ignore_index = 1;
    EXPECT_PANIC(dlf_mse_loss_ex(&t, logp, logp, &cfg), "for dlf_nll_loss_ex and dlf_cross_entropy_ex only");
    /* the plain BCE: log clamped at -100 (p = 0 with y = 1 costs 100), p outside [0, 1] refused */
    {
        float pv[2] = {0.0f, 0.5f}, yv[2] = {1.0f, 0.0f};
        p = dlf_tensor_from(1, &n2, pv);
        y = dlf_tensor_from(1, &n2, yv);
        memset(&cfg, 0, sizeof cfg);
        cfg.reduction = DLF_REDUCTION_NONE;
        out = dlf_bce_loss_ex(&t, p, y, &cfg);
        CHECK(out->data[0] == 100.0f && fabsf(out->data[1] - logf(2.0f)) < 1e-6f, "bce clamp: %g %g",
              (double)out->data[0], (double)out->data[1]);
        p->data[1] = 1.5f;
        EXPECT_PANIC(dlf_bce_loss(&t, p, y), "must lie in [0, 1]");
        p->data[1] = NAN;
        EXPECT_PANIC(dlf_bce_loss(&t, p, y), "must lie in [0, 1]");
        dlf_tensor_free(p);
        dlf_tensor_free(y);
    }
    dlf_tape_destroy(&t);
    dlf_tensor_free(logp); dlf_tensor_free(target); dlf_tensor_free(weight);
}

/* ---------------------------------------------------------------- softmax precision */

/* log_softmax at logits around 1e3 and 1e4 against a double computation of the same
   float inputs: the old x - (m + log sum) lost 3e-5 and 5e-4 there. */
static void test_softmax_offset(void)
{
    int s[2] = {4, 10}, i, j, o;
    static const float offs[2] = {1e3f, 1e4f};
    GROUP("softmax at large logits");
    for (o = 0; o < 2; o++) {
        dlf_tensor *x = randn_n(2, s), *ls, *ce, *target;
        float ref[40], ce_ref = 0.0f;
        int n4 = 4;
        dlf_tape t;
        target = dlf_tensor_new(1, &n4);
        for (i = 0; i < 40; i++) x->data[i] = offs[o] + 3.0f * x->data[i];
        for (i = 0; i < 4; i++) {
            double m = x->data[i * 10], sum = 0.0;
            for (j = 1; j < 10; j++) m = x->data[i * 10 + j] > m ? x->data[i * 10 + j] : m;
            for (j = 0; j < 10; j++) sum += exp((double)x->data[i * 10 + j] - m);
            for (j = 0; j < 10; j++) ref[i * 10 + j] = (float)((double)x->data[i * 10 + j] - m - log(sum));
            target->data[i] = (float)(i * 3);
            ce_ref -= ref[i * 10 + i * 3] / 4.0f;
        }
        dlf_tape_init(&t);
        ls = dlf_log_softmax(&t, x, 1);
        CHECK_CLOSE(ls->data, ref, 40, 1e-6f, 1e-6f, o ? "log_softmax at 1e4" : "log_softmax at 1e3");
        ce = dlf_cross_entropy(&t, x, target);
        CHECK_CLOSE(ce->data, &ce_ref, 1, 2e-6f, 1e-6f, o ? "cross_entropy at 1e4" : "cross_entropy at 1e3");
        dlf_tape_destroy(&t);
        dlf_tensor_free(x);
        dlf_tensor_free(target);
    }
}

int main(void)
{
    th_init();
    dlf_rng_seed(&rng, 2026);
    test_conv_ex_gradcheck();
    test_conv_ex_fast_vs_naive();
    test_conv_ex_api();
    test_pool_ex();
    test_avgpool_exclude_values();
    test_maxpool_nan();
    test_loss_gradcheck();
    test_loss_values();
    test_softmax_offset();
    TEST_MAIN_END();
}
