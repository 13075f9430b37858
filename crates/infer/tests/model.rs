//! Loading and running real TorchScript files (tests/data/models) on the CPU.

use std::path::{Path, PathBuf};

use wsiseg_infer::{Device, InferError, Precision, Segmenter};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

fn load(path: &Path) -> Result<Segmenter, InferError> {
    Segmenter::load(path, Device::Cpu, Precision::F32)
}

#[test]
fn threshold_model_labels_pixels_by_their_green_byte() {
    let model = load(&data("models/green-threshold")).unwrap();
    assert_eq!(model.manifest().name, "green-threshold");
    assert_eq!(model.manifest().classes, ["background", "tumor"]);
    // Three 8×8 tiles whose pixels sweep the green byte through 0..=255.
    let (n, t) = (3usize, 8u32);
    let mut tiles = Vec::new();
    let mut want = Vec::new();
    for i in 0..n * 64 {
        let g = ((i * 37) % 256) as u8;
        tiles.extend_from_slice(&[200, g, (255 - g)]);
        want.push(u8::from(g < 128));
    }
    let mut labels = vec![9u8; n * 64];
    let mut prob = vec![0u8; n * 64];
    model
        .segment(&tiles, n, t, &mut labels, Some(&mut prob))
        .unwrap();
    assert_eq!(labels, want);
    // softmax([0, 1 - 2g]) for class 1: 1 / (1 + e^-(1-2g)), g = green / 255.
    for (i, &p) in prob.iter().enumerate() {
        let g = ((i * 37) % 256) as f64 / 255.0;
        let want = 255.0 / (1.0 + (-(1.0 - 2.0 * g)).exp());
        assert!(
            (f64::from(p) - want).abs() <= 0.51,
            "pixel {i}: {p} vs {want}"
        );
    }
}

#[test]
fn bfloat16_agrees_with_f32_on_the_threshold_model() {
    // Away from the 127.5 boundary, lower precision must not change a label.
    for precision in [Precision::F32, Precision::BF16] {
        let model =
            Segmenter::load(&data("models/green-threshold"), Device::Cpu, precision).unwrap();
        let tiles: Vec<u8> = (0..16)
            .flat_map(|i| [0, if i % 2 == 0 { 20 } else { 230 }, 0])
            .collect();
        let mut labels = vec![0u8; 16];
        model.segment(&tiles, 1, 4, &mut labels, None).unwrap();
        let want: Vec<u8> = (0..16).map(|i| u8::from(i % 2 == 0)).collect();
        assert_eq!(labels, want, "{precision}");
    }
}

#[test]
fn shipped_unet_loads_and_segments_a_batch() {
    let model = load(&data("../../models/unet")).unwrap();
    let t = model.manifest().tile;
    assert_eq!(t % model.manifest().tile_multiple, 0);
    let tiles = vec![200u8; 2 * (t * t * 3) as usize];
    let mut labels = vec![255u8; 2 * (t * t) as usize];
    model.segment(&tiles, 2, t, &mut labels, None).unwrap();
    assert!(labels
        .iter()
        .all(|&l| (l as usize) < model.manifest().classes.len()));
}

