//! The Alerts screen: every alert rule with its state, value, threshold and when it last
//! fired and resolved, and the recent transitions, newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::theme::{Level, Theme};
use super::{format, panel};
use crate::app::App;
use crate::status::{AlertView, StatusReport, Transition};
use time::OffsetDateTime;

/// Inner width from which the table also shows what each alert measures.
const WIDE: u16 = 110;

pub fn render(frame: &mut Frame, area: Rect, app: &App, report: &StatusReport, theme: Theme) {
    let alerts = &report.alerts.alerts;
    let [table_area, recent_area] = Layout::vertical([
        Constraint::Length(alerts.len().max(1) as u16 + 3),
        Constraint::Min(3),
    ])
    .areas(area);
    render_table(frame, table_area, app, report, theme);
    render_recent(frame, recent_area, app, report, theme);
}

fn state_level(state: &str) -> Level {
    match state {
        "firing" => Level::Bad,
        "resolved" | "ok" => Level::Good,
        _ => Level::Idle,
    }
}

fn render_table(frame: &mut Frame, area: Rect, app: &App, report: &StatusReport, theme: Theme) {
    let wide = area.width.saturating_sub(2) >= WIDE;
    // Firing first, then resolved, then the rest, each in the daemon's order.
    let mut alerts: Vec<&AlertView> = report.alerts.alerts.iter().collect();
    alerts.sort_by_key(|alert| match alert.state.as_str() {
        "firing" => 0,
        "resolved" => 1,
        _ => 2,
    });
    let time = |at: &Option<String>| {
        at.as_deref()
            .map_or_else(|| "–".into(), |at| format::timestamp(at, app.now))
    };

    let rows = alerts.into_iter().map(|alert| {
        let level = state_level(&alert.state);
        let breach = alert.value.is_some_and(|value| value > alert.threshold);
        let value = format::alert_figure(&alert.name, alert.value, alert.state == "firing");
        let mut cells = vec![
            Cell::from(theme.badge(level, &alert.state)),
            Cell::from(alert.name.clone()),
            Cell::from(value).style(if breach {
                theme.level(Level::Bad)
            } else {
                theme.muted()
            }),
            Cell::from(format::alert_value(&alert.name, alert.threshold)),
            Cell::from(time(&alert.fired_at)),
            Cell::from(time(&alert.resolved_at)),
        ];
        if wide {
            cells.push(Cell::from(Span::styled(
                alert.summary.clone(),
                theme.muted(),
            )));
        }
        Row::new(cells)
    });

    let mut header = vec!["state", "alert", "value", "threshold", "fired", "resolved"];
    let mut widths = vec![
        Constraint::Length(10),
        Constraint::Length(17),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Length(11),
    ];
    if wide {
        header.push("measures");
        widths.push(Constraint::Min(10));
    }
    let mut title = format!("Alerts · {} firing", report.alerts.firing);
    let window = report.traffic.short.window_seconds;
    if window > 0 {
        title.push_str(&format!(
            " · values over the last {}",
            format::window(window)
        ));
    }
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(theme.muted()))
            .column_spacing(1)
            .block(panel(title, theme)),
        area,
    );
}

fn render_recent(frame: &mut Frame, area: Rect, app: &App, report: &StatusReport, theme: Theme) {
    let recent = &report.alerts.recent;
    let lines: Vec<Line> = if recent.is_empty() {
        vec![Line::styled(
            "No alert has fired since the daemon started.",
            theme.muted(),
        )]
    } else {
        recent
            .iter()
            .map(|transition| transition_line(transition, app.now, theme))
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines).block(panel("Recent transitions, newest first".into(), theme)),
        area,
    );
}

/// `08:12:44    ✗ firing read_latency: 250 ms, above 200 ms`.
pub(super) fn transition_line(
    transition: &Transition,
    now: OffsetDateTime,
    theme: Theme,
) -> Line<'static> {
    let firing = transition.state == "firing";
    Line::from(vec![
        Span::styled(
            format!("{:<11} ", format::timestamp(&transition.at, now)),
            theme.muted(),
        ),
        theme.badge(state_level(&transition.state), &transition.state),
        Span::raw(format!(
            " {}: {}, {} {}",
            transition.name,
            format::alert_figure(&transition.name, transition.value, firing),
            if firing { "above" } else { "within" },
            format::alert_value(&transition.name, transition.threshold)
        )),
    ])
}
