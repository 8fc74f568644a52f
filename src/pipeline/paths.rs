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

    /// Everything a run writes at the top of its root: no other output of the same command
    /// may be one of these or inside one.
    pub fn written(&self) -> Vec<PathBuf> {
        let names = ["raw", "features", "checkpoints", "stages", "report", "report.json", "report.md", "report.html"];
        let tops = names.into_iter().chain(["timings.json", LOCK_FILE]).chain(STAGE_DIRS);
        tops.map(|n| self.out.join(n)).collect()
    }
}

/// The model directories a run writes.
pub const STAGE_DIRS: [&str; 5] = ["teacher", "student", "student-scratch", "teacher-int8", "student-int8"];

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

/// File formats reco-cli writes, as their usual extensions name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet (`predict`, `precompute`).
    Parquet,
    /// An ONNX model (`export`).
    Onnx,
    /// Prometheus text exposition (`--metrics-out`).
    Prometheus,
}

impl Format {
    /// The format's name in messages.
    fn name(self) -> &'static str {
        match self {
            Self::Parquet => "Parquet",
            Self::Onnx => "ONNX",
            Self::Prometheus => "Prometheus text",
        }
    }

    /// The extension to suggest.
    fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Onnx => "onnx",
            Self::Prometheus => "prom",
        }
    }
}

/// The format an extension names, when it names one (`Some("CSV")` for `.csv`): an output whose
/// name promises another format than the one written is refused.
fn named_format(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
    Some(match ext.as_str() {
        "parquet" | "pq" => "Parquet",
        "onnx" => "ONNX",
        "prom" => "Prometheus text",
        "csv" | "tsv" => "CSV",
        "json" | "jsonl" => "JSON",
        "toml" => "TOML",
        "safetensors" => "safetensors",
        "html" | "htm" => "HTML",
        "md" => "Markdown",
        "svg" => "SVG",
        "tflite" => "TFLite",
        "arrow" | "feather" | "ipc" => "Arrow IPC",
        _ => return None,
    })
}

/// What a command writes at a path.
#[derive(Debug, Clone, Copy)]
pub enum Written {
    /// One file of this format.
    File(Format),
    /// A directory it creates or replaces as a whole (an artifact, a features directory).
    Dir,
}

/// The one output guard every command applies to every path it writes, before any work: the
/// output is never one of the command's inputs (nor inside an input directory, nor, for a
/// directory, around one), never a path the same command writes otherwise, never inside an
/// artifact (a folder holding a manifest) or a features directory unless it is the one file
/// the command manages there, and a file's extension never names another format.
#[derive(Debug)]
pub struct OutputGuard<'a> {
    flag: &'a str,
    out: &'a Path,
    written: Written,
    reads: Vec<&'a Path>,
    writes: Vec<PathBuf>,
    managed: Option<(&'a Path, &'a str)>,
}

impl<'a> OutputGuard<'a> {
    /// The guard of `flag`'s path `out`.
    pub fn new(flag: &'a str, out: &'a Path, written: Written) -> Self {
        Self { flag, out, written, reads: Vec::new(), writes: Vec::new(), managed: None }
    }

