//! One slide from file to committed outputs: lock, resume by fingerprint,
//! plan, run, finish every output, commit them all, record the run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use wsiseg_slide::Slide;
use wsiseg_write::{partial_name, PartialFile, Staged};

use crate::lock::SlideLock;
use crate::outputs::{self, Format, MaskOutput, OutputContext, OutputPaths, SlideResult};
use crate::pipeline::{BadTile, Job, PipelineStats};
use crate::record::{unix_now, Fingerprint, RecordedFile, RunRecord, SlideFigures, SlideIdentity};
use crate::report::{self, absolute, tumor_pixels, ReportInput};
use crate::{Engine, EngineError, Request, RunControl, SlidePlan, TissuePolicy};

/// Per-stage times (seconds) and counts of one slide's run: what `bench`
/// prints and the report records.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Opening the slide, its thumbnail and the plan.
    pub plan_s: f64,
    /// Waiting for the model to load after the plan (the first slide of a
    /// run, where the load took longer than locking, checking and planning).
    pub model_wait_s: f64,
    /// Reading and decoding tiles, summed over the reader threads.
    pub read_s: f64,
    /// Queuing and collecting batches, summed over the workers.
    pub inference_s: f64,
    /// Stitching and writing: the busy time of the busiest of the
    /// stitcher thread and the writer threads (they run side by side).
    pub stitch_write_s: f64,
    /// The stitcher thread's busy time (stitching, counting, handing bands on).
    pub stitch_s: f64,
    /// Each output's writer thread's busy time, by format name.
    pub writers_s: Vec<(&'static str, f64)>,
    /// Wall time of the pipeline, first read to last row.
    pub pipeline_wall_s: f64,
    /// Finishing the outputs (GeoJSON tracing, pictures, TIFF directories).
    pub outputs_s: f64,
    /// The whole slide, opening to the last output.
    pub total_s: f64,
    /// Tiles planned over the working level.
    pub tiles_planned: usize,
    /// Tiles whose core holds tissue, when tissue was detected.
    pub tiles_with_tissue: Option<usize>,
    /// Tiles run through the model.
    pub tiles_run: usize,
    /// Tiles run by each worker, in device order.
    pub tiles_per_worker: Vec<usize>,
    /// Working-level pixels per label value (256 entries).
    pub class_pixels: Vec<u64>,
    /// Corrupt stored tiles made background (`--bad-tiles background`).
    pub bad_tiles: Vec<BadTile>,
    /// Where the tiles were decoded: `cpu`, `gpu: nvJPEG (hardware)`…
    pub decoded_by: String,
    /// Stored JPEG tiles decoded on the devices.
    pub device_decoded: u64,
    /// Batches the device decoder failed on, decoded on the host instead.
    pub decode_fallbacks: u64,
}

/// How a slide ended.
#[derive(Debug)]
pub enum SlideOutcome {
    /// Segmented now.
    Segmented {
        /// Times and counts.
        stats: Box<RunStats>,
        /// The files written, in order.
        files: Vec<PathBuf>,
        /// What was found.
        figures: SlideFigures,
    },
    /// Its outputs were complete, made with the same fingerprint.
    Skipped(Box<RunRecord>),
}

/// Finished outputs waiting for their names.
pub struct RunOutput {
    /// Times and counts.
    pub stats: RunStats,
    /// Every output's files, complete and fsynced, in order.
    pub staged: Vec<Staged>,
    /// What was found.
    pub figures: SlideFigures,
}

impl Engine {
    /// Segments `slide` into `out` as `request` says: see the crate
    /// documentation for the guarantees (lock, resume, commit).
    pub fn segment(
        &self,
        slide: &Path,
        out: &Path,
        request: &Request,
        control: &RunControl,
    ) -> Result<SlideOutcome, EngineError> {
        self.segment_with(slide, out, request, control, Vec::new())
    }

