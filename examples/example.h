/* example.h - what the MNIST examples share, so each example file holds only its
   model: the command-line flags, loading MNIST, the loaders, the optimizer, loading
   and saving checkpoints, training with dlf_fit, and the last line
       test_accuracy=0.XXXX epochs=N train_seconds=S
   Include it after dlf.h (with DLF_IMPLEMENTATION defined in the example).

   Flags (each example sets its own defaults first):
       --epochs N     passes over the training set
       --lr X         peak learning rate of the one-cycle schedule
       --bs N         batch size
       --seed N       weights and shuffle order; same seed, same numbers
       --data DIR     directory holding the four MNIST IDX files (default data/mnist)
       --threads N    OpenMP threads (default: all)
       --save PATH    after training, write a checkpoint (safetensors: weights under
                      PyTorch's state_dict names, SGD momentum buffers, metadata)
       --load PATH    start from a checkpoint's weights (and optimizer state, if it has
                      one): a dlf checkpoint or a PyTorch state_dict saved as safetensors
       --eval-only    no training: evaluate the (loaded) weights on the test set
       --show N       after training, draw N test digits as ASCII art with the
                      predicted label beside the true one
       --help */
#ifndef DLF_EXAMPLE_H
#define DLF_EXAMPLE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ex_options {
    const char *prog;      /* "mnist_cnn", for messages */
    const char *what;      /* one line on what the program trains, for --help */
    int epochs;            /* --epochs */
    float lr;              /* --lr: peak learning rate */
    int bs;                /* --bs */
    unsigned long seed;    /* --seed */
    const char *data;      /* --data */
    int threads;           /* --threads (0: OpenMP's default) */
    const char *save;      /* --save: checkpoint to write after training, or NULL */
    const char *load;      /* --load: checkpoint to start from, or NULL */
    int eval_only;         /* --eval-only: skip training */
    int show;              /* --show: test digits to draw */
} ex_options;

/* The model as the shared code sees it: a forward function, its parameters with
   their state_dict names, and an optional step after evaluation (drawing digits). */
typedef struct ex_model {
    dlf_model_fn forward;          /* x (N,1,28,28) -> logits (N,10) */
    void *m;                       /* passed to forward */
    dlf_tensor **params;           /* (n_params) in state_dict order */
    const char *const *names;      /* (n_params) "0.weight" ... */
    int n_params;
    void (*after)(dlf_tape *t, const dlf_mnist *data, void *m, int show);  /* may be NULL */
} ex_model;

static void ex_usage(FILE *f, const ex_options *o)
{
    fprintf(f, "usage: %s [--epochs N] [--lr X] [--bs N] [--seed N] [--data DIR] [--threads N]\n"
               "       [--save PATH] [--load PATH] [--eval-only] [--show N] [--help]\n"
               "  %s\n  defaults: --epochs %d --lr %g --bs %d --seed %lu --data %s\n",
            o->prog, o->what, o->epochs, (double)o->lr, o->bs, o->seed, o->data);
}

/* Parse argv over the defaults already in *o; 0 (with a message) on a bad flag. */
static int ex_parse(int argc, char **argv, ex_options *o)
{
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { ex_usage(stdout, o); exit(0); }
        if (strcmp(a, "--eval-only") == 0) { o->eval_only = 1; continue; }
        v = i + 1 < argc ? argv[++i] : NULL;   /* every other flag takes one value */
        if (!v) { fprintf(stderr, "%s: %s needs a value (or is unknown)\n", o->prog, a); return 0; }
        if (strcmp(a, "--epochs") == 0) o->epochs = atoi(v);
        else if (strcmp(a, "--lr") == 0) o->lr = (float)atof(v);
        else if (strcmp(a, "--bs") == 0) o->bs = atoi(v);
        else if (strcmp(a, "--seed") == 0) o->seed = strtoul(v, NULL, 10);
        else if (strcmp(a, "--data") == 0) o->data = v;
        else if (strcmp(a, "--threads") == 0) o->threads = atoi(v);
        else if (strcmp(a, "--save") == 0) o->save = v;
        else if (strcmp(a, "--load") == 0) o->load = v;
        else if (strcmp(a, "--show") == 0) o->show = atoi(v);
        else { fprintf(stderr, "%s: unknown flag %s\n", o->prog, a); return 0; }
    }
    if (o->epochs < 1 || o->bs < 1 || o->lr <= 0.0f || o->show < 0) {
        fprintf(stderr, "%s: --epochs and --bs must be >= 1, --lr > 0, --show >= 0\n", o->prog);
        return 0;
    }
    return 1;
}

/* Load MNIST from o->data, with a clear message when it is missing. */
static int ex_load_data(const ex_options *o, dlf_mnist *data)
{
    int rc = dlf_mnist_load(data, o->data, NULL);
    if (rc != DLF_OK) {
        fprintf(stderr, "%s: cannot load MNIST from %s:\n  %s\n", o->prog, o->data, dlf_last_error());
        if (rc == DLF_ERR_IO) fprintf(stderr, "Run `make data` first to download it (or pass --data DIR).\n");
        return 0;
    }
    printf("MNIST: %d train, %d valid, %d test images; train mean %.4f std %.4f; %d threads\n",
           data->train.n, data->valid.n, data->test.n, data->mean, data->std, dlf_get_threads());
    return 1;
}

