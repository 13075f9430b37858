//! The slide reader on real files: OpenSlide's test slides (tests/data, see
//! tests/data/README.md) and images generated here.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use tiff::decoder::{Decoder, DecodingResult};
use wsiseg_slide::{
    open, read_padded, thumbnail, Rect, Resolution, Size, Slide, SlideError, WorkingLevel,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

/// Decodes tile `index` of the first IFD with the `tiff` crate (its own JPEG
/// and Deflate decoders): a reference independent of OpenSlide.
fn reference_tile(path: &Path, index: u32) -> (u32, Vec<u8>) {
    let mut d = Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).unwrap();
    let (tw, _) = d.chunk_dimensions();
    match d.read_chunk(index).unwrap() {
        DecodingResult::U8(v) => (tw, v),
        other => panic!(
            "unexpected sample type {:?}",
            std::mem::discriminant(&other)
        ),
    }
}

/// A deterministic noisy image with structure, so misplaced pixels show.
fn pattern(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ seed;
        Rgb([(v >> 3) as u8, (v >> 11) as u8, (x + 3 * y) as u8])
    })
}

#[test]
fn aperio_svs_levels_and_resolution() {
    let s = open(&data("default.svs")).unwrap();
    assert_eq!(s.format(), "aperio");
    assert_eq!(s.levels().len(), 1);
    assert_eq!(s.levels()[0].size, Size::new(2220, 2967));
    let mpp = s.mpp().expect("Aperio records MPP");
    assert!(
        (mpp.x - 0.499).abs() < 1e-6 && (mpp.y - 0.499).abs() < 1e-6,
        "{mpp:?}"
    );
}

#[test]
fn aperio_pixels_match_an_independent_jpeg_decode() {
    let path = data("default.svs");
    let s = open(&path).unwrap();
    // Tiles are 240 px, 10 per row; check the first tile and one inside the tissue.
    for (index, col, row) in [(0u32, 0i64, 0i64), (34, 4, 3)] {
        let (t, want) = reference_tile(&path, index);
        let got = s
            .read_inside(0, Rect::new(col * i64::from(t), row * i64::from(t), t, t))
            .unwrap();
        let diffs: Vec<u32> = got
            .as_raw()
            .iter()
            .zip(&want)
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .collect();
        let mean = diffs.iter().sum::<u32>() as f64 / diffs.len() as f64;
        let max = *diffs.iter().max().unwrap();
        // libjpeg-turbo (OpenSlide) and the tiff crate's JPEG decoder differ
        // only by rounding in the IDCT and chroma upsampling.
        assert!(
            mean < 0.05 && max <= 2,
            "tile {index}: mean diff {mean}, max {max}"
        );
    }
}

#[test]
fn generic_tiff_pyramid_matches_its_png_and_deflate_tiles_exactly() {
    let s = open(&data("boxes.tiff")).unwrap();
    assert_eq!(s.format(), "generic-tiff");
    let sizes: Vec<Size> = s.levels().iter().map(|l| l.size).collect();
    assert_eq!(
        sizes,
        [
            Size::new(300, 250),
            Size::new(150, 125),
            Size::new(75, 62),
            Size::new(37, 31)
        ]
    );
    assert_eq!(s.levels()[1].downsample, 2.0);
    // Its resolution tags hold the 72 dpi screen default: not a real mpp.
    assert_eq!(s.mpp(), None);
    let whole = s.read_inside(0, Rect::new(0, 0, 300, 250)).unwrap();
    let png = image::open(data("boxes.png")).unwrap().into_rgb8();
    assert_eq!(whole.dimensions(), png.dimensions());
    assert!(whole == png, "boxes.tiff level 0 differs from boxes.png");
    // A region straddling tiles, against the tiff crate's decode of tile (1, 0).
    let (t, tile) = reference_tile(&data("boxes.tiff"), 1);
    let region = s.read_inside(0, Rect::new(i64::from(t), 0, t, t)).unwrap();
    assert_eq!(region.as_raw(), &tile);
}

