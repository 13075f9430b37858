//! Segments one slide through wsiseg-engine's public API:
//! `cargo run -p wsiseg-engine --example segment [SLIDE [MODEL [OUT]]]`
//! (default: tests/data/default.svs with models/unet into a temporary folder).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use wsiseg_engine::{EngineBuilder, Request, RunControl, SlideOutcome};

/// Segments the slide and prints what was done.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let slide = args.next().unwrap_or(repo.join("tests/data/default.svs"));
    let model = args.next().unwrap_or(repo.join("models/unet"));
    let out = args
        .next()
        .unwrap_or(std::env::temp_dir().join("wsiseg-example"));

    let engine = EngineBuilder::new(&model).build()?; // one CPU worker; .devices(..) for GPUs
    let cancel = AtomicBool::new(false);
    let request = Request {
        overwrite: true,
        ..Request::default()
    };
    let outcome = engine.segment(&slide, &out, &request, &RunControl::new(&cancel))?;
    let SlideOutcome::Segmented {
        stats,
        files,
        figures,
    } = outcome
    else {
        return Err("an overwriting request is never skipped".into());
    };
    println!(
        "{}: {} of {} tiles in {:.1} s, tumor {:.2}% → {} files in {}",
        slide.display(),
        stats.tiles_run,
        stats.tiles_planned,
        stats.total_s,
        100.0 * figures.tumor_fraction,
        files.len(),
        out.display()
    );
    Ok(())
}
