//! Typed columns as the rows of `COPY ... FROM STDIN (FORMAT text)`, to load a Parquet
//! archive back.
//!
//! Every value is written so PostgreSQL's input function reads back the exact value that
//! was archived: integers in decimal; floats in the shortest form that reads back to the
//! same bits (`NaN`, `Infinity`, `-Infinity`, `-0`); dates and timestamps in ISO form
//! (which every `DateStyle` reads) with microseconds, `+00` for `timestamptz` and ` BC`
//! for years before 1; `infinity` and `-infinity`; strings (PostgreSQL's own text output
//! of the value) with COPY's backslash escapes.

use super::values::{
    Column, Kind, Values, DATE_INFINITY, DATE_MINUS_INFINITY, TS_INFINITY, TS_MINUS_INFINITY,
};
use std::io::Write;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Writes rows of a row group as COPY text, a slice at a time.
pub struct TextRows {
    /// The next row.
    row: usize,
    /// Per column, the index of the next value (NULLs have none).
    next_value: Vec<usize>,
}

impl TextRows {
    pub fn new(columns: &[Column]) -> TextRows {
        TextRows {
            row: 0,
            next_value: vec![0; columns.len()],
        }
    }

    /// Appends rows to `out` until it holds at least `limit` bytes or the rows end;
    /// returns whether rows are left.
    pub fn write(&mut self, columns: &[Column], out: &mut Vec<u8>, limit: usize) -> bool {
        let rows = columns.first().map_or(0, Column::rows);
        while self.row < rows && out.len() < limit {
            for (i, column) in columns.iter().enumerate() {
                if i > 0 {
                    out.push(b'\t');
                }
                if column.defs[self.row] == 0 {
                    out.extend_from_slice(b"\\N");
                    continue;
                }
                let at = self.next_value[i];
                self.next_value[i] += 1;
                write_value(column.kind, &column.values, at, out);
            }
            out.push(b'\n');
            self.row += 1;
        }
        self.row < rows
    }
}

fn write_value(kind: Kind, values: &Values, at: usize, out: &mut Vec<u8>) {
    match values {
        Values::Bytes(v) => escape(v[at].data(), out),
        _ => write_plain(kind, values, at, out),
    }
}

/// A value's text as PostgreSQL's input function reads it, strings as they are (not
/// escaped for COPY): what `strata load --file` makes of a Parquet file's values.
pub(crate) fn write_plain(kind: Kind, values: &Values, at: usize, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = match (kind, values) {
        (_, Values::Bool(v)) => {
            out.push(if v[at] { b't' } else { b'f' });
            Ok(())
        }
        (Kind::Date, Values::Int32(v)) => {
            write_date(v[at], out);
            Ok(())
        }
        (_, Values::Int32(v)) => write!(out, "{}", v[at]),
        (Kind::Timestamp, Values::Int64(v)) => {
            write_timestamp(v[at], false, out);
            Ok(())
        }
        (Kind::TimestampTz, Values::Int64(v)) => {
            write_timestamp(v[at], true, out);
            Ok(())
        }
        (_, Values::Int64(v)) => write!(out, "{}", v[at]),
        (_, Values::Float(v)) => write_float(f64::from(v[at]), v[at].is_nan(), out, |o| {
            write!(o, "{:e}", v[at])
        }),
        (_, Values::Double(v)) => {
            write_float(v[at], v[at].is_nan(), out, |o| write!(o, "{:e}", v[at]))
        }
        (_, Values::Bytes(v)) => {
            out.extend_from_slice(v[at].data());
            Ok(())
        }
    };
}

fn write_float(
    value: f64,
    nan: bool,
    out: &mut Vec<u8>,
    finite: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if nan {
        out.extend_from_slice(b"NaN");
        Ok(())
    } else if value == f64::INFINITY {
        out.extend_from_slice(b"Infinity");
        Ok(())
    } else if value == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Infinity");
        Ok(())
    } else {
        // Rust's `{:e}` is the shortest decimal that reads back to the same bits.
        finite(out)
    }
}

/// COPY text escapes: backslash, newline, carriage return and tab.
pub(crate) fn escape(data: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (at, byte) in data.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.extend_from_slice(&data[start..at]);
        out.extend_from_slice(escaped);
        start = at + 1;
    }
    out.extend_from_slice(&data[start..]);
}

