//! Direct access to the JPEG tiles of a tiled TIFF (Aperio SVS, generic
//! tiled TIFF, wsiseg's synthetic slides): the compressed bytes of each tile,
//! decoded without OpenSlide's compositing.
//!
//! [`DirectReader`] serves `read_inside` for such levels: it assembles any
//! rectangle from decoded tiles kept in a shared, bounded [`TileCache`], so
//! that overlapping reads (tiles with a halo) decode each JPEG tile once and
//! many reader threads decode different tiles in parallel.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use image::RgbImage;
use tiff::decoder::Decoder;
use tiff::tags::Tag;

use crate::stored::{Baseline, Piece, StoredPiece, StoredTiles};
use crate::{Level, Rect, Size, SlideError};

/// The JPEG tiles of one pyramid level.
pub struct JpegTiles {
    path: PathBuf,
    /// The level's size in pixels.
    pub size: Size,
    /// Tile width, pixels.
    pub tile_width: u32,
    /// Tile height, pixels.
    pub tile_height: u32,
    /// Tiles per row.
    pub tiles_across: u32,
    /// Tiles per column.
    pub tiles_down: u32,
    offsets: Vec<u64>,
    counts: Vec<u64>,
    tables: Option<Vec<u8>>,
    /// Photometric RGB: the JPEG data is RGB, not YCbCr (Aperio writes this).
    rgb_jpeg: bool,
    /// How the tiles are stored: JPEG in the main IFD chain; JPEG,
    /// Deflate, LZW or uncompressed in SubIFD pyramids.
    codec: Codec,
    /// The file's length when its directories were read: no tile's bytes
    /// may reach past it.
    file_len: u64,
}

/// How a level's tiles are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Jpeg,
    /// 8-bit RGB, Deflate (Adobe or old-style), with the horizontal
    /// predictor or not.
    Deflate {
        predictor: bool,
    },
    /// 8-bit RGB, LZW.
    Lzw {
        predictor: bool,
    },
    /// 8-bit RGB, uncompressed.
    Raw,
}

/// The most bytes one stored JPEG tile may have (a 4096² tile of noise at
/// quality 100 is about 40 MiB).
const MAX_TILE_BYTES: u64 = 64 << 20;

/// An Adobe APP14 segment with transform 0: tells a JPEG decoder that the
/// components are RGB, not YCbCr.
const ADOBE_RGB: [u8; 16] = [
    0xFF, 0xEE, 0x00, 0x0E, b'A', b'd', b'o', b'b', b'e', 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00,
];

impl JpegTiles {
    /// Every tiled IFD of the TIFF at `path`, in file order (untiled IFDs,
    /// such as an Aperio thumbnail or label, are not levels); `None` for a
    /// tiled IFD that is not JPEG-compressed.
    pub fn scan(path: &Path) -> Result<Vec<Option<Self>>, SlideError> {
        let corrupt = |e: tiff::TiffError| SlideError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let (mut d, file_len) = open_tiff(path, corrupt)?;
        let mut levels = Vec::new();
        loop {
            if d.find_tag(Tag::TileWidth).map_err(corrupt)?.is_some() {
                let tiles = Self::from_ifd(path, &mut d.image_ifd(), file_len, false);
                levels.push(tiles.map_err(corrupt)?);
            }
            if !d.more_images() {
                return Ok(levels);
            }
            d.next_image().map_err(corrupt)?;
        }
    }

