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
//!        + w_c·weekend + pop_j + 0.35·(rating_j - 3.5) + u_i·v_j + h_i·ln(1 + D_ij(t))`
//!
//!   with `A ~ N(0, 0.7²)`, `a_c ~ U(0.4, 1.0)`, `peak_c ~ U(0, 24)`, `w_c ~ N(0, 0.3²)`.
//!   `label ~ Bernoulli(sigmoid(z))`; a visit gets a rating `rating_j + N(0, 0.7²)` clipped
//!   to [1, 5]. The true probability is written as `oracle_p`, so evaluation can report the
//!   Bayes (oracle) AUC.
//! - **Habits**: `D_ij(t)` is user i's earlier visits to place j, each weighted
//!   `exp(-age / HABIT_DAYS days)` (visits of the same session never count for each other);
//!   `h_i = max(0, H[segment] + N(0, 0.2²))` is the user's habit strength, around its segment's
//!   `H ~ U(0.5, 2.0)` (habitual and exploring kinds of users). In a session, with the user's
//!   revisit propensity `r_i ~ U(0.1, 0.7)`, one shown place is one of the user's earlier
//!   visits (drawn in proportion to their number) when it lies within `RADIUS_KM`. A third of
//!   the quickstart's visits (`repeat_visit_share` in `synth.json`: 0.33) go to a place the user
//!   had visited before, more with more days per user.
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
/// Decay of a past visit's weight in the habit term, days.
const HABIT_DAYS: f64 = 14.0;

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
    /// Fraction of visits to a place the user had visited before.
    pub repeat_visit_share: f64,
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
    let world = World::draw(&mut rng);
    let places = Places::draw(&mut rng, &world, params.places);
    let users = Users::draw(&mut rng, &world, params.users);
    let index = GridIndex::new(&places.lat, &places.lon, RADIUS_KM);
    let mut shown = Impressions::default();
    let mut habits = Habits::new(params.users);
    progress.begin("synth: impressions, day by day", params.days as u64);
    for day in 0..params.days {
        progress.advance(1);
        for u in 0..params.users {
            if rng.uniform() < 0.85 {
                shown.session(&mut rng, (&world, &places, &users), (&index, &mut habits), u, day);
            }
        }
    }
    progress.end();
    let n_inter = shown.user.len();
    let positives = shown.label.iter().sum::<i64>() as f64;
    write_parquet(&mut users.frame()?, &out.join("users.parquet"))?;
    write_parquet(&mut places.frame()?, &out.join("places.parquet"))?;
    write_parquet(&mut shown.frame()?, &out.join("interactions.parquet"))?;
    let summary = SynthSummary {
        users: params.users,
        places: params.places,
        interactions: n_inter,
        positive_rate: if n_inter == 0 { 0.0 } else { positives / n_inter as f64 },
        repeat_visit_share: if positives == 0.0 { 0.0 } else { habits.repeats as f64 / positives },
    };
    let tables = table_hashes(out)?;
    let meta = serde_json::json!({ "generator": "reco-cli datasets synth", "params": params, "summary": summary, "tables": tables });
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).map_err(|e| crate::Error::Internal(e.to_string()))?)
        .at(&meta_path)?;
    Ok(summary)
}

/// The city-wide draws: neighbourhood centres, segment × category affinity, each category's
/// daily cycle (amplitude, peak hour) and weekend shift, and the segments' tastes.
struct World {
    hoods: Vec<(f64, f64)>,
    affinity: Vec<f64>,
    amp: Vec<f64>,
    peak: Vec<f64>,
    weekend: Vec<f64>,
    seg_taste: Vec<f64>,
    /// Each segment's habit strength.
    seg_habit: Vec<f64>,
}

impl World {
    fn draw(rng: &mut Rng) -> Self {
        let hoods = (0..NEIGHBOURHOODS)
            .map(|_| {
                let (la, lo) = CENTER;
                (la + (rng.uniform() - 0.5) * 0.14, lo + (rng.uniform() - 0.5) * 0.22)
            })
            .collect();
        let affinity = (0..SEGMENTS * CATEGORIES).map(|_| 0.7 * rng.normal()).collect();
        let amp = (0..CATEGORIES).map(|_| 0.4 + 0.6 * rng.uniform()).collect();
        let peak = (0..CATEGORIES).map(|_| 24.0 * rng.uniform()).collect();
        let weekend = (0..CATEGORIES).map(|_| 0.3 * rng.normal()).collect();
        let seg_taste = (0..SEGMENTS * TASTE_DIM).map(|_| 0.5 * rng.normal()).collect();
        let seg_habit = (0..SEGMENTS).map(|_| 0.5 + 1.5 * rng.uniform()).collect();
        World { hoods, affinity, amp, peak, weekend, seg_taste, seg_habit }
    }
}

