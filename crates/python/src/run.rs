//! Engine work off the calling thread: the GIL is released while it runs;
//! the calling thread relays progress to a Python callable and checks for
//! signals every 50 ms. Ctrl-C (or an exception in the callback) sets the
//! engine's cancel flag; the engine stops, removes its temporary files, and
//! the exception is raised once it has.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::prelude::*;
use wsiseg_engine::{EngineError, Progress};

/// How often the calling thread wakes to relay progress and check signals.
const TICK: Duration = Duration::from_millis(50);

/// Runs `work(cancel, progress)` on a thread of its own and waits for it
/// as described in the module. `callback(done, total)` is called on this
/// thread for each progress report (the latest one, when several came).
pub(crate) fn run_engine<T: Send>(
    py: Python<'_>,
    callback: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(&AtomicBool, &(dyn Fn(Progress) + Sync)) -> Result<T, EngineError> + Send,
) -> PyResult<T> {
    let cancel = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded::<Progress>();
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let report = move |p: Progress| {
                let _ = tx.send(p);
            };
            work(&cancel, &report)
        });
        let mut raised: Option<PyErr> = None;
        loop {
            let got = py.detach(|| rx.recv_timeout(TICK));
            let mut latest = got.ok();
            while let Ok(p) = rx.try_recv() {
                latest = Some(p);
            }
            if let (Some(p), Some(cb), None) = (latest, callback, raised.as_ref()) {
                if let Err(e) = cb.call1((p.tiles_done, p.tiles_total)) {
                    cancel.store(true, Ordering::SeqCst);
                    raised = Some(e);
                }
            }
            if raised.is_none() {
                if let Err(e) = py.check_signals() {
                    cancel.store(true, Ordering::SeqCst);
                    raised = Some(e);
                }
            }
            if handle.is_finished() {
                break;
            }
        }
        let result = py.detach(|| handle.join());
        match (result, raised) {
            (Ok(Ok(value)), None) => Ok(value),
            // Interrupted: the engine has cleaned up; raise what stopped it.
            (Ok(Err(EngineError::Cancelled)), Some(e)) => Err(e),
            (Ok(Err(e)), _) => Err(crate::to_py(e)),
            // Finished before it saw the flag: its outputs are complete.
            (Ok(Ok(_)), Some(e)) => Err(e),
            (Err(_), _) => Err(crate::WsisegError::new_err(
                "internal error: an engine thread panicked; this is a bug in wsiseg, please report it",
            )),
        }
    })
}
