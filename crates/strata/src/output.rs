//! Human-readable formatting: sizes, durations, tables.

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, Table};
use strata_api::reports::Located;
use strata_api::reports::NodeSummary;
use strata_api::reports::VerifyRecord;

/// Binary-unit sizes: `1.5 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Durations like `850ms`, `12.3s`, `4m05s`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
    }
}

/// A borderless table with right-aligned numeric columns.
pub fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    for &i in right {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table.to_string()
}

/// `2026-11-22T06:22:28.804Z` as `2026-11-22 06:22:28`.
fn start_time(rfc3339: &str) -> String {
    rfc3339.replace('T', " ").chars().take(19).collect()
}

/// Where the clock of the host that ran a backup stood against the storage's, which
/// names and orders backups: a line when they differ by a second or more.
pub fn host_clock(started: &str, host_started: Option<&str>) -> Option<String> {
    let storage = humantime::parse_rfc3339(started).ok()?;
    let host = humantime::parse_rfc3339(host_started?).ok()?;
    let (off, how) = match host.duration_since(storage) {
        Ok(ahead) => (ahead, "ahead"),
        Err(behind) => (behind.duration(), "behind"),
    };
    // To the nearest second: the two readings are milliseconds apart.
    let secs = ((off.as_millis() + 500) / 1000) as u64;
    if secs == 0 || off < std::time::Duration::from_secs(1) {
        return None;
    }
    let off = humantime::format_duration(std::time::Duration::from_secs(secs));
    Some(format!(
        "the host's clock said {} ({off} {how} the storage's, which orders backups)",
        host_started?
    ))
}

/// The `strata list` table.
pub fn backups_table(
    backups: &[Located],
    verified: &std::collections::HashMap<(String, String), VerifyRecord>,
) -> String {
    let rows = backups
        .iter()
        .map(|located| {
            let b = &located.summary;
            vec![
                b.name.clone(),
                located.storage.clone(),
                start_time(&b.started),
                duration(b.duration_ms),
                b.nodes.len().to_string(),
                b.total(|n| n.files).to_string(),
                size(b.total(|n| n.bytes)),
                size(b.total(|n| n.stored_bytes)),
                size(b.total(|n| n.new_bytes)),
                b.status.as_str().to_string(),
                verified
                    .get(&(located.storage.clone(), b.name.clone()))
                    .map(VerifyRecord::describe)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "name",
            "storage",
            "start (UTC)",
            "duration",
            "nodes",
            "files",
            "size",
            "stored",
            "new data",
            "status",
            "last verified",
        ],
        rows,
        &[3, 4, 5, 6, 7, 8],
    )
}

/// The per-node table of `show` and `backup`.
pub fn nodes_table(nodes: &[NodeSummary]) -> String {
    let rows = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.status.as_str().to_string(),
                n.files.to_string(),
                n.files_read.to_string(),
                size(n.bytes),
                size(n.stored_bytes),
                size(n.new_bytes),
                n.warning_count.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "node", "status", "files", "read", "size", "stored", "new data", "warnings",
        ],
        rows,
        &[2, 3, 4, 5, 6, 7],
    )
}

/// `ls -l`-style permission string.
pub fn mode_string(kind: char, mode: u32) -> String {
    let mut out = String::with_capacity(10);
    out.push(kind);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

// ---------------------------------------------------------------------------------------
// Shared by the commands that print a library's result (tables, pgq, londiste): one way
// to honour --json and --quiet, and the cells their tables hold.

/// Set once stdout cannot be written any more: the rest of the output is dropped.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The first write error that was not a closed pipe.
static STDOUT_ERROR: std::sync::Mutex<Option<std::io::Error>> = std::sync::Mutex::new(None);

/// Writes to stdout (the binary's `println!` and `print!`). A closed pipe (the reader
/// stopped: `strata list | head -1`) or any other write error stops the output instead
/// of panicking; the command goes on and ends with its own exit code.
pub fn write_out(args: std::fmt::Arguments) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(args) {
        stdout_failed(err);
    }
}

fn stdout_failed(err: std::io::Error) {
    STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
    if err.kind() != std::io::ErrorKind::BrokenPipe {
        let mut first = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(err);
    }
}

/// Flushes stdout at the end of a command; returns a write error other than a closed pipe,
/// if output was lost to one.
pub fn finish() -> Option<std::io::Error> {
    use std::io::Write;
    if !STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
        if let Err(err) = std::io::stdout().lock().flush() {
            stdout_failed(err);
        }
    }
    STDOUT_ERROR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
}

/// `value` as JSON with `--json`, else `human` unless `--quiet`.
pub fn show(global: &crate::cli::Global, value: &impl serde::Serialize, human: impl FnOnce()) {
    if global.json {
        print_json(value);
    } else if !global.quiet {
        human();
    }
}

/// Prints a table of `rows` under `header`, the `right` columns right-aligned.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) {
    println!("{}", table(header, rows, right));
}

/// Prints `items` as a table under `header`, one `row` each.
pub fn print_rows<T>(
    header: &[&str],
    items: &[T],
    right: &[usize],
    row: impl Fn(&T) -> Vec<String>,
) {
    print_table(header, items.iter().map(row).collect(), right);
}

/// Prints `pairs` as a two-column table under `header`.
pub fn print_pairs(header: [&str; 2], pairs: Vec<(&str, String)>) {
    let rows = pairs.into_iter().map(|(k, v)| vec![k.into(), v]);
    print_table(&header, rows.collect(), &[]);
}

/// `yes` or `no`.
pub fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// A value or `-`.
pub fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or("-".into(), |v| v.to_string())
}

/// `value` as pretty JSON on stdout (`--json`).
pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(mode_string('d', 0o755), "drwxr-xr-x");
    }
}

#[cfg(test)]
mod host_clock_tests {
    use super::host_clock;

    #[test]
    fn a_host_clock_off_by_a_second_or_more_is_said() {
        let storage = "2026-11-28T20:00:00.500Z";
        assert_eq!(host_clock(storage, None), None);
        assert_eq!(host_clock(storage, Some("2026-11-28T20:00:00.900Z")), None);
        assert_eq!(
            host_clock(storage, Some("2026-11-28T19:50:00.100Z")).unwrap(),
            "the host's clock said 2026-11-28T19:50:00.100Z (10m behind the storage's, which orders backups)"
        );
        assert!(host_clock(storage, Some("2026-11-28T20:00:02.000Z"))
            .unwrap()
            .contains("2s ahead"));
    }
}
