//! `reco-cli`: parse arguments, run, print the error once, map outcomes to exit codes
//! (0 ok, 1 quality gate failed, 2 usage/input/I-O error). Everything else is in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return usage_error(&e),
    };
    // Panics print nothing where they happen (a dependency's worker thread would print a
    // multi-line report even when the library turns the panic into an input error); one that
    // reaches here is reported as one internal-error line.
    std::panic::set_hook(Box::new(|_| {}));
    let result =
        reco_runtime::error::catch_panic(|| cli::run(args), |msg| reco::Error::Internal(format!("panic: {msg}")));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
    }
}

/// Help and version go to stdout (exit 0); a missing subcommand prints the help (exit 2); a usage error is one line on stderr, exit 2: clap's
/// first paragraph (what is wrong, and which argument) joined, without the usage block.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // `reco-cli` or `reco-cli datasets` alone: the help is the answer, as a usage error.
        let _ = e.print();
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    eprintln!("{} (see --help)", first.join(" "));
    ExitCode::from(2)
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
