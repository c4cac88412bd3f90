/* test_init_losses.c - stage 7 (init schemes, fan, LSUV) and stage 8 (losses and
   accuracy): formulas against empirical statistics, gradients by finite differences,
   fused cross-entropy against log_softmax + nll, and the shape errors. */
#define DLF_IMPLEMENTATION
#include "harness.h"

static dlf_rng rng;

static void stats(const dlf_tensor *x, double *mean, double *std, float *maxabs)
{
    double s = 0.0, ss = 0.0;
    int i;
    *maxabs = 0.0f;
    for (i = 0; i < x->size; i++) {
        s += x->data[i];
        if (fabsf(x->data[i]) > *maxabs) *maxabs = fabsf(x->data[i]);
    }
    *mean = s / x->size;
    for (i = 0; i < x->size; i++) ss += (x->data[i] - *mean) * (x->data[i] - *mean);
    *std = sqrt(ss / (x->size - 1));
}

/* ---------------------------------------------------------------- init */

static void test_fan(void)
{
    dlf_tensor *lin = dlf_tensor_new2(20, 10), *conv = dlf_tensor_new4(8, 3, 5, 5), *vec = dlf_tensor_new1(4);
    GROUP("fan");
    CHECK(dlf_fan(lin, DLF_FAN_IN) == 10 && dlf_fan(lin, DLF_FAN_OUT) == 20, "linear (20,10) fans");
    CHECK(dlf_fan(conv, DLF_FAN_IN) == 75 && dlf_fan(conv, DLF_FAN_OUT) == 200,
          "conv (8,3,5,5): fan_in %d (want 3*25), fan_out %d (want 8*25)",
          dlf_fan(conv, DLF_FAN_IN), dlf_fan(conv, DLF_FAN_OUT));
    EXPECT_PANIC(dlf_fan(vec, DLF_FAN_IN), "dlf_fan: fan in/out need a weight with at least 2 dims, got (4,)");
    CHECK(fabsf(dlf_kaiming_gain(0.0f) - sqrtf(2.0f)) < 1e-6f, "gain(0) = sqrt 2");
    CHECK(fabsf(dlf_kaiming_gain(sqrtf(5.0f)) - sqrtf(1.0f / 3.0f)) < 1e-6f, "gain(sqrt5) = sqrt(1/3)");
    dlf_tensor_free(lin); dlf_tensor_free(conv); dlf_tensor_free(vec);
}

static void test_init_std(void)
{
    /* a conv weight (64, 128, 3, 3): fan_in 1152, fan_out 576, 73728 values */
    dlf_tensor *w = dlf_tensor_new4(64, 128, 3, 3), *b = dlf_tensor_new1(64);
    double mean, std, want;
    float maxabs, bound;
    int fi = 128 * 9, fo = 64 * 9;
    GROUP("init std");
#define EXPECT_STD(call, want_std, what) do {                                          \
        call;                                                                          \
        stats(w, &mean, &std, &maxabs);                                                \
        want = (want_std);                                                             \
        CHECK(fabs(std / want - 1.0) < 0.02 && fabs(mean) < 0.02 * want,               \
              "%s: std %.5f want %.5f (mean %.5f)", what, std, want, mean);            \
    } while (0)
    dlf_init_uniform(w, &rng, -0.5f, 1.5f);
    stats(w, &mean, &std, &maxabs);
    CHECK(fabs(std - 2.0 / sqrt(12.0)) < 0.01 && fabs(mean - 0.5) < 0.01, "uniform U[-0.5,1.5): mean %g std %g", mean, std);
    EXPECT_STD(dlf_init_normal(w, &rng, 0.0f, 0.3f), 0.3, "normal");
    EXPECT_STD(dlf_init_xavier_uniform(w, &rng, 1.0f), sqrt(2.0 / (fi + fo)), "xavier_uniform");
    bound = (float)sqrt(6.0 / (fi + fo));
    CHECK(maxabs <= bound && maxabs > 0.99f * bound, "xavier_uniform bound %g vs %g", maxabs, bound);
    EXPECT_STD(dlf_init_xavier_normal(w, &rng, 2.0f), 2.0 * sqrt(2.0 / (fi + fo)), "xavier_normal gain 2");
    EXPECT_STD(dlf_init_kaiming_uniform(w, &rng, 0.0f, DLF_FAN_IN), sqrt(2.0 / fi), "kaiming_uniform fan_in");
    EXPECT_STD(dlf_init_kaiming_uniform(w, &rng, 0.1f, DLF_FAN_OUT), sqrt(2.0 / 1.01 / fo), "kaiming_uniform a=0.1 fan_out");
    EXPECT_STD(dlf_init_kaiming_normal(w, &rng, 0.0f, DLF_FAN_IN), sqrt(2.0 / fi), "kaiming_normal fan_in");
    EXPECT_STD(dlf_init_kaiming_normal(w, &rng, 0.0f, DLF_FAN_OUT), sqrt(2.0 / fo), "kaiming_normal fan_out");
    EXPECT_STD(dlf_init_torch_default(w, b, &rng), 1.0 / sqrt(3.0 * fi), "torch default (kaiming_uniform a=sqrt5)");
    bound = 1.0f / sqrtf((float)fi);
    CHECK(maxabs <= bound, "torch default weight bound %g vs %g", maxabs, bound);
    stats(b, &mean, &std, &maxabs);
    CHECK(maxabs <= bound && std > 0.4 * bound, "torch default bias within U(+-1/sqrt(fan_in)): max %g", maxabs);
    dlf_tensor_free(w);
    dlf_tensor_free(b);
}

