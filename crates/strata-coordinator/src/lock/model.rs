//! An exhaustive check of the cluster lock's protocol (`chain.rs`) with the `stateright`
//! model checker: every interleaving of two and three processes, within stated bounds,
//! where any write may land at any time up to [`Bounds::max_flight`] ticks after it was
//! issued and its answer may come back at any time after that, in any order; processes
//! pause (time passes while they do nothing) and crash (their writes still land).
//!
//! The model calls the same rules the code does ([`chain::decide`], [`chain::deletable`],
//! [`chain::renewal_counts`], [`chain::trust_for`]) on an abstract clock of ticks.
//!
//! The invariant: **never two processes trust the lock at the same tick** (a process
//! trusts it from a successful write's answer until its deadline, the write's issue tick
//! plus [`chain::trust_for`] of the TTL, and stops at once when it learns it lost it).
//! Each rule is needed: with slots reused, trust counted from a write's answer, or a lock
//! given back by deleting its newest generation, the checker finds two holders
//! ([`each_rule_is_needed`]). (The rule that a renewal coming
//! back after the deadline does not count is not needed here, as a renewal that landed
//! means nobody took the generation over; it is kept for the lock as a second guard and
//! is what makes archive writers' marks safe, which are overwritten, not chained.)

use super::chain::{self, Decision};
use super::{LockRecord, LockState};
use stateright::{Checker, Model, Property};
use std::time::Duration;

/// The bounds of one exploration.
#[derive(Clone, Debug)]
struct Bounds {
    processes: usize,
    /// Ticks of the clock explored.
    ticks: u8,
    /// The lock's TTL in ticks.
    ttl: u8,
    /// A write lands at most this many ticks after it was issued.
    max_flight: u8,
    /// Generations explored.
    generations: u64,
    /// Crashes over the whole run.
    crashes: u8,
}

/// Rules that can be weakened, to show the checker finds what each one prevents.
#[derive(Clone, Copy, Debug, Default)]
struct Weakened {
    /// Delete generations as soon as they are not the newest (slots reused).
    reuse_slots: bool,
    /// Trust from the answer's tick rather than the issue's.
    trust_from_answer: bool,
    /// Let a holder give the lock back by deleting its own (newest) generation.
    release_by_delete: bool,
}

