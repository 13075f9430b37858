//! Hostile input in a folder (issue 13, first part): an image whose header
//! declares more pixels than memory allows, dangling and looping links named
//! like slides, wsiseg's own outputs in the input folder, and negative
//! numbers — each a one-line error naming the file (or ignored, for outputs),
//! the good slide still segmented, and the summary listing every slide.

mod common;

use std::path::Path;

use common::{error_lines, repo, run, stderr, threshold_model};

/// A PNG whose header declares `w`×`h` RGB pixels, with no real image data.
fn png_declaring(path: &Path, w: u32, h: u32) {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        c.extend_from_slice(&crc32(&crc_input).to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    std::fs::write(path, png).unwrap();
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn one_bad_file_never_stops_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    std::fs::create_dir(&input).unwrap();
    // 200000² RGB: 112 GiB decoded, more than half of any test machine's memory.
    png_declaring(&input.join("a-huge.png"), 200_000, 200_000);
    std::fs::copy(repo("tests/data/default.svs"), input.join("b-good.svs")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/slide.svs", input.join("c-dangling.svs")).unwrap();
    std::os::unix::fs::symlink("d-loop.svs", input.join("d-loop.svs")).unwrap();
    // Outputs of an earlier run into the input folder are not slides.
    std::fs::copy(repo("tests/data/default.svs"), input.join("old.mask.tiff")).unwrap();
    let model = threshold_model();
    // --out is the input folder itself.
    let args = [
        "segment",
        "in",
        "--model",
        model.to_str().unwrap(),
        "--out",
        "in",
        "--device",
        "cpu",
        "--formats",
        "png,report",
    ];
    let o = run(d, &args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 3, "{}", stderr(&o));
    assert!(
        errors[0].starts_with("error: in/a-huge.png: 200000×200000 pixels need 111.76 GiB decoded whole, more than half of this machine's memory"),
        "{}",
        errors[0]
    );
    assert_eq!(
        errors[1],
        "error: in/c-dangling.svs: a symbolic link to /nonexistent/slide.svs, which does not exist"
    );
    assert_eq!(
        errors[2],
        "error: in/d-loop.svs: a symbolic link that loops (it points back to itself through other links)"
    );
    assert!(input.join("b-good.mask.png").exists());
    assert!(
        stderr(&o).contains("1 wsiseg output file(s) ignored"),
        "{}",
        stderr(&o)
    );
    let summary = std::fs::read_to_string(input.join("summary.csv")).unwrap();
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{summary}");
    for (row, (name, status)) in rows.iter().zip([
        ("a-huge.png", "failed"),
        ("b-good.svs", "segmented"),
        ("c-dangling.svs", "failed"),
        ("d-loop.svs", "failed"),
    ]) {
        assert!(
            row.contains(name) && row.contains(&format!(",{status},")),
            "{row}"
        );
    }

    // The same command again: the good slide's new mask is not a slide either.
    let o = run(d, &args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("in: 2 slide(s), 2 wsiseg output file(s) ignored, 2 broken link(s)"),
        "{}",
        stderr(&o)
    );
}

/// `wsiseg segment default.svs --model green-threshold --out OUT --device
/// cpu EXTRA…` in `d`.
fn segment_default(d: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let slide = repo("tests/data/default.svs");
    let extra = [&["--device", "cpu"][..], extra].concat();
    common::segment(d, &slide, &threshold_model(), out, &extra)
}

#[test]
fn negative_numbers_get_wsisegs_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (flag, value, want) in [
        (
            "--mpp",
            "-1",
            "error: --mpp -1: must be a positive number of microns per pixel",
        ),
        (
            "--threshold",
            "-0.5",
            "-0.5 must lie strictly between 0 and 1",
        ),
    ] {
        let o = segment_default(d, "o", &[flag, value]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(want), "{flag} {value}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("unexpected argument"),
            "{}",
            stderr(&o)
        );
    }
}

/// `--mpp 1000` and `--mpp 40` on default.svs (one level, 0.499 µm/px)
/// would read each tile as a region 2000× or 80× its size: a one-line error
/// naming the slide before anything is read, no temporary file left.
#[test]
fn impossibly_coarse_resolutions_are_errors_not_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slide = repo("tests/data/default.svs");
    for mpp in ["1000", "40"] {
        let o = segment_default(d, "o", &["--mpp", mpp]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let errors = error_lines(&o);
        assert_eq!(errors.len(), 1, "{}", stderr(&o));
        assert!(
            errors[0].starts_with(&format!("error: {}: {mpp} µm/px is ", slide.display()))
                && errors[0].contains(
                    "coarser than the finest level it can be read from (level 0, 0.499 µm/px)"
                ),
            "{}",
            errors[0]
        );
        assert_eq!(common::files_in(&d.join("o")), Vec::<String>::new());
    }
    // 10 µm/px (20× reduced) is within reach and segments.
    let o = segment_default(d, "ok", &["--mpp", "10", "--formats", "png"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("ok/default.mask.png").exists());
}
