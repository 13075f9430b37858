//! The per-slide JSON report and the run summary.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wsiseg_infer::Segmenter;
use wsiseg_slide::{PartialFile, Size, Slide, TilePlan, WorkingLevel};

use crate::args::SegmentArgs;
use crate::outputs::OutputPaths;

/// The model, once per run.
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub manifest: Value,
}

impl ModelInfo {
    pub fn of(model: &Segmenter) -> Result<Self> {
        let bytes = std::fs::read(model.path())
            .with_context(|| format!("{}: cannot read", model.path().display()))?;
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            name: model.manifest().name.clone(),
            path: model.path().to_path_buf(),
            sha256,
            manifest: serde_json::to_value(model.manifest())?,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct StageTimes {
    pub open: f64,
    pub read: f64,
    pub inference: f64,
    pub stitch_write: f64,
    pub pipeline_wall: f64,
    pub outputs: f64,
    pub total: f64,
}

/// Everything a report says about one slide.
pub struct SlideFacts<'a> {
    pub slide: &'a dyn Slide,
    pub working: &'a WorkingLevel,
    pub plan: &'a TilePlan,
    pub model: &'a ModelInfo,
    pub args: &'a SegmentArgs,
    pub settings_tile: u32,
    pub settings_overlap: u32,
    pub settings_batch: usize,
    pub settings_readers: usize,
    pub png_size: Size,
    pub class_pixels: &'a [u64; 256],
    pub tissue_fraction: Option<f64>,
    /// Thumbnail saturation above which a pixel is tissue.
    pub tissue_threshold: Option<u8>,
    /// Tiles whose core holds tissue.
    pub tiles_with_tissue: Option<usize>,
    /// Tiles run through the model.
    pub tiles_run: usize,
    pub regions: Option<usize>,
    pub timings: StageTimes,
    pub classes: &'a [String],
}

impl SlideFacts<'_> {
    /// Area of one working-level pixel in mm², when the resolution is known.
    fn pixel_mm2(&self) -> Option<f64> {
        self.working.mpp.map(|m| (m / 1000.0).powi(2))
    }

    fn level0_mm2(&self) -> Option<f64> {
        let s = self.slide.levels()[0].size;
        self.slide.mpp().map(|m| s.area() as f64 * m.x * m.y / 1e6)
    }

    fn tumor_pixels(&self) -> u64 {
        self.class_pixels[1..].iter().sum()
    }
}

/// Absolute form of a path that exists (reports outlive the working directory).
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn to_json(f: &SlideFacts, outputs: &[PathBuf]) -> Value {
    let s = f.slide;
    let l0 = s.levels()[0].size;
    let bytes = std::fs::metadata(s.path()).map(|m| m.len()).ok();
    let working_px = f.working.size.area();
    let classes: serde_json::Map<String, Value> = f
        .classes
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let px = f.class_pixels[k];
            (
                name.clone(),
                json!({
                    "pixels": px,
                    "fraction": px as f64 / working_px.max(1) as f64,
                    "area_mm2": f.pixel_mm2().map(|a| a * px as f64),
                }),
            )
        })
        .collect();
    let t = f.timings;
    json!({
        "wsiseg_version": env!("CARGO_PKG_VERSION"),
        "slide": {
            "path": absolute(s.path()),
            "bytes": bytes,
            "format": s.format(),
            "level0": {"width": l0.w, "height": l0.h},
            "levels": s.levels().len(),
            "mpp": s.mpp().map(|m| json!({"x": m.x, "y": m.y})),
        },
        "working_level": {
            "source_level": f.working.source_level,
            "scale_from_source": f.working.scale,
            "downsample_from_level0": f.working.downsample,
            "width": f.working.size.w,
            "height": f.working.size.h,
            "mpp": f.working.mpp,
            "read_by": if s.reads_directly(f.working.source_level) {
                "direct JPEG tiles"
            } else {
                "OpenSlide"
            },
        },
        "model": {
            "name": f.model.name,
            "path": absolute(&f.model.path),
            "sha256": f.model.sha256,
            "manifest": f.model.manifest,
        },
        "parameters": {
            "tile": f.settings_tile,
            "overlap": f.settings_overlap,
            "batch": f.settings_batch,
            "device": f.args.device.to_string(),
            "precision": f.args.precision.map(|p| p.to_string()),
            "readers": f.settings_readers,
            "reader": format!("{:?}", f.args.reader).to_lowercase(),
            "level": f.args.level,
            "mpp": f.args.mpp,
            "formats": f.args.formats.iter().map(|x| format!("{x:?}").to_lowercase()).collect::<Vec<_>>(),
            "probabilities": f.args.probabilities,
            "mask_level": f.args.mask_level,
            "mask_mpp": f.args.mask_mpp,
            "mask_values": match f.args.mask_values {
                crate::args::MaskValues::ClassIndex => "01",
                crate::args::MaskValues::Binary255 => "0255",
            },
            "png_mask_size": {"width": f.png_size.w, "height": f.png_size.h},
            "min_area": f.args.min_area,
            "tissue_mask": !f.args.no_tissue_mask,
            "tissue_threshold": f.tissue_threshold,
        },
        "tiles": {
            "planned": f.plan.len(),
            "with_tissue": f.tiles_with_tissue,
            "run": f.tiles_run,
            "size": f.plan.tile_size(),
            "grid": {"cols": f.plan.cols(), "rows": f.plan.rows()},
        },
        "areas": {
            "slide_mm2": f.level0_mm2(),
            "tissue_fraction": f.tissue_fraction,
            "tissue_mm2": f.tissue_fraction.zip(f.level0_mm2()).map(|(a, b)| a * b),
            "tumor_fraction": f.tumor_pixels() as f64 / working_px.max(1) as f64,
            "tumor_mm2": f.pixel_mm2().map(|a| a * f.tumor_pixels() as f64),
            "classes": classes,
            "geojson_regions": f.regions,
        },
        "timings_s": {
            "open_and_thumbnail": t.open,
            "read_decode_thread_sum": t.read,
            "inference": t.inference,
            "stitch_and_write": t.stitch_write,
            "pipeline_wall": t.pipeline_wall,
            "outputs": t.outputs,
            "total": t.total,
        },
        // The whole process so far (a folder run: every slide up to this one).
        "peak_rss_mib": peak_rss_mib(),
        "outputs": outputs.iter().map(|p| absolute(p)).collect::<Vec<_>>(),
    })
}

