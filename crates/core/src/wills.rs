//! Wills: the message a client leaves to be published when its connection ends without
//! a DISCONNECT, at once or after its Will Delay Interval (MQTT 5), unless the session
//! resumes first [MQTT-3.1.3-9].
//!
//! While connected, a will waits in its connection (`Conn::will`); once the connection is
//! gone it is published or moves here until its delay passes, the session ends (then it is
//! published at once) or the client reconnects (then it is dropped, or published if the
//! reconnection starts a clean session).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tinsel_codec::{ByteStr, Will};

use crate::FastMap;
use crate::listener::ListenerId;
use crate::timers::{Clock, Millis, pop_due};

/// A will waiting for its delay to pass.
#[derive(Debug)]
struct PendingWill {
    due: Millis,
    /// Who it is sent as.
    owner: WillOwner,
    will: Box<Will>,
}

/// Who a will is sent as: its client's identity (the user name rights are looked up by)
/// and listener, when it connected.
#[derive(Debug, Clone)]
pub(crate) struct WillOwner {
    pub(crate) username: Option<Arc<str>>,
    pub(crate) listener: ListenerId,
}

/// A will with the client it belongs to and who it is sent as.
pub(crate) type OwnedWill = (Arc<str>, WillOwner, Box<Will>);

/// Wills waiting for their delay, by client id, with their deadlines in order.
#[derive(Debug, Default)]
pub(crate) struct Wills {
    pending: FastMap<Arc<str>, PendingWill>,
    /// One entry per pending will.
    timers: BTreeSet<(Millis, Arc<str>)>,
}

impl Wills {
    /// Publishes `will` of `client` at `due` unless taken before.
    pub(crate) fn schedule(
        &mut self,
        clock: Clock,
        (client, owner, will): OwnedWill,
        due: Instant,
    ) {
        let due = clock.key(due);
        self.take(&client);
        self.timers.insert((due, client.clone()));
        self.pending
            .insert(client, PendingWill { due, owner, will });
    }

    /// Takes `client`'s pending will out (its session resumes or ends).
    pub(crate) fn take(&mut self, client: &Arc<str>) -> Option<OwnedWill> {
        if self.pending.is_empty() {
            return None;
        }
        let p = self.pending.remove(client)?;
        self.timers.remove(&(p.due, client.clone()));
        Some((client.clone(), p.owner, p.will))
    }

    /// Takes every pending will out, the earliest due first (the broker stops).
    pub(crate) fn take_all(&mut self) -> Vec<OwnedWill> {
        let timers = std::mem::take(&mut self.timers);
        timers
            .into_iter()
            .filter_map(|(_, client)| {
                let p = self.pending.remove(&client)?;
                Some((client, p.owner, p.will))
            })
            .collect()
    }

    /// Takes the wills whose delay has passed.
    pub(crate) fn due(&mut self, clock: Clock, now: Instant) -> Vec<OwnedWill> {
        pop_due(&mut self.timers, clock.millis(now))
            .into_iter()
            .filter_map(|(_, client)| {
                let p = self.pending.remove(&client)?;
                Some((client, p.owner, p.will))
            })
            .collect()
    }
}

/// A copy of `s` that owns its bytes.
pub(crate) fn detach_str(s: &ByteStr) -> ByteStr {
    ByteStr::from_utf8(Bytes::copy_from_slice(s.as_bytes())).unwrap_or_default()
}

/// A copy of `w` that shares no memory with the buffer it was decoded from: kept for the
/// connection's life, it must not pin the read buffer the CONNECT was decoded from.
pub(crate) fn detach_will(w: Will) -> Will {
    let mut properties = w.properties;
    if let Some(p) = properties.get_mut() {
        p.content_type = p.content_type.as_ref().map(detach_str);
        p.response_topic = p.response_topic.as_ref().map(detach_str);
        p.correlation_data = p
            .correlation_data
            .as_ref()
            .map(|b| Bytes::copy_from_slice(b));
        p.user_properties = p
            .user_properties
            .iter()
            .map(|(k, v)| (detach_str(k), detach_str(v)))
            .collect();
    }
    Will {
        topic: detach_str(&w.topic),
        payload: Bytes::copy_from_slice(&w.payload),
        qos: w.qos,
        retain: w.retain,
        properties,
    }
}
