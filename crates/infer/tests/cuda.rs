//! The model on CUDA (feature `cuda-tests`; scripts/gpu_check.sh runs it on
//! a GPU server): page-locked staging buffers, batches overlapped on the
//! device and collected by their own events, all agreeing with the CPU.
//! Without a GPU these tests fail, saying so: they are never skipped.

use std::path::{Path, PathBuf};

use wsiseg_infer::{cuda_device_count, Device, Precision, Segmenter};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

fn cuda() -> Device {
    assert!(
        cuda_device_count() > 0,
        "cuda-tests need a CUDA GPU; libtorch sees none (CUDA support: {:?})",
        wsiseg_infer::load_cuda_support()
    );
    Device::Cuda(0)
}

/// Tiles of tissue-like texture, different from each other.
fn tiles(n: usize, t: u32) -> Vec<u8> {
    let px = (t * t) as usize;
    (0..n * px * 3)
        .map(|i| {
            let (k, p) = (i / (px * 3), (i / 3) % px);
            let (x, y) = ((p % t as usize) as f32, (p / t as usize) as f32);
            let v = 150.0
                + 60.0 * ((x / (7.0 + k as f32)).sin() * (y / 11.0).cos())
                + (i % 3) as f32 * 20.0;
            v.clamp(0.0, 255.0) as u8
        })
        .collect()
}

fn agreement(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).filter(|(p, q)| p == q).count() as f64 / a.len() as f64
}

/// Two batches queued at once from page-locked buffers, each collected by
/// its own event, give the labels and tumor probabilities of one batch at a
/// time on the same device (identical), and agree with the CPU in f32.
#[test]
fn overlapped_batches_on_cuda_match_one_at_a_time_and_the_cpu() {
    let device = cuda();
    let unet = data("../../models/unet");
    for precision in [Precision::F16, Precision::F32] {
        let gpu = Segmenter::load(&unet, device, precision).unwrap();
        let cpu = Segmenter::load(&unet, Device::Cpu, Precision::F32).unwrap();
        let t = gpu.manifest().tile;
        let px = (t * t) as usize;
        let (n, input) = (6, tiles(6, t));
        gpu.warm_up(n, t).unwrap();

        let one_at_a_time = |model: &Segmenter| {
            let (mut l, mut p) = (vec![0u8; n * px], vec![0u8; n * px]);
            let mut s = model.staging(n, t);
            s.tiles_mut(n).copy_from_slice(&input);
            model
                .submit(s, n, true)
                .unwrap()
                .wait_into(&mut l, Some(&mut p))
                .unwrap();
            (l, p)
        };
        let (want_l, want_p) = one_at_a_time(&gpu);

        let (mut a, mut b) = (gpu.staging(n, t), gpu.staging(n, t));
        assert!(
            a.is_page_locked() && b.is_page_locked(),
            "CUDA staging is page-locked"
        );
        a.tiles_mut(n).copy_from_slice(&input);
        b.tiles_mut(n).copy_from_slice(&input);
        let first = gpu.submit(a, n, true).unwrap();
        let second = gpu.submit(b, n, true).unwrap();
        assert!(
            first.waits_for_this_batch_only(),
            "CUDA events are available"
        );
        for flight in [first, second] {
            let (mut l, mut p) = (vec![7u8; n * px], vec![7u8; n * px]);
            flight.wait_into(&mut l, Some(&mut p)).unwrap();
            assert!(
                l == want_l,
                "{precision}: overlapped labels differ from one at a time"
            );
            assert!(p == want_p, "{precision}: overlapped probabilities differ");
        }

        let (cpu_l, cpu_p) = one_at_a_time(&cpu);
        let labels = agreement(&want_l, &cpu_l);
        // A pixel whose tumor probability is within f16's rounding of the
        // decision (0.5 ± 2/255) may fall either way; every other pixel's
        // label must agree. (This texture puts ~0.3% of pixels there.)
        let (mut decided, mut same) = (0usize, 0usize);
        for ((a, b), p) in want_l.iter().zip(&cpu_l).zip(&cpu_p) {
            if !(125..=130).contains(p) {
                decided += 1;
                same += usize::from(a == b);
            }
        }
        let decided_agree = same as f64 / decided as f64;
        let close = want_p
            .iter()
            .zip(&cpu_p)
            .filter(|(a, b)| a.abs_diff(**b) <= 2)
            .count() as f64
            / cpu_p.len() as f64;
        eprintln!(
            "cuda {precision} vs cpu f32: labels agree on {:.4}% ({:.4}% away from the decision), probabilities within 2/255 on {:.4}%",
            100.0 * labels,
            100.0 * decided_agree,
            100.0 * close
        );
        assert!(2 * decided >= cpu_p.len(), "{decided} decided pixels");
        assert!(decided_agree >= 0.9999, "{precision}: {decided_agree}");
        if precision == Precision::F32 {
            assert!(labels >= 0.999, "{precision}: {labels}");
        }
        assert!(close >= 0.999, "{precision}: {close}");
    }
}

/// The threshold model is elementwise: on CUDA in f32 it labels exactly
/// green < 128, like the CPU.
#[test]
fn threshold_model_on_cuda_is_exact() {
    let model = Segmenter::load(&data("models/green-threshold"), cuda(), Precision::F32).unwrap();
    let (n, t) = (3usize, 8u32);
    let mut input = Vec::new();
    let mut want = Vec::new();
    for i in 0..n * 64 {
        let g = ((i * 37) % 256) as u8;
        input.extend_from_slice(&[200, g, 255 - g]);
        want.push(u8::from(g < 128));
    }
    let mut labels = vec![9u8; n * 64];
    model.segment(&input, n, t, &mut labels, None).unwrap();
    assert_eq!(labels, want);
}

/// A slide's last, short batch runs at the full batch's shape on CUDA (no
/// cuDNN search for a new shape at a slide's end): its tiles' labels agree
/// with the same tiles run as a batch of their own (≥ 99.9% of pixels; the
/// two shapes may pick different cuDNN algorithms), and nothing is written
/// past them.
#[test]
fn a_short_batch_on_cuda_runs_at_the_full_shape_and_agrees_with_its_own() {
    let device = cuda();
    let mut gpu = Segmenter::load(&data("../../models/unet"), device, Precision::F16).unwrap();
    let t = gpu.manifest().tile;
    let px = (t * t) as usize;
    let (capacity, n) = (8, 3);
    let input = tiles(n, t);
    let mut run = |pad: bool| {
        gpu.set_pad_batches(pad);
        let mut s = gpu.staging(capacity, t);
        s.tiles_mut(n).copy_from_slice(&input);
        let (mut l, mut p) = (vec![7u8; capacity * px], vec![7u8; capacity * px]);
        gpu.submit(s, n, true)
            .unwrap()
            .wait_into(&mut l, Some(&mut p))
            .unwrap();
        assert!(l[n * px..].iter().all(|&v| v == 7) && p[n * px..].iter().all(|&v| v == 7));
        l
    };
    let (padded, own) = (run(true), run(false));
    let a = agreement(&padded[..n * px], &own[..n * px]);
    assert!(a >= 0.999, "padded vs own shape: {a}");
}
