//! The `wsiseg` command: segment tumor in whole-slide images.

mod args;
mod bench;
mod eval;
mod geojson;
mod info;
mod outputs;
mod overlay;
mod pipeline;
mod report;
mod segment;
mod synth;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let result = match &cli.command {
        Command::Info(args) => info::run(args).map(|()| ExitCode::SUCCESS),
        Command::Synth(args) => synth::run(args).map(|()| ExitCode::SUCCESS),
        Command::Eval(args) => eval::run(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Segment(args) => segment::run(args).map(|s| {
            if s.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
    };
    result.unwrap_or_else(|e| {
        report_error(&e);
        ExitCode::FAILURE
    })
}

/// Prints an error as one line: `error: <what, with its causes>`.
pub(crate) fn report_error(e: &anyhow::Error) {
    // Our errors already name the file and the cause; libtorch's sources may
    // span lines, so keep only the first line of each link of the chain.
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let line = text.lines().next().unwrap_or_default().trim().to_string();
        if !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
    }
    eprintln!("error: {}", parts.join(": "));
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
