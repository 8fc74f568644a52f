//! `reco-cli`: parse arguments, run, print the error once, map outcomes to exit codes
//! (0 ok, 1 quality gate failed, 2 usage/input/I-O error). Everything else is in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` panics when stdout is a closed pipe
/// (`reco-cli inspect DIR | head`). Restore the default: the process ends quietly, like any
/// Unix filter.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
