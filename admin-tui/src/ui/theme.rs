//! How states look: a symbol and a word always, colour only when the terminal may have it.
//! `NO_COLOR` (https://no-color.org) turns colour off; the symbols and bold or reversed text
//! still tell the states apart.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;

/// How good a figure or state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Good,
    Warn,
    Bad,
    /// Nothing to judge: disabled, idle, no data.
    Idle,
}

impl Level {
    pub fn symbol(self) -> &'static str {
        match self {
            Level::Good => "✓",
            Level::Warn => "!",
            Level::Bad => "✗",
            Level::Idle => "·",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything but the empty string.
    pub fn from_env() -> Theme {
        Theme::new(std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()))
    }

    /// With colour, or (`false`) with symbols, words and attributes alone.
    pub fn new(color: bool) -> Theme {
        Theme { color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    pub fn level(self, level: Level) -> Style {
        match level {
            Level::Good => self.fg(Color::Green),
            Level::Warn => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Level::Bad => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Level::Idle => self.fg(Color::DarkGray),
        }
    }

    /// `symbol text` in the level's style.
    pub fn badge(self, level: Level, text: &str) -> Span<'static> {
        Span::styled(format!("{} {text}", level.symbol()), self.level(level))
    }

    /// Labels and headings.
    pub fn label(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Secondary text: units, explanations.
    pub fn muted(self) -> Style {
        self.fg(Color::DarkGray)
    }

    /// The selected tab: reversed, which reads without colour too.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    /// Data that is no longer live.
    pub fn stale(self) -> Style {
        self.fg(Color::DarkGray).add_modifier(Modifier::DIM)
    }
}
