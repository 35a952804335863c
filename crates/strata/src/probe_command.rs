//! `strata probe`: asks a strata process's `/health` or `/ready`, for healthchecks where
//! no curl is (the container image) and for scripts that wait for a server to serve.

use crate::context::{CommandResult, Context};
use crate::failure::{code, Failure};
use crate::output::print_json;
use std::time::Duration;
use strata_health::probe::{Answer, Endpoint, Probe, ProbeError};

impl Context {
    /// `strata probe [URL] [--ready] [--timeout SECS] [--wait SECS]`.
    pub(crate) async fn probe(
        &self,
        url: Option<String>,
        ready: bool,
        timeout: u64,
        wait: u64,
    ) -> CommandResult {
        let base = url
            .or_else(|| self.global.server.clone())
            .unwrap_or_else(|| strata_api::config::local_server_url(&self.config));
        let endpoint = ready.then_some(Endpoint::Ready);
        let mut probe =
            Probe::new(&base, endpoint).map_err(|e| Failure::new(code::USAGE, e.to_string()))?;
        probe.timeout = Duration::from_secs(timeout);
        probe.wait = Duration::from_secs(wait);
        probe.ca_file = self.config.server.ca_file.clone();
        match probe.run().await {
            Ok(answer) => {
                if self.global.json {
                    match &answer {
                        Answer::Healthy(report) => print_json(report),
                        Answer::Ready(report) => print_json(report),
                    }
                } else {
                    self.say(match &answer {
                        Answer::Healthy(h) => {
                            format!("{}: {} {} serves", probe.url, h.process, h.version)
                        }
                        Answer::Ready(r) => {
                            format!("{}: ready ({} checks passed)", probe.url, r.checks.len())
                        }
                    });
                }
                Ok(0)
            }
            Err(ProbeError::NotReady { report, .. }) if self.global.json => {
                print_json(&report);
                Ok(code::FAILED)
            }
            Err(e) => Err(Failure::new(e.code().exit_code(), e.to_string())),
        }
    }
}
