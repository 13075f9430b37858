//! Models as competition teams export them (tests/data/models, made by
//! make_models.py), end to end through `wsiseg segment` on default.svs:
//! a sigmoid channel, a tuple, a dict at 1/4 size, BGR 0–255 input, three
//! classes; `--threshold`; and the errors a wrong model or option gets.

mod common;

use std::path::Path;

use common::{error_lines, files_in, json, read_mask, repo, run, stderr};

/// `wsiseg segment default.svs --model tests/data/models/MODEL --out OUT
/// --formats png,report --device cpu EXTRA…` in `d` (EXTRA may name another
/// --device); returns the mask's labels (or the error line when it failed).
fn segment(d: &Path, model: &str, out: &str, extra: &[&str]) -> Result<Vec<u8>, String> {
    let slide = repo("tests/data/default.svs");
    let model = repo(&format!("tests/data/models/{model}"));
    let mut args = vec!["--formats", "png,report"];
    if !extra.contains(&"--device") {
        args.extend_from_slice(&["--device", "cpu"]);
    }
    args.extend_from_slice(extra);
    let o = common::segment(d, &slide, &model, out, &args);
    if !o.status.success() {
        let errors = error_lines(&o);
        assert_eq!(errors.len(), 1, "one error line: {}", stderr(&o));
        assert_eq!(files_in(&d.join(out)), Vec::<String>::new(), "no output");
        return Err(errors[0].clone());
    }
    Ok(read_mask(&d.join(out).join("default.mask.png")).into_raw())
}

fn tumor(mask: &[u8]) -> usize {
    mask.iter().filter(|&&l| l == 1).count()
}

/// Every form runs end to end; the green rule written as a sigmoid channel
/// or as a tuple element gives the very mask of the two-channel softmax
/// model; at 1/4 size (upsampled) nearly the same; thresholds nest.
#[test]
fn exported_model_forms_segment_a_slide() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let want = segment(d, "green-threshold", "softmax", &[]).unwrap();
    let tumor_px = tumor(&want);
    assert!(tumor_px > 1000 && tumor_px < want.len() / 2, "{tumor_px}");

    assert_eq!(segment(d, "sigmoid-green", "sigmoid", &[]).unwrap(), want);
    assert_eq!(segment(d, "tuple-green", "tuple", &[]).unwrap(), want);
    let report = json(&d.join("sigmoid/default.report.json"));
    assert_eq!(report["parameters"]["decision"], "P(tumor) > 0.5");
    assert_eq!(report["parameters"]["threshold"], serde_json::Value::Null);
    assert_eq!(report["model"]["manifest"]["activation"], "sigmoid");

    // Green averaged over 4×4 pixels loses fine texture: measured 95.6%.
    let quarter = segment(d, "dict-quarter", "quarter", &[]).unwrap();
    let same = quarter.iter().zip(&want).filter(|(a, b)| a == b).count();
    assert!(
        same as f64 >= 0.93 * want.len() as f64,
        "dict-quarter agrees on {same} of {} pixels",
        want.len()
    );

    let red = segment(d, "bgr255-red", "red", &[]).unwrap();
    assert!(tumor(&red) > 1000, "red < 128 occurs on H&E");

    let three = segment(d, "three-class", "three", &[]).unwrap();
    assert!(three.iter().all(|&l| l <= 2) && three.contains(&1) && three.contains(&2));

    // --threshold: 0.7 ⊆ 0.5 ⊆ 0.3, each strictly smaller; in the report.
    let low = segment(d, "sigmoid-green", "t03", &["--threshold", "0.3"]).unwrap();
    let high = segment(d, "sigmoid-green", "t07", &["--threshold", "0.7"]).unwrap();
    assert!(high.iter().zip(&want).all(|(&h, &w)| h <= w));
    assert!(want.iter().zip(&low).all(|(&w, &l)| w <= l));
    assert!(tumor(&high) < tumor_px && tumor_px < tumor(&low));
    let report = json(&d.join("t07/default.report.json"));
    assert_eq!(report["parameters"]["threshold"], 0.7);
    assert_eq!(report["parameters"]["decision"], "P(tumor) > 0.7");
    // At 0.5 the sigmoid model is its two-channel softmax equivalent, and
    // the softmax model is its own arg-max.
    let half = segment(d, "sigmoid-green", "s05", &["--threshold", "0.5"]).unwrap();
    assert_eq!(half, want);
    let half = segment(d, "green-threshold", "t05", &["--threshold", "0.5"]).unwrap();
    assert_eq!(half, want);
}

