//! `--junit FILE` on `run`, `eval` and `quantize`: what they judged as JUnit XML test cases,
//! the format Jenkins, GitLab and GitHub Actions render as test results.
//!
//! - `run`: suite `gates`, one case per gate (class `gates.<artifact>`, name the gate), and
//!   suite `stages`, one case per stage run or reused; a run that stops at a stage with an
//!   error gets that stage as an `<error>` case (the file is still written, exit 2).
//! - `quantize`: suite `quantize`, the accuracy gate's two cases (`max_auc_drop`,
//!   `max_ndcg_drop`) on the INT8 artifact.
//! - `eval`: suite `eval`, one case per model: a failure when its AUC (or, with a ranking set,
//!   its NDCG@10) could not be computed.
//!
//! A failing case's `message` names the value and the threshold (or why there is no value);
//! every case also lists them in its `<system-out>` as `key: value` lines (Jenkins' junit.xsd,
//! which the common parsers follow, allows no properties on a test case). The file is written
//! atomically.

use std::fmt::Write as _;

use crate::pipeline::eval::EvalReport;
use crate::pipeline::quantize::QuantizeSummary;
use crate::pipeline::run::RunReport;
use crate::pipeline::run::gates::GateReport;
use crate::pipeline::run::reuse::StageReport;

/// How a case ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It held.
    Passed,
    /// A judged quantity missed its threshold, or could not be measured.
    Failure(String),
    /// The command stopped there with an error.
    Error(String),
}

/// One test case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `classname`.
    pub class: String,
    /// `name`.
    pub name: String,
    /// Seconds.
    pub seconds: f64,
    /// `key: value` lines of the case's output (value, threshold, artifact...).
    pub properties: Vec<(String, String)>,
    /// How it ended.
    pub outcome: Outcome,
}

/// One `<testsuite>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// Its name.
    pub name: String,
    /// Its cases.
    pub cases: Vec<Case>,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no form for other control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

fn number(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or_else(|| "not measured".to_string(), |v| format!("{v}"))
}

/// The XML document: `<testsuites name=...>` holding every suite.
pub fn xml(name: &str, suites: &[Suite]) -> String {
    let count = |f: fn(&Outcome) -> bool| suites.iter().flat_map(|s| &s.cases).filter(|c| f(&c.outcome)).count();
    let (failures, errors) = (count(|o| matches!(o, Outcome::Failure(_))), count(|o| matches!(o, Outcome::Error(_))));
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let time: f64 = suites.iter().flat_map(|s| &s.cases).map(|c| c.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">",
        escape(name)
    );
    for s in suites {
        suite(&mut x, s);
    }
    x.push_str("</testsuites>\n");
    x
}

