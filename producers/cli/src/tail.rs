//! Following a metrics log as it grows: CSV (fastai's and Keras' `CSVLogger`,
//! Lightning's `metrics.csv`) or JSON lines with an `epoch` field.
//!
//! [`Follower`] yields complete lines and notices rotation (the path now names
//! another file) and truncation (the file shrank). [`Table`] turns lines into
//! epochs: rows of the same epoch are merged (Lightning writes train and
//! validation values on separate rows), step-level columns are left out.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[cfg(unix)]
use std::os::unix::fs::MetadataExt;

use watchtrain_protocol::MAX_METRICS;

/// What the follower saw since the last poll.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A complete line (without its end of line).
    Line(String),
    /// The lines that follow come from a new file (rotated or truncated): a CSV header comes again.
    NewFile,
}

/// Follows a file by path across rotation and truncation.
pub struct Follower {
    /// The followed path.
    path: PathBuf,
    /// The open file, when it exists.
    file: Option<File>,
    /// Identity of the open file (device, inode) to notice rotation.
    id: (u64, u64),
    /// Bytes read from the open file.
    offset: u64,
    /// The start of a line not yet ended.
    partial: Vec<u8>,
    /// The file's first bytes as read: when they change, the file was rewritten in place
    /// (Lightning's CSVLogger rewrites the whole file when a new column appears).
    prefix: Vec<u8>,
}

/// How many first bytes are compared to notice a rewrite.
const PREFIX_LEN: usize = 128;

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

impl Follower {
    /// Follows `path` from its beginning (it need not exist yet).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Follower {
            path: path.as_ref().to_path_buf(),
            file: None,
            id: (0, 0),
            offset: 0,
            partial: Vec::new(),
            prefix: Vec::new(),
        }
    }

    /// True once the followed file exists and is open.
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// New events since the last poll.
    pub fn poll(&mut self) -> io::Result<Vec<Event>> {
        let mut events = Vec::new();
        let current = std::fs::metadata(&self.path).ok();
        if self.file.is_some() {
            let rotated = current.as_ref().is_some_and(|m| identity(m) != self.id);
            let truncated = !rotated
                && (current.as_ref().is_some_and(|m| m.len() < self.offset) || self.rewritten()?);
            if truncated {
                self.partial.clear();
                self.reopen(&mut events)?;
            } else {
                self.read_lines(&mut events)?;
                if rotated {
                    // The old file is finished: its last line may lack an end of line.
                    self.flush_partial(&mut events);
                    self.reopen(&mut events)?;
                }
            }
        } else if current.is_some() {
            self.reopen(&mut events)?;
        }
        Ok(events)
    }

    /// True when the file's first bytes differ from those read before.
    fn rewritten(&mut self) -> io::Result<bool> {
        let Some(file) = self.file.as_mut() else {
            return Ok(false);
        };
        if self.prefix.is_empty() {
            return Ok(false);
        }
        let mut now = vec![0u8; self.prefix.len()];
        file.seek(SeekFrom::Start(0))?;
        let mut filled = 0;
        while filled < now.len() {
            let n = file.read(&mut now[filled..])?;
            if n == 0 {
                return Ok(true); // shorter than what was read: truncated
            }
            filled += n;
        }
        Ok(now != self.prefix)
    }

    fn reopen(&mut self, events: &mut Vec<Event>) -> io::Result<()> {
        match File::open(&self.path) {
            Ok(file) => {
                self.id = identity(&file.metadata()?);
                self.file = Some(file);
                self.offset = 0;
                self.partial.clear();
                self.prefix.clear();
                events.push(Event::NewFile);
                self.read_lines(events)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.file = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn read_lines(&mut self, events: &mut Vec<Event>) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut chunk = Vec::new();
        let n = file.read_to_end(&mut chunk)?;
        if self.prefix.len() < PREFIX_LEN && self.offset == self.prefix.len() as u64 {
            let take = (PREFIX_LEN - self.prefix.len()).min(chunk.len());
            self.prefix.extend_from_slice(&chunk[..take]);
        }
        self.offset += n as u64;
        for &b in &chunk {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial)
                    .trim_end_matches('\r')
                    .to_string();
                self.partial.clear();
                events.push(Event::Line(line));
            } else {
                self.partial.push(b);
            }
        }
        Ok(())
    }

    fn flush_partial(&mut self, events: &mut Vec<Event>) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial)
                .trim_end_matches('\r')
                .to_string();
            self.partial.clear();
            events.push(Event::Line(line));
        }
    }
}

