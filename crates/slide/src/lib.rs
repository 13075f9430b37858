//! Opens whole-slide images and plans tiles over them.
//!
//! One [`Slide`] trait covers OpenSlide's formats (Aperio SVS, Hamamatsu NDPI,
//! MIRAX, tiled TIFF…) and plain PNG / JPEG / TIFF images. A [`WorkingLevel`]
//! says at which resolution to segment; a [`TilePlan`] covers it with
//! overlapping tiles whose cores partition it.
//!
//! ```
//! use wsiseg_slide::{open, Resolution, TilePlan, WorkingLevel};
//!
//! // A real Aperio slide, 2220×2967 at 0.499 µm/px.
//! let slide = open("../../tests/data/default.svs".as_ref())?;
//! let working = WorkingLevel::choose(slide.as_ref(), Resolution::Mpp(1.0))?;
//! assert_eq!((working.size.w, working.size.h), (1108, 1481));
//! let plan = TilePlan::new(working.size, 256, 32)?;
//! assert_eq!(plan.len(), 5 * 7);
//! for tile in plan.tiles() {
//!     let rgb = working.read(slide.as_ref(), tile.rect)?;
//!     assert_eq!(rgb.dimensions(), (256, 256));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod dicom;
pub use dicom::{
    dicom_series, dicom_series_of, folder_of, output_stem, DicomImage, DicomInstance, DicomSeries,
    WHOLE_SLIDE_SOP_CLASS,
};
mod direct;
mod error;
mod openslide;
pub use openslide::{openslide_formats, openslide_version};
mod palette;
mod plain;
mod resolution;
mod rows;
mod slide;
mod stored;
mod strips;
mod tiffwalk;
mod tissue;

pub use direct::{DirectReader, JpegTiles, TileCache};
pub use error::SlideError;
pub use palette::{tiff_palette, PaletteLookup};
pub use plain::{machine_memory, set_decode_limit};
pub use resolution::{Resolution, WorkingLevel};
pub use slide::{
    has_slide_extension, level, missing, open, open_with, read_padded, read_padded_into, thumbnail,
    with_mpp, Reader, Slide, BACKGROUND, MAX_THUMBNAIL_SOURCE_PIXELS, SLIDE_EXTENSIONS,
    THUMBNAIL_BAND_BYTES,
};
pub use stored::{check_baseline, decode_jpeg, Baseline, Piece, StoredPiece, StoredTiles};
pub use tissue::{otsu, tissue_mask, tissue_mask_with, tissue_tiles};

/// The geometry every reader speaks, re-exported from `wsiseg-geometry`.
pub use wsiseg_geometry::{Level, Mpp, PlanError, Rect, Size, Tile, TileIndex, TilePlan};

/// Re-exported so callers name the same image type.
pub use image::RgbImage;
