//! `prepare` for an interactions table too large to hold: more than
//! `prepare.max_rows_in_memory` rows of Parquet. The same steps and the same files, to the
//! byte, as the in-memory path of [`super::memory::prepare`], in passes over disk, with
//! memory that grows with the users and places but not with the interactions:
//!
//! 1. The users and places tables are read whole, the interactions a piece (about
//!    [`CHUNK_ROWS`] rows of one row group) at a time, each validated as [`raw::read`] does,
//!    with its labels and context, into a spill file of fixed-width records, in input order.
//!    Without a users or places table, a first pass collects the ids.
//! 2. For popularity negatives (no coordinates) a pass counts each place's training visits.
//! 3. The impressions, in input order with the same random draws, into a second spill file;
//!    every event, and every row's (place, time), also into the bucket of its place
//!    (`place % buckets`, each bucket about `max_rows_in_memory` events).
//! 4. A pass over the rows counts the splits and the test positives; the ranking queries are
//!    drawn among them, a second pass finds them, their rows' (place, time) also go to the
//!    buckets.
//! 5. Each bucket in turn: its events in memory ([`PlaceEvents`]), then its rows' window
//!    statistics written in row order (and the place snapshot's).
//! 6. The rows once more, in order: each row's statistics are the next record of its place's
//!    bucket. Each split is featurized and written a chunk at a time.
//!
//! With `context = "previous_visit"`, step 1 also writes each visit to the bucket of its
//! user (`user % buckets`); each bucket's users' visits in memory give every interaction's
//! previous visit ([`context::previous_visit`]), and the spill file is rewritten with it.
//!
//! Not streamed yet (read whole, as before): CSV interactions, a role's column held in a
//! `key=value` folder, and declared interaction features. A users or places section read
//! from the interactions file is gathered a piece at a time too (the first row of each id).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::candidates::{self, Candidates, Dropped, Impressions};
use super::context::{self, ContextKind};
use super::events::{self, EventChunk, EventWriter};
use super::feature_files::{CHUNK_ROWS, SplitWriter, write_split};
use super::featurize::{self, FeatureContext, RowValues, Rows};
use super::finish::{self, Finish, PrepareSummary, TrainSample};
use super::history::{UserHistory, place_categories};
use super::labels::{self, LabelSource};
use super::spill::{Bytes, Reader, Record, Writer};
use super::splits::{self, SplitCounts};
use super::window::{self, PlaceEvents, WindowStats};
use crate::data::chunks::pieces;
use crate::data::raw::{self, Places, Streamed, Users};
use crate::data::schema::{FileFormat, FilesConfig, Role, TableName};
use crate::data::table::{Table, list_files, location_sha256, parquet_footer};
use crate::data::timespan::TimeSpan;
use crate::progress::Progress;
use crate::recipe::PrepareConfig;
use reco_runtime::artifact::ArtifactWriter;
use reco_runtime::artifact::spec::Ids;
use reco_runtime::error::{Error, IoContext, Result};
use reco_runtime::features::history::HistoryStats;
use reco_runtime::rng::Rng;

/// An interactions table to stream: its pieces in file order.
pub struct Plan {
    location: PathBuf,
    /// Every file with its rows.
    files: Vec<(PathBuf, usize)>,
    /// Rows `offset..offset + rows` of a file: `(file, offset, rows)`.
    pieces: Vec<(PathBuf, usize, usize)>,
    rows: usize,
    /// The columns of the files stacked, without rows ([`Table::schema_of`]).
    schema: Table,
}

impl Plan {
    fn log<'a>(&'a self, sha256: &'a str) -> raw::Log<'a> {
        raw::Log { location: &self.location, sha256, files: &self.files, pieces: &self.pieces, schema: &self.schema.df }
    }
}

/// The plan to stream the interactions, or `None` to read them whole: at most
/// `max_rows_in_memory` rows, or a case the streamed path does not cover (module header).
pub fn plan(data: &FilesConfig, cfg: &PrepareConfig) -> Result<Option<Plan>> {
    if data.features.iter().any(|f| f.table == TableName::Interactions)
        || data.interactions.format == Some(FileFormat::Csv)
    {
        return Ok(None);
    }
    let Some(location) = raw::location(data, TableName::Interactions)? else { return Ok(None) };
    let files = list_files(&location)?;
    let parquet =
        |f: &Path| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"));
    // Folder keys are not read as columns here: a role's column in a `key=value` folder, or a
    // file column that a folder shadows (an error), takes the whole-table reader.
    let mut role_columns: Vec<String> = TableName::Interactions
        .roles()
        .iter()
        .map(|r| data.interactions.columns.get(r).map_or(r.default_column(), String::as_str).to_string())
        .collect();
    // Users or places sections read from the interactions file read their mapped columns too.
    for name in [TableName::Users, TableName::Places].into_iter().filter(|&n| raw::shares_interactions_file(data, n)) {
        if let Some(t) = data.table(name) {
            role_columns.extend(t.columns.into_values());
        }
    }
    if files.is_empty()
        || files.iter().any(|(f, hive)| !parquet(f) || hive.iter().any(|(k, _)| role_columns.contains(k)))
    {
        return Ok(None);
    }
    let (mut list, mut sizes, mut rows) = (Vec::new(), Vec::new(), 0);
    for (file, hive) in &files {
        let (groups, names) = parquet_footer(file)?;
        if hive.iter().any(|(k, _)| names.contains(k)) {
            return Ok(None);
        }
        sizes.push((file.clone(), groups.iter().sum()));
        for (offset, n) in pieces(&groups, CHUNK_ROWS).into_iter().filter(|p| p.1 > 0) {
            list.push((file.clone(), offset, n));
            rows += n;
        }
    }
    if rows == 0 || rows <= cfg.max_rows_in_memory {
        return Ok(None);
    }
    if rows >= u32::MAX as usize {
        return Err(Error::input(format!(
            "{}: {rows} interactions, more than prepare handles in one run ({}); prepare parts of the log separately, or use the Spark job",
            location.display(),
            u32::MAX - 1
        )));
    }
    let schema = Table::schema_of(&location)?;
    Ok(Some(Plan { location, files: sizes, pieces: merge_pieces(list), rows, schema }))
}

