//! Loading and running real TorchScript files (tests/data/models) on the CPU.

use std::path::{Path, PathBuf};

use wsiseg_infer::{Device, InferError, Precision, Segmenter, Tta};

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

/// The 64×64 tile make_models.py computes its references on:
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

/// Labels and P(tumor) × 255 of the gradient tile (of a model with more
/// classes, the first of its probability planes: class 1).
fn on_gradient(model: &Segmenter) -> (Vec<u8>, Vec<u8>) {
    let planes = model.probability_planes();
    let (mut labels, mut prob) = (vec![9u8; 64 * 64], vec![0u8; planes * 64 * 64]);
    model
        .segment(&gradient_tile(), 1, 64, &mut labels, Some(&mut prob))
        .unwrap();
    prob.truncate(64 * 64);
    (labels, prob)
}

/// Models as teams export them — one sigmoid channel, a tuple, a dict at
/// 1/4 size, BGR in 0–255, three classes — give on one tile the
/// probabilities PyTorch computes from the same file and manifest
/// (make_models.py, `reference.u8`) within 1/255, and labels that follow
/// them.
#[test]
fn exported_model_forms_give_pytorchs_probabilities() {
    // (fixture, whether its rule is known: random-weight architectures
    // need not give both labels on one tile)
    for (name, known_rule) in [
        ("green-threshold", true),
        ("sigmoid-green", true),
        ("tuple-green", true),
        ("dict-quarter", true),
        ("bgr255-red", true),
        ("three-class", true),
        ("smp-unet-sigmoid", false),
        ("smp-unet-softmax", false),
        ("monai-unet-3class", false),
        ("segformer-quarter", false),
    ] {
        let folder = data(&format!("models/{name}"));
        let model = load(&folder).unwrap();
        let want = std::fs::read(folder.join("reference.u8")).unwrap();
        assert_eq!(want.len(), 64 * 64, "{name}");
        let (labels, prob) = on_gradient(&model);
        let worst = prob
            .iter()
            .zip(&want)
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap();
        assert!(worst <= 1, "{name}: P(tumor) differs by {worst}/255");
        assert!(
            want.iter().max() > want.iter().min(),
            "{name}: the reference varies over the tile"
        );
        if known_rule {
            assert!(labels.contains(&0) && labels.contains(&1), "{name}");
        }
        // A clear probability decides the label (three classes: clear
        // tumor is class 1; clear not-tumor is not).
        for (i, (&l, &p)) in labels.iter().zip(&want).enumerate() {
            if p >= 200 {
                assert_eq!(l, 1, "{name}: pixel {i}, P {p}");
            } else if p <= 55 {
                assert_ne!(l, 1, "{name}: pixel {i}, P {p}");
            }
        }
    }
    let (labels, _) = on_gradient(&load(&data("models/three-class")).unwrap());
    assert!(labels.contains(&2), "the third class occurs");
}

/// The same rule as softmax over [0, z] and as sigmoid(z) gives the same
/// labels at the default decision; thresholds 0.3 and 0.7 give nested label
/// sets that differ.
#[test]
fn sigmoid_models_and_thresholds() {
    let softmax = load(&data("models/green-threshold")).unwrap();
    let mut sigmoid = load(&data("models/sigmoid-green")).unwrap();
    assert_eq!(sigmoid.manifest().classes, ["background", "tumor"]);
    assert_eq!(sigmoid.decision(), "P(tumor) > 0.5");
    assert_eq!(softmax.decision(), "arg-max");
    let (want, _) = on_gradient(&softmax);
    assert_eq!(on_gradient(&sigmoid).0, want);
    sigmoid.set_threshold(Some(0.3)).unwrap();
    let (low, _) = on_gradient(&sigmoid);
    sigmoid.set_threshold(Some(0.7)).unwrap();
    assert_eq!(sigmoid.decision(), "P(tumor) > 0.7");
    let (high, _) = on_gradient(&sigmoid);
    assert!(high.iter().zip(&low).all(|(&h, &l)| h <= l), "0.7 ⊆ 0.3");
    let count = |v: &[u8]| v.iter().filter(|&&l| l == 1).count();
    assert!(count(&high) < count(&want) && count(&want) < count(&low));
    // The softmax model thresholded at 0.5 is its arg-max.
    let mut softmax = softmax;
    softmax.set_threshold(Some(0.5)).unwrap();
    assert_eq!(on_gradient(&softmax).0, want);

    for bad in [0.0, 1.0, -0.2, f64::NAN] {
        let e = sigmoid.set_threshold(Some(bad)).unwrap_err();
        assert!(matches!(e, InferError::Threshold { .. }), "{e:?}");
    }
    let mut three = load(&data("models/three-class")).unwrap();
    let e = three.set_threshold(Some(0.4)).unwrap_err().to_string();
    assert!(
        e.contains("binary models") && e.contains("3 classes"),
        "{e}"
    );
}

