/* test_ref_norm_optim.c - stages 9, 10 and 11 against PyTorch, from tests/ref/norm_optim/.

   tools/gen_reference.py (`make reference`, Debian's python3-torch) wrote one safetensors file
   per case there and their list, tests/ref/norm_optim/INDEX. This program needs no PyTorch. By
   the metadata "op" of each case it
     * layernorm, groupnorm, instancenorm, dropout, dropout2d: builds the op on a tape from
       in.0, in.1, ... (the graph-op format of tests/test_reference.c), compares out, seeds the
       backward with grad.out and compares every grad.in.<i>; dropout replays PyTorch's mask
       (in.1 keep) through dlf_dropout_mask;
     * batchnorm_steps, running_batchnorm_steps: a dlf layer (dlf_layer_batchnorm /
       dlf_layer_running_batchnorm) loaded from init.<name>, then each training step and one
       eval step: out, grad.x, grad.<param> and every buffer after the step;
     * optim: every dlf_optim kind with two parameter groups, 10 steps of the stored gradients,
       each parameter after each step and the optimizer state after the last one;
     * clip_grad_norm: dlf_clip_grad_norm against torch.nn.utils.clip_grad_norm_;
     * mnist_bn_cnn_train: the course's CNN with BatchNorm, 10 AdamW steps: losses, every weight
       and buffer after them, and eval-mode logits.
   Every comparison is |dlf - ref| <= atol + rtol*|ref| with the case's own atol and rtol, and
   each case prints one line with its max differences. A case without a runner fails.

   Usage: test_ref_norm_optim [substring]    (DLF_REF_DIR overrides tests/ref/norm_optim) */
#define DLF_IMPLEMENTATION
#include "harness.h"
#include <stdlib.h>

#define MAX_IN 8
#define MAX_NAMES 64

typedef struct rcase {
    const char *name;
    dlf_safetensors st;
    dlf_tensor *in[MAX_IN];
    int n_in;
    float atol, rtol;
    double worst;             /* largest max diff of the case */
    int compared;             /* comparisons made */
    char line[2048];
} rcase;

static const char *meta_str(rcase *c, const char *key)
{
    const char *v = dlf_safetensors_meta(&c->st, key);
    if (!v) {
        CHECK(0, "norm_optim %s: metadata \"%s\" missing", c->name, key);
        return "0";
    }
    return v;
}
static int meta_int(rcase *c, const char *key) { return atoi(meta_str(c, key)); }
static float meta_float(rcase *c, const char *key) { return strtof(meta_str(c, key), NULL); }

static const dlf_st_tensor *find(rcase *c, const char *name) { return dlf_safetensors_find(&c->st, name); }

/* The fixture tensor `name`, which must exist (a missing one is a failure). */
static const dlf_st_tensor *need(rcase *c, const char *name)
{
    const dlf_st_tensor *s = find(c, name);
    CHECK(s != NULL, "norm_optim %s: the fixture has no tensor \"%s\"", c->name, name);
    return s;
}

static int same_shape(const dlf_tensor *t, const dlf_st_tensor *s)
{
    int i;
    if (!s || t->ndim != s->ndim) return 0;
    for (i = 0; i < s->ndim; i++)
        if (t->shape[i] != s->shape[i]) return 0;
    return 1;
}

/* got (n floats) against the fixture tensor `what`; n must equal its size. Appends
   "what D" to the case's line. */
static void compare(rcase *c, const char *what, const float *got, int n)
{
    const dlf_st_tensor *ref = need(c, what);
    char label[256];
    double d;
    size_t len = strlen(c->line);
    if (!ref) return;
    if (!got || ref->size != n) {
        CHECK(0, "norm_optim %s: %s: dlf has %d values, PyTorch %d", c->name, what, got ? n : -1, ref->size);
        return;
    }
    d = dlf_max_abs_diff_n(got, ref->data, n);
    if (d > c->worst || d != d) c->worst = d;
    c->compared++;
    if (len + 64 < sizeof c->line)
        snprintf(c->line + len, sizeof c->line - len, "%s%s %.3g", len ? ", " : "", what, d);
    snprintf(label, sizeof label, "norm_optim %s: %s", c->name, what);
    CHECK_CLOSE(got, ref->data, n, c->atol, c->rtol, label);
}

/* ---- graph ops: in.0 ... -> out, grad.in.<i> ---------------------------------------- */

