//! An exhaustive check of the cluster lock's protocol (`chain.rs`) with the `stateright`
//! model checker: every interleaving of two and three processes, within stated bounds,
//! where any write may land at any time up to [`Bounds::max_flight`] ticks after it was
//! issued and its answer may come back at any time after that, in any order; processes
//! pause for as long as they like (time passes while they do nothing) and crash (their
//! writes still land; the process comes back as a new instance).
//!
//! The model calls the same rules the code does ([`chain::decide`], [`chain::deletable`],
//! [`chain::renewal_counts`], [`chain::trust_for`], [`LockRecord::expires_by_storage`])
//! on an abstract clock of ticks (a tick is a second).
//!
//! **Clocks.** Expiry is judged by the storage's clock, as the code does: a generation
//! ends its TTL (and a second) after the storage wrote it. Every process also has a wall
//! clock, the storage's plus its own offset ([`Bounds::offsets`], within ±2 ticks),
//! which only [`Mutant::WallClock`] reads. The state holds ages rather than dates (of
//! generations, writes, what is left of a holder's trust), each only up to the largest
//! value a rule compares it with, so the exploration is not cut off after some ticks.
//!
//! **Liveness, as implemented** (`liveness.rs`, `LockRecord::holder_is_dead`): a holder
//! is taken over before its lease ends only when provably dead: another instance of the
//! same boot and PID namespace ([`Bounds::namespaces`]; all processes run on one host)
//! whose alive file's lock the kernel released (it crashed), or this very process's own
//! generation after it gave the lock back (its `released` write may have failed). A live
//! process is never taken for dead, nor one in another namespace.
//!
//! The invariant: **never two processes trust the lock at the same tick** (a process
//! trusts it from a successful write's answer until its deadline, the write's issue tick
//! plus [`chain::trust_for`] of the TTL, and stops at once when it learns it lost it).
//! Each rule is needed: one test per [`Mutant`] switches it off and the checker finds two
//! holders: slots reused, trust counted from a write's answer, a lock given back by
//! deleting its newest generation, a holder taken for dead when this process cannot see
//! it (the rule `/proc/PID` gave: a live process of another PID namespace has no entry),
//! and expiry judged by the processes' wall clocks (the record's `expires_ms` against
//! the judge's clock). (The rule that a renewal coming back after the deadline does not
//! count is not needed here, as a renewal that landed means nobody took the generation
//! over; it is kept for the lock as a second guard and is what makes archive writers'
//! marks safe, which are overwritten, not chained.)
//!
//! The suite's bounds: TTL 3 ticks (trust 2), 3 generations, one crash; two processes of
//! one namespace with writes in flight up to 4 ticks (195,123 states, about 4 s), and
//! three, the third in another PID namespace, with writes in flight up to 2 ticks
//! (1,085,325 states, about 20 s). Processes that nothing tells apart are one state
//! swapped ([`LockModel::canonical`]), so the process numbers of a printed path are
//! those of each state's canonical form.
//! `STRATA_LOCK_MODEL="ttl,max_flight,generations,crashes"` runs other bounds (at most
//! [`MAX_GENERATIONS`]).

use super::chain::{self, Decision};
use super::{LockRecord, LockState};
use stateright::{Checker, HasDiscoveries, Model, Property};
use std::time::Duration;

/// Ticks added to every clock, so that none reads below zero.
const BASE: i64 = 100;

/// The most processes, generations and writes in flight a state holds (fixed sizes keep
/// states cheap to copy and hash).
const MAX_PROCESSES: usize = 3;
const MAX_GENERATIONS: usize = 6;
const MAX_WRITES: usize = 8;

/// The bounds of one exploration.
#[derive(Clone, Debug)]
struct Bounds {
    processes: usize,
    /// The lock's TTL in ticks.
    ttl: u8,
    /// A write lands at most this many ticks after it was issued.
    max_flight: u8,
    /// Generations explored.
    generations: u64,
    /// Crashes over the whole run.
    crashes: u8,
    /// Each process's PID namespace (one boot of one host for all).
    namespaces: Vec<u8>,
    /// How far each process's wall clock is ahead of the storage's, in ticks.
    offsets: Vec<i8>,
}