    /// [`Self::segment`], also streaming the mask into outputs the caller
    /// implements: each takes the rows as the built-in ones do, on a
    /// thread of its own, and its staged files are committed (and listed
    /// in the report and run record) with theirs — all or none. A slide
    /// skipped as done runs no output; `request.overwrite` runs it again.
    pub fn segment_with(
        &self,
        slide: &Path,
        out: &Path,
        request: &Request,
        control: &RunControl,
        extra: Vec<Box<dyn MaskOutput>>,
    ) -> Result<SlideOutcome, EngineError> {
        let started = Instant::now();
        if let Err(e) = std::fs::metadata(slide) {
            return Err(wsiseg_slide::missing(slide, e).into());
        }
        std::fs::create_dir_all(out)
            .map_err(|e| EngineError::io(out, "cannot create the output folder", e))?;
        let paths = OutputPaths::new(out, slide).with_classes(&self.manifest().classes);
        let _lock = SlideLock::acquire(&paths.lock(), slide)?;
        // We hold the lock: temporary files of this slide are a dead run's.
        for f in paths.all() {
            let _ = std::fs::remove_file(partial_name(&f));
        }
        let fingerprint = self.fingerprint(slide, request)?;
        if let Some(record) = self.resume(&paths, request, &fingerprint)? {
            return Ok(SlideOutcome::Skipped(Box::new(record)));
        }
        let opened = open_slide(slide, request)?;
        let plan = self.plan(opened.as_ref(), request)?;
        log_plan(opened.as_ref(), &plan, request);
        let run = self.run(opened.as_ref(), &plan, request, &paths, control, extra)?;
        tracing::debug!(
            "{}: {:.1} s with the lock held",
            slide.display(),
            started.elapsed().as_secs_f64()
        );
        let record = self.record(fingerprint, request, &run)?;
        // Everything is on disk under temporary names, the record included:
        // only renames are left.
        let record_path = paths.record();
        let text = serde_json::to_vec_pretty(&record)
            .map_err(|e| EngineError::io(&record_path, "cannot write", e.into()))?;
        let record_file = PartialFile::write_staged(&record_path, &text, control.limit())
            .map_err(|e| EngineError::io(&record_path, "cannot write", e))?;
        if control.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let mut files = Vec::new();
        for s in run.staged {
            let path = s.path().to_path_buf();
            files.push(
                s.commit()
                    .map_err(|e| EngineError::io(&path, "cannot rename into place", e))?,
            );
        }
        record_file
            .commit()
            .map_err(|e| EngineError::io(&record_path, "cannot rename into place", e))?;
        Ok(SlideOutcome::Segmented {
            stats: Box::new(run.stats),
            files,
            figures: run.figures,
        })
    }

    /// The run record of a finished run: what made its files, and their sizes.
    fn record(
        &self,
        fingerprint: Fingerprint,
        request: &Request,
        run: &RunOutput,
    ) -> Result<RunRecord, EngineError> {
        Ok(RunRecord {
            fingerprint,
            formats: request
                .formats
                .iter()
                .map(|f| f.name().to_string())
                .collect(),
            files: run
                .staged
                .iter()
                .map(|s| {
                    Ok(RecordedFile {
                        name: file_name(s.path()),
                        bytes: s
                            .len()
                            .map_err(|e| EngineError::io(s.path(), "cannot read", e))?,
                    })
                })
                .collect::<Result<_, EngineError>>()?,
            devices: self.device_names(),
            figures: run.figures.clone(),
            finished_unix: unix_now(),
        })
    }

