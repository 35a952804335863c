//! What goes wrong turning table data into an archive's bytes and back: zstd, the Parquet
//! writer and reader, the binary COPY stream. The Parquet reader of `strata load --file`
//! reports with the same kinds.

use parquet::errors::ParquetError;

/// Why data could not be encoded or decoded. The message is one line naming the step and,
/// where there is one, the part, row group or column.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// zstd could not be set up, or failed compressing or flushing.
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    /// A part's zstd stream does not decompress: the part is damaged.
    #[error("a part does not decompress: {0}")]
    Decompress(std::io::Error),
    /// The task storing the parts stopped taking them; its own error says why.
    #[error("storing the archive stopped")]
    Stopped,
    /// The CSV export ends inside a quoted field.
    #[error("the export ends inside a quoted field: it is cut short")]
    CutShort,
    /// The binary COPY stream is not one this engine decodes (a bad signature or frame,
    /// cut short, a value of the wrong width); the message says what.
    #[error("{0}")]
    CopyStream(String),
    /// A value PostgreSQL holds that a Parquet archive cannot (archive the table as CSV).
    #[error("{0}")]
    Unrepresentable(String),
    /// The Parquet schema of the columns could not be built.
    #[error("parquet schema: {0}")]
    Schema(ParquetError),
    /// The Parquet writer could not be set up (its settings, the description of the
    /// columns it keeps in each file).
    #[error("{0}")]
    WriterSetup(String),
    /// The Parquet writer failed.
    #[error("parquet: {0}")]
    Write(ParquetError),
    /// A file that is not Parquet.
    #[error("not a Parquet file: {0}")]
    NotParquet(ParquetError),
    /// A row group the Parquet reader refuses.
    #[error("row group {index}: {error}")]
    RowGroup {
        /// The row group, from 0.
        index: usize,
        /// What the reader says.
        error: ParquetError,
    },
    /// The Parquet reader panicked on damaged data (caught); what it was doing.
    #[error("{0}: the Parquet reader failed on damaged data")]
    ReaderPanicked(&'static str),
    /// Data whose shape is not what it must be: columns (their number, names, types) or
    /// rows that differ from the archive's, the schema's or each other's; the message says
    /// which.
    #[error("{0}")]
    Mismatch(String),
    /// A part that reads back from the storage other than it was written.
    #[error("part {part} reads back as {stored} bytes that differ from the {written} written")]
    ReadBackDiffers {
        /// The part, from 0.
        part: usize,
        /// The bytes read back.
        stored: usize,
        /// The bytes written.
        written: usize,
    },
}

/// The result of encoding or decoding.
pub type CodecResult<T> = Result<T, CodecError>;
