//! The pieces a report is made of — headings, paragraphs, tables whose numbers carry their
//! source, figures — rendered to Markdown and to self-contained HTML.

use std::fmt::Write as _;

use super::plot::{self, Chart};
use reco_runtime::error::Result;

/// Where a reported number comes from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Source {
    /// A JSON pointer into `report.json`.
    Report(String),
    /// A key of `timings.json`.
    Timings(String),
}

/// One table cell: text, and for a number its exact value and source.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    text: String,
    number: Option<(f64, Source)>,
}

impl Cell {
    pub(super) fn text(s: impl Into<String>) -> Self {
        Self { text: s.into(), number: None }
    }

    /// `v` shown with `decimals` digits, from `source`; "not measurable" without a value.
    pub(super) fn number(v: Option<f64>, decimals: usize, source: Source) -> Self {
        match v.filter(|v| v.is_finite()) {
            Some(v) => Self { text: format!("{v:.decimals$}"), number: Some((v, source)) },
            None => Self::text("not measurable"),
        }
    }
}

/// A piece of the report, rendered to both Markdown and HTML.
#[derive(Debug, Clone)]
pub(super) enum Block {
    Heading(usize, String),
    Para(String),
    Table(Vec<String>, Vec<Vec<Cell>>),
    Figure { id: String, caption: String, svg: String, points: usize },
}

pub(super) fn ci(v: Option<[f64; 2]>) -> String {
    v.map_or_else(|| "not measurable".into(), |[a, b]| format!("[{a:.4}, {b:.4}]"))
}

/// A figure block from a chart; a chart without data to draw becomes a line that says so
/// (the run's report is still written).
pub(super) fn figure(id: &str, caption: &str, chart: &Chart) -> Result<Block> {
    let points = chart.series.iter().map(|s| s.points.len()).sum();
    Ok(match plot::svg(chart) {
        Ok(svg) => Block::Figure { id: id.into(), caption: caption.into(), svg, points },
        Err(_) => Block::Para(format!("{caption} Not drawn: nothing measurable to plot.")),
    })
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

pub(super) fn to_markdown(title: &str, blocks: &[Block]) -> String {
    let mut s = format!("# {title}\n\n");
    for b in blocks {
        match b {
            Block::Heading(level, t) => {
                let _ = writeln!(s, "{} {t}\n", "#".repeat(*level));
            }
            Block::Para(t) => {
                let _ = writeln!(s, "{t}\n");
            }
            Block::Table(head, rows) => {
                let _ = writeln!(s, "| {} |", head.iter().map(|h| md_escape(h)).collect::<Vec<_>>().join(" | "));
                let _ = writeln!(s, "|{}|", vec!["---"; head.len()].join("|"));
                for r in rows {
                    let _ = writeln!(s, "| {} |", r.iter().map(|c| md_escape(&c.text)).collect::<Vec<_>>().join(" | "));
                }
                s.push('\n');
            }
            Block::Figure { id, caption, .. } => {
                let _ = writeln!(s, "![{caption}](report/{id}.svg)\n\n*{caption}*\n");
            }
        }
    }
    s
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Markdown's `**bold**` as `<strong>` (the only inline markup the report uses).
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (k, part) in html_escape(s).split("**").enumerate() {
        if k % 2 == 1 {
            let _ = write!(out, "<strong>{part}</strong>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn html_cell(c: &Cell) -> String {
    match &c.number {
        Some((v, src)) => {
            let (source, key) = match src {
                Source::Report(k) => ("report", k),
                Source::Timings(k) => ("timings", k),
            };
            format!(
                "<td class=\"num\" data-source=\"{source}\" data-key=\"{}\" data-value=\"{v}\">{}</td>",
                html_escape(key),
                html_escape(&c.text)
            )
        }
        None => format!("<td>{}</td>", inline(&c.text)),
    }
}

/// The SVG without its XML declaration, to sit inside HTML.
fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |at| &svg[at..])
}

pub(super) fn to_html(title: &str, blocks: &[Block]) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{}\n</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        html_escape(title),
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1.5em 0}figcaption{color:#555;font-size:.9em}",
        html_escape(title)
    );
    for b in blocks {
        match b {
            Block::Heading(level, t) => {
                let _ = writeln!(s, "<h{level}>{}</h{level}>", html_escape(t));
            }
            Block::Para(t) => {
                let _ = writeln!(s, "<p>{}</p>", inline(t));
            }
            Block::Table(head, rows) => {
                s.push_str("<table>\n<tr>");
                for h in head {
                    let _ = write!(s, "<th>{}</th>", html_escape(h));
                }
                s.push_str("</tr>\n");
                for r in rows {
                    let _ = writeln!(s, "<tr>{}</tr>", r.iter().map(html_cell).collect::<String>());
                }
                s.push_str("</table>\n");
            }
            Block::Figure { id, caption, svg, points } => {
                let _ = writeln!(
                    s,
                    "<figure data-plot=\"{}\" data-points=\"{points}\">\n{}\n<figcaption>{}</figcaption>\n</figure>",
                    html_escape(id),
                    inline_svg(svg),
                    html_escape(caption)
                );
            }
        }
    }
    s.push_str("</body>\n</html>\n");
    s
}
