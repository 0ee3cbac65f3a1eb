//! A connection's outgoing bytes: filled by the router, emptied by the host's connection task.
//!
//! The router encodes every packet for a connection straight into its outbox's buffer (a
//! PUBLISH that many subscribers get is encoded once, then copied per subscriber with its
//! own packet identifier), so the connection task writes the buffer as it is, with one
//! call, and an idle connection holds no buffer at all.
//!
//! Each connection has its own small lock, so a connection task takes its bytes without
//! touching the router's lock. Lock order: the router's lock, then an outbox's; a connection
//! task only ever takes its outbox's lock alone.
//!
//! Bounds: QoS 0 PUBLISHes waiting here are counted and bounded by the router
//! (`max_queued_messages`; further ones are dropped, see `Router::deliver`); QoS 1 and 2
//! PUBLISHes by the client's Receive Maximum; every other packet answers one the client
//! sent, and the connection stops reading while it writes.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tinsel_codec::{EncodedPublish, Packet, ProtocolVersion};
use tracing::warn;

/// What the host leaves in an outbox while its connection waits without a task: its
/// socket and a few facts about it. The core never uses them: it only tells, on a
/// wake-up, that the connection is parked, and gives them back on [`Outbox::unpark`].
/// Kept inline (an idle connection's cost counts): no allocation unless `extra` is used.
#[derive(Debug)]
pub struct Parked {
    /// The connection's socket.
    pub socket: std::os::fd::OwnedFd,
    /// Small facts the host keeps beside it (its protocol version, say).
    pub tag: u16,
    /// Anything else, boxed (None for most connections).
    pub extra: Option<Box<dyn std::any::Any + Send>>,
}

#[derive(Default)]
struct Inner {
    /// Encoded packets, in order.
    buf: BytesMut,
    /// QoS 0 PUBLISHes in `buf` (the router bounds them, far below `u32::MAX`).
    qos0: u32,
    close: bool,
    /// When the router first offered a QoS 0 PUBLISH since the connection last took its
    /// bytes: how long the subscriber has kept messages waiting (see `qos0_backlog`).
    since: Option<Instant>,
    /// Publishers wait for this connection's QoS 0 backlog: say so when it is taken.
    watched: bool,
    /// The connection task, when it found nothing to write.
    waker: Option<Waker>,
    /// The connection's socket while it waits in the parking lot: a wake-up must take it
    /// out.
    parked: Option<Parked>,
}

/// What a connection task takes from its outbox.
#[derive(Debug, Default)]
pub struct Taken {
    /// Bytes to write (empty when there is nothing).
    pub bytes: BytesMut,
    /// Close the connection once they are written.
    pub close: bool,
    /// Publishers waited for this backlog: the taker should tell them it is gone.
    pub watched: bool,
}

/// What became of a QoS 0 PUBLISH offered to an outbox.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// It was appended (else dropped: too many waiting).
    pub pushed: bool,
    /// The outbox was empty before: the connection needs waking.
    pub was_empty: bool,
    /// The backlog reached the high-water mark while the connection keeps up.
    pub congested: bool,
}