/// Consecutive pieces of one file joined up to about [`CHUNK_ROWS`] rows (files written with
/// small row groups), so each read is worth opening the file for.
fn merge_pieces(list: Vec<(PathBuf, usize, usize)>) -> Vec<(PathBuf, usize, usize)> {
    let mut out: Vec<(PathBuf, usize, usize)> = Vec::new();
    for (file, offset, rows) in list {
        match out.last_mut() {
            Some((f, o, n)) if *f == file && *o + *n == offset && *n + rows <= CHUNK_ROWS => *n += rows,
            _ => out.push((file, offset, rows)),
        }
    }
    out
}

/// One interaction as step 1 resolves it.
#[derive(Debug, Clone, Copy)]
struct Inter {
    user: u32,
    place: u32,
    ts: i64,
    local_ts: i64,
    label: f32,
    /// NaN: none.
    rating: f64,
    /// NaN: none.
    oracle: f64,
    /// Context location ((0, 0) without one, as the in-memory path has it).
    lat: f64,
    lon: f64,
}

impl Record for Inter {
    const BYTES: usize = 60;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend(self.user.to_ne_bytes());
        out.extend(self.place.to_ne_bytes());
        out.extend(self.ts.to_ne_bytes());
        out.extend(self.local_ts.to_ne_bytes());
        out.extend(self.label.to_ne_bytes());
        for v in [self.rating, self.oracle, self.lat, self.lon] {
            out.extend(v.to_ne_bytes());
        }
    }
    fn get(b: &mut Bytes<'_>) -> Self {
        let (user, place, ts, local_ts, label) = (b.u32(), b.u32(), b.i64(), b.i64(), b.f32());
        Self { user, place, ts, local_ts, label, rating: b.f64(), oracle: b.f64(), lat: b.f64(), lon: b.f64() }
    }
}

/// One row of a feature file before featurization.
#[derive(Debug, Clone, Copy)]
struct Row {
    src: u32,
    place: u32,
    ts: i64,
    label: f32,
}

impl Record for Row {
    const BYTES: usize = 20;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend(self.src.to_ne_bytes());
        out.extend(self.place.to_ne_bytes());
        out.extend(self.ts.to_ne_bytes());
        out.extend(self.label.to_ne_bytes());
    }
    fn get(b: &mut Bytes<'_>) -> Self {
        Self { src: b.u32(), place: b.u32(), ts: b.i64(), label: b.f32() }
    }
}

/// A place at a moment: an event (`value` its label, `rating` NaN when none) or a row
/// whose window statistics are wanted.
#[derive(Debug, Clone, Copy)]
struct At {
    place: u32,
    ts: i64,
    value: f32,
    rating: f64,
}

impl Record for At {
    const BYTES: usize = 24;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend(self.place.to_ne_bytes());
        out.extend(self.ts.to_ne_bytes());
        out.extend(self.value.to_ne_bytes());
        out.extend(self.rating.to_ne_bytes());
    }
    fn get(b: &mut Bytes<'_>) -> Self {
        Self { place: b.u32(), ts: b.i64(), value: b.f32(), rating: b.f64() }
    }
}

/// A visit in its user's bucket (`context = "previous_visit"`).
#[derive(Debug, Clone, Copy)]
struct UserVisit {
    user: u32,
    place: u32,
    ts: i64,
    label: f32,
}

impl Record for UserVisit {
    const BYTES: usize = 20;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend(self.user.to_ne_bytes());
        out.extend(self.place.to_ne_bytes());
        out.extend(self.ts.to_ne_bytes());
        out.extend(self.label.to_ne_bytes());
    }
    fn get(b: &mut Bytes<'_>) -> Self {
        Self { user: b.u32(), place: b.u32(), ts: b.i64(), label: b.f32() }
    }
}

/// The place of a previous visit (`u32::MAX`: none).
struct Prev(u32);

impl Record for Prev {
    const BYTES: usize = 4;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend(self.0.to_ne_bytes());
    }
    fn get(b: &mut Bytes<'_>) -> Self {
        Self(b.u32())
    }
}

impl Record for WindowStats {
    const BYTES: usize = 16;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend(self.impressions.to_ne_bytes());
        out.extend(self.visits.to_ne_bytes());
        out.extend(self.mean_rating.unwrap_or(f64::NAN).to_ne_bytes());
    }
    fn get(b: &mut Bytes<'_>) -> Self {
        let (impressions, visits, mean) = (b.u32(), b.u32(), b.f64());
        Self { impressions, visits, mean_rating: (!mean.is_nan()).then_some(mean) }
    }
}

