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
    for (k, (c, ids)) in spec.categorical.iter().zip(&cols.categorical).enumerate() {
        let id = |j: usize| match ids {
            Ids::Int(v) => serde_json::Value::from(v[j]),
            Ids::Str(v) => serde_json::Value::from(v[j].clone()),
        };
        // A multi-valued column: the row's list as an array.
        let v = match cols.list(k) {
            Some(o) => serde_json::Value::Array((o[i]..o[i + 1]).map(id).collect()),
            None => id(i),
        };
        row.insert(c.name.clone(), v);
    }
    for (n, values) in spec.numeric.iter().zip(&cols.numeric) {
        row.insert(n.name.clone(), serde_json::Value::from(values[i]));
    }
    serde_json::json!({ "rows": [row] }).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_runtime::artifact::spec::{Bag, CategoricalSpec, Pooling, Vocabulary};

    #[test]
    fn a_multi_valued_column_goes_out_as_each_rows_array() {
        let bag = Bag { max_values: 3, pooling: Pooling::Mean };
        let spec = FeatureSpec {
            categorical: vec![
                CategoricalSpec::new("user_id", vec![1, 2]),
                CategoricalSpec::with_vocabulary("tags", Vocabulary::Str(vec!["a".into(), "b".into()])).with_bag(bag),
            ],
            numeric: vec![],
            label: "label".into(),
            sources: vec![],
        };
        let cols = Columns {
            rows: 3,
            categorical: vec![Ids::Int(vec![1, 2, 1]), Ids::Str(vec!["a".into(), "b".into(), "a".into()])],
            lists: vec![None, Some(vec![0, 0, 2, 3])],
            numeric: vec![],
        };
        let row = |i| serde_json::from_slice::<serde_json::Value>(&row_json(&spec, &cols, i)).unwrap();
        assert_eq!(row(0), serde_json::json!({"rows": [{"user_id": 1, "tags": []}]}));
        assert_eq!(row(1), serde_json::json!({"rows": [{"user_id": 2, "tags": ["a", "b"]}]}));
        assert_eq!(row(2), serde_json::json!({"rows": [{"user_id": 1, "tags": ["a"]}]}));
    }
}
