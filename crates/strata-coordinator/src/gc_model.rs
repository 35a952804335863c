//! An exhaustive check of two-phase garbage collection against writers (backups, WAL
//! pushes) with the `stateright` model checker: every interleaving of two writers, two
//! collection runs and a user deleting a backup, where writers' marks lapse at any
//! moment (a stalled writer: its fence then refuses what it would make visible).
//!
//! One blob B, stored in pack 0 at the start and referenced by one backup (which the user
//! may delete, making B garbage). Each writer makes a backup that references B: it marks
//! itself, lists the condemnations, lists the index, and either relies on a live pack
//! that is not condemned or uploads its own copy (pack 1 + its number) and indexes it,
//! then publishes its summary and releases its mark. A collection reads the references,
//! condemns the indexed packs if B is unreferenced, lists the marks and arms the
//! condemnation with them; its sweep (in the same run or a later one) waits for the armed
//! writers, reads the references again, keeps a condemned pack only when B is referenced
//! and no staying pack holds it, rewrites the index without the others, deletes them and
//! removes the condemnation. Every write lands before its writer goes on (each side waits
//! for its answer), so the interleavings are those of the landings.
//!
//! The invariants: **no indexed pack is deleted**, and **a referenced blob always has a
//! pack that is stored and indexed**. Each rule is needed ([`each_rule_is_needed`]):
//! listing the index before the condemnations, arming with marks listed before the
//! condemnation was written, or sweeping without waiting for the armed writers each
//! lets the checker find B referenced with no copy left.

use stateright::{Checker, Model, Property};

const WRITERS: usize = 2;
const PACKS: usize = 1 + WRITERS;
/// Collection runs explored (each may condemn and sweep).
const RUNS: u8 = 2;

