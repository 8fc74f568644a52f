//! `prepare`'s first step: the three tables read as the recipe maps them, validated, with ids
//! resolved to table rows and timestamps to unix seconds plus the local offset of each.
//!
//! Every error names the file, the column (and the recipe key that mapped it), the row and the
//! value. Nothing is written here.

use std::collections::{BTreeMap, HashMap};

use crate::data::io::find_table;
use crate::data::schema::{DeclaredFeature, FeatureKind, FilesConfig, Role, TableConfig, TableName, Transform};
use crate::data::table::{Table, utc_offset_at};
use crate::data::timespan::TimeSpan;
use reco_runtime::artifact::spec::{Ids, Key, SourceColumn};
use reco_runtime::error::{Error, Result};

/// One table with its configuration and the columns its roles resolved to.
pub struct Mapped {
    /// Which table.
    pub name: TableName,
    /// The rows (deduplicated for `dedup` tables).
    pub table: Table,
    /// Role -> column name, for the roles the table has.
    pub roles: BTreeMap<Role, String>,
    /// Whether repeated ids keep their first row (else they are an error).
    dedup: bool,
}

impl Mapped {
    /// The column of a role, when the table has it.
    pub fn col(&self, role: Role) -> Option<&str> {
        self.roles.get(&role).map(String::as_str)
    }

    /// The column of a role the pipeline cannot do without.
    fn required(&self, role: Role) -> Result<&str> {
        self.col(role).ok_or_else(|| {
            Error::input(format!(
                "{}: missing column `{}` (or map it: data.{}.columns.{} = \"<column>\"; present: {})",
                self.table.name,
                role.default_column(),
                self.name.as_str(),
                role.key(),
                self.table.present()
            ))
        })
    }
}

/// Users: one row each.
pub struct Users {
    /// Ids in table order (unique).
    pub ids: Ids,
    /// The table, absent when users are only the ids seen in the interactions.
    pub mapped: Option<Mapped>,
    /// Segment of each user.
    pub segment: Option<Ids>,
    /// Home latitude and longitude (NaN where unknown).
    pub home: Option<(Vec<f64>, Vec<f64>)>,
}

/// Places: one row each.
pub struct Places {
    /// Ids in table order (unique).
    pub ids: Ids,
    /// The table, absent when places are only the ids seen in the interactions.
    pub mapped: Option<Mapped>,
    /// Coordinates of every place, when the table has them.
    pub coords: Option<(Vec<f64>, Vec<f64>)>,
    /// Static rating (NaN where missing).
    pub rating: Option<Vec<f64>>,
}

/// Interactions, with ids resolved to user and place rows.
pub struct Interactions {
    /// The table.
    pub mapped: Mapped,
    /// User row of each interaction.
    pub user: Vec<u32>,
    /// Place row of each interaction.
    pub place: Vec<u32>,
    /// Unix seconds.
    pub ts: Vec<i64>,
    /// Local time as unix seconds (`ts` + the UTC offset in force), for hour and day features.
    pub local_ts: Vec<i64>,
    /// Where the user was, when the table has it.
    pub coords: Option<(Vec<f64>, Vec<f64>)>,
    /// Explicit 0/1 labels.
    pub label: Option<Vec<f32>>,
    /// Rating of the interaction (NaN where missing).
    pub rating: Option<Vec<f64>>,
    /// True visit probability (synthetic data).
    pub oracle: Option<Vec<f64>>,
    /// The earliest and latest interaction (`None`: no rows).
    pub span: Option<TimeSpan>,
}

/// Everything `prepare` reads.
pub struct RawData {
    /// Users.
    pub users: Users,
    /// Places.
    pub places: Places,
    /// Interactions.
    pub inter: Interactions,
    /// sha256 of each table read.
    pub hashes: BTreeMap<String, String>,
    /// Source column and type of every role used.
    pub sources: Vec<SourceColumn>,
}

