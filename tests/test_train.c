/* test_train.c - stage 11 (SGD through dlf_optim) and stage 14 (the training loop).

   SGD is checked against torch.optim.SGD's update written out by hand, step by step,
   for every combination of momentum, dampening, weight decay and Nesterov. Then an
   integration test trains a 784-50-10 MLP on the committed MNIST subset
   (tests/data: 1000 train, 500 test images) and must reach 85% test accuracy.
   That model is built from stage 3-5 ops only (matmul, add, relu, a log-softmax
   made of max/exp/sum/log), so it tests the loop, not the layers. A second one
   trains the course's CNN from the real layers (conv2d, global pool, linear,
   cross-entropy) on the same subset, with the same bar. */
#define DLF_IMPLEMENTATION
#include "harness.h"

/* torch.optim.SGD for one scalar, in double:
     g += wd p;  b = first ? g : mu b + (1 - tau) g;  g = nesterov ? g + mu b : b;  p -= lr g */
static double ref_sgd(double p, double g0, int steps, double lr, double mu, double tau, double wd, int nesterov)
{
    double b = 0;
    int s;
    for (s = 0; s < steps; s++) {
        double g = g0 + wd * p;
        if (mu != 0) {
            b = s == 0 ? g : mu * b + (1 - tau) * g;
            g = nesterov ? g + mu * b : b;
        }
        p -= lr * g;
    }
    return p;
}

/* The update of the old dlf_sgd_step, float operation for float operation (the same
   order as torch.optim.SGD): dlf_optim's SGD must give these exact bits. */
static float ref_sgd_float(float p, float g0, int steps, float lr, float mu, float tau, float wd, int nesterov)
{
    float b = 0.0f;
    int s;
    for (s = 0; s < steps; s++) {
        float g = g0;
        if (wd != 0.0f) g = g + wd * p;
        if (mu != 0.0f) {
            b = s == 0 ? g : mu * b + (1.0f - tau) * g;
            g = nesterov ? g + mu * b : b;
        }
        p = p - lr * g;
    }
    return p;
}

