/* 11a_transfer_learning.c - pretrain on one task, fine-tune on a small labelled subset of
   another, against training from scratch on the same subset (the course's notebook
   11a_transfer_learning, "Deep Learning from the Foundations", fast.ai; docs/augment.md).

   What it shows
     The source task: Fashion-MNIST's first six classes (T-shirt, trouser, pullover, dress,
     coat, sandal), 30000 training images. The target task: the other four (shirt, sneaker,
     bag, ankle boot), with only 10 labelled images per class. One CNN (conv-BatchNorm-ReLU
     four times, global average pool, a linear head) is
       1. pretrained on the source task, saved as a checkpoint;
       2. loaded into models with a 4-class head: dlf_ckpt_get_param_list_matching copies
          every tensor whose name and shape match and reports the head it left at init;
       3. fine-tuned two ways: every layer at once, at the learning rate training from
          scratch uses; and the course's way, the body frozen (BatchNorm still trainable)
          while the new head learns, then everything unfrozen with discriminative learning
          rates (the body at a third of the head's, through two parameter groups);
     and the same model is trained from scratch on the same 40 images for as many epochs.
     It prints the three accuracies on the target classes' 4000 test images. Measured on
     2026-11-27: from scratch 0.887, every layer fine-tuned 0.905, the course's way 0.906.
   Data: data/fashion (run `make data`); without it the MNIST subset in tests/data, with
   digits 0-5 as the source and 6-9 as the target (the point is the same, the numbers
   noisier). About a minute on a 2-core machine.

   In a debugger:   make debug && gdb build/debug/lessons/11a_transfer_learning
     break dlf_ckpt_get_param_list_matching   `p rep->text` after it: what stayed at init
     break dlf_seq_freeze                     which tensors stop requiring grad */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

/* Which task each class belongs to, and its label there: the source task is Fashion-MNIST's
   first six classes (T-shirt, trouser, pullover, dress, coat, sandal), the target the last
   four (shirt, sneaker, bag, ankle boot). src_of[c] / tgt_of[c]: the label of class c in that
   task, or -1. */
static const int src_of[10] = {0, 1, 2, 3, 4, 5, -1, -1, -1, -1};
static const int tgt_of[10] = {-1, -1, -1, -1, -1, -1, 0, 1, 2, 3};
#define N_SRC 6
#define N_TGT 4
#define SRC_MAX 30000     /* source images used (of 36000) */
#define HEAD_EPOCHS 4     /* fine-tuning: the head alone, then */
#define FINE_EPOCHS 8     /* all layers */
#define PER_CLASS 10      /* labelled target images per class */

typedef struct cnn {
    dlf_seq seq;
    dlf_params pl;
} cnn;

static void cnn_build(cnn *m, int classes, uint64_t seed)
{
    static const int widths[4] = {16, 32, 64, 64};
    dlf_rng r;
    int i, c = 1;
    dlf_rng_seed(&r, seed);
    dlf_seq_init(&m->seq);
    for (i = 0; i < 4; i++) {
        dlf_seq_add(&m->seq, dlf_layer_conv2d(c, widths[i], i == 0 ? 5 : 3, 2, i == 0 ? 2 : 1, 0, &r));
        dlf_init_kaiming_normal(m->seq.layers[m->seq.n - 1].weight, &r, 0.0f, DLF_FAN_IN);
        dlf_seq_add(&m->seq, dlf_layer_batchnorm(widths[i]));
        dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_RELU));
        c = widths[i];
    }
    dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));
    dlf_seq_add(&m->seq, dlf_layer_linear(c, classes, 1, &r));   /* layer 13: the head */
    dlf_params_init(&m->pl);
    dlf_seq_collect(&m->seq, &m->pl);
}

static void cnn_free(cnn *m)
{
    dlf_params_free(&m->pl);
    dlf_seq_free(&m->seq);
}

/* The items of d whose class has a label in map (map[c] >= 0), relabelled, at most
   per_class of each (0: all), at most max_n in all. The dataset owns its copies. */
