//! The router: owns the rooms and dispatches each packet to the one that handles it. See
//! the crate docs for the call order.

use std::sync::Arc;
use std::time::Instant;

use tinsel_codec::{ByteStr, ConnAck, DecodeError, Packet, Properties, Publish, ReasonCode};
use tracing::debug;

use crate::access::{Access, Authenticator, Authorizer, ConnectInfo};
use crate::backpressure::Backpressure;
use crate::client_ids::ClientIds;
use crate::connections::{ConnId, ConnState, ConnTimers, Connections, Origin};
use crate::durable::{Durability, Record, Ticket};
use crate::listener::{ListenerId, NO_LISTENER};
use crate::outbox::Outbox;
use crate::packet_log::summary;
use crate::retained::RetainedMessages;
use crate::sessions::Sessions;
use crate::settings::Settings;
use crate::subscriptions::Subscriptions;
use crate::sys::{Snapshot, Sys};
use crate::timers::Clock;
use crate::wills::Wills;

/// A refusing CONNACK (the reason string only where the client reads one: MQTT 5).
pub(crate) fn refusal(reason: ReasonCode, why: Option<&str>) -> Packet {
    let mut properties = Properties::default();
    if let Some(why) = why {
        properties.make_mut().reason_string = ByteStr::try_from(why).ok();
    }
    Packet::ConnAck(ConnAck {
        session_present: false,
        reason,
        properties,
    })
}

/// What the core asks of its host besides writing packets; see [`Router::take_work`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Work {
    /// CONNECTs to authenticate off the event loop; answer each with
    /// [`Router::authenticated`].
    pub authenticate: Vec<(ConnId, ConnectInfo)>,
    /// Records for the store, in order; once they are synced, call [`Router::durable`]
    /// with `ticket`.
    pub records: Vec<Record>,
    /// The ticket of the last record in `records`.
    pub ticket: Ticket,
}

/// The broker core. See the crate docs for the call order.
pub struct Router {
    pub(crate) settings: Settings,
    pub(crate) access: Access,
    pub(crate) clock: Clock,
    pub(crate) conns: Connections,
    pub(crate) timers: ConnTimers,
    pub(crate) sessions: Sessions,
    pub(crate) subs: Subscriptions,
    pub(crate) retained: RetainedMessages,
    pub(crate) wills: Wills,
    pub(crate) flow: Backpressure,
    pub(crate) durable: Durability,
    pub(crate) sys: Sys,
    pub(crate) ids: ClientIds,
    /// Connections with new output since the last [`Router::wake`].
    pub(crate) woken: Vec<ConnId>,
    /// CONNECTs waiting for the host's authentication. Bounded by the connections.
    pub(crate) to_authenticate: Vec<(ConnId, ConnectInfo)>,
    /// Set by [`Router::shutdown`].
    pub(crate) shutting_down: bool,
    /// When the connection whose PUBLISH was just handled may be read again, if that
    /// PUBLISH put it over its rate limits (see [`Router::take_throttle`]).
    pub(crate) throttled: Option<Instant>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("connections", &self.conns.connected_count())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router with no connections, started at `now`, that lets everybody do everything
    /// until [`Router::set_authenticator`] or [`Router::set_authorizer`] say otherwise.
    pub fn new(settings: Settings, now: Instant) -> Router {
        let ids = ClientIds::new(settings.id_seed, settings.auto_id_prefix.clone());
        Router {
            access: Access::default(),
            clock: Clock { started: now },
            conns: Connections::default(),
            timers: ConnTimers::default(),
            sessions: Sessions::default(),
            subs: Subscriptions::default(),
            retained: RetainedMessages::default(),
            wills: Wills::default(),
            flow: Backpressure::default(),
            durable: Durability::new(settings.durable_acks),
            sys: Sys::new(settings.sys_interval, now),
            ids,
            woken: Vec::new(),
            to_authenticate: Vec::new(),
            shutting_down: false,
            throttled: None,
            settings,
        }
    }

    /// The limits the router was started with.
    pub fn limits(&self) -> &crate::settings::Limits {
        &self.settings.limits
    }

    /// Decides who may connect, from the next CONNECT on.
    pub fn set_authenticator(&mut self, a: Arc<dyn Authenticator>) {
        self.access.authenticator = Some(a);
    }

    /// Decides what clients may do, from the next decision on (subscriptions already made
    /// are checked again at each delivery).
    pub fn set_authorizer(&mut self, a: Arc<dyn Authorizer>) {
        self.access.authorizer = Some(a);
    }

