/* test_faults.c - error paths: NULL arguments, panic handlers that return, and every
   allocation failing in turn (SQLite's way of testing out-of-memory handling).

   The allocator below counts dlf's allocations (DLF_MALLOC, DLF_REALLOC) and fails
   the k-th one. Each scenario (build a model, train two steps, load the IDX files,
   save and load a checkpoint, dlf_fit and the Learner for one epoch, a Learner's run
   saved, loaded into another and given to the LR finder, activation telemetry and
   its pictures) runs once with no failure, which gives the reference result and the
   number of allocations N, then once for every k in 1..N. For each k it must
     - end with an error code and a message in dlf_last_error(), or with exactly the
       reference result (weights compared bit for bit), never a false DLF_OK;
     - never panic (out of memory is not a programmer error) and never crash;
     - free everything: the allocator counts live blocks, which must be 0 after the
       scenario (make asan's leak checker sees the same from outside).
   The scenarios are small: all of it takes about a second (a few under ASan). */
#include <stdlib.h>
#include <stdint.h>
#include <time.h>

static long fa_count;     /* allocations since fa_arm */
static long fa_fail_at;   /* fail this one (1-based); 0: none */
static long fa_live;      /* blocks allocated and not yet freed */

static void *fa_malloc(size_t n)
{
    void *p;
    if (++fa_count == fa_fail_at) return NULL;
    p = malloc(n);
    if (p) fa_live++;
    return p;
}

static void *fa_realloc(void *old, size_t n)
{
    void *p;
    if (++fa_count == fa_fail_at) return NULL;
    p = realloc(old, n);
    if (p && !old) fa_live++;
    return p;
}

static void fa_free(void *p)
{
    if (p) fa_live--;
    free(p);
}

#define DLF_MALLOC(n) fa_malloc(n)
#define DLF_REALLOC(p, n) fa_realloc(p, n)
#define DLF_FREE(p) fa_free(p)
#define DLF_IMPLEMENTATION
#include "harness.h"

/* fail allocation k from now on (0: none); dlf_last_error() is not touched */
static void fa_arm(long k)
{
    fa_count = 0;
    fa_fail_at = k;
}

/* ------------------------------------------------------------ scenarios */

#define MAXW 2048
typedef struct result {
    float w[MAXW];   /* every trainable parameter, then the checked extras */
    int n;
} result;

static void put(result *r, const float *v, int n)
{
    int i;
    for (i = 0; i < n && r->n < MAXW; i++) r->w[r->n++] = v[i];
}

static void put_params(result *r, const dlf_params *pl)
{
    int i;
    for (i = 0; i < pl->n; i++) put(r, pl->items[i].t->data, pl->items[i].t->size);
}

/* A layer into the seq, or freed: a constructor that ran out of memory leaves NULL tensors. */
static int add_layer(dlf_seq *s, dlf_layer l)
{
    int rc;
    if (!dlf_layer_ok(&l)) {
        dlf_layer_free(&l);
        return DLF_ERR_NOMEM;
    }
    if ((rc = dlf_seq_add(s, l)) != DLF_OK) dlf_layer_free(&l);
    return rc;
}

/* conv 1->4 (3x3, pad 1) on 4x4 images, BatchNorm, ReLU, flatten, linear 64 -> 3 */
typedef struct model {
    dlf_seq s;
    dlf_params pl;
    dlf_optim *opt;
} model;

static int model_build(model *m, uint64_t seed, dlf_optim_kind kind)
{
    dlf_rng r;
    dlf_optim_cfg oc;
    int rc;
    dlf_rng_seed(&r, seed);
    dlf_seq_init(&m->s);
    dlf_params_init(&m->pl);
    m->opt = NULL;
    if ((rc = add_layer(&m->s, dlf_layer_conv2d(1, 4, 3, 1, 1, 1, &r))) != DLF_OK) return rc;
    if ((rc = add_layer(&m->s, dlf_layer_batchnorm(4))) != DLF_OK) return rc;
    if ((rc = add_layer(&m->s, dlf_layer_simple(DLF_LAYER_RELU))) != DLF_OK) return rc;
    if ((rc = add_layer(&m->s, dlf_layer_simple(DLF_LAYER_FLATTEN))) != DLF_OK) return rc;
    if ((rc = add_layer(&m->s, dlf_layer_linear(64, 3, 1, &r))) != DLF_OK) return rc;
    if ((rc = dlf_seq_collect(&m->s, &m->pl)) != DLF_OK) return rc;
    memset(&oc, 0, sizeof oc);
    oc.lr = 0.05f;
    oc.momentum = 0.9f;
    m->opt = dlf_optim_create_groups(kind, &m->pl, &oc, 1);
    return m->opt ? DLF_OK : DLF_ERR_NOMEM;
}

static void model_free(model *m)
{
    dlf_optim_free(m->opt);
    dlf_params_free(&m->pl);
    dlf_seq_free(&m->s);
}

static dlf_tensor *model_fwd(dlf_tape *t, dlf_tensor *x, void *m)
{
    return dlf_seq_forward(t, &((model *)m)->s, x);
}

/* 48 images of 4x4 as IDX bytes: class c bright in its own rows, plus a pattern. */
static unsigned char idx_img[16 + 48 * 16], idx_lab[8 + 48];

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

