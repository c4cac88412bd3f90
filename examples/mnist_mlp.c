/* mnist_mlp.c - train the course's 784-50-10 MLP on MNIST with dlf.

   The model, as PyTorch would write it:
       model = nn.Sequential(nn.Flatten(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
       loss  = F.cross_entropy(model(x), y)
   Inputs are normalized with the training set's mean and std. Optimizer:
   torch.optim.SGD(lr, momentum=0.9) with a one-cycle schedule (cosine warm-up over the
   first 30% of the steps, cosine anneal after), batch 64. The last 10000 training images
   are the validation set, reported each epoch; the 10000 t10k images are the test set.

   Build and run:
       make data                     # once: MNIST into data/mnist
       make build/examples/mnist_mlp
       ./build/examples/mnist_mlp --epochs 5

   Flags (defaults in brackets):
       --epochs N     [5]      passes over the training set
       --lr X         [0.03]    peak learning rate of the one-cycle schedule
       --bs N         [64]     batch size
       --seed N       [1]      weights and shuffle order; same seed, same numbers
       --data DIR     [data/mnist]  directory holding the four IDX files
       --threads N    [all]    OpenMP threads
       --save PATH    [none]   after training, write a checkpoint (safetensors: weights under
                               PyTorch's state_dict names, SGD momentum buffers, metadata)
       --load PATH    [none]   start from a checkpoint's weights (and its optimizer state, if
                               it has one): a dlf checkpoint or a PyTorch state_dict file
       --eval-only             no training: evaluate the (loaded) weights on the test set
       --help
   The last line printed is exactly
       test_accuracy=0.XXXX epochs=N train_seconds=S
   so scripts can `tail -n 1` it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

typedef struct options {
    int epochs;            /* --epochs */
    float lr;              /* --lr: peak learning rate */
    int bs;                /* --bs */
    unsigned long seed;    /* --seed */
    const char *data;      /* --data */
    int threads;           /* --threads (0: OpenMP's default) */
    const char *save;      /* --save: checkpoint to write after training, or NULL */
    const char *load;      /* --load: checkpoint to start from, or NULL */
    int eval_only;         /* --eval-only: skip training */
} options;

static void usage(FILE *f)
{
    fprintf(f, "usage: mnist_mlp [--epochs N] [--lr X] [--bs N] [--seed N] [--data DIR] [--threads N]\n"
               "                 [--save PATH] [--load PATH] [--eval-only] [--help]\n"
               "  trains a 784-50-10 MLP on MNIST (see the comment at the top of examples/mnist_mlp.c)\n");
}

