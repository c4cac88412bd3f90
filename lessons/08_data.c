/* 08_data.c - the data block: dataset, split, sampler, collate and transforms (the course's
   notebook 08_data_block, "Deep Learning from the Foundations", fast.ai; docs/data.md,
   docs/augment.md, stage 13 of dlf.h: grep '>>stage13' dlf.h).

   What it shows
     The course builds its data pipeline from small pieces: a list of items, a split into
     training and validation sets, labels, a sampler that orders the items of an epoch, a
     collate function that stacks items into a batch, and transforms. In dlf:
     1. The dataset and its split. Fashion-MNIST's 60000 training images stay one buffer
        of bytes; the training and validation sets are two views on it (the last 10000
        validate, a fixed split), the test set is its own file. dlf_dataset_split makes a
        seeded random split instead (copies). The class counts of each split.
     2. The sampler. A shuffling loader draws a fresh permutation at each epoch start from
        its own rng, seeded once: the first indices of epoch 1 and epoch 2 differ, another
        loader with the same seed repeats them, one with seed 2 does not; an in-order
        loader (validation) gives 0, 1, 2, ...
     3. Collate. A batch is x (64, 1, 28, 28) and y (64): the pixels of the sampled
        items, converted and normalized through a 256-entry table, and their labels as
        floats. The loader is its sampler plus dlf_dataset_fill (the same bits). The mean
        and std of a batch and of a whole epoch, as pixel/255 and normalized with the
        training set's statistics (per channel: ch_mean, ch_std).
     4. Transforms. A loader's transform hook runs a dlf_augment pipeline on every batch,
        after it is filled: random resized crop, affine, crop with padding, flip, erasing,
        then normalize, in that order. The hook's rng is seeded, so two loaders with the
        same seeds give the same augmented batches; the pipeline's scratch image is made
        once, so an epoch of batches allocates nothing (counted through DLF_MALLOC). The
        picture docs/img/08_augmented.svg shows four training images: each transform
        alone (left), and five batches of the whole pipeline as the loader gives them
        (right).
     Measured on 2026-11-27 (2 cores), Fashion-MNIST: the fixed split leaves 4950 to 5045
     images of each class in training (the random one 4895 to 5038); the training pixels
     have mean 0.2855 and std 0.3528, so a normalized epoch has mean 0.0000 and std 1.0000
     while its first batch has -0.0305 and 0.9707; an epoch of augmented batches made 0
     allocations, and the pipeline took 1.07 ms per batch of 64 against 0.04 ms for
     filling the batch.
   Data: data/fashion (`make data`); without it the MNIST subset in tests/data (1000
   training images, 200 of them validate; digits are not mirrored). About 1.2 seconds on
   a 2-core machine.

   In a debugger:   make debug && gdb build/debug/lessons/08_data
     break dlf_loader_next        `p l->pos`, `p l->order[0]@8`: the sampler's order
     break dlf_rng_permutation    a new epoch's shuffle
     break dlf_aug_image          one transform of one image: `p a->kind`, `p *a` */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "count_allocs.h"   /* n_allocs: dlf's allocations, counted */
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

static const char *const fashion_names[10] = {"T-shirt", "trouser", "pullover", "dress", "coat",
                                              "sandal", "shirt", "sneaker", "bag", "boot"};
static const char *const digit_names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

/* The transform hook's state: the pipeline and the rng it draws from. */
typedef struct aug_hook {
    dlf_augment *aug;
    dlf_rng rng;
    int rc;                  /* the first failure, DLF_OK while none */
} aug_hook;

static void aug_transform(dlf_tensor *x, dlf_tensor *y, void *user)
{
    aug_hook *h = (aug_hook *)user;
    int rc = dlf_augment_apply(h->aug, x, &h->rng);
    (void)y;
    if (h->rc == DLF_OK) h->rc = rc;
}

