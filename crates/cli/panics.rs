//! Panics as one error line: a bug in wsiseg (or a library) while one slide
//! is segmented fails that slide, and the next one runs.
//!
//! The hook records the panic's message and place instead of printing a
//! multi-line report (shown with `-v`); whoever catches the panic — the
//! folder loop at each slide, or `main` — says it in one line.

use std::sync::Mutex;

/// The last panic's message and place.
static LAST: Mutex<Option<String>> = Mutex::new(None);

/// Replaces the default panic report with [`take`].
pub(crate) fn install() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = format!("panic: {}{place}", first_line(&message));
        tracing::debug!("{text}");
        *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }));
}

/// The last panic, in one line, with a request to report it.
pub(crate) fn take() -> String {
    let last = LAST.lock().unwrap_or_else(|e| e.into_inner()).take();
    format!(
        "{}; this is a bug in wsiseg, please report it",
        last.unwrap_or_else(|| "panic".to_string())
    )
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}
