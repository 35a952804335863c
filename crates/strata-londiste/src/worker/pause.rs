//! Stopping and pausing: the stop flag, the node's flags read before each round
//! ([`check_node`]), and the waits that a pause, a resume or a tick ends ([`PauseWatch`]).

use super::PAUSE_POLL;
use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::node;
use std::time::{Duration, Instant};
use strata_pgclient::Client;
use tokio::sync::{mpsc, watch};

/// What the main worker does next, from the node's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NodeCheck {
    Run,
    Paused,
    /// The node is no longer of the type the worker started with (takeover).
    RoleChanged,
}

/// Reads the node type and the worker's flags; acknowledges a pause or resume by setting
/// `uptodate` (what `pause`/`takeover` wait for, in Python's protocol too) and clears a
/// saved error once the worker runs again. A new type or a new provider (after
/// `takeover` or `change-provider`) makes the worker start over.
pub(super) async fn check_node(
    dst: &Client,
    cf: &NodeConfig,
    worker: &str,
    node_type: &str,
    provider: Option<&str>,
) -> Result<NodeCheck> {
    let queue = cf.queue_name.as_str();
    let info = node::node_info(dst, queue).await?;
    if info.node_type.as_deref() != Some(node_type) {
        return Ok(NodeCheck::RoleChanged);
    }
    if provider.is_some() && info.provider_location.as_deref() != provider {
        return Ok(NodeCheck::RoleChanged);
    }
    let Some(state) = node::consumer_state(dst, queue, worker).await? else {
        return Err(LondisteError::State(format!(
            "worker {worker} is not registered on this node"
        )));
    };
    if !state.uptodate {
        node::checked(
            dst,
            "acknowledging the pause flag",
            "select ret_code, ret_note from pgq_node.set_consumer_uptodate($1, $2, true)",
            &[&queue, &worker],
        )
        .await?;
    }
    if state.paused {
        return Ok(NodeCheck::Paused);
    }
    if state.cur_error.is_some() {
        node::set_error(dst, queue, worker, None).await?;
    }
    Ok(NodeCheck::Run)
}

/// Whether `stop` asks to stop. A dropped sender does too: nobody is left to ask, and a
/// wait on a closed channel would return at once and spin.
pub(super) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Sleeps `d`, waking early when asked to stop.
pub(crate) async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
    if stopping(stop) {
        return;
    }
    let _ = tokio::time::timeout(d, stop.changed()).await;
}

/// Wakes a waiting worker when its pause flag may have changed: a NOTIFY on
/// [`node::WORKER_CHANNEL`] (strata's `pause`, `resume`, `park-event`, and the pauses of
/// `takeover` and `change-provider`) ends a wait at once; pauses set by tools that do not
/// NOTIFY are seen by a poll of the flag every [`PAUSE_POLL`].
pub(crate) struct PauseWatch {
    dsn: Option<strata_pgclient::Dsn>,
    queue: String,
    listener: Option<(
        Client,
        mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    )>,
    tried: Option<Instant>,
}

/// What ended a [`PauseWatch::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The time was up (or the worker is stopping).
    Timeout,
    /// A NOTIFY, or the polled pause flag changed.
    Flag,
    /// The provider announced a tick.
    Tick,
}

impl PauseWatch {
    pub(crate) fn new(cf: &NodeConfig) -> PauseWatch {
        PauseWatch {
            dsn: cf.dsn().ok(),
            queue: cf.queue_name.clone(),
            listener: None,
            tried: None,
        }
    }

    /// A LISTEN session on the node's database, (re)connected at most every 5 s.
    async fn ensure(&mut self) {
        if self.listener.as_ref().is_some_and(|(c, _)| c.is_closed()) {
            self.listener = None;
        }
        if self.listener.is_some()
            || self
                .tried
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.tried = Some(Instant::now());
        let Some(dsn) = &self.dsn else { return };
        if let Ok((client, rx)) = dsn.connect_listening().await {
            let listen = format!("LISTEN {}", node::WORKER_CHANNEL);
            if client.batch_execute(&listen).await.is_ok() {
                self.listener = Some((client, rx));
            }
        }
    }

    /// A NOTIFY for this queue; pending forever without a LISTEN session.
    async fn notified(&mut self) {
        loop {
            let Some((_, rx)) = self.listener.as_mut() else {
                return std::future::pending().await;
            };
            match rx.recv().await {
                Some(n) if n.payload() == self.queue => return,
                Some(_) => continue,
                None => {
                    self.listener = None;
                    return std::future::pending().await;
                }
            }
        }
    }

    /// Waits up to `d`. With `flag` (the target, the worker's name and the pause flag as
    /// last seen) the flag is polled every [`PAUSE_POLL`] and a change ends the wait; with
    /// `tick`, so does the provider's tick announcement.
    pub(crate) async fn wait(
        &mut self,
        d: Duration,
        stop: &mut watch::Receiver<bool>,
        flag: Option<(&Client, &str, bool)>,
        mut tick: Option<&mut strata_pgq::conn::TickWaiter>,
    ) -> Woken {
        self.ensure().await;
        let deadline = Instant::now() + d;
        loop {
            if stopping(stop) {
                return Woken::Timeout;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Woken::Timeout;
            }
            let slice = if flag.is_some() {
                left.min(PAUSE_POLL)
            } else {
                left
            };
            let ticked = async {
                match tick.as_deref_mut() {
                    Some(waiter) => waiter.wait(slice).await,
                    None => {
                        tokio::time::sleep(slice).await;
                        false
                    }
                }
            };
            tokio::select! {
                _ = self.notified() => return Woken::Flag,
                t = ticked => if t { return Woken::Tick },
                _ = stop.changed() => return Woken::Timeout,
            }
            if let Some((dst, worker, paused)) = flag {
                let row = dst
                    .query_opt(
                        "select paused from pgq_node.local_state where queue_name = $1 and consumer_name = $2",
                        &[&self.queue, &worker],
                    )
                    .await;
                if let Ok(Some(row)) = row {
                    if row.get::<_, bool>(0) != paused {
                        return Woken::Flag;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_stop_sender_stops_instead_of_waking_every_wait_at_once() {
        let (tx, mut rx) = watch::channel(false);
        assert!(!stopping(&rx));
        drop(tx);
        assert!(stopping(&rx));
        // The wait returns at once rather than hanging or spinning on the closed channel.
        pause(&mut rx, Duration::from_secs(3600)).await;
    }
}
