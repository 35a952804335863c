//! Events as PgQ stores them, and their decoding into row changes for the three trigger
//! formats: `pgq.logutriga` (type `I:pk`, urlencoded row), `pgq.sqltriga` (type `I`, SQL
//! fragment) and `pgq.jsontriga` (JSON type and row). TRUNCATE is type `R` (or JSON op
//! `TRUNCATE`). Anything else is an application event, left to the caller.

use crate::sqlfrag;
use crate::urlenc::{self, Pair};
use crate::PgqError;
use serde::Serialize;
use std::time::SystemTime;

/// One event of a batch, column for column as `pgq.get_batch_cursor` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `ev_id`: unique in the queue (kept by a retry).
    pub id: i64,
    /// `ev_time`: when the event was inserted.
    #[serde(skip)]
    pub time: SystemTime,
    /// `ev_txid`: the inserting transaction.
    pub txid: i64,
    /// How many times the event was retried (NULL on a fresh event).
    pub retry: Option<i32>,
    /// `ev_type`: the trigger's operation and key (`I:id`), or the application's type.
    pub ev_type: Option<String>,
    /// `ev_data`: the payload.
    pub data: Option<String>,
    /// `ev_extra1`: the table, for trigger events.
    pub extra1: Option<String>,
    /// `ev_extra2`: the old row, for triggers with `backup`.
    pub extra2: Option<String>,
    /// `ev_extra3`: free for the producer.
    pub extra3: Option<String>,
    /// `ev_extra4`: free for the producer.
    pub extra4: Option<String>,
}

impl Event {
    /// Bytes this event holds in memory (the text fields plus fixed fields): what the
    /// stream's byte cap counts.
    pub fn size(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len());
        48 + text(&self.ev_type)
            + text(&self.data)
            + text(&self.extra1)
            + text(&self.extra2)
            + text(&self.extra3)
            + text(&self.extra4)
    }

    /// The row change this event carries, if a pgq trigger wrote it; `Ok(None)` for an
    /// application event (any other type), an error when a trigger payload is malformed.
    pub fn row_change(&self) -> Result<Option<RowChange>, PgqError> {
        let ev_type = self.ev_type.as_deref().unwrap_or("");
        let data = self.data.as_deref().unwrap_or("");
        let table = self.extra1.clone().unwrap_or_default();
        if ev_type.starts_with('{') {
            return self.json_change(ev_type, data, table).map(Some);
        }
        let (op_text, pkey) = match ev_type.split_once(':') {
            Some((op, keys)) => (op, Some(keys)),
            None => (ev_type, None),
        };
        let Some(op) = Op::from_letter(op_text) else {
            return Ok(None);
        };
        let decode_err = |format: &'static str, reason: String| PgqError::Decode {
            ev_id: self.id,
            format,
            reason,
        };
        if op == Op::Truncate {
            return Ok(Some(RowChange {
                op,
                table,
                format: Format::Urlenc,
                pkey: Vec::new(),
                row: Vec::new(),
                key: Vec::new(),
            }));
        }
        if let Some(keys) = pkey {
            // logutriga: the whole row, urlencoded; the key columns are in the type.
            let row = urlenc::decode(data).map_err(|e| decode_err("logutriga", e.to_string()))?;
            let pkey: Vec<String> = keys
                .split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
            let key = pkey
                .iter()
                .map(|k| {
                    row.iter()
                        .find(|(name, _)| name == k)
                        .cloned()
                        .ok_or_else(|| decode_err("logutriga", format!("key column {k} missing")))
                })
                .collect::<Result<_, _>>()?;
            return Ok(Some(RowChange {
                op,
                table,
                format: Format::Urlenc,
                pkey,
                row,
                key,
            }));
        }
        // sqltriga: a SQL fragment.
        let fragment = |e: sqlfrag::FragmentError| decode_err("sqltriga", e.to_string());
        let (row, key) = match op {
            Op::Insert => (sqlfrag::parse_insert(data).map_err(fragment)?, Vec::new()),
            Op::Update => sqlfrag::parse_update(data).map_err(fragment)?,
            Op::Delete => (Vec::new(), sqlfrag::parse_delete(data).map_err(fragment)?),
            Op::Truncate => unreachable!("handled above"),
        };
        Ok(Some(RowChange {
            op,
            table,
            format: Format::Sql,
            pkey: key.iter().map(|(k, _)| k.clone()).collect(),
            row,
            key,
        }))
    }

    fn json_change(&self, ev_type: &str, data: &str, table: String) -> Result<RowChange, PgqError> {
        let bad = |reason: String| PgqError::Decode {
            ev_id: self.id,
            format: "jsontriga",
            reason,
        };
        let head: serde_json::Value =
            serde_json::from_str(ev_type).map_err(|e| bad(format!("type: {e}")))?;
        let op = match head.get("op").and_then(|v| v.as_str()) {
            Some("INSERT") => Op::Insert,
            Some("UPDATE") => Op::Update,
            Some("DELETE") => Op::Delete,
            Some("TRUNCATE") => Op::Truncate,
            other => return Err(bad(format!("unknown op {other:?}"))),
        };
        let pkey: Vec<String> = head
            .get("pkey")
            .and_then(|v| v.as_array())
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let row_value: serde_json::Value = if data.is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(data).map_err(|e| bad(format!("row: {e}")))?
        };
        let object = row_value
            .as_object()
            .ok_or_else(|| bad("row is not a JSON object".into()))?;
        // serde_json keeps insertion order only with a feature; the trigger writes columns
        // in table order, so re-read the keys in text order to keep column order.
        let row: Vec<Pair> = ordered_keys(data)
            .into_iter()
            .filter_map(|k| object.get(&k).map(|v| (k, json_text(v))))
            .collect();
        let key = pkey
            .iter()
            .filter_map(|k| row.iter().find(|(n, _)| n == k).cloned())
            .collect();
        Ok(RowChange {
            op,
            table,
            format: Format::Json,
            pkey,
            row: if op == Op::Truncate { Vec::new() } else { row },
            key,
        })
    }
}

