#!/usr/bin/env python3
"""TensorFlow Probability reference for `bench --compare-tfp`: the flows of the original
TensorFlow Probability project (`flow_models`: `tfb.RealNVP` couplings, and `tfb.Glow`), at the
sizes of flowmodels' bench cases `realnvp2d`, `app1-8x256`, `app1-12x512`, `glow32`,
`glow32-score` and `glow128`, trained as that project trained them (a `tf.function` step,
`GradientTape`, Adam). One JSON row per case on stdout, in the bench's row format; each case
in a process of its own so that its peak memory is its own.

    python3 tfp_bench.py [--scale 1.0] [--peak GFLOPS] [--only CASE] [--cases A,B]

Needs TensorFlow and TensorFlow Probability from PyPI:
    python3 -m venv /tmp/tfpvenv && /tmp/tfpvenv/bin/pip install tensorflow-cpu \
        tensorflow-probability tf-keras

Differences from flowmodels' models, which change the work little: TFP's Glow puts its
"exit" convolution before each factored-out half and its coupling network is TFP's
`GlowDefaultNetwork` (3x3, 1x1, zero-initialised 3x3 convolutions, ReLU) at the same widths.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from bench_common import SERIES, glow_flops, series_point, series_steps  # noqa: E402

tfb = tfp.bijectors
tfd = tfp.distributions

CASES = ["realnvp2d", "app1-8x256", "app1-12x512", "glow32", "glow32-score", "glow128"]
THREADS = os.cpu_count() or 1


class ShiftAndLogScale(tf.keras.layers.Layer):
    """The shift-and-log-scale network of a `tfb.RealNVP` coupling: an MLP with ReLU whose last
    layer starts at zero, log s = 3 tanh(h / 3), as flowmodels' couplings. A Keras layer, so
    that the distribution tracks its variables."""

    def __init__(self, hidden):
        super().__init__()
        self.hidden = [tf.keras.layers.Dense(h, activation="relu") for h in hidden]
        self.last = tf.keras.layers.Dense(2, kernel_initializer="zeros")

    def call(self, x, output_units):
        h = x
        for layer in self.hidden:
            h = layer(h)
        out = self.last(h)
        return out[..., :output_units], 3.0 * tf.tanh(out[..., output_units:] / 3.0)


def real_nvp(layers, hidden):
    """`layers` RealNVP couplings on 2-D points with the coordinates swapped between them."""
    bijectors = []
    for i in range(layers):
        net = ShiftAndLogScale(hidden)
        bijectors.append(tfb.RealNVP(num_masked=1, shift_and_log_scale_fn=net))
        if i + 1 < layers:
            bijectors.append(tfb.Permute([1, 0]))
    # tfb.Chain applies its last bijector first; data to latent is the inverse.
    return tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(loc=tf.zeros(2)), tfb.Chain(list(reversed(bijectors)))
    )


def glow(hw, levels, steps, hidden, alpha=0.05):
    """TFP's Glow on [hw, hw, 3] images in (0, 1), behind the logit of flowmodels' bench
    (x' = alpha + (1 - 2 alpha) x)."""
    g = tfb.Glow(
        output_shape=[hw, hw, 3],
        num_glow_blocks=levels,
        num_steps_per_block=steps,
        coupling_bijector_fn=lambda shape: tfb.GlowDefaultNetwork(shape, num_hidden=hidden),
        exit_bijector_fn=tfb.GlowDefaultExitNetwork,
        grab_after_block=tuple([0.5] * levels),
        use_actnorm=True,
    )
    to_unit = tfb.Chain([tfb.Scale(1.0 / (1.0 - 2.0 * alpha)), tfb.Shift(-alpha), tfb.Sigmoid(), g])
    latent = hw * hw * 3
    return tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), [latent]), to_unit
    )


def unit(batch, hw, i):
    rng = np.random.default_rng(i)
    x = np.clip(0.5 + 0.15 * rng.standard_normal((batch, hw, hw, 3)), 0.01, 0.99)
    return tf.constant(x, dtype=tf.float32)


