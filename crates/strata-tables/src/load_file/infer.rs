//! Column types for `--create`, inferred from the values of a CSV or JSON lines file:
//! each column takes the narrowest of `boolean`, `bigint`, `double precision`,
//! `timestamptz` and `text` (`jsonb` for JSON objects and arrays) that every one of its
//! values fits. The tests for "fits" accept only forms PostgreSQL's own input functions
//! read the same way, so a column inferred here never fails to load.

use super::row::Tag;

/// The type of a column, as inferred so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Inferred {
    /// Only NULLs so far.
    Unknown,
    Boolean,
    BigInt,
    Double,
    TimestampTz,
    Jsonb,
    Text,
}

impl Inferred {
    /// The PostgreSQL type to create (a column of NULLs only is text).
    pub fn sql(self) -> &'static str {
        match self {
            Inferred::Unknown | Inferred::Text => "text",
            Inferred::Boolean => "boolean",
            Inferred::BigInt => "bigint",
            Inferred::Double => "double precision",
            Inferred::TimestampTz => "timestamptz",
            Inferred::Jsonb => "jsonb",
        }
    }

    /// The type of a column holding values of both.
    pub fn merge(self, other: Inferred) -> Inferred {
        use Inferred::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Unknown, x) | (x, Unknown) => x,
            (BigInt, Double) | (Double, BigInt) => Double,
            _ => Text,
        }
    }

    /// The type of one value.
    pub fn of(text: &[u8], tag: Tag) -> Inferred {
        match tag {
            Tag::JsonInteger => Inferred::BigInt,
            Tag::JsonFloat => Inferred::Double,
            Tag::JsonBool => Inferred::Boolean,
            Tag::JsonNested => Inferred::Jsonb,
            Tag::JsonString if parse_timestamp(text).is_some() => Inferred::TimestampTz,
            Tag::JsonString => Inferred::Text,
            Tag::Text => classify(text),
        }
    }
}

/// The type of a value in a CSV file.
fn classify(text: &[u8]) -> Inferred {
    if text.eq_ignore_ascii_case(b"true") || text.eq_ignore_ascii_case(b"false") {
        return Inferred::Boolean;
    }
    let Ok(s) = std::str::from_utf8(text) else {
        return Inferred::Text;
    };
    if is_integer(s) {
        return Inferred::BigInt;
    }
    // A digit keeps words Rust's parser takes ("inf", "NaN") as text unless a column
    // of numbers has them.
    if s.bytes().any(|b| b.is_ascii_digit()) && s.parse::<f64>().is_ok() && is_plain_float(s) {
        return Inferred::Double;
    }
    if parse_timestamp(text).is_some() {
        return Inferred::TimestampTz;
    }
    Inferred::Text
}

/// An integer PostgreSQL's `int8in` reads: optional sign, decimal digits, in range.
fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && s.parse::<i64>().is_ok()
}

/// A float in the decimal forms `float8in` reads the same (`1.5`, `-2e10`, `.5`): no
/// words, no hex, no underscores.
fn is_plain_float(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
}

