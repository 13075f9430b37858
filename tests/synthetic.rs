//! Synthetic slides end to end: `wsiseg synth` → `segment` with the shipped
//! (trained) model → `eval`; and tiled inference against one whole-image pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wsiseg_infer::{Device, Precision, Segmenter};
use wsiseg_slide::{open, Rect, Resolution, TilePlan, WorkingLevel};
use wsiseg_stitch::Stitcher;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn wsiseg(args: &[&str], dir: &Path) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_wsiseg"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run wsiseg");
    assert!(
        o.status.success(),
        "wsiseg {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `wsiseg synth` of one slide into `dir/slides` (truth in `dir/slides/truth`).
fn synth(dir: &Path, seed: &str, size: &str) {
    wsiseg(
        &["synth", "--out", "slides", "--seed", seed, "--size", size],
        dir,
    );
}

fn model() -> String {
    repo("models/unet").display().to_string()
}

/// Seed 101 is not among the model's training seeds (models/unet/manifest.json).
#[test]
fn shipped_model_finds_the_tumor_of_a_held_out_synthetic_slide() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("models/unet/manifest.json")).unwrap())
            .unwrap();
    let seeds = manifest["extra"]["training_seeds"]
        .as_array()
        .expect("trained model records its seeds");
    assert!(
        !seeds.iter().any(|s| s == 101),
        "seed 101 was used for training"
    );

    synth(d, "101", "8192x8192");
    wsiseg(
        &["segment", "slides", "--model", &model(), "--out", "masks"],
        d,
    );
    let mask = image::open(d.join("masks/synth-101.mask.png")).unwrap();
    assert_eq!(
        (mask.width(), mask.height()),
        (2048, 2048),
        "1.0 µm/px is level 1"
    );
    wsiseg(&["eval", "--pred", "masks", "--truth", "slides/truth"], d);
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("masks/eval.json")).unwrap()).unwrap();
    let dice = scores["slides"][0]["classes"]["tumor"]["dice"]
        .as_f64()
        .unwrap();
    assert!(dice >= 0.90, "tumor Dice {dice} on held-out seed 101");
}

#[test]
fn tiled_inference_matches_one_whole_image_pass() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    synth(d, "202", "8192x8192");
    // 2048 px with a stride of 200 − 52 = 148: tiles do not divide the level.
    wsiseg(
        &[
            "segment",
            "slides/synth-202.svs",
            "--model",
            &model(),
            "--out",
            "tiled",
            "--tile",
            "200",
            "--overlap",
            "52",
        ],
        d,
    );
    let tiled = image::open(d.join("tiled/synth-202.mask.png"))
        .unwrap()
        .into_luma8();

    let slide = open(&d.join("slides/synth-202.svs")).unwrap();
    let working = WorkingLevel::choose(slide.as_ref(), Resolution::Mpp(1.0)).unwrap();
    let (w, h) = (working.size.w, working.size.h);
    assert_eq!((w, h), (2048, 2048));
    let whole = working.read(slide.as_ref(), Rect::new(0, 0, w, h)).unwrap();
    let model = Segmenter::load(&repo("models/unet"), Device::Cpu, Precision::F32).unwrap();
    let mut labels = vec![0u8; (w * h) as usize];
    model
        .segment(whole.as_raw(), 1, w, &mut labels, None)
        .unwrap();

    assert_eq!(tiled.dimensions(), (w, h));
    let same = tiled
        .as_raw()
        .iter()
        .zip(&labels)
        .filter(|(a, b)| a == b)
        .count();
    let agreement = same as f64 / labels.len() as f64;
    let tumor = labels.iter().filter(|&&l| l == 1).count();
    eprintln!(
        "tiled (200 px, overlap 52) vs whole-image pass: {:.4}% of {} px agree",
        100.0 * agreement,
        labels.len()
    );
    assert!(
        tumor > 10_000,
        "the slide should contain tumor ({tumor} px)"
    );
    assert!(
        agreement >= 0.995,
        "tiled vs whole-image pass agree on {:.4}%",
        100.0 * agreement
    );
}

#[test]
fn synth_is_deterministic_and_opens_in_openslide() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for out in ["a", "b"] {
        wsiseg(
            &["synth", "--out", out, "--seed", "5", "--size", "1500x1100"],
            d,
        );
    }
    for f in ["synth-5.svs", "truth/synth-5.tiff"] {
        let a = std::fs::read(d.join("a").join(f)).unwrap();
        let b = std::fs::read(d.join("b").join(f)).unwrap();
        assert!(a == b, "{f} differs between two runs with the same seed");
    }
    let s = open(&d.join("a/synth-5.svs")).unwrap();
    assert_eq!(s.format(), "aperio");
    assert_eq!(s.levels().len(), 2);
    assert_eq!(s.levels()[1].size, wsiseg_slide::Size::new(375, 275));
    assert!((s.mpp().unwrap().x - 0.25).abs() < 1e-9);
    let t = open(&d.join("a/truth/synth-5.tiff")).unwrap();
    assert_eq!(t.levels()[0].size, s.levels()[0].size);
    let labels = t.read_inside(0, Rect::new(0, 0, 1500, 1100)).unwrap();
    assert!(labels.pixels().all(|p| p.0[0] <= 1), "truth labels are 0/1");

    // Another seed, another slide; an existing file is not overwritten.
    let o = Command::new(env!("CARGO_BIN_EXE_wsiseg"))
        .args(["synth", "--out", "a", "--seed", "5", "--size", "1500x1100"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("synth-5.svs: already exists"));
}

