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

    /// The folders a run replaces as a whole (raw tables only for synthetic data): each must
    /// be new or hold only what reco-cli writes, checked before the first stage so a user's
    /// folder in the way is found before minutes of work, not after.
    pub fn check_replaceable(&self, synthetic: bool) -> Result<()> {
        let raw = synthetic.then(|| self.raw());
        let dirs = raw.into_iter().chain([self.features()]).chain(STAGE_DIRS.map(|s| self.stage(s)));
        dirs.into_iter().try_for_each(|d| crate::artifact::check_replaceable(&d))
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
    /// A root it fills with folders of its own (a run's `--out`): it may hold an input (a
    /// recipe beside it), never be one or lie inside one.
    Root,
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
            if glob_matches(input, &o) {
                return Err(self.refuse(format_args!("the input pattern {} would read it back", input.display())));
            }
            // A glob or a directory is also each file it lists (a part may be a link to a
            // file elsewhere).
            let listed =
                crate::data::table::list_files(input).map(|f| f.into_iter().map(|(p, _)| p).collect::<Vec<_>>());
            for file in std::iter::once(input.to_path_buf()).chain(listed.unwrap_or_default()) {
                let i = resolved(&file);
                if i == o || file.canonicalize().is_ok_and(|c| c == o) {
                    return Err(self.refuse(format_args!("that is {}, an input of this command", file.display())));
                }
                if o.starts_with(&i) && file.is_dir() {
                    return Err(
                        self.refuse(format_args!("inside {}, an input directory of this command", file.display()))
                    );
                }
                if matches!(self.written, Written::Dir) && i.starts_with(&o) {
                    return Err(self.refuse(format_args!("contains {}, an input of this command", file.display())));
                }
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
        match o.parent().into_iter().flat_map(Path::ancestors).find_map(|a| Managed::of(a).map(|m| (a, m))) {
            Some((a, m)) => Err(self.refuse(format_args!("inside {} {} ({})", m.noun(), a.display(), m.why()))),
            None => Ok(()),
        }
    }
}

/// Whether `input` is a glob pattern that matches the (resolved) output `o`: the next run of
/// the same command would read its own output as input.
fn glob_matches(input: &Path, o: &Path) -> bool {
    let text = input.to_string_lossy();
    if !text.contains(['*', '?', '[']) {
        return false;
    }
    let pattern = resolved(input);
    glob::Pattern::new(&pattern.to_string_lossy()).is_ok_and(|p| p.matches_path(o))
}

/// A folder reco-cli manages as a whole, which no other output may go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Managed {
    /// An artifact: a `manifest.json` of reco-cli's format.
    Artifact,
    /// A features directory: a `feature_spec.json` that reads as a feature spec.
    Features,
}

impl Managed {
    /// What `dir` is, by its marker file's content (a web app's own `manifest.json` is none).
    fn of(dir: &Path) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Format {
            format: String,
        }
        let read = |name: &str| std::fs::read(dir.join(name)).ok();
        if read(crate::artifact::MANIFEST)
            .and_then(|b| serde_json::from_slice::<Format>(&b).ok())
            .is_some_and(|m| m.format == crate::artifact::manifest::FORMAT)
        {
            return Some(Self::Artifact);
        }
        read(FEATURE_SPEC)
            .is_some_and(|b| serde_json::from_slice::<crate::artifact::spec::FeatureSpec>(&b).is_ok())
            .then_some(Self::Features)
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Artifact => "the artifact",
            Self::Features => "the features directory",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Self::Artifact => "it would overwrite or corrupt it",
            Self::Features => "prepare writes and hashes it",
        }
    }
}

/// The file that marks a features directory.
pub const FEATURE_SPEC: &str = "feature_spec.json";

/// The guard for a directory a command replaces (`quantize --out`, `distill`'s students): not
/// one of its inputs or artifacts, not inside one, not around one, not inside another
/// artifact or a features directory.
pub fn check_output(out: &Path, inputs: &[&Path]) -> Result<()> {
    OutputGuard::new("--out", out, Written::Dir).reads(inputs).check()
}

/// The guard for a root a command fills with folders of its own (`run`, `prepare`, `train`,
/// `distill` `--out`; `datasets --out`): [`check_output`]'s rules, and not itself an artifact
/// or a features directory (a run would write raw tables, features and models into it).
pub fn check_root(flag: &str, out: &Path, inputs: &[&Path]) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::input(format!(
            "{flag} {}: is a file, expected a directory; nothing written",
            out.display()
        )));
    }
    if let Some(m) = Managed::of(&resolved(out)) {
        return Err(Error::input(format!(
            "{flag} {}: is {} ({}); choose another directory; nothing written",
            out.display(),
            m.noun(),
            m.why()
        )));
    }
    OutputGuard::new(flag, out, Written::Root).reads(inputs).check()
}

/// The last component of a directory's path (`teacher`), or the whole path when it has none:
/// how a run and the reports name a model.
pub fn dir_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Whether `path` lies inside `dir` (both resolved; neither need exist).
pub fn is_inside(path: &Path, dir: &Path) -> bool {
    resolved(path).starts_with(resolved(dir))
}

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
