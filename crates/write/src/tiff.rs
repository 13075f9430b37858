//! A streaming writer of pyramidal, tiled BigTIFF files: synthetic slides
//! (JPEG RGB tiles, Aperio-style description) and masks (Deflate 8-bit).
//!
//! Level-0 rows are pushed top to bottom in any amounts; every time a level
//! has a full row of tiles, those tiles are compressed in parallel, appended
//! to the file, and the rows are downsampled into the next level. Memory is
//! one row of tiles per level, whatever the image height. The IFDs (one per
//! level, in the main chain, reduced levels with NewSubfileType = 1, as
//! OpenSlide's generic-tiff and Aperio readers expect) go at the end of the
//! file, and the file gets its final name only when complete.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use wsiseg_geometry::Size;

use crate::{OutFile, PartialFile, Staged, WriteLimit};

/// How tiles are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileCompression {
    /// Baseline JPEG, 4:2:0 YCbCr for RGB (photometric YCbCr), as scanners write.
    Jpeg {
        /// JPEG quality, 1–100.
        quality: u8,
    },
    /// Lossless zlib/Deflate (TIFF compression 8).
    Deflate,
}

/// How a level is reduced to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// Mean of each block: images.
    Average,
    /// The block's top-left pixel: label masks, whose values are not quantities.
    Nearest,
}

/// What to write.
#[derive(Debug, Clone)]
pub struct PyramidOptions {
    /// 1 (gray / labels) or 3 (RGB).
    pub channels: u8,
    /// Tile side, a multiple of 16 and of `step`.
    pub tile: u32,
    /// Each level is `step` times smaller than the one above.
    pub step: u32,
    /// Levels are added until the smallest fits in this many pixels a side.
    pub smallest: u32,
    /// How tiles are compressed.
    pub compression: TileCompression,
    /// How each level is reduced to the next.
    pub reduce: Reduce,
    /// Microns per level-0 pixel, written as resolution tags (pixels per cm).
    pub mpp: Option<f64>,
    /// ImageDescription of level 0 (an Aperio-style one makes OpenSlide read it as Aperio).
    pub description: Option<String>,
}

impl PyramidOptions {
    /// The layout of wsiseg's label masks: 8-bit, 512-px Deflate tiles,
    /// levels 4× apart down to ≤ 256 px, reduced by nearest neighbour (labels
    /// are not quantities); `mpp` is that of the mask's level 0.
    pub fn label_mask(mpp: Option<f64>, description: Option<String>) -> Self {
        Self {
            channels: 1,
            tile: 512,
            step: 4,
            smallest: 256,
            compression: TileCompression::Deflate,
            reduce: Reduce::Nearest,
            mpp,
            description,
        }
    }
}

/// Errors writing a pyramid.
#[derive(Debug, thiserror::Error)]
pub enum TiffWriteError {
    /// Writing the file.
    #[error("{}: cannot write TIFF: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// JPEG-encoding a tile.
    #[error("{}: cannot JPEG-encode a tile: {detail}", path.display())]
    Jpeg {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
        detail: String,
    },
    /// Options or data the writer cannot write.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

struct LevelState {
    size: Size,
    /// Up to one row of tiles: `tile` rows × `size.w` pixels.
    rows: Vec<u8>,
    rows_held: u32,
    next_tile_row: u32,
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

impl LevelState {
    fn tiles_across(&self, tile: u32) -> u32 {
        self.size.w.div_ceil(tile)
    }
}

/// See the module documentation.
pub struct PyramidWriter {
    path: PathBuf,
    out: BufWriter<OutFile>,
    partial: PartialFile,
    pos: u64,
    opts: PyramidOptions,
    levels: Vec<LevelState>,
    /// A colour map for a one-channel image (TIFF palette colour).
    palette: Option<Vec<[u8; 3]>>,
}

/// The level sizes a pyramid of `level0` will have.
pub fn pyramid_sizes(level0: Size, step: u32, smallest: u32) -> Vec<Size> {
    let mut sizes = vec![level0];
    while let Some(&last) = sizes.last() {
        if last.w.max(last.h) <= smallest || (last.w == 1 && last.h == 1) {
            break;
        }
        sizes.push(Size::new(last.w.div_ceil(step), last.h.div_ceil(step)));
    }
    sizes
}

impl PyramidWriter {
    /// Starts writing a pyramid of `level0` that will be named `path`.
    pub fn create(path: &Path, level0: Size, opts: PyramidOptions) -> Result<Self, TiffWriteError> {
        Self::create_limited(path, level0, opts, &WriteLimit::none())
    }

