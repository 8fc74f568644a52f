//! `GET /v1/recommendations?segment=&lat=&lon=[&category=]`, served from a `reco-cli
//! precompute` table, with an in-process LRU (L1) of response bodies keyed like the seed's CDN
//! key (`segment × lat/lon grid cell × category`) and a time to live.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Int64Type, UInt32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A table key: segment, cell, category (`None`: every category).
pub type CacheKey = (String, (i64, i64), Option<String>);

/// A place id in the type the model takes it (`/v1/score` accepts it back as it is).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
enum PlaceId {
    /// An integer id (the model's place vocabulary holds integers).
    Int(i64),
    /// A string id.
    Text(String),
}

/// One recommended place.
#[derive(Debug, Clone, serde::Serialize)]
struct Entry {
    rank: u32,
    place_id: PlaceId,
    /// Mean visit probability over the segment's users.
    score: f32,
    distance_km: f32,
}

/// A loaded precompute table and its response cache.
pub struct Recommendations {
    keys: BTreeMap<CacheKey, Vec<Entry>>,
    segments: BTreeSet<String>,
    categories: BTreeSet<String>,
    cell_deg: f64,
    model_sha256: String,
    snapshot_ts: i64,
    cache: Mutex<lru::LruCache<CacheKey, (Instant, Vec<u8>)>>,
    ttl: Duration,
}

/// Why a lookup gave no places.
#[derive(Debug, PartialEq)]
pub enum Miss {
    /// Malformed or unknown parameters (400).
    BadRequest(String),
    /// A valid key the table does not hold (404).
    NotFound(String),
}

impl Recommendations {
    /// Reads the table at `path`; the model hash must be `model_sha256` (the model served).
    /// `int_ids`: the model's place ids are integers (the table holds every id as text).
    pub fn load(path: &Path, model_sha256: &str, int_ids: bool, entries: usize, ttl: Duration) -> Result<Self, String> {
        let at = |e: &dyn std::fmt::Display| format!("--recommendations {}: {e}", path.display());
        let file = std::fs::File::open(path).map_err(|e| at(&e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| at(&e))?;
        let kv: BTreeMap<String, String> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| kv.iter().filter_map(|e| Some((e.key.clone(), e.value.clone()?))).collect())
            .unwrap_or_default();
        let get =
            |k: &str| kv.get(k).ok_or_else(|| at(&format!("no `{k}` in the file metadata (not a precompute table)")));
        let table_model = get("reco_cli.model_content_sha256")?;
        if table_model != model_sha256 {
            return Err(at(&format!("made with model {table_model}, this server scores with {model_sha256}")));
        }
        let cell_deg: f64 = get("reco_cli.cell_deg")?.parse().map_err(|e| at(&e))?;
        let snapshot_ts: i64 = get("reco_cli.feature_snapshot_ts")?.parse().map_err(|e| at(&e))?;
        let mut keys: BTreeMap<CacheKey, Vec<Entry>> = BTreeMap::new();
        for batch in builder.build().map_err(|e| at(&e))? {
            add_batch(&mut keys, &batch.map_err(|e| at(&e))?, int_ids).map_err(|e| at(&e))?;
        }
        if keys.is_empty() {
            return Err(at(&"no rows"));
        }
        for entries in keys.values_mut() {
            entries.sort_by_key(|e| e.rank);
        }
        let segments = keys.keys().map(|k| k.0.clone()).collect();
        let categories = keys.keys().filter_map(|k| k.2.clone()).collect();
        let cap = NonZeroUsize::new(entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            keys,
            segments,
            categories,
            cell_deg,
            model_sha256: table_model.clone(),
            snapshot_ts,
            cache: Mutex::new(lru::LruCache::new(cap)),
            ttl,
        })
    }

    /// Keys in the table.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The response body for a query string; `Ok((body, cache_hit))`.
    pub fn lookup(&self, query: &str) -> Result<(Vec<u8>, bool), Miss> {
        let key = self.key(query)?;
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, body)) = cache.get(&key)
            && now.duration_since(*at) < self.ttl
        {
            return Ok((body.clone(), true));
        }
        let entries = self.keys.get(&key).ok_or_else(|| {
            Miss::NotFound(format!(
                "no precomputed recommendations for segment {} in cell ({}, {}){} (the table covers the busiest cells only)",
                key.0,
                key.1.0,
                key.1.1,
                key.2.as_ref().map_or(String::new(), |c| format!(" and category {c}"))
            ))
        })?;
        let body = serde_json::json!({
            "segment": key.0,
            "cell": [key.1.0, key.1.1],
            "category": key.2,
            "model_sha256": self.model_sha256,
            "feature_snapshot_ts": self.snapshot_ts,
            "places": entries,
        })
        .to_string()
        .into_bytes();
        cache.put(key, (now, body.clone()));
        Ok((body, false))
    }

    /// The key a query asks for: `segment`, `lat`, `lon` required, `category` optional.
    fn key(&self, query: &str) -> Result<CacheKey, Miss> {
        let bad = |m: String| Miss::BadRequest(m);
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if !matches!(k.as_ref(), "segment" | "lat" | "lon" | "category") {
                return Err(bad(format!(
                    "unknown parameter `{k}`: expected segment, lat, lon and optionally category"
                )));
            }
            if params.insert(k.to_string(), v.to_string()).is_some() {
                return Err(bad(format!("parameter `{}` given twice", k.escape_debug())));
            }
        }
        let need = |k: &str| params.get(k).ok_or_else(|| bad(format!("missing parameter `{k}`")));
        let segment = need("segment")?.clone();
        if !self.segments.contains(&segment) {
            let known: Vec<&str> = self.segments.iter().map(String::as_str).collect();
            return Err(bad(format!(
                "unknown segment `{}`: expected one of {}",
                segment.escape_debug(),
                known.join(", ")
            )));
        }
        let coord = |k: &str, limit: f64| -> Result<f64, Miss> {
            let text = need(k)?;
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && v.abs() <= limit)
                .ok_or_else(|| bad(format!("`{k}` is {text:?}, expected a number in [-{limit}, {limit}]")))
        };
        let (lat, lon) = (coord("lat", 90.0)?, coord("lon", 180.0)?);
        let category = params.get("category").cloned();
        if let Some(c) = &category
            && !self.categories.contains(c)
        {
            return Err(bad(format!(
                "unknown category `{}` (or the table was precomputed without --by-category)",
                c.escape_debug()
            )));
        }
        let cell = ((lat / self.cell_deg).floor() as i64, (lon / self.cell_deg).floor() as i64);
        Ok((segment, cell, category))
    }
}

