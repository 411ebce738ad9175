//! Test harness: runs the real `nexus-canvasd` on a free loopback port with its own data
//! directory and a fresh admin key, for the console to talk to.
//!
//! The daemon is another package's binary, so Cargo gives no `CARGO_BIN_EXE_` for it; a
//! workspace build (`cargo build --workspace`, or `cargo nextest run --workspace`) puts it
//! beside this test's `deps/` folder.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A daemon process and its directory. Dropping it kills the process.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub url: String,
    /// A fresh admin key's secret.
    pub admin_key: String,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon (inference off: the console needs no model) and waits for `/health`.
    pub fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "[server]\nport = {port}\nshutdown_grace_secs = 1\n\n\
                 [store]\ndata_dir = {data:?}\n\n\
                 [inference]\nenabled = false\n\n\
                 [log]\nformat = \"text\"\n",
                data = dir.path().join("data"),
            ),
        )
        .expect("write config");

        let mut daemon = Daemon {
            url: format!("http://127.0.0.1:{port}"),
            admin_key: String::new(),
            config,
            dir,
            child: None,
        };
        daemon.admin_key = daemon.create_key("ops", "admin");

        let log = fs::File::create(daemon.dir.path().join("daemon.log")).expect("log file");
        let child = Command::new(daemon_binary())
            .arg("--config")
            .arg(&daemon.config)
            .arg("serve")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nexus-canvasd");
        daemon.child = Some(child);
        daemon.wait_healthy();
        daemon
    }

    /// Runs `nexus-canvasd --config <config> <args>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(daemon_binary())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run nexus-canvasd")
    }

    /// Creates a key and returns its secret, which `keys create` prints on standard output.
    pub fn create_key(&self, name: &str, scope: &str) -> String {
        let output = self.cli(&["keys", "create", "--name", name, "--scope", scope]);
        assert!(
            output.status.success(),
            "keys create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// Writes the admin key to a file only its owner can read, as the console demands.
    pub fn admin_key_file(&self) -> PathBuf {
        let path = self.dir.path().join("admin.key");
        fs::write(&path, format!("{}\n", self.admin_key)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon at once, as a crash or an unplugged host would end it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_healthy(&mut self) {
        let agent = ureq::Agent::new_with_defaults();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited with {status}:\n{}", self.logs());
            }
            if agent.get(format!("{}/health", self.url)).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon not answering /health within 30 s:\n{}", self.logs());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `target/<profile>/nexus-canvasd` of this build: the test runs from `target/<profile>/deps/`.
/// `CARGO_TARGET_DIR`'s debug build is the fallback for test binaries copied elsewhere.
pub fn daemon_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let beside_deps = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("nexus-canvasd"));
    let from_env = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| PathBuf::from(dir).join("debug").join("nexus-canvasd"));
    beside_deps
        .into_iter()
        .chain(from_env)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nexus-canvasd is not built beside {}; build the workspace first \
                 (`source scripts/env.sh; cargo build --workspace`)",
                exe.display()
            )
        })
}

/// A loopback port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