    /// The reduced levels stored as SubIFDs of the first directory (OME-TIFF
    /// as QuPath, Bio-Formats and tifffile write it), largest first: those
    /// tiled in 8-bit RGB, JPEG, Deflate, LZW or uncompressed (others are
    /// left out). Empty when the first directory has none.
    pub fn scan_subifds(path: &Path) -> Result<Vec<Self>, SlideError> {
        let corrupt = |e: tiff::TiffError| SlideError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("its SubIFD pyramid cannot be read ({e})"),
        };
        let (mut d, file_len) = open_tiff(path, corrupt)?;
        let Some(pointers) = d.find_tag(Tag::SubIfd).map_err(corrupt)? else {
            return Ok(Vec::new());
        };
        let pointers = pointers.into_ifd_vec().map_err(corrupt)?;
        let mut levels = Vec::new();
        // At most 32: a damaged directory may list any number.
        for ptr in pointers.into_iter().take(32) {
            let dir = d.read_directory(ptr).map_err(corrupt)?;
            let mut tags = d.read_directory_tags(&dir);
            if tags.find_tag(Tag::TileWidth).map_err(corrupt)?.is_none() {
                continue;
            }
            if let Some(t) = Self::from_ifd(path, &mut tags, file_len, true).map_err(corrupt)? {
                levels.push(t);
            }
        }
        levels.sort_by_key(|t| std::cmp::Reverse(t.size.area()));
        Ok(levels)
    }

    /// The `level`-th tiled IFD of the TIFF at `path`; `None` when there is
    /// no such level or it is not JPEG-compressed.
    pub fn open(path: &Path, level: u32) -> Result<Option<Self>, SlideError> {
        Ok(Self::scan(path)?.into_iter().nth(level as usize).flatten())
    }

    /// The tiles of one directory; `None` when they are not JPEG (or, for
    /// `any_codec`, Deflate, LZW or uncompressed 8-bit RGB).
    fn from_ifd(
        path: &Path,
        d: &mut tiff::decoder::IfdDecoder<'_>,
        file_len: u64,
        any_codec: bool,
    ) -> tiff::TiffResult<Option<Self>> {
        let u32_tag = |d: &mut tiff::decoder::IfdDecoder<'_>, tag: Tag| {
            d.find_tag_unsigned::<u32>(tag).ok().flatten()
        };
        let predictor = u32_tag(d, Tag::Predictor) == Some(2);
        let eight_bits = d
            .find_tag_unsigned_vec::<u16>(Tag::BitsPerSample)
            .ok()
            .flatten()
            .is_some_and(|b| b.iter().all(|&b| b == 8));
        let codec = match u32_tag(d, Tag::Compression) {
            Some(7) => Codec::Jpeg,
            Some(8 | 32946) if any_codec && eight_bits => Codec::Deflate { predictor },
            Some(5) if any_codec && eight_bits => Codec::Lzw { predictor },
            Some(1) | None if any_codec && eight_bits && !predictor => Codec::Raw,
            _ => return Ok(None),
        };
        let planar = u32_tag(d, Tag::PlanarConfiguration).unwrap_or(1);
        let (tw, th) = (
            d.get_tag_unsigned::<u32>(Tag::TileWidth)?,
            d.get_tag_unsigned::<u32>(Tag::TileLength)?,
        );
        let (w, h) = (
            d.get_tag_unsigned::<u32>(Tag::ImageWidth)?,
            d.get_tag_unsigned::<u32>(Tag::ImageLength)?,
        );
        let offsets = d.get_tag(Tag::TileOffsets)?.into_u64_vec()?;
        let counts = d.get_tag(Tag::TileByteCounts)?.into_u64_vec()?;
        let samples = u32_tag(d, Tag::SamplesPerPixel).unwrap_or(1);
        let (across, down) = (w.div_ceil(tw.max(1)), h.div_ceil(th.max(1)));
        let expected = across as usize * down as usize;
        // Tiles wider than 8192 px are left to OpenSlide (a damaged
        // directory may declare any size; a decoded tile is held whole).
        if tw == 0
            || th == 0
            || tw > 8192
            || th > 8192
            || samples != 3
            || planar != 1
            || offsets.len() < expected
            || counts.len() < expected
        {
            return Ok(None);
        }
        Ok(Some(Self {
            path: path.to_path_buf(),
            size: Size::new(w, h),
            tile_width: tw,
            tile_height: th,
            tiles_across: across,
            tiles_down: down,
            offsets,
            counts,
            tables: d
                .find_tag(Tag::JPEGTables)
                .ok()
                .flatten()
                .and_then(|v| v.into_u8_vec().ok()),
            rgb_jpeg: u32_tag(d, Tag::PhotometricInterpretation) == Some(2),
            codec,
            file_len,
        }))
    }

    /// Whether its JPEG tiles hold R, G, B components (photometric RGB:
    /// no colour transform), not YCbCr.
    pub fn rgb_components(&self) -> bool {
        self.rgb_jpeg
    }

    /// Tiles in the level.
    pub fn len(&self) -> usize {
        self.tiles_across as usize * self.tiles_down as usize
    }

    /// Whether the level has no tiles.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where tile `n` (raster order) lies in the level, clipped to it.
    pub fn tile_rect(&self, n: usize) -> Rect {
        let (c, r) = (n as u32 % self.tiles_across, n as u32 / self.tiles_across);
        let (x, y) = (c * self.tile_width, r * self.tile_height);
        Rect::new(
            i64::from(x),
            i64::from(y),
            self.tile_width.min(self.size.w - x),
            self.tile_height.min(self.size.h - y),
        )
    }

    /// The tiles (raster order) that `rect` (inside the level) touches.
    pub fn tiles_touching(&self, rect: Rect) -> impl Iterator<Item = usize> + '_ {
        let (tw, th) = (i64::from(self.tile_width), i64::from(self.tile_height));
        let (c0, c1) = (rect.x / tw, (rect.right() - 1) / tw);
        let (r0, r1) = (rect.y / th, (rect.bottom() - 1) / th);
        let across = self.tiles_across as usize;
        (r0..=r1).flat_map(move |r| (c0..=c1).map(move |c| r as usize * across + c as usize))
    }

    /// Whether the file stores no data for tile `n` (OpenSlide shows such
    /// tiles as background).
    fn missing(&self, n: usize) -> bool {
        self.counts[n] == 0 || self.offsets[n] == 0
    }

    /// The compressed bytes of tile `n` (raster order), as a complete JPEG
    /// stream (shared JPEGTables spliced in when the file has them).
    pub fn raw(&self, file: &File, n: usize) -> Result<Vec<u8>, SlideError> {
        // The directory's byte count is checked against the file before
        // anything is allocated: a damaged TIFF may claim petabytes.
        let len = self.file_len;
        let (offset, count) = (self.offsets[n], self.counts[n]);
        if offset.checked_add(count).is_none_or(|end| end > len) || count > MAX_TILE_BYTES {
            return Err(SlideError::Corrupt {
                path: self.path.clone(),
                detail: format!(
                    "JPEG tile {n}: {count} bytes at offset {offset} reach past the end of the file ({len} bytes) or exceed {} MiB",
                    MAX_TILE_BYTES >> 20
                ),
            });
        }
        let mut buf = vec![0u8; count as usize];
        file.read_exact_at(&mut buf, self.offsets[n])
            .map_err(|source| SlideError::Io {
                path: self.path.clone(),
                what: "tile",
                source,
            })?;
        if self.codec != Codec::Jpeg {
            return Ok(buf);
        }
        let stream = match &self.tables {
            // Tables stream: SOI … EOI; tile stream: SOI … EOI.
            Some(t) if t.len() > 4 && buf.len() > 2 => [&t[..t.len() - 2], &buf[2..]].concat(),
            _ => buf,
        };
        Ok(if self.rgb_jpeg && stream.len() > 2 {
            [&stream[..2], &ADOBE_RGB[..], &stream[2..]].concat()
        } else {
            stream
        })
    }

    /// Tile `n` decoded to RGB (zune-jpeg, the `image` crate's decoder, in
    /// strict mode: corrupt data is an error), the whole stored tile (edge
    /// tiles include their padding).
    pub fn decode(&self, file: &File, n: usize) -> Result<RgbImage, SlideError> {
        self.decode_tile(file, n)
            .map_err(|detail| SlideError::Corrupt {
                path: self.path.clone(),
                detail,
            })
    }

    /// [`Self::decode`] with the problem as a message that names the tile
    /// (not the file).
    fn decode_tile(&self, file: &File, n: usize) -> Result<RgbImage, String> {
        if self.codec != Codec::Jpeg {
            return self.decode_other(file, n);
        }
        let bytes = self
            .raw(file, n)
            .map_err(|e| format!("JPEG tile {n}: cannot read it: {e}"))?;
        // zune-jpeg (the image crate's JPEG decoder) in strict mode: data
        // that ends early, bad Huffman codes, markers where none belong are
        // errors, where the lenient mode fills the rest of the tile with grey.
        crate::stored::decode_jpeg(&bytes, self.tile_width, self.tile_height)
            .map_err(|e| format!("JPEG tile {n}: {e}"))
    }

    /// A Deflate, LZW or uncompressed tile: exactly the tile's RGB bytes
    /// once decompressed (fewer is corrupt), the predictor undone.
    fn decode_other(&self, file: &File, n: usize) -> Result<RgbImage, String> {
        use std::io::Read;
        let (name, predictor) = match self.codec {
            Codec::Deflate { predictor } => ("Deflate", predictor),
            Codec::Lzw { predictor } => ("LZW", predictor),
            _ => ("uncompressed", false),
        };
        let stored = self
            .raw(file, n)
            .map_err(|e| format!("{name} tile {n}: cannot read it: {e}"))?;
        let (w, h) = (self.tile_width, self.tile_height);
        let want = w as usize * h as usize * 3;
        let mut pixels = match self.codec {
            Codec::Deflate { .. } => {
                let mut out = Vec::with_capacity(want);
                flate2::read::ZlibDecoder::new(&stored[..])
                    .take(want as u64)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("{name} tile {n}: corrupt data ({e})"))?;
                out
            }
            Codec::Lzw { .. } => {
                let mut out =
                    weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
                        .decode(&stored)
                        .map_err(|e| format!("{name} tile {n}: corrupt data ({e})"))?;
                out.truncate(want);
                out
            }
            _ => stored,
        };
        if pixels.len() < want {
            return Err(format!(
                "{name} tile {n}: {} bytes of pixels, the TIFF says {w}×{h}×3 = {want}",
                pixels.len()
            ));
        }
        pixels.truncate(want);
        if predictor {
            for row in pixels.chunks_exact_mut(w as usize * 3) {
                for i in 3..row.len() {
                    row[i] = row[i].wrapping_add(row[i - 3]);
                }
            }
        }
        RgbImage::from_raw(w, h, pixels).ok_or_else(|| format!("{name} tile {n}: not RGB"))
    }
}

