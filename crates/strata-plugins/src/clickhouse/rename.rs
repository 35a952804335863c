//! A table's `CREATE` statement under another name, for a table restored beside the
//! live one (`strata restore --table DB.T --as NAME`): the name after `CREATE TABLE` is
//! replaced, and a replicated table gets its own coordination path, so the copy never
//! joins the live table's replicas (it would share their parts and their log).

use super::client::{ident, literal};

/// Why a statement cannot be renamed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenameError {
    /// It is not a `CREATE TABLE db.name ...` as ClickHouse writes them.
    #[error("the recorded statement does not start with CREATE TABLE and a name: {0}")]
    NotCreateTable(String),
    /// A replicated engine whose first argument is not a quoted path.
    #[error("the replicated engine's coordination path cannot be read in: {0}")]
    NoPath(String),
}

/// `create` (of table `old` in `database`) creating `new` in `database` instead; for a
/// replicated engine its ZooKeeper path's last component `old` becomes `new` (or `_new`
/// is added when the path does not end with the table's name).
pub fn renamed(create: &str, database: &str, old: &str, new: &str) -> Result<String, RenameError> {
    let short = || create.chars().take(120).collect::<String>();
    let rest = create
        .strip_prefix("CREATE TABLE ")
        .ok_or_else(|| RenameError::NotCreateTable(short()))?;
    let name_len = qualified_name_len(rest);
    if name_len == 0 {
        return Err(RenameError::NotCreateTable(short()));
    }
    let tail = &rest[name_len..];
    let mut out = format!("CREATE TABLE {}.{}", ident(database), ident(new));
    // The engine clause, not a column or a comment that says "Replicated".
    let engine = tail
        .find(" ENGINE = Replicated")
        .map(|at| at + " ENGINE = ".len());
    let Some(at) = engine.and_then(|e| tail[e..].find("MergeTree(").map(|m| e + m)) else {
        out.push_str(tail);
        return Ok(out);
    };
    let args = at + "MergeTree(".len();
    let (path, used) = string_literal(&tail[args..]).ok_or_else(|| RenameError::NoPath(short()))?;
    let new_path = match path.rsplit_once('/') {
        Some((parent, last)) if last == old => format!("{parent}/{new}"),
        _ => format!("{path}_{new}"),
    };
    out.push_str(&tail[..args]);
    out.push_str(&literal(&new_path));
    out.push_str(&tail[args + used..]);
    Ok(out)
}

/// `create` with its replicated engine made plain (`ReplicatedSummingMergeTree('/p',
/// '{replica}', v)` -> `SummingMergeTree(v)`), for a scratch server without ZooKeeper
/// that must never join a live table's replicas. Other statements come back unchanged.
pub fn unreplicated(create: &str) -> Result<String, RenameError> {
    let short = || create.chars().take(120).collect::<String>();
    let Some(start) = create.find(" ENGINE = Replicated") else {
        return Ok(create.to_string());
    };
    let engine = start + " ENGINE = ".len();
    let Some(open) = create[engine..]
        .find("MergeTree(")
        .map(|i| engine + i + "MergeTree(".len())
    else {
        return Ok(create.to_string());
    };
    let family = &create[engine + "Replicated".len()..open];
    let mut rest = &create[open..];
    for _ in 0..2 {
        let (_, used) = string_literal(rest).ok_or_else(|| RenameError::NoPath(short()))?;
        rest = rest[used..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(format!("{}{family}{rest}", &create[..engine]))
}

/// The coordination path and replica name of a replicated engine's `CREATE`, macros
/// unexpanded (`('/clickhouse/tables/{shard}/t', '{replica}')`); `None` for any other.
pub fn replication_args(create: &str) -> Option<(String, String)> {
    let start = create.find(" ENGINE = Replicated")? + " ENGINE = ".len();
    let open = start + create[start..].find("MergeTree(")? + "MergeTree(".len();
    let (path, used) = string_literal(&create[open..])?;
    let rest = create[open + used..].trim_start().strip_prefix(',')?;
    let (replica, _) = string_literal(rest)?;
    Some((path, replica))
}

/// The database and name a `CREATE TABLE|VIEW|MATERIALIZED VIEW db.name ...` statement
/// creates, unquoted; `None` for any other statement. A restore runs a recorded
/// statement only when it creates the table the record says it does.
pub fn created_name(create: &str) -> Option<(String, String)> {
    let rest = ["CREATE TABLE ", "CREATE MATERIALIZED VIEW ", "CREATE VIEW "]
        .iter()
        .find_map(|kind| create.strip_prefix(kind))?;
    let token = &rest[..qualified_name_len(rest)];
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in token.chars() {
        match (quoted, escaped, c) {
            (true, true, c) => {
                current.push(c);
                escaped = false;
            }
            (true, false, '\\') => escaped = true,
            (_, false, '`') => quoted = !quoted,
            (false, _, '.') => parts.push(std::mem::take(&mut current)),
            (_, _, c) => current.push(c),
        }
    }
    parts.push(current);
    match <[String; 2]>::try_from(parts) {
        Ok([db, name]) if !quoted && !db.is_empty() && !name.is_empty() => Some((db, name)),
        _ => None,
    }
}

/// The length of `db.name` at the start of `text` (back-quoted parts may hold anything).
fn qualified_name_len(text: &str) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '`') => quoted = !quoted,
            (false, _, ' ' | '(' | '\n' | '\t') => return i,
            _ => {}
        }
    }
    text.len()
}

