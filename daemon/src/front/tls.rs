//! TLS for the HTTPS listener: the certificate and key from PEM files, served by a rustls
//! resolver that can swap them while connections come and go.
//!
//! The pair is read again when either file changes (a cheap `stat` every
//! `tls.reload_check_secs`) and on every configuration reload. A new pair is checked before it
//! replaces the old one: both files parse, the chain is not empty and the key belongs to its
//! first certificate. Anything else is refused with the reason logged, and the pair in use
//! stays, so a half-renewed certificate never takes HTTPS down.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::config::TlsConfig;
use crate::telemetry::metrics::ResultLabels;

/// Config managers write the certificate and the key one after the other; a change is read
/// once both files have stopped changing for this long.
const SETTLE: Duration = Duration::from_millis(200);
/// Looks at most this many times for the files to settle before trying anyway.
const SETTLE_TRIES: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert_path and tls.key_path must name the PEM files when TLS is enabled")]
    NoPaths,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid PEM: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{path} holds no certificate (PEM `CERTIFICATE` block)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no private key (PEM PKCS#8, RSA or EC key block)")]
    NoKey { path: PathBuf },
    #[error("the key in {key} does not fit the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: rustls::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// The crypto this daemon's TLS uses: `ring`, named explicitly because other dependencies
/// also compile in `aws-lc-rs`, and rustls refuses to guess between two providers.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a certificate chain and its private key.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    if cert_path.as_os_str().is_empty() || key_path.as_os_str().is_empty() {
        return Err(TlsError::NoPaths);
    }
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let pem_error = |path: &Path, error: rustls_pki_types::pem::Error| TlsError::Pem {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;

    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(cert_path, error))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: key_path.to_path_buf(),
            });
        }
        Err(error) => return Err(pem_error(key_path, error)),
    };

    // Parses the key, then compares its public half with the certificate's.
    CertifiedKey::from_der(chain, key, &provider()).map_err(|reason| TlsError::Mismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        reason,
    })
}

/// What identifies a file's current content cheaply: its size, modification time and inode.
/// `stat` follows symbolic links, so a swapped link (Kubernetes secrets, certbot's `live/`)
/// counts as a change too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;

        let metadata = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
        })
    }
}

type Stamps = (Option<Stamp>, Option<Stamp>);

/// Where the pair comes from and what was last looked at.
#[derive(Debug)]
struct Source {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// The files' stamps when they were last read, whether the pair was taken or refused:
    /// a refused pair is not retried (nor logged again) until a file changes.
    seen: Stamps,
}

/// What [`Certificates::refresh`] did.
#[derive(Debug)]
pub enum Refresh {
    Unchanged,
    Applied,
    Refused(TlsError),
}

/// The certificate in use, swapped whole on reload; in-flight handshakes keep the one they
/// started with.
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
    source: Mutex<Source>,
    reloads: Family<ResultLabels, Counter>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Certificates")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        ))
    }
}

impl Certificates {
    /// Loads the pair named in `config`; an unusable one stops the daemon from starting.
    pub fn load(
        config: &TlsConfig,
        reloads: Family<ResultLabels, Counter>,
    ) -> Result<Certificates, TlsError> {
        let seen = stamps(&config.cert_path, &config.key_path);
        let pair = load_pair(&config.cert_path, &config.key_path)?;
        Ok(Certificates {
            current: RwLock::new(Arc::new(pair)),
            source: Mutex::new(Source {
                cert_path: config.cert_path.clone(),
                key_path: config.key_path.clone(),
                seen,
            }),
            reloads,
        })
    }

    /// The rustls configuration of the HTTPS listener: TLS 1.2 and 1.3 only (rustls has
    /// nothing older), HTTP/1.1 by ALPN, certificates from this resolver.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        // Only HTTP/1.1: Rocket's HTTP/2 has a 16 MiB header limit and the front's deadlines
        // are written for one request line at a time.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Reads the pair again if `config` names other files or either file changed since it
    /// was last read: what a configuration reload does. The files are taken as they are: an
    /// operator who reloads has finished writing them. Blocking file I/O.
    pub fn reload(&self, config: &TlsConfig) -> Refresh {
        self.refresh(Some(config), false)
    }

    /// Reads the pair again if either watched file changed since it was last read.
    /// Blocking file I/O: call it off the async workers.
    pub fn check(&self) -> Refresh {
        self.refresh(None, true)
    }

    fn refresh(&self, config: Option<&TlsConfig>, settle: bool) -> Refresh {
        let mut source = self
            .source
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let moved = config.is_some_and(|config| {
            source.cert_path != config.cert_path || source.key_path != config.key_path
        });
        if let Some(config) = config.filter(|_| moved) {
            source.cert_path = config.cert_path.clone();
            source.key_path = config.key_path.clone();
        }
        let mut now = stamps(&source.cert_path, &source.key_path);
        if !moved && now == source.seen {
            return Refresh::Unchanged;
        }

        let tries = if settle { SETTLE_TRIES } else { 0 };
        for _ in 0..tries {
            std::thread::sleep(SETTLE);
            let settled = stamps(&source.cert_path, &source.key_path);
            if settled == now {
                break;
            }
            now = settled;
        }
        source.seen = now;

        match load_pair(&source.cert_path, &source.key_path) {
            Ok(pair) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(pair);
                self.count("applied");
                tracing::info!(cert = %source.cert_path.display(),
                    key = %source.key_path.display(), "TLS certificate reloaded");
                Refresh::Applied
            }
            Err(error) => {
                self.count("refused");
                tracing::warn!(%error, "the new TLS certificate is refused; the one in use \
                    stays");
                Refresh::Refused(error)
            }
        }
    }

    /// Looks for changed files every `interval`, for as long as the runtime runs.
    pub fn spawn_watch(self: &Arc<Self>, interval: Duration) {
        let certificates = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let certificates = Arc::clone(&certificates);
                if tokio::task::spawn_blocking(move || certificates.check())
                    .await
                    .is_err()
                {
                    tracing::warn!("the TLS certificate check panicked; it runs again later");
                }
            }
        });
    }

    fn count(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }
}

fn stamps(cert_path: &Path, key_path: &Path) -> Stamps {
    (Stamp::of(cert_path), Stamp::of(key_path))
}
