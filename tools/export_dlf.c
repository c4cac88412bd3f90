/* export_dlf.c - dlf-made checkpoints of the course's two MNIST models, for PyTorch to read.

   The direction dlf -> PyTorch, as committed fixtures. For each model this program
     1. builds it as a dlf_seq that mirrors PyTorch's nn.Sequential module for module, so
        dlf_seq_params names the weights exactly as model.state_dict() does:
          mnist_cnn  nn.Sequential(Conv2d(1,8,5,2,2), ReLU, Conv2d(8,16,3,2,1), ReLU,
                       Conv2d(16,32,3,2,1), ReLU, Conv2d(32,32,3,2,1), ReLU,
                       AdaptiveAvgPool2d(1), Flatten, Linear(32,10))
                     -> 0.weight 0.bias 2.* 4.* 6.* 10.weight 10.bias
          mnist_mlp  nn.Sequential(Flatten, Linear(784,50), ReLU, Linear(50,10))
                     -> 1.weight 1.bias 3.weight 3.bias   (Flatten is module 0)
        initialized by dlf (PyTorch's default init, dlf_init_torch_default) from a fixed seed;
     2. draws a fixed batch: "input" (8,1,28,28) N(0,1) and "target" (8,) class ids;
     3. takes one SGD step (lr 0.1, momentum 0.9) on it, so the optimizer holds momentum buffers;
     4. computes the logits of the stepped model on "input" ("dlf_logits", no tape);
     5. writes everything with the checkpoint API (dlf_ckpt_add_params / add_optim / add_rng,
        set_int / set_float / set_meta, dlf_ckpt_save) to tests/ref/interop/dlf_cnn.safetensors
        and dlf_mlp.safetensors.
   A third, mnist_bn_cnn (the course's conv_layer with bn: bias-less Conv2d, BatchNorm2d, ReLU,
   four times, then AdaptiveAvgPool2d, Flatten, Linear(32,10); modules 0..14), takes two Adam
   steps (lr 1e-3) instead and goes to dlf_bncnn.safetensors with its buffers (running_mean,
   running_var, num_batches_tracked) and Adam state (optim.exp_avg.<name>, optim.exp_avg_sq.<name>,
   optim.step.<name>, metadata optim.kind "adam"); its dlf_logits are eval-mode logits.
   tools/gen_reference.py then loads those files into torch with load_state_dict(strict=True),
   checks torch's logits against dlf_logits, and writes what torch computed (see docs/interop.md).

   tests/test_interop.c compiles this same file (with EXPORT_DLF_NO_MAIN) and rebuilds both
   checkpoints with these functions: the bytes must equal the committed files, so the
   fixtures are provably what dlf writes today.

   Usage: build/tools/export_dlf [DIR]     (default tests/ref/interop; `make reference` runs it) */
#ifndef EXPORT_DLF_NO_MAIN
#include <stdio.h>
#include <string.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#endif

#define EXP_MAX_PARAMS 32
#define EXP_BATCH 8             /* N of the stored input batch */
#define EXP_SEED_MODEL 2026     /* the weights */
#define EXP_SEED_DATA 7         /* the input batch and its targets */
#define EXP_LR 0.1f
#define EXP_MOMENTUM 0.9f
#define EXP_BN_LR 1e-3f        /* Adam on the BatchNorm CNN */
#define EXP_BN_STEPS 2          /* its steps before the checkpoint */

/* Which matmul/conv micro-kernel this build of dlf.h runs (dlf_kernel_name). Floats after a
   gemm depend on it (FMA rounds once, the portable kernel twice), not on the thread count; the
   files record it so tests/test_interop.c knows whether it can demand identical bytes. */

/* The compiler may also fuse a*b + c into one FMA in dlf's scalar code (clang does by default,
   -ffp-contract=on; gcc does not under -std=c99), which changes last bits too. Detected at run
   time: with a = 1 + 2^-12, a*a rounds to 1 + 2^-11 and a*a - (1 + 2^-11) is 0, fused 2^-24. */
static float exp_mul_add(float a, float b, float c) { return a * b + c; }
static const char *exp_kernel(void)
{
    volatile float a = 1.0f + 1.0f / 4096.0f, c = -(1.0f + 1.0f / 2048.0f);
    int fused = exp_mul_add(a, a, c) != 0.0f;
    static char name[32];
    snprintf(name, sizeof name, "%s%s", dlf_kernel_name(), fused ? "+contract" : "");
    return name;
}

