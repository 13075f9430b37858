//! NAME.report.json: everything about one slide's run, built by the
//! engine from what the run measured once the outputs are finished (it
//! lists them), as a [`SlideReport`]; and the small helpers every file
//! about runs shares (absolute paths, UTC times, atomic writes).

use std::path::{Path, PathBuf};

use wsiseg_report::{
    Areas, BadTile, ClassArea, Dimensions, Grid, Model, MppXy, Parameters, Probability, Rectangle,
    Regions, Run, SizeBin, SlideInfo, SlideReport, Statistics, Tiles, Timings, WorkingLevel,
};
use wsiseg_write::{Staged, WriteLimit};

use crate::outputs::{stage_bytes, MaskStatistics, OutputContext};
use crate::{EngineError, RunStats};

/// What the report is made of, besides the slide and its plan.
pub(crate) struct ReportInput<'a> {
    /// The slide, its plan, request and class names.
    pub context: &'a OutputContext<'a>,
    /// Times and counts, up to the report.
    pub stats: &'a RunStats,
    /// What was measured on the mask.
    pub statistics: &'a MaskStatistics,
    /// Every setting, resolved.
    pub parameters: Parameters,
    /// The model.
    pub model: Model,
    /// The model runtime's libraries and their versions.
    pub libraries: &'a [(&'static str, Option<String>)],
    /// Tumor regions the GeoJSON/ASAP output wrote, when it ran.
    pub regions_written: Option<usize>,
    /// The files finished before the report, final names, in order.
    pub files: &'a [PathBuf],
}

/// Stages NAME.report.json: the report lists itself, under the absolute
/// name it is about to get.
pub(crate) fn stage_report(input: &ReportInput, limit: &WriteLimit) -> Result<Staged, EngineError> {
    let path = input.context.paths.report();
    let dir = absolute(path.parent().unwrap_or(Path::new(".")));
    let mut all = input.files.to_vec();
    all.push(dir.join(path.file_name().unwrap_or_default()));
    let text = wsiseg_report::to_text(&slide_report(input, &all))
        .map_err(|e| EngineError::io(&path, "cannot write", e.into()))?;
    stage_bytes(&path, text.as_bytes(), limit)
}

