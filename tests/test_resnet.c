/* test_resnet.c - ResNet building blocks: the residual layer with a shortcut, the course's
   ResBlock (against the same layers composed by hand), zero-init of the last BatchNorm,
   the builder (shapes through every stage, odd sizes with ceil_mode pooling, names), the
   XResNet stem, gradients through a block, and a few training steps. */
#define DLF_IMPLEMENTATION
#include "harness.h"

static dlf_tensor *g_seq(dlf_tape *t, dlf_tensor **in, void *user)
{
    return dlf_seq_forward(t, (const dlf_seq *)user, in[0]);
}

static void test_block_composition(void)
{
    dlf_seq s, manual;
    dlf_rng r;
    dlf_tape t;
    dlf_tensor *x, *y, *b, *sc, *want;
    const dlf_layer *blk;
    GROUP("ResBlock = act(body(x) + shortcut(x))");
    dlf_rng_seed(&r, 1);
    dlf_seq_init(&s);
    CHECK(dlf_resblock(&s, 3, 8, 2, 3, 0.1f, 0.4f, 0, &r) == DLF_OK, "build: %s", dlf_last_error());
    CHECK(s.n == 2 && s.layers[0].kind == DLF_LAYER_RESIDUAL && s.layers[1].kind == DLF_LAYER_GENERAL_RELU,
          "a residual layer and its activation");
    blk = &s.layers[0];
    CHECK(blk->body && blk->body->n == 5 && blk->shortcut && blk->shortcut->n == 2,
          "body conv BN act conv BN (%d), shortcut pool + 1x1 conv (%d)", blk->body ? blk->body->n : -1,
          blk->shortcut ? blk->shortcut->n : -1);
    CHECK(blk->body->layers[0].weight->shape[2] == 3 && blk->body->layers[0].bias == NULL &&
              blk->body->layers[3].stride == 2 && blk->shortcut->layers[1].bias != NULL,
          "convs without bias, stride on the second conv, the 1x1 conv with bias");
    dlf_tape_init(&t);
    x = dlf_tensor_randn(4, (int[]){2, 3, 7, 7}, &r);
    y = dlf_seq_forward(&t, &s, x);
    CHECK(y && y->shape[1] == 8 && y->shape[2] == 4 && y->shape[3] == 4, "7x7 stride 2 -> 4x4 (ceil_mode in the shortcut)");
    /* the same layers by hand, in the same training mode */
    dlf_tape_reset(&t);
    manual = *blk->body;
    b = dlf_seq_forward(&t, &manual, x);
    manual = *blk->shortcut;
    sc = dlf_seq_forward(&t, &manual, x);
    want = dlf_general_relu(&t, dlf_add(&t, sc, b), 0.1f, 0.4f, 0.0f);
    dlf_tape_reset(&t);
    y = dlf_seq_forward(&t, &s, x);
    /* BatchNorm updated its running statistics twice meanwhile; in training mode the batch's
       own statistics are used, so the outputs agree exactly */
    CHECK(y && want && memcmp(y->data, want->data, (size_t)y->size * sizeof(float)) == 0, "same bits as by hand");
    /* gradients through the whole block (eval mode: BatchNorm as a fixed affine map) */
    dlf_tape_set_training(&t, 0);
    x->requires_grad = 1;
    {   /* a small step: the activations' kinks sit close together in this many values */
        dlf_tensor *in[1];
        dlf_gradcheck_cfg gc;
        dlf_gradcheck_report rep;
        memset(&gc, 0, sizeof gc);
        gc.eps = 1e-3;
        gc.eval_mode = 1;
        in[0] = x;
        CHECK(dlf_gradcheck(g_seq, in, 1, &s, &gc, &rep), "gradcheck through a ResBlock: %d of %d failed, max abs err %g",
              rep.n_failed, rep.n_checked, rep.max_abs_err);
    }
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
    dlf_seq_free(&s);
}

