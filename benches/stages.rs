//! CPU stage benchmarks: `cargo bench --bench stages` prints figures (MP/s) for
//! the stages that must never be the bottleneck: stitching,
//! the PNG and pyramidal TIFF writers, direct JPEG tile decoding and
//! OpenSlide reads of the same tiles (tests/data/default.svs).
//! Each figure is the best of a few repetitions of the same work.

use std::path::Path;
use std::time::Instant;

use wsiseg_slide::{JpegTiles, PyramidOptions, PyramidWriter, Rect, Size, TilePlan};
use wsiseg_stitch::{PngMaskWriter, RowSink, StitchError, Stitcher};

struct Null;

impl RowSink for Null {
    fn write_rows(&mut self, _rows: &[u8]) -> Result<(), StitchError> {
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
    let level = Size::new(16_384, 16_384);
    let mp = level.area() as f64 / 1e6;
    let (tile, overlap) = (512u32, 64u32);
    let plan = TilePlan::new(level, tile, overlap).unwrap();

    let labels = vec![1u8; (tile * tile) as usize];
    let s = best(3, || {
        let mut st = Stitcher::new(plan, Null);
        for t in plan.tiles() {
            st.add(t.index, &labels).unwrap();
        }
        st.finish().unwrap();
    });
    report("stitch (centre crop, one core)", mp, s);

    let dir = std::env::temp_dir().join(format!("wsiseg-benches-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let row: Vec<u8> = (0..level.w).map(|x| u8::from((x / 97) % 3 == 0)).collect();
    let band: Vec<u8> = row.iter().copied().cycle().take(row.len() * 64).collect();
    let rows = |sink: &mut dyn RowSink| {
        for _ in 0..level.h / 64 {
            sink.write_rows(&band).unwrap();
        }
    };
    let s = best(3, || {
        let mut w = PngMaskWriter::create(&dir.join("m.png"), level).unwrap();
        rows(&mut w);
        w.commit().unwrap();
    });
    report("PNG label mask writer", mp, s);
    let s = best(3, || {
        let opts = PyramidOptions::label_mask(Some(1.0), None);
        let mut w = PyramidWriter::create(&dir.join("m.tiff"), level, opts).unwrap();
        rows(&mut w);
        w.finish().unwrap();
    });
    report("pyramidal TIFF label mask writer (all cores)", mp, s);
    let _ = std::fs::remove_dir_all(&dir);

    let svs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/default.svs");
    let tiles = JpegTiles::open(&svs, 0).unwrap().expect("JPEG tiles");
    let slide = wsiseg_slide::open(&svs).unwrap();
    let l0 = slide.levels()[0].size;
    let rects: Vec<Rect> = (0..tiles.len())
        .map(|n| {
            let (c, r) = (n as u32 % tiles.tiles_across, n as u32 / tiles.tiles_across);
            Rect::new(
                i64::from(c * tiles.tile_width),
                i64::from(r * tiles.tile_height),
                tiles.tile_width,
                tiles.tile_height,
            )
            .clip_to(l0)
            .unwrap()
        })
        .collect();
    let px: f64 = rects.iter().map(|r| f64::from(r.w * r.h)).sum::<f64>() / 1e6;
    let mut file = std::fs::File::open(&svs).unwrap();
    let s = best(3, || {
        for n in 0..tiles.len() {
            tiles.decode(&mut file, n).unwrap();
        }
    });
    report("direct JPEG tile decode, default.svs (one core)", px, s);
    let s = best(3, || {
        for r in &rects {
            slide.read_inside(0, *r).unwrap();
        }
    });
    report("OpenSlide read of the same tiles (one core)", px, s);
}
