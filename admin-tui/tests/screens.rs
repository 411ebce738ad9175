//! Every screen and dialog drawn on ratatui's `TestBackend` from fixed status documents
//! (`fixtures/`: one from a real daemon, and alerting and empty variants derived from it),
//! at 80×24 and at 120×40, and compared with the expected text in `snapshots/`.
//!
//! After an intended change of the screens, run with `UPDATE_SNAPSHOTS=1` to rewrite the
//! snapshots, and review their diff. Beside the snapshots, each test asserts the lines that
//! matter, so that a careless update cannot lose them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nexus_canvas_console::app::{App, Event, Tab};
use nexus_canvas_console::client::ClientError;
use nexus_canvas_console::input::Key;
use nexus_canvas_console::status::{ReloadReport, StatusReport};
use nexus_canvas_console::ui::{self, theme::Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use time::OffsetDateTime;
use time::macros::datetime;

const SMALL: (u16, u16) = (80, 24);
const LARGE: (u16, u16) = (120, 40);
/// The console's clock in every test: a few seconds after the live fixture was fetched.
const NOW: OffsetDateTime = datetime!(2026-12-04 08:16:10 UTC);
const FETCHED: OffsetDateTime = datetime!(2026-12-04 08:16:09 UTC);

fn fixture(name: &str) -> StatusReport {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An app that received `report`, on `tab`.
fn app_with(report: StatusReport, tab: Tab) -> App {
    let mut app = App::new("http://127.0.0.1:8000", Duration::from_secs(1), NOW);
    app.handle(Event::Status {
        at: FETCHED,
        report: Box::new(report),
    });
    app.tab = tab;
    app
}

/// The alerting document, received 40 times with VRAM and the inference p99 moving, so the
/// histories have something to draw.
fn alerting_app(tab: Tab) -> App {
    let mut app = App::new("http://127.0.0.1:8000", Duration::from_secs(1), NOW);
    let base = fixture("status-alerting");
    for step in 0..40u64 {
        let mut report = base.clone();
        let gpu = &mut report.gpu.gpus[0];
        gpu.memory_used_bytes = gpu.memory_total_bytes / 100 * (60 + step % 30);
        let inference = report.traffic.short.classes.get_mut("inference").unwrap();
        inference.p99_seconds = (step % 10 != 9).then_some(0.5 * (step % 8 + 1) as f64);
        if step == 39 {
            report = base.clone();
        }
        app.handle(Event::Status {
            at: FETCHED,
            report: Box::new(report),
        });
    }
    app.tab = tab;
    app
}

fn draw(app: &App, (width, height): (u16, u16), theme: Theme) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| ui::render(frame, app, theme))
        .unwrap();
    terminal.backend().buffer().clone()
}

