//! The [`Slide`] trait and [`open`], which picks a backend for a file.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::{Level, Mpp, Rect, Size, SlideError, StoredTiles};

/// Background of padded tile areas (outside the slide): white, like glass.
pub const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);

/// A whole-slide image or a plain image, read by levels.
///
/// Implementations are `Send + Sync`: many reader threads share one slide.
pub trait Slide: Send + Sync {
    /// The file this slide was opened from.
    fn path(&self) -> &Path;

    /// The format as the backend names it (`aperio`, `generic-tiff`, `png`…).
    fn format(&self) -> &str;

    /// The pyramid, level 0 (the finest) first.
    fn levels(&self) -> &[Level];

    /// Microns per pixel of level 0, when the file records it.
    fn mpp(&self) -> Option<Mpp>;

    /// Reads `rect` of `level` as RGB. `rect` lies inside the level
    /// (callers wanting padding use [`read_padded`]).
    fn read_inside(&self, level: u32, rect: Rect) -> Result<RgbImage, SlideError>;

    /// [`Slide::read_inside`] into `buf`'s memory where the backend can
    /// (its contents are replaced), so that callers can recycle buffers.
    fn read_inside_into(
        &self,
        level: u32,
        rect: Rect,
        _buf: Vec<u8>,
    ) -> Result<RgbImage, SlideError> {
        self.read_inside(level, rect)
    }

    /// Whether `level` is read from its stored tiles directly rather than
    /// through OpenSlide (see [`Reader`]).
    fn reads_directly(&self, level: u32) -> bool {
        self.direct_codec(level).is_some()
    }

    /// How the tiles of `level` that are read directly are stored (`JPEG`,
    /// `Deflate`, `LZW`, `uncompressed`); `None` when the level is not.
    fn direct_codec(&self, _level: u32) -> Option<&'static str> {
        None
    }

    /// The images that come with the slide but are not part of it (label,
    /// macro, thumbnail), by name, with their sizes.
    fn associated(&self) -> Vec<(String, Size)> {
        Vec::new()
    }

    /// Announces the reads to come on `level` (rectangles of that level,
    /// mostly in this order), so that a reader can keep decoded what later
    /// reads share and drop it after its last use.
    fn plan_reads(&self, _level: u32, _rects: &[Rect]) {}

    /// `rect` of `level` as the stored JPEG tiles it is made of, still
    /// compressed, for a decoder on a device; `None` when the level is not
    /// read from stored JPEG tiles (see [`crate::DirectReader::stored`]).
    fn stored(&self, _level: u32, _rect: Rect) -> Option<Result<StoredTiles, SlideError>> {
        None
    }

    /// Stored tile `n` of `level` decoded on the CPU, for a device decoder
    /// that failed on it; `None` where [`Slide::stored`] is.
    fn decode_stored(&self, _level: u32, _n: usize) -> Option<Result<RgbImage, SlideError>> {
        None
    }
}

/// How whole-slide levels are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reader {
    /// JPEG-tiled TIFF levels (Aperio SVS, generic tiled TIFF) decoded
    /// directly, many tiles in parallel, with a shared tile cache; other
    /// levels and formats through OpenSlide. Pixels differ from OpenSlide's
    /// by at most a few levels (JPEG decoder rounding).
    #[default]
    Auto,
    /// Everything through OpenSlide (libjpeg-turbo), pixel for pixel.
    OpenSlide,
}

impl Reader {
    /// Every reader, as requests and reports name them.
    pub const ALL: [Reader; 2] = [Reader::Auto, Reader::OpenSlide];

    /// Its name: `auto` or `openslide`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::OpenSlide => "openslide",
        }
    }
}

impl std::fmt::Display for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Reader {
    type Err = SlideError;
    fn from_str(s: &str) -> Result<Self, SlideError> {
        Self::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| SlideError::ReaderName {
                given: s.to_string(),
            })
    }
}

