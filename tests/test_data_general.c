/* test_data_general.c - stage 13's general datasets and the paths that take them.

   A float table (N, F), a multi-channel byte image set (N, C, H, W) and a CSV table
   each go through the same loader and the same dlf_fit (class ids: cross-entropy,
   float targets: MSE) and must learn a simple rule. Around that: loader steps that
   allocate nothing, the shuffle per seed, drop_last, the per-channel normalization
   against values computed here, the transform hook, the CSV reader's errors (each
   naming file, line and column), inference (dlf_predict, dlf_predict_loader) against
   a forward pass written out, and the normalization's round trip through a
   checkpoint file. */
#include <stdlib.h>
#define TH_COUNT_ALLOCS  /* count dlf's heap allocations (see harness.h) */
#define DLF_IMPLEMENTATION
#include "harness.h"

static char tmp_prefix[512];

static const char *write_tmp(const char *name, const char *text, char *path, size_t cap)
{
    FILE *f;
    snprintf(path, cap, "%s.tmp-%s", tmp_prefix, name);
    f = fopen(path, "wb");
    if (!f) { printf("cannot write %s\n", path); return path; }
    fputs(text, f);
    fclose(f);
    return path;
}

/* ---------------------------------------------------------------- small models */

typedef struct net {
    dlf_seq seq;
    dlf_params params;
    dlf_optim *opt;
} net;

static dlf_tensor *net_forward(dlf_tape *t, dlf_tensor *x, void *m)
{
    return dlf_seq_forward(t, &((net *)m)->seq, x);
}

/* [Flatten,] Linear(in, hidden), ReLU, Linear(hidden, out); Adam at lr. */
static int net_build(net *n, int flatten, int in, int hidden, int out, uint64_t seed, float lr)
{
    dlf_rng rng;
    dlf_optim_cfg oc;
    dlf_layer a, b;
    int ok;
    memset(n, 0, sizeof *n);
    dlf_rng_seed(&rng, seed);
    dlf_seq_init(&n->seq);
    dlf_params_init(&n->params);
    a = dlf_layer_linear(in, hidden, 1, &rng);
    b = dlf_layer_linear(hidden, out, 1, &rng);
    ok = dlf_layer_ok(&a) && dlf_layer_ok(&b);
    if (ok && flatten) ok = dlf_seq_add(&n->seq, dlf_layer_simple(DLF_LAYER_FLATTEN)) == DLF_OK;
    ok = ok && dlf_seq_add(&n->seq, a) == DLF_OK && dlf_seq_add(&n->seq, dlf_layer_simple(DLF_LAYER_RELU)) == DLF_OK &&
         dlf_seq_add(&n->seq, b) == DLF_OK && dlf_seq_collect(&n->seq, &n->params) == DLF_OK;
    memset(&oc, 0, sizeof oc);
    oc.lr = lr;
    if (ok) n->opt = dlf_optim_create_groups(DLF_OPTIM_ADAM, &n->params, &oc, 1);
    return ok && n->opt;
}

static void net_free(net *n)
{
    dlf_optim_free(n->opt);
    dlf_params_free(&n->params);
    dlf_seq_free(&n->seq);
}

/* ---------------------------------------------------------------- datasets */

#define TN 240   /* table items */
#define TF 4     /* table features */

/* Feature f ~ N(10 f - 5, (f + 1)^2): unstandardized scales. Class: the sign of
   z0 - z1 + 0.5 z2 in standardized units; targets (2): z0 + z1, z2 - 2 z3. */
static void make_table(dlf_tensor *x, dlf_tensor *cls, dlf_tensor *tgt, uint64_t seed)
{
    dlf_rng r;
    int i, f;
    dlf_rng_seed(&r, seed);
    for (i = 0; i < TN; i++) {
        float z[TF];
        for (f = 0; f < TF; f++) {
            z[f] = dlf_rng_normal(&r);
            x->data[i * TF + f] = 10.0f * (float)f - 5.0f + (float)(f + 1) * z[f];
        }
        if (cls) cls->data[i] = z[0] - z[1] + 0.5f * z[2] > 0.0f ? 1.0f : 0.0f;
        if (tgt) {
            tgt->data[i * 2] = z[0] + z[1];
            tgt->data[i * 2 + 1] = z[2] - 2.0f * z[3];
        }
    }
}

#define IN 150   /* images */
#define IC 3
#define IH 4
#define IW 4

/* Class c: channel c bright (150..255), the others dark (0..99); channels differ in
   their overall level so the per-channel statistics differ. */
static void make_images(uint8_t *px, dlf_tensor *y, uint64_t seed)
{
    dlf_rng r;
    int i, c, j;
    dlf_rng_seed(&r, seed);
    for (i = 0; i < IN; i++) {
        int cls = (int)dlf_rng_below(&r, IC);
        y->data[i] = (float)cls;
        for (c = 0; c < IC; c++)
            for (j = 0; j < IH * IW; j++) {
                uint8_t *p = px + ((size_t)i * IC + c) * IH * IW + j;
                *p = (uint8_t)(c == cls ? 150 + dlf_rng_below(&r, 106) : dlf_rng_below(&r, 100u >> c));
            }
    }
}

/* ---------------------------------------------------------------- loader behavior */

/* One epoch: every batch's items must be a permutation of 0..n-1 (via y = index). */
static int epoch_order(dlf_loader *l, int *out)
{
    int n, k = 0, i;
    while ((n = dlf_loader_next(l)) > 0)
        for (i = 0; i < n; i++) out[k++] = (int)l->x->data[(size_t)i * l->x->size / n];
    return k;
}

