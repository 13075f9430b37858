//! A rectangle of a JPEG-tiled level as the stored tiles it is made of,
//! still compressed: for a decoder outside this crate (nvJPEG on the GPU),
//! which decodes each stored tile once per batch and assembles the
//! rectangles on its device. The CPU path ([`crate::DirectReader`]) and this
//! one cut a rectangle from the same tiles in the same places.

use std::sync::Arc;

use image::RgbImage;

use crate::Rect;

/// The stored tiles one rectangle of a level is made of.
#[derive(Debug, Clone)]
pub struct StoredTiles {
    /// The rectangle, in level pixels; what lies outside the level (and
    /// outside every piece) is [`crate::BACKGROUND`].
    pub rect: Rect,
    /// The stored tiles' size: each decodes to this (edge tiles with their
    /// padding).
    pub tile_width: u32,
    /// See `tile_width`.
    pub tile_height: u32,
    /// Each stored tile the rectangle touches, in raster order.
    pub pieces: Vec<StoredPiece>,
    /// The level's JPEG streams hold R, G, B components (no colour
    /// transform: Aperio's RGB tiles), not YCbCr.
    pub rgb_components: bool,
}

/// One stored tile of a [`StoredTiles`] and the part of the rectangle it gives.
#[derive(Debug, Clone)]
pub struct StoredPiece {
    /// The level and the tile's number there (raster order): pieces of
    /// different rectangles with the same key are the same tile.
    pub key: (u32, usize),
    /// The tile's content.
    pub content: Piece,
    /// Where the tile lies in the level.
    pub tile_rect: Rect,
    /// The part of the rectangle it gives, in level pixels (inside both).
    pub part: Rect,
}

/// What a stored tile holds.
#[derive(Debug, Clone)]
pub enum Piece {
    /// A complete baseline JPEG stream (8-bit, the tile's size, its
    /// components as the rectangle's `rgb_components` says), checked to be
    /// whole (see [`check_baseline`]).
    Jpeg(Arc<[u8]>),
    /// Decoded here already: a stream of a kind the device decoder does
    /// not take (progressive, RGB components…).
    Pixels(Arc<RgbImage>),
    /// The file stores no data for the tile: this colour (the slide's
    /// background, as OpenSlide shows such tiles).
    Fill([u8; 3]),
}

/// Decodes a complete JPEG stream to RGB the way the CPU path does
/// (zune-jpeg in strict mode: corrupt data is an error), checking that it
/// is `width`×`height`.
pub fn decode_jpeg(stream: &[u8], width: u32, height: u32) -> Result<RgbImage, String> {
    let options = zune_core::options::DecoderOptions::default()
        .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB)
        .set_strict_mode(true);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(stream),
        options,
    );
    let pixels = decoder
        .decode()
        .map_err(|e| format!("corrupt data ({e})"))?;
    let (w, h) = decoder
        .dimensions()
        .map_or((0, 0), |(w, h)| (w as u32, h as u32));
    if (w, h) != (width, height) {
        return Err(format!("it is {w}×{h}, the TIFF says {width}×{height}"));
    }
    RgbImage::from_raw(w, h, pixels).ok_or_else(|| "not 3 bytes per pixel".to_string())
}

/// Whether a device decoder may take `stream` as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// A whole baseline (or extended sequential) 8-bit, 3-component JPEG of
    /// `width`×`height` in one scan: YCbCr, or (`rgb`: an Adobe marker with
    /// transform 0, as Aperio's RGB tiles carry) RGB components, not subsampled.
    Yes {
        /// The components are R, G, B (no colour transform).
        rgb: bool,
    },
    /// A valid stream of another kind (progressive, subsampled RGB…): decode it here.
    Other(String),
    /// Not a whole JPEG stream (cut short, markers out of place): corrupt.
    Broken(String),
}

