//! Queries to one ClickHouse server over its HTTP interface: the SQL in the body, the
//! user in HTTP basic authentication, answers read up to [`ANSWER_LIMIT`] and rows as
//! `JSONEachRow`. Every call is bounded by the node's `query_timeout`.
//!
//! HTTP rather than the native protocol: every ClickHouse since the first has it, it
//! needs no client crate, and its errors come back as text with a status.

use serde::de::DeserializeOwned;
use std::time::Duration;
use strata_cluster::config::ClickHouseNode;

/// The most of one answer that is read: the schema and the parts list of a server with
/// tens of thousands of parts fit many times over; a larger answer fails the query.
pub const ANSWER_LIMIT: usize = 64 << 20;

/// Why a query did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    /// The node's settings cannot be used (a password that cannot be read).
    #[error("{0}")]
    Settings(String),
    /// The server did not answer within the query timeout, or refused the connection.
    #[error("ClickHouse at {url} did not answer: {why}")]
    Unreachable {
        /// The server's endpoint.
        url: String,
        /// What the HTTP client said.
        why: String,
    },
    /// The server answered with an error (its text, as ClickHouse gives it).
    #[error("ClickHouse at {url} refused `{query}`: {message}")]
    Query {
        /// The server's endpoint.
        url: String,
        /// The start of the query.
        query: String,
        /// ClickHouse's message (`Code: 60, e.displayText() = DB::Exception: ...`).
        message: String,
    },
    /// The answer could not be read (too large, not the rows asked for).
    #[error("ClickHouse at {url} gave an answer strata cannot read for `{query}`: {why}")]
    Answer {
        /// The server's endpoint.
        url: String,
        /// The start of the query.
        query: String,
        /// What is wrong with it.
        why: String,
    },
}

impl ClickHouseError {
    /// ClickHouse's error code (`Code: 57` -> 57), when the server gave one.
    pub fn code(&self) -> Option<u32> {
        let ClickHouseError::Query { message, .. } = self else {
            return None;
        };
        let rest = message.split("Code: ").nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

/// One ClickHouse server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    user: String,
    password: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("user", &self.user)
            .finish()
    }
}

impl Client {
    /// A client for the node's server; reads the password from its env or file.
    pub fn new(settings: &ClickHouseNode) -> Result<Client, ClickHouseError> {
        let password = match (&settings.password_env, &settings.password_file) {
            (Some(_), Some(_)) => {
                return Err(ClickHouseError::Settings(
                    "[nodes.clickhouse]: set password_env or password_file, not both".into(),
                ))
            }
            (Some(var), None) => Some(std::env::var(var).map_err(|e| {
                ClickHouseError::Settings(format!("[nodes.clickhouse] password_env {var}: {e}"))
            })?),
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        ClickHouseError::Settings(format!(
                            "[nodes.clickhouse] password_file {}: {e}",
                            file.display()
                        ))
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            (None, None) => None,
        };
        let timeout = humantime::parse_duration(&settings.query_timeout).map_err(|e| {
            ClickHouseError::Settings(format!(
                "[nodes.clickhouse] query_timeout {:?}: {e}",
                settings.query_timeout
            ))
        })?;
        strata_util::tls_by_ring();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClickHouseError::Settings(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            url: settings.url.trim_end_matches('/').to_string(),
            user: settings.user.clone(),
            password,
            timeout,
        })
    }

    /// The server's endpoint, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `sql`; returns the answer's text. A query that outlives the timeout is
    /// cancelled on the server too (`KILL QUERY` by its id, and `max_execution_time`):
    /// a freeze or an attach must not go on after strata stopped waiting for it.
    pub async fn execute(&self, sql: &str) -> Result<String, ClickHouseError> {
        self.execute_with(sql, &[]).await
    }

    /// [`Client::execute`] with settings for this query only (`name`, `value`: names and
    /// values the server listed itself, so nothing in them needs quoting beyond the URL's).
    pub async fn execute_with(
        &self,
        sql: &str,
        settings: &[(String, String)],
    ) -> Result<String, ClickHouseError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!(
            "strata-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let extra: String = settings
            .iter()
            .map(|(name, value)| format!("&{}={}", url_encode(name), url_encode(value)))
            .collect();
        match tokio::time::timeout(self.timeout, self.call(sql, &id, &extra, self.timeout)).await {
            Ok(answer) => answer,
            Err(_) => {
                let kill = format!("KILL QUERY WHERE query_id = {} SYNC", literal(&id));
                let killed = tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    self.call(
                        &kill,
                        &format!("{id}-kill"),
                        "",
                        std::time::Duration::from_secs(30),
                    ),
                )
                .await;
                let said = match killed {
                    Ok(Ok(_)) => "cancelled on the server",
                    _ => "and could not be cancelled on the server",
                };
                Err(ClickHouseError::Unreachable {
                    url: self.url.clone(),
                    why: format!("no answer within {:?} ({said})", self.timeout),
                })
            }
        }
    }

    /// One HTTP call of `sql` under query id `id`, with `settings` (`&name=value...`).
    async fn call(
        &self,
        sql: &str,
        id: &str,
        settings: &str,
        limit: std::time::Duration,
    ) -> Result<String, ClickHouseError> {
        let shown = short(sql);
        let unreachable = |why: String| ClickHouseError::Unreachable {
            url: self.url.clone(),
            why,
        };
        let call = async {
            let mut response = self
                .http
                .post(format!(
                    "{}/?output_format_json_quote_64bit_integers=0&wait_end_of_query=1&query_id={id}&max_execution_time={}{settings}",
                    self.url,
                    limit.as_secs().max(1)
                ))
                .basic_auth(&self.user, self.password.as_deref())
                .body(sql.to_string())
                .send()
                .await
                .map_err(|e| unreachable(strata_util::error_chain(&e.without_url())))?;
            let status = response.status();
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| unreachable(strata_util::error_chain(&e.without_url())))?
            {
                if body.len() + chunk.len() > ANSWER_LIMIT {
                    return Err(ClickHouseError::Answer {
                        url: self.url.clone(),
                        query: shown.clone(),
                        why: format!("larger than {} MiB", ANSWER_LIMIT >> 20),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            let text = String::from_utf8_lossy(&body).into_owned();
            if !status.is_success() {
                return Err(ClickHouseError::Query {
                    url: self.url.clone(),
                    query: shown.clone(),
                    message: one_line(status, &text),
                });
            }
            Ok(text)
        };
        call.await
    }

    /// `SELECT count() FROM <from>` (`from`: a table and its conditions, quoted).
    pub async fn count(&self, from: &str) -> Result<u64, ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct N {
            n: u64,
        }
        let rows = self
            .rows::<N>(&format!("SELECT count() AS n FROM {from}"))
            .await?;
        Ok(rows.first().map_or(0, |n| n.n))
    }

    /// Runs a `SELECT` and reads its rows (`FORMAT JSONEachRow` is appended).
    pub async fn rows<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, ClickHouseError> {
        let text = self.execute(&format!("{sql} FORMAT JSONEachRow")).await?;
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|e| ClickHouseError::Answer {
                    url: self.url.clone(),
                    query: short(sql),
                    why: format!("{e}: {}", short(line)),
                })
            })
            .collect()
    }
}

