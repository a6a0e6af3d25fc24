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
    /// Fakes called fake over all called fake.
    pub precision: Proportion,
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
        precision: Proportion::new(fake_hits, fake_hits + real_hits),
    }
}

/// Counts of scores in equal-width bins over [0, 1] (a score of exactly 1 falls in the last).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
}

impl Histogram {
    pub const BINS: usize = 20;

    pub fn new() -> Self {
        Histogram {
            counts: vec![0; Self::BINS],
        }
    }

    pub fn of(scores: &[f32]) -> Self {
        let mut h = Self::new();
        scores.iter().for_each(|&s| h.add(s));
        h
    }

    pub fn add(&mut self, score: f32) {
        let bins = self.counts.len();
        let i = ((score.clamp(0.0, 1.0) * bins as f32) as usize).min(bins - 1);
        self.counts[i] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// A curve for a chart, as (x, y) points in drawing order.
pub type Curve = Vec<(f64, f64)>;

/// Charts need no more points than this; denser curves keep every n-th point and both ends.
const CURVE_POINTS: usize = 500;

/// The ROC curve, (FPR, TPR) at every distinct score from the highest down, from (0, 0) to
/// (1, 1). Empty without both classes.
pub fn roc_curve(real: &[f32], fake: &[f32]) -> Curve {
    if real.is_empty() || fake.is_empty() {
        return Vec::new();
    }
    let (n_real, n_fake) = (real.len() as f64, fake.len() as f64);
    let mut curve = vec![(0.0, 0.0)];
    curve.extend(
        steps(real, fake)
            .into_iter()
            .map(|(tp, fp)| (fp as f64 / n_real, tp as f64 / n_fake)),
    );
    thin(curve)
}

/// The precision-recall curve, (recall, precision) at every distinct score from the highest
/// down. Empty without fakes.
pub fn pr_curve(real: &[f32], fake: &[f32]) -> Curve {
    if fake.is_empty() {
        return Vec::new();
    }
    let n_fake = fake.len() as f64;
    let curve = steps(real, fake)
        .into_iter()
        .map(|(tp, fp)| (tp as f64 / n_fake, tp as f64 / (tp + fp) as f64))
        .collect();
    thin(curve)
}

/// (fakes, reals) at or above each distinct score, from the highest score down.
fn steps(real: &[f32], fake: &[f32]) -> Vec<(usize, usize)> {
    let mut rows: Vec<(f32, bool)> = real
        .iter()
        .map(|&s| (s, false))
        .chain(fake.iter().map(|&s| (s, true)))
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp, mut out, mut i) = (0, 0, Vec::new(), 0);
    while i < rows.len() {
        let score = rows[i].0;
        while i < rows.len() && rows[i].0 == score {
            if rows[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push((tp, fp));
    }
    out
}

fn thin(curve: Curve) -> Curve {
    if curve.len() <= CURVE_POINTS {
        return curve;
    }
    let step = curve.len().div_ceil(CURVE_POINTS);
    let last = curve[curve.len() - 1];
    let mut out: Curve = curve.into_iter().step_by(step).collect();
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
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
    let n_fake = fake.len() as f64;
    let (mut ap, mut recall) = (0.0f64, 0.0f64);
    for (tp, fp) in steps(real, fake) {
        let r = tp as f64 / n_fake;
        ap += (r - recall) * (tp as f64 / (tp + fp) as f64);
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
        assert_eq!((t.precision.k, t.precision.n), (2, 3));
        assert!(roc_auc(&real, &[]).is_none());
    }

    #[test]
    fn curves_step_through_each_distinct_score() {
        let real = [0.1, 0.4, 0.35];
        let fake = [0.8, 0.4, 0.2];
        let third = 1.0 / 3.0;
        // 0.8: 1 F; 0.4: 2 F 1 R; 0.35: 2 F 2 R; 0.2: 3 F 2 R; 0.1: 3 F 3 R.
        assert_eq!(
            roc_curve(&real, &fake),
            vec![
                (0.0, 0.0),
                (0.0, third),
                (third, 2.0 * third),
                (2.0 * third, 2.0 * third),
                (2.0 * third, 1.0),
                (1.0, 1.0)
            ]
        );
        let pr = pr_curve(&real, &fake);
        assert_eq!(pr[0], (third, 1.0));
        assert_eq!(pr[1], (2.0 * third, 2.0 / 3.0));
        assert_eq!(pr[4], (1.0, 0.5));
        assert!(roc_curve(&[], &fake).is_empty());
    }

    #[test]
    fn long_curves_are_thinned_but_keep_their_ends() {
        let real: Vec<f32> = (0..3000).map(|i| i as f32 / 3000.0).collect();
        let fake: Vec<f32> = (0..3000).map(|i| 0.5 + i as f32 / 6000.0).collect();
        let roc = roc_curve(&real, &fake);
        assert!(roc.len() <= CURVE_POINTS + 1, "{}", roc.len());
        assert_eq!((roc[0], *roc.last().unwrap()), ((0.0, 0.0), (1.0, 1.0)));
    }

    #[test]
    fn histogram_bins_cover_zero_to_one() {
        let h = Histogram::of(&[0.0, 0.049, 0.05, 0.99, 1.0, 1.5, -0.1]);
        assert_eq!(h.counts.len(), Histogram::BINS);
        assert_eq!((h.counts[0], h.counts[1], h.counts[19]), (3, 1, 3));
        assert_eq!(h.total(), 7);
    }
}
