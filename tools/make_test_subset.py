#!/usr/bin/env python3
"""make_test_subset.py - cut a small MNIST subset for the committed test fixtures.

Reads the full MNIST IDX files that `make data` puts in data/mnist/ and writes the first N
images and labels of each split to tests/data/ as valid IDX files, so that `make test` can
train and evaluate on real digits without downloading anything:

    tests/data/mnist-sub-train-images-idx3-ubyte   first NTRAIN training images  (NTRAIN, 28, 28)
    tests/data/mnist-sub-train-labels-idx1-ubyte   their labels                  (NTRAIN,)
    tests/data/mnist-sub-test-images-idx3-ubyte    first NTEST test images       (NTEST, 28, 28)
    tests/data/mnist-sub-test-labels-idx1-ubyte    their labels                  (NTEST,)

IDX format (the one MNIST was published in): a big-endian header, then raw bytes.
    magic   u32   0x00000800 | ndim   (0x0803 for images, 0x0801 for labels; 0x08 = unsigned byte)
    dims    u32 x ndim
    data    u8 x prod(dims), row-major

Each image is 784 bytes, so the subset costs about 785 bytes per example; the defaults
(1000 train + 500 test) come to about 1.18 MB. The output depends only on the input files and
the counts, so rerunning the script reproduces the committed files byte for byte.

Standard library only; runs under any Python 3.
"""

import argparse
import os
import struct
import sys

UBYTE = 0x08  # IDX type code for unsigned bytes, the only one MNIST uses


def read_idx(path):
    """Return (dims, data) of an unsigned-byte IDX file, checking the header against the size."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 4:
        raise ValueError("%s: too short to be an IDX file" % path)
    zero, dtype, ndim = struct.unpack(">HBB", blob[:4])
    if zero != 0 or dtype != UBYTE or ndim == 0:
        raise ValueError("%s: not an unsigned-byte IDX file (magic %r)" % (path, blob[:4]))
    header_len = 4 + 4 * ndim
    if len(blob) < header_len:
        raise ValueError("%s: header cut short" % path)
    dims = struct.unpack(">%dI" % ndim, blob[4:header_len])
    count = 1
    for d in dims:
        count *= d
    if len(blob) != header_len + count:
        raise ValueError("%s: header says %d data bytes, file has %d"
                         % (path, count, len(blob) - header_len))
    return dims, blob[header_len:]


def write_idx(path, dims, data):
    """Write an unsigned-byte IDX file with the given dims (data must hold prod(dims) bytes)."""
    header = struct.pack(">HBB", 0, UBYTE, len(dims)) + struct.pack(">%dI" % len(dims), *dims)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(data)
    os.replace(tmp, path)  # never leave a half-written fixture behind


def cut(src_dir, dst_dir, split, out_split, n):
    """Copy the first n examples of one split (images + labels) into the subset files."""
    images_dims, images = read_idx(os.path.join(src_dir, "%s-images-idx3-ubyte" % split))
    labels_dims, labels = read_idx(os.path.join(src_dir, "%s-labels-idx1-ubyte" % split))
    if len(images_dims) != 3 or len(labels_dims) != 1 or images_dims[0] != labels_dims[0]:
        raise ValueError("%s: unexpected shapes images %r labels %r"
                         % (split, images_dims, labels_dims))
    if n > images_dims[0]:
        raise ValueError("%s: asked for %d examples, the file has %d" % (split, n, images_dims[0]))
    rows, cols = images_dims[1], images_dims[2]
    pixels = rows * cols

    outputs = [
        ("mnist-sub-%s-images-idx3-ubyte" % out_split, (n, rows, cols), images[:n * pixels]),
        ("mnist-sub-%s-labels-idx1-ubyte" % out_split, (n,), labels[:n]),
    ]
    total = 0
    for name, dims, data in outputs:
        path = os.path.join(dst_dir, name)
        write_idx(path, dims, data)
        # Read it back: the fixture must parse as the same dims and bytes we meant to write.
        check_dims, check_data = read_idx(path)
        assert tuple(check_dims) == tuple(dims) and check_data == data, path
        size = os.path.getsize(path)
        total += size
        print("make_test_subset: %-40s %8d bytes  dims %s" % (path, size, "x".join(map(str, dims))))

    counts = [0] * 10
    for label in labels[:n]:
        counts[label] += 1
    print("make_test_subset: %s label counts 0..9: %s" % (out_split, " ".join(map(str, counts))))
    return total


def main():
    ap = argparse.ArgumentParser(description="Write a small MNIST subset as IDX test fixtures.")
    ap.add_argument("--src", default="data/mnist", help="full MNIST IDX files (default data/mnist)")
    ap.add_argument("--dst", default="tests/data", help="where to write the subset (default tests/data)")
    ap.add_argument("--ntrain", type=int, default=1000, help="first N training images (default 1000)")
    ap.add_argument("--ntest", type=int, default=500, help="first N test images (default 500)")
    args = ap.parse_args()

    if args.ntrain <= 0 or args.ntest <= 0:
        ap.error("--ntrain and --ntest must be positive")
    os.makedirs(args.dst, exist_ok=True)
    try:
        total = cut(args.src, args.dst, "train", "train", args.ntrain)
        total += cut(args.src, args.dst, "t10k", "test", args.ntest)
    except (OSError, ValueError) as e:
        print("make_test_subset: %s" % e, file=sys.stderr)
        print("make_test_subset: run 'make data' first to fetch MNIST into %s" % args.src,
              file=sys.stderr)
        return 1
    print("make_test_subset: total %d bytes in %s" % (total, args.dst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
