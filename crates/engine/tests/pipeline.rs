//! The pipeline and resume through the library alone, with the plain-Rust
//! per-pixel runtime (`model.linear`): its answer is known at every pixel,
//! so the stitched mask must equal the rule applied to the slide's pixels
//! whatever the batch, the readers and the order tiles arrive in.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use wsiseg_engine::{
    EngineBuilder, Format, MaskSize, Request, RunControl, SlideOutcome, TissuePolicy,
};
use wsiseg_slide::{Rect, Resolution, WorkingLevel};

/// Tumor where the green byte is below 128 (logits 0 and 5 − 10·g; g in
/// [0, 1]), at 1 µm/px with 64-px tiles.
fn green_rule(dir: &Path) -> PathBuf {
    let folder = dir.join("green");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("model.linear"),
        r#"{"weights": [[0, 0, 0], [0, -10, 0]], "bias": [0, 5]}"#,
    )
    .unwrap();
    std::fs::write(
        folder.join("manifest.json"),
        r#"{"name": "green", "tile": 64, "mpp": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1], "classes": ["background", "tumor"], "output": "logits"}"#,
    )
    .unwrap();
    folder
}

/// A 1000×700 synthetic slide at 1 µm/px: the working level is level 0.
fn slide(dir: &Path) -> PathBuf {
    let spec = wsiseg_synth::SynthSpec {
        seed: 5,
        width: 1000,
        height: 700,
        mpp: 1.0,
        ..Default::default()
    };
    let slide = dir.join("s.svs");
    wsiseg_synth::generate(&spec, &slide, &dir.join("s.truth.tiff"), &mut |_| {}).unwrap();
    slide
}

fn request() -> Request {
    Request {
        formats: vec![Format::PNG],
        tissue: TissuePolicy::All,
        mask_size: MaskSize::Working,
        ..Request::default()
    }
}

fn mask(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().into_luma8().into_raw()
}

#[test]
fn the_stitched_mask_is_the_rule_at_every_pixel_for_any_batch_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let (model, slide) = (green_rule(dir.path()), slide(dir.path()));
    let opened = wsiseg_slide::open(&slide).unwrap();
    let working = WorkingLevel::choose(opened.as_ref(), Resolution::Mpp(1.0)).unwrap();
    assert_eq!((working.size.w, working.size.h), (1000, 700));
    let rgb = working
        .read(opened.as_ref(), Rect::new(0, 0, 1000, 700))
        .unwrap();
    let expected: Vec<u8> = rgb.pixels().map(|p| u8::from(p[1] < 128)).collect();
    assert!(expected.contains(&0) && expected.contains(&1));
    let cancel = AtomicBool::new(false);
    for (batch, readers) in [(1, 1), (3, 2), (16, 1)] {
        let engine = EngineBuilder::new(&model)
            .batch(Some(batch))
            .readers(Some(readers))
            .build()
            .unwrap();
        let out = dir.path().join(format!("b{batch}r{readers}"));
        let outcome = engine
            .segment(&slide, &out, &request(), &RunControl::new(&cancel))
            .unwrap();
        let SlideOutcome::Segmented { figures, .. } = outcome else {
            panic!("segmented")
        };
        let got = mask(&out.join("s.mask.png"));
        let differ = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "batch {batch}, readers {readers}");
        let tumor = expected.iter().filter(|&&l| l == 1).count() as f64 / expected.len() as f64;
        assert!(
            (figures.tumor_fraction - tumor).abs() < 1e-9,
            "{} vs {tumor}",
            figures.tumor_fraction
        );
    }
}

