//! Which configured node receives which node of a backup in a restore.
//!
//! In order: an explicit `--map OLD=NEW`; else the node of the same name; else, when the
//! backup recorded the node's zone, a node of that zone that no other backup node claims
//! (the first by name). A restore onto a rebuilt cluster with new host names thus needs no
//! flags when the zones are configured, and a missing target is an error that names the
//! way out instead of a guess.

use std::collections::BTreeMap;

/// A backup node to restore: its name and the zone it was in.
#[derive(Debug, Clone)]
pub struct SourceNode<'a> {
    /// The node's name in the backup.
    pub name: &'a str,
    /// The zone the node was in when backed up, if one was configured.
    pub zone: Option<&'a str>,
}

/// A configured node that can receive one: its name and zone.
#[derive(Debug, Clone)]
pub struct TargetNode<'a> {
    /// The node's name in `[[nodes]]`.
    pub name: &'a str,
    /// The node's configured zone, if any.
    pub zone: Option<&'a str>,
}

/// Why backup nodes cannot be paired with configured nodes; the line says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// `--map SOURCE=TARGET` names no configured node.
    #[error("--map {from}={target}: no configured node {target:?}")]
    NoSuchTarget {
        /// The backup node.
        from: String,
        /// The node `--map` names.
        target: String,
    },
    /// `--map SOURCE=TARGET` names no node of the component.
    #[error("--map {from}={target}: no node {target:?} in the component")]
    NotInComponent {
        /// The backup node.
        from: String,
        /// The node `--map` names.
        target: String,
    },
    /// No node of that name, none free in its zone, no `--map`.
    #[error(
        "backup node {from} has no target: no configured node of that name{} (map it with --map {from}=NODE)",
        zone.as_ref().map(|z| format!(" and no free node in its zone {z:?}")).unwrap_or_default()
    )]
    NoTarget {
        /// The backup node.
        from: String,
        /// The zone it was in, if one was recorded.
        zone: Option<String>,
    },
    /// The component has no configured node to restore a replicated store through.
    #[error("no configured node to restore {from} onto")]
    NoNodeFor {
        /// The backup node.
        from: String,
    },
    /// Two backup nodes would go onto one node.
    #[error(
        "backup nodes {first} and {second} would both be restored to node {target}: fix --map"
    )]
    Twice {
        /// The first backup node.
        first: String,
        /// The second one.
        second: String,
        /// The node both would go onto.
        target: String,
    },
    /// `--node` names no configured node.
    #[error("--node {node:?} is not a configured node")]
    UnknownNode {
        /// The name given.
        node: String,
    },
    /// The component's plugin will not restore onto these nodes.
    #[error(transparent)]
    Refused(#[from] crate::plugin::PluginError),
}

/// Pairs every source with a target index, or says why it cannot.
pub fn pair_nodes(
    sources: &[SourceNode],
    targets: &[TargetNode],
    map: &BTreeMap<String, String>,
) -> Result<Vec<(String, usize)>, PairError> {
    let position = |name: &str| targets.iter().position(|t| t.name == name);
    let mut chosen: Vec<Option<usize>> = vec![None; sources.len()];
    // Explicit maps and same names first, so zone matching never takes a node that is
    // wanted by name.
    for (k, source) in sources.iter().enumerate() {
        if let Some(target) = map.get(source.name) {
            chosen[k] = Some(position(target).ok_or_else(|| PairError::NoSuchTarget {
                from: source.name.to_string(),
                target: target.clone(),
            })?);
        } else if let Some(i) = position(source.name) {
            chosen[k] = Some(i);
        }
    }
    for (k, source) in sources.iter().enumerate() {
        if chosen[k].is_some() {
            continue;
        }
        let Some(zone) = source.zone else { continue };
        let claimed_by_name = |t: &TargetNode| sources.iter().any(|s| s.name == t.name);
        let mut candidates: Vec<usize> = (0..targets.len())
            .filter(|&i| targets[i].zone == Some(zone))
            .filter(|&i| !chosen.contains(&Some(i)) && !claimed_by_name(&targets[i]))
            .collect();
        candidates.sort_by_key(|&i| targets[i].name);
        chosen[k] = candidates.first().copied();
    }
    let mut pairs: Vec<(String, usize)> = Vec::new();
    for (k, source) in sources.iter().enumerate() {
        let Some(index) = chosen[k] else {
            return Err(PairError::NoTarget {
                from: source.name.to_string(),
                zone: source.zone.map(str::to_string),
            });
        };
        if let Some((other, _)) = pairs.iter().find(|(_, i)| *i == index) {
            return Err(PairError::Twice {
                first: other.clone(),
                second: source.name.to_string(),
                target: targets[index].name.to_string(),
            });
        }
        pairs.push((source.name.to_string(), index));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src<'a>(name: &'a str, zone: Option<&'a str>) -> SourceNode<'a> {
        SourceNode { name, zone }
    }
    fn dst<'a>(name: &'a str, zone: Option<&'a str>) -> TargetNode<'a> {
        TargetNode { name, zone }
    }

    #[test]
    fn names_then_maps_then_zones() {
        let sources = [
            src("db1", Some("a")),
            src("db2", Some("b")),
            src("db3", Some("b")),
        ];
        let targets = [
            dst("db1", Some("a")),
            dst("new-b2", Some("b")),
            dst("new-b1", Some("b")),
            dst("spare", None),
        ];
        let pairs = pair_nodes(&sources, &targets, &BTreeMap::new()).unwrap();
        // db1 by name; db2 and db3 by zone, first free node by name each.
        assert_eq!(
            pairs,
            [("db1".into(), 0), ("db2".into(), 2), ("db3".into(), 1)]
        );
        let map = BTreeMap::from([("db1".to_string(), "spare".to_string())]);
        let pairs = pair_nodes(&sources, &targets, &map).unwrap();
        assert_eq!(pairs[0], ("db1".into(), 3));
    }

    #[test]
    fn missing_or_doubled_targets_are_errors_that_say_what_to_do() {
        let sources = [src("db1", None), src("db2", Some("z"))];
        let err = pair_nodes(&sources, &[dst("db1", None)], &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--map db2=NODE") && err.contains("zone \"z\""),
            "{err}"
        );
        let map = BTreeMap::from([("db2".to_string(), "db1".to_string())]);
        let err = pair_nodes(&sources, &[dst("db1", None)], &map).unwrap_err();
        assert!(matches!(err, PairError::Twice { .. }), "{err}");
        let map = BTreeMap::from([("db2".to_string(), "nope".to_string())]);
        let err = pair_nodes(&sources, &[dst("db1", None)], &map).unwrap_err();
        assert!(
            err.to_string().contains("no configured node \"nope\""),
            "{err}"
        );
    }
}
