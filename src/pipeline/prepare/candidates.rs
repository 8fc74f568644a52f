//! The rows to featurize: every interaction, and for visits-only data `negatives_per_positive`
//! sampled places per visit (within `radius_km` of the context with a grid index, else by
//! popularity), with the visits dropped for want of a context or for lying outside the radius
//! counted.

use super::context::Context;
use super::featurize::Rows;
use super::labels::LabelSource;
use super::splits::{bounds, time_cuts};
use crate::data::raw::{Places, RawData};
use crate::geo::GridIndex;
use crate::recipe::PrepareConfig;
use reco_runtime::rng::Rng;

/// How negatives and ranking candidates are drawn.
pub enum Candidates {
    /// Places within the radius of the context location (grid index).
    Radius {
        /// Grid over the places.
        index: GridIndex,
        /// Radius, km.
        radius_km: f64,
    },
    /// Any place, with probability proportional to its visits in the training period + 1.
    Popularity {
        /// Cumulative weights.
        cumulative: Vec<f64>,
    },
}

impl Candidates {
    pub(crate) fn new(raw: &RawData, ctx: Option<&Context>, label: &[f32], cfg: &PrepareConfig) -> Self {
        Self::radius(&raw.places, ctx.is_some(), cfg).unwrap_or_else(|| {
            let inter = &raw.inter;
            let cut = time_cuts(bounds(&inter.ts), cfg)[0];
            let mut weights = vec![1.0f64; raw.places.ids.len()];
            add_popularity(&mut weights, &inter.place, label, &inter.ts, cut);
            Self::popularity(&weights)
        })
    }

    /// Places within the radius, when places have coordinates and rows a context.
    pub(crate) fn radius(places: &Places, has_ctx: bool, cfg: &PrepareConfig) -> Option<Self> {
        let radius_km = cfg.radius_km;
        match (&places.coords, has_ctx) {
            (Some((lat, lon)), true) => Some(Self::Radius { index: GridIndex::new(lat, lon, radius_km), radius_km }),
            _ => None,
        }
    }

    /// Any place, with probability proportional to `weights` (visits in the training period
    /// + 1: see [`add_popularity`]).
    pub(crate) fn popularity(weights: &[f64]) -> Self {
        let mut acc = 0.0;
        let cumulative = weights.iter().map(|&x| {
            acc += x;
            acc
        });
        Self::Popularity { cumulative: cumulative.collect() }
    }

