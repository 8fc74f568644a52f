//! `prepare`'s feature step: rows (interaction, place, time, label) -> the feature table.
//!
//! The row's own features are computed in Rust with the formulas a server shares
//! ([`reco_runtime::features`]): point-in-time place statistics from [`PlaceEvents`] and the
//! user's history (events strictly before the row), cyclic hour and day features in local
//! time, the haversine distance from the context location. The rest is one polars lazy plan:
//! the users, places and interaction columns joined by id, and the declared features with
//! their fill and transform. Which built-in features exist depends on the data ([`layout`]).

use polars::prelude::*;

use super::context::Context;
use super::history::UserHistory;
use super::window::PlaceEvents;
use crate::data::features::LABEL;
use crate::data::io::{frame, pl};
use crate::data::raw::{Mapped, Places, RawData, Users};
use crate::data::schema::{DeclaredFeature, FeatureKind, Role, TableName, Transform};
use reco_runtime::artifact::spec::{Bag, Ids};
use reco_runtime::error::{Error, Result};
use reco_runtime::features::calendar;
use reco_runtime::features::history::{self, HistoryStats};
use reco_runtime::features::window::{self, WindowStats};

/// Rows of a feature file before featurization: which interaction each comes from, which
/// place it scores, when, and its label.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// Index of the interaction the row comes from (its user, context and local time).
    pub src: Vec<u32>,
    /// Place row scored.
    pub place: Vec<u32>,
    /// Unix seconds.
    pub ts: Vec<i64>,
    /// 0/1 label.
    pub label: Vec<f32>,
    /// Whether rows carry the interaction's true probability (labelled synthetic data).
    pub oracle: bool,
    /// Ranking query of each row (ranking sets only).
    pub query: Option<Vec<i64>>,
}

impl Rows {
    /// No rows yet.
    pub fn new(oracle: bool, query: bool) -> Self {
        Self { oracle, query: query.then(Vec::new), ..Self::default() }
    }

    /// An empty set of rows of the same kind, without queries.
    pub fn empty_like(&self) -> Self {
        Self::new(self.oracle, false)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.src.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty()
    }

    /// Rows `r` as a new set of rows.
    pub fn slice(&self, r: std::ops::Range<usize>) -> Self {
        Self {
            src: self.src[r.clone()].to_vec(),
            place: self.place[r.clone()].to_vec(),
            ts: self.ts[r.clone()].to_vec(),
            label: self.label[r.clone()].to_vec(),
            oracle: self.oracle,
            query: self.query.as_ref().map(|q| q[r].to_vec()),
        }
    }

    /// Removes every row.
    pub fn clear(&mut self) {
        self.src.clear();
        self.place.clear();
        self.ts.clear();
        self.label.clear();
        if let Some(q) = self.query.as_mut() {
            q.clear();
        }
    }

    /// Appends row `i` of `other` (without its query id).
    pub fn push(&mut self, other: &Rows, i: usize) {
        self.push_interaction(other.src[i] as usize, other.place[i], other.ts[i], other.label[i]);
    }

    /// Appends a row of interaction `src` scoring `place`.
    pub fn push_interaction(&mut self, src: usize, place: u32, ts: i64, label: f32) {
        self.src.push(src as u32);
        self.place.push(place);
        self.ts.push(ts);
        self.label.push(label);
    }
}

/// Everything the features of a set of rows are computed from, besides the rows' own
/// [`RowValues`].
pub struct FeatureContext<'a> {
    /// Users.
    pub users: &'a Users,
    /// Places.
    pub places: &'a Places,
    /// The interactions table as mapped (its declared columns' types), when it is in memory.
    pub inter: Option<&'a Mapped>,
    /// Whether the interactions carry a rating (a `place_rating_w` feature).
    pub inter_rating: bool,
    /// Whether the interactions carry the true probability (`oracle_p`).
    pub inter_oracle: bool,
    /// Whether rows have a context location (a `distance_km` feature with place coordinates).
    pub has_ctx: bool,
    /// Trailing window, seconds.
    pub window: i64,
    /// Declared features.
    pub declared: &'a [DeclaredFeature],
    /// Visits only: every event is a visit, so impression counts and visit rates would only
    /// repeat the visit count; they are left out.
    pub implicit: bool,
    /// Whether rows get their user's history at the place ([`history::names`]).
    pub history: bool,
}

