/* lesson.h - what the MNIST lessons share: loading MNIST from data/mnist, or, when
   `make data` has not been run, the small subset committed in tests/data (1000 train
   images, 200 of them held out for validation, and 500 test images), so that every
   lesson runs anywhere. Include it after dlf.h. */
#ifndef DLF_LESSON_H
#define DLF_LESSON_H
#include <stdio.h>
#include <string.h>

/* 1: full MNIST loaded, 0: the subset, -1: neither (the message is printed). Every
   line printed starts with indent. */
static int lesson_load_mnist(dlf_mnist *data, const char *indent)
{
    dlf_mnist_cfg mc;
    if (dlf_mnist_load(data, "data/mnist", NULL) == DLF_OK) {
        printf("%sdata: data/mnist (full MNIST)\n", indent);
        return 1;
    }
    printf("%sdata/mnist not found (%s)\n%sdata: tests/data subset (1000 train, 500 test); "
           "run `make data` for the full set\n", indent, dlf_last_error(), indent);
    memset(&mc, 0, sizeof mc);
    mc.prefix = "mnist-sub-";
    mc.test_split = "test";
    mc.n_valid = 200;
    if (dlf_mnist_load(data, "tests/data", &mc) != DLF_OK) {
        printf("%scannot load the subset either: %s\n", indent, dlf_last_error());
        return -1;
    }
    return 0;
}

/* Fashion-MNIST from data/fashion (n_valid training images held out; 0: dlf's default), or
   else the MNIST subset in tests/data, saying which. 1: Fashion-MNIST, 0: the subset, -1:
   neither could be read (the message is printed). */
static inline int lesson_load_fashion(dlf_mnist *data, int n_valid)
{
    dlf_mnist_cfg mc;
    memset(&mc, 0, sizeof mc);
    mc.n_valid = n_valid;
    if (dlf_mnist_load(data, "data/fashion", &mc) == DLF_OK) {
        printf("  data: data/fashion (Fashion-MNIST)\n");
        return 1;
    }
    printf("  data/fashion not found (run `make data`): ");
    return lesson_load_mnist(data, "  ") < 0 ? -1 : 0;
}

/* Lesson 07a's CNN, which lessons 05, 06b and 07a train: conv -> GeneralRelu(0.1, 0.4, 6)
   four times (1->8 5x5, 8->16, 16->32, 32->32 3x3, all stride 2, padding k/2), global
   average pool, Linear 32->10: layers 0..9. kaiming: the course's init_cnn (Kaiming normal
   for the leak 0.1, zero biases) instead of PyTorch's default init. static inline: a lesson
   that does not use it gets no warning. */
static inline void lesson_build_cnn(dlf_seq *s, uint64_t seed, int kaiming)
{
    static const int conv_k[4] = {8, 16, 32, 32};
    static const int conv_c[4] = {1, 8, 16, 32};
    static const int conv_r[4] = {5, 3, 3, 3};
    dlf_rng rng;
    int i;
    dlf_rng_seed(&rng, seed);
    dlf_seq_init(s);
    for (i = 0; i < 4; i++) {
        dlf_seq_add(s, dlf_layer_conv2d(conv_c[i], conv_k[i], conv_r[i], 2, conv_r[i] / 2, 1, &rng));
        if (kaiming) {
            dlf_init_kaiming_normal(s->layers[s->n - 1].weight, &rng, 0.1f, DLF_FAN_IN);
            dlf_fill(s->layers[s->n - 1].bias, 0.0f);
        }
        dlf_seq_add(s, dlf_layer_general_relu(0.1f, 0.4f, 6.0f));
    }
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));
    dlf_seq_add(s, dlf_layer_linear(32, 10, 1, &rng));
}

/* Lesson 11's plain CNN, which lessons 10, 10b and 11 train: conv (no bias, Kaiming
   normal) -> BatchNorm -> ReLU four times at widths[0..3] (the first 5x5, then 3x3, all
   stride 2), global average pool, Linear to 10 classes; drawn from r in that order. Any
   layers before it stay in s (so pass an initialized, usually empty, seq). */
static inline void lesson_build_bn_cnn(dlf_seq *s, const int widths[4], dlf_rng *r)
{
    int i, c = 1;
    for (i = 0; i < 4; i++) {
        dlf_seq_add(s, dlf_layer_conv2d(c, widths[i], i == 0 ? 5 : 3, 2, i == 0 ? 2 : 1, 0, r));
        dlf_init_kaiming_normal(s->layers[s->n - 1].weight, r, 0.0f, DLF_FAN_IN);
        dlf_seq_add(s, dlf_layer_batchnorm(widths[i]));
        dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU));
        c = widths[i];
    }
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));
    dlf_seq_add(s, dlf_layer_linear(c, 10, 1, r));
}

/* A dlf_seq as a dlf_model_fn (for dlf_fit, dlf_evaluate and the Learner). */
static inline dlf_tensor *lesson_seq_model(dlf_tape *t, dlf_tensor *x, void *m)
{
    return dlf_seq_forward(t, (const dlf_seq *)m, x);
}
#endif
