//! Rows for the load generator: a feature file (Parquet) read with arrow-rs into the model's
//! input columns, and one row of them as a score request body.

use reco_runtime::artifact::spec::{FeatureSpec, Ids};
use reco_runtime::runtime::Columns;

/// The spec's columns of every row of the Parquet file `path`.
pub fn read_columns(path: &std::path::Path, spec: &FeatureSpec) -> Result<Columns, String> {
    let cols = reco_runtime::runtime::arrow_io::read_parquet(path, spec).map_err(|e| e.to_string())?;
    if cols.rows == 0 {
        return Err(format!("{}: no rows", path.display()));
    }
    Ok(cols)
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