/// Peak resident memory of this process so far, in MiB (VmHWM).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Writes a small file atomically (see `PartialFile`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    PartialFile::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}

/// Writes NAME.report.json (last, so that its presence means the slide is done).
pub fn write_slide_report(path: &Path, facts: &SlideFacts, outputs: &[PathBuf]) -> Result<PathBuf> {
    // The report lists itself, under the absolute name it is about to get.
    let dir = absolute(path.parent().unwrap_or(Path::new(".")));
    let mut all = outputs.to_vec();
    all.push(dir.join(path.file_name().unwrap_or_default()));
    write_atomic(
        path,
        serde_json::to_string_pretty(&to_json(facts, &all))?.as_bytes(),
    )
}

/// One line of the run summary.
pub struct SummaryEntry {
    slide: PathBuf,
    status: &'static str,
    error: Option<String>,
    tumor_fraction: Option<f64>,
    tumor_mm2: Option<f64>,
    seconds: Option<f64>,
    report: Option<PathBuf>,
}

impl SummaryEntry {
    pub fn done(f: &SlideFacts, paths: &OutputPaths) -> Self {
        Self {
            slide: f.slide.path().to_path_buf(),
            status: "segmented",
            error: None,
            tumor_fraction: Some(f.tumor_pixels() as f64 / f.working.size.area().max(1) as f64),
            tumor_mm2: f.pixel_mm2().map(|a| a * f.tumor_pixels() as f64),
            seconds: Some(f.timings.total),
            report: Some(paths.report.clone()),
        }
    }
    pub fn skipped(slide: &Path, paths: &OutputPaths) -> Self {
        Self {
            slide: slide.to_path_buf(),
            status: "skipped",
            error: None,
            tumor_fraction: None,
            tumor_mm2: None,
            seconds: None,
            report: paths.report.exists().then(|| paths.report.clone()),
        }
    }
    pub fn failed(slide: &Path, e: &anyhow::Error) -> Self {
        Self {
            slide: slide.to_path_buf(),
            status: "failed",
            error: Some(
                format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            tumor_fraction: None,
            tumor_mm2: None,
            seconds: None,
            report: None,
        }
    }
}

/// Writes summary.json and summary.csv for the run into `out`.
pub fn write_summary(out: &Path, entries: &[SummaryEntry]) -> Result<()> {
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "slide": absolute(&e.slide), "status": e.status, "error": e.error,
                "tumor_fraction": e.tumor_fraction, "tumor_mm2": e.tumor_mm2,
                "seconds": e.seconds, "report": e.report,
            })
        })
        .collect();
    let doc = json!({"wsiseg_version": env!("CARGO_PKG_VERSION"), "slides": rows});
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&doc)?.as_bytes(),
    )?;
    let cell = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv = String::from("slide,status,tumor_fraction,tumor_mm2,seconds,error\n");
    for e in entries {
        csv += &format!(
            "{},{},{},{},{},{}\n",
            quote(&e.slide.display().to_string()),
            e.status,
            cell(e.tumor_fraction),
            cell(e.tumor_mm2),
            cell(e.seconds),
            quote(e.error.as_deref().unwrap_or_default())
        );
    }
    write_atomic(&out.join("summary.csv"), csv.as_bytes())?;
    Ok(())
}
