//! `wsiseg segment`: a slide or a folder of slides into label masks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wsiseg_infer::{describe, Device, Precision, Segmenter};
use wsiseg_slide::{Resolution, Slide, TilePlan, WorkingLevel};

use crate::args::SegmentArgs;
use crate::pipeline::Job;

/// Settings shared by every slide of a run, checked before any slide is touched.
struct Settings {
    tile: u32,
    overlap: u32,
    batch: usize,
}

/// Outcome of a whole run: how many slides were done, skipped, failed.
pub struct RunSummary {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
}

pub fn run(args: &SegmentArgs) -> Result<RunSummary> {
    let slides = list_inputs(&args.input)?;
    let device = args.device.resolve()?;
    let precision = args.precision.unwrap_or(Precision::default_for(device));
    log_runtime(device, precision);
    let model = Segmenter::load(&args.model, device, precision)?;
    let m = model.manifest();
    tracing::info!(
        "model {} ({}): {} px tiles, {} classes, {}",
        m.name,
        model.path().display(),
        m.tile,
        m.classes.len(),
        m.mpp
            .map(|x| format!("{x} µm/px"))
            .unwrap_or_else(|| "any resolution".into())
    );
    let settings = settings(args, &model, device)?;
    prepare_out_dir(&args.out)?;
    check_output_names(&slides)?;

    let mut summary = RunSummary {
        done: 0,
        skipped: 0,
        failed: 0,
    };
    for path in &slides {
        let mask_path = args.out.join(mask_name(path));
        if mask_path.exists() && !args.overwrite {
            tracing::info!(
                "{}: skipped, {} exists (--overwrite to redo)",
                path.display(),
                mask_path.display()
            );
            summary.skipped += 1;
            continue;
        }
        match segment_one(path, mask_path, args, &settings, &model) {
            Ok(()) => summary.done += 1,
            Err(e) => {
                crate::report_error(&e);
                summary.failed += 1;
            }
        }
    }
    if slides.len() > 1 {
        tracing::info!(
            "{} slides: {} segmented, {} skipped, {} failed",
            slides.len(),
            summary.done,
            summary.skipped,
            summary.failed
        );
    }
    Ok(summary)
}

fn log_runtime(device: Device, precision: Precision) {
    tracing::info!(
        "wsiseg {} · libtorch CUDA support {} · {} CUDA device(s) · running on {} in {}",
        env!("CARGO_PKG_VERSION"),
        if wsiseg_infer::cuda_support_linked() {
            "linked"
        } else {
            "NOT linked"
        },
        wsiseg_infer::cuda_device_count(),
        describe(device),
        precision
    );
}

fn settings(args: &SegmentArgs, model: &Segmenter, device: Device) -> Result<Settings> {
    let m = model.manifest();
    let tile = args.tile.unwrap_or(m.tile);
    if tile == 0 || !tile.is_multiple_of(m.tile_multiple) {
        bail!(
            "--tile {tile}: model {} needs tiles that are a positive multiple of {} pixels",
            m.name,
            m.tile_multiple
        );
    }
    let overlap = args.overlap.unwrap_or(tile / 8);
    if overlap >= tile {
        bail!("--overlap {overlap} must be smaller than --tile {tile}");
    }
    let batch = args.batch.unwrap_or(if device.is_cuda() { 32 } else { 8 });
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    Ok(Settings {
        tile,
        overlap,
        batch,
    })
}

/// The slides named by INPUT: the file itself, or the slide files of a folder.
fn list_inputs(input: &Path) -> Result<Vec<PathBuf>> {
    if !input.exists() {
        bail!("{}: no such file or folder", input.display());
    }
    if !input.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut slides = Vec::new();
    let mut others = 0;
    for entry in std::fs::read_dir(input)
        .with_context(|| format!("{}: cannot list folder", input.display()))?
    {
        let path = entry
            .with_context(|| format!("{}: cannot list folder", input.display()))?
            .path();
        if path.is_file() && wsiseg_slide::has_slide_extension(&path) {
            slides.push(path);
        } else {
            others += 1;
        }
    }
    slides.sort();
    if slides.is_empty() {
        bail!(
            "{}: no slides in this folder (looked for {})",
            input.display(),
            wsiseg_slide::SLIDE_EXTENSIONS.join(", ")
        );
    }
    tracing::info!(
        "{}: {} slide(s){}",
        input.display(),
        slides.len(),
        if others > 0 {
            format!(", {others} other entries ignored")
        } else {
            String::new()
        }
    );
    Ok(slides)
}

fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        bail!("{}: --out must be a folder, this is a file", out.display());
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create output folder", out.display()))
}

/// `NAME.mask.png` for slide `NAME.ext`.
fn mask_name(slide: &Path) -> String {
    let stem = slide.file_stem().unwrap_or_default().to_string_lossy();
    format!("{stem}.mask.png")
}

/// Two slides that differ only by extension would write the same mask.
fn check_output_names(slides: &[PathBuf]) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for s in slides {
        if let Some(prev) = seen.insert(mask_name(s), s) {
            bail!(
                "{} and {} would both write {}: move one of them to another folder",
                prev.display(),
                s.display(),
                mask_name(s)
            );
        }
    }
    Ok(())
}

fn resolution(args: &SegmentArgs, slide: &dyn Slide, model: &Segmenter) -> Resolution {
    if let Some(level) = args.level {
        return Resolution::Level(level);
    }
    if let Some(mpp) = args.mpp {
        return Resolution::Mpp(mpp);
    }
    match (model.manifest().mpp, slide.mpp()) {
        (Some(want), Some(have)) if want >= have.mean() * 0.999 => Resolution::Mpp(want),
        (Some(want), Some(have)) => {
            tracing::warn!(
                "{}: the model expects {want} µm/px but the slide's finest level is {:.3} µm/px; segmenting level 0",
                slide.path().display(),
                have.mean()
            );
            Resolution::Level(0)
        }
        (Some(want), None) => {
            tracing::warn!(
                "{}: the slide does not record its resolution; segmenting level 0 (the model expects {want} µm/px; choose with --level)",
                slide.path().display()
            );
            Resolution::Level(0)
        }
        (None, _) => Resolution::Level(0),
    }
}

fn segment_one(
    path: &Path,
    mask_path: PathBuf,
    args: &SegmentArgs,
    settings: &Settings,
    model: &Segmenter,
) -> Result<()> {
    let slide = wsiseg_slide::open(path)?;
    let working = WorkingLevel::choose(slide.as_ref(), resolution(args, slide.as_ref(), model))?;
    let plan = TilePlan::new(working.size, settings.tile, settings.overlap)
        .with_context(|| format!("{}: cannot tile level", path.display()))?;
    tracing::info!(
        "{}: {} {} → working {} from level {}{} ({}), {} tiles of {} px, overlap {}",
        path.display(),
        slide.format(),
        slide.levels()[0].size,
        working.size,
        working.source_level,
        if working.scale == 1.0 {
            String::new()
        } else {
            format!(" scaled 1/{:.3}", working.scale)
        },
        working
            .mpp
            .map(|m| format!("{m:.3} µm/px"))
            .unwrap_or_else(|| "resolution unknown".into()),
        plan.len(),
        settings.tile,
        settings.overlap
    );
    let outcome = Job {
        slide: slide.as_ref(),
        working,
        plan,
        model,
        batch: settings.batch,
        readers: args.readers,
        mask_path,
    }
    .run()?;
    let total: u64 = outcome.class_pixels.iter().sum();
    let classes = &model.manifest().classes;
    let shares = outcome
        .class_pixels
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, &n)| {
            let name = classes.get(i).map(String::as_str).unwrap_or("?");
            format!("{name} {:.2}%", 100.0 * n as f64 / total.max(1) as f64)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let secs = outcome.elapsed.as_secs_f64();
    tracing::info!(
        "{}: {} tiles in {:.1} s ({:.1} tiles/s); {} → {}",
        path.display(),
        outcome.tiles,
        secs,
        outcome.tiles as f64 / secs.max(1e-9),
        shares,
        outcome.mask_path.display()
    );
    Ok(())
}
