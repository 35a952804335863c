//! The `--*--` header of an `execute` file: which nodes run the SQL. Python Londiste's
//! format and rules, so a file runs (or is skipped) on the same nodes whichever worker
//! applies it:
//!
//! ```sql
//! --*-- Local-Table: public.orders,
//! --*--     public.order_lines
//! --*-- Need-Function: public.touch(1)
//! alter table @public.orders@ add column note text;
//! ```
//!
//! Header lines come before the first statement; a value list ending with `,` goes on in
//! the next header line. `Local-Table`, `Local-Sequence` and `Local-Destination` match
//! what the node replicates (and `@name@` in the SQL becomes the node's own table name);
//! `Need-Table`, `-Sequence`, `-Function` (`name(nargs)`), `-Schema` and `-View` match
//! what exists in the database. The SQL runs when every value matches, is skipped when
//! none does, and a partial match is an error: the node is set up unlike the file says.
//! The attributes travel urlencoded in the EXECUTE event's `ev_extra2`.

use crate::error::{LondisteError, Result};
use crate::names::{fq_name, quote_fq, split};
use std::collections::HashMap;
use tokio_postgres::GenericClient;

const META_PREFIX: &str = "--*--";

/// One header key, in the order Python probes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// Runs where these tables are replicated.
    LocalTable,
    /// Runs where these sequences are replicated.
    LocalSequence,
    /// Runs where these tables are replicated, naming the node's own destination table.
    LocalDestination,
    /// Runs where these tables exist, replicated or not.
    NeedTable,
    /// Runs where these sequences exist.
    NeedSequence,
    /// Runs where these functions exist (`name(nargs)`).
    NeedFunction,
    /// Runs where these schemas exist.
    NeedSchema,
    /// Runs where these views exist.
    NeedView,
}

const KEYS: [Key; 8] = [
    Key::LocalTable,
    Key::LocalSequence,
    Key::LocalDestination,
    Key::NeedTable,
    Key::NeedSequence,
    Key::NeedFunction,
    Key::NeedSchema,
    Key::NeedView,
];

impl Key {
    /// The header spelling (`Local-Table`).
    pub fn nice_name(self) -> &'static str {
        match self {
            Key::LocalTable => "Local-Table",
            Key::LocalSequence => "Local-Sequence",
            Key::LocalDestination => "Local-Destination",
            Key::NeedTable => "Need-Table",
            Key::NeedSequence => "Need-Sequence",
            Key::NeedFunction => "Need-Function",
            Key::NeedSchema => "Need-Schema",
            Key::NeedView => "Need-View",
        }
    }

    fn parse(text: &str) -> Result<Key> {
        let wanted = text.trim().to_ascii_lowercase();
        KEYS.into_iter()
            .find(|k| k.nice_name().to_ascii_lowercase() == wanted)
            .ok_or_else(|| {
                LondisteError::BadInput(format!(
                    "unknown --*-- key {:?} (known: {})",
                    text.trim(),
                    KEYS.map(Key::nice_name).join(", ")
                ))
            })
    }

    /// Whether `@name@` of this key's values is replaced by the local name.
    fn renames(self) -> bool {
        matches!(
            self,
            Key::LocalTable | Key::LocalSequence | Key::LocalDestination
        )
    }
}

/// The attributes of one EXECUTE file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecAttrs {
    values: Vec<(Key, Vec<String>)>,
}

/// The node's replicated objects, as `need_execute` and `process_sql` match them.
#[derive(Debug, Clone, Default)]
pub struct LocalObjects {
    /// Local tables: set name to the table written here.
    pub tables: HashMap<String, String>,
    /// Local sequences.
    pub seqs: HashMap<String, String>,
}

