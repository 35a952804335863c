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

/// Pairs every source with a target index, or says why it cannot.
pub fn pair_nodes(
    sources: &[SourceNode],
    targets: &[TargetNode],
    map: &BTreeMap<String, String>,
) -> Result<Vec<(String, usize)>, String> {
    let position = |name: &str| targets.iter().position(|t| t.name == name);
    let mut chosen: Vec<Option<usize>> = vec![None; sources.len()];
    // Explicit maps and same names first, so zone matching never takes a node that is
    // wanted by name.
    for (k, source) in sources.iter().enumerate() {
        if let Some(target) = map.get(source.name) {
            chosen[k] = Some(position(target).ok_or_else(|| {
                format!(
                    "--map {}={target}: no configured node {target:?}",
                    source.name
                )
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
    let mut pairs = Vec::new();
    for (k, source) in sources.iter().enumerate() {
        let Some(index) = chosen[k] else {
            let zone = source
                .zone
                .map(|z| format!(" and no free node in its zone {z:?}"))
                .unwrap_or_default();
            return Err(format!(
                "backup node {} has no target: no configured node of that name{zone} (map it with --map {}=NODE)",
                source.name, source.name
            ));
        };
        if let Some((other, _)) = pairs.iter().find(|(_, i)| *i == index) {
            return Err(format!(
                "backup nodes {other} and {} would both be restored to node {}: fix --map",
                source.name, targets[index].name
            ));
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
        let err = pair_nodes(&sources, &[dst("db1", None)], &BTreeMap::new()).unwrap_err();
        assert!(
            err.contains("--map db2=NODE") && err.contains("zone \"z\""),
            "{err}"
        );
        let map = BTreeMap::from([("db2".to_string(), "db1".to_string())]);
        let err = pair_nodes(&sources, &[dst("db1", None)], &map).unwrap_err();
        assert!(err.contains("both"), "{err}");
        let map = BTreeMap::from([("db2".to_string(), "nope".to_string())]);
        let err = pair_nodes(&sources, &[dst("db1", None)], &map).unwrap_err();
        assert!(err.contains("no configured node \"nope\""), "{err}");
    }
}
