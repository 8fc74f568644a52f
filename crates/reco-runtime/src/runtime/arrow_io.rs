//! Arrow-rs at the serving edge (feature `arrow`): the spec's input columns from an Arrow
//! `RecordBatch`, so a server holding Arrow data scores it without a row format in between;
//! with feature `parquet`, from a Parquet file, reading only those columns.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type};

use super::Columns;
use crate::artifact::spec::{FeatureSpec, IdType, Ids};
use crate::error::{Error, ErrorKind, Result};

/// Extracts the spec's input columns from a RecordBatch: categorical ids as the spec's dtype
/// says (any integer type for `int64` columns; Utf8, large Utf8 or a string dictionary for
/// `string` columns), any float or int for numeric; nulls and NaN/inf are errors naming the
/// column and row.
pub fn columns_from_batch(spec: &FeatureSpec, batch: &RecordBatch) -> Result<Columns> {
    columns_at(spec, batch, 0)
}

/// [`columns_from_batch`] for a batch whose first row is row `first` of its source (errors
/// name rows by their place in the source).
fn columns_at(spec: &FeatureSpec, batch: &RecordBatch, first: usize) -> Result<Columns> {
    let col = |name: &str| -> Result<&ArrayRef> {
        batch.column_by_name(name).ok_or_else(|| column_error(format!("missing column `{name}`")))
    };
    let (mut categorical, mut lists) = (Vec::new(), Vec::new());
    for c in &spec.categorical {
        let a = col(&c.name)?;
        // Logical nulls: a dictionary's null values count too.
        if let Some(i) = a.logical_nulls().and_then(|n| (0..n.len()).find(|&i| n.is_null(i))) {
            let what = if c.bag.is_some() { "a list of ids (empty for none)" } else { "an id" };
            return Err(column_error(format!("column `{}` row {} is null, expected {what}", c.name, first + i)));
        }
        if c.bag.is_some() {
            let (offsets, values) = list_from_array(&c.name, a)?;
            if let Some(i) = values.logical_nulls().and_then(|n| (0..n.len()).find(|&i| n.is_null(i))) {
                let row = offsets.partition_point(|&o| o <= i) - 1;
                return Err(column_error(format!("column `{}` row {} holds a null id", c.name, first + row)));
            }
            categorical.push(ids_from_array(&c.name, c.dtype(), &values)?);
            lists.push(Some(offsets));
        } else {
            categorical.push(ids_from_array(&c.name, c.dtype(), a)?);
            lists.push(None);
        }
    }
    let mut numeric = Vec::new();
    for n in &spec.numeric {
        let a = col(&n.name)?;
        if let Some(i) = a.nulls().and_then(|n| (0..n.len()).find(|&i| n.is_null(i))) {
            return Err(column_error(format!("column `{}` row {} is null, expected a number", n.name, first + i)));
        }
        let v: Vec<f32> = match a.data_type() {
            DataType::Float32 => a.as_primitive::<Float32Type>().values().to_vec(),
            // Any other float or integer width, through f64.
            t if t.is_floating() || t.is_integer() => {
                let wide = arrow::compute::cast(a, &DataType::Float64).map_err(|e| Error::Internal(e.to_string()))?;
                wide.as_primitive::<Float64Type>().values().iter().map(|&x| x as f32).collect()
            }
            other => {
                return Err(column_error(format!("column `{}` has type {other}, expected a number", n.name)));
            }
        };
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            let row = first + i;
            return Err(column_error(format!("column `{}` row {row} is {}, expected a finite number", n.name, v[i])));
        }
        numeric.push(v);
    }
    let cols = Columns { rows: batch.num_rows(), categorical, lists: super::lists_or_none(lists), numeric };
    cols.check(spec)?;
    Ok(cols)
}

/// A list column's offsets (from 0) and the values they cover (List or LargeList).
pub(crate) fn list_from_array(name: &str, a: &ArrayRef) -> Result<(Vec<usize>, ArrayRef)> {
    let (offsets, values): (Vec<usize>, ArrayRef) = match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values().clone())
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values().clone())
        }
        other => return Err(column_error(format!("column `{name}` has type {other}, expected a list of ids"))),
    };
    let (start, end) = (offsets.first().copied().unwrap_or(0), offsets.last().copied().unwrap_or(0));
    Ok((offsets.iter().map(|&o| o - start).collect(), values.slice(start, end - start)))
}

/// A bad input column or value ([`ErrorKind::InputColumn`]).
fn column_error(msg: String) -> Error {
    Error::new(ErrorKind::InputColumn, msg)
}

