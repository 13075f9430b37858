//! Strip TIFFs read by offset, a row at a time, whatever the strip size:
//! Pillow writes a whole image as one uncompressed strip (a 40000² RGB
//! image: one 4.8 GB strip), scientific cameras 16-bit samples, image
//! tools float samples, CMYK or YCbCr. Uncompressed strips are read in
//! place; LZW and Deflate strips are decompressed as they stream; the
//! horizontal predictor is undone row by row. Memory: a row and the
//! decompressor's window, never a strip.
//!
//! Samples: 8- and 16-bit integers (16-bit scaled to 8 bits), 32-bit floats
//! in 0–1. Colours: grey (either polarity), grey + alpha, RGB, RGB + alpha
//! (composited over white, as glass), CMYK and YCbCr without subsampling.
//! Other layouts go to the tiff crate's reader (tiles, other compressions)
//! or are named as not supported.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use tiff::decoder::Decoder;
use tiff::tags::Tag;

use crate::rows::{row_to_rgb, RowSource};
use crate::{Size, SlideError};

/// How a strip TIFF's pixels are stored, when this reader handles them.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    size: Size,
    colour: Colour,
    samples: usize,
    sample: Sample,
    big_endian: bool,
    compression: Compression,
    predictor: bool,
    rows_per_strip: u32,
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    Grey { white_is_zero: bool },
    Rgb,
    Cmyk,
    YCbCr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    U8,
    U16,
    F32,
}

impl Sample {
    fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::U16 => 2,
            Self::F32 => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Lzw,
    Deflate,
}

fn unsupported(path: &Path, detail: String) -> SlideError {
    SlideError::UnsupportedLayout {
        path: path.to_path_buf(),
        detail,
    }
}

/// The layout of the first image of `decoder` (opened on `path`):
/// `Ok(None)` when this reader does not handle it but another may (tiles,
/// planar samples, JPEG or other compression, palettes, 1- and 4-bit
/// images); [`SlideError::UnsupportedLayout`] for samples no reader here
/// handles (12-bit, 32-bit integer, 64-bit float; subsampled YCbCr without
/// JPEG).
pub(crate) fn layout<R: std::io::Read + std::io::Seek>(
    path: &Path,
    decoder: &mut Decoder<R>,
) -> Result<Option<Layout>, SlideError> {
    let samples = usize::from(tag16(decoder, Tag::SamplesPerPixel, 1));
    let photometric = tag16(decoder, Tag::PhotometricInterpretation, u16::MAX);
    let compression = tag16(decoder, Tag::Compression, 1);
    let planar = tag16(decoder, Tag::PlanarConfiguration, 1);
    let predictor = tag16(decoder, Tag::Predictor, 1);
    // One value per sample (tifffile writes three for RGB).
    let format = decoder
        .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)
        .ok()
        .flatten()
        .and_then(|v| v.first().copied())
        .unwrap_or(1);
    let ink_set = tag16(decoder, Tag::Unknown(332), 1);
    let bits_all = decoder
        .find_tag_unsigned_vec::<u16>(Tag::BitsPerSample)
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![1]);
    let Some(sample) = sample_kind(path, &bits_all, format)? else {
        return Ok(None);
    };
    let colour = match (photometric, samples) {
        (0 | 1, 1 | 2) => Colour::Grey {
            white_is_zero: photometric == 0,
        },
        (2, 3 | 4) => Colour::Rgb,
        (5, 4) if ink_set == 1 => Colour::Cmyk,
        (6, 3) if compression != 7 => {
            let sub = decoder
                .find_tag_unsigned_vec::<u16>(Tag::ChromaSubsampling)
                .ok()
                .flatten()
                .unwrap_or_else(|| vec![2, 2]);
            if sub.iter().any(|&s| s != 1) {
                return Err(unsupported(
                    path,
                    format!("YCbCr with {}×{} chroma subsampling outside JPEG is not supported (save it as RGB)", sub.first().unwrap_or(&2), sub.get(1).unwrap_or(&2)),
                ));
            }
            Colour::YCbCr
        }
        _ => return Ok(None),
    };
    let compression = match compression {
        1 => Compression::None,
        5 => Compression::Lzw,
        8 | 32946 => Compression::Deflate,
        _ => return Ok(None),
    };
    if planar != 1 || decoder.get_chunk_type() != tiff::decoder::ChunkType::Strip {
        return Ok(None);
    }
    if predictor > 2 || (predictor == 2 && sample == Sample::F32) {
        return Ok(None);
    }
    let (w, h) = decoder.dimensions().map_err(|e| corrupt(path, e))?;
    let rows_per_strip = decoder
        .find_tag_unsigned::<u32>(Tag::RowsPerStrip)
        .ok()
        .flatten()
        .unwrap_or(h)
        .clamp(1, h.max(1));
    let offsets = strip_tag(decoder, Tag::StripOffsets).map_err(|e| corrupt(path, e))?;
    let counts = strip_tag(decoder, Tag::StripByteCounts).map_err(|e| corrupt(path, e))?;
    let layout = Layout {
        size: Size::new(w, h),
        colour,
        samples,
        sample,
        big_endian: decoder.byte_order() == tiff::tags::ByteOrder::BigEndian,
        compression,
        predictor: predictor == 2,
        rows_per_strip,
        offsets,
        counts,
    };
    let file_len = std::fs::metadata(path).map_or(u64::MAX, |m| m.len());
    let row_bytes = u64::from(w) * samples as u64 * sample.bytes() as u64;
    check_strips(path, &layout, row_bytes, file_len)?;
    Ok(Some(layout))
}

