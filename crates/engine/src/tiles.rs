//! A slide's planned tiles read by background threads, handed out in plan
//! order: what a training loop iterates over.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use wsiseg_slide::{RgbImage, Slide, Tile};

use crate::{EngineError, SlidePlan};

/// Tiles a reader may be ahead of the consumer, per reader thread: memory
/// stays at `threads × AHEAD` tiles, however slow the consumer…
const AHEAD: usize = 4;

/// …and at most this many bytes of tiles beyond one per thread.
const AHEAD_BYTES: usize = 256 << 20;

/// The most reader threads a stream starts.
pub const MAX_TILE_THREADS: usize = 64;

/// One tile read: its place and its pixels (`tile × tile` RGB, padded
/// white outside the slide, at the plan's working resolution).
#[derive(Debug)]
pub struct TileRead {
    /// Its position among the tiles that run (0, 1, …).
    pub k: usize,
    /// The tile in the plan (working-level rectangles).
    pub tile: Tile,
    /// Level-0 x and y of its top-left corner (halo included).
    pub x0: i64,
    /// Level-0 y.
    pub y0: i64,
    /// Its pixels.
    pub rgb: RgbImage,
}

/// The tiles of a [`SlidePlan`] that run, read by `threads` threads and
/// yielded in plan order (row by row). Dropping it stops the threads.
pub struct TileStream {
    rx: Receiver<(usize, Result<TileRead, EngineError>)>,
    waiting: BTreeMap<usize, Result<TileRead, EngineError>>,
    next: usize,
    total: usize,
    gate: Arc<Gate>,
    threads: Vec<JoinHandle<()>>,
}

/// How far the readers may run ahead of the consumer.
struct Gate {
    /// The next tile the consumer takes.
    yielded: Mutex<usize>,
    moved: Condvar,
    stop: AtomicBool,
}

impl TileStream {
    /// Starts `threads` readers (at least one) over `plan`'s tiles that run.
    pub fn new(slide: Arc<dyn Slide>, plan: &SlidePlan, threads: usize) -> Self {
        let tiles: Arc<Vec<Tile>> = Arc::new(
            plan.tiles
                .tiles()
                .zip(&plan.run)
                .filter(|(_, &run)| run)
                .map(|(t, _)| t)
                .collect(),
        );
        let threads = threads.clamp(1, MAX_TILE_THREADS).min(tiles.len().max(1));
        let tile_bytes = (plan.tile as usize).pow(2) * 3;
        let window = (AHEAD_BYTES / tile_bytes.max(1)).clamp(threads, threads * AHEAD);
        let (tx, rx) = crossbeam_channel::bounded(window);
        let gate = Arc::new(Gate {
            yielded: Mutex::new(0),
            moved: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let claimed = Arc::new(AtomicUsize::new(0));
        let working = plan.working;
        let handles = (0..threads)
            .map(|_| {
                let (slide, tiles, gate, claimed, tx): (_, _, _, _, Sender<_>) = (
                    slide.clone(),
                    tiles.clone(),
                    gate.clone(),
                    claimed.clone(),
                    tx.clone(),
                );
                std::thread::spawn(move || loop {
                    let k = claimed.fetch_add(1, Ordering::Relaxed);
                    if k >= tiles.len() {
                        return;
                    }
                    // Wait until tile k is within the window.
                    {
                        let mut y = gate.yielded.lock().unwrap_or_else(|e| e.into_inner());
                        while k >= *y + window && !gate.stop.load(Ordering::SeqCst) {
                            y = gate.moved.wait(y).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    if gate.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let tile = tiles[k];
                    let read = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        working.read(slide.as_ref(), tile.rect)
                    })) {
                        Ok(read) => read.map_err(EngineError::from),
                        Err(_) => Err(EngineError::Internal {
                            slide: slide.path().to_path_buf(),
                            detail: format!("the tile reader panicked on tile {k}"),
                        }),
                    }
                    .map(|rgb| TileRead {
                        k,
                        tile,
                        x0: (tile.rect.x as f64 * working.downsample).round() as i64,
                        y0: (tile.rect.y as f64 * working.downsample).round() as i64,
                        rgb,
                    });
                    if tx.send((k, read)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Self {
            rx,
            waiting: BTreeMap::new(),
            next: 0,
            total: tiles.len(),
            gate,
            threads: handles,
        }
    }

    /// Tiles in all.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no tile runs.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Tiles handed out so far.
    pub fn taken(&self) -> usize {
        self.next
    }

    /// The next tile, waiting at most `timeout` for it: `Ok(None)` when
    /// none came in time (ask again), `Err` when every tile was yielded or
    /// the readers stopped.
    pub fn next_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<Result<TileRead, EngineError>>, TilesDone> {
        if self.next >= self.total {
            return Err(TilesDone);
        }
        loop {
            if let Some(read) = self.waiting.remove(&self.next) {
                self.next += 1;
                *self.gate.yielded.lock().unwrap_or_else(|e| e.into_inner()) = self.next;
                self.gate.moved.notify_all();
                return Ok(Some(read));
            }
            match self.rx.recv_timeout(timeout) {
                Ok((k, read)) => {
                    self.waiting.insert(k, read);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Ok(None),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    // Every reader stopped before the last tile: say so once.
                    self.total = self.next;
                    return Ok(Some(Err(EngineError::Panicked("tile reader"))));
                }
            }
        }
    }
}

/// Every tile of a [`TileStream`] was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilesDone;

impl Iterator for TileStream {
    type Item = Result<TileRead, EngineError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(std::time::Duration::from_secs(3600)) {
                Ok(Some(read)) => return Some(read),
                Ok(None) => continue,
                Err(TilesDone) => return None,
            }
        }
    }
}

impl Drop for TileStream {
    fn drop(&mut self) {
        {
            // Under the gate's lock: a reader between its check and its wait
            // cannot miss the wake-up.
            let _gate = self.gate.yielded.lock().unwrap_or_else(|e| e.into_inner());
            self.gate.stop.store(true, Ordering::SeqCst);
        }
        self.gate.moved.notify_all();
        // Unblock senders: drop what is queued, then the receiver's end.
        while self.rx.try_recv().is_ok() {}
        let (_, dead) = crossbeam_channel::bounded(0);
        self.rx = dead;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
