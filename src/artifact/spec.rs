//! The feature spec: column order, vocabularies and normalization that travel inside every
//! artifact, so a serving system can reproduce preprocessing from the manifest alone.
//!
//! Encoding rules (also stated in the README):
//! - categorical column: raw i64 value -> index = 1 + position in the sorted `vocabulary`;
//!   a value not in the vocabulary -> 0 (the out-of-vocabulary row of the embedding table).
//! - numeric column: raw value -> (x - mean) / std (std is never 0; constant columns get 1).
//! - model input = concat(embedding rows in `categorical` order, normalized `numeric` in order).

use serde::{Deserialize, Serialize};

/// A categorical input column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CategoricalSpec {
    /// Column name in the feature files (and the ONNX input name).
    pub name: String,
    /// Known raw values, sorted ascending; index i maps to embedding row i + 1.
    pub vocabulary: Vec<i64>,
}

impl CategoricalSpec {
    /// Embedding row for a raw value: 1 + its vocabulary position, or 0 when unknown.
    pub fn index(&self, value: i64) -> u32 {
        match self.vocabulary.binary_search(&value) {
            Ok(i) => i as u32 + 1,
            Err(_) => 0,
        }
    }

    /// Rows of the embedding table (vocabulary plus the OOV row).
    pub fn rows(&self) -> usize {
        self.vocabulary.len() + 1
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
                CategoricalSpec { name: (*name).to_string(), vocabulary }
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
    fn normalization_uses_population_moments_and_guards_constant_columns() {
        let spec = FeatureSpec::fit(&[], &[("x", &[1.0, 2.0, 3.0, 4.0]), ("k", &[5.0, 5.0])], "y");
        let x = &spec.numeric[0];
        assert!((x.mean - 2.5).abs() < 1e-12);
        assert!((x.std - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(spec.numeric[1].std, 1.0);
    }
}