static void test_sgd(void)
{
    static const float mus[] = {0.0f, 0.9f}, taus[] = {0.0f, 0.1f}, wds[] = {0.0f, 0.01f};
    dlf_tensor *p = dlf_param_new(1, (const int[]){3}), *q = dlf_param_new(1, (const int[]){2});
    dlf_tensor *ps[2];
    dlf_optim_cfg cfg;
    dlf_optim *o;
    int a, b, c, nest, s, i;
    GROUP("sgd");
    ps[0] = p;
    ps[1] = q;
    /* hand-computed numbers (lr 0.1, mu 0.9, tau 0.1, wd 0.01, p0 1, g 0.5):
       step 1: g = 0.51, b = 0.51, p = 0.949;
       step 2: g = 0.50949, b = 0.9*0.51 + 0.9*0.50949 = 0.917541, p = 0.8572459 */
    memset(&cfg, 0, sizeof cfg);
    cfg.lr = 0.1f; cfg.momentum = 0.9f; cfg.dampening = 0.1f; cfg.weight_decay = 0.01f;
    o = dlf_optim_create(DLF_OPTIM_SGD, ps, 1, &cfg);
    dlf_fill(p, 1.0f);
    for (s = 0; s < 2; s++) {
        dlf_fill(p, p->data[0]);
        for (i = 0; i < 3; i++) p->grad[i] = 0.5f;
        dlf_optim_step(o);
        CHECK(fabsf(p->data[0] - (s == 0 ? 0.949f : 0.8572459f)) < 1e-6f, "step %d: p %.7f", s + 1, p->data[0]);
    }
    CHECK(fabsf(o->params[0].state[0][0] - 0.917541f) < 1e-6f, "momentum buffer %.7f", o->params[0].state[0][0]);
    dlf_optim_free(o);
    /* Nesterov, lr 0.1, mu 0.9: p = 0.905, then 0.7695 */
    memset(&cfg, 0, sizeof cfg);
    cfg.lr = 0.1f; cfg.momentum = 0.9f; cfg.nesterov = 1;
    o = dlf_optim_create(DLF_OPTIM_SGD, ps, 1, &cfg);
    dlf_fill(p, 1.0f);
    for (s = 0; s < 2; s++) {
        for (i = 0; i < 3; i++) p->grad[i] = 0.5f;
        dlf_optim_step(o);
        CHECK(fabsf(p->data[0] - (s == 0 ? 0.905f : 0.7695f)) < 1e-6f, "nesterov step %d: p %.7f", s + 1, p->data[0]);
    }
    dlf_optim_free(o);
    /* every combination, 5 steps, against the double reference; q has no grad on
       step 1 so its buffer starts one step later, as in PyTorch */
    for (a = 0; a < 2; a++) for (b = 0; b < 2; b++) for (c = 0; c < 2; c++) for (nest = 0; nest < 2; nest++) {
        double want_p, want_q;
        if (nest && (mus[a] == 0.0f || taus[b] != 0.0f)) continue;
        memset(&cfg, 0, sizeof cfg);
        cfg.lr = 0.05f; cfg.momentum = mus[a]; cfg.dampening = taus[b]; cfg.weight_decay = wds[c]; cfg.nesterov = nest;
        o = dlf_optim_create(DLF_OPTIM_SGD, ps, 2, &cfg);
        dlf_fill(p, 2.0f);
        dlf_fill(q, -1.0f);
        for (s = 0; s < 5; s++) {
            for (i = 0; i < 3; i++) p->grad[i] = 0.3f;
            if (s == 0) { float *g = q->grad; q->grad = NULL; dlf_optim_step(o); q->grad = g; continue; }
            for (i = 0; i < 2; i++) q->grad[i] = -0.7f;
            dlf_optim_step(o);
        }
        want_p = ref_sgd(2.0, 0.3, 5, 0.05, mus[a], taus[b], wds[c], nest);
        want_q = ref_sgd(-1.0, -0.7, 4, 0.05, mus[a], taus[b], wds[c], nest);
        CHECK(fabs(p->data[2] - want_p) < 1e-5 && fabs(q->data[1] - want_q) < 1e-5,
              "mu %g tau %g wd %g nesterov %d: p %.7f (ref %.7f) q %.7f (ref %.7f)", mus[a], taus[b], wds[c], nest,
              p->data[2], want_p, q->data[1], want_q);
        {
            float fp = ref_sgd_float(2.0f, 0.3f, 5, 0.05f, mus[a], taus[b], wds[c], nest);
            float fq = ref_sgd_float(-1.0f, -0.7f, 4, 0.05f, mus[a], taus[b], wds[c], nest);
            CHECK(memcmp(&p->data[2], &fp, sizeof fp) == 0 && memcmp(&q->data[1], &fq, sizeof fq) == 0,
                  "mu %g tau %g wd %g nesterov %d: bit-identical to the old SGD: p %a (%a) q %a (%a)",
                  mus[a], taus[b], wds[c], nest, p->data[2], fp, q->data[1], fq);
        }
        CHECK(o->steps == 5, "step count %d", o->steps);
        dlf_optim_zero_grad(o);
        CHECK(p->grad[0] == 0.0f && q->grad[1] == 0.0f, "zero_grad");
        dlf_optim_free(o);
    }
    /* defaults: lr 1e-3, no buffers without momentum */
    o = dlf_optim_create(DLF_OPTIM_SGD, ps, 2, NULL);
    CHECK(o->groups[0].lr == th_f(1e-3f) && o->params[0].state[0] == NULL && o->params[1].state[0] == NULL,
          "default lr %g, buffers %p %p", o->groups[0].lr, (void *)o->params[0].state[0], (void *)o->params[1].state[0]);
    dlf_optim_free(o);
    memset(&cfg, 0, sizeof cfg);
    cfg.nesterov = 1;
    EXPECT_PANIC(dlf_optim_create(DLF_OPTIM_SGD, ps, 2, &cfg), "nesterov needs momentum > 0");
    dlf_tensor_free(p);
    dlf_tensor_free(q);
}

static void test_sched(void)
{
    int total = 100;
    float lr0, lrp, lrend;
    GROUP("schedule");
    CHECK(dlf_sched_lr(DLF_SCHED_CONSTANT, 0.1f, 0, 37, total) == th_f(0.1f), "constant");
    lr0 = dlf_sched_lr(DLF_SCHED_ONE_CYCLE, 0.1f, 0.3f, 0, total);
    /* as OneCycleLR: the peak at step pct*total - 1, lr/25/1e4 at the last step */
    lrp = dlf_sched_lr(DLF_SCHED_ONE_CYCLE, 0.1f, 0.3f, 29, total);
    lrend = dlf_sched_lr(DLF_SCHED_ONE_CYCLE, 0.1f, 0.3f, 99, total);
    CHECK(fabsf(lr0 - 0.004f) < 1e-7f && fabsf(lrp - 0.1f) < 1e-7f && fabsf(lrend - 4e-7f) < 1e-12f,
          "one-cycle: start %g peak %g end %g", lr0, lrp, lrend);
}

/* The model: 784-50-10 MLP. x (N,1,28,28) -> logits (N,10). */
typedef struct mlp {
    dlf_tensor *w1;          /* (784, 50) */
    dlf_tensor *b1;          /* (50) */
    dlf_tensor *w2;          /* (50, 10) */
    dlf_tensor *b2;          /* (10) */
} mlp;