/// The log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated with a header line.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// Guessed from the file name: `.jsonl`, `.ndjson`, `.json` are JSON lines, the rest CSV
    /// (a CSV whose first line starts with `{` is read as JSON lines too).
    pub fn from_path(path: &Path) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("jsonl" | "ndjson" | "json") => Format::JsonLines,
            _ => Format::Csv,
        }
    }
}

/// Columns that are not metrics.
fn skipped(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "epoch" | "step" | "time" | "global_step" | "timestamp" | "created_at" | "wall_time"
    ) || lower.ends_with("_step")
        || lower.is_empty()
}

/// Parses a number as the logs write them (`nan`, `inf`, `-inf` included); `None` for an empty or text cell.
pub fn number(cell: &str) -> Option<f32> {
    let cell = cell.trim().trim_matches('"');
    match cell.to_ascii_lowercase().as_str() {
        "" => None,
        "nan" => Some(f32::NAN),
        "inf" | "infinity" | "+inf" => Some(f32::INFINITY),
        "-inf" | "-infinity" => Some(f32::NEG_INFINITY),
        _ => cell.parse::<f64>().ok().map(|v| v as f32),
    }
}

/// fastai's `time` column (`mm:ss` or `hh:mm:ss`) or plain seconds, in milliseconds.
fn duration_ms(cell: &str) -> Option<u32> {
    let mut total = 0f64;
    for part in cell.trim().trim_matches('"').split(':') {
        total = total * 60.0 + part.parse::<f64>().ok()?;
    }
    Some((total * 1000.0) as u32)
}

/// Splits one CSV line (quotes allowed, no line breaks inside cells).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    match reader.records().next() {
        Some(Ok(record)) => record.iter().map(str::to_string).collect(),
        _ => vec![line.to_string()],
    }
}

/// JSON with Python's non-finite numbers (`NaN`, `Infinity`, `-Infinity`, what
/// `json.dumps` writes) turned into strings, which serde_json accepts and
/// [`number`] reads back. serde_json has no option for them, and its `Value`
/// cannot hold a NaN.
fn quote_non_finite(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|w| rest.starts_with(w))
        {
            out.push('"');
            out.push_str(word);
            out.push('"');
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// One epoch's merged values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochRow {
    /// Values by metric name.
    pub values: BTreeMap<String, f32>,
    /// The epoch's duration when the log says it.
    pub duration_ms: Option<u32>,
}

/// The epochs read so far.
#[derive(Debug, Default)]
pub struct Table {
    /// Metric names in first-seen order (at most [`MAX_METRICS`]).
    pub metrics: Vec<String>,
    /// Rows by epoch.
    pub rows: BTreeMap<u32, EpochRow>,
    /// The CSV header of the current file.
    header: Option<Vec<String>>,
    /// Lines without an epoch column count epochs themselves.
    implicit_epoch: u32,
}

/// One parsed line: epoch, values by name, duration in ms.
type ParsedRow = (u32, Vec<(String, f32)>, Option<u32>);

/// What reading some lines changed.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// The metric names changed: register again and resend every epoch.
    pub metrics_changed: bool,
    /// Epochs whose values changed, ascending.
    pub epochs: Vec<u32>,
}

impl Table {
    /// Reads events, returning what changed.
    pub fn read(&mut self, format: Format, events: &[Event]) -> Changes {
        let mut changes = Changes::default();
        for event in events {
            match event {
                Event::NewFile => {
                    self.header = None;
                    self.implicit_epoch = 0;
                }
                Event::Line(line) => {
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    if let Some(row) = self.parse_line(format, line, &mut changes) {
                        self.merge(row, &mut changes);
                    }
                }
            }
        }
        changes.epochs.sort_unstable();
        changes
    }

    /// One line as an epoch's values; a CSV header names the metrics, in its order.
    fn parse_line(
        &mut self,
        format: Format,
        line: &str,
        changes: &mut Changes,
    ) -> Option<ParsedRow> {
        if format == Format::JsonLines || line.starts_with('{') {
            return json_line(line);
        }
        let had_header = self.header.is_some();
        let parsed = self.csv_line(line);
        if !had_header {
            let names = self.header.clone().unwrap_or_default();
            self.add_metrics(names.iter().filter(|n| !skipped(n)), changes);
        }
        parsed
    }

