//! The formats `strata load --file` reads, named as cratedb-toolkit's `load table` names
//! them (`ndjson`, `jsonl` and `json-lines` are one format), or known by the file's
//! extension.

use super::error::LoadFileError;

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// RFC 4180 CSV: comma-separated, `"` quotes, `""` a quote inside quotes.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// A `--format` value.
    pub fn parse(text: &str) -> Result<FileFormat, LoadFileError> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "csv" => FileFormat::Csv,
            "ndjson" | "jsonl" | "json-lines" | "jsonlines" => FileFormat::Ndjson,
            "parquet" | "pq" => FileFormat::Parquet,
            _ => {
                return Err(LoadFileError::Usage(format!(
                    "--format {text:?}: csv, ndjson (also jsonl, json-lines) or parquet"
                )))
            }
        })
    }

    /// The format's name, as `--format` takes it.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Ndjson => "ndjson",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// How a file is compressed as a whole (Parquet compresses inside; it takes none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (one member or several, as `cat a.gz b.gz` makes).
    Gzip,
    /// Zstandard (one frame or several).
    Zstd,
}

impl Compression {
    /// A `--compression` value.
    pub fn parse(text: &str) -> Result<Compression, LoadFileError> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "none" => Compression::None,
            "gzip" | "gz" => Compression::Gzip,
            "zstd" | "zst" => Compression::Zstd,
            _ => {
                return Err(LoadFileError::Usage(format!(
                    "--compression {text:?}: none, gzip or zstd"
                )))
            }
        })
    }

    /// The compression a file's name says (`.gz`, `.zst`), and the name without it.
    pub fn of_name(name: &str) -> (Compression, &str) {
        let lower = name.to_ascii_lowercase();
        for (suffix, compression) in [
            (".gz", Compression::Gzip),
            (".gzip", Compression::Gzip),
            (".zst", Compression::Zstd),
            (".zstd", Compression::Zstd),
        ] {
            if lower.ends_with(suffix) {
                return (compression, &name[..name.len() - suffix.len()]);
            }
        }
        (Compression::None, name)
    }
}

/// How a file is written: its format, a CSV's delimiter, its compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileShape {
    /// The file's format.
    pub format: FileFormat,
    /// The byte between a CSV's fields (`,`; a tab for `tsv`).
    pub delimiter: u8,
    /// How the file is compressed as a whole.
    pub compression: Compression,
}

impl FileShape {
    /// The shape of file `name` as the options give it, the rest known from the name
    /// (`data.tsv.gz`: CSV with tabs, gzip). `--format tsv` is CSV with a tab delimiter.
    pub fn of(
        name: &str,
        format: Option<&str>,
        delimiter: Option<&str>,
        compression: Option<&str>,
    ) -> Result<FileShape, LoadFileError> {
        let (named_compression, rest) = Compression::of_name(name);
        let compression = match compression {
            Some(text) => Compression::parse(text)?,
            None => named_compression,
        };
        let format_text = match format {
            Some(text) => text.to_string(),
            None => {
                let base = rest.rsplit('/').next().unwrap_or(rest);
                let extension = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
                if extension.is_empty() || !is_known(extension) {
                    return Err(LoadFileError::Usage(format!(
                        "{name}: the format is not known from the extension {extension:?} (.csv, .tsv, .ndjson, .jsonl, .parquet, each maybe .gz or .zst): give --format"
                    )));
                }
                extension.to_string()
            }
        };
        let tsv = format_text.eq_ignore_ascii_case("tsv");
        let format = if tsv {
            FileFormat::Csv
        } else {
            FileFormat::parse(&format_text)?
        };
        let delimiter = match delimiter {
            Some(_) if format != FileFormat::Csv => {
                return Err(LoadFileError::Usage(
                    "--delimiter is for CSV (and TSV) files".into(),
                ))
            }
            Some(text) => parse_delimiter(text)?,
            None if tsv => b'\t',
            None => b',',
        };
        if format == FileFormat::Parquet && compression != Compression::None {
            return Err(LoadFileError::Usage(format!(
                "{name}: a Parquet file compresses its own pages; it cannot be read through {compression:?} compression"
            )));
        }
        Ok(FileShape {
            format,
            delimiter,
            compression,
        })
    }
}

fn is_known(extension: &str) -> bool {
    extension.eq_ignore_ascii_case("tsv") || FileFormat::parse(extension).is_ok()
}

/// A `--delimiter`: one ASCII character other than a quote or a line end; `\t` or `tab`
/// for a tab.
fn parse_delimiter(text: &str) -> Result<u8, LoadFileError> {
    let byte = match text {
        "\\t" | "tab" | "TAB" => b'\t',
        _ if text.len() == 1 => text.as_bytes()[0],
        _ => 0,
    };
    if byte == 0 || !byte.is_ascii() || matches!(byte, b'"' | b'\n' | b'\r') {
        return Err(LoadFileError::Usage(format!(
            "--delimiter {text:?}: one ASCII character (not a quote or a line end), or \\t for a tab"
        )));
    }
    Ok(byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_from_names_and_options() {
        let shape = |name: &str| FileShape::of(name, None, None, None).unwrap();
        let csv = FileShape {
            format: FileFormat::Csv,
            delimiter: b',',
            compression: Compression::None,
        };
        assert_eq!(shape("a.csv"), csv);
        assert_eq!(
            shape("s3://b/k/a.csv.GZ"),
            FileShape {
                compression: Compression::Gzip,
                ..csv
            }
        );
        assert_eq!(
            shape("a.tsv.zst"),
            FileShape {
                delimiter: b'\t',
                compression: Compression::Zstd,
                ..csv
            }
        );
        assert_eq!(shape("x.jsonl.gz").format, FileFormat::Ndjson);
        let given = FileShape::of("dump", Some("csv"), Some("|"), Some("zstd")).unwrap();
        assert_eq!(
            (given.delimiter, given.compression),
            (b'|', Compression::Zstd)
        );
        assert_eq!(
            FileShape::of("a.txt", Some("tsv"), None, None)
                .unwrap()
                .delimiter,
            b'\t'
        );
        assert_eq!(
            FileShape::of("a.csv", None, Some("\\t"), None)
                .unwrap()
                .delimiter,
            b'\t'
        );
        for bad in [
            FileShape::of("a.parquet.gz", None, None, None),
            FileShape::of("a.jsonl", None, Some(";"), None),
            FileShape::of("a.csv", None, Some("ab"), None),
            FileShape::of("a.csv", None, Some("\""), None),
            FileShape::of("a.csv", None, None, Some("lz4")),
            FileShape::of("a.gz", None, None, None),
            FileShape::of("a.csv", None, Some("é"), None),
        ] {
            let err = bad.unwrap_err().to_string();
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn formats_by_name_and_alias() {
        for alias in ["ndjson", "jsonl", "json-lines", "JSONL"] {
            assert_eq!(FileFormat::parse(alias).unwrap(), FileFormat::Ndjson);
        }
        let of = |name: &str| FileShape::of(name, None, None, None).map(|s| s.format);
        assert_eq!(of("s3://b/x/data.2025.csv").unwrap(), FileFormat::Csv);
        assert_eq!(of("/tmp/a.parquet").unwrap(), FileFormat::Parquet);
        let err = of("data.json").unwrap_err().to_string();
        assert!(err.contains("--format"), "{err}");
        assert!(of("noextension").is_err());
        assert!(FileFormat::parse("xml").is_err());
    }
}
