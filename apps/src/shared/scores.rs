//! Outlier-score statistics: quantile thresholds, ROC curves and AUROC (higher score = more
//! anomalous; label `true` = outlier).

/// The `q` quantile (0..=1) of `values`, linear between order statistics.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Area under the ROC curve: the probability that a random outlier scores above a random
/// normal point, ties counting half (the Mann-Whitney statistic). `None` without both kinds.
pub fn auroc(scores: &[f64], outlier: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .copied()
        .zip(outlier.iter().copied())
        .collect();
    let n_pos = pairs.iter().filter(|p| p.1).count();
    let n_neg = pairs.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += avg_rank * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// ROC curve points `(false positive rate, true positive rate)`, from (0, 0) to (1, 1).
pub fn roc_curve(scores: &[f64], outlier: &[bool]) -> Vec<(f64, f64)> {
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .copied()
        .zip(outlier.iter().copied())
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n_pos = pairs.iter().filter(|p| p.1).count().max(1) as f64;
    let n_neg = pairs.iter().filter(|p| !p.1).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < pairs.len() {
        let s = pairs[i].0;
        while i < pairs.len() && pairs[i].0 == s {
            if pairs[i].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        out.push((fp / n_neg, tp / n_pos));
    }
    out
}

/// The false positive rate at which the true positive rate first reaches `tpr` (FPR at 95%
/// TPR, with `tpr = 0.95`), from the points of [`roc_curve`]; `None` without both classes.
pub fn fpr_at_tpr(scores: &[f64], outlier: &[bool], tpr: f64) -> Option<f64> {
    let n_pos = outlier.iter().filter(|o| **o).count();
    if n_pos == 0 || n_pos == outlier.len() {
        return None;
    }
    roc_curve(scores, outlier)
        .into_iter()
        .find(|&(_, t)| t >= tpr - 1e-12)
        .map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_of_known_orderings() {
        let labels = [false, false, true, true];
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(auroc(&[0.5, 0.5, 0.5, 0.5], &labels), Some(0.5));
        // One of the four (outlier, normal) pairs is misordered.
        assert_eq!(auroc(&[0.1, 0.6, 0.5, 0.9], &labels), Some(0.75));
        assert_eq!(auroc(&[0.1, 0.2], &[false, false]), None);
    }

    #[test]
    fn roc_ends_at_the_corners_and_its_area_is_the_auroc() {
        let scores = [0.1, 0.6, 0.5, 0.9, 0.3, 0.7];
        let labels = [false, false, true, true, false, true];
        let roc = roc_curve(&scores, &labels);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
        let area: f64 = roc
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        assert!((area - auroc(&scores, &labels).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn fpr_at_95_tpr_of_known_orderings() {
        // Outliers 1.0 and 0.4 among normals 0.5, 0.3, 0.2: the second outlier is found only
        // after one normal (0.5) is flagged, at FPR 1/3.
        let scores = [1.0, 0.5, 0.4, 0.3, 0.2];
        let outlier = [true, false, true, false, false];
        assert_eq!(fpr_at_tpr(&scores, &outlier, 0.95), Some(1.0 / 3.0));
        assert_eq!(fpr_at_tpr(&scores, &outlier, 0.5), Some(0.0));
        let separated = [true, true, false, false, false];
        assert_eq!(fpr_at_tpr(&scores, &separated, 0.95), Some(0.0));
        assert_eq!(fpr_at_tpr(&scores, &[false; 5], 0.95), None);
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert_eq!(quantile(&v, 0.5), 2.5);
    }
}
