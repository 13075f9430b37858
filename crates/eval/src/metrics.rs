/// Pixel counts of (predicted, true) label pairs.
#[derive(Debug, Clone)]
pub struct Confusion {
    counts: Box<[[u64; 256]; 256]>,
}

impl Default for Confusion {
    fn default() -> Self {
        Self {
            counts: Box::new([[0; 256]; 256]),
        }
    }
}

/// Scores of one class. A ratio whose denominator is 0 is `None`, except
/// Dice and IoU, which are 1 when both masks lack the class (nothing to find,
/// nothing found).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// 2·TP / (2·TP + FP + FN).
    pub dice: f64,
    /// TP / (TP + FP + FN).
    pub iou: f64,
    /// TP / (TP + FP).
    pub precision: Option<f64>,
    /// TP / (TP + FN).
    pub recall: Option<f64>,
    /// Pixels of the class in the truth.
    pub true_pixels: u64,
    /// Pixels of the class in the prediction.
    pub predicted_pixels: u64,
}

/// 255 in a binary 0/255 mask means class 1.
fn label(v: u8) -> usize {
    if v == 255 {
        1
    } else {
        v as usize
    }
}

impl Confusion {
    /// Counts one pixel (255 counts as class 1).
    pub fn add(&mut self, predicted: u8, truth: u8) {
        self.counts[label(predicted)][label(truth)] += 1;
    }

    /// Builds counts from two equally long label slices.
    pub fn from_labels(predicted: &[u8], truth: &[u8]) -> Self {
        assert_eq!(predicted.len(), truth.len());
        let mut c = Self::default();
        for (&p, &t) in predicted.iter().zip(truth) {
            c.add(p, t);
        }
        c
    }

    /// Adds another slide's counts (pooled, "micro" scores).
    pub fn merge(&mut self, other: &Confusion) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += y;
            }
        }
    }

    /// Tumor (any class but background) errors in pixels: predicted tumor on
    /// truth background (false positive) and truth tumor predicted background
    /// (false negative).
    pub fn tumor_errors(&self) -> (u64, u64) {
        let fp = (1..256).map(|p| self.counts[p][0]).sum();
        let fn_ = (1..256).map(|t| self.counts[0][t]).sum();
        (fp, fn_)
    }

    /// Pixels counted.
    pub fn pixels(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// The largest class index present in either mask (at least 1).
    pub fn max_class(&self) -> usize {
        (1..256)
            .rev()
            .find(|&c| (0..256).any(|o| self.counts[c][o] + self.counts[o][c] > 0))
            .unwrap_or(1)
    }

    /// The scores of `class` against all others.
    pub fn scores(&self, class: usize) -> Scores {
        let tp = self.counts[class][class];
        let predicted: u64 = self.counts[class].iter().sum();
        let truth: u64 = self.counts.iter().map(|row| row[class]).sum();
        let (fp, fn_) = (predicted - tp, truth - tp);
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        Scores {
            dice: ratio(2 * tp, 2 * tp + fp + fn_).unwrap_or(1.0),
            iou: ratio(tp, tp + fp + fn_).unwrap_or(1.0),
            precision: ratio(tp, predicted),
            recall: ratio(tp, truth),
            true_pixels: truth,
            predicted_pixels: predicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_scores() {
        // truth: 1 1 1 1 0 0 0 0 0 0 ; prediction: 1 1 1 0 1 1 0 0 0 0
        // TP 3, FP 2, FN 1 → Dice 6/9, IoU 3/6, precision 3/5, recall 3/4.
        let t = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
        let p = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0];
        let s = Confusion::from_labels(&p, &t).scores(1);
        assert!(close(s.dice, 6.0 / 9.0) && close(s.iou, 0.5), "{s:?}");
        assert_eq!(s.precision, Some(0.6));
        assert_eq!(s.recall, Some(0.75));
        assert_eq!((s.true_pixels, s.predicted_pixels), (4, 5));
    }

    #[test]
    fn empty_truth_and_empty_prediction() {
        let zeros = [0u8; 6];
        let some = [0, 1, 1, 0, 0, 0];
        // Nothing to find and nothing found: perfect.
        let s = Confusion::from_labels(&zeros, &zeros).scores(1);
        assert_eq!(
            (s.dice, s.iou, s.precision, s.recall),
            (1.0, 1.0, None, None)
        );
        // Tumor predicted where there is none.
        let s = Confusion::from_labels(&some, &zeros).scores(1);
        assert_eq!(
            (s.dice, s.iou, s.precision, s.recall),
            (0.0, 0.0, Some(0.0), None)
        );
        // Tumor missed entirely.
        let s = Confusion::from_labels(&zeros, &some).scores(1);
        assert_eq!(
            (s.dice, s.iou, s.precision, s.recall),
            (0.0, 0.0, None, Some(0.0))
        );
    }

    #[test]
    fn per_class_and_binary_255() {
        let t = [0, 1, 2, 2, 255];
        let p = [0, 1, 2, 1, 1];
        let c = Confusion::from_labels(&p, &t);
        assert_eq!(c.max_class(), 2);
        // class 1: truth at 1 and 4 (255), predicted at 1, 3, 4 → TP 2, FP 1.
        let s1 = c.scores(1);
        assert!(close(s1.dice, 4.0 / 5.0), "{s1:?}");
        let s2 = c.scores(2);
        assert!(
            close(s2.dice, 2.0 / 3.0) && s2.recall == Some(0.5),
            "{s2:?}"
        );
    }
}
