//! `prepare`: raw tables -> leakage-free feature files (DESIGN §3).
//!
//! 1. Read and validate `users`, `places`, `interactions` (Parquet or CSV).
//! 2. Rows: labelled impressions as they are; implicit data (no `label`) gets
//!    `negatives_per_positive` places sampled within `radius_km` of the context (grid index).
//! 3. Time split: the earliest part of the time range trains, then valid, then test.
//! 4. Ranking set: sampled test positives, each with `ranking_candidates` places within the
//!    radius, all featurized exactly like the training rows.
//! 5. Point-in-time place statistics over a trailing window, from events strictly before each
//!    row's timestamp ([`PlaceEvents`]).
//! 6. Joins, haversine distance and cyclic time features as one polars lazy query.
//! 7. Feature spec (vocabularies, mean/std) fitted on the training split only; a random
//!    calibration sample of the training split.
//!
//! Output directory (written atomically): `train|valid|test|calibration|ranking.parquet`,
//! `feature_spec.json`, `prepare.json`.

use std::collections::{BTreeMap, HashMap};
use std::f64::consts::{PI, TAU};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::artifact::spec::FeatureSpec;
use crate::artifact::{ArtifactWriter, sha256_file};
use crate::data::features::{CATEGORICAL, LABEL, NUMERIC};
use crate::data::io::{find_table, float_column, frame, has_column, int_column, pl, read_table, write_parquet};
use crate::error::{Error, Result};
use crate::geo::{EARTH_RADIUS_KM, GridIndex};
use crate::progress::Progress;
use crate::recipe::PrepareConfig;
use crate::rng::Rng;

/// What `prepare` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PrepareSummary {
    /// Output directory.
    pub dir: PathBuf,
    /// Rows per output file.
    pub rows: BTreeMap<String, usize>,
    /// Whether negatives were sampled (implicit data).
    pub sampled_negatives: bool,
    /// Timestamps where valid and test begin.
    pub split_times: [i64; 2],
    /// sha256 of each input table.
    pub input_sha256: BTreeMap<String, String>,
}

struct Places {
    id: Vec<i64>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    rating: Option<Vec<f64>>,
    row_of: HashMap<i64, usize>,
}

struct Rows {
    user: Vec<i64>,
    place: Vec<i64>,
    ts: Vec<i64>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    label: Vec<f32>,
    oracle: Option<Vec<f64>>,
    query: Option<Vec<i64>>,
}

impl Rows {
    fn new(oracle: bool, query: bool) -> Self {
        Self {
            user: vec![],
            place: vec![],
            ts: vec![],
            lat: vec![],
            lon: vec![],
            label: vec![],
            oracle: oracle.then(Vec::new),
            query: query.then(Vec::new),
        }
    }

    fn len(&self) -> usize {
        self.user.len()
    }

    fn push(&mut self, src: &Rows, i: usize) {
        self.user.push(src.user[i]);
        self.place.push(src.place[i]);
        self.ts.push(src.ts[i]);
        self.lat.push(src.lat[i]);
        self.lon.push(src.lon[i]);
        self.label.push(src.label[i]);
        if let (Some(d), Some(s)) = (self.oracle.as_mut(), src.oracle.as_ref()) {
            d.push(s[i]);
        }
    }
}

/// Per-place event history, sorted by time, with prefix sums for O(log n) window queries.
pub struct PlaceEvents {
    times: Vec<Vec<i64>>,
    visits: Vec<Vec<u32>>,
    rating_sum: Vec<Vec<f64>>,
    rating_n: Vec<Vec<u32>>,
}

/// Window statistics of one place at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    /// Events (impressions) in the window.
    pub impressions: u32,
    /// Visits (positive events) in the window.
    pub visits: u32,
    /// Mean rating of rated visits in the window, if any.
    pub mean_rating: Option<f64>,
}