impl Record for HistoryStats {
    const BYTES: usize = 24;
    fn put(&self, out: &mut Vec<u8>) {
        for v in [self.visits, self.place_visits, self.place_visits_w, self.category_visits] {
            out.extend(v.to_ne_bytes());
        }
        out.extend(self.since_last.unwrap_or(i64::MIN).to_ne_bytes());
    }
    fn get(b: &mut Bytes<'_>) -> Self {
        let (visits, place_visits, place_visits_w, category_visits, last) =
            (b.u32(), b.u32(), b.u32(), b.u32(), b.i64());
        Self { visits, place_visits, place_visits_w, category_visits, since_last: (last != i64::MIN).then_some(last) }
    }
}

/// Buckets of places (or users) at most: a bucket's files of one kind are open at once, and a
/// bucket holds about `max_rows_in_memory` events up to `MAX_BUCKETS * max_rows_in_memory`
/// interactions, more past that.
const MAX_BUCKETS: usize = 128;

/// The spill files of one run, in the staging directory.
struct Spill {
    dir: PathBuf,
    /// Place buckets.
    buckets: usize,
    /// User buckets (`context = "previous_visit"`).
    user_buckets: usize,
}

impl Spill {
    /// The spill folder in the staging directory, with as many buckets as the rows need (at
    /// most `MAX_BUCKETS` files of a kind are open at once).
    fn create(
        writer: &ArtifactWriter,
        plan: &Plan,
        cfg: &PrepareConfig,
        (users, places): (usize, usize),
    ) -> Result<Self> {
        let budget = cfg.max_rows_in_memory.max(1000);
        let buckets = |n: usize| plan.rows.div_ceil(budget).clamp(1, n.clamp(1, MAX_BUCKETS));
        let spill = Self { dir: writer.path("spill"), buckets: buckets(places), user_buckets: buckets(users) };
        std::fs::create_dir_all(&spill.dir).at(&spill.dir)?;
        Ok(spill)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.bin"))
    }

    fn bucket(&self, place: u32) -> usize {
        place as usize % self.buckets
    }

    fn user_bucket(&self, user: u32) -> usize {
        user as usize % self.user_buckets
    }

    fn writers<R: Record>(&self, name: &str) -> Result<Vec<Writer<R>>> {
        self.writers_of(name, self.buckets)
    }

    fn writers_of<R: Record>(&self, name: &str, buckets: usize) -> Result<Vec<Writer<R>>> {
        (0..buckets).map(|b| Writer::create(&self.path(&format!("{name}-{b}")))).collect()
    }

    fn readers<R: Record>(&self, name: &str) -> Result<Vec<Reader<R>>> {
        self.readers_of(name, self.buckets)
    }

    fn readers_of<R: Record>(&self, name: &str, buckets: usize) -> Result<Vec<Reader<R>>> {
        (0..buckets).map(|b| Reader::open(&self.path(&format!("{name}-{b}")))).collect()
    }
}

/// Step 1's findings.
struct Read {
    labels: LabelSource,
    context: Option<ContextKind>,
    /// Earliest and latest interaction.
    span: (i64, i64),
    /// Visits per place, all time.
    visits: Vec<u32>,
    /// The first interaction (the place snapshot's user and context).
    first: Option<Inter>,
}

