//! Rolling windows of what the daemon served and how the host held up: the figures behind
//! the SLOs, the alerts and the admin status.
//!
//! Time is cut into 10-second slots kept in rings covering the longest window (an hour), so a
//! window of any whole number of slots is summed in one pass and memory stays fixed. Every
//! method takes `now` (Unix seconds) from its caller, which makes the windows testable with a
//! controlled clock.
//!
//! Latencies go into fixed buckets whose bounds include the SLO thresholds; a percentile is
//! reported as the upper bound of the bucket that holds it, so it never understates a latency
//! by more than one bucket and a threshold that is a bound compares exactly. Beyond the last
//! bound (60 s) a percentile reads as that bound: JSON has no infinity, and `null` already
//! means "no requests".

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

/// Width of one slot, in seconds; windows are whole numbers of slots.
pub const SLOT_SECS: u64 = 10;
/// The longest window the rings keep.
pub const LONGEST_WINDOW_SECS: u64 = 3600;
const SLOTS: usize = (LONGEST_WINDOW_SECS / SLOT_SECS) as usize;

/// Upper bounds of the latency buckets, in milliseconds; slower requests fall in a last,
/// open bucket. 200 ms and 15 s (the launch checklist's targets) are bounds.
const LATENCY_BOUNDS_MS: [u64; 38] = [
    1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400,
    500, 600, 800, 1_000, 1_500, 2_000, 3_000, 5_000, 8_000, 10_000, 15_000, 20_000, 30_000,
    60_000,
];
const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// What kind of work a route does; each class has its own latency objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RouteClass {
    Read,
    Write,
    Inference,
    Admin,
}

impl RouteClass {
    pub const ALL: [RouteClass; 4] = [
        RouteClass::Read,
        RouteClass::Write,
        RouteClass::Inference,
        RouteClass::Admin,
    ];

    fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Read => "read",
            RouteClass::Write => "write",
            RouteClass::Inference => "inference",
            RouteClass::Admin => "admin",
        }
    }
}

#[derive(Clone, Copy)]
struct ClassSlot {
    requests: u64,
    errors: u64,
    latency: [u32; LATENCY_BUCKETS],
}

impl ClassSlot {
    const EMPTY: ClassSlot = ClassSlot {
        requests: 0,
        errors: 0,
        latency: [0; LATENCY_BUCKETS],
    };

    fn add(&mut self, other: &ClassSlot) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (sum, count) in self.latency.iter_mut().zip(other.latency) {
            *sum += count;
        }
    }

    /// The latency at quantile `q` (0 to 1), in seconds: the bound of its bucket.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|&count| u64::from(count)).sum();
        if total == 0 {
            return None;
        }
        // The rank of the request at q, 1-based: p99 of 100 requests is the 99th slowest.
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in self.latency.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                let bound = LATENCY_BOUNDS_MS[bucket.min(LATENCY_BOUNDS_MS.len() - 1)];
                return Some(bound as f64 / 1000.0);
            }
        }
        None
    }
}

/// One slot of a ring, tagged with the slot number it holds so stale slots read as empty.
#[derive(Clone, Copy)]
struct Tagged<T> {
    slot: u64,
    value: T,
}

/// A fixed ring of slots over the last hour.
struct Ring<T: Copy> {
    slots: Vec<Tagged<T>>,
    empty: T,
}

impl<T: Copy> Ring<T> {
    fn new(empty: T) -> Ring<T> {
        Ring {
            slots: vec![
                Tagged {
                    slot: u64::MAX,
                    value: empty,
                };
                SLOTS
            ],
            empty,
        }
    }

    /// The slot for `now`, cleared first if it still holds an older slot's values.
    fn current(&mut self, now: u64) -> &mut T {
        let slot = now / SLOT_SECS;
        let entry = &mut self.slots[(slot % SLOTS as u64) as usize];
        if entry.slot != slot {
            *entry = Tagged {
                slot,
                value: self.empty,
            };
        }
        &mut entry.value
    }

    /// The slots of the last `window` seconds up to `now`, oldest and newest included.
    fn window(&self, window: Duration, now: u64) -> impl Iterator<Item = &T> {
        let newest = now / SLOT_SECS;
        let count = (window.as_secs() / SLOT_SECS).clamp(1, SLOTS as u64);
        let oldest = (newest + 1).saturating_sub(count);
        self.slots
            .iter()
            .filter(move |entry| (oldest..=newest).contains(&entry.slot))
            .map(|entry| &entry.value)
    }
}

/// Requests per class over time.
pub struct Traffic {
    ring: Mutex<Ring<[ClassSlot; 4]>>,
}

/// One class over one window.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct ClassSummary {
    pub requests: u64,
    pub errors: u64,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}

/// All classes over one window.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct TrafficSummary {
    pub window_seconds: u64,
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// `errors / requests`; absent without requests.
    pub error_rate: Option<f64>,
    pub requests_per_second: f64,
    pub classes: BTreeMap<RouteClass, ClassSummary>,
}

impl Default for Traffic {
    fn default() -> Traffic {
        Traffic {
            ring: Mutex::new(Ring::new([ClassSlot::EMPTY; 4])),
        }
    }
}

