//! What the host and this process use, read from Linux's `/proc`.
//!
//! Every figure is optional: a file that cannot be read (another OS, a locked-down sandbox)
//! leaves its figure out rather than failing a scrape.

use std::fs;

use serde::Serialize;
use utoipa::ToSchema;

/// `/proc` counts CPU time in USER_HZ ticks, which Linux fixes at 100 per second for user
/// space on every architecture, whatever the kernel's own tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Default, Clone, Copy, Serialize, ToSchema)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    pub fn read() -> ProcessStats {
        ProcessStats {
            cpu_seconds: process_cpu_seconds(),
            resident_bytes: status_field("VmRSS:").map(|kib| kib * 1024),
            open_fds: fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as u64),
            max_fds: max_open_files(),
        }
    }
}

fn process_cpu_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields resume after the
    // last ')'. utime and stime are fields 14 and 15, so the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / TICKS_PER_SECOND)
}

/// A `kB` field of `/proc/self/status`, such as `VmRSS:`.
fn status_field(name: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

fn max_open_files() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    // Columns: the name (three words), the soft limit, the hard limit, the unit.
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Host CPU busy as a share of all cores, between two readings of `/proc/stat`.
#[derive(Default)]
pub struct CpuSampler {
    last: Option<CpuTimes>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuSampler {
    /// The share of CPU time spent busy since the previous call; `None` on the first call.
    pub fn sample(&mut self) -> Option<f64> {
        let now = read_cpu_times()?;
        let last = self.last.replace(now)?;
        let total = now.total.checked_sub(last.total)?;
        let busy = now.busy.checked_sub(last.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

fn read_cpu_times() -> Option<CpuTimes> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

/// The aggregate `cpu` line: user nice system idle iowait irq softirq steal (guest time is
/// already counted in user). Idle and I/O wait are the time not busy.
fn parse_cpu_line(line: &str) -> Option<CpuTimes> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields
        .take(8)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = values.iter().sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line_splits_busy_from_idle() {
        let times = parse_cpu_line("cpu  100 5 50 800 40 3 2 0 0 0").unwrap();
        assert_eq!(
            times,
            CpuTimes {
                busy: 160,
                total: 1000
            }
        );
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4"), None);
    }

    #[test]
    fn this_process_is_measured() {
        let stats = ProcessStats::read();
        assert!(stats.resident_bytes.unwrap() > 1024 * 1024);
        assert!(stats.open_fds.unwrap() >= 3);
        assert!(stats.max_fds.unwrap() >= stats.open_fds.unwrap());
        assert!(stats.cpu_seconds.unwrap() >= 0.0);

        let mut sampler = CpuSampler::default();
        assert_eq!(sampler.sample(), None);
        // Idle time counts too: the host's tick counters advance while this thread sleeps.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let share = sampler.sample().unwrap();
        assert!((0.0..=1.0).contains(&share), "{share}");
    }
}
