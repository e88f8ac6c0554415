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
solver's steps (torchdiffeq's `odeint`); Adam, batch 256. `ffjord-moons-adjoint` trains the same
model with gradients by the adjoint method (torchdiffeq's `odeint_adjoint`, its default adjoint
tolerances: those of the forward solve); zuko has no adjoint, and says so in its row.
`ffjord-conv28` is application 2's convolutional FFJORD (apps/configs/app2-ffjord.toml) in
torchdiffeq: 28x28x1 images in (0, 1), the logit with alpha 0.05, two 2x2 squeezes to 16 planes
of 7x7, FFJORD's `ConcatSquashConv2d` 3x3 convolutions 16 -> 64 -> 64 -> 16 with tanh, RK4 with
8 steps, Hutchinson's trace with one Rademacher probe per image drawn once per solve (FFJORD's
`divergence_approx`), Adam, batch 32; zuko has no convolutional CNF. zuko's `CNF` is its
own continuous flow (a sinusoidal time embedding, exact trace, its own Dormand-Prince): the
same hidden widths and tolerances, a row of its own.

Needs: python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torchdiffeq zuko
"""
import math
import resource
import time

from flows_bench import main, missing

CASES = ["ffjord-moons", "ffjord-moons-adjoint", "ffjord-conv28", "ffjord-moons-sample"]
LIBRARIES = ["torchdiffeq", "zuko"]
BATCH, SAMPLES, TOL = 256, 4096, 1e-5


def moons(n, gen):
    import torch

    t = torch.rand(n, generator=gen) * math.pi
    upper = torch.rand(n, generator=gen) < 0.5
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    return torch.stack([x, y], 1) + 0.1 * torch.randn(n, 2, generator=gen)


def leaf(z):
    """The state as a leaf of the dynamics' own graph (for the trace's vector-Jacobian products)."""
    return z if z.requires_grad else z.requires_grad_(True)


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
            with torch.enable_grad():
                z = leaf(state[0])
                dz = self.net(t, z)
                trace = sum(
                    torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i] for i in range(2)
                )
            return dz, trace

    f = Dynamics()
    times = torch.tensor([0.0, 1.0])

    def log_prob(x, solve=odeint):
        z, ld = solve(f, (x, torch.zeros(x.shape[0])), times, rtol=TOL, atol=TOL, method="dopri5")
        z, ld = z[-1], ld[-1]
        return -0.5 * (z**2).sum(1) - math.log(2 * math.pi) + ld

    def sample(n, gen):
        z = torch.randn(n, 2, generator=gen)
        x, _ = odeint(f, (z, torch.zeros(n)), times.flip(0), rtol=TOL, atol=TOL, method="dopri5")
        return x[-1]

    return f, log_prob, sample, lambda: f.nfe


def conv_model():
    """Application 2's FFJORD: `(module, log_prob, None, nfe)` as `torchdiffeq_model`."""
    import torch
    import torch.nn as nn
    from torchdiffeq import odeint

    class ConcatSquashConv(nn.Module):
        def __init__(self, i, o):
            super().__init__()
            self.layer = nn.Conv2d(i, o, 3, padding=1)
            self.gate, self.bias = nn.Linear(1, o), nn.Linear(1, o, bias=False)

        def forward(self, t, h):
            t = t.view(1, 1)
            gate = torch.sigmoid(self.gate(t)).view(1, -1, 1, 1)
            return self.layer(h) * gate + self.bias(t).view(1, -1, 1, 1)

    class Dynamics(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [16, 64, 64, 16]
            self.layers = nn.ModuleList(ConcatSquashConv(a, b) for a, b in zip(widths, widths[1:]))
            self.nfe, self.probe = 0, None

        def forward(self, t, state):
            self.nfe += 1
            with torch.enable_grad():
                z = leaf(state[0])
                h = z
                for i, layer in enumerate(self.layers):
                    h = layer(t, h)
                    if i < len(self.layers) - 1:
                        h = torch.tanh(h)
                vjp = torch.autograd.grad(h, z, self.probe, create_graph=True)[0]
                trace = (vjp * self.probe).flatten(1).sum(1)
            return h, trace

    f = Dynamics()
    times, alpha = torch.tensor([0.0, 1.0]), 0.05

    def log_prob(x):
        n = x.shape[0]
        y = alpha + (1 - 2 * alpha) * x
        logit_ld = (math.log(1 - 2 * alpha) - torch.log(y) - torch.log1p(-y)).sum(1)
        z = (torch.log(y) - torch.log1p(-y)).view(n, 1, 28, 28)
        for _ in range(2):
            c, h, w = z.shape[1:]
            z = z.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
        f.probe = torch.randint(0, 2, z.shape).to(z.dtype) * 2 - 1
        opts = {"step_size": 1.0 / 8}
        z, ld = odeint(f, (z, torch.zeros(n)), times, method="rk4", options=opts)
        z, ld = z[-1].flatten(1), ld[-1]
        return -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi) + ld + logit_ld

    return f, log_prob, None, lambda: f.nfe


