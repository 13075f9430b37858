//! Lesion-level detection: connected tumor regions of the truth found or
//! missed, and predicted regions that are false, matched by overlap — with
//! the masks streamed row by row (one-pass connected-component labelling
//! with union–find; memory grows with the number of regions, not pixels).
//!
//! A region is a set of tumor pixels (any class but background) connected
//! through their 8 neighbours. A truth region is *found* when at least one
//! predicted tumor pixel lies in it; a predicted region is *false* when none
//! of its pixels is truth tumor.

use std::collections::HashMap;

/// A run of tumor pixels in one row: `start..end`, with its label.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u32,
    end: u32,
    label: u32,
}

/// Streaming connected-component labelling of one binary mask, run by run
/// (a row is its runs of tumor pixels: work and memory follow the runs,
/// not the pixels).
#[derive(Debug, Default)]
struct Labeller {
    parent: Vec<u32>,
    area: Vec<u64>,
    prev: Vec<Run>,
    cur: Vec<Run>,
}

/// The first index from `x` on whose byte is non-zero (`want_set`) or zero
/// (otherwise), or `row.len()`: eight bytes at a time over long stretches.
fn next_where(row: &[u8], mut x: usize, want_set: bool) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while x + 8 <= row.len() {
        let w = u64::from_le_bytes(row[x..x + 8].try_into().expect("8 bytes"));
        // Some byte is zero (the classic test) / some byte is non-zero.
        let stop = if want_set {
            w != 0
        } else {
            w.wrapping_sub(ONES) & !w & HIGHS != 0
        };
        if stop {
            break;
        }
        x += 8;
    }
    while x < row.len() && (row[x] != 0) != want_set {
        x += 1;
    }
    x
}

impl Labeller {
    fn find(&mut self, mut a: u32) -> u32 {
        while self.parent[a as usize] != a {
            let p = self.parent[a as usize];
            self.parent[a as usize] = self.parent[p as usize];
            a = p;
        }
        a
    }

    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[gone as usize] = keep;
        keep
    }

    /// Labels one row (non-zero bytes are tumor); the row's runs, labelled,
    /// are in `self.cur` afterwards.
    fn push(&mut self, row: &[u8]) {
        if self.parent.is_empty() {
            self.parent.push(0);
            self.area.push(0);
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.cur.clear();
        // Runs of the row above that can touch the current run or a later one.
        let mut first = 0;
        let mut x = 0;
        loop {
            let start = next_where(row, x, true);
            if start == row.len() {
                break;
            }
            let end = next_where(row, start, false);
            x = end;
            let (start, end) = (start as u32, end as u32);
            // A run above touches this one when it covers a pixel from
            // start − 1 to end (8 neighbours: diagonals at both ends).
            while first < self.prev.len() && self.prev[first].end < start {
                first += 1;
            }
            let mut label = 0;
            let mut k = first;
            while k < self.prev.len() && self.prev[k].start <= end {
                let n = self.prev[k].label;
                label = if label == 0 { n } else { self.union(label, n) };
                k += 1;
            }
            if label == 0 {
                label = self.parent.len() as u32;
                self.parent.push(label);
                self.area.push(0);
            }
            self.area[label as usize] += u64::from(end - start);
            self.cur.push(Run { start, end, label });
        }
    }

    /// Each region's root label and its area in pixels.
    fn regions(&mut self) -> HashMap<u32, u64> {
        let mut out: HashMap<u32, u64> = HashMap::new();
        for l in 1..self.parent.len() as u32 {
            let a = self.area[l as usize];
            if a > 0 {
                let r = self.find(l);
                *out.entry(r).or_default() += a;
            }
        }
        out
    }
}

/// Region size bins by area in mm² (upper edges, names).
pub const MM2_BINS: [(f64, &str); 4] = [
    (0.01, "< 0.01 mm²"),
    (0.1, "0.01–0.1 mm²"),
    (1.0, "0.1–1 mm²"),
    (f64::INFINITY, "≥ 1 mm²"),
];

/// Region size bins by area in pixels, for masks without a resolution.
pub const PX_BINS: [(f64, &str); 4] = [
    (1e3, "< 1000 px"),
    (1e4, "1000–10⁴ px"),
    (1e5, "10⁴–10⁵ px"),
    (f64::INFINITY, "≥ 10⁵ px"),
];

/// The size bins that apply ([`MM2_BINS`] with a resolution, else
/// [`PX_BINS`]) and the bin of a region of `pixels`.
pub fn size_bins(mm2_per_px: Option<f64>) -> &'static [(f64, &'static str); 4] {
    if mm2_per_px.is_some() {
        &MM2_BINS
    } else {
        &PX_BINS
    }
}

