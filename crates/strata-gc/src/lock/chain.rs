//! The rules of the cluster lock, apart from any storage or clock, so that the code and
//! the model that checks them (`model.rs`) run the same decisions.
//!
//! The lock is one chain of versions, `locks/cluster/<generation>.json`. Its newest
//! generation is the lock's state. Every change (take, renew, take over, release) writes
//! the *next* generation with create-if-absent: that write succeeds only while the
//! generation it follows is still the newest, so it is a compare-and-swap on the lock's
//! version, decided by the storage at the moment the write lands, whatever the order in
//! which writes were issued or how late they arrive.
//!
//! Two more rules make it safe when writes land late:
//! - **Trust from the issue time.** A holder trusts its lock until the *issue* time of its
//!   last successful write plus the TTL minus a margin ([`trust_for`]); everyone else
//!   judges the lock expired only after the `expires_ms` that write carries, issue time
//!   plus the whole TTL. A renewal that returns after the holder's current deadline does
//!   not extend it: the lock is lost ([`renewal_counts`]).
//! - **No slot is reused.** A generation is deleted only when it is not the newest and was
//!   created longer ago than any write can stay in flight ([`MAX_FLIGHT`]); a late write
//!   aimed at a deleted slot was issued before that slot was first created, so it cannot
//!   still be in flight ([`deletable`]).

use super::{LockRecord, LockState};
use std::time::Duration;

/// Where the cluster lock's chain lives.
pub const CHAIN: &str = "locks/cluster/";

/// Where the chain of the garbage collection lock lives: held by whoever rewrites index
/// objects or deletes data (garbage collection, index merges, repairs), never by backups
/// or WAL pushes, which it must not stop.
pub const GC_CHAIN: &str = "locks/gc/";

/// Longer than any storage write stays in flight (the retry budget and request
/// timeouts are far shorter): generations created longer ago than this may be deleted.
pub const MAX_FLIGHT: Duration = Duration::from_secs(15 * 60);

/// [`MAX_FLIGHT`], unless the test-only switch `STRATA_TEST_MAX_FLIGHT_SECS` shortens it
/// (tests that wait out a landing window cannot wait fifteen minutes).
pub fn max_flight() -> Duration {
    static FLIGHT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *FLIGHT.get_or_init(|| {
        strata_util::test_switch("STRATA_TEST_MAX_FLIGHT_SECS")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(MAX_FLIGHT, Duration::from_secs)
    })
}

/// The key of `generation` of the cluster lock.
pub fn key(generation: u64) -> String {
    key_in(CHAIN, generation)
}

/// The key of `generation` of the lock whose chain is `chain`.
pub fn key_in(chain: &str, generation: u64) -> String {
    format!("{chain}{generation:010}.json")
}

/// The generation a key of the cluster lock's chain names.
pub fn parse_key(key: &str) -> Option<u64> {
    parse_key_in(CHAIN, key)
}

/// The generation a key of `chain` names.
pub fn parse_key_in(chain: &str, key: &str) -> Option<u64> {
    key.strip_prefix(chain)?
        .strip_suffix(".json")?
        .parse()
        .ok()
        .filter(|g| *g > 0)
}

/// The share of the TTL kept in reserve: the holder gives its lock up this long before
/// others may judge it expired, for clock-rate differences and writes in flight.
pub fn margin(ttl: Duration) -> Duration {
    ttl / 5
}

/// How long after *issuing* a successful write its holder trusts the lock.
pub fn trust_for(ttl: Duration) -> Duration {
    ttl.saturating_sub(margin(ttl))
}

/// Whether a renewal that returned at `returned` extends a lock trusted until
/// `deadline`: only when it came back in time. One that landed later may have landed
/// after another process judged the lock expired.
pub fn renewal_counts<T: PartialOrd>(returned: T, deadline: T) -> bool {
    returned < deadline
}

/// What a process that wants the lock does, given the newest generation it read.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// A live holder has it.
    Busy,
    /// Write `generation`; `took_over` when that ends an expired (or dead) holder's lock.
    Take {
        /// The generation to write: one past the newest read.
        generation: u64,
        /// Whether writing it ends an expired (or dead) holder's lock.
        took_over: bool,
    },
}

