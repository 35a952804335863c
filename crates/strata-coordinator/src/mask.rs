//! Secrets out of what the server shows: the configuration view of the API and dashboard,
//! and the names of its checks.
//!
//! Secret *sources* (`env`, `file`) are names and stay visible; values that are secrets
//! by themselves are masked: storage options that look secret, passwords inside database
//! connection strings, and webhook URLs past their host (Slack, Teams and most chat
//! webhooks carry their credential in the path).

use crate::config::Config;

/// What replaces a secret.
pub const MASK: &str = "***";

/// `config` with every secret value masked (see the module documentation).
pub fn masked_config(config: &Config) -> Config {
    let mut shown = config.clone();
    for storage in shown.storages.values_mut() {
        *storage = storage.masked();
    }
    for hook in &mut shown.webhooks {
        hook.url = mask_url(&hook.url);
    }
    // Hooks and external components call URLs that may carry a credential like a
    // webhook's: shown as far as their host.
    for hook in &mut shown.hooks {
        for action in [&mut hook.run, &mut hook.pause, &mut hook.resume]
            .into_iter()
            .flatten()
        {
            *action = action.masked();
        }
    }
    for component in &mut shown.components {
        if let Some(http) = component.http.as_mut() {
            for call in [
                Some(&mut http.backup),
                http.state.as_mut(),
                http.restore.as_mut(),
                http.restore_state.as_mut(),
                http.delete.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                *call = strata_hooks::HookAction::Http(call.clone())
                    .masked()
                    .into_http();
            }
        }
    }
    for camunda in shown
        .components
        .iter_mut()
        .filter_map(|c| c.camunda.as_mut())
    {
        for url in [
            Some(&mut camunda.zeebe),
            Some(&mut camunda.elasticsearch),
            camunda.operate.as_mut(),
            camunda.tasklist.as_mut(),
            camunda.optimize.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            *url = mask_url(url);
        }
    }
    // A Patroni REST API may carry a user and password.
    if !shown.postgres.patroni.is_empty() {
        shown.postgres.patroni = mask_url(&shown.postgres.patroni);
    }
    for node in &mut shown.nodes {
        if let Some(conninfo) = node
            .postgres
            .as_mut()
            .and_then(|pg| pg.primary_conninfo.as_mut())
        {
            *conninfo = mask_conninfo(conninfo);
        }
    }
    shown
}

/// A URL reduced to `scheme://host[:port]` (see [`strata_util::mask_url`]).
pub use strata_util::mask_url;

/// A libpq connection string with its password masked, in either form:
/// `postgresql://user:PASSWORD@host/db?password=PASSWORD` or
/// `host=h password=PASSWORD dbname=d` (quoted values included).
pub fn mask_conninfo(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:{MASK}@{host}"),
                None => authority.to_string(),
            },
            None => authority.to_string(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                            format!("{key}={MASK}")
                        }
                        _ => pair.to_string(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_string(),
        };
        return format!("{scheme}://{authority}{tail}");
    }
    mask_keyword_password(text)
}

/// The `key = value` form: every `password` value (plain or single-quoted with `\'`
/// escapes) becomes the mask; everything else is kept as written.
fn mask_keyword_password(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        // A keyword: letters and underscores, then optional spaces and '='.
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let keyword = &text[start..i];
        let mut j = i;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if keyword.is_empty() || j >= bytes.len() || bytes[j] != b'=' {
            // Not a keyword: copy one character and go on.
            let next = if i > start {
                i
            } else {
                start + text[start..].chars().next().map_or(1, char::len_utf8)
            };
            out.push_str(&text[start..next]);
            i = next;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        // The value: quoted up to the closing quote, else up to whitespace.
        let value_start = j;
        if j < bytes.len() && bytes[j] == b'\'' {
            j += 1;
            while j < bytes.len() && bytes[j] != b'\'' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            j = (j + 1).min(bytes.len());
        } else {
            while j < bytes.len() && !bytes[j].is_ascii_whitespace() {
                j += 1;
            }
        }
        out.push_str(&text[start..value_start]);
        if keyword.eq_ignore_ascii_case("password") {
            out.push_str(MASK);
        } else {
            out.push_str(&text[value_start..j]);
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_keep_only_their_host() {
        assert_eq!(
            mask_url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            mask_url("https://user:pw@example.com:8443/hook?token=abc"),
            "https://example.com:8443/***"
        );
        assert_eq!(mask_url("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(mask_url("http://127.0.0.1:9000/"), "http://127.0.0.1:9000");
        assert_eq!(mask_url("not a url"), MASK);
    }

    #[test]
    fn hook_and_component_urls_keep_only_their_host_in_the_view() {
        let config: Config = toml::from_str(
            r#"
            [[components]]
            name = "engine"
            plugin = "http"
            [components.http]
            backup = "POST https://ops:pw@engine:8443/backups?token=t"
            state = "GET https://engine:8443/backups/{id}?token=t"
            restore = "POST https://engine:8443/backups/{id}/restore"
            [[components]]
            name = "camunda"
            plugin = "camunda"
            [components.camunda]
            zeebe = "http://ops:zpw@zeebe:9600"
            elasticsearch = "https://elastic:espw@es:9200/proxy/SECRET"
            operate = "http://operate:9600"
            snapshot_repository = "camunda"
            [postgres]
            patroni = "http://patroni:ppw@m1:8008/"
            [[hooks]]
            pause = "POST https://engine/pause/SECRET"
            resume = "POST https://engine/resume/SECRET"
            [[hooks]]
            at = "before"
            run = ["/usr/local/bin/notify", "starting"]
            "#,
        )
        .unwrap();
        let shown = toml::to_string(&masked_config(&config)).unwrap();
        for secret in ["pw@", "token=", "SECRET", "/backups", "zpw", "espw", "ppw"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("POST https://engine:8443/***"), "{shown}");
        assert!(shown.contains("zeebe = \"http://zeebe:9600\""), "{shown}");
        assert!(shown.contains("patroni = \"http://m1:8008\""), "{shown}");
        assert!(
            shown.contains("/usr/local/bin/notify"),
            "commands stay: {shown}"
        );
    }

    #[test]
    fn connection_strings_lose_their_passwords_only() {
        assert_eq!(
            mask_conninfo("postgresql://app:s3cr3t@db:5432/metrics?sslmode=require&password=x"),
            "postgresql://app:***@db:5432/metrics?sslmode=require&password=***"
        );
        assert_eq!(
            mask_conninfo("postgres://app@db/metrics"),
            "postgres://app@db/metrics"
        );
        assert_eq!(
            mask_conninfo("host=db password=s3cr3t dbname=metrics"),
            "host=db password=*** dbname=metrics"
        );
        assert_eq!(
            mask_conninfo("host=db password = 'it\\'s a secret' user=app"),
            "host=db password = *** user=app"
        );
        assert_eq!(
            mask_conninfo("dbname=x PASSWORD=y"),
            "dbname=x PASSWORD=***"
        );
        assert_eq!(mask_conninfo(""), "");
        assert_eq!(mask_conninfo("host=é"), "host=é");
    }
}
