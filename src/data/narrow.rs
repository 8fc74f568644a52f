//! Parquet columns of the types polars is built without: int8, int16, uint8, uint16 and
//! float16 (its `dtype-*` features would roughly double the numeric code it compiles).
//! Those columns are read with arrow-rs and widened before polars sees them: integers to
//! int64, float16 to float32 (both exact); every other column is read by polars as before.
//! uint64 is polars' own; a uint64 column whose values all fit is read as int64, so that
//! parts of one table stack without a float supertype.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType as ArrowType, Float32Type, Int64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use polars::prelude::*;

use reco_runtime::error::{Error, IoContext, Result, catch_panic, one_line};

/// How a column polars cannot hold is widened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Widen {
    /// int8, int16, uint8, uint16: to int64.
    Int,
    /// float16: to float32.
    Half,
}

/// One column read by arrow-rs: its index among the file's top-level columns, its name, how
/// it is widened and its type in the file (`i16`, ...).
struct NarrowColumn {
    index: usize,
    name: String,
    widen: Widen,
    file_type: &'static str,
}

/// A Parquet file (or rows of one) as polars holds it, and the columns that were widened with
/// their type in the file (for the feature spec's source types).
pub(crate) struct Read {
    pub df: DataFrame,
    pub widened: Vec<(String, String)>,
}

/// Rows `slice` (offset, rows; all when `None`) of the columns `columns` (all when `None`,
/// each present) of the Parquet file `path`, in that order.
pub(crate) fn read(path: &Path, slice: Option<(usize, usize)>, columns: Option<&[String]>) -> Result<Read> {
    let narrow: Vec<NarrowColumn> =
        narrow_columns(path)?.into_iter().filter(|c| columns.is_none_or(|w| w.contains(&c.name))).collect();
    if narrow.is_empty() {
        let df = read_polars(path, slice, columns.map(<[String]>::to_vec))?;
        return fit_u64(df, Vec::new());
    }
    let all = || -> Vec<String> { crate::data::table::parquet_footer(path).map(|f| f.1).unwrap_or_default() };
    let wanted: Vec<String> = columns.map_or_else(all, <[String]>::to_vec);
    let rest: Vec<String> = wanted.iter().filter(|n| !narrow.iter().any(|c| c.name == **n)).cloned().collect();
    let mut by_name: Vec<Column> = read_arrow(path, slice, &narrow)?;
    let height = by_name.first().map_or(0, Column::len);
    if !rest.is_empty() {
        by_name.extend(read_polars(path, slice, Some(rest))?.into_columns());
    }
    let mut out = Vec::with_capacity(wanted.len());
    for n in &wanted {
        let at = by_name.iter().position(|c| c.name().as_str() == n);
        out.push(at.map(|i| by_name.swap_remove(i)).ok_or_else(|| missing(path, n))?);
    }
    let df = DataFrame::new(height, out).map_err(|e| Error::Internal(one_line(&e.to_string())))?;
    let widened = narrow.iter().map(|c| (c.name.clone(), c.file_type.to_string())).collect();
    fit_u64(df, widened)
}

fn missing(path: &Path, name: &str) -> Error {
    Error::input(format!("{}: no column `{name}`", path.display()))
}

fn bad(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |detail| Error::input(format!("{}: not a readable Parquet file ({detail})", path.display()))
}

/// The file read by polars (the caller has checked its footer with arrow-rs).
fn read_polars(path: &Path, slice: Option<(usize, usize)>, columns: Option<Vec<String>>) -> Result<DataFrame> {
    let file = std::fs::File::open(path).at(path)?;
    catch_panic(
        || {
            ParquetReader::new(file)
                .with_columns(columns)
                .with_slice(slice)
                .finish()
                .map_err(|e| bad(path)(one_line(&e.to_string())))
        },
        |panic| bad(path)(format!("the reader failed: {panic}")),
    )
}

