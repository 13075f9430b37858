//! Model formats beside TorchScript (issue 28): ONNX models run by ONNX
//! Runtime (libonnxruntime loaded at run time). The fixtures are the
//! shipped UNet exported by `tests/data/models/make_onnx.py`.

mod common;

use std::path::{Path, PathBuf};

use common::{differing, error_lines, read_mask, repo, run, stderr, unet};

/// The ONNX fixtures in `d/onnx` (see make_onnx.py).
fn onnx_models(d: &Path) -> PathBuf {
    let out = d.join("onnx");
    let o = std::process::Command::new(common::python())
        .arg(repo("tests/data/models/make_onnx.py"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// `wsiseg segment default.svs` with `model` into `d/out`, PNG and report.
fn segment(d: &Path, model: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--formats", "png,report"];
    if !extra.contains(&"--device") {
        args.extend(["--device", "cpu"]);
    }
    args.extend(extra);
    common::segment(d, &repo("tests/data/default.svs"), model, out, &args)
}

/// The shipped UNet as ONNX checks, segments default.svs with the
/// TorchScript model's mask (≥ 99.9% of pixels), and the report says which
/// runtime ran it with ONNX Runtime's version; two workers give the same
/// bytes as one; an ensemble of the two formats runs.
#[test]
fn an_onnx_unet_segments_as_its_torchscript() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let models = onnx_models(d);
    let onnx = models.join("unet");
    let o = run(d, &args!["model", "check", &onnx, "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(text.contains("onnx"), "{text}");

    let o = segment(d, &unet(), "ts", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = segment(d, &onnx, "onnx", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (
        read_mask(&d.join("ts/default.mask.png")),
        read_mask(&d.join("onnx/default.mask.png")),
    );
    let agree = 1.0 - differing(&a, &b) as f64 / a.len() as f64;
    assert!(agree >= 0.999, "ONNX vs TorchScript masks agree on {agree}");
    let report = common::json(&d.join("onnx/default.report.json"));
    let text = report.to_string();
    assert!(text.contains("\"onnx\""), "{report}");
    assert!(text.contains("\"onnxruntime\":\"1."), "{report}");

    // Two CPU workers, each with its own session: the same bytes.
    let o = segment(d, &onnx, "two", &["--device", "cpu,cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(d.join("two/default.mask.png")).unwrap()
            == std::fs::read(d.join("onnx/default.mask.png")).unwrap(),
        "two workers differ from one"
    );

    // An ensemble mixing the formats.
    let o = common::command(d)
        .arg("segment")
        .arg(repo("tests/data/default.svs"))
        .arg("--model")
        .arg(unet())
        .arg("--model")
        .arg(&onnx)
        .args(["--out", "mixed", "--device", "cpu", "--formats", "png"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read_mask(&d.join("mixed/default.mask.png"));
    let agree = 1.0 - differing(&a, &m) as f64 / a.len() as f64;
    assert!(agree >= 0.999, "mixed ensemble vs TorchScript: {agree}");
}

/// Bad ONNX models and a missing ONNX Runtime: one `error:` line naming the
/// file and the problem, exit 1, nothing written.
#[test]
fn bad_onnx_models_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let models = onnx_models(d);
    let truncated = d.join("truncated");
    std::fs::create_dir_all(&truncated).unwrap();
    let bytes = std::fs::read(models.join("unet/model.onnx")).unwrap();
    std::fs::write(truncated.join("model.onnx"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::copy(
        models.join("unet/manifest.json"),
        truncated.join("manifest.json"),
    )
    .unwrap();
    for (model, want) in [
        (truncated.clone(), "truncated/model.onnx: cannot load this ONNX model: "),
        (
            models.join("fixed-batch"),
            "fixed-batch/model.onnx: cannot load this ONNX model: its input \"input\" has a fixed batch of 1",
        ),
        (
            models.join("two-inputs"),
            "two-inputs/model.onnx: cannot load this ONNX model: it takes 2 inputs (input, scale)",
        ),
    ] {
        let out = format!("out-{}", model.file_name().unwrap().to_string_lossy());
        let o = segment(d, &model, &out, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let errors = error_lines(&o);
        assert_eq!(errors.len(), 1, "{}", stderr(&o));
        assert!(errors[0].contains(want), "{want}: {}", errors[0]);
        assert!(!d.join(&out).join("default.mask.png").exists());
    }
    let o = common::command(d)
        .arg("segment")
        .arg(repo("tests/data/default.svs"))
        .arg("--model")
        .arg(models.join("unet"))
        .args(["--out", "nolib", "--device", "cpu"])
        .env("WSISEG_ONNXRUNTIME", d.join("nowhere/libonnxruntime.so"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].contains("ONNX Runtime (libonnxruntime) is not installed: looked for")
            && errors[0].contains("nowhere/libonnxruntime.so"),
        "{}",
        errors[0]
    );
}
