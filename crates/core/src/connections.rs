//! Connections: every open connection's protocol state, by [`ConnId`].
//!
//! A connection is what the host accepted (a socket, or an in-process [`Origin::Link`]);
//! its session (what outlives it) is in [`crate::sessions`]. A connection is
//! *awaiting CONNECT*, *authenticating* (an [`crate::Authenticator`] deferred its
//! decision) or *connected* to a session, and *closing* once the core decided to close it
//! (its last packets are in its outbox; the host reports it gone with
//! [`crate::Router::connection_lost`]).

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tinsel_codec::{ByteStr, Connect, Packet, ProtocolVersion, ReasonCode, Will};
use tracing::debug;

use crate::FastMap;
use crate::listener::ListenerId;
use crate::outbox::Outbox;
use crate::packet_log::summary;
use crate::rate::PublishRate;
use crate::timers::{Clock, Millis, pop_due};

/// Packets a client may send after its CONNECT while the CONNECT is being authenticated;
/// one more closes the connection (a client should wait for its CONNACK; most send at
/// most a few packets ahead).
pub const MAX_EARLY: usize = 32;

/// Identifies one connection for its whole life; never reused.
pub type ConnId = u64;

/// Where a connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A network peer (TCP, TLS, WebSocket...).
    Network(SocketAddr),
    /// An in-process peer that speaks MQTT through the same paths as a network client:
    /// a bridge to another broker or, later, another node. It is never parked and has no
    /// socket; its host task takes its output from the outbox like a connection task does.
    Link(Arc<str>),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Network(a) => a.fmt(f),
            Origin::Link(name) => write!(f, "link {name}"),
        }
    }
}

#[derive(Debug)]
pub(crate) enum ConnState {
    AwaitingConnect,
    /// The CONNECT waits for the host's authentication; packets sent meanwhile wait too.
    Authenticating(Box<Authenticating>),
    Connected(Arc<str>),
}

/// A CONNECT being authenticated off the event loop.
#[derive(Debug)]
pub(crate) struct Authenticating {
    pub(crate) connect: Connect,
    /// The client identifier settled for it (assigned when the client sent none).
    pub(crate) client: Arc<str>,
    pub(crate) assigned: bool,
    /// Packets that came after the CONNECT, handled once it is accepted. Bounded by
    /// [`crate::MAX_EARLY`].
    pub(crate) early: Vec<Packet>,
}

/// A connection's certificate identity (boxed in the connection: most have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsIdentity {
    /// The certificate's common name or whole subject, as the listener is configured.
    pub(crate) name: Arc<str>,
    /// The name replaces the CONNECT's user name (and the password is dropped).
    pub(crate) as_username: bool,
}

/// One connection's protocol state.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) state: ConnState,
    pub(crate) origin: Origin,
    pub(crate) version: ProtocolVersion,
    /// Last packet from the client (before CONNECT: when the connection was accepted).
    pub(crate) last_rx: Instant,
    /// Effective keep alive in seconds (0: off).
    pub(crate) keep_alive: u16,
    /// Packets waiting for the host. QoS 0 PUBLISHes in it are bounded by
    /// `max_queued_messages` (further ones are dropped); everything else is bounded by
    /// Receive Maximum or by the client's own requests (the host stops reading while it
    /// writes).
    pub(crate) out: Outbox,
    pub(crate) closing: bool,
    /// Boxed: most connections have none, and a will with its properties is large.
    pub(crate) will: Option<Box<Will>>,
    /// The identity rights are looked up by (the user name, unless the authenticator
    /// said otherwise).
    pub(crate) username: Option<Arc<str>>,
    /// The client's Receive Maximum: QoS 1/2 PUBLISHes the broker may have unacknowledged.
    pub(crate) receive_max: u16,
    /// The client's Maximum Packet Size.
    pub(crate) max_packet: u32,
    /// The client's Topic Alias Maximum (aliases the broker may use towards it).
    pub(crate) alias_max: u16,
    /// Topic aliases, once the connection uses any (boxed: most never do, and an idle
    /// connection should cost little).
    pub(crate) aliases: Option<Box<Aliases>>,
    /// Its entry in the connection timers (0: none).
    pub(crate) timer: Millis,
    /// Acknowledgements of this connection waiting for the store (see `durable.rs`).
    pub(crate) held: u16,
    /// What its TLS client certificate says (see `identity.rs`).
    pub(crate) tls: Option<Box<TlsIdentity>>,
    /// The listener that accepted it.
    pub(crate) listener: ListenerId,
    /// Its listener's mount point (see `listener.rs`).
    pub(crate) mount: Option<Arc<str>>,
    /// The client said it is a bridge (the protocol level's top bit, Mosquitto's
    /// `try_private`): its MQTT 3 subscriptions are No Local with Retain As Published, so
    /// that what it forwards here is not sent back to it.
    pub(crate) bridge: bool,
    /// Its publish rate buckets (see `rate.rs`).
    pub(crate) rate: PublishRate,
}

impl Conn {
    /// Encodes `packet` into the outbox; records in `woken` that the connection has output.
    pub(crate) fn push(&mut self, id: ConnId, packet: Packet, woken: &mut Vec<ConnId>) {
        debug!(peer = %self.origin, "-> {}", summary(&packet));
        // The acknowledgements of every QoS 1/2 message: four fixed bytes, without the
        // general encoder.
        let short = match &packet {
            Packet::PubAck(r) => Some((0x40, r)),
            Packet::PubRec(r) => Some((0x50, r)),
            Packet::PubRel(r) => Some((0x62, r)),
            Packet::PubComp(r) => Some((0x70, r)),
            _ => None,
        }
        .filter(|(_, r)| r.reason == ReasonCode::SUCCESS && r.properties.is_empty());
        let was_empty = match short {
            Some((first, r)) => self.out.push_short_ack(first, r.packet_id),
            None => self.out.push_packet(&packet, self.version),
        };
        if was_empty {
            woken.push(id);
        }
    }

