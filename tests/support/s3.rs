//! A real S3-compatible server on loopback for the replication tests: moto's server mode
//! (what Litestream's own S3 tests run against), installed by scripts/test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A running moto server. Dropping it kills the process.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; scripts/test does)");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };

        let deadline = Instant::now() + Duration::from_secs(30);
        while server.request("GET", "/").is_none() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn create_bucket(&self, bucket: &str) {
        let status = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status.map(|(status, _)| status), Some(200), "create bucket");
    }

    /// The keys under `prefix` in `bucket`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, body) = self
            .request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"))
            .expect("list objects");
        assert_eq!(status, 200, "{body}");
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|part| part.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect();
        keys.sort();
        keys
    }

    /// Deletes an object, with a signed request as S3 wants.
    pub fn delete(&self, bucket: &str, key: &str) {
        use object_store::ObjectStoreExt;

        let replica = self.bucket(bucket);
        runtime()
            .block_on(replica.objects.delete(&key.into()))
            .unwrap_or_else(|error| panic!("delete {key}: {error}"));
    }

    /// Writes an object (over whatever was there).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        use object_store::ObjectStoreExt;

        let replica = self.bucket(bucket);
        runtime()
            .block_on(replica.objects.put(&key.into(), bytes.to_vec().into()))
            .unwrap_or_else(|error| panic!("put {key}: {error}"));
    }

    fn bucket(&self, bucket: &str) -> nexus_canvasd::replicate::s3::Bucket {
        use nexus_canvasd::config::{Config, Secret};

        let mut config = Config::load(None).unwrap().replication.s3;
        config.url = format!("s3://{bucket}");
        config.endpoint = self.endpoint.clone();
        config.allow_http = true;
        config.access_key_id = "test".into();
        config.secret_access_key = Secret::new("test-secret");
        nexus_canvasd::replicate::s3::Bucket::open(&config).unwrap()
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never
    /// answered, like a hung or partitioned S3 endpoint.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// `NEXUS_*` settings that point a daemon's S3 replica at `bucket/prefix` here.
    pub fn replica_env(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        [
            ("NEXUS_REPLICATION__S3__ENABLED", "true".to_string()),
            (
                "NEXUS_REPLICATION__S3__URL",
                format!("s3://{bucket}/{prefix}"),
            ),
            ("NEXUS_REPLICATION__S3__ENDPOINT", self.endpoint.clone()),
            ("NEXUS_REPLICATION__S3__ALLOW_HTTP", "true".to_string()),
            ("NEXUS_REPLICATION__S3__ACCESS_KEY_ID", "test".to_string()),
            (
                "NEXUS_REPLICATION__S3__SECRET_ACCESS_KEY",
                "test-secret".to_string(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }

    fn request(&self, method: &str, path: &str) -> Option<(u16, String)> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint))
            .body(())
            .unwrap();
        let mut response = agent.run(request).ok()?;
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Some((response.status().as_u16(), body))
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.thaw();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
