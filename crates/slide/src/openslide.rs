//! Whole-slide formats through the OpenSlide C library.

use std::path::{Path, PathBuf};

use image::RgbImage;
use openslide_rs::errors::OpenSlideError;
use openslide_rs::{Address, OpenSlide, Region};

use crate::direct::DirectReader;
use crate::{Level, Mpp, Reader, Rect, Size, Slide, SlideError, StoredTiles};

/// A slide opened by OpenSlide. One handle serves many threads. Levels
/// stored as JPEG tiles in a TIFF are read directly, when allowed.
pub struct OpenSlideSlide {
    path: PathBuf,
    inner: OpenSlide,
    format: String,
    levels: Vec<Level>,
    mpp: Option<Mpp>,
    background: [u8; 3],
    direct: Option<DirectReader>,
}

/// OpenSlide formats whose levels are the tiled IFDs of one TIFF file.
const TIFF_BASED: &[&str] = &["aperio", "generic-tiff"];

impl OpenSlideSlide {
    pub fn open(path: &Path, reader: Reader) -> Result<Self, SlideError> {
        let inner = OpenSlide::new(path).map_err(|e| map_error(path, e))?;
        let levels = inner
            .all_level_dimensions()
            .iter()
            .zip(inner.all_level_downsamples())
            .map(|(s, &d)| Level {
                size: Size::new(s.w, s.h),
                downsample: d,
            })
            .collect::<Vec<_>>();
        if levels.is_empty() || levels[0].size.area() == 0 {
            return Err(SlideError::Corrupt {
                path: path.to_path_buf(),
                detail: "OpenSlide reports no pixels".into(),
            });
        }
        let prop = |name: &str| inner.property_value(name).ok();
        let format = prop("openslide.vendor").unwrap_or_else(|| "unknown".into());
        let mpp = vendor_mpp(&prop)
            .or_else(|| tiff_mpp(&prop))
            .or_else(|| prop("tiff.ImageDescription").and_then(|d| ome_mpp(&d)));
        let background = prop("openslide.background-color")
            .and_then(|hex| parse_hex_rgb(&hex))
            .unwrap_or([255, 255, 255]);
        let mut levels = levels;
        let direct = match reader {
            Reader::Auto if format == "generic-tiff" && levels.len() == 1 => {
                match subifd_pyramid(path, &mut levels)? {
                    Some(tiles) => DirectReader::with_tiles(path, tiles, background),
                    None => DirectReader::new(path, &levels, background),
                }
            }
            Reader::Auto if TIFF_BASED.contains(&format.as_str()) => {
                DirectReader::new(path, &levels, background)
            }
            _ => None,
        };
        Ok(Self {
            path: path.to_path_buf(),
            inner,
            format,
            levels,
            mpp,
            background,
            direct,
        })
    }
}

/// The reduced levels of a TIFF whose first directory keeps them as SubIFDs
/// (OME-TIFF; OpenSlide sees only level 0): appended to `levels`, and the
/// tiles of every level for the direct reader (level 0's when JPEG, else
/// OpenSlide reads it). `None` when the file has no such levels.
fn subifd_pyramid(
    path: &Path,
    levels: &mut Vec<Level>,
) -> Result<Option<Vec<Option<crate::JpegTiles>>>, SlideError> {
    let size0 = levels[0].size;
    let reduced: Vec<crate::JpegTiles> = crate::JpegTiles::scan_subifds(path)?
        .into_iter()
        .filter(|t| t.size.w < size0.w && t.size.h < size0.h && t.size.area() > 0)
        .collect();
    if reduced.is_empty() {
        return Ok(None);
    }
    let first = crate::JpegTiles::scan(path)?
        .into_iter()
        .next()
        .flatten()
        .filter(|t| t.size == size0);
    let mut tiles = vec![first];
    for t in reduced {
        let downsample = (f64::from(size0.w) / f64::from(t.size.w)
            + f64::from(size0.h) / f64::from(t.size.h))
            / 2.0;
        levels.push(Level {
            size: t.size,
            downsample,
        });
        tiles.push(Some(t));
    }
    Ok(Some(tiles))
}

