//! Restoring a snapshot: rules, a plan that can be shown as a dry run, and its application.

use crate::client::normalize;
use crate::shown::show_bytes;
use crate::{Client, EtcdError, LeasedKeys, Snapshot};
use std::collections::{BTreeMap, HashMap};

/// How a snapshot is written back.
///
/// Keys keep the prefix they were backed up under unless `target_prefix` moves them;
/// `rename` rewrites the rest of each key and each value. The prefix part of a key is
/// never touched by `rename`, so a restore writes only under the backed-up prefixes or
/// where `target_prefix` sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restore {
    /// `(from, to)`: keys under `from` are written under `to` instead (e.g.
    /// `/service/old-cluster/` → `/service/new/`).
    pub target_prefix: Option<(String, String)>,
    /// `(old, new)` literal substring replacements, applied in order to every key (after
    /// its prefix) and every value: node names, endpoints (`db1` → `newdb1`,
    /// `10.0.0.1:5432` → `10.1.0.1:5432`). Literal means `db1` also matches in `db10`.
    pub rename: Vec<(String, String)>,
    /// Keys bound to a lease in the snapshot: skipped or written without lease.
    pub leased: LeasedKeys,
    /// Write even when the target prefixes already hold keys. Keys there that are not in
    /// the snapshot are left alone either way: a restore never deletes.
    pub overwrite: bool,
}

impl Restore {
    /// Parses `old=new` (split at the first `=`, so `old` cannot contain one; `new` may
    /// be empty to remove `old`).
    pub fn parse_rule(text: &str) -> Result<(String, String), EtcdError> {
        let Some((old, new)) = text.split_once('=') else {
            return Err(EtcdError::Rule(format!(
                "{text:?} is not a rule: write old=new"
            )));
        };
        if old.is_empty() {
            return Err(EtcdError::Rule(format!(
                "rule {text:?} has nothing before `=` to replace"
            )));
        }
        Ok((old.to_string(), new.to_string()))
    }
}

/// What a restore does with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The key does not exist: it is created.
    Put,
    /// The key exists with another value: it is written over (needs `overwrite`).
    Change,
    /// The key exists with this value: nothing to do.
    Same,
    /// The key was bound to a lease and the policy is `skip`.
    SkipLeased,
}

impl Action {
    /// The word used in plan lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Put => "put",
            Action::Change => "change",
            Action::Same => "same",
            Action::SkipLeased => "skip-leased",
        }
    }
}

/// One key of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    /// The key in the snapshot.
    pub source_key: Vec<u8>,
    /// The key written (equal to `source_key` unless moved or renamed).
    pub key: Vec<u8>,
    /// The value written, renamed.
    pub value: Vec<u8>,
    /// The value in etcd when the plan was made, if the key existed.
    pub current: Option<Vec<u8>>,
    /// The key's `mod_revision` when the plan was made (0: it did not exist): the write
    /// happens only if it is still that.
    pub current_revision: i64,
    /// What will be done.
    pub action: Action,
}

/// A restore worked out against what etcd holds now; [`RestorePlan::lines`] shows it,
/// [`Client::apply`] carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// Where the restore writes: the snapshot's prefixes after `target_prefix`.
    pub target_prefixes: Vec<Vec<u8>>,
    /// Keys under the target prefixes when the plan was made (snapshot's or not).
    pub existing_keys: u64,
    /// The revision etcd was read at for the comparison.
    pub revision: i64,
    /// From the rules: write over existing keys.
    pub overwrite: bool,
    /// Every key of the snapshot, in target key order.
    pub entries: Vec<PlanEntry>,
}

/// What [`Client::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Keys created.
    pub put: u64,
    /// Keys written over.
    pub changed: u64,
    /// Keys already holding their value.
    pub same: u64,
    /// Leased keys left out.
    pub skipped_leased: u64,
    /// Transactions the writes took: one (all or nothing) unless there were more than
    /// [`TXN_OPS`] keys or [`TXN_BYTES`] to write.
    pub transactions: u64,
    /// etcd's revision after the last write (0 when nothing was written).
    pub revision: i64,
}

impl RestorePlan {
    /// How many entries have this action.
    pub fn count(&self, action: Action) -> usize {
        self.entries.iter().filter(|e| e.action == action).count()
    }

    /// Keys under the target prefixes that a restore would write over or that the
    /// snapshot does not hold: all but those already holding their value (a restore run
    /// again after one that stopped part-way finds its own keys there, and goes on).
    pub fn conflicting_keys(&self) -> u64 {
        self.existing_keys
            .saturating_sub(self.count(Action::Same) as u64)
    }

