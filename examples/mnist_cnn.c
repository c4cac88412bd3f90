/* mnist_cnn.c - train the course's stride-2 CNN on MNIST with dlf, with or without
   BatchNorm.

   The model, as PyTorch would write it (lesson 06 of the course):
       model = nn.Sequential(
           nn.Conv2d( 1,  8, 5, stride=2, padding=2), nn.ReLU(),   # 0, 1   28x28 -> 14x14
           nn.Conv2d( 8, 16, 3, stride=2, padding=1), nn.ReLU(),   # 2, 3   14x14 ->  7x7
           nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),   # 4, 5    7x7  ->  4x4
           nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),   # 6, 7    4x4  ->  2x2
           nn.AdaptiveAvgPool2d(1), nn.Flatten(),                  # 8, 9   (N, 32)
           nn.Linear(32, 10))                                      # 10
       for conv in model[0:8:2]: nn.init.kaiming_normal_(conv.weight); conv.bias.data.zero_()

   With --bn, every conv loses its bias and is followed by BatchNorm2d then ReLU (the
   course's conv_layer with bn, in the conv-BN-ReLU order):
       model = nn.Sequential(
           nn.Conv2d( 1,  8, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d( 8), nn.ReLU(),  # 0, 1, 2
           nn.Conv2d( 8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),  # 3, 4, 5
           nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),  # 6, 7, 8
           nn.Conv2d(32, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),  # 9, 10, 11
           nn.AdaptiveAvgPool2d(1), nn.Flatten(),                                                # 12, 13
           nn.Linear(32, 10))                                                                    # 14
       for conv in model[0:12:3]: nn.init.kaiming_normal_(conv.weight)
   Its state_dict is "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
   "1.num_batches_tracked", "3.weight", ... "14.weight", "14.bias": a checkpoint saved
   with --save loads into this model with load_state_dict(strict=True) (after
   safetensors.torch.load_file), and the other way round.

   loss = F.cross_entropy(model(x), y). Inputs are normalized with the training set's
   mean and std. Optimizer: torch.optim.SGD(lr, momentum=0.9) by default (--opt adam,
   --opt adamw; --wd for weight decay, never on biases and BatchNorm weights), with a
   one-cycle schedule (OneCycleLR: cosine warm-up over the first 30% of the steps from
   lr/25, cosine anneal after) or --sched constant; batch 64. The last 10000 training
   images are the validation set, reported each epoch; the 10000 t10k images are the
   test set, evaluated once at the end in eval mode.

   Build and run:
       make data                     # once: MNIST into data/mnist
       make build/examples/mnist_cnn
       ./build/examples/mnist_cnn --epochs 3 --show 6
       ./build/examples/mnist_cnn --bn --epochs 3 --save cnn_bn.safetensors

   Defaults: --epochs 3 --bs 64 --seed 1 --sched onecycle, and
       without --bn: --opt sgd --lr 0.08 --wd 0
       with --bn:    see BN_LR, BN_OPT, BN_WD below (and `--help`).
   All flags are described in examples/example.h. The last line printed is exactly
   `test_accuracy=0.XXXX epochs=N train_seconds=S`. */
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#define EX_CNN
#include "example.h"

/* The defaults with --bn, chosen on the validation accuracy (examples/README.md... see
   the commit message / CHANGES for the runs behind them). */
#define BN_LR 0.4f
#define BN_OPT DLF_OPTIM_SGD
#define BN_WD 0.0f

int main(int argc, char **argv)
{
    ex_options o;
    memset(&o, 0, sizeof o);
    o.prog = "mnist_cnn";
    o.what = "trains the course's 4-conv stride-2 CNN on MNIST (see the top of examples/mnist_cnn.c)";
    o.dataset = "MNIST";
    o.has_bn = 1;
    o.plain.lr = 0.08f; o.plain.opt = DLF_OPTIM_SGD; o.plain.wd = 0.0f;
    o.with_bn.lr = BN_LR; o.with_bn.opt = BN_OPT; o.with_bn.wd = BN_WD;
    o.epochs = 3;
    o.bs = 64;
    o.seed = 1;
    o.data = "data/mnist";
    return ex_cnn_main(argc, argv, &o);
}