/// Level `level` of `slide`, or a clear error naming the file.
pub fn level(slide: &dyn Slide, level: u32) -> Result<Level, SlideError> {
    slide
        .levels()
        .get(level as usize)
        .copied()
        .ok_or_else(|| SlideError::LevelOutOfRange {
            path: slide.path().to_path_buf(),
            level,
            count: slide.levels().len() as u32,
        })
}

/// Reads `rect` of `level`; the parts outside the level are [`BACKGROUND`].
pub fn read_padded(
    slide: &dyn Slide,
    level_index: u32,
    rect: Rect,
) -> Result<RgbImage, SlideError> {
    read_padded_into(slide, level_index, rect, Vec::new())
}

/// [`read_padded`] into `buf`'s memory (its contents are replaced).
pub fn read_padded_into(
    slide: &dyn Slide,
    level_index: u32,
    rect: Rect,
    mut buf: Vec<u8>,
) -> Result<RgbImage, SlideError> {
    let size = level(slide, level_index)?.size;
    let inside = rect.clip_to(size);
    if inside == Some(rect) {
        return slide.read_inside_into(level_index, rect, buf);
    }
    let row = rect.w as usize * 3;
    buf.clear();
    buf.resize(row * rect.h as usize, 0);
    for px in buf.chunks_exact_mut(3) {
        px.copy_from_slice(&BACKGROUND.0);
    }
    if let Some(inside) = inside {
        let part = slide.read_inside(level_index, inside)?;
        let len = inside.w as usize * 3;
        let x = (inside.x - rect.x) as usize * 3;
        for (i, src) in part.as_raw().chunks_exact(len).enumerate() {
            let start = (i + (inside.y - rect.y) as usize) * row + x;
            buf[start..start + len].copy_from_slice(src);
        }
    }
    Ok(RgbImage::from_raw(rect.w, rect.h, buf).expect("w*h*3 bytes"))
}

/// The most a thumbnail reads at once: a level larger than this (a slide
/// without a small level, say a single-level 40000² TIFF) is read in bands
/// of rows, each reduced before the next is read.
pub const THUMBNAIL_BAND_BYTES: u64 = 64 << 20;

/// The most pixels a thumbnail reads: a slide whose smallest level is
/// larger (a single-level 200000² TIFF: 40 gigapixels) gets no overview.
pub const MAX_THUMBNAIL_SOURCE_PIXELS: u64 = 10_000_000_000;

/// A thumbnail whose longer side is at most `max_side` pixels, from the
/// coarsest level that still has at least that many pixels, read in bands
/// of at most [`THUMBNAIL_BAND_BYTES`]; [`SlideError::NoOverview`] when
/// that level has more than [`MAX_THUMBNAIL_SOURCE_PIXELS`].
pub fn thumbnail(slide: &dyn Slide, max_side: u32) -> Result<RgbImage, SlideError> {
    let levels = slide.levels();
    let chosen = levels
        .iter()
        .rposition(|l| l.size.w.max(l.size.h) >= max_side)
        .unwrap_or(0);
    let size = levels[chosen].size;
    if size.area() > MAX_THUMBNAIL_SOURCE_PIXELS {
        return Err(SlideError::NoOverview {
            path: slide.path().to_path_buf(),
            width: size.w,
            height: size.h,
        });
    }
    let scale = f64::from(max_side) / f64::from(size.w.max(size.h));
    let level_bytes = u64::from(size.w) * u64::from(size.h) * 3;
    if scale >= 1.0 || level_bytes <= THUMBNAIL_BAND_BYTES {
        let whole = slide.read_inside(chosen as u32, Rect::new(0, 0, size.w, size.h))?;
        if scale >= 1.0 {
            return Ok(whole);
        }
        let (w, h) = scaled(size, scale);
        return Ok(image::imageops::thumbnail(&whole, w, h));
    }
    let (w, h) = scaled(size, scale);
    // Bands of whole thumbnail rows: output rows j0..j1 from level rows
    // j0·sh/h .. j1·sh/h, each band reduced on its own.
    let per_row = f64::from(size.h) / f64::from(h);
    let rows_fit = THUMBNAIL_BAND_BYTES / (u64::from(size.w) * 3);
    let out_rows = ((rows_fit as f64 / per_row.ceil()) as u32).max(1);
    let mut out = RgbImage::new(w, h);
    let mut j0 = 0;
    while j0 < h {
        let j1 = (j0 + out_rows).min(h);
        let y0 = (f64::from(j0) * per_row).round() as u32;
        let y1 = ((f64::from(j1) * per_row).round() as u32).clamp(y0 + 1, size.h);
        let band =
            slide.read_inside(chosen as u32, Rect::new(0, i64::from(y0), size.w, y1 - y0))?;
        let small = image::imageops::thumbnail(&band, w, j1 - j0);
        image::imageops::replace(&mut out, &small, 0, i64::from(j0));
        j0 = j1;
    }
    Ok(out)
}

