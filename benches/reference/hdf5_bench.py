#!/usr/bin/env python3
"""h5py reference for `bench --compare-torch`: the `hdf5-reader` case, reading the very files
flowmodels' case wrote (TMPDIR/flowmodels-bench-hdf5: 4 files x 250k rows x 31 f32, chunks of
4096 rows, deflate 1), condition columns 0:14 and target columns 14:31, into batches of 256,
one JSON row per way of reading on stdout, in the bench's row format:

- "Dataset per row": a map-style PyTorch Dataset whose __getitem__ reads one row with h5py
  (files opened once), through a DataLoader with shuffle=True and batch_size=256 (torch's, when
  torch imports; otherwise the same loop written out: a permutation, one read per index,
  np.stack). This is how FlashSim-style training code reads its HDF5 files.
- "blocks": the fast way to use h5py: blocks of 4096 rows in a random order across files, 8 of
  them shuffled together with numpy, batches of 256 (what flowmodels' reader does, without its
  read-ahead thread).

A missing h5py gives a row that says so.

    python3 hdf5_bench.py [--scale 1.0] [--peak GFLOPS] [--cases hdf5-reader]

Needs: pip install h5py numpy (and torch for its DataLoader).
"""
import argparse
import json
import os
import resource
import tempfile
import time

CASE = "hdf5-reader"


def row(implementation, rows_per_sec, note):
    return {
        "id": CASE,
        "implementation": implementation,
        "steps_per_sec": rows_per_sec / 256.0,
        "samples_per_sec": rows_per_sec,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "flops_per_step": 0.0,
        "fraction_of_peak": 0.0,
        "note": note,
    }


def files():
    d = os.path.join(tempfile.gettempdir(), "flowmodels-bench-hdf5")
    found = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".h5")) if os.path.isdir(d) else []
    if not found:
        raise SystemExit(f"no HDF5 files in {d}: the flowmodels case hdf5-reader writes them first")
    return found


def per_row(h5py, np, paths, rows):
    handles = [h5py.File(p, "r")["data"] for p in paths]
    sizes = [h.shape[0] for h in handles]
    starts = np.cumsum([0] + sizes)

    class TableDataset:
        def __len__(self):
            return int(starts[-1])

        def __getitem__(self, i):
            f = int(np.searchsorted(starts, i, side="right") - 1)
            r = handles[f][i - starts[f]]
            return r[:14], r[14:31]

    ds = TableDataset()
    try:
        import torch
        from torch.utils.data import DataLoader, Dataset

        class TorchDataset(Dataset):
            def __len__(self):
                return len(ds)

            def __getitem__(self, i):
                return ds[i]

        loader = iter(DataLoader(TorchDataset(), batch_size=256, shuffle=True, num_workers=0))
        how = f"torch {torch.__version__} DataLoader"
    except ImportError:
        def batches():
            order = np.random.permutation(len(ds))
            for b in range(0, len(order), 256):
                items = [ds[int(i)] for i in order[b : b + 256]]
                yield np.stack([c for c, _ in items]), np.stack([x for _, x in items])

        loader = batches()
        how = "torch not installed: DataLoader's loop written out"
    read = 0
    started = time.perf_counter()
    while read < rows:
        c, x = next(loader)
        read += len(c)
    return read / (time.perf_counter() - started), f"{read} rows, {how}"


def blocks(np, h5py, paths, rows):
    handles = [h5py.File(p, "r")["data"] for p in paths]
    index = [(f, s) for f, h in enumerate(handles) for s in range(0, h.shape[0], 4096)]
    rng = np.random.default_rng(0)
    read = 0
    started = time.perf_counter()
    while read < rows:
        order = rng.permutation(len(index))
        for w in range(0, len(order), 8):
            window = np.concatenate([handles[index[k][0]][index[k][1] : index[k][1] + 4096] for k in order[w : w + 8]])
            window = window[rng.permutation(len(window))]
            for b in range(0, len(window), 256):
                c, x = window[b : b + 256, :14], window[b : b + 256, 14:31]
                read += len(c)
            if read >= rows:
                break
    return read / (time.perf_counter() - started), f"{read} rows, blocks of 4096, 8 shuffled together"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--peak", type=float, default=1.0)
    p.add_argument("--cases")
    args = p.parse_args()
    if args.cases and CASE not in args.cases.split(","):
        return
    try:
        import h5py
        import numpy as np
    except ImportError as e:
        print(json.dumps(row("h5py", 0.0, f"missing: {e}")))
        return
    paths = files()
    version = f"h5py {h5py.__version__}"
    s, note = per_row(h5py, np, paths, max(256, int(20_000 * args.scale)))
    print(json.dumps(row(f"{version} (Dataset per row)", s, note)))
    s, note = blocks(np, h5py, paths, max(256, int(1_000_000 * args.scale)))
    print(json.dumps(row(f"{version} (blocks)", s, note)))


if __name__ == "__main__":
    main()
