//! The end-to-end cases on CUDA, compared with the CPU (feature
//! `cuda-tests`; scripts/gpu_check.sh runs them, with the rest of the suite,
//! on a GPU server). Without a GPU they fail, saying so: they are never
//! skipped. What holds, and is asserted here:
//! - `auto` picks CUDA device 0 and says so; `cuda:N` past the last device is an error;
//! - the shipped model's masks on CUDA agree with the CPU's f32 masks on at
//!   least 99.9% of pixels in f16 and bf16, and in f32 too (cuDNN may use
//!   TF32 and other algorithms than the CPU's, so f32 is not bit-identical);
//! - the threshold model (elementwise arithmetic) gives the exact mask in f32;
//! - the pipelined engine on CUDA (overlapped batches, page-locked buffers,
//!   the last batch padded to full size) finds the held-out synthetic tumor
//!   as well as the CPU does;
//! - `bench` on CUDA: its figures stand in the same sane ratios;
//! - `--decode gpu` (nvJPEG, tiles cut on the device) gives masks that agree
//!   with the CPU decoder's on ≥ 99.9% of pixels and says so in the report;
//!   a corrupt tile there is the CPU path's one error line.

mod common;

use std::path::Path;

use common::{differing, json, read_mask, repo, run_ok, stderr, synth, threshold_model, unet};
use image::GrayImage;

fn gpus() -> usize {
    let n = wsiseg_infer::cuda_device_count();
    assert!(
        n > 0,
        "cuda-tests need a CUDA GPU; libtorch sees none (CUDA support: {:?})",
        wsiseg_infer::load_cuda_support()
    );
    n
}

/// `segment` of `slide` into `dir/out` with extra arguments; the mask and the log.
fn segment(
    dir: &Path,
    slide: &Path,
    model: &Path,
    out: &str,
    extra: &[&str],
) -> (GrayImage, String) {
    let mut args = vec![
        "segment".to_string(),
        slide.display().to_string(),
        "--model".into(),
        model.display().to_string(),
        "--out".into(),
        out.into(),
        "--formats".into(),
        "png,report".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = run_ok(dir, &args);
    let stem = slide.file_stem().unwrap().to_str().unwrap();
    (
        read_mask(&dir.join(out).join(format!("{stem}.mask.png"))),
        stderr(&o),
    )
}

fn agreement(a: &GrayImage, b: &GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    1.0 - differing(a.as_raw(), b.as_raw()) as f64 / a.as_raw().len() as f64
}

#[test]
fn auto_runs_on_cuda_and_says_so() {
    let n = gpus();
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = segment(
        dir.path(),
        &repo("tests/data/default.svs"),
        &unet(),
        "auto",
        &[],
    );
    assert!(log.contains("libtorch CUDA support loaded"), "{log}");
    assert!(log.contains(&format!("{n} CUDA device(s)")), "{log}");
    assert!(
        log.contains("running on cuda:0") && log.contains(" in f16"),
        "{log}"
    );
    let report = json(&dir.path().join("auto/default.report.json"));
    assert_eq!(
        report["parameters"]["device"], "cuda:0",
        "the device that ran, not the request"
    );

    let o = common::run(
        dir.path(),
        &[
            "segment",
            repo("tests/data/default.svs").to_str().unwrap(),
            "--model",
            unet().to_str().unwrap(),
            "--out",
            "beyond",
            "--device",
            &format!("cuda:{n}"),
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "--device cuda:{n}: this machine has {n} CUDA device(s)"
        )),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("beyond").exists());
}

#[test]
fn shipped_model_on_cuda_agrees_with_the_cpu() {
    gpus();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = repo("tests/data/default.svs");
    for level in [None, Some("0")] {
        let mut at = vec![];
        if let Some(l) = level {
            at.extend(["--level", l]);
        }
        let name = level.map_or("mpp", |_| "l0");
        let cpu_args = [&at[..], &["--device", "cpu"]].concat();
        let (cpu, _) = segment(d, &slide, &unet(), &format!("{name}-cpu"), &cpu_args);
        for precision in ["f16", "bf16", "f32"] {
            let args = [&at[..], &["--device", "cuda", "--precision", precision]].concat();
            let (gpu, log) = segment(d, &slide, &unet(), &format!("{name}-{precision}"), &args);
            assert!(log.contains(&format!("in {precision}")), "{log}");
            let a = agreement(&gpu, &cpu);
            eprintln!(
                "default.svs ({name}, {}×{}): cuda {precision} vs cpu f32 agree on {:.4}%",
                cpu.width(),
                cpu.height(),
                100.0 * a
            );
            assert!(a >= 0.999, "cuda {precision} vs cpu f32: {:.4}%", 100.0 * a);
        }
    }
}

#[test]
fn threshold_model_on_cuda_gives_the_exact_mask() {
    gpus();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = repo("tests/data/default.svs");
    let (cpu, _) = segment(
        d,
        &slide,
        &threshold_model(),
        "cpu",
        &["--level", "0", "--device", "cpu"],
    );
    let (gpu, _) = segment(
        d,
        &slide,
        &threshold_model(),
        "gpu",
        // The host's JPEG decoder, as the CPU run's: the arithmetic alone
        // is compared (nvJPEG's pixels: nvjpeg_tiles_agree_with_the_cpu_decoders).
        &[
            "--level",
            "0",
            "--device",
            "cuda",
            "--precision",
            "f32",
            "--decode",
            "cpu",
        ],
    );
    assert_eq!(differing(gpu.as_raw(), cpu.as_raw()), 0);
    let (half, _) = segment(
        d,
        &slide,
        &threshold_model(),
        "f16",
        &["--level", "0", "--device", "cuda"],
    );
    assert!(agreement(&half, &cpu) >= 0.999);
}

