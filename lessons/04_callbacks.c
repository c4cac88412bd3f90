/* 04_callbacks.c - the Learner and its callbacks (notebook 04_callbacks, "Deep Learning
   from the Foundations", fast.ai; the docs page is docs/learner.md, the code stage 14 of
   dlf.h: grep '>>stage14' dlf.h).

   What it shows
     1. The training loop of lesson 03 turned inside out. dlf_learner_fit runs
            begin_fit
            per epoch: begin_epoch
                per training batch: begin_batch, model -> after_pred, loss -> after_loss,
                    backward -> after_backward, step -> after_step, after_batch
                begin_validate, per validation batch: begin_batch .. after_loss, after_batch
                after_epoch
            after_fit
        and everything else (progress display, schedules, statistics, stopping early)
        is a callback: a struct with an `order` and a function with a switch over the
        events. A tiny fit (2 training batches, 1 validation batch) prints every event.
     2. Order: callbacks run by increasing `order` (fastai's _order), equal orders in the
        order they were added. Two callbacks with orders 5 and -5 show it.
     3. Cancelling with return codes instead of Python's exceptions (notebook 05b's
        semantics; lesson 05b_early_stopping tabulates each one):
          - the course's TestCallback: stop the fit after 10 batches (DLF_CB_CANCEL_FIT
            from after_step): 10 optimizer steps, then after_cancel_fit and after_fit;
          - skip the optimizer step of every other batch (DLF_CB_CANCEL_BATCH from
            after_backward): half the steps, after_batch still runs for every batch;
          - train on only 20 batches of each epoch (DLF_CB_CANCEL_EPOCH from after_batch):
            validation still runs.
     4. AvgStats: the learner's own loss and metrics on the validation set, each batch
        weighted by its size, after every epoch; a 3-epoch fit with a callback that
        prints them (the built-in progress table of lesson 09b does the same, nicer).
   Data: data/mnist (run `make data`), first 5000 training and 1000 validation images;
   when it is missing the lesson falls back to the 1000-image subset in tests/data.
   A second or two.

   In a debugger:   make debug && gdb build/debug/lessons/04_callbacks
     break dlf__event          `p ev`, `p l->cbs[i]->name` as it walks the list
     break dlf__one_batch      step through one batch; `p l->step`, `p l->iter`
     break stop_after_on       our TestCallback: `p l->step` when it cancels */
#include <stdio.h>
#include <string.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

/* ---------------------------------------------------------------- the model */

typedef struct mlp {
    dlf_seq seq;             /* Flatten, Linear(784, 50), ReLU, Linear(50, 10) */
    dlf_params pl;
} mlp;

static int mlp_init(mlp *m, uint64_t seed)
{
    dlf_rng rng;
    dlf_rng_seed(&rng, seed);
    dlf_seq_init(&m->seq);
    dlf_params_init(&m->pl);
    if (dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_FLATTEN)) != DLF_OK ||
        dlf_seq_add(&m->seq, dlf_layer_linear(784, 50, 1, &rng)) != DLF_OK ||
        dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_RELU)) != DLF_OK ||
        dlf_seq_add(&m->seq, dlf_layer_linear(50, 10, 1, &rng)) != DLF_OK)
        return 0;
    return dlf_seq_collect(&m->seq, &m->pl) == DLF_OK;
}

static void mlp_free(mlp *m)
{
    dlf_params_free(&m->pl);
    dlf_seq_free(&m->seq);
}

static dlf_tensor *mlp_forward(dlf_tape *t, dlf_tensor *x, void *m)
{
    return dlf_seq_forward(t, &((mlp *)m)->seq, x);
}

/* ---------------------------------------------------------------- callbacks */

/* Prints each event it sees, prefixed by its name (1, 2). */
typedef struct printer {
    dlf_callback cb;
    int indent;
} printer;

static int printer_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    printer *p = (printer *)cb;
    printf("    %*s%-8s %-15s", p->indent, "", cb->name, dlf_event_name(ev));
    if (ev == DLF_EV_AFTER_LOSS) printf(" %s loss %.4f", l->in_train ? "train" : "valid", l->loss_value);
    if (ev == DLF_EV_AFTER_BATCH) printf(" step %ld, iter %d/%d", l->step, l->iter, l->n_iter);
    printf("\n");
    return DLF_CB_OK;
}

