//! CSV files row by row: RFC 4180 (comma, `"` quotes, `""` for a quote inside them, CR LF
//! or LF line ends, blank lines skipped), parsed by `csv-core` straight into the reused
//! [`Row`] buffer. A record longer than [`MAX_ROW_BYTES`] or with more than
//! [`MAX_FIELDS`] fields is an error rather than a buffer that grows without end.
//!
//! An empty field is NULL, as an unquoted empty field is in PostgreSQL's own CSV COPY
//! (csv-core does not tell quoted from unquoted, and Python's `csv` writes `None` and
//! `""` alike).

use super::error::{LoadFileError, LoadFileResult, Position};
use super::row::{Row, RowReader, Tag, MAX_FIELDS, MAX_ROW_BYTES};
use csv_core::ReadRecordResult;
use std::io::{BufRead, BufReader, Read};

/// How much of the file is read at once.
const READ_BYTES: usize = 1 << 20;

/// A CSV file.
pub struct CsvRows {
    input: BufReader<Box<dyn Read + Send>>,
    parser: csv_core::Reader,
    file: String,
    columns: Vec<String>,
    /// The line the input is at, from 1.
    line: u64,
    bytes: u64,
    /// The first record, when it is data (`--no-header`), handed out first.
    pending: Option<Row>,
    header: bool,
    /// Whether the parser was given the line end of the end of the file.
    end_probed: bool,
    /// csv-core's output: the fields of the record being read, and where they end.
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl CsvRows {
    /// Opens the CSV in `input`: the first record is its header, or with `header` false
    /// its first row (the columns are then `column1`, `column2`, ...).
    pub fn open(
        input: Box<dyn Read + Send>,
        file: &str,
        header: bool,
        delimiter: u8,
    ) -> LoadFileResult<CsvRows> {
        let mut rows = CsvRows {
            input: BufReader::with_capacity(READ_BYTES, input),
            parser: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            file: file.to_string(),
            columns: Vec::new(),
            line: 1,
            bytes: 0,
            pending: None,
            header,
            end_probed: false,
            out: vec![0; 64 << 10],
            ends: vec![0; 64],
        };
        let mut first = Row::default();
        if !rows.read_record(&mut first)? {
            return Err(LoadFileError::BadFile {
                file: file.to_string(),
                why: "empty: no header, no rows".into(),
            });
        }
        if header {
            rows.columns = header_names(&first, file)?;
        } else {
            rows.columns = (1..=first.len()).map(|i| format!("column{i}")).collect();
            rows.pending = Some(first);
        }
        Ok(rows)
    }

    /// The next record, fields as they are (no NULLs yet); `false` at the end.
    fn read_record(&mut self, row: &mut Row) -> LoadFileResult<bool> {
        row.clear();
        let mut start: Option<u64> = None;
        let (mut nout, mut nends) = (0, 0);
        loop {
            let input = self.input.fill_buf().map_err(|e| LoadFileError::Read {
                file: self.file.clone(),
                why: e.to_string(),
            })?;
            if start.is_none() {
                // Blank lines before the record are skipped: it starts at its first byte.
                let blank = input
                    .iter()
                    .take_while(|b| **b == b'\n' || **b == b'\r')
                    .filter(|b| **b == b'\n')
                    .count();
                if blank < input.len() || input.is_empty() {
                    start = Some(self.line + blank as u64);
                }
            }
            // At the end of the file the parser is first given a line end of its own:
            // in a quoted field it becomes the field's text, and so tells a quote that is
            // never closed (csv-core would end the record there, the rest of the file one
            // value: rows dropped without a word). Anywhere else it ends the record just
            // as the end of the file does.
            let end_probe = input.is_empty() && !self.end_probed;
            let input = if end_probe { &b"\n"[..] } else { input };
            let (result, nin, out, end) =
                self.parser
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nends..]);
            if end_probe {
                self.end_probed = nin == 1;
                if nin == 1 && out == 1 && result == ReadRecordResult::InputEmpty {
                    // PostgreSQL's COPY refuses it too ("unterminated CSV quoted field").
                    let opened = self.quote_line(nout, nends);
                    return Err(self.bad_row(
                        Position::Line(opened),
                        "a quoted field opens here and is never closed: the file ends \
                         inside it (an unterminated quote)"
                            .into(),
                    ));
                }
            } else {
                self.line += memchr::memchr_iter(b'\n', &input[..nin]).count() as u64;
                self.bytes += nin as u64;
                self.input.consume(nin);
            }
            nout += out;
            nends += end;
            let at = Position::Line(start.unwrap_or(self.line));
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_ROW_BYTES {
                        return Err(self.bad_row(
                            at,
                            format!(
                                "a record of more than {} MiB (a quote left open?)",
                                MAX_ROW_BYTES >> 20
                            ),
                        ));
                    }
                    let grown = (self.out.len() * 2).min(MAX_ROW_BYTES);
                    self.out.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() > MAX_FIELDS {
                        return Err(self.bad_row(at, format!("more than {MAX_FIELDS} fields")));
                    }
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    if nends > MAX_FIELDS {
                        return Err(self.bad_row(at, format!("more than {MAX_FIELDS} fields")));
                    }
                    row.data.extend_from_slice(&self.out[..nout]);
                    row.ends.extend_from_slice(&self.ends[..nends]);
                    row.at = at;
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
            }
        }
    }

    /// The line the open quoted field of the record being read starts on, at the end of
    /// the file, the parser inside it and the record's output `nout` bytes in `nends`
    /// ended fields. Such a field opened with a quote at its start and holds every byte
    /// since (a quote inside it is doubled, a line end is kept as it is), so it starts
    /// as many lines back as it holds line ends.
    fn quote_line(&self, nout: usize, nends: usize) -> u64 {
        let start = if nends == 0 { 0 } else { self.ends[nends - 1] };
        let inside = memchr::memchr_iter(b'\n', &self.out[start.min(nout)..nout]).count();
        self.line.saturating_sub(inside as u64).max(1)
    }

    fn bad_row(&self, at: Position, why: String) -> LoadFileError {
        LoadFileError::BadRow {
            file: self.file.clone(),
            at,
            why,
        }
    }
}

