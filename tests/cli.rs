//! The real `wsiseg` binary, run in temporary folders.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{GrayImage, Rgb, RgbImage};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Command-line arguments from anything path- or string-like.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        Vec::<OsString>::from([$(OsString::from(AsRef::<std::ffi::OsStr>::as_ref(&$a))),*])
    };
}

fn wsiseg(args: &[OsString]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsiseg"))
        .args(args)
        .output()
        .expect("run wsiseg")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn error_lines(o: &Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn threshold_model() -> PathBuf {
    repo("tests/data/models/green-threshold")
}

fn read_mask(path: &Path) -> GrayImage {
    image::open(path).unwrap().into_luma8()
}

/// A noisy RGB image whose green channel crosses 128 everywhere.
fn noisy(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(2246822519)).rotate_left(7);
        Rgb([(v >> 24) as u8, (v >> 8) as u8 ^ (x as u8), (v >> 16) as u8])
    })
}

#[test]
fn segment_default_svs_writes_a_mask_of_the_working_level() {
    let out = tempfile::tempdir().unwrap();
    let o = wsiseg(&args![
        &"segment",
        &repo("tests/data/default.svs"),
        &"--model",
        &repo("models/unet"),
        &"--out",
        &out.path(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        files_in(out.path()),
        [
            "default.geojson",
            "default.heatmap.png",
            "default.mask.png",
            "default.mask.tiff",
            "default.overlay.png",
            "default.report.json"
        ]
    );
    let mask = read_mask(&out.path().join("default.mask.png"));
    // The model works at 1.0 µm/px; the slide is 2220×2967 at 0.499 µm/px.
    assert_eq!(mask.dimensions(), (1108, 1481));
    assert!(
        mask.pixels().all(|p| p.0[0] <= 1),
        "labels are 0 (background) or 1 (tumor)"
    );
    let log = stderr(&o);
    assert!(log.contains("libtorch CUDA support linked"), "{log}");
    assert!(log.contains("running on cpu in f32"), "{log}");

    // --level 0 segments the level as stored.
    let o = wsiseg(&args![
        &"segment",
        &repo("tests/data/default.svs"),
        &"--model",
        &threshold_model(),
        &"--out",
        &out.path().join("l0"),
        &"--level",
        &"0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read_mask(&out.path().join("l0/default.mask.png")).dimensions(),
        (2220, 2967)
    );
}

#[test]
fn threshold_model_through_the_cli_gives_the_independently_computed_mask() {
    let dir = tempfile::tempdir().unwrap();
    // Sizes, tile and overlap chosen so that nothing divides evenly.
    let img = noisy(333, 215);
    let input = dir.path().join("noise.png");
    img.save(&input).unwrap();
    let out = dir.path().join("out");
    let o = wsiseg(&args![
        &"segment",
        &input,
        &"--model",
        &threshold_model(),
        &"--out",
        &out,
        &"--tile",
        &"48",
        &"--overlap",
        &"13",
        &"--batch",
        &"5",
        &"--readers",
        &"3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mask = read_mask(&out.join("noise.mask.png"));
    let want = GrayImage::from_fn(333, 215, |x, y| {
        image::Luma([u8::from(img.get_pixel(x, y).0[1] < 128)])
    });
    assert_eq!(mask.dimensions(), want.dimensions());
    let wrong = mask
        .pixels()
        .zip(want.pixels())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(wrong, 0, "{wrong} pixels differ from green < 128");
}

#[test]
fn info_describes_levels_and_resolution() {
    let o = wsiseg(&args![&"info", &repo("tests/data/boxes.tiff"), &"--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], "generic-tiff");
    assert_eq!(v["levels"].as_array().unwrap().len(), 4);
    assert_eq!(v["levels"][1]["width"], 150);
    assert_eq!(v["levels"][1]["downsample"], 2.0);

    let o = wsiseg(&args![&"info", &repo("tests/data/default.svs")]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("aperio") && text.contains("2220 × 2967") && text.contains("0.4990"),
        "{text}"
    );
}

/// Every bad input: exit status non-zero, exactly one `error:` line that names
/// the culprit, and nothing left in the output folder.
#[test]
fn bad_inputs_fail_with_one_clear_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = d.join("notes.txt");
    std::fs::write(&text, "hello\n").unwrap();
    let broken_model = d.join("broken-model");
    std::fs::create_dir(&broken_model).unwrap();
    std::fs::write(broken_model.join("model.pt"), "not torchscript").unwrap();
    std::fs::copy(
        threshold_model().join("manifest.json"),
        broken_model.join("manifest.json"),
    )
    .unwrap();
    let svs = repo("tests/data/default.svs");
    let good = threshold_model();
    // A BigTIFF slide cut short: its directories (written last) are gone.
    let o = wsiseg(&args![&"synth", &"--out", d, &"--size", &"1024x1024"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = std::fs::read(d.join("synth-1.svs")).unwrap();
    let cut = d.join("cut.svs");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();

    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (
            args![&"segment", &d.join("missing.svs"), &"--model", &good],
            "missing.svs: no such file",
        ),
        (
            args![&"segment", &cut, &"--model", &good],
            "cut.svs: corrupt or unreadable slide (its TIFF structure cannot be read",
        ),
        (
            args![&"segment", &text, &"--model", &good],
            "notes.txt: not a slide or image",
        ),
        (
            args![
                &"segment",
                &repo("tests/data/unopenable.tiff"),
                &"--model",
                &good
            ],
            "unopenable.tiff: corrupt or unreadable slide",
        ),
        (
            args![
                &"segment",
                &repo("tests/data/unreadable.svs"),
                &"--model",
                &good
            ],
            "unreadable.svs: corrupt or unreadable slide",
        ),
        (
            args![&"segment", &svs, &"--model", &d.join("no-model")],
            "no-model: no such model",
        ),
        (
            args![&"segment", &svs, &"--model", &broken_model],
            "broken-model/model.pt: not a TorchScript model",
        ),
        (
            args![
                &"segment",
                &svs,
                &"--model",
                &repo("tests/data/models/wrong-classes")
            ],
            "the model does not fit its manifest",
        ),
        (
            args![
                &"segment",
                &svs,
                &"--model",
                &good,
                &"--tile",
                &"64",
                &"--overlap",
                &"64"
            ],
            "--overlap 64 must be smaller than --tile 64",
        ),
        (
            args![
                &"segment",
                &svs,
                &"--model",
                &repo("models/unet"),
                &"--tile",
                &"100"
            ],
            "--tile 100: model wsiseg-unet-16 needs tiles that are a positive multiple of 8",
        ),
        (
            args![&"segment", &svs, &"--model", &good, &"--level", &"3"],
            "default.svs: level 3 does not exist (the slide has levels 0..=0)",
        ),
        (
            args![&"segment", &svs, &"--model", &good, &"--mpp", &"0.1"],
            "default.svs: --mpp 0.1 is finer than the slide's level 0",
        ),
        (
            args![
                &"segment",
                &repo("tests/data/boxes.tiff"),
                &"--model",
                &good,
                &"--mpp",
                &"1"
            ],
            "boxes.tiff: the slide does not record its resolution",
        ),
        (
            args![&"segment", &svs, &"--model", &good, &"--device", &"cuda:0"],
            "--device cuda:0: CUDA is not available",
        ),
        (
            args![&"info", &repo("tests/data/unopenable.tiff")],
            "unopenable.tiff: corrupt or unreadable slide",
        ),
    ];
    for (i, (args, expected)) in cases.into_iter().enumerate() {
        if expected.contains("CUDA is not available") && wsiseg_has_gpu() {
            continue;
        }
        let out = d.join(format!("out{i}"));
        let mut full = args.clone();
        if args[0] == "segment" {
            full.extend(args!["--out", out]);
        }
        let o = wsiseg(&full);
        assert!(!o.status.success(), "case {i} ({expected}) succeeded");
        let errors = error_lines(&o);
        assert_eq!(errors.len(), 1, "case {i}: {}", stderr(&o));
        assert!(
            errors[0].contains(expected),
            "case {i}: wanted '{expected}' in '{}'",
            errors[0]
        );
        assert!(
            files_in(&out).is_empty(),
            "case {i} left {:?}",
            files_in(&out)
        );
    }
}

fn wsiseg_has_gpu() -> bool {
    Path::new("/dev/nvidia0").exists()
}

#[test]
fn clap_rejects_level_and_mpp_together() {
    let o = wsiseg(&args![
        &"segment",
        &repo("tests/data/default.svs"),
        &"--model",
        &threshold_model(),
        &"--out",
        &"unused",
        &"--level",
        &"0",
        &"--mpp",
        &"1",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    assert!(!Path::new("unused").exists());
}

#[test]
fn a_folder_run_reports_a_bad_slide_and_finishes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("slides");
    std::fs::create_dir(&slides).unwrap();
    for name in ["small.svs", "unreadable.svs", "boxes.tiff"] {
        std::fs::copy(repo("tests/data").join(name), slides.join(name)).unwrap();
    }
    noisy(70, 50).save(slides.join("noise.png")).unwrap();
    std::fs::write(slides.join("notes.txt"), "not a slide").unwrap();
    let out = dir.path().join("out");
    let run = |extra: &[&str]| {
        let mut a = args![
            &"segment",
            &slides,
            &"--model",
            &threshold_model(),
            &"--out",
            &out,
            &"--level",
            &"0",
            &"--formats",
            &"png"
        ];
        a.extend(extra.iter().map(OsString::from));
        wsiseg(&a)
    };
    let o = run(&[]);
    assert!(!o.status.success(), "a failed slide makes the run fail");
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].contains("unreadable.svs: corrupt or unreadable slide"),
        "{}",
        errors[0]
    );
    assert_eq!(
        files_in(&out),
        ["boxes.mask.png", "noise.mask.png", "small.mask.png"]
    );
    assert_eq!(
        read_mask(&out.join("boxes.mask.png")).dimensions(),
        (300, 250)
    );
    assert!(
        stderr(&o).contains("4 slides: 3 segmented, 0 skipped, 1 failed"),
        "{}",
        stderr(&o)
    );

    // A second run keeps finished masks untouched and only retries the failure.
    std::fs::write(out.join("small.mask.png"), "user's file").unwrap();
    let o = run(&[]);
    assert!(
        stderr(&o).contains("4 slides: 0 segmented, 3 skipped, 1 failed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(out.join("small.mask.png")).unwrap(),
        b"user's file"
    );

    // --overwrite redoes them.
    let o = run(&["--overwrite"]);
    assert!(
        stderr(&o).contains("3 segmented, 0 skipped, 1 failed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        read_mask(&out.join("small.mask.png")).dimensions(),
        (16, 16)
    );
}

#[test]
fn bench_prints_every_stage_figure() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_wsiseg"))
        .args([
            "bench",
            "--size",
            "2048x2048",
            "--json",
            "--sample-tiles",
            "20",
            "--model",
        ])
        .arg(threshold_model())
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "raw_jpeg_decode_mp_s",
        "read_decode_mp_s",
        "read_vs_raw_decode",
        "model_only_tiles_s",
        "stitch_mp_s",
        "write_png_mp_s",
        "write_tiff_mp_s",
        "openslide_read_decode_mp_s",
        "planned_read_mp_s",
        "planned_read_vs_raw_decode",
        "e2e_tiles_s",
        "e2e_vs_model_only",
        "e2e_inference_tiles_s",
        "e2e_stitch_write_mp_s",
        "peak_rss_mib",
    ] {
        assert!(
            v[key].as_f64().is_some_and(|x| x > 0.0),
            "{key}: {}",
            v[key]
        );
    }
    assert!(
        v["reader_vs_openslide_max_pixel_difference"]
            .as_u64()
            .unwrap()
            <= 8
    );
    assert_eq!(v["reader"], "direct JPEG");
    let window = v["e2e_unix_window"].as_array().unwrap();
    assert!(window[1].as_f64() >= window[0].as_f64());
    // The scratch slide and outputs are removed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `--reader openslide` reads through OpenSlide, the default decodes the
/// Aperio JPEG tiles directly; the report says which, and the masks of a
/// threshold model agree except where decoder rounding moves green across 128.
#[test]
fn reader_choice_is_reported_and_changes_only_rounding() {
    let dir = tempfile::tempdir().unwrap();
    let slide = repo("tests/data/default.svs");
    let mut masks = Vec::new();
    for (reader, read_by) in [("auto", "direct JPEG tiles"), ("openslide", "OpenSlide")] {
        let out = dir.path().join(reader);
        let o = wsiseg(&args![
            &"segment",
            &slide,
            &"--model",
            &threshold_model(),
            &"--out",
            &out,
            &"--level",
            &"0",
            &"--formats",
            &"png,report",
            &"--reader",
            &reader,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("default.report.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(report["working_level"]["read_by"], read_by);
        assert_eq!(report["parameters"]["reader"], reader);
        masks.push(read_mask(&out.join("default.mask.png")));
    }
    let (a, b) = (&masks[0], &masks[1]);
    assert_eq!(a.dimensions(), (2220, 2967));
    let differ = a.pixels().zip(b.pixels()).filter(|(p, q)| p != q).count();
    let tumor = a.pixels().filter(|p| p.0[0] == 1).count();
    assert!(tumor > 100_000, "the threshold model marks tissue: {tumor}");
    assert!(
        differ * 1000 < tumor,
        "{differ} pixels differ between readers ({tumor} tumor pixels)"
    );
}