def normal(batch, i):
    rng = np.random.default_rng(i)
    return tf.constant(rng.standard_normal((batch, 2)), dtype=tf.float32)


def time_training(dist, batch_fn, steps):
    """Adam at 1e-4 (as the other references), three warm-up steps (tracing, ActNorm's data
    initialisation) before the clock starts."""
    dist.log_prob(batch_fn(0))  # creates the variables
    opt = tf.keras.optimizers.Adam(learning_rate=1e-4)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        variables = dist.trainable_variables
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for i in range(steps + 3):
        if i == 3:
            started = time.perf_counter()
        step(batch_fn(i)).numpy()
    return steps / (time.perf_counter() - started)


def dense_flops(layers, hidden, batch):
    sizes = [1] + hidden + [2]
    per = sum(a * b for a, b in zip(sizes, sizes[1:]))
    return 3.0 * 2 * per * layers * batch


def run_case(case, scale, peak):
    n = lambda k: max(2, round(k * scale))  # noqa: E731
    tf.random.set_seed(0)
    dense = {"realnvp2d": (8, [128, 128], 1024, 200), "app1-8x256": (8, [256, 256], 128, 200),
             "app1-12x512": (12, [512, 512], 128, 60)}
    if case in dense:
        layers, hidden, batch, k = dense[case]
        steps = n(k)
        s = time_training(real_nvp(layers, hidden), lambda i: normal(batch, i), steps)
        flops, note = dense_flops(layers, hidden, batch), f"{steps} steps"
    elif case in ("glow32", "glow128") or series_point(case):
        hw, levels, k_steps, hidden, k = (32, 3, 4, 64, 30) if case == "glow32" else (128, 3, 6, 128, 3)
        batch = 16
        if series_point(case):
            hw, batch = series_point(case)
            levels, k_steps, hidden = 3, 4, 64
            k = series_steps(hw, batch)
        steps = n(k)
        s = time_training(glow(hw, levels, k_steps, hidden), lambda i: unit(batch, hw, i), steps)
        flops = 3.0 * glow_flops(3, hw, levels, k_steps, hidden) * batch
        note = f"{steps} steps"
    elif case == "glow32-score":
        steps, batch = n(6), 256
        dist = glow(32, 3, 4, 64)
        score = tf.function(lambda x: tf.reduce_sum(dist.log_prob(x)))
        score(unit(batch, 32, 0)).numpy()
        started = time.perf_counter()
        for i in range(steps):
            score(unit(batch, 32, 2 + i)).numpy()
        s = steps / (time.perf_counter() - started)
        flops, note = glow_flops(3, 32, 3, 4, 64) * batch, f"{steps} batches"
    else:
        raise SystemExit(f"unknown case {case}")
    return {
        "id": case,
        "implementation": f"tfp {tfp.__version__} (tf {tf.__version__})",
        "steps_per_sec": s,
        "samples_per_sec": s * batch,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "flops_per_step": flops,
        "fraction_of_peak": flops * s / 1e9 / max(peak, 1e-9),
        "note": f"{note}, {THREADS} threads",
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--peak", type=float, default=1.0)
    p.add_argument("--only")
    p.add_argument("--cases", help="comma-separated: run only these of the cases")
    args = p.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if args.only:
        print(json.dumps(run_case(args.only, args.scale, args.peak)))
        return
    chosen = args.cases.split(",") if args.cases else CASES
    for case in [c for c in CASES + SERIES if c in chosen]:
        out = subprocess.run(
            [sys.executable, __file__, "--only", case, "--scale", str(args.scale),
             "--peak", str(args.peak)],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            why = (out.stderr.strip().splitlines() or ["no message"])[-1]
            print(json.dumps({
                "id": case, "implementation": "missing: tfp_bench.py", "steps_per_sec": 0.0,
                "samples_per_sec": 0.0, "peak_mib": 0.0, "flops_per_step": 0.0,
                "fraction_of_peak": 0.0, "note": f"failed: {why}",
            }))
            continue
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