/// A rule broken on purpose, to show that the checker finds what it prevents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutant {
    /// The protocol as implemented.
    None,
    /// Delete generations as soon as they are not the newest (slots reused).
    ReuseSlots,
    /// Trust from the answer's tick rather than the issue's.
    TrustFromAnswer,
    /// Let a holder give the lock back by deleting its own (newest) generation.
    ReleaseByDelete,
    /// A holder this process cannot see is dead: the `/proc/PID` rule (a holder of this
    /// host whose PID has no entry here), which takes a live process of another PID
    /// namespace for dead.
    DeadIfUnseen,
    /// Expiry judged by wall clocks: the record's `expires_ms` (its writer's clock at
    /// the issue, plus the TTL) against the judge's clock.
    WallClock,
}

#[derive(Clone, Debug)]
struct LockModel {
    bounds: Bounds,
    mutant: Mutant,
}

/// A process instance: a process that crashed comes back as a new one.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Instance {
    process: u8,
    incarnation: u8,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    owner: Instance,
    held: bool,
    /// Ticks since the storage created it (up to [`LockModel::slot_age_cap`]).
    age: u8,
    /// Ticks since its write was issued ([`Mutant::WallClock`] only; 0 otherwise).
    since_issue: u8,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Purpose {
    Acquire,
    Renew,
    Release,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Write {
    from: Instance,
    generation: u64,
    held: bool,
    /// Ticks since it was issued (up to [`LockModel::write_age_cap`] once landed).
    age: u8,
    purpose: Purpose,
    /// `Some(accepted)` once landed; the answer is then on its way back.
    landed: Option<bool>,
    /// Whether the process that issued it still waits for it (not after a crash).
    awaited: bool,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Idle,
    /// Waiting for the answer to a write to take the lock.
    Taking,
    /// Holds generation `generation` and trusts it for `left` more ticks; `renewing`
    /// while a renewal is in flight.
    Holding {
        generation: u64,
        left: u8,
        renewing: bool,
    },
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct State {
    /// Generation g is `slots[g - 1]`; `None`: never written, or deleted.
    slots: [Option<Slot>; MAX_GENERATIONS],
    phases: [Phase; MAX_PROCESSES],
    /// Each process's incarnation.
    incarnations: [u8; MAX_PROCESSES],
    /// The generation each process gave back (it may take it over at once), if any.
    given_back: [Option<u64>; MAX_PROCESSES],
    /// The writes in flight or whose answer is on its way, sorted (one state for every
    /// order the same writes were issued in).
    writes: [Option<Write>; MAX_WRITES],
    crashes: u8,
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
            .filter(|p| matches!(p, Phase::Holding { left, .. } if *left > 0))
            .count()
    }

    fn waits(&self, p: u8) -> bool {
        self.writes
            .iter()
            .flatten()
            .any(|w| w.from.process == p && w.awaited)
    }

    fn push_write(&mut self, write: Write) {
        let free = self
            .writes
            .iter_mut()
            .find(|w| w.is_none())
            .expect("more writes in flight than MAX_WRITES");
        *free = Some(write);
    }

    /// Whether `instance` still runs (its process has not crashed since).
    fn alive(&self, instance: Instance) -> bool {
        self.incarnations[instance.process as usize] == instance.incarnation
    }

    /// The writes in flight that take a lock, with the held generation each follows.
    fn takeovers(&self) -> impl Iterator<Item = (Instance, &Slot)> + '_ {
        self.writes.iter().flatten().filter_map(|w| {
            let previous = w.generation.checked_sub(2)?;
            let held = self.slots[previous as usize].as_ref().filter(|x| x.held)?;
            (w.purpose == Purpose::Acquire && w.landed.is_none()).then_some((w.from, held))
        })
    }

    fn instance(&self, p: u8) -> Instance {
        Instance {
            process: p,
            incarnation: self.incarnations[p as usize],
        }
    }
}

/// Milliseconds of a clock reading `ticks` (plus [`BASE`]).
fn ms(ticks: i64) -> u64 {
    ((BASE + ticks) * 1000) as u64
}

impl LockModel {
    fn trust(&self) -> u8 {
        chain::trust_for(Duration::from_secs(self.bounds.ttl as u64)).as_secs() as u8
    }