/// Held-out seed 101: the engine on CUDA (batches of 32, two in flight, the
/// last one padded to full size) finds the tumor as the CPU does.
#[test]
fn held_out_synthetic_slide_on_cuda() {
    gpus();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "101", "8192x8192");
    let (cpu, _) = segment(d, &slide, &unet(), "cpu", &["--device", "cpu"]);
    let (gpu, _) = segment(d, &slide, &unet(), "gpu", &["--device", "cuda"]);
    let a = agreement(&gpu, &cpu);
    eprintln!("synth-101: cuda f16 vs cpu f32 agree on {:.4}%", 100.0 * a);
    assert!(a >= 0.999, "{:.4}%", 100.0 * a);
    for out in ["cpu", "gpu"] {
        run_ok(d, &["eval", "--pred", out, "--truth", "slides/truth"]);
        let dice = json(&d.join(out).join("eval.json"))["slides"][0]["classes"]["tumor"]["dice"]
            .as_f64()
            .unwrap();
        eprintln!("synth-101 on {out}: tumor Dice {dice:.4}");
        assert!(dice >= 0.90, "{out}: Dice {dice}");
    }
}

#[test]
fn bench_on_cuda_prints_figures_in_sane_ratios() {
    gpus();
    let dir = tempfile::tempdir().unwrap();
    let v = common::bench(
        dir.path(),
        &[
            "--size",
            "8192x8192",
            "--sample-tiles",
            "100",
            "--device",
            "cuda",
        ],
        &unet(),
    );
    let f = |k: &str| {
        v[k].as_f64()
            .filter(|x| *x > 0.0)
            .unwrap_or_else(|| panic!("{k}: {}", v[k]))
    };
    assert!(v["device"].as_str().unwrap().starts_with("cuda:0"));
    assert!(f("e2e_vs_model_only") <= 1.05);
    assert!(f("e2e_tiles_s") <= f("e2e_inference_tiles_s"));
    // The read and decode figures are there (`f` checks each is positive).
    // No bound on their ratio: on ~70 slide tiles over 14 threads each
    // timing is a millisecond or two, and an H100 server gave 0.82, 1.15 and
    // 2.03 on one build: timing noise, not a property to test.
    f("read_vs_raw_decode");
    f("raw_jpeg_decode_mp_s");
}

/// nvJPEG (`--decode gpu`) against the host's decoder, both on CUDA in f32:
/// the threshold model (a pixel's own green byte) shows decoder differences
/// undiluted; the shipped model's masks. The report names nvJPEG and no
/// batch fell back to the host.
#[test]
fn nvjpeg_tiles_agree_with_the_cpu_decoders() {
    gpus();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "102", "8192x8192");
    let aperio = repo("tests/data/default.svs");
    for (slide, model, extra) in [
        (
            &slide,
            threshold_model(),
            &["--level", "0", "--tile", "512"][..],
        ),
        (&slide, unet(), &[][..]),
        // RGB components (Aperio), decoded by nvJPEG as planes.
        (&aperio, threshold_model(), &["--level", "0"][..]),
    ] {
        let stem = slide.file_stem().unwrap().to_str().unwrap();
        let name = format!("{stem}-{}", model.file_name().unwrap().to_str().unwrap());
        let run = |decode: &str| {
            let out = format!("{name}-{decode}");
            let args = [
                &["--device", "cuda", "--precision", "f32", "--decode", decode][..],
                extra,
            ]
            .concat();
            let (mask, _) = segment(d, slide, &model, &out, &args);
            (
                mask,
                json(&d.join(&out).join(format!("{stem}.report.json"))),
            )
        };
        let (cpu, _) = run("cpu");
        let (gpu, report) = run("gpu");
        let by = report["working_level"]["decoded_by"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(by.starts_with("gpu: nvJPEG"), "{by}");
        assert_eq!(report["working_level"]["device_decode_fallbacks"], 0);
        assert!(
            report["working_level"]["tiles_decoded_on_device"]
                .as_u64()
                .unwrap()
                > 0
        );
        let a = agreement(&gpu, &cpu);
        eprintln!(
            "{name}: nvJPEG ({by}) vs CPU decoder masks agree on {:.4}%",
            100.0 * a
        );
        assert!(a >= 0.999, "{name}: {:.4}%", 100.0 * a);
    }
}

/// A zeroed stored tile with `--decode gpu`: one error line naming the
/// slide, level and tile (the CPU path's), no file; with `--bad-tiles
/// background` the run completes and lists it.
#[test]
fn a_corrupt_tile_with_nvjpeg_is_the_cpu_paths_error() {
    gpus();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = synth(d, "103", "8192x8192");
    let range = common::tile_bytes(&slide, 0, 32 * 16 + 16);
    let mut bytes = std::fs::read(&slide).unwrap();
    bytes[range].fill(0);
    std::fs::write(&slide, bytes).unwrap();
    let model = threshold_model();
    let base = [
        "--level", "0", "--tile", "512", "--device", "cuda", "--decode", "gpu",
    ];
    let o = common::segment(d, &slide, &model, "f", &base);
    assert!(!o.status.success());
    let e = common::error_lines(&o);
    assert_eq!(e.len(), 1, "{}", stderr(&o));
    assert!(
        e[0].contains("synth-103.svs: corrupt or unreadable slide (level 0, JPEG tile 528"),
        "{}",
        e[0]
    );
    assert_eq!(common::files_in(&d.join("f")), Vec::<String>::new());
    let o = common::segment(
        d,
        &slide,
        &model,
        "b",
        &[&base[..], &["--bad-tiles", "background"]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&d.join("b/synth-103.report.json"));
    assert_eq!(r["bad_tiles"][0]["tile"], 528);
}