#[test]
fn a_model_that_contradicts_its_manifest_is_refused() {
    let e = load(&data("models/wrong-classes")).err().unwrap();
    assert!(matches!(e, InferError::ModelMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("wrong-classes/model.pt") && msg.contains("3 classes"),
        "{msg}"
    );
}

#[test]
fn missing_and_broken_models_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = data("models/green-threshold");

    let e = load(&d.join("nope")).err().unwrap();
    assert!(matches!(e, InferError::ModelNotFound { .. }), "{e:?}");

    // A model without its manifest.
    std::fs::create_dir(d.join("no-manifest")).unwrap();
    std::fs::copy(good.join("model.pt"), d.join("no-manifest/model.pt")).unwrap();
    let e = load(&d.join("no-manifest")).err().unwrap();
    assert!(matches!(e, InferError::ManifestNotFound { .. }), "{e:?}");

    // A manifest that is not JSON, and one with an impossible value.
    std::fs::create_dir(d.join("bad-json")).unwrap();
    std::fs::copy(good.join("model.pt"), d.join("bad-json/model.pt")).unwrap();
    std::fs::write(d.join("bad-json/manifest.json"), "{ tile: 64").unwrap();
    let e = load(&d.join("bad-json")).err().unwrap();
    assert!(matches!(e, InferError::ManifestSyntax { .. }), "{e:?}");

    let manifest = std::fs::read_to_string(good.join("manifest.json")).unwrap();
    std::fs::create_dir(d.join("bad-std")).unwrap();
    std::fs::copy(good.join("model.pt"), d.join("bad-std/model.pt")).unwrap();
    std::fs::write(
        d.join("bad-std/manifest.json"),
        manifest.replace("\"std\": [\n    1.0,", "\"std\": [\n    0.0,"),
    )
    .unwrap();
    let e = load(&d.join("bad-std")).err().unwrap();
    assert!(
        e.to_string()
            .ends_with("invalid model manifest: std must be positive"),
        "{e}"
    );

    // Not TorchScript at all.
    std::fs::create_dir(d.join("garbage")).unwrap();
    std::fs::write(
        d.join("garbage/model.pt"),
        b"PK\x03\x04 definitely not a model",
    )
    .unwrap();
    std::fs::copy(good.join("manifest.json"), d.join("garbage/manifest.json")).unwrap();
    let e = load(&d.join("garbage")).err().unwrap();
    assert!(matches!(e, InferError::ModelLoad { .. }), "{e:?}");
    let msg = e.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.contains("garbage/model.pt: not a TorchScript model"),
        "{msg}"
    );
}

#[test]
fn a_pt_file_finds_its_same_stem_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let good = data("models/green-threshold");
    std::fs::copy(good.join("model.pt"), dir.path().join("thr.pt")).unwrap();
    std::fs::copy(good.join("manifest.json"), dir.path().join("thr.json")).unwrap();
    let model = load(&dir.path().join("thr.pt")).unwrap();
    assert_eq!(model.manifest().tile, 64);
}

/// Two batches in flight at once, filled tile by tile into reused staging
/// buffers, give the same labels and probabilities as one batch at a time.
#[test]
fn overlapped_batches_match_one_batch_at_a_time() {
    let model = load(&data("../../models/unet")).unwrap();
    let t = model.manifest().tile;
    let px = (t * t) as usize;
    let tile = |k: usize| -> Vec<u8> {
        (0..px * 3)
            .map(|i| ((i * (k + 3) / 7 + k * 50) % 256) as u8)
            .collect()
    };
    let mut want_labels = Vec::new();
    let mut want_probs = Vec::new();
    for k in 0..5 {
        let (mut l, mut p) = (vec![0u8; px], vec![0u8; px]);
        model.segment(&tile(k), 1, t, &mut l, Some(&mut p)).unwrap();
        want_labels.push(l);
        want_probs.push(p);
    }
    let mut a = model.staging(3, t);
    let mut b = model.staging(3, t);
    for k in 0..3 {
        a.tile_mut(k).copy_from_slice(&tile(k));
    }
    for k in 0..2 {
        b.tile_mut(k).copy_from_slice(&tile(3 + k));
    }
    let first = model.submit(a, 3, true).unwrap();
    let second = model.submit(b, 2, true).unwrap();
    let (mut l, mut p) = (vec![7u8; 3 * px], vec![7u8; 3 * px]);
    let a = first.wait_into(&mut l, Some(&mut p)).unwrap();
    assert_eq!(a.capacity(), 3, "the staging buffer comes back");
    for k in 0..3 {
        assert_eq!(
            l[k * px..(k + 1) * px],
            want_labels[k],
            "labels of tile {k}"
        );
        assert_eq!(
            p[k * px..(k + 1) * px],
            want_probs[k],
            "probabilities of tile {k}"
        );
    }
    let (mut l, mut p) = (vec![7u8; 3 * px], vec![7u8; 3 * px]);
    second.wait_into(&mut l, Some(&mut p)).unwrap();
    for k in 0..2 {
        assert_eq!(l[k * px..(k + 1) * px], want_labels[3 + k]);
        assert_eq!(p[k * px..(k + 1) * px], want_probs[3 + k]);
    }
    assert!(
        l[2 * px..].iter().all(|&v| v == 7),
        "only n tiles are written"
    );
}
