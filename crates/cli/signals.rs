//! Ctrl-C (SIGINT) and SIGTERM cancel the run: the engine stops reading,
//! drops work in flight and removes its temporary files; the summary of
//! what finished is written and the process exits 130 or 143. A second
//! signal kills at once (the handler is reset after the first).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static CANCEL: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    SIGNAL.store(signal, Ordering::SeqCst);
    CANCEL.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the cancel flag.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores atomics,
        // an empty mask and SA_RESETHAND (the next signal has its default
        // action); sigaction is given valid pointers.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The flag the engine watches.
pub fn cancel_flag() -> &'static AtomicBool {
    &CANCEL
}

/// The exit code and name of the signal that cancelled the run.
pub fn received() -> (u8, &'static str) {
    match SIGNAL.load(Ordering::SeqCst) {
        libc::SIGTERM => (143, "SIGTERM"),
        _ => (130, "SIGINT (Ctrl-C)"),
    }
}
