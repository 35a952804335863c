//! Recovery targets as users give them: one check for every way in (the CLI's flags,
//! `POST /api/v1/restores`, the node API), before anything is written. A target ends up
//! in `postgresql.auto.conf`, so what is not a timestamp, a WAL position or a transaction
//! id (a newline, a quote, a NUL, a megabyte) is refused here with a one-line reason.

use crate::recovery::{RecoveryPlan, Target};

/// Why a recovery target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTarget(pub String);

/// The longest target time taken (`2026-11-23 05:00:00.123456+05:30` is 32; a zone name
/// such as `America/Argentina/ComodRivadavia` adds at most 33).
const MAX_TIME: usize = 80;

/// `text` for an error message: escaped, and cut short when long.
fn shown(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

impl Target {
    /// Checks the target's text: a time is digits, letters, spaces and `: + - . / _`
    /// (PostgreSQL parses it when recovery starts); an LSN is `HEX/HEX`; an xid is digits.
    pub fn check(&self) -> Result<(), BadTarget> {
        match self {
            Target::Latest | Target::Immediate => Ok(()),
            Target::Time(t) => {
                let ok = !t.is_empty()
                    && t.len() <= MAX_TIME
                    && t.bytes().any(|b| b.is_ascii_digit())
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b" :+-./_".contains(&b));
                ok.then_some(()).ok_or_else(|| {
                    BadTarget(format!(
                        "target time {} is not a timestamp such as 2026-11-23 05:00:00+00",
                        shown(t)
                    ))
                })
            }
            Target::Lsn(l) => {
                let ok = l.len() <= 17
                    && l.bytes().all(|b| b.is_ascii_hexdigit() || b == b'/')
                    && crate::walname::Lsn::parse(l).is_some();
                ok.then_some(()).ok_or_else(|| {
                    BadTarget(format!(
                        "target LSN {} is not a WAL position such as 0/3000060",
                        shown(l)
                    ))
                })
            }
            Target::Xid(x) => {
                let ok = !x.is_empty() && x.len() <= 20 && x.bytes().all(|b| b.is_ascii_digit());
                ok.then_some(()).ok_or_else(|| {
                    BadTarget(format!("target xid {} is not a transaction id", shown(x)))
                })
            }
        }
    }
}

impl RecoveryPlan {
    /// Checks the plan's target (the action is one of three words by its type).
    pub fn check(&self) -> Result<(), BadTarget> {
        self.target.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_as_postgresql_writes_them_pass() {
        for target in [
            Target::Latest,
            Target::Immediate,
            Target::Time("2026-11-23 05:00:00+00".into()),
            Target::Time("2026-11-23T05:00:00.123Z".into()),
            Target::Time("2026-11-23 05:00:00 Europe/Berlin".into()),
            Target::Lsn("0/3000060".into()),
            Target::Lsn("FFFFFFFF/FFFFFFFF".into()),
            Target::Xid("4294967295".into()),
        ] {
            assert_eq!(target.check(), Ok(()), "{target:?}");
        }
    }

    #[test]
    fn hostile_targets_are_refused() {
        for target in [
            Target::Time("2026-11-23 05:00:00+00\nrestore_command = 'sh'".into()),
            Target::Time("2026-11-23 05:00:00+00'".into()),
            Target::Time("2026-11-23\0".into()),
            Target::Time("2026-11-23\\".into()),
            Target::Time("9".repeat(1 << 20)),
            Target::Time(String::new()),
            Target::Lsn("0/3000060\n".into()),
            Target::Lsn(" 0/3000060".into()),
            Target::Lsn("0/3000060'".into()),
            Target::Lsn("1/2/3".into()),
            Target::Xid("+12".into()),
            Target::Xid("12\n".into()),
            Target::Xid(String::new()),
        ] {
            let err = target.check().unwrap_err();
            assert!(!err.0.contains('\n') && err.0.len() < 200, "{err}");
        }
    }
}