/// Reads and validates the tables `cfg` describes.
pub fn read(cfg: &FilesConfig) -> Result<RawData> {
    let (mut hashes, mut sources) = (BTreeMap::new(), Vec::new());
    let inter_t = open(cfg, TableName::Interactions)?
        .ok_or_else(|| Error::input("data: no interactions table (set `dir` or [data.interactions] path)"))?;
    let users_t = open(cfg, TableName::Users)?;
    let places_t = open(cfg, TableName::Places)?;
    for m in [Some(&inter_t), users_t.as_ref(), places_t.as_ref()].into_iter().flatten() {
        hashes.insert(m.name.as_str().to_string(), m.table.sha256.clone());
        sources.extend(role_sources(m)?);
    }
    let users = users_t.map(read_users).transpose()?;
    let places = places_t.map(read_places).transpose()?;
    let inter = read_interactions(cfg, inter_t)?;
    if let Some(span) = &inter.span {
        span.check(cfg.timestamp_unit)?;
    }
    // Without a table: the distinct ids of the interactions, in first-seen order.
    let users = users.unwrap_or_else(|| Users::of_ids(distinct(&inter.raw_users)));
    let places = places.unwrap_or_else(|| Places::of_ids(distinct(&inter.raw_places)));
    let inter = inter.resolve(&IdIndex::new(&users, &places))?;
    sources.extend(check_declared(cfg, &users, &places, Some(&inter))?);
    Ok(RawData { users, places, inter, hashes, sources })
}

/// The source column and type of every role a table maps.
fn role_sources(m: &Mapped) -> Result<Vec<SourceColumn>> {
    m.roles
        .iter()
        .map(|(role, column)| {
            Ok(SourceColumn {
                feature: role.key().to_string(),
                table: m.name.as_str().to_string(),
                column: column.clone(),
                dtype: m.table.dtype(column)?,
                derive: None,
            })
        })
        .collect()
}

impl Users {
    /// Users known only by the ids the interactions name.
    pub fn of_ids(ids: Ids) -> Self {
        Self { ids, mapped: None, segment: None, home: None }
    }
}

impl Places {
    /// Places known only by the ids the interactions name.
    pub fn of_ids(ids: Ids) -> Self {
        Self { ids, mapped: None, coords: None, rating: None }
    }
}

/// The interactions table read a chunk at a time ([`Streamed::chunk`]), with the users and
/// places tables read whole. Source columns and hashes are those [`read`] gives.
/// `first` must hold every column of the interactions table.
pub struct Streamed {
    /// Users (`None`: the ids the interactions name, collected by the caller).
    pub users: Option<Users>,
    /// Places (`None`: likewise).
    pub places: Option<Places>,
    /// Interactions roles -> columns.
    pub roles: BTreeMap<Role, String>,
    /// Columns a chunk reads: the roles'.
    pub columns: Vec<String>,
    /// sha256 of each table.
    pub hashes: BTreeMap<String, String>,
    /// Source columns of the roles, interactions first (declared features: [`Streamed::declared`]).
    pub sources: Vec<SourceColumn>,
}

/// Where a table is read from, as [`open`] resolves it (`None`: absent, or read from the
/// interactions file).
pub fn location(cfg: &FilesConfig, name: TableName) -> Result<Option<std::path::PathBuf>> {
    let Some(tc) = cfg.table(name) else { return Ok(None) };
    match (&tc.path, &cfg.dir) {
        (Some(p), _) => Ok(Some(p.clone())),
        (None, Some(dir)) => find_table(dir, name.as_str()),
        (None, None) => Ok(None),
    }
}

/// Whether the users or places section reads its columns from the interactions file (one
/// row per id, the first).
pub fn shares_interactions_file(cfg: &FilesConfig, name: TableName) -> bool {
    name != TableName::Interactions
        && cfg.table(name).is_some_and(|tc| tc.path.is_none())
        && cfg.dir.is_none()
        && cfg.interactions.path.is_some()
}

