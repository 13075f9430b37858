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

/// Streaming connected-component labelling of one binary mask.
#[derive(Debug, Default)]
struct Labeller {
    parent: Vec<u32>,
    area: Vec<u64>,
    prev: Vec<u32>,
    cur: Vec<u32>,
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

    /// Labels one row (`fg(x)` says whether pixel x is tumor); the row's
    /// labels (0 = background) are in `self.cur` afterwards.
    fn push(&mut self, width: usize, fg: impl Fn(usize) -> bool) {
        if self.parent.is_empty() {
            self.parent.push(0);
            self.area.push(0);
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
        if self.prev.len() != width {
            self.prev = vec![0; width];
        }
        self.cur.clear();
        self.cur.resize(width, 0);
        for x in 0..width {
            if !fg(x) {
                continue;
            }
            let mut label = 0;
            let neighbours = [
                if x > 0 { self.cur[x - 1] } else { 0 },
                if x > 0 { self.prev[x - 1] } else { 0 },
                self.prev[x],
                if x + 1 < width { self.prev[x + 1] } else { 0 },
            ];
            for n in neighbours {
                if n != 0 {
                    label = if label == 0 { n } else { self.union(label, n) };
                }
            }
            if label == 0 {
                label = self.parent.len() as u32;
                self.parent.push(label);
                self.area.push(0);
            }
            self.area[label as usize] += 1;
            self.cur[x] = label;
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
        self.0.push(row.len(), |x| row[x] != 0);
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
        let w = pred.len();
        self.pred.push(w, |x| pred[x] != 0);
        self.truth.push(w, |x| truth[x] != 0);
        let mut run: Option<((u32, u32), u64)> = None;
        for x in 0..w {
            let pair = (self.truth.cur[x], self.pred.cur[x]);
            if pair.0 == 0 || pair.1 == 0 {
                continue;
            }
            match &mut run {
                Some((p, n)) if *p == pair => *n += 1,
                _ => {
                    if let Some((p, n)) = run.take() {
                        *self.overlap.entry(p).or_default() += n;
                    }
                    run = Some((pair, 1));
                }
            }
        }
        if let Some((p, n)) = run {
            *self.overlap.entry(p).or_default() += n;
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
}
