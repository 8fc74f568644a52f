//! Where labels come from (an explicit 0/1 column, a rating threshold, or visits only), and
//! the checks on the log that depend on them (users with one event, declared features that
//! would leak the label).

use serde::Serialize;

use crate::data::raw::Interactions;
use crate::data::schema::{FilesConfig, TableName};
use reco_runtime::error::{Error, Result};

/// Where the labels came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LabelSource {
    /// An explicit 0/1 column.
    Column,
    /// `rating >= threshold` is a positive, lower ratings are observed negatives.
    Rating {
        /// The threshold.
        threshold: f64,
    },
    /// Visits only: sampled negatives.
    Implicit,
}

/// Step 2: labels of every interaction and where they came from.
pub fn labels(data: &FilesConfig, inter: &Interactions) -> Result<(Vec<f32>, LabelSource)> {
    let (label, source) = chunk_labels(data, inter)?;
    if source == LabelSource::Implicit {
        let mut per_user = Vec::new();
        count_users(&mut per_user, &inter.user);
        refuse_single_visits(&inter.mapped.table.name, &per_user)?;
    }
    Ok((label, source))
}

/// The labels of a chunk of interactions (implicit data: see [`refuse_single_visits`]).
pub(crate) fn chunk_labels(data: &FilesConfig, inter: &Interactions) -> Result<(Vec<f32>, LabelSource)> {
    if let Some(y) = &inter.label {
        return Ok((y.clone(), LabelSource::Column));
    }
    let t = &inter.mapped.table;
    if let Some(threshold) = data.positive_rating {
        let col = inter.mapped.col(crate::data::schema::Role::Rating).unwrap_or("rating");
        let r = inter.rating.as_ref().ok_or_else(|| {
            Error::input(format!(
                "{}: data.positive_rating needs a rating column (missing column `{col}`; map it with data.interactions.columns.rating)",
                t.name
            ))
        })?;
        if let Some(i) = r.iter().position(|v| v.is_nan()) {
            return Err(Error::input(format!("{} is null, expected a rating (data.positive_rating)", t.at(col, i))));
        }
        return Ok((
            r.iter().map(|&v| f32::from(u8::from(v >= threshold))).collect(),
            LabelSource::Rating { threshold },
        ));
    }
    Ok((vec![1.0; inter.ts.len()], LabelSource::Implicit))
}

/// Adds the events of each user row in `users` to `per_user`.
pub(crate) fn count_users(per_user: &mut Vec<u32>, users: &[u32]) {
    for &u in users {
        if per_user.len() <= u as usize {
            per_user.resize(u as usize + 1, 0);
        }
        per_user[u as usize] += 1;
    }
}

/// Implicit data where every user has one event has nothing to learn preferences from.
pub(crate) fn refuse_single_visits(table: &str, per_user: &[u32]) -> Result<()> {
    if per_user.iter().all(|&n| n <= 1) {
        return Err(Error::input(format!(
            "{table}: implicit data (no label column, no data.positive_rating) where every user has one event: \
             nothing to learn preferences from; expected users with several visits"
        )));
    }
    Ok(())
}

/// Interaction-level declared features on implicit data would copy the visited row's values
/// onto its sampled negatives (a leak), so they need labelled data.
pub(crate) fn check_declared_leakage(data: &FilesConfig, labels: LabelSource) -> Result<()> {
    if labels != LabelSource::Implicit {
        return Ok(());
    }
    match data.features.iter().find(|f| f.table == TableName::Interactions) {
        Some(f) => Err(Error::input(format!(
            "data.features {:?}: an interactions column cannot be a feature of implicit data (sampled negatives would copy the visit's value); declare it on the places or users table",
            f.feature_name()
        ))),
        None => Ok(()),
    }
}
