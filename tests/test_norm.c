/* test_norm.c - stage 9 (normalization), stage 10 (dropout), the layers and parameter
   lists that carry them, and the stage 11 optimizers' behaviour.

   1. gradcheck of every new backward: BatchNorm (train, eval, no affine, NULL state;
      (N,C), (N,C,L), (N,C,H,W)), LayerNorm, GroupNorm, InstanceNorm, RunningBatchNorm
      (batch 2 and 8, warm state, clamped variance), Dropout, Dropout2d, dropout_mask;
   2. behaviour: BatchNorm's running statistics, eval mode, dropout's mask, a training
      step with dropout + BatchNorm + Adam that allocates nothing after the first;
   3. layers: state_dict names and order of a Sequential with a residual block, buffers,
      no-decay groups, dlf_seq_print, dlf_evaluate's mode switch;
   4. optimizers: every kind descends a quadratic, no allocation in a step, defaults,
      groups, L2 vs decoupled weight decay, gradient clipping, dlf_fit restoring the
      group lrs, checkpoint round trips of Adam and RMSProp state, named load errors;
   5. RunningBatchNorm trains at batch size 2.
   PyTorch's numbers for these ops are fixture-tested in test_reference.c. */
#include <stdlib.h>
#define TH_COUNT_ALLOCS  /* count dlf's heap allocations (see harness.h) */
#define DLF_IMPLEMENTATION
#include "harness.h"

static dlf_rng g_rng;

static dlf_tensor *randn(int ndim, const int *shape, float mean, float std)
{
    dlf_tensor *x = dlf_tensor_new(ndim, shape);
    dlf_fill_normal(x, &g_rng, mean, std);
    return x;
}

/* GRADCHECK for smooth functions: every element checked, none skipped as a kink (a
   skipped element would hide a wrong gradient). */
#define GRADCHECK_ALL(fn, inputs, n, user, what) do {                                 \
        dlf_gradcheck_report r_ = {0, 0, 0, 0, 0, 0, 0};                               \
        int k_, total_ = 0, ok_ = dlf_gradcheck((fn), (inputs), (n), (user), NULL, &r_); \
        for (k_ = 0; k_ < (n); k_++) total_ += (inputs)[k_]->size;                     \
        CHECK(ok_ && r_.n_checked == total_ && r_.n_kinks == 0,                         \
              "gradcheck %s: %d of %d failed (%d kinks, %d elements), max abs err %g (input %d index %d)", \
              (what), r_.n_failed, r_.n_checked, r_.n_kinks, total_, r_.max_abs_err,   \
              r_.worst_input, r_.worst_index);                                         \
    } while (0)

