//! Keyboard and terminal input: crossterm's event reader on a thread of its own, turned into
//! the few keys the console knows and a note that the terminal was resized.

use std::io;
use std::sync::mpsc::Sender;
use std::thread;

use crossterm::event::{self, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::Event;

/// The keys the console acts on; the rest of the keyboard is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Tab,
    BackTab,
    Left,
    Right,
    Esc,
    CtrlC,
}

/// The console's key for a key press, if it has one.
pub fn key(event: KeyEvent) -> Option<Key> {
    // Terminals that report releases and repeats (kitty's protocol) send those too.
    if event.kind != KeyEventKind::Press {
        return None;
    }
    Some(match event.code {
        // Raw mode turns Ctrl-C into a key rather than a signal.
        KeyCode::Char('c') if event.modifiers.contains(KeyModifiers::CONTROL) => Key::CtrlC,
        KeyCode::Char(_)
            if event
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            return None;
        }
        KeyCode::Char(char) => Key::Char(char),
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Esc => Key::Esc,
        _ => return None,
    })
}

/// Reads the terminal's events until the console stops listening, sending keys and resizes
/// to `events`.
pub fn spawn_reader(events: Sender<Event>) -> io::Result<()> {
    thread::Builder::new()
        .name("console-input".into())
        .spawn(move || {
            loop {
                let next = match event::read() {
                    Ok(event::Event::Key(press)) => key(press).map(Event::Key),
                    Ok(event::Event::Resize(..)) => Some(Event::Resize),
                    Ok(_) => None,
                    // The terminal is gone (hung up): there will be no more keys.
                    Err(_) => return,
                };
                if let Some(next) = next
                    && events.send(next).is_err()
                {
                    return;
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Option<Key> {
        key(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn keys_the_console_knows() {
        assert_eq!(
            press(KeyCode::Char('q'), KeyModifiers::NONE),
            Some(Key::Char('q'))
        );
        assert_eq!(
            press(KeyCode::Char('R'), KeyModifiers::SHIFT),
            Some(Key::Char('R'))
        );
        assert_eq!(press(KeyCode::Tab, KeyModifiers::NONE), Some(Key::Tab));
        assert_eq!(
            press(KeyCode::BackTab, KeyModifiers::SHIFT),
            Some(Key::BackTab)
        );
        assert_eq!(press(KeyCode::Left, KeyModifiers::NONE), Some(Key::Left));
        assert_eq!(press(KeyCode::Right, KeyModifiers::NONE), Some(Key::Right));
        assert_eq!(press(KeyCode::Esc, KeyModifiers::NONE), Some(Key::Esc));
        assert_eq!(
            press(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Key::CtrlC)
        );
    }

    #[test]
    fn other_keys_and_releases_are_ignored() {
        assert_eq!(press(KeyCode::Up, KeyModifiers::NONE), None);
        assert_eq!(press(KeyCode::F(5), KeyModifiers::NONE), None);
        // Ctrl-R and Alt-q must not act as R and q.
        assert_eq!(press(KeyCode::Char('r'), KeyModifiers::CONTROL), None);
        assert_eq!(press(KeyCode::Char('q'), KeyModifiers::ALT), None);
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(key(release), None);
    }
}