    /// The largest age of a generation any rule tells apart: its expiry (the TTL and a
    /// second) and its pruning (the flight bound).
    fn slot_age_cap(&self) -> u8 {
        (self.bounds.ttl + 1).max(self.bounds.max_flight)
    }

    /// Likewise for the time since a generation's write was issued, which only the wall
    /// clocks read: its TTL, give or take the offsets.
    fn since_issue_cap(&self) -> u8 {
        let spread = self.bounds.offsets.iter().max().unwrap_or(&0)
            - self.bounds.offsets.iter().min().unwrap_or(&0);
        self.bounds.ttl + spread as u8 + 1
    }

    /// A write's age matters until it lands (within the flight bound), and then only for
    /// the trust its answer grants.
    fn write_age_cap(&self, write: &Write) -> u8 {
        match write.landed {
            None => self.bounds.max_flight,
            Some(_) => self.trust(),
        }
    }

    /// The record of generation `slot` as the judge `judge` reads it, and the clock it
    /// judges it by: the storage's (the code's rule), or, mutated, wall clocks.
    fn judged(&self, slot: &Slot, judge: u8) -> (LockRecord, u64) {
        let ttl = self.bounds.ttl as i64;
        let mut record = LockRecord {
            operation: String::new(),
            kind: String::new(),
            holder: String::new(),
            started_ms: 0,
            // Its writer's wall clock at the issue, plus the TTL.
            expires_ms: ms(self.bounds.offsets[slot.owner.process as usize] as i64
                - slot.since_issue as i64
                + ttl),
            generation: 0,
            state: if slot.held {
                LockState::Held
            } else {
                LockState::Released
            },
            note: None,
            ttl_ms: Some(ttl as u64 * 1000),
            process: None,
            backup: None,
        };
        let now = if self.mutant == Mutant::WallClock {
            // As a record of an older version: no TTL for the storage's clock.
            record.ttl_ms = None;
            ms(self.bounds.offsets[judge as usize] as i64)
        } else {
            ms(0)
        };
        record.expires_ms = record.expires_by_storage(Some(ms(-(slot.age as i64))));
        (record, now)
    }

    /// Whether the judge `judge` can prove the holder of `slot` (generation `generation`)
    /// dead, by the rule of `LockRecord::holder_is_dead` and `liveness::provably_dead`.
    fn provably_dead(&self, s: &State, judge: u8, generation: u64, slot: &Slot) -> bool {
        let me = s.instance(judge);
        if slot.owner == me {
            // This process, after it gave that lock back.
            return s.given_back[judge as usize] == Some(generation);
        }
        let owner = slot.owner.process as usize;
        let same_namespace =
            self.bounds.namespaces[owner] == self.bounds.namespaces[judge as usize];
        // The kernel released its alive file: that instance is gone.
        let ended = s.incarnations[owner] > slot.owner.incarnation;
        if self.mutant == Mutant::DeadIfUnseen && (!same_namespace || ended) {
            // No `/proc/PID` here: in another namespace, or gone.
            return true;
        }
        same_namespace && ended
    }

    fn issue(&self, s: &mut State, p: u8, generation: u64, held: bool, purpose: Purpose) {
        let from = s.instance(p);
        s.push_write(Write {
            from,
            generation,
            held,
            age: 0,
            purpose,
            landed: None,
            awaited: purpose != Purpose::Release,
        });
    }

    fn tick(&self, s: &mut State) {
        let (slot_cap, issue_cap) = (self.slot_age_cap(), self.since_issue_cap());
        for slot in s.slots.iter_mut().flatten() {
            slot.age = (slot.age + 1).min(slot_cap);
            if self.mutant == Mutant::WallClock {
                slot.since_issue = (slot.since_issue + 1).min(issue_cap);
            }
        }
        for write in s.writes.iter_mut().flatten() {
            write.age = (write.age + 1).min(self.write_age_cap(write));
        }
        for phase in &mut s.phases {
            if let Phase::Holding { left, .. } = phase {
                *left = left.saturating_sub(1);
            }
        }
    }
}

