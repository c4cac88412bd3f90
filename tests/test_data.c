/* test_data.c - stage 13: the IDX reader, datasets, normalization and the loader.

   Every malformed-file case must give an error code and a message that names the
   file and the problem, never a crash or an over-read (run `make asan` to be sure).
   Allocations are counted through DLF_MALLOC so we can check that a loader step
   allocates nothing. */
#include <stdlib.h>
#define TH_COUNT_ALLOCS  /* count dlf's heap allocations (see harness.h) */
#define DLF_IMPLEMENTATION
#include "harness.h"

static char tmp_prefix[512];

/* Write n bytes to <exe>.tmp-<name> and return the path (static buffer per call slot). */
static const char *write_tmp(const char *name, const unsigned char *bytes, size_t n, char *path, size_t cap)
{
    FILE *f;
    snprintf(path, cap, "%s.tmp-%s", tmp_prefix, name);
    f = fopen(path, "wb");
    if (!f) { printf("cannot write %s\n", path); return path; }
    if (n) fwrite(bytes, 1, n, f);
    fclose(f);
    return path;
}

static void put_be32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24); b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);  b[3] = (unsigned char)v;
}

/* A valid image file of n items of rows x cols, pixel = (i*7 + j) & 255; returns its size. */
static size_t make_images(unsigned char *buf, int n, int rows, int cols)
{
    int i, total = n * rows * cols;
    put_be32(buf, 0x00000803u);
    put_be32(buf + 4, (uint32_t)n);
    put_be32(buf + 8, (uint32_t)rows);
    put_be32(buf + 12, (uint32_t)cols);
    for (i = 0; i < total; i++) buf[16 + i] = (unsigned char)((i * 7 + i / (rows * cols)) & 255);
    return 16 + (size_t)total;
}

static size_t make_labels(unsigned char *buf, int n, int classes)
{
    int i;
    put_be32(buf, 0x00000801u);
    put_be32(buf + 4, (uint32_t)n);
    for (i = 0; i < n; i++) buf[8 + i] = (unsigned char)((i * 3) % classes);
    return 8 + (size_t)n;
}

/* Load a file that must be rejected with `code`; its message must name the file and hold `what`. */
static void expect_reject(const char *name, const unsigned char *bytes, size_t n, int code, const char *what)
{
    char path[600];
    dlf_idx x;
    int rc;
    write_tmp(name, bytes, n, path, sizeof path);
    dlf_clear_error();
    rc = dlf_idx_load(path, &x);
    CHECK(rc == code, "%s: expected code %d, got %d (%s)", name, code, rc, dlf_last_error());
    CHECK(strstr(dlf_last_error(), path) != NULL, "%s: message \"%s\" does not name the file", name, dlf_last_error());
    CHECK(strstr(dlf_last_error(), what) != NULL, "%s: message \"%s\" lacks \"%s\"", name, dlf_last_error(), what);
    CHECK(x.data == NULL, "%s: no buffer is left behind on failure", name);
    /* the in-memory parser must agree */
    rc = dlf_idx_parse(bytes, n, name, &x);
    CHECK(rc == code, "%s (memory): expected code %d, got %d", name, code, rc);
    CHECK(strstr(dlf_last_error(), name) != NULL && strstr(dlf_last_error(), what) != NULL,
          "%s (memory): message \"%s\"", name, dlf_last_error());
    remove(path);
}