/// The index in [`size_bins`] of a region of `pixels`.
pub fn size_bin(pixels: u64, mm2_per_px: Option<f64>) -> usize {
    let area = pixels as f64 * mm2_per_px.unwrap_or(1.0);
    let bins = size_bins(mm2_per_px);
    bins.iter()
        .position(|(hi, _)| area < *hi)
        .unwrap_or(bins.len() - 1)
}

/// The connected tumor regions of one mask, streamed row by row (for the
/// segmentation report: no truth needed).
#[derive(Debug, Default)]
pub struct RegionCounter(Labeller);

impl RegionCounter {
    /// Adds one row of labels (0 is background).
    pub fn push(&mut self, row: &[u8]) {
        self.0.push(row);
    }

    /// Every region's area in pixels, largest first.
    pub fn finish(mut self) -> Vec<u64> {
        let mut areas: Vec<u64> = self.0.regions().into_values().collect();
        areas.sort_unstable_by(|a, b| b.cmp(a));
        areas
    }
}

/// One region's area in pixels and whether it is matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    /// Area in pixels (of the prediction's resolution).
    pub pixels: u64,
    /// Truth: found by the prediction; prediction: overlaps the truth.
    pub matched: bool,
}

/// The truth's and the prediction's regions, matched by overlap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lesions {
    /// Every truth region.
    pub truth: Vec<Region>,
    /// Every predicted region.
    pub predicted: Vec<Region>,
}

impl Lesions {
    /// Truth regions found.
    pub fn found(&self) -> usize {
        self.truth.iter().filter(|r| r.matched).count()
    }
    /// Truth regions missed.
    pub fn missed(&self) -> usize {
        self.truth.len() - self.found()
    }
    /// Predicted regions that touch no truth tumor.
    pub fn false_regions(&self) -> usize {
        self.predicted.iter().filter(|r| !r.matched).count()
    }
}

/// Feeds row pairs (prediction, truth at the prediction's resolution) and
/// matches the regions at the end.
#[derive(Debug, Default)]
pub struct LesionCounter {
    pred: Labeller,
    truth: Labeller,
    /// Overlapping pixels per (truth label, predicted label), by provisional label.
    overlap: HashMap<(u32, u32), u64>,
}

impl LesionCounter {
    /// Adds one row of each mask (labels; 0 is background).
    pub fn push(&mut self, pred: &[u8], truth: &[u8]) {
        self.pred.push(pred);
        self.truth.push(truth);
        // Where a truth run and a predicted run overlap, by their labels.
        let (t, p) = (&self.truth.cur, &self.pred.cur);
        let (mut i, mut j) = (0, 0);
        while i < t.len() && j < p.len() {
            let from = t[i].start.max(p[j].start);
            let to = t[i].end.min(p[j].end);
            if from < to {
                *self.overlap.entry((t[i].label, p[j].label)).or_default() += u64::from(to - from);
            }
            if t[i].end <= p[j].end {
                i += 1;
            } else {
                j += 1;
            }
        }
    }

