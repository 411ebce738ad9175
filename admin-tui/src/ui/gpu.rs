//! The GPU screen: the model and the device it runs on, NVML's facts (or why there are
//! none), VRAM used as a gauge over the console's own history of it, burn's device memory,
//! and the console's history of the inference p99.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Sparkline, Wrap};

use super::theme::{Level, Theme};
use super::{format, panel, window_title, wrapped_height};
use crate::app::{App, History};
use crate::status::StatusReport;

pub fn render(frame: &mut Frame, area: Rect, app: &App, report: &StatusReport, theme: Theme) {
    let inner_width = area.width.saturating_sub(2);
    let model = model_lines(report, theme);
    let nvml = nvml_lines(report, theme);
    let [model_area, nvml_area, vram_area, p99_area] = Layout::vertical([
        Constraint::Length(wrapped_height(&model, inner_width) + 2),
        Constraint::Length(wrapped_height(&nvml, inner_width) + 2),
        Constraint::Min(5),
        Constraint::Min(5),
    ])
    .areas(area);

    frame.render_widget(
        Paragraph::new(model)
            .wrap(Wrap { trim: false })
            .block(panel("Model".into(), theme)),
        model_area,
    );
    frame.render_widget(
        Paragraph::new(nvml)
            .wrap(Wrap { trim: false })
            .block(panel(format!("GPU facts · {}", source(report)), theme)),
        nvml_area,
    );
    render_vram(frame, vram_area, app, report, theme);
    render_p99(frame, p99_area, app, report, theme);
}

fn source(report: &StatusReport) -> String {
    match report.gpu.source.as_str() {
        "nvml" => "NVML".into(),
        "none" | "" => "no NVML".into(),
        other => other.into(),
    }
}

fn model_lines(report: &StatusReport, theme: Theme) -> Vec<Line<'static>> {
    let label = |text: &str| Span::styled(format!("{text:<8}"), theme.label());
    let model = &report.model;
    let level = match model.state.as_str() {
        "ready" => Level::Good,
        "loading" => Level::Warn,
        "disabled" => Level::Idle,
        _ => Level::Bad,
    };
    let mut lines = Vec::new();
    match &model.summary {
        Some(summary) => {
            lines.push(Line::from(vec![
                label("model"),
                Span::raw(format!("{} ", summary.name)),
                theme.badge(level, &model.state),
            ]));
            lines.push(Line::from(vec![
                label(""),
                Span::styled(
                    format!(
                        "{} · {} dims · {} tokens",
                        summary.revision, summary.dimensions, summary.max_tokens
                    ),
                    theme.muted(),
                ),
            ]));
            let mut device = vec![
                label("device"),
                Span::raw(summary.device.clone()),
                Span::styled(format!(" · backend {}", summary.backend), theme.muted()),
            ];
            if let Some(adapter) = &summary.adapter {
                device.push(Span::styled(" · adapter ", theme.muted()));
                device.push(Span::raw(adapter.clone()));
            }
            lines.push(Line::from(device));
        }
        None => {
            let state = if model.state.is_empty() {
                "unknown"
            } else {
                &model.state
            };
            lines.push(Line::from(vec![label("model"), theme.badge(level, state)]));
        }
    }
    if let Some(detail) = &model.detail {
        lines.push(Line::from(vec![
            label(""),
            Span::styled(detail.clone(), theme.level(Level::Bad)),
        ]));
    }
    lines
}