    /// Whether the slide is done already (`Some`: skip it), to be redone, or
    /// in a state only an overwrite may touch (an error).
    fn resume(
        &self,
        paths: &OutputPaths,
        request: &Request,
        now: &Fingerprint,
    ) -> Result<Option<RunRecord>, EngineError> {
        let record_path = paths.record();
        if request.overwrite {
            // An interrupted overwrite must not leave the old record beside new files.
            match std::fs::remove_file(&record_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EngineError::io(&record_path, "cannot remove", e))
                }
                _ => return Ok(None),
            }
        }
        let requested: Vec<PathBuf> = request
            .formats
            .iter()
            .flat_map(|f| f.files(paths))
            .collect();
        match RunRecord::read(&record_path)? {
            Some(record) => {
                let differences = record.fingerprint.differences(now);
                if !differences.is_empty() {
                    return Err(EngineError::Changed {
                        slide: now.slide.path.clone(),
                        out: paths.folder().to_path_buf(),
                        differences,
                    });
                }
                if let Some((file, why)) = record.damaged(paths.folder(), &requested) {
                    return Err(EngineError::Incomplete {
                        present: record_path,
                        missing: format!("{} {why}", file.display()),
                    });
                }
                Ok(Some(record))
            }
            None => {
                let existing: Vec<PathBuf> =
                    paths.all().into_iter().filter(|p| p.exists()).collect();
                let Some(first) = existing.first() else {
                    return Ok(None);
                };
                let missing: Vec<String> = requested
                    .iter()
                    .filter(|p| !p.exists())
                    .map(|p| p.display().to_string())
                    .collect();
                Err(EngineError::Incomplete {
                    present: first.clone(),
                    missing: if missing.is_empty() {
                        format!(
                            "no run record ({}) says it is complete",
                            record_path.display()
                        )
                    } else {
                        format!("{} does not", missing.join(", "))
                    },
                })
            }
        }
    }

    /// What decides the pixels of `slide`'s outputs under `request`.
    pub fn fingerprint(&self, slide: &Path, request: &Request) -> Result<Fingerprint, EngineError> {
        let settings = self.settings(request)?;
        Ok(Fingerprint {
            wsiseg_version: env!("CARGO_PKG_VERSION").to_string(),
            slide: SlideIdentity::of(slide)?,
            model_sha256: self.model_sha256().to_string(),
            settings: settings.fingerprint(),
        })
    }

    /// Runs a planned slide into the requested outputs and the caller's
    /// `extra` ones (finished after the built-in ones, before the report)
    /// and finishes them all (complete, fsynced, under temporary names:
    /// commit each [`Staged`]).
    pub fn run(
        &self,
        slide: &dyn Slide,
        plan: &SlidePlan,
        request: &Request,
        paths: &OutputPaths,
        control: &RunControl,
        extra: Vec<Box<dyn MaskOutput>>,
    ) -> Result<RunOutput, EngineError> {
        let started = Instant::now();
        // The models may still be loading (EngineBuilder::start): the
        // slide was locked, checked and planned meanwhile.
        let loaded = self.loaded()?;
        let model_wait_s = started.elapsed().as_secs_f64();
        if model_wait_s > 0.01 {
            tracing::debug!(
                "{}: waited {model_wait_s:.2} s for the model to load",
                slide.path().display()
            );
        }
        let mut formats = request.formats.clone();
        formats.sort();
        formats.dedup();
        let colours = self.manifest().class_colours();
        let ctx = OutputContext {
            paths,
            slide,
            plan,
            request,
            classes: &self.manifest().classes,
            colours: &colours,
            limit: control.limit(),
        };
        let (names, mut outputs) = create_outputs(&formats, &ctx, extra)?;
        let (on_device, decoded_by) = self.decoded_by(loaded, slide, &plan.working);
        let pipeline = Job {
            slide,
            working: plan.working,
            plan: plan.tiles,
            workers: &loaded.workers,
            batch: self.batch,
            readers: self.readers,
            classes: self.manifest().classes.len(),
            run: &plan.run,
            control,
            bad_tiles: request.bad_tiles,
            decoders: on_device.then_some(&loaded.decoders[..]),
        }
        .run(&mut outputs, &names)?;
        let outputs_started = Instant::now();
        warn_bad_tiles(slide, &pipeline.bad_tiles);
        let mut stats = run_stats(plan, model_wait_s, pipeline, &names, decoded_by);
        // The times so far; the report (made last) gives the figures of
        // the moment it is written.
        let clock = |stats: &mut RunStats| {
            stats.outputs_s = outputs_started.elapsed().as_secs_f64();
            stats.total_s = plan.seconds + started.elapsed().as_secs_f64();
        };
        let Finishing {
            mut staged,
            files,
            statistics,
            regions_written,
        } = finish_outputs(outputs, &ctx, control, &mut stats, &clock)?;
        clock(&mut stats);
        if formats.contains(&Format::REPORT) {
            if control.cancelled() {
                return Err(EngineError::Cancelled);
            }
            let input = ReportInput {
                context: &ctx,
                stats: &stats,
                statistics: &statistics,
                parameters: self.settings(request)?.parameters(plan),
                model: self.model_info(),
                libraries: self.libraries(),
                regions_written,
                files: &files,
            };
            staged.push(report::stage_report(&input, control.limit())?);
        }
        let figures = slide_figures(slide, plan, &stats, &statistics);
        Ok(RunOutput {
            stats,
            staged,
            figures,
        })
    }

    /// The report's "model": the model and every member of an ensemble.
    fn model_info(&self) -> wsiseg_report::Model {
        wsiseg_report::Model {
            name: self.manifest().name.clone(),
            path: absolute(self.model_path()),
            sha256: self.model_sha256().to_string(),
            manifest: serde_json::to_value(self.manifest()).unwrap_or_default(),
            members: self
                .members()
                .iter()
                .map(|m| wsiseg_report::Member {
                    name: m.name.clone(),
                    path: absolute(&m.path),
                    sha256: m.sha256.clone(),
                    weight: m.weight,
                    runtime: m.runtime.to_string(),
                })
                .collect(),
        }
    }
}

