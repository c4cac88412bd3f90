/* tabular.c - an MLP on a table of numbers: the Wisconsin diagnostic breast-cancer data.

   569 tumours, 30 numeric features each (radius, texture, ... of the cell nuclei), and
   a target, 0 malignant or 1 benign, read from the CSV file scikit-learn ships
   (its first line holds the counts and class names, "569,30,malignant,benign"). The
   program holds out a seeded 20% of the rows as the test split (114 rows, as
   scikit-learn's train_test_split(test_size=0.2) counts them), standardizes every
   feature with the training split's mean and std, and trains, as PyTorch would write it,
       model = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2))
       opt   = torch.optim.Adam(model.parameters(), lr=1e-3)
       loss  = F.cross_entropy(model(x), y)
   with batch 32 for 100 epochs (weights start as PyTorch's defaults). The test split is
   never seen in training. --splits K repeats the whole run over K seeded splits
   (seeds --seed, --seed + 1, ...) and reports the mean test accuracy: one split of 114
   rows moves the accuracy in steps of 0.9%, so one split says little.

   Build and run:
       make data                          # once: the table into data/tabular/
       make build/examples/tabular
       ./build/examples/tabular --splits 5

   Flags: --epochs N (100), --lr X (1e-3), --bs N (32), --hidden N (32), --seed N (1),
   --splits K (1), --data FILE (data/tabular/breast_cancer.csv), --threads N,
   --save PATH (after the last split: the weights under PyTorch's state_dict names and
   the input normalization, "norm.input.*" metadata, for inference elsewhere), --help.
   One line per split, then exactly `test_accuracy=0.XXXX epochs=N train_seconds=S`
   (the mean over the splits; S the training time of all of them). */
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tab_options {
    int epochs, bs, hidden, splits, threads;
    float lr;
    unsigned long seed;
    const char *data, *save;
} tab_options;

static void usage(FILE *f)
{
    fprintf(f, "usage: tabular [--epochs N] [--lr X] [--bs N] [--hidden N] [--seed N] [--splits K]\n"
               "               [--data FILE] [--threads N] [--save PATH]\n"
               "trains a 30-H-2 MLP on the breast-cancer table (see the top of examples/tabular.c)\n"
               "defaults: --epochs 100 --lr 0.001 --bs 32 --hidden 32 --seed 1 --splits 1\n"
               "          --data data/tabular/breast_cancer.csv\n");
}

static int parse(int argc, char **argv, tab_options *o)
{
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); exit(0); }
        v = i + 1 < argc ? argv[++i] : NULL;
        if (!v) { fprintf(stderr, "tabular: %s needs a value (or is unknown)\n", a); return 0; }
        if (strcmp(a, "--epochs") == 0) o->epochs = atoi(v);
        else if (strcmp(a, "--lr") == 0) o->lr = (float)atof(v);
        else if (strcmp(a, "--bs") == 0) o->bs = atoi(v);
        else if (strcmp(a, "--hidden") == 0) o->hidden = atoi(v);
        else if (strcmp(a, "--seed") == 0) o->seed = strtoul(v, NULL, 10);
        else if (strcmp(a, "--splits") == 0) o->splits = atoi(v);
        else if (strcmp(a, "--data") == 0) o->data = v;
        else if (strcmp(a, "--threads") == 0) o->threads = atoi(v);
        else if (strcmp(a, "--save") == 0) o->save = v;
        else { fprintf(stderr, "tabular: unknown flag %s\n", a); return 0; }
    }
    if (o->epochs < 1 || o->bs < 1 || o->hidden < 1 || o->splits < 1 || o->lr <= 0.0f) {
        fprintf(stderr, "tabular: --epochs, --bs, --hidden and --splits must be >= 1, --lr > 0\n");
        return 0;
    }
    return 1;
}

static dlf_tensor *mlp_forward(dlf_tape *t, dlf_tensor *x, void *s)
{
    return dlf_seq_forward(t, (const dlf_seq *)s, x);  /* x (N,30) -> logits (N,2) */
}

