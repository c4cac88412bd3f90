/* test_transfer.c - transfer learning: a checkpoint loaded into a model whose head
   differs (matched by name and shape, the rest reported), freezing the body while
   BatchNorm stays trainable, unfreezing, and discriminative learning rates through
   parameter groups. */
#define DLF_IMPLEMENTATION
#include "harness.h"
#include <unistd.h>

/* conv(1->4) BN ReLU conv(4->8) BN ReLU pool flatten linear(8 -> classes) */
static void build(dlf_seq *s, int classes, uint64_t seed)
{
    dlf_rng r;
    dlf_rng_seed(&r, seed);
    dlf_seq_init(s);
    dlf_seq_add(s, dlf_layer_conv2d(1, 4, 3, 1, 1, 0, &r));
    dlf_seq_add(s, dlf_layer_batchnorm(4));
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(s, dlf_layer_conv2d(4, 8, 3, 2, 1, 0, &r));
    dlf_seq_add(s, dlf_layer_batchnorm(8));
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(s, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));
    dlf_seq_add(s, dlf_layer_linear(8, classes, 1, &r));
}

static void step(dlf_seq *s, dlf_optim *o, dlf_tensor *x, dlf_tensor *y)
{
    dlf_tape t;
    dlf_tape_init(&t);
    dlf_optim_zero_grad(o);
    dlf_backward(&t, dlf_cross_entropy(&t, dlf_seq_forward(&t, s, x), y));
    dlf_optim_step(o);
    dlf_tape_destroy(&t);
}

static int same(const dlf_tensor *a, const float *b) { return memcmp(a->data, b, (size_t)a->size * sizeof(float)) == 0; }

static float *snap(const dlf_tensor *a)
{
    float *c = (float *)malloc((size_t)a->size * sizeof(float));
    memcpy(c, a->data, (size_t)a->size * sizeof(float));
    return c;
}