static int same_bits(const float *a, const float *b, int n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

/* ---------------------------------------------------------------- 1. gradchecks */

typedef struct bn_case {
    dlf_bn_state *st;        /* NULL: no running statistics */
    int eval;                /* run in eval mode */
    int affine;              /* inputs[1], inputs[2] are weight and bias */
} bn_case;

static dlf_tensor *bn_fn(dlf_tape *t, dlf_tensor **in, void *user)
{
    bn_case *c = (bn_case *)user;
    if (c->eval) dlf_tape_set_training(t, 0);
    return dlf_batchnorm(t, in[0], c->affine ? in[1] : NULL, c->affine ? in[2] : NULL, c->st);
}

/* A BatchNorm state with non-trivial running statistics (for eval mode). */
static void bn_state_make(dlf_layer *l, int C)
{
    int c;
    *l = dlf_layer_batchnorm(C);
    for (c = 0; c < C; c++) {
        l->bn.running_mean->data[c] = 0.3f * (float)c - 0.2f;
        l->bn.running_var->data[c] = 0.5f + 0.25f * (float)c;
    }
}

static void gradcheck_batchnorm(void)
{
    static const int shapes[3][4] = {{6, 3, 0, 0}, {3, 2, 5, 0}, {2, 3, 3, 3}};
    static const int ndims[3] = {2, 3, 4};
    int s, mode;
    GROUP("gradcheck batchnorm");
    for (s = 0; s < 3; s++) {
        int C = shapes[s][1];
        dlf_layer l;
        dlf_tensor *in[3];
        char what[96];
        bn_state_make(&l, C);
        in[0] = randn(ndims[s], shapes[s], 0.5f, 2.0f);
        in[1] = randn(1, &C, 1.0f, 0.5f);
        in[2] = randn(1, &C, 0.0f, 0.5f);
        for (mode = 0; mode < 4; mode++) {
            /* 0 train, 1 eval, 2 train without affine, 3 train with no state (NULL) */
            bn_case bc;
            bc.st = mode == 3 ? NULL : &l.bn;
            bc.eval = mode == 1;
            bc.affine = mode != 2;
            snprintf(what, sizeof what, "batchnorm %dd %s", ndims[s],
                     mode == 0 ? "train" : mode == 1 ? "eval" : mode == 2 ? "train, no affine" : "train, no state");
            GRADCHECK_ALL(bn_fn, in, bc.affine ? 3 : 1, &bc, what);
        }
        {   /* eval mode through the gradcheck's own option gives the same verdict */
            dlf_gradcheck_cfg cfg;
            dlf_gradcheck_report rep;
            bn_case bc;
            memset(&cfg, 0, sizeof cfg);
            cfg.eval_mode = 1;
            bc.st = &l.bn;
            bc.eval = 0;
            bc.affine = 1;
            CHECK(dlf_gradcheck(bn_fn, in, 3, &bc, &cfg, &rep) && rep.n_checked == in[0]->size + 2 * C,
                  "batchnorm %dd eval (cfg.eval_mode): %d failed of %d", ndims[s], rep.n_failed, rep.n_checked);
        }
        dlf_tensor_free(in[0]); dlf_tensor_free(in[1]); dlf_tensor_free(in[2]);
        dlf_layer_free(&l);
    }
}

typedef struct norm_case { int kind; int arg; int affine; } norm_case; /* kind 0 layer, 1 group, 2 instance */

static dlf_tensor *norm_fn(dlf_tape *t, dlf_tensor **in, void *user)
{
    norm_case *c = (norm_case *)user;
    dlf_tensor *w = c->affine ? in[1] : NULL, *b = c->affine ? in[2] : NULL;
    switch (c->kind) {
    case 0: return dlf_layernorm(t, in[0], c->arg, w, b, 1e-5f);
    case 1: return dlf_groupnorm(t, in[0], c->arg, w, b, 1e-5f);
    default: return dlf_instancenorm(t, in[0], w, b, 1e-5f);
    }
}

static void gradcheck_one_norm(const char *what, int kind, int arg, int affine, int ndim, const int *shape, int n_affine)
{
    norm_case nc;
    dlf_tensor *in[3];
    nc.kind = kind;
    nc.arg = arg;
    nc.affine = affine;
    in[0] = randn(ndim, shape, -0.3f, 1.5f);
    in[1] = randn(1, &n_affine, 1.0f, 0.5f);
    in[2] = randn(1, &n_affine, 0.0f, 0.5f);
    GRADCHECK_ALL(norm_fn, in, affine ? 3 : 1, &nc, what);
    dlf_tensor_free(in[0]); dlf_tensor_free(in[1]); dlf_tensor_free(in[2]);
}

static void gradcheck_norms(void)
{
    GROUP("gradcheck layer/group/instance norm");
    gradcheck_one_norm("layernorm (3,4,5) over 5", 0, 5, 1, 3, (const int[]){3, 4, 5}, 5);
    gradcheck_one_norm("layernorm (3,4,5) over 20", 0, 20, 1, 3, (const int[]){3, 4, 5}, 20);
    gradcheck_one_norm("layernorm (4,6) no affine", 0, 6, 0, 2, (const int[]){4, 6}, 6);
    gradcheck_one_norm("groupnorm 3 groups (2,6,3,3)", 1, 3, 1, 4, (const int[]){2, 6, 3, 3}, 6);
    gradcheck_one_norm("groupnorm 1 group (2,4,5)", 1, 1, 1, 3, (const int[]){2, 4, 5}, 4);
    gradcheck_one_norm("groupnorm 2 groups no affine (3,4,2,2)", 1, 2, 0, 4, (const int[]){3, 4, 2, 2}, 4);
    gradcheck_one_norm("instancenorm affine (2,3,4,4)", 2, 0, 1, 4, (const int[]){2, 3, 4, 4}, 3);
    gradcheck_one_norm("instancenorm no affine (2,3,4,4)", 2, 0, 0, 4, (const int[]){2, 3, 4, 4}, 3);
    gradcheck_one_norm("instancenorm affine (2,3,7)", 2, 0, 1, 3, (const int[]){2, 3, 7}, 3);
}

/* RunningBatchNorm updates its state at every training forward, and the output depends
   on the state: every evaluation starts from the same snapshot. */
typedef struct rbn_case {
    dlf_layer *l;
    dlf_tensor *snap[8];     /* copies of l's 6 buffers (2..7 of its tensor set) */
} rbn_case;

static void rbn_snapshot(rbn_case *c)
{
    dlf_tensor *ts[DLF_LAYER_MAX_TENSORS];
    int n = dlf_layer_tensors(c->l, ts, NULL, NULL), i;
    for (i = 2; i < n; i++) {
        if (!c->snap[i]) c->snap[i] = dlf_tensor_new(ts[i]->ndim, ts[i]->shape);
        memcpy(c->snap[i]->data, ts[i]->data, (size_t)ts[i]->size * sizeof(float));
    }
}

static void rbn_restore(rbn_case *c)
{
    dlf_tensor *ts[DLF_LAYER_MAX_TENSORS];
    int n = dlf_layer_tensors(c->l, ts, NULL, NULL), i;
    for (i = 2; i < n; i++) memcpy(ts[i]->data, c->snap[i]->data, (size_t)ts[i]->size * sizeof(float));
}

static void rbn_free_snap(rbn_case *c)
{
    int i;
    for (i = 0; i < 8; i++) if (c->snap[i]) dlf_tensor_free(c->snap[i]);
}

static dlf_tensor *rbn_fn(dlf_tape *t, dlf_tensor **in, void *user)
{
    rbn_case *c = (rbn_case *)user;
    rbn_restore(c);
    return dlf_running_batchnorm(t, in[0], in[1], in[2], &c->l->rbn);
}

/* Warm-up steps on random batches so sums, sqrs, count, dbias are not trivial. */
static void rbn_warm(dlf_layer *l, int N, int C, int steps)
{
    dlf_tape t;
    int s, shape[4];
    shape[0] = N; shape[1] = C; shape[2] = 3; shape[3] = 3;
    dlf_tape_init(&t);
    dlf_tape_set_grad(&t, 0);
    for (s = 0; s < steps; s++) {
        dlf_tensor *x = randn(4, shape, 0.7f, 1.3f);
        dlf_tape_reset(&t);
        dlf_running_batchnorm(&t, x, l->weight, l->bias, &l->rbn);
        dlf_tensor_free(x);
    }
    dlf_tape_destroy(&t);
}

/* Eval mode before any training batch: no statistics yet, so the layer normalizes with
   mean 0 and variance 1 (PyTorch BatchNorm's starting running statistics): y = mults *
   x / sqrt(1 + eps) + adds, finite. It used to divide 0 by 0. */
static void test_running_batchnorm_fresh_eval(void)
{
    dlf_layer l = dlf_layer_running_batchnorm(2);
    dlf_tape t;
    dlf_tensor *x, *y;
    int shape[4] = {3, 2, 2, 2}, i, bad = 0;
    GROUP("running batchnorm: eval before training");
    dlf_tape_init(&t);
    dlf_tape_set_training(&t, 0);
    x = randn(4, shape, 0.5f, 2.0f);
    dlf_fill(l.weight, 1.5f);
    dlf_fill(l.bias, 0.25f);
    y = dlf_running_batchnorm(&t, x, l.weight, l.bias, &l.rbn);
    for (i = 0; y && i < y->size; i++)
        if (!(fabsf(y->data[i] - (1.5f * x->data[i] / sqrtf(1.0f + 1e-5f) + 0.25f)) < 1e-5f)) bad++;
    CHECK(y && bad == 0, "%d of %d values are not 1.5 x / sqrt(1 + eps) + 0.25 (first %g from %g)", bad, x->size,
          y ? (double)y->data[0] : 0.0, (double)x->data[0]);
    dlf_tensor_free(x);
    dlf_tape_destroy(&t);
    dlf_layer_free(&l);
}

static void gradcheck_running_batchnorm(void)
{
    int cs;
    GROUP("gradcheck running batchnorm");
    for (cs = 0; cs < 5; cs++) {
        /* 0: batch 2 fresh; 1: batch 2 after 3 steps; 2: batch 8 after 3 steps;
           3: batch 2, variance clamped (tiny values, batch < 20);
           4: batch 4, long-trained state (step >= 100: no debiasing, batch >= 20: no clamp) */
        static const char *const what[5] = {"batch 2 fresh", "batch 2 warm", "batch 8 warm", "batch 2 clamped",
                                            "batch 4 no debias"};
        int N = cs == 2 ? 8 : cs == 4 ? 4 : 2, C = 3, shape[4], wshape[3], c;
        dlf_layer l = dlf_layer_running_batchnorm(C);
        rbn_case rc;
        dlf_tensor *in[3];
        memset(&rc, 0, sizeof rc);
        rc.l = &l;
        if (cs == 1 || cs == 2) rbn_warm(&l, N, C, 3);
        if (cs == 4) {
            for (c = 0; c < C; c++) {
                l.rbn.sums->data[c] = 40.0f * (0.2f * (float)c - 0.1f);
                l.rbn.sqrs->data[c] = 40.0f * (1.5f + 0.3f * (float)c);
            }
            l.rbn.count->data[0] = 40.0f;
            l.rbn.dbias->data[0] = 1.0f;
            l.rbn.step->data[0] = 150.0f;
            l.rbn.batch->data[0] = 600.0f;
        }
        rbn_snapshot(&rc);
        shape[0] = N; shape[1] = C; shape[2] = 3; shape[3] = 3;
        wshape[0] = C; wshape[1] = 1; wshape[2] = 1;
        in[0] = cs == 3 ? randn(4, shape, 0.5f, 0.02f) : randn(4, shape, 0.4f, 1.2f);
        in[1] = randn(3, wshape, 1.0f, 0.4f);
        in[2] = randn(3, wshape, 0.0f, 0.4f);
        if (cs == 3) {   /* the clamp really is active: the batch's variance is far below 0.01 */
            dlf_tape t;
            dlf_tensor *y;
            dlf_tape_init(&t);
            dlf_tensor_requires_grad(in[0]);
            y = dlf_running_batchnorm(&t, in[0], in[1], in[2], &l.rbn);
            CHECK(y && t.n_nodes == 1 && t.nodes[0].aux->data[0] == 0.0f && t.nodes[0].saved[1]->data[0] < 10.0f,
                  "clamped: kv %g, rstd %g (1/sqrt(0.01) = 10)", y ? t.nodes[0].aux->data[0] : -1.0,
                  y ? t.nodes[0].saved[1]->data[0] : -1.0);
            dlf_tape_destroy(&t);
            rbn_restore(&rc);
        }
        {
            char w[64];
            snprintf(w, sizeof w, "running batchnorm %s", what[cs]);
            GRADCHECK_ALL(rbn_fn, in, 3, &rc, w);
        }
        dlf_tensor_free(in[0]); dlf_tensor_free(in[1]); dlf_tensor_free(in[2]);
        rbn_free_snap(&rc);
        dlf_layer_free(&l);
    }
}

typedef struct drop_case { int kind; float p; dlf_tensor *keep; } drop_case; /* 0 dropout, 1 dropout2d, 2 mask */

static dlf_tensor *drop_fn(dlf_tape *t, dlf_tensor **in, void *user)
{
    drop_case *c = (drop_case *)user;
    dlf_tensor *h = dlf_tanh(t, in[0]);  /* something before it, so the gradient is not a constant */
    switch (c->kind) {
    case 0: h = dlf_dropout(t, h, c->p); break;
    case 1: h = dlf_dropout2d(t, h, c->p); break;
    default: h = dlf_dropout_mask(t, h, c->keep, c->p); break;
    }
    return dlf_mul(t, h, in[0]);
}

static void gradcheck_dropout(void)
{
    int shape[4] = {2, 4, 3, 3}, ks[2] = {2, 4}, k, i;
    dlf_tensor *x = randn(4, shape, 0.0f, 1.0f), *keep = dlf_tensor_new(2, ks);
    drop_case dc;
    GROUP("gradcheck dropout");
    for (i = 0; i < keep->size; i++) keep->data[i] = (float)(i % 3 != 1);
    for (k = 0; k < 3; k++) {
        dc.kind = k;
        dc.p = 0.4f;
        dc.keep = keep;
        GRADCHECK_ALL(drop_fn, &x, 1, &dc, k == 0 ? "dropout" : k == 1 ? "dropout2d" : "dropout_mask (N,C)");
    }
    dlf_tensor_free(keep);
    keep = dlf_tensor_new(4, shape);   /* a mask of x's own shape */
    for (i = 0; i < keep->size; i++) keep->data[i] = (float)(i % 4 != 0);
    dc.kind = 2;
    dc.keep = keep;
    GRADCHECK_ALL(drop_fn, &x, 1, &dc, "dropout_mask elementwise");
    dlf_tensor_free(keep);
    dlf_tensor_free(x);
}

/* ---------------------------------------------------------------- 2. behaviour */

/* Batch mean and biased variance of channel c of x (N,C,L), in double. */
static void channel_stats(const dlf_tensor *x, int c, double *mean, double *var)
{
    int N = x->shape[0], C = x->shape[1], L = x->size / (N * C), n, l;
    double s = 0.0, ss = 0.0;
    for (n = 0; n < N; n++) for (l = 0; l < L; l++) s += x->data[((size_t)n * C + c) * L + l];
    *mean = s / (N * L);
    for (n = 0; n < N; n++)
        for (l = 0; l < L; l++) {
            double d = x->data[((size_t)n * C + c) * L + l] - *mean;
            ss += d * d;
        }
    *var = ss / (N * L);
}

/* max |y - ((x - mean_c) / sqrt(var_c + eps) * w_c + b_c)| */
static double bn_ref_err(const dlf_tensor *x, const dlf_tensor *y, const double *mean, const double *var,
                         const dlf_tensor *w, const dlf_tensor *b, double eps)
{
    int N = x->shape[0], C = x->shape[1], L = x->size / (N * C), n, c, l;
    double worst = 0.0;
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++)
            for (l = 0; l < L; l++) {
                size_t i = ((size_t)n * C + c) * L + l;
                double want = (x->data[i] - mean[c]) / sqrt(var[c] + eps) * (w ? w->data[c] : 1.0) + (b ? b->data[c] : 0.0);
                double d = fabs(y->data[i] - want);
                if (d > worst) worst = d;
            }
    return worst;
}

/* The fused fast path against the naive reference: outputs, running statistics and
   every gradient, in training and eval mode, for 2-D and 4-D inputs. */
