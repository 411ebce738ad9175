//! Admission of new connections: at most `connections.max_total` open at once, and at most
//! `connections.max_per_address` from one client address.
//!
//! A connection over either limit is closed as soon as it is accepted, before any TLS or HTTP
//! work is spent on it. Addresses listed as trusted proxies are exempt from the per-address
//! cap: every client behind a proxy shares its address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Why a connection was refused; also its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxTotal,
    MaxPerAddress,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxTotal => "max_total",
            Refusal::MaxPerAddress => "max_per_address",
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Only addresses with open connections: at most `max_total` entries.
    by_address: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    /// Replaced when a reload changes `rate_limits.trusted_proxies`.
    exempt: RwLock<Vec<IpAddr>>,
    open: Mutex<Open>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize, exempt: &[IpAddr]) -> Admission {
        Admission {
            max_total,
            max_per_address,
            exempt: RwLock::new(exempt.to_vec()),
            open: Mutex::new(Open::default()),
        }
    }

    pub fn set_exempt(&self, exempt: &[IpAddr]) {
        *self
            .exempt
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = exempt.to_vec();
    }

    /// Admits a connection from `address`; the permit keeps it counted until dropped.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Permit, Refusal> {
        let exempt = self
            .exempt
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&address);
        let mut open = self.lock();

        if open.total >= self.max_total {
            return Err(Refusal::MaxTotal);
        }
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        if !exempt && from_address >= self.max_per_address {
            return Err(Refusal::MaxPerAddress);
        }

        open.total += 1;
        open.by_address.insert(address, from_address + 1);
        Ok(Permit {
            admission: Arc::clone(self),
            address,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn each_address_gets_its_share_and_the_total_is_capped() {
        let admission = Arc::new(Admission::new(3, 2, &[]));

        let a1 = admission.admit(A).unwrap();
        let _a2 = admission.admit(A).unwrap();
        assert_eq!(admission.admit(A).unwrap_err(), Refusal::MaxPerAddress);
        let _b1 = admission.admit(B).unwrap();
        assert_eq!(admission.admit(B).unwrap_err(), Refusal::MaxTotal);

        drop(a1);
        assert_eq!(admission.lock().total, 2);
        let _a3 = admission.admit(A).unwrap();
    }

    #[test]
    fn a_trusted_proxy_is_bound_by_the_total_only() {
        let admission = Arc::new(Admission::new(3, 1, &[PROXY]));

        let permits: Vec<Permit> = (0..3).map(|_| admission.admit(PROXY).unwrap()).collect();
        assert_eq!(admission.admit(PROXY).unwrap_err(), Refusal::MaxTotal);
        drop(permits);

        admission.set_exempt(&[]);
        let _one = admission.admit(PROXY).unwrap();
        assert_eq!(admission.admit(PROXY).unwrap_err(), Refusal::MaxPerAddress);
    }

    #[test]
    fn closed_connections_leave_no_entry_behind() {
        let admission = Arc::new(Admission::new(10, 10, &[]));
        drop(admission.admit(A).unwrap());
        assert!(admission.lock().by_address.is_empty());
    }
}
