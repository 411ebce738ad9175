//! Figures as people read them: sizes, durations, latencies, shares, times of day, and each
//! alert's value in its own unit.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime};

/// `512 B`, `3.2 KiB`, `1.5 GiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// An uptime or age: `42s`, `5m 03s`, `4h 05m`, `3d 04h`.
pub fn duration(seconds: u64) -> String {
    let (days, hours, minutes, seconds) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds:02}s"),
        (0, _, _) => format!("{hours}h {minutes:02}m"),
        _ => format!("{days}d {hours:02}h"),
    }
}

/// A window of the daemon's, always whole minutes or hours there: `5 min`, `1 h`.
pub fn window(seconds: u64) -> String {
    match seconds {
        0 => "0 s".into(),
        s if s.is_multiple_of(3600) => format!("{} h", s / 3600),
        s if s.is_multiple_of(60) => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A latency in seconds: `3 ms`, `1.5 s`, `15 s`.
pub fn latency(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else {
        format!("{seconds:.0} s")
    }
}

/// A p99 of a class: absent without requests, and past the daemon's last latency bucket
/// (which it reports as null too) when there were requests.
pub fn quantile(seconds: Option<f64>, requests: u64) -> String {
    match seconds {
        Some(seconds) => latency(seconds),
        None if requests > 0 => "> 60 s".into(),
        None => "–".into(),
    }
}

/// A share given as a fraction, in percent: `0.10 %`.
pub fn fraction(share: f64) -> String {
    format!("{:.2} %", share * 100.0)
}

/// A figure already in percent: `12.3 %`.
pub fn percent(value: f64) -> String {
    format!("{value:.1} %")
}

/// Requests per second: `0.33/s`, `12.4/s`, `1520/s`.
pub fn rate(per_second: f64) -> String {
    if per_second < 10.0 {
        format!("{per_second:.2}/s")
    } else if per_second < 100.0 {
        format!("{per_second:.1}/s")
    } else {
        format!("{per_second:.0}/s")
    }
}

/// An alert's value or threshold in the unit of its figure.
pub fn alert_value(name: &str, value: f64) -> String {
    match name {
        "error_rate" => fraction(value),
        name if name.ends_with("_latency") => latency(value),
        "host_cpu" | "gpu_memory" => percent(value),
        _ => format!("{value:.4}"),
    }
}

/// An alert's figure, or why there is none: a latency alert that fires without a value has
/// its p99 past the daemon's last bucket (sent as null), otherwise there was nothing to
/// measure.
pub fn alert_figure(name: &str, value: Option<f64>, firing: bool) -> String {
    match value {
        Some(value) => alert_value(name, value),
        None if firing && name.ends_with("_latency") => "> 60 s".into(),
        None => "no data".into(),
    }
}

/// The time of day in UTC, with the date when it is not `now`'s day: `12:03:04`,
/// `05-01 12:03`.
pub fn time_of_day(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format = if at.date() == now.to_offset(time::UtcOffset::UTC).date() {
        format_description!("[hour]:[minute]:[second]")
    } else {
        format_description!("[month]-[day] [hour]:[minute]")
    };
    // Formatting a UTC time with these fixed items has no way to fail.
    at.format(format).unwrap_or_default()
}

/// A daemon timestamp (RFC 3339) as [`time_of_day`]; shown as given when it does not parse.
pub fn timestamp(text: &str, now: OffsetDateTime) -> String {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_or_else(|_| text.to_string(), |at| time_of_day(at, now))
}

/// How long ago `at` was, for "since" texts: `35s`, `4m 10s`.
pub fn age(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let elapsed = (now - at).max(Duration::ZERO);
    duration(elapsed.whole_seconds().unsigned_abs())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(4096), "4.0 KiB");
        assert_eq!(bytes(150 * 1024 * 1024), "150 MiB");
        assert_eq!(bytes(143_771_000_000), "134 GiB");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(303), "5m 03s");
        assert_eq!(duration(4 * 3600 + 5 * 60 + 9), "4h 05m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600), "3d 04h");
    }

    #[test]
    fn latencies_shares_and_rates() {
        assert_eq!(latency(0.003), "3 ms");
        assert_eq!(latency(0.2), "200 ms");
        assert_eq!(latency(1.5), "1.5 s");
        assert_eq!(latency(15.0), "15 s");
        assert_eq!(quantile(None, 0), "–");
        assert_eq!(quantile(None, 3), "> 60 s");
        assert_eq!(fraction(0.001), "0.10 %");
        assert_eq!(rate(0.333), "0.33/s");
        assert_eq!(rate(1520.2), "1520/s");
        assert_eq!(alert_value("error_rate", 0.05), "5.00 %");
        assert_eq!(alert_value("read_latency", 0.25), "250 ms");
        assert_eq!(alert_value("gpu_memory", 80.0), "80.0 %");
        assert_eq!(alert_value("something_new", 2.0), "2.0000");
        assert_eq!(alert_figure("read_latency", None, true), "> 60 s");
        assert_eq!(alert_figure("read_latency", None, false), "no data");
        assert_eq!(alert_figure("host_cpu", None, true), "no data");
        assert_eq!(window(300), "5 min");
        assert_eq!(window(3600), "1 h");
        assert_eq!(window(90), "90 s");
    }

    #[test]
    fn times_of_day_in_utc() {
        let now = datetime!(2026-05-01 12:00:00 UTC);
        assert_eq!(timestamp("2026-05-01T11:58:03.250Z", now), "11:58:03");
        assert_eq!(timestamp("2026-04-30T23:10:00.000Z", now), "04-30 23:10");
        assert_eq!(timestamp("yesterday", now), "yesterday");
        assert_eq!(age(datetime!(2026-05-01 11:59:25 UTC), now), "35s");
        assert_eq!(age(datetime!(2026-05-01 12:00:05 UTC), now), "0s");
    }
}
