//! The spline kernel's work on slices: per value, its raw parameters normalised, its bin
//! found and the rational quadratic evaluated in f64; and the backward pass, which evaluates the
//! same formula in dual numbers and carries the gradients back through the softmaxes and the
//! softplus. Rows of the batch are split across the cores.

use burn::tensor::Element;
use rayon::prelude::*;

use super::Spline;
use super::dual::{Dual, Real};

/// A float read as f64 and written back.
pub(super) trait Float: Element + Copy + Send + Sync {
    fn get(self) -> f64;
    fn put(v: f64) -> Self;
}

impl Float for f32 {
    fn get(self) -> f64 {
        f64::from(self)
    }
    fn put(v: f64) -> Self {
        v as f32
    }
}

impl Float for f64 {
    fn get(self) -> f64 {
        self
    }
    fn put(v: f64) -> Self {
        v
    }
}

/// The spline's constants for one call, over `d` features.
pub(super) struct Pass {
    k: usize,
    d: usize,
    bound: f64,
    min_width: f64,
    min_height: f64,
    min_derivative: f64,
    /// The softplus shift that makes a zero raw derivative give 1.
    shift: f64,
    inverse: bool,
}

/// Batch rows per parallel task.
const ROWS: usize = 64;

impl Pass {
    pub(super) fn new(spline: &Spline, inverse: bool, d: usize) -> Self {
        let min_derivative = spline.min_derivative;
        Self {
            k: spline.bins,
            d,
            bound: spline.bound,
            min_width: spline.min_bin_width,
            min_height: spline.min_bin_height,
            min_derivative,
            shift: ((1.0 - min_derivative).exp() - 1.0).ln(),
            inverse,
        }
    }

    fn params(&self) -> usize {
        3 * self.k - 1
    }

    /// Values then log-derivatives, each `[batch, d]`.
    pub(super) fn forward<E: Float>(&self, x: &[E], p: &[E]) -> Vec<E> {
        let (n, d, row) = (x.len(), self.d, self.params() * self.d);
        let mut out = vec![E::put(0.0); 2 * n];
        let (values, log_dets) = out.split_at_mut(n);
        values
            .par_chunks_mut(ROWS * d)
            .zip(log_dets.par_chunks_mut(ROWS * d))
            .zip(x.par_chunks(ROWS * d).zip(p.par_chunks(ROWS * row)))
            .for_each(|((values, log_dets), (x, p))| {
                let mut scratch = Scratch::new(self.k);
                for (r, (x, p)) in x.chunks(d).zip(p.chunks(row)).enumerate() {
                    for (i, &v) in x.iter().enumerate() {
                        let v = v.get();
                        let (y, ld) = if v.abs() <= self.bound {
                            let knots = self.knots(p, i, v, &mut scratch);
                            rational_quadratic(knots.args(v), self.inverse)
                        } else {
                            (v, 0.0)
                        };
                        values[r * d + i] = E::put(y);
                        log_dets[r * d + i] = E::put(ld);
                    }
                }
            });
        out
    }

