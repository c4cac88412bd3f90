/* mnist_mlp.c - train the course's 784-50-10 MLP on MNIST with dlf.

   The model, as PyTorch would write it:
       model = nn.Sequential(nn.Flatten(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
       loss  = F.cross_entropy(model(x), y)
   Weights start as PyTorch's defaults (kaiming_uniform with a = sqrt(5)). Inputs are
   normalized with the training set's mean and std. Optimizer: torch.optim.SGD(lr,
   momentum=0.9) with a one-cycle schedule (OneCycleLR: cosine warm-up of the lr over the
   first 30% of the steps, cosine anneal after, the momentum cycled 0.95 -> 0.85 -> 0.95),
   batch 64 (--opt, --wd, --sched change them), trained by the Learner (docs/learner.md). The last
   10000 training images are the validation set, reported each epoch; the 10000 t10k
   images are the test set.

   Build and run:
       make data                     # once: MNIST into data/mnist
       make build/examples/mnist_mlp
       ./build/examples/mnist_mlp --epochs 5 --save mlp.safetensors

   Defaults: --epochs 5 --lr 0.03 --bs 64 --seed 1 --opt sgd --wd 0 --sched onecycle.
   All flags (--save, --resume, --lr-find, --plot ...) are described in examples/example.h.
   The last line printed is exactly `test_accuracy=0.XXXX epochs=N train_seconds=S`. */
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "example.h"

static dlf_tensor *mlp_forward(dlf_tape *t, dlf_tensor *x, void *s)
{
    return dlf_seq_forward(t, (const dlf_seq *)s, x);  /* x (N,1,28,28) -> logits (N,10) */
}

int main(int argc, char **argv)
{
    ex_options o;
    ex_model model;
    dlf_mnist data;
    dlf_rng rng;
    dlf_seq seq;   /* Flatten, Linear(784, 50), ReLU, Linear(50, 10): "1.weight" ... "3.bias" */
    dlf_layer l1, l2;
    int rc = 1;

    memset(&o, 0, sizeof o);
    o.prog = "mnist_mlp";
    o.what = "trains a 784-50-10 MLP on MNIST (see the top of examples/mnist_mlp.c)";
    o.dataset = "MNIST";
    o.plain.lr = 0.03f; o.plain.opt = DLF_OPTIM_SGD; o.plain.wd = 0.0f; o.plain.lr_other = 0.003f;
    o.epochs = 5;
    o.bs = 64;
    o.seed = 1;
    o.data = "data/mnist";
    if (!ex_parse(argc, argv, &o)) { ex_usage(stderr, &o); return 2; }
    if (o.threads > 0) dlf_set_threads(o.threads);
    if (!ex_load_data(&o, &data)) return 1;

    dlf_rng_seed(&rng, o.seed);
    dlf_seq_init(&seq);
    dlf_params_init(&model.params);
    l1 = dlf_layer_linear(784, 50, 1, &rng);
    l2 = dlf_layer_linear(50, 10, 1, &rng);
    if (dlf_layer_ok(&l1) && dlf_layer_ok(&l2) && dlf_seq_add(&seq, dlf_layer_simple(DLF_LAYER_FLATTEN)) == DLF_OK &&
        dlf_seq_add(&seq, l1) == DLF_OK && dlf_seq_add(&seq, dlf_layer_simple(DLF_LAYER_RELU)) == DLF_OK &&
        dlf_seq_add(&seq, l2) == DLF_OK && dlf_seq_collect(&seq, &model.params) == DLF_OK) {
        model.forward = mlp_forward;
        model.m = &seq;
        rc = ex_train(&o, &data, &model);
    } else {
        fprintf(stderr, "mnist_mlp: %s\n", dlf_last_error());
    }
    dlf_params_free(&model.params);
    dlf_seq_free(&seq);
    dlf_mnist_free(&data);
    return rc;
}
