/* test_ops.c - the tensor ops (permute ... where, bmm and torch.matmul's rules, reductions
   over several axes, min/argmin, 0-dim reductions), custom ops, and every elementwise op,
   reduction and shape op at NaN, the infinities and signed zeros against PyTorch's values.

   The PyTorch values come from tests/special_values.h, written by
   `/usr/bin/python3 tools/gen_special_values.py > tests/special_values.h`. There NaN equals
   NaN, an infinity must match exactly, and an output's zero must carry PyTorch's sign
   (relu(-0) is -0). Gradients are compared without the sign of zero: dlf adds into a zeroed
   buffer, and 0 + -0 is +0. The ops' ordinary values are compared with PyTorch by
   test_reference (tests/ref/<op>_*.safetensors). */
#define DLF_IMPLEMENTATION
#include "harness.h"
#include "special_values.h"

static dlf_tensor *from(int ndim, const int *shape, const float *v, int grad)
{
    dlf_tensor *t = dlf_tensor_from(ndim, shape, v);
    if (grad) dlf_tensor_requires_grad(t);
    return t;
}

static dlf_tensor *randn(dlf_rng *r, int ndim, const int *shape)
{
    dlf_tensor *t = dlf_tensor_new(ndim, shape);
    dlf_fill_normal(t, r, 0.0f, 1.0f);
    return t;
}

/* got vs want: NaN == NaN, infinities exact, finite within 1e-6 + 2e-6 |want|; with
   zero_sign, a zero must have want's sign. Returns 1 when all match; one CHECK either way. */
static int sv_same(const float *got, const float *want, int n, int zero_sign, const char *what)
{
    int i;
    for (i = 0; i < n; i++) {
        float g = got[i], w = want[i];
        int ok;
        if (w != w) ok = g != g;
        else if (isinf(w)) ok = g == w;
        else ok = fabsf(g - w) <= 1e-6f + 2e-6f * fabsf(w);
        if (ok && zero_sign && w == 0.0f) ok = signbit(g) == signbit(w);
        if (!ok) {
            CHECK(0, "%s: index %d: got %.9g, PyTorch %.9g", what, i, g, w);
            return 0;
        }
    }
    CHECK(1, "%s", what);
    return 1;
}

/* ---------------------------------------------------------------- special values */

static dlf_tensor *sv_unary_op(dlf_tape *t, const sv_unary *c, dlf_tensor *x)
{
    const char *op = c->op;
    if (!strcmp(op, "relu")) return dlf_relu(t, x);
    if (!strcmp(op, "abs")) return dlf_abs(t, x);
    if (!strcmp(op, "neg")) return dlf_neg(t, x);
    if (!strcmp(op, "exp")) return dlf_exp(t, x);
    if (!strcmp(op, "log")) return dlf_log(t, x);
    if (!strcmp(op, "sqrt")) return dlf_sqrt(t, x);
    if (!strcmp(op, "square")) return dlf_square(t, x);
    if (!strcmp(op, "sigmoid")) return dlf_sigmoid(t, x);
    if (!strcmp(op, "tanh")) return dlf_tanh(t, x);
    if (!strcmp(op, "add_scalar")) return dlf_add_scalar(t, x, c->arg);
    if (!strcmp(op, "mul_scalar")) return dlf_mul_scalar(t, x, c->arg);
    if (!strcmp(op, "pow_scalar")) return dlf_pow_scalar(t, x, c->arg);
    if (!strcmp(op, "leaky_relu")) return dlf_leaky_relu(t, x, c->arg);
    /* the generator's two GeneralRelus: (0.1, 0.4, 6) and (no leak, 0.5, no clamp) */
    if (!strcmp(op, "general_relu")) return c->arg != 0.0f ? dlf_general_relu(t, x, 0.1f, 0.4f, 6.0f)
                                                            : dlf_general_relu(t, x, 0.0f, 0.5f, 0.0f);
    /* clamp(-1, 0.5) and clamp(2, 1) (lo > hi: all hi) */
    if (!strcmp(op, "clamp")) return c->arg < 0.0f ? dlf_clamp(t, x, -1.0f, 0.5f) : dlf_clamp(t, x, 2.0f, 1.0f);
    CHECK(0, "special values: unknown unary op %s", op);
    return NULL;
}

static void test_special_unary(void)
{
    int k, n = SV_N;
    float ones[SV_N];
    GROUP("special values: elementwise");
    for (k = 0; k < SV_N; k++) ones[k] = 1.0f;
    for (k = 0; k < (int)(sizeof SV_UNARY / sizeof SV_UNARY[0]); k++) {
        const sv_unary *c = &SV_UNARY[k];
        dlf_tape t;
        dlf_tensor *x = from(1, &n, SV_X, 1), *y;
        char what[96];
        dlf_tape_init(&t);
        y = sv_unary_op(&t, c, x);
        if (y) {
            snprintf(what, sizeof what, "%s(%g) output", c->op, c->arg);
            sv_same(y->data, c->y, SV_N, 1, what);
            dlf_backward_seed(&t, y, ones);
            snprintf(what, sizeof what, "%s(%g) gradient", c->op, c->arg);
            sv_same(x->grad, c->g, SV_N, 0, what);
        }
        dlf_tape_destroy(&t);
        dlf_tensor_free(x);
    }
}

