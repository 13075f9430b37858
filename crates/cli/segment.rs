//! `wsiseg segment`: a slide or a folder of slides into label masks. The
//! engine does the work; this is the folder loop, the progress bar and the
//! messages.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use wsiseg_engine::{
    describe_devices, BatchTimes, Engine, EngineBuilder, EngineError, Format, OutputPaths,
    Precision, Progress, Request, RunControl, SlideOutcome, Status, SummaryEntry,
};

use crate::args::SegmentArgs;
use crate::inputs::SlideInput;

/// Outcome of a whole run: how many slides were done, skipped, failed, and
/// whether it was interrupted.
pub struct RunSummary {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    pub cancelled: bool,
}

impl RunSummary {
    fn count(&mut self, status: Status) {
        match status {
            Status::Segmented => self.done += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
        }
    }
}

pub fn run(args: &SegmentArgs) -> Result<RunSummary> {
    run_observed(args, None)
}

/// Watches every batch through the model: the slide's place in the run and
/// the batch's times (`wsiseg bench` on a folder).
pub type Observer<'a> = &'a (dyn Fn(usize, BatchTimes) + Sync);

/// [`run`], calling `observer` for every batch.
pub fn run_observed(args: &SegmentArgs, observer: Option<Observer>) -> Result<RunSummary> {
    let inputs = crate::inputs::collect(&args.input, args.recursive)?;
    let many = inputs.many;
    let (slides, shard) = shard_slides(args, inputs.slides)?;
    let request = args.request()?;
    let engine = build_engine(args)?;
    engine
        .check(&request)
        .map_err(crate::errors::flag_context)?;
    prepare_out_dir(&args.out)?;
    let budget = args
        .max_memory
        .unwrap_or_else(wsiseg_engine::memory::default_budget);
    wsiseg_engine::memory::set_budget(budget);
    tracing::debug!(
        "memory budget {:.2} GiB",
        budget as f64 / f64::from(1u32 << 30)
    );

    let cancel = crate::signals::cancel_flag();
    let mut summary = RunSummary {
        done: 0,
        skipped: 0,
        failed: 0,
        cancelled: false,
    };
    let results = run_slides(&engine, &slides, args, &request, cancel, observer);
    let mut entries = Vec::new();
    for entry in results {
        match entry {
            Some(entry) => {
                summary.count(entry.status);
                entries.push(entry);
            }
            None => summary.cancelled = true,
        }
    }
    if slides.len() > 1 {
        tracing::info!(
            "{} slides: {} segmented, {} skipped, {} failed{}",
            slides.len(),
            summary.done,
            summary.skipped,
            summary.failed,
            if summary.cancelled {
                format!(", {} not done (interrupted)", slides.len() - entries.len())
            } else {
                String::new()
            }
        );
    }
    // The folder's merged summary, when this run wrote it (the page shows
    // the same rows).
    let mut merged = None;
    if request.formats.contains(&Format::Report) && (many || shard.is_some()) {
        let rows = wsiseg_engine::run_rows(&args.out, &entries);
        match &shard {
            // A shard's summary is its own slides, as this run left them;
            // `wsiseg summary OUT` merges the shards'.
            Some(shard) => {
                wsiseg_engine::write_summary_as(&args.out, &shard.summary_stem(), &rows)?;
            }
            None => {
                let rows = wsiseg_engine::merge_summary(&args.out, rows);
                wsiseg_engine::write_summary(&args.out, &rows)?;
                merged = Some(rows);
            }
        }
    }
    // A folder's page lists its failures too; a lone slide that failed
    // leaves nothing behind (no final-named file after an error). The page
    // is a convenience: failing to write it is a warning.
    let lone_failed = !many && (summary.failed > 0 || summary.cancelled);
    if request.formats.contains(&Format::Report) && !entries.is_empty() && !lone_failed {
        let page = match &merged {
            Some(rows) => wsiseg_engine::write_index_of(&args.out, rows),
            None => wsiseg_engine::write_index(&args.out),
        };
        match page {
            Ok(page) => tracing::info!(
                "{}: the run at a glance (open it in a browser)",
                page.display()
            ),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    Ok(summary)
}

/// Slides through the engine in order, overlapped: the next slide is
/// opened, planned and its first tiles read while this one's last batches
/// run (its model call waits for the device), so the device does not idle
/// between slides; the outputs of one are finished while the next runs. At
/// most two slides are in flight (one on the device or finishing its
/// outputs, one getting ready), and none ahead when `--one-at-a-time` is
/// given or memory is above half the budget. Each slide's entry, in order;
/// `None` where the run was interrupted.
fn run_slides(
    engine: &Engine,
    slides: &[SlideInput],
    args: &SegmentArgs,
    request: &Request,
    cancel: &AtomicBool,
    observer: Option<Observer>,
) -> Vec<Option<SummaryEntry>> {
    let mut results: Vec<Option<SummaryEntry>> = slides.iter().map(|_| None).collect();
    let bars = MultiProgress::new();
    std::thread::scope(|scope| {
        let mut running: VecDeque<(usize, std::thread::ScopedJoinHandle<_>, Arc<Started>)> =
            VecDeque::new();
        let mut join = |running: &mut VecDeque<(usize, std::thread::ScopedJoinHandle<_>, _)>| {
            if let Some((k, handle, _)) = running.pop_front() {
                results[k] = handle.join().unwrap_or(None);
            }
        };
        for (k, slide) in slides.iter().enumerate() {
            while running.len() >= 2 {
                join(&mut running);
            }
            if let Some((_, _, started)) = running.back() {
                if args.one_at_a_time || !memory_allows_overlap() {
                    while !running.is_empty() {
                        join(&mut running);
                    }
                } else {
                    started.wait();
                }
            }
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let started = Arc::new(Started::default());
            let mut request = request.clone();
            if slide.slide_mpp.is_some() {
                request.slide_mpp = slide.slide_mpp;
            }
            let (bars, on_model) = (&bars, started.clone());
            let handle = scope.spawn(move || {
                // The next slide may start once this one is on the device
                // or, whatever happened, has ended.
                let _ended = on_model.guard();
                let observe = |b: BatchTimes| {
                    on_model.set();
                    if let Some(f) = observer {
                        f(k, b);
                    }
                };
                segment_one(engine, slide, &args.out, &request, cancel, bars, &observe)
            });
            running.push_back((k, handle, started));
        }
        while !running.is_empty() {
            join(&mut running);
        }
    });
    results
}

/// Whether another slide may get ready beside the running one: resident
/// memory under half the budget (two slides' buffers then fit).
fn memory_allows_overlap() -> bool {
    match (
        wsiseg_engine::memory::rss_bytes(),
        wsiseg_engine::memory::budget(),
    ) {
        (Some(rss), Some(budget)) => rss < budget / 2,
        _ => true,
    }
}

/// Set once a slide's first batch is through the model, or it ended.
#[derive(Default)]
struct Started {
    set: Mutex<bool>,
    changed: Condvar,
}

impl Started {
    fn set(&self) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        if !*set {
            *set = true;
            self.changed.notify_all();
        }
    }

    fn wait(&self) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        while !*set {
            set = self
                .changed
                .wait(set)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Sets it when dropped (the slide's thread ended, even by a panic).
    fn guard(&self) -> impl Drop + '_ {
        struct Guard<'a>(&'a Started);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0.set();
            }
        }
        Guard(self)
    }
}

