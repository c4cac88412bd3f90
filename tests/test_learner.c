/* test_learner.c - stage 14: the Learner, its callbacks, resumable runs, the LR finder.

   A tiny problem (4x4 "images" of 3 classes, a 16-8-3 MLP with dropout, so the tape's
   rng matters) runs in milliseconds. Checked: the order callbacks run in; every cancel
   point against the event sequence it must produce (notebook 05b's semantics, written
   out in dlf.h above struct dlf_callback); validation weighted by batch size; the
   scheduler, recorder, early stopping, save-best and clipping callbacks; a run stopped
   mid-epoch (and at an epoch end) and resumed in fresh objects ends with the same bits
   as an uninterrupted one (memcmp of weights, optimizer state, recorder); the LR finder
   leaves weights, optimizer state and loader bit-identical; no allocation per step.
   Last, the example program mnist_mlp on the committed MNIST subset: a run stopped with
   --stop-at and continued with --resume writes the same weights as one run through. */
#define TH_COUNT_ALLOCS
#define DLF_IMPLEMENTATION
#include "harness.h"

#define NTR 40   /* training items: 5 batches of 8 */
#define NVA 10   /* validation items: batches of 4, 4, 2 */

typedef struct net {
    dlf_tensor *w1, *b1, *w2, *b2;
    dlf_params pl;
    float drop;
} net;

static void net_init(net *m, uint64_t seed)
{
    dlf_rng r;
    dlf_rng_seed(&r, seed);
    m->w1 = dlf_param_new(2, (const int[]){8, 16});
    m->b1 = dlf_param_new(1, (const int[]){8});
    m->w2 = dlf_param_new(2, (const int[]){3, 8});
    m->b2 = dlf_param_new(1, (const int[]){3});
    dlf_fill_normal(m->w1, &r, 0.0f, 0.35f);
    dlf_fill_normal(m->w2, &r, 0.0f, 0.5f);
    dlf_params_init(&m->pl);
    dlf_params_add(&m->pl, m->w1, "0.weight", 0);
    dlf_params_add(&m->pl, m->b1, "0.bias", 0);
    dlf_params_add(&m->pl, m->w2, "2.weight", 0);
    dlf_params_add(&m->pl, m->b2, "2.bias", 0);
    m->drop = 0.2f;
}

static void net_free(net *m)
{
    dlf_tensor_free(m->w1); dlf_tensor_free(m->b1); dlf_tensor_free(m->w2); dlf_tensor_free(m->b2);
    dlf_params_free(&m->pl);
}

static dlf_tensor *net_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    net *m = (net *)user;
    int shape[2];
    dlf_tensor *h;
    shape[0] = x->shape[0];
    shape[1] = 16;
    h = dlf_relu(t, dlf_linear(t, dlf_reshape(t, x, 2, shape), m->w1, m->b1));
    if (m->drop > 0.0f) h = dlf_dropout(t, h, m->drop);
    return dlf_linear(t, h, m->w2, m->b2);
}

/* Class c has bright pixels in its own third of the image, plus noise. */
static uint8_t img[NTR + NVA][16], lab[NTR + NVA];
static dlf_dataset ds_train, ds_valid;

static void make_data(void)
{
    dlf_rng r;
    int i, j;
    dlf_rng_seed(&r, 42);
    for (i = 0; i < NTR + NVA; i++) {
        lab[i] = (uint8_t)(i % 3);
        for (j = 0; j < 16; j++) {
            int v = (int)(dlf_rng_uniform(&r) * 120.0f) + (j * 3 / 16 == lab[i] ? 120 : 0);
            img[i][j] = (uint8_t)v;
        }
    }
    memset(&ds_train, 0, sizeof ds_train);
    ds_train.images = &img[0][0];
    ds_train.labels = lab;
    ds_train.n = NTR;
    ds_train.rows = ds_train.cols = 4;
    ds_train.n_classes = 3;
    ds_valid = ds_train;
    ds_valid.images = &img[NTR][0];
    ds_valid.labels = lab + NTR;
    ds_valid.n = NVA;
}

/* Everything one run needs, built the same way each time. */
typedef struct run {
    net m;
    dlf_tape tape;
    dlf_optim *opt;
    dlf_loader *train, *valid;
    dlf_learner l;
} run;

static void run_init(run *r, dlf_optim_kind kind, int train_bs, uint64_t seed)
{
    dlf_loader_cfg lc;
    dlf_optim_cfg oc;
    net_init(&r->m, seed);
    dlf_tape_init(&r->tape);
    dlf_tape_seed(&r->tape, 5);
    memset(&oc, 0, sizeof oc);
    oc.lr = kind == DLF_OPTIM_SGD ? 0.1f : 0.01f;
    if (kind == DLF_OPTIM_SGD) oc.momentum = 0.9f;
    r->opt = dlf_optim_create_groups(kind, &r->m.pl, &oc, 1);
    memset(&lc, 0, sizeof lc);
    lc.batch_size = train_bs;
    lc.shuffle = 1;
    lc.seed = 9;
    r->train = dlf_loader_create(&ds_train, &lc);
    lc.batch_size = 4;
    lc.shuffle = 0;
    r->valid = dlf_loader_create(&ds_valid, &lc);
    dlf_learner_init(&r->l, &r->tape, net_forward, &r->m, dlf_cross_entropy, r->opt, r->train, r->valid);
    r->l.params = &r->m.pl;
    dlf_learner_add_metric(&r->l, "accuracy", dlf_metric_accuracy);
}

static void run_free(run *r)
{
    dlf_learner_free(&r->l);
    dlf_loader_free(r->train);
    dlf_loader_free(r->valid);
    dlf_optim_free(r->opt);
    dlf_tape_destroy(&r->tape);
    net_free(&r->m);
}

/* An SVG the Learner wrote: well-formed (xmllint) and renderable (rsvg-convert), each
   checked where the tool is installed and reported as SKIP where it is not. */
