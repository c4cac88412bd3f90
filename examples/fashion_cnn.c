/* fashion_cnn.c - the CNN of examples/mnist_cnn.c on Fashion-MNIST (Xiao, Rasul and
   Vollgraf 2017): 28x28 grey images of 10 kinds of clothing, in the same IDX files
   under the same names as MNIST (train-images-idx3-ubyte ...), 60000 train and
   10000 test. The model, its PyTorch equivalent and state_dict names (plain and with
   --bn), the optimizer and the flags are those of mnist_cnn: see the top of
   examples/mnist_cnn.c and examples/example.h; the code is shared in example.h.

   Build and run:
       make data                     # once: MNIST and Fashion-MNIST into data/
       make build/examples/fashion_cnn
       ./build/examples/fashion_cnn --bn --epochs 5 --show 6

   Defaults: --epochs 5 --bs 64 --seed 1 --sched onecycle --data data/fashion, and
       without --bn: --opt sgd --lr 0.08 --wd 0
       with --bn:    see BN_LR, BN_OPT, BN_WD below (and `--help`).
   The last line printed is exactly `test_accuracy=0.XXXX epochs=N train_seconds=S`. */
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#define EX_CNN
#include "example.h"

#define BN_LR 0.4f
#define BN_OPT DLF_OPTIM_SGD
#define BN_WD 0.0f

static const char *const fashion_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

int main(int argc, char **argv)
{
    ex_options o;
    memset(&o, 0, sizeof o);
    o.prog = "fashion_cnn";
    o.what = "trains the course's 4-conv stride-2 CNN on Fashion-MNIST (see the top of examples/mnist_cnn.c)";
    o.dataset = "Fashion-MNIST";
    o.class_names = fashion_classes;
    o.has_bn = 1;
    o.plain.lr = 0.08f; o.plain.opt = DLF_OPTIM_SGD; o.plain.wd = 0.0f;
    o.with_bn.lr = BN_LR; o.with_bn.opt = BN_OPT; o.with_bn.wd = BN_WD;
    o.epochs = 5;
    o.bs = 64;
    o.seed = 1;
    o.data = "data/fashion";
    return ex_cnn_main(argc, argv, &o);
}
