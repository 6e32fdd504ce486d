//! The standard `process_*` metrics every Prometheus client library exports
//! (CPU, memory, open files against their limit, threads, start time), so
//! that the dashboards and alerts an on-call engineer already has for any
//! daemon work on the relay too.
//!
//! Why our own and not the `prometheus` crate's `process` feature: that one
//! rounds CPU time down to whole seconds, and reads the boot time from
//! `/proc/stat` only, which the shipped unit hides (`ProcSubset=pid`), so its
//! start time would be 1970.
//!
//! Guarantees: read on each scrape, from `/proc/self`, `/proc/stat` and the
//! kernel's clocks and limits only; a figure that cannot be read (not
//! Linux, `/proc` not mounted) is left out of the scrape rather than
//! exported as 0. The start time is computed as client_golang's collector
//! computes it at each scrape (the kernel's boot time plus the process's
//! start in clock ticks after it), so it agrees with node_exporter's boot
//! time and follows a step of the wall clock (the Python and Rust client
//! libraries read the boot time once and do not); where it cannot be read
//! it stays the wall clock at start.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge};

use super::saturating_i64;
use rustix::process::{Resource, getrlimit};
use rustix::time::{ClockId, Timespec, clock_gettime};

/// The process figures, as the Prometheus client libraries name them.
#[derive(Clone)]
pub struct ProcessCollector {
    cpu_seconds: Counter,
    open_fds: IntGauge,
    max_fds: IntGauge,
    resident_bytes: IntGauge,
    virtual_bytes: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
    /// Two scrapes at once must not both add the same CPU time to the counter.
    refreshing: Arc<Mutex<()>>,
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        let start_time = float_gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        );
        if let Ok(since_epoch) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            start_time.set(since_epoch.as_secs_f64());
        }
        ProcessCollector {
            cpu_seconds: Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )
            .unwrap_or_else(|e| panic!("process_cpu_seconds_total: {e}")), // ok: constant name
            open_fds: int_gauge("process_open_fds", "Number of open file descriptors."),
            max_fds: int_gauge(
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit).",
            ),
            resident_bytes: int_gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_bytes: int_gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            threads: int_gauge("process_threads", "Number of OS threads in the process."),
            start_time,
            refreshing: Arc::new(Mutex::new(())),
        }
    }

    fn metrics(&self) -> [&dyn Collector; 7] {
        [
            &self.cpu_seconds,
            &self.open_fds,
            &self.max_fds,
            &self.resident_bytes,
            &self.virtual_bytes,
            &self.threads,
            &self.start_time,
        ]
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        ProcessCollector::new()
    }
}

fn int_gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}")) // ok: constant names
}

fn float_gauge(name: &str, help: &str) -> Gauge {
    Gauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}")) // ok: constant names
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.metrics().into_iter().flat_map(|m| m.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one_at_a_time = self
            .refreshing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut families = Vec::with_capacity(7);
        let cpu = clock_gettime(ClockId::ProcessCPUTime);
        let cpu = cpu.tv_sec as f64 + cpu.tv_nsec as f64 / 1e9;
        let behind = cpu - self.cpu_seconds.get();
        if behind > 0.0 {
            self.cpu_seconds.inc_by(behind);
        }
        families.extend(self.cpu_seconds.collect());
        let limit = getrlimit(Resource::Nofile).current;
        let listed = std::fs::read_dir("/proc/self/fd").map(|entries| entries.count() as u64);
        if let Some(open) = open_fds(listed, limit) {
            self.open_fds.set(saturating_i64(open));
            families.extend(self.open_fds.collect());
        }
        if let Some(limit) = limit {
            self.max_fds.set(saturating_i64(limit));
            families.extend(self.max_fds.collect());
        }
        if let Ok(text) = std::fs::read_to_string("/proc/self/status") {
            let status = ProcStatus::parse(&text);
            for (gauge, value) in [
                (&self.resident_bytes, status.resident_bytes),
                (&self.virtual_bytes, status.virtual_bytes),
                (&self.threads, status.threads),
            ] {
                if let Some(value) = value {
                    gauge.set(saturating_i64(value));
                    families.extend(gauge.collect());
                }
            }
        }
        // Left as it was when unreadable: a value that came and went between
        // scrapes would read as a restart to `changes()`.
        if let Some(started) = started_by_proc() {
            self.start_time.set(started);
        }
        families.extend(self.start_time.collect());
        families
    }
}

