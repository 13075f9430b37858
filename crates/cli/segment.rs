//! `wsiseg segment`: a slide or a folder of slides into label masks. The
//! engine does the work; this is the folder loop, the progress bar and the
//! messages.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use std::sync::{Mutex, PoisonError};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use wsiseg_engine::{
    describe_devices, Batch, BatchObserver, BatchTimes, Engine, EngineBuilder, EngineError, Format,
    Precision, Progress, Request, SlideInput, SlideOutcome, Status, SummaryKind,
};

use crate::args::SegmentArgs;

/// Outcome of a whole run: how many slides were done, skipped, failed, and
/// whether it was interrupted.
pub struct RunSummary {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    pub cancelled: bool,
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
    let (slides, shard) =
        crate::inputs::shard_slides(args.shard.as_ref(), args.shard_count, inputs.slides)?;
    let request = args.request()?;
    // The budget first: the request's check holds the batch against it.
    let budget = args
        .max_memory
        .unwrap_or_else(wsiseg_engine::memory::default_budget);
    wsiseg_engine::memory::set_budget(budget);
    tracing::debug!(
        "memory budget {:.2} GiB",
        budget as f64 / f64::from(1u32 << 30)
    );
    // The model loads on a thread of its own while the first slide is
    // locked, checked, opened and planned.
    let engine = build_engine(args)?;
    engine
        .check(&request)
        .map_err(crate::errors::flag_context)?;
    let out_existed = args.out.exists();
    prepare_out_dir(&args.out)?;

    let cancel = crate::signals::cancel_flag();
    let count = slides.len();
    let batch = Batch {
        out: args.out.clone(),
        request,
        one_at_a_time: args.one_at_a_time,
        // A shard's summary is its own slides, as this run left them;
        // `wsiseg summary OUT` merges the shards'.
        summary: match &shard {
            Some(shard) => SummaryKind::Own(shard.summary_stem()),
            None if many => SummaryKind::Merged,
            None => SummaryKind::None,
        },
        many,
        slides,
    };
    let watch = Watch {
        bars: MultiProgress::new(),
        shown: Mutex::new(vec![None; count]),
        observer,
    };
    let outcome = match engine.segment_many(&batch, cancel, &watch) {
        Ok(outcome) => outcome,
        Err(e) => {
            if !out_existed {
                // The folder this run made, if the models' failure left it
                // empty (remove_dir removes nothing else).
                let _ = std::fs::remove_dir(&args.out);
            }
            return Err(crate::errors::flag_context(e));
        }
    };
    let summary = RunSummary {
        done: outcome.count(Status::Segmented),
        skipped: outcome.count(Status::Skipped),
        failed: outcome.count(Status::Failed),
        cancelled: outcome.cancelled(),
    };
    if count > 1 {
        let ended = outcome.entries.iter().flatten().count();
        tracing::info!(
            "{count} slides: {} segmented, {} skipped, {} failed{}",
            summary.done,
            summary.skipped,
            summary.failed,
            if summary.cancelled {
                format!(", {} not done (interrupted)", count - ended)
            } else {
                String::new()
            }
        );
    }
    if let Some(page) = &outcome.page {
        tracing::info!(
            "{}: the run at a glance (open it in a browser)",
            page.display()
        );
    }
    Ok(summary)
}

/// The terminal's view of a folder run: a progress bar per running slide,
/// a line per slide that ends, errors with the options they concern.
struct Watch<'a> {
    bars: MultiProgress,
    shown: Mutex<Vec<Option<ProgressBar>>>,
    observer: Option<Observer<'a>>,
}

impl Watch<'_> {
    fn bar(&self, k: usize) -> Option<ProgressBar> {
        self.shown.lock().unwrap_or_else(PoisonError::into_inner)[k].clone()
    }

    /// Slide `k`'s bar is done: it goes before the slide's messages.
    fn clear(&self, k: usize) {
        if let Some(bar) = self.shown.lock().unwrap_or_else(PoisonError::into_inner)[k].take() {
            bar.finish_and_clear();
        }
    }
}

impl BatchObserver for Watch<'_> {
    fn started(&self, k: usize, slide: &SlideInput) {
        let bar = self.bars.add(progress_bar(&slide.path));
        self.shown.lock().unwrap_or_else(PoisonError::into_inner)[k] = Some(bar);
    }

    fn progress(&self, k: usize, p: Progress) {
        if let Some(bar) = self.bar(k) {
            if bar.length().is_none() {
                // The plan exists: from a spinner to the tiles.
                bar.disable_steady_tick();
                bar.set_style(tiles_style());
            }
            bar.set_length(p.tiles_total);
            bar.set_position(p.tiles_done);
        }
    }

    fn batch(&self, k: usize, times: BatchTimes) {
        if let Some(f) = self.observer {
            f(k, times);
        }
    }

    fn panicked(&self, _message: &str) -> String {
        crate::panics::take()
    }

    fn finished(&self, k: usize, slide: &SlideInput, outcome: &SlideOutcome) {
        self.clear(k);
        let path = slide.path.as_path();
        match outcome {
            SlideOutcome::Segmented {
                stats,
                files,
                figures,
            } => log_done(path, stats, figures.tumor_fraction, files),
            SlideOutcome::Skipped(_) => tracing::info!(
                "{}: skipped, its outputs exist and were made with this model and these settings (--overwrite to redo)",
                path.display()
            ),
        }
    }

    fn interrupted(&self, k: usize, slide: &SlideInput) {
        self.clear(k);
        tracing::warn!(
            "{}: interrupted; its temporary files were removed, a re-run resumes here",
            slide.path.display()
        );
    }

    fn failed(&self, k: usize, slide: &SlideInput, e: EngineError) -> String {
        self.clear(k);
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
        crate::errors::one_line(&e)
    }
}

fn build_engine(args: &SegmentArgs) -> Result<Engine> {
    let devices = args.device.resolve().map_err(crate::errors::flag_context)?;
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
        .decode(args.decode)
        .warm_up(args.tile)
        .start()
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

/// A slide's line: a spinner while it is opened and planned, then its
/// tiles (from the first progress report, when the plan exists).
fn progress_bar(slide: &Path) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: opening and planning")
            .expect("valid template"),
    );
    bar.set_message(
        slide
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// The tiles of a planned slide, with a rate of one decimal.
fn tiles_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tiles, {rate} eta {eta}")
        .expect("valid template")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1}/s", state.per_sec());
            },
        )
        .progress_chars("=> ")
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
        let mut formats = self.formats.clone();
        if self.probabilities {
            formats.push(Format::PROB);
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
            reader: self.reader,
            formats,
            mask_size: match (self.mask_level, self.mask_mpp) {
                (Some(l), _) => MaskSize::Level(l),
                (None, Some(m)) => MaskSize::Mpp(m),
                (None, None) => MaskSize::Working,
            },
            mask_values: self.mask_values,
            min_area: self.min_area,
            overwrite: self.overwrite,
            bad_tiles: self.bad_tiles,
        })
    }
}