/// A cloneable handle on one connection's outgoing bytes.
#[derive(Clone, Default)]
pub struct Outbox(Arc<Mutex<Inner>>);

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encodes and appends a packet; true if the outbox was empty (the connection needs
    /// waking). A packet that cannot be encoded is logged and left out.
    pub(crate) fn push_packet(&self, packet: &Packet, version: ProtocolVersion) -> bool {
        let mut inner = self.lock();
        let was_empty = inner.buf.is_empty();
        let name = packet.packet_type().name();
        append(&mut inner.buf, name, |b| packet.encode(version, b)) && was_empty
    }

    /// Appends an acknowledgement in its short form (PUBACK, PUBREC, PUBREL or PUBCOMP with
    /// reason Success and no properties: the fixed header `first` and the packet
    /// identifier, the same four bytes in every protocol version); true if the outbox was
    /// empty.
    pub(crate) fn push_short_ack(&self, first: u8, packet_id: u16) -> bool {
        let mut inner = self.lock();
        let was_empty = inner.buf.is_empty();
        if inner.buf.capacity() == 0 {
            inner.buf.reserve(FIRST_RESERVE);
        }
        let [hi, lo] = packet_id.to_be_bytes();
        inner.buf.extend_from_slice(&[first, 2, hi, lo]);
        was_empty
    }

    /// Appends a shared PUBLISH encoding with this connection's packet identifier (0 at
    /// QoS 0); true if the outbox was empty (the connection needs waking).
    pub(crate) fn push_publish(&self, publish: &EncodedPublish, packet_id: u16) -> bool {
        let mut inner = self.lock();
        let was_empty = inner.buf.is_empty();
        if !append(&mut inner.buf, "PUBLISH", |b| {
            publish.write_to(packet_id, false, b)
        }) {
            return false;
        }
        if packet_id == 0 {
            inner.qos0 += 1;
        }
        was_empty
    }

    /// Offers a QoS 0 PUBLISH (the fan-out path: one lock). Dropped (not pushed) when `max`
    /// QoS 0 PUBLISHes already wait. With `high_water`, the backlog counts as congested
    /// when this one reaches it while the connection keeps taking its bytes (it took them
    /// within `stalled`): the backlog is then watched (see [`Taken::watched`]).
    pub(crate) fn offer_qos0(
        &self,
        now: Instant,
        publish: &EncodedPublish,
        max: usize,
        high_water: Option<usize>,
        stalled: Duration,
    ) -> Offer {
        let mut inner = self.lock();
        let since = *inner.since.get_or_insert(now);
        let waiting = inner.qos0 as usize;
        let congested = high_water.is_some_and(|hw| waiting + 1 >= hw)
            && now.saturating_duration_since(since) < stalled;
        inner.watched |= congested;
        let was_empty = inner.buf.is_empty();
        let pushed =
            waiting < max && append(&mut inner.buf, "PUBLISH", |b| publish.write_to(0, false, b));
        inner.qos0 += u32::from(pushed);
        Offer {
            pushed,
            was_empty: pushed && was_empty,
            congested,
        }
    }

    /// For the router about to offer a QoS 0 PUBLISH at `now`: the QoS 0 PUBLISHes waiting,
    /// and since when the connection has not taken its bytes (`now` if it took them since
    /// the last offer). A connection task that takes nothing for long is blocked writing to
    /// a client that does not read.
    pub(crate) fn qos0_backlog(&self, now: Instant) -> (usize, Instant) {
        let mut inner = self.lock();
        let since = *inner.since.get_or_insert(now);
        (inner.qos0 as usize, since)
    }

    /// Like [`Outbox::qos0_backlog`] without offering anything: None if the connection took
    /// its bytes since the last offer.
    pub(crate) fn qos0_waiting(&self) -> (usize, Option<Instant>) {
        let inner = self.lock();
        (inner.qos0 as usize, inner.since)
    }

    /// Asks the connection to close once it has written what is queued (the core does this
    /// itself when it closes a connection).
    pub fn close(&self) {
        self.lock().close = true;
    }

    /// Marks the QoS 0 backlog as one that publishers wait for (see [`Taken::watched`]).
    pub(crate) fn watch(&self) {
        self.lock().watched = true;
    }

    /// Wakes the connection task if it waits for bytes. True if the connection is parked:
    /// the caller asks the parking lot to take it out.
    #[must_use]
    pub fn wake(&self) -> bool {
        let mut inner = self.lock();
        if inner.parked.is_some() {
            return true;
        }
        let waker = inner.waker.take();
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
        false
    }

    /// The connection goes to the parking lot: `register` puts its socket in the lot's
    /// epoll set (under this lock, so that a wake-up finds either the task or the parked
    /// socket), and wake-ups are for the lot from now on. Err gives the socket back if
    /// output is waiting already or `register` failed.
    pub fn park(&self, p: Parked, register: impl FnOnce(&Parked) -> bool) -> Result<(), Parked> {
        let mut inner = self.lock();
        if !inner.buf.is_empty() || inner.close || !register(&p) {
            return Err(p);
        }
        inner.waker = None;
        inner.parked = Some(p);
        Ok(())
    }

    /// Takes the parked socket out (None if it is not parked).
    pub fn unpark(&self) -> Option<Parked> {
        self.lock().parked.take()
    }

    /// Takes every queued byte. With nothing to take (and no close asked), `waker` is
    /// kept and woken by the next [`Outbox::wake`].
    pub fn take(&self, waker: Option<&Waker>) -> Taken {
        let mut inner = self.lock();
        inner.qos0 = 0;
        inner.since = None;
        if inner.buf.is_empty() && !inner.close {
            if let Some(w) = waker
                && !inner.waker.as_ref().is_some_and(|old| old.will_wake(w))
            {
                inner.waker = Some(w.clone());
            }
            return Taken::default();
        }
        Taken {
            bytes: std::mem::take(&mut inner.buf),
            close: inner.close,
            watched: std::mem::take(&mut inner.watched),
        }
    }
}

/// What an empty outbox reserves for its first packet.
const FIRST_RESERVE: usize = 512;

/// Encodes into `buf` with `encode`; a packet that cannot be encoded is logged and left
/// out (nothing of it stays in `buf`). True if it was appended.
fn append<E: std::fmt::Display>(
    buf: &mut BytesMut,
    name: &str,
    encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> bool {
    if buf.capacity() == 0 {
        // Room for a few packets at once rather than growing from the first packet's size
        // (several reallocations per batch); taken away with the bytes, so an idle
        // connection still holds no buffer.
        buf.reserve(FIRST_RESERVE);
    }
    let len = buf.len();
    match encode(buf) {
        Ok(()) => true,
        Err(e) => {
            buf.truncate(len);
            warn!("cannot encode {name}: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use tinsel_codec::PubResp;

    use super::*;

    #[test]
    fn short_acknowledgements_are_what_the_codec_writes() {
        type Make = fn(PubResp) -> Packet;
        let kinds: [(u8, Make); 4] = [
            (0x40, Packet::PubAck),
            (0x50, Packet::PubRec),
            (0x62, Packet::PubRel),
            (0x70, Packet::PubComp),
        ];
        for version in [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ] {
            for (first, make) in kinds {
                let pid = 0xa1b2;
                let short = Outbox::default();
                assert!(short.push_short_ack(first, pid));
                let general = Outbox::default();
                assert!(general.push_packet(&make(PubResp::new(pid)), version));
                assert_eq!(
                    short.take(None).bytes,
                    general.take(None).bytes,
                    "{first:#x} {version}"
                );
            }
        }
    }
}
