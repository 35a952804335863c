//! Typed columns into Parquet files: the schema of an archive, and the writer that cuts the
//! rows into row groups and the row groups into whole files (the parts of an archive).
//!
//! Each part is a complete Parquet file that any reader opens on its own (DuckDB, Spark,
//! pandas read `data.*.parquet` of an archive as one table). Every column is OPTIONAL
//! (NULLs as definition levels), values are PLAIN-encoded in zstd-compressed pages, and each
//! file carries the PostgreSQL columns and types as key-value metadata (`strata.columns`).

use super::values::{Column, Kind, Values};
use super::{CodecError, CodecResult};
use crate::discover::Column as PgColumn;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{Type, TypePtr};
use std::sync::Arc;

/// zstd level of the pages: 1, Arrow's default. On Parquet's already compact binary
/// values level 3 made the archive 0.7% smaller and the export 18% slower (measured on
/// bench/tables.sh's partition; docs/benchmarks.md).
const ZSTD_LEVEL: i32 = 1;

/// The Parquet type of a column of `kind`.
fn field(name: &str, kind: Kind) -> parquet::errors::Result<TypePtr> {
    let (physical, logical) = match kind {
        Kind::Bool => (Physical::BOOLEAN, None),
        Kind::Int16 => (Physical::INT32, Some(LogicalType::integer(16, true))),
        Kind::Int32 => (Physical::INT32, None),
        Kind::Int64 => (Physical::INT64, None),
        Kind::Float => (Physical::FLOAT, None),
        Kind::Double => (Physical::DOUBLE, None),
        Kind::Date => (Physical::INT32, Some(LogicalType::Date)),
        Kind::Timestamp => (
            Physical::INT64,
            Some(LogicalType::timestamp(false, TimeUnit::MICROS)),
        ),
        Kind::TimestampTz => (
            Physical::INT64,
            Some(LogicalType::timestamp(true, TimeUnit::MICROS)),
        ),
        Kind::Text => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
    };
    Ok(Arc::new(
        Type::primitive_type_builder(name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()?,
    ))
}

/// The schema of an archive of these columns.
pub fn schema(columns: &[(String, Kind)]) -> CodecResult<TypePtr> {
    let fields = columns
        .iter()
        .map(|(name, kind)| field(name, *kind))
        .collect::<parquet::errors::Result<Vec<_>>>()
        .map_err(CodecError::Schema)?;
    Type::group_type_builder("schema")
        .with_fields(fields)
        .build()
        .map(Arc::new)
        .map_err(CodecError::Schema)
}

/// Writes row groups into Parquet files of about `part_bytes` each.
pub struct PartWriter {
    schema: TypePtr,
    props: WriterPropertiesPtr,
    part_bytes: usize,
    file: Option<SerializedFileWriter<Vec<u8>>>,
    parts: usize,
}

impl PartWriter {
    /// A writer for `columns` (name and kind), describing them as the PostgreSQL
    /// `pg_columns` in each file's metadata.
    pub fn new(
        columns: &[(String, Kind)],
        pg_columns: &[PgColumn],
        part_bytes: usize,
    ) -> CodecResult<PartWriter> {
        let setup = |e: &dyn std::fmt::Display| CodecError::WriterSetup(e.to_string());
        let described = serde_json::to_string(pg_columns).map_err(|e| setup(&e))?;
        let level = ZstdLevel::try_new(ZSTD_LEVEL).map_err(|e| setup(&e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            // No dictionaries: zstd finds the repeats of a low-cardinality column in PLAIN
            // pages as well, while trying a dictionary on every column of every row group
            // (and falling back on the high-cardinality ones) cost 10% of the export's
            // throughput and made the archive 9% larger on the benchmark's partition.
            .set_dictionary_enabled(false)
            // Min and max per column chunk let readers skip row groups; per page they
            // would cost a comparison per value for little use on an archive.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("strata {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "strata.columns".to_string(),
                described,
            )]))
            .build();
        Ok(PartWriter {
            schema: schema(columns)?,
            props: Arc::new(props),
            part_bytes,
            file: None,
            parts: 0,
        })
    }

    /// Writes `columns` as one row group; returns a finished file when the current one
    /// reached the part size.
    pub fn write_row_group(&mut self, columns: &[Column]) -> CodecResult<Option<Vec<u8>>> {
        let err = CodecError::Write;
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                SerializedFileWriter::new(
                    Vec::with_capacity(self.part_bytes + (self.part_bytes >> 2)),
                    self.schema.clone(),
                    self.props.clone(),
                )
                .map_err(err)?,
            ),
        };
        let mut group = file.next_row_group().map_err(err)?;
        for column in columns {
            let Some(mut writer) = group.next_column().map_err(err)? else {
                return Err(CodecError::Mismatch(
                    "more columns than the schema has".into(),
                ));
            };
            use parquet::column::writer::ColumnWriter as W;
            let defs = Some(&column.defs[..]);
            match (writer.untyped(), &column.values) {
                (W::BoolColumnWriter(w), Values::Bool(v)) => w.write_batch(v, defs, None),
                (W::Int32ColumnWriter(w), Values::Int32(v)) => w.write_batch(v, defs, None),
                (W::Int64ColumnWriter(w), Values::Int64(v)) => w.write_batch(v, defs, None),
                (W::FloatColumnWriter(w), Values::Float(v)) => w.write_batch(v, defs, None),
                (W::DoubleColumnWriter(w), Values::Double(v)) => w.write_batch(v, defs, None),
                (W::ByteArrayColumnWriter(w), Values::Bytes(v)) => w.write_batch(v, defs, None),
                _ => {
                    return Err(CodecError::Mismatch(format!(
                        "a {:?} column does not fit its schema",
                        column.kind
                    )))
                }
            }
            .map_err(err)?;
            writer.close().map_err(err)?;
        }
        group.close().map_err(err)?;
        if file.bytes_written() >= self.part_bytes {
            return self.close_file().map(Some);
        }
        Ok(None)
    }

    fn close_file(&mut self) -> CodecResult<Vec<u8>> {
        let err = CodecError::Write;
        let file = match self.file.take() {
            Some(file) => file,
            None => SerializedFileWriter::new(Vec::new(), self.schema.clone(), self.props.clone())
                .map_err(err)?,
        };
        self.parts += 1;
        // Writes the footer.
        file.into_inner().map_err(err)
    }

    /// Closes the last file; an archive of no rows still gets one (with no row group), so
    /// readers see its schema.
    pub fn finish(mut self) -> CodecResult<Option<Vec<u8>>> {
        if self.file.is_some() || self.parts == 0 {
            self.close_file().map(Some)
        } else {
            Ok(None)
        }
    }
}
