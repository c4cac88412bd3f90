/* mnist_cnn.c - train the course's stride-2 CNN on MNIST with dlf.

   The model, as PyTorch would write it (lesson 06 of the course, without BatchNorm):
       model = nn.Sequential(
           nn.Conv2d( 1,  8, 5, stride=2, padding=2), nn.ReLU(),   # 28x28 -> 14x14
           nn.Conv2d( 8, 16, 3, stride=2, padding=1), nn.ReLU(),   # 14x14 ->  7x7
           nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),   #  7x7  ->  4x4
           nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),   #  4x4  ->  2x2
           nn.AdaptiveAvgPool2d(1), nn.Flatten(),                  # (N, 32)
           nn.Linear(32, 10))
       for conv in model[0:8:2]: nn.init.kaiming_normal_(conv.weight); conv.bias.data.zero_()
       loss = F.cross_entropy(model(x), y)
   Inputs are normalized with the training set's mean and std. Optimizer:
   torch.optim.SGD(lr, momentum=0.9) with a one-cycle schedule (cosine warm-up over the
   first 30% of the steps, cosine anneal after), batch 64. The last 10000 training images
   are the validation set, reported each epoch; the 10000 t10k images are the test set.

   Build and run:
       make data                     # once: MNIST into data/mnist
       make build/examples/mnist_cnn
       ./build/examples/mnist_cnn --epochs 3 --show 6

   Flags (defaults in brackets):
       --epochs N     [3]      passes over the training set
       --lr X         [0.075]   peak learning rate of the one-cycle schedule
       --bs N         [64]     batch size
       --seed N       [1]      weights and shuffle order; same seed, same numbers
       --data DIR     [data/mnist]  directory holding the four IDX files
       --threads N    [all]    OpenMP threads
       --save PATH    [none]   after training, write a checkpoint (safetensors: weights under
                               PyTorch's state_dict names, SGD momentum buffers, metadata)
       --load PATH    [none]   start from a checkpoint's weights (and its optimizer state, if
                               it has one): a dlf checkpoint or a PyTorch state_dict file
       --eval-only             no training: evaluate the (loaded) weights on the test set
       --show N       [0]      after training, draw N test digits as ASCII art (3 to a row) with the
                               predicted label beside the true one (what `make demo` shows)
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
    int show;              /* --show: test digits to draw */
} options;

static void usage(FILE *f)
{
    fprintf(f, "usage: mnist_cnn [--epochs N] [--lr X] [--bs N] [--seed N] [--data DIR] [--threads N]\n"
               "                 [--show N] [--save PATH] [--load PATH] [--eval-only] [--help]\n"
               "  trains the course's 4-conv stride-2 CNN on MNIST (see the top of examples/mnist_cnn.c)\n");
}

