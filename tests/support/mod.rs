//! Test harness: runs the real `nexus-canvasd` binary on a free loopback port with its own
//! data directory, and a small HTTP client to drive it.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod listener;
pub mod s3;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_nexus-canvasd");

/// A daemon process and everything it owns. Dropping it kills the process.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub url: String,
    pub port: u16,
    child: Option<Child>,
    starts: u32,
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon on a fresh data directory and waits until it is ready.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// The same, with configuration overrides as `NEXUS_*` environment variables, which the
    /// daemon and every CLI command run for it get.
    pub fn start_with(env: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon::prepare(env);
        daemon.spawn();
        daemon
    }

    /// A daemon configured but not started yet.
    pub fn prepare(env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.toml");
        let data_dir = dir.path().join("data");
        // Rate limits are off: tests of other features send bursts no production client
        // would. The rate-limit tests turn them on with NEXUS_RATE_LIMITS__ENABLED.
        std::fs::write(
            &config,
            format!(
                "[server]\nport = {port}\nshutdown_grace_secs = 5\n\n\
                 [store]\ndata_dir = {data_dir:?}\n\n\
                 [inference]\nenabled = false\nmodels_dir = {models_dir:?}\n\n\
                 [rate_limits]\nenabled = false\n\n\
                 [log]\nformat = \"json\"\nlevel = \"debug\"\n",
                models_dir = models_dir()
            ),
        )
        .expect("write config");

        Daemon {
            dir,
            config,
            url: format!("http://127.0.0.1:{port}"),
            port,
            child: None,
            starts: 0,
            env: env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// Starts the process (again) and waits for `/ready`.
    pub fn spawn(&mut self) {
        self.spawn_unready();
        self.wait_ready();
    }

    /// Starts the process and waits only until it answers `/health`.
    pub fn spawn_unready(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).expect("log file");

        let child = Command::new(BIN)
            .args(["--config", self.config.to_str().unwrap(), "serve"])
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let client = Client::anonymous(&self.url);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited with {status}:\n{}", self.logs());
            }
            if client
                .try_get("/health")
                .is_some_and(|response| response.status == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon not answering /health within 30 s:\n{}", self.logs());
    }

    pub fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("daemon-{start}.log"))
    }

    /// Everything the daemon has logged, over all its starts.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|start| std::fs::read_to_string(self.log_path(start)).unwrap_or_default())
            .collect()
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("data").join("nexus-canvas.db")
    }

    fn wait_ready(&mut self) {
        let client = Client::anonymous(&self.url);
        // Loading the model (and, on a software GPU, compiling its kernels) takes a while.
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited with {status} before ready:\n{}", self.logs());
            }
            if client
                .try_get("/ready")
                .is_some_and(|response| response.status == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("daemon not ready within 180 s:\n{}", self.logs());
    }

    /// `kill -9`: no chance to flush, drain or checkpoint anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        self.signal_child(&child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon ignored SIGTERM:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal_child(&self, child: &Child, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Runs a CLI command against this daemon's configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .output()
            .expect("run nexus-canvasd")
    }

    /// Creates a key with `scope` and returns its secret.
    pub fn create_key(&self, name: &str, scope: &str) -> String {
        let output = self.cli(&["keys", "create", "--name", name, "--scope", scope]);
        assert!(
            output.status.success(),
            "keys create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    pub fn client(&self, key: &str) -> Client {
        Client {
            base: self.url.clone(),
            key: Some(key.to_string()),
            agent: agent(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `nexus-canvasd --config <config> <args>`.
pub fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run nexus-canvasd")
}

/// Where the real model files are: `NEXUS_MODELS_DIR`, else `var/models` in the repository,
/// where `models/fetch.sh` (run by scripts/test) puts them.
pub fn models_dir() -> PathBuf {
    std::env::var_os("NEXUS_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../var/models"))
}

/// The reference embeddings of the original PyTorch model.
pub fn reference_fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/minilm-reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// A minimal JSON-over-HTTP client bound to one daemon and one key.
#[derive(Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    agent: ureq::Agent,
}

/// A response reduced to what tests assert on.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The stable error code of a JSON error body.
    pub fn error_code(&self) -> String {
        let body = self.json();
        let code = body["error"]["code"].as_str();
        code.unwrap_or_else(|| panic!("no error code in {body}"))
            .to_string()
    }
}

impl Client {
    pub fn anonymous(base: &str) -> Client {
        Client {
            base: base.to_string(),
            key: None,
            agent: agent(),
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None)
    }

    fn try_get(&self, path: &str) -> Option<Reply> {
        self.try_send("GET", path, &[], None)
    }

    /// Creates a project named `name` and returns its id.
    pub fn create_project(&self, name: &str) -> String {
        let reply = self.post("/api/v1/projects", &serde_json::json!({ "name": name }));
        assert_eq!(reply.status, 201, "create project: {}", reply.body);
        reply.json()["id"].as_str().unwrap().to_string()
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.send("POST", path, &[], Some(body.to_string().as_bytes()))
    }

    pub fn put(&self, path: &str, if_match: &str, body: &Value) -> Reply {
        self.send(
            "PUT",
            path,
            &[("If-Match", if_match)],
            Some(body.to_string().as_bytes()),
        )
    }

    pub fn delete(&self, path: &str, if_match: &str) -> Reply {
        self.send("DELETE", path, &[("If-Match", if_match)], None)
    }

    /// Sends a request with JSON content type (unless `headers` set another) and raw body.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        self.try_send(method, path, headers, body)
            .unwrap_or_else(|| panic!("{method} {path}: no answer"))
    }

    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Option<Reply> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("Content-Type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }

        let result = match body {
            Some(body) => self.agent.run(request.body(body.to_vec()).unwrap()),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = result.ok()?;
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_string()))
            .collect();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Some(Reply {
            status: response.status().as_u16(),
            headers,
            body,
        })
    }
}