/// Level 0's µm per pixel from OME-XML (`PhysicalSizeX`/`Y` of the first
/// `Pixels` element, in `PhysicalSizeXUnit`: µm unless said otherwise).
fn ome_mpp(description: &str) -> Option<Mpp> {
    let pixels = &description[description.find("<Pixels ")?..];
    let pixels = &pixels[..pixels.find('>')?];
    let attr = |name: &str| -> Option<&str> {
        let at = pixels.find(&format!(" {name}=\""))? + name.len() + 3;
        let rest = &pixels[at..];
        Some(&rest[..rest.find('"')?])
    };
    let microns = |size: &str, unit: &str| -> Option<f64> {
        let v: f64 = attr(size)?.parse().ok()?;
        let per = match attr(unit).unwrap_or("µm") {
            "µm" | "um" | "micron" | "\u{3bc}m" => 1.0,
            "nm" => 1e-3,
            "mm" => 1e3,
            "cm" => 1e4,
            "m" => 1e6,
            _ => return None,
        };
        Some(v * per)
    };
    let mpp = Mpp {
        x: microns("PhysicalSizeX", "PhysicalSizeXUnit")?,
        y: microns("PhysicalSizeY", "PhysicalSizeYUnit")?,
    };
    (plausible_mpp(mpp.x) && plausible_mpp(mpp.y)).then_some(mpp)
}

fn map_error(path: &Path, e: OpenSlideError) -> SlideError {
    let path = path.to_path_buf();
    match e {
        OpenSlideError::MissingFile(_) => SlideError::NotFound { path },
        OpenSlideError::UnsupportedFile(_) => SlideError::Unsupported { path },
        // "Unsupported photometric interpretation…", "Unsupported TIFF
        // compression…": a layout, not damage.
        other if other.to_string().contains("Unsupported") => SlideError::UnsupportedLayout {
            path,
            detail: format!("a layout OpenSlide does not read ({other})"),
        },
        other => SlideError::Corrupt {
            path,
            detail: other.to_string(),
        },
    }
}

/// `openslide.mpp-x/y`, which OpenSlide sets for vendor formats (Aperio,
/// NDPI, MRXS…) and, from OpenSlide 4, from the TIFF resolution tags of a
/// generic TIFF: held to the same plausibility as [`tiff_mpp`], so that a
/// screen default is "not recorded" whichever OpenSlide reads the file.
fn vendor_mpp(prop: &dyn Fn(&str) -> Option<String>) -> Option<Mpp> {
    let x: f64 = prop("openslide.mpp-x")?.parse().ok()?;
    let y: f64 = prop("openslide.mpp-y")?.parse().ok()?;
    (plausible_mpp(x) && plausible_mpp(y)).then_some(Mpp { x, y })
}

/// Generic tiled TIFF: OpenSlide 3.4 exposes only the TIFF resolution tags,
/// so derive mpp from them (OpenSlide 4 does the same itself).
fn tiff_mpp(prop: &dyn Fn(&str) -> Option<String>) -> Option<Mpp> {
    let unit = prop("tiff.ResolutionUnit")?;
    let microns_per_unit = match unit.to_ascii_lowercase().as_str() {
        "centimeter" | "3" => 10_000.0,
        "inch" | "2" => 25_400.0,
        _ => return None,
    };
    let rx: f64 = prop("tiff.XResolution")?.parse().ok()?;
    let ry: f64 = prop("tiff.YResolution")?.parse().ok()?;
    let mpp = Mpp {
        x: microns_per_unit / rx,
        y: microns_per_unit / ry,
    };
    (plausible_mpp(mpp.x) && plausible_mpp(mpp.y)).then_some(mpp)
}

/// Level-0 resolutions coarser than this (µm/px) are taken as "not recorded".
const MAX_PLAUSIBLE_MPP: f64 = 50.0;