static void check_svg(const char *path)
{
    char cmd[1200];
    FILE *f = fopen(path, "rb");
    char head[8] = {0};
    CHECK(f && fread(head, 1, 5, f) == 5 && (!memcmp(head, "<?xml", 5) || !memcmp(head, "<svg", 4)), "%s: no SVG", path);
    if (f) fclose(f);
    if (system("command -v xmllint >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "xmllint --noout '%s'", path);
        CHECK(system(cmd) == 0, "%s: xmllint says it is not well-formed", path);
    } else {
        printf("SKIP [svg] %s: xmllint (Debian libxml2-utils) is not installed\n", path);
    }
    if (system("command -v rsvg-convert >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "rsvg-convert -o '%s.png' '%s' && test -s '%s.png'", path, path, path);
        CHECK(system(cmd) == 0, "%s: rsvg-convert did not render it", path);
    } else {
        printf("SKIP [svg] %s: rsvg-convert (Debian librsvg2-bin) is not installed\n", path);
    }
}

/* ------------------------------------------------------------------ event logs */

static const char *const ev_code[DLF_EV_COUNT] = {"BF", "BE", "BB", "AP", "AL", "AB", "AS", "AX", "BV", "AE", "AF",
                                                  "CB", "CE", "CF"};

typedef struct logger {
    dlf_callback cb;
    char *log;               /* shared buffer */
    const char *tag;         /* "" or a letter to tell callbacks apart */
    /* cancel: return code at event ev when (epoch, step-in-train or iter-in-valid) match */
    int cancel_ev, cancel_code, cancel_epoch, cancel_iter, cancel_valid;
} logger;

static int logger_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    logger *g = (logger *)cb;
    char item[16];
    int batch_ev = ev == DLF_EV_BEGIN_BATCH || ev == DLF_EV_AFTER_PRED || ev == DLF_EV_AFTER_LOSS ||
                   ev == DLF_EV_AFTER_BACKWARD || ev == DLF_EV_AFTER_STEP || ev == DLF_EV_AFTER_BATCH ||
                   ev == DLF_EV_AFTER_CANCEL_BATCH;
    snprintf(item, sizeof item, "%s%s%s ", g->tag, batch_ev && !l->in_train ? "v" : "", ev_code[ev]);
    strcat(g->log, item);
    if ((int)ev == g->cancel_ev && l->epoch == g->cancel_epoch && (!batch_ev || (l->in_train != g->cancel_valid &&
        (ev == DLF_EV_AFTER_BATCH ? l->iter - 1 : l->iter) == g->cancel_iter)))
        return g->cancel_code;
    return DLF_CB_OK;
}

static void logger_init(logger *g, char *log, const char *tag, int order)
{
    memset(g, 0, sizeof *g);
    g->cb.name = tag[0] ? tag : "logger";
    g->cb.order = order;
    g->cb.on = logger_on;
    g->log = log;
    g->tag = tag;
    g->cancel_ev = -1;
}

static void test_order(void)
{
    static char log[8192];
    logger a, b, c;
    run r;
    GROUP("callback order");
    make_data();
    run_init(&r, DLF_OPTIM_SGD, 20, 1);
    log[0] = 0;
    logger_init(&a, log, "a", 5);
    logger_init(&b, log, "b", -1);
    logger_init(&c, log, "c", 5);
    dlf_learner_add_cb(&r.l, &a.cb);
    dlf_learner_add_cb(&r.l, &b.cb);
    dlf_learner_add_cb(&r.l, &c.cb);
    CHECK(r.l.n_cbs == 4 && r.l.cbs[0] == &r.l.train_eval && r.l.cbs[1] == &b.cb && r.l.cbs[2] == &a.cb &&
          r.l.cbs[3] == &c.cb, "sorted by order, stable: %d callbacks", r.l.n_cbs);
    dlf_learner_fit(&r.l, 1);
    CHECK(strncmp(log, "bBF aBF cBF bBE aBE cBE bBB aBB cBB bAP aAP cAP ", 48) == 0, "log starts: %.60s", log);
    /* only one callback from here on: the whole sequence of a 2-batch epoch (+3 valid batches) */
    dlf_learner_remove_cb(&r.l, &a.cb);
    dlf_learner_remove_cb(&r.l, &c.cb);
    log[0] = 0;
    dlf_learner_fit(&r.l, 1);
    CHECK(strcmp(log, "bBF bBE bBB bAP bAL bAB bAS bAX bBB bAP bAL bAB bAS bAX bBV bvBB bvAP bvAL bvAX bvBB bvAP "
                      "bvAL bvAX bvBB bvAP bvAL bvAX bAE bAF ") == 0, "one epoch: %s", log);
    CHECK(r.l.step == 2 && r.opt->steps == 4, "steps %ld, optimizer steps %d", r.l.step, r.opt->steps);
    CHECK(strcmp(dlf_event_name(DLF_EV_AFTER_CANCEL_FIT), "after_cancel_fit") == 0 &&
          strcmp(dlf_event_name(DLF_EV_BEGIN_FIT), "begin_fit") == 0, "event names");
    run_free(&r);
}

/* One fit of 2 epochs (2 training batches of 20, 3 validation batches) cancelled at
   (ev, epoch, iter) with code; the log of events and the optimizer steps taken. */
static void cancel_case(const char *what, int ev, int code, int epoch, int iter, int valid, const char *want,
                        int want_steps)
{
    static char log[8192];
    logger g;
    run r;
    run_init(&r, DLF_OPTIM_SGD, 20, 1);
    log[0] = 0;
    logger_init(&g, log, "", 0);
    g.cancel_ev = ev;
    g.cancel_code = code;
    g.cancel_epoch = epoch;
    g.cancel_iter = iter;
    g.cancel_valid = valid;
    dlf_learner_add_cb(&r.l, &g.cb);
    r.m.drop = 0.0f;
    CHECK(dlf_learner_fit(&r.l, 2) == DLF_OK, "%s: fit", what);
    CHECK(strcmp(log, want) == 0, "%s:\n  got  %s\n  want %s", what, log, want);
    CHECK(r.opt->steps == want_steps, "%s: %d optimizer steps, want %d", what, r.opt->steps, want_steps);
    CHECK(r.l.cancelled == (code == DLF_CB_CANCEL_FIT), "%s: cancelled %d", what, r.l.cancelled);
    {   /* the grads are zero after any batch (cancelled or not) */
        int i, zero = 1;
        for (i = 0; i < r.m.w1->size; i++) zero &= r.m.w1->grad[i] == 0.0f;
        CHECK(zero, "%s: grads left non-zero", what);
    }
    run_free(&r);
}

#define TB "BB AP AL AB AS AX "       /* a whole training batch */
#define VB "vBB vAP vAL vAX "         /* a whole validation batch */
#define VAL "BV " VB VB VB            /* validation */

static void test_cancel(void)
{
    GROUP("cancel points");
    cancel_case("none", -1, 0, 0, 0, 0, "BF BE " TB TB VAL "AE BE " TB TB VAL "AE AF ", 4);
    /* CancelBatch: the rest of the batch is skipped (no step), after_cancel_batch, after_batch */
    cancel_case("batch at begin_batch", DLF_EV_BEGIN_BATCH, DLF_CB_CANCEL_BATCH, 0, 1, 0,
                "BF BE " TB "BB CB AX " VAL "AE BE " TB TB VAL "AE AF ", 3);
    cancel_case("batch at after_backward", DLF_EV_AFTER_BACKWARD, DLF_CB_CANCEL_BATCH, 0, 0, 0,
                "BF BE BB AP AL AB CB AX " TB VAL "AE BE " TB TB VAL "AE AF ", 3);
    cancel_case("batch at after_step", DLF_EV_AFTER_STEP, DLF_CB_CANCEL_BATCH, 1, 1, 0,
                "BF BE " TB TB VAL "AE BE " TB "BB AP AL AB AS CB AX " VAL "AE AF ", 4);
    cancel_case("batch in validation", DLF_EV_AFTER_PRED, DLF_CB_CANCEL_BATCH, 0, 1, 1,
                "BF BE " TB TB "BV " VB "vBB vAP vCB vAX " VB "AE BE " TB TB VAL "AE AF ", 4);
    /* CancelEpoch: after_batch, after_cancel_epoch; validation and after_epoch still run */
    cancel_case("epoch at after_pred", DLF_EV_AFTER_PRED, DLF_CB_CANCEL_EPOCH, 0, 0, 0,
                "BF BE BB AP AX CE " VAL "AE BE " TB TB VAL "AE AF ", 2);
    cancel_case("epoch at after_batch", DLF_EV_AFTER_BATCH, DLF_CB_CANCEL_EPOCH, 0, 0, 0,
                "BF BE " TB "CE " VAL "AE BE " TB TB VAL "AE AF ", 3);
    cancel_case("epoch at begin_epoch", DLF_EV_BEGIN_EPOCH, DLF_CB_CANCEL_EPOCH, 1, 0, 0,
                "BF BE " TB TB VAL "AE BE CE " VAL "AE AF ", 2);
    cancel_case("epoch at begin_validate", DLF_EV_BEGIN_VALIDATE, DLF_CB_CANCEL_EPOCH, 0, 0, 0,
                "BF BE " TB TB "BV CE AE BE " TB TB VAL "AE AF ", 4);
    cancel_case("epoch in validation", DLF_EV_AFTER_LOSS, DLF_CB_CANCEL_EPOCH, 1, 1, 1,
                "BF BE " TB TB VAL "AE BE " TB TB "BV " VB "vBB vAP vAL vAX CE AE AF ", 4);
    /* CancelFit: after_batch when inside one, after_cancel_fit, after_fit */
    cancel_case("fit at begin_fit", DLF_EV_BEGIN_FIT, DLF_CB_CANCEL_FIT, 0, 0, 0, "BF CF AF ", 0);
    cancel_case("fit at after_loss", DLF_EV_AFTER_LOSS, DLF_CB_CANCEL_FIT, 1, 0, 0,
                "BF BE " TB TB VAL "AE BE BB AP AL AX CF AF ", 2);
    cancel_case("fit at after_epoch", DLF_EV_AFTER_EPOCH, DLF_CB_CANCEL_FIT, 0, 0, 0,
                "BF BE " TB TB VAL "AE CF AF ", 2);
    cancel_case("fit at begin_validate", DLF_EV_BEGIN_VALIDATE, DLF_CB_CANCEL_FIT, 0, 0, 0,
                "BF BE " TB TB "BV CF AF ", 2);
    cancel_case("fit in validation", DLF_EV_AFTER_BATCH, DLF_CB_CANCEL_FIT, 0, 2, 1,
                "BF BE " TB TB VAL "CF AF ", 2);
}

/* Validation averages each batch's loss and metric weighted by its items: the same as
   one batch of all 10. */
static void test_validate(void)
{
    dlf_loader_cfg lc;
    dlf_loader *all;
    float loss4, acc4, loss10, acc10;
    run r;
    GROUP("weighted validation");
    run_init(&r, DLF_OPTIM_SGD, 8, 3);
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 10;
    all = dlf_loader_create(&ds_valid, &lc);
    CHECK(dlf_learner_validate(&r.l, r.valid, &loss4, &acc4) == DLF_OK, "validate");
    CHECK(dlf_learner_validate(&r.l, all, &loss10, &acc10) == DLF_OK, "validate");
    CHECK(fabsf(loss4 - loss10) <= 1e-6f * fabsf(loss10) && acc4 == acc10,
          "batches 4,4,2: loss %.9g acc %g; one batch: loss %.9g acc %g", loss4, acc4, loss10, acc10);
    CHECK(r.tape.training == 1 && r.tape.grad_enabled == 1, "modes restored");
    dlf_loader_free(all);
    run_free(&r);
}

/* check_finite: a gradient that turns NaN in a middle layer (injected at after_backward of
   step 3) stops the fit before the step, naming the step and the parameter, with the weights
   exactly those after step 2 (compared with a run cancelled there); an update that overflows
   a weight stops it after the step, naming that weight. */
typedef struct poison { dlf_callback cb; int mode; } poison;
static int poison_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    poison *p = (poison *)cb;
    net *m = (net *)l->m;
    if (p->mode == 2) return ev == DLF_EV_BEGIN_BATCH && l->step == 3 ? DLF_CB_CANCEL_FIT : DLF_CB_OK;
    if (ev == DLF_EV_AFTER_BACKWARD && l->step == 3) {
        if (p->mode == 0) m->w1->grad[5] = NAN;      /* the first layer's gradient goes NaN */
        else m->b2->grad[1] = 3.0e38f;               /* finite, but lr * grad overflows the weight */
    }
    return DLF_CB_OK;
}

