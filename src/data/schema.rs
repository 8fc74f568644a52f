//! The recipe's description of the team's own tables (`[data] source = "files"`): where each
//! table is, how to read it, which of its columns play which role, the time zone of the hour
//! and day features, how labels and the context location arise, and declared extra features.
//!
//! Roles left unmapped take their default column name when the table has it (the synthetic
//! generator's schema: `user_id`, `place_id`, `timestamp`, ...), so a directory of tables in
//! that schema needs nothing but `dir`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use reco_runtime::artifact::spec::{Bag, Pooling};

use reco_runtime::error::{Error, Result};

/// The three tables the pipeline reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableName {
    /// One row per impression or visit.
    Interactions,
    /// One row per place (or item).
    Places,
    /// One row per user.
    Users,
}

impl TableName {
    /// The table's name, also its default file stem.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactions => "interactions",
            Self::Places => "places",
            Self::Users => "users",
        }
    }

    /// The roles a column of this table can play.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Self::Interactions => &[User, Place, Timestamp, Label, Rating, Lat, Lon, UtcOffset, Oracle],
            Self::Places => &[Place, Lat, Lon, Category, Rating, PriceLevel],
            Self::Users => &[User, Segment, HomeLat, HomeLon],
        }
    }
}

/// What a column means to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// User id (integer or string).
    User,
    /// Place (item) id (integer or string).
    Place,
    /// When the interaction happened.
    Timestamp,
    /// Explicit 0/1 label.
    Label,
    /// A rating (interactions: of this visit; places: the place's static rating).
    Rating,
    /// Latitude (interactions: where the user was; places: the place).
    Lat,
    /// Longitude.
    Lon,
    /// The interaction's offset from UTC, for local hour and day.
    UtcOffset,
    /// True visit probability (synthetic data).
    Oracle,
    /// Place category (integer or string).
    Category,
    /// Place price level (number).
    PriceLevel,
    /// User segment (integer or string).
    Segment,
    /// User home latitude.
    HomeLat,
    /// User home longitude.
    HomeLon,
}

impl Role {
    /// The column name used when the recipe maps none: the key, but for the ids and the
    /// oracle (`user_id`, `place_id`, `oracle_p`).
    pub fn default_column(self) -> &'static str {
        match self {
            Self::User => "user_id",
            Self::Place => "place_id",
            Self::Oracle => "oracle_p",
            other => other.key(),
        }
    }

    /// The recipe key (`user`, `home_lat`, ...).
    pub fn key(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Place => "place",
            Self::Timestamp => "timestamp",
            Self::Label => "label",
            Self::Rating => "rating",
            Self::Lat => "lat",
            Self::Lon => "lon",
            Self::UtcOffset => "utc_offset",
            Self::Oracle => "oracle",
            Self::Category => "category",
            Self::PriceLevel => "price_level",
            Self::Segment => "segment",
            Self::HomeLat => "home_lat",
            Self::HomeLon => "home_lon",
        }
    }
}

/// File format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// Delimited text (comma by default; see `separator`).
    Csv,
}

/// Text encoding of a CSV table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Encoding {
    /// UTF-8 (the default); other bytes are an error naming the line.
    #[default]
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// ISO-8859-1 (every byte is one character), as MovieLens and older exports use.
    #[serde(rename = "latin-1", alias = "latin1", alias = "iso-8859-1")]
    Latin1,
}

/// Where one table is and how to read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// A file, a glob (`logs/*.parquet`), or a directory of Parquet/CSV files
    /// (hive-partitioned `key=value/` folders add their keys as columns). Relative paths
    /// resolve against the recipe's directory. Default: `<dir>/<table>.parquet` or `.csv`.
    pub path: Option<PathBuf>,
    /// `parquet` or `csv`; default from the file extension (`.tsv` and `.txt` read as CSV).
    pub format: Option<FileFormat>,
    /// CSV field separator, one character (default `,`; tab for `.tsv`).
    pub separator: Option<String>,
    /// Whether a CSV file starts with a header line (default true).
    pub header: Option<bool>,
    /// Column names of a headerless CSV, in file order.
    #[serde(default)]
    pub column_names: Vec<String>,
    /// CSV text encoding: `utf-8` (default) or `latin-1`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Keep the first row of each id when ids repeat (a places table read from a check-in log
    /// that repeats each venue's attributes on every row). Default: repeated ids are an error.
    #[serde(default)]
    pub dedup: bool,
    /// CSV columns read as text whatever they look like (string ids such as `0012345`, which
    /// type inference would make integers). Set by readers that know the types, not recipes.
    #[serde(skip)]
    pub text_columns: Vec<String>,
    /// Role -> column name, for the roles whose column is not named as the default.
    #[serde(default)]
    pub columns: BTreeMap<Role, String>,
}