#[test]
fn resume_skips_the_same_fingerprint_and_refuses_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (model, slide) = (green_rule(dir.path()), slide(dir.path()));
    let engine = EngineBuilder::new(&model).build().unwrap();
    let cancel = AtomicBool::new(false);
    let out = dir.path().join("out");
    let control = RunControl::new(&cancel);
    let first = engine.segment(&slide, &out, &request(), &control).unwrap();
    assert!(matches!(first, SlideOutcome::Segmented { .. }));
    let before = std::fs::read(out.join("s.mask.png")).unwrap();
    let again = engine.segment(&slide, &out, &request(), &control).unwrap();
    assert!(
        matches!(again, SlideOutcome::Skipped(_)),
        "same fingerprint: skipped"
    );
    // Other settings over existing outputs: refused, the outputs kept.
    let other = Request {
        tile: Some(32),
        ..request()
    };
    let e = engine.segment(&slide, &out, &other, &control).unwrap_err();
    assert!(
        matches!(e, wsiseg_engine::EngineError::Changed { .. }),
        "{e}"
    );
    assert_eq!(std::fs::read(out.join("s.mask.png")).unwrap(), before);
    // Asked to overwrite, it runs again (a per-pixel rule: the same mask).
    let redo = Request {
        overwrite: true,
        ..other
    };
    let third = engine.segment(&slide, &out, &redo, &control).unwrap();
    assert!(matches!(third, SlideOutcome::Segmented { .. }));
    assert_eq!(std::fs::read(out.join("s.mask.png")).unwrap(), before);
    // A damaged output is not skipped over.
    std::fs::write(out.join("s.mask.png"), b"damaged").unwrap();
    let e = engine.segment(&slide, &out, &redo_not(&redo), &control);
    assert!(
        !matches!(e, Ok(SlideOutcome::Skipped(_))),
        "a damaged mask is never taken as done"
    );
}

/// The same request without overwrite.
fn redo_not(r: &Request) -> Request {
    Request {
        overwrite: false,
        ..r.clone()
    }
}

/// A caller's own output: counts tumor pixels, writes the count.
struct TumorCount {
    pixels: u64,
    fail: bool,
}

impl wsiseg_engine::MaskOutput for TumorCount {
    fn name(&self) -> &'static str {
        "count"
    }

    fn label_rows(&mut self, rows: &[u8]) -> Result<(), wsiseg_engine::EngineError> {
        if self.fail {
            let e = std::io::Error::other("the caller's sink failed");
            return Err(wsiseg_engine::EngineError::io("sink", "cannot write", e));
        }
        self.pixels += rows.iter().filter(|&&l| l == 1).count() as u64;
        Ok(())
    }

    fn finish(
        self: Box<Self>,
        result: &wsiseg_engine::SlideResult,
    ) -> Result<wsiseg_engine::Finished, wsiseg_engine::EngineError> {
        let path = result.context.paths.file("count.txt");
        let staged = wsiseg_engine::PartialFile::write_staged(
            &path,
            self.pixels.to_string().as_bytes(),
            result.context.limit,
        )
        .map_err(|e| wsiseg_engine::EngineError::io(&path, "cannot write", e))?;
        Ok(vec![staged].into())
    }
}