/* A checkpoint of everything this run has: the weights under their state_dict names,
   the SGD momentum buffers, the training loader's shuffle state, and the schedule's
   position and settings as metadata (docs/checkpoints.md lists the fields). */
static int ex_save(const ex_options *o, ex_model *mod, const dlf_sgd *opt, const dlf_loader *train,
                   float test_acc)
{
    dlf_ckpt c;
    int rc;
    dlf_ckpt_init(&c);
    rc = dlf_ckpt_add_params(&c, mod->params, mod->names, mod->n_params);
    if (rc == DLF_OK) rc = dlf_ckpt_add_sgd(&c, opt, mod->names);
    if (rc == DLF_OK) rc = dlf_ckpt_add_loader(&c, "train", train);
    if (rc == DLF_OK) rc = dlf_ckpt_set_meta(&c, "model", o->prog);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(&c, "epochs", o->eval_only ? 0 : o->epochs);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(&c, "step", opt->steps);
    if (rc == DLF_OK) rc = dlf_ckpt_set_meta(&c, "sched", "one_cycle");
    if (rc == DLF_OK) rc = dlf_ckpt_set_float(&c, "lr", o->lr);
    if (rc == DLF_OK) rc = dlf_ckpt_set_float(&c, "pct_start", 0.3);
    if (rc == DLF_OK) {
        char acc[32];
        snprintf(acc, sizeof acc, "%.4f", test_acc);  /* for people reading the header */
        rc = dlf_ckpt_set_meta(&c, "test_accuracy", acc);
    }
    if (rc == DLF_OK) rc = dlf_ckpt_save(&c, o->save);
    dlf_ckpt_free(&c);
    return rc;
}

/* Start from a checkpoint: the weights by name, then whatever else it holds (a dlf
   checkpoint has optimizer and loader state; a PyTorch state_dict only weights). */
static int ex_load(const ex_options *o, ex_model *mod, dlf_sgd *opt, dlf_loader *train)
{
    dlf_ckpt c;
    int rc;
    dlf_ckpt_init(&c);
    rc = dlf_ckpt_load(&c, o->load);
    if (rc == DLF_OK) rc = dlf_ckpt_get_params(&c, mod->params, mod->names, mod->n_params);
    if (rc == DLF_OK && dlf_ckpt_get_meta(&c, "optim.steps")) rc = dlf_ckpt_get_sgd(&c, opt, mod->names);
    if (rc == DLF_OK && dlf_safetensors_find(&c.file, "loader.train.order")) rc = dlf_ckpt_get_loader(&c, "train", train);
    dlf_ckpt_free(&c);
    return rc;
}

/* SGD with momentum 0.9 and a one-cycle schedule, the course's recipe; then the test
   set, the optional checkpoint and the last line. Returns the exit status. */
static int ex_train(const ex_options *o, dlf_mnist *data, ex_model *mod)
{
    dlf_loader *train = NULL, *valid = NULL, *test = NULL;
    dlf_sgd_cfg sc;
    dlf_sgd *opt;
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    dlf_tape tape;
    float test_acc, test_loss;
    int rc;
    memset(&sc, 0, sizeof sc);
    sc.lr = o->lr;
    sc.momentum = 0.9f;
    opt = dlf_sgd_create(mod->params, mod->n_params, &sc);
    if (!opt || dlf_mnist_loaders(data, o->bs, 500, o->seed, &train, &valid, &test) != DLF_OK) {
        fprintf(stderr, "%s: %s\n", o->prog, dlf_last_error());
        return 1;
    }
    if (o->load) {
        if (ex_load(o, mod, opt, train) != DLF_OK) {
            fprintf(stderr, "%s: cannot load the checkpoint: %s\n", o->prog, dlf_last_error());
            return 1;
        }
        printf("loaded %s (optimizer steps so far: %d)\n", o->load, opt->steps);
    }
    dlf_tape_init(&tape);
    memset(&fc, 0, sizeof fc);
    fc.epochs = o->epochs;
    fc.lr = o->lr;
    fc.sched = DLF_SCHED_ONE_CYCLE;
    memset(&rep, 0, sizeof rep);
    rc = o->eval_only ? DLF_OK : dlf_fit(&tape, mod->forward, mod->m, dlf_cross_entropy, opt, train, valid, &fc, &rep);
    if (rc != DLF_OK) {
        fprintf(stderr, "%s: training stopped: %s\n", o->prog, dlf_last_error());
        return 1;
    }
    test_acc = dlf_evaluate(&tape, mod->forward, mod->m, test, &test_loss);
    if (o->show > 0 && mod->after) mod->after(&tape, data, mod->m, o->show);
    printf("test_loss %.4f; arena peak %.1f MiB per step\n", test_loss, (double)tape.peak_bytes / (1 << 20));
    if (o->save) {
        if (ex_save(o, mod, opt, train, test_acc) != DLF_OK) {
            fprintf(stderr, "%s: cannot save the checkpoint: %s\n", o->prog, dlf_last_error());
            return 1;
        }
        printf("saved %s\n", o->save);
    }
    printf("test_accuracy=%.4f epochs=%d train_seconds=%.2f\n", test_acc, o->eval_only ? 0 : o->epochs,
           rep.train_seconds);
    dlf_tape_destroy(&tape);
    dlf_sgd_free(opt);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_loader_free(test);
    return 0;
}
#endif
