/* mnist_mlp.c - train the course's 784-50-10 MLP on MNIST with dlf.

   The model, as PyTorch would write it:
       model = nn.Sequential(nn.Flatten(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
       loss  = F.cross_entropy(model(x), y)
   Weights start as PyTorch's defaults (kaiming_uniform with a = sqrt(5)). Inputs are
   normalized with the training set's mean and std. Optimizer: torch.optim.SGD(lr,
   momentum=0.9) with a one-cycle schedule (cosine warm-up over the first 30% of the
   steps, cosine anneal after), batch 64. The last 10000 training images are the
   validation set, reported each epoch; the 10000 t10k images are the test set.

   Build and run:
       make data                     # once: MNIST into data/mnist
       make build/examples/mnist_mlp
       ./build/examples/mnist_mlp --epochs 5 --save mlp.safetensors

   Defaults: --epochs 5 --lr 0.03 --bs 64 --seed 1. All flags (--save, --load,
   --eval-only ...) are described in examples/example.h. The last line printed is
   exactly `test_accuracy=0.XXXX epochs=N train_seconds=S`. */
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "example.h"

/* The parameters, in PyTorch's layout and state_dict order. */
typedef struct mlp {
    dlf_tensor *w1;   /* (50, 784)  "1.weight" */
    dlf_tensor *b1;   /* (50)       "1.bias" */
    dlf_tensor *w2;   /* (10, 50)   "3.weight" */
    dlf_tensor *b2;   /* (10)       "3.bias" */
} mlp;

static const char *const param_names[4] = {"1.weight", "1.bias", "3.weight", "3.bias"};

/* x (N,1,28,28) -> logits (N,10) */
static dlf_tensor *mlp_forward(dlf_tape *t, dlf_tensor *x, void *user)
{
    mlp *m = (mlp *)user;
    dlf_tensor *h = dlf_flatten(t, x);                 /* (N, 784) */
    h = dlf_relu(t, dlf_linear(t, h, m->w1, m->b1));   /* (N, 50) */
    return dlf_linear(t, h, m->w2, m->b2);             /* (N, 10) */
}

int main(int argc, char **argv)
{
    ex_options o = {"mnist_mlp", "trains a 784-50-10 MLP on MNIST (see the top of examples/mnist_mlp.c)",
                    5, 0.03f, 64, 1, "data/mnist", 0, NULL, NULL, 0, 0};
    ex_model model;
    dlf_mnist data;
    dlf_rng rng;
    mlp m;
    dlf_tensor *params[4];
    int rc, i;

    if (!ex_parse(argc, argv, &o)) { ex_usage(stderr, &o); return 2; }
    if (o.threads > 0) dlf_set_threads(o.threads);
    if (!ex_load_data(&o, &data)) return 1;

    dlf_rng_seed(&rng, o.seed);
    m.w1 = dlf_param_new(2, (int[]){50, 784});
    m.b1 = dlf_param_new(1, (int[]){50});
    m.w2 = dlf_param_new(2, (int[]){10, 50});
    m.b2 = dlf_param_new(1, (int[]){10});
    if (!m.w1 || !m.b1 || !m.w2 || !m.b2) { fprintf(stderr, "mnist_mlp: %s\n", dlf_last_error()); return 1; }
    dlf_init_torch_default(m.w1, m.b1, &rng);
    dlf_init_torch_default(m.w2, m.b2, &rng);
    params[0] = m.w1; params[1] = m.b1; params[2] = m.w2; params[3] = m.b2;

    model.forward = mlp_forward;
    model.m = &m;
    model.params = params;
    model.names = param_names;
    model.n_params = 4;
    model.after = NULL;
    rc = ex_train(&o, &data, &model);

    for (i = 0; i < 4; i++) dlf_tensor_free(params[i]);
    dlf_mnist_free(&data);
    return rc;
}
