//! SQL for replayed row changes, as Londiste's default handler writes it: `INSERT INTO`,
//! `UPDATE ONLY ... WHERE pk`, `DELETE FROM ONLY ... WHERE pk`, `TRUNCATE ... CASCADE`.
//! Identifiers are quoted; values become literals because statements travel many to a
//! round trip (the simple protocol takes no parameters); the target session runs with
//! `standard_conforming_strings = on`, so doubling quotes is the whole escaping.

use crate::names::quote_fq;
use strata_pg::{quote_ident, quote_literal};
use strata_pgq::event::{Op, RowChange};
use strata_pgq::urlenc::Pair;

fn value(v: &Option<String>) -> String {
    match v {
        Some(text) => quote_literal(text),
        None => "NULL".into(),
    }
}

fn condition(key: &[Pair]) -> String {
    key.iter()
        .map(|(k, v)| match v {
            Some(_) => format!("{} = {}", quote_ident(k), value(v)),
            None => format!("{} IS NULL", quote_ident(k)),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The statement applying `change` to table `dest` (fully qualified, unquoted), or `None`
/// when it changes nothing (an UPDATE touching only key columns). A change without key
/// columns (a table without primary key) cannot be applied by key: the caller gets
/// `Err` with the reason.
pub fn statement(change: &RowChange, dest: &str) -> Result<Option<String>, String> {
    let table = quote_fq(dest);
    match change.op {
        Op::Insert => {
            if change.row.is_empty() {
                return Ok(Some(format!("INSERT INTO {table} DEFAULT VALUES")));
            }
            let cols: Vec<String> = change.row.iter().map(|(k, _)| quote_ident(k)).collect();
            let vals: Vec<String> = change.row.iter().map(|(_, v)| value(v)).collect();
            Ok(Some(format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                cols.join(", "),
                vals.join(", ")
            )))
        }
        Op::Update => {
            if change.key.is_empty() {
                return Err(format!("update on {dest} carries no key columns"));
            }
            let set: Vec<String> = change
                .row
                .iter()
                .filter(|(k, _)| !change.pkey.contains(k))
                .map(|(k, v)| format!("{} = {}", quote_ident(k), value(v)))
                .collect();
            if set.is_empty() {
                return Ok(None);
            }
            Ok(Some(format!(
                "UPDATE ONLY {table} SET {} WHERE {}",
                set.join(", "),
                condition(&change.key)
            )))
        }
        Op::Delete => {
            if change.key.is_empty() {
                return Err(format!("delete on {dest} carries no key columns"));
            }
            Ok(Some(format!(
                "DELETE FROM ONLY {table} WHERE {}",
                condition(&change.key)
            )))
        }
        Op::Truncate => Ok(Some(format!("TRUNCATE {table} CASCADE"))),
    }
}

/// An INSERT split into `INSERT INTO t (cols) VALUES` and its `(values)` tuple, so rows
/// of consecutive inserts into one table with the same columns can share one statement
/// (the server parses and plans it once instead of once per row).
pub fn insert_parts(change: &RowChange, dest: &str) -> Option<(String, String)> {
    if change.op != Op::Insert || change.row.is_empty() {
        return None;
    }
    let cols: Vec<String> = change.row.iter().map(|(k, _)| quote_ident(k)).collect();
    let vals: Vec<String> = change.row.iter().map(|(_, v)| value(v)).collect();
    Some((
        format!(
            "INSERT INTO {} ({}) VALUES ",
            quote_fq(dest),
            cols.join(", ")
        ),
        format!("({})", vals.join(", ")),
    ))
}

/// Statements collected for one round trip, flushed by count or bytes (whichever comes
/// first), so neither many small rows nor a few wide ones make a huge buffer.
#[derive(Debug, Default)]
pub struct SqlBuffer {
    text: String,
    /// The head of the multi-row INSERT being built (open until another statement comes).
    open_insert: Option<String>,
    count: usize,
    max_count: usize,
    max_bytes: usize,
    /// Round trips made through this buffer.
    pub flushes: u64,
    /// Statements sent.
    pub statements: u64,
}

impl SqlBuffer {
    /// A buffer flushing at `max_count` statements or `max_bytes` bytes.
    pub fn new(max_count: usize, max_bytes: usize) -> SqlBuffer {
        SqlBuffer {
            max_count: max_count.max(1),
            max_bytes: max_bytes.max(1),
            ..SqlBuffer::default()
        }
    }

    /// Adds a statement; `true` when the buffer should be flushed now.
    pub fn push(&mut self, sql: &str) -> bool {
        self.close_insert();
        self.text.push_str(sql);
        self.text.push_str(";\n");
        self.count += 1;
        self.count >= self.max_count || self.text.len() >= self.max_bytes
    }

    /// Adds an inserted row (see [`insert_parts`]): it joins the open INSERT when that
    /// has the same head, else starts one. Each row counts as a statement for the limits.
    pub fn push_insert(&mut self, head: &str, tuple: &str) -> bool {
        if self.open_insert.as_deref() == Some(head) {
            self.text.push_str(", ");
        } else {
            self.close_insert();
            self.text.push_str(head);
            self.open_insert = Some(head.to_string());
        }
        self.text.push_str(tuple);
        self.count += 1;
        self.count >= self.max_count || self.text.len() >= self.max_bytes
    }

    fn close_insert(&mut self) {
        if self.open_insert.take().is_some() {
            self.text.push_str(";\n");
        }
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sends the buffered statements in one round trip on `client` (inside its open
    /// transaction) and empties the buffer.
    pub async fn flush(
        &mut self,
        client: &tokio_postgres::Client,
    ) -> Result<(), tokio_postgres::Error> {
        if self.count == 0 {
            return Ok(());
        }
        self.close_insert();
        client.batch_execute(&self.text).await?;
        self.flushes += 1;
        self.statements += self.count as u64;
        self.text.clear();
        self.count = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_pgq::event::Format;

    fn p(k: &str, v: Option<&str>) -> Pair {
        (k.to_string(), v.map(str::to_string))
    }

    fn change(op: Op, row: Vec<Pair>, key: Vec<Pair>) -> RowChange {
        RowChange {
            op,
            table: "public.t".into(),
            format: Format::Urlenc,
            pkey: key.iter().map(|(k, _)| k.clone()).collect(),
            row,
            key,
        }
    }

    #[test]
    fn statements_quote_names_and_values() {
        let row = vec![p("id", Some("1")), p("v a\"l", Some("it's")), p("n", None)];
        let key = vec![p("id", Some("1"))];
        assert_eq!(
            statement(&change(Op::Insert, row.clone(), key.clone()), "public.t").unwrap().unwrap(),
            "INSERT INTO \"public\".\"t\" (\"id\", \"v a\"\"l\", \"n\") VALUES ('1', 'it''s', NULL)"
        );
        assert_eq!(
            statement(&change(Op::Update, row.clone(), key.clone()), "s.d")
                .unwrap()
                .unwrap(),
            "UPDATE ONLY \"s\".\"d\" SET \"v a\"\"l\" = 'it''s', \"n\" = NULL WHERE \"id\" = '1'"
        );
        assert_eq!(
            statement(&change(Op::Delete, row, key), "public.t")
                .unwrap()
                .unwrap(),
            "DELETE FROM ONLY \"public\".\"t\" WHERE \"id\" = '1'"
        );
        assert_eq!(
            statement(&change(Op::Truncate, vec![], vec![]), "public.t")
                .unwrap()
                .unwrap(),
            "TRUNCATE \"public\".\"t\" CASCADE"
        );
    }

    #[test]
    fn keyless_changes_fail_and_key_only_updates_are_skipped() {
        assert!(statement(&change(Op::Delete, vec![], vec![]), "public.t").is_err());
        assert!(statement(&change(Op::Update, vec![p("a", None)], vec![]), "public.t").is_err());
        let key = vec![p("id", Some("1"))];
        assert_eq!(
            statement(&change(Op::Update, key.clone(), key), "public.t").unwrap(),
            None
        );
    }

    #[test]
    fn consecutive_inserts_share_one_statement() {
        let mut b = SqlBuffer::new(100, 1 << 20);
        let row = |id: &str| change(Op::Insert, vec![p("id", Some(id))], vec![p("id", Some(id))]);
        for id in ["1", "2"] {
            let (head, tuple) = insert_parts(&row(id), "public.t").unwrap();
            b.push_insert(&head, &tuple);
        }
        b.push("DELETE FROM ONLY \"public\".\"t\" WHERE \"id\" = '1'");
        let (head, tuple) = insert_parts(&row("3"), "public.u").unwrap();
        b.push_insert(&head, &tuple);
        b.close_insert();
        assert_eq!(
            b.text,
            "INSERT INTO \"public\".\"t\" (\"id\") VALUES ('1'), ('2');\nDELETE FROM ONLY \"public\".\"t\" WHERE \"id\" = '1';\nINSERT INTO \"public\".\"u\" (\"id\") VALUES ('3');\n"
        );
        assert_eq!(b.count, 4);
        assert!(insert_parts(
            &change(Op::Delete, vec![], vec![p("id", Some("1"))]),
            "public.t"
        )
        .is_none());
    }

    #[test]
    fn buffer_flushes_by_count_or_bytes() {
        let mut b = SqlBuffer::new(3, 1000);
        assert!(!b.push("select 1"));
        assert!(!b.push("select 2"));
        assert!(b.push("select 3"));
        let mut b = SqlBuffer::new(100, 20);
        assert!(!b.push("select 1"));
        assert!(b.push("select 22222222"));
        assert!(!b.is_empty());
    }
}