/// The start of a query or an answer, for messages.
fn short(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(120) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// `text` for a URL's query string: unreserved characters as they are, others `%XX`.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A failed answer's body as one line: ClickHouse's own message is one line; what
/// something else in front of the server answers (an HTML error page of a proxy) is cut
/// to its title or first line of text, so an error stays one line.
fn one_line(status: reqwest::StatusCode, body: &str) -> String {
    let body = body.trim();
    let title = body
        .find("<title>")
        .and_then(|at| {
            let rest = &body[at + "<title>".len()..];
            rest.find("</title>").map(|end| rest[..end].trim())
        })
        .filter(|t| !t.is_empty());
    let text = match title {
        Some(title) => title.to_string(),
        None => {
            // Outside of tags, the first line that says something.
            let mut plain = String::with_capacity(body.len().min(4096));
            let mut in_tag = false;
            for c in body.chars().take(64 * 1024) {
                match c {
                    '<' => in_tag = true,
                    '>' if in_tag => {
                        in_tag = false;
                        plain.push('\n');
                    }
                    _ if !in_tag => plain.push(c),
                    _ => {}
                }
            }
            plain
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .to_string()
        }
    };
    match text.is_empty() {
        true => format!("HTTP {status} with an empty body"),
        // ClickHouse's own message, whole: it names the table, the path, the setting.
        false if text.starts_with("Code: ") => text.chars().take(2000).collect(),
        false => format!("HTTP {status}: {}", short(&text)),
    }
}

/// `name` as a ClickHouse identifier: back-quoted, with `\` and `` ` `` escaped.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// `text` as a ClickHouse string literal: single-quoted, with `\` and `'` escaped.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_strings_are_quoted_so_no_value_ends_them() {
        assert_eq!(ident("a`b\\"), "`a\\`b\\\\`");
        assert_eq!(literal("it's\\"), "'it\\'s\\\\'");
    }

    #[test]
    fn a_foreign_error_page_is_cut_to_one_line() {
        let page = "<!DOCTYPE html>\n<html><head><title>501 Not Implemented</title></head>\n<body><h1>Not Implemented</h1><p>a long\nstory</p></body></html>";
        let line = one_line(reqwest::StatusCode::NOT_IMPLEMENTED, page);
        assert_eq!(line, "HTTP 501 Not Implemented: 501 Not Implemented");
        let line = one_line(
            reqwest::StatusCode::BAD_GATEWAY,
            "<html><body>\n\n<h1>bad gateway</h1>\n<p>more</p></body></html>",
        );
        assert_eq!(line, "HTTP 502 Bad Gateway: bad gateway");
        let own = "Code: 60, e.displayText() = DB::Exception: Table a.b doesn't exist.\n";
        assert_eq!(one_line(reqwest::StatusCode::NOT_FOUND, own), own.trim());
        assert!(!one_line(reqwest::StatusCode::BAD_GATEWAY, &"x".repeat(10_000)).contains('\n'));
    }

    #[test]
    fn the_error_code_is_read_from_clickhouse_s_message() {
        let err = ClickHouseError::Query {
            url: "u".into(),
            query: "q".into(),
            message: "Code: 57, e.displayText() = DB::Exception: Table t already exists".into(),
        };
        assert_eq!(err.code(), Some(57));
    }
}