int main(void)
{
    dlf_seq a, b;
    dlf_params pa, pb;
    dlf_ckpt ck;
    dlf_transfer_report rep;
    dlf_optim_cfg cfg[2];
    dlf_optim *o;
    dlf_rng r;
    dlf_tensor *x, *y;
    char path[64];
    float *conv0, *bn1w, *head, *head_init;
    int i, rc;
    th_init();
    snprintf(path, sizeof path, "/tmp/dlf_transfer_%d.safetensors", (int)getpid());
    dlf_rng_seed(&r, 1);
    x = dlf_tensor_randn(4, (int[]){6, 1, 8, 8}, &r);
    y = dlf_tensor_new1(6);
    for (i = 0; i < 6; i++) y->data[i] = (float)(i % 3);

    GROUP("load into a model with another head");
    build(&a, 5, 1);   /* "pretrained" on 5 classes */
    build(&b, 3, 2);   /* the new task has 3 */
    dlf_params_init(&pa);
    dlf_params_init(&pb);
    dlf_seq_collect(&a, &pa);
    dlf_seq_collect(&b, &pb);
    dlf_ckpt_init(&ck);
    CHECK(dlf_ckpt_add_param_list(&ck, &pa) == DLF_OK && dlf_ckpt_save(&ck, path) == DLF_OK, "save: %s", dlf_last_error());
    dlf_ckpt_free(&ck);
    dlf_ckpt_init(&ck);
    head_init = snap(b.layers[7].weight);
    CHECK(dlf_ckpt_load(&ck, path) == DLF_OK, "load: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_param_list(&ck, &pb) == DLF_ERR_FORMAT, "the strict load refuses the other head");
    rc = dlf_ckpt_get_param_list_matching(&ck, &pb, &rep);
    CHECK(rc == DLF_OK && rep.n_loaded == pb.n - 2 && rep.n_mismatched == 2 && rep.n_missing == 0,
          "matching load: rc %d loaded %d of %d, mismatched %d, missing %d", rc, rep.n_loaded, pb.n, rep.n_mismatched,
          rep.n_missing);
    CHECK(strstr(rep.text, "7.weight: file (5, 8), model (3, 8)") != NULL && strstr(rep.text, "7.bias") != NULL,
          "the report names the head: %s", rep.text);
    CHECK(same(b.layers[0].weight, a.layers[0].weight->data) && same(b.layers[4].bn.running_var, a.layers[4].bn.running_var->data),
          "body weights and BatchNorm buffers come from the file");
    CHECK(same(b.layers[7].weight, head_init), "the head keeps its fresh init");
    dlf_ckpt_free(&ck);

    GROUP("freeze the body, BatchNorm trainable");
    CHECK(dlf_seq_freeze(&b, 7, 1) == 2, "two conv weights frozen (biases none, BatchNorm kept)");
    memset(cfg, 0, sizeof cfg);
    cfg[0].lr = 0.1f;
    cfg[0].momentum = 0.9f;
    cfg[0].weight_decay = 0.1f;   /* decay must not move a frozen weight either */
    cfg[1] = cfg[0];
    o = dlf_optim_create_groups(DLF_OPTIM_SGD, &pb, cfg, 1);
    conv0 = snap(b.layers[0].weight);
    bn1w = snap(b.layers[1].weight);
    head = snap(b.layers[7].weight);
    step(&b, o, x, y);
    step(&b, o, x, y);
    CHECK(same(b.layers[0].weight, conv0), "a frozen conv weight did not move");
    CHECK(!same(b.layers[1].weight, bn1w), "BatchNorm's weight trained");
    CHECK(!same(b.layers[7].weight, head), "the head trained");
    CHECK(b.layers[0].weight->grad == NULL || b.layers[0].weight->grad[0] == 0.0f, "no gradient reached the frozen weight");
    CHECK(dlf_seq_unfreeze(&b) == 2, "unfreeze: two weights");
    step(&b, o, x, y);
    CHECK(!same(b.layers[0].weight, conv0), "unfrozen, the conv weight trains");
    dlf_optim_free(o);
    free(conv0); free(bn1w); free(head);

    GROUP("discriminative learning rates");
    CHECK(dlf_params_set_group(&pb, "7.", 1) == 2, "the head's two tensors in group 1");
    cfg[0].lr = 1e-6f;
    cfg[0].weight_decay = 0.0f;
    cfg[0].momentum = 0.0f;
    cfg[1].lr = 0.5f;
    cfg[1].weight_decay = 0.0f;
    cfg[1].momentum = 0.0f;
    o = dlf_optim_create_groups(DLF_OPTIM_SGD, &pb, cfg, 2);
    conv0 = snap(b.layers[3].weight);
    head = snap(b.layers[7].weight);
    step(&b, o, x, y);
    {
        double dbody = 0.0, dhead = 0.0;
        for (i = 0; i < b.layers[3].weight->size; i++) dbody = fmax(dbody, fabs(b.layers[3].weight->data[i] - conv0[i]));
        for (i = 0; i < b.layers[7].weight->size; i++) dhead = fmax(dhead, fabs(b.layers[7].weight->data[i] - head[i]));
        CHECK(dhead > 1e4 * dbody && dhead > 0.0, "body moved %g, head %g", dbody, dhead);
    }
    dlf_optim_free(o);
    free(conv0); free(head); free(head_init);

    GROUP("a file with nothing of the model");
    {
        dlf_seq c;
        dlf_params pc;
        dlf_rng rr;
        dlf_rng_seed(&rr, 3);
        dlf_seq_init(&c);
        dlf_seq_add(&c, dlf_layer_linear(3, 2, 1, &rr));
        dlf_seq_add(&c, dlf_layer_linear(2, 2, 1, &rr));
        dlf_params_init(&pc);
        dlf_seq_collect(&c, &pc);   /* 0.weight (2,3): the file's 0.weight is a conv */
        dlf_ckpt_init(&ck);
        dlf_ckpt_load(&ck, path);
        CHECK(dlf_ckpt_get_param_list_matching(&ck, &pc, &rep) == DLF_ERR_FORMAT && strstr(dlf_last_error(), "not one"),
              "refused: %s", dlf_last_error());
        dlf_ckpt_free(&ck);
        dlf_params_free(&pc);
        dlf_seq_free(&c);
    }
    remove(path);
    dlf_params_free(&pa);
    dlf_params_free(&pb);
    dlf_seq_free(&a);
    dlf_seq_free(&b);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
    TEST_MAIN_END();
}