static void test_idx_valid(void)
{
    static unsigned char buf[16 + 5 * 4 * 3];
    char path[600];
    dlf_idx x;
    size_t n = make_images(buf, 5, 4, 3);
    int rc, ok = 1;
    size_t i;
    GROUP("idx valid");
    write_tmp("ok-images", buf, n, path, sizeof path);
    rc = dlf_idx_load(path, &x);
    CHECK(rc == DLF_OK, "valid image file rejected: %s", dlf_last_error());
    if (rc == DLF_OK) {
        CHECK(x.ndim == 3 && x.dims[0] == 5 && x.dims[1] == 4 && x.dims[2] == 3 && x.size == 60,
              "dims %d (%d,%d,%d) size %zu", x.ndim, x.dims[0], x.dims[1], x.dims[2], x.size);
        for (i = 0; i < x.size; i++) ok &= x.data[i] == buf[16 + i];
        CHECK(ok, "payload bytes differ");
        dlf_idx_free(&x);
    }
    remove(path);
    n = make_labels(buf, 7, 10);
    rc = dlf_idx_parse(buf, n, "labels", &x);
    CHECK(rc == DLF_OK && x.ndim == 1 && x.dims[0] == 7 && x.size == 7, "valid label bytes: rc %d", rc);
    if (rc == DLF_OK) dlf_idx_free(&x);
}

static void test_idx_reject(void)
{
    static unsigned char img[16 + 10 * 28 * 28 + 8], bad[1024];
    size_t n = make_images(img, 10, 28, 28);
    char path[600];
    dlf_idx x;
    int rc;
    GROUP("idx reject");
    /* truncated at several points: empty, inside the magic, inside the dims, after
       the header, one byte short of the data */
    expect_reject("trunc-0", img, 0, DLF_ERR_FORMAT, "truncated");
    expect_reject("trunc-2", img, 2, DLF_ERR_FORMAT, "truncated");
    expect_reject("trunc-6", img, 6, DLF_ERR_FORMAT, "truncated");
    expect_reject("trunc-15", img, 15, DLF_ERR_FORMAT, "truncated");
    expect_reject("trunc-16", img, 16, DLF_ERR_FORMAT, "does not match the dims");
    expect_reject("trunc-half", img, 16 + 5 * 784, DLF_ERR_FORMAT, "truncated");
    expect_reject("trunc-1", img, n - 1, DLF_ERR_FORMAT, "truncated");
    /* trailing bytes: the dims describe less than the file holds */
    img[n] = 0; img[n + 1] = 0;
    expect_reject("trailing", img, n + 1, DLF_ERR_FORMAT, "trailing bytes");
    /* bad magic: garbage, a 2-dim file, int8 instead of uint8, a gzip header */
    memcpy(bad, img, 16);
    put_be32(bad, 0x12345678u);
    expect_reject("magic-garbage", bad, 16, DLF_ERR_FORMAT, "bad magic 0x12345678");
    put_be32(bad, 0x00000802u);
    expect_reject("magic-2dims", bad, 16, DLF_ERR_FORMAT, "bad magic");
    put_be32(bad, 0x00000903u);
    expect_reject("magic-int8", bad, 16, DLF_ERR_FORMAT, "bad magic");
    bad[0] = 0x1f; bad[1] = 0x8b; bad[2] = 8; bad[3] = 0;
    expect_reject("magic-gzip", bad, 16, DLF_ERR_FORMAT, "bad magic");
    /* dims that do not match the size: a label file claiming 10 items holding 5 */
    make_labels(bad, 10, 10);
    expect_reject("labels-short", bad, 8 + 5, DLF_ERR_FORMAT, "does not match the dims");
    /* an image file with the right byte count but the wrong dims: 10x28x28 bytes as 9x28x28 */
    memcpy(bad, img, 16);
    put_be32(img + 4, 9);
    expect_reject("dims-wrong", img, n, DLF_ERR_FORMAT, "trailing bytes");
    put_be32(img + 4, 10);
    /* 0 items, and a 0 inner dim */
    make_labels(bad, 0, 10);
    expect_reject("zero-items", bad, 8, DLF_ERR_FORMAT, "0 items");
    memcpy(bad, img, 16);
    put_be32(bad + 12, 0);
    expect_reject("zero-cols", bad, 16, DLF_ERR_FORMAT, "dim 2 is 0");
    /* absurd dims: more than 2^31-1, and a product that would overflow 64 bits */
    memcpy(bad, img, 16);
    put_be32(bad + 4, 0xFFFFFFFFu);
    expect_reject("dims-huge", bad, 16 + 784, DLF_ERR_FORMAT, "absurd dims");
    put_be32(bad + 4, 0x7FFFFFFFu);
    put_be32(bad + 8, 0x7FFFFFFFu);
    put_be32(bad + 12, 0x7FFFFFFFu);
    expect_reject("dims-overflow", bad, 16 + 784, DLF_ERR_FORMAT, "does not match the dims");
    /* a file that does not exist: an I/O error naming it */
    snprintf(path, sizeof path, "%s.tmp-does-not-exist", tmp_prefix);
    rc = dlf_idx_load(path, &x);
    CHECK(rc == DLF_ERR_IO && strstr(dlf_last_error(), path) && strstr(dlf_last_error(), "cannot open"),
          "missing file: rc %d, \"%s\"", rc, dlf_last_error());
    /* images and labels that disagree on the count */
    {
        dlf_idx im, lb;
        dlf_dataset d;
        unsigned char lab[8 + 9];
        CHECK(dlf_idx_parse(img, n, "im", &im) == DLF_OK, "images parse");
        CHECK(dlf_idx_parse(lab, make_labels(lab, 9, 10), "lb", &lb) == DLF_OK, "labels parse");
        rc = dlf_dataset_from_idx(&d, &im, &lb, "pair");
        CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "10 images but 9 labels"),
              "count mismatch: rc %d \"%s\"", rc, dlf_last_error());
        CHECK(im.data && lb.data, "on failure the buffers stay with the caller");
        dlf_idx_free(&im);
        dlf_idx_free(&lb);
    }
}

