//! One evaluation as the figures `wsiseg eval` writes for a slide in
//! `eval.json` (and `import wsiseg`'s `evaluate` returns).

use std::path::Path;

use serde_json::{json, Value};

use crate::{Evaluation, Lesions, Scores};

/// A class's scores as `eval.json` has them.
pub fn scores_json(sc: &Scores) -> Value {
    json!({
        "dice": sc.dice, "iou": sc.iou, "precision": sc.precision, "recall": sc.recall,
        "true_pixels": sc.true_pixels, "predicted_pixels": sc.predicted_pixels,
    })
}

/// Counts of truth regions found/missed and false predicted regions per size bin.
pub fn lesion_bins(l: &Lesions, mm2_per_px: Option<f64>) -> Vec<Value> {
    let bins = crate::size_bins(mm2_per_px);
    let bin_of = |px: u64| crate::size_bin(px, mm2_per_px);
    let mut counts = vec![[0u64; 3]; bins.len()];
    for r in &l.truth {
        counts[bin_of(r.pixels)][usize::from(!r.matched)] += 1;
    }
    for r in l.predicted.iter().filter(|r| !r.matched) {
        counts[bin_of(r.pixels)][2] += 1;
    }
    bins.iter()
        .zip(counts)
        .map(|((_, name), [found, missed, false_])| {
            json!({"size": name, "found": found, "missed": missed, "false": false_})
        })
        .collect()
}

impl Evaluation {
    /// Each class's scores from class 1 on: up to the largest class either
    /// mask holds, or `named` classes (background included) when more.
    pub fn class_scores(&self, named: usize) -> Vec<Scores> {
        let c = &self.confusion;
        let n = c.max_class().max(named.saturating_sub(1)).max(1);
        (1..=n).map(|k| c.scores(k)).collect()
    }
}

/// What was compared for one slide: its name, the files, and the result.
pub struct SlideEvaluation<'a> {
    /// The slide's name.
    pub name: &'a str,
    /// The predicted mask.
    pub pred: &'a Path,
    /// The truth (mask or annotations).
    pub truth: &'a Path,
    /// The probability map used for calibration, if any.
    pub prob: Option<&'a Path>,
    /// Each class's scores from class 1 on.
    pub scores: &'a [Scores],
    /// The evaluation.
    pub eval: &'a Evaluation,
}

impl SlideEvaluation<'_> {
    /// Square millimetres per pixel, when the prediction declares its mpp.
    pub fn mm2_per_pixel(&self) -> Option<f64> {
        self.eval.mpp.map(|m| m * m / 1e6)
    }

    /// The slide's entry of `eval.json`; `name_of(k)` names class k.
    pub fn to_json(&self, name_of: &dyn Fn(usize) -> String) -> Value {
        let e = self.eval;
        let l = &e.lesions;
        let (fp, fn_) = e.confusion.tumor_errors();
        let mm2 = |px: u64| self.mm2_per_pixel().map(|k| px as f64 * k);
        json!({
            "slide": self.name,
            "pred": self.pred,
            "truth": self.truth,
            "probabilities": self.prob,
            "size": {"width": e.size.0, "height": e.size.1},
            "mpp": e.mpp,
            "classes": self.scores.iter().enumerate()
                .map(|(k, sc)| (name_of(k + 1), scores_json(sc)))
                .collect::<serde_json::Map<_, _>>(),
            "tumor_errors": {
                "false_positive_pixels": fp, "false_negative_pixels": fn_,
                "false_positive_mm2": mm2(fp), "false_negative_mm2": mm2(fn_),
            },
            "lesions": {
                "truth_regions": l.truth.len(),
                "found": l.found(),
                "missed": l.missed(),
                "predicted_regions": l.predicted.len(),
                "false": l.false_regions(),
                "by_size": lesion_bins(l, self.mm2_per_pixel()),
            },
            "boundary": {
                "tolerance_px": e.boundary.tolerance,
                "f_score": e.boundary.f_score(),
                "precision": e.boundary.precision(),
                "recall": e.boundary.recall(),
                "predicted_boundary_pixels": e.boundary.predicted.pixels,
                "truth_boundary_pixels": e.boundary.truth.pixels,
            },
            "calibration": e.calibration.as_ref().map(|c| json!({
                "ece": c.ece,
                "brier": c.brier,
                "bins": c.bins.iter().map(|b| json!({
                    "p_from": b.lo, "p_to": b.hi, "pixels": b.pixels,
                    "mean_p": b.mean_p, "tumor_fraction": b.tumor_fraction,
                })).collect::<Vec<_>>(),
            })),
        })
    }
}
