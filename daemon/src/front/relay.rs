//! Copying one connection's bytes between the client and Rocket, under two deadlines that
//! Rocket cannot enforce itself: the first request's header block must be complete within
//! `header_timeout`, and a connection with no bytes either way for `idle_timeout` is closed.
//!
//! The front does not parse HTTP: it only watches the client's first bytes for the blank line
//! that ends a header block. Hyper parses them again upstream and answers malformed or
//! oversized ones itself.
//!
//! When Rocket closes first (an answer with `Connection: close`, a refused header, shutdown),
//! the front passes the close on and then reads and drops what the client still sends, for
//! up to [`LINGER`]: closing a socket with unread bytes would send a reset, which can destroy
//! the answer before the client has read it.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Large enough for a typical request or response in one read; one per direction.
const BUFFER_BYTES: usize = 16 * 1024;
/// What a direction's buffer may grow to while reads keep filling it (a large download):
/// each read and write costs a system call and a task wake-up, so bulk moves in big pieces.
const MAX_BUFFER_BYTES: usize = 256 * 1024;
/// How long the client may keep sending after Rocket closed, before the front closes too.
const LINGER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub header: Duration,
    pub idle: Duration,
}

/// How a relayed connection ended.
#[derive(Debug)]
pub enum End {
    /// Rocket closed its side (after the last response, or on shutdown).
    Closed,
    /// The first request's header block was not complete in time.
    HeaderTimeout,
    /// No bytes moved either way for the idle timeout.
    Idle,
    /// Either side failed (most often: the client reset the connection).
    Failed(io::Error),
}

/// Relays until Rocket closes its side, a deadline passes or either side fails.
pub async fn relay<C, U>(client: C, upstream: U, deadlines: Deadlines) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let activity = Activity {
        started,
        last_ms: AtomicU64::new(0),
    };
    let header_done = AtomicBool::new(false);
    let (mut client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);

    let to_upstream = async {
        let mut header = HeaderEnd::default();
        let mut watch = |bytes: &[u8]| {
            if !header_done.load(Ordering::Relaxed) && header.feed(bytes) {
                header_done.store(true, Ordering::Relaxed);
            }
        };
        match pump(&mut client_read, upstream_write, &activity, &mut watch).await {
            Ok(()) => Ok(()),
            Err(Pump::Read(error)) => Err(error),
            // Rocket stopped reading; its answer may still be on its way back.
            Err(Pump::Write(_)) => discard(&mut client_read).await,
        }
    };
    let to_client = async {
        match pump(upstream_read, client_write, &activity, &mut |_: &[u8]| {}).await {
            Ok(()) => Ok(()),
            Err(Pump::Read(error) | Pump::Write(error)) => Err(error),
        }
    };
    let watchdog = watchdog(
        &activity,
        &header_done,
        started + deadlines.header,
        deadlines,
    );
    tokio::pin!(to_upstream, to_client, watchdog);

    tokio::select! {
        end = &mut watchdog => return end,
        sent = &mut to_client => {
            if let Err(error) = sent {
                return End::Failed(error);
            }
            let _ = tokio::time::timeout(LINGER, &mut to_upstream).await;
            return End::Closed;
        }
        received = &mut to_upstream => {
            if let Err(error) = received {
                return End::Failed(error);
            }
        }
    }

    // The client sent all it will; its answer may still be on the way back.
    tokio::select! {
        end = &mut watchdog => end,
        sent = &mut to_client => match sent {
            Ok(()) => End::Closed,
            Err(error) => End::Failed(error),
        },
    }
}

/// When bytes last moved, in milliseconds since the connection started.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let elapsed = self.started.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(elapsed, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Which side of a copy failed.
enum Pump {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing side too.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    activity: &Activity,
    watch: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<(), Pump>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0; BUFFER_BYTES];
    loop {
        let read = from.read(&mut buffer).await.map_err(Pump::Read)?;
        if read == 0 {
            to.shutdown().await.map_err(Pump::Write)?;
            return Ok(());
        }
        activity.touch();
        watch(&buffer[..read]);

        to.write_all(&buffer[..read]).await.map_err(Pump::Write)?;
        // A TLS stream holds written bytes until flushed.
        to.flush().await.map_err(Pump::Write)?;
        activity.touch();

        if read == buffer.len() && buffer.len() < MAX_BUFFER_BYTES {
            buffer.resize(buffer.len() * 2, 0);
        }
    }
}

/// Reads and drops everything until the end of the stream.
async fn discard<R: AsyncRead + Unpin>(from: &mut R) -> io::Result<()> {
    let mut buffer = vec![0; BUFFER_BYTES];
    while from.read(&mut buffer).await? > 0 {}
    Ok(())
}