/* One split: train on `train`, return the test accuracy; *seconds the training time. */
static int run_split(const tab_options *o, const dlf_dataset *train, const dlf_dataset *test, uint64_t seed,
                     int last, float *acc, double *seconds)
{
    int F = dlf_dataset_channels(train), C = train->n_classes > test->n_classes ? train->n_classes : test->n_classes;
    float *mean = (float *)malloc((size_t)F * sizeof(float)), *std = (float *)malloc((size_t)F * sizeof(float));
    float *pred = (float *)malloc((size_t)test->n * sizeof(float));
    dlf_loader_cfg lc;
    dlf_loader *tr = NULL, *te = NULL;
    dlf_optim_cfg oc;
    dlf_optim *opt = NULL;
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    dlf_params params;
    dlf_seq seq;
    dlf_layer l1, l2;
    dlf_tape tape;
    dlf_rng rng;
    int rc = DLF_ERR_NOMEM, i, n_pred = 0, confusion[2][2] = {{0, 0}, {0, 0}};
    dlf_seq_init(&seq);
    dlf_params_init(&params);
    dlf_tape_init(&tape);
    if (!mean || !std || !pred) goto done;
    /* the training split's statistics standardize both splits */
    dlf_dataset_channel_stats(train, mean, std);
    memset(&lc, 0, sizeof lc);
    lc.batch_size = o->bs;
    lc.shuffle = 1;
    lc.seed = seed;
    lc.ch_mean = mean;
    lc.ch_std = std;
    tr = dlf_loader_create(train, &lc);
    lc.shuffle = 0;
    lc.batch_size = 256;
    te = dlf_loader_create(test, &lc);
    dlf_rng_seed(&rng, seed);
    l1 = dlf_layer_linear(F, o->hidden, 1, &rng);
    l2 = dlf_layer_linear(o->hidden, C, 1, &rng);
    if (!tr || !te || !dlf_layer_ok(&l1) || !dlf_layer_ok(&l2) || dlf_seq_add(&seq, l1) != DLF_OK ||
        dlf_seq_add(&seq, dlf_layer_simple(DLF_LAYER_RELU)) != DLF_OK || dlf_seq_add(&seq, l2) != DLF_OK ||
        dlf_seq_collect(&seq, &params) != DLF_OK)
        goto done;
    memset(&oc, 0, sizeof oc);
    oc.lr = o->lr;
    if (!(opt = dlf_optim_create_groups(DLF_OPTIM_ADAM, &params, &oc, 1))) goto done;
    memset(&fc, 0, sizeof fc);
    fc.epochs = o->epochs;
    fc.quiet = 1;
    /* loss NULL: the labels are class ids, so cross-entropy */
    rc = dlf_fit(&tape, mlp_forward, &seq, NULL, opt, tr, NULL, &fc, &rep);
    if (rc != DLF_OK) goto done;
    *seconds = rep.train_seconds;
    /* inference: each test row's class, in the test split's order */
    rc = dlf_predict_loader(&tape, mlp_forward, &seq, te, DLF_PRED_CLASS, pred, (size_t)test->n, &n_pred);
    if (rc != DLF_OK) goto done;
    for (i = 0; i < n_pred; i++) {
        int truth = test->ids[i], guess = (int)pred[i];
        if (truth < 2 && guess < 2) confusion[truth][guess]++;
    }
    *acc = n_pred ? (float)(confusion[0][0] + confusion[1][1]) / (float)n_pred : 0.0f;
    printf("split seed %lu: train %d rows, test %d rows, train loss %.4f, test accuracy %.4f "
           "(malignant %d/%d, benign %d/%d right), %.2f s\n", (unsigned long)seed, train->n, test->n, rep.train_loss,
           *acc, confusion[0][0], confusion[0][0] + confusion[0][1], confusion[1][1], confusion[1][0] + confusion[1][1],
           rep.train_seconds);
    if (last && o->save) {
        dlf_ckpt c;
        dlf_ckpt_init(&c);
        rc = dlf_ckpt_add_param_list(&c, &params);
        if (rc == DLF_OK) rc = dlf_ckpt_add_loader_norm(&c, "input", tr);
        if (rc == DLF_OK) rc = dlf_ckpt_set_float(&c, "test_accuracy", *acc);
        if (rc == DLF_OK) rc = dlf_ckpt_save(&c, o->save);
        dlf_ckpt_free(&c);
        if (rc == DLF_OK) printf("saved %s (weights and the input normalization)\n", o->save);
    }
done:
    if (rc != DLF_OK) fprintf(stderr, "tabular: %s\n", dlf_last_error());
    dlf_optim_free(opt);
    dlf_loader_free(tr);
    dlf_loader_free(te);
    dlf_params_free(&params);
    dlf_seq_free(&seq);
    dlf_tape_destroy(&tape);
    free(mean);
    free(std);
    free(pred);
    return rc;
}

int main(int argc, char **argv)
{
    tab_options o;
    dlf_csv_cfg cc;
    dlf_dataset all;
    double seconds = 0.0;
    float acc_sum = 0.0f;
    int s, rc;

    memset(&o, 0, sizeof o);
    o.epochs = 100;
    o.bs = 32;
    o.hidden = 32;
    o.lr = 1e-3f;
    o.seed = 1;
    o.splits = 1;
    o.data = "data/tabular/breast_cancer.csv";
    if (!parse(argc, argv, &o)) { usage(stderr); return 2; }
    if (o.threads > 0) dlf_set_threads(o.threads);

    memset(&cc, 0, sizeof cc);
    cc.skip_lines = 1;   /* "569,30,malignant,benign" */
    cc.header = -1;      /* then rows only */
    cc.label_col = -1;   /* the target is the last column */
    rc = dlf_csv_load(o.data, &cc, &all);
    if (rc != DLF_OK) {
        fprintf(stderr, "tabular: %s\n", dlf_last_error());
        if (rc == DLF_ERR_IO) fprintf(stderr, "tabular: run 'make data' first (it fetches the table into data/tabular/)\n");
        return 1;
    }
    printf("%s: %d rows, %d features, %d classes\n", o.data, all.n, dlf_dataset_channels(&all), all.n_classes);
    for (s = 0; s < o.splits; s++) {
        dlf_dataset train, test;
        uint64_t seed = (uint64_t)o.seed + (uint64_t)s;
        float acc = 0.0f;
        double sec = 0.0;
        rc = dlf_dataset_split(&all, 0.2, seed, &train, &test);
        if (rc == DLF_OK) rc = run_split(&o, &train, &test, seed, s == o.splits - 1, &acc, &sec);
        dlf_dataset_free(&train);
        dlf_dataset_free(&test);
        if (rc != DLF_OK) { dlf_dataset_free(&all); return 1; }
        acc_sum += acc;
        seconds += sec;
    }
    dlf_dataset_free(&all);
    if (o.splits > 1) printf("mean over %d splits\n", o.splits);
    printf("test_accuracy=%.4f epochs=%d train_seconds=%.2f\n", acc_sum / (float)o.splits, o.epochs, seconds);
    return 0;
}