/// The buffer's text, one line per row, without trailing blanks.
fn text(buffer: &Buffer) -> String {
    let width = usize::from(buffer.area.width);
    buffer
        .content
        .chunks(width)
        .map(|row| {
            let line: String = row.iter().map(|cell| cell.symbol()).collect();
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn snapshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/snapshots/{name}.txt"))
}

/// Draws `app` plain at `size`, compares it with snapshot `name`, and returns the text.
fn snapshot(name: &str, app: &App, size: (u16, u16)) -> String {
    let actual = text(&draw(app, size, Theme::new(false)));
    let name = format!("{name}-{}x{}", size.0, size.1);
    let path = snapshot_path(&name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return actual;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run with UPDATE_SNAPSHOTS=1 to write it, then review it",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "screen {name} differs from {}\n--- expected\n{expected}--- actual\n{actual}\
         (UPDATE_SNAPSHOTS=1 rewrites the snapshots after an intended change)",
        path.display()
    );
    actual
}

fn assert_has(screen: &str, needle: &str) {
    assert!(screen.contains(needle), "missing {needle:?} in:\n{screen}");
}

#[test]
fn overview_of_a_live_daemon() {
    for size in [SMALL, LARGE] {
        let screen = snapshot(
            "overview-live",
            &app_with(fixture("status-live"), Tab::Overview),
            size,
        );
        assert_has(
            &screen,
            "nexus-canvasd 0.1.0 (8ac5b249) · up 22s · ✓ ready · ✓ no alerts firing",
        );
        assert_has(
            &screen,
            "✓ live http://127.0.0.1:8000 · updated 08:16:09 · every 1 s",
        );
        assert_has(&screen, "store ✓ ok");
        assert_has(&screen, "0 of 1024");
        assert_has(&screen, "✓ none firing");
    }
    let wide = text(&draw(
        &app_with(fixture("status-live"), Tab::Overview),
        LARGE,
        Theme::new(false),
    ));
    assert_has(&wide, "Traffic · last 5 min │ last 1 h");
}

#[test]
fn overview_of_an_alerting_daemon() {
    for size in [SMALL, LARGE] {
        let screen = snapshot("overview-alerting", &alerting_app(Tab::Overview), size);
        assert_has(&screen, "✗ not ready");
        assert_has(&screen, "✗ 3 alerts firing");
        assert_has(&screen, "model: the inference worker stopped: device lost");
        assert_has(&screen, "✗ read_latency 250 ms, above 200 ms");
        assert_has(&screen, "> 60 s");
    }
}

#[test]
fn gpu_screen_without_and_with_nvml() {
    for size in [SMALL, LARGE] {
        let screen = snapshot(
            "gpu-live",
            &app_with(fixture("status-live"), Tab::Gpu),
            size,
        );
        assert_has(&screen, "all-MiniLM-L6-v2");
        assert_has(&screen, "unavailable:");
        assert_has(&screen, "no NVML facts: VRAM is not measured");
        assert_has(&screen, "the model is not on a GPU");

        let screen = snapshot("gpu-alerting", &alerting_app(Tab::Gpu), size);
        assert_has(
            &screen,
            "GPU 0 NVIDIA H200 · utilisation 97 % · memory 120 GiB of 140 GiB",
        );
        assert_has(&screen, "120 GiB of 140 GiB (85.5 %)");
        assert_has(&screen, "burn 1.1 GiB in use · 2.0 GiB reserved");
        assert_has(&screen, "driver 550.54.15");
    }
}

#[test]
fn backups_screen_says_no_replica_is_configured() {
    for size in [SMALL, LARGE] {
        let screen = snapshot(
            "backups-live",
            &app_with(fixture("status-live"), Tab::Backups),
            size,
        );
        assert_has(&screen, "· no replicas configured");
        assert_has(&screen, "/tmp/con/data/nexus-canvas.db");
        assert_has(&screen, "WAL       491 KiB");
        let screen = snapshot("backups-alerting", &alerting_app(Tab::Backups), size);
        assert_has(&screen, "size      1.8 GiB");
    }
}

#[test]
fn alerts_screen_lists_every_alert_and_the_transitions() {
    for size in [SMALL, LARGE] {
        let screen = snapshot(
            "alerts-live",
            &app_with(fixture("status-live"), Tab::Alerts),
            size,
        );
        assert_has(&screen, "No alert has fired since the daemon started.");
        for name in [
            "error_rate",
            "read_latency",
            "write_latency",
            "admin_latency",
            "inference_latency",
            "host_cpu",
            "gpu_memory",
        ] {
            assert_has(&screen, name);
        }

        let screen = snapshot("alerts-alerting", &alerting_app(Tab::Alerts), size);
        assert_has(&screen, "✗ firing");
        assert_has(&screen, "✓ resolved");
        assert_has(
            &screen,
            "08:12:44    ✗ firing read_latency: 250 ms, above 200 ms",
        );
    }
}

#[test]
fn a_disconnected_daemon_keeps_its_last_figures() {
    let mut app = app_with(fixture("status-live"), Tab::Overview);
    app.handle(Event::Failed {
        at: datetime!(2026-12-04 08:15:35 UTC),
        error: ClientError::Unauthorized {
            status: 401,
            message: "the API key is missing, malformed or unknown".into(),
        },
    });
    for size in [SMALL, LARGE] {
        let screen = snapshot("overview-disconnected", &app, size);
        assert_has(&screen, "✗ disconnected since 08:15:35 (35s):");
        assert_has(&screen, "refused the admin key (401)");
        assert_has(&screen, "retrying every 1 s");
        // The last figures are still there.
        assert_has(&screen, "store ✓ ok");
    }

    // And greyed: every cell of the body is drawn in the stale style.
    let buffer = draw(&app, SMALL, Theme::new(true));
    for y in 5..23 {
        let cell = &buffer[(10, y)];
        assert_eq!(cell.fg, Color::DarkGray, "row {y}: {cell:?}");
    }
}

#[test]
fn before_the_first_answer() {
    let mut app = App::new("http://127.0.0.1:8000", Duration::from_secs(1), NOW);
    let screen = snapshot("connecting", &app, SMALL);
    assert_has(&screen, "· connecting to http://127.0.0.1:8000");

    app.handle(Event::Failed {
        at: datetime!(2026-12-04 08:16:08 UTC),
        error: ClientError::Status {
            status: 503,
            code: "unavailable".into(),
            message: "the store is not answering".into(),
            request_id: Some("3f1c".into()),
        },
    });
    let screen = snapshot("never-connected", &app, SMALL);
    assert_has(&screen, "No status yet: the daemon has not answered.");
    assert_has(&screen, "(request id 3f1c)");
}

#[test]
fn a_minimal_document_still_draws_every_screen() {
    for tab in Tab::ALL {
        let name = format!("empty-{}", tab.title().to_lowercase());
        let screen = snapshot(&name, &app_with(fixture("status-empty"), tab), SMALL);
        assert_has(&screen, "nexus-canvasd 0.1.0");
    }
}

#[test]
fn help_and_the_reload_dialog() {
    let mut app = app_with(fixture("status-live"), Tab::Overview);
    app.handle(Event::Key(Key::Char('?')));
    let screen = snapshot("help", &app, SMALL);
    for key in [
        "Tab  →",
        "Shift-Tab  ←",
        "1 2 3 4",
        "r:",
        "p:",
        "R:",
        "?:",
        "q  Esc",
        "Ctrl-C",
    ] {
        assert_has(&screen, key);
    }
    app.handle(Event::Key(Key::Esc));

    app.handle(Event::Key(Key::Char('R')));
    let screen = snapshot("reload-confirm", &app, SMALL);
    assert_has(&screen, "y reload    n / Esc cancel");

    app.handle(Event::Key(Key::Char('y')));
    app.handle(Event::Reloaded(Ok(ReloadReport {
        applied: vec!["alerts".into(), "log.level".into()],
        needs_restart: vec!["server".into()],
    })));
    let screen = snapshot("reload-done", &app, SMALL);
    assert_has(&screen, "applied: alerts, log.level");
    assert_has(&screen, "needs a restart: server");

    app.handle(Event::Key(Key::Char(' ')));
    app.handle(Event::Key(Key::Char('R')));
    app.handle(Event::Key(Key::Char('y')));
    app.handle(Event::Reloaded(Err(ClientError::Status {
        status: 422,
        code: "invalid_config".into(),
        message: "key `alerts.error_rat` in TOML file: unknown field".into(),
        request_id: Some("9a0e".into()),
    })));
    let screen = snapshot("reload-refused", &app, LARGE);
    assert_has(&screen, "✗ not reloaded");
    assert_has(&screen, "invalid_config");
}

#[test]
fn no_color_keeps_states_readable_without_colour() {
    let app = alerting_app(Tab::Alerts);
    let colored = draw(&app, SMALL, Theme::new(true));
    assert!(
        colored.content.iter().any(|cell| cell.fg == Color::Red),
        "firing alerts are red"
    );

    let plain = draw(&app, SMALL, Theme::new(false));
    for cell in &plain.content {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    // The same states, told by symbol and word.
    assert_eq!(text(&plain), text(&colored));
    assert_has(&text(&plain), "✗ firing");
}

#[test]
fn tiny_terminals_are_drawn_without_panicking() {
    let mut apps = vec![
        alerting_app(Tab::Overview),
        App::new("http://x", Duration::from_secs(1), NOW),
    ];
    let mut dialog = app_with(fixture("status-live"), Tab::Overview);
    dialog.handle(Event::Key(Key::Char('?')));
    apps.push(dialog);
    for app in &mut apps {
        for tab in Tab::ALL {
            app.tab = tab;
            for size in [(1, 1), (10, 3), (40, 10), (79, 23), (300, 100)] {
                draw(app, size, Theme::new(true));
            }
        }
    }
}
