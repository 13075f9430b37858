//! `--decode`: where the stored JPEG tiles of a slide are decoded. On a GPU
//! server, nvJPEG decodes them and the tiles are cut on the device
//! (tests/cuda.rs checks that there). Here, without one, the device path
//! runs with the host's JPEG decoder standing in for nvJPEG
//! (`WSISEG_TEST_HOST_DECODE`): every other part of it — readers handing on
//! compressed tiles, each distinct stored tile decoded once per batch, the
//! tiles cut from them (halo, slide edges), Aperio's RGB-component tiles,
//! corrupt tiles — is checked against the CPU path, byte for byte.

mod common;

use std::path::Path;

use common::{error_lines, files_in, json, run, stderr, synth, threshold_model, unet};

/// The CPU path, then the device path with the host decoder, on `slide`
/// with `extra`; both outputs' folders (`cpu`, `dev`).
fn both(d: &Path, slide: &Path, model: &Path, extra: &[&str]) {
    for (out, decode) in [("cpu", "cpu"), ("dev", "gpu")] {
        let mut args = vec![
            "segment",
            slide.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--out",
            out,
            "--device",
            "cpu",
            "--decode",
            decode,
            "--formats",
            "png,tiff,report",
            "--probabilities",
        ];
        args.extend_from_slice(extra);
        let o = common::command(d)
            .args(&args)
            .env(wsiseg_engine::TEST_HOST_DECODE, "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "--decode {decode}: {}", stderr(&o));
    }
}

/// The same bytes in every output of both runs but the report; the two
/// reports.
fn same_outputs(d: &Path, stem: &str) -> (serde_json::Value, serde_json::Value) {
    for suffix in ["mask.png", "mask.tiff", "prob.tiff"] {
        let f = format!("{stem}.{suffix}");
        let (a, b) = (
            std::fs::read(d.join("cpu").join(&f)).unwrap(),
            std::fs::read(d.join("dev").join(&f)).unwrap(),
        );
        assert!(a == b, "{f} differs between the CPU and the device path");
    }
    (
        json(&d.join(format!("cpu/{stem}.report.json"))),
        json(&d.join(format!("dev/{stem}.report.json"))),
    )
}

/// Level 0 of an 8192² synthetic SVS (256-px JPEG tiles), 512-px tiles with
/// a 64-px overlap: every working tile is cut from 9 stored tiles, those at
/// the slide's edges reach outside it. The threshold model labels each
/// pixel by its own green byte, so a pixel cut from the wrong place shows.
#[test]
fn the_device_path_cuts_the_cpu_paths_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "921", "8192x8192");
    both(
        d,
        &slide,
        &threshold_model(),
        &["--level", "0", "--tile", "512", "--batch", "6"],
    );
    let (cpu, dev) = same_outputs(d, "synth-921");
    assert_eq!(cpu["working_level"]["decoded_by"], "cpu");
    assert_eq!(cpu["working_level"]["tiles_decoded_on_device"], 0);
    assert_eq!(dev["working_level"]["decoded_by"], "gpu: host");
    assert_eq!(dev["parameters"]["decode"], "gpu");
    assert_eq!(dev["working_level"]["device_decode_fallbacks"], 0);
    let run = dev["tiles"]["run"].as_u64().unwrap();
    let decoded = dev["working_level"]["tiles_decoded_on_device"]
        .as_u64()
        .unwrap();
    assert!(run > 100, "{run} tiles run");
    // Each distinct stored tile once per batch: a 512-px tile at a 448-px
    // stride is cut from 4 to 9 stored tiles of 256 px (7.6 on average);
    // neighbours in a batch share some.
    assert!(
        decoded < 7 * run && decoded > 4 * run,
        "{decoded} stored tiles decoded for {run} tiles"
    );
    assert_eq!(cpu["tiles"], dev["tiles"]);
}

/// The shipped UNet at its 1 µm/px (level 1 of a 0.25 µm/px slide, read as
/// stored), its probability map and GeoJSON too.
#[test]
fn the_device_path_gives_the_shipped_models_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "922", "6000x5000");
    both(d, &slide, &unet(), &[]);
    let (cpu, dev) = same_outputs(d, "synth-922");
    assert_eq!(dev["working_level"]["decoded_by"], "gpu: host");
    assert_eq!(cpu["working_level"]["source_level"], 1);
    assert_eq!(cpu["areas"], dev["areas"]);
}

/// A resampled working level (`--mpp` between levels) is not cut from
/// stored tiles: the device path leaves it to the CPU and the report says why.
#[test]
fn a_resampled_level_is_decoded_on_the_cpu_and_the_report_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "923", "4096x4096");
    both(d, &slide, &threshold_model(), &["--mpp", "0.6"]);
    let (_, dev) = same_outputs(d, "synth-923");
    let by = dev["working_level"]["decoded_by"].as_str().unwrap();
    assert!(
        by.starts_with("cpu (level 0 is not read") && by.contains("resampled"),
        "{by}"
    );
    assert_eq!(dev["working_level"]["tiles_decoded_on_device"], 0);
}

