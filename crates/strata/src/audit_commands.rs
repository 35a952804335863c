//! `strata audit` reads the audit log of a repository, or of the server with
//! `--server`. Local actions record themselves (as `local:<user>@<host>`) in the use
//! cases they call.

use crate::context::{CommandResult, Context};
use crate::output::print_json;

impl Context {
    /// `strata audit`.
    pub(crate) async fn audit(&self, since: Option<&str>, limit: u32) -> CommandResult {
        let entries = self.cluster().audit(since, limit).await?;
        if self.global.json {
            print_json(&entries);
            return Ok(0);
        }
        if entries.is_empty() {
            self.say("no audit log entries");
            return Ok(0);
        }
        for e in &entries {
            let detail = if e.detail.is_empty() {
                String::new()
            } else {
                format!("  {}", e.detail)
            };
            println!(
                "{}  {:<10} {:<9} {:<28} {:<26}{detail}",
                e.time.replace('T', " ").trim_end_matches('Z'),
                e.action,
                e.outcome,
                e.target,
                e.who
            );
        }
        Ok(0)
    }
}