/// Manifests that do not describe their model say what to write.
#[test]
fn manifest_mistakes_name_the_field_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let with = |fixture: &str, folder: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let src = data(&format!("models/{fixture}"));
        let dst = dir.path().join(folder);
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::copy(src.join("model.pt"), dst.join("model.pt")).unwrap();
        let mut m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("manifest.json")).unwrap())
                .unwrap();
        edit(&mut m);
        std::fs::write(dst.join("manifest.json"), m.to_string()).unwrap();
        load(&dst).err().map(|e| e.to_string()).unwrap_or_default()
    };
    // SegFormer-like output at 1/4 size without output_stride.
    let e = with("dict-quarter", "no-stride", &|m| {
        m["output_stride"] = 1.into();
    });
    assert!(e.contains("set \"output_stride\": 4"), "{e}");
    // A tuple whose segmentation is not the first element.
    let e = with("tuple-green", "no-element", &|m| {
        m.as_object_mut().unwrap().remove("output_element");
    });
    assert!(
        e.contains("a tuple of (a tensor [1, 3], a tensor [1, 2, 64, 64])")
            && e.contains("output_element"),
        "{e}"
    );
    let e = with("dict-quarter", "bad-key", &|m| {
        m["output_element"] = "masks".into();
    });
    assert!(
        e.contains("a dict with keys \"hidden\", \"logits\"") && e.contains("\"masks\""),
        "{e}"
    );
    // One channel declared as softmax.
    let e = with("sigmoid-green", "one-channel", &|m| {
        m["activation"] = "softmax".into();
        m["classes"] = serde_json::json!(["background", "tumor"]);
    });
    assert!(e.contains("set \"activation\": \"sigmoid\""), "{e}");
    // Contradictions and impossible values.
    let e = with("green-threshold", "contradiction", &|m| {
        m["activation"] = "sigmoid".into();
    });
    assert!(e.contains("activation") && e.contains("contradicts"), "{e}");
    let e = with("green-threshold", "no-activation", &|m| {
        m.as_object_mut().unwrap().remove("output");
    });
    assert!(e.contains("activation missing"), "{e}");
    let e = with("sigmoid-green", "sigmoid-three", &|m| {
        m["classes"] = serde_json::json!(["background", "tumor", "stroma"]);
    });
    assert!(e.contains("classes") && e.contains("sigmoid"), "{e}");
    let e = with("bgr255-red", "scale", &|m| {
        m["input_scale"] = 100.into();
    });
    assert!(e.contains("input_scale must be 1"), "{e}");
    let e = with("three-class", "threshold", &|m| {
        m["threshold"] = 0.4.into();
    });
    assert!(e.contains("threshold applies to binary models"), "{e}");
}

