//! `--server URL`: the HTTP transport of the cluster commands, with the token of
//! `--token-file` or `$STRATA_TOKEN`.

use crate::cli::Global;
use crate::failure::Failure;
use strata_api::config::{Config, SecretSource};
use strata_api::runs::ApiClient;
use strata_api::Http;

/// The server of `--server`, if given.
pub(crate) fn server(global: &Global, config: &Config) -> Result<Option<Http>, Failure> {
    let Some(url) = &global.server else {
        return Ok(None);
    };
    // --token-file (or $STRATA_TOKEN_FILE) when given, else $STRATA_TOKEN.
    let source = SecretSource {
        env: if global.token_file.is_some() {
            String::new()
        } else {
            "STRATA_TOKEN".into()
        },
        file: global.token_file.clone(),
    };
    let token = source.read("token")?;
    let client = ApiClient::new(url, token, config.server.ca_file.as_deref())?;
    Ok(Some(Http::new(client)))
}
