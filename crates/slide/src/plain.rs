//! Plain PNG, JPEG and TIFF images, read as a stream of rows.
//!
//! These have one level and usually no resolution. They are never decoded
//! whole: the reader decodes forward from the top and holds only the rows
//! that reads still need — the rows of the planned reads not yet served
//! ([`Slide::plan_reads`]) or, without a plan, those of the latest read — so
//! a 100000×80000 PNG segments in the memory of a band of tile rows. A read
//! above the rows held starts the decoder again from the top (a second pass:
//! the thumbnail is one pass, the tiles another).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::{ImageFormat, RgbImage};

use crate::resolution::{add_to_blocks, block_means};
use crate::rows::{open_rows, RowSource};
use crate::{Level, Mpp, Rect, Slide, SlideError};

/// The plain image format of `path` from its first bytes, if it is one.
pub(crate) fn sniff(path: &Path) -> Result<Option<ImageFormat>, SlideError> {
    let mut head = [0u8; 32];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| SlideError::Io {
            path: path.to_path_buf(),
            what: "file",
            source,
        })?;
    Ok(match image::guess_format(&head[..n]) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff)) => Some(f),
        // BigTIFF, which the image crate does not sniff.
        _ if n >= 4 && matches!(head[..4], [b'I', b'I', 43, 0] | [b'M', b'M', 0, 43]) => {
            Some(ImageFormat::Tiff)
        }
        _ => None,
    })
}

/// A plain image, decoded as a stream of rows. Besides level 0 it offers
/// reduced levels (2×, 4×, … down to about 256 pixels a side) made while
/// reading by averaging blocks, as slide pyramids are made: a read at 4×
/// holds rows of the reduced level, not four times as many of level 0.
pub struct PlainImage {
    path: PathBuf,
    format: ImageFormat,
    levels: Vec<Level>,
    limit: u64,
    stream: Mutex<Stream>,
}

/// The most decoded rows a plain image holds for planned reads.
const MAX_WINDOW_BYTES: usize = 512 << 20;

/// Reduced levels stop when their longer side would be below this.
const SMALLEST_LEVEL: u32 = 256;

/// The decoder and the rows of one level that reads may still need.
#[derive(Default)]
struct Stream {
    source: Option<LevelRows>,
    /// Rows of `source`'s level decoded so far: `rows` holds
    /// `next - rows.len() .. next`.
    next: u32,
    rows: VecDeque<Vec<u8>>,
    /// Row buffers to reuse.
    spare: Vec<Vec<u8>>,
    /// The level planned reads are on, those not yet served, and how many
    /// start at each row.
    planned_level: u32,
    planned: HashMap<Rect, usize>,
    pending_rows: BTreeMap<i64, usize>,
    /// The most rows held at once (for tests).
    most_rows: usize,
}

impl Stream {
    fn first(&self) -> u32 {
        self.next - self.rows.len() as u32
    }

    /// Counts `rect` of `level` as served, if it was planned.
    fn served(&mut self, level: u32, rect: Rect) {
        if level != self.planned_level {
            return;
        }
        if let Some(n) = self.planned.get_mut(&rect) {
            *n -= 1;
            if *n == 0 {
                self.planned.remove(&rect);
            }
            if let Some(c) = self.pending_rows.get_mut(&rect.y) {
                *c -= 1;
                if *c == 0 {
                    self.pending_rows.remove(&rect.y);
                }
            }
        }
    }
}

/// The rows of level `level`, 2^level× down, each the mean of blocks of
/// 2^level × 2^level level-0 pixels from `source` (fewer at the right and
/// bottom edges).
struct LevelRows {
    source: Box<dyn RowSource>,
    level: u32,
    size0: crate::Size,
    /// Level-0 rows consumed.
    y0: u32,
    row0: Vec<u8>,
    sums: Vec<u32>,
}

