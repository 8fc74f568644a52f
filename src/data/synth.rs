//! `datasets synth`: raw place-visit tables from a generative model with a known visit
//! probability for every impression.
//!
//! # The generative model
//! - **Places** sit around `NEIGHBOURHOODS` neighbourhood centres (normal, 2 km spread) in a
//!   20 km × 20 km city. Each has a category (0..8), a price level (1..4), a rating (1..5),
//!   a latent popularity `pop ~ N(0, 0.6²)` and a taste vector `v ~ N(0, 0.5²)^4`.
//! - **Users** have a segment (0..4), a home near a neighbourhood centre and a taste vector
//!   `u = U[segment] + e` with segment tastes `U ~ N(0, 0.5²)^4` and a personal part
//!   `e ~ N(0, 0.25²)^4`.
//! - **Impressions**: on each day every user opens the app with probability 0.85 at an hour
//!   between 07:00 and 23:00, at a location 1 km (normal) around home. Up to `CANDIDATES`
//!   places within `RADIUS_KM` are shown. The visit logit of place j for user i is
//!
//!   `z = -0.9 - 0.45·d_km + A[segment, category] + a_c·cos(2π(hour - peak_c)/24)
//!        + w_c·weekend + pop_j + 0.35·(rating_j - 3.5) + u_i·v_j`
//!
//!   with `A ~ N(0, 0.7²)`, `a_c ~ U(0.4, 1.0)`, `peak_c ~ U(0, 24)`, `w_c ~ N(0, 0.3²)`.
//!   `label ~ Bernoulli(sigmoid(z))`; a visit gets a rating `rating_j + N(0, 0.7²)` clipped
//!   to [1, 5]. The true probability is written as `oracle_p`, so evaluation can report the
//!   Bayes (oracle) AUC.
//!
//! Everything is drawn from [`Rng`] streams derived from the seed: same seed, same files.

use std::path::Path;

use polars::prelude::Column;
use serde::Serialize;

use crate::data::io::{frame, write_parquet};
use crate::geo::{GridIndex, haversine_km};
use reco_runtime::error::{Error, IoContext, Result};
use reco_runtime::rng::Rng;

/// Neighbourhood centres the places and homes cluster around.
pub const NEIGHBOURHOODS: usize = 6;
/// Place categories.
pub const CATEGORIES: usize = 8;
/// User segments.
pub const SEGMENTS: usize = 4;
/// Places shown per session.
pub const CANDIDATES: usize = 6;
/// Radius of the shown places around the user, km.
pub const RADIUS_KM: f64 = 5.0;
/// Unix time of the first day (Monday 2026-01-05 00:00 UTC).
pub const START_UNIX: i64 = 1_767_571_200;
const CENTER: (f64, f64) = (52.52, 13.405);
const TASTE_DIM: usize = 4;

/// Size and seed of a synthetic data set.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SynthParams {
    /// Number of users.
    pub users: usize,
    /// Number of places.
    pub places: usize,
    /// Days of impressions.
    pub days: usize,
    /// Seed.
    pub seed: u64,
}

impl SynthParams {
    /// Sizes a generator run can hold in memory: users, places in 1..=10M, days in 7..=3650.
    pub fn validate(&self) -> Result<()> {
        const MAX: usize = 10_000_000;
        for (key, v) in [("users", self.users), ("places", self.places)] {
            if v == 0 || v > MAX {
                return Err(Error::input(format!("synth {key} = {v}: expected 1 to {MAX}")));
            }
        }
        if !(7..=3650).contains(&self.days) {
            return Err(Error::input(format!("synth days = {}: expected 7 to 3650", self.days)));
        }
        Ok(())
    }
}

/// Row counts of what was written.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SynthSummary {
    /// Users written.
    pub users: usize,
    /// Places written.
    pub places: usize,
    /// Impressions written.
    pub interactions: usize,
    /// Fraction of impressions that were visits.
    pub positive_rate: f64,
}

