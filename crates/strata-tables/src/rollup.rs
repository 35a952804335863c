//! Downsampling: aggregating a table into a coarser one (`date_bin` buckets, upserted), with
//! a watermark per policy so each run only adds what is new, and a lookback so rows that
//! arrive late still land in their bucket.
//!
//! A level is one `downsample` policy: source table and time column, the rollup table, the
//! bucket width, the grouping columns and the aggregates. Levels cascade by giving the
//! rollup table a `downsample` policy of its own (raw -> 1 h -> 1 d); each has its own
//! watermark, and a level never reads past the watermark of the level that fills its
//! source, so it never aggregates buckets that are still incomplete.
//!
//! The rollup table needs the time column, the grouping columns, one column per aggregate,
//! and a unique index on (time column, grouping columns): that is what `ON CONFLICT`
//! updates. Recomputing a window from the source replaces its buckets, so a run can always
//! run again. Only whole buckets are replaced: the source's oldest bucket may have lost
//! rows to removal (a row delete or a partition edge inside it), so unless its oldest row
//! is on a bucket's start, that bucket is only written where the rollup table has no row
//! for it yet; a reset or a longer lookback never overwrites a complete bucket with a
//! partial one.

use crate::name::{unquote, TableName};
use serde::{Deserialize, Serialize};
use strata_pgclient::quote_ident;

/// The aggregate functions a rollup may use. Each is one that cascades: a coarser level
/// takes `min` of mins, `max` of maxes, `sum` of sums and `sum` of counts (an average is
/// `sum / count` at query time, or `avg` on one level only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RollupFunc))]
#[serde(rename_all = "lowercase")]
pub enum Func {
    /// The mean; does not cascade (use `sum` and `count` for a coarser level).
    Avg,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The total.
    Sum,
    /// The number of rows (`count(*)` without a column).
    Count,
}

impl Func {
    fn parse(text: &str) -> Option<Func> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "avg" | "mean" => Func::Avg,
            "min" => Func::Min,
            "max" => Func::Max,
            "sum" => Func::Sum,
            "count" => Func::Count,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Func::Avg => "avg",
            Func::Min => "min",
            Func::Max => "max",
            Func::Sum => "sum",
            Func::Count => "count",
        }
    }
}

/// One aggregate: `FUNC(column)` (or `count(*)`) into column `into` of the rollup table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RollupAggregate))]
pub struct Aggregate {
    /// The aggregate function.
    pub func: Func,
    /// `None`: `count(*)`.
    pub column: Option<String>,
    /// The column of the rollup table that takes the value.
    pub into: String,
}

impl Aggregate {
    /// `FUNC:COLUMN[=INTO]` or `count[=INTO]`: `avg:value` goes into `value_avg`, `count`
    /// into `count`, `sum:count=count` (the next level's count) into `count`.
    pub fn parse(text: &str) -> Result<Aggregate, RollupError> {
        let (spec, into) = match text.split_once('=') {
            Some((spec, into)) => (spec, Some(name(into)?)),
            None => (text, None),
        };
        let (func, column) = match spec.split_once(':') {
            Some((func, column)) if column.trim() == "*" => (func, Some("*".to_string())),
            Some((func, column)) => (func, Some(name(column)?)),
            None => (spec, None),
        };
        let func = Func::parse(func).ok_or_else(|| RollupError::UnknownAggregate {
            func: func.to_string(),
            text: text.to_string(),
        })?;
        let column = column.filter(|c| !(func == Func::Count && c == "*"));
        if column.is_none() && func != Func::Count {
            return Err(RollupError::NeedsColumn(func.as_str()));
        }
        let into = into.unwrap_or_else(|| match &column {
            Some(c) => format!("{c}_{}", func.as_str()),
            None => "count".to_string(),
        });
        Ok(Aggregate { func, column, into })
    }

    /// The SQL expression, e.g. `avg("value")`.
    fn expression(&self) -> String {
        match &self.column {
            Some(c) => format!("{}({})", self.func.as_str(), quote_ident(c)),
            None => "count(*)".to_string(),
        }
    }
}

