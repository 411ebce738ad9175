//! Memory of the rate limiter's state for many distinct client addresses: one bucket per
//! address, as a flood from a botnet (or a large NAT-less user base) would create.
//!
//!     cargo run --example limiter_memory [ADDRESSES]   (default 1,000,000)
//!
//! Prints one JSON line: the addresses, the buckets held, resident memory before and after,
//! the bytes per bucket, the check rate, and the buckets left after a sweep (with the default
//! quotas one request leaves a bucket that refills at once, so a sweep drops them all).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use nexus_canvasd::config::Config;
use nexus_canvasd::limits::RateLimits;
use nexus_canvasd::telemetry::host::ProcessStats;

fn main() {
    let addresses: u32 = std::env::args()
        .nth(1)
        .map(|count| count.parse().expect("ADDRESSES is a whole number"))
        .unwrap_or(1_000_000);
    let mut config = Config::load(None)
        .expect("the embedded defaults load")
        .rate_limits;
    config.enabled = true;

    let limits = RateLimits::new(&config);
    let before = resident();
    let started = Instant::now();
    for n in 0..addresses {
        // Distinct addresses from 10.0.0.0 on.
        let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        limits
            .check_address(address)
            .expect("one request is within any quota");
    }
    let elapsed = started.elapsed();
    let buckets = limits.buckets();
    let after = resident();
    let after_sweep = limits.sweep();

    println!(
        "{{\"addresses\":{addresses},\"buckets\":{buckets},\"rss_before_bytes\":{before},\
         \"rss_after_bytes\":{after},\"bytes_per_bucket\":{:.0},\"checks_per_second\":{:.0},\
         \"buckets_after_sweep\":{after_sweep}}}",
        (after - before) as f64 / buckets.max(1) as f64,
        f64::from(addresses) / elapsed.as_secs_f64()
    );
}

fn resident() -> u64 {
    ProcessStats::read()
        .resident_bytes
        .expect("/proc/self/status is readable")
}
