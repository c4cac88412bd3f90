/* test_misuse.c - misuse of the tape (stage 5): every case either gives PyTorch's numbers or
   panics with a message that names the call.

   - a forgotten dlf_tape_reset between steps: the gradients stay right (backward walks only
     the nodes its loss needs), the arena warns once past warn_step_bytes and panics past
     max_step_bytes;
   - dlf_backward twice on one loss: the second panics (the nodes are used up), PyTorch's
     "backward through the graph a second time";
   - two losses on one tape: sharing no nodes, each is backpropagated once; sharing nodes, the
     second panics unless the first kept the graph (DLF_BACKWARD_KEEP_GRAPH), and then the
     gradients are PyTorch's with retain_graph=True (fixture tests/ref/tape/two_losses);
   - a tensor of a previous step (a reset since) given to an op or to backward: a panic, also
     when the next step's other shapes have overwritten its header;
   - the batch overwritten (dlf_loader_next, dlf_fill, an optimizer step) between forward and
     backward: a panic naming the op and the tensor (PyTorch's version counters);
   - a side branch that does not lead to the loss gets no gradient and stays usable.

   DLF_REF_DIR overrides the fixture folder (default tests/ref, from the repository root). */
#define DLF_IMPLEMENTATION
#include "harness.h"

static dlf_tensor *param2(int d0, int d1)
{
    int shape[2];
    shape[0] = d0;
    shape[1] = d1;
    return dlf_param_new(2, shape);
}

static dlf_tensor *param1(int d0) { return dlf_param_new(1, &d0); }

/* A 3-4-1 model: loss = mse(relu(x w1^T + b1) w2^T + b2, y). */
typedef struct mlp {
    dlf_tensor *w1, *b1, *w2, *b2;
} mlp;

static void mlp_init(mlp *m, uint64_t seed)
{
    dlf_rng r;
    dlf_rng_seed(&r, seed);
    m->w1 = param2(4, 3);
    m->b1 = param1(4);
    m->w2 = param2(1, 4);
    m->b2 = param1(1);
    dlf_fill_normal(m->w1, &r, 0.0f, 0.5f);
    dlf_fill_normal(m->b1, &r, 0.0f, 0.1f);
    dlf_fill_normal(m->w2, &r, 0.0f, 0.5f);
    dlf_fill_normal(m->b2, &r, 0.0f, 0.1f);
}

static void mlp_free(mlp *m)
{
    dlf_tensor_free(m->w1);
    dlf_tensor_free(m->b1);
    dlf_tensor_free(m->w2);
    dlf_tensor_free(m->b2);
}

static dlf_tensor *mlp_loss(dlf_tape *t, mlp *m, dlf_tensor *x, dlf_tensor *y)
{
    dlf_tensor *h = dlf_relu(t, dlf_linear(t, x, m->w1, m->b1));
    return dlf_mse_loss(t, dlf_linear(t, h, m->w2, m->b2), y);
}

static void mlp_zero_grad(mlp *m)
{
    dlf_zero_grad(m->w1);
    dlf_zero_grad(m->b1);
    dlf_zero_grad(m->w2);
    dlf_zero_grad(m->b2);
}

static void fill_batch(dlf_tensor *x, dlf_tensor *y, uint64_t seed)
{
    dlf_rng r;
    dlf_rng_seed(&r, seed);
    dlf_fill_normal(x, &r, 0.0f, 1.0f);
    dlf_fill_normal(y, &r, 0.0f, 1.0f);
}

/* The user's report: zero_grad every step, the reset forgotten. The bias gradient grew
   0.085 -> 0.341 -> 0.852 before (backward walked the old steps' nodes again). Now each step's
   gradients equal those of a run that resets, bit for bit, and so do the trained weights. */
