//! Sizes, rectangles, levels and tile indices. Every value says which pixel space it lives in:
//! level-0 pixels of the slide, or pixels of one level (the working level).

use std::fmt;

/// Width and height in pixels of some level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Size {
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Size {
    /// `w`×`h` pixels.
    pub const fn new(w: u32, h: u32) -> Self {
        Self { w, h }
    }

    /// Number of pixels, without overflow for gigapixel sizes.
    pub fn area(self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}", self.w, self.h)
    }
}

/// A rectangle in the pixels of one level. The origin may lie outside the
/// level (negative, or past its edge): tiles with a halo at the border do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left edge.
    pub x: i64,
    /// Top edge.
    pub y: i64,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// The rectangle at (`x`, `y`) of `w`×`h` pixels.
    pub const fn new(x: i64, y: i64, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    /// Its width and height.
    pub fn size(self) -> Size {
        Size::new(self.w, self.h)
    }

    /// Exclusive right edge.
    pub fn right(self) -> i64 {
        self.x + i64::from(self.w)
    }

    /// Exclusive bottom edge.
    pub fn bottom(self) -> i64 {
        self.y + i64::from(self.h)
    }

    /// The part of `self` inside `0..size.w × 0..size.h`, or `None` when they do not meet.
    pub fn clip_to(self, size: Size) -> Option<Rect> {
        self.intersect(Rect::new(0, 0, size.w, size.h))
    }

    /// The part of `self` inside `other`, or `None` when they do not meet.
    pub fn intersect(self, other: Rect) -> Option<Rect> {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = self.right().min(other.right());
        let y1 = self.bottom().min(other.bottom());
        (x1 > x0 && y1 > y0).then(|| Rect::new(x0, y0, (x1 - x0) as u32, (y1 - y0) as u32))
    }
}

/// Column and row of a tile in a [`crate::TilePlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileIndex {
    /// Row, from the top.
    pub row: u32,
    /// Column, from the left.
    pub col: u32,
}

/// Microns per pixel of level 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mpp {
    /// Across.
    pub x: f64,
    /// Down.
    pub y: f64,
}

impl Mpp {
    /// The mean of both axes, which is what resolution choices use.
    pub fn mean(self) -> f64 {
        (self.x + self.y) / 2.0
    }
}

/// One level of a slide's pyramid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// Pixels of this level.
    pub size: Size,
    /// Level-0 pixels per pixel of this level.
    pub downsample: f64,
}
