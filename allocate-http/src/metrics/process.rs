//! The standard `process_*` metrics, read from `/proc/self` (Linux only; elsewhere the
//! families are left out, as Prometheus' own client libraries do).

use std::fs;

/// What `/proc` says of this process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: u64,
    /// When the process started, in unix seconds.
    pub start_time_seconds: f64,
}

/// The process' metrics now, or `None` where `/proc/self` cannot be read.
pub fn read() -> Option<ProcessStats> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time_secs = boot_time_secs(&fs::read_to_string("/proc/stat").ok()?)?;
    let open_fds = fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = max_open_files(&fs::read_to_string("/proc/self/limits").ok()?)?;
    let units = Units {
        ticks_per_sec: rustix::param::clock_ticks_per_second() as f64,
        page_bytes: rustix::param::page_size() as u64,
    };
    parse_stat(&stat, units, boot_time_secs, open_fds, max_fds)
}

/// The kernel's units in `/proc/self/stat`.
#[derive(Clone, Copy, Debug)]
struct Units {
    ticks_per_sec: f64,
    page_bytes: u64,
}

/// Reads `/proc/self/stat` (proc(5)): the fields after the command's closing parenthesis
/// start at field 3; utime and stime are fields 14 and 15, starttime 22 and rss 24.
fn parse_stat(
    stat: &str,
    units: Units,
    boot_time_secs: u64,
    open_fds: u64,
    max_fds: u64,
) -> Option<ProcessStats> {
    let (_, after_command) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime) = (field(14)?, field(15)?);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / units.ticks_per_sec,
        resident_bytes: field(24)? * units.page_bytes,
        open_fds,
        max_fds,
        start_time_seconds: boot_time_secs as f64 + field(22)? as f64 / units.ticks_per_sec,
    })
}

/// The `btime` line of `/proc/stat`: when the machine booted, in unix seconds.
fn boot_time_secs(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of the `Max open files` line of `/proc/self/limits` (`unlimited`: the
/// largest number).
fn max_open_files(limits: &str) -> Option<u64> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        soft => soft.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_limits_and_boot_time_are_read_as_proc_5_has_them() {
        // A command with spaces and a parenthesis, as a process may name itself.
        let stat = "4242 (allocate (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 \
                    20 0 9 0 1000 123456789 2048 18446744073709551615";
        let units = Units {
            ticks_per_sec: 100.0,
            page_bytes: 4096,
        };
        let stats = parse_stat(stat, units, 1_700_000_000, 12, 1024).expect("parsed");
        assert_eq!(stats.cpu_seconds, 3.0);
        assert_eq!(stats.resident_bytes, 2048 * 4096);
        assert_eq!(stats.start_time_seconds, 1_700_000_010.0);
        assert_eq!((stats.open_fds, stats.max_fds), (12, 1024));
        assert_eq!(
            boot_time_secs("cpu 1 2\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn this_process_reads_itself() {
        let stats = read().expect("/proc/self is readable on Linux");
        assert!(
            stats.open_fds > 0 && stats.open_fds <= stats.max_fds,
            "{stats:?}"
        );
        assert!(
            stats.resident_bytes > 0 && stats.start_time_seconds > 1e9,
            "{stats:?}"
        );
    }
}
