//! The page's off-CPU part (`--off-cpu`): where the target waited, what
//! woke it, and how long it then queued for a CPU, drawn from
//! `profile.off_cpu`, `profile.sched` and the series' target fields, so
//! `loadgen report RUN.json --html` draws it again.

use super::HtmlError;
use super::charts;
use super::markup::{Html, html, html_line};
use super::page::{figure, flame_frame, fresh_thread};
use crate::profile::{Folded, ProfileReport};
use crate::report::SecondReport;
use crate::units::format_time_us;

/// Appends the section to `out`; nothing when the profile has no off-CPU
/// part.
pub(super) fn section(
    p: &ProfileReport,
    target: &str,
    series: &[SecondReport],
    out: &mut Html,
) -> Result<(), HtmlError> {
    let Some(o) = &p.off_cpu else {
        return Ok(());
    };
    html_line!(
        out,
        "<h3 id=\"off-cpu\">Off-CPU: where {} waited</h3>\n<p>{} in {} waits (≥ {}): sleeping (S) {}, uninterruptible (D) {}, preempted (R) {}. Stacks of 1 in up to {} switch-outs ({} taken); their times are scaled by the sampling and add up to {}.</p>",
        target,
        format_time_us(o.total_us),
        o.waits,
        format_time_us(o.min_us),
        format_time_us(o.by_state.sleep_us),
        format_time_us(o.by_state.disk_us),
        format_time_us(o.by_state.preempted_us),
        o.sample_every_max,
        o.stacks_taken,
        format_time_us(o.stacks_us),
    );
    if let Some(s) = &p.sched {
        let q = &s.runq_latency_us;
        html_line!(
            out,
            "<p>Run-queue latency (woken or preempted → running): p50 {}, p90 {}, p99 {}, max {} over {} waits ({} wakeups, {} preemptions).</p>",
            format_time_us(q.p50 as f64),
            format_time_us(q.p90 as f64),
            format_time_us(q.p99 as f64),
            format_time_us(q.max as f64),
            s.runq_waits,
            s.wakeups,
            s.preemptions
        );
    }
    let points: Vec<(f64, f64, f64)> = series
        .iter()
        .filter_map(|s| {
            s.target_runq_p99_us
                .map(|r| (s.second as f64, s.p99_us as f64, r as f64))
        })
        .collect();
    if !points.is_empty() {
        out.markup(&figure(
            charts::client_and_runq(&points)?,
            "The client's p99 and the target's run-queue p99, second by second: a client tail that follows the run queue is the scheduler's (a CPU shared with other work), not the server's code.",
        ));
    }
    if !o.folded.is_empty() {
        let folded = Folded::read(o.folded.join("\n").as_bytes())
            .map_err(|e| HtmlError::Flamegraph(e.to_string()))?;
        let title = format!("{target}: off-CPU time, µs");
        let svg = fresh_thread(|| {
            let mut svg = Vec::new();
            crate::profile::render_off_cpu_flamegraph(&folded, &title, &mut svg).map(|()| svg)
        })?;
        html!(
            out,
            "<p class=\"muted\">Widths are µs off the CPU; the leaf is the state the thread waited in ([S], [D], [R]).</p>\n"
        );
        out.markup(&flame_frame(
            "Off-CPU flamegraph",
            &String::from_utf8_lossy(&svg),
        ));
    }
    if !o.blocking.is_empty() {
        html!(
            out,
            "<table>\n<tr><th>time</th><th>share</th><th>waits</th><th class=\"l\">state</th><th class=\"l\">blocked in</th><th class=\"l\">woken by</th></tr>\n"
        );
        for b in &o.blocking {
            html_line!(
                out,
                "<tr><td>{}</td><td>{:.1}%</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\"><code>{}</code></td><td class=\"l\"><code>{}</code></td></tr>",
                format_time_us(b.us),
                b.pct,
                b.waits,
                b.state,
                b.blocked_in,
                b.woken_by.as_deref().unwrap_or("-")
            );
        }
        html!(out, "</table>\n");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::report::{Report, SecondReport};

    #[test]
    fn the_off_cpu_part_has_its_chart_flamegraph_and_table() {
        let mut r = Report {
            url: "http://127.0.0.1:1/".into(),
            series: (1..=3)
                .map(|i| SecondReport {
                    second: i,
                    requests: 100,
                    rate: 100.0,
                    p99_us: 9000 + i as u64,
                    target_runq_p99_us: Some(3000),
                    ..SecondReport::default()
                })
                .collect(),
            ..Report::default()
        };
        r.profile = Some(
            serde_json::from_value(serde_json::json!({
                "target": "srv (1)", "freq_hz": 99, "window_s": 3.0, "samples": 0,
                "off_cpu": {
                    "total_us": 2_500_000.0, "waits": 500, "min_us": 1.0,
                    "by_state": {"sleep_us": 2_400_000.0, "disk_us": 0.0, "preempted_us": 100_000.0},
                    "stacks_us": 2_450_000.0, "sample_every_max": 8, "stacks_taken": 70,
                    "blocking": [{"state": "S", "blocked_in": "nanosleep → do_nanosleep <x>",
                                  "us": 2_000_000.0, "pct": 81.6, "waits": 400,
                                  "woken_by": "[interrupt]: hrtimer_wakeup"}],
                    "folded": ["srv;main;nanosleep;[S] 2000000", "srv;main;recv;[S] 450000"],
                },
                "sched": {"runq_latency_us": {"p50": 8, "p90": 59, "p99": 3370, "max": 8340},
                          "runq_waits": 500, "wakeups": 480, "preemptions": 20, "switch_outs": 500},
            }))
            .unwrap(),
        );
        let html = crate::report::html::render(&r).unwrap();
        let part = html
            .split("id=\"off-cpu\"")
            .nth(1)
            .expect("an off-CPU section");
        assert!(part.contains("2.50s in 500 waits"), "{part:.300}");
        assert!(part.contains("p99 3.37ms"));
        assert!(part.contains("run-queue p99"), "the per-second chart");
        assert!(part.contains("title=\"Off-CPU flamegraph\""));
        assert!(
            part.contains("nanosleep → do_nanosleep &lt;x&gt;"),
            "escaped"
        );
        assert!(part.contains("[interrupt]: hrtimer_wakeup"));
        // No on-CPU samples: only the off-CPU flamegraph is drawn.
        assert_eq!(html.matches("<iframe class=\"flame\"").count(), 1);

        r.profile.as_mut().unwrap().off_cpu = None;
        let html = crate::report::html::render(&r).unwrap();
        assert!(!html.contains("id=\"off-cpu\""));
    }
}
