//! Rate limits: a token bucket (GCRA, from `governor`) per API key and route class, and one
//! per client address over every route that needs a key.
//!
//! The address bucket is checked first and needs no database: a flood of missing or invalid
//! keys is refused before any lookup. A bucket is eight bytes of state in a keyed map; a
//! sweep every `sweep_secs` drops the buckets that have refilled completely (they are what a
//! new bucket would be), so memory follows the clients active now, not every client ever
//! seen. A configuration reload replaces the quotas and starts every bucket afresh.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::{Rate, RateLimitsConfig};
use crate::telemetry::traffic::RouteClass;

type Keyed<K> = RateLimiter<K, HashMapStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// The buckets under one set of quotas.
struct Buckets {
    /// By API key (the hash of its secret, never the secret), one map per route class.
    keys: [Keyed<[u8; 32]>; 4],
    /// Asset uploads by API key; not a route class, since they stay out of the SLO windows.
    uploads: Keyed<[u8; 32]>,
    addresses: Keyed<IpAddr>,
}

impl Buckets {
    fn new(config: &RateLimitsConfig) -> Buckets {
        fn keyed<K: Clone + Hash + Eq>(rate: Rate) -> Keyed<K> {
            RateLimiter::hashmap(quota(rate)).with_middleware()
        }
        Buckets {
            keys: RouteClass::ALL.map(|class| keyed(class_rate(config, class))),
            uploads: keyed(config.upload),
            addresses: keyed(config.address),
        }
    }
}

fn class_rate(config: &RateLimitsConfig, class: RouteClass) -> Rate {
    match class {
        RouteClass::Read => config.read,
        RouteClass::Write => config.write,
        RouteClass::Inference => config.inference,
        RouteClass::Admin => config.admin,
    }
}

/// A request over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The bucket's size: requests allowed at once.
    pub limit: u32,
    /// When the next request would be allowed.
    pub retry_after: Duration,
}

/// A request within its limit, and how much room is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub limit: u32,
    pub remaining: u32,
}

pub struct RateLimits {
    config: RwLock<RateLimitsConfig>,
    buckets: RwLock<Arc<Buckets>>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(config: &RateLimitsConfig) -> RateLimits {
        RateLimits {
            buckets: RwLock::new(Arc::new(Buckets::new(config))),
            config: RwLock::new(config.clone()),
            clock: DefaultClock::default(),
        }
    }

    /// Applies new quotas; the buckets start afresh under them.
    pub fn set_config(&self, config: &RateLimitsConfig) {
        *self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config.clone();
        *self
            .buckets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(Buckets::new(config));
    }

