//! Deep Zoom tiles made on demand from a slide's levels (or a mask's or
//! probability map's pyramid, read as a slide).
//!
//! Deep Zoom level `l` of a `w`×`h` image is the image scaled by
//! 2^(l − max), max = ⌈log2 max(w, h)⌉, each side rounded up; its tile
//! (x, y) covers [x·T − O, (x+1)·T + O) clipped to the level (no overlap
//! before the first tile), as OpenSeadragon and OpenSlide's DeepZoom expect.
//! A tile is read from the coarsest slide level at least as fine as the Deep
//! Zoom level and reduced by area averaging (labels: the nearest pixel),
//! reading at most [`MAX_BLOCK_PIXELS`] at once. A slide whose coarsest
//! level is larger than that (a single-level image) gets an overview of at
//! most [`OVERVIEW_SIDE`] pixels ([`sampled_overview`]), made once in the
//! background when it is opened: the coarse tiles come from it (503 "not yet" until it
//! is made), the tiles between it and the slide's level from sampled rows.

use image::RgbImage;
use wsiseg_slide::{Rect, Slide};

/// Deep Zoom tile side (pixels, without the overlap).
pub const TILE: u32 = 510;
/// Deep Zoom overlap (pixels on each inner side).
pub const OVERLAP: u32 = 1;
/// The most source pixels a tile reads as one block (16 tiles).
pub const MAX_BLOCK_PIXELS: u64 = 16 * 512 * 512;

/// The overview of a slide without a coarse level, longer side.
pub const OVERVIEW_SIDE: u32 = 4096;

/// An image served as Deep Zoom tiles.
pub struct Pyramid {
    /// What it is read from.
    pub slide: std::sync::Arc<dyn Slide>,
    /// Level-0 width.
    pub width: u32,
    /// Level-0 height.
    pub height: u32,
    /// A slide without a small level: its overview, once made.
    overview: Option<std::sync::Arc<std::sync::OnceLock<Result<RgbImage, String>>>>,
}

/// Why a tile could not be made.
#[derive(Debug)]
pub enum TileError {
    /// The slide could not be read (the reader's message).
    Read(String),
    /// The overview it comes from is being made.
    NotYet,
}

/// How pixels are reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// The mean of the pixels covered (tissue, probabilities).
    Mean,
    /// The nearest pixel (labels).
    Nearest,
}

impl Pyramid {
    /// Wraps an open slide; one without a small level starts making its
    /// overview in the background.
    pub fn new(slide: Box<dyn Slide>) -> Option<Self> {
        let l0 = slide.levels().first()?.size;
        let last = slide.levels().last()?.size;
        if l0.w == 0 || l0.h == 0 {
            return None;
        }
        let slide: std::sync::Arc<dyn Slide> = slide.into();
        let overview = (u64::from(last.w) * u64::from(last.h) > MAX_BLOCK_PIXELS).then(|| {
            let cell = std::sync::Arc::new(std::sync::OnceLock::new());
            let (c, s) = (cell.clone(), slide.clone());
            let started = std::thread::Builder::new()
                .name("view-overview".into())
                .spawn(move || {
                    let t = std::time::Instant::now();
                    let made = sampled_overview(&*s, OVERVIEW_SIDE);
                    tracing::info!(
                        "{}: overview made in {:.1} s (the slide has no small level)",
                        s.path().display(),
                        t.elapsed().as_secs_f64()
                    );
                    let _ = c.set(made);
                });
            if let Err(e) = started {
                let _ = cell.set(Err(format!("cannot start the overview: {e}")));
            }
            cell
        });
        Some(Self {
            width: l0.w,
            height: l0.h,
            slide,
            overview,
        })
    }

    /// Whether its overview is still being made.
    pub fn overview_pending(&self) -> bool {
        self.overview.as_ref().is_some_and(|o| o.get().is_none())
    }

    /// The deepest Deep Zoom level.
    pub fn max_level(&self) -> u32 {
        max_level(self.width, self.height)
    }

