//! The direct JPEG tile reader against OpenSlide, on a real Aperio slide and
//! on a YCbCr 4:2:0 pyramid written here; and its shared tile cache.

// Test functions read as one scenario each.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use wsiseg_slide::{open_with, read_padded, Reader, Rect, Size};
use wsiseg_write::{PyramidOptions, PyramidWriter, Reduce, TileCompression};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

/// Tissue-like texture: smooth blobs plus fine detail, so that misplaced
/// tiles or rows show up as large differences.
fn texture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let blob = ((fx / 37.0).sin() * (fy / 23.0).cos() * 90.0) as i32;
        let fine = ((x * 7 + y * 13) % 16) as i32;
        Rgb([
            (150 + blob + fine).clamp(0, 255) as u8,
            (100 - blob / 2 + fine).clamp(0, 255) as u8,
            (180 + blob / 3).clamp(0, 255) as u8,
        ])
    })
}

/// A 3-level Aperio-style JPEG (YCbCr 4:2:0) pyramid, like wsiseg's synthetic slides.
fn jpeg_pyramid(dir: &Path, size: Size) -> PathBuf {
    jpeg_pyramid_described(dir, size, true)
}

/// The same pyramid; without an Aperio description OpenSlide reads it as a
/// generic tiled TIFF.
fn jpeg_pyramid_described(dir: &Path, size: Size, aperio: bool) -> PathBuf {
    let path = dir.join(if aperio { "p.svs" } else { "p.tiff" });
    let opts = PyramidOptions {
        channels: 3,
        tile: 256,
        step: 4,
        smallest: 300,
        compression: TileCompression::Jpeg { quality: 85 },
        reduce: Reduce::Average,
        mpp: Some(0.5),
        description: aperio.then(|| {
            format!(
                "Aperio Image Library wsiseg\r\n{}x{} (256x256) JPEG/RGB Q=85|AppMag = 20|MPP = 0.5",
                size.w, size.h
            )
        }),
    };
    let img = texture(size.w, size.h);
    let mut w = PyramidWriter::create(&path, size, opts).unwrap();
    w.push_rows(img.as_raw()).unwrap();
    w.finish().unwrap();
    path
}

fn max_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(p, q)| p.abs_diff(*q))
        .max()
        .unwrap_or(0)
}

/// Rectangles that start and end inside tiles, span tile borders, reach
/// past the level's right and bottom edges, and one that is a single pixel.
fn awkward_rects(level: Size) -> Vec<Rect> {
    let (w, h) = (i64::from(level.w), i64::from(level.h));
    vec![
        Rect::new(0, 0, 256, 256),
        Rect::new(-40, -40, 300, 300),
        Rect::new(100, 37, 333, 250),
        Rect::new(w - 200, h - 150, 400, 300),
        Rect::new(w / 2, h / 3, 1, 1),
        Rect::new(w / 3, 0, 20, level.h),
    ]
}

#[test]
fn direct_reads_match_openslide_up_to_decoder_rounding() {
    let dir = tempfile::tempdir().unwrap();
    // default.svs: Aperio photometric-RGB JPEG, 240-px tiles, from a scanner.
    // The pyramid: YCbCr 4:2:0 JPEG, 256-px tiles, three levels.
    // The generic one: the same pixels without an Aperio description.
    let pyramid = jpeg_pyramid(dir.path(), Size::new(1500, 1100));
    let generic = jpeg_pyramid_described(dir.path(), Size::new(1500, 1100), false);
    for (path, format, levels, bound) in [
        (data("default.svs"), "aperio", 1, 2u8),
        (pyramid, "aperio", 3, 4),
        (generic, "generic-tiff", 3, 4),
    ] {
        let direct = open_with(&path, Reader::Auto).unwrap();
        let openslide = open_with(&path, Reader::OpenSlide).unwrap();
        assert_eq!(direct.format(), format);
        let mut worst = 0;
        assert_eq!(direct.levels(), openslide.levels());
        assert_eq!(direct.levels().len(), levels);
        for level in 0..levels as u32 {
            assert!(
                direct.reads_directly(level),
                "{} level {level}",
                path.display()
            );
            assert!(!openslide.reads_directly(level));
            let size = direct.levels()[level as usize].size;
            for rect in awkward_rects(size) {
                let a = read_padded(direct.as_ref(), level, rect).unwrap();
                let b = read_padded(openslide.as_ref(), level, rect).unwrap();
                // IDCT rounding and, for 4:2:0, chroma upsampling: libjpeg-turbo
                // interpolates chroma ("fancy upsampling"), zune-jpeg differs slightly.
                let d = max_diff(&a, &b);
                assert!(
                    d <= bound,
                    "{} level {level} {rect:?}: differs by {d}",
                    path.display()
                );
                worst = worst.max(d);
            }
        }
        eprintln!("{format} {}: largest difference {worst}", path.display());
    }
}

