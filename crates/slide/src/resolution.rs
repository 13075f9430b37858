//! Choosing the resolution to segment at: a level, or a target mpp read from
//! the nearest finer level and scaled down.

use image::RgbImage;

use crate::{read_padded, read_padded_into, Rect, Size, Slide, SlideError};

/// What the user asked to segment at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolution {
    /// A pyramid level as stored.
    Level(u32),
    /// Microns per pixel; read from the finest level at least that fine, scaled down.
    Mpp(f64),
}

/// The grid that tiles are planned over and the mask is made at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkingLevel {
    /// Pyramid level the pixels are read from.
    pub source_level: u32,
    /// Source-level pixels per working pixel (1 when segmenting a level as stored).
    pub scale: f64,
    /// Working-level pixels.
    pub size: Size,
    /// Level-0 pixels per working pixel.
    pub downsample: f64,
    /// Microns per working pixel, when the slide records its resolution.
    pub mpp: Option<f64>,
}

/// Scales within this relative distance of 1 read the level as stored.
const SAME_SCALE: f64 = 1e-3;

impl WorkingLevel {
    /// The level to read and the scale to apply for `resolution`.
    pub fn choose(slide: &dyn Slide, resolution: Resolution) -> Result<Self, SlideError> {
        let mpp0 = slide.mpp().map(|m| m.mean());
        match resolution {
            Resolution::Level(n) => {
                let l = crate::slide::level(slide, n)?;
                Ok(Self {
                    source_level: n,
                    scale: 1.0,
                    size: l.size,
                    downsample: l.downsample,
                    mpp: mpp0.map(|m| m * l.downsample),
                })
            }
            Resolution::Mpp(target) => {
                if !(target.is_finite() && target > 0.0) {
                    return Err(SlideError::InvalidMpp { requested: target });
                }
                let path = slide.path().to_path_buf();
                let mpp0 = mpp0.ok_or(SlideError::NoMpp {
                    path: path.clone(),
                    requested: target,
                })?;
                let downsample = target / mpp0;
                if downsample < 1.0 - SAME_SCALE {
                    return Err(SlideError::MppTooFine {
                        path,
                        requested: target,
                        available: mpp0,
                    });
                }
                let levels = slide.levels();
                let source = levels
                    .iter()
                    .rposition(|l| l.downsample <= downsample * (1.0 + SAME_SCALE))
                    .unwrap_or(0);
                let l = levels[source];
                let scale = downsample / l.downsample;
                if (scale - 1.0).abs() < SAME_SCALE {
                    return Self::choose(slide, Resolution::Level(source as u32));
                }
                let size = Size::new(
                    ((f64::from(l.size.w) / scale).round() as u32).max(1),
                    ((f64::from(l.size.h) / scale).round() as u32).max(1),
                );
                Ok(Self {
                    source_level: source as u32,
                    scale,
                    size,
                    downsample,
                    mpp: Some(target),
                })
            }
        }
    }

    /// The source-level pixels that `rect` (working-level pixels) is read from.
    pub fn source_rect(&self, rect: Rect) -> Rect {
        if self.scale == 1.0 {
            return rect;
        }
        let x0 = (rect.x as f64 * self.scale).floor() as i64;
        let y0 = (rect.y as f64 * self.scale).floor() as i64;
        let x1 = (rect.right() as f64 * self.scale).ceil() as i64;
        let y1 = (rect.bottom() as f64 * self.scale).ceil() as i64;
        Rect::new(x0, y0, (x1 - x0) as u32, (y1 - y0) as u32)
    }

    /// Announces to `slide` that these working-level rectangles will be read.
    pub fn plan_reads(&self, slide: &dyn Slide, rects: impl Iterator<Item = Rect>) {
        let source: Vec<Rect> = rects.map(|r| self.source_rect(r)).collect();
        slide.plan_reads(self.source_level, &source);
    }

    /// Reads `rect` (working-level pixels, may reach outside) as RGB,
    /// resampling from the source level when the scale is not 1.
    pub fn read(&self, slide: &dyn Slide, rect: Rect) -> Result<RgbImage, SlideError> {
        self.read_into(slide, rect, Vec::new())
    }

    /// [`Self::read`] into `buf`'s memory where it can (its contents are
    /// replaced), so that callers can recycle tile buffers.
    pub fn read_into(
        &self,
        slide: &dyn Slide,
        rect: Rect,
        buf: Vec<u8>,
    ) -> Result<RgbImage, SlideError> {
        if self.scale == 1.0 {
            return read_padded_into(slide, self.source_level, rect, buf);
        }
        let src = read_padded(slide, self.source_level, self.source_rect(rect))?;
        if let Some(k) = self.box_factor() {
            return Ok(box_reduce(&src, k, buf));
        }
        Ok(image::imageops::resize(
            &src,
            rect.w,
            rect.h,
            image::imageops::FilterType::Triangle,
        ))
    }

    /// The whole factor `scale` is, if it is one (within [`SAME_SCALE`]):
    /// such reads are reduced by averaging k×k blocks, as slide pyramids
    /// are made, so that a plain image read at 4× matches a pyramid's
    /// level 4× down.
    fn box_factor(&self) -> Option<u32> {
        let k = self.scale.round();
        ((2.0..=64.0).contains(&k) && (self.scale / k - 1.0).abs() < SAME_SCALE).then_some(k as u32)
    }
}

/// The mean of every `k`×`k` block of `src` (whose sides are multiples of
/// `k`), rounded, into `buf`'s memory.
fn box_reduce(src: &RgbImage, k: u32, mut buf: Vec<u8>) -> RgbImage {
    let (w, h) = (src.width() / k, src.height() / k);
    let (k, sw) = (k as usize, src.width() as usize);
    let raw = src.as_raw();
    let mut sums = vec![0u32; w as usize * 3];
    buf.clear();
    buf.reserve(w as usize * h as usize * 3);
    let half = (k * k / 2) as u32;
    for by in 0..h as usize {
        sums.fill(0);
        for row in raw[by * k * sw * 3..(by + 1) * k * sw * 3].chunks_exact(sw * 3) {
            for (bx, sum) in sums.chunks_exact_mut(3).enumerate() {
                for px in row[bx * k * 3..(bx + 1) * k * 3].chunks_exact(3) {
                    sum[0] += u32::from(px[0]);
                    sum[1] += u32::from(px[1]);
                    sum[2] += u32::from(px[2]);
                }
            }
        }
        let n = (k * k) as u32;
        buf.extend(sums.iter().map(|&s| ((s + half) / n) as u8));
    }
    RgbImage::from_raw(w, h, buf).expect("w*h*3 bytes")
}
