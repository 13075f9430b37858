//! Many slides through one engine: the folder run every front end shares.
//!
//! [`Engine::segment_many`] segments slides in order, overlapped — the next
//! slide is opened, planned and its first tiles read while this one's last
//! batches run, so the device does not idle between slides, and one
//! slide's outputs are finished while the next runs — with a panic boundary
//! per slide (a bug fails that slide, the next one runs), then writes the
//! folder's summary (merged with what the folder holds, or a shard's own)
//! and its index page. The caller watches each slide through a
//! [`BatchObserver`]: progress, messages, and the one-line text a failure
//! is listed with.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::{
    BatchTimes, Engine, EngineError, Format, OutputPaths, Progress, Request, RunControl,
    SlideOutcome, Status, SummaryEntry, SummaryRow,
};

/// One slide of a folder run.
#[derive(Debug, Clone, PartialEq)]
pub struct SlideInput {
    /// Where it is (may not exist: a list's missing entry is reported when
    /// its turn comes, and the others still run).
    pub path: PathBuf,
    /// Its name under the input's root (`a/x.svs` for `x.svs` in subfolder
    /// `a`): outputs go to that subfolder of the output folder.
    pub name: PathBuf,
    /// The slide's own resolution (µm/px), overriding the request's.
    pub slide_mpp: Option<f64>,
    /// The list and line that named it, for its messages.
    pub listed: Option<String>,
    /// Another slide of the run whose outputs would have this one's names
    /// (`a.jpg` and `a.png`): both fail, naming each other, and the others
    /// run.
    pub same_name: Option<PathBuf>,
}

impl SlideInput {
    /// The slide at `path`, named `name` (no list, no resolution of its
    /// own, no name shared).
    pub fn new(path: impl Into<PathBuf>, name: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            name: name.into(),
            slide_mpp: None,
            listed: None,
            same_name: None,
        }
    }

    /// The folder its outputs go to.
    pub fn out_dir(&self, out: &Path) -> PathBuf {
        match self.name.parent() {
            Some(p) if !p.as_os_str().is_empty() => out.join(p),
            _ => out.to_path_buf(),
        }
    }
}

/// Which summary a folder run writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryKind {
    /// None (one slide given alone).
    None,
    /// `summary.json`/`.csv`: this run's slides merged with every record
    /// and earlier failure in the output folder.
    Merged,
    /// `STEM.json`/`.csv` with this run's slides only (a shard's:
    /// `summary.shard-I-of-N`; a later merge reads them).
    Own(String),
}

/// A folder run: which slides, where, and how.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The slides, in order.
    pub slides: Vec<SlideInput>,
    /// The output folder (each slide's outputs under its name's subfolder).
    pub out: PathBuf,
    /// What every slide computes and writes.
    pub request: Request,
    /// Strictly one slide after another (no overlap).
    pub one_at_a_time: bool,
    /// The summary to write (only with the report among the formats).
    pub summary: SummaryKind,
    /// Whether the inputs were many (a folder, pattern or list): the index
    /// page is written even when the slides failed.
    pub many: bool,
}

/// What a folder run did.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// Each slide's entry, in order; `None` where the run was interrupted.
    pub entries: Vec<Option<SummaryEntry>>,
    /// The merged summary's rows, when one was written.
    pub summary: Option<Vec<SummaryRow>>,
    /// The summary file written (summary.json, or a shard's `STEM.json`).
    pub summary_file: Option<PathBuf>,
    /// The index page, when one was written.
    pub page: Option<PathBuf>,
}

impl BatchOutcome {
    /// Slides that ended with `status` in this run.
    pub fn count(&self, status: Status) -> usize {
        self.entries
            .iter()
            .flatten()
            .filter(|e| e.status == status)
            .count()
    }

    /// Whether the run was interrupted before every slide ended.
    pub fn cancelled(&self) -> bool {
        self.entries.iter().any(Option::is_none)
    }
}

/// How a front end watches a folder run. Every method is called on the
/// thread of the slide it is about (two slides may run at once).
pub trait BatchObserver: Sync {
    /// Slide `k` starts.
    fn started(&self, _k: usize, _slide: &SlideInput) {}

