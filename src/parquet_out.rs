//! Parquet files reco-cli writes for other systems (predictions, precomputed top-K): one
//! atomic write of Arrow batches with provenance in the file's key-value metadata.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float32Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Writes `batches` (all of `schema`) to `path` through a temp file and a rename, zstd
/// compressed, with `metadata` as the file's key-value metadata.
pub fn write(path: &Path, schema: SchemaRef, batches: &[RecordBatch], metadata: &[(String, String)]) -> Result<()> {
    let kv = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    let zstd = ZstdLevel::try_new(3).map_err(|e| Error::Internal(e.to_string()))?;
    let props =
        WriterProperties::builder().set_compression(Compression::ZSTD(zstd)).set_key_value_metadata(Some(kv)).build();
    crate::artifact::write_atomic(path, |file| {
        let fail = |e: parquet::errors::ParquetError| match e {
            parquet::errors::ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
                Ok(io) => Error::io(path, *io),
                Err(other) => Error::Internal(other.to_string()),
            },
            other => Error::Internal(format!("writing {}: {other}", path.display())),
        };
        let mut w = ArrowWriter::try_new(file, schema, Some(props)).map_err(fail)?;
        for b in batches {
            w.write(b).map_err(fail)?;
        }
        w.close().map(drop).map_err(fail)
    })
}

/// Writes `row`, `logit`, `probability` for every scored row.
pub fn write_predictions(path: &Path, logits: &[f32], metadata: &[(String, String)]) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("logit", DataType::Float32, false),
        Field::new("probability", DataType::Float32, false),
    ]));
    let rows = UInt64Array::from_iter_values(0..logits.len() as u64);
    let logit = Float32Array::from(logits.to_vec());
    let prob = Float32Array::from_iter_values(logits.iter().map(|&z| crate::runtime::sigmoid(z)));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(rows), Arc::new(logit), Arc::new(prob)])
        .map_err(|e| Error::Internal(e.to_string()))?;
    write(path, schema, &[batch], metadata)
}
