//! summary.json and summary.csv: one row per slide of an output folder.
//!
//! A run over many slides ends by writing the folder's *merged* summary:
//! every slide whose run record (`NAME.run.json`, written last) is in the
//! folder or its subfolders is `done` with the figures of that record; a
//! failure recorded by this run, by a shard's summary
//! (`summary.shard-I-of-N.json`) or by an earlier summary is `failed` unless
//! a newer record says the slide was done since. So two runs into one folder
//! add up instead of erasing each other, a skipped slide keeps its figures,
//! and `wsiseg summary OUT --input IN` adds the slides of IN with no result
//! as `missing`. A shard writes only its own summary, of its own slides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use wsiseg_report::{SummaryCounts, SummaryFile, SummaryLine, CSV_COLUMNS};

use crate::report::{absolute, utc, write_atomic};
use crate::{EngineError, RunRecord, SlideFigures};

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
    /// `segmented`, `skipped` or `failed`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Segmented => "segmented",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// One slide of a run, as the run saw it.
#[derive(Debug, Clone)]
pub struct SummaryEntry {
    /// The slide.
    pub slide: PathBuf,
    /// Its output name under the output folder, without suffixes (`x`, or
    /// `a/x` for a slide in subfolder `a` of the input).
    pub name: PathBuf,
    /// How it ended.
    pub status: Status,
    /// Why it failed (one line).
    pub error: Option<String>,
    /// Its figures, when it was segmented now or before.
    pub figures: Option<SlideFigures>,
    /// Its report, when there is one.
    pub report: Option<PathBuf>,
}

/// Where a slide stands in an output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// Failed, and not done since.
    Failed,
    /// Given as input (`wsiseg summary --input`) but with no result yet.
    Missing,
    /// Its outputs and run record are in the folder.
    Done,
}

impl Standing {
    /// `done`, `failed` or `missing`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Missing => "missing",
        }
    }
}

/// One row of a summary.
#[derive(Debug, Clone)]
pub struct SummaryRow {
    /// The slide (absolute).
    pub slide: PathBuf,
    /// Its output name under the folder, without suffixes (`a/x`).
    pub name: String,
    /// Done, failed or missing.
    pub status: Standing,
    /// What the run that wrote the summary did with it (none: an earlier run).
    pub this_run: Option<Status>,
    /// Why it failed, or what is wrong with its outputs.
    pub error: Option<String>,
    /// What its run found.
    pub figures: Option<SlideFigures>,
    /// The devices that ran the model.
    pub devices: Vec<String>,
    /// SHA-256 of the model file.
    pub model_sha256: Option<String>,
    /// When its outputs were finished (or the failure recorded).
    pub finished: SystemTime,
    /// What decides between two rows of one slide: the newest wins (a
    /// file's modification time, or now for the running run's rows).
    pub when: SystemTime,
    /// Its report, when there is one.
    pub report: Option<PathBuf>,
}

impl SummaryRow {
    /// A row for a slide of the input with no result.
    pub fn missing(slide: &Path, name: &Path) -> Self {
        Self {
            slide: absolute(slide),
            name: name.with_extension("").to_string_lossy().into_owned(),
            status: Standing::Missing,
            this_run: None,
            error: None,
            figures: None,
            devices: Vec::new(),
            model_sha256: None,
            finished: SystemTime::UNIX_EPOCH,
            when: SystemTime::UNIX_EPOCH,
            report: None,
        }
    }