impl LevelRows {
    /// The next row of the level into `out`; an error names the level-0 row.
    fn next_row(&mut self, out: &mut [u8]) -> Result<(), String> {
        let at = |y: u32, e: String| format!("row {y}: {e}");
        if self.level == 0 {
            self.source.read_rows(out, 1).map_err(|e| at(self.y0, e))?;
            self.y0 += 1;
            return Ok(());
        }
        let (k, w0) = (1usize << self.level, self.size0.w as usize);
        let rows = (k as u32).min(self.size0.h - self.y0);
        self.row0.resize(w0 * 3, 0);
        self.sums.clear();
        self.sums.resize(out.len(), 0);
        for _ in 0..rows {
            self.source
                .read_rows(&mut self.row0, 1)
                .map_err(|e| at(self.y0, e))?;
            self.y0 += 1;
            add_to_blocks(&self.row0, k, &mut self.sums);
        }
        block_means(&self.sums, k, w0, rows, out);
        Ok(())
    }
}

impl PlainImage {
    /// Opens `path` (already sniffed as `format`): reads its header and
    /// checks that a band of it can be decoded within the memory limit.
    pub fn open(path: &Path, format: ImageFormat) -> Result<Self, SlideError> {
        let limit = memory_limit();
        let (size, source) = open_rows(path, format, limit)?;
        if size.w == 0 || size.h == 0 {
            return Err(SlideError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("the image is {}×{} pixels", size.w, size.h),
            });
        }
        let mut levels = vec![Level {
            size,
            downsample: 1.0,
        }];
        for i in 1..=12 {
            let k = 1u32 << i;
            let reduced = crate::Size::new(size.w.div_ceil(k), size.h.div_ceil(k));
            if reduced.w.max(reduced.h) < SMALLEST_LEVEL {
                break;
            }
            levels.push(Level {
                size: reduced,
                downsample: f64::from(k),
            });
        }
        let image = Self {
            path: path.to_path_buf(),
            format,
            levels,
            limit,
            stream: Mutex::new(Stream::default()),
        };
        image.lock().source = Some(image.level_rows(0, source));
        Ok(image)
    }

    fn level_rows(&self, level: u32, source: Box<dyn RowSource>) -> LevelRows {
        LevelRows {
            source,
            level,
            size0: self.levels[0].size,
            y0: 0,
            row0: Vec::new(),
            sums: Vec::new(),
        }
    }

    /// The most rows held decoded at once so far.
    #[cfg(test)]
    fn most_rows_held(&self) -> usize {
        self.lock().most_rows
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stream> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies `rect` of `level` into `out` (`rect.w × rect.h × 3` bytes),
    /// decoding forward as far as its last row.
    fn copy_rect(&self, level: u32, rect: Rect, out: &mut [u8]) -> Result<(), SlideError> {
        let mut s = self.lock();
        s.served(level, rect);
        let (top, bottom) = (rect.y as u32, rect.bottom() as u32);
        let same_level = s.source.as_ref().is_some_and(|r| r.level == level);
        if !same_level || top < s.first() {
            let (_, source) = open_rows(&self.path, self.format, self.limit)?;
            let Stream {
                rows, spare, next, ..
            } = &mut *s;
            spare.extend(rows.drain(..));
            *next = 0;
            s.source = Some(self.level_rows(level, source));
        }
        // Rows above both this read and every planned one are done with.
        // Should reads not follow the plan (rows held past MAX_WINDOW_BYTES),
        // rows above this read go anyway: a later read above restarts the
        // decoder, slower but in bounded memory.
        let stride = self.levels[level as usize].size.w as usize * 3;
        let held = (s.rows.len() + rect.h as usize) * stride;
        let keep_from = match s.pending_rows.keys().next() {
            Some(&y) if s.planned_level == level && held <= MAX_WINDOW_BYTES => {
                top.min(y.max(0) as u32)
            }
            _ => top,
        };
        while s.first() < keep_from && !s.rows.is_empty() {
            let row = s.rows.pop_front().expect("not empty");
            s.spare.push(row);
        }
        while s.next < bottom {
            let mut row = s.spare.pop().unwrap_or_default();
            row.resize(stride, 0);
            let y = s.next;
            let read = s.source.as_mut().expect("opened").next_row(&mut row);
            if let Err(detail) = read {
                s.source = None;
                return Err(SlideError::Corrupt {
                    path: self.path.clone(),
                    detail,
                });
            }
            s.next += 1;
            if y < keep_from {
                s.spare.push(row);
            } else {
                s.rows.push_back(row);
            }
        }
        s.most_rows = s.most_rows.max(s.rows.len());
        let first = s.first();
        let (x0, len) = (rect.x as usize * 3, rect.w as usize * 3);
        for (i, dst) in out.chunks_exact_mut(len).enumerate() {
            let row = &s.rows[(top - first) as usize + i];
            dst.copy_from_slice(&row[x0..x0 + len]);
        }
        Ok(())
    }
}