static void test_loader_general(void)
{
    dlf_tensor *x = dlf_tensor_new2(10, 3), *y = dlf_tensor_new2(10, 2), *cls = dlf_tensor_new1(10);
    dlf_dataset d, dc;
    dlf_loader_cfg cfg;
    dlf_loader *a, *b;
    int oa[10], ob[10], i, j, n, same = 1, any_diff = 0, e;
    long before;
    GROUP("loader: float table");
    for (i = 0; i < 10; i++) {
        for (j = 0; j < 3; j++) x->data[i * 3 + j] = (float)i + 0.25f * (float)j;  /* feature 0 = the item's index */
        y->data[i * 2] = -(float)i;
        y->data[i * 2 + 1] = 0.5f * (float)i;
        cls->data[i] = (float)(i % 4);
    }
    CHECK(dlf_dataset_from_tensor(&d, x, y, 0) == DLF_OK, "from_tensor targets");
    CHECK(d.n == 10 && d.table && d.channels == 3 && d.n_targets == 2 && d.features && d.targets && !d.ids &&
          d.n_classes == 0 && dlf_dataset_item_size(&d) == 3, "table fields");
    CHECK(dlf_dataset_from_tensor(&dc, x, cls, 4) == DLF_OK && dc.ids && dc.n_classes == 4 && dc.ids[7] == 3,
          "from_tensor class ids");
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 4;
    cfg.shuffle = 1;
    cfg.seed = 7;
    a = dlf_loader_create(&d, &cfg);
    b = dlf_loader_create(&d, &cfg);
    CHECK(a->x->ndim == 2 && a->x->shape[1] == 3 && a->y->ndim == 2 && a->y->shape[1] == 2, "batch shapes (4,3) (4,2)");
    /* same seed, same orders, epoch after epoch; each epoch a permutation */
    for (e = 0; e < 3; e++) {
        int seen[10] = {0}, ok = 1;
        CHECK(epoch_order(a, oa) == 10 && epoch_order(b, ob) == 10, "epoch %d: 10 items", e);
        for (i = 0; i < 10; i++) { same &= oa[i] == ob[i]; if (oa[i] >= 0 && oa[i] < 10) seen[oa[i]]++; }
        for (i = 0; i < 10; i++) ok &= seen[i] == 1;
        CHECK(ok, "epoch %d is a permutation", e);
    }
    CHECK(same, "same seed: same order every epoch");
    dlf_loader_free(b);
    cfg.seed = 8;
    b = dlf_loader_create(&d, &cfg);
    a->pos = 0;
    dlf_loader_free(a);
    cfg.seed = 7;
    a = dlf_loader_create(&d, &cfg);
    epoch_order(a, oa);
    epoch_order(b, ob);
    for (i = 0; i < 10; i++) any_diff |= oa[i] != ob[i];
    CHECK(any_diff, "another seed: another order");
    /* a batch's rows: x and y of the same items; short last batch */
    a->pos = 0;
    n = dlf_loader_next(a);
    for (i = 0; i < n; i++) {
        int item = (int)a->x->data[i * 3];
        CHECK(a->y->data[i * 2] == -(float)item && a->y->data[i * 2 + 1] == 0.5f * (float)item &&
              a->x->data[i * 3 + 2] == (float)item + 0.5f, "row %d is item %d throughout", i, item);
    }
    dlf_loader_next(a);
    n = dlf_loader_next(a);
    CHECK(n == 2 && a->x->shape[0] == 2 && a->x->size == 6 && a->y->shape[0] == 2 && a->y->size == 4,
          "short last batch (2,3) (2,2)");
    CHECK(dlf_loader_next(a) == 0, "end of epoch");
    /* allocation-free epochs */
    before = th_allocs;
    for (e = 0; e < 3; e++) while (dlf_loader_next(a) > 0) {}
    CHECK(th_allocs == before, "3 epochs of a float loader allocated %ld times", th_allocs - before);
    dlf_loader_free(a);
    dlf_loader_free(b);
    /* drop_last: 10 items, batch 4 -> 2 batches of 4 */
    cfg.drop_last = 1;
    a = dlf_loader_create(&dc, &cfg);
    CHECK(a->n_batches == 2 && a->y->ndim == 1, "drop_last: 2 batches, class ids (N)");
    n = 0;
    for (e = 0; e < 2; e++) {
        int k, nb = 0, tot = 0;
        while ((k = dlf_loader_next(a)) > 0) { nb++; tot += k; CHECK(k == 4, "drop_last: full batches only"); }
        CHECK(nb == 2 && tot == 8, "drop_last epoch %d: %d batches, %d items", e, nb, tot);
    }
    dlf_loader_free(a);
    dlf_dataset_free(&d);
    dlf_dataset_free(&dc);
    EXPECT_PANIC(dlf_dataset_from_tensor(&dc, x, y, 3), "class ids");
    cls->data[3] = 1.5f;
    EXPECT_PANIC(dlf_dataset_from_tensor(&dc, x, cls, 4), "not a class id");
    dlf_tensor_free(x);
    dlf_tensor_free(y);
    dlf_tensor_free(cls);
}

/* The transform hook: called once per batch, after normalization, its changes kept. */
typedef struct hook_state { int calls; float seen_first; } hook_state;
static void hook(dlf_tensor *x, dlf_tensor *y, void *user)
{
    hook_state *h = (hook_state *)user;
    int i;
    h->calls++;
    h->seen_first = x->data[0];
    for (i = 0; i < x->size; i++) x->data[i] += 100.0f;
    (void)y;
}

