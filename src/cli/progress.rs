//! The binary's [`Progress`]: indicatif bars and log lines on stderr, hidden when stderr is
//! not a terminal (bars) or with `--quiet` (everything).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use reco::progress::Progress;

/// Progress bars on stderr.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
    draw: bool,
}

impl Bars {
    /// Bars are drawn only on a terminal and never with `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self { bar: Mutex::new(None), quiet, draw: !quiet && std::io::stderr().is_terminal() }
    }

    fn with<F: FnOnce(&ProgressBar)>(&self, f: F) {
        if let Ok(guard) = self.bar.lock()
            && let Some(b) = guard.as_ref()
        {
            f(b);
        }
    }
}

impl Progress for Bars {
    fn begin(&self, label: &str, total: u64) {
        if !self.draw {
            return;
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        if let Ok(mut guard) = self.bar.lock()
            && let Some(old) = guard.replace(bar)
        {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        self.with(|b| b.inc(n));
    }

    fn status(&self, msg: &str) {
        self.with(|b| b.set_message(msg.to_string()));
    }

    fn end(&self) {
        if let Ok(mut guard) = self.bar.lock()
            && let Some(b) = guard.take()
        {
            b.finish_and_clear();
        }
    }

    fn log(&self, msg: &str) {
        if self.quiet {
            return;
        }
        let mut printed = false;
        self.with(|b| {
            b.suspend(|| eprintln!("{msg}"));
            printed = true;
        });
        if !printed {
            eprintln!("{msg}");
        }
    }
}
