//! PostgreSQL txid snapshots (`xmin:xmax:xip,...`, what `txid_current_snapshot()` prints).
//! The copy task saves the snapshot its COPY ran under; while catching up it skips events
//! of transactions that snapshot already saw, so no row is applied twice.

use crate::error::{LondisteError, Result};

/// A parsed snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Every transaction below it had ended: visible if committed.
    pub xmin: i64,
    /// The first transaction not yet started: it and later ones are invisible.
    pub xmax: i64,
    /// Transactions in progress when the snapshot was taken (sorted).
    pub xip: Vec<i64>,
}

impl Snapshot {
    /// Parses `xmin:xmax:xip1,xip2`.
    pub fn parse(text: &str) -> Result<Snapshot> {
        let bad = || LondisteError::State(format!("invalid txid snapshot {text:?}"));
        let mut parts = text.trim().splitn(3, ':');
        let xmin: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xmax: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let list = parts.next().ok_or_else(bad)?;
        let mut xip = list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().map_err(|_| bad()))
            .collect::<Result<Vec<_>>>()?;
        if xmin > xmax {
            return Err(bad());
        }
        xip.sort_unstable();
        Ok(Snapshot { xmin, xmax, xip })
    }

    /// Whether transaction `txid` was committed as this snapshot sees it (its effects are in
    /// data read under the snapshot).
    pub fn contains(&self, txid: i64) -> bool {
        if txid < self.xmin {
            return true;
        }
        if txid >= self.xmax {
            return false;
        }
        self.xip.binary_search(&txid).is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_follows_xmin_xmax_and_in_progress_list() {
        let s = Snapshot::parse("100:110:103,105").unwrap();
        assert!(s.contains(99));
        assert!(s.contains(100));
        assert!(!s.contains(103));
        assert!(s.contains(104));
        assert!(!s.contains(105));
        assert!(!s.contains(110));
        assert!(!s.contains(111));
        let empty = Snapshot::parse("7:7:").unwrap();
        assert!(empty.contains(6) && !empty.contains(7));
    }

    #[test]
    fn garbage_is_an_error() {
        for text in ["", "1", "1:2", "a:b:", "5:3:", "1:9:x"] {
            assert!(Snapshot::parse(text).is_err(), "{text:?}");
        }
    }
}
