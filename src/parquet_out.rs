//! Parquet files reco-cli writes for other systems (predictions, precomputed top-K): one
//! atomic write of Arrow batches (all at once, or streamed batch by batch) with provenance in
//! the file's key-value metadata.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float32Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use reco_runtime::error::{Error, Result};

/// Writes `batches` (all of `schema`) to `path` through a temp file and a rename, zstd
/// compressed, with `metadata` as the file's key-value metadata.
pub fn write(path: &Path, schema: SchemaRef, batches: &[RecordBatch], metadata: &[(String, String)]) -> Result<()> {
    let mut rest = batches.iter();
    stream(path, schema, metadata, || Ok(rest.next().cloned())).map(drop)
}

/// zstd level 3, `metadata` as the file's key-value metadata.
fn properties(metadata: &[(String, String)]) -> Result<WriterProperties> {
    let kv = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    let zstd = ZstdLevel::try_new(3).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(WriterProperties::builder().set_compression(Compression::ZSTD(zstd)).set_key_value_metadata(Some(kv)).build())
}

/// A writer error as ours: an I/O failure names `path`.
fn writer_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => Error::io(path, *io),
            Err(other) => Error::Internal(other.to_string()),
        },
        other => Error::Internal(format!("writing {}: {other}", path.display())),
    }
}

/// Writes the batches `next` yields (`None`: done) to `path` through a temp file renamed into
/// place only when every batch succeeded: memory holds one batch and the writer's open row
/// group. Returns the rows written.
fn stream(
    path: &Path,
    schema: SchemaRef,
    metadata: &[(String, String)],
    mut next: impl FnMut() -> Result<Option<RecordBatch>>,
) -> Result<u64> {
    let props = properties(metadata)?;
    let mut rows = 0u64;
    reco_runtime::artifact::write_atomic(path, |file| {
        let mut w = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| writer_error(path, e))?;
        while let Some(b) = next()? {
            w.write(&b).map_err(|e| writer_error(path, e))?;
            rows += b.num_rows() as u64;
        }
        w.close().map(drop).map_err(|e| writer_error(path, e))
    })?;
    Ok(rows)
}

/// The columns of a predictions file: `row`, `logit`, `probability`.
fn predictions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("logit", DataType::Float32, false),
        Field::new("probability", DataType::Float32, false),
    ]))
}

/// One batch of predictions: rows `first..first + logits.len()`.
fn predictions_batch(first: u64, logits: &[f32]) -> Result<RecordBatch> {
    let rows = UInt64Array::from_iter_values(first..first + logits.len() as u64);
    let logit = Float32Array::from(logits.to_vec());
    let prob = Float32Array::from_iter_values(logits.iter().map(|&z| reco_runtime::runtime::sigmoid(z)));
    RecordBatch::try_new(predictions_schema(), vec![Arc::new(rows), Arc::new(logit), Arc::new(prob)])
        .map_err(|e| Error::Internal(e.to_string()))
}

/// Writes `row`, `logit`, `probability` for every scored row.
pub fn write_predictions(path: &Path, logits: &[f32], metadata: &[(String, String)]) -> Result<()> {
    write(path, predictions_schema(), &[predictions_batch(0, logits)?], metadata)
}

/// Writes predictions batch by batch as `next` yields their logits (`None`: done), through a
/// temp file renamed into place only when every batch succeeded: memory holds one batch and
/// the writer's open row group, however many rows there are. No rows at all is an error
/// naming `source` (and nothing is written). Returns the rows written.
pub fn stream_predictions(
    path: &Path,
    source: &Path,
    metadata: &[(String, String)],
    mut next: impl FnMut() -> Result<Option<Vec<f32>>>,
) -> Result<u64> {
    let mut first = 0u64;
    stream(path, predictions_schema(), metadata, || match next()? {
        Some(logits) => {
            let b = predictions_batch(first, &logits)?;
            first += logits.len() as u64;
            Ok(Some(b))
        }
        None if first == 0 => Err(Error::input(format!("{}: no rows to score; nothing written", source.display()))),
        None => Ok(None),
    })
}