static void test_zero_bn(void)
{
    dlf_seq s;
    dlf_rng r;
    dlf_tape t;
    dlf_tensor *x, *y;
    int i, bad = 0;
    GROUP("zero-init of the last BatchNorm");
    dlf_rng_seed(&r, 2);
    dlf_seq_init(&s);
    dlf_resblock(&s, 4, 4, 1, 3, 0.0f, 0.0f, 1, &r);
    CHECK(s.layers[0].shortcut == NULL, "same width, stride 1: the identity shortcut");
    dlf_tape_init(&t);
    x = dlf_tensor_randn(4, (int[]){2, 4, 5, 5}, &r);
    y = dlf_seq_forward(&t, &s, x);
    for (i = 0; i < x->size; i++) bad += y->data[i] != (x->data[i] > 0.0f ? x->data[i] : 0.0f);
    CHECK(bad == 0, "a fresh block is relu(x): %d values differ", bad);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
    dlf_seq_free(&s);
}

static void test_builder(void)
{
    dlf_resnet_cfg cfg;
    dlf_seq s;
    dlf_params pl;
    dlf_rng r;
    dlf_tape t;
    dlf_tensor *x, *y;
    GROUP("dlf_resnet_build");
    memset(&cfg, 0, sizeof cfg);
    cfg.c_in = 1;
    cfg.n_classes = 10;
    cfg.n_stages = 4;
    cfg.widths[0] = 8; cfg.widths[1] = 16; cfg.widths[2] = 32; cfg.widths[3] = 64;
    cfg.leak = 0.1f;
    cfg.sub = 0.4f;
    cfg.head_bn = 1;
    dlf_rng_seed(&r, 3);
    dlf_seq_init(&s);
    CHECK(dlf_resnet_build(&s, &cfg, &r) == DLF_OK, "build: %s", dlf_last_error());
    CHECK(s.n == 4 * 2 + 3, "4 blocks with activations, pool, linear, BatchNorm1d: %d layers", s.n);
    dlf_tape_init(&t);
    x = dlf_tensor_randn(4, (int[]){3, 1, 28, 28}, &r);
    y = dlf_seq_forward(&t, &s, x);
    CHECK(y && y->ndim == 2 && y->shape[0] == 3 && y->shape[1] == 10, "(3,1,28,28) -> (3,10) through 28, 14, 7, 4");
    CHECK(s.layers[0].body->layers[0].weight->shape[2] == 5 && s.layers[2].body->layers[0].weight->shape[2] == 3,
          "the first block has the 5x5 kernel, the rest 3x3");
    CHECK(s.layers[s.n - 2].bias == NULL, "head_bn: the linear head has no bias");
    dlf_params_init(&pl);
    dlf_seq_collect(&s, &pl);
    CHECK(dlf_params_find(&pl, "0.body.0.weight") && dlf_params_find(&pl, "2.shortcut.1.weight") &&
              dlf_params_find(&pl, "2.shortcut.1.bias") && dlf_params_find(&pl, "6.body.4.running_var"),
          "state_dict names for body and shortcut tensors");
    CHECK(dlf_seq_freeze(&s, s.n - 2, 1) > 0 && !s.layers[2].shortcut->layers[1].weight->requires_grad,
          "freezing reaches into shortcuts");
    dlf_seq_unfreeze(&s);
    dlf_params_free(&pl);
    dlf_seq_free(&s);
    /* the XResNet stem on a 3-channel image */
    cfg.c_in = 3;
    cfg.stem = 1;
    cfg.n_stages = 2;
    cfg.depths[0] = 2;
    cfg.head_bn = 0;
    dlf_seq_init(&s);
    CHECK(dlf_resnet_build(&s, &cfg, &r) == DLF_OK, "xresnet build: %s", dlf_last_error());
    dlf_tensor_free(x);
    x = dlf_tensor_randn(4, (int[]){2, 3, 32, 32}, &r);
    dlf_tape_reset(&t);
    y = dlf_seq_forward(&t, &s, x);
    CHECK(y && y->shape[0] == 2 && y->shape[1] == 10, "xresnet (2,3,32,32) -> (2,10)");
    CHECK(s.layers[9].kind == DLF_LAYER_MAXPOOL2D && s.layers[0].stride == 2, "stem: 3 conv layers (stride 2 first), max pool");
    dlf_seq_free(&s);
    cfg.n_stages = 9;
    dlf_seq_init(&s);
    CHECK(dlf_resnet_build(&s, &cfg, &r) == DLF_ERR_ARG && strstr(dlf_last_error(), "1 to 8 stages"),
          "9 stages refused: %s", dlf_last_error());
    CHECK(dlf_resblock(&s, 4, 4, 3, 3, 0, 0, 0, &r) == DLF_ERR_ARG, "stride 3 refused");
    dlf_seq_free(&s);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
}

