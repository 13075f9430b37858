//! `summary.json` (and `summary.csv`, the same rows): one line per slide
//! of an output folder.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `summary.json` (or a shard's `summary.shard-I-of-N.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SummaryFile {
    /// The wsiseg that wrote it.
    pub wsiseg_version: String,
    /// When, UTC.
    pub written_utc: String,
    /// Slides by standing.
    pub counts: SummaryCounts,
    /// One line per slide, by output name.
    pub slides: Vec<SummaryLine>,
}

/// Slides of a summary by standing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SummaryCounts {
    /// Every slide.
    pub slides: usize,
    /// Outputs and run record in the folder.
    pub done: usize,
    /// Failed and not done since.
    pub failed: usize,
    /// Given as input, no result yet.
    pub missing: usize,
}

/// One slide of a summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SummaryLine {
    /// The slide (absolute).
    pub slide: PathBuf,
    /// Its output name under the folder, without suffixes (`a/x`).
    pub name: String,
    /// `done`, `failed` or `missing`.
    pub status: String,
    /// What the run that wrote the summary did with it: `segmented`,
    /// `skipped`, `failed` (`null`: an earlier run).
    pub this_run: Option<String>,
    /// Why it failed, or what is wrong with its outputs.
    pub error: Option<String>,
    /// Share of the working level labelled tumor.
    pub tumor_fraction: Option<f64>,
    /// Tumor area, mm².
    pub tumor_mm2: Option<f64>,
    /// Tumor as a share of the tissue.
    pub tumor_share_of_tissue: Option<f64>,
    /// Connected tumor regions.
    pub regions: Option<usize>,
    /// Share of the working level with P(tumor) in [0.3, 0.7].
    pub uncertain_fraction: Option<f64>,
    /// The largest tumor region, mm².
    pub largest_region_mm2: Option<f64>,
    /// Tissue area, mm².
    pub tissue_mm2: Option<f64>,
    /// Seconds the slide took.
    pub seconds: Option<f64>,
    /// Corrupt stored tiles made background.
    pub bad_tiles: Option<usize>,
    /// The devices, comma-separated.
    pub device: Option<String>,
    /// SHA-256 of the model file.
    pub model_sha256: Option<String>,
    /// When its outputs were finished (or the failure recorded), UTC.
    pub finished_utc: Option<String>,
    /// Its report (absolute), when there is one.
    pub report: Option<PathBuf>,
}

/// The columns of summary.csv, in order: fields of [`SummaryLine`].
pub const CSV_COLUMNS: [&str; 18] = [
    "slide",
    "name",
    "status",
    "this_run",
    "tumor_fraction",
    "tumor_mm2",
    "tumor_share_of_tissue",
    "regions",
    "largest_region_mm2",
    "uncertain_fraction",
    "tissue_mm2",
    "seconds",
    "bad_tiles",
    "device",
    "model_sha256",
    "finished_utc",
    "report",
    "error",
];

impl SummaryLine {
    /// The line's cells in [`CSV_COLUMNS`] order (RFC 4180: quoted when
    /// holding a comma, a quote or a line break; empty when unknown).
    pub fn csv_cells(&self) -> serde_json::Result<Vec<String>> {
        let value = serde_json::to_value(self)?;
        Ok(CSV_COLUMNS
            .iter()
            .map(|c| match &value[*c] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) if s.contains([',', '"', '\n', '\r']) => {
                    format!("\"{}\"", s.replace('"', "\"\""))
                }
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect())
    }
}