    /// Why [`Client::apply`] will refuse this plan, if it will.
    pub fn refusal(&self) -> Option<String> {
        let conflicting = self.conflicting_keys();
        if conflicting > 0 && !self.overwrite {
            Some(format!(
                "{conflicting} keys under {} hold other values or are not in the backup (empty the prefix, restore elsewhere with move_prefix, or set overwrite = true in [components.etcd] to write over them)",
                show_prefixes(&self.target_prefixes)
            ))
        } else {
            None
        }
    }

    /// The plan as lines for a dry run: a summary, then one line per key with its action,
    /// its name before a rename, and its value (truncated; binary values in hex).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "restore {} keys into {} (etcd at revision {}): {} put, {} change, {} same, {} skip-leased",
            self.entries.len(),
            show_prefixes(&self.target_prefixes),
            self.revision,
            self.count(Action::Put),
            self.count(Action::Change),
            self.count(Action::Same),
            self.count(Action::SkipLeased),
        )];
        if let Some(reason) = self.refusal() {
            lines.push(format!("refused: {reason}"));
        }
        for e in &self.entries {
            let mut line = format!("{:<11} {}", e.action.as_str(), show_bytes(&e.key, 80));
            if e.source_key != e.key {
                line.push_str(&format!(" (from {})", show_bytes(&e.source_key, 80)));
            }
            match (e.action, &e.current) {
                (Action::Put, _) => line.push_str(&format!(" = {}", show_bytes(&e.value, 60))),
                (Action::Change, Some(current)) => line.push_str(&format!(
                    " = {} (was {})",
                    show_bytes(&e.value, 60),
                    show_bytes(current, 60)
                )),
                (Action::SkipLeased, _) => line.push_str(" (bound to a lease)"),
                _ => {}
            }
            lines.push(line);
        }
        lines
    }
}

fn show_prefixes(prefixes: &[Vec<u8>]) -> String {
    prefixes
        .iter()
        .map(|p| show_bytes(p, 80))
        .collect::<Vec<_>>()
        .join(", ")
}

