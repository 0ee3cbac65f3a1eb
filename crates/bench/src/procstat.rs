//! A process's CPU time and memory, read from `/proc` (Linux only).

use std::fs;

/// CPU time and resident memory of a process at one instant.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProcSample {
    /// User plus system CPU seconds since the process started (from `/proc/PID/stat`:
    /// whole clock ticks, 10 ms, charged to whichever task a tick finds running; threads
    /// that ended are included).
    pub cpu_s: f64,
    /// Nanoseconds on a CPU, summed over the live threads (first field of
    /// `/proc/PID/task/*/schedstat`, exact); `None` where schedstats are unavailable.
    pub run_ns: Option<u64>,
    /// Which threads `run_ns` covers: their count and a digest of their ids. Two samples
    /// with the same threads can be compared by `run_ns`.
    pub threads: (u32, u64),
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
    let threads = schedstats(pid);
    Some(ProcSample {
        cpu_s: cpu_seconds(&stat)?,
        run_ns: threads.as_ref().map(|t| t.run_ns),
        threads: threads.as_ref().map_or((0, 0), |t| (t.count, t.ids)),
        rss_kib: rss_kib(&status)?,
        wait_s: threads.map_or(0.0, |t| t.wait_ns as f64 / 1e9),
    })
}

impl ProcSample {
    /// CPU seconds used since `earlier`: exact (schedstat) when both samples saw the
    /// same threads, else from the clock ticks of `/proc/PID/stat` (a thread that ended
    /// in between takes its schedstat with it, the ticks do not).
    pub fn cpu_since(&self, earlier: &ProcSample) -> f64 {
        match (earlier.run_ns, self.run_ns) {
            (Some(a), Some(b)) if self.threads == earlier.threads && b >= a => (b - a) as f64 / 1e9,
            _ => (self.cpu_s - earlier.cpu_s).max(0.0),
        }
    }
}

/// schedstat summed over a process's live threads.
struct Schedstats {
    /// Time on a CPU (first field), ns.
    run_ns: u64,
    /// Time runnable but waiting for a CPU (second field), ns.
    wait_ns: u64,
    /// How many threads.
    count: u32,
    /// A digest of the thread ids (a thread replaced by another changes it).
    ids: u64,
}

/// `None` when `/proc/PID/task/*/schedstat` cannot be read (no schedstats, no process).
fn schedstats(pid: u32) -> Option<Schedstats> {
    let mut sum = Schedstats {
        run_ns: 0,
        wait_ns: 0,
        count: 0,
        ids: 0,
    };
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(t) = fs::read_to_string(entry.path().join("schedstat")) else {
            // The thread ended while the folder was read: the set is not comparable.
            sum.ids = sum.ids.wrapping_add(1);
            continue;
        };
        let mut fields = t
            .split_ascii_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        sum.run_ns += fields.next()?;
        sum.wait_ns += fields.next().unwrap_or(0);
        sum.count += 1;
        let tid: u64 = entry.file_name().to_str()?.parse().ok()?;
        // Order-independent, and a different set of ids almost surely differs.
        sum.ids = sum
            .ids
            .wrapping_add(tid.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    Some(sum)
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

    #[test]
    fn cpu_since_counts_this_threads_work() {
        let a = sample_self().expect("own /proc entry");
        // Busy for a while: far more than one 10 ms tick.
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let b = sample_self().expect("own /proc entry");
        let used = b.cpu_since(&a);
        assert!(used > 0.0 && used < 10.0, "{used}");
        assert_eq!(a.cpu_since(&a), 0.0);
    }

    #[test]
    fn cpu_since_falls_back_to_ticks_when_threads_change() {
        let a = ProcSample {
            cpu_s: 1.0,
            run_ns: Some(1_000_000_000),
            threads: (2, 7),
            rss_kib: 1,
            wait_s: 0.0,
        };
        let same = ProcSample {
            cpu_s: 1.5,
            run_ns: Some(1_250_000_000),
            ..a
        };
        assert_eq!(same.cpu_since(&a), 0.25);
        let other = ProcSample {
            threads: (1, 3),
            ..same
        };
        assert_eq!(other.cpu_since(&a), 0.5);
    }
}
