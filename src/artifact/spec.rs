//! The feature spec: column order, vocabularies and normalization that travel inside every
//! artifact, so a serving system can reproduce preprocessing from the manifest alone.
//!
//! Encoding rules (also stated in the README):
//! - categorical column: raw i64 value -> index = 1 + position in the sorted `vocabulary`;
//!   a value not in the vocabulary -> 0 (the out-of-vocabulary row of the embedding table).
//! - numeric column: raw value -> (x - mean) / std (std is never 0; constant columns get 1).
//! - model input = concat(embedding rows in `categorical` order, normalized `numeric` in order).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// A categorical input column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoricalSpec {
    /// Column name in the feature files (and the ONNX input name).
    pub name: String,
    /// Known raw values, strictly ascending; index i maps to embedding row i + 1. Do not
    /// change it after the first [`index`](Self::index) call (the lookup table is cached).
    pub vocabulary: Vec<i64>,
    /// `row_of[v - min]` for every id in `min..=max`, built on first use when the range is
    /// compact ([`dense_range`](Self::dense_range)); binary search otherwise.
    #[serde(skip)]
    row_of: OnceLock<Option<Vec<u32>>>,
}

impl PartialEq for CategoricalSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.vocabulary == other.vocabulary
    }
}

impl CategoricalSpec {
    /// A column with a strictly ascending vocabulary.
    pub fn new(name: impl Into<String>, vocabulary: Vec<i64>) -> Self {
        Self { name: name.into(), vocabulary, row_of: OnceLock::new() }
    }

    /// `max - min` of the vocabulary when a direct table over it stays small: at most
    /// max(4 · |vocabulary|, 65,536) entries. The runtime and the ONNX export's dense lookup
    /// both use this rule.
    pub fn dense_range(&self) -> Option<usize> {
        let (&min, &max) = (self.vocabulary.first()?, self.vocabulary.last()?);
        let range = usize::try_from(max.checked_sub(min)?).ok()?;
        (range < (4 * self.vocabulary.len()).max(1 << 16)).then_some(range)
    }

    /// Embedding row for a raw value: 1 + its vocabulary position, or 0 when unknown.
    pub fn index(&self, value: i64) -> u32 {
        self.lookup().row(value)
    }

    /// The lookup [`index`](Self::index) uses, resolved once for a loop over many values.
    pub fn lookup(&self) -> Lookup<'_> {
        let table = self.row_of.get_or_init(|| {
            let range = self.dense_range()?;
            let min = self.vocabulary[0];
            let mut t = vec![0u32; range + 1];
            for (i, &v) in self.vocabulary.iter().enumerate() {
                t[(v - min) as usize] = i as u32 + 1;
            }
            Some(t)
        });
        match table {
            Some(t) => Lookup::Dense { min: self.vocabulary[0], rows: t },
            None => Lookup::Sorted(&self.vocabulary),
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
}

impl Lookup<'_> {
    /// 1 + the vocabulary position of `value`, or 0 when unknown.
    #[inline]
    pub fn row(&self, value: i64) -> u32 {
        match *self {
            // `wrapping_sub` then an unsigned bound: ids below `min` wrap to huge offsets.
            Self::Dense { min, rows } => rows.get(value.wrapping_sub(min) as u64 as usize).copied().unwrap_or(0),
            Self::Sorted(vocabulary) => vocabulary.binary_search(&value).map_or(0, |i| i as u32 + 1),
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

/// All model inputs, in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureSpec {
    /// Categorical columns, embedded in this order.
    pub categorical: Vec<CategoricalSpec>,
    /// Numeric columns, appended after the embeddings in this order.
    pub numeric: Vec<NumericSpec>,
    /// Name of the 0/1 label column.
    pub label: String,
}

impl FeatureSpec {
    /// Checks what encoding relies on: strictly ascending vocabularies, finite means and
    /// positive finite standard deviations. Returns the offending column and value.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for c in &self.categorical {
            if let Some(w) = c.vocabulary.windows(2).find(|w| w[0] >= w[1]) {
                return Err(format!(
                    "column {:?}: vocabulary must be strictly ascending, found {} then {}",
                    c.name, w[0], w[1]
                ));
            }
        }
        for n in &self.numeric {
            if !(n.mean.is_finite() && n.std.is_finite() && n.std > 0.0) {
                return Err(format!(
                    "column {:?}: mean {} and std {}, expected finite values and std > 0",
                    n.name, n.mean, n.std
                ));
            }
        }
        Ok(())
    }

    /// Names of all input columns, categorical first.
    pub fn input_names(&self) -> Vec<&str> {
        self.categorical.iter().map(|c| c.name.as_str()).chain(self.numeric.iter().map(|n| n.name.as_str())).collect()
    }

    /// Builds the spec from training columns: sorted vocabularies and mean/std.
    pub fn fit(categorical: &[(&str, &[i64])], numeric: &[(&str, &[f32])], label: &str) -> Self {
        let categorical = categorical
            .iter()
            .map(|(name, values)| {
                let mut vocabulary = values.to_vec();
                vocabulary.sort_unstable();
                vocabulary.dedup();
                CategoricalSpec::new(*name, vocabulary)
            })
            .collect();
        let numeric = numeric
            .iter()
            .map(|(name, values)| {
                let n = values.len().max(1) as f64;
                let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
                let std = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
                NumericSpec { name: (*name).to_string(), mean, std }
            })
            .collect();
        Self { categorical, numeric, label: label.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_indexing_reserves_zero_for_unknown_values() {
        let spec = FeatureSpec::fit(&[("c", &[30, 10, 20, 10])], &[], "label");
        let c = &spec.categorical[0];
        assert_eq!(c.vocabulary, vec![10, 20, 30]);
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
        let mut spec = FeatureSpec::fit(&[("c", &[3, 1, 2])], &[("x", &[1.0, 2.0])], "y");
        assert!(spec.validate().is_ok());
        spec.categorical[0].vocabulary = vec![1, 3, 3];
        let e = spec.validate().unwrap_err();
        assert!(e.contains("\"c\"") && e.contains("3 then 3"), "{e}");
        spec.categorical[0].vocabulary = vec![1, 2, 3];
        spec.numeric[0].std = 0.0;
        assert!(spec.validate().unwrap_err().contains("\"x\""));
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
