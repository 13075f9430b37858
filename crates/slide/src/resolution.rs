//! Choosing the resolution to segment at: a level, or a target mpp read from
//! the nearest finer level and scaled down.

use image::RgbImage;

use crate::{read_padded, read_padded_into, Rect, Size, Slide, SlideError, StoredTiles};

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

    /// `rect` (working-level pixels, may reach outside) as the stored JPEG
    /// tiles it is made of, for a decoder on a device; `None` when the
    /// working level is resampled or its source level is not read from
    /// stored JPEG tiles (then [`Self::read_into`] is the way).
    pub fn read_stored(
        &self,
        slide: &dyn Slide,
        rect: Rect,
    ) -> Option<Result<StoredTiles, SlideError>> {
        if self.scale != 1.0 {
            return None;
        }
        slide.stored(self.source_level, rect)
    }

    /// Whether [`Self::read_stored`] serves this level with streams a
    /// device decoder takes (probed on the level's first tile), or why not.
    pub fn stored_jpeg(&self, slide: &dyn Slide) -> Result<(), String> {
        let level = self.source_level;
        if self.scale != 1.0 {
            return Err(format!(
                "level {level} is not read from stored baseline JPEG tiles as it is: it is resampled"
            ));
        }
        match slide.stored(level, Rect::new(0, 0, 1, 1)) {
            None => Err(format!("level {level} is not read from stored baseline JPEG tiles")),
            Some(Ok(t)) if !t.pieces.iter().any(|p| matches!(p.content, crate::Piece::Jpeg(_))) => {
                Err(format!(
                    "level {level}'s JPEG tiles are of a kind nvJPEG is not given (RGB components, progressive…)"
                ))
            }
            Some(_) => Ok(()),
        }
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
        if self.scale >= PIECE_SCALE {
            return self.read_in_pieces(slide, rect, buf);
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

    /// [`Self::read_into`] for scales of [`PIECE_SCALE`] and more: the
    /// source region (up to 32² times the tile) is read in strips of at most
    /// about [`PIECE_BYTES`], each reduced to its rows of the tile before the
    /// next is read — by k×k block means for a whole factor k, else by area
    /// averaging (each output pixel the mean of the source area it covers,
    /// fractions weighted). Both give the same pixels however the region is
    /// cut, so the strips change memory, not the result.
    fn read_in_pieces(
        &self,
        slide: &dyn Slide,
        rect: Rect,
        buf: Vec<u8>,
    ) -> Result<RgbImage, SlideError> {
        self.read_in_pieces_of(slide, rect, buf, PIECE_BYTES)
    }

    fn read_in_pieces_of(
        &self,
        slide: &dyn Slide,
        rect: Rect,
        mut buf: Vec<u8>,
        piece_bytes: u64,
    ) -> Result<RgbImage, SlideError> {
        let s = self.scale;
        let src_w = u64::from(self.source_rect(rect).w);
        let per_row = src_w * 3 * (s.ceil() as u64 + 1);
        let rows = u32::try_from(piece_bytes / per_row.max(1))
            .unwrap_or(u32::MAX)
            .clamp(1, rect.h.max(1));
        buf.clear();
        buf.reserve(rect.w as usize * rect.h as usize * 3);
        let mut j0 = 0;
        while j0 < rect.h {
            let j1 = (j0 + rows).min(rect.h);
            let band = Rect::new(rect.x, rect.y + i64::from(j0), rect.w, j1 - j0);
            let source = self.source_rect(band);
            let strip = read_padded(slide, self.source_level, source)?;
            match self.box_factor() {
                Some(k) if strip.width() / k == band.w && strip.height() / k == band.h => {
                    buf.extend_from_slice(box_reduce(&strip, k, Vec::new()).as_raw());
                }
                _ => area_reduce(&strip, band, source, s, &mut buf),
            }
            j0 = j1;
        }
        Ok(RgbImage::from_raw(rect.w, rect.h, buf).expect("w*h*3 bytes"))
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

/// Scales from which reads are made in pieces ([`WorkingLevel::read_in_pieces`]).
const PIECE_SCALE: f64 = 4.0;

/// About the most source bytes one piece holds.
const PIECE_BYTES: u64 = 16 << 20;

/// For each of `n` output pixels from `start`, the source pixels (relative
/// to `origin`) its interval [(start+i)·s, (start+i+1)·s) covers, from the
/// first, with the share of each.
fn spans(start: i64, n: u32, s: f64, origin: i64, len: u32) -> Vec<(usize, Vec<f32>)> {
    (0..i64::from(n))
        .map(|i| {
            let a = (start + i) as f64 * s - origin as f64;
            let b = a + s;
            let first = a.floor().max(0.0) as usize;
            let last = (b.ceil() as usize).min(len as usize).max(first + 1);
            let weights = (first..last)
                .map(|c| {
                    let overlap = (b.min(c as f64 + 1.0) - a.max(c as f64)).max(0.0);
                    (overlap / s) as f32
                })
                .collect();
            (first, weights)
        })
        .collect()
}

/// Area averaging of `strip` (the source pixels `source` of `band`, scale
/// `s`) into `band`'s rows, appended to `out`.
fn area_reduce(strip: &RgbImage, band: Rect, source: Rect, s: f64, out: &mut Vec<u8>) {
    let (sw, sh) = (strip.width(), strip.height());
    let cols = spans(band.x, band.w, s, source.x, sw);
    let rows = spans(band.y, band.h, s, source.y, sh);
    let raw = strip.as_raw();
    // Each source row reduced across first.
    let mut across = vec![0f32; sh as usize * band.w as usize * 3];
    for (r, row) in raw.chunks_exact(sw as usize * 3).enumerate() {
        let dst = &mut across[r * band.w as usize * 3..(r + 1) * band.w as usize * 3];
        for (i, (first, weights)) in cols.iter().enumerate() {
            let mut acc = [0f32; 3];
            for (k, w) in weights.iter().enumerate() {
                let px = &row[(first + k) * 3..(first + k) * 3 + 3];
                for c in 0..3 {
                    acc[c] += w * f32::from(px[c]);
                }
            }
            dst[i * 3..i * 3 + 3].copy_from_slice(&acc);
        }
    }
    let width = band.w as usize * 3;
    for (first, weights) in &rows {
        let mut acc = vec![0f32; width];
        for (k, w) in weights.iter().enumerate() {
            let src = &across[(first + k) * width..(first + k + 1) * width];
            for (a, v) in acc.iter_mut().zip(src) {
                *a += w * v;
            }
        }
        out.extend(acc.iter().map(|v| v.round().clamp(0.0, 255.0) as u8));
    }
}

/// The mean of every `k`×`k` block of `src` (whose sides are multiples of
/// `k`), rounded, into `buf`'s memory.
fn box_reduce(src: &RgbImage, k: u32, mut buf: Vec<u8>) -> RgbImage {
    let (w, h) = (src.width() / k, src.height() / k);
    let (k, sw) = (k as usize, src.width() as usize);
    let mut sums = vec![0u32; w as usize * 3];
    buf.clear();
    buf.reserve(w as usize * h as usize * 3);
    for block_row in src.as_raw().chunks_exact(k * sw * 3).take(h as usize) {
        sums.fill(0);
        for row in block_row.chunks_exact(sw * 3) {
            add_to_blocks(row, k, &mut sums);
        }
        let start = buf.len();
        buf.resize(start + sums.len(), 0);
        block_means(&sums, k, w as usize * k, k as u32, &mut buf[start..]);
    }
    RgbImage::from_raw(w, h, buf).expect("w*h*3 bytes")
}

/// Adds the pixels of the RGB `row` to `sums`, three per block of `k`
/// columns (the last block narrower when the row ends inside it); columns
/// past the blocks `sums` holds are ignored.
pub(crate) fn add_to_blocks(row: &[u8], k: usize, sums: &mut [u32]) {
    for (block, sum) in row.chunks(k * 3).zip(sums.chunks_exact_mut(3)) {
        for px in block.chunks_exact(3) {
            sum[0] += u32::from(px[0]);
            sum[1] += u32::from(px[1]);
            sum[2] += u32::from(px[2]);
        }
    }
}

/// The rounded means of block `sums` ([`add_to_blocks`]) into `out`: blocks
/// `k` columns wide over `width` source columns (the last one narrower when
/// `k` does not divide it) and `rows` rows tall.
pub(crate) fn block_means(sums: &[u32], k: usize, width: usize, rows: u32, out: &mut [u8]) {
    let blocks = sums.len() / 3;
    for (x, (o, sum)) in out
        .chunks_exact_mut(3)
        .zip(sums.chunks_exact(3))
        .enumerate()
    {
        let bw = if x + 1 == blocks { width - x * k } else { k };
        let n = bw as u32 * rows;
        for c in 0..3 {
            o[c] = ((sum[c] + n / 2) / n) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slide whose pixels are a function of their place.
    fn slide(dir: &std::path::Path) -> Box<dyn Slide> {
        let path = dir.join("g.png");
        RgbImage::from_fn(2000, 1500, |x, y| {
            image::Rgb([
                (x % 256) as u8,
                (y % 256) as u8,
                ((x * 7 + y * 3) % 256) as u8,
            ])
        })
        .save(&path)
        .unwrap();
        crate::open(&path).unwrap()
    }

    /// Reads at 4× and more come in pieces: the same pixels whatever the
    /// piece size; a whole factor gives the k×k block means exactly, any
    /// factor the area mean.
    #[test]
    fn pieces_give_the_same_pixels_however_the_region_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let s = slide(dir.path());
        for scale in [4.0, 5.3, 8.0, 11.7] {
            let working = WorkingLevel {
                source_level: 0,
                scale,
                size: Size::new(
                    (2000.0 / scale).round() as u32,
                    (1500.0 / scale).round() as u32,
                ),
                downsample: scale,
                mpp: None,
            };
            let rect = Rect::new(7, 5, 90, 70);
            let whole = working
                .read_in_pieces_of(s.as_ref(), rect, Vec::new(), u64::MAX)
                .unwrap();
            let cut = working
                .read_in_pieces_of(s.as_ref(), rect, Vec::new(), 1)
                .unwrap();
            assert_eq!(whole.as_raw(), cut.as_raw(), "scale {scale}");
            assert_eq!(whole.dimensions(), (90, 70));
            if scale == 4.0 {
                let src = read_padded(s.as_ref(), 0, working.source_rect(rect)).unwrap();
                assert_eq!(whole.as_raw(), box_reduce(&src, 4, Vec::new()).as_raw());
            }
        }
    }
}
