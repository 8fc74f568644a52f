//! `/metrics`: Prometheus text exposition format (version 0.0.4), names in the seed's style
//! (`recommendations_request_duration_seconds`). HTTP counters live here, among them
//! `recommendations_rejected_total{reason}`, one count per non-2xx answer; the coalescer's
//! queue, batch and inference counters are read from its snapshot at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use reco_runtime::runtime::coalesce::{Histogram, SECONDS_BOUNDS, Stats};

/// HTTP-side counters.
#[derive(Default)]
pub struct HttpMetrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Requests by (endpoint, status code).
    requests: BTreeMap<(String, u16), u64>,
    /// Request durations by endpoint.
    durations: BTreeMap<String, Histogram>,
    /// Non-2xx answers by reason.
    rejected: BTreeMap<String, u64>,
    cache_hits: u64,
    cache_misses: u64,
}

/// What the server knows about itself at scrape time.
pub struct Snapshot<'a> {
    /// The coalescer's counters.
    pub stats: &'a Stats,
    /// Model kind and content hash.
    pub model: (&'a str, &'a str),
    /// Resident memory of the process, bytes (when readable).
    pub rss_bytes: Option<u64>,
    /// The online state's counters (`serve --features`).
    pub state: Option<reco_runtime::features::state::Counters>,
}

/// The reasons of `recommendations_rejected_total`, each exported from the start (at 0), by
/// status: 400 `invalid`, 404 `not_found`, 405 `method_not_allowed`, 413 `too_large`, 500
/// `failed`, 503 `queue_full` or `shutting_down`, 504 `deadline`.
pub const REJECTION_REASONS: [&str; 8] =
    ["invalid", "not_found", "method_not_allowed", "too_large", "failed", "queue_full", "shutting_down", "deadline"];

impl HttpMetrics {
    /// Records one finished request; `rejected` is the reason of a non-2xx answer.
    pub fn observe(&self, endpoint: &str, code: u16, rejected: Option<&str>, seconds: f64) {
        let mut m = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.requests.entry((endpoint.to_string(), code)).or_default() += 1;
        if let Some(reason) = rejected {
            *m.rejected.entry(reason.to_string()).or_default() += 1;
        }
        m.durations.entry(endpoint.to_string()).or_insert_with(|| Histogram::new(&SECONDS_BOUNDS)).observe(seconds);
    }

    /// Records one response-cache lookup.
    pub fn cache_lookup(&self, hit: bool) {
        let mut m = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if hit { m.cache_hits += 1 } else { m.cache_misses += 1 }
    }