/// The top-level columns of `path` that polars cannot hold, from its footer.
fn narrow_columns(path: &Path) -> Result<Vec<NarrowColumn>> {
    use parquet::file::reader::FileReader;
    let f = std::fs::File::open(path).at(path)?;
    catch_panic(
        || {
            let r = parquet::file::serialized_reader::SerializedFileReader::new(f)
                .map_err(|e| bad(path)(one_line(&e.to_string())))?;
            let md = r.metadata().file_metadata();
            // A schema arrow-rs cannot map is left to polars (and its own error).
            let Ok(schema) = parquet::arrow::parquet_to_arrow_schema(md.schema_descr(), md.key_value_metadata()) else {
                return Ok(Vec::new());
            };
            let narrow = schema.fields().iter().enumerate().filter_map(|(index, f)| {
                let (widen, file_type) = match f.data_type() {
                    ArrowType::Int8 => (Widen::Int, "i8"),
                    ArrowType::Int16 => (Widen::Int, "i16"),
                    ArrowType::UInt8 => (Widen::Int, "u8"),
                    ArrowType::UInt16 => (Widen::Int, "u16"),
                    ArrowType::Float16 => (Widen::Half, "f16"),
                    _ => return None,
                };
                Some(NarrowColumn { index, name: f.name().clone(), widen, file_type })
            });
            Ok(narrow.collect())
        },
        |panic| bad(path)(format!("the reader failed: {panic}")),
    )
}

/// The columns `narrow` of rows `slice` of `path`, widened, in any order.
fn read_arrow(path: &Path, slice: Option<(usize, usize)>, narrow: &[NarrowColumn]) -> Result<Vec<Column>> {
    let file = std::fs::File::open(path).at(path)?;
    let fail = bad(path);
    catch_panic(
        || {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(e.to_string()))?;
            let mut sorted: Vec<&NarrowColumn> = narrow.iter().collect();
            sorted.sort_by_key(|c| c.index);
            let mask = ProjectionMask::roots(builder.parquet_schema(), sorted.iter().map(|c| c.index));
            let mut builder = builder.with_projection(mask);
            if let Some((offset, rows)) = slice {
                builder = builder.with_offset(offset).with_limit(rows);
            }
            let reader = builder.build().map_err(|e| fail(e.to_string()))?;
            let mut values: Vec<Values> = sorted.iter().map(|c| Values::new(c.widen)).collect();
            for batch in reader {
                let batch = batch.map_err(|e| fail(one_line(&e.to_string())))?;
                for (v, col) in values.iter_mut().zip(batch.columns()) {
                    v.extend(col.as_ref()).map_err(&fail)?;
                }
            }
            Ok(sorted.iter().zip(values).map(|(c, v)| v.into_column(&c.name)).collect())
        },
        |panic| fail(format!("the reader failed: {panic}")),
    )
}

/// The values of one widened column.
enum Values {
    Int(Vec<Option<i64>>),
    Half(Vec<Option<f32>>),
}

impl Values {
    fn new(widen: Widen) -> Self {
        match widen {
            Widen::Int => Self::Int(Vec::new()),
            Widen::Half => Self::Half(Vec::new()),
        }
    }

    /// Appends a batch's column, cast to the widened type (exact for these types).
    fn extend(&mut self, col: &dyn Array) -> std::result::Result<(), String> {
        let to = match self {
            Self::Int(_) => ArrowType::Int64,
            Self::Half(_) => ArrowType::Float32,
        };
        let cast = arrow::compute::cast(col, &to).map_err(|e| e.to_string())?;
        let wrong = || format!("column cast to {to} is not {to}");
        match self {
            Self::Int(v) => v.extend(cast.as_primitive_opt::<Int64Type>().ok_or_else(wrong)?.iter()),
            Self::Half(v) => v.extend(cast.as_primitive_opt::<Float32Type>().ok_or_else(wrong)?.iter()),
        }
        Ok(())
    }

    fn into_column(self, name: &str) -> Column {
        match self {
            Self::Int(v) => Column::new(name.into(), v),
            Self::Half(v) => Column::new(name.into(), v),
        }
    }
}

/// uint64 columns whose every value fits an int64, as int64 (recorded as widened from `u64`);
/// one that does not fit stays uint64 (its reader names the value).
fn fit_u64(mut df: DataFrame, mut widened: Vec<(String, String)>) -> Result<Read> {
    let fits: Vec<Column> = df
        .columns()
        .iter()
        .filter(|c| c.dtype() == &DataType::UInt64)
        .filter_map(|c| c.strict_cast(&DataType::Int64).ok())
        .collect();
    for c in fits {
        widened.push((c.name().to_string(), "u64".to_string()));
        df.with_column(c).map_err(|e| Error::Internal(one_line(&e.to_string())))?;
    }
    Ok(Read { df, widened })
}
