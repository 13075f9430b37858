use std::path::PathBuf;

/// Everything that can go wrong opening or reading a slide. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum SlideError {
    #[error("{}: no such file", path.display())]
    NotFound { path: PathBuf },

    #[error("{}: is a directory, not a slide", path.display())]
    IsDirectory { path: PathBuf },

    #[error("{}: not a slide or image wsiseg can read (OpenSlide formats: SVS, NDPI, MRXS, SCN, BIF, tiled TIFF…; plain PNG, JPEG, TIFF)", path.display())]
    Unsupported { path: PathBuf },

    #[error("{}: corrupt or unreadable slide ({detail})", path.display())]
    Corrupt { path: PathBuf, detail: String },

    #[error("{}: cannot read {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: cannot decode image: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    #[error("{}: level {level} does not exist (the slide has levels 0..={})", path.display(), count.saturating_sub(1))]
    LevelOutOfRange {
        path: PathBuf,
        level: u32,
        count: u32,
    },

    #[error("{}: the slide does not record its resolution (mpp), so --mpp {requested} cannot be honoured; choose a level with --level", path.display())]
    NoMpp { path: PathBuf, requested: f64 },

    #[error("{}: --mpp {requested} is finer than the slide's level 0 ({available:.4} µm/px); wsiseg does not upsample", path.display())]
    MppTooFine {
        path: PathBuf,
        requested: f64,
        available: f64,
    },

    #[error("--mpp must be a positive number of microns per pixel, got {requested}")]
    InvalidMpp { requested: f64 },
}

/// A tile plan that cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("tile size must be positive")]
    ZeroTile,
    #[error("--tile {tile} must be larger than --overlap {overlap}")]
    OverlapTooLarge { tile: u32, overlap: u32 },
    #[error("the level to tile is empty ({w}×{h} pixels)")]
    EmptyLevel { w: u32, h: u32 },
}