impl PlaceEvents {
    /// Indexes events `(place row, timestamp, visited, rating)`.
    pub fn new(n_places: usize, events: impl Iterator<Item = (usize, i64, bool, Option<f64>)>) -> Self {
        let mut per: Vec<Vec<(i64, bool, Option<f64>)>> = vec![Vec::new(); n_places];
        for (p, t, v, r) in events {
            per[p].push((t, v, r));
        }
        let mut s = Self { times: vec![], visits: vec![], rating_sum: vec![], rating_n: vec![] };
        for mut ev in per {
            ev.sort_by_key(|e| e.0);
            let mut times = Vec::with_capacity(ev.len());
            let (mut v, mut rs, mut rn) = (vec![0u32], vec![0f64], vec![0u32]);
            for (t, visit, rating) in ev {
                times.push(t);
                v.push(v[v.len() - 1] + u32::from(visit));
                let r = rating.filter(|x| x.is_finite());
                rs.push(rs[rs.len() - 1] + r.unwrap_or(0.0));
                rn.push(rn[rn.len() - 1] + u32::from(r.is_some()));
            }
            s.times.push(times);
            s.visits.push(v);
            s.rating_sum.push(rs);
            s.rating_n.push(rn);
        }
        s
    }

    /// Statistics over events with `t - window <= time < t` (strictly before `t`).
    pub fn window(&self, place: usize, t: i64, window: i64) -> WindowStats {
        let times = &self.times[place];
        let lo = times.partition_point(|&x| x < t - window);
        let hi = times.partition_point(|&x| x < t);
        let n = self.rating_n[place][hi] - self.rating_n[place][lo];
        WindowStats {
            impressions: (hi - lo) as u32,
            visits: self.visits[place][hi] - self.visits[place][lo],
            mean_rating: (n > 0).then(|| (self.rating_sum[place][hi] - self.rating_sum[place][lo]) / f64::from(n)),
        }
    }
}

fn load_places(dir: &Path, hashes: &mut BTreeMap<String, String>) -> Result<(DataFrame, Places)> {
    let path = find_table(dir, "places")?;
    hashes.insert("places".into(), sha256_file(&path)?);
    let df = read_table(&path)?;
    let id = int_column(&df, &path, "place_id")?;
    let lat = float_column(&df, &path, "lat", false)?;
    let lon = float_column(&df, &path, "lon", false)?;
    int_column(&df, &path, "category")?;
    check_lat_lon(&path, "lat", "lon", &lat, &lon)?;
    let rating = if has_column(&df, "rating") { Some(float_column(&df, &path, "rating", true)?) } else { None };
    if has_column(&df, "price_level") {
        int_column(&df, &path, "price_level")?;
    }
    let row_of = unique_index(&path, "place_id", &id)?;
    Ok((df, Places { id, lat, lon, rating, row_of }))
}

fn check_lat_lon(path: &Path, lat_name: &str, lon_name: &str, lat: &[f64], lon: &[f64]) -> Result<()> {
    if let Some(i) = lat.iter().position(|v| !(-90.0..=90.0).contains(v)) {
        return Err(Error::input(format!(
            "{}: column `{lat_name}` row {i} is {}, expected a latitude in [-90, 90]",
            path.display(),
            lat[i]
        )));
    }
    if let Some(i) = lon.iter().position(|v| !(-180.0..=180.0).contains(v)) {
        return Err(Error::input(format!(
            "{}: column `{lon_name}` row {i} is {}, expected a longitude in [-180, 180]",
            path.display(),
            lon[i]
        )));
    }
    Ok(())
}

fn unique_index(path: &Path, name: &str, ids: &[i64]) -> Result<HashMap<i64, usize>> {
    let mut m = HashMap::with_capacity(ids.len());
    for (i, &v) in ids.iter().enumerate() {
        if m.insert(v, i).is_some() {
            return Err(Error::input(format!(
                "{}: column `{name}` has the duplicate value {v} (row {i}), expected unique ids",
                path.display()
            )));
        }
    }
    Ok(m)
}

