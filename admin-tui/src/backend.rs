//! The real terminal: a ratatui backend that draws through crossterm, and the guard that
//! switches the terminal to raw mode on the alternate screen and always back again, on a
//! normal exit, an error, or a panic.
//!
//! ratatui's own crossterm backend is not used because it asks for crossterm's default
//! features, which re-feature crates that burn depends on (see Cargo.toml).

use std::io::{self, Write};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::style::{
    Attribute, Color as TermColor, Colors, Print, SetAttribute, SetBackgroundColor, SetColors,
    SetForegroundColor,
};
use crossterm::terminal::{
    self, Clear, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{execute, queue};
use ratatui::backend::{Backend, ClearType, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use ratatui::style::{Color, Modifier};

/// Draws ratatui's buffers on a crossterm terminal written through `writer`.
pub struct CrosstermBackend<W: Write> {
    writer: W,
    /// Where the terminal's cursor was left, known without asking the terminal (a round trip
    /// through its input, which the input thread owns).
    cursor: Position,
}

impl<W: Write> CrosstermBackend<W> {
    pub fn new(writer: W) -> CrosstermBackend<W> {
        CrosstermBackend {
            writer,
            cursor: Position::ORIGIN,
        }
    }
}

impl<W: Write> Backend for CrosstermBackend<W> {
    type Error = io::Error;

    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        let mut fg = Color::Reset;
        let mut bg = Color::Reset;
        let mut modifier = Modifier::empty();
        let mut next: Option<Position> = None;
        for (x, y, cell) in content {
            // Cells come in order; only a gap (an unchanged cell, a wide glyph) needs a move.
            if next != Some(Position { x, y }) {
                queue!(self.writer, MoveTo(x, y))?;
            }
            if cell.modifier != modifier {
                // Resetting the attributes resets the colours too; they are sent again below.
                queue!(self.writer, SetAttribute(Attribute::Reset))?;
                for attribute in attributes(cell.modifier) {
                    queue!(self.writer, SetAttribute(attribute))?;
                }
                modifier = cell.modifier;
                fg = Color::Reset;
                bg = Color::Reset;
            }
            if cell.fg != fg || cell.bg != bg {
                let colors = Colors::new(term_color(cell.fg), term_color(cell.bg));
                queue!(self.writer, SetColors(colors))?;
                fg = cell.fg;
                bg = cell.bg;
            }
            queue!(self.writer, Print(cell.symbol()))?;
            let after = Position { x: x + 1, y };
            next = Some(after);
            self.cursor = after;
        }
        queue!(
            self.writer,
            SetForegroundColor(TermColor::Reset),
            SetBackgroundColor(TermColor::Reset),
            SetAttribute(Attribute::Reset),
        )
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        execute!(self.writer, Hide)
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        execute!(self.writer, Show)
    }

    fn get_cursor_position(&mut self) -> io::Result<Position> {
        Ok(self.cursor)
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        let position = position.into();
        execute!(self.writer, MoveTo(position.x, position.y))?;
        self.cursor = position;
        Ok(())
    }

    fn clear(&mut self) -> io::Result<()> {
        self.clear_region(ClearType::All)
    }

    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        let clear = match clear_type {
            ClearType::All => terminal::ClearType::All,
            ClearType::AfterCursor => terminal::ClearType::FromCursorDown,
            ClearType::BeforeCursor => terminal::ClearType::FromCursorUp,
            ClearType::CurrentLine => terminal::ClearType::CurrentLine,
            ClearType::UntilNewLine => terminal::ClearType::UntilNewLine,
        };
        execute!(self.writer, Clear(clear))
    }

    fn size(&self) -> io::Result<Size> {
        let (width, height) = terminal::size()?;
        Ok(Size { width, height })
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        let size = terminal::window_size()?;
        Ok(WindowSize {
            columns_rows: Size {
                width: size.columns,
                height: size.rows,
            },
            pixels: Size {
                width: size.width,
                height: size.height,
            },
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// The terminal attributes that make up `modifier`.
fn attributes(modifier: Modifier) -> Vec<Attribute> {
    [
        (Modifier::BOLD, Attribute::Bold),
        (Modifier::DIM, Attribute::Dim),
        (Modifier::ITALIC, Attribute::Italic),
        (Modifier::UNDERLINED, Attribute::Underlined),
        (Modifier::SLOW_BLINK, Attribute::SlowBlink),
        (Modifier::RAPID_BLINK, Attribute::RapidBlink),
        (Modifier::REVERSED, Attribute::Reverse),
        (Modifier::HIDDEN, Attribute::Hidden),
        (Modifier::CROSSED_OUT, Attribute::CrossedOut),
    ]
    .into_iter()
    .filter(|(flag, _)| modifier.contains(*flag))
    .map(|(_, attribute)| attribute)
    .collect()
}

fn term_color(color: Color) -> TermColor {
    match color {
        Color::Reset => TermColor::Reset,
        Color::Black => TermColor::Black,
        Color::Red => TermColor::DarkRed,
        Color::Green => TermColor::DarkGreen,
        Color::Yellow => TermColor::DarkYellow,
        Color::Blue => TermColor::DarkBlue,
        Color::Magenta => TermColor::DarkMagenta,
        Color::Cyan => TermColor::DarkCyan,
        Color::Gray => TermColor::Grey,
        Color::DarkGray => TermColor::DarkGrey,
        Color::LightRed => TermColor::Red,
        Color::LightGreen => TermColor::Green,
        Color::LightYellow => TermColor::Yellow,
        Color::LightBlue => TermColor::Blue,
        Color::LightMagenta => TermColor::Magenta,
        Color::LightCyan => TermColor::Cyan,
        Color::White => TermColor::White,
        Color::Rgb(r, g, b) => TermColor::Rgb { r, g, b },
        Color::Indexed(index) => TermColor::AnsiValue(index),
    }
}

/// The terminal in the console's mode: raw input, the alternate screen, no cursor. Dropping
/// it restores the terminal; so does a panic, once [`TerminalGuard::enter`] has run.
pub struct TerminalGuard(());

/// Whether the terminal is in the console's mode, so that it is restored exactly once.
static ACTIVE: AtomicBool = AtomicBool::new(false);

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        // From here on the guard exists, so a failure below still restores the terminal.
        let guard = TerminalGuard(());
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back, once: after a panic both the hook and the unwinding guard call
/// this, and leaving the alternate screen twice would move the cursor back over the panic's
/// message.
fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    // Nothing to do about a failure while giving the terminal back: report nothing.
    let _ = execute!(
        io::stdout(),
        SetAttribute(Attribute::Reset),
        Show,
        LeaveAlternateScreen
    );
    let _ = disable_raw_mode();
}

/// Restores the terminal before the default hook prints the panic, so the message lands on
/// the normal screen, readable, instead of in a raw alternate screen that is about to vanish.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            report(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::style::{Style, Stylize};
    use ratatui::text::Line;

    use super::*;

    /// The bytes a draw of `line` at the top left sends to the terminal.
    fn drawn(line: Line<'_>) -> String {
        let mut bytes = Vec::new();
        {
            let backend = CrosstermBackend::new(&mut bytes);
            let mut terminal = Terminal::with_options(
                backend,
                ratatui::TerminalOptions {
                    viewport: ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, 6, 1)),
                },
            )
            .unwrap();
            terminal
                .draw(|frame| frame.render_widget(line, frame.area()))
                .unwrap();
        }
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn draws_text_with_its_attributes_and_colours() {
        let output = drawn(Line::from(vec![
            "ok".green(),
            " ".into(),
            "bad".red().bold(),
        ]));
        // The blank between the words is unchanged, so the second word needs a move.
        assert!(output.starts_with("\x1b[1;1H"), "{output:?}");
        assert!(output.contains("\x1b[1;4H"), "{output:?}");
        assert!(output.contains("\x1b[38;5;2;49mok"), "green: {output:?}");
        assert!(
            output.contains("\x1b[0m\x1b[1m\x1b[38;5;1;49mbad"),
            "bold red: {output:?}"
        );
        // The terminal's style is reset after the frame.
        assert!(output.contains("bad\x1b[39m\x1b[49m\x1b[0m"), "{output:?}");
    }

    #[test]
    fn plain_text_sends_no_colour() {
        let output = drawn(Line::styled("plain", Style::new()));
        assert!(!output.contains("\x1b[38;"), "{output:?}");
        assert!(output.contains("plain"));
    }
}