/// A single-quoted string literal at the start of `text` (after spaces): its value and
/// how many bytes of `text` it took.
fn string_literal(text: &str) -> Option<(String, usize)> {
    let start = text.len() - text.trim_start().len();
    let body = text[start..].strip_prefix('\'')?;
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match (escaped, c) {
            (true, c) => {
                value.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, '\'') => return Some((value, start + 1 + i + 1)),
            (false, c) => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicated_engine_s_path_and_replica_are_read() {
        let create = "CREATE TABLE shop.events (d Date) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/shop/ev\\'ents', '{replica}', v) ORDER BY d";
        assert_eq!(
            replication_args(create),
            Some((
                "/clickhouse/tables/{shard}/shop/ev'ents".into(),
                "{replica}".into()
            ))
        );
        assert_eq!(
            replication_args("CREATE TABLE a.b (x UInt8) ENGINE = MergeTree ORDER BY x"),
            None
        );
    }

    #[test]
    fn a_replicated_table_gets_its_own_coordination_path() {
        let create = "CREATE TABLE shop.events ( d Date,  id UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/shop/events', '{replica}') PARTITION BY toYYYYMM(d) ORDER BY (d, id) SETTINGS index_granularity = 8192";
        assert_eq!(
            renamed(create, "shop", "events", "events_restored").unwrap(),
            "CREATE TABLE `shop`.`events_restored` ( d Date,  id UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/shop/events_restored', '{replica}') PARTITION BY toYYYYMM(d) ORDER BY (d, id) SETTINGS index_granularity = 8192"
        );
        let other = "CREATE TABLE shop.t (x UInt8) ENGINE = ReplicatedSummingMergeTree('/ch/{shard}/t_v2', '{replica}') ORDER BY x";
        assert_eq!(
            renamed(other, "shop", "t", "t_back").unwrap(),
            "CREATE TABLE `shop`.`t_back` (x UInt8) ENGINE = ReplicatedSummingMergeTree('/ch/{shard}/t_v2_t_back', '{replica}') ORDER BY x"
        );
    }

    #[test]
    fn a_plain_table_and_a_quoted_name_keep_the_rest_as_it_was() {
        let create = "CREATE TABLE `my db`.`a b` (x UInt8) ENGINE = MergeTree() ORDER BY x";
        assert_eq!(
            renamed(create, "my db", "a b", "c").unwrap(),
            "CREATE TABLE `my db`.`c` (x UInt8) ENGINE = MergeTree() ORDER BY x"
        );
    }

    #[test]
    fn a_scratch_copy_of_a_replicated_table_is_plain() {
        let create = "CREATE TABLE d.t (x UInt8, v UInt32) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/d/t', '{replica}', v) ORDER BY x";
        assert_eq!(
            unreplicated(create).unwrap(),
            "CREATE TABLE d.t (x UInt8, v UInt32) ENGINE = ReplacingMergeTree(v) ORDER BY x"
        );
        let plain = "CREATE TABLE d.t (x UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY x";
        assert_eq!(
            unreplicated(plain).unwrap(),
            "CREATE TABLE d.t (x UInt8) ENGINE = MergeTree() ORDER BY x"
        );
        let local = "CREATE TABLE d.t (x UInt8) ENGINE = MergeTree() ORDER BY x";
        assert_eq!(unreplicated(local).unwrap(), local);
    }

    #[test]
    fn a_statement_says_what_it_creates() {
        let named = |s: &str| created_name(s).map(|(d, n)| format!("{d}|{n}"));
        assert_eq!(
            named("CREATE TABLE shop.events (x UInt8) ENGINE = MergeTree() ORDER BY x").as_deref(),
            Some("shop|events")
        );
        assert_eq!(
            named("CREATE TABLE db.`.inner.mv` (d Date) ENGINE = SummingMergeTree() ORDER BY d")
                .as_deref(),
            Some("db|.inner.mv")
        );
        assert_eq!(
            named("CREATE MATERIALIZED VIEW db.mv TO db.daily (d Date) AS SELECT d FROM db.e")
                .as_deref(),
            Some("db|mv")
        );
        assert_eq!(named("DROP DATABASE shop"), None);
        assert_eq!(named("CREATE TABLE a.b.c (x UInt8)"), None);
    }

    #[test]
    fn what_is_not_a_create_table_is_refused() {
        assert!(renamed("CREATE VIEW v AS SELECT 1", "d", "v", "w").is_err());
        assert!(renamed(
            "CREATE TABLE d.t (x UInt8) ENGINE = ReplicatedMergeTree(path, r) ORDER BY x",
            "d",
            "t",
            "u"
        )
        .is_err());
    }
}
