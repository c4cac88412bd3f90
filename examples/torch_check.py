"""torch_check.py - load a checkpoint of examples/mnist_cnn or fashion_cnn (--save PATH)
into the equivalent PyTorch nn.Sequential with load_state_dict(strict=True), evaluate it
on the test set in eval mode, and write the PyTorch state_dict back as safetensors, which
the example loads with --load PATH --eval-only. Both accuracies should be the same.

    /usr/bin/python3 examples/torch_check.py cnn.safetensors [data/mnist] [out.safetensors]
    ./build/examples/mnist_cnn --bn --load out.safetensors --eval-only

Needs PyTorch and numpy only (tools/dlf_safetensors.py reads and writes the files). The
model is rebuilt from the checkpoint's metadata "bn" and "nfs" (see the top of
examples/mnist_cnn.c for the two models)."""
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from dlf_safetensors import load, save  # noqa: E402


def cnn(nfs, bn):
    layers, ni = [], 1
    for i, nf in enumerate(nfs):
        ks = 5 if i == 0 else 3
        layers.append(nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(nf))
        layers.append(nn.ReLU())
        ni = nf
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ni, 10))


def idx(path):
    b = open(path, "rb").read()
    nd = b[3]
    dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def main():
    path = sys.argv[1]
    data = sys.argv[2] if len(sys.argv) > 2 else "data/mnist"
    out = sys.argv[3] if len(sys.argv) > 3 else None
    tensors, meta = load(path)
    nfs = [int(v) for v in meta.get("nfs", "8,16,32,32").split(",")]
    model = cnn(nfs, meta.get("bn", "0") == "1")
    sd = {k: v for k, v in tensors.items() if not k.startswith(("optim.", "loader."))}
    print(model.load_state_dict(sd, strict=True))
    train = idx(os.path.join(data, "train-images-idx3-ubyte"))[:50000] / 255.0  # dlf's training split
    mean, std = train.mean(), train.std()
    x = torch.tensor(idx(os.path.join(data, "t10k-images-idx3-ubyte")), dtype=torch.float32)[:, None] / 255
    y = torch.tensor(idx(os.path.join(data, "t10k-labels-idx1-ubyte")).astype(np.int64))
    x = (x - float(mean)) / float(std)
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    print("PyTorch test_accuracy=%.4f (dlf wrote test_accuracy=%s)" % (acc, meta.get("test_accuracy", "?")))
    if out:
        save(out, model.state_dict(), {})
        print("wrote", out)


if __name__ == "__main__":
    main()