    /// The gradients by the input and by the raw parameters for the stacked output's
    /// gradient `g` (values' then log-derivatives').
    pub(super) fn backward<E: Float>(&self, x: &[E], p: &[E], g: &[E]) -> (Vec<E>, Vec<E>) {
        let (n, d, row) = (x.len(), self.d, self.params() * self.d);
        let (g_values, g_log_dets) = g.split_at(n);
        let mut gx = vec![E::put(0.0); n];
        let mut gp = vec![E::put(0.0); p.len()];
        gx.par_chunks_mut(ROWS * d)
            .zip(gp.par_chunks_mut(ROWS * row))
            .zip(x.par_chunks(ROWS * d).zip(p.par_chunks(ROWS * row)))
            .zip(
                g_values
                    .par_chunks(ROWS * d)
                    .zip(g_log_dets.par_chunks(ROWS * d)),
            )
            .for_each(|(((gx, gp), (x, p)), (gv, gl))| {
                let mut scratch = Scratch::new(self.k);
                for (r, (x, p)) in x.chunks(d).zip(p.chunks(row)).enumerate() {
                    let gp = &mut gp[r * row..(r + 1) * row];
                    for (i, &v) in x.iter().enumerate() {
                        let (v, gv, gl) = (v.get(), gv[r * d + i].get(), gl[r * d + i].get());
                        if v.abs() > self.bound || v.is_nan() {
                            gx[r * d + i] = E::put(gv);
                            continue;
                        }
                        let knots = self.knots(p, i, v, &mut scratch);
                        let (y, ld) = rational_quadratic(knots.seeded(v), self.inverse);
                        let local: [f64; 7] = std::array::from_fn(|j| gv * y.d[j] + gl * ld.d[j]);
                        gx[r * d + i] = E::put(local[0]);
                        self.carry_back(&local, &knots, &scratch, p, gp, i);
                    }
                }
            });
        (gx, gp)
    }

    /// Value `v`'s bin at feature `i` of a row's raw parameters `p` (`[3K - 1, d]`); leaves
    /// the softmaxes in `scratch` for the backward pass.
    fn knots<E: Float>(&self, p: &[E], i: usize, v: f64, s: &mut Scratch) -> Bin {
        let (k, d) = (self.k, self.d);
        let raw = |j: usize| p[j * d + i].get();
        softmax(raw, &mut s.widths);
        softmax(|j| raw(k + j), &mut s.heights);
        knots(&s.widths, self.min_width, self.bound, &mut s.knots_x);
        knots(&s.heights, self.min_height, self.bound, &mut s.knots_y);
        let search = if self.inverse { &s.knots_y } else { &s.knots_x };
        let bin = (1..k).filter(|&j| v >= search[j]).count();
        let derivative = |j: usize| {
            if j == 0 || j == k {
                1.0
            } else {
                self.min_derivative + softplus(raw(2 * k + j - 1) + self.shift)
            }
        };
        Bin {
            bin,
            x: [s.knots_x[bin], s.knots_x[bin + 1]],
            y: [s.knots_y[bin], s.knots_y[bin + 1]],
            derivative: [derivative(bin), derivative(bin + 1)],
        }
    }

    /// Adds the raw parameters' gradients at feature `i` to `gp` from the gradients `local` by
    /// (value, x knots, y knots, derivatives) of [`Bin::seeded`].
    fn carry_back<E: Float>(
        &self,
        local: &[f64; 7],
        bin: &Bin,
        s: &Scratch,
        p: &[E],
        gp: &mut [E],
        i: usize,
    ) {
        let (k, d, b) = (self.k, self.d, bin.bin);
        let interior = |j: usize| j >= 1 && j < k;
        let mut add = |j: usize, g: f64| gp[j * d + i] = E::put(gp[j * d + i].get() + g);
        for (offset, sw, min, g_knots) in [
            (0, &s.widths, self.min_width, [local[1], local[2]]),
            (k, &s.heights, self.min_height, [local[3], local[4]]),
        ] {
            // Knot j is -bound + 2 bound (sum of the first j fractions).
            let scale = 2.0 * self.bound * (1.0 - min * k as f64);
            let g_fraction = |m: usize| {
                [b, b + 1]
                    .into_iter()
                    .zip(g_knots)
                    .filter(|&(j, _)| interior(j) && j > m)
                    .map(|(_, g)| g)
                    .sum::<f64>()
                    * scale
            };
            let dot: f64 = sw.iter().enumerate().map(|(m, w)| w * g_fraction(m)).sum();
            for (m, w) in sw.iter().enumerate() {
                add(offset + m, w * (g_fraction(m) - dot));
            }
        }
        for (j, g) in [(b, local[5]), (b + 1, local[6])] {
            if interior(j) {
                let t = p[(2 * k + j - 1) * d + i].get() + self.shift;
                add(2 * k + j - 1, g * sigmoid(t));
            }
        }
    }
}

