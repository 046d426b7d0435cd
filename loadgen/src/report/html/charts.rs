//! The report's charts, drawn with plotters' SVG backend into strings.
//! Text is written as SVG `<text>` and laid out by the browser, so no font
//! files are needed. Each function takes plain numbers from the JSON
//! report, so a saved report draws the same page.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::HtmlError;
use crate::units::{format_metric, format_time_us};

const W: u32 = 1180;
const H: u32 = 320;
const FONT: &str = "sans-serif";
const P50: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const P90: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const P99: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const MAX: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const TARGET: RGBColor = RGBColor(0x7f, 0x7f, 0x7f);

fn err<E: std::fmt::Display>(e: E) -> HtmlError {
    HtmlError::Chart(e.to_string())
}

/// The series' names, boxed at the upper left: one look for every chart.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), HtmlError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

/// A line series' key in the legend: a short stroke in its style.
fn line_key(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style)
}

/// One named line of a chart.
pub struct Line<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

fn draw<F>(title: &str, draw: F) -> Result<String, HtmlError>
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), HtmlError>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, (FONT, 18)).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Lines over time: x is the second of the run; `log_y` draws y on a log
/// axis (latencies spread over decades).
fn time_lines(
    title: &str,
    y_desc: &str,
    lines: &[Line<'_>],
    log_y: bool,
    fmt_y: &dyn Fn(f64) -> String,
) -> Result<String, HtmlError> {
    let xs = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let x_min = xs().fold(f64::MAX, f64::min).min(1.0);
    let x_max = xs().fold(x_min + 1.0, f64::max);
    let ys = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let y_max = ys().fold(0.0f64, f64::max).max(1.0) * 1.1;
    draw(title, |root| {
        let mut b = ChartBuilder::on(root);
        b.margin(12).x_label_area_size(36).y_label_area_size(72);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc("second of the run")
                    .y_desc(y_desc)
                    .y_label_formatter(&|v| fmt_y(*v))
                    .label_style((FONT, 12))
                    .draw()
                    .map_err(err)?;
                for l in lines {
                    let color = l.color;
                    chart
                        .draw_series(LineSeries::new(
                            l.points
                                .iter()
                                .map(|&(x, y)| (x, if log_y { y.max(1.0) } else { y })),
                            color.stroke_width(2),
                        ))
                        .map_err(err)?
                        .label(l.name)
                        .legend(line_key(color.stroke_width(2)));
                }
                legend(&mut chart)?;
            }};
        }
        if log_y {
            let y_min = ys()
                .filter(|&y| y > 0.0)
                .fold(f64::MAX, f64::min)
                .clamp(1.0, y_max / 10.0);
            body!(
                b.build_cartesian_2d(x_min..x_max, (y_min * 0.8..y_max * 1.5).log_scale())
                    .map_err(err)?
            );
        } else {
            body!(
                b.build_cartesian_2d(x_min..x_max, 0.0..y_max)
                    .map_err(err)?
            );
        }
        Ok(())
    })
}

/// One second of the series, as the charts need it.
pub struct SecondPoint {
    pub second: f64,
    pub rate: f64,
    pub target_rate: Option<f64>,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub errors: f64,
    pub non_2xx: f64,
}

pub fn rate(series: &[SecondPoint]) -> Result<String, HtmlError> {
    let mut lines = Vec::new();
    // The schedule first, so the achieved rate is drawn over it.
    if series.iter().any(|s| s.target_rate.is_some()) {
        lines.push(Line {
            name: "target rate",
            color: TARGET,
            points: series
                .iter()
                .filter_map(|s| s.target_rate.map(|t| (s.second, t)))
                .collect(),
        });
    }
    lines.push(Line {
        name: "requests/s",
        color: P50,
        points: series.iter().map(|s| (s.second, s.rate)).collect(),
    });
    time_lines(
        "Requests per second",
        "req/s",
        &lines,
        false,
        &format_metric,
    )
}

pub fn latency(series: &[SecondPoint], corrected: bool) -> Result<String, HtmlError> {
    let line = |name, color, f: fn(&SecondPoint) -> f64| Line {
        name,
        color,
        points: series.iter().map(|s| (s.second, f(s))).collect(),
    };
    let lines = [
        line("p50", P50, |s| s.p50_us),
        line("p90", P90, |s| s.p90_us),
        line("p99", P99, |s| s.p99_us),
        line("max", MAX, |s| s.max_us),
    ];
    let title = if corrected {
        "Latency per second (corrected: from intended send time)"
    } else {
        "Latency per second"
    };
    time_lines(title, "latency", &lines, true, &format_time_us)
}