/// A TIFF decoder on `path` and the file's length; a directory that cannot
/// be read is `corrupt`'s error.
fn open_tiff(
    path: &Path,
    corrupt: impl Fn(tiff::TiffError) -> SlideError,
) -> Result<(Decoder<BufReader<File>>, u64), SlideError> {
    let file = File::open(path).map_err(|source| SlideError::Io {
        path: path.to_path_buf(),
        what: "slide",
        source,
    })?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((
        Decoder::new(BufReader::new(file)).map_err(corrupt)?,
        file_len,
    ))
}

/// Decoded tiles shared by all reader threads. Only tiles that announced
/// reads ([`TileCache::expect`]) will use are kept, each until its last
/// announced read, and at most `budget` bytes of them (least recently used
/// dropped first). A tile being decoded by one thread is waited for, not
/// decoded again, by the others.
pub struct TileCache {
    budget: AtomicUsize,
    inner: Mutex<CacheInner>,
    /// Tiles decoded through this cache, kept or not.
    decodes: AtomicU64,
}

type Decoded = Result<Option<Arc<RgbImage>>, String>;

#[derive(Default)]
struct CacheInner {
    slots: HashMap<(u32, usize), Slot>,
    bytes: usize,
    clock: u64,
    /// Reads still to come per tile, for tiles of announced reads: a tile
    /// is dropped as soon as its last announced read has used it.
    uses: HashMap<(u32, usize), u32>,
}