static void test_batchnorm_vs_naive(void)
{
    static const int shapes[2][4] = {{37, 5, 0, 0}, {8, 6, 7, 5}};
    static const int ndims[2] = {2, 4};
    int s, mode;
    GROUP("batchnorm fast vs naive");
    for (s = 0; s < 2; s++)
        for (mode = 0; mode < 2; mode++) {   /* 0 training, 1 eval */
            int C = shapes[s][1], j, i;
            dlf_layer l[2];
            dlf_tensor *x = randn(ndims[s], shapes[s], 0.7f, 2.0f), *y[2], *g[2][3];
            dlf_tape t[2];
            for (j = 0; j < 2; j++) {
                bn_state_make(&l[j], C);
                for (i = 0; i < C; i++) { l[j].weight->data[i] = 1.0f + 0.1f * i; l[j].bias->data[i] = 0.2f - 0.05f * i; }
                dlf_tape_init(&t[j]);
                dlf_tape_set_training(&t[j], mode == 0);
                dlf_tensor_requires_grad(x);
                dlf_zero_grad(x); dlf_zero_grad(l[j].weight); dlf_zero_grad(l[j].bias);
                y[j] = (j ? dlf_batchnorm_naive : dlf_batchnorm)(&t[j], x, l[j].weight, l[j].bias, &l[j].bn);
                {
                    dlf_tensor *seed = dlf_tape_tensor(&t[j], y[j]->ndim, y[j]->shape);
                    dlf_rng r2;
                    dlf_rng_seed(&r2, 5);
                    dlf_fill_normal(seed, &r2, 0.0f, 1.0f);
                    dlf_backward_seed(&t[j], y[j], seed->data);
                }
                g[j][0] = dlf_clone(&t[j], x); memcpy(g[j][0]->data, x->grad, (size_t)x->size * 4);
                g[j][1] = dlf_clone(&t[j], l[j].weight); memcpy(g[j][1]->data, l[j].weight->grad, (size_t)C * 4);
                g[j][2] = dlf_clone(&t[j], l[j].bias); memcpy(g[j][2]->data, l[j].bias->grad, (size_t)C * 4);
            }
            CHECK_CLOSE(y[0]->data, y[1]->data, x->size, 1e-5f, 1e-5f, mode ? "eval y" : "training y");
            CHECK_CLOSE(l[0].bn.running_mean->data, l[1].bn.running_mean->data, C, 1e-6f, 1e-6f, "running mean");
            CHECK_CLOSE(l[0].bn.running_var->data, l[1].bn.running_var->data, C, 1e-6f, 1e-6f, "running var");
            CHECK_CLOSE(g[0][0]->data, g[1][0]->data, x->size, 1e-5f, 1e-4f, mode ? "eval dx" : "training dx");
            CHECK_CLOSE(g[0][1]->data, g[1][1]->data, C, 1e-4f, 1e-4f, "dweight");
            CHECK_CLOSE(g[0][2]->data, g[1][2]->data, C, 1e-4f, 1e-4f, "dbias");
            for (j = 0; j < 2; j++) { dlf_tape_destroy(&t[j]); dlf_layer_free(&l[j]); }
            dlf_tensor_free(x);
        }
}

static void test_batchnorm_behaviour(void)
{
    int shape[4] = {4, 3, 2, 2}, C = 3, c, step;
    dlf_layer l = dlf_layer_batchnorm(C);
    dlf_tape t;
    dlf_tensor *x, *y;
    double mean[3], var[3], rm[3], rv[3];
    GROUP("batchnorm behaviour");
    dlf_tape_init(&t);
    CHECK(t.training == 1, "a new tape is in training mode");
    CHECK(l.bn.momentum == th_f(0.1f) && l.bn.eps == th_f(1e-5f) && l.bn.running_var->data[2] == 1.0f &&
          l.bn.running_mean->data[1] == 0.0f && l.bn.num_batches_tracked->ndim == 0 &&
          l.bn.num_batches_tracked->data[0] == 0.0f && l.weight->data[0] == 1.0f && l.bias->data[0] == 0.0f,
          "BatchNorm(3) starts as PyTorch's");
    dlf_fill_normal(l.weight, &g_rng, 1.0f, 0.3f);
    dlf_fill_normal(l.bias, &g_rng, 0.0f, 0.3f);
    for (c = 0; c < C; c++) { rm[c] = 0.0; rv[c] = 1.0; }
    for (step = 0; step < 3; step++) {
        /* momentum 0.1, then 0.3 for the third step */
        double mom = step == 2 ? 0.3 : 0.1, M = 4 * 2 * 2;
        int ok_run = 1;
        if (step == 2) l.bn.momentum = 0.3f;
        x = randn(4, shape, 1.5f, 2.0f);
        for (c = 0; c < C; c++) x->data[c * 4] += (float)c;  /* different statistics per channel */
        dlf_tape_reset(&t);
        y = dlf_layer_forward(&t, &l, x);
        for (c = 0; c < C; c++) {
            channel_stats(x, c, &mean[c], &var[c]);
            rm[c] = mom * mean[c] + (1 - mom) * rm[c];
            rv[c] = mom * var[c] * M / (M - 1) + (1 - mom) * rv[c];   /* unbiased */
            ok_run &= fabs(l.bn.running_mean->data[c] - rm[c]) <= 1e-6 * (1 + fabs(rm[c])) &&
                      fabs(l.bn.running_var->data[c] - rv[c]) <= 1e-6 * (1 + fabs(rv[c]));
        }
        CHECK(y && bn_ref_err(x, y, mean, var, l.weight, l.bias, 1e-5) < 1e-5,
              "step %d: train output uses the batch statistics (biased variance), err %g", step,
              y ? bn_ref_err(x, y, mean, var, l.weight, l.bias, 1e-5) : -1.0);
        CHECK(ok_run, "step %d: running_mean %g (want %g), running_var %g (want %g, unbiased)", step,
              l.bn.running_mean->data[0], rm[0], l.bn.running_var->data[0], rv[0]);
        CHECK(l.bn.num_batches_tracked->data[0] == (float)(step + 1), "num_batches_tracked %g after %d steps",
              l.bn.num_batches_tracked->data[0], step + 1);
        dlf_tensor_free(x);
    }
    {   /* eval: the running statistics, nothing updated */
        float before_m[3], before_v[3], nbt = l.bn.num_batches_tracked->data[0];
        int prev;
        x = randn(4, shape, -1.0f, 3.0f);
        memcpy(before_m, l.bn.running_mean->data, sizeof before_m);
        memcpy(before_v, l.bn.running_var->data, sizeof before_v);
        prev = dlf_tape_set_training(&t, 0);
        CHECK(prev == 1 && t.training == 0, "set_training returns the previous mode");
        dlf_tape_reset(&t);
        y = dlf_layer_forward(&t, &l, x);
        for (c = 0; c < C; c++) { mean[c] = before_m[c]; var[c] = before_v[c]; }
        CHECK(y && bn_ref_err(x, y, mean, var, l.weight, l.bias, 1e-5) < 1e-5, "eval output uses the running statistics");
        CHECK(same_bits(before_m, l.bn.running_mean->data, 3) && same_bits(before_v, l.bn.running_var->data, 3) &&
              l.bn.num_batches_tracked->data[0] == nbt, "eval updates nothing");
        {   /* eval works with one item (training would not) */
            int s1[2] = {1, 3};
            dlf_tensor *x1 = randn(2, s1, 0.0f, 1.0f);
            dlf_tape_reset(&t);
            CHECK(dlf_batchnorm(&t, x1, l.weight, l.bias, &l.bn) != NULL, "eval with batch 1");
            dlf_tape_set_training(&t, 1);
            EXPECT_PANIC(dlf_batchnorm(&t, x1, l.weight, l.bias, &l.bn), "more than one value per channel");
            dlf_tensor_free(x1);
        }
        /* no state: batch statistics in training and in eval, as track_running_stats=False */
        for (c = 0; c < C; c++) channel_stats(x, c, &mean[c], &var[c]);
        dlf_tape_set_training(&t, 1);
        dlf_tape_reset(&t);
        y = dlf_batchnorm(&t, x, l.weight, l.bias, NULL);
        CHECK(y && bn_ref_err(x, y, mean, var, l.weight, l.bias, 1e-5) < 1e-5, "no state, train: batch statistics");
        dlf_tape_set_training(&t, 0);
        dlf_tape_reset(&t);
        y = dlf_batchnorm(&t, x, NULL, NULL, NULL);
        CHECK(y && bn_ref_err(x, y, mean, var, NULL, NULL, 1e-5) < 1e-5, "no state, eval: batch statistics too");
        CHECK(same_bits(before_m, l.bn.running_mean->data, 3), "a stateless call leaves the layer alone");
        dlf_tensor_free(x);
    }
    {   /* eval-mode BatchNorm's backward has no terms through the statistics: dx = dy w rstd */
        int s2[2] = {5, 3};
        dlf_tensor *x2 = randn(2, s2, 0.0f, 1.0f);
        int i, ok = 1;
        dlf_tensor_requires_grad(x2);
        dlf_tape_reset(&t);
        y = dlf_batchnorm(&t, x2, l.weight, l.bias, &l.bn);
        dlf_backward(&t, dlf_sum_all(&t, y));
        for (i = 0; i < x2->size; i++) {
            int ch = i % 3;
            double want = l.weight->data[ch] / sqrt((double)l.bn.running_var->data[ch] + 1e-5);
            ok &= fabs(x2->grad[i] - want) < 1e-5;
        }
        CHECK(ok, "eval backward is dy * w / sqrt(running_var + eps)");
        dlf_tensor_free(x2);
    }
    dlf_tape_destroy(&t);
    dlf_layer_free(&l);
}

