//! The Backups screen: the store's replication, replica by replica, and the store's own size
//! and write-ahead log.
//!
//! The daemon has no replication yet and always reports an empty list, so this screen says
//! that no replica is configured; it never shows figures the daemon did not send.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::theme::{Level, Theme};
use super::{format, panel};
use crate::status::StatusReport;

pub fn render(frame: &mut Frame, area: Rect, report: &StatusReport, theme: Theme) {
    let replicas = replica_lines(report, theme);
    let store = store_lines(report, theme);
    let [replication_area, store_area, _] = Layout::vertical([
        Constraint::Length(replicas.len() as u16 + 2),
        Constraint::Length(store.len() as u16 + 2),
        Constraint::Min(0),
    ])
    .areas(area);

    frame.render_widget(
        Paragraph::new(replicas)
            .wrap(Wrap { trim: false })
            .block(panel("Replication".into(), theme)),
        replication_area,
    );
    frame.render_widget(
        Paragraph::new(store)
            .wrap(Wrap { trim: false })
            .block(panel("Store".into(), theme)),
        store_area,
    );
}

fn replica_lines(report: &StatusReport, theme: Theme) -> Vec<Line<'static>> {
    let replicas = &report.replication.replicas;
    if replicas.is_empty() {
        return vec![
            Line::from(theme.badge(Level::Idle, "no replicas configured")),
            Line::styled(
                "This daemon reports no replication of its store.",
                theme.muted(),
            ),
        ];
    }
    // Their shape is not defined yet: each is shown as the daemon sent it.
    replicas
        .iter()
        .enumerate()
        .map(|(index, replica)| {
            Line::from(vec![
                Span::styled(format!("replica {} ", index + 1), theme.label()),
                Span::raw(replica.to_string()),
            ])
        })
        .collect()
}

fn store_lines(report: &StatusReport, theme: Theme) -> Vec<Line<'static>> {
    let store = &report.store;
    let label = |text: &str| Span::styled(format!("{text:<10}"), theme.label());
    vec![
        Line::from(vec![label("database"), Span::raw(store.path.clone())]),
        Line::from(vec![
            label("size"),
            Span::raw(format::bytes(store.size_bytes)),
        ]),
        Line::from(vec![
            label("WAL"),
            Span::raw(format::bytes(store.wal_bytes)),
            Span::styled(" the write-ahead log file", theme.muted()),
        ]),
        Line::from(vec![
            label("schema"),
            Span::raw(format!("version {}", store.schema_version)),
        ]),
    ]
}
