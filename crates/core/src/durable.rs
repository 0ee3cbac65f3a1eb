//! The durability seam: what must be on disk before its acknowledgement leaves.
//!
//! With `Settings::durable_acks` on, the core writes a [`Record`] for every change a store
//! must keep — a QoS 1/2 message accepted into persistent sessions, a QoS 2 receipt and
//! its release, a subscription, a new persistent session, a retained message, a delivery
//! acknowledged, the will of a connected client, a will waiting for its delay — and hands
//! them to the host with [`crate::Router::take_work`]. Records are numbered in the order
//! they are made; a [`Ticket`] is the number of the last one.
//!
//! An acknowledgement (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, CONNACK) whose packet
//! made records is *held*: it waits, in order, until the host reports every record up to
//! its ticket synced with [`crate::Router::durable`]. Held is a state, not a sleep: the
//! router keeps serving everybody meanwhile. Once a connection has a held acknowledgement,
//! its later acknowledgements are held behind it, so they leave in the order the client
//! sent its packets [MQTT-4.6.0-2]. A connection with more than `max_inflight`
//! acknowledgements held is closed (0x93 Receive Maximum exceeded): the store is slower
//! than the client and it did not wait for its acknowledgements as it should.
//!
//! With `durable_acks` off (the default) no record is made and acknowledgements leave at
//! once: the seam costs a branch.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tinsel_codec::{ByteStr, Packet, Publish, QoS, SubscriptionOptions, Will};

use crate::connections::ConnId;

/// The number of a [`Record`]: the first one made is 1.
pub type Ticket = u64;

/// A change the store must keep before what it acknowledges is acknowledged.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Record {
    /// A session was created or resumed with this expiry interval (0: it ends with its
    /// connection; the CONNACK of a session with another expiry waits for this record).
    SessionOpened {
        /// Its client id.
        client: Arc<str>,
        /// Session Expiry Interval in seconds (`u32::MAX`: never).
        expiry: u32,
    },
    /// A session ended: everything of it may go.
    SessionEnded {
        /// Its client id.
        client: Arc<str>,
    },
    /// A subscription was made or replaced.
    Subscribed {
        /// The subscriber.
        client: Arc<str>,
        /// The filter as the client wrote it.
        filter: Arc<str>,
        /// The options granted.
        options: SubscriptionOptions,
        /// Its subscription identifier.
        id: Option<u32>,
    },
    /// A subscription was removed.
    Unsubscribed {
        /// The subscriber.
        client: Arc<str>,
        /// The filter as the client wrote it.
        filter: Arc<str>,
    },
    /// A QoS 1/2 message was accepted into these persistent sessions (queued or in flight).
    /// Written once, referenced by each.
    Accepted {
        /// The message as received.
        message: Publish,
        /// The sessions it went to.
        sessions: Vec<Arc<str>>,
    },
    /// An incoming QoS 2 PUBLISH was received (its packet id is remembered until PUBREL).
    Qos2Received {
        /// The publisher.
        client: Arc<str>,
        /// Its packet id.
        packet_id: u16,
    },
    /// An incoming QoS 2 flow ended with PUBREL.
    Qos2Released {
        /// The publisher.
        client: Arc<str>,
        /// Its packet id.
        packet_id: u16,
    },
    /// A retained message was stored (Some) or deleted (None).
    Retained {
        /// Its topic.
        topic: ByteStr,
        /// The message.
        message: Option<Publish>,
    },
    /// A message queued for (or accepted into) a persistent session was sent to it with
    /// this packet id. Only what tells the message apart is kept (topic and payload, shared
    /// with the session's copy): the store matches it with the message it already has.
    /// Made before the [`Record::Accepted`] of a message sent at once.
    Sent {
        /// The subscriber.
        client: Arc<str>,
        /// The packet id it was given.
        packet_id: u16,
        /// Its topic.
        topic: ByteStr,
        /// Its payload.
        payload: Bytes,
        /// The QoS it was sent at (downgraded for this subscriber).
        qos: QoS,
    },
    /// A subscriber acknowledged a delivery (PUBACK, PUBCOMP, or PUBREC: the message part
    /// of a QoS 2 delivery is done and only the release remains).
    Delivered {
        /// The subscriber.
        client: Arc<str>,
        /// The packet id it was sent with.
        packet_id: u16,
        /// True for PUBREC: the flow goes on with PUBREL.
        released: bool,
    },
    /// A will waits for its delay: the client's connection is gone (or the broker shut
    /// down) and its session lives on. After a restart it waits its delay again, counted
    /// from the restart.
    WillPending {
        /// The client it belongs to.
        client: Arc<str>,
        /// The identity its rights are checked with when it is sent.
        username: Option<Arc<str>>,
        /// The will as the client sent it.
        will: Box<Will>,
        /// Seconds it waits (its Will Delay Interval, capped by the session's expiry).
        delay: u32,
    },
    /// A client connected with a will (made only when a store is on): if the broker dies
    /// while the client is connected, its connection ended without DISCONNECT, so after the
    /// restart the will goes out as for any connection lost (after its delay, counted from
    /// the restart, unless the session resumes first). Replaced by the [`Record::WillPending`]
    /// or [`Record::WillTaken`] made when the connection ends.
    WillSet {
        /// The client it belongs to.
        client: Arc<str>,
        /// The identity its rights are checked with when it is sent.
        username: Option<Arc<str>>,
        /// The will as the client sent it (with its Will Delay Interval).
        will: Box<Will>,
    },
    /// A will left: it was published, dropped because its session resumed, or discarded by
    /// a normal DISCONNECT.
    WillTaken {
        /// The client it belonged to.
        client: Arc<str>,
    },
}

