//! Finding loadgen's JSON reports in a stream of text: one file, several
//! reports one after another, or a log (`kubectl logs` of a Job's pods)
//! with other lines between them. Pure: the caller reads the bytes.

use super::Report;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error(
        "{input}: the report starting at line {line} is cut off: was the part's output complete?"
    )]
    CutOff { input: String, line: usize },
    #[error("{input}: the report starting at line {line} does not parse ({error})")]
    Broken {
        input: String,
        line: usize,
        error: String,
    },
    #[error("{0}: no loadgen JSON report in it")]
    None(String),
}

/// Every report in `text`, each named `SOURCE:LINE` (the line it starts
/// on). A report starts on a line that begins with `{` (as `--json`
/// writes it); lines outside reports are skipped, and so is JSON that is
/// not a report (it has no `url` and `requests`). A report that starts
/// but breaks off is an error, never skipped: a lost part must not go
/// unnoticed.
pub fn reports_in(text: &str, source: &str) -> Result<Vec<(String, Report)>, ReadError> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    while pos < text.len() {
        let rest = &text[pos..];
        let line_len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        if !rest.trim_start_matches([' ', '\t']).starts_with('{') {
            pos += line_len;
            line += 1;
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(v)) => {
                let used = stream.byte_offset();
                let is_report = v.get("url").is_some() && v.get("requests").is_some();
                if is_report {
                    let r: Report = serde_json::from_value(v).map_err(|e| ReadError::Broken {
                        input: source.to_string(),
                        line,
                        error: e.to_string(),
                    })?;
                    out.push((format!("{source}:{line}"), r));
                    line += rest[..used].matches('\n').count();
                    pos += used;
                } else {
                    pos += line_len;
                    line += 1;
                }
            }
            Some(Err(e)) if e.is_eof() => {
                return Err(ReadError::CutOff {
                    input: source.to_string(),
                    line,
                });
            }
            // Broken on its first line: a log line that starts with `{`.
            Some(Err(e)) if e.line() == 1 => {
                pos += line_len;
                line += 1;
            }
            Some(Err(e)) => {
                return Err(ReadError::Broken {
                    input: source.to_string(),
                    line,
                    error: e.to_string(),
                });
            }
            None => break,
        }
    }
    if out.is_empty() {
        return Err(ReadError::None(source.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rps: f64) -> String {
        serde_json::to_string_pretty(&Report {
            url: "http://h/".into(),
            rps,
            ..Report::default()
        })
        .unwrap()
    }

    #[test]
    fn reports_between_log_lines() {
        let text = format!(
            "Running 10s test @ http://h/{{{{seq}}}}\n  1 threads\n{}\n{{not json at all\nloadgen: notice\n{}{}\n",
            report(1.0),
            report(2.0),
            "{\"level\":\"info\"}"
        );
        let got = reports_in(&text, "stdin").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "stdin:3");
        assert_eq!(got[0].1.rps, 1.0);
        let second_line = 3 + report(1.0).lines().count() + 2;
        assert_eq!(got[1].0, format!("stdin:{second_line}"));
        assert_eq!(got[1].1.rps, 2.0);
        // Compact reports, one per line, work the same.
        let compact = format!(
            "{}\n{}\n",
            serde_json::to_string(&Report::default()).unwrap(),
            serde_json::to_string(&Report::default()).unwrap()
        );
        assert_eq!(reports_in(&compact, "f").unwrap().len(), 2);
    }

    #[test]
    fn a_cut_report_is_an_error_not_noise() {
        let full = report(1.0);
        let cut = &full[..full.len() / 2];
        let e = reports_in(&format!("noise\n{cut}"), "stdin").unwrap_err();
        assert_eq!(
            e,
            ReadError::CutOff {
                input: "stdin".into(),
                line: 2
            }
        );
        let broken = full.replacen("\"rps\"", "\"rps\" 3", 1);
        assert!(matches!(
            reports_in(&broken, "a.json"),
            Err(ReadError::Broken { line: 1, .. })
        ));
        assert_eq!(
            reports_in("just text\n", "a.json"),
            Err(ReadError::None("a.json".into()))
        );
    }
}
