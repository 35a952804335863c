//! SQL for replayed row changes, as Londiste's default handler writes it: `INSERT INTO`,
//! `UPDATE ONLY ... WHERE pk`, `DELETE FROM ONLY ... WHERE pk`, `TRUNCATE ... CASCADE`.
//! Identifiers are quoted; values become literals because statements travel many to a
//! round trip (the simple protocol takes no parameters); the target session runs with
//! `standard_conforming_strings = on`, so doubling quotes is the whole escaping.

use crate::names::quote_fq;
use strata_pgclient::{quote_ident, quote_literal};
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

/// An UPDATE or DELETE whose event carries no key columns (its table has no primary key
/// on the provider): there is no row to aim at, and guessing one would corrupt the copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} on {table} carries no key columns")]
pub struct NoKeyColumns {
    /// `update` or `delete`.
    pub op: &'static str,
    /// The destination table, fully qualified and unquoted.
    pub table: String,
}

/// The statement applying `change` to table `dest` (fully qualified, unquoted), or `None`
/// when it changes nothing (an UPDATE touching only key columns). A change without key
/// columns (a table without primary key) cannot be applied by key: the caller gets
/// [`NoKeyColumns`].
pub fn statement(change: &RowChange, dest: &str) -> Result<Option<String>, NoKeyColumns> {
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
                return Err(NoKeyColumns {
                    op: "update",
                    table: dest.to_string(),
                });
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
                return Err(NoKeyColumns {
                    op: "delete",
                    table: dest.to_string(),
                });
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

/// An UPDATE by key, in parts, so a run of updates to one table touching the same columns
/// can go as one `UPDATE ... FROM (VALUES ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRow {
    /// The table, fully qualified and unquoted.
    pub dest: String,
    /// The key columns, as the event names them (unquoted).
    pub key_cols: Vec<String>,
    /// The key's values, in `key_cols` order.
    pub key_vals: Vec<Option<String>>,
    /// The columns set (unquoted): updates share a statement only when these are the same.
    pub set_cols: Vec<String>,
    /// Their new values, in `set_cols` order.
    pub set_vals: Vec<Option<String>>,
    /// The same update as a plain statement (used when it stays alone).
    pub plain: String,
}

/// The parts of an UPDATE (`None` for other changes, or an update that sets nothing or
/// has no key: [`statement`] handles those).
pub fn update_parts(change: &RowChange, dest: &str) -> Option<UpdateRow> {
    if change.op != Op::Update || change.key.is_empty() {
        return None;
    }
    let plain = statement(change, dest).ok()??;
    let (set_cols, set_vals) = change
        .row
        .iter()
        .filter(|(k, _)| !change.pkey.contains(k))
        .cloned()
        .unzip();
    let (key_cols, key_vals) = change.key.iter().cloned().unzip();
    Some(UpdateRow {
        dest: dest.to_string(),
        key_cols,
        key_vals,
        set_cols,
        set_vals,
        plain,
    })
}

/// A run of updates being gathered: same table, same key and set columns, distinct keys
/// (an UPDATE ... FROM touches a row once, so a repeated key starts a new run).
#[derive(Debug)]
struct OpenUpdate {
    head: (String, Vec<String>, Vec<String>),
    /// Column types of the table (`format_type`), for the casts out of VALUES.
    types: std::collections::HashMap<String, String>,
    tuples: Vec<String>,
    keys: std::collections::HashSet<Vec<Option<String>>>,
    first_plain: String,
}

impl OpenUpdate {
    fn render(&self) -> String {
        if self.tuples.len() == 1 {
            return self.first_plain.clone();
        }
        let (dest, key_cols, set_cols) = &self.head;
        let cast = |c: &String| format!("__v.{}::{}", quote_ident(c), self.types[c]);
        let set: Vec<String> = set_cols
            .iter()
            .map(|c| format!("{} = {}", quote_ident(c), cast(c)))
            .collect();
        let cond: Vec<String> = key_cols
            .iter()
            .map(|c| format!("__t.{} = {}", quote_ident(c), cast(c)))
            .collect();
        let names: Vec<String> = key_cols
            .iter()
            .chain(set_cols)
            .map(|c| quote_ident(c))
            .collect();
        format!(
            "UPDATE ONLY {} AS __t SET {} FROM (VALUES {}) AS __v ({}) WHERE {}",
            quote_fq(dest),
            set.join(", "),
            self.tuples.join(", "),
            names.join(", "),
            cond.join(" AND ")
        )
    }
}

