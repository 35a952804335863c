//! Partition bounds as PostgreSQL prints them (`pg_get_expr(relpartbound, oid)`), read for
//! what retention needs: the upper bound of a range partition on a time column (when its
//! data expires), its lower bound (whether its period has begun, for the floor), and the
//! two values as SQL again (to recreate a partition when an archive is loaded).
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

/// Where a partition's data begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lower {
    /// `MINVALUE`, `'-infinity'` or a date before the common era: it began long ago.
    Unbounded,
    /// Every row is at or after this instant.
    From(DateTime<Utc>),
}

/// What a partition's bound says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// A range partition `FROM (..) TO (..)`.
    Range {
        /// Where its data begins (`FROM`).
        lower: Lower,
        /// Where its data ends (`TO`).
        upper: Upper,
    },
    /// The default partition: rows of any time may be in it, so it never expires.
    Default,
}

/// A bound the engine cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparsable partition bound {text:?}: {why}")]
pub struct BoundError {
    /// The bound as PostgreSQL printed it.
    pub text: String,
    /// What could not be read in it.
    pub why: String,
}

/// Reads a bound expression.
pub fn parse_bound(text: &str) -> Result<Bound, BoundError> {
    if text.trim() == "DEFAULT" {
        return Ok(Bound::Default);
    }
    let (lower, upper) = range_values(text)?;
    let upper = parse_upper(text, &upper)?;
    let lower = parse_lower(text, &lower)?;
    Ok(Bound::Range { lower, upper })
}

/// The two values of a one-column range bound as SQL, each `MINVALUE`, `MAXVALUE` or a
/// single-quoted time literal, checked to be nothing else: what `CREATE TABLE ... PARTITION
/// OF ... FOR VALUES FROM (lower) TO (upper)` takes to recreate the partition. A bound read
/// from an archive's manifest is untrusted text, so no other form passes.
pub fn range_sql(text: &str) -> Result<(String, String), BoundError> {
    let err = |why: String| BoundError {
        text: text.to_string(),
        why,
    };
    let (lower, upper) = range_values(text)?;
    let mut out = Vec::with_capacity(2);
    for value in [lower, upper] {
        match value.as_str() {
            "MINVALUE" | "MAXVALUE" => out.push(value),
            _ => {
                let literal = literal_of(text, &value)?;
                let known = matches!(literal.as_str(), "infinity" | "-infinity")
                    || parse_time(&literal).is_some()
                    || is_bc_time(&literal);
                if !known
                    || !literal
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b" -:.+".contains(&b))
                {
                    return Err(err(format!("{value} is not a time literal")));
                }
                out.push(format!("'{literal}'"));
            }
        }
    }
    let upper = out.pop().expect("two values");
    let lower = out.pop().expect("two values");
    Ok((lower, upper))
}

