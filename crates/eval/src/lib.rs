//! Scores a predicted label mask against a ground-truth mask, the way
//! segmentation challenges do: per class, Dice, IoU, precision and recall.
//!
//! Masks are PNG (8-bit gray) or TIFF (plain or pyramidal, through the slide
//! reader); a truth may also be polygons (ASAP XML or GeoJSON, see
//! [`Annotations`]). Scores are computed at the prediction's resolution
//! (polygons are drawn at it): when the truth
//! is larger by a level downsample, its nearest pixel is used (the level of a
//! pyramidal truth closest to the prediction is read). Rows are streamed in
//! bands, so memory does not grow with the mask. The value 255 counts as
//! class 1 (binary masks saved as 0/255).
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let (pred, truth) = (dir.path().join("pred.mask.png"), dir.path().join("truth.png"));
//! // Prediction: the left 6 of 10 columns; truth: the left 4 (saved 0/255).
//! image::GrayImage::from_fn(10, 10, |x, _| image::Luma([u8::from(x < 6)])).save(&pred).unwrap();
//! image::GrayImage::from_fn(10, 10, |x, _| image::Luma([if x < 4 { 255 } else { 0 }])).save(&truth).unwrap();
//! let c = wsiseg_eval::compare(&pred, &truth)?;
//! // 40 true positives, 20 false positives: Dice 80 / 100.
//! assert_eq!(c.scores(1).dice, 0.8);
//! # Ok::<(), wsiseg_eval::EvalError>(())
//! ```

mod annotations;
mod boundary;
mod calibration;
mod figures;
mod mask;
mod metrics;
mod regions;

pub use annotations::{is_annotation_file, Annotations, Labels, Raster, ANNOTATION_EXTENSIONS};
pub use boundary::{Boundary, BoundaryCounter, BoundaryCounts};
pub use calibration::{Bin, Calibration, CalibrationCounter};
pub use figures::{lesion_bins, scores_json, SlideEvaluation};
pub use mask::MaskSource;
pub use metrics::{Confusion, Scores};
pub use regions::{
    size_bin, size_bins, LesionCounter, Lesions, Region, RegionCounter, MM2_BINS, PX_BINS,
};

use std::path::{Path, PathBuf};

/// Errors reading or comparing masks. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Opening a mask stored as a slide (pyramidal TIFF).
    #[error("{}: {source}", path.display())]
    Slide {
        /// The mask.
        path: PathBuf,
        /// What the slide reader said.
        #[source]
        source: wsiseg_slide::SlideError,
    },
    /// Reading a mask file.
    #[error("{}: cannot read mask: {source}", path.display())]
    Io {
        /// The mask.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Decoding a PNG mask.
    #[error("{}: cannot decode PNG mask: {source}", path.display())]
    Png {
        /// The mask.
        path: PathBuf,
        /// What the PNG decoder said.
        #[source]
        source: png::DecodingError,
    },
    /// A PNG that is not an 8-bit single-channel mask.
    #[error("{}: a mask must be an 8-bit single-channel PNG (this one is {detail})", path.display())]
    PngFormat {
        /// The mask.
        path: PathBuf,
        /// What it is instead.
        detail: String,
    },
    /// Annotations (ASAP XML, GeoJSON) that cannot be read or labelled.
    #[error("{}: {problem}", path.display())]
    Annotations {
        /// The annotation file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// An annotation class the truth labels do not name.
    #[error("{}: annotation class '{class}' has no label: label it '{class}=1' (tumor) or '{class}=0' (background, cut out of tumor)", path.display())]
    Unlabelled {
        /// The annotation file.
        path: PathBuf,
        /// The class (its name in the file; empty when it has none).
        class: String,
    },
    /// Annotations against a prediction that does not say its scale.
    #[error("{}: annotations are in the slide's level-0 pixels, but {} does not declare its downsample from level 0 (a wsiseg mask TIFF does, and a NAME.mask.png with its NAME.report.json beside it)", truth.display(), pred.display())]
    NoDownsample {
        /// The prediction.
        pred: PathBuf,
        /// The annotations.
        truth: PathBuf,
    },
    #[error(
        "{} ({}×{}) and {} ({}×{}) do not match: the truth must have the prediction's size or be larger by {}",
        pred.display(), pw, ph, truth.display(), tw, th,
        declared.map_or("a whole downsample (2×, 4×…, within a pixel per halving)".to_string(),
            |d| format!("the downsample the prediction declares ({d:.4}×, within a pixel)"))
    )]
    /// Masks whose sizes are not one downsample apart.
    SizeMismatch {
        /// The downsample the prediction declares (its TIFF description,
        /// or the report beside a PNG), if any.
        declared: Option<f64>,
        /// The prediction.
        pred: PathBuf,
        /// Its width.
        pw: u32,
        /// Its height.
        ph: u32,
        /// The truth.
        truth: PathBuf,
        /// Its width.
        tw: u32,
        /// Its height.
        th: u32,
    },
}