static void test_special_binary(void)
{
    int k, n = SV_N;
    float ones[SV_N];
    GROUP("special values: binary");
    for (k = 0; k < SV_N; k++) ones[k] = 1.0f;
    for (k = 0; k < (int)(sizeof SV_BINARY / sizeof SV_BINARY[0]); k++) {
        const sv_binary *c = &SV_BINARY[k];
        dlf_tape t;
        dlf_tensor *a = from(1, &n, SV_A, 1), *b = from(1, &n, SV_B, 1), *y;
        char what[96];
        dlf_tape_init(&t);
        if (!strcmp(c->op, "add")) y = dlf_add(&t, a, b);
        else if (!strcmp(c->op, "sub")) y = dlf_sub(&t, a, b);
        else if (!strcmp(c->op, "mul")) y = dlf_mul(&t, a, b);
        else if (!strcmp(c->op, "div")) y = dlf_div(&t, a, b);
        else if (!strcmp(c->op, "minimum")) y = dlf_minimum(&t, a, b);
        else y = dlf_maximum(&t, a, b);
        snprintf(what, sizeof what, "%s output", c->op);
        sv_same(y->data, c->y, SV_N, 1, what);
        dlf_backward_seed(&t, y, ones);
        snprintf(what, sizeof what, "%s gradient of a", c->op);
        sv_same(a->grad, c->ga, SV_N, 0, what);
        snprintf(what, sizeof what, "%s gradient of b", c->op);
        sv_same(b->grad, c->gb, SV_N, 0, what);
        dlf_tape_destroy(&t);
        dlf_tensor_free(a);
        dlf_tensor_free(b);
    }
}

static void test_special_reduce(void)
{
    int k, shape[2] = {4, 3}, axes[2] = {0, 1};
    float ones[4] = {1, 1, 1, 1};
    dlf_tape t;
    dlf_tensor *m, *y;
    GROUP("special values: reductions");
    for (k = 0; k < (int)(sizeof SV_REDUCE / sizeof SV_REDUCE[0]); k++) {
        const sv_reduce *c = &SV_REDUCE[k];
        int arg = !strncmp(c->op, "arg", 3);
        char what[96];
        m = from(2, shape, SV_M, !arg);
        dlf_tape_init(&t);
        if (!strcmp(c->op, "sum")) y = dlf_sum(&t, m, c->axis, 0);
        else if (!strcmp(c->op, "mean")) y = dlf_mean(&t, m, c->axis, 0);
        else if (!strcmp(c->op, "max")) y = dlf_max(&t, m, c->axis, 0);
        else if (!strcmp(c->op, "min")) y = dlf_min(&t, m, c->axis, 0);
        else if (!strcmp(c->op, "var0")) y = dlf_var(&t, m, c->axis, 0, 0);
        else if (!strcmp(c->op, "var1")) y = dlf_var(&t, m, c->axis, 0, 1);
        else if (!strcmp(c->op, "argmax")) y = dlf_argmax(&t, m, c->axis, 0);
        else y = dlf_argmin(&t, m, c->axis, 0);
        snprintf(what, sizeof what, "%s axis %d output", c->op, c->axis);
        sv_same(y->data, c->y, y->size, 1, what);
        if (!arg) {
            dlf_backward_seed(&t, y, ones);
            snprintf(what, sizeof what, "%s axis %d gradient", c->op, c->axis);
            sv_same(m->grad, c->g, 12, 0, what);
        }
        dlf_tape_destroy(&t);
        dlf_tensor_free(m);
    }
    m = from(2, shape, SV_M, 0);
    dlf_tape_init(&t);
    sv_same(dlf_sum_all(&t, m)->data, &SV_SUM_ALL, 1, 1, "sum_all");
    sv_same(dlf_mean_all(&t, m)->data, &SV_MEAN_ALL, 1, 1, "mean_all");
    sv_same(dlf_sum_axes(&t, m, axes, 2, 0)->data, &SV_SUM_ALL, 1, 1, "sum_axes (0, 1)");
    sv_same(dlf_mean_axes(&t, m, axes, 2, 0)->data, &SV_MEAN_ALL, 1, 1, "mean_axes (0, 1)");
    {   /* sum_axes over one axis is dlf_sum's answer, NaN and inf included */
        const float *want = NULL;
        for (k = 0; k < (int)(sizeof SV_REDUCE / sizeof SV_REDUCE[0]); k++)
            if (!strcmp(SV_REDUCE[k].op, "mean") && SV_REDUCE[k].axis == 1) want = SV_REDUCE[k].y;
        sv_same(dlf_mean_axes(&t, m, axes + 1, 1, 0)->data, want, 4, 1, "mean_axes (1) = mean axis 1");
    }
    dlf_tape_destroy(&t);
    dlf_tensor_free(m);
}

