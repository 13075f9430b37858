//! The models' load onto their devices on a thread of its own
//! ([`crate::EngineBuilder::start`]): libtorch's CUDA start, the load and
//! the warm-up at the batch's shape go on while the first slide is locked,
//! checked for resume, opened and planned — start-up off the critical path.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use wsiseg_infer::{Segmenter, TileDecoder};

use crate::EngineError;

/// Set in tests only, to a number of milliseconds the load sleeps first: a
/// GPU server's slow start-up on a machine without one, so that what the
/// load overlaps can be seen.
pub(crate) const TEST_LOAD_DELAY_MS: &str = "WSISEG_TEST_LOAD_DELAY_MS";

/// The models on their devices, with each worker's JPEG decoder.
pub(crate) struct Loaded {
    /// One model copy per worker; each worker thread holds its own lock
    /// for a whole slide (libtorch modules may move between threads, not be shared).
    pub workers: Vec<Mutex<Segmenter>>,
    /// Per worker, its device's JPEG decoder (none: tiles are decoded on the host).
    pub decoders: Vec<Mutex<Option<TileDecoder>>>,
    /// Why `auto` decodes on the host although the model runs on a GPU.
    pub decode_unavailable: Option<String>,
    /// The libraries the models run on, with their versions (for reports).
    pub libraries: Vec<(&'static str, Option<String>)>,
}

/// The models, loaded or loading.
pub(crate) struct Loading {
    thread: Mutex<Option<JoinHandle<Result<Loaded, EngineError>>>>,
    loaded: OnceLock<Loaded>,
    /// Why the load failed, once it has: its own error went to the first
    /// caller that waited for it.
    failed: OnceLock<String>,
}

impl Loading {
    /// Runs `load` on a thread of its own.
    pub fn spawn(
        load: impl FnOnce() -> Result<Loaded, EngineError> + Send + 'static,
    ) -> Result<Self, EngineError> {
        let thread = std::thread::Builder::new()
            .name("wsiseg-load".into())
            .spawn(load)
            .map_err(|_| EngineError::Panicked("model loading"))?;
        Ok(Self {
            thread: Mutex::new(Some(thread)),
            loaded: OnceLock::new(),
            failed: OnceLock::new(),
        })
    }

    /// The models, once loaded (this waits for the load), or the load's
    /// error: its own to the first caller, its one line to later ones.
    pub fn get(&self) -> Result<&Loaded, EngineError> {
        if let Some(loaded) = self.loaded.get() {
            return Ok(loaded);
        }
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(loaded) = self.loaded.get() {
            return Ok(loaded);
        }
        let Some(handle) = thread.take() else {
            let why = self.failed.get().cloned().unwrap_or_default();
            return Err(EngineError::NotLoaded(why));
        };
        match handle.join() {
            Ok(Ok(loaded)) => Ok(self.loaded.get_or_init(|| loaded)),
            Ok(Err(e)) => {
                let _ = self.failed.set(crate::error_line(&e));
                Err(e)
            }
            Err(_) => {
                let e = EngineError::Panicked("model loading");
                let _ = self.failed.set(e.to_string());
                Err(e)
            }
        }
    }

    /// Whether the load failed (every slide after it would fail the same way).
    pub fn failed(&self) -> bool {
        self.failed.get().is_some()
    }
}

impl Drop for Loading {
    /// Waits for a load still running: a process must not end while
    /// libtorch is loading on another thread.
    fn drop(&mut self) {
        if let Some(handle) = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = handle.join();
        }
    }
}
