//! Patroni's hooks into strata: a replica creation method (`patroni-replica`) and a
//! custom bootstrap method (`patroni-bootstrap`). Each lays a PostgreSQL backup down in
//! the data directory Patroni names (`strata_api::InProcess::patroni_lay_down`) and
//! leaves the rest to Patroni.

use crate::context::{CommandResult, Context};
use crate::failure::{chain, exit_code, Failure};
use strata_api::LayDownError;

impl From<LayDownError> for Failure {
    fn from(err: LayDownError) -> Self {
        match err {
            LayDownError::Restore(err) => err.into(),
            err => Failure::new(exit_code(err.code()), chain(&err)),
        }
    }
}

impl Context {
    /// Lays the backup down in Patroni's `--datadir`.
    pub(crate) async fn patroni_lay_down(&self, args: &[String], bootstrap: bool) -> CommandResult {
        let laid = self.local.patroni_lay_down(args, bootstrap).await?;
        self.say(format!(
            "backup {} laid down in {} for Patroni ({}){}",
            laid.backup,
            laid.datadir.display(),
            if bootstrap { "bootstrap" } else { "replica" },
            laid.target
                .map(|t| format!("; its recovery_conf recovers it to {t}"))
                .unwrap_or_default()
        ));
        Ok(0)
    }
}