static void test_nonfinite(void)
{
    float w1[3][8 * 16];
    int mode, rc[3];
    char msg[2][512];
    GROUP("non-finite gradients and weights stop the fit");
    for (mode = 0; mode < 3; mode++) {   /* 0 NaN gradient, 1 overflowing update, 2 cancelled at step 3 */
        run r;
        poison p;
        run_init(&r, DLF_OPTIM_SGD, 8, 3);
        r.m.drop = 0.0f;
        memset(&p, 0, sizeof p);
        p.cb.name = "poison";
        p.cb.on = poison_on;
        p.mode = mode;
        dlf_learner_add_cb(&r.l, &p.cb);
        if (mode == 1) r.opt->groups[0].lr = 10.0f;
        dlf_clear_error();
        rc[mode] = dlf_learner_fit(&r.l, 1);
        if (mode < 2) snprintf(msg[mode], sizeof msg[mode], "%s", dlf_last_error());
        memcpy(w1[mode], r.m.w1->data, sizeof w1[mode]);
        run_free(&r);
    }
    CHECK(rc[0] == DLF_ERR_ARG && strstr(msg[0], "gradient of 0.weight is NaN") && strstr(msg[0], "at step 3")
          && strstr(msg[0], "weights are unchanged"), "a NaN gradient: rc %d, %s", rc[0], msg[0]);
    CHECK(rc[2] == DLF_OK && memcmp(w1[0], w1[2], sizeof w1[0]) == 0,
          "the weights are exactly those after step 2 (no NaN reached them)");
    CHECK(rc[1] == DLF_ERR_ARG && strstr(msg[1], "2.bias became") && strstr(msg[1], "at step 3"),
          "an overflowing update: rc %d, %s", rc[1], msg[1]);
}