    /// [`Self::create`], the file's writes counting against `limit`.
    pub fn create_limited(
        path: &Path,
        level0: Size,
        opts: PyramidOptions,
        limit: &WriteLimit,
    ) -> Result<Self, TiffWriteError> {
        let invalid = |problem: String| TiffWriteError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        if !(opts.channels == 1 || opts.channels == 3) {
            return Err(invalid(format!(
                "{} channels (1 or 3 supported)",
                opts.channels
            )));
        }
        if opts.step < 2
            || opts.tile == 0
            || !opts.tile.is_multiple_of(16)
            || !opts.tile.is_multiple_of(opts.step)
        {
            return Err(invalid(format!(
                "tile {} must be a multiple of 16 and of the level step {}",
                opts.tile, opts.step
            )));
        }
        if level0.w == 0 || level0.h == 0 {
            return Err(invalid(format!("empty image {level0}")));
        }
        let io = |source| TiffWriteError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (partial, file) = PartialFile::create_limited(path, limit).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // BigTIFF header; the first IFD's offset is patched in at the end.
        out.write_all(b"II").map_err(io)?;
        out.write_all(&43u16.to_le_bytes()).map_err(io)?;
        out.write_all(&8u16.to_le_bytes()).map_err(io)?;
        out.write_all(&0u16.to_le_bytes()).map_err(io)?;
        out.write_all(&0u64.to_le_bytes()).map_err(io)?;
        let levels = pyramid_sizes(level0, opts.step, opts.smallest)
            .into_iter()
            .map(|size| LevelState {
                size,
                rows: Vec::new(),
                rows_held: 0,
                next_tile_row: 0,
                offsets: Vec::new(),
                counts: Vec::new(),
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            out,
            partial,
            pos: 16,
            opts,
            levels,
            palette: None,
        })
    }

    /// Writes the image as palette colour (PhotometricInterpretation 3 with
    /// a ColorMap): the stored values stay labels, and viewers (OpenSlide's
    /// thumbnail, QuPath, ASAP, libvips) show each label in its colour
    /// instead of near-black grey levels. `colours[i]` is label i's colour;
    /// labels past the list show as grey (i, i, i). One-channel images only.
    pub fn set_palette(&mut self, colours: &[[u8; 3]]) {
        if self.opts.channels == 1 {
            self.palette = Some(colours.iter().copied().take(256).collect());
        }
    }

    /// The sizes of the levels being written, level 0 first.
    pub fn level_sizes(&self) -> Vec<Size> {
        self.levels.iter().map(|l| l.size).collect()
    }

    /// Appends whole level-0 rows (`width × channels` bytes each).
    pub fn push_rows(&mut self, rows: &[u8]) -> Result<(), TiffWriteError> {
        self.push(0, rows)
    }

    fn push(&mut self, level: usize, mut rows: &[u8]) -> Result<(), TiffWriteError> {
        let ch = self.opts.channels as usize;
        let tile = self.opts.tile;
        let row_bytes = self.levels[level].size.w as usize * ch;
        assert_eq!(rows.len() % row_bytes, 0, "push whole rows");
        while !rows.is_empty() {
            let l = &mut self.levels[level];
            let want = (tile - l.rows_held) as usize;
            let take = want.min(rows.len() / row_bytes);
            l.rows.extend_from_slice(&rows[..take * row_bytes]);
            l.rows_held += take as u32;
            rows = &rows[take * row_bytes..];
            let level_done = (l.next_tile_row * tile + l.rows_held) == l.size.h;
            if l.rows_held == tile || level_done {
                self.emit_tile_row(level)?;
            }
        }
        Ok(())
    }