/// Many TIFF writers put a screen default (72 dpi = 353 µm/px) in their
/// resolution tags; no microscope records level 0 coarser than
/// [`MAX_PLAUSIBLE_MPP`].
fn plausible_mpp(v: f64) -> bool {
    v.is_finite() && v > 0.0 && v <= MAX_PLAUSIBLE_MPP
}

fn parse_hex_rgb(hex: &str) -> Option<[u8; 3]> {
    let v = u32::from_str_radix(hex.trim(), 16).ok()?;
    (hex.trim().len() == 6).then_some([(v >> 16) as u8, (v >> 8) as u8, v as u8])
}

impl Slide for OpenSlideSlide {
    fn path(&self) -> &Path {
        &self.path
    }
    fn format(&self) -> &str {
        &self.format
    }
    fn levels(&self) -> &[Level] {
        &self.levels
    }
    fn mpp(&self) -> Option<Mpp> {
        self.mpp
    }

    fn associated(&self) -> Vec<(String, Size)> {
        let names = self.inner.associated_image_names().unwrap_or_default();
        names
            .into_iter()
            .filter_map(|name| {
                let d = self.inner.associated_image_dimensions(&name).ok()?;
                Some((name, Size::new(d.w, d.h)))
            })
            .collect()
    }

    fn direct_codec(&self, level: u32) -> Option<&'static str> {
        self.direct.as_ref().and_then(|d| d.codec(level))
    }

    fn plan_reads(&self, level: u32, rects: &[Rect]) {
        if let Some(d) = &self.direct {
            d.plan_reads(level, rects);
        }
    }

    fn stored(&self, level: u32, rect: Rect) -> Option<Result<StoredTiles, SlideError>> {
        self.direct.as_ref()?.stored(level, rect)
    }

    fn decode_stored(&self, level: u32, n: usize) -> Option<Result<RgbImage, SlideError>> {
        self.direct.as_ref()?.decode_stored(level, n)
    }

    fn read_inside(&self, level: u32, rect: Rect) -> Result<RgbImage, SlideError> {
        self.read_inside_into(level, rect, Vec::new())
    }

    fn read_inside_into(
        &self,
        level: u32,
        rect: Rect,
        buf: Vec<u8>,
    ) -> Result<RgbImage, SlideError> {
        let l = crate::slide::level(self, level)?;
        debug_assert!(
            rect.clip_to(l.size) == Some(rect),
            "{rect:?} outside level {level}"
        );
        match self
            .direct
            .as_ref()
            .and_then(|d| d.read_into(level, rect, buf))
        {
            Some(read) => read,
            None => self.read_openslide(level, l, rect),
        }
    }
}

impl OpenSlideSlide {
    /// Reads `rect` of `level` (described by `l`) through OpenSlide.
    fn read_openslide(&self, level: u32, l: Level, rect: Rect) -> Result<RgbImage, SlideError> {
        // OpenSlide takes the top-left corner in level-0 pixels. Round up so
        // that OpenSlide's division by a non-integer downsample lands on `rect.x`.
        let to_level0 = |v: i64| (v as f64 * l.downsample).ceil() as u32;
        let region = Region {
            size: openslide_rs::Size {
                w: rect.w,
                h: rect.h,
            },
            level,
            address: Address {
                x: to_level0(rect.x),
                y: to_level0(rect.y),
            },
        };
        let argb = self
            .inner
            .read_region(&region)
            .map_err(|e| SlideError::Corrupt {
                path: self.path.clone(),
                detail: format!("reading level {level} at ({}, {}): {e}", rect.x, rect.y),
            })?;
        Ok(premultiplied_bgra_to_rgb(
            &argb,
            rect.w,
            rect.h,
            self.background,
        ))
    }
}

