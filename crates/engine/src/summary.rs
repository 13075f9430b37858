//! summary.json and summary.csv: one line per slide of a folder run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::outputs::report::{absolute, write_atomic};
use crate::EngineError;

/// What a finished slide's run found, kept in its run record so that a
/// resumed (skipped) slide keeps its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlideFigures {
    /// Share of the working level labelled tumor (any class ≥ 1).
    pub tumor_fraction: f64,
    /// Tumor area in mm², when the slide's resolution is known.
    pub tumor_mm2: Option<f64>,
    /// Seconds the slide took, opening to the last output.
    pub seconds: f64,
    /// Corrupt stored tiles treated as background (`--bad-tiles background`).
    /// (Absent from records of earlier versions: none.)
    #[serde(default)]
    pub bad_tiles: usize,
    /// Tumor as a share of the tissue (absent from older records).
    #[serde(default)]
    pub tumor_share_of_tissue: Option<f64>,
    /// Connected tumor regions in the mask.
    #[serde(default)]
    pub regions: Option<usize>,
    /// Share of the working level with P(tumor) in [0.3, 0.7].
    #[serde(default)]
    pub uncertain_fraction: Option<f64>,
    /// The largest tumor region, mm² (when the resolution is known).
    #[serde(default)]
    pub largest_region_mm2: Option<f64>,
    /// Tissue area, mm² (thumbnail tissue mask; when the resolution is known).
    #[serde(default)]
    pub tissue_mm2: Option<f64>,
}

/// How a slide of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Segmented now.
    Segmented,
    /// Finished by an earlier run with the same fingerprint.
    Skipped,
    /// Failed (the error says why).
    Failed,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Self::Segmented => "segmented",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// One line of the run summary.
#[derive(Debug, Clone)]
pub struct SummaryEntry {
    /// The slide.
    pub slide: PathBuf,
    /// How it ended.
    pub status: Status,
    /// Why it failed (one line).
    pub error: Option<String>,
    /// Its figures, when it was segmented now or before.
    pub figures: Option<SlideFigures>,
    /// Its report, when there is one.
    pub report: Option<PathBuf>,
}

/// Writes summary.json and summary.csv for the run into `out`.
pub fn write_summary(out: &Path, entries: &[SummaryEntry]) -> Result<(), EngineError> {
    write_summary_as(out, "summary", entries)
}

/// Writes `STEM.json` and `STEM.csv` (a shard's: `summary.shard-I-of-N`).
pub fn write_summary_as(
    out: &Path,
    stem: &str,
    entries: &[SummaryEntry],
) -> Result<(), EngineError> {
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let f = e.figures.as_ref();
            json!({
                "slide": absolute(&e.slide), "status": e.status.name(), "error": e.error,
                "tumor_fraction": f.map(|f| f.tumor_fraction), "tumor_mm2": f.and_then(|f| f.tumor_mm2),
                "tumor_share_of_tissue": f.and_then(|f| f.tumor_share_of_tissue),
                "regions": f.and_then(|f| f.regions),
                "uncertain_fraction": f.and_then(|f| f.uncertain_fraction),
                "largest_region_mm2": f.and_then(|f| f.largest_region_mm2),
                "tissue_mm2": f.and_then(|f| f.tissue_mm2),
                "seconds": f.filter(|_| e.status == Status::Segmented).map(|f| f.seconds),
                "bad_tiles": f.map(|f| f.bad_tiles),
                "report": e.report,
            })
        })
        .collect();
    let doc = json!({"wsiseg_version": env!("CARGO_PKG_VERSION"), "slides": rows});
    let path = out.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| EngineError::io(&path, "cannot write", e.into()))?;
    write_atomic(&path, text.as_bytes())?;
    let cell = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv = String::from("slide,status,tumor_fraction,tumor_mm2,tumor_share_of_tissue,regions,largest_region_mm2,uncertain_fraction,tissue_mm2,seconds,bad_tiles,error\n");
    for e in entries {
        let f = e.figures.as_ref();
        csv += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            quote(&e.slide.display().to_string()),
            e.status.name(),
            cell(f.map(|f| f.tumor_fraction)),
            cell(f.and_then(|f| f.tumor_mm2)),
            cell(f.and_then(|f| f.tumor_share_of_tissue)),
            f.and_then(|f| f.regions)
                .map(|n| n.to_string())
                .unwrap_or_default(),
            cell(f.and_then(|f| f.largest_region_mm2)),
            cell(f.and_then(|f| f.uncertain_fraction)),
            cell(f.and_then(|f| f.tissue_mm2)),
            cell(
                f.filter(|_| e.status == Status::Segmented)
                    .map(|f| f.seconds)
            ),
            f.map(|f| f.bad_tiles.to_string()).unwrap_or_default(),
            quote(e.error.as_deref().unwrap_or_default())
        );
    }
    write_atomic(&out.join(format!("{stem}.csv")), csv.as_bytes())?;
    Ok(())
}
