//! Stitches per-tile outputs into the mask of a whole level, without seams.
//!
//! Each tile of a [`TilePlan`] contributes only its core (the halo is cropped),
//! and the cores partition the level, so the stitched mask is exactly what the
//! tiles said, with every pixel's context at least `overlap / 2` wide. Tiles
//! may arrive in any order; the [`Stitcher`] holds one band of rows per
//! unfinished row of tiles and streams finished rows, top to bottom, to a
//! [`RowSink`] such as the [`PngMaskWriter`]. Memory stays a few bands of
//! rows, whatever the level's height.
//!
//! ```
//! use wsiseg_slide::{Size, TilePlan};
//! use wsiseg_stitch::{PngMaskWriter, Stitcher};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("mask.png");
//! let plan = TilePlan::new(Size::new(1000, 800), 256, 32)?;
//! let png = PngMaskWriter::create(&path, plan.level_size())?;
//! let mut stitcher = Stitcher::new(plan, png);
//! for tile in plan.tiles() {
//!     let labels = vec![1u8; 256 * 256]; // the model's output for this tile
//!     stitcher.add(tile.index, &labels)?;
//! }
//! assert!(!path.exists(), "the mask gets its name when complete");
//! stitcher.finish()?.commit()?;
//! let mask = image::open(&path)?.into_luma8();
//! assert_eq!(mask.dimensions(), (1000, 800));
//! assert!(mask.pixels().all(|p| p.0[0] == 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod png_writer;
mod resample;
mod stitcher;

pub use png_writer::PngMaskWriter;
pub use resample::NearestRows;
pub use stitcher::{RowSink, Stitcher};

use std::path::PathBuf;

use wsiseg_slide::TileIndex;

/// Errors stitching tiles or writing the mask.
#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    #[error("tile {index:?} has {got} pixels, the plan's tiles have {expected}")]
    TileSize {
        index: TileIndex,
        got: usize,
        expected: usize,
    },
    #[error("tile {index:?} is outside the plan or was given twice")]
    UnexpectedTile { index: TileIndex },
    #[error("the mask is incomplete: {missing} tile(s) never arrived")]
    Incomplete { missing: usize },
    #[error("{}: cannot write mask: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tiff(#[from] wsiseg_slide::TiffWriteError),
    #[error("{}: cannot encode PNG: {source}", path.display())]
    Png {
        path: PathBuf,
        #[source]
        source: png::EncodingError,
    },
}
