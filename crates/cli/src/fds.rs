//! Room for many open sockets, prepared before the process starts its threads.
//!
//! Two things stand between a process and its 20,000th connection:
//!
//! - the open-file limit: often 1,024 by default (soft), while the hard limit allows far
//!   more. It is raised up to what the process will use, never above the hard limit (only
//!   an administrator can raise that).
//! - the descriptor table: Linux grows it by doubling when a new descriptor does not fit,
//!   and in a process with several threads each growth waits for an RCU grace period
//!   (`expand_fdtable` calls `synchronize_rcu`): 8 to 12 ms on this project's virtual
//!   machines. `perf` caught the broker's accept loop stalled there while its first 20,000
//!   clients queued (single-threaded Mosquitto never waits). Taking one descriptor at the
//!   highest number needed, while the process still has one thread, grows the table once
//!   and without waiting; the descriptor is closed at once and the table keeps its size.
//!   It costs the kernel 8 bytes per slot.

/// Descriptors a process needs besides its connections: listeners, epoll sets, wake-up
/// events, log and capture files, the standard streams.
const SPARE: u64 = 64;

/// What [`prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Room {
    /// The open-file limit (soft) now.
    pub(crate) limit: u64,
    /// The limit was raised to get here.
    pub(crate) raised: bool,
    /// The hard limit stopped it short of `connections` plus spare descriptors.
    pub(crate) short: bool,
}

/// Makes room for `connections` open sockets. Call it before starting threads (a tokio
/// runtime); later it still works, with one wait. None where there is no such limit.
pub(crate) fn prepare(connections: u64) -> Option<Room> {
    imp::prepare(connections.saturating_add(SPARE))
}

#[cfg(unix)]
mod imp {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    use super::Room;

    pub(super) fn prepare(wanted: u64) -> Option<Room> {
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        // None is "unlimited".
        let soft = current.unwrap_or(u64::MAX);
        let hard = maximum.unwrap_or(u64::MAX);
        let mut room = Room {
            limit: soft,
            raised: false,
            short: hard < wanted,
        };
        if soft < wanted {
            let new = wanted.min(hard);
            let limit = Rlimit {
                current: Some(new),
                maximum,
            };
            if setrlimit(Resource::Nofile, limit).is_ok() {
                room.limit = new;
                room.raised = true;
            }
        }
        // Descriptors are numbered below the limit; the kernel rounds the table up to a
        // power of two. Any open descriptor serves as the one to copy.
        let highest = room.limit.min(wanted).saturating_sub(1);
        if let (Ok(highest), Ok(file)) = (i32::try_from(highest), std::fs::File::open("/")) {
            // Failing only leaves the table to grow as it fills.
            drop(rustix::io::fcntl_dupfd_cloexec(&file, highest));
        }
        Some(room)
    }
}

#[cfg(not(unix))]
mod imp {
    pub(super) fn prepare(_wanted: u64) -> Option<super::Room> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The table's size, from the kernel's own count of descriptor slots.
    fn table_slots() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("FDSize in /proc/self/status")
    }

    #[test]
    fn the_table_is_grown_once_to_what_is_asked_within_the_limit() {
        let room = prepare(3_000).expect("unix");
        let slots = table_slots();
        if room.limit >= 3_000 + SPARE {
            assert!(slots >= 3_000 + SPARE, "{slots} slots, {room:?}");
        } else {
            // The hard limit is lower: as far as it allows.
            assert!(room.short);
            assert!(slots >= room.limit, "{slots} slots, {room:?}");
        }
        // Asking for less changes nothing.
        let again = prepare(10).expect("unix");
        assert!(!again.raised && again.limit >= 10 + SPARE);
        assert_eq!(table_slots(), slots);
    }
}