/* LSUV on a 4-layer ReLU MLP with the default (too small) init: afterwards every
   layer's activations (after its GeneralRelu) have mean ~0 and std ~1. */
static void test_lsuv(void)
{
    dlf_seq s;
    dlf_tensor *x = dlf_tensor_new2(256, 64), *h;
    dlf_tape t;
    dlf_lsuv_cfg cfg;
    double mean, std;
    float maxabs;
    int i;
    GROUP("lsuv");
    dlf_fill_normal(x, &rng, 0.0f, 1.0f);
    dlf_seq_init(&s);
    for (i = 0; i < 4; i++) {
        dlf_seq_add(&s, dlf_layer_linear(64, 64, 1, &rng));
        dlf_seq_add(&s, dlf_layer_general_relu(0.0f, 0.4f, 0.0f));
    }
    dlf_tape_init(&t);
    h = dlf_seq_forward(&t, &s, x);
    stats(h, &mean, &std, &maxabs);
    CHECK(std < 0.3, "before LSUV the default init shrinks the signal: std %g", std);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_iter = 20;
    CHECK(dlf_seq_lsuv(&s, x, &cfg) == DLF_OK, "lsuv ok");
    for (i = 1; i <= 4; i++) {
        dlf_tape_reset(&t);
        h = dlf_seq_forward_n(&t, &s, x, 2 * i);
        stats(h, &mean, &std, &maxabs);
        CHECK(fabs(std - 1.0) < 2e-3 && fabs(mean) < 2e-2, "layer %d after LSUV: mean %g std %g", i, mean, std);
    }
    dlf_tape_destroy(&t);
    dlf_seq_free(&s);
    dlf_tensor_free(x);
}

/* ---------------------------------------------------------------- losses */

typedef struct loss_user { int which; dlf_tensor *target; } loss_user;

static dlf_tensor *g_loss(dlf_tape *t, dlf_tensor **in, void *u)
{
    loss_user *lu = (loss_user *)u;
    switch (lu->which) {
    case 0: return dlf_mse_loss(t, in[0], in[1]);
    case 1: return dlf_l1_loss(t, in[0], in[1]);
    case 2: return dlf_bce_with_logits(t, in[0], in[1]);
    case 3: return dlf_nll_loss(t, dlf_log_softmax(t, in[0], 1), lu->target);
    default: return dlf_cross_entropy(t, in[0], lu->target);
    }
}

