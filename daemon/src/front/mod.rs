//! The listener front: owns the public sockets (plain HTTP on `server.address:server.port`,
//! HTTPS on `tls.address:tls.port` when `[tls]` is enabled) and relays each connection's
//! bytes to Rocket, which listens on loopback only.
//!
//! Rocket 0.5 takes no custom listener, cannot reload certificates and never times out a
//! client that trickles its headers, so the front does what Rocket cannot: it terminates TLS
//! with a certificate that can change while serving ([`tls`]), admits at most
//! `connections.max_total` connections and `max_per_address` per client ([`admission`]),
//! bounds the TLS handshake, the first request's header block and idle time ([`relay`]), and
//! records which client each upstream connection stands for ([`peers`]), so that the API
//! sees real client addresses and knows which requests came over TLS. HTTP itself (routing,
//! redirects, HSTS) stays in Rocket.

mod admission;
pub mod peers;
mod relay;
pub mod tls;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsConfig};
use crate::telemetry::metrics::{ConnectionMetrics, ListenerLabels};
use admission::Admission;
pub use peers::{Origin, Peers};
use relay::{Deadlines, End};
use tls::{Certificates, Refresh, TlsError};

/// A failed accept (out of file descriptors, most often) is retried after this pause, so
/// the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("cannot start the listener on {address}: {source}")]
    Start {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// The public addresses the front listens on, ports resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
}

impl Listening {
    pub fn urls(&self) -> Vec<String> {
        let mut urls = vec![format!("http://{}", self.http)];
        urls.extend(self.https.map(|address| format!("https://{address}")));
        urls
    }
}

impl fmt::Display for Listening {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.urls().join(" "))
    }
}

/// What the per-connection tasks share.
struct Shared {
    peers: Arc<Peers>,
    admission: Arc<Admission>,
    deadlines: Deadlines,
    handshake_timeout: Duration,
    metrics: ConnectionMetrics,
}

/// The bound but not yet accepting front.
pub struct Front {
    http: std::net::TcpListener,
    https: Option<(std::net::TcpListener, TlsAcceptor)>,
    listening: Listening,
    certificates: Option<Arc<Certificates>>,
    reload_check: Duration,
    shared: Arc<Shared>,
}

/// What a configuration reload may change in the running front.
#[derive(Clone)]
pub struct FrontHandle {
    admission: Arc<Admission>,
    certificates: Option<Arc<Certificates>>,
}

impl FrontHandle {
    /// Applies the trusted proxies (exempt from the per-address cap) at once.
    pub fn set_trusted_proxies(&self, proxies: &[IpAddr]) {
        self.admission.set_exempt(proxies);
    }

    /// Reads the certificate pair again when the files or their paths changed; `None`
    /// without TLS. Blocking file I/O.
    pub fn reload_certificates(&self, config: &TlsConfig) -> Option<Refresh> {
        self.certificates
            .as_ref()
            .map(|certificates| certificates.reload(config))
    }
}

impl Front {
    /// Binds the public sockets and loads the certificate; a taken port or an unusable
    /// certificate stops the daemon here, before anything is served.
    pub fn bind(config: &Config, metrics: ConnectionMetrics) -> Result<Front, FrontError> {
        let connections = &config.connections;
        let http = bind(SocketAddr::new(config.server.address, config.server.port))?;
        let mut listening = Listening {
            http: local_address(&http)?,
            https: None,
        };

        let mut certificates = None;
        let mut https = None;
        if config.tls.enabled {
            let loaded = Arc::new(Certificates::load(
                &config.tls,
                metrics.certificate_reloads.clone(),
            )?);
            let acceptor = TlsAcceptor::from(Arc::new(loaded.server_config()?));
            let listener = bind(SocketAddr::new(config.tls.address, config.tls.port))?;
            listening.https = Some(local_address(&listener)?);
            certificates = Some(loaded);
            https = Some((listener, acceptor));
        }

        let shared = Shared {
            peers: Arc::new(Peers::new(connections.max_total)),
            admission: Arc::new(Admission::new(
                connections.max_total,
                connections.max_per_address,
                &config.rate_limits.trusted_proxies,
            )),
            deadlines: Deadlines {
                header: Duration::from_secs(connections.header_timeout_secs),
                idle: Duration::from_secs(connections.idle_timeout_secs),
            },
            handshake_timeout: Duration::from_secs(connections.handshake_timeout_secs),
            metrics,
        };
        Ok(Front {
            http,
            https,
            listening,
            certificates,
            reload_check: Duration::from_secs(config.tls.reload_check_secs),
            shared: Arc::new(shared),
        })
    }

    pub fn listening(&self) -> Listening {
        self.listening
    }

    /// The map Rocket consults for each request's real client.
    pub fn peers(&self) -> Arc<Peers> {
        Arc::clone(&self.shared.peers)
    }

    pub fn handle(&self) -> FrontHandle {
        FrontHandle {
            admission: Arc::clone(&self.shared.admission),
            certificates: self.certificates.clone(),
        }
    }