/* matmul at NaN and inf: the packed gemm (2-D), the batched path and torch.matmul agree */
static void test_special_matmul(void)
{
    int sa[2] = {3, 2}, sb[2] = {2, 3}, sa3[3] = {1, 3, 2}, sb3[3] = {1, 2, 3};
    float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    int pass;
    GROUP("special values: matmul");
    for (pass = 0; pass < 2; pass++) {
        dlf_tape t;
        dlf_tensor *a = pass ? from(3, sa3, SV_MM_A, 1) : from(2, sa, SV_MM_A, 1);
        dlf_tensor *b = pass ? from(3, sb3, SV_MM_B, 1) : from(2, sb, SV_MM_B, 1), *y;
        dlf_tape_init(&t);
        y = pass ? dlf_bmm(&t, a, b) : dlf_matmul(&t, a, b);
        sv_same(y->data, SV_MM_Y, 9, 0, pass ? "bmm output" : "matmul output");
        dlf_backward_seed(&t, y, ones);
        sv_same(a->grad, SV_MM_GA, 6, 0, pass ? "bmm grad a" : "matmul grad a");
        sv_same(b->grad, SV_MM_GB, 6, 0, pass ? "bmm grad b" : "matmul grad b");
        dlf_tape_destroy(&t);
        dlf_tensor_free(a);
        dlf_tensor_free(b);
    }
}

/* Shape ops move values untouched, as PyTorch's do: run each op on x (NaN, infinities,
   -0 among normal numbers) and on p, the positions 0, 1, 2, ... as floats; then out_x[i]
   must be bit for bit x[out_p[i]]. */
static int moved_exactly(const dlf_tensor *ox, const dlf_tensor *op, const dlf_tensor *x)
{
    int i;
    if (ox->size != op->size) return 0;
    for (i = 0; i < ox->size; i++) {
        int src = (int)op->data[i];
        if (src < 0 || src >= x->size || memcmp(&ox->data[i], &x->data[src], sizeof(float)) != 0) return 0;
    }
    return 1;
}

static void test_special_shape(void)
{
    int s[3] = {2, 3, 4}, perm[3] = {2, 0, 1}, is[1] = {5}, gs[3] = {2, 2, 4}, i;
    float idx[5] = {2, 0, 2, 1, 0}, gidx[16];
    dlf_tape t;
    dlf_tensor *x = dlf_tensor_new(3, s), *p = dlf_tensor_new(3, s), *index, *gindex, *cond, *xs[3], *ps[3];
    GROUP("special values: shape ops move NaN and inf untouched");
    for (i = 0; i < 24; i++) {
        static const float specials[6] = {NAN, INFINITY, -INFINITY, -0.0f, 0.0f, 1.5f};
        x->data[i] = i % 4 == 1 ? specials[i % 6] : (float)i - 7.0f;
        p->data[i] = (float)i;
    }
    for (i = 0; i < 16; i++) gidx[i] = (float)((i * 7) % 3);
    index = dlf_tensor_from(1, is, idx);
    gindex = dlf_tensor_from(3, gs, gidx);
    cond = dlf_tensor_new(3, s);
    for (i = 0; i < 24; i++) cond->data[i] = (float)(i % 3 == 0);
    dlf_tape_init(&t);
    CHECK(moved_exactly(dlf_permute(&t, x, perm), dlf_permute(&t, p, perm), x), "permute");
    CHECK(moved_exactly(dlf_transpose(&t, x, 0, 2), dlf_transpose(&t, p, 0, 2), x), "transpose");
    CHECK(moved_exactly(dlf_narrow(&t, x, 1, 1, 2), dlf_narrow(&t, p, 1, 1, 2), x), "narrow");
    CHECK(moved_exactly(dlf_index_select(&t, x, 1, index), dlf_index_select(&t, p, 1, index), x), "index_select");
    CHECK(moved_exactly(dlf_gather(&t, x, 1, gindex), dlf_gather(&t, p, 1, gindex), x), "gather");
    xs[0] = xs[1] = xs[2] = x;
    ps[0] = ps[1] = ps[2] = p;
    CHECK(moved_exactly(dlf_cat(&t, xs, 3, 2), dlf_cat(&t, ps, 3, 2), x), "cat");
    CHECK(moved_exactly(dlf_stack(&t, xs, 3, 1), dlf_stack(&t, ps, 3, 1), x), "stack");
    {   /* where: x where cond, else x's reversed positions; the pick moves bits untouched */
        dlf_tensor *w = dlf_where(&t, cond, x, p), *wp = dlf_where(&t, cond, p, p);
        int ok = 1;
        for (i = 0; i < 24; i++)
            ok &= cond->data[i] != 0.0f ? memcmp(&w->data[i], &x->data[(int)wp->data[i]], sizeof(float)) == 0
                                        : w->data[i] == p->data[i];
        CHECK(ok, "where");
    }
    {   /* clamp keeps NaN; minimum/maximum with NaN give NaN whichever side holds it */
        dlf_tensor *c = dlf_clamp(&t, x, -1.0f, 1.0f), *mn = dlf_minimum(&t, x, p), *mx = dlf_maximum(&t, p, x);
        int ok = 1;
        for (i = 0; i < 24; i++)
            if (x->data[i] != x->data[i]) ok &= c->data[i] != c->data[i] && mn->data[i] != mn->data[i] &&
                                                mx->data[i] != mx->data[i];
        CHECK(ok, "clamp, minimum, maximum keep NaN");
    }
    dlf_tape_destroy(&t);
    dlf_tensor_free(x); dlf_tensor_free(p); dlf_tensor_free(index); dlf_tensor_free(gindex); dlf_tensor_free(cond);
}