static dlf_dataset subset(const dlf_dataset *d, const int *map, int n_classes, int per_class, int max_n)
{
    dlf_dataset s;
    int i, count[10] = {0}, px = d->rows * d->cols;
    memset(&s, 0, sizeof s);
    s.images = (uint8_t *)malloc((size_t)d->n * px);
    s.labels = (uint8_t *)malloc((size_t)d->n);
    s.rows = d->rows;
    s.cols = d->cols;
    s.n_classes = n_classes;
    s.owns = 1;
    for (i = 0; i < d->n && s.n < max_n; i++) {
        int y = d->labels[i];
        if (y > 9 || map[y] < 0 || (per_class && count[y] == per_class)) continue;
        count[y]++;
        memcpy(s.images + (size_t)s.n * px, d->images + (size_t)i * px, (size_t)px);
        s.labels[s.n++] = (uint8_t)map[y];
    }
    return s;
}

static dlf_loader *loader(const dlf_dataset *d, int bs, int shuffle, float mean, float std)
{
    dlf_loader_cfg c;
    memset(&c, 0, sizeof c);
    c.batch_size = bs;
    c.shuffle = shuffle;
    c.seed = 7;
    c.mean = mean;
    c.std = std;
    return dlf_loader_create(d, &c);
}

/* epochs of AdamW with one-cycle at lr through the Learner; with two groups the body
   (group 0) peaks at lr * body_frac, the head (group 1) at lr. Returns the test accuracy. */
static float fit(cnn *m, dlf_loader *train, dlf_loader *test, int epochs, float lr, int groups, float body_frac)
{
    dlf_optim_cfg oc[2];
    dlf_optim *opt;
    dlf_tape t;
    dlf_learner l;
    dlf_cb_sched sch;
    float acc;
    int g;
    memset(oc, 0, sizeof oc);
    oc[0].lr = groups == 2 ? lr * body_frac : lr;
    oc[0].weight_decay = 0.01f;
    oc[1] = oc[0];
    oc[1].lr = lr;
    opt = dlf_optim_create_groups(DLF_OPTIM_ADAMW, &m->pl, oc, groups);
    dlf_tape_init(&t);
    dlf_learner_init(&l, &t, lesson_seq_model, &m->seq, dlf_cross_entropy, opt, train, NULL);
    l.params = &m->pl;
    dlf_cb_sched_init(&sch);   /* one-cycle for each group, up to its own peak */
    for (g = 0; g < groups; g++) dlf_cb_sched_add(&sch, DLF_HYPER_LR, g, dlf_sched_one_cycle(oc[g].lr, 0.3, 0, 0, 0));
    dlf_learner_add_cb(&l, &sch.cb);
    dlf_learner_fit(&l, epochs);
    acc = dlf_evaluate(&t, lesson_seq_model, &m->seq, test, NULL);
    dlf_learner_free(&l);
    dlf_tape_destroy(&t);
    dlf_optim_free(opt);
    return acc;
}