/// A column name from an aggregate spec (quotes allowed for odd names).
fn name(text: &str) -> Result<String, RollupError> {
    unquote(text.trim()).map_err(|why| RollupError::BadName {
        why,
        text: text.to_string(),
    })
}

/// A rollup (`--aggregate`, `--bucket`, `--lookback` of a `downsample` policy) that makes
/// no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollupError {
    /// A column name of an aggregate that cannot be read.
    #[error("{why} in aggregate {text:?}")]
    BadName {
        /// What is wrong with the name.
        why: &'static str,
        /// The name as given.
        text: String,
    },
    /// An aggregate function this engine does not roll up.
    #[error("unknown aggregate {func:?} in {text:?}: use avg, min, max, sum or count")]
    UnknownAggregate {
        /// The function as given.
        func: String,
        /// The aggregate as given.
        text: String,
    },
    /// An aggregate other than `count` without a column.
    #[error("{0} needs a column: {0}:COLUMN")]
    NeedsColumn(&'static str),
    /// A bucket that is not a positive duration.
    #[error("the bucket (--bucket) must be a positive duration such as 1h")]
    BadBucket,
    /// A negative lookback.
    #[error("--lookback cannot be negative")]
    NegativeLookback,
    /// A rollup without an aggregate.
    #[error("downsample needs at least one --aggregate (avg:COLUMN, min:, max:, sum:, count)")]
    NoAggregate,
    /// An empty column name among the rollup table's columns.
    #[error("a column name is empty")]
    EmptyColumn,
    /// Two values for one column of the rollup table.
    #[error("column {column:?} of {into} would be written twice")]
    WrittenTwice {
        /// The column.
        column: String,
        /// The rollup table.
        into: TableName,
    },
}

/// What a `downsample` policy aggregates into, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rollup {
    /// The coarser table.
    pub into: TableName,
    /// Bucket width in seconds (`date_bin` stride, buckets aligned to the Unix epoch).
    pub bucket_secs: i64,
    /// How far before the watermark each run recomputes, for rows that arrive late
    /// (rounded up to whole buckets).
    pub lookback_secs: i64,
    /// Columns kept as they are (the series' identity: host, sensor, ...).
    pub group_by: Vec<String>,
    /// What each bucket holds, beside its time and the group-by columns.
    pub aggregates: Vec<Aggregate>,
}

impl Rollup {
    /// Checks what a rollup needs.
    pub fn validate(&self, column: &str) -> Result<(), RollupError> {
        if self.bucket_secs <= 0 {
            return Err(RollupError::BadBucket);
        }
        if self.lookback_secs < 0 {
            return Err(RollupError::NegativeLookback);
        }
        if self.aggregates.is_empty() {
            return Err(RollupError::NoAggregate);
        }
        let mut outputs: Vec<&str> = vec![column];
        outputs.extend(self.group_by.iter().map(String::as_str));
        outputs.extend(self.aggregates.iter().map(|a| a.into.as_str()));
        for (i, name) in outputs.iter().enumerate() {
            if name.is_empty() {
                return Err(RollupError::EmptyColumn);
            }
            if outputs[..i].contains(name) {
                return Err(RollupError::WrittenTwice {
                    column: name.to_string(),
                    into: self.into.clone(),
                });
            }
        }
        Ok(())
    }

    /// The lookback rounded up to whole buckets.
    pub fn lookback_buckets_secs(&self) -> i64 {
        // Both come from parsed durations (at most `MAX_SECONDS`); clamped all the same,
        // so a policy row from an older strata cannot overflow the arithmetic below.
        let b = self.bucket_secs.clamp(1, crate::duration::MAX_SECONDS);
        let lookback = self.lookback_secs.clamp(0, crate::duration::MAX_SECONDS);
        (lookback + b - 1) / b * b
    }