/// default.svs, a real Aperio scan: its JPEG tiles hold R, G, B components
/// (photometric RGB, not subsampled), which nvJPEG decodes as planes — the
/// device path takes them and gives the CPU path's bytes.
#[test]
fn aperio_rgb_component_tiles_take_the_device_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let aperio = common::repo("tests/data/default.svs");
    both(d, &aperio, &threshold_model(), &["--level", "0"]);
    let (_, dev) = same_outputs(d, "default");
    assert_eq!(dev["working_level"]["decoded_by"], "gpu: host");
    assert!(
        dev["working_level"]["tiles_decoded_on_device"]
            .as_u64()
            .unwrap()
            > 100
    );
}

/// A corrupt stored tile on the device path: the same one error line as
/// on the CPU path (the host's strict decoder names it) and no file; with
/// `--bad-tiles background` the same masks and the same listed tile. One
/// tile is zeroed (no JPEG at all), one cut short (its end overwritten).
#[test]
fn a_corrupt_tile_on_the_device_path_is_the_cpu_paths_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "924", "8192x8192");
    let mut bytes = std::fs::read(&slide).unwrap();
    let zeroed = common::tile_bytes(&slide, 0, 32 * 16 + 16);
    bytes[zeroed].fill(0);
    let cut = common::tile_bytes(&slide, 0, 32 * 12 + 10);
    let half = (cut.start + cut.end) / 2;
    bytes[half..cut.end].fill(0);
    std::fs::write(&slide, bytes).unwrap();
    let model = threshold_model();
    let segment = |out: &str, decode: &str, extra: &[&str]| {
        let mut args = vec![
            "segment",
            slide.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--out",
            out,
            "--level",
            "0",
            "--tile",
            "512",
            "--device",
            "cpu",
            "--decode",
            decode,
            "--formats",
            "png,tiff,report",
            "--probabilities",
        ];
        args.extend_from_slice(extra);
        common::command(d)
            .args(&args)
            .env(wsiseg_engine::TEST_HOST_DECODE, "1")
            .output()
            .unwrap()
    };
    let (a, b) = (segment("fa", "cpu", &[]), segment("fb", "gpu", &[]));
    assert!(!a.status.success() && !b.status.success());
    let (ea, eb) = (error_lines(&a), error_lines(&b));
    assert_eq!(eb.len(), 1, "{}", stderr(&b));
    assert!(
        eb[0].contains("synth-924.svs: corrupt or unreadable slide (level 0, JPEG tile"),
        "{}",
        eb[0]
    );
    // Which of the two bad tiles a run meets first depends on its threads.
    let tile_of = |e: &str| {
        e.split("JPEG tile ").nth(1).map(|t| {
            t.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .to_string()
        })
    };
    assert!(tile_of(&ea[0]).is_some() && tile_of(&eb[0]).is_some());
    assert_eq!(files_in(&d.join("fb")), Vec::<String>::new());

    let bg = ["--bad-tiles", "background"];
    for (out, decode) in [("cpu", "cpu"), ("dev", "gpu")] {
        let o = segment(out, decode, &bg);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("2 corrupt tile(s) made background"),
            "{}",
            stderr(&o)
        );
    }
    let (cpu, dev) = same_outputs(d, "synth-924");
    assert_eq!(cpu["bad_tiles"], dev["bad_tiles"]);
    let listed: Vec<u64> = dev["bad_tiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tile"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, [32 * 12 + 10, 32 * 16 + 16]);
}

/// Without a GPU: `--decode gpu` is one error line naming the option and
/// why (the model runs on the CPU), with no file; `auto` decodes on the CPU
/// and says "cpu"; a word that is not a choice lists the choices.
#[test]
fn decode_gpu_without_a_gpu_is_one_error_and_auto_is_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "925", "2048x2048");
    let model = threshold_model();
    let o = common::segment(
        d,
        &slide,
        &model,
        "g",
        &["--device", "cpu", "--decode", "gpu"],
    );
    assert!(!o.status.success());
    let e = error_lines(&o);
    assert_eq!(e.len(), 1, "{}", stderr(&o));
    assert!(
        e[0].contains("--decode gpu") && e[0].contains("not on a CUDA GPU"),
        "{}",
        e[0]
    );
    assert!(!d.join("g").exists() || files_in(&d.join("g")).is_empty());

    let o = common::segment(d, &slide, &model, "a", &["--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&d.join("a/synth-925.report.json"));
    assert_eq!(r["parameters"]["decode"], "auto");
    assert_eq!(r["working_level"]["decoded_by"], "cpu");

    let o = run(
        d,
        &[
            "segment",
            slide.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--decode",
            "sideways",
        ],
    );
    assert!(!o.status.success());
    let text = stderr(&o);
    assert!(
        text.contains("sideways") && text.contains("cpu") && text.contains("gpu"),
        "{text}"
    );
}