/// `size` times `scale`, rounded, at least 1×1.
fn scaled(size: Size, scale: f64) -> (u32, u32) {
    (
        ((f64::from(size.w) * scale).round() as u32).max(1),
        ((f64::from(size.h) * scale).round() as u32).max(1),
    )
}

/// `slide` with level 0 taken to be `mpp` µm per pixel, whatever the file
/// records: for plain images, which record none, and for files whose
/// record is wrong. The caller checks that `mpp` is a positive number.
pub fn with_mpp(slide: Box<dyn Slide>, mpp: f64) -> Box<dyn Slide> {
    Box::new(AssumedMpp {
        inner: slide,
        mpp: Mpp { x: mpp, y: mpp },
    })
}

/// A slide whose resolution the user gave ([`with_mpp`]).
struct AssumedMpp {
    inner: Box<dyn Slide>,
    mpp: Mpp,
}

impl Slide for AssumedMpp {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn format(&self) -> &str {
        self.inner.format()
    }
    fn levels(&self) -> &[Level] {
        self.inner.levels()
    }
    fn mpp(&self) -> Option<Mpp> {
        Some(self.mpp)
    }
    fn read_inside(&self, level: u32, rect: Rect) -> Result<RgbImage, SlideError> {
        self.inner.read_inside(level, rect)
    }
    fn read_inside_into(
        &self,
        level: u32,
        rect: Rect,
        buf: Vec<u8>,
    ) -> Result<RgbImage, SlideError> {
        self.inner.read_inside_into(level, rect, buf)
    }
    fn direct_codec(&self, level: u32) -> Option<&'static str> {
        self.inner.direct_codec(level)
    }
    fn plan_reads(&self, level: u32, rects: &[Rect]) {
        self.inner.plan_reads(level, rects);
    }
    fn associated(&self) -> Vec<(String, Size)> {
        self.inner.associated()
    }
    fn stored(&self, level: u32, rect: Rect) -> Option<Result<StoredTiles, SlideError>> {
        self.inner.stored(level, rect)
    }
    fn decode_stored(&self, level: u32, n: usize) -> Option<Result<RgbImage, SlideError>> {
        self.inner.decode_stored(level, n)
    }
}

/// Extensions that a folder run treats as slides.
pub const SLIDE_EXTENSIONS: &[&str] = &[
    "svs", "tif", "tiff", "ndpi", "vms", "vmu", "scn", "mrxs", "bif", "svslide", "dcm", "png",
    "jpg", "jpeg",
];

/// Whether `path` has one of [`SLIDE_EXTENSIONS`] (case-insensitive).
pub fn has_slide_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SLIDE_EXTENSIONS.iter().any(|s| s.eq_ignore_ascii_case(e)))
}

/// Why `path` cannot be followed, from the error `metadata` gave: no such
/// file, a dangling or looping symbolic link (named as such), or another
/// I/O error.
pub fn missing(path: &Path, e: std::io::Error) -> SlideError {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if link {
        return SlideError::BrokenLink {
            path: path.to_path_buf(),
            target: std::fs::read_link(path).unwrap_or_default(),
            looping: e.raw_os_error() == Some(libc::ELOOP),
        };
    }
    match e.kind() {
        std::io::ErrorKind::NotFound => SlideError::NotFound {
            path: path.to_path_buf(),
        },
        _ => SlideError::Io {
            path: path.to_path_buf(),
            what: "file",
            source: e,
        },
    }
}