impl Model for LockModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        assert!(self.bounds.processes <= MAX_PROCESSES);
        assert!(self.bounds.generations as usize <= MAX_GENERATIONS);
        vec![State {
            slots: [None; MAX_GENERATIONS],
            phases: [Phase::Idle; MAX_PROCESSES],
            incarnations: [0; MAX_PROCESSES],
            given_back: [None; MAX_PROCESSES],
            writes: [None; MAX_WRITES],
            crashes: 0,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        // Time stops for nobody, but a write must land within its flight bound.
        let overdue = state
            .writes
            .iter()
            .flatten()
            .any(|w| w.landed.is_none() && w.age >= self.bounds.max_flight);
        if !overdue {
            actions.push(Action::Tick);
        }
        for (i, phase) in state.phases[..self.bounds.processes].iter().enumerate() {
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
                    if self.mutant == Mutant::ReleaseByDelete {
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
            let Some(write) = write else { continue };
            match write.landed {
                None => actions.push(Action::Land(i)),
                Some(_) if write.awaited => actions.push(Action::Answer(i)),
                Some(_) => {}
            }
        }
        actions.push(Action::Prune);
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = *last;
        match action {
            Action::Tick => {
                self.tick(&mut s);
                if s == *last {
                    return None;
                }
            }
            Action::Take(p) => {
                let decision = match s.newest() {
                    None => chain::decide(None, 0, |_| false),
                    Some((generation, slot)) => {
                        let (record, now) = self.judged(slot, p);
                        let dead = self.provably_dead(&s, p, generation, slot);
                        chain::decide(Some((generation, &record)), now, |_| dead)
                    }
                };
                match decision {
                    Decision::Busy => return None,
                    Decision::Take { generation, .. } if generation > self.bounds.generations => {
                        return None
                    }
                    Decision::Take { generation, .. } => {
                        self.issue(&mut s, p, generation, true, Purpose::Acquire);
                        s.phases[p as usize] = Phase::Taking;
                        s.given_back[p as usize] = None;
                    }
                }
            }
            Action::Renew(p) => {
                let Phase::Holding {
                    generation, left, ..
                } = s.phases[p as usize]
                else {
                    return None;
                };
                if left == 0 {
                    s.phases[p as usize] = Phase::Idle;
                } else if generation < self.bounds.generations {
                    self.issue(&mut s, p, generation + 1, true, Purpose::Renew);
                    s.phases[p as usize] = Phase::Holding {
                        generation,
                        left,
                        renewing: true,
                    };
                } else {
                    return None;
                }
            }
            Action::Release(p) => {
                let Phase::Holding { generation, .. } = s.phases[p as usize] else {
                    return None;
                };
                if generation < self.bounds.generations {
                    self.issue(&mut s, p, generation + 1, false, Purpose::Release);
                }
                s.phases[p as usize] = Phase::Idle;
                // Its `released` write may fail: this process knows it uses the lock no
                // more, and may take it over at once.
                s.given_back[p as usize] = Some(generation);
            }
            Action::ReleaseByDelete(p) => {
                let Phase::Holding { generation, .. } = s.phases[p as usize] else {
                    return None;
                };
                s.phases[p as usize] = Phase::Idle;
                let me = s.instance(p);
                let slot = &mut s.slots[generation as usize - 1];
                if slot.as_ref().is_some_and(|x| x.owner == me) {
                    *slot = None;
                }
            }
            Action::Land(i) => {
                let write = s.writes[i].as_mut()?;
                let slot = &mut s.slots[write.generation as usize - 1];
                let accepted = slot.is_none();
                if accepted {
                    *slot = Some(Slot {
                        owner: write.from,
                        held: write.held,
                        age: 0,
                        since_issue: if self.mutant == Mutant::WallClock {
                            write.age
                        } else {
                            0
                        },
                    });
                }
                write.landed = Some(accepted);
                write.age = write.age.min(self.trust());
                if !write.awaited {
                    s.writes[i] = None;
                }
            }
            Action::Answer(i) => {
                let write = s.writes[i].take()?;
                let p = write.from.process as usize;
                let accepted = write.landed == Some(true);
                let trust = self.trust();
                // Trust until the issue tick plus the trust: what is left of it now.
                let left = if self.mutant == Mutant::TrustFromAnswer {
                    trust
                } else {
                    trust.saturating_sub(write.age)
                };
                s.phases[p] = match (write.purpose, &s.phases[p], accepted) {
                    (Purpose::Acquire, _, true) if left > 0 => Phase::Holding {
                        generation: write.generation,
                        left,
                        renewing: false,
                    },
                    // Back before the current deadline (now is 0, the deadline what is left).
                    (Purpose::Renew, Phase::Holding { left: current, .. }, true)
                        if chain::renewal_counts(0, *current) =>
                    {
                        Phase::Holding {
                            generation: write.generation,
                            left,
                            renewing: false,
                        }
                    }
                    _ => Phase::Idle,
                };
            }
            Action::Crash(p) => {
                let me = s.instance(p);
                s.crashes += 1;
                s.incarnations[p as usize] += 1;
                s.given_back[p as usize] = None;
                s.phases[p as usize] = Phase::Idle;
                for write in &mut s.writes {
                    if let Some(w) = write.as_mut().filter(|w| w.from == me) {
                        w.awaited = false;
                        if w.landed.is_some() {
                            *write = None;
                        }
                    }
                }
            }
            Action::Prune => {
                let generations: Vec<(u64, Option<u8>)> = s
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, slot)| slot.as_ref().map(|x| (i as u64 + 1, Some(x.age))))
                    .collect();
                let flight = self.bounds.max_flight;
                // Ages rather than dates: "created at `age`" against now at 0.
                let old: Box<dyn Fn(u8, u8) -> bool> = if self.mutant == Mutant::ReuseSlots {
                    Box::new(|_, _| true)
                } else {
                    Box::new(move |age, _| age >= flight)
                };
                let gone = chain::deletable(&generations, 0, old);
                if gone.is_empty() {
                    return None;
                }
                for g in gone {
                    s.slots[g as usize - 1] = None;
                }
            }
        }
        // A lock given back matters while it is the newest generation, held by this instance.
        for p in 0..self.bounds.processes {
            let me = s.instance(p as u8);
            if let Some(g) = s.given_back[p] {
                if s.newest()
                    .is_none_or(|(newest, slot)| newest != g || slot.owner != me)
                {
                    s.given_back[p] = None;
                }
            }
        }
        // One state for every order the same writes were issued in.
        s.writes.sort();
        Some(self.canonical(s))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(NEVER_TWO_HOLDERS, |_, s: &State| s.trusting() <= 1),
            Property::sometimes("someone holds", |_, s: &State| s.trusting() == 1),
            // Read off a takeover in flight: a write taking the generation after a held
            // one, and who held that.
            Property::sometimes("an expired lock is taken over", |_, s: &State| {
                s.takeovers()
                    .any(|(by, held)| by != held.owner && s.alive(held.owner))
            }),
            Property::sometimes(
                "a crashed holder's lock is taken over before it expires",
                |m: &LockModel, s: &State| {
                    // Only where a crashed holder can be proven dead.
                    !m.crash_provable()
                        || s.takeovers().any(|(by, held)| {
                            by != held.owner && !s.alive(held.owner) && held.age <= m.bounds.ttl
                        })
                },
            ),
            Property::sometimes(
                "a lock given back is taken over before it expires",
                |m: &LockModel, s: &State| {
                    s.takeovers()
                        .any(|(by, held)| by == held.owner && held.age <= m.bounds.ttl)
                },
            ),
        ]
    }
}

