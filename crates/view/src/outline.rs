//! The ground truth's outline, when `wsiseg eval` compared the slide with
//! one: the truth as the evaluation saw it (at the prediction's pixels,
//! every k-th row and column up to [`SIDE`] pixels), its class boundaries
//! drawn opaque on a transparent picture laid over the whole slide.

use std::sync::Arc;

use crate::catalog::Entry;
use crate::http::Reply;

/// The outline picture's longer side at most.
pub const SIDE: u32 = 4096;
/// The outline's colour.
pub const COLOUR: [u8; 4] = [255, 230, 0, 255];

/// The outline PNG of `labels` (`w`×`h`): a pixel of a class other than
/// background with a 4-neighbour of another class.
pub fn outline_png(w: u32, h: u32, labels: &[u8]) -> Result<Vec<u8>, String> {
    let (wu, hu) = (w as usize, h as usize);
    let mut rgba = vec![0u8; wu * hu * 4];
    let at = |x: usize, y: usize| labels[y * wu + x];
    for y in 0..hu {
        for x in 0..wu {
            let v = at(x, y);
            if v == 0 {
                continue;
            }
            let edge = x == 0
                || y == 0
                || x + 1 == wu
                || y + 1 == hu
                || at(x - 1, y) != v
                || at(x + 1, y) != v
                || at(x, y - 1) != v
                || at(x, y + 1) != v;
            if edge {
                rgba[(y * wu + x) * 4..(y * wu + x) * 4 + 4].copy_from_slice(&COLOUR);
            }
        }
    }
    crate::render::png_rgba(w, h, &rgba)
}

/// The reply for the truth outline of `entry` (made once).
pub fn reply(entry: &Entry) -> Reply {
    let Some((truth, pred)) = entry.truth.as_ref() else {
        return Reply::error(404, "no ground truth: run wsiseg eval in this folder");
    };
    let made = entry.outline.get_or_init(|| {
        let labels = wsiseg_eval::Labels::default();
        let (w, h, px) =
            wsiseg_eval::truth_overview(pred, truth, &labels, SIDE).map_err(|e| e.to_string())?;
        outline_png(w, h, &px).map(Arc::new)
    });
    match made {
        Ok(b) => Reply::ok("image/png", b.clone()).cached(),
        Err(e) => Reply::error(502, e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn outline_is_the_boundary_only() {
        // A 3×3 block of class 1 in a 5×5 picture: its 8 border pixels.
        let mut labels = vec![0u8; 25];
        for y in 1..4 {
            for x in 1..4 {
                labels[y * 5 + x] = 1;
            }
        }
        let png = super::outline_png(5, 5, &labels).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgba8();
        let opaque: Vec<_> = img
            .enumerate_pixels()
            .filter(|p| p.2 .0[3] == 255)
            .map(|p| (p.0, p.1))
            .collect();
        assert_eq!(opaque.len(), 8);
        assert!(!opaque.contains(&(2, 2)));
    }
}
