//! Plain images written as streams of row bands read back as written, and
//! appear only when complete.

use wsiseg_geometry::Size;
use wsiseg_write::{PlainFormat, PlainWriter};

/// Smooth gradients (JPEG's blocks and chroma subsampling keep them close),
/// different on every row and column.
fn picture(w: u32, h: u32) -> Vec<u8> {
    (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [(x * 255 / w) as u8, (y * 255 / h) as u8, 128]))
        .collect()
}

#[test]
fn png_jpeg_and_tiff_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (301, 203);
    let pic = picture(w, h);
    for (format, tolerance) in [
        (PlainFormat::Png, 0),
        (PlainFormat::Tiff, 0),
        (PlainFormat::Jpeg { quality: 95 }, 6),
    ] {
        let path = dir.path().join(format!("p.{}", format.extension()));
        let mut writer = PlainWriter::create(&path, Size::new(w, h), format).unwrap();
        assert!(!path.exists(), "no final name before the commit");
        for band in pic.chunks(w as usize * 3 * 50) {
            writer.write_rows(band).unwrap();
        }
        assert_eq!(writer.commit().unwrap(), path);
        let back = image::open(&path)
            .unwrap_or_else(|e| panic!("{format:?}: {e}"))
            .to_rgb8();
        assert_eq!(back.dimensions(), (w, h), "{format:?}");
        let worst = back
            .as_raw()
            .iter()
            .zip(&pic)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= tolerance, "{format:?}: off by {worst}");
    }
}

#[test]
fn a_writer_dropped_before_its_last_row_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    for format in [
        PlainFormat::Png,
        PlainFormat::Tiff,
        PlainFormat::Jpeg { quality: 90 },
    ] {
        let path = dir.path().join(format!("cut.{}", format.extension()));
        let mut writer = PlainWriter::create(&path, Size::new(64, 64), format).unwrap();
        writer.write_rows(&picture(64, 10)).unwrap();
        drop(writer);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{format:?} left {left:?}");
    }
}
