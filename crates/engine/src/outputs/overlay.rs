//! NAME.overlay.png and NAME.heatmap.png, pictures to look at where no
//! viewer runs: the thumbnail with the tumor tinted and outlined, and a heat
//! map of the tumor probability.

use std::io::Cursor;
use std::path::Path;

use image::{Rgb, RgbImage};
use wsiseg_slide::Size;
use wsiseg_stitch::{NearestRows, RowSink};
use wsiseg_write::{Staged, WriteLimit};

use super::{
    boxed, legend, stage_bytes, Finished, FormatSpec, MaskOutput, OutputContext, SlideResult,
};
use crate::EngineError;

/// The format: NAME.overlay.png and NAME.heatmap.png.
pub(super) const SPEC: FormatSpec = FormatSpec {
    name: "overlay",
    files: |paths| vec![paths.file("overlay.png"), paths.file("heatmap.png")],
    create: |ctx| boxed(Overlay::create(ctx)),
};

/// Copies of the labels and probabilities at the thumbnail's size.
pub(super) struct Overlay {
    labels: NearestRows<Vec<u8>>,
    probs: NearestRows<Vec<u8>>,
}

impl Overlay {
    pub(super) fn create(ctx: &OutputContext) -> Self {
        let working = ctx.plan.working.size;
        let thumb = ctx
            .plan
            .thumbnail
            .as_ref()
            .map_or(Size::new(1, 1), |t| Size::new(t.width(), t.height()));
        Self {
            labels: NearestRows::new(Vec::new(), working, thumb),
            probs: NearestRows::new(Vec::new(), working, thumb),
        }
    }
}

impl MaskOutput for Overlay {
    fn wants_probabilities(&self) -> bool {
        true
    }

    fn label_rows(&mut self, rows: &[u8]) -> Result<(), EngineError> {
        Ok(self.labels.write_rows(rows)?)
    }

    fn prob_rows(&mut self, class: usize, rows: &[u8]) -> Result<(), EngineError> {
        // The heatmap is of tumor (class 1).
        if class == 1 {
            self.probs.write_rows(rows)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, result: &SlideResult) -> Result<Finished, EngineError> {
        let ctx = result.context;
        let Some(thumb) = &ctx.plan.thumbnail else {
            return Ok(Finished::default());
        };
        let (labels, probs) = (self.labels.into_inner(), self.probs.into_inner());
        // Microns per picture pixel, for the scale bar.
        let um_per_px = ctx
            .slide
            .mpp()
            .map(|m| m.x * f64::from(ctx.slide.levels()[0].size.w) / f64::from(thumb.width()));
        let tumor = ctx
            .colours
            .get(1)
            .copied()
            .unwrap_or(super::CLASS_COLOURS[1]);
        let mut o = overlay(thumb, &labels, tumor);
        legend::draw(&mut o, legend::Key::Tumor(tumor), um_per_px);
        let mut heat = heatmap(thumb, &probs);
        legend::draw(&mut heat, legend::Key::Probability(&colour), um_per_px);
        Ok(vec![
            stage_png(&o, &ctx.paths.file("overlay.png"), ctx.limit)?,
            stage_png(&heat, &ctx.paths.file("heatmap.png"), ctx.limit)?,
        ]
        .into())
    }
}

/// Thumbnail with tumor (`labels > 0`, same size) tinted in the `tumor`
/// colour and outlined: a dark line on the region's edge with a band of the
/// solid colour inside it, both as wide as the picture allows (1 and 2 px at
/// 1000 px, more on larger pictures), so that the outline stands out from
/// eosin pink and survives being shown smaller.
pub fn overlay(thumb: &RgbImage, labels: &[u8], tumor: [u8; 3]) -> RgbImage {
    let tumor = tumor.map(f32::from);
    let (w, h) = thumb.dimensions();
    let dark = (w / 1000).max(1) as i64;
    let band = dark + (w / 500).max(2) as i64;
    let at = |x: i64, y: i64| {
        if x < 0 || y < 0 || x >= i64::from(w) || y >= i64::from(h) {
            0
        } else {
            labels[(y as u32 * w + x as u32) as usize]
        }
    };
    RgbImage::from_fn(w, h, |x, y| {
        let p = thumb.get_pixel(x, y).0.map(f32::from);
        let (xi, yi) = (i64::from(x), i64::from(y));
        if at(xi, yi) == 0 {
            return Rgb(p.map(|v| v as u8));
        }
        // Distance (along rows and columns) to the nearest background pixel.
        let near = |r: i64| (-r..=r).any(|d| at(xi + d, yi) == 0 || at(xi, yi + d) == 0);
        if near(dark) {
            return Rgb([40, 0, 0]);
        }
        let alpha = if near(band) { 1.0 } else { 0.35 };
        Rgb([0, 1, 2].map(|c| (p[c] * (1.0 - alpha) + tumor[c] * alpha) as u8))
    })
}

/// Probability 0–255 → a perceptual colour map (blue → green → yellow → red)
/// laid over the thumbnail, transparent where P is low: below P = 0.1 the
/// slide shows as it is (glass stays glass), and the colour's weight grows
/// to 60% at P ≥ 0.5, so that what the model doubts and what it is sure of
/// both stand out on the tissue.
pub fn heatmap(thumb: &RgbImage, probability: &[u8]) -> RgbImage {
    let (w, h) = thumb.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let p = thumb.get_pixel(x, y).0.map(f32::from);
        let t = f32::from(probability[(y * w + x) as usize]) / 255.0;
        let alpha = 0.6 * ((t - 0.1) / 0.4).clamp(0.0, 1.0);
        let c = colour(t);
        Rgb([0, 1, 2].map(|k| (p[k] * (1.0 - alpha) + c[k] * alpha) as u8))
    })
}

