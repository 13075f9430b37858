//! Hostile and huge input in a folder (issue 13): images whose headers
//! declare more pixels than memory could hold, a 50000² PNG of zeros, a
//! 200000² sparse tiled TIFF, dangling and looping links named like slides,
//! wsiseg's own outputs in the input folder, and negative numbers — each
//! segmented in bounded memory or a one-line error naming the file (or
//! ignored, for outputs), the good slide still segmented, and the summary
//! listing every slide.

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
    // 200000² RGB (112 GiB decoded) with no image data: streamed, it fails
    // at its first row.
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
        errors[0].starts_with("error: in/a-huge.png: corrupt or unreadable slide (row 0: PNG: "),
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
        ("a-huge.png", "failed,failed"),
        ("b-good.svs", "done,segmented"),
        ("c-dangling.svs", "failed,failed"),
        ("d-loop.svs", "failed,failed"),
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

/// Two slides whose outputs would have one name (`gray.jpg`, `gray.png`)
/// fail, naming each other; the folder's other slides run and the summary
/// has a row for each of the three.
#[test]
fn a_name_collision_fails_its_pair_not_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(repo("tests/data/default.svs"), input.join("b.svs")).unwrap();
    std::fs::write(input.join("gray.jpg"), b"not read").unwrap();
    std::fs::write(input.join("gray.png"), b"not read").unwrap();
    let model = threshold_model();
    let o = run(
        d,
        &[
            "segment",
            "in",
            "--model",
            model.to_str().unwrap(),
            "--out",
            "out",
            "--device",
            "cpu",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    let pair = "would write outputs of the same name: move one of them to another folder";
    assert_eq!(
        errors,
        [
            format!("error: in/gray.jpg and in/gray.png {pair}"),
            format!("error: in/gray.png and in/gray.jpg {pair}"),
        ],
        "{}",
        stderr(&o)
    );
    assert!(d.join("out/b.mask.png").exists());
    let summary = common::json(&d.join("out/summary.json"));
    let rows: Vec<(String, String)> = summary["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let row = |n: &str, s: &str| (n.to_string(), s.to_string());
    assert_eq!(
        rows,
        [
            row("b", "done"),
            row("gray.jpg", "failed"),
            row("gray.png", "failed")
        ]
    );
}

/// A 8-bit grey PNG of `w`×`h` zeros (a few MB however large), streamed.
fn zero_png(path: &Path, w: u32, h: u32) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, w, h);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_compression(png::Compression::Fast);
    let mut stream = encoder
        .write_header()
        .unwrap()
        .into_stream_writer()
        .unwrap();
    let row = vec![0u8; w as usize];
    for _ in 0..h {
        std::io::Write::write_all(&mut stream, &row).unwrap();
    }
    stream.finish().unwrap();
}

