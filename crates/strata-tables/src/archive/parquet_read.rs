//! Parquet parts of an archive back into typed columns, one row group at a time (memory
//! stays bounded by a row group whatever the archive's size).
//!
//! A part is checked against what strata writes: the archive's columns by name and in
//! order, each OPTIONAL and of a type of [`Kind`]. The Parquet reader is run so that a
//! damaged file is an error, never a crash: a panic inside it is caught and reported as
//! damage.

use super::values::{Column, Kind, Values};
use super::{CodecError, CodecResult};
use bytes::Bytes;
use parquet::basic::{LogicalType, TimeUnit, Type as Physical};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::DataType;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;

/// The kind of a column as strata writes it; `None` for any other Parquet type.
pub fn kind_of(column: &ColumnDescriptor) -> Option<Kind> {
    if column.max_def_level() != 1 || column.max_rep_level() != 0 {
        return None;
    }
    let logical = column.logical_type_ref();
    Some(match (column.physical_type(), logical) {
        (Physical::BOOLEAN, None) => Kind::Bool,
        (Physical::INT32, None) => Kind::Int32,
        (Physical::INT32, Some(LogicalType::Integer(t))) if t.bit_width == 16 && t.is_signed => {
            Kind::Int16
        }
        (Physical::INT32, Some(LogicalType::Date)) => Kind::Date,
        (Physical::INT64, None) => Kind::Int64,
        (Physical::INT64, Some(LogicalType::Timestamp(t))) if t.unit == TimeUnit::MICROS => {
            if t.is_adjusted_to_u_t_c {
                Kind::TimestampTz
            } else {
                Kind::Timestamp
            }
        }
        (Physical::FLOAT, None) => Kind::Float,
        (Physical::DOUBLE, None) => Kind::Double,
        (Physical::BYTE_ARRAY, Some(LogicalType::String)) => Kind::Text,
        _ => return None,
    })
}

/// One part of an archive, opened.
pub struct PartReader {
    reader: SerializedFileReader<Bytes>,
    kinds: Vec<Kind>,
    next_group: usize,
}

/// Runs `f`, a step of the Parquet reader (`what` it does), with a panic inside it caught
/// and reported as damage.
pub(crate) fn guarded<T>(what: &'static str, f: impl FnOnce() -> CodecResult<T>) -> CodecResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(CodecError::ReaderPanicked(what)),
    }
}