/// The column names of a header record: UTF-8, not empty, each once (a byte order mark
/// before the first is dropped).
fn header_names(header: &Row, file: &str) -> LoadFileResult<Vec<String>> {
    let bad = |why: String| LoadFileError::BadFile {
        file: file.to_string(),
        why: format!("header (line 1): {why}"),
    };
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for i in 0..header.len() {
        let start = if i == 0 { 0 } else { header.ends[i - 1] };
        let raw = &header.data[start..header.ends[i]];
        let name =
            std::str::from_utf8(raw).map_err(|_| bad(format!("column {} is not UTF-8", i + 1)))?;
        let name = if i == 0 {
            name.trim_start_matches('\u{feff}')
        } else {
            name
        };
        if name.is_empty() || name.contains('\0') {
            return Err(bad(format!(
                "column {} has no name (give --no-header when the file has no header)",
                i + 1
            )));
        }
        if names.iter().any(|n| n == name) {
            return Err(bad(format!("column {name:?} appears twice")));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

impl RowReader for CsvRows {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Row) -> LoadFileResult<bool> {
        match self.pending.take() {
            Some(first) => *row = first,
            None => {
                if !self.read_record(row)? {
                    return Ok(false);
                }
            }
        }
        if row.len() != self.columns.len() {
            let what = if self.header {
                "the header"
            } else {
                "the first row"
            };
            return Err(self.bad_row(
                row.at,
                format!(
                    "{} fields where {what} has {}",
                    row.len(),
                    self.columns.len()
                ),
            ));
        }
        let mut start = 0;
        for i in 0..row.ends.len() {
            row.nulls.push(row.ends[i] == start);
            row.tags.push(Tag::Text);
            start = row.ends[i];
        }
        Ok(true)
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as read: where, and its fields.
    type Read = (Position, Vec<Option<String>>);

    fn rows(csv: &[u8], header: bool) -> LoadFileResult<(Vec<String>, Vec<Read>)> {
        rows_by(csv, header, b',')
    }

    fn rows_by(
        csv: &[u8],
        header: bool,
        delimiter: u8,
    ) -> LoadFileResult<(Vec<String>, Vec<Read>)> {
        let mut reader = CsvRows::open(
            Box::new(std::io::Cursor::new(csv.to_vec())),
            "f.csv",
            header,
            delimiter,
        )?;
        let mut out = Vec::new();
        let mut row = Row::default();
        while reader.next_row(&mut row)? {
            let fields = (0..row.len())
                .map(|i| {
                    row.field(i)
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                })
                .collect();
            out.push((row.at, fields));
        }
        assert_eq!(reader.bytes_read(), csv.len() as u64);
        Ok((reader.columns().to_vec(), out))
    }

    #[test]
    fn records_with_quotes_newlines_and_nulls_and_their_lines() {
        let csv = b"\xef\xbb\xbfid,note\r\n1,\"two\nlines\"\r\n\n2,\"a \"\"q\"\" ,\"\n3,\n4,\"\"";
        let (columns, rows) = rows(csv, true).unwrap();
        assert_eq!(columns, ["id", "note"]);
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            rows,
            vec![
                (Position::Line(2), vec![s("1"), s("two\nlines")]),
                (Position::Line(5), vec![s("2"), s("a \"q\" ,")]),
                (Position::Line(6), vec![s("3"), None]),
                (Position::Line(7), vec![s("4"), None]),
            ]
        );
    }

    #[test]
    fn tabs_or_another_delimiter_split_fields_and_commas_are_text() {
        let tsv = b"id\tnote\n1\ta, b\n2\t\"tab\there\"\n";
        let (columns, rows) = rows_by(tsv, true, b'\t').unwrap();
        assert_eq!(columns, ["id", "note"]);
        let s = |v: &str| Some(v.to_string());
        assert_eq!(rows[0].1, vec![s("1"), s("a, b")]);
        assert_eq!(rows[1].1, vec![s("2"), s("tab\there")]);
        let (_, rows) = rows_by(b"a|b\n1|x,y\n", true, b'|').unwrap();
        assert_eq!(rows[0].1, vec![s("1"), s("x,y")]);
    }

    #[test]
    fn without_a_header_the_columns_are_numbered() {
        let (columns, rows) = rows(b"1,a\n2,b\n", false).unwrap();
        assert_eq!(columns, ["column1", "column2"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, Position::Line(1));
    }

    #[test]
    fn ragged_rows_and_bad_headers_name_the_line() {
        let err = rows(b"a,b\n1,2\n3\n", true).unwrap_err().to_string();
        assert!(
            err.contains("f.csv: line 3: 1 fields where the header has 2"),
            "{err}"
        );
        let err = rows(b"a,a\n", true).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
        let err = rows(b"a,\n", true).unwrap_err().to_string();
        assert!(err.contains("no name"), "{err}");
        assert!(rows(b"", true).is_err());
    }

    #[test]
    fn a_quote_never_closed_is_refused_naming_the_line_it_opened_on() {
        // The file of the report: it read as 2 rows, the rest of the file one value.
        let err = rows(b"id,v\n1,a\n2,\"oops\n3,c\n4,d\n", true)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "f.csv: line 3: a quoted field opens here and is never closed: the file ends \
             inside it (an unterminated quote); nothing loaded"
        );
        // Without a line end at the end, with CR LF, in the last field of a record that
        // started lines before (a closed quoted field of two lines first), a doubled quote
        // inside, in the header, without a header.
        for (csv, header, line) in [
            (&b"id,v\n1,a\n2,\"oops"[..], true, 3),
            (b"id,v\r\n1,a\r\n2,\"oops\r\n3,c\r\n", true, 3),
            (b"id,v,w\n1,\"two\nlines\",\"open\n\n5,x,y\n", true, 3),
            (b"id,v\n1,\"say \"\"hi\"\"\n2,b\n", true, 2),
            (b"id,\"v\n1,a\n", true, 1),
            (b"1,a\n2,b\n\n\n3,\"", false, 5),
            (b"1,a\n\"", false, 2),
        ] {
            let err = rows(csv, header).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("f.csv: line {line}: a quoted field opens here")),
                "{:?}: {err}",
                String::from_utf8_lossy(csv)
            );
        }
        // Quotes that close, even at the very end, and quotes inside unquoted text.
        let (_, read) = rows(b"id,v\n1,\"a\"\n2,\"b\nc\"", true).unwrap();
        assert_eq!(read.len(), 2);
        let (_, read) = rows(b"id,v\n1,a\"b\n2,\"x\"y\"\n3,\"\"\n", true).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].1[1].as_deref(), Some("a\"b"));
        let (_, read) = rows(b"id,v\n1,\"\"\"\"\n", true).unwrap();
        assert_eq!(read[0].1[1].as_deref(), Some("\""));
    }

    #[test]
    fn a_quote_left_open_stops_at_the_bound() {
        let mut csv = b"a\n\"".to_vec();
        csv.resize(MAX_ROW_BYTES + 10, b'x');
        let err = rows(&csv, true).err().unwrap().to_string();
        assert!(err.contains("line 2") && err.contains("MiB"), "{err}");
        let mut wide = vec![b','; MAX_FIELDS + 5];
        wide.insert(0, b'a');
        let err = rows(&wide, false).err().unwrap().to_string();
        assert!(err.contains("fields"), "{err}");
    }
}
