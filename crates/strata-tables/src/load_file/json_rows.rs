//! JSON lines (ndjson, jsonl) row by row: one JSON object per line, its keys the columns.
//! Blank lines are skipped; a line longer than [`MAX_ROW_BYTES`] is an error before it is
//! buffered whole; nesting deeper than serde_json's limit (128) is an error, not a stack
//! overflow.
//!
//! The columns are the keys: while `discover`ing (the first pass over the file) each new
//! key becomes a column; afterwards a key that is not one is an error. A key missing from
//! an object is NULL, as is `null`. Strings load as their text, numbers and booleans as
//! JSON writes them, objects and arrays as JSON text.

use super::error::{LoadFileError, LoadFileResult, Position};
use super::row::{Row, RowReader, Tag, MAX_FIELDS, MAX_ROW_BYTES};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

const READ_BYTES: usize = 1 << 20;

/// A JSON object's members in the file's order (serde_json's own map sorts its keys, and
/// the columns `--create` makes should come in the order the file has them). A key given
/// twice keeps its last value, as serde_json's map would.
struct Object(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Object, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Object;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Object, A::Error> {
                let mut members: Vec<(String, Value)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    match members.iter_mut().find(|(k, _)| *k == key) {
                        Some(member) => member.1 = value,
                        None => members.push((key, value)),
                    }
                }
                Ok(Object(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// A JSON lines file.
pub struct JsonRows {
    input: BufReader<Box<dyn Read + Send>>,
    file: String,
    columns: Vec<String>,
    index: HashMap<String, usize>,
    discover: bool,
    line: u64,
    bytes: u64,
    buffer: Vec<u8>,
    /// The values of the row being read, by column.
    slots: Vec<Option<(Tag, usize, usize)>>,
    scratch: Vec<u8>,
}

impl JsonRows {
    /// A reader whose columns are `columns`; with `discover`, keys not among them are
    /// added as they come.
    pub fn open(
        input: Box<dyn Read + Send>,
        file: &str,
        columns: Vec<String>,
        discover: bool,
    ) -> JsonRows {
        let index = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        JsonRows {
            input: BufReader::with_capacity(READ_BYTES, input),
            file: file.to_string(),
            columns,
            index,
            discover,
            line: 0,
            bytes: 0,
            buffer: Vec::new(),
            slots: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The next line into `buffer` (without its line end); `false` at the end.
    fn read_line(&mut self) -> LoadFileResult<bool> {
        self.buffer.clear();
        let mut any = false;
        loop {
            let input = self.input.fill_buf().map_err(|e| LoadFileError::Read {
                file: self.file.clone(),
                why: e.to_string(),
            })?;
            if input.is_empty() {
                if any {
                    self.line += 1;
                }
                return Ok(any);
            }
            any = true;
            let (take, done) = match memchr::memchr(b'\n', input) {
                Some(at) => (at + 1, true),
                None => (input.len(), false),
            };
            if self.buffer.len() + take > MAX_ROW_BYTES {
                return Err(LoadFileError::BadRow {
                    file: self.file.clone(),
                    at: Position::Line(self.line + 1),
                    why: format!("a line of more than {} MiB", MAX_ROW_BYTES >> 20),
                });
            }
            self.buffer.extend_from_slice(&input[..take]);
            self.input.consume(take);
            self.bytes += take as u64;
            if done {
                self.line += 1;
                self.buffer.pop();
                if self.buffer.last() == Some(&b'\r') {
                    self.buffer.pop();
                }
                return Ok(true);
            }
        }
    }

    fn bad_row(&self, why: String) -> LoadFileError {
        LoadFileError::BadRow {
            file: self.file.clone(),
            at: Position::Line(self.line),
            why,
        }
    }
}

impl RowReader for JsonRows {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Row) -> LoadFileResult<bool> {
        row.clear();
        loop {
            if !self.read_line()? {
                return Ok(false);
            }
            if !self.buffer.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let Object(object) = serde_json::from_slice(&self.buffer)
            .map_err(|e| self.bad_row(format!("not a JSON object: {e}")))?;
        self.scratch.clear();
        self.slots.clear();
        self.slots.resize(self.columns.len(), None);
        for (key, value) in object {
            let column = match self.index.get(&key) {
                Some(i) => *i,
                None if self.discover => {
                    if self.columns.len() >= MAX_FIELDS {
                        return Err(
                            self.bad_row(format!("more than {MAX_FIELDS} keys in the file"))
                        );
                    }
                    self.index.insert(key.clone(), self.columns.len());
                    self.columns.push(key);
                    self.slots.push(None);
                    self.columns.len() - 1
                }
                None => {
                    return Err(self.bad_row(format!("key {key:?} is not a column of the table")))
                }
            };
            let start = self.scratch.len();
            let tag = match &value {
                Value::Null => continue,
                Value::Bool(b) => {
                    self.scratch
                        .extend_from_slice(if *b { b"true" } else { b"false" });
                    Tag::JsonBool
                }
                Value::Number(n) => {
                    self.scratch.extend_from_slice(n.to_string().as_bytes());
                    if n.is_i64() {
                        Tag::JsonInteger
                    } else {
                        Tag::JsonFloat
                    }
                }
                Value::String(s) => {
                    self.scratch.extend_from_slice(s.as_bytes());
                    Tag::JsonString
                }
                Value::Array(_) | Value::Object(_) => {
                    // Writing into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut self.scratch, &value);
                    Tag::JsonNested
                }
            };
            self.slots[column] = Some((tag, start, self.scratch.len()));
        }
        for slot in &self.slots {
            match slot {
                Some((tag, start, end)) => row.push(&self.scratch[*start..*end], false, *tag),
                None => row.push(b"", true, Tag::Text),
            }
        }
        row.at = Position::Line(self.line);
        Ok(true)
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = Vec<Option<String>>;

    fn read(
        text: &str,
        columns: &[&str],
        discover: bool,
    ) -> LoadFileResult<(Vec<String>, Vec<Fields>)> {
        let input = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
        let columns = columns.iter().map(|c| c.to_string()).collect();
        let mut reader = JsonRows::open(input, "f.jsonl", columns, discover);
        let mut row = Row::default();
        let mut out = Vec::new();
        while reader.next_row(&mut row)? {
            out.push(
                (0..row.len())
                    .map(|i| {
                        row.field(i)
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                    })
                    .collect(),
            );
        }
        Ok((reader.columns().to_vec(), out))
    }

    #[test]
    fn keys_become_columns_and_values_text() {
        let text = "{\"a\": 1, \"b\": \"x\\ty\"}\n\n{\"b\": null, \"c\": [1, {\"d\": true}], \"a\": 2.5}\r\n{\"a\": false}";
        let (columns, rows) = read(text, &[], true).unwrap();
        assert_eq!(columns, ["a", "b", "c"]);
        let (columns, _) = read("{\"z\": 1, \"a\": 2, \"z\": 3}", &[], true).unwrap();
        assert_eq!(columns, ["z", "a"], "the file's order");
        let s = |v: &str| Some(v.to_string());
        assert_eq!(rows[0], vec![s("1"), s("x\ty")]);
        assert_eq!(rows[1], vec![s("2.5"), None, s("[1,{\"d\":true}]")]);
        assert_eq!(rows[2], vec![s("false"), None, None]);
        // A second pass with the columns known: an unknown key is an error.
        let err = read(text, &["a", "b"], false).unwrap_err().to_string();
        assert!(
            err.contains("f.jsonl: line 3") && err.contains("\"c\""),
            "{err}"
        );
    }

    #[test]
    fn not_objects_and_deep_nesting_are_errors_naming_the_line() {
        for bad in ["[1]", "{\"a\":", "\"x\"", "{\"a\":1} trailing"] {
            let err = read(&format!("{{}}\n{bad}\n"), &[], true)
                .unwrap_err()
                .to_string();
            assert!(err.contains("line 2: not a JSON object"), "{bad}: {err}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let err = read(&deep, &[], true).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
