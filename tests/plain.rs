//! Plain PNG and JPEG images are read as a stream of row bands: a 30000²
//! PNG or baseline JPEG segments within the memory of the same picture as a
//! pyramidal slide, and their masks agree with the pyramid's.

mod common;

use common::{differing, json, read_mask, run_ok, unet};

/// `wsiseg synth --plain png,jpeg` writes one picture three ways: a
/// pyramidal SVS (JPEG tiles, levels 1× and 4×, 0.5 µm/px recorded), a
/// PNG and a baseline JPEG (one level, no resolution). Segmented at 1 µm/px
/// with the shipped UNet (the pyramid's level 0 reduced 2×; the plain
/// images given `--slide-mpp 0.5`, their 2× level made while streaming),
/// the plain images' peak resident memory is at most 1.25× the pyramid's
/// and their masks agree on at least 99.9% of pixels.
///
/// Both read level 0: a pyramid's reduced levels are JPEG-compressed again
/// (4:2:0 chroma at a quarter of the size), which alone moves 0.3% of the
/// mask's pixels; that is the pyramid's picture, not the reader's.
#[test]
fn plain_png_and_jpeg_segment_in_the_memory_of_a_pyramid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(
        d,
        &[
            "synth",
            "--out",
            "s",
            "--seed",
            "31",
            "--size",
            "30000x30000",
            "--mpp",
            "0.5",
            "--quality",
            "95",
            "--plain",
            "png,jpeg",
        ],
    );
    let model = unet();
    let mut results = Vec::new();
    for (file, extra) in [
        ("synth-31.svs", &[][..]),
        ("synth-31.png", &["--slide-mpp", "0.5"][..]),
        ("synth-31.jpg", &["--slide-mpp", "0.5"][..]),
    ] {
        let mut args = vec![
            "segment".to_string(),
            format!("s/{file}"),
            "--model".into(),
            model.to_str().unwrap().into(),
            "--out".into(),
            "out".into(),
            "--device".into(),
            "cpu".into(),
            "--formats".into(),
            "png,report".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_ok(d, &args);
        let stem = file.split('.').collect::<Vec<_>>().join("-");
        // Outputs are named by stem: each run goes to its own folder.
        let out = d.join(format!("out-{stem}"));
        std::fs::rename(d.join("out"), &out).unwrap();
        let report = json(&out.join("synth-31.report.json"));
        assert!(report["tiles"]["run"].as_u64().unwrap() > 1000, "{report}");
        let peak = report["peak_rss_mib"].as_f64().unwrap();
        let mask = read_mask(&out.join("synth-31.mask.png"));
        assert_eq!(mask.dimensions(), (15000, 15000), "{file}");
        results.push((file, peak, mask));
    }
    let (_, pyramid_peak, pyramid_mask) = &results[0];
    for (file, peak, mask) in &results[1..] {
        let agree = 1.0 - differing(mask, pyramid_mask) as f64 / mask.len() as f64;
        eprintln!(
            "{file}: peak RSS {peak:.0} MiB vs the pyramid's {pyramid_peak:.0} MiB ({:.3}×); masks agree on {:.4}%",
            peak / pyramid_peak,
            100.0 * agree
        );
        assert!(
            *peak <= 1.25 * pyramid_peak,
            "{file}: peak RSS {peak:.0} MiB vs {pyramid_peak:.0} MiB for the pyramid"
        );
        assert!(
            agree >= 0.999,
            "{file}: masks agree on {:.4}%",
            100.0 * agree
        );
    }
}