    /// The client id, once connected.
    pub(crate) fn client(&self) -> Option<&Arc<str>> {
        match &self.state {
            ConnState::Connected(c) => Some(c),
            _ => None,
        }
    }
}

/// Topic aliases of one MQTT 5 connection.
#[derive(Debug, Default)]
pub(crate) struct Aliases {
    /// Assigned by the broker. Bounded by the client's Topic Alias Maximum.
    pub(crate) out: FastMap<ByteStr, u16>,
    /// Set by the client. Bounded by the broker's `topic_alias_maximum`.
    pub(crate) inbound: FastMap<u16, ByteStr>,
}

/// Every open connection.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    /// Boxed: the map's spare capacity then costs a pointer per slot, not a whole entry
    /// (memory per idle connection).
    map: FastMap<ConnId, Box<Conn>>,
    next: ConnId,
    /// Connections whose CONNECT was accepted, until they are gone (for `$SYS`, without a
    /// scan of every session).
    connected: usize,
}

impl Connections {
    /// Registers a new connection.
    pub(crate) fn accept(
        &mut self,
        now: Instant,
        origin: Origin,
        listener: ListenerId,
        mount: Option<Arc<str>>,
    ) -> ConnId {
        self.next += 1;
        let id = self.next;
        self.map.insert(
            id,
            Box::new(Conn {
                state: ConnState::AwaitingConnect,
                origin,
                version: ProtocolVersion::V311,
                last_rx: now,
                keep_alive: 0,
                out: Outbox::default(),
                closing: false,
                will: None,
                username: None,
                receive_max: u16::MAX,
                max_packet: u32::MAX,
                alias_max: 0,
                aliases: None,
                timer: 0,
                held: 0,
                tls: None,
                listener,
                mount,
                bridge: false,
                rate: PublishRate::default(),
            }),
        );
        id
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.map.get(&id).map(|c| &**c)
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.map.get_mut(&id).map(|c| &mut **c)
    }

    /// The connection whose packet is being handled: it exists until `connection_lost`.
    pub(crate) fn handling(&mut self, id: ConnId) -> &mut Conn {
        self.get_mut(id).expect("connection being handled exists")
    }

    /// Marks `id` connected to `client`.
    pub(crate) fn connected(&mut self, id: ConnId, client: Arc<str>) -> &mut Conn {
        let c = self.handling(id);
        c.state = ConnState::Connected(client);
        self.connected += 1;
        self.handling(id)
    }

    /// Forgets a connection that is gone.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Box<Conn>> {
        let c = self.map.remove(&id)?;
        if matches!(c.state, ConnState::Connected(_)) {
            self.connected -= 1;
        }
        Some(c)
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.map.keys().copied().collect()
    }

    /// Connections whose CONNECT was accepted.
    pub(crate) fn connected_count(&self) -> usize {
        self.connected
    }
}

/// When to look at a connection next.
#[derive(Debug, Default)]
pub(crate) struct ConnTimers {
    /// One entry per watched connection at most (its key is in `Conn::timer`). Checked
    /// lazily: a connection that sent packets since is put back at its new deadline, so
    /// packets cost nothing here.
    by_due: BTreeSet<(Millis, ConnId)>,
    /// CONNECT deadlines of new connections, in the order they were accepted (the timeout
    /// is the same for all, so this is also deadline order: accepting costs a push). An
    /// entry whose connection has a keep-alive timer by then is skipped. Bounded by the
    /// connections accepted within the last `connect_timeout`.
    connect: VecDeque<(Millis, ConnId)>,
}

impl ConnTimers {
    /// Watches a new connection's CONNECT deadline.
    pub(crate) fn connect_deadline(&mut self, clock: Clock, id: ConnId, at: Instant) {
        self.connect.push_back((clock.key(at), id));
    }

    /// Puts connection `id`'s timer at `at`, in place of `slot`'s (its `Conn::timer`).
    pub(crate) fn set(&mut self, clock: Clock, id: ConnId, slot: &mut Millis, at: Instant) {
        let ms = clock.key(at);
        self.forget(id, *slot);
        *slot = ms;
        self.by_due.insert((ms, id));
    }

    /// Forgets connection `id`'s timer at `slot` (0: none).
    pub(crate) fn forget(&mut self, id: ConnId, slot: Millis) {
        if slot != 0 {
            self.by_due.remove(&(slot, id));
        }
    }

    /// Takes the due entries: connections to look at, with the timer key each had (None
    /// for a CONNECT deadline).
    pub(crate) fn due(&mut self, now_ms: Millis) -> Vec<(Option<Millis>, ConnId)> {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.connect.front()
            && at <= now_ms
        {
            self.connect.pop_front();
            due.push((None, id));
        }
        // After a burst of connections, give the memory back.
        let (len, cap) = (self.connect.len(), self.connect.capacity());
        if cap > 1024 && len < cap / 4 {
            self.connect.shrink_to(len * 2);
        }
        due.extend(
            pop_due(&mut self.by_due, now_ms)
                .into_iter()
                .map(|(at, id)| (Some(at), id)),
        );
        due
    }

    /// Watched connections, for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_due.len()
    }

    /// CONNECT deadlines not yet passed, for tests.
    #[cfg(test)]
    pub(crate) fn connect_len(&self) -> usize {
        self.connect.len()
    }
}