/// One categorical column as the spec's id type.
fn ids_from_array(name: &str, dtype: IdType, a: &ArrayRef) -> Result<Ids> {
    let wrong = || {
        let expected = match dtype {
            IdType::Int64 => "an integer",
            IdType::String => "a string (Utf8, LargeUtf8 or a string dictionary)",
        };
        column_error(format!("column `{name}` has type {}, expected {expected}", a.data_type()))
    };
    match dtype {
        IdType::Int64 => {
            if !a.data_type().is_integer() {
                return Err(wrong());
            }
            // Unsafe (erroring) cast: an id that does not fit is an error, not a null read as 0.
            let opts = arrow::compute::CastOptions { safe: false, ..Default::default() };
            let cast = arrow::compute::cast_with_options(a, &DataType::Int64, &opts).map_err(|e| {
                // Name the first value that does not fit (a safe cast leaves it null).
                let safe = arrow::compute::cast(a, &DataType::Int64).ok();
                let bad = safe.and_then(|s| (0..a.len()).find(|&i| a.is_valid(i) && s.is_null(i)));
                match bad.and_then(|i| arrow::util::display::array_value_to_string(a, i).ok().map(|v| (i, v))) {
                    Some((i, v)) => {
                        column_error(format!("column `{name}` row {i} of the batch is {v}: ids must fit in an int64"))
                    }
                    None => column_error(format!("column `{name}`: {e} (ids must fit in an int64)")),
                }
            })?;
            Ok(Ids::Int(cast.as_primitive::<Int64Type>().values().to_vec()))
        }
        IdType::String => {
            let strings = match a.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => a.clone(),
                DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8) => a.clone(),
                _ => return Err(wrong()),
            };
            let cast = arrow::compute::cast(&strings, &DataType::Utf8).map_err(|e| Error::Internal(e.to_string()))?;
            Ok(Ids::Str(cast.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect()))
        }
    }
}

/// The spec's columns of every row of the Parquet file `path` (only those columns are read;
/// errors name the file).
#[cfg(feature = "parquet")]
pub fn read_parquet(path: &std::path::Path, spec: &FeatureSpec) -> Result<Columns> {
    let mut all: Option<Columns> = None;
    for cols in parquet_batches(path, spec, 64 * 1024)? {
        let cols = cols?;
        match &mut all {
            None => all = Some(cols),
            Some(a) => a.append(&cols)?,
        }
    }
    all.ok_or_else(|| Error::input(format!("{}: no rows", path.display())))
}

/// The Arrow schema of the Parquet file `path`.
#[cfg(feature = "parquet")]
pub fn parquet_schema(path: &std::path::Path) -> Result<arrow::datatypes::SchemaRef> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
    Ok(builder.schema().clone())
}

