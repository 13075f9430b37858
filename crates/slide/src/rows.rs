//! Plain images decoded forward, a band of rows at a time: PNG (the png
//! crate, row by row), JPEG (libjpeg-turbo by scanlines, csrc/jpeg_rows.c)
//! and strip or tiled TIFF (the tiff crate, one strip or row of tiles at a
//! time). What cannot be streamed (interlaced PNG, planar TIFF…) is decoded
//! whole, when it fits the memory limit.

use std::ffi::{c_char, c_int, c_void, CString};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::ImageFormat;

use crate::{Size, SlideError};

/// RGB rows of an image, from the top, each decoded once.
pub(crate) trait RowSource: Send {
    /// Decodes the next `n` rows as RGB into `out` (`n` × width × 3 bytes).
    /// An error is what the decoder said; the caller names file and row.
    fn read_rows(&mut self, out: &mut [u8], n: u32) -> Result<(), String>;
}

/// A decoder for `path`, positioned at its first row, and the image's size.
/// Nothing larger than `limit` bytes is allocated: what would need more is
/// [`SlideError::TooLarge`].
pub(crate) fn open_rows(
    path: &Path,
    format: ImageFormat,
    limit: u64,
) -> Result<(Size, Box<dyn RowSource>), SlideError> {
    match format {
        ImageFormat::Png => PngRows::open(path, limit),
        ImageFormat::Jpeg => JpegRows::open(path, limit),
        _ => TiffRows::open(path, limit),
    }
}