/// How the interactions' timestamps are written, when they are numbers or custom strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Seconds since 1970-01-01 UTC (the default).
    #[default]
    #[serde(alias = "s")]
    Seconds,
    /// Milliseconds since 1970-01-01 UTC.
    #[serde(alias = "ms")]
    Milliseconds,
    /// Microseconds since 1970-01-01 UTC.
    #[serde(alias = "us")]
    Microseconds,
    /// Nanoseconds since 1970-01-01 UTC.
    #[serde(alias = "ns")]
    Nanoseconds,
}

impl TimeUnit {
    /// Units per second.
    pub fn per_second(self) -> i64 {
        match self {
            Self::Seconds => 1,
            Self::Milliseconds => 1_000,
            Self::Microseconds => 1_000_000,
            Self::Nanoseconds => 1_000_000_000,
        }
    }

    /// The next unit a thousand times coarser (`None` for seconds).
    pub fn coarser(self) -> Option<Self> {
        match self {
            Self::Seconds => None,
            Self::Milliseconds => Some(Self::Seconds),
            Self::Microseconds => Some(Self::Milliseconds),
            Self::Nanoseconds => Some(Self::Microseconds),
        }
    }

    /// The unit's name in words (`milliseconds`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Milliseconds => "milliseconds",
            Self::Microseconds => "microseconds",
            Self::Nanoseconds => "nanoseconds",
        }
    }

    /// The recipe's short name (`ms`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Seconds => "s",
            Self::Milliseconds => "ms",
            Self::Microseconds => "us",
            Self::Nanoseconds => "ns",
        }
    }
}

/// Unit of a per-row UTC offset column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetUnit {
    /// Minutes east of UTC (Foursquare's `timezoneOffset`; the default).
    #[default]
    Minutes,
    /// Seconds east of UTC.
    Seconds,
    /// Hours east of UTC.
    Hours,
}

impl OffsetUnit {
    /// Seconds per unit.
    pub fn seconds(self) -> f64 {
        match self {
            Self::Minutes => 60.0,
            Self::Seconds => 1.0,
            Self::Hours => 3600.0,
        }
    }
}

/// Where the user was when the impression happened (the origin of `distance_km`, of
/// negatives within the radius and of ranking candidates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextSource {
    /// The interactions' `lat`/`lon` when present, else the user's home when present, else
    /// none (then `distance_km` is left out).
    #[default]
    Auto,
    /// The interactions' `lat`/`lon`.
    Interaction,
    /// The user's `home_lat`/`home_lon`.
    Home,
    /// The place of the user's last visit strictly before the impression; rows without one
    /// are dropped (counted in `prepare.json`).
    PreviousVisit,
}

/// A declared feature's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// A number, normalized as `transform` says.
    Numeric,
    /// Ids or labels (integers or strings), embedded; values seen fewer than `min_count`
    /// times in training are out of vocabulary.
    Categorical,
    /// A list of ids per row (a Parquet list column, or text split at `separator`), each
    /// embedded as a categorical value and the row's embeddings pooled (`pooling`).
    MultiCategorical,
}

impl FeatureKind {
    /// Whether the feature is embedded (categorical or multi-valued).
    pub fn is_embedded(self) -> bool {
        matches!(self, Self::Categorical | Self::MultiCategorical)
    }
}

/// The longest list a multi-valued feature may hold unless the recipe says (`max_values`).
pub const DEFAULT_MAX_VALUES: usize = 16;

/// How a declared numeric feature's values are transformed before the model sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// `(x - mean) / std` with training moments (the default).
    #[default]
    Standard,
    /// `log1p(x)`, then standardized (counts, prices; needs x > -1).
    Log1p,
    /// As is.
    None,
}

