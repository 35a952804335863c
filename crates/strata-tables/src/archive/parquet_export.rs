//! Exporting a partition as Parquet: which columns go as they are and which through their
//! output function (asked of the catalog inside the export's snapshot), the binary COPY
//! that selects them, and the encoder that turns the stream into row groups and parts.

use super::pgbinary::{BinaryDecoder, PgType, RowBuffer};
use super::values::ContentHash;
use super::{parquet_write::PartWriter, CodecError, CodecResult, Encoded};
use crate::discover::Column as PgColumn;
use crate::error::{TablesError, TablesResult};
use crate::name::TableName;
use bytes::Bytes;
use strata_pgclient::quote_ident;

/// A column of the export: how it is selected and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportColumn {
    pub name: String,
    pub pg: PgType,
    /// The output function (schema, name) of a type without a mapping of its own.
    pub output: Option<(String, String)>,
}

impl ExportColumn {
    /// The column in the COPY's SELECT list: quoted, or its output function applied.
    fn select(&self) -> String {
        match &self.output {
            None => quote_ident(&self.name),
            Some((schema, function)) => format!(
                "{}.{}({})::text",
                quote_ident(schema),
                quote_ident(function),
                quote_ident(&self.name)
            ),
        }
    }
}

/// Reads the types of `names` in `partition` (run inside the export's transaction, so
/// they are the types of the rows that COPY sends).
pub async fn columns(
    tx: &strata_pgclient::tokio_postgres::Transaction<'_>,
    partition: &TableName,
    names: &[String],
) -> TablesResult<Vec<ExportColumn>> {
    let rows = tx
        .query(
            "SELECT a.attname::text, a.atttypid, fns.nspname::text, p.proname::text
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_type t ON t.oid = a.atttypid
             JOIN pg_proc p ON p.oid = t.typoutput
             JOIN pg_namespace fns ON fns.oid = p.pronamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&partition.schema, &partition.name],
        )
        .await
        .map_err(|e| TablesError::db(format!("reading the column types of {partition}"), &e))?;
    names
        .iter()
        .map(|name| {
            let row = rows
                .iter()
                .find(|r| r.get::<_, String>(0) == *name)
                .ok_or_else(|| TablesError::MissingColumn {
                    table: partition.clone(),
                    column: name.clone(),
                })?;
            let oid: u32 = row.get(1);
            Ok(match PgType::direct(oid) {
                Some(pg) => ExportColumn {
                    name: name.clone(),
                    pg,
                    output: None,
                },
                None => ExportColumn {
                    name: name.clone(),
                    pg: PgType::Text,
                    output: Some((row.get(2), row.get(3))),
                },
            })
        })
        .collect()
}

/// `COPY (SELECT ... FROM partition) TO STDOUT (FORMAT binary)`.
pub fn copy_out(partition: &TableName, columns: &[ExportColumn]) -> String {
    format!(
        "COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)",
        columns
            .iter()
            .map(ExportColumn::select)
            .collect::<Vec<_>>()
            .join(", "),
        partition.quoted()
    )
}

/// Decodes the binary COPY chunks into row groups of about `row_group_bytes` of values,
/// hashes them, and hands out Parquet files of about `part_bytes`.
pub fn encode(
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
    parts: tokio::sync::mpsc::Sender<Vec<u8>>,
    columns: &[ExportColumn],
    pg_columns: &[PgColumn],
    part_bytes: usize,
    row_group_bytes: usize,
) -> CodecResult<Encoded> {
    let kinds: Vec<_> = columns.iter().map(|c| c.pg.kind()).collect();
    let named: Vec<_> = columns
        .iter()
        .map(|c| (c.name.clone(), c.pg.kind()))
        .collect();
    let mut decoder = BinaryDecoder::new(columns.iter().map(|c| c.pg).collect());
    let mut buffer = RowBuffer::new(kinds.iter().copied());
    let mut writer = PartWriter::new(&named, pg_columns, part_bytes)?;
    let mut hash = ContentHash::new(&kinds);
    let mut flush = |buffer: &mut RowBuffer, writer: &mut PartWriter| -> CodecResult<()> {
        hash.add(&buffer.columns)?;
        if let Some(part) = writer.write_row_group(&buffer.columns)? {
            parts.blocking_send(part).map_err(|_| CodecError::Stopped)?;
        }
        buffer.clear();
        Ok(())
    };
    while let Some(chunk) = chunks.blocking_recv() {
        decoder.feed(chunk, &mut buffer)?;
        if buffer.bytes >= row_group_bytes {
            flush(&mut buffer, &mut writer)?;
        }
    }
    decoder.finish(&mut buffer)?;
    if buffer.rows > 0 {
        flush(&mut buffer, &mut writer)?;
    }
    if let Some(part) = writer.finish()? {
        parts.blocking_send(part).map_err(|_| CodecError::Stopped)?;
    }
    Ok(Encoded {
        rows: hash.rows(),
        // The size that matters for a CSV archive; a Parquet one is checked by its values.
        content_bytes: 0,
        content_hash: hash.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_select_list_quotes_columns_and_output_functions() {
        let columns = [
            ExportColumn {
                name: "ts".into(),
                pg: PgType::TimestampTz,
                output: None,
            },
            ExportColumn {
                name: "a \"b\"".into(),
                pg: PgType::Text,
                output: Some(("pg_catalog".into(), "numeric_out".into())),
            },
        ];
        assert_eq!(
            copy_out(&TableName::new("m", "p;x"), &columns),
            "COPY (SELECT \"ts\", \"pg_catalog\".\"numeric_out\"(\"a \"\"b\"\"\")::text FROM \"m\".\"p;x\") TO STDOUT (FORMAT binary)"
        );
    }
}
