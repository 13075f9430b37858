//! Writes the files wsiseg makes — pyramidal BigTIFF slides and masks, PNG
//! masks streamed row band by row band — under one commit protocol: a file
//! is written as `NAME.partial` (created exclusively), flushed and fsynced,
//! and only then renamed to `NAME`. A full disk, a killed process or an
//! error never leaves a short file under a final name (see [`PartialFile`]).
//!
//! ```
//! use wsiseg_geometry::Size;
//! use wsiseg_write::PngMaskWriter;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("mask.png");
//! let mut png = PngMaskWriter::create(&path, Size::new(4, 2))?;
//! png.write_rows(&[0, 1, 1, 0, 0, 1, 1, 0])?;
//! assert!(!path.exists(), "named only when complete");
//! png.commit()?;
//! assert_eq!(image::open(&path)?.into_luma8().into_raw(), [0, 1, 1, 0, 0, 1, 1, 0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod commit;
mod plain;
mod png;
mod tiff;

pub use commit::{partial_name, OutFile, PartialFile, Staged, WriteLimit};
pub use plain::{PlainFormat, PlainWriteError, PlainWriter};
pub use png::{PngMaskWriter, PngWriteError};
pub use tiff::{
    pyramid_sizes, PyramidOptions, PyramidWriter, Reduce, TiffWriteError, TileCompression,
};