typedef enum { EXP_CNN = 0, EXP_MLP = 1, EXP_BNCNN = 2 } exp_which;

typedef struct exp_model {
    const char *name;                       /* "mnist_cnn" or "mnist_mlp": metadata "model" */
    const char *file;                       /* "dlf_cnn.safetensors" ... */
    const char *torch_module;               /* the same model as PyTorch code (metadata) */
    dlf_seq seq;                            /* the model */
    dlf_params pl;                          /* every tensor by state_dict name, buffers included */
    dlf_tensor *params[EXP_MAX_PARAMS];     /* (n_params) its parameters (BNCNN: and buffers), state_dict order */
    char names[EXP_MAX_PARAMS][DLF_PARAM_NAME_MAX]; /* "0.weight" ... */
    const char *name_ptrs[EXP_MAX_PARAMS];  /* names[i], as the ckpt API takes them */
    int n_params;
    dlf_tensor *input;                      /* (N,1,28,28) N(0,1) */
    dlf_tensor *target;                     /* (N,) class ids 0..9 as floats */
    dlf_tensor *logits;                     /* (N,10) after the step, heap copy */
    dlf_rng data_rng;                       /* the data generator after drawing: stored as rng.data */
    dlf_optim *opt;                         /* SGD with momentum after one step (BNCNN: Adam after two) */
    int is_bn;                              /* BNCNN: eval-mode logits, Adam, buffers in the checkpoint */
} exp_model;

static const char *EXP_CNN_TORCH =
    "nn.Sequential(nn.Conv2d(1, 8, 5, stride=2, padding=2), nn.ReLU(), "
    "nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), "
    "nn.ReLU(), nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), "
    "nn.Flatten(), nn.Linear(32, 10))";
static const char *EXP_BNCNN_TORCH =
    "nn.Sequential(*[m for ni, nf, ks in [(1, 8, 5), (8, 16, 3), (16, 32, 3), (32, 32, 3)] for m in "
    "(nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2, bias=False), nn.BatchNorm2d(nf), nn.ReLU())], "
    "nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))";
static const char *EXP_MLP_TORCH =
    "nn.Sequential(nn.Flatten(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))";

/* The model, layer for layer as the nn.Sequential above (indices give the names). */
static void exp_build_seq(exp_model *m, exp_which which, dlf_rng *r)
{
    static const int ch[5] = {1, 8, 16, 32, 32}, ks[4] = {5, 3, 3, 3};
    int i;
    dlf_seq_init(&m->seq);
    if (which == EXP_BNCNN) {     /* the course's conv_layer with bn: modules 0..11, then 12 pool, 13 flatten, 14 linear */
        for (i = 0; i < 4; i++) {
            dlf_seq_add(&m->seq, dlf_layer_conv2d(ch[i], ch[i + 1], ks[i], 2, ks[i] / 2, 0, r));
            dlf_seq_add(&m->seq, dlf_layer_batchnorm(ch[i + 1]));
            dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_RELU));
        }
        dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL));
        dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_FLATTEN));
        dlf_seq_add(&m->seq, dlf_layer_linear(32, 10, 1, r));
    } else if (which == EXP_CNN) {
        for (i = 0; i < 4; i++) {                                   /* modules 0..7 */
            dlf_seq_add(&m->seq, dlf_layer_conv2d(ch[i], ch[i + 1], ks[i], 2, ks[i] / 2, 1, r));
            dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_RELU));
        }
        dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_GLOBAL_AVGPOOL)); /* 8: AdaptiveAvgPool2d(1) */
        dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_FLATTEN));        /* 9: Flatten (a no-op view here) */
        dlf_seq_add(&m->seq, dlf_layer_linear(32, 10, 1, r));             /* 10: Linear */
    } else {
        dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_FLATTEN));        /* 0: Flatten */
        dlf_seq_add(&m->seq, dlf_layer_linear(784, 50, 1, r));            /* 1 */
        dlf_seq_add(&m->seq, dlf_layer_simple(DLF_LAYER_RELU));           /* 2 */
        dlf_seq_add(&m->seq, dlf_layer_linear(50, 10, 1, r));             /* 3 */
    }
}