/// One slide with a progress bar; its summary entry, or `None` when the
/// run was interrupted.
#[allow(clippy::too_many_arguments)]
fn segment_one(
    engine: &Engine,
    slide: &SlideInput,
    out: &Path,
    request: &Request,
    cancel: &AtomicBool,
    bars: &MultiProgress,
    observe: &(dyn Fn(BatchTimes) + Sync),
) -> Option<SummaryEntry> {
    let path = slide.path.as_path();
    let out = &slide.out_dir(out);
    let bar = bars.add(progress_bar(path));
    let on_progress = |p: Progress| {
        bar.set_length(p.tiles_total);
        bar.set_position(p.tiles_done);
    };
    let control = RunControl::new(cancel)
        .on_progress(&on_progress)
        .on_batch(observe);
    // A panic fails this slide only (its temporary files are removed by the
    // unwinding); the next slide runs.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.segment(path, out, request, &control)
    }))
    .unwrap_or_else(|_| {
        Err(EngineError::Internal {
            slide: path.to_path_buf(),
            detail: crate::panics::take(),
        })
    });
    bar.finish_and_clear();
    let report = OutputPaths::new(out, path).report();
    let report = report.exists().then_some(report);
    let entry = |status, figures, error| SummaryEntry {
        slide: path.to_path_buf(),
        name: slide.name.with_extension(""),
        status,
        error,
        figures,
        report,
    };
    match result {
        Ok(SlideOutcome::Segmented {
            stats,
            files,
            figures,
        }) => {
            log_done(path, &stats, figures.tumor_fraction, &files);
            Some(entry(Status::Segmented, Some(figures), None))
        }
        Ok(SlideOutcome::Skipped(record)) => {
            tracing::info!(
                "{}: skipped, its outputs exist and were made with this model and these settings (--overwrite to redo)",
                path.display()
            );
            Some(entry(Status::Skipped, Some(record.figures), None))
        }
        Err(EngineError::Cancelled) => {
            tracing::warn!(
                "{}: interrupted; its temporary files were removed, a re-run resumes here",
                path.display()
            );
            None
        }
        Err(e) => {
            let listed = slide.listed.as_ref().filter(|_| {
                matches!(
                    e,
                    EngineError::Slide(wsiseg_slide::SlideError::NotFound { .. })
                )
            });
            let e = match listed {
                // A list's missing entry: which list and line named it.
                Some(listed) => anyhow::anyhow!("{e} (listed in {listed})"),
                None => crate::errors::flag_context(e),
            };
            crate::errors::report_error(&e);
            let mut failed = entry(Status::Failed, None, Some(crate::errors::one_line(&e)));
            failed.report = None;
            Some(failed)
        }
    }
}