/// Rows compared per band.
const BAND: u32 = 256;

/// Compares the masks at `pred` and `truth`; see the crate documentation.
pub fn compare(pred: &Path, truth: &Path) -> Result<Confusion, EvalError> {
    let mut confusion = Confusion::default();
    walk(pred, truth, &Labels::default(), |p, t| {
        for (&pv, &tv) in p.iter().zip(t) {
            confusion.add(pv, tv);
        }
    })?;
    Ok(confusion)
}

/// What to measure besides the pixel scores.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The boundary F-score's tolerance, in pixels of the prediction.
    pub boundary_tolerance: u32,
    /// A probability map (P × 255, the prediction's size or a downsample of
    /// the truth like it) for the calibration summary.
    pub probabilities: Option<PathBuf>,
    /// Reliability bins.
    pub calibration_bins: usize,
    /// Labels of annotation classes, for a truth drawn as polygons.
    pub labels: Labels,
}

/// Everything measured on one slide.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Pixel counts per (predicted, truth) class.
    pub confusion: Confusion,
    /// Tumor regions found, missed and false.
    pub lesions: Lesions,
    /// Boundary agreement.
    pub boundary: Boundary,
    /// Calibration of the probability map, when one was given.
    pub calibration: Option<Calibration>,
    /// The prediction's width and height (the resolution scored at).
    pub size: (u32, u32),
    /// Microns per prediction pixel, when the prediction declares it.
    pub mpp: Option<f64>,
}

/// Scores `pred` against `truth`: pixel confusion, lesions, boundary and
/// (with a probability map) calibration, in one streamed pass (two with a
/// probability map).
pub fn evaluate(pred: &Path, truth: &Path, opts: &Options) -> Result<Evaluation, EvalError> {
    let mut confusion = Confusion::default();
    let mut lesions = LesionCounter::default();
    let mut boundary = BoundaryCounter::new(opts.boundary_tolerance);
    let size = walk(pred, truth, &opts.labels, |p, t| {
        for (&pv, &tv) in p.iter().zip(t) {
            confusion.add(pv, tv);
        }
        lesions.push(p, t);
        boundary.push(p, t);
    })?;
    let calibration = match &opts.probabilities {
        Some(prob) => {
            let mut c = CalibrationCounter::default();
            walk(prob, truth, &opts.labels, |p, t| c.push(p, t))?;
            c.finish(opts.calibration_bins.max(1))
        }
        None => None,
    };
    Ok(Evaluation {
        confusion,
        lesions: lesions.finish(),
        boundary: boundary.finish(),
        calibration,
        size,
        mpp: declared_mpp(pred),
    })
}

/// The truth as [`evaluate`] sees it (resampled to the prediction's pixels,
/// annotations drawn at its resolution), reduced to at most `max_side`
/// pixels a side by taking every k-th row and column: (width, height,
/// labels). For showing where the truth runs (`wsiseg view`).
pub fn truth_overview(
    pred: &Path,
    truth: &Path,
    labels: &Labels,
    max_side: u32,
) -> Result<(u32, u32, Vec<u8>), EvalError> {
    let (pw, ph) = MaskSource::open(pred, None)?.size();
    let step = pw.max(ph).div_ceil(max_side.max(1)).max(1) as usize;
    let (w, h) = (
        (pw as usize).div_ceil(step) as u32,
        (ph as usize).div_ceil(step) as u32,
    );
    let mut out = Vec::with_capacity(w as usize * h as usize);
    let mut row = 0usize;
    walk(pred, truth, labels, |_, t| {
        if row.is_multiple_of(step) {
            out.extend(t.iter().step_by(step));
        }
        row += 1;
    })?;
    Ok((w, h, out))
}