/// Year, month and day of a day number (days since 1970-01-01, proleptic Gregorian, as
/// PostgreSQL counts), for any day an i64 holds (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD`; the year of the ` BC` suffix, if any.
fn write_ymd(days: i64, out: &mut Vec<u8>) -> bool {
    let (year, month, day) = civil_from_days(days);
    // Year 0 is 1 BC, year -1 is 2 BC.
    let (shown, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    let _ = write!(out, "{shown:04}-{month:02}-{day:02}");
    bc
}

fn write_date(days: i32, out: &mut Vec<u8>) {
    match days {
        DATE_INFINITY => out.extend_from_slice(b"infinity"),
        DATE_MINUS_INFINITY => out.extend_from_slice(b"-infinity"),
        _ => {
            if write_ymd(i64::from(days), out) {
                out.extend_from_slice(b" BC");
            }
        }
    }
}

fn write_timestamp(micros: i64, utc: bool, out: &mut Vec<u8>) {
    match micros {
        TS_INFINITY => return out.extend_from_slice(b"infinity"),
        TS_MINUS_INFINITY => return out.extend_from_slice(b"-infinity"),
        _ => {}
    }
    let days = micros.div_euclid(MICROS_PER_DAY);
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let bc = write_ymd(days, out);
    let secs = of_day / 1_000_000;
    let fraction = of_day % 1_000_000;
    let _ = write!(
        out,
        " {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if fraction != 0 {
        let _ = write!(out, ".{fraction:06}");
    }
    if utc {
        out.extend_from_slice(b"+00");
    }
    if bc {
        out.extend_from_slice(b" BC");
    }
}

#[cfg(test)]
mod tests {
    use super::super::values::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};
    use super::*;
    use parquet::data_type::ByteArray;

    fn one(kind: Kind, values: Values) -> String {
        let column = Column {
            kind,
            defs: vec![1],
            values,
        };
        let mut out = Vec::new();
        let columns = [column];
        TextRows::new(&columns).write(&columns, &mut out, usize::MAX);
        String::from_utf8(out)
            .unwrap()
            .trim_end_matches('\n')
            .to_string()
    }

    #[test]
    fn dates_and_timestamps_as_postgresql_reads_them() {
        let date = |d: i32| one(Kind::Date, Values::Int32(vec![d]));
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(PG_EPOCH_DAYS), "2000-01-01");
        assert_eq!(date(civil_days(0, 1, 1) as i32), "0001-01-01 BC");
        assert_eq!(date(civil_days(1, 1, 1) as i32), "0001-01-01");
        assert_eq!(date(civil_days(-4712, 11, 24) as i32), "4713-11-24 BC");
        assert_eq!(date(i32::MAX), "infinity");
        assert_eq!(date(i32::MIN), "-infinity");
        // PostgreSQL's latest date, 5874897-12-31.
        assert_eq!(date(2_147_483_493 - 2_440_588), "5874897-12-31");
        let ts = |kind, t: i64| one(kind, Values::Int64(vec![t]));
        assert_eq!(
            ts(Kind::TimestampTz, PG_EPOCH_MICROS),
            "2000-01-01 00:00:00+00"
        );
        assert_eq!(
            ts(Kind::Timestamp, 1_700_000_000_123_456),
            "2023-11-14 22:13:20.123456"
        );
        assert_eq!(ts(Kind::Timestamp, -1), "1969-12-31 23:59:59.999999");
        // 0044-03-15 12:00:00 BC is 44 BC, astronomical year -43.
        let ides = (civil_days(-43, 3, 15) * 86_400 + 12 * 3600) * 1_000_000;
        assert_eq!(ts(Kind::TimestampTz, ides), "0044-03-15 12:00:00+00 BC");
        // The latest timestamp a Parquet archive holds (i64::MAX is 'infinity').
        assert_eq!(
            ts(Kind::Timestamp, i64::MAX - 1),
            "294247-01-10 04:00:54.775806"
        );
        assert_eq!(ts(Kind::TimestampTz, i64::MAX), "infinity");
        assert_eq!(ts(Kind::Timestamp, i64::MIN), "-infinity");
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (the inverse, for tests).
    fn civil_days(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    #[test]
    fn civil_dates_round_trip_over_a_wide_range() {
        for days in (-200_000_000i64..200_000_000).step_by(99_991) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(civil_days(y, i64::from(m), i64::from(d)), days);
        }
    }

    #[test]
    fn numbers_and_strings() {
        assert_eq!(
            one(Kind::Int32, Values::Int32(vec![i32::MIN])),
            "-2147483648"
        );
        assert_eq!(
            one(Kind::Int64, Values::Int64(vec![i64::MAX])),
            "9223372036854775807"
        );
        assert_eq!(one(Kind::Bool, Values::Bool(vec![false])), "f");
        let double = |v: f64| one(Kind::Double, Values::Double(vec![v]));
        assert_eq!(double(f64::NAN), "NaN");
        assert_eq!(double(f64::INFINITY), "Infinity");
        assert_eq!(double(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(double(-0.0), "-0e0");
        for v in [0.1, 1e300, 5e-324, std::f64::consts::PI, -123456.789] {
            assert_eq!(double(v).parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
        let float = |v: f32| one(Kind::Float, Values::Float(vec![v]));
        assert_eq!(float(f32::NAN), "NaN");
        for v in [0.1f32, f32::MAX, f32::MIN_POSITIVE, 1e-45] {
            assert_eq!(float(v).parse::<f32>().unwrap().to_bits(), v.to_bits());
        }
        let text = one(
            Kind::Text,
            Values::Bytes(vec![ByteArray::from("a\\b\tc\nd\re \"ü\"")]),
        );
        assert_eq!(text, "a\\\\b\\tc\\nd\\re \"ü\"");
    }

    #[test]
    fn rows_come_in_slices_with_nulls() {
        let columns = [
            Column {
                kind: Kind::Int32,
                defs: vec![1, 0, 1],
                values: Values::Int32(vec![1, 3]),
            },
            Column {
                kind: Kind::Text,
                defs: vec![0, 1, 1],
                values: Values::Bytes(vec![ByteArray::from("b"), ByteArray::from("c")]),
            },
        ];
        let mut rows = TextRows::new(&columns);
        let mut out = Vec::new();
        assert!(rows.write(&columns, &mut out, 1));
        assert_eq!(out, b"1\t\\N\n");
        assert!(!rows.write(&columns, &mut out, usize::MAX));
        assert_eq!(out, b"1\t\\N\n\\N\tb\n3\tc\n");
    }
}