static void test_normalization(void)
{
    static uint8_t px[IN * IC * IH * IW];
    dlf_tensor *y = dlf_tensor_new1(IN), *xf;
    dlf_dataset d, df;
    dlf_loader_cfg cfg;
    dlf_loader *l;
    float mean[IC], std[IC], fm[IC], fs[IC];
    double rm[IC], rs[IC];
    hook_state h;
    int c, i, j, n, ok = 1, ok2 = 1;
    unsigned v0;
    long before;
    GROUP("normalization");
    make_images(px, y, 3);
    CHECK(dlf_dataset_from_images(&d, px, IN, IC, IH, IW, y, IC) == DLF_OK, "from_images");
    CHECK(d.images && d.ids && d.channels == IC && !d.table && d.n_classes == IC, "image fields");
    /* per-channel stats against a double computation here */
    dlf_dataset_channel_stats(&d, mean, std);
    for (c = 0; c < IC; c++) {
        double s = 0, s2 = 0, m;
        for (i = 0; i < IN; i++)
            for (j = 0; j < IH * IW; j++) { double v = px[(i * IC + c) * IH * IW + j] / 255.0; s += v; }
        m = s / (IN * IH * IW);
        for (i = 0; i < IN; i++)
            for (j = 0; j < IH * IW; j++) { double v = px[(i * IC + c) * IH * IW + j] / 255.0 - m; s2 += v * v; }
        rm[c] = m;
        rs[c] = sqrt(s2 / (IN * IH * IW));
        CHECK(fabs(mean[c] - rm[c]) < 1e-6 && fabs(std[c] - rs[c]) < 1e-6, "channel %d: mean %g (%g) std %g (%g)", c,
              mean[c], rm[c], std[c], rs[c]);
    }
    CHECK(fabs(rm[0] - rm[2]) > 0.02, "channels differ (%g vs %g)", rm[0], rm[2]);
    /* the loader's values: (v/255 - mean[c]) / std[c], channel by channel */
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 32;
    cfg.ch_mean = mean;
    cfg.ch_std = std;
    memset(&h, 0, sizeof h);
    l = dlf_loader_create(&d, &cfg);
    CHECK(l->x->ndim == 4 && l->x->shape[1] == IC && l->channels == IC, "image batch (32,3,4,4)");
    v0 = l->x->version;
    n = dlf_loader_next(l);
    CHECK(l->x->version != v0, "the batch's version counter moved");
    for (i = 0; i < n; i++)
        for (c = 0; c < IC; c++)
            for (j = 0; j < IH * IW; j++) {
                size_t k = ((size_t)i * IC + c) * IH * IW + j;
                float want = ((float)px[k] / 255.0f - mean[c]) / std[c];
                ok &= l->x->data[k] == want;
            }
    CHECK(ok, "byte normalization per channel, bit for bit");
    CHECK(l->norm_mean[2] == mean[2] && l->norm_std[1] == std[1], "the loader records its normalization");
    /* normalized over the whole set: mean ~0, std ~1 per channel */
    {
        double s[IC] = {0}, s2[IC] = {0};
        long cnt = 0;
        l->pos = 0;
        while ((n = dlf_loader_next(l)) > 0) {
            for (i = 0; i < n; i++)
                for (c = 0; c < IC; c++)
                    for (j = 0; j < IH * IW; j++) {
                        double v = l->x->data[((size_t)i * IC + c) * IH * IW + j];
                        s[c] += v; s2[c] += v * v;
                    }
            cnt += n;
        }
        for (c = 0; c < IC; c++) {
            double m = s[c] / (cnt * IH * IW), sd = sqrt(s2[c] / (cnt * IH * IW) - m * m);
            CHECK(fabs(m) < 1e-4 && fabs(sd - 1.0) < 1e-4, "channel %d after normalization: mean %g std %g", c, m, sd);
        }
    }
    before = th_allocs;
    for (i = 0; i < 3; i++) while (dlf_loader_next(l) > 0) {}
    CHECK(th_allocs == before, "3 epochs of a byte-image loader allocated %ld times", th_allocs - before);
    dlf_loader_free(l);
    /* the same pixels as floats: the table of floats normalizes the same way */
    xf = dlf_tensor_new4(IN, IC, IH, IW);
    for (i = 0; i < xf->size; i++) xf->data[i] = (float)px[i] / 255.0f;
    CHECK(dlf_dataset_from_tensor(&df, xf, y, IC) == DLF_OK && !df.table && df.features, "float images");
    dlf_dataset_channel_stats(&df, fm, fs);
    for (c = 0; c < IC; c++)
        CHECK(fabs(fm[c] - rm[c]) < 1e-6 && fabs(fs[c] - rs[c]) < 1e-6, "float channel %d stats %g %g", c, fm[c], fs[c]);
    cfg.transform = hook;
    cfg.transform_user = &h;
    l = dlf_loader_create(&df, &cfg);
    n = dlf_loader_next(l);
    for (i = 0; i < n * IC * IH * IW; i++) {
        int c2 = (i / (IH * IW)) % IC;
        float want = ((float)px[i] / 255.0f - mean[c2]) / std[c2] + 100.0f;
        ok2 &= l->x->data[i] == want;
    }
    CHECK(h.calls == 1 && ok2, "transform called once after normalization (calls %d), its change kept", h.calls);
    CHECK(h.seen_first == ((float)px[0] / 255.0f - mean[0]) / std[0], "transform saw the normalized batch");
    while (dlf_loader_next(l) > 0) {}
    CHECK(h.calls == l->n_batches, "transform called for every batch: %d of %d", h.calls, l->n_batches);
    dlf_loader_free(l);
    /* dlf_normalize equals the loader's normalization */
    {
        dlf_tensor *t = dlf_tensor_new4(2, IC, IH, IW);
        unsigned v;
        int ok3 = 1;
        for (i = 0; i < t->size; i++) t->data[i] = (float)px[i] / 255.0f;
        v = t->version;
        dlf_normalize(t, mean, std, IC);
        for (i = 0; i < t->size; i++) {
            int c2 = (i / (IH * IW)) % IC;
            ok3 &= t->data[i] == ((float)px[i] / 255.0f - mean[c2]) / std[c2];
        }
        CHECK(ok3 && t->version != v, "dlf_normalize: same values, version moved");
        EXPECT_PANIC(dlf_normalize(t, mean, std, 2), "channels");
        dlf_tensor_free(t);
    }
    /* a scalar mean/std on floats applies to every channel; none leaves the values */
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 8;
    l = dlf_loader_create(&df, &cfg);
    dlf_loader_next(l);
    CHECK(memcmp(l->x->data, xf->data, 8 * IC * IH * IW * sizeof(float)) == 0, "floats without normalization: as given");
    dlf_loader_free(l);
    cfg.mean = 0.5f;
    cfg.std = 0.25f;
    l = dlf_loader_create(&df, &cfg);
    dlf_loader_next(l);
    CHECK(l->x->data[17] == (xf->data[17] - 0.5f) / 0.25f, "scalar mean/std on floats");
    dlf_loader_free(l);
    cfg.ch_std = NULL;
    cfg.ch_mean = mean;
    EXPECT_PANIC(dlf_loader_create(&df, &cfg), "go together");
    dlf_tensor_free(xf);
    dlf_dataset_free(&df);
    dlf_dataset_free(&d);
    dlf_tensor_free(y);
}

