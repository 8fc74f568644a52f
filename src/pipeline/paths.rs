//! Where a run keeps things: `<out>/raw`, `<out>/features`, `<out>/teacher`, ...

use std::path::{Path, PathBuf};

use crate::recipe::Recipe;

/// The directory layout of one run.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// Root of everything the run writes.
    pub out: PathBuf,
}

impl RunPaths {
    /// `out`, or `artifacts/<recipe name>` when not given.
    pub fn new(recipe: &Recipe, out: Option<&Path>) -> Self {
        let out = out.map_or_else(|| Path::new("artifacts").join(&recipe.name), Path::to_path_buf);
        Self { out }
    }

    /// Synthetic raw tables (when the recipe's data source is `synth`).
    pub fn raw(&self) -> PathBuf {
        self.out.join("raw")
    }

    /// Feature files and the feature spec.
    pub fn features(&self) -> PathBuf {
        self.out.join("features")
    }

    /// A stage's artifact directory (`teacher`, `student`, ...).
    pub fn stage(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// Per-epoch checkpoints of a stage (outside the artifact).
    pub fn checkpoints(&self, name: &str) -> PathBuf {
        self.out.join("checkpoints").join(name)
    }

    /// The run report.
    pub fn report(&self) -> PathBuf {
        self.out.join("report.json")
    }
}