static dlf_tensor *mlp_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    mlp *m = (mlp *)user;
    int flat[2];
    dlf_tensor *h;
    flat[0] = x->shape[0];
    flat[1] = 784;
    h = dlf_reshape(t, x, 2, flat);
    h = dlf_relu(t, dlf_add(t, dlf_matmul(t, h, m->w1), m->b1));
    return dlf_add(t, dlf_matmul(t, h, m->w2), m->b2);
}

/* Cross-entropy from stage 3 ops: log p = z - max - log(sum(exp(z - max))),
   loss = -mean_i sum_j onehot_ij log p_ij. */
static dlf_tensor *ce_loss(dlf_tape *t, dlf_tensor *z, dlf_tensor *target)
{
    int N = z->shape[0], C = z->shape[1], i, shape[2];
    dlf_tensor *m, *zs, *lse, *logp, *onehot;
    shape[0] = N;
    shape[1] = C;
    onehot = dlf_tape_tensor(t, 2, shape);
    for (i = 0; i < N; i++) onehot->data[i * C + (int)target->data[i]] = 1.0f;
    m = dlf_clone(t, dlf_max(t, z, 1, 1));  /* a constant shift: no gradient needed */
    zs = dlf_sub(t, z, m);
    lse = dlf_log(t, dlf_sum(t, dlf_exp(t, zs), 1, 1));
    logp = dlf_sub(t, zs, lse);
    return dlf_mul_scalar(t, dlf_sum_all(t, dlf_mul(t, logp, onehot)), -1.0f / (float)N);
}

/* The committed subset: 1000 train images (all used for training), 500 test. */
static int load_subset(dlf_mnist *data)
{
    dlf_mnist_cfg mc;
    memset(&mc, 0, sizeof mc);
    mc.prefix = "mnist-sub-";
    mc.test_split = "test";
    mc.n_valid = -1;
    return dlf_mnist_load(data, "tests/data", &mc);
}

static void test_mnist_subset(void)
{
    dlf_mnist data;
    dlf_loader *train, *test;
    dlf_optim_cfg sc;
    dlf_optim *opt;
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    dlf_tape tape;
    dlf_rng rng;
    mlp m;
    dlf_tensor *params[4];
    float acc, loss, acc0;
    double t0;
    int rc;
    GROUP("mnist subset");
    rc = load_subset(&data);
    CHECK(rc == DLF_OK, "load: %s", dlf_last_error());
    if (rc != DLF_OK) return;
    dlf_rng_seed(&rng, 1);
    m.w1 = dlf_param_new(2, (const int[]){784, 50});
    m.b1 = dlf_param_new(1, (const int[]){50});
    m.w2 = dlf_param_new(2, (const int[]){50, 10});
    m.b2 = dlf_param_new(1, (const int[]){10});
    dlf_fill_normal(m.w1, &rng, 0.0f, sqrtf(2.0f / 784.0f));  /* Kaiming: ReLU follows */
    dlf_fill_normal(m.w2, &rng, 0.0f, sqrtf(1.0f / 50.0f));
    params[0] = m.w1; params[1] = m.b1; params[2] = m.w2; params[3] = m.b2;
    dlf_mnist_loaders(&data, 32, 100, 7, &train, NULL, &test);
    memset(&sc, 0, sizeof sc);
    sc.lr = 0.02f;
    sc.momentum = 0.9f;
    opt = dlf_optim_create(DLF_OPTIM_SGD, params, 4, &sc);
    dlf_tape_init(&tape);
    acc0 = dlf_evaluate(&tape, mlp_forward, &m, test, &loss);
    CHECK(acc0 < 0.3f && loss > 1.5f, "untrained: accuracy %.3f loss %.3f", acc0, loss);
    memset(&fc, 0, sizeof fc);
    fc.epochs = 12;
    fc.sched = DLF_SCHED_ONE_CYCLE;
    fc.quiet = 1;
    t0 = dlf_seconds();
    rc = dlf_fit(&tape, mlp_forward, &m, ce_loss, opt, train, test, &fc, &rep);
    CHECK(rc == DLF_OK, "fit: %s", dlf_last_error());
    acc = dlf_evaluate(&tape, mlp_forward, &m, test, &loss);
    printf("  mnist subset MLP: %d steps in %.2fs, train loss %.9g, test loss %.9g, test accuracy %.4f\n",
           rep.steps, dlf_seconds() - t0, rep.train_loss, loss, acc);
    CHECK(acc >= 0.85f, "test accuracy %.4f < 0.85", acc);
    CHECK(fabsf(acc - rep.valid_acc) < 1e-6f, "dlf_fit's last evaluation %.4f matches %.4f", rep.valid_acc, acc);
    CHECK(rep.steps == 12 * 32 && train->epoch == 12, "steps %d epochs %d", rep.steps, train->epoch);
    /* after the first step the arena stops growing: one more epoch's peak stays put */
    {
        size_t peak = tape.peak_bytes;
        fc.epochs = 1;
        dlf_fit(&tape, mlp_forward, &m, ce_loss, opt, train, NULL, &fc, &rep);
        CHECK(tape.peak_bytes == peak, "arena peak grew from %zu to %zu", peak, tape.peak_bytes);
    }
    dlf_tape_destroy(&tape);
    dlf_optim_free(opt);
    dlf_loader_free(train);
    dlf_loader_free(test);
    dlf_tensor_free(m.w1); dlf_tensor_free(m.b1); dlf_tensor_free(m.w2); dlf_tensor_free(m.b2);
    dlf_mnist_free(&data);
}