/// A small baseline JPEG whose frame header is patched to declare `w`×`h`:
/// its data ends long before.
fn jpeg_declaring(path: &Path, w: u16, h: u16) {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(16, 16, image::Rgb([200, 120, 160]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let sof = bytes.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// A `side`² RGB tiled TIFF (256² tiles) with no tile stored: every tile
/// offset and byte count is 0 (sparse), a few MB.
fn sparse_tiff(path: &Path, side: u32) {
    let tiles = side.div_ceil(256).pow(2) as usize;
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    let entries: [(u16, u16, u32, u32); 11] = [
        (256, 4, 1, side),         // ImageWidth
        (257, 4, 1, side),         // ImageLength
        (258, 3, 1, 8),            // BitsPerSample (one value: all 8)
        (259, 3, 1, 1),            // Compression: none
        (262, 3, 1, 2),            // RGB
        (277, 3, 1, 3),            // SamplesPerPixel
        (284, 3, 1, 1),            // PlanarConfiguration: contiguous
        (322, 3, 1, 256),          // TileWidth
        (323, 3, 1, 256),          // TileLength
        (324, 4, tiles as u32, 0), // TileOffsets (array, offset patched)
        (325, 4, tiles as u32, 0), // TileByteCounts
    ];
    let ifd_len = 2 + entries.len() * 12 + 4;
    let array_at = 8 + ifd_len as u32;
    t.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        let value = match tag {
            324 => array_at,
            325 => array_at + 4 * tiles as u32,
            _ => value,
        };
        if kind == 3 {
            t.extend_from_slice(&(value as u16).to_le_bytes());
            t.extend_from_slice(&[0, 0]);
        } else {
            t.extend_from_slice(&value.to_le_bytes());
        }
    }
    t.extend_from_slice(&0u32.to_le_bytes());
    t.resize(t.len() + 8 * tiles, 0);
    std::fs::write(path, t).unwrap();
}

/// Huge inputs each segment within `--max-memory` or fail with a one-line
/// error naming the file, never a panic or an abort; the good slide after
/// them is segmented and the summary lists all four.
#[test]
fn huge_inputs_segment_in_bounded_memory_or_fail_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    std::fs::create_dir(&input).unwrap();
    zero_png(&input.join("a-zeros.png"), 50_000, 50_000);
    jpeg_declaring(&input.join("b-header.jpg"), 65_000, 65_000);
    sparse_tiff(&input.join("c-sparse.tif"), 200_000);
    std::fs::copy(repo("tests/data/default.svs"), input.join("d-good.svs")).unwrap();
    let model = threshold_model();
    let o = run(
        d,
        &[
            "segment",
            "in",
            "--model",
            model.to_str().unwrap(),
            "--out",
            "out",
            "--device",
            "cpu",
            "--formats",
            "png,report",
            "--max-memory",
            "3G",
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 2, "{err}");
    assert!(
        errors[0].starts_with("error: in/b-header.jpg: corrupt or unreadable slide (row 0: JPEG: "),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with(
            "error: in/c-sparse.tif: its smallest level is 200000×200000 pixels (40.0 gigapixels)"
        ),
        "{}",
        errors[1]
    );
    // The zeros are no tissue: segmented, no tile run, within the budget.
    let report = common::json(&d.join("out/a-zeros.report.json"));
    assert_eq!(report["tiles"]["run"], 0, "{report}");
    let peak = report["peak_rss_mib"].as_f64().unwrap();
    assert!(peak < 3072.0, "peak {peak} MiB over --max-memory 3G");
    assert!(d.join("out/a-zeros.mask.png").exists());
    assert!(d.join("out/d-good.mask.png").exists());
    let summary = std::fs::read_to_string(d.join("out/summary.csv")).unwrap();
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    for (row, (name, status)) in rows.iter().zip([
        ("a-zeros.png", "done,segmented"),
        ("b-header.jpg", "failed,failed"),
        ("c-sparse.tif", "failed,failed"),
        ("d-good.svs", "done,segmented"),
    ]) {
        assert!(
            row.contains(name) && row.contains(&format!(",{status},")),
            "{row}"
        );
    }
    assert_eq!(rows.len(), 4, "{summary}");
}

/// `wsiseg segment default.svs --model green-threshold --out OUT --device
/// cpu EXTRA…` in `d`.
fn segment_default(d: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let slide = repo("tests/data/default.svs");
    let extra = [&["--device", "cpu"][..], extra].concat();
    common::segment(d, &slide, &threshold_model(), out, &extra)
}

/// Sizes from a manifest or an option that no machine could hold are
/// refused before anything is allocated (an allocation failure aborts the
/// process), in one line naming where the size came from.
#[test]
fn sizes_no_machine_holds_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("huge-tile");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(threshold_model().join("model.pt"), model.join("model.pt")).unwrap();
    let mut manifest = common::json(&threshold_model().join("manifest.json"));
    manifest["tile"] = serde_json::json!(65536);
    std::fs::write(model.join("manifest.json"), manifest.to_string()).unwrap();
    let slide = repo("tests/data/default.svs");
    let o = common::segment(d, &slide, &model, "t", &["--device", "cpu"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].contains("manifest.json")
            && errors[0]
                .contains("65536 pixels is more than the largest tile wsiseg runs (16384 pixels)"),
        "{}",
        errors[0]
    );
    // A batch whose buffers alone exceed the memory budget (here 2 GiB).
    let o = segment_default(d, "b", &["--batch", "100000", "--max-memory", "2G"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].starts_with("error: --batch 100000: a batch of 100000 tiles of ")
            && errors[0].contains("more than the memory budget (2.0 GiB); a batch of "),
        "{}",
        errors[0]
    );
    assert_eq!(common::files_in(&d.join("b")), Vec::<String>::new());
    // A tile that alone exceeds the budget, whatever the batch.
    let o = segment_default(
        d,
        "c",
        &["--tile", "16384", "--batch", "1", "--max-memory", "1G"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].starts_with("error: --tile 16384: one tile of 16384 px needs at least ")
            && errors[0].ends_with("more than the memory budget (1.0 GiB)"),
        "{}",
        errors[0]
    );
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
        (
            "--slide-mpp",
            "-0.25",
            "error: --slide-mpp -0.25: must be a positive number of µm per pixel",
        ),
        (
            "--max-memory",
            "-2G",
            "'-2G' is not a memory size such as 12G, 800M or 50%",
        ),
        (
            "--max-memory",
            "0%",
            "'0%': a share of memory must be above 0% and at most 100%",
        ),
        ("--max-memory", "10M", "'10M': wsiseg needs at least 64M"),
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
                )
                && errors[0].ends_with("; choose a finer --mpp, or --level"),
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

/// A slide whose run takes wsiseg over `--max-memory` is stopped with one
/// error line naming it, the budget and what to do; nothing is left in the
/// output folder but the summary, which lists it as failed. The same slide
/// under a budget it fits in is segmented, and the report records both the
/// budget and the peak.
#[test]
fn going_over_max_memory_stops_the_slide_not_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(repo("tests/data/default.svs"), input.join("default.svs")).unwrap();
    let unet = common::unet();
    let segment = |out: &str, budget: &str| {
        run(
            d,
            &[
                "segment",
                "in",
                "--model",
                unet.to_str().unwrap(),
                "--out",
                out,
                "--device",
                "cpu",
                "--max-memory",
                budget,
            ],
        )
    };
    // The UNet alone holds more than 300 MiB once loaded.
    let o = segment("small", "300M");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].starts_with("error: in/default.svs: wsiseg's memory reached ")
            && errors[0].contains("MiB, more than --max-memory (300 MiB); the slide was stopped"),
        "{}",
        errors[0]
    );
    assert_eq!(
        common::files_in(&d.join("small")),
        ["index.html", "summary.csv", "summary.json"]
    );
    let summary = std::fs::read_to_string(d.join("small/summary.csv")).unwrap();
    assert!(summary.contains(",failed,failed,"), "{summary}");
    let o = segment("fits", "4G");
    assert!(o.status.success(), "{}", stderr(&o));
    let report = common::json(&d.join("fits/default.report.json"));
    assert_eq!(report["max_memory_mib"], 4096.0);
    assert!(report["peak_rss_mib"].as_f64().unwrap() < 4096.0);
}