    /// The regions, matched.
    pub fn finish(mut self) -> Lesions {
        let truth = self.truth.regions();
        let pred = self.pred.regions();
        let mut truth_hit = std::collections::HashSet::new();
        let mut pred_hit = std::collections::HashSet::new();
        for &(t, p) in self.overlap.keys() {
            truth_hit.insert(self.truth.find(t));
            pred_hit.insert(self.pred.find(p));
        }
        let mut lesions = Lesions {
            truth: truth
                .iter()
                .map(|(r, &pixels)| Region {
                    pixels,
                    matched: truth_hit.contains(r),
                })
                .collect(),
            predicted: pred
                .iter()
                .map(|(r, &pixels)| Region {
                    pixels,
                    matched: pred_hit.contains(r),
                })
                .collect(),
        };
        // Largest first, so that reports read the same every time.
        let order =
            |a: &Region, b: &Region| b.pixels.cmp(&a.pixels).then(b.matched.cmp(&a.matched));
        lesions.truth.sort_by(order);
        lesions.predicted.sort_by(order);
        lesions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(pred: &[&str], truth: &[&str]) -> Lesions {
        let mut c = LesionCounter::default();
        for (p, t) in pred.iter().zip(truth) {
            let row = |s: &str| s.bytes().map(|b| u8::from(b == b'#')).collect::<Vec<_>>();
            c.push(&row(p), &row(t));
        }
        c.finish()
    }

    #[test]
    fn u_shapes_and_diagonals_are_one_region() {
        // A U whose arms join only at the bottom, and a diagonal line.
        let truth = ["#.#..#...", "#.#...#..", "###....#."];
        let l = count(&truth, &truth);
        assert_eq!(l.truth.len(), 2, "{l:?}");
        assert_eq!(l.truth[0].pixels, 7);
        assert_eq!(l.truth[1].pixels, 3);
        assert_eq!((l.found(), l.missed(), l.false_regions()), (2, 0, 0));
    }

    #[test]
    fn found_missed_and_false_regions() {
        let truth = ["##...##...##", "##...##...##", "............"];
        let pred = [".#......#...", "........#..#", "#..........."];
        let l = count(&pred, &truth);
        // Truth: 3 regions of 4 px; the first and the third are touched.
        assert_eq!(l.truth.len(), 3);
        assert_eq!((l.found(), l.missed()), (2, 1));
        // Predicted: 4 regions ({1}, {8,8'}, {11'}, {0''}); two touch no truth.
        assert_eq!(l.predicted.len(), 4);
        assert_eq!(l.false_regions(), 2);
    }

    /// Regions by flood fill (8 neighbours): each region's pixels.
    fn flood_regions(mask: &[u8], w: usize, h: usize) -> Vec<Vec<usize>> {
        let mut seen = vec![false; mask.len()];
        let mut regions = Vec::new();
        for start in 0..mask.len() {
            if mask[start] == 0 || seen[start] {
                continue;
            }
            let (mut stack, mut pixels) = (vec![start], Vec::new());
            seen[start] = true;
            while let Some(p) = stack.pop() {
                pixels.push(p);
                let (x, y) = ((p % w) as i64, (p / w) as i64);
                for (dx, dy) in (-1..=1).flat_map(|dx| (-1..=1).map(move |dy| (dx, dy))) {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] != 0 && !seen[q] {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
            regions.push(pixels);
        }
        regions
    }

    /// Region areas by flood fill, largest first.
    fn flood(mask: &[u8], w: usize, h: usize) -> Vec<u64> {
        let mut areas: Vec<u64> = flood_regions(mask, w, h)
            .iter()
            .map(|r| r.len() as u64)
            .collect();
        areas.sort_unstable_by(|a, b| b.cmp(a));
        areas
    }

    /// Regions matched by flood fill: each region's area and whether any of
    /// its pixels is tumor in `other`, largest first (as `Lesions` sorts).
    fn flood_matched(mask: &[u8], other: &[u8], w: usize, h: usize) -> Vec<Region> {
        let mut regions: Vec<Region> = flood_regions(mask, w, h)
            .iter()
            .map(|r| Region {
                pixels: r.len() as u64,
                matched: r.iter().any(|&p| other[p] != 0),
            })
            .collect();
        regions.sort_by(|a, b| b.pixels.cmp(&a.pixels).then(b.matched.cmp(&a.matched)));
        regions
    }

    #[test]
    fn streamed_regions_equal_a_flood_fill_at_every_density() {
        // Noise from sparse specks to nearly solid, with runs of every
        // length, spirals of labels merging late and rows ending in tumor.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for density in [2u64, 10, 30, 50, 70, 90, 98] {
            for (w, h) in [(1, 40), (40, 1), (23, 17), (64, 64)] {
                let mask: Vec<u8> = (0..w * h)
                    .map(|_| u8::from(next() % 100 < density))
                    .collect();
                let mut counter = RegionCounter::default();
                for row in mask.chunks(w) {
                    counter.push(row);
                }
                assert_eq!(
                    counter.finish(),
                    flood(&mask, w, h),
                    "{density}% of {w}×{h}"
                );

                // The same mask as the prediction against a second one as
                // the truth: found, missed and false regions as by flood fill.
                let truth: Vec<u8> = (0..w * h)
                    .map(|_| u8::from(next() % 100 < density))
                    .collect();
                let mut lesions = LesionCounter::default();
                for (p, t) in mask.chunks(w).zip(truth.chunks(w)) {
                    lesions.push(p, t);
                }
                let l = lesions.finish();
                assert_eq!(
                    l.truth,
                    flood_matched(&truth, &mask, w, h),
                    "{density}% of {w}×{h}"
                );
                assert_eq!(
                    l.predicted,
                    flood_matched(&mask, &truth, w, h),
                    "{density}% of {w}×{h}"
                );
            }
        }
    }
}