    /// The row of a slide from its run record at `record` (in `out`);
    /// a record whose outputs have changed since is a failure that says so.
    fn of_record(out: &Path, record_path: &Path, record: RunRecord) -> Self {
        let folder = record_path.parent().unwrap_or(out);
        let name = record_path
            .strip_prefix(out)
            .unwrap_or(record_path)
            .to_string_lossy()
            .into_owned();
        let name = name.strip_suffix(".run.json").unwrap_or(&name).to_string();
        let finished =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(record.finished_unix);
        let files: Vec<PathBuf> = record.files.iter().map(|f| folder.join(&f.name)).collect();
        let damaged = record.damaged(folder, &files);
        let report = folder.join(format!(
            "{}.report.json",
            Path::new(&name)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        ));
        Self {
            slide: record.fingerprint.slide.path.clone(),
            name,
            status: if damaged.is_some() {
                Standing::Failed
            } else {
                Standing::Done
            },
            this_run: None,
            error: damaged.map(|(f, why)| {
                format!(
                    "{} {why}: its outputs changed since its run (run it again, overwriting)",
                    f.display()
                )
            }),
            devices: record.devices.clone(),
            model_sha256: Some(record.fingerprint.model_sha256.clone()),
            finished,
            when: finished,
            report: report.is_file().then_some(report),
            figures: Some(record.figures),
        }
    }

    /// The row as summary.json and summary.csv give it.
    pub fn line(&self) -> SummaryLine {
        let f = self.figures.as_ref();
        SummaryLine {
            slide: self.slide.clone(),
            name: self.name.clone(),
            status: self.status.name().to_string(),
            this_run: self.this_run.map(|s| s.name().to_string()),
            error: self.error.clone(),
            tumor_fraction: f.map(|f| f.tumor_fraction),
            tumor_mm2: f.and_then(|f| f.tumor_mm2),
            tumor_share_of_tissue: f.and_then(|f| f.tumor_share_of_tissue),
            regions: f.and_then(|f| f.regions),
            uncertain_fraction: f.and_then(|f| f.uncertain_fraction),
            largest_region_mm2: f.and_then(|f| f.largest_region_mm2),
            tissue_mm2: f.and_then(|f| f.tissue_mm2),
            seconds: f.map(|f| f.seconds),
            bad_tiles: f.map(|f| f.bad_tiles),
            device: (!self.devices.is_empty()).then(|| self.devices.join(",")),
            model_sha256: self.model_sha256.clone(),
            finished_utc: (self.status != Standing::Missing).then(|| utc(self.finished)),
            report: self.report.as_deref().map(absolute),
        }
    }
}

/// The rows of this run's `entries` (each with its record's details when
/// it has one), in their order.
pub fn run_rows(out: &Path, entries: &[SummaryEntry]) -> Vec<SummaryRow> {
    let now = SystemTime::now();
    entries
        .iter()
        .map(|e| {
            let record_path = out.join(format!("{}.run.json", e.name.display()));
            let recorded = match e.status {
                Status::Failed => None,
                _ => RunRecord::read(&record_path).ok().flatten(),
            };
            let mut row = match recorded {
                Some(r) => SummaryRow::of_record(out, &record_path, r),
                None => SummaryRow::missing(&e.slide, &e.name),
            };
            row.slide = absolute(&e.slide);
            // The entry's name is the output name already (suffixes off).
            row.name = e.name.to_string_lossy().into_owned();
            row.this_run = Some(e.status);
            row.when = now;
            // A failure (no record read) dates from now.
            if row.finished == SystemTime::UNIX_EPOCH {
                row.finished = now;
            }
            if e.status == Status::Failed {
                row.status = Standing::Failed;
                row.error.clone_from(&e.error);
            } else {
                row.status = Standing::Done;
                if row.figures.is_none() {
                    row.figures.clone_from(&e.figures);
                }
                row.report = row.report.or_else(|| e.report.clone());
            }
            row
        })
        .collect()
}

/// Every `NAME.run.json` under `dir` (subfolders too; not hidden ones).
fn records(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            records(&path, found);
        } else if name.ends_with(".run.json") {
            found.push(path);
        }
    }
}

