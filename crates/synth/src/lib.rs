//! Synthetic H&E whole-slide images with known tumor, for testing and training.
//!
//! [`generate`] writes a pyramidal BigTIFF slide with JPEG tiles and an
//! Aperio-style description (OpenSlide opens it as `aperio`, with its mpp),
//! and beside it the ground-truth mask as a pyramidal 8-bit Deflate TIFF
//! (label 1 = tumor). Both are written in bands of rows, tiles rendered and
//! compressed in parallel, so memory stays flat whatever the size, and each
//! file gets its final name only when complete. The same seed gives the same
//! slide.
//!
//! ```
//! use wsiseg_synth::{generate, SynthSpec};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (slide, truth) = (dir.path().join("s7.svs"), dir.path().join("s7.truth.tiff"));
//! let spec = SynthSpec { seed: 7, width: 1024, height: 768, ..SynthSpec::default() };
//! let stats = generate(&spec, &slide, &truth, &mut |_| {})?;
//! println!("{:.1} MP/s", stats.megapixels / stats.seconds);
//! let opened = wsiseg_slide::open(&slide).unwrap();
//! assert_eq!(opened.format(), "aperio");
//! assert_eq!(opened.levels()[0].size, wsiseg_slide::Size::new(1024, 768));
//! # Ok::<(), wsiseg_synth::SynthError>(())
//! ```

mod noise;
mod scene;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use wsiseg_geometry::Size;
use wsiseg_write::{
    PlainWriteError, PlainWriter, PyramidOptions, PyramidWriter, Reduce, TiffWriteError,
    TileCompression,
};

pub use scene::Scene;
pub use wsiseg_write::PlainFormat;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// Random seed: the same seed gives the same slide.
    pub seed: u64,
    /// Level-0 width, pixels.
    pub width: u32,
    /// Level-0 height, pixels.
    pub height: u32,
    /// Microns per level-0 pixel.
    pub mpp: f64,
    /// Tile side of both files.
    pub tile: u32,
    /// JPEG quality of the slide's tiles (and of a plain JPEG).
    pub quality: u8,
    /// The same picture also as plain images (one level, no resolution
    /// recorded), beside the slide with its stem: `synth-7.png`…
    pub plain: Vec<PlainFormat>,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            seed: 1,
            width: 8192,
            height: 8192,
            mpp: 0.25,
            tile: 256,
            quality: 80,
            plain: Vec::new(),
        }
    }
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct SynthStats {
    /// The slide written.
    pub slide: PathBuf,
    /// Its truth mask.
    pub truth: PathBuf,
    /// The plain images written.
    pub plain: Vec<PathBuf>,
    /// The slide's levels.
    pub levels: Vec<Size>,
    /// Level-0 megapixels.
    pub megapixels: f64,
    /// Seconds taken.
    pub seconds: f64,
    /// Fraction of level-0 pixels that are tumor.
    pub tumor_fraction: f64,
}

