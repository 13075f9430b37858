//! The engine's guarantees through its public API: a full disk at any byte,
//! a failing model, a cancelled run — an error, and nothing under a final
//! name, no temporary file, no lock; and the shipped example runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use wsiseg_engine::{
    EngineBuilder, EngineError, Format, Request, RunControl, SlideOutcome, WriteLimit,
};

#[path = "../examples/segment.rs"]
#[allow(dead_code)]
mod example;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A 3072² synthetic slide at 0.25 µm/px: a 768×768 mask at the model's 1 µm/px.
fn small_slide(dir: &Path) -> PathBuf {
    let spec = wsiseg_synth::SynthSpec {
        seed: 71,
        width: 3072,
        height: 3072,
        ..Default::default()
    };
    let slide = dir.join("small.svs");
    wsiseg_synth::generate(&spec, &slide, &dir.join("small.truth.tiff"), &mut |_| {}).unwrap();
    slide
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn request() -> Request {
    Request {
        formats: Format::ALL.to_vec(),
        ..Request::default()
    }
}

#[test]
fn a_full_disk_at_any_byte_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let slide = small_slide(dir.path());
    let engine = EngineBuilder::new(repo("models/unet")).build().unwrap();
    let cancel = AtomicBool::new(false);
    let whole = dir.path().join("whole");
    let outcome = engine
        .segment(&slide, &whole, &request(), &RunControl::new(&cancel))
        .unwrap();
    assert!(matches!(outcome, SlideOutcome::Segmented { .. }));
    let total: u64 = names(&whole)
        .iter()
        .map(|n| std::fs::metadata(whole.join(n)).unwrap().len())
        .sum();
    // Every format's files (the overlay format writes two) and the run record.
    assert_eq!(names(&whole).len(), 9, "{:?}", names(&whole));
    // (The report and record hold timings, so their sizes vary by a few bytes.)
    for budget in [0, 1, 4096, 100_000, total / 2, total - 1000] {
        let out = dir.path().join(format!("out-{budget}"));
        std::fs::create_dir_all(&out).unwrap();
        let control = RunControl::new(&cancel).write_limit(WriteLimit::after(budget));
        let e = engine
            .segment(&slide, &out, &request(), &control)
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("small.") && text.contains("No space left on device"),
            "{budget} bytes: {text}"
        );
        assert_eq!(names(&out), Vec::<String>::new(), "{budget} bytes: {text}");
    }
    let out = dir.path().join("exact");
    let control = RunControl::new(&cancel).write_limit(WriteLimit::after(total + 1000));
    engine.segment(&slide, &out, &request(), &control).unwrap();
    assert_eq!(names(&out), names(&whole));
    let mask = |d: &Path| std::fs::read(d.join("small.mask.png")).unwrap();
    assert!(mask(&out) == mask(&whole), "enough room: the same mask");
}

#[test]
fn a_model_failure_or_a_cancel_mid_slide_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let slide = small_slide(dir.path());
    let engine = EngineBuilder::new(repo("models/unet"))
        .batch(Some(2))
        .build()
        .unwrap();
    let cancel = AtomicBool::new(false);
    let out = dir.path().join("failed");
    let control = RunControl::new(&cancel).fail_after_tiles(6);
    let e = engine
        .segment(&slide, &out, &request(), &control)
        .unwrap_err();
    assert!(matches!(e, EngineError::Injected { after: 6 }), "{e}");
    assert_eq!(names(&out), Vec::<String>::new());

    let out = dir.path().join("cancelled");
    let progress = |p: wsiseg_engine::Progress| {
        if p.tiles_done >= 4 {
            cancel.store(true, Ordering::Relaxed);
        }
    };
    let control = RunControl::new(&cancel).on_progress(&progress);
    let e = engine
        .segment(&slide, &out, &request(), &control)
        .unwrap_err();
    assert!(matches!(e, EngineError::Cancelled), "{e}");
    assert_eq!(names(&out), Vec::<String>::new());
}

#[test]
fn the_example_segments_the_default_slide() {
    example::main().unwrap();
    let out = std::env::temp_dir().join("wsiseg-example");
    for f in [
        "default.mask.png",
        "default.mask.tiff",
        "default.report.json",
        "default.run.json",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
}