/* The scheduler sets any hyper-parameter; the recorder sees what each step used. */
static void test_sched_recorder(void)
{
    dlf_cb_sched s;
    dlf_cb_recorder rec;
    run r;
    int i, ok = 1;
    GROUP("scheduler and recorder");
    run_init(&r, DLF_OPTIM_ADAM, 8, 1);
    dlf_cb_sched_init(&s);
    dlf_cb_recorder_init(&rec);
    dlf_cb_sched_add(&s, DLF_HYPER_LR, -1, dlf_sched_one_cycle(0.01, 0.3, 25, 1e4, 0));
    dlf_cb_sched_add(&s, DLF_HYPER_MOM, 0, dlf_sched_one_cycle_mom(0.85, 0.95, 0.3, 0));
    dlf_cb_sched_add(&s, DLF_HYPER_WD, 0, dlf_sched_linear(0.0, 0.1));
    dlf_learner_add_cb(&r.l, &s.cb);
    dlf_learner_add_cb(&r.l, &rec.cb);
    CHECK(dlf_learner_fit(&r.l, 3) == DLF_OK, "fit: %s", dlf_last_error());
    CHECK(rec.n == 15 && rec.n_epochs == 3, "recorded %d steps, %d epochs", rec.n, rec.n_epochs);
    for (i = 0; i < rec.n; i++) {
        dlf_schedule lr = dlf_sched_one_cycle(0.01, 0.3, 25, 1e4, 0), mom = dlf_sched_one_cycle_mom(0.85, 0.95, 0.3, 0);
        ok &= rec.lr[i] == (float)dlf_schedule_at(&lr, i, 15) && rec.mom[i] == (float)dlf_schedule_at(&mom, i, 15);
    }
    CHECK(ok, "recorded lr and beta1 are the schedules' values");
    CHECK(r.opt->groups[0].beta1 == rec.mom[14] && r.opt->groups[0].weight_decay > 0.09f,
          "beta1 %g weight decay %g", r.opt->groups[0].beta1, r.opt->groups[0].weight_decay);
    CHECK(rec.epoch_step[2] == 15.0f && rec.epoch_valid[2] == r.l.valid_loss && rec.epoch_metric[2] == r.l.metric_values[0],
          "epoch arrays");
    CHECK(dlf_cb_recorder_plot_loss(&rec, "build/test_learner_loss.svg", NULL) == DLF_OK, "loss plot: %s", dlf_last_error());
    CHECK(dlf_cb_recorder_plot_sched(&rec, "build/test_learner_sched.svg", NULL) == DLF_OK, "sched plot: %s", dlf_last_error());
    check_svg("build/test_learner_loss.svg");
    check_svg("build/test_learner_sched.svg");
    dlf_cb_recorder_free(&rec);
    run_free(&r);
    /* hyper-parameters by name */
    run_init(&r, DLF_OPTIM_SGD, 8, 1);
    CHECK(dlf_optim_get_hyper(r.opt, 0, DLF_HYPER_MOM) == th_f(0.9f), "sgd mom is momentum");
    dlf_optim_set_hyper(r.opt, -1, DLF_HYPER_MOM, 0.5f);
    CHECK(r.opt->groups[0].momentum == th_f(0.5f) && strcmp(dlf_hyper_name(DLF_HYPER_WD), "wd") == 0, "set mom");
    run_free(&r);
}

