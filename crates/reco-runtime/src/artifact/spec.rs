//! The feature spec: column order, vocabularies and normalization that travel inside every
//! artifact, so a serving system can reproduce preprocessing from the manifest alone.
//!
//! Encoding rules (also stated in the README):
//! - categorical column: raw value (an i64 or a string, as the column's `dtype` says) ->
//!   index = 1 + position in the sorted `vocabulary` (strings in byte order);
//!   a value not in the vocabulary -> 0 (the out-of-vocabulary row of the embedding table).
//! - numeric column: raw value -> (x - mean) / std (std is never 0; constant columns get 1).
//! - multi-valued categorical column (`bag`): each value of a row's list looked up as above;
//!   the row's embedding block is the sum of those rows in list order (f32, one rounded add at
//!   a time), divided by the list's length for `mean` pooling; an empty list gives zeros.
//! - model input = concat(embedding rows in `categorical` order, normalized `numeric` in order).

use std::ops::Range;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// The type of a categorical column's raw values, as the source table has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    /// 64-bit integers (any integer column of the source).
    #[default]
    Int64,
    /// UTF-8 strings (Utf8, large Utf8 or dictionary-encoded strings in the source).
    String,
}

impl std::fmt::Display for IdType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Int64 => "int64",
            Self::String => "string",
        })
    }
}

/// The raw values of one categorical column, in their original type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ids {
    /// Integer ids.
    Int(Vec<i64>),
    /// String ids.
    Str(Vec<String>),
}

/// The raw values of one categorical column, borrowed (see [`Ids::view`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IdsRef<'a> {
    /// Integer ids.
    Int(&'a [i64]),
    /// String ids.
    Str(&'a [String]),
}

impl<'a> IdsRef<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Self::Int(v) => v.len(),
            Self::Str(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `int64` or `string`.
    pub fn id_type(&self) -> IdType {
        match self {
            Self::Int(_) => IdType::Int64,
            Self::Str(_) => IdType::String,
        }
    }

    /// Values `range`, still borrowed.
    pub fn slice(&self, range: Range<usize>) -> IdsRef<'a> {
        match *self {
            Self::Int(v) => IdsRef::Int(&v[range]),
            Self::Str(v) => IdsRef::Str(&v[range]),
        }
    }
}

/// One raw id, borrowed: hashable and ordered, for joins and vocabularies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key<'a> {
    /// An integer id.
    Int(i64),
    /// A string id.
    Str(&'a str),
}

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(v) => write!(f, "{v}"),
            Self::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Ids {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `int64` or `string`.
    pub fn id_type(&self) -> IdType {
        self.view().id_type()
    }

    /// Value `i`, borrowed.
    pub fn key(&self, i: usize) -> Key<'_> {
        match self {
            Self::Int(v) => Key::Int(v[i]),
            Self::Str(v) => Key::Str(&v[i]),
        }
    }

    /// The values, borrowed.
    pub fn view(&self) -> IdsRef<'_> {
        match self {
            Self::Int(v) => IdsRef::Int(v),
            Self::Str(v) => IdsRef::Str(v),
        }
    }

    /// Values `range` as a new column.
    pub fn slice(&self, range: Range<usize>) -> Self {
        match self {
            Self::Int(v) => Self::Int(v[range].to_vec()),
            Self::Str(v) => Self::Str(v[range].to_vec()),
        }
    }

    /// Values picked by index, in that order.
    pub fn take(&self, idx: &[usize]) -> Self {
        match self {
            Self::Int(v) => Self::Int(idx.iter().map(|&i| v[i]).collect()),
            Self::Str(v) => Self::Str(idx.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    /// The integer values (empty for a string column).
    pub fn ints(&self) -> &[i64] {
        match self {
            Self::Int(v) => v,
            Self::Str(_) => &[],
        }
    }
}

/// Known raw values of a categorical column, strictly ascending (integers, or strings in
/// byte order).
pub type Vocabulary = Ids;

/// How a multi-valued column's embedding rows are combined into its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The rows' sum divided by the list's length (zeros for an empty list).
    #[default]
    Mean,
    /// The rows' sum (zeros for an empty list).
    Sum,
}

impl Pooling {
    /// Its name in recipes and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Sum => "sum",
        }
    }
}