/// Sleeps until a deadline passes; returns which.
async fn watchdog(
    activity: &Activity,
    header_done: &AtomicBool,
    header_deadline: Instant,
    deadlines: Deadlines,
) -> End {
    loop {
        let now = Instant::now();
        let header_pending = !header_done.load(Ordering::Relaxed);
        if header_pending && now >= header_deadline {
            return End::HeaderTimeout;
        }
        let idle_deadline = activity.last() + deadlines.idle;
        if now >= idle_deadline {
            return End::Idle;
        }

        let next = if header_pending {
            idle_deadline.min(header_deadline)
        } else {
            idle_deadline
        };
        tokio::time::sleep_until(next).await;
    }
}

/// Finds the blank line that ends the first header block, across reads of any size. Bare
/// `\n` line ends count too, as hyper accepts them; blank lines before the request line do
/// not, so a client cannot satisfy the deadline with an empty line and then trickle.
#[derive(Debug, Default)]
struct HeaderEnd {
    state: Scan,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Before the request line: only CR and LF so far.
    #[default]
    Leading,
    /// Inside a line.
    Line,
    /// Just after a line's LF.
    LineStart,
    /// After a line's LF and a CR.
    LineStartCr,
    Done,
}

impl HeaderEnd {
    /// Feeds the next bytes; true once the header block is complete.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            self.state = match (self.state, byte) {
                (Scan::Done, _) => return true,
                (Scan::Leading, b'\r' | b'\n') => Scan::Leading,
                (Scan::LineStart | Scan::LineStartCr, b'\n') => Scan::Done,
                (Scan::LineStart, b'\r') => Scan::LineStartCr,
                (_, b'\n') => Scan::LineStart,
                _ => Scan::Line,
            };
        }
        self.state == Scan::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(chunks: &[&[u8]]) -> bool {
        let mut scan = HeaderEnd::default();
        chunks.iter().any(|chunk| scan.feed(chunk))
    }

    #[test]
    fn a_header_block_ends_at_the_first_blank_line() {
        assert!(ends(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]));
        assert!(ends(&[b"GET / HTTP/1.1\nHost: x\n\n"]));
        assert!(ends(&[b"GET / HTTP/1.1\r", b"\n", b"\r", b"\n"]));
        assert!(ends(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]));
        assert!(!ends(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]));
        assert!(!ends(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r"]));
    }

    #[test]
    fn blank_lines_before_the_request_do_not_count() {
        assert!(!ends(&[b"\r\n\r\n\r\n", b"G"]));
        assert!(ends(&[b"\r\n", b"GET / HTTP/1.1\r\n\r\n"]));
    }

    // Real time, in tenths of a second: tokio's paused clock needs a feature this crate does
    // not build with.
    #[tokio::test]
    async fn a_slow_header_is_cut_at_the_deadline() {
        let (client, mut far_client) = tokio::io::duplex(1024);
        let (upstream, _far_upstream) = tokio::io::duplex(1024);
        let deadlines = Deadlines {
            header: Duration::from_millis(500),
            idle: Duration::from_secs(60),
        };
        let dripping = async {
            for byte in b"GET / HTTP/1.1\r\nHost: slow\r\n" {
                far_client.write_all(&[*byte]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            std::future::pending::<()>().await
        };

        let started = Instant::now();
        let end = tokio::select! {
            end = relay(client, upstream, deadlines) => end,
            () = dripping => unreachable!(),
        };
        assert!(matches!(end, End::HeaderTimeout), "{end:?}");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_when_idle() {
        let (client, mut far_client) = tokio::io::duplex(1024);
        let (upstream, mut far_upstream) = tokio::io::duplex(1024);
        let deadlines = Deadlines {
            header: Duration::from_millis(200),
            idle: Duration::from_millis(600),
        };
        far_client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();

        let started = Instant::now();
        let end = relay(client, upstream, deadlines).await;
        assert!(matches!(end, End::Idle), "{end:?}");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        let mut forwarded = [0; 18];
        far_upstream.read_exact(&mut forwarded).await.unwrap();
        assert_eq!(&forwarded, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn rocket_closing_its_side_ends_the_relay_after_the_answer() {
        let (client, mut far_client) = tokio::io::duplex(1024);
        let (upstream, mut far_upstream) = tokio::io::duplex(1024);
        let deadlines = Deadlines {
            header: Duration::from_secs(5),
            idle: Duration::from_secs(30),
        };
        far_upstream
            .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .unwrap();
        far_upstream.shutdown().await.unwrap();

        let end = relay(client, upstream, deadlines).await;
        assert!(matches!(end, End::Closed), "{end:?}");
        let mut answer = Vec::new();
        far_client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\n");
    }
}
