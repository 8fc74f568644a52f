//! What a run reports: its stages, the evaluation, the gates and what to ship
//! (`<out>/report.json`, read back by the report).

use serde::Serialize;

use super::gates::{Dominated, GateReport};
use super::reuse::StageReport;
use crate::pipeline::eval::EvalReport;

/// The run report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunReport {
    /// Recipe name.
    pub recipe: String,
    /// Output root.
    pub out: String,
    /// Stages in order.
    pub stages: Vec<StageReport>,
    /// Test-split evaluation of every model built.
    pub eval: EvalReport,
    /// Gates checked.
    pub gates: Vec<GateReport>,
    /// True when every gate passed.
    pub passed: bool,
    /// The artifact to ship: the smallest deliverable whose own and ancestors' gates all hold
    /// (`null`: none does).
    pub recommended: Option<String>,
    /// Deliverables that a smaller or equal, gate-passing one beats on AUC and NDCG@10.
    pub dominated: Vec<Dominated>,
    /// The human-readable reports.
    pub reports: ReportPaths,
    /// Total wall time, seconds (a file that holds no timings lacks it).
    #[serde(default)]
    pub seconds: f64,
}

/// Where the human-readable reports are, relative to the output root.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReportPaths {
    /// Markdown (its charts under `report/`).
    pub markdown: String,
    /// Self-contained HTML.
    pub html: String,
}
