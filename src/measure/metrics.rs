//! Detection figures from labelled scores: ROC-AUC, average precision, rates at a threshold and
//! their Wilson intervals. A row counts as fake when its score is at or above the threshold, as
//! everywhere else in the scanner.

use serde::{Deserialize, Serialize};

/// The normal quantile for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A proportion `k / n` with its 95% Wilson score interval. The Wilson interval rather than the
/// normal approximation, because the rates that matter here (false positives on real photos) are
/// near 0, where the normal interval collapses to a width of zero and says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    pub k: u64,
    pub n: u64,
    /// `None` when `n` is 0.
    pub rate: Option<f64>,
    pub ci95: Option<[f64; 2]>,
}

impl Proportion {
    pub fn new(k: u64, n: u64) -> Self {
        Proportion {
            k,
            n,
            rate: (n > 0).then(|| k as f64 / n as f64),
            ci95: wilson(k, n),
        }
    }
}

/// The 95% Wilson score interval of `k` successes in `n` trials; `None` when `n` is 0.
pub fn wilson(k: u64, n: u64) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some([(centre - half).max(0.0), (centre + half).min(1.0)])
}

/// The figures at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AtThreshold {
    pub threshold: f32,
    /// Correct labels over all rows.
    pub accuracy: Proportion,
    /// Fakes called fake over fakes.
    pub tpr: Proportion,
    /// Reals called fake over reals.
    pub fpr: Proportion,
}

pub fn at_threshold(real: &[f32], fake: &[f32], threshold: f32) -> AtThreshold {
    let fake_hits = fake.iter().filter(|&&s| s >= threshold).count() as u64;
    let real_hits = real.iter().filter(|&&s| s >= threshold).count() as u64;
    let (n_real, n_fake) = (real.len() as u64, fake.len() as u64);
    AtThreshold {
        threshold,
        accuracy: Proportion::new(fake_hits + (n_real - real_hits), n_real + n_fake),
        tpr: Proportion::new(fake_hits, n_fake),
        fpr: Proportion::new(real_hits, n_real),
    }
}

/// The area under the ROC curve: the probability that a random fake scores above a random
/// real, ties counting one half (the Mann-Whitney statistic). `None` without both classes.
pub fn roc_auc(real: &[f32], fake: &[f32]) -> Option<f64> {
    if real.is_empty() || fake.is_empty() {
        return None;
    }
    let mut real = real.to_vec();
    real.sort_by(f32::total_cmp);
    // For each fake: reals strictly below it, and half of those equal to it.
    let mut wins = 0.0f64;
    for &s in fake {
        let below = real.partition_point(|&r| r < s);
        let not_above = real.partition_point(|&r| r <= s);
        wins += below as f64 + 0.5 * (not_above - below) as f64;
    }
    Some(wins / (real.len() as f64 * fake.len() as f64))
}

/// Average precision with fake as the positive class: the sum over distinct score thresholds,
/// from the highest down, of the precision at each times the recall it adds (rows with tied
/// scores enter together). The same definition as scikit-learn's `average_precision_score`, so
/// the figures compare with published ones. `None` without fakes.
pub fn average_precision(real: &[f32], fake: &[f32]) -> Option<f64> {
    if fake.is_empty() {
        return None;
    }
    let mut rows: Vec<(f32, bool)> = real
        .iter()
        .map(|&s| (s, false))
        .chain(fake.iter().map(|&s| (s, true)))
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n_fake = fake.len() as f64;
    let (mut tp, mut seen, mut ap, mut recall) = (0usize, 0usize, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < rows.len() {
        let score = rows[i].0;
        while i < rows.len() && rows[i].0 == score {
            tp += usize::from(rows[i].1);
            seen += 1;
            i += 1;
        }
        let r = tp as f64 / n_fake;
        ap += (r - recall) * (tp as f64 / seen as f64);
        recall = r;
    }
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_textbook_values() {
        // 0 of 16: the upper bound of the Wilson interval is z²/(n+z²).
        let [lo, hi] = wilson(0, 16).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - Z95 * Z95 / (16.0 + Z95 * Z95)).abs() < 1e-12, "{hi}");
        // 8 of 10 (Newcombe 1998's example values: 0.4902, 0.9433).
        let [lo, hi] = wilson(8, 10).unwrap();
        assert!(
            (lo - 0.4902).abs() < 5e-5 && (hi - 0.9433).abs() < 5e-5,
            "{lo} {hi}"
        );
        assert!(wilson(0, 0).is_none());
    }

    #[test]
    fn auc_and_ap_on_a_small_hand_checked_case() {
        let real = [0.1, 0.4, 0.35];
        let fake = [0.8, 0.4, 0.2];
        // Pairs (fake, real) won: 0.8 beats 3; 0.4 beats 2 and ties 1; 0.2 beats 1. (3+2.5+1)/9.
        assert!((roc_auc(&real, &fake).unwrap() - 6.5 / 9.0).abs() < 1e-12);
        // Descending: 0.8 F (P 1, R 1/3); 0.4 F+R together (P 2/3, R 2/3); 0.35 R (no recall
        // added); 0.2 F (P 3/5, R 1); AP = 1/3·1 + 1/3·2/3 + 1/3·3/5.
        let ap = average_precision(&real, &fake).unwrap();
        assert!((ap - (1.0 + 2.0 / 3.0 + 0.6) / 3.0).abs() < 1e-12, "{ap}");
        let t = at_threshold(&real, &fake, 0.4);
        assert_eq!((t.tpr.k, t.fpr.k, t.accuracy.k), (2, 1, 4));
        assert!(roc_auc(&real, &[]).is_none());
    }
}
