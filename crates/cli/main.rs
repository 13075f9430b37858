//! The `wsiseg` command: segment tumor in whole-slide images.

mod args;
mod bench;
mod doctor;
mod errors;
mod eval;
mod info;
mod inputs;
mod model;
mod panics;
mod segment;
mod signals;
mod summary;
mod synth;
mod view;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use args::{Cli, Command};

/// wsiseg's own allocations counted, its large buffers on their own
/// mappings; the rest, and libtorch's, on malloc — tcmalloc, linked
/// statically by crates/cli/build.rs (see `wsiseg_engine::memory`).
#[global_allocator]
static ALLOCATOR: wsiseg_engine::memory::TrackedAlloc = wsiseg_engine::memory::TrackedAlloc;

#[cfg(wsiseg_tcmalloc)]
unsafe extern "C" {
    /// gperftools' version: "gperftools MAJOR.MINOR".
    fn tc_version(
        major: *mut std::ffi::c_int,
        minor: *mut std::ffi::c_int,
        patch: *mut *const std::ffi::c_char,
    ) -> *const std::ffi::c_char;
}

/// Names the malloc linked in, for reports and `wsiseg bench`.
fn name_malloc() {
    #[cfg(wsiseg_tcmalloc)]
    {
        let (mut major, mut minor, mut patch) = (0, 0, std::ptr::null());
        // SAFETY: tc_version writes the three out-parameters and returns a
        // static NUL-terminated string.
        let version =
            unsafe { std::ffi::CStr::from_ptr(tc_version(&mut major, &mut minor, &mut patch)) };
        wsiseg_engine::memory::set_malloc_name(format!(
            "tcmalloc ({}, static)",
            version.to_string_lossy()
        ));
    }
}

fn main() -> ExitCode {
    // libtorch's CUDA half, before anything asks libtorch about CUDA: it
    // keeps the first answer (wsiseg_infer::load_cuda_support).
    let _ = wsiseg_infer::load_cuda_support();
    name_malloc();
    let cli = Cli::parse();
    init_logging(&cli);
    panics::install();
    match std::panic::catch_unwind(|| run(&cli)) {
        Ok(code) => code,
        Err(_) => {
            eprintln!("error: internal error: {}", panics::take());
            ExitCode::from(101)
        }
    }
}

fn run(cli: &Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Info(args) => info::run(args).map(|()| ExitCode::SUCCESS),
        Command::Synth(args) => synth::run(args).map(|()| ExitCode::SUCCESS),
        Command::Eval(args) => eval::run(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Model(args::ModelCommand::Check(args)) => model::run(args).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::Summary(args) => summary::run(args).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::Doctor(args) => doctor::run(args).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::View(args) => {
            signals::install();
            view::run(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Segment(args) => {
            signals::install();
            segment::run(args).map(|s| {
                if s.cancelled {
                    let (code, name) = signals::received();
                    eprintln!(
                        "error: interrupted by {name}: {} slide(s) finished, temporary files removed; run the same command again to resume",
                        s.done
                    );
                    ExitCode::from(code)
                } else if s.failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            })
        }
    };
    result.unwrap_or_else(|e| {
        errors::report_error(&e);
        ExitCode::FAILURE
    })
}

fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "warn"
    } else if cli.verbose {
        "debug"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("WSISEG_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
}
