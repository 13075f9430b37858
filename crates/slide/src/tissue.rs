//! Where the tissue is, from a thumbnail: Otsu's threshold on saturation.
//!
//! H&E tissue is coloured (pink, purple) and glass is grey-white, so the
//! saturation (max − min of R, G, B) separates them better than brightness
//! (pen marks and dust are rarer than pale stroma).

use image::RgbImage;

use crate::{Size, TilePlan};

/// Saturation below this is glass whatever Otsu says (a blank slide has no tissue).
const MIN_TISSUE_SATURATION: u8 = 12;

/// One flag per thumbnail pixel: true where there is tissue.
pub fn tissue_mask(thumb: &RgbImage) -> Vec<bool> {
    tissue_mask_with(thumb, None).0
}

/// One flag per thumbnail pixel: true where the saturation is above
/// `threshold`, or, when `None`, above Otsu's threshold of the thumbnail's
/// saturation (at least 12). Returns the threshold used too.
pub fn tissue_mask_with(thumb: &RgbImage, threshold: Option<u8>) -> (Vec<bool>, u8) {
    let sat: Vec<u8> = thumb
        .pixels()
        .map(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap())
        .collect();
    let threshold = threshold.unwrap_or_else(|| otsu(&sat).max(MIN_TISSUE_SATURATION));
    (sat.iter().map(|&s| s > threshold).collect(), threshold)
}

/// Which tiles of `plan` (over a working level `downsample` times smaller
/// than level 0 of `level0` pixels) have tissue in their core, judged on a
/// thumbnail tissue `mask` of `thumb` pixels covering level 0. The mask is
/// grown by one thumbnail pixel, so tissue at a tile's border is not missed.
pub fn tissue_tiles(
    plan: &TilePlan,
    downsample: f64,
    level0: Size,
    mask: &[bool],
    thumb: Size,
) -> Vec<bool> {
    let (tw, th) = (thumb.w as i64, thumb.h as i64);
    let sx = thumb.w as f64 / level0.w as f64;
    let sy = thumb.h as f64 / level0.h as f64;
    let at = |x: i64, y: i64| x >= 0 && y >= 0 && x < tw && y < th && mask[(y * tw + x) as usize];
    plan.tiles()
        .map(|t| {
            let c = t.core;
            let x0 = (c.x as f64 * downsample * sx).floor() as i64 - 1;
            let y0 = (c.y as f64 * downsample * sy).floor() as i64 - 1;
            let x1 = (c.right() as f64 * downsample * sx).ceil() as i64 + 1;
            let y1 = (c.bottom() as f64 * downsample * sy).ceil() as i64 + 1;
            (y0..y1).any(|y| (x0..x1).any(|x| at(x, y)))
        })
        .collect()
}

/// Otsu's threshold of 8-bit values: the split that maximises the between-class variance.
pub fn otsu(values: &[u8]) -> u8 {
    let mut hist = [0u64; 256];
    for &v in values {
        hist[v as usize] += 1;
    }
    let total = values.len() as f64;
    let sum: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut best, mut best_var) = (0u8, -1.0);
    let (mut w0, mut sum0) = (0.0, 0.0);
    for (t, &n) in hist.iter().enumerate() {
        w0 += n as f64;
        sum0 += t as f64 * n as f64;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum - sum0) / w1);
        let var = w0 * w1 * (m0 - m1).powi(2);
        if var > best_var {
            best_var = var;
            best = t as u8;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn pink_tissue_on_white_glass() {
        // Left third pink tissue, the rest near-white glass with a little noise.
        let img = RgbImage::from_fn(90, 30, |x, y| {
            if x < 30 {
                Rgb([230, 150, 190])
            } else {
                let n = ((x * 7 + y * 13) % 5) as u8;
                Rgb([240 + n, 241, 243 - n])
            }
        });
        let mask = tissue_mask(&img);
        let tissue = mask.iter().filter(|&&t| t).count();
        assert_eq!(tissue, 30 * 30);
        assert!(mask[0] && !mask[89]);
        // A blank slide has no tissue.
        let blank = RgbImage::from_fn(20, 20, |x, _| Rgb([240 + (x % 3) as u8, 240, 241]));
        assert!(tissue_mask(&blank).iter().all(|&t| !t));
    }

    /// A 1000×800 level tiled by 100-px tiles (overlap 20: stride 80, so
    /// 13 × 10 tiles), whose thumbnail is 4× smaller; tissue blobs sit well
    /// inside the cores of 7 known tiles, so exactly those 7 are run.
    #[test]
    fn tiles_with_tissue_are_exactly_those_under_the_tissue() {
        let plan = TilePlan::new(Size::new(1000, 800), 100, 20).unwrap();
        assert_eq!(plan.len(), 130);
        let want = [
            (0u32, 0u32),
            (1, 4),
            (1, 5),
            (3, 9),
            (6, 2),
            (9, 12),
            (9, 0),
        ];
        // Thumbnail pixels of level pixels (x, y): (x / 4, y / 4).
        let inside = |x: u32, y: u32| {
            want.iter().any(|&(r, c)| {
                let core = plan.tile(crate::TileIndex { row: r, col: c }).core;
                let (cx, cy) = (core.x as u32, core.y as u32);
                x >= cx + 12 && x + 12 < cx + core.w && y >= cy + 12 && y + 12 < cy + core.h
            })
        };
        let thumb = RgbImage::from_fn(250, 200, |x, y| {
            if inside(4 * x, 4 * y) && inside(4 * x + 3, 4 * y + 3) {
                Rgb([200, 120, 170])
            } else {
                Rgb([242, 241, 243])
            }
        });
        let (mask, threshold) = tissue_mask_with(&thumb, None);
        assert!(threshold >= MIN_TISSUE_SATURATION);
        let fraction = mask.iter().filter(|&&t| t).count() as f64 / mask.len() as f64;
        assert!(
            fraction > 0.02 && fraction < 0.05,
            "tissue fraction {fraction}"
        );
        let run = tissue_tiles(&plan, 1.0, Size::new(1000, 800), &mask, Size::new(250, 200));
        let got: Vec<(u32, u32)> = plan
            .tiles()
            .zip(&run)
            .filter(|(_, &r)| r)
            .map(|(t, _)| (t.index.row, t.index.col))
            .collect();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(got, want);
        // A fixed threshold above the tissue's saturation finds none.
        let (none, used) = tissue_mask_with(&thumb, Some(90));
        assert_eq!(used, 90);
        assert!(none.iter().all(|&t| !t));
    }
}
