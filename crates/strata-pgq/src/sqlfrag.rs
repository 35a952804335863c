//! The SQL fragments `pgq.sqltriga` writes, parsed back into columns and values:
//! `(id,"A b") values ('1',E'x\\y')` for INSERT, `v=NULL,n='2' where id='5'` for UPDATE
//! (changed columns only), `"A b"='1' and k2='k''x'` for DELETE. Values are always quoted
//! literals or NULL; identifiers are bare or double-quoted. Anything else is an error, never
//! a guess, because a replica built from a misread event is silently wrong.

use crate::urlenc::Pair;

/// Why a fragment did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at byte {at}")]
pub struct FragmentError {
    /// Byte offset in the fragment.
    pub at: usize,
    /// What was expected or found.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Value(Option<String>),
    Open,
    Close,
    Comma,
    Equals,
}

fn err(at: usize, reason: &'static str) -> FragmentError {
    FragmentError { at, reason }
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, FragmentError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                tokens.push((start, Token::Open));
                i += 1;
            }
            b')' => {
                tokens.push((start, Token::Close));
                i += 1;
            }
            b',' => {
                tokens.push((start, Token::Comma));
                i += 1;
            }
            b'=' => {
                tokens.push((start, Token::Equals));
                i += 1;
            }
            b'"' => {
                let (name, next) = quoted(text, i, b'"', false)?;
                tokens.push((start, Token::Ident(name)));
                i = next;
            }
            b'\'' => {
                let (value, next) = quoted(text, i, b'\'', false)?;
                tokens.push((start, Token::Value(Some(value))));
                i = next;
            }
            b'E' | b'e' if bytes.get(i + 1) == Some(&b'\'') => {
                let (value, next) = quoted(text, i + 1, b'\'', true)?;
                tokens.push((start, Token::Value(Some(value))));
                i = next;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 || b == b'-' => {
                let mut end = i;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric()
                        || matches!(bytes[end], b'_' | b'$' | b'.' | b'-')
                        || bytes[end] >= 0x80)
                {
                    end += 1;
                }
                let word = &text[i..end];
                let token = if word.eq_ignore_ascii_case("null") {
                    Token::Value(None)
                } else if word.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                    Token::Value(Some(word.to_string()))
                } else {
                    // Bare identifiers are folded to lower case, as PostgreSQL does.
                    Token::Ident(word.to_lowercase())
                };
                tokens.push((start, token));
                i = end;
            }
            _ => return Err(err(i, "unexpected character")),
        }
    }
    Ok(tokens)
}

/// A quoted run starting at `open` (the quote byte); the doubled quote is a quote, and in
/// an `E''` string a backslash escapes the next character. Returns the text and the
/// index after the closing quote.
fn quoted(
    text: &str,
    open: usize,
    quote: u8,
    backslashes: bool,
) -> Result<(String, usize), FragmentError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = open + 1;
    loop {
        match bytes.get(i) {
            None => return Err(err(open, "unterminated quote")),
            Some(&b) if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    out.push(quote);
                    i += 2;
                } else {
                    i += 1;
                    break;
                }
            }
            Some(b'\\') if backslashes => {
                let escaped = *bytes.get(i + 1).ok_or(err(i, "dangling backslash"))?;
                out.push(match escaped {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'b' => 8,
                    b'f' => 12,
                    other => other,
                });
                i += 2;
            }
            Some(&b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(|s| (s, i))
        .map_err(|_| err(open, "not UTF-8"))
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Parser, FragmentError> {
        Ok(Parser {
            tokens: lex(text)?,
            pos: 0,
            len: text.len(),
        })
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map(|t| t.0).unwrap_or(self.len)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).map(|t| t.1.clone());
        self.pos += 1;
        token
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.1)
    }

    fn expect(&mut self, want: Token, reason: &'static str) -> Result<(), FragmentError> {
        let at = self.at();
        match self.next() {
            Some(t) if t == want => Ok(()),
            _ => Err(err(at, reason)),
        }
    }

    fn ident(&mut self) -> Result<String, FragmentError> {
        let at = self.at();
        match self.next() {
            Some(Token::Ident(name)) => Ok(name),
            _ => Err(err(at, "expected a column name")),
        }
    }

    fn value(&mut self) -> Result<Option<String>, FragmentError> {
        let at = self.at();
        match self.next() {
            Some(Token::Value(v)) => Ok(v),
            _ => Err(err(at, "expected a quoted value or NULL")),
        }
    }

    /// Whether the next token is the bare word `word` (consumed if so).
    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn done(&self) -> Result<(), FragmentError> {
        if self.pos < self.tokens.len() {
            return Err(err(self.at(), "unexpected text after the fragment"));
        }
        Ok(())
    }

    /// `col=value` pairs separated by `sep` (`,` or `and`), stopping before `where`.
    fn assignments(&mut self, comma: bool) -> Result<Vec<Pair>, FragmentError> {
        let mut pairs = Vec::new();
        loop {
            let name = self.ident()?;
            self.expect(Token::Equals, "expected =")?;
            pairs.push((name, self.value()?));
            let more = if comma {
                if self.peek() == Some(&Token::Comma) {
                    self.pos += 1;
                    true
                } else {
                    false
                }
            } else {
                self.keyword("and")
            };
            if !more {
                return Ok(pairs);
            }
        }
    }
}

