use std::collections::BTreeMap;

use wsiseg_geometry::{TileIndex, TilePlan};

use crate::StitchError;

/// Where finished rows of the mask go, top to bottom.
pub trait RowSink {
    /// What can go wrong writing rows; the stitcher's own errors (a tile
    /// missing, given twice…) convert into it.
    type Error: From<StitchError>;
    /// `rows` holds whole rows of the level, `width` bytes each.
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), Self::Error>;

    /// Takes a band of finished rows by value; hands the buffer back when
    /// it is free for the stitcher to reuse (by default: written, then
    /// returned). A sink that keeps the band (to pass it on without a copy)
    /// returns `None`.
    fn take_rows(&mut self, rows: Vec<u8>) -> Result<Option<Vec<u8>>, Self::Error> {
        self.write_rows(&rows)?;
        Ok(Some(rows))
    }
}

/// Collects the whole mask in memory (tests, small levels).
impl RowSink for Vec<u8> {
    type Error = StitchError;
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), StitchError> {
        self.extend_from_slice(rows);
        Ok(())
    }
}

/// A buffer of `len` bytes, one of `spare` when there is one: zeros when
/// `clear`, else whatever it held (to be overwritten whole).
fn buffer(spare: &mut Vec<Vec<u8>>, len: usize, clear: bool) -> Vec<u8> {
    match spare.pop() {
        Some(mut v) => {
            if clear {
                v.clear();
            }
            v.resize(len, 0);
            v
        }
        None => vec![0; len],
    }
}

/// The rows covered by one row of tiles, filled as its tiles arrive.
struct Band {
    pixels: Vec<u8>,
    seen: Vec<bool>,
    received: u32,
}

/// Assembles tile outputs into rows of the level's mask; see the crate docs.
pub struct Stitcher<S: RowSink> {
    plan: TilePlan,
    sink: S,
    next_row: u32,
    bands: BTreeMap<u32, Band>,
    /// Which tiles will come (raster order); the cores of the others stay 0.
    run: Option<Vec<bool>>,
    /// Tiles expected per row of tiles.
    expected: Vec<u32>,
    /// Band buffers to reuse: no fresh allocation per row of tiles.
    spare: Vec<Vec<u8>>,
}

impl<S: RowSink> Stitcher<S> {
    /// A stitcher for `plan` that hands finished rows to `sink`.
    pub fn new(plan: TilePlan, sink: S) -> Self {
        Self {
            plan,
            sink,
            next_row: 0,
            bands: BTreeMap::new(),
            run: None,
            expected: vec![plan.cols(); plan.rows() as usize],
            spare: Vec::new(),
        }
    }

    /// Only the tiles flagged in `run` (raster order) will be added; the
    /// cores of the others are 0 (background) in the output.
    pub fn with_tiles(plan: TilePlan, sink: S, run: Vec<bool>) -> Self {
        assert_eq!(run.len(), plan.len(), "one flag per tile");
        let cols = plan.cols() as usize;
        let expected = run
            .chunks(cols)
            .map(|row| row.iter().filter(|&&r| r).count() as u32)
            .collect();
        Self {
            run: Some(run),
            expected,
            ..Self::new(plan, sink)
        }
    }

    fn is_run(&self, index: TileIndex) -> bool {
        let n = index.row as usize * self.plan.cols() as usize + index.col as usize;
        self.run.as_ref().is_none_or(|r| r[n])
    }

    /// Adds one tile's output: `tile × tile` bytes, row-major.
    pub fn add(&mut self, index: TileIndex, labels: &[u8]) -> Result<(), S::Error> {
        self.add_with(index, labels, |_| {})
    }

    /// [`Stitcher::add`], handing each row of the tile's core (what goes
    /// into the mask) to `each_row` as it is copied, while it is in cache.
    pub fn add_with(
        &mut self,
        index: TileIndex,
        labels: &[u8],
        mut each_row: impl FnMut(&[u8]),
    ) -> Result<(), S::Error> {
        let t = self.plan.tile_size() as usize;
        if labels.len() != t * t {
            return Err(StitchError::TileSize {
                index,
                got: labels.len(),
                expected: t * t,
            }
            .into());
        }
        if index.row < self.next_row
            || index.row >= self.plan.rows()
            || index.col >= self.plan.cols()
            || !self.is_run(index)
        {
            return Err(StitchError::UnexpectedTile { index }.into());
        }
        let width = self.plan.level_size().w as usize;
        let (y0, y1) = self.plan.core_rows(index.row);
        let cols = self.plan.cols() as usize;
        // Every tile of the row will come: their cores cover the band, so a
        // reused buffer needs no clearing.
        let whole = self.expected[index.row as usize] == self.plan.cols();
        let spare = &mut self.spare;
        let band = self.bands.entry(index.row).or_insert_with(|| Band {
            pixels: buffer(spare, width * (y1 - y0) as usize, !whole),
            seen: vec![false; cols],
            received: 0,
        });
        if std::mem::replace(&mut band.seen[index.col as usize], true) {
            return Err(StitchError::UnexpectedTile { index }.into());
        }
        let tile = self.plan.tile(index);
        let (ox, oy) = tile.core_offset();
        let (cx, cw) = (tile.core.x as usize, tile.core.w as usize);
        for r in 0..tile.core.h as usize {
            let src = (oy as usize + r) * t + ox as usize;
            let dst = r * width + cx;
            let core = &labels[src..src + cw];
            band.pixels[dst..dst + cw].copy_from_slice(core);
            each_row(core);
        }
        band.received += 1;
        self.flush()
    }

