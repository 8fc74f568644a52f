//! The online features behind `POST /v1/events` and `POST /v1/score/raw` (`serve --features
//! DIR`): `prepare`'s featurizer settings and place snapshot, and the event-fed state, warm
//! from `prepare`'s event log unless `--cold`.

use std::path::Path;
use std::sync::RwLock;

use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::features::online::{Featurizer, RawRow, RowFlags, Settings};
use reco_runtime::features::state::{Counters, Event, Limits, OnlineState};
use reco_runtime::features::{calendar, files};
use reco_runtime::runtime::Columns;

/// The state's bounds from the flags (`None`: the default of the window).
#[derive(Debug, Clone, Copy)]
pub struct StateFlags {
    /// Seconds a request may lag the newest event (and past the window a place keeps events).
    pub lateness_s: Option<i64>,
    /// Visits a user keeps with their times.
    pub max_visits_per_user: usize,
    /// Users kept.
    pub max_users: usize,
    /// Start with an empty state instead of replaying `events.parquet`.
    pub cold: bool,
}

/// The featurizer and its state.
pub struct Online {
    featurizer: Featurizer,
    state: RwLock<OnlineState>,
}

impl Online {
    /// Loads `dir` (a `prepare` features directory) for a model of `spec`.
    pub fn load(dir: &Path, spec: &FeatureSpec, flags: StateFlags) -> Result<Self, String> {
        let at = |name: &str| dir.join(name);
        let text =
            std::fs::read(at("featurizer.json")).map_err(|e| format!("{}: {e}", at("featurizer.json").display()))?;
        let settings: Settings =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", at("featurizer.json").display()))?;
        let places = files::read_places(&at("places.parquet"), spec).map_err(|e| e.to_string())?;
        let zone = settings.timezone.as_deref().map(calendar::zone).transpose().map_err(|e| e.to_string())?;
        let featurizer = Featurizer::new(spec.clone(), settings, places, zone).map_err(|e| e.to_string())?;
        let window = featurizer.settings().window_s;
        let limits = Limits {
            lateness: flags.lateness_s.unwrap_or(window),
            max_visits_per_user: flags.max_visits_per_user,
            max_users: flags.max_users,
        };
        let mut state = OnlineState::new(window, featurizer.categories(), limits);
        if !flags.cold {
            let mut events = files::read_events(&at("events.parquet")).map_err(|e| e.to_string())?;
            events.sort_by_key(|e| e.ts);
            for e in events {
                state.insert(featurizer.event(e));
            }
        }
        Ok(Self { featurizer, state: RwLock::new(state) })
    }

    /// Takes events; returns how many were late for the places' windows.
    pub fn insert(&self, events: Vec<Event>) -> u64 {
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = state.counters().late_events;
        for e in events {
            state.insert(self.featurizer.event(e));
        }
        state.counters().late_events - before
    }

    /// The model inputs of raw rows, with their flags.
    pub fn columns(&self, rows: Vec<RawRow>) -> Result<(Columns, Vec<RowFlags>), String> {
        let rows: Vec<RawRow> = rows.into_iter().map(|r| self.featurizer.row(r)).collect();
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.featurizer.columns(&state, &rows).map_err(|e| e.to_string())
    }

    /// The state's counters, for `/metrics`.
    pub fn counters(&self) -> Counters {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner).counters()
    }
}