/// This process's start as the kernel says it now, `None` if `/proc/self`
/// cannot be read.
fn started_by_proc() -> Option<f64> {
    let self_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| boot_time_in(&text))
        .or_else(boot_time_from_clocks)?;
    start_time(&self_stat, boot, rustix::param::clock_ticks_per_second())
}

/// `process_start_time_seconds` as client_golang's collector computes it:
/// `btime` (whole seconds, which the kernel moves with every step of the
/// wall clock) plus `starttime` of `/proc/self/stat` (clock ticks after
/// boot). Both are whole numbers that only a step changes, so the value is
/// the same at every scrape until one.
fn start_time(self_stat: &str, boot_time: u64, ticks_per_second: u64) -> Option<f64> {
    if ticks_per_second == 0 {
        return None;
    }
    // The name, in parentheses, may itself hold spaces and `)`.
    let after_name = &self_stat[self_stat.rfind(')')? + 1..];
    // The fields after the name start at the 3rd; `starttime` is the 22nd.
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    Some(boot_time as f64 + ticks as f64 / ticks_per_second as f64)
}

/// `btime` of `/proc/stat`.
fn boot_time_in(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The kernel's `btime` where `/proc/stat` is hidden (the shipped unit's
/// `ProcSubset=pid`): the kernel computes it as the wall clock less the boot
/// clock, truncated to seconds, which is what this reads. The wall clock is
/// read between two reads of the boot clock, and read again when the two
/// differences fall in different seconds, so that the nanoseconds between
/// reads never move the result by one (which `changes()` would count).
fn boot_time_from_clocks() -> Option<u64> {
    for _ in 0..3 {
        let before = nanos(clock_gettime(ClockId::Boottime));
        let wall = nanos(clock_gettime(ClockId::Realtime));
        let after = nanos(clock_gettime(ClockId::Boottime));
        let latest = (wall - after).div_euclid(NANOS_PER_SECOND);
        let earliest = (wall - before).div_euclid(NANOS_PER_SECOND);
        if latest == earliest {
            return u64::try_from(latest).ok();
        }
    }
    None
}

const NANOS_PER_SECOND: i128 = 1_000_000_000;

fn nanos(t: Timespec) -> i128 {
    i128::from(t.tv_sec) * NANOS_PER_SECOND + i128::from(t.tv_nsec)
}

/// `process_open_fds` from the count of `/proc/self/fd`'s entries: at the
/// limit that directory cannot be opened (`EMFILE`), and the process is at
/// its limit, which is what is exported then. Left out, the series went
/// stale and `CallrelayOpenFilesNearLimit` resolved at the very moment new
/// connections began to wait.
fn open_fds(listed: std::io::Result<u64>, limit: Option<u64>) -> Option<u64> {
    match listed {
        Ok(open) => Some(open),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) => limit,
        Err(_) => None,
    }
}

/// The lines of `/proc/self/status` these metrics need.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProcStatus {
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    threads: Option<u64>,
}

impl ProcStatus {
    fn parse(text: &str) -> ProcStatus {
        let mut status = ProcStatus::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "VmRSS" => status.resident_bytes = kibibytes(value),
                "VmSize" => status.virtual_bytes = kibibytes(value),
                "Threads" => status.threads = value.parse().ok(),
                _ => {}
            }
        }
        status
    }
}