/// A threshold a model cannot take, and one out of range, are one-line
/// errors naming --threshold; nothing is written.
#[test]
fn impossible_thresholds_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = segment(d, "three-class", "a", &["--threshold", "0.4"]).unwrap_err();
    assert!(
        e.starts_with("error: --threshold 0.4 cannot apply: thresholds are for binary models, this one has 3 classes (background, tumor, stroma)"),
        "{e}"
    );
    for bad in ["1.5", "0", "x"] {
        let o = run(
            d,
            &[
                "segment",
                "nothing.svs",
                "--model",
                "m",
                "--out",
                "b",
                "--threshold",
                bad,
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains("--threshold"), "{}", stderr(&o));
        assert!(!d.join("b").exists());
    }
}

/// `wsiseg model check` says how each model will run, flags a manifest
/// without mpp, and exits non-zero when one model does not fit its
/// manifest while still checking the others.
#[test]
fn model_check_describes_each_model_and_fails_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = |name: &str| repo(&format!("tests/data/models/{name}"));
    let o = run(
        d,
        &args![
            "model",
            "check",
            model("dict-quarter"),
            model("wrong-classes"),
            model("sigmoid-green"),
            "--device",
            "cpu",
            "--threshold",
            "0.4"
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].contains("wrong-classes/model.pt: the model does not fit its manifest"),
        "{}",
        errors[0]
    );
    for want in [
        "dict-quarter/model.pt — dict-quarter",
        "returns      a dict with keys \"hidden\", \"logits\" for one tile",
        "output       [1, 2, 16, 16], upsampled ×4 (bilinear), softmax over 2 channels",
        "sigmoid-green/model.pt — sigmoid-green",
        "output       [1, 1, 64, 64], sigmoid over 1 channel: P(tumor)",
        "decision     P(tumor) > 0.4",
        "resolution   not given",
        "tiles/s on cpu in f32, batch 8 (model only)",
        "bf16         vs f32: P(tumor) differs by at most",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    assert!(stderr(&o).contains("sigmoid-green/model.pt: the manifest gives no mpp"));

    let o = run(
        d,
        &args!["model", "check", common::unet(), "--device", "cpu"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("resolution   1 µm/px") && out.contains("decision     arg-max"),
        "{out}"
    );
    assert!(!stderr(&o).contains("no mpp"), "{}", stderr(&o));
}

/// `--model` twice is an ensemble: the shipped UNet with itself gives the
/// very bytes of the UNet alone, and the report lists both members with
/// their SHA-256 and weights. `--tta dihedral` of a model that treats every
/// pixel alike gives its mask exactly, and says so in the report.
#[test]
fn ensembles_and_test_time_augmentation_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = repo("tests/data/default.svs");
    let unet = common::unet();
    let run_unet = |out: &str, models: &[&Path], extra: &[&str]| {
        let mut a = args![
            "segment",
            slide,
            "--out",
            out,
            "--device",
            "cpu",
            "--formats",
            "png,tiff,report"
        ];
        for m in models {
            a.extend(args!["--model", m]);
        }
        a.extend(extra.iter().map(std::ffi::OsString::from));
        common::run_ok(d, &a);
    };
    run_unet("alone", &[&unet], &[]);
    run_unet("pair", &[&unet, &unet], &["--weights", "0.25,0.75"]);
    for file in ["default.mask.png", "default.mask.tiff"] {
        let (a, b) = (d.join("alone").join(file), d.join("pair").join(file));
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{file} differs"
        );
    }
    let report = json(&d.join("pair/default.report.json"));
    let members = report["model"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["sha256"], report["model"]["sha256"]);
    assert_eq!(members[0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(members[1]["weight"], 0.75);
    assert_eq!(report["parameters"]["tta"], "none");

    let plain = segment(d, "green-threshold", "plain", &[]).unwrap();
    let tta = segment(d, "green-threshold", "tta", &["--tta", "dihedral"]).unwrap();
    assert_eq!(tta, plain);
    assert_eq!(
        json(&d.join("tta/default.report.json"))["parameters"]["tta"],
        "dihedral"
    );
}

/// Ensembles that cannot be: weights that do not match the models, members
/// that disagree; an unknown --tta. One error line, nothing written.
#[test]
fn impossible_ensembles_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = |name: &str| repo(&format!("tests/data/models/{name}"));
    let e = segment(
        d,
        "green-threshold",
        "a",
        &["--model", model("three-class").to_str().unwrap()],
    )
    .unwrap_err();
    assert!(
        e.contains("three-class/model.pt: its classes (background, tumor, stroma) differ from the first model's (background, tumor)"),
        "{e}"
    );
    let e = segment(d, "green-threshold", "b", &["--weights", "1,2"]).unwrap_err();
    assert_eq!(
        e,
        "error: --weights gives 2 weight(s) for 1 model(s): give one per --model, in order"
    );
    let o = run(
        d,
        &args!["segment", "x.svs", "-m", "m", "-o", "c", "--tta", "sideways"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'sideways' is not a test-time augmentation"),
        "{}",
        stderr(&o)
    );
    let o = run(
        d,
        &args![
            "segment",
            "x.svs",
            "-m",
            "m",
            "-m",
            "n",
            "-o",
            "c",
            "--weights",
            "1,-1"
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'-1' is not a positive number"),
        "{}",
        stderr(&o)
    );
}

/// Real architectures (shrunk, random weights; make_models.py) segment a
/// slide end to end: smp Unet with one sigmoid channel and with softmax,
/// MONAI's UNet with three classes, SegFormer's tuple at 1/4 size.
#[test]
fn exported_architectures_segment_a_slide() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, classes) in [
        ("smp-unet-sigmoid", 2),
        ("smp-unet-softmax", 2),
        ("monai-unet-3class", 3),
        ("segformer-quarter", 2),
    ] {
        // 2 µm/px: few tiles, these models are slow-ish.
        let mask = segment(d, name, name, &["--mpp", "2"]).unwrap();
        assert!(!mask.is_empty(), "{name}");
        assert!(mask.iter().all(|&l| l < classes), "{name}");
        let report = json(&d.join(name).join("default.report.json"));
        assert_eq!(report["model"]["name"], name);
    }
}

