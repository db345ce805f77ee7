//! A panic is a bug, but it still ends the way every other failure does: one line on stderr,
//! exit code 1, and (in `pipe run`) a run.json that says `failed` with the message and where
//! it happened. The hook below formats the line and remembers it; `cli::main` and the run's
//! stage loop catch the unwinding and turn it into that ending. The backtrace goes to the run's
//! log.txt (through tracing), not to the terminal.
//!
//! A binary built with `panic = "abort"` (the `dist` profile of the carried CUDA binary, which
//! saves its unwinding code) has nothing to catch: there the hook ends the process itself, the
//! same way, after [`RunEnding`] has marked the run failed.

use std::backtrace::Backtrace;
use std::panic::PanicHookInfo;
use std::sync::Mutex;

/// The first panic of the process, as `panicked at FILE:LINE:COL: MESSAGE`.
static FIRST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// What `pipe run` does to its run.json when a panic cannot unwind to its catch: given the
/// panic's text, marks the run failed as the catch would.
type EndRun = Box<dyn FnOnce(&str) + Send>;

/// The run in progress, while one is (only read where panics abort).
static RUN_IN_PROGRESS: Mutex<Option<EndRun>> = Mutex::new(None);

/// While alive, a panic in a binary built with `panic = "abort"` ends the run through the
/// closure it was made with; dropped once the run's own ending has been decided.
pub struct RunEnding(());

impl RunEnding {
    pub fn new(end: impl FnOnce(&str) + Send + 'static) -> Self {
        *RUN_IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(end));
        RunEnding(())
    }
}

impl Drop for RunEnding {
    fn drop(&mut self) {
        RUN_IN_PROGRESS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// Replaces the default hook (several lines, a note about RUST_BACKTRACE) with one line.
/// Only the first panic prints: worker threads of one failing operation may all panic.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let text = describe(info);
        let mut first = FIRST_PANIC.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            tracing::error!(backtrace = %Backtrace::force_capture(), "{text}");
            errln!("error: internal error: {text}");
            *first = Some(text);
        }
        if cfg!(panic = "abort") {
            // Still holding FIRST_PANIC: a second thread's panic waits here instead of
            // aborting the process while run.json is being written.
            let text = first.clone().unwrap_or_default();
            let end = RUN_IN_PROGRESS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(end) = end {
                end(&text);
            }
            std::process::exit(super::EXIT_FAILURE);
        }
    }));
}

/// The first panic's text, for run.json (a generic line if the hook was not installed).
pub fn first_panic() -> String {
    FIRST_PANIC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| "panicked (no message recorded)".to_string())
}

fn describe(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    // assert_eq! and friends write several lines; the report is one.
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match info.location() {
        Some(l) => format!(
            "panicked at {}:{}:{}: {message}",
            l.file(),
            l.line(),
            l.column()
        ),
        None => format!("panicked: {message}"),
    }
}

/// Test hook, documented in docs/errors.md: with `PIPE_TEST_PANIC_AT_STEP=N`, `pipe run` panics
/// when its N-th optimizer step is reported, so the tests can check how a run that panics
/// mid-stage ends (no real input is known to panic; each one found became a check).
pub const TEST_PANIC_ENV: &str = "PIPE_TEST_PANIC_AT_STEP";

/// The step [`TEST_PANIC_ENV`] asks `pipe run` to panic at.
pub fn test_panic_step() -> Option<usize> {
    std::env::var(TEST_PANIC_ENV).ok()?.parse().ok()
}
