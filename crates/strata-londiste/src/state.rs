//! A table's `merge_state` in `londiste.table_info`, the state machine of the initial copy
//! shared with Python Londiste: NULL (waiting for a copy), `in-copy`, `catching-up`,
//! `wanna-sync:TICK`, `do-sync:TICK`, `ok`. The text forms are exactly Python's so either
//! worker can resume a copy the other started.

use serde::Serializer;

/// One table's replication state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableState {
    /// Registered, the copy has not started (`merge_state` NULL).
    Missing,
    /// The copy task is copying.
    InCopy,
    /// The copy task applies this table's events until it has caught up.
    CatchingUp,
    /// The copy task has caught up and asks the main worker to stop at this tick.
    WannaSync(i64),
    /// The main worker waits at this tick; the copy task finishes up to it.
    DoSync(i64),
    /// Replayed by the main worker.
    Ok,
}

/// A `merge_state` this crate cannot read: someone wrote `londiste.table_info` by hand, or
/// a newer Londiste added a state. The table needs an operator, so the caller stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeStateError {
    /// `wanna-sync:` or `do-sync:` followed by something that is not a tick number.
    #[error("bad tick in merge_state {text:?}")]
    BadTick {
        /// The whole `merge_state`.
        text: String,
    },
    /// A state Python Londiste 3 does not write.
    #[error("unknown merge_state {text:?}")]
    Unknown {
        /// The whole `merge_state`.
        text: String,
    },
}

impl TableState {
    /// Parses `merge_state` (NULL is `None`).
    pub fn parse(text: Option<&str>) -> Result<TableState, MergeStateError> {
        let Some(text) = text else {
            return Ok(TableState::Missing);
        };
        let tick = |t: &str| {
            t.parse::<i64>().map_err(|_| MergeStateError::BadTick {
                text: text.to_string(),
            })
        };
        match text {
            "in-copy" => Ok(TableState::InCopy),
            "catching-up" => Ok(TableState::CatchingUp),
            "ok" => Ok(TableState::Ok),
            _ => {
                if let Some(t) = text.strip_prefix("wanna-sync:") {
                    Ok(TableState::WannaSync(tick(t)?))
                } else if let Some(t) = text.strip_prefix("do-sync:") {
                    Ok(TableState::DoSync(tick(t)?))
                } else {
                    Err(MergeStateError::Unknown {
                        text: text.to_string(),
                    })
                }
            }
        }
    }

    /// The `merge_state` text (NULL is `None`).
    pub fn to_text(&self) -> Option<String> {
        match self {
            TableState::Missing => None,
            TableState::InCopy => Some("in-copy".into()),
            TableState::CatchingUp => Some("catching-up".into()),
            TableState::WannaSync(t) => Some(format!("wanna-sync:{t}")),
            TableState::DoSync(t) => Some(format!("do-sync:{t}")),
            TableState::Ok => Some("ok".into()),
        }
    }

    /// Whether a copy task owns the table now (its copy has started and is not done).
    pub fn in_copy_phase(&self) -> bool {
        matches!(
            self,
            TableState::InCopy
                | TableState::CatchingUp
                | TableState::WannaSync(_)
                | TableState::DoSync(_)
        )
    }
}

impl std::fmt::Display for TableState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.to_text().as_deref().unwrap_or("-"))
    }
}

/// Serializes a state as its `merge_state` text (null for Missing).
pub fn serialize_state<S: Serializer>(state: &TableState, s: S) -> Result<S::Ok, S::Error> {
    match state.to_text() {
        Some(t) => s.serialize_str(&t),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_in_python_text_form() {
        for s in [
            TableState::Missing,
            TableState::InCopy,
            TableState::CatchingUp,
            TableState::WannaSync(42),
            TableState::DoSync(7),
            TableState::Ok,
        ] {
            assert_eq!(TableState::parse(s.to_text().as_deref()).unwrap(), s);
        }
        assert_eq!(
            TableState::parse(Some("wanna-sync:12")).unwrap(),
            TableState::WannaSync(12)
        );
        assert!(TableState::parse(Some("do-sync:x")).is_err());
        assert!(TableState::parse(Some("weird")).is_err());
        assert!(TableState::CatchingUp.in_copy_phase() && !TableState::Ok.in_copy_phase());
    }
}
