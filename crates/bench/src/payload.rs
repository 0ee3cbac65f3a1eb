//! The payload every benchmark message carries: who sent it, its number, and when.
//!
//! Layout (big-endian): `TNSL` magic (4 bytes), publisher id (u32), sequence number (u64),
//! send time in nanoseconds since the Unix epoch (u64), then zero padding up to the payload
//! size. Wall-clock time, not a process-local clock, so a `pub` run in one process and a
//! `sub` run in another still measure latency (same machine only).

use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes the header takes: the smallest payload a run may use.
pub const HEADER_LEN: usize = 24;

const MAGIC: [u8; 4] = *b"TNSL";

/// What a received payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) publisher: u32,
    pub(crate) seq: u64,
    pub(crate) sent_ns: u64,
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Writes the header into the first [`HEADER_LEN`] bytes of `dst` (which is at least that long).
pub(crate) fn stamp(dst: &mut [u8], s: Stamp) {
    dst[0..4].copy_from_slice(&MAGIC);
    dst[4..8].copy_from_slice(&s.publisher.to_be_bytes());
    dst[8..16].copy_from_slice(&s.seq.to_be_bytes());
    dst[16..24].copy_from_slice(&s.sent_ns.to_be_bytes());
}

/// Reads the header; `None` for a payload that is not a benchmark message.
pub(crate) fn read(payload: &[u8]) -> Option<Stamp> {
    if payload.len() < HEADER_LEN || payload[0..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes(payload[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_be_bytes(payload[i..i + 8].try_into().unwrap_or_default());
    Some(Stamp {
        publisher: u32_at(4),
        seq: u64_at(8),
        sent_ns: u64_at(16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let mut buf = vec![0u8; 64];
        let s = Stamp {
            publisher: 7,
            seq: 123_456_789_012,
            sent_ns: now_ns(),
        };
        stamp(&mut buf, s);
        assert_eq!(read(&buf), Some(s));
    }

    #[test]
    fn foreign_payloads_are_not_read() {
        assert_eq!(read(b"hello"), None);
        assert_eq!(read(&[0u8; 64]), None);
    }
}
