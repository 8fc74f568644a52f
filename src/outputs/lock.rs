//! One writer per output folder: [`OutputLock`].

use std::path::{Path, PathBuf};

use reco_runtime::error::{Error, IoContext, Result};

/// An exclusive lock on an output folder (`<dir>/.reco-cli.lock`, an OS file lock released
/// when the process ends, however it ends): two commands writing into one folder cannot
/// interleave. Every command that writes folders takes the lock of the folder it writes
/// into: `run`, `prepare` and `train` their `--out` root, the others the folder holding the
/// artifact or tables they replace (so a standalone `distill` or `quantize` into a run's
/// folder fails at once while the run writes there). Commands whose output is one file
/// (`predict`, `precompute`, `--metrics-out`) take none: the file is renamed into place whole.
#[derive(Debug)]
pub struct OutputLock {
    file: Option<std::fs::File>,
    path: PathBuf,
    /// The folders this process created, deepest first (they go again on release when empty:
    /// bad input leaves nothing behind), and whether it created the lock file.
    created_dirs: Vec<PathBuf>,
    created_file: bool,
}

/// The lock file's name.
pub const LOCK_FILE: &str = ".reco-cli.lock";

impl OutputLock {
    /// Takes the lock of `dir` (created when missing), or says that another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let created_dirs: Vec<PathBuf> =
            dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).map(Path::to_path_buf).collect();
        std::fs::create_dir_all(dir).at(dir)?;
        let path = dir.join(LOCK_FILE);
        // A lock file removed by its holder between our open and our lock is no lock at all:
        // lock again on the file now at the path.
        for _ in 0..8 {
            let (file, created_file) = open_lock_file(&path)?;
            match file.try_lock() {
                Ok(()) if same_file(&file, &path) => {
                    return Ok(Self { file: Some(file), path, created_dirs, created_file });
                }
                Ok(()) => continue,
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::input(format!(
                        "{}: another reco-cli process is writing there (it holds {}); wait for it or choose another output",
                        dir.display(),
                        path.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::input(format!("{}: could not take the lock {}", dir.display(), path.display())))
    }

    /// The lock of the folder that holds `out` (the current directory for a bare name).
    pub fn acquire_parent(out: &Path) -> Result<Self> {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Self::acquire(parent)
    }
}

/// The lock file at `path`, and whether this call created it (decided by the creation itself,
/// so a file removed by its holder meanwhile is never taken for someone else's).
fn open_lock_file(path: &Path) -> Result<(std::fs::File, bool)> {
    match std::fs::OpenOptions::new().create_new(true).write(true).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let f = std::fs::OpenOptions::new().write(true).open(path).at(path)?;
            Ok((f, false))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Whether the open `file` is still the file at `path` (same device and inode).
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

impl Drop for OutputLock {
    /// A lock file this process created goes (while still locked, so no one else can hold a
    /// lock on the removed file and think it theirs); folders it created go when empty.
    fn drop(&mut self) {
        if self.created_file {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.file.take());
        for dir in &self.created_dirs {
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}
