//! Where the user was when they chose (the origin of `distance_km`, of negatives within the
//! radius and of ranking candidates): the interaction's own location, the user's home, or the
//! place of their previous visit; and the leak checks on it.

use serde::Serialize;

use crate::data::raw::{Interactions, Places, Users};
use crate::data::schema::{ContextSource, FilesConfig};
use reco_runtime::error::{Error, Result};

/// Where the context location came from (resolved from the recipe's `context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextKind {
    /// The interactions' own coordinates.
    Interaction,
    /// The user's home.
    Home,
    /// The place of the user's previous visit.
    PreviousVisit,
}

/// The context location of every interaction (NaN where it has none).
pub struct Context {
    /// Where it came from.
    pub kind: ContextKind,
    /// Latitude per interaction.
    pub lat: Vec<f64>,
    /// Longitude per interaction.
    pub lon: Vec<f64>,
}

/// Step 3: the context location of every interaction, or `None` when there is none to use
/// (places without coordinates, or no location anywhere with `context = "auto"`).
pub fn context(
    data: &FilesConfig,
    users: &Users,
    places: &Places,
    inter: &Interactions,
    label: &[f32],
) -> Result<Option<Context>> {
    let Some(kind) = context_kind(data, users, places, inter)? else { return Ok(None) };
    let t = &inter.mapped.table;
    let (lat, lon) = match kind {
        ContextKind::Interaction => inter.coords.clone().ok_or_else(|| {
            Error::input(format!("{}: data.context = \"interaction\" needs lat and lon columns", t.name))
        })?,
        ContextKind::Home => {
            let (hl, ho) = users.home.as_ref().ok_or_else(|| {
                Error::input("data.context = \"home\" needs a users table with home_lat and home_lon")
            })?;
            inter.user.iter().map(|&u| (hl[u as usize], ho[u as usize])).unzip()
        }
        ContextKind::PreviousVisit => {
            let (pl, po) = places.coords.as_ref().ok_or_else(|| Error::Internal("no coordinates".into()))?;
            let prev = previous_visit(&inter.user, &inter.ts, &inter.place, Some(label));
            prev.iter().map(|p| p.map_or((f64::NAN, f64::NAN), |p| (pl[p as usize], po[p as usize]))).unzip()
        }
    };
    Ok(Some(Context { kind, lat, lon }))
}

/// Where the context location comes from, as the recipe and the tables resolve it.
pub(crate) fn context_kind(
    data: &FilesConfig,
    users: &Users,
    places: &Places,
    inter: &Interactions,
) -> Result<Option<ContextKind>> {
    let t = &inter.mapped.table;
    if places.coords.is_none() {
        if data.context != ContextSource::Auto {
            return Err(Error::input(format!(
                "{}: data.context = \"{}\" needs place coordinates: map lat and lon of the places table ([data.places] columns)",
                t.name,
                context_name(data.context)
            )));
        }
        return Ok(None);
    }
    Ok(Some(match data.context {
        ContextSource::Interaction => ContextKind::Interaction,
        ContextSource::Home => ContextKind::Home,
        ContextSource::PreviousVisit => ContextKind::PreviousVisit,
        ContextSource::Auto if inter.coords.is_some() => ContextKind::Interaction,
        ContextSource::Auto if users.home.is_some() => ContextKind::Home,
        ContextSource::Auto => {
            return Err(Error::input(format!(
                "{}: no context location: map interactions lat/lon or users home_lat/home_lon, or set data.context = \"previous_visit\"",
                t.name
            )));
        }
    }))
}

/// Of the visits among interactions at `place` with context `ctx`: how many have the
/// visited place's own location as context (within 50 m), and how many there are.
pub(crate) fn at_place_counts(places: &Places, place: &[u32], ctx: &Context, label: &[f32]) -> (usize, usize) {
    let Some((pl, po)) = &places.coords else { return (0, 0) };
    let visits: Vec<usize> = (0..label.len()).filter(|&i| label[i] > 0.5).collect();
    let at_place = visits
        .iter()
        .filter(|&&i| {
            let p = place[i] as usize;
            crate::geo::haversine_km(ctx.lat[i], ctx.lon[i], pl[p], po[p]) < 0.05
        })
        .count();
    (at_place, visits.len())
}

/// Refuses interaction coordinates that are the visited place's own location (a check-in log
/// repeats the venue's coordinates, or a GPS fix at the venue, on every row): distance would
/// be ~0 for every visit, a leak. Within 50 m on more than half of the visits counts.
pub(crate) fn refuse_at_place(table: &str, at_place: usize, visits: usize) -> Result<()> {
    if visits >= 10 && at_place * 2 > visits {
        return Err(Error::input(format!(
            "{table}: the interactions' lat/lon equal the visited place's coordinates on {at_place} of {visits} visits: they are the place's location, not where the user was; set data.context = \"previous_visit\" (or map the user's own location)"
        )));
    }
    Ok(())
}

/// The place of each user's last visit strictly before each interaction (`None` for a
/// user's first visit time). `label` marks visits (all rows are visits without it).
pub fn previous_visit(user: &[u32], ts: &[i64], place: &[u32], label: Option<&[f32]>) -> Vec<Option<u32>> {
    let mut order: Vec<usize> = (0..ts.len()).collect();
    order.sort_by_key(|&i| (user[i], ts[i], i));
    let mut out = vec![None; ts.len()];
    for group in order.chunk_by(|&a, &b| user[a] == user[b]) {
        let mut last: Option<u32> = None;
        // Events at one instant do not see each other: the whole instant gets the visit before.
        for same in group.chunk_by(|&a, &b| ts[a] == ts[b]) {
            for &i in same {
                out[i] = last;
            }
            if let Some(&i) = same.iter().rev().find(|&&i| label.is_none_or(|y| y[i] > 0.5)) {
                last = Some(place[i]);
            }
        }
    }
    out
}

/// The recipe name of a context setting.
fn context_name(c: ContextSource) -> &'static str {
    match c {
        ContextSource::Auto => "auto",
        ContextSource::Interaction => "interaction",
        ContextSource::Home => "home",
        ContextSource::PreviousVisit => "previous_visit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn previous_visit_is_the_last_visit_strictly_before_and_per_user() {
        // User 0: visits at t=10 (place 5), 20 (places 6 and 7 at the same instant), 30.
        // User 1: a non-visit at 5 (place 8), a visit at 15 (place 9).
        let user = [0, 0, 0, 0, 1, 1];
        let ts = [20, 10, 30, 20, 15, 5];
        let place = [6, 5, 1, 7, 9, 8];
        let label = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let prev = previous_visit(&user, &ts, &place, Some(&label));
        // Events at one instant do not see each other; a non-visit is no previous visit.
        assert_eq!(prev, [Some(5), None, Some(7), Some(5), None, None]);
    }
}