#[derive(Clone, Debug)]
struct LockModel {
    bounds: Bounds,
    weakened: Weakened,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    owner: u8,
    held: bool,
    expires: u8,
    created: u8,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Purpose {
    Acquire,
    Renew,
    Release,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Write {
    from: u8,
    generation: u64,
    slot: Slot,
    issued: u8,
    purpose: Purpose,
    /// `Some(accepted)` once landed; the answer is then on its way back.
    landed: Option<bool>,
    /// Whether the process that issued it still waits for it (not after a crash).
    awaited: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Waiting for the answer to a write to take the lock.
    Taking,
    /// Holds generation `generation` and trusts it until `deadline`; `renewing` while
    /// a renewal is in flight.
    Holding {
        generation: u64,
        deadline: u8,
        renewing: bool,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct State {
    now: u8,
    /// Generation g is `slots[g - 1]`; `None`: never written, or deleted.
    slots: Vec<Option<Slot>>,
    phases: Vec<Phase>,
    writes: Vec<Write>,
    crashes: u8,
    /// Whether a takeover of an expired lock happened (to show the model reaches it).
    took_over: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Action {
    Tick,
    /// Process reads the chain and, unless busy, issues its write.
    Take(u8),
    Renew(u8),
    Release(u8),
    /// Gives the lock back by deleting its own generation (never done: a reader then
    /// finds the generation before it newest while a takeover of the deleted one is in
    /// flight, and both writes land).
    ReleaseByDelete(u8),
    Land(usize),
    Answer(usize),
    Crash(u8),
    Prune,
}

impl State {
    fn newest(&self) -> Option<(u64, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, s)| s.as_ref().map(|s| (i as u64 + 1, s)))
    }

    fn trusting(&self) -> usize {
        self.phases
            .iter()
            .filter(|p| matches!(p, Phase::Holding { deadline, .. } if self.now < *deadline))
            .count()
    }

    fn waits(&self, p: u8) -> bool {
        self.writes.iter().any(|w| w.from == p && w.awaited)
    }
}

fn record(slot: &Slot) -> LockRecord {
    LockRecord {
        operation: format!("op-{}", slot.owner),
        kind: "backup".into(),
        holder: format!("host:{}", slot.owner),
        started_ms: 0,
        expires_ms: slot.expires as u64,
        generation: 0,
        state: if slot.held {
            LockState::Held
        } else {
            LockState::Released
        },
        note: None,
        ttl_ms: None,
        process: None,
    }
}

impl LockModel {
    fn trust(&self) -> u8 {
        chain::trust_for(Duration::from_secs(self.bounds.ttl as u64)).as_secs() as u8
    }

    fn issue(&self, state: &mut State, p: u8, generation: u64, held: bool, purpose: Purpose) {
        state.writes.push(Write {
            from: p,
            generation,
            slot: Slot {
                owner: p,
                held,
                expires: if held {
                    state.now + self.bounds.ttl
                } else {
                    state.now
                },
                created: 0,
            },
            issued: state.now,
            purpose,
            landed: None,
            awaited: purpose != Purpose::Release,
        });
    }
}

impl Model for LockModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            now: 0,
            slots: vec![None; self.bounds.generations as usize],
            phases: vec![Phase::Idle; self.bounds.processes],
            writes: Vec::new(),
            crashes: 0,
            took_over: false,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        // Time stops for nobody, but a write must land within its flight bound.
        let overdue = state
            .writes
            .iter()
            .any(|w| w.landed.is_none() && state.now - w.issued >= self.bounds.max_flight);
        if state.now < self.bounds.ticks && !overdue {
            actions.push(Action::Tick);
        }
        for (i, phase) in state.phases.iter().enumerate() {
            let p = i as u8;
            if state.waits(p) {
                continue;
            }
            match phase {
                Phase::Idle => actions.push(Action::Take(p)),
                Phase::Holding {
                    renewing: false, ..
                } => {
                    actions.push(Action::Renew(p));
                    actions.push(Action::Release(p));
                    if self.weakened.release_by_delete {
                        actions.push(Action::ReleaseByDelete(p));
                    }
                }
                _ => {}
            }
            if state.crashes < self.bounds.crashes && *phase != Phase::Idle {
                actions.push(Action::Crash(p));
            }
        }
        for (i, write) in state.writes.iter().enumerate() {
            match write.landed {
                None => actions.push(Action::Land(i)),
                Some(_) if write.awaited => actions.push(Action::Answer(i)),
                Some(_) => {}
            }
        }
        actions.push(Action::Prune);
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Tick => s.now += 1,
            Action::Take(p) => {
                let newest = s.newest().map(|(g, slot)| (g, record(slot)));
                match chain::decide(newest.as_ref().map(|(g, r)| (*g, r)), s.now as u64, |_| {
                    false
                }) {
                    Decision::Busy => return None,
                    Decision::Take { generation, .. } if generation > self.bounds.generations => {
                        return None
                    }
                    Decision::Take { generation, .. } => {
                        self.issue(&mut s, p, generation, true, Purpose::Acquire);
                        s.phases[p as usize] = Phase::Taking;
                    }
                }
            }
            Action::Renew(p) => {
                let Phase::Holding {
                    generation,
                    deadline,
                    ..
                } = s.phases[p as usize].clone()
                else {
                    return None;
                };
                if s.now >= deadline {
                    s.phases[p as usize] = Phase::Idle;
                } else if generation < self.bounds.generations {
                    self.issue(&mut s, p, generation + 1, true, Purpose::Renew);
                    s.phases[p as usize] = Phase::Holding {
                        generation,
                        deadline,
                        renewing: true,
                    };
                } else {
                    return None;
                }
            }
            Action::Release(p) => {
                let Phase::Holding { generation, .. } = s.phases[p as usize].clone() else {
                    return None;
                };
                if generation < self.bounds.generations {
                    self.issue(&mut s, p, generation + 1, false, Purpose::Release);
                }
                s.phases[p as usize] = Phase::Idle;
            }
            Action::ReleaseByDelete(p) => {
                let Phase::Holding { generation, .. } = s.phases[p as usize].clone() else {
                    return None;
                };
                s.phases[p as usize] = Phase::Idle;
                let slot = &mut s.slots[generation as usize - 1];
                if slot.as_ref().is_some_and(|x| x.owner == p) {
                    *slot = None;
                }
            }
            Action::Land(i) => {
                let now = s.now;
                let write = &mut s.writes[i];
                let slot = &mut s.slots[write.generation as usize - 1];
                let accepted = slot.is_none();
                if accepted {
                    let previous = write.generation.checked_sub(1).filter(|g| *g > 0);
                    *slot = Some(Slot {
                        created: now,
                        ..write.slot.clone()
                    });
                    if write.purpose == Purpose::Acquire {
                        let ended = previous
                            .and_then(|g| last.slots[g as usize - 1].as_ref())
                            .is_some_and(|prev| prev.held && prev.owner != write.from);
                        s.took_over |= ended;
                    }
                }
                let write = &mut s.writes[i];
                write.landed = Some(accepted);
                if !write.awaited {
                    s.writes.remove(i);
                }
            }
            Action::Answer(i) => {
                let write = s.writes.remove(i);
                let p = write.from as usize;
                let accepted = write.landed == Some(true);
                let from = if self.weakened.trust_from_answer {
                    s.now
                } else {
                    write.issued
                };
                let deadline = from + self.trust();
                s.phases[p] = match (write.purpose, &s.phases[p], accepted) {
                    (Purpose::Acquire, _, true) if s.now < deadline => Phase::Holding {
                        generation: write.generation,
                        deadline,
                        renewing: false,
                    },
                    (
                        Purpose::Renew,
                        Phase::Holding {
                            deadline: current, ..
                        },
                        true,
                    ) if chain::renewal_counts(s.now, *current) => Phase::Holding {
                        generation: write.generation,
                        deadline,
                        renewing: false,
                    },
                    _ => Phase::Idle,
                };
            }
            Action::Crash(p) => {
                s.crashes += 1;
                s.phases[p as usize] = Phase::Idle;
                for w in s.writes.iter_mut().filter(|w| w.from == p) {
                    w.awaited = false;
                }
                s.writes.retain(|w| w.awaited || w.landed.is_none());
            }
            Action::Prune => {
                let generations: Vec<(u64, Option<u8>)> = s
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, slot)| slot.as_ref().map(|x| (i as u64 + 1, Some(x.created))))
                    .collect();
                let flight = self.bounds.max_flight;
                let old: Box<dyn Fn(u8, u8) -> bool> = if self.weakened.reuse_slots {
                    Box::new(|_, _| true)
                } else {
                    Box::new(move |created, now| now - created >= flight)
                };
                let gone = chain::deletable(&generations, s.now, old);
                if gone.is_empty() {
                    return None;
                }
                for g in gone {
                    s.slots[g as usize - 1] = None;
                }
            }
        }
        // One state for every order the same writes were issued in.
        s.writes.sort();
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("never two holders", |_, s: &State| s.trusting() <= 1),
            Property::sometimes("someone holds", |_, s: &State| s.trusting() == 1),
            Property::sometimes("an expired lock is taken over", |_, s: &State| s.took_over),
        ]
    }
}

