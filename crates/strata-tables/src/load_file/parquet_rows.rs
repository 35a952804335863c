//! Parquet files row by row. The schema gives the columns and their types (a flat schema
//! of booleans, integers, floats, dates, timestamps in milli-, micro- or nanoseconds, and
//! strings; anything else is refused naming the column), read in batches of
//! [`BATCH_ROWS`] rows through column readers that live across batches, so memory stays
//! bounded by a batch whatever the size of the file and of its row groups. Values become
//! text as a Parquet archive's do (`archive::pgtext`), exact for every type.
//!
//! The Parquet reader is run so that a damaged file is an error, never a crash (a panic
//! inside it is caught and reported).

use super::error::{LoadFileError, LoadFileResult, Position};
use super::row::{Row, RowReader, Tag};
use crate::archive::parquet_read::guarded;
use crate::archive::pgtext::write_plain;
use crate::archive::values::{Column, Kind, Values};
use crate::archive::{CodecError, CodecResult};
use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as Physical};
use parquet::column::reader::{get_column_reader, ColumnReader, ColumnReaderImpl};
use parquet::data_type::DataType;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;
use std::fs::File;

/// Rows decoded at once.
pub const BATCH_ROWS: usize = 16 * 1024;

/// How timestamps are stored, to make microseconds of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    Same,
    FromMillis,
    FromNanos,
}

/// A column of the file: what it holds and the PostgreSQL type `--create` gives it.
#[derive(Debug, Clone)]
pub struct ParquetColumn {
    pub name: String,
    pub kind: Kind,
    pub sql: &'static str,
    scale: Scale,
    required: bool,
}

/// The column of a Parquet leaf, or why it is not one strata loads.
fn column_of(descr: &ColumnDescriptor) -> CodecResult<ParquetColumn> {
    let name = descr.path().string();
    if descr.max_rep_level() != 0 || descr.path().parts().len() != 1 || descr.max_def_level() > 1 {
        return Err(CodecError::Mismatch(format!(
            "column {name:?} is nested or repeated: only flat columns load"
        )));
    }
    let (physical, logical, converted) = (
        descr.physical_type(),
        descr.logical_type_ref(),
        descr.converted_type(),
    );
    use ConvertedType as C;
    let (kind, sql, scale) = match (physical, logical, converted) {
        (Physical::BOOLEAN, None, _) => (Kind::Bool, "boolean", Scale::Same),
        (Physical::INT32, Some(LogicalType::Integer(t)), _) if t.bit_width <= 8 || (t.bit_width == 16 && t.is_signed) => {
            (Kind::Int16, "smallint", Scale::Same)
        }
        (Physical::INT32, Some(LogicalType::Integer(t)), _) if t.bit_width == 16 || t.is_signed => {
            (Kind::Int32, "integer", Scale::Same)
        }
        (Physical::INT32, None, C::INT_8 | C::INT_16 | C::UINT_8) => {
            (Kind::Int16, "smallint", Scale::Same)
        }
        (Physical::INT32, None, C::NONE | C::INT_32 | C::UINT_16) => {
            (Kind::Int32, "integer", Scale::Same)
        }
        (Physical::INT32, Some(LogicalType::Date), _) | (Physical::INT32, None, C::DATE) => {
            (Kind::Date, "date", Scale::Same)
        }
        (Physical::INT64, Some(LogicalType::Integer(t)), _) if t.is_signed => {
            (Kind::Int64, "bigint", Scale::Same)
        }
        (Physical::INT64, None, C::NONE | C::INT_64) => (Kind::Int64, "bigint", Scale::Same),
        (Physical::INT64, Some(LogicalType::Timestamp(t)), _) => {
            let scale = match t.unit {
                TimeUnit::MILLIS => Scale::FromMillis,
                TimeUnit::MICROS => Scale::Same,
                TimeUnit::NANOS => Scale::FromNanos,
            };
            if t.is_adjusted_to_u_t_c {
                (Kind::TimestampTz, "timestamptz", scale)
            } else {
                (Kind::Timestamp, "timestamp", scale)
            }
        }
        (Physical::INT64, None, C::TIMESTAMP_MILLIS) => {
            (Kind::TimestampTz, "timestamptz", Scale::FromMillis)
        }
        (Physical::INT64, None, C::TIMESTAMP_MICROS) => {
            (Kind::TimestampTz, "timestamptz", Scale::Same)
        }
        (Physical::FLOAT, None, _) => (Kind::Float, "real", Scale::Same),
        (Physical::DOUBLE, None, _) => (Kind::Double, "double precision", Scale::Same),
        (Physical::BYTE_ARRAY, Some(LogicalType::Json), _)
        | (Physical::BYTE_ARRAY, None, C::JSON) => (Kind::Text, "jsonb", Scale::Same),
        (Physical::BYTE_ARRAY, Some(LogicalType::String | LogicalType::Enum), _)
        | (Physical::BYTE_ARRAY, None, C::UTF8 | C::ENUM) => (Kind::Text, "text", Scale::Same),
        _ => {
            return Err(CodecError::Mismatch(format!(
                "column {name:?} has a Parquet type strata does not load ({physical}, {logical:?}, {converted}): booleans, integers, floats, dates, timestamps and strings do"
            )))
        }
    };
    Ok(ParquetColumn {
        name,
        kind,
        sql,
        scale,
        required: descr.max_def_level() == 0,
    })
}

