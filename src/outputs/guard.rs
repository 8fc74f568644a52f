//! The one output guard every command applies to every path it writes, before any work
//! ([`OutputGuard`]), and the rules for the directories commands replace or fill
//! ([`check_output`], [`check_root`]).

use std::path::{Path, PathBuf};

use super::paths::resolved;
use reco_runtime::error::{Error, Result};

/// File formats reco-cli writes, as their usual extensions name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet (`predict`, `precompute`).
    Parquet,
    /// An ONNX model (`export`).
    Onnx,
    /// A TFLite model (`export --format tflite`).
    Tflite,
    /// A JSON document (the TFLite export's input description).
    Json,
    /// JUnit XML test results (`--junit`).
    Junit,
    /// Markdown (`run --summary`).
    Markdown,
    /// Prometheus text exposition (`--metrics-out`).
    Prometheus,
}

impl Format {
    /// The format's name in messages.
    fn name(self) -> &'static str {
        match self {
            Self::Parquet => "Parquet",
            Self::Onnx => "ONNX",
            Self::Tflite => "TFLite",
            Self::Json => "JSON",
            Self::Junit => "JUnit XML",
            Self::Markdown => "Markdown",
            Self::Prometheus => "Prometheus text",
        }
    }

    /// The extension to suggest.
    fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Onnx => "onnx",
            Self::Tflite => "tflite",
            Self::Json => "json",
            Self::Junit => "xml",
            Self::Markdown => "md",
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
        "xml" => "JUnit XML",
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
        if read(reco_runtime::artifact::MANIFEST)
            .and_then(|b| serde_json::from_slice::<Format>(&b).ok())
            .is_some_and(|m| m.format == reco_runtime::artifact::manifest::FORMAT)
        {
            return Some(Self::Artifact);
        }
        read(FEATURE_SPEC)
            .is_some_and(|b| serde_json::from_slice::<reco_runtime::artifact::spec::FeatureSpec>(&b).is_ok())
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
