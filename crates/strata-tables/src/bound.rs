//! Partition bounds as PostgreSQL prints them (`pg_get_expr(relpartbound, oid)`), read for
//! the one thing retention needs: the upper bound of a range partition on a time column.
//!
//! Sessions of the engine run with `TimeZone = UTC`, so `timestamptz` bounds come as
//! `'2025-02-01 00:00:00+00'`; `timestamp` and `date` bounds are taken as UTC. Anything the
//! engine cannot read with certainty is an error, and a table with such a bound is not acted
//! on: guessing a bound is how data inside the window gets dropped.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Where a partition's data ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Upper {
    /// Every row is strictly before this instant.
    Before(DateTime<Utc>),
    /// `MAXVALUE` or `'infinity'`: the partition never expires.
    Unbounded,
}

/// What a partition's bound says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// A range partition `FROM (..) TO (..)`.
    Range { upper: Upper },
    /// The default partition: rows of any time may be in it, so it never expires.
    Default,
}

/// A bound the engine cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparsable partition bound {text:?}: {why}")]
pub struct BoundError {
    pub text: String,
    pub why: String,
}

/// Reads a bound expression.
pub fn parse_bound(text: &str) -> Result<Bound, BoundError> {
    let err = |why: &str| BoundError {
        text: text.to_string(),
        why: why.to_string(),
    };
    let trimmed = text.trim();
    if trimmed == "DEFAULT" {
        return Ok(Bound::Default);
    }
    let Some(rest) = trimmed.strip_prefix("FOR VALUES FROM (") else {
        return Err(err(
            "only range partitions (FOR VALUES FROM .. TO ..) have a time to expire on",
        ));
    };
    let Some(to_at) = find_unquoted(rest, ") TO (") else {
        return Err(err("no TO (..) part"));
    };
    let upper_list = rest[to_at + ") TO (".len()..]
        .strip_suffix(')')
        .ok_or_else(|| err("the TO list is not closed"))?;
    let values = split_values(upper_list);
    if values.len() != 1 {
        return Err(err(
            "a range over several columns is not supported; partition on the time column alone",
        ));
    }
    let upper = parse_value(&values[0]).map_err(|why| err(&why))?;
    Ok(Bound::Range { upper })
}

/// Byte offset of `needle` outside single-quoted literals.
fn find_unquoted(text: &str, needle: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        if c == '\'' {
            quoted = !quoted;
        } else if !quoted && text[i..].starts_with(needle) {
            return Some(i);
        }
    }
    None
}

/// `'a', 'b'` into its values (commas inside quotes kept).
fn split_values(list: &str) -> Vec<String> {
    let mut values = vec![String::new()];
    let mut quoted = false;
    for c in list.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                values.last_mut().expect("never empty").push(c);
            }
            ',' if !quoted => values.push(String::new()),
            c => values.last_mut().expect("never empty").push(c),
        }
    }
    values.into_iter().map(|v| v.trim().to_string()).collect()
}

/// One value of a bound list.
fn parse_value(value: &str) -> Result<Upper, String> {
    if value == "MAXVALUE" {
        return Ok(Upper::Unbounded);
    }
    if value == "MINVALUE" {
        return Err("an upper bound of MINVALUE holds no rows".into());
    }
    let Some(literal) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else {
        return Err(format!(
            "{value} is not a time (retention by duration needs a timestamp, timestamptz or date partition key)"
        ));
    };
    let literal = literal.replace("''", "'");
    if literal == "infinity" {
        return Ok(Upper::Unbounded);
    }
    parse_time(&literal)
        .map(Upper::Before)
        .ok_or_else(|| format!("{literal:?} is not a time this engine reads"))
}

/// `2025-01-01 00:00:00+00`, `2025-01-01 00:00:00.5+05:30`, `2025-01-01 00:00:00`,
/// `2025-01-01`.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.ends_with(" BC") {
        return None;
    }
    // An offset of hours only (`+00`, `-05`) as PostgreSQL prints it: make it `+00:00`.
    let bytes = text.as_bytes();
    let normalised = if bytes.len() > 3
        && matches!(bytes[bytes.len() - 3], b'+' | b'-')
        && bytes[bytes.len() - 2..].iter().all(u8::is_ascii_digit)
        && text.len() > 10
    {
        format!("{text}:00")
    } else {
        text.to_string()
    };
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z:%S"] {
        if let Ok(t) = DateTime::parse_from_str(&normalised, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Upper {
        Upper::Before(
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn timestamptz_timestamp_and_date_bounds() {
        let cases = [
            (
                "FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2025-02-01 00:00:00+00')",
                at("2025-02-01T00:00:00Z"),
            ),
            (
                "FOR VALUES FROM ('2025-01-01 00:00:00') TO ('2025-02-01 12:30:00.25')",
                at("2025-02-01T12:30:00.25Z"),
            ),
            (
                "FOR VALUES FROM ('2025-01-01') TO ('2025-02-01')",
                at("2025-02-01T00:00:00Z"),
            ),
            (
                "FOR VALUES FROM ('2025-01-01 00:00:00+05:30') TO ('2025-02-01 00:00:00+05:30')",
                at("2025-01-31T18:30:00Z"),
            ),
            (
                "FOR VALUES FROM (MINVALUE) TO ('2025-02-01 00:00:00-03')",
                at("2025-02-01T03:00:00Z"),
            ),
            (
                "FOR VALUES FROM ('2025-01-01') TO (MAXVALUE)",
                Upper::Unbounded,
            ),
            (
                "FOR VALUES FROM ('2025-01-01') TO ('infinity')",
                Upper::Unbounded,
            ),
        ];
        for (text, upper) in cases {
            assert_eq!(parse_bound(text), Ok(Bound::Range { upper }), "{text}");
        }
        assert_eq!(parse_bound("DEFAULT"), Ok(Bound::Default));
    }

    #[test]
    fn bounds_that_cannot_be_trusted_are_errors() {
        for text in [
            "FOR VALUES IN ('a', 'b')",
            "FOR VALUES WITH (modulus 4, remainder 0)",
            "FOR VALUES FROM (0) TO (100)",
            "FOR VALUES FROM ('2025-01-01', 1) TO ('2025-02-01', 1)",
            "FOR VALUES FROM ('x') TO ('not a time')",
            "FOR VALUES FROM ('0044-03-14') TO ('0044-03-15 BC')",
            "FOR VALUES FROM ('2025-01-01') TO (MINVALUE)",
            "FOR VALUES FROM ('2025-01-01')",
        ] {
            let err = parse_bound(text).unwrap_err();
            assert!(
                err.to_string().starts_with("unparsable partition bound"),
                "{err}"
            );
        }
    }
}