/* Early stopping and save-best on a run whose validation loss cannot improve (lr 0). */
static void test_early_stop_save_best(void)
{
    dlf_cb_early_stop es;
    dlf_cb_save_best sb;
    dlf_cb_clip clip;
    run r;
    GROUP("early stopping, save-best, clipping");
    run_init(&r, DLF_OPTIM_SGD, 8, 1);
    r.opt->groups[0].lr = 0.0f;
    r.m.drop = 0.0f;
    dlf_cb_early_stop_init(&es, "valid_loss", 0.0f, 2);
    es.verbose = 0;
    dlf_cb_save_best_init(&sb, "accuracy", "build/test_learner_best.safetensors", 1);
    dlf_learner_add_cb(&r.l, &es.cb);
    dlf_learner_add_cb(&r.l, &sb.cb);
    CHECK(dlf_learner_fit(&r.l, 10) == DLF_OK, "fit: %s", dlf_last_error());
    CHECK(es.stopped_epoch == 2 && r.l.cancelled && es.t.best_epoch == 0 && es.t.wait == 2,
          "stopped after epoch %d (best %d, wait %d)", es.stopped_epoch, es.t.best_epoch, es.t.wait);
    CHECK(sb.saves == 1 && sb.t.best_epoch == 0 && sb.t.higher_better, "save-best wrote %d times", sb.saves);
    run_free(&r);
    /* a real run: save-best keeps the best epoch's weights and puts them back */
    run_init(&r, DLF_OPTIM_SGD, 8, 1);
    dlf_cb_save_best_init(&sb, "valid_loss", "build/test_learner_best.safetensors", 1);
    dlf_cb_clip_init(&clip, 1e-3f);
    dlf_learner_add_cb(&r.l, &sb.cb);
    dlf_learner_add_cb(&r.l, &clip.cb);
    CHECK(dlf_learner_fit(&r.l, 4) == DLF_OK, "fit: %s", dlf_last_error());
    {
        float loss;
        dlf_learner_validate(&r.l, r.valid, &loss, NULL);
        CHECK(sb.saves >= 1 && loss == sb.t.best, "restored: valid loss %.9g, best %.9g (epoch %d)", loss, sb.t.best,
              sb.t.best_epoch);
    }
    CHECK(clip.last_norm > 1e-3f, "clipping saw norm %g", clip.last_norm);
    run_free(&r);
}

/* ------------------------------------------------------------------ resume */

typedef struct final {
    float w[4][128];
    float st[4][128];
    float rec_loss[64], rec_lr[64];
    int n_rec;
    float best;
} final;

static void grab(final *f, run *r, const dlf_cb_recorder *rec, const dlf_cb_early_stop *es)
{
    int i;
    memset(f, 0, sizeof *f);
    for (i = 0; i < 4; i++) {
        memcpy(f->w[i], r->m.pl.items[i].t->data, (size_t)r->m.pl.items[i].t->size * sizeof(float));
        memcpy(f->st[i], r->opt->params[i].state[0], (size_t)r->m.pl.items[i].t->size * sizeof(float));
    }
    f->n_rec = rec->n;
    memcpy(f->rec_loss, rec->loss, (size_t)rec->n * sizeof(float));
    memcpy(f->rec_lr, rec->lr, (size_t)rec->n * sizeof(float));
    f->best = es->t.best;
}

/* A full run of 3 epochs with every stateful callback; stop_at > 0 stops it there
   (autosave), resume_from continues a saved one in objects built afresh. */
static long resume_run(final *f, long stop_at, const char *resume_from, int save_at_epoch_end, int save_after)
{
    dlf_cb_sched s;
    dlf_cb_recorder rec;
    dlf_cb_early_stop es;
    dlf_cb_autosave as;
    run r;
    long step;
    run_init(&r, DLF_OPTIM_SGD, 8, resume_from ? 77 : 1);   /* a resumed run starts from other weights */
    dlf_cb_sched_init(&s);
    dlf_cb_sched_add(&s, DLF_HYPER_LR, -1, dlf_sched_one_cycle(0.2, 0.3, 25, 1e4, 0));
    dlf_cb_sched_add(&s, DLF_HYPER_MOM, -1, dlf_sched_one_cycle_mom(0.85, 0.95, 0.3, 0));
    dlf_cb_recorder_init(&rec);
    dlf_cb_early_stop_init(&es, "valid_loss", 0.0f, 100);
    dlf_cb_autosave_init(&as, save_after ? "build/test_learner_tmp.safetensors" : "build/test_learner_run.safetensors", 0,
                         save_at_epoch_end ? 0 : stop_at);
    dlf_learner_add_cb(&r.l, &s.cb);
    dlf_learner_add_cb(&r.l, &rec.cb);
    dlf_learner_add_cb(&r.l, &es.cb);
    dlf_learner_add_cb(&r.l, &as.cb);
    if (resume_from) CHECK(dlf_learner_load(&r.l, resume_from) == DLF_OK, "load: %s", dlf_last_error());
    if (save_at_epoch_end) {
        /* stop at the end of epoch 0 after saving there */
        dlf_learner_remove_cb(&r.l, &as.cb);
        es.patience = 100;
        r.l.epochs = 3;
        CHECK(dlf_learner_fit(&r.l, 1) == DLF_OK, "fit 1 epoch");
        CHECK(dlf_learner_save(&r.l, "build/test_learner_run.safetensors") == DLF_OK, "save between fits");
    } else {
        CHECK(dlf_learner_fit(&r.l, resume_from ? 0 : 3) == DLF_OK, "fit: %s", dlf_last_error());
        if (save_after)   /* between fits, after the cancel: the same state as at the step */
            CHECK(dlf_learner_save(&r.l, "build/test_learner_run.safetensors") == DLF_OK, "save: %s", dlf_last_error());
    }
    step = r.l.step;
    grab(f, &r, &rec, &es);
    dlf_cb_recorder_free(&rec);
    run_free(&r);
    return step;
}

