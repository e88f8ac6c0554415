#!/usr/bin/env python3
"""torchdiffeq and zuko references for `bench --compare-torch`: flowmodels' bench cases
`ffjord-moons` (training) and `ffjord-moons-sample` (sampling 4096 points), one JSON row per case
and library on stdout, in the bench's row format. A library that does not import gives a row
that says so.

    python3 ffjord_bench.py [--scale 1.0] [--peak GFLOPS] [--cases A,B] [--only CASE --library LIB]

The model, as flowmodels' `FfjordConfig` default: dz/dt = f(t, z) on the moons (noise 0.1),
t in [0, 1], f a concat-squash MLP 2 -> 64 -> 64 -> 64 -> 2 with tanh (FFJORD's
`ConcatSquashLinear`), Dormand-Prince with rtol = atol = 1e-5, the exact trace (one
vector-Jacobian product per feature, as FFJORD's `divergence_bf`), back-propagation through the
solver's steps (torchdiffeq's `odeint`, not the adjoint); Adam, batch 256. zuko's `CNF` is its
own continuous flow (a sinusoidal time embedding, exact trace, its own Dormand-Prince): the
same hidden widths and tolerances, a row of its own.

Needs: python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torchdiffeq zuko
"""
import math
import resource
import time

from flows_bench import main

CASES = ["ffjord-moons", "ffjord-moons-sample"]
LIBRARIES = ["torchdiffeq", "zuko"]
BATCH, SAMPLES, TOL = 256, 4096, 1e-5


def moons(n, gen):
    import torch

    t = torch.rand(n, generator=gen) * math.pi
    upper = torch.rand(n, generator=gen) < 0.5
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    return torch.stack([x, y], 1) + 0.1 * torch.randn(n, 2, generator=gen)


def torchdiffeq_model():
    import torch
    import torch.nn as nn
    from torchdiffeq import odeint

    class ConcatSquash(nn.Module):
        def __init__(self, i, o):
            super().__init__()
            self.layer, self.gate, self.bias = nn.Linear(i, o), nn.Linear(1, o), nn.Linear(1, o, bias=False)

        def forward(self, t, h):
            t = t.view(1, 1)
            return self.layer(h) * torch.sigmoid(self.gate(t)) + self.bias(t)

    class Dynamics(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [2, 64, 64, 64, 2]
            self.layers = nn.ModuleList(ConcatSquash(a, b) for a, b in zip(widths, widths[1:]))
            self.nfe = 0

        def net(self, t, z):
            for i, layer in enumerate(self.layers):
                z = layer(t, z)
                if i < len(self.layers) - 1:
                    z = torch.tanh(z)
            return z

        def forward(self, t, state):
            self.nfe += 1
            z = state[0]
            with torch.enable_grad():
                if not z.requires_grad:
                    z = z.requires_grad_(True)
                dz = self.net(t, z)
                trace = sum(
                    torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i] for i in range(2)
                )
            return dz, trace

    f = Dynamics()
    times = torch.tensor([0.0, 1.0])

    def log_prob(x):
        z, ld = odeint(f, (x, torch.zeros(x.shape[0])), times, rtol=TOL, atol=TOL, method="dopri5")
        z, ld = z[-1], ld[-1]
        return -0.5 * (z**2).sum(1) - math.log(2 * math.pi) + ld

    def sample(n, gen):
        z = torch.randn(n, 2, generator=gen)
        x, _ = odeint(f, (z, torch.zeros(n)), times.flip(0), rtol=TOL, atol=TOL, method="dopri5")
        return x[-1]

    return f, log_prob, sample, lambda: f.nfe


def zuko_model():
    import torch
    import zuko

    flow = zuko.flows.CNF(2, hidden_features=(64, 64, 64), exact=True, atol=TOL, rtol=TOL)

    def sample(n, gen):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
        return flow().sample((n,))

    return flow, lambda x: flow().log_prob(x), sample, None


def run_case(case, library, scale, peak):
    import torch

    torch.manual_seed(0)
    module, log_prob, sample, nfe = (torchdiffeq_model if library == "torchdiffeq" else zuko_model)()
    version = __import__(library).__version__ if hasattr(__import__(library), "__version__") else "?"
    n = lambda k: max(2, round(k * scale))
    if case == "ffjord-moons":
        steps = n(30)
        opt = torch.optim.Adam(module.parameters(), lr=1e-3)
        for i in range(steps + 3):
            if i == 3:
                started, nfe0 = time.perf_counter(), nfe() if nfe else 0
            loss = -log_prob(moons(BATCH, torch.Generator().manual_seed(i))).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        s = steps / (time.perf_counter() - started)
        batch = BATCH
        note = f"{steps} steps"
        if nfe:
            note += f", {(nfe() - nfe0) / steps:.1f} evaluations per step (forward solve)"
    elif case == "ffjord-moons-sample":
        steps = n(10)
        batch = SAMPLES
        with torch.no_grad():
            sample(batch, torch.Generator().manual_seed(0))
            started = time.perf_counter()
            for i in range(steps):
                sample(batch, torch.Generator().manual_seed(1 + i)).sum().item()
            s = steps / (time.perf_counter() - started)
        note = f"{steps} batches of {batch}"
    else:
        raise SystemExit(f"unknown case {case}")
    return {
        "id": case,
        "implementation": f"{library} {version} (torch {torch.__version__})",
        "steps_per_sec": s,
        "samples_per_sec": s * batch,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "flops_per_step": 0.0,
        "fraction_of_peak": 0.0,
        "note": f"{note}, {torch.get_num_threads()} threads",
    }


if __name__ == "__main__":
    main(CASES, LIBRARIES, run_case, __file__)
