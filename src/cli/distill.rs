//! `reco-cli distill --recipe R | --teacher DIR [--ratio --temperature --alpha --epochs]`.

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
    let DistillArgs {
        recipe,
        teacher,
        features,
        out,
        ratio,
        temperature,
        alpha,
        epochs,
        no_scratch,
        resume,
        overrides,
    } = args;
    let teacher_given = recipe.is_none();
    let (mut recipe, teacher, root) = match (recipe, teacher) {
        (Some(r), _) => {
            let recipe = super::load_recipe(&r, &overrides)?;
            let paths = super::out_dir(&recipe, out.as_ref())?;
            (recipe, paths.stage("teacher"), paths.out)
        }
        (None, Some(t)) => {
            let manifest = reco_runtime::artifact::open(&t)?;
            let mut recipe: Recipe = serde_json::from_value(manifest.recipe.clone()).map_err(|e| {
                Error::input(format!("{}: manifest recipe is not a reco-cli recipe ({e})", t.display()))
            })?;
            overrides.apply(&mut recipe);
            // --out is the root of what distill writes (students, checkpoints); default: beside
            // the teacher.
            let root = out.clone().unwrap_or_else(|| t.parent().map(PathBuf::from).unwrap_or_default());
            (recipe, t, root)
        }
        (None, None) => return Err(Error::input("distill: give --recipe or --teacher")),
    };
    let d: &mut DistillConfig = &mut recipe.distill;
    if let Some(v) = ratio {
        d.ratio = v;
    }
    if let Some(v) = temperature {
        d.temperature = v;
    }
    if let Some(v) = alpha {
        d.alpha = v;
    }
    if let Some(v) = epochs {
        d.epochs = Some(v);
    }
    if no_scratch {
        d.scratch_baseline = false;
    }
    d.validate().map_err(|e| e.with_prefix("distill: "))?;
    let features = match (features, &out) {
        (Some(f), _) => f,
        // With --teacher and --out, the features stay beside the teacher.
        (None, Some(_)) if teacher_given => teacher.parent().map(|p| p.join("features")).unwrap_or_default(),
        (None, _) => root.join("features"),
    };
    let (student, scratch) = (root.join("student"), root.join("student-scratch"));
    for dir in [&student, &scratch] {
        reco::outputs::check_output(dir, &[teacher.as_path()])?;
        reco_runtime::artifact::check_replaceable(dir)?;
    }
    let _lock = reco::outputs::OutputLock::acquire(&root)?;
    let train = recipe.distill.student_train(&recipe.train);
    let recipe_json = serde_json::to_value(&recipe).map_err(|e| Error::Internal(e.to_string()))?;
    let job = DistillJob {
        teacher: &teacher,
        features: &features,
        out: &student,
        scratch_out: &scratch,
        checkpoints: &root.join("checkpoints"),
        cfg: &recipe.distill,
        train: &train,
        seed: recipe.seed,
        recipe: recipe_json,
        resume,
    };
    let summary = distill(&job, progress)?;
    if g.json {
        super::print_json(&summary)?;
    } else {
        println!(
            "student (ratio {}, T {}, alpha {}): {} parameters vs teacher {}, valid AUC {:.4} -> {}",
            summary.ratio,
            summary.temperature,
            summary.alpha,
            summary.student_parameters,
            summary.teacher_parameters,
            summary.student.best_valid_auc,
            summary.student.dir.display()
        );
        if let Some(s) = &summary.scratch {
            println!("student-scratch (hard labels only): valid AUC {:.4} -> {}", s.best_valid_auc, s.dir.display());
        }
    }
    Ok(0)
}
