//! Platt scaling: risk = σ(a·s + b) on a raw score s, fitted on the validation window by
//! Newton's method with Platt's smoothed targets. Monotone, so ranking metrics are unchanged.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 { 1.0 / (1.0 + (-z).exp()) } else { z.exp() / (1.0 + z.exp()) }
}

pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

impl Platt {
    pub fn identity() -> Platt {
        Platt { a: 1.0, b: 0.0 }
    }

    pub fn apply(&self, s: f64) -> f64 {
        sigmoid(self.a * s + self.b)
    }

    pub fn fit(s: &[f64], y: &[bool]) -> Platt {
        let pos = y.iter().filter(|v| **v).count() as f64;
        let neg = y.len() as f64 - pos;
        if pos == 0.0 || neg == 0.0 {
            // Nothing to separate: predict the (smoothed) observed rate everywhere.
            let rate = (pos + 1.0) / (pos + neg + 2.0);
            return Platt { a: 0.0, b: logit(rate) };
        }
        // Scores that fall as lateness rises on this window (a regime shift turned a model's
        // relation round) would be inverted by a negative slope, reversing the ranking every
        // risk threshold and order reads: the observed rate instead, a flat and honest risk.
        let flat = Platt { a: 0.0, b: logit((pos + 1.0) / (pos + neg + 2.0)) };
        let hi = (pos + 1.0) / (pos + 2.0);
        let lo = 1.0 / (neg + 2.0);
        let t: Vec<f64> = y.iter().map(|&v| if v { hi } else { lo }).collect();
        let (mut a, mut b) = (1.0, 0.0);
        for _ in 0..100 {
            let (mut g1, mut g2, mut h11, mut h12, mut h22) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
            for (si, ti) in s.iter().zip(&t) {
                let p = sigmoid(a * si + b);
                let d = p - ti;
                let w = (p * (1.0 - p)).max(1e-12);
                g1 += d * si;
                g2 += d;
                h11 += w * si * si;
                h12 += w * si;
                h22 += w;
            }
            let det = h11 * h22 - h12 * h12;
            if det.abs() < 1e-18 {
                break;
            }
            let da = (h22 * g1 - h12 * g2) / det;
            let db = (h11 * g2 - h12 * g1) / det;
            // Damped steps keep Newton stable on separable data.
            let scale = 1.0f64.min(5.0 / (da.abs() + db.abs()).max(1e-12));
            a -= da * scale;
            b -= db * scale;
            if da.abs() + db.abs() < 1e-10 {
                break;
            }
        }
        if a >= 0.0 { Platt { a, b } } else { flat }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_mapping() {
        // Scores whose true probability is σ(2s − 1), with deterministic labels by quantile.
        let mut s = Vec::new();
        let mut y = Vec::new();
        for i in 0..400 {
            let si = (i as f64 / 400.0) * 6.0 - 3.0;
            let p = sigmoid(2.0 * si - 1.0);
            for k in 0..200 {
                s.push(si);
                y.push((k as f64 + 0.5) / 200.0 < p);
            }
        }
        let c = Platt::fit(&s, &y);
        assert!((c.a - 2.0).abs() < 0.15, "{c:?}");
        assert!((c.b + 1.0).abs() < 0.15, "{c:?}");
    }

    /// Regression: scores that anti-correlate with the outcome got a negative slope, which
    /// reversed the ranking the saved model's risks are read in.
    #[test]
    fn scores_that_fall_as_lateness_rises_give_the_observed_rate() {
        let s: Vec<f64> = (0..100).map(|i| i as f64 / 10.0).collect();
        let y: Vec<bool> = (0..100).map(|i| i < 30).collect();
        let c = Platt::fit(&s, &y);
        assert_eq!(c.a, 0.0, "{c:?}");
        assert!((c.apply(0.0) - 31.0 / 102.0).abs() < 1e-9, "{c:?}");
        // Rising scores keep their slope.
        let y: Vec<bool> = (0..100).map(|i| i >= 70).collect();
        assert!(Platt::fit(&s, &y).a > 0.0);
    }

    #[test]
    fn single_class_gives_constant_rate() {
        let c = Platt::fit(&[0.1, 0.2, 0.3], &[false, false, false]);
        assert_eq!(c.a, 0.0);
        assert!(c.apply(5.0) < 0.25);
    }
}
