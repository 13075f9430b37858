use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use wsiseg_slide::Size;

use crate::{RowSink, StitchError};

/// Streams an 8-bit grayscale PNG label mask row band by row band.
///
/// The file is written under a temporary name (`NAME.partial`) and renamed to
/// its final name only by [`PngMaskWriter::commit`]; dropped before that (an
/// error, a panic, an interrupted run), the temporary file is removed. So a
/// file with the final name is always complete.
pub struct PngMaskWriter {
    path: PathBuf,
    partial: PathBuf,
    writer: Option<png::StreamWriter<'static, BufWriter<File>>>,
}

impl PngMaskWriter {
    /// Starts writing a `size` mask that will be named `path`.
    pub fn create(path: &Path, size: Size) -> Result<Self, StitchError> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let partial = path.with_file_name(name);
        let io_err = |source| StitchError::Io {
            path: path.to_path_buf(),
            source,
        };
        let png_err = |source| StitchError::Png {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(&partial).map_err(io_err)?;
        // From here on, Drop removes the partial file.
        let mut this = Self {
            path: path.to_path_buf(),
            partial,
            writer: None,
        };
        let mut encoder = png::Encoder::new(BufWriter::new(file), size.w, size.h);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let writer = encoder.write_header().map_err(png_err)?;
        this.writer = Some(writer.into_stream_writer().map_err(png_err)?);
        Ok(this)
    }

    /// Finishes the PNG and gives it its final name.
    pub fn commit(mut self) -> Result<PathBuf, StitchError> {
        let writer = self.writer.take().expect("writer present until commit");
        writer.finish().map_err(|source| StitchError::Png {
            path: self.path.clone(),
            source,
        })?;
        std::fs::rename(&self.partial, &self.path).map_err(|source| StitchError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.partial.clear();
        Ok(std::mem::take(&mut self.path))
    }
}

impl RowSink for PngMaskWriter {
    fn write_rows(&mut self, rows: &[u8]) -> Result<(), StitchError> {
        use std::io::Write;
        let writer = self.writer.as_mut().expect("writer present until commit");
        writer.write_all(rows).map_err(|source| StitchError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for PngMaskWriter {
    fn drop(&mut self) {
        if !self.partial.as_os_str().is_empty() {
            drop(self.writer.take());
            let _ = std::fs::remove_file(&self.partial);
        }
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
