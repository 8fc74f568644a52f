//! JSON rows → [`Columns`]: the body of a server's score request, `{"rows": [{column: value,
//! ...}, ...]}` with exactly the feature spec's raw columns. Every refusal is one line naming
//! the row and column and what was expected (a server's 400 reason).

use serde_json::Value;

use super::Columns;
use crate::artifact::spec::{FeatureSpec, IdType, Ids};

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BodyError {
    /// The body does not describe rows: not JSON, no `rows` array, a row that is not an object.
    #[error("{0}")]
    Invalid(String),
    /// A row's column does not fit the feature spec: missing, unknown, of the wrong type, or
    /// not a finite number (the JSON counterpart of [`ErrorKind::InputColumn`]).
    ///
    /// [`ErrorKind::InputColumn`]: crate::error::ErrorKind::InputColumn
    #[error("{0}")]
    Column(String),
    /// More rows than allowed in one request.
    #[error("the request has {rows} rows, at most {max} are allowed")]
    TooManyRows {
        /// Rows sent.
        rows: usize,
        /// The limit.
        max: usize,
    },
}

fn invalid(msg: String) -> BodyError {
    BodyError::Invalid(msg)
}

/// Parses a score request body against `spec`, at most `max_rows` rows.
pub fn columns_from_json(spec: &FeatureSpec, body: &[u8], max_rows: usize) -> Result<Columns, BodyError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(top) = v else {
        return Err(invalid("the body must be a JSON object {\"rows\": [...]}".into()));
    };
    if let Some(k) = top.keys().find(|k| *k != "rows") {
        return Err(invalid(format!("unknown field `{}`: the body holds only `rows`", k.escape_debug())));
    }
    let rows = match top.get("rows") {
        Some(Value::Array(rows)) => rows,
        Some(_) => return Err(invalid("`rows` must be an array of objects".into())),
        None => return Err(invalid("missing field `rows`".into())),
    };
    if rows.is_empty() {
        return Err(invalid("`rows` is empty: send at least one row".into()));
    }
    if rows.len() > max_rows {
        return Err(BodyError::TooManyRows { rows: rows.len(), max: max_rows });
    }
    let mut cols = Columns {
        rows: rows.len(),
        categorical: spec
            .categorical
            .iter()
            .map(|c| match c.dtype() {
                IdType::Int64 => Ids::Int(Vec::with_capacity(rows.len())),
                IdType::String => Ids::Str(Vec::with_capacity(rows.len())),
            })
            .collect(),
        lists: spec.categorical.iter().map(|c| c.bag.map(|_| vec![0])).collect(),
        numeric: vec![Vec::with_capacity(rows.len()); spec.numeric.len()],
    };
    for (i, row) in rows.iter().enumerate() {
        push_row(spec, &mut cols, i, row)?;
    }
    Ok(cols)
}

/// Appends row `i` to `cols`.
fn push_row(spec: &FeatureSpec, cols: &mut Columns, i: usize, row: &Value) -> Result<(), BodyError> {
    let Value::Object(row) = row else {
        return Err(invalid(format!("row {i}: expected an object of column values")));
    };
    let known = |k: &str| spec.categorical.iter().any(|c| c.name == k) || spec.numeric.iter().any(|n| n.name == k);
    if let Some(k) = row.keys().find(|k| !known(k)) {
        return Err(BodyError::Column(format!("row {i}: unknown column `{}`", k.escape_debug())));
    }
    let get = |name: &str| row.get(name).ok_or_else(|| BodyError::Column(format!("row {i}: missing column `{name}`")));
    for (j, (c, dst)) in spec.categorical.iter().zip(&mut cols.categorical).enumerate() {
        let v = get(&c.name)?;
        if let (Some(bag), Some(Some(offsets))) = (c.bag, cols.lists.get_mut(j)) {
            let Value::Array(items) = v else {
                return Err(BodyError::Column(format!(
                    "row {i}: column `{}` is {}, expected an array of {} ids",
                    c.name,
                    kind(v),
                    c.dtype()
                )));
            };
            if items.len() > bag.max_values {
                return Err(BodyError::Column(format!(
                    "row {i}: column `{}` holds {} ids, at most {} (max_values) are allowed",
                    c.name,
                    items.len(),
                    bag.max_values
                )));
            }
            for item in items {
                push_id(dst, item, i, &c.name)?;
            }
            offsets.push(dst.len());
            continue;
        }
        push_id(dst, v, i, &c.name)?;
    }
    for (n, dst) in spec.numeric.iter().zip(&mut cols.numeric) {
        let v = get(&n.name)?;
        let x = v.as_f64().filter(|x| x.is_finite() && x.abs() <= f64::from(f32::MAX)).ok_or_else(|| {
            BodyError::Column(format!(
                "row {i}: column `{}` is {}, expected a finite number within float32's range (|x| <= 3.4e38)",
                n.name,
                kind(v)
            ))
        })?;
        dst.push(x as f32);
    }
    Ok(())
}

/// Appends one id of column `name` (row `i`) to `dst`, as its id type says.
fn push_id(dst: &mut Ids, v: &Value, i: usize, name: &str) -> Result<(), BodyError> {
    match (dst, v) {
        (Ids::Int(d), Value::Number(n)) if n.as_i64().is_some() => d.extend(n.as_i64()),
        (Ids::Str(d), Value::String(s)) => d.push(s.clone()),
        (Ids::Int(_), other) => {
            return Err(BodyError::Column(format!(
                "row {i}: column `{name}` is {}, expected an integer id",
                kind(other)
            )));
        }
        (Ids::Str(_), other) => {
            return Err(BodyError::Column(format!(
                "row {i}: column `{name}` is {}, expected a string id",
                kind(other)
            )));
        }
    }
    Ok(())
}