/// Whatever the cache keeps or drops, and however many threads read at
/// once, a rectangle reads the same bytes.
#[test]
fn tile_cache_eviction_and_concurrency_do_not_change_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let path = jpeg_pyramid(dir.path(), Size::new(2000, 1300));
    let reference = open_with(&path, Reader::Auto).unwrap();
    let size = reference.levels()[0].size;
    // Overlapping 300-px reads on a 250-px stride, raster order.
    let rects: Vec<Rect> = (0..6)
        .flat_map(|r| (0..8).map(move |c| Rect::new(c * 250 - 25, r * 250 - 25, 300, 300)))
        .collect();
    let want: Vec<RgbImage> = rects
        .iter()
        .map(|r| read_padded(reference.as_ref(), 0, *r).unwrap())
        .collect();

    // Announced reads with a budget of one byte: every decoded tile is
    // dropped again at once, and reads decode what they need anew.
    let inside: Vec<Rect> = rects.iter().map(|r| r.clip_to(size).unwrap()).collect();
    let tiny = wsiseg_slide::DirectReader::new(&path, reference.levels(), [255; 3]).unwrap();
    tiny.plan_reads(0, &inside);
    tiny.cache().set_budget(1);
    for (r, w) in inside.iter().zip(&want) {
        let got = tiny.read(0, *r).unwrap().unwrap();
        let full = read_padded(reference.as_ref(), 0, *r).unwrap();
        assert_eq!(got.as_raw(), full.as_raw(), "{r:?}");
        assert!(tiny.cache().bytes() <= 256 * 256 * 3, "one tile at most");
        assert!(w.width() >= r.w);
    }

    // Announced reads with room: each JPEG tile is decoded once, kept from
    // its first read to its last, then dropped; nothing is left after the
    // last read, and at most the tiles between a first and a last read are
    // held at once (about two rows of them).
    let tiles = wsiseg_slide::JpegTiles::open(&path, 0).unwrap().unwrap();
    let touching: Vec<Vec<usize>> = inside
        .iter()
        .map(|r| tiles.tiles_touching(*r).collect())
        .collect();
    let mut first = std::collections::HashMap::new();
    let mut last = std::collections::HashMap::new();
    for (i, ts) in touching.iter().enumerate() {
        for &t in ts {
            first.entry(t).or_insert(i);
            last.insert(t, i);
        }
    }
    let alive_after = |i: usize| {
        first
            .keys()
            .filter(|t| first[t] <= i && i < last[t])
            .count()
    };
    let roomy = wsiseg_slide::DirectReader::new(&path, reference.levels(), [255; 3]).unwrap();
    roomy.plan_reads(0, &inside);
    for (i, r) in inside.iter().enumerate() {
        roomy.read(0, *r).unwrap().unwrap();
        assert_eq!(roomy.cache().len(), alive_after(i), "after read {i}");
    }
    let most = (0..inside.len()).map(alive_after).max().unwrap();
    assert!(
        (8..=24).contains(&most),
        "{most} tiles kept at once: about two rows of 8"
    );
    assert_eq!(
        roomy.cache().decodes(),
        first.len() as u64,
        "each tile decoded once"
    );
    assert!(
        roomy.cache().is_empty(),
        "every tile dropped after its last read"
    );

    // Unannounced reads keep nothing: every read decodes what it touches.
    let cold = wsiseg_slide::DirectReader::new(&path, reference.levels(), [255; 3]).unwrap();
    for r in &inside {
        cold.read(0, *r).unwrap().unwrap();
        assert!(cold.cache().is_empty());
    }
    let touches: usize = touching.iter().map(Vec::len).sum();
    assert_eq!(cold.cache().decodes(), touches as u64);
    // With a budget of one byte, reads decode anew what was dropped.
    assert!(tiny.cache().decodes() > first.len() as u64);
    assert!(tiny.cache().decodes() <= touches as u64);

    // Four threads sharing the announced reads between them: still each
    // tile decoded once (a tile being decoded by one thread is waited for by
    // the others, not decoded again), and the same bytes.
    let shared = wsiseg_slide::DirectReader::new(&path, reference.levels(), [255; 3]).unwrap();
    shared.plan_reads(0, &inside);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(r) = inside.get(i) else { break };
                let got = shared.read(0, *r).unwrap().unwrap();
                let want = read_padded(reference.as_ref(), 0, *r).unwrap();
                assert_eq!(got.as_raw(), want.as_raw(), "{r:?}");
            });
        }
    });
    assert_eq!(
        shared.cache().decodes(),
        first.len() as u64,
        "each tile decoded once on 4 threads"
    );
    assert!(shared.cache().is_empty());

    // Four threads reading the same rectangles in different orders.
    let shared = open_with(&path, Reader::Auto).unwrap();
    shared.plan_reads(0, &rects);
    std::thread::scope(|s| {
        for t in 0..4usize {
            let (shared, rects, want) = (&shared, &rects, &want);
            s.spawn(move || {
                for i in 0..rects.len() {
                    let k = (i * 7 + t * 11) % rects.len();
                    let got = read_padded(shared.as_ref(), 0, rects[k]).unwrap();
                    assert_eq!(got.as_raw(), want[k].as_raw(), "thread {t}, rect {k}");
                }
            });
        }
    });
}

