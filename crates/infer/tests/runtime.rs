//! The runtime layer through its plain-Rust runtime (`model.linear`): a
//! model folder is found by its file, and the shared layer above the
//! runtime (normalization, activation, decision, test-time augmentation,
//! ensembles, the NaN guard) gives the answer the rule implies.

use std::path::{Path, PathBuf};

use wsiseg_infer::{Device, InferError, Precision, Segmenter, Tta};

/// A model folder: `model.linear` with `weights` and `bias`, and a manifest
/// (RGB in [0, 1], normalized by `mean` and `std`).
fn linear(dir: &Path, name: &str, weights: &str, bias: &str, mean: f32, classes: &str) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("model.linear"),
        format!(r#"{{"weights": {weights}, "bias": {bias}}}"#),
    )
    .unwrap();
    std::fs::write(
        folder.join("manifest.json"),
        format!(
            r#"{{"name": "{name}", "tile": 16, "mean": [{mean}, {mean}, {mean}], "std": [1, 1, 1], "classes": {classes}, "output": "logits"}}"#
        ),
    )
    .unwrap();
    folder
}

/// Tumor where green < 0.5: logits (0, 5 − 10·g).
fn green_rule(dir: &Path) -> PathBuf {
    linear(
        dir,
        "green",
        "[[0, 0, 0], [0, -10, 0]]",
        "[0, 5]",
        0.0,
        r#"["background", "tumor"]"#,
    )
}

/// Pseudo-random tiles of 16×16 RGB (a fixed sequence: no dependency).
fn tiles(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_u32;
    (0..n * 16 * 16 * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn run(model: &Segmenter, tiles: &[u8], n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut labels = vec![9u8; n * 256];
    let mut p = vec![0u8; n * 256];
    model
        .segment(tiles, n, 16, &mut labels, Some(&mut p))
        .unwrap();
    (labels, p)
}

#[test]
fn a_linear_model_folder_runs_its_rule_through_the_shared_layer() {
    let dir = tempfile::tempdir().unwrap();
    let model = Segmenter::load(&green_rule(dir.path()), Device::Cpu, Precision::F32).unwrap();
    assert_eq!(model.runtimes(), ["linear"]);
    // The layer above every runtime runs on libtorch; plain Rust adds nothing.
    let libraries: Vec<&str> = model.libraries().iter().map(|(n, _)| *n).collect();
    assert_eq!(libraries, ["libtorch", "cuda_runtime", "cudnn"]);
    assert_eq!(model.path().file_name().unwrap(), "model.linear");
    let n = 5;
    let rgb = tiles(n);
    let (labels, p) = run(&model, &rgb, n);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        let z = 5.0 - 10.0 * f64::from(px[1]) / 255.0;
        assert_eq!(labels[i], u8::from(z > 0.0), "pixel {i}: green {}", px[1]);
        // Softmax of (0, z) is the sigmoid of z, scaled to 0–255.
        let want = (255.0 / (1.0 + (-z).exp())).round();
        assert!(
            (f64::from(p[i]) - want).abs() <= 1.0,
            "pixel {i}: {} vs {want}",
            p[i]
        );
    }
    assert!(labels.contains(&0) && labels.contains(&1));
}

#[test]
fn augmentation_and_ensembles_average_above_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let green = green_rule(dir.path());
    let n = 3;
    let rgb = tiles(n);
    let alone = Segmenter::load(&green, Device::Cpu, Precision::F32).unwrap();
    let (labels, p) = run(&alone, &rgb, n);
    // A per-pixel rule commutes with flips and turns: the average of the
    // eight symmetries is the rule again.
    let mut d4 = Segmenter::load(&green, Device::Cpu, Precision::F32).unwrap();
    d4.set_tta(Tta::Dihedral);
    let (labels_d4, p_d4) = run(&d4, &rgb, n);
    assert_eq!(labels_d4, labels);
    assert!(p.iter().zip(&p_d4).all(|(a, b)| a.abs_diff(*b) <= 1));
    // Averaged with a model that always says background (P(tumor) ≈ 0) at
    // weight 1 against 3, P(tumor) is three quarters of the rule's.
    let never = linear(
        dir.path(),
        "never",
        "[[0, 0, 0], [0, 0, 0]]",
        "[0, -30]",
        0.0,
        r#"["background", "tumor"]"#,
    );
    let both = Segmenter::load_ensemble(&[(green, 3.0), (never, 1.0)], Device::Cpu, Precision::F32)
        .unwrap();
    assert_eq!(both.runtimes(), ["linear", "linear"]);
    let (_, p_both) = run(&both, &rgb, n);
    for (a, b) in p.iter().zip(&p_both) {
        let want = f64::from(*a) * 0.75;
        assert!((f64::from(*b) - want).abs() <= 1.0, "{b} vs {want}");
    }
}

#[test]
fn the_nan_guard_and_the_manifest_check_hold_for_any_runtime() {
    let dir = tempfile::tempdir().unwrap();
    // Normalized by mean 1: white is 0 (finite), black is −1 and overflows.
    let overflow = linear(
        dir.path(),
        "overflow",
        "[[0, 0, 0], [-3e38, -3e38, 0]]",
        "[0, 0]",
        1.0,
        r#"["background", "tumor"]"#,
    );
    let model = Segmenter::load(&overflow, Device::Cpu, Precision::F32).unwrap();
    let mut rgb = vec![255u8; 3 * 256 * 3];
    rgb[2 * 768..].fill(0);
    let mut labels = vec![0u8; 3 * 256];
    let e = model.segment(&rgb, 3, 16, &mut labels, None).unwrap_err();
    assert!(
        matches!(e, InferError::NonFinite { tile: Some(2), .. }),
        "{e}"
    );
    // Three output channels for two classes: the load-time check says so.
    let three = linear(
        dir.path(),
        "three",
        "[[0, 0, 0], [0, 0, 0], [0, 0, 0]]",
        "[0, 0, 0]",
        0.0,
        r#"["background", "tumor"]"#,
    );
    let e = Segmenter::load(&three, Device::Cpu, Precision::F32)
        .err()
        .unwrap();
    let text = e.to_string();
    assert!(
        text.contains(
            "model.linear: the model does not fit its manifest: output shape [1, 3, 16, 16]"
        ),
        "{text}"
    );
    // A file the runtime cannot read: one line naming it and the runtime.
    let broken = green_rule(&dir.path().join("broken"));
    std::fs::write(broken.join("model.linear"), "{\"weights\": [[0, 0, 0]]}").unwrap();
    let e = Segmenter::load(&broken, Device::Cpu, Precision::F32)
        .err()
        .unwrap();
    let text = e.to_string();
    assert!(
        text.contains("model.linear: cannot load this linear model: missing field `bias`"),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn a_folder_without_any_runtime_file_names_the_torchscript_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = Segmenter::load(dir.path(), Device::Cpu, Precision::F32)
        .err()
        .unwrap();
    assert!(
        matches!(&e, InferError::ModelNotFound { path } if path.ends_with("model.pt")),
        "{e}"
    );
}