/// Streams `plan`'s interactions through `prepare`'s steps into `out_dir`.
pub fn prepare(
    data: &FilesConfig,
    plan: Plan,
    out_dir: &Path,
    cfg: &PrepareConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<PrepareSummary> {
    let name = plan.location.display().to_string();
    let sha256 = location_sha256(&plan.location)?;
    let log = plan.log(&sha256);
    let mut streamed = Streamed::open(data, &log, plan.schema.empty_copy(&name))?;
    let (users, places) = dimensions(&log, &mut streamed)?;
    let mut sources = streamed.sources.clone();
    sources.extend(Streamed::declared(data, &users, &places)?);
    let writer = ArtifactWriter::create(out_dir)?;
    let spill = Spill::create(&writer, &plan, cfg, (users.ids.len(), places.ids.len()))?;
    progress.log(&format!(
        "prepare: {name}: {} interactions, more than prepare.max_rows_in_memory = {}: streaming them through disk in {} pieces, window statistics in {} buckets",
        plan.rows,
        cfg.max_rows_in_memory,
        plan.pieces.len(),
        spill.buckets
    ));
    progress.begin("prepare", 6);
    let mut read = read_interactions(data, &log, &streamed, (&users, &places), &spill)?;
    if read.context == Some(ContextKind::PreviousVisit) {
        previous_visits(&spill, &places, plan.rows)?;
        read.first = Some(Reader::<Inter>::open(&spill.path("inter"))?.next_record()?);
    }
    progress.advance(1);

    let candidates = match Candidates::radius(&places, read.context.is_some(), cfg) {
        Some(c) => c,
        None => popularity(&spill, plan.rows, places.ids.len(), splits::time_cuts(read.span, cfg)[0])?,
    };
    let mut rng = Rng::derive(seed, "prepare");
    let oracle = streamed.roles.contains_key(&Role::Oracle) && read.labels != LabelSource::Implicit;
    let imp = Impressions::new(&places, read.labels, &candidates, cfg);
    let (rows, span, dropped) = impressions(&spill, plan.rows, &imp, (oracle, cfg.history), &mut rng)?;
    finish::refuse_no_rows(&name, rows, dropped, cfg)?;
    finish::log_drops(progress, &name, plan.rows, dropped, cfg);
    progress.advance(1);

    let cuts = splits::time_cuts(span, cfg);
    let counts = split_counts(&spill, rows, cuts)?;
    splits::check_splits(&name, &counts, span, cuts)?;
    let has_ctx = read.context.is_some();
    let test = (rows, cuts, counts[2].positives);
    let (ranking, ranking_inter) = ranking_set(&spill, test, (has_ctx, cfg.history), &candidates, cfg, &mut rng)?;
    progress.advance(1);

    let implicit = read.labels == LabelSource::Implicit;
    let fctx = feature_context(data, (&users, &places), &streamed, (has_ctx, implicit), cfg);
    let snapshot_ts = read.span.1.saturating_add(1);
    let snapshot = window_stats(&spill, places.ids.len(), fctx.window, snapshot_ts)?;
    if cfg.history {
        history_stats(&spill, &place_categories(&places)?, fctx.window)?;
    }
    let sample = TrainSample::new(&fctx, splits::calibration_rows(counts[0].rows, cfg.calibration_rows, &mut rng));
    let (mut row_counts, sample) = write_splits(&spill, &writer, &fctx, (rows, oracle, cuts), sample)?;
    let n = write_ranking(&writer, &fctx, (&ranking, &ranking_inter), &spill)?;
    write_events(&spill, &writer, (&users, &places), plan.rows)?;
    events::write_settings(&writer, data, &fctx, snapshot_ts)?;
    row_counts.insert("ranking".into(), n);
    progress.advance(1);

    let snapshot_rows = finish::snapshot_rows(places.ids.len(), snapshot_ts);
    let snapshot_values = snapshot_values(read.first, places.ids.len(), (has_ctx, cfg.history), snapshot);
    let places_df = finish::place_snapshot(&fctx, &snapshot_rows, &snapshot_values, read.visits)?;
    std::fs::remove_dir_all(&spill.dir).at(&spill.dir)?;
    let summary = PrepareSummary::new(out_dir, row_counts, (read.labels, read.context), dropped, cuts)
        .with_inputs(streamed.hashes.clone(), snapshot_ts);
    let done = Finish { writer, sample, places: places_df, sources, summary };
    done.write(data, out_dir, cfg, seed, progress)
}

/// The users and places, from their tables or (without one) the ids the interactions name,
/// in first-seen order.
/// What the feature code needs to know of the streamed tables.
fn feature_context<'a>(
    data: &'a FilesConfig,
    (users, places): (&'a Users, &'a Places),
    streamed: &Streamed,
    (has_ctx, implicit): (bool, bool),
    cfg: &PrepareConfig,
) -> FeatureContext<'a> {
    FeatureContext {
        users,
        places,
        inter: None,
        inter_rating: streamed.roles.contains_key(&Role::Rating),
        inter_oracle: streamed.roles.contains_key(&Role::Oracle),
        has_ctx,
        window: window::window_seconds(cfg),
        declared: &data.features,
        implicit,
        history: cfg.history,
    }
}

/// The ranking set's feature file; its rows.
fn write_ranking(
    writer: &ArtifactWriter,
    fctx: &FeatureContext<'_>,
    (ranking, inter): (&Rows, &[Inter]),
    spill: &Spill,
) -> Result<usize> {
    let values = ranking_values(ranking, inter, spill, fctx)?;
    let path = writer.path("ranking.parquet");
    write_split(ranking, fctx, &path, |r, start| Ok(values.slice(start..start + r.len())), |_, _| Ok(()))
}

/// The place snapshot's values: one row per place, with interaction 0's user, local time and
/// context location (the snapshot keeps none of them) and the window statistics at the snapshot.
fn snapshot_values(
    first: Option<Inter>,
    places: usize,
    (has_ctx, history): (bool, bool),
    stats: Vec<WindowStats>,
) -> RowValues {
    RowValues {
        user: vec![first.map_or(0, |f| f.user); places],
        local_ts: vec![first.map_or(0, |f| f.local_ts); places],
        ctx: has_ctx.then(|| {
            let (lat, lon) = first.map_or((0.0, 0.0), |f| (f.lat, f.lon));
            (vec![lat; places], vec![lon; places])
        }),
        stats,
        // The snapshot keeps no user's history: placeholders, left out of it.
        history: if history { vec![HistoryStats::default(); places] } else { Vec::new() },
        oracle: None,
        declared: None,
    }
}

