/* 09b_learner.c - the final Learner (notebook 09b_learner, "Deep Learning from the
   Foundations", fast.ai; docs/learner.md, stage 14 of dlf.h: grep '>>stage14' dlf.h).

   What it shows
     1. Everything of the last lessons in one fit: the CNN with BatchNorm (lesson 07,
        conv-BatchNorm-ReLU, widths 8,16,32,64,64), AdamW with weight decay off the
        BatchNorm weights and the biases (two parameter groups, lesson 09), one-cycle for
        the lr *and* beta1 (OneCycleLR with cycle_momentum: beta1 0.95 -> 0.85 -> 0.95),
        the recorder, and the progress display of fastprogress: a bar per epoch redrawn
        in place on a terminal, then one row per epoch of epoch, train_loss, valid_loss,
        accuracy and time (in a log, only the rows). Pictures: docs/img/09b_loss.svg
        (training loss per batch, validation loss per epoch) and docs/img/09b_sched.svg
        (the lr and beta1 the recorder saw).
     2. Resuming a run exactly. The same fit, stopped by a callback in the middle of its
        second epoch and saved with dlf_learner_save, then continued by fresh objects
        (another model, optimizer, loaders, tape: only the file is shared) with
        dlf_learner_load and dlf_learner_fit: the final weights are compared with memcmp
        against the uninterrupted run's. The file holds the weights and BatchNorm
        buffers, the optimizer state, the loader's order, position and rng, the tape's
        rng, the step counters and the callbacks' state (here the recorder's curves).
   Data: data/mnist (run `make data`): the first 10000 training and 2000 validation
   images, and the 10000 test images; when it is missing the lesson falls back to the
   1000-image subset in tests/data and says so. About 10 seconds on a 2-core machine.

   In a debugger:   make debug && gdb build/debug/lessons/09b_learner
     break dlf_learner_add_state  what a checkpoint of a run holds
     break dlf__cb_sched_on       `p s->items[0]`, the lr schedule; `p l->step`
     break dlf__cb_progress_on    the fastprogress display */
#include <stdio.h>
#include <string.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

#define EPOCHS 3

typedef struct cnn {
    dlf_seq seq;
    dlf_params pl;
} cnn;

/* conv(5x5 then 3x3, stride 2, no bias) - BatchNorm2d - ReLU for each width, global
   average pool, flatten, linear: the flat nn.Sequential of examples/mnist_cnn.c --bn. */
static int cnn_init(cnn *m, uint64_t seed)
{
    static const int nfs[5] = {8, 16, 32, 64, 64};
    dlf_rng rng;
    int i, ok = 1;
    dlf_rng_seed(&rng, seed);
    dlf_seq_init(&m->seq);
    dlf_params_init(&m->pl);
    for (i = 0; i < 5 && ok; i++) {
        dlf_layer c = dlf_layer_conv2d(i ? nfs[i - 1] : 1, nfs[i], i ? 3 : 5, 2, i ? 1 : 2, 0, &rng);
        dlf_init_kaiming_normal(c.weight, &rng, 0.0f, DLF_FAN_IN);
        ok = dlf_seq_add(&m->seq, c) == DLF_OK && dlf_seq_add(&m->seq, dlf_layer_batchnorm(nfs[i])) == DLF_OK &&
             dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_RELU)) == DLF_OK;
    }
    ok = ok && dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL)) == DLF_OK &&
         dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_FLATTEN)) == DLF_OK &&
         dlf_seq_add(&m->seq, dlf_layer_linear(64, 10, 1, &rng)) == DLF_OK;
    return ok && dlf_seq_collect(&m->seq, &m->pl) == DLF_OK;
}

static void cnn_free(cnn *m)
{
    dlf_params_free(&m->pl);
    dlf_seq_free(&m->seq);
}

static dlf_tensor *cnn_forward(dlf_tape *t, dlf_tensor *x, void *m)
{
    return dlf_seq_forward(t, &((cnn *)m)->seq, x);
}

