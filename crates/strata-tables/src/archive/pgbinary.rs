//! Reading `COPY ... TO STDOUT (FORMAT binary)` into typed columns.
//!
//! Binary COPY sends integers, floats, booleans, dates and timestamps in their fixed-width
//! binary forms, which map onto Parquet's types with no text parsing. Every other type is
//! selected through its own output function (`numeric_out(col)::text`), so it arrives as
//! exactly the text `COPY ... (FORMAT csv)` would have written (a plain `::text` cast is not
//! always that: `inet`'s and `bool`'s casts differ from their output). Text types whose binary
//! form already is their text (`text`, `varchar`, `char(n)` with its padding, `name`) are
//! sent as they are.
//!
//! The stream arrives in arbitrary pieces: a tuple cut between two pieces is gathered in a
//! small buffer, everything else is read in place and strings are kept as slices of the
//! received buffers (no copy).

use super::values::{
    Column, Kind, Values, DATE_INFINITY, DATE_MINUS_INFINITY, PG_EPOCH_DAYS, PG_EPOCH_MICROS,
    TS_INFINITY, TS_MINUS_INFINITY,
};
use super::{CodecError, CodecResult};
use bytes::Bytes;
use parquet::data_type::ByteArray;

/// How a column arrives in binary COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Date,
    Timestamp,
    TimestampTz,
    /// A string: a text type as it is, or any other type through its output function.
    Text,
}

impl PgType {
    /// The type of a column of type `oid` (`pg_type.oid`), sent as it is. `None`: a type
    /// without a mapping of its own, selected through its output function.
    pub fn direct(oid: u32) -> Option<PgType> {
        Some(match oid {
            16 => PgType::Bool,
            21 => PgType::Int2,
            23 => PgType::Int4,
            20 => PgType::Int8,
            700 => PgType::Float4,
            701 => PgType::Float8,
            1082 => PgType::Date,
            1114 => PgType::Timestamp,
            1184 => PgType::TimestampTz,
            // text, varchar, bpchar, name: their binary form is their text output.
            25 | 1043 | 1042 | 19 => PgType::Text,
            _ => return None,
        })
    }

    /// How it is stored in Parquet.
    pub fn kind(self) -> Kind {
        match self {
            PgType::Bool => Kind::Bool,
            PgType::Int2 => Kind::Int16,
            PgType::Int4 => Kind::Int32,
            PgType::Int8 => Kind::Int64,
            PgType::Float4 => Kind::Float,
            PgType::Float8 => Kind::Double,
            PgType::Date => Kind::Date,
            PgType::Timestamp => Kind::Timestamp,
            PgType::TimestampTz => Kind::TimestampTz,
            PgType::Text => Kind::Text,
        }
    }
}

/// Rows decoded so far, column by column, with the size of their values (for bounding row
/// groups by bytes).
#[derive(Debug)]
pub struct RowBuffer {
    pub columns: Vec<Column>,
    pub rows: usize,
    pub bytes: usize,
}

impl RowBuffer {
    pub fn new(kinds: impl IntoIterator<Item = Kind>) -> RowBuffer {
        RowBuffer {
            columns: kinds.into_iter().map(Column::new).collect(),
            rows: 0,
            bytes: 0,
        }
    }

    pub fn clear(&mut self) {
        self.columns.iter_mut().for_each(Column::clear);
        self.rows = 0;
        self.bytes = 0;
    }
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Tuples,
    Done,
}

/// How much of a frame (the header or one tuple) a buffer holds.
enum Frame {
    /// Complete, this long.
    Whole(usize),
    /// Incomplete: at least this many more bytes are needed.
    Short(usize),
}

/// A streaming decoder of one binary COPY.
pub struct BinaryDecoder {
    types: Vec<PgType>,
    state: State,
    /// The start of a frame cut off at the end of the previous piece.
    pending: Vec<u8>,
}

impl BinaryDecoder {
    pub fn new(types: Vec<PgType>) -> BinaryDecoder {
        BinaryDecoder {
            types,
            state: State::Header,
            pending: Vec::new(),
        }
    }

