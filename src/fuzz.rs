//! Fuzz harnesses: what a hostile or broken input reaches through each loader, as plain
//! functions on bytes. The cargo-fuzz targets in `fuzz/` call them under libFuzzer
//! (`scripts/fuzz`), and `tests/reliability/fuzz_corpus.rs` runs them on the seed corpus and on mutations
//! of it in every `cargo test`, so the harnesses never rot and a crash found once stays fixed.
//!
//! Contract checked by every harness: the loader returns `Ok` or an [`Error::Input`]-class
//! error; it never panics, never loops, and never reports an internal error for bad input.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use reco_runtime::artifact::spec::Ids;
use reco_runtime::artifact::{MANIFEST, WEIGHTS, sha256_bytes};
use reco_runtime::error::{Error, Result};
use reco_runtime::runtime::{Columns, Model};

/// The table file formats the raw-table harness writes its bytes as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// `interactions.csv`.
    Csv,
    /// `interactions.parquet`.
    Parquet,
}

/// A scratch directory removed on drop (one per harness call; unique per process and call).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("reco-fuzz-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// For the libFuzzer targets: libfuzzer-sys aborts on every panic, even one the library
/// catches and reports as bad input ([`reco_runtime::error::catch_panic`]). This hook only prints;
/// a panic that escapes a harness still aborts (libfuzzer-sys catches it at the boundary).
pub fn keep_going_after_caught_panics() {
    std::panic::set_hook(Box::new(|info| eprintln!("panic (caught or not): {info}")));
}

/// Panics when `result` is an internal error: bad input must be reported as bad input.
fn expect_input_class<T>(result: Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(Error::Internal(msg)) => panic!("bad input reported as an internal error: {msg}"),
        Err(_) => None,
    }
}

/// Recipe parser and validator on arbitrary text.
pub fn recipe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = crate::recipe::Recipe::parse(text) {
        let _ = r.validate();
    }
}

/// Encodes an artifact as one fuzz input: `u32 LE manifest length | manifest.json | model.safetensors`.
pub fn encode_artifact(manifest: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut out = (manifest.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(manifest);
    out.extend_from_slice(weights);
    out
}

/// Splits a fuzz input made by [`encode_artifact`].
fn decode_artifact(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let rest = &data[4..];
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// The manifest with its file list rewritten to match `weights`, so that mutated manifests and
/// tensors get past the hash check to the parsers behind it. Text that is not JSON stays as is.
fn rehash(manifest: &[u8], weights: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(manifest) else { return manifest.to_vec() };
    if let Some(obj) = v.as_object_mut() {
        let entry = serde_json::json!({ "sha256": sha256_bytes(weights), "bytes": weights.len() });
        obj.insert("files".into(), serde_json::json!({ WEIGHTS: entry }));
        obj.remove("exports");
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| manifest.to_vec())
}

/// A few rows that hit every vocabulary branch (known ids, out of vocabulary) and odd numbers.
fn probe_rows(model: &Model) -> Columns {
    let spec = model.spec();
    let rows = 3;
    let categorical = spec
        .categorical
        .iter()
        .map(|c| match c.dtype() {
            reco_runtime::artifact::spec::IdType::Int64 => Ids::Int(vec![0, 1, i64::MAX]),
            reco_runtime::artifact::spec::IdType::String => {
                Ids::Str(vec![String::new(), "1".into(), "\u{fffd}".into()])
            }
        })
        .collect();
    let numeric = spec.numeric.iter().map(|_| vec![0.0, 1e30, -1.0]).collect();
    // A multi-valued column: an empty list, one id, then up to two (within max_values).
    let lists = spec.categorical.iter().map(|c| c.bag.map(|b| vec![0, 0, 1, 1 + b.max_values.min(2)])).collect();
    Columns { rows, categorical, lists: reco_runtime::runtime::lists_or_none(lists), numeric }
}

/// Artifact loader (manifest + safetensors, float or INT8) and scoring on a few rows.
pub fn artifact(data: &[u8]) {
    let Some((manifest, weights)) = decode_artifact(data) else { return };
    let Ok(dir) = Scratch::new() else { return };
    let written = std::fs::write(dir.0.join(MANIFEST), rehash(manifest, weights))
        .and_then(|()| std::fs::write(dir.0.join(WEIGHTS), weights));
    if written.is_err() {
        return;
    }
    if let Some((_, model)) = expect_input_class(Model::open(&dir.0)) {
        let _ = expect_input_class(model.logits(&probe_rows(&model)));
    }
}

/// Raw interactions table (CSV or Parquet, default schema) through the same validation
/// `prepare` runs: roles, ids, labels, timestamps.
pub fn raw_table(data: &[u8], format: TableFormat) {
    let Ok(dir) = Scratch::new() else { return };
    let name = match format {
        TableFormat::Csv => "interactions.csv",
        TableFormat::Parquet => "interactions.parquet",
    };
    if std::fs::write(dir.0.join(name), data).is_err() {
        return;
    }
    let cfg = crate::data::schema::FilesConfig::in_dir(&dir.0);
    let _ = expect_input_class(crate::data::raw::read(&cfg));
}

/// The feature spec score requests are parsed against: an int64 and a string id column and
/// two numeric columns.
fn request_spec() -> reco_runtime::artifact::spec::FeatureSpec {
    use reco_runtime::artifact::spec::{CategoricalSpec, NumericSpec, Vocabulary};
    reco_runtime::artifact::spec::FeatureSpec {
        categorical: vec![
            CategoricalSpec::new("user_id", vec![1, 2, 3]),
            CategoricalSpec::with_vocabulary("place_id", Vocabulary::Str(vec!["a".into(), "b".into()])),
        ],
        numeric: ["distance_km", "hour_sin"].map(|n| NumericSpec { name: n.into(), mean: 0.0, std: 1.0 }).to_vec(),
        label: "label".into(),
        sources: vec![],
    }
}

/// A server's score request body (`reco-serve` `POST /v1/score`): parsed against a fixed
/// spec; an accepted body must give columns the runtime accepts, every number finite and at
/// most the row limit; a refused one a one-line reason.
pub fn score_request(data: &[u8]) {
    let spec = request_spec();
    match reco_runtime::runtime::json::columns_from_json(&spec, data, 64) {
        Ok(cols) => {
            assert!(cols.check(&spec).is_ok() && (1..=64).contains(&cols.rows), "accepted an invalid request");
            assert!(cols.numeric.iter().flatten().all(|v| v.is_finite()), "accepted a non-finite number");
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "a multi-line reason: {e}"),
    }
}

/// Seed bodies for [`score_request`].
pub fn score_request_seeds() -> Vec<Vec<u8>> {
    [
        r#"{"rows":[{"user_id":1,"place_id":"a","distance_km":0.5,"hour_sin":-1}]}"#,
        r#"{"rows":[{"user_id":9,"place_id":"zz","distance_km":1e3,"hour_sin":0},{"hour_sin":1.5,"distance_km":-2,"place_id":"b","user_id":-4}]}"#,
        r#"{"rows":[{"user_id":1.0,"place_id":3,"distance_km":null}]}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
