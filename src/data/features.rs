//! Feature files: the Parquet tables `prepare` writes and `train`, `eval`, `predict` read.
//!
//! A feature file holds the raw (unencoded) model inputs named in the feature spec, the label,
//! and optionally `oracle_p` (synthetic data: the true probability) and `query_id` (ranking
//! sets: one positive plus sampled candidates per query).

use std::path::Path;

use crate::artifact::spec::FeatureSpec;
use crate::data::io::{float_column, has_column, int_column, read_table};
use crate::error::{Error, Result};
use crate::runtime::Columns;

/// Categorical feature columns `prepare` produces, in model order.
pub const CATEGORICAL: [&str; 4] = ["user_id", "place_id", "segment", "category"];
/// Numeric feature columns `prepare` produces, in model order.
pub const NUMERIC: [&str; 11] = [
    "distance_km",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "place_visits_w",
    "place_impressions_w",
    "place_visit_rate_w",
    "place_rating_w",
    "place_rating",
    "price_level",
];
/// The label column.
pub const LABEL: &str = "label";

/// A feature file in memory.
#[derive(Debug, Clone)]
pub struct FeatureFrame {
    /// Model inputs in spec order.
    pub columns: Columns,
    /// 0/1 labels (absent in files meant only for scoring).
    pub label: Option<Vec<f32>>,
    /// True visit probability (synthetic data only).
    pub oracle: Option<Vec<f32>>,
    /// Ranking query of each row (ranking sets only).
    pub query_id: Option<Vec<i64>>,
}

impl FeatureFrame {
    /// Reads the columns named by `spec` (plus label, `oracle_p`, `query_id` when present).
    pub fn read(path: &Path, spec: &FeatureSpec, need_label: bool) -> Result<Self> {
        let df = read_table(path)?;
        let categorical =
            spec.categorical.iter().map(|c| int_column(&df, path, &c.name)).collect::<Result<Vec<_>>>()?;
        let numeric = spec
            .numeric
            .iter()
            .map(|n| float_column(&df, path, &n.name, false).map(|v| v.into_iter().map(|x| x as f32).collect()))
            .collect::<Result<Vec<Vec<f32>>>>()?;
        let label = if has_column(&df, &spec.label) || need_label {
            let y = float_column(&df, path, &spec.label, false)?;
            if let Some(i) = y.iter().position(|&v| v != 0.0 && v != 1.0) {
                return Err(Error::input(format!(
                    "{}: column `{}` row {i} is {}, expected 0 or 1",
                    path.display(),
                    spec.label,
                    y[i]
                )));
            }
            Some(y.into_iter().map(|v| v as f32).collect())
        } else {
            None
        };
        let oracle = if has_column(&df, "oracle_p") {
            Some(float_column(&df, path, "oracle_p", false)?.into_iter().map(|v| v as f32).collect())
        } else {
            None
        };
        let query_id = if has_column(&df, "query_id") { Some(int_column(&df, path, "query_id")?) } else { None };
        Ok(Self { columns: Columns { rows: df.height(), categorical, numeric }, label, oracle, query_id })
    }

    /// The labels, or an error naming the file when it has none.
    pub fn labels(&self, path: &Path) -> Result<&[f32]> {
        self.label.as_deref().ok_or_else(|| Error::input(format!("{}: no label column", path.display())))
    }
}