static dlf_tensor *in_or_null(rcase *c, int i) { return i < c->n_in ? c->in[i] : NULL; }

static dlf_tensor *op_layernorm(dlf_tape *t, rcase *c)
{
    return dlf_layernorm(t, c->in[0], meta_int(c, "d"), in_or_null(c, 1), in_or_null(c, 2), meta_float(c, "eps"));
}
static dlf_tensor *op_groupnorm(dlf_tape *t, rcase *c)
{
    return dlf_groupnorm(t, c->in[0], meta_int(c, "groups"), in_or_null(c, 1), in_or_null(c, 2), meta_float(c, "eps"));
}
static dlf_tensor *op_instancenorm(dlf_tape *t, rcase *c)
{
    return dlf_instancenorm(t, c->in[0], in_or_null(c, 1), in_or_null(c, 2), meta_float(c, "eps"));
}
static dlf_tensor *op_dropout(dlf_tape *t, rcase *c) { return dlf_dropout_mask(t, c->in[0], c->in[1], meta_float(c, "p")); }
/* the layer route too: a LayerNorm layer holding the fixture's weight and bias */
static dlf_tensor *op_layernorm_layer(dlf_tape *t, rcase *c)
{
    dlf_layer l;
    memset(&l, 0, sizeof l);
    l.kind = DLF_LAYER_LAYERNORM;
    l.d = meta_int(c, "d");
    l.eps = meta_float(c, "eps");
    l.weight = in_or_null(c, 1);
    l.bias = in_or_null(c, 2);
    return dlf_layer_forward(t, &l, c->in[0]);
}
static dlf_tensor *op_groupnorm_layer(dlf_tape *t, rcase *c)
{
    dlf_layer l;
    memset(&l, 0, sizeof l);
    l.kind = DLF_LAYER_GROUPNORM;
    l.groups = meta_int(c, "groups");
    l.eps = meta_float(c, "eps");
    l.weight = in_or_null(c, 1);
    l.bias = in_or_null(c, 2);
    return dlf_layer_forward(t, &l, c->in[0]);
}

typedef dlf_tensor *(*build_fn)(dlf_tape *t, rcase *c);

static void run_graph(rcase *c, build_fn build, const char *variant)
{
    dlf_tape tape;
    dlf_tensor *out;
    char name[32], what[64];
    int i;
    for (c->n_in = 0; c->n_in < MAX_IN; c->n_in++) {
        const dlf_st_tensor *s;
        snprintf(name, sizeof name, "in.%d", c->n_in);
        if (!(s = find(c, name))) break;
        c->in[c->n_in] = dlf_tensor_from(s->ndim, s->shape, s->data);
        snprintf(name, sizeof name, "grad.in.%d", c->n_in);
        if (find(c, name)) dlf_tensor_requires_grad(c->in[c->n_in]);
    }
    dlf_tape_init(&tape);
    out = build(&tape, c);
    if (!out || !same_shape(out, need(c, "out"))) {
        CHECK(0, "norm_optim %s: no output, or not PyTorch's shape", c->name);
    } else {
        snprintf(what, sizeof what, "out");
        compare(c, what, out->data, out->size);
        if (need(c, "grad.out") && find(c, "grad.out")->size == out->size) {
            dlf_backward_seed(&tape, out, find(c, "grad.out")->data);
            for (i = 0; i < c->n_in; i++) {
                snprintf(name, sizeof name, "grad.in.%d", i);
                if (!find(c, name)) continue;
                compare(c, name, c->in[i]->grad, c->in[i]->size);
            }
        }
    }
    (void)variant;
    dlf_tape_destroy(&tape);
    for (i = 0; i < c->n_in; i++) dlf_tensor_free(c->in[i]);
    c->n_in = 0;
}

/* ---- BatchNorm and RunningBatchNorm through steps ------------------------------------
   init.<name>, then per step s (1..steps, then "eval"): x.<s>, grad.out.<s> -> out.<s>,
   grad.x.<s>, grad.<param>.<s>, <buffer>.<s>. */

