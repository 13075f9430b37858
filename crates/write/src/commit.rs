//! The commit protocol every output follows: a file appears under its final
//! name only when complete.
//!
//! 1. [`PartialFile::create`] creates `NAME.partial` beside the final `NAME`,
//!    exclusively: an existing `NAME.partial` (another writer) is an error,
//!    never shared or truncated.
//! 2. The writer writes through [`OutFile`], checking every error.
//! 3. [`PartialFile::finish`] flushes and fsyncs the file: a full disk shows
//!    up here at the latest, and the file is then a [`Staged`] file.
//! 4. [`Staged::commit`] renames it to `NAME` and fsyncs the folder.
//!
//! Dropped before its commit (an error, a panic, a cancelled run), a partial
//! or staged file is removed; nothing under the final name is touched until
//! the rename, so what existed there survives a failed run.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A byte budget shared by every file written with it: once spent, writes
/// fail with "No space left on device", exactly as on a full disk. Tests
/// use it to fail a run after N bytes; [`WriteLimit::none`] never fails.
#[derive(Debug, Clone, Default)]
pub struct WriteLimit(Option<Arc<AtomicU64>>);

impl WriteLimit {
    /// No limit: only the disk can fail.
    pub fn none() -> Self {
        Self(None)
    }

    /// Writes fail once `bytes` bytes have been written in all.
    pub fn after(bytes: u64) -> Self {
        Self(Some(Arc::new(AtomicU64::new(bytes))))
    }

    /// How many of `want` bytes may still be written; `None` without a limit.
    fn take(&self, want: usize) -> Option<usize> {
        let left = self.0.as_ref()?;
        let mut got = 0;
        let _ = left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
            got = (want as u64).min(l);
            Some(l - got)
        });
        Some(got as usize)
    }
}

/// The file behind a [`PartialFile`]: a plain file whose writes count
/// against its [`WriteLimit`].
#[derive(Debug)]
pub struct OutFile {
    file: File,
    limit: WriteLimit,
}

/// ENOSPC: what a full disk answers.
fn disk_full() -> std::io::Error {
    std::io::Error::from_raw_os_error(28)
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.limit.take(buf.len()) {
            None => self.file.write(buf),
            Some(0) if !buf.is_empty() => Err(disk_full()),
            Some(n) => {
                let written = self.file.write(&buf[..n])?;
                if let Some(left) = &self.limit.0 {
                    left.fetch_add((n - written) as u64, Ordering::Relaxed);
                }
                Ok(written)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for OutFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// A file being written as `NAME.partial` beside its final `NAME`; see the
/// module documentation.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    partial: PathBuf,
    committed: bool,
}

/// The temporary name of `path`: `NAME.partial`.
pub fn partial_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

impl PartialFile {
    /// Creates `path.partial` exclusively, without a byte limit.
    pub fn create(path: &Path) -> std::io::Result<(Self, OutFile)> {
        Self::create_limited(path, &WriteLimit::none())
    }

    /// Creates `path.partial` exclusively; its writes count against `limit`.
    pub fn create_limited(path: &Path, limit: &WriteLimit) -> std::io::Result<(Self, OutFile)> {
        let partial = partial_name(path);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "{} exists: another process is writing this file, or one was killed (remove it if no wsiseg is running)",
                            partial.display()
                        ),
                    )
                } else {
                    e
                }
            })?;
        Ok((
            Self {
                path: path.to_path_buf(),
                partial,
                committed: false,
            },
            OutFile {
                file,
                limit: limit.clone(),
            },
        ))
    }

    /// Writes `bytes` to `path` completely, or not at all.
    pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
        Self::write_staged(path, bytes, &WriteLimit::none())?.commit()
    }

    /// Writes `bytes` to `path.partial` and stages it (see [`Self::finish`]).
    pub fn write_staged(path: &Path, bytes: &[u8], limit: &WriteLimit) -> std::io::Result<Staged> {
        let (partial, mut file) = Self::create_limited(path, limit)?;
        file.write_all(bytes)?;
        partial.finish(file)
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and fsyncs the complete file: from here on it is on disk,
    /// and only waits for its name ([`Staged::commit`]).
    pub fn finish(mut self, mut file: OutFile) -> std::io::Result<Staged> {
        file.flush()?;
        file.file.sync_all()?;
        drop(file);
        self.committed = true;
        Ok(Staged {
            path: self.path.clone(),
            partial: self.partial.clone(),
            renamed: false,
        })
    }

    /// Finishes the file and gives it its final name at once.
    pub fn commit(self, file: OutFile) -> std::io::Result<PathBuf> {
        self.finish(file)?.commit()
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// A complete, fsynced file still under its temporary name.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    partial: PathBuf,
    renamed: bool,
}

impl Staged {
    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size in bytes.
    pub fn len(&self) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.partial)?.len())
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> std::io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Renames the file to its final name and fsyncs the folder, so that
    /// the name survives a power cut.
    pub fn commit(mut self) -> std::io::Result<PathBuf> {
        std::fs::rename(&self.partial, &self.path)?;
        self.renamed = true;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(self.path.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gets_its_name_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        let (p, mut f) = PartialFile::create(&path).unwrap();
        f.write_all(b"hello").unwrap();
        let staged = p.finish(f).unwrap();
        assert!(!path.exists());
        assert_eq!(staged.len().unwrap(), 5);
        staged.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_second_writer_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        let _first = PartialFile::create(&path).unwrap();
        let e = PartialFile::create(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("a.txt.partial exists"), "{e}");
    }

    #[test]
    fn a_spent_limit_fails_like_a_full_disk_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        let limit = WriteLimit::after(3);
        let e = PartialFile::write_staged(&path, b"hello", &limit).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A staged file dropped uncommitted is removed too.
        let staged = PartialFile::write_staged(&path, b"hi", &WriteLimit::none()).unwrap();
        drop(staged);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
