//! Who uploads which missing chunk.
//!
//! Every chunk the repository lacks goes to exactly one node that holds it. Chunks held by
//! few nodes are placed first (they have the fewest choices), larger before smaller, and
//! each goes to the holder with the fewest bytes assigned so far: the nodes finish their
//! uploads at about the same time and data shared by several nodes is sent once.

use std::collections::{BTreeMap, HashMap, HashSet};
use strata_repo::BlobId;

/// The missing chunks and their holders (node indexes), as the scans reported them.
#[derive(Debug, Default)]
pub struct Holdings {
    chunks: HashMap<BlobId, (u32, Vec<usize>)>,
}

impl Holdings {
    /// Notes that node `node` holds chunk `id` of `len` bytes.
    pub fn add(&mut self, node: usize, id: BlobId, len: u32) {
        let entry = self.chunks.entry(id).or_insert((len, Vec::new()));
        if !entry.1.contains(&node) {
            entry.1.push(node);
        }
    }

    /// Number of distinct missing chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether nothing is missing.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Plaintext bytes of the distinct missing chunks.
    pub fn bytes(&self) -> u64 {
        self.chunks.values().map(|(len, _)| *len as u64).sum()
    }

    /// The nodes that hold `id`.
    pub fn holders(&self, id: &BlobId) -> &[usize] {
        self.chunks
            .get(id)
            .map(|(_, h)| h.as_slice())
            .unwrap_or(&[])
    }

    /// Assigns `ids` to holders not in `excluded[id]` and not in `down`: node -> chunks.
    /// Chunks with no eligible holder are returned separately.
    pub fn assign(
        &self,
        ids: impl IntoIterator<Item = BlobId>,
        excluded: &HashMap<BlobId, HashSet<usize>>,
        down: &HashSet<usize>,
    ) -> (BTreeMap<usize, Vec<BlobId>>, Vec<BlobId>) {
        let mut work: Vec<(BlobId, u32, Vec<usize>)> = ids
            .into_iter()
            .filter_map(|id| {
                let (len, holders) = self.chunks.get(&id)?;
                let eligible: Vec<usize> = holders
                    .iter()
                    .copied()
                    .filter(|n| !down.contains(n))
                    .filter(|n| !excluded.get(&id).is_some_and(|x| x.contains(n)))
                    .collect();
                Some((id, *len, eligible))
            })
            .collect();
        // Rarest first, then largest; the id breaks ties so the plan is deterministic.
        work.sort_by(|a, b| {
            (a.2.len(), std::cmp::Reverse(a.1), a.0 .0).cmp(&(
                b.2.len(),
                std::cmp::Reverse(b.1),
                b.0 .0,
            ))
        });
        let mut load: HashMap<usize, u64> = HashMap::new();
        let mut plan: BTreeMap<usize, Vec<BlobId>> = BTreeMap::new();
        let mut orphans = Vec::new();
        for (id, len, eligible) in work {
            let Some(&node) = eligible
                .iter()
                .min_by_key(|n| (load.get(n).copied().unwrap_or(0), **n))
            else {
                orphans.push(id);
                continue;
            };
            *load.entry(node).or_default() += len as u64;
            plan.entry(node).or_default().push(id);
        }
        (plan, orphans)
    }

    /// All missing chunk ids.
    pub fn ids(&self) -> Vec<BlobId> {
        self.chunks.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlobId {
        BlobId([n; 32])
    }

    fn bytes_of(h: &Holdings, plan: &BTreeMap<usize, Vec<BlobId>>, node: usize) -> u64 {
        plan.get(&node)
            .map(|ids| ids.iter().map(|i| h.chunks[i].0 as u64).sum())
            .unwrap_or(0)
    }

    #[test]
    fn every_chunk_goes_to_exactly_one_holder_and_load_is_balanced() {
        let mut h = Holdings::default();
        // Chunks 0..30 on all three nodes, 100 bytes each; chunk 50 only on node 2.
        for c in 0..30 {
            for node in 0..3 {
                h.add(node, id(c), 100);
            }
        }
        h.add(2, id(50), 1000);
        let (plan, orphans) = h.assign(h.ids(), &HashMap::new(), &HashSet::new());
        assert!(orphans.is_empty());
        let all: Vec<BlobId> = plan.values().flatten().copied().collect();
        assert_eq!(all.len(), 31);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 31);
        assert!(
            plan[&2].contains(&id(50)),
            "the only holder gets the rare chunk"
        );
        // 4000 bytes over three nodes: node 2 starts with its 1000-byte chunk, then the
        // shared ones fill the others up first; no node is more than one chunk ahead.
        let loads: Vec<u64> = (0..3).map(|n| bytes_of(&h, &plan, n)).collect();
        assert_eq!(loads.iter().sum::<u64>(), 4000);
        assert!(
            loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 100,
            "{loads:?}"
        );
    }

    #[test]
    fn failed_holders_and_down_nodes_are_skipped() {
        let mut h = Holdings::default();
        h.add(0, id(1), 10);
        h.add(1, id(1), 10);
        h.add(1, id(2), 10);
        let excluded = HashMap::from([(id(1), HashSet::from([0]))]);
        let (plan, orphans) = h.assign(h.ids(), &excluded, &HashSet::new());
        assert_eq!(plan[&1].len(), 2);
        assert!(orphans.is_empty());
        let (plan, orphans) = h.assign(h.ids(), &excluded, &HashSet::from([1]));
        assert!(plan.is_empty());
        assert_eq!(orphans.len(), 2);
    }
}