/// The most one plain image's decoder may hold, if set ([`set_decode_limit`]).
static DECODE_LIMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the most memory one plain image's decoder may hold, in bytes (a
/// band of rows is far less; a progressive JPEG or interlaced PNG is decoded
/// whole and may need this much). Default: half of this machine's memory.
pub fn set_decode_limit(bytes: u64) {
    DECODE_LIMIT.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// [`set_decode_limit`]'s limit, else half of this machine's memory.
fn memory_limit() -> u64 {
    let set = DECODE_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
    if set > 0 {
        set
    } else {
        machine_memory() / 2
    }
}

/// This machine's memory for wsiseg, in bytes: physical RAM, or the control
/// group's limit when a container sets a lower one.
pub fn machine_memory() -> u64 {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ram = if pages > 0 && page > 0 {
        (pages as u64).saturating_mul(page as u64)
    } else {
        8 << 30
    };
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    cgroup.map_or(ram, |c| c.min(ram))
}

impl Slide for PlainImage {
    fn path(&self) -> &Path {
        &self.path
    }
    fn format(&self) -> &str {
        match self.format {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
            _ => "tiff",
        }
    }
    fn levels(&self) -> &[Level] {
        &self.levels
    }
    fn mpp(&self) -> Option<Mpp> {
        None
    }
    fn read_inside(&self, level: u32, rect: Rect) -> Result<RgbImage, SlideError> {
        self.read_inside_into(level, rect, Vec::new())
    }
    fn read_inside_into(
        &self,
        level: u32,
        rect: Rect,
        mut buf: Vec<u8>,
    ) -> Result<RgbImage, SlideError> {
        crate::slide::level(self, level)?;
        buf.clear();
        buf.resize(rect.w as usize * rect.h as usize * 3, 0);
        self.copy_rect(level, rect, &mut buf)?;
        Ok(RgbImage::from_raw(rect.w, rect.h, buf).expect("w*h*3 bytes"))
    }
    fn plan_reads(&self, level: u32, rects: &[Rect]) {
        let Some(size) = self.levels.get(level as usize).map(|l| l.size) else {
            return;
        };
        let mut s = self.lock();
        s.planned_level = level;
        s.planned.clear();
        s.pending_rows.clear();
        for r in rects.iter().filter_map(|r| r.clip_to(size)) {
            *s.planned.entry(r).or_default() += 1;
            *s.pending_rows.entry(r.y).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture with a different colour at every pixel (so that a row or
    /// column out of place shows).
    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x % 251) as u8,
                (y % 241) as u8,
                ((x / 7 + y / 5) % 256) as u8,
            ])
        })
    }

    /// Every tile of a planned row-order read matches the picture, and the
    /// reader never held more than `tile + stride` rows (a band, not the
    /// image); a read above the band restarts the decoder and is right too.
    fn streams(format: ImageFormat, ext: &str, exact: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("p.{ext}"));
        let (w, h) = (301, 2000);
        let pic = picture(w, h);
        pic.save_with_format(&path, format).unwrap();
        // What the image crate decodes (for JPEG, another decoder's rounding).
        let pic = image::open(&path).unwrap().to_rgb8();
        let slide = PlainImage::open(&path, format).unwrap();
        assert_eq!(slide.levels()[0].size, crate::Size::new(w, h));
        let plan = crate::TilePlan::new(slide.levels()[0].size, 128, 16).unwrap();
        let rects: Vec<Rect> = plan.tiles().map(|t| t.rect).collect();
        slide.plan_reads(0, &rects);
        for r in &rects {
            let got = crate::read_padded(&slide, 0, *r).unwrap();
            let inside = r.clip_to(slide.levels()[0].size).unwrap();
            for y in 0..inside.h {
                for x in 0..inside.w {
                    let (gx, gy) = ((inside.x - r.x) as u32 + x, (inside.y - r.y) as u32 + y);
                    let want = pic.get_pixel(inside.x as u32 + x, inside.y as u32 + y);
                    let have = got.get_pixel(gx, gy);
                    let close = want.0.iter().zip(have.0).all(|(a, b)| a.abs_diff(b) <= 4);
                    assert!(
                        if exact { want == have } else { close },
                        "{ext} tile {r:?} pixel {x},{y}: {have:?} vs {want:?}"
                    );
                }
            }
        }
        let held = slide.most_rows_held();
        assert!(held <= 128 + 112, "{ext}: held {held} rows of {h}");
        let again = slide.read_inside(0, Rect::new(5, 7, 20, 3)).unwrap();
        assert_eq!(again.get_pixel(0, 0), pic.get_pixel(5, 7));
    }

    #[test]
    fn png_is_read_as_a_stream_of_rows() {
        streams(ImageFormat::Png, "png", true);
    }

    #[test]
    fn strip_tiff_is_read_as_a_stream_of_rows() {
        streams(ImageFormat::Tiff, "tiff", true);
    }

    #[test]
    fn jpeg_is_read_as_a_stream_of_rows() {
        streams(ImageFormat::Jpeg, "jpg", false);
    }

    /// Reduced levels are the rounded means of 2^L×2^L blocks (fewer
    /// pixels at the right and bottom edges), read as a stream too.
    #[test]
    fn reduced_levels_average_blocks_of_level_0() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.png");
        let (w, h) = (301, 2001);
        let pic = picture(w, h);
        pic.save(&path).unwrap();
        let slide = PlainImage::open(&path, ImageFormat::Png).unwrap();
        let sizes: Vec<(u32, u32, f64)> = slide
            .levels()
            .iter()
            .map(|l| (l.size.w, l.size.h, l.downsample))
            .collect();
        assert_eq!(sizes, [(301, 2001, 1.0), (151, 1001, 2.0), (76, 501, 4.0)]);
        let level = slide.levels()[2].size;
        let got = slide
            .read_inside(2, Rect::new(0, 0, level.w, level.h))
            .unwrap();
        for (x, y) in [(0, 0), (10, 250), (75, 500), (75, 3), (40, 500)] {
            let (x0, y0) = (x * 4, y * 4);
            let (x1, y1) = ((x0 + 4).min(w), (y0 + 4).min(h));
            let n = (x1 - x0) * (y1 - y0);
            for c in 0..3 {
                let sum: u32 = (y0..y1)
                    .flat_map(|yy| (x0..x1).map(move |xx| (xx, yy)))
                    .map(|(xx, yy)| u32::from(pic.get_pixel(xx, yy).0[c]))
                    .sum();
                assert_eq!(
                    u32::from(got.get_pixel(x, y).0[c]),
                    (sum + n / 2) / n,
                    "pixel {x},{y} channel {c}"
                );
            }
        }
        assert!(slide.most_rows_held() <= 501);
    }

    /// A file cut short fails at the row where its data ends, naming it.
    #[test]
    fn truncated_png_and_jpeg_fail_naming_the_row() {
        let dir = tempfile::tempdir().unwrap();
        for (format, ext) in [(ImageFormat::Png, "png"), (ImageFormat::Jpeg, "jpg")] {
            let path = dir.path().join(format!("t.{ext}"));
            picture(400, 400).save_with_format(&path, format).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            let slide = PlainImage::open(&path, format).unwrap();
            let e = slide.read_inside(0, Rect::new(0, 0, 400, 400)).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with(&path.display().to_string()), "{msg}");
            assert!(msg.contains("row "), "{msg}");
        }
    }
}
