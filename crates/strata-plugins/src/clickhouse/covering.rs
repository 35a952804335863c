//! Which parts make a shard's data: the covering set of the union of its replicas' parts.
//!
//! A replicated table's block numbers are allocated per partition through ZooKeeper, so
//! every replica of a shard numbers its parts alike: the same name is the same data, and
//! a part whose block range contains another's is a merge that includes it. A replica
//! that lagged lacks parts another holds; one that merged holds a large part where
//! another still holds the small ones. The shard's data is what ClickHouse itself keeps
//! active: each part not contained in another, once. Two parts that overlap without one
//! containing the other cannot both be right (attaching both doubles rows): an error
//! names them.
//!
//! ```
//! use strata_plugins::clickhouse::covering::{covering, Candidate, Syntax};
//! use strata_plugins::clickhouse::record::Part;
//!
//! let part = |name: &str, rows| Part { name: name.into(), rows, bytes: 0 };
//! let (r1, r2) = (part("202401_0_3_1", 40), part("202401_4_4_0", 5));
//! let (small, again) = (part("202401_0_0_0", 10), part("202401_0_3_1", 40));
//! let chosen = covering(
//!     [
//!         Candidate { node: "ch1", part: &r1 },
//!         Candidate { node: "ch2", part: &small },
//!         Candidate { node: "ch2", part: &again },
//!         Candidate { node: "ch2", part: &r2 },
//!     ],
//!     Syntax::Current,
//! )
//! .unwrap();
//! let names: Vec<&str> = chosen.iter().map(|c| c.part.name.as_str()).collect();
//! assert_eq!(names, ["202401_0_3_1", "202401_4_4_0"]);
//! assert_eq!(chosen.iter().map(|c| c.part.rows).sum::<u64>(), 45);
//! ```

pub use super::part_name::{partition_of, PartInfo, Syntax};
use super::record::Part;
use std::cmp::Reverse;

/// A part and the backup node whose frozen copy holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The backup node.
    pub node: &'a str,
    /// The part as that node recorded it.
    pub part: &'a Part,
}

/// Why a shard's parts do not make one set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoveringError {
    /// A name that is not a part's name of the table's syntax.
    #[error("part {part} (node {node}) is not named like a part of this table")]
    Name {
        /// The part.
        part: String,
        /// The backup node that holds it.
        node: String,
    },
    /// Two parts that overlap, neither containing the other.
    #[error("parts {first} (node {first_node}) and {second} (node {second_node}) overlap and neither contains the other: attaching both would double rows")]
    Intersect {
        /// One part.
        first: String,
        /// The node holding it.
        first_node: String,
        /// The other.
        second: String,
        /// The node holding it.
        second_node: String,
    },
    /// The same part recorded with different rows by two replicas.
    #[error("part {part} holds {rows} rows on node {node} and {other_rows} on node {other_node}: one of the two copies is not the part")]
    Rows {
        /// The part.
        part: String,
        /// One node.
        node: String,
        /// Its rows there.
        rows: u64,
        /// The other node.
        other_node: String,
        /// Its rows there.
        other_rows: u64,
    },
}