/// The samples' kind from BitsPerSample (one value per sample) and
/// SampleFormat; `None` for bilevel and 4-bit images (the image crate's).
fn sample_kind(path: &Path, bits_all: &[u16], format: u16) -> Result<Option<Sample>, SlideError> {
    let bits = bits_all.first().copied().unwrap_or(1);
    if bits_all.iter().any(|&b| b != bits) {
        return Err(unsupported(
            path,
            format!("samples of different depths ({bits_all:?} bits) are not supported"),
        ));
    }
    Ok(Some(match (bits, format) {
        (8, 1 | 2) => Sample::U8,
        (16, 1 | 2) => Sample::U16,
        (32, 3) => Sample::F32,
        (1 | 4, _) => return Ok(None),
        (b, 3) => {
            return Err(unsupported(
                path,
                format!("{b}-bit floating-point samples are not supported (8- and 16-bit integer and 32-bit float samples are; convert the image)"),
            ))
        }
        (b, _) => {
            return Err(unsupported(
                path,
                format!("{b}-bit samples are not supported (8- and 16-bit integer and 32-bit float samples are; convert the image to 8 or 16 bits)"),
            ))
        }
    }))
}

/// Checks that every strip's data lies inside the file (`file_len` bytes)
/// and, uncompressed, holds its rows of `row_bytes`.
fn check_strips(path: &Path, l: &Layout, row_bytes: u64, file_len: u64) -> Result<(), SlideError> {
    let h = l.size.h;
    let strips = h.div_ceil(l.rows_per_strip) as usize;
    if l.offsets.len() < strips || l.counts.len() < strips {
        return Err(corrupt(
            path,
            format!(
                "{strips} strips of {} rows, but {} offsets and {} byte counts",
                l.rows_per_strip,
                l.offsets.len(),
                l.counts.len()
            ),
        ));
    }
    for (i, (&o, &c)) in l.offsets.iter().zip(&l.counts).take(strips).enumerate() {
        let rows = u64::from(l.rows_per_strip.min(h - i as u32 * l.rows_per_strip));
        let short = l.compression == Compression::None && c < rows * row_bytes;
        if o.saturating_add(c) > file_len || short {
            return Err(corrupt(
                path,
                format!("strip {i}'s data ({c} bytes at offset {o}) lies past the end of the file or is shorter than its rows; the file is truncated or damaged"),
            ));
        }
    }
    Ok(())
}

/// A one-value tag, or `default`.
fn tag16<R: std::io::Read + std::io::Seek>(d: &mut Decoder<R>, tag: Tag, default: u16) -> u16 {
    d.find_tag_unsigned::<u16>(tag)
        .ok()
        .flatten()
        .unwrap_or(default)
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> SlideError {
    SlideError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("TIFF: {detail}"),
    }
}

fn strip_tag<R: std::io::Read + std::io::Seek>(
    decoder: &mut Decoder<R>,
    tag: Tag,
) -> Result<Vec<u64>, String> {
    decoder
        .find_tag_unsigned_vec::<u64>(tag)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no {tag:?} tag"))
}

/// The bytes `pos..end` of a file, read in place.
struct Span {
    file: std::sync::Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Span {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.end - self.pos) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// LZW (TIFF's flavour) decoded as the bytes are asked for.
struct Lzw {
    input: BufReader<Span>,
    decoder: weezl::decode::Decoder,
    done: bool,
}

impl Read for Lzw {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        while !self.done && !out.is_empty() {
            let inp = self.input.fill_buf()?;
            let eof = inp.is_empty();
            let r = self.decoder.decode_bytes(inp, out);
            self.input.consume(r.consumed_in);
            match r.status {
                Ok(weezl::LzwStatus::Done) => self.done = true,
                Ok(_) if eof && r.consumed_out == 0 => self.done = true,
                Ok(_) => {}
                Err(e) => return Err(std::io::Error::other(format!("LZW: {e}"))),
            }
            if r.consumed_out > 0 {
                return Ok(r.consumed_out);
            }
        }
        Ok(0)
    }
}

/// The rows of a strip TIFF ([`layout`]), read in order.
pub(crate) struct StripRows {
    layout: Layout,
    file: std::sync::Arc<File>,
    strip: usize,
    rows_left: u32,
    reader: Option<Box<dyn Read + Send>>,
    raw: Vec<u8>,
    eight: Vec<u8>,
}