fn dimensions(log: &raw::Log<'_>, streamed: &mut Streamed) -> Result<(Users, Places)> {
    let (users_t, places_t) = match (streamed.users.take(), streamed.places.take()) {
        (Some(u), Some(p)) => return Ok((u, p)),
        pair => pair,
    };
    let ids_columns: Vec<String> =
        [Role::User, Role::Place].iter().filter_map(|r| streamed.roles.get(r).cloned()).collect();
    let (mut users, mut places) = (None, None);
    let (mut seen_users, mut seen_places) = (HashSet::new(), HashSet::new());
    for piece in log.pieces {
        let [u, p] = streamed.ids(log.read(piece, ids_columns.clone())?)?;
        // Only the side without a table: the other's ids come from its table.
        if users_t.is_none() {
            raw::extend_distinct(&mut users, &mut seen_users, &u)?;
        }
        if places_t.is_none() {
            raw::extend_distinct(&mut places, &mut seen_places, &p)?;
        }
    }
    let none = || Ids::Int(vec![]);
    Ok((
        users_t.unwrap_or_else(|| Users::of_ids(users.unwrap_or_else(none))),
        places_t.unwrap_or_else(|| Places::of_ids(places.unwrap_or_else(none))),
    ))
}

/// Step 1: every interaction validated and resolved, into the spill file `inter`.
fn read_interactions(
    data: &FilesConfig,
    log: &raw::Log<'_>,
    streamed: &Streamed,
    (users, places): (&Users, &Places),
    spill: &Spill,
) -> Result<Read> {
    let name = log.location.display().to_string();
    let mut out = Writer::<Inter>::create(&spill.path("inter"))?;
    let mut read = Read {
        labels: LabelSource::Implicit,
        context: None,
        span: (i64::MAX, i64::MIN),
        visits: vec![0; places.ids.len()],
        first: None,
    };
    let (mut per_user, mut at_place, mut visits) = (Vec::new(), 0, 0);
    let mut by_user = spill.writers_of::<UserVisit>("users", spill.user_buckets)?;
    let index = raw::IdIndex::new(users, places);
    let mut span = None;
    for piece in log.pieces {
        let mut inter = streamed.chunk(data, log.read(piece, streamed.columns.clone())?, &index)?;
        span = TimeSpan::merge(span, inter.span.take());
        let (label, labels) = labels::chunk_labels(data, &inter)?;
        let kind = context::context_kind(data, users, places, &inter)?;
        let previous = kind == Some(ContextKind::PreviousVisit);
        // The previous visit may be in another piece: found once every piece is read.
        let ctx = if previous { None } else { context::context(data, users, places, &inter, &label)? };
        if labels == LabelSource::Implicit {
            labels::count_users(&mut per_user, &inter.user);
        }
        if let Some(c) = ctx.as_ref().filter(|c| c.kind == ContextKind::Interaction) {
            let (a, v) = context::at_place_counts(places, &inter.place, c, &label);
            (at_place, visits) = (at_place + a, visits + v);
        }
        (read.labels, read.context) = (labels, kind);
        for (i, &y) in label.iter().enumerate() {
            let (lat, lon) = match &ctx {
                Some(c) => (c.lat[i], c.lon[i]),
                None if previous => (f64::NAN, f64::NAN),
                None => (0.0, 0.0),
            };
            let r = Inter {
                user: inter.user[i],
                place: inter.place[i],
                ts: inter.ts[i],
                local_ts: inter.local_ts[i],
                label: y,
                rating: inter.rating.as_ref().map_or(f64::NAN, |r| r[i]),
                oracle: inter.oracle.as_ref().map_or(f64::NAN, |o| o[i]),
                lat,
                lon,
            };
            if previous {
                let v = UserVisit { user: r.user, place: r.place, ts: r.ts, label: y };
                by_user[r.user as usize % spill.user_buckets].push(&v)?;
            }
            read.span = (read.span.0.min(r.ts), read.span.1.max(r.ts));
            read.visits[r.place as usize] += u32::from(y > 0.5);
            read.first.get_or_insert(r);
            out.push(&r)?;
        }
    }
    for w in by_user {
        w.finish()?;
    }
    out.finish()?;
    if let Some(s) = &span {
        s.check(data.timestamp_unit)?;
    }
    if read.labels == LabelSource::Implicit {
        labels::refuse_single_visits(&name, &per_user)?;
    }
    context::refuse_at_place(&name, at_place, visits)
        .and_then(|()| labels::check_declared_leakage(data, read.labels))
        .map(|()| read)
}

/// Step 1 for `context = "previous_visit"`: each bucket's users' visits in memory, the
/// place of each one's previous visit (`prev-b`, in order); then `inter` is rewritten with
/// those places' coordinates as context (NaN: no previous visit).
fn previous_visits(spill: &Spill, places: &Places, n: usize) -> Result<()> {
    let ub = spill.user_buckets;
    for b in 0..ub {
        let path = spill.path(&format!("users-{b}"));
        let mut input = Reader::<UserVisit>::open(&path)?;
        let (mut user, mut place, mut ts, mut label) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..records::<UserVisit>(&path)? {
            let v = input.next_record()?;
            user.push(v.user);
            place.push(v.place);
            ts.push(v.ts);
            label.push(v.label);
        }
        let mut out = Writer::<Prev>::create(&spill.path(&format!("prev-{b}")))?;
        for p in context::previous_visit(&user, &ts, &place, Some(&label)) {
            out.push(&Prev(p.unwrap_or(u32::MAX)))?;
        }
        out.finish()?;
    }
    let (lat, lon) = places.coords.as_ref().ok_or_else(|| Error::Internal("no coordinates".into()))?;
    let mut prev = spill.readers_of::<Prev>("prev", ub)?;
    let mut input = Reader::<Inter>::open(&spill.path("inter"))?;
    let (to, from) = (spill.path("inter-ctx"), spill.path("inter"));
    let mut out = Writer::<Inter>::create(&to)?;
    for _ in 0..n {
        let mut r = input.next_record()?;
        let p = prev[r.user as usize % ub].next_record()?.0 as usize;
        (r.lat, r.lon) = if p == u32::MAX as usize { (f64::NAN, f64::NAN) } else { (lat[p], lon[p]) };
        out.push(&r)?;
    }
    out.finish()?;
    std::fs::rename(&to, &from).at(&from)
}