/// What finishing every output left.
struct Finishing {
    /// Their files, in order.
    staged: Vec<Staged>,
    /// The same files' final names (absolute).
    files: Vec<PathBuf>,
    /// The statistics sink's measurements.
    statistics: outputs::MaskStatistics,
    /// Tumor regions the GeoJSON/ASAP output wrote.
    regions_written: Option<usize>,
}

/// Finishes `outputs` in order (the statistics sink first, so every output
/// after it sees what it measured), `clock` updating the times before each.
fn finish_outputs(
    outputs: Vec<Box<dyn MaskOutput>>,
    ctx: &OutputContext,
    control: &RunControl,
    stats: &mut RunStats,
    clock: &dyn Fn(&mut RunStats),
) -> Result<Finishing, EngineError> {
    let folder = absolute(ctx.paths.folder());
    let mut done = Finishing {
        staged: Vec::new(),
        files: Vec::new(),
        statistics: outputs::MaskStatistics::default(),
        regions_written: None,
    };
    for output in outputs {
        if control.cancelled() {
            return Err(EngineError::Cancelled);
        }
        clock(stats);
        let result = SlideResult {
            context: ctx,
            stats,
            statistics: &done.statistics,
        };
        let finished = output.finish(&result)?;
        if let Some(measured) = finished.statistics {
            done.statistics = measured;
        }
        done.regions_written = finished.regions_written.or(done.regions_written);
        for s in finished.staged {
            done.files.push(folder.join(file_name(s.path())));
            done.staged.push(s);
        }
    }
    Ok(done)
}