/// `--off-cpu`: the client's p99 next to the target's run-queue p99,
/// `(second, client p99 µs, run-queue p99 µs)`.
pub fn client_and_runq(points: &[(f64, f64, f64)]) -> Result<String, HtmlError> {
    let lines = [
        Line {
            name: "client p99",
            color: P99,
            points: points.iter().map(|p| (p.0, p.1)).collect(),
        },
        Line {
            name: "target run-queue p99",
            color: TARGET,
            points: points.iter().map(|p| (p.0, p.2)).collect(),
        },
    ];
    time_lines(
        "Client p99 and the target's run-queue p99 per second",
        "latency",
        &lines,
        true,
        &format_time_us,
    )
}

pub fn errors(series: &[SecondPoint]) -> Result<String, HtmlError> {
    let lines = [
        Line {
            name: "errors",
            color: MAX,
            points: series.iter().map(|s| (s.second, s.errors)).collect(),
        },
        Line {
            name: "non-2xx/3xx responses",
            color: P99,
            points: series.iter().map(|s| (s.second, s.non_2xx)).collect(),
        },
    ];
    time_lines(
        "Errors and non-2xx/3xx responses per second",
        "per second",
        &lines,
        false,
        &|v| format_metric(v),
    )
}

/// `1/(1-q)` on a log axis, as HdrHistogram's plotter draws it: x is
/// `log10(1/(1-q))`, so 90 % is 1, 99 % is 2, 99.9 % is 3.
pub fn spectrum_x(q: f64) -> f64 {
    (1.0 / (1.0 - q.min(0.999_999_9))).log10()
}

fn nines_label(x: f64) -> String {
    let n = x.round() as i32;
    if (x - n as f64).abs() > 0.01 {
        return String::new();
    }
    if n == 0 {
        return "0%".into();
    }
    let pct = 100.0 * (1.0 - 10f64.powi(-n));
    let digits = (n - 2).max(0) as usize;
    format!("{pct:.digits$}%")
}

/// Latency (µs) by percentile; each line is `(quantile, value)` points.
pub fn spectrum(lines: &[Line<'_>]) -> Result<String, HtmlError> {
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| spectrum_x(p.0)))
        .fold(2.0f64, f64::max)
        .ceil();
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    draw("Latency by percentile", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| nines_label(*x))
            .y_label_formatter(&|v| format_time_us(*v))
            .x_desc("percentile")
            .y_desc("latency")
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        for l in lines {
            let color = l.color;
            chart
                .draw_series(LineSeries::new(
                    l.points.iter().map(|&(q, v)| (spectrum_x(q), v)),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(l.name)
                .legend(line_key(color.stroke_width(2)));
        }
        legend(&mut chart)
    })
}

