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
        // Calls back with the latest report; an exception there cancels.
        let deliver = |latest: Option<Progress>, raised: &mut Option<PyErr>| {
            if let (Some(p), Some(cb), None) = (latest, callback, raised.as_ref()) {
                if let Err(e) = cb.call1((p.tiles_done, p.tiles_total)) {
                    cancel.store(true, Ordering::SeqCst);
                    *raised = Some(e);
                }
            }
        };
        loop {
            let got = py.detach(|| rx.recv_timeout(TICK)).ok();
            deliver(rx.try_iter().last().or(got), &mut raised);
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
        // The last report, when it came while the callback ran.
        deliver(rx.try_iter().last(), &mut raised);
        match (result, raised) {
            (Ok(Ok(value)), None) => Ok(value),
            // Interrupted (Ctrl-C, or the callback raised): the engine has
            // cleaned up; raise what stopped it, with the engine's own error
            // as its cause when cleaning up failed too.
            (Ok(result), Some(e)) => {
                if let Err(engine) = result {
                    if !matches!(engine, EngineError::Cancelled) {
                        e.set_cause(py, Some(crate::to_py(engine)));
                    }
                }
                Err(e)
            }
            (Ok(Err(e)), None) => Err(crate::to_py(e)),
            (Err(_), _) => Err(crate::WsisegError::new_err(
                "internal error: an engine thread panicked; this is a bug in wsiseg, please report it",
            )),
        }
    })
}
