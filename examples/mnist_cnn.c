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

   Defaults: --epochs 3 --lr 0.08 --bs 64 --seed 1. All flags (--save, --load,
   --eval-only, --show ...) are described in examples/example.h. The last line printed
   is exactly `test_accuracy=0.XXXX epochs=N train_seconds=S`. */
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "example.h"

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
static void show_digits(dlf_tape *t, const dlf_mnist *data, void *user, int count)
{
    cnn *m = (cnn *)user;
    static const char ramp[] = " .:-=+*#%@";
    float lut[256];
    int shown = 0, i, prev;
    dlf_tensor *x = dlf_tensor_new4(SHOW_PER_ROW, 1, 28, 28), *y = dlf_tensor_new1(SHOW_PER_ROW);
    int idx[SHOW_PER_ROW], pred[SHOW_PER_ROW];
    if (!x || !y) return;
    dlf_normalize_lut(lut, data->mean, data->std);
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
    ex_options o = {"mnist_cnn", "trains the course's 4-conv stride-2 CNN on MNIST (see the top of examples/mnist_cnn.c)",
                    3, 0.08f, 64, 1, "data/mnist", 0, NULL, NULL, 0, 0};
    ex_model model;
    dlf_mnist data;
    dlf_rng rng;
    cnn m;
    dlf_tensor *params[10];
    int rc, i, ok = 1;

    if (!ex_parse(argc, argv, &o)) { ex_usage(stderr, &o); return 2; }
    if (o.threads > 0) dlf_set_threads(o.threads);
    if (!ex_load_data(&o, &data)) return 1;

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
    if (!ok) { fprintf(stderr, "mnist_cnn: %s\n", dlf_last_error()); return 1; }
    dlf_init_torch_default(m.fc_w, m.fc_b, &rng);
    params[8] = m.fc_w;
    params[9] = m.fc_b;

    model.forward = cnn_forward;
    model.m = &m;
    model.params = params;
    model.names = param_names;
    model.n_params = 10;
    model.after = show_digits;
    rc = ex_train(&o, &data, &model);

    for (i = 0; i < 10; i++) dlf_tensor_free(params[i]);
    dlf_mnist_free(&data);
    return rc;
}
