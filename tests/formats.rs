//! Model formats beside TorchScript (issue 28): AOTInductor packages
//! (`.pt2`, run by libtorch's AOTIModelPackageLoader through a C++ shim) and
//! ONNX models (run by ONNX Runtime, loaded at run time). The fixtures are
//! made by `tests/data/models/make_formats.py` through
//! scripts/export_model.py (about 3 minutes: the `.pt2` files are compiled
//! for this CPU) and kept in the target folder for the inputs' hash.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{differing, error_lines, read_mask, repo, run, stderr, unet};
use wsiseg_infer::{Device, Precision, Segmenter};

/// The fixtures (see make_formats.py), made once per set of inputs: in
/// `$CARGO_TARGET_TMPDIR/formats/<hash of the scripts and models>/`.
fn fixtures() -> &'static Path {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        for input in [
            "tests/data/models/make_formats.py",
            "scripts/export_model.py",
            "scripts/unet.py",
            "models/unet/model.pt",
            "models/unet/manifest.json",
            "tests/data/models/smp-unet-sigmoid/model.pt",
            "tests/data/models/segformer-quarter/model.pt",
        ] {
            std::fs::read(repo(input)).unwrap().hash(&mut h);
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("formats")
            .join(format!("{:016x}", h.finish()));
        if !out.join("done").exists() {
            let _ = std::fs::remove_dir_all(&out);
            let o = std::process::Command::new(common::python())
                .arg(repo("tests/data/models/make_formats.py"))
                .arg(&out)
                .output()
                .unwrap();
            assert!(o.status.success(), "make_formats.py: {}", stderr(&o));
            std::fs::write(out.join("done"), "").unwrap();
        }
        out
    })
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

/// The 64×64 tile make_models.py and make_formats.py compute references on:
/// R = (4x + y) % 256, G = (4y + 3x) % 256, B = (x·y) % 256.
fn gradient_tile() -> Vec<u8> {
    let mut px = Vec::with_capacity(64 * 64 * 3);
    for y in 0..64usize {
        for x in 0..64usize {
            px.extend_from_slice(&[
                ((4 * x + y) % 256) as u8,
                ((4 * y + 3 * x) % 256) as u8,
                ((x * y) % 256) as u8,
            ]);
        }
    }
    px
}

/// P(tumor) × 255 of the gradient tile.
fn on_gradient(model: &Segmenter) -> Vec<u8> {
    let (mut labels, mut prob) = (vec![9u8; 64 * 64], vec![0u8; 64 * 64]);
    model
        .segment(&gradient_tile(), 1, 64, &mut labels, Some(&mut prob))
        .unwrap();
    prob
}

/// The largest difference of two probability planes, in 1/255.
fn worst(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y)).max().unwrap()
}

/// Each network in each of its formats gives on one tile the probabilities
/// PyTorch's eager model gives (references committed: make_formats.py
/// --reference, make_models.py) within 1/255; an ensemble of a TorchScript
/// and an ONNX member gives the average of their references.
#[test]
fn every_format_gives_pytorchs_probabilities_on_one_tile() {
    let f = fixtures();
    let models = repo("tests/data/models");
    for (model, reference) in [
        (unet(), models.join("unet.reference.u8")),
        (f.join("unet/model.pt2"), models.join("unet.reference.u8")),
        (f.join("unet/model.onnx"), models.join("unet.reference.u8")),
        (
            f.join("smp-unet-sigmoid/model.pt2"),
            models.join("smp-unet-sigmoid/reference.u8"),
        ),
        (
            f.join("smp-unet-sigmoid/model.onnx"),
            models.join("smp-unet-sigmoid/reference.u8"),
        ),
        (
            f.join("segformer-quarter/model.pt2"),
            models.join("segformer-quarter/reference.u8"),
        ),
        (
            f.join("segformer-quarter/model.onnx"),
            models.join("segformer-quarter/reference.u8"),
        ),
    ] {
        let want = std::fs::read(&reference).unwrap();
        assert_eq!(want.len(), 64 * 64);
        assert!(
            want.iter().max() > want.iter().min(),
            "{}",
            reference.display()
        );
        let m = Segmenter::load(&model, Device::Cpu, Precision::F32)
            .unwrap_or_else(|e| panic!("{}: {e}", model.display()));
        let got = on_gradient(&m);
        let w = worst(&got, &want);
        assert!(w <= 1, "{}: P(tumor) differs by {w}/255", model.display());
    }

    // smp's softmax UNet as TorchScript with its sigmoid twin as ONNX.
    let members = [
        (models.join("smp-unet-softmax"), 1.0),
        (f.join("smp-unet-sigmoid/model.onnx"), 1.0),
    ];
    let m = Segmenter::load_ensemble(&members, Device::Cpu, Precision::F32).unwrap();
    let runtimes: Vec<&str> = m.members().map(|(_, _, _, r)| r).collect();
    assert_eq!(runtimes, ["torchscript", "onnx"]);
    let got = on_gradient(&m);
    let a = std::fs::read(models.join("smp-unet-softmax/reference.u8")).unwrap();
    let b = std::fs::read(models.join("smp-unet-sigmoid/reference.u8")).unwrap();
    for i in 0..got.len() {
        let want = (f64::from(a[i]) + f64::from(b[i])) / 2.0;
        assert!(
            (f64::from(got[i]) - want).abs() <= 1.0,
            "pixel {i}: ensemble {} vs the references' mean {want}",
            got[i]
        );
    }
}