static void test_resume(void)
{
    static final a, b, c;
    static const long stops[] = {1, 7, 10, 11, 14};
    int i;
    GROUP("resume bit for bit");
    resume_run(&a, 0, NULL, 0, 0);
    CHECK(a.n_rec == 15, "uninterrupted: %d steps", a.n_rec);
    for (i = 0; i < (int)(sizeof stops / sizeof stops[0]); i++) {
        long at = resume_run(&b, stops[i], NULL, 0, i % 2);   /* saved at the step, or after the fit */
        CHECK(at == stops[i], "stopped at step %ld, wanted %ld", at, stops[i]);
        resume_run(&c, 0, "build/test_learner_run.safetensors", 0, 0);
        CHECK(memcmp(a.w, c.w, sizeof a.w) == 0, "stopped at step %ld: final weights differ", stops[i]);
        CHECK(memcmp(a.st, c.st, sizeof a.st) == 0, "stopped at step %ld: momentum buffers differ", stops[i]);
        CHECK(c.n_rec == 15 && memcmp(a.rec_loss, c.rec_loss, sizeof a.rec_loss) == 0 &&
              memcmp(a.rec_lr, c.rec_lr, sizeof a.rec_lr) == 0, "stopped at step %ld: recorder differs (%d steps)",
              stops[i], c.n_rec);
        CHECK(a.best == c.best, "stopped at step %ld: early stopping's best %g vs %g", stops[i], c.best, a.best);
    }
    {   /* a resume asking for other epochs is refused; a callback the saved run lacked starts afresh */
        run r;
        dlf_cb_save_best sb;
        resume_run(&b, 7, NULL, 0, 0);
        run_init(&r, DLF_OPTIM_SGD, 8, 1);
        dlf_cb_save_best_init(&sb, "valid_loss", "build/test_learner_best2.safetensors", 0);
        dlf_learner_add_cb(&r.l, &sb.cb);
        CHECK(dlf_learner_load(&r.l, "build/test_learner_run.safetensors") == DLF_OK, "load with an extra callback: %s",
              dlf_last_error());
        CHECK(dlf_learner_fit(&r.l, 5) == DLF_ERR_ARG && strstr(dlf_last_error(), "3 epochs"), "epochs mismatch: %s",
              dlf_last_error());
        CHECK(dlf_learner_fit(&r.l, 3) == DLF_OK && r.l.step == 15 && sb.saves >= 1, "resumed to step %ld", r.l.step);
        run_free(&r);
    }
    /* saved after a finished fit of 1 epoch: the state says "epoch 1 (of 1), batch 0" */
    {
        dlf_ckpt ck;
        long long e, it, ep;
        resume_run(&b, 0, NULL, 1, 0);
        dlf_ckpt_init(&ck);
        CHECK(dlf_ckpt_load(&ck, "build/test_learner_run.safetensors") == DLF_OK, "load");
        CHECK(dlf_ckpt_get_int(&ck, "learner.epoch", &e) == DLF_OK && dlf_ckpt_get_int(&ck, "learner.iter", &it) == DLF_OK &&
              dlf_ckpt_get_int(&ck, "learner.epochs", &ep) == DLF_OK && it == 0 && e == 1,
              "between fits: epoch %lld iter %lld epochs %lld", e, it, ep);
        dlf_ckpt_free(&ck);
    }
}

/* A callback that saves the run at after_epoch of epoch 0 and stops: the resumed run
   starts epoch 1 and ends like the uninterrupted one. */
static int save_at_epoch_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    (void)cb;
    if (ev == DLF_EV_AFTER_EPOCH && l->epoch == 0) {
        CHECK(dlf_learner_save(l, "build/test_learner_run.safetensors") == DLF_OK, "save at after_epoch: %s", dlf_last_error());
        return DLF_CB_CANCEL_FIT;
    }
    return DLF_CB_OK;
}

static void test_resume_epoch_end(void)
{
    static final a, c;
    dlf_callback cb;
    dlf_cb_recorder rec;
    dlf_cb_early_stop es;
    run r;
    GROUP("resume at an epoch end");
    resume_run(&a, 0, NULL, 0, 0);
    run_init(&r, DLF_OPTIM_SGD, 8, 1);
    memset(&cb, 0, sizeof cb);
    cb.name = "saver";
    cb.order = 60;
    cb.on = save_at_epoch_on;
    {
        dlf_cb_sched s;
        dlf_cb_sched_init(&s);
        dlf_cb_sched_add(&s, DLF_HYPER_LR, -1, dlf_sched_one_cycle(0.2, 0.3, 25, 1e4, 0));
        dlf_cb_sched_add(&s, DLF_HYPER_MOM, -1, dlf_sched_one_cycle_mom(0.85, 0.95, 0.3, 0));
        dlf_cb_recorder_init(&rec);
        dlf_cb_early_stop_init(&es, "valid_loss", 0.0f, 100);
        dlf_learner_add_cb(&r.l, &s.cb);
        dlf_learner_add_cb(&r.l, &rec.cb);
        dlf_learner_add_cb(&r.l, &es.cb);
        dlf_learner_add_cb(&r.l, &cb);
        dlf_learner_fit(&r.l, 3);
        CHECK(r.l.cancelled && r.l.step == 5, "stopped after epoch 0 (step %ld)", r.l.step);
        dlf_cb_recorder_free(&rec);
    }
    run_free(&r);
    resume_run(&c, 0, "build/test_learner_run.safetensors", 0, 0);
    CHECK(memcmp(a.w, c.w, sizeof a.w) == 0 && memcmp(a.st, c.st, sizeof a.st) == 0 &&
          memcmp(a.rec_loss, c.rec_loss, sizeof a.rec_loss) == 0 && a.best == c.best, "resumed from an epoch end");
}

