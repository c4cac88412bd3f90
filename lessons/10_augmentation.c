/* 10_augmentation.c - one CNN trained on 10000 Fashion-MNIST images, once on the plain
   images and once with data augmentation, long enough for the plain run to overfit (the
   course's notebook 10_augmentation, "Deep Learning from the Foundations", fast.ai;
   docs/augment.md, docs/learner.md).

   What it shows
     The course's recipe against overfitting starts with more data; augmentation makes
     more of the data there is: every epoch the network sees each training image shifted
     and mirrored differently, so memorizing the exact pixels pays less. The pipeline
     works on pixel/255 images, as torchvision's transforms do, and normalizes last (so
     the padding is black, like the images' background):
         crop_pad(2)    a random 28x28 window of the image padded by 2: a shift by up to
                        2 pixels (torchvision's RandomCrop(28, padding=2))
         flip(0.5)      mirrored left-right half of the time (RandomHorizontalFlip)
         normalize      (x - mean) / std with the training set's statistics
     It runs as a Learner callback, dlf_cb_augment, on training batches only; validation
     batches are never augmented. The plain run goes through the same callback with a
     pipeline of normalize alone, so the two transforms are the only difference.
     Both runs: the same CNN (conv-BatchNorm-ReLU at widths 16, 32, 64, 128, stride 2,
     global average pool, linear: about 98k weights, enough to memorize 10000 images),
     the same init and shuffle, AdamW at lr 3e-3 without weight decay, one-cycle, 16
     epochs. It prints the table the course looks at: per run the last epoch's training
     loss (on the batches as trained, augmented in the second run), the loss on the same
     training images without augmentation, the validation loss and accuracy, and the
     best validation loss with its epoch; docs/img/10_augmentation.svg has both runs'
     training and validation loss per epoch.
     Measured on 2026-11-27 (2 cores), seed 8:
         run         train loss  clean train  valid loss  accuracy  best valid (epoch)
         plain          0.0144       0.0107     0.4279     0.8840     0.3634 (9)
         augmented      0.2948       0.2528     0.3111     0.8848     0.3111 (16)
     The plain run overfits: after its best epoch its validation loss climbs while its
     training loss falls to 0.014 (valid/clean train 40x). With augmentation the
     validation loss falls to the last epoch and ends lowest (valid/clean train 1.2x).
     Accuracy is another matter: +0.1 points here, and +0.3 with seed 7 (-DSEED=7:
     plain 0.8822, augmented 0.8850; valid loss 0.4401 against 0.3128), both within one
     run's standard error on 5000 images (about 0.45 points). At this budget augmentation removed the overfitting but did not measurably
     raise the accuracy; the augmented run's training loss is still falling, so it is the
     one that would gain from more epochs (the course trains augmented models longer).
   Data: data/fashion (`make data`): the first 10000 training images and 5000 validation
   images; without it the MNIST subset in tests/data (800 training, 200 validation; its
   digits must not be mirrored, so there the pipeline only shifts). 50 seconds on a 2-core
   machine (74 with a second busy process).

   In a debugger:   make debug && gdb build/debug/lessons/10_augmentation
     break dlf__cb_augment_on   `p l->in_train`, then `p *l->xb` before and after: the batch
                                the model will be given
     break dlf_aug_image        one transform of one image: `p a->kind`, `p a->pad` */
#include <stdio.h>
#include <string.h>
#include <math.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

#define EPOCHS 16
#define LR 3e-3f
#define WD 0.0f           /* no weight decay: nothing else holds the memorizing back */
#ifndef SEED
#define SEED 8            /* the init, the shuffle and the augmentation draws */
#endif
#define N_TRAIN 10000
#define N_VALID 5000

typedef struct run {
    float train_loss;        /* the last epoch's, on the batches as trained */
    float clean_loss;        /* the training images without augmentation, after the fit */
    float valid_loss, acc;
    int best_epoch;          /* 1-based: the lowest validation loss */
    float best_valid;
    double seconds;
    float tl[EPOCHS], vl[EPOCHS];
} run;

static void build_cnn(dlf_seq *s, uint64_t seed)
{
    static const int widths[4] = {16, 32, 64, 128};
    dlf_rng r;
    dlf_rng_seed(&r, seed);
    dlf_seq_init(s);
    lesson_build_bn_cnn(s, widths, &r);
}

