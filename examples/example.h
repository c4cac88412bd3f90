/* example.h - what the examples share, so each example file holds only its model
   and its defaults: the command-line flags, loading MNIST or Fashion-MNIST, the
   loaders, the optimizer, loading and saving checkpoints, training with the Learner
   (progress table, schedules, recorder, LR finder, early stopping, resume), the
   course's CNN (with or without BatchNorm) and the last line
       test_accuracy=0.XXXX epochs=N train_seconds=S
   Include it after dlf.h (with DLF_IMPLEMENTATION defined in the example).

   Flags (each example sets its own defaults first; --help prints them):
       --epochs N     passes over the training set
       --lr X         peak learning rate of the one-cycle schedule (the constant one's lr)
       --bs N         batch size
       --seed N       weights and shuffle order; same seed, same numbers
       --data DIR     directory holding the four IDX files (train-images-idx3-ubyte ...)
       --device D     cpu (the default), or cuda: matmul and conv2d run on the GPU
                      (only in a build with -DDLF_CUDA and dlf_cuda.o: `make cuda`)
       --threads N    OpenMP threads, always (default: all, or fewer while a busy
                      machine makes fewer faster: the thread governor)
       --opt K        sgd (momentum 0.9), adam or adamw (betas 0.9, 0.999)
       --wd X         weight decay: an L2 term in the gradient for sgd and adam, decoupled
                      (p *= 1 - lr wd) for adamw; never on biases and BatchNorm weights
       --sched S      onecycle (the default: OneCycleLR, cosine warm-up of the lr from
                      lr/25 over the first 30% of the steps, then cosine anneal to
                      lr/25e4, with momentum (SGD) or beta1 (Adam, AdamW) cycled
                      0.95 -> 0.85 -> 0.95 as its cycle_momentum does), cos (cosine from
                      lr to 0, CosineAnnealingLR), const, or sgdr (cosine restarts,
                      the first cycle one epoch long, each next one twice as long)
       --lr-find      before training, run the LR finder (1e-7 to 10 over 100 steps; the
                      weights and optimizer come back bit for bit, so the training
                      after it is the same), print its suggestions and write its
                      picture (lr_find.svg, in --plot DIR or the current directory)
       --plot DIR     after training, write DIR/loss.svg (training loss per step,
                      validation loss per epoch) and DIR/sched.svg (lr and momentum)
       --early-stop N stop when the validation loss has not improved for N epochs
       --stop-at N    stop after N training steps (mid-epoch is fine); with --save the
                      file holds the whole run's state, for --resume
       --resume PATH  continue a run saved with --save exactly where it stopped (same
                      model, optimizer, schedule, data order: read from the file; the
                      flags that set them are ignored), giving the same final weights
                      as a run that never stopped
       --subset       the small MNIST subset committed in tests/data (800 train, 200
                      valid, 500 test images), for quick checks
       --bn           (CNN examples) convs without bias, each followed by BatchNorm2d;
                      it has its own defaults for --lr, --opt, --wd and --nfs
       --nfs A,B,..   (CNN examples) output channels of the stride-2 convs, 1 to 8 of them
       --save PATH    after training, write a checkpoint (safetensors: weights and
                      BatchNorm buffers under PyTorch's state_dict names, the optimizer's
                      state, the whole run's state for --resume, metadata)
       --load PATH    start from a checkpoint's weights and buffers (and optimizer state,
                      if it has one): a dlf checkpoint or a PyTorch state_dict saved as
                      safetensors. Without --opt the file's optimizer kind is used.
       --eval-only    no training: evaluate the (loaded) weights on the test set, in
                      eval mode (BatchNorm uses its running statistics)
       --show N       after training, draw N test images as ASCII art with the
                      predicted label beside the true one
       --help */
#ifndef DLF_EXAMPLE_H
#define DLF_EXAMPLE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EX_SCHED_ONECYCLE = 0, EX_SCHED_COS, EX_SCHED_CONST, EX_SCHED_SGDR };
static const char *const ex_sched_names[4] = {"onecycle", "cos", "const", "sgdr"};

/* Defaults that depend on the model variant (plain or --bn). */
typedef struct ex_defaults {
    float lr;              /* peak learning rate */
    dlf_optim_kind opt;    /* optimizer kind */
    float wd;              /* weight decay */
    float lr_other;        /* lr when --opt switches between sgd and adam/adamw (the
                              adaptive kinds want a much smaller one); wd is then 0 */
    const char *nfs;       /* CNN examples: conv output channels, "8,16,32,32" */
} ex_defaults;