fn colour(t: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [48.0, 18.0, 59.0],
        [40.0, 120.0, 240.0],
        [60.0, 200.0, 100.0],
        [250.0, 220.0, 40.0],
        [220.0, 30.0, 20.0],
    ];
    let x = t.clamp(0.0, 1.0) * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f32;
    [0, 1, 2].map(|k| STOPS[i][k] + (STOPS[i + 1][k] - STOPS[i][k]) * f)
}

/// Encodes a picture as PNG and stages it.
fn stage_png(img: &RgbImage, path: &Path, limit: &WriteLimit) -> Result<Staged, EngineError> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| EngineError::io(path, "cannot encode PNG", std::io::Error::other(e)))?;
    stage_bytes(path, &bytes, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumor_is_tinted_and_outlined_background_untouched() {
        let thumb = RgbImage::from_pixel(10, 10, Rgb([200, 200, 200]));
        let labels: Vec<u8> = (0..100)
            .map(|i| u8::from((i % 10) >= 3 && (i / 10) >= 3))
            .collect();
        let o = overlay(&thumb, &labels, [230, 30, 30]);
        assert_eq!(o.get_pixel(0, 0), &Rgb([200, 200, 200]));
        assert_eq!(o.get_pixel(3, 5), &Rgb([40, 0, 0]), "the edge: dark");
        assert_eq!(o.get_pixel(3, 3), &Rgb([40, 0, 0]), "corner");
        assert_eq!(
            o.get_pixel(4, 6),
            &Rgb([230, 30, 30]),
            "inside the edge: solid"
        );
        let inner = o.get_pixel(6, 6).0;
        assert!(
            inner[0] > inner[1] && inner != [230, 30, 30],
            "tinted: {inner:?}"
        );
        let h = heatmap(&thumb, &[255u8; 100]);
        assert!(
            h.get_pixel(0, 0).0[0] > h.get_pixel(0, 0).0[2],
            "high probability is red"
        );
        // Low probability leaves the slide as it is.
        let h = heatmap(&thumb, &[20u8; 100]);
        assert_eq!(h.get_pixel(5, 5), &Rgb([200, 200, 200]));
    }
}