/* One fit of a fresh model (seed 7) with the pipeline aug on every training batch. */
static int train(dlf_augment *aug, dlf_loader *tr, dlf_loader *va, dlf_loader *tr_clean, run *out)
{
    dlf_seq s;
    dlf_params pl;
    dlf_optim_cfg oc;
    dlf_optim *opt;
    dlf_tape t;
    dlf_learner l;
    dlf_cb_sched sch;
    dlf_cb_recorder rec;
    dlf_cb_augment ca;
    dlf_cb_progress prog;
    int e, rc;
    build_cnn(&s, SEED);
    dlf_params_init(&pl);
    dlf_seq_collect(&s, &pl);
    memset(&oc, 0, sizeof oc);
    oc.lr = LR;
    oc.weight_decay = WD;
    opt = dlf_optim_create_groups(DLF_OPTIM_ADAMW, &pl, &oc, 1);
    dlf_tape_init(&t);
    dlf_learner_init(&l, &t, lesson_seq_model, &s, dlf_cross_entropy, opt, tr, va);
    l.params = &pl;
    dlf_learner_add_metric(&l, "accuracy", dlf_metric_accuracy);
    dlf_cb_sched_init(&sch);
    dlf_cb_sched_add(&sch, DLF_HYPER_LR, -1, dlf_sched_one_cycle(LR, 0.3, 0, 0, 0));
    dlf_cb_recorder_init(&rec);
    dlf_cb_augment_init(&ca, aug, 42 + SEED);
    dlf_cb_progress_init(&prog, 0);
    dlf_learner_add_cb(&l, &sch.cb);
    dlf_learner_add_cb(&l, &rec.cb);
    dlf_learner_add_cb(&l, &ca.cb);
    dlf_learner_add_cb(&l, &prog.cb);
    rc = dlf_learner_fit(&l, EPOCHS);
    if (rc == DLF_OK) {
        out->train_loss = l.train_loss;
        out->valid_loss = l.valid_loss;
        out->acc = l.metric_values[0];
        out->seconds = l.train_seconds;
        out->best_epoch = 0;
        for (e = 0; e < EPOCHS; e++) {
            out->tl[e] = rec.epoch_train[e];
            out->vl[e] = rec.epoch_valid[e];
            if (e == 0 || out->vl[e] < out->best_valid) {
                out->best_valid = out->vl[e];
                out->best_epoch = e + 1;
            }
        }
        rc = dlf_learner_validate(&l, tr_clean, &out->clean_loss, NULL);
    }
    if (rc != DLF_OK) printf("  fit: %s\n", dlf_last_error());
    dlf_cb_recorder_free(&rec);
    dlf_learner_free(&l);
    dlf_tape_destroy(&t);
    dlf_optim_free(opt);
    dlf_params_free(&pl);
    dlf_seq_free(&s);
    return rc;
}

