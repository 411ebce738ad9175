//! The console's state and what keys and fetches do to it: the screen shown, the last status
//! document, whether the daemon answers, the histories the console keeps itself, and the
//! help and reload dialogs. Drawing it is `ui`'s business; nothing here touches a terminal.

use std::collections::VecDeque;
use std::time::Duration;

use time::OffsetDateTime;

use crate::client::ClientError;
use crate::fetcher::Command;
use crate::input::Key;
use crate::status::{ReloadReport, StatusReport};

/// Samples the histories keep: ten minutes at the default interval, wider than any screen.
const HISTORY: usize = 600;
/// A p99 past the daemon's last latency bucket (60 s), for the history: above any objective.
const PAST_LAST_BUCKET_MS: u64 = 60_001;

/// What reaches the console's loop, from the input and fetcher threads.
#[derive(Debug)]
pub enum Event {
    Key(Key),
    /// The terminal changed size: only a redraw is needed, which every event brings.
    Resize,
    Status {
        at: OffsetDateTime,
        report: Box<StatusReport>,
    },
    Failed {
        at: OffsetDateTime,
        error: ClientError,
    },
    Reloaded(Result<ReloadReport, ClientError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Gpu,
    Backups,
    Alerts,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Overview, Tab::Gpu, Tab::Backups, Tab::Alerts];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Gpu => "GPU",
            Tab::Backups => "Backups",
            Tab::Alerts => "Alerts",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|&tab| tab == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Tab {
        let count = Tab::ALL.len() as isize;
        Tab::ALL[(self.index() as isize + by).rem_euclid(count) as usize]
    }
}

/// Whether the daemon answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// No answer yet, and no failure either.
    Connecting,
    Connected,
    /// The last fetch failed; the last good document, if any, stays on screen greyed.
    Disconnected {
        since: OffsetDateTime,
        reason: String,
    },
}

/// A dialog over the screen; it takes the keys while it is open.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Help,
    ConfirmReload,
    Reloading,
    Reloaded(Result<ReloadReport, String>),
}

/// A figure over time, one sample per status document; `None` where there was nothing to
/// measure.
#[derive(Debug, Clone, Default)]
pub struct History {
    samples: VecDeque<Option<u64>>,
}