/* ---------------------------------------------------------------- gradchecks */

typedef struct { int op; int iarg[4]; float farg[2]; dlf_tensor *aux; int n; } gspec;

enum { G_PERMUTE, G_TRANSPOSE, G_NARROW, G_CAT, G_STACK, G_INDEX_SELECT, G_GATHER, G_CLAMP, G_MINIMUM,
       G_MAXIMUM, G_WHERE, G_MIN, G_SUM_AXES, G_MEAN_AXES, G_BMM, G_MATMUL };

static dlf_tensor *graph(dlf_tape *t, dlf_tensor **x, void *user)
{
    gspec *g = (gspec *)user;
    switch (g->op) {
    case G_PERMUTE: return dlf_permute(t, x[0], g->iarg);
    case G_TRANSPOSE: return dlf_transpose(t, x[0], g->iarg[0], g->iarg[1]);
    case G_NARROW: return dlf_narrow(t, x[0], g->iarg[0], g->iarg[1], g->iarg[2]);
    case G_CAT: return dlf_cat(t, x, g->n, g->iarg[0]);
    case G_STACK: return dlf_stack(t, x, g->n, g->iarg[0]);
    case G_INDEX_SELECT: return dlf_index_select(t, x[0], g->iarg[0], g->aux);
    case G_GATHER: return dlf_gather(t, x[0], g->iarg[0], g->aux);
    case G_CLAMP: return dlf_clamp(t, x[0], g->farg[0], g->farg[1]);
    case G_MINIMUM: return dlf_minimum(t, x[0], x[1]);
    case G_MAXIMUM: return dlf_maximum(t, x[0], x[1]);
    case G_WHERE: return dlf_where(t, g->aux, x[0], x[1]);
    case G_MIN: return dlf_min(t, x[0], g->iarg[0], g->iarg[1]);
    case G_SUM_AXES: return dlf_sum_axes(t, x[0], g->iarg + 1, g->iarg[0], 1);
    case G_MEAN_AXES: return dlf_mean_axes(t, x[0], g->iarg + 1, g->iarg[0], 0);
    case G_BMM: return dlf_bmm(t, x[0], x[1]);
    default: return dlf_matmul(t, x[0], x[1]);
    }
}

static void gc(gspec *g, int n_in, const int shapes[][4], const int *ndims, dlf_rng *r, const char *what)
{
    dlf_tensor *x[8];
    int i;
    for (i = 0; i < n_in; i++) x[i] = randn(r, ndims[i], shapes[i]);
    GRADCHECK(graph, x, n_in, g, what);
    for (i = 0; i < n_in; i++) dlf_tensor_free(x[i]);
}