/// Area of one working-level pixel in mm², when the resolution is known.
fn pixel_mm2(ctx: &OutputContext) -> Option<f64> {
    ctx.plan.working.mpp.map(|m| (m / 1000.0).powi(2))
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

/// The report of a finished slide whose files are `outputs`.
fn slide_report(input: &ReportInput, outputs: &[PathBuf]) -> SlideReport {
    let ctx = input.context;
    let t = input.stats;
    let tumor_fraction = tumor_pixels(&t.class_pixels) as f64 / working_pixels(ctx);
    let tissue_fraction = ctx.plan.tissue.as_ref().map(|t| t.fraction);
    SlideReport {
        wsiseg_version: env!("CARGO_PKG_VERSION").to_string(),
        run: run_info(input),
        slide: slide_info(ctx.slide),
        working_level: working_level(ctx, t),
        model: input.model.clone(),
        parameters: input.parameters.clone(),
        tiles: Tiles {
            planned: ctx.plan.tiles.len(),
            with_tissue: t.tiles_with_tissue,
            run: t.tiles_run,
            size: ctx.plan.tiles.tile_size(),
            grid: Grid {
                cols: ctx.plan.tiles.cols(),
                rows: ctx.plan.tiles.rows(),
            },
            per_worker: t.tiles_per_worker.clone(),
        },
        bad_tiles: t.bad_tiles.iter().map(bad_tile).collect(),
        areas: areas(input, tumor_fraction),
        statistics: statistics(
            input.statistics,
            pixel_mm2(ctx),
            tumor_fraction,
            tissue_fraction,
        ),
        timings_s: Timings {
            open_and_thumbnail: t.plan_s,
            waiting_for_model: t.model_wait_s,
            read_decode_thread_sum: t.read_s,
            inference: t.inference_s,
            stitch_and_write: t.stitch_write_s,
            stitch: t.stitch_s,
            write: t
                .writers_s
                .iter()
                .map(|&(f, s)| (f.to_string(), s))
                .collect(),
            pipeline_wall: t.pipeline_wall_s,
            outputs: t.outputs_s,
            total: t.total_s,
        },
        peak_rss_mib: crate::memory::peak_rss_mib(),
        max_memory_mib: crate::memory::budget().map(|b| b as f64 / f64::from(1u32 << 20)),
        peak_rust_heap_mib: crate::memory::rust_peak_mib(),
        malloc: crate::memory::malloc_name().to_string(),
        outputs: outputs.iter().map(|p| absolute(p)).collect(),
    }
}

/// Pixels of the working level (at least 1).
fn working_pixels(ctx: &OutputContext) -> f64 {
    ctx.plan.working.size.area().max(1) as f64
}

/// The slide file: path, size and quick hash (as the run record
/// identifies it), format, levels, resolution.
fn slide_info(s: &dyn wsiseg_slide::Slide) -> SlideInfo {
    let identity = crate::record::SlideIdentity::of(s.path()).ok();
    let l0 = s.levels()[0].size;
    SlideInfo {
        path: absolute(s.path()),
        bytes: identity.as_ref().map(|i| i.bytes),
        quick_sha256: identity.map(|i| i.quick_hash),
        format: s.format().to_string(),
        level0: Dimensions {
            width: l0.w,
            height: l0.h,
        },
        levels: s.levels().len(),
        mpp: s.mpp().map(|m| MppXy { x: m.x, y: m.y }),
    }
}

fn working_level(ctx: &OutputContext, stats: &RunStats) -> WorkingLevel {
    let working = &ctx.plan.working;
    WorkingLevel {
        source_level: working.source_level,
        scale_from_source: working.scale,
        downsample_from_level0: working.downsample,
        width: working.size.w,
        height: working.size.h,
        mpp: working.mpp,
        read_by: match ctx.slide.direct_codec(working.source_level) {
            Some(codec) => format!("direct {codec} tiles"),
            None => "OpenSlide".to_string(),
        },
        decoded_by: stats.decoded_by.clone(),
        tiles_decoded_on_device: stats.device_decoded,
        device_decode_fallbacks: stats.decode_fallbacks,
    }
}

fn bad_tile(b: &crate::BadTile) -> BadTile {
    BadTile {
        level: b.level,
        tile: b.tile,
        level0: Rectangle {
            x: b.level0[0],
            y: b.level0[1],
            width: b.level0[2],
            height: b.level0[3],
        },
        error: b.detail.clone(),
    }
}

/// The slide's, the tissue's, the tumor's and every class's area.
fn areas(input: &ReportInput, tumor_fraction: f64) -> Areas {
    let ctx = input.context;
    let mm2 = pixel_mm2(ctx);
    let class_pixels = &input.stats.class_pixels;
    let tissue_fraction = ctx.plan.tissue.as_ref().map(|t| t.fraction);
    Areas {
        slide_mm2: slide_mm2(ctx.slide),
        tissue_fraction,
        tissue_mm2: tissue_fraction
            .zip(slide_mm2(ctx.slide))
            .map(|(a, b)| a * b),
        tumor_fraction,
        tumor_mm2: mm2.map(|a| a * tumor_pixels(class_pixels) as f64),
        classes: ctx
            .classes
            .iter()
            .zip(class_pixels)
            .map(|(name, &pixels)| {
                let area = ClassArea {
                    pixels,
                    fraction: pixels as f64 / working_pixels(ctx),
                    area_mm2: mm2.map(|a| a * pixels as f64),
                };
                (name.clone(), area)
            })
            .collect(),
        geojson_regions: input.regions_written,
    }
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
fn statistics(
    st: &MaskStatistics,
    mm2: Option<f64>,
    tumor_fraction: f64,
    tissue: Option<f64>,
) -> Statistics {
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
        Probability {
            histogram_tenths: tenths,
            uncertain_range: [0.3, 0.7],
            uncertain_fraction: st.uncertain_fraction(),
        }
    });
    Statistics {
        tumor_share_of_tissue: tumor_share_of_tissue(tumor_fraction, tissue),
        regions: Regions {
            count: st.regions.len(),
            largest_pixels: largest,
            largest_mm2: largest.zip(mm2).map(|(a, k)| a as f64 * k),
            by_size: bins
                .iter()
                .zip(&by_size)
                .map(|((_, name), &count)| SizeBin {
                    size: name.to_string(),
                    count,
                })
                .collect(),
        },
        probability,
    }
}

/// What ran, when, where and with which libraries: enough, with
/// "parameters" and "model", to run the same thing again.
fn run_info(input: &ReportInput) -> Run {
    let now = std::time::SystemTime::now();
    let started = now
        .checked_sub(std::time::Duration::from_secs_f64(
            input.stats.total_s.max(0.0),
        ))
        .unwrap_or(now);
    let mut versions = std::collections::BTreeMap::from([
        (
            "wsiseg".to_string(),
            Some(env!("CARGO_PKG_VERSION").to_string()),
        ),
        ("openslide".to_string(), wsiseg_slide::openslide_version()),
    ]);
    for (name, version) in input.libraries {
        versions.insert(name.to_string(), version.clone());
    }
    let p = &input.parameters;
    Run {
        started_utc: utc(started),
        finished_utc: utc(now),
        command_line: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        working_directory: std::env::current_dir().ok(),
        host: host_name(),
        devices: p.device.split(',').map(str::to_string).collect(),
        precision: p.precision.clone(),
        versions,
    }
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