static int parse_options(int argc, char **argv, options *o)
{
    int i;
    o->epochs = 5;
    o->lr = 0.03f;
    o->bs = 64;
    o->seed = 1;
    o->data = "data/mnist";
    o->threads = 0;
    o->save = NULL;
    o->load = NULL;
    o->eval_only = 0;
    for (i = 1; i < argc; i += 2) {   /* every flag but --help and --eval-only takes one value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); exit(0); }
        if (strcmp(a, "--eval-only") == 0) { o->eval_only = 1; i--; continue; }
        if (!v) { fprintf(stderr, "mnist_mlp: %s needs a value (or is unknown)\n", a); return 0; }
        if (strcmp(a, "--epochs") == 0) o->epochs = atoi(v);
        else if (strcmp(a, "--lr") == 0) o->lr = (float)atof(v);
        else if (strcmp(a, "--bs") == 0) o->bs = atoi(v);
        else if (strcmp(a, "--seed") == 0) o->seed = strtoul(v, NULL, 10);
        else if (strcmp(a, "--data") == 0) o->data = v;
        else if (strcmp(a, "--threads") == 0) o->threads = atoi(v);
        else if (strcmp(a, "--save") == 0) o->save = v;
        else if (strcmp(a, "--load") == 0) o->load = v;
        else { fprintf(stderr, "mnist_mlp: unknown flag %s\n", a); return 0; }
    }
    if (o->epochs < 1 || o->bs < 1 || o->lr <= 0.0f) {
        fprintf(stderr, "mnist_mlp: --epochs and --bs must be >= 1 and --lr > 0\n");
        return 0;
    }
    return 1;
}

/* The parameters, in PyTorch's layout and state_dict order. */
/* PyTorch's state_dict names of the model above, in the order of params[] in main */
static const char *const param_names[4] = {"1.weight", "1.bias", "3.weight", "3.bias"};

typedef struct mlp {
    dlf_tensor *w1;   /* (50, 784)  "1.weight" */
    dlf_tensor *b1;   /* (50)       "1.bias" */
    dlf_tensor *w2;   /* (10, 50)   "3.weight" */
    dlf_tensor *b2;   /* (10)       "3.bias" */
} mlp;

/* x (N,1,28,28) -> logits (N,10) */
static dlf_tensor *mlp_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    mlp *m = (mlp *)user;
    dlf_tensor *h = dlf_flatten(t, x);           /* (N, 784) */
    h = dlf_relu(t, dlf_linear(t, h, m->w1, m->b1));  /* (N, 50) */
    return dlf_linear(t, h, m->w2, m->b2);       /* (N, 10) */
}

int main(int argc, char **argv)
{
    options o;
    dlf_mnist data;
    dlf_loader_cfg lc;
    dlf_loader *train, *valid, *test;
    dlf_sgd_cfg sc;
    dlf_sgd *opt;
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    dlf_tape tape;
    dlf_rng rng;
    mlp m;
    dlf_tensor *params[4];
    float test_acc, test_loss;
    int rc;

    if (!parse_options(argc, argv, &o)) { usage(stderr); return 2; }
    if (o.threads > 0) dlf_set_threads(o.threads);
    rc = dlf_mnist_load(&data, o.data, NULL);
    if (rc != DLF_OK) {
        fprintf(stderr, "mnist_mlp: cannot load MNIST from %s:\n  %s\n", o.data, dlf_last_error());
        if (rc == DLF_ERR_IO)
            fprintf(stderr, "Run `make data` first to download it (or pass --data DIR).\n");
        return 1;
    }
    printf("MNIST: %d train, %d valid, %d test images; train mean %.4f std %.4f; %d threads\n",
           data.train.n, data.valid.n, data.test.n, data.mean, data.std, dlf_get_threads());

    dlf_rng_seed(&rng, o.seed);
    m.w1 = dlf_param_new(2, (int[]){50, 784});
    m.b1 = dlf_param_new(1, (int[]){50});
    m.w2 = dlf_param_new(2, (int[]){10, 50});
    m.b2 = dlf_param_new(1, (int[]){10});
    dlf_init_torch_default(m.w1, m.b1, &rng);
    dlf_init_torch_default(m.w2, m.b2, &rng);
    params[0] = m.w1; params[1] = m.b1; params[2] = m.w2; params[3] = m.b2;

    memset(&lc, 0, sizeof lc);
    lc.batch_size = o.bs;
    lc.shuffle = 1;
    lc.seed = o.seed;
    lc.mean = data.mean;
    lc.std = data.std;
    train = dlf_loader_create(&data.train, &lc);
    lc.shuffle = 0;
    lc.batch_size = 1000;
    valid = dlf_loader_create(&data.valid, &lc);
    test = dlf_loader_create(&data.test, &lc);
    memset(&sc, 0, sizeof sc);
    sc.lr = o.lr;
    sc.momentum = 0.9f;
    opt = dlf_sgd_create(params, 4, &sc);
    if (!train || !valid || !test || !opt || !m.w1 || !m.b1 || !m.w2 || !m.b2) {
        fprintf(stderr, "mnist_mlp: %s\n", dlf_last_error());
        return 1;
    }
    if (o.load) {
        rc = dlf_ckpt_load_training(o.load, params, param_names, 4, opt);
        if (rc != DLF_OK) {
            fprintf(stderr, "mnist_mlp: cannot load the checkpoint: %s\n", dlf_last_error());
            return 1;
        }
        printf("loaded %s (optimizer steps so far: %d)\n", o.load, opt->steps);
    }
    dlf_tape_init(&tape);

    memset(&fc, 0, sizeof fc);
    fc.epochs = o.epochs;
    fc.lr = o.lr;
    fc.sched = DLF_SCHED_ONE_CYCLE;
    memset(&rep, 0, sizeof rep);
    rc = o.eval_only ? DLF_OK : dlf_fit(&tape, mlp_forward, &m, dlf_cross_entropy, opt, train, valid, &fc, &rep);
    if (rc != DLF_OK) {
        fprintf(stderr, "mnist_mlp: training stopped: %s\n", dlf_last_error());
        return 1;
    }
    test_acc = dlf_evaluate(&tape, mlp_forward, &m, test, &test_loss);
    printf("test_loss %.4f; arena peak %.1f MiB per step\n", test_loss, (double)tape.peak_bytes / (1 << 20));
    if (o.save) {
        char acc[32], epochs[32];
        const char *meta[6];
        snprintf(acc, sizeof acc, "%.4f", test_acc);
        snprintf(epochs, sizeof epochs, "%d", o.eval_only ? 0 : o.epochs);
        meta[0] = "model"; meta[1] = "mnist_mlp";
        meta[2] = "epochs"; meta[3] = epochs;
        meta[4] = "test_accuracy"; meta[5] = acc;
        rc = dlf_ckpt_save_training(o.save, params, param_names, 4, opt, meta, 3);
        if (rc != DLF_OK) {
            fprintf(stderr, "mnist_mlp: cannot save the checkpoint: %s\n", dlf_last_error());
            return 1;
        }
        printf("saved %s\n", o.save);
    }
    printf("test_accuracy=%.4f epochs=%d train_seconds=%.2f\n", test_acc, o.eval_only ? 0 : o.epochs, rep.train_seconds);

    dlf_tape_destroy(&tape);
    dlf_sgd_free(opt);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_loader_free(test);
    dlf_tensor_free(m.w1); dlf_tensor_free(m.b1); dlf_tensor_free(m.w2); dlf_tensor_free(m.b2);
    dlf_mnist_free(&data);
    return 0;
}
