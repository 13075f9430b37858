//! The tile grid over one level.
//!
//! Tiles of `tile × tile` pixels step by `stride = tile − overlap`. Each tile
//! owns a *core*: the `stride × stride` square (smaller at the right and bottom
//! edges) that it alone contributes to the stitched mask. The core sits
//! `overlap / 2` pixels inside the tile, so every core has at least that much
//! context (halo) around it, and the cores of all tiles cover every pixel of
//! the level exactly once. Tiles reaching past the level's edge are padded by
//! the reader, never dropped.

use crate::{Rect, Size, TileIndex};

/// A tile plan that cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A tile of zero pixels.
    #[error("tile size must be positive")]
    ZeroTile,
    /// An overlap that leaves no stride.
    #[error("a tile of {tile} px must be larger than its overlap of {overlap} px")]
    OverlapTooLarge {
        /// Tile side, pixels.
        tile: u32,
        /// Overlap, pixels.
        overlap: u32,
    },
    /// A level of zero pixels.
    #[error("the level to tile is empty ({w}×{h} pixels)")]
    EmptyLevel {
        /// Width, pixels.
        w: u32,
        /// Height, pixels.
        h: u32,
    },
}

/// The tiles covering one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePlan {
    level: Size,
    tile: u32,
    overlap: u32,
    cols: u32,
    rows: u32,
}

/// One planned tile, in pixels of the planned level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Its place in the grid.
    pub index: TileIndex,
    /// The whole tile, halo included; may extend outside the level.
    pub rect: Rect,
    /// The part of the level this tile alone contributes; always inside the level.
    pub core: Rect,
}

impl Tile {
    /// Where the core starts inside the tile's own pixels.
    pub fn core_offset(&self) -> (u32, u32) {
        (
            (self.core.x - self.rect.x) as u32,
            (self.core.y - self.rect.y) as u32,
        )
    }
}

impl TilePlan {
    /// Plans `tile`-pixel tiles overlapping by `overlap` pixels over a level of `level` pixels.
    pub fn new(level: Size, tile: u32, overlap: u32) -> Result<Self, PlanError> {
        if tile == 0 {
            return Err(PlanError::ZeroTile);
        }
        if overlap >= tile {
            return Err(PlanError::OverlapTooLarge { tile, overlap });
        }
        if level.w == 0 || level.h == 0 {
            return Err(PlanError::EmptyLevel {
                w: level.w,
                h: level.h,
            });
        }
        let stride = tile - overlap;
        Ok(Self {
            level,
            tile,
            overlap,
            cols: level.w.div_ceil(stride),
            rows: level.h.div_ceil(stride),
        })
    }

    /// Size of the tiled level.
    pub fn level_size(&self) -> Size {
        self.level
    }
    /// Tile side, halo included.
    pub fn tile_size(&self) -> u32 {
        self.tile
    }
    /// Pixels shared by neighbouring tiles.
    pub fn overlap(&self) -> u32 {
        self.overlap
    }
    /// Distance between tile origins (tile − overlap).
    pub fn stride(&self) -> u32 {
        self.tile - self.overlap
    }
    /// Tiles per row.
    pub fn cols(&self) -> u32 {
        self.cols
    }
    /// Rows of tiles.
    pub fn rows(&self) -> u32 {
        self.rows
    }
    /// Tiles in the plan.
    pub fn len(&self) -> usize {
        self.cols as usize * self.rows as usize
    }
    /// Whether the plan has no tiles.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The level rows `[y0, y1)` that the cores of tile row `row` cover.
    pub fn core_rows(&self, row: u32) -> (u32, u32) {
        let s = self.stride();
        (row * s, ((row + 1) * s).min(self.level.h))
    }