    /// Registers a new connection from `origin`: its id, and the outbox its host takes its
    /// output from. A network connection counts as listener 0's; a link as
    /// [`NO_LISTENER`]'s (no listener's settings apply to it). See [`Router::accept_on`].
    pub fn accept(&mut self, now: Instant, origin: Origin) -> (ConnId, Outbox) {
        let listener = match origin {
            Origin::Network(_) => 0,
            Origin::Link(_) => NO_LISTENER,
        };
        self.accept_on(now, origin, listener)
    }

    /// Registers a new connection from `origin` that came through `listener` (its settings
    /// are `settings.listeners[listener]`, see [`crate::ListenerSettings`]): its id, and the
    /// outbox its host takes its output from.
    pub fn accept_on(
        &mut self,
        now: Instant,
        origin: Origin,
        listener: ListenerId,
    ) -> (ConnId, Outbox) {
        let mount = self
            .settings
            .listeners
            .get(usize::from(listener))
            .and_then(|l| l.mount_point.clone());
        let id = self.conns.accept(now, origin, listener, mount);
        let deadline = now + std::time::Duration::from_secs(self.settings.limits.connect_timeout);
        self.timers.connect_deadline(self.clock, id, deadline);
        if self.shutting_down {
            self.close(now, id, None, false, "broker shutting down");
        }
        let out = self
            .conns
            .get(id)
            .map(|c| c.out.clone())
            .unwrap_or_default();
        (id, out)
    }

    /// The listener `conn` came through (None once it is gone).
    pub fn listener_of(&self, conn: ConnId) -> Option<ListenerId> {
        self.conns.get(conn).map(|c| c.listener)
    }

    /// Topic aliases a client of `listener` may use towards the broker.
    pub(crate) fn alias_max_of(&self, listener: ListenerId) -> u16 {
        self.settings
            .listeners
            .get(usize::from(listener))
            .and_then(|l| l.max_topic_alias)
            .unwrap_or(self.settings.limits.topic_alias_maximum)
    }

    /// The outbox of `conn` (None once it is gone).
    pub fn outbox(&self, conn: ConnId) -> Option<Outbox> {
        self.conns.get(conn).map(|c| c.out.clone())
    }

    /// Wakes every connection with new output since the last call, except `me` (the
    /// connection whose packets were just handled: it takes its output anyway). Parked
    /// connections are passed to `parked`, for the host to take out.
    pub fn wake(&mut self, me: Option<ConnId>, mut parked: impl FnMut(ConnId, &Outbox)) {
        for id in self.woken.drain(..) {
            if Some(id) != me
                && let Some(c) = self.conns.get(id)
                && c.out.wake()
            {
                parked(id, &c.out);
            }
        }
    }

    /// True if [`Router::take_work`] has something.
    pub fn has_work(&self) -> bool {
        !self.to_authenticate.is_empty() || self.durable.has_records()
    }

    /// What the host must do besides writing packets: authentications and records for the
    /// store. Bounded by what the packets handled since the last call produced.
    pub fn take_work(&mut self) -> Work {
        let (records, ticket) = self.durable.take();
        Work {
            authenticate: std::mem::take(&mut self.to_authenticate),
            records,
            ticket,
        }
    }

    /// The store has synced every record up to `ticket`: the acknowledgements that waited
    /// for them leave, in order.
    pub fn durable(&mut self, ticket: Ticket) {
        for (id, packet) in self.durable.release(ticket) {
            if let Some(c) = self.conns.get_mut(id) {
                c.held = c.held.saturating_sub(1);
                if !c.closing {
                    c.push(id, packet, &mut self.woken);
                }
            }
        }
    }

    /// The store cannot write (true) or writes again (false). While it cannot, QoS 1/2
    /// PUBLISHes are refused rather than accepted into memory only: MQTT 5 publishers get
    /// PUBACK/PUBREC 0x97 (Quota exceeded), MQTT 3 publishers, who cannot be told, are
    /// disconnected. What was acknowledged already stays as it is.
    pub fn store_failing(&mut self, failing: bool) {
        self.durable.refusing = self.durable.enabled() && failing;
    }