fn replace(haystack: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(old) {
            out.extend_from_slice(new);
            i += old.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// A snapshot key after the rules.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub source: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub leased: bool,
}

/// Applies the rules to every key, without etcd: the target prefixes (normalized) and
/// the keys in target order. Refuses a key outside the snapshot's prefixes, a rename
/// that makes two keys one, and an empty key.
pub(crate) fn map_snapshot(
    snapshot: &Snapshot,
    rules: &Restore,
) -> Result<(Vec<Vec<u8>>, Vec<Mapped>), EtcdError> {
    for (old, _) in &rules.rename {
        if old.is_empty() {
            return Err(EtcdError::Rule(
                "a rename rule with nothing to replace".into(),
            ));
        }
    }
    let rename = |bytes: &[u8]| {
        rules.rename.iter().fold(bytes.to_vec(), |acc, (old, new)| {
            replace(&acc, old.as_bytes(), new.as_bytes())
        })
    };
    let moved = rules
        .target_prefix
        .as_ref()
        .map(|(from, to)| (from.as_bytes(), to.as_bytes()));

    // Where each backed-up prefix goes: moved whole when it is inside `from`; when `from`
    // is inside it, the keys under `from` go to `to` and the others stay.
    let mut targets = Vec::new();
    for prefix in &snapshot.prefixes {
        match moved {
            Some((from, to)) if prefix.starts_with(from) => {
                targets.push([to, &prefix[from.len()..]].concat())
            }
            Some((from, to)) if from.starts_with(prefix) => {
                targets.push(prefix.clone());
                targets.push(to.to_vec());
            }
            _ => targets.push(prefix.clone()),
        }
    }
    if let Some((from, _)) = moved {
        let touches = snapshot
            .prefixes
            .iter()
            .any(|p| p.starts_with(from) || from.starts_with(p));
        if !touches {
            return Err(EtcdError::Rule(format!(
                "move_prefix {} is neither inside nor around a backed-up prefix ({}): nothing would move",
                show_bytes(from, 80),
                show_prefixes(&snapshot.prefixes)
            )));
        }
    }
    let targets = normalize(&targets);

    let mut out: BTreeMap<Vec<u8>, Mapped> = BTreeMap::new();
    for kv in &snapshot.kvs {
        let prefix = snapshot
            .prefixes
            .iter()
            .filter(|p| kv.key.starts_with(p))
            .max_by_key(|p| p.len())
            .ok_or_else(|| {
                EtcdError::Rule(format!(
                    "key {} is outside the snapshot's prefixes",
                    show_bytes(&kv.key, 80)
                ))
            })?;
        // The fixed part of the new key, and the rest that `rename` rewrites.
        let (fixed, rest) = match moved {
            Some((from, to)) if prefix.starts_with(from) => (
                [to, &prefix[from.len()..]].concat(),
                &kv.key[prefix.len()..],
            ),
            Some((from, to)) if kv.key.starts_with(from) => (to.to_vec(), &kv.key[from.len()..]),
            _ => (prefix.clone(), &kv.key[prefix.len()..]),
        };
        let key = [fixed, rename(rest)].concat();
        if key.is_empty() {
            return Err(EtcdError::Rule(format!(
                "key {} would be renamed to an empty key",
                show_bytes(&kv.key, 80)
            )));
        }
        // Holds by construction; checked because writing elsewhere must never happen.
        if !targets.iter().any(|t| key.starts_with(t)) {
            return Err(EtcdError::Rule(format!(
                "key {} would be written outside the target prefixes",
                show_bytes(&key, 80)
            )));
        }
        if let Some(other) = out.get(&key) {
            return Err(EtcdError::Rule(format!(
                "keys {} and {} would both be restored as {}",
                show_bytes(&other.source, 80),
                show_bytes(&kv.key, 80),
                show_bytes(&key, 80)
            )));
        }
        out.insert(
            key.clone(),
            Mapped {
                source: kv.key.clone(),
                key,
                value: rename(&kv.value),
                leased: kv.lease != 0,
            },
        );
    }
    Ok((targets, out.into_values().collect()))
}

impl Client {
    /// Plans a restore: applies the rules and compares each key with what etcd holds now
    /// under the target prefixes (read at one revision). Writes nothing, so it is the
    /// dry run too.
    pub async fn plan_restore(
        &self,
        snapshot: &Snapshot,
        rules: &Restore,
    ) -> Result<RestorePlan, EtcdError> {
        let (targets, mapped) = map_snapshot(snapshot, rules)?;
        let wanted: HashMap<&[u8], ()> = mapped.iter().map(|m| (m.key.as_slice(), ())).collect();
        let mut current: HashMap<Vec<u8>, (Vec<u8>, i64)> = HashMap::new();
        let mut existing = 0u64;
        let (revision, _) = self
            .scan(&targets, |kv| {
                existing += 1;
                if wanted.contains_key(kv.key.as_slice()) {
                    current.insert(kv.key, (kv.value, kv.mod_revision));
                }
                Ok(())
            })
            .await?;
        let entries = mapped
            .into_iter()
            .map(|m| {
                let (now, revision) = match current.remove(&m.key) {
                    Some((value, revision)) => (Some(value), revision),
                    None => (None, 0),
                };
                let action = if m.leased && rules.leased == LeasedKeys::Skip {
                    Action::SkipLeased
                } else {
                    match &now {
                        None => Action::Put,
                        Some(value) if *value == m.value => Action::Same,
                        Some(_) => Action::Change,
                    }
                };
                PlanEntry {
                    source_key: m.source,
                    key: m.key,
                    value: m.value,
                    current: now,
                    current_revision: revision,
                    action,
                }
            })
            .collect();
        Ok(RestorePlan {
            target_prefixes: targets,
            existing_keys: existing,
            revision,
            overwrite: rules.overwrite,
            entries,
        })
    }

    /// Carries out a plan in transactions, each all or nothing: every key of the plan
    /// (written or already holding its value) must still be as the plan found it (absent,
    /// or at the `mod_revision` it was read at), else that transaction writes nothing and
    /// the restore stops with why. Up to [`TXN_OPS`]
    /// keys and [`TXN_BYTES`] go in one transaction, so a topology-sized restore is one:
    /// atomic. Refuses when the target prefixes held conflicting keys at planning time,
    /// or hold more now than the plan's own (counted again just before writing), unless
    /// the plan allows overwriting. Keys are written without lease, and only under the
    /// plan's target prefixes.
    pub async fn apply(&self, plan: &RestorePlan) -> Result<RestoreReport, EtcdError> {
        if let Some(reason) = plan.refusal() {
            return Err(EtcdError::Refused(reason));
        }
        // A plan's fields are public: check again that it writes only where it says.
        for e in &plan.entries {
            if !plan.target_prefixes.iter().any(|t| e.key.starts_with(t)) {
                return Err(EtcdError::Rule(format!(
                    "key {} is outside the plan's target prefixes",
                    show_bytes(&e.key, 80)
                )));
            }
        }
        if !plan.overwrite {
            let now = self.count(&plan.target_prefixes).await?;
            let own = plan.count(Action::Same) as u64;
            if now > own {
                return Err(EtcdError::Refused(format!(
                    "{} keys appeared under {} since the plan was made",
                    now - own,
                    show_prefixes(&plan.target_prefixes)
                )));
            }
        }
        let mut report = RestoreReport::default();
        for e in &plan.entries {
            match e.action {
                Action::Same => report.same += 1,
                Action::SkipLeased => report.skipped_leased += 1,
                Action::Put | Action::Change => {}
            }
        }
        // Keys already holding their value are compared too: a restore never reports
        // success over a key someone changed since the plan.
        let keys: Vec<&PlanEntry> = plan
            .entries
            .iter()
            .filter(|e| matches!(e.action, Action::Put | Action::Change | Action::Same))
            .collect();
        for batch in transactions(&keys) {
            let guarded: Vec<crate::client::Guarded> = batch
                .iter()
                .map(|e| crate::client::Guarded {
                    key: &e.key,
                    mod_revision: e.current_revision,
                    put: (e.action != Action::Same).then_some(e.value.as_slice()),
                })
                .collect();
            let Some(revision) = self.put_if(&guarded).await? else {
                return Err(EtcdError::Refused(format!(
                    "a key of {} was written by someone else since the plan was made: that transaction wrote nothing; {} keys were written before it (run the restore again: keys already holding their value count as the same)",
                    show_prefixes(&plan.target_prefixes),
                    report.put + report.changed
                )));
            };
            report.transactions += 1;
            for e in batch {
                match e.action {
                    Action::Put => report.put += 1,
                    Action::Change => report.changed += 1,
                    _ => continue,
                }
                report.revision = revision;
            }
        }
        Ok(report)
    }
}

/// Most keys written in one transaction: etcd's `--max-txn-ops` default.
pub const TXN_OPS: usize = 128;

/// Most bytes of keys and values in one transaction, well under etcd's
/// `--max-request-bytes` default (1.5 MiB) once base64 and JSON are added.
pub const TXN_BYTES: usize = 512 * 1024;

/// `keys` cut into transactions of at most [`TXN_OPS`] keys and [`TXN_BYTES`] of keys
/// and values written (a single larger key goes alone).
fn transactions<'a>(keys: &'a [&'a PlanEntry]) -> Vec<&'a [&'a PlanEntry]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, e) in keys.iter().enumerate() {
        let size = e.key.len()
            + match e.action {
                Action::Same => 0,
                _ => e.value.len(),
            };
        if i > start && (i - start == TXN_OPS || bytes + size > TXN_BYTES) {
            out.push(&keys[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < keys.len() {
        out.push(&keys[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kv;

    fn snap(prefixes: &[&str], kvs: &[(&str, &str, i64)]) -> Snapshot {
        Snapshot {
            revision: 1,
            cluster_id: "c".into(),
            prefixes: prefixes.iter().map(|p| p.as_bytes().to_vec()).collect(),
            kvs: kvs
                .iter()
                .map(|(k, v, lease)| Kv {
                    key: k.as_bytes().to_vec(),
                    value: v.as_bytes().to_vec(),
                    lease: *lease,
                    create_revision: 1,
                    mod_revision: 1,
                    version: 1,
                })
                .collect(),
        }
    }

    fn keys(mapped: &[Mapped]) -> Vec<String> {
        mapped
            .iter()
            .map(|m| String::from_utf8(m.key.clone()).unwrap())
            .collect()
    }

    #[test]
    fn parse_rule() {
        assert_eq!(
            Restore::parse_rule("db1=newdb1").unwrap(),
            ("db1".into(), "newdb1".into())
        );
        assert_eq!(
            Restore::parse_rule("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert_eq!(Restore::parse_rule("x=").unwrap(), ("x".into(), "".into()));
        let err = Restore::parse_rule("db1").unwrap_err().to_string();
        assert!(err.contains("write old=new"), "{err}");
        assert!(Restore::parse_rule("=x").is_err());
    }

    #[test]
    fn renames_never_touch_the_prefix() {
        let s = snap(
            &["/service/old/"],
            &[("/service/old/members/db1", "old db1 at 10.0.0.1:5432", 0)],
        );
        let rules = Restore {
            target_prefix: Some(("/service/old/".into(), "/service/new/".into())),
            rename: vec![
                ("db1".into(), "newdb1".into()),
                ("/service/".into(), "/elsewhere/".into()),
                ("old".into(), "X".into()),
                ("10.0.0.1:5432".into(), "10.1.0.1:5432".into()),
            ],
            ..Restore::default()
        };
        let (targets, mapped) = map_snapshot(&s, &rules).unwrap();
        assert_eq!(targets, vec![b"/service/new/".to_vec()]);
        assert_eq!(keys(&mapped), ["/service/new/members/newdb1"]);
        assert_eq!(mapped[0].value, b"X newdb1 at 10.1.0.1:5432");
    }

    #[test]
    fn prefixes_inside_and_around_from() {
        // The whole /service/ backed up, only /service/old/ moved: the rest stays.
        let s = snap(
            &["/service/"],
            &[("/service/old/a", "1", 0), ("/service/z/b", "2", 0)],
        );
        let rules = Restore {
            target_prefix: Some(("/service/old/".into(), "/new/".into())),
            ..Restore::default()
        };
        let (targets, mapped) = map_snapshot(&s, &rules).unwrap();
        assert_eq!(targets, vec![b"/new/".to_vec(), b"/service/".to_vec()]);
        assert_eq!(keys(&mapped), ["/new/a", "/service/z/b"]);
        // /a/x/ backed up, /a/ moved to /b/: lands under /b/x/.
        let s = snap(&["/a/x/"], &[("/a/x/k", "1", 0)]);
        let rules = Restore {
            target_prefix: Some(("/a/".into(), "/b/".into())),
            rename: vec![("x".into(), "y".into())],
            ..Restore::default()
        };
        let (targets, mapped) = map_snapshot(&s, &rules).unwrap();
        assert_eq!(targets, vec![b"/b/x/".to_vec()]);
        assert_eq!(keys(&mapped), ["/b/x/k"]);
    }

    #[test]
    fn a_move_prefix_that_matches_no_backed_up_prefix_is_refused() {
        let s = snap(&["/service/pg/"], &[("/service/pg/config", "a", 0)]);
        let rules = Restore {
            target_prefix: Some(("/service/other/".into(), "/service/new/".into())),
            ..Restore::default()
        };
        let err = map_snapshot(&s, &rules).unwrap_err().to_string();
        assert!(err.contains("nothing would move"), "{err}");
        let around = Restore {
            target_prefix: Some(("/service/".into(), "/moved/".into())),
            ..Restore::default()
        };
        assert!(map_snapshot(&s, &around).is_ok());
    }

    #[test]
    fn collisions_and_stray_keys_are_refused() {
        let s = snap(&["/p/"], &[("/p/db1", "a", 0), ("/p/db2", "b", 0)]);
        let rules = Restore {
            rename: vec![("db2".into(), "db1".into())],
            ..Restore::default()
        };
        let err = map_snapshot(&s, &rules).unwrap_err().to_string();
        assert!(err.contains("would both be restored"), "{err}");
        let stray = snap(&["/p/"], &[("/q/x", "a", 0)]);
        let err = map_snapshot(&stray, &Restore::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the snapshot's prefixes"), "{err}");
        let empty = snap(&[""], &[("k", "a", 0)]);
        let rules = Restore {
            rename: vec![("k".into(), "".into())],
            ..Restore::default()
        };
        assert!(map_snapshot(&empty, &rules).is_err());
    }

    #[test]
    fn writes_are_cut_into_transactions_by_count_and_bytes() {
        let entry = |size: usize| PlanEntry {
            source_key: b"k".to_vec(),
            key: b"k".to_vec(),
            value: vec![b'v'; size],
            current: None,
            current_revision: 0,
            action: Action::Put,
        };
        let small: Vec<PlanEntry> = (0..300).map(|_| entry(10)).collect();
        let refs: Vec<&PlanEntry> = small.iter().collect();
        let sizes: Vec<usize> = transactions(&refs).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [128, 128, 44]);
        let big: Vec<PlanEntry> = (0..5).map(|_| entry(200 * 1024)).collect();
        let refs: Vec<&PlanEntry> = big.iter().collect();
        let sizes: Vec<usize> = transactions(&refs).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        let huge = [entry(TXN_BYTES * 2)];
        let refs: Vec<&PlanEntry> = huge.iter().collect();
        assert_eq!(
            transactions(&refs).len(),
            1,
            "a key larger than the bound goes alone"
        );
        assert!(transactions(&[]).is_empty());
    }

    #[test]
    fn values_are_shown_readably() {
        assert_eq!(show_bytes(b"abc", 10), "\"abc\"");
        assert_eq!(show_bytes(b"abcdef", 3), "\"abc\"… (6 bytes)");
        assert_eq!(show_bytes(&[0, 159, 255], 10), "0x009fff (3 bytes, binary)");
        assert_eq!(show_bytes(&[1; 10], 4), "0x0101… (10 bytes, binary)");
    }
}
