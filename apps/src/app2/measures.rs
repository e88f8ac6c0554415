//! What one image's outlier scores are made of, higher always more anomalous. Likelihood alone
//! fails on images simpler than the training data (Nalisnick et al. 2019): they get fewer
//! bits/dim. The other scores correct for that in different ways, and the run recommends the
//! one that separates best where outliers are known.

use std::ops::Range;

use burn::prelude::*;
use flowcore::Flow;
use flowdata::images::{ImageSpec, deflate_bits, png_bits, to_unit};
use serde::{Deserialize, Serialize};

use crate::shared::images::bits_per_dim_8bit;
use crate::shared::infer::{rows, to_vec};

/// Rows per pass of the flow.
const CHUNK: usize = 512;

/// `0.5 ln(2 pi)`: the standard normal's negative log-density at 0, nats.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// The scores every model gives, in CSV order:
/// - `bits_per_dim`: `-log2 p(x)` per dimension of the 8-bit image;
/// - `complexity_corrected`: bits/dim minus the PNG size in bits/dim (Serrà et al. 2020);
/// - `typicality`: |bits/dim - the reference images' mean| (a typicality test);
/// - `complexity_deflate`: bits/dim minus the DEFLATE size of the raw bytes in bits/dim;
/// - `latent_norm`: |(|z|^2 - D)| / sqrt(2 D), how far |z| lies from where the chi
///   distribution of a standard normal puts it, on either side.
pub const COMMON_SCORES: [&str; 5] = [
    "bits_per_dim",
    "complexity_corrected",
    "typicality",
    "complexity_deflate",
    "latent_norm",
];

/// The index of `typicality` in [`COMMON_SCORES`].
pub const TYPICALITY: usize = 2;

/// A multiscale model's extra score: the last level's latent NLL per dimension over the
/// first level's. The first levels model local pixel statistics that generalise to any image;
/// the last what is specific to the training data (Schirrmeister et al. 2020).
pub const LEVEL_RATIO: &str = "level_ratio";

/// The background model's score (Ren et al. 2019): bits/dim under the model minus bits/dim
/// under a model of the same images seen at every size, angle and side (see
/// [`super::background`]).
pub const LIKELIHOOD_RATIO: &str = "likelihood_ratio";

/// The flows that score: the model, and the background model when the run has one.
#[derive(Clone, Copy)]
pub struct Models<'a> {
    /// The trained model.
    pub flow: &'a Flow,
    /// The background model of the likelihood ratio.
    pub background: Option<&'a Flow>,
}

/// How a model's images are measured: the image size, the reference's typical bits/dim and,
/// for a multiscale Glow, where each level's latents lie in `z`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scorer {
    /// Image size the model takes.
    pub spec: ImageSpec,
    /// Mean bits/dim of the reference images, for `typicality`.
    pub typical_bits_per_dim: f64,
    /// Each level's latents in `z`, the first (finest) level first; empty for one level.
    #[serde(default)]
    pub levels: Vec<Range<usize>>,
    /// Whether a background model scores too.
    #[serde(default)]
    pub background: bool,
}

/// One image measured: its bits/dim, its latent NLL per dimension by level and its scores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measured {
    /// Bits per dimension.
    pub bits_per_dim: f64,
    /// `-log N(z_l)` per dimension of each level's latents `z_l`, nats; empty for one level.
    pub level_nll: Vec<f64>,
    /// Scores in the order of [`Scorer::names`].
    pub scores: Vec<f64>,
}