impl Streamed {
    /// Reads the users and places tables; `first` is the interactions' first chunk (any rows),
    /// for the roles, their types and the hash of `location`.
    pub fn open(cfg: &FilesConfig, log: &Log<'_>, first: Table) -> Result<Self> {
        let roles = resolve_roles(TableName::Interactions, &cfg.interactions, &first, true)?;
        let inter = Mapped { name: TableName::Interactions, table: first, roles, dedup: false };
        let mut hashes = BTreeMap::new();
        hashes.insert("interactions".to_string(), log.sha256.to_string());
        let mut sources = role_sources(&inter)?;
        let mut tables = Vec::new();
        for name in [TableName::Users, TableName::Places] {
            tables.push(match shares_interactions_file(cfg, name) {
                true => Some(open_shared(cfg, name, &inter.table, log)?),
                false => open(cfg, name)?,
            });
        }
        for m in tables.iter().flatten() {
            hashes.insert(m.name.as_str().to_string(), m.table.sha256.clone());
            sources.extend(role_sources(m)?);
        }
        let columns = distinct_columns(&inter.roles);
        // Users first, as `read` does: the same error when both are bad.
        let (places_t, users_t) = (tables.pop().flatten(), tables.pop().flatten());
        let users = users_t.map(read_users).transpose()?;
        let places = places_t.map(read_places).transpose()?;
        Ok(Self { users, places, roles: inter.roles, columns, hashes, sources })
    }

    /// The distinct user and place ids a chunk of the interactions names, in first-seen
    /// order, for tables the recipe does not give.
    pub fn ids(&self, chunk: Table) -> Result<[Ids; 2]> {
        let m = Mapped { name: TableName::Interactions, table: chunk, roles: self.roles.clone(), dedup: false };
        let users = distinct(&m.table.ids(m.required(Role::User)?)?);
        Ok([users, distinct(&m.table.ids(m.required(Role::Place)?)?)])
    }

    /// One chunk of the interactions, validated, ids resolved with `index`.
    pub fn chunk(&self, cfg: &FilesConfig, chunk: Table, index: &IdIndex<'_>) -> Result<Interactions> {
        let m = Mapped { name: TableName::Interactions, table: chunk, roles: self.roles.clone(), dedup: false };
        read_interactions(cfg, m)?.resolve(index)
    }

    /// Checks the declared features (none may be on the interactions table) and returns
    /// their sources.
    pub fn declared(cfg: &FilesConfig, users: &Users, places: &Places) -> Result<Vec<SourceColumn>> {
        check_declared(cfg, users, places, None)
    }
}

/// Distinct ids of `more` not in `seen`, appended to `acc` in first-seen order.
pub fn extend_distinct(acc: &mut Option<Ids>, seen: &mut std::collections::HashSet<String>, more: &Ids) -> Result<()> {
    let fresh: Vec<usize> = (0..more.len()).filter(|&i| seen.insert(more.key(i).to_string())).collect();
    let add = more.take(&fresh);
    match (acc.as_mut(), add) {
        (None, add) => *acc = Some(add),
        (Some(Ids::Int(a)), Ids::Int(b)) => a.extend(b),
        (Some(Ids::Str(a)), Ids::Str(b)) => a.extend(b),
        (Some(a), b) => {
            return Err(Error::input(format!(
                "interactions: its parts hold {} ids and {} ids in one column",
                a.id_type(),
                b.id_type()
            )));
        }
    }
    Ok(())
}

/// Opens one table and resolves its roles (`None`: the table is absent). A places or users
/// section without a `path` (and no `dir`) reads its columns from the interactions file,
/// with the interactions' read settings, one row per id (the first).
fn open(cfg: &FilesConfig, name: TableName) -> Result<Option<Mapped>> {
    let Some(mut tc) = cfg.table(name) else { return Ok(None) };
    let location = match (&tc.path, &cfg.dir) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => match find_table(dir, name.as_str())? {
            Some(p) => p,
            // In a directory, users and places are optional; interactions are not.
            None if name != TableName::Interactions && !explicit(cfg, name) => return Ok(None),
            None => {
                return Err(Error::input(format!(
                    "{}: no table `{name}` (expected {name}.parquet or {name}.csv)",
                    dir.display(),
                    name = name.as_str()
                )));
            }
        },
        (None, None) if name != TableName::Interactions => {
            let Some(p) = cfg.interactions.path.clone() else { return Ok(None) };
            tc = shared_config(cfg, name, tc)?;
            let table = Table::read(&p, &tc)?;
            // Only the roles mapped explicitly: the interactions' own `rating`, `lat`, ... are not
            // the place's (or user's).
            let roles = resolve_roles(name, &tc, &table, false)?;
            return Ok(Some(Mapped { name, table, roles, dedup: true }));
        }
        (None, None) => return Ok(None),
    };
    let table = Table::read(&location, &tc)?;
    let roles = resolve_roles(name, &tc, &table, true)?;
    Ok(Some(Mapped { name, table, roles, dedup: tc.dedup }))
}

