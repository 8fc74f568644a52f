//! What a file written by a run may hold so that the same recipe, data and seed give the same
//! bytes: no wall-clock timings and no absolute paths. Summaries keep both for the terminal
//! and `--json`; before one goes into a file, [`for_file`] takes the timing fields out
//! (they go to `<out>/timings.json`) and rewrites paths below the file's base as relative.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Field names that hold wall-clock measurements.
pub const TIMING_FIELDS: [&str; 3] = ["seconds", "rows_per_s", "us_per_row"];

/// Timing values taken out of a summary, by location (`/stages/train/seconds`: array items
/// are named by their `name` field when they have one, by index otherwise).
pub type Timings = BTreeMap<String, Value>;

/// `value` without timing fields and with absolute paths under `base` made relative to it
/// (`base` itself becomes `.`), and the timings taken out.
pub fn for_file(value: Value, base: &Path) -> (Value, Timings) {
    let mut timings = Timings::new();
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let v = walk(value, &base, "", &mut timings);
    (v, timings)
}

fn walk(value: Value, base: &Path, at: &str, timings: &mut Timings) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let here = format!("{at}/{k}");
                if TIMING_FIELDS.contains(&k.as_str()) && v.is_number() {
                    timings.insert(here, v);
                } else {
                    out.insert(k, walk(v, base, &here, timings));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let name = v.get("name").and_then(Value::as_str).map_or_else(|| i.to_string(), str::to_string);
                    walk(v, base, &format!("{at}/{name}"), timings)
                })
                .collect(),
        ),
        Value::String(s) => Value::String(relative_if_below(&s, base)),
        other => other,
    }
}

/// `s` relative to `base` when it is a path (absolute, or relative to the working directory,
/// as a user's `--out` is) at or below `base`; otherwise unchanged.
fn relative_if_below(s: &str, base: &Path) -> String {
    let Ok(p) = std::path::absolute(s) else { return s.to_string() };
    match p.strip_prefix(base) {
        Ok(rest) if rest.as_os_str().is_empty() => ".".into(),
        Ok(rest) => rest.to_string_lossy().replace('\\', "/"),
        Err(_) => s.to_string(),
    }
}

/// The inverse of [`for_file`]'s timing removal: each timing put back where its key says (an
/// array item named by its `name` field, or its index). Keys that lead nowhere are dropped.
pub fn restore(mut value: Value, timings: &Timings) -> Value {
    for (key, v) in timings {
        let mut parts: Vec<&str> = key.split('/').skip(1).collect();
        let Some(field) = parts.pop() else { continue };
        if let Some(Value::Object(m)) = slot(&mut value, &parts) {
            m.insert(field.to_string(), v.clone());
        }
    }
    value
}

/// The value at `parts` below `v` (array items by `name` field, else by index).
fn slot<'a>(v: &'a mut Value, parts: &[&str]) -> Option<&'a mut Value> {
    let Some((first, rest)) = parts.split_first() else { return Some(v) };
    let next = match v {
        Value::Object(m) => m.get_mut(*first),
        Value::Array(items) => {
            let named = items.iter().position(|i| i.get("name").and_then(Value::as_str) == Some(*first));
            let i = named.or_else(|| first.parse().ok())?;
            items.get_mut(i)
        }
        _ => None,
    }?;
    slot(next, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_leave_the_file_value_and_are_keyed_by_stage_name() {
        let report = serde_json::json!({
            "out": "/runs/a",
            "seconds": 3.5,
            "stages": [
                { "name": "train", "seconds": 1.25, "detail": { "dir": "/runs/a/teacher", "rows_per_s": 9.0, "epochs_run": 3 } },
                { "seconds": 0.5 }
            ],
            "elsewhere": "/data/raw.csv",
            "seconds_label": "kept (a string field named like a timing is not a timing value)"
        });
        let (v, t) = for_file(report, Path::new("/runs/a"));
        assert_eq!(v["out"], ".");
        assert_eq!(v["stages"][0]["detail"]["dir"], "teacher");
        assert_eq!(v["stages"][0]["detail"]["epochs_run"], 3);
        assert_eq!(v["elsewhere"], "/data/raw.csv");
        assert!(v.get("seconds").is_none() && v["stages"][0].get("seconds").is_none());
        assert!(v["stages"][0]["detail"].get("rows_per_s").is_none());
        let keys: Vec<&str> = t.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/seconds", "/stages/1/seconds", "/stages/train/detail/rows_per_s", "/stages/train/seconds"]);
        assert_eq!(t["/stages/train/seconds"], 1.25);
        // Put back, the timings are where they were.
        let back = restore(v, &t);
        assert_eq!(back["seconds"], 3.5);
        assert_eq!(back["stages"][0]["detail"]["rows_per_s"], 9.0);
        assert_eq!(back["stages"][1]["seconds"], 0.5);
    }

    #[test]
    fn a_path_that_only_shares_a_prefix_string_is_not_below_the_base() {
        assert_eq!(relative_if_below("/runs/ab/teacher", Path::new("/runs/a")), "/runs/ab/teacher");
        assert_eq!(relative_if_below("/runs/a", Path::new("/runs/a")), ".");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(relative_if_below("out/teacher", &cwd.join("out")), "teacher");
        assert_eq!(relative_if_below("relu", &cwd.join("out")), "relu");
        assert_eq!(relative_if_below("../teacher", &cwd), "../teacher");
    }
}