/// Runs the whole preparation from `raw_dir` into `out_dir`.
pub fn prepare(
    raw_dir: &Path,
    out_dir: &Path,
    cfg: &PrepareConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<PrepareSummary> {
    let mut hashes = BTreeMap::new();
    progress.begin("prepare", 6);
    // 1. Tables.
    let upath = find_table(raw_dir, "users")?;
    hashes.insert("users".into(), sha256_file(&upath)?);
    let users_df = read_table(&upath)?;
    let user_ids = int_column(&users_df, &upath, "user_id")?;
    let user_row = unique_index(&upath, "user_id", &user_ids)?;
    if has_column(&users_df, "segment") {
        int_column(&users_df, &upath, "segment")?;
    }
    let home = if has_column(&users_df, "home_lat") || has_column(&users_df, "home_lon") {
        let la = float_column(&users_df, &upath, "home_lat", false)?;
        let lo = float_column(&users_df, &upath, "home_lon", false)?;
        check_lat_lon(&upath, "home_lat", "home_lon", &la, &lo)?;
        Some((la, lo))
    } else {
        None
    };
    let (places_df, places) = load_places(raw_dir, &mut hashes)?;
    let ipath = find_table(raw_dir, "interactions")?;
    hashes.insert("interactions".into(), sha256_file(&ipath)?);
    let inter = read_table(&ipath)?;
    progress.advance(1);

    let n = inter.height();
    let user = int_column(&inter, &ipath, "user_id")?;
    let place = int_column(&inter, &ipath, "place_id")?;
    let ts = int_column(&inter, &ipath, "timestamp")?;
    for (i, u) in user.iter().enumerate() {
        if !user_row.contains_key(u) {
            return Err(Error::input(format!(
                "{}: row {i} has user_id {u}, which is not in {}",
                ipath.display(),
                upath.display()
            )));
        }
    }
    let mut place_row = Vec::with_capacity(n);
    for (i, p) in place.iter().enumerate() {
        match places.row_of.get(p) {
            Some(&r) => place_row.push(r),
            None => {
                return Err(Error::input(format!(
                    "{}: row {i} has place_id {p}, which is not in the places table",
                    ipath.display()
                )));
            }
        }
    }
    let (lat, lon) = if has_column(&inter, "lat") || has_column(&inter, "lon") {
        let la = float_column(&inter, &ipath, "lat", false)?;
        let lo = float_column(&inter, &ipath, "lon", false)?;
        check_lat_lon(&ipath, "lat", "lon", &la, &lo)?;
        (la, lo)
    } else if let Some((hl, ho)) = &home {
        (user.iter().map(|u| hl[user_row[u]]).collect(), user.iter().map(|u| ho[user_row[u]]).collect())
    } else {
        return Err(Error::input(format!(
            "{}: no context location: expected columns `lat`, `lon` here or `home_lat`, `home_lon` in {}",
            ipath.display(),
            upath.display()
        )));
    };
    let labelled = has_column(&inter, LABEL);
    let label: Vec<f32> = if labelled {
        let y = int_column(&inter, &ipath, LABEL)?;
        if let Some(i) = y.iter().position(|&v| v != 0 && v != 1) {
            return Err(Error::input(format!(
                "{}: column `{LABEL}` row {i} is {}, expected 0 or 1",
                ipath.display(),
                y[i]
            )));
        }
        y.into_iter().map(|v| v as f32).collect()
    } else {
        vec![1.0; n]
    };
    let visit_rating =
        if has_column(&inter, "rating") { Some(float_column(&inter, &ipath, "rating", true)?) } else { None };
    let oracle = if has_column(&inter, "oracle_p") {
        let o = float_column(&inter, &ipath, "oracle_p", false)?;
        if let Some(i) = o.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::input(format!(
                "{}: column `oracle_p` row {i} is {}, expected a probability",
                ipath.display(),
                o[i]
            )));
        }
        Some(o)
    } else {
        None
    };

    // Point-in-time statistics come from the real events only, never from sampled negatives.
    let events = PlaceEvents::new(
        places.id.len(),
        (0..n).map(|i| (place_row[i], ts[i], label[i] > 0.5, visit_rating.as_ref().map(|r| r[i]))),
    );
    let raw = Rows { user, place, ts, lat, lon, label, oracle, query: None };

    // 2. Rows, with sampled negatives for implicit data.
    let index = GridIndex::new(&places.lat, &places.lon, cfg.radius_km);
    let mut rng = Rng::derive(seed, "prepare");
    let rows = if labelled {
        raw
    } else {
        let mut rows = Rows::new(false, false);
        for i in 0..raw.len() {
            rows.push(&raw, i);
            let mut cands = index.within(raw.lat[i], raw.lon[i], cfg.radius_km);
            cands.retain(|&c| places.id[c as usize] != raw.place[i]);
            rng.shuffle(&mut cands);
            for &c in cands.iter().take(cfg.negatives_per_positive) {
                rows.push(&raw, i);
                let last = rows.len() - 1;
                rows.place[last] = places.id[c as usize];
                rows.label[last] = 0.0;
            }
        }
        rows
    };
    progress.advance(1);

    // 3. Time split.
    let (t0, t1) = rows.ts.iter().fold((i64::MAX, i64::MIN), |(a, b), &t| (a.min(t), b.max(t)));
    let span = (t1 - t0) as f64;
    let cut_valid = t0 + (span * (1.0 - cfg.valid_fraction - cfg.test_fraction)).round() as i64;
    let cut_test = t0 + (span * (1.0 - cfg.test_fraction)).round() as i64;
    let mut splits = [
        Rows::new(rows.oracle.is_some(), false),
        Rows::new(rows.oracle.is_some(), false),
        Rows::new(rows.oracle.is_some(), false),
    ];
    for i in 0..rows.len() {
        let s = if rows.ts[i] < cut_valid {
            0
        } else if rows.ts[i] < cut_test {
            1
        } else {
            2
        };
        splits[s].push(&rows, i);
    }
    for (name, s) in ["train", "valid", "test"].iter().zip(&splits) {
        if s.len() == 0 || !s.label.iter().any(|&y| y > 0.5) || !s.label.iter().any(|&y| y < 0.5) {
            return Err(Error::input(format!(
                "{}: the {name} split has {} rows and needs both visits and non-visits; give more days of interactions or change prepare.valid_fraction/test_fraction",
                ipath.display(),
                s.len()
            )));
        }
    }

    // 4. Ranking queries from test positives.
    let test = &splits[2];
    let mut pos: Vec<usize> = (0..test.len()).filter(|&i| test.label[i] > 0.5).collect();
    rng.shuffle(&mut pos);
    pos.truncate(cfg.ranking_queries);
    pos.sort_unstable();
    let mut ranking = Rows::new(false, true);
    for (q, &i) in pos.iter().enumerate() {
        let mut cands = index.within(test.lat[i], test.lon[i], cfg.radius_km);
        cands.retain(|&c| places.id[c as usize] != test.place[i]);
        rng.shuffle(&mut cands);
        cands.truncate(cfg.ranking_candidates);
        ranking.push(test, i);
        for &c in &cands {
            ranking.push(test, i);
            let last = ranking.len() - 1;
            ranking.place[last] = places.id[c as usize];
            ranking.label[last] = 0.0;
        }
        if let Some(qv) = ranking.query.as_mut() {
            qv.extend(std::iter::repeat_n(q as i64, cands.len() + 1));
        }
    }
    progress.advance(1);

    // 5 + 6. Features.
    let window = (cfg.window_days * 86_400.0).round() as i64;
    let ctx = FeatureContext { users: &users_df, places_df: &places_df, places: &places, events: &events, window };
    let mut frames: Vec<(&str, DataFrame)> = Vec::new();
    for (name, s) in ["train", "valid", "test"].iter().zip(&splits) {
        frames.push((name, featurize(s, &ctx)?));
    }
    let mut ranking_df = featurize(&ranking, &ctx)?;
    progress.advance(1);

    // 7. Spec on train; calibration sample.
    let spec = fit_spec(&frames[0].1)?;
    let train_rows = frames[0].1.height();
    let mut idx: Vec<usize> = (0..train_rows).collect();
    rng.shuffle(&mut idx);
    idx.truncate(cfg.calibration_rows.min(train_rows));
    idx.sort_unstable();
    let take = IdxCa::from_vec("idx".into(), idx.iter().map(|&i| i as IdxSize).collect());
    let calibration = frames[0].1.take(&take).map_err(pl("calibration sample"))?;
    frames.push(("calibration", calibration));
    progress.advance(1);

    let writer = ArtifactWriter::create(out_dir)?;
    let mut rows_out = BTreeMap::new();
    for (name, df) in &mut frames {
        rows_out.insert((*name).to_string(), df.height());
        write_parquet(df, &writer.path(&format!("{name}.parquet")))?;
    }
    rows_out.insert("ranking".into(), ranking_df.height());
    write_parquet(&mut ranking_df, &writer.path("ranking.parquet"))?;
    let spec_json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Internal(e.to_string()))?;
    writer.write("feature_spec.json", &spec_json)?;
    let summary = PrepareSummary {
        dir: out_dir.to_path_buf(),
        rows: rows_out,
        sampled_negatives: !labelled,
        split_times: [cut_valid, cut_test],
        input_sha256: hashes,
    };
    let json = serde_json::to_vec_pretty(&serde_json::json!({ "summary": summary, "config": cfg, "seed": seed }))
        .map_err(|e| Error::Internal(e.to_string()))?;
    writer.write("prepare.json", &json)?;
    writer.commit()?;
    progress.advance(1);
    progress.end();
    Ok(summary)
}

