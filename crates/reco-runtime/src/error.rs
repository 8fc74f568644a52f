//! The library's typed error: one variant per way a user can see things fail, and an
//! [`ErrorKind`] a caller can match without reading the message.
//!
//! Every message is a single line that names the file, column or value at fault and what was
//! expected. The binary maps [`Error::exit_code`] to the process exit status. A server tells
//! the classes apart by [`Error::kind`]: a checksum mismatch (the artifact was modified) from
//! an unsupported format version (a newer reco-cli wrote it) from a bad request column.

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// What class of failure an [`Error`] is: what a caller matches on. More classes may come, so
/// a `match` needs a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No artifact there: no such directory, or no `manifest.json` in it.
    ArtifactMissing,
    /// Not a reco-cli artifact: the manifest is not valid manifest JSON, names another format,
    /// lists a file outside the directory or no weights file, contradicts itself (an INT8 kind
    /// without quantization parameters), or the weights file is not safetensors.
    NotAnArtifact,
    /// Written by a newer (or other) reco-cli: a `format_version`, or an architecture feature
    /// such as the activation, this runtime does not read.
    UnsupportedVersion,
    /// A file the manifest lists is missing, or its size or sha256 differs from the manifest's:
    /// the artifact was modified or corrupted after it was written.
    ChecksumMismatch,
    /// The tensors do not fit the architecture: a tensor missing or of another shape or dtype,
    /// embeddings that do not match the spec's columns, or values no model holds (a NaN or
    /// infinity, a non-positive input scale).
    ShapeMismatch,
    /// A feature spec encoding cannot rely on: a vocabulary not strictly ascending, a
    /// non-finite mean, a standard deviation out of range, a dtype its vocabulary contradicts.
    BadFeatureSpec,
    /// An artifact that must not be served ([`crate::artifact::check_usable`]): its status is
    /// failed, or it (or an ancestor) is stale because its parent was replaced since.
    Unusable,
    /// Scoring input that does not fit the feature spec: a missing, extra or wrong-typed
    /// column, columns of different lengths, a null or non-finite number, an id that does not
    /// fit.
    InputColumn,
    /// Any other bad input: arguments, recipes, data files, settings.
    Input,
    /// An operating-system I/O error.
    Io,
    /// A failure inside a dependency that is not the user's input.
    Internal,
}

/// Errors returned by every public operation of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input (arguments, recipes, data files, artifacts, scoring input), one line, of
    /// the class `kind`. Exit code 2.
    #[error("{message}")]
    Input {
        /// The class of the failure.
        kind: ErrorKind,
        /// The line shown to the user.
        message: String,
    },
    /// An operating-system I/O error on a named path. Exit code 2.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A failure inside a dependency (polars, burn, parquet) that is not the user's input.
    /// Exit code 2.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A generic bad-input error ([`ErrorKind::Input`]) from anything printable.
    pub fn input(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, msg)
    }

    /// A bad-input error of class `kind` ([`ErrorKind::Internal`] builds [`Error::Internal`]).
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        match kind {
            ErrorKind::Internal => Self::Internal(msg.into()),
            kind => Self::Input { kind, message: msg.into() },
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// The class of this error: what a caller matches instead of parsing the message.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Input { kind, .. } => *kind,
            Self::Io { .. } => ErrorKind::Io,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The same error with `prefix` before its message, its kind kept: what a caller adding
    /// the file or field at fault writes (`e.with_prefix(format!("{}: ", path.display()))`).
    /// The result is an [`Error::Input`] whose message is `prefix` followed by this error's
    /// whole text.
    #[must_use]
    pub fn with_prefix(self, prefix: impl Display) -> Self {
        Self::Input { kind: self.kind(), message: format!("{prefix}{self}") }
    }

    /// The process exit code the contract assigns to this error (DESIGN §2): 2 for every
    /// error of the library (a failed quality gate, exit code 1, is an outcome of a run, not
    /// an error).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Input { .. } | Self::Io { .. } | Self::Internal(_) => 2,
        }
    }
}

/// Attaches a path to I/O results: `fs::read(p).at(p)?`.
pub trait IoContext<T> {
    /// Converts the I/O error into [`Error::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// Runs `f`, turning a panic inside it (a dependency's parser failing an assertion on
/// malformed bytes) into the error `describe(message)`. Fuzzing found polars' Parquet reader
/// panicking on corrupt files: that is bad input, not a crash.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>, describe: impl FnOnce(String) -> Error) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Err(describe(one_line(&msg)))
    })
}

/// Longest dependency message kept in an error line: a CSV parser quoting the rest of a file
/// must not print megabytes.
const MAX_DETAIL: usize = 400;

/// Collapses a multi-line message from a dependency into one line of at most 400 characters.
pub fn one_line(msg: &str) -> String {
    let line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_DETAIL) {
        Some((cut, _)) => format!("{} ...", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_lines_and_caps_the_length_at_a_char_boundary() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        let long = "é".repeat(1000);
        let l = one_line(&long);
        assert_eq!(l.chars().count(), MAX_DETAIL + 4);
        assert!(l.ends_with(" ..."));
    }
}
