#!/usr/bin/env python3
"""PyTorch reference for `bench --compare-torch`: the lattice cases `phi4-8x8` (reverse-KL
training) and `phi4-8x8-sample` (sampling with log-weights), the same flow as flowmodels' bench
case: the flow of Albergo et al.'s tutorial on an 8 x 8 periodic lattice, 8 affine checkerboard
couplings whose networks are 3x3 convolutions with circular padding (1 -> 8 -> 8 -> 2 channels,
LeakyReLU), log s = 3 tanh(h / 3), trained against the phi^4 action (kappa 2, m_sq -8, lambda 8)
with Adam, batch 256. One JSON row per case on stdout, in the bench's row format; each case in
a process of its own so that its peak memory is its own.

    python3 lattice_bench.py [--scale 1.0] [--peak GFLOPS] [--only CASE]
"""
import math
import time

import torch
import torch.nn as nn

from torch_bench import main, row

CASES = ["phi4-8x8", "phi4-8x8-sample"]
L, BATCH, KAPPA, M_SQ, LAMBDA = 8, 256, 2.0, -8.0, 8.0


def action(phi):
    kinetic = sum(((torch.roll(phi, -1, d) - phi) ** 2).sum((1, 2)) for d in (1, 2))
    return KAPPA / 2 * kinetic + (M_SQ / 2 * phi**2 + LAMBDA * phi**4).sum((1, 2))


class Coupling(nn.Module):
    """z = x exp(log s) + t on the sites of one parity, (t, h) from the other parity."""

    def __init__(self, parity):
        super().__init__()
        conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1, padding_mode="circular")
        self.net = nn.Sequential(conv(1, 8), nn.LeakyReLU(), conv(8, 8), nn.LeakyReLU(), conv(8, 2))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        idx = torch.arange(L)
        keep = ((idx[:, None] + idx[None, :]) % 2 == parity).float()
        self.register_buffer("keep", keep[None])

    def inverse(self, z):
        """Latent to data, with log|det dx/dz|."""
        free = 1 - self.keep
        h = self.net((z * self.keep)[:, None])
        t, log_s = h[:, 0] * free, 3 * torch.tanh(h[:, 1] / 3) * free
        x = self.keep * z + free * (z - t) * torch.exp(-log_s)
        return x, -log_s.sum((1, 2))


class Flow(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([Coupling(i % 2) for i in range(8)])

    def sample(self, n, generator=None):
        z = torch.randn(n, L, L, generator=generator)
        log_q = -0.5 * (z**2).sum((1, 2)) - 0.5 * L * L * math.log(2 * math.pi)
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            log_q = log_q - ld
        return z, log_q


def conv_flops(batch):
    # Per coupling: 3x3 convolutions 1 -> 8 -> 8 -> 2 at every site (multiply-adds count 2).
    return 2.0 * 8 * batch * L * L * 9 * (1 * 8 + 8 * 8 + 8 * 2)


def run_case(case, scale, peak):
    n = lambda k: max(2, round(k * scale))
    torch.manual_seed(0)
    flow = Flow()
    if case == "phi4-8x8":
        steps = n(100)
        opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
        for i in range(steps + 3):
            if i == 3:
                started = time.perf_counter()
            phi, log_q = flow.sample(BATCH, torch.Generator().manual_seed(i))
            loss = (log_q + action(phi)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        s = steps / (time.perf_counter() - started)
        batch, flops, note = BATCH, 3.0 * conv_flops(BATCH), f"{steps} steps"
    elif case == "phi4-8x8-sample":
        steps = n(10)
        batch = 4096
        with torch.no_grad():
            flow.sample(batch)
            started = time.perf_counter()
            for i in range(steps):
                phi, log_q = flow.sample(batch, torch.Generator().manual_seed(i))
                (-action(phi) - log_q).sum().item()
            s = steps / (time.perf_counter() - started)
        flops, note = conv_flops(batch), f"{steps} batches of {batch} with log-weights"
    else:
        raise SystemExit(f"unknown case {case}")
    return row(case, s, batch, flops, peak, note)


if __name__ == "__main__":
    main(CASES, run_case, __file__)