impl Traffic {
    /// Counts one answered request.
    pub fn record(&self, class: RouteClass, latency: Duration, server_error: bool, now: u64) {
        let millis = latency.as_secs_f64() * 1000.0;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|&bound| millis <= bound as f64)
            .unwrap_or(LATENCY_BOUNDS_MS.len());

        let mut ring = self
            .ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = &mut ring.current(now)[class.index()];
        slot.requests += 1;
        slot.errors += u64::from(server_error);
        slot.latency[bucket] += 1;
    }

    pub fn summary(&self, window: Duration, now: u64) -> TrafficSummary {
        let mut totals = [ClassSlot::EMPTY; 4];
        {
            let ring = self
                .ring
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for slot in ring.window(window, now) {
                for (total, class) in totals.iter_mut().zip(slot) {
                    total.add(class);
                }
            }
        }

        let requests: u64 = totals.iter().map(|class| class.requests).sum();
        let errors: u64 = totals.iter().map(|class| class.errors).sum();
        let classes = RouteClass::ALL
            .into_iter()
            .map(|class| {
                let total = &totals[class.index()];
                let summary = ClassSummary {
                    requests: total.requests,
                    errors: total.errors,
                    p50_seconds: total.quantile(0.50),
                    p99_seconds: total.quantile(0.99),
                };
                (class, summary)
            })
            .collect();
        TrafficSummary {
            window_seconds: window.as_secs(),
            requests,
            errors,
            error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
            requests_per_second: requests as f64 / window.as_secs().max(1) as f64,
            classes,
        }
    }
}

/// A sampled quantity (CPU busy, VRAM used) over time, as averages per window.
pub struct Samples {
    ring: Mutex<Ring<(f64, u32)>>,
}

impl Default for Samples {
    fn default() -> Samples {
        Samples {
            ring: Mutex::new(Ring::new((0.0, 0))),
        }
    }
}

impl Samples {
    pub fn record(&self, value: f64, now: u64) {
        let mut ring = self
            .ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (sum, count) = ring.current(now);
        *sum += value;
        *count += 1;
    }

    /// The mean of the samples in the window; absent without samples.
    pub fn mean(&self, window: Duration, now: u64) -> Option<f64> {
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (sum, count) = ring
            .window(window, now)
            .fold((0.0, 0u32), |(sum, count), (s, c)| (sum + s, count + c));
        (count > 0).then(|| sum / f64::from(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const T0: u64 = 1_800_000_000;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn windows_count_only_their_own_slots() {
        let traffic = Traffic::default();
        traffic.record(RouteClass::Read, ms(5), false, T0);
        traffic.record(RouteClass::Read, ms(5), true, T0 + 30);
        traffic.record(RouteClass::Write, ms(5), false, T0 + 59);

        let now = T0 + 59;
        let last_minute = traffic.summary(MINUTE, now);
        assert_eq!(last_minute.requests, 3);
        assert_eq!(last_minute.errors, 1);
        assert_eq!(last_minute.error_rate, Some(1.0 / 3.0));
        assert_eq!(last_minute.classes[&RouteClass::Read].requests, 2);
        assert_eq!(last_minute.classes[&RouteClass::Write].requests, 1);

        // Thirty seconds on, the first slot has left a one-minute window.
        let later = traffic.summary(MINUTE, T0 + 60);
        assert_eq!(later.requests, 2);

        // An hour on, the ring reuses the slot of the write for a new request, and the
        // error's slot is out of the window: nothing old is counted again.
        let hour_later = T0 + LONGEST_WINDOW_SECS + 59;
        traffic.record(RouteClass::Read, ms(5), false, hour_later);
        let summary = traffic.summary(Duration::from_secs(LONGEST_WINDOW_SECS), hour_later);
        assert_eq!(summary.requests, 1);
        assert_eq!(summary.errors, 0);
    }

    #[test]
    fn percentiles_are_bucket_bounds() {
        let traffic = Traffic::default();
        for _ in 0..98 {
            traffic.record(RouteClass::Read, ms(3), false, T0);
        }
        traffic.record(RouteClass::Read, ms(180), false, T0);
        traffic.record(RouteClass::Read, ms(210), false, T0);

        let read = &traffic.summary(MINUTE, T0).classes[&RouteClass::Read];
        assert_eq!(read.p50_seconds, Some(0.003));
        // The 99th of 100 is the 180 ms request, in the bucket up to 200 ms.
        assert_eq!(read.p99_seconds, Some(0.2));

        traffic.record(RouteClass::Read, ms(90_000), false, T0);
        let read = &traffic.summary(MINUTE, T0).classes[&RouteClass::Read];
        assert_eq!(read.p99_seconds, Some(0.25));

        let empty = &traffic.summary(MINUTE, T0).classes[&RouteClass::Write];
        assert_eq!(empty.p99_seconds, None);
    }

    #[test]
    fn samples_average_over_the_window() {
        let samples = Samples::default();
        assert_eq!(samples.mean(MINUTE, T0), None);
        samples.record(10.0, T0);
        samples.record(30.0, T0 + 20);
        assert_eq!(samples.mean(MINUTE, T0 + 20), Some(20.0));
        assert_eq!(samples.mean(MINUTE, T0 + 70), Some(30.0));
    }
}
