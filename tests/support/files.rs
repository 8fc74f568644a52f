//! Reading and writing the files the binary reads and writes: Parquet batches and parts, logits,
//! metadata and id columns; JSON (manifests, feature specs); text edits of recipes and tables.

use std::collections::BTreeMap;
use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use reco::data::table::Table;

/// Writes `batch` to `path` as Parquet (parent folders created).
pub fn write_parquet_batch(path: &Path, batch: &arrow::array::RecordBatch) {
    write_parquet_groups(path, batch, 1 << 20);
}

/// Writes `batch` to `path` as Parquet with row groups of `group_rows` rows.
pub fn write_parquet_groups(path: &Path, batch: &arrow::array::RecordBatch, group_rows: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props =
        parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(group_rows)).build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// Every row of a Parquet file as one batch.
pub fn read_batch(path: &Path) -> arrow::array::RecordBatch {
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// Writes `all` as two hive-partitioned parts, `day=1/a.parquet` (rows before `first`) and
/// `day=2/b.parquet`, with row groups of `group_rows` rows.
pub fn write_parts(all: &arrow::array::RecordBatch, parts: &Path, first: usize, group_rows: usize) {
    write_parquet_groups(&parts.join("day=1/a.parquet"), &all.slice(0, first), group_rows);
    write_parquet_groups(&parts.join("day=2/b.parquet"), &all.slice(first, all.num_rows() - first), group_rows);
}

/// `all` with column `name` (Float32) replaced by `f` of its values.
pub fn with_f32_column(
    all: &arrow::array::RecordBatch,
    name: &str,
    f: impl FnOnce(&mut Vec<f32>),
) -> arrow::array::RecordBatch {
    let mut cols = all.columns().to_vec();
    let at = all.schema().index_of(name).unwrap();
    let mut d: Vec<f32> = cols[at].as_any().downcast_ref::<arrow::array::Float32Array>().unwrap().values().to_vec();
    f(&mut d);
    cols[at] = std::sync::Arc::new(arrow::array::Float32Array::from(d));
    arrow::array::RecordBatch::try_new(all.schema(), cols).unwrap()
}

pub fn read_logits(path: &Path) -> Vec<f32> {
    let file = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
        let batch = batch.unwrap();
        let l = batch.column_by_name("logit").unwrap().as_any().downcast_ref::<arrow::array::Float32Array>().unwrap();
        out.extend(l.values().iter().copied());
    }
    out
}

pub fn manifest_json(dir: &Path) -> serde_json::Value {
    read_json(&dir.join("manifest.json"))
}

/// A JSON file (report, manifest, feature spec) as a value.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes a value back over a JSON file (tests that corrupt one field).
pub fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
}

/// Replaces line `n` (0-based, the header is 0) of a file by `f(line)`.
pub fn edit_line(path: &Path, n: usize, f: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text.lines().enumerate().map(|(i, l)| if i == n { f(l) } else { l.to_string() }).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A numeric column of a Parquet or CSV file as f64 (the feature files are zstd-compressed,
/// which the test's own parquet reader does not build).
pub fn parquet_f64(path: &Path, column: &str) -> Vec<f64> {
    reco::data::table::Table::file(path).unwrap().floats(column, false).unwrap()
}

/// The `reco_cli.*` key-value metadata of a Parquet file (the footer only: no page is decoded).
pub fn parquet_metadata(path: &Path) -> BTreeMap<String, String> {
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = b.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    kv.into_iter().filter_map(|e| Some((e.key, e.value?))).collect()
}

/// The text of each row of an id column (integers in decimal, missing text as "").
pub fn texts(t: &Table, column: &str) -> Vec<String> {
    match t.categories(column).unwrap() {
        reco_runtime::artifact::spec::Ids::Int(v) => v.iter().map(i64::to_string).collect(),
        reco_runtime::artifact::spec::Ids::Str(v) => v,
    }
}
