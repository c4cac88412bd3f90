/* test_checkpoint.c - checkpoints and bit-exact resume.
   Trains a small MLP on the committed MNIST subset with SGD + momentum and a
   shuffling loader. Run A goes 40 steps straight. Run B stops after 17 steps
   (mid-epoch), saves a checkpoint, and a *fresh process* (this program, started
   again with --resume) loads it into a model initialized with a different seed
   and takes the remaining 23 steps. Its losses must equal run A's bit for bit. */
#include <stdlib.h>
#define DLF_IMPLEMENTATION
#include "harness.h"

#define N_FIRST 17
#define N_TOTAL 40
#define HID 32

typedef struct {
    dlf_tensor *w1, *b1, *w2, *b2;   /* (HID,784) (HID) (10,HID) (10): nn.Linear's layout */
    dlf_tensor *params[4];
    dlf_tensor *onehot;              /* (64,10) scratch for the loss */
} model;

/* the state_dict names of nn.Sequential(Linear(784,HID), ReLU(), Linear(HID,10)) */
static const char *names[4] = {"0.weight", "0.bias", "2.weight", "2.bias"};

static void model_init(model *m, uint64_t seed)
{
    dlf_rng r;
    int s1[2] = {HID, 784}, s2[2] = {10, HID}, h = HID, ten = 10;
    dlf_rng_seed(&r, seed);
    m->w1 = dlf_param_new(2, s1); dlf_fill_normal(m->w1, &r, 0, sqrtf(2.0f / 784));
    m->b1 = dlf_param_new(1, &h);
    m->w2 = dlf_param_new(2, s2); dlf_fill_normal(m->w2, &r, 0, sqrtf(1.0f / HID));
    m->b2 = dlf_param_new(1, &ten);
    m->params[0] = m->w1; m->params[1] = m->b1; m->params[2] = m->w2; m->params[3] = m->b2;
    m->onehot = dlf_tensor_new2(64, 10);
}

static void model_free(model *m)
{
    int i;
    for (i = 0; i < 4; i++) dlf_tensor_free(m->params[i]);
    dlf_tensor_free(m->onehot);
}

/* cross-entropy from basic ops: mean over rows of logsumexp(z) - z[label] */
static dlf_tensor *loss_fn(dlf_tape *t, model *m, dlf_tensor *x, dlf_tensor *y)
{
    int s[2], i, n = x->shape[0];
    dlf_tensor *flat, *h, *z, *zmax, *lse, *picked, *oh;
    s[0] = n; s[1] = 784;
    flat = dlf_reshape(t, x, 2, s);
    h = dlf_relu(t, dlf_linear(t, flat, m->w1, m->b1));
    z = dlf_linear(t, h, m->w2, m->b2);
    zmax = dlf_max(t, z, 1, 1);
    lse = dlf_add(t, dlf_log(t, dlf_sum(t, dlf_exp(t, dlf_sub(t, z, zmax)), 1, 1)), zmax);
    s[1] = 10;
    oh = dlf_tape_tensor(t, 2, s);
    for (i = 0; i < n; i++) oh->data[i * 10 + (int)y->data[i]] = 1.0f;
    picked = dlf_sum(t, dlf_mul(t, oh, z), 1, 1);
    return dlf_mean_all(t, dlf_sub(t, lse, picked));
}

typedef struct { dlf_mnist data; dlf_loader *loader; dlf_optim *opt; dlf_tape tape; model m; dlf_params pl; } run;

static int run_open(run *r, uint64_t init_seed)
{
    dlf_mnist_cfg mc;
    dlf_loader_cfg lc;
    dlf_optim_cfg sc;
    int i;
    memset(&mc, 0, sizeof mc);
    memset(&lc, 0, sizeof lc);
    memset(&sc, 0, sizeof sc);
    mc.n_valid = -1;
    mc.prefix = "mnist-sub-";
    mc.test_split = "test";
    if (dlf_mnist_load(&r->data, "tests/data", &mc) != DLF_OK) {
        printf("cannot load tests/data: %s\n", dlf_last_error());
        return 0;
    }
    lc.batch_size = 64;
    lc.shuffle = 1;
    lc.drop_last = 1;
    lc.seed = 7;
    lc.mean = r->data.mean;
    lc.std = r->data.std;
    r->loader = dlf_loader_create(&r->data.train, &lc);
    model_init(&r->m, init_seed);
    sc.lr = 0.05f;
    sc.momentum = 0.9f;
    sc.weight_decay = 1e-4f;
    dlf_params_init(&r->pl);  /* the parameters under their names: the optimizer keeps the names */
    for (i = 0; i < 4; i++)
        if (dlf_params_add(&r->pl, r->m.params[i], names[i], 0) != DLF_OK) return 0;
    r->opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &r->pl, &sc, 1);
    dlf_tape_init(&r->tape);
    return r->loader && r->opt;
}