/// The masks of one network's three formats agree on default.svs (≥ 99.9%
/// of pixels), the report names each run's runtime and ONNX Runtime's
/// version; two CPU workers with the ONNX model give the bytes of one;
/// `--tta dihedral` runs with a `.pt2` model; the smp and SegFormer
/// fixtures segment the slide in both new formats.
#[test]
fn one_network_in_three_formats_segments_alike() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut masks = Vec::new();
    for (name, model, runtime) in [
        ("ts", unet(), "torchscript"),
        ("pt2", f.join("unet/model.pt2"), "aotinductor"),
        ("onnx", f.join("unet/model.onnx"), "onnx"),
    ] {
        let o = segment(d, &model, name, &[]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        masks.push(read_mask(&d.join(name).join("default.mask.png")));
        let report = common::json(&d.join(name).join("default.report.json"));
        assert_eq!(
            report["model"]["members"][0]["runtime"], runtime,
            "{report}"
        );
        if runtime == "onnx" {
            let versions = report.to_string();
            assert!(versions.contains("\"onnxruntime\":\"1."), "{report}");
        }
    }
    for (m, name) in masks[1..].iter().zip(["pt2", "onnx"]) {
        let agree = 1.0 - differing(&masks[0], m) as f64 / m.len() as f64;
        assert!(
            agree >= 0.999,
            "{name} vs TorchScript masks agree on {agree}"
        );
    }

    // Two CPU workers, each with its own session: the same bytes.
    let o = segment(
        d,
        &f.join("unet/model.onnx"),
        "two",
        &["--device", "cpu,cpu"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(d.join("two/default.mask.png")).unwrap()
            == std::fs::read(d.join("onnx/default.mask.png")).unwrap(),
        "two workers differ from one"
    );

    // Eight passes through the package, against TorchScript's eight.
    let mut tta = Vec::new();
    for (name, model) in [("ts-tta", unet()), ("pt2-tta", f.join("unet/model.pt2"))] {
        let o = segment(d, &model, name, &["--tta", "dihedral", "--mpp", "2"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        tta.push(read_mask(&d.join(name).join("default.mask.png")));
    }
    let agree = 1.0 - differing(&tta[0], &tta[1]) as f64 / tta[0].len() as f64;
    assert!(agree >= 0.999, "dihedral TTA: .pt2 vs TorchScript {agree}");

    // Real architectures, in both new formats (at 4 µm/px: small).
    for name in ["smp-unet-sigmoid", "segformer-quarter"] {
        let mut two = Vec::new();
        for ext in ["pt2", "onnx"] {
            let out = format!("{name}-{ext}");
            let model = f.join(name).join(format!("model.{ext}"));
            let o = segment(d, &model, &out, &["--mpp", "4"]);
            assert!(o.status.success(), "{out}: {}", stderr(&o));
            two.push(read_mask(&d.join(&out).join("default.mask.png")));
        }
        let agree = 1.0 - differing(&two[0], &two[1]) as f64 / two[0].len() as f64;
        assert!(
            agree >= 0.999,
            "{name}: .pt2 vs ONNX masks agree on {agree}"
        );
    }
}

/// Runs `segment` with `model` and checks it fails with one `error:` line
/// containing `want`, exit 1, no mask.
fn refused(d: &Path, model: &Path, extra: &[&str], want: &str) {
    let out = format!(
        "out-{}-{}",
        model
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        model.file_name().unwrap().to_string_lossy()
    );
    let o = segment(d, model, &out, extra);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(errors[0].contains(want), "{want}: {}", errors[0]);
    assert!(!d.join(&out).join("default.mask.png").exists());
}

/// `bytes` as `d/folder/file`, with the UNet's manifest beside it.
fn with_unet_manifest(d: &Path, folder: &str, file: &str, bytes: &[u8]) -> PathBuf {
    let dir = d.join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), bytes).unwrap();
    std::fs::copy(
        fixtures().join("unet/manifest.json"),
        dir.join("manifest.json"),
    )
    .unwrap();
    dir.join(file)
}

/// Segments default.svs with the UNet's ONNX model and `WSISEG_ONNXRUNTIME`
/// set to `lib`: exit 1, one `error:` line holding each of `want`, no mask.
fn refused_with_onnxruntime(d: &Path, lib: &Path, want: &[&str]) {
    let o = common::command(d)
        .arg("segment")
        .arg(repo("tests/data/default.svs"))
        .arg("--model")
        .arg(fixtures().join("unet/model.onnx"))
        .args(["--out", "lib-out", "--device", "cpu"])
        .env("WSISEG_ONNXRUNTIME", lib)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        want.iter().all(|w| errors[0].contains(w)),
        "{want:?}: {}",
        errors[0]
    );
    assert!(!d.join("lib-out/default.mask.png").exists());
}

