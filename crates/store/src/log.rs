//! The log's frames: what one group commit writes.
//!
//! ```text
//! frame = length: u32 LE | crc32(body): u32 LE | body
//! body  = covered: u64 LE | entry*
//! ```
//!
//! `covered` counts every record the log holds up to the end of this frame (a compacted
//! snapshot keeps the count it replaces), so a reader knows how many of the records it
//! was given came back. A frame is written whole and synced before anything it
//! acknowledges leaves; a crash can only tear the last one.
//!
//! The log may run on in zeros (written ahead of its end, see
//! [`crate::Options::preallocate`]): a zero frame header followed by zeros only is its end.
//! A bad frame followed by zeros only (after the length its header claims) is a torn tail.

use std::path::Path;

use bytes::Bytes;
use tracing::warn;

use crate::Error;
use crate::entry::{Entry, Reader};

/// Bytes before a frame's body.
pub(crate) const HEADER: usize = 8;

/// Largest frame body read back (a bigger length is a torn or corrupt header).
const MAX_BODY: usize = 1 << 30;

/// Starts a frame in `out`: returns where it starts (finish it with [`finish_frame`]).
pub(crate) fn start_frame(out: &mut Vec<u8>, covered: u64) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&covered.to_le_bytes());
    at
}

/// Writes the header of the frame that starts at `at` and runs to the end of `out`, with
/// the final `covered` count.
pub(crate) fn finish_frame(out: &mut [u8], at: usize, covered: u64) {
    out[at + HEADER..at + HEADER + 8].copy_from_slice(&covered.to_le_bytes());
    let body = &out[at + HEADER..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What a log held (its entries went to the caller one by one).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Records covered by the last whole frame.
    pub(crate) covered: u64,
    /// Bytes of whole frames: where the next one goes (a torn tail beyond is cut).
    pub(crate) valid: u64,
}

/// Reads every whole frame of `data` (the content of `path`) and gives each entry to
/// `apply`, in order. A torn last frame is cut with a warning; a bad frame followed by
/// more data is corruption, named by file and offset.
pub(crate) fn scan(
    path: &Path,
    data: Vec<u8>,
    mut apply: impl FnMut(Entry),
) -> Result<Scan, Error> {
    let data = Bytes::from(data);
    let mut scan = Scan::default();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        let whole = frame_at(rest);
        let Some(len) = whole else {
            if zeros(rest) {
                break;
            }
            if torn(rest) {
                warn!(
                    file = %path.display(),
                    offset = at,
                    bytes = rest.len(),
                    "the store's log ends in a torn write (a crash while writing it): cut off"
                );
                break;
            }
            return Err(Error::Corrupt {
                file: path.to_owned(),
                offset: at as u64,
                why: "bad frame (length or checksum) with more data after it",
            });
        };
        let body = data.slice(at + HEADER..at + HEADER + len);
        let mut r = Reader::new(body.slice(8..));
        let covered = u64::from_le_bytes(body[..8].try_into().unwrap_or([0; 8]));
        while !r.is_empty() {
            match r.log_entry() {
                Ok(e) => apply(e),
                Err(m) => {
                    return Err(Error::Corrupt {
                        file: path.to_owned(),
                        offset: at as u64,
                        why: m.0,
                    });
                }
            }
        }
        scan.covered = covered;
        at += HEADER + len;
        scan.valid = at as u64;
    }
    Ok(scan)
}

/// The body length of the whole, intact frame at the start of `b` (None: none there).
fn frame_at(b: &[u8]) -> Option<usize> {
    if b.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(b[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(b[4..8].try_into().ok()?);
    if !(8..=MAX_BODY).contains(&len) || b.len() < HEADER + len {
        return None;
    }
    (crc32fast::hash(&b[HEADER..HEADER + len]) == crc).then_some(len)
}

/// True if `b` holds zeros only.
fn zeros(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// True if `b`, which starts with a bad frame, is the torn end of the log: the frame runs
/// past the end, or it is the last one, or only zeros follow it (written ahead, or the
/// part of it never written).
fn torn(b: &[u8]) -> bool {
    if b.len() < HEADER {
        return true;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    HEADER.saturating_add(len) >= b.len() || zeros(&b[HEADER + len..])
}