    /// Sends `packet`, an acknowledgement of a packet whose handling started when `mark`
    /// records had been made: at once, or once the store has what it acknowledges.
    pub(crate) fn acknowledge(&mut self, now: Instant, conn: ConnId, mark: Ticket, packet: Packet) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if !self.durable.must_hold(mark, c.held) {
            return c.push(conn, packet, &mut self.woken);
        }
        if c.held >= self.settings.limits.max_inflight {
            let why = "too many acknowledgements waiting for the store";
            return self.close(
                now,
                conn,
                Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
                true,
                why,
            );
        }
        c.held += 1;
        self.durable.hold(conn, packet);
    }

    /// Handles one packet from `conn`.
    pub fn handle(&mut self, now: Instant, conn: ConnId, packet: Packet) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        debug!(peer = %c.origin, "<- {}", summary(&packet));
        if c.closing {
            return;
        }
        c.last_rx = now;
        let client = match &mut c.state {
            ConnState::AwaitingConnect => {
                if let Packet::Connect(connect) = packet {
                    self.on_connect(now, conn, *connect);
                } else {
                    let why = format!("{} before CONNECT", packet.packet_type().name());
                    self.close(now, conn, None, false, &why);
                }
                return;
            }
            ConnState::Authenticating(_) => return self.early_packet(now, conn, packet),
            ConnState::Connected(client) => client.clone(),
        };
        match packet {
            Packet::Publish(p) => self.on_publish(now, conn, &client, p),
            Packet::PubAck(r) => self.on_puback(now, conn, &client, r),
            Packet::PubRec(r) => self.on_pubrec(now, conn, &client, r),
            Packet::PubRel(r) => self.on_pubrel(now, conn, &client, r),
            Packet::PubComp(r) => self.on_pubcomp(now, conn, &client, r),
            Packet::Subscribe(s) => self.on_subscribe(now, conn, &client, s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(now, conn, &client, u),
            Packet::PingReq => {
                self.conns
                    .handling(conn)
                    .push(conn, Packet::PingResp, &mut self.woken)
            }
            Packet::Disconnect(d) => self.on_disconnect(now, conn, &client, d),
            Packet::Connect(_) => self.protocol_error(now, conn, "second CONNECT"),
            Packet::Auth(_) => {
                self.protocol_error(now, conn, "AUTH without an authentication method");
            }
            other @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                let why = format!("client sent {}", other.packet_type().name());
                self.protocol_error(now, conn, &why);
            }
        }
    }

    /// The bytes from `conn` are malformed: closes only that connection (MQTT 5: DISCONNECT
    /// with the error's reason code first; a CONNECT of an unknown protocol level gets
    /// CONNACK 0x01 in the 3.1.1 form [MQTT-3.1.2-2]).
    pub fn decode_error(&mut self, now: Instant, conn: ConnId, err: &DecodeError) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        debug!(peer = %c.origin, "<- malformed: {err}");
        if c.closing {
            return;
        }
        if matches!(c.state, ConnState::AwaitingConnect)
            && matches!(
                err,
                DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName
            )
        {
            let ack = refusal(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, None);
            c.push(conn, ack, &mut self.woken);
            self.sys.refused(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
        }
        let why = format!("bad packet: {err}");
        // A CONNECT of an unknown level from a connected client is a second CONNECT: a
        // protocol error (0x84 is a CONNACK code, not a DISCONNECT one [MQTT-3.14.2.1]).
        let reason = match err.reason_code() {
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => ReasonCode::PROTOCOL_ERROR,
            other => other,
        };
        self.close(now, conn, Some(reason), true, &why);
    }

    /// True (once) if the packets handled since the last call queued messages for a
    /// congested subscriber: the host should then pause reading from that publisher until
    /// [`Router::congested`] says false.
    pub fn take_pressure(&mut self) -> bool {
        self.flow.take_pressure()
    }

    /// When the connection whose PUBLISH was just handled may be read again, once: set when
    /// that PUBLISH put it over `limits.max_publish_rate` or `limits.max_publish_bytes_rate`
    /// with `publish_rate_action = "throttle"`. The host should stop reading from it (and
    /// from handling what it read already) until then; TCP's flow control slows the client.
    pub fn take_throttle(&mut self) -> Option<Instant> {
        self.throttled.take()
    }

    /// True while a connected subscriber that is still making progress has a long queue or
    /// a long QoS 0 backlog (see `backpressure.rs`).
    pub fn congested(&mut self, now: Instant) -> bool {
        self.flow
            .congested(now, &self.settings.limits, &self.sessions, &self.conns)
    }

    /// What the broker holds and has done so far (cheap: counters only, no scan).
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        Snapshot {
            uptime: now.saturating_duration_since(self.clock.started),
            clients_connected: self.conns.connected_count(),
            clients_total: self.sessions.len(),
            subscriptions: self.subs.len(),
            retained: self.retained.len(),
            stats: self.sys.stats,
        }
    }

    /// Publishes a message from the broker itself (an operator, the admin API): retained
    /// if it says so, routed like a client's.
    pub fn publish(&mut self, now: Instant, p: &Publish) {
        if p.retain {
            self.store_retained(now, p);
        }
        self.route(now, None, p.clone());
    }
}
