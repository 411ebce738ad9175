//! The console's loop: sets up the terminal, starts the fetcher and input threads, and
//! redraws whenever something arrives (a status document, a failure, a key, a resize) or a
//! tick passes, which keeps ages such as "disconnected since" current. SIGTERM and SIGHUP (a
//! closed SSH session) end the loop like `q` does, so the terminal is restored then too.

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use ratatui::Terminal;
use thiserror::Error;
use time::OffsetDateTime;

use crate::app::App;
use crate::backend::{CrosstermBackend, TerminalGuard};
use crate::client::Client;
use crate::settings::Settings;
use crate::ui::theme::Theme;
use crate::{fetcher, input, ui};

/// How often the screen is redrawn without news.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error("the console needs a terminal: standard input and output must both be one")]
    NotATerminal,
    #[error("terminal: {0}")]
    Terminal(#[from] io::Error),
    #[error("cannot start the console's {0} thread: {1}")]
    Thread(&'static str, #[source] io::Error),
}

/// Runs the console until the operator quits.
pub fn run(settings: Settings) -> Result<(), ConsoleError> {
    if !(io::stdin().is_terminal() && io::stdout().is_terminal()) {
        return Err(ConsoleError::NotATerminal);
    }
    let theme = Theme::from_env();
    let (events, inbox) = mpsc::channel();
    let (commands, command_inbox) = mpsc::channel();
    let client = Client::new(&settings.url, &settings.key);

    let signalled = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&signalled))?;
    }

    let _guard = TerminalGuard::enter()?;
    // Keys are read only once the terminal is raw, so none waits for a newline.
    input::spawn_reader(events.clone()).map_err(|error| ConsoleError::Thread("input", error))?;
    fetcher::spawn(client, settings.interval, command_inbox, events)
        .map_err(|error| ConsoleError::Thread("fetcher", error))?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let mut app = App::new(&settings.url, settings.interval, OffsetDateTime::now_utc());

    // A signal is noticed within one tick.
    while !app.should_quit() && !signalled.load(Ordering::Relaxed) {
        app.now = OffsetDateTime::now_utc();
        terminal.draw(|frame| ui::render(frame, &app, theme))?;

        // Everything queued is applied before the next frame, so a burst of keys or a
        // backlog after a stall costs one redraw.
        let mut next = match inbox.recv_timeout(TICK) {
            Ok(event) => Some(event),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            // Both threads gone: nothing more can happen.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        while let Some(event) = next {
            if let Some(command) = app.handle(event) {
                // The fetcher only stops when this loop does; a send cannot fail before.
                let _ = commands.send(command);
            }
            next = inbox.try_recv().ok();
        }
    }
    Ok(())
}