typedef struct ex_options {
    const char *prog;      /* "mnist_cnn", for messages */
    const char *what;      /* one line on what the program trains, for --help */
    const char *dataset;   /* "MNIST", for messages */
    const char *const *class_names; /* (10) for --show, or NULL: the class ids */
    int has_bn;            /* 1: --bn is accepted */
    ex_defaults plain;     /* defaults without --bn */
    ex_defaults with_bn;   /* defaults with --bn */
    int epochs;            /* --epochs */
    int bs;                /* --bs */
    unsigned long seed;    /* --seed */
    const char *data;      /* --data */
    int threads;           /* --threads (0: OpenMP's default) */
    const char *device;    /* --device: "cpu" or "cuda" */
    const char *save;      /* --save: checkpoint to write after training, or NULL */
    const char *load;      /* --load: checkpoint to start from, or NULL */
    int eval_only;         /* --eval-only: skip training */
    int show;              /* --show: test images to draw */
    /* set by ex_parse (from the flags or the defaults above) */
    int bn;                /* --bn */
    float lr;              /* --lr */
    dlf_optim_kind opt;    /* --opt */
    int opt_given;         /* 1: --opt was on the command line */
    float wd;              /* --wd */
    int sched;             /* --sched: EX_SCHED_* */
    int lr_find;           /* --lr-find */
    const char *plot;      /* --plot DIR, or NULL */
    int early_stop;        /* --early-stop N (0: off) */
    long stop_at;          /* --stop-at N (0: off) */
    const char *resume;    /* --resume PATH, or NULL */
    int subset;            /* --subset */
    const char *nfs;       /* --nfs */
    float lr_flag, wd_flag; /* --lr, --wd as given; < 0: not given */
} ex_options;

/* The model as the shared code sees it: a forward function, every tensor under its
   state_dict name (buffers included), and the number of classes. */
typedef struct ex_model {
    dlf_model_fn forward;          /* x (N,1,28,28) -> logits (N,10) */
    void *m;                       /* passed to forward */
    dlf_params params;             /* parameters and buffers in state_dict order */
} ex_model;

static const char *ex_kind_name(dlf_optim_kind k) { return dlf_optim_kind_name(k); }

static void ex_usage(FILE *f, const ex_options *o)
{
    fprintf(f, "usage: %s [--epochs N] [--lr X] [--bs N] [--seed N] [--data DIR] [--threads N] [--device cpu|cuda]\n"
               "       [--opt sgd|adam|adamw] [--wd X] [--sched onecycle|cos|const|sgdr]%s\n"
               "       [--lr-find] [--plot DIR] [--early-stop N] [--stop-at N] [--resume PATH]\n"
               "       [--save PATH] [--load PATH] [--eval-only] [--show N] [--subset] [--help]\n"
               "  %s\n  defaults: --epochs %d --bs %d --seed %lu --data %s --sched onecycle\n"
               "            --lr %g --opt %s --wd %g (another --opt: --wd 0,\n            and --lr %g between sgd and adam/adamw)\n",
            o->prog, o->has_bn ? " [--bn] [--nfs A,B,...]" : "", o->what, o->epochs, o->bs, o->seed, o->data,
            (double)o->plain.lr, ex_kind_name(o->plain.opt), (double)o->plain.wd,
            (double)o->plain.lr_other);
    if (o->has_bn)
        fprintf(f, "            --nfs %s\n  with --bn: --lr %g --opt %s --wd %g --nfs %s (another --opt: --wd 0,\n            and --lr %g between sgd and adam/adamw)\n",
                o->plain.nfs, (double)o->with_bn.lr, ex_kind_name(o->with_bn.opt), (double)o->with_bn.wd,
                o->with_bn.nfs, (double)o->with_bn.lr_other);
}

/* lr and wd from the flags, else from the defaults for o->opt. */
static void ex_resolve(ex_options *o)
{
    const ex_defaults *d = o->bn ? &o->with_bn : &o->plain;
    o->lr = o->lr_flag >= 0.0f ? o->lr_flag : (o->opt == DLF_OPTIM_SGD) == (d->opt == DLF_OPTIM_SGD) ? d->lr : d->lr_other;
    o->wd = o->wd_flag >= 0.0f ? o->wd_flag : o->opt == d->opt ? d->wd : 0.0f;  /* an AdamW decay is no L2 term */
}

/* --resume: the run's settings come from the file (the flags that would change the
   model, the optimizer, the schedule or the data order are ignored). 0 on error. */