    /// The pixels of tile (`col`, `row`) of Deep Zoom level `level`, or
    /// `Ok(None)` when there is no such tile.
    pub fn tile(
        &self,
        level: u32,
        col: u32,
        row: u32,
        reduce: Reduce,
    ) -> Result<Option<RgbImage>, TileError> {
        let max = self.max_level();
        if level > max {
            return Ok(None);
        }
        let scale = f64::from(1u32 << (max - level).min(31));
        let (lw, lh) = (
            (f64::from(self.width) / scale).ceil() as u32,
            (f64::from(self.height) / scale).ceil() as u32,
        );
        let (Some(xs), Some(ys)) = (span(col, lw), span(row, lh)) else {
            return Ok(None);
        };
        // The coarsest level at least as fine as this one.
        let levels = self.slide.levels();
        let k = levels
            .iter()
            .rposition(|l| l.downsample <= scale * 1.001)
            .unwrap_or(0);
        let src = levels[k];
        let f = scale / src.downsample;
        let clip = |v: f64, max: u32| (v.max(0.0) as u32).min(max);
        let sx0 = clip((f64::from(xs.0) * f).floor(), src.size.w - 1);
        let sy0 = clip((f64::from(ys.0) * f).floor(), src.size.h - 1);
        let sx1 = clip((f64::from(xs.1) * f).ceil(), src.size.w).max(sx0 + 1);
        let sy1 = clip((f64::from(ys.1) * f).ceil(), src.size.h).max(sy0 + 1);
        let (ow, oh) = (xs.1 - xs.0, ys.1 - ys.0);
        let read = |x: u32, y: u32, w: u32, h: u32| {
            self.slide
                .read_inside(
                    k as u32,
                    Rect {
                        x: i64::from(x),
                        y: i64::from(y),
                        w,
                        h,
                    },
                )
                .map_err(|e| TileError::Read(e.to_string()))
        };
        if u64::from(sx1 - sx0) * u64::from(sy1 - sy0) <= MAX_BLOCK_PIXELS {
            let block = read(sx0, sy0, sx1 - sx0, sy1 - sy0)?;
            return Ok(Some(resize(&block, ow, oh, reduce)));
        }
        // No level near this one: the overview, when it is fine enough.
        let side = self.width.max(self.height);
        if let (Some(cell), true) = (
            &self.overview,
            f64::from(side.div_ceil(OVERVIEW_SIDE)) <= scale,
        ) {
            let overview = cell
                .get()
                .ok_or(TileError::NotYet)?
                .as_ref()
                .map_err(|e| TileError::Read(e.clone()))?;
            let (vw, vh) = (overview.width(), overview.height());
            let (fx, fy) = (
                f64::from(vw) / f64::from(self.width) * scale,
                f64::from(vh) / f64::from(self.height) * scale,
            );
            let vx0 = ((f64::from(xs.0) * fx) as u32).min(vw - 1);
            let vy0 = ((f64::from(ys.0) * fy) as u32).min(vh - 1);
            let vx1 = ((f64::from(xs.1) * fx).ceil() as u32).clamp(vx0 + 1, vw);
            let vy1 = ((f64::from(ys.1) * fy).ceil() as u32).clamp(vy0 + 1, vh);
            let block =
                image::imageops::crop_imm(overview, vx0, vy0, vx1 - vx0, vy1 - vy0).to_image();
            return Ok(Some(resize(&block, ow, oh, reduce)));
        }
        // Sampled rows: one source row per tile row.
        let sw = sx1 - sx0;
        let fy = f64::from(sy1 - sy0) / f64::from(oh);
        let mut out = RgbImage::new(ow, oh);
        for j in 0..oh {
            let sy = sy0 + ((f64::from(j) + 0.5) * fy) as u32;
            let line = read(sx0, sy.min(sy1 - 1), sw, 1)?;
            let line = resize(&line, ow, 1, reduce);
            out.as_mut()[(j * ow * 3) as usize..((j + 1) * ow * 3) as usize]
                .copy_from_slice(line.as_raw());
        }
        Ok(Some(out))
    }
}

/// Source rows read together when an overview is sampled (a tile row of a
/// 512-px tiled level): each stored tile is decoded once.
const OVERVIEW_BAND: u32 = 512;
/// Source columns of one strip read for an overview.
const OVERVIEW_CHUNK: u32 = 8192;

