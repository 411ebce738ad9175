//! The fetcher thread: asks the daemon for its status every interval (and on demand), runs
//! reloads, and sends every result to the console's loop, so a slow or absent daemon never
//! holds up drawing or keys. A failed fetch is retried at the next interval, for as long as
//! the console runs.

use std::io;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::app::Event;
use crate::client::Client;

/// What the console's loop asks of the fetcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Fetch now, paused or not.
    Refresh,
    /// Stop (`true`) or resume (`false`) the periodic fetches.
    Pause(bool),
    /// Ask the daemon to reload its configuration, then fetch, since thresholds may change.
    Reload,
}

/// Starts the thread; it ends when either channel's other end is gone.
pub fn spawn(
    client: Client,
    interval: Duration,
    commands: Receiver<Command>,
    events: Sender<Event>,
) -> io::Result<()> {
    thread::Builder::new()
        .name("console-fetcher".into())
        .spawn(move || run(&client, interval, &commands, &events))
        .map(drop)
}

fn run(client: &Client, interval: Duration, commands: &Receiver<Command>, events: &Sender<Event>) {
    let mut paused = false;
    let mut due = Instant::now();
    loop {
        let wait = if paused {
            // Only a command can end a pause; wake up rarely just to notice nothing changed.
            Duration::from_secs(3600)
        } else {
            due.saturating_duration_since(Instant::now())
        };
        let fetch = match commands.recv_timeout(wait) {
            Ok(Command::Refresh) => true,
            Ok(Command::Pause(pause)) => {
                paused = pause;
                // Resuming shows fresh figures at once rather than after an interval.
                !pause
            }
            Ok(Command::Reload) => {
                if events
                    .send(Event::Reloaded(client.reload_config()))
                    .is_err()
                {
                    return;
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => !paused,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if fetch {
            let event = match client.status() {
                Ok(report) => Event::Status {
                    at: OffsetDateTime::now_utc(),
                    report: Box::new(report),
                },
                Err(error) => Event::Failed {
                    at: OffsetDateTime::now_utc(),
                    error,
                },
            };
            if events.send(event).is_err() {
                return;
            }
            due = Instant::now() + interval;
        }
    }
}
