//! WAL positions and file names: the arithmetic PostgreSQL does in `xlog_internal.h`.
//!
//! A segment's name is its timeline and its number, split into a "log" and a "segment"
//! part, each as 8 hex digits: `TTTTTTTTLLLLLLLLSSSSSSSS`. The split depends on the segment
//! size (16 MiB unless `initdb --wal-segsize` said otherwise).

use std::fmt;

/// A position in the WAL (`pg_lsn`), printed as PostgreSQL does: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `hi/lo` hex as PostgreSQL prints it.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn(((hi as u64) << 32) | lo as u64))
    }

    /// The number of the segment holding this position.
    pub fn segment(self, segment_size: u64) -> u64 {
        self.0 / segment_size
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 as u32)
    }
}

/// Segments per "log" (the middle 8 hex digits).
fn per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size
}

/// The file name of segment `segno` of timeline `timeline`.
pub fn segment_name(timeline: u32, segno: u64, segment_size: u64) -> String {
    let per = per_log(segment_size);
    format!("{timeline:08X}{:08X}{:08X}", segno / per, segno % per)
}

/// The segment before segment `name` on its timeline (`None` for the first, or for
/// anything but a segment).
pub fn segment_before(name: &str, segment_size: u64) -> Option<String> {
    let kind @ WalFileKind::Segment { .. } = WalFileKind::parse(name)? else {
        return None;
    };
    let segno = kind.segno(segment_size)?.checked_sub(1)?;
    Some(segment_name(kind.timeline(), segno, segment_size))
}

/// What kind of file PostgreSQL archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFileKind {
    /// A WAL segment (`000000010000000000000003`).
    Segment {
        /// The timeline (the name's first 8 hex digits).
        timeline: u32,
        /// The name's second 8 hex digits: the LSN's high 32 bits.
        log: u32,
        /// The name's last 8 hex digits: the segment within `log`.
        seg: u32,
    },
    /// A partial segment left at a timeline switch (`...03.partial`).
    Partial {
        /// The timeline (the name's first 8 hex digits).
        timeline: u32,
        /// The name's second 8 hex digits: the LSN's high 32 bits.
        log: u32,
        /// The name's last 8 hex digits: the segment within `log`.
        seg: u32,
    },
    /// A timeline history file (`00000002.history`).
    History {
        /// The timeline the file describes (its name, in hex).
        timeline: u32,
    },
    /// A backup history file (`...03.00000028.backup`).
    BackupHistory {
        /// The timeline (the name's first 8 hex digits).
        timeline: u32,
        /// The name's second 8 hex digits: the LSN's high 32 bits.
        log: u32,
        /// The name's last 8 hex digits: the segment within `log` the backup started in.
        seg: u32,
    },
}

fn hex8(text: &str) -> Option<u32> {
    (text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(text, 16).ok())
        .flatten()
}

fn segment_parts(text: &str) -> Option<(u32, u32, u32)> {
    if text.len() != 24 {
        return None;
    }
    Some((hex8(&text[..8])?, hex8(&text[8..16])?, hex8(&text[16..])?))
}

impl WalFileKind {
    /// Classifies an archived file name; `None` for anything PostgreSQL does not archive
    /// (which also keeps path tricks such as `../x` out of the repository).
    pub fn parse(name: &str) -> Option<WalFileKind> {
        if let Some(tli) = name.strip_suffix(".history") {
            return Some(WalFileKind::History {
                timeline: hex8(tli)?,
            });
        }
        if let Some(seg) = name.strip_suffix(".partial") {
            let (timeline, log, seg) = segment_parts(seg)?;
            return Some(WalFileKind::Partial { timeline, log, seg });
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (seg, offset) = rest.split_once('.')?;
            hex8(offset)?;
            let (timeline, log, seg) = segment_parts(seg)?;
            return Some(WalFileKind::BackupHistory { timeline, log, seg });
        }
        let (timeline, log, seg) = segment_parts(name)?;
        Some(WalFileKind::Segment { timeline, log, seg })
    }

    /// The segment number (for segments, partial segments and backup history files).
    pub fn segno(&self, segment_size: u64) -> Option<u64> {
        match *self {
            WalFileKind::Segment { log, seg, .. }
            | WalFileKind::Partial { log, seg, .. }
            | WalFileKind::BackupHistory { log, seg, .. } => {
                Some(log as u64 * per_log(segment_size) + seg as u64)
            }
            WalFileKind::History { .. } => None,
        }
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        match *self {
            WalFileKind::Segment { timeline, .. }
            | WalFileKind::Partial { timeline, .. }
            | WalFileKind::History { timeline }
            | WalFileKind::BackupHistory { timeline, .. } => timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEG: u64 = 16 * 1024 * 1024;

    #[test]
    fn names_match_postgres() {
        // pg_walfile_name('0/2000028') on timeline 1 with 16 MiB segments.
        let lsn = Lsn::parse("0/2000028").unwrap();
        assert_eq!(
            segment_name(1, lsn.segment(SEG), SEG),
            "000000010000000000000002"
        );
        let lsn = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(
            segment_name(3, lsn.segment(SEG), SEG),
            "0000000300000016000000B3"
        );
        // 1 GiB segments: 4 per log.
        let big = 1 << 30;
        assert_eq!(segment_name(1, 5, big), "000000010000000100000001");
    }

    #[test]
    fn classifies_archived_files() {
        assert_eq!(
            WalFileKind::parse("00000002.history"),
            Some(WalFileKind::History { timeline: 2 })
        );
        let kind = WalFileKind::parse("0000000100000000000000A3").unwrap();
        assert_eq!(kind.segno(SEG), Some(0xA3));
        assert!(matches!(
            WalFileKind::parse("000000010000000000000003.00000028.backup"),
            Some(WalFileKind::BackupHistory { seg: 3, .. })
        ));
        assert!(matches!(
            WalFileKind::parse("000000010000000000000003.partial"),
            Some(WalFileKind::Partial { .. })
        ));
        for bad in [
            "",
            "../etc/passwd",
            "00000001000000000000000G",
            "x.history",
            "0000000100000000000000031",
        ] {
            assert_eq!(WalFileKind::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn segment_names_round_trip(tli in 1u32..1000, segno in 0u64..(1 << 40)) {
            let name = segment_name(tli, segno, SEG);
            let kind = WalFileKind::parse(&name).unwrap();
            prop_assert_eq!(kind.timeline(), tli);
            prop_assert_eq!(kind.segno(SEG), Some(segno));
        }

        #[test]
        fn lsn_text_round_trips(value in any::<u64>()) {
            prop_assert_eq!(Lsn::parse(&Lsn(value).to_string()), Some(Lsn(value)));
        }
    }
}