/// The covering set of `candidates`: each part not contained in another, once (from the
/// first candidate that holds it, in the order given: list the preferred node first), in
/// partition and block order.
pub fn covering<'a>(
    candidates: impl IntoIterator<Item = Candidate<'a>>,
    syntax: Syntax,
) -> Result<Vec<Candidate<'a>>, CoveringError> {
    let mut parsed = Vec::new();
    for (order, candidate) in candidates.into_iter().enumerate() {
        let info =
            PartInfo::parse(&candidate.part.name, syntax).ok_or_else(|| CoveringError::Name {
                part: candidate.part.name.clone(),
                node: candidate.node.to_string(),
            })?;
        parsed.push((info, order, candidate));
    }
    // Within a partition, by first block; the widest, highest part first among those that
    // start alike, so that a part comes before every part it contains; then the order
    // given.
    parsed.sort_by(|(a, ao, _), (b, bo, _)| {
        (
            &a.partition,
            a.min_block,
            Reverse(a.max_block),
            Reverse(a.level),
            Reverse(a.mutation),
            ao,
        )
            .cmp(&(
                &b.partition,
                b.min_block,
                Reverse(b.max_block),
                Reverse(b.level),
                Reverse(b.mutation),
                bo,
            ))
    });
    // The parts kept are disjoint and sorted, so a new one can only meet the last kept of
    // its partition: every earlier one ends before that one starts.
    let mut kept: Vec<(PartInfo, Candidate<'a>)> = Vec::new();
    for (info, _, candidate) in parsed {
        if let Some((last, held)) = kept.last().filter(|(last, _)| last.overlaps(&info)) {
            if last.contains(&info) {
                if held.part.name == candidate.part.name && held.part.rows != candidate.part.rows {
                    return Err(CoveringError::Rows {
                        part: held.part.name.clone(),
                        node: held.node.to_string(),
                        rows: held.part.rows,
                        other_node: candidate.node.to_string(),
                        other_rows: candidate.part.rows,
                    });
                }
                continue;
            }
            return Err(CoveringError::Intersect {
                first: held.part.name.clone(),
                first_node: held.node.to_string(),
                second: candidate.part.name.clone(),
                second_node: candidate.node.to_string(),
            });
        }
        kept.push((info, candidate));
    }
    Ok(kept.into_iter().map(|(_, c)| c).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part(name: &str, rows: u64) -> Part {
        Part {
            name: name.into(),
            rows,
            bytes: rows,
        }
    }

    fn names(chosen: &[Candidate<'_>]) -> Vec<String> {
        chosen
            .iter()
            .map(|c| format!("{}:{}", c.node, c.part.name))
            .collect()
    }

    #[test]
    fn names_of_both_syntaxes_are_read() {
        let info = PartInfo::parse("202401_3_7_2_9", Syntax::Current).unwrap();
        assert_eq!(
            (info.partition.as_str(), info.min_block, info.max_block),
            ("202401", 3, 7)
        );
        assert_eq!((info.level, info.mutation), (2, 9));
        let info = PartInfo::parse("20240120_20240131_1_4_1", Syntax::OldMonthly).unwrap();
        assert_eq!((info.partition.as_str(), info.max_block), ("202401", 4));
        for bad in ["all_1", "all_x_1_0", "all_5_1_0", "_1_1_0", "all_1_1_0_1_1"] {
            assert_eq!(PartInfo::parse(bad, Syntax::Current), None, "{bad}");
        }
        for bad in [
            "20240120_20240231_1_1_0",
            "2024012_20240131_1_1_0",
            "all_1_1_0",
        ] {
            assert_eq!(PartInfo::parse(bad, Syntax::OldMonthly), None, "{bad}");
        }
        assert_eq!(
            Syntax::of_create("CREATE TABLE a.b (d Date) ENGINE = MergeTree(d, (d), 8192)"),
            Syntax::OldMonthly
        );
        assert_eq!(
            Syntax::of_create("CREATE TABLE a.b (d Date) ENGINE = MergeTree ORDER BY d"),
            Syntax::Current
        );
    }

    #[test]
    fn replicas_that_lag_both_ways_give_the_union() {
        // r1 fetched nothing of r2's last insert and r2 nothing of r1's.
        let (a, b, c) = (
            part("all_0_0_0", 1),
            part("all_1_1_0", 2),
            part("all_2_2_0", 3),
        );
        let chosen = covering(
            [
                Candidate {
                    node: "r1",
                    part: &a,
                },
                Candidate {
                    node: "r1",
                    part: &b,
                },
                Candidate {
                    node: "r2",
                    part: &a,
                },
                Candidate {
                    node: "r2",
                    part: &c,
                },
            ],
            Syntax::Current,
        )
        .unwrap();
        assert_eq!(
            names(&chosen),
            ["r1:all_0_0_0", "r1:all_1_1_0", "r2:all_2_2_0"]
        );
    }

    #[test]
    fn a_merged_part_covers_the_parts_it_merged_and_intersecting_ones_are_named() {
        let merged = part("all_0_5_2", 60);
        let (inside, after) = (part("all_2_3_1", 20), part("all_6_6_0", 5));
        let chosen = covering(
            [
                Candidate {
                    node: "r2",
                    part: &inside,
                },
                Candidate {
                    node: "r1",
                    part: &merged,
                },
                Candidate {
                    node: "r2",
                    part: &after,
                },
            ],
            Syntax::Current,
        )
        .unwrap();
        assert_eq!(names(&chosen), ["r1:all_0_5_2", "r2:all_6_6_0"]);

        let crossing = part("all_4_8_1", 40);
        let err = covering(
            [
                Candidate {
                    node: "r1",
                    part: &merged,
                },
                Candidate {
                    node: "r2",
                    part: &crossing,
                },
            ],
            Syntax::Current,
        )
        .unwrap_err();
        assert!(
            matches!(&err, CoveringError::Intersect { first, second, .. } if first == "all_0_5_2" && second == "all_4_8_1"),
            "{err}"
        );
        // Partitions never meet.
        let other = part("202402_0_9_1", 1);
        let january = part("202401_0_9_1", 1);
        let chosen = covering(
            [
                Candidate {
                    node: "r1",
                    part: &other,
                },
                Candidate {
                    node: "r1",
                    part: &january,
                },
            ],
            Syntax::Current,
        )
        .unwrap();
        assert_eq!(chosen.len(), 2);
    }

    #[test]
    fn a_part_named_alike_with_other_rows_is_an_error() {
        let (a, b) = (part("all_0_0_0", 1), part("all_0_0_0", 2));
        let err = covering(
            [
                Candidate {
                    node: "r1",
                    part: &a,
                },
                Candidate {
                    node: "r2",
                    part: &b,
                },
            ],
            Syntax::Current,
        )
        .unwrap_err();
        assert!(matches!(err, CoveringError::Rows { .. }), "{err}");
    }

    /// Parts of one partition as a replica could hold them: disjoint ranges drawn from
    /// a common history of inserts and merges.
    fn replica() -> impl Strategy<Value = Vec<(u64, u64)>> {
        proptest::collection::vec(1u64..4, 1..12).prop_map(|widths| {
            let mut start = 0;
            widths
                .into_iter()
                .map(|w| {
                    let range = (start, start + w - 1);
                    start += w;
                    range
                })
                .collect()
        })
    }

    proptest! {
        /// Replicas cut the same block sequence into parts differently and each may
        /// miss a tail: the covering set holds every block exactly once, up to the
        /// longest replica's end.
        #[test]
        fn every_block_is_held_once(r1 in replica(), r2 in replica(), keep1 in 0usize..12, keep2 in 0usize..12) {
            // A part's level is how many blocks it merged: containment follows the ranges.
            let parts = |ranges: &[(u64, u64)], keep: usize| -> Vec<Part> {
                ranges.iter().take(keep.max(1)).map(|(a, b)| part(&format!("all_{a}_{b}_{}", b - a), b - a + 1)).collect()
            };
            let (p1, p2) = (parts(&r1, keep1), parts(&r2, keep2));
            let candidates = p1.iter().map(|p| Candidate { node: "r1", part: p })
                .chain(p2.iter().map(|p| Candidate { node: "r2", part: p }));
            match covering(candidates, Syntax::Current) {
                Ok(chosen) => {
                    let end = |ps: &[Part]| ps.iter().map(|p| PartInfo::parse(&p.name, Syntax::Current).unwrap().max_block).max().unwrap();
                    let last = end(&p1).max(end(&p2));
                    let mut blocks: Vec<u64> = chosen.iter().flat_map(|c| {
                        let i = PartInfo::parse(&c.part.name, Syntax::Current).unwrap();
                        i.min_block..=i.max_block
                    }).collect();
                    blocks.sort_unstable();
                    prop_assert_eq!(blocks, (0..=last).collect::<Vec<_>>());
                }
                // Two replicas that cut differently may hold crossing parts (impossible in
                // ClickHouse, whose merges are agreed through the log): named, never both.
                Err(CoveringError::Intersect { .. }) => {}
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }
}
