//! Data feeds (`--feed NAME=FILE`): one row per request, round-robin, as
//! JMeter's CSV data sets. A `.csv` (or `.tsv`) file has a header line
//! naming its columns; any other file is plain lines. The file is read
//! once, before the run.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("--feed wants NAME=FILE (e.g. --feed users=users.csv), got {0:?}")]
    Syntax(String),
    #[error("cannot read feed file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("feed file {0} has no data rows; add at least one line")]
    Empty(PathBuf),
    #[error("feed {0:?} is given twice; use a different NAME for each --feed")]
    Duplicate(String),
    #[error("feed file {0} line {1}: unterminated quoted field")]
    Quote(PathBuf, usize),
    #[error(
        "feed file {0} is too large: feeds are held in memory with 32-bit offsets, at most 4 GiB of rows and cells; split it or use a sample"
    )]
    TooLarge(PathBuf),
}

/// Bytes of lines and cells a feed may hold (its offsets are `u32`).
const MAX_FEED_BYTES: u64 = u32::MAX as u64;

#[derive(Debug, Clone)]
pub struct Feed {
    pub name: String,
    pub path: PathBuf,
    /// Column names (CSV/TSV header); empty for plain-line files.
    pub columns: Vec<String>,
    /// Whole lines, then unquoted cells, back to back.
    data: Vec<u8>,
    lines: Vec<(u32, u32)>,
    /// `columns.len()` cells per row.
    cells: Vec<(u32, u32)>,
    max_line: usize,
    max_cell: Vec<usize>,
}

impl Feed {
    /// Parses a `--feed NAME=FILE` argument and reads the file.
    pub fn from_arg(arg: &str) -> Result<Feed, FeedError> {
        let (name, path) = arg
            .split_once('=')
            .filter(|(n, p)| {
                !n.is_empty()
                    && !p.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .ok_or_else(|| FeedError::Syntax(arg.to_string()))?;
        let path = PathBuf::from(path);
        // Refused before it is read: a file this large would not fit anyway.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FEED_BYTES) {
            return Err(FeedError::TooLarge(path));
        }
        let text = std::fs::read(&path).map_err(|e| FeedError::Read(path.clone(), e))?;
        Feed::parse(name, &path, &text)
    }

    pub fn parse(name: &str, path: &Path, text: &[u8]) -> Result<Feed, FeedError> {
        Self::parse_within(name, path, text, MAX_FEED_BYTES)
    }

    /// [`Feed::parse`], holding at most `limit` bytes of lines and cells.
    fn parse_within(name: &str, path: &Path, text: &[u8], limit: u64) -> Result<Feed, FeedError> {
        let sep = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Some(b','),
            Some(e) if e.eq_ignore_ascii_case("tsv") => Some(b'\t'),
            _ => None,
        };
        let mut feed = Feed {
            name: name.to_string(),
            path: path.to_path_buf(),
            columns: Vec::new(),
            data: Vec::with_capacity((text.len() * 2).min(limit as usize)),
            lines: Vec::new(),
            cells: Vec::new(),
            max_line: 0,
            max_cell: Vec::new(),
        };
        let mut header_done = sep.is_none();
        let mut fields = Vec::new();
        for (no, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            if let Some(sep) = sep {
                fields.clear();
                split_fields(line, sep, &mut fields)
                    .ok_or_else(|| FeedError::Quote(path.to_path_buf(), no + 1))?;
                if !header_done {
                    feed.columns = fields
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).trim().to_string())
                        .collect();
                    feed.max_cell = vec![0; feed.columns.len()];
                    header_done = true;
                    continue;
                }
            }
            // The line, then its cells.
            let cells: usize = fields.iter().take(feed.columns.len()).map(Vec::len).sum();
            if (feed.data.len() + line.len() + cells) as u64 > limit {
                return Err(FeedError::TooLarge(path.to_path_buf()));
            }
            let start = feed.data.len() as u32;
            feed.data.extend_from_slice(line);
            feed.lines.push((start, feed.data.len() as u32));
            feed.max_line = feed.max_line.max(line.len());
            for c in 0..feed.columns.len() {
                let start = feed.data.len() as u32;
                if let Some(f) = fields.get(c) {
                    feed.data.extend_from_slice(f);
                }
                feed.cells.push((start, feed.data.len() as u32));
                feed.max_cell[c] = feed.max_cell[c].max(feed.data.len() - start as usize);
            }
        }
        if feed.lines.is_empty() {
            return Err(FeedError::Empty(path.to_path_buf()));
        }
        Ok(feed)
    }

    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// Index of column `c` (a header name, or a 0-based number).
    pub fn column(&self, c: &str) -> Result<usize, String> {
        if self.columns.is_empty() {
            return Err(format!(
                "feed {:?} ({}) has no columns: only .csv and .tsv files do; use {{{{feed:{}}}}}",
                self.name,
                self.path.display(),
                self.name
            ));
        }
        if let Some(i) = self.columns.iter().position(|n| n == c) {
            return Ok(i);
        }
        match c.parse::<usize>() {
            Ok(i) if i < self.columns.len() => Ok(i),
            _ => Err(format!(
                "feed {:?} has no column {c:?}; its columns are {}",
                self.name,
                self.columns.join(", ")
            )),
        }
    }

    /// Row `row`'s line, or its cell `col`.
    #[inline]
    pub fn get(&self, row: u32, col: Option<usize>) -> &[u8] {
        let (s, e) = match col {
            None => self.lines[row as usize],
            Some(c) => self.cells[row as usize * self.columns.len() + c],
        };
        &self.data[s as usize..e as usize]
    }

    pub fn max_len(&self, col: Option<usize>) -> usize {
        match col {
            None => self.max_line,
            Some(c) => self.max_cell[c],
        }
    }

    /// Every value `col` can take.
    pub fn values(&self, col: Option<usize>) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.rows() as u32).map(move |r| self.get(r, col))
    }
}