static int ex_resume_settings(ex_options *o, int *opt, float *lr, float *wd, const char **nfs)
{
    static char nfs_buf[64];
    dlf_ckpt c;
    double v;
    long long n;
    const char *s;
    int ok = 1, k;
    dlf_ckpt_init(&c);
    if (dlf_ckpt_load(&c, o->resume) != DLF_OK) {
        fprintf(stderr, "%s: --resume: %s\n", o->prog, dlf_last_error());
        return 0;
    }
    if (!dlf_ckpt_get_meta(&c, "learner.step")) {
        fprintf(stderr, "%s: --resume %s: the file holds no run state (written by --save of dlf 0.3 or later?)\n",
                o->prog, o->resume);
        dlf_ckpt_free(&c);
        return 0;
    }
    if ((s = dlf_ckpt_get_meta(&c, "optim.kind")) != NULL) *opt = dlf_optim_kind_from_name(s);
    if (dlf_ckpt_get_float(&c, "lr", &v) == DLF_OK) *lr = (float)v; else ok = 0;
    if (dlf_ckpt_get_float(&c, "weight_decay", &v) == DLF_OK) *wd = (float)v; else ok = 0;
    if (dlf_ckpt_get_int(&c, "learner.epochs", &n) == DLF_OK) o->epochs = (int)n; else ok = 0;
    if (dlf_ckpt_get_int(&c, "bs", &n) == DLF_OK) o->bs = (int)n; else ok = 0;
    if (dlf_ckpt_get_int(&c, "seed", &n) == DLF_OK) o->seed = (unsigned long)n; else ok = 0;
    if (dlf_ckpt_get_int(&c, "bn", &n) == DLF_OK) o->bn = (int)n;
    if (dlf_ckpt_get_int(&c, "subset", &n) == DLF_OK) o->subset = (int)n;
    if ((s = dlf_ckpt_get_meta(&c, "sched")) != NULL)
        for (k = 0; k < 4; k++)
            if (strcmp(s, ex_sched_names[k]) == 0) o->sched = k;
    if ((s = dlf_ckpt_get_meta(&c, "nfs")) != NULL) {
        snprintf(nfs_buf, sizeof nfs_buf, "%s", s);
        *nfs = nfs_buf;
    }
    if (!ok) fprintf(stderr, "%s: --resume %s: the file lacks the example's settings (lr, weight_decay, bs, seed)\n",
                     o->prog, o->resume);
    dlf_ckpt_free(&c);
    return ok;
}

/* Parse argv over the defaults already in *o; 0 (with a message) on a bad flag. */
static int ex_parse(int argc, char **argv, ex_options *o)
{
    float lr = -1.0f, wd = -1.0f;
    int opt = -1, i;
    const char *nfs = NULL;
    const ex_defaults *d;
    o->sched = EX_SCHED_ONECYCLE;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { ex_usage(stdout, o); exit(0); }
        if (strcmp(a, "--eval-only") == 0) { o->eval_only = 1; continue; }
        if (strcmp(a, "--lr-find") == 0) { o->lr_find = 1; continue; }
        if (strcmp(a, "--subset") == 0) { o->subset = 1; continue; }
        if (strcmp(a, "--bn") == 0 && o->has_bn) { o->bn = 1; continue; }
        v = i + 1 < argc ? argv[++i] : NULL;   /* every other flag takes one value */
        if (!v) { fprintf(stderr, "%s: %s needs a value (or is unknown)\n", o->prog, a); return 0; }
        if (strcmp(a, "--epochs") == 0) o->epochs = atoi(v);
        else if (strcmp(a, "--lr") == 0) lr = (float)atof(v);
        else if (strcmp(a, "--bs") == 0) o->bs = atoi(v);
        else if (strcmp(a, "--seed") == 0) o->seed = strtoul(v, NULL, 10);
        else if (strcmp(a, "--data") == 0) o->data = v;
        else if (strcmp(a, "--threads") == 0) o->threads = atoi(v);
        else if (strcmp(a, "--device") == 0) o->device = v;
        else if (strcmp(a, "--save") == 0) o->save = v;
        else if (strcmp(a, "--load") == 0) o->load = v;
        else if (strcmp(a, "--show") == 0) o->show = atoi(v);
        else if (strcmp(a, "--plot") == 0) o->plot = v;
        else if (strcmp(a, "--early-stop") == 0) o->early_stop = atoi(v);
        else if (strcmp(a, "--stop-at") == 0) o->stop_at = atol(v);
        else if (strcmp(a, "--resume") == 0) o->resume = v;
        else if (strcmp(a, "--wd") == 0) wd = (float)atof(v);
        else if (strcmp(a, "--nfs") == 0 && o->has_bn) nfs = v;
        else if (strcmp(a, "--opt") == 0) {
            opt = dlf_optim_kind_from_name(v);
            if (opt != DLF_OPTIM_SGD && opt != DLF_OPTIM_ADAM && opt != DLF_OPTIM_ADAMW) {
                fprintf(stderr, "%s: --opt %s: expected sgd, adam or adamw\n", o->prog, v);
                return 0;
            }
        } else if (strcmp(a, "--sched") == 0) {
            int k;
            o->sched = -1;
            for (k = 0; k < 4; k++)
                if (strcmp(v, ex_sched_names[k]) == 0) o->sched = k;
            if (strcmp(v, "one_cycle") == 0) o->sched = EX_SCHED_ONECYCLE;   /* the 0.2 names */
            if (strcmp(v, "constant") == 0) o->sched = EX_SCHED_CONST;
            if (o->sched < 0) { fprintf(stderr, "%s: --sched %s: expected onecycle, cos, const or sgdr\n", o->prog, v); return 0; }
        } else { fprintf(stderr, "%s: unknown flag %s\n", o->prog, a); return 0; }
    }
    if (o->resume && !ex_resume_settings(o, &opt, &lr, &wd, &nfs)) return 0;
    d = o->bn ? &o->with_bn : &o->plain;
    o->nfs = nfs ? nfs : d->nfs;
    o->opt_given = opt >= 0;
    o->opt = opt >= 0 ? (dlf_optim_kind)opt : d->opt;
    o->lr_flag = lr;
    o->wd_flag = wd;
    ex_resolve(o);
    if (o->epochs < 1 || o->bs < 2 || o->lr <= 0.0f || o->show < 0 || o->wd < 0.0f || o->early_stop < 0 || o->stop_at < 0) {
        fprintf(stderr, "%s: --epochs must be >= 1, --bs >= 2, --lr > 0, --wd >= 0, --show, --early-stop and "
                "--stop-at >= 0\n", o->prog);
        return 0;
    }
    return 1;
}

