//! Which table columns the file's columns load into: an existing table's columns matched
//! by name (exactly, or else the one column that matches ignoring case), or by position
//! without a header; or the columns of a table `--create` makes, with quoted names.

use super::error::LoadFileError;
use crate::discover::Column;
use crate::name::TableName;

/// The column of `table` each file column loads into, in file order.
pub fn match_columns(
    file: &str,
    file_columns: &[String],
    table: &TableName,
    table_columns: &[Column],
    by_position: bool,
) -> Result<Vec<Column>, LoadFileError> {
    if by_position {
        if file_columns.len() > table_columns.len() {
            return Err(LoadFileError::Usage(format!(
                "{file}: {} fields a row, {table} has {} columns",
                file_columns.len(),
                table_columns.len()
            )));
        }
        return Ok(table_columns[..file_columns.len()].to_vec());
    }
    let mut matched: Vec<Column> = Vec::with_capacity(file_columns.len());
    for name in file_columns {
        let exact = table_columns.iter().find(|c| c.name == *name);
        let folded: Vec<&Column> = table_columns
            .iter()
            .filter(|c| c.name.to_lowercase() == name.to_lowercase())
            .collect();
        let column = match (exact, folded.as_slice()) {
            (Some(c), _) => c.clone(),
            (None, [c]) => (*c).clone(),
            _ => {
                let names: Vec<&str> = table_columns.iter().map(|c| c.name.as_str()).collect();
                return Err(LoadFileError::Usage(format!(
                    "{file}: column {name:?} is not a column of {table} (its columns: {})",
                    names.join(", ")
                )));
            }
        };
        if matched.iter().any(|m| m.name == column.name) {
            return Err(LoadFileError::Usage(format!(
                "{file}: two columns of the file load into column {:?} of {table}",
                column.name
            )));
        }
        matched.push(column);
    }
    Ok(matched)
}

/// `CREATE TABLE` of `columns`.
pub fn create_table(table: &TableName, columns: &[Column]) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", strata_pgclient::quote_ident(&c.name), c.type_name))
        .collect();
    format!("CREATE TABLE {} ({})", table.quoted(), list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<Column> {
        names
            .iter()
            .map(|n| Column {
                name: n.to_string(),
                type_name: "text".into(),
            })
            .collect()
    }

    #[test]
    fn names_match_exactly_then_ignoring_case() {
        let t = TableName::new("s", "t");
        let table = cols(&["id", "Note", "note2", "X", "x"]);
        let file: Vec<String> = ["NOTE", "id", "x"].iter().map(|s| s.to_string()).collect();
        let got = match_columns("f", &file, &t, &table, false).unwrap();
        assert_eq!(
            got.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["Note", "id", "x"]
        );
        let file = vec!["missing".to_string()];
        let err = match_columns("f", &file, &t, &table, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"missing\" is not a column of s.t"), "{err}");
        // Two columns that differ only in case: which one is meant is not clear.
        let file = vec!["X".to_string(), "Id".to_string(), "ID".to_string()];
        let err = match_columns("f", &file, &t, &table, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("two columns"), "{err}");
        let file = vec!["a".to_string(), "b".to_string()];
        let got = match_columns("f", &file, &t, &table, true).unwrap();
        assert_eq!(got[1].name, "Note");
    }

    #[test]
    fn created_tables_quote_every_name() {
        let sql = create_table(
            &TableName::new("s", "t\"x"),
            &[Column {
                name: "a\"; DROP TABLE y; --".into(),
                type_name: "bigint".into(),
            }],
        );
        assert_eq!(
            sql,
            "CREATE TABLE \"s\".\"t\"\"x\" (\"a\"\"; DROP TABLE y; --\" bigint)"
        );
    }
}