static void test_layer_norms_behaviour(void)
{
    int shape[3] = {2, 4, 6}, i, n;
    dlf_tensor *x = randn(3, shape, 2.0f, 3.0f), *y;
    dlf_tape t;
    double worst = 0.0;
    GROUP("layer/group/instance norm behaviour");
    dlf_tape_init(&t);
    y = dlf_layernorm(&t, x, 6, NULL, NULL, 1e-5f);   /* every row of 6: mean 0, biased var 1 */
    for (n = 0; n < 8; n++) {
        double s = 0.0, ss = 0.0;
        for (i = 0; i < 6; i++) s += y->data[n * 6 + i];
        for (i = 0; i < 6; i++) ss += (y->data[n * 6 + i] - s / 6) * (y->data[n * 6 + i] - s / 6);
        if (fabs(s / 6) > worst) worst = fabs(s / 6);
        if (fabs(ss / 6 - 1.0) > worst) worst = fabs(ss / 6 - 1.0);
    }
    CHECK(worst < 1e-3, "layernorm rows: mean 0, var 1 (off by %g)", worst);
    {   /* instancenorm = groupnorm with C groups; layernorm over C*L = groupnorm with 1 group */
        dlf_tensor *a, *b;
        a = dlf_instancenorm(&t, x, NULL, NULL, 1e-5f);
        b = dlf_groupnorm(&t, x, 4, NULL, NULL, 1e-5f);
        CHECK(same_bits(a->data, b->data, x->size), "instancenorm is groupnorm with groups = C");
        a = dlf_layernorm(&t, x, 24, NULL, NULL, 1e-5f);
        b = dlf_groupnorm(&t, x, 1, NULL, NULL, 1e-5f);
        CHECK(CHECK_CLOSE(a->data, b->data, x->size, 1e-6f, 1e-6f, "layernorm over C*L = groupnorm(1)"), "ok");
        EXPECT_PANIC(dlf_groupnorm(&t, x, 3, NULL, NULL, 1e-5f), "3 groups do not divide the 4 channels");
    }
    {   /* the layers: eval mode changes nothing for them (no running statistics) */
        dlf_layer gn = dlf_layer_groupnorm(2, 4), in = dlf_layer_instancenorm(4, 0), ln = dlf_layer_layernorm(6);
        dlf_tensor *a, *b;
        CHECK(gn.weight && gn.weight->size == 4 && in.weight == NULL && in.bias == NULL && ln.weight->size == 6 &&
              gn.eps == th_f(1e-5f) && gn.groups == 2, "norm layers built as PyTorch's");
        a = dlf_layer_forward(&t, &gn, x);
        dlf_tape_set_training(&t, 0);
        b = dlf_layer_forward(&t, &gn, x);
        dlf_tape_set_training(&t, 1);
        CHECK(same_bits(a->data, b->data, x->size), "groupnorm: train and eval agree");
        CHECK(dlf_layer_forward(&t, &ln, x) != NULL && dlf_layer_forward(&t, &in, x) != NULL, "layernorm, instancenorm forward");
        dlf_layer_free(&gn); dlf_layer_free(&in); dlf_layer_free(&ln);
    }
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
}

static void test_dropout_behaviour(void)
{
    int n = 20000, i, zeros = 0, ok = 1, shape[4] = {16, 32, 3, 3};
    float p = 0.3f, scale = 1.0f / (float)(1.0 - 0.3);
    dlf_tensor *x = dlf_tensor_new1(n), *y, *y2, *x4;
    dlf_tape t;
    double sum = 0.0;
    GROUP("dropout behaviour");
    dlf_tape_init(&t);
    for (i = 0; i < n; i++) x->data[i] = 1.0f + (float)(i % 7);
    dlf_tape_set_training(&t, 0);
    CHECK(dlf_dropout(&t, x, p) == x && dlf_dropout2d(&t, x, p) == x, "eval mode: the identity, x itself");
    dlf_tape_set_training(&t, 1);
    CHECK(dlf_dropout(&t, x, 0.0f) == x, "p = 0: x itself");
    dlf_tape_seed(&t, 42);
    y = dlf_dropout(&t, x, p);
    for (i = 0; i < n; i++) {
        if (y->data[i] == 0.0f) zeros++;
        else ok &= y->data[i] == th_f(x->data[i] * scale);
        sum += y->data[i] / x->data[i];
    }
    CHECK(fabs(zeros / (double)n - p) < 0.02, "dropped %.4f of the values, p = %g", zeros / (double)n, p);
    CHECK(ok, "kept values are scaled by exactly 1/(1-p)");
    CHECK(fabs(sum / n - 1.0) < 0.03, "mean of y/x %.4f ~ 1", sum / n);
    dlf_tape_seed(&t, 42);
    y2 = dlf_dropout(&t, x, p);
    CHECK(same_bits(y->data, y2->data, n), "same seed, same mask");
    y2 = dlf_dropout(&t, x, p);
    CHECK(!same_bits(y->data, y2->data, n), "the rng moves on: the next mask differs");
    dlf_tape_seed(&t, 43);
    y2 = dlf_dropout(&t, x, p);
    CHECK(!same_bits(y->data, y2->data, n), "another seed, another mask");
    y2 = dlf_dropout(&t, x, 1.0f);
    for (i = 0, ok = 1; i < n; i++) ok &= y2->data[i] == 0.0f;
    CHECK(ok, "p = 1 drops everything");
    EXPECT_PANIC(dlf_dropout(&t, x, 1.5f), "must be in [0, 1]");
    /* dropout2d: whole channels */
    x4 = randn(4, shape, 3.0f, 0.5f);   /* no zeros in x */
    dlf_tape_seed(&t, 7);
    y = dlf_dropout2d(&t, x4, 0.5f);
    {
        int ch, dropped = 0, whole = 1;
        for (ch = 0; ch < 16 * 32; ch++) {
            int k, z = 0;
            for (k = 0; k < 9; k++) {
                float v = y->data[ch * 9 + k];
                if (v == 0.0f) z++;
                else whole &= v == x4->data[ch * 9 + k] * 2.0f;
            }
            whole &= z == 0 || z == 9;
            dropped += z == 9;
        }
        CHECK(whole, "dropout2d: each channel all kept (scaled by 2) or all dropped");
        CHECK(abs(dropped - 256) < 50, "dropout2d dropped %d of 512 channels at p = 0.5", dropped);
    }
    EXPECT_PANIC(dlf_dropout2d(&t, x, 0.5f), "must be (N,C,H,W)");
    {   /* the layers follow the tape's mode */
        dlf_layer d = dlf_layer_dropout(0.5f), d2 = dlf_layer_dropout2d(0.25f);
        CHECK(d.p == 0.5f && d2.p == 0.25f && d.weight == NULL, "dropout layers");
        CHECK(dlf_layer_forward(&t, &d, x) != x && dlf_layer_forward(&t, &d2, x4) != x4, "train: a new tensor");
        dlf_tape_set_training(&t, 0);
        CHECK(dlf_layer_forward(&t, &d, x) == x && dlf_layer_forward(&t, &d2, x4) == x4, "eval: x itself");
        dlf_tape_set_training(&t, 1);
    }
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
    dlf_tensor_free(x4);
}

/* A small CNN with BatchNorm, Dropout2d, a residual block with BatchNorm, Dropout. */
static void build_cnn(dlf_seq *s, dlf_rng *r)
{
    dlf_seq body;
    dlf_seq_init(s);
    dlf_seq_init(&body);
    dlf_seq_add(s, dlf_layer_conv2d(2, 8, 3, 1, 1, 1, r));                 /* 0 */
    dlf_seq_add(s, dlf_layer_batchnorm(8));                                /* 1 */
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU));                      /* 2 */
    dlf_seq_add(&body, dlf_layer_conv2d(8, 8, 3, 1, 1, 0, r));
    dlf_seq_add(&body, dlf_layer_batchnorm(8));
    dlf_seq_add(&body, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(s, dlf_layer_residual(&body));                             /* 3 */
    dlf_seq_add(s, dlf_layer_dropout2d(0.1f));                             /* 4 */
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));            /* 5 */
    dlf_seq_add(s, dlf_layer_dropout(0.2f));                               /* 6 */
    dlf_seq_add(s, dlf_layer_linear(8, 4, 1, r));                          /* 7 */
}