int main(void)
{
    dlf_mnist data;
    dlf_dataset src, tgt, tgt_test;
    dlf_loader *src_train, *tgt_train, *tgt_loader_test;
    dlf_ckpt ck;
    dlf_transfer_report rep;
    cnn pre, whole, fine, scratch;
    const char *path = "lesson_11a_pretrained.safetensors";
    float acc_src, acc_whole, acc_fine_head, acc_fine, acc_scratch;
    int fashion;
    printf("11a: transfer learning\n\n");
    if ((fashion = lesson_load_fashion(&data, 0)) < 0) return 1;
    src = subset(&data.train, src_of, N_SRC, 0, SRC_MAX);
    tgt = subset(&data.train, tgt_of, N_TGT, PER_CLASS, 100000);
    tgt_test = subset(&data.test, tgt_of, N_TGT, 0, 100000);
    printf("  source task: classes 0-5, %d training images; target task: classes 6-9, %d labelled images, "
           "%d test images\n\n", src.n, tgt.n, tgt_test.n);
    src_train = loader(&src, 64, 1, data.mean, data.std);
    tgt_train = loader(&tgt, 8, 1, data.mean, data.std);
    tgt_loader_test = loader(&tgt_test, 500, 0, data.mean, data.std);

    /* 1. pretrain on the source task and save */
    cnn_build(&pre, N_SRC, 1);
    {
        dlf_dataset src_test = subset(&data.test, src_of, N_SRC, 0, 100000);
        dlf_loader *lt = loader(&src_test, 500, 0, data.mean, data.std);
        acc_src = fit(&pre, src_train, lt, 2, 3e-3f, 1, 1.0f);
        dlf_loader_free(lt);
        dlf_dataset_free(&src_test);
    }
    printf("  1. pretrained on the source task: test accuracy %.4f\n", acc_src);
    dlf_ckpt_init(&ck);
    if (dlf_ckpt_add_param_list(&ck, &pre.pl) != DLF_OK || dlf_ckpt_save(&ck, path) != DLF_OK) {
        printf("cannot save %s: %s\n", path, dlf_last_error());
        return 1;
    }
    dlf_ckpt_free(&ck);

    /* 2. models for the target task, their bodies from the checkpoint */
    cnn_build(&whole, N_TGT, 2);
    cnn_build(&fine, N_TGT, 2);
    dlf_ckpt_init(&ck);
    if (dlf_ckpt_load(&ck, path) != DLF_OK || dlf_ckpt_get_param_list_matching(&ck, &whole.pl, &rep) != DLF_OK ||
        dlf_ckpt_get_param_list_matching(&ck, &fine.pl, &rep) != DLF_OK) {
        printf("cannot load %s: %s\n", path, dlf_last_error());
        return 1;
    }
    dlf_ckpt_free(&ck);
    remove(path);
    remove("lesson_11a_pretrained.safetensors.lock");   /* the save's lock file (docs/checkpoints.md) */
    printf("  2. loaded %d tensors from the checkpoint; left at their fresh init: %s\n", rep.n_loaded, rep.text);

    /* 3a. fine-tune every layer at once, at the rate training from scratch uses */
    acc_whole = fit(&whole, tgt_train, tgt_loader_test, HEAD_EPOCHS + FINE_EPOCHS, 3e-3f, 1, 1.0f);
    /* 3b. the course's way: the head alone (BatchNorm trainable), then everything, the body slower */
    printf("  3. fine-tune the course's way: %d tensors frozen (the convs; BatchNorm stays trainable)\n",
           dlf_seq_freeze(&fine.seq, fine.seq.n - 1, 1));
    acc_fine_head = fit(&fine, tgt_train, tgt_loader_test, HEAD_EPOCHS, 1e-2f, 1, 1.0f);
    dlf_seq_unfreeze(&fine.seq);
    dlf_params_set_group(&fine.pl, "13.", 1);   /* layer 13, the head, in group 1 */
    acc_fine = fit(&fine, tgt_train, tgt_loader_test, FINE_EPOCHS, 3e-3f, 2, 1.0f / 3.0f);
    printf("     head only, %d epochs: %.4f;  then all layers, the body at lr/3, %d epochs: %.4f\n", HEAD_EPOCHS,
           acc_fine_head, FINE_EPOCHS, acc_fine);

    /* the same model from scratch on the same images, as many epochs */
    cnn_build(&scratch, N_TGT, 2);
    acc_scratch = fit(&scratch, tgt_train, tgt_loader_test, HEAD_EPOCHS + FINE_EPOCHS, 3e-3f, 1, 1.0f);

    printf("\n  target task, %d labelled images, %d epochs each, test accuracy:\n", tgt.n, HEAD_EPOCHS + FINE_EPOCHS);
    printf("    %-44s %.4f\n", "from scratch", acc_scratch);
    printf("    %-44s %.4f\n", "pretrained, every layer fine-tuned", acc_whole);
    printf("    %-44s %.4f\n", "pretrained, head first, then discriminative", acc_fine);
    printf("  %s\n", acc_whole > acc_scratch || acc_fine > acc_scratch
                      ? "pretraining helps: the body's features carry over to the new classes"
                      : "pretraining did not help this time");

    cnn_free(&whole);
    cnn_free(&pre);
    cnn_free(&fine);
    cnn_free(&scratch);
    dlf_loader_free(src_train);
    dlf_loader_free(tgt_train);
    dlf_loader_free(tgt_loader_test);
    dlf_dataset_free(&src);
    dlf_dataset_free(&tgt);
    dlf_dataset_free(&tgt_test);
    dlf_mnist_free(&data);
    return 0;
}