    /// Up to `k` distinct places other than `exclude`, around (`lat`, `lon`) when by radius.
    pub(crate) fn draw(&self, lat: f64, lon: f64, exclude: u32, k: usize, rng: &mut Rng) -> Vec<u32> {
        match self {
            Self::Radius { index, radius_km } => {
                let mut cands = index.within(lat, lon, *radius_km);
                cands.retain(|&c| c != exclude);
                rng.shuffle(&mut cands);
                cands.truncate(k);
                cands
            }
            Self::Popularity { cumulative } => {
                let total = cumulative.last().copied().unwrap_or(0.0);
                let k = k.min(cumulative.len().saturating_sub(1));
                let mut out: Vec<u32> = Vec::with_capacity(k);
                let mut tries = 0;
                while out.len() < k && tries < 50 * k + 100 {
                    tries += 1;
                    let u = rng.uniform() * total;
                    let c = cumulative.partition_point(|&x| x <= u).min(cumulative.len() - 1) as u32;
                    if c != exclude && !out.contains(&c) {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

/// Adds the visits before `cut` (the training period: negatives are not drawn with
/// popularity from the future) to each place's popularity weight.
pub(crate) fn add_popularity(weights: &mut [f64], place: &[u32], label: &[f32], ts: &[i64], cut: i64) {
    for ((&p, &y), &t) in place.iter().zip(label).zip(ts) {
        if t < cut {
            weights[p as usize] += f64::from(y);
        }
    }
}

/// Interactions `impressions` left out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Dropped {
    /// Without a context location.
    pub no_context: usize,
    /// Farther than the radius from it (implicit data).
    pub outside_radius: usize,
}

/// Step 4: the impressions — interactions with a context (labelled data as they are;
/// implicit data with sampled negatives, and only the visits within the radius the
/// negatives are drawn from). Returns them and what was dropped.
pub(crate) fn impressions(
    raw: &RawData,
    label: &[f32],
    labels: LabelSource,
    ctx: Option<&Context>,
    candidates: &Candidates,
    cfg: &PrepareConfig,
    rng: &mut Rng,
) -> (Rows, Dropped) {
    let inter = &raw.inter;
    let has_oracle = inter.oracle.is_some() && labels != LabelSource::Implicit;
    let mut rows = Rows::new(has_oracle, false);
    let mut dropped = Dropped::default();
    let imp = Impressions::new(&raw.places, labels, candidates, cfg);
    for (i, &y) in label.iter().enumerate() {
        let at = ctx.map_or((0.0, 0.0), |c| (c.lat[i], c.lon[i]));
        imp.push(&mut rows, &mut dropped, (i, inter.place[i], inter.ts[i], y), at, rng);
    }
    (rows, dropped)
}

/// How one interaction becomes rows (step 4).
pub(crate) struct Impressions<'a> {
    implicit: bool,
    radius_check: Option<&'a (Vec<f64>, Vec<f64>)>,
    candidates: &'a Candidates,
    cfg: &'a PrepareConfig,
}

impl<'a> Impressions<'a> {
    /// The rule for `labels`, negatives drawn from `candidates`.
    pub(crate) fn new(
        places: &'a Places,
        labels: LabelSource,
        candidates: &'a Candidates,
        cfg: &'a PrepareConfig,
    ) -> Self {
        let implicit = labels == LabelSource::Implicit;
        let radius_check = match (&places.coords, candidates) {
            (Some(coords), Candidates::Radius { .. }) if implicit => Some(coords),
            _ => None,
        };
        Self { implicit, radius_check, candidates, cfg }
    }

    /// Pushes the rows of interaction `(src, place, ts, label)` with context location `at`
    /// onto `rows`, or counts it in `dropped`.
    pub(crate) fn push(
        &self,
        rows: &mut Rows,
        dropped: &mut Dropped,
        (src, place, ts, y): (usize, u32, i64, f32),
        (lat, lon): (f64, f64),
        rng: &mut Rng,
    ) {
        if lat.is_nan() || lon.is_nan() {
            dropped.no_context += 1;
            return;
        }
        if let Some((pl, po)) = self.radius_check {
            let p = place as usize;
            if crate::geo::haversine_km(lat, lon, pl[p], po[p]) > self.cfg.radius_km {
                dropped.outside_radius += 1;
                return;
            }
        }
        rows.push_interaction(src, place, ts, y);
        if self.implicit {
            for c in self.candidates.draw(lat, lon, place, self.cfg.negatives_per_positive, rng) {
                rows.push_interaction(src, c, ts, 0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn popularity_candidates_are_distinct_exclude_the_visited_place_and_favour_visits() {
        let mut cumulative = Vec::new();
        let mut acc = 0.0;
        for w in [1.0, 1.0, 50.0, 1.0, 1.0] {
            acc += w;
            cumulative.push(acc);
        }
        let c = Candidates::Popularity { cumulative };
        let mut rng = Rng::new(1);
        let mut first = [0usize; 5];
        for _ in 0..400 {
            let d = c.draw(0.0, 0.0, 0, 3, &mut rng);
            assert_eq!(d.len(), 3);
            assert!(!d.contains(&0));
            let mut u = d.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), 3, "{d:?}");
            first[d[0] as usize] += 1;
        }
        // Place 2 carries 50 of the 54 weight: drawn first almost always.
        assert!(first[2] > 300, "{first:?}");
        // Asking for more than exist gives every other place once.
        assert_eq!(c.draw(0.0, 0.0, 4, 10, &mut rng).len(), 4);
    }
}