/// OpenSlide's pixels are premultiplied ARGB words (B, G, R, A bytes on
/// little-endian machines); transparent areas are composited over `background`.
fn premultiplied_bgra_to_rgb(buf: &[u8], w: u32, h: u32, background: [u8; 3]) -> RgbImage {
    let mut out = Vec::with_capacity(buf.len() / 4 * 3);
    for px in buf.chunks_exact(4) {
        let word = u32::from_ne_bytes([px[0], px[1], px[2], px[3]]);
        let a = (word >> 24) as u8;
        let rgb = [(word >> 16) as u8, (word >> 8) as u8, word as u8];
        if a == 255 {
            out.extend_from_slice(&rgb);
        } else {
            let t = u32::from(255 - a);
            for (c, bg) in rgb.into_iter().zip(background) {
                out.push((u32::from(c) + (t * u32::from(bg) + 127) / 255).min(255) as u8);
            }
        }
    }
    RgbImage::from_raw(w, h, out).expect("OpenSlide returned w*h pixels")
}

/// The version of the OpenSlide library this process loaded
/// (`openslide_get_version`), e.g. "4.0.0".
pub fn openslide_version() -> Option<String> {
    OpenSlide::version().ok()
}

/// The slide formats an OpenSlide version reads, by its documentation:
/// 4.0 added DICOM WSI (and generic TIFFs' resolution).
pub fn openslide_formats(version: &str) -> Vec<&'static str> {
    let mut formats = vec![
        "aperio (.svs .tif)",
        "hamamatsu (.ndpi .vms .vmu)",
        "leica (.scn)",
        "mirax (.mrxs)",
        "philips (.tiff)",
        "sakura (.svslide)",
        "trestle (.tif)",
        "ventana (.bif .tif)",
        "generic-tiff (.tif .tiff)",
    ];
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major >= 4 {
        formats.insert(1, "dicom (.dcm)");
    }
    formats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compositing_transparent_pixels_over_the_background() {
        let opaque = 0xFF_10_20_30u32.to_ne_bytes();
        let clear = 0u32.to_ne_bytes();
        let buf = [opaque, clear].concat();
        let img = premultiplied_bgra_to_rgb(&buf, 2, 1, [250, 251, 252]);
        assert_eq!(img.as_raw(), &[0x10, 0x20, 0x30, 250, 251, 252]);
    }

    #[test]
    fn tiff_resolution_gives_mpp() {
        let props = |n: &str| match n {
            "tiff.ResolutionUnit" => Some("centimeter".to_string()),
            "tiff.XResolution" | "tiff.YResolution" => Some("20000".to_string()),
            _ => None,
        };
        assert_eq!(tiff_mpp(&props), Some(Mpp { x: 0.5, y: 0.5 }));
        let screen = |n: &str| match n {
            "tiff.ResolutionUnit" => Some("inch".to_string()),
            "tiff.XResolution" | "tiff.YResolution" => Some("72".to_string()),
            _ => None,
        };
        assert_eq!(
            tiff_mpp(&screen),
            None,
            "72 dpi is a screen default, not a scan"
        );
    }

    /// OpenSlide 4 turns the same tags into openslide.mpp-x/y itself
    /// (boxes.tiff: 28.34 px/cm → 352.86 µm/px); wsiseg reads that as
    /// OpenSlide 3.4 reads the tags: not recorded.
    #[test]
    fn openslide_4_mpp_of_a_screen_default_is_not_a_resolution() {
        let props = |mpp: &'static str| {
            move |n: &str| match n {
                "openslide.mpp-x" | "openslide.mpp-y" => Some(mpp.to_string()),
                _ => None,
            }
        };
        assert_eq!(vendor_mpp(&props("352.85814906304194")), None);
        assert_eq!(
            vendor_mpp(&props("0.499")),
            Some(Mpp { x: 0.499, y: 0.499 })
        );
        assert_eq!(vendor_mpp(&props("0")), None);
    }

    /// DICOM is listed from OpenSlide 4 on, and this process loads 4.x.
    #[test]
    fn formats_follow_the_version() {
        assert!(!openslide_formats("3.4.1")
            .iter()
            .any(|f| f.starts_with("dicom")));
        assert!(openslide_formats("4.0.0")
            .iter()
            .any(|f| f.starts_with("dicom")));
        let v = openslide_version().unwrap();
        assert!(v.starts_with("4."), "OpenSlide {v}");
    }
}