static void test_forgotten_reset(void)
{
    dlf_tape good, bad;
    mlp a, b;
    dlf_tensor *x = dlf_tensor_new2(8, 3), *y = dlf_tensor_new2(8, 1);
    dlf_tensor *pa[4], *pb[4];
    dlf_optim *oa, *ob;
    dlf_optim_cfg cfg;
    int step, i, same = 1, grads_same = 1;
    GROUP("forgotten reset");
    dlf_tape_init(&good);
    dlf_tape_init(&bad);
    mlp_init(&a, 7);
    mlp_init(&b, 7);
    pa[0] = a.w1; pa[1] = a.b1; pa[2] = a.w2; pa[3] = a.b2;
    pb[0] = b.w1; pb[1] = b.b1; pb[2] = b.w2; pb[3] = b.b2;
    memset(&cfg, 0, sizeof cfg);
    cfg.lr = 0.1f;
    oa = dlf_optim_create(DLF_OPTIM_SGD, pa, 4, &cfg);
    ob = dlf_optim_create(DLF_OPTIM_SGD, pb, 4, &cfg);
    for (step = 0; step < 5; step++) {
        fill_batch(x, y, 100 + (uint64_t)step);
        dlf_tape_reset(&good);
        mlp_zero_grad(&a);
        dlf_backward(&good, mlp_loss(&good, &a, x, y));
        mlp_zero_grad(&b);                   /* no dlf_tape_reset(&bad) */
        dlf_backward(&bad, mlp_loss(&bad, &b, x, y));
        for (i = 0; i < 4; i++)
            if (memcmp(pa[i]->grad, pb[i]->grad, (size_t)pa[i]->size * sizeof(float))) grads_same = 0;
        dlf_optim_step(oa);
        dlf_optim_step(ob);
    }
    for (i = 0; i < 4; i++)
        if (memcmp(pa[i]->data, pb[i]->data, (size_t)pa[i]->size * sizeof(float))) same = 0;
    CHECK(grads_same, "every step's gradients equal those of the run that resets");
    CHECK(same, "5 SGD steps without resets train the same weights");
    CHECK(bad.n_nodes == 5 * good.n_nodes, "the forgotten resets kept every step's nodes (%d vs 5 x %d)",
          bad.n_nodes, good.n_nodes);
    CHECK(bad.used_bytes > 4 * good.used_bytes, "and their memory (%zu vs %zu bytes)", bad.used_bytes, good.used_bytes);
    dlf_optim_free(oa);
    dlf_optim_free(ob);
    mlp_free(&a);
    mlp_free(&b);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
    dlf_tape_destroy(&good);
    dlf_tape_destroy(&bad);
}

/* Without resets the arena grows: one warning past warn_step_bytes (dlf_last_error, stderr),
   a panic past max_step_bytes; 100 backward calls without a reset warn too. */