/* A small in-memory dataset: n items of 2x2 pixels, labels i % 10. */
static void small_dataset(dlf_dataset *d, int n)
{
    static unsigned char img[16 + 64 * 4], lab[8 + 64];
    dlf_idx im, lb;
    make_images(img, n, 2, 2);
    make_labels(lab, n, 10);
    dlf_idx_parse(img, 16 + (size_t)n * 4, "small images", &im);
    dlf_idx_parse(lab, 8 + (size_t)n, "small labels", &lb);
    CHECK(dlf_dataset_from_idx(d, &im, &lb, "small") == DLF_OK, "small dataset: %s", dlf_last_error());
}

static void test_stats(void)
{
    dlf_dataset d;
    dlf_mnist m;
    dlf_mnist_cfg mc;
    float mean, std;
    double s = 0, s2 = 0, rm, rs;
    int i, rc;
    GROUP("stats");
    small_dataset(&d, 10);
    for (i = 0; i < 40; i++) { double v = d.images[i] / 255.0; s += v; s2 += v * v; }
    rm = s / 40;
    rs = sqrt(s2 / 40 - rm * rm);
    dlf_dataset_stats(&d, &mean, &std);
    CHECK(fabs(mean - rm) < 1e-6 && fabs(std - rs) < 1e-6, "mean %g std %g, ref %g %g", mean, std, rm, rs);
    dlf_dataset_free(&d);

    memset(&mc, 0, sizeof mc);
    mc.prefix = "mnist-sub-";
    mc.test_split = "test";
    rc = dlf_mnist_load(&m, "tests/data", &mc);
    CHECK(rc == DLF_OK, "load tests/data subset: %s", dlf_last_error());
    if (rc != DLF_OK) return;
    CHECK(m.all_train.n == 1000 && m.test.n == 500 && m.all_train.rows == 28 && m.all_train.cols == 28,
          "subset sizes %d %d", m.all_train.n, m.test.n);
    CHECK(m.valid.n == 1000 / 6 && m.train.n == 1000 - 1000 / 6, "default split n/6: %d + %d", m.train.n, m.valid.n);
    CHECK(m.valid.images == m.all_train.images + (size_t)m.train.n * 784 && !m.valid.owns && !m.train.owns,
          "valid is a view on the end of train");
    CHECK(m.train.n_classes == 10 && m.test.n_classes == 10, "10 classes");
    /* the stats are of the train part only, computed from the bytes */
    s = s2 = 0;
    for (i = 0; i < m.train.n * 784; i++) { double v = m.train.images[i] / 255.0; s += v; s2 += v * v; }
    rm = s / (m.train.n * 784.0);
    rs = sqrt(s2 / (m.train.n * 784.0) - rm * rm);
    CHECK(fabs(m.mean - rm) < 1e-6 && fabs(m.std - rs) < 1e-6, "mnist stats %g %g ref %g %g", m.mean, m.std, rm, rs);
    CHECK(m.mean > 0.10 && m.mean < 0.16 && m.std > 0.28 && m.std < 0.34, "MNIST-like stats %g %g", m.mean, m.std);
    dlf_mnist_free(&m);

    mc.n_valid = -1;
    rc = dlf_mnist_load(&m, "tests/data", &mc);
    CHECK(rc == DLF_OK && m.valid.n == 0 && m.train.n == 1000, "n_valid -1: no valid set");
    if (rc == DLF_OK) dlf_mnist_free(&m);
    mc.n_valid = 1000;
    rc = dlf_mnist_load(&m, "tests/data", &mc);
    CHECK(rc == DLF_ERR_ARG && strstr(dlf_last_error(), "n_valid 1000"), "n_valid = n is an error: %s",
          dlf_last_error());
    rc = dlf_mnist_load(&m, "tests/no-such-dir", NULL);
    CHECK(rc == DLF_ERR_IO && strstr(dlf_last_error(), "tests/no-such-dir/train-images-idx3-ubyte"),
          "missing dir: %s", dlf_last_error());
}