/// What each row takes from its interaction and its place's history: the values
/// [`features`] reads besides the rows themselves, resolved for one chunk of rows (from the
/// tables in memory with [`resolve`], or from `prepare`'s spill files).
#[derive(Debug, Clone, Default)]
pub struct RowValues {
    /// User row.
    pub user: Vec<u32>,
    /// Local time, unix seconds.
    pub local_ts: Vec<i64>,
    /// Context latitude and longitude, when the rows have one.
    pub ctx: Option<(Vec<f64>, Vec<f64>)>,
    /// Trailing-window statistics of the row's place, strictly before its time.
    pub stats: Vec<WindowStats>,
    /// The user's history at the row's place, strictly before its time (empty without
    /// history features).
    pub history: Vec<HistoryStats>,
    /// The interaction's true probability, when the rows carry it.
    pub oracle: Option<Vec<f64>>,
    /// Declared interaction features, one row per row, when there are any.
    pub declared: Option<DataFrame>,
}

impl RowValues {
    /// Values for no rows, with every column `fctx`'s rows have.
    pub fn empty(fctx: &FeatureContext<'_>) -> Result<Self> {
        Ok(Self {
            ctx: fctx.has_ctx.then(Default::default),
            oracle: fctx.inter_oracle.then(Vec::new),
            declared: declared_interactions(fctx, &[])?,
            ..Self::default()
        })
    }
}

impl RowValues {
    /// Rows `r` (without declared features, which the streamed path does not have).
    pub fn slice(&self, r: std::ops::Range<usize>) -> Self {
        Self {
            user: self.user[r.clone()].to_vec(),
            local_ts: self.local_ts[r.clone()].to_vec(),
            ctx: self.ctx.as_ref().map(|(a, b)| (a[r.clone()].to_vec(), b[r.clone()].to_vec())),
            stats: self.stats[r.clone()].to_vec(),
            history: if self.history.is_empty() { Vec::new() } else { self.history[r.clone()].to_vec() },
            oracle: self.oracle.as_ref().map(|o| o[r].to_vec()),
            declared: None,
        }
    }

    /// Removes every row.
    pub fn clear(&mut self) {
        self.user.clear();
        self.local_ts.clear();
        if let Some((a, b)) = self.ctx.as_mut() {
            a.clear();
            b.clear();
        }
        self.stats.clear();
        self.history.clear();
        if let Some(o) = self.oracle.as_mut() {
            o.clear();
        }
    }
}

/// The [`RowValues`] of `rows`, from the tables in memory.
pub fn resolve(
    rows: &Rows,
    raw: &RawData,
    ctx: Option<&Context>,
    (events, history): (&PlaceEvents, Option<&UserHistory>),
    fctx: &FeatureContext<'_>,
) -> Result<RowValues> {
    let inter = &raw.inter;
    let src: Vec<usize> = rows.src.iter().map(|&s| s as usize).collect();
    let stats = (0..rows.len()).map(|i| events.window(rows.place[i] as usize, rows.ts[i], fctx.window)).collect();
    let user: Vec<u32> = src.iter().map(|&s| inter.user[s]).collect();
    let history = match history {
        Some(h) => (0..rows.len()).map(|i| h.stats(user[i], rows.place[i], rows.ts[i])).collect(),
        None => Vec::new(),
    };
    Ok(RowValues {
        history,
        user,
        local_ts: src.iter().map(|&s| inter.local_ts[s]).collect(),
        ctx: ctx.map(|c| (src.iter().map(|&s| c.lat[s]).collect(), src.iter().map(|&s| c.lon[s]).collect())),
        stats,
        oracle: inter.oracle.as_ref().filter(|_| rows.oracle).map(|o| src.iter().map(|&s| o[s]).collect()),
        declared: declared_interactions(fctx, &src)?,
    })
}

/// The declared interaction features of the interactions `src`, one row each.
fn declared_interactions(fctx: &FeatureContext<'_>, src: &[usize]) -> Result<Option<DataFrame>> {
    let Some(m) = fctx.inter else { return Ok(None) };
    let exprs = declared_exprs(fctx, TableName::Interactions, m);
    if exprs.is_empty() {
        return Ok(None);
    }
    let idx = IdxCa::from_vec("src".into(), src.iter().map(|&s| s as IdxSize).collect());
    let taken = m.table.df.take(&idx).map_err(pl("featurize"))?;
    Ok(Some(taken.lazy().select(exprs).collect().map_err(pl("featurize"))?))
}