    /// The command reads these files or directories.
    #[must_use]
    pub fn reads(mut self, inputs: &[&'a Path]) -> Self {
        self.reads.extend_from_slice(inputs);
        self
    }

    /// The same command writes these paths too.
    #[must_use]
    pub fn writes(mut self, outputs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.writes.extend(outputs);
        self
    }

    /// The command may write the file `name` inside the artifact `dir` (export's `model.onnx`).
    #[must_use]
    pub fn manages(mut self, dir: &'a Path, name: &'a str) -> Self {
        self.managed = Some((dir, name));
        self
    }

    fn refuse(&self, why: impl std::fmt::Display) -> Error {
        Error::input(format!("{} {}: {why}; nothing written", self.flag, self.out.display()))
    }

    /// Checks every rule; the first broken one is the error.
    pub fn check(&self) -> Result<()> {
        let o = resolved(self.out);
        if let Written::File(format) = self.written {
            self.check_file(format)?;
        }
        let managed = self.managed.map(|(d, n)| resolved(d).join(n));
        if managed.as_deref() == Some(o.as_path()) {
            return Ok(());
        }
        self.check_ancestors(&o)?;
        for input in &self.reads {
            let i = resolved(input);
            if i == o {
                return Err(self.refuse(format_args!("that is {}, an input of this command", input.display())));
            }
            if o.starts_with(&i) && input.is_dir() {
                return Err(self.refuse(format_args!("inside {}, an input directory of this command", input.display())));
            }
            if matches!(self.written, Written::Dir) && i.starts_with(&o) {
                return Err(self.refuse(format_args!("contains {}, an input of this command", input.display())));
            }
        }
        if let Some(w) = self.writes.iter().find(|w| o.starts_with(resolved(w))) {
            return Err(self.refuse(format_args!("this command writes {} itself", w.display())));
        }
        Ok(())
    }

    /// A file output: not a directory, its folder a directory, its extension not another format's.
    fn check_file(&self, format: Format) -> Result<()> {
        if self.out.is_dir() {
            return Err(self.refuse(format_args!("is a directory, expected a {} file path", format.name())));
        }
        if let Some(dir) = self.out.parent().filter(|d| !d.as_os_str().is_empty() && d.exists() && !d.is_dir()) {
            return Err(self.refuse(format_args!("{} is not a directory", dir.display())));
        }
        if let Some(named) = named_format(self.out).filter(|n| *n != format.name()) {
            return Err(self.refuse(format_args!(
                "the name says {named} but this command writes {}; name the file *.{}",
                format.name(),
                format.extension()
            )));
        }
        Ok(())
    }

    /// No artifact or features directory above the output (a directory output may itself be
    /// one: the command replaces it, after its own checks).
    fn check_ancestors(&self, o: &Path) -> Result<()> {
        for a in o.parent().into_iter().flat_map(Path::ancestors) {
            if a.join(crate::artifact::MANIFEST).is_file() {
                return Err(
                    self.refuse(format_args!("inside the artifact {} (it would overwrite or corrupt it)", a.display()))
                );
            }
            if a.join(FEATURE_SPEC).is_file() {
                return Err(self.refuse(format_args!(
                    "inside the features directory {} (prepare writes and hashes it)",
                    a.display()
                )));
            }
        }
        Ok(())
    }
}

/// The file that marks a features directory.
pub const FEATURE_SPEC: &str = "feature_spec.json";

/// The guard for a directory a command replaces (`quantize --out`, `distill`'s students): not
/// an input, not around one, not inside another artifact; and not one of the `artifacts` the
/// command reads, nor inside one.
pub fn check_output(out: &Path, inputs: &[&Path], artifacts: &[&Path], allowed_inside: Option<&str>) -> Result<()> {
    let o = resolved(out);
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
    OutputGuard::new("--out", out, Written::Dir).reads(inputs).check()
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

/// An exclusive lock on an output folder (`<dir>/.reco-cli.lock`, an OS file lock released
/// when the process ends, however it ends): two commands writing into one folder cannot
/// interleave. Every command takes the lock of the folder it writes into: `run`, `prepare`
/// and `train` their `--out` root, the others the folder holding the artifact or file they
/// replace (so a standalone `distill` or `quantize` into a run's folder waits for no one and
/// fails at once while the run writes there).
#[derive(Debug)]
pub struct OutputLock {
    file: Option<std::fs::File>,
    path: PathBuf,
    /// Whether this process created the folder / the lock file (both go again on release
    /// when nothing else was written: bad input leaves nothing behind).
    created_dir: bool,
    created_file: bool,
}

/// The lock file's name.
pub const LOCK_FILE: &str = ".reco-cli.lock";

impl OutputLock {
    /// Takes the lock of `dir` (created when missing), or says that another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let created_dir = !dir.exists();
        std::fs::create_dir_all(dir).at(dir)?;
        let path = dir.join(LOCK_FILE);
        // A lock file removed by its holder between our open and our lock is no lock at all:
        // lock again on the file now at the path.
        for _ in 0..8 {
            let created_file = !path.exists();
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
            match file.try_lock() {
                Ok(()) if same_file(&file, &path) => {
                    return Ok(Self { file: Some(file), path, created_dir, created_file });
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
    /// lock on the removed file and think it theirs); a folder it created goes when empty.
    fn drop(&mut self) {
        if self.created_file {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.file.take());
        if let Some(dir) = self.path.parent().filter(|_| self.created_dir) {
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