/// Bad AOTInductor packages: one `error:` line naming the file and the
/// problem, exit 1, nothing written, no crash.
#[test]
fn bad_aotinductor_packages_are_refused_in_one_line() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bytes = std::fs::read(f.join("unet/model.pt2")).unwrap();
    let truncated = with_unet_manifest(d, "truncated", "model.pt2", &bytes[..bytes.len() / 2]);
    refused(
        d,
        &truncated,
        &[],
        "truncated/model.pt2: cannot load this AOTInductor model: it is not a complete .pt2 package",
    );
    refused(
        d,
        &f.join("cuda-pt2/model.pt2"),
        &[],
        "cuda-pt2/model.pt2: cannot load this AOTInductor model: it was compiled for CUDA and cannot run on the CPU",
    );
    refused(
        d,
        &f.join("unet/model.pt2"),
        &["--precision", "bf16"],
        "unet/model.pt2: cannot load this AOTInductor model: its weights were compiled in f32, so it runs in f32 only",
    );
    // A file that is no package at all.
    let other = with_unet_manifest(d, "other", "model.pt2", b"not a zip archive at all");
    refused(
        d,
        &other,
        &[],
        "other/model.pt2: cannot load this AOTInductor model: it is not a complete .pt2 package",
    );
}

/// Bad ONNX models and a missing ONNX Runtime: one `error:` line naming the
/// file and the problem, exit 1, nothing written.
#[test]
fn bad_onnx_models_are_refused_in_one_line() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bytes = std::fs::read(f.join("unet/model.onnx")).unwrap();
    let truncated = with_unet_manifest(d, "truncated", "model.onnx", &bytes[..bytes.len() / 3]);
    refused(
        d,
        &truncated,
        &[],
        "truncated/model.onnx: cannot load this ONNX model: ",
    );
    refused(
        d,
        &f.join("fixed-batch/model.onnx"),
        &[],
        "fixed-batch/model.onnx: cannot load this ONNX model: its input \"input\" has a fixed batch of 1",
    );
    refused(
        d,
        &f.join("two-inputs/model.onnx"),
        &[],
        "two-inputs/model.onnx: cannot load this ONNX model: it takes 2 inputs (input, scale)",
    );
    // SegFormer's one output is "logits": a manifest naming another.
    let wrong = d.join("wrong-element");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::copy(
        f.join("segformer-quarter/model.onnx"),
        wrong.join("model.onnx"),
    )
    .unwrap();
    let mut manifest = common::json(&f.join("segformer-quarter/manifest.json"));
    manifest["output_element"] = "masks".into();
    std::fs::write(wrong.join("manifest.json"), manifest.to_string()).unwrap();
    refused(
        d,
        &wrong.join("model.onnx"),
        &[],
        "output_element \"masks\" is not a tensor in it",
    );
    refused(
        d,
        &f.join("unet/model.onnx"),
        &["--precision", "bf16"],
        "unet/model.onnx: cannot load this ONNX model: ONNX models run in f32 here",
    );

    refused_with_onnxruntime(
        d,
        &d.join("nowhere/libonnxruntime.so"),
        &[
            "ONNX Runtime (libonnxruntime) is not installed: looked for",
            "nowhere/libonnxruntime.so",
        ],
    );
}

