//! Reading a Parquet archive part by part, as the rows of `COPY ... FROM STDIN (FORMAT
//! text)` for loading it, or only to check it, hashing every value on the way.

use super::parquet_read::PartReader;
use super::pgtext::TextRows;
use super::values::{Column, ContentHash};
use super::{CodecError, CodecResult, Encoded};
use bytes::Bytes;

/// How much COPY text is handed out at once.
const TEXT_BYTES: usize = 256 << 10;

/// The parts of one Parquet archive, read in order.
pub struct ParquetReader {
    names: Vec<String>,
    hash: Option<ContentHash>,
    part: Option<PartReader>,
    group: Option<(Vec<Column>, TextRows)>,
}

impl ParquetReader {
    /// A reader of an archive of the columns `names`.
    pub fn new(names: Vec<String>) -> ParquetReader {
        ParquetReader {
            names,
            hash: None,
            part: None,
            group: None,
        }
    }

    /// The next part of the archive; every part must have the first one's columns.
    pub fn push_part(&mut self, data: Bytes) -> CodecResult<()> {
        let part = PartReader::open(data, &self.names)?;
        match &self.hash {
            None => self.hash = Some(ContentHash::new(part.kinds())),
            Some(hash) if hash.kinds() != part.kinds() => {
                return Err(CodecError::Mismatch(
                    "the parts of the archive have different column types".into(),
                ))
            }
            Some(_) => {}
        }
        self.part = Some(part);
        self.group = None;
        Ok(())
    }

    /// The next row group of the current part, hashed; `None` when it is used up.
    fn next_group(&mut self) -> CodecResult<Option<Vec<Column>>> {
        let Some(part) = &mut self.part else {
            return Ok(None);
        };
        match part.next_row_group()? {
            Some(columns) => {
                if let Some(hash) = &mut self.hash {
                    hash.add(&columns)?;
                }
                Ok(Some(columns))
            }
            None => {
                self.part = None;
                Ok(None)
            }
        }
    }

    /// The next piece of COPY text; `None` when the current part is used up.
    pub fn next_chunk(&mut self) -> CodecResult<Option<Bytes>> {
        loop {
            if let Some((columns, rows)) = &mut self.group {
                let mut out = Vec::with_capacity(TEXT_BYTES + (TEXT_BYTES >> 2));
                let more = rows.write(columns, &mut out, TEXT_BYTES);
                if !more {
                    self.group = None;
                }
                if !out.is_empty() {
                    return Ok(Some(Bytes::from(out)));
                }
                continue;
            }
            match self.next_group()? {
                Some(columns) => {
                    let rows = TextRows::new(&columns);
                    self.group = Some((columns, rows));
                }
                None => return Ok(None),
            }
        }
    }

    /// Reads the rest of the current part without making text (a check).
    pub fn skim_part(&mut self) -> CodecResult<()> {
        self.group = None;
        while self.next_group()?.is_some() {}
        Ok(())
    }

    /// What was read: rows and the content hash.
    pub fn read(&self) -> Encoded {
        match &self.hash {
            Some(hash) => Encoded {
                rows: hash.rows(),
                content_bytes: 0,
                content_hash: hash.finish(),
            },
            None => Encoded {
                rows: 0,
                content_bytes: 0,
                content_hash: String::new(),
            },
        }
    }
}