/* Items seen in one epoch; returns the number of batches and fills seen[] counts. */
static int run_epoch(dlf_loader *l, int *seen, int *order_out, int *sizes)
{
    int nb = 0, k, got = 0, c;
    while ((c = dlf_loader_next(l)) > 0) {
        for (k = 0; k < c; k++) {
            int label = (int)l->y->data[k];
            /* recover the item from its first normalized pixel: pixels are unique per item */
            int item = l->order[l->pos - c + k];
            seen[item]++;
            if (order_out) order_out[got] = item;
            CHECK(label == (item * 3) % 10, "label of item %d is %d", item, label);
            got++;
        }
        if (sizes) sizes[nb] = c;
        nb++;
    }
    return nb;
}

static void test_loader(void)
{
    dlf_dataset d;
    dlf_loader_cfg cfg;
    dlf_loader *a, *b, *c;
    int seen[64], oa[3][64], ob[64], sizes[16], e, i, nb, all_once, same, differ;
    long before;
    GROUP("loader");
    small_dataset(&d, 10);
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 3;
    cfg.shuffle = 1;
    cfg.seed = 42;
    cfg.mean = 0.5f;
    cfg.std = 0.25f;
    a = dlf_loader_create(&d, &cfg);
    b = dlf_loader_create(&d, &cfg);
    cfg.seed = 43;
    c = dlf_loader_create(&d, &cfg);
    CHECK(a->n_batches == 4 && a->x->shape[0] == 3 && a->x->shape[1] == 1 && a->x->shape[2] == 2 &&
          a->x->shape[3] == 2 && a->y->shape[0] == 3, "batch tensors (3,1,2,2) and (3,), 4 batches");
    /* every item exactly once per epoch, batches 3,3,3,1 */
    differ = 0;
    for (e = 0; e < 3; e++) {
        memset(seen, 0, sizeof seen);
        before = th_allocs;
        nb = run_epoch(a, seen, oa[e], sizes);
        CHECK(th_allocs == before, "epoch %d allocated %ld times", e, th_allocs - before);
        all_once = 1;
        for (i = 0; i < 10; i++) all_once &= seen[i] == 1;
        CHECK(all_once, "epoch %d: every item exactly once", e);
        CHECK(nb == 4 && sizes[0] == 3 && sizes[3] == 1, "epoch %d: %d batches, last %d", e, nb, sizes[3]);
        CHECK(a->epoch == e + 1, "epoch counter %d", a->epoch);
        if (e) for (i = 0; i < 10; i++) differ |= oa[e][i] != oa[e - 1][i];
    }
    CHECK(differ, "the order changes from epoch to epoch");
    CHECK(a->x->shape[0] == 1 && a->x->size == 4 && a->y->size == 1, "a short batch shrinks shape[0]");
    /* same seed, same orders; another seed, another order */
    for (e = 0; e < 3; e++) {
        memset(seen, 0, sizeof seen);
        run_epoch(b, seen, ob, NULL);
        same = 1;
        for (i = 0; i < 10; i++) same &= ob[i] == oa[e][i];
        CHECK(same, "seed 42 gives the same order in epoch %d", e);
    }
    memset(seen, 0, sizeof seen);
    run_epoch(c, seen, ob, NULL);
    same = 1;
    for (i = 0; i < 10; i++) same &= ob[i] == oa[0][i];
    CHECK(!same, "seed 43 gives another order");
    /* normalization: x = (pixel/255 - mean) / std, per item in the batch */
    dlf_loader_next(a);
    {
        int k, j, ok = 1;
        for (k = 0; k < 3; k++) {
            int item = a->order[k];
            for (j = 0; j < 4; j++) {
                float want = ((float)d.images[item * 4 + j] / 255.0f - 0.5f) / 0.25f;
                ok &= fabsf(a->x->data[k * 4 + j] - want) < 1e-5f;
            }
        }
        CHECK(ok, "batch values are the normalized pixels of the shuffled items");
        CHECK(a->x->shape[0] == 3, "a full batch is back to 3 after a short one");
    }
    dlf_loader_free(a);
    dlf_loader_free(b);
    dlf_loader_free(c);

    /* drop_last: 3 batches of 3; each epoch 9 distinct items */
    cfg.drop_last = 1;
    a = dlf_loader_create(&d, &cfg);
    CHECK(a->n_batches == 3, "drop_last: %d batches", a->n_batches);
    for (e = 0; e < 2; e++) {
        int twice = 0, total = 0;
        memset(seen, 0, sizeof seen);
        nb = run_epoch(a, seen, NULL, sizes);
        for (i = 0; i < 10; i++) { twice |= seen[i] > 1; total += seen[i]; }
        CHECK(nb == 3 && total == 9 && !twice && sizes[2] == 3, "drop_last epoch %d: %d batches, %d items", e, nb, total);
    }
    dlf_loader_free(a);
    /* no shuffle: in order; batch larger than the dataset */
    cfg.drop_last = 0;
    cfg.shuffle = 0;
    cfg.batch_size = 16;
    a = dlf_loader_create(&d, &cfg);
    CHECK(a->n_batches == 1 && dlf_loader_next(a) == 10 && a->order[9] == 9 && dlf_loader_next(a) == 0,
          "one short in-order batch");
    dlf_loader_free(a);
    cfg.drop_last = 1;
    a = dlf_loader_create(&d, &cfg);
    CHECK(a->n_batches == 0 && dlf_loader_next(a) == 0, "drop_last with batch > n: no batches");
    dlf_loader_free(a);
    dlf_dataset_free(&d);
}

int main(int argc, char **argv)
{
    th_init();
    snprintf(tmp_prefix, sizeof tmp_prefix, "%s", argc > 0 ? argv[0] : "test_data");
    test_idx_valid();
    test_idx_reject();
    test_stats();
    test_loader();
    TEST_MAIN_END();
}