impl Scorer {
    /// The score names, in CSV order.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = COMMON_SCORES.iter().map(|s| s.to_string()).collect();
        if self.levels.len() > 1 {
            names.push(LEVEL_RATIO.to_string());
        }
        if self.background {
            names.push(LIKELIHOOD_RATIO.to_string());
        }
        names
    }

    /// Bits/dim and latents of every image of `pixels` under the model (and bits/dim under the
    /// background model, which must be given when [`Self::background`] is set), one pass each.
    pub fn measure(&self, models: Models, pixels: &[u8], device: &Device) -> Vec<Measured> {
        let Models { flow, background } = models;
        assert_eq!(
            self.background,
            background.is_some(),
            "a background model exactly when the scorer has one"
        );
        let dim = self.spec.len();
        let n = pixels.len() / dim;
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(CHUNK) {
            let m = CHUNK.min(n - start);
            let chunk = &pixels[start * dim..(start + m) * dim];
            let x = rows(&to_unit(chunk), dim, device);
            let log_p_background =
                background.map(|b| to_vec(b.log_prob(x.clone(), None).into_data()));
            let (z, logdet) = flow.forward(x, None);
            let log_p = to_vec((flow.base_log_prob(z.clone()) + logdet).into_data());
            let z = to_vec(z.into_data());
            for i in 0..m {
                let bpd = bits_per_dim_8bit(f64::from(log_p[i]), dim);
                let mut measured = self.measured(
                    bpd,
                    &z[i * dim..(i + 1) * dim],
                    &chunk[i * dim..(i + 1) * dim],
                );
                if let Some(lp) = &log_p_background {
                    measured
                        .scores
                        .push(bpd - bits_per_dim_8bit(f64::from(lp[i]), dim));
                }
                out.push(measured);
            }
        }
        out
    }

    /// One image's measures from its bits/dim, latent and pixels, all but the background's.
    pub fn measured(&self, bpd: f64, z: &[f32], pixels: &[u8]) -> Measured {
        let d = self.spec.len() as f64;
        let png = png_bits(pixels, self.spec) as f64 / d;
        let deflate = deflate_bits(pixels, self.spec) as f64 / d;
        let norm_sq: f64 = z.iter().map(|&v| f64::from(v).powi(2)).sum();
        let level_nll: Vec<f64> = if self.levels.len() > 1 {
            self.levels
                .iter()
                .map(|r| {
                    let part = &z[r.clone()];
                    let sq: f64 = part.iter().map(|&v| f64::from(v).powi(2)).sum();
                    0.5 * sq / part.len().max(1) as f64 + HALF_LN_2PI
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut scores = vec![
            bpd,
            bpd - png,
            (bpd - self.typical_bits_per_dim).abs(),
            bpd - deflate,
            (norm_sq - d).abs() / (2.0 * d).sqrt(),
        ];
        if let (Some(first), Some(last)) = (level_nll.first(), level_nll.last())
            && level_nll.len() > 1
        {
            scores.push(last / first);
        }
        Measured {
            bits_per_dim: bpd,
            level_nll,
            scores,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer(levels: Vec<Range<usize>>) -> Scorer {
        Scorer {
            spec: ImageSpec {
                channels: 1,
                height: 4,
                width: 4,
            },
            typical_bits_per_dim: 3.0,
            levels,
            background: false,
        }
    }

    #[test]
    fn scores_of_known_latents() {
        let pixels = [7u8; 16];
        // |z|^2 = 16 = D: the norm sits where the chi distribution puts it.
        let one = scorer(Vec::new()).measured(2.5, &[1.0; 16], &pixels);
        assert_eq!(one.scores.len(), 5);
        assert_eq!(one.scores[0], 2.5);
        assert_eq!(one.scores[2], 0.5);
        assert!(one.scores[4].abs() < 1e-12);
        // A constant image compresses to far below the model's bits: both corrections are
        // below the bits/dim and the raw DEFLATE stream is smaller than a PNG file.
        assert!(one.scores[1] < 2.5 && one.scores[3] < 2.5);
        assert!(one.scores[3] > one.scores[1]);
        assert!(one.level_nll.is_empty());

        // Two levels: the first twelve latents 0, the last four 2.
        let mut z = [0.0f32; 16];
        z[..4].iter_mut().for_each(|v| *v = 2.0);
        let two = scorer(vec![4..16, 0..4]).measured(2.5, &z, &pixels);
        assert_eq!(two.scores.len(), 6);
        let (first, last) = (HALF_LN_2PI, 2.0 + HALF_LN_2PI);
        assert!((two.level_nll[0] - first).abs() < 1e-12);
        assert!((two.level_nll[1] - last).abs() < 1e-12);
        assert!((two.scores[5] - last / first).abs() < 1e-12);
        // |z|^2 = 16 again.
        assert!(two.scores[4].abs() < 1e-12);
        assert_eq!(scorer(vec![4..16, 0..4]).names()[5], LEVEL_RATIO);
    }
}