/// The lower and upper value texts of `FOR VALUES FROM (lower) TO (upper)` over one column.
fn range_values(text: &str) -> Result<(String, String), BoundError> {
    let err = |why: &str| BoundError {
        text: text.to_string(),
        why: why.to_string(),
    };
    let trimmed = text.trim();
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
    let lower_list = &rest[..to_at];
    let uppers = split_values(upper_list);
    let lowers = split_values(lower_list);
    if uppers.len() != 1 || lowers.len() != 1 {
        return Err(err(
            "a range over several columns is not supported; partition on the time column alone",
        ));
    }
    Ok((lowers[0].clone(), uppers[0].clone()))
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

/// The error of bound `text`: `why` it cannot be used.
fn unusable(text: &str, why: impl Into<String>) -> BoundError {
    BoundError {
        text: text.to_string(),
        why: why.into(),
    }
}

/// The text inside a single-quoted value (quotes doubled inside undone) of bound `text`.
fn literal_of(text: &str, value: &str) -> Result<String, BoundError> {
    value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .map(|literal| literal.replace("''", "'"))
        .ok_or_else(|| {
            unusable(text, format!(
                "{value} is not a time (retention by duration needs a timestamp, timestamptz or date partition key)"
            ))
        })
}

/// The upper value of bound `text`.
fn parse_upper(text: &str, value: &str) -> Result<Upper, BoundError> {
    if value == "MAXVALUE" {
        return Ok(Upper::Unbounded);
    }
    if value == "MINVALUE" {
        return Err(unusable(text, "an upper bound of MINVALUE holds no rows"));
    }
    let literal = literal_of(text, value)?;
    if literal == "infinity" {
        return Ok(Upper::Unbounded);
    }
    parse_time(&literal)
        .map(Upper::Before)
        .ok_or_else(|| unusable(text, format!("{literal:?} is not a time this engine reads")))
}

/// The lower value of bound `text`. A date before the common era reads as "long ago": it
/// only ever says that the partition's period has begun.
fn parse_lower(text: &str, value: &str) -> Result<Lower, BoundError> {
    if value == "MINVALUE" {
        return Ok(Lower::Unbounded);
    }
    if value == "MAXVALUE" {
        return Err(unusable(text, "a lower bound of MAXVALUE holds no rows"));
    }
    let literal = literal_of(text, value)?;
    if literal == "-infinity" || is_bc_time(&literal) {
        return Ok(Lower::Unbounded);
    }
    parse_time(&literal)
        .map(Lower::From)
        .ok_or_else(|| unusable(text, format!("{literal:?} is not a time this engine reads")))
}

/// A time before the common era, as PostgreSQL prints it (`0044-03-15 BC`).
fn is_bc_time(literal: &str) -> bool {
    literal
        .strip_suffix(" BC")
        .is_some_and(|t| parse_time(t).is_some())
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

    fn from(text: &str) -> Lower {
        Lower::From(
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
                from("2025-01-01T00:00:00Z"),
                at("2025-02-01T00:00:00Z"),
            ),
            (
                "FOR VALUES FROM ('2025-01-01 00:00:00') TO ('2025-02-01 12:30:00.25')",
                from("2025-01-01T00:00:00Z"),
                at("2025-02-01T12:30:00.25Z"),
            ),
            (
                "FOR VALUES FROM ('2025-01-01') TO ('2025-02-01')",
                from("2025-01-01T00:00:00Z"),
                at("2025-02-01T00:00:00Z"),
            ),
            (
                "FOR VALUES FROM ('2025-01-01 00:00:00+05:30') TO ('2025-02-01 00:00:00+05:30')",
                from("2024-12-31T18:30:00Z"),
                at("2025-01-31T18:30:00Z"),
            ),
            (
                "FOR VALUES FROM (MINVALUE) TO ('2025-02-01 00:00:00-03')",
                Lower::Unbounded,
                at("2025-02-01T03:00:00Z"),
            ),
            (
                "FOR VALUES FROM ('0044-03-15 BC') TO ('2025-02-01')",
                Lower::Unbounded,
                at("2025-02-01T00:00:00Z"),
            ),
            (
                "FOR VALUES FROM ('-infinity') TO ('2025-02-01')",
                Lower::Unbounded,
                at("2025-02-01T00:00:00Z"),
            ),
            (
                "FOR VALUES FROM ('2025-01-01') TO (MAXVALUE)",
                from("2025-01-01T00:00:00Z"),
                Upper::Unbounded,
            ),
            (
                "FOR VALUES FROM ('2025-01-01') TO ('infinity')",
                from("2025-01-01T00:00:00Z"),
                Upper::Unbounded,
            ),
        ];
        for (text, lower, upper) in cases {
            assert_eq!(
                parse_bound(text),
                Ok(Bound::Range { lower, upper }),
                "{text}"
            );
        }
        assert_eq!(parse_bound("DEFAULT"), Ok(Bound::Default));
    }

    #[test]
    fn range_sql_gives_back_only_checked_values() {
        assert_eq!(
            range_sql("FOR VALUES FROM ('2025-01-01 00:00:00+00') TO (MAXVALUE)").unwrap(),
            (
                "'2025-01-01 00:00:00+00'".to_string(),
                "MAXVALUE".to_string()
            )
        );
        assert_eq!(
            range_sql("FOR VALUES FROM (MINVALUE) TO ('infinity')").unwrap(),
            ("MINVALUE".to_string(), "'infinity'".to_string())
        );
        for hostile in [
            "FOR VALUES FROM ('2025-01-01'); DROP TABLE x; --') TO ('2025-02-01')",
            "FOR VALUES FROM ('2025-01-01') TO ('2025-02-01'); DROP TABLE x",
            "FOR VALUES FROM ('2025-01-01''') TO ('2025-02-01')",
            "FOR VALUES FROM (now()) TO ('2025-02-01')",
            "FOR VALUES FROM ('2025-01-01') TO ('2025-02-01'::date)",
        ] {
            assert!(range_sql(hostile).is_err(), "{hostile}");
        }
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
            "FOR VALUES FROM ('yesterday') TO ('2025-02-01')",
            "FOR VALUES FROM (MAXVALUE) TO ('2025-02-01')",
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
