//! The Overview screen: the readiness checks, the inference queue and host, traffic per route
//! class against the SLOs (thresholds taken from the daemon's alert rules), and the alerts
//! that fire now.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::theme::{Level, Theme};
use super::{alerts, format, panel};
use crate::app::App;
use crate::status::{ClassSummary, StatusReport, TrafficSummary};

/// The order classes are listed in; classes a newer daemon adds follow.
const CLASSES: [&str; 4] = ["read", "write", "inference", "admin"];
/// Inner width from which the table also shows the long window.
const WIDE: u16 = 100;

pub fn render(frame: &mut Frame, area: Rect, app: &App, report: &StatusReport, theme: Theme) {
    let health = health_lines(report, theme);
    let traffic_rows = report.traffic.short.classes.len().max(CLASSES.len()) as u16 + 1;
    let [health_area, traffic_area, alerts_area] = Layout::vertical([
        Constraint::Length(health.len() as u16 + 2),
        Constraint::Length(traffic_rows + 3),
        Constraint::Min(3),
    ])
    .areas(area);

    frame.render_widget(
        Paragraph::new(health)
            .wrap(Wrap { trim: false })
            .block(panel("Health".into(), theme)),
        health_area,
    );
    render_traffic(frame, traffic_area, report, theme);
    frame.render_widget(
        Paragraph::new(firing_lines(app, report, theme))
            .wrap(Wrap { trim: false })
            .block(panel("Active alerts".into(), theme)),
        alerts_area,
    );
}

fn check_level(status: &str) -> Level {
    match status {
        "ok" | "ready" => Level::Good,
        "loading" => Level::Warn,
        "disabled" => Level::Idle,
        _ => Level::Bad,
    }
}

fn health_lines(report: &StatusReport, theme: Theme) -> Vec<Line<'static>> {
    let label = |text: &str| Span::styled(format!("{text:<7}"), theme.label());
    let health = &report.health;
    let mut checks = vec![
        label("checks"),
        theme.badge(
            check_level(&health.status),
            &health.status.replace('_', " "),
        ),
    ];
    let mut details = Vec::new();
    for (name, check) in &health.checks {
        checks.push(Span::styled(format!("   {name} "), theme.muted()));
        checks.push(theme.badge(check_level(&check.status), &check.status));
        if let Some(detail) = &check.detail {
            details.push(Line::from(vec![
                label(""),
                Span::styled(format!("{name}: {detail}"), theme.level(Level::Bad)),
            ]));
        }
    }

    let queue = &report.queue;
    let queue_level = if queue.capacity > 0 && queue.queued * 10 >= queue.capacity * 9 {
        Level::Bad
    } else {
        Level::Good
    };
    let queue_line = Line::from(vec![
        label("queue"),
        Span::styled(
            format!("{} of {}", queue.queued, queue.capacity),
            theme.level(queue_level),
        ),
        Span::styled(" inference inputs waiting or running", theme.muted()),
    ]);

    let host = &report.host;
    let cpu_threshold = report.alert("host_cpu").map(|alert| alert.threshold);
    let cpu = match (host.cpu_percent, cpu_threshold) {
        (Some(cpu), Some(threshold)) if cpu > threshold => {
            Span::styled(format::percent(cpu), theme.level(Level::Bad))
        }
        (Some(cpu), _) => Span::raw(format::percent(cpu)),
        (None, _) => Span::styled("not sampled yet", theme.muted()),
    };
    let mut host_line = vec![label("host"), Span::raw("CPU "), cpu];
    if let Some(threshold) = cpu_threshold {
        host_line.push(Span::styled(
            format!(" (alert above {})", format::percent(threshold)),
            theme.muted(),
        ));
    }
    let process = &host.process;
    if let Some(resident) = process.resident_bytes {
        host_line.push(Span::raw(format!(" · RSS {}", format::bytes(resident))));
    }
    if let (Some(open), Some(max)) = (process.open_fds, process.max_fds) {
        host_line.push(Span::raw(format!(" · files {open} of {max}")));
    }

    let mut lines = vec![Line::from(checks)];
    lines.extend(details);
    lines.extend([queue_line, Line::from(host_line)]);
    lines
}

/// The classes in display order: the known ones, then any others.
fn classes(summary: &TrafficSummary) -> Vec<String> {
    let mut names: Vec<String> = CLASSES.iter().map(|name| name.to_string()).collect();
    names.extend(
        summary
            .classes
            .keys()
            .filter(|name| !CLASSES.contains(&name.as_str()))
            .cloned(),
    );
    names
}

