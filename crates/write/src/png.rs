//! The PNG label mask, streamed.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use wsiseg_geometry::Size;

use crate::{OutFile, PartialFile, Staged, WriteLimit};

/// Errors writing a PNG mask; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PngWriteError {
    /// The file could not be written (a full disk…).
    #[error("{}: cannot write PNG: {source}", path.display())]
    Io {
        /// The final name of the file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The encoder refused (wrong amount of data…).
    #[error("{}: cannot encode PNG: {source}", path.display())]
    Encode {
        /// The final name of the file.
        path: PathBuf,
        /// What the encoder said.
        #[source]
        source: png::EncodingError,
    },
}

/// Streams an 8-bit grayscale PNG label mask row band by row band.
///
/// The file is a [`PartialFile`]: it gets its final name only from
/// [`PngMaskWriter::commit`], and dropped before that (an error, a panic, an
/// interrupted run) it is removed. So a file with the final name is always complete.
pub struct PngMaskWriter {
    // Dropped in this order: the stream is closed before the file is removed.
    writer: png::StreamWriter<'static, BufWriter<Checked>>,
    file: Checked,
    partial: PartialFile,
}

impl PngMaskWriter {
    /// Starts writing a `size` mask that will be named `path`.
    pub fn create(path: &Path, size: Size) -> Result<Self, PngWriteError> {
        Self::create_limited(path, size, &WriteLimit::none())
    }

    /// [`Self::create`], the file's writes counting against `limit`.
    pub fn create_limited(
        path: &Path,
        size: Size,
        limit: &WriteLimit,
    ) -> Result<Self, PngWriteError> {
        Self::create_with(path, size, limit, png::ColorType::Grayscale)
    }

    /// An 8-bit RGB PNG (a plain image, not a mask), rows of `3 × width` bytes.
    pub fn create_rgb(path: &Path, size: Size) -> Result<Self, PngWriteError> {
        Self::create_with(path, size, &WriteLimit::none(), png::ColorType::Rgb)
    }

    fn create_with(
        path: &Path,
        size: Size,
        limit: &WriteLimit,
        color: png::ColorType,
    ) -> Result<Self, PngWriteError> {
        let png_err = |source| PngWriteError::Encode {
            path: path.to_path_buf(),
            source,
        };
        let (partial, file) =
            PartialFile::create_limited(path, limit).map_err(|source| PngWriteError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let file = Checked(Arc::new(Mutex::new((file, None))));
        let mut encoder = png::Encoder::new(BufWriter::new(file.clone()), size.w, size.h);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let writer = encoder
            .write_header()
            .and_then(|w| w.into_stream_writer())
            .map_err(png_err)?;
        Ok(Self {
            writer,
            file,
            partial,
        })
    }

    /// Finishes the PNG and gives it its final name.
    pub fn commit(self) -> Result<PathBuf, PngWriteError> {
        let path = self.partial.path().to_path_buf();
        self.finish_staged()?
            .commit()
            .map_err(|source| PngWriteError::Io { path, source })
    }

    /// Finishes the PNG (its last compressed bytes and end chunk), flushes
    /// and fsyncs it: complete, under its temporary name until [`Staged::commit`].
    pub fn finish_staged(self) -> Result<Staged, PngWriteError> {
        let path = self.partial.path().to_path_buf();
        let io = |source| PngWriteError::Io {
            path: path.clone(),
            source,
        };
        self.writer.finish().map_err(|source| match source {
            png::EncodingError::IoError(e) => io(e),
            source => PngWriteError::Encode {
                path: path.clone(),
                source,
            },
        })?;
        // The encoder is gone (its end chunk and buffered bytes were written
        // as it dropped, errors unreported): ask the file what happened.
        let (file, error) = Arc::try_unwrap(self.file.0)
            .map_err(|_| {
                io(std::io::Error::other(
                    "the PNG encoder still holds its file",
                ))
            })?
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = error {
            return Err(io(e));
        }
        self.partial.finish(file).map_err(io)
    }

    /// Appends whole rows of the mask, top to bottom.
    pub fn write_rows(&mut self, rows: &[u8]) -> Result<(), PngWriteError> {
        self.writer
            .write_all(rows)
            .map_err(|source| PngWriteError::Io {
                path: self.partial.path().to_path_buf(),
                source,
            })
    }
}

/// The PNG's file, shared with the encoder, remembering the first write
/// error: the encoder writes its last bytes while it is dropped, and drops
/// the errors of those writes.
#[derive(Clone)]
struct Checked(Arc<Mutex<(OutFile, Option<std::io::Error>)>>);

impl Write for Checked {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (file, error) = &mut *state;
        if let Some(e) = error {
            return Err(std::io::Error::new(e.kind(), e.to_string()));
        }
        file.write(buf).inspect_err(|e| {
            *error = Some(std::io::Error::new(e.kind(), e.to_string()));
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (file, error) = &mut *state;
        file.flush().inspect_err(|e| {
            *error = Some(std::io::Error::new(e.kind(), e.to_string()));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_that_decodes_to_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        let size = Size::new(7, 5);
        let rows: Vec<u8> = (0..35).collect();
        let mut w = PngMaskWriter::create(&path, size).unwrap();
        w.write_rows(&rows[..14]).unwrap();
        assert!(!path.exists(), "final name must not exist before commit");
        w.write_rows(&rows[14..]).unwrap();
        assert_eq!(w.commit().unwrap(), path);
        let img = image::open(&path).unwrap().into_luma8();
        assert_eq!(img.dimensions(), (7, 5));
        assert_eq!(img.into_raw(), rows);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_full_disk_at_any_byte_fails_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        let size = Size::new(300, 200);
        let rows: Vec<u8> = (0..60_000u32).map(|i| (i % 7 == 0) as u8).collect();
        let whole = {
            let mut w = PngMaskWriter::create(&path, size).unwrap();
            w.write_rows(&rows).unwrap();
            w.commit().unwrap();
            std::fs::read(&path).unwrap()
        };
        std::fs::remove_file(&path).unwrap();
        // Every budget short of the whole file: the last bytes included.
        for budget in (0..whole.len() as u64).rev().step_by(37).chain([0]) {
            let limit = WriteLimit::after(budget);
            let result = PngMaskWriter::create_limited(&path, size, &limit).and_then(|mut w| {
                w.write_rows(&rows)?;
                w.finish_staged()
            });
            let e = result.expect_err("a PNG that did not fit is an error");
            assert!(e.to_string().contains("m.png"), "{e}");
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "{budget}"
            );
        }
        let limit = WriteLimit::after(whole.len() as u64);
        let mut w = PngMaskWriter::create_limited(&path, size, &limit).unwrap();
        w.write_rows(&rows).unwrap();
        w.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole, "exactly enough room");
    }

    #[test]
    fn an_abandoned_mask_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        let mut w = PngMaskWriter::create(&path, Size::new(4, 4)).unwrap();
        w.write_rows(&[1; 8]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