struct FeatureContext<'a> {
    users: &'a DataFrame,
    places_df: &'a DataFrame,
    places: &'a Places,
    events: &'a PlaceEvents,
    window: i64,
}

/// Builds the feature table for a set of rows: point-in-time stats (Rust), then joins,
/// haversine distance and cyclic time features (polars lazy).
fn featurize(rows: &Rows, ctx: &FeatureContext<'_>) -> Result<DataFrame> {
    let n = rows.len();
    let (mut visits, mut impr, mut rate, mut rating_w) = (vec![0f64; n], vec![0f64; n], vec![0f64; n], vec![0f64; n]);
    for i in 0..n {
        let p = ctx.places.row_of[&rows.place[i]];
        let s = ctx.events.window(p, rows.ts[i], ctx.window);
        visits[i] = f64::from(s.visits).ln_1p();
        impr[i] = f64::from(s.impressions).ln_1p();
        rate[i] = (f64::from(s.visits) + 1.0) / (f64::from(s.impressions) + 2.0);
        let static_rating = ctx.places.rating.as_ref().map_or(f64::NAN, |r| r[p]);
        rating_w[i] = s.mean_rating.unwrap_or(static_rating);
        if !rating_w[i].is_finite() {
            rating_w[i] = 0.0;
        }
    }
    let mut cols = vec![
        Column::new("user_id".into(), &rows.user),
        Column::new("place_id".into(), &rows.place),
        Column::new("timestamp".into(), &rows.ts),
        Column::new("ctx_lat".into(), &rows.lat),
        Column::new("ctx_lon".into(), &rows.lon),
        Column::new(LABEL.into(), &rows.label),
        Column::new("place_visits_w".into(), visits),
        Column::new("place_impressions_w".into(), impr),
        Column::new("place_visit_rate_w".into(), rate),
        Column::new("place_rating_w".into(), rating_w),
    ];
    if let Some(o) = &rows.oracle {
        cols.push(Column::new("oracle_p".into(), o));
    }
    if let Some(q) = &rows.query {
        cols.push(Column::new("query_id".into(), q));
    }
    let base = frame(n, cols)?;

    let mut user_sel = vec![col("user_id")];
    user_sel.push(if has_column(ctx.users, "segment") {
        col("segment").cast(DataType::Int64)
    } else {
        lit(0i64).alias("segment")
    });
    let users = ctx.users.clone().lazy().select(user_sel);
    let mut place_sel = vec![
        col("place_id"),
        col("lat").cast(DataType::Float64).alias("place_lat"),
        col("lon").cast(DataType::Float64).alias("place_lon"),
        col("category").cast(DataType::Int64),
    ];
    place_sel.push(if has_column(ctx.places_df, "price_level") {
        col("price_level").cast(DataType::Float64)
    } else {
        lit(0f64).alias("price_level")
    });
    place_sel.push(if has_column(ctx.places_df, "rating") {
        col("rating").cast(DataType::Float64).fill_null(lit(0f64)).alias("place_rating")
    } else {
        lit(0f64).alias("place_rating")
    });
    let places = ctx.places_df.clone().lazy().select(place_sel);

    let rad = |e: Expr| e * lit(PI / 180.0);
    let half_dlat = rad(col("place_lat") - col("ctx_lat")) / lit(2.0);
    let half_dlon = rad(col("place_lon") - col("ctx_lon")) / lit(2.0);
    let a = half_dlat.clone().sin() * half_dlat.sin()
        + rad(col("ctx_lat")).cos() * rad(col("place_lat")).cos() * half_dlon.clone().sin() * half_dlon.sin();
    let distance = (lit(2.0 * EARTH_RADIUS_KM) * a.sqrt().arcsin()).alias("distance_km");
    let secs = col("timestamp").cast(DataType::Float64);
    let hour = (secs.clone() % lit(86_400.0)) / lit(3600.0);
    // 1970-01-01 was a Thursday: (days + 3) mod 7 puts Monday at 0.
    let dow = ((secs / lit(86_400.0)).floor() + lit(3.0)) % lit(7.0);
    let mut out_cols: Vec<Expr> = CATEGORICAL.iter().map(|c| col(*c)).collect();
    out_cols.extend(NUMERIC.iter().map(|c| col(*c).cast(DataType::Float32)));
    out_cols.push(col(LABEL));
    out_cols.push(col("timestamp"));
    if rows.oracle.is_some() {
        out_cols.push(col("oracle_p").cast(DataType::Float32));
    }
    if rows.query.is_some() {
        out_cols.push(col("query_id"));
    }
    base.lazy()
        .left_join(users, col("user_id"), col("user_id"))
        .left_join(places, col("place_id"), col("place_id"))
        .with_columns([
            distance,
            (hour.clone() * lit(TAU / 24.0)).sin().alias("hour_sin"),
            (hour * lit(TAU / 24.0)).cos().alias("hour_cos"),
            (dow.clone() * lit(TAU / 7.0)).sin().alias("dow_sin"),
            (dow * lit(TAU / 7.0)).cos().alias("dow_cos"),
        ])
        .select(out_cols)
        .collect()
        .map_err(pl("featurize"))
}

