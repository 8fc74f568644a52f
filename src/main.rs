//! `reco-cli`: parse arguments, run, print the error once, map outcomes to exit codes
//! (0 ok, 1 quality gate failed, 2 usage/input/I-O error). Everything else is in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
    }
}
