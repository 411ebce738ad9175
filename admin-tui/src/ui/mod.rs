//! Drawing the console: the frame around every screen (header, tabs, connection line, key
//! hints), the screens themselves (one module each), and the dialogs over them.
//!
//! Everything here draws the [`App`] as it is, at whatever size the terminal has: 80×24 is
//! the smallest the layouts are made for, and the screens grow histories and extra columns
//! into more room.

mod alerts;
mod backups;
pub mod format;
mod gpu;
mod overview;
pub mod theme;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Tabs, Wrap};

use crate::app::{App, Connection, Overlay, Tab};
use crate::status::StatusReport;
use theme::{Level, Theme};

/// Draws the whole console.
pub fn render(frame: &mut Frame, app: &App, theme: Theme) {
    let area = frame.area();
    let connection = connection_line(app, theme);
    // A disconnection's reason gets up to three lines, so that it can be read in full.
    let connection_height = wrapped_height(std::slice::from_ref(&connection), area.width).min(3);
    let [header, tabs, status, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(connection_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);

    frame.render_widget(header_line(app, theme), header);
    frame.render_widget(tab_bar(app, theme), tabs);
    frame.render_widget(
        Paragraph::new(connection).wrap(Wrap { trim: false }),
        status,
    );
    render_body(frame, body, app, theme);
    frame.render_widget(footer_line(app, theme), footer);

    if let Some(overlay) = &app.overlay {
        render_overlay(frame, area, app, overlay, theme);
    }
}

fn header_line(app: &App, theme: Theme) -> Line<'static> {
    let Some((_, report)) = &app.last else {
        return Line::styled(" Nexus Canvas console", theme.label());
    };
    let separator = || Span::styled(" · ", theme.muted());
    let mut spans = vec![Span::styled(
        format!(" nexus-canvasd {}", report.version),
        theme.label(),
    )];
    let revision: String = report.git_revision.chars().take(8).collect();
    if !revision.is_empty() {
        spans.push(Span::styled(format!(" ({revision})"), theme.muted()));
    }
    spans.extend([
        separator(),
        Span::raw(format!("up {}", format::duration(report.uptime_seconds))),
        separator(),
    ]);
    let ready = report.health.status == "ready";
    spans.push(theme.badge(
        if ready { Level::Good } else { Level::Bad },
        &report.health.status.replace('_', " "),
    ));
    spans.push(separator());
    spans.push(match report.alerts.firing {
        0 => theme.badge(Level::Good, "no alerts firing"),
        1 => theme.badge(Level::Bad, "1 alert firing"),
        firing => theme.badge(Level::Bad, &format!("{firing} alerts firing")),
    });
    Line::from(spans)
}

fn tab_bar(app: &App, theme: Theme) -> Tabs<'static> {
    let firing = app
        .last
        .as_ref()
        .map_or(0, |(_, report)| report.alerts.firing);
    let titles = Tab::ALL.iter().enumerate().map(|(index, tab)| {
        let mut title = vec![Span::raw(format!("{} {}", index + 1, tab.title()))];
        if *tab == Tab::Alerts && firing > 0 {
            title.push(Span::styled(
                format!(" {}{firing}", Level::Bad.symbol()),
                theme.level(Level::Bad),
            ));
        }
        Line::from(title)
    });
    let selected = Tab::ALL.iter().position(|tab| *tab == app.tab);
    Tabs::new(titles)
        .select(selected)
        .highlight_style(theme.selected())
        .divider("│")
}

/// Live, paused, connecting, or disconnected since when and why.
fn connection_line(app: &App, theme: Theme) -> Line<'static> {
    let interval = format_interval(app);
    let updated = app
        .last
        .as_ref()
        .map(|(at, _)| format::time_of_day(*at, app.now));
    let mut spans = match &app.connection {
        Connection::Connecting => vec![
            theme.badge(Level::Idle, "connecting to"),
            Span::raw(format!(" {}", app.url)),
        ],
        Connection::Connected if app.paused => vec![
            theme.badge(Level::Warn, "paused"),
            Span::raw(format!(" {}", app.url)),
            Span::styled(
                format!(" · data from {} · p resumes", updated.unwrap_or_default()),
                theme.muted(),
            ),
        ],
        Connection::Connected => vec![
            theme.badge(Level::Good, "live"),
            Span::raw(format!(" {}", app.url)),
            Span::styled(
                format!(
                    " · updated {} · every {interval}",
                    updated.unwrap_or_default()
                ),
                theme.muted(),
            ),
        ],
        Connection::Disconnected { since, reason } => {
            let retry = if app.paused {
                " · paused, r retries".to_string()
            } else {
                format!(" · retrying every {interval}")
            };
            vec![
                theme.badge(
                    Level::Bad,
                    &format!(
                        "disconnected since {} ({}):",
                        format::time_of_day(*since, app.now),
                        format::age(*since, app.now)
                    ),
                ),
                Span::raw(format!(" {reason}")),
                Span::styled(retry, theme.muted()),
            ]
        }
    };
    spans.insert(0, Span::raw(" "));
    Line::from(spans)
}

fn format_interval(app: &App) -> String {
    let millis = app.interval.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{} s", millis / 1000)
    } else {
        format!("{:.1} s", app.interval.as_secs_f64())
    }
}

fn footer_line(app: &App, theme: Theme) -> Line<'static> {
    let pause = if app.paused { "resume" } else { "pause" };
    let keys = [
        ("q", "quit"),
        ("?", "help"),
        ("←→", "screens"),
        ("1-4", "jump"),
        ("r", "refresh"),
        ("p", pause),
        ("R", "reload config"),
    ];
    let mut spans = vec![Span::raw(" ")];
    for (key, action) in keys {
        spans.push(Span::styled(key, theme.label()));
        spans.push(Span::styled(format!(" {action}  "), theme.muted()));
    }
    Line::from(spans)
}

