//! A connection's outgoing packets: filled by the router, emptied by the connection task.
//!
//! Each connection has its own small lock, so a connection task takes its packets without
//! touching the router's lock. Lock order: the router's lock, then an outbox's; a connection
//! task only ever takes its outbox's lock alone.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tinsel_codec::{ByteStr, EncodedPublish, Packet, QoS};

/// One packet for a connection to write.
#[derive(Debug, Clone)]
// `Packet` is the large variant; boxing it would cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Out {
    /// A packet to encode.
    Packet(Packet),
    /// A PUBLISH encoded once and shared by every subscriber that gets the same form
    /// (version, QoS, retain, no per-subscriber properties); only the packet identifier
    /// differs. Topic and payload are kept for the packet log.
    Shared {
        /// The shared encoding.
        publish: EncodedPublish,
        /// Packet identifier (0 at QoS 0).
        packet_id: u16,
        /// Topic (for logs).
        topic: ByteStr,
        /// Payload (for logs).
        payload: Bytes,
        /// QoS (for logs).
        qos: QoS,
    },
}

#[derive(Debug, Default)]
struct Inner {
    packets: Vec<Out>,
    /// QoS 0 PUBLISHes in `packets` (the router bounds them).
    qos0: usize,
    close: bool,
    /// When the router first offered a QoS 0 PUBLISH since the connection last took its
    /// packets: how long the subscriber has kept messages waiting (see `qos0_backlog`).
    since: Option<Instant>,
    /// Publishers wait for this connection's QoS 0 backlog: say so when it is taken.
    watched: bool,
}

/// A cloneable handle on one connection's outgoing packets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outbox(Arc<Mutex<Inner>>);

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a packet; true if the outbox was empty (the connection needs waking).
    pub(crate) fn push(&self, out: Out) -> bool {
        let mut inner = self.lock();
        let was_empty = inner.packets.is_empty();
        if matches!(&out, Out::Packet(Packet::Publish(p)) if p.qos == QoS::AtMostOnce)
            || matches!(
                &out,
                Out::Shared {
                    qos: QoS::AtMostOnce,
                    ..
                }
            )
        {
            inner.qos0 += 1;
        }
        inner.packets.push(out);
        was_empty
    }

    /// For the router about to offer a QoS 0 PUBLISH at `now`: the QoS 0 PUBLISHes waiting,
    /// and since when the connection has not taken its packets (`now` if it took them
    /// since the last offer). A connection task that takes nothing for long is blocked
    /// writing to a client that does not read.
    pub(crate) fn qos0_backlog(&self, now: Instant) -> (usize, Instant) {
        let mut inner = self.lock();
        let since = *inner.since.get_or_insert(now);
        (inner.qos0, since)
    }

    /// Like [`Outbox::qos0_backlog`] without offering anything: None if the connection took
    /// its packets since the last offer.
    pub(crate) fn qos0_waiting(&self) -> (usize, Option<Instant>) {
        let inner = self.lock();
        (inner.qos0, inner.since)
    }

    /// Asks the connection to close once it has written what is queued.
    pub(crate) fn close(&self) {
        self.lock().close = true;
    }

    /// Marks the QoS 0 backlog as one that publishers wait for (see [`Outbox::take`]).
    pub(crate) fn watch(&self) {
        self.lock().watched = true;
    }

    /// Takes every queued packet, whether to close after writing them, and whether
    /// publishers were waiting for this backlog (the taker should tell them it is gone).
    pub(crate) fn take(&self) -> (Vec<Out>, bool, bool) {
        let mut inner = self.lock();
        inner.qos0 = 0;
        inner.since = None;
        let watched = std::mem::take(&mut inner.watched);
        (std::mem::take(&mut inner.packets), inner.close, watched)
    }
}