/// Microseconds since 1970-01-01 UTC of an ISO 8601 time as PostgreSQL reads it in a
/// UTC session: `YYYY-MM-DD`, and with `T` or a space, `HH:MM[:SS[.fraction]]` and an
/// optional `Z` or `±HH[[:]MM]` (no offset: UTC). `None` for anything else.
pub fn parse_timestamp(text: &[u8]) -> Option<i64> {
    let num = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        s.iter().try_fold(0u32, |n, d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
    };
    if text.len() < 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(&text[..4])?, num(&text[5..7])?, num(&text[8..10])?);
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let mut micros = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp() * 1_000_000;
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(micros);
    }
    if !matches!(rest[0], b'T' | b't' | b' ') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let (hour, minute) = (num(&rest[1..3])?, num(&rest[4..6])?);
    let mut rest = &rest[6..];
    let mut second = 0;
    let mut fraction = 0i64;
    if rest.first() == Some(&b':') {
        second = num(rest.get(1..3)?)?;
        rest = &rest[3..];
        if rest.first() == Some(&b'.') {
            let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            let mut scaled = 0i64;
            for (i, d) in rest[1..=digits].iter().enumerate() {
                if i < 6 {
                    scaled = scaled * 10 + i64::from(d - b'0');
                }
            }
            // PostgreSQL rounds to microseconds; beyond them only rounding matters.
            for _ in digits..6 {
                scaled *= 10;
            }
            if digits > 6 && rest[7] >= b'5' {
                scaled += 1;
            }
            fraction = scaled;
            rest = &rest[1 + digits..];
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    micros += (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * 1_000_000
        + fraction;
    let offset = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), digits @ ..] => {
            let (h, m) = match digits {
                [a, b] => (num(&[*a, *b])?, 0),
                [a, b, c, d] => (num(&[*a, *b])?, num(&[*c, *d])?),
                [a, b, b':', c, d] => (num(&[*a, *b])?, num(&[*c, *d])?),
                _ => return None,
            };
            if h > 15 || m > 59 {
                return None;
            }
            let seconds = i64::from(h * 3600 + m * 60);
            if *sign == b'+' {
                seconds
            } else {
                -seconds
            }
        }
        _ => return None,
    };
    Some(micros - offset * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[&str]) -> Inferred {
        values
            .iter()
            .map(|v| Inferred::of(v.as_bytes(), Tag::Text))
            .fold(Inferred::Unknown, Inferred::merge)
    }

    #[test]
    fn csv_values_take_the_narrowest_type_that_fits_all() {
        assert_eq!(of(&["1", "-2", "+3"]), Inferred::BigInt);
        assert_eq!(of(&["1", "2.5", "1e3"]), Inferred::Double);
        assert_eq!(of(&["True", "false", "TRUE"]), Inferred::Boolean);
        assert_eq!(
            of(&[
                "2025-01-01",
                "2025-01-01T12:00:00Z",
                "2025-01-01 12:00:00.5+02"
            ]),
            Inferred::TimestampTz
        );
        assert_eq!(of(&["1", "x"]), Inferred::Text);
        assert_eq!(of(&["true", "1"]), Inferred::Text);
        assert_eq!(of(&["2025-01-01", "7"]), Inferred::Text);
        // Beyond bigint: a double (PostgreSQL reads it so); words are text.
        assert_eq!(of(&["9223372036854775808"]), Inferred::Double);
        assert_eq!(of(&["inf", "NaN"]), Inferred::Text);
        assert_eq!(of(&["0x10"]), Inferred::Text);
        assert_eq!(of(&["1_000"]), Inferred::Text);
        assert_eq!(of(&[]), Inferred::Unknown);
        assert_eq!(Inferred::Unknown.sql(), "text");
    }

    #[test]
    fn json_values_keep_their_types() {
        let merged = [(&b"1"[..], Tag::JsonInteger), (b"1.5", Tag::JsonFloat)]
            .iter()
            .map(|(t, tag)| Inferred::of(t, *tag))
            .fold(Inferred::Unknown, Inferred::merge);
        assert_eq!(merged, Inferred::Double);
        // A string of digits stays text: the file said it is a string.
        assert_eq!(Inferred::of(b"12", Tag::JsonString), Inferred::Text);
        assert_eq!(
            Inferred::of(b"2025-03-01T00:00:00Z", Tag::JsonString),
            Inferred::TimestampTz
        );
        assert_eq!(Inferred::of(b"{\"a\":1}", Tag::JsonNested), Inferred::Jsonb);
        assert_eq!(Inferred::Jsonb.merge(Inferred::Text), Inferred::Text);
    }

    #[test]
    fn timestamps_as_postgresql_reads_them_in_utc() {
        let t = |s: &str| parse_timestamp(s.as_bytes());
        assert_eq!(t("1970-01-01"), Some(0));
        assert_eq!(t("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(t("1970-01-01 01:00:00+01"), Some(0));
        assert_eq!(t("1970-01-01 01:30:00+01:30"), Some(0));
        assert_eq!(t("1970-01-01 00:00:00-0100"), Some(3_600_000_000));
        assert_eq!(t("1970-01-01 00:00"), Some(0));
        assert_eq!(t("1970-01-01 00:00:00.25"), Some(250_000));
        assert_eq!(t("1970-01-01 00:00:00.0000015"), Some(2));
        assert_eq!(
            t("2024-02-29T23:59:59.999999Z"),
            Some(1_709_251_199_999_999)
        );
        for bad in [
            "2023-02-29",
            "2025-13-01",
            "2025-01-01T24:00:00",
            "2025-01-01X00:00",
            "2025-01-01 00:00:00+1",
            "2025-01-01 00:00:00.",
            "25-01-01",
            "2025-01-01 00:00:00 UTC",
            "",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