/* The first block's kernel: 5 by default (the course), any odd size on request. */
static void test_first_ks(void)
{
    dlf_resnet_cfg cfg;
    dlf_seq s;
    dlf_params pl;
    dlf_rng r;
    int ks;
    GROUP("the first block's kernel (first_ks)");
    memset(&cfg, 0, sizeof cfg);
    cfg.c_in = 1;
    cfg.n_classes = 3;
    cfg.n_stages = 2;
    cfg.widths[0] = 4;
    cfg.widths[1] = 8;
    dlf_rng_seed(&r, 4);
    for (ks = 0; ks <= 3; ks += 3) {
        cfg.first_ks = ks;
        dlf_seq_init(&s);
        dlf_params_init(&pl);
        CHECK(dlf_resnet_build(&s, &cfg, &r) == DLF_OK && dlf_seq_collect(&s, &pl) == DLF_OK && pl.n > 0,
              "build with first_ks %d", ks);
        if (pl.n > 0)
            CHECK(pl.items[0].t->ndim == 4 && pl.items[0].t->shape[2] == (ks ? ks : 5) &&
                      pl.items[0].t->shape[3] == (ks ? ks : 5) && pl.items[0].t->shape[1] == 1,
                  "first_ks %d: the first weight is %dx%d", ks, pl.items[0].t->shape[2], pl.items[0].t->shape[3]);
        dlf_params_free(&pl);
        dlf_seq_free(&s);
    }
    cfg.first_ks = 4;
    dlf_seq_init(&s);
    CHECK(dlf_resnet_build(&s, &cfg, &r) == DLF_ERR_ARG && strstr(dlf_last_error(), "first_ks 4") != NULL,
          "an even first_ks is refused: %s", dlf_last_error());
    dlf_seq_free(&s);
}

static void test_train(void)
{
    dlf_resnet_cfg cfg;
    dlf_seq s;
    dlf_params pl;
    dlf_rng r;
    dlf_tape t;
    dlf_optim_cfg oc;
    dlf_optim *o;
    dlf_tensor *x, *y;
    float first = 0.0f, last = 0.0f;
    int i;
    GROUP("a ResNet learns");
    memset(&cfg, 0, sizeof cfg);
    cfg.c_in = 1;
    cfg.n_classes = 3;
    cfg.n_stages = 2;
    cfg.widths[0] = 4;
    cfg.widths[1] = 8;
    cfg.zero_bn = 1;
    dlf_rng_seed(&r, 4);
    dlf_seq_init(&s);
    dlf_resnet_build(&s, &cfg, &r);
    dlf_params_init(&pl);
    dlf_seq_collect(&s, &pl);
    memset(&oc, 0, sizeof oc);
    oc.lr = 0.02f;
    o = dlf_optim_create_groups(DLF_OPTIM_ADAM, &pl, &oc, 1);
    x = dlf_tensor_randn(4, (int[]){12, 1, 8, 8}, &r);
    y = dlf_tensor_new1(12);
    for (i = 0; i < 12; i++) {
        y->data[i] = (float)(i % 3);
        x->data[i * 64 + (i % 3) * 20] += 4.0f;   /* a class-dependent bright pixel */
    }
    dlf_tape_init(&t);
    for (i = 0; i < 50; i++) {
        dlf_tensor *loss;
        dlf_tape_reset(&t);
        dlf_optim_zero_grad(o);
        loss = dlf_cross_entropy(&t, dlf_seq_forward(&t, &s, x), y);
        if (i == 0) first = loss->data[0];
        last = loss->data[0];
        dlf_backward(&t, loss);
        dlf_optim_step(o);
    }
    CHECK(last < 0.5f * first, "loss %g -> %g in 50 steps", (double)first, (double)last);
    dlf_tape_destroy(&t);
    dlf_optim_free(o);
    dlf_params_free(&pl);
    dlf_seq_free(&s);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

int main(void)
{
    th_init();
    test_block_composition();
    test_zero_bn();
    test_builder();
    test_first_ks();
    test_train();
    TEST_MAIN_END();
}