/// `wsiseg bench` with several models races them in one run: one entry per
/// model with its runtime, model-only and end-to-end tiles/s, and ratios to
/// the first (the first's are 1).
#[test]
fn bench_races_the_formats_side_by_side() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = common::command(d)
        .arg("bench")
        .arg("--model")
        .arg(unet())
        .arg("--model")
        .arg(f.join("unet/model.pt2"))
        .arg("--model")
        .arg(f.join("unet/model.onnx"))
        .args([
            "--stages",
            "model,e2e",
            "--size",
            "2048x2048",
            "--device",
            "cpu",
        ])
        .args(["--batch", "4", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    let runtimes: Vec<&str> = models
        .iter()
        .map(|m| m["runtime"].as_str().unwrap())
        .collect();
    assert_eq!(runtimes, ["torchscript", "aotinductor", "onnx"], "{v}");
    assert_eq!(models[0]["model_only_vs_first"], 1.0, "{v}");
    assert_eq!(models[0]["e2e_vs_first"], 1.0, "{v}");
    for m in models {
        for k in [
            "model_only_tiles_s",
            "e2e_tiles_s",
            "model_only_vs_first",
            "e2e_vs_first",
        ] {
            assert!(m[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {v}");
        }
    }
    // Models of another tile cannot race one batch shape.
    let o = common::command(d)
        .arg("bench")
        .arg("--model")
        .arg(unet())
        .arg("--model")
        .arg(f.join("segformer-quarter/model.onnx"))
        .args([
            "--stages",
            "model",
            "--size",
            "1024x1024",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].contains("its tile is 64 px, the first model's 256 px"),
        "{}",
        errors[0]
    );
}

/// `wsiseg model check` names the runtime of each format.
#[test]
fn model_check_names_each_formats_runtime() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (file, name) in [("model.pt2", "aotinductor"), ("model.onnx", "onnx")] {
        let o = run(
            d,
            &args![
                "model",
                "check",
                f.join("unet").join(file),
                "--device",
                "cpu"
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        let line = text.lines().find(|l| l.trim_start().starts_with("runtime"));
        assert!(line.is_some_and(|l| l.contains(name)), "{text}");
    }
}

/// An ONNX Runtime older than wsiseg needs (1.20): a stand-in library that
/// exports `OrtGetApiBase` as 1.16.3 does (compiled here with the C
/// compiler) is one `error:` line naming it and both versions, exit 1.
#[test]
fn an_older_onnx_runtime_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = d.join("old.c");
    std::fs::write(
        &source,
        r#"
static const char *version(void) { return "1.16.3"; }
static const void *api(unsigned v) { (void)v; return 0; }
static const struct { const void *(*get_api)(unsigned); const char *(*get_version)(void); } base = { api, version };
const void *OrtGetApiBase(void) { return &base; }
"#,
    )
    .unwrap();
    let lib = d.join("libonnxruntime.so.1.16.3");
    let o = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&source)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    refused_with_onnxruntime(
        d,
        &lib,
        &["libonnxruntime.so.1.16.3", "1.20", "but got '1.16.3'"],
    );
}