static void test_split(void)
{
    dlf_tensor *x = dlf_tensor_new2(11, 2), *y = dlf_tensor_new1(11);
    dlf_dataset d, tr, te, tr2, te2;
    int i, seen[11] = {0}, ok = 1;
    GROUP("split");
    for (i = 0; i < 11; i++) { x->data[2 * i] = (float)i; x->data[2 * i + 1] = -(float)i; y->data[i] = (float)(i % 2); }
    dlf_dataset_from_tensor(&d, x, y, 2);
    CHECK(dlf_dataset_split(&d, 0.2, 5, &tr, &te) == DLF_OK, "split");
    CHECK(te.n == 3 && tr.n == 8 && tr.owns && te.owns, "ceil(0.2 * 11) = 3 test items, 8 train (%d, %d)", te.n, tr.n);
    for (i = 0; i < te.n; i++) seen[(int)te.features[2 * i]]++;
    for (i = 0; i < tr.n; i++) {
        int k = (int)tr.features[2 * i];
        seen[k]++;
        ok &= tr.features[2 * i + 1] == -(float)k && tr.ids[i] == k % 2;
    }
    for (i = 0; i < 11; i++) ok &= seen[i] == 1;
    CHECK(ok, "the parts are disjoint, cover the set and keep rows whole");
    dlf_dataset_split(&d, 0.2, 5, &tr2, &te2);
    CHECK(memcmp(te.features, te2.features, 6 * sizeof(float)) == 0, "same seed, same split");
    dlf_dataset_free(&tr2);
    dlf_dataset_free(&te2);
    dlf_dataset_split(&d, 0.2, 6, &tr2, &te2);
    CHECK(memcmp(te.features, te2.features, 6 * sizeof(float)) != 0, "another seed, another split");
    dlf_dataset_free(&tr2);
    dlf_dataset_free(&te2);
    dlf_dataset_free(&tr);
    dlf_dataset_free(&te);
    dlf_dataset_free(&d);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

/* ---------------------------------------------------------------- the fit path */

/* Train on ds (loss NULL: by its labels) and report dlf_evaluate's result. */
static float fit_and_eval(dlf_dataset *ds, int flatten, int in, int out, int epochs, float lr, float *loss)
{
    float mean[64], std[64], acc;
    dlf_loader_cfg cfg;
    dlf_loader *tr, *ev;
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    dlf_tape tape;
    net n;
    int rc;
    if (!net_build(&n, flatten, in, 16, out, 1, lr)) { CHECK(0, "model build"); return 0.0f; }
    dlf_tape_init(&tape);
    dlf_dataset_channel_stats(ds, mean, std);
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 16;
    cfg.shuffle = 1;
    cfg.seed = 3;
    cfg.ch_mean = mean;
    cfg.ch_std = std;
    tr = dlf_loader_create(ds, &cfg);
    cfg.shuffle = 0;
    cfg.batch_size = 64;
    ev = dlf_loader_create(ds, &cfg);
    memset(&fc, 0, sizeof fc);
    fc.epochs = epochs;
    fc.quiet = 1;
    fc.fixed_threads = 1;
    memset(&rep, 0xff, sizeof rep);
    rc = dlf_fit(&tape, net_forward, &n, NULL, n.opt, tr, ev, &fc, &rep);
    CHECK(rc == DLF_OK, "dlf_fit: %s", dlf_last_error());
    CHECK(rep.steps == epochs * tr->n_batches && rep.train_loss > 0.0f, "report: %d steps, train loss %g", rep.steps,
          rep.train_loss);
    acc = dlf_evaluate(&tape, net_forward, &n, ev, loss);
    CHECK(fabsf(*loss - rep.valid_loss) < 1e-4f * (1.0f + *loss), "dlf_evaluate's loss %g = the fit's valid loss %g",
          *loss, rep.valid_loss);
    CHECK(ds->targets ? rep.valid_acc == 0.0f : rep.valid_acc == acc, "valid_acc %g, evaluate %g", rep.valid_acc, acc);
    dlf_loader_free(tr);
    dlf_loader_free(ev);
    dlf_tape_destroy(&tape);
    net_free(&n);
    return acc;
}

static void test_fit_paths(void)
{
    static uint8_t px[IN * IC * IH * IW];
    dlf_tensor *x = dlf_tensor_new2(TN, TF), *cls = dlf_tensor_new1(TN), *tgt = dlf_tensor_new2(TN, 2);
    dlf_tensor *yi = dlf_tensor_new1(IN);
    dlf_dataset d;
    float acc, loss;
    char path[600];
    char *csv;
    size_t len = 0;
    int i, f;
    GROUP("fit: float table, classes");
    make_table(x, cls, tgt, 11);
    dlf_dataset_from_tensor(&d, x, cls, 2);
    acc = fit_and_eval(&d, 0, TF, 2, 30, 0.01f, &loss);
    CHECK(acc >= 0.95f, "table classification: accuracy %.4f, loss %.4f", acc, loss);
    dlf_dataset_free(&d);

    GROUP("fit: float table, targets (MSE)");
    dlf_dataset_from_tensor(&d, x, tgt, 0);
    acc = fit_and_eval(&d, 0, TF, 2, 40, 0.01f, &loss);
    CHECK(acc == 0.0f && loss < 0.1f, "regression: evaluate returns 0, MSE %.4f (targets' variance ~2.5)", loss);
    dlf_dataset_free(&d);

    GROUP("fit: 3-channel byte images");
    make_images(px, yi, 21);
    dlf_dataset_from_images(&d, px, IN, IC, IH, IW, yi, IC);
    acc = fit_and_eval(&d, 1, IC * IH * IW, IC, 10, 0.01f, &loss);
    CHECK(acc >= 0.95f, "images: accuracy %.4f, loss %.4f", acc, loss);
    dlf_dataset_free(&d);

    GROUP("fit: CSV table");
    csv = (char *)malloc(64 * (TN + 1));
    len += (size_t)sprintf(csv + len, "f0,f1,label,f2,f3\n");
    for (i = 0; i < TN; i++) {
        for (f = 0; f < TF; f++) {
            len += (size_t)sprintf(csv + len, "%.6g,", (double)x->data[i * TF + f]);
            if (f == 1) len += (size_t)sprintf(csv + len, "%d,", (int)cls->data[i]);
        }
        csv[len - 1] = '\n';
    }
    write_tmp("table.csv", csv, path, sizeof path);
    {
        dlf_csv_cfg cc;
        memset(&cc, 0, sizeof cc);
        cc.label_col = 2;
        CHECK(dlf_csv_load(path, &cc, &d) == DLF_OK, "load: %s", dlf_last_error());
        CHECK(d.n == TN && d.channels == TF && d.table && d.n_classes == 2 && d.ids && d.features,
              "csv: %d rows of %d features, %d classes", d.n, d.channels, d.n_classes);
        CHECK(fabsf(d.features[5 * TF + 3] - x->data[5 * TF + 3]) < 1e-4f * fabsf(x->data[5 * TF + 3]) &&
              d.ids[7] == (int)cls->data[7], "csv values");
        acc = fit_and_eval(&d, 0, TF, 2, 30, 0.01f, &loss);
        CHECK(acc >= 0.95f, "csv classification: accuracy %.4f, loss %.4f", acc, loss);
        dlf_dataset_free(&d);
    }
    remove(path);
    free(csv);
    dlf_tensor_free(x);
    dlf_tensor_free(cls);
    dlf_tensor_free(tgt);
    dlf_tensor_free(yi);
}

/* Training steps allocate nothing: a fit of 4 epochs makes as many allocations as a
   fit of 1 (its setup), for a table with float targets (MSE) and one with classes. */
static void test_fit_allocs(void)
{
    dlf_tensor *x = dlf_tensor_new2(TN, TF), *cls = dlf_tensor_new1(TN), *tgt = dlf_tensor_new2(TN, 2);
    dlf_dataset d[2];
    int k;
    GROUP("fit: no allocation per step");
    make_table(x, cls, tgt, 12);
    dlf_dataset_from_tensor(&d[0], x, cls, 2);
    dlf_dataset_from_tensor(&d[1], x, tgt, 0);
    for (k = 0; k < 2; k++) {
        long counts[2];
        int e;
        dlf_loader_cfg cfg;
        dlf_loader *tr, *va;
        dlf_fit_cfg fc;
        dlf_tape tape;
        net n;
        net_build(&n, 0, TF, 8, 2, 1, 0.01f);
        dlf_tape_init(&tape);
        memset(&cfg, 0, sizeof cfg);
        cfg.batch_size = 16;
        cfg.shuffle = 1;
        tr = dlf_loader_create(&d[k], &cfg);
        va = dlf_loader_create(&d[k], &cfg);
        memset(&fc, 0, sizeof fc);
        fc.quiet = 1;
        fc.fixed_threads = 1;
        fc.epochs = 1;
        dlf_fit(&tape, net_forward, &n, NULL, n.opt, tr, va, &fc, NULL);   /* warms the tape's arena */
        for (e = 0; e < 2; e++) {
            long before = th_allocs;
            fc.epochs = e == 0 ? 1 : 4;
            CHECK(dlf_fit(&tape, net_forward, &n, NULL, n.opt, tr, va, &fc, NULL) == DLF_OK, "fit");
            counts[e] = th_allocs - before;
        }
        CHECK(counts[0] == counts[1], "%s: a 1-epoch fit allocates %ld times, a 4-epoch fit %ld",
              k ? "targets" : "classes", counts[0], counts[1]);
        dlf_loader_free(tr);
        dlf_loader_free(va);
        dlf_tape_destroy(&tape);
        net_free(&n);
    }
    dlf_dataset_free(&d[0]);
    dlf_dataset_free(&d[1]);
    dlf_tensor_free(x);
    dlf_tensor_free(cls);
    dlf_tensor_free(tgt);
}

/* dlf_fit's report is set even when the fit stops on an error. */
static void test_fit_report_on_error(void)
{
    dlf_tensor *x = dlf_tensor_new2(TN, TF), *cls = dlf_tensor_new1(TN);
    dlf_dataset d;
    dlf_loader *tr;
    dlf_loader_cfg cfg;
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    dlf_tape tape;
    net n;
    int rc;
    GROUP("fit report on error");
    make_table(x, cls, NULL, 2);
    dlf_dataset_from_tensor(&d, x, cls, 2);
    net_build(&n, 0, TF, 8, 2, 1, 1e30f);   /* unnormalized inputs and an absurd lr: the loss blows up */
    dlf_tape_init(&tape);
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 16;
    tr = dlf_loader_create(&d, &cfg);
    memset(&fc, 0, sizeof fc);
    fc.epochs = 3;
    fc.quiet = 1;
    fc.fixed_threads = 1;
    memset(&rep, 0xff, sizeof rep);
    rc = dlf_fit(&tape, net_forward, &n, NULL, n.opt, tr, NULL, &fc, &rep);
    CHECK(rc == DLF_ERR_ARG, "the fit stops: rc %d (%s)", rc, dlf_last_error());
    CHECK(rep.steps >= 0 && rep.steps < 3 * tr->n_batches && rep.valid_loss == 0.0f && rep.valid_acc == 0.0f,
          "report filled: steps %d valid %g %g", rep.steps, rep.valid_loss, rep.valid_acc);
    dlf_loader_free(tr);
    dlf_tape_destroy(&tape);
    net_free(&n);
    dlf_dataset_free(&d);
    dlf_tensor_free(x);
    dlf_tensor_free(cls);
}

/* ---------------------------------------------------------------- CSV */

static void csv_ok(const char *what, const char *text, const dlf_csv_cfg *cc, int n, int f, int classes)
{
    dlf_dataset d;
    int rc = dlf_csv_parse(text, strlen(text), what, cc, &d);
    CHECK(rc == DLF_OK, "%s: %s", what, dlf_last_error());
    if (rc == DLF_OK)
        CHECK(d.n == n && d.channels == f && d.n_classes == classes, "%s: %d rows (%d), %d features (%d), %d classes (%d)",
              what, d.n, n, d.channels, f, d.n_classes, classes);
    dlf_dataset_free(&d);
}

/* A file that must be rejected with `code`, its message naming the file and holding each of a, b. */
static void csv_bad(const char *name, const char *text, const dlf_csv_cfg *cc, int code, const char *a, const char *b)
{
    char path[600];
    dlf_dataset d;
    int rc;
    write_tmp(name, text, path, sizeof path);
    dlf_clear_error();
    memset(&d, 0x5a, sizeof d);
    rc = dlf_csv_load(path, cc, &d);
    CHECK(rc == code, "%s: code %d, expected %d (%s)", name, rc, code, dlf_last_error());
    CHECK(strstr(dlf_last_error(), path) != NULL, "%s: \"%s\" does not name the file", name, dlf_last_error());
    CHECK(strstr(dlf_last_error(), a) != NULL && (!b || strstr(dlf_last_error(), b) != NULL),
          "%s: \"%s\" lacks \"%s\" / \"%s\"", name, dlf_last_error(), a, b ? b : "");
    CHECK(d.features == NULL && d.ids == NULL && d.n == 0, "%s: nothing left behind", name);
    remove(path);
}

static void test_csv(void)
{
    dlf_csv_cfg cc;
    dlf_dataset d;
    char path[600];
    GROUP("csv");
    memset(&cc, 0, sizeof cc);
    cc.label_col = -1;
    csv_ok("plain", "1,2,0\n3,4,1\n5,6,2\n", &cc, 3, 2, 3);
    csv_ok("header detected", "a,b,y\n1,2,0\n3,4,1\n", &cc, 2, 2, 2);
    csv_ok("crlf, spaces, no final newline", "1 , 2.5e1,0\r\n-3,+.5, 1\r\n4.,-0.25E-2,1", &cc, 3, 2, 2);
    csv_ok("trailing empty lines", "1,2,0\n3,4,1\n\n\n", &cc, 2, 2, 2);
    cc.skip_lines = 1;
    cc.header = -1;
    csv_ok("skip a counts line", "569,30,malignant,benign\n1,2,0\n3,4,1\n", &cc, 2, 2, 2);
    cc.skip_lines = 0;
    cc.header = 1;
    csv_ok("numeric header forced", "1,2,3\n1,2,0\n", &cc, 1, 2, 1);
    cc.header = 0;
    cc.label_col = 0;
    cc.regression = 1;
    if (dlf_csv_parse("y,a,b\n0.5,1,2\n-1.5,3,4\n", 22, "regression", &cc, &d) == DLF_OK) {
        CHECK(d.targets && d.n_targets == 1 && d.targets[1] == -1.5f && d.features[2] == 3.0f && d.features[3] == 4.0f &&
              d.n_classes == 0 && !d.ids, "regression: label column 0 as float targets");
        dlf_dataset_free(&d);
    } else CHECK(0, "regression: %s", dlf_last_error());
    /* errors: each names the file, the line and the column */
    memset(&cc, 0, sizeof cc);
    cc.label_col = -1;
    csv_bad("empty.csv", "", &cc, DLF_ERR_FORMAT, "empty file", NULL);
    csv_bad("header-only.csv", "a,b,c\n", &cc, DLF_ERR_FORMAT, "no data rows", NULL);
    csv_bad("text.csv", "a,b,y\n1,2,0\n3,x4,1\n", &cc, DLF_ERR_FORMAT, "line 3, column 2", "\"x4\" is not a number");
    csv_bad("columns.csv", "1,2,0\n3,4,1\n5,6\n", &cc, DLF_ERR_FORMAT, "line 3 has 2 columns, expected 3", NULL);
    csv_bad("columns-more.csv", "1,2,0\n3,4,1,7\n", &cc, DLF_ERR_FORMAT, "line 2 has 4 columns", NULL);
    csv_bad("nan.csv", "1,2,0\nnan,4,1\n", &cc, DLF_ERR_FORMAT, "line 2, column 1", "no NaN or inf");
    csv_bad("inf.csv", "1,2,0\n3,-inf,1\n", &cc, DLF_ERR_FORMAT, "line 2, column 2", "\"-inf\"");
    csv_bad("hex.csv", "1,2,0\n1,0x10,0\n", &cc, DLF_ERR_FORMAT, "line 2, column 2", "not a number");
    csv_bad("huge.csv", "1,2,0\n1e39,2,1\n", &cc, DLF_ERR_FORMAT, "line 2, column 1", "out of float range");
    csv_bad("empty-field.csv", "1,2,0\n3,,1\n", &cc, DLF_ERR_FORMAT, "line 2, column 2", "empty field");
    csv_bad("blank-line.csv", "1,2,0\n\n3,4,1\n", &cc, DLF_ERR_FORMAT, "line 2 is empty", NULL);
    csv_bad("label.csv", "1,2,0\n3,4,1.5\n", &cc, DLF_ERR_FORMAT, "line 2, column 3", "not a class id");
    csv_bad("negative-label.csv", "1,2,-1\n", &cc, DLF_ERR_FORMAT, "line 1, column 3", "not a class id");
    csv_bad("one-column.csv", "1\n2\n", &cc, DLF_ERR_FORMAT, "a label and at least one feature", NULL);
    cc.label_col = 5;
    csv_bad("label-col.csv", "1,2,0\n", &cc, DLF_ERR_ARG, "label column 5", "3 columns");
    cc.label_col = -1;
    cc.header = -1;
    csv_bad("header-not-allowed.csv", "a,b,c\n1,2,0\n", &cc, DLF_ERR_FORMAT, "line 1, column 1", "not a number");
    cc.header = 0;
    cc.skip_lines = 1;
    csv_bad("skip-all.csv", "only,this\n", &cc, DLF_ERR_FORMAT, "empty file", NULL);
    cc.skip_lines = 0;
    csv_bad("mixed-first-line.csv", "569,30,malignant,benign\n1,2,3,0\n", &cc, DLF_ERR_FORMAT,
            "line 1 mixes numbers and text", "column 3: \"malignant\"");
    csv_bad("nan-first-row.csv", "nan,2,0\n1,2,0\n", &cc, DLF_ERR_FORMAT, "line 1 mixes", "column 1");
    snprintf(path, sizeof path, "%s.tmp-does-not-exist.csv", tmp_prefix);
    CHECK(dlf_csv_load(path, &cc, &d) == DLF_ERR_IO && strstr(dlf_last_error(), path), "missing file: %s",
          dlf_last_error());
}

/* ---------------------------------------------------------------- inference */

static void test_predict(void)
{
    dlf_tensor *x = dlf_tensor_new2(TN, TF), *cls = dlf_tensor_new1(TN), *xb, *logits, *probs, *classes, *z;
    dlf_dataset d;
    dlf_loader_cfg cfg;
    dlf_loader *l;
    dlf_tape tape;
    net n;
    float *all, *allc;
    int i, j, ok = 1, okp = 1, okc = 1, items, C = 3, prev_grad, prev_training;
    GROUP("inference");
    make_table(x, cls, NULL, 4);
    dlf_dataset_from_tensor(&d, x, cls, 2);
    net_build(&n, 0, TF, 8, C, 9, 0.01f);
    dlf_tape_init(&tape);
    xb = dlf_tensor_new2(10, TF);
    memcpy(xb->data, x->data, 10 * TF * sizeof(float));
    logits = dlf_tensor_new2(10, C);
    probs = dlf_tensor_new2(10, C);
    classes = dlf_tensor_new1(10);
    dlf_tape_set_grad(&tape, 1);
    dlf_tape_set_training(&tape, 1);
    CHECK(dlf_predict(&tape, net_forward, &n, xb, DLF_PRED_LOGITS, logits) == DLF_OK, "predict logits");
    CHECK(dlf_predict(&tape, net_forward, &n, xb, DLF_PRED_PROBS, probs) == DLF_OK, "predict probs");
    CHECK(dlf_predict(&tape, net_forward, &n, xb, DLF_PRED_CLASS, classes) == DLF_OK, "predict classes");
    prev_grad = dlf_tape_set_grad(&tape, 1);
    prev_training = dlf_tape_set_training(&tape, 1);
    CHECK(prev_grad == 1 && prev_training == 1, "grad and training mode restored");
    /* the forward pass written out: x W1^T + b1, relu, h W2^T + b2 (PyTorch's Linear layout) */
    {
        const dlf_tensor *w1 = n.params.items[0].t, *b1 = n.params.items[1].t, *w2 = n.params.items[2].t,
                         *b2 = n.params.items[3].t;
        for (i = 0; i < 10; i++) {
            double h[8], zz[3], mx, s = 0.0;
            int k, best = 0;
            for (k = 0; k < 8; k++) {
                double a = b1->data[k];
                for (j = 0; j < TF; j++) a += (double)xb->data[i * TF + j] * w1->data[k * TF + j];
                h[k] = a > 0.0 ? a : 0.0;
            }
            for (k = 0; k < C; k++) {
                double a = b2->data[k];
                for (j = 0; j < 8; j++) a += h[j] * w2->data[k * 8 + j];
                zz[k] = a;
                if (zz[k] > zz[best]) best = k;
                ok &= fabs(logits->data[i * C + k] - a) < 1e-4 * (1.0 + fabs(a));
            }
            mx = zz[best];
            for (k = 0; k < C; k++) s += exp(zz[k] - mx);
            for (k = 0; k < C; k++) okp &= fabs(probs->data[i * C + k] - exp(zz[k] - mx) / s) < 1e-5;
            okc &= classes->data[i] == (float)best;
        }
    }
    CHECK(ok, "logits = the forward pass written out");
    CHECK(okp, "probabilities = softmax of it");
    CHECK(okc, "classes = argmax of it");
    /* the same on the model's own forward, no tape recording */
    dlf_tape_reset(&tape);
    z = net_forward(&tape, xb, &n);
    CHECK(memcmp(z->data, logits->data, 10 * C * sizeof(float)) == 0, "logits = the model's forward, bit for bit");
    dlf_tape_reset(&tape);
    /* over a loader: rows in order, same numbers */
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 7;
    l = dlf_loader_create(&d, &cfg);
    all = (float *)malloc(TN * C * sizeof(float));
    allc = (float *)malloc(TN * sizeof(float));
    CHECK(dlf_predict_loader(&tape, net_forward, &n, l, DLF_PRED_LOGITS, all, TN * C, &items) == DLF_OK && items == TN,
          "predict_loader: %d items", items);
    CHECK(memcmp(all, logits->data, 10 * C * sizeof(float)) == 0, "predict_loader rows = dlf_predict's");
    CHECK(dlf_predict_loader(&tape, net_forward, &n, l, DLF_PRED_CLASS, allc, TN, &items) == DLF_OK && items == TN,
          "predict_loader classes");
    ok = 1;
    for (i = 0; i < TN; i++) {
        int best = 0;
        for (j = 1; j < C; j++) if (all[i * C + j] > all[i * C + best]) best = j;
        ok &= allc[i] == (float)best;
    }
    CHECK(ok, "classes over the loader = argmax of its logits");
    EXPECT_PANIC(dlf_predict_loader(&tape, net_forward, &n, l, DLF_PRED_LOGITS, all, TN, &items), "holds");
    EXPECT_PANIC(dlf_predict(&tape, net_forward, &n, xb, DLF_PRED_LOGITS, classes), "does not fit");
    dlf_loader_free(l);
    free(all);
    free(allc);
    net_free(&n);
    /* one binary logit: sigmoid and logit > 0 */
    {
        dlf_tensor *p1 = dlf_tensor_new2(10, 1), *c1 = dlf_tensor_new1(10), *l1 = dlf_tensor_new2(10, 1);
        int okb = 1;
        net_build(&n, 0, TF, 8, 1, 5, 0.01f);
        dlf_predict(&tape, net_forward, &n, xb, DLF_PRED_LOGITS, l1);
        dlf_predict(&tape, net_forward, &n, xb, DLF_PRED_PROBS, p1);
        dlf_predict(&tape, net_forward, &n, xb, DLF_PRED_CLASS, c1);
        for (i = 0; i < 10; i++)
            okb &= fabs(p1->data[i] - 1.0 / (1.0 + exp(-(double)l1->data[i]))) < 1e-6 &&
                   c1->data[i] == (l1->data[i] > 0.0f ? 1.0f : 0.0f);
        CHECK(okb, "one output: sigmoid and logit > 0");
        net_free(&n);
        dlf_tensor_free(p1);
        dlf_tensor_free(c1);
        dlf_tensor_free(l1);
    }
    dlf_tape_destroy(&tape);
    dlf_tensor_free(xb);
    dlf_tensor_free(logits);
    dlf_tensor_free(probs);
    dlf_tensor_free(classes);
    dlf_dataset_free(&d);
    dlf_tensor_free(x);
    dlf_tensor_free(cls);
}

/* ---------------------------------------------------------------- checkpoints */

static void test_norm_ckpt(void)
{
    static uint8_t px[IN * IC * IH * IW];
    dlf_tensor *x = dlf_tensor_new2(TN, TF), *cls = dlf_tensor_new1(TN), *yi = dlf_tensor_new1(IN);
    dlf_dataset d, di;
    dlf_loader_cfg cfg;
    dlf_loader *l, *li;
    dlf_ckpt c;
    float mean[TF], std[TF], m2[8], s2[8], div = 0.0f, im[IC], is[IC];
    char path[600];
    int n = 0, i, ok = 1;
    GROUP("normalization in checkpoints");
    make_table(x, cls, NULL, 4);
    dlf_dataset_from_tensor(&d, x, cls, 2);
    dlf_dataset_channel_stats(&d, mean, std);
    make_images(px, yi, 8);
    dlf_dataset_from_images(&di, px, IN, IC, IH, IW, yi, IC);
    dlf_dataset_channel_stats(&di, im, is);
    memset(&cfg, 0, sizeof cfg);
    cfg.ch_mean = mean;
    cfg.ch_std = std;
    l = dlf_loader_create(&d, &cfg);
    cfg.ch_mean = im;
    cfg.ch_std = is;
    li = dlf_loader_create(&di, &cfg);
    snprintf(path, sizeof path, "%s.tmp-norm.safetensors", tmp_prefix);
    dlf_ckpt_init(&c);
    CHECK(dlf_ckpt_add_loader_norm(&c, "input", l) == DLF_OK && dlf_ckpt_add_loader_norm(&c, "img", li) == DLF_OK,
          "add");
    CHECK(dlf_ckpt_save(&c, path) == DLF_OK, "save: %s", dlf_last_error());
    dlf_ckpt_free(&c);
    dlf_ckpt_init(&c);
    CHECK(dlf_ckpt_load(&c, path) == DLF_OK, "load: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_norm(&c, "input", m2, s2, 8, &n, &div) == DLF_OK && n == TF && div == 1.0f,
          "table: %d values, divisor %g (%s)", n, div, dlf_last_error());
    for (i = 0; i < TF; i++) ok &= memcmp(&m2[i], &mean[i], sizeof(float)) == 0 && memcmp(&s2[i], &std[i], sizeof(float)) == 0;
    CHECK(ok, "table: mean and std back bit for bit");
    CHECK(dlf_ckpt_get_norm(&c, "img", m2, s2, 8, &n, &div) == DLF_OK && n == IC && div == 255.0f &&
          m2[1] == im[1] && s2[2] == is[2], "images: %d channels, divisor %g", n, div);
    /* another program's preprocessing from the file alone: (v / divisor - mean) / std = the loader's batch */
    {
        dlf_tensor *t = dlf_tensor_new4(4, IC, IH, IW);
        for (i = 0; i < t->size; i++) t->data[i] = (float)px[i] / div;
        dlf_normalize(t, m2, s2, n);
        dlf_loader_next(li);
        CHECK(memcmp(t->data, li->x->data, (size_t)t->size * sizeof(float)) == 0,
              "normalizing with the file's values reproduces the loader's batch");
        dlf_tensor_free(t);
    }
    CHECK(dlf_ckpt_get_norm(&c, "input", m2, s2, 2, &n, NULL) == DLF_ERR_ARG && strstr(dlf_last_error(), "room"),
          "cap too small: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_norm(&c, "nope", m2, s2, 8, &n, NULL) == DLF_ERR_FORMAT && strstr(dlf_last_error(), "norm.nope"),
          "absent: %s", dlf_last_error());
    dlf_ckpt_free(&c);
    remove(path);
    /* the Learner's run state holds its training loader's normalization as "input" */
    {
        dlf_learner lr;
        dlf_tape tape;
        net nn;
        net_build(&nn, 0, TF, 8, 2, 1, 0.01f);
        dlf_tape_init(&tape);
        dlf_learner_init(&lr, &tape, net_forward, &nn, NULL, nn.opt, l, NULL);
        lr.params = &nn.params;
        CHECK(dlf_learner_fit(&lr, 1) == DLF_OK, "learner fit with loss NULL: %s", dlf_last_error());
        CHECK(dlf_learner_save(&lr, path) == DLF_OK, "learner save: %s", dlf_last_error());
        dlf_ckpt_init(&c);
        dlf_ckpt_load(&c, path);
        CHECK(dlf_ckpt_get_norm(&c, "input", m2, s2, 8, &n, &div) == DLF_OK && n == TF && m2[3] == mean[3] &&
              s2[0] == std[0] && div == 1.0f, "learner checkpoint: norm.input (%s)", dlf_last_error());
        dlf_ckpt_free(&c);
        remove(path);
        dlf_learner_free(&lr);
        dlf_tape_destroy(&tape);
        net_free(&nn);
    }
    dlf_loader_free(l);
    dlf_loader_free(li);
    dlf_dataset_free(&d);
    dlf_dataset_free(&di);
    dlf_tensor_free(x);
    dlf_tensor_free(cls);
    dlf_tensor_free(yi);
}

int main(int argc, char **argv)
{
    th_init();
    snprintf(tmp_prefix, sizeof tmp_prefix, "%s", argc > 0 ? argv[0] : "test_data_general");
    test_loader_general();
    test_normalization();
    test_split();
    test_csv();
    test_fit_paths();
    test_fit_allocs();
    test_fit_report_on_error();
    test_predict();
    test_norm_ckpt();
    TEST_MAIN_END();
}