impl PartReader {
    /// Opens a part and checks it has the archive's columns, `names` in order.
    pub fn open(data: Bytes, names: &[String]) -> CodecResult<PartReader> {
        guarded("opening a part", || {
            let reader = SerializedFileReader::new(data).map_err(CodecError::NotParquet)?;
            let schema = reader.metadata().file_metadata().schema_descr();
            if schema.num_columns() != names.len() {
                return Err(CodecError::Mismatch(format!(
                    "{} columns in the Parquet file, {} in the archive",
                    schema.num_columns(),
                    names.len()
                )));
            }
            let mut kinds = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let column = schema.column(i);
                if column.path().parts() != [name.clone()] {
                    return Err(CodecError::Mismatch(format!(
                        "column {} of the Parquet file is {:?}, the archive's is {name:?}",
                        i + 1,
                        column.path().string()
                    )));
                }
                kinds.push(kind_of(&column).ok_or_else(|| {
                    CodecError::Mismatch(format!(
                        "column {name:?} has a Parquet type strata does not write ({}, {:?})",
                        column.physical_type(),
                        column.logical_type_ref()
                    ))
                })?);
            }
            Ok(PartReader {
                reader,
                kinds,
                next_group: 0,
            })
        })
    }

    /// The kinds of the columns.
    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// The next row group's columns, `None` after the last.
    pub fn next_row_group(&mut self) -> CodecResult<Option<Vec<Column>>> {
        if self.next_group >= self.reader.num_row_groups() {
            return Ok(None);
        }
        let index = self.next_group;
        self.next_group += 1;
        let (reader, kinds) = (&self.reader, &self.kinds);
        guarded("reading a row group", || {
            let err = |error| CodecError::RowGroup { index, error };
            let group = reader.get_row_group(index).map_err(err)?;
            let rows = usize::try_from(group.metadata().num_rows()).map_err(|_| {
                CodecError::Mismatch(format!("row group {index}: a negative row count"))
            })?;
            let mut columns = Vec::with_capacity(kinds.len());
            for (i, kind) in kinds.iter().enumerate() {
                let mut column = Column::new(*kind);
                column.defs.reserve(rows);
                let defs = &mut column.defs;
                match (group.get_column_reader(i).map_err(err)?, &mut column.values) {
                    (ColumnReader::BoolColumnReader(mut r), Values::Bool(v)) => {
                        read_all(&mut r, rows, defs, v)
                    }
                    (ColumnReader::Int32ColumnReader(mut r), Values::Int32(v)) => {
                        read_all(&mut r, rows, defs, v)
                    }
                    (ColumnReader::Int64ColumnReader(mut r), Values::Int64(v)) => {
                        read_all(&mut r, rows, defs, v)
                    }
                    (ColumnReader::FloatColumnReader(mut r), Values::Float(v)) => {
                        read_all(&mut r, rows, defs, v)
                    }
                    (ColumnReader::DoubleColumnReader(mut r), Values::Double(v)) => {
                        read_all(&mut r, rows, defs, v)
                    }
                    (ColumnReader::ByteArrayColumnReader(mut r), Values::Bytes(v)) => {
                        read_all(&mut r, rows, defs, v)
                    }
                    _ => {
                        return Err(CodecError::Mismatch(format!(
                            "column {}: an unexpected column reader",
                            i + 1
                        )))
                    }
                }
                .map_err(err)?;
                if column.defs.len() != rows {
                    return Err(CodecError::Mismatch(format!(
                        "row group {index}, column {}: {} rows where the row group has {rows}",
                        i + 1,
                        column.defs.len()
                    )));
                }
                columns.push(column);
            }
            Ok(Some(columns))
        })
    }
}

