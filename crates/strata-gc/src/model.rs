//! An exhaustive check of garbage collection against writers (backups, copies, WAL
//! pushes) with the `stateright` model checker: every interleaving of two writers, two
//! collection runs and a user deleting a backup, on the storage's clock, where writers
//! pause for as long as they like (past their lease too), give up on writes that the
//! storage then applies late, and every process's wall clock may be off.
//!
//! **Writers.** One blob B, stored in pack 0 at the start and referenced by one backup
//! (which the user may delete, making B garbage). Each writer makes a backup that
//! references B, one step at a time:
//! 1. writes its mark (the storage stamps it with its time; the writer's fence closes
//!    [`chain::trust_for`] of the TTL later), and renews it at any moment before that;
//! 2. lists the condemnations, then the index (two steps);
//! 3. relies on a pack it saw indexed and not condemned, or uploads its own copy (pack
//!    `1 + i`, which no index names yet; packs are not fenced, so a writer past its
//!    deadline still uploads);
//! 4. writes its index object (naming its pack, when it uploaded one) and its manifest,
//!    one visible write;
//! 5. writes its summary (publishes);
//! 6. releases its mark: withdraws it, or leaves it to lapse when it gave up on a write.
//!
//! The fence refuses a visible write (4, 5) issued once the writer's deadline has come;
//! an accepted one is in flight and lands at any tick up to [`Bounds::flight`] after it
//! was issued. The writer waits for it, or gives up on it at any moment (a timeout, its
//! fence's deadline): the write still lands within the bound, and the writer goes to 6.
//! A writer that takes no step is suspended, for any number of ticks, or dead.
//!
//! **Collections** run one at a time (they hold the gc lock) and do what `gc.rs` does:
//! read the references; condemn the indexed packs if B is unreferenced; list the running
//! marks and arm the condemnation with them; sweep when none of the armed writers runs
//! (read the references again, keep a condemned pack when B is referenced and no staying
//! pack holds it, rewrite the index without the others, delete them, remove the
//! condemnation); then collect the writers' packs and manifests that no index or summary
//! names and that are older than [`Bounds::grace`]: list them, then the marks, and only
//! when no writer runs read the index and summaries again and delete what they still do
//! not name. A writer runs while its mark is there and has not ended by the rule of
//! [`crate::lock::has_ended`] on the storage's clock: its TTL after the storage last
//! wrote it, then the landing window ([`the_models_rule_for_an_ended_writer_is_the_codes`]
//! checks the two agree). Listing the marks removes the ended ones.
//!
//! **Time** is the storage's clock. The state holds ages, not dates (of marks, packs,
//! manifests, writes in flight, and what is left of a writer's trust), each only up to
//! the largest value a rule compares it with, so the exploration is not cut off after
//! some ticks: it covers pauses of any length. A process's wall clock is the storage's
//! plus its offset ([`Bounds::gc_offset`], [`Bounds::writer_offsets`], within ±2 ticks),
//! read only by [`Mutant::GcWallClock`].
//!
//! **The invariants**: no pack an index object lists is deleted; a referenced blob always
//! has a pack that is stored and indexed; the manifest of a visible backup is stored.
//!
//! **Each rule is needed**: one test per [`Mutant`] switches it on and the checker finds
//! a counterexample: a writer listing the index before the condemnations, arming with
//! marks listed before the condemnation was written, or sweeping without waiting for the
//! armed writers (a blob lost); unnamed objects deleted by age alone while a writer
//! runs (a), a mark judged ended when its lease lapses without the landing window (b) or
//! by the collection's wall clock (c), a mark withdrawn after a write was given up (d),
//! the marks listed before the objects, or the names read before the marks.
//!
//! The suite's bounds: TTL 2 ticks (the fence closes 1 tick after the mark's last write),
//! writes in flight up to 2 ticks, grace 1 tick, two runs: 2,011,725 states, about 20 s;
//! `STRATA_GC_MODEL="ttl,flight,grace,runs"` runs others (`3,2,1,2`: 7.0 million states).

use crate::lock::chain;
use stateright::{Checker, HasDiscoveries, Model, Property};
use std::time::Duration;

const WRITERS: usize = 2;
const PACKS: usize = 1 + WRITERS;