fn build_engine(args: &SegmentArgs) -> Result<Engine> {
    let devices =
        wsiseg_engine::resolve_devices(&args.device).map_err(crate::errors::flag_context)?;
    let weights = match &args.weights {
        None => vec![1.0; args.model.len()],
        Some(w) if w.len() == args.model.len() => w.clone(),
        Some(w) => anyhow::bail!(
            "--weights gives {} weight(s) for {} model(s): give one per --model, in order",
            w.len(),
            args.model.len()
        ),
    };
    let engine = EngineBuilder::new(&args.model[0])
        .models(args.model.iter().cloned().zip(weights).collect())
        .tta(args.tta)
        .devices(devices)
        .precision(args.precision)
        .threshold(args.threshold)
        .batch(args.batch)
        .readers(args.readers)
        .build()
        .map_err(crate::errors::flag_context)?;
    log_runtime(&engine);
    if !engine.devices().iter().any(|d| d.is_cuda()) && engine.precision() == Precision::F16 {
        // Measured with the shipped UNet (`wsiseg model check`): f16 10.9,
        // f32 19.3, bf16 23.7 tiles/s on this project's CPU machine.
        tracing::warn!(
            "--precision f16 on the CPU: libtorch has few f16 CPU kernels, so this runs about 2× slower than f32; use f32 (the CPU's default) or bf16"
        );
    }
    Ok(engine)
}