/// A Parquet file.
pub struct ParquetRows {
    reader: SerializedFileReader<File>,
    file: String,
    names: Vec<String>,
    columns: Vec<ParquetColumn>,
    next_group: usize,
    /// The current row group's column readers and the rows it has left.
    readers: Vec<ColumnReader>,
    group_left: usize,
    batch: Vec<Column>,
    batch_row: usize,
    next_value: Vec<usize>,
    rows: u64,
    bytes: u64,
}

impl ParquetRows {
    pub fn open(file: File, name: &str) -> LoadFileResult<ParquetRows> {
        let bad = |why: String| LoadFileError::BadFile {
            file: name.to_string(),
            why,
        };
        let (reader, columns) = guarded("opening the file", || {
            let reader = SerializedFileReader::new(file).map_err(CodecError::NotParquet)?;
            let schema = reader.metadata().file_metadata().schema_descr();
            let columns = (0..schema.num_columns())
                .map(|i| column_of(&schema.column(i)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((reader, columns))
        })
        .map_err(|e| bad(e.to_string()))?;
        if columns.is_empty() {
            return Err(bad("no columns".into()));
        }
        Ok(ParquetRows {
            reader,
            file: name.to_string(),
            names: columns.iter().map(|c| c.name.clone()).collect(),
            next_value: vec![0; columns.len()],
            columns,
            next_group: 0,
            readers: Vec::new(),
            group_left: 0,
            batch: Vec::new(),
            batch_row: 0,
            rows: 0,
            bytes: 0,
        })
    }

    /// The columns with their kinds and SQL types.
    pub fn schema(&self) -> &[ParquetColumn] {
        &self.columns
    }

    /// Decodes the next batch; `false` after the last row group.
    fn next_batch(&mut self) -> CodecResult<bool> {
        while self.group_left == 0 {
            if self.next_group >= self.reader.num_row_groups() {
                return Ok(false);
            }
            let index = self.next_group;
            self.next_group += 1;
            let (reader, columns) = (&self.reader, &self.columns);
            let (readers, rows, bytes) = guarded("opening a row group", || {
                let err = |error| CodecError::RowGroup { index, error };
                let group = reader.get_row_group(index).map_err(err)?;
                let meta = group.metadata();
                let rows = usize::try_from(meta.num_rows()).map_err(|_| {
                    CodecError::Mismatch(format!("row group {index}: a negative row count"))
                })?;
                let schema = reader.metadata().file_metadata().schema_descr();
                let readers = (0..columns.len())
                    .map(|i| {
                        let pages = group.get_column_page_reader(i).map_err(err)?;
                        Ok(get_column_reader(schema.column(i), pages))
                    })
                    .collect::<CodecResult<Vec<_>>>()?;
                Ok((readers, rows, meta.compressed_size().max(0) as u64))
            })?;
            self.readers = readers;
            self.group_left = rows;
            self.bytes += bytes;
        }
        let want = self.group_left.min(BATCH_ROWS);
        let (readers, columns) = (&mut self.readers, &self.columns);
        let batch = guarded("reading a row group", || {
            let mut batch = Vec::with_capacity(columns.len());
            for (reader, spec) in readers.iter_mut().zip(columns) {
                let mut column = Column::new(spec.kind);
                let defs = (!spec.required).then_some(&mut column.defs);
                let read = match (reader, &mut column.values) {
                    (ColumnReader::BoolColumnReader(r), Values::Bool(v)) => {
                        read_some(r, want, defs, v)
                    }
                    (ColumnReader::Int32ColumnReader(r), Values::Int32(v)) => {
                        read_some(r, want, defs, v)
                    }
                    (ColumnReader::Int64ColumnReader(r), Values::Int64(v)) => {
                        read_some(r, want, defs, v)
                    }
                    (ColumnReader::FloatColumnReader(r), Values::Float(v)) => {
                        read_some(r, want, defs, v)
                    }
                    (ColumnReader::DoubleColumnReader(r), Values::Double(v)) => {
                        read_some(r, want, defs, v)
                    }
                    (ColumnReader::ByteArrayColumnReader(r), Values::Bytes(v)) => {
                        read_some(r, want, defs, v)
                    }
                    _ => {
                        return Err(CodecError::Mismatch(format!(
                            "column {:?}: an unexpected column reader",
                            spec.name
                        )))
                    }
                }
                .map_err(|e| CodecError::Mismatch(format!("column {:?}: {e}", spec.name)))?;
                if spec.required {
                    column.defs.resize(read, 1);
                }
                if column.defs.len() != want {
                    return Err(CodecError::Mismatch(format!(
                        "column {:?}: {} rows where the row group has {want} more",
                        spec.name,
                        column.defs.len()
                    )));
                }
                let present = column.defs.iter().filter(|d| **d != 0).count();
                if present != column.values.len() {
                    return Err(CodecError::Mismatch(format!(
                        "column {:?}: values and nulls disagree",
                        spec.name
                    )));
                }
                if let Values::Int64(values) = &mut column.values {
                    rescale(values, spec.scale);
                }
                batch.push(column);
            }
            Ok(batch)
        })?;
        self.batch = batch;
        self.group_left -= want;
        self.batch_row = 0;
        self.next_value.iter_mut().for_each(|n| *n = 0);
        Ok(true)
    }
}

/// Timestamps in microseconds (nanoseconds floored, as PostgreSQL keeps microseconds).
fn rescale(values: &mut [i64], scale: Scale) {
    match scale {
        Scale::Same => {}
        Scale::FromMillis => values.iter_mut().for_each(|v| *v = v.saturating_mul(1000)),
        Scale::FromNanos => values.iter_mut().for_each(|v| *v = v.div_euclid(1000)),
    }
}

/// Reads up to `rows` rows of a column; the number of values read.
fn read_some<T: DataType>(
    reader: &mut ColumnReaderImpl<T>,
    rows: usize,
    mut defs: Option<&mut Vec<i16>>,
    values: &mut Vec<T::T>,
) -> parquet::errors::Result<usize> {
    let mut done = 0;
    let mut read_values = 0;
    while done < rows {
        let (records, vals, _) =
            reader.read_records(rows - done, defs.as_deref_mut(), None, values)?;
        if records == 0 {
            break;
        }
        done += records;
        read_values += vals;
    }
    // A required column has a value a row.
    Ok(if defs.is_none() { done } else { read_values })
}

impl RowReader for ParquetRows {
    fn columns(&self) -> &[String] {
        &self.names
    }

    fn next_row(&mut self, row: &mut Row) -> LoadFileResult<bool> {
        row.clear();
        if self.batch_row >= self.batch.first().map_or(0, Column::rows) {
            let more = self.next_batch().map_err(|why| LoadFileError::BadRow {
                file: self.file.clone(),
                at: Position::Row(self.rows + 1),
                why: why.to_string(),
            })?;
            if !more {
                return Ok(false);
            }
        }
        let r = self.batch_row;
        for (i, column) in self.batch.iter().enumerate() {
            if column.defs[r] == 0 {
                row.push(b"", true, Tag::Text);
                continue;
            }
            let at = self.next_value[i];
            self.next_value[i] += 1;
            write_plain(column.kind, &column.values, at, &mut row.data);
            row.ends.push(row.data.len());
            row.nulls.push(false);
            row.tags.push(Tag::Text);
        }
        self.batch_row += 1;
        self.rows += 1;
        row.at = Position::Row(self.rows);
        Ok(true)
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}
