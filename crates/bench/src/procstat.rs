//! A process's CPU time and memory, read from `/proc` (Linux only).

use std::fs;

/// CPU time and resident memory of a process at one instant.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProcSample {
    /// User plus system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Seconds its threads spent runnable but waiting for a CPU (from
    /// `/proc/PID/task/*/schedstat`; 0 where schedstats are unavailable). On a shared
    /// machine this shows how much other work held the broker back.
    pub wait_s: f64,
}

/// Samples `pid`; `None` when the process does not exist or /proc cannot be read.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_s: cpu_seconds(&stat)?,
        rss_kib: rss_kib(&status)?,
        wait_s: wait_seconds(pid),
    })
}

/// Sum of the run-queue wait (second field of schedstat, ns) over the live threads.
fn wait_seconds(pid: u32) -> f64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut ns = 0u64;
    for entry in dir.flatten() {
        if let Ok(t) = fs::read_to_string(entry.path().join("schedstat")) {
            ns += t
                .split_ascii_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// Samples this process.
pub fn sample_self() -> Option<ProcSample> {
    sample(std::process::id())
}

/// Clock ticks per second for utime/stime. Linux has used 100 on every architecture
/// for user-visible ticks (USER_HZ) for decades; reading it would need `sysconf`.
const USER_HZ: f64 = 100.0;

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in seconds. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // `rest` starts at field 3 (state); utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// VmRSS of a `/proc/PID/status` text, KiB.
fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 200";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn parses_rss() {
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
    }

    #[test]
    fn samples_itself() {
        let s = sample_self().expect("own /proc entry");
        assert!(s.rss_kib > 0);
    }
}
