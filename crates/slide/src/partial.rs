//! Files that appear under their final name only when complete.

use std::fs::File;
use std::path::{Path, PathBuf};

/// A file being written as `NAME.partial` beside its final `NAME`.
///
/// [`PartialFile::commit`] renames it into place; dropped before that (an
/// error, a panic, an interrupted run), the partial file is removed. So a
/// file with the final name is always complete, and nothing that existed
/// under the final name is touched until the commit.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    partial: PathBuf,
    committed: bool,
}

impl PartialFile {
    /// Creates `path.partial` for writing.
    pub fn create(path: &Path) -> std::io::Result<(Self, File)> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let partial = path.with_file_name(name);
        let file = File::create(&partial)?;
        Ok((
            Self {
                path: path.to_path_buf(),
                partial,
                committed: false,
            },
            file,
        ))
    }

    /// Writes `bytes` to `path` the same way: complete, or not at all.
    pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
        use std::io::Write;
        let (partial, mut file) = Self::create(path)?;
        file.write_all(bytes)?;
        drop(file);
        partial.commit()
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the (closed, complete) partial file to its final name.
    pub fn commit(mut self) -> std::io::Result<PathBuf> {
        std::fs::rename(&self.partial, &self.path)?;
        self.committed = true;
        Ok(self.path.clone())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