/// The bounds of one exploration, in ticks of the storage's clock.
#[derive(Clone, Debug)]
struct Bounds {
    /// The writers' marks' TTL.
    ttl: u8,
    /// A write lands at most this many ticks after it was issued ([`chain::MAX_FLIGHT`]).
    flight: u8,
    /// Unnamed objects younger than this are kept (`[gc] grace`).
    grace: u8,
    /// Collection runs (each may condemn, sweep and collect unnamed objects).
    runs: u8,
    /// How far the collection's wall clock is ahead of the storage's.
    gc_offset: i16,
    /// How far each writer's wall clock is ahead of the storage's.
    writer_offsets: [i16; WRITERS],
}

/// A rule broken on purpose, to show that the checker finds what it prevents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutant {
    /// The protocol as implemented.
    None,
    /// A writer lists the index before the condemnations.
    IndexBeforeCondemnations,
    /// The collection lists the marks before it writes the condemnation.
    MarksBeforeCondemnation,
    /// The sweep does not wait for the armed writers.
    SweepWithoutWaiting,
    /// (a) Unnamed objects older than the grace period go even while a writer runs.
    UnnamedByAge,
    /// (b) A mark ends when its lease lapses, without the landing window.
    NoLandingWait,
    /// (c) A mark ends by the collection's wall clock against the writer's (the mark's
    /// `expires_ms`), the landing window kept.
    GcWallClock,
    /// (d) A writer withdraws its mark even after it gave up on a write.
    ReleaseAfterAbandon,
    /// The marks are listed before the unnamed objects.
    MarksBeforeListing,
    /// The index and summaries are read before the marks.
    NamesBeforeMarks,
}

/// The three reads of collecting unnamed objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// Lists the packs and manifests no index or summary names, older than the grace.
    Objects,
    /// Lists the marks: may they go (no writer runs)?
    Marks,
    /// Reads the index and summaries again: still unnamed?
    Names,
}

impl Mutant {
    fn unnamed_order(self) -> [Read; 3] {
        match self {
            Mutant::MarksBeforeListing => [Read::Marks, Read::Objects, Read::Names],
            Mutant::NamesBeforeMarks => [Read::Objects, Read::Names, Read::Marks],
            _ => [Read::Objects, Read::Marks, Read::Names],
        }
    }
}