/// The model inputs a feature table holds, in model order.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Categorical columns with their vocabulary `min_count`, and a multi-valued one's list
    /// settings.
    pub categorical: Vec<(String, usize, Option<Bag>)>,
    /// Numeric columns.
    pub numeric: Vec<String>,
}

impl FeatureContext<'_> {
    fn has_distance(&self) -> bool {
        self.has_ctx && self.places.coords.is_some()
    }

    fn has_rating_w(&self) -> bool {
        self.inter_rating || self.places.rating.is_some()
    }

    fn place_role(&self, role: Role) -> Option<&str> {
        self.places.mapped.as_ref().and_then(|m| m.col(role))
    }

    /// The history columns the rows get (none with history off).
    pub fn history_names(&self) -> &'static [&'static str] {
        if self.history { history::names(self.place_role(Role::Category).is_some()) } else { &[] }
    }
}

/// The inputs `features` writes: the built-in ones the data supports (synthetic data: all
/// of `CATEGORICAL` and `NUMERIC`), then the declared ones.
pub fn layout(ctx: &FeatureContext<'_>) -> Layout {
    let mut categorical = vec![("user_id".to_string(), 1, None), ("place_id".to_string(), 1, None)];
    if ctx.users.segment.is_some() {
        categorical.push(("segment".into(), 1, None));
    }
    if ctx.place_role(Role::Category).is_some() {
        categorical.push(("category".into(), 1, None));
    }
    let mut numeric: Vec<String> = Vec::new();
    if ctx.has_distance() {
        numeric.push("distance_km".into());
    }
    numeric.extend(["hour_sin", "hour_cos", "dow_sin", "dow_cos", "place_visits_w"].map(String::from));
    if !ctx.implicit {
        numeric.extend(["place_impressions_w", "place_visit_rate_w"].map(String::from));
    }
    if ctx.has_rating_w() {
        numeric.push("place_rating_w".into());
    }
    if ctx.places.rating.is_some() {
        numeric.push("place_rating".into());
    }
    if ctx.place_role(Role::PriceLevel).is_some() {
        numeric.push("price_level".into());
    }
    numeric.extend(ctx.history_names().iter().map(|s| s.to_string()));
    for f in ctx.declared {
        let name = f.feature_name().to_string();
        match f.kind {
            FeatureKind::Categorical | FeatureKind::MultiCategorical => categorical.push((name, f.min_count, f.bag())),
            FeatureKind::Numeric => {
                numeric.push(name.clone());
                if f.fill.is_some() {
                    numeric.push(format!("{name}_missing"));
                }
            }
        }
    }
    Layout { categorical, numeric }
}

/// An id column in its own type.
fn ids_column(name: &str, ids: Ids) -> Column {
    match ids {
        Ids::Int(v) => Column::new(name.into(), v),
        Ids::Str(v) => Column::new(name.into(), v),
    }
}

/// The polars type ids of a source column are read as: Int64 for integers, String otherwise.
fn id_dtype(m: &Mapped, column: &str) -> DataType {
    match m.table.df.column(column) {
        Ok(c) if c.dtype().is_integer() => DataType::Int64,
        _ => DataType::String,
    }
}

/// An attribute column (category, segment, declared categorical) as the feature: text with
/// missing values as the empty string ([`crate::data::table::Table::categories`]).
fn category_expr(m: &Mapped, column: &str, alias: &str) -> Expr {
    let dt = id_dtype(m, column);
    let e = col(column).cast(dt.clone());
    let e = if dt == DataType::String { e.fill_null(lit("")) } else { e };
    e.alias(alias)
}

/// Trailing-window statistics of every row's place, strictly before the row's time
/// ([`WindowStats::values`]).
fn window_stats(rows: &Rows, values: &RowValues, ctx: &FeatureContext<'_>, with_rating: bool) -> Vec<Column> {
    let mut cols: [Vec<f64>; 4] = Default::default();
    for (i, s) in values.stats.iter().enumerate() {
        let static_rating = ctx.places.rating.as_ref().map_or(f64::NAN, |r| r[rows.place[i] as usize]);
        for (c, v) in cols.iter_mut().zip(s.values(static_rating)) {
            c.push(v);
        }
    }
    let n = if with_rating { 4 } else { 3 };
    window::NAMES.iter().zip(cols).take(n).map(|(name, c)| Column::new((*name).into(), c)).collect()
}