fn open_file(path: &Path) -> Result<File, SlideError> {
    File::open(path).map_err(|source| SlideError::Io {
        path: path.to_path_buf(),
        what: "image",
        source,
    })
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> SlideError {
    SlideError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

fn too_large(path: &Path, size: Size, needed: u64, limit: u64, why: &str) -> SlideError {
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    SlideError::TooLarge {
        path: path.to_path_buf(),
        width: size.w,
        height: size.h,
        needed_gib: gib(needed),
        limit_gib: gib(limit),
        why: why.to_string(),
    }
}

/// Converts one row of `samples`-channel 8-bit pixels to RGB; alpha is
/// composited over white (transparent means glass).
pub(crate) fn row_to_rgb(src: &[u8], samples: usize, out: &mut [u8]) {
    let over_white = |c: u8, a: u8| -> u8 {
        let (c, a) = (u32::from(c), u32::from(a));
        ((c * a + 255 * (255 - a) + 127) / 255) as u8
    };
    match samples {
        3 => out.copy_from_slice(&src[..out.len()]),
        1 => {
            for (o, &g) in out.chunks_exact_mut(3).zip(src) {
                o.fill(g);
            }
        }
        2 => {
            for (o, p) in out.chunks_exact_mut(3).zip(src.chunks_exact(2)) {
                o.fill(over_white(p[0], p[1]));
            }
        }
        _ => {
            for (o, p) in out.chunks_exact_mut(3).zip(src.chunks_exact(samples)) {
                for c in 0..3 {
                    o[c] = over_white(p[c], p[3]);
                }
            }
        }
    }
}

/// Non-interlaced PNG, one row at a time.
struct PngRows {
    reader: png::Reader<BufReader<File>>,
    samples: usize,
}

impl PngRows {
    fn open(path: &Path, limit: u64) -> Result<(Size, Box<dyn RowSource>), SlideError> {
        let file = open_file(path)?;
        let mut decoder = png::Decoder::new(BufReader::new(file));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let reader = decoder
            .read_info()
            .map_err(|e| corrupt(path, format!("PNG: {e}")))?;
        let info = reader.info();
        let size = Size::new(info.width, info.height);
        if info.interlaced {
            return WholeRows::open(path, ImageFormat::Png, size, limit);
        }
        let samples = reader.output_color_type().0.samples();
        Ok((size, Box::new(Self { reader, samples })))
    }
}

impl RowSource for PngRows {
    fn read_rows(&mut self, out: &mut [u8], n: u32) -> Result<(), String> {
        let stride = out.len() / n.max(1) as usize;
        for dst in out.chunks_exact_mut(stride) {
            let row = self
                .reader
                .next_row()
                .map_err(|e| format!("PNG: {e}"))?
                .ok_or("PNG: the image data ends early (truncated file)")?;
            row_to_rgb(row.data(), self.samples, dst);
        }
        Ok(())
    }
}

extern "C" {
    fn wsj_open(path: *const c_char, err: *mut c_char, errlen: usize) -> *mut c_void;
    fn wsj_info(
        handle: *mut c_void,
        w: *mut u32,
        h: *mut u32,
        components: *mut c_int,
        progressive: *mut c_int,
    );
    fn wsj_start(handle: *mut c_void, max_memory: u64, err: *mut c_char, errlen: usize) -> c_int;
    fn wsj_read_rows(
        handle: *mut c_void,
        out: *mut u8,
        rows: u32,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn wsj_close(handle: *mut c_void);
}

/// A JPEG decoded by libjpeg-turbo's scanline API.
struct JpegRows {
    handle: *mut c_void,
}

// SAFETY: the handle is owned by this value and used by one thread at a time
// (&mut self); libjpeg keeps no thread-local state.
unsafe impl Send for JpegRows {}

/// The C side's error message.
fn c_message(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl JpegRows {
    fn open(path: &Path, limit: u64) -> Result<(Size, Box<dyn RowSource>), SlideError> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| corrupt(path, "the path contains a NUL byte"))?;
        let mut err: [c_char; 256] = [0; 256];
        // SAFETY: c_path and err outlive the call; err's length is passed.
        let handle = unsafe { wsj_open(c_path.as_ptr(), err.as_mut_ptr(), err.len()) };
        if handle.is_null() {
            return Err(corrupt(path, format!("JPEG: {}", c_message(&err))));
        }
        let rows = Self { handle };
        let (mut w, mut h, mut components, mut progressive) = (0, 0, 0, 0);
        // SAFETY: handle is a live reader; the out-pointers are locals.
        unsafe { wsj_info(handle, &mut w, &mut h, &mut components, &mut progressive) };
        let size = Size::new(w, h);
        if progressive != 0 {
            // libjpeg holds every DCT coefficient of a progressive image.
            let needed = u64::from(w) * u64::from(h) * components.max(1) as u64 * 2;
            if needed > limit {
                return Err(too_large(
                    path,
                    size,
                    needed,
                    limit,
                    "a progressive JPEG can only be decoded whole; save it as baseline JPEG or a tiled TIFF",
                ));
            }
        }
        // SAFETY: as above.
        let started = unsafe { wsj_start(handle, limit, err.as_mut_ptr(), err.len()) };
        if started != 0 {
            return Err(corrupt(path, format!("JPEG: {}", c_message(&err))));
        }
        Ok((size, Box::new(rows)))
    }
}

impl RowSource for JpegRows {
    fn read_rows(&mut self, out: &mut [u8], n: u32) -> Result<(), String> {
        let mut err: [c_char; 256] = [0; 256];
        // SAFETY: out holds n rows of width × 3 bytes (the caller's
        // contract); handle is live and started.
        let rc = unsafe {
            wsj_read_rows(
                self.handle,
                out.as_mut_ptr(),
                n,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("JPEG: {}", c_message(&err)))
        }
    }
}

impl Drop for JpegRows {
    fn drop(&mut self) {
        // SAFETY: the handle came from wsj_open and is closed once.
        unsafe { wsj_close(self.handle) }
    }
}

/// A strip or tiled TIFF, one strip or row of tiles at a time.
struct TiffRows {
    decoder: tiff::decoder::Decoder<BufReader<File>>,
    size: Size,
    samples: usize,
    sixteen: bool,
    chunk: (u32, u32),
    /// The current band of chunk rows, RGB, and the rows of it handed out.
    band: Vec<u8>,
    band_rows: u32,
    taken: u32,
    next_chunk_row: u32,
}

impl TiffRows {
    fn open(path: &Path, limit: u64) -> Result<(Size, Box<dyn RowSource>), SlideError> {
        use tiff::decoder::{ChunkType, Decoder, Limits};
        let file = open_file(path)?;
        let tiff_err = |e: tiff::TiffError| corrupt(path, format!("TIFF: {e}"));
        // One strip may hold the whole image (Pillow writes a single
        // strip): the decoder may hold it compressed (intermediate) and
        // decoded, within the limit (the band check below bounds the rest).
        let mut limits = Limits::default();
        limits.decoding_buffer_size = usize::try_from(limit).unwrap_or(usize::MAX);
        limits.intermediate_buffer_size = limits.decoding_buffer_size;
        let mut decoder = Decoder::new(BufReader::new(file))
            .map_err(tiff_err)?
            .with_limits(limits);
        // Strips of any size, read by offset a row at a time.
        if let Some(layout) = crate::strips::layout(path, &mut decoder)? {
            let rows = crate::strips::StripRows::open(path, layout)?;
            return Ok((rows.size(), Box::new(rows)));
        }
        let (w, h) = decoder.dimensions().map_err(tiff_err)?;
        let size = Size::new(w, h);
        let planar = decoder
            .get_tag_u32(tiff::tags::Tag::PlanarConfiguration)
            .unwrap_or(1);
        let (samples, sixteen) = match decoder.colortype().map_err(tiff_err)? {
            tiff::ColorType::Gray(8) => (1, false),
            tiff::ColorType::GrayA(8) => (2, false),
            tiff::ColorType::RGB(8) => (3, false),
            tiff::ColorType::RGBA(8) => (4, false),
            tiff::ColorType::Gray(16) => (1, true),
            tiff::ColorType::GrayA(16) => (2, true),
            tiff::ColorType::RGB(16) => (3, true),
            tiff::ColorType::RGBA(16) => (4, true),
            _ => return WholeRows::open(path, ImageFormat::Tiff, size, limit),
        };
        if planar != 1 {
            return WholeRows::open(path, ImageFormat::Tiff, size, limit);
        }
        let chunk = match decoder.get_chunk_type() {
            ChunkType::Strip => (w, decoder.chunk_dimensions().1.clamp(1, h.max(1))),
            ChunkType::Tile => decoder.chunk_dimensions(),
        };
        // A band of chunk rows, decoded and converted: the most held.
        let band = u64::from(w) * u64::from(chunk.1) * (samples as u64 * 2 + 3);
        if band > limit {
            return Err(too_large(
                path,
                size,
                band,
                limit,
                &format!(
                    "its {} hold {} rows each and are decoded whole; save it as a tiled TIFF",
                    if chunk.0 == w { "strips" } else { "tiles" },
                    chunk.1
                ),
            ));
        }
        let rows = Self {
            decoder,
            size,
            samples,
            sixteen,
            chunk,
            band: Vec::new(),
            band_rows: 0,
            taken: 0,
            next_chunk_row: 0,
        };
        Ok((size, Box::new(rows)))
    }

    /// Decodes the next row of chunks into `band`.
    fn next_band(&mut self) -> Result<(), String> {
        let (cw, ch) = self.chunk;
        let w = self.size.w as usize;
        let across = self.size.w.div_ceil(cw);
        let y0 = self.next_chunk_row * ch;
        if y0 >= self.size.h {
            return Err("TIFF: more rows asked for than the image has".into());
        }
        let rows = ch.min(self.size.h - y0);
        self.band.resize(w * rows as usize * 3, 0);
        let mut rgb_row = Vec::new();
        for c in 0..across {
            let index = self.next_chunk_row * across + c;
            let data = self
                .decoder
                .read_chunk(index)
                .map_err(|e| format!("TIFF chunk {index}: {e}"))?;
            let bytes: Vec<u8> = match data {
                tiff::decoder::DecodingResult::U8(v) if !self.sixteen => v,
                tiff::decoder::DecodingResult::U16(v) if self.sixteen => {
                    v.iter().map(|&x| (x >> 8) as u8).collect()
                }
                _ => return Err(format!("TIFF chunk {index}: unexpected sample type")),
            };
            let (dw, dh) = self.decoder.chunk_data_dimensions(index);
            let x0 = (c * cw) as usize;
            let dw = (dw as usize).min(w - x0);
            let stride = bytes.len() / dh.max(1) as usize;
            if (dh as usize) < rows as usize || stride < dw * self.samples {
                return Err(format!(
                    "TIFF chunk {index}: holds fewer pixels than declared"
                ));
            }
            rgb_row.resize(dw * 3, 0);
            for r in 0..rows as usize {
                row_to_rgb(&bytes[r * stride..], self.samples, &mut rgb_row);
                let start = (r * w + x0) * 3;
                self.band[start..start + dw * 3].copy_from_slice(&rgb_row);
            }
        }
        self.band_rows = rows;
        self.taken = 0;
        self.next_chunk_row += 1;
        Ok(())
    }
}

impl RowSource for TiffRows {
    fn read_rows(&mut self, out: &mut [u8], n: u32) -> Result<(), String> {
        let stride = self.size.w as usize * 3;
        let mut done = 0;
        while done < n {
            if self.taken == self.band_rows {
                self.next_band()?;
            }
            let k = (n - done).min(self.band_rows - self.taken);
            let src = &self.band[self.taken as usize * stride..(self.taken + k) as usize * stride];
            out[done as usize * stride..(done + k) as usize * stride].copy_from_slice(src);
            self.taken += k;
            done += k;
        }
        Ok(())
    }
}

/// An image that cannot be streamed, decoded whole by the image crate when
/// it fits the limit.
struct WholeRows {
    pixels: Vec<u8>,
    next: usize,
}

impl WholeRows {
    fn open(
        path: &Path,
        format: ImageFormat,
        size: Size,
        limit: u64,
    ) -> Result<(Size, Box<dyn RowSource>), SlideError> {
        let decode_err = |source| SlideError::Decode {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = image::ImageReader::open(path).map_err(|source| SlideError::Io {
            path: path.to_path_buf(),
            what: "image",
            source,
        })?;
        reader.set_format(format);
        let mut decoder = reader.into_decoder().map_err(decode_err)?;
        let decoded = image::ImageDecoder::total_bytes(&decoder);
        let needed = decoded.saturating_add(size.area() * 3);
        let why = match format {
            ImageFormat::Png => {
                "an interlaced PNG can only be decoded whole; save it non-interlaced"
            }
            _ => "this TIFF layout can only be decoded whole; save it as a tiled TIFF",
        };
        if needed > limit {
            return Err(too_large(path, size, needed, limit, why));
        }
        let mut limits = image::Limits::no_limits();
        limits.max_alloc = Some(limit);
        image::ImageDecoder::set_limits(&mut decoder, limits).map_err(decode_err)?;
        let pixels = image::DynamicImage::from_decoder(decoder)
            .map_err(decode_err)?
            .into_rgb8()
            .into_raw();
        Ok((size, Box::new(Self { pixels, next: 0 })))
    }
}

impl RowSource for WholeRows {
    fn read_rows(&mut self, out: &mut [u8], _n: u32) -> Result<(), String> {
        let end = self.next + out.len();
        let src = self
            .pixels
            .get(self.next..end)
            .ok_or("more rows asked for than the image has")?;
        out.copy_from_slice(src);
        self.next = end;
        Ok(())
    }
}