/// A multi-valued categorical column: each row holds a list of at most `max_values` ids,
/// embedded as one block by `pooling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bag {
    /// The longest list a row may hold (the ONNX graph's padded width).
    pub max_values: usize,
    /// How the rows of a list combine.
    pub pooling: Pooling,
}

impl Bag {
    /// The block of one row: `rows` (embedding row indices) gathered by `row_into`, pooled
    /// into `out` (zeros for no rows). `scratch` holds one row.
    pub fn pool(
        &self,
        rows: &[u32],
        out: &mut [f32],
        scratch: &mut [f32],
        mut row_into: impl FnMut(usize, &mut [f32]),
    ) {
        out.fill(0.0);
        let Some((&first, rest)) = rows.split_first() else { return };
        row_into(first as usize, out);
        for &r in rest {
            row_into(r as usize, scratch);
            for (o, &v) in out.iter_mut().zip(scratch.iter()) {
                *o += v;
            }
        }
        if self.pooling == Pooling::Mean {
            let n = rows.len() as f32;
            out.iter_mut().for_each(|o| *o /= n);
        }
    }
}

/// The JSON form of a categorical column: `dtype` says how to read `vocabulary`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoricalJson {
    name: String,
    #[serde(default)]
    dtype: IdType,
    vocabulary: VocabularyJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bag: Option<Bag>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum VocabularyJson {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl TryFrom<CategoricalJson> for CategoricalSpec {
    type Error = Error;
    fn try_from(j: CategoricalJson) -> Result<Self> {
        let vocabulary = match (j.dtype, j.vocabulary) {
            (IdType::Int64, VocabularyJson::Int(v)) => Vocabulary::Int(v),
            (IdType::String, VocabularyJson::Str(v)) => Vocabulary::Str(v),
            (IdType::String, VocabularyJson::Int(v)) if v.is_empty() => Vocabulary::Str(Vec::new()),
            (t, _) => {
                return Err(Error::new(
                    ErrorKind::BadFeatureSpec,
                    format!("column {:?}: dtype {t} but the vocabulary holds other values", j.name),
                ));
            }
        };
        Ok(Self { bag: j.bag, ..Self::with_vocabulary(j.name, vocabulary) })
    }
}

impl From<CategoricalSpec> for CategoricalJson {
    fn from(c: CategoricalSpec) -> Self {
        let dtype = c.vocabulary.id_type();
        let vocabulary = match c.vocabulary {
            Vocabulary::Int(v) => VocabularyJson::Int(v),
            Vocabulary::Str(v) => VocabularyJson::Str(v),
        };
        Self { name: c.name, dtype, vocabulary, bag: c.bag }
    }
}

/// A categorical input column.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "CategoricalJson", into = "CategoricalJson")]
pub struct CategoricalSpec {
    /// Column name in the feature files (and the ONNX input name).
    pub name: String,
    /// Known raw values, strictly ascending; index i maps to embedding row i + 1. Do not
    /// change it after the first [`index`](Self::index) call (the lookup table is cached).
    pub vocabulary: Vocabulary,
    /// `row_of[v - min]` for every id in `min..=max`, built on first use when the range is
    /// compact ([`dense_range`](Self::dense_range)); binary search otherwise.
    row_of: OnceLock<Option<Vec<u32>>>,
    /// Set for a multi-valued column: each row holds a list of ids, pooled into one block.
    pub bag: Option<Bag>,
}

impl PartialEq for CategoricalSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.vocabulary == other.vocabulary && self.bag == other.bag
    }
}

impl CategoricalSpec {
    /// An integer column with a strictly ascending vocabulary.
    pub fn new(name: impl Into<String>, vocabulary: Vec<i64>) -> Self {
        Self::with_vocabulary(name, Vocabulary::Int(vocabulary))
    }

