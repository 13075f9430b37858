//! Pyramid sizes and the commit protocol of `PyramidWriter` (reading
//! written pyramids back through OpenSlide is tested in crates/slide/tests/pyramids.rs).

use wsiseg_geometry::Size;
use wsiseg_write::{pyramid_sizes, PyramidOptions, PyramidWriter, Reduce, TileCompression};

#[test]
fn level_sizes_shrink_by_the_step_down_to_the_smallest() {
    let s = pyramid_sizes(Size::new(100_000, 80_000), 4, 1024);
    assert_eq!(
        s,
        [
            Size::new(100_000, 80_000),
            Size::new(25_000, 20_000),
            Size::new(6250, 5000),
            Size::new(1563, 1250),
            Size::new(391, 313)
        ]
    );
}

#[test]
fn an_unfinished_pyramid_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tiff");
    let opts = PyramidOptions {
        channels: 1,
        tile: 64,
        step: 2,
        smallest: 64,
        compression: TileCompression::Deflate,
        reduce: Reduce::Nearest,
        mpp: None,
        description: None,
    };
    let mut w = PyramidWriter::create(&path, Size::new(100, 100), opts).unwrap();
    w.push_rows(&[0u8; 100 * 10]).unwrap();
    let e = w.finish().unwrap_err();
    assert!(e.to_string().contains("fewer rows than its height"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
