//! The binary's start-up refusals, which come before any terminal is touched: a key file
//! other users can read, no terminal to draw on, a bad interval.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

const CONSOLE: &str = env!("CARGO_BIN_EXE_nexus-canvas-console");

fn console(args: &[&str]) -> Output {
    Command::new(CONSOLE)
        .args(args)
        .env_remove("NEXUS_ADMIN_KEY")
        .env_remove("NEXUS_CONSOLE_URL")
        .output()
        .expect("run the console")
}

fn key_file(dir: &tempfile::TempDir, mode: u32) -> String {
    let path = dir.path().join("admin.key");
    fs::write(&path, "nxs_secret\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(&dir, 0o644);
    let output = console(&["--key-file", &path]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "refusing the admin key file {path}: other users can read it (mode 644)"
        )),
        "{stderr}"
    );
}

#[test]
fn without_a_terminal_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let output = console(&["--key-file", &key_file(&dir, 0o600)]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the console needs a terminal"), "{stderr}");
}

#[test]
fn a_bad_interval_is_a_usage_error() {
    let output = console(&["--interval", "soon"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a duration"), "{stderr}");

    let help = String::from_utf8_lossy(&console(&["--help"]).stdout).into_owned();
    for flag in [
        "--url",
        "--key-file",
        "--interval",
        "NEXUS_CONSOLE_URL",
        "NEXUS_ADMIN_KEY",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}