    /// Streams every complete band at the top to the sink (rows of tiles
    /// with nothing to run are complete from the start).
    fn flush(&mut self) -> Result<(), S::Error> {
        while self.next_row < self.plan.rows() {
            let want = self.expected[self.next_row as usize];
            let received = self.bands.get(&self.next_row).map_or(0, |b| b.received);
            if received < want {
                break;
            }
            let pixels = match self.bands.remove(&self.next_row) {
                Some(band) => band.pixels,
                None => {
                    let (y0, y1) = self.plan.core_rows(self.next_row);
                    let len = self.plan.level_size().w as usize * (y1 - y0) as usize;
                    buffer(&mut self.spare, len, true)
                }
            };
            if let Some(back) = self.sink.take_rows(pixels)? {
                self.recycle(back);
            }
            self.next_row += 1;
        }
        Ok(())
    }

    /// Gives back a band buffer (from [`RowSink::take_rows`]) for reuse;
    /// at most two are kept.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < 2 {
            self.spare.push(buffer);
        }
    }

    /// The sink, e.g. to take the rows a `Vec` sink has collected so far.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Number of rows of the level already handed to the sink.
    pub fn rows_done(&self) -> u32 {
        if self.next_row == 0 {
            0
        } else {
            self.plan.core_rows(self.next_row - 1).1
        }
    }

    /// Checks that every tile arrived and returns the sink.
    pub fn finish(mut self) -> Result<S, S::Error> {
        self.complete()?;
        Ok(self.sink)
    }

    /// Hands the last rows to the sink (rows of tiles with nothing to run
    /// are complete only now) and checks that every tile arrived.
    pub fn complete(&mut self) -> Result<(), S::Error> {
        self.flush()?;
        if self.next_row < self.plan.rows() {
            let received: u32 = self.bands.values().map(|b| b.received).sum();
            let left: u32 = self.expected[self.next_row as usize..].iter().sum();
            return Err(StitchError::Incomplete {
                missing: (left - received) as usize,
            }
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use wsiseg_geometry::Size;

    /// A level whose pixel (x, y) holds a value unique enough to catch any misplacement.
    fn truth(size: Size) -> Vec<u8> {
        (0..size.h)
            .flat_map(|y| (0..size.w).map(move |x| (x.wrapping_mul(7) ^ y.wrapping_mul(13)) as u8))
            .collect()
    }

    /// What a perfect model would output for a tile: the truth where the tile
    /// overlaps the level, and a value that must never appear elsewhere.
    fn tile_output(plan: &TilePlan, truth: &[u8], index: TileIndex) -> Vec<u8> {
        let size = plan.level_size();
        let r = plan.tile(index).rect;
        let mut out = Vec::with_capacity((r.w * r.h) as usize);
        for y in r.y..r.bottom() {
            for x in r.x..r.right() {
                let inside =
                    (0..i64::from(size.w)).contains(&x) && (0..i64::from(size.h)).contains(&y);
                out.push(if inside {
                    truth[y as usize * size.w as usize + x as usize]
                } else {
                    0xEE
                });
            }
        }
        out
    }

    /// A `w×h` level tiled by `tile`, overlapping by a fraction of it.
    fn plan_of(w: u32, h: u32, tile: u32, overlap_frac: f64) -> TilePlan {
        let overlap = ((f64::from(tile) * overlap_frac) as u32).min(tile - 1);
        TilePlan::new(Size::new(w, h), tile, overlap).unwrap()
    }

    proptest! {
        #[test]
        fn stitching_known_tiles_reproduces_the_level(
            w in 1u32..200, h in 1u32..200, tile in 2u32..70, overlap_frac in 0.0f64..1.0,
            reverse in any::<bool>()
        ) {
            let plan = plan_of(w, h, tile, overlap_frac);
            let want = truth(plan.level_size());
            let mut tiles: Vec<_> = plan.tiles().collect();
            if reverse {
                tiles.reverse(); // arrival order must not matter
            }
            let mut s = Stitcher::new(plan, Vec::new());
            for t in tiles {
                s.add(t.index, &tile_output(&plan, &want, t.index)).unwrap();
            }
            prop_assert_eq!(s.rows_done(), h);
            let got = s.finish().unwrap();
            prop_assert!(got == want, "stitched mask differs from the known level");
        }
    }

    /// What tile `n` outputs at its pixel (lx, ly): different from what its
    /// neighbours output for the same level pixel, and from itself one pixel over.
    fn tile_says(n: usize, lx: i64, ly: i64) -> u8 {
        (n as i64 * 67 + lx * 3 + ly * 5 + 1) as u8
    }

    proptest! {
        /// Neighbouring tiles disagree everywhere in their overlaps, so the
        /// stitched level shows where each pixel came from: from the tile
        /// whose core holds it, at its own place in that tile — the centre
        /// of every tile, exactly, whatever the arrival order.
        #[test]
        fn each_pixel_comes_from_the_core_of_its_own_tile(
            w in 1u32..160, h in 1u32..160, tile in 2u32..60, overlap_frac in 0.0f64..1.0,
            order in any::<u64>()
        ) {
            let plan = plan_of(w, h, tile, overlap_frac);
            let mut want = vec![0u8; (w * h) as usize];
            for (n, t) in plan.tiles().enumerate() {
                for y in t.core.y..t.core.bottom() {
                    for x in t.core.x..t.core.right() {
                        want[(y * i64::from(w) + x) as usize] =
                            tile_says(n, x - t.rect.x, y - t.rect.y);
                    }
                }
            }
            // A shuffled arrival order.
            let mut tiles: Vec<(usize, TileIndex)> =
                plan.tiles().enumerate().map(|(n, t)| (n, t.index)).collect();
            let mut state = order | 1;
            for i in (1..tiles.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                tiles.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut s = Stitcher::new(plan, Vec::new());
            for (n, index) in tiles {
                let out: Vec<u8> = (0..i64::from(tile * tile))
                    .map(|i| tile_says(n, i % i64::from(tile), i / i64::from(tile)))
                    .collect();
                s.add(index, &out).unwrap();
            }
            let got = s.finish().unwrap();
            let wrong = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            prop_assert_eq!(wrong, 0, "pixels not from the core of their own tile");
        }
    }

    #[test]
    fn reused_band_buffers_never_show_an_earlier_band() {
        // 4 × 3 tiles: row 0 all run (7), row 1 only col 2 (8), row 2 all
        // run (9). Each finished band's buffer is reused for the next one:
        // a row with tiles not run is cleared, a whole row overwritten, and
        // each core row is seen once by `add_with`.
        let plan = TilePlan::new(Size::new(50, 40), 20, 4).unwrap();
        let run: Vec<bool> = (0..plan.len())
            .map(|n| n != 4 && n != 5 && n != 7)
            .collect();
        let mut s = Stitcher::with_tiles(plan, Vec::new(), run);
        let mut seen = 0;
        for (n, v) in [
            (0, 7),
            (1, 7),
            (2, 7),
            (3, 7),
            (6, 8),
            (8, 9),
            (9, 9),
            (10, 9),
            (11, 9),
        ] {
            s.add_with(plan.nth(n).index, &[v; 400], |row| {
                assert!(row.iter().all(|&b| b == v));
                seen += row.len();
            })
            .unwrap();
        }
        let got = s.finish().unwrap();
        let want: Vec<u8> = (0..40u32)
            .flat_map(|y| {
                (0..50u32).map(move |x| match (y / 16, x / 16) {
                    (0, _) => 7,
                    (1, 2) => 8,
                    (1, _) => 0,
                    _ => 9,
                })
            })
            .collect();
        assert_eq!(got, want);
        // Every pixel of a run tile's core, once.
        assert_eq!(seen, want.iter().filter(|&&b| b != 0).count());
    }

    #[test]
    fn tiles_not_run_stay_background() {
        let plan = TilePlan::new(Size::new(50, 40), 20, 4).unwrap();
        // 4 × 3 tiles; run only the tile at row 1, col 2 and the whole last row.
        let run: Vec<bool> = (0..plan.len()).map(|n| n == 6 || n >= 8).collect();
        let mut s = Stitcher::with_tiles(plan, Vec::new(), run);
        let skipped = TileIndex { row: 0, col: 0 };
        assert!(matches!(
            s.add(skipped, &[7; 400]),
            Err(StitchError::UnexpectedTile { .. })
        ));
        for n in [6, 8, 9, 10, 11] {
            s.add(plan.nth(n).index, &[7; 400]).unwrap();
        }
        let got = s.finish().unwrap();
        let want: Vec<u8> = (0..40u32)
            .flat_map(|y| {
                (0..50u32).map(move |x| {
                    let row = y / 16;
                    let col = x / 16;
                    u8::from(row == 2 || (row == 1 && col == 2)) * 7
                })
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn duplicate_wrong_size_and_missing_tiles_are_errors() {
        let plan = TilePlan::new(Size::new(50, 50), 20, 4).unwrap();
        let mut s = Stitcher::new(plan, Vec::new());
        let i = TileIndex { row: 0, col: 0 };
        assert!(matches!(
            s.add(i, &[0; 10]),
            Err(StitchError::TileSize { .. })
        ));
        s.add(i, &[1; 400]).unwrap();
        assert!(matches!(
            s.add(i, &[1; 400]),
            Err(StitchError::UnexpectedTile { .. })
        ));
        let outside = TileIndex { row: 0, col: 9 };
        assert!(matches!(
            s.add(outside, &[1; 400]),
            Err(StitchError::UnexpectedTile { .. })
        ));
        assert!(matches!(
            s.finish(),
            Err(StitchError::Incomplete { missing }) if missing == plan.len() - 1
        ));
    }
}