static void class_counts(const char *name, const dlf_dataset *d)
{
    int c, i, count[10] = {0};
    for (i = 0; i < d->n; i++)
        if (d->labels[i] < 10) count[d->labels[i]]++;
    printf("    %-21s %6d", name, d->n);
    for (c = 0; c < 10; c++) printf(" %8d", count[c]);
    printf("\n");
}

static void first_indices(const char *name, const dlf_loader *l)
{
    int i;
    printf("    %-34s", name);
    for (i = 0; i < 8; i++) printf(" %5d", l->order[i]);
    printf("\n");
}

/* Mean and std (population) of the first n floats of x, in double. */
static void stats(const float *x, size_t n, double *mean, double *std)
{
    double s = 0.0, s2 = 0.0;
    size_t i;
    for (i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    for (i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *std = sqrt(s2 / (double)n);
}

/* Mean and std over every pixel of one epoch of l (from its start), and of its first batch. */
static void epoch_stats(dlf_loader *l, double *b_mean, double *b_std, double *mean, double *std)
{
    double s = 0.0, s2 = 0.0, n = 0.0;
    size_t i;
    while (dlf_loader_next(l) > 0) {
        size_t m = (size_t)l->x->size;
        if (n == 0.0) stats(l->x->data, m, b_mean, b_std);
        for (i = 0; i < m; i++) {
            s += l->x->data[i];
            s2 += (double)l->x->data[i] * l->x->data[i];
        }
        n += (double)m;
    }
    *mean = s / n;
    *std = sqrt(s2 / n - *mean * *mean);
}

#define PX 28        /* image side */
#define GAP 2        /* grey (NaN) pixels between the images of a mosaic */
#define MROWS 4      /* images, one per mosaic row */
#define MCOLS 6      /* columns: raw, then five */

/* Put image (PX x PX) into mosaic cell (r, c). */
static void put(float *mosaic, int r, int c, const float *img)
{
    int i, W = MCOLS * PX + (MCOLS - 1) * GAP;
    for (i = 0; i < PX; i++) memcpy(mosaic + (size_t)(r * (PX + GAP) + i) * W + c * (PX + GAP), img + i * PX, PX * sizeof(float));
}

int main(void)
{
    dlf_mnist data;
    dlf_dataset rtr, rva, four;
    dlf_loader_cfg lc;
    dlf_loader *l1, *l2, *l3, *seq, *raw, *pc, *aa, *ab;
    dlf_tensor *x, *y;
    dlf_augment aug;
    aug_hook ha, hb, hg;
    const char *const *names;
    float ch_mean, ch_std, *m_left, *m_right, mean_v, img[PX * PX], scratch[PX * PX];
    double bm = 0.0, bs = 0.0, em, es, t0, t_plain, t_aug;
    int i, k, r, c, fashion, pick[MROWS], same, batches;
    long allocs;
    char sx[32], sy[32];

    printf("08: the data block\n\n");
    if ((fashion = lesson_load_fashion(&data, 0)) < 0) return 1;
    names = fashion ? fashion_names : digit_names;

    /* 1. the dataset and its split */
    printf("\n1. Dataset and split: items per split and per class\n\n    %-21s %6s", "split", "items");
    for (c = 0; c < 10; c++) printf(" %8s", names[c]);
    printf("\n");
    class_counts("training file", &data.all_train);
    class_counts("  train (view, first)", &data.train);
    class_counts("  valid (view, last)", &data.valid);
    class_counts("test file", &data.test);
    if (dlf_dataset_split(&data.all_train, (double)data.valid.n / data.all_train.n, 42, &rtr, &rva) != DLF_OK) {
        printf("  split: %s\n", dlf_last_error());
        return 1;
    }
    class_counts("random split: train", &rtr);
    class_counts("random split: valid", &rva);
    printf("    (the views share the file's bytes; dlf_dataset_split copies, seed 42)\n");
    dlf_dataset_free(&rtr);
    dlf_dataset_free(&rva);

    /* 2. the sampler */
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 64;
    lc.shuffle = 1;
    lc.seed = 1;
    lc.mean = data.mean;
    lc.std = data.std;
    l1 = dlf_loader_create(&data.train, &lc);
    l2 = dlf_loader_create(&data.train, &lc);
    lc.seed = 2;
    l3 = dlf_loader_create(&data.train, &lc);
    lc.shuffle = 0;
    seq = dlf_loader_create(&data.valid, &lc);
    if (!l1 || !l2 || !l3 || !seq) { printf("  out of memory\n"); return 1; }
    printf("\n2. Sampler: the first 8 item indices of an epoch (%d items, %d batches of 64)\n\n", data.train.n,
           l1->n_batches);
    dlf_loader_next(l1);
    first_indices("shuffle, seed 1, epoch 1", l1);
    while (dlf_loader_next(l1) > 0) {}
    dlf_loader_next(l1);
    first_indices("shuffle, seed 1, epoch 2", l1);
    dlf_loader_next(l2);
    first_indices("another loader, seed 1, epoch 1", l2);
    dlf_loader_next(l3);
    first_indices("shuffle, seed 2, epoch 1", l3);
    dlf_loader_next(seq);
    first_indices("in order (validation)", seq);

    /* 3. collate: the batch, the same as dlf_dataset_fill; its statistics */
    printf("\n3. Collate: x %s, y %s; labels of the first 8:", dlf_shape_str(l2->x, sx, sizeof sx),
           dlf_shape_str(l2->y, sy, sizeof sy));
    for (i = 0; i < 8; i++) printf(" %s", names[(int)l2->y->data[i]]);
    x = dlf_tensor_new4(64, 1, PX, PX);
    y = dlf_tensor_new1(64);
    if (!x || !y) { printf("  out of memory\n"); return 1; }
    dlf_dataset_fill(&data.train, l2->order, 64, l2->lut, x, y);
    printf("\n   dlf_dataset_fill of the same 64 indices: %s\n\n",
           memcmp(x->data, l2->x->data, (size_t)x->size * sizeof(float)) == 0 &&
                   memcmp(y->data, l2->y->data, 64 * sizeof(float)) == 0
               ? "the same bits (the loader is sampler + collate)"
               : "DIFFERENT (a bug)");
    dlf_dataset_channel_stats(&data.train, &ch_mean, &ch_std);
    printf("    training set statistics: mean %.4f, std %.4f\n\n", ch_mean, ch_std);
    printf("    %-36s %11s %10s %11s %10s\n", "loader", "batch mean", "batch std", "epoch mean", "epoch std");
    for (k = 0; k < 3; k++) {
        memset(&lc, 0, sizeof lc);
        lc.batch_size = 64;
        lc.shuffle = 1;
        lc.seed = 1;
        if (k == 1) { lc.mean = data.mean; lc.std = data.std; }
        if (k == 2) { lc.ch_mean = &ch_mean; lc.ch_std = &ch_std; }
        raw = dlf_loader_create(&data.train, &lc);
        if (!raw) { printf("  out of memory\n"); return 1; }
        epoch_stats(raw, &bm, &bs, &em, &es);
        printf("    %-36s %11.4f %10.4f %11.4f %10.4f\n",
               k == 0 ? "pixel/255 (std 0)" : k == 1 ? "normalized (mean, std)" : "normalized per channel (ch_mean)",
               bm, bs, em, es);
        dlf_loader_free(raw);
    }
    dlf_tensor_free(x);
    dlf_tensor_free(y);

    /* 4. transforms: the pipeline in a loader's hook */
    mean_v = data.mean;
    dlf_augment_init(&aug);
    dlf_augment_add(&aug, dlf_aug_resized_crop(0.5f, 1.0f, 3.0f / 4.0f, 4.0f / 3.0f));
    dlf_augment_add(&aug, dlf_aug_affine(0.5f, 15.0f, 0.0f, 0.9f, 1.1f));
    dlf_augment_add(&aug, dlf_aug_crop_pad(2));
    if (fashion) dlf_augment_add(&aug, dlf_aug_flip(0.5f));   /* a mirrored 2 is no digit */
    dlf_augment_add(&aug, dlf_aug_erase(0.5f, 0.02f, 0.15f, 0.3f, 3.3f, mean_v));
    dlf_augment_add(&aug, dlf_aug_normalize(1, &data.mean, &data.std));
    if (dlf_augment_reserve(&aug, 1, PX, PX) != DLF_OK) { printf("  out of memory\n"); return 1; }
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 64;
    lc.shuffle = 1;
    lc.seed = 1;
    lc.transform = aug_transform;   /* std 0: the pipeline sees pixel/255 and normalizes last */
    memset(&ha, 0, sizeof ha);
    ha.aug = &aug;
    dlf_rng_seed(&ha.rng, 42);
    hb = ha;
    lc.transform_user = &ha;
    aa = dlf_loader_create(&data.train, &lc);
    lc.transform_user = &hb;
    ab = dlf_loader_create(&data.train, &lc);
    lc.transform = NULL;
    lc.mean = data.mean;
    lc.std = data.std;
    pc = dlf_loader_create(&data.train, &lc);
    if (!aa || !ab || !pc) { printf("  out of memory\n"); return 1; }
    printf("\n4. Transforms: random resized crop (scale 0.5-1), affine (p 0.5, 15 degrees, zoom 0.9-1.1),\n"
           "   crop with padding 2,%s erasing (p 0.5, the mean pixel), normalize, in a loader's hook\n\n",
           fashion ? " flip (p 0.5)," : "");
    same = 1;
    for (k = 0; k < 3; k++) {
        dlf_loader_next(aa);
        dlf_loader_next(ab);
        same = same && memcmp(aa->x->data, ab->x->data, (size_t)aa->x->size * sizeof(float)) == 0;
    }
    for (k = 0; k < 3; k++) dlf_loader_next(pc);
    stats(aa->x->data, (size_t)aa->x->size, &bm, &bs);
    printf("    two loaders, the same seeds, 3 batches each: %s\n", same ? "the same augmented bits" : "DIFFERENT (a bug)");
    printf("    an augmented batch: mean %.4f, std %.4f\n", bm, bs);
    /* the rest of the epoch, allocations counted and timed, with and without the pipeline */
    allocs = n_allocs;
    t0 = dlf_seconds();
    for (batches = 0; dlf_loader_next(aa) > 0; batches++) {}
    t_aug = dlf_seconds() - t0;
    allocs = n_allocs - allocs;
    t0 = dlf_seconds();
    while (dlf_loader_next(pc) > 0) {}
    t_plain = dlf_seconds() - t0;
    printf("    the rest of the epoch, %d batches: %ld allocations; %.3f ms per batch with the pipeline, "
           "%.3f without\n", batches, allocs, 1e3 * t_aug / batches, 1e3 * t_plain / batches);
    if (ha.rc != DLF_OK || hb.rc != DLF_OK) { printf("  the pipeline failed: %s\n", dlf_last_error()); return 1; }

    /* the picture: four images of different classes, the first of each in the training set */
    for (k = 0; k < MROWS; k++) {
        static const int want[MROWS] = {0, 1, 7, 9};   /* T-shirt, trouser, sneaker, boot (digits 0 1 7 9) */
        for (i = 0; i < data.train.n && data.train.labels[i] != want[k]; i++) {}
        if (i == data.train.n) { printf("  class %d not found\n", want[k]); return 1; }
        pick[k] = i;
    }
    {
        size_t cells = (size_t)(MROWS * PX + (MROWS - 1) * GAP) * (MCOLS * PX + (MCOLS - 1) * GAP);
        const float *panels[2];
        const char *titles[2];
        dlf_loader *lf;
        dlf_rng rg;
        m_left = (float *)malloc(2 * cells * sizeof(float));
        if (!m_left || dlf_dataset_subset(&data.train, pick, MROWS, &four) != DLF_OK) { printf("  out of memory\n"); return 1; }
        m_right = m_left + cells;
        for (i = 0; i < (int)(2 * cells); i++) m_left[i] = NAN;   /* the gaps: grey */
        /* left: the raw image (pixel/255), then each transform alone (probability 1) */
        dlf_rng_seed(&rg, 3);
        for (r = 0; r < MROWS; r++)
            for (c = 0; c < MCOLS; c++) {
                dlf_aug t = c == 1 ? dlf_aug_flip(1.0f)
                          : c == 2 ? dlf_aug_crop_pad(4)
                          : c == 3 ? dlf_aug_resized_crop(0.35f, 1.0f, 3.0f / 4.0f, 4.0f / 3.0f)
                          : c == 4 ? dlf_aug_affine(1.0f, 30.0f, 0.1f, 0.8f, 1.2f)
                                   : dlf_aug_erase(1.0f, 0.05f, 0.2f, 0.3f, 3.3f, mean_v);
                for (i = 0; i < PX * PX; i++) img[i] = four.images[(size_t)r * PX * PX + i] / 255.0f;
                if (c > 0 && dlf_aug_image(&t, img, 1, PX, PX, &rg, scratch) != DLF_OK) {
                    printf("  %s\n", dlf_last_error());
                    return 1;
                }
                put(m_left, r, c, img);
            }
        /* right: the raw image normalized, then five epochs of a loader over the four images
           (one batch each) with the pipeline in its hook: what a model would be given */
        for (r = 0; r < MROWS; r++) {
            for (i = 0; i < PX * PX; i++) img[i] = (four.images[(size_t)r * PX * PX + i] / 255.0f - data.mean) / data.std;
            put(m_right, r, 0, img);
        }
        memset(&lc, 0, sizeof lc);
        lc.batch_size = MROWS;
        lc.transform = aug_transform;
        memset(&hg, 0, sizeof hg);
        hg.aug = &aug;
        dlf_rng_seed(&hg.rng, 7);
        lc.transform_user = &hg;
        lf = dlf_loader_create(&four, &lc);
        if (!lf) { printf("  out of memory\n"); return 1; }
        for (c = 1; c < MCOLS; c++) {
            dlf_loader_next(lf);   /* the epoch's one batch */
            for (r = 0; r < MROWS; r++) put(m_right, r, c, lf->x->data + (size_t)r * PX * PX);
            dlf_loader_next(lf);   /* 0: the epoch is over */
        }
        panels[0] = m_left;
        panels[1] = m_right;
        titles[0] = "raw, flip, crop, resized crop, affine, erase";
        titles[1] = "raw, then five draws of the pipeline";
        if (dlf_svg_image_grid("docs/img/08_augmented.svg", fashion ? "08: augmented Fashion-MNIST images" : "08: augmented MNIST images",
                               titles, NULL, "four training images",
                               panels, MROWS * PX + (MROWS - 1) * GAP, MCOLS * PX + (MCOLS - 1) * GAP, 2, 2) == DLF_OK)
            printf("\n  picture: docs/img/08_augmented.svg\n");
        else
            printf("\n  picture not written: %s\n", dlf_last_error());
        dlf_loader_free(lf);
        dlf_dataset_free(&four);
        free(m_left);
    }

    dlf_augment_free(&aug);
    dlf_loader_free(l1);
    dlf_loader_free(l2);
    dlf_loader_free(l3);
    dlf_loader_free(seq);
    dlf_loader_free(aa);
    dlf_loader_free(ab);
    dlf_loader_free(pc);
    dlf_mnist_free(&data);
    return 0;
}