static void test_gradchecks(void)
{
    dlf_rng r;
    GROUP("gradcheck: tensor ops");
    dlf_rng_seed(&r, 7);
    {
        gspec g = {G_PERMUTE, {3, 1, 0, 2}, {0, 0}, NULL, 0};
        const int sh[1][4] = {{2, 3, 4, 2}}, nd[1] = {4};
        gc(&g, 1, sh, nd, &r, "permute (3,1,0,2)");
    }
    {
        gspec g = {G_TRANSPOSE, {0, -1, 0, 0}, {0, 0}, NULL, 0};
        const int sh[1][4] = {{3, 2, 4}}, nd[1] = {3};
        gc(&g, 1, sh, nd, &r, "transpose 0,-1");
    }
    {
        gspec g = {G_NARROW, {1, 1, 2, 0}, {0, 0}, NULL, 0};
        const int sh[1][4] = {{2, 5, 3}}, nd[1] = {3};
        gc(&g, 1, sh, nd, &r, "narrow dim 1 [1, 3)");
    }
    {
        gspec g = {G_CAT, {1, 0, 0, 0}, {0, 0}, NULL, 5};
        const int sh[5][4] = {{2, 1, 3}, {2, 2, 3}, {2, 3, 3}, {2, 1, 3}, {2, 2, 3}}, nd[5] = {3, 3, 3, 3, 3};
        gc(&g, 5, sh, nd, &r, "cat of 5 along dim 1 (two nodes)");
    }
    {
        gspec g = {G_STACK, {-1, 0, 0, 0}, {0, 0}, NULL, 4};
        const int sh[4][4] = {{2, 3}, {2, 3}, {2, 3}, {2, 3}}, nd[4] = {2, 2, 2, 2};
        gc(&g, 4, sh, nd, &r, "stack of 4 along dim -1");
    }
    {
        float iv[6] = {3, 0, 3, 1, 3, 2};  /* repeated indices add up */
        int n = 6;
        gspec g = {G_INDEX_SELECT, {0, 0, 0, 0}, {0, 0}, NULL, 0};
        const int sh[1][4] = {{4, 3}}, nd[1] = {2};
        g.aux = dlf_tensor_from(1, &n, iv);
        gc(&g, 1, sh, nd, &r, "index_select with repeats");
        dlf_tensor_free(g.aux);
    }
    {
        float iv[12] = {0, 2, 1, 2, 2, 2, 0, 0, 1, 1, 0, 2};
        int s[2] = {4, 3};
        gspec g = {G_GATHER, {1, 0, 0, 0}, {0, 0}, NULL, 0};
        const int sh[1][4] = {{4, 3}}, nd[1] = {2};
        g.aux = dlf_tensor_from(2, s, iv);
        gc(&g, 1, sh, nd, &r, "gather dim 1");
        dlf_tensor_free(g.aux);
    }
    {
        gspec g = {G_CLAMP, {0, 0, 0, 0}, {-0.5f, 0.7f}, NULL, 0};
        const int sh[1][4] = {{3, 7}}, nd[1] = {2};
        gc(&g, 1, sh, nd, &r, "clamp(-0.5, 0.7)");
    }
    {
        gspec g = {G_MINIMUM, {0, 0, 0, 0}, {0, 0}, NULL, 0};
        const int sh[2][4] = {{3, 4}, {4}}, nd[2] = {2, 1};
        gc(&g, 2, sh, nd, &r, "minimum (3,4) (4,)");
        g.op = G_MAXIMUM;
        gc(&g, 2, sh, nd, &r, "maximum (3,4) (4,)");
    }
    {
        float cv[4] = {1, 0, 0, 1};
        int s[2] = {4, 1};
        gspec g = {G_WHERE, {0, 0, 0, 0}, {0, 0}, NULL, 0};
        const int sh[2][4] = {{1, 3}, {4, 3}}, nd[2] = {2, 2};
        g.aux = dlf_tensor_from(2, s, cv);
        gc(&g, 2, sh, nd, &r, "where (4,1) (1,3) (4,3)");
        dlf_tensor_free(g.aux);
    }
    {
        gspec g = {G_MIN, {1, 1, 0, 0}, {0, 0}, NULL, 0};
        const int sh[1][4] = {{3, 5, 2}}, nd[1] = {3};
        gc(&g, 1, sh, nd, &r, "min axis 1 keepdim");
    }
    {
        gspec g = {G_SUM_AXES, {2, 0, 2, 0}, {0, 0}, NULL, 0};
        const int sh[1][4] = {{2, 3, 4}}, nd[1] = {3};
        gc(&g, 1, sh, nd, &r, "sum_axes (0, 2) keepdim");
        g.op = G_MEAN_AXES;
        g.iarg[0] = 3; g.iarg[1] = -1; g.iarg[2] = 1; g.iarg[3] = 0;
        gc(&g, 1, sh, nd, &r, "mean_axes (-1, 1, 0)");
    }
    {
        gspec g = {G_BMM, {0, 0, 0, 0}, {0, 0}, NULL, 0};
        const int sh[2][4] = {{3, 2, 4}, {3, 4, 5}}, nd[2] = {3, 3};
        gc(&g, 2, sh, nd, &r, "bmm (3,2,4) (3,4,5)");
    }
    {
        gspec g = {G_MATMUL, {0, 0, 0, 0}, {0, 0}, NULL, 0};
        const int sh1[2][4] = {{4}, {4}}, nd1[2] = {1, 1};
        const int sh2[2][4] = {{4}, {2, 4, 3}}, nd2[2] = {1, 3};
        const int sh3[2][4] = {{2, 1, 3, 4}, {3, 4, 2}}, nd3[2] = {4, 3};
        const int sh4[2][4] = {{3, 3, 4}, {4}}, nd4[2] = {3, 1};
        gc(&g, 2, sh1, nd1, &r, "matmul (4,) (4,)");
        gc(&g, 2, sh2, nd2, &r, "matmul (4,) (2,4,3)");
        gc(&g, 2, sh3, nd3, &r, "matmul (2,1,3,4) (3,4,2): batch dims broadcast");
        gc(&g, 2, sh4, nd4, &r, "matmul (3,3,4) (4,)");
    }
}

/* ---------------------------------------------------------------- shapes, views, copies */