fn suite(x: &mut String, s: &Suite) {
    let failures = s.cases.iter().filter(|c| matches!(c.outcome, Outcome::Failure(_))).count();
    let errors = s.cases.iter().filter(|c| matches!(c.outcome, Outcome::Error(_))).count();
    let time: f64 = s.cases.iter().map(|c| c.seconds).sum();
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\">",
        escape(&s.name),
        s.cases.len()
    );
    for c in &s.cases {
        let _ = writeln!(
            x,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            escape(&c.class),
            escape(&c.name),
            c.seconds
        );
        match &c.outcome {
            Outcome::Passed => {}
            Outcome::Failure(m) => {
                let _ = writeln!(x, "      <failure message=\"{0}\" type=\"gate\">{0}</failure>", escape(m));
            }
            Outcome::Error(m) => {
                let _ = writeln!(x, "      <error message=\"{0}\" type=\"error\">{0}</error>", escape(m));
            }
        }
        // The common schema (Jenkins' junit.xsd) has no properties on a test case: they go to
        // its output as `key: value` lines, after the result as the schema orders them.
        if !c.properties.is_empty() {
            let lines: Vec<String> = c.properties.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(x, "      <system-out>{}</system-out>", escape(&lines.join("\n")));
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n");
}

/// A gate's case.
fn gate_case(g: &GateReport) -> Case {
    let value = number(g.value);
    let mut properties = vec![
        ("value".to_string(), value.clone()),
        ("threshold".to_string(), format!("{}", g.threshold)),
        ("artifact".to_string(), g.artifact.clone()),
        ("judged_on".to_string(), g.judged_on.to_string()),
    ];
    if let Some([lo, hi]) = g.interval {
        properties.push(("interval_95".to_string(), format!("[{lo}, {hi}]")));
    }
    let outcome = match (g.passed, g.value) {
        (true, _) => Outcome::Passed,
        (false, None) => Outcome::Failure(format!(
            "{} on {}: the value could not be measured, so the gate fails (threshold {})",
            g.name, g.artifact, g.threshold
        )),
        (false, Some(_)) => Outcome::Failure(format!(
            "{} on {}: {value} against the threshold {} (judged on the {})",
            g.name, g.artifact, g.threshold, g.judged_on
        )),
    };
    Case { class: format!("gates.{}", g.artifact), name: g.name.clone(), seconds: 0.0, properties, outcome }
}

fn stage_case(s: &StageReport) -> Case {
    Case {
        class: "stages".to_string(),
        name: s.name.clone(),
        seconds: s.seconds,
        properties: vec![("reused".to_string(), s.reused.to_string())],
        outcome: Outcome::Passed,
    }
}

/// A finished run: its gates and its stages.
pub fn for_run(r: &RunReport) -> Vec<Suite> {
    vec![
        Suite { name: "gates".into(), cases: r.gates.iter().map(gate_case).collect() },
        Suite { name: "stages".into(), cases: r.stages.iter().map(stage_case).collect() },
    ]
}

/// A run that stopped with `error` at stage `failed`, after the stages `done`.
pub fn for_failed_run(done: &[StageReport], failed: &str, error: &str) -> Vec<Suite> {
    let mut cases: Vec<Case> = done.iter().map(stage_case).collect();
    cases.push(Case {
        class: "stages".into(),
        name: failed.to_string(),
        seconds: 0.0,
        properties: Vec::new(),
        outcome: Outcome::Error(error.to_string()),
    });
    vec![Suite { name: "stages".into(), cases }]
}

/// `quantize`'s accuracy gate on the INT8 artifact.
pub fn for_quantize(s: &QuantizeSummary) -> Vec<Suite> {
    let artifact = s.dir.file_name().map_or_else(|| s.kind.to_string(), |n| n.to_string_lossy().into_owned());
    let case = |name: &str, delta: Option<f64>, max: f64| {
        // The quantize stage's own test of its gate.
        let holds = crate::pipeline::quantize::within(delta, max);
        let outcome = match delta {
            _ if holds => Outcome::Passed,
            None => {
                Outcome::Failure(format!("{name} on {artifact}: the change could not be measured (threshold {max})"))
            }
            Some(d) => Outcome::Failure(format!("{name} on {artifact}: |{d:+}| against the threshold {max}")),
        };
        let properties = vec![
            ("value".to_string(), number(delta.map(f64::abs))),
            ("threshold".to_string(), format!("{max}")),
            ("artifact".to_string(), artifact.clone()),
        ];
        Case { class: format!("quantize.{artifact}"), name: name.to_string(), seconds: 0.0, properties, outcome }
    };
    vec![Suite {
        name: "quantize".into(),
        cases: vec![
            case("max_auc_drop", s.delta_auc, s.options.max_auc_drop),
            case("max_ndcg_drop", s.delta_ndcg, s.options.max_ndcg_drop),
        ],
    }]
}

/// `eval`: one case per model, failing when a metric it should have could not be computed.
pub fn for_eval(e: &EvalReport, ranking: bool) -> Vec<Suite> {
    let cases = e
        .models
        .iter()
        .map(|m| {
            let missing: Vec<&str> = [("AUC", m.auc.is_none()), ("NDCG@10", ranking && m.ndcg10.is_none())]
                .iter()
                .filter(|(_, miss)| *miss)
                .map(|(n, _)| *n)
                .collect();
            let outcome = if missing.is_empty() {
                Outcome::Passed
            } else {
                Outcome::Failure(format!("{}: {} could not be computed", m.name, missing.join(" and ")))
            };
            let properties = vec![
                ("auc".to_string(), number(m.auc)),
                ("ndcg_at_10".to_string(), number(m.ndcg10)),
                ("logloss".to_string(), number(Some(m.logloss))),
                ("path".to_string(), m.path.clone()),
            ];
            Case { class: "eval".into(), name: m.name.clone(), seconds: 0.0, properties, outcome }
        })
        .collect();
    vec![Suite { name: "eval".into(), cases }]
}

/// Writes the document atomically.
pub fn write(path: &std::path::Path, name: &str, suites: &[Suite]) -> reco_runtime::error::Result<()> {
    super::write_file(path, xml(name, suites).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_escaping_follow_the_cases() {
        let case = |name: &str, outcome| Case {
            class: "c".into(),
            name: name.into(),
            seconds: 1.5,
            properties: vec![("v".into(), "a<b & \"c\"".into())],
            outcome,
        };
        let suites = [Suite {
            name: "s".into(),
            cases: vec![
                case("ok", Outcome::Passed),
                case("bad", Outcome::Failure("x < 1".into())),
                case("err", Outcome::Error("boom".into())),
            ],
        }];
        let x = xml("n", &suites);
        assert!(x.contains("<testsuites name=\"n\" tests=\"3\" failures=\"1\" errors=\"1\" time=\"4.500\">"), "{x}");
        assert!(x.contains("tests=\"3\" failures=\"1\" errors=\"1\" skipped=\"0\""), "{x}");
        assert!(x.contains("<system-out>v: a&lt;b &amp; &quot;c&quot;</system-out>"), "{x}");
        assert!(x.contains("<failure message=\"x &lt; 1\" type=\"gate\">x &lt; 1</failure>"), "{x}");
        assert!(x.contains("<error message=\"boom\""), "{x}");
    }
}
