//! The stitcher thread and the output threads: finished batches → label
//! and probability stitchers → bands of finished rows, lent to every
//! output's thread and taken back for reuse.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use wsiseg_slide::TileIndex;
use wsiseg_stitch::{RowSink, StitchError, Stitcher};

use super::Shared;
use crate::outputs::{count_values, MaskOutput};
use crate::EngineError;

/// Outputs of one batch on their way to the stitcher.
pub(super) struct Finished {
    pub(super) indices: Vec<TileIndex>,
    pub(super) labels: Vec<u8>,
    pub(super) probs: Option<Vec<u8>>,
}

/// Result buffers returned by the stitcher for the next batch.
pub(super) type Spare = (Vec<u8>, Option<Vec<u8>>);

/// Bands of finished rows each output thread may have waiting: enough to
/// keep every writer busy while the stitcher fills the next band, few
/// enough that memory stays a handful of bands whatever the slide.
pub(super) const BANDS_QUEUED: usize = 2;

/// Finished bands of one stitcher, kept by value to be handed on uncopied.
#[derive(Default)]
pub(super) struct Outbox(Vec<Vec<u8>>);

impl RowSink for Outbox {
    type Error = StitchError;
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), StitchError> {
        self.0.push(rows.to_vec());
        Ok(())
    }
    fn take_rows(&mut self, rows: Vec<u8>) -> Result<Option<Vec<u8>>, StitchError> {
        self.0.push(rows);
        Ok(None)
    }
}

/// A band of finished rows on its way to an output thread: the labels, or
/// class `k`'s probabilities. Every output reads the same band.
pub(super) enum Rows {
    Labels(Arc<Vec<u8>>),
    Probs(usize, Arc<Vec<u8>>),
}

/// The stitcher thread's state: stitchers for the labels and for each
/// probability plane (class 1 on, when asked), whose bands go to every
/// output thread as soon as they are complete.
pub(super) struct Stitching {
    pub(super) labels: Stitcher<Outbox>,
    pub(super) probs: Vec<Stitcher<Outbox>>,
    /// One per output thread, and whether that output wants probabilities.
    pub(super) writers: Vec<(Sender<Rows>, bool)>,
    /// Pixels of each label value in the cores of the tiles run (then the
    /// whole level's, once finished).
    pub(super) counts: Vec<u64>,
    pub(super) level_pixels: u64,
    /// Bands lent to the writers (`None`: labels, `Some(k)`: plane `k`),
    /// taken back for reuse once every writer is done with them.
    pub(super) lent: VecDeque<(Option<usize>, Arc<Vec<u8>>)>,
}

impl Stitching {
    /// Adds one batch's tiles; returns its buffers for reuse.
    fn add(&mut self, done: Finished, tile_px: usize) -> Result<Spare, EngineError> {
        for (i, &index) in done.indices.iter().enumerate() {
            let range = i * tile_px..(i + 1) * tile_px;
            // Counted row by row as the core is copied, while in cache.
            let counts = &mut self.counts;
            self.labels
                .add_with(index, &done.labels[range], |row| count_values(counts, row))?;
            if let Some(p) = &done.probs {
                // Per tile, one plane per class from class 1 on.
                let planes = self.probs.len();
                for (k, s) in self.probs.iter_mut().enumerate() {
                    let at = (i * planes + k) * tile_px;
                    s.add(index, &p[at..at + tile_px])?;
                }
            }
        }
        self.drain()?;
        Ok((done.labels, done.probs))
    }

    /// Hands the bands finished so far to the writers, and takes back the
    /// bands they are done with.
    fn drain(&mut self) -> Result<(), EngineError> {
        for band in std::mem::take(&mut self.labels.sink_mut().0) {
            self.lend(None, band)?;
        }
        for k in 0..self.probs.len() {
            for band in std::mem::take(&mut self.probs[k].sink_mut().0) {
                self.lend(Some(k), band)?;
            }
        }
        self.reclaim();
        Ok(())
    }

    /// Sends one band to every writer that wants it (waiting while one has
    /// [`BANDS_QUEUED`] bands still to write).
    fn lend(&mut self, plane: Option<usize>, band: Vec<u8>) -> Result<(), EngineError> {
        let band = Arc::new(band);
        for (tx, wants_probs) in &self.writers {
            let rows = match plane {
                None => Rows::Labels(Arc::clone(&band)),
                Some(_) if !wants_probs => continue,
                Some(k) => Rows::Probs(k + 1, Arc::clone(&band)),
            };
            // A writer that stopped has failed: its error is reported.
            tx.send(rows).map_err(|_| EngineError::Stopped)?;
        }
        self.lent.push_back((plane, band));
        Ok(())
    }

    /// Band buffers no writer holds any more go back to their stitcher.
    fn reclaim(&mut self) {
        let mut still = VecDeque::with_capacity(self.lent.len());
        for (plane, band) in self.lent.drain(..) {
            match Arc::try_unwrap(band) {
                Ok(buffer) => match plane {
                    None => self.labels.recycle(buffer),
                    Some(k) => self.probs[k].recycle(buffer),
                },
                Err(band) => still.push_back((plane, band)),
            }
        }
        self.lent = still;
    }

    /// Checks that every tile arrived and hands over the last rows (rows
    /// of tiles with nothing to run are complete only now); the writers
    /// end when this returns (their senders dropped).
    fn finish(mut self) -> Result<Vec<u64>, EngineError> {
        self.labels.complete()?;
        for p in &mut self.probs {
            p.complete()?;
        }
        self.drain()?;
        // The cores of tiles not run are background.
        let counted: u64 = self.counts.iter().sum();
        self.counts[0] += self.level_pixels - counted;
        Ok(self.counts)
    }
}

/// One output's thread: writes every band it is sent, in order, until the
/// stitcher drops its sender; returns its busy time. On an error it stops
/// the job (its error is the one reported).
pub(super) fn write_out(
    output: &mut Box<dyn MaskOutput>,
    bands: Receiver<Rows>,
    shared: &Shared,
) -> Result<Duration, EngineError> {
    let mut busy = Duration::ZERO;
    for rows in bands {
        let t0 = Instant::now();
        let written = match &rows {
            Rows::Labels(band) => output.label_rows(band),
            Rows::Probs(class, band) => output.prob_rows(*class, band),
        };
        busy += t0.elapsed();
        if let Err(e) = written {
            shared.stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    }
    Ok(busy)
}

/// The stitcher thread's loop: ends when every worker has dropped its sender.
pub(super) fn stitch(
    mut stitching: Stitching,
    done: &Receiver<Finished>,
    spare: &Sender<Spare>,
    tile_px: usize,
    shared: &Shared,
) -> Result<(Vec<u64>, Duration), EngineError> {
    let mut busy = Duration::ZERO;
    for batch in done {
        if shared.control.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let t0 = Instant::now();
        let buffers = stitching.add(batch, tile_px)?;
        busy += t0.elapsed();
        let _ = spare.send(buffers);
    }
    if shared.stopping() {
        // A worker failed: its error is the one to report.
        return Ok((Vec::new(), busy));
    }
    let t0 = Instant::now();
    let counts = stitching.finish()?;
    busy += t0.elapsed();
    Ok((counts, busy))
}
