//! Stitches per-tile outputs into the mask of a whole level, without seams.
//!
//! Each tile of a [`TilePlan`] contributes only its core (the halo is cropped),
//! and the cores partition the level, so the stitched mask is exactly what the
//! tiles said, with every pixel's context at least `overlap / 2` wide. Tiles
//! may arrive in any order; the [`Stitcher`] holds one band of rows per
//! unfinished row of tiles and streams finished rows, top to bottom, to a
//! [`RowSink`] (a file writer, a copy in memory…). Memory stays a few bands
//! of rows, whatever the level's height.
//!
//! ```
//! use wsiseg_geometry::{Size, TilePlan};
//! use wsiseg_stitch::Stitcher;
//!
//! let plan = TilePlan::new(Size::new(1000, 800), 256, 32)?;
//! let mut stitcher = Stitcher::new(plan, Vec::new());
//! // Tiles may come in any order.
//! for tile in plan.tiles().collect::<Vec<_>>().into_iter().rev() {
//!     let labels = vec![tile.index.col as u8; 256 * 256]; // the model's output for this tile
//!     stitcher.add(tile.index, &labels)?;
//! }
//! let mask = stitcher.finish()?;
//! assert_eq!(mask.len(), 1000 * 800);
//! assert_eq!((mask[0], mask[999]), (0, 4), "each pixel from the tile whose core holds it");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod resample;
mod stitcher;

pub use resample::NearestRows;
pub use stitcher::{RowSink, Stitcher};

use wsiseg_geometry::TileIndex;

/// Errors stitching tiles.
#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    /// A tile's output is not `tile × tile` pixels.
    #[error("tile {index:?} has {got} pixels, the plan's tiles have {expected}")]
    TileSize {
        /// The tile.
        index: TileIndex,
        /// Its pixels.
        got: usize,
        /// The plan's tile pixels.
        expected: usize,
    },
    /// A tile outside the plan, not to be run, or given twice.
    #[error("tile {index:?} is outside the plan or was given twice")]
    UnexpectedTile {
        /// The tile.
        index: TileIndex,
    },
    /// The mask was finished before every tile arrived.
    #[error("the mask is incomplete: {missing} tile(s) never arrived")]
    Incomplete {
        /// Tiles that never arrived.
        missing: usize,
    },
}
