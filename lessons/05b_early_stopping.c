/* 05b_early_stopping.c - cancelling, early stopping and the LR finder (notebook
   05b_early_stopping, "Deep Learning from the Foundations", fast.ai; docs/learner.md,
   stage 14 of dlf.h: grep '>>stage14' dlf.h).

   What it shows
     1. The cancel semantics, exactly. The course cancels with exceptions (CancelBatch,
        CancelEpoch, CancelTrain) caught at three levels of the loop; dlf's callbacks
        return DLF_CB_CANCEL_BATCH, _EPOCH or _FIT and the loop does what the except and
        finally clauses do. For each code returned at each interesting event, a fit of
        2 epochs (2 training batches, 1 validation batch each) prints the events that
        ran, so the table below is the specification:
            BF begin_fit  BE begin_epoch  BB begin_batch  AP after_pred  AL after_loss
            AB after_backward  AS after_step  AX after_batch  BV begin_validate
            AE after_epoch  AF after_fit  CB/CE/CF after_cancel_batch/_epoch/_fit
            v = a validation batch,  [ ] = where the code was returned
     2. The LR finder (Smith 2015, fastai's lr_find): the lr rises exponentially from
        1e-7 to 10 over 100 batches, the loss is smoothed (beta 0.98, debiased), the
        sweep stops when it passes 4x its minimum. Its suggestions are the steepest
        descent of the curve and the minimum / 10. Afterwards the weights, the momentum
        buffers and the data loader are put back bit for bit (checked here with memcmp),
        so the sweep costs nothing but time. Picture: docs/img/05b_lr_find.svg. Then one
        epoch at each suggestion, from the same start.
     3. Early stopping and save-best: a CNN trained on 1000 images for up to 30 epochs at
        a constant lr of 0.1 overfits after a few epochs; early stopping (patience 3 on the validation loss)
        ends the fit, save-best kept the best epoch's weights in a checkpoint and puts
        them back at the end. Picture: docs/img/05b_early_stop.svg.
   Data: data/mnist (run `make data`); when it is missing the lesson falls back to the
   1000-image subset in tests/data and says so. About 10 seconds on a 2-core machine.

   In a debugger:   make debug && gdb build/debug/lessons/05b_early_stopping
     break dlf__cb_lr_finder_on   `p f->lr`, `p f->best`, `p l->loss_value`
     break dlf__cb_early_stop_on  `p e->t.best`, `p e->t.wait` at each after_epoch */
#include <stdio.h>
#include <string.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

/* ---------------------------------------------------------------- models */

typedef struct model {
    dlf_seq seq;
    dlf_params pl;
} model;

/* The MLP of lesson 03 (cnn = 0) or the CNN of lesson 06 with widths 8,16,32,32 (cnn = 1). */
static int model_init(model *m, int cnn, uint64_t seed)
{
    dlf_rng rng;
    int ok = 1, i;
    static const int nfs[4] = {8, 16, 32, 32};
    dlf_rng_seed(&rng, seed);
    dlf_seq_init(&m->seq);
    dlf_params_init(&m->pl);
    if (!cnn) {
        ok = dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_FLATTEN)) == DLF_OK &&
             dlf_seq_add(&m->seq, dlf_layer_linear(784, 50, 1, &rng)) == DLF_OK &&
             dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_RELU)) == DLF_OK &&
             dlf_seq_add(&m->seq, dlf_layer_linear(50, 10, 1, &rng)) == DLF_OK;
    } else {
        for (i = 0; i < 4 && ok; i++) {
            dlf_layer c = dlf_layer_conv2d(i ? nfs[i - 1] : 1, nfs[i], i ? 3 : 5, 2, i ? 1 : 2, 1, &rng);
            dlf_init_kaiming_normal(c.weight, &rng, 0.0f, DLF_FAN_IN);
            dlf_fill(c.bias, 0.0f);
            ok = dlf_seq_add(&m->seq, c) == DLF_OK && dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_RELU)) == DLF_OK;
        }
        ok = ok && dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL)) == DLF_OK &&
             dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_FLATTEN)) == DLF_OK &&
             dlf_seq_add(&m->seq, dlf_layer_linear(32, 10, 1, &rng)) == DLF_OK;
    }
    return ok && dlf_seq_collect(&m->seq, &m->pl) == DLF_OK;
}

