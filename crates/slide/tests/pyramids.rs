//! Pyramids written by `wsiseg_write::PyramidWriter`, read back through OpenSlide.

use image::{Rgb, RgbImage};
use wsiseg_slide::{open, Rect, Size};
use wsiseg_write::{PyramidOptions, PyramidWriter, Reduce, TileCompression};

fn smooth(w: u32, h: u32) -> RgbImage {
    // Smooth gradients: JPEG keeps them within a few levels.
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x + y) * 255 / (w + h)) as u8,
        ])
    })
}

fn write(
    path: &std::path::Path,
    pixels: &[u8],
    size: Size,
    opts: PyramidOptions,
    chunk_rows: usize,
) {
    let mut w = PyramidWriter::create(path, size, opts.clone()).unwrap();
    let row = size.w as usize * opts.channels as usize;
    for rows in pixels.chunks(row * chunk_rows) {
        w.push_rows(rows).unwrap();
    }
    assert!(!path.exists(), "final name appears only when finished");
    w.finish().unwrap();
}

#[test]
fn aperio_style_jpeg_pyramid_opens_in_openslide_with_levels_and_mpp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.svs");
    let size = Size::new(1000, 700);
    let img = smooth(size.w, size.h);
    let opts = PyramidOptions {
        channels: 3,
        tile: 256,
        step: 4,
        smallest: 100,
        compression: TileCompression::Jpeg { quality: 90 },
        reduce: Reduce::Average,
        mpp: Some(0.25),
        description: Some(
            "Aperio Image Library wsiseg\r\n1000x700 (256x256) JPEG/RGB Q=90|AppMag = 40|MPP = 0.25"
                .into(),
        ),
    };
    write(&path, img.as_raw(), size, opts, 77);
    let s = open(&path).unwrap();
    assert_eq!(s.format(), "aperio");
    let sizes: Vec<Size> = s.levels().iter().map(|l| l.size).collect();
    assert_eq!(sizes, [size, Size::new(250, 175), Size::new(63, 44)]);
    let mpp = s.mpp().unwrap();
    assert!((mpp.x - 0.25).abs() < 1e-9, "{mpp:?}");
    let got = s.read_inside(0, Rect::new(0, 0, size.w, size.h)).unwrap();
    let max = got
        .as_raw()
        .iter()
        .zip(img.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(max <= 12, "JPEG q90 of smooth gradients differs by {max}");
    // Level 1 is the 4×4 mean of level 0.
    let l1 = s.read_inside(1, Rect::new(10, 10, 1, 1)).unwrap();
    let mean: u32 = (40..44)
        .flat_map(|y| (40..44).map(move |x| (x, y)))
        .map(|(x, y)| u32::from(img.get_pixel(x, y).0[0]))
        .sum::<u32>()
        / 16;
    assert!(l1.get_pixel(0, 0).0[0].abs_diff(mean as u8) <= 12);
}

#[test]
fn deflate_label_pyramid_is_exact_with_nearest_reduction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tiff");
    let size = Size::new(613, 389);
    let labels: Vec<u8> = (0..size.h)
        .flat_map(|y| (0..size.w).map(move |x| u8::from((x / 7 + y / 5) % 3 == 0)))
        .collect();
    let opts = PyramidOptions {
        channels: 1,
        tile: 128,
        step: 2,
        smallest: 100,
        compression: TileCompression::Deflate,
        reduce: Reduce::Nearest,
        mpp: Some(1.0),
        description: None,
    };
    write(&path, &labels, size, opts, 1000);
    let s = open(&path).unwrap();
    assert_eq!(s.format(), "generic-tiff");
    assert_eq!(s.levels().len(), 4);
    assert_eq!(s.levels()[1].size, Size::new(307, 195));
    assert!((s.mpp().unwrap().x - 1.0).abs() < 1e-6);
    let got = s.read_inside(0, Rect::new(0, 0, size.w, size.h)).unwrap();
    let gray: Vec<u8> = got.pixels().map(|p| p.0[0]).collect();
    assert!(gray == labels, "level 0 differs");
    let l1 = s.read_inside(1, Rect::new(0, 0, 307, 195)).unwrap();
    for (x, y, p) in l1.enumerate_pixels() {
        assert_eq!(
            p.0[0],
            labels[(2 * y * size.w + 2 * x) as usize],
            "level 1 at ({x}, {y})"
        );
    }
}