fn nvml_lines(report: &StatusReport, theme: Theme) -> Vec<Line<'static>> {
    let gpu = &report.gpu;
    let mut lines = Vec::new();
    if let Some(reason) = &gpu.unavailable {
        lines.push(Line::from(vec![
            theme.badge(Level::Idle, "unavailable: "),
            Span::raw(reason.clone()),
        ]));
    }
    if let Some(driver) = &gpu.driver {
        lines.push(Line::from(vec![
            Span::styled("driver ", theme.label()),
            Span::raw(driver.clone()),
        ]));
    }
    for facts in &gpu.gpus {
        let utilization = facts
            .utilization_percent
            .map_or_else(|| "–".into(), |percent| format!("{percent} %"));
        lines.push(Line::from(vec![
            Span::styled(format!("GPU {} ", facts.index), theme.label()),
            Span::raw(facts.name.clone()),
            Span::styled(" · utilisation ", theme.muted()),
            Span::raw(utilization),
            Span::styled(" · memory ", theme.muted()),
            Span::raw(format!(
                "{} of {}",
                format::bytes(facts.memory_used_bytes),
                format::bytes(facts.memory_total_bytes)
            )),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::styled("NVML reports no GPU.", theme.muted()));
    }
    lines
}

fn render_vram(frame: &mut Frame, area: Rect, app: &App, report: &StatusReport, theme: Theme) {
    let threshold = report.alert("gpu_memory").map(|alert| alert.threshold);
    let mut title = "VRAM, all GPUs".to_string();
    if let Some(threshold) = threshold {
        title.push_str(&format!(" · alert above {}", format::percent(threshold)));
    }
    let block = panel(title, theme).title_bottom(Span::styled(" newest right ", theme.muted()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [gauge_area, burn_area, history_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inner);

    match report.gpu.memory() {
        Some((used, total)) => {
            let percent = used as f64 * 100.0 / total as f64;
            let level = match threshold {
                Some(threshold) if percent > threshold => Level::Bad,
                _ => Level::Good,
            };
            let label = format!(
                "{} of {} ({})",
                format::bytes(used),
                format::bytes(total),
                format::percent(percent)
            );
            frame.render_widget(
                Gauge::default()
                    .ratio((percent / 100.0).clamp(0.0, 1.0))
                    .label(label)
                    .use_unicode(true)
                    .gauge_style(theme.level(level)),
                gauge_area,
            );
        }
        None => frame.render_widget(
            Line::styled("no NVML facts: VRAM is not measured", theme.muted()),
            gauge_area,
        ),
    }

    let burn = match &report.model.device_memory {
        Some(memory) => Line::from(vec![
            Span::styled("burn ", theme.label()),
            Span::raw(format!(
                "{} in use · {} reserved",
                format::bytes(memory.in_use_bytes),
                format::bytes(memory.reserved_bytes)
            )),
        ]),
        None => Line::from(vec![
            Span::styled("burn ", theme.label()),
            Span::styled("no device memory: the model is not on a GPU", theme.muted()),
        ]),
    };
    frame.render_widget(burn, burn_area);
    render_history(
        frame,
        history_area,
        &app.vram_history,
        Some(1000),
        "VRAM % over time",
        theme,
    );
}

fn render_p99(frame: &mut Frame, area: Rect, app: &App, report: &StatusReport, theme: Theme) {
    let short = &report.traffic.short;
    let class = short.classes.get("inference");
    let threshold = report
        .alert("inference_latency")
        .map(|alert| alert.threshold);
    let mut title = window_title("Inference p99", short.window_seconds);
    if let Some(threshold) = threshold {
        title.push_str(&format!(" · SLO {}", format::latency(threshold)));
    }
    let block = panel(title, theme).title_bottom(Span::styled(" newest right ", theme.muted()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [now_area, history_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);

    let requests = class.map_or(0, |class| class.requests);
    let p99 = class.and_then(|class| class.p99_seconds);
    let level = match (p99, threshold, requests) {
        (_, _, 0) => Level::Idle,
        (Some(p99), Some(threshold), _) if p99 <= threshold => Level::Good,
        (_, None, _) => Level::Good,
        _ => Level::Bad,
    };
    frame.render_widget(
        Line::from(vec![
            Span::styled("now ", theme.label()),
            Span::styled(format::quantile(p99, requests), theme.level(level)),
            Span::styled(format!(" over {requests} requests"), theme.muted()),
        ]),
        now_area,
    );
    // Scaled to the objective, so a bar at the top is a breach.
    let max = threshold.map(|threshold| (threshold * 1000.0).round() as u64);
    render_history(
        frame,
        history_area,
        &app.inference_p99_history,
        max,
        "p99 over time",
        theme,
    );
}

/// A sparkline of the newest samples that fit, with `caption` when there are none yet.
fn render_history(
    frame: &mut Frame,
    area: Rect,
    history: &History,
    max: Option<u64>,
    caption: &str,
    theme: Theme,
) {
    let samples = history.latest(usize::from(area.width));
    if samples.iter().all(Option::is_none) {
        frame.render_widget(
            Line::styled(format!("{caption}: no samples yet"), theme.muted()),
            area,
        );
        return;
    }
    let mut sparkline = Sparkline::default()
        .data(samples)
        // Gaps without data stay blank: the symbol would fill the whole column.
        .absent_value_symbol(" ")
        .style(theme.label());
    if let Some(max) = max {
        sparkline = sparkline.max(max);
    }
    frame.render_widget(sparkline, area);
}