int main(void)
{
    dlf_mnist data;
    dlf_dataset tr_set, va_set;
    dlf_loader_cfg lc;
    dlf_loader *tr, *va, *tr_clean;
    dlf_augment plain, aug;
    run a, b;
    float ep[EPOCHS];
    dlf_series sr[4];
    dlf_plot_cfg pc;
    int e, fashion;
    printf("10: data augmentation against overfitting\n\n");
    if ((fashion = lesson_load_fashion(&data, N_VALID)) < 0) return 1;
    tr_set = dlf_dataset_view(&data.train, 0, data.train.n < N_TRAIN ? data.train.n : N_TRAIN);
    va_set = data.valid;

    /* the training loaders give pixel/255 (std 0); the pipelines normalize last */
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 64;
    lc.shuffle = 1;
    lc.seed = SEED;
    tr = dlf_loader_create(&tr_set, &lc);
    lc.batch_size = 500;
    lc.shuffle = 0;
    lc.mean = data.mean;
    lc.std = data.std;
    va = dlf_loader_create(&va_set, &lc);
    tr_clean = dlf_loader_create(&tr_set, &lc);
    if (!tr || !va || !tr_clean) { printf("  out of memory\n"); return 1; }
    dlf_augment_init(&plain);
    dlf_augment_add(&plain, dlf_aug_normalize(1, &data.mean, &data.std));
    dlf_augment_init(&aug);
    dlf_augment_add(&aug, dlf_aug_crop_pad(2));
    if (fashion) dlf_augment_add(&aug, dlf_aug_flip(0.5f));   /* a mirrored 2 is no digit */
    dlf_augment_add(&aug, dlf_aug_normalize(1, &data.mean, &data.std));
    printf("  %d training images, %d validation images; %d epochs each, AdamW lr %g wd %g, one-cycle\n\n",
           tr_set.n, va_set.n, EPOCHS, (double)LR, (double)WD);

    printf("  plain (normalize only):\n");
    if (train(&plain, tr, va, tr_clean, &a) != DLF_OK) return 1;
    printf("\n  augmented (crop_pad(2)%s, normalize):\n", fashion ? ", flip(0.5)" : "");
    if (train(&aug, tr, va, tr_clean, &b) != DLF_OK) return 1;

    printf("\n  %-10s %6s %11s %12s %11s %9s %19s %8s\n", "run", "epochs", "train loss", "clean train", "valid loss",
           "accuracy", "best valid (epoch)", "seconds");
    printf("  %-10s %6d %11.4f %12.4f %11.4f %9.4f %14.4f (%2d) %8.1f\n", "plain", EPOCHS, a.train_loss, a.clean_loss,
           a.valid_loss, a.acc, a.best_valid, a.best_epoch, a.seconds);
    printf("  %-10s %6d %11.4f %12.4f %11.4f %9.4f %14.4f (%2d) %8.1f\n", "augmented", EPOCHS, b.train_loss, b.clean_loss,
           b.valid_loss, b.acc, b.best_valid, b.best_epoch, b.seconds);
    printf("  (train loss: the last epoch's batches as trained; clean train: the same images, not augmented)\n\n");
    printf("  overfitting, valid loss / clean train loss at the end: plain %.1fx, augmented %.1fx\n",
           a.valid_loss / a.clean_loss, b.valid_loss / b.clean_loss);
    printf("  final valid loss: %s\n", b.valid_loss < a.valid_loss ? "lower with augmentation" : "not lower with augmentation");
    {   /* one run's accuracy on n images has a standard error of about sqrt(p (1 - p) / n) */
        double p = 0.5 * (a.acc + b.acc), se = sqrt(p * (1.0 - p) / va_set.n), d = (double)b.acc - a.acc;
        printf("  accuracy: %+.2f points with augmentation; one run's standard error on %d images is about %.2f points,\n"
               "  %s\n", 100.0 * d, va_set.n, 100.0 * se,
               fabs(d) < 2.0 * se ? "so at this budget the difference is within the noise of a single run"
               : d > 0 ? "so augmentation helped more than the noise of a single run"
                       : "so augmentation cost accuracy at this budget");
    }

    for (e = 0; e < EPOCHS; e++) ep[e] = (float)(e + 1);
    memset(sr, 0, sizeof sr);
    sr[0].name = "plain: train"; sr[0].x = ep; sr[0].y = a.tl; sr[0].n = EPOCHS;
    sr[1].name = "plain: valid"; sr[1].x = ep; sr[1].y = a.vl; sr[1].n = EPOCHS;
    sr[2].name = "augmented: train"; sr[2].x = ep; sr[2].y = b.tl; sr[2].n = EPOCHS;
    sr[3].name = "augmented: valid"; sr[3].x = ep; sr[3].y = b.vl; sr[3].n = EPOCHS;
    memset(&pc, 0, sizeof pc);
    pc.title = fashion ? "10: 10000 Fashion-MNIST images, plain and augmented"
                       : "10: the MNIST subset, plain and augmented";
    pc.xlabel = "epoch";
    pc.ylabel = "cross-entropy";
    pc.logy = 1;
    if (dlf_svg_lines("docs/img/10_augmentation.svg", &pc, sr, 4) == DLF_OK)
        printf("\n  picture: docs/img/10_augmentation.svg\n");
    else
        printf("\n  picture not written: %s\n", dlf_last_error());

    dlf_augment_free(&plain);
    dlf_augment_free(&aug);
    dlf_loader_free(tr);
    dlf_loader_free(va);
    dlf_loader_free(tr_clean);
    dlf_mnist_free(&data);
    return 0;
}
