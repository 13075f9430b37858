//! One slide through the engine: reader threads → bounded channel → model
//! (this thread, which owns it) → stitcher → streaming PNG writer.
//!
//! The channel is bounded, so readers stay at most a couple of batches ahead
//! and memory does not grow with the slide.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use wsiseg_infer::Segmenter;
use wsiseg_slide::{Slide, TileIndex, TilePlan, WorkingLevel};
use wsiseg_stitch::{PngMaskWriter, RowSink, StitchError, Stitcher};

/// How to run one slide.
pub struct Job<'a> {
    pub slide: &'a dyn Slide,
    pub working: WorkingLevel,
    pub plan: TilePlan,
    pub model: &'a Segmenter,
    pub batch: usize,
    pub readers: usize,
    pub mask_path: PathBuf,
}

/// What a finished slide produced.
pub struct Outcome {
    pub mask_path: PathBuf,
    pub tiles: usize,
    pub elapsed: Duration,
    /// Pixels of the working level per class index.
    pub class_pixels: Vec<u64>,
}

/// Counts pixels per class on their way to the real sink.
struct Counting<S> {
    inner: S,
    counts: [u64; 256],
}

impl<S: RowSink> RowSink for Counting<S> {
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), StitchError> {
        for &v in rows {
            self.counts[v as usize] += 1;
        }
        self.inner.write_rows(rows)
    }
}

type ReadResult = (
    usize,
    Result<wsiseg_slide::RgbImage, wsiseg_slide::SlideError>,
);

impl Job<'_> {
    pub fn run(self) -> Result<Outcome> {
        let start = Instant::now();
        let writer = PngMaskWriter::create(&self.mask_path, self.plan.level_size())?;
        let mut stitcher = Stitcher::new(
            self.plan,
            Counting {
                inner: writer,
                counts: [0; 256],
            },
        );
        let progress = progress_bar(self.plan.len() as u64, self.slide);
        let next = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let (tx, rx) = crossbeam_channel::bounded::<ReadResult>(self.batch * 2);

        let result = std::thread::scope(|scope| {
            for _ in 0..self.readers.max(1) {
                let tx = tx.clone();
                let (next, cancel) = (&next, &cancel);
                scope.spawn(move || loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= self.plan.len() || cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let tile = self.plan.nth(n);
                    let read = self.working.read(self.slide, tile.rect);
                    if tx.send((n, read)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            let r = self.consume(rx, &mut stitcher, &progress);
            if r.is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
            r // `rx` was moved into `consume` and is dropped: blocked readers wake up.
        });
        progress.finish_and_clear();
        result?;
        let counting = stitcher.finish()?;
        let mask_path = counting.inner.commit()?;
        let last_class = counting.counts.iter().rposition(|&c| c > 0).unwrap_or(0);
        Ok(Outcome {
            mask_path,
            tiles: self.plan.len(),
            elapsed: start.elapsed(),
            class_pixels: counting.counts[..=last_class.max(1)].to_vec(),
        })
    }

    /// Batches tiles as they come, runs the model, hands labels to the stitcher.
    fn consume<S: RowSink>(
        &self,
        rx: crossbeam_channel::Receiver<ReadResult>,
        stitcher: &mut Stitcher<S>,
        progress: &ProgressBar,
    ) -> Result<()> {
        let t = self.plan.tile_size();
        let tile_bytes = (t * t) as usize;
        let mut pixels = Vec::with_capacity(self.batch * tile_bytes * 3);
        let mut labels = vec![0u8; self.batch * tile_bytes];
        let mut indices: Vec<TileIndex> = Vec::with_capacity(self.batch);
        let mut received = 0;
        while received < self.plan.len() {
            let (n, read) = rx
                .recv()
                .context("the tile readers stopped before reading every tile")?;
            received += 1;
            pixels.extend_from_slice(read?.as_raw());
            indices.push(self.plan.nth(n).index);
            if indices.len() == self.batch || received == self.plan.len() {
                let k = indices.len();
                let started = Instant::now();
                self.model.segment(&pixels, k, t, &mut labels, None)?;
                tracing::debug!(
                    tiles = k,
                    ms = started.elapsed().as_millis() as u64,
                    "batch"
                );
                for (i, index) in indices.drain(..).enumerate() {
                    stitcher.add(index, &labels[i * tile_bytes..(i + 1) * tile_bytes])?;
                }
                pixels.clear();
                progress.inc(k as u64);
            }
        }
        Ok(())
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