/// Errors generating a slide.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Writing either TIFF.
    #[error(transparent)]
    Write(#[from] TiffWriteError),
    /// Writing a plain image.
    #[error(transparent)]
    Plain(#[from] PlainWriteError),
    /// A size outside 64–1,000,000 pixels a side.
    #[error("slide size {width}×{height}: both sides must be between 64 and 1,000,000 pixels")]
    Size {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// A resolution outside 0.05–10 µm/px.
    #[error("{0} µm/px: the resolution must be between 0.05 and 10 µm per pixel")]
    Mpp(f64),
}

/// The slide's pyramid (Aperio-style JPEG, read by OpenSlide as Aperio)
/// and its truth's (labels, Deflate, nearest-neighbour levels).
fn pyramid_options(spec: &SynthSpec) -> (PyramidOptions, PyramidOptions) {
    let (w, h, t) = (spec.width, spec.height, spec.tile);
    let description = format!(
        "Aperio Image Library wsiseg-synth\r\n{w}x{h} [0,0 {w}x{h}] ({t}x{t}) JPEG/RGB Q={q}|AppMag = {mag}|MPP = {mpp}|Seed = {seed}",
        q = spec.quality,
        mag = (10.0 / spec.mpp).round(),
        mpp = spec.mpp,
        seed = spec.seed,
    );
    let slide = PyramidOptions {
        channels: 3,
        tile: t,
        step: 4,
        smallest: 1024,
        compression: TileCompression::Jpeg {
            quality: spec.quality,
        },
        reduce: Reduce::Average,
        mpp: Some(spec.mpp),
        description: Some(description),
    };
    let truth = PyramidOptions {
        channels: 1,
        compression: TileCompression::Deflate,
        reduce: Reduce::Nearest,
        description: None,
        ..slide.clone()
    };
    (slide, truth)
}

/// Where the plain `format` copy of the slide at `slide_path` goes: beside
/// it, same stem.
pub fn plain_path(slide_path: &Path, format: PlainFormat) -> PathBuf {
    slide_path.with_extension(format.extension())
}

/// Writers of the plain copies `spec` asks for (JPEG at the slide's quality).
fn plain_writers(
    spec: &SynthSpec,
    slide_path: &Path,
    size: Size,
) -> Result<Vec<PlainWriter>, SynthError> {
    spec.plain
        .iter()
        .map(|&f| {
            let f = match f {
                PlainFormat::Jpeg { .. } => PlainFormat::Jpeg {
                    quality: spec.quality,
                },
                f => f,
            };
            Ok(PlainWriter::create(&plain_path(slide_path, f), size, f)?)
        })
        .collect()
}

/// Writes the slide to `slide_path`, its truth mask to `truth_path` and
/// the plain copies `spec.plain` asks for at [`plain_path`]; `progress` is called with the number of level-0 rows done.
pub fn generate(
    spec: &SynthSpec,
    slide_path: &Path,
    truth_path: &Path,
    progress: &mut dyn FnMut(u32),
) -> Result<SynthStats, SynthError> {
    let (w, h) = (spec.width, spec.height);
    if !(64..=1_000_000).contains(&w) || !(64..=1_000_000).contains(&h) {
        return Err(SynthError::Size {
            width: w,
            height: h,
        });
    }
    if !(0.05..=10.0).contains(&spec.mpp) {
        return Err(SynthError::Mpp(spec.mpp));
    }
    let start = Instant::now();
    let scene = Scene::new(spec.seed, w, h, spec.mpp);
    let size = Size::new(w, h);
    let t = spec.tile;
    let (slide_options, truth_options) = pyramid_options(spec);
    let mut slide = PyramidWriter::create(slide_path, size, slide_options)?;
    let mut truth = PyramidWriter::create(truth_path, size, truth_options)?;
    let mut plain = plain_writers(spec, slide_path, size)?;
    let mut tumor_pixels = 0u64;
    let (wu, tu) = (w as usize, t as usize);
    let mut band_rgb = Vec::new();
    let mut band_labels = Vec::new();
    for y0 in (0..h).step_by(tu) {
        let bh = t.min(h - y0);
        let fields = scene.fields(y0, y0 + bh);
        let chunks: Vec<(Vec<u8>, Vec<u8>)> = (0..w.div_ceil(t))
            .into_par_iter()
            .map(|c| {
                let x0 = c * t;
                let cw = t.min(w - x0);
                let mut rgb = vec![0u8; (cw * bh * 3) as usize];
                let mut labels = vec![0u8; (cw * bh) as usize];
                let area = scene::Area {
                    x0,
                    y0,
                    w: cw,
                    h: bh,
                };
                scene.render(&fields, area, &mut rgb, &mut labels);
                (rgb, labels)
            })
            .collect();
        band_rgb.resize(wu * bh as usize * 3, 0);
        band_labels.resize(wu * bh as usize, 0);
        for (c, (rgb, labels)) in chunks.iter().enumerate() {
            let x0 = c * tu;
            let cw = tu.min(wu - x0);
            for r in 0..bh as usize {
                band_rgb[(r * wu + x0) * 3..(r * wu + x0 + cw) * 3]
                    .copy_from_slice(&rgb[r * cw * 3..(r + 1) * cw * 3]);
                band_labels[r * wu + x0..r * wu + x0 + cw]
                    .copy_from_slice(&labels[r * cw..(r + 1) * cw]);
            }
            tumor_pixels += labels.iter().map(|&l| u64::from(l)).sum::<u64>();
        }
        slide.push_rows(&band_rgb)?;
        truth.push_rows(&band_labels)?;
        for p in &mut plain {
            p.write_rows(&band_rgb)?;
        }
        progress(y0 + bh);
    }
    let levels = slide.level_sizes();
    let slide_path = slide.finish()?;
    let truth_path = truth.finish()?;
    let plain = plain
        .into_iter()
        .map(PlainWriter::commit)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SynthStats {
        slide: slide_path,
        truth: truth_path,
        plain,
        levels,
        megapixels: size.area() as f64 / 1e6,
        seconds: start.elapsed().as_secs_f64(),
        tumor_fraction: tumor_pixels as f64 / size.area() as f64,
    })
}