impl ExecAttrs {
    /// No attributes: the SQL runs everywhere.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn add(&mut self, key: Key, value: &str) {
        let value = value.trim().to_string();
        match self.values.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(value),
            None => self.values.push((key, vec![value])),
        }
    }

    /// The values of `key`.
    pub fn get(&self, key: Key) -> &[String] {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// Reads the header of an SQL file (lines before its first statement).
    pub fn parse_sql(sql: &str) -> Result<ExecAttrs> {
        let mut attrs = ExecAttrs::default();
        let mut continued: Option<Key> = None;
        for line in sql.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if !line.starts_with("--") {
                break;
            }
            let Some(rest) = line.strip_prefix(META_PREFIX) else {
                continue;
            };
            let rest = rest.trim();
            if rest.is_empty() {
                continue;
            }
            let (key, values) = match continued {
                Some(key) => (key, rest),
                None => match rest.split_once(':') {
                    Some((key, values)) => (Key::parse(key)?, values),
                    None => continue,
                },
            };
            for v in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                attrs.add(key, v);
            }
            continued = rest.ends_with(',').then_some(key);
        }
        Ok(attrs)
    }

    /// The urlencoded form the EXECUTE event carries (`local-table=a%2cb&need-view=v`).
    pub fn to_urlenc(&self) -> String {
        let pairs: Vec<strata_pgq::urlenc::Pair> = self
            .values
            .iter()
            .map(|(k, v)| (k.nice_name().to_ascii_lowercase(), Some(v.join(","))))
            .collect();
        strata_pgq::urlenc::encode(&pairs)
    }

    /// Reads the attributes of an EXECUTE event (empty or absent: none).
    pub fn parse_urlenc(text: Option<&str>) -> Result<ExecAttrs> {
        let mut attrs = ExecAttrs::default();
        let pairs = strata_pgq::urlenc::decode(text.unwrap_or(""))
            .map_err(|e| LondisteError::State(format!("EXECUTE attributes: {e}")))?;
        for (key, value) in pairs {
            let key = Key::parse(&key).map_err(|e| LondisteError::State(e.to_string()))?;
            for v in value
                .unwrap_or_default()
                .split(',')
                .filter(|v| !v.is_empty())
            {
                attrs.add(key, v);
            }
        }
        Ok(attrs)
    }

    /// Whether the SQL runs on this node: every value matches (yes), none does (no);
    /// a partial match is an error naming both lists.
    pub async fn need_execute(
        &self,
        client: &impl GenericClient,
        local: &LocalObjects,
    ) -> Result<bool> {
        if self.is_empty() {
            return Ok(true);
        }
        let (mut good, mut missed) = (Vec::new(), Vec::new());
        for key in KEYS {
            for value in self.get(key) {
                let fq = fq_name(value);
                if matches(key, &fq, client, local).await? {
                    good.push(value.clone());
                } else {
                    missed.push(value.clone());
                }
            }
        }
        match (good.is_empty(), missed.is_empty()) {
            (_, true) => Ok(true),
            (true, false) => Ok(false),
            (false, false) => Err(LondisteError::State(format!(
                "the EXECUTE header only partly matches this node: matches {good:?}, misses {missed:?}"
            ))),
        }
    }

    /// The SQL with each `@name@` of a Local-* value replaced by this node's quoted name
    /// for it (a table's destination table).
    pub fn process_sql(&self, sql: &str, local: &LocalObjects) -> Result<String> {
        let mut out = sql.to_string();
        for (key, values) in &self.values {
            if !key.renames() {
                continue;
            }
            for value in values {
                let fq = fq_name(value);
                let local_name = local
                    .tables
                    .get(&fq)
                    .or_else(|| local.seqs.get(&fq))
                    .ok_or_else(|| {
                        LondisteError::State(format!(
                            "EXECUTE names {value} for renaming, but this node does not replicate it"
                        ))
                    })?;
                out = out.replace(&format!("@{value}@"), &quote_fq(local_name));
            }
        }
        Ok(out)
    }
}