/* ------------------------------------------------------------------ LR finder */

static void test_lr_find(void)
{
    dlf_lr_find_result res;
    dlf_loader_state before, after;
    dlf_cb_recorder rec;
    static float w0[4][128], s0[4][2][128];
    int i, k, same = 1, steps[4];
    dlf_rng tape_rng;
    run r;
    GROUP("LR finder");
    run_init(&r, DLF_OPTIM_SGD, 8, 1);
    dlf_cb_recorder_init(&rec);
    dlf_learner_add_cb(&r.l, &rec.cb);
    dlf_learner_fit(&r.l, 1);                    /* some optimizer state to keep */
    dlf_loader_next(r.train);                    /* and a loader mid-epoch */
    for (i = 0; i < 4; i++) {
        memcpy(w0[i], r.m.pl.items[i].t->data, (size_t)r.m.pl.items[i].t->size * sizeof(float));
        for (k = 0; k < 2; k++)
            if (r.opt->params[i].state[k]) memcpy(s0[i][k], r.opt->params[i].state[k], (size_t)r.m.pl.items[i].t->size * sizeof(float));
        steps[i] = r.opt->params[i].step;
    }
    tape_rng = r.tape.rng;
    dlf_loader_get_state(r.train, &before);
    CHECK(dlf_lr_find(&r.l, NULL, &res) == DLF_OK, "lr_find: %s", dlf_last_error());
    for (i = 0; i < 4; i++) {
        same &= memcmp(w0[i], r.m.pl.items[i].t->data, (size_t)r.m.pl.items[i].t->size * sizeof(float)) == 0;
        for (k = 0; k < 2; k++)
            if (r.opt->params[i].state[k]) same &= memcmp(s0[i][k], r.opt->params[i].state[k], (size_t)r.m.pl.items[i].t->size * sizeof(float)) == 0;
        same &= steps[i] == r.opt->params[i].step;
    }
    CHECK(same, "weights and optimizer state are bit-identical after the sweep");
    CHECK(r.opt->steps == 5 && r.opt->groups[0].lr == th_f(0.1f), "optimizer steps %d lr %g", r.opt->steps,
          r.opt->groups[0].lr);
    dlf_loader_get_state(r.train, &after);
    CHECK(before.pos == after.pos && before.epoch == after.epoch && memcmp(&before.rng, &after.rng, sizeof before.rng) == 0 &&
          memcmp(before.order, after.order, NTR * sizeof(int)) == 0, "loader restored");
    CHECK(memcmp(&tape_rng, &r.tape.rng, sizeof tape_rng) == 0, "tape rng restored");
    CHECK(r.l.n_cbs == 2 && r.l.epochs == 1 && r.l.step == 5 && rec.n == 5, "learner restored (%d callbacks)", r.l.n_cbs);
    CHECK(res.n > 10 && res.n <= 100, "%d points", res.n);
    CHECK(res.lrs[0] == th_f(1e-7f) && fabsf(res.lrs[1] / res.lrs[0] - powf(1e8f, 0.01f)) < 1e-4f, "exponential sweep %g %g",
          res.lrs[0], res.lrs[1]);
    CHECK(res.lr_steep > 1e-7f && res.lr_steep < 10.0f && res.lr_min > 1e-8f && res.lr_min < 1.0f,
          "suggestions: steepest %g, min/10 %g", res.lr_steep, res.lr_min);
    CHECK(dlf_lr_find_plot(&res, "build/test_learner_lr_find.svg", NULL) == DLF_OK, "plot: %s", dlf_last_error());
    check_svg("build/test_learner_lr_find.svg");
    printf("  lr_find: %d points, steepest %.3g, min/10 %.3g\n", res.n, res.lr_steep, res.lr_min);
    {   /* this problem is separable: a large lr does not hurt it below 10; up to 1e6 it does */
        dlf_lr_find_cfg cfg;
        dlf_lr_find_result big;
        memset(&cfg, 0, sizeof cfg);
        cfg.end_lr = 1e6;
        CHECK(dlf_lr_find(&r.l, &cfg, &big) == DLF_OK, "lr_find to 1e6: %s", dlf_last_error());
        CHECK(big.n > 10 && big.n < 100 && (big.losses[big.n - 1] > 4.0f * big.losses[0] || big.losses[big.n - 1] != big.losses[big.n - 1]),
              "stopped when the smoothed loss passed 4x its minimum: %d points, last %g", big.n, big.n ? big.losses[big.n - 1] : 0.0f);
        for (i = 0; i < 4; i++)
            same &= memcmp(w0[i], r.m.pl.items[i].t->data, (size_t)r.m.pl.items[i].t->size * sizeof(float)) == 0;
        CHECK(same, "weights bit-identical after a diverging sweep");
        printf("  lr_find to 1e6: stopped after %d points at lr %.3g\n", big.n, big.lrs[big.n - 1]);
        dlf_lr_find_free(&big);
        cfg.end_lr = 1e30;   /* the loss turns inf, then NaN: the sweep stops there, no error */
        cfg.num_it = 50;
        CHECK(dlf_lr_find(&r.l, &cfg, &big) == DLF_OK, "lr_find to 1e30: %s", dlf_last_error());
        for (i = 0; i < 4; i++)
            same &= memcmp(w0[i], r.m.pl.items[i].t->data, (size_t)r.m.pl.items[i].t->size * sizeof(float)) == 0;
        CHECK(same && big.n < 50 && r.l.check_finite == 1, "after a sweep into NaN: weights restored, %d points", big.n);
        dlf_lr_find_free(&big);
    }
    dlf_loader_state_free(&before);
    dlf_loader_state_free(&after);
    dlf_lr_find_free(&res);
    dlf_cb_recorder_free(&rec);
    run_free(&r);
}