static void run_module_steps(rcase *c, int running)
{
    int C = meta_int(c, "C"), steps = meta_int(c, "steps"), s, i, n, is_buf[DLF_LAYER_MAX_TENSORS];
    dlf_layer l = running ? dlf_layer_running_batchnorm(C) : dlf_layer_batchnorm(C);
    dlf_tensor *ts[DLF_LAYER_MAX_TENSORS];
    const char *names[DLF_LAYER_MAX_TENSORS];
    char key[128];
    dlf_tape tape;
    if (running) {
        l.rbn.momentum = meta_float(c, "momentum");
        l.rbn.eps = meta_float(c, "eps");
    } else {
        l.bn.momentum = meta_float(c, "momentum");
        l.bn.eps = meta_float(c, "eps");
    }
    n = dlf_layer_tensors(&l, ts, names, is_buf);
    {   /* strict: the file's init.* names are exactly the layer's */
        int n_init = 0;
        for (i = 0; i < c->st.n; i++) n_init += strncmp(c->st.tensors[i].name, "init.", 5) == 0;
        CHECK(n_init == n, "norm_optim %s: PyTorch's module has %d tensors, dlf's layer %d", c->name, n_init, n);
    }
    for (i = 0; i < n; i++) {
        const dlf_st_tensor *v;
        snprintf(key, sizeof key, "init.%s", names[i]);
        v = need(c, key);
        if (!v || v->size != ts[i]->size) {
            CHECK(0, "norm_optim %s: %s does not fit dlf's %s", c->name, key, names[i]);
            dlf_layer_free(&l);
            return;
        }
        memcpy(ts[i]->data, v->data, sizeof(float) * (size_t)v->size);
    }
    dlf_tape_init(&tape);
    for (s = 1; s <= steps + 1; s++) {
        char tag[16];
        const dlf_st_tensor *xs, *g;
        dlf_tensor *x, *out;
        if (s <= steps) snprintf(tag, sizeof tag, "%d", s);
        else snprintf(tag, sizeof tag, "eval");
        snprintf(key, sizeof key, "x.%s", tag);
        xs = need(c, key);
        snprintf(key, sizeof key, "grad.out.%s", tag);
        g = need(c, key);
        if (!xs || !g) break;
        dlf_tape_reset(&tape);
        dlf_tape_set_training(&tape, s <= steps);
        for (i = 0; i < n; i++) if (!is_buf[i]) dlf_zero_grad(ts[i]);
        x = dlf_tensor_from(xs->ndim, xs->shape, xs->data);
        dlf_tensor_requires_grad(x);
        out = dlf_layer_forward(&tape, &l, x);
        snprintf(key, sizeof key, "out.%s", tag);
        compare(c, key, out ? out->data : NULL, x->size);
        if (out) {
            dlf_backward_seed(&tape, out, g->data);
            snprintf(key, sizeof key, "grad.x.%s", tag);
            compare(c, key, x->grad, x->size);
        }
        for (i = 0; i < n; i++) {
            if (is_buf[i]) snprintf(key, sizeof key, "%s.%s", names[i], tag);
            else snprintf(key, sizeof key, "grad.%s.%s", names[i], tag);
            compare(c, key, is_buf[i] ? ts[i]->data : ts[i]->grad, ts[i]->size);
        }
        dlf_tensor_free(x);
    }
    dlf_tape_destroy(&tape);
    dlf_layer_free(&l);
}
static void run_bn_steps(rcase *c) { run_module_steps(c, 0); }
static void run_rbn_steps(rcase *c) { run_module_steps(c, 1); }

/* ---- optimizers ------------------------------------------------------------------------
   param.<i>, grad.<s>.<i>, param.<s>.<i>, state.<key>.<i>; metadata kind, groups, g<g>.<field>. */