/// Opens `path` with the backend that fits it: OpenSlide for whole-slide
/// formats and tiled TIFF, the image decoders for PNG, JPEG and strip TIFF;
/// JPEG-tiled TIFF levels are read directly ([`Reader::Auto`]).
pub fn open(path: &Path) -> Result<Box<dyn Slide>, SlideError> {
    open_with(path, Reader::Auto)
}

/// [`open`], choosing how whole-slide levels are read.
pub fn open_with(path: &Path, reader: Reader) -> Result<Box<dyn Slide>, SlideError> {
    let meta = std::fs::metadata(path).map_err(|e| missing(path, e))?;
    if meta.is_dir() {
        return Err(SlideError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let plain = crate::plain::sniff(path)?;
    if let Some(e) = tiff_hazard(path) {
        return Err(e);
    }
    match plain {
        Some(format) if format != image::ImageFormat::Tiff => {
            Ok(Box::new(crate::plain::PlainImage::open(path, format)?))
        }
        // TIFF: tiled pyramids go through OpenSlide; plain strip TIFFs do not.
        Some(format) => match crate::openslide::OpenSlideSlide::open(path, reader) {
            Err(SlideError::Unsupported { .. }) => {
                match crate::plain::PlainImage::open(path, format) {
                    Ok(image) => Ok(Box::new(image)),
                    // A damaged directory says more than the strip reader's error.
                    Err(e) => Err(tiff_structure_problem(path).unwrap_or(e)),
                }
            }
            other => other.map(|s| Box::new(s) as Box<dyn Slide>),
        },
        None => match crate::openslide::OpenSlideSlide::open(path, reader) {
            // OpenSlide cannot tell a damaged TIFF from a foreign format.
            Err(SlideError::Unsupported { .. }) if has_tiff_magic(path) => Err(
                tiff_structure_problem(path).unwrap_or(SlideError::Unsupported {
                    path: path.to_path_buf(),
                }),
            ),
            other => other.map(|s| Box::new(s) as Box<dyn Slide>),
        },
    }
}

/// A TIFF whose directories would make OpenSlide allocate without bound or
/// abort (found by fuzzing): tiles larger than 16384 pixels a side, or
/// tile data that reaches past the end of the file. `None` when none is
/// found, for files that are not TIFF, or for NDPI files (vendor tag
/// 65420), whose 32-bit offsets wrap past 4 GiB by design and which
/// OpenSlide reads its own way. The
/// directories are walked here byte by byte: a directory this damaged is
/// one a TIFF library may refuse to parse at all.
fn tiff_hazard(path: &Path) -> Option<SlideError> {
    let file = std::fs::File::open(path).ok()?;
    let problem = crate::tiffwalk::hazard(&file)?;
    Some(SlideError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("{problem}; the file is truncated or damaged"),
    })
}

/// Whether `path` starts like a TIFF or BigTIFF file.
fn has_tiff_magic(path: &Path) -> bool {
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && matches!(head, [b'I', b'I', 42 | 43, 0] | [b'M', b'M', 0, 42 | 43])
}

/// Why the TIFF at `path` cannot be read, if its directory structure is
/// broken (a truncated or damaged file); `None` when it parses.
fn tiff_structure_problem(path: &Path) -> Option<SlideError> {
    let corrupt = |e: tiff::TiffError| SlideError::Corrupt {
        path: path.to_path_buf(),
        detail: format!(
            "its TIFF structure cannot be read ({e}); the file is truncated or damaged"
        ),
    };
    let file = std::fs::File::open(path).ok()?;
    let mut d = match tiff::decoder::Decoder::new(std::io::BufReader::new(file)) {
        Ok(d) => d,
        Err(e) => return Some(corrupt(e)),
    };
    while d.more_images() {
        if let Err(e) = d.next_image() {
            return Some(corrupt(e));
        }
    }
    None
}