/* ------------------------------------------------------------------ allocations */

static long allocs_mark[2];
static int alloc_probe_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    (void)cb;
    if (ev == DLF_EV_AFTER_BATCH && l->in_train && l->epoch == 1 && l->iter == 1) allocs_mark[0] = th_allocs;
    if (ev == DLF_EV_AFTER_BATCH && l->in_train && l->epoch == 2 && l->iter == l->n_iter) allocs_mark[1] = th_allocs;
    return DLF_CB_OK;
}

static void test_no_alloc(void)
{
    dlf_cb_sched s;
    dlf_cb_recorder rec;
    dlf_cb_progress p;
    dlf_cb_early_stop es;
    dlf_cb_clip clip;
    dlf_callback probe;
    run r;
    GROUP("no allocation per step");
    run_init(&r, DLF_OPTIM_ADAMW, 8, 1);
    dlf_cb_sched_init(&s);
    dlf_cb_sched_add(&s, DLF_HYPER_LR, -1, dlf_sched_cos(0.01, 0.0));
    dlf_cb_recorder_init(&rec);
    dlf_cb_progress_init(&p, 1);
    dlf_cb_early_stop_init(&es, "accuracy", 0.0f, 100);
    dlf_cb_clip_init(&clip, 1.0f);
    memset(&probe, 0, sizeof probe);
    probe.name = "probe";
    probe.order = 99;
    probe.on = alloc_probe_on;
    dlf_learner_add_cb(&r.l, &s.cb);
    dlf_learner_add_cb(&r.l, &rec.cb);
    dlf_learner_add_cb(&r.l, &p.cb);
    dlf_learner_add_cb(&r.l, &es.cb);
    dlf_learner_add_cb(&r.l, &clip.cb);
    dlf_learner_add_cb(&r.l, &probe);
    dlf_learner_fit(&r.l, 3);
    CHECK(allocs_mark[1] == allocs_mark[0], "%ld allocations from epoch 1 to the end", allocs_mark[1] - allocs_mark[0]);
    dlf_cb_recorder_free(&rec);
    run_free(&r);
}

/* ------------------------------------------------------------------ the example */

/* mnist_mlp on the committed subset: 2 epochs of 13 batches, run through once; then
   stopped at step 17 (mid-epoch 2) and resumed; the weights saved at the end must be
   the same bits. Skipped (with a note) when the example program is not built. */
static void test_example_resume(const char *argv0)
{
    char exe[1024], cmd[2048];
    const char *slash = strrchr(argv0, '/');
    const char *names[] = {"1.weight", "1.bias", "3.weight", "3.bias"};
    dlf_safetensors x, y;
    FILE *f;
    int i, rc;
    GROUP("example --resume");
    /* build/tests/test_learner -> build/examples/mnist_mlp */
    snprintf(exe, sizeof exe, "%.*s/../examples/mnist_mlp", slash ? (int)(slash - argv0) : 1, slash ? argv0 : ".");
    if (!(f = fopen(exe, "rb"))) {
        printf("  skipped: %s is not built (make examples)\n", exe);
        return;
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s --subset --epochs 2 --threads 1 --save build/ex_full.safetensors > build/ex_full.log 2>&1",
             th_self(exe));
    rc = system(cmd);
    CHECK(rc == 0, "uninterrupted run failed (build/ex_full.log)");
    snprintf(cmd, sizeof cmd, "%s --subset --epochs 2 --threads 1 --stop-at 17 --save build/ex_part.safetensors > build/ex_part.log 2>&1",
             th_self(exe));
    rc = system(cmd);
    CHECK(rc == 0, "stopped run failed (build/ex_part.log)");
    snprintf(cmd, sizeof cmd, "%s --subset --threads 1 --resume build/ex_part.safetensors --save build/ex_resumed.safetensors > build/ex_resumed.log 2>&1",
             th_self(exe));
    rc = system(cmd);
    CHECK(rc == 0, "resumed run failed (build/ex_resumed.log)");
    if (dlf_safetensors_load(&x, "build/ex_full.safetensors") != DLF_OK) { CHECK(0, "%s", dlf_last_error()); return; }
    if (dlf_safetensors_load(&y, "build/ex_resumed.safetensors") != DLF_OK) {
        CHECK(0, "%s", dlf_last_error());
        dlf_safetensors_free(&x);
        return;
    }
    for (i = 0; i < 4; i++) {
        const dlf_st_tensor *a = dlf_safetensors_find(&x, names[i]), *b = dlf_safetensors_find(&y, names[i]);
        CHECK(a && b && a->size == b->size && memcmp(a->data, b->data, (size_t)a->size * sizeof(float)) == 0,
              "%s: the resumed run's weights differ from the uninterrupted run's", names[i]);
    }
    {
        const char *s1 = dlf_safetensors_meta(&x, "test_accuracy"), *s2 = dlf_safetensors_meta(&y, "test_accuracy");
        CHECK(s1 && s2 && strcmp(s1, s2) == 0, "test accuracy %s vs %s", s1 ? s1 : "?", s2 ? s2 : "?");
    }
    dlf_safetensors_free(&x);
    dlf_safetensors_free(&y);
}

int main(int argc, char **argv)
{
    (void)argc;
    th_init();
    make_data();
    test_order();
    test_cancel();
    test_validate();
    test_nonfinite();
    test_sched_recorder();
    test_early_stop_save_best();
    test_resume();
    test_resume_epoch_end();
    test_lr_find();
    test_no_alloc();
    test_example_resume(argv[0]);
    TEST_MAIN_END();
}