/// An overview of `slide`'s coarsest level, longer side at most `side`:
/// the pixel nearest each overview pixel's centre (no averaging: reading
/// every pixel of an 8-gigapixel level would take minutes). Rows are read
/// as 1-pixel strips of at most [`OVERVIEW_CHUNK`] pixels, every strip of one
/// band of [`OVERVIEW_BAND`] rows and one chunk of columns together, so that
/// a tiled level's tiles are decoded once each.
pub fn sampled_overview(slide: &dyn Slide, side: u32) -> Result<RgbImage, String> {
    let levels = slide.levels();
    let k = levels.len().saturating_sub(1);
    let size = levels.get(k).ok_or("no levels")?.size;
    let step = size.w.max(size.h).div_ceil(side.max(1)).max(1);
    let (ow, oh) = (size.w.div_ceil(step), size.h.div_ceil(step));
    let at = |i: u32, len: u32| (i * step + step / 2).min(len - 1);
    let mut out = RgbImage::new(ow, oh);
    let mut j0 = 0;
    while j0 < oh {
        // The output rows whose source rows lie in this band.
        let band = at(j0, size.h) / OVERVIEW_BAND;
        let mut j1 = j0 + 1;
        while j1 < oh && at(j1, size.h) / OVERVIEW_BAND == band {
            j1 += 1;
        }
        for cx in (0..size.w).step_by(OVERVIEW_CHUNK as usize) {
            let cw = OVERVIEW_CHUNK.min(size.w - cx);
            let cols: Vec<(u32, u32)> = (0..ow)
                .map(|i| (i, at(i, size.w)))
                .filter(|&(_, x)| x >= cx && x < cx + cw)
                .collect();
            if cols.is_empty() {
                continue;
            }
            for j in j0..j1 {
                let strip = slide
                    .read_inside(
                        k as u32,
                        Rect {
                            x: i64::from(cx),
                            y: i64::from(at(j, size.h)),
                            w: cw,
                            h: 1,
                        },
                    )
                    .map_err(|e| e.to_string())?;
                for &(i, x) in &cols {
                    out.put_pixel(i, j, *strip.get_pixel(x - cx, 0));
                }
            }
        }
        j0 = j1;
    }
    Ok(out)
}

/// The deepest Deep Zoom level of a `w`×`h` image.
pub fn max_level(w: u32, h: u32) -> u32 {
    let side = w.max(h).max(1);
    32 - (side - 1).leading_zeros()
}

/// Pixels [start, end) of tile `i` along a side of `len` pixels.
fn span(i: u32, len: u32) -> Option<(u32, u32)> {
    let start = u64::from(i) * u64::from(TILE);
    if start >= u64::from(len) {
        return None;
    }
    let start = start as u32;
    let from = start.saturating_sub(if i > 0 { OVERLAP } else { 0 });
    let to = (u64::from(start) + u64::from(TILE) + u64::from(OVERLAP)).min(u64::from(len)) as u32;
    Some((from, to))
}