/// One task's buffers: both softmaxes and both knot vectors.
struct Scratch {
    widths: Vec<f64>,
    heights: Vec<f64>,
    knots_x: Vec<f64>,
    knots_y: Vec<f64>,
}

impl Scratch {
    fn new(k: usize) -> Self {
        Self {
            widths: vec![0.0; k],
            heights: vec![0.0; k],
            knots_x: vec![0.0; k + 1],
            knots_y: vec![0.0; k + 1],
        }
    }
}

/// A value's bin: its index, the knots at its ends and the derivatives there.
struct Bin {
    bin: usize,
    x: [f64; 2],
    y: [f64; 2],
    derivative: [f64; 2],
}

impl Bin {
    fn args(&self, v: f64) -> [f64; 7] {
        let [x0, x1] = self.x;
        let [y0, y1] = self.y;
        let [d0, d1] = self.derivative;
        [v, x0, x1, y0, y1, d0, d1]
    }

    fn seeded(&self, v: f64) -> [Dual; 7] {
        let args = self.args(v);
        std::array::from_fn(|j| Dual::seed(args[j], j))
    }
}

fn softmax(raw: impl Fn(usize) -> f64, out: &mut [f64]) {
    let max = (0..out.len()).map(&raw).fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (j, o) in out.iter_mut().enumerate() {
        *o = (raw(j) - max).exp();
        sum += *o;
    }
    out.iter_mut().for_each(|o| *o /= sum);
}

/// Knots from `-bound` to `bound` whose bins are the fractions `min + (1 - K min) softmax`.
fn knots(softmax: &[f64], min: f64, bound: f64, out: &mut [f64]) {
    let k = softmax.len();
    let scale = 1.0 - min * k as f64;
    let mut sum = 0.0;
    out[0] = -bound;
    for j in 1..k {
        sum += min + scale * softmax[j - 1];
        out[j] = sum * 2.0 * bound - bound;
    }
    out[k] = bound;
}

fn softplus(t: f64) -> f64 {
    if t > 30.0 { t } else { t.exp().ln_1p() }
}

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

/// The rational quadratic and its log-derivative (dy/dx; negated for the inverse) at `v` in the
/// bin `[x0, x1] -> [y0, y1]` with derivatives `d0`, `d1` at its ends; `args` is
/// `[v, x0, x1, y0, y1, d0, d1]`. The clamps are those of [`Spline`]'s burn form.
fn rational_quadratic<R: Real>(args: [R; 7], inverse: bool) -> (R, R) {
    let [v, x0, x1, y0, y1, d0, d1] = args;
    let (w, h) = (x1 - x0, y1 - y0);
    let s = h / w;
    let curvature = d1 + d0 - s * 2.0;
    let (out, theta) = if inverse {
        let delta = v - y0;
        let a = h * (s - d0) + delta * curvature;
        let b = h * d0 - delta * curvature;
        let c = -(s * delta);
        let disc = (b * b - a * c * 4.0).at_least(f32::MIN_POSITIVE as f64);
        let theta = (c * 2.0 / (-b - disc.sqrt())).within(0.0, 1.0);
        (x0 + theta * w, theta)
    } else {
        let theta = ((v - x0) / w).within(0.0, 1.0);
        let mix = theta * (-theta + 1.0);
        let num = h * (s * theta * theta + d0 * mix);
        (y0 + num / (s + curvature * mix), theta)
    };
    let one_minus = -theta + 1.0;
    let mix = theta * one_minus;
    let den = s + curvature * mix;
    let slope = s * s * (d1 * theta * theta + s * 2.0 * mix + d0 * one_minus * one_minus);
    let log_det = slope.ln() - den.ln() * 2.0;
    (out, if inverse { -log_det } else { log_det })
}