    /// Decodes the next piece of the stream into `rows`.
    pub fn feed(&mut self, mut chunk: Bytes, rows: &mut RowBuffer) -> CodecResult<()> {
        while !chunk.is_empty() {
            if !self.pending.is_empty() {
                match self.frame(&self.pending)? {
                    Frame::Short(more) => {
                        let take = more.min(chunk.len());
                        self.pending.extend_from_slice(&chunk.split_to(take));
                    }
                    Frame::Whole(_) => {
                        let frame = Bytes::from(std::mem::take(&mut self.pending));
                        self.take_frame(frame, rows)?;
                    }
                }
                continue;
            }
            match self.frame(&chunk)? {
                Frame::Whole(len) => {
                    let frame = chunk.split_to(len);
                    self.take_frame(frame, rows)?;
                }
                Frame::Short(_) => {
                    self.pending.extend_from_slice(&chunk);
                    chunk.clear();
                }
            }
        }
        Ok(())
    }

    /// Checks the stream ended with its trailer.
    pub fn finish(&mut self, rows: &mut RowBuffer) -> CodecResult<()> {
        if !self.pending.is_empty() {
            match self.frame(&self.pending)? {
                Frame::Whole(_) => {
                    let frame = Bytes::from(std::mem::take(&mut self.pending));
                    self.take_frame(frame, rows)?;
                }
                Frame::Short(_) => {
                    return Err(CodecError::CopyStream(
                        "the binary COPY stream is cut short".into(),
                    ))
                }
            }
        }
        if self.state != State::Done {
            return Err(CodecError::CopyStream(
                "the binary COPY stream ended without its trailer".into(),
            ));
        }
        Ok(())
    }

    /// How long the frame at the start of `buf` is.
    fn frame(&self, buf: &[u8]) -> CodecResult<Frame> {
        match self.state {
            State::Header => {
                if buf.len() < 19 {
                    return Ok(Frame::Short(19 - buf.len()));
                }
                if &buf[..11] != SIGNATURE {
                    return Err(CodecError::CopyStream(
                        "not a binary COPY stream (bad signature)".into(),
                    ));
                }
                let extension = be_u32(&buf[15..19]) as usize;
                let len = 19 + extension;
                Ok(if buf.len() >= len {
                    Frame::Whole(len)
                } else {
                    Frame::Short(len - buf.len())
                })
            }
            State::Tuples => {
                if buf.len() < 2 {
                    return Ok(Frame::Short(2 - buf.len()));
                }
                let fields = i16::from_be_bytes([buf[0], buf[1]]);
                if fields == -1 {
                    return Ok(Frame::Whole(2));
                }
                if fields as usize != self.types.len() || fields < 0 {
                    return Err(CodecError::CopyStream(format!(
                        "a tuple of {fields} fields where {} columns were selected",
                        self.types.len()
                    )));
                }
                let mut at = 2;
                for _ in 0..fields {
                    if buf.len() < at + 4 {
                        return Ok(Frame::Short(at + 4 - buf.len()));
                    }
                    let len = i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
                    at += 4;
                    if len < -1 {
                        return Err(CodecError::CopyStream(format!("a field of length {len}")));
                    }
                    if len > 0 {
                        at += len as usize;
                    }
                }
                Ok(if buf.len() >= at {
                    Frame::Whole(at)
                } else {
                    Frame::Short(at - buf.len())
                })
            }
            State::Done => Err(CodecError::CopyStream(
                "data after the binary COPY trailer".into(),
            )),
        }
    }

    fn take_frame(&mut self, frame: Bytes, rows: &mut RowBuffer) -> CodecResult<()> {
        match self.state {
            State::Header => {
                let flags = be_u32(&frame[11..15]);
                if flags & (1 << 16) != 0 {
                    return Err(CodecError::CopyStream(
                        "the binary COPY stream has OIDs".into(),
                    ));
                }
                self.state = State::Tuples;
                Ok(())
            }
            State::Tuples if frame.len() == 2 && frame[..] == [0xff, 0xff] => {
                self.state = State::Done;
                Ok(())
            }
            State::Tuples => self.take_tuple(&frame, rows),
            State::Done => Err(CodecError::CopyStream(
                "data after the binary COPY trailer".into(),
            )),
        }
    }