/// The time columns of every row's local time, and the distance from its context location to
/// its place when the rows have both ([`calendar`]).
fn calendar_columns(rows: &Rows, values: &RowValues, ctx: &FeatureContext<'_>) -> Vec<Column> {
    let mut cols: [Vec<f64>; 4] = Default::default();
    for &t in &values.local_ts {
        for (c, v) in cols.iter_mut().zip(calendar::time_values(t)) {
            c.push(v);
        }
    }
    let mut out: Vec<Column> =
        calendar::TIME_NAMES.iter().zip(cols).map(|(name, c)| Column::new((*name).into(), c)).collect();
    if let (true, Some((lat, lon)), Some((plat, plon))) = (ctx.has_distance(), &values.ctx, &ctx.places.coords) {
        let d: Vec<f64> = (0..rows.len())
            .map(|i| {
                let p = rows.place[i] as usize;
                calendar::distance_km(lat[i], lon[i], plat[p], plon[p])
            })
            .collect();
        out.push(Column::new(calendar::DISTANCE.into(), d));
    }
    out
}

/// The user-history columns ([`HistoryStats::values`]), when the rows have them.
fn history_columns(values: &RowValues, ctx: &FeatureContext<'_>) -> Vec<Column> {
    let names = ctx.history_names();
    let mut cols: Vec<Vec<f64>> = vec![Vec::with_capacity(values.history.len()); names.len()];
    for h in &values.history {
        for (c, v) in cols.iter_mut().zip(h.values(names.len() == history::NAMES.len())) {
            c.push(v);
        }
    }
    names.iter().zip(cols).map(|(n, c)| Column::new((*n).into(), c)).collect()
}

/// The columns computed in Rust, one per row: ids, times, context, label, window statistics.
fn base_columns(rows: &Rows, values: &RowValues, ctx: &FeatureContext<'_>) -> Vec<Column> {
    let user_rows: Vec<usize> = values.user.iter().map(|&u| u as usize).collect();
    let place_rows: Vec<usize> = rows.place.iter().map(|&p| p as usize).collect();
    let mut cols = vec![
        ids_column("user_id", ctx.users.ids.take(&user_rows)),
        ids_column("place_id", ctx.places.ids.take(&place_rows)),
        Column::new("timestamp".into(), &rows.ts),
        Column::new("local_ts".into(), &values.local_ts),
        Column::new(LABEL.into(), &rows.label),
    ];
    if let Some((lat, lon)) = &values.ctx {
        cols.push(Column::new("ctx_lat".into(), lat));
        cols.push(Column::new("ctx_lon".into(), lon));
    }
    cols.extend(window_stats(rows, values, ctx, ctx.has_rating_w()));
    cols.extend(calendar_columns(rows, values, ctx));
    cols.extend(history_columns(values, ctx));
    if let (true, Some(o)) = (rows.oracle, &values.oracle) {
        cols.push(Column::new("oracle_p".into(), o));
    }
    if let Some(q) = &rows.query {
        cols.push(Column::new("query_id".into(), q));
    }
    cols
}

/// The select expressions of the declared features of one table.
fn declared_exprs(ctx: &FeatureContext<'_>, table: TableName, m: &Mapped) -> Vec<Expr> {
    let mut out = Vec::new();
    for f in ctx.declared.iter().filter(|f| f.table == table) {
        let name = f.feature_name();
        match f.kind {
            FeatureKind::Categorical => out.push(category_expr(m, &f.column, name)),
            // Already a list column ([`with_lists`]).
            FeatureKind::MultiCategorical => out.push(col(f.column.as_str()).alias(name)),
            FeatureKind::Numeric => {
                let mut e = col(f.column.as_str()).cast(DataType::Float64);
                if let Some(v) = f.fill {
                    out.push(col(f.column.as_str()).is_null().cast(DataType::Float64).alias(format!("{name}_missing")));
                    e = e.fill_null(lit(v));
                }
                if f.transform == Transform::Log1p {
                    e = e.log1p();
                }
                out.push(e.alias(name));
            }
        }
    }
    out
}