/* Load the dataset from o->data, with a clear message when it is missing. */
static int ex_load_data(const ex_options *o, dlf_mnist *data)
{
    dlf_mnist_cfg mc;
    int rc;
    memset(&mc, 0, sizeof mc);
    if (o->subset) {   /* the files tests/data/mnist-sub-{train,test}-{images,labels}-... */
        mc.prefix = "mnist-sub-";
        mc.test_split = "test";
        mc.n_valid = 200;
    }
    rc = dlf_mnist_load(data, o->subset ? "tests/data" : o->data, &mc);
    if (rc != DLF_OK) {
        fprintf(stderr, "%s: cannot load %s from %s:\n  %s\n", o->prog, o->dataset, o->data, dlf_last_error());
        if (rc == DLF_ERR_IO) fprintf(stderr, "Run `make data` first to download it (or pass --data DIR).\n");
        return 0;
    }
    printf("%s: %d train, %d valid, %d test images; train mean %.4f std %.4f; %d threads\n", o->dataset,
           data->train.n, data->valid.n, data->test.n, data->mean, data->std, dlf_get_threads());
    return 1;
}

/* The optimizer of the options: group 0 with the weight decay and, when there is
   one, group 1 without it (biases and BatchNorm weights, as is usual: decaying a
   BatchNorm scale or a shift toward 0 only hurts). SGD gets momentum 0.9. */
static dlf_optim *ex_make_optim(const ex_options *o, ex_model *mod)
{
    dlf_optim_cfg g[2];
    int n_groups = 1;
    memset(g, 0, sizeof g);
    g[0].lr = o->lr;
    g[0].weight_decay = o->wd;
    if (o->opt == DLF_OPTIM_SGD) g[0].momentum = 0.9f;
    if (o->wd > 0.0f) {
        g[1] = g[0];
        g[1].weight_decay = 0.0f;
        dlf_params_group_no_decay(&mod->params, 1);
        n_groups = 2;
    }
    return dlf_optim_create_groups(o->opt, &mod->params, g, n_groups);
}

/* A checkpoint of everything this run has: the weights and buffers under their
   state_dict names, the optimizer's state, and the Learner's whole run state (loader
   order and position, tape rng, step counters, recorder and early-stopping state),
   plus the settings as metadata (docs/checkpoints.md lists the fields). --resume
   continues from it. */
static int ex_save(const ex_options *o, dlf_learner *l, float test_acc)
{
    dlf_ckpt c;
    int rc;
    dlf_ckpt_init(&c);
    rc = dlf_learner_add_state(l, &c);
    if (rc == DLF_OK) rc = dlf_ckpt_set_meta(&c, "model", o->prog);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(&c, "bn", o->bn);
    if (rc == DLF_OK && o->nfs) rc = dlf_ckpt_set_meta(&c, "nfs", o->nfs);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(&c, "epochs", o->eval_only ? 0 : o->epochs);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(&c, "step", l->step);
    if (rc == DLF_OK) rc = dlf_ckpt_set_meta(&c, "sched", ex_sched_names[o->sched]);
    if (rc == DLF_OK) rc = dlf_ckpt_set_float(&c, "lr", o->lr);
    if (rc == DLF_OK) rc = dlf_ckpt_set_float(&c, "weight_decay", o->wd);
    if (rc == DLF_OK) rc = dlf_ckpt_set_float(&c, "pct_start", 0.3);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(&c, "bs", o->bs);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(&c, "seed", (long long)o->seed);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(&c, "subset", o->subset);
    if (rc == DLF_OK) {
        char acc[32];
        snprintf(acc, sizeof acc, "%.4f", test_acc);  /* for people reading the header */
        rc = dlf_ckpt_set_meta(&c, "test_accuracy", acc);
    }
    if (rc == DLF_OK) rc = dlf_ckpt_save(&c, o->save);
    dlf_ckpt_free(&c);
    return rc;
}