/// How a users or places section without a path reads the interactions file: with its own
/// columns, the interactions' read settings, one row per id.
fn shared_config(cfg: &FilesConfig, name: TableName, tc: TableConfig) -> Result<TableConfig> {
    // A rating there is each visit's, not the place's: as a place attribute it would carry one
    // visit's label to every row of that place.
    if name == TableName::Places && tc.columns.contains_key(&Role::Rating) {
        return Err(Error::input(
            "data.places.columns.rating: a places section read from the interactions file cannot take a rating (each row's rating is that visit's); map it on [data.interactions] instead",
        ));
    }
    Ok(TableConfig { columns: tc.columns, dedup: true, ..cfg.interactions.clone() })
}

/// A users or places section read from the interactions file a piece at a time (`pieces`:
/// file, first row, rows; `files`: every file and its rows): the first row of each id, its
/// errors naming the file and row.
fn open_shared(cfg: &FilesConfig, name: TableName, first: &Table, log: &Log<'_>) -> Result<Mapped> {
    let tc = shared_config(cfg, name, cfg.table(name).unwrap_or_default())?;
    let roles = resolve_roles(name, &tc, first, false)?;
    let id_role = if name == TableName::Users { Role::User } else { Role::Place };
    let probe = Mapped { name, table: Table::frame(first.df.clear(), &first.name), roles, dedup: true };
    let id = probe.required(id_role)?.to_string();
    let columns = distinct_columns(&probe.roles);
    let start: BTreeMap<&std::path::Path, usize> =
        log.files.iter().scan(0, |acc, (f, n)| Some((f.as_path(), std::mem::replace(acc, *acc + n)))).collect();
    let (mut seen, mut frames, mut origin) = (std::collections::HashSet::new(), Vec::new(), Vec::new());
    for (file, offset, rows) in log.pieces {
        let t = log.read(&(file.clone(), *offset, *rows), columns.clone())?;
        let ids = t.ids(&id)?;
        let fresh: Vec<usize> = (0..ids.len()).filter(|&i| seen.insert(ids.key(i).to_string())).collect();
        let base = start.get(file.as_path()).copied().unwrap_or(0) + offset;
        origin.extend(fresh.iter().map(|&i| base + i));
        let idx = polars::prelude::IdxCa::from_vec(
            "idx".into(),
            fresh.iter().map(|&i| i as polars::prelude::IdxSize).collect(),
        );
        frames.push(t.df.take(&idx).map_err(|e| Error::Internal(e.to_string()))?);
    }
    let mut df = frames.first().cloned().unwrap_or_default();
    for f in frames.iter().skip(1) {
        df.vstack_mut(f).map_err(|e| Error::Internal(e.to_string()))?;
    }
    let table = Table::gathered(df, &log.location.display().to_string(), log.files, origin, log.sha256);
    Ok(Mapped { table, ..probe })
}

/// The columns `roles` map, each once (two roles may map one column), in role order.
fn distinct_columns(roles: &BTreeMap<Role, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in roles.values() {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// The interactions table as [`Streamed::open`] reads it: where, its hash, its files with
/// their rows, and the pieces (file, first row, rows) it is read in.
pub struct Log<'a> {
    /// As the recipe names it.
    pub location: &'a std::path::Path,
    /// Its content hash ([`crate::data::table::location_sha256`]).
    pub sha256: &'a str,
    /// Every file, in order, with its rows.
    pub files: &'a [(std::path::PathBuf, usize)],
    /// The pieces, in order.
    pub pieces: &'a [(std::path::PathBuf, usize, usize)],
    /// Its columns, as its files stacked have them ([`Table::schema_of`]).
    pub schema: &'a polars::prelude::DataFrame,
}

impl Log<'_> {
    /// `columns` of one piece, with the stacked table's types.
    pub fn read(
        &self,
        (file, offset, rows): &(std::path::PathBuf, usize, usize),
        columns: Vec<String>,
    ) -> Result<Table> {
        let t = Table::parquet_rows(file, *offset, *rows, columns)?;
        if t.height() != *rows {
            return Err(Error::input(format!(
                "{}: its footer says rows {offset}..{} but {} were read",
                file.display(),
                offset + rows,
                t.height()
            )));
        }
        t.like(self.schema, &self.location.display().to_string())
    }
}