impl CacheInner {
    /// Forgets tile `key`, if held, and the bytes it counted for.
    fn drop_slot(&mut self, key: (u32, usize)) {
        if let Some(s) = self.slots.remove(&key) {
            self.bytes -= s.bytes;
        }
    }
}

struct Slot {
    cell: Arc<Cell>,
    last_use: u64,
    bytes: usize,
}

/// One tile: decoded once, by the thread that claimed it.
#[derive(Default)]
struct Cell {
    value: OnceLock<Decoded>,
    claimed: AtomicBool,
}

/// Default budget until a reader announces its access pattern.
const DEFAULT_CACHE_BYTES: usize = 64 << 20;

impl Default for TileCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_BYTES)
    }
}

impl TileCache {
    /// A cache that holds at most `budget` bytes of decoded tiles.
    pub fn new(budget: usize) -> Self {
        Self {
            budget: AtomicUsize::new(budget),
            inner: Mutex::new(CacheInner::default()),
            decodes: AtomicU64::new(0),
        }
    }

    /// How many tiles have been decoded through this cache so far, whether
    /// they were kept or not: with announced reads and room enough, each
    /// tile once.
    pub fn decodes(&self) -> u64 {
        self.decodes.load(Ordering::Relaxed)
    }

    fn decode(&self, decode: impl FnOnce() -> Decoded) -> Decoded {
        self.decodes.fetch_add(1, Ordering::Relaxed);
        decode()
    }