    fn config(&self) -> RateLimitsConfig {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn buckets_now(&self) -> Arc<Buckets> {
        Arc::clone(
            &self
                .buckets
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> Vec<IpAddr> {
        self.config().trusted_proxies
    }

    /// Counts a request from `address` against the per-address bucket.
    pub fn check_address(&self, address: IpAddr) -> Result<Option<Allowance>, Refusal> {
        if !self.config().enabled {
            return Ok(None);
        }
        self.take(&self.buckets_now().addresses, &address).map(Some)
    }

    /// Counts a request of `class` by the key whose secret hashes to `key_hash`.
    pub fn check_key(
        &self,
        key_hash: &[u8; 32],
        class: RouteClass,
    ) -> Result<Option<Allowance>, Refusal> {
        if !self.config().enabled {
            return Ok(None);
        }
        let buckets = self.buckets_now();
        self.take(&buckets.keys[class as usize], key_hash).map(Some)
    }

    /// Counts an asset upload by the key whose secret hashes to `key_hash`.
    pub fn check_upload(&self, key_hash: &[u8; 32]) -> Result<Option<Allowance>, Refusal> {
        if !self.config().enabled {
            return Ok(None);
        }
        self.take(&self.buckets_now().uploads, key_hash).map(Some)
    }

    fn take<K: Clone + Hash + Eq>(
        &self,
        limiter: &Keyed<K>,
        key: &K,
    ) -> Result<Allowance, Refusal> {
        match limiter.check_key(key) {
            Ok(state) => Ok(Allowance {
                limit: state.quota().burst_size().get(),
                remaining: state.remaining_burst_capacity(),
            }),
            Err(not_until) => Err(Refusal {
                limit: not_until.quota().burst_size().get(),
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
        }
    }

    /// Drops the buckets that have refilled completely; returns how many are left.
    pub fn sweep(&self) -> usize {
        let buckets = self.buckets_now();
        buckets.addresses.retain_recent();
        buckets.addresses.shrink_to_fit();
        buckets.uploads.retain_recent();
        buckets.uploads.shrink_to_fit();
        for limiter in &buckets.keys {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.buckets()
    }

    /// Buckets held now.
    pub fn buckets(&self) -> usize {
        let buckets = self.buckets_now();
        buckets.addresses.len()
            + buckets.uploads.len()
            + buckets.keys.iter().map(Keyed::len).sum::<usize>()
    }

    /// Sweeps every `sweep_secs` until the runtime shuts down.
    pub fn spawn_sweeper(self: Arc<RateLimits>) {
        tokio::spawn(async move {
            loop {
                let every = Duration::from_secs(self.config().sweep_secs);
                tokio::time::sleep(every).await;
                let left = self.sweep();
                tracing::debug!(buckets = left, "rate-limit buckets swept");
            }
        });
    }
}

/// A sustained rate with a burst; the configuration guarantees both are positive.
fn quota(rate: Rate) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate.per_second);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn config(burst: u32) -> RateLimitsConfig {
        let mut config = crate::config::Config::load(None).unwrap().rate_limits;
        config.enabled = true;
        // One request an hour once the burst is spent: no refill during the test.
        let slow = Rate {
            per_second: 1.0 / 3600.0,
            burst,
        };
        config.read = slow;
        config.write = slow;
        config.address = slow;
        config
    }

    #[test]
    fn a_burst_passes_then_the_next_request_waits_for_its_token() {
        let limits = RateLimits::new(&config(3));
        for remaining in [2, 1, 0] {
            let allowance = limits
                .check_key(&[1; 32], RouteClass::Read)
                .unwrap()
                .unwrap();
            assert_eq!(
                allowance,
                Allowance {
                    limit: 3,
                    remaining
                }
            );
        }
        let refusal = limits.check_key(&[1; 32], RouteClass::Read).unwrap_err();
        assert_eq!(refusal.limit, 3);
        let wait = refusal.retry_after.as_secs_f64();
        assert!((3500.0..=3600.0).contains(&wait), "{wait}");

        // Other classes, keys and addresses have buckets of their own.
        assert!(limits.check_key(&[1; 32], RouteClass::Write).is_ok());
        assert!(limits.check_key(&[2; 32], RouteClass::Read).is_ok());
        assert!(
            limits
                .check_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .is_ok()
        );
        assert_eq!(limits.buckets(), 4);
    }

    #[test]
    fn a_reload_replaces_the_quotas_and_disabled_limits_allow_everything() {
        let limits = RateLimits::new(&config(1));
        assert!(limits.check_key(&[1; 32], RouteClass::Read).is_ok());
        assert!(limits.check_key(&[1; 32], RouteClass::Read).is_err());

        limits.set_config(&config(2));
        assert!(limits.check_key(&[1; 32], RouteClass::Read).is_ok());
        assert!(limits.check_key(&[1; 32], RouteClass::Read).is_ok());
        assert!(limits.check_key(&[1; 32], RouteClass::Read).is_err());

        let mut off = config(1);
        off.enabled = false;
        limits.set_config(&off);
        for _ in 0..10 {
            assert_eq!(limits.check_key(&[1; 32], RouteClass::Read), Ok(None));
        }
    }
}