/// Step 2 (popularity negatives): each place's visits before `cut`, plus one.
fn popularity(spill: &Spill, n: usize, places: usize, cut: i64) -> Result<Candidates> {
    let mut weights = vec![1.0f64; places];
    let mut input = Reader::<Inter>::open(&spill.path("inter"))?;
    for _ in 0..n {
        let r = input.next_record()?;
        candidates::add_popularity(&mut weights, &[r.place], &[r.label], &[r.ts], cut);
    }
    Ok(Candidates::popularity(&weights))
}

/// Step 3: the rows (`rows`), every event into its place's bucket (`events-b`) and every
/// row's place and time too (`keys-b`); with history features, every visit into its user's
/// bucket (`hvisits-b`) and every row's user, place and time too (`hkeys-b`). Returns the rows written, their time span and what
/// was dropped.
fn impressions(
    spill: &Spill,
    n: usize,
    imp: &Impressions<'_>,
    (oracle, history): (bool, bool),
    rng: &mut Rng,
) -> Result<(usize, (i64, i64), Dropped)> {
    let mut input = Reader::<Inter>::open(&spill.path("inter"))?;
    let mut out = Writer::<Row>::create(&spill.path("rows"))?;
    let (mut events, mut keys) = (spill.writers::<At>("events")?, spill.writers::<At>("keys")?);
    let ub = if history { spill.user_buckets } else { 0 };
    let (mut visits, mut hkeys) =
        (spill.writers_of::<UserVisit>("hvisits", ub)?, spill.writers_of::<UserVisit>("hkeys", ub)?);
    let (mut rows, mut dropped, mut span) = (Rows::new(oracle, false), Dropped::default(), (i64::MAX, i64::MIN));
    for src in 0..n {
        let r = input.next_record()?;
        events[spill.bucket(r.place)].push(&At { place: r.place, ts: r.ts, value: r.label, rating: r.rating })?;
        if history && r.label > 0.5 {
            visits[spill.user_bucket(r.user)].push(&UserVisit {
                user: r.user,
                place: r.place,
                ts: r.ts,
                label: r.label,
            })?;
        }
        rows.clear();
        imp.push(&mut rows, &mut dropped, (src, r.place, r.ts, r.label), (r.lat, r.lon), rng);
        for j in 0..rows.len() {
            let row = Row { src: rows.src[j], place: rows.place[j], ts: rows.ts[j], label: rows.label[j] };
            keys[spill.bucket(row.place)].push(&At { place: row.place, ts: row.ts, value: 0.0, rating: f64::NAN })?;
            if history {
                hkeys[spill.user_bucket(r.user)].push(&UserVisit {
                    user: r.user,
                    place: row.place,
                    ts: row.ts,
                    label: 0.0,
                })?;
            }
            span = (span.0.min(row.ts), span.1.max(row.ts));
            out.push(&row)?;
        }
    }
    for w in events.into_iter().chain(keys) {
        w.finish()?;
    }
    for w in visits.into_iter().chain(hkeys) {
        w.finish()?;
    }
    Ok((out.finish()?.1 as usize, span, dropped))
}

/// A row's interaction, place and time.
type Visit = (u32, u32, i64);

/// Step 4: rows per split, and how many rows of the test split are positives.
fn split_counts(spill: &Spill, rows: usize, cuts: [i64; 2]) -> Result<[SplitCounts; 3]> {
    let mut input = Reader::<Row>::open(&spill.path("rows"))?;
    let mut counts = [SplitCounts::default(); 3];
    for _ in 0..rows {
        let r = input.next_record()?;
        let s = splits::split_of(r.ts, cuts);
        counts[s].rows += 1;
        counts[s].positives += usize::from(r.label > 0.5);
    }
    Ok(counts)
}

/// Step 4: the test positives of ranks `picks` (ascending) among the test positives.
fn picked_positives(spill: &Spill, rows: usize, cuts: [i64; 2], picks: &[usize]) -> Result<Vec<Visit>> {
    let mut input = Reader::<Row>::open(&spill.path("rows"))?;
    let (mut out, mut rank) = (Vec::with_capacity(picks.len()), 0);
    for _ in 0..rows {
        if out.len() == picks.len() {
            break;
        }
        let r = input.next_record()?;
        if splits::split_of(r.ts, cuts) == 2 && r.label > 0.5 {
            if picks[out.len()] == rank {
                out.push((r.src, r.place, r.ts));
            }
            rank += 1;
        }
    }
    Ok(out)
}