static void test_losses(void)
{
    dlf_tensor *in[2], *logits, *target, *a, *b;
    loss_user u;
    dlf_tape t;
    int i;
    float ce_grad[15], ln_grad[15];
    GROUP("losses");
    in[0] = dlf_tensor_new2(3, 4);
    in[1] = dlf_tensor_new2(3, 4);
    dlf_fill_normal(in[0], &rng, 0.0f, 2.0f);
    dlf_fill_uniform(in[1], &rng, 0.0f, 1.0f);
    in[0]->data[5] = in[1]->data[5] + 0.5f;   /* keep l1 away from its kink */
    u.target = NULL;
    for (u.which = 0; u.which < 3; u.which++) {
        static const char *names[] = {"mse", "l1", "bce_with_logits"};
        GRADCHECK(g_loss, in, 2, &u, names[u.which]);
    }
    logits = dlf_tensor_new2(5, 3);
    dlf_fill_normal(logits, &rng, 0.0f, 3.0f);
    target = dlf_tensor_new1(5);
    for (i = 0; i < 5; i++) target->data[i] = (float)((i * 2) % 3);
    u.target = target;
    u.which = 3;
    GRADCHECK(g_loss, &logits, 1, &u, "nll(log_softmax)");
    u.which = 4;
    GRADCHECK(g_loss, &logits, 1, &u, "cross_entropy");
    /* values */
    dlf_tape_init(&t);
    {
        float pv[4] = {1, 2, 3, 4}, yv[4] = {1, 0, 5, 4};
        int s = 4;
        dlf_tensor *p = dlf_tensor_from(1, &s, pv), *y = dlf_tensor_from(1, &s, yv);
        dlf_tensor *l = dlf_mse_loss(&t, p, y);
        CHECK(l->ndim == 0 && l->data[0] == 2.0f, "mse = (0+4+4+0)/4 = 2, got %g", l->data[0]);
        l = dlf_l1_loss(&t, p, y);
        CHECK(l->data[0] == 1.0f, "l1 = (0+2+2+0)/4 = 1, got %g", l->data[0]);
        dlf_tensor_free(p); dlf_tensor_free(y);
    }
    {   /* bce at +-100 stays finite and equals the exact value */
        float xv[4] = {100, -100, 0, 2}, yv[4] = {0, 0, 1, 1};
        int s = 4;
        dlf_tensor *x = dlf_tensor_from(1, &s, xv), *y = dlf_tensor_from(1, &s, yv);
        dlf_tensor *l = dlf_bce_with_logits(&t, x, y);
        double ref = (100.0 + 0.0 + log(2.0) + log1p(exp(-2.0))) / 4.0;
        CHECK(isfinite(l->data[0]) && fabs(l->data[0] - ref) < 1e-5, "bce %g want %g", l->data[0], ref);
        dlf_tensor_free(x); dlf_tensor_free(y);
    }
    /* cross_entropy == nll(log_softmax), value and gradient */
    dlf_tensor_requires_grad(logits);
    dlf_zero_grad(logits);
    a = dlf_cross_entropy(&t, logits, target);
    dlf_backward(&t, a);
    memcpy(ce_grad, logits->grad, sizeof ce_grad);
    dlf_tape_reset(&t);
    dlf_zero_grad(logits);
    b = dlf_nll_loss(&t, dlf_log_softmax(&t, logits, -1), target);
    dlf_backward(&t, b);
    memcpy(ln_grad, logits->grad, sizeof ln_grad);
    CHECK(fabsf(a->data[0] - b->data[0]) < 1e-6f, "cross_entropy %g vs log_softmax+nll %g", a->data[0], b->data[0]);
    CHECK_CLOSE(ce_grad, ln_grad, 15, 1e-6f, 1e-5f, "cross_entropy grad = softmax - onehot");
    /* large logits: the fused form never overflows */
    logits->data[0] = 1000.0f; logits->data[1] = -1000.0f; logits->data[2] = 999.0f;
    a = dlf_cross_entropy(&t, logits, target);
    CHECK(isfinite(a->data[0]), "cross_entropy finite at 1000");
    /* accuracy */
    {
        float lv[6] = {0.1f, 0.9f, 0.0f, 2.0f, 1.0f, 3.0f}, tv[3] = {1, 0, 2};
        int ls[2] = {3, 2}, ts = 3;
        dlf_tensor *lg = dlf_tensor_from(2, ls, lv), *tg = dlf_tensor_from(1, &ts, tv);
        tg->shape[0] = 3;
        CHECK(fabsf(dlf_accuracy(lg, tg) - 1.0f / 3.0f) < 1e-6f, "accuracy 1/3 (rows 1,0,1 vs 1,0,2): %g", dlf_accuracy(lg, tg));
        dlf_tensor_free(lg); dlf_tensor_free(tg);
    }
    /* shape errors name the op and the shapes */
    {
        dlf_tensor *p = dlf_tensor_new2(4, 1), *y = dlf_tensor_new1(4);
        EXPECT_PANIC(dlf_mse_loss(&t, p, y), "dlf_mse_loss: pred (4, 1) and target (4,) must have the same shape");
        EXPECT_PANIC(dlf_cross_entropy(&t, p, target), "dlf_cross_entropy: want input (N, C) and target (N,)");
        EXPECT_PANIC(dlf_nll_loss(&t, logits, y), "got input (5, 3), target (4,)");
        dlf_tensor_free(p); dlf_tensor_free(y);
    }
    target->data[2] = 3.0f;
    EXPECT_PANIC(dlf_cross_entropy(&t, logits, target), "dlf_cross_entropy: index 2 of (5,) is 3");
    target->data[2] = -1.0f;
    EXPECT_PANIC(dlf_nll_loss(&t, logits, target), "dlf_nll_loss: index 2");
    dlf_tape_destroy(&t);
    dlf_tensor_free(in[0]); dlf_tensor_free(in[1]);
    dlf_tensor_free(logits); dlf_tensor_free(target);
}

int main(void)
{
    th_init();
    dlf_rng_seed(&rng, 2015);
    test_fan();
    test_init_std();
    test_lsuv();
    test_losses();
    TEST_MAIN_END();
}