/* Stops the fit after step `at` (then the run is saved between fits). */
typedef struct stopper {
    dlf_callback cb;
    long at;
} stopper;

static int stopper_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    return ev == DLF_EV_AFTER_BATCH && l->in_train && l->step == ((stopper *)cb)->at ? DLF_CB_CANCEL_FIT : DLF_CB_OK;
}

/* One complete setup: model, optimizer, loaders, tape, Learner and callbacks. */
typedef struct setup {
    cnn m;
    dlf_optim *opt;
    dlf_loader *train, *valid;
    dlf_tape tape;
    dlf_learner l;
    dlf_cb_progress prog;
    dlf_cb_sched sched;
    dlf_cb_recorder rec;
} setup;

static int setup_init(setup *s, const dlf_dataset *tr, const dlf_dataset *va, float mean, float std, int quiet)
{
    dlf_optim_cfg g[2];
    dlf_loader_cfg lc;
    memset(s, 0, sizeof *s);
    if (!cnn_init(&s->m, 1)) return 0;
    memset(g, 0, sizeof g);
    g[0].lr = 0.01f;
    g[0].weight_decay = 0.1f;
    g[1] = g[0];
    g[1].weight_decay = 0.0f;
    dlf_params_group_no_decay(&s->m.pl, 1);     /* BatchNorm weights and biases: group 1 */
    s->opt = dlf_optim_create_groups(DLF_OPTIM_ADAMW, &s->m.pl, g, 2);
    memset(&lc, 0, sizeof lc);
    lc.mean = mean;
    lc.std = std;
    lc.batch_size = 64;
    lc.shuffle = 1;
    lc.seed = 1;
    s->train = dlf_loader_create(tr, &lc);
    lc.batch_size = 500;
    lc.shuffle = 0;
    s->valid = dlf_loader_create(va, &lc);
    if (!s->opt || !s->train || !s->valid) return 0;
    dlf_tape_init(&s->tape);
    dlf_learner_init(&s->l, &s->tape, cnn_forward, &s->m, dlf_cross_entropy, s->opt, s->train, s->valid);
    s->l.params = &s->m.pl;
    dlf_learner_add_metric(&s->l, "accuracy", dlf_metric_accuracy);
    dlf_cb_progress_init(&s->prog, quiet);
    dlf_cb_sched_init(&s->sched);
    dlf_cb_sched_add(&s->sched, DLF_HYPER_LR, -1, dlf_sched_one_cycle(0.01, 0.3, 25.0, 1e4, 0));
    dlf_cb_sched_add(&s->sched, DLF_HYPER_MOM, -1, dlf_sched_one_cycle_mom(0.85, 0.95, 0.3, 0));
    dlf_cb_recorder_init(&s->rec);
    dlf_learner_add_cb(&s->l, &s->prog.cb);
    dlf_learner_add_cb(&s->l, &s->sched.cb);
    dlf_learner_add_cb(&s->l, &s->rec.cb);
    return 1;
}

static void setup_free(setup *s)
{
    dlf_cb_recorder_free(&s->rec);
    dlf_learner_free(&s->l);
    dlf_tape_destroy(&s->tape);
    dlf_optim_free(s->opt);
    dlf_loader_free(s->train);
    dlf_loader_free(s->valid);
    cnn_free(&s->m);
}

/* memcmp of every weight and buffer of two models. */
static int same_bits(const cnn *a, const cnn *b)
{
    int i, same = a->pl.n == b->pl.n;
    for (i = 0; same && i < a->pl.n; i++)
        same = memcmp(a->pl.items[i].t->data, b->pl.items[i].t->data, (size_t)a->pl.items[i].t->size * sizeof(float)) == 0;
    return same;
}

