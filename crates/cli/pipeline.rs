//! One slide through the engine, every stage on its own thread(s), joined by
//! bounded channels:
//!
//! reader threads → tiles → inference (this thread, which owns the model;
//! two batches in flight, so the device never waits for the host) →
//! finished batches → stitcher thread (stitchers and streaming writers).
//!
//! Every channel is bounded and buffers are recycled, so memory does not
//! grow with the slide: readers stay at most two batches ahead, and at most
//! a few batches of results wait for the stitcher.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use indicatif::{ProgressBar, ProgressStyle};
use wsiseg_infer::{InFlight, Segmenter};
use wsiseg_slide::{Slide, TileIndex, TilePlan, WorkingLevel};
use wsiseg_stitch::Stitcher;

use crate::outputs::{LabelSink, ProbSink};

/// Reader threads take this many consecutive tiles at a time: neighbouring
/// tiles share slide tiles (their halo), which one thread then decodes and
/// reuses instead of two threads waiting on each other.
pub const READ_CHUNK: usize = 4;

/// Batches queued on the device at once: one running, one waiting behind it.
const IN_FLIGHT: usize = 2;

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

/// Outputs of one batch on their way to the stitcher.
struct Finished {
    indices: Vec<TileIndex>,
    labels: Vec<u8>,
    probs: Option<Vec<u8>>,
}

/// Result buffers returned by the stitcher for the next batch.
type Spare = (Vec<u8>, Option<Vec<u8>>);

struct Stitchers {
    labels: Stitcher<LabelSink>,
    probs: Option<Stitcher<ProbSink>>,
}

impl Stitchers {
    /// Adds one batch's tiles; returns its buffers for reuse.
    fn add(&mut self, done: Finished, tile_px: usize) -> Result<Spare> {
        for (i, &index) in done.indices.iter().enumerate() {
            let range = i * tile_px..(i + 1) * tile_px;
            self.labels.add(index, &done.labels[range.clone()])?;
            if let (Some(s), Some(p)) = (&mut self.probs, &done.probs) {
                s.add(index, &p[range])?;
            }
        }
        Ok((done.labels, done.probs))
    }
}