/// A feature from a column of one of the tables, beside the built-in ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeclaredFeature {
    /// Table holding the column (joined by user or place id).
    pub table: TableName,
    /// Column name in that table.
    pub column: String,
    /// Feature name in the feature files and the model's inputs (default: the column name).
    pub name: Option<String>,
    /// `numeric` or `categorical`.
    pub kind: FeatureKind,
    /// Numeric transform: `standard` (default), `log1p`, `none`.
    #[serde(default)]
    pub transform: Transform,
    /// Numeric: the value that replaces a missing one; then a 0/1 `<name>_missing` indicator
    /// input is added. Without it a missing value is an error.
    pub fill: Option<f64>,
    /// Categorical: values seen fewer times than this in training map to out-of-vocabulary.
    #[serde(default = "one")]
    pub min_count: usize,
    /// Multi-valued: the character between ids in a text column (default `|`).
    pub separator: Option<String>,
    /// Multi-valued: the longest list a row may hold (default [`DEFAULT_MAX_VALUES`]); a
    /// longer one is an error.
    pub max_values: Option<usize>,
    /// Multi-valued: `mean` (default) or `sum` of the ids' embeddings.
    pub pooling: Option<Pooling>,
}

fn one() -> usize {
    1
}

impl DeclaredFeature {
    /// The feature's name.
    pub fn feature_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.column)
    }

    /// A multi-valued feature's list settings (defaults filled in); `None` for others.
    pub fn bag(&self) -> Option<Bag> {
        (self.kind == FeatureKind::MultiCategorical).then(|| Bag {
            max_values: self.max_values.unwrap_or(DEFAULT_MAX_VALUES),
            pooling: self.pooling.unwrap_or_default(),
        })
    }

    /// A multi-valued feature's separator in text columns (default `|`).
    pub fn separator(&self) -> char {
        self.separator.as_deref().and_then(|s| s.chars().next()).unwrap_or('|')
    }
}

/// The whole description of the team's tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Default directory of the tables (`<dir>/users.parquet` or `.csv`, ...).
    pub dir: Option<PathBuf>,
    /// The interactions table (required: default `<dir>/interactions.*`).
    #[serde(default)]
    pub interactions: TableConfig,
    /// The places table. Without a `path` (and no `dir`): its columns are read from the
    /// interactions file (a check-in log that repeats each venue's attributes), first row per
    /// place. Absent and without `dir`: the distinct place ids of the interactions, with no
    /// attributes.
    pub places: Option<TableConfig>,
    /// The users table; like `places`.
    pub users: Option<TableConfig>,
    /// IANA time zone for the hour and day features (default UTC); a mapped `utc_offset`
    /// column wins where present.
    pub timezone: Option<String>,
    /// Unit of numeric timestamps (default seconds).
    #[serde(default)]
    pub timestamp_unit: TimeUnit,
    /// A chrono `strftime` format for string timestamps that are not ISO-8601 / RFC 3339
    /// (e.g. `%a %b %d %H:%M:%S %z %Y`); a format without an offset reads as UTC.
    pub timestamp_format: Option<String>,
    /// Unit of the `utc_offset` column (default minutes).
    #[serde(default)]
    pub utc_offset_unit: OffsetUnit,
    /// Where the context location comes from.
    #[serde(default)]
    pub context: ContextSource,
    /// Labels from ratings: rating >= this is a positive, lower ratings observed negatives.
    pub positive_rating: Option<f64>,
    /// Extra features (`[[data.features]]`).
    #[serde(default)]
    pub features: Vec<DeclaredFeature>,
}

impl FilesConfig {
    /// The tables of `dir` in the default schema (the synthetic generator's).
    pub fn in_dir(dir: &Path) -> Self {
        Self { dir: Some(dir.to_path_buf()), ..Self::default() }
    }

    /// The configuration of one table (`None`: the table is absent).
    pub fn table(&self, name: TableName) -> Option<TableConfig> {
        match name {
            TableName::Interactions => Some(self.interactions.clone()),
            TableName::Places => self.places.clone().or_else(|| self.dir.as_ref().map(|_| TableConfig::default())),
            TableName::Users => self.users.clone().or_else(|| self.dir.as_ref().map(|_| TableConfig::default())),
        }
    }