/* The course's stride-2 CNN from the real layers (stage 6-8): conv 1->8 5x5, 8->16,
   16->32, 32->32 3x3, all stride 2, ReLU, global average pool, Linear 32->10. */
typedef struct cnn {
    dlf_tensor *w[4];        /* (K,C,R,S) conv weights */
    dlf_tensor *b[4];        /* (K) conv biases */
    dlf_tensor *fc_w;        /* (10, 32) */
    dlf_tensor *fc_b;        /* (10) */
} cnn;

static dlf_tensor *cnn_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    cnn *m = (cnn *)user;
    int i;
    for (i = 0; i < 4; i++) x = dlf_relu(t, dlf_conv2d(t, x, m->w[i], m->b[i], 2, i == 0 ? 2 : 1));
    return dlf_linear(t, dlf_global_avgpool(t, x), m->fc_w, m->fc_b);
}

static void test_cnn_subset(void)
{
    static const int K[4] = {8, 16, 32, 32}, C[4] = {1, 8, 16, 32}, R[4] = {5, 3, 3, 3};
    dlf_mnist data;
    dlf_loader *train, *test;
    dlf_optim_cfg sc;
    dlf_optim *opt;
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    dlf_tape tape;
    dlf_rng rng;
    cnn m;
    dlf_tensor *params[10];
    float acc, loss;
    int i, rc;
    GROUP("mnist subset cnn");
    rc = load_subset(&data);
    CHECK(rc == DLF_OK, "load: %s", dlf_last_error());
    if (rc != DLF_OK) return;
    dlf_rng_seed(&rng, 1);
    for (i = 0; i < 4; i++) {
        int shape[4];
        shape[0] = K[i]; shape[1] = C[i]; shape[2] = R[i]; shape[3] = R[i];
        m.w[i] = dlf_param_new(4, shape);
        m.b[i] = dlf_param_new(1, &K[i]);
        dlf_init_kaiming_normal(m.w[i], &rng, 0.0f, DLF_FAN_IN);
        params[2 * i] = m.w[i];
        params[2 * i + 1] = m.b[i];
    }
    m.fc_w = dlf_param_new(2, (const int[]){10, 32});
    m.fc_b = dlf_param_new(1, (const int[]){10});
    dlf_init_torch_default(m.fc_w, m.fc_b, &rng);
    params[8] = m.fc_w;
    params[9] = m.fc_b;
    dlf_mnist_loaders(&data, 32, 250, 3, &train, NULL, &test);
    memset(&sc, 0, sizeof sc);
    sc.lr = 0.1f;
    sc.momentum = 0.9f;
    opt = dlf_optim_create(DLF_OPTIM_SGD, params, 10, &sc);
    dlf_tape_init(&tape);
    memset(&fc, 0, sizeof fc);
    fc.epochs = 15;
    fc.sched = DLF_SCHED_ONE_CYCLE;
    fc.quiet = 1;
    rc = dlf_fit(&tape, cnn_forward, &m, dlf_cross_entropy, opt, train, NULL, &fc, &rep);
    CHECK(rc == DLF_OK, "fit: %s", dlf_last_error());
    acc = dlf_evaluate(&tape, cnn_forward, &m, test, &loss);
    printf("  mnist subset CNN: %d steps in %.2fs, train loss %.9g, test loss %.9g, test accuracy %.4f\n",
           rep.steps, rep.train_seconds, rep.train_loss, loss, acc);
    CHECK(acc >= 0.85f, "test accuracy %.4f < 0.85", acc);
    dlf_tape_destroy(&tape);
    dlf_optim_free(opt);
    dlf_loader_free(train);
    dlf_loader_free(test);
    for (i = 0; i < 10; i++) dlf_tensor_free(params[i]);
    dlf_mnist_free(&data);
}

int main(void)
{
    th_init();
    test_sgd();
    test_sched();
    test_mnist_subset();
    test_cnn_subset();
    TEST_MAIN_END();
}