int main(void)
{
    dlf_mnist data;
    dlf_dataset tr, va;
    dlf_loader_cfg lc;
    dlf_loader *test;
    setup a, b, c;
    stopper st;
    float acc, loss;
    long stop_at;
    printf("09b_learner: the final Learner\n");
    if (lesson_load_mnist(&data, "  ") < 0) return 1;
    tr = dlf_dataset_view(&data.train, 0, data.train.n < 10000 ? data.train.n : 10000);
    va = dlf_dataset_view(&data.valid, 0, data.valid.n < 2000 ? data.valid.n : 2000);
    memset(&lc, 0, sizeof lc);
    lc.mean = data.mean;
    lc.std = data.std;
    lc.batch_size = 500;
    test = dlf_loader_create(&data.test, &lc);

    printf("\n1. CNN with BatchNorm, AdamW (wd 0.1 off BatchNorm and biases), one-cycle lr 0.01 and beta1,\n"
           "   %d epochs over %d images, validation on %d\n\n", EPOCHS, tr.n, va.n);
    if (!test || !setup_init(&a, &tr, &va, data.mean, data.std, 0)) { printf("  out of memory\n"); return 1; }
    if (dlf_learner_fit(&a.l, EPOCHS) != DLF_OK) { printf("  fit: %s\n", dlf_last_error()); return 1; }
    acc = dlf_evaluate(&a.tape, cnn_forward, &a.m, test, &loss);
    printf("\n  test set (%d images): loss %.4f, accuracy %.4f; %ld steps, %.1f s of training\n", data.test.n, loss, acc,
           a.l.step, a.l.train_seconds);
    if (dlf_cb_recorder_plot_loss(&a.rec, "docs/img/09b_loss.svg", "09b: CNN with BatchNorm, one-cycle, AdamW") == DLF_OK &&
        dlf_cb_recorder_plot_sched(&a.rec, "docs/img/09b_sched.svg", "09b: the lr and beta1 of each step") == DLF_OK)
        printf("  pictures: docs/img/09b_loss.svg, docs/img/09b_sched.svg\n");

    stop_at = a.l.total_steps / EPOCHS + a.l.total_steps / EPOCHS / 3;   /* a third into epoch 2 */
    printf("\n2. The same run stopped after step %ld (epoch 2, batch %ld), saved, and resumed by fresh objects\n",
           stop_at, stop_at - a.l.total_steps / EPOCHS);
    if (!setup_init(&b, &tr, &va, data.mean, data.std, 1)) return 1;
    memset(&st, 0, sizeof st);
    st.cb.name = "stopper";
    st.cb.order = 60;
    st.cb.on = stopper_on;
    st.at = stop_at;
    dlf_learner_add_cb(&b.l, &st.cb);
    dlf_learner_fit(&b.l, EPOCHS);
    if (dlf_learner_save(&b.l, "build/09b_run.safetensors") != DLF_OK) { printf("  save: %s\n", dlf_last_error()); return 1; }
    printf("  stopped at step %ld (cancelled: %d); saved build/09b_run.safetensors\n", b.l.step, b.l.cancelled);
    setup_free(&b);
    if (!setup_init(&c, &tr, &va, data.mean, data.std, 0)) return 1;
    if (dlf_learner_load(&c.l, "build/09b_run.safetensors") != DLF_OK) { printf("  load: %s\n", dlf_last_error()); return 1; }
    printf("  resuming at epoch %d, step %ld of %ld:\n\n", c.l.epoch + 1, c.l.step, c.l.total_steps);
    if (dlf_learner_fit(&c.l, 0) != DLF_OK) { printf("  fit: %s\n", dlf_last_error()); return 1; }
    printf("\n  final weights and BatchNorm buffers: %s the uninterrupted run's\n",
           same_bits(&a.m, &c.m) ? "bit-identical to" : "DIFFERENT from (a bug)");
    printf("  the resumed run's recorder holds all %d steps (the first %ld from the file): %s\n", c.rec.n, stop_at,
           c.rec.n == a.rec.n && memcmp(c.rec.loss, a.rec.loss, (size_t)a.rec.n * sizeof(float)) == 0 ? "the same curve as the uninterrupted run's"
                                                                                                   : "a different curve (a bug)");
    setup_free(&c);
    setup_free(&a);
    dlf_loader_free(test);
    dlf_mnist_free(&data);
    return 0;
}