static void run_optim(rcase *c)
{
    int n = meta_int(c, "n_params"), steps = meta_int(c, "steps"), n_groups = meta_int(c, "n_groups");
    int kind = dlf_optim_kind_from_name(meta_str(c, "kind")), group_of[MAX_IN], i, s, k, g, n_state = 0, n_cmp = 0;
    dlf_optim_cfg cfg[DLF_OPTIM_MAX_GROUPS];
    dlf_tensor *ps[MAX_IN];
    dlf_params pl;
    dlf_optim *o;
    char key[96];
    const char *gs = meta_str(c, "groups");
    CHECK(kind >= 0, "norm_optim %s: dlf has no optimizer \"%s\"", c->name, meta_str(c, "kind"));
    if (kind < 0 || n > MAX_IN || n_groups > DLF_OPTIM_MAX_GROUPS) return;
    for (i = 0; i < n; i++) {   /* "0,1,0" */
        group_of[i] = atoi(gs);
        gs = strchr(gs, ',') ? strchr(gs, ',') + 1 : gs;
    }
    memset(cfg, 0, sizeof cfg);
    for (g = 0; g < n_groups; g++) {
#define GF(field) (snprintf(key, sizeof key, "g%d." #field, g), meta_float(c, key))
        cfg[g].lr = GF(lr);
        cfg[g].weight_decay = GF(weight_decay);
        cfg[g].decoupled_wd = (int)GF(decoupled_wd);
        cfg[g].momentum = GF(momentum);
        cfg[g].dampening = GF(dampening);
        cfg[g].nesterov = (int)GF(nesterov);
        cfg[g].alpha = GF(alpha);
        cfg[g].centered = (int)GF(centered);
        cfg[g].beta1 = GF(beta1);
        cfg[g].beta2 = GF(beta2);
        cfg[g].eps = GF(eps);
        cfg[g].lr_decay = GF(lr_decay);
        cfg[g].initial_accumulator_value = GF(initial_accumulator_value);
#undef GF
    }
    dlf_params_init(&pl);
    for (i = 0; i < n; i++) {
        const dlf_st_tensor *p0;
        snprintf(key, sizeof key, "param.%d", i);
        p0 = need(c, key);
        ps[i] = dlf_param_new(p0 ? p0->ndim : 0, p0 ? p0->shape : NULL);
        if (p0) memcpy(ps[i]->data, p0->data, sizeof(float) * (size_t)p0->size);
        snprintf(key, sizeof key, "p%d", i);
        dlf_params_add(&pl, ps[i], key, 0);
        pl.items[i].group = group_of[i];
    }
    o = dlf_optim_create_groups((dlf_optim_kind)kind, &pl, cfg, n_groups);
    CHECK(o != NULL, "norm_optim %s: optimizer created: %s", c->name, dlf_last_error());
    for (s = 1; o && s <= steps; s++) {
        for (i = 0; i < n; i++) {
            const dlf_st_tensor *gr;
            snprintf(key, sizeof key, "grad.%d.%d", s, i);
            if ((gr = need(c, key)) && gr->size == ps[i]->size)
                memcpy(ps[i]->grad, gr->data, sizeof(float) * (size_t)gr->size);
        }
        dlf_optim_step(o);
        for (i = 0; i < n; i++) {
            snprintf(key, sizeof key, "param.%d.%d", s, i);
            compare(c, key, ps[i]->data, ps[i]->size);
        }
    }
    /* the state, by PyTorch's names: every buffer dlf keeps is in the file and the other way round */
    for (i = 0; i < c->st.n; i++) n_state += strncmp(c->st.tensors[i].name, "state.", 6) == 0;
    for (i = 0; o && i < n; i++) {
        CHECK(o->params[i].step == steps, "norm_optim %s: parameter %d took %d steps", c->name, i, o->params[i].step);
        for (k = 0; k < DLF_OPTIM_MAX_STATE; k++) {
            if (!o->params[i].state[k]) continue;
            snprintf(key, sizeof key, "state.%s.%d", dlf_optim_state_name((dlf_optim_kind)kind, k), i);
            compare(c, key, o->params[i].state[k], ps[i]->size);
            n_cmp++;
        }
    }
    CHECK(n_cmp == n_state, "norm_optim %s: dlf keeps %d state buffers, PyTorch %d", c->name, n_cmp, n_state);
    dlf_optim_free(o);
    dlf_params_free(&pl);
    for (i = 0; i < n; i++) dlf_tensor_free(ps[i]);
}

/* ---- clip_grad_norm: grad.<i> -> total, clipped.<i> --------------------------------------- */

static void run_clip(rcase *c)
{
    int n = meta_int(c, "n_params"), i;
    dlf_tensor *ps[MAX_IN] = {NULL};
    float total;
    char key[64];
    if (n > MAX_IN) n = MAX_IN;
    for (i = 0; i < n; i++) {
        const dlf_st_tensor *g;
        snprintf(key, sizeof key, "grad.%d", i);
        g = need(c, key);
        ps[i] = dlf_param_new(g ? g->ndim : 0, g ? g->shape : NULL);
        if (g) memcpy(ps[i]->grad, g->data, sizeof(float) * (size_t)g->size);
    }
    total = dlf_clip_grad_norm(ps, n, meta_float(c, "max_norm"));
    compare(c, "total", &total, 1);
    for (i = 0; i < n; i++) {
        snprintf(key, sizeof key, "clipped.%d", i);
        compare(c, key, ps[i]->grad, ps[i]->size);
        dlf_tensor_free(ps[i]);
    }
}

