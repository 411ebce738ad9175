//! The console binary in a real terminal: tmux runs it against a live daemon in a detached
//! 100×30 session; `capture-pane` reads what it shows and `send-keys` types at it. It shows
//! live figures, redraws for a new size, moves between screens, asks before a reload, says
//! when the daemon is gone, and exits cleanly on `q` with the terminal given back.
//!
//! tmux is required, not optional: without it this test fails and says what to install.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::Daemon;

const CONSOLE: &str = env!("CARGO_BIN_EXE_nexus-canvas-console");

/// A tmux server of this test's own (its socket in the test's directory), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts `command` in a detached 100×30 session whose pane stays after it exits, so
    /// its exit status can be read.
    fn start(dir: &Path, command: &str) -> Tmux {
        let version = Command::new("tmux").arg("-V").output();
        assert!(
            version.as_ref().is_ok_and(|output| output.status.success()),
            "tmux is needed for the console's terminal test and is not installed: \
             install it (Debian/Ubuntu: `apt-get install -y tmux`) ({version:?})"
        );
        let config = dir.join("tmux.conf");
        // No status line: the pane gets all 30 rows.
        std::fs::write(&config, "set -g remain-on-exit on\nset -g status off\n").unwrap();
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let output = tmux.run(&[
            "-f",
            config.to_str().unwrap(),
            "new-session",
            "-d",
            "-s",
            "console",
            "-x",
            "100",
            "-y",
            "30",
            command,
        ]);
        assert!(output.status.success(), "tmux new-session: {output:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        // -u: UTF-8 whatever the locale, for the console's symbols.
        Command::new("tmux")
            .arg("-u")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-t", "console"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn send(&self, key: &str) {
        let output = self.run(&["send-keys", "-t", "console", key]);
        assert!(output.status.success(), "send-keys {key}: {output:?}");
    }

    fn pane(&self, format: &str) -> String {
        let output = self.run(&["display-message", "-p", "-t", "console", format]);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Waits until the screen satisfies `test`; returns it.
    fn wait_for(&self, what: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if test(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the pane shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |screen| screen.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The uptime the header shows, in seconds, when it is under a minute.
fn uptime(screen: &str) -> Option<u64> {
    const MARK: &str = " · up ";
    let rest = &screen[screen.find(MARK)? + MARK.len()..];
    rest[..rest.find('s')?].parse().ok()
}

#[test]
fn the_console_runs_in_a_real_terminal() {
    let mut daemon = Daemon::start();
    let key_file = daemon.admin_key_file();
    let exit_file = daemon.dir.path().join("console-exit-status");
    let command = format!(
        "{CONSOLE} --url {} --key-file {} --interval 0.3; echo $? > {}",
        daemon.url,
        key_file.display(),
        exit_file.display()
    );
    let tmux = Tmux::start(daemon.dir.path(), &command);
    assert_eq!(tmux.pane("#{pane_width}x#{pane_height}"), "100x30");

    // Live figures: the daemon's version, and an uptime that moves.
    let version = env!("CARGO_PKG_VERSION");
    let screen = tmux.wait_for_text(&format!("nexus-canvasd {version}"));
    assert!(screen.contains("✓ live"), "{screen}");
    let first = uptime(&screen).unwrap_or_else(|| panic!("no uptime in:\n{screen}"));
    tmux.wait_for("the uptime to advance", |screen| {
        uptime(screen).is_some_and(|now| now > first)
    });
    let screen = tmux.wait_for_text("Traffic · last 5 min");
    assert!(screen.contains("store ✓ ok"), "{screen}");

    // A wider terminal gets the long window's columns too.
    let output = tmux.run(&["resize-window", "-t", "console", "-x", "130", "-y", "40"]);
    assert!(output.status.success(), "resize-window: {output:?}");
    tmux.wait_for_text("Traffic · last 5 min │ last 1 h");

    // Screens by number, Tab, the arrows and Shift-Tab.
    tmux.send("2");
    tmux.wait_for_text("GPU facts");
    tmux.send("Tab");
    tmux.wait_for_text("no replicas configured");
    tmux.send("Right");
    tmux.wait_for_text("Recent transitions, newest first");
    tmux.send("BTab");
    tmux.wait_for_text("no replicas configured");
    tmux.send("Left");
    tmux.wait_for_text("GPU facts");
    tmux.send("1");
    tmux.wait_for_text("Traffic · last 5 min");

    // Help, closed with Esc, which does not quit from a dialog.
    tmux.send("?");
    tmux.wait_for_text("Any key closes this help.");
    tmux.send("Escape");
    tmux.wait_for("help to close", |screen| {
        !screen.contains("Any key closes this help.") && screen.contains("Traffic")
    });

    // A reload only after yes; the daemon's answer is shown.
    tmux.send("R");
    tmux.wait_for_text("y reload");
    tmux.send("n");
    tmux.wait_for("the question to close", |screen| {
        !screen.contains("y reload")
    });
    tmux.send("R");
    tmux.wait_for_text("y reload");
    tmux.send("y");
    let screen = tmux.wait_for_text("✓ reloaded");
    assert!(screen.contains("applied: alerts"), "{screen}");
    tmux.send("x");
    tmux.wait_for("the result to close", |screen| {
        !screen.contains("✓ reloaded")
    });

    // Pause and resume.
    tmux.send("p");
    tmux.wait_for_text("! paused");
    tmux.send("p");
    tmux.wait_for_text("✓ live");

    // The daemon goes away: the console says since when and why, keeps the last figures,
    // and keeps running.
    daemon.kill();
    let screen = tmux.wait_for_text("✗ disconnected since");
    assert!(screen.contains("cannot reach"), "{screen}");
    assert!(screen.contains("Traffic · last 5 min"), "{screen}");
    assert_eq!(tmux.pane("#{pane_dead}"), "0");

    // q quits: the process exits 0 and the terminal is back on its normal screen. The exit
    // status comes from the shell around the console: tmux's own pane_dead_status is not
    // always filled in by the time the pane is dead.
    tmux.send("q");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.pane("#{pane_dead}") != "1" {
        assert!(
            Instant::now() < deadline,
            "the console did not exit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(&exit_file).unwrap_or_default();
    assert_eq!(status.trim(), "0", "the console's exit status");
    assert_eq!(tmux.pane("#{alternate_on}"), "0");
}

#[test]
fn sigterm_ends_the_console_and_restores_the_terminal() {
    let daemon = Daemon::start();
    let key_file = daemon.admin_key_file();
    let exit_file = daemon.dir.path().join("console-exit-status");
    let command = format!(
        "{CONSOLE} --url {} --key-file {}; echo $? > {}",
        daemon.url,
        key_file.display(),
        exit_file.display()
    );
    let tmux = Tmux::start(daemon.dir.path(), &command);
    tmux.wait_for_text("✓ live");

    // Anchored at the binary and naming this test's own key file: this console process only,
    // not the shell around it nor tmux, whose command lines hold the same words.
    let pattern = format!("^{CONSOLE} .*key-file {}", key_file.display());
    let killed = std::process::Command::new("pkill")
        .args(["-TERM", "-f", &pattern])
        .status()
        .expect("run pkill");
    assert!(killed.success(), "no console process matched {pattern}");

    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.pane("#{pane_dead}") != "1" {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not end the console:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(&exit_file).unwrap_or_default();
    assert_eq!(status.trim(), "0", "the console's exit status");
    assert_eq!(tmux.pane("#{alternate_on}"), "0");
}
