#!/usr/bin/python3
"""The PyTorch side of bench/RESULTS.md: the same two MNIST recipes as
examples/mnist_mlp.c and examples/mnist_cnn.c (same models, init, batch 64,
SGD momentum 0.9, one-cycle schedule, the last 10000 training images held out),
timed on this machine. Run with Debian's python3-torch:

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_mnist.py mlp 5 [threads]
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_mnist.py cnn 3 [threads]
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_mnist.py cnnbn 3 [threads [seed [widths]]]

(bench/bench.py runs one epoch of each at 1 and 2 threads, with OPENBLAS_NUM_THREADS set to
the thread count.) --data DIR reads the four IDX files from DIR instead of data/mnist; as
dlf's loader does, the last sixth of the training file is held out (10000 of MNIST's 60000).

cnnbn is examples/mnist_cnn.c --bn: conv (no bias) + BatchNorm2d + ReLU per width
(default 16,32,64,64,64), AdamW lr 0.01, weight decay 0.1 except on biases and
BatchNorm weights, one-cycle without momentum cycling (as dlf_fit).

The last line has the same form as the C examples':
    test_accuracy=0.XXXX epochs=N train_seconds=S   (plus peak_rss_mb=M)
"""
import math
import resource
import struct
import sys
import time

import os

# OpenBLAS (which PyTorch's Linear layers use) reads these when it loads, during
# `import torch`: drop them first, so the reference runs unrestricted however it is started.
for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    t = torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8)
    return t.reshape(dims)


def main():
    argv = list(sys.argv)
    d = "data/mnist/"
    if "--data" in argv:
        i = argv.index("--data")
        d = argv[i + 1].rstrip("/") + "/"
        del argv[i:i + 2]
    which = argv[1] if len(argv) > 1 else "mlp"
    epochs = int(argv[2]) if len(argv) > 2 else (5 if which == "mlp" else 3)
    threads = int(argv[3]) if len(argv) > 3 else 2
    seed = int(argv[4]) if len(argv) > 4 else 1
    widths = [int(w) for w in argv[5].split(",")] if len(argv) > 5 else [16, 32, 64, 64, 64]
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    xtr = read_idx(d + "train-images-idx3-ubyte")
    ytr = read_idx(d + "train-labels-idx1-ubyte").long()
    xte = read_idx(d + "t10k-images-idx3-ubyte")
    yte = read_idx(d + "t10k-labels-idx1-ubyte").long()
    n_train = len(xtr) - len(xtr) // 6   # 50000 of 60000
    xtr, xva, ytr, yva = xtr[:n_train], xtr[n_train:], ytr[:n_train], ytr[n_train:]
    mean = xtr.float().div(255).mean().item()
    std = xtr.float().div(255).std().item()

    def norm(x):  # per batch, from the bytes, as dlf's loader does
        return ((x.float() / 255 - mean) / std).unsqueeze(1)

    if which == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
        lr = 0.03
    elif which == "cnnbn":
        layers, c_in = [], 1
        for i, w in enumerate(widths):
            ks = 5 if i == 0 else 3
            layers += [nn.Conv2d(c_in, w, ks, 2, ks // 2, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c_in = w
        model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10))
        for m in model:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
        lr = 0.01
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 8, 5, 2, 2), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
        for m in model:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        lr = 0.08
    bs = 64
    steps_per_epoch = math.ceil(n_train / bs)
    if which == "cnnbn":
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                cycle_momentum=False)
    train_seconds = 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n_train)
        model.train()
        for i in range(steps_per_epoch):
            idx = perm[i * bs:(i + 1) * bs]
            loss = F.cross_entropy(model(norm(xtr[idx])), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        dt = time.perf_counter() - t0
        train_seconds += dt
        with torch.no_grad():
            model.eval()
            acc = (model(norm(xva)).argmax(1) == yva).float().mean().item()
        print("epoch %d: %.2f s, valid accuracy %.4f" % (epoch + 1, dt, acc), flush=True)
    with torch.no_grad():
        acc = (model(norm(xte)).argmax(1) == yte).float().mean().item()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("test_accuracy=%.4f epochs=%d train_seconds=%.2f peak_rss_mb=%.0f torch_threads=%d"
          % (acc, epochs, train_seconds, rss, threads))


if __name__ == "__main__":
    main()
