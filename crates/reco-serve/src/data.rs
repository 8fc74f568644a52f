//! Rows for the load generator: a feature file (Parquet) read with arrow-rs into the model's
//! input columns, and one row of them as a score request body.

use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use reco_runtime::artifact::spec::{FeatureSpec, Ids};
use reco_runtime::runtime::Columns;
use reco_runtime::runtime::arrow_io::columns_from_batch;

/// The spec's columns of every row of the Parquet file `path`.
pub fn read_columns(path: &Path, spec: &FeatureSpec) -> Result<Columns, String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| at(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| at(&e))?;
    let mut all: Option<Columns> = None;
    for batch in reader {
        let cols = columns_from_batch(spec, &batch.map_err(|e| at(&e))?).map_err(|e| at(&e))?;
        match &mut all {
            None => all = Some(cols),
            Some(a) => a.append(&cols).map_err(|e| at(&e))?,
        }
    }
    all.filter(|c| c.rows > 0).ok_or_else(|| format!("{}: no rows", path.display()))
}

/// Row `i` of `cols` as the body of a one-row score request.
pub fn row_json(spec: &FeatureSpec, cols: &Columns, i: usize) -> Vec<u8> {
    let mut row = serde_json::Map::new();
    for (c, ids) in spec.categorical.iter().zip(&cols.categorical) {
        let v = match ids {
            Ids::Int(v) => serde_json::Value::from(v[i]),
            Ids::Str(v) => serde_json::Value::from(v[i].clone()),
        };
        row.insert(c.name.clone(), v);
    }
    for (n, values) in spec.numeric.iter().zip(&cols.numeric) {
        row.insert(n.name.clone(), serde_json::Value::from(values[i]));
    }
    serde_json::json!({ "rows": [row] }).to_string().into_bytes()
}
