//! The user-history features' inputs in `prepare`: every visit (a positive event, never a
//! sampled negative) indexed by user, place and place category ([`UserHistory`]), so that any
//! row's [`HistoryStats`] — what its user had done strictly before its time — is a few binary
//! searches. The formulas live in [`reco_runtime::features::history`], shared with a server.

use std::collections::HashMap;

use crate::data::raw::Places;
use crate::data::schema::Role;
use reco_runtime::artifact::spec::Ids;
use reco_runtime::error::Result;
use reco_runtime::features::history::{HistoryIndex, HistoryStats, NO_CATEGORY};

/// Every user's visits, with each place's category.
pub struct UserHistory {
    index: HistoryIndex,
    category: Vec<u32>,
    window: i64,
}

impl UserHistory {
    /// Indexes `visits` (`(user, place, time)`, any order) for places of `category`
    /// ([`place_categories`]) and the trailing window `window` (seconds).
    pub fn new(visits: impl Iterator<Item = (u32, u32, i64)>, category: Vec<u32>, window: i64) -> Self {
        let index = HistoryIndex::new(visits.map(|(u, p, t)| (u, p, category[p as usize], t)));
        Self { index, category, window }
    }

    /// `user`'s history at `place` strictly before `t`.
    pub fn stats(&self, user: u32, place: u32, t: i64) -> HistoryStats {
        self.index.at(user, place, self.category[place as usize], t, self.window)
    }
}

/// Each place's category as a number (`NO_CATEGORY` where the places have none or the value
/// is missing): equal numbers for equal category values.
pub fn place_categories(places: &Places) -> Result<Vec<u32>> {
    let n = places.ids.len();
    let Some((m, column)) = places.mapped.as_ref().and_then(|m| m.col(Role::Category).map(|c| (m, c))) else {
        return Ok(vec![NO_CATEGORY; n]);
    };
    let values: Vec<String> = match m.table.categories(column)? {
        Ids::Int(v) => v.iter().map(i64::to_string).collect(),
        Ids::Str(v) => v,
    };
    if values.len() != n {
        return Err(reco_runtime::Error::Internal(format!("{} category values for {n} places", values.len())));
    }
    let mut codes: HashMap<&str, u32> = HashMap::new();
    Ok(values
        .iter()
        .map(|v| {
            if v.is_empty() {
                return NO_CATEGORY;
            }
            let next = codes.len() as u32;
            *codes.entry(v.as_str()).or_insert(next)
        })
        .collect())
}
