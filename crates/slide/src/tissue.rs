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
    let sat: Vec<u8> = thumb
        .pixels()
        .map(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap())
        .collect();
    let threshold = otsu(&sat).max(MIN_TISSUE_SATURATION);
    sat.iter().map(|&s| s > threshold).collect()
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
}
