//! CPU stage benchmarks: `cargo bench --bench stages` prints figures (MP/s) for
//! the stages that must never be the bottleneck: stitching,
//! the PNG and pyramidal TIFF writers, and reading (raw JPEG tile decode vs
//! the engine's reader and OpenSlide on planned tiles, tests/data/default.svs).
//! Each figure is the best of a few repetitions of the same work.
//!
//! `cargo test` runs this file too (`test = true` in Cargo.toml), without
//! `--bench`: then it does the same work once on a small level, as a smoke
//! test that the benchmark still builds and runs, and prints no figures.

use std::path::Path;
use std::time::Instant;

use wsiseg_slide::{open_with, read_padded, JpegTiles, Reader, Size, TilePlan};
use wsiseg_stitch::{RowSink, StitchError, Stitcher};
use wsiseg_write::{PngMaskWriter, PyramidOptions, PyramidWriter};

/// Counts the bytes it is given.
struct Null(u64);

impl RowSink for Null {
    type Error = StitchError;
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), StitchError> {
        self.0 += rows.len() as u64;
        Ok(())
    }
}

/// Best seconds of `reps` runs of `f`.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn report(name: &str, megapixels: f64, seconds: f64) {
    println!(
        "{name:<44} {:>10.1} MP/s  ({megapixels:.1} MP in {:.3} s)",
        megapixels / seconds,
        seconds
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` does not.
    let bench = std::env::args().any(|a| a == "--bench");
    let (side, reps) = if bench { (16_384, 3) } else { (2048, 1) };
    let report = |name: &str, megapixels: f64, seconds: f64| {
        if bench {
            report(name, megapixels, seconds);
        }
    };
    let level = Size::new(side, side);
    let mp = level.area() as f64 / 1e6;
    let (tile, overlap) = (512u32, 64u32);
    let plan = TilePlan::new(level, tile, overlap).unwrap();

    let labels = vec![1u8; (tile * tile) as usize];
    let s = best(reps, || {
        let mut st = Stitcher::new(plan, Null(0));
        for t in plan.tiles() {
            st.add(t.index, &labels).unwrap();
        }
        assert_eq!(st.finish().unwrap().0, level.area(), "every pixel once");
    });
    report("stitch (centre crop, one core)", mp, s);

    let dir = std::env::temp_dir().join(format!("wsiseg-benches-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let row: Vec<u8> = (0..level.w).map(|x| u8::from((x / 97) % 3 == 0)).collect();
    let band: Vec<u8> = row.iter().copied().cycle().take(row.len() * 64).collect();
    let rows = |sink: &mut dyn FnMut(&[u8])| {
        for _ in 0..level.h / 64 {
            sink(&band);
        }
    };
    let s = best(reps, || {
        let mut w = PngMaskWriter::create(&dir.join("m.png"), level).unwrap();
        rows(&mut |r| w.write_rows(r).unwrap());
        w.commit().unwrap();
    });
    let png = image::open(dir.join("m.png")).unwrap().into_luma8();
    assert_eq!(png.dimensions(), (level.w, level.h));
    assert_eq!(
        png.get_pixel(level.w - 1, level.h - 1).0[0],
        row[level.w as usize - 1]
    );
    report("PNG label mask writer", mp, s);
    let s = best(reps, || {
        let opts = PyramidOptions::label_mask(Some(1.0), None);
        let mut w = PyramidWriter::create(&dir.join("m.tiff"), level, opts).unwrap();
        rows(&mut |r| w.push_rows(r).unwrap());
        w.finish().unwrap();
    });
    report("pyramidal TIFF label mask writer (all cores)", mp, s);
    let tiff = wsiseg_slide::open(&dir.join("m.tiff")).unwrap();
    assert_eq!(tiff.levels()[0].size, level);
    let _ = std::fs::remove_dir_all(&dir);

    // Reading: raw decode of every JPEG tile of default.svs vs the engine's
    // reader (direct JPEG path, cold tile cache) and OpenSlide reading the
    // whole level as planned 256-px tiles overlapping by 32 (which touch
    // every JPEG tile), in raster order, on one core.
    let svs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/default.svs");
    let tiles = JpegTiles::open(&svs, 0).unwrap().expect("JPEG tiles");
    let px = tiles.size.area() as f64 / 1e6;
    let file = std::fs::File::open(&svs).unwrap();
    let s = best(reps, || {
        for n in 0..tiles.len() {
            tiles.decode(&file, n).unwrap();
        }
    });
    report("raw JPEG tile decode, default.svs (one core)", px, s);
    let plan = TilePlan::new(tiles.size, 256, 32).unwrap();
    for (name, reader) in [
        ("engine reader, planned tiles (one core)", Reader::Auto),
        ("OpenSlide, planned tiles (one core)", Reader::OpenSlide),
    ] {
        // A freshly opened slide per repetition: its tile cache starts cold.
        let mut fresh = (0..3)
            .map(|_| open_with(&svs, reader).unwrap())
            .collect::<Vec<_>>()
            .into_iter();
        let s = best(reps, || {
            let slide = fresh.next().unwrap();
            let rects: Vec<_> = plan.tiles().map(|t| t.rect).collect();
            slide.plan_reads(0, &rects);
            for t in plan.tiles() {
                read_padded(slide.as_ref(), 0, t.rect).unwrap();
            }
        });
        report(name, px, s);
    }
}
