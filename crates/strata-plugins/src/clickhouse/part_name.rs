//! What a part's name says: its partition, block range, merge level and mutation, in
//! either naming of ClickHouse's (current, and the old monthly `MergeTree` syntax).

/// How a table names its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `<partition>_<min>_<max>_<level>[_<mutation>]` (tables with `PARTITION BY` /
    /// `ORDER BY`).
    Current,
    /// `<min date>_<max date>_<min>_<max>_<level>[_<mutation>]`, partitioned by month
    /// (tables of the old `MergeTree(date, key, granularity)` syntax).
    OldMonthly,
}

impl Syntax {
    /// The syntax of a table from its `CREATE` statement: the current one always has
    /// `ORDER BY`, the old one never does.
    pub fn of_create(create: &str) -> Syntax {
        match create.to_ascii_uppercase().contains("ORDER BY") {
            true => Syntax::Current,
            false => Syntax::OldMonthly,
        }
    }
}

/// A part's place: its partition, block range, merge level and mutation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartInfo {
    /// The partition id (`202401`, `all`, a hash).
    pub partition: String,
    /// The first block number it holds.
    pub min_block: u64,
    /// The last block number it holds.
    pub max_block: u64,
    /// How many merges made it (0: an insert).
    pub level: u32,
    /// The mutation applied last (0: none).
    pub mutation: u64,
}

impl PartInfo {
    /// Reads a part's name; `None` when it is not one of `syntax`.
    pub fn parse(name: &str, syntax: Syntax) -> Option<PartInfo> {
        let fields: Vec<&str> = name.split('_').collect();
        let (partition, rest) = match syntax {
            Syntax::Current => (fields.first()?.to_string(), fields.get(1..)?),
            Syntax::OldMonthly => {
                let (min_date, max_date) = (fields.first()?, fields.get(1)?);
                let date = |d: &str| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit());
                if !date(min_date) || !date(max_date) || min_date[..6] != max_date[..6] {
                    return None;
                }
                (min_date[..6].to_string(), fields.get(2..)?)
            }
        };
        if partition.is_empty() || !(3..=4).contains(&rest.len()) {
            return None;
        }
        let number = |s: &str| s.parse::<u64>().ok();
        let info = PartInfo {
            partition,
            min_block: number(rest[0])?,
            max_block: number(rest[1])?,
            level: rest[2].parse().ok()?,
            mutation: match rest.get(3) {
                Some(m) => number(m)?,
                None => 0,
            },
        };
        (info.min_block <= info.max_block).then_some(info)
    }

    /// Whether this part holds everything `other` holds, as ClickHouse decides it.
    pub fn contains(&self, other: &PartInfo) -> bool {
        self.partition == other.partition
            && self.min_block <= other.min_block
            && self.max_block >= other.max_block
            && self.level >= other.level
            && self.mutation >= other.mutation
    }

    /// Whether the two share a block.
    pub fn overlaps(&self, other: &PartInfo) -> bool {
        self.partition == other.partition
            && self.min_block <= other.max_block
            && other.min_block <= self.max_block
    }
}

/// The partition id of part `name` of a table created by `create` (none: not a part name).
pub fn partition_of(name: &str, create: &str) -> Option<String> {
    PartInfo::parse(name, Syntax::of_create(create)).map(|i| i.partition)
}