static void test_no_alloc_step(void)
{
    dlf_seq s;
    dlf_params pl;
    dlf_optim *o;
    dlf_optim_cfg cfg;
    dlf_tape t;
    dlf_rng r;
    int shape[4] = {6, 2, 5, 5}, step, i;
    dlf_tensor *x, *y = dlf_tensor_new1(6);
    long before = 0;
    GROUP("no allocation");
    dlf_rng_seed(&r, 3);
    build_cnn(&s, &r);
    dlf_params_init(&pl);
    CHECK(dlf_seq_collect(&s, &pl) == DLF_OK, "collect");
    memset(&cfg, 0, sizeof cfg);
    cfg.lr = 1e-3f;
    o = dlf_optim_create_groups(DLF_OPTIM_ADAM, &pl, &cfg, 1);
    x = randn(4, shape, 0.0f, 1.0f);
    for (i = 0; i < 6; i++) y->data[i] = (float)(i % 4);
    dlf_tape_init(&t);
    for (step = 0; step < 5; step++) {
        dlf_tensor *loss;
        if (step == 1) before = th_allocs;
        dlf_tape_reset(&t);
        loss = dlf_cross_entropy(&t, dlf_seq_forward(&t, &s, x), y);
        dlf_backward(&t, loss);
        dlf_optim_clip_grad_norm(o, 1.0f);
        dlf_optim_step(o);
        dlf_optim_zero_grad(o);
    }
    CHECK(th_allocs == before, "training steps 2-5 with BatchNorm, dropout, clipping and Adam allocated %ld times",
          th_allocs - before);
    CHECK(s.layers[1].bn.num_batches_tracked->data[0] == 5.0f, "the BatchNorm counted 5 batches");
    dlf_tape_destroy(&t);
    dlf_optim_free(o);
    dlf_params_free(&pl);
    dlf_seq_free(&s);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

/* ---------------------------------------------------------------- 3. layers */

static void test_collect_names(void)
{
    static const char *const want[] = {
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "3.body.0.weight", "3.body.1.weight", "3.body.1.bias", "3.body.1.running_mean", "3.body.1.running_var",
        "3.body.1.num_batches_tracked", "7.weight", "7.bias"};
    static const int buffer[] = {0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0};
    static const int no_decay[] = {0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1};
    const int n_want = (int)(sizeof want / sizeof want[0]);
    dlf_seq s;
    dlf_params pl;
    dlf_rng r;
    dlf_tensor *ts[16];
    char names[16][DLF_PARAM_NAME_MAX];
    int i, ok_names = 1, ok_buf = 1, ok_group = 1, n;
    GROUP("parameter lists");
    dlf_rng_seed(&r, 1);
    build_cnn(&s, &r);
    dlf_params_init(&pl);
    CHECK(dlf_seq_collect(&s, &pl) == DLF_OK && pl.n == n_want, "%d entries (want %d)", pl.n, n_want);
    for (i = 0; i < pl.n && i < n_want; i++) {
        ok_names &= strcmp(pl.items[i].name, want[i]) == 0;
        ok_buf &= pl.items[i].is_buffer == buffer[i] && pl.items[i].no_decay == no_decay[i];
        if (strcmp(pl.items[i].name, want[i]) != 0) printf("    entry %d: \"%s\", want \"%s\"\n", i, pl.items[i].name, want[i]);
    }
    CHECK(ok_names, "PyTorch's state_dict names, in its order");
    CHECK(ok_buf, "buffers flagged, biases and norm weights marked no_decay");
    CHECK(pl.items[1].t == s.layers[0].bias && pl.items[4].t == s.layers[1].bn.running_mean &&
          pl.items[8].t == s.layers[3].body->layers[1].weight, "entries point at the layers' tensors");
    CHECK(dlf_params_find(&pl, "3.body.1.running_var") == &pl.items[11] && dlf_params_find(&pl, "3.body.2.weight") == NULL,
          "dlf_params_find");
    n = dlf_params_tensors(&pl, ts, 16);
    CHECK(n == 9 && ts[0] == s.layers[0].weight && ts[8] == s.layers[7].bias, "9 trainable tensors, buffers skipped");
    CHECK(dlf_seq_params(&s, ts, names, 16) == 9 && strcmp(names[5], "3.body.1.weight") == 0 && strcmp(names[6], "3.body.1.bias") == 0 &&
          strcmp(names[8], "7.bias") == 0, "dlf_seq_params agrees: %s %s", names[5], names[6]);
    CHECK(dlf_params_group_no_decay(&pl, 1) == 6, "six entries move to group 1");
    for (i = 0; i < pl.n; i++) ok_group &= pl.items[i].group == (no_decay[i] ? 1 : 0);
    CHECK(ok_group, "group 1: biases and norm weights; group 0: the rest (buffers untouched)");
    {
        dlf_optim_cfg g[2];
        dlf_optim *o;
        int in1 = 0, named = 1;
        memset(g, 0, sizeof g);
        g[0].lr = 1e-3f; g[0].weight_decay = 0.05f;
        g[1].lr = 1e-3f;
        o = dlf_optim_create_groups(DLF_OPTIM_ADAMW, &pl, g, 2);
        CHECK(o && o->n_params == 9 && o->n_groups == 2, "create_groups: 9 parameters, 2 groups");
        for (i = 0; o && i < o->n_params; i++) {
            in1 += o->params[i].group == 1;
            named &= dlf_params_find(&pl, o->params[i].name) != NULL && dlf_params_find(&pl, o->params[i].name)->t == o->params[i].p;
        }
        CHECK(in1 == 6 && named, "optimizer groups follow the list (%d in group 1), names kept", in1);
        CHECK(o && o->groups[1].weight_decay == 0.0f && o->groups[0].weight_decay == th_f(0.05f), "per-group weight decay");
        dlf_optim_free(o);
    }
    {   /* a hand-written list: a 1-dim parameter is no_decay by default, a buffer never trains */
        dlf_params hp;
        dlf_tensor *w = dlf_param_new(2, (const int[]){2, 2}), *b = dlf_param_new(1, (const int[]){2});
        dlf_params_init(&hp);
        dlf_params_add(&hp, w, "w", 0);
        dlf_params_add(&hp, b, "b", 0);
        CHECK(dlf_params_add(&hp, b, "b", 1) == DLF_ERR_ARG && strstr(dlf_last_error(), "already"), "duplicate names refused");
        CHECK(hp.n == 2 && !hp.items[0].no_decay && hp.items[1].no_decay, "dlf_params_add flags 1-dim tensors no_decay");
        dlf_params_free(&hp);
        dlf_tensor_free(w);
        dlf_tensor_free(b);
    }
    {   /* RunningBatchNorm's set: the course's names, buffers after mults and adds */
        static const char *const rw[8] = {"mults", "adds", "sums", "sqrs", "batch", "count", "step", "dbias"};
        dlf_layer l = dlf_layer_running_batchnorm(5);
        dlf_tensor *lt[DLF_LAYER_MAX_TENSORS];
        const char *ln[DLF_LAYER_MAX_TENSORS];
        int lb[DLF_LAYER_MAX_TENSORS], k = dlf_layer_tensors(&l, lt, ln, lb), ok = k == 8;
        for (i = 0; ok && i < 8; i++) ok &= strcmp(ln[i], rw[i]) == 0 && lb[i] == (i >= 2);
        CHECK(ok && lt[0]->ndim == 3 && lt[0]->shape[0] == 5 && lt[2]->ndim == 4 && lt[2]->shape[1] == 5 &&
              lt[4]->ndim == 0 && dlf_layer_ok(&l), "RunningBatchNorm: mults (5,1,1) ... sums (1,5,1,1), scalars");
        dlf_layer_free(&l);
    }
    dlf_params_free(&pl);
    dlf_seq_free(&s);
}

/* Runs this program with --print: dlf_seq_print's output goes to a file we read. */
static void test_seq_print(const char *argv0)
{
    char cmd[1024], buf[4096];
    const char *path = "build/test_norm_print.txt";
    FILE *f;
    size_t n = 0;
    int rc;
    GROUP("seq print");
    snprintf(cmd, sizeof cmd, "%s --print > %s", th_self(argv0), path);
    rc = system(cmd);
    f = fopen(path, "rb");
    if (f) { n = fread(buf, 1, sizeof buf - 1, f); fclose(f); }
    buf[n] = 0;
    CHECK(rc == 0 && n > 0, "dlf_seq_print ran (%d)", rc);
    CHECK(strstr(buf, "(1): BatchNorm weight (8,) +bias eps=1e-05 momentum=0.1") != NULL, "BatchNorm line:\n%s", buf);
    CHECK(strstr(buf, "(3): Residual x + body(x), body: 3 layers") != NULL, "residual line");
    CHECK(strstr(buf, "(4): Dropout2d p=0.1") != NULL && strstr(buf, "(6): Dropout p=0.2") != NULL, "dropout lines");
    CHECK(strcmp(dlf_layer_kind_name(DLF_LAYER_RUNNING_BATCHNORM), "RunningBatchNorm") == 0 &&
          strcmp(dlf_layer_kind_name(DLF_LAYER_INSTANCENORM), "InstanceNorm2d") == 0, "kind names");
    remove(path);
}

/* A tiny in-memory dataset: 4x4 images of 3 classes (a bright row 0, 1 or 2 plus noise). */
typedef struct tiny { dlf_dataset ds; uint8_t img[96 * 16]; uint8_t lab[96]; } tiny;

static void tiny_make(tiny *d)
{
    int i, k;
    dlf_rng r;
    dlf_rng_seed(&r, 11);
    for (i = 0; i < 96; i++) {
        d->lab[i] = (uint8_t)(i % 3);
        for (k = 0; k < 16; k++) d->img[i * 16 + k] = (uint8_t)dlf_rng_below(&r, 60);
        for (k = 0; k < 4; k++) d->img[i * 16 + d->lab[i] * 4 + k] = (uint8_t)(180 + dlf_rng_below(&r, 70));
    }
    memset(&d->ds, 0, sizeof d->ds);
    d->ds.images = d->img;
    d->ds.labels = d->lab;
    d->ds.n = 96;
    d->ds.rows = 4;
    d->ds.cols = 4;
    d->ds.n_classes = 3;
}

typedef struct mode_model {
    dlf_seq s;
    int calls, eval_calls, grad_calls;
    dlf_optim *opt;          /* when set, each call records the group lrs */
    float lr0[64], lr1[64];
} mode_model;

static dlf_tensor *mode_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    mode_model *m = (mode_model *)user;
    if (m->opt && m->calls < 64) {
        m->lr0[m->calls] = m->opt->groups[0].lr;
        m->lr1[m->calls] = m->opt->groups[1].lr;
    }
    m->calls++;
    m->eval_calls += !t->training;
    m->grad_calls += t->grad_enabled;
    return dlf_seq_forward(t, &m->s, dlf_flatten(t, x));
}