    /// The `INSERT ... SELECT ... ON CONFLICT DO UPDATE` of one window of `source`.
    /// Parameters: `$1` the bucket width as text (`3600 seconds`), `$2` the window's start
    /// (timestamptz or NULL for "from the beginning"), `$3` its end (exclusive). Every
    /// identifier is quoted; no value is in the text.
    pub fn upsert_sql(&self, source: &TableName, column: &str) -> String {
        self.write_sql(source, column, true)
    }

    /// As [`Rollup::upsert_sql`], but a bucket (of a series) the rollup table already has
    /// is left as it is (`ON CONFLICT DO NOTHING`): for the oldest bucket of a source that
    /// may have lost its first rows.
    pub fn insert_missing_sql(&self, source: &TableName, column: &str) -> String {
        self.write_sql(source, column, false)
    }

    /// The oldest source row's bucket and the first bucket known to be whole: the same
    /// when that row is on a bucket's start (the rows before it that were removed were all
    /// in earlier buckets), else the next bucket (the oldest may have lost rows). NULLs
    /// for an empty table. `$1` the bucket width as text; RFC 3339 text in the session's
    /// time zone.
    pub fn first_buckets_sql(&self, source: &TableName, column: &str) -> String {
        format!(
            "SELECT to_json(b) #>> '{{}}', to_json(CASE WHEN m = b THEN b ELSE b + $1::text::interval END) #>> '{{}}' \
             FROM (SELECT min({time})::timestamptz AS m FROM {source}) s, \
             LATERAL (SELECT date_bin($1::text::interval, s.m, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS b) d",
            time = quote_ident(column),
            source = source.quoted(),
        )
    }

    fn write_sql(&self, source: &TableName, column: &str, replace: bool) -> String {
        let time = quote_ident(column);
        let groups: Vec<String> = self.group_by.iter().map(|g| quote_ident(g)).collect();
        let mut targets = vec![time.clone()];
        targets.extend(groups.iter().cloned());
        targets.extend(self.aggregates.iter().map(|a| quote_ident(&a.into)));
        let mut selected = vec![format!(
            "date_bin($1::text::interval, {time}::timestamptz, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
        )];
        selected.extend(groups.iter().cloned());
        selected.extend(self.aggregates.iter().map(Aggregate::expression));
        let group_positions: Vec<String> = (1..=1 + groups.len()).map(|i| i.to_string()).collect();
        let mut conflict = vec![time.clone()];
        conflict.extend(groups.iter().cloned());
        let updates: Vec<String> = self
            .aggregates
            .iter()
            .map(|a| {
                let c = quote_ident(&a.into);
                format!("{c} = EXCLUDED.{c}")
            })
            .collect();
        let action = if replace {
            format!("DO UPDATE SET {}", updates.join(", "))
        } else {
            "DO NOTHING".to_string()
        };
        format!(
            "INSERT INTO {into} ({targets}) SELECT {selected} FROM {source} \
             WHERE {time} < $3::text::timestamptz AND ($2::text IS NULL OR {time} >= $2::text::timestamptz) \
             GROUP BY {positions} ON CONFLICT ({conflict}) {action}",
            into = self.into.quoted(),
            targets = targets.join(", "),
            selected = selected.join(", "),
            source = source.quoted(),
            positions = group_positions.join(", "),
            conflict = conflict.join(", "),
        )
    }

    /// One line for listings: `into x.y every 1h by host: avg(value), count(*)`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "into {} every {}",
            self.into,
            crate::duration::Retention::After(self.bucket_secs)
        );
        if !self.group_by.is_empty() {
            text.push_str(&format!(" by {}", self.group_by.join(", ")));
        }
        let aggregates: Vec<String> = self
            .aggregates
            .iter()
            .map(|a| format!("{} as {}", a.expression(), a.into))
            .collect();
        text.push_str(&format!(": {}", aggregates.join(", ")));
        if self.lookback_secs > 0 {
            text.push_str(&format!(
                ", lookback {}",
                crate::duration::Retention::After(self.lookback_secs)
            ));
        }
        text
    }
}

