//! `wsiseg segment`: a slide or a folder of slides into label masks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use wsiseg_infer::{describe, Device, Manifest, Precision, Segmenter};
use wsiseg_slide::{
    PyramidOptions, PyramidWriter, Reduce, Resolution, Size, Slide, TilePlan, WorkingLevel,
};
use wsiseg_stitch::{NearestRows, PngMaskWriter};

use crate::args::{Format, MaskValues, SegmentArgs};
use crate::outputs::{
    check_existing, fit, Existing, LabelSink, OutputPaths, PngOut, ProbSink, GEOMETRY_SIDE,
    OVERVIEW_SIDE,
};
use crate::pipeline::Job;
use crate::{geojson, overlay, report};

/// Settings shared by every slide of a run, checked before any slide is touched.
struct Settings {
    tile: u32,
    overlap: u32,
    batch: usize,
    readers: usize,
}

/// Outcome of a whole run: how many slides were done, skipped, failed.
pub struct RunSummary {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
}

pub fn run(args: &SegmentArgs) -> Result<RunSummary> {
    let slides = list_inputs(&args.input)?;
    check_options(args)?;
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
    if args.mask_values == MaskValues::Binary255 && m.classes.len() > 2 {
        bail!(
            "--mask-values 0255 is for two-class models; {} has {} classes",
            m.name,
            m.classes.len()
        );
    }
    let settings = settings(args, &model, device)?;
    if device.is_cuda() {
        model.warm_up(settings.batch, settings.tile)?;
    }
    let model_info = report::ModelInfo::of(&model)?;
    prepare_out_dir(&args.out)?;
    check_output_names(&slides)?;

    let mut summary = RunSummary {
        done: 0,
        skipped: 0,
        failed: 0,
    };
    let mut entries = Vec::new();
    for path in &slides {
        let paths = OutputPaths::new(&args.out, path);
        let requested = paths.requested(&args.formats, args.probabilities);
        let result =
            check_existing(&requested, args.overwrite).and_then(|existing| match existing {
                Existing::All => Ok(None),
                Existing::None => {
                    segment_one(path, &paths, args, &settings, &model, &model_info).map(Some)
                }
            });
        match result {
            Ok(Some(entry)) => {
                summary.done += 1;
                entries.push(entry);
            }
            Ok(None) => {
                tracing::info!(
                    "{}: skipped, its outputs exist (--overwrite to redo)",
                    path.display()
                );
                summary.skipped += 1;
                entries.push(report::SummaryEntry::skipped(path, &paths));
            }
            Err(e) => {
                crate::report_error(&e);
                summary.failed += 1;
                entries.push(report::SummaryEntry::failed(path, &e));
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
    if args.formats.contains(&Format::Report) && args.input.is_dir() {
        report::write_summary(&args.out, &entries)?;
    }
    Ok(summary)
}

/// Options that are impossible whatever the slide.
fn check_options(args: &SegmentArgs) -> Result<()> {
    if args.formats.is_empty() && !args.probabilities {
        bail!("--formats is empty: nothing to write");
    }
    if let Some(m) = args.mask_mpp {
        if !(m.is_finite() && m > 0.0) {
            bail!("--mask-mpp must be a positive number of µm per pixel, got {m}");
        }
    }
    if !(args.min_area.is_finite() && args.min_area >= 0.0) {
        bail!("--min-area must be zero or positive, got {}", args.min_area);
    }
    Ok(())
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
    let readers = args.readers.unwrap_or_else(crate::args::default_readers);
    if readers == 0 {
        bail!("--readers must be at least 1");
    }
    Ok(Settings {
        tile,
        overlap,
        batch,
        readers,
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
            format!(", {others} other entries (not slides) ignored")
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

/// Two slides that differ only by extension would write the same files.
fn check_output_names(slides: &[PathBuf]) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for s in slides {
        let stem = s.file_stem().unwrap_or_default().to_os_string();
        if let Some(prev) = seen.insert(stem, s) {
            bail!(
                "{} and {} would write outputs of the same name: move one of them to another folder",
                prev.display(),
                s.display()
            );
        }
    }
    Ok(())
}

pub(crate) fn resolution(args: &SegmentArgs, slide: &dyn Slide, model: &Manifest) -> Resolution {
    if let Some(level) = args.level {
        return Resolution::Level(level);
    }
    if let Some(mpp) = args.mpp {
        return Resolution::Mpp(mpp);
    }
    match (model.mpp, slide.mpp()) {
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

/// The size of the PNG mask: the working level, or the level / mpp asked for.
fn png_size(args: &SegmentArgs, slide: &dyn Slide, working: &WorkingLevel) -> Result<Size> {
    if let Some(level) = args.mask_level {
        return Ok(wsiseg_slide::level(slide, level)?.size);
    }
    if let Some(mpp) = args.mask_mpp {
        let level0 = slide.levels()[0].size;
        let mpp0 = slide.mpp().map(|m| m.mean()).with_context(|| {
            format!(
                "{}: the slide does not record its resolution, so --mask-mpp cannot be honoured; use --mask-level",
                slide.path().display()
            )
        })?;
        let scale = mpp0 / mpp;
        return Ok(Size::new(
            ((f64::from(level0.w) * scale).round() as u32).max(1),
            ((f64::from(level0.h) * scale).round() as u32).max(1),
        ));
    }
    Ok(working.size)
}

fn segment_one(
    path: &Path,
    paths: &OutputPaths,
    args: &SegmentArgs,
    settings: &Settings,
    model: &Segmenter,
    model_info: &report::ModelInfo,
) -> Result<report::SummaryEntry> {
    let started = Instant::now();
    let slide = wsiseg_slide::open_with(path, args.reader.into())?;
    let working = WorkingLevel::choose(
        slide.as_ref(),
        resolution(args, slide.as_ref(), model.manifest()),
    )?;
    let plan = TilePlan::new(working.size, settings.tile, settings.overlap)
        .with_context(|| format!("{}: cannot tile level", path.display()))?;
    let png_size = png_size(args, slide.as_ref(), &working)?;
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
    let formats = &args.formats;
    let wants = |f: Format| formats.contains(&f);
    let thumb = if wants(Format::Overlay) || wants(Format::Report) || !args.no_tissue_mask {
        Some(wsiseg_slide::thumbnail(slide.as_ref(), OVERVIEW_SIDE)?)
    } else {
        None
    };
    let tissue = thumb.as_ref().map(|t| {
        let (mask, threshold) = wsiseg_slide::tissue_mask_with(t, args.tissue_threshold);
        let fraction = mask.iter().filter(|&&x| x).count() as f64 / mask.len().max(1) as f64;
        let thumb_size = Size::new(t.width(), t.height());
        let level0 = slide.levels()[0].size;
        let tiles =
            wsiseg_slide::tissue_tiles(&plan, working.downsample, level0, &mask, thumb_size);
        (fraction, tiles, threshold)
    });
    let with_tissue = tissue.as_ref().map(|t| t.1.iter().filter(|&&x| x).count());
    let run = match (&tissue, args.no_tissue_mask) {
        (Some((_, tiles, _)), false) => tiles.clone(),
        _ => vec![true; plan.len()],
    };
    if let (Some(0), Some((_, _, threshold)), false) = (with_tissue, &tissue, args.no_tissue_mask) {
        tracing::warn!(
            "{}: no tissue found (thumbnail saturation > {threshold} nowhere); the mask is all background — lower --tissue-threshold or use --no-tissue-mask",
            path.display()
        );
    } else if let (Some(n), Some((_, _, threshold)), false) =
        (with_tissue, &tissue, args.no_tissue_mask)
    {
        tracing::info!(
            "{}: {n} of {} tiles have tissue (thumbnail saturation > {threshold}); the others are background (--no-tissue-mask runs all)",
            path.display(),
            plan.len()
        );
    }
    let open_seconds = started.elapsed().as_secs_f64();

    let description = format!(
        "wsiseg {} tumor mask of {}: level 0 of this file is the slide's level 0 downsampled by {:.6}; 0 = background, k = class k ({})",
        env!("CARGO_PKG_VERSION"),
        path.file_name().unwrap_or_default().to_string_lossy(),
        working.downsample,
        model.manifest().classes.join(", ")
    );
    let png = if wants(Format::Png) {
        let writer = PngMaskWriter::create(&paths.png, png_size)?;
        Some(if png_size == working.size {
            PngOut::Working(writer)
        } else {
            PngOut::Resampled(NearestRows::new(writer, working.size, png_size))
        })
    } else {
        None
    };
    let tiff = if wants(Format::Tiff) {
        Some(PyramidWriter::create(
            &paths.tiff,
            working.size,
            PyramidOptions::label_mask(working.mpp, Some(description.clone())),
        )?)
    } else {
        None
    };
    let mut labels = LabelSink::new(png, args.mask_values, tiff);
    let thumb_size = thumb.as_ref().map(|t| Size::new(t.width(), t.height()));
    if let (true, Some(ts)) = (wants(Format::Overlay), thumb_size) {
        labels.overview = Some(NearestRows::new(Vec::new(), working.size, ts));
    }
    let geometry_size = fit(working.size, GEOMETRY_SIDE);
    if wants(Format::Geojson) {
        labels.geometry = Some(NearestRows::new(Vec::new(), working.size, geometry_size));
    }
    let probs = if args.probabilities || wants(Format::Overlay) {
        let tiff = if args.probabilities {
            Some(PyramidWriter::create(
                &paths.prob_tiff,
                working.size,
                PyramidOptions {
                    reduce: Reduce::Average,
                    description: Some(
                        description.replace("tumor mask", "tumor probability map (0-255)"),
                    ),
                    ..PyramidOptions::label_mask(working.mpp, None)
                },
            )?)
        } else {
            None
        };
        let overview = match (wants(Format::Overlay), thumb_size) {
            (true, Some(ts)) => Some(NearestRows::new(Vec::new(), working.size, ts)),
            _ => None,
        };
        Some(ProbSink { tiff, overview })
    } else {
        None
    };

    let outcome = Job {
        slide: slide.as_ref(),
        working,
        plan,
        model,
        batch: settings.batch,
        readers: settings.readers,
        labels,
        probs,
        run,
    }
    .run()?;

    let write_started = Instant::now();
    let mut written = Vec::new();
    let mut labels = outcome.labels;
    let counts = labels.counts;
    let overview = labels.overview.take().map(NearestRows::into_inner);
    let geometry = labels.geometry.take().map(NearestRows::into_inner);
    written.extend(labels.commit()?);
    let mut prob_overview = None;
    if let Some(p) = outcome.probs {
        prob_overview = p.overview.map(|o| o.into_inner());
        if let Some(t) = p.tiff {
            written.push(t.finish()?);
        }
    }
    if let (Some(thumb), Some(lab), Some(prob)) = (&thumb, &overview, &prob_overview) {
        written.push(overlay::save_png(
            &overlay::overlay(thumb, lab),
            &paths.overlay,
        )?);
        written.push(overlay::save_png(
            &overlay::heatmap(thumb, prob),
            &paths.heatmap,
        )?);
    }
    let mut regions = None;
    if let Some(g) = &geometry {
        let level0_per_px =
            working.downsample * f64::from(working.size.w) / f64::from(geometry_size.w);
        let (path_written, n) = geojson::write(
            &paths.geojson,
            g,
            geometry_size,
            level0_per_px,
            slide.mpp().map(|m| m.mean()),
            args.min_area,
            &model.manifest().classes,
        )?;
        regions = Some(n);
        written.push(path_written);
    }
    let tissue_fraction = tissue.as_ref().map(|t| t.0);
    let tissue_threshold = tissue.as_ref().map(|t| t.2);
    let timings = report::StageTimes {
        open: open_seconds,
        read: outcome.timings.read,
        inference: outcome.timings.inference,
        stitch_write: outcome.timings.stitch_write,
        pipeline_wall: outcome.timings.wall,
        outputs: write_started.elapsed().as_secs_f64(),
        total: started.elapsed().as_secs_f64(),
    };
    let facts = report::SlideFacts {
        slide: slide.as_ref(),
        working: &working,
        plan: &plan,
        model: model_info,
        args,
        settings_tile: settings.tile,
        settings_overlap: settings.overlap,
        settings_batch: settings.batch,
        settings_readers: settings.readers,
        png_size,
        class_pixels: &counts,
        tissue_fraction,
        tiles_with_tissue: with_tissue,
        tissue_threshold,
        tiles_run: outcome.tiles,
        regions,
        timings,
        classes: &model.manifest().classes,
    };
    let entry = report::SummaryEntry::done(&facts, paths);
    if wants(Format::Report) {
        written.push(report::write_slide_report(&paths.report, &facts, &written)?);
    }
    let tumor = counts.get(1).copied().unwrap_or(0) as f64 / working.size.area().max(1) as f64;
    tracing::info!(
        "{}: {} tiles in {:.1} s ({:.1} tiles/s); tumor {:.2}% of the working level → {}",
        path.display(),
        outcome.tiles,
        timings.total,
        outcome.tiles as f64 / outcome.timings.wall.max(1e-9),
        100.0 * tumor,
        written
            .iter()
            .map(|p| p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(entry)
}
