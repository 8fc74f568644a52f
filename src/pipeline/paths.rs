//! Where a run keeps things: `<out>/raw`, `<out>/features`, `<out>/teacher`, ...

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::recipe::Recipe;

/// The directory layout of one run.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// Root of everything the run writes.
    pub out: PathBuf,
}

impl RunPaths {
    /// `out`, or `artifacts/<recipe name>` when not given.
    pub fn new(recipe: &Recipe, out: Option<&Path>) -> Self {
        let out = out.map_or_else(|| Path::new("artifacts").join(&recipe.name), Path::to_path_buf);
        Self { out }
    }

    /// Synthetic raw tables (when the recipe's data source is `synth`).
    pub fn raw(&self) -> PathBuf {
        self.out.join("raw")
    }

    /// Feature files and the feature spec.
    pub fn features(&self) -> PathBuf {
        self.out.join("features")
    }

    /// A stage's artifact directory (`teacher`, `student`, ...).
    pub fn stage(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// Per-epoch checkpoints of a stage (outside the artifact).
    pub fn checkpoints(&self, name: &str) -> PathBuf {
        self.out.join("checkpoints").join(name)
    }

    /// The run report (no timings, paths relative to `out`).
    pub fn report(&self) -> PathBuf {
        self.out.join("report.json")
    }

    /// Wall-clock timings of the run's stages (the one file that differs between reruns).
    pub fn timings(&self) -> PathBuf {
        self.out.join("timings.json")
    }
}

/// The path of `to` as seen from directory `from` (`../teacher` for a sibling), both made
/// absolute first (symlinks resolved where they exist), `/`-separated.
pub fn relative(from: &Path, to: &Path) -> String {
    let (from, to) = (resolved(from), resolved(to));
    let common = from.components().zip(to.components()).take_while(|(a, b)| a == b).count();
    let ups = from.components().count() - common;
    let mut parts: Vec<String> = vec!["..".to_string(); ups];
    parts.extend(to.components().skip(common).map(|c| c.as_os_str().to_string_lossy().into_owned()));
    if parts.is_empty() { ".".into() } else { parts.join("/") }
}

/// `p` absolute, with its longest existing ancestor canonicalized and `.`/`..` folded (it
/// need not exist).
fn resolved(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut existing = abs.as_path();
    let mut tail = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or_else(|_| existing.to_path_buf());
    for name in tail.iter().rev() {
        out.push(name);
    }
    let mut folded = PathBuf::new();
    for c in out.components() {
        match c {
            Component::ParentDir => {
                folded.pop();
            }
            Component::CurDir => {}
            other => folded.push(other),
        }
    }
    folded
}

/// The one guard every command that takes `--out` applies: the output must not be one of its
/// input files, nor an artifact directory it reads, nor inside one (except for
/// `allowed_inside`, a file name the command manages there, such as `model.onnx`).
pub fn check_output(out: &Path, inputs: &[&Path], artifacts: &[&Path], allowed_inside: Option<&str>) -> Result<()> {
    let o = resolved(out);
    for input in inputs {
        if resolved(input) == o {
            return Err(Error::input(format!(
                "--out {}: that is an input of this command; nothing written",
                out.display()
            )));
        }
    }
    for dir in artifacts {
        let d = dir.canonicalize().at(dir)?;
        let inside = o.strip_prefix(&d).ok();
        let managed = inside.is_some_and(|r| allowed_inside.is_some_and(|a| r == Path::new(a)));
        if inside.is_some() && !managed {
            return Err(Error::input(format!(
                "--out {}: inside the artifact {} it reads (it would overwrite or corrupt it); nothing written",
                out.display(),
                dir.display()
            )));
        }
        if d.starts_with(&o) && o != d {
            return Err(Error::input(format!(
                "--out {}: contains the artifact {} it reads; nothing written",
                out.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// A run's output root must not be an artifact directory or lie inside one (it would write a
/// whole run into the artifact).
pub fn check_run_root(out: &Path) -> Result<()> {
    let o = resolved(out);
    if let Some(a) = o.ancestors().find(|a| a.join(crate::artifact::MANIFEST).is_file()) {
        return Err(Error::input(format!(
            "--out {}: inside the artifact {} (a run writes raw data, features and models there); choose another directory; nothing written",
            out.display(),
            a.display()
        )));
    }
    Ok(())
}

/// An exclusive lock on an output root (`<out>/.reco-cli.lock`, an OS file lock released when
/// the process ends, however it ends): two runs into one `--out` cannot interleave.
#[derive(Debug)]
pub struct OutputLock {
    _file: std::fs::File,
    path: PathBuf,
    /// Whether this process created the output directory (then a run that wrote nothing
    /// else removes it again, lock file and all).
    created: bool,
}

impl OutputLock {
    /// Takes the lock, or says that another process holds it.
    pub fn acquire(out: &Path) -> Result<Self> {
        let created = !out.exists();
        std::fs::create_dir_all(out).at(out)?;
        let path = out.join(".reco-cli.lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path, created }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::input(format!(
                "{}: another reco-cli process is writing there (it holds {}); wait for it or choose another --out",
                out.display(),
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

impl Drop for OutputLock {
    /// A command that failed before writing anything into a directory it created leaves no
    /// directory behind (bad input writes nothing).
    fn drop(&mut self) {
        let Some(dir) = self.path.parent() else { return };
        let only_lock = std::fs::read_dir(dir).is_ok_and(|mut it| it.all(|e| e.is_ok_and(|e| e.path() == self.path)));
        if self.created && only_lock {
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_siblings_and_across_trees() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("run/teacher")).unwrap();
        assert_eq!(relative(&root.join("run/teacher-int8"), &root.join("run/teacher")), "../teacher");
        assert_eq!(relative(&root.join("other/x/y"), &root.join("run/teacher")), "../../../run/teacher");
        assert_eq!(relative(&root.join("run/./teacher"), &root.join("run/teacher")), ".");
        assert_eq!(relative(&root.join("run/a/../b"), &root.join("run/teacher")), "../teacher");
    }
}