#[test]
fn tiny_svs_opens() {
    let s = open(&data("small.svs")).unwrap();
    assert_eq!(s.levels()[0].size, Size::new(16, 16));
}

#[test]
fn plain_png_and_strip_tiff_read_back_exactly_with_white_padding() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(301, 157, 7);
    for name in ["plain.png", "plain.tif"] {
        let path = dir.path().join(name);
        img.save(&path).unwrap();
        let s = open(&path).unwrap();
        assert_eq!(s.levels().len(), 1);
        assert_eq!(s.levels()[0].size, Size::new(301, 157));
        assert_eq!(s.mpp(), None);
        let inside = s.read_inside(0, Rect::new(17, 9, 100, 50)).unwrap();
        let want = image::imageops::crop_imm(&img, 17, 9, 100, 50).to_image();
        assert!(inside == want, "{name}: region differs");
        // A tile hanging over the top-left and bottom-right corners.
        for rect in [Rect::new(-10, -5, 40, 30), Rect::new(290, 150, 20, 20)] {
            let padded = read_padded(s.as_ref(), 0, rect).unwrap();
            for (x, y, px) in padded.enumerate_pixels() {
                let (lx, ly) = (rect.x + i64::from(x), rect.y + i64::from(y));
                let expect = if (0..301).contains(&lx) && (0..157).contains(&ly) {
                    *img.get_pixel(lx as u32, ly as u32)
                } else {
                    Rgb([255, 255, 255])
                };
                assert_eq!(*px, expect, "{name} {rect:?} at ({x}, {y})");
            }
        }
    }
}

/// TIFFs as Pillow writes them: the whole image one uncompressed strip
/// (here 144 MB of 8-bit RGB, and 158 MB of 16-bit RGB as scientific
/// cameras write them), more than the TIFF decoder's default buffers.
#[test]
fn single_strip_tiffs_of_any_size_open_and_read_back() {
    use tiff::encoder::{colortype, TiffEncoder};
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (8000, 6000);
    let img = pattern(w, h, 3);
    let path = dir.path().join("pillow.tif");
    let mut enc = TiffEncoder::new(std::fs::File::create(&path).unwrap()).unwrap();
    let mut image = enc.new_image::<colortype::RGB8>(w, h).unwrap();
    image.rows_per_strip(h).unwrap();
    image.write_data(img.as_raw()).unwrap();
    let s = open(&path).unwrap();
    assert_eq!(s.levels()[0].size, Size::new(w, h));
    let rect = Rect::new(7000, 5800, 300, 200);
    let want = image::imageops::crop_imm(&img, 7000, 5800, 300, 200).to_image();
    assert!(
        s.read_inside(0, rect).unwrap() == want,
        "8-bit strip: region differs"
    );

    let (w, h) = (5934, 4440);
    let img = pattern(w, h, 5);
    // 16 bits a sample: the 8-bit value in the high byte, noise in the low.
    let wide: Vec<u16> = img
        .as_raw()
        .iter()
        .enumerate()
        .map(|(i, &v)| u16::from(v) << 8 | (i % 251) as u16)
        .collect();
    let path = dir.path().join("camera.tif");
    let mut enc = TiffEncoder::new(std::fs::File::create(&path).unwrap()).unwrap();
    let mut image = enc.new_image::<colortype::RGB16>(w, h).unwrap();
    image.rows_per_strip(h).unwrap();
    image.write_data(&wide).unwrap();
    let s = open(&path).unwrap();
    assert_eq!(s.levels()[0].size, Size::new(w, h));
    let rect = Rect::new(5000, 4000, 300, 200);
    let want = image::imageops::crop_imm(&img, 5000, 4000, 300, 200).to_image();
    assert!(
        s.read_inside(0, rect).unwrap() == want,
        "16-bit strip: region differs"
    );
}