static void make_idx(void)
{
    int i, j;
    put_be32(idx_img, DLF_IDX_IMAGES); put_be32(idx_img + 4, 48); put_be32(idx_img + 8, 4); put_be32(idx_img + 12, 4);
    put_be32(idx_lab, DLF_IDX_LABELS); put_be32(idx_lab + 4, 48);
    for (i = 0; i < 48; i++) {
        idx_lab[8 + i] = (unsigned char)(i % 3);
        for (j = 0; j < 16; j++)
            idx_img[16 + i * 16 + j] = (unsigned char)((j / 4 == i % 3 ? 150 : 0) + (i * 7 + j * 13) % 90);
    }
}

static int small_dataset(dlf_dataset *d)
{
    dlf_idx im, lb;
    int rc;
    memset(d, 0, sizeof *d);
    if ((rc = dlf_idx_parse(idx_img, sizeof idx_img, "images", &im)) != DLF_OK) return rc;
    if ((rc = dlf_idx_parse(idx_lab, sizeof idx_lab, "labels", &lb)) != DLF_OK) {
        dlf_idx_free(&im);
        return rc;
    }
    return dlf_dataset_from_idx(d, &im, &lb, "small");   /* takes both buffers, on failure too */
}

/* a batch (8,1,4,4) and its labels, from the heap */
static int make_batch(dlf_tensor **x, dlf_tensor **y)
{
    int i;
    *x = dlf_tensor_new4(8, 1, 4, 4);
    *y = dlf_tensor_new1(8);
    if (!*x || !*y) return DLF_ERR_NOMEM;
    for (i = 0; i < 128; i++) (*x)->data[i] = (float)((i * 37) % 17) / 17.0f - 0.4f;
    for (i = 0; i < 8; i++) (*y)->data[i] = (float)(i % 3);
    return DLF_OK;
}

static int sc_build(result *res)
{
    model m;
    int rc = model_build(&m, 1, DLF_OPTIM_ADAM);
    if (rc == DLF_OK) put_params(res, &m.pl);
    model_free(&m);
    return rc;
}

/* Two steps by hand: forward, loss, backward, step (the second reuses the arena). */
static int train_steps(model *m, dlf_tape *t, dlf_tensor *x, dlf_tensor *y, int steps)
{
    int s, rc;
    for (s = 0; s < steps; s++) {
        dlf_tensor *loss;
        dlf_tape_reset(t);
        dlf_optim_zero_grad(m->opt);
        loss = dlf_cross_entropy(t, model_fwd(t, x, m), y);
        if (!loss) return dlf_tape_error(t);
        if ((rc = dlf_backward(t, loss)) != DLF_OK) return rc;
        if ((rc = dlf_optim_step(m->opt)) != DLF_OK) return rc;
    }
    return DLF_OK;
}

static int sc_step(result *res)
{
    model m;
    dlf_tape t;
    dlf_tensor *x = NULL, *y = NULL;
    int rc;
    dlf_tape_init(&t);
    rc = model_build(&m, 2, DLF_OPTIM_SGD);
    if (rc == DLF_OK) rc = make_batch(&x, &y);
    if (rc == DLF_OK) rc = train_steps(&m, &t, x, y, 2);
    if (rc == DLF_OK) put_params(res, &m.pl);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
    dlf_tape_destroy(&t);
    model_free(&m);
    return rc;
}

static int sc_idx(result *res)
{
    dlf_mnist mn;
    dlf_mnist_cfg mc;
    dlf_loader *tr = NULL, *va = NULL, *te = NULL;
    int rc, n;
    memset(&mc, 0, sizeof mc);
    mc.prefix = "mnist-sub-";
    mc.test_split = "test";
    mc.n_valid = 200;
    rc = dlf_mnist_load(&mn, "tests/data", &mc);
    if (rc != DLF_OK) return rc;
    rc = dlf_mnist_loaders(&mn, 32, 100, 3, &tr, &va, &te);
    if (rc == DLF_OK) {
        float v[2];
        n = dlf_loader_next(tr);
        v[0] = mn.mean;
        v[1] = mn.std;
        put(res, v, 2);
        put(res, tr->x->data, n * 28);   /* the first rows of the first shuffled batch */
        put(res, tr->y->data, n);
        dlf_loader_free(tr);
        dlf_loader_free(va);
        dlf_loader_free(te);
    }
    dlf_mnist_free(&mn);
    return rc;
}

/* On a tmpfs where there is one: the atomic save's fsync is slow on a disk, and it runs
   once per failure point. */