/* The course's TestCallback: stop the fit after `n` steps (3). */
typedef struct stop_after {
    dlf_callback cb;
    long n;
} stop_after;

static int stop_after_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    stop_after *s = (stop_after *)cb;
    if (ev == DLF_EV_AFTER_STEP && l->step + 1 >= s->n) return DLF_CB_CANCEL_FIT;  /* step counts at after_batch */
    return DLF_CB_OK;
}

/* Counts what ran, and cancels as told (3). */
typedef struct counter {
    dlf_callback cb;
    int skip_odd_steps;      /* CANCEL_BATCH at after_backward of every other batch */
    int batches_per_epoch;   /* > 0: CANCEL_EPOCH after that many training batches */
    int n[DLF_EV_COUNT];
} counter;

static int counter_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    counter *c = (counter *)cb;
    c->n[ev]++;
    if (!l->in_train) return DLF_CB_OK;
    if (c->skip_odd_steps && ev == DLF_EV_AFTER_BACKWARD && l->iter % 2 == 1) return DLF_CB_CANCEL_BATCH;
    if (c->batches_per_epoch && ev == DLF_EV_AFTER_BATCH && l->iter == c->batches_per_epoch) return DLF_CB_CANCEL_EPOCH;
    return DLF_CB_OK;
}

/* AvgStats: prints the epoch's weighted averages (4). */
static int stats_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    (void)cb;
    if (ev == DLF_EV_AFTER_EPOCH)
        printf("    epoch %d: train loss %.4f | valid loss %.4f, accuracy %.4f (%ld items)\n", l->epoch,
               l->train_loss, l->valid_loss, l->metric_values[0], l->v_items);
    return DLF_CB_OK;
}

static void print_counts(const char *what, const counter *c, const dlf_learner *l, const dlf_optim *o)
{
    printf("  %-44s optimizer steps %4d; batches %4ld; after_step %4d, after_batch (valid too) %4d,\n  %-44s after_cancel_batch %d,\n"
           "  %-44s after_cancel_epoch %d, begin_validate %d, after_cancel_fit %d, after_fit %d\n",
           what, o->steps, l->step, c->n[DLF_EV_AFTER_STEP], c->n[DLF_EV_AFTER_BATCH], "", c->n[DLF_EV_AFTER_CANCEL_BATCH],
           "", c->n[DLF_EV_AFTER_CANCEL_EPOCH], c->n[DLF_EV_BEGIN_VALIDATE], c->n[DLF_EV_AFTER_CANCEL_FIT],
           c->n[DLF_EV_AFTER_FIT]);
}