    /// A column of either type with a strictly ascending vocabulary.
    pub fn with_vocabulary(name: impl Into<String>, vocabulary: Vocabulary) -> Self {
        Self { name: name.into(), vocabulary, row_of: OnceLock::new(), bag: None }
    }

    /// The same column as a multi-valued one.
    pub fn with_bag(self, bag: Bag) -> Self {
        Self { bag: Some(bag), ..self }
    }

    /// The type of the raw values.
    pub fn dtype(&self) -> IdType {
        self.vocabulary.id_type()
    }

    /// Number of known values (embedding rows less the OOV row).
    pub fn len(&self) -> usize {
        self.vocabulary.len()
    }

    /// True when no value is known.
    pub fn is_empty(&self) -> bool {
        self.vocabulary.is_empty()
    }

    /// `max - min` of an integer vocabulary when a direct table over it stays small: at most
    /// max(4 · |vocabulary|, 65,536) entries. The runtime and the ONNX export's dense lookup
    /// both use this rule. `None` for string columns.
    pub fn dense_range(&self) -> Option<usize> {
        let v = self.vocabulary.ints();
        let (&min, &max) = (v.first()?, v.last()?);
        let range = usize::try_from(max.checked_sub(min)?).ok()?;
        (range < (4 * v.len()).max(1 << 16)).then_some(range)
    }

    /// Embedding row for a raw integer value: 1 + its vocabulary position, or 0 when unknown.
    pub fn index(&self, value: i64) -> u32 {
        self.lookup().row(value)
    }

    /// The lookup [`index`](Self::index) uses, resolved once for a loop over many values.
    pub fn lookup(&self) -> Lookup<'_> {
        let ints = self.vocabulary.ints();
        let table = self.row_of.get_or_init(|| {
            let range = self.dense_range()?;
            let min = ints[0];
            let mut t = vec![0u32; range + 1];
            for (i, &v) in ints.iter().enumerate() {
                t[(v - min) as usize] = i as u32 + 1;
            }
            Some(t)
        });
        match (table, &self.vocabulary) {
            (_, Vocabulary::Str(v)) => Lookup::Strings(v),
            (Some(t), Vocabulary::Int(_)) => Lookup::Dense { min: ints[0], rows: t },
            (None, Vocabulary::Int(v)) => Lookup::Sorted(v),
        }
    }

    /// Embedding rows of raw values (0 for unknown ones and for values of the other type).
    pub fn rows_of(&self, ids: &Ids) -> Vec<u32> {
        self.rows_of_ref(ids.view())
    }

    /// [`CategoricalSpec::rows_of`] on borrowed values.
    pub fn rows_of_ref(&self, ids: IdsRef<'_>) -> Vec<u32> {
        let lookup = self.lookup();
        match ids {
            IdsRef::Int(v) => v.iter().map(|&x| lookup.row(x)).collect(),
            IdsRef::Str(v) => v.iter().map(|x| lookup.row_str(x)).collect(),
        }
    }

    /// Rows of the embedding table (vocabulary plus the OOV row).
    pub fn rows(&self) -> usize {
        self.vocabulary.len() + 1
    }
}

/// How one categorical column maps raw values to embedding rows (see
/// [`CategoricalSpec::lookup`]).
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// `rows[v - min]`, 0 outside the table.
    Dense { min: i64, rows: &'a [u32] },
    /// Binary search in the sorted vocabulary.
    Sorted(&'a [i64]),
    /// Binary search in a sorted string vocabulary.
    Strings(&'a [String]),
}

impl Lookup<'_> {
    /// 1 + the vocabulary position of `value`, or 0 when unknown.
    #[inline]
    pub fn row(&self, value: i64) -> u32 {
        match *self {
            // `wrapping_sub` then an unsigned bound: ids below `min` wrap to huge offsets.
            Self::Dense { min, rows } => rows.get(value.wrapping_sub(min) as u64 as usize).copied().unwrap_or(0),
            Self::Sorted(vocabulary) => vocabulary.binary_search(&value).map_or(0, |i| i as u32 + 1),
            Self::Strings(_) => 0,
        }
    }

    /// 1 + the vocabulary position of a string `value`, or 0 when unknown (always 0 for an
    /// integer column).
    #[inline]
    pub fn row_str(&self, value: &str) -> u32 {
        match *self {
            Self::Strings(vocabulary) => {
                vocabulary.binary_search_by(|s| s.as_str().cmp(value)).map_or(0, |i| i as u32 + 1)
            }
            Self::Dense { .. } | Self::Sorted(_) => 0,
        }
    }
}

/// A numeric input column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NumericSpec {
    /// Column name in the feature files.
    pub name: String,
    /// Training-split mean.
    pub mean: f64,
    /// Training-split standard deviation (1 when the column is constant).
    pub std: f64,
}

