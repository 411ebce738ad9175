//! systemd integration through the notify socket: `READY=1`, `STATUS=`, `WATCHDOG=1` and
//! `STOPPING=1`. Everything here is a no-op when the daemon does not run under systemd
//! (no `NOTIFY_SOCKET`), so the same binary runs from a shell, a container or a test.
//!
//! The protocol is a datagram on a socket named by the environment; the small `sd-notify`
//! crate speaks it without linking libsystemd.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::store::Store;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, "could not notify systemd");
    }
}

/// Serving: the store is open and migrated and the listener is bound.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining in-flight requests"),
    ]);
}

/// When systemd asked for a watchdog (`WatchdogSec=` sets `WATCHDOG_USEC`), pings it at half
/// the interval for as long as the store still answers a query, so a wedged daemon is
/// restarted rather than left holding the port.
pub fn spawn_watchdog(store: Store) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }

    let interval = Duration::from_micros(usec) / 2;
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let probe = store.read(|connection| {
                connection
                    .query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(Into::into)
            });
            match tokio::time::timeout(interval, probe).await {
                Ok(Ok(())) => notify(&[NotifyState::Watchdog]),
                Ok(Err(error)) => tracing::warn!(%error, "store probe failed; watchdog not fed"),
                Err(_) => tracing::warn!("store probe timed out; watchdog not fed"),
            }
        }
    });
}
