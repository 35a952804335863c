//! Telling the service manager how the process is doing (`Type=notify` systemd units).
//!
//! A unit of `Type=notify` counts as started when the process says `READY=1`, not when it
//! was forked, so `systemctl start strata` returns once the server answers, and units
//! ordered after it start against a server that serves. With `WatchdogSec=` set, the
//! process must say `WATCHDOG=1` at least that often or systemd restarts it: the pings go
//! out from a task on the process's own runtime, so a runtime that stalls (every worker
//! blocked) stops them, which is the hang the watchdog is there to catch.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing. A notification that
//! cannot be sent is not an error of the process: it is logged once on stderr and the
//! process goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

static WARNED: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            eprintln!("strata: warning: cannot notify the service manager ($NOTIFY_SOCKET): {e}");
        }
    }
}

/// The process serves: `READY=1`, with a one-line status (`systemctl status` shows it).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The process is stopping (a SIGTERM arrived): `STOPPING=1`, with why.
pub fn stopping(why: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(why)]);
}

/// How often to ping: half the unit's `WatchdogSec=`, if it set one for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|limit| limit / 2)
}

/// Pings the watchdog every [`watchdog_interval`] for as long as the runtime runs it;
/// returns at once when no watchdog is set. Spawn it on the runtime whose liveness it
/// vouches for.
pub async fn watchdog() {
    let Some(every) = watchdog_interval() else {
        return;
    };
    let every = every.max(Duration::from_millis(10));
    loop {
        send(&[NotifyState::Watchdog]);
        tokio::time::sleep(every).await;
    }
}