fn explicit(cfg: &FilesConfig, name: TableName) -> bool {
    match name {
        TableName::Interactions => true,
        TableName::Places => cfg.places.is_some(),
        TableName::Users => cfg.users.is_some(),
    }
}

/// Role -> column: the recipe's mapping (which must exist), else (with `defaults`) the
/// default name when present.
fn resolve_roles(name: TableName, tc: &TableConfig, table: &Table, defaults: bool) -> Result<BTreeMap<Role, String>> {
    let mut roles = BTreeMap::new();
    for &role in name.roles() {
        match tc.columns.get(&role) {
            Some(c) if !table.has(c) => {
                return Err(Error::input(format!(
                    "{}: missing column `{c}` (mapped by data.{}.columns.{}; present: {})",
                    table.name,
                    name.as_str(),
                    role.key(),
                    table.present()
                )));
            }
            Some(c) => {
                roles.insert(role, c.clone());
            }
            None if defaults && table.has(role.default_column()) => {
                roles.insert(role, role.default_column().to_string());
            }
            None => {}
        }
    }
    Ok(roles)
}

/// The first row of each distinct id; repeated ids are an error unless the table is `dedup`.
fn unique_rows(m: &Mapped, ids: &Ids, role: Role) -> Result<Vec<usize>> {
    let mut seen: HashMap<Key<'_>, usize> = HashMap::with_capacity(ids.len());
    let mut keep = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        if seen.insert(ids.key(i), i).is_some() {
            if m.dedup {
                continue;
            }
            let col = m.col(role).unwrap_or_default();
            return Err(Error::input(format!(
                "{} is {}, a repeated id (expected one row per id, or set dedup = true under [data.{}])",
                m.table.at(col, i),
                ids.key(i),
                m.name.as_str()
            )));
        }
        keep.push(i);
    }
    Ok(keep)
}

/// The ids of a users or places table, one row per id (see [`unique_rows`]): the table keeps
/// only those rows.
fn unique_ids(m: &mut Mapped, role: Role) -> Result<Ids> {
    let col = m.required(role)?.to_string();
    let all = m.table.ids(&col)?;
    let rows = unique_rows(m, &all, role)?;
    m.table.keep_rows(&rows)?;
    Ok(all.take(&rows))
}

fn read_users(mut m: Mapped) -> Result<Users> {
    let ids = unique_ids(&mut m, Role::User)?;
    let segment = m.col(Role::Segment).map(|c| m.table.categories(c)).transpose()?;
    // Unknown homes (null) are allowed: those users' rows have no home context.
    let home = coordinates(&m, Role::HomeLat, Role::HomeLon, true)?;
    Ok(Users { ids, mapped: Some(m), segment, home })
}

fn read_places(mut m: Mapped) -> Result<Places> {
    let ids = unique_ids(&mut m, Role::Place)?;
    let coords = coordinates(&m, Role::Lat, Role::Lon, false)?;
    if let Some(c) = m.col(Role::Category) {
        m.table.categories(c)?;
    }
    if let Some(c) = m.col(Role::PriceLevel) {
        m.table.floats(c, true)?;
    }
    let rating = m.col(Role::Rating).map(|c| m.table.floats(c, true)).transpose()?;
    Ok(Places { ids, mapped: Some(m), coords, rating })
}

/// The latitude and longitude columns of a table, validated (nulls as NaN when `allow_null`);
/// `None` when it has neither, an error when it has one only.
fn coordinates(m: &Mapped, lat: Role, lon: Role, allow_null: bool) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
    match (m.col(lat), m.col(lon)) {
        (Some(a), Some(b)) => {
            let (la, lo) = (m.table.floats(a, allow_null)?, m.table.floats(b, allow_null)?);
            check_lat_lon(&m.table, a, b, &la, &lo)?;
            Ok(Some((la, lo)))
        }
        (None, None) => Ok(None),
        _ => Err(pair_error(m, lat, lon)),
    }
}