/// The failures a summary file lists, dated by the file.
fn failures(path: &Path) -> Vec<SummaryRow> {
    /// The rows, each read on its own: one damaged row costs only itself.
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Rows {
        slides: Vec<serde_json::Value>,
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
        tracing::warn!("{}: not a wsiseg summary, left out", path.display());
        return Vec::new();
    };
    let rows = serde_json::from_value::<Rows>(doc).unwrap_or_default();
    let when = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    rows.slides
        .into_iter()
        .filter_map(|r| serde_json::from_value::<SummaryLine>(r).ok())
        .filter(|r| r.status == Standing::Failed.name() && !r.slide.as_os_str().is_empty())
        .map(|r| {
            let name = if r.name.is_empty() {
                r.slide
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            } else {
                r.name
            };
            SummaryRow {
                status: Standing::Failed,
                this_run: None,
                error: r.error,
                finished: when,
                when,
                ..SummaryRow::missing(&r.slide, Path::new(&name))
            }
        })
        .collect()
}

/// The summary files in `out`: summary.json and the shards'.
fn summary_files(out: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n == "summary.json" || (n.starts_with("summary.shard-") && n.ends_with(".json"))
            })
        })
        .collect();
    files.sort();
    files
}

/// The folder's merged summary: every run record under `out`, the
/// failures of its summaries, and `current` (this run's rows, newest); per
/// output name the newest wins. Sorted by output name.
pub fn merge(out: &Path, current: Vec<SummaryRow>) -> Vec<SummaryRow> {
    let mut found = Vec::new();
    records(out, &mut found);
    found.sort();
    let mut rows: Vec<SummaryRow> = Vec::new();
    for path in found {
        match RunRecord::read(&path) {
            Ok(Some(r)) => {
                let mut row = SummaryRow::of_record(out, &path, r);
                // The record's own time is in whole seconds; its file's,
                // finer: a failure and a success in the same second compare
                // right.
                if let Ok(t) = std::fs::metadata(&path).and_then(|m| m.modified()) {
                    row.when = t;
                }
                rows.push(row);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}; left out of the summary"),
        }
    }
    for file in summary_files(out) {
        rows.extend(failures(&file));
    }
    rows.extend(current);
    // One row per output name: a folder holds one set of outputs per name
    // (a slide moved since its run keeps its name and its outputs).
    let mut by_slide: BTreeMap<String, SummaryRow> = BTreeMap::new();
    for row in rows {
        let key = row.name.clone();
        match by_slide.get(&key) {
            Some(old) if old.when > row.when => {}
            _ => {
                by_slide.insert(key, row);
            }
        }
    }
    let mut rows: Vec<SummaryRow> = by_slide.into_values().collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.slide.cmp(&b.slide)));
    rows
}

/// Writes summary.json and summary.csv into `out`; returns summary.json's path.
pub fn write_summary(out: &Path, rows: &[SummaryRow]) -> Result<PathBuf, EngineError> {
    write_summary_as(out, "summary", rows)
}

/// Writes `STEM.json` and `STEM.csv` (a shard's: `summary.shard-I-of-N`);
/// returns `STEM.json`'s path.
pub fn write_summary_as(
    out: &Path,
    stem: &str,
    rows: &[SummaryRow],
) -> Result<PathBuf, EngineError> {
    let count = |s: Standing| rows.iter().filter(|r| r.status == s).count();
    let summary = SummaryFile {
        wsiseg_version: env!("CARGO_PKG_VERSION").to_string(),
        written_utc: utc(SystemTime::now()),
        counts: SummaryCounts {
            slides: rows.len(),
            done: count(Standing::Done),
            failed: count(Standing::Failed),
            missing: count(Standing::Missing),
        },
        slides: rows.iter().map(SummaryRow::line).collect(),
    };
    let path = out.join(format!("{stem}.json"));
    let cannot = |e: serde_json::Error| EngineError::io(&path, "cannot write", e.into());
    let text = wsiseg_report::to_text(&summary).map_err(cannot)?;
    write_atomic(&path, text.as_bytes())?;
    let mut csv = CSV_COLUMNS.join(",") + "\n";
    for line in &summary.slides {
        csv += &(line.csv_cells().map_err(cannot)?.join(",") + "\n");
    }
    write_atomic(&out.join(format!("{stem}.csv")), csv.as_bytes())?;
    Ok(path)
}