/// Strip TIFFs in every layout plain images come in read as RGB through
/// the strip reader: compressed strips (LZW, Deflate, with the horizontal
/// predictor) of any height, 16-bit and 32-bit float samples, grey, RGBA
/// (alpha over white) and CMYK.
#[test]
fn strip_tiffs_of_every_common_layout_read_as_rgb() {
    use tiff::encoder::{colortype, Compression, DeflateLevel, TiffEncoder};
    use tiff::tags::Predictor;
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (301u32, 203u32);
    let img = pattern(w, h, 9);
    let rgb = img.as_raw();
    let check = |name: &str, want: &dyn Fn(usize) -> [u8; 3]| {
        let s = open(&dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.format(), "tiff", "{name}");
        let got = s.read_inside(0, Rect::new(0, 0, w, h)).unwrap();
        for (i, px) in got.pixels().enumerate() {
            let want = want(i);
            let close = px.0.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 1);
            assert!(close, "{name}: pixel {i}: {:?}, want {want:?}", px.0);
        }
    };
    let px = |i: usize| [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]];
    for (name, compression, predictor, strip) in [
        (
            "deflate.tif",
            Compression::Deflate(DeflateLevel::Balanced),
            Predictor::Horizontal,
            7,
        ),
        ("lzw.tif", Compression::Lzw, Predictor::Horizontal, 64),
        ("lzw-one-strip.tif", Compression::Lzw, Predictor::None, h),
    ] {
        let file = std::fs::File::create(dir.path().join(name)).unwrap();
        let mut enc = TiffEncoder::new(file)
            .unwrap()
            .with_compression(compression)
            .with_predictor(predictor);
        let mut image = enc.new_image::<colortype::RGB8>(w, h).unwrap();
        image.rows_per_strip(strip).unwrap();
        image.write_data(rgb).unwrap();
        check(name, &px);
        // 16 bits a sample, the 8-bit value in the high byte.
        let name16 = format!("16-{name}");
        let wide: Vec<u16> = rgb.iter().map(|&v| u16::from(v) << 8 | 0x5a).collect();
        let file = std::fs::File::create(dir.path().join(&name16)).unwrap();
        let mut enc = TiffEncoder::new(file)
            .unwrap()
            .with_compression(compression)
            .with_predictor(predictor);
        let mut image = enc.new_image::<colortype::RGB16>(w, h).unwrap();
        image.rows_per_strip(strip).unwrap();
        image.write_data(&wide).unwrap();
        check(&name16, &px);
    }
    let write = |name: &str, f: &dyn Fn(TiffEncoder<std::fs::File>)| {
        f(TiffEncoder::new(std::fs::File::create(dir.path().join(name)).unwrap()).unwrap());
    };
    write("float.tif", &|mut e| {
        let v: Vec<f32> = rgb.iter().map(|&v| f32::from(v) / 255.0).collect();
        e.write_image::<colortype::RGB32Float>(w, h, &v).unwrap();
    });
    check("float.tif", &px);
    write("grey.tif", &|mut e| {
        let v: Vec<u8> = rgb.chunks(3).map(|p| p[1]).collect();
        e.write_image::<colortype::Gray8>(w, h, &v).unwrap();
    });
    check("grey.tif", &|i| [rgb[3 * i + 1]; 3]);
    write("rgba.tif", &|mut e| {
        let v: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], 0]).collect();
        e.write_image::<colortype::RGBA8>(w, h, &v).unwrap();
    });
    check("rgba.tif", &|_| [255; 3]);
    write("cmyk.tif", &|mut e| {
        let v: Vec<u8> = rgb
            .chunks(3)
            .flat_map(|p| [255 - p[0], 255 - p[1], 255 - p[2], 0])
            .collect();
        e.write_image::<colortype::CMYK8>(w, h, &v).unwrap();
    });
    check("cmyk.tif", &px);
}

/// A little-endian 16×4 grey TIFF by hand: `bits` a sample, one strip of
/// `count` bytes declared, `held` bytes of it in the file (after the
/// directory).
fn hand_tiff(bits: u32, count: u32, held: usize) -> Vec<u8> {
    let data = 8 + 2 + 8 * 12 + 4;
    let entries: [(u16, u16, u32); 8] = [
        (256, 3, 16),
        (257, 3, 4),
        (258, 3, bits),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, data),
        (278, 3, 4),
        (279, 4, count),
    ];
    let mut tif = b"II*\0".to_vec();
    tif.extend_from_slice(&8u32.to_le_bytes());
    tif.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        tif.extend_from_slice(&tag.to_le_bytes());
        tif.extend_from_slice(&kind.to_le_bytes());
        tif.extend_from_slice(&1u32.to_le_bytes());
        tif.extend_from_slice(&value.to_le_bytes());
    }
    tif.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(tif.len(), data as usize);
    tif.extend(std::iter::repeat_n(0x80, held));
    tif
}

