/* test_augment.c - the tools against overfitting: the gamma and beta samplers, each
   augmentation on small hand-made images (exact results where the transform is exact,
   and determinism per seed), the pipeline's allocations, mixup, and the soft-target
   cross-entropy behind label smoothing and mixup (values, precision, gradcheck). */
#define TH_COUNT_ALLOCS
#define DLF_IMPLEMENTATION
#include "harness.h"

/* ---------------------------------------------------------------- samplers */

static void sample_stats(float (*draw)(dlf_rng *, float, float), float a, float b, int n, double *mean, double *var)
{
    dlf_rng r;
    double s = 0.0, ss = 0.0;
    int i;
    dlf_rng_seed(&r, 42);
    for (i = 0; i < n; i++) {
        double v = draw(&r, a, b);
        s += v;
        ss += v * v;
    }
    *mean = s / n;
    *var = ss / n - *mean * *mean;
}

static float draw_gamma(dlf_rng *r, float a, float b) { (void)b; return dlf_rng_gamma(r, a); }
static float draw_beta(dlf_rng *r, float a, float b) { return dlf_rng_beta(r, a, b); }

static void test_samplers(void)
{
    static const float alphas[] = {0.2f, 0.4f, 1.0f, 2.5f, 9.0f};
    double mean, var;
    int i, n = 200000;
    dlf_rng r1, r2;
    GROUP("gamma and beta samplers");
    for (i = 0; i < 5; i++) {   /* Gamma(a, 1): mean a, variance a; 5 standard errors */
        float a = alphas[i];
        sample_stats(draw_gamma, a, 0.0f, n, &mean, &var);
        CHECK(fabs(mean - a) < 5.0 * sqrt(a / n), "Gamma(%g): mean %g", (double)a, mean);
        CHECK(fabs(var - a) < 0.05 * a + 5.0 * sqrt(6.0 * a * a / n), "Gamma(%g): variance %g", (double)a, var);
    }
    for (i = 0; i < 4; i++) {   /* Beta(a, b): mean a/(a+b), variance ab/((a+b)^2 (a+b+1)) */
        float a = alphas[i], b = alphas[i + 1];
        double m = a / (double)(a + b), v = a * (double)b / ((a + b) * (double)(a + b) * (a + b + 1));
        sample_stats(draw_beta, a, b, n, &mean, &var);
        CHECK(fabs(mean - m) < 5.0 * sqrt(v / n), "Beta(%g,%g): mean %g want %g", (double)a, (double)b, mean, m);
        CHECK(fabs(var - v) < 0.03 * v, "Beta(%g,%g): variance %g want %g", (double)a, (double)b, var, v);
    }
    dlf_rng_seed(&r1, 7);
    dlf_rng_seed(&r2, 7);
    for (i = 0; i < 1000; i++)
        if (dlf_rng_beta(&r1, 0.4f, 0.4f) != dlf_rng_beta(&r2, 0.4f, 0.4f)) break;
    CHECK(i == 1000, "same seed, same beta draws (differs at %d)", i);
    EXPECT_PANIC(dlf_rng_gamma(&r1, 0.0f), "dlf_rng_gamma: alpha must be > 0");
}

/* ---------------------------------------------------------------- transforms */

static dlf_tensor *ramp(int N, int C, int H, int W)
{
    dlf_tensor *x = dlf_tensor_new4(N, C, H, W);
    dlf_fill_arange(x, 1.0f, 1.0f);   /* 1, 2, 3, ...: every pixel distinct */
    return x;
}

static int apply1(dlf_aug a, dlf_tensor *x, uint64_t seed)
{
    dlf_augment p;
    dlf_rng r;
    int rc;
    dlf_augment_init(&p);
    dlf_rng_seed(&r, seed);
    rc = dlf_augment_add(&p, a);
    if (rc == DLF_OK) rc = dlf_augment_apply(&p, x, &r);
    dlf_augment_free(&p);
    return rc;
}

/* Is y the image x (C,H,W) shifted by (dy, dx) with zeros coming in? */
static int is_shift(const float *x, const float *y, int C, int H, int W, int dy, int dx)
{
    int c, i, j;
    for (c = 0; c < C; c++)
        for (i = 0; i < H; i++)
            for (j = 0; j < W; j++) {
                int si = i + dy, sj = j + dx;
                float want = si >= 0 && si < H && sj >= 0 && sj < W ? x[(c * H + si) * W + sj] : 0.0f;
                if (y[(c * H + i) * W + j] != want) return 0;
            }
    return 1;
}