/// The spec's columns of the Parquet file `path`, `batch_rows` rows at a time, in file order:
/// memory stays one batch (and the reader's row group buffers) whatever the file's size. Only
/// the spec's columns are read; errors name the file.
#[cfg(feature = "parquet")]
pub fn parquet_batches<'a>(
    path: &'a std::path::Path,
    spec: &'a FeatureSpec,
    batch_rows: usize,
) -> Result<impl Iterator<Item = Result<Columns>> + 'a> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let at = move |e: &dyn std::fmt::Display| Error::input(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| at(&e))?;
    let names = spec.categorical.iter().map(|c| c.name.as_str()).chain(spec.numeric.iter().map(|n| n.name.as_str()));
    let mask = ProjectionMask::columns(builder.parquet_schema(), names);
    let reader = builder.with_projection(mask).with_batch_size(batch_rows.max(1)).build().map_err(|e| at(&e))?;
    let mut first = 0;
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(|e| at(&e))?;
        let cols = columns_at(spec, &batch, first).map_err(|e| e.with_prefix(format_args!("{}: ", path.display())))?;
        first += batch.num_rows();
        Ok(cols)
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::artifact::spec::{CategoricalSpec, NumericSpec, Vocabulary};
    use arrow::array::{DictionaryArray, Float64Array, Int32Array, LargeStringArray, StringArray};
    use arrow::datatypes::Int32Type;

    fn spec() -> FeatureSpec {
        FeatureSpec {
            categorical: vec![
                CategoricalSpec::new("user_id", vec![1, 2]),
                CategoricalSpec::with_vocabulary("category", Vocabulary::Str(vec!["Bar".into(), "Café".into()])),
            ],
            numeric: vec![NumericSpec { name: "distance_km".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: vec![],
        }
    }

    fn batch(category: ArrayRef) -> RecordBatch {
        let user: ArrayRef = Arc::new(Int32Array::from(vec![2, 7, 1]));
        let dist: ArrayRef = Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5]));
        RecordBatch::try_from_iter([("user_id", user), ("category", category), ("distance_km", dist)]).unwrap()
    }

    #[test]
    fn string_ids_come_from_utf8_large_utf8_and_dictionary_columns_alike() {
        let want = Ids::Str(vec!["Café".into(), "Zoo".into(), "Bar".into()]);
        let values = ["Café", "Zoo", "Bar"];
        let dict: DictionaryArray<Int32Type> = values.iter().copied().collect();
        for a in [
            Arc::new(StringArray::from(values.to_vec())) as ArrayRef,
            Arc::new(LargeStringArray::from(values.to_vec())) as ArrayRef,
            Arc::new(dict) as ArrayRef,
        ] {
            let cols = columns_from_batch(&spec(), &batch(a)).unwrap();
            assert_eq!(cols.categorical, vec![Ids::Int(vec![2, 7, 1]), want.clone()]);
            assert_eq!(cols.numeric, vec![vec![0.5f32, 1.5, 2.5]]);
            // The spec's lookup: Café -> 2, unknown -> 0, Bar -> 1.
            assert_eq!(spec().categorical[1].rows_of(&cols.categorical[1]), vec![2, 0, 1]);
        }
    }

    #[test]
    fn an_id_column_of_the_other_type_or_with_nulls_is_an_error_naming_it() {
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let e = columns_from_batch(&spec(), &batch(ints)).unwrap_err().to_string();
        assert!(e.contains("`category`") && e.contains("expected a string"), "{e}");
        let nulls: ArrayRef = Arc::new(StringArray::from(vec![Some("Bar"), None, Some("Bar")]));
        let e = columns_from_batch(&spec(), &batch(nulls)).unwrap_err().to_string();
        assert!(e.contains("`category` row 1 is null"), "{e}");
        // A dictionary whose values hold the null.
        let values: ArrayRef = Arc::new(StringArray::from(vec![Some("Bar"), None]));
        let keys = Int32Array::from(vec![0, 1, 0]);
        let dict: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).unwrap());
        let e = columns_from_batch(&spec(), &batch(dict)).unwrap_err().to_string();
        assert!(e.contains("`category` row 1 is null"), "{e}");
        // An unsigned id past i64::MAX is an error, not id 0.
        let mut s = spec();
        s.categorical.swap(0, 1);
        s.categorical[1] = CategoricalSpec::new("user_id", vec![1]);
        let user: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![1, u64::MAX, 2]));
        let cat: ArrayRef = Arc::new(StringArray::from(vec!["Bar"; 3]));
        let dist: ArrayRef = Arc::new(Float64Array::from(vec![0.5; 3]));
        let b = RecordBatch::try_from_iter([("user_id", user), ("category", cat), ("distance_km", dist)]).unwrap();
        let e = columns_from_batch(&s, &b).unwrap_err().to_string();
        assert!(e.contains("`user_id`") && e.contains("int64"), "{e}");
    }

    #[test]
    fn a_missing_column_or_a_non_finite_number_is_an_input_column_error() {
        let user: ArrayRef = Arc::new(Int32Array::from(vec![2, 7, 1]));
        let b = RecordBatch::try_from_iter([("user_id", user)]).unwrap();
        let e = columns_from_batch(&spec(), &b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InputColumn);
        assert_eq!(e.to_string(), "missing column `category`");
        let user: ArrayRef = Arc::new(Int32Array::from(vec![2, 7]));
        let cat: ArrayRef = Arc::new(StringArray::from(vec!["Bar"; 2]));
        let dist: ArrayRef = Arc::new(Float64Array::from(vec![0.5, f64::NAN]));
        let b = RecordBatch::try_from_iter([("user_id", user), ("category", cat), ("distance_km", dist)]).unwrap();
        let e = columns_from_batch(&spec(), &b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InputColumn);
        assert_eq!(e.to_string(), "column `distance_km` row 1 is NaN, expected a finite number");
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let e = columns_from_batch(&spec(), &batch(ints)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InputColumn);
        assert_eq!(
            e.to_string(),
            "column `category` has type Int32, expected a string (Utf8, LargeUtf8 or a string dictionary)"
        );
    }

    #[cfg(feature = "parquet")]
    #[test]
    fn a_parquet_file_missing_a_column_names_the_file_and_keeps_the_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        let user: ArrayRef = Arc::new(Int32Array::from(vec![2, 7, 1]));
        let b = RecordBatch::try_from_iter([("user_id", user)]).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), b.schema(), None).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        let e = read_parquet(&path, &spec()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InputColumn);
        assert_eq!(e.to_string(), format!("{}: missing column `category`", path.display()));
    }
}
