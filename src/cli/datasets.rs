//! `reco-cli datasets synth | import`: write the synthetic raw tables, or convert a public
//! data set's files into raw tables.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reco::Result;
use reco::data::synth::{self, SynthParams};
use reco::progress::Progress;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Synthetic users, places and impressions with known visit probabilities.
    Synth(SynthArgs),
    /// Convert a public data set's files into raw tables (Parquet).
    Import(ImportArgs),
}

/// The data sets `import` knows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Dataset {
    /// MovieLens-100k (GroupLens' u.* files or RecBole's atomic files) + a zip code table.
    #[value(name = "movielens-100k")]
    Movielens100k,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Which data set.
    dataset: Dataset,
    /// Directory with the data set's files.
    #[arg(long)]
    from: PathBuf,
    /// Zip code -> latitude/longitude CSV (default: <from>/zipcodes.csv).
    #[arg(long)]
    zipcodes: Option<PathBuf>,
    /// Output directory (users.parquet, places.parquet, interactions.parquet).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory (users.parquet, places.parquet, interactions.parquet, synth.json).
    #[arg(long)]
    out: PathBuf,
    /// Number of users.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Number of places.
    #[arg(long, default_value_t = 300)]
    places: usize,
    /// Days of impressions.
    #[arg(long, default_value_t = 28)]
    days: usize,
    #[command(flatten)]
    seed: super::SeedOnly,
}

pub fn exec(cmd: DatasetsCommand, g: &Global, progress: &dyn Progress) -> Result<u8> {
    match cmd {
        DatasetsCommand::Synth(SynthArgs { out, users, places, days, seed }) => {
            let params = SynthParams { users, places, days, seed: seed.seed.unwrap_or(42) };
            params.validate().map_err(|e| reco::Error::input(format!("datasets {e} (--users, --places, --days)")))?;
            reco::outputs::check_root("--out", &out, &[])?;
            reco_runtime::artifact::check_replaceable(&out)?;
            let _lock = reco::outputs::OutputLock::acquire_parent(&out)?;
            let summary = synth::generate(params, &out, progress)?;
            if g.json {
                super::print_json(&summary)?;
            } else {
                progress.log(&format!("wrote {}", out.display()));
                println!(
                    "users {}  places {}  interactions {}  positive rate {:.3}  repeat visits {:.3}",
                    summary.users,
                    summary.places,
                    summary.interactions,
                    summary.positive_rate,
                    summary.repeat_visit_share
                );
            }
            Ok(0)
        }
        DatasetsCommand::Import(ImportArgs { dataset: Dataset::Movielens100k, from, zipcodes, out }) => {
            let zips = zipcodes.unwrap_or_else(|| from.join("zipcodes.csv"));
            // The importer reads named files of --from: the tables may go in a folder inside it
            // (scripts/fetch-movielens.sh writes `<from>/tables`), never onto one of them.
            let files: Vec<PathBuf> = std::fs::read_dir(&from)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
                .unwrap_or_default();
            let reads: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).chain([zips.as_path()]).collect();
            reco::outputs::check_root("--out", &out, &reads)?;
            reco_runtime::artifact::check_replaceable(&out)?;
            let _lock = reco::outputs::OutputLock::acquire_parent(&out)?;
            let summary = reco::data::movielens::import(&from, &zips, &out)?;
            if g.json {
                super::print_json(&summary)?;
            } else {
                progress.log(&format!("wrote {}", out.display()));
                println!(
                    "users {} ({} with a home location)  movies {}  ratings {}",
                    summary.users, summary.users_with_home, summary.places, summary.interactions
                );
            }
            Ok(0)
        }
    }
}