static void run_close(run *r)
{
    dlf_tape_destroy(&r->tape);
    dlf_optim_free(r->opt);
    dlf_params_free(&r->pl);
    dlf_loader_free(r->loader);
    model_free(&r->m);
    dlf_mnist_free(&r->data);
}

/* steps [from, to): one batch each, wrapping to a new epoch when one ends */
static void train(run *r, int from, int to, float *losses)
{
    int s;
    for (s = from; s < to; s++) {
        dlf_tensor *loss;
        if (dlf_loader_next(r->loader) == 0) dlf_loader_next(r->loader);
        dlf_tape_reset(&r->tape);
        dlf_optim_zero_grad(r->opt);
        loss = loss_fn(&r->tape, &r->m, r->loader->x, r->loader->y);
        dlf_backward(&r->tape, loss);
        dlf_optim_step(r->opt);
        losses[s] = loss->data[0];
    }
}

static int resume_child(const char *ckpt, const char *out)
{
    run r;
    dlf_ckpt c;
    float losses[N_TOTAL];
    long long step;
    FILE *f;
    if (!run_open(&r, 999)) return 2;           /* a different init: the checkpoint must overwrite it */
    dlf_ckpt_init(&c);
    if (dlf_ckpt_load(&c, ckpt) != DLF_OK ||
        dlf_ckpt_get_params(&c, r.m.params, names, 4) != DLF_OK ||
        dlf_ckpt_get_optim(&c, r.opt, names) != DLF_OK ||
        dlf_ckpt_get_loader(&c, "train", r.loader) != DLF_OK ||
        dlf_ckpt_get_int(&c, "step", &step) != DLF_OK) {
        printf("resume failed: %s\n", dlf_last_error());
        return 3;
    }
    dlf_ckpt_free(&c);
    train(&r, (int)step, N_TOTAL, losses);
    f = fopen(out, "wb");
    if (!f) return 4;
    fwrite(losses + step, sizeof(float), (size_t)(N_TOTAL - step), f);
    fclose(f);
    run_close(&r);
    return 0;
}

