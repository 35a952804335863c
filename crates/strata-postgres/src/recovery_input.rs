//! Recovery targets as users give them: one check for every way in (the CLI's flags,
//! `POST /api/v1/restores`, the node API), before anything is written. A target ends up
//! in `postgresql.auto.conf`, so what is not a timestamp, a WAL position or a transaction
//! id (a newline, a quote, a NUL, a megabyte) is refused here with a one-line reason.

use crate::recovery::{RecoveryPlan, Target, TargetAction};

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
            Target::Latest | Target::Gap | Target::Immediate => Ok(()),
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

impl Target {
    /// The target of a command line's options, which allow at most one of them: a
    /// time, else a WAL position, else a transaction id, else `immediate`, else the
    /// latest state.
    pub fn from_options(
        time: Option<String>,
        lsn: Option<String>,
        xid: Option<String>,
        immediate: bool,
    ) -> Target {
        match (time, lsn, xid) {
            (Some(t), _, _) => Target::Time(t),
            (None, Some(l), _) => Target::Lsn(l),
            (None, None, Some(x)) => Target::Xid(x),
            (None, None, None) if immediate => Target::Immediate,
            (None, None, None) => Target::Latest,
        }
    }
}

impl RecoveryPlan {
    /// Checks the plan's target (the action is one of three words by its type).
    pub fn check(&self) -> Result<(), BadTarget> {
        self.target.check()
    }

    /// The plan a restore asks for, checked; `None` when it is the default (replay all
    /// WAL, promote, start), which a restore then leaves to the node's own settings.
    pub fn unless_default(
        target: Target,
        action: TargetAction,
        start: bool,
        no_archive: bool,
    ) -> Result<Option<RecoveryPlan>, BadTarget> {
        target.check()?;
        let default =
            target == Target::Latest && action == TargetAction::Promote && start && !no_archive;
        Ok((!default).then_some(RecoveryPlan {
            target,
            action,
            start,
            no_archive,
        }))
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

    /// The first option given wins; the defaults make no plan; a bad target is refused
    /// before any plan exists.
    #[test]
    fn options_make_a_plan_only_when_they_differ_from_the_defaults() {
        let time = || Some("2026-11-23 05:00:00+00".to_string());
        let lsn = || Some("0/3000060".to_string());
        assert_eq!(
            Target::from_options(time(), lsn(), None, true),
            Target::Time(time().unwrap())
        );
        assert_eq!(
            Target::from_options(None, lsn(), Some("7".into()), true),
            Target::Lsn(lsn().unwrap())
        );
        assert_eq!(
            Target::from_options(None, None, Some("7".into()), true),
            Target::Xid("7".into())
        );
        assert_eq!(
            Target::from_options(None, None, None, true),
            Target::Immediate
        );
        let latest = || Target::from_options(None, None, None, false);
        assert_eq!(latest(), Target::Latest);
        let promote = TargetAction::Promote;
        assert_eq!(
            RecoveryPlan::unless_default(latest(), promote, true, false),
            Ok(None)
        );
        let paused = RecoveryPlan::unless_default(latest(), TargetAction::Pause, true, false);
        assert_eq!(paused.unwrap().unwrap().action, TargetAction::Pause);
        let unstarted = RecoveryPlan::unless_default(latest(), promote, false, false);
        assert!(!unstarted.unwrap().unwrap().start);
        let bad = Target::Xid("1; drop".into());
        assert!(RecoveryPlan::unless_default(bad, promote, true, false).is_err());
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
