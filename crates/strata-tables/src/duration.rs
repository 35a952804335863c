//! Retention durations as operators write them: `90d`, `1w`, `12h`, `1y`, `1d12h`, `INF`.
//!
//! Units are fixed lengths (a day is 24 h, a year 365 d) so a policy means the same thing
//! in every time zone and every month; calendar-aware retention is what partition bounds
//! are for.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How long data is kept before a policy acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TableRetention))]
pub enum Retention {
    /// Act on data older than this many seconds.
    After(i64),
    /// Keep forever: the policy never acts (a way to pause a policy without losing it).
    Forever,
}

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparsable duration {text:?}: {why}; use a whole number with a unit s, m, h, d, w or y (90d, 12h, 1y, 1d12h) or INF")]
pub struct DurationError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// The longest duration taken: 10,000 years. Longer is forever in all but name (`INF`
/// says it), and bounded so every time computed from a duration stays inside chrono's
/// range (a duration near `i64::MAX` seconds made planning panic).
pub const MAX_SECONDS: i64 = 10_000 * 365 * 86_400;

const UNITS: [(&str, i64); 6] = [
    ("s", 1),
    ("m", 60),
    ("h", 3600),
    ("d", 86_400),
    ("w", 7 * 86_400),
    ("y", 365 * 86_400),
];

impl Retention {
    /// Reads `90d`, `1w`, `12h`, `30m`, `1y`, compounds such as `1d12h`, or `INF`.
    pub fn parse(text: &str) -> Result<Retention, DurationError> {
        let err = |why| DurationError {
            text: text.to_string(),
            why,
        };
        let trimmed = text.trim();
        if ["inf", "infinite", "forever"].contains(&trimmed.to_ascii_lowercase().as_str()) {
            return Ok(Retention::Forever);
        }
        if trimmed.is_empty() {
            return Err(err("it is empty"));
        }
        let mut total: i64 = 0;
        let mut rest = trimmed;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return Err(err("a number must come before each unit"));
            }
            let number: i64 = rest[..digits]
                .parse()
                .map_err(|_| err("the number is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .len();
            if unit_len == 0 {
                return Err(err("a number has no unit"));
            }
            let unit = &rest[..unit_len];
            let seconds = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, s)| *s)
                .ok_or_else(|| err("unknown unit"))?;
            total = number
                .checked_mul(seconds)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| err("the duration is too long"))?;
            rest = &rest[unit_len..];
        }
        if total == 0 {
            return Err(err("a zero duration would act on current data"));
        }
        if total > MAX_SECONDS {
            return Err(err("it is longer than 10000y (INF keeps data forever)"));
        }
        Ok(Retention::After(total))
    }

    /// The duration in seconds, `None` for forever.
    pub fn seconds(&self) -> Option<i64> {
        match self {
            Retention::After(s) => Some(*s),
            Retention::Forever => None,
        }
    }

    /// The duration as a chrono duration, `None` for forever (and for one longer than
    /// chrono can hold, which only an old policy row could have: it acts on nothing).
    pub fn as_chrono(&self) -> Option<chrono::Duration> {
        self.seconds().and_then(chrono::Duration::try_seconds)
    }
}

impl fmt::Display for Retention {
    /// The shortest exact form: `90d`, `1y`, `1d12h`, `INF`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = match self {
            Retention::Forever => return f.write_str("INF"),
            Retention::After(s) => *s,
        };
        for (name, seconds) in UNITS.iter().rev() {
            // Weeks only when the whole rest is weeks: `10d` reads better than `1w3d`.
            if *name == "w" && left % seconds != 0 {
                continue;
            }
            if left >= *seconds {
                write!(f, "{}{name}", left / seconds)?;
                left %= seconds;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Retention {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Retention::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_forms_parse() {
        assert_eq!(Retention::parse("90d"), Ok(Retention::After(90 * 86_400)));
        assert_eq!(Retention::parse("1w"), Ok(Retention::After(7 * 86_400)));
        assert_eq!(Retention::parse("12h"), Ok(Retention::After(12 * 3600)));
        assert_eq!(Retention::parse("1y"), Ok(Retention::After(365 * 86_400)));
        assert_eq!(Retention::parse("30m"), Ok(Retention::After(1800)));
        assert_eq!(Retention::parse("1d12h"), Ok(Retention::After(36 * 3600)));
        assert_eq!(Retention::parse("INF"), Ok(Retention::Forever));
        assert_eq!(Retention::parse("inf"), Ok(Retention::Forever));
    }

    #[test]
    fn bad_durations_say_what_is_accepted() {
        for bad in [
            "",
            "90",
            "d",
            "90x",
            "-1d",
            "1.5d",
            "0d",
            "99999999999999999y",
            "1d 2h",
        ] {
            let err = Retention::parse(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("90d, 12h, 1y"), "{bad:?}: {text}");
            assert!(text.contains("INF"), "{bad:?}: {text}");
        }
    }

    #[test]
    fn durations_are_bounded_so_time_arithmetic_never_panics() {
        assert_eq!(
            Retention::parse("10000y"),
            Ok(Retention::After(MAX_SECONDS))
        );
        for long in ["10001y", "300000000y", "10000y1s"] {
            let err = Retention::parse(long).unwrap_err().to_string();
            assert!(err.contains("longer than 10000y"), "{long}: {err}");
        }
        let longest = Retention::parse("10000y").unwrap().as_chrono().unwrap();
        assert!(chrono::Utc::now().checked_sub_signed(longest).is_some());
        // A row an older strata stored: no panic, and it acts on nothing.
        assert_eq!(Retention::After(i64::MAX).as_chrono(), None);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "90d", "1w", "12h", "1y", "1d12h", "INF", "10d", "2w", "1y1d", "45s",
        ] {
            let parsed = Retention::parse(text).unwrap();
            assert_eq!(parsed.to_string(), text);
            assert_eq!(Retention::parse(&parsed.to_string()), Ok(parsed));
        }
        assert_eq!(Retention::parse("14d").unwrap().to_string(), "2w");
    }

    #[test]
    fn forever_sorts_after_every_duration() {
        assert!(Retention::After(i64::MAX) < Retention::Forever);
        assert!(Retention::parse("1d").unwrap() < Retention::parse("1w").unwrap());
    }
}
