//! How the library reports progress and log lines without printing: the binary implements
//! [`Progress`] with indicatif (stderr, hidden when not a terminal or with `--quiet`).

/// Receiver of progress events. All methods have no-op defaults.
pub trait Progress: Sync {
    /// A unit of work of `total` steps begins (replaces any previous bar).
    fn begin(&self, _label: &str, _total: u64) {}
    /// `n` more steps are done.
    fn advance(&self, _n: u64) {}
    /// A short status shown next to the bar (e.g. the latest loss).
    fn status(&self, _msg: &str) {}
    /// The current unit of work is finished.
    fn end(&self) {}
    /// A log line for humans (stderr).
    fn log(&self, _msg: &str) {}
}

/// Reports nothing; for tests and library users who do not care.
pub struct Silent;

impl Progress for Silent {}