fn offset_km(rng: &mut Rng, (lat, lon): (f64, f64), sd_km: f64) -> (f64, f64) {
    let km_per_deg = 111.195;
    (lat + rng.normal() * sd_km / km_per_deg, lon + rng.normal() * sd_km / (km_per_deg * lat.to_radians().cos()))
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The tables `generate` writes.
pub const TABLES: [&str; 3] = ["users.parquet", "places.parquet", "interactions.parquet"];

/// sha256 of each table in `dir`, by file name: `synth.json` records them, and a run reuses
/// the tables only while they still hold these bytes.
pub fn table_hashes(dir: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    TABLES.iter().map(|t| Ok((t.to_string(), reco_runtime::artifact::sha256_file(&dir.join(t))?))).collect()
}

/// Generates the three tables into `out` (`users.parquet`, `places.parquet`,
/// `interactions.parquet`) plus `synth.json` with the parameters.
pub fn generate(params: SynthParams, out: &Path, progress: &dyn crate::progress::Progress) -> Result<SynthSummary> {
    params.validate()?;
    std::fs::create_dir_all(out).at(out)?;
    // synth.json vouches for the tables: it goes first and comes back last, so a generation
    // killed half-way never leaves new tables under old parameters.
    let meta_path = out.join("synth.json");
    if meta_path.exists() {
        std::fs::remove_file(&meta_path).at(&meta_path)?;
    }
    let mut rng = Rng::derive(params.seed, "synth");

    let hoods: Vec<(f64, f64)> = (0..NEIGHBOURHOODS)
        .map(|_| {
            let (la, lo) = CENTER;
            (la + (rng.uniform() - 0.5) * 0.14, lo + (rng.uniform() - 0.5) * 0.22)
        })
        .collect();
    let affinity: Vec<f64> = (0..SEGMENTS * CATEGORIES).map(|_| 0.7 * rng.normal()).collect();
    let amp: Vec<f64> = (0..CATEGORIES).map(|_| 0.4 + 0.6 * rng.uniform()).collect();
    let peak: Vec<f64> = (0..CATEGORIES).map(|_| 24.0 * rng.uniform()).collect();
    let weekend: Vec<f64> = (0..CATEGORIES).map(|_| 0.3 * rng.normal()).collect();
    let seg_taste: Vec<f64> = (0..SEGMENTS * TASTE_DIM).map(|_| 0.5 * rng.normal()).collect();

    // Places.
    let np = params.places;
    let mut p_lat = Vec::with_capacity(np);
    let mut p_lon = Vec::with_capacity(np);
    let mut p_cat = Vec::with_capacity(np);
    let mut p_price = Vec::with_capacity(np);
    let mut p_rating = Vec::with_capacity(np);
    let mut p_pop = Vec::with_capacity(np);
    let mut p_taste = Vec::with_capacity(np * TASTE_DIM);
    for _ in 0..np {
        let hood = hoods[rng.below(NEIGHBOURHOODS)];
        let (la, lo) = offset_km(&mut rng, hood, 2.0);
        p_lat.push(la);
        p_lon.push(lo);
        p_cat.push(rng.below(CATEGORIES) as i64);
        p_price.push(1 + rng.below(4) as i64);
        p_rating.push(((3.6 + 0.6 * rng.normal()).clamp(1.0, 5.0) * 10.0).round() / 10.0);
        p_pop.push(0.6 * rng.normal());
        p_taste.extend((0..TASTE_DIM).map(|_| 0.5 * rng.normal()));
    }
    // Users.
    let nu = params.users;
    let mut u_seg = Vec::with_capacity(nu);
    let mut u_lat = Vec::with_capacity(nu);
    let mut u_lon = Vec::with_capacity(nu);
    let mut u_taste = Vec::with_capacity(nu * TASTE_DIM);
    for _ in 0..nu {
        let seg = rng.below(SEGMENTS);
        u_seg.push(seg as i64);
        let hood = hoods[rng.below(NEIGHBOURHOODS)];
        let (la, lo) = offset_km(&mut rng, hood, 2.0);
        u_lat.push(la);
        u_lon.push(lo);
        u_taste.extend((0..TASTE_DIM).map(|k| seg_taste[seg * TASTE_DIM + k] + 0.25 * rng.normal()));
    }

    // Impressions.
    let index = GridIndex::new(&p_lat, &p_lon, RADIUS_KM);
    let mut i_user = Vec::new();
    let mut i_place = Vec::new();
    let mut i_ts = Vec::new();
    let mut i_lat = Vec::new();
    let mut i_lon = Vec::new();
    let mut i_label = Vec::new();
    let mut i_rating: Vec<Option<f64>> = Vec::new();
    let mut i_oracle = Vec::new();
    progress.begin("synth: impressions, day by day", params.days as u64);
    for day in 0..params.days {
        progress.advance(1);
        let dow = day % 7;
        let is_weekend = if dow >= 5 { 1.0 } else { 0.0 };
        for u in 0..nu {
            if rng.uniform() >= 0.85 {
                continue;
            }
            let hour = 7.0 + 16.0 * rng.uniform();
            let ts = START_UNIX + (day as i64) * 86_400 + (hour * 3600.0) as i64;
            let (la, lo) = offset_km(&mut rng, (u_lat[u], u_lon[u]), 1.0);
            let mut cands = index.within(la, lo, RADIUS_KM);
            rng.shuffle(&mut cands);
            cands.truncate(CANDIDATES);
            for &j in &cands {
                let j = j as usize;
                let c = p_cat[j] as usize;
                let d = haversine_km(la, lo, p_lat[j], p_lon[j]);
                let taste: f64 = (0..TASTE_DIM).map(|k| u_taste[u * TASTE_DIM + k] * p_taste[j * TASTE_DIM + k]).sum();
                let z = -0.9 - 0.45 * d
                    + affinity[(u_seg[u] as usize) * CATEGORIES + c]
                    + amp[c] * (std::f64::consts::TAU * (hour - peak[c]) / 24.0).cos()
                    + weekend[c] * is_weekend
                    + p_pop[j]
                    + 0.35 * (p_rating[j] - 3.5)
                    + taste;
                let p = sigmoid(z);
                let y = i64::from(rng.uniform() < p);
                i_user.push(u as i64 + 1);
                i_place.push(j as i64 + 1);
                i_ts.push(ts);
                i_lat.push(la);
                i_lon.push(lo);
                i_label.push(y);
                i_rating.push(
                    (y == 1).then(|| (((p_rating[j] + 0.7 * rng.normal()).clamp(1.0, 5.0)) * 10.0).round() / 10.0),
                );
                i_oracle.push(p);
            }
        }
    }

    progress.end();
    let n_inter = i_user.len();
    let positives = i_label.iter().sum::<i64>() as f64;
    let mut users = frame(
        nu,
        vec![
            Column::new("user_id".into(), (1..=nu as i64).collect::<Vec<_>>()),
            Column::new("segment".into(), u_seg),
            Column::new("home_lat".into(), u_lat),
            Column::new("home_lon".into(), u_lon),
        ],
    )?;
    let mut places = frame(
        np,
        vec![
            Column::new("place_id".into(), (1..=np as i64).collect::<Vec<_>>()),
            Column::new("lat".into(), p_lat),
            Column::new("lon".into(), p_lon),
            Column::new("category".into(), p_cat),
            Column::new("price_level".into(), p_price),
            Column::new("rating".into(), p_rating),
        ],
    )?;
    let mut inter = frame(
        n_inter,
        vec![
            Column::new("user_id".into(), i_user),
            Column::new("place_id".into(), i_place),
            Column::new("timestamp".into(), i_ts),
            Column::new("lat".into(), i_lat),
            Column::new("lon".into(), i_lon),
            Column::new("label".into(), i_label),
            Column::new("rating".into(), i_rating),
            Column::new("oracle_p".into(), i_oracle),
        ],
    )?;
    write_parquet(&mut users, &out.join("users.parquet"))?;
    write_parquet(&mut places, &out.join("places.parquet"))?;
    write_parquet(&mut inter, &out.join("interactions.parquet"))?;
    let summary = SynthSummary {
        users: nu,
        places: np,
        interactions: n_inter,
        positive_rate: if n_inter == 0 { 0.0 } else { positives / n_inter as f64 },
    };
    let tables = table_hashes(out)?;
    let meta = serde_json::json!({ "generator": "reco-cli datasets synth", "params": params, "summary": summary, "tables": tables });
    let path = out.join("synth.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&meta).map_err(|e| crate::Error::Internal(e.to_string()))?)
        .at(&path)?;
    Ok(summary)
}