impl NumericSpec {
    /// The normalization of a column with this mean and population variance (std 1 for a
    /// constant column).
    pub fn from_moments(name: &str, mean: f64, var: f64) -> Self {
        let std = if var.sqrt() > MIN_STD { var.sqrt() } else { 1.0 };
        Self { name: name.to_string(), mean, std }
    }

    /// The normalization of raw values: `(x - mean) · (1 / std)` in f32, the one formula every
    /// encoder (float and INT8 runtimes, ONNX export) uses; coefficients resolved once.
    pub fn normalizer(&self) -> impl Fn(f32) -> f32 + Copy + use<> {
        let (mean, inv) = self.coefficients();
        move |x| (x - mean) * inv
    }

    /// `(mean, 1 / std)` as f32.
    pub fn coefficients(&self) -> (f32, f32) {
        (self.mean as f32, (1.0 / self.std) as f32)
    }
}

/// The smallest standard deviation a spec may hold: a training column's spread below it is
/// treated as constant (std 1), and a manifest with less (a subnormal, say, whose reciprocal
/// overflows) is refused rather than scoring garbage.
pub const MIN_STD: f64 = 1e-12;

/// All model inputs, in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureSpec {
    /// Categorical columns, embedded in this order.
    pub categorical: Vec<CategoricalSpec>,
    /// Numeric columns, appended after the embeddings in this order.
    pub numeric: Vec<NumericSpec>,
    /// Name of the 0/1 label column.
    pub label: String,
    /// The raw table columns the inputs were derived from (written by `prepare`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceColumn>,
}

/// Where an input comes from: written by `prepare` so a serving system can see the source
/// table, column and type of every feature, and how the feature value was derived.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceColumn {
    /// The model input (or the role, e.g. `timestamp`) it feeds.
    pub feature: String,
    /// Table: `interactions`, `places` or `users`.
    pub table: String,
    /// Column name in that table.
    pub column: String,
    /// Its type as read (`i64`, `str`, `datetime[ms, UTC]`, ...).
    pub dtype: String,
    /// How the feature value is derived from the column, when not as is (`log1p`, `fill 0`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive: Option<String>,
}