impl History {
    fn push(&mut self, sample: Option<u64>) {
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The newest `count` samples, oldest first.
    pub fn latest(&self, count: usize) -> Vec<Option<u64>> {
        let skip = self.samples.len().saturating_sub(count);
        self.samples.iter().skip(skip).copied().collect()
    }
}

pub struct App {
    pub url: String,
    pub interval: Duration,
    pub tab: Tab,
    pub paused: bool,
    pub connection: Connection,
    /// The last document and when it arrived.
    pub last: Option<(OffsetDateTime, StatusReport)>,
    pub overlay: Option<Overlay>,
    /// GPU memory used over all GPUs, in tenths of a percent.
    pub vram_history: History,
    /// The inference p99 over the short window, in milliseconds.
    pub inference_p99_history: History,
    /// The clock the screens measure ages against; set by the loop, fixed in tests.
    pub now: OffsetDateTime,
    quit: bool,
}

impl App {
    pub fn new(url: &str, interval: Duration, now: OffsetDateTime) -> App {
        App {
            url: url.to_string(),
            interval,
            tab: Tab::Overview,
            paused: false,
            connection: Connection::Connecting,
            last: None,
            overlay: None,
            vram_history: History::default(),
            inference_p99_history: History::default(),
            now,
            quit: false,
        }
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Applies `event`; returns what the fetcher should do, if anything.
    pub fn handle(&mut self, event: Event) -> Option<Command> {
        match event {
            Event::Key(key) => return self.key(key),
            Event::Resize => {}
            Event::Status { at, report } => {
                self.record(&report);
                self.connection = Connection::Connected;
                self.last = Some((at, *report));
            }
            Event::Failed { at, error } => {
                let reason = error.to_string();
                self.connection = match &self.connection {
                    // Keep the time it started; the reason may change (refused, then timeouts).
                    Connection::Disconnected { since, .. } => Connection::Disconnected {
                        since: *since,
                        reason,
                    },
                    _ => Connection::Disconnected { since: at, reason },
                };
            }
            Event::Reloaded(result) => {
                self.overlay = Some(Overlay::Reloaded(result.map_err(|error| error.to_string())));
            }
        }
        None
    }

    fn record(&mut self, report: &StatusReport) {
        let vram = report
            .gpu
            .memory()
            .map(|(used, total)| (used as f64 * 1000.0 / total as f64).round() as u64);
        self.vram_history.push(vram);
        let p99 = report
            .traffic
            .short
            .classes
            .get("inference")
            .and_then(|class| match class.p99_seconds {
                Some(seconds) => Some((seconds * 1000.0).round() as u64),
                // Requests but no p99: past the daemon's last bucket, which it sends as null.
                None if class.requests > 0 => Some(PAST_LAST_BUCKET_MS),
                None => None,
            });
        self.inference_p99_history.push(p99);
    }

    fn key(&mut self, key: Key) -> Option<Command> {
        if key == Key::CtrlC {
            self.quit = true;
            return None;
        }
        match self.overlay.take() {
            None => self.screen_key(key),
            Some(Overlay::ConfirmReload) => match key {
                Key::Char('y' | 'Y') => {
                    self.overlay = Some(Overlay::Reloading);
                    Some(Command::Reload)
                }
                Key::Char('n' | 'N') | Key::Esc | Key::Char('q') => None,
                _ => {
                    self.overlay = Some(Overlay::ConfirmReload);
                    None
                }
            },
            // The answer is on its way; only it closes this dialog.
            Some(Overlay::Reloading) => {
                self.overlay = Some(Overlay::Reloading);
                None
            }
            // Any key closes help and a reload's result.
            Some(Overlay::Help | Overlay::Reloaded(_)) => None,
        }
    }

    fn screen_key(&mut self, key: Key) -> Option<Command> {
        match key {
            Key::Char('q') | Key::Esc => self.quit = true,
            Key::Tab | Key::Right => self.tab = self.tab.step(1),
            Key::BackTab | Key::Left => self.tab = self.tab.step(-1),
            Key::Char(digit @ '1'..='4') => {
                self.tab = Tab::ALL[usize::from(digit as u8 - b'1')];
            }
            Key::Char('?') => self.overlay = Some(Overlay::Help),
            Key::Char('r') => return Some(Command::Refresh),
            Key::Char('p') => {
                self.paused = !self.paused;
                return Some(Command::Pause(self.paused));
            }
            Key::Char('R') => self.overlay = Some(Overlay::ConfirmReload),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App::new(
            "http://x",
            Duration::from_secs(1),
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    fn failure(message: &str) -> ClientError {
        ClientError::Unauthorized {
            status: 401,
            message: message.into(),
        }
    }

    #[test]
    fn tabs_move_both_ways_and_wrap() {
        let mut app = app();
        app.handle(Event::Key(Key::Left));
        assert_eq!(app.tab, Tab::Alerts);
        app.handle(Event::Key(Key::Tab));
        assert_eq!(app.tab, Tab::Overview);
        app.handle(Event::Key(Key::Right));
        app.handle(Event::Key(Key::Right));
        assert_eq!(app.tab, Tab::Backups);
        app.handle(Event::Key(Key::BackTab));
        assert_eq!(app.tab, Tab::Gpu);
        app.handle(Event::Key(Key::Char('4')));
        assert_eq!(app.tab, Tab::Alerts);
        app.handle(Event::Key(Key::Char('5')));
        assert_eq!(app.tab, Tab::Alerts);
    }

    #[test]
    fn reload_waits_for_yes() {
        let mut app = app();
        assert_eq!(app.handle(Event::Key(Key::Char('R'))), None);
        assert_eq!(app.overlay, Some(Overlay::ConfirmReload));
        // Other keys neither act nor close the question.
        assert_eq!(app.handle(Event::Key(Key::Char('r'))), None);
        assert_eq!(app.overlay, Some(Overlay::ConfirmReload));
        assert_eq!(app.handle(Event::Key(Key::Char('n'))), None);
        assert_eq!(app.overlay, None);
        assert!(!app.should_quit());

        app.handle(Event::Key(Key::Char('R')));
        assert_eq!(
            app.handle(Event::Key(Key::Char('y'))),
            Some(Command::Reload)
        );
        assert_eq!(app.overlay, Some(Overlay::Reloading));
        app.handle(Event::Key(Key::Char('q')));
        assert_eq!(app.overlay, Some(Overlay::Reloading));
        assert!(!app.should_quit());

        app.handle(Event::Reloaded(Ok(ReloadReport::default())));
        assert!(matches!(app.overlay, Some(Overlay::Reloaded(Ok(_)))));
        app.handle(Event::Key(Key::Char('x')));
        assert_eq!(app.overlay, None);
    }

    #[test]
    fn esc_closes_help_before_it_quits() {
        let mut app = app();
        app.handle(Event::Key(Key::Char('?')));
        assert_eq!(app.overlay, Some(Overlay::Help));
        app.handle(Event::Key(Key::Esc));
        assert_eq!(app.overlay, None);
        assert!(!app.should_quit());
        app.handle(Event::Key(Key::Esc));
        assert!(app.should_quit());
    }

    #[test]
    fn refresh_and_pause_go_to_the_fetcher() {
        let mut app = app();
        assert_eq!(
            app.handle(Event::Key(Key::Char('r'))),
            Some(Command::Refresh)
        );
        assert_eq!(
            app.handle(Event::Key(Key::Char('p'))),
            Some(Command::Pause(true))
        );
        assert!(app.paused);
        assert_eq!(
            app.handle(Event::Key(Key::Char('p'))),
            Some(Command::Pause(false))
        );
    }

    #[test]
    fn a_disconnection_keeps_its_start_time() {
        let mut app = app();
        let at = |seconds| OffsetDateTime::UNIX_EPOCH + Duration::from_secs(seconds);
        app.handle(Event::Failed {
            at: at(10),
            error: failure("first"),
        });
        app.handle(Event::Failed {
            at: at(20),
            error: failure("second"),
        });
        match &app.connection {
            Connection::Disconnected { since, reason } => {
                assert_eq!(*since, at(10));
                assert!(reason.contains("second"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn histories_keep_the_latest_samples() {
        let mut history = History::default();
        for sample in 0..(HISTORY as u64 + 5) {
            history.push(Some(sample));
        }
        assert_eq!(
            history.latest(2),
            [Some(HISTORY as u64 + 3), Some(HISTORY as u64 + 4)]
        );
        assert_eq!(history.latest(HISTORY * 2).len(), HISTORY);
    }
}
