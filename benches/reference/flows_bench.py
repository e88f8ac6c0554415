#!/usr/bin/env python3
"""nflows and zuko references for `bench --compare-torch`: flowmodels' bench cases
`nsf-flashsim`, `nsf-flashsim-sample`, `maf-fedhex` and `maf-fedhex-sample`, built with each
library's own flows at the same sizes (CPU, all threads), one JSON row per case and library on
stdout, in the bench's row format. A library that does not import gives a row that says so.

    python3 flows_bench.py [--scale 1.0] [--peak GFLOPS] [--only CASE --library LIB]

The cases, as in apps/src/bench.rs:
- nsf-flashsim: 17 targets given 14 conditions, 6 rational-quadratic spline couplings (16 bins,
  half masks alternating, reversed between), conditioners MLP (8 + 14) -> 128 -> 128 -> params,
  ReLU; Adam, batch 256. zuko's NSF with passes=2 is its coupling form (a masked MLP).
- maf-fedhex: 2-D data given 2-D labels, 10 affine MADE blocks of [128, 128], reversed between;
  Adam, batch 512.
- *-sample: 4096 samples for 4096 conditions.

Needs: python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch nflows zuko
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = ["nsf-flashsim", "nsf-flashsim-sample", "maf-fedhex", "maf-fedhex-sample"]
LIBRARIES = ["nflows", "zuko"]


def shapes(case):
    """(features, context, batch) of a case."""
    return (17, 14, 256) if case.startswith("nsf") else (2, 2, 512)


def nflows_flow(case):
    import torch
    import torch.nn as nn
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
    from nflows.transforms.permutations import ReversePermutation

    features, context, _ = shapes(case)

    class Net(nn.Module):
        """The conditioner: the condition appended to the conditioning features, as in flowmodels."""

        def __init__(self, inputs, outputs):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(inputs + context, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, outputs)
            )

        def forward(self, x, context=None):
            return self.net(torch.cat([x, context], dim=1))

    layers = []
    if case.startswith("nsf"):
        half = features // 2
        for i in range(6):
            if i > 0:
                layers.append(ReversePermutation(features))
            # nflows transforms where the mask is positive: flowmodels' first half conditions.
            mask = torch.tensor([-1] * half + [1] * (features - half))
            if i % 2 == 1:
                mask = -mask
            layers.append(
                PiecewiseRationalQuadraticCouplingTransform(
                    mask, Net, num_bins=16, tails="linear", tail_bound=3.0
                )
            )
    else:
        for i in range(10):
            if i > 0:
                layers.append(ReversePermutation(features))
            layers.append(
                MaskedAffineAutoregressiveTransform(
                    features=features,
                    hidden_features=128,
                    context_features=context,
                    num_blocks=1,
                    use_residual_blocks=False,
                )
            )
    flow = Flow(CompositeTransform(layers), StandardNormal([features]))
    log_prob = lambda x, c: flow.log_prob(x, context=c)
    sample = lambda c: flow.sample(1, context=c)
    return flow, log_prob, sample


def zuko_flow(case):
    import zuko

    features, context, _ = shapes(case)
    if case.startswith("nsf"):
        flow = zuko.flows.NSF(features, context, bins=16, transforms=6, hidden_features=(128, 128), passes=2)
    else:
        flow = zuko.flows.MAF(features, context, transforms=10, hidden_features=(128, 128))
    log_prob = lambda x, c: flow(c).log_prob(x)
    sample = lambda c: flow(c).sample()
    return flow, log_prob, sample


def run_case(case, library, scale, peak):
    import torch

    n = lambda k: max(2, round(k * scale))
    torch.manual_seed(0)
    features, context, batch = shapes(case)
    flow, log_prob, sample = (nflows_flow if library == "nflows" else zuko_flow)(case)
    g = lambda i, k, b: torch.randn(b, k, generator=torch.Generator().manual_seed(i))
    if case.endswith("-sample"):
        steps, batch = n(10), 4096
        c = g(5, context, batch)
        with torch.no_grad():
            sample(c)
            started = time.perf_counter()
            for _ in range(steps):
                sample(c).sum().item()
            s = steps / (time.perf_counter() - started)
        note = f"{steps} batches of {batch}"
    else:
        steps = n(40) if case.startswith("nsf") else n(60)
        opt = torch.optim.Adam(flow.parameters(), lr=1e-4)
        for i in range(steps + 3):
            if i == 3:
                started = time.perf_counter()
            loss = -log_prob(g(i, features, batch), g(1_000_000 + i, context, batch)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        s = steps / (time.perf_counter() - started)
        note = f"{steps} steps"
    from importlib.metadata import version as installed

    version = installed(library)
    return {
        "id": case,
        "implementation": f"{library} {version}",
        "steps_per_sec": s,
        "samples_per_sec": s * batch,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "flops_per_step": 0.0,
        "fraction_of_peak": 0.0,
        "note": f"{note}, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }


def missing(case, library, why):
    return {
        "id": case,
        "implementation": f"{library} (missing)",
        "steps_per_sec": 0.0,
        "samples_per_sec": 0.0,
        "peak_mib": 0.0,
        "flops_per_step": 0.0,
        "fraction_of_peak": 0.0,
        "note": f"not run: {why}",
    }


def main(cases=CASES, libraries=LIBRARIES, run_case=run_case, script=__file__):
    """Every case and library in a process of its own, or `--only CASE --library LIB`."""
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--peak", type=float, default=1.0)
    p.add_argument("--only")
    p.add_argument("--library")
    p.add_argument("--cases", help="comma-separated: run only these of the cases")
    args = p.parse_args()
    if args.only:
        try:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
            __import__(args.library)
        except Exception as e:  # an uninstalled reference is reported, not skipped
            print(json.dumps(missing(args.only, args.library, f"{type(e).__name__}: {e}")))
            return
        print(json.dumps(run_case(args.only, args.library, args.scale, args.peak)))
        return
    chosen = args.cases.split(",") if args.cases else cases
    for case in [c for c in cases if c in chosen]:
        for library in libraries:
            out = subprocess.run(
                [sys.executable, script, "--only", case, "--library", library]
                + ["--scale", str(args.scale), "--peak", str(args.peak)],
                capture_output=True,
                text=True,
            )
            line = out.stdout.strip().splitlines()[-1:] if out.returncode == 0 else []
            print(line[0] if line else json.dumps(missing(case, library, out.stderr.strip()[-300:])))


if __name__ == "__main__":
    main()