/// The top-level keys of a JSON object in the order they appear in the text.
fn ordered_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    struct Keys<'a>(&'a mut Vec<String>);
    impl<'de> serde::de::Visitor<'de> for Keys<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                self.0.push(key);
            }
            Ok(())
        }
    }
    let _ = serde::Deserializer::deserialize_map(&mut de, Keys(&mut keys));
    keys
}

/// A JSON value as PostgreSQL's text form: strings as they are, `true`/`false` as
/// `t`/`f` (what logutriga writes), numbers as written, NULL as `None`.
fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(if *b { "t" } else { "f" }.into()),
        other => Some(other.to_string()),
    }
}

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    /// `I`: a row was inserted.
    Insert,
    /// `U`: a row was updated.
    Update,
    /// `D`: a row was deleted.
    Delete,
    /// `R`: the table was truncated (no row).
    Truncate,
}

impl Op {
    fn from_letter(text: &str) -> Option<Op> {
        match text {
            "I" => Some(Op::Insert),
            "U" => Some(Op::Update),
            "D" => Some(Op::Delete),
            "R" => Some(Op::Truncate),
            _ => None,
        }
    }
}

/// Which trigger wrote the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    /// `pgq.logutriga`: the whole row (old row for DELETE), urlencoded.
    Urlenc,
    /// `pgq.sqltriga`: only the changed columns for UPDATE, only the key for DELETE.
    Sql,
    /// `pgq.jsontriga`: the whole row as JSON.
    Json,
}