/* Start from a checkpoint c already read: the weights and buffers by name, then
   whatever else it holds (a dlf checkpoint has optimizer and loader state; a PyTorch
   state_dict only weights and buffers). */
static int ex_load(const dlf_ckpt *c, ex_model *mod, dlf_optim *opt, dlf_loader *train)
{
    int rc = dlf_ckpt_get_param_list(c, &mod->params);
    if (rc == DLF_OK && dlf_ckpt_get_meta(c, "optim.steps")) rc = dlf_ckpt_get_optim(c, opt, NULL);
    if (rc == DLF_OK && dlf_safetensors_find(&c->file, "loader.train.order")) rc = dlf_ckpt_get_loader(c, "train", train);
    return rc;
}

/* Draw test images 3 to a row (78 columns): pixel columns 3..24 (MNIST's digits sit
   in the middle 20x20), one character per pixel column and per two pixel rows, with
   "pred P (true T)" under each; a wrong guess is marked with '!'. In eval mode. */
#define EX_SHOW_PER_ROW 3
static void ex_show(const ex_options *o, dlf_tape *t, const dlf_mnist *data, ex_model *mod)
{
    static const char ramp[] = " .:-=+*#%@";
    float lut[256];
    int shown = 0, i, prev, prev_training, count = o->show;
    dlf_tensor *x = dlf_tensor_new4(EX_SHOW_PER_ROW, 1, 28, 28), *y = dlf_tensor_new1(EX_SHOW_PER_ROW);
    int idx[EX_SHOW_PER_ROW], pred[EX_SHOW_PER_ROW];
    if (!x || !y) { dlf_tensor_free(x); dlf_tensor_free(y); return; }
    dlf_normalize_lut(lut, data->mean, data->std);
    prev = dlf_tape_set_grad(t, 0);
    prev_training = dlf_tape_set_training(t, 0);
    while (shown < count) {
        int n = count - shown < EX_SHOW_PER_ROW ? count - shown : EX_SHOW_PER_ROW, r, c, k;
        dlf_tensor *z;
        for (k = 0; k < n; k++) idx[k] = (shown + k) * 37 % data->test.n;  /* a spread of test images */
        x->shape[0] = EX_SHOW_PER_ROW; x->size = EX_SHOW_PER_ROW * 784;
        y->shape[0] = EX_SHOW_PER_ROW; y->size = EX_SHOW_PER_ROW;
        dlf_dataset_fill(&data->test, idx, n, lut, x, y);
        dlf_tape_reset(t);
        z = mod->forward(t, x, mod->m);
        if (!z) break;
        for (k = 0; k < n; k++) {
            const float *z_k = z->data + 10 * k;
            pred[k] = 0;
            for (i = 1; i < 10; i++)
                if (z_k[i] > z_k[pred[k]]) pred[k] = i;
        }
        for (r = 0; r < 28; r += 2) {
            for (k = 0; k < n; k++) {
                const unsigned char *img = data->test.images + (size_t)idx[k] * 784;
                for (c = 3; c < 25; c++) {
                    int v = (img[r * 28 + c] + img[(r + 1) * 28 + c]) / 2;
                    putchar(ramp[v * 9 / 255]);
                }
                printf("    ");
            }
            printf("\n");
        }
        for (k = 0; k < n; k++) {
            int tr = (int)y->data[k];
            if (o->class_names)
                printf("%-11s (%-11s)%c    ", o->class_names[pred[k]], o->class_names[tr], pred[k] == tr ? ' ' : '!');
            else
                printf("pred %d (true %d) %c       ", pred[k], tr, pred[k] == tr ? ' ' : '!');
        }
        printf("\n\n");
        shown += n;
    }
    dlf_tape_reset(t);
    dlf_tape_set_training(t, prev_training);
    dlf_tape_set_grad(t, prev);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

/* --stop-at N: cancel the fit after training step N (the run's state is then
   saved by --save, between fits, for --resume). */
typedef struct ex_stop {
    dlf_callback cb;
    long at;
} ex_stop;

static int ex_stop_on(dlf_callback *cb, dlf_learner *l, dlf_event ev)
{
    ex_stop *s = (ex_stop *)cb;
    return ev == DLF_EV_AFTER_BATCH && l->in_train && l->step == s->at ? DLF_CB_CANCEL_FIT : DLF_CB_OK;
}

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#define EX_MKDIR(d) mkdir((d), 0777)
#else
#define EX_MKDIR(d) ((void)(d), 0)
#endif

/* DIR/name, or name in the current directory without --plot. */
static const char *ex_plot_path(const ex_options *o, const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s%s%s", o->plot ? o->plot : "", o->plot ? "/" : "", name);
    return buf;
}

/* The optimizer and schedule of the options, the Learner and its callbacks, training;
   then the test set, the optional checkpoint and the last line. Returns the exit status. */
/* --device cuda: a GPU context on the training tape (matmul and conv2d run there). */
static int ex_attach_device(const ex_options *o, dlf_tape *t)
{
    if (!o->device || strcmp(o->device, "cpu") == 0) return 1;
    if (strcmp(o->device, "cuda") != 0) {
        fprintf(stderr, "%s: --device %s: expected cpu or cuda\n", o->prog, o->device);
        return 0;
    }
#ifdef DLF_CUDA
    {
        dlf_cuda *c = NULL;
        if (dlf_cuda_init(&c, 0) != DLF_OK) {
            fprintf(stderr, "%s: --device cuda: %s\n", o->prog, dlf_last_error());
            return 0;
        }
        dlf_tape_set_cuda(t, c);
        printf("device: %s (matmul, conv2d)\n", dlf_cuda_device_name(c));
        return 1;
    }
#else
    (void)t;
    fprintf(stderr, "%s: --device cuda: this build has no CUDA (build it with `make cuda`)\n", o->prog);
    return 0;
#endif
}

static void ex_detach_device(dlf_tape *t)
{
#ifdef DLF_CUDA
    dlf_cuda_free(t->cuda);
    t->cuda = NULL;
#else
    (void)t;
#endif
}

static int ex_train(ex_options *o, dlf_mnist *data, ex_model *mod)
{
    dlf_loader *train = NULL, *valid = NULL, *test = NULL;
    dlf_optim *opt = NULL;
    dlf_learner l;
    dlf_cb_progress prog;
    dlf_cb_sched sched;
    dlf_cb_recorder rec;
    dlf_cb_early_stop es;
    ex_stop stop;
    dlf_tape tape;
    dlf_ckpt ck;
    float test_acc, test_loss;
    int rc, status = 1, have_l = 0;
    dlf_ckpt_init(&ck);
    dlf_tape_init(&tape);
    dlf_cb_recorder_init(&rec);
    if (!ex_attach_device(o, &tape)) goto done;
    if (o->load) {
        const char *kind;
        if (dlf_ckpt_load(&ck, o->load) != DLF_OK) {
            fprintf(stderr, "%s: cannot read the checkpoint: %s\n", o->prog, dlf_last_error());
            goto done;
        }
        kind = dlf_ckpt_get_meta(&ck, "optim.kind");
        if (kind && !o->opt_given && dlf_optim_kind_from_name(kind) >= 0) {
            o->opt = (dlf_optim_kind)dlf_optim_kind_from_name(kind);  /* continue with the file's optimizer */
            ex_resolve(o);
        }
    }
    opt = ex_make_optim(o, mod);
    if (!opt || dlf_mnist_loaders(data, o->bs, 500, o->seed, &train, &valid, &test) != DLF_OK) {
        fprintf(stderr, "%s: %s\n", o->prog, dlf_last_error());
        goto done;
    }
    if (o->load) {
        if (ex_load(&ck, mod, opt, train) != DLF_OK) {
            const char *bn = dlf_ckpt_get_meta(&ck, "bn"), *nfs = dlf_ckpt_get_meta(&ck, "nfs");
            fprintf(stderr, "%s: cannot load the checkpoint: %s\n", o->prog, dlf_last_error());
            if (bn && nfs)  /* a dlf checkpoint says which model it holds */
                fprintf(stderr, "(it holds the model of %s--nfs %s)\n", strcmp(bn, "1") == 0 ? "--bn " : "", nfs);
            goto done;
        }
        printf("loaded %s (%s, optimizer steps so far: %d)\n", o->load, ex_kind_name(o->opt), opt->steps);
        dlf_ckpt_free(&ck);
    }

    /* the Learner: progress table, schedule (every group), recorder, and the options' extras */
    dlf_learner_init(&l, &tape, mod->forward, mod->m, dlf_cross_entropy, opt, train, valid);
    l.fixed_threads = o->threads > 0;   /* --threads N pins the count; else the governor may use fewer */
    have_l = 1;
    l.params = &mod->params;
    dlf_learner_add_metric(&l, "accuracy", dlf_metric_accuracy);
    dlf_cb_progress_init(&prog, 0);
    dlf_cb_sched_init(&sched);
    switch (o->sched) {
    case EX_SCHED_ONECYCLE:
        dlf_cb_sched_add(&sched, DLF_HYPER_LR, -1, dlf_sched_one_cycle(o->lr, 0.3, 25.0, 1e4, 0));
        dlf_cb_sched_add(&sched, DLF_HYPER_MOM, -1, dlf_sched_one_cycle_mom(0.85, 0.95, 0.3, 0));
        break;
    case EX_SCHED_COS: dlf_cb_sched_add(&sched, DLF_HYPER_LR, -1, dlf_sched_cos(o->lr, 0.0)); break;
    case EX_SCHED_SGDR: dlf_cb_sched_add(&sched, DLF_HYPER_LR, -1, dlf_sched_sgdr(o->lr, 0.0, train->n_batches, 2)); break;
    default: dlf_cb_sched_add(&sched, DLF_HYPER_LR, -1, dlf_sched_const(o->lr)); break;
    }
    dlf_learner_add_cb(&l, &prog.cb);
    dlf_learner_add_cb(&l, &sched.cb);
    dlf_learner_add_cb(&l, &rec.cb);
    if (o->early_stop > 0) {
        dlf_cb_early_stop_init(&es, "valid_loss", 0.0f, o->early_stop);
        dlf_learner_add_cb(&l, &es.cb);
    }
    if (o->stop_at > 0) {
        memset(&stop, 0, sizeof stop);
        stop.cb.name = "stop_at";
        stop.cb.order = 60;
        stop.cb.on = ex_stop_on;
        stop.at = o->stop_at;
        dlf_learner_add_cb(&l, &stop.cb);
    }
    if (o->plot) EX_MKDIR(o->plot);
    if (o->resume) {
        if (dlf_learner_load(&l, o->resume) != DLF_OK) {
            fprintf(stderr, "%s: cannot resume: %s\n", o->prog, dlf_last_error());
            goto done;
        }
        printf("resuming %s at epoch %d, step %ld of %ld\n", o->resume, l.epoch + 1, l.step, l.total_steps);
    }
    if (o->lr_find && !o->eval_only) {
        dlf_lr_find_result lf;
        if (dlf_lr_find(&l, NULL, &lf) != DLF_OK) {
            fprintf(stderr, "%s: lr_find: %s\n", o->prog, dlf_last_error());
            goto done;
        }
        printf("lr_find: %d steps; suggestions: steepest descent %.3g, minimum/10 %.3g\n", lf.n,
               (double)lf.lr_steep, (double)lf.lr_min);
        if (dlf_lr_find_plot(&lf, ex_plot_path(o, "lr_find.svg"), "LR finder") == DLF_OK)
            printf("wrote %s\n", ex_plot_path(o, "lr_find.svg"));
        else
            fprintf(stderr, "%s: %s\n", o->prog, dlf_last_error());
        dlf_lr_find_free(&lf);
    }
    if (!o->eval_only)
        printf("%s%s%s%s --opt %s --lr %g --wd %g --sched %s --bs %d --epochs %d --seed %lu\n", o->prog,
               o->bn ? " --bn" : "", o->nfs ? " --nfs " : "", o->nfs ? o->nfs : "", ex_kind_name(o->opt), (double)o->lr, (double)o->wd,
               ex_sched_names[o->sched], o->bs, o->epochs, o->seed);
    rc = o->eval_only ? DLF_OK : dlf_learner_fit(&l, o->resume ? 0 : o->epochs);
    if (rc != DLF_OK) {
        fprintf(stderr, "%s: training stopped: %s\n", o->prog, dlf_last_error());
        goto done;
    }
    if (l.cancelled) printf("stopped at step %ld of %ld (epoch %d)\n", l.step, l.total_steps, l.epoch + 1);
    test_acc = dlf_evaluate(&tape, mod->forward, mod->m, test, &test_loss);
    if (o->show > 0) ex_show(o, &tape, data, mod);
    printf("test_loss %.4f; arena peak %.1f MiB per step\n", test_loss, (double)tape.peak_bytes / (1 << 20));
    if (o->plot && !o->eval_only) {
        if (dlf_cb_recorder_plot_loss(&rec, ex_plot_path(o, "loss.svg"), o->prog) != DLF_OK ||
            dlf_cb_recorder_plot_sched(&rec, ex_plot_path(o, "sched.svg"), "schedules (group 0)") != DLF_OK) {
            fprintf(stderr, "%s: cannot write the plots: %s\n", o->prog, dlf_last_error());
            goto done;
        }
        printf("wrote %s/loss.svg and %s/sched.svg\n", o->plot, o->plot);
    }
    if (o->save) {
        if (ex_save(o, &l, test_acc) != DLF_OK) {
            fprintf(stderr, "%s: cannot save the checkpoint: %s\n", o->prog, dlf_last_error());
            goto done;
        }
        printf("saved %s\n", o->save);
    }
    printf("test_accuracy=%.4f epochs=%d train_seconds=%.2f\n", test_acc, o->eval_only ? 0 : o->epochs,
           l.train_seconds);
    status = 0;
done:
    if (have_l) dlf_learner_free(&l);
    dlf_cb_recorder_free(&rec);
    dlf_ckpt_free(&ck);
    ex_detach_device(&tape);
    dlf_tape_destroy(&tape);
    dlf_optim_free(opt);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_loader_free(test);
    return status;
}

#ifdef EX_CNN  /* defined by the CNN examples */
/* The course's CNN as a dlf_seq: one stride-2 conv per entry of nfs (5x5 for the
   first, 3x3 after), each followed by ReLU, or with bn by BatchNorm2d then ReLU (and
   no conv bias: BatchNorm's shift replaces it); then global average pooling, flatten
   and a linear layer to 10 classes. Layer indices (so state_dict names) are those of
   the flat nn.Sequential written at the top of examples/mnist_cnn.c. Conv weights are
   Kaiming normal (fan_in, gain sqrt 2), conv biases 0, the linear layer PyTorch's
   default, drawn from rng in that order. DLF_OK or DLF_ERR_NOMEM. */
static int ex_cnn_build(dlf_seq *s, const int *nfs, int n_convs, int bn, dlf_rng *rng)
{
    dlf_rng scratch;   /* the constructors' own init is replaced below */
    int i, ok = 1;
    dlf_rng_seed(&scratch, 0);
    dlf_seq_init(s);
    for (i = 0; i < n_convs && ok; i++) {
        int c_in = i == 0 ? 1 : nfs[i - 1], ks = i == 0 ? 5 : 3;
        dlf_layer conv = dlf_layer_conv2d(c_in, nfs[i], ks, 2, ks / 2, !bn, &scratch);
        ok = dlf_layer_ok(&conv) && dlf_seq_add(s, conv) == DLF_OK;
        if (ok && bn) {
            dlf_layer l = dlf_layer_batchnorm(nfs[i]);
            ok = dlf_layer_ok(&l) && dlf_seq_add(s, l) == DLF_OK;
        }
        if (ok) ok = dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU)) == DLF_OK;
    }
    if (ok) ok = dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL)) == DLF_OK;  /* AdaptiveAvgPool2d(1) */
    if (ok) ok = dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_FLATTEN)) == DLF_OK;
    if (ok) {
        dlf_layer fc = dlf_layer_linear(nfs[n_convs - 1], 10, 1, &scratch);
        ok = dlf_layer_ok(&fc) && dlf_seq_add(s, fc) == DLF_OK;
    }
    if (!ok) { dlf_seq_free(s); return DLF_ERR_NOMEM; }
    for (i = 0; i < s->n; i++) {
        dlf_layer *l = &s->layers[i];
        if (l->kind == DLF_LAYER_CONV2D) {
            dlf_init_kaiming_normal(l->weight, rng, 0.0f, DLF_FAN_IN);
            if (l->bias) dlf_fill(l->bias, 0.0f);
        } else if (l->kind == DLF_LAYER_LINEAR) {
            dlf_init_torch_default(l->weight, l->bias, rng);
        }
    }
    return DLF_OK;
}

