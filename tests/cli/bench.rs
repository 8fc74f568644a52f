//! `reco-cli bench`: INT8 paired with its float parent, both scopes, concurrent callers, GMAC/s;
//! bad settings refused.

use crate::support::{input_error, manifest_json, ok, pipeline, reco, run_dir};

#[test]
fn bench_pairs_int8_with_its_float_parent_and_runs_concurrent_callers() {
    let run = run_dir();
    let (t, q, s) = (run.join("teacher"), run.join("teacher-int8"), run.join("student"));
    let args = |threads: &str, scope: &str| {
        vec![
            "bench".to_string(),
            "--scope".into(),
            scope.into(),
            t.to_str().unwrap().into(),
            q.to_str().unwrap().into(),
            s.to_str().unwrap().into(),
            "--batch-sizes".into(),
            "1,8".into(),
            "--seconds".into(),
            "0.6".into(),
            "--threads".into(),
            threads.into(),
            "--json".into(),
        ]
    };
    // Both scopes: raw columns to logits, and the dense layers alone on prepared MLP inputs.
    for (threads, scope) in [("1", "end-to-end"), ("2", "dense")] {
        let a = args(threads, scope);
        let o = ok(reco(&a.iter().map(String::as_str).collect::<Vec<_>>(), pipeline()));
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["threads"], threads.parse::<u64>().unwrap());
        assert_eq!(v["scope"], scope);
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 6, "3 models × 2 batch sizes: {results:?}");
        for r in results {
            let (model, rps) = (r["model"].as_str().unwrap(), r["rows_per_s"].as_f64().unwrap());
            assert!(rps > 0.0 && (r["us_per_row"].as_f64().unwrap() * rps - 1e6).abs() < 1.0, "{r}");
            // GMAC/s: rows/s × Σ in·out over the dense layers, from the manifest's architecture.
            let m = manifest_json(&run.join(model));
            let arch = &m["architecture"];
            let input: u64 =
                arch["embedding_dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).sum::<u64>()
                    + m["feature_spec"]["numeric"].as_array().unwrap().len() as u64;
            let mut dims = vec![input];
            dims.extend(arch["hidden"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()));
            dims.push(1);
            let macs: u64 = dims.windows(2).map(|w| w[0] * w[1]).sum();
            let gmac = r["gmac_per_s"].as_f64().unwrap();
            assert!((gmac - rps * macs as f64 / 1e9).abs() <= 1e-9 * gmac.max(1.0), "{r} ({macs} MACs/row)");
            // The share of the peak of its kind, times the callers.
            let kind = if model.ends_with("int8") { "int8" } else { "float" };
            let peak = v["peak_gmac_per_s"][kind].as_f64();
            match (peak, r["percent_of_peak"].as_f64()) {
                (Some(p), Some(pct)) => {
                    let want = 100.0 * gmac / (p * threads.parse::<f64>().unwrap());
                    assert!(p > 0.0 && (pct - want).abs() <= 1e-9 * want.max(1.0), "{r}: peak {p}");
                }
                (None, None) => {}
                other => panic!("a peak without a share or a share without a peak: {other:?} {r}"),
            }
            // Only INT8 rows get a ratio, over their own float parent at the same batch (the
            // student's lineage parent, the teacher, is in the run too, but both are float).
            if model == "teacher-int8" {
                let parent = results.iter().find(|p| p["model"] == "teacher" && p["batch"] == r["batch"]).unwrap();
                let want = rps / parent["rows_per_s"].as_f64().unwrap();
                assert!((r["speedup_vs_float"].as_f64().unwrap() - want).abs() < 1e-9 * want, "{r}");
            } else {
                assert!(r["speedup_vs_float"].is_null(), "{r}");
            }
        }
    }
    let bad = reco(&["bench", t.to_str().unwrap(), "--batch-sizes", "0"], pipeline());
    input_error(&bad, &["batch-sizes"]);
    let bad = reco(&["bench", t.to_str().unwrap(), "--scope", "layers"], pipeline());
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--scope") && bad.stderr.contains("dense"), "{}", bad.stderr);
}