/// Streams `a` (a prediction or probability map) with the truth resampled
/// to its pixels (the nearest truth pixel of each; annotations drawn at its
/// resolution), one row at a time; returns `a`'s size.
fn walk(
    a: &Path,
    truth: &Path,
    labels: &Labels,
    mut visit: impl FnMut(&[u8], &[u8]),
) -> Result<(u32, u32), EvalError> {
    let mut p = MaskSource::open(a, None)?;
    let (pw, ph) = p.size();
    let declared = declared_downsample(a);
    let mut t = if is_annotation_file(truth) {
        // Drawn at this prediction's pixels: the sizes match by construction.
        let downsample = declared.ok_or_else(|| EvalError::NoDownsample {
            pred: a.to_path_buf(),
            truth: truth.to_path_buf(),
        })?;
        MaskSource::Polygons(Annotations::read(truth, labels)?.raster((pw, ph), downsample))
    } else {
        MaskSource::open(truth, Some((pw, ph)))?
    };
    let (tw, th) = t.size();
    let (sx, sy) = (f64::from(tw) / f64::from(pw), f64::from(th) / f64::from(ph));
    if !sizes_match((pw, ph), (tw, th), declared) {
        return Err(EvalError::SizeMismatch {
            declared,
            pred: a.to_path_buf(),
            pw,
            ph,
            truth: truth.to_path_buf(),
            tw,
            th,
        });
    }
    // Nearest truth pixel of each column.
    let cols: Vec<usize> = (0..pw)
        .map(|x| (((f64::from(x) + 0.5) * sx) as u32).min(tw - 1) as usize)
        .collect();
    let mut resampled = vec![0u8; pw as usize];
    let mut y = 0;
    while y < ph {
        let n = BAND.min(ph - y);
        let prows = p.rows(y, n)?;
        // The truth rows these rows map to.
        let ty0 = (((f64::from(y) + 0.5) * sy) as u32).min(th - 1);
        let ty1 = (((f64::from(y + n - 1) + 0.5) * sy) as u32).min(th - 1);
        let trows = t.rows(ty0, ty1 - ty0 + 1)?;
        for r in 0..n {
            let ty = ((((f64::from(y + r) + 0.5) * sy) as u32).min(th - 1) - ty0) as usize;
            let trow = &trows[ty * tw as usize..(ty + 1) * tw as usize];
            for (out, &c) in resampled.iter_mut().zip(&cols) {
                *out = trow[c];
            }
            let prow = &prows[(r * pw) as usize..((r + 1) * pw) as usize];
            visit(prow, &resampled);
        }
        y += n;
    }
    Ok((pw, ph))
}

/// For `NAME.mask.png`: a working-level figure (`mpp`,
/// `downsample_from_level0`) of `NAME.report.json` beside it, scaled from the
/// working level to the PNG's size (`Some(None)` when the report lacks it);
/// `None` for any other file.
fn png_report_figure(
    pred: &Path,
    figure: fn(&wsiseg_report::WorkingLevel) -> Option<f64>,
) -> Option<Option<f64>> {
    let stem = pred.file_name()?.to_str()?.strip_suffix(".mask.png")?;
    let report = pred.with_file_name(format!("{stem}.report.json"));
    let scaled = || {
        let r: wsiseg_report::SlideReport = wsiseg_report::read(&report).ok()?;
        let working = &r.working_level;
        let x = figure(working)?;
        let ww = f64::from(working.width);
        // An older report without the PNG's size: it was the working level's.
        let pw = match r.parameters.png_mask_size.width {
            0 => ww,
            w => f64::from(w),
        };
        (ww > 0.0).then(|| x * ww / pw)
    };
    Some(scaled())
}

/// Microns per pixel of a prediction mask: its TIFF resolution tags, or for
/// `NAME.mask.png` the report beside it (the working level's mpp, scaled to
/// the PNG's size).
pub fn declared_mpp(pred: &Path) -> Option<f64> {
    if let Some(found) = png_report_figure(pred, |w| w.mpp) {
        return found;
    }
    let file = std::fs::File::open(pred).ok()?;
    let mut d = tiff::decoder::Decoder::new(std::io::BufReader::new(file)).ok()?;
    let unit = d.get_tag_u32(tiff::tags::Tag::ResolutionUnit).unwrap_or(2);
    let micron_per_unit = match unit {
        2 => 25_400.0,
        3 => 10_000.0,
        _ => return None,
    };
    let res = match d.get_tag(tiff::tags::Tag::XResolution).ok()? {
        tiff::decoder::ifd::Value::Rational(n, den) if n > 0 && den > 0 => {
            f64::from(n) / f64::from(den)
        }
        _ => return None,
    };
    let mpp = micron_per_unit / res;
    (mpp > 0.0 && mpp <= 50.0).then_some(mpp)
}