static void test_shapes(void)
{
    dlf_tape t;
    dlf_rng r;
    int s4[1] = {4}, s43[2] = {4, 3}, s234[3] = {2, 3, 4}, s2343[4] = {2, 1, 3, 4}, s5[3] = {5, 4, 2};
    dlf_tensor *v = dlf_tensor_new(1, s4), *m = dlf_tensor_new(2, s43), *b3 = dlf_tensor_new(3, s234);
    dlf_tensor *b4 = dlf_tensor_new(4, s2343), *c3 = dlf_tensor_new(3, s5), *y, *zero;
    char s[64];
    GROUP("shapes");
    dlf_rng_seed(&r, 3);
    dlf_fill_normal(m, &r, 0, 1);
    dlf_tape_init(&t);
    y = dlf_matmul(&t, v, v);
    CHECK(y->ndim == 0, "(4,) @ (4,) is 0-dim, got %s", dlf_shape_str(y, s, sizeof s));
    y = dlf_matmul(&t, v, m);
    CHECK(y->ndim == 1 && y->shape[0] == 3, "(4,) @ (4,3) -> (3,), got %s", dlf_shape_str(y, s, sizeof s));
    y = dlf_matmul(&t, b3, v);
    CHECK(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 3, "(2,3,4) @ (4,) -> (2,3), got %s",
          dlf_shape_str(y, s, sizeof s));
    y = dlf_matmul(&t, b4, c3);
    CHECK(y->ndim == 4 && y->shape[0] == 2 && y->shape[1] == 5 && y->shape[2] == 3 && y->shape[3] == 2,
          "(2,1,3,4) @ (5,4,2) -> (2,5,3,2), got %s", dlf_shape_str(y, s, sizeof s));
    y = dlf_permute(&t, m, (const int[]){1, 0});
    CHECK(y->data != m->data && y->shape[0] == 3 && y->data[1] == m->data[3], "permute copies: (3,4), y[0][1] = m[1][0]");
    y = dlf_narrow(&t, m, 0, 1, 2);
    CHECK(y->data != m->data && y->data[0] == m->data[3], "narrow copies, starting at row 1");
    zero = dlf_tape_tensor(&t, 0, NULL);
    zero->data[0] = 2.5f;
    y = dlf_sum(&t, zero, 0, 1);
    CHECK(y->ndim == 0 && y->data[0] == 2.5f, "sum over axis 0 of a 0-dim tensor is that tensor");
    y = dlf_mean(&t, zero, -1, 0);
    CHECK(y->ndim == 0 && y->data[0] == 2.5f, "mean over axis -1 of a 0-dim tensor");
    y = dlf_sum_axes(&t, zero, (const int[]){0}, 1, 0);
    CHECK(y->ndim == 0 && y->data[0] == 2.5f, "sum_axes (0) of a 0-dim tensor");
    y = dlf_argmin(&t, zero, 0, 0);
    CHECK(y->ndim == 0 && y->data[0] == 0.0f, "argmin of a 0-dim tensor is 0");
    y = dlf_sum_axes(&t, m, NULL, 0, 0);
    CHECK(y->ndim == 0 && fabsf(y->data[0] - dlf_sum_all(&t, m)->data[0]) < 1e-6f, "sum_axes with no axes sums all");
    y = dlf_mean_axes(&t, m, (const int[]){1}, 1, 1);
    CHECK(y->ndim == 2 && y->shape[1] == 1 && fabsf(y->data[2] - dlf_mean(&t, m, 1, 1)->data[2]) < 1e-6f,
          "mean_axes keepdim matches dlf_mean");
    dlf_tape_destroy(&t);
    dlf_tensor_free(v); dlf_tensor_free(m); dlf_tensor_free(b3); dlf_tensor_free(b4); dlf_tensor_free(c3);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void)
{
    dlf_tape t;
    int s23[2] = {2, 3}, s33[2] = {3, 3}, s3[1] = {3};
    float bad[3] = {0, 5, 1}, frac[3] = {0, 0.5f, 1};
    dlf_tensor *a = dlf_tensor_new(2, s23), *b = dlf_tensor_new(2, s33), *bi = dlf_tensor_from(1, s3, bad);
    dlf_tensor *fi = dlf_tensor_from(1, s3, frac), *s = dlf_tensor_new(0, NULL), *ab[2];
    GROUP("errors");
    ab[0] = a; ab[1] = b;
    dlf_tape_init(&t);
    EXPECT_PANIC(dlf_permute(&t, a, (const int[]){0, 0}), "dlf_permute: dim 0 appears more than once");
    EXPECT_PANIC(dlf_permute(&t, a, (const int[]){0, 2}), "dlf_permute: dim 2 is out of range for shape (2, 3)");
    EXPECT_PANIC(dlf_transpose(&t, a, 0, 3), "dlf_transpose: dim1 3 is out of range");
    EXPECT_PANIC(dlf_narrow(&t, a, 1, 2, 2), "dlf_narrow: start 2, length 2 do not fit dim 1 of shape (2, 3)");
    EXPECT_PANIC(dlf_narrow(&t, s, 0, 0, 1), "dlf_narrow: a is 0-dim");
    EXPECT_PANIC(dlf_cat(&t, ab, 2, 1), "dlf_cat: ts[1] (3, 3) does not match ts[0] (2, 3) outside dim 1");
    EXPECT_PANIC(dlf_cat(&t, ab, 0, 0), "dlf_cat: n is 0");
    EXPECT_PANIC(dlf_stack(&t, ab, 2, 0), "dlf_stack: ts[1] (3, 3) and ts[0] (2, 3) differ");
    EXPECT_PANIC(dlf_index_select(&t, a, 1, bi), "dlf_index_select: index 5 at position 1 is not an integer in [0, 3)");
    EXPECT_PANIC(dlf_index_select(&t, a, 1, fi), "index 0.5 at position 1");
    EXPECT_PANIC(dlf_gather(&t, a, 1, bi), "dlf_gather: index (3,) must have the dims of a (2, 3)");
    EXPECT_PANIC(dlf_minimum(&t, a, b), "dlf_minimum: shapes (2, 3) and (3, 3) do not broadcast");
    EXPECT_PANIC(dlf_where(&t, b, a, a), "dlf_where: shapes (3, 3), (2, 3) and (2, 3) do not broadcast");
    EXPECT_PANIC(dlf_matmul(&t, s, a), "dlf_matmul: both inputs need at least 1 dim");
    EXPECT_PANIC(dlf_matmul(&t, bi, a), "dlf_matmul: inner dims differ: (3,) @ (2, 3) (3 vs 2)");
    EXPECT_PANIC(dlf_matmul(&t, a, a), "dlf_matmul: inner dims differ: (2, 3) @ (2, 3)");
    EXPECT_PANIC(dlf_bmm(&t, a, b), "dlf_bmm: needs (B,M,K) and (B,K,N) with one B");
    EXPECT_PANIC(dlf_sum_axes(&t, a, (const int[]){1, -1}, 2, 0), "dlf_sum_axes: axis -1 appears more than once");
    EXPECT_PANIC(dlf_mean_axes(&t, a, (const int[]){2}, 1, 0), "dlf_mean_axes: axis 2 is out of range");
    EXPECT_PANIC(dlf_sum(&t, s, 1, 0), "dlf_sum: axis 1 is out of range");
    EXPECT_PANIC(dlf_min(&t, a, 2, 0), "dlf_min: axis 2 is out of range");
    EXPECT_PANIC(dlf_clamp(&t, NULL, 0, 1), "dlf_clamp: a is NULL");
    EXPECT_PANIC(dlf_cat(&t, NULL, 2, 0), "dlf_cat: ts is NULL");
    EXPECT_PANIC(dlf_custom(&t, NULL, ab, 1), "dlf_custom: op is NULL");
    dlf_tape_destroy(&t);
    dlf_tensor_free(a); dlf_tensor_free(b); dlf_tensor_free(bi); dlf_tensor_free(fi); dlf_tensor_free(s);
}