    /// Changes how many bytes of decoded tiles may be held.
    pub fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes, Ordering::Relaxed);
    }

    /// Announces reads: each tile in `tiles` (with repeats) will be read
    /// once per occurrence; after its last announced read it is dropped.
    /// Replaces what an earlier announcement left.
    pub fn expect(&self, level: u32, tiles: impl Iterator<Item = usize>) {
        let mut uses: HashMap<(u32, usize), u32> = HashMap::new();
        for n in tiles {
            *uses.entry((level, n)).or_default() += 1;
        }
        let mut inner = self.lock();
        // Tiles no announced read needs any more go now.
        let stale: Vec<_> = inner
            .slots
            .keys()
            .filter(|k| !uses.contains_key(k))
            .copied()
            .collect();
        for k in stale {
            inner.drop_slot(k);
        }
        inner.uses = uses;
    }

    /// One announced read of `key` is done with it.
    fn release(&self, key: (u32, usize)) {
        let mut inner = self.lock();
        let Some(left) = inner.uses.get_mut(&key) else {
            return;
        };
        *left -= 1;
        if *left == 0 {
            inner.uses.remove(&key);
            inner.drop_slot(key);
        }
    }

    /// Decoded tiles held now.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether no decoded tile is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of decoded tiles held now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic elsewhere leaves the map consistent (no update spans a panic point).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of `key`, created empty if needed, marked as just used;
    /// `None` when no announced read needs `key` (such tiles are decoded
    /// for the read at hand and not kept).
    fn slot(&self, key: (u32, usize)) -> Option<Arc<Cell>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if !inner.slots.contains_key(&key) && !inner.uses.contains_key(&key) {
            return None;
        }
        let slot = inner.slots.entry(key).or_insert_with(|| Slot {
            cell: Arc::default(),
            last_use: now,
            bytes: 0,
        });
        slot.last_use = now;
        Some(slot.cell.clone())
    }

    /// The decoded tile `key` if it is cached, or decoded here now if no
    /// other thread is decoding it; `None` while another thread is.
    fn try_get(&self, key: (u32, usize), decode: impl FnOnce() -> Decoded) -> Option<Decoded> {
        let Some(cell) = self.slot(key) else {
            return Some(self.decode(decode));
        };
        if let Some(v) = cell.value.get() {
            return Some(v.clone());
        }
        if cell.claimed.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(self.fill(key, &cell, decode))
    }

    /// The decoded tile `key`, decoding it with `decode` unless it is cached
    /// or being decoded by another thread (then this waits for it).
    fn get(&self, key: (u32, usize), decode: impl FnOnce() -> Decoded) -> Decoded {
        let Some(cell) = self.slot(key) else {
            return self.decode(decode);
        };
        cell.claimed.store(true, Ordering::Release);
        self.fill(key, &cell, decode)
    }

    fn fill(&self, key: (u32, usize), cell: &Cell, decode: impl FnOnce() -> Decoded) -> Decoded {
        let mut decoded_here = false;
        let value = cell
            .value
            .get_or_init(|| {
                decoded_here = true;
                self.decode(decode)
            })
            .clone();
        if decoded_here {
            let bytes = match &value {
                Ok(Some(img)) => img.as_raw().len(),
                // Failures are not kept: a later read tries again.
                Err(_) => {
                    self.lock().drop_slot(key);
                    return value;
                }
                Ok(None) => 0,
            };
            self.account(key, bytes);
        }
        value
    }

    /// Counts a newly decoded tile and drops the least recently used tiles
    /// until the cache fits its budget again.
    fn account(&self, key: (u32, usize), bytes: usize) {
        let budget = self.budget.load(Ordering::Relaxed);
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(&key) {
            slot.bytes = bytes;
            inner.bytes += bytes;
        }
        if inner.bytes <= budget {
            return;
        }
        // Evict down to 90% of the budget, oldest first, so that eviction
        // (a sort) runs once per several inserts, not on every one.
        let mut by_age: Vec<(u64, (u32, usize))> = inner
            .slots
            .iter()
            .filter(|(k, s)| **k != key && s.cell.value.get().is_some())
            .map(|(k, s)| (s.last_use, *k))
            .collect();
        by_age.sort_unstable();
        let target = budget / 10 * 9;
        for (_, k) in by_age {
            if inner.bytes <= target {
                break;
            }
            inner.drop_slot(k);
        }
    }
}