    /// Starts accepting, relaying to Rocket at `upstream`, until `shutdown` resolves; from
    /// then on new connections are refused by the kernel while those already accepted are
    /// drained by Rocket. Must run inside the runtime.
    pub fn start<S>(self, upstream: SocketAddr, shutdown: S) -> Result<(), FrontError>
    where
        S: Future<Output = ()> + Clone + Send + 'static,
    {
        let register = |listener: std::net::TcpListener, address| {
            TcpListener::from_std(listener).map_err(|source| FrontError::Start { address, source })
        };
        let http = register(self.http, self.listening.http)?;
        let https = match (self.https, self.listening.https) {
            (Some((listener, acceptor)), Some(address)) => {
                Some((register(listener, address)?, acceptor))
            }
            _ => None,
        };

        let shared = self.shared;
        tokio::spawn(accept(
            http,
            None,
            Arc::clone(&shared),
            upstream,
            shutdown.clone(),
        ));
        if let Some((listener, acceptor)) = https {
            tokio::spawn(accept(listener, Some(acceptor), shared, upstream, shutdown));
        }
        if let Some(certificates) = &self.certificates {
            certificates.spawn_watch(self.reload_check);
        }
        Ok(())
    }
}

/// Counts a connection in `nexus_connections_open` for as long as it lives.
struct OpenConnection(Gauge);

impl OpenConnection {
    fn new(metrics: &ConnectionMetrics, listener: &'static str) -> OpenConnection {
        let gauge = metrics
            .open
            .get_or_create(&ListenerLabels { listener })
            .clone();
        gauge.inc();
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn bind(address: SocketAddr) -> Result<std::net::TcpListener, FrontError> {
    let bound = std::net::TcpListener::bind(address)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener));
    bound.map_err(|source| FrontError::Bind { address, source })
}

fn local_address(listener: &std::net::TcpListener) -> Result<SocketAddr, FrontError> {
    listener.local_addr().map_err(|source| FrontError::Bind {
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// The accept loop of one listener.
async fn accept<S>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    upstream: SocketAddr,
    shutdown: S,
) where
    S: Future<Output = ()>,
{
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, listener = scheme, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        shared.metrics.accepted(scheme);

        // Refused before any TLS or HTTP work: dropping the socket closes it.
        let permit = match shared.admission.admit(client.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                shared.metrics.refused(refusal.label());
                tracing::debug!(%client, reason = refusal.label(), "connection refused");
                continue;
            }
        };

        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _open = OpenConnection::new(&shared.metrics, scheme);
            let _permit = permit;
            // Requests and answers are small; Nagle's delay would only add latency.
            let _ = stream.set_nodelay(true);
            match tls {
                None => forward(stream, client, false, &shared, upstream).await,
                Some(acceptor) => handshake(stream, client, acceptor, &shared, upstream).await,
            }
        });
    }
    tracing::info!(listener = scheme, "stopped accepting connections");
}

async fn handshake(
    stream: TcpStream,
    client: SocketAddr,
    acceptor: TlsAcceptor,
    shared: &Shared,
    upstream: SocketAddr,
) {
    let accepted = tokio::time::timeout(shared.handshake_timeout, acceptor.accept(stream)).await;
    // Failed handshakes are routine on a public port (scanners, old clients): counted, and
    // logged at debug level only.
    match accepted {
        Ok(Ok(stream)) => forward(stream, client, true, shared, upstream).await,
        Ok(Err(error)) => {
            let reason = if error.kind() == io::ErrorKind::InvalidData {
                "refused"
            } else {
                "io"
            };
            shared.metrics.handshake_failed(reason);
            tracing::debug!(%client, %error, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.handshake_failed("timeout");
            tracing::debug!(%client, "TLS handshake timed out");
        }
    }
}

/// Relays one client connection to Rocket, recording who it is for the API.
async fn forward<C>(stream: C, client: SocketAddr, tls: bool, shared: &Shared, upstream: SocketAddr)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let upstream_stream = match TcpStream::connect(upstream).await {
        Ok(connected) => connected,
        Err(error) => {
            // Rocket stopped (shutdown) or is out of descriptors; the client sees a close.
            tracing::warn!(%error, %upstream, "cannot reach the HTTP server");
            return;
        }
    };
    let _ = upstream_stream.set_nodelay(true);
    let Ok(local) = upstream_stream.local_addr() else {
        return;
    };
    // Before the first byte: Rocket may look the client up as soon as it parses a request.
    let Some(_entry) = shared.peers.insert(local, Origin { client, tls }) else {
        tracing::warn!(%client, "the client map is full; connection closed");
        return;
    };

    match relay::relay(stream, upstream_stream, shared.deadlines).await {
        End::Closed => {}
        End::HeaderTimeout => {
            shared.metrics.timed_out("header");
            tracing::debug!(%client, "request header not complete in time; connection closed");
        }
        End::Idle => {
            shared.metrics.timed_out("idle");
            tracing::debug!(%client, "connection idle; closed");
        }
        End::Failed(error) => tracing::debug!(%client, %error, "connection failed"),
    }
}