/// Walks `stream`'s markers (not its entropy-coded data): SOI first, every
/// segment's length inside the stream, one frame of `width`×`height`, at
/// least one scan, and EOI as the last two bytes — what a truncated or
/// overwritten tile breaks. A stream that passes may still hold bad Huffman
/// codes, which nvJPEG reports as an error (then the tile is decoded again
/// on the CPU, whose strict decoder names the problem).
pub fn check_baseline(stream: &[u8], width: u32, height: u32) -> Baseline {
    let broken = |what: &str| Baseline::Broken(what.to_string());
    if stream.len() < 4 || stream[..2] != [0xFF, 0xD8] {
        return broken("the tile's data does not start as a JPEG stream");
    }
    if stream[stream.len() - 2..] != [0xFF, 0xD9] {
        return broken("the tile's JPEG stream is cut short (no end marker)");
    }
    let mut i = 2;
    let mut frame = None;
    let mut other = None;
    let mut scans = 0;
    let (mut rgb, mut subsampled) = (false, false);
    while i + 4 <= stream.len() {
        if stream[i] != 0xFF {
            return broken("a JPEG segment starts with something that is not a marker");
        }
        let marker = stream[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xD9 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([stream[i + 2], stream[i + 3]]));
        if len < 2 || i + 2 + len > stream.len() {
            return broken("a JPEG segment's length reaches past the tile's data");
        }
        let body = &stream[i + 4..i + 2 + len];
        match marker {
            0xC0 | 0xC1 => {
                if body.len() < 6 {
                    return broken("the JPEG frame header is too short");
                }
                let h = u32::from(u16::from_be_bytes([body[1], body[2]]));
                let w = u32::from(u16::from_be_bytes([body[3], body[4]]));
                frame = Some((body[0], w, h, body[5]));
                subsampled = body[6..].chunks_exact(3).any(|c| c[1] != 0x11);
            }
            0xC2..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                other.get_or_insert_with(|| "not a baseline JPEG".to_string());
                if body.len() >= 5 {
                    let h = u32::from(u16::from_be_bytes([body[1], body[2]]));
                    let w = u32::from(u16::from_be_bytes([body[3], body[4]]));
                    frame = Some((8, w, h, 3));
                }
            }
            0xEE if body.starts_with(b"Adobe") && body.get(11) == Some(&0) => rgb = true,
            _ => {}
        }
        i += 2 + len;
        if marker == 0xDA {
            scans += 1;
            i = after_entropy_data(stream, i);
        }
    }
    let Some((precision, w, h, components)) = frame else {
        return broken("the JPEG stream has no frame header");
    };
    if scans == 0 {
        return broken("the JPEG stream has no scan");
    }
    if (w, h) != (width, height) {
        return broken(&format!("it is {w}×{h}, the TIFF says {width}×{height}"));
    }
    if let Some(why) = other {
        return Baseline::Other(why);
    }
    if scans > 1 {
        return Baseline::Other(format!("{scans} scans"));
    }
    if precision != 8 || components != 3 {
        return Baseline::Other(format!("{precision}-bit, {components} components"));
    }
    if rgb && subsampled {
        return Baseline::Other("subsampled RGB components".into());
    }
    Baseline::Yes { rgb }
}

/// Where the entropy-coded data starting at `i` ends: the next marker that
/// is not a stuffed 0xFF00, a restart marker or fill.
fn after_entropy_data(stream: &[u8], mut i: usize) -> usize {
    while i + 1 < stream.len() {
        if stream[i] == 0xFF {
            let m = stream[i + 1];
            if m != 0x00 && !(0xD0..=0xD7).contains(&m) && m != 0xFF {
                break;
            }
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn a_whole_baseline_stream_passes_and_cut_or_overwritten_ones_do_not() {
        let s = jpeg(64, 48);
        assert_eq!(check_baseline(&s, 64, 48), Baseline::Yes { rgb: false });
        assert!(matches!(check_baseline(&s, 64, 64), Baseline::Broken(m) if m.contains("64×48")));
        let cut = &s[..s.len() / 2];
        assert!(
            matches!(check_baseline(cut, 64, 48), Baseline::Broken(m) if m.contains("cut short"))
        );
        let mut header = s.clone();
        header[4] = 0xFF; // the first segment's length: past the end
        header[5] = 0xF0;
        assert!(matches!(
            check_baseline(&header, 64, 48),
            Baseline::Broken(_)
        ));
        assert!(matches!(
            check_baseline(b"not a jpeg at all", 64, 48),
            Baseline::Broken(_)
        ));
        let adobe = [
            &s[..2],
            &[0xFF, 0xEE, 0, 14],
            &b"Adobe"[..],
            &[0, 100, 0, 0, 0, 0, 0],
            &s[2..],
        ]
        .concat();
        // RGB components (image's encoder writes 4:4:4) are taken; the
        // same subsampled (the first component 2×2) are not.
        assert_eq!(check_baseline(&adobe, 64, 48), Baseline::Yes { rgb: true });
        let sof = adobe.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let mut subsampled = adobe.clone();
        subsampled[sof + 4 + 7] = 0x22;
        assert!(
            matches!(check_baseline(&subsampled, 64, 48), Baseline::Other(m) if m.contains("subsampled RGB"))
        );
        assert_eq!(decode_jpeg(&s, 64, 48).unwrap().dimensions(), (64, 48));
        assert!(decode_jpeg(cut, 64, 48).is_err());
    }
}
