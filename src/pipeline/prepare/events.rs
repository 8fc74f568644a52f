//! What a server starts warm from, written beside the feature files: the event log
//! (`events.parquet`: every real event's user, place, time, whether it was a visit, its
//! rating) to replay into the online state, and `featurizer.json`, the settings the online
//! features depend on ([`reco_runtime::features::online::Settings`]).

use polars::prelude::*;

use super::feature_files::SplitWriter;
use super::featurize::FeatureContext;
use crate::data::io::frame;
use crate::data::raw::{Places, Users};
use crate::data::schema::FilesConfig;
use reco_runtime::artifact::ArtifactWriter;
use reco_runtime::artifact::spec::Ids;
use reco_runtime::error::{Error, IoContext, Result};
use reco_runtime::features::history;
use reco_runtime::features::online::Settings;

/// The event log's file name.
pub const EVENTS: &str = "events.parquet";
/// The settings' file name.
pub const SETTINGS: &str = "featurizer.json";

/// Events being written, a chunk at a time.
#[derive(Default)]
pub struct EventChunk {
    /// User rows.
    pub user: Vec<u32>,
    /// Place rows.
    pub place: Vec<u32>,
    /// Unix seconds.
    pub ts: Vec<i64>,
    /// 1 for a visit, else 0.
    pub visit: Vec<f32>,
    /// The rating, when the event has one.
    pub rating: Vec<Option<f64>>,
}

impl EventChunk {
    /// Appends one event.
    pub fn push(&mut self, (user, place, ts, visit): (u32, u32, i64, bool), rating: Option<f64>) {
        self.user.push(user);
        self.place.push(place);
        self.ts.push(ts);
        self.visit.push(f32::from(u8::from(visit)));
        self.rating.push(rating.filter(|r| r.is_finite()));
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True without events.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The chunk as the file's rows, with the users' and places' raw ids.
    fn frame(&self, users: &Users, places: &Places) -> Result<DataFrame> {
        let ids = |name: &str, all: &Ids, rows: &[u32]| {
            let rows: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
            match all.take(&rows) {
                Ids::Int(v) => Column::new(name.into(), v),
                Ids::Str(v) => Column::new(name.into(), v),
            }
        };
        frame(
            self.len(),
            vec![
                ids("user_id", &users.ids, &self.user),
                ids("place_id", &places.ids, &self.place),
                Column::new("timestamp".into(), &self.ts),
                Column::new("visit".into(), &self.visit),
                Column::new("rating".into(), &self.rating),
            ],
        )
    }
}

/// `events.parquet` in the staging directory, written a chunk at a time.
pub struct EventWriter<'a> {
    out: SplitWriter,
    users: &'a Users,
    places: &'a Places,
}

impl<'a> EventWriter<'a> {
    /// Creates the file.
    pub fn create(writer: &ArtifactWriter, users: &'a Users, places: &'a Places) -> Result<Self> {
        Ok(Self { out: SplitWriter::create(&writer.path(EVENTS))?, users, places })
    }

    /// Writes and empties `chunk`.
    pub fn push(&mut self, chunk: &mut EventChunk) -> Result<()> {
        if !chunk.is_empty() {
            self.out.push(&chunk.frame(self.users, self.places)?)?;
            *chunk = EventChunk::default();
        }
        Ok(())
    }

    /// Finishes the file (a log always has events: `prepare` refuses one without rows).
    pub fn finish(self) -> Result<()> {
        self.out.close().map(|_| ())
    }
}

/// Writes `featurizer.json`.
pub fn write_settings(
    writer: &ArtifactWriter,
    data: &FilesConfig,
    fctx: &FeatureContext<'_>,
    snapshot_ts: i64,
) -> Result<()> {
    let settings = Settings {
        window_s: fctx.window,
        timezone: data.timezone.clone(),
        history: fctx.history,
        with_category: fctx.history_names().len() == history::NAMES.len(),
        snapshot_ts,
    };
    let path = writer.path(SETTINGS);
    let text = serde_json::to_vec_pretty(&settings).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&path, text).at(&path)
}