static dlf_tensor *ex_seq_forward(dlf_tape *t, dlf_tensor *x, void *s)
{
    return dlf_seq_forward(t, (const dlf_seq *)s, x);  /* x (N,1,28,28) -> logits (N,10) */
}

/* The whole program of a CNN example: flags, data, the model, training. */
static int ex_cnn_main(int argc, char **argv, ex_options *o)
{
    int nfs[8], n_convs = 0;
    const char *p;
    ex_model model;
    dlf_mnist data;
    dlf_rng rng;
    dlf_seq seq;
    int rc;
    if (!ex_parse(argc, argv, o)) { ex_usage(stderr, o); return 2; }
    for (p = o->nfs; p && *p;) {   /* "8,16,32,32" */
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 4096 || n_convs == 8 || (*end && *end != ',')) { n_convs = 0; break; }
        nfs[n_convs++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (n_convs == 0) { fprintf(stderr, "%s: --nfs %s: expected 1 to 8 channel counts, e.g. 8,16,32,32\n", o->prog, o->nfs); return 2; }
    if (o->threads > 0) dlf_set_threads(o->threads);
    if (!ex_load_data(o, &data)) return 1;
    dlf_rng_seed(&rng, o->seed);
    dlf_params_init(&model.params);
    if (ex_cnn_build(&seq, nfs, n_convs, o->bn, &rng) != DLF_OK || dlf_seq_collect(&seq, &model.params) != DLF_OK) {
        fprintf(stderr, "%s: %s\n", o->prog, dlf_last_error());
        dlf_mnist_free(&data);
        return 1;
    }
    model.forward = ex_seq_forward;
    model.m = &seq;
    rc = ex_train(o, &data, &model);
    dlf_params_free(&model.params);
    dlf_seq_free(&seq);
    dlf_mnist_free(&data);
    return rc;
}
#endif /* EX_CNN */
#endif
