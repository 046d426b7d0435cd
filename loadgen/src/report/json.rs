//! The JSON report. Field names are a public interface: add, never rename.

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::RunReport;
use crate::stats::{STATUS_CODES, quantile, status_class};

fn latency(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({
            "min": 0, "mean": 0.0, "stdev": 0.0, "max": 0,
            "p50": 0, "p75": 0, "p90": 0, "p99": 0, "p99_9": 0, "p99_99": 0
        });
    }
    json!({
        "min": h.min(),
        "mean": h.mean(),
        "stdev": h.stdev(),
        "max": h.max(),
        "p50": h.value_at_quantile(0.5),
        "p75": h.value_at_quantile(0.75),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p99_9": h.value_at_quantile(0.999),
        "p99_99": h.value_at_quantile(0.9999),
    })
}

fn series(r: &RunReport<'_>) -> Value {
    let rows: Vec<Value> = r
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let len = r.second_len(i);
            let q = |q: f64| quantile(&s.latency, q);
            let mut row = json!({
                "second": i + 1,
                "requests": s.responses,
                "errors": s.errors,
                "rate": if len > 0.0 { s.responses as f64 / len } else { 0.0 },
                "p50_us": q(0.5),
                "p90_us": q(0.9),
                "p99_us": q(0.99),
                "p99_9_us": q(0.999),
                "max_us": s.latency.max(),
            });
            if let Some(target) = r.target_in_second(i) {
                row["target_rate"] = json!(if len > 0.0 { target / len } else { 0.0 });
            }
            row
        })
        .collect();
    Value::Array(rows)
}

fn status(codes: &[u64; STATUS_CODES]) -> Value {
    let class = |c: usize| status_class(codes, c);
    let mut map = Map::new();
    for (code, &n) in codes.iter().enumerate() {
        if n > 0 {
            map.insert(code.to_string(), n.into());
        }
    }
    json!({
        "2xx": class(2),
        "3xx": class(3),
        "4xx": class(4),
        "5xx": class(5),
        "codes": map,
    })
}

pub fn to_json(r: &RunReport<'_>) -> Value {
    let t = &r.out.total;
    let mut doc = json!({
        "url": r.cfg.url.raw,
        "engine": r.engine,
        "ring_mode": r.out.ring_mode,
        "shards": r.cfg.shards,
        "connections": r.cfg.connections,
        "pipeline": r.cfg.pipeline,
        "duration_s": r.elapsed_s(),
        "requests": t.responses,
        "rps": r.rps(),
        "bytes_read": t.bytes_read,
        "bytes_written": t.bytes_written,
        "transfer_per_s": r.transfer_per_s(),
        "latency_us": latency(&t.latency),
        "req_per_s_per_shard": {
            "mean": if t.rate.is_empty() { 0.0 } else { t.rate.mean() },
            "stdev": if t.rate.is_empty() { 0.0 } else { t.rate.stdev() },
            "max": t.rate.max(),
        },
        "status": status(&t.status),
        "errors": t.errors,
        "reconnects": t.reconnects,
        "reissued": t.reissued,
        "interrupted": r.interrupted,
        "mode": if r.cfg.schedule.is_some() { "open" } else { "closed" },
        "warmup_s": r.cfg.warmup.as_secs_f64(),
        "series": series(r),
        "warnings": r.warnings(),
    });
    let sc = &r.cfg.scenario;
    if sc.fixed_bytes().is_none() {
        doc["seed"] = json!(sc.seed);
    }
    if let Some(f) = &r.cfg.scenario_file {
        doc["scenario"] = json!(f.display().to_string());
    }
    if let Some(n) = r.unexpected() {
        doc["expect_status"] = json!(r.expected_text());
        doc["unexpected"] = json!(n);
    }
    if !t.by_request.is_empty() {
        doc["by_request"] = Value::Array(
            sc.requests
                .iter()
                .zip(&t.by_request)
                .map(|(req, st)| {
                    let mut row = json!({
                        "name": req.name,
                        "method": req.method,
                        "target": req.target,
                        "weight": req.weight,
                        "requests": st.responses,
                        "rps": if r.elapsed_s() > 0.0 { st.responses as f64 / r.elapsed_s() } else { 0.0 },
                        "latency_us": latency(&st.latency),
                        "status": status(&st.status),
                        "errors": st.errors,
                    });
                    if r.unexpected().is_some() {
                        row["unexpected"] =
                            json!(crate::stats::unexpected(&st.status, |c| r.cfg.expected(c)));
                    }
                    row
                })
                .collect(),
        );
    }
    if let Some(target) = r.target_rps() {
        doc["target_rps"] = json!(target);
        doc["service_time_us"] = latency(&t.service);
        doc["lag_us"] = latency(&t.lag);
        doc["conn_waits"] = json!(t.conn_waits);
    }
    doc
}