/// Whether one value of `key` matches the node.
async fn matches(
    key: Key,
    fq: &str,
    client: &impl GenericClient,
    local: &LocalObjects,
) -> Result<bool> {
    let exists_rel = |kinds: &'static [&'static str]| {
        let (schema, name) = split(fq);
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let (schema, name) = (schema.to_string(), name.to_string());
        async move {
            client
                .query_one(
                    "select exists (select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                     where n.nspname = $1 and c.relname = $2 and c.relkind::text = any($3))",
                    &[&schema, &name, &kinds],
                )
                .await
                .map(|r| r.get::<_, bool>(0))
                .map_err(|e| LondisteError::sql("checking an EXECUTE header", e))
        }
    };
    match key {
        Key::LocalTable => Ok(local.tables.contains_key(fq)),
        Key::LocalSequence => Ok(local.seqs.contains_key(fq)),
        Key::LocalDestination => match local.tables.get(fq) {
            Some(dest) => {
                let dest = fq_name(dest);
                let (schema, name) = split(&dest);
                client
                    .query_one(
                        "select exists (select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                         where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p'))",
                        &[&schema, &name],
                    )
                    .await
                    .map(|r| r.get::<_, bool>(0))
                    .map_err(|e| LondisteError::sql("checking an EXECUTE header", e))
            }
            None => Ok(false),
        },
        Key::NeedTable => exists_rel(&["r", "p"]).await,
        Key::NeedSequence => exists_rel(&["S"]).await,
        Key::NeedView => exists_rel(&["v", "m"]).await,
        Key::NeedSchema => {
            // A bare name became public.NAME above: the schema is the part after it.
            let schema = fq.strip_prefix("public.").unwrap_or(fq);
            client
                .query_one(
                    "select exists (select 1 from pg_catalog.pg_namespace where nspname = $1)",
                    &[&schema],
                )
                .await
                .map(|r| r.get::<_, bool>(0))
                .map_err(|e| LondisteError::sql("checking an EXECUTE header", e))
        }
        Key::NeedFunction => {
            let (name, nargs) = match fq.split_once('(') {
                Some((name, rest)) => {
                    let n = rest.trim_end_matches(')').trim();
                    let n: i16 = n.parse().map_err(|_| {
                        LondisteError::BadInput(format!(
                            "Need-Function {fq}: the argument count is not a number"
                        ))
                    })?;
                    (name, n)
                }
                None => (fq, 0),
            };
            let (schema, name) = split(name);
            client
                .query_one(
                    "select exists (select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace \
                     where n.nspname = $1 and p.proname = $2 and p.pronargs = $3)",
                    &[&schema, &name, &nargs],
                )
                .await
                .map(|r| r.get::<_, bool>(0))
                .map_err(|e| LondisteError::sql("checking an EXECUTE header", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_with_continuations_and_stop_at_the_first_statement() {
        let sql = "\n --\n\n--*-- Local-Table: foo ,\n--\n--*-- bar ,\n--*--\n--*-- zoo\n--*--\n--*-- Local-Sequence: goo\n--*--\n--\n\ncreate fooza;\n--*-- Need-View: late\n";
        let attrs = ExecAttrs::parse_sql(sql).unwrap();
        assert_eq!(attrs.get(Key::LocalTable), ["foo", "bar", "zoo"]);
        assert_eq!(attrs.get(Key::LocalSequence), ["goo"]);
        assert!(attrs.get(Key::NeedView).is_empty());
        assert_eq!(
            attrs.to_urlenc(),
            "local-table=foo%2cbar%2czoo&local-sequence=goo"
        );
    }

    #[test]
    fn urlencoded_attributes_round_trip_and_python_spelling_reads() {
        let attrs = ExecAttrs::parse_sql(
            "--*-- Need-Function: public.f(2), g\n--*-- need-schema: s\nselect 1;",
        )
        .unwrap();
        let back = ExecAttrs::parse_urlenc(Some(&attrs.to_urlenc())).unwrap();
        assert_eq!(back, attrs);
        // Python quotes with uppercase hex.
        let py = ExecAttrs::parse_urlenc(Some("local-table=public.t1%2Cpublic.t2")).unwrap();
        assert_eq!(py.get(Key::LocalTable), ["public.t1", "public.t2"]);
        assert!(ExecAttrs::parse_urlenc(None).unwrap().is_empty());
        assert!(ExecAttrs::parse_urlenc(Some("")).unwrap().is_empty());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = ExecAttrs::parse_sql("--*-- Local-Tabel: t\nselect 1;").unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        assert!(ExecAttrs::parse_urlenc(Some("bogus=1")).is_err());
    }

    #[test]
    fn local_names_replace_the_placeholders_quoted() {
        let attrs = ExecAttrs::parse_sql("--*-- Local-Table: foo, public.bar\n").unwrap();
        let mut local = LocalObjects::default();
        local
            .tables
            .insert("public.foo".into(), "public.foo".into());
        local
            .tables
            .insert("public.bar".into(), "Other.Bar Table".into());
        let sql = attrs
            .process_sql(
                "alter table @foo@ add x int; alter table @public.bar@ add y int;",
                &local,
            )
            .unwrap();
        assert_eq!(
            sql,
            "alter table \"public\".\"foo\" add x int; alter table \"Other\".\"Bar Table\" add y int;"
        );
        local.tables.clear();
        assert!(attrs.process_sql("select 1", &local).is_err());
    }
}