static void mode_model_make(mode_model *m, uint64_t seed)
{
    dlf_rng r;
    memset(m, 0, sizeof *m);
    dlf_rng_seed(&r, seed);
    dlf_seq_init(&m->s);
    dlf_seq_add(&m->s, dlf_layer_linear(16, 12, 1, &r));
    dlf_seq_add(&m->s, dlf_layer_batchnorm(12));
    dlf_seq_add(&m->s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(&m->s, dlf_layer_dropout(0.2f));
    dlf_seq_add(&m->s, dlf_layer_linear(12, 3, 1, &r));
}

static void test_evaluate_mode(void)
{
    tiny d;
    mode_model m;
    dlf_loader_cfg lc;
    dlf_loader *l;
    dlf_tape t;
    float acc, loss, nbt;
    int k;
    GROUP("evaluate mode");
    tiny_make(&d);
    mode_model_make(&m, 5);
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 32;
    l = dlf_loader_create(&d.ds, &lc);
    dlf_tape_init(&t);
    for (k = 0; k < 2; k++) {
        int mode = k == 0 ? 1 : 0;
        dlf_tape_set_training(&t, mode);
        m.calls = m.eval_calls = m.grad_calls = 0;
        nbt = m.s.layers[1].bn.num_batches_tracked->data[0];
        acc = dlf_evaluate(&t, mode_forward, &m, l, &loss);
        CHECK(m.calls == 3 && m.eval_calls == 3 && m.grad_calls == 0, "evaluate: %d calls, %d in eval mode, %d with grad",
              m.calls, m.eval_calls, m.grad_calls);
        CHECK(t.training == mode && t.grad_enabled == 1, "mode %d restored after evaluate (training %d, grad %d)",
              mode, t.training, t.grad_enabled);
        CHECK(m.s.layers[1].bn.num_batches_tracked->data[0] == nbt, "evaluate leaves BatchNorm's statistics alone");
        CHECK(acc >= 0.0f && acc <= 1.0f && loss > 0.0f, "accuracy %g loss %g", acc, loss);
    }
    dlf_tape_destroy(&t);
    dlf_loader_free(l);
    dlf_seq_free(&m.s);
}

/* ---------------------------------------------------------------- 4. optimizers */

/* f(p) = 1/2 sum a_i (p_i - c_i)^2, gradient a_i (p_i - c_i), filled by hand. */
static double quad_grad(dlf_tensor *p)
{
    double f = 0.0;
    int i;
    for (i = 0; i < p->size; i++) {
        double a = 0.5 + 0.25 * (i % 5), c = 1.0 - 0.3 * i;
        double d = p->data[i] - c;
        f += 0.5 * a * d * d;
        p->grad[i] = (float)(a * d);
    }
    return f;
}

static void test_optim_descends(void)
{
    static const float lrs[DLF_OPTIM_KIND_COUNT] = {0.05f, 0.03f, 0.3f, 0.05f, 0.05f, 0.05f};
    int kind;
    GROUP("optimizers descend");
    for (kind = 0; kind < DLF_OPTIM_KIND_COUNT; kind++) {
        dlf_tensor *p = dlf_param_new(1, (const int[]){10}), *q = dlf_param_new(2, (const int[]){2, 3});
        dlf_tensor *ps[2];
        dlf_optim_cfg cfg;
        dlf_optim *o;
        double f0, f = 0.0;
        long before;
        int s, i;
        ps[0] = p;
        ps[1] = q;
        for (i = 0; i < 10; i++) p->data[i] = 2.0f + 0.1f * (float)i;
        dlf_fill(q, 0.5f);
        memset(&cfg, 0, sizeof cfg);
        cfg.lr = lrs[kind];
        if (kind == DLF_OPTIM_SGD) cfg.momentum = 0.9f;
        if (kind == DLF_OPTIM_ADAMW) cfg.weight_decay = 1e-2f;
        o = dlf_optim_create((dlf_optim_kind)kind, ps, 2, &cfg);
        f0 = quad_grad(p) + quad_grad(q);
        dlf_optim_step(o);
        before = th_allocs;
        for (s = 1; s < 200; s++) {
            dlf_optim_zero_grad(o);
            f = quad_grad(p) + quad_grad(q);
            dlf_optim_step(o);
        }
        CHECK(th_allocs == before, "%s: 199 steps allocated %ld times", dlf_optim_kind_name((dlf_optim_kind)kind),
              th_allocs - before);
        CHECK(f < 0.05 * f0, "%s: loss %g -> %g", dlf_optim_kind_name((dlf_optim_kind)kind), f0, f);
        CHECK(o->steps == 200 && o->params[0].step == 200, "%s: step counts", dlf_optim_kind_name((dlf_optim_kind)kind));
        dlf_optim_free(o);
        dlf_tensor_free(p);
        dlf_tensor_free(q);
    }
}

static void test_optim_defaults(void)
{
    dlf_optim_cfg c;
    dlf_tensor *p = dlf_param_new(1, (const int[]){4});
    dlf_optim *o;
    int kind;
    GROUP("optimizer defaults");
    for (kind = 0; kind < DLF_OPTIM_KIND_COUNT; kind++) {
        dlf_optim_kind k = (dlf_optim_kind)kind;
        int adaptive = k == DLF_OPTIM_RMSPROP || k == DLF_OPTIM_ADAGRAD;
        float eps = k == DLF_OPTIM_ADAGRAD ? 1e-10f : k == DLF_OPTIM_LAMB ? 1e-6f : 1e-8f;
        memset(&c, 0, sizeof c);
        dlf_optim_defaults(k, &c);
        CHECK(c.lr == th_f(adaptive ? 1e-2f : 1e-3f) && c.eps == eps && c.alpha == th_f(0.99f) && c.beta1 == th_f(0.9f) &&
              c.beta2 == th_f(0.999f) && c.weight_decay == 0.0f && c.momentum == 0.0f && c.dampening == 0.0f &&
              c.nesterov == 0 && c.centered == 0 && c.lr_decay == 0.0f && c.initial_accumulator_value == 0.0f &&
              c.decoupled_wd == (k == DLF_OPTIM_ADAMW),
              "%s defaults: lr %g eps %g alpha %g betas %g %g decoupled %d", dlf_optim_kind_name(k), c.lr, c.eps,
              c.alpha, c.beta1, c.beta2, c.decoupled_wd);
        memset(&c, 0, sizeof c);
        c.lr = 0.5f; c.beta2 = 0.95f; c.eps = 1e-3f;
        dlf_optim_defaults(k, &c);
        CHECK(c.lr == 0.5f && c.beta2 == th_f(0.95f) && c.eps == th_f(1e-3f) && c.beta1 == th_f(0.9f), "%s keeps set fields",
              dlf_optim_kind_name(k));
        CHECK(dlf_optim_kind_from_name(dlf_optim_kind_name(k)) == kind, "kind name round trip %s", dlf_optim_kind_name(k));
        o = dlf_optim_create(k, &p, 1, NULL);
        memset(&c, 0, sizeof c);
        dlf_optim_defaults(k, &c);
        CHECK(o && memcmp(&o->groups[0], &c, sizeof c) == 0, "%s: create(NULL) fills the defaults", dlf_optim_kind_name(k));
        dlf_optim_free(o);
    }
    CHECK(dlf_optim_kind_from_name("adamax") == -1, "unknown kind name");
    /* which state a kind keeps, under PyTorch's names */
    o = dlf_optim_create(DLF_OPTIM_ADAM, &p, 1, NULL);
    CHECK(o->params[0].state[0] && o->params[0].state[1] && !o->params[0].state[2] &&
          strcmp(dlf_optim_state_name(DLF_OPTIM_ADAM, 1), "exp_avg_sq") == 0, "adam: exp_avg, exp_avg_sq");
    dlf_optim_free(o);
    o = dlf_optim_create(DLF_OPTIM_RMSPROP, &p, 1, NULL);
    CHECK(o->params[0].state[0] && !o->params[0].state[1] && !o->params[0].state[2], "rmsprop: square_avg only");
    dlf_optim_free(o);
    memset(&c, 0, sizeof c);
    c.momentum = 0.9f; c.centered = 1;
    o = dlf_optim_create(DLF_OPTIM_RMSPROP, &p, 1, &c);
    CHECK(o->params[0].state[0] && o->params[0].state[1] && o->params[0].state[2] &&
          strcmp(dlf_optim_state_name(DLF_OPTIM_RMSPROP, 2), "grad_avg") == 0, "centered rmsprop with momentum: 3 buffers");
    dlf_optim_free(o);
    memset(&c, 0, sizeof c);
    c.initial_accumulator_value = 0.25f;
    o = dlf_optim_create(DLF_OPTIM_ADAGRAD, &p, 1, &c);
    CHECK(o->params[0].state[0][3] == 0.25f, "adagrad: sum starts at initial_accumulator_value");
    dlf_optim_free(o);
    memset(&c, 0, sizeof c);
    c.beta1 = 1.0f;
    EXPECT_PANIC(dlf_optim_create(DLF_OPTIM_ADAM, &p, 1, &c), "must be < 1");
    dlf_tensor_free(p);
}

static void test_optim_groups_and_decay(void)
{
    dlf_tensor *a = dlf_param_new(1, (const int[]){3}), *b = dlf_param_new(1, (const int[]){3});
    dlf_params pl;
    dlf_optim_cfg g[2];
    dlf_optim *o;
    int i, ok = 1;
    GROUP("optimizer groups and weight decay");
    dlf_params_init(&pl);
    dlf_params_add(&pl, a, "a", 0);
    dlf_params_add(&pl, b, "b", 0);
    pl.items[1].group = 1;
    memset(g, 0, sizeof g);
    g[0].lr = 0.1f;
    g[1].lr = 0.01f;
    o = dlf_optim_create_groups(DLF_OPTIM_SGD, &pl, g, 2);
    dlf_fill(a, 1.0f);
    dlf_fill(b, 1.0f);
    for (i = 0; i < 3; i++) a->grad[i] = b->grad[i] = 1.0f;
    dlf_optim_step(o);
    for (i = 0; i < 3; i++) ok &= a->data[i] == th_f(1.0f - th_f(0.1f) * 1.0f) && b->data[i] == th_f(1.0f - th_f(0.01f) * 1.0f);
    CHECK(ok, "two groups, two lrs: a %g, b %g", a->data[0], b->data[0]);
    CHECK(strcmp(o->params[1].name, "b") == 0 && o->params[1].group == 1, "names and groups kept");
    dlf_optim_free(o);
    {   /* weight decay with g = 0, p = 1, lr 0.01, wd 0.1:
           Adam L2: g = wd p = 0.1 and Adam normalizes it: p moves by ~lr (0.01);
           decoupled: p *= 1 - lr wd, then a zero Adam step: p moves by lr wd p (0.001) */
        dlf_optim_cfg c;
        dlf_optim *l2, *dec, *adamw;
        dlf_tensor *p1 = dlf_param_new(1, (const int[]){2}), *p2 = dlf_param_new(1, (const int[]){2}),
                   *p3 = dlf_param_new(1, (const int[]){2});
        memset(&c, 0, sizeof c);
        c.lr = 0.01f;
        c.weight_decay = 0.1f;
        l2 = dlf_optim_create(DLF_OPTIM_ADAM, &p1, 1, &c);
        adamw = dlf_optim_create(DLF_OPTIM_ADAMW, &p3, 1, &c);
        c.decoupled_wd = 1;
        dec = dlf_optim_create(DLF_OPTIM_ADAM, &p2, 1, &c);
        dlf_fill(p1, 1.0f); dlf_fill(p2, 1.0f); dlf_fill(p3, 1.0f);
        dlf_optim_step(l2); dlf_optim_step(dec); dlf_optim_step(adamw);
        CHECK(fabsf(p1->data[0] - (1.0f - 0.01f)) < 1e-6f, "Adam, L2 decay: p moves by ~lr*sign: %.7f", p1->data[0]);
        CHECK(fabsf(p2->data[0] - (1.0f - 0.001f)) < 1e-7f, "Adam, decoupled decay: p moves by lr*wd*p: %.7f", p2->data[0]);
        CHECK(same_bits(p2->data, p3->data, 2), "AdamW = Adam with decoupled_wd, bit for bit");
        dlf_optim_free(l2); dlf_optim_free(dec); dlf_optim_free(adamw);
        /* SGD (no momentum): L2 and decoupled decay are the same step (to rounding) */
        memset(&c, 0, sizeof c);
        c.lr = 0.1f;
        c.weight_decay = 0.05f;
        l2 = dlf_optim_create(DLF_OPTIM_SGD, &p1, 1, &c);
        c.decoupled_wd = 1;
        dec = dlf_optim_create(DLF_OPTIM_SGD, &p2, 1, &c);
        dlf_fill(p1, 2.0f); dlf_fill(p2, 2.0f);
        dlf_zero_grad(p1); dlf_zero_grad(p2);
        dlf_optim_step(l2); dlf_optim_step(dec);
        CHECK(fabsf(p1->data[0] - 2.0f * (1.0f - 0.005f)) < 1e-6f && fabsf(p1->data[0] - p2->data[0]) < 1e-6f,
              "SGD: L2 %.7f and decoupled %.7f decay agree", p1->data[0], p2->data[0]);
        l2->groups[0].lr = 0.0f;
        dec->groups[0].lr = 0.0f;
        {
            float k1 = p1->data[0], k2 = p2->data[0];
            dlf_optim_step(l2); dlf_optim_step(dec);
            CHECK(p1->data[0] == k1 && p2->data[0] == k2, "lr 0: no decay either way");
        }
        dlf_optim_free(l2); dlf_optim_free(dec);
        dlf_tensor_free(p1); dlf_tensor_free(p2); dlf_tensor_free(p3);
    }
    {   /* gradient clipping */
        float total;
        int j;
        a->grad[0] = 3.0f; a->grad[1] = 4.0f; a->grad[2] = 0.0f;
        b->grad[0] = 12.0f; b->grad[1] = 0.0f; b->grad[2] = 0.0f;
        {
            dlf_tensor *ab[2];
            ab[0] = a; ab[1] = b;
            total = dlf_clip_grad_norm(ab, 2, 20.0f);
            CHECK(total == 13.0f && a->grad[1] == 4.0f && b->grad[0] == 12.0f, "norm 13 below 20: returned %g, unchanged", total);
            total = dlf_clip_grad_norm(ab, 2, 6.5f);
        }
        CHECK(total == 13.0f, "returns the norm before clipping: %g", total);
        CHECK(fabsf(a->grad[0] - 1.5f) < 1e-5f && fabsf(a->grad[1] - 2.0f) < 1e-5f && fabsf(b->grad[0] - 6.0f) < 1e-5f,
              "clipped to norm 6.5: %g %g %g", a->grad[0], a->grad[1], b->grad[0]);
        o = dlf_optim_create_groups(DLF_OPTIM_SGD, &pl, g, 2);
        total = dlf_optim_clip_grad_norm(o, 1.0f);
        {
            double sq = 0.0;
            for (j = 0; j < 3; j++) sq += (double)a->grad[j] * a->grad[j] + (double)b->grad[j] * b->grad[j];
            CHECK(fabsf(total - 6.5f) < 1e-4f && fabs(sqrt(sq) - 1.0) < 1e-5, "optim clip: norm %g -> %g", total, sqrt(sq));
        }
        dlf_optim_free(o);
    }
    dlf_params_free(&pl);
    dlf_tensor_free(a);
    dlf_tensor_free(b);
}

static dlf_tensor *ce(dlf_tape *t, dlf_tensor *logits, dlf_tensor *y) { return dlf_cross_entropy(t, logits, y); }

static void test_fit_restores_lr(void)
{
    tiny d;
    mode_model m;
    dlf_loader_cfg lc;
    dlf_loader *l;
    dlf_tape t;
    dlf_params pl;
    dlf_optim_cfg g[2];
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    float acc0, acc, loss;
    int rc, i, peak = 0;
    GROUP("fit");
    tiny_make(&d);
    mode_model_make(&m, 8);
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 16;
    lc.shuffle = 1;
    lc.seed = 2;
    l = dlf_loader_create(&d.ds, &lc);
    dlf_params_init(&pl);
    dlf_seq_collect(&m.s, &pl);
    dlf_params_group_no_decay(&pl, 1);
    memset(g, 0, sizeof g);
    g[0].lr = 0.1f; g[0].momentum = 0.9f;
    g[1].lr = 0.01f; g[1].momentum = 0.9f;
    m.opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &pl, g, 2);
    dlf_tape_init(&t);
    dlf_tape_set_training(&t, 0);
    acc0 = dlf_evaluate(&t, mode_forward, &m, l, NULL);
    m.calls = m.eval_calls = 0;
    memset(&fc, 0, sizeof fc);
    fc.epochs = 4;
    fc.lr = 0.2f;
    fc.sched = DLF_SCHED_ONE_CYCLE;
    fc.quiet = 1;
    rc = dlf_fit(&t, mode_forward, &m, ce, m.opt, l, NULL, &fc, &rep);
    CHECK(rc == DLF_OK && rep.steps == 24, "fit: rc %d, %d steps", rc, rep.steps);
    CHECK(m.opt->groups[0].lr == th_f(0.1f) && m.opt->groups[1].lr == th_f(0.01f), "group lrs restored after a one-cycle fit: %g %g",
          m.opt->groups[0].lr, m.opt->groups[1].lr);
    CHECK(t.training == 0, "fit restores the tape's mode");
    for (i = 0; i < 24; i++) if (m.lr0[i] > m.lr0[peak]) peak = i;
    CHECK(fabsf(m.lr0[peak] - 0.2f) < 1e-3f && fabsf(m.lr1[peak] - 0.02f) < 1e-4f && m.lr0[0] < 0.01f,
          "one-cycle: group 0 peaks at cfg.lr %g, group 1 keeps its ratio (%g); starts at %g", m.lr0[peak], m.lr1[peak], m.lr0[0]);
    for (i = 0, rc = 1; i < 24; i++) rc &= fabsf(m.lr1[i] - 0.1f * m.lr0[i]) <= 1e-6f * m.lr0[i];
    CHECK(rc, "group 1's lr is a tenth of group 0's at every step");
    CHECK(m.eval_calls == 0, "fit trains in training mode");
    acc = dlf_evaluate(&t, mode_forward, &m, l, &loss);
    CHECK(acc > 0.9f && acc > acc0, "the tiny problem is learned: accuracy %g -> %g", acc0, acc);
    dlf_tape_destroy(&t);
    dlf_optim_free(m.opt);
    dlf_params_free(&pl);
    dlf_loader_free(l);
    dlf_seq_free(&m.s);
}