/// A decoded row change. Values are PostgreSQL text forms; `None` is NULL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowChange {
    /// What happened.
    pub op: Op,
    /// `schema.table` as the trigger wrote it (unquoted).
    pub table: String,
    /// Which trigger wrote it (what `row` holds depends on it).
    pub format: Format,
    /// Key column names.
    pub pkey: Vec<String>,
    /// The row's columns: the full row (logutriga, jsontriga), or for sqltriga the
    /// inserted row or the changed columns of an UPDATE; empty for a sqltriga DELETE.
    pub row: Vec<Pair>,
    /// The key columns and their values (empty for TRUNCATE).
    pub key: Vec<Pair>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, ev_type: &str, data: &str, table: &str) -> Event {
        Event {
            id,
            time: SystemTime::UNIX_EPOCH,
            txid: 1,
            retry: None,
            ev_type: Some(ev_type.into()),
            data: if data.is_empty() {
                None
            } else {
                Some(data.into())
            },
            extra1: Some(table.into()),
            extra2: None,
            extra3: None,
            extra4: None,
        }
    }

    fn pair(k: &str, v: Option<&str>) -> Pair {
        (k.to_string(), v.map(str::to_string))
    }

    // Types and payloads below were written by the real triggers (pgq 3.5, PG 15).
    #[test]
    fn the_three_formats_decode_to_the_same_row() {
        let want = vec![
            pair("id", Some("5")),
            pair("val", Some("x")),
            pair("n", None),
            pair("b", None),
            pair("j", None),
        ];
        let url = event(25, "I:id", "id=5&val=x&n&b&j", "public.t");
        let sql = event(
            26,
            "I",
            "(id,val,n,b,j) values ('5','x',null,null,null)",
            "public.t",
        );
        let json = event(
            24,
            r#"{"op":"INSERT","table":["public","t"],"pkey":["id"]}"#,
            r#"{"id":5,"val":"x","n":null,"b":null,"j":null}"#,
            "public.t",
        );
        for (e, format) in [
            (url, Format::Urlenc),
            (sql, Format::Sql),
            (json, Format::Json),
        ] {
            let change = e.row_change().unwrap().unwrap();
            assert_eq!(change.op, Op::Insert);
            assert_eq!(change.format, format);
            assert_eq!(change.table, "public.t");
            assert_eq!(change.row, want, "{format:?}");
        }
    }

    #[test]
    fn updates_deletes_and_truncates() {
        let c = event(22, "U:A b,k2", "A+b=1&k2=k&v", "public.W t")
            .row_change()
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.op, c.pkey.clone()),
            (Op::Update, vec!["A b".to_string(), "k2".into()])
        );
        assert_eq!(c.key, vec![pair("A b", Some("1")), pair("k2", Some("k"))]);
        let c = event(
            23,
            "U",
            r#"v=NULL where "A b"='1' and k2='k'"#,
            "public.W t",
        )
        .row_change()
        .unwrap()
        .unwrap();
        assert_eq!(c.row, vec![pair("v", None)]);
        assert_eq!(c.pkey, vec!["A b".to_string(), "k2".into()]);
        let c = event(12, "D", "id='2'", "public.t")
            .row_change()
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.op, c.key.clone()),
            (Op::Delete, vec![pair("id", Some("2"))])
        );
        for e in [
            event(14, "R", "", "public.t"),
            event(
                13,
                r#"{"op":"TRUNCATE","table":["public","t"],"pkey":["id"]}"#,
                "{}",
                "public.t",
            ),
        ] {
            let c = e.row_change().unwrap().unwrap();
            assert_eq!(c.op, Op::Truncate);
            assert!(c.row.is_empty() && c.key.is_empty());
        }
        let c = event(
            27,
            r#"{"op":"UPDATE","table":["public","t"],"pkey":["id"]}"#,
            r#"{"id":5,"val":null,"n":"2","b":true,"j":"{\"k\": [1, 2]}"}"#,
            "public.t",
        )
        .row_change()
        .unwrap()
        .unwrap();
        assert_eq!(c.row[3], pair("b", Some("t")));
        assert_eq!(c.row[4], pair("j", Some("{\"k\": [1, 2]}")));
        assert_eq!(c.key, vec![pair("id", Some("5"))]);
    }

    #[test]
    fn application_events_pass_and_broken_payloads_fail() {
        assert_eq!(
            event(1, "my.event", "anything", "").row_change().unwrap(),
            None
        );
        assert!(event(2, "I:id", "id=%zz", "t").row_change().is_err());
        assert!(
            event(3, "I:id", "val=1", "t").row_change().is_err(),
            "key missing"
        );
        assert!(event(4, "U", "garbage", "t").row_change().is_err());
        assert!(event(5, "{not json", "{}", "t").row_change().is_err());
        assert!(event(6, r#"{"op":"MERGE"}"#, "{}", "t")
            .row_change()
            .is_err());
        assert!(event(7, r#"{"op":"INSERT"}"#, "[1]", "t")
            .row_change()
            .is_err());
    }
}
