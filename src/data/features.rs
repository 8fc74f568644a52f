//! Feature files: the Parquet tables `prepare` writes and `train`, `eval`, `predict` read.
//!
//! A feature file holds the raw (unencoded) model inputs named in the feature spec, the label,
//! and optionally `oracle_p` (synthetic data: the true probability) and `query_id` (ranking
//! sets: one positive plus sampled candidates per query).

use std::path::Path;

use crate::data::schema::TableConfig;
use crate::data::table::Table;
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::error::{Error, Result};
use reco_runtime::runtime::Columns;

pub use crate::data::builtin::{DISTANCE, LABEL, PLACE_VISITS, POPULARITY};

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
    /// The columns the baselines score by, when the file has them.
    pub baselines: Baselines,
}

/// A feature file's f32 column, read as f64, back in f32 (exactly).
fn f32s(v: Vec<f64>) -> Vec<f32> {
    v.into_iter().map(|x| x as f32).collect()
}

/// Feature columns the baselines rank by (read whether or not the model uses them).
#[derive(Debug, Clone, Default)]
pub struct Baselines {
    /// `place_visits_w`: visits in the trailing window (popularity).
    pub popularity: Option<Vec<f32>>,
    /// `distance_km`: distance from the context location (nearest first).
    pub distance: Option<Vec<f32>>,
    /// `user_place_visits`: the user's past visits to the place (history).
    pub history: Option<Vec<f32>>,
}

impl FeatureFrame {
    /// Reads the columns named by `spec` (plus label, `oracle_p`, `query_id` when present).
    pub fn read(path: &Path, spec: &FeatureSpec, need_label: bool) -> Result<Self> {
        // String ids stay text in a CSV even when they look like numbers (`0012345`).
        let text_columns = spec
            .categorical
            .iter()
            .filter(|c| c.dtype() == reco_runtime::artifact::spec::IdType::String)
            .map(|c| c.name.clone())
            .collect();
        let cfg = TableConfig { path: Some(path.to_path_buf()), text_columns, ..TableConfig::default() };
        Self::from_table(&Table::read(path, &cfg)?, path, spec, need_label)
    }

    /// The feature columns of a table read from `path` (errors name the file and row).
    pub fn from_table(t: &Table, path: &Path, spec: &FeatureSpec, need_label: bool) -> Result<Self> {
        let (mut categorical, mut lists) = (Vec::new(), Vec::new());
        for c in &spec.categorical {
            if c.bag.is_some() {
                let l = t.id_lists(&c.name, None)?;
                categorical.push(l.ids);
                lists.push(Some(l.offsets));
            } else {
                categorical.push(t.ids(&c.name)?);
                lists.push(None);
            }
        }
        let numeric = spec
            .numeric
            .iter()
            .map(|n| t.floats(&n.name, false).map(|v| v.into_iter().map(|x| x as f32).collect()))
            .collect::<Result<Vec<Vec<f32>>>>()?;
        let label = if t.has(&spec.label) || need_label {
            let y = t.floats(&spec.label, false)?;
            if let Some(i) = y.iter().position(|&v| v != 0.0 && v != 1.0) {
                return Err(Error::input(format!("{} is {}, expected 0 or 1", t.at(&spec.label, i), y[i])));
            }
            Some(y.into_iter().map(|v| v as f32).collect())
        } else {
            None
        };
        let oracle = if t.has("oracle_p") { Some(f32s(t.floats("oracle_p", false)?)) } else { None };
        let query_id = if t.has("query_id") { Some(t.ints("query_id")?) } else { None };
        let baselines = Baselines {
            popularity: if t.has(POPULARITY) { Some(f32s(t.floats(POPULARITY, false)?)) } else { None },
            distance: if t.has(DISTANCE) { Some(f32s(t.floats(DISTANCE, false)?)) } else { None },
            history: if t.has(PLACE_VISITS) { Some(f32s(t.floats(PLACE_VISITS, false)?)) } else { None },
        };
        let columns =
            Columns { rows: t.height(), categorical, lists: reco_runtime::runtime::lists_or_none(lists), numeric };
        // The runtime's own check (id types against the spec), naming the file.
        columns.check(spec).map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
        Ok(Self { columns, label, oracle, query_id, baselines })
    }

    /// Everything but the model inputs (which come back empty, with the row count).
    pub fn clone_rest(&self) -> Self {
        Self {
            columns: Columns { rows: self.columns.rows, ..Columns::default() },
            label: self.label.clone(),
            oracle: self.oracle.clone(),
            query_id: self.query_id.clone(),
            baselines: self.baselines.clone(),
        }
    }

    /// Room for `rows` more rows in every column but the model inputs.
    pub fn reserve_rest(&mut self, rows: usize) {
        let b = &mut self.baselines;
        let floats = [&mut self.label, &mut self.oracle, &mut b.popularity, &mut b.distance, &mut b.history];
        for v in floats.into_iter().flatten() {
            v.reserve_exact(rows);
        }
        if let Some(q) = self.query_id.as_mut() {
            q.reserve_exact(rows);
        }
    }

    /// Appends the rows of `other` (both without model inputs) to this frame: a column present
    /// in only one of them is dropped.
    pub fn append_rest(&mut self, other: Self) {
        fn join<T>(a: &mut Option<Vec<T>>, b: Option<Vec<T>>) {
            match (a.as_mut(), b) {
                (Some(a), Some(b)) => a.extend(b),
                _ => *a = None,
            }
        }
        self.columns.rows += other.columns.rows;
        join(&mut self.label, other.label);
        join(&mut self.oracle, other.oracle);
        join(&mut self.query_id, other.query_id);
        join(&mut self.baselines.popularity, other.baselines.popularity);
        join(&mut self.baselines.distance, other.baselines.distance);
        join(&mut self.baselines.history, other.baselines.history);
    }

    /// The labels, or an error naming the file when it has none.
    pub fn labels(&self, path: &Path) -> Result<&[f32]> {
        self.label.as_deref().ok_or_else(|| Error::input(format!("{}: no label column", path.display())))
    }
}
