//! `serve` and `loadtest`: run `reco-serve`, the reference server built on `reco-runtime`
//! alone (tokio + hyper, no burn or polars), found next to this executable. Its arguments
//! pass through unchanged (`reco-cli serve --help` is the server's help, its usage line
//! naming `reco-cli serve`: the server runs with `reco-cli` as its program name), except
//! `--recipe FILE`, read here: its `[serve]` section becomes the batching flags (`--max-batch`,
//! `--max-wait-ms`, `--queue-rows`, `--threads`) the command line does not give itself.

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
    let args = with_recipe_flags(a.args)?;
    let server = server_binary()?;
    let mut cmd = std::process::Command::new(&server);
    cmd.arg(sub).args(&args);
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

/// `args` with `--recipe FILE` (or `--recipe=FILE`) replaced by the recipe's `[serve]` flags
/// that `args` does not set itself.
fn with_recipe_flags(args: Vec<String>) -> Result<Vec<String>> {
    let mut rest = Vec::new();
    let mut recipe = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--recipe" {
            let path = it.next().ok_or_else(|| Error::input("--recipe: expected a recipe file"))?;
            recipe = Some(PathBuf::from(path));
        } else if let Some(path) = a.strip_prefix("--recipe=") {
            recipe = Some(PathBuf::from(path));
        } else {
            rest.push(a);
        }
    }
    let Some(path) = recipe else { return Ok(rest) };
    let serve = reco::recipe::Recipe::load(&path)?.serve;
    // A flag the command line gives itself wins (the server takes each flag once).
    let given = |flag: &str| rest.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let flags = serve.flags();
    let from_recipe = flags.chunks(2).filter(|pair| !given(&pair[0])).flatten().cloned();
    Ok(from_recipe.chain(rest.iter().cloned()).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_recipes_serve_section_sets_the_batching_flags_the_command_line_does_not_give() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("r.toml");
        std::fs::write(&r, "name = \"x\"\n[data]\nsource = \"synth\"\n[serve]\nmax_batch = 8\nmax_wait_ms = 2\n")
            .unwrap();
        let args = strings(&["--model", "m", "--recipe", r.to_str().unwrap(), "--threads", "3"]);
        // The command line's --threads wins over the recipe's.
        let want = strings(&[
            "--max-batch",
            "8",
            "--max-wait-ms",
            "2",
            "--queue-rows",
            "4096",
            "--model",
            "m",
            "--threads",
            "3",
        ]);
        assert_eq!(with_recipe_flags(args).unwrap(), want);
        let eq = strings(&[&format!("--recipe={}", r.display())]);
        assert_eq!(with_recipe_flags(eq).unwrap()[..2], strings(&["--max-batch", "8"])[..]);
        assert_eq!(with_recipe_flags(strings(&["--model", "m"])).unwrap(), strings(&["--model", "m"]));
        assert!(with_recipe_flags(strings(&["--recipe"])).is_err());
        std::fs::write(&r, "name = \"x\"\n[data]\nsource = \"synth\"\n[serve]\nmax_batch = 0\n").unwrap();
        let e = with_recipe_flags(strings(&["--recipe", r.to_str().unwrap()])).unwrap_err().to_string();
        assert!(e.contains("serve.max_batch = 0"), "{e}");
    }
}