static int parse_options(int argc, char **argv, options *o)
{
    int i;
    o->epochs = 3;
    o->lr = 0.075f;
    o->bs = 64;
    o->seed = 1;
    o->data = "data/mnist";
    o->threads = 0;
    o->save = NULL;
    o->load = NULL;
    o->eval_only = 0;
    o->show = 0;
    for (i = 1; i < argc; i += 2) {   /* every flag but --help and --eval-only takes one value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); exit(0); }
        if (strcmp(a, "--eval-only") == 0) { o->eval_only = 1; i--; continue; }
        if (!v) { fprintf(stderr, "mnist_cnn: %s needs a value (or is unknown)\n", a); return 0; }
        if (strcmp(a, "--epochs") == 0) o->epochs = atoi(v);
        else if (strcmp(a, "--lr") == 0) o->lr = (float)atof(v);
        else if (strcmp(a, "--bs") == 0) o->bs = atoi(v);
        else if (strcmp(a, "--seed") == 0) o->seed = strtoul(v, NULL, 10);
        else if (strcmp(a, "--data") == 0) o->data = v;
        else if (strcmp(a, "--threads") == 0) o->threads = atoi(v);
        else if (strcmp(a, "--save") == 0) o->save = v;
        else if (strcmp(a, "--load") == 0) o->load = v;
        else if (strcmp(a, "--show") == 0) o->show = atoi(v);
        else { fprintf(stderr, "mnist_cnn: unknown flag %s\n", a); return 0; }
    }
    if (o->epochs < 1 || o->bs < 1 || o->lr <= 0.0f || o->show < 0) {
        fprintf(stderr, "mnist_cnn: --epochs and --bs must be >= 1, --lr > 0, --show >= 0\n");
        return 0;
    }
    return 1;
}

/* The parameters, in PyTorch's layout and state_dict order. */
/* PyTorch's state_dict names of the model above, in the order of params[] in main */
static const char *const param_names[10] = {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias",
                                   "6.weight", "6.bias", "10.weight", "10.bias"};

typedef struct cnn {
    dlf_tensor *w[4];      /* conv weights (K,C,R,S): (8,1,5,5) (16,8,3,3) (32,16,3,3) (32,32,3,3) */
    dlf_tensor *b[4];      /* conv biases (K) */
    dlf_tensor *fc_w;      /* (10, 32) */
    dlf_tensor *fc_b;      /* (10) */
} cnn;

static const int conv_k[4] = {8, 16, 32, 32};   /* output channels */
static const int conv_c[4] = {1, 8, 16, 32};    /* input channels */
static const int conv_r[4] = {5, 3, 3, 3};      /* kernel size */

/* x (N,1,28,28) -> logits (N,10) */
static dlf_tensor *cnn_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    cnn *m = (cnn *)user;
    dlf_tensor *h = x;
    int i;
    for (i = 0; i < 4; i++)
        h = dlf_relu(t, dlf_conv2d(t, h, m->w[i], m->b[i], 2, conv_r[i] / 2));  /* (N,K,H/2,W/2) */
    h = dlf_global_avgpool(t, h);                 /* (N, 32) */
    return dlf_linear(t, h, m->fc_w, m->fc_b);    /* (N, 10) */
}

/* Draw test digits 3 to a row (78 columns): pixel columns 3..24 (the digits sit in
   the middle 20x20), one character per pixel column and per two pixel rows, with
   "pred P (true T)" under each; a wrong guess is marked with '!'. */
#define SHOW_PER_ROW 3
static void show_digits(cnn *m, dlf_tape *t, const dlf_mnist *data, float mean, float std, int count)
{
    static const char ramp[] = " .:-=+*#%@";
    float lut[256];
    int shown = 0, i, prev;
    dlf_tensor *x = dlf_tensor_new4(SHOW_PER_ROW, 1, 28, 28), *y = dlf_tensor_new1(SHOW_PER_ROW);
    int idx[SHOW_PER_ROW], pred[SHOW_PER_ROW];
    if (!x || !y) return;
    dlf_normalize_lut(lut, mean, std);
    prev = dlf_tape_set_grad(t, 0);
    while (shown < count) {
        int n = count - shown < SHOW_PER_ROW ? count - shown : SHOW_PER_ROW, r, c, k;
        dlf_tensor *z;
        for (k = 0; k < n; k++) idx[k] = (shown + k) * 37 % data->test.n;  /* a spread of test images */
        x->shape[0] = SHOW_PER_ROW; x->size = SHOW_PER_ROW * 784;
        y->shape[0] = SHOW_PER_ROW; y->size = SHOW_PER_ROW;
        dlf_dataset_fill(&data->test, idx, n, lut, x, y);
        dlf_tape_reset(t);
        z = cnn_forward(t, x, m);
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
        for (k = 0; k < n; k++)
            printf("pred %d (true %d) %c       ", pred[k], (int)y->data[k], pred[k] == (int)y->data[k] ? ' ' : '!');
        printf("\n\n");
        shown += n;
    }
    dlf_tape_reset(t);
    dlf_tape_set_grad(t, prev);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
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
    cnn m;
    dlf_tensor *params[10];
    float test_acc, test_loss;
    int rc, i, ok = 1;

    if (!parse_options(argc, argv, &o)) { usage(stderr); return 2; }
    if (o.threads > 0) dlf_set_threads(o.threads);
    rc = dlf_mnist_load(&data, o.data, NULL);
    if (rc != DLF_OK) {
        fprintf(stderr, "mnist_cnn: cannot load MNIST from %s:\n  %s\n", o.data, dlf_last_error());
        if (rc == DLF_ERR_IO)
            fprintf(stderr, "Run `make data` first to download it (or pass --data DIR).\n");
        return 1;
    }
    printf("MNIST: %d train, %d valid, %d test images; train mean %.4f std %.4f; %d threads\n",
           data.train.n, data.valid.n, data.test.n, data.mean, data.std, dlf_get_threads());

    dlf_rng_seed(&rng, o.seed);
    for (i = 0; i < 4; i++) {
        m.w[i] = dlf_param_new(4, (int[]){conv_k[i], conv_c[i], conv_r[i], conv_r[i]});
        m.b[i] = dlf_param_new(1, &conv_k[i]);
        ok &= m.w[i] && m.b[i];
        if (ok) dlf_init_kaiming_normal(m.w[i], &rng, 0.0f, DLF_FAN_IN);  /* biases stay 0 */
        params[2 * i] = m.w[i];
        params[2 * i + 1] = m.b[i];
    }
    m.fc_w = dlf_param_new(2, (int[]){10, 32});
    m.fc_b = dlf_param_new(1, (int[]){10});
    ok &= m.fc_w && m.fc_b;
    if (ok) dlf_init_torch_default(m.fc_w, m.fc_b, &rng);
    params[8] = m.fc_w;
    params[9] = m.fc_b;

    memset(&lc, 0, sizeof lc);
    lc.batch_size = o.bs;
    lc.shuffle = 1;
    lc.seed = o.seed;
    lc.mean = data.mean;
    lc.std = data.std;
    train = dlf_loader_create(&data.train, &lc);
    lc.shuffle = 0;
    lc.batch_size = 500;
    valid = dlf_loader_create(&data.valid, &lc);
    test = dlf_loader_create(&data.test, &lc);
    memset(&sc, 0, sizeof sc);
    sc.lr = o.lr;
    sc.momentum = 0.9f;
    opt = ok ? dlf_sgd_create(params, 10, &sc) : NULL;
    if (!ok || !train || !valid || !test || !opt) {
        fprintf(stderr, "mnist_cnn: %s\n", dlf_last_error());
        return 1;
    }
    if (o.load) {
        rc = dlf_ckpt_load_training(o.load, params, param_names, 10, opt);
        if (rc != DLF_OK) {
            fprintf(stderr, "mnist_cnn: cannot load the checkpoint: %s\n", dlf_last_error());
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
    rc = o.eval_only ? DLF_OK : dlf_fit(&tape, cnn_forward, &m, dlf_cross_entropy, opt, train, valid, &fc, &rep);
    if (rc != DLF_OK) {
        fprintf(stderr, "mnist_cnn: training stopped: %s\n", dlf_last_error());
        return 1;
    }
    test_acc = dlf_evaluate(&tape, cnn_forward, &m, test, &test_loss);
    if (o.show > 0) show_digits(&m, &tape, &data, data.mean, data.std, o.show);
    printf("test_loss %.4f; arena peak %.1f MiB per step\n", test_loss, (double)tape.peak_bytes / (1 << 20));
    if (o.save) {
        char acc[32], epochs[32];
        const char *meta[6];
        snprintf(acc, sizeof acc, "%.4f", test_acc);
        snprintf(epochs, sizeof epochs, "%d", o.eval_only ? 0 : o.epochs);
        meta[0] = "model"; meta[1] = "mnist_cnn";
        meta[2] = "epochs"; meta[3] = epochs;
        meta[4] = "test_accuracy"; meta[5] = acc;
        rc = dlf_ckpt_save_training(o.save, params, param_names, 10, opt, meta, 3);
        if (rc != DLF_OK) {
            fprintf(stderr, "mnist_cnn: cannot save the checkpoint: %s\n", dlf_last_error());
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
    for (i = 0; i < 10; i++) dlf_tensor_free(params[i]);
    dlf_mnist_free(&data);
    return 0;
}
