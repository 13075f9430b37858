//! How a front end watches and steers a run: progress, cancellation, and
//! (for tests) injected faults.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wsiseg_write::WriteLimit;

/// Where a slide's run stands, passed to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Tiles through the model so far.
    pub tiles_done: u64,
    /// Tiles to run in all.
    pub tiles_total: u64,
}

/// One batch through the model, passed to the batch callback: when it was
/// handed to the device and when its results were back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchTimes {
    /// Handed to the device.
    pub submitted: Instant,
    /// Its results copied back.
    pub finished: Instant,
    /// Tiles in it.
    pub tiles: usize,
}

/// Progress callback, cancel flag and fault injection for one run.
///
/// ```
/// use std::sync::atomic::AtomicBool;
/// use wsiseg_engine::RunControl;
///
/// let cancel = AtomicBool::new(false);
/// let control = RunControl::new(&cancel).on_progress(&|p| eprintln!("{}/{}", p.tiles_done, p.tiles_total));
/// assert!(!control.cancelled());
/// ```
#[derive(Clone)]
pub struct RunControl<'a> {
    cancel: &'a AtomicBool,
    progress: Option<&'a (dyn Fn(Progress) + Sync)>,
    batches: Option<&'a (dyn Fn(BatchTimes) + Sync)>,
    write_limit: WriteLimit,
    fail_after_tiles: Option<u64>,
}

impl<'a> RunControl<'a> {
    /// A run that stops as soon as `cancel` is set (from a signal handler,
    /// another thread…).
    pub fn new(cancel: &'a AtomicBool) -> Self {
        Self {
            cancel,
            progress: None,
            batches: None,
            write_limit: WriteLimit::none(),
            fail_after_tiles: None,
        }
    }

    /// Calls `f` after every batch (from an engine thread).
    pub fn on_progress(mut self, f: &'a (dyn Fn(Progress) + Sync)) -> Self {
        self.progress = Some(f);
        self
    }

    /// Calls `f` with the times of every batch through the model (from an
    /// inference thread): what `wsiseg bench` measures the device's idle
    /// time between slides with.
    pub fn on_batch(mut self, f: &'a (dyn Fn(BatchTimes) + Sync)) -> Self {
        self.batches = Some(f);
        self
    }

    /// Fault injection: every file of the run shares this byte budget and
    /// fails as on a full disk once it is spent.
    pub fn write_limit(mut self, limit: WriteLimit) -> Self {
        self.write_limit = limit;
        self
    }

    /// Fault injection: the model fails once this many tiles have been
    /// run (as a corrupt tile or a device error would).
    pub fn fail_after_tiles(mut self, tiles: u64) -> Self {
        self.fail_after_tiles = Some(tiles);
        self
    }

    /// Whether the run was asked to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub(crate) fn progress(&self, p: Progress) {
        if let Some(f) = self.progress {
            f(p);
        }
    }

    pub(crate) fn batch_done(&self, times: BatchTimes) {
        if let Some(f) = self.batches {
            f(times);
        }
    }

    pub(crate) fn limit(&self) -> &WriteLimit {
        &self.write_limit
    }

    pub(crate) fn failing_after(&self) -> Option<u64> {
        self.fail_after_tiles
    }
}
