//! Rows as the lines of `COPY ... FROM STDIN (FORMAT text)`, and the checks every value
//! passes first: text PostgreSQL takes (valid UTF-8 without NUL bytes), so that a bad
//! byte is reported with its line and column here rather than as a bare encoding error
//! from the server.

use super::error::LoadFileError;
use super::row::Row;

/// Why field `i` of `row` cannot be loaded as text, if it cannot.
pub fn check_text(row: &Row) -> Result<(), (usize, &'static str)> {
    if let Some(at) = memchr::memchr(0, &row.data) {
        return Err((
            field_at(row, at),
            "a NUL byte (PostgreSQL text cannot hold one)",
        ));
    }
    if let Err(e) = std::str::from_utf8(&row.data) {
        return Err((field_at(row, e.valid_up_to()), "invalid UTF-8"));
    }
    // The whole is UTF-8: every field is, unless one starts inside a character.
    let mut start = 0;
    for (i, end) in row.ends.iter().enumerate() {
        if start < *end && row.data[start] & 0xC0 == 0x80 {
            return Err((i, "invalid UTF-8"));
        }
        start = *end;
    }
    Ok(())
}

/// The field holding byte `at` of the row's data.
fn field_at(row: &Row, at: usize) -> usize {
    row.ends
        .partition_point(|end| *end <= at)
        .min(row.len().saturating_sub(1))
}

/// A bad value of `row` as an error.
pub fn bad_value(
    file: &str,
    row: &Row,
    columns: &[String],
    field: usize,
    why: &str,
) -> LoadFileError {
    LoadFileError::BadValue {
        file: file.to_string(),
        at: row.at,
        column: columns
            .get(field)
            .cloned()
            .unwrap_or_else(|| format!("#{}", field + 1)),
        why: why.to_string(),
    }
}

/// Appends the row as one line of COPY text, columns `pick` in that order (indexes into
/// the row; a missing field is NULL).
pub fn write_row(row: &Row, pick: &[usize], out: &mut Vec<u8>) {
    // Most rows need no escape at all: one scan of the row decides.
    let plain = memchr::memchr3(b'\\', b'\n', b'\r', &row.data).is_none()
        && memchr::memchr(b'\t', &row.data).is_none();
    for (n, &i) in pick.iter().enumerate() {
        if n > 0 {
            out.push(b'\t');
        }
        match (i < row.len()).then(|| row.field(i)).flatten() {
            None => out.extend_from_slice(b"\\N"),
            Some(text) if plain => out.extend_from_slice(text),
            Some(text) => crate::archive::pgtext::escape(text, out),
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::super::row::Tag;
    use super::*;

    fn row(fields: &[Option<&[u8]>]) -> Row {
        let mut row = Row::default();
        for f in fields {
            row.push(f.unwrap_or(b""), f.is_none(), Tag::Text);
        }
        row
    }

    #[test]
    fn rows_become_escaped_copy_lines() {
        let mut out = Vec::new();
        write_row(
            &row(&[Some(b"1"), None, Some(b"a\tb\\c\nd\re")]),
            &[0, 1, 2],
            &mut out,
        );
        write_row(&row(&[Some(b"x"), Some(b"y")]), &[1, 0, 5], &mut out);
        assert_eq!(out, b"1\t\\N\ta\\tb\\\\c\\nd\\re\ny\tx\t\\N\n");
    }

    #[test]
    fn nul_bytes_and_invalid_utf8_name_their_field() {
        assert_eq!(
            check_text(&row(&[Some(b"ok"), Some("ü".as_bytes())])),
            Ok(())
        );
        assert_eq!(
            check_text(&row(&[Some(b"ok"), Some(b"a\0")]))
                .unwrap_err()
                .0,
            1
        );
        assert_eq!(
            check_text(&row(&[Some(b"\xff"), Some(b"a")]))
                .unwrap_err()
                .0,
            0
        );
        // Each half of a character alone, the whole valid: still refused, in the second.
        let split = row(&[Some(b"\xc3"), Some(b"\xbc")]);
        assert_eq!(check_text(&split), Err((1, "invalid UTF-8")));
        let err = bad_value(
            "f.csv",
            &split,
            &["a".into(), "b".into()],
            1,
            "invalid UTF-8",
        );
        assert_eq!(
            err.to_string(),
            "f.csv: line 0, column \"b\": invalid UTF-8; nothing loaded"
        );
    }
}