/// The rows of `m` with the source column of each multi-valued feature of `table` replaced
/// by its lists ([`Table::id_lists`](crate::data::table::Table::id_lists)); a list longer than
/// the feature's `max_values` is an error naming its row.
fn with_lists(ctx: &FeatureContext<'_>, table: TableName, m: &Mapped) -> Result<DataFrame> {
    let mut df = m.table.df.clone();
    for f in ctx.declared.iter().filter(|f| f.table == table) {
        let Some(bag) = f.bag() else { continue };
        let lists = m.table.id_lists(&f.column, Some(f.separator()))?;
        if let Some((row, n)) = lists.longer_than(bag.max_values) {
            return Err(Error::input(format!(
                "{} holds {n} values, more than max_values = {} of data.features {:?} (raise it)",
                m.table.at(&f.column, row),
                bag.max_values,
                f.feature_name()
            )));
        }
        df.with_column(lists.to_column(&f.column)).map_err(pl("featurize"))?;
    }
    Ok(df)
}

/// The users columns joined on `user_id`: segment and declared user features.
fn users_plan(ctx: &FeatureContext<'_>) -> Result<Option<LazyFrame>> {
    let Some((m, key)) = ctx.users.mapped.as_ref().and_then(|m| Some((m, m.col(Role::User)?))) else {
        return Ok(None);
    };
    let mut sel = vec![col(key).cast(id_dtype(m, key)).alias("user_id")];
    if let Some(s) = m.col(Role::Segment) {
        sel.push(category_expr(m, s, "segment"));
    }
    sel.extend(declared_exprs(ctx, TableName::Users, m));
    if sel.len() == 1 {
        return Ok(None);
    }
    Ok(Some(with_lists(ctx, TableName::Users, m)?.lazy().select(sel)))
}

/// The places columns joined on `place_id`: category, price level, static
/// rating and declared place features.
fn places_plan(ctx: &FeatureContext<'_>) -> Result<Option<LazyFrame>> {
    let Some((m, key)) = ctx.places.mapped.as_ref().and_then(|m| Some((m, m.col(Role::Place)?))) else {
        return Ok(None);
    };
    let mut sel = vec![col(key).cast(id_dtype(m, key)).alias("place_id")];
    if let Some(c) = m.col(Role::Category) {
        sel.push(category_expr(m, c, "category"));
    }
    if let Some(c) = m.col(Role::PriceLevel) {
        sel.push(col(c).cast(DataType::Float64).fill_null(lit(0f64)).alias("price_level"));
    }
    if let Some(c) = m.col(Role::Rating) {
        sel.push(col(c).cast(DataType::Float64).fill_null(lit(0f64)).alias("place_rating"));
    }
    sel.extend(declared_exprs(ctx, TableName::Places, m));
    if sel.len() == 1 {
        return Ok(None);
    }
    Ok(Some(with_lists(ctx, TableName::Places, m)?.lazy().select(sel)))
}

/// The feature table of `rows` with their `values`: model inputs in [`layout`] order, then
/// the label, the timestamp and (when present) the context location `ctx_lat`/`ctx_lon`,
/// `oracle_p` and `query_id`.
pub fn features(rows: &Rows, values: &RowValues, ctx: &FeatureContext<'_>) -> Result<DataFrame> {
    let mut base = frame(rows.len(), base_columns(rows, values, ctx))?;
    if let Some(d) = &values.declared {
        base.hstack_mut(d.columns()).map_err(pl("featurize"))?;
    }
    let mut plan = base.lazy();
    if let Some(users) = users_plan(ctx)? {
        plan = plan.left_join(users, col("user_id"), col("user_id"));
    }
    if let Some(places) = places_plan(ctx)? {
        plan = plan.left_join(places, col("place_id"), col("place_id"));
    }
    let layout = layout(ctx);
    let mut out: Vec<Expr> = layout.categorical.iter().map(|(c, ..)| col(c.as_str())).collect();
    out.extend(layout.numeric.iter().map(|c| col(c.as_str()).cast(DataType::Float32)));
    out.push(col(LABEL));
    out.push(col("timestamp"));
    if values.ctx.is_some() {
        // Where the request was: what a server's raw request carries (`lat`, `lon`).
        out.extend([col("ctx_lat"), col("ctx_lon")]);
    }
    if rows.oracle && ctx.inter_oracle {
        out.push(col("oracle_p").cast(DataType::Float32));
    }
    if rows.query.is_some() {
        out.push(col("query_id"));
    }
    plan.select(out).collect().map_err(pl("featurize"))
}