static char ckpt_path[256], svg_path[300];
static void pick_ckpt_path(void)
{
    FILE *f;
    snprintf(ckpt_path, sizeof ckpt_path, "/dev/shm/dlf_test_faults_%lx.safetensors",
             (unsigned long)time(NULL) ^ (unsigned long)(uintptr_t)&f);
    f = fopen(ckpt_path, "wb");
    if (f) fclose(f);
    else snprintf(ckpt_path, sizeof ckpt_path, "build/test_faults.safetensors");
    snprintf(svg_path, sizeof svg_path, "%s.svg", ckpt_path);
}
#define CKPT_PATH ckpt_path
static int sc_ckpt(result *res)
{
    model a, b;
    dlf_tape t;
    dlf_tensor *x = NULL, *y = NULL;
    const char *meta[2] = {"scenario", "ckpt"};
    int rc, rc_b, i, k;
    dlf_tape_init(&t);
    rc = model_build(&a, 3, DLF_OPTIM_ADAM);
    rc_b = model_build(&b, 4, DLF_OPTIM_ADAM);
    if (rc == DLF_OK) rc = rc_b;
    if (rc == DLF_OK) rc = make_batch(&x, &y);
    if (rc == DLF_OK) rc = train_steps(&a, &t, x, y, 1);   /* optimizer state to save */
    if (rc == DLF_OK) rc = dlf_ckpt_save_training(CKPT_PATH, &a.pl, a.opt, meta, 1);
    if (rc == DLF_OK) rc = dlf_ckpt_load_training(CKPT_PATH, &b.pl, b.opt);
    if (rc == DLF_OK) {
        put_params(res, &b.pl);
        for (i = 0; i < b.opt->n_params; i++)
            for (k = 0; k < DLF_OPTIM_MAX_STATE; k++)
                if (b.opt->params[i].state[k]) put(res, b.opt->params[i].state[k], b.opt->params[i].p->size);
    }
    dlf_tensor_free(x);
    dlf_tensor_free(y);
    dlf_tape_destroy(&t);
    model_free(&a);
    model_free(&b);
    return rc;
}

static int sc_fit_common(result *res, int learner)
{
    model m;
    dlf_dataset d;
    dlf_dataset tr, va;
    dlf_loader *ltr = NULL, *lva = NULL;
    dlf_loader_cfg lc;
    dlf_tape t;
    int rc, rc_d;
    dlf_tape_init(&t);
    rc = model_build(&m, 5, DLF_OPTIM_SGD);
    rc_d = small_dataset(&d);
    if (rc == DLF_OK) rc = rc_d;
    if (rc == DLF_OK) {
        tr = dlf_dataset_view(&d, 0, 32);
        va = dlf_dataset_view(&d, 32, 16);
        memset(&lc, 0, sizeof lc);
        lc.batch_size = 8;
        lc.shuffle = 1;
        lc.seed = 9;
        ltr = dlf_loader_create(&tr, &lc);
        lc.shuffle = 0;
        lva = dlf_loader_create(&va, &lc);
        if (!ltr || !lva) rc = DLF_ERR_NOMEM;
    }
    if (rc == DLF_OK && !learner) {
        dlf_fit_cfg fc;
        memset(&fc, 0, sizeof fc);
        fc.epochs = 1;
        fc.quiet = 1;
        fc.fixed_threads = 1;
        rc = dlf_fit(&t, model_fwd, &m, dlf_cross_entropy, m.opt, ltr, lva, &fc, NULL);
    } else if (rc == DLF_OK) {
        dlf_learner l;
        dlf_cb_recorder rec;
        dlf_learner_init(&l, &t, model_fwd, &m, dlf_cross_entropy, m.opt, ltr, lva);
        l.fixed_threads = 1;
        l.params = &m.pl;
        dlf_cb_recorder_init(&rec);
        rc = dlf_learner_add_cb(&l, &rec.cb);
        if (rc == DLF_OK) rc = dlf_learner_add_metric(&l, "accuracy", dlf_metric_accuracy);
        if (rc == DLF_OK) rc = dlf_learner_fit(&l, 1);
        if (rc == DLF_OK) put(res, &l.valid_loss, 1);
        dlf_cb_recorder_free(&rec);
        dlf_learner_free(&l);
    }
    if (rc == DLF_OK) put_params(res, &m.pl);
    dlf_loader_free(ltr);
    dlf_loader_free(lva);
    dlf_dataset_free(&d);
    dlf_tape_destroy(&t);
    model_free(&m);
    return rc;
}

static int sc_fit(result *res) { return sc_fit_common(res, 0); }
static int sc_learner(result *res) { return sc_fit_common(res, 1); }

/* The Learner's run saved and loaded into another (dlf_learner_save / _load), then the
   LR finder on it. */
