//! The JSON shapes of the gateway's replies, and the few conversions they need.
//!
//! The gateway marshals protobuf with `EmitDefaults` off: a zero `lease`, an empty
//! `value` or a false `more` are simply absent, so every field defaults. int64/uint64
//! fields arrive as JSON strings (`"revision": "42"`), but a number is accepted too.
//! bytes fields are standard base64.

use base64::Engine as _;
use serde::{Deserialize, Deserializer};

/// A signed integer sent as a JSON string or number.
pub(crate) fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Number::deserialize(d)? {
        Number::Text(s) => s
            .trim()
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("bad int64 {:?}: {e}", truncate(&s)))),
        Number::Signed(i) => Ok(i),
        Number::Unsigned(u) => i64::try_from(u).map_err(serde::de::Error::custom),
    }
}

/// An unsigned integer sent as a JSON string or number.
pub(crate) fn uint64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Number::deserialize(d)? {
        Number::Text(s) => s
            .trim()
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("bad uint64 {:?}: {e}", truncate(&s)))),
        Number::Signed(i) => u64::try_from(i).map_err(serde::de::Error::custom),
        Number::Unsigned(u) => Ok(u),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Text(String),
    Signed(i64),
    Unsigned(u64),
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Header {
    #[serde(default, deserialize_with = "uint64")]
    pub cluster_id: u64,
    #[serde(default, deserialize_with = "int64")]
    pub revision: i64,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawKv {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "int64")]
    pub create_revision: i64,
    #[serde(default, deserialize_with = "int64")]
    pub mod_revision: i64,
    #[serde(default, deserialize_with = "int64")]
    pub version: i64,
    #[serde(default, deserialize_with = "int64")]
    pub lease: i64,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeReply {
    #[serde(default)]
    pub header: Option<Header>,
    #[serde(default)]
    pub kvs: Vec<RawKv>,
    #[serde(default)]
    pub more: bool,
    #[serde(default, deserialize_with = "int64")]
    pub count: i64,
}

/// The reply to `/v3/kv/txn`: whether every compare held (the gateway leaves out a false
/// `succeeded`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TxnReply {
    #[serde(default)]
    pub header: Option<Header>,
    #[serde(default)]
    pub succeeded: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StatusReply {
    #[serde(default)]
    pub header: Option<Header>,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuthReply {
    #[serde(default)]
    pub token: Option<String>,
}

/// The gateway's error body: `{"error": "...", "code": 3, "message": "..."}`. Every
/// reply is read through it first, so its fields take any JSON (a reply whose `code` is
/// not a number is still an error with a message, not an undecodable reply).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorReply {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

impl ErrorReply {
    /// Whether the reply says it is an error.
    pub fn is_error(&self) -> bool {
        self.error.as_ref().is_some_and(|e| !e.is_null())
    }

    /// Its message: `message`, else `error`, as text.
    pub fn message(&self) -> Option<String> {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        [&self.message, &self.error]
            .into_iter()
            .flatten()
            .filter(|v| !v.is_null())
            .map(text)
            .find(|m| !m.is_empty())
    }

    /// Its gRPC code, -1 when it has none.
    pub fn code(&self) -> i64 {
        let code = self.code.as_ref();
        code.and_then(|c| c.as_i64().or_else(|| c.as_str()?.parse().ok()))
            .unwrap_or(-1)
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, BadKv> {
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

/// What is wrong with a key-value pair the gateway sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadKv {
    /// The pair has no key.
    #[error("a key without `key`")]
    NoKey,
    /// A key or value is not base64.
    #[error("bad base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_as_string_or_number_and_defaults() {
        let r: RangeReply = serde_json::from_str(
            r#"{"header":{"cluster_id":"14841639068965178418","revision":"7"},"kvs":[{"key":"YQ==","lease":12}],"count":"1"}"#,
        )
        .unwrap();
        let h = r.header.unwrap();
        assert_eq!(h.revision, 7);
        assert_eq!(h.cluster_id, 14841639068965178418);
        assert_eq!(r.kvs[0].lease, 12);
        assert!(r.kvs[0].value.is_none());
        assert!(!r.more);
        assert!(serde_json::from_str::<RangeReply>(r#"{"count":"many"}"#).is_err());
        assert!(serde_json::from_str::<RangeReply>(r#"{"count":"99999999999999999999"}"#).is_err());
        assert!(unb64("***").is_err());
    }
}
