//! Foreign keys during copies, as Python Londiste keeps them: a copy drops every key from
//! or to its table into `londiste.pending_fkeys`, and the main worker restores each once
//! both of its tables are `ok`. Its own module because both sides use it: the copy task
//! (drop) and the replay loop (restore).

use crate::error::{LondisteError, Result};
use strata_pgclient::Client;

/// Drops every foreign key from or to `table`, saving it in `londiste.pending_fkeys`
/// (Python's `drop_fkeys`): the truncate and the rows of a half-copied set would break
/// them. The main worker restores each once both of its tables are `ok`. Each drop commits
/// on its own, before the copy transaction.
pub(crate) async fn drop_fkeys(dst: &Client, table: &str) -> Result<()> {
    let rows = dst
        .query(
            "select from_table, fkey_name from londiste.find_table_fkeys($1)",
            &[&table],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("finding the foreign keys of {table}"), e))?;
    for r in rows {
        let (from, name): (String, String) = (r.get(0), r.get(1));
        dst.query_one("select londiste.drop_table_fkey($1, $2)", &[&from, &name])
            .await
            .map_err(|e| LondisteError::sql(format!("dropping foreign key {name} of {from}"), e))?;
    }
    Ok(())
}

/// Restores the dropped foreign keys whose two tables are both `ok` now (the main worker
/// calls it before each batch, as Python does). A key that no longer holds (rows the
/// provider let through) stays pending, with a message, rather than stopping replay.
pub(crate) async fn restore_fkeys(
    dst: &Client,
    queue: &str,
    log: &strata_pgq::log::Log,
) -> Result<()> {
    let rows = dst
        .query(
            "select from_table, fkey_name from londiste.get_valid_pending_fkeys($1)",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading pending foreign keys", e))?;
    for r in rows {
        let (from, name): (String, String) = (r.get(0), r.get(1));
        if let Err(e) = dst
            .query_one(
                "select londiste.restore_table_fkey($1, $2)",
                &[&from, &name],
            )
            .await
        {
            log.warn(format!(
                "cannot restore foreign key {name} of {from}: {}",
                strata_pgclient::error_message(&e)
            ));
        }
    }
    Ok(())
}