/* ---- the course's MNIST CNN with BatchNorm, 10 AdamW steps --------------------------------
   conv_layer(ni, nf, ks, stride 2, bn=True) = Conv2d without bias, BatchNorm2d, ReLU; four of them
   are modules 0..11, then AdaptiveAvgPool2d (12), Flatten (13), Linear(32, 10) (14). */

static void bn_cnn(dlf_seq *s, dlf_rng *r)
{
    static const int ch[5] = {1, 8, 16, 32, 32}, ks[4] = {5, 3, 3, 3};
    int i;
    dlf_seq_init(s);
    for (i = 0; i < 4; i++) {
        dlf_seq_add(s, dlf_layer_conv2d(ch[i], ch[i + 1], ks[i], 2, ks[i] / 2, 0, r));
        dlf_seq_add(s, dlf_layer_batchnorm(ch[i + 1]));
        dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU));
    }
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_FLATTEN));
    dlf_seq_add(s, dlf_layer_linear(32, 10, 1, r));
}

static void run_mnist_bn(rcase *c)
{
    dlf_seq seq;
    dlf_params pl;
    dlf_rng r;
    dlf_optim_cfg cfg;
    dlf_optim *o = NULL;
    dlf_tape tape;
    const dlf_st_tensor *X = need(c, "x"), *Y = need(c, "y");
    float losses[64] = {0};
    char key[128];
    int steps = meta_int(c, "steps"), i, s, n_init = 0, ok = 1;
    dlf_rng_seed(&r, 5);
    bn_cnn(&seq, &r);
    dlf_params_init(&pl);
    dlf_seq_collect(&seq, &pl);
    for (i = 0; i < c->st.n; i++) n_init += strncmp(c->st.tensors[i].name, "init.", 5) == 0;
    CHECK(n_init == pl.n, "norm_optim %s: PyTorch's state_dict has %d entries, dlf's parameter list %d",
          c->name, n_init, pl.n);
    for (i = 0; i < pl.n; i++) {
        const dlf_st_tensor *v;
        snprintf(key, sizeof key, "init.%s", pl.items[i].name);
        v = find(c, key);
        if (!v || !same_shape(pl.items[i].t, v)) {
            CHECK(0, "norm_optim %s: no %s with dlf's shape", c->name, key);
            ok = 0;
            continue;
        }
        memcpy(pl.items[i].t->data, v->data, sizeof(float) * (size_t)v->size);
    }
    if (!X || !Y || steps < 1 || steps > 64 || X->ndim != 4 || X->shape[0] % steps != 0 || Y->size != X->shape[0]) ok = 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.lr = meta_float(c, "lr");
    cfg.weight_decay = meta_float(c, "weight_decay");
    if (ok) o = dlf_optim_create_groups(DLF_OPTIM_ADAMW, &pl, &cfg, 1);
    dlf_tape_init(&tape);
    for (s = 0; o && s < steps; s++) {
        int B = X->shape[0] / steps, xshape[4];
        dlf_tensor *x, *y, *loss;
        xshape[0] = B; xshape[1] = X->shape[1]; xshape[2] = X->shape[2]; xshape[3] = X->shape[3];
        x = dlf_tensor_from(4, xshape, X->data + (size_t)s * (X->size / steps));
        y = dlf_tensor_from(1, &B, Y->data + (size_t)s * B);
        dlf_tape_reset(&tape);
        dlf_optim_zero_grad(o);
        loss = dlf_cross_entropy(&tape, dlf_seq_forward(&tape, &seq, x), y);
        losses[s] = loss->data[0];
        dlf_backward(&tape, loss);
        dlf_optim_step(o);
        dlf_tensor_free(x);
        dlf_tensor_free(y);
    }
    if (o) {
        int B = X->shape[0] / steps, xshape[4];
        dlf_tensor *x, *logits;
        compare(c, "losses", losses, steps);
        printf("norm_optim %s: loss by step (dlf / PyTorch):", c->name);
        for (s = 0; s < steps; s++) printf(" %.5f/%.5f", losses[s], find(c, "losses")->data[s]);
        printf("\n");
        for (i = 0; i < pl.n; i++) {
            snprintf(key, sizeof key, "final.%s", pl.items[i].name);
            compare(c, key, pl.items[i].t->data, pl.items[i].t->size);
        }
        xshape[0] = B; xshape[1] = X->shape[1]; xshape[2] = X->shape[2]; xshape[3] = X->shape[3];
        x = dlf_tensor_from(4, xshape, X->data);
        dlf_tape_reset(&tape);
        dlf_tape_set_training(&tape, 0);
        dlf_tape_set_grad(&tape, 0);
        logits = dlf_seq_forward(&tape, &seq, x);
        compare(c, "eval_logits", logits->data, logits->size);
        dlf_tensor_free(x);
    }
    dlf_tape_destroy(&tape);
    dlf_optim_free(o);
    dlf_params_free(&pl);
    dlf_seq_free(&seq);
}