static int sc_resume(result *res)
{
    model m, m2;
    dlf_dataset d, tr;
    dlf_loader *ltr = NULL;
    dlf_loader_cfg lc;
    dlf_tape t;
    int rc, rc2, rc_d;
    dlf_tape_init(&t);
    rc = model_build(&m, 8, DLF_OPTIM_ADAM);
    rc2 = model_build(&m2, 9, DLF_OPTIM_ADAM);
    rc_d = small_dataset(&d);
    if (rc == DLF_OK) rc = rc2;
    if (rc == DLF_OK) rc = rc_d;
    if (rc == DLF_OK) {
        tr = dlf_dataset_view(&d, 0, 32);
        memset(&lc, 0, sizeof lc);
        lc.batch_size = 8;
        lc.shuffle = 1;
        lc.seed = 11;
        ltr = dlf_loader_create(&tr, &lc);
        if (!ltr) rc = DLF_ERR_NOMEM;
    }
    if (rc == DLF_OK) {
        dlf_learner l, l2;
        dlf_lr_find_cfg fc;
        dlf_lr_find_result fr;
        memset(&fr, 0, sizeof fr);
        dlf_learner_init(&l, &t, model_fwd, &m, dlf_cross_entropy, m.opt, ltr, NULL);
        l.fixed_threads = 1;
        l.params = &m.pl;
        dlf_learner_init(&l2, &t, model_fwd, &m2, dlf_cross_entropy, m2.opt, ltr, NULL);
        l2.fixed_threads = 1;
        l2.params = &m2.pl;
        rc = dlf_learner_fit(&l, 1);
        if (rc == DLF_OK) rc = dlf_learner_save(&l, CKPT_PATH);
        if (rc == DLF_OK) rc = dlf_learner_load(&l2, CKPT_PATH);
        if (rc == DLF_OK) put_params(res, &m2.pl);
        memset(&fc, 0, sizeof fc);
        fc.num_it = 4;
        if (rc == DLF_OK) rc = dlf_lr_find(&l2, &fc, &fr);
        if (rc == DLF_OK) {
            put(res, fr.losses, fr.n);
            put_params(res, &m2.pl);   /* the finder puts the weights back */
        }
        dlf_lr_find_free(&fr);
        dlf_learner_free(&l);
        dlf_learner_free(&l2);
    }
    dlf_loader_free(ltr);
    dlf_dataset_free(&d);
    dlf_tape_destroy(&t);
    model_free(&m);
    model_free(&m2);
    return rc;
}

/* Pictures: activation telemetry over two training steps, its three plots, and the
   recorder's loss plot after a Learner epoch, as SVG files. */
static int sc_pictures(result *res)
{
    model m;
    dlf_tape t;
    dlf_tensor *x = NULL, *y = NULL;
    dlf_telemetry_cfg tc;
    dlf_telemetry *tl;
    int rc;
    dlf_tape_init(&t);
    memset(&tc, 0, sizeof tc);
    tc.max_steps = 4;
    tc.bins = 8;
    tl = dlf_telemetry_create(&tc);
    rc = model_build(&m, 10, DLF_OPTIM_SGD);
    if (rc == DLF_OK && !tl) rc = DLF_ERR_NOMEM;
    if (rc == DLF_OK) rc = make_batch(&x, &y);
    if (rc == DLF_OK) {
        dlf_telemetry_attach(&t, tl);
        rc = train_steps(&m, &t, x, y, 2);
        dlf_telemetry_attach(&t, NULL);
    }
    if (rc == DLF_OK) rc = dlf_telemetry_plot_stats(tl, svg_path, "stats");
    if (rc == DLF_OK) rc = dlf_telemetry_plot_near_zero(tl, svg_path, "near zero");
    if (rc == DLF_OK) rc = dlf_telemetry_plot_hist(tl, svg_path, "hist");
    if (rc == DLF_OK) put(res, dlf_telemetry_hist(tl, 1, 0), tc.bins);
    if (rc == DLF_OK) put_params(res, &m.pl);
    dlf_telemetry_free(tl);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
    dlf_tape_destroy(&t);
    model_free(&m);
    return rc;
}

/* Fail each allocation of fn in turn. */
static void inject(const char *name, int (*fn)(result *))
{
    static result ref, got;
    long n, k;
    int rc, errors = 0, same = 0, bad = 0;
    GROUP(name);
    memset(&ref, 0, sizeof ref);
    fa_arm(0);
    fa_live = 0;
    rc = fn(&ref);
    n = fa_count;
    CHECK(rc == DLF_OK, "%s without failures: rc %d: %s", name, rc, dlf_last_error());
    CHECK(fa_live == 0, "%s without failures leaks %ld blocks", name, fa_live);
    CHECK(n > 0 && ref.n > 0, "%s made %ld allocations, %d result values", name, n, ref.n);
    for (k = 1; k <= n; k++) {
        int failed_before = th_failed;
        memset(&got, 0, sizeof got);
        dlf_clear_error();
        fa_arm(k);
        fa_live = 0;
        rc = fn(&got);
        fa_arm(0);
        if (rc != DLF_OK) {
            errors++;
            if (dlf_last_error()[0] == 0) {
                bad++;
                CHECK(0, "%s, allocation %ld of %ld failed: rc %d but no message", name, k, n, rc);
            }
        } else if (got.n != ref.n || memcmp(got.w, ref.w, (size_t)ref.n * sizeof(float)) != 0) {
            bad++;
            CHECK(0, "%s, allocation %ld of %ld failed: DLF_OK but a different result", name, k, n);
        } else {
            same++;
        }
        if (fa_live != 0) {
            bad++;
            CHECK(0, "%s, allocation %ld of %ld failed: %ld blocks leak (rc %d)", name, k, n, fa_live, rc);
        }
        if (th_failed != failed_before && !bad) bad++;   /* an unexpected panic was counted */
    }
    CHECK(bad == 0, "%s: %d of %ld failure points went wrong", name, bad, n);
    CHECK(errors > 0, "%s: no allocation failure was reported (%ld points)", name, n);
    printf("  %-8s %4ld allocations: %d reported an error, %d recovered to the same bits\n", name, n, errors, same);
}

/* ------------------------------------------------------------ A: NULL arguments */

static dlf_tensor *null_model(dlf_tape *t, dlf_tensor *x, void *m) { (void)t; (void)x; (void)m; return NULL; }