static void model_free(model *m)
{
    dlf_params_free(&m->pl);
    dlf_seq_free(&m->seq);
}

static dlf_tensor *model_forward(dlf_tape *t, dlf_tensor *x, void *m)
{
    return dlf_seq_forward(t, &((model *)m)->seq, x);
}

/* ---------------------------------------------------------------- 1. the table */

static const char *const ev_code[DLF_EV_COUNT] = {"BF", "BE", "BB", "AP", "AL", "AB", "AS", "AX", "BV", "AE", "AF",
                                                  "CB", "CE", "CF"};

typedef struct tracer {
    dlf_callback cb;
    char log[1024];
    int ev, code, epoch, iter, valid;  /* return code at (ev, epoch, iter in train/valid) */
} tracer;

static int tracer_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    tracer *t = (tracer *)cb;
    int in_batch = ev == DLF_EV_BEGIN_BATCH || ev == DLF_EV_AFTER_PRED || ev == DLF_EV_AFTER_LOSS ||
                   ev == DLF_EV_AFTER_BACKWARD || ev == DLF_EV_AFTER_STEP || ev == DLF_EV_AFTER_BATCH ||
                   ev == DLF_EV_AFTER_CANCEL_BATCH;
    int hit = (int)ev == t->ev && l->epoch == t->epoch &&
              (!in_batch || (l->in_train != t->valid && (ev == DLF_EV_AFTER_BATCH ? l->iter - 1 : l->iter) == t->iter));
    char item[16];
    snprintf(item, sizeof item, hit ? "[%s%s] " : "%s%s ", in_batch && !l->in_train ? "v" : "", ev_code[ev]);
    strncat(t->log, item, sizeof t->log - strlen(t->log) - 1);
    return hit ? t->code : DLF_CB_OK;
}

static void table(dlf_tape *tape, model *m, dlf_loader *tr, dlf_loader *va)
{
    static const struct { const char *what; int ev, code, epoch, iter, valid; } rows[] = {
        {"none", -1, 0, 0, 0, 0},
        {"BATCH at begin_batch, batch 1", DLF_EV_BEGIN_BATCH, DLF_CB_CANCEL_BATCH, 0, 1, 0},
        {"BATCH at after_backward, batch 0", DLF_EV_AFTER_BACKWARD, DLF_CB_CANCEL_BATCH, 0, 0, 0},
        {"BATCH at after_loss, valid batch", DLF_EV_AFTER_LOSS, DLF_CB_CANCEL_BATCH, 0, 0, 1},
        {"EPOCH at after_pred, batch 0", DLF_EV_AFTER_PRED, DLF_CB_CANCEL_EPOCH, 0, 0, 0},
        {"EPOCH at begin_epoch", DLF_EV_BEGIN_EPOCH, DLF_CB_CANCEL_EPOCH, 0, 0, 0},
        {"EPOCH at begin_validate", DLF_EV_BEGIN_VALIDATE, DLF_CB_CANCEL_EPOCH, 0, 0, 0},
        {"FIT at after_step, batch 1 of epoch 1", DLF_EV_AFTER_STEP, DLF_CB_CANCEL_FIT, 1, 1, 0},
        {"FIT at after_epoch, epoch 0", DLF_EV_AFTER_EPOCH, DLF_CB_CANCEL_FIT, 0, 0, 0},
    };
    dlf_optim_cfg oc;
    int i;
    memset(&oc, 0, sizeof oc);
    oc.lr = 0.01f;
    printf("\n1. Cancel semantics: the events of a 2-epoch fit (2 training batches, 1 validation batch),\n"
           "   the cancel code returned at [ ] (the steps column counts optimizer steps)\n");
    for (i = 0; i < (int)(sizeof rows / sizeof rows[0]); i++) {
        tracer t;
        dlf_learner l;
        dlf_optim *opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &m->pl, &oc, 1);
        memset(&t, 0, sizeof t);
        t.cb.name = "tracer";
        t.cb.on = tracer_on;
        t.ev = rows[i].ev; t.code = rows[i].code; t.epoch = rows[i].epoch; t.iter = rows[i].iter; t.valid = rows[i].valid;
        dlf_learner_init(&l, tape, model_forward, m, dlf_cross_entropy, opt, tr, va);
        dlf_learner_add_cb(&l, &t.cb);
        dlf_learner_fit(&l, 2);
        printf("  %-38s steps %d\n    %s\n", rows[i].what, opt->steps, t.log);
        dlf_optim_free(opt);
    }
}

