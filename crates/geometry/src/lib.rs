//! The geometry of whole-slide images, with no native dependency: sizes,
//! rectangles, levels, microns per pixel, tile indices and the [`TilePlan`]
//! that covers a level with overlapping tiles whose cores partition it.
//!
//! Every value says in its type or its docs which pixel space it lives in:
//! level-0 pixels of the slide, or the pixels of one level (the working
//! level). Slide readers, the stitcher, the writers, the synthesizer and the
//! evaluator all name these types, so only the readers link OpenSlide.
//!
//! ```
//! use wsiseg_geometry::{Rect, Size, TilePlan};
//!
//! let plan = TilePlan::new(Size::new(1000, 600), 256, 32)?;
//! assert_eq!((plan.cols(), plan.rows()), (5, 3));
//! // The cores of all tiles cover every pixel of the level exactly once.
//! let covered: u64 = plan.tiles().map(|t| t.core.size().area()).sum();
//! assert_eq!(covered, Size::new(1000, 600).area());
//! assert_eq!(plan.nth(0).rect, Rect::new(-16, -16, 256, 256));
//! # Ok::<(), wsiseg_geometry::PlanError>(())
//! ```

mod plan;
mod shapes;

pub use plan::{PlanError, Tile, TilePlan};
pub use shapes::{Level, Mpp, Rect, Size, TileIndex};
