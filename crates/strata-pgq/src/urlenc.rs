//! The urlencoding of `pgq.logutriga` rows and of pgq's `key=value&...` settings, exactly
//! as the C trigger writes it: a space becomes `+`, only `[A-Za-z0-9_.-]` pass as they are,
//! everything else is `%xx` (the trigger writes lowercase hex), and SQL NULL is the bare key
//! without `=`. Decoding accepts either hex case and keeps key order (column order).

/// One `key[=value]` pair; `None` is SQL NULL.
pub type Pair = (String, Option<String>);

/// Why a urlencoded string did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlDecodeError {
    /// A `%` not followed by two hex digits (byte offset in the text).
    #[error("bad escape at byte {0}")]
    BadEscape(usize),
    /// The unescaped bytes are not UTF-8 (PostgreSQL text always is here).
    #[error("decoded bytes are not UTF-8")]
    NotUtf8,
}

/// Decodes `id=1&val=a+b%26c&gone` into ordered pairs (`gone` is NULL). An empty string
/// is no pairs (a TRUNCATE event carries none).
pub fn decode(text: &str) -> Result<Vec<Pair>, UrlDecodeError> {
    let mut pairs = Vec::new();
    if text.is_empty() {
        return Ok(pairs);
    }
    let mut offset = 0;
    for part in text.split('&') {
        match part.split_once('=') {
            Some((key, value)) => pairs.push((
                unescape(key, offset)?,
                Some(unescape(value, offset + key.len() + 1)?),
            )),
            None => pairs.push((unescape(part, offset)?, None)),
        }
        offset += part.len() + 1;
    }
    Ok(pairs)
}

/// Encodes pairs the way `pgq.logutriga` does, so round trips are byte-identical.
pub fn encode(pairs: &[Pair]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        escape_into(key, &mut out);
        if let Some(value) = value {
            out.push('=');
            escape_into(value, &mut out);
        }
    }
    out
}

fn escape_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

fn unescape(text: &str, offset: usize) -> Result<String, UrlDecodeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(UrlDecodeError::BadEscape(offset + i))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| UrlDecodeError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(k: &str, v: Option<&str>) -> Pair {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn decodes_what_the_real_trigger_wrote() {
        // Captured from pgq.logutriga 3.5 on PostgreSQL 15.
        let text = "id=1&val=a+b%26c%3dd%27e%22f%5c%5cg+%c3%a9%25%2b&n=1.5&b=t&j=%7b%22k%22%3a+%5b1%2c+2%5d%7d";
        let pairs = decode(text).unwrap();
        assert_eq!(
            pairs,
            vec![
                pair("id", Some("1")),
                pair("val", Some("a b&c=d'e\"f\\\\g é%+")),
                pair("n", Some("1.5")),
                pair("b", Some("t")),
                pair("j", Some("{\"k\": [1, 2]}")),
            ]
        );
        assert_eq!(encode(&pairs), text);
    }

    #[test]
    fn bare_keys_are_null_and_empty_values_are_not() {
        let pairs = decode("id=2&val&n=&A+b=1").unwrap();
        assert_eq!(
            pairs,
            vec![
                pair("id", Some("2")),
                pair("val", None),
                pair("n", Some("")),
                pair("A b", Some("1")),
            ]
        );
        assert_eq!(encode(&pairs), "id=2&val&n=&A+b=1");
        assert!(decode("").unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(decode("a=%4"), Err(UrlDecodeError::BadEscape(2)));
        assert_eq!(decode("a=1&b=%zz"), Err(UrlDecodeError::BadEscape(6)));
        assert_eq!(decode("a=%ff"), Err(UrlDecodeError::NotUtf8));
        assert_eq!(decode("a=%"), Err(UrlDecodeError::BadEscape(2)));
        // A multibyte character right after % must not split a char boundary.
        assert!(decode("a=%é").is_err());
    }
}