/// Splits one CSV line (RFC 4180 quoting, no newlines inside quotes).
fn split_fields(line: &[u8], sep: u8, out: &mut Vec<Vec<u8>>) -> Option<()> {
    let mut i = 0;
    loop {
        let mut field = Vec::new();
        if line.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match line.get(i) {
                    None => return None,
                    Some(b'"') if line.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        field.push(b);
                        i += 1;
                    }
                }
            }
            // Anything between the closing quote and the separator is kept.
            while let Some(&b) = line.get(i) {
                if b == sep {
                    break;
                }
                field.push(b);
                i += 1;
            }
        } else {
            while let Some(&b) = line.get(i) {
                if b == sep {
                    break;
                }
                field.push(b);
                i += 1;
            }
        }
        out.push(field);
        if i >= line.len() {
            return Some(());
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_beyond_32_bit_offsets_are_refused() {
        // Offsets were cast `as u32`: past 4 GiB rows silently pointed at
        // the wrong bytes.
        let text = b"id,name\n1,ann\n2,bob\n3,cy\n";
        let p = Path::new("u.csv");
        assert!(Feed::parse_within("u", p, text, 1 << 20).is_ok());
        assert!(matches!(
            Feed::parse_within("u", p, text, 20),
            Err(FeedError::TooLarge(_))
        ));
        // A file over the limit is refused before it is read (sparse here).
        let path = std::env::temp_dir().join(format!("loadgen-huge-feed-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_FEED_BYTES + 1)
            .unwrap();
        let e = Feed::from_arg(&format!("big={}", path.display())).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(matches!(e, FeedError::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("split it"), "{e}");
    }

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn plain_lines_skip_blanks_and_cr() {
        let f = Feed::parse("ids", Path::new("ids.txt"), b"a\r\n\nb c\n  \nd").unwrap();
        assert_eq!(f.rows(), 3);
        assert_eq!(f.values(None).map(s).collect::<Vec<_>>(), ["a", "b c", "d"]);
        assert!(f.column("0").is_err());
        assert_eq!(f.max_len(None), 3);
    }

    #[test]
    fn csv_columns_by_name_and_index_with_quotes() {
        let f = Feed::parse(
            "users",
            Path::new("u.CSV"),
            b"id,name,note\n1,ann,\"x, \"\"y\"\"\"\n2,bob\n",
        )
        .unwrap();
        assert_eq!(f.columns, ["id", "name", "note"]);
        assert_eq!(f.rows(), 2);
        let name = f.column("name").unwrap();
        assert_eq!(f.column("1"), Ok(1));
        assert_eq!(s(f.get(0, Some(name))), "ann");
        assert_eq!(s(f.get(0, Some(2))), "x, \"y\"");
        assert_eq!(s(f.get(1, Some(2))), "", "missing cells are empty");
        assert_eq!(s(f.get(1, None)), "2,bob");
        assert!(f.column("email").unwrap_err().contains("id, name, note"));
        assert_eq!(f.max_len(Some(2)), 6);
    }

    #[test]
    fn tsv_splits_on_tabs() {
        let f = Feed::parse("t", Path::new("t.tsv"), b"k\tv\na,b\tc d\n").unwrap();
        assert_eq!(f.columns, ["k", "v"]);
        assert_eq!(s(f.get(0, Some(0))), "a,b");
        assert_eq!(s(f.get(0, Some(1))), "c d");
    }

    #[test]
    fn bad_feeds_are_clear_errors() {
        assert!(matches!(
            Feed::parse("e", Path::new("e.csv"), b"id\n"),
            Err(FeedError::Empty(_))
        ));
        assert!(matches!(
            Feed::parse("e", Path::new("e.csv"), b"id\n\"open\n"),
            Err(FeedError::Quote(_, 2))
        ));
        assert!(matches!(
            Feed::from_arg("noequals"),
            Err(FeedError::Syntax(_))
        ));
        assert!(matches!(Feed::from_arg("a b=x"), Err(FeedError::Syntax(_))));
        let e = Feed::from_arg("u=/nonexistent/users.csv").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read feed file /nonexistent/users.csv")
        );
    }
}
