//! Rate limits: a token bucket (GCRA, from `governor`) per API key and route class, and one
//! per client address over every route that needs a key.
//!
//! The address bucket is checked first and needs no database: a flood of missing or invalid
//! keys is refused before any lookup. Buckets live in a moka cache that drops those idle for
//! `idle_secs`, so memory follows the clients active now, not every client ever seen. A
//! configuration reload replaces the quotas and starts every bucket afresh.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use moka::sync::Cache;

use crate::config::{Rate, RateLimitsConfig};
use crate::telemetry::traffic::RouteClass;

type Bucket = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    StateInformationMiddleware,
>;

/// Whose requests a bucket counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    /// An API key, by the hash of its secret (never the secret itself), for one route class.
    Key([u8; 32], RouteClass),
    Address(IpAddr),
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
    buckets: Cache<Subject, Arc<Bucket>>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(config: &RateLimitsConfig) -> RateLimits {
        RateLimits {
            buckets: Cache::builder()
                .time_to_idle(Duration::from_secs(config.idle_secs))
                .build(),
            config: RwLock::new(config.clone()),
            clock: DefaultClock::default(),
        }
    }

    /// Applies new quotas; the buckets start afresh under them. (The idle time stays: moka
    /// fixes it when the cache is built.)
    pub fn set_config(&self, config: &RateLimitsConfig) {
        *self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config.clone();
        self.buckets.invalidate_all();
    }

    fn config(&self) -> RateLimitsConfig {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> Vec<IpAddr> {
        self.config().trusted_proxies
    }

    /// Counts a request from `address` against the per-address bucket.
    pub fn check_address(&self, address: IpAddr) -> Result<Option<Allowance>, Refusal> {
        let config = self.config();
        if !config.enabled {
            return Ok(None);
        }
        self.take(Subject::Address(address), config.address)
            .map(Some)
    }

    /// Counts a request of `class` by the key whose secret hashes to `key_hash`.
    pub fn check_key(
        &self,
        key_hash: &[u8; 32],
        class: RouteClass,
    ) -> Result<Option<Allowance>, Refusal> {
        let config = self.config();
        if !config.enabled {
            return Ok(None);
        }
        let rate = match class {
            RouteClass::Read => config.read,
            RouteClass::Write => config.write,
            RouteClass::Inference => config.inference,
            RouteClass::Admin => config.admin,
        };
        self.take(Subject::Key(*key_hash, class), rate).map(Some)
    }

    fn take(&self, subject: Subject, rate: Rate) -> Result<Allowance, Refusal> {
        let quota = quota(rate);
        let limit = quota.burst_size().get();
        let bucket = self.buckets.get_with(subject, || {
            Arc::new(RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>())
        });
        match bucket.check() {
            Ok(state) => Ok(Allowance {
                limit,
                remaining: state.remaining_burst_capacity(),
            }),
            Err(not_until) => Err(Refusal {
                limit,
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
        }
    }

    /// Buckets held now (after pending evictions), for the memory figures.
    pub fn buckets(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
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