fn render_body(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some((_, report)) = &app.last else {
        let waiting = match app.connection {
            Connection::Disconnected { .. } => "No status yet: the daemon has not answered.",
            _ => "Waiting for the daemon's first status document…",
        };
        frame.render_widget(
            Paragraph::new(Line::styled(waiting, theme.muted())).block(Block::bordered()),
            area,
        );
        return;
    };
    render_screen(frame, area, app, report, theme);
    if matches!(app.connection, Connection::Disconnected { .. }) {
        // The last figures stay for reference, visibly not live.
        frame.buffer_mut().set_style(area, theme.stale());
    }
}

fn render_screen(frame: &mut Frame, area: Rect, app: &App, report: &StatusReport, theme: Theme) {
    match app.tab {
        Tab::Overview => overview::render(frame, area, app, report, theme),
        Tab::Gpu => gpu::render(frame, area, app, report, theme),
        Tab::Backups => backups::render(frame, area, report, theme),
        Tab::Alerts => alerts::render(frame, area, app, report, theme),
    }
}

/// The rows `lines` take in `width` columns when wrapped at spaces, as `Paragraph` wraps them;
/// panels whose text may wrap are sized with it.
fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let width = usize::from(width.max(1));
    let rows: usize = lines
        .iter()
        .map(|line| {
            let text: String = line
                .spans
                .iter()
                .map(|span| span.content.as_ref())
                .collect();
            let (mut rows, mut column) = (1, 0);
            for word in text.split(' ') {
                let length = word.chars().count();
                if column == 0 {
                    column = length;
                } else if column + 1 + length <= width {
                    column += 1 + length;
                } else {
                    rows += 1;
                    column = length;
                }
                // A word longer than the line is broken across rows.
                while column > width {
                    rows += 1;
                    column -= width;
                }
            }
            rows
        })
        .sum();
    u16::try_from(rows).unwrap_or(u16::MAX)
}

/// A panel's title: `what`, and the window it covers when the daemon said.
fn window_title(what: &str, window_seconds: u64) -> String {
    if window_seconds == 0 {
        what.to_string()
    } else {
        format!("{what} · last {}", format::window(window_seconds))
    }
}

/// A bordered block with a title, the frame of every panel.
fn panel(title: String, theme: Theme) -> Block<'static> {
    Block::bordered().title(Span::styled(format!(" {title} "), theme.label()))
}

fn render_overlay(frame: &mut Frame, area: Rect, app: &App, overlay: &Overlay, theme: Theme) {
    let key = |key: &'static str| Span::styled(key, theme.label());
    let (title, lines): (&str, Vec<Line>) = match overlay {
        Overlay::Help => (
            "Keys",
            [
                ("Tab  →", "next screen"),
                ("Shift-Tab  ←", "previous screen"),
                ("1 2 3 4", "Overview, GPU, Backups, Alerts"),
                ("r", "refresh now"),
                ("p", "pause or resume refreshing"),
                ("R", "reload the daemon's configuration (asks first)"),
                ("?", "this help"),
                ("q  Esc", "quit (Esc closes a dialog first)"),
                ("Ctrl-C", "quit at once"),
            ]
            .into_iter()
            .map(|(keys, what)| Line::from(vec![key(keys), Span::raw(format!(": {what}"))]))
            .chain([
                Line::raw(""),
                Line::styled("Any key closes this help.", theme.muted()),
            ])
            .collect(),
        ),
        Overlay::ConfirmReload => (
            "Reload configuration",
            vec![
                Line::raw(format!(
                    "Ask the daemon at {} to read its configuration again?",
                    app.url
                )),
                Line::styled(
                    "log.level and [alerts] apply at once; other changed sections need a \
                     restart. An invalid file is refused and the running configuration stays.",
                    theme.muted(),
                ),
                Line::raw(""),
                Line::from(vec![
                    key("y"),
                    Span::raw(" reload    "),
                    key("n"),
                    Span::raw(" / "),
                    key("Esc"),
                    Span::raw(" cancel"),
                ]),
            ],
        ),
        Overlay::Reloading => ("Reload configuration", vec![Line::raw("Reloading…")]),
        Overlay::Reloaded(Ok(report)) => {
            let list = |names: &[String]| {
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            };
            (
                "Reload configuration",
                vec![
                    Line::from(theme.badge(Level::Good, "reloaded")),
                    Line::raw(format!("applied: {}", list(&report.applied))),
                    Line::raw(format!("needs a restart: {}", list(&report.needs_restart))),
                    Line::raw(""),
                    Line::styled("Any key closes this.", theme.muted()),
                ],
            )
        }
        Overlay::Reloaded(Err(reason)) => (
            "Reload configuration",
            vec![
                Line::from(theme.badge(Level::Bad, "not reloaded")),
                Line::raw(reason.clone()),
                Line::styled("The daemon keeps its running configuration.", theme.muted()),
                Line::raw(""),
                Line::styled("Any key closes this.", theme.muted()),
            ],
        ),
    };

    let width = area.width.saturating_sub(4).min(72);
    let height = (wrapped_height(&lines, width.saturating_sub(2)) + 2).min(area.height);
    let popup = area.centered(Constraint::Length(width), Constraint::Length(height));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(panel(title.to_string(), theme)),
        popup,
    );
}
