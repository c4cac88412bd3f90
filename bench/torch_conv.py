#!/usr/bin/python3
"""PyTorch's side of bench/bench_conv.c: the same cases, names and timing rules.

    python3 bench/torch_conv.py --threads T [--min-time S] [--cases layer,cnn]
    python3 bench/torch_conv.py info        # torch version and CPU capability

layer: x (64,32,14,14), Conv2d(32, 32, 3, padding=1): fwd (x and the weights require
       grad, so autograd records), fwdbwd (then y.sum().backward()), infer (no_grad).
cnn:   each conv layer of the course's MNIST CNN at batch 64, fwdbwd; the first
       layer's input needs no gradient.
Each case prints  case=<name> value=<ms> unit=ms kernel=<CPU capability>; value is the
best sample (at least 5, and at least --min-time seconds of them, after 2 warm-up calls),
a sample repeating the call until it takes about 2 ms. bench/bench.py runs it with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so PyTorch's libraries pick their best
kernels."""
import sys
import time

import os

# OpenBLAS (which PyTorch's Linear layers use) reads these when it loads, during
# `import torch`: drop them first, so the reference runs unrestricted however it is started.
for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)

import torch


def capability():
    for line in torch.__config__.show().splitlines():
        if "CPU capability" in line:
            return line.split(":")[-1].strip()
    return "unknown"


LAYER = ("conv-64x32x14x14-k32-3x3p1", 64, 32, 14, 14, 32, 3, 1, 1, True)
CNN = [
    ("cnn-conv1-64x1x28x28-k8-5x5s2", 64, 1, 28, 28, 8, 5, 2, 2, False),
    ("cnn-conv2-64x8x14x14-k16-3x3s2", 64, 8, 14, 14, 16, 3, 2, 1, True),
    ("cnn-conv3-64x16x7x7-k32-3x3s2", 64, 16, 7, 7, 32, 3, 2, 1, True),
    ("cnn-conv4-64x32x4x4-k32-3x3s2", 64, 32, 4, 4, 32, 3, 2, 1, True),
]


def bench_case(case, what, threads, min_time):
    name, n, c, h, w, k, r, stride, pad, x_grad = case
    torch.manual_seed(1)
    x = torch.randn(n, c, h, w, requires_grad=x_grad)
    conv = torch.nn.Conv2d(c, k, r, stride=stride, padding=pad)

    def step():
        if what == "infer":
            with torch.no_grad():
                conv(x)
            return
        y = conv(x)
        if what == "fwdbwd":
            y.sum().backward()

    step()
    t0 = time.perf_counter()
    step()
    inner = int(2e-3 / (time.perf_counter() - t0 + 1e-7)) + 1
    best, spent, reps = 1e30, 0.0, 0
    while reps < 5 or spent < min_time:
        t0 = time.perf_counter()
        for _ in range(inner):
            step()
        dt = time.perf_counter() - t0
        spent += dt
        best = min(best, dt / inner)
        reps += 1
    print("case=%s-%s-t%d value=%.4f unit=ms kernel=%s" % (name, what, threads, best * 1e3, capability()),
          flush=True)


def main():
    args = sys.argv[1:]
    if args == ["info"]:
        print("info torch_version=%s" % torch.__version__)
        print("info torch_capability=%s" % capability())
        print("info torch_default_threads=%d" % torch.get_num_threads())
        return 0
    threads, min_time, cases = 0, 0.3, "layer,cnn"
    while len(args) >= 2:
        flag, value = args[0], args[1]
        args = args[2:]
        if flag == "--threads":
            threads = int(value)
        elif flag == "--min-time":
            min_time = float(value)
        elif flag == "--cases":
            cases = value
        else:
            args = [flag]
            break
    if args or threads < 1:
        sys.stderr.write("usage: torch_conv.py --threads T [--min-time S] [--cases layer,cnn] | info\n")
        return 2
    torch.set_num_threads(threads)
    if "layer" in cases:
        for what in ("fwd", "fwdbwd", "infer"):
            bench_case(LAYER, what, threads, min_time)
    if "cnn" in cases:
        for case in CNN:
            bench_case(case, "fwdbwd", threads, min_time)
    return 0


if __name__ == "__main__":
    sys.exit(main())