#[test]
fn a_callers_output_is_fed_and_committed_with_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (model, slide) = (green_rule(dir.path()), slide(dir.path()));
    let engine = EngineBuilder::new(&model).build().unwrap();
    let cancel = AtomicBool::new(false);
    let control = RunControl::new(&cancel);
    let out = dir.path().join("out");
    let with_report = Request {
        formats: vec![Format::PNG, Format::REPORT],
        ..request()
    };
    let count = Box::new(TumorCount {
        pixels: 0,
        fail: false,
    });
    let outcome = engine
        .segment_with(&slide, &out, &with_report, &control, vec![count])
        .unwrap();
    let SlideOutcome::Segmented { files, .. } = outcome else {
        panic!("segmented")
    };
    let tumor = mask(&out.join("s.mask.png"))
        .iter()
        .filter(|&&l| l == 1)
        .count();
    let written = std::fs::read_to_string(out.join("s.count.txt")).unwrap();
    assert_eq!(written, tumor.to_string());
    assert!(
        files.iter().any(|f| f.ends_with("s.count.txt")),
        "{files:?}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("s.report.json")).unwrap()).unwrap();
    let listed = report["outputs"].as_array().unwrap();
    assert!(listed
        .iter()
        .any(|f| f.as_str().unwrap().ends_with("s.count.txt")));
    assert!(
        report["timings_s"]["write"]["count"].is_number(),
        "{}",
        report["timings_s"]
    );

    // A caller's output that fails stops the slide: nothing under a final name.
    let failed = dir.path().join("failed");
    let bad = Box::new(TumorCount {
        pixels: 0,
        fail: true,
    });
    let e = engine
        .segment_with(&slide, &failed, &with_report, &control, vec![bad])
        .unwrap_err();
    assert!(e.to_string().contains("the caller's sink failed"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&failed).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_merged_summary_keeps_every_record_and_the_newest_of_each_name() {
    use wsiseg_engine::{merge_summary, run_rows, write_summary, Standing, Status, SummaryEntry};
    let dir = tempfile::tempdir().unwrap();
    let model = green_rule(dir.path());
    let first = slide(dir.path());
    let second = dir.path().join("t.svs");
    std::fs::copy(&first, &second).unwrap();
    let engine = EngineBuilder::new(&model).build().unwrap();
    let cancel = AtomicBool::new(false);
    let control = RunControl::new(&cancel);
    let out = dir.path().join("out");
    let entry = |slide: &Path, status: Status, error: Option<String>| SummaryEntry {
        slide: slide.to_path_buf(),
        name: PathBuf::from(slide.file_stem().unwrap()),
        status,
        error,
        figures: None,
        report: None,
    };
    // Run 1: s is segmented; t fails (its file is not there yet).
    let missing = dir.path().join("gone/t.svs");
    engine.segment(&first, &out, &request(), &control).unwrap();
    let failed = engine
        .segment(&missing, &out, &request(), &control)
        .unwrap_err();
    let rows = run_rows(
        &out,
        &[
            entry(&first, Status::Segmented, None),
            entry(&missing, Status::Failed, Some(failed.to_string())),
        ],
    );
    write_summary(&out, &merge_summary(&out, rows)).unwrap();
    // Run 2 segments only t: the merge keeps s from its record, and t's
    // success replaces its earlier failure.
    std::thread::sleep(std::time::Duration::from_millis(20));
    engine.segment(&second, &out, &request(), &control).unwrap();
    let merged = merge_summary(
        &out,
        run_rows(&out, &[entry(&second, Status::Segmented, None)]),
    );
    let standing: Vec<(String, Standing)> =
        merged.iter().map(|r| (r.name.clone(), r.status)).collect();
    assert_eq!(
        standing,
        [
            ("s".to_string(), Standing::Done),
            ("t".to_string(), Standing::Done)
        ]
    );
    assert!(
        merged.iter().all(|r| r.figures.is_some()),
        "figures from the records"
    );
    write_summary(&out, &merged).unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(doc["counts"]["done"], 2);
    assert_eq!(doc["counts"]["failed"], 0);
}

/// Two copies of the test slide as `in/a/x.svs` and `in/x.svs`, and a
/// third name that does not exist; the green rule's engine.
struct Folder {
    dir: tempfile::TempDir,
    engine: wsiseg_engine::Engine,
}

impl Folder {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = green_rule(dir.path());
        let first = slide(dir.path());
        std::fs::create_dir_all(dir.path().join("in/a")).unwrap();
        std::fs::copy(&first, dir.path().join("in/a/x.svs")).unwrap();
        std::fs::copy(&first, dir.path().join("in/x.svs")).unwrap();
        let engine = EngineBuilder::new(&model).build().unwrap();
        Self { dir, engine }
    }

    fn batch(&self, out: &str, one_at_a_time: bool) -> wsiseg_engine::Batch {
        let input = |name: &str| {
            wsiseg_engine::SlideInput::new(self.dir.path().join("in").join(name), name)
        };
        wsiseg_engine::Batch {
            slides: vec![input("a/x.svs"), input("x.svs"), input("gone.svs")],
            out: self.dir.path().join(out),
            request: Request {
                formats: vec![Format::PNG, Format::REPORT],
                ..request()
            },
            one_at_a_time,
            summary: wsiseg_engine::SummaryKind::Merged,
            many: true,
        }
    }
}

#[test]
fn a_folder_run_segments_each_slide_once_and_writes_its_summary_and_page() {
    use wsiseg_engine::{Standing, Status, Unobserved};
    let f = Folder::new();
    let cancel = AtomicBool::new(false);
    let overlapped = f
        .engine
        .segment_many(&f.batch("out", false), &cancel, &Unobserved)
        .unwrap();
    let statuses: Vec<Status> = overlapped
        .entries
        .iter()
        .flatten()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        statuses,
        [Status::Segmented, Status::Segmented, Status::Failed]
    );
    let failure = overlapped.entries[2]
        .as_ref()
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(failure.contains("gone.svs"), "{failure}");
    // Same names in two folders never collide: a/x and x.
    let out = f.dir.path().join("out");
    assert!(out.join("a/x.mask.png").is_file() && out.join("x.mask.png").is_file());
    let rows = overlapped.summary.as_ref().unwrap();
    let standing: Vec<(&str, Standing)> =
        rows.iter().map(|r| (r.name.as_str(), r.status)).collect();
    assert_eq!(
        standing,
        [
            ("a/x", Standing::Done),
            ("gone", Standing::Failed),
            ("x", Standing::Done)
        ]
    );
    assert_eq!(
        overlapped.page.as_deref(),
        Some(out.join("index.html").as_path())
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        (
            doc["counts"]["done"].as_u64(),
            doc["counts"]["failed"].as_u64()
        ),
        (Some(2), Some(1))
    );
}