/// An ensemble averages its models' probabilities with their weights, as
/// PyTorch's (make_models.py's references) combine; a model with itself is
/// the model alone; members that disagree on classes, tile_multiple or mpp
/// are refused, naming the member and the field.
#[test]
fn ensembles_average_probabilities_and_refuse_mismatched_members() {
    let fixture = |name: &str| data("models").join(name); // (an absolute name stays)
    let reference = |name: &str| std::fs::read(fixture(name).join("reference.u8")).unwrap();
    let ensemble = |models: &[(&str, f64)]| {
        let models: Vec<(PathBuf, f64)> = models.iter().map(|&(n, w)| (fixture(n), w)).collect();
        Segmenter::load_ensemble(&models, Device::Cpu, Precision::F32)
    };
    let model = ensemble(&[("green-threshold", 0.7), ("bgr255-red", 0.3)]).unwrap();
    assert_eq!(model.members().count(), 2);
    let (labels, prob) = on_gradient(&model);
    let (a, b) = (reference("green-threshold"), reference("bgr255-red"));
    for i in 0..prob.len() {
        let want = 0.7 * f64::from(a[i]) + 0.3 * f64::from(b[i]);
        assert!(
            (f64::from(prob[i]) - want).abs() <= 1.0,
            "pixel {i}: {} vs {want}",
            prob[i]
        );
        if want >= 140.0 {
            assert_eq!(labels[i], 1, "pixel {i}");
        } else if want <= 115.0 {
            assert_eq!(labels[i], 0, "pixel {i}");
        }
    }

    // The sigmoid form joins a softmax model: the same rule, the same labels.
    let alone = on_gradient(&load(&fixture("green-threshold")).unwrap());
    let pair = ensemble(&[("green-threshold", 1.0), ("sigmoid-green", 1.0)]).unwrap();
    assert_eq!(on_gradient(&pair).0, alone.0);
    let twice = ensemble(&[("green-threshold", 1.0), ("green-threshold", 1.0)]).unwrap();
    assert_eq!(on_gradient(&twice), alone);

    // The green model as if trained at 0.5 µm/px.
    let dir = tempfile::tempdir().unwrap();
    let at_half = dir.path().join("green-at-half-micron");
    std::fs::create_dir(&at_half).unwrap();
    std::fs::copy(
        fixture("green-threshold").join("model.pt"),
        at_half.join("model.pt"),
    )
    .unwrap();
    let manifest =
        std::fs::read_to_string(fixture("green-threshold").join("manifest.json")).unwrap();
    std::fs::write(
        at_half.join("manifest.json"),
        manifest.replace("\"tile\": 64,", "\"tile\": 64, \"mpp\": 0.5,"),
    )
    .unwrap();
    for (other, field) in [
        ("three-class", "classes"),
        ("dict-quarter", "tile_multiple"),
        (at_half.to_str().unwrap(), "mpp"),
    ] {
        let e = ensemble(&[("green-threshold", 1.0), (other, 1.0)])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!("its {field} (")) && e.contains("must agree"),
            "{other}: {e}"
        );
        let named = Path::new(other).file_name().unwrap().to_str().unwrap();
        assert!(e.contains(named), "{e}");
    }
    let e = ensemble(&[("green-threshold", 1.0), ("sigmoid-green", 0.0)])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("sigmoid-green") && e.contains("weight 0 must be a positive number"),
        "{e}"
    );
}

/// Test-time augmentation of a model that treats every pixel alike gives
/// its labels exactly; of the shipped UNet, labels that mostly agree.
#[test]
fn test_time_augmentation_inverts_each_transform() {
    let mut model = load(&data("models/green-threshold")).unwrap();
    let plain = on_gradient(&model);
    for tta in [Tta::Flips, Tta::Dihedral] {
        model.set_tta(tta);
        let (labels, prob) = on_gradient(&model);
        assert_eq!(labels, plain.0, "{tta}");
        let worst = prob
            .iter()
            .zip(&plain.1)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "{tta}: {worst}");
    }
    // A model that is not symmetric: a transform not undone would move its
    // output. The UNet's labels with and without TTA agree on most pixels.
    let mut unet = load(&data("../../models/unet")).unwrap();
    let t = unet.manifest().tile;
    let px = (t * t) as usize;
    let tile: Vec<u8> = (0..px * 3)
        .map(|i| {
            let (x, y) = ((i / 3) % t as usize, (i / 3) / t as usize);
            if (x / 40 + y / 60) % 2 == 0 {
                120
            } else {
                230
            }
        })
        .collect();
    let (mut plain, mut tta) = (vec![0u8; px], vec![0u8; px]);
    unet.segment(&tile, 1, t, &mut plain, None).unwrap();
    unet.set_tta(Tta::Dihedral);
    unet.segment(&tile, 1, t, &mut tta, None).unwrap();
    let same = plain.iter().zip(&tta).filter(|(a, b)| a == b).count();
    assert!(same * 10 >= px * 9, "{same} of {px}");
}

