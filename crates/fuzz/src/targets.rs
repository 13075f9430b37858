//! What the child process runs on each input.

use std::io::{BufRead, Write};
use std::path::Path;

use wsiseg_slide::{Rect, Size, Slide};
use wsiseg_write::{PyramidOptions, PyramidWriter, Reduce, TileCompression};

/// The targets, named as the seed corpus folders.
pub const TARGETS: &[&str] = &["slide", "manifest", "annotations"];

/// Plain images are decoded within this much (a band of rows needs far
/// less; more is an error, not an allocation).
const DECODE_LIMIT: u64 = 512 << 20;

/// Serves `TARGET\tPATH` lines from stdin: answers `ok`, `err MESSAGE` (the
/// input was refused with an error: fine) or `panic MESSAGE` (a bug).
pub fn child() -> i32 {
    wsiseg_slide::set_decode_limit(DECODE_LIMIT);
    std::panic::set_hook(Box::new(|_| {}));
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return 0 };
        let Some((target, path)) = line.split_once('\t') else {
            continue;
        };
        let path = Path::new(path);
        let result = std::panic::catch_unwind(|| match target {
            "slide" => slide(path),
            "manifest" => manifest(path),
            "annotations" => annotations(path),
            other => Err(format!("unknown target {other}")),
        });
        let answer = match result {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(e)) => format!("err {}", e.replace('\n', " ")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("panic {}", msg.replace('\n', " "))
            }
        };
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return 0;
        }
    }
    0
}

/// Up to three rectangles of at most 256² inside a level: its corners and centre.
fn probes(size: Size) -> Vec<Rect> {
    let (w, h) = (size.w.min(256), size.h.min(256));
    let at = |x: u32, y: u32| Rect::new(i64::from(x), i64::from(y), w, h);
    vec![
        at(0, 0),
        at((size.w - w) / 2, (size.h - h) / 2),
        at(size.w - w, size.h - h),
    ]
}

/// Opens a slide or image, reads every level a little, makes its thumbnail,
/// and round-trips small images through the TIFF writer.
fn slide(path: &Path) -> Result<(), String> {
    // The DICOM header reader a folder run groups series with (any bytes:
    // an answer or an error, never a panic or an unbounded read).
    let _ = wsiseg_slide::DicomInstance::read(path);
    let s = wsiseg_slide::open(path).map_err(|e| e.to_string())?;
    for (i, level) in s.levels().iter().enumerate().take(6) {
        if level.size.w == 0 || level.size.h == 0 {
            return Err(format!("level {i} is empty"));
        }
        for r in probes(level.size) {
            let img = s.read_inside(i as u32, r).map_err(|e| e.to_string())?;
            assert_eq!(img.dimensions(), (r.w, r.h), "level {i} read of {r:?}");
        }
    }
    let smallest = s.levels().last().expect("at least one level").size;
    if smallest.area() <= 16 << 20 {
        let t = wsiseg_slide::thumbnail(s.as_ref(), 256).map_err(|e| e.to_string())?;
        assert!(t.width().max(t.height()) <= 256.max(smallest.w.max(smallest.h)));
    }
    let level0 = s.levels()[0].size;
    if level0.w <= 512 && level0.h <= 512 {
        round_trip(s.as_ref(), level0)?;
    }
    Ok(())
}

/// Level 0 written as a lossless pyramid reads back pixel for pixel.
fn round_trip(s: &dyn Slide, size: Size) -> Result<(), String> {
    let pixels = s
        .read_inside(0, Rect::new(0, 0, size.w, size.h))
        .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("wsiseg-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = dir.join("round-trip.tiff");
    let _ = std::fs::remove_file(&out);
    let opts = PyramidOptions {
        channels: 3,
        tile: 64,
        step: 2,
        smallest: 64,
        compression: TileCompression::Deflate,
        reduce: Reduce::Average,
        mpp: None,
        description: None,
    };
    let mut w = PyramidWriter::create(&out, size, opts).expect("the writer starts");
    w.push_rows(pixels.as_raw())
        .expect("the writer takes the rows");
    w.finish().expect("the writer finishes");
    let back = wsiseg_slide::open(&out).expect("the written pyramid opens");
    assert_eq!(back.levels()[0].size, size, "round trip size");
    let again = back
        .read_inside(0, Rect::new(0, 0, size.w, size.h))
        .expect("the written pyramid reads");
    assert!(
        again.as_raw() == pixels.as_raw(),
        "round trip pixels differ"
    );
    let _ = std::fs::remove_file(&out);
    Ok(())
}

/// ASAP XML / GeoJSON ground truth: read (every class named, so unknown
/// names are labelled rather than refused), drawn at 97×61 pixels of 37.5
/// level-0 pixels and in two uneven bands: the same rows, only the labels
/// given.
fn annotations(path: &Path) -> Result<(), String> {
    let labels = wsiseg_eval::Labels {
        explicit: Vec::new(),
        classes: vec!["background".into(), "tumor".into(), "other".into()],
    };
    let a = wsiseg_eval::Annotations::read(path, &labels).map_err(|e| e.to_string())?;
    let mut raster = a.raster((97, 61), 37.5);
    let whole = raster.rows(0, 61);
    let mut bands = raster.rows(0, 23);
    bands.extend(raster.rows(23, 38));
    assert_eq!(whole.len(), 97 * 61, "rows drawn");
    assert!(bands == whole, "banded rows differ from the whole");
    assert!(whole.iter().all(|&v| v <= 2), "a label beyond the classes");
    Ok(())
}

/// The model manifest parser.
fn manifest(path: &Path) -> Result<(), String> {
    wsiseg_infer::Manifest::read(path)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
