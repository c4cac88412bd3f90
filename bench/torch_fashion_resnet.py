#!/usr/bin/python3
"""The PyTorch side of examples/fashion_resnet.c: the same ResNet, augmentation,
optimizer and schedule on Fashion-MNIST, timed on this machine. Run with Debian's
python3-torch:

    /usr/bin/python3 bench/torch_fashion_resnet.py [--epochs N] [--threads N]
        [--limit N] [--channels-last] [--tta] [--data DIR]

The model (the course's ResBlock, as dlf_resblock builds it): per block conv-BN-act,
conv-BN (stride in the second conv), shortcut = identity, or AvgPool2d(2, ceil_mode)
when the block halves the size, then a 1x1 conv with bias when the width changes;
act(body + shortcut) with GeneralRelu(leak 0.1, sub 0.4). Widths 16,32,64,128,256
(first block 3x3 on the raw image, then stride 2), global average pool, Linear without
bias, BatchNorm1d. Training: all 60000 images, batch 256, random crop with 1 pixel of
zero padding and a horizontal flip with p 0.5 per image (in normalized space, as dlf's
loader applies them), AdamW (betas 0.9/0.99, eps 1e-5, wd 1e-2 on conv and linear
weights only), OneCycleLR max 1e-2 cycling beta1 0.95 -> 0.85.

Timing only what PyTorch does best on a CPU: the loop over pre-normalized tensors in
memory (no DataLoader workers), torch.set_num_threads(threads), optionally
channels_last. The last line has the C examples' form:
    test_accuracy=0.XXXX epochs=N train_seconds=S
"""
import os
import struct
import sys
import time

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):   # the reference runs unrestricted
    os.environ.pop(_var, None)

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


class GeneralRelu(nn.Module):
    def __init__(self, leak=0.1, sub=0.4):
        super().__init__()
        self.leak, self.sub = leak, sub

    def forward(self, x):
        return F.leaky_relu(x, self.leak) - self.sub


def conv_bn(ni, nf, ks, stride, act):
    layers = [nn.Conv2d(ni, nf, ks, stride, ks // 2, bias=False), nn.BatchNorm2d(nf)]
    if act:
        layers.append(GeneralRelu())
    return layers


class ResBlock(nn.Module):
    def __init__(self, ni, nf, stride, ks=3):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(ni, nf, ks, 1, True), *conv_bn(nf, nf, ks, stride, False))
        sc = []
        if stride == 2:
            sc.append(nn.AvgPool2d(2, ceil_mode=True))
        if ni != nf:
            sc.append(nn.Conv2d(ni, nf, 1))
        self.shortcut = nn.Sequential(*sc)
        self.act = GeneralRelu()

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


def model(widths, ks):
    layers = [ResBlock(1, widths[0], 1, ks)]
    layers += [ResBlock(widths[i - 1], widths[i], 2) for i in range(1, len(widths))]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 10, bias=False), nn.BatchNorm1d(10)]
    m = nn.Sequential(*layers)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d) and mod.kernel_size != (1, 1):
            nn.init.kaiming_normal_(mod.weight, a=0.1)
    return m


def augment(x, g, pad):
    """Random crop with zero padding (a shift of -pad..pad each way) and a flip, per image."""
    n = x.shape[0]
    out = torch.zeros_like(x)
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    for i in range(n):
        out[i] = xp[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def main():
    args = sys.argv[1:]

    def opt(name, default):
        if name in args:
            return args[args.index(name) + 1]
        return default

    epochs = int(opt("--epochs", 20))
    threads = int(opt("--threads", 2))
    limit = int(opt("--limit", 0))
    d = opt("--data", "data/fashion").rstrip("/") + "/"
    channels_last = "--channels-last" in args
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    xtr = read_idx(d + "train-images-idx3-ubyte").float() / 255.0
    ytr = read_idx(d + "train-labels-idx1-ubyte").long()
    xte = read_idx(d + "t10k-images-idx3-ubyte").float() / 255.0
    yte = read_idx(d + "t10k-labels-idx1-ubyte").long()
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
    mean, std = xtr.mean(), xtr.std()
    xtr = ((xtr - mean) / std).unsqueeze(1)
    xte = ((xte - mean) / std).unsqueeze(1)
    m = model([16, 32, 64, 128, 256], 3)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    decay = [p for n, p in m.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in m.named_parameters() if p.ndim <= 1]
    o = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-2}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=1e-2, betas=(0.9, 0.99), eps=1e-5)
    bs = 256
    steps = (len(xtr) + bs - 1) // bs
    sched = torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=epochs * steps)
    g = torch.Generator().manual_seed(1)
    print(f"PyTorch {torch.__version__}, {threads} threads{', channels_last' if channels_last else ''}; "
          f"{len(xtr)} training images", flush=True)
    train_seconds = 0.0
    for ep in range(epochs):
        t0 = time.time()
        m.train()
        perm = torch.randperm(len(xtr), generator=g)
        tot = 0.0
        for s in range(steps):
            idx = perm[s * bs:(s + 1) * bs]
            xb = augment(xtr[idx], g, 1)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(m(xb), ytr[idx])
            o.zero_grad()
            loss.backward()
            o.step()
            sched.step()
            tot += loss.item() * len(idx)
        dt = time.time() - t0
        train_seconds += dt
        print(f"epoch {ep} train_loss {tot / len(xtr):.4f} {dt:.1f} s", flush=True)
    m.eval()
    with torch.no_grad():
        p = torch.cat([F.softmax(m(xte[i:i + 500]), 1) for i in range(0, len(xte), 500)])
        acc = (p.argmax(1) == yte).float().mean().item()
        if "--tta" in args:
            p2 = torch.cat([F.softmax(m(xte[i:i + 500].flip(-1)), 1) for i in range(0, len(xte), 500)])
            acc = (((p + p2) / 2).argmax(1) == yte).float().mean().item()
    print(f"{train_seconds / epochs:.1f} s per epoch")
    print(f"test_accuracy={acc:.4f} epochs={epochs} train_seconds={train_seconds:.2f}")


if __name__ == "__main__":
    main()
