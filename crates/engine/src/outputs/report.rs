//! NAME.report.json: everything about one slide's run, written after the
//! other outputs (it lists them); and the summary of a folder.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wsiseg_write::Staged;

use super::{stage_bytes, MaskOutput, SlideResult};
use crate::EngineError;

/// The report: written last of the outputs, it lists them.
pub(super) struct Report;

impl MaskOutput for Report {
    fn finish(self: Box<Self>, result: &mut SlideResult) -> Result<Vec<Staged>, EngineError> {
        let path = result.context.paths.report();
        // The report lists itself, under the absolute name it is about to get.
        let dir = absolute(path.parent().unwrap_or(Path::new(".")));
        let mut all = result.files.clone();
        all.push(dir.join(path.file_name().unwrap_or_default()));
        let text = serde_json::to_string_pretty(&to_json(result, &all))
            .map_err(|e| EngineError::io(&path, "cannot write", e.into()))?;
        Ok(vec![stage_bytes(
            &path,
            text.as_bytes(),
            result.context.limit,
        )?])
    }
}

/// Area of one working-level pixel in mm², when the resolution is known.
fn pixel_mm2(r: &SlideResult) -> Option<f64> {
    r.context.plan.working.mpp.map(|m| (m / 1000.0).powi(2))
}

fn level0_mm2(r: &SlideResult) -> Option<f64> {
    let slide = r.context.slide;
    let s = slide.levels()[0].size;
    slide.mpp().map(|m| s.area() as f64 * m.x * m.y / 1e6)
}

/// Pixels of every class but background.
pub(crate) fn tumor_pixels(class_pixels: &[u64]) -> u64 {
    class_pixels[1..].iter().sum()
}

/// Absolute form of a path that exists (reports outlive the working directory).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Pixels, share of the working level and area of every class.
fn class_areas(r: &SlideResult, working_px: u64) -> serde_json::Map<String, Value> {
    r.context
        .classes
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let px = r.stats.class_pixels[k];
            (
                name.clone(),
                json!({
                    "pixels": px,
                    "fraction": px as f64 / working_px.max(1) as f64,
                    "area_mm2": pixel_mm2(r).map(|a| a * px as f64),
                }),
            )
        })
        .collect()
}

fn to_json(r: &SlideResult, outputs: &[PathBuf]) -> Value {
    let ctx = r.context;
    let s = ctx.slide;
    let plan = ctx.plan;
    let working = &plan.working;
    let l0 = s.levels()[0].size;
    let bytes = std::fs::metadata(s.path()).map(|m| m.len()).ok();
    let working_px = working.size.area();
    let classes = class_areas(r, working_px);
    let t = &r.stats;
    let tumor = tumor_pixels(&r.stats.class_pixels);
    let tissue_fraction = plan.tissue.as_ref().map(|t| t.fraction);
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
            "source_level": working.source_level,
            "scale_from_source": working.scale,
            "downsample_from_level0": working.downsample,
            "width": working.size.w,
            "height": working.size.h,
            "mpp": working.mpp,
            "read_by": if s.reads_directly(working.source_level) {
                "direct JPEG tiles"
            } else {
                "OpenSlide"
            },
        },
        "model": r.model,
        "parameters": r.parameters,
        "tiles": {
            "planned": plan.tiles.len(),
            "with_tissue": t.tiles_with_tissue,
            "run": t.tiles_run,
            "size": plan.tiles.tile_size(),
            "grid": {"cols": plan.tiles.cols(), "rows": plan.tiles.rows()},
            "per_worker": t.tiles_per_worker,
        },
        // Corrupt stored tiles whose working tiles were made background
        // (--bad-tiles background), with their level-0 rectangles.
        "bad_tiles": t.bad_tiles.iter().map(|b| json!({
            "level": b.level,
            "tile": b.tile,
            "level0": {"x": b.level0[0], "y": b.level0[1], "width": b.level0[2], "height": b.level0[3]},
            "error": b.detail,
        })).collect::<Vec<_>>(),
        "areas": {
            "slide_mm2": level0_mm2(r),
            "tissue_fraction": tissue_fraction,
            "tissue_mm2": tissue_fraction.zip(level0_mm2(r)).map(|(a, b)| a * b),
            "tumor_fraction": tumor as f64 / working_px.max(1) as f64,
            "tumor_mm2": pixel_mm2(r).map(|a| a * tumor as f64),
            "classes": classes,
            "geojson_regions": r.regions,
        },
        "timings_s": {
            "open_and_thumbnail": t.plan_s,
            "read_decode_thread_sum": t.read_s,
            "inference": t.inference_s,
            "stitch_and_write": t.stitch_write_s,
            "pipeline_wall": t.pipeline_wall_s,
            "outputs": t.outputs_s,
            "total": t.total_s,
        },
        // The whole process so far (a folder run: every slide up to this one).
        "peak_rss_mib": peak_rss_mib(),
        // The budget it had to stay under (--max-memory).
        "max_memory_mib": crate::memory::budget().map(|b| b as f64 / f64::from(1u32 << 20)),
        // Of which wsiseg's own buffers (not libtorch's), when the binary counts them.
        "peak_rust_heap_mib": crate::memory::rust_peak_mib(),
        // The malloc libtorch's tensors live on (its speed and resident size).
        "malloc": crate::memory::malloc_name(),
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

/// Writes a small file completely or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf, EngineError> {
    wsiseg_write::PartialFile::write(path, bytes)
        .map_err(|e| EngineError::io(path, "cannot write", e))
}