static void test_arena_bounds(void)
{
    dlf_tape t;
    mlp m;
    dlf_tensor *x = dlf_tensor_new2(8, 3), *y = dlf_tensor_new2(8, 1);
    int step, warned_at = -1, again = 0;
    size_t first_bytes;
    GROUP("arena bounds");
    mlp_init(&m, 3);
    fill_batch(x, y, 1);
    dlf_tape_init(&t);
    CHECK(t.warn_step_bytes == (size_t)1 << 30, "default warn_step_bytes is 1 GiB");
    CHECK(t.max_step_bytes >= (size_t)3 << 30, "default max_step_bytes is 4 GiB (3 on 32-bit)");
    dlf_backward(&t, mlp_loss(&t, &m, x, y));
    first_bytes = t.used_bytes;
    t.warn_step_bytes = 10 * first_bytes;
    t.max_step_bytes = 20 * first_bytes;
    dlf_clear_error();
    for (step = 1; step < 15; step++) {
        dlf_backward(&t, mlp_loss(&t, &m, x, y));
        if (warned_at < 0 && strstr(dlf_last_error(), "warning: the arena passed warn_step_bytes")) {
            warned_at = step;
            dlf_clear_error();
        } else if (dlf_last_error()[0]) {
            again = 1;
        }
    }
    CHECK(warned_at == 10, "one warning when the 11th step passes 10 steps' bytes (at step %d)", warned_at);
    CHECK(!again && t.warned, "once only: %s", dlf_last_error());
    EXPECT_PANIC(for (step = 15; step < 30; step++) dlf_backward(&t, mlp_loss(&t, &m, x, y)),
                 "would take the arena past max_step_bytes");
    CHECK(strstr(th_msg, "is the reset between steps missing?") != NULL, "the panic says why: %s", th_msg);
    dlf_tape_reset(&t);
    dlf_zero_grad(m.b2);
    dlf_backward(&t, mlp_loss(&t, &m, x, y));
    CHECK(t.used_bytes == first_bytes, "after a reset the step fits again");
    dlf_tape_destroy(&t);

    dlf_tape_init(&t);
    dlf_clear_error();
    for (step = 0; step < 100; step++) dlf_backward(&t, dlf_sum_all(&t, dlf_mul_scalar(&t, m.b2, 2.0f)));
    CHECK(strstr(dlf_last_error(), "warning: 100 backward calls on one tape without a reset") != NULL,
          "100 backward calls without a reset warn: \"%s\"", dlf_last_error());
    CHECK(m.b2->grad[0] != 0.0f, "and still computed");
    dlf_tape_destroy(&t);
    mlp_free(&m);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

/* dlf_backward twice on one loss doubled the gradients; now the second panics. */
static void test_backward_twice(void)
{
    dlf_tape t;
    mlp m;
    dlf_tensor *x = dlf_tensor_new2(8, 3), *y = dlf_tensor_new2(8, 1), *loss, *h;
    float g_b1[4], g_w2[4];
    int i, k;
    GROUP("backward twice");
    mlp_init(&m, 5);
    fill_batch(x, y, 2);
    dlf_tape_init(&t);
    loss = mlp_loss(&t, &m, x, y);
    dlf_backward(&t, loss);
    memcpy(g_b1, m.b1->grad, sizeof g_b1);
    EXPECT_PANIC(dlf_backward(&t, loss), "dlf_backward: trying to backward through node 5 (mse_loss) a second time");
    CHECK(strstr(th_msg, "DLF_BACKWARD_KEEP_GRAPH") && strstr(th_msg, "retain_graph=True"),
          "the message says what to do: %s", th_msg);
    CHECK(!memcmp(g_b1, m.b1->grad, sizeof g_b1), "the refused backward changed no gradient");
    EXPECT_PANIC(dlf_backward_seed(&t, loss, NULL), "a second time");

    /* with the graph kept, a second backward adds the same gradient again (PyTorch:
       retain_graph=True twice doubles .grad); the intermediate gradients start from 0 each
       time, so the second call adds exactly the first call's amounts */
    dlf_tape_reset(&t);
    mlp_zero_grad(&m);
    h = dlf_relu(&t, dlf_linear(&t, x, m.w1, m.b1));
    loss = dlf_mse_loss(&t, dlf_linear(&t, h, m.w2, m.b2), y);
    dlf_backward_ex(&t, loss, NULL, DLF_BACKWARD_KEEP_GRAPH);
    memcpy(g_b1, m.b1->grad, sizeof g_b1);
    memcpy(g_w2, m.w2->grad, sizeof g_w2);
    {
        float gh0 = h->grad[0], gh5 = h->grad[5];
        dlf_backward_ex(&t, loss, NULL, DLF_BACKWARD_KEEP_GRAPH);
        CHECK(h->grad[0] == gh0 && h->grad[5] == gh5, "an intermediate gradient is this backward's only");
    }
    for (i = 0, k = 1; i < 4; i++)
        if (m.b1->grad[i] != 2.0f * g_b1[i] || m.w2->grad[i] != 2.0f * g_w2[i]) k = 0;
    CHECK(k, "kept twice: the parameter gradients are exactly doubled (b1[0] %g vs %g)",
          (double)m.b1->grad[0], 2.0 * g_b1[0]);
    dlf_backward(&t, loss);                           /* the last one uses the graph up */
    EXPECT_PANIC(dlf_backward(&t, loss), "a second time");
    EXPECT_PANIC(dlf_backward_ex(&t, loss, NULL, 4), "dlf_backward_ex: unknown flags 0x4");
    dlf_tape_destroy(&t);
    mlp_free(&m);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

/* A tensor as a safetensors fixture tensor (caller frees). */
static dlf_tensor *fx(const dlf_safetensors *st, const char *name, int param)
{
    const dlf_st_tensor *s = dlf_safetensors_find(st, name);
    dlf_tensor *x;
    CHECK(s != NULL, "fixture tensor %s missing", name);
    if (!s) return dlf_tensor_new1(1);
    x = dlf_tensor_from(s->ndim, s->shape, s->data);
    if (param) dlf_tensor_requires_grad(x);
    return x;
}

/* got against the fixture's tensor `name`: one assertion (th_close counts it). */
static int fx_close(const dlf_safetensors *st, const char *name, const float *got, float atol, float rtol)
{
    const dlf_st_tensor *s = dlf_safetensors_find(st, name);
    CHECK(s != NULL, "fixture tensor %s missing", name);
    return s && th_close(got, s->data, s->size, atol, rtol, name, __FILE__, __LINE__);
}

/* Two losses on one tape, the user's case: an MLP whose hidden layer feeds two heads. The
   fixture is PyTorch's loss1.backward(retain_graph=True); loss2.backward(). Before, the first
   layer's gradient came out wrong by a factor of about -1340. */
static void test_two_losses(void)
{
    static const char *const names[5] = {"w1", "b1", "w2", "b2", "w3"};
    char path[1024];
    const char *dir = getenv("DLF_REF_DIR");
    dlf_safetensors st;
    dlf_tensor *x, *y, *target, *p[5], *h, *l1, *l2;
    dlf_tape t;
    float atol, rtol;
    int i;
    GROUP("two losses (PyTorch retain_graph fixture)");
    snprintf(path, sizeof path, "%s/tape/two_losses.safetensors", dir ? dir : "tests/ref");
    if (dlf_safetensors_load(&st, path) != DLF_OK) {
        CHECK(0, "cannot load %s: %s (run from the repository root, or set DLF_REF_DIR)", path, dlf_last_error());
        return;
    }
    atol = (float)atof(dlf_safetensors_meta(&st, "atol"));
    rtol = (float)atof(dlf_safetensors_meta(&st, "rtol"));
    x = fx(&st, "x", 0);
    y = fx(&st, "y", 0);
    target = fx(&st, "target", 0);
    for (i = 0; i < 5; i++) p[i] = fx(&st, names[i], 1);
    dlf_tape_init(&t);

#define TWO_LOSSES_FORWARD()                                                          \
    h = dlf_relu(&t, dlf_linear(&t, x, p[0], p[1]));                                   \
    l1 = dlf_mse_loss(&t, dlf_linear(&t, h, p[2], p[3]), y);                          \
    l2 = dlf_cross_entropy(&t, dlf_linear(&t, h, p[4], NULL), target)

    /* without keep-graph: the second backward reaches the used-up first layer */
    TWO_LOSSES_FORWARD();
    dlf_backward(&t, l1);
    EXPECT_PANIC(dlf_backward(&t, l2), "trying to backward through node 2 (relu) a second time");

    /* with it: PyTorch's numbers, after the first backward and after both */
    dlf_tape_reset(&t);
    for (i = 0; i < 5; i++) dlf_zero_grad(p[i]);
    TWO_LOSSES_FORWARD();
    fx_close(&st, "loss1", l1->data, atol, rtol);
    fx_close(&st, "loss2", l2->data, atol, rtol);
    dlf_backward_ex(&t, l1, NULL, DLF_BACKWARD_KEEP_GRAPH);
    for (i = 0; i < 5; i++) {    /* after loss1.backward(retain_graph=True) */
        char k[32];
        snprintf(k, sizeof k, "grad1.%s", names[i]);
        fx_close(&st, k, p[i]->grad, atol, rtol);
    }
    dlf_backward(&t, l2);
    for (i = 0; i < 5; i++) {    /* after loss2.backward(): both losses accumulated */
        char k[32];
        snprintf(k, sizeof k, "grad.%s", names[i]);
        fx_close(&st, k, p[i]->grad, atol, rtol);
    }
    EXPECT_PANIC(dlf_backward(&t, l1), "a second time");
#undef TWO_LOSSES_FORWARD

    dlf_tape_destroy(&t);
    for (i = 0; i < 5; i++) dlf_tensor_free(p[i]);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
    dlf_tensor_free(target);
    dlf_safetensors_free(&st);
}

/* Backward walks only the nodes that lead to its output: a side branch gets no gradient, and
   two losses that share no nodes are each backpropagated once. */
static void test_reachable(void)
{
    dlf_tape t;
    dlf_tensor *x = dlf_tensor_new1(3), *w1 = param1(3), *w2 = param1(3);
    dlf_tensor *loss, *side;
    dlf_rng r;
    int i, ok = 1;
    GROUP("reachable nodes only");
    dlf_rng_seed(&r, 9);
    dlf_fill_normal(x, &r, 0.0f, 1.0f);
    dlf_fill_normal(w1, &r, 0.0f, 1.0f);
    dlf_fill_normal(w2, &r, 0.0f, 1.0f);
    dlf_tape_init(&t);
    loss = dlf_sum_all(&t, dlf_mul(&t, x, w1));              /* nodes 0, 1 */
    side = dlf_sum_all(&t, dlf_square(&t, dlf_mul(&t, x, w2))); /* nodes 2, 3, 4: after the loss */
    dlf_backward(&t, loss);
    for (i = 0; i < 3; i++) ok &= w1->grad[i] == x->data[i] && w2->grad[i] == 0.0f;
    CHECK(ok, "d loss/d w1 = x; the side branch w2 got nothing");
    CHECK(t.nodes[2].consumed == 0 && t.nodes[0].consumed == 1, "only the walked nodes are used up");
    dlf_backward(&t, side);                                   /* shares no node with loss */
    for (i = 0, ok = 1; i < 3; i++)
        ok &= fabsf(w2->grad[i] - 2.0f * x->data[i] * x->data[i] * w2->data[i]) <= 1e-6f
              && w1->grad[i] == x->data[i];
    CHECK(ok, "then its own backward: d side/d w2 = 2 x^2 w2, w1 untouched");
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
    dlf_tensor_free(w1);
    dlf_tensor_free(w2);
}

static dlf_tensor *th_other_root;   /* outside the longjmp's frame */

/* A tensor of an earlier step. Before, its data was silently stale, and when the next step
   had other shapes it segfaulted. */
static void test_stale(void)
{
    dlf_tape t, other;
    dlf_tensor *x = dlf_tensor_new2(4, 3), *w = param2(2, 3), *big = dlf_tensor_new2(64, 64);
    dlf_tensor *h, *loss, *kept, *big2;
    dlf_rng r;
    GROUP("stale tensors");
    dlf_rng_seed(&r, 11);
    dlf_fill_normal(x, &r, 0.0f, 1.0f);
    dlf_fill_normal(w, &r, 0.0f, 1.0f);
    dlf_fill_normal(big, &r, 0.0f, 1.0f);
    dlf_tape_init(&t);
    h = dlf_relu(&t, dlf_linear(&t, x, w, NULL));
    loss = dlf_sum_all(&t, h);
    kept = dlf_tensor_new2(4, 2);
    dlf_tensor_copy(kept, h);                           /* the right way to keep it */
    dlf_tape_reset(&t);
    EXPECT_PANIC(dlf_relu(&t, h), "dlf_relu: argument 0 is a tensor from a previous step");
    EXPECT_PANIC(dlf_add(&t, x, h), "dlf_add: argument 1 is a tensor from a previous step");
    EXPECT_PANIC(dlf_backward(&t, loss), "dlf_backward: argument 0 is a tensor from a previous step");
    EXPECT_PANIC(dlf_matmul(&t, h, w), "dlf_matmul: argument 0");
    CHECK(dlf_relu(&t, kept) != NULL, "a heap copy made before the reset is fine");
    /* the next step has other shapes: its tensors and gradients overwrite the old headers */
    dlf_tape_reset(&t);
    big2 = dlf_tanh(&t, dlf_matmul(&t, big, big));
    CHECK(big2 != NULL && big2->size == 64 * 64, "the new step runs");
    EXPECT_PANIC(dlf_sum_all(&t, h), "dlf_sum_all: argument 0 is a tensor from a previous step");
    EXPECT_PANIC(dlf_mse_loss(&t, loss, loss), "dlf_mse_loss: argument 0 is a tensor from a previous step");
    EXPECT_PANIC(dlf_backward(&t, loss), "a tensor from a previous step");
    /* another tape's tensors are not this tape's steps: usable as inputs, not as backward roots */
    dlf_tape_init(&other);
    {
        dlf_tensor *o = dlf_mul_scalar(&other, w, 2.0f), *so = dlf_sum_all(&other, o);
        dlf_tensor *s = dlf_sum_all(&t, dlf_mul_scalar(&t, dlf_reshape(&t, o, 1, &o->size), 1.0f));
        CHECK(s != NULL && s->data[0] == so->data[0], "a tensor of another tape is accepted as an input");
        th_other_root = so;
        EXPECT_PANIC(dlf_backward(&t, th_other_root), "dlf_backward: the output was made on another tape");
    }
    dlf_tape_destroy(&other);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
    dlf_tensor_free(w);
    dlf_tensor_free(big);
    dlf_tensor_free(kept);
}

/* The batch overwritten between forward and backward: dlf_loader_next into the same tensors
   (the user's case), a fill, an optimizer step on a parameter. PyTorch's version counters. */
static void test_versions(void)
{
    static uint8_t images[6 * 2 * 2], labels[6] = {0, 1, 2, 0, 1, 2};
    dlf_dataset ds;
    dlf_loader_cfg cfg;
    dlf_loader *l;
    dlf_tape t;
    dlf_tensor *w = param2(3, 4), *b = param1(3), *loss, *xf, *y;
    dlf_optim *opt;
    dlf_optim_cfg ocfg;
    dlf_rng r;
    int i, n;
    GROUP("version counters");
    for (i = 0; i < (int)sizeof images; i++) images[i] = (uint8_t)(i * 37 % 256);
    memset(&ds, 0, sizeof ds);
    ds.images = images;
    ds.labels = labels;
    ds.n = 6;
    ds.rows = 2;
    ds.cols = 2;
    ds.n_classes = 3;
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 3;
    l = dlf_loader_create(&ds, &cfg);
    dlf_rng_seed(&r, 13);
    dlf_fill_normal(w, &r, 0.0f, 1.0f);
    dlf_tape_init(&t);
    n = dlf_loader_next(l);
    CHECK(n == 3, "a batch of 3");
    xf = dlf_flatten(&t, l->x);                     /* a view of the loader's x */
    loss = dlf_cross_entropy(&t, dlf_linear(&t, xf, w, b), l->y);
    {
        unsigned v = l->x->version;
        dlf_loader_next(l);                          /* the next batch, before backward */
        CHECK(l->x->version == v + 1, "dlf_loader_next bumps its batch's version");
    }
    EXPECT_PANIC(dlf_backward(&t, loss), "dlf_backward: node 2 (cross_entropy) needs the values of its input 1 (3,)");
    CHECK(strstr(th_msg, "modified in place after the forward (version 2, recorded 1)") != NULL &&
          strstr(th_msg, "modified by an inplace operation") != NULL, "names the version and PyTorch's words: %s", th_msg);
    CHECK(b->grad[0] == 0.0f && w->grad[0] == 0.0f, "and it wrote no gradient");

    /* the view: the labels untouched this time, only x rewritten (the matmul reads it) */
    dlf_tape_reset(&t);
    y = dlf_tensor_new1(3);
    dlf_tensor_copy(y, l->y);
    xf = dlf_flatten(&t, l->x);
    loss = dlf_cross_entropy(&t, dlf_linear(&t, xf, w, b), y);
    dlf_fill(l->x, 0.5f);
    EXPECT_PANIC(dlf_backward(&t, loss), "node 0 (matmul) needs the values of its input 0 (3, 4)");

    /* an op whose backward does not read the overwritten tensor: no panic (PyTorch agrees) */
    dlf_tape_reset(&t);
    dlf_zero_grad(w);
    loss = dlf_sum_all(&t, dlf_add(&t, dlf_flatten(&t, l->x), w));
    dlf_fill(l->x, 0.25f);
    dlf_backward(&t, loss);
    CHECK(w->grad[0] == 1.0f && w->grad[11] == 1.0f, "x + w: x rewritten, the gradient of w is still 1");

    /* an optimizer step on a parameter between forward and backward */
    dlf_tape_reset(&t);
    dlf_zero_grad(w);
    dlf_zero_grad(b);
    memset(&ocfg, 0, sizeof ocfg);
    ocfg.lr = 0.1f;
    {
        dlf_tensor *ps[2];
        ps[0] = w; ps[1] = b;
        opt = dlf_optim_create(DLF_OPTIM_SGD, ps, 2, &ocfg);
    }
    loss = dlf_cross_entropy(&t, dlf_linear(&t, dlf_flatten(&t, l->x), w, b), y);
    w->grad[0] = 1.0f;                                 /* a stale gradient from somewhere */
    dlf_optim_step(opt);
    EXPECT_PANIC(dlf_backward(&t, loss), "node 0 (matmul) needs the values of its input 1 (3, 4)");
    dlf_optim_free(opt);
    dlf_loader_free(l);
    dlf_tape_destroy(&t);
    dlf_tensor_free(w);
    dlf_tensor_free(b);
    dlf_tensor_free(y);
}

int main(void)
{
    th_init();
    test_forgotten_reset();
    test_arena_bounds();
    test_backward_twice();
    test_two_losses();
    test_reachable();
    test_stale();
    test_versions();
    TEST_MAIN_END();
}