static void test_null_args(void)
{
    dlf_tape t;
    dlf_tensor *a = dlf_param_new(2, (const int[]){2, 3}), *w = dlf_param_new(2, (const int[]){4, 3});
    dlf_tensor *loss;
    dlf_optim_cfg oc;
    GROUP("null arguments");
    dlf_tape_init(&t);
    memset(&oc, 0, sizeof oc);
    EXPECT_PANIC(dlf_add(&t, a, NULL), "dlf_add: b is NULL");
    dlf_tape_reset(&t);
    EXPECT_PANIC(dlf_add(NULL, a, a), "dlf_add: t is NULL");
    EXPECT_PANIC(dlf_linear(&t, NULL, w, NULL), "dlf_linear: x is NULL");
    dlf_tape_reset(&t);
    EXPECT_PANIC(dlf_linear(&t, a, NULL, NULL), "dlf_linear: w is NULL");
    dlf_tape_reset(&t);
    EXPECT_PANIC(dlf_relu(&t, NULL), "dlf_relu: a is NULL");
    dlf_tape_reset(&t);
    EXPECT_PANIC(dlf_relu(NULL, a), "dlf_relu: t is NULL");
    EXPECT_PANIC(dlf_backward(&t, NULL), "dlf_backward: loss is NULL");
    loss = dlf_sum_all(&t, a);
    EXPECT_PANIC(dlf_backward(NULL, loss), "dlf_backward: t is NULL");
    EXPECT_PANIC(dlf_optim_create(DLF_OPTIM_SGD, NULL, 1, &oc), "dlf_optim_create: params is NULL");
    EXPECT_PANIC(dlf_optim_step(NULL), "dlf_optim_step: o is NULL");
    EXPECT_PANIC(dlf_tensor_new(2, NULL), "dlf_tensor_new: shape is NULL");
    EXPECT_PANIC(dlf_tape_reset(NULL), "dlf_tape_reset: t is NULL");
    EXPECT_PANIC(dlf_fill(NULL, 1.0f), "dlf_fill: t is NULL");
    EXPECT_PANIC(dlf_seq_forward(&t, NULL, a), "dlf_seq_forward: s is NULL");
    EXPECT_PANIC(dlf_fit(&t, NULL, NULL, dlf_cross_entropy, NULL, NULL, NULL, NULL, NULL), "dlf_fit: model is NULL");
    EXPECT_PANIC(dlf_ckpt_save(NULL, "x"), "dlf_ckpt_save: c is NULL");
    {
        dlf_learner ln;
        EXPECT_PANIC(dlf_learner_init(&ln, &t, NULL, NULL, dlf_cross_entropy, NULL, NULL, NULL),
                     "dlf_learner_init: model is NULL");
        EXPECT_PANIC(dlf_learner_fit(&ln, 1), "dlf_learner_fit: l->tape is NULL");
    }
#ifndef DLF_NO_STDIO
    {
        dlf_idx x;
        EXPECT_PANIC(dlf_idx_load(NULL, &x), "dlf_idx_load: path is NULL");
    }
#endif
    /* free functions take NULL as free() does, with no message */
    dlf_tensor_free(NULL);
    dlf_optim_free(NULL);
    dlf_loader_free(NULL);
    dlf_tensor_free(a);
    dlf_tensor_free(w);
    dlf_tape_destroy(&t);
}

/* A handler that returns: counts and keeps the message. */
static int ret_panics;
static char ret_msg[512];
static void returning_handler(const char *msg, void *user)
{
    (void)user;
    ret_panics++;
    snprintf(ret_msg, sizeof ret_msg, "%s", msg);
}

typedef struct bad_model { model m; int bad_at_step, calls; result at_bad; } bad_model;
static dlf_tensor *bad_fwd(dlf_tape *t, dlf_tensor *x, void *u)
{
    bad_model *b = (bad_model *)u;
    dlf_tensor *z = dlf_seq_forward(t, &b->m.s, x);
    if (b->calls++ == b->bad_at_step) {
        b->at_bad.n = 0;
        put_params(&b->at_bad, &b->m.pl);     /* the weights before the failing step */
        z = dlf_matmul(t, z, z);              /* (8,3) @ (8,3): a shape mismatch */
    }
    return z;
}

