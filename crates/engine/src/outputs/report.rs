//! NAME.report.json: everything about one slide's run, written after the
//! other outputs (it lists them); and the summary of a folder.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wsiseg_write::Staged;

use super::{stage_bytes, MaskOutput, SlideResult};
use crate::EngineError;

/// The report: written last of the outputs, it lists them and what the
/// run measured.
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

/// The slide's area in mm², when its resolution is known.
pub(crate) fn slide_mm2(slide: &dyn wsiseg_slide::Slide) -> Option<f64> {
    let s = slide.levels()[0].size;
    slide.mpp().map(|m| s.area() as f64 * m.x * m.y / 1e6)
}

/// Pixels of every class but background.
pub(crate) fn tumor_pixels(class_pixels: &[u64]) -> u64 {
    class_pixels[1..].iter().sum()
}

/// Absolute form of a path that exists (reports outlive the working directory).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
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
    // Size and quick hash, as the run record identifies the slide.
    let identity = crate::record::SlideIdentity::of(s.path()).ok();
    let working_px = working.size.area();
    let classes = class_areas(r, working_px);
    let t = &r.stats;
    let tumor = tumor_pixels(&r.stats.class_pixels);
    let tissue_fraction = plan.tissue.as_ref().map(|t| t.fraction);
    let tumor_fraction = tumor as f64 / working_px.max(1) as f64;
    json!({
        "wsiseg_version": env!("CARGO_PKG_VERSION"),
        "run": run_json(r),
        "slide": {
            "path": absolute(s.path()),
            "bytes": identity.as_ref().map(|i| i.bytes),
            // SHA-256 of the size (8 bytes, little-endian), the first and the
            // last MiB: tells two files apart in milliseconds, whatever their size.
            "quick_sha256": identity.map(|i| i.quick_hash),
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
            "slide_mm2": slide_mm2(s),
            "tissue_fraction": tissue_fraction,
            "tissue_mm2": tissue_fraction.zip(slide_mm2(s)).map(|(a, b)| a * b),
            "tumor_fraction": tumor_fraction,
            "tumor_mm2": pixel_mm2(r).map(|a| a * tumor as f64),
            "classes": classes,
            "geojson_regions": r.regions,
        },
        "statistics": statistics_json(r, tumor_fraction, tissue_fraction),
        "timings_s": {
            "open_and_thumbnail": t.plan_s,
            "read_decode_thread_sum": t.read_s,
            "inference": t.inference_s,
            "stitch_and_write": t.stitch_write_s,
            "stitch": t.stitch_s,
            "write": t.writers_s.iter().map(|&(f, s)| (f.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
            "pipeline_wall": t.pipeline_wall_s,
            "outputs": t.outputs_s,
            "total": t.total_s,
        },
        // The whole process so far (a folder run: every slide up to this one).
        "peak_rss_mib": crate::memory::peak_rss_mib(),
        // The budget it had to stay under (--max-memory).
        "max_memory_mib": crate::memory::budget().map(|b| b as f64 / f64::from(1u32 << 20)),
        // Of which wsiseg's own buffers (not libtorch's), when the binary counts them.
        "peak_rust_heap_mib": crate::memory::rust_peak_mib(),
        // The malloc libtorch's tensors live on (its speed and resident size).
        "malloc": crate::memory::malloc_name(),
        "outputs": outputs.iter().map(|p| absolute(p)).collect::<Vec<_>>(),
    })
}

/// The share of the tissue that is tumor: both fractions are of the
/// slide's area (tissue from the thumbnail); at most 1.
pub(crate) fn tumor_share_of_tissue(tumor_fraction: f64, tissue: Option<f64>) -> Option<f64> {
    tissue
        .filter(|&t| t > 0.0)
        .map(|t| (tumor_fraction / t).min(1.0))
}

/// Regions and probabilities of the mask: numbers that show an odd slide
/// without looking at it.
fn statistics_json(r: &SlideResult, tumor_fraction: f64, tissue: Option<f64>) -> Value {
    let st = &r.statistics;
    let mm2 = pixel_mm2(r);
    let bins = wsiseg_eval::size_bins(mm2);
    let mut by_size = vec![0u64; bins.len()];
    for &a in &st.regions {
        by_size[wsiseg_eval::size_bin(a, mm2)] += 1;
    }
    let largest = st.regions.first().copied();
    let probability = st.probability.as_ref().map(|h| {
        // Ten bins of P: [0, 0.1), …, [0.9, 1].
        let mut tenths = [0u64; 10];
        for (v, &n) in h.iter().enumerate() {
            tenths[(v * 10 / 256).min(9)] += n;
        }
        json!({
            "histogram_tenths": tenths,
            "uncertain_range": [0.3, 0.7],
            "uncertain_fraction": st.uncertain_fraction(),
        })
    });
    json!({
        "tumor_share_of_tissue": tumor_share_of_tissue(tumor_fraction, tissue),
        "regions": {
            "count": st.regions.len(),
            "largest_pixels": largest,
            "largest_mm2": largest.zip(mm2).map(|(a, k)| a as f64 * k),
            "by_size": bins.iter().zip(&by_size).map(|((_, name), n)| json!({"size": name, "count": n})).collect::<Vec<_>>(),
        },
        "probability": probability,
    })
}

/// What ran, when, where and with which libraries: enough, with
/// "parameters" and "model", to run the same thing again.
fn run_json(r: &SlideResult) -> Value {
    let now = std::time::SystemTime::now();
    let started = now
        .checked_sub(std::time::Duration::from_secs_f64(r.stats.total_s.max(0.0)))
        .unwrap_or(now);
    let mut versions = json!({
        "wsiseg": env!("CARGO_PKG_VERSION"),
        "openslide": wsiseg_slide::openslide_version(),
    });
    for (name, version) in r.libraries {
        versions[*name] = json!(version);
    }
    json!({
        "started_utc": utc(started),
        "finished_utc": utc(now),
        "command_line": std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "working_directory": std::env::current_dir().ok(),
        "host": host_name(),
        "devices": r.parameters["device"].as_str().map(|d| d.split(',').map(str::to_string).collect::<Vec<_>>()),
        "precision": r.parameters["precision"],
        "versions": versions,
    })
}

/// `2026-11-27T05:40:12Z` (UTC, whole seconds).
pub(crate) fn utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// This machine's name.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Writes a small file completely or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf, EngineError> {
    wsiseg_write::PartialFile::write(path, bytes)
        .map_err(|e| EngineError::io(path, "cannot write", e))
}
