//! `reco-cli train --recipe R [--out DIR]`: `<out>/features` -> `<out>/teacher`.

use std::path::PathBuf;

use clap::Args;
use reco::Result;
use reco::pipeline::train::{TrainJob, train};
use reco::progress::Progress;

use super::Global;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Recipe file (TOML).
    #[arg(long)]
    recipe: PathBuf,
    /// Output root (default artifacts/<recipe name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override train.epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override train.batch_size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override train.learning_rate.
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Continue a killed training from its last epoch checkpoint (same final weights as an
    /// uninterrupted run with the same seed).
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    overrides: super::Overrides,
}

pub fn exec(args: TrainArgs, g: &Global, progress: &dyn Progress) -> Result<u8> {
    let TrainArgs { recipe, out, epochs, batch_size, learning_rate, resume, overrides } = args;
    let mut recipe = super::load_recipe(&recipe, &overrides)?;
    if let Some(e) = epochs {
        recipe.train.epochs = Some(e);
    }
    if let Some(b) = batch_size {
        recipe.train.batch_size = Some(b);
    }
    if let Some(lr) = learning_rate {
        recipe.train.learning_rate = lr;
    }
    recipe.validate().map_err(|e| e.with_prefix("train: "))?;
    let paths = super::out_dir(&recipe, out.as_ref())?;
    let _lock = reco::outputs::OutputLock::acquire(&paths.out)?;
    reco_runtime::artifact::check_replaceable(&paths.stage("teacher"))?;
    let recipe_json = serde_json::to_value(&recipe).map_err(|e| reco::Error::Internal(e.to_string()))?;
    let job = TrainJob {
        features: &paths.features(),
        out: &paths.stage("teacher"),
        checkpoints: &paths.checkpoints("teacher"),
        resume,
        cfg: &recipe.train,
        seed: recipe.seed,
        recipe: recipe_json,
    };
    let summary = train(&job, progress)?;
    if g.json {
        super::print_json(&summary)?;
    } else {
        println!(
            "teacher: best epoch {}/{}  valid AUC {:.4}  {:.0} rows/s ({})  -> {}",
            summary.best_epoch,
            summary.epochs_run,
            summary.best_valid_auc,
            summary.rows_per_s,
            summary.backend,
            summary.dir.display()
        );
    }
    Ok(0)
}