/// One of a coordinate pair is there, the other not.
fn pair_error(m: &Mapped, a: Role, b: Role) -> Error {
    let (has, lacks) = if m.col(a).is_some() { (a, b) } else { (b, a) };
    Error::input(format!(
        "{}: missing column `{}` (it has `{}`: map both data.{}.columns.{} and .{}, or neither; present: {})",
        m.table.name,
        lacks.default_column(),
        m.col(has).unwrap_or_default(),
        m.name.as_str(),
        a.key(),
        b.key(),
        m.table.present()
    ))
}

/// Latitudes in [-90, 90] and longitudes in [-180, 180] (NaN: unknown, allowed).
fn check_lat_lon(t: &Table, lat_name: &str, lon_name: &str, lat: &[f64], lon: &[f64]) -> Result<()> {
    if let Some(i) = lat.iter().position(|v| !v.is_nan() && !(-90.0..=90.0).contains(v)) {
        return Err(Error::input(format!("{} is {}, expected a latitude in [-90, 90]", t.at(lat_name, i), lat[i])));
    }
    if let Some(i) = lon.iter().position(|v| !v.is_nan() && !(-180.0..=180.0).contains(v)) {
        return Err(Error::input(format!("{} is {}, expected a longitude in [-180, 180]", t.at(lon_name, i), lon[i])));
    }
    Ok(())
}

/// Interactions read, ids not yet resolved to rows.
struct InterDraft {
    mapped: Mapped,
    raw_users: Ids,
    raw_places: Ids,
    ts: Vec<i64>,
    local_ts: Vec<i64>,
    coords: Option<(Vec<f64>, Vec<f64>)>,
    label: Option<Vec<f32>>,
    rating: Option<Vec<f64>>,
    oracle: Option<Vec<f64>>,
    span: Option<TimeSpan>,
}

fn read_interactions(cfg: &FilesConfig, m: Mapped) -> Result<InterDraft> {
    let t = &m.table;
    let raw_users = t.ids(m.required(Role::User)?)?;
    let raw_places = t.ids(m.required(Role::Place)?)?;
    let ts_col = m.required(Role::Timestamp)?;
    let (ts, offsets) = t.timestamps(ts_col, cfg.timestamp_unit, cfg.timestamp_format.as_deref())?;
    // 1900-01-01 ..= 2200-01-01: outside is a unit mistake (milliseconds read as seconds).
    if let Some(i) = ts.iter().position(|&v| !(-2_208_988_800..=7_258_118_400).contains(&v)) {
        return Err(Error::input(format!(
            "{} is {} s since 1970, outside 1900-2200: is data.timestamp_unit = \"{}\" right?",
            t.at(ts_col, i),
            ts[i],
            cfg.timestamp_unit.short()
        )));
    }
    let span = TimeSpan::of(t, ts_col, &ts)?;
    let local_ts = local_times(cfg, &m, &ts, offsets.as_deref())?;
    let coords = coordinates(&m, Role::Lat, Role::Lon, false)?;
    let label = match m.col(Role::Label) {
        Some(c) => {
            if cfg.positive_rating.is_some() {
                return Err(Error::input(format!(
                    "{}: has a label column `{c}` and the recipe sets data.positive_rating; use one",
                    t.name
                )));
            }
            let y = t.ints(c)?;
            if let Some(i) = y.iter().position(|&v| v != 0 && v != 1) {
                return Err(Error::input(format!("{} is {}, expected 0 or 1", t.at(c, i), y[i])));
            }
            Some(y.into_iter().map(|v| v as f32).collect())
        }
        None => None,
    };
    let rating = m.col(Role::Rating).map(|c| t.floats(c, true)).transpose()?;
    let oracle = match m.col(Role::Oracle) {
        Some(c) => {
            let o = t.floats(c, false)?;
            if let Some(i) = o.iter().position(|v| !(0.0..=1.0).contains(v)) {
                return Err(Error::input(format!("{} is {}, expected a probability", t.at(c, i), o[i])));
            }
            Some(o)
        }
        None => None,
    };
    Ok(InterDraft { mapped: m, raw_users, raw_places, ts, local_ts, coords, label, rating, oracle, span })
}

