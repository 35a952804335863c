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

    /// The format a file's name says, by its extension.
    pub fn of_name(name: &str) -> Result<FileFormat, LoadFileError> {
        let base = name.rsplit('/').next().unwrap_or(name);
        let extension = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        FileFormat::parse(extension).map_err(|_| {
            LoadFileError::Usage(format!(
                "{name}: the format is not known from the extension {extension:?} (.csv, .ndjson, .jsonl, .parquet): give --format"
            ))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Ndjson => "ndjson",
            FileFormat::Parquet => "parquet",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name_alias_and_extension() {
        for alias in ["ndjson", "jsonl", "json-lines", "JSONL"] {
            assert_eq!(FileFormat::parse(alias).unwrap(), FileFormat::Ndjson);
        }
        assert_eq!(
            FileFormat::of_name("s3://b/x/data.2025.csv").unwrap(),
            FileFormat::Csv
        );
        assert_eq!(FileFormat::of_name("a.jsonl").unwrap(), FileFormat::Ndjson);
        assert_eq!(
            FileFormat::of_name("/tmp/a.parquet").unwrap(),
            FileFormat::Parquet
        );
        let err = FileFormat::of_name("data.json").unwrap_err().to_string();
        assert!(err.contains("--format"), "{err}");
        assert!(FileFormat::of_name("noextension").is_err());
        assert!(FileFormat::parse("xml").is_err());
    }
}