/// Whether a truth of `truth` pixels belongs with a prediction of `pred`
/// pixels: the same size; or `declared`× larger (the prediction's own
/// downsample from level 0), each side within a pixel; or, with nothing
/// declared, a whole factor k larger, each side within a pixel per halving
/// (a pyramid rounds once per level).
fn sizes_match(pred: (u32, u32), truth: (u32, u32), declared: Option<f64>) -> bool {
    if pred == truth {
        return true;
    }
    let within = |d: f64, slack: f64| {
        let off = |t: u32, p: u32| (f64::from(t) / d - f64::from(p)).abs();
        off(truth.0, pred.0) <= slack + 1e-9 && off(truth.1, pred.1) <= slack + 1e-9
    };
    if let Some(d) = declared {
        return d >= 1.0 - 1e-9 && within(d, 1.0);
    }
    let k = (f64::from(truth.0) / f64::from(pred.0)).round();
    k >= 2.0 && within(k, k.log2().ceil())
}

/// The downsample from the slide's level 0 that a prediction mask declares:
/// wsiseg's mask TIFFs say it in their description ("… downsampled by
/// 2.004000 …"); a PNG mask `NAME.mask.png` has it in `NAME.report.json`
/// beside it. `None` for masks from elsewhere.
pub fn declared_downsample(pred: &Path) -> Option<f64> {
    if let Some(found) = png_report_figure(pred, |w| Some(w.downsample_from_level0)) {
        return found;
    }
    let file = std::fs::File::open(pred).ok()?;
    let mut d = tiff::decoder::Decoder::new(std::io::BufReader::new(file)).ok()?;
    let text = d
        .get_tag_ascii_string(tiff::tags::Tag::ImageDescription)
        .ok()?;
    let after = text.split("downsampled by ").nth(1)?;
    after
        .split_whitespace()
        .next()?
        .trim_end_matches(';')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(dir: &Path, name: &str, w: u32, h: u32, v: u8) -> PathBuf {
        let p = dir.join(name);
        image::GrayImage::from_pixel(w, h, image::Luma([v]))
            .save(&p)
            .unwrap();
        p
    }

    #[test]
    fn sizes_must_differ_by_one_downsample() {
        let dir = tempfile::tempdir().unwrap();
        let pred = save(dir.path(), "p.mask.png", 1108, 1481, 1);
        // default.svs at 1.0 µm/px: level 0 is 2220×2967, a downsample of
        // 2.004: not a whole factor, so only with the report that says so.
        let truth = save(dir.path(), "t.png", 2220, 2967, 1);
        let e = compare(&pred, &truth).unwrap_err();
        assert!(e.to_string().contains("a whole downsample"), "{e}");
        std::fs::write(
            dir.path().join("p.report.json"),
            r#"{"working_level": {"downsample_from_level0": 2.0036101, "width": 1108},
                "parameters": {"png_mask_size": {"width": 1108, "height": 1481}}}"#,
        )
        .unwrap();
        assert_eq!(compare(&pred, &truth).unwrap().scores(1).dice, 1.0);
        // Whole factors, within a pixel per halving; not 700 against 768.
        let small = save(dir.path(), "s.png", 700, 700, 1);
        for (w, h, ok) in [
            (1400, 1400, true),
            (1401, 1399, true),
            (2801, 2798, true),
            (768, 768, false),
            (1403, 1400, false),
        ] {
            let t = save(dir.path(), "t2.png", w, h, 1);
            assert_eq!(compare(&small, &t).is_ok(), ok, "700² against {w}×{h}");
        }
        for (w, h) in [(2220, 2000), (1000, 1481), (1300, 1481)] {
            let bad = save(dir.path(), "bad.png", w, h, 1);
            let e = compare(&pred, &bad).unwrap_err();
            assert!(matches!(e, EvalError::SizeMismatch { .. }), "{w}×{h}: {e}");
        }
    }
}