/// `"1234 kB"` (the kernel's unit is KiB whatever it says) → bytes.
fn kibibytes(value: &str) -> Option<u64> {
    let number = value.strip_suffix("kB")?.trim();
    number.parse::<u64>().ok()?.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_open_file_limit_the_limit_is_the_count() {
        let emfile = || std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert_eq!(open_fds(Ok(17), Some(1024)), Some(17));
        assert_eq!(open_fds(Err(emfile()), Some(1024)), Some(1024));
        assert_eq!(open_fds(Err(emfile()), None), None);
        let absent = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            open_fds(Err(absent), Some(1024)),
            None,
            "no /proc: left out"
        );
    }

    #[test]
    fn status_lines_are_read_in_bytes_and_others_ignored() {
        let text = "Name:\tcallrelay\nVmPeak:\t  999 kB\nVmSize:\t  204800 kB\n\
                    VmRSS:\t   10240 kB\nThreads:\t12\nSigQ:\t0/95000\n";
        assert_eq!(
            ProcStatus::parse(text),
            ProcStatus {
                resident_bytes: Some(10_485_760),
                virtual_bytes: Some(209_715_200),
                threads: Some(12),
            }
        );
    }

    #[test]
    fn a_missing_or_unreadable_line_is_left_out() {
        // A kernel thread's status has no Vm lines.
        let status = ProcStatus::parse("Name:\tkthreadd\nThreads:\tmany\nVmRSS:\t12 MB\n");
        assert_eq!(status, ProcStatus::default());
    }

    #[test]
    fn this_process_is_described_with_the_standard_names() {
        let collector = ProcessCollector::new();
        let families = collector.collect();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for name in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_threads",
            "process_start_time_seconds",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let described: Vec<&str> = collector
            .desc()
            .iter()
            .map(|d| d.fq_name.as_str())
            .collect();
        assert_eq!(described.len(), 7, "{described:?}");
    }

    #[test]
    fn cpu_time_counts_fractions_of_a_second() {
        let collector = ProcessCollector::new();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        collector.collect();
        let cpu = collector.cpu_seconds.get();
        assert!(cpu > 0.0 && cpu.fract() != 0.0, "cpu {cpu}");
        // A second scrape never goes back, nor counts the time twice.
        collector.collect();
        let again = collector.cpu_seconds.get();
        let now = clock_gettime(ClockId::ProcessCPUTime);
        let now = now.tv_sec as f64 + now.tv_nsec as f64 / 1e9;
        assert!(
            cpu <= again && again <= now,
            "{cpu} then {again}, the process has used {now}"
        );
    }

    #[test]
    fn the_start_time_is_the_boot_time_plus_the_start_in_ticks() {
        // A name holding `) ` and spaces: the fields are counted after the
        // last `)`. starttime (the 22nd field) is 123456 ticks.
        let self_stat = "4242 (relay) S (x) S 1 4242 4242 0 -1 4194560 1543 0 0 0 12 7 0 0 20 0 \
                         9 0 123456 1048576000 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0\n";
        let proc_stat = "cpu  10 0 5 900 0 0 0 0 0 0\ncpu0 10 0 5 900 0 0 0 0 0 0\n\
                         intr 100 0 1\nctxt 999\nbtime 1700000000\nprocesses 4321\n";
        let boot = boot_time_in(proc_stat).expect("btime");
        assert_eq!(boot, 1_700_000_000);
        assert_eq!(start_time(self_stat, boot, 100), Some(1_700_001_234.56));
        assert_eq!(start_time(self_stat, boot, 0), None);
        assert_eq!(boot_time_in("cpu  1 2 3\nbtime soon\n"), None);
        assert_eq!(boot_time_in("cpu  1 2 3\n"), None);
        // Cut short before starttime, or no name at all.
        assert_eq!(start_time("4242 (relay) S 1 4242", boot, 100), None);
        assert_eq!(start_time("4242 relay S", boot, 100), None);
    }

    #[test]
    fn the_boot_time_from_the_clocks_is_the_kernels() {
        let boot = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        assert_eq!(boot_time_from_clocks(), boot_time_in(&boot));
    }

    /// This process's start as the standard collector reads it, parsed here
    /// on its own rather than through the code under test.
    fn started_by_proc() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        let after_name = &stat[stat.rfind(')').expect("the name's end") + 1..];
        let ticks: f64 = after_name
            .split_whitespace()
            .nth(19)
            .expect("starttime")
            .parse()
            .expect("a number");
        let boot = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let btime: f64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .expect("btime")
            .trim()
            .parse()
            .expect("a number");
        btime + ticks / 100.0
    }

    #[test]
    fn a_start_time_taken_while_the_clock_was_wrong_is_corrected_at_the_next_scrape() {
        let collector = ProcessCollector::new();
        // As if the wall clock had been hours behind when the relay started,
        // then stepped by NTP.
        let taken_at_start = collector.start_time.get();
        collector.start_time.set(taken_at_start - 3.0 * 3600.0);
        collector.collect();
        let exported = collector.start_time.get();
        let proc = started_by_proc();
        assert!(
            (exported - proc).abs() <= 0.01,
            "exported {exported}, /proc says {proc}"
        );
        // Whole seconds plus whole ticks: the same at every scrape until the
        // clock is stepped, so `changes()` sees no new process.
        collector.collect();
        assert_eq!(collector.start_time.get(), exported);
    }

    #[test]
    fn a_value_past_i64_is_shown_as_its_largest() {
        assert_eq!(saturating_i64(65_536), 65_536);
        assert_eq!(saturating_i64(u64::MAX), i64::MAX);
    }
}
