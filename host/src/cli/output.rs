//! What the commands print: JSON, tables, job reports and progress, with server text escaped for the
//! terminal.

use super::*;

/// Percent-encodes a value (an id, a name, a filter) for a URL.
pub(super) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, URL_SAFE).to_string()
}

/// A string field of a server answer; empty when absent.
pub(super) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// A string field of a server answer as it may be printed on a terminal (see [`terminal`]).
pub(super) fn shown<'a>(v: &'a Value, key: &str) -> Cow<'a, str> {
    terminal(text(v, key))
}

/// Text from the server (ids, names, reasons) made safe to print on a terminal: control characters
/// (escape sequences, carriage returns, newlines) and bidirectional overrides are written as escapes
/// (`\u{1b}`, `\n`, `\u{202e}`), so a value cannot move the cursor, recolour, rewrite earlier lines or
/// reorder what follows it.
pub fn terminal(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The counts columns of the statistics table, as the API names them.
pub(super) const COUNT_FIELDS: [&str; 8] = [
    "read",
    "created",
    "updated",
    "deleted",
    "skipped",
    "failed",
    "unchanged",
    "held",
];

/// A run's statistics as a text table: one row per target and entity type, counts right-aligned.
pub fn statistics_table(statistics: &[Value]) -> String {
    let mut header = vec!["target".to_string(), "entity type".to_string()];
    header.extend(COUNT_FIELDS.iter().map(|f| f.to_string()));
    let mut rows = vec![header];
    for s in statistics {
        // The target's name, or its id when the name is unknown (e.g. the target was deleted).
        let target = match text(s, "targetName") {
            "" => shown(s, "targetId"),
            name => terminal(name),
        };
        let mut row = vec![target.to_string(), shown(s, "entityType").to_string()];
        row.extend(
            COUNT_FIELDS
                .iter()
                .map(|f| s[*f].as_u64().map_or_else(|| "-".to_string(), |n| n.to_string())),
        );
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i < 2 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The report of a run: its statistics table, the lines of its outcome, and its status.
pub fn job_report(job: &Value) -> String {
    let statistics = job["statistics"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = statistics_table(statistics);
    for line in job["outcome"].as_array().into_iter().flatten() {
        match line.as_str() {
            Some(s) => out.push_str(&terminal(s)),
            None => out.push_str(&line.to_string()),
        }
        out.push('\n');
    }
    out.push_str(&format!("status: {}\n", shown(job, "status")));
    out
}

/// The progress bar's message: the run's phase (its status before it has one) and the counts so far,
/// summed over targets and entity types.
pub(super) fn progress_message(job: &Value) -> String {
    let phase = terminal(job["progress"]["phase"].as_str().unwrap_or_else(|| text(job, "status")));
    let statistics = job["statistics"].as_array().map(Vec::as_slice).unwrap_or_default();
    let sum = |field: &str| statistics.iter().filter_map(|s| s[field].as_u64()).sum::<u64>();
    format!(
        "{phase}: {} created, {} updated, {} deleted, {} failed",
        sum("created"),
        sum("updated"),
        sum("deleted"),
        sum("failed")
    )
}

/// One line of a run's entity log: seq, entity type, source id, operation, outcome, reason.
pub(super) fn log_line(entry: &Value) -> String {
    let seq = entry["seq"].as_i64().map(|n| n.to_string()).unwrap_or_default();
    let source_id = match text(entry, "sourceId") {
        "" => Cow::Borrowed("-"),
        id => terminal(id),
    };
    format!(
        "{seq}  {}  {source_id}  {}  {}  {}",
        shown(entry, "entityType"),
        shown(entry, "operation"),
        shown(entry, "outcome"),
        shown(entry, "reason")
    )
    .trim_end()
    .to_string()
}

/// Whether the run has ended.
pub(super) fn is_final(job: &Value) -> bool {
    FINAL_STATUSES.contains(&text(job, "status"))
}

/// Shows a run's state on the bar: a bar when the total to read is known, a spinner otherwise.
pub(super) fn show_progress(bar: &indicatif::ProgressBar, job: &Value) {
    use indicatif::ProgressStyle;
    let progress = &job["progress"];
    match progress["total"].as_u64() {
        Some(total) if bar.length() != Some(total) => {
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_length(total);
        }
        None if bar.length().is_some() => {
            bar.set_style(ProgressStyle::default_spinner());
            bar.unset_length();
        }
        _ => {}
    }
    bar.set_position(progress["read"].as_u64().unwrap_or(0));
    bar.set_message(progress_message(job));
}
