//! stdout and stderr that a closed pipe cannot crash.
//!
//! `println!` panics when its stream is gone (`pipe run … | head -1`, a closed terminal), and a
//! second panic while the hook reports the first aborts the process: the run folder stays
//! `running` for ever. Every line pipe prints goes through the macros below instead.
//!
//! - A closed **stderr** is ignored: there is nobody left to tell.
//! - A closed **stdout** ends a verb whose only product is its output (predict, eval's
//!   tables, compare, runs, …) at once, quietly, with exit code 0, as `head`-fed Unix tools do.
//!   `pipe run` and `pipe sweep` call [`keep_running_when_closed`] first: their product is the
//!   run folder, so they go on without printing, and their log.txt keeps every line.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by verbs whose work must finish even when nobody reads their output.
static KEEP_RUNNING: AtomicBool = AtomicBool::new(false);
/// Set once stdout has failed, so later lines are not attempted.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// From now on, a closed stdout silences output instead of ending the process.
pub fn keep_running_when_closed() {
    KEEP_RUNNING.store(true, Ordering::Relaxed);
}

/// Writes to stdout; see the module notes for what happens when it is closed.
pub fn write_out(args: fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if !KEEP_RUNNING.load(Ordering::Relaxed) && e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Writes to stderr, ignoring a closed one.
pub fn write_err(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `println!` that survives a closed stdout (see [`crate::console`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::console::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that survives a closed stdout (see [`crate::console`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::console::write_out(format_args!($($arg)*)) };
}

/// `eprintln!` that survives a closed stderr.
#[macro_export]
macro_rules! errln {
    () => { $crate::console::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that survives a closed stderr.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::console::write_err(format_args!($($arg)*)) };
}