/* An MLP with BatchNorm: Linear(6,8) BN(8) ReLU Linear(8,3), trained with any optimizer. */
typedef struct ck_run { dlf_seq s; dlf_params pl; dlf_optim *o; dlf_tape t; } ck_run;

static void ck_open(ck_run *r, dlf_optim_kind kind, uint64_t seed)
{
    dlf_rng rng;
    dlf_optim_cfg c;
    dlf_rng_seed(&rng, seed);
    dlf_seq_init(&r->s);
    dlf_seq_add(&r->s, dlf_layer_linear(6, 8, 1, &rng));
    dlf_seq_add(&r->s, dlf_layer_batchnorm(8));
    dlf_seq_add(&r->s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(&r->s, dlf_layer_linear(8, 3, 1, &rng));
    dlf_params_init(&r->pl);
    dlf_seq_collect(&r->s, &r->pl);
    memset(&c, 0, sizeof c);
    c.lr = 0.01f;
    c.weight_decay = 1e-3f;
    if (kind == DLF_OPTIM_RMSPROP) { c.momentum = 0.5f; c.centered = 1; }
    if (kind == DLF_OPTIM_SGD) c.momentum = 0.9f;
    r->o = dlf_optim_create_groups(kind, &r->pl, &c, 1);
    dlf_tape_init(&r->t);
}

static void ck_close(ck_run *r)
{
    dlf_tape_destroy(&r->t);
    dlf_optim_free(r->o);
    dlf_params_free(&r->pl);
    dlf_seq_free(&r->s);
}

static void ck_step(ck_run *r, dlf_tensor *x, dlf_tensor *y)
{
    dlf_tape_reset(&r->t);
    dlf_backward(&r->t, dlf_cross_entropy(&r->t, dlf_seq_forward(&r->t, &r->s, x), y));
    dlf_optim_step(r->o);
    dlf_optim_zero_grad(r->o);
}

static int ck_same(const ck_run *a, const ck_run *b)
{
    int i, k, same = a->pl.n == b->pl.n && a->o->n_params == b->o->n_params && a->o->steps == b->o->steps;
    for (i = 0; same && i < a->pl.n; i++) same &= same_bits(a->pl.items[i].t->data, b->pl.items[i].t->data, a->pl.items[i].t->size);
    for (i = 0; same && i < a->o->n_params; i++) {
        same &= a->o->params[i].step == b->o->params[i].step;
        for (k = 0; k < DLF_OPTIM_MAX_STATE; k++)
            if (a->o->params[i].state[k])
                same &= b->o->params[i].state[k] && same_bits(a->o->params[i].state[k], b->o->params[i].state[k], a->o->params[i].p->size);
    }
    return same;
}

static void test_checkpoint_optim(void)
{
    static const dlf_optim_kind kinds[3] = {DLF_OPTIM_ADAM, DLF_OPTIM_RMSPROP, DLF_OPTIM_LAMB};
    const char *path = "build/test_norm_ckpt.safetensors";
    dlf_tensor *x = randn(2, (const int[]){10, 6}, 0.0f, 1.0f), *y = dlf_tensor_new1(10);
    int i, k;
    GROUP("checkpoint optimizers");
    for (i = 0; i < 10; i++) y->data[i] = (float)(i % 3);
    for (k = 0; k < 3; k++) {
        ck_run a, b;
        const char *meta[2] = {"epoch", "1"};
        const char *kn = dlf_optim_kind_name(kinds[k]);
        int s, rc;
        ck_open(&a, kinds[k], 1);
        ck_open(&b, kinds[k], 99);   /* a different init: the file must overwrite all of it */
        for (s = 0; s < 3; s++) ck_step(&a, x, y);
        rc = dlf_ckpt_save_training(path, &a.pl, a.o, meta, 1);
        CHECK(rc == DLF_OK, "%s: save_training: %s", kn, dlf_last_error());
        rc = dlf_ckpt_load_training(path, &b.pl, b.o);
        CHECK(rc == DLF_OK, "%s: load_training: %s", kn, dlf_last_error());
        CHECK(ck_same(&a, &b), "%s: parameters, buffers and optimizer state come back bit for bit", kn);
        ck_step(&a, x, y);
        ck_step(&b, x, y);
        CHECK(ck_same(&a, &b), "%s: one more step from the loaded state equals one more step of the original", kn);
        CHECK(a.s.layers[1].bn.num_batches_tracked->data[0] == 4.0f && b.s.layers[1].bn.num_batches_tracked->data[0] == 4.0f,
              "%s: num_batches_tracked restored and counting", kn);
        if (kinds[k] == DLF_OPTIM_ADAM) {
            ck_run c;
            dlf_params part;
            int j;
            /* Adam state into an SGD optimizer: refused, both kinds named */
            ck_open(&c, DLF_OPTIM_SGD, 5);
            rc = dlf_ckpt_load_training(path, &c.pl, c.o);
            CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "adam") && strstr(dlf_last_error(), "sgd") &&
                  strstr(dlf_last_error(), path), "adam file into sgd: %s", dlf_last_error());
            {   /* the names the state is stored under */
                dlf_ckpt ck;
                dlf_ckpt_init(&ck);
                dlf_ckpt_load(&ck, path);
                CHECK(dlf_safetensors_find(&ck.file, "optim.exp_avg_sq.3.weight") && dlf_safetensors_find(&ck.file, "optim.step.1.bias") &&
                      dlf_safetensors_find(&ck.file, "1.running_var") && !dlf_safetensors_find(&ck.file, "optim.exp_avg.1.running_var") &&
                      dlf_ckpt_get_meta(&ck, "optim.kind") && strcmp(dlf_ckpt_get_meta(&ck, "optim.kind"), "adam") == 0,
                      "PyTorch's state keys, no state for buffers, optim.kind = adam");
                dlf_ckpt_free(&ck);
            }
            /* a file without a buffer: loading it fails and names the buffer */
            dlf_params_init(&part);
            for (j = 0; j < a.pl.n; j++)
                if (strcmp(a.pl.items[j].name, "1.running_var") != 0)
                    dlf_params_add(&part, a.pl.items[j].t, a.pl.items[j].name, a.pl.items[j].is_buffer);
            CHECK(dlf_ckpt_save_training(path, &part, NULL, NULL, 0) == DLF_OK, "save without running_var");
            rc = dlf_ckpt_load_training(path, &c.pl, c.o);
            CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "\"1.running_var\""), "missing buffer named: %s",
                  dlf_last_error());
            dlf_params_free(&part);
            /* weights only (no optimizer in the file): the optimizer is left as it is */
            CHECK(dlf_ckpt_save_training(path, &a.pl, NULL, NULL, 0) == DLF_OK &&
                  dlf_ckpt_load_training(path, &c.pl, c.o) == DLF_OK && c.o->steps == 0, "a weights-only file loads");
            ck_close(&c);
        }
        ck_close(&a);
        ck_close(&b);
    }
    remove(path);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