def zuko_model():
    import torch
    import zuko

    flow = zuko.flows.CNF(2, hidden_features=(64, 64, 64), exact=True, atol=TOL, rtol=TOL)
    # Evaluations of the dynamics, so that a row's rate can be read per evaluation: the two
    # libraries' initial dynamics differ, and with them an adaptive solver's step count.
    calls = [0]
    flow.transform.ode.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))

    def sample(n, gen):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
        return flow().sample((n,))

    return flow, lambda x: flow().log_prob(x), sample, lambda: calls[0]


def run_case(case, library, scale, peak):
    import torch

    if case == "ffjord-moons-adjoint" and library != "torchdiffeq":
        return missing(case, library, f"{library} has no adjoint method")
    if case == "ffjord-conv28" and library != "torchdiffeq":
        return missing(case, library, f"{library} has no convolutional continuous flow")

    torch.manual_seed(0)
    if case == "ffjord-conv28":
        module, log_prob, sample, nfe = conv_model()
    else:
        module, log_prob, sample, nfe = (torchdiffeq_model if library == "torchdiffeq" else zuko_model)()
    version = __import__(library).__version__ if hasattr(__import__(library), "__version__") else "?"
    n = lambda k: max(2, round(k * scale))
    if case == "ffjord-moons-adjoint":
        from torchdiffeq import odeint_adjoint

        log_prob = lambda x, lp=log_prob: lp(x, solve=odeint_adjoint)
    if case == "ffjord-conv28":
        steps, batch = n(10), 32
        opt = torch.optim.Adam(module.parameters(), lr=1e-3)
        for i in range(steps + 3):
            if i == 3:
                started, nfe0 = time.perf_counter(), nfe()
            gen = torch.Generator().manual_seed(i)
            x = (0.5 + 0.15 * torch.randn(batch, 28 * 28, generator=gen)).clamp(0.01, 0.99)
            loss = -log_prob(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        s = steps / (time.perf_counter() - started)
        note = f"{steps} steps, {(nfe() - nfe0) / steps:.1f} evaluations per step"
    elif case in ("ffjord-moons", "ffjord-moons-adjoint"):
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
            if library == "zuko":
                what = "every evaluation, the backward pass's too"
            else:
                what = "forward and adjoint solves" if case.endswith("adjoint") else "forward solve"
            note += f", {(nfe() - nfe0) / steps:.1f} evaluations per step ({what})"
    elif case == "ffjord-moons-sample":
        steps = n(10)
        batch = SAMPLES
        with torch.no_grad():
            sample(batch, torch.Generator().manual_seed(0))
            started, nfe0 = time.perf_counter(), nfe() if nfe else 0
            for i in range(steps):
                sample(batch, torch.Generator().manual_seed(1 + i)).sum().item()
            s = steps / (time.perf_counter() - started)
        note = f"{steps} batches of {batch}"
        if nfe:
            note += f", {(nfe() - nfe0) / steps:.1f} evaluations per solve"
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
