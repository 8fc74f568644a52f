//! `reco-serve`: the reference server for reco artifacts, built on `reco-runtime` alone (no
//! burn, no polars), and its load generator. `reco-cli serve` and `reco-cli loadtest` run it.
//!
//! Exit codes as reco-cli's: 0 success, 2 bad input (a model that fails verification, an
//! address in use, bad flags).

mod bounds;
mod data;
mod encoding;
mod loadtest;
mod metrics;
mod online;
mod recommendations;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bounds::int_in;
use clap::{Parser, Subcommand};
use reco_runtime::runtime::Model;
use reco_runtime::runtime::coalesce::{Coalescer, Config};

#[derive(Parser)]
#[command(name = "reco-serve", version, about = "Serve reco artifacts over HTTP, and load-test them")]
struct Cli {
    /// No log lines on stderr (errors still print).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// Batching flags shared by `serve` and `loadtest`.
#[derive(clap::Args, Clone)]
struct Batching {
    /// Most rows per scored batch.
    #[arg(long, allow_negative_numbers = true, default_value_t = 64, value_parser = int_in::<usize>(1, 1 << 20))]
    max_batch: usize,
    /// Extra wait of a batch's oldest request for more rows, milliseconds (0: a free scoring
    /// thread takes what is queued at once; requests arriving meanwhile form the next batch).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0, value_parser = int_in::<u64>(0, 3_600_000))]
    max_wait_ms: u64,
    /// Most rows queued at once (more is refused with 503).
    #[arg(long, allow_negative_numbers = true, default_value_t = 4096, value_parser = int_in::<usize>(1, 1 << 30))]
    queue_rows: usize,
    /// Scoring threads.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1, value_parser = int_in::<usize>(1, 1024))]
    threads: usize,
}

impl Batching {
    fn config(&self) -> Config {
        Config {
            max_batch: self.max_batch,
            max_wait: Duration::from_millis(self.max_wait_ms),
            queue_rows: self.queue_rows,
            threads: self.threads,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve a model: POST /v1/score, POST /v1/events and /v1/score/raw (with --features), GET /v1/recommendations (with --recommendations), GET /metrics, GET /healthz.
    Serve {
        /// Artifact directory (verified before the server starts).
        #[arg(long)]
        model: PathBuf,
        /// Address to listen on (port 0: any free port; the bound address is printed on stdout).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        #[command(flatten)]
        batching: Batching,
        /// Largest request body, bytes.
        #[arg(long, allow_negative_numbers = true, default_value_t = 1 << 20, value_parser = int_in::<usize>(1024, 1 << 30))]
        max_body_bytes: usize,
        /// Most rows per score request.
        #[arg(long, allow_negative_numbers = true, default_value_t = 4096, value_parser = int_in::<usize>(1, 1 << 24))]
        max_rows: usize,
        /// Deadline of a score request, milliseconds (then 504).
        #[arg(long, allow_negative_numbers = true, default_value_t = 1000, value_parser = int_in::<u64>(1, 3_600_000))]
        deadline_ms: u64,
        /// HTTP worker threads.
        #[arg(long, allow_negative_numbers = true, default_value_t = 1, value_parser = int_in::<usize>(1, 1024))]
        http_threads: usize,
        /// A `reco-cli precompute` table to serve at GET /v1/recommendations?segment=&lat=&lon=[&category=]
        /// (a model without a segment input has the one segment `all`).
        #[arg(long)]
        recommendations: Option<PathBuf>,
        /// Time to live of a cached recommendations response, seconds (0: no caching).
        #[arg(long, allow_negative_numbers = true, default_value_t = 60, value_parser = int_in::<u64>(0, 31_536_000))]
        cache_ttl_s: u64,
        /// Responses the in-process cache holds.
        #[arg(long, allow_negative_numbers = true, default_value_t = 10_000, value_parser = int_in::<usize>(1, 10_000_000))]
        cache_entries: usize,
        /// A `prepare` features directory: raw requests at POST /v1/score/raw, featurized with its
        /// featurizer.json and places.parquet and an online state fed by POST /v1/events (warm
        /// from its events.parquet unless --cold).
        #[arg(long)]
        features: Option<PathBuf>,
        /// Start the online state empty instead of replaying the features' events.parquet.
        #[arg(long, requires = "features")]
        cold: bool,
        /// Seconds a raw request may lag the newest event and still get exact window
        /// statistics (older ones are flagged `late`); default: the recipe's window.
        #[arg(long, value_parser = int_in::<i64>(0, i64::MAX / 4), requires = "features")]
        lateness_s: Option<i64>,
        /// Visits per user the online state keeps with their times (older ones become counts).
        #[arg(long, default_value_t = 1000, value_parser = int_in::<usize>(1, 1 << 24))]
        max_visits_per_user: usize,
        /// Users the online state keeps (the stalest are dropped past it).
        #[arg(long, default_value_t = 1_000_000, value_parser = int_in::<usize>(1, 1 << 30))]
        max_users: usize,
        /// Serve a model whose status is failed (a quality gate failed on it or an ancestor)
        /// or that is stale (made from a parent that was replaced since).
        #[arg(long)]
        allow_failed: bool,
    },
    /// Concurrent single-row clients against the coalescer in-process (with and without
    /// coalescing) and, with --url, against running servers.
    Loadtest(loadtest::Args),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let text = e.to_string();
            let first = text.split("\n\n").next().unwrap_or(&text).split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("{first}");
            std::process::exit(2);
        }
        Err(e) => {
            let _ = e.print();
            return;
        }
    };
    let result = match cli.command {
        Command::Serve {
            model,
            addr,
            batching,
            max_body_bytes,
            max_rows,
            deadline_ms,
            http_threads,
            recommendations,
            cache_ttl_s,
            cache_entries,
            allow_failed,
            features,
            cold,
            lateness_s,
            max_visits_per_user,
            max_users,
        } => {
            let limits =
                server::Limits { max_body: max_body_bytes, max_rows, deadline: Duration::from_millis(deadline_ms) };
            let table = recommendations.map(|p| (p, Duration::from_secs(cache_ttl_s), cache_entries));
            let state = online::StateFlags { lateness_s, max_visits_per_user, max_users, cold };
            let model = Serving { dir: &model, allow_failed, features: features.map(|f| (f, state)) };
            serve(model, addr, &batching, limits, http_threads, table, cli.quiet)
        }
        Command::Loadtest(args) => loadtest::run(&args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

/// The model to serve, whether a failed or stale one may be, and the online features.
struct Serving<'a> {
    dir: &'a std::path::Path,
    allow_failed: bool,
    features: Option<(PathBuf, online::StateFlags)>,
}

/// Loads and verifies the model (refusing a failed or stale one unless allowed), then serves
/// until SIGTERM or SIGINT.
fn serve(
    Serving { dir, allow_failed, features }: Serving<'_>,
    addr: SocketAddr,
    batching: &Batching,
    limits: server::Limits,
    http_threads: usize,
    table: Option<(PathBuf, Duration, usize)>,
    quiet: bool,
) -> Result<(), String> {
    let stop = block_stop_signals()?;
    let (manifest, model) = Model::open(dir).map_err(|e| e.to_string())?;
    if !allow_failed {
        reco_runtime::artifact::check_usable(dir, &manifest).map_err(|e| e.to_string())?;
    }
    let model_info = (manifest.kind.to_string(), manifest.content_hash());
    let online = features
        .map(|(f, flags)| {
            online::Online::load(&f, &manifest.feature_spec, flags).map_err(|e| format!("--features: {e}"))
        })
        .transpose()?;
    let int_ids = manifest
        .feature_spec
        .categorical
        .iter()
        .find(|c| c.name == "place_id")
        .is_some_and(|c| matches!(c.vocabulary, reco_runtime::artifact::spec::Vocabulary::Int(_)));
    // The server keeps the model only (the manifest holds a second copy of the vocabularies),
    // and gives back the pages of the load's transient buffers (file bytes, parsed JSON) that
    // glibc would otherwise keep resident.
    drop(manifest);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let recommendations = table
        .map(|(path, ttl, entries)| recommendations::Recommendations::load(&path, &model_info.1, int_ids, entries, ttl))
        .transpose()?;
    let coalescer = Coalescer::new(Arc::new(model), batching.config()).map_err(|e| e.to_string())?;
    let app = Arc::new(server::App {
        coalescer,
        model: model_info,
        limits,
        metrics: Default::default(),
        recommendations,
        online,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(http_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        let sig = stop();
        if !quiet {
            eprintln!("reco-serve: {sig}, finishing open requests");
        }
        let _ = tx.send(true);
    });
    rt.block_on(async {
        let listener = server::bind(addr).await?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        println!("http://{bound}");
        let keys = app.recommendations.as_ref().map_or(0, recommendations::Recommendations::len);
        if !quiet {
            eprintln!("reco-serve: {} ({}) on http://{bound}, {keys} recommendation keys", dir.display(), app.model.0);
        }
        server::serve(Arc::clone(&app), listener, rx, Duration::from_secs(10)).await;
        Ok::<_, String>(())
    })?;
    drop(rt);
    // Scores whatever is still queued, then stops the scoring threads.
    if let Ok(app) = Arc::try_unwrap(app) {
        app.coalescer.shutdown();
    }
    if !quiet {
        eprintln!("reco-serve: stopped");
    }
    Ok(())
}

/// Blocks SIGTERM and SIGINT in this thread and every thread it starts afterwards, and
/// returns a function that waits for one of them (run it on a thread of its own).
fn block_stop_signals() -> Result<impl FnOnce() -> &'static str + Send, String> {
    // SAFETY: `set` is a valid, initialised sigset_t for every call; pthread_sigmask only
    // changes this thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err("cannot block SIGTERM".into());
        }
        set
    };
    Ok(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` and `sig` are valid for the call.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 && sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn refusal(args: &[&str]) -> String {
        Cli::try_parse_from(args).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn defaults_parse_and_zero_or_absurd_limits_are_refused_naming_the_flag() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["reco-serve", "serve", "--model", "m"]).ok().unwrap();
        assert!(matches!(cli.command, Command::Serve { max_body_bytes: 1_048_576, max_rows: 4096, .. }));
        assert!(Cli::try_parse_from(["reco-serve", "loadtest", "--model", "m", "--data", "d"]).is_ok());
        let e = refusal(&["reco-serve", "serve", "--model", "m", "--max-body-bytes", "0"]);
        assert!(e.contains("'0' for '--max-body-bytes") && e.contains("1024 to 1073741824"), "{e}");
        let e = refusal(&["reco-serve", "serve", "--model", "m", "--max-rows", "0"]);
        assert!(e.contains("'0' for '--max-rows") && e.contains("1 to 16777216"), "{e}");
        for v in ["NaN", "inf", "1e20", "0", "-1"] {
            let e = refusal(&["reco-serve", "loadtest", "--model", "m", "--data", "d", &format!("--seconds={v}")]);
            assert!(e.contains(&format!("'{v}' for '--seconds")) && e.contains("(0, 3600]"), "{e}");
        }
    }
}