/* y = model(x) in eval mode (BatchNorm uses its running statistics) without a tape record,
   copied to a new heap tensor. */
static dlf_tensor *exp_logits(exp_model *m, dlf_tensor *x)
{
    dlf_tape tape;
    dlf_tensor *out, *copy;
    dlf_tape_init(&tape);
    dlf_tape_set_grad(&tape, 0);
    dlf_tape_set_training(&tape, 0);
    out = dlf_seq_forward(&tape, &m->seq, x);
    copy = dlf_tensor_from(out->ndim, out->shape, out->data);
    dlf_tape_destroy(&tape);
    return copy;
}

/* One SGD step on the stored batch: loss = cross_entropy(model(input), target). Returns the loss. */
static float exp_step(exp_model *m)
{
    dlf_tape tape;
    dlf_tensor *loss;
    float value;
    dlf_tape_init(&tape);
    dlf_optim_zero_grad(m->opt);
    loss = dlf_cross_entropy(&tape, dlf_seq_forward(&tape, &m->seq, m->input), m->target);
    value = loss->data[0];
    dlf_backward(&tape, loss);
    dlf_optim_step(m->opt);
    dlf_tape_destroy(&tape);
    return value;
}

/* Build, draw the batch, take one step, compute the logits. `model_seed` is normally
   EXP_SEED_MODEL; a different one gives other starting weights (the test uses that to
   show a loaded checkpoint overwrites everything). Returns DLF_OK. */
static int exp_make(exp_model *m, exp_which which, uint64_t model_seed, int take_step)
{
    dlf_rng r;
    dlf_optim_cfg cfg;
    int i;
    memset(m, 0, sizeof *m);
    m->is_bn = which == EXP_BNCNN;
    m->name = which == EXP_CNN ? "mnist_cnn" : which == EXP_MLP ? "mnist_mlp" : "mnist_bn_cnn";
    m->file = which == EXP_CNN ? "dlf_cnn.safetensors" : which == EXP_MLP ? "dlf_mlp.safetensors" : "dlf_bncnn.safetensors";
    m->torch_module = which == EXP_CNN ? EXP_CNN_TORCH : which == EXP_MLP ? EXP_MLP_TORCH : EXP_BNCNN_TORCH;
    dlf_rng_seed(&r, model_seed);
    exp_build_seq(m, which, &r);
    dlf_params_init(&m->pl);
    if (dlf_seq_collect(&m->seq, &m->pl) != DLF_OK) return DLF_ERR_NOMEM;
    if (m->is_bn) {   /* parameters and buffers, the whole state_dict */
        m->n_params = m->pl.n;
        for (i = 0; i < m->pl.n && i < EXP_MAX_PARAMS; i++) {
            m->params[i] = m->pl.items[i].t;
            snprintf(m->names[i], DLF_PARAM_NAME_MAX, "%s", m->pl.items[i].name);
        }
    } else {
        m->n_params = dlf_seq_params(&m->seq, m->params, m->names, EXP_MAX_PARAMS);
    }
    if (m->n_params > EXP_MAX_PARAMS) return DLF_ERR_ARG;
    for (i = 0; i < m->n_params; i++) m->name_ptrs[i] = m->names[i];
    dlf_rng_seed(&m->data_rng, EXP_SEED_DATA);
    m->input = dlf_tensor_new4(EXP_BATCH, 1, 28, 28);
    m->target = dlf_tensor_new1(EXP_BATCH);
    if (!m->input || !m->target) return DLF_ERR_NOMEM;
    dlf_fill_normal(m->input, &m->data_rng, 0.0f, 1.0f);
    for (i = 0; i < EXP_BATCH; i++) m->target->data[i] = (float)dlf_rng_below(&m->data_rng, 10);
    memset(&cfg, 0, sizeof cfg);
    cfg.lr = EXP_LR;
    cfg.momentum = EXP_MOMENTUM;
    if (m->is_bn) {   /* Adam over the trainable tensors of pl, which keeps their names */
        memset(&cfg, 0, sizeof cfg);
        cfg.lr = EXP_BN_LR;
        m->opt = dlf_optim_create_groups(DLF_OPTIM_ADAM, &m->pl, &cfg, 1);
    } else {
        m->opt = dlf_optim_create(DLF_OPTIM_SGD, m->params, m->n_params, &cfg);
    }
    if (!m->opt) return DLF_ERR_NOMEM;
    for (i = 0; take_step && i < (m->is_bn ? EXP_BN_STEPS : 1); i++) exp_step(m);
    m->logits = exp_logits(m, m->input);
    return m->logits ? DLF_OK : DLF_ERR_NOMEM;
}