/* ---------------------------------------------------------------- 2 and 3 */

static float accuracy_after_one_epoch(dlf_tape *tape, model *m, dlf_loader *tr, dlf_loader *va, float lr)
{
    dlf_optim_cfg oc;
    dlf_learner l;
    dlf_optim *opt;
    float acc = 0.0f, loss;
    memset(&oc, 0, sizeof oc);
    oc.lr = lr;
    oc.momentum = 0.9f;
    opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &m->pl, &oc, 1);
    dlf_learner_init(&l, tape, model_forward, m, dlf_cross_entropy, opt, tr, va);
    dlf_learner_add_metric(&l, "accuracy", dlf_metric_accuracy);
    if (dlf_learner_fit(&l, 1) != DLF_OK || dlf_learner_validate(&l, va, &loss, &acc) != DLF_OK) acc = -1.0f;
    dlf_optim_free(opt);
    return acc;
}

int main(void)
{
    dlf_mnist data;
    dlf_dataset tiny_tr, tiny_va, tr, va, small;
    dlf_loader_cfg lc;
    dlf_loader *ttr, *tva, *train, *valid, *strain;
    dlf_tape tape;
    model m;
    printf("05b_early_stopping: cancelling, early stopping, the LR finder\n");
    if (lesson_load_mnist(&data, "  ") < 0) return 1;
    tiny_tr = dlf_dataset_view(&data.train, 0, 128);
    tiny_va = dlf_dataset_view(&data.valid, 0, 64);
    tr = dlf_dataset_view(&data.train, 0, data.train.n < 5000 ? data.train.n : 5000);
    va = dlf_dataset_view(&data.valid, 0, data.valid.n < 2000 ? data.valid.n : 2000);
    small = dlf_dataset_view(&data.train, 0, data.train.n < 1000 ? data.train.n : 1000);
    memset(&lc, 0, sizeof lc);
    lc.mean = data.mean;
    lc.std = data.std;
    lc.batch_size = 64;
    lc.shuffle = 1;
    lc.seed = 1;
    ttr = dlf_loader_create(&tiny_tr, &lc);
    train = dlf_loader_create(&tr, &lc);
    strain = dlf_loader_create(&small, &lc);
    lc.shuffle = 0;
    tva = dlf_loader_create(&tiny_va, &lc);
    lc.batch_size = 500;
    valid = dlf_loader_create(&va, &lc);
    dlf_tape_init(&tape);
    if (!ttr || !tva || !train || !valid || !strain || !model_init(&m, 0, 1)) return 1;

    table(&tape, &m, ttr, tva);
    model_free(&m);

    printf("\n2. The LR finder on the CNN of lesson 06 (SGD, momentum 0.9, batches of 64 of %d images)\n", tr.n);
    {
        dlf_optim_cfg oc;
        dlf_optim *opt;
        dlf_learner l;
        dlf_lr_find_result res;
        dlf_loader_state before;
        static float w0[20000];
        size_t off = 0;
        int i, same = 1;
        float steep, min10, acc;
        model_init(&m, 1, 1);
        memset(&oc, 0, sizeof oc);
        oc.lr = 0.1f;
        oc.momentum = 0.9f;
        opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &m.pl, &oc, 1);
        dlf_learner_init(&l, &tape, model_forward, &m, dlf_cross_entropy, opt, train, valid);
        l.params = &m.pl;
        for (i = 0; i < m.pl.n; i++) {
            memcpy(w0 + off, m.pl.items[i].t->data, (size_t)m.pl.items[i].t->size * sizeof(float));
            off += (size_t)m.pl.items[i].t->size;
        }
        dlf_loader_get_state(train, &before);
        if (dlf_lr_find(&l, NULL, &res) != DLF_OK) { printf("  lr_find: %s\n", dlf_last_error()); return 1; }
        for (i = 0, off = 0; i < m.pl.n; i++) {
            same &= memcmp(w0 + off, m.pl.items[i].t->data, (size_t)m.pl.items[i].t->size * sizeof(float)) == 0;
            off += (size_t)m.pl.items[i].t->size;
        }
        same &= train->pos == before.pos && memcmp(train->order, before.order, (size_t)tr.n * sizeof(int)) == 0;
        {
            float mn = res.losses[0];
            for (i = 1; i < res.n; i++) mn = res.losses[i] < mn ? res.losses[i] : mn;
            printf("  %d steps, lr %.2g to %.2g; smoothed loss: minimum %.3f, last %.3f%s\n", res.n, res.lrs[0],
                   res.lrs[res.n - 1], mn, res.losses[res.n - 1], res.losses[res.n - 1] > 4.0f * mn ? " (> 4x: stop)" : "");
        }
        printf("  suggestions: steepest descent lr %.3g, minimum/10 lr %.3g\n", res.lr_steep, res.lr_min);
        printf("  weights, optimizer state and loader after the sweep: %s; optimizer steps %d\n",
               same ? "bit-identical to before" : "CHANGED (a bug)", opt->steps);
        if (dlf_lr_find_plot(&res, "docs/img/05b_lr_find.svg", "LR finder: CNN on MNIST, SGD momentum 0.9") == DLF_OK)
            printf("  picture: docs/img/05b_lr_find.svg\n");
        steep = res.lr_steep;
        min10 = res.lr_min;
        dlf_lr_find_free(&res);
        dlf_loader_state_free(&before);
        dlf_optim_free(opt);
        printf("  one epoch from the same start, validation accuracy on %d images:\n", va.n);
        {
            const float lrs[4] = {steep, min10, 1e-3f, 1.0f};
            const char *names[4] = {"steepest", "min/10", "too low", "too high"};
            for (i = 0; i < 4; i++) {
                model_free(&m);
                model_init(&m, 1, 1);
                acc = accuracy_after_one_epoch(&tape, &m, train, valid, lrs[i]);
                printf("    lr %-9.3g (%-8s) accuracy %.4f\n", lrs[i], names[i], acc);
            }
        }
        model_free(&m);
    }

    printf("\n3. Early stopping (patience 3 on valid_loss) and save-best, the CNN on %d images, lr 0.1 constant\n",
           small.n);
    {
        dlf_optim_cfg oc;
        dlf_optim *opt;
        dlf_learner l;
        dlf_cb_progress prog;
        dlf_cb_recorder rec;
        dlf_cb_early_stop es;
        dlf_cb_save_best sb;
        float loss, acc;
        model_init(&m, 1, 2);
        memset(&oc, 0, sizeof oc);
        oc.lr = 0.1f;
        oc.momentum = 0.9f;
        opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &m.pl, &oc, 1);
        dlf_learner_init(&l, &tape, model_forward, &m, dlf_cross_entropy, opt, strain, valid);
        l.params = &m.pl;
        dlf_learner_add_metric(&l, "accuracy", dlf_metric_accuracy);
        dlf_cb_progress_init(&prog, 0);
        dlf_cb_recorder_init(&rec);
        dlf_cb_early_stop_init(&es, "valid_loss", 0.0f, 3);
        dlf_cb_save_best_init(&sb, "valid_loss", "build/05b_best.safetensors", 1);
        dlf_learner_add_cb(&l, &prog.cb);
        dlf_learner_add_cb(&l, &rec.cb);
        dlf_learner_add_cb(&l, &es.cb);
        dlf_learner_add_cb(&l, &sb.cb);
        if (dlf_learner_fit(&l, 30) != DLF_OK) { printf("  fit: %s\n", dlf_last_error()); return 1; }
        dlf_learner_validate(&l, valid, &loss, &acc);
        printf("  stopped after epoch %d of 30; the best was epoch %d (valid_loss %.4f), saved %d times;\n"
               "  the weights now (restored from it): valid_loss %.4f, accuracy %.4f\n",
               es.stopped_epoch, sb.t.best_epoch, sb.t.best, sb.saves, loss, acc);
        if (dlf_cb_recorder_plot_loss(&rec, "docs/img/05b_early_stop.svg", "early stopping: CNN, 1000 images, lr 0.1") == DLF_OK)
            printf("  picture: docs/img/05b_early_stop.svg\n");
        dlf_cb_recorder_free(&rec);
        dlf_optim_free(opt);
        model_free(&m);
    }
    dlf_tape_destroy(&tape);
    dlf_loader_free(ttr);
    dlf_loader_free(tva);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_loader_free(strain);
    dlf_mnist_free(&data);
    return 0;
}