/// The places, one entry per place in each column (`taste` holds `TASTE_DIM` per place).
#[derive(Default)]
struct Places {
    lat: Vec<f64>,
    lon: Vec<f64>,
    cat: Vec<i64>,
    price: Vec<i64>,
    rating: Vec<f64>,
    pop: Vec<f64>,
    taste: Vec<f64>,
}

impl Places {
    fn draw(rng: &mut Rng, world: &World, n: usize) -> Self {
        let mut p = Places::default();
        for _ in 0..n {
            let hood = world.hoods[rng.below(NEIGHBOURHOODS)];
            let (la, lo) = offset_km(rng, hood, 2.0);
            p.lat.push(la);
            p.lon.push(lo);
            p.cat.push(rng.below(CATEGORIES) as i64);
            p.price.push(1 + rng.below(4) as i64);
            p.rating.push(((3.6 + 0.6 * rng.normal()).clamp(1.0, 5.0) * 10.0).round() / 10.0);
            p.pop.push(0.6 * rng.normal());
            p.taste.extend((0..TASTE_DIM).map(|_| 0.5 * rng.normal()));
        }
        p
    }

    fn frame(self) -> Result<polars::prelude::DataFrame> {
        let n = self.lat.len();
        frame(
            n,
            vec![
                Column::new("place_id".into(), (1..=n as i64).collect::<Vec<_>>()),
                Column::new("lat".into(), self.lat),
                Column::new("lon".into(), self.lon),
                Column::new("category".into(), self.cat),
                Column::new("price_level".into(), self.price),
                Column::new("rating".into(), self.rating),
            ],
        )
    }
}

/// The users: segment, home and taste (`TASTE_DIM` per user).
#[derive(Default)]
struct Users {
    seg: Vec<i64>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    taste: Vec<f64>,
    /// Habit strength `h_i`.
    habit: Vec<f64>,
    /// Revisit propensity `r_i`.
    revisit: Vec<f64>,
}

impl Users {
    fn draw(rng: &mut Rng, world: &World, n: usize) -> Self {
        let mut u = Users::default();
        for _ in 0..n {
            let seg = rng.below(SEGMENTS);
            u.seg.push(seg as i64);
            let hood = world.hoods[rng.below(NEIGHBOURHOODS)];
            let (la, lo) = offset_km(rng, hood, 2.0);
            u.lat.push(la);
            u.lon.push(lo);
            u.taste.extend((0..TASTE_DIM).map(|k| world.seg_taste[seg * TASTE_DIM + k] + 0.25 * rng.normal()));
            u.habit.push((world.seg_habit[seg] + 0.2 * rng.normal()).max(0.0));
            u.revisit.push(0.1 + 0.6 * rng.uniform());
        }
        u
    }

    fn frame(self) -> Result<polars::prelude::DataFrame> {
        let n = self.seg.len();
        frame(
            n,
            vec![
                Column::new("user_id".into(), (1..=n as i64).collect::<Vec<_>>()),
                Column::new("segment".into(), self.seg),
                Column::new("home_lat".into(), self.lat),
                Column::new("home_lon".into(), self.lon),
            ],
        )
    }
}

/// Every user's earlier visits: each visit's place (in order, for revisit draws) and, per
/// place, the decayed visit weight `D` as of a moment.
struct Habits {
    visits: Vec<Vec<usize>>,
    weight: Vec<std::collections::BTreeMap<usize, (f64, i64)>>,
    /// Visits to a place the user had visited before.
    repeats: usize,
}

impl Habits {
    fn new(users: usize) -> Self {
        Self { visits: vec![Vec::new(); users], weight: vec![Default::default(); users], repeats: 0 }
    }

    /// `D_uj` at `ts`: earlier visits weighted by `exp(-age / HABIT_DAYS)`.
    fn weight(&self, u: usize, j: usize, ts: i64) -> f64 {
        self.weight[u].get(&j).map_or(0.0, |&(d, at)| d * (-((ts - at) as f64) / (HABIT_DAYS * 86_400.0)).exp())
    }

