//! `reco-cli distill --recipe R | --teacher DIR [--ratio --temperature --alpha --listwise --teachers
//! --epochs]`.

use std::path::PathBuf;

use clap::Args;
use reco::pipeline::distill::{DistillJob, distill};
use reco::progress::Progress;
use reco::recipe::{DistillConfig, Recipe};
use reco::{Error, Result};

use super::Global;

#[derive(Debug, Args)]
pub struct DistillArgs {
    /// Recipe file: teacher and features from its output root.
    #[arg(long, conflicts_with = "teacher", required_unless_present = "teacher")]
    recipe: Option<PathBuf>,
    /// Teacher artifact directory (training settings come from its manifest's recipe).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Features directory (default: `features` next to the teacher).
    #[arg(long)]
    features: Option<PathBuf>,
    /// Output root (with --recipe; default artifacts/<recipe name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compression ratio in (0, 1].
    #[arg(long, allow_hyphen_values = true)]
    ratio: Option<f64>,
    /// Temperature T > 0.
    #[arg(long, allow_hyphen_values = true)]
    temperature: Option<f64>,
    /// Soft-term weight in [0, 1].
    #[arg(long, allow_hyphen_values = true)]
    alpha: Option<f64>,
    /// Listwise (ranking) term weight in [0, 100] (0: none; default: 1 when the rows come in groups).
    #[arg(long, allow_hyphen_values = true)]
    listwise: Option<f64>,
    /// Teachers whose mean logit is the soft target (1 to 16; more than 1 trains the others).
    #[arg(long)]
    teachers: Option<usize>,
    /// Student epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Skip the scratch baseline.
    #[arg(long)]
    no_scratch: bool,
    /// Continue killed student trainings from their last epoch checkpoints.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    overrides: super::Overrides,
}

pub fn exec(args: DistillArgs, g: &Global, progress: &dyn Progress) -> Result<u8> {
    let (mut recipe, teacher, root) = resolve(&args)?;
    apply_flags(&args, &mut recipe.distill)?;
    let features = match (&args.features, &args.out) {
        (Some(f), _) => f.clone(),
        // With --teacher and --out, the features stay beside the teacher.
        (None, Some(_)) if args.recipe.is_none() => teacher.parent().map(|p| p.join("features")).unwrap_or_default(),
        (None, _) => root.join("features"),
    };
    let (student, scratch) = (root.join("student"), root.join("student-scratch"));
    for dir in [&student, &scratch] {
        reco::outputs::check_output(dir, &[teacher.as_path()])?;
        reco_runtime::artifact::check_replaceable(dir)?;
    }
    let _lock = reco::outputs::OutputLock::acquire(&root)?;
    let train = recipe.distill.student_train(&recipe.train);
    // A recipe's size sweep is run's: distill trains its first size.
    let distill_cfg = recipe.distill.main();
    let recipe_json = serde_json::to_value(&recipe).map_err(|e| Error::Internal(e.to_string()))?;
    let job = DistillJob {
        teacher: &teacher,
        features: &features,
        out: &student,
        scratch_out: &scratch,
        checkpoints: &root.join("checkpoints"),
        cfg: &distill_cfg,
        train: &train,
        teacher_train: &recipe.train,
        seed: recipe.seed,
        recipe: &recipe_json,
        resume: args.resume,
    };
    let summary = distill(&job, progress)?;
    if g.json {
        super::print_json(&summary)?;
    } else {
        print_summary(&summary);
    }
    Ok(0)
}

/// The recipe, the teacher's folder and the root distill writes under: from `--recipe` (the
/// run's own layout) or from `--teacher` (the recipe saved in its manifest).
fn resolve(args: &DistillArgs) -> Result<(Recipe, PathBuf, PathBuf)> {
    match (&args.recipe, &args.teacher) {
        (Some(r), _) => {
            let recipe = super::load_recipe(r, &args.overrides)?;
            let paths = super::out_dir(&recipe, args.out.as_ref())?;
            Ok((recipe, paths.stage("teacher"), paths.out))
        }
        (None, Some(t)) => {
            let manifest = reco_runtime::artifact::open(t)?;
            let mut recipe: Recipe = serde_json::from_value(manifest.recipe.clone()).map_err(|e| {
                Error::input(format!("{}: manifest recipe is not a reco-cli recipe ({e})", t.display()))
            })?;
            args.overrides.apply(&mut recipe);
            // --out is the root of what distill writes (students, checkpoints); default: beside
            // the teacher.
            let root = args.out.clone().unwrap_or_else(|| t.parent().map(PathBuf::from).unwrap_or_default());
            Ok((recipe, t.clone(), root))
        }
        (None, None) => Err(Error::input("distill: give --recipe or --teacher")),
    }
}

/// The command-line flags over the recipe's `[distill]` section, then its checks.
fn apply_flags(args: &DistillArgs, d: &mut DistillConfig) -> Result<()> {
    if let Some(v) = args.ratio {
        // --ratio names the one size to train, over a recipe's sweep.
        d.ratio = v;
        d.ratios.clear();
    }
    if let Some(v) = args.temperature {
        d.temperature = v;
    }
    if let Some(v) = args.listwise {
        d.listwise = Some(v);
    }
    if let Some(v) = args.teachers {
        d.teachers = v;
    }
    if let Some(v) = args.alpha {
        d.alpha = v;
    }
    if let Some(v) = args.epochs {
        d.epochs = Some(v);
    }
    if args.no_scratch {
        d.scratch_baseline = false;
    }
    d.validate().map_err(|e| e.with_prefix("distill: "))
}

fn print_summary(summary: &reco::pipeline::distill::DistillSummary) {
    println!(
        "student (ratio {}, T {}, alpha {}, listwise {}): {} parameters vs teacher {}, valid AUC {:.4} -> {}",
        summary.ratio,
        summary.temperature,
        summary.alpha,
        summary.listwise,
        summary.student_parameters,
        summary.teacher_parameters,
        summary.student.best_valid_auc,
        summary.student.dir.display()
    );
    if let Some(e) = &summary.ensemble {
        println!(
            "soft targets from {} teachers (seeds {:?}): valid AUC {:.4} (the teacher alone: {:.4})",
            e.seeds.len(),
            e.seeds,
            e.ensemble_valid_auc,
            e.teacher_valid_auc
        );
    }
    if let Some(s) = &summary.scratch {
        println!("student-scratch (hard labels only): valid AUC {:.4} -> {}", s.best_valid_auc, s.dir.display());
    }
}