/* ---------------------------------------------------------------- custom ops */

/* swish(x) = x * sigmoid(x);  d/dx = s + x s (1 - s), with s = sigmoid(x) saved by the forward */
static dlf_tensor *swish_fwd(dlf_custom_ctx *ctx, dlf_tensor **in, int n_in, void *user)
{
    dlf_tensor *x = in[0], *y = dlf_custom_output(ctx, x->ndim, x->shape);
    dlf_tensor *s = dlf_sigmoid(ctx->tape, x);  /* recording is off: a plain arena tensor */
    int i;
    (void)n_in; (void)user;
    for (i = 0; i < x->size; i++) y->data[i] = x->data[i] * s->data[i];
    dlf_custom_save(ctx, s);
    return y;
}

static void swish_bwd(dlf_custom_ctx *ctx, const float *gout, float **gin, void *user)
{
    const float *x = ctx->in[0]->data, *s = ctx->saved[0]->data;
    int i;
    (void)user;
    if (gin[0])
        for (i = 0; i < ctx->in[0]->size; i++) gin[0][i] += gout[i] * (s[i] + x[i] * s[i] * (1.0f - s[i]));
}

static const dlf_custom_op SWISH = {"swish", swish_fwd, swish_bwd, NULL};

/* out = sum_i w_i x_i over up to 8 same-shape inputs (weights in user): more inputs than one
   node holds, so the tape records carrier nodes; d out / d x_i = w_i */
static dlf_tensor *wsum_fwd(dlf_custom_ctx *ctx, dlf_tensor **in, int n_in, void *user)
{
    const float *w = (const float *)user;
    dlf_tensor *y = dlf_custom_output(ctx, in[0]->ndim, in[0]->shape);
    int i, k;
    for (k = 0; k < n_in; k++)
        for (i = 0; i < y->size; i++) y->data[i] += w[k] * in[k]->data[i];
    ctx->iarg[0] = n_in;
    return y;
}

static void wsum_bwd(dlf_custom_ctx *ctx, const float *gout, float **gin, void *user)
{
    const float *w = (const float *)user;
    int i, k;
    for (k = 0; k < ctx->iarg[0]; k++)
        if (gin[k])
            for (i = 0; i < ctx->out->size; i++) gin[k][i] += w[k] * gout[i];
}

