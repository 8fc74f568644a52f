//! `reco-cli prepare --recipe R [--out DIR]`: raw tables -> `<out>/features`.

use std::path::PathBuf;

use clap::Args;
use reco::Result;
use reco::pipeline::prepare::prepare;
use reco::pipeline::run::ensure_raw;
use reco::progress::Progress;

use super::Global;

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Recipe file (TOML).
    #[arg(long)]
    recipe: PathBuf,
    /// Output root (default artifacts/<recipe name>).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    seed: super::SeedOnly,
}

pub fn exec(args: PrepareArgs, g: &Global, progress: &dyn Progress) -> Result<u8> {
    let PrepareArgs { recipe, out, seed } = args;
    let recipe = super::load_recipe(&recipe, &seed.into())?;
    let paths = super::out_dir(&recipe, out.as_ref())?;
    let _lock = reco::outputs::OutputLock::acquire(&paths.out)?;
    let synthetic = matches!(recipe.data, reco::recipe::DataConfig::Synth(_));
    for dir in synthetic.then(|| paths.raw()).into_iter().chain([paths.features()]) {
        reco_runtime::artifact::check_replaceable(&dir)?;
    }
    let (raw, _) = ensure_raw(&recipe, &paths, reco::pipeline::run::reuse::Mode::Auto, progress)?;
    let summary = prepare(&raw, &paths.features(), &recipe.prepare, recipe.seed, progress)?;
    if g.json {
        super::print_json(&summary)?;
    } else {
        for (name, rows) in &summary.rows {
            println!("{name:<12} {rows:>9} rows");
        }
        println!("features in {}", summary.dir.display());
    }
    Ok(0)
}
