//! One process per slide and output folder: `NAME.lock`, created
//! exclusively, holding the owner's PID; stale when that process is gone.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::EngineError;

/// Held while a slide is segmented; removed when dropped.
#[derive(Debug)]
pub struct SlideLock {
    path: PathBuf,
}

/// Whether process `pid` exists on this machine.
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists and
    // may be signalled; it sends nothing.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn owner(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl SlideLock {
    /// Takes the lock `path` for `slide`, or says which process holds it.
    /// A lock whose process is gone (killed, crashed, another machine's
    /// reboot) is taken over. (Locks are per machine: two machines sharing
    /// one output folder over NFS are not told apart.)
    pub fn acquire(path: &Path, slide: &Path) -> Result<Self, EngineError> {
        let io = |source| EngineError::io(path, "cannot create the slide's lock", source);
        for attempt in 0..20 {
            match File::options().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    return Ok(Self {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match owner(path) {
                    Some(pid) if alive(pid) => {
                        return Err(EngineError::Locked {
                            slide: slide.to_path_buf(),
                            lock: path.to_path_buf(),
                            pid,
                        })
                    }
                    // Being written this instant by its owner: look again.
                    None if attempt < 10 => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    stale => {
                        if owner(path) == stale {
                            tracing::info!(
                                "{}: taking over the lock of a wsiseg that is gone{}",
                                slide.display(),
                                stale.map(|p| format!(" (PID {p})")).unwrap_or_default()
                            );
                            let _ = std::fs::remove_file(path);
                        }
                    }
                },
                Err(e) => return Err(io(e)),
            }
        }
        Err(io(std::io::Error::other(
            "the lock keeps reappearing: another wsiseg is starting on this slide",
        )))
    }
}

impl Drop for SlideLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_owner_keeps_the_lock_a_dead_one_loses_it() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("a.lock");
        let slide = Path::new("a.svs");
        let held = SlideLock::acquire(&lock, slide).unwrap();
        let e = SlideLock::acquire(&lock, slide).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "already being segmented by PID {}",
                std::process::id()
            )),
            "{e}"
        );
        drop(held);
        assert!(!lock.exists(), "released on drop");
        // A process that has exited: its lock is stale.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(&lock, format!("{pid}\n")).unwrap();
        let taken = SlideLock::acquire(&lock, slide).unwrap();
        assert_eq!(owner(&lock), Some(std::process::id()));
        drop(taken);
    }
}
