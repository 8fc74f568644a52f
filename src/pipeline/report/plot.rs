//! SVG charts for the run report, drawn by plotters' SVG backend (no fonts, bitmaps or GUI:
//! text stays `<text>` for the browser to render). A [`Chart`] describes what to draw —
//! line, point and bar series, vertical markers, the `y = x` diagonal — and [`svg`] lays it
//! out with axes, ticks and a legend. Ranges come from the data, padded, so nothing is drawn
//! on an empty frame: a chart without data is an error. A chart may ask for a smallest y span
//! (an AUC axis 0.002 wide makes noise look like separation), labelled points with interval
//! bars, and horizontal reference lines (baselines); ticks print as few digits as they need
//! (a count is `20000`, not `20000.0`).

use plotters::prelude::*;

use reco_runtime::error::{Error, Result};

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mark {
    /// Points joined by a line, each marked.
    Line,
    /// Points only.
    Points,
    /// Large points labelled with the series name, each with its interval bar (`Series::intervals`).
    Labelled,
    /// Bars `[x, x + width) × [0, y)` of this width: each point's x is a bar's left edge.
    Bars(f64),
}

/// One named set of points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points `(x, y)`.
    pub points: Vec<(f64, f64)>,
    /// How they are drawn.
    pub mark: Mark,
    /// For [`Mark::Labelled`]: each point's y interval (a 95% confidence interval), if known.
    pub intervals: Vec<Option<[f64; 2]>>,
}

impl Series {
    /// A series without intervals.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, mark: Mark) -> Self {
        Self { name: name.into(), points, mark, intervals: Vec::new() }
    }
}

/// What one chart shows.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// The data.
    pub series: Vec<Series>,
    /// Vertical markers at these x values, with labels.
    pub markers: Vec<(f64, String)>,
    /// Draw the line `y = x` (calibration and agreement plots).
    pub diagonal: bool,
    /// Fixed axis ranges instead of the data's.
    pub x_range: Option<(f64, f64)>,
    /// Fixed y range.
    pub y_range: Option<(f64, f64)>,
    /// Horizontal reference lines at these y values, with labels (baselines, the oracle).
    pub h_lines: Vec<(f64, String)>,
    /// The y axis spans at least this much (around the data's middle).
    pub min_y_span: Option<f64>,
}

/// Colours of series in order (a colour-blind-safe palette).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

/// Width and height of every chart, pixels.
pub const SIZE: (u32, u32) = (640, 380);

/// `(lo, hi)` of `values` padded by 5% (a single value gets ±0.5 or ±5%).
fn padded_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
    // Data spanning more than f64 can hold cannot be laid out (the axis would be infinite).
    let (a, b) = (lo - pad, hi + pad);
    (a.is_finite() && b.is_finite()).then_some((a, b))
}

/// `(lo, hi)` widened around its middle to at least `min` wide.
fn widened((lo, hi): (f64, f64), min: Option<f64>) -> (f64, f64) {
    match min {
        Some(m) if hi - lo < m => {
            let mid = (lo + hi) / 2.0;
            (mid - m / 2.0, mid + m / 2.0)
        }
        _ => (lo, hi),
    }
}