/// Step 4: the ranking queries, with the interaction of each row; their rows' places and
/// times go to the buckets (`rank-b`), with their users to the user buckets (`hrank-b`).
fn ranking_set(
    spill: &Spill,
    (rows, cuts, positives): (usize, [i64; 2], usize),
    (has_ctx, history): (bool, bool),
    candidates: &Candidates,
    cfg: &PrepareConfig,
    rng: &mut Rng,
) -> Result<(Rows, Vec<Inter>)> {
    let picked = picked_positives(spill, rows, cuts, &splits::ranking_picks(positives, cfg, rng))?;
    let mut input = Reader::<Inter>::open(&spill.path("inter"))?;
    let (mut ranking, mut inter) = (Rows::new(false, true), Vec::new());
    for (q, &(src, place, ts)) in picked.iter().enumerate() {
        input.seek(u64::from(src))?;
        let r = input.next_record()?;
        let at = if has_ctx { (r.lat, r.lon) } else { (0.0, 0.0) };
        let before = ranking.len();
        splits::push_query(&mut ranking, q, (src as usize, place, ts), at, candidates, cfg, rng);
        inter.extend(std::iter::repeat_n(r, ranking.len() - before));
    }
    let mut keys = spill.writers::<At>("rank")?;
    let mut hkeys = spill.writers_of::<UserVisit>("hrank", if history { spill.user_buckets } else { 0 })?;
    for ((&place, &ts), r) in ranking.place.iter().zip(&ranking.ts).zip(&inter) {
        keys[spill.bucket(place)].push(&At { place, ts, value: 0.0, rating: f64::NAN })?;
        if history {
            hkeys[spill.user_bucket(r.user)].push(&UserVisit { user: r.user, place, ts, label: 0.0 })?;
        }
    }
    for w in keys {
        w.finish()?;
    }
    for w in hkeys {
        w.finish()?;
    }
    Ok((ranking, inter))
}

/// Step 5: each bucket's events in memory, and the window statistics of its rows
/// (`stats-b`), of its ranking rows (`rankstats-b`) and of its places at `snapshot_ts`
/// (returned, per place).
fn window_stats(spill: &Spill, places: usize, window: i64, snapshot_ts: i64) -> Result<Vec<WindowStats>> {
    let b_n = spill.buckets;
    let mut snapshot = vec![WindowStats { impressions: 0, visits: 0, mean_rating: None }; places];
    for b in 0..b_n {
        let mut events = Vec::new();
        let (path, count) = (spill.path(&format!("events-{b}")), records::<At>(&spill.path(&format!("events-{b}")))?);
        let mut input = Reader::<At>::open(&path)?;
        for _ in 0..count {
            let e = input.next_record()?;
            events.push((e.place as usize / b_n, e.ts, e.value > 0.5, Some(e.rating)));
        }
        let index = PlaceEvents::new(places.div_ceil(b_n), events.into_iter());
        for (keys, stats) in [("keys", "stats"), ("rank", "rankstats")] {
            let key_path = spill.path(&format!("{keys}-{b}"));
            let mut input = Reader::<At>::open(&key_path)?;
            let mut out = Writer::<WindowStats>::create(&spill.path(&format!("{stats}-{b}")))?;
            for _ in 0..records::<At>(&key_path)? {
                let k = input.next_record()?;
                out.push(&index.window(k.place as usize / b_n, k.ts, window))?;
            }
            out.finish()?;
        }
        for p in (b..places).step_by(b_n) {
            snapshot[p] = index.window(p / b_n, snapshot_ts, window);
        }
    }
    Ok(snapshot)
}

/// Step 5 (history features): each user bucket's visits in memory, and the history of its
/// rows (`hstats-b`) and of its ranking rows (`hrankstats-b`), in order.
fn history_stats(spill: &Spill, categories: &[u32], window: i64) -> Result<()> {
    for b in 0..spill.user_buckets {
        let path = spill.path(&format!("hvisits-{b}"));
        let mut input = Reader::<UserVisit>::open(&path)?;
        let mut visits = Vec::new();
        for _ in 0..records::<UserVisit>(&path)? {
            let v = input.next_record()?;
            visits.push((v.user, v.place, v.ts));
        }
        let index = UserHistory::new(visits.into_iter(), categories.to_vec(), window);
        for (keys, stats) in [("hkeys", "hstats"), ("hrank", "hrankstats")] {
            let key_path = spill.path(&format!("{keys}-{b}"));
            let mut input = Reader::<UserVisit>::open(&key_path)?;
            let mut out = Writer::<HistoryStats>::create(&spill.path(&format!("{stats}-{b}")))?;
            for _ in 0..records::<UserVisit>(&key_path)? {
                let k = input.next_record()?;
                out.push(&index.stats(k.user, k.place, k.ts))?;
            }
            out.finish()?;
        }
    }
    Ok(())
}

/// Every real event into `events.parquet`, in input order (`inter`).
fn write_events(spill: &Spill, writer: &ArtifactWriter, (users, places): (&Users, &Places), n: usize) -> Result<()> {
    let mut input = Reader::<Inter>::open(&spill.path("inter"))?;
    let mut out = EventWriter::create(writer, users, places)?;
    let mut chunk = EventChunk::default();
    for _ in 0..n {
        let r = input.next_record()?;
        chunk.push((r.user, r.place, r.ts, r.label > 0.5), Some(r.rating));
        if chunk.len() == CHUNK_ROWS {
            out.push(&mut chunk)?;
        }
    }
    out.push(&mut chunk)?;
    out.finish()
}

