//! Where a run keeps things: `<out>/raw`, `<out>/features`, `<out>/teacher`, ..., and how
//! paths are compared (resolved through links and `..`, whether they exist or not).

use std::path::{Component, Path, PathBuf};

use crate::recipe::Recipe;
use reco_runtime::error::Result;

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

    /// The run report (no timings, paths relative to `out`).
    pub fn report(&self) -> PathBuf {
        self.out.join("report.json")
    }

    /// Wall-clock timings of the run's stages (the one file that differs between reruns).
    pub fn timings(&self) -> PathBuf {
        self.out.join("timings.json")
    }

    /// The folders a run replaces as a whole (raw tables only for synthetic data): each must
    /// be new or hold only what reco-cli writes, checked before the first stage so a user's
    /// folder in the way is found before minutes of work, not after.
    pub fn check_replaceable(&self, synthetic: bool) -> Result<()> {
        let raw = synthetic.then(|| self.raw());
        let dirs = raw.into_iter().chain([self.features()]).chain(STAGE_DIRS.map(|s| self.stage(s)));
        dirs.into_iter().try_for_each(|d| reco_runtime::artifact::check_replaceable(&d))
    }

    /// Everything a run writes at the top of its root: no other output of the same command
    /// may be one of these or inside one.
    pub fn written(&self) -> Vec<PathBuf> {
        let names = ["raw", "features", "checkpoints", "stages", "report", "report.json", "report.md", "report.html"];
        let tops = names.into_iter().chain(["timings.json", super::lock::LOCK_FILE]).chain(STAGE_DIRS);
        tops.map(|n| self.out.join(n)).collect()
    }
}

/// The model directories a run writes.
pub const STAGE_DIRS: [&str; 5] = ["teacher", "student", "student-scratch", "teacher-int8", "student-int8"];

/// The path of `to` as seen from directory `from` (`../teacher` for a sibling), both made
/// absolute first (symlinks resolved where they exist), `/`-separated.
pub fn relative(from: &Path, to: &Path) -> String {
    let (from, to) = (resolved(from), resolved(to));
    let common = from.components().zip(to.components()).take_while(|(a, b)| a == b).count();
    let ups = from.components().count() - common;
    let mut parts: Vec<String> = vec!["..".to_string(); ups];
    parts.extend(to.components().skip(common).map(|c| c.as_os_str().to_string_lossy().into_owned()));
    if parts.is_empty() { ".".into() } else { parts.join("/") }
}

/// `p` absolute, with its longest existing ancestor canonicalized and `.`/`..` folded (it
/// need not exist).
pub(crate) fn resolved(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut existing = abs.as_path();
    let mut tail = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or_else(|_| existing.to_path_buf());
    for name in tail.iter().rev() {
        out.push(name);
    }
    let mut folded = PathBuf::new();
    for c in out.components() {
        match c {
            Component::ParentDir => {
                folded.pop();
            }
            Component::CurDir => {}
            other => folded.push(other),
        }
    }
    folded
}

/// The last component of a directory's path (`teacher`), or the whole path when it has none:
/// how a run and the reports name a model.
pub fn dir_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Whether `path` lies inside `dir` (both resolved; neither need exist).
pub fn is_inside(path: &Path, dir: &Path) -> bool {
    resolved(path).starts_with(resolved(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_siblings_and_across_trees() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("run/teacher")).unwrap();
        assert_eq!(relative(&root.join("run/teacher-int8"), &root.join("run/teacher")), "../teacher");
        assert_eq!(relative(&root.join("other/x/y"), &root.join("run/teacher")), "../../../run/teacher");
        assert_eq!(relative(&root.join("run/./teacher"), &root.join("run/teacher")), ".");
        assert_eq!(relative(&root.join("run/a/../b"), &root.join("run/teacher")), "../teacher");
    }
}
