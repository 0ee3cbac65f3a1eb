//! What a subscriber saw: per publisher, which sequence numbers arrived, how often and in
//! what order; and one latency histogram.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use crate::payload::Stamp;

/// Sequence numbers at or above this are counted but not checked for duplicates: it bounds
/// the bitmap of one stream at 128 MiB even if a peer sends a garbage sequence number.
const MAX_TRACKED_SEQ: u64 = 1 << 30;

/// Highest latency the histogram records (one hour, in nanoseconds); higher values are
/// clamped to it.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// One publisher's messages as one subscriber (or a whole shared group) received them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stream {
    /// Bit `seq` is set once `seq` arrived.
    bits: Vec<u64>,
    /// Distinct sequence numbers received.
    pub(crate) unique: u64,
    /// Every message received, duplicates included.
    pub(crate) received: u64,
    /// Messages whose sequence number arrived before.
    pub(crate) duplicates: u64,
    /// New sequence numbers lower than one already received.
    pub(crate) reordered: u64,
    /// Highest sequence number seen.
    pub(crate) max_seq: Option<u64>,
}

impl Stream {
    pub(crate) fn record(&mut self, seq: u64) {
        self.received += 1;
        if seq < MAX_TRACKED_SEQ {
            let (word, bit) = ((seq / 64) as usize, seq % 64);
            if word >= self.bits.len() {
                // Grow geometrically so a long run does not reallocate per message.
                let want = (word + 1).max(self.bits.len() * 2).max(16);
                self.bits.resize(want, 0);
            }
            if self.bits[word] & (1 << bit) != 0 {
                self.duplicates += 1;
                return;
            }
            self.bits[word] |= 1 << bit;
        }
        self.unique += 1;
        match self.max_seq {
            Some(max) if seq < max => self.reordered += 1,
            _ => self.max_seq = Some(seq),
        }
    }

    /// Sequence numbers below `max_seq` that never arrived (loss visible without knowing
    /// how many were sent).
    pub(crate) fn gaps(&self) -> u64 {
        self.max_seq
            .map_or(0, |m| (m + 1).saturating_sub(self.unique))
    }

    /// Folds another member's view of the same publisher into this one (shared
    /// subscriptions): a sequence number both saw is a duplicate.
    pub(crate) fn merge(&mut self, other: &Stream) {
        // Sequence numbers past MAX_TRACKED_SEQ are not in the bitmaps; they are added as
        // counted (they cannot be checked across members).
        let untracked = self.untracked() + other.untracked();
        if other.bits.len() > self.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        for (w, o) in self.bits.iter_mut().zip(&other.bits) {
            *w |= *o;
        }
        self.unique = self.tracked() + untracked;
        self.received += other.received;
        self.duplicates = self.received.saturating_sub(self.unique);
        self.reordered += other.reordered;
        self.max_seq = self.max_seq.max(other.max_seq);
    }

    fn tracked(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    fn untracked(&self) -> u64 {
        self.unique.saturating_sub(self.tracked())
    }
}

/// Everything one subscriber connection observed.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) streams: HashMap<u32, Stream>,
    pub(crate) latency: Histogram<u64>,
    /// Messages whose payload is not a benchmark payload.
    pub(crate) foreign: u64,
    /// Wall-clock time of the last benchmark message, ns since the epoch.
    pub(crate) last_ns: u64,
    /// Messages received, foreign ones included.
    pub(crate) total: u64,
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker {
            streams: HashMap::new(),
            latency: new_histogram(),
            foreign: 0,
            last_ns: 0,
            total: 0,
        }
    }

    /// Records one message received at `now_ns`.
    pub(crate) fn record(&mut self, stamp: Option<Stamp>, now_ns: u64) {
        self.total += 1;
        let Some(s) = stamp else {
            self.foreign += 1;
            return;
        };
        self.last_ns = now_ns;
        let lat = now_ns.saturating_sub(s.sent_ns).clamp(1, MAX_LATENCY_NS);
        // Cannot fail: the value is clamped into the histogram's range.
        let _ = self.latency.record(lat);
        self.streams.entry(s.publisher).or_default().record(s.seq);
    }
}

/// A latency histogram in nanoseconds, 3 significant digits, 1 ns to one hour.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).unwrap_or_else(|_| {
        // The bounds above are valid constants; this branch is unreachable in practice.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures is valid"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_reordering_and_gaps() {
        let mut s = Stream::default();
        for seq in [0, 1, 3, 2, 3, 5] {
            s.record(seq);
        }
        assert_eq!(s.received, 6);
        assert_eq!(s.unique, 5);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.gaps(), 1); // 4 never came
    }

    #[test]
    fn merging_shared_members_finds_cross_duplicates() {
        let mut a = Stream::default();
        let mut b = Stream::default();
        for seq in [0, 2, 4] {
            a.record(seq);
        }
        for seq in [1, 3, 4] {
            b.record(seq);
        }
        a.merge(&b);
        assert_eq!(a.unique, 5);
        assert_eq!(a.duplicates, 1);
        assert_eq!(a.gaps(), 0);
    }
}