/// Floors `secs` (Unix seconds) to the start of its bucket.
pub fn floor_to_bucket(secs: i64, bucket: i64) -> i64 {
    secs.div_euclid(bucket.max(1)) * bucket.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_parse_with_default_and_explicit_targets() {
        let a = Aggregate::parse("avg:value").unwrap();
        assert_eq!(
            (a.func, a.column.as_deref(), a.into.as_str()),
            (Func::Avg, Some("value"), "value_avg")
        );
        let c = Aggregate::parse("count").unwrap();
        assert_eq!(
            (c.func, c.column, c.into.as_str()),
            (Func::Count, None, "count")
        );
        let s = Aggregate::parse("sum:count=count").unwrap();
        assert_eq!(
            (s.func, s.column.as_deref(), s.into.as_str()),
            (Func::Sum, Some("count"), "count")
        );
        let q = Aggregate::parse("max:\"odd col\"=\"max é\"").unwrap();
        assert_eq!(
            (q.column.as_deref(), q.into.as_str()),
            (Some("odd col"), "max é")
        );
        assert!(Aggregate::parse("median:value").is_err());
        assert!(Aggregate::parse("avg").is_err());
        assert!(Aggregate::parse("avg:").is_err());
        assert!(Aggregate::parse("avg:value=").is_err());
    }

    fn rollup() -> Rollup {
        Rollup {
            into: TableName::new("metrics", "hourly"),
            bucket_secs: 3600,
            lookback_secs: 5400,
            group_by: vec!["host".into()],
            aggregates: vec![
                Aggregate::parse("min:value").unwrap(),
                Aggregate::parse("count").unwrap(),
            ],
        }
    }

    #[test]
    fn upsert_sql_is_quoted_and_binds_every_value() {
        let sql = rollup().upsert_sql(&TableName::new("metrics", "raw"), "ts");
        assert_eq!(
            sql,
            "INSERT INTO \"metrics\".\"hourly\" (\"ts\", \"host\", \"value_min\", \"count\") \
             SELECT date_bin($1::text::interval, \"ts\"::timestamptz, TIMESTAMPTZ '1970-01-01 00:00:00+00'), \"host\", min(\"value\"), count(*) \
             FROM \"metrics\".\"raw\" WHERE \"ts\" < $3::text::timestamptz AND ($2::text IS NULL OR \"ts\" >= $2::text::timestamptz) \
             GROUP BY 1, 2 ON CONFLICT (\"ts\", \"host\") DO UPDATE SET \"value_min\" = EXCLUDED.\"value_min\", \"count\" = EXCLUDED.\"count\""
        );
        let missing = rollup().insert_missing_sql(&TableName::new("metrics", "raw"), "ts");
        assert!(
            missing.ends_with("GROUP BY 1, 2 ON CONFLICT (\"ts\", \"host\") DO NOTHING"),
            "{missing}"
        );
        let mut hostile = rollup();
        hostile.group_by = vec!["h\"); DROP TABLE x; --".into()];
        let sql = hostile.upsert_sql(&TableName::new("s", "t"), "ts");
        assert!(sql.contains("\"h\"\"); DROP TABLE x; --\""), "{sql}");
    }

    #[test]
    fn validation_and_lookback_rounding() {
        let r = rollup();
        assert!(r.validate("ts").is_ok());
        assert_eq!(r.lookback_buckets_secs(), 7200);
        let mut twice = r.clone();
        twice.group_by.push("count".into());
        assert!(twice
            .validate("ts")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let mut none = r.clone();
        none.aggregates.clear();
        assert!(none.validate("ts").is_err());
        let mut zero = r;
        zero.bucket_secs = 0;
        assert!(zero.validate("ts").is_err());
        assert_eq!(floor_to_bucket(7199, 3600), 3600);
        assert_eq!(floor_to_bucket(-1, 3600), -3600);
    }
}
