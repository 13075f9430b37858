//! What can go wrong in the engine. Every message names the file; none
//! names a command-line flag (front ends add that context, see [`Setting`]).

use std::path::PathBuf;

use wsiseg_infer::InferError;
use wsiseg_slide::{PlanError, SlideError};
use wsiseg_stitch::StitchError;
use wsiseg_write::{PngWriteError, TiffWriteError};

/// A setting of the engine or of a request, named so that a front end can
/// name its own option for it (the CLI: `--tile`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Tile side in working-level pixels.
    Tile,
    /// Pixels shared by neighbouring tiles.
    Overlap,
    /// Tiles per model call.
    Batch,
    /// Reader threads.
    Readers,
    /// The devices that run the model.
    Devices,
    /// The PNG mask's resolution.
    MaskMpp,
    /// The resolution slides are taken to have.
    SlideMpp,
    /// GeoJSON's smallest region.
    MinArea,
    /// The PNG mask's values.
    MaskValues,
    /// The outputs asked for.
    Outputs,
    /// What a corrupt stored tile does.
    BadTiles,
    /// Where JPEG tiles are decoded.
    Decode,
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Opening or reading the slide.
    #[error(transparent)]
    Slide(#[from] SlideError),
    /// Tiling the working level.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Loading or running the model.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// Stitching tiles.
    #[error(transparent)]
    Stitch(#[from] StitchError),
    /// Writing a TIFF.
    #[error(transparent)]
    Tiff(#[from] TiffWriteError),
    /// Writing a PNG mask.
    #[error(transparent)]
    Png(#[from] PngWriteError),
    /// Reading or writing another file.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// An impossible setting.
    #[error("{value}: {problem}")]
    Setting {
        /// Which setting.
        setting: Setting,
        /// The value given, as the user wrote it.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The slide lacks something the request needs.
    #[error("{}: {problem}", slide.display())]
    Unsupported {
        /// The slide.
        slide: PathBuf,
        /// What it lacks.
        problem: String,
    },
    /// Another process holds the slide's lock.
    #[error("{}: already being segmented by PID {pid} (lock {})", slide.display(), lock.display())]
    Locked {
        /// The slide.
        slide: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The process holding it.
        pid: u32,
    },
    /// Outputs exist that were made differently from what is asked now.
    #[error("{}: its outputs in {} were made with another {}", slide.display(), out.display(), differences.join(", "))]
    Changed {
        /// The slide.
        slide: PathBuf,
        /// The output folder.
        out: PathBuf,
        /// What differs, one entry per setting ("model (sha256 ab12… → cd34…)").
        differences: Vec<String>,
    },
    /// Some outputs exist without a record of a finished run.
    #[error("{} exists but {} (an earlier run stopped midway?)", present.display(), missing)]
    Incomplete {
        /// An output that exists.
        present: PathBuf,
        /// What is missing or damaged.
        missing: String,
    },
    /// The model gave NaN or Inf for a tile (often an f16 overflow).
    #[error("{}: the model {} gave NaN or Inf in {precision} for the tile covering level-0 ({x}, {y}), {w}×{h} px; no mask is made from it", slide.display(), model.display())]
    NonFinite {
        /// The slide.
        slide: PathBuf,
        /// The model file.
        model: PathBuf,
        /// The precision it ran in.
        precision: wsiseg_infer::Precision,
        /// Left edge, level-0 pixels, of the part of the slide the tile covers (its core).
        x: i64,
        /// Top edge, level-0 pixels.
        y: i64,
        /// Width, level-0 pixels.
        w: u32,
        /// Height, level-0 pixels.
        h: u32,
    },
    /// A fault injected through [`crate::RunControl::fail_after_tiles`].
    #[error("injected fault: the model failed after {after} tiles")]
    Injected {
        /// Tiles run before the fault.
        after: u64,
    },
    /// A stage stopped because another one failed (whose error is reported).
    #[error("stopped: another stage of the pipeline failed")]
    Stopped,
    /// The process went over the memory budget while segmenting a slide.
    #[error("{}: wsiseg's memory reached {rss_mib:.0} MiB, more than its budget ({limit_mib:.0} MiB); the slide was stopped (raise the budget, or lower the batch or the reader threads)", slide.display())]
    MemoryLimit {
        /// The slide.
        slide: std::path::PathBuf,
        /// Resident memory when it was stopped, MiB.
        rss_mib: f64,
        /// The budget, MiB.
        limit_mib: f64,
    },
    /// The run was cancelled (Ctrl-C, SIGTERM, a front end's request).
    #[error("cancelled")]
    Cancelled,
    /// Two slides of a run whose outputs would have the same names.
    #[error("{} and {} would write outputs of the same name: move one of them to another folder", slide.display(), other.display())]
    SameName {
        /// This slide.
        slide: std::path::PathBuf,
        /// The other.
        other: std::path::PathBuf,
    },

    /// A bug met while segmenting a slide (a panic caught at the slide's
    /// boundary by the caller).
    #[error("{}: internal error: {detail}", slide.display())]
    Internal {
        /// The slide.
        slide: std::path::PathBuf,
        /// What happened.
        detail: String,
    },

    /// The models did not load (said to every caller after the first,
    /// which got the load's own error).
    #[error("the model could not be loaded: {0}")]
    NotLoaded(String),

    /// An engine thread panicked.
    #[error("internal error: the {0} thread panicked")]
    Panicked(&'static str),
}

impl EngineError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, what: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            what,
            source,
        }
    }
}

/// An error and its causes as one line, as front ends print it: the first
/// line of each link of the chain (libtorch's messages span lines), each
/// once, joined by `: `.
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        let line = text.lines().next().unwrap_or_default().trim().to_string();
        if !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
        cause = c.source();
    }
    parts.join(": ")
}
