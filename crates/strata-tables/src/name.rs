//! Table names as users type them (`metrics.raw`, `"my schema"."odd.name"`) and as SQL
//! needs them (every part quoted).
//!
//! Unquoted parts are taken exactly as written, with no case folding: `Metrics.Raw` names the
//! table whose name is `Raw`. Double quotes are only needed around a part that holds a dot
//! or a colon (`""` inside quotes is one quote character).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableName {
    /// The schema (`public` when a name omits it).
    pub schema: String,
    /// The table's name within its schema.
    pub name: String,
}

/// A name that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid table name {text:?}: {why} (write SCHEMA.TABLE, quoting a part that holds a dot: \"my.schema\".\"t\")")]
pub struct NameError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl TableName {
    /// `schema.name`, taken as they are (no quoting or case folding).
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> TableName {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Reads `schema.table` or `table` (schema `public`).
    pub fn parse(text: &str) -> Result<TableName, NameError> {
        TableName::parse_in(text, "public")
    }

    /// Reads `schema.table` or `table` (in `schema`: CrateDB's default is `doc`).
    pub fn parse_in(text: &str, schema: &str) -> Result<TableName, NameError> {
        let parts = split_unquoted(text, '.', 2).map_err(|why| NameError {
            text: text.to_string(),
            why,
        })?;
        let parts: Vec<String> = parts
            .iter()
            .map(|p| unquote(p))
            .collect::<Result<_, _>>()
            .map_err(|why| NameError {
                text: text.to_string(),
                why,
            })?;
        match parts.as_slice() {
            [name] => Ok(TableName::new(schema, name.clone())),
            [schema, name] => Ok(TableName::new(schema.clone(), name.clone())),
            _ => Err(NameError {
                text: text.to_string(),
                why: "too many dots",
            }),
        }
    }

    /// `"schema"."name"` for SQL.
    pub fn quoted(&self) -> String {
        strata_pgclient::quote_qualified(&self.schema, &self.name)
    }
}

impl fmt::Display for TableName {
    /// The form [`TableName::parse`] reads back: parts quoted only when they need it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            display_part(&self.schema),
            display_part(&self.name)
        )
    }
}

fn display_part(part: &str) -> String {
    if part.is_empty() || part.contains(['.', ':', '"']) || part.trim() != part {
        strata_pgclient::quote_ident(part)
    } else {
        part.to_string()
    }
}

/// Splits `text` at `sep` outside double quotes, into at most `max` + 1 pieces (more are
/// reported as an error by the caller through the count).
pub(crate) fn split_unquoted(
    text: &str,
    sep: char,
    max: usize,
) -> Result<Vec<String>, &'static str> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                parts.last_mut().expect("never empty").push(c);
            }
            c if c == sep && !quoted => {
                if parts.len() > max {
                    return Err("too many separators");
                }
                parts.push(String::new());
            }
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    if quoted {
        return Err("an unclosed double quote");
    }
    Ok(parts)
}

/// One name part: `"a""b"` is `a"b`, anything else is taken as written.
pub(crate) fn unquote(part: &str) -> Result<String, &'static str> {
    if part.is_empty() {
        return Err("an empty name");
    }
    if let Some(inner) = part.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or("text after a closing quote")?;
        if inner.is_empty() {
            return Err("an empty name");
        }
        // Inside, every quote must be doubled.
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' && chars.next() != Some('"') {
                return Err("a lone double quote inside a quoted name");
            }
            out.push(c);
        }
        return Ok(out);
    }
    if part.contains('"') {
        return Err("a double quote inside an unquoted name");
    }
    Ok(part.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_quoted_names() {
        assert_eq!(
            TableName::parse("metrics.raw").unwrap(),
            TableName::new("metrics", "raw")
        );
        assert_eq!(
            TableName::parse("raw").unwrap(),
            TableName::new("public", "raw")
        );
        assert_eq!(
            TableName::parse("\"my schema\".\"odd.na\"\"me\"").unwrap(),
            TableName::new("my schema", "odd.na\"me")
        );
        assert_eq!(
            TableName::parse("Mëtrics.Raw").unwrap(),
            TableName::new("Mëtrics", "Raw")
        );
        assert_eq!(
            TableName::parse("a b.c d").unwrap(),
            TableName::new("a b", "c d")
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            "a.",
            ".a",
            "a.b.c",
            "\"a",
            "a\"b.c",
            "\"\".x",
            "\"a\"b.c",
            "\"a\"x\".b",
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_parses_back_and_sql_is_quoted() {
        for name in [
            TableName::new("metrics", "raw"),
            TableName::new("my schema", "odd.na\"me"),
            TableName::new("x", "a:b"),
        ] {
            assert_eq!(TableName::parse(&name.to_string()).unwrap(), name);
        }
        assert_eq!(
            TableName::new("s", "t\"; DROP TABLE x; --").quoted(),
            "\"s\".\"t\"\"; DROP TABLE x; --\""
        );
    }
}
