//! `serve` and `loadtest`: run `reco-serve`, the reference server built on `reco-runtime`
//! alone (tokio + hyper, no burn or polars), found next to this executable. Its arguments
//! pass through unchanged (`reco-cli serve --help` is the server's help, its usage line
//! naming `reco-cli serve`: the server runs with `reco-cli` as its program name).

use std::path::PathBuf;

use clap::Args;
use reco::{Error, Result};

/// Arguments handed to `reco-serve`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct PassArgs {
    /// Arguments of `reco-serve serve` / `reco-serve loadtest` (see `--help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Replaces this process with `reco-serve <sub> <args>` (signals then reach the server
/// directly); returns only when that cannot start.
pub fn exec(sub: &str, a: PassArgs) -> Result<u8> {
    let server = server_binary()?;
    let mut cmd = std::process::Command::new(&server);
    cmd.arg(sub).args(&a.args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // clap names the program after argv[0] in usage lines and help.
        cmd.arg0("reco-cli");
        Err(Error::io(&server, cmd.exec()))
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().map_err(|e| Error::io(&server, e))?;
        Ok(u8::try_from(status.code().unwrap_or(2)).unwrap_or(2))
    }
}

/// `reco-serve` beside the running `reco-cli`.
fn server_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::Internal(format!("cannot locate reco-cli: {e}")))?;
    let server = exe.with_file_name(if cfg!(windows) { "reco-serve.exe" } else { "reco-serve" });
    if !server.is_file() {
        return Err(Error::input(format!(
            "{}: not found (serve and loadtest run reco-serve, built with `cargo build --release -p reco-serve`)",
            server.display()
        )));
    }
    Ok(server)
}