/// The samples of one compared metric, base and new side by side (one dot
/// per run or second), with each side's median as a bar.
pub fn distribution(
    title: &str,
    base: &[f64],
    new: &[f64],
    fmt_y: &dyn Fn(f64) -> String,
) -> Result<String, HtmlError> {
    let all = || base.iter().chain(new).copied();
    let lo = all().fold(f64::MAX, f64::min);
    let hi = all().fold(f64::MIN, f64::max);
    let pad = ((hi - lo) * 0.15).max(hi.abs() * 0.02).max(1e-9);
    let (lo, hi) = ((lo - pad).max(0.0), hi + pad);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W / 2 - 10, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, (FONT, 15)).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(72)
            .build_cartesian_2d(-0.5f64..1.5f64, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(5)
            .x_label_formatter(&|x| {
                if x.abs() < 0.01 {
                    "base".into()
                } else if (x - 1.0).abs() < 0.01 {
                    "new".into()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| fmt_y(*v))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        for (side, xs, color) in [(0.0, base, P50), (1.0, new, P99)] {
            let n = xs.len().max(1) as f64;
            // Spread the dots across the column (deterministically).
            chart
                .draw_series(xs.iter().enumerate().map(|(i, &v)| {
                    let dx = if xs.len() > 1 {
                        0.5 * (i as f64 / (n - 1.0) - 0.5)
                    } else {
                        0.0
                    };
                    Circle::new((side + dx, v), 4, color.filled())
                }))
                .map_err(err)?;
            if !xs.is_empty() {
                let m = crate::sample::median(xs);
                chart
                    .draw_series(LineSeries::new(
                        [(side - 0.35, m), (side + 0.35, m)],
                        BLACK.stroke_width(2),
                    ))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One step of a `find-max` search.
pub struct SearchPoint {
    pub target_rps: f64,
    pub p99_us: f64,
    pub ok: bool,
}

/// `find-max`: each step's p99 against its target rate (log y), passes in
/// green and failures in red, with the SLO's latency bound and the answer.
pub fn search(
    points: &[SearchPoint],
    slo_us: Option<f64>,
    answer: Option<f64>,
) -> Result<String, HtmlError> {
    const PASS: RGBColor = RGBColor(0x17, 0x63, 0x17);
    const FAIL: RGBColor = RGBColor(0xbb, 0x00, 0x00);
    let x_max = points.iter().map(|p| p.target_rps).fold(1.0f64, f64::max) * 1.1;
    let ys = || points.iter().map(|p| p.p99_us.max(1.0)).chain(slo_us);
    let y_max = ys().fold(10.0f64, f64::max) * 2.0;
    let y_min = ys().fold(f64::MAX, f64::min).clamp(1.0, y_max / 10.0) * 0.5;
    draw("p99 latency at each step's target rate", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("target rate (req/s)")
            .y_desc("p99 latency")
            .x_label_formatter(&|v| format_metric(*v))
            .y_label_formatter(&|v| format_time_us(*v))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        if let Some(slo) = slo_us {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, slo), (x_max, slo)],
                    TARGET.stroke_width(2),
                ))
                .map_err(err)?
                .label("SLO bound")
                .legend(line_key(TARGET.stroke_width(2)));
        }
        if let Some(a) = answer {
            chart
                .draw_series(LineSeries::new(
                    [(a, y_min), (a, y_max)],
                    PASS.mix(0.5).stroke_width(1),
                ))
                .map_err(err)?
                .label("the answer")
                .legend(line_key(PASS.stroke_width(1)));
        }
        for (ok, color, name) in [(true, PASS, "pass"), (false, FAIL, "fail")] {
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.ok == ok)
                        .map(|p| Circle::new((p.target_rps, p.p99_us.max(1.0)), 5, color.filled())),
                )
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled()));
        }
        legend(&mut chart)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<SecondPoint> {
        (1..=10)
            .map(|i| SecondPoint {
                second: i as f64,
                rate: 1000.0 + i as f64,
                target_rate: Some(1000.0),
                p50_us: 100.0,
                p90_us: 200.0,
                p99_us: 900.0,
                max_us: if i == 5 { 250_000.0 } else { 2000.0 },
                errors: 0.0,
                non_2xx: i as f64,
            })
            .collect()
    }

    #[test]
    fn charts_are_svg_with_text_and_lines() {
        let s = series();
        for svg in [
            rate(&s).unwrap(),
            latency(&s, true).unwrap(),
            errors(&s).unwrap(),
        ] {
            assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
            assert!(svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("<text"), "labels are SVG text");
            assert!(
                svg.contains("<polyline") || svg.contains("<path"),
                "lines are drawn"
            );
        }
        assert!(rate(&s).unwrap().contains("target rate"));
        assert!(latency(&s, false).unwrap().contains("p99"));
    }

    #[test]
    fn the_spectrum_is_labelled_in_nines() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
        assert_eq!(nines_label(1.5), "");
        assert!((spectrum_x(0.99) - 2.0).abs() < 1e-9);
        let svg = spectrum(&[Line {
            name: "corrected",
            color: P50,
            points: vec![(0.0, 10.0), (0.9, 20.0), (0.999, 400.0)],
        }])
        .unwrap();
        assert!(svg.contains("99.9%") && svg.contains("corrected"), "{svg}");
    }

    #[test]
    fn distributions_draw_a_dot_per_sample() {
        let svg = distribution(
            "throughput",
            &[10.0, 11.0, 12.0],
            &[20.0, 21.0],
            &format_metric,
        )
        .unwrap();
        assert_eq!(svg.matches("<circle").count(), 5, "{svg}");
        assert!(svg.contains("base") && svg.contains("new"));
        // One value on both sides still has a range to draw.
        distribution("p50", &[5.0], &[5.0], &format_time_us).unwrap();
    }
}