    /// Records user `u`'s visits of one session at `ts`.
    fn record(&mut self, u: usize, places: &[usize], ts: i64) {
        for &j in places {
            let d = self.weight(u, j, ts);
            self.repeats += usize::from(self.weight[u].contains_key(&j));
            self.weight[u].insert(j, (d + 1.0, ts));
            self.visits[u].push(j);
        }
    }

    /// With the user's revisit propensity, one of the user's earlier visits (in proportion
    /// to their number) in place of the first candidate, when it lies within the radius and
    /// is not shown already.
    fn revisit(&self, rng: &mut Rng, u: usize, p: f64, cands: &mut [u32], near: impl Fn(usize) -> bool) {
        let past = &self.visits[u];
        if past.is_empty() || rng.uniform() >= p {
            return;
        }
        let j = past[rng.below(past.len())];
        if near(j)
            && !cands.contains(&(j as u32))
            && let Some(first) = cands.first_mut()
        {
            *first = j as u32;
        }
    }
}

/// The impressions shown so far, one entry per shown place.
#[derive(Default)]
struct Impressions {
    user: Vec<i64>,
    place: Vec<i64>,
    ts: Vec<i64>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    label: Vec<i64>,
    rating: Vec<Option<f64>>,
    oracle: Vec<f64>,
}

impl Impressions {
    /// One session of user `u` on `day`: an hour, a location near home, up to `CANDIDATES`
    /// places within `RADIUS_KM`, each visited with its model probability.
    fn session(
        &mut self,
        rng: &mut Rng,
        (world, places, users): (&World, &Places, &Users),
        (index, habits): (&GridIndex, &mut Habits),
        u: usize,
        day: usize,
    ) {
        let is_weekend = if day % 7 >= 5 { 1.0 } else { 0.0 };
        let hour = 7.0 + 16.0 * rng.uniform();
        let ts = START_UNIX + (day as i64) * 86_400 + (hour * 3600.0) as i64;
        let (la, lo) = offset_km(rng, (users.lat[u], users.lon[u]), 1.0);
        let mut cands = index.within(la, lo, RADIUS_KM);
        rng.shuffle(&mut cands);
        cands.truncate(CANDIDATES);
        let near = |j: usize| haversine_km(la, lo, places.lat[j], places.lon[j]) <= RADIUS_KM;
        habits.revisit(rng, u, users.revisit[u], &mut cands, near);
        let mut visited = Vec::new();
        for &j in &cands {
            let j = j as usize;
            let c = places.cat[j] as usize;
            let d = haversine_km(la, lo, places.lat[j], places.lon[j]);
            let taste: f64 =
                (0..TASTE_DIM).map(|k| users.taste[u * TASTE_DIM + k] * places.taste[j * TASTE_DIM + k]).sum();
            let z = -0.9 - 0.45 * d
                + world.affinity[(users.seg[u] as usize) * CATEGORIES + c]
                + world.amp[c] * (std::f64::consts::TAU * (hour - world.peak[c]) / 24.0).cos()
                + world.weekend[c] * is_weekend
                + places.pop[j]
                + 0.35 * (places.rating[j] - 3.5)
                + taste
                + users.habit[u] * habits.weight(u, j, ts).ln_1p();
            let p = sigmoid(z);
            let y = i64::from(rng.uniform() < p);
            if y == 1 {
                visited.push(j);
            }
            self.user.push(u as i64 + 1);
            self.place.push(j as i64 + 1);
            self.ts.push(ts);
            self.lat.push(la);
            self.lon.push(lo);
            self.label.push(y);
            self.rating.push(
                (y == 1).then(|| (((places.rating[j] + 0.7 * rng.normal()).clamp(1.0, 5.0)) * 10.0).round() / 10.0),
            );
            self.oracle.push(p);
        }
        habits.record(u, &visited, ts);
    }

    fn frame(self) -> Result<polars::prelude::DataFrame> {
        frame(
            self.user.len(),
            vec![
                Column::new("user_id".into(), self.user),
                Column::new("place_id".into(), self.place),
                Column::new("timestamp".into(), self.ts),
                Column::new("lat".into(), self.lat),
                Column::new("lon".into(), self.lon),
                Column::new("label".into(), self.label),
                Column::new("rating".into(), self.rating),
                Column::new("oracle_p".into(), self.oracle),
            ],
        )
    }
}
