//! Whether left-right mirroring keeps images in their own distribution: the test behind
//! `flip = "auto"`. A mirrored face is as near some training face as the face itself is; a
//! mirrored sneaker (they all point one way in Fashion-MNIST) or digit is not, and training on
//! such mirrors would teach the model to accept exactly the images it should flag.

use rayon::prelude::*;

use super::ImageSet;

/// How far mirrored images lie from the set, against how far the images themselves lie.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MirrorCheck {
    /// Images that were mirrored and compared.
    pub probes: usize,
    /// The median over probes of `d(mirror(x), set) / d(x, set without x)`, nearest-neighbour
    /// Euclidean distances. Near 1 the set is mirror-symmetric; well above, it is not.
    pub median_ratio: f64,
    /// The same ratio's 75th percentile: a class of one-way images among symmetric ones shows
    /// here before it moves the median.
    pub upper_quartile_ratio: f64,
}

impl MirrorCheck {
    /// The upper-quartile ratio at or below which mirroring counts as keeping the distribution.
    /// On the embedded Fashion-MNIST classes (80 or 500 images each): bags and t-shirts
    /// 1.09-1.14, trousers 1.44-1.58, sneakers 1.87-1.89, the four together 1.41.
    pub const THRESHOLD: f64 = 1.2;

    /// Whether random left-right flips suit the set.
    pub fn flips_suit(&self) -> bool {
        self.probes > 0 && self.upper_quartile_ratio <= Self::THRESHOLD
    }
}

/// `image` mirrored left-right; `C x H x W`, `width` columns.
fn mirror(image: &[u8], width: usize) -> Vec<u8> {
    image
        .chunks(width)
        .flat_map(|row| row.iter().rev().copied())
        .collect()
}

fn squared_distance(a: &[u8], b: &[u8]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| {
            let d = i64::from(*p) - i64::from(*q);
            (d * d) as u64
        })
        .sum()
}

/// Mirror up to `max_probes` images of `set` (evenly spaced, so classes in folder order are
/// all represented) and compare each with its nearest neighbour in the set. Sets of fewer than
/// 3 images give `probes = 0`.
pub fn mirror_check(set: &ImageSet, max_probes: usize) -> MirrorCheck {
    let n = set.len();
    let Some(spec) = set.spec else {
        return MirrorCheck {
            probes: 0,
            median_ratio: f64::NAN,
            upper_quartile_ratio: f64::NAN,
        };
    };
    if n < 3 || max_probes == 0 {
        return MirrorCheck {
            probes: 0,
            median_ratio: f64::NAN,
            upper_quartile_ratio: f64::NAN,
        };
    }
    let probes: Vec<usize> = (0..max_probes.min(n))
        .map(|k| k * n / max_probes.min(n))
        .collect();
    let mut ratios: Vec<f64> = probes
        .par_iter()
        .filter_map(|&i| {
            let image = set.image(i);
            let mirrored = mirror(image, spec.width);
            let (mut own, mut flipped) = (u64::MAX, u64::MAX);
            for j in (0..n).filter(|&j| j != i) {
                let other = set.image(j);
                own = own.min(squared_distance(image, other));
                flipped = flipped.min(squared_distance(&mirrored, other));
            }
            // A duplicate image (distance 0) says nothing about mirroring.
            (own > 0).then(|| (flipped as f64 / own as f64).sqrt())
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        if ratios.is_empty() {
            f64::NAN
        } else {
            ratios[((ratios.len() - 1) as f64 * q).round() as usize]
        }
    };
    MirrorCheck {
        probes: ratios.len(),
        median_ratio: quantile(0.5),
        upper_quartile_ratio: quantile(0.75),
    }
}