/// `src` at `w`×`h`: the mean of the source pixels each covers, or the
/// nearest one.
pub fn resize(src: &RgbImage, w: u32, h: u32, reduce: Reduce) -> RgbImage {
    if src.width() == w && src.height() == h {
        return src.clone();
    }
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let (fx, fy) = (sw as f64 / f64::from(w), sh as f64 / f64::from(h));
    let raw = src.as_raw();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    // Each output column's source columns, computed once.
    let cols: Vec<(usize, usize)> = (0..w as usize).map(|i| bounds(i, fx, sw, reduce)).collect();
    for j in 0..h as usize {
        let (y0, y1) = bounds(j, fy, sh, reduce);
        for &(x0, x1) in &cols {
            let mut sum = [0u32; 3];
            for y in y0..y1 {
                let row = &raw[(y * sw + x0) * 3..(y * sw + x1) * 3];
                for px in row.chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += u32::from(px[c]);
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            out.extend(sum.map(|s| ((s + n / 2) / n) as u8));
        }
    }
    RgbImage::from_raw(w, h, out).expect("w*h*3 bytes")
}

/// The source pixels [a, b) output pixel `i` covers at `f` source pixels per
/// output pixel.
fn bounds(i: usize, f: f64, len: usize, reduce: Reduce) -> (usize, usize) {
    match reduce {
        Reduce::Nearest => {
            let c = (((i as f64) + 0.5) * f) as usize;
            let c = c.min(len - 1);
            (c, c + 1)
        }
        Reduce::Mean => {
            let a = ((i as f64) * f).floor() as usize;
            let b = (((i + 1) as f64) * f).ceil() as usize;
            let a = a.min(len - 1);
            (a, b.clamp(a + 1, len))
        }
    }
}

/// JPEG at quality 85 (the slide's tiles).
pub fn jpeg(img: &RgbImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(
            img.as_raw(),
            img.width() as u16,
            img.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// An RGBA PNG (fast compression) of `w`×`h` pixels.
pub fn png_rgba(w: u32, h: u32, rgba: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(rgba).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A mask tile: its class colours, the background's transparent.
pub fn mask_png(img: &RgbImage, background: [u8; 3]) -> Result<Vec<u8>, String> {
    let mut rgba = Vec::with_capacity(img.as_raw().len() / 3 * 4);
    for px in img.as_raw().chunks_exact(3) {
        let alpha = if px == background { 0 } else { 255 };
        rgba.extend_from_slice(&[px[0], px[1], px[2], alpha]);
    }
    png_rgba(img.width(), img.height(), &rgba)
}

/// P(tumor) under this is left transparent in the heat map.
pub const HEAT_FLOOR: u8 = 26;

/// The heat map's colour of P(tumor) = `v`/255: dark blue through cyan,
/// yellow to red (a perceptual "turbo"-like ramp, piecewise linear).
pub fn heat_colour(v: u8) -> [u8; 3] {
    const STOPS: [(f32, [f32; 3]); 6] = [
        (0.0, [48.0, 18.0, 59.0]),
        (0.2, [50.0, 136.0, 237.0]),
        (0.4, [27.0, 229.0, 181.0]),
        (0.6, [194.0, 242.0, 52.0]),
        (0.8, [250.0, 140.0, 30.0]),
        (1.0, [180.0, 4.0, 4.0]),
    ];
    let t = f32::from(v) / 255.0;
    let i = STOPS.iter().rposition(|s| s.0 <= t).unwrap_or(0).min(4);
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let u = (t - a.0) / (b.0 - a.0);
    [0, 1, 2].map(|c| (a.1[c] + (b.1[c] - a.1[c]) * u).round() as u8)
}

/// A heat-map tile from a probability map's grey pixels.
pub fn heat_png(img: &RgbImage) -> Result<Vec<u8>, String> {
    let mut rgba = Vec::with_capacity(img.as_raw().len() / 3 * 4);
    for px in img.as_raw().chunks_exact(3) {
        let v = px[0];
        let [r, g, b] = heat_colour(v);
        rgba.extend_from_slice(&[r, g, b, if v < HEAT_FLOOR { 0 } else { 255 }]);
    }
    png_rgba(img.width(), img.height(), &rgba)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_zoom_levels_and_spans_match_openseadragon() {
        assert_eq!(max_level(1, 1), 0);
        assert_eq!(max_level(2, 1), 1);
        assert_eq!(max_level(1024, 1000), 10);
        assert_eq!(max_level(1025, 10), 11);
        assert_eq!(max_level(100_000, 80_000), 17);
        assert_eq!(span(0, 1000), Some((0, 511)));
        assert_eq!(span(1, 1000), Some((509, 1000)));
        assert_eq!(span(2, 1000), None);
        assert_eq!(span(u32::MAX, 1000), None);
    }

    #[test]
    fn mean_and_nearest_reduction() {
        let src = RgbImage::from_fn(4, 2, |x, _| image::Rgb([(x * 10) as u8, 0, 255]));
        let mean = resize(&src, 2, 1, Reduce::Mean);
        assert_eq!(mean.get_pixel(0, 0).0, [5, 0, 255]);
        assert_eq!(mean.get_pixel(1, 0).0, [25, 0, 255]);
        let near = resize(&src, 2, 1, Reduce::Nearest);
        assert_eq!(near.get_pixel(0, 0).0, [10, 0, 255]);
        assert_eq!(near.get_pixel(1, 0).0, [30, 0, 255]);
    }

    /// An in-memory slide whose pixel (x, y) of every level is (x, y, level)
    /// modulo 256, counting read pixels.
    struct Ramp {
        levels: Vec<wsiseg_slide::Level>,
        read: std::sync::atomic::AtomicU64,
    }

    impl Ramp {
        fn new(sizes: &[(u32, u32, f64)]) -> Self {
            Self {
                levels: sizes
                    .iter()
                    .map(|&(w, h, downsample)| wsiseg_slide::Level {
                        size: wsiseg_slide::Size::new(w, h),
                        downsample,
                    })
                    .collect(),
                read: 0.into(),
            }
        }
    }

    impl Slide for Ramp {
        fn path(&self) -> &std::path::Path {
            std::path::Path::new("ramp")
        }
        fn format(&self) -> &str {
            "test"
        }
        fn levels(&self) -> &[wsiseg_slide::Level] {
            &self.levels
        }
        fn mpp(&self) -> Option<wsiseg_slide::Mpp> {
            None
        }
        fn read_inside(&self, level: u32, r: Rect) -> Result<RgbImage, wsiseg_slide::SlideError> {
            let size = self.levels[level as usize].size;
            assert!(
                r.x >= 0 && r.y >= 0 && r.x as u32 + r.w <= size.w && r.y as u32 + r.h <= size.h,
                "{r:?}"
            );
            self.read.fetch_add(
                u64::from(r.w) * u64::from(r.h),
                std::sync::atomic::Ordering::Relaxed,
            );
            Ok(RgbImage::from_fn(r.w, r.h, |x, y| {
                image::Rgb([(r.x as u32 + x) as u8, (r.y as u32 + y) as u8, level as u8])
            }))
        }
    }

    #[test]
    fn tiles_come_from_the_nearest_finer_level() {
        // 2000×1000 with a level 4× smaller: Deep Zoom max level 11.
        let p = Pyramid::new(Box::new(Ramp::new(&[(2000, 1000, 1.0), (500, 250, 4.0)]))).unwrap();
        assert_eq!(p.max_level(), 11);
        assert!(p.overview.is_none(), "a small level: no overview");
        // Full resolution, tile (1, 0): columns 509.. of level 0, as stored.
        let t = p.tile(11, 1, 0, Reduce::Mean).unwrap().unwrap();
        assert_eq!((t.width(), t.height()), (512, 511));
        assert_eq!(t.get_pixel(0, 0).0, [(509 % 256) as u8, 0, 0]);
        // Half resolution: the mean of 2×2 level-0 pixels (x = 0, 1 → 0.5).
        let t = p.tile(10, 0, 0, Reduce::Mean).unwrap().unwrap();
        assert_eq!(t.get_pixel(3, 0).0, [7, 1, 0]);
        // A quarter: level 1 as stored.
        let t = p.tile(9, 0, 0, Reduce::Nearest).unwrap().unwrap();
        assert_eq!(
            (t.width(), t.height(), t.get_pixel(5, 6).0),
            (500, 250, [5, 6, 1])
        );
        // No such tiles.
        assert!(p.tile(12, 0, 0, Reduce::Mean).unwrap().is_none());
        assert!(p.tile(11, 4, 0, Reduce::Mean).unwrap().is_none());
    }

    #[test]
    fn a_level_without_a_small_one_gets_a_sampled_overview() {
        let ramp = Ramp::new(&[(20_000, 10_000, 1.0)]);
        let o = sampled_overview(&ramp, 1000).unwrap();
        // Every 20th pixel, from the middle of each 20×20 cell.
        assert_eq!((o.width(), o.height()), (1000, 500));
        assert_eq!(o.get_pixel(3, 2).0, [70, 50, 0]);
        // Only the sampled rows were read.
        assert_eq!(
            ramp.read.load(std::sync::atomic::Ordering::Relaxed),
            500 * 20_000
        );
        // Served: coarse tiles wait for it, then come from it; fine ones are
        // read from the level.
        let p = Pyramid::new(Box::new(Ramp::new(&[(20_000, 10_000, 1.0)]))).unwrap();
        let start = std::time::Instant::now();
        let coarse = loop {
            match p.tile(8, 0, 0, Reduce::Mean) {
                Err(TileError::NotYet) => std::thread::sleep(std::time::Duration::from_millis(5)),
                other => break other.unwrap().unwrap(),
            }
            assert!(start.elapsed().as_secs() < 60);
        };
        assert_eq!((coarse.width(), coarse.height()), (157, 79)); // 20000 / 2^7
        assert_eq!(
            p.tile(15, 0, 0, Reduce::Mean)
                .unwrap()
                .unwrap()
                .get_pixel(1, 2)
                .0,
            [1, 2, 0]
        );
    }

    #[test]
    fn heat_ramp_ends() {
        assert_eq!(heat_colour(0), [48, 18, 59]);
        assert_eq!(heat_colour(255), [180, 4, 4]);
    }
}