fn check(bounds: Bounds, weakened: Weakened) -> impl Checker<LockModel> {
    LockModel { bounds, weakened }.checker().spawn_bfs().join()
}

/// The bounds for `processes`: small enough for the test suite, or those of
/// `STRATA_LOCK_MODEL="ticks,ttl,max_flight,generations,crashes"` for a longer run.
fn bounds(processes: usize, small: [u8; 5]) -> Bounds {
    let given: Option<Vec<u8>> = std::env::var("STRATA_LOCK_MODEL").ok().map(|v| {
        v.split(',')
            .map(|n| n.trim().parse().expect("a number"))
            .collect()
    });
    let [ticks, ttl, max_flight, generations, crashes] = match given {
        Some(v) => <[u8; 5]>::try_from(v).expect("five numbers"),
        None => small,
    };
    Bounds {
        processes,
        ticks,
        ttl,
        max_flight,
        generations: generations as u64,
        crashes,
    }
}

fn two_processes() -> Bounds {
    bounds(2, [6, 3, 4, 4, 1])
}

fn three_processes() -> Bounds {
    bounds(3, [5, 3, 4, 3, 1])
}

#[test]
fn two_processes_never_both_hold_the_lock() {
    let checker = check(two_processes(), Weakened::default());
    checker.assert_properties();
    eprintln!("two processes: {} states", checker.unique_state_count());
}

#[test]
fn three_processes_never_two_hold_the_lock() {
    let checker = check(three_processes(), Weakened::default());
    checker.assert_properties();
    eprintln!("three processes: {} states", checker.unique_state_count());
}

#[test]
fn each_rule_is_needed() {
    for weakened in [
        Weakened {
            reuse_slots: true,
            ..Default::default()
        },
        Weakened {
            trust_from_answer: true,
            ..Default::default()
        },
        Weakened {
            release_by_delete: true,
            ..Default::default()
        },
    ] {
        let checker = check(two_processes(), weakened);
        assert!(
            checker.discovery("never two holders").is_some(),
            "{weakened:?} should let two processes hold the lock"
        );
    }
}