fn add_batch(keys: &mut BTreeMap<CacheKey, Vec<Entry>>, b: &RecordBatch, int_ids: bool) -> Result<(), String> {
    let col = |name: &str| b.column_by_name(name).ok_or_else(|| format!("no column `{name}`"));
    let typed = |name: &str| format!("column `{name}` has another type than precompute writes");
    let text = |name: &str| col(name)?.as_string_opt::<i32>().ok_or_else(|| typed(name));
    let (seg, cat, pid) = (text("segment")?, text("category")?, text("place_id")?);
    let int = |name: &str| col(name)?.as_primitive_opt::<Int64Type>().ok_or_else(|| typed(name));
    let (clat, clon) = (int("cell_lat")?, int("cell_lon")?);
    let rank = col("rank")?.as_primitive_opt::<UInt32Type>().ok_or_else(|| typed("rank"))?;
    let float = |name: &str| col(name)?.as_primitive_opt::<Float32Type>().ok_or_else(|| typed(name));
    let (score, dist) = (float("score")?, float("distance_km")?);
    if [seg.null_count(), pid.null_count(), score.null_count(), rank.null_count()].iter().any(|&n| n > 0) {
        return Err("nulls in a required column".into());
    }
    for i in 0..b.num_rows() {
        let key = (
            seg.value(i).to_string(),
            (clat.value(i), clon.value(i)),
            cat.is_valid(i).then(|| cat.value(i).to_string()),
        );
        keys.entry(key).or_default().push(Entry {
            rank: rank.value(i),
            place_id: match pid.value(i) {
                t if int_ids => t.parse().map_or_else(|_| PlaceId::Text(t.to_string()), PlaceId::Int),
                t => PlaceId::Text(t.to_string()),
            },
            score: score.value(i),
            distance_km: dist.value(i),
        });
    }
    Ok(())
}