/// The decision at wall-clock `now_ms` on the newest generation read (`None`: the chain
/// is empty). `dead` says whether a holder's process is known to be gone.
pub fn decide(
    newest: Option<(u64, &LockRecord)>,
    now_ms: u64,
    dead: impl Fn(&LockRecord) -> bool,
) -> Decision {
    match newest {
        None => Decision::Take {
            generation: 1,
            took_over: false,
        },
        Some((generation, record)) => {
            let held = record.state == LockState::Held;
            if held && record.expires_ms > now_ms && !dead(record) {
                Decision::Busy
            } else {
                Decision::Take {
                    generation: generation + 1,
                    took_over: held,
                }
            }
        }
    }
}

/// The generations that may be deleted: every one but the newest that was created at
/// least `max_flight` before `now` (`created`: when the storage says it was written;
/// `None`, unknown, is never deleted).
pub fn deletable<T: Copy + PartialOrd>(
    generations: &[(u64, Option<T>)],
    now: T,
    max_flight: impl Fn(T, T) -> bool,
) -> Vec<u64> {
    let Some(newest) = generations.iter().map(|(g, _)| *g).max() else {
        return Vec::new();
    };
    generations
        .iter()
        .filter(|(g, created)| *g < newest && created.is_some_and(|c| max_flight(c, now)))
        .map(|(g, _)| *g)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: LockState, expires_ms: u64) -> LockRecord {
        LockRecord {
            operation: "op".into(),
            kind: "backup".into(),
            holder: "h:1".into(),
            started_ms: 0,
            expires_ms,
            generation: 3,
            state,
            note: None,
            ttl_ms: None,
            process: None,
            backup: None,
        }
    }

    /// The landing window is part of the format (docs/format.md, "Locks": a writer has
    /// ended 15 minutes after its mark lapsed): every strata that shares a repository
    /// waits out the same window, so it is not a tuning knob.
    #[test]
    fn the_landing_window_is_the_format_s_fifteen_minutes() {
        assert_eq!(MAX_FLIGHT, Duration::from_secs(15 * 60));
        assert_eq!(MAX_FLIGHT.as_secs(), 900);
    }

    #[test]
    fn keys_round_trip_and_strays_are_ignored() {
        assert_eq!(key(7), "locks/cluster/0000000007.json");
        assert_eq!(parse_key(&key(7)), Some(7));
        for stray in [
            "locks/cluster/0.json",
            "locks/cluster/x.json",
            "locks/op/1.json",
            "locks/cluster/1",
        ] {
            assert_eq!(parse_key(stray), None, "{stray}");
        }
    }

    #[test]
    fn a_live_holder_makes_others_wait_and_anything_else_is_taken_next() {
        let alive = |_: &LockRecord| false;
        assert_eq!(
            decide(None, 10, alive),
            Decision::Take {
                generation: 1,
                took_over: false
            }
        );
        let held = record(LockState::Held, 100);
        assert_eq!(decide(Some((3, &held)), 99, alive), Decision::Busy);
        let taken_over = Decision::Take {
            generation: 4,
            took_over: true,
        };
        assert_eq!(decide(Some((3, &held)), 100, alive), taken_over);
        assert_eq!(decide(Some((3, &held)), 50, |_| true), taken_over);
        for state in [LockState::Released, LockState::Broken] {
            let ended = record(state, 1_000);
            assert_eq!(
                decide(Some((3, &ended)), 10, alive),
                Decision::Take {
                    generation: 4,
                    took_over: false
                }
            );
        }
    }

    #[test]
    fn only_old_generations_below_the_newest_are_deleted() {
        let old = |created: u64, now: u64| now - created >= 100;
        let gens = [(1, Some(0)), (2, Some(50)), (3, None), (4, Some(0))];
        assert_eq!(deletable(&gens, 120, old), vec![1]);
        assert_eq!(deletable(&gens, 1_000, old), vec![1, 2]);
        assert_eq!(deletable(&[(4, Some(0))], 1_000, old), Vec::<u64>::new());
    }

    #[test]
    fn a_late_renewal_does_not_count() {
        assert!(renewal_counts(5, 6));
        assert!(!renewal_counts(6, 6));
        assert_eq!(trust_for(Duration::from_secs(30)), Duration::from_secs(24));
    }
}
