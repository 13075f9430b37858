//! One slide through the engine: reader threads → bounded channel → model
//! (this thread, which owns it) → stitchers → streaming writers.
//!
//! The channel is bounded, so readers stay at most a couple of batches ahead
//! and memory does not grow with the slide.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use wsiseg_infer::Segmenter;
use wsiseg_slide::{Slide, TileIndex, TilePlan, WorkingLevel};
use wsiseg_stitch::Stitcher;

use crate::outputs::{LabelSink, ProbSink};

/// Tests set this to make a run fail after that many tiles, like a crash midway.
pub const FAIL_AFTER_TILES: &str = "WSISEG_FAIL_AFTER_TILES";

/// How to run one slide.
pub struct Job<'a> {
    pub slide: &'a dyn Slide,
    pub working: WorkingLevel,
    pub plan: TilePlan,
    pub model: &'a Segmenter,
    pub batch: usize,
    pub readers: usize,
    pub labels: LabelSink,
    pub probs: Option<ProbSink>,
    /// Which tiles to run (raster order); the others are background.
    pub run: Vec<bool>,
}

/// Seconds spent per stage (reading is summed over the reader threads).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub read: f64,
    pub inference: f64,
    pub stitch_write: f64,
    pub wall: f64,
}

/// What a finished slide produced; the sinks are complete but not committed.
pub struct Outcome {
    pub labels: LabelSink,
    pub probs: Option<ProbSink>,
    /// Tiles run through the model.
    pub tiles: usize,
    pub timings: Timings,
}

type ReadResult = (
    usize,
    Result<wsiseg_slide::RgbImage, wsiseg_slide::SlideError>,
);

struct Stitchers {
    labels: Stitcher<LabelSink>,
    probs: Option<Stitcher<ProbSink>>,
}

impl Job<'_> {
    pub fn run(self) -> Result<Outcome> {
        let start = Instant::now();
        let todo: Vec<usize> = (0..self.plan.len()).filter(|&n| self.run[n]).collect();
        let mut stitchers = Stitchers {
            labels: Stitcher::with_tiles(self.plan, self.labels, self.run.clone()),
            probs: self
                .probs
                .map(|p| Stitcher::with_tiles(self.plan, p, self.run)),
        };
        let progress = progress_bar(todo.len() as u64, self.slide);
        let next = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let read_nanos = AtomicU64::new(0);
        let (tx, rx) = crossbeam_channel::bounded::<ReadResult>(self.batch * 2);
        let fail_after: Option<usize> = std::env::var(FAIL_AFTER_TILES)
            .ok()
            .and_then(|v| v.parse().ok());
        let (plan, working, slide) = (self.plan, self.working, self.slide);
        let ctx = Consume {
            plan,
            tiles: todo.len(),
            model: self.model,
            batch: self.batch,
            fail_after,
        };
        let todo = &todo;

        let result = std::thread::scope(|scope| {
            for _ in 0..self.readers.max(1) {
                let tx = tx.clone();
                let (next, cancel, read_nanos) = (&next, &cancel, &read_nanos);
                scope.spawn(move || loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= todo.len() || cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = todo[k];
                    let t0 = Instant::now();
                    let read = working.read(slide, plan.nth(n).rect);
                    read_nanos.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    if tx.send((n, read)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            let r = ctx.consume(rx, &mut stitchers, &progress);
            if r.is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
            r // `rx` was moved into `consume` and is dropped: blocked readers wake up.
        });
        progress.finish_and_clear();
        let (inference, stitch_write) = result?;
        let labels = stitchers.labels.finish()?;
        let probs = stitchers.probs.map(|s| s.finish()).transpose()?;
        Ok(Outcome {
            labels,
            probs,
            tiles: todo.len(),
            timings: Timings {
                read: read_nanos.load(Ordering::Relaxed) as f64 * 1e-9,
                inference: inference.as_secs_f64(),
                stitch_write: stitch_write.as_secs_f64(),
                wall: start.elapsed().as_secs_f64(),
            },
        })
    }
}

struct Consume<'a> {
    plan: TilePlan,
    /// Tiles that will arrive.
    tiles: usize,
    model: &'a Segmenter,
    batch: usize,
    fail_after: Option<usize>,
}

impl Consume<'_> {
    /// Batches tiles as they come, runs the model, hands outputs to the
    /// stitchers; returns the time spent in the model and in stitching.
    fn consume(
        &self,
        rx: crossbeam_channel::Receiver<ReadResult>,
        stitchers: &mut Stitchers,
        progress: &ProgressBar,
    ) -> Result<(Duration, Duration)> {
        let t = self.plan.tile_size();
        let tile_bytes = (t * t) as usize;
        let mut pixels = Vec::with_capacity(self.batch * tile_bytes * 3);
        let mut labels = vec![0u8; self.batch * tile_bytes];
        let mut probs = stitchers
            .probs
            .as_ref()
            .map(|_| vec![0u8; self.batch * tile_bytes]);
        let mut indices: Vec<TileIndex> = Vec::with_capacity(self.batch);
        let (mut inference, mut stitching) = (Duration::ZERO, Duration::ZERO);
        let mut received = 0;
        while received < self.tiles {
            let (n, read) = rx
                .recv()
                .context("the tile readers stopped before reading every tile")?;
            received += 1;
            pixels.extend_from_slice(read?.as_raw());
            indices.push(self.plan.nth(n).index);
            if indices.len() < self.batch && received < self.tiles {
                continue;
            }
            let k = indices.len();
            let t0 = Instant::now();
            self.model
                .segment(&pixels, k, t, &mut labels, probs.as_deref_mut())?;
            let t1 = Instant::now();
            for (i, index) in indices.drain(..).enumerate() {
                let range = i * tile_bytes..(i + 1) * tile_bytes;
                stitchers.labels.add(index, &labels[range.clone()])?;
                if let (Some(s), Some(p)) = (&mut stitchers.probs, &probs) {
                    s.add(index, &p[range])?;
                }
            }
            inference += t1 - t0;
            stitching += t1.elapsed();
            tracing::debug!(tiles = k, ms = (t1 - t0).as_millis() as u64, "batch");
            pixels.clear();
            progress.inc(k as u64);
            if self.fail_after.is_some_and(|n| received >= n) {
                bail!("stopped on purpose after {received} tiles ({FAIL_AFTER_TILES} is set)");
            }
        }
        Ok((inference, stitching))
    }
}

fn progress_bar(len: u64, slide: &dyn Slide) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tiles {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let name = slide
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    bar.set_message(name);
    bar
}
