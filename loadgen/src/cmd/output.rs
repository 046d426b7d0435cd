//! Where a command's results go: the text to the terminal, the files the
//! flags name, and the `--threshold` table. Each rule is written once:
//! JSON on stdout (`--json -`) moves the text to stderr; every file is
//! created, written and named in an error the same way.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use loadgen::report::Report;
use loadgen::threshold::{self, Threshold};

use super::usage;

/// `-` as a file name: standard output.
fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Where the text goes: stdout, or stderr when `--json -` takes stdout
/// for the report, so that the JSON stays parseable.
pub fn text_out(json: Option<&Path>) -> Box<dyn Write> {
    if json.is_some_and(is_stdout) {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    }
}

/// Writes the file at `path` with `write`, which does its own creating
/// (a library writer that takes a path); a failure names `what` and the
/// file.
pub fn write_at(
    path: &Path,
    what: &str,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    write(path).with_context(|| format!("cannot write {what} to {}", path.display()))
}

/// Creates `path` and writes it, buffered, with `write`.
pub fn write_file(
    path: &Path,
    what: &str,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    write_at(path, what, |path| {
        let mut w = BufWriter::new(File::create(path)?);
        write(&mut w)?;
        w.flush()
    })
}

/// Writes `doc` as pretty JSON to `path`, or to stdout when `path` is `-`.
pub fn write_json<T: serde::Serialize>(path: &Path, doc: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(doc)?;
    text.push('\n');
    if is_stdout(path) {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        return Ok(out.flush()?);
    }
    write_file(path, "the JSON report", |w| w.write_all(text.as_bytes()))
}

/// Writes the HTML page of `doc`.
pub fn write_html(path: &Path, doc: &Report) -> anyhow::Result<()> {
    let html = loadgen::report::html::render(doc)?;
    write_file(path, "the HTML report", |w| w.write_all(html.as_bytes()))
}

/// Judges `doc` by `--threshold`s, prints the table to `out` and keeps the
/// outcomes in the report. A threshold this report cannot answer is a
/// usage error. Whether any failed is decided by [`super::exit`].
pub fn judge(
    thresholds: &[Threshold],
    doc: &mut Report,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if thresholds.is_empty() {
        return Ok(());
    }
    let outcomes = threshold::eval_all(thresholds, doc).map_err(usage)?;
    write!(out, "{}", threshold::table(&outcomes))?;
    out.flush()?;
    doc.thresholds = outcomes;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_cannot_be_written_is_named_with_what_it_holds() {
        let path = Path::new("/nonexistent-dir/out.json");
        let e = write_json(path, &serde_json::json!({"a": 1})).unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.starts_with("cannot write the JSON report to /nonexistent-dir/out.json: "),
            "{text}"
        );
    }

    #[test]
    fn a_written_file_is_complete() {
        let path = std::env::temp_dir().join(format!("loadgen-output-{}.json", std::process::id()));
        write_json(&path, &serde_json::json!({"a": [1, 2]})).unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["a"][1], 2);
        let _ = std::fs::remove_file(path);
    }
}