/// A tick label with the digits it needs: integers without a decimal point, others with at
/// most six decimals and no trailing zeros.
pub fn tick(v: f64) -> String {
    if v.is_finite() && (v - v.round()).abs() <= 1e-9 * v.abs().max(1.0) {
        return format!("{}", v.round() as i64);
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn bar_width(mark: Mark) -> Option<f64> {
    match mark {
        Mark::Bars(w) => Some(w),
        _ => None,
    }
}

/// The x and y ranges the chart's data (and markers, bars' zero line) need.
fn ranges(c: &Chart) -> Result<((f64, f64), (f64, f64))> {
    let xs = c.series.iter().flat_map(|s| {
        let w = bar_width(s.mark).unwrap_or(0.0);
        s.points.iter().flat_map(move |p| [p.0, p.0 + w])
    });
    let x = c.x_range.or_else(|| padded_range(xs.chain(c.markers.iter().map(|m| m.0))));
    // Labelled points need room on the right for their names.
    let labelled = c.series.iter().any(|s| s.mark == Mark::Labelled);
    let x = x.map(|(a, b)| if labelled { (a, b + (b - a) * 0.15) } else { (a, b) });
    let bars = c.series.iter().any(|s| bar_width(s.mark).is_some());
    let intervals = c.series.iter().flat_map(|s| s.intervals.iter().flatten().flat_map(|[a, b]| [*a, *b]));
    let ys = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).chain(bars.then_some(0.0));
    let ys = ys.chain(intervals).chain(c.h_lines.iter().map(|h| h.0));
    let y = c.y_range.or_else(|| padded_range(ys).map(|r| widened(r, c.min_y_span)));
    match (x, y) {
        (Some(x), Some(y)) if c.series.iter().any(|s| !s.points.is_empty()) => Ok((x, y)),
        _ => Err(Error::Internal(format!("chart `{}` has no finite data to draw", c.title))),
    }
}

/// The chart as a standalone SVG document.
pub fn svg(c: &Chart) -> Result<String> {
    let ((x0, x1), (y0, y1)) = ranges(c)?;
    let mut out = String::new();
    draw(c, &mut out, (x0, x1), (y0, y1)).map_err(|e| Error::Internal(format!("chart `{}`: {e}", c.title)))?;
    Ok(out)
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(c: &Chart, out: &mut String, (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> DrawResult {
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(58)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (y, label) in &c.h_lines {
        let grey = RGBColor(120, 120, 120);
        chart.draw_series(DashedLineSeries::new([(x0, *y), (x1, *y)], 6, 4, grey.stroke_width(1)))?;
        chart.draw_series(std::iter::once(Text::new(label.clone(), (x0, *y), ("sans-serif", 12).into_font())))?;
    }
    if c.diagonal {
        let (lo, hi) = (x0.max(y0), x1.min(y1));
        chart.draw_series(LineSeries::new([(lo, lo), (hi, hi)], RGBColor(150, 150, 150).stroke_width(1)))?;
    }
    for (i, s) in c.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let drawn = match s.mark {
            Mark::Line => {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                chart.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?
            }
            Mark::Points => chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 2, color.mix(0.6).filled())))?,
            Mark::Labelled => {
                for (&(x, _), iv) in s.points.iter().zip(&s.intervals) {
                    if let Some([a, b]) = iv {
                        chart.draw_series(LineSeries::new([(x, *a), (x, *b)], color.stroke_width(2)))?;
                    }
                }
                let name = s.name.clone();
                // Neighbouring series' labels go above and below in turn, so points that sit
                // close together keep readable names.
                let dy = [-16, 4, -30, 18, -44, 32][i % 6];
                chart.draw_series(s.points.iter().map(|&p| {
                    EmptyElement::at(p)
                        + Circle::new((0, 0), 5, color.filled())
                        + Text::new(name.clone(), (8, dy), ("sans-serif", 12).into_font())
                }))?
            }
            Mark::Bars(_) => {
                let w = bar_width(s.mark).unwrap_or(0.0);
                chart.draw_series(
                    s.points.iter().map(|&(x, y)| Rectangle::new([(x, 0.0), (x + w, y)], color.mix(0.7).filled())),
                )?
            }
        };
        drawn
            .label(s.name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], color.filled()));
    }
    for (x, label) in &c.markers {
        let black = RGBColor(60, 60, 60);
        chart.draw_series(LineSeries::new([(*x, y0), (*x, y1)], black.stroke_width(1)))?;
        chart.draw_series(std::iter::once(Text::new(label.clone(), (*x, y1), ("sans-serif", 12).into_font())))?;
    }
    // Labelled points name themselves: a legend would only hide some of them.
    if !c.series.iter().all(|s| s.mark == Mark::Labelled) {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(points: Vec<(f64, f64)>) -> Chart {
        Chart { title: "t".into(), series: vec![Series::new("a", points, Mark::Line)], ..Chart::default() }
    }

    #[test]
    fn a_chart_draws_its_points_and_refuses_to_draw_nothing() {
        let doc = svg(&line(vec![(1.0, 0.5), (2.0, 0.7), (3.0, 0.6)])).unwrap();
        assert!(doc.starts_with("<svg"), "{}", &doc[..40]);
        assert_eq!(doc.matches("<circle").count(), 3, "one marker per point");
        assert!(doc.contains("<polyline"), "the line");
        assert!(svg(&line(vec![])).is_err());
        assert!(svg(&line(vec![(f64::NAN, 1.0)])).is_err());
        assert!(svg(&line(vec![(-f64::MAX, 0.0), (f64::MAX, 1.0)])).is_err(), "an infinite axis is refused");
    }

    #[test]
    fn ranges_cover_bars_from_zero_and_markers() {
        let c = Chart {
            series: vec![Series::new("h", vec![(1.0, 5.0), (2.0, 9.0)], Mark::Bars(1.0))],
            markers: vec![(-1.0, "lo".into())],
            ..Chart::default()
        };
        let ((x0, x1), (y0, y1)) = ranges(&c).unwrap();
        assert!(x0 < -1.0 && x1 > 3.0, "{x0}..{x1}");
        assert!(y0 < 0.0 && y1 > 9.0, "{y0}..{y1}");
    }
}
