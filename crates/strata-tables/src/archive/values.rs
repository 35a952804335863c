//! Typed columns of a Parquet archive as they are buffered between PostgreSQL and Parquet
//! (one row group at a time), and the content hash that ties the values written to the
//! values read back.

use parquet::data_type::ByteArray;

/// What a column holds, as stored in Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// BOOLEAN.
    Bool,
    /// INT32 annotated INT(16, signed): PostgreSQL's `smallint`.
    Int16,
    /// INT32: `integer`.
    Int32,
    /// INT64: `bigint`.
    Int64,
    /// FLOAT: `real`.
    Float,
    /// DOUBLE: `double precision`.
    Double,
    /// INT32 DATE, days since 1970-01-01; `±infinity` as `i32::MAX` / `i32::MIN`.
    Date,
    /// INT64 TIMESTAMP(MICROS) not adjusted to UTC: `timestamp`; `±infinity` as
    /// `i64::MAX` / `i64::MIN`.
    Timestamp,
    /// INT64 TIMESTAMP(MICROS) adjusted to UTC: `timestamptz`; infinities as above.
    TimestampTz,
    /// BYTE_ARRAY STRING holding PostgreSQL's text output of the value: text types, and
    /// every type without a mapping of its own (numeric, json, uuid, arrays, ...).
    Text,
}

/// Days from 1970-01-01 (Parquet's epoch) to 2000-01-01 (PostgreSQL's).
pub const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// `date 'infinity'` and `'-infinity'` in a Parquet DATE (PostgreSQL's own encodings).
pub const DATE_INFINITY: i32 = i32::MAX;
pub const DATE_MINUS_INFINITY: i32 = i32::MIN;
/// `timestamp 'infinity'` and `'-infinity'` in a Parquet TIMESTAMP.
pub const TS_INFINITY: i64 = i64::MAX;
pub const TS_MINUS_INFINITY: i64 = i64::MIN;

/// The non-null values of one column, in the physical type Parquet stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Bool(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Bytes(Vec<ByteArray>),
}

impl Values {
    /// How many values (the column's non-null rows) it holds.
    pub fn len(&self) -> usize {
        match self {
            Values::Bool(v) => v.len(),
            Values::Int32(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Double(v) => v.len(),
            Values::Bytes(v) => v.len(),
        }
    }
}

impl Kind {
    /// A byte naming the kind in the content hash.
    fn code(self) -> u8 {
        match self {
            Kind::Bool => 1,
            Kind::Int16 => 2,
            Kind::Int32 => 3,
            Kind::Int64 => 4,
            Kind::Float => 5,
            Kind::Double => 6,
            Kind::Date => 7,
            Kind::Timestamp => 8,
            Kind::TimestampTz => 9,
            Kind::Text => 10,
        }
    }

    fn empty_values(self) -> Values {
        match self {
            Kind::Bool => Values::Bool(Vec::new()),
            Kind::Int16 | Kind::Int32 | Kind::Date => Values::Int32(Vec::new()),
            Kind::Int64 | Kind::Timestamp | Kind::TimestampTz => Values::Int64(Vec::new()),
            Kind::Float => Values::Float(Vec::new()),
            Kind::Double => Values::Double(Vec::new()),
            Kind::Text => Values::Bytes(Vec::new()),
        }
    }
}

/// Some rows of one column: a definition level per row (1 a value, 0 NULL) and the
/// values of the rows that have one.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub kind: Kind,
    pub defs: Vec<i16>,
    pub values: Values,
}

impl Column {
    pub fn new(kind: Kind) -> Column {
        Column {
            kind,
            defs: Vec::new(),
            values: kind.empty_values(),
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.defs.len()
    }

    pub fn push_null(&mut self) {
        self.defs.push(0);
    }

    /// Empties the column, keeping its buffers.
    pub fn clear(&mut self) {
        self.defs.clear();
        match &mut self.values {
            Values::Bool(v) => v.clear(),
            Values::Int32(v) => v.clear(),
            Values::Int64(v) => v.clear(),
            Values::Float(v) => v.clear(),
            Values::Double(v) => v.clear(),
            Values::Bytes(v) => v.clear(),
        }
    }

    fn value_count(&self) -> usize {
        self.values.len()
    }
}

/// BLAKE3 of an archive's values, independent of how they are cut into row groups and
/// files: each column is hashed on its own over a canonical encoding of its rows in order
/// (NULL as `00`; a value as `01` and its little-endian bytes, a string as `01`, its length
/// as u32 LE and its bytes), and the archive's hash is BLAKE3 of the columns' hashes in
/// column order followed by a byte per column naming its [`Kind`] (so a file whose schema
/// was altered does not pass either). The exporter computes it from the values it hands to
/// the Parquet writer, the reader from the values it decodes.
pub struct ContentHash {
    kinds: Vec<Kind>,
    columns: Vec<blake3::Hasher>,
    scratch: Vec<u8>,
    rows: u64,
}

/// How much canonical encoding is gathered before it is hashed.
const SCRATCH_BYTES: usize = 256 << 10;

impl ContentHash {
    pub fn new(kinds: &[Kind]) -> ContentHash {
        ContentHash {
            kinds: kinds.to_vec(),
            columns: vec![blake3::Hasher::new(); kinds.len()],
            scratch: Vec::with_capacity(SCRATCH_BYTES + 64),
            rows: 0,
        }
    }