fn log_runtime(engine: &Engine) {
    tracing::info!(
        "wsiseg {} · libtorch CUDA support {} · {} CUDA device(s) · running on {} in {}",
        env!("CARGO_PKG_VERSION"),
        match wsiseg_infer::load_cuda_support() {
            Ok(_) => "loaded".to_string(),
            Err(why) => format!("not loaded ({why})"),
        },
        wsiseg_infer::cuda_device_count(),
        describe_devices(&engine.devices()),
        engine.precision()
    );
    let m = engine.manifest();
    tracing::info!(
        "model {} ({}): {} px tiles, {} classes, {}, {:?} output, decision {}",
        m.name,
        engine.model_path().display(),
        m.tile,
        m.classes.len(),
        m.mpp
            .map(|x| format!("{x} µm/px"))
            .unwrap_or_else(|| "any resolution".into()),
        m.activation(),
        engine.decision()
    );
    if engine.members().len() > 1 {
        for member in engine.members() {
            tracing::info!(
                "ensemble member {} ({}), weight {}, SHA-256 {}…",
                member.name,
                member.path.display(),
                member.weight,
                &member.sha256[..12]
            );
        }
    }
    if engine.tta() != wsiseg_engine::Tta::None {
        tracing::info!(
            "test-time augmentation: {} ({} passes per batch)",
            engine.tta(),
            engine.tta().passes()
        );
    }
}

fn log_done(path: &Path, stats: &wsiseg_engine::RunStats, tumor: f64, files: &[PathBuf]) {
    tracing::info!(
        "{}: {} tiles in {:.1} s ({:.1} tiles/s); tumor {:.2}% of the working level → {}",
        path.display(),
        stats.tiles_run,
        stats.total_s,
        stats.tiles_run as f64 / stats.pipeline_wall_s.max(1e-9),
        100.0 * tumor,
        files
            .iter()
            .map(|p| p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn progress_bar(slide: &Path) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tiles {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(
        slide
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
}

/// The slides of this shard, when the run is one (`--shard`, or the
/// scheduler's environment), and the shard.
fn shard_slides(
    args: &SegmentArgs,
    slides: Vec<SlideInput>,
) -> Result<(Vec<SlideInput>, Option<crate::shard::Shard>)> {
    let shard = crate::shard::resolve(args.shard.as_ref(), args.shard_count, |k| {
        std::env::var(k).ok()
    })?;
    let Some(shard) = shard else {
        return Ok((slides, None));
    };
    let all = slides.len();
    let mine = crate::shard::select(slides, &shard);
    tracing::info!(
        "shard {} of {} (0 to {}; from {}): {} of the {all} slide(s)",
        shard.index,
        shard.count,
        shard.count - 1,
        shard.source,
        mine.len()
    );
    Ok((mine, Some(shard)))
}

fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        bail!("{}: --out must be a folder, this is a file", out.display());
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create output folder", out.display()))
}

impl SegmentArgs {
    /// The engine's request for these options.
    pub fn request(&self) -> Result<Request> {
        use wsiseg_engine::{MaskSize, TissuePolicy};
        let mut formats: Vec<Format> = self.formats.iter().map(|&f| f.into()).collect();
        if self.probabilities {
            formats.push(Format::Prob);
        }
        if formats.is_empty() {
            bail!("--formats is empty: nothing to write");
        }
        Ok(Request {
            level: self.level,
            mpp: self.mpp,
            slide_mpp: self.slide_mpp,
            tile: self.tile,
            overlap: self.overlap,
            tissue: if self.no_tissue_mask {
                TissuePolicy::All
            } else {
                TissuePolicy::Detect(self.tissue_threshold)
            },
            reader: self.reader.into(),
            formats,
            mask_size: match (self.mask_level, self.mask_mpp) {
                (Some(l), _) => MaskSize::Level(l),
                (None, Some(m)) => MaskSize::Mpp(m),
                (None, None) => MaskSize::Working,
            },
            mask_values: self.mask_values.into(),
            min_area: self.min_area,
            overwrite: self.overwrite,
            bad_tiles: self.bad_tiles.into(),
        })
    }
}