const NEVER_TWO_HOLDERS: &str = "never two holders";

impl LockModel {
    /// One state for `s` and the states where processes that nothing tells apart (one
    /// namespace, and one wall clock where it is read) swapped places.
    fn canonical(&self, s: State) -> State {
        let b = &self.bounds;
        let mut best = s;
        for x in 0..b.processes {
            for y in x + 1..b.processes {
                let alike = b.namespaces[x] == b.namespaces[y]
                    && (self.mutant != Mutant::WallClock || b.offsets[x] == b.offsets[y]);
                if alike {
                    let swapped = swap(&s, x as u8, y as u8);
                    if swapped < best {
                        best = swapped;
                    }
                }
            }
        }
        best
    }

    /// Whether two processes share a namespace and a crash may happen: a crashed holder
    /// can then be proven dead.
    fn crash_provable(&self) -> bool {
        let ns = &self.bounds.namespaces;
        self.bounds.crashes > 0 && (0..ns.len()).any(|a| (a + 1..ns.len()).any(|b| ns[a] == ns[b]))
    }
}

/// `s` with processes `x` and `y` swapped.
fn swap(s: &State, x: u8, y: u8) -> State {
    let other = |p: u8| match p {
        p if p == x => y,
        p if p == y => x,
        p => p,
    };
    let mut t = *s;
    t.incarnations.swap(x as usize, y as usize);
    t.phases.swap(x as usize, y as usize);
    t.given_back.swap(x as usize, y as usize);
    for slot in t.slots.iter_mut().flatten() {
        slot.owner.process = other(slot.owner.process);
    }
    for write in t.writes.iter_mut().flatten() {
        write.from.process = other(write.from.process);
    }
    t.writes.sort();
    t
}

