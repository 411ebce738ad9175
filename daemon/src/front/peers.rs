//! Who is really on the other end of each connection Rocket serves.
//!
//! Rocket only sees the front's loopback connection, so its peer address is the local address
//! of the front's upstream socket. The front records, before it forwards the first byte, which
//! client that socket stands for and whether the client came over TLS; the API looks the peer
//! up here. Entries live exactly as long as their connection, so the map never holds more
//! than the connections the front admitted (`connections.max_total`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The client behind one upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The client's address and port as the front accepted it.
    pub client: SocketAddr,
    /// Whether the client connected to the HTTPS listener.
    pub tls: bool,
}

/// The shared map from an upstream connection's local address to its [`Origin`].
#[derive(Debug)]
pub struct Peers {
    entries: Mutex<HashMap<SocketAddr, (u64, Origin)>>,
    capacity: usize,
    next_id: AtomicU64,
}

impl Peers {
    pub fn new(capacity: usize) -> Peers {
        Peers {
            entries: Mutex::new(HashMap::new()),
            capacity,
            next_id: AtomicU64::new(0),
        }
    }

    /// The client behind the connection Rocket sees as coming from `peer`; `None` for a
    /// connection that did not come through the front (a local process on Rocket's port).
    pub fn lookup(&self, peer: SocketAddr) -> Option<Origin> {
        self.lock().get(&peer).map(|(_, origin)| *origin)
    }

    /// Records `origin` for the upstream connection bound locally to `upstream`, until the
    /// returned entry is dropped. `None` when the map is full, which the front's own
    /// connection limit should make impossible; the caller then drops the connection.
    pub fn insert(self: &Arc<Self>, upstream: SocketAddr, origin: Origin) -> Option<PeerEntry> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&upstream) {
            return None;
        }
        entries.insert(upstream, (id, origin));
        Some(PeerEntry {
            peers: Arc::clone(self),
            upstream,
            id,
        })
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, (u64, Origin)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One connection's entry in [`Peers`]; dropping it removes the entry.
#[derive(Debug)]
pub struct PeerEntry {
    peers: Arc<Peers>,
    upstream: SocketAddr,
    id: u64,
}

impl Drop for PeerEntry {
    fn drop(&mut self) {
        let mut entries = self.peers.lock();
        // The port may already belong to a newer connection; only our own entry goes.
        if entries
            .get(&self.upstream)
            .is_some_and(|(id, _)| *id == self.id)
        {
            entries.remove(&self.upstream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(port: u16) -> Origin {
        Origin {
            client: SocketAddr::from(([192, 0, 2, 1], port)),
            tls: true,
        }
    }

    #[test]
    fn an_entry_lives_as_long_as_its_guard() {
        let peers = Arc::new(Peers::new(4));
        let upstream = SocketAddr::from(([127, 0, 0, 1], 40000));

        let entry = peers.insert(upstream, origin(1)).unwrap();
        assert_eq!(peers.lookup(upstream), Some(origin(1)));
        drop(entry);
        assert_eq!(peers.lookup(upstream), None);
    }

    #[test]
    fn a_stale_guard_leaves_a_newer_entry_for_the_same_port() {
        let peers = Arc::new(Peers::new(4));
        let upstream = SocketAddr::from(([127, 0, 0, 1], 40000));

        let old = peers.insert(upstream, origin(1)).unwrap();
        let new = peers.insert(upstream, origin(2)).unwrap();
        drop(old);
        assert_eq!(peers.lookup(upstream), Some(origin(2)));
        drop(new);
        assert!(peers.is_empty());
    }

    #[test]
    fn the_map_is_bounded() {
        let peers = Arc::new(Peers::new(1));
        let first = SocketAddr::from(([127, 0, 0, 1], 40000));
        let second = SocketAddr::from(([127, 0, 0, 1], 40001));

        let _entry = peers.insert(first, origin(1)).unwrap();
        assert!(peers.insert(second, origin(2)).is_none());
    }
}