/// A visible write of a writer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Visible {
    /// Its manifest, and its index object when it uploaded a pack.
    Index {
        pack: bool,
    },
    Summary,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Flight {
    write: Visible,
    /// Ticks since it was issued.
    age: u8,
    /// Whether the writer still waits for it (not once it gave up on it).
    awaited: bool,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum WriterPhase {
    Idle,
    Marked,
    /// Listed the condemnations (or, [`Mutant::IndexBeforeCondemnations`], the index):
    /// the packs it saw so.
    ListedFirst([bool; PACKS]),
    /// Decided whether to upload its own pack.
    Listed {
        upload: bool,
    },
    /// Uploaded its pack.
    Staged,
    /// Waits for its visible write in flight.
    Waiting,
    /// Its index object and manifest landed.
    Indexed,
    /// Published, refused or gave up: releases its mark next.
    Ending,
    Done,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Writer {
    phase: WriterPhase,
    /// Ticks before its fence closes: the last mark write's tick plus the trust, minus
    /// the storage's clock (0 once closed).
    trust_left: u8,
    flight: Option<Flight>,
    /// Whether it gave up on a write (the storage may apply it later).
    abandoned: bool,
    /// The age of its pack by the storage's clock, up to the grace period (which is all
    /// that matters of it).
    pack_age: u8,
    /// The age of its manifest, likewise.
    manifest_age: u8,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Unnamed {
    /// Reads done, of [`Mutant::unnamed_order`].
    done: u8,
    packs: [bool; PACKS],
    manifests: [bool; WRITERS],
    /// Whether the marks said no writer runs.
    clear: bool,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum GcPhase {
    Idle,
    /// References read: whether B is referenced.
    Read(bool),
    /// Condemnation written; armed next.
    Written,
    /// About to list the marks for the sweep.
    SweepChecked,
    /// No armed writer runs: the references are read next.
    MarksClear,
    /// References read again; the doomed packs decided.
    Decided([bool; PACKS]),
    Rewritten([bool; PACKS]),
    Deleted,
    /// Collecting what no index or summary names.
    Unnamed(Unnamed),
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Condemnation {
    packs: [bool; PACKS],
    /// The writers it waits for, once armed.
    armed: Option<[bool; WRITERS]>,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct State {
    /// The backup made before, referencing B.
    old_backup: bool,
    stored: [bool; PACKS],
    /// Whether an index object lists the pack.
    indexed: [bool; PACKS],
    manifests: [bool; WRITERS],
    /// Writers' summaries that are visible.
    published: [bool; WRITERS],
    /// Writers' marks: how long ago the storage last wrote each, up to the age at which
    /// it has ended (which is all that matters of it).
    marks: [Option<u8>; WRITERS],
    writers: [Writer; WRITERS],
    condemnation: Option<Condemnation>,
    gc: GcPhase,
    runs: u8,
    /// Marks listed before the condemnation ([`Mutant::MarksBeforeCondemnation`] only).
    listed_marks: [bool; WRITERS],
    /// Whether a collection deleted an unnamed object (to show the model reaches it).
    collected_unnamed: bool,
}

impl State {
    fn referenced(&self) -> bool {
        self.old_backup || self.published.iter().any(|p| *p)
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Action {
    Tick,
    DeleteOldBackup,
    Writer(usize),
    Renew(usize),
    /// The writer gives up on its write in flight.
    Abandon(usize),
    /// The writer's write in flight lands.
    Land(usize),
    Gc,
}

struct GcModel {
    bounds: Bounds,
    mutant: Mutant,
}

/// The code's rule for a held mark last written by the storage at `written`: its writer
/// has ended once the storage's clock is past its TTL and the landing window.
fn ended_by_storage(written: u64, ttl: u64, flight: u64, now: u64) -> bool {
    now >= written + ttl + flight
}

impl GcModel {
    fn trust(&self) -> u8 {
        chain::trust_for(Duration::from_secs(self.bounds.ttl as u64)).as_secs() as u8
    }

    /// The age at which writer `i`'s mark has ended (its last write by the storage at
    /// `written`, the storage's clock at `now = written + age`).
    fn end_age(&self, i: usize) -> u8 {
        let b = &self.bounds;
        match self.mutant {
            Mutant::NoLandingWait => b.ttl,
            Mutant::GcWallClock => {
                // The collection's wall clock, `now + gc_offset`, against the mark's
                // `expires_ms`, `written + writer's offset + TTL`, and the landing window.
                let age =
                    b.writer_offsets[i] + i16::from(b.ttl) + i16::from(b.flight) - b.gc_offset;
                age.max(0) as u8
            }
            _ => b.ttl + b.flight,
        }
    }

    /// Whether writer `i`'s mark, last written `age` ticks ago, has ended.
    fn has_ended(&self, i: usize, age: u8) -> bool {
        match self.mutant {
            Mutant::NoLandingWait | Mutant::GcWallClock => age >= self.end_age(i),
            _ => {
                let b = &self.bounds;
                ended_by_storage(0, b.ttl.into(), b.flight.into(), age.into())
            }
        }
    }

    /// Lists the marks: the running writers. Marks of ended writers are removed.
    fn list_marks(&self, s: &mut State) -> [bool; WRITERS] {
        std::array::from_fn(|i| match s.marks[i] {
            Some(age) if self.has_ended(i, age) => {
                s.marks[i] = None;
                false
            }
            mark => mark.is_some(),
        })
    }

    /// The storage's clock ticks.
    fn tick(&self, s: &mut State) {
        let grace = self.bounds.grace;
        for i in 0..WRITERS {
            let w = &mut s.writers[i];
            w.trust_left = w.trust_left.saturating_sub(1);
            w.pack_age = (w.pack_age + 1).min(grace);
            w.manifest_age = (w.manifest_age + 1).min(grace);
            if let Some(f) = &mut w.flight {
                f.age += 1;
            }
            if let Some(age) = &mut s.marks[i] {
                *age = (*age + 1).min(self.end_age(i));
            }
        }
    }

    /// Issues a visible write, unless the writer's fence refuses it.
    fn issue(&self, s: &mut State, i: usize, write: Visible) {
        let w = &mut s.writers[i];
        if w.trust_left == 0 {
            w.phase = WriterPhase::Ending;
        } else {
            w.flight = Some(Flight {
                write,
                age: 0,
                awaited: true,
            });
            w.phase = WriterPhase::Waiting;
        }
    }

    fn writer_step(&self, s: &mut State, i: usize) -> Option<()> {
        let w = &mut s.writers[i];
        match w.phase {
            WriterPhase::Idle => {
                s.marks[i] = Some(0);
                w.trust_left = self.trust();
                w.phase = WriterPhase::Marked;
            }
            WriterPhase::Marked => {
                w.phase = WriterPhase::ListedFirst(match self.mutant {
                    Mutant::IndexBeforeCondemnations => s.indexed,
                    _ => s.condemnation.map_or([false; PACKS], |c| c.packs),
                });
            }
            WriterPhase::ListedFirst(first) => {
                let (indexed, condemned) = match self.mutant {
                    Mutant::IndexBeforeCondemnations => {
                        (first, s.condemnation.map_or([false; PACKS], |c| c.packs))
                    }
                    _ => (s.indexed, first),
                };
                // Relies on a pack it saw indexed and not condemned, or uploads its own.
                let relies = (0..PACKS).any(|p| indexed[p] && !condemned[p]);
                w.phase = WriterPhase::Listed { upload: !relies };
            }
            WriterPhase::Listed { upload: true } => {
                s.stored[1 + i] = true;
                w.pack_age = 0;
                w.phase = WriterPhase::Staged;
            }
            WriterPhase::Listed { upload: false } => {
                self.issue(s, i, Visible::Index { pack: false })
            }
            WriterPhase::Staged => self.issue(s, i, Visible::Index { pack: true }),
            WriterPhase::Indexed => self.issue(s, i, Visible::Summary),
            WriterPhase::Ending => {
                // A write given up on may still land: the mark is left to lapse.
                if !w.abandoned || self.mutant == Mutant::ReleaseAfterAbandon {
                    s.marks[i] = None;
                }
                w.phase = WriterPhase::Done;
            }
            WriterPhase::Waiting | WriterPhase::Done => return None,
        }
        Some(())
    }

    fn land(&self, s: &mut State, i: usize) -> Option<()> {
        let flight = s.writers[i].flight.take()?;
        let w = &mut s.writers[i];
        match flight.write {
            Visible::Index { pack } => {
                if pack {
                    s.indexed[1 + i] = true;
                    w.pack_age = 0;
                }
                s.manifests[i] = true;
                w.manifest_age = 0;
                if flight.awaited {
                    w.phase = WriterPhase::Indexed;
                }
            }
            Visible::Summary => {
                s.published[i] = true;
                w.manifest_age = 0;
                if flight.awaited {
                    w.phase = WriterPhase::Ending;
                }
            }
        }
        Some(())
    }

    fn gc_step(&self, s: &mut State) -> Option<()> {
        match s.gc {
            GcPhase::Idle => {
                if s.runs == self.bounds.runs {
                    return None;
                }
                s.runs += 1;
                if self.mutant == Mutant::MarksBeforeCondemnation {
                    s.listed_marks = self.list_marks(s);
                }
                s.gc = GcPhase::Read(s.referenced());
            }
            GcPhase::Read(referenced) => {
                let candidates: [bool; PACKS] = std::array::from_fn(|p| {
                    s.indexed[p] && !referenced && s.condemnation.is_none()
                });
                if candidates.iter().any(|c| *c) {
                    s.condemnation = Some(Condemnation {
                        packs: candidates,
                        armed: None,
                    });
                    s.gc = GcPhase::Written;
                } else {
                    s.gc = GcPhase::SweepChecked;
                }
            }
            GcPhase::Written => {
                // Listed after the condemnation exists (or, mutated, before).
                let listed = match self.mutant {
                    Mutant::MarksBeforeCondemnation => std::mem::take(&mut s.listed_marks),
                    _ => self.list_marks(s),
                };
                let c = s.condemnation.as_mut().expect("written");
                c.armed = Some(listed);
                s.gc = GcPhase::SweepChecked;
            }
            GcPhase::SweepChecked => {
                s.listed_marks = [false; WRITERS];
                let Some(armed) = s.condemnation.and_then(|c| c.armed) else {
                    s.gc = self.unnamed();
                    return Some(());
                };
                let running = self.list_marks(s);
                let waiting = (0..WRITERS).any(|w| armed[w] && running[w]);
                if waiting && self.mutant != Mutant::SweepWithoutWaiting {
                    s.gc = self.unnamed();
                    return Some(());
                }
                s.gc = GcPhase::MarksClear;
            }
            GcPhase::MarksClear => {
                // References read again; a condemned pack stays when B is referenced and
                // no staying pack holds it (the first such pack, as the code keeps it).
                let c = s.condemnation.expect("armed");
                let mut doomed = c.packs;
                let staying = (0..PACKS).any(|p| s.indexed[p] && !c.packs[p]);
                if s.referenced() && !staying {
                    if let Some(keep) = (0..PACKS).find(|&p| doomed[p] && s.indexed[p]) {
                        doomed[keep] = false;
                    }
                }
                s.gc = GcPhase::Decided(doomed);
            }
            GcPhase::Decided(doomed) => {
                for (indexed, doomed) in s.indexed.iter_mut().zip(doomed) {
                    *indexed &= !doomed;
                }
                s.gc = GcPhase::Rewritten(doomed);
            }
            GcPhase::Rewritten(doomed) => {
                for (stored, doomed) in s.stored.iter_mut().zip(doomed) {
                    *stored &= !doomed;
                }
                s.gc = GcPhase::Deleted;
            }
            GcPhase::Deleted => {
                s.condemnation = None;
                s.gc = self.unnamed();
            }
            GcPhase::Unnamed(mut u) => {
                match self.mutant.unnamed_order()[u.done as usize] {
                    Read::Objects => {
                        let old = |age: u8| age >= self.bounds.grace;
                        for i in 0..WRITERS {
                            let w = &s.writers[i];
                            u.packs[1 + i] =
                                s.stored[1 + i] && !s.indexed[1 + i] && old(w.pack_age);
                            u.manifests[i] =
                                s.manifests[i] && !s.published[i] && old(w.manifest_age);
                        }
                        if !u.packs.iter().chain(&u.manifests).any(|c| *c) {
                            s.gc = GcPhase::Idle;
                            return Some(());
                        }
                    }
                    Read::Marks => {
                        let running = self.list_marks(s);
                        u.clear = self.mutant == Mutant::UnnamedByAge || !running.contains(&true);
                        if !u.clear {
                            s.gc = GcPhase::Idle;
                            return Some(());
                        }
                    }
                    Read::Names => {
                        for p in 0..PACKS {
                            u.packs[p] &= !s.indexed[p];
                        }
                        for i in 0..WRITERS {
                            u.manifests[i] &= !s.published[i];
                        }
                    }
                }
                u.done += 1;
                if u.done < 3 {
                    s.gc = GcPhase::Unnamed(u);
                    return Some(());
                }
                for p in 0..PACKS {
                    if u.packs[p] {
                        s.stored[p] = false;
                        s.collected_unnamed = true;
                    }
                }
                for i in 0..WRITERS {
                    if u.manifests[i] {
                        s.manifests[i] = false;
                        s.collected_unnamed = true;
                    }
                }
                s.gc = GcPhase::Idle;
            }
        }
        Some(())
    }

    fn unnamed(&self) -> GcPhase {
        GcPhase::Unnamed(Unnamed {
            done: 0,
            packs: [false; PACKS],
            manifests: [false; WRITERS],
            clear: false,
        })
    }
}

impl Model for GcModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut stored = [false; PACKS];
        stored[0] = true;
        vec![State {
            old_backup: true,
            stored,
            indexed: stored,
            manifests: [false; WRITERS],
            published: [false; WRITERS],
            marks: [None; WRITERS],
            writers: [Writer {
                phase: WriterPhase::Idle,
                trust_left: 0,
                flight: None,
                abandoned: false,
                pack_age: 0,
                manifest_age: 0,
            }; WRITERS],
            condemnation: None,
            gc: GcPhase::Idle,
            runs: 0,
            listed_marks: [false; WRITERS],
            collected_unnamed: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        // Time stops for nobody, but a write lands within its flight bound.
        let overdue = s
            .writers
            .iter()
            .any(|w| w.flight.is_some_and(|f| f.age >= self.bounds.flight));
        if !overdue {
            actions.push(Action::Tick);
        }
        if s.old_backup {
            actions.push(Action::DeleteOldBackup);
        }
        for (i, w) in s.writers.iter().enumerate() {
            let running = !matches!(
                w.phase,
                WriterPhase::Idle | WriterPhase::Ending | WriterPhase::Done
            );
            if !matches!(w.phase, WriterPhase::Waiting | WriterPhase::Done) {
                actions.push(Action::Writer(i));
            }
            // Renewed in the background while it runs, until its deadline passed.
            if running && w.trust_left > 0 && s.marks[i] != Some(0) {
                actions.push(Action::Renew(i));
            }
            if let Some(f) = w.flight {
                actions.push(Action::Land(i));
                if f.awaited {
                    actions.push(Action::Abandon(i));
                }
            }
        }
        actions.push(Action::Gc);
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = *last;
        match action {
            Action::Tick => self.tick(&mut s),
            Action::DeleteOldBackup => s.old_backup = false,
            Action::Writer(i) => self.writer_step(&mut s, i)?,
            Action::Renew(i) => {
                s.marks[i] = Some(0);
                s.writers[i].trust_left = self.trust();
            }
            Action::Abandon(i) => {
                let w = &mut s.writers[i];
                let f = w.flight.as_mut()?;
                f.awaited = false;
                w.abandoned = true;
                w.phase = WriterPhase::Ending;
            }
            Action::Land(i) => self.land(&mut s, i)?,
            Action::Gc => self.gc_step(&mut s)?,
        }
        for w in &mut s.writers {
            if matches!(w.phase, WriterPhase::Ending | WriterPhase::Done) {
                // Renews nothing and writes nothing more: its deadline no longer matters.
                w.trust_left = 0;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(NO_INDEXED_PACK_DELETED, |_, s: &State| {
                (0..PACKS).all(|p| !s.indexed[p] || s.stored[p])
            }),
            Property::always(REFERENCED_BLOB_STORED, |_, s: &State| {
                !s.referenced() || (0..PACKS).any(|p| s.stored[p] && s.indexed[p])
            }),
            Property::always(VISIBLE_MANIFEST_STORED, |_, s: &State| {
                (0..WRITERS).all(|i| !s.published[i] || s.manifests[i])
            }),
            Property::sometimes("a condemned pack is deleted", |_, s: &State| !s.stored[0]),
            Property::sometimes("a writer relies on a pack", |_, s: &State| {
                (0..WRITERS).any(|i| s.published[i] && !s.stored[1 + i])
            }),
            Property::sometimes("a writer's fence refuses a write", |_, s: &State| {
                s.writers
                    .iter()
                    .enumerate()
                    .any(|(i, w)| w.phase == WriterPhase::Done && !s.published[i] && !w.abandoned)
            }),
            // Only a summary given up on can make it visible.
            Property::sometimes("a summary given up on lands", |_, s: &State| {
                (0..WRITERS).any(|i| s.writers[i].abandoned && s.published[i])
            }),
            Property::sometimes("a lapsed mark is judged ended", |_, s: &State| {
                s.writers.iter().enumerate().any(|(i, w)| {
                    w.abandoned && w.phase == WriterPhase::Done && s.marks[i].is_none()
                })
            }),
            Property::sometimes("an unnamed object is collected", |_, s: &State| {
                s.collected_unnamed
            }),
        ]
    }
}

const NO_INDEXED_PACK_DELETED: &str = "no indexed pack is deleted";
const REFERENCED_BLOB_STORED: &str = "a referenced blob has a stored, indexed pack";
const VISIBLE_MANIFEST_STORED: &str = "a visible backup's manifest is stored";

/// The bounds of the suite, or those of `STRATA_GC_MODEL="ttl,flight,grace,runs"`.
fn bounds() -> Bounds {
    let given: Option<Vec<u8>> = std::env::var("STRATA_GC_MODEL").ok().map(|v| {
        v.split(',')
            .map(|n| n.trim().parse().expect("a number"))
            .collect()
    });
    let [ttl, flight, grace, runs] = match given {
        Some(v) => <[u8; 4]>::try_from(v).expect("four numbers"),
        None => [2, 2, 1, 2],
    };
    Bounds {
        ttl,
        flight,
        grace,
        runs,
        // Within ±2 ticks; the rules of the protocol never read them.
        gc_offset: 1,
        writer_offsets: [-1, 2],
    }
}

fn model(mutant: Mutant) -> GcModel {
    GcModel {
        bounds: bounds(),
        mutant,
    }
}

#[test]
fn collection_never_deletes_what_a_backup_or_an_index_names() {
    let started = std::time::Instant::now();
    let checker = model(Mutant::None).checker().spawn_bfs().join();
    checker.assert_properties();
    eprintln!(
        "gc model: {} states in {:.1} s",
        checker.unique_state_count(),
        started.elapsed().as_secs_f32()
    );
}

/// Checks `mutant` until a safety property fails, and says which.
fn counterexample(mutant: Mutant) -> &'static str {
    let safety = [
        NO_INDEXED_PACK_DELETED,
        REFERENCED_BLOB_STORED,
        VISIBLE_MANIFEST_STORED,
    ];
    let checker = model(mutant)
        .checker()
        .finish_when(HasDiscoveries::AnyOf(safety.into_iter().collect()))
        .spawn_bfs()
        .join();
    let found = safety
        .into_iter()
        .find(|p| checker.discovery(p).is_some())
        .unwrap_or_else(|| panic!("{mutant:?}: the checker should find a counterexample"));
    let path = checker.discovery(found).expect("found");
    eprintln!(
        "{mutant:?}: {found} fails ({} states explored) after {:?}",
        checker.unique_state_count(),
        path.into_actions()
    );
    found
}

#[test]
fn mutant_index_listed_before_condemnations_loses_a_blob() {
    assert_eq!(
        counterexample(Mutant::IndexBeforeCondemnations),
        REFERENCED_BLOB_STORED
    );
}

#[test]
fn mutant_marks_listed_before_the_condemnation_loses_a_blob() {
    assert_eq!(
        counterexample(Mutant::MarksBeforeCondemnation),
        REFERENCED_BLOB_STORED
    );
}

#[test]
fn mutant_sweep_without_waiting_loses_a_blob() {
    assert_eq!(
        counterexample(Mutant::SweepWithoutWaiting),
        REFERENCED_BLOB_STORED
    );
}

#[test]
fn mutant_unnamed_deleted_by_age_alone_is_found() {
    counterexample(Mutant::UnnamedByAge);
}

#[test]
fn mutant_no_landing_wait_is_found() {
    counterexample(Mutant::NoLandingWait);
}

#[test]
fn mutant_gc_wall_clock_is_found() {
    counterexample(Mutant::GcWallClock);
}

#[test]
fn mutant_release_after_abandoned_write_is_found() {
    counterexample(Mutant::ReleaseAfterAbandon);
}

#[test]
fn mutant_marks_listed_before_the_objects_is_found() {
    counterexample(Mutant::MarksBeforeListing);
}

#[test]
fn mutant_names_read_before_the_marks_is_found() {
    counterexample(Mutant::NamesBeforeMarks);
}

/// The model judges marks by [`ended_by_storage`] in ticks; the code by
/// [`crate::lock::has_ended`] in milliseconds, where a second is added to the lease for
/// modification times of whole seconds: the same rule.
#[test]
fn the_models_rule_for_an_ended_writer_is_the_codes() {
    let flight = chain::max_flight().as_millis() as u64;
    let (written, ttl) = (1_000_000u64, 90_000u64);
    let mark = crate::lock::LockRecord {
        operation: "backup-1".into(),
        kind: "backup".into(),
        holder: "h:1".into(),
        started_ms: 0,
        // The writer's wall clock: not read.
        expires_ms: 0,
        generation: 0,
        state: crate::lock::LockState::Held,
        note: None,
        ttl_ms: Some(ttl),
        process: None,
        backup: None,
    };
    let boundary = written + ttl + 1_000 + flight;
    for now in [written, written + ttl, boundary - 1, boundary, boundary + 1] {
        assert_eq!(
            crate::lock::has_ended(&mark, Some(written), now),
            ended_by_storage(written, ttl + 1_000, flight, now),
            "at {now}"
        );
    }
}