    /// Adds the next rows (the same number in every column).
    pub fn add(&mut self, columns: &[Column]) -> super::CodecResult<()> {
        use super::CodecError::Mismatch;
        if columns.len() != self.columns.len() {
            return Err(Mismatch(format!(
                "{} columns where the archive has {}",
                columns.len(),
                self.columns.len()
            )));
        }
        let rows = columns.first().map_or(0, Column::rows);
        for ((column, hasher), kind) in columns.iter().zip(&mut self.columns).zip(&self.kinds) {
            if column.kind != *kind {
                return Err(Mismatch(format!(
                    "a {:?} column where the archive has {kind:?}",
                    column.kind
                )));
            }
            if column.rows() != rows {
                return Err(Mismatch(format!(
                    "columns of {} and {rows} rows in one row group",
                    column.rows()
                )));
            }
            let present = column.defs.iter().filter(|d| **d != 0).count();
            if present != column.value_count() {
                return Err(Mismatch(format!(
                    "{present} non-null rows but {} values in a column",
                    column.value_count()
                )));
            }
            hash_column(column, hasher, &mut self.scratch);
        }
        self.rows += rows as u64;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// The archive's hash, hex.
    pub fn finish(&self) -> String {
        let mut all = blake3::Hasher::new();
        for column in &self.columns {
            all.update(column.finalize().as_bytes());
        }
        for kind in &self.kinds {
            all.update(&[kind.code()]);
        }
        all.finalize().to_hex().to_string()
    }
}

fn hash_column(column: &Column, hasher: &mut blake3::Hasher, scratch: &mut Vec<u8>) {
    scratch.clear();
    let mut next = 0;
    for def in &column.defs {
        if *def == 0 {
            scratch.push(0);
        } else {
            scratch.push(1);
            match &column.values {
                Values::Bool(v) => scratch.push(u8::from(v[next])),
                Values::Int32(v) => scratch.extend_from_slice(&v[next].to_le_bytes()),
                Values::Int64(v) => scratch.extend_from_slice(&v[next].to_le_bytes()),
                Values::Float(v) => scratch.extend_from_slice(&v[next].to_bits().to_le_bytes()),
                Values::Double(v) => scratch.extend_from_slice(&v[next].to_bits().to_le_bytes()),
                Values::Bytes(v) => {
                    let data = v[next].data();
                    // Strings are at most 1 GB in PostgreSQL: the length fits.
                    scratch.extend_from_slice(&(data.len() as u32).to_le_bytes());
                    if data.len() > SCRATCH_BYTES {
                        hasher.update(scratch);
                        scratch.clear();
                        hasher.update(data);
                    } else {
                        scratch.extend_from_slice(data);
                    }
                }
            }
            next += 1;
        }
        if scratch.len() >= SCRATCH_BYTES {
            hasher.update(scratch);
            scratch.clear();
        }
    }
    hasher.update(scratch);
    scratch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(defs: &[i16], values: &[i64]) -> Column {
        Column {
            kind: Kind::Int64,
            defs: defs.to_vec(),
            values: Values::Int64(values.to_vec()),
        }
    }

    #[test]
    fn the_hash_does_not_depend_on_row_groups_but_on_every_value_and_null() {
        let whole = {
            let mut h = ContentHash::new(&[Kind::Int64]);
            h.add(&[ints(&[1, 0, 1, 1], &[5, -7, i64::MAX])]).unwrap();
            h
        };
        let split = {
            let mut h = ContentHash::new(&[Kind::Int64]);
            h.add(&[ints(&[1, 0], &[5])]).unwrap();
            h.add(&[ints(&[1, 1], &[-7, i64::MAX])]).unwrap();
            h
        };
        assert_eq!(whole.finish(), split.finish());
        assert_eq!(whole.rows(), 4);
        let moved_null = {
            let mut h = ContentHash::new(&[Kind::Int64]);
            h.add(&[ints(&[1, 1, 0, 1], &[5, -7, i64::MAX])]).unwrap();
            h
        };
        assert_ne!(whole.finish(), moved_null.finish());
        // Strings: the length keeps "ab","c" apart from "a","bc".
        let text = |values: &[&str]| {
            let mut h = ContentHash::new(&[Kind::Text]);
            h.add(&[Column {
                kind: Kind::Text,
                defs: vec![1; values.len()],
                values: Values::Bytes(values.iter().map(|v| ByteArray::from(*v)).collect()),
            }])
            .unwrap();
            h.finish()
        };
        assert_ne!(text(&["ab", "c"]), text(&["a", "bc"]));
    }

    #[test]
    fn inconsistent_columns_are_refused() {
        let mut h = ContentHash::new(&[Kind::Int64, Kind::Int64]);
        assert!(h.add(&[ints(&[1], &[1])]).is_err());
        assert!(h.add(&[ints(&[1], &[1]), ints(&[1, 1], &[1, 2])]).is_err());
        assert!(h.add(&[ints(&[1], &[1]), ints(&[1], &[])]).is_err());
        let mut other = ints(&[1], &[1]);
        other.kind = Kind::Timestamp;
        assert!(h.add(&[ints(&[1], &[1]), other]).is_err());
        // The same values under another kind hash differently.
        let mut a = ContentHash::new(&[Kind::Int64]);
        let mut b = ContentHash::new(&[Kind::Timestamp]);
        a.add(&[ints(&[1], &[1])]).unwrap();
        let mut t = ints(&[1], &[1]);
        t.kind = Kind::Timestamp;
        b.add(&[t]).unwrap();
        assert_ne!(a.finish(), b.finish());
    }
}