    /// Resolves relative paths against `base` (the recipe's directory).
    pub fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(d) = self.dir.as_mut() {
            fix(d);
        }
        for t in [Some(&mut self.interactions), self.places.as_mut(), self.users.as_mut()].into_iter().flatten() {
            if let Some(p) = t.path.as_mut() {
                fix(p);
            }
        }
    }

    /// Checks what serde cannot: roles allowed per table, one column per role, one-character
    /// separators, a known time zone, a valid timestamp format, consistent label settings,
    /// unique declared feature names.
    pub fn validate(&self) -> Result<()> {
        if self.dir.is_none() && self.interactions.path.is_none() {
            return Err(Error::input("data: expected `dir` or `[data.interactions] path`"));
        }
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(Error::input("data.dir = \"\": expected a directory path"));
        }
        for (name, t) in [
            ("interactions", Some(&self.interactions)),
            ("places", self.places.as_ref()),
            ("users", self.users.as_ref()),
        ] {
            if t.and_then(|t| t.path.as_ref()).is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(Error::input(format!("data.{name}.path = \"\": expected a file, glob or directory")));
            }
        }
        for name in [TableName::Interactions, TableName::Places, TableName::Users] {
            let Some(t) = self.table(name) else { continue };
            for role in t.columns.keys() {
                if !name.roles().contains(role) {
                    let allowed: Vec<&str> = name.roles().iter().map(|r| r.key()).collect();
                    return Err(Error::input(format!(
                        "data.{}.columns.{}: not a column of the {} table (expected one of: {})",
                        name.as_str(),
                        role.key(),
                        name.as_str(),
                        allowed.join(", ")
                    )));
                }
            }
            if let Some(sep) = &t.separator
                && (sep.len() != 1 || !sep.is_ascii())
            {
                return Err(Error::input(format!(
                    "data.{}.separator = {sep:?}: expected one ASCII character",
                    name.as_str()
                )));
            }
            if t.dedup && name == TableName::Interactions {
                return Err(Error::input("data.interactions.dedup: only places and users can drop repeated ids"));
            }
            self.one_column_per_role(name, &t)?;
        }
        self.validate_times()?;
        self.validate_features()
    }

    /// Two roles of one table on one column (`user = "place_id"` beside the place's own
    /// `place_id`) would join ids of one kind as another's: refused, naming both roles. A role
    /// left unmapped reads its default column, except in a section read from the
    /// interactions file (explicit roles only there).
    fn one_column_per_role(&self, name: TableName, t: &TableConfig) -> Result<()> {
        let shared = name != TableName::Interactions
            && t.path.is_none()
            && self.dir.is_none()
            && self.interactions.path.is_some();
        let mut seen: Vec<(Role, &str, bool)> = Vec::new();
        for &role in name.roles() {
            let (column, explicit) = match t.columns.get(&role) {
                Some(c) => (c.as_str(), true),
                None if shared => continue,
                None => (role.default_column(), false),
            };
            if let Some(&(other, _, other_explicit)) = seen.iter().find(|s| s.1 == column)
                && (explicit || other_explicit)
            {
                let t = name.as_str();
                let (a, b) = (other.key(), role.key());
                return Err(Error::input(match (other_explicit, explicit) {
                    (true, true) => format!(
                        "data.{t}.columns: roles `{a}` and `{b}` both map to column `{column}`: each role needs a column of its own"
                    ),
                    (true, false) => format!(
                        "data.{t}.columns.{a} = {column:?}: that is also the `{b}` role's column (its default name, as `{b}` is not mapped): each role needs a column of its own"
                    ),
                    _ => format!(
                        "data.{t}.columns.{b} = {column:?}: that is also the `{a}` role's column (its default name, as `{a}` is not mapped): each role needs a column of its own"
                    ),
                }));
            }
            seen.push((role, column, explicit));
        }
        Ok(())
    }

    /// A known time zone and a `timestamp_format` chrono can use.
    fn validate_times(&self) -> Result<()> {
        if let Some(f) = &self.timestamp_format {
            use chrono::format::{Item, StrftimeItems};
            let items: Vec<Item<'_>> = StrftimeItems::new(f).collect();
            let bad = items.iter().any(|i| matches!(i, Item::Error));
            let fields = items.iter().any(|i| matches!(i, Item::Numeric(..) | Item::Fixed(_)));
            if bad || !fields {
                let why = if bad { "an unknown or incomplete % specifier" } else { "no date or time field" };
                return Err(Error::input(format!(
                    "data.timestamp_format = {f:?}: not a chrono strftime format ({why}); e.g. \"%Y-%m-%d %H:%M:%S\" or \"%a %b %d %H:%M:%S %z %Y\""
                )));
            }
        }
        if let Some(tz) = &self.timezone {
            tz.parse::<chrono_tz::Tz>().map_err(|_| {
                Error::input(format!("data.timezone = {tz:?}: not an IANA time zone name (e.g. \"America/New_York\")"))
            })?;
        }
        if let Some(r) = self.positive_rating
            && !r.is_finite()
        {
            return Err(Error::input(format!("data.positive_rating = {r}: expected a number")));
        }
        Ok(())
    }

    /// A multi-valued feature's `separator` (one character), `max_values` (at least 1) and
    /// table (places or users: a list per place or user); none of them on other kinds.
    fn validate_list_settings(f: &DeclaredFeature) -> Result<()> {
        let n = f.feature_name();
        if f.kind != FeatureKind::MultiCategorical {
            if f.separator.is_some() || f.max_values.is_some() || f.pooling.is_some() {
                return Err(Error::input(format!(
                    "data.features {n:?}: separator, max_values and pooling apply to kind = \"multi_categorical\" only"
                )));
            }
            return Ok(());
        }
        if let Some(sep) = &f.separator
            && sep.chars().count() != 1
        {
            return Err(Error::input(format!(
                "data.features {n:?}: separator = {sep:?}, expected one character (e.g. \"|\")"
            )));
        }
        if f.max_values == Some(0) {
            return Err(Error::input(format!("data.features {n:?}: max_values = 0, expected at least 1")));
        }
        if f.table == TableName::Interactions {
            return Err(Error::input(format!(
                "data.features {n:?}: a multi_categorical feature comes from the places or users table (a list per place or user), not from interactions"
            )));
        }
        Ok(())
    }

    /// Declared features: names unique and not built-in, fill and transform consistent.
    fn validate_features(&self) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for f in &self.features {
            let n = f.feature_name();
            let why = if n.is_empty() {
                Some("is empty")
            } else if crate::data::builtin::is_builtin(n) {
                Some("is a built-in feature's (map the column to its role instead, or set `name`)")
            } else if !names.insert(n.to_string()) {
                Some("is declared twice (set `name` on one)")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(Error::input(format!("data.features: the feature name {n:?} {why}")));
            }
            if f.kind.is_embedded() && (f.fill.is_some() || f.transform != Transform::Standard) {
                return Err(Error::input(format!(
                    "data.features {n:?}: fill and transform apply to numeric features only"
                )));
            }
            Self::validate_list_settings(f)?;
            if f.fill.is_some_and(|v| !v.is_finite()) {
                return Err(Error::input(format!("data.features {n:?}: fill must be a finite number")));
            }
            if f.transform == Transform::Log1p && f.fill.is_some_and(|v| v <= -1.0) {
                return Err(Error::input(format!("data.features {n:?}: fill must be > -1 with transform = \"log1p\"")));
            }
            if f.fill.is_some() {
                let indicator = format!("{n}_missing");
                if self.features.iter().any(|g| g.feature_name() == indicator) {
                    return Err(Error::input(format!(
                        "data.features {n:?}: its missing indicator {indicator:?} is also a declared feature's name"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(table: &str, feature: &str) -> FilesConfig {
        let text = format!("dir = \"d\"\n[[features]]\ntable = \"{table}\"\ncolumn = \"tags\"\n{feature}");
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn multi_valued_settings_default_and_are_checked() {
        let c = config("places", "kind = \"multi_categorical\"");
        c.validate().unwrap();
        let f = &c.features[0];
        assert_eq!(f.bag(), Some(Bag { max_values: DEFAULT_MAX_VALUES, pooling: Pooling::Mean }));
        assert_eq!(f.separator(), '|');
        let set = config("users", "kind = \"multi_categorical\"\nseparator = \";\"\nmax_values = 4\npooling = \"sum\"");
        set.validate().unwrap();
        assert_eq!(set.features[0].bag(), Some(Bag { max_values: 4, pooling: Pooling::Sum }));
        assert_eq!(set.features[0].separator(), ';');
        for (table, feature, want) in [
            (
                "places",
                "kind = \"multi_categorical\"\nseparator = \"||\"",
                "separator = \"||\", expected one character",
            ),
            ("places", "kind = \"multi_categorical\"\nmax_values = 0", "max_values = 0, expected at least 1"),
            ("interactions", "kind = \"multi_categorical\"", "comes from the places or users table"),
            ("places", "kind = \"categorical\"\nseparator = \"|\"", "apply to kind = \"multi_categorical\" only"),
            ("places", "kind = \"numeric\"\npooling = \"sum\"", "apply to kind = \"multi_categorical\" only"),
        ] {
            let e = config(table, feature).validate().unwrap_err().to_string();
            assert!(e.contains("data.features \"tags\"") && e.contains(want), "{feature}: {e}");
        }
        let e = toml::from_str::<FilesConfig>(
            "[[features]]\ntable = \"places\"\ncolumn = \"t\"\nkind = \"multi_categorical\"\npooling = \"max\"",
        );
        assert!(e.unwrap_err().to_string().contains("unknown variant `max`"));
    }
}