/// Rules that can be weakened, to show the checker finds what each one prevents.
#[derive(Clone, Copy, Debug, Default)]
struct Weakened {
    index_before_condemnations: bool,
    marks_before_condemnation: bool,
    sweep_without_waiting: bool,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum WriterPhase {
    Idle,
    Marked,
    /// Listed the condemnations (or, weakened, the index) first.
    ListedFirst,
    Decided,
    Published,
    Done,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Writer {
    phase: WriterPhase,
    /// Packs the writer saw condemned, and indexed, in its two listings.
    saw_condemned: [bool; PACKS],
    saw_indexed: [bool; PACKS],
    lapsed: bool,
    /// Its summary is visible.
    published: bool,
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
    /// No armed writer was live: the references are read next.
    MarksClear,
    /// References read again; the doomed packs decided.
    Decided([bool; PACKS]),
    Rewritten([bool; PACKS]),
    Deleted,
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
    indexed: [bool; PACKS],
    marks: [bool; WRITERS],
    writers: [Writer; WRITERS],
    condemnation: Option<Condemnation>,
    gc: GcPhase,
    runs: u8,
    /// Marks listed between the condemnation's write and its arming (or before, weakened).
    listed_marks: [bool; WRITERS],
}

impl State {
    fn referenced(&self) -> bool {
        self.old_backup || self.writers.iter().any(|w| w.published)
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Action {
    DeleteOldBackup,
    Writer(usize),
    Lapse(usize),
    Gc,
}

struct GcModel {
    weakened: Weakened,
}

impl GcModel {
    fn writer_step(&self, s: &mut State, i: usize) -> Option<()> {
        let w = &mut s.writers[i];
        match w.phase {
            WriterPhase::Idle => {
                s.marks[i] = true;
                w.phase = WriterPhase::Marked;
            }
            WriterPhase::Marked | WriterPhase::ListedFirst => {
                let condemned_now = s.condemnation.map_or([false; PACKS], |c| c.packs);
                let condemnations_first = !self.weakened.index_before_condemnations;
                let first = w.phase == WriterPhase::Marked;
                if first == condemnations_first {
                    w.saw_condemned = condemned_now;
                } else {
                    w.saw_indexed = s.indexed;
                }
                w.phase = if first {
                    WriterPhase::ListedFirst
                } else {
                    WriterPhase::Decided
                };
            }
            WriterPhase::Decided => {
                // Relies on a pack it saw indexed and not condemned, or uploads its own.
                let relies = (0..PACKS).any(|p| w.saw_indexed[p] && !w.saw_condemned[p]);
                if w.lapsed {
                    // Fenced: its index object and summary are refused.
                    w.phase = WriterPhase::Done;
                    return Some(());
                }
                if !relies {
                    s.stored[1 + i] = true;
                    s.indexed[1 + i] = true;
                }
                w.published = true;
                w.phase = WriterPhase::Published;
            }
            WriterPhase::Published => {
                s.marks[i] = false;
                w.phase = WriterPhase::Done;
            }
            WriterPhase::Done => return None,
        }
        Some(())
    }

    fn gc_step(&self, s: &mut State) -> Option<()> {
        match s.gc {
            GcPhase::Idle => {
                if s.runs == RUNS {
                    return None;
                }
                s.runs += 1;
                if self.weakened.marks_before_condemnation {
                    s.listed_marks = s.marks;
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
                if !self.weakened.marks_before_condemnation {
                    s.listed_marks = s.marks;
                }
                let c = s.condemnation.as_mut().expect("written");
                c.armed = Some(s.listed_marks);
                s.gc = GcPhase::SweepChecked;
            }
            GcPhase::SweepChecked => {
                let Some(c) = s.condemnation.filter(|c| c.armed.is_some()) else {
                    s.gc = GcPhase::Idle;
                    return Some(());
                };
                let waiting = (0..WRITERS).any(|w| c.armed.expect("armed")[w] && s.marks[w]);
                if waiting && !self.weakened.sweep_without_waiting {
                    s.gc = GcPhase::Idle;
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
                s.gc = GcPhase::Idle;
            }
        }
        Some(())
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
            marks: [false; WRITERS],
            writers: [Writer {
                phase: WriterPhase::Idle,
                saw_condemned: [false; PACKS],
                saw_indexed: [false; PACKS],
                lapsed: false,
                published: false,
            }; WRITERS],
            condemnation: None,
            gc: GcPhase::Idle,
            runs: 0,
            listed_marks: [false; WRITERS],
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.old_backup {
            actions.push(Action::DeleteOldBackup);
        }
        for (i, w) in s.writers.iter().enumerate() {
            if w.phase != WriterPhase::Done {
                actions.push(Action::Writer(i));
            }
            // A stalled writer: its mark is judged expired and its fence closes.
            if !w.lapsed && s.marks[i] {
                actions.push(Action::Lapse(i));
            }
        }
        actions.push(Action::Gc);
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = *last;
        match action {
            Action::DeleteOldBackup => s.old_backup = false,
            Action::Writer(i) => self.writer_step(&mut s, i)?,
            Action::Lapse(i) => {
                s.writers[i].lapsed = true;
                s.marks[i] = false;
            }
            Action::Gc => self.gc_step(&mut s)?,
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no indexed pack is deleted", |_, s: &State| {
                (0..PACKS).all(|p| !s.indexed[p] || s.stored[p])
            }),
            Property::always(
                "a referenced blob has a stored, indexed pack",
                |_, s: &State| !s.referenced() || (0..PACKS).any(|p| s.stored[p] && s.indexed[p]),
            ),
            Property::sometimes("a condemned pack is deleted", |_, s: &State| !s.stored[0]),
            Property::sometimes("a writer relies on a pack", |_, s: &State| {
                s.writers
                    .iter()
                    .enumerate()
                    .any(|(i, w)| w.published && !s.stored[1 + i])
            }),
        ]
    }
}

fn check(weakened: Weakened) -> impl Checker<GcModel> {
    GcModel { weakened }.checker().spawn_bfs().join()
}

#[test]
fn two_phase_collection_never_deletes_what_a_backup_references() {
    let checker = check(Weakened::default());
    checker.assert_properties();
    eprintln!("gc model: {} states", checker.unique_state_count());
}

#[test]
fn each_rule_is_needed() {
    for weakened in [
        Weakened {
            index_before_condemnations: true,
            ..Default::default()
        },
        Weakened {
            marks_before_condemnation: true,
            ..Default::default()
        },
        Weakened {
            sweep_without_waiting: true,
            ..Default::default()
        },
    ] {
        let checker = check(weakened);
        assert!(
            checker
                .discovery("a referenced blob has a stored, indexed pack")
                .is_some(),
            "{weakened:?} should lose a referenced blob"
        );
    }
}