static void exp_free(exp_model *m)
{
    dlf_optim_free(m->opt);
    dlf_tensor_free(m->input);
    dlf_tensor_free(m->target);
    dlf_tensor_free(m->logits);
    dlf_params_free(&m->pl);
    dlf_seq_free(&m->seq);
    memset(m, 0, sizeof *m);
}

/* The checkpoint: a full training checkpoint plus the batch and dlf's logits.
   tensors   <params by state_dict name>, optim.momentum_buffer.<name>, input, target, dlf_logits
   metadata  format, model, torch_module, kernel, seed, data_seed, step, epoch, lr, momentum (%a),
             optim.steps, rng.data */
static int exp_ckpt(exp_model *m, dlf_ckpt *c)
{
    int rc = DLF_OK;
    dlf_ckpt_init(c);
    if (rc == DLF_OK) rc = dlf_ckpt_set_meta(c, "format", "dlf checkpoint");
    if (rc == DLF_OK) rc = dlf_ckpt_set_meta(c, "model", m->name);
    if (rc == DLF_OK) rc = dlf_ckpt_set_meta(c, "torch_module", m->torch_module);
    if (rc == DLF_OK) rc = dlf_ckpt_set_meta(c, "kernel", exp_kernel());
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(c, "seed", EXP_SEED_MODEL);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(c, "data_seed", EXP_SEED_DATA);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(c, "step", m->opt->steps);
    if (rc == DLF_OK) rc = dlf_ckpt_set_int(c, "epoch", 0);
    if (rc == DLF_OK) rc = dlf_ckpt_set_float(c, "lr", m->opt->groups[0].lr);        /* the float dlf used, exactly */
    if (rc == DLF_OK) rc = dlf_ckpt_set_float(c, "momentum", m->opt->groups[0].momentum);
    if (rc == DLF_OK) rc = dlf_ckpt_add_params(c, m->params, m->name_ptrs, m->n_params);
    if (rc == DLF_OK) rc = dlf_ckpt_add_optim(c, m->opt, m->is_bn ? NULL : m->name_ptrs); /* optim.kind, steps, state */
    if (rc == DLF_OK) rc = dlf_ckpt_add_rng(c, "data", &m->data_rng);
    if (rc == DLF_OK) rc = dlf_ckpt_add_tensor(c, "input", m->input);
    if (rc == DLF_OK) rc = dlf_ckpt_add_tensor(c, "target", m->target);
    if (rc == DLF_OK) rc = dlf_ckpt_add_tensor(c, "dlf_logits", m->logits);
    return rc;
}

#ifndef EXPORT_DLF_NO_MAIN
/* Build model `which` from the fixed seeds and save its checkpoint to dir/<file>. */
static int exp_write(exp_which which, const char *dir, char *path, size_t path_len)
{
    exp_model m;
    dlf_ckpt c;
    int rc;
    dlf_ckpt_init(&c);
    rc = exp_make(&m, which, EXP_SEED_MODEL, 1);
    snprintf(path, path_len, "%s/%s", dir, m.file ? m.file : "?");
    if (rc == DLF_OK) rc = exp_ckpt(&m, &c);
    if (rc == DLF_OK) rc = dlf_ckpt_save(&c, path);
    dlf_ckpt_free(&c);
    exp_free(&m);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/ref/interop";
    char path[512];
    int which;
    for (which = EXP_CNN; which <= EXP_BNCNN; which++) {
        if (exp_write((exp_which)which, dir, path, sizeof path) != DLF_OK) {
            fprintf(stderr, "export_dlf: %s: %s\n", path, dlf_last_error());
            return 1;
        }
        printf("export_dlf: wrote %s\n", path);
    }
    return 0;
}
#endif
