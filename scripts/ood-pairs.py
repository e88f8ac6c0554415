#!/usr/bin/env python3
"""Image folders for application 2's outlier scores on cases that are not the default.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist),
the simpler images from scikit-learn's bundled 8 x 8 digits (PyPI `scikit-learn`), upscaled
smoothly to 20 x 20 and centred on 28 x 28 as MNIST's are. Each pair is a folder with train/<class>/ and val/<class>/ that
`train_flowmodels2 --images DIR` takes:

  all-vs-digits   all ten Fashion-MNIST classes against the digits
  all-vs-digits-test
                  a folder for `score --images`: other test images of the ten classes and
                  other digits, none of them in all-vs-digits, so that the score a run
                  recommends from its val/ is judged on images it was not chosen on
  five-vs-five    classes 0-4 (t-shirt, trouser, pullover, dress, coat) against 5-9
  corrupted       all ten classes against their own noisy, flipped and constant versions

Usage: ood-pairs.py OUT_DIR [--train-per-class N] [--val-per-class N] [--outliers N]
Needs numpy and scikit-learn (python3 -m venv V && V/bin/pip install numpy scikit-learn).
"""

import argparse
import gzip
import os
import struct
import sys
import zlib

import numpy as np

FASHION = "/usr/share/datasets/fashion-mnist"
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "boot"]


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


def write_png(path, img):
    """An 8-bit greyscale PNG, by hand: no imaging library needed."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(png)


def save(root, split, name, images):
    for i, img in enumerate(images):
        write_png(os.path.join(root, split, name, f"{i:05d}.png"), img)


def per_class(images, labels, classes, n, offset=0):
    return {c: images[labels == c][offset:offset + n] for c in classes}


def digits_28(n, rng, skip=0):
    """MNIST-like: each 8 x 8 digit smoothly upscaled to 20 x 20 (cubic spline) and centred
    on a 28 x 28 black field, as MNIST's digits are. Their large dark background is what
    makes a flow trained on clothes find them likelier than its own data."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    d = load_digits().images  # 8 x 8, values 0..16
    pick = d[rng.permutation(len(d))[skip:skip + n]]
    out = np.zeros((len(pick), 28, 28))
    for i, img in enumerate(pick):
        out[i, 4:24, 4:24] = zoom(img, 2.5, order=3)
    return np.clip(np.rint(out * 255.0 / 16.0), 0, 255).astype(np.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--train-per-class", type=int, default=600)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--outliers", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if not os.path.isdir(FASHION):
        sys.exit(f"{FASHION} is missing: apt-get install dataset-fashion-mnist")
    if os.path.exists(a.out) and os.listdir(a.out):
        sys.exit(f"{a.out} exists and is not empty; give a new folder")
    rng = np.random.default_rng(a.seed)
    x_train = idx(f"{FASHION}/train-images-idx3-ubyte.gz")
    y_train = idx(f"{FASHION}/train-labels-idx1-ubyte.gz")
    x_test = idx(f"{FASHION}/t10k-images-idx3-ubyte.gz")
    y_test = idx(f"{FASHION}/t10k-labels-idx1-ubyte.gz")
    train = per_class(x_train, y_train, range(10), a.train_per_class)
    val = per_class(x_test, y_test, range(10), a.val_per_class)

    root = os.path.join(a.out, "all-vs-digits")
    for c in range(10):
        save(root, "train", CLASSES[c], train[c])
        save(root, "val", CLASSES[c], val[c])
    save(root, "val", "digits", digits_28(a.outliers, np.random.default_rng(a.seed)))
    root = os.path.join(a.out, "all-vs-digits-test")
    test = per_class(x_test, y_test, range(10), a.val_per_class, offset=a.val_per_class)
    for c in range(10):
        save(root, "", CLASSES[c], test[c])
    save(root, "", "digits",
         digits_28(a.outliers, np.random.default_rng(a.seed), skip=a.outliers))

    root = os.path.join(a.out, "five-vs-five")
    per_outlier_class = a.outliers // 5
    held = per_class(x_test, y_test, range(5, 10), per_outlier_class, offset=a.val_per_class)
    for c in range(5):
        save(root, "train", CLASSES[c], per_class(x_train, y_train, [c], 2 * a.train_per_class)[c])
        save(root, "val", CLASSES[c], val[c])
    for c in range(5, 10):
        save(root, "val", CLASSES[c], held[c])

    root = os.path.join(a.out, "corrupted")
    for c in range(10):
        save(root, "train", CLASSES[c], train[c])
        save(root, "val", CLASSES[c], val[c])
    base = per_class(x_test, y_test, range(10), a.outliers // 10, offset=a.val_per_class)
    base = np.concatenate([base[c] for c in range(10)])
    noise = rng.integers(-64, 65, base.shape)
    save(root, "val", "noisy", np.clip(base.astype(int) + noise, 0, 255).astype(np.uint8))
    save(root, "val", "flipped", base[:, ::-1, :])
    save(root, "val", "constant", np.repeat(base.mean(axis=(1, 2), keepdims=True), 28, 1)
         .repeat(28, 2).astype(np.uint8))
    print(f"wrote {a.out}/all-vs-digits, all-vs-digits-test, five-vs-five, corrupted")


if __name__ == "__main__":
    main()