    /// The exposition text.
    pub fn render(&self, snap: &Snapshot<'_>) -> String {
        let m = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        header(&mut out, "recommendations_requests_total", "counter", "HTTP requests by endpoint and status code.");
        for ((endpoint, code), n) in &m.requests {
            let _ = writeln!(
                out,
                "recommendations_requests_total{{endpoint=\"{}\",code=\"{code}\"}} {n}",
                escape(endpoint)
            );
        }
        header(&mut out, "recommendations_request_duration_seconds", "histogram", "HTTP request latency by endpoint.");
        for (endpoint, h) in &m.durations {
            histogram(
                &mut out,
                "recommendations_request_duration_seconds",
                &format!("endpoint=\"{}\"", escape(endpoint)),
                h,
            );
        }
        let st = snap.stats;
        header(&mut out, "recommendations_inference_duration_seconds", "histogram", "Scoring time per batch.");
        histogram(&mut out, "recommendations_inference_duration_seconds", "", &st.inference_seconds);
        header(&mut out, "recommendations_batch_size_rows", "histogram", "Rows per scored batch.");
        histogram(&mut out, "recommendations_batch_size_rows", "", &st.batch_rows);
        header(&mut out, "recommendations_queue_duration_seconds", "histogram", "Time from admission to batch start.");
        histogram(&mut out, "recommendations_queue_duration_seconds", "", &st.queue_seconds);
        header(&mut out, "recommendations_queue_depth_rows", "gauge", "Rows waiting to be scored.");
        let _ = writeln!(out, "recommendations_queue_depth_rows {}", st.queued_rows);
        header(&mut out, "recommendations_rejected_total", "counter", "Non-2xx answers, by reason.");
        let mut rejected: BTreeMap<&str, u64> = REJECTION_REASONS.iter().map(|&r| (r, 0)).collect();
        for (reason, n) in &m.rejected {
            *rejected.entry(reason).or_default() += n;
        }
        for (reason, n) in rejected {
            let _ = writeln!(out, "recommendations_rejected_total{{reason=\"{}\"}} {n}", escape(reason));
        }
        header(&mut out, "recommendations_cache_requests_total", "counter", "Response-cache lookups by result.");
        let _ = writeln!(out, "recommendations_cache_requests_total{{result=\"hit\"}} {}", m.cache_hits);
        let _ = writeln!(out, "recommendations_cache_requests_total{{result=\"miss\"}} {}", m.cache_misses);
        header(
            &mut out,
            "recommendations_cache_hit_ratio",
            "gauge",
            "Hits over lookups (NaN before the first lookup).",
        );
        let lookups = m.cache_hits + m.cache_misses;
        let ratio = if lookups == 0 { "NaN".to_string() } else { (m.cache_hits as f64 / lookups as f64).to_string() };
        let _ = writeln!(out, "recommendations_cache_hit_ratio {ratio}");
        header(&mut out, "recommendations_model_info", "gauge", "The model served (always 1).");
        let _ = writeln!(
            out,
            "recommendations_model_info{{kind=\"{}\",sha256=\"{}\"}} 1",
            escape(snap.model.0),
            escape(snap.model.1)
        );
        if let Some(c) = &snap.state {
            state_lines(&mut out, c);
        }
        if let Some(rss) = snap.rss_bytes {
            header(&mut out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
            let _ = writeln!(out, "process_resident_memory_bytes {rss}");
        }
        out
    }
}

/// The online state's counters and sizes.
fn state_lines(out: &mut String, c: &reco_runtime::features::state::Counters) {
    let lines = [
        ("recommendations_state_events_total", "counter", "Events taken by the online state.", c.events),
        (
            "recommendations_state_late_events_total",
            "counter",
            "Events too old for the places' windows (history only).",
            c.late_events,
        ),
        (
            "recommendations_state_folded_visits_total",
            "counter",
            "Visits folded into counts by the per-user cap.",
            c.folded_visits,
        ),
        ("recommendations_state_evicted_users_total", "counter", "Users dropped by the user cap.", c.evicted_users),
        ("recommendations_state_users", "gauge", "Users held.", c.users),
        ("recommendations_state_place_events", "gauge", "Place events held for the windows.", c.place_events),
    ];
    for (name, kind, help, v) in lines {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Cumulative `_bucket` lines, `_sum` and `_count`, with `labels` (may be empty) on each.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, n) in h.counts.iter().enumerate() {
        cumulative += n;
        let le = h.bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
    }
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// This process's resident set size, from `/proc/self/statm` (Linux).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a configuration value; no memory is touched.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|&p| p > 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = HttpMetrics::default();
        m.observe("/v1/score", 200, None, 0.0004);
        m.observe("/v1/score", 200, None, 3.0);
        m.observe("/v1/score", 400, Some("invalid"), 0.0001);
        let stats = Stats::default();
        let text = m.render(&Snapshot { stats: &stats, model: ("teacher\"x", "ab"), rss_bytes: None, state: None });
        assert!(text.contains("recommendations_requests_total{endpoint=\"/v1/score\",code=\"200\"} 2\n"), "{text}");
        assert!(
            text.contains("recommendations_request_duration_seconds_bucket{endpoint=\"/v1/score\",le=\"0.0005\"} 2\n")
        );
        assert!(
            text.contains("recommendations_request_duration_seconds_bucket{endpoint=\"/v1/score\",le=\"+Inf\"} 3\n")
        );
        assert!(text.contains("recommendations_request_duration_seconds_count{endpoint=\"/v1/score\"} 3\n"));
        assert!(text.contains("kind=\"teacher\\\"x\""));
        assert!(text.contains("recommendations_cache_hit_ratio NaN\n"), "no lookups: not computable");
        assert!(text.contains("recommendations_rejected_total{reason=\"invalid\"} 1\n"), "{text}");
        for reason in REJECTION_REASONS.iter().filter(|&&r| r != "invalid") {
            assert!(text.contains(&format!("recommendations_rejected_total{{reason=\"{reason}\"}} 0\n")), "{text}");
        }
    }
}