/// An acknowledgement waiting for the store.
#[derive(Debug)]
struct Held {
    ticket: Ticket,
    conn: ConnId,
    packet: Packet,
}

/// Records not yet taken by the host, and acknowledgements waiting for them.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    enabled: bool,
    /// Records made since the host last took them. Bounded by what one batch of packets
    /// makes: the host takes them after every batch.
    journal: Vec<Record>,
    /// Records ever made (the ticket of the last one).
    made: Ticket,
    /// Held acknowledgements, in ticket order. Bounded by `max_inflight` per connection.
    held: VecDeque<Held>,
    /// Persistent sessions the message being routed went to (see [`Record::Accepted`]).
    pub(crate) accepted_by: Vec<Arc<str>>,
    /// The store cannot write (disk full or failing): QoS 1/2 publishes are refused.
    pub(crate) refusing: bool,
}

impl Durability {
    pub(crate) fn new(enabled: bool) -> Durability {
        Durability {
            enabled,
            ..Durability::default()
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records made so far; compare before and after handling a packet.
    pub(crate) fn made(&self) -> Ticket {
        self.made
    }

    /// Makes a record (nothing when durability is off).
    pub(crate) fn record(&mut self, r: impl FnOnce() -> Record) {
        if self.enabled {
            self.journal.push(r());
            self.made += 1;
        }
    }

    /// True if an acknowledgement made by a packet that started at `mark`, on a connection
    /// with `held` acknowledgements held, must wait.
    pub(crate) fn must_hold(&self, mark: Ticket, held: u16) -> bool {
        self.enabled && (self.made > mark || held > 0)
    }

    /// Holds `packet` for `conn` until the records made so far are synced.
    pub(crate) fn hold(&mut self, conn: ConnId, packet: Packet) {
        self.held.push_back(Held {
            ticket: self.made,
            conn,
            packet,
        });
    }

    /// The records made since the last call, and the ticket of the last one.
    pub(crate) fn take(&mut self) -> (Vec<Record>, Ticket) {
        (std::mem::take(&mut self.journal), self.made)
    }

    /// True if records wait for the host.
    pub(crate) fn has_records(&self) -> bool {
        !self.journal.is_empty()
    }

    /// Takes the held acknowledgements whose records are synced (up to `ticket`).
    pub(crate) fn release(&mut self, ticket: Ticket) -> Vec<(ConnId, Packet)> {
        let mut out = Vec::new();
        while self.held.front().is_some_and(|h| h.ticket <= ticket) {
            if let Some(h) = self.held.pop_front() {
                out.push((h.conn, h.packet));
            }
        }
        out
    }
}