/// A folder with `ensemble.json` is one `--model`: its members (paths
/// relative to it) with their weights, the same as naming them one by one.
#[test]
fn an_ensemble_folder_names_its_members_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    let ens = dir.path().join("ens");
    std::fs::create_dir(&ens).unwrap();
    let models = data("models");
    // One member beside the folder (a relative path), one elsewhere.
    let green = dir.path().join("green");
    std::fs::create_dir(&green).unwrap();
    for f in ["model.pt", "manifest.json"] {
        std::fs::copy(models.join("green-threshold").join(f), green.join(f)).unwrap();
    }
    std::fs::write(
        ens.join("ensemble.json"),
        format!(
            r#"{{"name": "pair", "members": [{{"model": "../green", "weight": 0.7}}, {{"model": "{}", "weight": 0.3}}]}}"#,
            models.join("bgr255-red").display()
        ),
    )
    .unwrap();
    let from_folder = Segmenter::load(&ens, Device::Cpu, Precision::F32).unwrap();
    assert_eq!(from_folder.members().count(), 2);
    let named = Segmenter::load_ensemble(
        &[
            (models.join("green-threshold"), 0.7),
            (models.join("bgr255-red"), 0.3),
        ],
        Device::Cpu,
        Precision::F32,
    )
    .unwrap();
    assert_eq!(on_gradient(&from_folder), on_gradient(&named));

    std::fs::write(ens.join("ensemble.json"), r#"{"members": []}"#).unwrap();
    let e = Segmenter::load(&ens, Device::Cpu, Precision::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("ensemble.json") && e.contains("at least one model"),
        "{e}"
    );
}

/// A short batch run at its buffer's full shape (as on CUDA, where a new
/// shape would cost cuDNN's search at a slide's end), white tiles after its
/// own, gives the bytes the short batch gives: the padding's results never
/// leave the device, nor reach the NaN guard.
#[test]
fn a_short_batch_padded_to_its_buffer_gives_the_same_bytes() {
    let mut model = load(&data("../../models/unet")).unwrap();
    let t = model.manifest().tile;
    let px = (t * t) as usize;
    let tile = |k: usize| -> Vec<u8> {
        (0..px * 3)
            .map(|i| ((i * (k + 5) / 9 + k * 70) % 256) as u8)
            .collect()
    };
    let run = |model: &Segmenter| {
        let mut staging = model.staging(5, t);
        for k in 0..2 {
            staging.tile_mut(k).copy_from_slice(&tile(k));
        }
        let (mut l, mut p) = (vec![7u8; 5 * px], vec![7u8; 5 * px]);
        let staging = model
            .submit(staging, 2, true)
            .unwrap()
            .wait_into(&mut l, Some(&mut p))
            .unwrap();
        assert_eq!(staging.capacity(), 5);
        (l, p)
    };
    let short = run(&model);
    model.set_pad_batches(true);
    let padded = run(&model);
    assert!(short.0 == padded.0, "labels differ");
    assert!(short.1 == padded.1, "probabilities differ");
    // Past the batch's two tiles nothing was written.
    assert!(padded.0[2 * px..].iter().all(|&v| v == 7));
    assert!(padded.1[2 * px..].iter().all(|&v| v == 7));
}