/// `ts` shifted to local time: by the row's `utc_offset` column when mapped, else by the
/// recipe's time zone at that instant, else by the offsets the timestamp strings carry
/// (`2024-05-01T08:15:00-04:00` is 08:15 local), else UTC.
fn local_times(cfg: &FilesConfig, m: &Mapped, ts: &[i64], string_offsets: Option<&[i32]>) -> Result<Vec<i64>> {
    if let Some(c) = m.col(Role::UtcOffset) {
        let per = cfg.utc_offset_unit.seconds();
        let off = m.table.floats(c, false)?;
        if let Some(i) = off.iter().position(|&o| (o * per).abs() > 18.0 * 3600.0) {
            return Err(Error::input(format!(
                "{} is {}, expected an offset within ±18 h in {:?} (data.utc_offset_unit)",
                m.table.at(c, i),
                off[i],
                cfg.utc_offset_unit
            )));
        }
        return Ok(ts.iter().zip(&off).map(|(&t, &o)| t + (o * per).round() as i64).collect());
    }
    let Some(name) = &cfg.timezone else {
        return Ok(match string_offsets {
            Some(off) => ts.iter().zip(off).map(|(&t, &o)| t + i64::from(o)).collect(),
            None => ts.to_vec(),
        });
    };
    let tz: chrono_tz::Tz =
        name.parse().map_err(|_| Error::input(format!("data.timezone = {name:?}: not an IANA time zone name")))?;
    Ok(ts.iter().map(|&t| t + i64::from(utc_offset_at(tz, t))).collect())
}

/// Distinct values in first-seen order.
fn distinct(ids: &Ids) -> Ids {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let keep: Vec<usize> = (0..ids.len()).filter(|&i| seen.insert(ids.key(i))).collect();
    ids.take(&keep)
}

/// The row of every user and place id.
pub struct IdIndex<'a> {
    users: (&'a Users, HashMap<Key<'a>, u32>),
    places: (&'a Places, HashMap<Key<'a>, u32>),
}

impl<'a> IdIndex<'a> {
    /// Indexes the ids of `users` and `places`.
    pub fn new(users: &'a Users, places: &'a Places) -> Self {
        let index = |ids: &'a Ids| (0..ids.len()).map(|i| (ids.key(i), i as u32)).collect();
        Self { users: (users, index(&users.ids)), places: (places, index(&places.ids)) }
    }
}

impl InterDraft {
    /// Resolves user and place ids to rows; an id missing from its table is an error.
    fn resolve(self, index: &IdIndex<'_>) -> Result<Interactions> {
        let (users, places) = (&index.users, &index.places);
        let user =
            rows_in(&self.mapped, Role::User, &self.raw_users, (&users.0.ids, &users.1), users.0.mapped.as_ref())?;
        let place =
            rows_in(&self.mapped, Role::Place, &self.raw_places, (&places.0.ids, &places.1), places.0.mapped.as_ref())?;
        Ok(Interactions {
            mapped: self.mapped,
            user,
            place,
            ts: self.ts,
            local_ts: self.local_ts,
            coords: self.coords,
            label: self.label,
            rating: self.rating,
            oracle: self.oracle,
            span: self.span,
        })
    }
}

