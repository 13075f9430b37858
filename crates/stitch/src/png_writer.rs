use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use wsiseg_slide::{PartialFile, Size};

use crate::{RowSink, StitchError};

/// Streams an 8-bit grayscale PNG label mask row band by row band.
///
/// The file is a [`PartialFile`]: it gets its final name only from
/// [`PngMaskWriter::commit`], and dropped before that (an error, a panic, an
/// interrupted run) it is removed. So a file with the final name is always complete.
pub struct PngMaskWriter {
    // Dropped in this order: the stream is closed before the file is removed.
    writer: png::StreamWriter<'static, BufWriter<File>>,
    partial: PartialFile,
}

impl PngMaskWriter {
    /// Starts writing a `size` mask that will be named `path`.
    pub fn create(path: &Path, size: Size) -> Result<Self, StitchError> {
        let png_err = |source| StitchError::Png {
            path: path.to_path_buf(),
            source,
        };
        let (partial, file) = PartialFile::create(path).map_err(|source| StitchError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut encoder = png::Encoder::new(BufWriter::new(file), size.w, size.h);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let writer = encoder
            .write_header()
            .and_then(|w| w.into_stream_writer())
            .map_err(png_err)?;
        Ok(Self { writer, partial })
    }

    /// Finishes the PNG and gives it its final name.
    pub fn commit(self) -> Result<PathBuf, StitchError> {
        let path = self.partial.path().to_path_buf();
        self.writer.finish().map_err(|source| StitchError::Png {
            path: path.clone(),
            source,
        })?;
        self.partial
            .commit()
            .map_err(|source| StitchError::Io { path, source })
    }
}

impl RowSink for PngMaskWriter {
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), StitchError> {
        use std::io::Write;
        self.writer
            .write_all(rows)
            .map_err(|source| StitchError::Io {
                path: self.partial.path().to_path_buf(),
                source,
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
    fn an_abandoned_mask_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        let mut w = PngMaskWriter::create(&path, Size::new(4, 4)).unwrap();
        w.write_rows(&[1; 8]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