static void test_returning_handler(void)
{
    dlf_tape t;
    dlf_tensor *a = dlf_param_new(2, (const int[]){2, 3}), *y, *z;
    GROUP("returning panic handler");
    dlf_set_panic_handler(returning_handler, NULL);
    dlf_tape_init(&t);
    ret_panics = 0;
    /* a NULL input: one message, NULL out, and NULL quietly down the chain */
    y = dlf_mean_all(&t, dlf_relu(&t, dlf_add(&t, a, NULL)));
    CHECK(y == NULL, "an op after a NULL argument returns NULL");
    CHECK(ret_panics == 1 && strstr(ret_msg, "dlf_add: b is NULL"), "one panic, naming dlf_add's b: %d, \"%s\"",
          ret_panics, ret_msg);
    CHECK(dlf_tape_error(&t) == DLF_ERR_ARG, "the tape keeps the error: %d", dlf_tape_error(&t));
    CHECK(dlf_backward(&t, y) == DLF_ERR_ARG && ret_panics == 1, "dlf_backward reports it without a new panic");
    dlf_tape_reset(&t);
    CHECK(dlf_tape_error(&t) == DLF_OK, "dlf_tape_reset clears it");
    /* a shape mismatch: NULL, never a half-made output */
    ret_panics = 0;
    z = dlf_matmul(&t, a, a);
    CHECK(z == NULL && ret_panics == 1 && strstr(ret_msg, "dlf_matmul"), "a mismatch returns NULL: %p, %d",
          (void *)z, ret_panics);
    y = dlf_relu(&t, z);
    CHECK(y == NULL && ret_panics == 2 && dlf_tape_error(&t) == DLF_ERR_ARG,
          "the next op names its NULL input once and marks the tape (%d panics)", ret_panics);
    CHECK(dlf_relu(&t, a) == NULL && ret_panics == 2, "a marked tape: every op returns NULL quietly");
    dlf_tape_reset(&t);
    CHECK(dlf_relu(&t, a) != NULL, "after a reset the tape works again");
    {   /* a learner refused at init is refused again at fit, never run half-made */
        dlf_learner ln;
        ret_panics = 0;
        dlf_learner_init(&ln, &t, NULL, NULL, dlf_cross_entropy, NULL, NULL, NULL);
        CHECK(dlf_learner_fit(&ln, 1) == DLF_ERR_ARG && ret_panics == 2, "dlf_learner_fit refuses it (%d panics)",
              ret_panics);
    }
    /* dlf_fit: an error code, and the weights as before the failed step */
    {
        bad_model b;
        dlf_dataset d, tr;
        dlf_loader *l = NULL;
        dlf_loader_cfg lc;
        dlf_fit_cfg fc;
        result after;
        int rc;
        memset(&after, 0, sizeof after);
        memset(&lc, 0, sizeof lc);
        memset(&fc, 0, sizeof fc);
        CHECK(model_build(&b.m, 6, DLF_OPTIM_SGD) == DLF_OK && small_dataset(&d) == DLF_OK, "setup");
        tr = dlf_dataset_view(&d, 0, 32);
        lc.batch_size = 8;
        l = dlf_loader_create(&tr, &lc);
        fc.epochs = 1;
        fc.quiet = 1;
        fc.fixed_threads = 1;
        for (b.bad_at_step = 0; b.bad_at_step <= 2; b.bad_at_step += 2) {
            b.calls = 0;
            ret_panics = 0;
            rc = dlf_fit(&t, bad_fwd, &b, dlf_cross_entropy, b.m.opt, l, NULL, &fc, NULL);
            after.n = 0;
            put_params(&after, &b.m.pl);
            CHECK(rc != DLF_OK && ret_panics >= 1, "dlf_fit with a failing step %d returns an error: %d (%d panics)",
                  b.bad_at_step, rc, ret_panics);
            CHECK(b.calls == b.bad_at_step + 1 && after.n == b.at_bad.n &&
                  memcmp(b.at_bad.w, after.w, (size_t)after.n * sizeof(float)) == 0,
                  "the fit stops at the failed step %d (%d model calls), the weights as before it", b.bad_at_step,
                  b.calls);
        }
        dlf_loader_free(l);
        dlf_dataset_free(&d);
        model_free(&b.m);
    }
    {   /* the Learner's own path: model returns NULL with no tape error */
        model m;
        dlf_dataset d, tr;
        dlf_loader *l;
        dlf_loader_cfg lc;
        dlf_learner ln;
        memset(&lc, 0, sizeof lc);
        CHECK(model_build(&m, 7, DLF_OPTIM_SGD) == DLF_OK && small_dataset(&d) == DLF_OK, "setup");
        tr = dlf_dataset_view(&d, 0, 16);
        lc.batch_size = 8;
        l = dlf_loader_create(&tr, &lc);
        dlf_learner_init(&ln, &t, null_model, &m, dlf_cross_entropy, m.opt, l, NULL);
        ln.fixed_threads = 1;
        CHECK(dlf_learner_fit(&ln, 1) == DLF_ERR_ARG, "a model returning NULL: DLF_ERR_ARG");
        dlf_learner_free(&ln);
        dlf_loader_free(l);
        dlf_dataset_free(&d);
        model_free(&m);
    }
    dlf_tensor_free(a);
    dlf_tape_destroy(&t);
    th_init();
}

/* One NULL argument per call, across the stages, with a handler that returns: exactly one
   message naming the argument, and NULL, an error code, NaN or nothing back; never a crash. */