    /// Adds metric names not seen yet (up to [`MAX_METRICS`]).
    fn add_metrics<'a>(&mut self, names: impl Iterator<Item = &'a String>, changes: &mut Changes) {
        for name in names {
            if !self.metrics.contains(name) && self.metrics.len() < MAX_METRICS {
                self.metrics.push(name.clone());
                changes.metrics_changed = true;
            }
        }
    }

    /// Merges a parsed line into its epoch's row (Lightning writes one epoch on several rows).
    fn merge(&mut self, (epoch, cells, duration): ParsedRow, changes: &mut Changes) {
        self.add_metrics(cells.iter().map(|(name, _)| name), changes);
        let row = self.rows.entry(epoch).or_default();
        let before = row.clone();
        row.values.extend(cells);
        if duration.is_some() {
            row.duration_ms = duration;
        }
        if *row != before && !changes.epochs.contains(&epoch) {
            changes.epochs.push(epoch);
        }
    }

    fn csv_line(&mut self, line: &str) -> Option<ParsedRow> {
        let cells = split_csv(line);
        let Some(header) = &self.header else {
            self.header = Some(cells.iter().map(|c| c.trim().to_string()).collect());
            return None;
        };
        if cells.iter().zip(header).all(|(c, h)| c.trim() == h) {
            return None; // the header again (a rotated file, or a logger that repeats it)
        }
        let mut epoch = None;
        let mut duration = None;
        let mut values = Vec::new();
        for (name, cell) in header.iter().zip(&cells) {
            match name.to_ascii_lowercase().as_str() {
                "epoch" => {
                    epoch = number(cell)
                        .filter(|e| e.is_finite() && *e >= 0.0)
                        .map(|e| e as u32)
                }
                "time" => duration = duration_ms(cell),
                _ if skipped(name) => {}
                _ => {
                    if let Some(v) = number(cell) {
                        values.push((name.clone(), v));
                    }
                }
            }
        }
        if values.is_empty() {
            return None;
        }
        let has_epoch_column = header.iter().any(|h| h.eq_ignore_ascii_case("epoch"));
        let epoch = match epoch {
            Some(e) => e,
            None if has_epoch_column => return None,
            None => {
                self.implicit_epoch += 1;
                self.implicit_epoch - 1
            }
        };
        Some((epoch, values, duration))
    }

    /// The values of `epoch` aligned to the metric names (NaN where missing).
    pub fn values(&self, epoch: u32) -> Vec<f32> {
        let row = self.rows.get(&epoch);
        self.metrics
            .iter()
            .map(|m| {
                row.and_then(|r| r.values.get(m).copied())
                    .unwrap_or(f32::NAN)
            })
            .collect()
    }
}