impl FeatureSpec {
    /// Checks what encoding relies on: strictly ascending vocabularies, finite means and
    /// positive finite standard deviations. The error ([`ErrorKind::BadFeatureSpec`]) names
    /// the offending column and value.
    pub fn validate(&self) -> Result<()> {
        for c in &self.categorical {
            let bad = match &c.vocabulary {
                Vocabulary::Int(v) => v.windows(2).find(|w| w[0] >= w[1]).map(|w| (w[0].to_string(), w[1].to_string())),
                Vocabulary::Str(v) => {
                    v.windows(2).find(|w| w[0] >= w[1]).map(|w| (format!("{:?}", w[0]), format!("{:?}", w[1])))
                }
            };
            if let Some((a, b)) = bad {
                return Err(Error::new(
                    ErrorKind::BadFeatureSpec,
                    format!("column {:?}: vocabulary must be strictly ascending, found {a} then {b}", c.name),
                ));
            }
            if c.bag.is_some_and(|b| b.max_values == 0) {
                return Err(Error::new(
                    ErrorKind::BadFeatureSpec,
                    format!("column {:?}: bag.max_values is 0, expected at least 1", c.name),
                ));
            }
        }
        for n in &self.numeric {
            let (mean, inv) = n.coefficients();
            if !(n.mean.is_finite() && n.std.is_finite() && n.std >= MIN_STD && mean.is_finite() && inv.is_finite()) {
                return Err(Error::new(
                    ErrorKind::BadFeatureSpec,
                    format!(
                        "column {:?}: mean {} and std {}, expected finite values within f32 range and std >= {MIN_STD:e} (a constant column has std 1)",
                        n.name, n.mean, n.std
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Names of all input columns, categorical first.
    pub fn input_names(&self) -> Vec<&str> {
        self.categorical.iter().map(|c| c.name.as_str()).chain(self.numeric.iter().map(|n| n.name.as_str())).collect()
    }

    /// Builds the spec from training columns: sorted vocabularies of the values seen at least
    /// `min_count` times (rarer ones become out-of-vocabulary), and mean/std.
    pub fn fit(categorical: &[(&str, &Ids, usize)], numeric: &[(&str, &[f32])], label: &str) -> Self {
        let categorical = categorical
            .iter()
            .map(|(name, values, min_count)| CategoricalSpec::with_vocabulary(*name, vocabulary_of(values, *min_count)))
            .collect();
        let numeric = numeric
            .iter()
            .map(|(name, values)| {
                let n = values.len().max(1) as f64;
                let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
                NumericSpec::from_moments(name, mean, var)
            })
            .collect();
        Self { categorical, numeric, label: label.to_string(), sources: Vec::new() }
    }
}

/// The sorted distinct values of `ids` that occur at least `min_count` times.
fn vocabulary_of(ids: &Ids, min_count: usize) -> Vocabulary {
    fn keep<T: Ord + Clone>(values: &[T], min_count: usize) -> Vec<T> {
        let mut sorted: Vec<&T> = values.iter().collect();
        sorted.sort_unstable();
        let mut out: Vec<T> = Vec::new();
        for run in sorted.chunk_by(|a, b| a == b) {
            if run.len() >= min_count.max(1) {
                out.push(run[0].clone());
            }
        }
        out
    }
    match ids {
        Ids::Int(v) => Vocabulary::Int(keep(v, min_count)),
        Ids::Str(v) => Vocabulary::Str(keep(v, min_count)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_indexing_reserves_zero_for_unknown_values() {
        let spec = FeatureSpec::fit(&[("c", &Ids::Int(vec![30, 10, 20, 10]), 1)], &[], "label");
        let c = &spec.categorical[0];
        assert_eq!(c.vocabulary, Vocabulary::Int(vec![10, 20, 30]));
        assert_eq!((c.index(10), c.index(20), c.index(30)), (1, 2, 3));
        assert_eq!((c.index(15), c.index(-1), c.index(99)), (0, 0, 0));
        assert_eq!(c.rows(), 4);
    }

    #[test]
    fn dense_and_sparse_lookups_agree_with_a_linear_scan_on_every_kind_of_id() {
        let mut rng = crate::rng::Rng::new(5);
        // Compact ids (dense table), sparse ids (binary search), ids at the i64 extremes.
        let vocabs: Vec<Vec<i64>> = vec![
            (0..500).map(|_| rng.below(2000) as i64 - 1000).collect(),
            (0..300).map(|_| (rng.next_u64() >> 1) as i64 - (1 << 62)).collect(),
            vec![i64::MIN, -3, 0, 7, i64::MAX],
            vec![i64::MAX - 5, i64::MAX - 2, i64::MAX],
            vec![],
        ];
        for v in vocabs {
            let mut v = v;
            v.sort_unstable();
            v.dedup();
            let c = CategoricalSpec::new("c", v.clone());
            let mut probes: Vec<i64> = v.iter().flat_map(|&x| [x, x.wrapping_add(1), x.wrapping_sub(1)]).collect();
            probes.extend([i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX]);
            probes.extend((0..200).map(|_| rng.next_u64() as i64));
            for p in probes {
                let want = v.iter().position(|&x| x == p).map_or(0, |i| i as u32 + 1);
                assert_eq!(c.index(p), want, "id {p} (dense: {:?})", c.dense_range().is_some());
            }
        }
        assert!(CategoricalSpec::new("c", vec![-5, 10, 70_000]).dense_range().is_none());
        assert_eq!(CategoricalSpec::new("c", vec![-5, 10, 60_000]).dense_range(), Some(60_005));
    }

    #[test]
    fn validation_names_the_column_and_the_bad_value() {
        let mut spec = FeatureSpec::fit(&[("c", &Ids::Int(vec![3, 1, 2]), 1)], &[("x", &[1.0, 2.0])], "y");
        assert!(spec.validate().is_ok());
        spec.categorical[0].vocabulary = Vocabulary::Int(vec![1, 3, 3]);
        let e = spec.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadFeatureSpec);
        assert_eq!(e.to_string(), "column \"c\": vocabulary must be strictly ascending, found 3 then 3");
        spec.categorical[0].vocabulary = Vocabulary::Str(vec!["b".into(), "a".into()]);
        let e = spec.validate().unwrap_err();
        assert_eq!(e.to_string(), "column \"c\": vocabulary must be strictly ascending, found \"b\" then \"a\"");
        spec.categorical[0].vocabulary = Vocabulary::Int(vec![1, 2, 3]);
        spec.numeric[0].std = 0.0;
        let e = spec.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadFeatureSpec);
        assert!(e.to_string().starts_with("column \"x\": mean 1.5 and std 0, expected finite values"), "{e}");
    }

    #[test]
    fn string_ids_look_up_in_byte_order_and_rare_values_become_unknown() {
        let ids = Ids::Str(["Cafe", "Bar", "Cafe", "Zoo", "Bar", "Cafe"].map(String::from).to_vec());
        let spec = FeatureSpec::fit(&[("c", &ids, 2)], &[], "y");
        let c = &spec.categorical[0];
        // "Zoo" occurs once, below min_count 2: out of vocabulary.
        assert_eq!(c.vocabulary, Vocabulary::Str(vec!["Bar".into(), "Cafe".into()]));
        let probe = Ids::Str(["Cafe", "Bar", "Zoo", "", "cafe"].map(String::from).to_vec());
        assert_eq!(c.rows_of(&probe), vec![2, 1, 0, 0, 0]);
        // Integer values never match a string column.
        assert_eq!(c.rows_of(&Ids::Int(vec![1, 2])), vec![0, 0]);
        assert_eq!(c.dtype(), IdType::String);
    }

    #[test]
    fn spec_json_round_trips_both_id_types_and_refuses_a_mismatched_dtype() {
        let spec = FeatureSpec::fit(
            &[("s", &Ids::Str(vec!["b".into(), "a".into()]), 1), ("i", &Ids::Int(vec![5, 3]), 1)],
            &[("x", &[1.0, 3.0])],
            "y",
        );
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains(r#""name":"s","dtype":"string","vocabulary":["a","b"]"#), "{json}");
        assert!(json.contains(r#""name":"i","dtype":"int64","vocabulary":[3,5]"#), "{json}");
        let back: FeatureSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        // Manifests written before dtype existed read as int64.
        let old: CategoricalSpec = serde_json::from_str(r#"{"name":"c","vocabulary":[1,2]}"#).unwrap();
        assert_eq!(old.dtype(), IdType::Int64);
        let bad = serde_json::from_str::<CategoricalSpec>(r#"{"name":"c","dtype":"int64","vocabulary":["a"]}"#);
        assert!(bad.unwrap_err().to_string().contains("dtype int64"));
    }

    #[test]
    fn normalization_uses_population_moments_and_guards_constant_columns() {
        let spec = FeatureSpec::fit(&[], &[("x", &[1.0, 2.0, 3.0, 4.0]), ("k", &[5.0, 5.0])], "y");
        let x = &spec.numeric[0];
        assert!((x.mean - 2.5).abs() < 1e-12);
        assert!((x.std - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(spec.numeric[1].std, 1.0);
    }
}
