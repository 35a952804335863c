//! What keeps `strata server` answering while clients misbehave: a cap on connections
//! that sacrifices connections which never made an authenticated request, and a
//! per-address limit on requests with a missing or wrong token.
//!
//! Both are small enough to write here: tower's `ConcurrencyLimit` counts requests, not
//! connections, and cannot choose which connection to give up; tower-http has no rate
//! limiter, and `tower::limit::RateLimit` is global (one client would lock out all).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The limits of a server's listener (`[server]` in the configuration).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request's headers, from the moment the connection waits for them
    /// (also how long an idle keep-alive connection lives).
    pub header_timeout: Duration,
    /// Time to send a request's body once the headers arrived.
    pub body_timeout: Duration,
    /// Time to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time a write to the client may stall.
    pub write_timeout: Duration,
    /// Unauthenticated requests per address and minute before 429.
    pub auth_failures_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&strata_coordinator::config::ServerConfig::default())
    }
}

impl Limits {
    /// The limits a configuration's `[server]` section sets.
    pub fn from_config(server: &strata_coordinator::config::ServerConfig) -> Limits {
        Limits {
            max_connections: server.max_connections.max(1),
            header_timeout: Duration::from_secs(server.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(server.body_timeout_secs.max(1)),
            tls_handshake_timeout: Duration::from_secs(server.tls_handshake_timeout_secs.max(1)),
            write_timeout: Duration::from_secs(server.write_timeout_secs.max(1)),
            auth_failures_per_minute: server.auth_failures_per_minute.max(1),
        }
    }
}

/// One open connection's shared state.
#[derive(Default)]
pub(crate) struct ConnState {
    /// Has made a request with a valid token (then it is a real client).
    pub(crate) trusted: AtomicBool,
    /// Told to close (given up for a newer connection).
    pub(crate) evict: Notify,
}

/// The connections a listener holds, oldest first.
pub(crate) struct Slots {
    max: usize,
    open: Mutex<(u64, BTreeMap<u64, Arc<ConnState>>)>,
}

/// A connection's place; dropping it frees the place.
pub(crate) struct Slot {
    id: u64,
    slots: Arc<Slots>,
    pub(crate) conn: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().1.remove(&self.id);
    }
}

impl Slots {
    pub(crate) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            open: Mutex::new((0, BTreeMap::new())),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, Arc<ConnState>>)> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection. When all are taken, the oldest connection that has
    /// not made an authenticated request yet is told to close and gives its place up;
    /// when every connection has, `None`: the new one is closed at once. So connections
    /// that only hold a place (idle, slowloris, a stalled handshake, requests without a
    /// valid token) never lock out a client with a token.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut guard = self.lock();
        let (next, open) = &mut *guard;
        if open.len() >= self.max && !evict_oldest_untrusted(open) {
            return None;
        }
        let id = *next;
        *next += 1;
        let conn = Arc::new(ConnState::default());
        open.insert(id, conn.clone());
        Some(Slot {
            id,
            slots: self.clone(),
            conn,
        })
    }

    /// Closes the oldest connection that has not made an authenticated request yet (to
    /// free a file descriptor when accepting fails for want of one). Whether there was
    /// one.
    pub(crate) fn evict_one(&self) -> bool {
        evict_oldest_untrusted(&mut self.lock().1)
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.lock().1.len()
    }
}

fn evict_oldest_untrusted(open: &mut BTreeMap<u64, Arc<ConnState>>) -> bool {
    let Some(id) = open
        .iter()
        .find(|(_, c)| !c.trusted.load(Ordering::Relaxed))
        .map(|(id, _)| *id)
    else {
        return false;
    };
    if let Some(conn) = open.remove(&id) {
        // notify_one keeps the wake-up for a task not waiting yet.
        conn.evict.notify_one();
    }
    true
}

/// Counts requests with a missing or wrong token per client address, in one-minute
/// windows.
pub(crate) struct AuthLimiter {
    per_minute: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Addresses remembered at most; past it windows that ended are dropped, and if that is
/// not enough, all (an attacker with that many addresses is not slowed by this anyway).
const REMEMBERED: usize = 65_536;

/// What the limiter says about a failed request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Under the limit: answer 401 and log it.
    Counted,
    /// This failure reached the limit: answer 401, log that the address is now limited.
    LimitReached,
}

impl AuthLimiter {
    pub(crate) fn new(per_minute: u32) -> AuthLimiter {
        AuthLimiter::with_window(per_minute, Duration::from_secs(60))
    }

    fn with_window(per_minute: u32, window: Duration) -> AuthLimiter {
        AuthLimiter {
            per_minute: per_minute.max(1),
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds `ip` must wait when it has used up this window's failures, else `None`.
    pub(crate) fn refused(&self, ip: IpAddr) -> Option<u64> {
        let seen = self.lock();
        let (start, count) = seen.get(&ip)?;
        let age = start.elapsed();
        (age < self.window && *count >= self.per_minute)
            .then(|| (self.window - age).as_secs().max(1))
    }

    /// Counts a failed request of `ip`.
    pub(crate) fn failed(&self, ip: IpAddr) -> Verdict {
        let mut seen = self.lock();
        if seen.len() >= REMEMBERED && !seen.contains_key(&ip) {
            let window = self.window;
            seen.retain(|_, (start, _)| start.elapsed() < window);
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
        }
        let entry = seen.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 == self.per_minute {
            Verdict::LimitReached
        } else {
            Verdict::Counted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_server_gives_up_the_oldest_silent_connection() {
        let slots = Slots::new(2);
        let a = slots.admit().unwrap();
        let b = slots.admit().unwrap();
        a.conn.trusted.store(true, Ordering::Relaxed);
        // a made an authenticated request, b did not: b goes.
        let c = slots.admit().unwrap();
        assert_eq!(slots.open(), 2);
        let evicted = b.conn.clone();
        // The eviction is delivered even though nobody waits yet.
        futures_util::FutureExt::now_or_never(evicted.evict.notified())
            .expect("b was told to close");
        drop(b);
        assert_eq!(slots.open(), 2, "b's place was already given to c");
        // Every connection is trusted: a new one is refused.
        c.conn.trusted.store(true, Ordering::Relaxed);
        assert!(slots.admit().is_none());
        assert!(!slots.evict_one());
        drop(a);
        assert!(slots.admit().is_some());
    }

    #[test]
    fn failures_are_limited_per_address_and_window() {
        let limiter = AuthLimiter::with_window(3, Duration::from_millis(300));
        let (one, two): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::1".parse().unwrap());
        assert_eq!(limiter.failed(one), Verdict::Counted);
        assert_eq!(limiter.failed(one), Verdict::Counted);
        assert_eq!(limiter.refused(one), None);
        assert_eq!(limiter.failed(one), Verdict::LimitReached);
        assert!(limiter.refused(one).is_some());
        assert_eq!(limiter.refused(two), None, "another address is not limited");
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(limiter.refused(one), None, "a new window starts afresh");
        assert_eq!(limiter.failed(one), Verdict::Counted);
    }
}
