#!/usr/bin/env python3
"""PyTorch reference for `bench --compare-torch`: the same flows as flowmodels' bench cases
`realnvp2d`, `app1-8x256`, `app1-12x512` (RealNVPs on 2-D points), `glow32`, `glow32-score` and
`glow128`, written plainly in PyTorch (CPU, all threads), one JSON
row per case on stdout, in the bench's row format. Each case runs in a process of its own so
that its peak memory is its own.

    python3 torch_bench.py [--scale 1.0] [--peak GFLOPS] [--only CASE] [--device cuda]

With `--device cuda` the models and batches live on the GPU (batches are drawn on the CPU from
the same seeds and copied), each timing ends with a synchronisation, and the peak memory is
the GPU's (torch.cuda.max_memory_allocated).

Needs torch (CPU wheel): python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench_common import SERIES, glow_flops, series_point, series_steps

CASES = ["realnvp2d", "app1-8x256", "app1-12x512", "glow32", "glow32-score", "glow128"]
DEVICE = "cpu"


def synchronize():
    if DEVICE != "cpu":
        torch.cuda.synchronize()


class Coupling2d(nn.Module):
    """RealNVP coupling on 2-D points: x1 conditions x2; log s = 3 tanh(h / 3)."""

    def __init__(self, hidden):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):
        a, b = x[:, :1], x[:, 1:]
        t, h = self.net(a).chunk(2, dim=1)
        log_s = 3.0 * torch.tanh(h / 3.0)
        return torch.cat([a, b * torch.exp(log_s) + t], dim=1), log_s.sum(dim=1)


class RealNVP2d(nn.Module):
    def __init__(self, layers, hidden):
        super().__init__()
        self.layers = nn.ModuleList(Coupling2d(hidden) for _ in range(layers))

    def log_prob(self, x):
        total = torch.zeros(x.shape[0], device=x.device)
        for i, layer in enumerate(self.layers):
            x, ld = layer(x)
            total = total + ld
            if i + 1 < len(self.layers):
                x = x.flip(1)
        return -0.5 * (x**2).sum(1) - x.shape[1] * 0.5 * math.log(2 * math.pi) + total


class ActNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.initialized = False

    def forward(self, x):
        if not self.initialized:
            with torch.no_grad():
                self.loc.data = -x.mean(dim=(0, 2, 3), keepdim=True)
                self.log_scale.data = -torch.log(x.std(dim=(0, 2, 3), keepdim=True) + 1e-6)
            self.initialized = True
        hw = x.shape[2] * x.shape[3]
        return (x + self.loc) * torch.exp(self.log_scale), self.log_scale.sum() * hw


class InvConv(nn.Module):
    """1x1 convolution, W = P L (U + diag(s)), log-det = sum log|s|."""

    def __init__(self, c):
        super().__init__()
        w = torch.linalg.qr(torch.randn(c, c))[0]
        p, l, u = torch.linalg.lu(w)
        s = torch.diag(u)
        self.register_buffer("p", p)
        self.register_buffer("sign", torch.sign(s))
        self.register_buffer("lmask", torch.tril(torch.ones(c, c), -1))
        self.l = nn.Parameter(l)
        self.u = nn.Parameter(torch.triu(u, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def forward(self, x):
        c = x.shape[1]
        l = self.l * self.lmask + torch.eye(c)
        u = self.u * self.lmask.T + torch.diag(self.sign * torch.exp(self.log_s))
        w = self.p @ l @ u
        return F.conv2d(x, w.view(c, c, 1, 1)), self.log_s.sum() * x.shape[2] * x.shape[3]


class GlowCoupling(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.half = c // 2
        out = 2 * (c - self.half)
        self.net = nn.Sequential(
            nn.Conv2d(self.half, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, out, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):
        a, b = x[:, : self.half], x[:, self.half :]
        t, h = self.net(a).chunk(2, dim=1)
        log_s = F.logsigmoid(h + 2.0) + math.log1p(math.exp(-2.0))
        return torch.cat([a, b * torch.exp(log_s) + t], dim=1), log_s.flatten(1).sum(1)


def squeeze(x):
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


class Glow(nn.Module):
    def __init__(self, c, levels, steps, hidden, alpha=0.05):
        super().__init__()
        self.alpha = alpha
        self.levels = nn.ModuleList()
        for level in range(levels):
            c *= 4
            self.levels.append(
                nn.ModuleList(
                    nn.ModuleList([ActNorm(c), InvConv(c), GlowCoupling(c, hidden)]) for _ in range(steps)
                )
            )
            if level + 1 < levels:
                c //= 2

    def log_prob(self, x):
        a = self.alpha
        y = a + (1 - 2 * a) * x
        total = (math.log(1 - 2 * a) - torch.log(y) - torch.log1p(-y)).flatten(1).sum(1)
        h = torch.log(y) - torch.log1p(-y)
        out = []
        for i, level in enumerate(self.levels):
            h = squeeze(h)
            for step in level:
                for layer in step:
                    h, ld = layer(h)
                    total = total + ld
            if i + 1 < len(self.levels):
                c = h.shape[1] // 2
                out.append(h[:, c:].flatten(1))
                h = h[:, :c]
        z = torch.cat(out + [h.flatten(1)], dim=1)
        return -0.5 * (z**2).sum(1) - z.shape[1] * 0.5 * math.log(2 * math.pi) + total


def time_training(model, batch_fn, steps):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for i in range(steps + 3):
        if i == 3:
            started = time.perf_counter()
        loss = -model.log_prob(batch_fn(i).to(DEVICE)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i == 2:
            synchronize()
    synchronize()
    return steps / (time.perf_counter() - started)


def unit(batch, c, hw, i):
    g = torch.Generator().manual_seed(i)
    return (0.5 + 0.15 * torch.randn(batch, c, hw, hw, generator=g)).clamp(0.01, 0.99)


def run_case(case, scale, peak):
    n = lambda k: max(2, round(k * scale))
    torch.manual_seed(0)
    dense = {"realnvp2d": (8, 128, 1024, 200), "app1-8x256": (8, 256, 128, 200), "app1-12x512": (12, 512, 128, 60)}
    if case in dense:
        layers, hidden, batch, k = dense[case]
        steps = n(k)
        model = RealNVP2d(layers, hidden).to(DEVICE)
        s = time_training(model, lambda i: torch.randn(batch, 2, generator=torch.Generator().manual_seed(i)), steps)
        flops = 3.0 * 2 * (1 * hidden + hidden * hidden + hidden * 2) * layers * batch
        note = f"{steps} steps"
    elif series_point(case):
        side, batch = series_point(case)
        steps = n(series_steps(side, batch))
        model = Glow(3, 3, 4, 64).to(DEVICE)
        s = time_training(model, lambda i: unit(batch, 3, side, i), steps)
        flops = 3.0 * glow_flops(3, side, 3, 4, 64) * batch
        note = f"{steps} steps"
    elif case in ("glow32", "glow128"):
        hw, levels, k_steps, hidden, k = (32, 3, 4, 64, 30) if case == "glow32" else (128, 3, 6, 128, 3)
        steps, batch = n(k), 16
        model = Glow(3, levels, k_steps, hidden).to(DEVICE)
        s = time_training(model, lambda i: unit(batch, 3, hw, i), steps)
        flops = 3.0 * glow_flops(3, hw, levels, k_steps, hidden) * batch
        note = f"{steps} steps"
    elif case == "glow32-score":
        steps = n(6)
        model = Glow(3, 3, 4, 64).to(DEVICE)
        with torch.no_grad():
            model.log_prob(unit(256, 3, 32, 0).to(DEVICE))
            synchronize()
            started = time.perf_counter()
            for i in range(steps):
                model.log_prob(unit(256, 3, 32, 2 + i).to(DEVICE)).sum().item()
            s = steps / (time.perf_counter() - started)
        batch, flops = 256, glow_flops(3, 32, 3, 4, 64) * 256
        note = f"{steps} batches"
    else:
        raise SystemExit(f"unknown case {case}")
    return row(case, s, batch, flops, peak, note)


def row(case, s, batch, flops, peak, note):
    """One row of the bench's table for `case` at `s` steps per second."""
    return {
        "id": case,
        "implementation": f"pytorch {torch.__version__}" + ("" if DEVICE == "cpu" else f" {DEVICE}"),
        "steps_per_sec": s,
        "samples_per_sec": s * batch,
        "peak_mib": (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            if DEVICE == "cpu"
            else torch.cuda.max_memory_allocated() / 2**20
        ),
        "flops_per_step": flops,
        "fraction_of_peak": flops * s / 1e9 / max(peak, 1e-9),
        "note": f"{note}, {torch.get_num_threads()} threads",
    }


def main(cases=CASES, run_case=run_case, script=__file__, on_request=()):
    """Every case in a process of its own (its peak memory its own), or `--only CASE`; the
    cases in `on_request` only when `--cases` names them."""
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--peak", type=float, default=1.0)
    p.add_argument("--only")
    p.add_argument("--cases", help="comma-separated: run only these of the cases")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    global DEVICE
    DEVICE = args.device
    torch.set_num_threads(os.cpu_count() or 1)
    if args.only:
        print(json.dumps(run_case(args.only, args.scale, args.peak)))
        return
    chosen = args.cases.split(",") if args.cases else cases
    for case in [c for c in list(cases) + list(on_request) if c in chosen]:
        out = subprocess.run(
            [
                sys.executable, script, "--only", case, "--scale", str(args.scale),
                "--peak", str(args.peak), "--device", args.device,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        print(out.stdout.strip())


if __name__ == "__main__":
    main(on_request=SERIES)