int main(int argc, char **argv)
{
    run a, b;
    float la[N_TOTAL], lb[N_TOTAL];
    const char *ckpt = "build/test_resume.safetensors", *out = "build/test_resume.losses";
    char cmd[1024];
    dlf_ckpt c;
    int rc, i, same = 1;
    FILE *f;
    if (argc == 4 && strcmp(argv[1], "--resume") == 0) return resume_child(argv[2], argv[3]);
    th_init();
    GROUP("resume");
    if (!run_open(&a, 1) || !run_open(&b, 1)) {
        CHECK(0, "could not set up the runs");
        TEST_MAIN_END();
    }
    train(&a, 0, N_TOTAL, la);
    train(&b, 0, N_FIRST, lb);
    CHECK(memcmp(la, lb, sizeof(float) * N_FIRST) == 0, "two runs from one seed agree");
    CHECK(la[N_TOTAL - 1] < la[0], "the loss goes down (%g -> %g)", la[0], la[N_TOTAL - 1]);
    dlf_ckpt_init(&c);
    dlf_ckpt_add_params(&c, b.m.params, names, 4);
    CHECK(dlf_ckpt_add_optim(&c, b.opt, names) == DLF_OK, "add_optim: %s", dlf_last_error());
    dlf_ckpt_add_loader(&c, "train", b.loader);
    dlf_ckpt_set_int(&c, "step", N_FIRST);
    dlf_ckpt_set_int(&c, "epoch", b.loader->epoch);
    dlf_ckpt_set_float(&c, "lr", 0.05);
    rc = dlf_ckpt_save(&c, ckpt);
    CHECK(rc == DLF_OK, "checkpoint saved: %s", dlf_last_error());
    dlf_ckpt_free(&c);
    snprintf(cmd, sizeof cmd, "%s --resume %s %s", th_self(argv[0]), ckpt, out);
    rc = system(cmd);
    CHECK(rc == 0, "the resumed process ran (%d)", rc);
    f = fopen(out, "rb");
    CHECK(f && fread(lb + N_FIRST, sizeof(float), N_TOTAL - N_FIRST, f) == N_TOTAL - N_FIRST, "read resumed losses");
    if (f) fclose(f);
    for (i = N_FIRST; i < N_TOTAL; i++) same &= memcmp(&la[i], &lb[i], sizeof(float)) == 0;
    CHECK(same, "resumed losses equal the uninterrupted run bit for bit");
    printf("  step %d: uninterrupted %.9g, resumed %.9g\n", N_TOTAL - 1, la[N_TOTAL - 1], lb[N_TOTAL - 1]);
    {   /* the checkpoint reads back with its metadata, and mismatches are named */
        dlf_tensor *wrong = dlf_tensor_new2(10, 10);
        double lr;
        long long ep;
        dlf_ckpt_init(&c);
        CHECK(dlf_ckpt_load(&c, ckpt) == DLF_OK, "reload");
        {   /* compare stored doubles: where FLT_EVAL_METHOD != 0 (x87) a literal may carry more precision */
            volatile double want_lr = 0.05;
            CHECK(dlf_ckpt_get_float(&c, "lr", &lr) == DLF_OK && lr == want_lr, "lr metadata exact");
        }
        CHECK(dlf_ckpt_get_int(&c, "epoch", &ep) == DLF_OK && ep == b.loader->epoch, "epoch metadata");
        CHECK(dlf_safetensors_find(&c.file, "optim.momentum_buffer.0.weight") != NULL, "momentum buffer stored under PyTorch's key");
        CHECK(dlf_ckpt_get_tensor(&c, "0.weight", wrong) == DLF_ERR_FORMAT &&
              strstr(dlf_last_error(), "has shape (32, 784) in the file but (10, 10) in the model"), "shape mismatch named: %s", dlf_last_error());
        CHECK(dlf_ckpt_get_tensor(&c, "9.weight", wrong) == DLF_ERR_FORMAT &&
              strstr(dlf_last_error(), "no tensor \"9.weight\""), "missing tensor named: %s", dlf_last_error());
        CHECK(dlf_ckpt_get_int(&c, "nope", &ep) == DLF_ERR_FORMAT, "missing metadata is an error");
        dlf_ckpt_free(&c);
        dlf_tensor_free(wrong);
    }
    {   /* the one-call pair: parameters (a dlf_params list) and SGD state out and back in */
        run c2;
        const char *path = "build/test_ckpt_training.safetensors";
        const char *meta[2] = {"note", "one call"};
        int k, same = 1;
        CHECK(dlf_ckpt_save_training(path, &b.pl, b.opt, meta, 1) == DLF_OK,
              "save_training: %s", dlf_last_error());
        CHECK(run_open(&c2, 5), "a second model");
        CHECK(dlf_ckpt_load_training(path, &c2.pl, c2.opt) == DLF_OK,
              "load_training: %s", dlf_last_error());
        for (k = 0; k < 4; k++) {
            same &= memcmp(c2.m.params[k]->data, b.m.params[k]->data, sizeof(float) * (size_t)b.m.params[k]->size) == 0;
            same &= memcmp(c2.opt->params[k].state[0], b.opt->params[k].state[0], sizeof(float) * (size_t)b.m.params[k]->size) == 0;
        }
        for (k = 0; k < 4; k++) same &= c2.opt->params[k].step == b.opt->params[k].step;
        CHECK(same && c2.opt->steps == b.opt->steps, "weights, momentum buffers and step counts come back bit for bit");
        CHECK(dlf_ckpt_load_training("build/no_such.safetensors", &c2.pl, c2.opt) == DLF_ERR_IO &&
              strstr(dlf_last_error(), "build/no_such.safetensors") != NULL, "a missing file is named: %s", dlf_last_error());
        {   /* an optimizer made from a bare array keeps no names: the list's names for the
               same tensors are used; a tensor the list does not have is refused */
            dlf_optim *bare = dlf_optim_create(DLF_OPTIM_SGD, b.m.params, 4, &b.opt->groups[0]);
            dlf_optim *bare2 = dlf_optim_create(DLF_OPTIM_SGD, b.m.params, 4, &b.opt->groups[0]);
            dlf_tensor *stray = dlf_param_new(1, (int[]){3});
            dlf_optim *foreign = dlf_optim_create(DLF_OPTIM_SGD, &stray, 1, &b.opt->groups[0]);
            int ok = 1;
            for (k = 0; k < 4; k++) {   /* give it state to save */
                bare->params[k].step = b.opt->params[k].step;
                memcpy(bare->params[k].state[0], b.opt->params[k].state[0], sizeof(float) * (size_t)b.m.params[k]->size);
            }
            CHECK(dlf_ckpt_save_training(path, &b.pl, bare, NULL, 0) == DLF_OK, "bare optimizer saved under the list's names: %s",
                  dlf_last_error());
            CHECK(dlf_ckpt_load_training(path, &b.pl, bare2) == DLF_OK, "and loaded: %s", dlf_last_error());
            for (k = 0; k < 4; k++)
                ok &= bare2->params[k].step == bare->params[k].step &&
                      memcmp(bare2->params[k].state[0], bare->params[k].state[0], sizeof(float) * (size_t)b.m.params[k]->size) == 0;
            CHECK(ok, "its momentum buffers come back by name");
            stray->grad[0] = 1.0f;
            dlf_optim_step(foreign);
            CHECK(dlf_ckpt_save_training(path, &b.pl, foreign, NULL, 0) == DLF_ERR_ARG &&
                  strstr(dlf_last_error(), "has no name") != NULL, "a tensor the list lacks is refused: %s", dlf_last_error());
            dlf_optim_free(bare);
            dlf_optim_free(bare2);
            dlf_optim_free(foreign);
            dlf_tensor_free(stray);
        }
        run_close(&c2);
        remove(path);
    }
    run_close(&a);
    run_close(&b);
    remove(out);
    TEST_MAIN_END();
}