static void test_flip_crop(void)
{
    dlf_tensor *x = ramp(1, 1, 2, 3), *y;
    static const float flipped[6] = {3, 2, 1, 6, 5, 4};
    int seen[3][3] = {{0}}, seed, dy, dx, all = 1;
    GROUP("flip and crop with padding");
    CHECK(apply1(dlf_aug_flip(1.0f), x, 1) == DLF_OK, "flip p=1");
    CHECK_CLOSE(x->data, flipped, 6, 0.0f, 0.0f, "flip of a 2x3 ramp");
    CHECK(apply1(dlf_aug_flip(0.0f), x, 1) == DLF_OK, "flip p=0");
    CHECK_CLOSE(x->data, flipped, 6, 0.0f, 0.0f, "p=0 leaves the image");
    dlf_tensor_free(x);
    /* pad 1 on a 3x3: always a shift by (dy, dx) in [-1, 1]^2, and every shift turns up */
    x = ramp(1, 2, 3, 3);
    y = dlf_tensor_new4(1, 2, 3, 3);
    for (seed = 0; seed < 200; seed++) {
        int found = 0;
        dlf_tensor_copy(y, x);
        apply1(dlf_aug_crop_pad(1), y, (uint64_t)seed);
        for (dy = -1; dy <= 1; dy++)
            for (dx = -1; dx <= 1; dx++)
                if (!found && is_shift(x->data, y->data, 2, 3, 3, dy, dx)) { seen[dy + 1][dx + 1]++; found = 1; }
        if (!found) all = 0;
    }
    CHECK(all, "crop_pad(1) gave something other than a shift");
    for (dy = 0; dy < 3; dy++)
        for (dx = 0; dx < 3; dx++) CHECK(seen[dy][dx] > 5, "shift (%d,%d) seen %d times in 200", dy - 1, dx - 1, seen[dy][dx]);
    dlf_tensor_copy(y, x);
    apply1(dlf_aug_crop_pad(0), y, 3);
    CHECK_CLOSE(y->data, x->data, x->size, 0.0f, 0.0f, "crop_pad(0) is the identity");
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

static void test_resized_crop(void)
{
    dlf_tensor *x = ramp(1, 1, 4, 4), *y = dlf_tensor_new4(1, 1, 4, 4);
    int seed, ok = 1;
    GROUP("random resized crop");
    dlf_tensor_copy(y, x);
    apply1(dlf_aug_resized_crop(1.0f, 1.0f, 1.0f, 1.0f), y, 5);
    CHECK_CLOSE(y->data, x->data, 16, 0.0f, 0.0f, "scale 1, ratio 1: the identity");
    /* a quarter of the area, square: a 2x2 box blown up 2x. Pixel centres map to pixel
       centres, clamped: out(0,0) = in(top,left), out(3,3) = in(top+1,left+1), and
       out(1,1) = in(top,left) + 0.25 * (step right + step down), exact in binary */
    for (seed = 0; seed < 50; seed++) {
        int top, left, found = 0;
        dlf_tensor_copy(y, x);
        apply1(dlf_aug_resized_crop(0.25f, 0.25f, 1.0f, 1.0f), y, (uint64_t)seed);
        for (top = 0; top < 3; top++)
            for (left = 0; left < 3; left++) {
                float a = x->data[top * 4 + left], d = x->data[(top + 1) * 4 + left + 1];
                float want11 = a + 0.25f * 1.0f + 0.25f * 4.0f;   /* ramp: +1 right, +4 down */
                if (y->data[0] == a && y->data[15] == d && y->data[5] == want11) found = 1;
            }
        if (!found) ok = 0;
    }
    CHECK(ok, "a 2x2 box resized to 4x4 does not match its corners and bilinear centre");
    CHECK(apply1(dlf_aug_resized_crop(0.5f, 0.2f, 1.0f, 1.0f), y, 1) == DLF_ERR_ARG, "scale lo > hi refused");
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

static void test_affine(void)
{
    dlf_tensor *x = ramp(1, 1, 3, 3), *y = dlf_tensor_new4(1, 1, 3, 3);
    int seed, ok = 1;
    GROUP("affine");
    dlf_tensor_copy(y, x);
    apply1(dlf_aug_affine(1.0f, 0.0f, 0.0f, 1.0f, 1.0f), y, 9);
    CHECK_CLOSE(y->data, x->data, 9, 0.0f, 0.0f, "no rotation, shift or zoom: the identity");
    /* zoom 2 about the centre (1,1): out(0,0) samples in(0.5, 0.5) = mean of the top-left 2x2 */
    dlf_tensor_copy(y, x);
    apply1(dlf_aug_affine(1.0f, 0.0f, 0.0f, 2.0f, 2.0f), y, 9);
    CHECK(y->data[0] == (1.0f + 2.0f + 4.0f + 5.0f) / 4.0f && y->data[4] == 5.0f,
          "zoom 2: out(0,0) = %g (want 3), centre %g (want 5)", (double)y->data[0], (double)y->data[4]);
    /* shift only: whole-pixel shifts with zeros coming in */
    for (seed = 0; seed < 50; seed++) {
        int dy, dx, found = 0;
        dlf_tensor_copy(y, x);
        apply1(dlf_aug_affine(1.0f, 0.0f, 0.4f, 1.0f, 1.0f), y, (uint64_t)seed);
        for (dy = -2; dy <= 2; dy++)
            for (dx = -2; dx <= 2; dx++)
                if (is_shift(x->data, y->data, 1, 3, 3, dy, dx)) found = 1;
        if (!found) ok = 0;
    }
    CHECK(ok, "translate-only affine is not a whole-pixel shift");
    /* a rotation by up to 180 degrees of a square keeps the centre pixel */
    dlf_tensor_copy(y, x);
    apply1(dlf_aug_affine(1.0f, 180.0f, 0.0f, 1.0f, 1.0f), y, 4);
    CHECK(fabsf(y->data[4] - 5.0f) < 1e-5f, "rotation keeps the centre: %g", (double)y->data[4]);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

static void test_erase_normalize(void)
{
    dlf_tensor *x = dlf_tensor_new4(1, 2, 4, 4);
    int i, zeros = 0, seed, ok = 1;
    float mean[2] = {1.0f, -2.0f}, std[2] = {2.0f, 0.5f};
    GROUP("erase and normalize");
    for (seed = 0; seed < 30; seed++) {
        int c, top = -1, left = -1;
        dlf_fill(x, 1.0f);
        apply1(dlf_aug_erase(1.0f, 0.25f, 0.25f, 1.0f, 1.0f, 0.0f), x, (uint64_t)seed);
        /* a 2x2 square of zeros, the same in both channels */
        for (i = 0, zeros = 0; i < 16; i++)
            if (x->data[i] == 0.0f) {
                zeros++;
                if (top < 0) { top = i / 4; left = i % 4; }
            }
        for (c = 0; c < 2; c++)
            for (i = 0; i < 16; i++) {
                int in = top >= 0 && i / 4 >= top && i / 4 < top + 2 && i % 4 >= left && i % 4 < left + 2;
                if (x->data[c * 16 + i] != (in ? 0.0f : 1.0f)) ok = 0;
            }
        if (zeros != 4) ok = 0;
    }
    CHECK(ok, "erase of a quarter, square: not one 2x2 square of zeros in every channel");
    dlf_fill(x, 3.0f);
    apply1(dlf_aug_erase(0.0f, 0.25f, 0.25f, 1.0f, 1.0f, 0.0f), x, 1);
    for (i = 0, zeros = 0; i < 32; i++) zeros += x->data[i] != 3.0f;
    CHECK(zeros == 0, "erase p=0 changed %d pixels", zeros);
    for (i = 0; i < 32; i++) x->data[i] = (float)i;
    CHECK(apply1(dlf_aug_normalize(2, mean, std), x, 1) == DLF_OK, "normalize");
    CHECK(x->data[3] == (3.0f - 1.0f) / 2.0f && x->data[20] == (20.0f + 2.0f) / 0.5f, "normalize values %g %g",
          (double)x->data[3], (double)x->data[20]);
    CHECK(apply1(dlf_aug_normalize(3, NULL, NULL), x, 1) == DLF_ERR_ARG, "normalize without std refused");
    CHECK(strstr(dlf_last_error(), "dlf_augment_add") != NULL, "message names the call: %s", dlf_last_error());
    {   /* 2 channels asked, the batch has 2, but a normalize for 1 channel must be refused at apply */
        float m1 = 0.0f, s1 = 1.0f;
        CHECK(apply1(dlf_aug_normalize(1, &m1, &s1), x, 1) == DLF_ERR_ARG, "channel count mismatch refused");
    }
    dlf_tensor_free(x);
}

/* The pipeline: determinism per seed, different seeds differ, no allocation per batch. */
static void test_pipeline(void)
{
    dlf_augment p;
    dlf_rng r1, r2;
    dlf_tensor *a = ramp(8, 3, 8, 8), *b = ramp(8, 3, 8, 8), *c = ramp(8, 3, 8, 8);
    float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.2f, 0.3f, 0.4f};
    long before;
    int i;
    GROUP("pipeline");
    dlf_augment_init(&p);
    CHECK(dlf_augment_add(&p, dlf_aug_crop_pad(2)) == DLF_OK && dlf_augment_add(&p, dlf_aug_flip(0.5f)) == DLF_OK &&
              dlf_augment_add(&p, dlf_aug_affine(0.5f, 10.0f, 0.1f, 0.9f, 1.1f)) == DLF_OK &&
              dlf_augment_add(&p, dlf_aug_resized_crop(0.35f, 1.0f, 0.75f, 1.333f)) == DLF_OK &&
              dlf_augment_add(&p, dlf_aug_erase(0.25f, 0.02f, 0.33f, 0.3f, 3.3f, 0.0f)) == DLF_OK &&
              dlf_augment_add(&p, dlf_aug_normalize(3, mean, std)) == DLF_OK,
          "six transforms added: %s", dlf_last_error());
    dlf_rng_seed(&r1, 11);
    dlf_rng_seed(&r2, 11);
    dlf_augment_apply(&p, a, &r1);
    before = th_allocs;
    for (i = 0; i < 5; i++) dlf_augment_apply(&p, c, &r1);   /* later batches: no allocation */
    CHECK(th_allocs == before, "%ld allocations in 5 augmented batches", th_allocs - before);
    dlf_augment_apply(&p, b, &r2);
    CHECK(memcmp(a->data, b->data, (size_t)a->size * sizeof(float)) == 0, "same seed, same augmented batch");
    CHECK(memcmp(a->data, c->data, (size_t)a->size * sizeof(float)) != 0, "later batches differ");
    for (i = 0; i < DLF_AUG_MAX - 6; i++) dlf_augment_add(&p, dlf_aug_flip(0.5f));
    CHECK(dlf_augment_add(&p, dlf_aug_flip(0.5f)) == DLF_ERR_ARG, "a full pipeline refuses more");
    dlf_augment_free(&p);
    dlf_tensor_free(a);
    dlf_tensor_free(b);
    dlf_tensor_free(c);
}

/* ---------------------------------------------------------------- losses */

typedef struct loss_user { int kind; float eps; dlf_mixup *m; dlf_tensor *y; } loss_user;

static dlf_tensor *g_soft(dlf_tape *t, dlf_tensor **in, void *user)
{
    loss_user *u = (loss_user *)user;
    if (u->kind == 0) return dlf_cross_entropy_soft(t, in[0], in[1]);
    if (u->kind == 1) return dlf_cross_entropy_smooth(t, in[0], u->y, u->eps);
    return dlf_mixup_loss(t, u->m, in[0]);
}

static void test_soft_ce(void)
{
    dlf_rng r;
    dlf_tape t;
    dlf_tensor *x = dlf_tensor_new2(5, 4), *q = dlf_tensor_new2(5, 4), *y = dlf_tensor_new1(5), *in[2];
    dlf_tensor *a, *b;
    loss_user u;
    int i, j;
    GROUP("soft-target cross-entropy, label smoothing");
    dlf_rng_seed(&r, 3);
    dlf_tape_init(&t);
    dlf_fill_normal(x, &r, 0.0f, 2.0f);
    for (i = 0; i < 5; i++) {   /* random distributions */
        float s = 0.0f;
        for (j = 0; j < 4; j++) s += (q->data[i * 4 + j] = dlf_rng_uniform(&r) + 0.05f);
        for (j = 0; j < 4; j++) q->data[i * 4 + j] /= s;
        y->data[i] = (float)(i % 4);
    }
    x->requires_grad = q->requires_grad = 1;
    in[0] = x;
    in[1] = q;
    u.kind = 0;
    GRADCHECK(g_soft, in, 2, &u, "cross_entropy_soft (logits and targets)");
    u.kind = 1;
    u.eps = 0.1f;
    u.y = y;
    GRADCHECK(g_soft, in, 1, &u, "cross_entropy_smooth eps 0.1");
    /* eps 0 is plain cross-entropy; eps 0.1 matches the formula in double */
    a = dlf_cross_entropy_smooth(&t, x, y, 0.0f);
    b = dlf_cross_entropy(&t, x, y);
    CHECK(fabsf(a->data[0] - b->data[0]) < 1e-6f, "smooth eps 0 %g vs cross_entropy %g", (double)a->data[0], (double)b->data[0]);
    {
        double want = 0.0;
        for (i = 0; i < 5; i++) {
            double m = -1e30, s = 0.0, lse;
            for (j = 0; j < 4; j++) m = x->data[i * 4 + j] > m ? x->data[i * 4 + j] : m;
            for (j = 0; j < 4; j++) s += exp(x->data[i * 4 + j] - m);
            lse = m + log(s);
            for (j = 0; j < 4; j++) want += (0.1 / 4 + (j == i % 4 ? 0.9 : 0.0)) * (lse - x->data[i * 4 + j]);
        }
        want /= 5;
        a = dlf_cross_entropy_smooth(&t, x, y, 0.1f);
        CHECK(fabs(a->data[0] - want) < 1e-5, "label smoothing %g, formula %g", (double)a->data[0], want);
    }
    /* large logits keep their precision: offset 1e4, against the same logits unshifted */
    {
        dlf_tensor *xs = dlf_tensor_new2(5, 4);
        for (i = 0; i < 20; i++) xs->data[i] = x->data[i] + 10000.0f;
        a = dlf_cross_entropy_soft(&t, xs, q);
        for (i = 0; i < 20; i++) xs->data[i] -= 10000.0f;   /* the float the shifted logits hold, shifted back */
        b = dlf_cross_entropy_soft(&t, xs, q);
        CHECK(fabsf(a->data[0] - b->data[0]) < 1e-5f, "offset 1e4: %g vs %g", (double)a->data[0], (double)b->data[0]);
        dlf_tensor_free(xs);
    }
    EXPECT_PANIC(dlf_cross_entropy_smooth(&t, x, y, 1.5f), "eps must be in [0, 1]");
    EXPECT_PANIC(dlf_cross_entropy_soft(&t, x, y), "want logits (N, C) and q of the same shape");
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
    dlf_tensor_free(q);
    dlf_tensor_free(y);
}

static void test_mixup(void)
{
    dlf_mixup m;
    dlf_rng r;
    dlf_tape t;
    dlf_tensor *x = dlf_tensor_new2(6, 3), *orig = dlf_tensor_new2(6, 3), *y = dlf_tensor_new1(6);
    dlf_tensor *logits = dlf_tensor_new2(6, 5), *in[1], *loss;
    loss_user u;
    int i, k, ok = 1;
    GROUP("mixup");
    dlf_rng_seed(&r, 8);
    dlf_tape_init(&t);
    dlf_fill_normal(x, &r, 0.0f, 1.0f);
    dlf_tensor_copy(orig, x);
    for (i = 0; i < 6; i++) y->data[i] = (float)(i % 5);
    CHECK(dlf_mixup_init(&m, 0.4f, 8, 3) == DLF_OK, "init");
    CHECK(dlf_mixup_apply(&m, x, y, &r) == DLF_OK, "apply");
    for (i = 0; i < 6; i++) {
        int p = m.perm[i];
        if (!(m.lam[i] >= 0.5f && m.lam[i] <= 1.0f)) ok = 0;
        if (m.y[i] != y->data[i] || m.y2[i] != y->data[p]) ok = 0;
        for (k = 0; k < 3; k++)
            if (x->data[i * 3 + k] != m.lam[i] * orig->data[i * 3 + k] + (1.0f - m.lam[i]) * orig->data[p * 3 + k]) ok = 0;
    }
    CHECK(ok, "mixed items are lam x_i + (1-lam) x_perm(i), lam in [0.5, 1], labels kept");
    /* the mixed loss = mean_i lam_i CE_i(y_i) + (1 - lam_i) CE_i(y_perm(i)) */
    dlf_fill_normal(logits, &r, 0.0f, 1.0f);
    loss = dlf_mixup_loss(&t, &m, logits);
    {
        double want = 0.0;
        for (i = 0; i < 6; i++) {
            double mx = -1e30, s = 0.0, lse;
            for (k = 0; k < 5; k++) mx = logits->data[i * 5 + k] > mx ? logits->data[i * 5 + k] : mx;
            for (k = 0; k < 5; k++) s += exp(logits->data[i * 5 + k] - mx);
            lse = mx + log(s);
            want += m.lam[i] * (lse - logits->data[i * 5 + (int)m.y[i]]) +
                    (1.0 - m.lam[i]) * (lse - logits->data[i * 5 + (int)m.y2[i]]);
        }
        CHECK(loss && fabs(loss->data[0] - want / 6) < 1e-5, "mixup loss %g want %g", loss ? (double)loss->data[0] : 0.0, want / 6);
    }
    logits->requires_grad = 1;
    in[0] = logits;
    u.kind = 2;
    u.m = &m;
    GRADCHECK(g_soft, in, 1, &u, "mixup loss");
    EXPECT_PANIC(dlf_mixup_apply(&m, logits, y, &r), "do not fit the mixup's batch");
    dlf_mixup_free(&m);
    CHECK(dlf_mixup_init(&m, 0.0f, 8, 3) == DLF_ERR_ARG, "alpha 0 refused");
    dlf_mixup_free(&m);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
    dlf_tensor_free(orig);
    dlf_tensor_free(y);
    dlf_tensor_free(logits);
}

/* ---------------------------------------------------------------- as Learner callbacks */

static uint8_t cb_img[24][16], cb_lab[24];
static dlf_tensor *cb_w;

static dlf_tensor *cb_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    int shape[2];
    (void)user;
    shape[0] = x->shape[0];
    shape[1] = 16;
    return dlf_matmul_ex(t, dlf_reshape(t, x, 2, shape), cb_w, 0, 1);
}

/* A spy on both sides of the augment and mixup callbacks: the batch before (order -6)
   and after (order -3), and the loss the learner backpropagates (after_loss, order 0). */
typedef struct spy {
    dlf_callback cb;
    float before[8 * 16], after[8 * 16];
    int n, batches, bad_loss, val_changed;
    const dlf_mixup *mix;
} spy;

static int spy_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    spy *s = (spy *)cb->user;
    if (ev == DLF_EV_BEGIN_BATCH && cb->order < -5) {
        s->n = l->xb->size;
        memcpy(s->before, l->xb->data, (size_t)s->n * sizeof(float));
    } else if (ev == DLF_EV_BEGIN_BATCH && cb->order < 0) {
        memcpy(s->after, l->xb->data, (size_t)s->n * sizeof(float));
        if (!l->in_train && memcmp(s->before, s->after, (size_t)s->n * sizeof(float)) != 0) s->val_changed++;
        if (l->in_train) s->batches++;
    } else if (ev == DLF_EV_AFTER_LOSS && cb->order == 0 && l->in_train && s->mix) {
        dlf_tensor *want = dlf_mixup_loss(l->tape, s->mix, l->pred);
        if (!want || want->data[0] != l->loss_value || l->loss->data[0] != l->loss_value) s->bad_loss++;
    }
    return DLF_CB_OK;
}