#[test]
fn tissue_detection_keeps_every_tumor_pixel_inside_the_tiles_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    synth(d, "404", "8192x8192");
    let slide = open(&d.join("slides/synth-404.svs")).unwrap();
    let working = WorkingLevel::choose(slide.as_ref(), Resolution::Mpp(1.0)).unwrap();
    let plan = wsiseg_slide::TilePlan::new(working.size, 256, 32).unwrap();
    let thumb = wsiseg_slide::thumbnail(slide.as_ref(), 2048).unwrap();
    let mask = wsiseg_slide::tissue_mask(&thumb);
    let thumb_size = wsiseg_slide::Size::new(thumb.width(), thumb.height());
    let run = wsiseg_slide::tissue_tiles(
        &plan,
        working.downsample,
        slide.levels()[0].size,
        &mask,
        thumb_size,
    );
    let ran = run.iter().filter(|&&r| r).count();
    assert!(
        ran < plan.len(),
        "glass tiles are skipped ({ran} of {})",
        plan.len()
    );

    let truth = open(&d.join("slides/truth/synth-404.tiff")).unwrap();
    assert_eq!(truth.levels()[1].size, working.size);
    let (w, h) = (working.size.w, working.size.h);
    let labels = truth.read_inside(1, Rect::new(0, 0, w, h)).unwrap();
    let stride = plan.stride();
    let mut tumor = 0;
    for (x, y, p) in labels.enumerate_pixels() {
        if p.0[0] == 1 {
            tumor += 1;
            let n = (y / stride * plan.cols() + x / stride) as usize;
            assert!(
                run[n],
                "tumor pixel ({x}, {y}) lies in a tile that is not run"
            );
        }
    }
    assert!(tumor > 10_000, "the slide should contain tumor");
    eprintln!(
        "{ran} of {} tiles have tissue; all {tumor} tumor pixels are inside them",
        plan.len()
    );
}

/// The engine (4 reader threads sharing the direct JPEG reader and its tile
/// cache, batches of 4 with two in flight, a separate stitcher thread) writes
/// exactly the mask bytes of the simplest sequential loop: each planned tile
/// read on its own, segmented alone, stitched in raster order.
#[test]
fn pipelined_engine_writes_the_same_mask_bytes_as_a_sequential_loop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    synth(d, "505", "6144x4096");
    let slide_path = d.join("slides/synth-505.svs");
    wsiseg(
        &[
            "segment",
            slide_path.to_str().unwrap(),
            "--model",
            &model(),
            "--out",
            "engine",
            "--formats",
            "png",
            "--no-tissue-mask",
            "--readers",
            "4",
            "--batch",
            "4",
        ],
        d,
    );
    let engine = image::open(d.join("engine/synth-505.mask.png"))
        .unwrap()
        .into_luma8();

    let slide = open(&slide_path).unwrap();
    let model = Segmenter::load(&repo("models/unet"), Device::Cpu, Precision::F32).unwrap();
    let t = model.manifest().tile;
    let working = WorkingLevel::choose(slide.as_ref(), Resolution::Mpp(1.0)).unwrap();
    let plan = TilePlan::new(working.size, t, t / 8).unwrap();
    assert!(plan.len() >= 30, "several batches: {} tiles", plan.len());
    let mut stitcher = Stitcher::new(plan, Vec::new());
    let mut labels = vec![0u8; (t * t) as usize];
    for tile in plan.tiles() {
        let rgb = working.read(slide.as_ref(), tile.rect).unwrap();
        model
            .segment(rgb.as_raw(), 1, t, &mut labels, None)
            .unwrap();
        stitcher.add(tile.index, &labels).unwrap();
    }
    let sequential = stitcher.finish().unwrap();
    assert_eq!(engine.dimensions(), (working.size.w, working.size.h));
    assert!(sequential.contains(&1), "the slide has tumor");
    let differing = engine
        .as_raw()
        .iter()
        .zip(&sequential)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 0, "pixels differing from the sequential run");
}

/// Memory does not grow with the slide: a synthetic slide with 16× the
/// pixels (4× the width) of another, segmented at level 0 with the same
/// settings, peaks at most 1.25× the resident memory (the report's VmHWM).
#[test]
fn peak_memory_stays_flat_as_the_slide_grows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut peaks = Vec::new();
    for (seed, size) in [("606", "4096x4096"), ("607", "16384x16384")] {
        synth(d, seed, size);
        let slide = format!("slides/synth-{seed}.svs");
        wsiseg(
            &[
                "segment",
                &slide,
                "--model",
                repo("tests/data/models/green-threshold").to_str().unwrap(),
                "--out",
                "out",
                "--level",
                "0",
                "--tile",
                "512",
                "--formats",
                "png,tiff,report",
            ],
            d,
        );
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.join(format!("out/synth-{seed}.report.json"))).unwrap(),
        )
        .unwrap();
        assert!(report["tiles"]["run"].as_u64().unwrap() > 0);
        peaks.push(report["peak_rss_mib"].as_f64().expect("peak RSS reported"));
    }
    eprintln!(
        "peak RSS: {:.0} MiB (4096²), {:.0} MiB (16384²), ratio {:.3}",
        peaks[0],
        peaks[1],
        peaks[1] / peaks[0]
    );
    assert!(
        peaks[1] <= 1.25 * peaks[0],
        "peak RSS {:.0} MiB for 16× the pixels vs {:.0} MiB",
        peaks[1],
        peaks[0]
    );
}