impl Job<'_> {
    pub fn run(self) -> Result<Outcome> {
        let start = Instant::now();
        let todo: Vec<usize> = (0..self.plan.len()).filter(|&n| self.run[n]).collect();
        let with_probs = self.probs.is_some();
        let stitchers = Stitchers {
            labels: Stitcher::with_tiles(self.plan, self.labels, self.run.clone()),
            probs: self
                .probs
                .map(|p| Stitcher::with_tiles(self.plan, p, self.run)),
        };
        let (plan, working, slide) = (self.plan, self.working, self.slide);
        // The reader keeps each decoded slide tile from its first read to its last.
        working.plan_reads(slide, todo.iter().map(|&n| plan.nth(n).rect));
        let progress = progress_bar(todo.len() as u64, slide);
        let next = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let read_nanos = AtomicU64::new(0);
        let (tiles_tx, tiles_rx) = crossbeam_channel::bounded::<ReadResult>(self.batch * 2);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<Finished>(IN_FLIGHT);
        let (spare_tx, spare_rx) = crossbeam_channel::unbounded::<Spare>();
        // Tile buffers go back to the readers once copied into a batch: no
        // allocation per tile, so the heap does not fragment as slides grow.
        let readers = self.readers.max(1);
        let (pool_tx, pool_rx) = crossbeam_channel::bounded::<Vec<u8>>(self.batch * 2 + readers);
        let inference = Inference {
            plan,
            tiles: todo.len(),
            model: self.model,
            batch: self.batch,
            with_probs,
        };
        let todo = &todo;
        let tile_px = (plan.tile_size() as usize).pow(2);

        let (inferred, stitched) = std::thread::scope(|scope| {
            for _ in 0..readers {
                let tx = tiles_tx.clone();
                let pool = pool_rx.clone();
                let (next, cancel, read_nanos) = (&next, &cancel, &read_nanos);
                scope.spawn(move || loop {
                    let first = next.fetch_add(READ_CHUNK, Ordering::Relaxed);
                    if first >= todo.len() {
                        break;
                    }
                    for &n in &todo[first..(first + READ_CHUNK).min(todo.len())] {
                        if cancel.load(Ordering::Relaxed) {
                            return;
                        }
                        let t0 = Instant::now();
                        let buf = pool.try_recv().unwrap_or_default();
                        let read = working.read_into(slide, plan.nth(n).rect, buf);
                        read_nanos.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        if tx.send((n, read)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tiles_tx);
            let stitcher = scope.spawn(move || -> Result<(Stitchers, Duration)> {
                let mut stitchers = stitchers;
                let mut busy = Duration::ZERO;
                // Ends when inference drops its sender: finished or failed.
                for done in done_rx {
                    let t0 = Instant::now();
                    let spare = stitchers.add(done, tile_px)?;
                    busy += t0.elapsed();
                    let _ = spare_tx.send(spare);
                }
                Ok((stitchers, busy))
            });
            let inferred = inference.run(tiles_rx, done_tx, spare_rx, pool_tx, &progress);
            if inferred.is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
            // `tiles_rx` and `done_tx` were moved into `run` and are dropped:
            // blocked readers wake up, the stitcher drains and returns.
            let stitched = stitcher.join().expect("the stitcher thread panicked");
            (inferred, stitched)
        });
        progress.finish_and_clear();
        // A stitcher error (a full disk…) is the cause of inference stopping.
        let (stitchers, stitch_write) = stitched?;
        let inference = inferred?;
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

struct Inference<'a> {
    plan: TilePlan,
    /// Tiles that will arrive.
    tiles: usize,
    model: &'a Segmenter,
    batch: usize,
    with_probs: bool,
}

impl Inference<'_> {
    /// Packs tiles into staging buffers as they come, keeps [`IN_FLIGHT`]
    /// batches queued on the device, and hands each finished batch to the
    /// stitcher; returns the time spent queuing and collecting batches.
    fn run(
        &self,
        tiles: Receiver<ReadResult>,
        done: Sender<Finished>,
        spare: Receiver<Spare>,
        pool: Sender<Vec<u8>>,
        progress: &ProgressBar,
    ) -> Result<Duration> {
        let t = self.plan.tile_size();
        let tile_px = (t as usize).pow(2);
        let mut free: Vec<_> = (0..IN_FLIGHT)
            .map(|_| self.model.staging(self.batch, t))
            .collect();
        let mut queued: VecDeque<(InFlight, Vec<TileIndex>)> = VecDeque::new();
        let (mut received, mut finished) = (0, 0);
        let mut busy = Duration::ZERO;
        while finished < self.tiles {
            if received < self.tiles && queued.len() < IN_FLIGHT {
                let mut staging = free.pop().expect("a staging buffer per batch in flight");
                let mut indices = Vec::with_capacity(self.batch);
                while indices.len() < self.batch && received < self.tiles {
                    let (n, read) = tiles
                        .recv()
                        .context("the tile readers stopped before reading every tile")?;
                    received += 1;
                    let rgb = read?;
                    staging
                        .tile_mut(indices.len())
                        .copy_from_slice(rgb.as_raw());
                    let _ = pool.try_send(rgb.into_raw());
                    indices.push(self.plan.nth(n).index);
                }
                // On CUDA the last, partial batch runs at full size (the
                // extra tiles are ignored): one input shape, no new autotuning.
                let n = if self.model.device().is_cuda() {
                    self.batch
                } else {
                    indices.len()
                };
                let t0 = Instant::now();
                let flight = self.model.submit(staging, n, self.with_probs)?;
                busy += t0.elapsed();
                queued.push_back((flight, indices));
                // Keep the device fed: collect only once the next batch is queued.
                if queued.len() < IN_FLIGHT && received < self.tiles {
                    continue;
                }
            }
            let (flight, indices) = queued.pop_front().expect("a batch in flight");
            let (mut labels, mut probs) = spare.try_recv().unwrap_or_else(|_| {
                let buffer = || vec![0u8; self.batch * tile_px];
                (buffer(), self.with_probs.then(buffer))
            });
            let t0 = Instant::now();
            free.push(flight.wait_into(&mut labels, probs.as_deref_mut())?);
            busy += t0.elapsed();
            let k = indices.len();
            tracing::debug!(
                tiles = k,
                wait_ms = t0.elapsed().as_millis() as u64,
                "batch done"
            );
            finished += k;
            progress.inc(k as u64);
            done.send(Finished {
                indices,
                labels,
                probs,
            })
            .map_err(|_| anyhow!("the stitcher stopped"))?;
        }
        Ok(busy)
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