int main(void)
{
    dlf_mnist data;
    dlf_dataset tr, va, tiny_tr, tiny_va;
    dlf_loader_cfg lc;
    dlf_loader *train, *valid, *tt, *tv;
    dlf_optim_cfg oc;
    dlf_optim *opt;
    dlf_tape tape;
    dlf_learner l;
    mlp m;
    int full;
    printf("04_callbacks: the Learner and its callbacks\n");
    if ((full = lesson_load_mnist(&data, "  ")) < 0) return 1;
    tr = dlf_dataset_view(&data.train, 0, data.train.n < 5000 ? data.train.n : 5000);
    va = dlf_dataset_view(&data.valid, 0, data.valid.n < 1000 ? data.valid.n : 1000);
    tiny_tr = dlf_dataset_view(&data.train, 0, 128);
    tiny_va = dlf_dataset_view(&data.valid, 0, 64);
    memset(&lc, 0, sizeof lc);
    lc.mean = data.mean;
    lc.std = data.std;
    lc.batch_size = 64;
    lc.shuffle = 1;
    lc.seed = 1;
    train = dlf_loader_create(&tr, &lc);
    tt = dlf_loader_create(&tiny_tr, &lc);
    lc.shuffle = 0;
    tv = dlf_loader_create(&tiny_va, &lc);   /* one batch of 64 */
    lc.batch_size = 500;
    valid = dlf_loader_create(&va, &lc);
    if (!train || !valid || !tt || !tv || !mlp_init(&m, 1)) {
        printf("  out of memory\n");
        return 1;
    }
    memset(&oc, 0, sizeof oc);
    oc.lr = 0.03f;
    oc.momentum = 0.9f;
    opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &m.pl, &oc, 1);
    dlf_tape_init(&tape);

    printf("\n1. Every event of a fit of one epoch: 2 training batches of 64, 1 validation batch\n");
    {
        printer p;
        memset(&p, 0, sizeof p);
        p.cb.name = "printer";
        p.cb.on = printer_on;
        dlf_learner_init(&l, &tape, mlp_forward, &m, dlf_cross_entropy, opt, tt, tv);
        dlf_learner_add_cb(&l, &p.cb);
        dlf_learner_fit(&l, 1);
    }

    printf("\n2. Order: \"late\" (order 5) added before \"early\" (order -5); the built-in train_eval is -10\n");
    {
        printer a, b;
        int i;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        a.cb.name = "late";
        a.cb.order = 5;
        a.cb.on = printer_on;
        a.indent = 4;
        b.cb.name = "early";
        b.cb.order = -5;
        b.cb.on = printer_on;
        dlf_learner_init(&l, &tape, mlp_forward, &m, dlf_cross_entropy, opt, tv, NULL);
        dlf_learner_add_cb(&l, &a.cb);
        dlf_learner_add_cb(&l, &b.cb);
        printf("    the list:");
        for (i = 0; i < l.n_cbs; i++) printf(" %s (%d)", l.cbs[i]->name, l.cbs[i]->order);
        printf("\n    a fit of one batch of 64 (no validation):\n");
        dlf_learner_fit(&l, 1);
    }

    printf("\n3. Cancelling (one epoch over %d images, %d batches, each run from the same weights)\n", tr.n,
           train->n_batches);
    {
        static const char *const what[3] = {"CANCEL_FIT after 10 steps (TestCallback):",
                                            "CANCEL_BATCH at after_backward, odd batches:",
                                            "CANCEL_EPOCH after 20 batches:"};
        int k;
        for (k = 0; k < 3; k++) {
            counter c;
            stop_after s;
            mlp_free(&m);
            mlp_init(&m, 1);
            dlf_optim_free(opt);
            opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &m.pl, &oc, 1);
            memset(&c, 0, sizeof c);
            c.cb.name = "counter";
            c.cb.on = counter_on;
            c.skip_odd_steps = k == 1;
            c.batches_per_epoch = k == 2 ? 20 : 0;
            memset(&s, 0, sizeof s);
            s.cb.name = "stop_after";
            s.cb.on = stop_after_on;
            s.n = 10;
            dlf_learner_init(&l, &tape, mlp_forward, &m, dlf_cross_entropy, opt, train, valid);
            dlf_learner_add_cb(&l, &c.cb);
            if (k == 0) dlf_learner_add_cb(&l, &s.cb);
            dlf_learner_fit(&l, 1);
            print_counts(what[k], &c, &l, opt);
        }
    }

    printf("\n4. AvgStats: loss and accuracy on %d validation images, weighted by batch size, 3 epochs\n", va.n);
    {
        dlf_callback stats;
        float loss, acc;
        mlp_free(&m);
        mlp_init(&m, 1);
        dlf_optim_free(opt);
        opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &m.pl, &oc, 1);
        memset(&stats, 0, sizeof stats);
        stats.name = "avg_stats";
        stats.on = stats_on;
        dlf_learner_init(&l, &tape, mlp_forward, &m, dlf_cross_entropy, opt, train, valid);
        dlf_learner_add_metric(&l, "accuracy", dlf_metric_accuracy);
        dlf_learner_add_cb(&l, &stats);
        dlf_learner_fit(&l, 3);
        dlf_learner_validate(&l, valid, &loss, &acc);
        printf("    dlf_learner_validate afterwards: loss %.4f, accuracy %.4f (the same numbers)\n", loss, acc);
        printf("    training took %.2f s (validation excluded)\n", l.train_seconds);
    }
    dlf_tape_destroy(&tape);
    dlf_optim_free(opt);
    mlp_free(&m);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_loader_free(tt);
    dlf_loader_free(tv);
    dlf_mnist_free(&data);
    (void)full;
    return 0;
}