#[test]
fn a_folder_run_one_at_a_time_makes_the_same_masks_resumes_and_stops() {
    use wsiseg_engine::{Status, Unobserved};
    let f = Folder::new();
    let cancel = AtomicBool::new(false);
    f.engine
        .segment_many(&f.batch("out", false), &cancel, &Unobserved)
        .unwrap();
    let single = f
        .engine
        .segment_many(&f.batch("one", true), &cancel, &Unobserved)
        .unwrap();
    assert_eq!(single.count(Status::Segmented), 2);
    for name in ["a/x.mask.png", "x.mask.png"] {
        let one = std::fs::read(f.dir.path().join("one").join(name)).unwrap();
        let two = std::fs::read(f.dir.path().join("out").join(name)).unwrap();
        assert_eq!(one, two, "{name}");
    }
    // Again over the same folder: done slides are skipped, the missing one fails again.
    let again = f
        .engine
        .segment_many(&f.batch("out", false), &cancel, &Unobserved)
        .unwrap();
    assert_eq!(
        (again.count(Status::Skipped), again.count(Status::Failed)),
        (2, 1)
    );
    // Cancelled before it starts: nothing runs, every slide is left to a re-run.
    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    let stopped = f
        .engine
        .segment_many(&f.batch("stopped", false), &cancel, &Unobserved)
        .unwrap();
    assert!(stopped.cancelled() && stopped.entries.iter().all(Option::is_none));
    assert!(!f.dir.path().join("stopped/x.mask.png").exists());
    // The folder's summary says so: nothing done, nothing failed.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.dir.path().join("stopped/summary.json")).unwrap())
            .unwrap();
    assert_eq!(doc["counts"]["slides"], 0);
}

#[test]
fn the_report_on_disk_is_the_typed_report_and_its_figures_are_the_masks() {
    let dir = tempfile::tempdir().unwrap();
    let (model, slide) = (green_rule(dir.path()), slide(dir.path()));
    let engine = EngineBuilder::new(&model).build().unwrap();
    let cancel = AtomicBool::new(false);
    let out = dir.path().join("out");
    let request = Request {
        formats: vec![Format::PNG, Format::GEOJSON, Format::PROB, Format::REPORT],
        ..request()
    };
    engine
        .segment(&slide, &out, &request, &RunControl::new(&cancel))
        .unwrap();
    let path = out.join("s.report.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let report: wsiseg_engine::SlideReport = wsiseg_engine::files::read(&path).unwrap();
    // Every key on disk is a field of the type and back (serde_json reads
    // a float to within an ulp, both sides the same way).
    let on_disk: serde_json::Value = serde_json::from_str(&text).unwrap();
    let written = wsiseg_engine::files::to_text(&report).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&written).unwrap(),
        on_disk
    );
    // In the order it writes: alphabetical.
    let keys: Vec<&String> = on_disk.as_object().unwrap().keys().collect();
    assert!(text.find("\"areas\"") < text.find("\"wsiseg_version\"") && keys.len() == 16);
    let labels = mask(&out.join("s.mask.png"));
    let tumor = labels.iter().filter(|&&l| l == 1).count() as u64;
    assert_eq!(report.areas.classes["tumor"].pixels, tumor);
    assert_eq!(
        report.areas.tumor_fraction,
        tumor as f64 / labels.len() as f64
    );
    assert_eq!(report.tiles.run, report.tiles.planned, "every tile ran");
    assert_eq!(report.parameters.formats, ["png", "geojson", "report"]);
    assert!(report.parameters.probabilities);
    // The GeoJSON's own count, as the engine got it from that output.
    let geojson: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("s.geojson")).unwrap()).unwrap();
    let features = geojson["features"].as_array().unwrap().len();
    assert_eq!(report.areas.geojson_regions, Some(features));
    // The P histogram counts every working pixel (the maps were made).
    let histogram = report.statistics.probability.unwrap().histogram_tenths;
    assert_eq!(histogram.iter().sum::<u64>(), labels.len() as u64);
    let listed: Vec<String> = report
        .outputs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        listed,
        ["s.mask.png", "s.prob.tiff", "s.geojson", "s.report.json"]
    );
}
