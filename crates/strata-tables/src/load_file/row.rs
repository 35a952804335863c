//! One row of a file as every reader hands it out: the text of its fields, in the file's
//! column order, in one buffer reused from row to row (no allocation per row).

use super::error::{LoadFileError, LoadFileResult, Position};

/// The most bytes one row may hold: a row is buffered whole, and this bounds the memory a
/// hostile file (one endless quoted field, one endless line) can take.
pub const MAX_ROW_BYTES: usize = 64 << 20;
/// The most fields a row may have (PostgreSQL's limit of columns in a table).
pub const MAX_FIELDS: usize = 1600;

/// What a field's text is, when the file says more than the text (JSON's types); type
/// inference reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Text to be classified (CSV; Parquet values, whose types come from the schema).
    Text,
    /// A JSON string.
    JsonString,
    /// A JSON integer.
    JsonInteger,
    /// A JSON number with a fraction or an exponent, or too large for a bigint.
    JsonFloat,
    /// A JSON boolean.
    JsonBool,
    /// A JSON object or array, as JSON text.
    JsonNested,
}

/// The fields of one row.
#[derive(Debug, Clone)]
pub struct Row {
    /// The fields' text, one after the other.
    pub data: Vec<u8>,
    /// Where each field ends in `data`.
    pub ends: Vec<usize>,
    /// Which fields are NULL (their text is empty).
    pub nulls: Vec<bool>,
    /// What each field is (all [`Tag::Text`] but for JSON).
    pub tags: Vec<Tag>,
    /// Where the row starts in the file.
    pub at: Position,
}

impl Default for Row {
    fn default() -> Row {
        Row {
            data: Vec::new(),
            ends: Vec::new(),
            nulls: Vec::new(),
            tags: Vec::new(),
            at: Position::Line(0),
        }
    }
}

impl Row {
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.nulls.clear();
        self.tags.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i`'s text; `None` for NULL.
    pub fn field(&self, i: usize) -> Option<&[u8]> {
        if self.nulls[i] {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.data[start..self.ends[i]])
    }

    /// Appends a field.
    pub fn push(&mut self, text: &[u8], null: bool, tag: Tag) {
        self.data.extend_from_slice(text);
        self.ends.push(self.data.len());
        self.nulls.push(null);
        self.tags.push(tag);
    }
}

/// A file read row by row.
pub trait RowReader: Send {
    /// The file's columns, in order (a CSV header, a Parquet schema, the keys of JSON
    /// objects).
    fn columns(&self) -> &[String];
    /// Reads the next row into `row`; `false` after the last.
    fn next_row(&mut self, row: &mut Row) -> LoadFileResult<bool>;
    /// Bytes of the file read so far.
    fn bytes_read(&self) -> u64;
    /// For a compressed file, once reading stopped at an error: the rest of the stream
    /// read, and the error when it turns out damaged or cut short (a damaged stream can
    /// decompress to bad rows before its checksum tells). `None` when the stream is
    /// whole, or the file is not compressed.
    fn damage(&mut self) -> Option<LoadFileError> {
        None
    }
}