/// The bounds for `processes` in `namespaces`, with wall clocks `offsets`: small enough
/// for the test suite, or those of `STRATA_LOCK_MODEL="ttl,max_flight,generations,crashes"`.
fn bounds(namespaces: &[u8], offsets: &[i8], small: [u8; 4]) -> Bounds {
    let given: Option<Vec<u8>> = std::env::var("STRATA_LOCK_MODEL").ok().map(|v| {
        v.split(',')
            .map(|n| n.trim().parse().expect("a number"))
            .collect()
    });
    let [ttl, max_flight, generations, crashes] = match given {
        Some(v) => <[u8; 4]>::try_from(v).expect("four numbers"),
        None => small,
    };
    Bounds {
        processes: namespaces.len(),
        ttl,
        max_flight,
        generations: generations as u64,
        crashes,
        namespaces: namespaces.to_vec(),
        offsets: offsets.to_vec(),
    }
}

/// Two processes of one PID namespace, their wall clocks 2 ticks apart: TTL 3 ticks,
/// writes in flight up to 4 (longer than a lease), 3 generations, one crash.
fn two_processes() -> Bounds {
    bounds(&[0, 0], &[-1, 1], [3, 4, 3, 1])
}

/// Three processes, the third in another PID namespace (another container of the
/// host), their wall clocks up to 4 ticks apart: TTL 3 ticks, writes in flight up to 2,
/// 3 generations, one crash.
fn three_processes() -> Bounds {
    bounds(&[0, 0, 1], &[-2, 0, 2], [3, 2, 3, 1])
}

fn check(bounds: Bounds) -> impl Checker<LockModel> {
    let started = std::time::Instant::now();
    let checker = LockModel {
        bounds,
        mutant: Mutant::None,
    }
    .checker()
    .spawn_bfs()
    .join();
    checker.assert_properties();
    eprintln!(
        "{} states in {:.1} s",
        checker.unique_state_count(),
        started.elapsed().as_secs_f32()
    );
    checker
}

#[test]
fn two_processes_never_both_hold_the_lock() {
    check(two_processes());
}

#[test]
fn three_processes_never_two_hold_the_lock() {
    check(three_processes());
}

/// Checks `mutant` until it finds two holders.
fn finds_two_holders(bounds: Bounds, mutant: Mutant) {
    let checker = LockModel { bounds, mutant }
        .checker()
        .finish_when(HasDiscoveries::AnyOf([NEVER_TWO_HOLDERS].into()))
        .spawn_bfs()
        .join();
    let path = checker
        .discovery(NEVER_TWO_HOLDERS)
        .unwrap_or_else(|| panic!("{mutant:?} should let two processes hold the lock"));
    eprintln!(
        "{mutant:?}: two holders ({} states explored) after {:?}",
        checker.unique_state_count(),
        path.into_actions()
    );
}

#[test]
fn mutant_slots_reused_finds_two_holders() {
    finds_two_holders(two_processes(), Mutant::ReuseSlots);
}

#[test]
fn mutant_trust_from_answer_finds_two_holders() {
    finds_two_holders(two_processes(), Mutant::TrustFromAnswer);
}

#[test]
fn mutant_release_by_delete_finds_two_holders() {
    finds_two_holders(two_processes(), Mutant::ReleaseByDelete);
}

#[test]
fn mutant_dead_if_unseen_finds_two_holders() {
    // Two processes of one host in two PID namespaces, both alive.
    finds_two_holders(bounds(&[0, 1], &[0, 0], [3, 4, 4, 0]), Mutant::DeadIfUnseen);
}

#[test]
fn mutant_wall_clock_finds_two_holders() {
    finds_two_holders(two_processes(), Mutant::WallClock);
}