/// One JSON-lines row: its `epoch`, numeric fields (NaN and infinities included), `time`.
fn json_line(line: &str) -> Option<ParsedRow> {
    let value: serde_json::Value = serde_json::from_str(&quote_non_finite(line)).ok()?;
    let object = value.as_object()?;
    let epoch = object
        .get("epoch")
        .and_then(|e| e.as_f64())
        .filter(|e| *e >= 0.0)? as u32;
    let duration = object.get("time").and_then(|t| match t {
        serde_json::Value::String(s) => duration_ms(s),
        other => other.as_f64().map(|s| (s * 1000.0) as u32),
    });
    let mut values = Vec::new();
    for (name, v) in object {
        if skipped(name) {
            continue;
        }
        let v = match v {
            serde_json::Value::Number(n) => n.as_f64().map(|f| f as f32),
            serde_json::Value::String(s) => number(s).filter(|f| !f.is_finite()),
            _ => None,
        };
        if let Some(v) = v {
            values.push((name.clone(), v));
        }
    }
    Some((epoch, values, duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Event> {
        text.lines().map(|l| Event::Line(l.to_string())).collect()
    }

    #[test]
    fn cells_and_numbers() {
        assert_eq!(
            split_csv(r#"a,"b,c","d""e",,"#),
            ["a", "b,c", "d\"e", "", ""]
        );
        assert_eq!(number(" 0.5 "), Some(0.5));
        assert!(number("nan").unwrap().is_nan());
        assert_eq!(number("-inf"), Some(f32::NEG_INFINITY));
        assert_eq!(number(""), None);
        assert_eq!(number("00:12"), None);
        assert_eq!(duration_ms("01:02"), Some(62_000));
        assert_eq!(duration_ms("1:00:00"), Some(3_600_000));
        assert_eq!(duration_ms("2.5"), Some(2_500));
    }

    #[test]
    fn keras_csv_without_time_and_a_repeated_header() {
        let mut t = Table::default();
        let c = t.read(
            Format::Csv,
            &lines("epoch,accuracy,loss,val_loss\n0,0.5,1.0,1.1\nepoch,accuracy,loss,val_loss\n1,0.6,0.8,0.9"),
        );
        assert_eq!(c.epochs, [0, 1]);
        assert_eq!(t.metrics, ["accuracy", "loss", "val_loss"]);
        assert_eq!(t.values(1), [0.6, 0.8, 0.9]);
        assert_eq!(t.rows[&0].duration_ms, None);
    }

    #[test]
    fn json_lines_keep_python_non_finite_numbers() {
        let mut t = Table::default();
        let c = t.read(
            Format::JsonLines,
            &lines(concat!(
                r#"{"epoch": 0, "loss": NaN, "grad": Infinity, "lr": -Infinity, "note": "NaN inside"}"#,
                "\n",
                r#"{"epoch": 1, "loss": 0.5, "grad": 1, "lr": 0.1, "tag": "say \"NaN\""}"#,
            )),
        );
        assert_eq!(c.epochs, [0, 1]);
        assert_eq!(t.metrics, ["grad", "loss", "lr"]);
        let e0 = t.values(0);
        assert_eq!(e0[0], f32::INFINITY);
        assert!(e0[1].is_nan());
        assert_eq!(e0[2], f32::NEG_INFINITY);
        assert_eq!(t.values(1)[..3], [1.0, 0.5, 0.1]);
        assert_eq!(
            quote_non_finite(r#"{"a": NaN, "b": "x\"NaN"}"#),
            r#"{"a": "NaN", "b": "x\"NaN"}"#
        );
    }

    #[test]
    fn rows_without_an_epoch_column_count_epochs() {
        let mut t = Table::default();
        t.read(Format::Csv, &lines("loss,acc\n1.0,0.1\n0.5,0.2"));
        assert_eq!(t.rows.keys().copied().collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn an_unchanged_row_is_not_sent_again() {
        let mut t = Table::default();
        t.read(Format::JsonLines, &lines(r#"{"epoch": 0, "loss": 1}"#));
        let c = t.read(Format::JsonLines, &lines(r#"{"epoch": 0, "loss": 1}"#));
        assert!(c.epochs.is_empty() && !c.metrics_changed);
        let c = t.read(Format::JsonLines, &lines(r#"{"epoch": 0, "val_loss": 2}"#));
        assert_eq!(c.epochs, [0]);
        assert!(c.metrics_changed);
    }

    #[test]
    fn follower_sees_appends_partial_lines_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.csv");
        let mut f = Follower::new(&path);
        assert_eq!(f.poll().unwrap(), []);
        std::fs::write(&path, "a\nb").unwrap();
        assert_eq!(f.poll().unwrap(), [Event::NewFile, Event::Line("a".into())]);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b"c\r\nd").unwrap();
        assert_eq!(f.poll().unwrap(), [Event::Line("bc".into())]);
        std::fs::rename(&path, dir.path().join("log.csv.1")).unwrap();
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(
            f.poll().unwrap(),
            [
                Event::Line("d".into()),
                Event::NewFile,
                Event::Line("new".into())
            ]
        );
        std::fs::write(&path, "").unwrap();
        assert_eq!(f.poll().unwrap(), [Event::NewFile]);
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(f.poll().unwrap(), [Event::Line("x".into())]);
        // Rewritten in place with a new header, longer than before (Lightning's CSVLogger).
        std::fs::write(&path, "x,y\n1,2\n").unwrap();
        assert_eq!(
            f.poll().unwrap(),
            [
                Event::NewFile,
                Event::Line("x,y".into()),
                Event::Line("1,2".into())
            ]
        );
        assert_eq!(f.poll().unwrap(), []);
    }
}