/// Statements collected for one round trip, flushed by count or bytes (whichever comes
/// first), so neither many small rows nor a few wide ones make a huge buffer.
#[derive(Debug, Default)]
pub struct SqlBuffer {
    text: String,
    /// The head of the multi-row INSERT being built (open until another statement comes).
    open_insert: Option<String>,
    open_update: Option<OpenUpdate>,
    count: usize,
    max_count: usize,
    max_bytes: usize,
    /// Column types by table, for update runs (cleared when DDL runs in the batch).
    pub types: std::collections::HashMap<String, std::collections::HashMap<String, String>>,
    /// Bytes held in the open update run (not yet in `text`).
    pending_bytes: usize,
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
        self.pending_bytes = 0;
        if self.open_insert.take().is_some() {
            self.text.push_str(";\n");
        }
        if let Some(update) = self.open_update.take() {
            self.text.push_str(&update.render());
            self.text.push_str(";\n");
        }
    }

    /// Adds an update (see [`update_parts`]); `types` are the table's column types. It
    /// joins the open run when table, columns match and its key is new there; else it
    /// starts one. An update whose columns are not all in `types` goes as it is.
    pub fn push_update(
        &mut self,
        row: UpdateRow,
        types: &std::collections::HashMap<String, String>,
    ) -> bool {
        if !row
            .key_cols
            .iter()
            .chain(&row.set_cols)
            .all(|c| types.contains_key(c))
            || row.set_cols.is_empty()
        {
            return self.push(&row.plain);
        }
        let head = (row.dest.clone(), row.key_cols.clone(), row.set_cols.clone());
        let joins = self
            .open_update
            .as_ref()
            .is_some_and(|u| u.head == head && !u.keys.contains(&row.key_vals));
        if !joins {
            self.close_insert();
            self.open_update = Some(OpenUpdate {
                head,
                types: types.clone(),
                tuples: Vec::new(),
                keys: Default::default(),
                first_plain: row.plain.clone(),
            });
        }
        let open = self.open_update.as_mut().expect("opened above");
        let vals: Vec<String> = row
            .key_vals
            .iter()
            .chain(&row.set_vals)
            .map(value)
            .collect();
        let tuple = format!("({})", vals.join(", "));
        // Bytes are counted as they would be sent.
        let added = tuple.len() + 2;
        open.tuples.push(tuple);
        open.keys.insert(row.key_vals);
        self.count += 1;
        self.pending_bytes += added;
        self.count >= self.max_count || self.text.len() + self.pending_bytes >= self.max_bytes
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
    fn runs_of_updates_share_one_statement_with_distinct_keys() {
        let types: std::collections::HashMap<String, String> = [("id", "integer"), ("v", "text")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let upd = |id: &str, v: Option<&str>| {
            update_parts(
                &change(
                    Op::Update,
                    vec![p("id", Some(id)), p("v", v)],
                    vec![p("id", Some(id))],
                ),
                "public.t",
            )
            .unwrap()
        };
        let mut b = SqlBuffer::new(100, 1 << 20);
        b.push_update(upd("1", Some("a")), &types);
        b.push_update(upd("2", None), &types);
        // The same key again starts a new run (it stays alone: a plain statement).
        b.push_update(upd("1", Some("b")), &types);
        b.close_insert();
        assert_eq!(
            b.text,
            "UPDATE ONLY \"public\".\"t\" AS __t SET \"v\" = __v.\"v\"::text FROM (VALUES ('1', 'a'), ('2', NULL)) AS __v (\"id\", \"v\") WHERE __t.\"id\" = __v.\"id\"::integer;\n\
             UPDATE ONLY \"public\".\"t\" SET \"v\" = 'b' WHERE \"id\" = '1';\n"
        );
        assert_eq!(b.count, 3);
        // A column the target lacks: the plain statement (the server reports it).
        let mut b = SqlBuffer::new(100, 1 << 20);
        let odd = update_parts(
            &change(
                Op::Update,
                vec![p("id", Some("1")), p("gone", Some("x"))],
                vec![p("id", Some("1"))],
            ),
            "public.t",
        )
        .unwrap();
        b.push_update(odd, &types);
        assert!(b
            .text
            .starts_with("UPDATE ONLY \"public\".\"t\" SET \"gone\""));
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
