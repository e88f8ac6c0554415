#!/usr/bin/env python3
"""Export the embedded image sets from Fashion-MNIST (MIT licence).

Reads the IDX files that Debian's `dataset-fashion-mnist` installs and writes 28x28 grey PNGs.
fashion-mnist/ (train_flowmodels2's default):
  train/sneaker/  the first N_TRAIN sneakers of the training set (the normal class)
  val/sneaker/    the first N_VAL sneakers of the test set (normal, held out)
  val/bag/        the first N_VAL bags of the test set (the outliers)
mirroring the original flow_models' train/cat vs val/beachball.
fashion-mnist-classes/ (train_flowmodels3's default):
  train/{tshirt,trouser,sneaker,bag}/  the first N_CLASS_TRAIN of each class of the training set
  val/{tshirt,trouser,sneaker,bag}/    the first N_CLASS_VAL of each of the test set
  val/dress/                           N_CLASS_VAL dresses: a class the model never saw
Standard library only.
"""
import gzip
import os
import struct
import sys
import zlib

SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
HERE = os.path.dirname(os.path.abspath(__file__))
N_TRAIN, N_VAL = 2000, 200
N_CLASS_TRAIN, N_CLASS_VAL = 500, 100
TSHIRT, TROUSER, DRESS, SNEAKER, BAG = 0, 1, 3, 7, 8


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2049:
        return list(data[8 : 8 + n])
    rows, cols = struct.unpack(">II", data[8:16])
    size = rows * cols
    return [data[16 + i * size : 16 + (i + 1) * size] for i in range(n)], rows, cols


def png(pixels, rows, cols):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + pixels[r * cols : (r + 1) * cols] for r in range(rows))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def export(dst, split, images_file, labels_file, wanted):
    (images, rows, cols), labels = idx(os.path.join(SRC, images_file)), idx(os.path.join(SRC, labels_file))
    for label, name, count in wanted:
        out = os.path.join(HERE, dst, split, name)
        os.makedirs(out, exist_ok=True)
        picked = [i for i, l in enumerate(labels) if l == label][:count]
        for i in picked:
            with open(os.path.join(out, f"{i:05d}.png"), "wb") as f:
                f.write(png(images[i], rows, cols))


TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
export("fashion-mnist", "train", *TRAIN, [(SNEAKER, "sneaker", N_TRAIN)])
export("fashion-mnist", "val", *TEST, [(SNEAKER, "sneaker", N_VAL), (BAG, "bag", N_VAL)])
CLASSES = [(TSHIRT, "tshirt"), (TROUSER, "trouser"), (SNEAKER, "sneaker"), (BAG, "bag")]
export("fashion-mnist-classes", "train", *TRAIN, [(l, n, N_CLASS_TRAIN) for l, n in CLASSES])
export(
    "fashion-mnist-classes",
    "val",
    *TEST,
    [(l, n, N_CLASS_VAL) for l, n in CLASSES] + [(DRESS, "dress", N_CLASS_VAL)],
)