/* ---- the table ------------------------------------------------------------------------ */

typedef void (*run_fn)(rcase *c);
static const struct { const char *op; const char *variant; build_fn build; run_fn run; } RUNNERS[] = {
    {"layernorm", "", op_layernorm, NULL}, {"layernorm", "layer", op_layernorm_layer, NULL},
    {"groupnorm", "", op_groupnorm, NULL}, {"groupnorm", "layer", op_groupnorm_layer, NULL},
    {"instancenorm", "", op_instancenorm, NULL},
    {"dropout", "", op_dropout, NULL}, {"dropout2d", "", op_dropout, NULL},
    {"batchnorm_steps", "", NULL, run_bn_steps}, {"running_batchnorm_steps", "", NULL, run_rbn_steps},
    {"optim", "", NULL, run_optim}, {"clip_grad_norm", "", NULL, run_clip},
    {"mnist_bn_cnn_train", "", NULL, run_mnist_bn},
};
#define N_RUNNERS ((int)(sizeof RUNNERS / sizeof RUNNERS[0]))

static void run_case(const char *dir, const char *name)
{
    static rcase c;
    char path[1024];
    const char *op, *v;
    int k;
    volatile int ran = 0;  /* volatile: it lives across setjmp */
    memset(&c, 0, sizeof c);
    c.name = name;
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    if (dlf_safetensors_load(&c.st, path) != DLF_OK) {
        CHECK(0, "norm_optim %s: cannot load: %s", name, dlf_last_error());
        return;
    }
    op = dlf_safetensors_meta(&c.st, "op");
    v = dlf_safetensors_meta(&c.st, "atol");
    c.atol = v ? strtof(v, NULL) : 1e-6f;
    v = dlf_safetensors_meta(&c.st, "rtol");
    c.rtol = v ? strtof(v, NULL) : 1e-5f;
    for (k = 0; k < N_RUNNERS; k++) {
        int failed_before = th_failed;
        if (!op || strcmp(RUNNERS[k].op, op) != 0) continue;
        c.line[0] = 0;
        c.worst = 0.0;
        c.compared = 0;
        th_armed = 1;
        if (setjmp(th_jmp) == 0) {
            if (RUNNERS[k].build) run_graph(&c, RUNNERS[k].build, RUNNERS[k].variant);
            else RUNNERS[k].run(&c);
            th_armed = 0;
        } else {
            th_armed = 0;
            CHECK(0, "norm_optim %s: panicked: %s", name, th_msg);
        }
        CHECK(c.compared > 0, "norm_optim %s: nothing was compared", name);
        printf("ref %s%s%s%s: %d compared, max diff %.3g (atol %g rtol %g)%s | %s\n", name,
               RUNNERS[k].variant[0] ? " [" : "", RUNNERS[k].variant, RUNNERS[k].variant[0] ? "]" : "",
               c.compared, c.worst, c.atol, c.rtol, th_failed > failed_before ? "  FAILED" : "", c.line);
        ran++;
    }
    if (!ran) CHECK(0, "norm_optim %s: no runner for op \"%s\" in tests/test_ref_norm_optim.c", name, op ? op : "(none)");
    dlf_safetensors_free(&c.st);
}

int main(int argc, char **argv)
{
    const char *dir = getenv("DLF_REF_DIR") ? getenv("DLF_REF_DIR") : "tests/ref/norm_optim";
    const char *filter = argc > 1 ? argv[1] : NULL;
    int n;
    th_init();
    GROUP("norm_optim");
    n = th_run_index(dir, filter, run_case);
    CHECK(n > 0, "no norm/optim reference cases ran");
    printf("%d norm/optim reference cases\n", n);
    TEST_MAIN_END();
}