static void test_null_sweep(void)
{
    dlf_tape t;
    dlf_rng r;
    dlf_tensor *a = dlf_param_new(2, (const int[]){2, 3});
    dlf_ckpt c;
    dlf_seq sq;
    dlf_params pl;
    dlf_optim_cfg oc;
    dlf_optim *o;
    dlf_schedule sc = dlf_sched_const(0.1);
    dlf_dataset ds;
    float mean, std;
    GROUP("null sweep, returning handler");
    dlf_set_panic_handler(returning_handler, NULL);
    dlf_tape_init(&t);
    dlf_rng_seed(&r, 1);
    dlf_ckpt_init(&c);
    dlf_seq_init(&sq);
    dlf_params_init(&pl);
    memset(&oc, 0, sizeof oc);
    o = dlf_optim_create(DLF_OPTIM_SGD, &a, 1, &oc);
    memset(&ds, 0, sizeof ds);
#define NULL_CALL(ok_expr, arg) do {                                                              \
        int p0_ = ret_panics, ok_;                                                                \
        dlf_tape_reset(&t);                                                                       \
        ret_msg[0] = 0;                                                                           \
        ok_ = (ok_expr);                                                                          \
        CHECK(ok_ && ret_panics == p0_ + 1 && strstr(ret_msg, arg " is NULL"),                    \
              "%s: ok %d, %d panics, \"%s\"", #ok_expr, ok_, ret_panics - p0_, ret_msg);         \
    } while (0)
    NULL_CALL((dlf_tensor_copy(a, NULL), 1), "src");
    NULL_CALL((dlf_fill_normal(a, NULL, 0.0f, 1.0f), 1), "r");
    NULL_CALL(dlf_same_shape(NULL, a) == 0, "a");
    NULL_CALL(dlf_tensor_rand(2, (const int[]){2, 2}, NULL) == NULL, "r");
    NULL_CALL(dlf_sub(&t, NULL, a) == NULL, "a");
    NULL_CALL(dlf_mul_scalar(&t, NULL, 2.0f) == NULL, "a");
    NULL_CALL(dlf_sum(&t, NULL, 0, 0) == NULL, "a");
    NULL_CALL(dlf_reshape(&t, NULL, 1, (const int[]){6}) == NULL, "a");
    NULL_CALL(dlf_matmul(&t, a, NULL) == NULL, "b");
    NULL_CALL(dlf_softmax(&t, NULL, -1) == NULL, "x");
    NULL_CALL(dlf_leaky_relu(&t, NULL, 0.1f) == NULL, "x");
    NULL_CALL(dlf_maxpool2d(&t, NULL, 2, 2, 0) == NULL, "x");
    NULL_CALL(dlf_conv2d(&t, NULL, a, NULL, 1, 0) == NULL, "x");
    NULL_CALL(dlf_embedding(&t, a, NULL) == NULL, "w");
    NULL_CALL(dlf_cross_entropy(&t, a, NULL) == NULL, "target");
    NULL_CALL(dlf_nll_loss(&t, NULL, a) == NULL, "logp");
    NULL_CALL(dlf_mse_loss(&t, a, NULL) == NULL, "target");
    NULL_CALL(dlf_groupnorm(&t, NULL, 1, NULL, NULL, 1e-5f) == NULL, "x");
    NULL_CALL(dlf_layernorm(&t, NULL, 3, NULL, NULL, 1e-5f) == NULL, "x");
    NULL_CALL(dlf_dropout(&t, NULL, 0.5f) == NULL, "x");
    NULL_CALL(dlf_seq_forward(&t, &sq, NULL) == NULL, "x");
    NULL_CALL(dlf_layer_forward(&t, NULL, a) == NULL, "l");
    NULL_CALL(dlf_tape_tensor(NULL, 1, (const int[]){2}) == NULL, "t");
    NULL_CALL(dlf_backward_seed(&t, NULL, NULL) == DLF_ERR_ARG, "out");
    NULL_CALL(dlf_seq_add(NULL, dlf_layer_simple(DLF_LAYER_RELU)) == DLF_ERR_ARG, "s");
    NULL_CALL(dlf_params_add(&pl, a, NULL, 0) == DLF_ERR_ARG, "name");
    NULL_CALL((dlf_init_kaiming_normal(a, NULL, 0.0f, DLF_FAN_IN), 1), "r");
    NULL_CALL(dlf_optim_create_groups(DLF_OPTIM_SGD, NULL, &oc, 1) == NULL, "pl");
    NULL_CALL(isnan(dlf_clip_grad_norm(NULL, 1, 1.0f)), "params");
    NULL_CALL(isnan(dlf_optim_get_hyper(NULL, 0, DLF_HYPER_LR)), "o");
    NULL_CALL((dlf_optim_zero_grad(NULL), 1), "o");
    NULL_CALL(isnan(dlf_schedule_at(NULL, 0, 10)), "s");
    NULL_CALL(dlf_cb_sched_add(NULL, DLF_HYPER_LR, 0, sc) == DLF_ERR_ARG, "s");
    NULL_CALL(dlf_loader_create(NULL, NULL) == NULL, "ds");
    NULL_CALL(dlf_loader_next(NULL) == 0, "l");
    NULL_CALL((dlf_dataset_stats(&ds, NULL, &std), 1), "mean");
    NULL_CALL((dlf_dataset_stats(&ds, &mean, NULL), 1), "std");
    NULL_CALL(dlf_idx_parse(NULL, 4, "x", NULL) == DLF_ERR_ARG, "bytes");
    NULL_CALL(dlf_ckpt_add_tensor(&c, NULL, a) == DLF_ERR_ARG, "name");
    NULL_CALL(dlf_ckpt_get_meta(&c, NULL) == NULL, "key");
    NULL_CALL(dlf_ckpt_add_optim(&c, NULL, NULL) == DLF_ERR_ARG, "o");
    NULL_CALL(dlf_safetensors_find(NULL, "x") == NULL, "st");
    NULL_CALL(isnan(dlf_evaluate(&t, NULL, NULL, NULL, NULL)), "model");
    NULL_CALL(dlf_learner_add_cb(NULL, NULL) == DLF_ERR_ARG, "l");
    NULL_CALL((dlf_telemetry_attach(NULL, NULL), 1), "t");
    NULL_CALL((dlf_rng_permutation(&r, NULL, 3), 1), "out");
#ifndef DLF_NO_STDIO
    NULL_CALL(dlf_safetensors_load(NULL, "x") == DLF_ERR_ARG, "st");
    NULL_CALL(dlf_svg_lines(NULL, NULL, NULL, 0) == DLF_ERR_ARG, "path");
    NULL_CALL(dlf_ckpt_load(&c, NULL) == DLF_ERR_ARG, "path");
#endif
#undef NULL_CALL
    dlf_optim_free(o);
    dlf_params_free(&pl);
    dlf_seq_free(&sq);
    dlf_ckpt_free(&c);
    dlf_tensor_free(a);
    dlf_tape_destroy(&t);
    th_init();
}

