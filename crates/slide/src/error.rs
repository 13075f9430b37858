use std::path::PathBuf;

/// Everything that can go wrong opening or reading a slide. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum SlideError {
    /// A reader name that is not one.
    #[error("'{given}' is not a reader: use auto or openslide")]
    ReaderName {
        /// What was given.
        given: String,
    },
    /// The path does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },

    /// A symbolic link whose target does not exist, or that loops.
    #[error("{}: a symbolic link {}", path.display(), if *looping { "that loops (it points back to itself through other links)".to_string() } else { format!("to {}, which does not exist", target.display()) })]
    BrokenLink {
        /// The link.
        path: PathBuf,
        /// What it points to (as written in the link).
        target: PathBuf,
        /// Whether following it loops.
        looping: bool,
    },

    /// An image whose decoding would need more memory than the limit.
    #[error("{}: {width}×{height} pixels: {why}; that needs {needed_gib:.2} GiB, more than the memory limit ({limit_gib:.2} GiB)", path.display())]
    TooLarge {
        /// The image.
        path: PathBuf,
        /// Its width in pixels.
        width: u32,
        /// Its height in pixels.
        height: u32,
        /// Memory the decode needs.
        needed_gib: f64,
        /// The limit.
        limit_gib: f64,
        /// Why it needs that much, and what to do.
        why: String,
    },

    /// A slide without a level small enough for an overview.
    #[error("{}: its smallest level is {width}×{height} pixels ({:.1} gigapixels): its overview (tissue detection, overlays) would read every pixel; store the slide with reduced levels (e.g. vips tiffsave IN OUT.tif --tile --pyramid --compression jpeg)", path.display(), f64::from(*width) * f64::from(*height) / 1e9)]
    NoOverview {
        /// The slide.
        path: PathBuf,
        /// Width of its smallest level.
        width: u32,
        /// Height of its smallest level.
        height: u32,
    },

    /// The path is a folder.
    #[error("{}: is a directory, not a slide", path.display())]
    IsDirectory {
        /// The path given.
        path: PathBuf,
    },

    /// No reader recognises the file.
    #[error("{}: not a slide or image wsiseg can read (OpenSlide formats: SVS, NDPI, MRXS, SCN, BIF, tiled TIFF…; plain PNG, JPEG, TIFF)", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
    },

    /// A file that is not damaged, in a layout no reader here handles (a
    /// sample depth, colour space or compression), named as such.
    #[error("{}: {detail}", path.display())]
    UnsupportedLayout {
        /// The file.
        path: PathBuf,
        /// What is not supported, and what to do.
        detail: String,
    },

    /// A reader recognises the file but cannot read it.
    #[error("{}: corrupt or unreadable slide ({detail})", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        detail: String,
    },

    /// One stored tile of a level is corrupt (or cannot be read); the rest
    /// of the slide may be fine.
    #[error("{}: corrupt or unreadable slide (level {level}, {detail})", path.display())]
    BadTile {
        /// The slide.
        path: PathBuf,
        /// The level the tile belongs to.
        level: u32,
        /// The tile's number in the level (raster order).
        tile: usize,
        /// The tile's pixels, in that level's coordinates.
        rect: crate::Rect,
        /// What the decoder said, naming the tile.
        detail: String,
    },

    /// Reading the file failed.
    #[error("{}: cannot read {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being read.
        what: &'static str,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },

    /// A plain image cannot be decoded.
    #[error("{}: cannot decode image: {source}", path.display())]
    Decode {
        /// The image.
        path: PathBuf,
        /// What the decoder said.
        #[source]
        source: image::ImageError,
    },

    /// A pyramid level the slide does not have.
    #[error("{}: level {level} does not exist (the slide has levels 0..={})", path.display(), count.saturating_sub(1))]
    LevelOutOfRange {
        /// The slide.
        path: PathBuf,
        /// The level asked for.
        level: u32,
        /// The slide's levels.
        count: u32,
    },

    /// A resolution in µm/px was asked of a slide that does not record its own.
    #[error("{}: the slide does not record its resolution (mpp), so {requested} µm/px cannot be honoured; choose a level instead", path.display())]
    NoMpp {
        /// The slide.
        path: PathBuf,
        /// The resolution asked for, µm/px.
        requested: f64,
    },

    /// A resolution finer than the slide's level 0.
    #[error("{}: {requested} µm/px is finer than the slide's level 0 ({available:.4} µm/px); wsiseg does not upsample", path.display())]
    MppTooFine {
        /// The slide.
        path: PathBuf,
        /// The resolution asked for, µm/px.
        requested: f64,
        /// Level 0's resolution, µm/px.
        available: f64,
    },

    /// A resolution that is not a positive number.
    #[error("{requested}: a resolution must be a positive number of microns per pixel")]
    InvalidMpp {
        /// The resolution asked for, µm/px.
        requested: f64,
    },
}