static void test_callbacks(void)
{
    dlf_dataset ds;
    dlf_loader_cfg lc;
    dlf_loader *train, *valid;
    dlf_optim_cfg oc;
    dlf_optim *opt;
    dlf_tape t;
    dlf_learner l;
    dlf_augment aug;
    dlf_mixup mix;
    dlf_cb_augment ca;
    dlf_cb_mixup cm;
    dlf_callback c_before, c_after, c_loss;
    spy sp;
    dlf_rng r, replay;
    float manual[8 * 16];
    int i, j;
    GROUP("augment and mixup callbacks in the Learner");
    dlf_rng_seed(&r, 5);
    for (i = 0; i < 24; i++) {
        cb_lab[i] = (uint8_t)(i % 3);
        for (j = 0; j < 16; j++) cb_img[i][j] = (uint8_t)(dlf_rng_below(&r, 100) + (j % 3 == cb_lab[i] ? 120 : 0));
    }
    memset(&ds, 0, sizeof ds);
    ds.images = &cb_img[0][0];
    ds.labels = cb_lab;
    ds.n = 24;
    ds.rows = ds.cols = 4;
    ds.n_classes = 3;
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 8;
    lc.shuffle = 1;
    lc.seed = 3;
    train = dlf_loader_create(&ds, &lc);
    lc.shuffle = 0;
    valid = dlf_loader_create(&ds, &lc);
    cb_w = dlf_param_new(2, (const int[]){3, 16});
    memset(&oc, 0, sizeof oc);
    oc.lr = 0.05f;
    opt = dlf_optim_create(DLF_OPTIM_SGD, &cb_w, 1, &oc);
    dlf_tape_init(&t);
    dlf_augment_init(&aug);
    dlf_augment_add(&aug, dlf_aug_flip(0.5f));
    dlf_augment_add(&aug, dlf_aug_crop_pad(1));
    dlf_mixup_init(&mix, 0.4f, 8, 16);
    dlf_cb_augment_init(&ca, &aug, 77);
    dlf_cb_mixup_init(&cm, &mix, 78);
    memset(&sp, 0, sizeof sp);
    sp.mix = &mix;
    memset(&c_before, 0, sizeof c_before);
    c_before.name = "spy_before"; c_before.order = -6; c_before.on = spy_on; c_before.user = &sp;
    c_after = c_before;
    c_after.name = "spy_after"; c_after.order = -3;
    c_loss = c_before;
    c_loss.name = "spy_loss"; c_loss.order = 0;
    dlf_learner_init(&l, &t, cb_forward, NULL, dlf_cross_entropy, opt, train, valid);
    dlf_learner_add_cb(&l, &ca.cb);
    dlf_learner_add_cb(&l, &c_before);
    dlf_learner_add_cb(&l, &c_after);
    CHECK(dlf_learner_fit(&l, 1) == DLF_OK, "fit with augmentation: %s", dlf_last_error());
    CHECK(sp.batches == 3 && sp.val_changed == 0, "3 augmented training batches (%d), validation untouched (%d changed)",
          sp.batches, sp.val_changed);
    /* the callback is the pipeline with its own rng: one more batch through it against the
       pipeline run by hand from the same rng state */
    {
        dlf_tensor *xb = dlf_tensor_new4(8, 1, 4, 4);
        replay = ca.rng;
        memcpy(xb->data, sp.before, sizeof manual);
        dlf_augment_apply(&aug, xb, &replay);
        memcpy(manual, xb->data, sizeof manual);
        memcpy(xb->data, sp.before, sizeof manual);
        l.in_train = 1;
        l.xb = xb;
        ca.cb.on(&ca.cb, &l, DLF_EV_BEGIN_BATCH);
        CHECK(memcmp(xb->data, manual, sizeof manual) == 0, "the callback applies the pipeline with its own rng");
        CHECK(memcmp(xb->data, sp.before, sizeof manual) != 0, "and changes the batch");
        l.xb = NULL;
        dlf_tensor_free(xb);
    }
    dlf_learner_free(&l);
    dlf_learner_init(&l, &t, cb_forward, NULL, dlf_cross_entropy, opt, train, valid);
    dlf_learner_add_cb(&l, &cm.cb);
    dlf_learner_add_cb(&l, &c_loss);
    sp.batches = 0;
    CHECK(dlf_learner_fit(&l, 2) == DLF_OK, "fit with mixup: %s", dlf_last_error());
    CHECK(sp.bad_loss == 0, "%d training batches backpropagated something other than the mixup loss", sp.bad_loss);
    CHECK(l.train_loss == l.train_loss && l.train_loss > 0.0f, "a finite training loss %g", (double)l.train_loss);
    dlf_learner_free(&l);
    dlf_mixup_free(&mix);
    dlf_augment_free(&aug);
    dlf_optim_free(opt);
    dlf_tape_destroy(&t);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_tensor_free(cb_w);
}