/// The pipeline's times and counts with the plan's; the output times are
/// filled in as the outputs finish.
fn run_stats(
    plan: &SlidePlan,
    model_wait_s: f64,
    pipeline: PipelineStats,
    writers: &[&'static str],
    decoded_by: String,
) -> RunStats {
    RunStats {
        plan_s: plan.seconds,
        model_wait_s,
        read_s: pipeline.read,
        inference_s: pipeline.inference,
        // The stage's busiest thread.
        stitch_write_s: pipeline
            .writers
            .iter()
            .copied()
            .fold(pipeline.stitch, f64::max),
        stitch_s: pipeline.stitch,
        writers_s: writers.iter().copied().zip(pipeline.writers).collect(),
        pipeline_wall_s: pipeline.wall,
        outputs_s: 0.0,
        total_s: 0.0,
        tiles_planned: plan.tiles.len(),
        tiles_with_tissue: plan
            .tissue
            .as_ref()
            .map(|t| t.tiles.iter().filter(|&&x| x).count()),
        tiles_run: plan.tiles_to_run(),
        tiles_per_worker: pipeline.tiles_per_worker,
        class_pixels: pipeline.class_pixels,
        bad_tiles: pipeline.bad_tiles,
        decoded_by,
        device_decoded: pipeline.device_decoded,
        decode_fallbacks: pipeline.decode_fallbacks,
    }
}

/// A slide's headline figures for logs and summaries.
fn slide_figures(
    slide: &dyn Slide,
    plan: &SlidePlan,
    stats: &RunStats,
    measured: &outputs::MaskStatistics,
) -> SlideFigures {
    let tumor = tumor_pixels(&stats.class_pixels);
    let tumor_fraction = tumor as f64 / plan.working.size.area().max(1) as f64;
    SlideFigures {
        tumor_fraction,
        tumor_share_of_tissue: report::tumor_share_of_tissue(
            tumor_fraction,
            plan.tissue.as_ref().map(|t| t.fraction),
        ),
        regions: Some(measured.regions.len()),
        uncertain_fraction: measured.uncertain_fraction(),
        largest_region_mm2: measured
            .regions
            .first()
            .zip(plan.working.mpp)
            .map(|(&a, m)| a as f64 * (m / 1000.0).powi(2)),
        // As the report gives it.
        tissue_mm2: plan
            .tissue
            .as_ref()
            .zip(report::slide_mm2(slide))
            .map(|(t, a)| t.fraction * a),
        tumor_mm2: plan
            .working
            .mpp
            .map(|m| (m / 1000.0).powi(2) * tumor as f64),
        seconds: stats.total_s,
        bad_tiles: stats.bad_tiles.len(),
    }
}

/// Opens `slide` as `request` says: its reader, and the resolution the
/// user gave it (`--slide-mpp`), if any.
fn open_slide(slide: &Path, request: &Request) -> Result<Box<dyn Slide>, EngineError> {
    let opened = wsiseg_slide::open_with(slide, request.reader)?;
    let Some(mpp) = request.slide_mpp else {
        return Ok(opened);
    };
    if let Some(recorded) = opened.mpp().filter(|m| (m.mean() / mpp - 1.0).abs() > 0.01) {
        tracing::warn!(
            "{}: the slide records {:.4} µm/px; using the {mpp} µm/px it was given",
            slide.display(),
            recorded.mean()
        );
    }
    Ok(wsiseg_slide::with_mpp(opened, mpp))
}

/// One warning for the corrupt tiles a run made background.
fn warn_bad_tiles(slide: &dyn Slide, bad: &[BadTile]) {
    if bad.is_empty() {
        return;
    }
    let listed: Vec<String> = bad
        .iter()
        .take(5)
        .map(|b| {
            let [x, y, w, h] = b.level0;
            format!(
                "level {} tile {} (level-0 x {x}, y {y}, {w}×{h})",
                b.level, b.tile
            )
        })
        .collect();
    tracing::warn!(
        "{}: {} corrupt tile(s) made background (bad tiles: background): {}{}; listed in the report",
        slide.path().display(),
        bad.len(),
        listed.join(", "),
        if bad.len() > 5 { ", …" } else { "" }
    );
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn log_plan(slide: &dyn Slide, plan: &SlidePlan, request: &Request) {
    let w = &plan.working;
    tracing::info!(
        "{}: {} {} → working {} from level {}{} ({}), {} tiles of {} px, overlap {}",
        slide.path().display(),
        slide.format(),
        slide.levels()[0].size,
        w.size,
        w.source_level,
        if w.scale == 1.0 {
            String::new()
        } else {
            format!(" scaled 1/{:.3}", w.scale)
        },
        w.mpp
            .map(|m| format!("{m:.3} µm/px"))
            .unwrap_or_else(|| "resolution unknown".into()),
        plan.tiles.len(),
        plan.tile,
        plan.overlap
    );
    let detect = request.tissue != TissuePolicy::All;
    if let (Some(t), true) = (&plan.tissue, detect) {
        let n = plan.tiles_to_run();
        if n == 0 {
            tracing::warn!(
                "{}: no tissue found (thumbnail saturation > {} nowhere); the mask is all background — lower the tissue threshold or run every tile",
                slide.path().display(),
                t.threshold
            );
        } else {
            tracing::info!(
                "{}: {n} of {} tiles have tissue (thumbnail saturation > {}); the others are background",
                slide.path().display(),
                plan.tiles.len(),
                t.threshold
            );
        }
    }
}

/// The outputs of `formats` and their names, in finishing order: the
/// measurements first, the built-in outputs, then the caller's `extra` ones.
#[allow(clippy::type_complexity)]
fn create_outputs(
    formats: &[Format],
    ctx: &OutputContext,
    extra: Vec<Box<dyn MaskOutput>>,
) -> Result<(Vec<&'static str>, Vec<Box<dyn MaskOutput>>), EngineError> {
    let mut named: Vec<(&'static str, Box<dyn MaskOutput>)> = Vec::new();
    for &f in formats {
        if let Some(o) = outputs::create(f, ctx)? {
            named.push((f.name(), o));
        }
    }
    named.extend(extra.into_iter().map(|o| (o.name(), o)));
    // The probability maps are histogrammed only when an output makes them anyway.
    let probabilities = named.iter().any(|(_, o)| o.wants_probabilities());
    let statistics = outputs::Statistics::new(ctx, probabilities);
    named.insert(0, (statistics.name(), Box::new(statistics)));
    Ok(named.into_iter().unzip())
}