/// A JSON value described for an error message (with the value when short).
fn kind(v: &Value) -> String {
    if v.is_null() {
        return "null".into();
    }
    let text = v.to_string();
    let shown = if text.len() <= 40 { format!(" {text}") } else { String::new() };
    let what = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "the number",
        Value::String(_) => "the string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("{what}{shown}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::spec::{CategoricalSpec, NumericSpec, Vocabulary};

    fn spec() -> FeatureSpec {
        FeatureSpec {
            categorical: vec![
                CategoricalSpec::new("user_id", vec![1, 2]),
                CategoricalSpec::with_vocabulary("place_id", Vocabulary::Str(vec!["a".into()])),
            ],
            numeric: vec![NumericSpec { name: "distance_km".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: vec![],
        }
    }

    fn parse(body: &str) -> Result<Columns, BodyError> {
        columns_from_json(&spec(), body.as_bytes(), 3)
    }

    #[test]
    fn rows_become_columns_in_row_order() {
        let c = parse(
            r#"{"rows":[{"user_id":2,"place_id":"a","distance_km":1.5},
                                  {"distance_km":-3,"place_id":"zz","user_id":-7}]}"#,
        )
        .unwrap();
        assert_eq!(c.rows, 2);
        assert_eq!(c.categorical, vec![Ids::Int(vec![2, -7]), Ids::Str(vec!["a".into(), "zz".into()])]);
        assert_eq!(c.numeric, vec![vec![1.5f32, -3.0]]);
    }

    #[test]
    fn every_refusal_names_the_row_column_and_expectation() {
        let row =
            |u: &str, p: &str, d: &str| format!(r#"{{"rows":[{{"user_id":{u},"place_id":{p},"distance_km":{d}}}]}}"#);
        for (body, want) in [
            ("{", "not valid JSON".to_string()),
            ("[1]", "must be a JSON object".into()),
            (r#"{"rows":[],"x":1}"#, "unknown field `x`".into()),
            (r#"{"rows":[]}"#, "`rows` is empty".into()),
            (r#"{"rows":{}}"#, "must be an array".into()),
            (r#"{}"#, "missing field `rows`".into()),
            (r#"{"rows":[5]}"#, "row 0: expected an object".into()),
            (&row("1.5", "\"a\"", "1"), "row 0: column `user_id` is the number 1.5, expected an integer id".into()),
            (&row("\"1\"", "\"a\"", "1"), "column `user_id` is the string \"1\", expected an integer id".into()),
            (&row("1", "3", "1"), "column `place_id` is the number 3, expected a string id".into()),
            (&row("1", "\"a\"", "null"), "column `distance_km` is null, expected a finite number".into()),
            (&row("1", "\"a\"", "1e300"), "expected a finite number".into()),
            (r#"{"rows":[{"user_id":1,"place_id":"a"}]}"#, "row 0: missing column `distance_km`".into()),
            (
                r#"{"rows":[{"user_id":1,"place_id":"a","distance_km":1,"label":1}]}"#,
                "row 0: unknown column `label`".into(),
            ),
            // Found by fuzzing: a name holding a newline is shown escaped, on one line.
            (r#"{"rows":[{"a\nb":1}]}"#, "row 0: unknown column `a\\nb`".into()),
        ] {
            let err = parse(body).unwrap_err();
            let e = err.to_string();
            assert!(e.contains(&want), "{body}: {e}");
            assert_eq!(matches!(err, BodyError::Column(_)), e.contains("column `"), "{body}: {err:?}");
            assert!(!e.contains('\n'), "{e}");
        }
        let four = format!(r#"{{"rows":[{}]}}"#, [r#"{"user_id":1,"place_id":"a","distance_km":1}"#; 4].join(","));
        assert_eq!(parse(&four).unwrap_err(), BodyError::TooManyRows { rows: 4, max: 3 });
    }

    #[test]
    fn a_multi_valued_column_takes_an_array_of_ids_per_row() {
        use crate::artifact::spec::{Bag, Pooling};
        let mut spec = spec();
        spec.categorical[1] = CategoricalSpec::with_vocabulary("place_id", Vocabulary::Str(vec!["a".into()]))
            .with_bag(Bag { max_values: 2, pooling: Pooling::Mean });
        let parse = |body: &str| columns_from_json(&spec, body.as_bytes(), 3);
        let c = parse(
            r#"{"rows":[{"user_id":1,"place_id":["a","b"],"distance_km":0},
                        {"user_id":2,"place_id":[],"distance_km":1}]}"#,
        )
        .unwrap();
        assert_eq!(c.categorical[1], Ids::Str(vec!["a".into(), "b".into()]));
        assert_eq!(c.lists, vec![None, Some(vec![0, 2, 2])]);
        c.check(&spec).unwrap();
        let row = |p: &str| format!(r#"{{"rows":[{{"user_id":1,"place_id":{p},"distance_km":0}}]}}"#);
        for (p, want) in [
            ("\"a\"", "row 0: column `place_id` is the string \"a\", expected an array of string ids"),
            ("[\"a\",\"b\",\"c\"]", "row 0: column `place_id` holds 3 ids, at most 2 (max_values) are allowed"),
            ("[\"a\",3]", "row 0: column `place_id` is the number 3, expected a string id"),
            ("null", "row 0: column `place_id` is null, expected an array of string ids"),
        ] {
            assert_eq!(parse(&row(p)).unwrap_err().to_string(), want);
        }
    }
}