impl StripRows {
    pub(crate) fn open(path: &Path, layout: Layout) -> Result<Self, SlideError> {
        let file = File::open(path).map_err(|source| SlideError::Io {
            path: path.to_path_buf(),
            what: "image",
            source,
        })?;
        Ok(Self {
            layout,
            file: std::sync::Arc::new(file),
            strip: 0,
            rows_left: 0,
            reader: None,
            raw: Vec::new(),
            eight: Vec::new(),
        })
    }

    pub(crate) fn size(&self) -> Size {
        self.layout.size
    }

    /// Starts the next strip.
    fn next_strip(&mut self) -> Result<(), String> {
        let l = &self.layout;
        let i = self.strip;
        let first = i as u64 * u64::from(l.rows_per_strip);
        if first >= u64::from(l.size.h) {
            return Err("TIFF: more rows asked for than the image has".into());
        }
        let span = Span {
            file: self.file.clone(),
            pos: l.offsets[i],
            end: l.offsets[i] + l.counts[i],
        };
        self.reader = Some(match l.compression {
            Compression::None => Box::new(span),
            Compression::Deflate => Box::new(flate2::read::ZlibDecoder::new(BufReader::new(span))),
            Compression::Lzw => Box::new(Lzw {
                input: BufReader::with_capacity(1 << 16, span),
                decoder: weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8),
                done: false,
            }),
        });
        self.rows_left = l.rows_per_strip.min(l.size.h - first as u32);
        self.strip += 1;
        Ok(())
    }

    /// One row of the strip, as 8-bit samples in `self.eight`.
    fn next_samples(&mut self) -> Result<(), String> {
        if self.rows_left == 0 {
            self.next_strip()?;
        }
        let l = &self.layout;
        let n = l.size.w as usize * l.samples;
        self.raw.resize(n * l.sample.bytes(), 0);
        let strip = self.strip - 1;
        self.reader
            .as_mut()
            .expect("a strip is open")
            .read_exact(&mut self.raw)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    format!("TIFF strip {strip}: its data ends early (truncated or damaged)")
                }
                _ => format!("TIFF strip {strip}: {e}"),
            })?;
        self.rows_left -= 1;
        self.eight.resize(n, 0);
        let s = l.samples;
        match l.sample {
            Sample::U8 => {
                if l.predictor {
                    for i in s..n {
                        self.raw[i] = self.raw[i].wrapping_add(self.raw[i - s]);
                    }
                }
                self.eight.copy_from_slice(&self.raw);
            }
            Sample::U16 => {
                let big = l.big_endian;
                let mut prev = vec![0u16; s];
                for (i, (o, b)) in self
                    .eight
                    .iter_mut()
                    .zip(self.raw.chunks_exact(2))
                    .enumerate()
                {
                    let mut v = if big {
                        u16::from_be_bytes([b[0], b[1]])
                    } else {
                        u16::from_le_bytes([b[0], b[1]])
                    };
                    if l.predictor {
                        if i >= s {
                            v = v.wrapping_add(prev[i % s]);
                        }
                        prev[i % s] = v;
                    }
                    *o = (v >> 8) as u8;
                }
            }
            Sample::F32 => {
                let big = l.big_endian;
                for (o, b) in self.eight.iter_mut().zip(self.raw.chunks_exact(4)) {
                    let b = [b[0], b[1], b[2], b[3]];
                    let v = if big {
                        f32::from_be_bytes(b)
                    } else {
                        f32::from_le_bytes(b)
                    };
                    // NaN → 0, like the image crate.
                    *o = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
        Ok(())
    }
}

impl RowSource for StripRows {
    fn read_rows(&mut self, out: &mut [u8], n: u32) -> Result<(), String> {
        let stride = self.layout.size.w as usize * 3;
        for dst in out.chunks_exact_mut(stride).take(n as usize) {
            self.next_samples()?;
            let s = self.layout.samples;
            match self.layout.colour {
                Colour::Grey { white_is_zero } => {
                    if white_is_zero {
                        for v in self.eight.iter_mut().step_by(s) {
                            *v = 255 - *v;
                        }
                    }
                    row_to_rgb(&self.eight, s, dst);
                }
                Colour::Rgb => row_to_rgb(&self.eight, s, dst),
                Colour::Cmyk => {
                    for (o, p) in dst.chunks_exact_mut(3).zip(self.eight.chunks_exact(4)) {
                        let k = 255 - u32::from(p[3]);
                        for c in 0..3 {
                            o[c] = (((255 - u32::from(p[c])) * k + 127) / 255) as u8;
                        }
                    }
                }
                Colour::YCbCr => {
                    for (o, p) in dst.chunks_exact_mut(3).zip(self.eight.chunks_exact(3)) {
                        let (y, cb, cr) = (
                            f32::from(p[0]),
                            f32::from(p[1]) - 128.0,
                            f32::from(p[2]) - 128.0,
                        );
                        let px = [
                            y + 1.402 * cr,
                            y - 0.344_136 * cb - 0.714_136 * cr,
                            y + 1.772 * cb,
                        ];
                        for c in 0..3 {
                            o[c] = px[c].round().clamp(0.0, 255.0) as u8;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
