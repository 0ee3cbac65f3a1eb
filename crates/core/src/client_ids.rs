//! Client identifiers the broker assigns to clients that send none [MQTT-3.1.3-6].

/// The client identifiers the broker assigns to clients that send none: the prefix
/// (`auto-` by default, `Settings::auto_id_prefix`) and 16 hex digits that differ from run
/// to run (from the host's seed) and a counter.
#[derive(Debug)]
pub(crate) struct ClientIds {
    seed: u64,
    assigned: u64,
    prefix: String,
}

impl ClientIds {
    pub(crate) fn new(seed: u64, prefix: String) -> ClientIds {
        ClientIds {
            seed,
            assigned: 0,
            prefix,
        }
    }

    pub(crate) fn next(&mut self) -> String {
        self.assigned += 1;
        // SplitMix64's finaliser: successive ids look unrelated.
        let mut z = self
            .seed
            .wrapping_add(self.assigned.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        format!("{}{z:016x}-{}", self.prefix, self.assigned)
    }
}
