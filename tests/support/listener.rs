//! A tiny HTTP server on loopback that records what it receives: the far end of the alert
//! webhook and of Sentry's reports in tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: String,
}

/// Records every request and answers each with the next scripted status (200 once the
/// script runs out).
pub struct Listener {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Listener {
    pub fn start(script: &[u16]) -> Listener {
        let socket = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!("http://{}", socket.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(script.to_vec()));

        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in socket.incoming().flatten() {
                let status = {
                    let mut statuses = statuses.lock().unwrap();
                    if statuses.is_empty() {
                        200
                    } else {
                        statuses.remove(0)
                    }
                };
                if let Some(request) = serve(stream, status) {
                    log.lock().unwrap().push(request);
                }
            }
        });
        Listener { url, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `count` requests whose body satisfies `matches` arrived; returns them.
    pub fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
        matches: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Received> = self.received().into_iter().filter(|r| matches(r)).collect();
            if found.len() >= count || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve(stream: TcpStream, status: u16) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();

    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;

    let mut stream = stream;
    let answer =
        format!("HTTP/1.1 {status} Status\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    stream.write_all(answer.as_bytes()).ok()?;
    Some(Received {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