/* ---------------------------------------------------------------- 5. RunningBatchNorm trains */

static void test_rbn_trains(void)
{
    dlf_seq s;
    dlf_rng r;
    dlf_tape t;
    dlf_optim *o;
    dlf_optim_cfg c;
    dlf_params pl;
    dlf_tensor *x = dlf_tensor_new2(64, 8), *y = dlf_tensor_new2(64, 1), *xb = dlf_tensor_new2(2, 8), *yb = dlf_tensor_new2(2, 1);
    double first = 0.0, last = 0.0, eval0, eval1;
    int i, j, step, steps = 640, nan = 0;
    GROUP("running batchnorm trains at batch 2");
    dlf_rng_seed(&r, 21);
    dlf_fill_normal(x, &r, 0.0f, 1.0f);
    for (i = 0; i < 64; i++) {   /* a smooth target of the inputs */
        float v = 0.0f;
        for (j = 0; j < 8; j++) v += (j % 2 ? 0.5f : -0.3f) * x->data[i * 8 + j];
        y->data[i] = tanhf(v) + 0.1f * x->data[i * 8];
    }
    dlf_seq_init(&s);
    dlf_seq_add(&s, dlf_layer_linear(8, 16, 1, &r));
    dlf_seq_add(&s, dlf_layer_running_batchnorm(16));
    dlf_seq_add(&s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(&s, dlf_layer_linear(16, 1, 1, &r));
    dlf_params_init(&pl);
    dlf_seq_collect(&s, &pl);
    CHECK(pl.n == 12 && strcmp(pl.items[2].name, "1.mults") == 0 && pl.items[4].is_buffer && pl.items[2].no_decay,
          "RunningBatchNorm in a list: 1.mults (no decay), 1.sums (a buffer)");
    memset(&c, 0, sizeof c);
    c.lr = 0.02f;
    c.momentum = 0.9f;
    o = dlf_optim_create_groups(DLF_OPTIM_SGD, &pl, &c, 1);
    dlf_tape_init(&t);
    dlf_tape_set_training(&t, 0);
    dlf_tape_set_grad(&t, 0);
    eval0 = dlf_mse_loss(&t, dlf_seq_forward(&t, &s, x), y)->data[0];
    dlf_tape_set_grad(&t, 1);
    dlf_tape_set_training(&t, 1);
    for (step = 0; step < steps; step++) {
        dlf_tensor *loss;
        int k = (step * 2) % 64;
        memcpy(xb->data, x->data + k * 8, 16 * sizeof(float));
        memcpy(yb->data, y->data + k, 2 * sizeof(float));
        dlf_tape_reset(&t);
        loss = dlf_mse_loss(&t, dlf_seq_forward(&t, &s, xb), yb);
        nan |= !(loss->data[0] == loss->data[0]);
        if (step < 64) first += loss->data[0];
        if (step >= steps - 64) last += loss->data[0];
        dlf_backward(&t, loss);
        dlf_optim_step(o);
        dlf_optim_zero_grad(o);
    }
    dlf_tape_set_training(&t, 0);
    dlf_tape_reset(&t);
    eval1 = dlf_mse_loss(&t, dlf_seq_forward(&t, &s, x), y)->data[0];
    printf("  running batchnorm, batch 2: mean loss of the first 64 steps %.4f, last 64 %.4f; eval %.4f -> %.4f\n",
           first / 64, last / 64, eval0, eval1);
    CHECK(!nan && last < 0.5 * first, "training loss falls: %g -> %g", first / 64, last / 64);
    /* before any step the running statistics are 0/0, so eval mode gives NaN there (as the course's
       RunningBatchNorm does; relu used to turn that NaN into 0): the untrained loss to beat is the
       first steps' training loss */
    CHECK(eval1 < 0.5 * first / 64, "eval loss over all 64 falls below half the first steps' loss: %g -> %g",
          first / 64, eval1);
    CHECK(s.layers[1].rbn.step->data[0] == (float)steps && s.layers[1].rbn.batch->data[0] == 2.0f * steps,
          "step %g, batch %g", s.layers[1].rbn.step->data[0], s.layers[1].rbn.batch->data[0]);
    {   /* eval mode does not move the running sums */
        float sums0 = s.layers[1].rbn.sums->data[3];
        dlf_tape_reset(&t);
        dlf_seq_forward(&t, &s, x);
        CHECK(s.layers[1].rbn.sums->data[3] == sums0 && s.layers[1].rbn.step->data[0] == (float)steps, "eval updates nothing");
    }
    dlf_tape_destroy(&t);
    dlf_optim_free(o);
    dlf_params_free(&pl);
    dlf_seq_free(&s);
    dlf_tensor_free(x); dlf_tensor_free(y); dlf_tensor_free(xb); dlf_tensor_free(yb);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--print") == 0) {
        dlf_seq s;
        dlf_rng r;
        dlf_rng_seed(&r, 1);
        build_cnn(&s, &r);
        dlf_seq_print(&s);
        dlf_seq_free(&s);
        return 0;
    }
    th_init();
    dlf_rng_seed(&g_rng, 2026);
    gradcheck_batchnorm();
    gradcheck_norms();
    gradcheck_running_batchnorm();
    gradcheck_dropout();
    test_batchnorm_vs_naive();
    test_batchnorm_behaviour();
    test_running_batchnorm_fresh_eval();
    test_layer_norms_behaviour();
    test_dropout_behaviour();
    test_no_alloc_step();
    test_collect_names();
    test_seq_print(argv[0]);
    test_evaluate_mode();
    test_optim_descends();
    test_optim_defaults();
    test_optim_groups_and_decay();
    test_fit_restores_lr();
    test_checkpoint_optim();
    test_rbn_trains();
    TEST_MAIN_END();
}
