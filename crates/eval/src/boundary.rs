//! Boundary F-score at a tolerance (Csurka et al., BMVC 2013), streamed.
//!
//! A boundary pixel is a tumor pixel (any class but background) with a
//! background pixel among its 4 neighbours; pixels outside the mask count as
//! their neighbour, so the mask's own edge is no boundary. A predicted
//! boundary pixel is *matched* when a truth boundary pixel lies within
//! `tolerance` pixels of it (Chebyshev distance: a square window), and the
//! other way round. Precision = matched predicted / predicted boundary
//! pixels, recall = matched truth / truth boundary pixels, F = their harmonic
//! mean; F is 1 when neither mask has a boundary.

use std::collections::VecDeque;

/// Counts of one side's boundary pixels and those matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundaryCounts {
    /// Boundary pixels.
    pub pixels: u64,
    /// Those with a boundary pixel of the other mask within the tolerance.
    pub matched: u64,
}

/// The boundary F-score's parts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Boundary {
    /// The tolerance, in pixels of the prediction's resolution.
    pub tolerance: u32,
    /// The prediction's boundary.
    pub predicted: BoundaryCounts,
    /// The truth's boundary.
    pub truth: BoundaryCounts,
}

impl Boundary {
    /// Matched share of the predicted boundary (1 when there is none).
    pub fn precision(&self) -> f64 {
        ratio(self.predicted)
    }
    /// Matched share of the truth boundary (1 when there is none).
    pub fn recall(&self) -> f64 {
        ratio(self.truth)
    }
    /// Harmonic mean of precision and recall; 1 when neither mask has a
    /// boundary, 0 when only one has.
    pub fn f_score(&self) -> f64 {
        if self.predicted.pixels == 0 && self.truth.pixels == 0 {
            return 1.0;
        }
        if self.predicted.pixels == 0 || self.truth.pixels == 0 {
            return 0.0;
        }
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(c: BoundaryCounts) -> f64 {
    if c.pixels == 0 {
        1.0
    } else {
        c.matched as f64 / c.pixels as f64
    }
}

/// One mask's rows on their way through: tumor rows until the boundary of
/// the middle one can be told, then boundary rows and their horizontal
/// dilation.
#[derive(Default)]
struct Side {
    /// The last three tumor rows (1 = tumor).
    fg: VecDeque<Vec<u8>>,
    /// Boundary rows not yet scored, with their horizontally dilated copies.
    boundary: VecDeque<(Vec<u8>, Vec<u8>)>,
}

/// Streams row pairs and scores the boundaries.
pub struct BoundaryCounter {
    tolerance: usize,
    pred: Side,
    truth: Side,
    /// Boundary rows made so far (the next row's index).
    made: usize,
    /// Rows scored so far.
    scored: usize,
    /// The row index of the first boundary row held.
    base: usize,
    result: Boundary,
}

impl BoundaryCounter {
    /// A counter at `tolerance` pixels.
    pub fn new(tolerance: u32) -> Self {
        Self {
            tolerance: tolerance as usize,
            pred: Side::default(),
            truth: Side::default(),
            made: 0,
            scored: 0,
            base: 0,
            result: Boundary {
                tolerance,
                ..Boundary::default()
            },
        }
    }

    /// Adds one row of each mask (labels; 0 is background).
    pub fn push(&mut self, pred: &[u8], truth: &[u8]) {
        let fg = |row: &[u8]| row.iter().map(|&v| u8::from(v != 0)).collect::<Vec<_>>();
        self.pred.fg.push_back(fg(pred));
        self.truth.fg.push_back(fg(truth));
        // The first row's boundary needs the second; after that, each row
        // makes the boundary of the one before it.
        if self.pred.fg.len() >= 2 {
            self.make(false);
        }
    }

    /// Makes the boundary row of the middle tumor row (or the last one at
    /// the end), then scores every row whose window is complete.
    fn make(&mut self, last: bool) {
        let t = self.tolerance;
        for side in [&mut self.pred, &mut self.truth] {
            let n = side.fg.len();
            // The row whose boundary is made: the one before the newest,
            // or the newest at the end.
            let i = if last { n - 1 } else { n - 2 };
            let row = &side.fg[i];
            let up = if i > 0 { &side.fg[i - 1] } else { row };
            let down = if i + 1 < n { &side.fg[i + 1] } else { row };
            let w = row.len();
            let b: Vec<u8> = (0..w)
                .map(|x| {
                    let left = if x > 0 { row[x - 1] } else { row[x] };
                    let right = if x + 1 < w { row[x + 1] } else { row[x] };
                    u8::from(row[x] == 1 && (left == 0 || right == 0 || up[x] == 0 || down[x] == 0))
                })
                .collect();
            let dilated = dilate(&b, t);
            side.boundary.push_back((b, dilated));
            if !last && side.fg.len() > 2 {
                side.fg.pop_front();
            }
        }
        self.made += 1;
        // Row `scored` can be scored once rows up to scored + t are made.
        while self.scored + t < self.made {
            self.score_next();
        }
    }

    /// Scores the oldest unscored row against the window of the other side.
    fn score_next(&mut self) {
        let t = self.tolerance;
        let base = self.base;
        let s = self.scored;
        let (lo, hi) = (s.saturating_sub(t), (s + t).min(self.made - 1));
        for (mine, other, counts) in [
            (&self.pred, &self.truth, &mut self.result.predicted),
            (&self.truth, &self.pred, &mut self.result.truth),
        ] {
            let row = &mine.boundary[s - base].0;
            for (x, &b) in row.iter().enumerate() {
                if b == 1 {
                    counts.pixels += 1;
                    if (lo..=hi).any(|j| other.boundary[j - base].1[x] == 1) {
                        counts.matched += 1;
                    }
                }
            }
        }
        self.scored += 1;
        // Drop the rows no later row's window reaches.
        while self.base < self.scored.saturating_sub(t) {
            self.pred.boundary.pop_front();
            self.truth.boundary.pop_front();
            self.base += 1;
        }
    }

    /// Scores the rows still held and returns the counts.
    pub fn finish(mut self) -> Boundary {
        if !self.pred.fg.is_empty() {
            self.make(true);
        }
        while self.scored < self.made {
            self.score_next();
        }
        self.result
    }
}

/// `b` dilated horizontally by `t` pixels.
fn dilate(b: &[u8], t: usize) -> Vec<u8> {
    let w = b.len();
    let mut prefix = vec![0u32; w + 1];
    for x in 0..w {
        prefix[x + 1] = prefix[x] + u32::from(b[x]);
    }
    (0..w)
        .map(|x| {
            let lo = x.saturating_sub(t);
            let hi = (x + t + 1).min(w);
            u8::from(prefix[hi] > prefix[lo])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same definitions, computed on whole images by brute force.
    fn brute(pred: &[Vec<u8>], truth: &[Vec<u8>], t: usize) -> Boundary {
        let h = pred.len();
        let w = pred[0].len();
        let boundary = |m: &[Vec<u8>]| -> Vec<Vec<bool>> {
            (0..h)
                .map(|y| {
                    (0..w)
                        .map(|x| {
                            let v = |yy: isize, xx: isize| {
                                if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                                    m[y][x]
                                } else {
                                    m[yy as usize][xx as usize]
                                }
                            };
                            let (y, x) = (y as isize, x as isize);
                            v(y, x) != 0
                                && [v(y - 1, x), v(y + 1, x), v(y, x - 1), v(y, x + 1)].contains(&0)
                        })
                        .collect()
                })
                .collect()
        };
        let (bp, bt) = (boundary(pred), boundary(truth));
        let side = |a: &[Vec<bool>], b: &[Vec<bool>]| {
            let mut c = BoundaryCounts::default();
            for (y, row) in a.iter().enumerate() {
                for (x, &on) in row.iter().enumerate() {
                    if on {
                        c.pixels += 1;
                        let near = (y.saturating_sub(t)..=(y + t).min(h - 1)).any(|yy| {
                            (x.saturating_sub(t)..=(x + t).min(w - 1)).any(|xx| b[yy][xx])
                        });
                        c.matched += u64::from(near);
                    }
                }
            }
            c
        };
        Boundary {
            tolerance: t as u32,
            predicted: side(&bp, &bt),
            truth: side(&bt, &bp),
        }
    }

    fn streamed(pred: &[Vec<u8>], truth: &[Vec<u8>], t: u32) -> Boundary {
        let mut c = BoundaryCounter::new(t);
        for (p, q) in pred.iter().zip(truth) {
            c.push(p, q);
        }
        c.finish()
    }

    fn pseudo_mask(w: usize, h: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut s = seed;
        let mut blobs = Vec::new();
        for _ in 0..4 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let cx = (s >> 33) as usize % w;
            let cy = (s >> 17) as usize % h;
            let r = 2 + (s >> 50) as usize % 6;
            blobs.push((cx, cy, r));
        }
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| {
                        u8::from(blobs.iter().any(|&(cx, cy, r)| {
                            let (dx, dy) = (x.abs_diff(cx), y.abs_diff(cy));
                            dx * dx + dy * dy <= r * r
                        }))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn streaming_matches_brute_force() {
        for seed in 0..20 {
            let (w, h) = (23 + seed as usize % 7, 17 + seed as usize % 5);
            let a = pseudo_mask(w, h, seed);
            let b = pseudo_mask(w, h, seed + 100);
            for t in [0, 1, 2, 3] {
                assert_eq!(
                    streamed(&a, &b, t),
                    brute(&a, &b, t as usize),
                    "seed {seed} t {t}"
                );
                assert_eq!(streamed(&a, &a, t).f_score(), 1.0);
            }
        }
        // One row, and all background.
        let one = vec![vec![0, 1, 1, 0, 1]];
        assert_eq!(streamed(&one, &one, 1), brute(&one, &one, 1));
        let empty = vec![vec![0u8; 5]; 4];
        assert_eq!(streamed(&empty, &empty, 2).f_score(), 1.0);
    }
}