    /// Compresses and writes the held row of tiles, then feeds the next level.
    fn emit_tile_row(&mut self, level: usize) -> Result<(), TiffWriteError> {
        let opts = self.opts.clone();
        let ch = opts.channels as usize;
        let t = opts.tile as usize;
        let l = &mut self.levels[level];
        let (w, held) = (l.size.w as usize, l.rows_held as usize);
        let rows = std::mem::take(&mut l.rows);
        let across = l.tiles_across(opts.tile) as usize;
        let path = &self.path;
        let encoded: Vec<Vec<u8>> = (0..across)
            .into_par_iter()
            .map(|c| {
                // Edge tiles are padded by repeating the last column and row,
                // so that JPEG's chroma subsampling has nothing foreign to blur in.
                let mut buf = vec![0u8; t * t * ch];
                let x0 = c * t;
                let cw = t.min(w - x0);
                for r in 0..t {
                    let src = (r.min(held - 1) * w + x0) * ch;
                    let line = &mut buf[r * t * ch..(r + 1) * t * ch];
                    line[..cw * ch].copy_from_slice(&rows[src..src + cw * ch]);
                    let last = (cw - 1) * ch;
                    for x in cw..t {
                        line.copy_within(last..last + ch, x * ch);
                    }
                }
                compress(&buf, opts.tile, opts.channels, opts.compression, path)
            })
            .collect::<Result<_, _>>()?;
        for data in &encoded {
            self.out
                .write_all(data)
                .map_err(|source| TiffWriteError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            let l = &mut self.levels[level];
            l.offsets.push(self.pos);
            l.counts.push(data.len() as u64);
            self.pos += data.len() as u64;
        }
        let l = &mut self.levels[level];
        l.rows_held = 0;
        l.next_tile_row += 1;
        if level + 1 < self.levels.len() {
            let down = reduce(
                &rows[..held * w * ch],
                w,
                held,
                ch,
                opts.step as usize,
                opts.reduce,
            );
            self.push(level + 1, &down)?;
        }
        // Reuse the buffer for the next row of tiles.
        let l = &mut self.levels[level];
        l.rows = rows;
        l.rows.clear();
        Ok(())
    }

    /// Writes the IFDs and gives the file its final name.
    pub fn finish(self) -> Result<PathBuf, TiffWriteError> {
        let path = self.path.clone();
        self.finish_staged()?
            .commit()
            .map_err(|source| TiffWriteError::Io { path, source })
    }

    /// Writes the IFDs, flushes and fsyncs: the file is complete, under its
    /// temporary name until [`Staged::commit`].
    pub fn finish_staged(mut self) -> Result<Staged, TiffWriteError> {
        for (i, l) in self.levels.iter().enumerate() {
            let expected =
                (l.size.w.div_ceil(self.opts.tile) * l.size.h.div_ceil(self.opts.tile)) as usize;
            if l.offsets.len() != expected {
                return Err(TiffWriteError::Invalid {
                    path: self.path.clone(),
                    problem: format!(
                        "level {i} has {} of its {expected} tiles: the image got fewer rows than its height",
                        l.offsets.len()
                    ),
                });
            }
        }
        self.write_ifds().map_err(|source| TiffWriteError::Io {
            path: self.path.clone(),
            source,
        })?;
        let PyramidWriter {
            out, partial, path, ..
        } = self;
        let io = |source| TiffWriteError::Io {
            path: path.clone(),
            source,
        };
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        partial.finish(file).map_err(io)
    }

    fn write_ifds(&mut self) -> std::io::Result<()> {
        let ifds: Vec<Vec<Entry>> = (0..self.levels.len()).map(|i| self.entries(i)).collect();
        // Out-of-line values first, then the IFDs one after another, so that
        // each IFD's size, and so the next one's offset, is known.
        let mut placed: Vec<Vec<[u8; 8]>> = Vec::new();
        for entries in &ifds {
            let mut values = Vec::new();
            for e in entries {
                if e.data.len() <= 8 {
                    let mut v = [0u8; 8];
                    v[..e.data.len()].copy_from_slice(&e.data);
                    values.push(v);
                } else {
                    self.align()?;
                    values.push(self.pos.to_le_bytes());
                    self.out.write_all(&e.data)?;
                    self.pos += e.data.len() as u64;
                }
            }
            placed.push(values);
        }
        self.align()?;
        let first_ifd = self.pos;
        for (i, (entries, values)) in ifds.iter().zip(&placed).enumerate() {
            let size = 8 + 20 * entries.len() as u64 + 8;
            let next = if i + 1 < ifds.len() {
                self.pos + size
            } else {
                0
            };
            let mut buf = Vec::with_capacity(size as usize);
            buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
            for (e, v) in entries.iter().zip(values) {
                buf.extend_from_slice(&e.tag.to_le_bytes());
                buf.extend_from_slice(&e.typ.to_le_bytes());
                buf.extend_from_slice(&e.count.to_le_bytes());
                buf.extend_from_slice(v);
            }
            buf.extend_from_slice(&next.to_le_bytes());
            self.out.write_all(&buf)?;
            self.pos += size;
        }
        self.out.seek(SeekFrom::Start(8))?;
        self.out.write_all(&first_ifd.to_le_bytes())?;
        self.out.flush()
    }

    fn align(&mut self) -> std::io::Result<()> {
        if self.pos % 2 == 1 {
            self.out.write_all(&[0])?;
            self.pos += 1;
        }
        Ok(())
    }

    /// The tags of level `i`, sorted by tag number as TIFF requires.
    fn entries(&self, i: usize) -> Vec<Entry> {
        let o = &self.opts;
        let l = &self.levels[i];
        let rgb = o.channels == 3;
        let jpeg = matches!(o.compression, TileCompression::Jpeg { .. });
        let mut e = vec![
            Entry::long(254, u32::from(i > 0)), // NewSubfileType: reduced resolution
            Entry::long(256, l.size.w),
            Entry::long(257, l.size.h),
            Entry::shorts(258, &vec![8; o.channels as usize]),
            Entry::shorts(259, &[if jpeg { 7 } else { 8 }]),
            // Photometric: YCbCr for JPEG RGB (the JPEG data is YCbCr), RGB,
            // palette colour, or BlackIsZero.
            Entry::shorts(
                262,
                &[if rgb && jpeg {
                    6
                } else if rgb {
                    2
                } else if self.palette.is_some() {
                    3
                } else {
                    1
                }],
            ),
        ];
        if i == 0 {
            if let Some(d) = &o.description {
                let mut bytes = d.clone().into_bytes();
                bytes.push(0);
                e.push(Entry {
                    tag: 270,
                    typ: 2,
                    count: bytes.len() as u64,
                    data: bytes,
                });
            }
        }
        e.push(Entry::shorts(277, &[u16::from(o.channels)]));
        if let Some(mpp) = o.mpp {
            // Pixels per centimetre of this level, as a rational with a fixed denominator.
            let downsample = f64::from(self.levels[0].size.w) / f64::from(l.size.w);
            let ppcm = 10_000.0 / (mpp * downsample);
            let rational = Entry::rational(282, (ppcm * 1000.0).round() as u32, 1000);
            e.push(rational.clone());
            e.push(Entry {
                tag: 283,
                ..rational
            });
        }
        e.push(Entry::shorts(284, &[1])); // PlanarConfiguration: chunky
        if o.mpp.is_some() {
            e.push(Entry::shorts(296, &[3])); // ResolutionUnit: centimetre
        }
        if let Some(colours) = &self.palette {
            // ColorMap: all reds, then greens, then blues, 16 bits each.
            let value = |i: usize, c: usize| {
                let v = colours.get(i).map_or(i as u8, |rgb| rgb[c]);
                u16::from(v) * 257
            };
            let map: Vec<u16> = (0..3)
                .flat_map(|c| (0..256).map(move |i| (i, c)))
                .map(|(i, c)| value(i, c))
                .collect();
            e.push(Entry::shorts(320, &map));
        }
        e.push(Entry::long(322, o.tile));
        e.push(Entry::long(323, o.tile));
        e.push(Entry::long8s(324, &l.offsets));
        e.push(Entry::long8s(325, &l.counts));
        if rgb && jpeg {
            e.push(Entry::shorts(530, &[2, 2])); // YCbCrSubSampling 4:2:0
        }
        e
    }
}

/// One IFD entry with its value bytes (little-endian).
#[derive(Clone)]
struct Entry {
    tag: u16,
    typ: u16,
    count: u64,
    data: Vec<u8>,
}

impl Entry {
    fn long(tag: u16, v: u32) -> Self {
        Self {
            tag,
            typ: 4,
            count: 1,
            data: v.to_le_bytes().to_vec(),
        }
    }
    fn shorts(tag: u16, v: &[u16]) -> Self {
        Self {
            tag,
            typ: 3,
            count: v.len() as u64,
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    fn long8s(tag: u16, v: &[u64]) -> Self {
        Self {
            tag,
            typ: 16,
            count: v.len() as u64,
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    fn rational(tag: u16, num: u32, den: u32) -> Self {
        Self {
            tag,
            typ: 5,
            count: 1,
            data: [num.to_le_bytes(), den.to_le_bytes()].concat(),
        }
    }
}

/// Compresses one full `tile × tile` tile.
fn compress(
    pixels: &[u8],
    tile: u32,
    channels: u8,
    compression: TileCompression,
    path: &Path,
) -> Result<Vec<u8>, TiffWriteError> {
    match compression {
        TileCompression::Jpeg { quality } => {
            let mut out = Vec::with_capacity(pixels.len() / 8);
            let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
            let color = if channels == 3 {
                enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
                jpeg_encoder::ColorType::Rgb
            } else {
                jpeg_encoder::ColorType::Luma
            };
            enc.encode(pixels, tile as u16, tile as u16, color)
                .map_err(|e| TiffWriteError::Jpeg {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            Ok(out)
        }
        TileCompression::Deflate => {
            let mut z = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(pixels.len() / 4),
                flate2::Compression::fast(),
            );
            z.write_all(pixels)
                .and_then(|()| z.finish())
                .map_err(|source| TiffWriteError::Io {
                    path: path.to_path_buf(),
                    source,
                })
        }
    }
}

/// Reduces `h` rows of `w × ch` pixels by `step` in both directions
/// (partial blocks at the right and bottom edges included).
fn reduce(rows: &[u8], w: usize, h: usize, ch: usize, step: usize, mode: Reduce) -> Vec<u8> {
    let (ow, oh) = (w.div_ceil(step), h.div_ceil(step));
    let mut out = vec![0u8; ow * oh * ch];
    out.par_chunks_mut(ow * ch)
        .enumerate()
        .for_each(|(oy, line)| {
            let y0 = oy * step;
            let y1 = (y0 + step).min(h);
            for ox in 0..ow {
                let x0 = ox * step;
                let x1 = (x0 + step).min(w);
                for c in 0..ch {
                    line[ox * ch + c] = match mode {
                        Reduce::Nearest => rows[(y0 * w + x0) * ch + c],
                        Reduce::Average => {
                            let mut sum = 0u32;
                            for y in y0..y1 {
                                for x in x0..x1 {
                                    sum += u32::from(rows[(y * w + x) * ch + c]);
                                }
                            }
                            let n = ((y1 - y0) * (x1 - x0)) as u32;
                            ((sum + n / 2) / n) as u8
                        }
                    };
                }
            }
        });
    out
}
