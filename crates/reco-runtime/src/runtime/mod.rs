//! The inference runtime serving systems link: load and verify an artifact, turn raw feature
//! rows into model inputs exactly as the manifest's feature spec says, and score them.
//!
//! No burn and no polars: dense layers run on our float kernels ([`kernels::float`]: weights
//! packed at load, bias and ReLU fused, a block of rows through every layer while it is in
//! cache), preprocessing is plain loops over columns. Scoring borrows its input
//! ([`ColumnsRef`]: no copies per chunk) and runs on the calling thread, or on exactly as many
//! threads as [`Model::logits_threads`] is given. Arrow `RecordBatch` input is in
//! [`arrow_io`] (feature `arrow`); request coalescing in [`coalesce`].
//!
//! One concept per file, every public item re-exported here (`runtime::{Model, Columns, ...}`):
//! [`columns`] (raw input columns and their check against a spec), [`encode`](mod@encode)
//! (the spec's encoding and the MLP input), [`model`] (float or INT8 [`Model`]), [`float`]
//! (the float driver), [`chunks`](mod@chunks) (chunked and threaded scoring), [`int8`] (the
//! INT8 driver), [`json`] (request bodies).
//!
//! [`kernels::float`]: crate::kernels::float

#[cfg(feature = "arrow")]
pub mod arrow_io;
pub mod chunks;
pub mod coalesce;
pub mod columns;
pub mod encode;
pub mod float;
pub mod int8;
pub mod json;
pub mod model;

pub use chunks::{CHUNK, chunks, score_in_chunks};
pub use columns::{Columns, ColumnsRef, lists_or_none, take_lists};
pub use encode::{EmbeddingRows, Encoded, TfliteInputs, dot_f32, encode, input_matrix, tflite_inputs};
pub(crate) use float::run_layers;
pub use float::{FloatModel, dense_forward, mlp, pack};
pub use model::{Model, Precision, sigmoid};
