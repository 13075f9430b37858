use wsiseg_geometry::Size;

use crate::RowSink;

/// Passes rows on at another size, by nearest neighbour, as they stream in:
/// a label mask of the working level written at another level.
pub struct NearestRows<S> {
    inner: S,
    from: Size,
    to: Size,
    /// Source column of each output column.
    cols: Vec<usize>,
    /// Next source row to arrive, next output row to emit.
    src_row: u32,
    out_row: u32,
    out: Vec<u8>,
}

impl<S: RowSink> NearestRows<S> {
    /// Resamples rows of `from` to `to` (nearest neighbour) into `inner`.
    pub fn new(inner: S, from: Size, to: Size) -> Self {
        let cols = (0..to.w).map(|x| source_index(x, from.w, to.w)).collect();
        Self {
            inner,
            from,
            to,
            cols,
            src_row: 0,
            out_row: 0,
            out: Vec::new(),
        }
    }

    /// The sink rows went to.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The source pixel whose centre is nearest to output pixel `i`'s centre.
fn source_index(i: u32, from: u32, to: u32) -> usize {
    let v = ((f64::from(i) + 0.5) * f64::from(from) / f64::from(to)) as u32;
    v.min(from - 1) as usize
}

impl<S: RowSink> RowSink for NearestRows<S> {
    type Error = S::Error;
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), S::Error> {
        let w = self.from.w as usize;
        let n = (rows.len() / w) as u32;
        self.out.clear();
        while self.out_row < self.to.h {
            let src = source_index(self.out_row, self.from.h, self.to.h) as u32;
            if src >= self.src_row + n {
                break;
            }
            let row = &rows[(src - self.src_row) as usize * w..][..w];
            self.out.extend(self.cols.iter().map(|&c| row[c]));
            self.out_row += 1;
        }
        self.src_row += n;
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = self.inner.write_rows(&out);
        self.out = out;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_and_doubles_by_nearest_neighbour_in_any_row_chunks() {
        let from = Size::new(6, 4);
        let src: Vec<u8> = (0..24).collect();
        for chunk in [1, 3, 4] {
            let mut down = NearestRows::new(Vec::new(), from, Size::new(3, 2));
            let mut up = NearestRows::new(Vec::new(), from, Size::new(12, 8));
            for rows in src.chunks(6 * chunk) {
                down.write_rows(rows).unwrap();
                up.write_rows(rows).unwrap();
            }
            // Output pixel i takes source pixel floor((i + 0.5) × 2): rows 1, 3 and columns 1, 3, 5.
            assert_eq!(down.into_inner(), [7, 9, 11, 19, 21, 23]);
            let up = up.into_inner();
            assert_eq!(up.len(), 96);
            assert_eq!(&up[..12], &[0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
            assert_eq!(&up[12..24], &up[..12]);
        }
    }
}