fn rows_in(
    m: &Mapped,
    role: Role,
    values: &Ids,
    (table_ids, index): (&Ids, &HashMap<Key<'_>, u32>),
    table: Option<&Mapped>,
) -> Result<Vec<u32>> {
    if values.id_type() != table_ids.id_type() {
        return Err(id_type_error(m, role, values, table_ids, table));
    }
    (0..values.len())
        .map(|i| {
            index.get(&values.key(i)).copied().ok_or_else(|| {
                Error::input(format!(
                    "{} is {}, which is not in {}",
                    m.table.at(m.col(role).unwrap_or_default(), i),
                    values.key(i),
                    table.map_or("its table".to_string(), |t| t.table.name.clone())
                ))
            })
        })
        .collect()
}

/// Ids of one type in the interactions and another in their table: names the first id that is
/// not an integer (a `user_id=two` folder among integer ones, a `u1` in the users table).
fn id_type_error(m: &Mapped, role: Role, values: &Ids, table_ids: &Ids, table: Option<&Mapped>) -> Error {
    let col = m.col(role).unwrap_or_default();
    let other = table.map_or("the other table".to_string(), |t| t.table.name.clone());
    let text = |ids: &Ids| match ids {
        Ids::Str(v) => v.iter().position(|s| s.trim().parse::<i64>().is_err()).map(|i| (i, v[i].clone())),
        Ids::Int(_) => None,
    };
    if let Some((i, v)) = text(values) {
        return Error::input(format!(
            "{} is {v:?}, expected an integer id ({other} has integer ids)",
            m.table.at(col, i)
        ));
    }
    if let (Some((i, v)), Some(t)) = (text(table_ids), table) {
        let tcol = t.col(role).unwrap_or_default();
        return Error::input(format!(
            "{} is {v:?}, a string id, but {} column `{col}` holds integer ids",
            t.table.at(tcol, i),
            m.table.name
        ));
    }
    Error::input(format!(
        "{}: column `{col}` holds {} ids but {other} has {} ids",
        m.table.name,
        values.id_type(),
        table_ids.id_type()
    ))
}

/// How a declared feature's value is derived from its column, for `sources` (`None`: as is).
fn derivation(f: &DeclaredFeature, t: &Table) -> Option<String> {
    match (f.kind, f.transform, f.fill) {
        (FeatureKind::Categorical, ..) => (f.min_count > 1).then(|| format!("min_count {}", f.min_count)),
        (FeatureKind::MultiCategorical, ..) => f.bag().map(|b| {
            let split = if t.dtype(&f.column).is_ok_and(|d| d.starts_with("list")) {
                String::new()
            } else {
                format!("split at {:?}, ", f.separator())
            };
            let min = if f.min_count > 1 { format!(", min_count {}", f.min_count) } else { String::new() };
            format!("{split}at most {} values, {} pooling{min}", b.max_values, b.pooling.name())
        }),
        (_, t, fill) => {
            let mut steps = Vec::new();
            if let Some(v) = fill {
                steps.push(format!("fill {v} (missing indicator `{}_missing`)", f.feature_name()));
            }
            if t == Transform::Log1p {
                steps.push("log1p".to_string());
            }
            if t == Transform::None {
                steps.push("not standardized".to_string());
            }
            (!steps.is_empty()).then(|| steps.join(", then "))
        }
    }
}

/// Declared features: their table exists, their column exists and has the declared type,
/// nulls only with `fill`, log1p only above -1. Returns their sources.
fn check_declared(
    cfg: &FilesConfig,
    users: &Users,
    places: &Places,
    inter: Option<&Interactions>,
) -> Result<Vec<SourceColumn>> {
    let mut sources = Vec::new();
    for f in &cfg.features {
        let m = match f.table {
            TableName::Interactions => inter.map(|i| &i.mapped),
            TableName::Places => places.mapped.as_ref(),
            TableName::Users => users.mapped.as_ref(),
        }
        .ok_or_else(|| {
            Error::input(format!(
                "data.features {:?}: there is no {} table to read column `{}` from",
                f.feature_name(),
                f.table.as_str(),
                f.column
            ))
        })?;
        let t = &m.table;
        if !t.has(&f.column) {
            t.column(&f.column)?;
        }
        match f.kind {
            FeatureKind::Categorical => {
                t.categories(&f.column)?;
            }
            FeatureKind::MultiCategorical => {
                t.id_lists(&f.column, Some(f.separator()))?;
            }
            FeatureKind::Numeric => {
                if f.fill.is_none()
                    && let Ok(c) = t.column(&f.column)
                    && let Some(i) = c.as_materialized_series().iter().position(|v| v.is_null())
                {
                    return Err(Error::input(format!(
                        "{} is null, expected a number (or set `fill = <value>` on data.features {:?})",
                        t.at(&f.column, i),
                        f.feature_name()
                    )));
                }
                let v = t.floats(&f.column, f.fill.is_some())?;
                if f.transform == Transform::Log1p
                    && let Some(i) = v.iter().position(|&x| x <= -1.0)
                {
                    return Err(Error::input(format!(
                        "{} is {}, expected a value > -1 for transform = \"log1p\"",
                        t.at(&f.column, i),
                        v[i]
                    )));
                }
            }
        }
        let derive = derivation(f, t);
        sources.push(SourceColumn {
            feature: f.feature_name().to_string(),
            table: f.table.as_str().to_string(),
            column: f.column.clone(),
            dtype: t.dtype(&f.column)?,
            derive,
        });
    }
    Ok(sources)
}
