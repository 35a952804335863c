//! strata's rows of cooperative subconsumers whose pgq subscription is gone: pgq drops
//! subscriptions without knowing strata's table, so every way of dropping them (the
//! queue API's drop and unregister, the coop API) cleans up through here.

use crate::{PgqError, Result};
use tokio_postgres::Client;

/// Deletes strata's rows of subconsumers whose pgq subscription is gone, and their
/// `pgq.consumer` names when nothing else uses them (as pgq does for its own consumers):
/// `pgq.drop_queue` with force, and `pgq.unregister_consumer` of a main consumer, delete
/// the subscriptions of its subconsumers without knowing strata's table. A no-op where
/// the coop functions were never installed.
pub async fn forget_orphans(client: &Client) -> Result<()> {
    let installed: bool = client
        .query_one("select to_regclass('strata_pgq.coop_sub') is not null", &[])
        .await
        .map_err(|e| PgqError::sql("looking for strata_pgq.coop_sub", e))?
        .get(0);
    if !installed {
        return Ok(());
    }
    client
        .execute(
            "with gone as (delete from strata_pgq.coop_sub k where not exists \
                 (select 1 from pgq.subscription s where s.sub_queue = k.sub_queue and s.sub_consumer = k.sub_consumer) \
                 returning k.sub_consumer) \
             delete from pgq.consumer c using gone where c.co_id = gone.sub_consumer \
                and not exists (select 1 from pgq.subscription s where s.sub_consumer = c.co_id)",
            &[],
        )
        .await
        .map_err(|e| PgqError::sql("deleting orphaned strata_pgq.coop_sub rows", e))?;
    Ok(())
}