    /// Slide `k`'s progress.
    fn progress(&self, _k: usize, _progress: Progress) {}

    /// A batch of slide `k` came back from the model.
    fn batch(&self, _k: usize, _times: BatchTimes) {}

    /// Slide `k` was segmented, or skipped as done already.
    fn finished(&self, _k: usize, _slide: &SlideInput, _outcome: &SlideOutcome) {}

    /// Slide `k` was interrupted (its temporary files are removed).
    fn interrupted(&self, _k: usize, _slide: &SlideInput) {}

    /// Slide `k` failed: the one line its summary row gives (the front end
    /// may add its own option names, and report it).
    fn failed(&self, _k: usize, _slide: &SlideInput, error: EngineError) -> String {
        let text = error.to_string();
        text.lines().next().unwrap_or_default().to_string()
    }

    /// What a panic while slide `k` ran is reported as (the front end may
    /// have recorded its place with a panic hook).
    fn panicked(&self, message: &str) -> String {
        format!("panic: {message}; this is a bug in wsiseg, please report it")
    }
}

/// Watches nothing.
pub struct Unobserved;

impl BatchObserver for Unobserved {}

impl Engine {
    /// Segments `batch`'s slides (see the module documentation) into its
    /// output folder (created if missing), then writes its summary and
    /// index page when the report is among the formats. A failed slide is an entry, never the end of the run;
    /// setting `cancel` stops after the slides running (their temporary
    /// files removed). A summary that cannot be written is the error.
    pub fn segment_many(
        &self,
        batch: &Batch,
        cancel: &AtomicBool,
        observer: &dyn BatchObserver,
    ) -> Result<BatchOutcome, EngineError> {
        std::fs::create_dir_all(&batch.out)
            .map_err(|e| EngineError::io(&batch.out, "cannot create the output folder", e))?;
        let aborted = Mutex::new(None);
        let entries = self.run_slides(batch, cancel, observer, &aborted);
        if let Some(e) = aborted.into_inner().unwrap_or_else(PoisonError::into_inner) {
            // The models did not load: no slide could run, none is listed.
            return Err(e);
        }
        let mut outcome = BatchOutcome {
            entries,
            ..BatchOutcome::default()
        };
        let done: Vec<SummaryEntry> = outcome.entries.iter().flatten().cloned().collect();
        let report = batch.request.formats.contains(&Format::REPORT);
        if report {
            let rows = crate::run_rows(&batch.out, &done);
            match &batch.summary {
                SummaryKind::None => {}
                SummaryKind::Own(stem) => {
                    outcome.summary_file = Some(crate::write_summary_as(&batch.out, stem, &rows)?);
                }
                SummaryKind::Merged => {
                    let rows = crate::merge_summary(&batch.out, rows);
                    outcome.summary_file = Some(crate::write_summary(&batch.out, &rows)?);
                    outcome.summary = Some(rows);
                }
            }
        }
        // A folder's page lists its failures too; a lone slide that failed
        // leaves nothing behind (no final-named file after an error). The
        // page is a convenience: failing to write it is a warning.
        let lone_failed = !batch.many && (outcome.count(Status::Failed) > 0 || outcome.cancelled());
        if report && !done.is_empty() && !lone_failed {
            let page = match &outcome.summary {
                Some(rows) => crate::write_index_of(&batch.out, rows),
                None => crate::write_index(&batch.out),
            };
            match page {
                Ok(page) => outcome.page = Some(page),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(outcome)
    }

    /// The slides in order, overlapped: at most two in flight (one on the
    /// device or finishing its outputs, one getting ready), none ahead with
    /// `one_at_a_time` or when memory is above half the budget.
    fn run_slides(
        &self,
        batch: &Batch,
        cancel: &AtomicBool,
        observer: &dyn BatchObserver,
        aborted: &Mutex<Option<EngineError>>,
    ) -> Vec<Option<SummaryEntry>> {
        let mut results: Vec<Option<SummaryEntry>> = batch.slides.iter().map(|_| None).collect();
        std::thread::scope(|scope| {
            let mut running: VecDeque<(usize, std::thread::ScopedJoinHandle<_>, Arc<Started>)> =
                VecDeque::new();
            let mut join =
                |running: &mut VecDeque<(usize, std::thread::ScopedJoinHandle<_>, _)>| {
                    if let Some((k, handle, _)) = running.pop_front() {
                        results[k] = handle.join().unwrap_or(None);
                    }
                };
            for (k, slide) in batch.slides.iter().enumerate() {
                while running.len() >= 2 {
                    join(&mut running);
                }
                if let Some((_, _, started)) = running.back() {
                    if batch.one_at_a_time || !memory_allows_overlap() {
                        while !running.is_empty() {
                            join(&mut running);
                        }
                    } else {
                        started.wait();
                    }
                }
                if cancel.load(Ordering::Relaxed) || self.load_failed() {
                    break;
                }
                let started = Arc::new(Started::default());
                let on_model = started.clone();
                let handle = scope.spawn(move || {
                    // The next slide may start once this one is on the
                    // device or, whatever happened, has ended.
                    let _ended = on_model.guard();
                    self.segment_one(k, slide, batch, cancel, observer, &on_model)
                        .unwrap_or_else(|e| {
                            // The first such error is the run's; the others say the same.
                            let mut first = aborted.lock().unwrap_or_else(PoisonError::into_inner);
                            first.get_or_insert(e);
                            None
                        })
                });
                running.push_back((k, handle, started));
            }
            while !running.is_empty() {
                join(&mut running);
            }
        });
        results
    }

    /// One slide of a folder run, behind a panic boundary: its entry,
    /// `None` when the run was interrupted, or the error that ends the run
    /// (the models did not load).
    fn segment_one(
        &self,
        k: usize,
        slide: &SlideInput,
        batch: &Batch,
        cancel: &AtomicBool,
        observer: &dyn BatchObserver,
        on_model: &Started,
    ) -> Result<Option<SummaryEntry>, EngineError> {
        let path = slide.path.as_path();
        let out = &slide.out_dir(&batch.out);
        let mut request = batch.request.clone();
        if slide.slide_mpp.is_some() {
            request.slide_mpp = slide.slide_mpp;
        }
        observer.started(k, slide);
        let on_progress = |p: Progress| observer.progress(k, p);
        let on_batch = |b: BatchTimes| {
            on_model.set();
            observer.batch(k, b);
        };
        let control = RunControl::new(cancel)
            .on_progress(&on_progress)
            .on_batch(&on_batch);
        // A panic fails this slide only (its temporary files are removed by
        // the unwinding); the next slide runs.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(other) = &slide.same_name {
                return Err(EngineError::SameName {
                    slide: path.to_path_buf(),
                    other: other.clone(),
                });
            }
            self.segment(path, out, &request, &control)
        }))
        .unwrap_or_else(|payload| {
            Err(EngineError::Internal {
                slide: path.to_path_buf(),
                detail: observer.panicked(&crate::pipeline::panic_message(payload.as_ref())),
            })
        });
        let report = OutputPaths::new(out, path).report();
        let entry = |status, figures, error| SummaryEntry {
            slide: path.to_path_buf(),
            // Two slides of one output name keep their extensions: a row each.
            name: if slide.same_name.is_some() {
                slide.name.clone()
            } else {
                slide.name.with_extension("")
            },
            status,
            error,
            figures,
            report: report.exists().then(|| report.clone()),
        };
        Ok(match result {
            Ok(outcome) => {
                observer.finished(k, slide, &outcome);
                Some(match outcome {
                    SlideOutcome::Segmented { figures, .. } => {
                        entry(Status::Segmented, Some(figures), None)
                    }
                    SlideOutcome::Skipped(record) => {
                        entry(Status::Skipped, Some(record.figures), None)
                    }
                })
            }
            Err(EngineError::Cancelled) => {
                observer.interrupted(k, slide);
                None
            }
            Err(e) if self.load_failed() => return Err(e),
            Err(e) => {
                let line = observer.failed(k, slide, e);
                let mut failed = entry(Status::Failed, None, Some(line));
                failed.report = None;
                Some(failed)
            }
        })
    }
}

/// Whether another slide may get ready beside the running one: resident
/// memory under half the budget (two slides' buffers then fit).
fn memory_allows_overlap() -> bool {
    match (crate::memory::rss_bytes(), crate::memory::budget()) {
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