#[test]
fn a_corrupt_jpeg_tile_is_an_error_naming_file_level_and_tile() {
    let path = data("unreadable.svs");
    let s = open_with(&path, Reader::Auto).unwrap();
    let size = s.levels()[0].size;
    let e = s
        .read_inside(0, Rect::new(0, 0, size.w, size.h))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}: corrupt", path.display())),
        "{e}"
    );
}

/// A copy of default.svs whose level-0 JPEG tile `tile` has bits flipped in
/// the second half of its entropy-coded data (every 5th byte XOR 0x24).
fn with_flipped_bits(dir: &Path, tile: usize) -> PathBuf {
    let copy = dir.join(format!("flipped-{tile}.svs"));
    std::fs::copy(data("default.svs"), &copy).unwrap();
    let mut decoder = tiff::decoder::Decoder::new(std::fs::File::open(&copy).unwrap()).unwrap();
    let offsets = decoder
        .get_tag_u64_vec(tiff::tags::Tag::TileOffsets)
        .unwrap();
    let counts = decoder
        .get_tag_u64_vec(tiff::tags::Tag::TileByteCounts)
        .unwrap();
    let (start, len) = (offsets[tile] as usize, counts[tile] as usize);
    let mut bytes = std::fs::read(&copy).unwrap();
    for i in (start + len / 2..start + len - 4).step_by(5) {
        bytes[i] ^= 0x24;
    }
    std::fs::write(&copy, bytes).unwrap();
    copy
}

/// Bit flips inside a JPEG tile are found by the direct reader (strict
/// decoding), which names the tile; OpenSlide-free reads of the intact
/// slide are unaffected.
#[test]
fn flipped_bits_in_a_jpeg_tile_are_an_error_naming_the_tile() {
    let dir = tempfile::tempdir().unwrap();
    let intact = open_with(&data("default.svs"), Reader::Auto).unwrap();
    let size = intact.levels()[0].size;
    let whole = Rect::new(0, 0, size.w, size.h);
    intact.read_inside(0, whole).unwrap();
    // default.svs: 240-px tiles, 10 × 13; tiles 40, 66, 95 hold tissue.
    for tile in [40, 66, 95] {
        let slide = open_with(&with_flipped_bits(dir.path(), tile), Reader::Auto).unwrap();
        assert!(slide.reads_directly(0));
        let Err(e) = slide.read_inside(0, whole) else {
            panic!("tile {tile}: read without an error");
        };
        let e = e.to_string();
        assert!(
            e.contains(&format!("JPEG tile {tile}: corrupt data")),
            "tile {tile}: {e}"
        );
    }
}