/// A TIFF whose samples no reader here handles is named as not supported
/// (never called corrupt); a strip cut short is corrupt, naming the strip.
#[test]
fn unsupported_tiff_samples_are_named_and_truncated_strips_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twelve.tif");
    std::fs::write(&path, hand_tiff(12, 96, 96)).unwrap();
    let e = open(&path).err().expect("a 12-bit TIFF is refused");
    assert!(matches!(e, SlideError::UnsupportedLayout { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("twelve.tif: 12-bit samples are not supported"),
        "{msg}"
    );

    let path = dir.path().join("eight.tif");
    std::fs::write(&path, hand_tiff(8, 64, 64)).unwrap();
    let s = open(&path).unwrap();
    let grey = s.read_inside(0, Rect::new(0, 0, 16, 4)).unwrap();
    assert!(grey.pixels().all(|p| p.0 == [0x80; 3]));

    let path = dir.path().join("cut.tif");
    std::fs::write(&path, hand_tiff(8, 64, 40)).unwrap();
    let e = open(&path).err().expect("a strip past the end is refused");
    assert!(matches!(e, SlideError::Corrupt { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("cut.tif") && msg.contains("strip 0"), "{msg}");
}

/// A CMYK JPEG (print workflows, Photoshop) reads as RGB: each ink
/// patch as the colour it prints, within JPEG's rounding.
#[test]
fn cmyk_jpegs_read_as_rgb() {
    let dir = tempfile::tempdir().unwrap();
    // Four 64×64 patches of inks (C, M, Y, K; 0 = none): white, cyan, red
    // (magenta + yellow), half black.
    let inks: [[u8; 4]; 4] = [
        [0, 0, 0, 0],
        [255, 0, 0, 0],
        [0, 255, 255, 0],
        [0, 0, 0, 128],
    ];
    let want: [[u8; 3]; 4] = [[255, 255, 255], [0, 255, 255], [255, 0, 0], [127, 127, 127]];
    let (w, h) = (256u16, 64u16);
    let mut cmyk = Vec::with_capacity(usize::from(w) * usize::from(h) * 4);
    for _ in 0..h {
        for x in 0..w {
            cmyk.extend_from_slice(&inks[usize::from(x / 64)]);
        }
    }
    let path = dir.path().join("print.jpg");
    jpeg_encoder::Encoder::new_file(&path, 95)
        .unwrap()
        .encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let s = open(&path).unwrap();
    assert_eq!(s.levels()[0].size, Size::new(256, 64));
    let rgb = s.read_inside(0, Rect::new(0, 0, 256, 64)).unwrap();
    for (k, expect) in want.iter().enumerate() {
        // The patch's centre, away from the blocks at its edges.
        let px = rgb.get_pixel(k as u32 * 64 + 32, 32);
        for c in 0..3 {
            let d = (i32::from(px[c]) - i32::from(expect[c])).abs();
            assert!(d <= 12, "patch {k}: {px:?}, want {expect:?}");
        }
    }
}

#[test]
fn thumbnails_fit_the_requested_size() {
    let s = open(&data("boxes.tiff")).unwrap();
    let t = thumbnail(s.as_ref(), 100).unwrap();
    assert_eq!(t.dimensions(), (100, 83));
}

#[test]
fn working_level_by_mpp_scales_from_level_0() {
    let s = open(&data("default.svs")).unwrap();
    let w = WorkingLevel::choose(s.as_ref(), Resolution::Mpp(1.0)).unwrap();
    assert_eq!(w.source_level, 0);
    // 2220 × 0.499 / 1.0 = 1107.8, 2967 × 0.499 = 1480.5
    assert_eq!(w.size, Size::new(1108, 1481));
    assert!((w.downsample - 1.0 / 0.499).abs() < 1e-9);
    let tile = w.read(s.as_ref(), Rect::new(1000, 1400, 256, 256)).unwrap();
    assert_eq!(tile.dimensions(), (256, 256));
    // Past the working level's edge the tile is white background.
    assert_eq!(*tile.get_pixel(255, 255), Rgb([255, 255, 255]));

    let native = WorkingLevel::choose(s.as_ref(), Resolution::Mpp(0.499)).unwrap();
    assert_eq!((native.scale, native.size), (1.0, Size::new(2220, 2967)));
    assert!(matches!(
        WorkingLevel::choose(s.as_ref(), Resolution::Mpp(0.25)),
        Err(SlideError::MppTooFine { .. })
    ));
    assert!(matches!(
        WorkingLevel::choose(s.as_ref(), Resolution::Mpp(-1.0)),
        Err(SlideError::InvalidMpp { .. })
    ));
}

#[test]
fn working_level_by_level_and_its_errors() {
    let s = open(&data("boxes.tiff")).unwrap();
    let w = WorkingLevel::choose(s.as_ref(), Resolution::Level(2)).unwrap();
    assert_eq!(
        (w.size, w.source_level, w.scale),
        (Size::new(75, 62), 2, 1.0)
    );
    let e = WorkingLevel::choose(s.as_ref(), Resolution::Level(4)).unwrap_err();
    assert!(matches!(
        e,
        SlideError::LevelOutOfRange {
            level: 4,
            count: 4,
            ..
        }
    ));
    assert!(e
        .to_string()
        .contains("boxes.tiff: level 4 does not exist (the slide has levels 0..=3)"));
    let e = WorkingLevel::choose(s.as_ref(), Resolution::Mpp(2.0)).unwrap_err();
    assert!(matches!(e, SlideError::NoMpp { .. }), "{e}");
}

#[test]
fn bad_files_give_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.svs");
    std::fs::write(&text, "not a slide\n").unwrap();
    let truncated = dir.path().join("truncated.png");
    let mut png = Vec::new();
    pattern(64, 64, 1)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();

    type Check = fn(&SlideError) -> bool;
    let cases: Vec<(PathBuf, Check)> = vec![
        (dir.path().join("missing.svs"), |e| {
            matches!(e, SlideError::NotFound { .. })
        }),
        (dir.path().to_path_buf(), |e| {
            matches!(e, SlideError::IsDirectory { .. })
        }),
        (text, |e| matches!(e, SlideError::Unsupported { .. })),
        // An unknown compression: a layout, not damage.
        (data("unopenable.tiff"), |e| {
            matches!(e, SlideError::UnsupportedLayout { .. })
        }),
    ];
    for (path, is_expected) in cases {
        let e = open(&path)
            .err()
            .unwrap_or_else(|| panic!("{} opened", path.display()));
        assert!(is_expected(&e), "{}: unexpected {e:?}", path.display());
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            e.to_string().contains(&*name),
            "message does not name the file: {e}"
        );
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
    }
    // A truncated PNG opens (its header is whole: plain images are read as
    // a stream), and reading past its end fails naming the file and row.
    let s = open(&truncated).unwrap();
    let e = s.read_inside(0, Rect::new(0, 0, 64, 64)).unwrap_err();
    assert!(matches!(e, SlideError::Corrupt { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(&truncated.display().to_string()),
        "{e}"
    );
    assert!(e.to_string().contains("row "), "{e}");
    // unreadable.svs opens, but its tile data is corrupt.
    let s = open(&data("unreadable.svs")).unwrap();
    let e = s.read_inside(0, Rect::new(0, 0, 16, 16)).unwrap_err();
    assert!(
        matches!(
            e,
            SlideError::BadTile {
                level: 0,
                tile: 0,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .starts_with(&format!("{}: corrupt", data("unreadable.svs").display())));
}

/// The direct tile path decodes a slide's JPEG tiles itself; its pixels
/// differ from OpenSlide's (libjpeg-turbo) only by IDCT and chroma-upsampling
/// rounding.
#[test]
fn direct_jpeg_tiles_match_openslide_up_to_decoder_rounding() {
    let path = data("default.svs");
    let tiles = wsiseg_slide::JpegTiles::open(&path, 0)
        .unwrap()
        .expect("JPEG level");
    assert_eq!(
        (tiles.tile_width, tiles.tiles_across, tiles.tiles_down),
        (240, 10, 13)
    );
    let s = open(&path).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut worst = 0u8;
    for n in [0usize, 34, 77, 129] {
        let t = tiles.decode(&file, n).unwrap();
        let (col, row) = ((n % 10) as i64, (n / 10) as i64);
        let w = t.width().min(2220 - col as u32 * 240);
        let h = t.height().min(2967 - row as u32 * 240);
        let os = s
            .read_inside(0, Rect::new(col * 240, row * 240, w, h))
            .unwrap();
        for (x, y, p) in os.enumerate_pixels() {
            let q = t.get_pixel(x, y);
            for c in 0..3 {
                worst = worst.max(p.0[c].abs_diff(q.0[c]));
            }
        }
    }
    assert!(worst <= 2, "largest difference {worst}");
}

/// A one-level "slide" of `size` computed on the fly (a smooth gradient with
/// a dark square), recording the largest region it was asked for.
struct Counting {
    size: Size,
    levels: [wsiseg_slide::Level; 1],
    largest: std::sync::atomic::AtomicU64,
}

impl Counting {
    fn new(w: u32, h: u32) -> Self {
        let size = Size::new(w, h);
        Self {
            size,
            levels: [wsiseg_slide::Level {
                size,
                downsample: 1.0,
            }],
            largest: std::sync::atomic::AtomicU64::new(0),
        }
    }
    fn pixel(&self, x: u32, y: u32) -> Rgb<u8> {
        let (w, h) = (self.size.w, self.size.h);
        if (w / 3..w / 2).contains(&x) && (h / 3..h / 2).contains(&y) {
            Rgb([20, 20, 20])
        } else {
            Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
        }
    }
}

impl wsiseg_slide::Slide for Counting {
    fn path(&self) -> &Path {
        Path::new("counting")
    }
    fn format(&self) -> &str {
        "test"
    }
    fn levels(&self) -> &[wsiseg_slide::Level] {
        &self.levels
    }
    fn mpp(&self) -> Option<wsiseg_slide::Mpp> {
        None
    }
    fn read_inside(&self, _level: u32, rect: Rect) -> Result<RgbImage, SlideError> {
        self.largest.fetch_max(
            u64::from(rect.w) * u64::from(rect.h) * 3,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(RgbImage::from_fn(rect.w, rect.h, |x, y| {
            self.pixel(rect.x as u32 + x, rect.y as u32 + y)
        }))
    }
}

/// A level larger than the band budget (a slide without a small level) is
/// read for its thumbnail in bands, never whole, and the banded thumbnail
/// is the whole-level one up to the rounding at band edges.
#[test]
fn a_large_level_is_thumbnailed_in_bands() {
    let slide = Counting::new(9000, 6000); // 162 MB of RGB: read in bands
    let banded = thumbnail(&slide, 2048).unwrap();
    let largest = slide.largest.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        largest <= wsiseg_slide::THUMBNAIL_BAND_BYTES,
        "read {largest} bytes at once"
    );
    assert_eq!(banded.dimensions(), (2048, 1365));
    let whole = slide.read_inside(0, Rect::new(0, 0, 9000, 6000)).unwrap();
    let reference = image::imageops::thumbnail(&whole, 2048, 1365);
    let worst = banded
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    // Gradients differ by a level; the dark square's edge may move a row.
    let differing = banded
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .filter(|(a, b)| a.abs_diff(**b) > 2)
        .count();
    assert!(
        differing * 1000 <= banded.as_raw().len(),
        "{differing} bytes differ by more than 2 (worst {worst})"
    );
}