    /// The tile at `index` (which must be inside the grid).
    pub fn tile(&self, index: TileIndex) -> Tile {
        assert!(
            index.col < self.cols && index.row < self.rows,
            "tile index outside the plan"
        );
        let s = i64::from(self.stride());
        let halo = i64::from(self.overlap / 2);
        let core_x = i64::from(index.col) * s;
        let core_y = i64::from(index.row) * s;
        let core_w = (i64::from(self.level.w) - core_x).min(s) as u32;
        let core_h = (i64::from(self.level.h) - core_y).min(s) as u32;
        Tile {
            index,
            rect: Rect::new(core_x - halo, core_y - halo, self.tile, self.tile),
            core: Rect::new(core_x, core_y, core_w, core_h),
        }
    }

    /// The `n`-th tile in raster order (row by row).
    pub fn nth(&self, n: usize) -> Tile {
        let cols = self.cols as usize;
        self.tile(TileIndex {
            row: (n / cols) as u32,
            col: (n % cols) as u32,
        })
    }

    /// All tiles in raster order.
    pub fn tiles(&self) -> impl Iterator<Item = Tile> + '_ {
        (0..self.len()).map(|n| self.nth(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Naive reference: paint each tile's core into a counter image.
    fn coverage(plan: &TilePlan) -> Vec<u32> {
        let size = plan.level_size();
        let mut hits = vec![0u32; size.area() as usize];
        for t in plan.tiles() {
            // The core lies inside both the level and the tile.
            assert!(t.core.clip_to(size) == Some(t.core), "{t:?}");
            assert!(
                t.core.x >= t.rect.x && t.core.right() <= t.rect.right(),
                "{t:?}"
            );
            assert!(
                t.core.y >= t.rect.y && t.core.bottom() <= t.rect.bottom(),
                "{t:?}"
            );
            for y in t.core.y..t.core.bottom() {
                for x in t.core.x..t.core.right() {
                    hits[y as usize * size.w as usize + x as usize] += 1;
                }
            }
        }
        hits
    }

    proptest! {
        #[test]
        fn cores_cover_every_pixel_exactly_once(
            w in 1u32..300, h in 1u32..300, tile in 1u32..80, overlap_frac in 0.0f64..1.0
        ) {
            let overlap = ((f64::from(tile) * overlap_frac) as u32).min(tile - 1);
            let plan = TilePlan::new(Size::new(w, h), tile, overlap).unwrap();
            let hits = coverage(&plan);
            prop_assert!(hits.iter().all(|&n| n == 1));
            // Every tile has tile×tile pixels and at least overlap/2 of context
            // on each side of its core that is not at the level's edge.
            for t in plan.tiles() {
                prop_assert_eq!((t.rect.w, t.rect.h), (tile, tile));
                let (ox, oy) = t.core_offset();
                prop_assert_eq!((ox, oy), (overlap / 2, overlap / 2));
            }
        }
    }

    #[test]
    fn impossible_plans_are_errors() {
        let s = Size::new(100, 100);
        assert_eq!(TilePlan::new(s, 0, 0), Err(PlanError::ZeroTile));
        assert_eq!(
            TilePlan::new(s, 64, 64),
            Err(PlanError::OverlapTooLarge {
                tile: 64,
                overlap: 64
            })
        );
        assert_eq!(
            TilePlan::new(Size::new(0, 5), 64, 8),
            Err(PlanError::EmptyLevel { w: 0, h: 5 })
        );
    }

    #[test]
    fn edge_tiles_are_kept_and_padded() {
        // 100 px with stride 48: cores 0..48, 48..96, 96..100.
        let plan = TilePlan::new(Size::new(100, 10), 64, 16).unwrap();
        assert_eq!((plan.cols(), plan.rows()), (3, 1));
        let last = plan.tile(TileIndex { row: 0, col: 2 });
        assert_eq!(last.core, Rect::new(96, 0, 4, 10));
        assert_eq!(last.rect, Rect::new(88, -8, 64, 64));
        assert_eq!(plan.core_rows(0), (0, 10));
    }
}