    /// Appends one complete tuple (its length already checked by [`Self::frame`]).
    fn take_tuple(&self, frame: &Bytes, rows: &mut RowBuffer) -> CodecResult<()> {
        let mut at = 2;
        for (ty, column) in self.types.iter().zip(&mut rows.columns) {
            let len = i32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
            at += 4;
            if len < 0 {
                column.push_null();
                continue;
            }
            let len = len as usize;
            push_value(*ty, column, frame, at, len)?;
            at += len;
            rows.bytes += len + 4;
        }
        rows.rows += 1;
        Ok(())
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Exactly `N` bytes of a fixed-width value.
fn fixed<const N: usize>(ty: PgType, data: &[u8]) -> CodecResult<[u8; N]> {
    data.try_into().map_err(|_| {
        CodecError::CopyStream(format!("a {ty:?} value of {} bytes, not {N}", data.len()))
    })
}

fn push_value(
    ty: PgType,
    column: &mut Column,
    frame: &Bytes,
    at: usize,
    len: usize,
) -> CodecResult<()> {
    let data = &frame[at..at + len];
    match (ty, &mut column.values) {
        (PgType::Bool, Values::Bool(v)) => v.push(fixed::<1>(ty, data)?[0] != 0),
        (PgType::Int2, Values::Int32(v)) => v.push(i32::from(i16::from_be_bytes(fixed(ty, data)?))),
        (PgType::Int4, Values::Int32(v)) => v.push(i32::from_be_bytes(fixed(ty, data)?)),
        (PgType::Int8, Values::Int64(v)) => v.push(i64::from_be_bytes(fixed(ty, data)?)),
        (PgType::Float4, Values::Float(v)) => {
            v.push(f32::from_bits(u32::from_be_bytes(fixed(ty, data)?)))
        }
        (PgType::Float8, Values::Double(v)) => {
            v.push(f64::from_bits(u64::from_be_bytes(fixed(ty, data)?)))
        }
        (PgType::Date, Values::Int32(v)) => {
            v.push(date_to_parquet(i32::from_be_bytes(fixed(ty, data)?))?)
        }
        (PgType::Timestamp | PgType::TimestampTz, Values::Int64(v)) => {
            v.push(timestamp_to_parquet(i64::from_be_bytes(fixed(ty, data)?))?)
        }
        (PgType::Text, Values::Bytes(v)) => v.push(ByteArray::from(frame.slice(at..at + len))),
        (ty, _) => {
            return Err(CodecError::CopyStream(format!(
                "a {ty:?} value for a {:?} column",
                column.kind
            )))
        }
    }
    column.defs.push(1);
    Ok(())
}

/// PostgreSQL's days since 2000-01-01 as Parquet's days since 1970-01-01.
pub fn date_to_parquet(days: i32) -> CodecResult<i32> {
    match days {
        DATE_INFINITY | DATE_MINUS_INFINITY => Ok(days),
        _ => days
            .checked_add(PG_EPOCH_DAYS)
            .filter(|d| *d != DATE_INFINITY)
            .ok_or_else(|| {
                CodecError::Unrepresentable(format!(
                    "date {days} days after 2000-01-01 does not fit a Parquet DATE"
                ))
            }),
    }
}

/// PostgreSQL's microseconds since 2000-01-01 as Parquet's since 1970-01-01.
pub fn timestamp_to_parquet(micros: i64) -> CodecResult<i64> {
    match micros {
        TS_INFINITY | TS_MINUS_INFINITY => Ok(micros),
        _ => micros
            .checked_add(PG_EPOCH_MICROS)
            .filter(|t| *t != TS_INFINITY)
            .ok_or_else(|| {
                CodecError::Unrepresentable("a timestamp after 294247-01-10 04:00:54.775806 does not fit Parquet's TIMESTAMP(MICROS), microseconds since 1970 in 64 bits: archive this table as csv".to_string())
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY stream of `tuples` (each field `None` for NULL).
    fn stream(tuples: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&4u32.to_be_bytes());
        out.extend_from_slice(b"ext!");
        for tuple in tuples {
            out.extend_from_slice(&(tuple.len() as i16).to_be_bytes());
            for field in tuple {
                match field {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(data) => {
                        out.extend_from_slice(&(data.len() as i32).to_be_bytes());
                        out.extend_from_slice(data);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn decode(types: &[PgType], data: &[u8], piece: usize) -> CodecResult<RowBuffer> {
        let mut decoder = BinaryDecoder::new(types.to_vec());
        let mut rows = RowBuffer::new(types.iter().map(|t| t.kind()));
        for part in data.chunks(piece) {
            decoder.feed(Bytes::copy_from_slice(part), &mut rows)?;
        }
        decoder.finish(&mut rows)?;
        Ok(rows)
    }

    #[test]
    fn every_type_decodes_in_any_cut_of_the_stream() {
        let types = [
            PgType::Int2,
            PgType::Int4,
            PgType::Int8,
            PgType::Float4,
            PgType::Float8,
            PgType::Bool,
            PgType::Date,
            PgType::TimestampTz,
            PgType::Text,
        ];
        let row = |i: i16| {
            vec![
                Some(i.to_be_bytes().to_vec()),
                Some((i32::MIN + i32::from(i)).to_be_bytes().to_vec()),
                Some(i64::MAX.to_be_bytes().to_vec()),
                Some(f32::NAN.to_bits().to_be_bytes().to_vec()),
                Some((-0.0f64).to_bits().to_be_bytes().to_vec()),
                Some(vec![1]),
                Some((-1i32).to_be_bytes().to_vec()),
                Some(1i64.to_be_bytes().to_vec()),
                Some("ü \"q\"\n".as_bytes().to_vec()),
            ]
        };
        let mut tuples: Vec<_> = (0..5).map(row).collect();
        tuples.push(vec![None; types.len()]);
        let data = stream(&tuples);
        for piece in 1..=data.len() {
            let rows = decode(&types, &data, piece).unwrap();
            assert_eq!(rows.rows, 6);
            let c = &rows.columns;
            assert_eq!(c[0].values, Values::Int32(vec![0, 1, 2, 3, 4]));
            assert_eq!(c[0].defs, [1, 1, 1, 1, 1, 0]);
            assert_eq!(
                c[1].values,
                Values::Int32((0..5).map(|i| i32::MIN + i).collect())
            );
            assert_eq!(c[2].values, Values::Int64(vec![i64::MAX; 5]));
            let Values::Float(f) = &c[3].values else {
                panic!()
            };
            assert!(f.iter().all(|v| v.is_nan()));
            let Values::Double(d) = &c[4].values else {
                panic!()
            };
            assert!(d.iter().all(|v| *v == 0.0 && v.is_sign_negative()));
            assert_eq!(c[5].values, Values::Bool(vec![true; 5]));
            // 1999-12-31 is day 10956 after 1970-01-01.
            assert_eq!(c[6].values, Values::Int32(vec![10_956; 5]));
            assert_eq!(c[7].values, Values::Int64(vec![PG_EPOCH_MICROS + 1; 5]));
            let Values::Bytes(s) = &c[8].values else {
                panic!()
            };
            assert_eq!(s[4].data(), "ü \"q\"\n".as_bytes());
            assert_eq!(c[8].defs[5], 0);
        }
    }

    #[test]
    fn damaged_streams_are_errors_not_panics() {
        let types = [PgType::Int4, PgType::Text];
        let good = stream(&[vec![Some(7i32.to_be_bytes().to_vec()), Some(b"x".to_vec())]]);
        // Cut anywhere before the trailer's end.
        for cut in 0..good.len() {
            assert!(decode(&types, &good[..cut], 7).is_err(), "cut at {cut}");
        }
        // A wrong width, a wrong field count, a bad length, data after the trailer.
        let wide = stream(&[vec![Some(7i64.to_be_bytes().to_vec()), None]]);
        assert!(decode(&types, &wide, 64)
            .unwrap_err()
            .to_string()
            .contains("8 bytes"));
        let narrow = stream(&[vec![None]]);
        assert!(decode(&types, &narrow, 64).is_err());
        let mut negative = stream(&[vec![None, None]]);
        let at = negative.len() - 6;
        negative[at..at + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode(&types, &negative, 64).is_err());
        let mut after = good.clone();
        after.extend_from_slice(b"more");
        assert!(decode(&types, &after, 64).is_err());
        assert!(decode(&types, b"PGCOPY\nxx\r\n\0\0\0\0\0\0\0\0\0", 64).is_err());
        // A timestamp Parquet cannot hold.
        let late = stream(&[vec![Some((i64::MAX - 5).to_be_bytes().to_vec())]]);
        assert!(decode(&[PgType::TimestampTz], &late, 64)
            .unwrap_err()
            .to_string()
            .contains("294247-01-10"));
    }

    #[test]
    fn infinities_keep_their_encodings() {
        assert_eq!(date_to_parquet(i32::MAX).unwrap(), i32::MAX);
        assert_eq!(date_to_parquet(i32::MIN).unwrap(), i32::MIN);
        assert_eq!(date_to_parquet(0).unwrap(), PG_EPOCH_DAYS);
        assert_eq!(timestamp_to_parquet(i64::MIN).unwrap(), i64::MIN);
        assert_eq!(timestamp_to_parquet(i64::MAX).unwrap(), i64::MAX);
        assert!(timestamp_to_parquet(i64::MAX - PG_EPOCH_MICROS).is_err());
        assert_eq!(
            timestamp_to_parquet(i64::MAX - PG_EPOCH_MICROS - 1).unwrap(),
            i64::MAX - 1
        );
    }
}
