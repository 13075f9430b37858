//! Scores a predicted label mask against a ground-truth mask, the way
//! segmentation challenges do: per class, Dice, IoU, precision and recall.
//!
//! Masks are PNG (8-bit gray) or TIFF (plain or pyramidal, through the slide
//! reader). Scores are computed at the prediction's resolution: when the truth
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

// Items documented before `missing_docs` became a workspace lint still lack
// per-field docs; they get them as the crate is next touched.

mod mask;
mod metrics;

pub use mask::MaskSource;
pub use metrics::{Confusion, Scores};

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
    #[error(
        "{} ({}×{}) and {} ({}×{}) do not match: the truth must have the prediction's size or be larger by a level downsample",
        pred.display(), pw, ph, truth.display(), tw, th
    )]
    /// Masks whose sizes are not one downsample apart.
    SizeMismatch {
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
    let mut p = MaskSource::open(pred, None)?;
    let (pw, ph) = p.size();
    let mut t = MaskSource::open(truth, Some((pw, ph)))?;
    let (tw, th) = t.size();
    // A level of downsample d has about (w/d) × (h/d) pixels, each side
    // rounded: both ratios must be d up to that rounding.
    let (sx, sy) = (f64::from(tw) / f64::from(pw), f64::from(th) / f64::from(ph));
    let rounding = sx.max(sy) * (1.0 / f64::from(pw) + 1.0 / f64::from(ph)) + 1e-9;
    if sx.min(sy) < 1.0 - 1e-9 || (sx - sy).abs() > rounding {
        return Err(EvalError::SizeMismatch {
            pred: pred.to_path_buf(),
            pw,
            ph,
            truth: truth.to_path_buf(),
            tw,
            th,
        });
    }
    // Nearest truth pixel of each prediction column.
    let cols: Vec<usize> = (0..pw)
        .map(|x| (((f64::from(x) + 0.5) * sx) as u32).min(tw - 1) as usize)
        .collect();
    let mut confusion = Confusion::default();
    let mut y = 0;
    while y < ph {
        let n = BAND.min(ph - y);
        let prows = p.rows(y, n)?;
        // The truth rows these prediction rows map to.
        let ty0 = (((f64::from(y) + 0.5) * sy) as u32).min(th - 1);
        let ty1 = (((f64::from(y + n - 1) + 0.5) * sy) as u32).min(th - 1);
        let trows = t.rows(ty0, ty1 - ty0 + 1)?;
        for r in 0..n {
            let ty = ((((f64::from(y + r) + 0.5) * sy) as u32).min(th - 1) - ty0) as usize;
            let trow = &trows[ty * tw as usize..(ty + 1) * tw as usize];
            let prow = &prows[(r * pw) as usize..((r + 1) * pw) as usize];
            for (x, &pv) in prow.iter().enumerate() {
                confusion.add(pv, trow[cols[x]]);
            }
        }
        y += n;
    }
    Ok(confusion)
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
        let pred = save(dir.path(), "p.png", 1108, 1481, 1);
        // default.svs at 1.0 µm/px: level 0 is 2220×2967, a downsample of 2.004.
        let truth = save(dir.path(), "t.png", 2220, 2967, 1);
        assert_eq!(compare(&pred, &truth).unwrap().scores(1).dice, 1.0);
        for (w, h) in [(2220, 2000), (1000, 1481), (1300, 1481)] {
            let bad = save(dir.path(), "bad.png", w, h, 1);
            let e = compare(&pred, &bad).unwrap_err();
            assert!(matches!(e, EvalError::SizeMismatch { .. }), "{w}×{h}: {e}");
        }
    }
}