/* Test-time augmentation against the views built by hand: mirror first, then move,
   probabilities of the linear model cb_forward averaged in double. */
static float tta_view_px(const float *img, int H, int W, int flip, int dy, int dx, int i, int j)
{
    float mirrored[64];
    int a, b;
    for (a = 0; a < H; a++)
        for (b = 0; b < W; b++) mirrored[a * W + b] = img[a * W + (flip ? W - 1 - b : b)];
    if (i + dy < 0 || i + dy >= H || j + dx < 0 || j + dx >= W) return 0.0f;
    return mirrored[(i + dy) * W + (j + dx)];
}

static void test_tta(void)
{
    static const int moves[5][2] = {{0, 0}, {0, 1}, {0, -1}, {1, 0}, {-1, 0}};
    dlf_dataset ds;
    dlf_loader_cfg lc;
    dlf_loader *ld;
    dlf_tape t;
    dlf_tta_cfg tc;
    dlf_rng r;
    float acc, loss, acc0, loss0;
    int i, j, k, cfgi;
    GROUP("test-time augmentation (dlf_evaluate_tta)");
    memset(&ds, 0, sizeof ds);
    ds.images = &cb_img[0][0];
    ds.labels = cb_lab;
    ds.n = 24;
    ds.rows = ds.cols = 4;
    ds.n_classes = 3;
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 10;   /* a last batch of 4 */
    lc.mean = 0.3f;
    lc.std = 0.2f;
    ld = dlf_loader_create(&ds, &lc);
    cb_w = dlf_tensor_new(2, (const int[]){3, 16});
    dlf_rng_seed(&r, 11);
    for (i = 0; i < cb_w->size; i++) cb_w->data[i] = 0.3f * dlf_rng_normal(&r);
    dlf_tape_init(&t);
    acc0 = dlf_evaluate(&t, cb_forward, NULL, ld, &loss0);
    memset(&tc, 0, sizeof tc);
    acc = dlf_evaluate_tta(&t, cb_forward, NULL, ld, &tc, &loss);
    CHECK(acc == acc0 && loss == loss0, "one view is dlf_evaluate: %g %g vs %g %g", acc, loss, acc0, loss0);
    for (cfgi = 0; cfgi < 3; cfgi++) {
        int flips = cfgi != 1 ? 2 : 1, shift = cfgi >= 1 ? 1 + cfgi / 2 : 0, n_views = flips * (shift ? 5 : 1);
        long correct = 0;
        double want_loss = 0.0;
        tc.flip = flips == 2;
        tc.shift = shift;
        acc = dlf_evaluate_tta(&t, cb_forward, NULL, ld, &tc, &loss);
        ld->pos = 0;
        while ((k = dlf_loader_next(ld)) > 0)
            for (i = 0; i < k; i++) {
                double p[3] = {0, 0, 0};
                int v, c, best = 0, y = (int)ld->y->data[i];
                for (v = 0; v < n_views; v++) {
                    double z[3], mx = -1e30, s = 0.0;
                    int mv = v / flips;
                    for (c = 0; c < 3; c++) {
                        z[c] = 0.0;
                        for (j = 0; j < 16; j++)
                            z[c] += (double)cb_w->data[c * 16 + j] *
                                    tta_view_px(ld->x->data + (size_t)i * 16, 4, 4, v % flips, moves[mv][0] * shift,
                                                moves[mv][1] * shift, j / 4, j % 4);
                        if (z[c] > mx) mx = z[c];
                    }
                    for (c = 0; c < 3; c++) s += exp(z[c] - mx);
                    for (c = 0; c < 3; c++) p[c] += exp(z[c] - mx) / s / n_views;
                }
                for (c = 1; c < 3; c++) if (p[c] > p[best]) best = c;
                correct += best == y;
                want_loss -= log(p[y]);
            }
        CHECK(fabsf(acc - (float)correct / 24.0f) < 1e-6f && fabs(loss - want_loss / 24.0) < 1e-5,
              "flip %d shift %d: accuracy %g loss %g, by hand %g %g", tc.flip, tc.shift, acc, loss,
              (double)correct / 24.0, want_loss / 24.0);
    }
    EXPECT_PANIC(dlf_evaluate_tta(&t, cb_forward, NULL, NULL, &tc, &loss), "dlf_evaluate_tta: l is NULL");
    dlf_tape_destroy(&t);
    dlf_tensor_free(cb_w);
    dlf_loader_free(ld);
}

int main(void)
{
    th_init();
    test_samplers();
    test_flip_crop();
    test_resized_crop();
    test_affine();
    test_erase_normalize();
    test_pipeline();
    test_soft_ce();
    test_mixup();
    test_callbacks();
    test_tta();
    TEST_MAIN_END();
}