/// Parses an INSERT fragment `(cols) values (vals)` into the row.
pub fn parse_insert(text: &str) -> Result<Vec<Pair>, FragmentError> {
    let mut p = Parser::new(text)?;
    p.expect(Token::Open, "expected (")?;
    let mut names = vec![p.ident()?];
    while p.peek() == Some(&Token::Comma) {
        p.pos += 1;
        names.push(p.ident()?);
    }
    p.expect(Token::Close, "expected )")?;
    if !p.keyword("values") {
        return Err(err(p.at(), "expected values"));
    }
    p.expect(Token::Open, "expected (")?;
    let mut values = vec![p.value()?];
    while p.peek() == Some(&Token::Comma) {
        p.pos += 1;
        values.push(p.value()?);
    }
    p.expect(Token::Close, "expected )")?;
    p.done()?;
    if names.len() != values.len() {
        return Err(err(0, "column and value counts differ"));
    }
    Ok(names.into_iter().zip(values).collect())
}

/// Parses an UPDATE fragment `a=1,b=NULL where k='1' and k2='2'` into (new values, key).
pub fn parse_update(text: &str) -> Result<(Vec<Pair>, Vec<Pair>), FragmentError> {
    let mut p = Parser::new(text)?;
    let set = p.assignments(true)?;
    if !p.keyword("where") {
        return Err(err(p.at(), "expected where"));
    }
    let key = p.assignments(false)?;
    p.done()?;
    Ok((set, key))
}

/// Parses a DELETE fragment `k='1' and k2='2'` into the key.
pub fn parse_delete(text: &str) -> Result<Vec<Pair>, FragmentError> {
    let mut p = Parser::new(text)?;
    let key = p.assignments(false)?;
    p.done()?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(k: &str, v: Option<&str>) -> Pair {
        (k.to_string(), v.map(str::to_string))
    }

    // Every fragment below was written by pgq.sqltriga 3.5 on PostgreSQL 15.
    #[test]
    fn inserts() {
        assert_eq!(
            parse_insert(
                r#"(id,val,n,b,j) values ('1',E'a b&c=d''e"f\\\\g é%+','1.5','t','{"k": [1, 2]}')"#
            )
            .unwrap(),
            vec![
                pair("id", Some("1")),
                pair("val", Some("a b&c=d'e\"f\\\\g é%+")),
                pair("n", Some("1.5")),
                pair("b", Some("t")),
                pair("j", Some("{\"k\": [1, 2]}")),
            ]
        );
        assert_eq!(
            parse_insert("(id,val,n,b,j) values ('2',null,null,null,null)").unwrap(),
            vec![
                pair("id", Some("2")),
                pair("val", None),
                pair("n", None),
                pair("b", None),
                pair("j", None),
            ]
        );
        assert_eq!(
            parse_insert(r#"("A b",k2,v) values ('1','k''x','v')"#).unwrap(),
            vec![
                pair("A b", Some("1")),
                pair("k2", Some("k'x")),
                pair("v", Some("v"))
            ]
        );
    }

    #[test]
    fn updates_and_deletes() {
        assert_eq!(
            parse_update("val=NULL,n='2' where id='5'").unwrap(),
            (
                vec![pair("val", None), pair("n", Some("2"))],
                vec![pair("id", Some("5"))]
            )
        );
        assert_eq!(
            parse_update(r#"v=NULL where "A b"='1' and k2='k'"#).unwrap(),
            (
                vec![pair("v", None)],
                vec![pair("A b", Some("1")), pair("k2", Some("k"))]
            )
        );
        assert_eq!(
            parse_delete(r#""A b"='1' and k2='k''x'"#).unwrap(),
            vec![pair("A b", Some("1")), pair("k2", Some("k'x"))]
        );
        assert_eq!(parse_delete("id='2'").unwrap(), vec![pair("id", Some("2"))]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "(",
            "(a) values ('1'",
            "(a,b) values ('1')",
            "a='1' where",
            "a='1",
            "a=E'x\\",
            "a='1'; drop table x",
            "a='1' b='2'",
            "\"unterminated",
            "(a) values ('1') extra",
        ] {
            let _ = parse_insert(text).unwrap_err();
            let _ = parse_update(text).unwrap_err();
            if !text.is_empty() {
                assert!(parse_delete(text).is_err(), "{text}");
            }
        }
        assert!(parse_delete("").is_err());
    }
}
