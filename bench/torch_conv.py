#!/usr/bin/python3
"""PyTorch's side of bench/bench_conv.c: the same layer, best of 20 after 3 warm-ups.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_conv.py [threads]
(`make bench` runs it so: PyTorch gets its best kernels, not the ones the environment pins.)"""
import sys
import time
import torch

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
torch.manual_seed(1)
x = torch.randn(64, 32, 14, 14, requires_grad=True)
conv = torch.nn.Conv2d(32, 32, 3, padding=1)
best_f = best_fb = 1e9
for rep in range(23):
    t0 = time.perf_counter()
    y = conv(x)
    t1 = time.perf_counter()
    y.sum().backward()
    t2 = time.perf_counter()
    if rep >= 3:
        best_f = min(best_f, t1 - t0)
        best_fb = min(best_fb, t2 - t0)
cap = [l.split(":")[-1].strip() for l in torch.__config__.show().splitlines() if "CPU capability" in l]
cap = cap[0] if cap else "unknown"
print("torch %s, CPU capability %s" % (torch.__version__, cap))
print("torch conv2d 64x32x14x14 k32 3x3 pad1, %d threads: forward %.2f ms, forward+backward %.2f ms"
      % (threads, best_f * 1e3, best_fb * 1e3))