/* ------------------------------------------------------------ B: out of memory on the tape */

static void test_tape_nomem(void)
{
    dlf_tape t;
    dlf_tensor *a = dlf_param_new(2, (const int[]){4, 4}), *y, *loss;
    int panics_before = th_failed;
    GROUP("tape out of memory");
    dlf_tape_init(&t);
    fa_arm(1);                            /* the node list */
    y = dlf_relu(&t, a);
    fa_arm(0);
    CHECK(y == NULL && dlf_tape_error(&t) == DLF_ERR_NOMEM && strstr(dlf_last_error(), "out of memory"),
          "node list: NULL, DLF_ERR_NOMEM, \"%s\"", dlf_last_error());
    dlf_tape_reset(&t);
    dlf_tape_destroy(&t);
    dlf_tape_init(&t);
    dlf_tape_set_grad(&t, 0);
    fa_arm(1);                            /* the arena's first block */
    y = dlf_relu(&t, a);
    fa_arm(0);
    CHECK(y == NULL && dlf_tape_error(&t) == DLF_ERR_NOMEM && strstr(dlf_last_error(), "arena"),
          "arena: NULL, DLF_ERR_NOMEM, \"%s\"", dlf_last_error());
    loss = dlf_sum_all(&t, dlf_add(&t, y, a));
    CHECK(loss == NULL && th_failed == panics_before, "the NULL passes down quietly");
    CHECK(dlf_backward(&t, loss) == DLF_ERR_NOMEM, "dlf_backward returns DLF_ERR_NOMEM");
    dlf_tape_reset(&t);
    dlf_tape_set_grad(&t, 1);
    y = dlf_matmul(&t, a, a);             /* the arena has its block now: only the workspace is new */
    CHECK(y != NULL, "after the reset the tape works again");
    dlf_tape_reset(&t);
    dlf_tape_destroy(&t);
    dlf_tape_init(&t);
    (void)dlf_relu(&t, a);                /* node list and arena in place */
    dlf_tape_reset(&t);
    fa_arm(1);                            /* now the matmul's workspace */
    y = dlf_matmul(&t, a, a);
    fa_arm(0);
    CHECK(y == NULL && dlf_tape_error(&t) == DLF_ERR_NOMEM && strstr(dlf_last_error(), "workspace"),
          "workspace: NULL (never an uninitialized output), \"%s\"", dlf_last_error());
    CHECK(t.n_nodes == 0, "and no node recorded: %d", t.n_nodes);
    dlf_tape_reset(&t);
    /* backward: a gradient buffer in the arena fails */
    loss = dlf_sum_all(&t, dlf_relu(&t, a));
    while (t.cur->cap - t.cur->used >= 64) dlf__arena_alloc(&t, 64);   /* the block is full */
    fa_arm(1);
    CHECK(dlf_backward(&t, loss) == DLF_ERR_NOMEM, "a gradient that cannot be allocated: DLF_ERR_NOMEM (%s)",
          dlf_last_error());
    fa_arm(0);
    dlf_tensor_free(a);
    dlf_tape_destroy(&t);
}

/* With an argument, only the parts whose name contains it (e.g. `test_faults ckpt`). */
static int want(int argc, char **argv, const char *name)
{
    return argc < 2 || strstr(name, argv[1]) != NULL;
}

int main(int argc, char **argv)
{
    th_init();
    make_idx();
    pick_ckpt_path();
    if (want(argc, argv, "null")) test_null_args();
    if (want(argc, argv, "handler")) test_returning_handler();
    if (want(argc, argv, "null sweep")) test_null_sweep();
    if (want(argc, argv, "tape")) test_tape_nomem();
    if (want(argc, argv, "build")) inject("build", sc_build);
    if (want(argc, argv, "step")) inject("step", sc_step);
    if (want(argc, argv, "idx")) inject("idx", sc_idx);
    if (want(argc, argv, "ckpt")) inject("ckpt", sc_ckpt);
    if (want(argc, argv, "fit")) inject("fit", sc_fit);
    if (want(argc, argv, "learner")) inject("learner", sc_learner);
    if (want(argc, argv, "resume")) inject("resume", sc_resume);
    if (want(argc, argv, "pictures")) inject("pictures", sc_pictures);
    remove(CKPT_PATH);
    remove(svg_path);
    TEST_MAIN_END();
}
