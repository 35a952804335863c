//! What can go wrong loading a file, each one line naming the file and, for bad content,
//! where in it: the line (CSV, JSON lines) or the row (Parquet), and the column.

use std::fmt;

/// Where a row is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The line a CSV record or a JSON object starts on, from 1.
    Line(u64),
    /// The row of a Parquet file, from 1.
    Row(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// Why a file could not be loaded. Nothing is loaded when any of these happens: the load
/// is one transaction.
#[derive(Debug, thiserror::Error)]
pub enum LoadFileError {
    /// A value the target column does not take, or that is not valid text.
    #[error("{file}: {at}, column {column:?}: {why}; nothing loaded")]
    BadValue {
        /// The file, as the user named it.
        file: String,
        /// Where the row is in the file.
        at: Position,
        /// The target column.
        column: String,
        /// What is wrong with the value.
        why: String,
    },
    /// A row that is not one (ragged, not a JSON object, too large).
    #[error("{file}: {at}: {why}; nothing loaded")]
    BadRow {
        /// The file, as the user named it.
        file: String,
        /// Where the row is in the file.
        at: Position,
        /// What is wrong with the row.
        why: String,
    },
    /// The file as a whole (its header, its schema, not the format it claims).
    #[error("{file}: {why}")]
    BadFile {
        /// The file, as the user named it.
        file: String,
        /// What is wrong with it.
        why: String,
    },
    /// Reading the file failed.
    #[error("{file}: {why}")]
    Read {
        /// The file, as the user named it.
        file: String,
        /// What the reader says.
        why: String,
    },
    /// A compressed file whose stream does not decompress whole: damaged or cut short
    /// (what the decoder says, and where).
    #[error("{file}: {why}")]
    Damaged {
        /// The file, as the user named it.
        file: String,
        /// What the decoder says, and where.
        why: String,
    },
    /// Options that do not fit together or do not fit the file or the table.
    #[error("{0}")]
    Usage(String),
}

impl LoadFileError {
    /// Options or names that are wrong (exit 2), rather than content that is bad.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, LoadFileError::Usage(_))
    }
}

/// The result of this module.
pub type LoadFileResult<T> = Result<T, LoadFileError>;