/// `scripts/export_model.py` turns a segmentation-models-pytorch model and a
/// MONAI UNet into files `wsiseg model check` accepts and `segment` runs.
#[test]
fn the_exporter_presets_make_models_wsiseg_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = repo("scripts/export_model.py");
    for (out, preset) in [
        (
            "smp",
            &[
                "smp",
                "--encoder",
                "tu-resnet10t",
                "--encoder-depth",
                "3",
                "--decoder-channels",
                "32,16,8",
                "--classes",
                "1",
                "--tile",
                "64",
                "--mpp",
                "2",
            ][..],
        ),
        (
            "monai",
            &[
                "monai",
                "--classes",
                "3",
                "--channels",
                "8,16,32",
                "--tile",
                "64",
                "--mpp",
                "2",
            ][..],
        ),
    ] {
        let o = std::process::Command::new(common::python())
            .arg(&script)
            .args(preset)
            .args(["--out", out, "--no-check"])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(o.status.success(), "{out}: {}", stderr(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("TorchScript = eager"),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        let manifest = json(&d.join(out).join("manifest.json"));
        assert_eq!(manifest["mpp"], 2.0);
        let o = run(d, &["model", "check", out, "--device", "cpu"]);
        assert!(o.status.success(), "{out}: {}", stderr(&o));
        let check = String::from_utf8_lossy(&o.stdout).into_owned();
        let wanted = if out == "smp" {
            "sigmoid over 1 channel"
        } else {
            "softmax over 3 channels"
        };
        assert!(check.contains(wanted), "{check}");
        let slide = repo("tests/data/default.svs");
        let (model, masks) = (d.join(out), format!("masks-{out}"));
        let o = run(
            d,
            &args![
                "segment",
                slide,
                "--model",
                model,
                "--out",
                masks,
                "--device",
                "cpu",
                "--formats",
                "png"
            ],
        );
        assert!(o.status.success(), "{out}: {}", stderr(&o));
    }
}

/// `--probabilities` with a three-class model writes one map per class but
/// background — NAME.prob.tiff for tumor, NAME.prob-stroma.tiff — and the
/// mask holds each pixel's most likely class by those maps.
#[test]
fn a_multi_class_model_gets_a_probability_map_per_class() {
    use wsiseg_slide::{open, Rect};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let labels = segment(d, "three-class", "out", &["--probabilities"]).unwrap();
    let out = d.join("out");
    assert_eq!(
        files_in(&out),
        [
            "default.mask.png",
            "default.prob-stroma.tiff",
            "default.prob.tiff",
            "default.report.json",
            "default.run.json",
            "index.html"
        ]
    );
    let report = json(&out.join("default.report.json"));
    let listed: Vec<&str> = report["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        listed
            .iter()
            .any(|p| p.ends_with("default.prob-stroma.tiff")),
        "{listed:?}"
    );
    let read = |name: &str| -> Vec<u8> {
        let tiff = open(&out.join(name)).unwrap();
        let size = tiff.levels()[0].size;
        let image = tiff
            .read_inside(0, Rect::new(0, 0, size.w, size.h))
            .unwrap();
        image.pixels().map(|p| p.0[0]).collect()
    };
    let (tumor, stroma) = (read("default.prob.tiff"), read("default.prob-stroma.tiff"));
    assert_eq!(tumor.len(), labels.len());
    assert_eq!(stroma.len(), labels.len());
    let mut seen = [0usize; 3];
    for i in 0..labels.len() {
        let (p1, p2) = (i32::from(tumor[i]), i32::from(stroma[i]));
        let p0 = 255 - p1 - p2;
        assert!(p0 >= -2, "pixel {i}: {p1} + {p2} > 255");
        let by_maps = [p0, p1, p2];
        let label = labels[i] as usize;
        seen[label] += 1;
        // Each byte is rounded: within 2 of the largest.
        assert!(
            by_maps.iter().all(|&p| by_maps[label] >= p - 2),
            "pixel {i}: label {label}, probabilities {by_maps:?}"
        );
    }
    assert!(seen.iter().all(|&n| n > 1000), "{seen:?}");
}

/// A manifest's `colors` are the mask TIFF's palette, the GeoJSON
/// classification colour and the overlay's; wrong colours are an error
/// naming the field.
#[test]
fn manifest_colours_are_used_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("green");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(repo("models/unet/model.pt"), model.join("model.pt")).unwrap();
    let mut manifest = json(&repo("models/unet/manifest.json"));
    manifest["colors"] = serde_json::json!(["#000000", "#00c853"]);
    std::fs::write(model.join("manifest.json"), manifest.to_string()).unwrap();
    let o = common::run(
        d,
        &args![
            "segment",
            repo("tests/data/default.svs"),
            "--model",
            &model,
            "--device",
            "cpu",
            "--formats",
            "tiff,geojson,overlay",
            "--out",
            "out"
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let palette = wsiseg_slide::tiff_palette(&d.join("out/default.mask.tiff")).unwrap();
    assert_eq!(palette[1], [0, 0xc8, 0x53]);
    let geo = json(&d.join("out/default.geojson"));
    assert_eq!(
        geo["features"][0]["properties"]["classification"]["color"],
        serde_json::json!([0, 0xc8, 0x53])
    );
    let overlay = image::open(d.join("out/default.overlay.png"))
        .unwrap()
        .into_rgb8();
    assert!(
        overlay.pixels().any(|p| p.0 == [0, 0xc8, 0x53]),
        "the outline's band and the legend swatch"
    );
    assert!(
        !overlay.pixels().any(|p| p.0 == [230, 30, 30]),
        "no default red"
    );
    for (colors, why) in [
        (
            serde_json::json!(["#000000"]),
            "one \"#rrggbb\" colour per class",
        ),
        (
            serde_json::json!(["#000000", "red"]),
            "\"red\" is not a colour",
        ),
        (serde_json::json!(["#000000", "#000000"]), "the same colour"),
    ] {
        manifest["colors"] = colors;
        std::fs::write(model.join("manifest.json"), manifest.to_string()).unwrap();
        let o = common::run(d, &args!["model", "check", &model, "--device", "cpu"]);
        assert!(!o.status.success());
        let err = common::stderr(&o);
        assert!(err.contains("colors") && err.contains(why), "{err}");
    }
}