/// Records in a spill file, from its length.
fn records<R: Record>(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).at(path)?.len() / R::BYTES as u64)
}

/// Step 6: the three splits, each a chunk at a time, the training chunks through `sample`.
/// Returns the rows of each split.
fn write_splits(
    spill: &Spill,
    writer: &ArtifactWriter,
    fctx: &FeatureContext<'_>,
    (rows, oracle, cuts): (usize, bool, [i64; 2]),
    mut sample: TrainSample,
) -> Result<(BTreeMap<String, usize>, TrainSample)> {
    let names = ["train", "valid", "test"];
    let mut splits: Vec<SplitBuffer> = names
        .iter()
        .map(|n| SplitBuffer::new(&writer.path(&format!("{n}.parquet")), oracle, fctx))
        .collect::<Result<_>>()?;
    let mut input = Reader::<Row>::open(&spill.path("rows"))?;
    let mut inter_in = Reader::<Inter>::open(&spill.path("inter"))?;
    let mut stats = spill.readers::<WindowStats>("stats")?;
    let mut hstats = spill.readers_of::<HistoryStats>("hstats", if fctx.history { spill.user_buckets } else { 0 })?;
    // Rows come in the order of their interactions: `current` is the interaction of the row.
    let mut current: Option<(u32, Inter)> = None;
    for _ in 0..rows {
        let r = input.next_record()?;
        while current.is_none_or(|(at, _)| at < r.src) {
            let at = current.map_or(0, |(a, _)| a + 1);
            current = Some((at, inter_in.next_record()?));
        }
        let Some((_, i)) = current else { return Err(Error::Internal("no interaction".into())) };
        let s = splits::split_of(r.ts, cuts);
        let w = stats[spill.bucket(r.place)].next_record()?;
        let h = if fctx.history { Some(hstats[spill.user_bucket(i.user)].next_record()?) } else { None };
        splits[s].push(r, &i, (w, h));
        if splits[s].rows.len() == CHUNK_ROWS {
            splits[s].flush(fctx, (s == 0).then_some(&mut sample))?;
        }
    }
    let mut counts = BTreeMap::new();
    for (s, (name, mut split)) in names.into_iter().zip(splits).enumerate() {
        split.flush(fctx, (s == 0).then_some(&mut sample))?;
        counts.insert(name.to_string(), split.out.finish(&Rows::new(oracle, false), fctx)?);
    }
    Ok((counts, sample))
}

/// One split being written: rows and their values since the last chunk.
struct SplitBuffer {
    out: SplitWriter,
    rows: Rows,
    values: RowValues,
    /// Index in the split of the buffer's first row.
    first: usize,
}

impl SplitBuffer {
    fn new(path: &Path, oracle: bool, fctx: &FeatureContext<'_>) -> Result<Self> {
        let mut values = RowValues::empty(fctx)?;
        if !oracle {
            values.oracle = None;
        }
        Ok(Self { out: SplitWriter::create(path)?, rows: Rows::new(oracle, false), values, first: 0 })
    }

    fn push(&mut self, r: Row, i: &Inter, stats: (WindowStats, Option<HistoryStats>)) {
        self.rows.push_interaction(r.src as usize, r.place, r.ts, r.label);
        push_values(&mut self.values, i, stats);
    }

    /// Featurizes and writes the buffered rows (the training split's also through `sample`).
    fn flush(&mut self, fctx: &FeatureContext<'_>, sample: Option<&mut TrainSample>) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let df = featurize::features(&self.rows, &self.values, fctx)?;
        if let Some(s) = sample {
            s.add(&df, self.first)?;
        }
        self.out.push(&df)?;
        self.first += self.rows.len();
        self.rows.clear();
        self.values.clear();
        Ok(())
    }
}

/// Appends the values a row takes from its interaction `i` and its statistics (window, and
/// history when the rows have it).
fn push_values(values: &mut RowValues, i: &Inter, (stats, history): (WindowStats, Option<HistoryStats>)) {
    values.user.push(i.user);
    values.local_ts.push(i.local_ts);
    if let Some((lat, lon)) = values.ctx.as_mut() {
        lat.push(i.lat);
        lon.push(i.lon);
    }
    values.stats.push(stats);
    values.history.extend(history);
    if let Some(o) = values.oracle.as_mut() {
        o.push(i.oracle);
    }
}

/// The values of the ranking rows, from their interactions and statistics (`rankstats-b`).
fn ranking_values(ranking: &Rows, inter: &[Inter], spill: &Spill, fctx: &FeatureContext<'_>) -> Result<RowValues> {
    let mut stats = spill.readers::<WindowStats>("rankstats")?;
    let mut hstats =
        spill.readers_of::<HistoryStats>("hrankstats", if fctx.history { spill.user_buckets } else { 0 })?;
    let mut values = RowValues { ctx: fctx.has_ctx.then(Default::default), ..RowValues::default() };
    for (j, i) in inter.iter().enumerate() {
        let w = stats[spill.bucket(ranking.place[j])].next_record()?;
        let h = if fctx.history { Some(hstats[spill.user_bucket(i.user)].next_record()?) } else { None };
        push_values(&mut values, i, (w, h));
    }
    Ok(values)
}