fn read_all<T: DataType>(
    reader: &mut ColumnReaderImpl<T>,
    rows: usize,
    defs: &mut Vec<i16>,
    values: &mut Vec<T::T>,
) -> parquet::errors::Result<()> {
    while defs.len() < rows {
        let (records, _, _) = reader.read_records(rows - defs.len(), Some(defs), None, values)?;
        if records == 0 {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parquet_write::PartWriter;
    use super::super::values::ContentHash;
    use super::*;
    use parquet::data_type::ByteArray;

    fn columns() -> Vec<(String, Kind)> {
        [
            ("b", Kind::Bool),
            ("s", Kind::Int16),
            ("i", Kind::Int32),
            ("l", Kind::Int64),
            ("f", Kind::Float),
            ("d", Kind::Double),
            ("day", Kind::Date),
            ("ts", Kind::Timestamp),
            ("tz", Kind::TimestampTz),
            ("t \"x\"", Kind::Text),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_string(), k))
        .collect()
    }

    fn kinds() -> Vec<Kind> {
        columns().iter().map(|(_, k)| *k).collect()
    }

    /// A row group of `rows` rows, every third row NULL in every column.
    fn group(rows: usize, seed: i64) -> Vec<Column> {
        let defs: Vec<i16> = (0..rows).map(|r| i16::from(r % 3 != 2)).collect();
        let n = defs.iter().filter(|d| **d == 1).count();
        let ints = |f: &dyn Fn(i64) -> i64| (0..n as i64).map(|i| f(i + seed)).collect::<Vec<_>>();
        columns()
            .iter()
            .map(|(_, kind)| Column {
                kind: *kind,
                defs: defs.clone(),
                values: match kind {
                    Kind::Bool => Values::Bool((0..n).map(|i| i % 2 == 0).collect()),
                    Kind::Int16 | Kind::Int32 | Kind::Date => Values::Int32(
                        ints(&|i| i * 7919 - 3)
                            .into_iter()
                            .map(|v| v as i32)
                            .collect(),
                    ),
                    Kind::Int64 | Kind::Timestamp | Kind::TimestampTz => {
                        Values::Int64(ints(&|i| i.wrapping_mul(0x1e37_79b9_7f4a_7c15)))
                    }
                    Kind::Float => {
                        Values::Float(ints(&|i| i).into_iter().map(|v| v as f32 / 3.0).collect())
                    }
                    Kind::Double => {
                        Values::Double(ints(&|i| i).into_iter().map(|v| v as f64 / 7.0).collect())
                    }
                    Kind::Text => Values::Bytes(
                        ints(&|i| i)
                            .into_iter()
                            .map(|v| ByteArray::from(format!("row {v}\n\"ü\"").into_bytes()))
                            .collect(),
                    ),
                },
            })
            .collect()
    }

    #[test]
    fn written_parts_read_back_to_the_same_columns_and_hash() {
        let mut writer = PartWriter::new(&columns(), &[], 64 << 10).unwrap();
        let mut written = ContentHash::new(&kinds());
        let mut parts = Vec::new();
        let mut groups = Vec::new();
        for g in 0..12 {
            let columns = group(1000 + g * 10, g as i64 * 1000);
            written.add(&columns).unwrap();
            parts.extend(writer.write_row_group(&columns).unwrap());
            groups.push(columns);
        }
        parts.extend(writer.finish().unwrap());
        assert!(parts.len() > 1, "{} parts", parts.len());

        let names: Vec<String> = columns().into_iter().map(|(n, _)| n).collect();
        let mut read = ContentHash::new(&kinds());
        let mut read_groups = Vec::new();
        for part in parts {
            let mut reader = PartReader::open(Bytes::from(part), &names).unwrap();
            assert_eq!(
                reader.kinds(),
                columns().iter().map(|(_, k)| *k).collect::<Vec<_>>()
            );
            while let Some(columns) = reader.next_row_group().unwrap() {
                read.add(&columns).unwrap();
                read_groups.push(columns);
            }
        }
        assert_eq!(read_groups, groups);
        assert_eq!(read.rows(), written.rows());
        assert_eq!(read.finish(), written.finish());
    }

    #[test]
    fn an_empty_archive_is_one_file_with_the_schema() {
        let writer = PartWriter::new(&columns(), &[], 1 << 20).unwrap();
        let part = writer.finish().unwrap().unwrap();
        let names: Vec<String> = columns().into_iter().map(|(n, _)| n).collect();
        let mut reader = PartReader::open(Bytes::from(part), &names).unwrap();
        assert!(reader.next_row_group().unwrap().is_none());
    }

    #[test]
    fn damaged_or_foreign_parts_are_errors() {
        let names: Vec<String> = columns().into_iter().map(|(n, _)| n).collect();
        let mut writer = PartWriter::new(&columns(), &[], 1 << 30).unwrap();
        writer.write_row_group(&group(5000, 1)).unwrap();
        let part = writer.finish().unwrap().unwrap();
        let mut written = ContentHash::new(&kinds());
        written.add(&group(5000, 1)).unwrap();

        assert!(PartReader::open(Bytes::from_static(b"PAR1 not really"), &names).is_err());
        let mut renamed = names.clone();
        renamed[0] = "other".into();
        let err = PartReader::open(Bytes::from(part.clone()), &renamed)
            .err()
            .unwrap();
        assert!(
            matches!(&err, CodecError::Mismatch(why) if why.contains("other")),
            "{err}"
        );
        assert!(PartReader::open(Bytes::from(part.clone()), &names[1..]).is_err());

        // Flipping a byte anywhere gives an error, other values (a different hash) or,
        // in a field that does not describe the values, the same values: never a panic.
        // Most of a file is compressed pages, so most flips are caught.
        let (mut flips, mut caught) = (0, 0);
        for at in (4..part.len() - 8).step_by(part.len() / 97) {
            let mut damaged = part.clone();
            damaged[at] ^= 0x5a;
            let outcome = PartReader::open(Bytes::from(damaged), &names).and_then(|mut r| {
                let mut hash = ContentHash::new(&kinds());
                while let Some(columns) = r.next_row_group()? {
                    hash.add(&columns)?;
                }
                Ok(hash)
            });
            flips += 1;
            match outcome {
                Err(_) => caught += 1,
                Ok(hash) if hash.finish() != written.finish() => caught += 1,
                Ok(_) => {}
            }
        }
        assert!(caught * 2 > flips, "{caught} of {flips} flips caught");
    }
}