fn render_traffic(frame: &mut Frame, area: Rect, report: &StatusReport, theme: Theme) {
    let short = &report.traffic.short;
    let long = &report.traffic.long;
    let wide = area.width.saturating_sub(2) >= WIDE;
    let error_threshold = report.alert("error_rate").map(|alert| alert.threshold);

    let mut header = vec![
        "class", "req/s", "requests", "errors", "err rate", "p50", "p99", "SLO", "state",
    ];
    let mut widths = vec![
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(9),
    ];
    if wide {
        // The long window's columns, after a rule; the panel's title names both windows.
        header.extend(["│", "req/s", "p99"]);
        widths.extend([
            Constraint::Length(1),
            Constraint::Length(9),
            Constraint::Length(8),
        ]);
    }

    let mut rows: Vec<Row> = classes(short)
        .into_iter()
        .map(|name| {
            let empty = ClassSummary::default();
            let class = short.classes.get(&name).unwrap_or(&empty);
            let p99_threshold = report
                .alert(&format!("{name}_latency"))
                .map(|alert| alert.threshold);
            let error_rate =
                (class.requests > 0).then(|| class.errors as f64 / class.requests as f64);
            let verdict = Verdict::of(class, error_rate, p99_threshold, error_threshold);
            let (state, level) = verdict.state();
            let flag = |bad: bool| {
                if bad {
                    theme.level(Level::Bad)
                } else {
                    Style::new()
                }
            };
            let mut cells = vec![
                Cell::from(name.clone()),
                Cell::from(format::rate(
                    class.requests as f64 / short.window_seconds.max(1) as f64,
                )),
                Cell::from(class.requests.to_string()),
                Cell::from(class.errors.to_string()),
                Cell::from(error_rate.map_or_else(|| "–".into(), format::fraction))
                    .style(flag(verdict.failing)),
                Cell::from(format::quantile(class.p50_seconds, class.requests)),
                Cell::from(format::quantile(class.p99_seconds, class.requests))
                    .style(flag(verdict.slow)),
                Cell::from(p99_threshold.map_or_else(|| "–".into(), format::latency)),
                Cell::from(theme.badge(level, state)),
            ];
            if wide {
                let long_class = long.classes.get(&name).unwrap_or(&empty);
                cells.extend([
                    Cell::from("│"),
                    Cell::from(format::rate(
                        long_class.requests as f64 / long.window_seconds.max(1) as f64,
                    )),
                    Cell::from(format::quantile(
                        long_class.p99_seconds,
                        long_class.requests,
                    )),
                ]);
            }
            Row::new(cells)
        })
        .collect();

    let total_level = match (short.error_rate, error_threshold) {
        (None, _) => Level::Idle,
        (Some(rate), Some(threshold)) if rate > threshold => Level::Bad,
        (Some(_), _) => Level::Good,
    };
    let total_state = match total_level {
        Level::Idle => "idle",
        Level::Bad => "errors",
        _ => "ok",
    };
    let mut total = vec![
        Cell::from("all"),
        Cell::from(format::rate(short.requests_per_second)),
        Cell::from(short.requests.to_string()),
        Cell::from(short.errors.to_string()),
        Cell::from(
            short
                .error_rate
                .map_or_else(|| "–".into(), format::fraction),
        )
        .style(theme.level(total_level)),
        Cell::from(""),
        Cell::from(""),
        Cell::from(error_threshold.map_or_else(|| "–".into(), format::fraction)),
        Cell::from(theme.badge(total_level, total_state)),
    ];
    if wide {
        total.extend([
            Cell::from("│"),
            Cell::from(format::rate(long.requests_per_second)),
            Cell::from(""),
        ]);
    }
    rows.push(Row::new(total).style(theme.label().remove_modifier(Modifier::BOLD)));

    let mut title = super::window_title("Traffic", short.window_seconds);
    if wide {
        title.push_str(&format!(" │ last {}", format::window(long.window_seconds)));
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.muted()))
        .column_spacing(1)
        .block(panel(title, theme));
    frame.render_widget(table, area);
}

/// A class against its objectives.
struct Verdict {
    idle: bool,
    /// p99 above its objective.
    slow: bool,
    /// Error rate above the error-rate objective (which the daemon applies to all classes
    /// together; per class it shows where the errors are).
    failing: bool,
}

impl Verdict {
    fn of(
        class: &ClassSummary,
        error_rate: Option<f64>,
        p99_threshold: Option<f64>,
        error_threshold: Option<f64>,
    ) -> Verdict {
        let idle = class.requests == 0;
        // No p99 with requests means past the last bucket: slower than any objective.
        let slow = !idle
            && match (class.p99_seconds, p99_threshold) {
                (Some(p99), Some(threshold)) => p99 > threshold,
                (None, Some(_)) => true,
                (_, None) => false,
            };
        let failing = matches!(
            (error_rate, error_threshold),
            (Some(rate), Some(limit)) if rate > limit
        );
        Verdict {
            idle,
            slow,
            failing,
        }
    }

    fn state(&self) -> (&'static str, Level) {
        match self {
            Verdict { idle: true, .. } => ("idle", Level::Idle),
            Verdict { slow: true, .. } => ("slow", Level::Bad),
            Verdict { failing: true, .. } => ("errors", Level::Bad),
            _ => ("ok", Level::Good),
        }
    }
}

/// The alerts firing now; below them, where there is room, the recent transitions.
fn firing_lines(app: &App, report: &StatusReport, theme: Theme) -> Vec<Line<'static>> {
    let mut lines: Vec<Line> = report
        .alerts
        .alerts
        .iter()
        .filter(|alert| alert.state == "firing")
        .map(|alert| {
            let since = alert
                .fired_at
                .as_deref()
                .map(|at| format!(" · since {}", format::timestamp(at, app.now)))
                .unwrap_or_default();
            Line::from(vec![
                theme.badge(Level::Bad, &alert.name),
                Span::raw(format!(
                    " {}, above {}",
                    format::alert_figure(&alert.name, alert.value, true),
                    format::alert_value(&alert.name, alert.threshold)
                )),
                Span::styled(since, theme.muted()),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(theme.badge(Level::Good, "none firing")));
    }
    let recent = &report.alerts.recent;
    if !recent.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled("Recent transitions", theme.muted()));
        lines.extend(
            recent
                .iter()
                .map(|transition| alerts::transition_line(transition, app.now, theme)),
        );
    }
    lines
}