fn fit_spec(train: &DataFrame) -> Result<FeatureSpec> {
    let p = Path::new("train");
    let cats: Vec<Vec<i64>> = CATEGORICAL.iter().map(|c| int_column(train, p, c)).collect::<Result<_>>()?;
    let nums: Vec<Vec<f32>> = NUMERIC
        .iter()
        .map(|c| float_column(train, p, c, false).map(|v| v.into_iter().map(|x| x as f32).collect()))
        .collect::<Result<_>>()?;
    let cat_refs: Vec<(&str, &[i64])> = CATEGORICAL.iter().zip(&cats).map(|(n, v)| (*n, v.as_slice())).collect();
    let num_refs: Vec<(&str, &[f32])> = NUMERIC.iter().zip(&nums).map(|(n, v)| (*n, v.as_slice())).collect();
    Ok(FeatureSpec::fit(&cat_refs, &num_refs, LABEL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_stats_use_only_events_strictly_before_t() {
        // Place 0: visits at t=10 (rating 4), 20 (no visit), 30 (rating 2), 30 (visit, no rating).
        let ev = PlaceEvents::new(
            1,
            vec![(0, 30, true, Some(2.0)), (0, 10, true, Some(4.0)), (0, 20, false, None), (0, 30, true, None)]
                .into_iter(),
        );
        let s = ev.window(0, 30, 100);
        assert_eq!((s.impressions, s.visits, s.mean_rating), (2, 1, Some(4.0)));
        let s = ev.window(0, 31, 100);
        assert_eq!((s.impressions, s.visits, s.mean_rating), (4, 3, Some(3.0)));
        // Window [t - 15, t): only the events at 20 and 30 when t = 31.
        let s = ev.window(0, 31, 15);
        assert_eq!((s.impressions, s.visits), (3, 2));
        let s = ev.window(0, 10, 100);
        assert_eq!((s.impressions, s.visits, s.mean_rating), (0, 0, None));
    }
}
