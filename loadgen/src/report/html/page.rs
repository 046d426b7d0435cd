//! Assembling the page: sections in reading order, each from the report's
//! fields, each left out when the run has nothing for it.

use serde_json::Value;

use super::HtmlError;
use super::charts::{self, Line, SecondPoint};
use super::markup::{Html, Markup, html, html_line, markup, svg};
use crate::profile::Folded;
use crate::report::{Latency, MetricUnit, Report, Verdict};
use crate::units::{format_binary, format_metric, format_time_us};

/// No fetch of any kind; inline styles and scripts (the flamegraphs') only.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:";

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1240px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.2em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
pre { background: #f8f8f8; padding: 0.8em; overflow-x: auto; font-size: 0.9em; }
.pass { color: #176317; font-weight: bold; } .fail { color: #b00; font-weight: bold; }
.warn { color: #8a4b00; } figure { margin: 0.6em 0; } .small { display: inline-block; margin-right: 8px; }
iframe.flame { width: 100%; border: 1px solid #ddd; }
.meta td { text-align: left; } .muted { color: #777; font-size: 0.9em; }
";

/// A `find-max` page: its text and its chart, under the same policy.
pub fn search_page(title: &str, text: &str, chart: String) -> Result<String, HtmlError> {
    let mut h = Html::with_capacity(64 * 1024);
    head(&mut h, title);
    html_line!(h, "<h1>{}</h1>", title);
    h.markup(&figure(
        chart,
        "Each dot is one step: its target rate and the p99 it got.",
    ));
    html!(
        h,
        "\n<pre>{}</pre>\n<p class=\"muted\">Written by loadgen {}.</p>\n</body>\n</html>\n",
        text,
        env!("CARGO_PKG_VERSION")
    );
    Ok(h.into_string())
}

/// The document's start, to the opening `<body>`, under the policy.
fn head(h: &mut Html, title: &str) {
    html!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\""
    );
    h.markup(&Markup::literal(CSP));
    html!(
        h,
        "\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>",
        title
    );
    h.markup(&Markup::literal(STYLE));
    html!(h, "</style>\n</head>\n<body>\n");
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix ms (civil-from-days, proleptic
/// Gregorian).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Makes inferno's SVG work inside an `<iframe srcdoc>`. Its script keeps
/// zoom and search in the page URL with `history.replaceState`, which an
/// about:srcdoc document may not do, so that one call is made a no-op
/// (search and zoom themselves are untouched). And it drops the SVG's
/// width to fit its parent, which as the root of an SVG file is the whole
/// window but inline in HTML falls back to 300 px: the style gives it the
/// frame's width.
pub(super) fn flame_frame(title: &str, svg: &str) -> Markup {
    let height = svg
        .split_once("height=\"")
        .and_then(|(_, r)| r.split('"').next())
        .and_then(|h| h.parse::<f64>().ok())
        .unwrap_or(600.0);
    let body = svg
        .trim_start_matches(|c: char| c != '<')
        .split_once("<svg")
        .map_or(svg.to_string(), |(_, rest)| format!("<svg{rest}"));
    // The framed document is markup; as the attribute's value it is
    // escaped like any other.
    let doc = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"><style>body{{margin:0}} body>svg{{width:100%}}</style><script>history.replaceState = function () {{}};</script></head><body>{body}</body></html>"
    );
    markup!(
        "<iframe class=\"flame\" title=\"{}\" style=\"height:{}px\" srcdoc=\"{}\"></iframe>\n",
        title,
        height.ceil() as u64 + 4,
        doc
    )
}

/// A chart (SVG as the chart library drew it) with its caption.
pub(super) fn figure(drawn: String, caption: &str) -> Markup {
    let mut h = Html::default();
    html!(h, "<figure>");
    h.markup(&svg(drawn));
    html_line!(
        h,
        "<figcaption class=\"muted\">{}</figcaption></figure>",
        caption
    );
    h.into_markup()
}

pub struct Page<'a> {
    doc: &'a Report,
    out: Html,
}

impl<'a> Page<'a> {
    pub fn new(doc: &'a Report) -> Page<'a> {
        Page {
            doc,
            out: Html::with_capacity(256 * 1024),
        }
    }

    pub fn render(mut self) -> Result<String, HtmlError> {
        let d = self.doc;
        head(&mut self.out, &format!("loadgen: {}", d.url));
        self.header();
        self.parts();
        self.thresholds();
        self.server_metrics();
        self.summary();
        self.charts()?;
        self.by_request();
        self.grpc();
        self.runs();
        self.profile()?;
        self.baseline()?;
        html!(
            self.out,
            "<p class=\"muted\">Written by loadgen {}. Every number here is in the JSON report; <code>loadgen report RUN.json --html FILE</code> draws this page again.</p>\n</body>\n</html>\n",
            env!("CARGO_PKG_VERSION")
        );
        Ok(self.out.into_string())
    }

    fn header(&mut self) {
        let d = self.doc;
        html_line!(self.out, "<h1>loadgen report: {}</h1>", d.url);
        let mut rows: Vec<(&str, String)> = Vec::new();
        if let Some(ms) = d.started_unix_ms {
            rows.push(("started", utc(ms)));
        }
        rows.push((
            "load",
            match d.mode {
                crate::report::Mode::Open => format!(
                    "open loop, target {} req/s",
                    d.target_rps.map_or("?".into(), |t| format!("{t:.2}"))
                ),
                crate::report::Mode::Closed => "closed loop".into(),
            },
        ));
        rows.push((
            "engine",
            format!(
                "{}, {} shards, {} connections, pipeline {}",
                d.engine.map_or("?", |e| e.name()),
                d.shards,
                d.connections,
                d.pipeline
            ),
        ));
        rows.push((
            "measured",
            format!(
                "{:.2} s{}{}",
                d.duration_s,
                if d.warmup_s > 0.0 {
                    format!(" after {:.2} s of warm-up", d.warmup_s)
                } else {
                    String::new()
                },
                if d.interrupted { " (interrupted)" } else { "" }
            ),
        ));
        rows.push((
            "result",
            format!(
                "{} requests, {:.2} req/s, {}B/s read; latency p50 {}, p99 {}, max {}",
                d.requests,
                d.rps,
                format_binary(d.transfer_per_s),
                format_time_us(d.latency_us.p50 as f64),
                format_time_us(d.latency_us.p99 as f64),
                format_time_us(d.latency_us.max as f64)
            ),
        ));
        rows.push((
            "errors",
            format!(
                "{} ({}); non-2xx/3xx {}",
                d.errors.total(),
                d.errors.breakdown(),
                d.status.non_2xx_3xx()
            ),
        ));
        if let Some(p) = d.part.filter(|p| p.is_fleet()) {
            rows.push(("part", format!("{} of {}", p.index, p.of)));
        }
        if !d.host.is_empty() {
            rows.push(("host", d.host.clone()));
        }
        if let Some(s) = &d.scenario {
            rows.push(("scenario", s.clone()));
        }
        if let Some(seed) = d.seed {
            rows.push(("seed", seed.to_string()));
        }
        if !d.runs.is_empty() {
            rows.push(("runs", d.runs.len().to_string()));
        }
        html!(self.out, "<table class=\"meta\">\n");
        for (k, v) in rows {
            html_line!(
                self.out,
                "<tr><th class=\"l\">{}</th><td>{}</td></tr>",
                k,
                v
            );
        }
        html!(self.out, "</table>\n");
        if !d.warnings.is_empty() {
            html!(self.out, "<ul>\n");
            for w in &d.warnings {
                html_line!(self.out, "<li class=\"warn\">{}</li>", w);
            }
            html!(self.out, "</ul>\n");
        }
    }

    /// A merged report: each part's rate, p99, errors and start skew, to
    /// spot the one bad host.
    fn parts(&mut self) {
        let parts = &self.doc.parts;
        if parts.is_empty() {
            return;
        }
        html_line!(
            self.out,
            "<h2 id=\"parts\">Parts</h2>\n<table>\n<tr><th class=\"l\">part</th><th class=\"l\">host</th><th class=\"l\">report</th><th>start skew</th><th>requests</th><th>req/s</th><th>target/s</th><th>p99</th><th>errors</th></tr>"
        );
        for p in parts {
            html_line!(
                self.out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.part,
                p.host,
                p.source,
                p.start_skew_ms
                    .map_or("?".into(), |ms| format_time_us(ms * 1000.0)),
                p.requests,
                p.rps,
                p.target_rps.map_or("-".into(), |t| format!("{t:.2}")),
                format_time_us(p.p99_us as f64),
                p.errors
            );
        }
        html!(self.out, "</table>\n");
    }

    fn thresholds(&mut self) {
        let t = &self.doc.thresholds;
        if t.is_empty() {
            return;
        }
        let failed = t.iter().filter(|o| !o.ok).count();
        html_line!(
            self.out,
            "<h2 id=\"thresholds\">Thresholds: {}</h2>\n<table>\n<tr><th class=\"l\">threshold</th><th>value</th><th>result</th></tr>",
            if failed == 0 {
                "all passed".to_string()
            } else {
                format!("{failed} of {} failed", t.len())
            }
        );
        for o in t {
            let value = o.value_text();
            let (class, word) = if o.ok {
                ("pass", "pass")
            } else {
                ("fail", "FAIL")
            };
            html_line!(
                self.out,
                "<tr><td class=\"l\"><code>{}</code></td><td>{}</td><td class=\"{}\">{}</td></tr>",
                o.expr,
                value,
                class,
                word
            );
        }
        html!(self.out, "</table>\n");
    }

    fn server_metrics(&mut self) {
        let Some(m) = &self.doc.server_metrics else {
            return;
        };
        html_line!(self.out, "<h2 id=\"server\">The server's own count</h2>");
        if let Some(e) = &m.error {
            html_line!(
                self.out,
                "<p class=\"warn\">{} could not be checked: {}</p>",
                m.url,
                e
            );
            return;
        }
        html_line!(
            self.out,
            "<table>\n<tr><th class=\"l\"></th><th>requests</th><th>req/s</th></tr>\n<tr><td class=\"l\">server (<code>{}</code> at {})</td><td>{:.0}</td><td>{:.2}</td></tr>\n<tr><td class=\"l\">loadgen</td><td>{}</td><td>{:.2}</td></tr>\n</table>",
            m.counter,
            m.url,
            m.requests,
            m.rps,
            m.client_requests,
            m.client_rps
        );
        html_line!(
            self.out,
            "<p class=\"{}\">Difference {:+.2}%: {} the margin of 1% plus the requests in flight at the edges ({:.0}).</p>",
            if m.agrees { "pass" } else { "fail" },
            m.difference_pct,
            if m.agrees { "within" } else { "beyond" },
            m.margin
        );
        if let (Some(h), Some(p50), Some(p99)) = (&m.histogram, m.p50, m.p99) {
            let (a, b) = match (m.p50_us, m.p99_us) {
                (Some(a), Some(b)) => (format_time_us(a), format_time_us(b)),
                _ => (format!("{p50:.4}"), format!("{p99:.4}")),
            };
            html_line!(
                self.out,
                "<p>Server-side latency (<code>{}</code>, from bucket increases): p50 {}, p99 {}; loadgen: p50 {}, p99 {}.</p>",
                h,
                a,
                b,
                format_time_us(self.doc.latency_us.p50 as f64),
                format_time_us(self.doc.latency_us.p99 as f64)
            );
        }
    }

    fn summary(&mut self) {
        if self.doc.summary_text.is_empty() {
            return;
        }
        html_line!(
            self.out,
            "<h2 id=\"summary\">Summary</h2>\n<pre>{}</pre>",
            self.doc.summary_text
        );
    }

    fn charts(&mut self) -> Result<(), HtmlError> {
        let d = self.doc;
        // A last second with nothing in it is the run's end a moment after
        // the full seconds: not a drop to zero.
        let mut rows = &d.series[..];
        if let Some((last, rest)) = rows.split_last()
            && last.requests == 0
            && last.errors == 0
            && !rest.is_empty()
        {
            rows = rest;
        }
        let series: Vec<SecondPoint> = rows
            .iter()
            .map(|s| SecondPoint {
                second: s.second as f64,
                rate: s.rate,
                target_rate: s.target_rate,
                p50_us: s.p50_us as f64,
                p90_us: s.p90_us as f64,
                p99_us: s.p99_us as f64,
                max_us: s.max_us as f64,
                errors: s.errors as f64,
                non_2xx: s.non_2xx as f64,
            })
            .collect();
        let open = d.mode == crate::report::Mode::Open;
        html!(self.out, "<h2 id=\"charts\">Over time</h2>\n");
        if series.is_empty() {
            html!(
                self.out,
                "<p class=\"muted\">No complete second was measured.</p>\n"
            );
        } else {
            let runs = if d.runs.len() > 1 {
                " The runs' seconds follow one another."
            } else {
                ""
            };
            self.out.markup(&figure(
                charts::rate(&series)?,
                &format!(
                    "Responses per second{}.{runs}",
                    if open {
                        ", and the rate the schedule asked for"
                    } else {
                        ""
                    }
                ),
            ));
            self.out.markup(&figure(
                charts::latency(&series, open)?,
                "p50, p90, p99 and max latency of each second (log scale).",
            ));
            self.out.markup(&figure(
                charts::errors(&series)?,
                "Request-level errors and responses with a status other than 2xx/3xx, per second.",
            ));
        }
        let mut lines = Vec::new();
        if let Some(h) = d.latency_histogram() {
            lines.push(Line {
                name: if open { "corrected latency" } else { "latency" },
                color: plotters::style::RGBColor(0x1f, 0x77, 0xb4),
                points: spectrum_points(&h),
            });
        }
        if let Some(h) = d.service_histogram() {
            lines.push(Line {
                name: "service time",
                color: plotters::style::RGBColor(0xff, 0x7f, 0x0e),
                points: spectrum_points(&h),
            });
        }
        if lines.iter().any(|l| !l.points.is_empty()) {
            self.out.markup(&figure(
                charts::spectrum(&lines)?,
                "The whole distribution: latency at each percentile, 90% = 1 nine, 99% = 2 … (as HdrHistogram's plotter draws it).",
            ));
        }
        Ok(())
    }

    fn by_request(&mut self) {
        let r = &self.doc.by_request;
        if r.is_empty() {
            return;
        }
        let total: u64 = r.iter().map(|q| q.requests).sum();
        html!(
            self.out,
            "<h2 id=\"requests\">By request</h2>\n<table>\n<tr><th class=\"l\">name</th><th class=\"l\">request</th><th>weight</th><th>requests</th><th>share</th><th>req/s</th><th>mean</th><th>p50</th><th>p99</th><th>max</th><th>errors</th><th>non-2xx</th></tr>\n",
        );
        for q in r {
            let l: &Latency = &q.latency_us;
            html_line!(
                self.out,
                "<tr><td class=\"l\">{}</td><td class=\"l\"><code>{} {}</code></td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                q.name,
                q.method,
                q.target,
                q.weight,
                q.requests,
                if total > 0 {
                    100.0 * q.requests as f64 / total as f64
                } else {
                    0.0
                },
                q.rps,
                format_time_us(l.mean),
                format_time_us(l.p50 as f64),
                format_time_us(l.p99 as f64),
                format_time_us(l.max as f64),
                q.errors.requests(),
                q.status.non_2xx_3xx()
            );
        }
        html!(self.out, "</table>\n");
    }

    /// `--grpc`: the calls by status, with each status's latency.
    fn grpc(&mut self) {
        let Some(g) = &self.doc.grpc else {
            return;
        };
        let total: u64 = g.status.values().sum();
        if g.service.is_empty() {
            html!(
                self.out,
                "<h2 id=\"grpc\">gRPC statuses: {} methods</h2>\n<table>\n<tr><th class=\"l\">status</th><th>calls</th><th>share</th><th>p50</th><th>p99</th><th>max</th></tr>\n",
                g.methods.len()
            );
        } else {
            html!(
                self.out,
                "<h2 id=\"grpc\">gRPC statuses: <code>{}/{}</code></h2>\n<table>\n<tr><th class=\"l\">status</th><th>calls</th><th>share</th><th>p50</th><th>p99</th><th>max</th></tr>\n",
                g.service,
                g.method
            );
        }
        for (name, &n) in &g.status {
            let l = g.latency_by_status.get(name).copied().unwrap_or_default();
            html_line!(
                self.out,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{:.2}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                name,
                n,
                if total > 0 {
                    100.0 * n as f64 / total as f64
                } else {
                    0.0
                },
                format_time_us(l.p50 as f64),
                format_time_us(l.p99 as f64),
                format_time_us(l.max as f64)
            );
        }
        html!(self.out, "</table>\n");
        if g.methods.is_empty() {
            return;
        }
        // A scenario's calls, by method.
        html!(
            self.out,
            "<table>\n<tr><th class=\"l\">method</th><th class=\"l\">status</th><th>calls</th></tr>\n"
        );
        for (method, statuses) in &g.methods {
            for (name, &n) in statuses {
                html_line!(
                    self.out,
                    "<tr><td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td><td>{}</td></tr>",
                    method,
                    name,
                    n
                );
            }
        }
        html!(self.out, "</table>\n");
    }

    fn runs(&mut self) {
        let runs = &self.doc.runs;
        if runs.len() < 2 {
            return;
        }
        html!(
            self.out,
            "<h2 id=\"runs\">Runs</h2>\n<table>\n<tr><th>run</th><th>requests</th><th>req/s</th><th>p50</th><th>p99</th><th>max</th><th>errors</th></tr>\n"
        );
        for r in runs {
            let l = &r.report.latency_us;
            html_line!(
                self.out,
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.run,
                r.report.requests,
                r.report.rps,
                format_time_us(l.p50 as f64),
                format_time_us(l.p99 as f64),
                format_time_us(l.max as f64),
                r.report.errors.total()
            );
        }
        html!(self.out, "</table>\n");
    }

    fn profile(&mut self) -> Result<(), HtmlError> {
        let Some(p) = &self.doc.profile else {
            return Ok(());
        };
        let target = if p.target.is_empty() {
            "the target"
        } else {
            p.target.as_str()
        };
        html_line!(
            self.out,
            "<h2 id=\"profile\">Profile of {}</h2>\n<p>{} Hz over {:.2} s: {} samples, {} with lost stacks.</p>",
            target,
            p.freq_hz,
            p.window_s,
            p.samples,
            p.lost
        );
        for w in &p.warnings {
            html_line!(self.out, "<p class=\"warn\">{}</p>", w);
        }
        if !p.folded.is_empty() {
            let folded = Folded::read(p.folded.join("\n").as_bytes())
                .map_err(|e| HtmlError::Flamegraph(e.to_string()))?;
            let title = format!("{target}: {} samples at {} Hz", p.samples, p.freq_hz);
            let svg = fresh_thread(|| {
                let mut svg = Vec::new();
                crate::profile::render_flamegraph(&folded, &title, &mut svg).map(|()| svg)
            })?;
            html!(
                self.out,
                "<p class=\"muted\">Click a frame to zoom, Ctrl-F (or the Search button) to highlight a function.</p>\n"
            );
            self.out
                .markup(&flame_frame("Flamegraph", &String::from_utf8_lossy(&svg)));
        }
        if !p.functions.is_empty() {
            html!(
                self.out,
                "<table>\n<tr><th>self</th><th>total</th><th class=\"l\">function</th></tr>\n",
            );
            for f in &p.functions {
                html_line!(
                    self.out,
                    "<tr><td>{:.1}%</td><td>{:.1}%</td><td class=\"l\"><code>{}</code></td></tr>",
                    f.self_pct,
                    f.total_pct,
                    f.name
                );
            }
            html!(self.out, "</table>\n");
        }
        super::offcpu::section(p, target, &self.doc.series, &mut self.out)
    }

    fn baseline(&mut self) -> Result<(), HtmlError> {
        let Some(b) = &self.doc.baseline else {
            return Ok(());
        };
        html_line!(
            self.out,
            "<h2 id=\"baseline\">Compared with {}</h2>\n<p>Samples: {}; 95% CI: bootstrap of the median's relative change; alpha {}.</p>",
            b.path,
            b.samples.describe(),
            b.alpha
        );
        html!(
            self.out,
            "<table>\n<tr><th class=\"l\">metric</th><th>base</th><th>new</th><th>delta</th><th>95% CI</th><th>p-value</th><th class=\"l\">test</th><th class=\"l\">verdict</th></tr>\n"
        );
        for r in &b.metrics {
            let fmt = |v: f64| r.unit.format(v);
            let class = match r.verdict {
                Verdict::Slower => "fail",
                Verdict::Faster => "pass",
                Verdict::NoDifference => "",
            };
            html_line!(
                self.out,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:+.2}%</td><td>[{:+.2}%, {:+.2}%]</td><td>{:.4}</td><td class=\"l\">{}</td><td class=\"l {}\">{}</td></tr>",
                r.label(),
                fmt(r.base_median),
                fmt(r.new_median),
                r.delta_pct,
                r.ci95_pct.0,
                r.ci95_pct.1,
                r.p_value,
                r.test.text(),
                class,
                r.verdict.text()
            );
        }
        html!(self.out, "</table>\n");
        for w in &b.warnings {
            html_line!(self.out, "<p class=\"warn\">{}</p>", w);
        }
        if !b.distributions.is_empty() {
            html!(
                self.out,
                "<p class=\"muted\">Each dot is one sample (a run, or a second); the bar is the median.</p>\n<div>\n"
            );
            for dist in &b.distributions {
                let fmt: &dyn Fn(f64) -> String = match dist.unit {
                    MetricUnit::Micros => &format_time_us,
                    MetricUnit::PerSecond => &format_metric,
                };
                let drawn = charts::distribution(&dist.metric, &dist.base, &dist.new, fmt)?;
                html!(self.out, "<span class=\"small\">");
                self.out.markup(&svg(drawn));
                html_line!(self.out, "</span>");
            }
            html!(self.out, "</div>\n");
        }
        if let Some(fd) = &b.flame_diff {
            let n = |k: &str| fd.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            html_line!(
                self.out,
                "<p>Profile samples {:.0} → {:.0} ({:+.1}%){}.</p>",
                n("base_samples"),
                n("new_samples"),
                n("samples_change_pct"),
                fd.get("samples_per_request")
                    .and_then(|s| s.get("change_pct"))
                    .and_then(Value::as_f64)
                    .map_or(String::new(), |c| format!("; per request served {c:+.1}%"))
            );
        }
        if let (false, Some(new)) = (b.base_folded.is_empty(), self.doc.folded()) {
            let read = |l: &[String]| {
                Folded::read(l.join("\n").as_bytes())
                    .map_err(|e| HtmlError::Flamegraph(e.to_string()))
            };
            let (base_f, new_f) = (read(&b.base_folded)?, read(new)?);
            if base_f.total() > 0 && new_f.total() > 0 {
                let title = format!("{} → this run", b.path);
                let svg = fresh_thread(|| {
                    let mut svg = Vec::new();
                    crate::profile::diff::render(&base_f, &new_f, &title, &mut svg).map(|()| svg)
                })?;
                html!(
                    self.out,
                    "<p class=\"muted\">Differential flamegraph: this run's stacks, red where a frame's share grew since the baseline, blue where it shrank.</p>\n"
                );
                self.out.markup(&flame_frame(
                    "Differential flamegraph",
                    &String::from_utf8_lossy(&svg),
                ));
            }
        }
        Ok(())
    }
}

/// Runs an inferno render on a thread of its own: inferno draws its
/// colours from a thread-local generator with a fixed seed, so a fresh
/// thread gives the same colours whatever was drawn before in this
/// process, and a page drawn again from its JSON is the same page.
pub(super) fn fresh_thread<F>(render: F) -> Result<Vec<u8>, HtmlError>
where
    F: FnOnce() -> std::io::Result<Vec<u8>> + Send,
{
    std::thread::scope(|s| s.spawn(render).join())
        .map_err(|_| HtmlError::Flamegraph("the renderer panicked".into()))?
        .map_err(|e| HtmlError::Flamegraph(e.to_string()))
}

/// The spectrum's points: HdrHistogram's percentile iteration (5 steps per
/// halving of the distance to 100 %), as in its `.hgrm` output.
fn spectrum_points(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64))
        .filter(|(q, _)| *q < 1.0)
        .chain([(0.999_999_9, h.max() as f64)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SecondReport;
    use crate::report::html::markup::escape;

    #[test]
    fn escapes_and_dates() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_251_199_000), "2024-02-29 23:59:59 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    fn report() -> Report {
        let mut h = crate::histogram::new_latency_histogram();
        for v in 1..=5000 {
            h.record(v).unwrap();
        }
        let mut r = Report {
            url: "http://127.0.0.1:1/<x>".into(),
            requests: 5000,
            series: (1..=3)
                .map(|i| SecondReport {
                    second: i,
                    requests: 100,
                    rate: 100.0,
                    p50_us: 10,
                    p90_us: 20,
                    p99_us: 30,
                    max_us: 40,
                    ..SecondReport::default()
                })
                .collect(),
            summary_text: "Running 3s test @ http://127.0.0.1:1/<x>\n".into(),
            ..Report::default()
        };
        r.set_latency_histograms(&h, None);
        r
    }

    #[test]
    fn a_page_has_its_charts_and_escapes_the_report() {
        let html = super::super::render(&report()).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(
            html.matches("<svg").count(),
            4,
            "rate, latency, errors, spectrum"
        );
        assert!(html.contains("http://127.0.0.1:1/&lt;x&gt;"));
        assert!(!html.contains("/<x>"), "report text is escaped");
        assert!(html.contains("default-src 'none'"));
        for bad in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!html.contains(bad), "{bad}");
        }
    }

    #[test]
    fn flamegraphs_are_framed_with_their_script() {
        let mut r = report();
        r.profile = Some(
            serde_json::from_value(serde_json::json!({
                "target": "srv (1)", "freq_hz": 99, "window_s": 1.0, "samples": 3, "lost": 0,
                "functions": [{"name": "burn", "self_pct": 66.7, "total_pct": 66.7}],
                "folded": ["srv;main;burn 2", "srv;main 1"],
            }))
            .unwrap(),
        );
        let html = super::super::render(&r).unwrap();
        assert_eq!(html.matches("<iframe class=\"flame\"").count(), 1);
        let frame = html.split("srcdoc=\"").nth(1).unwrap();
        assert!(frame.contains("&lt;svg"), "the SVG is inside, escaped");
        assert!(
            frame.contains("function init(evt)") || frame.contains("init(evt)"),
            "with its script"
        );
        assert!(html.contains("<code>burn</code>"));
    }
}
