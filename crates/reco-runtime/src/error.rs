//! The library's typed error: one variant per way a user can see things fail.
//!
//! Every message is a single line that names the file, column or value at fault and what was
//! expected. The binary maps [`Error::exit_code`] to the process exit status.

use std::path::{Path, PathBuf};

/// Errors returned by every public operation of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input: arguments, recipes, data files, artifacts. Exit code 2.
    #[error("{0}")]
    Input(String),
    /// An operating-system I/O error on a named path. Exit code 2.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A quality gate failed; the artifact is still written and marked failed. Exit code 1.
    #[error("quality gate failed: {0}")]
    Gate(String),
    /// A failure inside a dependency (polars, burn, parquet) that is not the user's input.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Input`] from anything printable.
    pub fn input(msg: impl Into<String>) -> Self {
        Self::Input(msg.into())
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// The process exit code the contract assigns to this error (DESIGN §2).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Gate(_) => 1,
            Self::Input(_) | Self::Io { .. } | Self::Internal(_) => 2,
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
