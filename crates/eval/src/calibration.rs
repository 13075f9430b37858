//! Calibration of a probability map against the truth: reliability bins and
//! the expected calibration error (ECE), from an exact histogram of the 256
//! probability values a wsiseg probability map holds (P = value / 255).

/// One reliability bin: pixels whose P falls in `[lo, hi)` (the last bin
/// includes 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    /// Lower edge of P.
    pub lo: f64,
    /// Upper edge of P.
    pub hi: f64,
    /// Pixels in the bin.
    pub pixels: u64,
    /// Their mean P (the confidence).
    pub mean_p: f64,
    /// The share of them that are truth tumor (the observed frequency).
    pub tumor_fraction: f64,
}

/// Reliability bins and the summary errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Equal-width bins of P.
    pub bins: Vec<Bin>,
    /// Σ (pixels in bin / all pixels) × |tumor fraction − mean P|.
    pub ece: f64,
    /// Mean of (P − truth)² over all pixels (truth 1 for tumor, else 0).
    pub brier: f64,
}

/// Streams (probability row, truth row) pairs.
#[derive(Debug, Clone)]
pub struct CalibrationCounter {
    pixels: [u64; 256],
    tumor: [u64; 256],
}

impl Default for CalibrationCounter {
    fn default() -> Self {
        Self {
            pixels: [0; 256],
            tumor: [0; 256],
        }
    }
}

impl CalibrationCounter {
    /// Adds one row: P×255 and the truth labels (0 is background).
    pub fn push(&mut self, prob: &[u8], truth: &[u8]) {
        for (&p, &t) in prob.iter().zip(truth) {
            self.pixels[p as usize] += 1;
            self.tumor[p as usize] += u64::from(t != 0);
        }
    }

    /// The reliability diagram in `bins` bins, ECE and Brier score; `None`
    /// when no pixel was seen.
    pub fn finish(&self, bins: usize) -> Option<Calibration> {
        let total: u64 = self.pixels.iter().sum();
        if total == 0 || bins == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(bins);
        let mut ece = 0.0;
        for b in 0..bins {
            let (lo, hi) = (b as f64 / bins as f64, (b + 1) as f64 / bins as f64);
            let (mut n, mut tumor, mut sum_p) = (0u64, 0u64, 0.0);
            for v in 0..256 {
                let p = v as f64 / 255.0;
                let inside = p >= lo && (p < hi || (b + 1 == bins && p <= hi));
                if inside {
                    n += self.pixels[v];
                    tumor += self.tumor[v];
                    sum_p += p * self.pixels[v] as f64;
                }
            }
            let (mean_p, tumor_fraction) = if n == 0 {
                (0.0, 0.0)
            } else {
                (sum_p / n as f64, tumor as f64 / n as f64)
            };
            ece += n as f64 / total as f64 * (tumor_fraction - mean_p).abs();
            out.push(Bin {
                lo,
                hi,
                pixels: n,
                mean_p,
                tumor_fraction,
            });
        }
        let brier = (0..256)
            .map(|v| {
                let p = v as f64 / 255.0;
                let (n, t) = (self.pixels[v] as f64, self.tumor[v] as f64);
                t * (1.0 - p) * (1.0 - p) + (n - t) * p * p
            })
            .sum::<f64>()
            / total as f64;
        Some(Calibration {
            bins: out,
            ece,
            brier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where P is v/255, exactly that share of pixels is tumor: ECE ≈ 0
    /// (within the 1/255 steps); always saying 0.9 where half is tumor:
    /// ECE 0.4.
    #[test]
    fn a_calibrated_map_has_no_error_and_an_overconfident_one_has() {
        let mut c = CalibrationCounter::default();
        for v in 0..=255u8 {
            let prob = vec![v; 255];
            let truth: Vec<u8> = (0..255).map(|i| u8::from(i < v)).collect();
            c.push(&prob, &truth);
        }
        let cal = c.finish(10).unwrap();
        assert!(cal.ece < 1e-9, "{}", cal.ece);
        assert_eq!(cal.bins.iter().map(|b| b.pixels).sum::<u64>(), 256 * 255);
        let mut c = CalibrationCounter::default();
        c.push(&[230; 100], &[[0u8; 50], [1u8; 50]].concat());
        let cal = c.finish(10).unwrap();
        assert!(
            (cal.ece - (230.0 / 255.0 - 0.5)).abs() < 1e-12,
            "{}",
            cal.ece
        );
        assert!(CalibrationCounter::default().finish(10).is_none());
    }
}