/// Reads the JPEG-tiled levels of a TIFF-based slide directly.
pub struct DirectReader {
    file: File,
    /// Per slide level: its JPEG tiles, when the level is served directly.
    levels: Vec<Option<JpegTiles>>,
    cache: TileCache,
    background: [u8; 3],
}

impl DirectReader {
    /// A reader for the levels of `path` that are JPEG-tiled IFDs with the
    /// same sizes as the slide's `levels` (as OpenSlide reports them);
    /// `None` when no level qualifies or the file is not a TIFF.
    pub fn new(path: &Path, levels: &[Level], background: [u8; 3]) -> Option<Self> {
        let mut scanned = JpegTiles::scan(path).ok()?;
        scanned.resize_with(levels.len(), || None);
        let levels: Vec<Option<JpegTiles>> = scanned
            .into_iter()
            .zip(levels)
            .map(|(t, l)| t.filter(|t| t.size == l.size))
            .collect();
        if levels.iter().all(Option::is_none) {
            return None;
        }
        Some(Self {
            file: File::open(path).ok()?,
            levels,
            cache: TileCache::default(),
            background,
        })
    }

    /// A reader of the given tiles, one entry per slide level (`None`: not
    /// read directly): for pyramids OpenSlide does not see (SubIFDs).
    pub fn with_tiles(
        path: &Path,
        levels: Vec<Option<JpegTiles>>,
        background: [u8; 3],
    ) -> Option<Self> {
        Some(Self {
            file: File::open(path).ok()?,
            levels,
            cache: TileCache::default(),
            background,
        })
    }