static float WSUM_W[8] = {0.5f, -1.0f, 2.0f, 0.25f, 3.0f, -0.5f, 1.5f, 1.0f};
static const dlf_custom_op WSUM = {"wsum", wsum_fwd, wsum_bwd, WSUM_W};
static const dlf_custom_op WSUM_NO_BWD = {"wsum_no_backward", wsum_fwd, NULL, WSUM_W};

static dlf_tensor *ident_fwd(dlf_custom_ctx *ctx, dlf_tensor **in, int n_in, void *user)
{
    (void)ctx; (void)n_in; (void)user;
    return in[0];
}
static const dlf_custom_op IDENT = {"ident", ident_fwd, NULL, NULL};

static dlf_tensor *swish_graph(dlf_tape *t, dlf_tensor **x, void *user)
{
    (void)user;
    return dlf_mul(t, dlf_custom(t, &SWISH, x, 1), x[1]);
}

static dlf_tensor *wsum_graph(dlf_tape *t, dlf_tensor **x, void *user)
{
    return dlf_tanh(t, dlf_custom(t, &WSUM, x, *(int *)user));
}

static void test_custom(void)
{
    dlf_rng r;
    dlf_tape t;
    int s[2] = {3, 4}, i, n7 = 7;
    dlf_tensor *x[8], *y, *ref;
    float yv[12], gv[12];
    GROUP("custom ops");
    dlf_rng_seed(&r, 11);
    for (i = 0; i < 8; i++) x[i] = randn(&r, 2, s);
    /* swish as a custom op equals x * sigmoid(x) built from dlf ops, values and gradients */
    dlf_tensor_requires_grad(x[0]);
    dlf_tape_init(&t);
    y = dlf_custom(&t, &SWISH, x, 1);
    CHECK(t.n_nodes == 1 && t.nodes[0].op == DLF_OP_CUSTOM && !strcmp(dlf_op_name(t.nodes[0].op), "custom"),
          "one DLF_OP_CUSTOM node recorded (the sigmoid inside is not)");
    dlf_backward(&t, dlf_sum_all(&t, y));
    memcpy(yv, y->data, sizeof yv);  /* the arena is reused after the reset */
    memcpy(gv, x[0]->grad, sizeof gv);
    dlf_tape_reset(&t);
    dlf_zero_grad(x[0]);
    ref = dlf_mul(&t, x[0], dlf_sigmoid(&t, x[0]));
    CHECK_CLOSE(yv, ref->data, 12, 1e-6f, 1e-6f, "swish forward = x * sigmoid(x)");
    dlf_backward(&t, dlf_sum_all(&t, ref));
    CHECK_CLOSE(gv, x[0]->grad, 12, 1e-6f, 1e-5f, "swish backward = autograd of x * sigmoid(x)");
    dlf_tape_destroy(&t);
    GRADCHECK(swish_graph, x, 2, NULL, "custom swish, times another input");
    /* 7 inputs: 3 nodes; gradients reach inputs 3..6 too (the carrier nodes) */
    GRADCHECK(wsum_graph, x, 7, &n7, "custom weighted sum of 7 inputs");
    {
        dlf_tensor *part[5];
        int n5 = 5;
        for (i = 0; i < 5; i++) part[i] = dlf_tensor_from(2, s, x[i]->data);
        dlf_tensor_requires_grad(part[4]);  /* only the last input, which sits in the second node */
        dlf_tape_init(&t);
        y = dlf_custom(&t, &WSUM, part, n5);
        CHECK(t.n_nodes == 1, "only the node holding a grad-requiring input is recorded (%d)", t.n_nodes);
        dlf_backward_seed(&t, y, NULL);
        CHECK(part[4]->grad && part[4]->grad[5] == 3.0f && !part[0]->grad, "gradient 3 reaches input 4 only");
        dlf_tape_destroy(&t);
        dlf_tape_init(&t);
        y = dlf_custom(&t, &WSUM_NO_BWD, part, n5);
        EXPECT_PANIC(dlf_backward_seed(&t, y, NULL),
                     "custom op \"wsum_no_backward\" has no backward, but its input 4 needs a gradient");
        EXPECT_PANIC(dlf_custom(&t, &IDENT, part, 1), "dlf_custom: op \"ident\": forward returned its input 0");
        EXPECT_PANIC(dlf_custom(&t, &WSUM, part, 9), "n_inputs 9 is outside 1..8");
        dlf_tape_destroy(&t);
        for (i = 0; i < 5; i++) dlf_tensor_free(part[i]);
    }
    for (i = 0; i < 8; i++) dlf_tensor_free(x[i]);
}

int main(void)
{
    th_init();
    test_special_unary();
    test_special_binary();
    test_special_reduce();
    test_special_matmul();
    test_special_shape();
    test_gradchecks();
    test_shapes();
    test_errors();
    test_custom();
    TEST_MAIN_END();
}