    /// How `level`'s tiles are stored, when it is read directly (`None`:
    /// it is not).
    pub fn codec(&self, level: u32) -> Option<&'static str> {
        self.tiles(level).map(|t| match t.codec {
            Codec::Jpeg => "JPEG",
            Codec::Deflate { .. } => "Deflate",
            Codec::Lzw { .. } => "LZW",
            Codec::Raw => "uncompressed",
        })
    }

    fn tiles(&self, level: u32) -> Option<&JpegTiles> {
        self.levels.get(level as usize).and_then(Option::as_ref)
    }

    /// The cache of decoded tiles.
    pub fn cache(&self) -> &TileCache {
        &self.cache
    }

    /// Announces the reads to come on `level` (rectangles of the level, in
    /// the order they will mostly be read; parts outside are ignored): each
    /// tile is kept decoded from its first read to its last, then dropped.
    /// A budget of about two rows of tiles across the level (or 64 MiB, if
    /// more) caps what is kept when reads run far out of order.
    pub fn plan_reads(&self, level: u32, rects: &[Rect]) {
        let Some(t) = self.tiles(level) else {
            return;
        };
        let band = rects.iter().map(|r| r.h).max().unwrap_or(t.tile_height);
        let rows = (2 * band).div_ceil(t.tile_height) as usize + 2;
        let tile_bytes = t.tile_width as usize * t.tile_height as usize * 3;
        let bytes = (t.tiles_across as usize * rows * tile_bytes).max(DEFAULT_CACHE_BYTES);
        self.cache.set_budget(bytes);
        self.cache.expect(
            level,
            rects
                .iter()
                .filter_map(|r| r.clip_to(t.size))
                .flat_map(|r| t.tiles_touching(r)),
        );
    }

    /// Reads `rect` (inside `level`) from the decoded tiles; `None` when the
    /// level is not served directly.
    pub fn read(&self, level: u32, rect: Rect) -> Option<Result<RgbImage, SlideError>> {
        self.read_into(level, rect, Vec::new())
    }

    /// [`Self::read`] into `buf`'s memory (its contents are replaced), so
    /// that callers can recycle tile buffers instead of allocating each one.
    pub fn read_into(
        &self,
        level: u32,
        rect: Rect,
        buf: Vec<u8>,
    ) -> Option<Result<RgbImage, SlideError>> {
        let tiles = self.tiles(level)?;
        Some(self.assemble(level, tiles, rect, buf))
    }

    /// The stored tiles `rect` (of `level`; parts outside it are left
    /// out) is made of, compressed, for a decoder elsewhere; `None` when
    /// the level is not read directly or is not JPEG-tiled. Streams a
    /// device decoder does not take are decoded here; corrupt ones are the
    /// CPU decoder's error ([`SlideError::BadTile`]), as [`Self::read`] has it.
    pub fn stored(&self, level: u32, rect: Rect) -> Option<Result<StoredTiles, SlideError>> {
        let tiles = self.tiles(level).filter(|t| t.codec == Codec::Jpeg)?;
        Some(self.stored_in(level, tiles, rect))
    }

    fn stored_in(
        &self,
        level: u32,
        tiles: &JpegTiles,
        rect: Rect,
    ) -> Result<StoredTiles, SlideError> {
        let (w, h) = (tiles.tile_width, tiles.tile_height);
        let mut pieces = Vec::new();
        if let Some(inside) = rect.clip_to(tiles.size) {
            for n in tiles.tiles_touching(inside) {
                let tile_rect = tiles.tile_rect(n);
                let part = tile_rect
                    .intersect(inside)
                    .expect("a touched tile meets the rect");
                let bad = |detail: String| SlideError::BadTile {
                    path: tiles.path.clone(),
                    level,
                    tile: n,
                    rect: tile_rect,
                    detail,
                };
                let content = if tiles.missing(n) {
                    Piece::Fill(self.background)
                } else {
                    let stream = tiles
                        .raw(&self.file, n)
                        .map_err(|e| bad(format!("JPEG tile {n}: cannot read it: {e}")))?;
                    match crate::stored::check_baseline(&stream, w, h) {
                        Baseline::Yes { rgb } if rgb == tiles.rgb_jpeg => {
                            Piece::Jpeg(stream.into())
                        }
                        // The CPU decoder says what is wrong, or decodes
                        // what the device decoder does not take.
                        _ => Piece::Pixels(Arc::new(
                            crate::stored::decode_jpeg(&stream, w, h)
                                .map_err(|e| bad(format!("JPEG tile {n}: {e}")))?,
                        )),
                    }
                };
                pieces.push(StoredPiece {
                    key: (level, n),
                    content,
                    tile_rect,
                    part,
                });
            }
        }
        Ok(StoredTiles {
            rect,
            tile_width: w,
            tile_height: h,
            pieces,
            rgb_components: tiles.rgb_jpeg,
        })
    }

    /// Decodes stored tile `n` of `level` on the CPU, as [`Self::read`]
    /// does (for a device decoder that failed on it); a bad tile is
    /// [`SlideError::BadTile`].
    pub fn decode_stored(&self, level: u32, n: usize) -> Option<Result<RgbImage, SlideError>> {
        let tiles = self
            .tiles(level)
            .filter(|t| t.codec == Codec::Jpeg && n < t.len())?;
        Some(
            tiles
                .decode_tile(&self.file, n)
                .map_err(|detail| SlideError::BadTile {
                    path: tiles.path.clone(),
                    level,
                    tile: n,
                    rect: tiles.tile_rect(n),
                    detail,
                }),
        )
    }

    fn assemble(
        &self,
        level: u32,
        tiles: &JpegTiles,
        rect: Rect,
        mut out: Vec<u8>,
    ) -> Result<RgbImage, SlideError> {
        let decode = |n: usize| {
            move || {
                if tiles.missing(n) {
                    return Ok(None);
                }
                tiles
                    .decode_tile(&self.file, n)
                    .map(|img| Some(Arc::new(img)))
            }
        };
        // Tiles cached or free to decode first; those another thread is
        // decoding right now are waited for last, after this thread's own work.
        let mut touched = Vec::new();
        let mut busy_elsewhere = Vec::new();
        for n in tiles.tiles_touching(rect) {
            match self.cache.try_get((level, n), decode(n)) {
                Some(decoded) => touched.push((n, decoded)),
                None => busy_elsewhere.push(n),
            }
        }
        for n in busy_elsewhere {
            touched.push((n, self.cache.get((level, n), decode(n))));
        }
        // Raster order again: rows below are assembled left to right.
        touched.sort_unstable_by_key(|(n, _)| *n);
        let numbers: Vec<usize> = touched.iter().map(|(n, _)| *n).collect();
        let touched = touched
            .into_iter()
            .map(|(n, decoded)| {
                let decoded = decoded.map_err(|detail| SlideError::BadTile {
                    path: tiles.path.clone(),
                    level,
                    tile: n,
                    rect: tiles.tile_rect(n),
                    detail,
                })?;
                let t = tiles.tile_rect(n);
                let part = t.intersect(rect).expect("a touched tile meets the rect");
                Ok((n, t, part, decoded))
            })
            .collect::<Result<Vec<_>, SlideError>>();
        let touched = match touched {
            Ok(t) => t,
            Err(e) => {
                // A bad tile may be skipped (--bad-tiles background): the
                // others' announced reads still count.
                for n in numbers {
                    self.cache.release((level, n));
                }
                return Err(e);
            }
        };
        // Row by row, left to right: every output byte is written once, in order.
        out.clear();
        out.reserve(rect.w as usize * rect.h as usize * 3);
        let stride = tiles.tile_width as usize * 3;
        for y in rect.y..rect.bottom() {
            for (_, t, part, decoded) in &touched {
                if y < part.y || y >= part.bottom() {
                    continue;
                }
                let len = part.w as usize * 3;
                match decoded {
                    Some(img) => {
                        let src = (y - t.y) as usize * stride + (part.x - t.x) as usize * 3;
                        out.extend_from_slice(&img.as_raw()[src..src + len]);
                    }
                    None => {
                        for _ in 0..part.w {
                            out.extend_from_slice(&self.background);
                        }
                    }
                }
            }
        }
        for (n, ..) in &touched {
            self.cache.release((level, *n));
        }
        Ok(RgbImage::from_raw(rect.w, rect.h, out).expect("w*h*3 bytes"))
    }
}
