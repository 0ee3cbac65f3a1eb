//! The sans-IO broker core: connections' protocol state, sessions, subscriptions, retained
//! messages and wills. It does no I/O and reads no clock.
//!
//! # Call order
//!
//! The network layer drives one [`Router`] for the whole broker:
//!
//! 1. [`Router::accept`] when a TCP connection arrives: returns its [`ConnId`].
//! 2. [`Router::handle`] for every decoded packet, [`Router::decode_error`] when the bytes
//!    are malformed, with the current time.
//! 3. [`Router::wake`] wakes the connections that have new output. Each connection takes
//!    its encoded packets from its [`Outbox`] ([`Router::outbox`]), which also says whether
//!    to close it after writing them.
//! 4. [`Router::tick`] a few times a second: keep alive, CONNECT timeout, will delay,
//!    session expiry, retained message expiry, `$SYS`.
//! 5. [`Router::connection_lost`] when the socket is gone (or was closed as asked).
//!
//! Time only enters through the `now` arguments, so tests drive keep alive, will delay and
//! session expiry with simulated time.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinsel_codec::topic::{parse_shared, valid_topic_filter};
use tinsel_codec::{
    ByteStr, ConnAck, Connect, DecodeError, Disconnect, EncodedPublish, Packet, Properties,
    ProtocolVersion, PubResp, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use tracing::{debug, info};

use crate::config::Limits;
use crate::hooks::{AuthHook, ConnectInfo, SessionStore};
use crate::outbox::Outbox;
use crate::packet_log::{summary, summary_publish};
use crate::retained::RetainedStore;
use crate::session::{Inflight, NEVER_EXPIRES, Queued, Session, SubEntry};
use crate::sys::{self, Stats, SysSnapshot};
use crate::topic_tree::TopicTree;
use crate::{FastMap, FastSet};

/// Up to this many distinct subscribers per message, overlapping subscriptions are merged by
/// a linear scan; beyond it, by a map.
const LINEAR_TARGETS: usize = 16;

/// A subscriber that acknowledged nothing for this long is stalled: it no longer makes
/// publishers wait.
const STALLED: Duration = Duration::from_millis(500);

/// Queue length at which a connected subscriber makes publishers wait: half the queue
/// limit, leaving the other half for what is already on its way.
fn high_water(limits: &Limits) -> usize {
    (limits.max_queued_messages / 2).max(1)
}

/// A shared subscription: (group, filter).
type GroupKey = (Arc<str>, Arc<str>);

/// Identifies one network connection for its whole life; never reused.
pub(crate) type ConnId = u64;

/// The key of a subscription in the topic tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SubKey {
    /// An ordinary subscription of this client.
    Client(Arc<str>),
    /// A member of shared subscription `$share/{group}/{filter}` (boxed: every key in the
    /// tree is as big as the biggest kind, and most subscriptions are ordinary ones).
    Shared(Box<SharedMember>),
}

/// A member of a shared subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SharedMember {
    /// The share name.
    group: Arc<str>,
    /// The filter after the group.
    filter: Arc<str>,
    /// The member.
    client: Arc<str>,
}

/// Settings the core needs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Limits from the configuration.
    pub(crate) limits: Limits,
    /// Time between `$SYS` updates; None turns them off.
    pub(crate) sys_interval: Option<Duration>,
}

/// Shared encodings of one message, by form: MQTT 5 or not, QoS, retain.
#[derive(Default)]
struct FormCache {
    forms: [Option<EncodedPublish>; 12],
}

impl FormCache {
    fn slot(version: ProtocolVersion, qos: QoS, retain: bool) -> usize {
        usize::from(version.is_v5()) * 6 + usize::from(qos.as_u8()) * 2 + usize::from(retain)
    }

    /// `msg` as a subscriber gets it at `qos` (at most the message's) with `retain`, without
    /// subscription identifiers or topic alias; encoded on first use. None if it cannot be
    /// encoded.
    fn get(
        &mut self,
        msg: &Publish,
        qos: QoS,
        retain: bool,
        version: ProtocolVersion,
    ) -> Option<&EncodedPublish> {
        let slot = &mut self.forms[FormCache::slot(version, qos, retain)];
        if slot.is_none() {
            let p = for_subscriber(msg, qos, retain, Vec::new());
            *slot = EncodedPublish::new(&p, version).ok();
        }
        slot.as_ref()
    }
}

#[derive(Debug)]
enum ConnState {
    AwaitingConnect,
    Connected(Arc<str>),
}

/// One network connection's protocol state.
#[derive(Debug)]
struct Conn {
    state: ConnState,
    peer: SocketAddr,
    version: ProtocolVersion,
    /// Last packet from the client (before CONNECT: when the connection was accepted).
    last_rx: Instant,
    /// Effective keep alive in seconds (0: off).
    keep_alive: u16,
    /// Packets waiting for the network layer. QoS 0 PUBLISHes in it are bounded by
    /// `max_queued_messages` (further ones are dropped); everything else is bounded by
    /// Receive Maximum or by the client's own requests (the network layer stops reading
    /// while it writes).
    out: Outbox,
    closing: bool,
    /// Boxed: most connections have none, and a will with its properties is large.
    will: Option<Box<Will>>,
    username: Option<Arc<str>>,
    /// The client's Receive Maximum: QoS 1/2 PUBLISHes the broker may have unacknowledged.
    receive_max: u16,
    /// The client's Maximum Packet Size.
    max_packet: u32,
    /// The client's Topic Alias Maximum (aliases the broker may use towards it).
    alias_max: u16,
    /// Topic aliases, once the connection uses any (boxed: most never do, and an idle
    /// connection should cost little).
    aliases: Option<Box<Aliases>>,
    /// Its entry in [`Router::conn_timers`] (0: none).
    timer: Millis,
}

/// Topic aliases of one MQTT 5 connection.
#[derive(Debug, Default)]
struct Aliases {
    /// Assigned by the broker. Bounded by the client's Topic Alias Maximum.
    out: FastMap<ByteStr, u16>,
    /// Set by the client. Bounded by the broker's `topic_alias_maximum`.
    inbound: FastMap<u16, ByteStr>,
}

/// A retained message.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    publish: Publish,
    received: Instant,
}

/// A will waiting for its delay to pass.
#[derive(Debug)]
struct PendingWill {
    due: Instant,
    will: Will,
}

/// The broker core. See the module docs for the call order.
pub(crate) struct Router {
    settings: Settings,
    hooks: Arc<dyn AuthHook>,
    store: Arc<dyn SessionStore>,
    /// Boxed, like `sessions`: the maps' spare capacity then costs a pointer per slot,
    /// not a whole entry (memory per idle connection).
    conns: FastMap<ConnId, Box<Conn>>,
    next_conn: ConnId,
    sessions: FastMap<Arc<str>, Box<Session>>,
    subs: TopicTree<SubKey, SubEntry>,
    retained: RetainedStore<Retained>,
    /// Round-robin position per shared subscription (group, filter).
    shared_next: HashMap<GroupKey, usize>,
    wills: FastMap<Arc<str>, PendingWill>,
    /// When to look at a connection next (CONNECT timeout, keep alive): one entry per
    /// connection, at most. Checked lazily: a connection that sent packets since is put
    /// back at its new deadline, so packets cost nothing here and [`Router::tick`] looks
    /// only at connections whose deadline came, not at every connection.
    conn_timers: BTreeSet<(Millis, ConnId)>,
    /// CONNECT deadlines of new connections, in the order they were accepted (the timeout
    /// is the same for all, so this is also deadline order: accepting costs a push). An
    /// entry whose connection has a keep-alive timer by then is skipped. Bounded by the
    /// connections accepted within the last `connect_timeout`.
    connect_timers: VecDeque<(Millis, ConnId)>,
    /// When disconnected sessions with an expiry interval end: one entry per such session
    /// (removed when it reconnects or ends).
    session_timers: BTreeSet<(Millis, Arc<str>)>,
    /// When retained messages with a Message Expiry Interval expire: one entry per such
    /// message (replacing or deleting a message takes its entry out). Retained messages
    /// without an expiry (most) cost nothing here.
    retained_timers: BTreeSet<(Millis, ByteStr)>,
    /// Connections with new output since the last [`Router::wake`].
    woken: Vec<ConnId>,
    stats: Stats,
    started: Instant,
    next_sys: Option<Instant>,
    assigned_ids: u64,
    /// Set when a delivery found a congested subscriber; see [`Router::take_pressure`].
    pressure: bool,
    /// Subscribers that made publishers wait. Bounded by the number of sessions.
    congested: FastSet<Arc<str>>,
    /// The client whose PUBLISH is being routed: it never waits for itself.
    publishing: Option<Arc<str>>,
    /// Set by [`Router::shutdown`].
    shutting_down: bool,
    /// Connections whose CONNECT was accepted, until they are gone (for `$SYS`, without a
    /// scan of every session).
    connected: usize,
}

/// A point on the timers' clock: milliseconds since the router started, never 0 (0 means
/// no timer). u64 milliseconds outlast any broker.
type Millis = u64;

fn millis(started: Instant, at: Instant) -> Millis {
    let ms = at.saturating_duration_since(started).as_millis();
    Millis::try_from(ms).unwrap_or(Millis::MAX).max(1)
}

/// The timers' key for a deadline: the millisecond after it, so that a timer found due
/// (key <= now) is past its deadline.
fn timer_key(started: Instant, at: Instant) -> Millis {
    millis(started, at).saturating_add(1)
}

/// Takes the entries of `timers` that are due at `now_ms`, earliest first.
fn pop_due<T: Ord>(timers: &mut BTreeSet<(Millis, T)>, now_ms: Millis) -> Vec<(Millis, T)> {
    let mut due = Vec::new();
    while timers.first().is_some_and(|(at, _)| *at <= now_ms) {
        due.extend(timers.pop_first());
    }
    due
}

/// When a retained message expires (None: it never does).
fn retained_due(started: Instant, m: &Retained) -> Option<Millis> {
    let e = m.publish.properties.message_expiry_interval?;
    let at = m.received.checked_add(Duration::from_secs(u64::from(e)))?;
    Some(timer_key(started, at))
}

/// When a disconnected session ends on its own (None: never, or it is connected).
fn session_due(started: Instant, s: &Session) -> Option<Millis> {
    if s.conn.is_some() || s.expiry == NEVER_EXPIRES || s.expiry == 0 {
        return None;
    }
    let at = s
        .disconnected_at?
        .checked_add(Duration::from_secs(u64::from(s.expiry)))?;
    Some(timer_key(started, at))
}

impl Router {
    /// A router with no connections.
    pub(crate) fn new(
        settings: Settings,
        hooks: Arc<dyn AuthHook>,
        store: Arc<dyn SessionStore>,
        now: Instant,
    ) -> Router {
        let next_sys = settings.sys_interval.map(|_| now);
        Router {
            settings,
            hooks,
            store,
            conns: FastMap::default(),
            next_conn: 1,
            sessions: FastMap::default(),
            subs: TopicTree::new(),
            retained: RetainedStore::new(),
            shared_next: HashMap::new(),
            wills: FastMap::default(),
            conn_timers: BTreeSet::new(),
            connect_timers: VecDeque::new(),
            session_timers: BTreeSet::new(),
            retained_timers: BTreeSet::new(),
            woken: Vec::new(),
            stats: Stats::default(),
            started: now,
            next_sys,
            assigned_ids: 0,
            pressure: false,
            congested: FastSet::default(),
            publishing: None,
            shutting_down: false,
            connected: 0,
        }
    }

    /// Registers a new network connection from `peer` (for logs).
    pub(crate) fn accept(&mut self, now: Instant, peer: SocketAddr) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Box::new(Conn {
                state: ConnState::AwaitingConnect,
                peer,
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
            }),
        );
        let deadline = now + Duration::from_secs(self.settings.limits.connect_timeout);
        self.connect_timers
            .push_back((timer_key(self.started, deadline), id));
        if self.shutting_down {
            self.close(now, id, None, false, "broker shutting down");
        }
        id
    }

    /// The outbox of `conn`, for its connection task to take packets from without the
    /// router's lock.
    pub(crate) fn outbox(&self, conn: ConnId) -> Option<Outbox> {
        self.conns.get(&conn).map(|c| c.out.clone())
    }

    /// Wakes every connection with new output since the last call, except `me` (the
    /// connection whose packets were just handled: it takes its output anyway). Parked
    /// connections are passed to `parked`, for the parking lot to take out.
    pub(crate) fn wake(&mut self, me: Option<ConnId>, mut parked: impl FnMut(ConnId, &Outbox)) {
        for id in self.woken.drain(..) {
            if Some(id) != me
                && let Some(c) = self.conns.get(&id)
                && c.out.wake()
            {
                parked(id, &c.out);
            }
        }
    }

    /// The socket of `conn` is gone: publishes the will if the client did not disconnect
    /// normally and forgets the connection.
    pub(crate) fn connection_lost(&mut self, now: Instant, conn: ConnId, why: &str) {
        if self.conns.get(&conn).is_some_and(|c| !c.closing) {
            self.close(now, conn, None, true, why);
        }
        if let Some(c) = self.conns.remove(&conn) {
            if c.timer != 0 {
                self.conn_timers.remove(&(c.timer, conn));
            }
            if matches!(c.state, ConnState::Connected(_)) {
                self.connected -= 1;
            }
        }
    }

    /// Puts connection `id`'s timer at `at` (rounded up to the next millisecond), in place
    /// of the one it had.
    fn set_conn_timer(&mut self, id: ConnId, at: Instant) {
        let ms = timer_key(self.started, at);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.timer != 0 {
            self.conn_timers.remove(&(c.timer, id));
        }
        c.timer = ms;
        self.conn_timers.insert((ms, id));
    }

    /// Takes `client`'s session out of [`Router::session_timers`] (it reconnects or ends).
    fn forget_session_timer(&mut self, client: &Arc<str>) {
        let started = self.started;
        if let Some(due) = self
            .sessions
            .get(client)
            .and_then(|s| session_due(started, s))
        {
            self.session_timers.remove(&(due, client.clone()));
        }
    }

    /// The broker is shutting down: tells every connection (MQTT 5: DISCONNECT 0x8B) and
    /// closes it; connections accepted from now on are closed at once.
    pub(crate) fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            self.close(
                now,
                conn,
                Some(ReasonCode::SERVER_SHUTTING_DOWN),
                false,
                "broker shutting down",
            );
        }
    }

    /// The bytes from `conn` are malformed: closes only that connection (MQTT 5: DISCONNECT
    /// with the error's reason code first).
    pub(crate) fn decode_error(&mut self, now: Instant, conn: ConnId, err: &DecodeError) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        debug!(peer = %c.peer, "<- malformed: {err}");
        if c.closing {
            return;
        }
        if matches!(c.state, ConnState::AwaitingConnect)
            && matches!(
                err,
                DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName
            )
        {
            // [MQTT-3.1.2-2] CONNACK 0x01 (3.1.1 form) then close.
            push(
                c,
                conn,
                Packet::ConnAck(ConnAck {
                    session_present: false,
                    reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                    properties: Properties::default(),
                }),
                &mut self.woken,
            );
        }
        let why = format!("bad packet: {err}");
        self.close(now, conn, Some(err.reason_code()), true, &why);
    }

    /// Handles one packet from `conn`.
    pub(crate) fn handle(&mut self, now: Instant, conn: ConnId, packet: Packet) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        debug!(peer = %c.peer, "<- {}", summary(&packet));
        if c.closing {
            return;
        }
        c.last_rx = now;
        let client = match &c.state {
            ConnState::AwaitingConnect => {
                if let Packet::Connect(connect) = packet {
                    self.on_connect(now, conn, *connect);
                } else {
                    let why = format!("{} before CONNECT", packet.packet_type().name());
                    self.close(now, conn, None, false, &why);
                }
                return;
            }
            ConnState::Connected(client) => client.clone(),
        };
        match packet {
            Packet::Publish(p) => self.on_publish(now, conn, &client, p),
            Packet::PubAck(r) => self.on_puback(now, conn, &client, r),
            Packet::PubRec(r) => self.on_pubrec(now, conn, &client, r),
            Packet::PubRel(r) => self.on_pubrel(conn, &client, r),
            Packet::PubComp(r) => self.on_pubcomp(now, conn, &client, r),
            Packet::Subscribe(s) => self.on_subscribe(now, conn, &client, s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(now, conn, &client, u),
            Packet::PingReq => push(
                c_mut(&mut self.conns, conn),
                conn,
                Packet::PingResp,
                &mut self.woken,
            ),
            Packet::Disconnect(d) => self.on_disconnect(now, conn, &client, d),
            Packet::Connect(_) => {
                self.protocol_error(now, conn, "second CONNECT");
            }
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

    fn protocol_error(&mut self, now: Instant, conn: ConnId, why: &str) {
        let why = format!("protocol error: {why}");
        self.close(now, conn, Some(ReasonCode::PROTOCOL_ERROR), true, &why);
    }

    /// Closes `conn`: sends DISCONNECT `reason` first (MQTT 5, after CONNECT), detaches its
    /// session, publishes or schedules the will if `will`, and ends a session that expires
    /// with its connection.
    fn close(
        &mut self,
        now: Instant,
        conn: ConnId,
        reason: Option<ReasonCode>,
        will: bool,
        why: &str,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing {
            return;
        }
        c.closing = true;
        self.woken.push(conn);
        if let Some(reason) = reason
            && c.version.is_v5()
            && matches!(c.state, ConnState::Connected(_))
        {
            let mut properties = Properties::default();
            if let Ok(s) = ByteStr::try_from(why) {
                properties.make_mut().reason_string = Some(s);
            }
            let packet = Packet::Disconnect(Disconnect { reason, properties });
            debug!(peer = %c.peer, "-> {}", summary(&packet));
            c.out.push_packet(&packet, c.version);
        }
        // After the last packet: the connection task may take the outbox at any moment.
        c.out.close();
        let client = match &c.state {
            ConnState::Connected(client) => client.clone(),
            ConnState::AwaitingConnect => {
                debug!(peer = %c.peer, "connection closed before CONNECT: {why}");
                return;
            }
        };
        let will_msg = c.will.take();
        info!(client = %client, peer = %c.peer, "disconnected: {why}");
        let Some(session) = self.sessions.get_mut(&client) else {
            return;
        };
        if session.conn != Some(conn) {
            return;
        }
        session.conn = None;
        session.disconnected_at = Some(now);
        let expiry = session.expiry;
        if let Some(due) = session_due(self.started, session) {
            self.session_timers.insert((due, client.clone()));
        }
        if will && let Some(w) = will_msg.map(|w| *w) {
            let delay = w.properties.will_delay_interval.unwrap_or(0).min(expiry);
            if delay == 0 {
                self.publish_will(now, w);
            } else {
                let due = now + Duration::from_secs(u64::from(delay));
                self.wills
                    .insert(client.clone(), PendingWill { due, will: w });
            }
        }
        if expiry == 0 {
            self.end_session(now, &client);
        }
    }

    /// Removes a session and its subscriptions; publishes its pending will.
    fn end_session(&mut self, now: Instant, client: &Arc<str>) {
        self.forget_session_timer(client);
        if let Some(session) = self.sessions.remove(client) {
            for filter in session.subscriptions.filters() {
                let (tree_filter, key) = sub_key(filter, client);
                self.subs.remove(tree_filter, &key);
            }
            self.store.session_ended(client);
            debug!(client = %client, "session ended");
        }
        if let Some(p) = self.wills.remove(client) {
            self.publish_will(now, p.will);
        }
    }

    fn publish_will(&mut self, now: Instant, will: Will) {
        let mut properties = will.properties;
        if let Some(p) = properties.get_mut() {
            p.will_delay_interval = None;
        }
        let p = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: 0,
            properties,
            payload: will.payload,
        };
        debug!(topic = %p.topic, "publishing will");
        if p.retain {
            self.store_retained(now, &p);
        }
        self.route(now, None, &p);
    }

    fn refuse(&mut self, now: Instant, conn: ConnId, reason: ReasonCode, why: &str) {
        let c = c_mut(&mut self.conns, conn);
        let mut properties = Properties::default();
        if c.version.is_v5() {
            properties.make_mut().reason_string = ByteStr::try_from(why).ok();
        }
        push(
            c,
            conn,
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason,
                properties,
            }),
            &mut self.woken,
        );
        info!(peer = %c.peer, "CONNECT refused ({reason}): {why}");
        self.close(now, conn, None, false, why);
    }

    fn on_connect(&mut self, now: Instant, conn: ConnId, connect: Connect) {
        let limits = self.settings.limits.clone();
        let v5 = connect.protocol.is_v5();
        c_mut(&mut self.conns, conn).version = connect.protocol;

        if v5
            && let Some(method) = &connect.properties.authentication_method
            && !self.hooks.supports_auth_method(method)
        {
            let why = format!("unsupported authentication method {method:?}");
            return self.refuse(now, conn, ReasonCode::BAD_AUTHENTICATION_METHOD, &why);
        }

        let mut assigned = None;
        let client: Arc<str> = if connect.client_id.is_empty() {
            // [MQTT-3.1.3-8] 3.1.1 allows an empty id only with clean session; 3.1 never.
            let allowed = v5 || (connect.protocol == ProtocolVersion::V311 && connect.clean_start);
            if !allowed {
                return self.refuse(
                    now,
                    conn,
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                    "empty client id without clean session",
                );
            }
            self.assigned_ids += 1;
            let id = format!("auto-{:016x}-{}", rand::random::<u64>(), self.assigned_ids);
            assigned = Some(id.clone());
            Arc::from(id)
        } else {
            Arc::from(connect.client_id.as_str())
        };

        let info = ConnectInfo {
            client_id: &client,
            username: connect.username.as_ref(),
            password: connect.password.as_ref(),
        };
        if let Err(reason) = self.hooks.authenticate(&info) {
            return self.refuse(now, conn, reason, "refused by the authentication hook");
        }

        // Keep alive above the broker's maximum (as Mosquitto's max_keepalive): MQTT 5 clients
        // are told the value to use (also when they asked for none); MQTT 3 clients cannot be
        // told, so they are refused.
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        let max = limits.max_keep_alive;
        if max > 0 && max < u16::MAX {
            if v5 && (keep_alive > max || keep_alive == 0) {
                keep_alive = max;
                server_keep_alive = Some(max);
            } else if !v5 && keep_alive > max {
                let why = format!("keep alive {keep_alive} s is above the maximum of {max} s");
                return self.refuse(now, conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, &why);
            }
        }

        let expiry = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            NEVER_EXPIRES
        };

        // A new client id (the usual case) has nothing to take over, end or resume: one
        // lookup here and the insertion below.
        let mut session_present = false;
        if let Some(old_conn) = self.sessions.get(&client).map(|s| s.conn) {
            // Session takeover [MQTT-3.1.4-3].
            if let Some(old) = old_conn {
                self.close(
                    now,
                    old,
                    Some(ReasonCode::SESSION_TAKEN_OVER),
                    true,
                    "session taken over by a new connection",
                );
            }
            if connect.clean_start {
                self.end_session(now, &client);
            }
            session_present = self.sessions.contains_key(&client);
            self.forget_session_timer(&client);
        }
        // A will waiting for its delay: the session continues (drop it) or ends (publish it).
        if !self.wills.is_empty()
            && let Some(pending) = self.wills.remove(&client)
            && connect.clean_start
        {
            self.publish_will(now, pending.will);
        }
        let session = self
            .sessions
            .entry(client.clone())
            .or_insert_with(|| Box::new(Session::new(expiry, now)));
        session.conn = Some(conn);
        session.expiry = expiry;
        session.disconnected_at = None;
        session.last_progress = now;
        self.store.session_opened(&client, expiry);

        let c = c_mut(&mut self.conns, conn);
        c.state = ConnState::Connected(client.clone());
        self.connected += 1;
        c.keep_alive = keep_alive;
        // Copied: kept for the connection's life, they must not pin the read buffer the
        // CONNECT was decoded from.
        c.will = connect.will.map(|w| Box::new(detach_will(w)));
        c.username = connect.username.map(|u| Arc::from(u.as_str()));
        if v5 {
            let p = &connect.properties;
            c.receive_max = p.receive_maximum.unwrap_or(u16::MAX).max(1);
            c.max_packet = p.maximum_packet_size.unwrap_or(u32::MAX).max(1);
            c.alias_max = p.topic_alias_maximum.unwrap_or(0);
        } else {
            // MQTT 3 has no Receive Maximum: the broker's own limit bounds what is in flight.
            c.receive_max = limits.max_inflight;
        }
        let mut properties = Properties::default();
        if v5 {
            let properties = properties.make_mut();
            properties.receive_maximum = Some(limits.max_inflight);
            properties.maximum_packet_size = Some(limits.max_packet_size);
            if limits.topic_alias_maximum > 0 {
                properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
            }
            properties.server_keep_alive = server_keep_alive;
            properties.assigned_client_identifier =
                assigned.and_then(|a| ByteStr::try_from(a).ok());
        }
        info!(
            client = %client,
            peer = %c.peer,
            version = %connect.protocol,
            clean_start = connect.clean_start,
            keep_alive,
            session_present,
            "connected"
        );
        push(
            c,
            conn,
            Packet::ConnAck(ConnAck {
                session_present,
                reason: ReasonCode::SUCCESS,
                properties,
            }),
            &mut self.woken,
        );
        let limit = Duration::from_millis(u64::from(keep_alive) * 1500);
        if keep_alive > 0 && limit < Duration::from_secs(limits.connect_timeout) {
            // Due before its CONNECT-timeout entry comes up (that one looks at it then).
            self.set_conn_timer(conn, now + limit);
        }
        if session_present {
            self.resume(now, conn, &client);
        }
    }

    /// Resends unacknowledged PUBLISHes with DUP and PUBRELs, then sends queued messages
    /// [MQTT-4.4.0-1].
    fn resume(&mut self, now: Instant, conn: ConnId, client: &Arc<str>) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut expired = Vec::new();
        for (&pid, inflight) in &session.inflight {
            match inflight {
                Inflight::Publish { publish, received } => {
                    let mut p = Publish::clone(publish);
                    p.dup = true;
                    match prepare(c, p, now, *received) {
                        Some(p) => emit(c, conn, p, &mut self.stats, &mut self.woken, None),
                        None => expired.push(pid),
                    }
                }
                Inflight::Release => {
                    push(c, conn, Packet::PubRel(PubResp::new(pid)), &mut self.woken);
                }
            }
        }
        for pid in expired {
            session.inflight.remove(&pid);
            self.stats.messages_dropped += 1;
        }
        drain(session, c, conn, now, &mut self.stats, &mut self.woken);
    }

    fn on_publish(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, mut p: Publish) {
        let limits = &self.settings.limits;
        let c = c_mut(&mut self.conns, conn);
        let v5 = c.version.is_v5();
        // Topic alias from the client [MQTT-3.3.2-7] .. [MQTT-3.3.2-12].
        if let Some(alias) = p.properties.get_mut().and_then(|v| v.topic_alias.take()) {
            if alias == 0 || alias > limits.topic_alias_maximum {
                let why = format!("topic alias {alias} out of range");
                return self.close(now, conn, Some(ReasonCode::TOPIC_ALIAS_INVALID), true, &why);
            }
            if p.topic.is_empty() {
                match c.aliases.as_ref().and_then(|a| a.inbound.get(&alias)) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        let why = format!("unknown topic alias {alias}");
                        return self.protocol_error(now, conn, &why);
                    }
                }
            } else {
                // Copied so the alias table does not pin a whole read buffer.
                let topic = ByteStr::from_utf8(Bytes::copy_from_slice(p.topic.as_bytes()))
                    .unwrap_or_default();
                c.aliases
                    .get_or_insert_default()
                    .inbound
                    .insert(alias, topic);
            }
        } else if p.topic.is_empty() {
            return self.protocol_error(now, conn, "empty topic name without topic alias");
        }
        if let Some(v) = p.properties.get_mut() {
            v.subscription_identifiers.clear();
        }
        p.dup = false;
        let username = c.username.clone();
        let qos = p.qos;
        let pid = p.packet_id;
        self.stats.messages_received += 1;

        if qos == QoS::ExactlyOnce {
            let Some(session) = self.sessions.get_mut(client) else {
                return;
            };
            if session.incoming_qos2.contains(&pid) {
                // A resend before PUBREL: acknowledge again, do not forward again.
                let c = c_mut(&mut self.conns, conn);
                return push(c, conn, Packet::PubRec(PubResp::new(pid)), &mut self.woken);
            }
            if session.incoming_qos2.len() >= usize::from(limits.max_inflight) {
                return self.close(
                    now,
                    conn,
                    Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
                    true,
                    "receive maximum exceeded",
                );
            }
        }

        let allowed = !p.topic.starts_with("$SYS")
            && self
                .hooks
                .authorize_publish(client, username.as_deref(), &p.topic);
        let mut matched = false;
        if allowed {
            if p.retain {
                self.store_retained(now, &p);
            }
            self.publishing = Some(client.clone());
            matched = self.route(now, Some(client), &p);
            self.publishing = None;
        }
        let reason = if !v5 {
            ReasonCode::SUCCESS
        } else if !allowed {
            ReasonCode::NOT_AUTHORIZED
        } else if !matched {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        let ack = PubResp {
            packet_id: pid,
            reason,
            properties: Properties::default(),
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                let c = c_mut(&mut self.conns, conn);
                push(c, conn, Packet::PubAck(ack), &mut self.woken);
            }
            QoS::ExactlyOnce => {
                if reason.is_success()
                    && let Some(session) = self.sessions.get_mut(client)
                {
                    session.incoming_qos2.insert(pid);
                }
                let c = c_mut(&mut self.conns, conn);
                push(c, conn, Packet::PubRec(ack), &mut self.woken);
            }
        }
    }

    /// Stores, replaces or (empty payload) deletes the retained message of `p.topic`.
    fn store_retained(&mut self, now: Instant, p: &Publish) {
        if p.payload.is_empty() {
            if let Some(old) = self.retained.remove(&p.topic) {
                self.forget_retained_timer(&old);
            }
            return;
        }
        // Copied: a retained message may live for days and must not pin a read buffer.
        let topic =
            ByteStr::from_utf8(Bytes::copy_from_slice(p.topic.as_bytes())).unwrap_or_default();
        let mut properties = p.properties.clone();
        clear_hop_properties(&mut properties);
        let publish = Publish {
            dup: false,
            qos: p.qos,
            retain: true,
            topic,
            packet_id: 0,
            properties,
            payload: Bytes::copy_from_slice(&p.payload),
        };
        let msg = Retained {
            publish,
            received: now,
        };
        let timer = retained_due(self.started, &msg).map(|due| (due, msg.publish.topic.clone()));
        // The old entry first: a message replaced in the same millisecond with the same
        // expiry has the same entry.
        if let Some(old) = self.retained.insert(&p.topic, msg) {
            self.forget_retained_timer(&old);
        }
        if let Some(t) = timer {
            self.retained_timers.insert(t);
        }
    }

    /// Takes a replaced or deleted retained message's entry out of `retained_timers`.
    fn forget_retained_timer(&mut self, old: &Retained) {
        if let Some(due) = retained_due(self.started, old) {
            self.retained_timers
                .remove(&(due, old.publish.topic.clone()));
        }
    }

    /// Forwards `msg` to every matching subscription. True if anybody subscribes.
    fn route(&mut self, now: Instant, publisher: Option<&Arc<str>>, msg: &Publish) -> bool {
        // Overlapping subscriptions of one client are merged into one delivery at the
        // highest QoS carrying every subscription identifier.
        struct Target {
            client: Arc<str>,
            qos: QoS,
            retain_as_published: bool,
            ids: Vec<u32>,
        }
        let mut targets: Vec<Target> = Vec::new();
        let mut index: FastMap<Arc<str>, usize> = FastMap::default();
        let mut groups: FastMap<GroupKey, Vec<(Arc<str>, SubEntry)>> = FastMap::default();
        self.subs
            .for_each_match(&msg.topic, |key, entry| match key {
                SubKey::Client(client) => {
                    if entry.options.no_local && publisher == Some(client) {
                        return;
                    }
                    // Few targets: a linear scan; many: a map, built once past the threshold.
                    let found = if targets.len() <= LINEAR_TARGETS {
                        targets.iter().position(|t| t.client == *client)
                    } else {
                        if index.is_empty() {
                            let all = targets.iter().enumerate();
                            index.extend(all.map(|(i, t)| (t.client.clone(), i)));
                        }
                        index.get(client).copied()
                    };
                    let i = found.unwrap_or_else(|| {
                        targets.push(Target {
                            client: client.clone(),
                            qos: QoS::AtMostOnce,
                            retain_as_published: false,
                            ids: Vec::new(),
                        });
                        if !index.is_empty() {
                            index.insert(client.clone(), targets.len() - 1);
                        }
                        targets.len() - 1
                    });
                    let t = &mut targets[i];
                    t.qos = t.qos.max(entry.options.qos);
                    t.retain_as_published |= entry.options.retain_as_published;
                    t.ids.extend(entry.id);
                }
                SubKey::Shared(m) => groups
                    .entry((m.group.clone(), m.filter.clone()))
                    .or_default()
                    .push((m.client.clone(), *entry)),
            });
        let matched = !targets.is_empty() || !groups.is_empty();
        let mut cache = FormCache::default();
        let expires = msg.properties.message_expiry_interval.is_some();
        for t in targets {
            if msg.qos.min(t.qos) == QoS::AtMostOnce && t.ids.is_empty() && !expires {
                let retain = t.retain_as_published && msg.retain;
                self.deliver_qos0(now, &t.client, msg, retain, &mut cache);
                continue;
            }
            let p = for_subscriber(msg, t.qos, t.retain_as_published, t.ids);
            self.deliver(now, &t.client, p, now, Some(&mut cache));
        }
        for (group, mut members) in groups {
            // Round robin over the members, in a stable order, preferring connected ones.
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let n = members.len();
            let start = *self.shared_next.get(&group).unwrap_or(&0) % n;
            let online = (0..n).map(|k| (start + k) % n).find(|&i| {
                self.sessions
                    .get(&members[i].0)
                    .is_some_and(|s| s.conn.is_some())
            });
            let chosen = online.unwrap_or(start);
            self.shared_next.insert(group, chosen + 1);
            let (client, entry) = &members[chosen];
            let p = for_subscriber(
                msg,
                entry.options.qos,
                entry.options.retain_as_published,
                entry.id.into_iter().collect(),
            );
            self.deliver(now, client, p, now, Some(&mut cache));
        }
        matched
    }

    /// Sends `msg` at QoS 0 to `client` (nothing if it is offline: QoS 0 is not queued) from
    /// the shared encoding, under one lock of its outbox: the fan-out path. For messages
    /// without expiry or subscription identifiers.
    fn deliver_qos0(
        &mut self,
        now: Instant,
        client: &Arc<str>,
        msg: &Publish,
        retain: bool,
        cache: &mut FormCache,
    ) {
        let Some(id) = self.sessions.get(client).and_then(|s| s.conn) else {
            return;
        };
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if c.version.is_v5() && c.alias_max > 0 {
            // Topic aliases are chosen per connection: the general path.
            let p = for_subscriber(msg, QoS::AtMostOnce, retain, Vec::new());
            return self.deliver(now, client, p, now, Some(cache));
        }
        let Some(publish) = cache.get(msg, QoS::AtMostOnce, retain, c.version) else {
            self.stats.messages_dropped += 1;
            return;
        };
        if publish.len() > c.max_packet as usize {
            // [MQTT-3.1.2-25] Larger than the client accepts.
            self.stats.messages_dropped += 1;
            return;
        }
        let limits = &self.settings.limits;
        let watch = (self.publishing.as_ref() != Some(client)).then(|| high_water(limits));
        let offer = c
            .out
            .offer_qos0(now, publish, limits.max_queued_messages, watch, STALLED);
        if offer.congested {
            self.pressure = true;
            self.congested.insert(client.clone());
        }
        if !offer.pushed {
            // The connection is not keeping up: QoS 0 is dropped.
            self.stats.messages_dropped += 1;
            return;
        }
        debug!(
            peer = %c.peer,
            "-> {}",
            summary_publish(&for_subscriber(msg, QoS::AtMostOnce, retain, Vec::new()))
        );
        self.stats.messages_sent += 1;
        if offer.was_empty {
            self.woken.push(id);
        }
    }

    /// Sends `p` (QoS already downgraded) to `client` now, or queues it.
    fn deliver(
        &mut self,
        now: Instant,
        client: &Arc<str>,
        p: Publish,
        received: Instant,
        cache: Option<&mut FormCache>,
    ) {
        let limits = &self.settings.limits;
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let conn = session
            .conn
            .and_then(|id| self.conns.get_mut(&id).map(|c| (id, c)));
        match conn {
            Some((id, c)) if p.qos == QoS::AtMostOnce => {
                let (waiting, since) = c.out.qos0_backlog(now);
                // A subscriber whose connection keeps taking its packets, but slower than
                // they come: ask the publishers to wait (see `congested`), so that TCP slows
                // them down instead of their messages being dropped. One that took nothing
                // for `STALLED` (its client does not read) only loses messages.
                if waiting + 1 >= high_water(limits)
                    && self.publishing.as_ref() != Some(client)
                    && now.saturating_duration_since(since) < STALLED
                {
                    self.pressure = true;
                    self.congested.insert(client.clone());
                    c.out.watch();
                }
                if waiting >= limits.max_queued_messages {
                    // The connection is not keeping up: QoS 0 is dropped.
                    self.stats.messages_dropped += 1;
                    return;
                }
                match prepare(c, p, now, received) {
                    Some(p) => emit(c, id, p, &mut self.stats, &mut self.woken, cache),
                    None => self.stats.messages_dropped += 1,
                }
            }
            Some((id, c))
                if session.queue.is_empty()
                    && session.inflight.len() < usize::from(c.receive_max) =>
            {
                send_inflight(
                    session,
                    c,
                    id,
                    p,
                    now,
                    received,
                    &mut self.stats,
                    &mut self.woken,
                    cache,
                );
            }
            None if p.qos == QoS::AtMostOnce => {
                // QoS 0 is not queued for offline clients (as in Mosquitto by default).
            }
            other => {
                let online = other.is_some();
                let queued = Queued {
                    publish: p,
                    received,
                };
                if !session.enqueue(queued, limits.max_queued_messages, limits.max_queued_bytes) {
                    // Queue full: the newest message is dropped.
                    self.stats.messages_dropped += 1;
                }
                // A connected subscriber that acknowledges, but slower than messages come:
                // ask the publishers to wait (see `congested`) rather than drop later.
                if online
                    && self.publishing.as_ref() != Some(client)
                    && session.queue.len() >= high_water(limits)
                    && now.saturating_duration_since(session.last_progress) < STALLED
                {
                    self.pressure = true;
                    self.congested.insert(client.clone());
                }
            }
        }
    }

    /// True (once) if the packets handled since the last call queued messages for a
    /// congested subscriber: the network layer should then pause reading from that
    /// publisher until [`Router::congested`] says false.
    pub(crate) fn take_pressure(&mut self) -> bool {
        std::mem::take(&mut self.pressure)
    }

    /// True while a connected subscriber that is still making progress has a long queue or
    /// a long QoS 0 backlog on its connection (above half of the high-water mark). A
    /// subscriber that has acknowledged nothing (queue) or whose connection has taken
    /// nothing (QoS 0) for half a second does not count: it loses messages instead of
    /// stalling every publisher.
    pub(crate) fn congested(&mut self, now: Instant) -> bool {
        let low = high_water(&self.settings.limits) / 2;
        let sessions = &self.sessions;
        let conns = &self.conns;
        let fresh = |t: Instant| now.saturating_duration_since(t) < STALLED;
        self.congested.retain(|client| {
            let Some(s) = sessions.get(client) else {
                return false;
            };
            let Some(c) = s.conn.and_then(|id| conns.get(&id)) else {
                return false;
            };
            let (qos0, since) = c.out.qos0_waiting();
            (s.queue.len() > low && fresh(s.last_progress))
                || (qos0 > low && since.is_some_and(fresh))
        });
        !self.congested.is_empty()
    }

    fn on_puback(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, r: PubResp) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.last_progress = now;
        if let Some(Inflight::Publish { publish, .. }) = session.inflight.get(&r.packet_id)
            && publish.qos == QoS::AtLeastOnce
        {
            session.inflight.remove(&r.packet_id);
            let c = c_mut(&mut self.conns, conn);
            drain(session, c, conn, now, &mut self.stats, &mut self.woken);
        }
    }

    fn on_pubrec(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, r: PubResp) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.last_progress = now;
        let c = c_mut(&mut self.conns, conn);
        match session.inflight.get(&r.packet_id) {
            Some(Inflight::Publish { publish, .. }) if publish.qos == QoS::ExactlyOnce => {
                if r.reason.is_success() {
                    session.inflight.insert(r.packet_id, Inflight::Release);
                    push(
                        c,
                        conn,
                        Packet::PubRel(PubResp::new(r.packet_id)),
                        &mut self.woken,
                    );
                } else {
                    // The client refused it: the flow ends here.
                    session.inflight.remove(&r.packet_id);
                    drain(session, c, conn, now, &mut self.stats, &mut self.woken);
                }
            }
            Some(Inflight::Release) => {
                push(
                    c,
                    conn,
                    Packet::PubRel(PubResp::new(r.packet_id)),
                    &mut self.woken,
                );
            }
            _ => {
                let mut rel = PubResp::new(r.packet_id);
                rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                push(c, conn, Packet::PubRel(rel), &mut self.woken);
            }
        }
    }

    fn on_pubcomp(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, r: PubResp) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.last_progress = now;
        if let Some(Inflight::Release) = session.inflight.get(&r.packet_id) {
            session.inflight.remove(&r.packet_id);
            let c = c_mut(&mut self.conns, conn);
            drain(session, c, conn, now, &mut self.stats, &mut self.woken);
        }
    }

    fn on_pubrel(&mut self, conn: ConnId, client: &Arc<str>, r: PubResp) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let mut comp = PubResp::new(r.packet_id);
        if !session.incoming_qos2.remove(&r.packet_id) {
            comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        let c = c_mut(&mut self.conns, conn);
        push(c, conn, Packet::PubComp(comp), &mut self.woken);
    }

    fn on_subscribe(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, s: Subscribe) {
        let c = c_mut(&mut self.conns, conn);
        let v5 = c.version.is_v5();
        let username = c.username.clone();
        let sub_id = if v5 {
            s.properties.subscription_identifiers.first().copied()
        } else {
            None
        };
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut to_send: Vec<Retained> = Vec::new();
        for (filter, opts) in &s.filters {
            if !valid_topic_filter(filter) {
                // [MQTT-4.7.1-1] [MQTT-4.7.1-2]: MQTT 5 refuses just this filter; before
                // MQTT 5 the packet is malformed and the connection closes.
                if !v5 {
                    let why = format!("invalid topic filter {:?}", filter.as_str());
                    return self.close(now, conn, None, true, &why);
                }
                reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            let shared = parse_shared(filter).is_some();
            if v5 && shared && opts.no_local {
                // [MQTT-3.8.3-4]
                return self.protocol_error(now, conn, "No Local on a shared subscription");
            }
            if !self
                .hooks
                .authorize_subscribe(client, username.as_deref(), filter)
            {
                reasons.push(if v5 {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let options = if v5 {
                *opts
            } else {
                SubscriptionOptions {
                    qos: opts.qos,
                    ..SubscriptionOptions::default()
                }
            };
            let entry = SubEntry {
                options,
                id: sub_id,
            };
            let (tree_filter, key) = sub_key(filter, client);
            let existed = self.subs.insert(tree_filter, key, entry).is_some();
            if let Some(session) = self.sessions.get_mut(client) {
                session.subscriptions.insert(filter.as_str(), entry);
            }
            reasons.push(ReasonCode(options.qos.as_u8()));
            let send_retained = !shared
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                self.retained.for_each_match(filter, |_, m| {
                    let mut m = m.clone();
                    m.publish.qos = m.publish.qos.min(options.qos);
                    if let Some(id) = sub_id {
                        m.publish.properties.make_mut().subscription_identifiers = vec![id];
                    }
                    to_send.push(m);
                });
            }
        }
        let c = c_mut(&mut self.conns, conn);
        push(
            c,
            conn,
            Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: Properties::default(),
                reasons,
            }),
            &mut self.woken,
        );
        // Retained messages follow the SUBACK, with the retain flag set.
        for m in to_send {
            self.deliver(now, client, m.publish, m.received, None);
        }
    }

    fn on_unsubscribe(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, u: Unsubscribe) {
        let v5 = c_mut(&mut self.conns, conn).version.is_v5();
        let mut reasons = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            if !valid_topic_filter(filter) {
                if !v5 {
                    let why = format!("invalid topic filter {:?}", filter.as_str());
                    return self.close(now, conn, None, true, &why);
                }
                reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            let (tree_filter, key) = sub_key(filter, client);
            let existed = self.subs.remove(tree_filter, &key).is_some();
            if let Some(session) = self.sessions.get_mut(client) {
                session.subscriptions.remove(filter.as_str());
            }
            reasons.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        let c = c_mut(&mut self.conns, conn);
        push(
            c,
            conn,
            Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Properties::default(),
                reasons,
            }),
            &mut self.woken,
        );
    }

    fn on_disconnect(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, d: Disconnect) {
        let v5 = c_mut(&mut self.conns, conn).version.is_v5();
        if v5 && let Some(expiry) = d.properties.session_expiry_interval {
            if let Some(session) = self.sessions.get_mut(client) {
                if session.expiry == 0 && expiry != 0 {
                    // [MQTT-3.14.2-2]
                    return self.protocol_error(
                        now,
                        conn,
                        "session expiry set at DISCONNECT after 0 at CONNECT",
                    );
                }
                session.expiry = expiry;
            }
        }
        let with_will = v5 && d.reason == ReasonCode::DISCONNECT_WITH_WILL;
        let why = if with_will {
            "client sent DISCONNECT with will"
        } else {
            "client sent DISCONNECT"
        };
        self.close(now, conn, None, with_will, why);
    }

    /// Timers: CONNECT timeout, keep alive (1.5 times the interval), will delay, session
    /// expiry, retained message expiry, `$SYS`. `bytes_received` and `bytes_sent` are the
    /// network layer's totals, for `$SYS`.
    pub(crate) fn tick(&mut self, now: Instant, bytes_received: u64, bytes_sent: u64) {
        self.stats.bytes_received = bytes_received;
        self.stats.bytes_sent = bytes_sent;
        let connect_timeout = Duration::from_secs(self.settings.limits.connect_timeout);
        let now_ms = millis(self.started, now);
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.connect_timers.front()
            && at <= now_ms
        {
            self.connect_timers.pop_front();
            due.push(id);
        }
        // After a burst of connections, give the memory back.
        let (len, cap) = (self.connect_timers.len(), self.connect_timers.capacity());
        if cap > 1024 && len < cap / 4 {
            self.connect_timers.shrink_to(len * 2);
        }
        for (at, id) in pop_due(&mut self.conn_timers, now_ms) {
            if let Some(c) = self.conns.get_mut(&id)
                && c.timer == at
            {
                c.timer = 0;
            }
            due.push(id);
        }
        let mut to_close = Vec::new();
        let mut later = Vec::new();
        for id in due {
            let Some(c) = self.conns.get(&id) else {
                continue;
            };
            // Closing, or watched by a later timer of its own.
            if c.closing || c.timer != 0 {
                continue;
            }
            let idle = now.saturating_duration_since(c.last_rx);
            match c.state {
                ConnState::AwaitingConnect if idle >= connect_timeout => {
                    to_close.push((id, None, "no CONNECT in time"));
                }
                ConnState::AwaitingConnect => later.push((id, c.last_rx + connect_timeout)),
                ConnState::Connected(_) if c.keep_alive > 0 => {
                    let limit = Duration::from_millis(u64::from(c.keep_alive) * 1500);
                    if idle > limit {
                        to_close.push((
                            id,
                            Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
                            "keep alive timeout",
                        ));
                    } else {
                        // Packets came since: its deadline moved.
                        later.push((id, c.last_rx + limit));
                    }
                }
                // No keep alive: nothing to watch once connected.
                ConnState::Connected(_) => {}
            }
        }
        for (id, at) in later {
            self.set_conn_timer(id, at);
        }
        for (id, reason, why) in to_close {
            self.close(now, id, reason, true, why);
        }

        let due: Vec<Arc<str>> = self
            .wills
            .iter()
            .filter(|(_, w)| w.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for client in due {
            if let Some(w) = self.wills.remove(&client) {
                self.publish_will(now, w.will);
            }
        }

        for (_, client) in pop_due(&mut self.session_timers, now_ms) {
            // Entries leave when a session reconnects or ends; checked all the same.
            let due = self
                .sessions
                .get(&client)
                .and_then(|s| session_due(self.started, s));
            if due.is_some_and(|d| d <= now_ms) {
                self.end_session(now, &client);
            }
        }

        for (_, topic) in pop_due(&mut self.retained_timers, now_ms) {
            if self
                .retained
                .get(&topic)
                .is_some_and(|m| expired(&m.publish, m.received, now))
            {
                self.retained.remove(&topic);
            }
        }

        if let (Some(interval), Some(next)) = (self.settings.sys_interval, self.next_sys)
            && now >= next
        {
            self.next_sys = Some(now + interval);
            self.publish_sys(now);
        }
    }

    fn publish_sys(&mut self, now: Instant) {
        let snapshot = SysSnapshot {
            uptime: now.saturating_duration_since(self.started),
            clients_connected: self.connected,
            clients_total: self.sessions.len(),
            subscriptions: self.subs.len(),
            retained: self.retained.len(),
            stats: self.stats,
        };
        for (topic, value) in sys::topics(&snapshot) {
            let p = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: ByteStr::from_static(topic),
                packet_id: 0,
                properties: Properties::default(),
                payload: Bytes::from(value),
            };
            self.store_retained(now, &p);
            self.route(now, None, &p);
        }
    }
}

/// A copy of `s` that owns its bytes.
fn detach_str(s: &ByteStr) -> ByteStr {
    ByteStr::from_utf8(Bytes::copy_from_slice(s.as_bytes())).unwrap_or_default()
}

/// A copy of `w` that shares no memory with the buffer it was decoded from.
fn detach_will(w: Will) -> Will {
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

fn c_mut(conns: &mut FastMap<ConnId, Box<Conn>>, id: ConnId) -> &mut Conn {
    // Callers only pass the id of the connection whose packet is being handled, which
    // exists until `connection_lost`.
    conns.get_mut(&id).expect("connection being handled exists")
}

fn push(c: &mut Conn, id: ConnId, packet: Packet, woken: &mut Vec<ConnId>) {
    debug!(peer = %c.peer, "-> {}", summary(&packet));
    if c.out.push_packet(&packet, c.version) {
        woken.push(id);
    }
}

/// The tree filter and key of a subscription filter as the client wrote it.
fn sub_key<'a>(filter: &'a str, client: &Arc<str>) -> (&'a str, SubKey) {
    match parse_shared(filter) {
        Some((group, inner)) => (
            inner,
            SubKey::Shared(Box::new(SharedMember {
                group: Arc::from(group),
                filter: Arc::from(inner),
                client: client.clone(),
            })),
        ),
        None => (filter, SubKey::Client(client.clone())),
    }
}

/// Clears what concerns one hop only (topic alias, subscription identifiers). Properties
/// shared with another copy of the message (most carry none at all) are copied only when
/// one of those is set.
fn clear_hop_properties(p: &mut Properties) {
    if p.topic_alias.is_some() || !p.subscription_identifiers.is_empty() {
        let v = p.make_mut();
        v.topic_alias = None;
        v.subscription_identifiers.clear();
    }
}

/// The copy of `msg` one subscriber gets: shares topic and payload bytes.
fn for_subscriber(
    msg: &Publish,
    sub_qos: QoS,
    retain_as_published: bool,
    ids: Vec<u32>,
) -> Publish {
    let mut properties = msg.properties.clone();
    clear_hop_properties(&mut properties);
    if !ids.is_empty() {
        properties.make_mut().subscription_identifiers = ids;
    }
    Publish {
        dup: false,
        qos: msg.qos.min(sub_qos),
        retain: retain_as_published && msg.retain,
        topic: msg.topic.clone(),
        packet_id: 0,
        properties,
        payload: msg.payload.clone(),
    }
}

fn expired(p: &Publish, received: Instant, now: Instant) -> bool {
    p.properties
        .message_expiry_interval
        .is_some_and(|e| now.saturating_duration_since(received).as_secs() >= u64::from(e))
}

/// Readies `p` for `c`: counts message expiry down to what is left [MQTT-3.3.2-6] and
/// applies the client's Maximum Packet Size [MQTT-3.1.2-25]. None: do not send it.
fn prepare(c: &Conn, mut p: Publish, now: Instant, received: Instant) -> Option<Publish> {
    if let Some(e) = p.properties.message_expiry_interval {
        let elapsed = now.saturating_duration_since(received).as_secs();
        if elapsed >= u64::from(e) {
            return None;
        }
        p.properties.make_mut().message_expiry_interval = Some(e - elapsed as u32);
    }
    if publish_size(&p, c.version) > c.max_packet as usize {
        return None;
    }
    Some(p)
}

/// Assigns a packet identifier, remembers the message as in flight and sends it.
#[allow(clippy::too_many_arguments)]
fn send_inflight(
    session: &mut Session,
    c: &mut Conn,
    id: ConnId,
    p: Publish,
    now: Instant,
    received: Instant,
    stats: &mut Stats,
    woken: &mut Vec<ConnId>,
    cache: Option<&mut FormCache>,
) {
    let Some(mut p) = prepare(c, p, now, received) else {
        stats.messages_dropped += 1;
        return;
    };
    let Some(pid) = session.alloc_pid() else {
        stats.messages_dropped += 1;
        return;
    };
    p.packet_id = pid;
    session.inflight.insert(
        pid,
        Inflight::Publish {
            publish: Box::new(p.clone()),
            received: now,
        },
    );
    emit(c, id, p, stats, woken, cache);
}

/// Sends queued messages while the client's Receive Maximum allows.
fn drain(
    session: &mut Session,
    c: &mut Conn,
    id: ConnId,
    now: Instant,
    stats: &mut Stats,
    woken: &mut Vec<ConnId>,
) {
    if c.closing {
        return;
    }
    while session.inflight.len() < usize::from(c.receive_max) {
        let Some(q) = session.dequeue() else {
            break;
        };
        send_inflight(
            session, c, id, q.publish, now, q.received, stats, woken, None,
        );
    }
}

/// Queues a PUBLISH on `c`, replacing its topic by an alias when the client allows
/// aliases (the first use of a topic sends both and sets the alias). With a `cache`, a
/// PUBLISH without per-subscriber properties reuses the encoding of the same form.
fn emit(
    c: &mut Conn,
    id: ConnId,
    mut p: Publish,
    stats: &mut Stats,
    woken: &mut Vec<ConnId>,
    cache: Option<&mut FormCache>,
) {
    if c.version.is_v5() && c.alias_max > 0 {
        let aliases = &mut c.aliases.get_or_insert_default().out;
        if let Some(&alias) = aliases.get(&p.topic) {
            p.properties.make_mut().topic_alias = Some(alias);
            p.topic = ByteStr::new();
        } else if aliases.len() < usize::from(c.alias_max) {
            let alias = aliases.len() as u16 + 1;
            aliases.insert(p.topic.clone(), alias);
            p.properties.make_mut().topic_alias = Some(alias);
        }
    }
    stats.messages_sent += 1;
    if let Some(cache) = cache
        && !p.dup
        && p.properties.topic_alias.is_none()
        && p.properties.subscription_identifiers.is_empty()
    {
        let slot = FormCache::slot(c.version, p.qos, p.retain);
        if cache.forms[slot].is_none() {
            cache.forms[slot] = EncodedPublish::new(&p, c.version).ok();
        }
        if let Some(publish) = &cache.forms[slot] {
            debug!(peer = %c.peer, "-> {}", summary_publish(&p));
            if c.out.push_publish(publish, p.packet_id) {
                woken.push(id);
            }
            return;
        }
    }
    push(c, id, Packet::Publish(p), woken);
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The encoded size of `p` (an upper bound when a topic alias will replace the topic).
pub(crate) fn publish_size(p: &Publish, version: ProtocolVersion) -> usize {
    let mut body = 2 + p.topic.len() + p.payload.len();
    if p.qos != QoS::AtMostOnce {
        body += 2;
    }
    if version.is_v5() {
        let pr = &p.properties;
        let mut props = 0;
        props += pr.payload_format_indicator.map_or(0, |_| 2);
        props += pr.message_expiry_interval.map_or(0, |_| 5);
        props += pr.content_type.as_ref().map_or(0, |s| 3 + s.len());
        props += pr.response_topic.as_ref().map_or(0, |s| 3 + s.len());
        props += pr.correlation_data.as_ref().map_or(0, |s| 3 + s.len());
        props += pr
            .subscription_identifiers
            .iter()
            .map(|&i| 1 + varint_len(i as usize))
            .sum::<usize>();
        props += pr.topic_alias.map_or(0, |_| 3);
        props += pr
            .user_properties
            .iter()
            .map(|(k, v)| 5 + k.len() + v.len())
            .sum::<usize>();
        body += varint_len(props) + props;
    }
    1 + varint_len(body) + body
}

#[cfg(test)]
mod tests {
    //! The core driven step by step with simulated time: no sockets, no sleeping.

    use super::*;
    use crate::hooks::{AllowAll, MemoryStore};
    use tinsel_codec::{Connect, Will};

    #[test]
    fn an_ordinary_subscription_key_is_one_pointer_and_a_tag() {
        // The tree holds one key per subscriber of a filter: 10,000 devices subscribed to
        // one topic cost 16,384 map slots of this size (and the entry beside it).
        assert!(
            std::mem::size_of::<SubKey>() <= 24,
            "{}",
            std::mem::size_of::<SubKey>()
        );
    }

    struct Sim {
        r: Router,
        now: Instant,
    }

    fn s(x: &str) -> ByteStr {
        ByteStr::try_from(x).unwrap()
    }

    fn connect(id: &str, version: ProtocolVersion, keep_alive: u16) -> Connect {
        Connect {
            protocol: version,
            clean_start: true,
            keep_alive,
            properties: Properties::default(),
            client_id: s(id),
            will: None,
            username: None,
            password: None,
        }
    }

    fn will(topic: &str, delay: Option<u32>) -> Will {
        Will {
            topic: s(topic),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::from(tinsel_codec::PropertyValues {
                will_delay_interval: delay,
                ..Default::default()
            }),
        }
    }

    fn msg(topic: &str, qos: QoS, pid: u16) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: s(topic),
            packet_id: pid,
            properties: Properties::default(),
            payload: Bytes::from_static(b"m"),
        })
    }

    impl Sim {
        fn new(f: impl FnOnce(&mut Limits)) -> Sim {
            let mut limits = Limits::default();
            f(&mut limits);
            let now = Instant::now();
            let settings = Settings {
                limits,
                sys_interval: None,
            };
            Sim {
                r: Router::new(settings, Arc::new(AllowAll), Arc::new(MemoryStore), now),
                now,
            }
        }

        fn open(&mut self, c: Connect) -> ConnId {
            let id = self.r.accept(self.now, ([127, 0, 0, 1], 1883).into());
            self.r.handle(self.now, id, Packet::Connect(Box::new(c)));
            let out = self.out(id);
            assert!(
                matches!(&out[0], Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS),
                "{out:?}"
            );
            id
        }

        fn subscribe(&mut self, id: ConnId, filter: &str, qos: QoS) {
            self.r.handle(
                self.now,
                id,
                Packet::Subscribe(Subscribe {
                    packet_id: 1,
                    properties: Properties::default(),
                    filters: vec![(
                        s(filter),
                        SubscriptionOptions {
                            qos,
                            ..SubscriptionOptions::default()
                        },
                    )],
                }),
            );
            assert!(matches!(self.out(id)[..], [Packet::SubAck(_)]));
        }

        /// The connection's output, decoded, and whether it is to close.
        fn take(&mut self, id: ConnId) -> (Vec<Packet>, bool) {
            let c = &self.r.conns[&id];
            let mut taken = c.out.take(None);
            let mut packets = Vec::new();
            while let Some(p) =
                tinsel_codec::decode_packet(&mut taken.bytes, c.version, u32::MAX).unwrap()
            {
                packets.push(p);
            }
            assert!(taken.bytes.is_empty(), "whole packets only");
            (packets, taken.close)
        }

        /// The connection's output, decoded.
        fn out(&mut self, id: ConnId) -> Vec<Packet> {
            self.take(id).0
        }

        fn closed(&mut self, id: ConnId) -> bool {
            self.r.conns.get(&id).is_some_and(|c| c.closing)
        }

        fn advance(&mut self, secs: f64) {
            self.now += Duration::from_secs_f64(secs);
            self.r.tick(self.now, 0, 0);
        }
    }

    #[test]
    fn connect_timeout() {
        let mut sim = Sim::new(|l| l.connect_timeout = 10);
        let id = sim.r.accept(sim.now, ([127, 0, 0, 1], 1883).into());
        sim.advance(9.0);
        assert!(!sim.closed(id));
        sim.advance(1.5);
        assert!(sim.closed(id));
        assert!(sim.take(id).1);
    }

    #[test]
    fn keep_alive_one_and_a_half_times() {
        let mut sim = Sim::new(|_| {});
        let watcher = sim.open(connect("w", ProtocolVersion::V311, 0));
        sim.subscribe(watcher, "will", QoS::AtMostOnce);
        let mut c = connect("ka", ProtocolVersion::V5, 10);
        c.will = Some(will("will", None));
        let id = sim.open(c);
        sim.advance(14.0);
        assert!(!sim.closed(id));
        sim.r.handle(sim.now, id, Packet::PingReq); // activity resets the clock
        assert_eq!(sim.out(id), vec![Packet::PingResp]);
        sim.advance(14.9);
        assert!(!sim.closed(id));
        sim.advance(0.2);
        assert!(sim.closed(id));
        assert!(sim.r.conns[&id].closing);
        let out = sim.out(id);
        assert!(
            matches!(&out[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::KEEP_ALIVE_TIMEOUT)
        );
        assert!(matches!(&sim.out(watcher)[..], [Packet::Publish(p)] if p.topic == "will"));
    }

    #[test]
    fn server_keep_alive_caps_v5() {
        let mut sim = Sim::new(|l| l.max_keep_alive = 30);
        let id = sim.r.accept(sim.now, ([127, 0, 0, 1], 1883).into());
        sim.r.handle(
            sim.now,
            id,
            Packet::Connect(Box::new(connect("cap", ProtocolVersion::V5, 100))),
        );
        match &sim.out(id)[..] {
            [Packet::ConnAck(a)] => assert_eq!(a.properties.server_keep_alive, Some(30)),
            other => panic!("{other:?}"),
        }
        sim.advance(44.0);
        assert!(!sim.closed(id));
        sim.advance(2.0);
        assert!(sim.closed(id), "enforced at 1.5 x 30 s, not 1.5 x 100 s");
    }

    #[test]
    fn keep_alive_cap_refuses_mqtt3_and_sets_mqtt5_zero() {
        let mut sim = Sim::new(|l| l.max_keep_alive = 30);
        let id = sim.r.accept(sim.now, ([127, 0, 0, 1], 1883).into());
        sim.r.handle(
            sim.now,
            id,
            Packet::Connect(Box::new(connect("v3", ProtocolVersion::V311, 31))),
        );
        assert!(
            matches!(&sim.out(id)[..], [Packet::ConnAck(a)] if a.reason == ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)
        );
        assert!(sim.closed(id));
        let id = sim.r.accept(sim.now, ([127, 0, 0, 1], 1883).into());
        sim.r.handle(
            sim.now,
            id,
            Packet::Connect(Box::new(connect("v5", ProtocolVersion::V5, 0))),
        );
        assert!(
            matches!(&sim.out(id)[..], [Packet::ConnAck(a)] if a.properties.server_keep_alive == Some(30))
        );
    }

    #[test]
    fn will_delay_and_session_expiry() {
        let mut sim = Sim::new(|_| {});
        let watcher = sim.open(connect("w", ProtocolVersion::V311, 0));
        sim.subscribe(watcher, "will", QoS::AtMostOnce);
        let mut c = connect("d", ProtocolVersion::V5, 0);
        c.will = Some(will("will", Some(30)));
        c.properties.make_mut().session_expiry_interval = Some(100);
        let id = sim.open(c);
        sim.r.connection_lost(sim.now, id, "test");
        sim.advance(29.0);
        assert!(sim.out(watcher).is_empty());
        sim.advance(1.5);
        assert_eq!(sim.out(watcher).len(), 1, "will after its delay");

        // The session lives 100 s, then ends.
        sim.advance(60.0);
        assert!(sim.r.sessions.contains_key("d"));
        sim.advance(40.0);
        assert!(!sim.r.sessions.contains_key("d"));
    }

    #[test]
    fn reconnecting_moves_the_session_expiry() {
        let mut sim = Sim::new(|_| {});
        let mut c = connect("r", ProtocolVersion::V5, 0);
        c.clean_start = false;
        c.properties.make_mut().session_expiry_interval = Some(10);
        let id = sim.open(c.clone());
        sim.r.connection_lost(sim.now, id, "test");
        assert_eq!(sim.r.session_timers.len(), 1);
        sim.advance(5.0);
        let id = sim.open(c);
        assert!(sim.r.session_timers.is_empty(), "connected: no expiry");
        sim.advance(3.0);
        sim.r.connection_lost(sim.now, id, "test");
        // The first disconnection's deadline (10 s) passes: the session stays.
        sim.advance(2.5);
        assert!(sim.r.sessions.contains_key("r"));
        sim.advance(7.0);
        assert!(sim.r.sessions.contains_key("r"));
        // 10 s after the second one, it ends.
        sim.advance(1.0);
        assert!(!sim.r.sessions.contains_key("r"));
        assert!(sim.r.session_timers.is_empty());
    }

    #[test]
    fn timers_hold_one_entry_per_watched_connection() {
        let mut sim = Sim::new(|l| l.connect_timeout = 10);
        let mut ids = Vec::new();
        for i in 0..100 {
            // Keep alive 2 s: due (3 s) before the CONNECT timeout, so a timer of its own.
            ids.push(sim.open(connect(&format!("c{i}"), ProtocolVersion::V311, 2)));
        }
        assert_eq!(sim.r.conn_timers.len(), 100);
        assert_eq!(sim.r.connect_timers.len(), 100);
        for _ in 0..10 {
            for &id in &ids {
                sim.r.handle(sim.now, id, Packet::PingReq);
            }
            sim.advance(1.0);
            // Each connection's entry moves; none is added.
            assert_eq!(sim.r.conn_timers.len(), 100);
            assert!(ids.iter().all(|&id| !sim.closed(id)));
        }
        sim.advance(0.5);
        assert!(sim.r.connect_timers.is_empty(), "CONNECT deadlines passed");
        for &id in &ids {
            sim.r.connection_lost(sim.now, id, "test");
        }
        assert!(sim.r.conn_timers.is_empty());
    }

    #[test]
    fn session_expiry_drops_queue_and_subscriptions() {
        let mut sim = Sim::new(|_| {});
        let mut c = connect("q", ProtocolVersion::V5, 0);
        c.clean_start = false;
        c.properties.make_mut().session_expiry_interval = Some(60);
        let id = sim.open(c.clone());
        sim.subscribe(id, "t", QoS::AtLeastOnce);
        sim.r
            .handle(sim.now, id, Packet::Disconnect(Disconnect::default()));
        sim.r.connection_lost(sim.now, id, "test");
        let p = sim.open(connect("p", ProtocolVersion::V311, 0));
        sim.r.handle(sim.now, p, msg("t", QoS::AtLeastOnce, 1));
        assert_eq!(sim.r.sessions["q"].queue.len(), 1);
        assert_eq!(sim.r.subs.len(), 1);
        sim.advance(61.0);
        assert!(!sim.r.sessions.contains_key("q"));
        assert_eq!(
            sim.r.subs.len(),
            0,
            "subscriptions removed with the session"
        );
        let id = sim.r.accept(sim.now, ([127, 0, 0, 1], 1883).into());
        sim.r.handle(sim.now, id, Packet::Connect(Box::new(c)));
        assert!(matches!(&sim.out(id)[..], [Packet::ConnAck(a)] if !a.session_present));
    }

    #[test]
    fn qos0_backlog_is_bounded() {
        let mut sim = Sim::new(|l| l.max_queued_messages = 3);
        let sub = sim.open(connect("s", ProtocolVersion::V311, 0));
        sim.subscribe(sub, "t", QoS::AtMostOnce);
        let p = sim.open(connect("p", ProtocolVersion::V311, 0));
        for _ in 0..10 {
            sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
        }
        assert_eq!(
            sim.out(sub).len(),
            3,
            "the connection is not reading: QoS 0 dropped"
        );
        assert_eq!(sim.r.stats.messages_dropped, 7);
        sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
        assert_eq!(
            sim.out(sub).len(),
            1,
            "room again once the backlog is taken"
        );
    }

    #[test]
    fn packet_ids_and_outgoing_qos2_flow() {
        let mut sim = Sim::new(|_| {});
        let sub = sim.open(connect("s", ProtocolVersion::V5, 0));
        sim.subscribe(sub, "t", QoS::ExactlyOnce);
        let p = sim.open(connect("p", ProtocolVersion::V5, 0));
        sim.r.handle(sim.now, p, msg("t", QoS::ExactlyOnce, 9));
        let pid = match &sim.out(sub)[..] {
            [Packet::Publish(m)] => m.packet_id,
            other => panic!("{other:?}"),
        };
        sim.r
            .handle(sim.now, sub, Packet::PubRec(PubResp::new(pid)));
        assert_eq!(sim.out(sub), vec![Packet::PubRel(PubResp::new(pid))]);
        sim.r
            .handle(sim.now, sub, Packet::PubComp(PubResp::new(pid)));
        assert!(sim.r.sessions["s"].inflight.is_empty());
    }

    #[test]
    fn fan_out_gives_each_subscriber_its_packet_id() {
        let mut sim = Sim::new(|_| {});
        let subs: Vec<ConnId> = (0..3)
            .map(|i| {
                let id = sim.open(connect(&format!("s{i}"), ProtocolVersion::V311, 0));
                sim.subscribe(id, "fan/#", QoS::AtLeastOnce);
                id
            })
            .collect();
        let p = sim.open(connect("p", ProtocolVersion::V311, 0));
        sim.r
            .handle(sim.now, p, msg("fan/out", QoS::AtLeastOnce, 1));
        for id in subs {
            match &sim.out(id)[..] {
                [Packet::Publish(m)] => {
                    assert_eq!((m.topic.as_str(), &m.payload[..]), ("fan/out", &b"m"[..]));
                    assert_eq!(m.qos, QoS::AtLeastOnce);
                    assert_ne!(m.packet_id, 0);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn many_overlapping_subscribers_merge() {
        let mut sim = Sim::new(|_| {});
        let subs: Vec<ConnId> = (0..40)
            .map(|i| {
                let id = sim.open(connect(&format!("s{i}"), ProtocolVersion::V311, 0));
                sim.subscribe(id, "m/#", QoS::AtMostOnce);
                sim.subscribe(id, "m/+", QoS::AtLeastOnce);
                id
            })
            .collect();
        let p = sim.open(connect("p", ProtocolVersion::V311, 0));
        sim.r.handle(sim.now, p, msg("m/x", QoS::AtLeastOnce, 1));
        for id in subs {
            let out = sim.out(id);
            assert!(
                matches!(&out[..], [Packet::Publish(m)] if m.qos == QoS::AtLeastOnce),
                "{out:?}"
            );
        }
    }

    #[test]
    fn slow_subscriber_makes_publishers_wait_stalled_one_does_not() {
        let mut sim = Sim::new(|l| l.max_queued_messages = 10);
        let mut c = connect("slow", ProtocolVersion::V5, 0);
        c.properties.make_mut().receive_maximum = Some(1);
        let sub = sim.open(c);
        sim.subscribe(sub, "t", QoS::AtLeastOnce);
        let p = sim.open(connect("p", ProtocolVersion::V311, 0));
        for pid in 1..=5 {
            sim.r.handle(sim.now, p, msg("t", QoS::AtLeastOnce, pid));
        }
        assert!(
            !sim.r.take_pressure(),
            "1 in flight + 4 queued: below the high-water mark"
        );
        sim.r.handle(sim.now, p, msg("t", QoS::AtLeastOnce, 6));
        assert!(sim.r.take_pressure());
        assert!(!sim.r.take_pressure(), "reported once");
        assert!(sim.r.congested(sim.now));
        // The subscriber keeps acknowledging: the queue shrinks below half the mark.
        for _ in 0..3 {
            let pid = match &sim.out(sub)[..] {
                [Packet::Publish(m)] => m.packet_id,
                other => panic!("{other:?}"),
            };
            sim.r
                .handle(sim.now, sub, Packet::PubAck(PubResp::new(pid)));
        }
        assert!(!sim.r.congested(sim.now));

        // Congested again, then stalled: it stops holding publishers back.
        for pid in 7..=12 {
            sim.r.handle(sim.now, p, msg("t", QoS::AtLeastOnce, pid));
        }
        assert!(sim.r.take_pressure());
        assert!(sim.r.congested(sim.now));
        sim.advance(0.6);
        assert!(!sim.r.congested(sim.now));
    }

    #[test]
    fn slow_qos0_subscriber_makes_publishers_wait_stalled_one_does_not() {
        let mut sim = Sim::new(|l| l.max_queued_messages = 10);
        let sub = sim.open(connect("slow", ProtocolVersion::V311, 0));
        sim.subscribe(sub, "t", QoS::AtMostOnce);
        let p = sim.open(connect("p", ProtocolVersion::V311, 0));
        for _ in 0..4 {
            sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
        }
        assert!(
            !sim.r.take_pressure(),
            "4 waiting: below the high-water mark"
        );
        sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
        assert!(
            sim.r.take_pressure(),
            "5 waiting: the publisher should wait"
        );
        assert!(sim.r.congested(sim.now));
        // The connection takes its packets: the publisher may go on, nothing was lost.
        assert_eq!(sim.out(sub).len(), 5);
        assert!(!sim.r.congested(sim.now));
        assert_eq!(sim.r.stats.messages_dropped, 0);

        // Congested again, then the connection takes nothing for half a second (its client
        // does not read): it stops holding publishers back and loses the excess instead.
        for _ in 0..5 {
            sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
        }
        assert!(sim.r.take_pressure());
        assert!(sim.r.congested(sim.now));
        sim.advance(0.6);
        assert!(!sim.r.congested(sim.now));
        for _ in 0..10 {
            sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
        }
        assert!(!sim.r.take_pressure(), "a stalled subscriber never pauses");
        assert_eq!(sim.r.stats.messages_dropped, 5);
        assert_eq!(sim.out(sub).len(), 10);
        // Taking its packets makes it count again.
        for _ in 0..5 {
            sim.r.handle(sim.now, p, msg("t", QoS::AtMostOnce, 0));
        }
        assert!(sim.r.take_pressure());
    }

    #[test]
    fn a_client_never_waits_for_itself() {
        let mut sim = Sim::new(|l| l.max_queued_messages = 4);
        let mut c = connect("loop", ProtocolVersion::V5, 0);
        c.properties.make_mut().receive_maximum = Some(1);
        let me = sim.open(c);
        sim.subscribe(me, "t", QoS::AtLeastOnce);
        for pid in 1..=6 {
            sim.r.handle(sim.now, me, msg("t", QoS::AtLeastOnce, pid));
        }
        assert!(!sim.r.take_pressure());
    }

    #[test]
    fn retained_messages_expire_once_each() {
        let mut sim = Sim::new(|_| {});
        let publ = sim.open(connect("p", ProtocolVersion::V5, 0));
        let retained = |expiry: Option<u32>| {
            let Packet::Publish(mut p) = msg("r/t", QoS::AtMostOnce, 0) else {
                unreachable!()
            };
            p.retain = true;
            p.properties.make_mut().message_expiry_interval = expiry;
            Packet::Publish(p)
        };
        // Republished with an expiry: one entry, the newest (also within one instant).
        sim.r.handle(sim.now, publ, retained(Some(10)));
        sim.r.handle(sim.now, publ, retained(Some(10)));
        assert_eq!(sim.r.retained_timers.len(), 1);
        sim.advance(2.0);
        sim.r.handle(sim.now, publ, retained(Some(10)));
        assert_eq!(sim.r.retained_timers.len(), 1);
        sim.advance(9.0);
        assert_eq!(
            sim.r.retained.len(),
            1,
            "the first one's deadline passed, not this one's"
        );
        sim.advance(1.5);
        assert!(sim.r.retained.is_empty());
        assert!(sim.r.retained_timers.is_empty());
        // Replaced by one without expiry: stays.
        sim.r.handle(sim.now, publ, retained(Some(5)));
        sim.r.handle(sim.now, publ, retained(None));
        assert!(sim.r.retained_timers.is_empty());
        sim.advance(6.0);
        assert_eq!(sim.r.retained.len(), 1);
    }

    #[test]
    fn publish_size_matches_the_encoder() {
        let mut p = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: s("a/b/c"),
            packet_id: 5,
            properties: Properties::default(),
            payload: Bytes::from(vec![7u8; 300]),
        };
        for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
            let want = Packet::Publish(p.clone()).encoded_len(v).unwrap();
            assert_eq!(publish_size(&p, v), want);
        }
        p.properties = Properties::from(tinsel_codec::PropertyValues {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(10),
            content_type: Some(s("text/plain")),
            response_topic: Some(s("r/t")),
            correlation_data: Some(Bytes::from_static(b"xyz")),
            subscription_identifiers: vec![1, 300, 70_000],
            topic_alias: Some(3),
            user_properties: vec![(s("k"), s("v")), (s("key2"), s("value2"))],
            ..Default::default()
        });
        let want = Packet::Publish(p.clone())
            .encoded_len(ProtocolVersion::V5)
            .unwrap();
        assert_eq!(publish_size(&p, ProtocolVersion::V5), want);
    }

    #[test]
    fn connected_count_follows_connections_without_a_scan() {
        let mut sim = Sim::new(|_| {});
        let a = sim.open(connect("a", ProtocolVersion::V311, 0));
        let _b = sim.open(connect("b", ProtocolVersion::V311, 0));
        // Accepted but no CONNECT yet: not connected.
        let waiting = sim.r.accept(sim.now, ([127, 0, 0, 1], 1884).into());
        assert_eq!(sim.r.connected, 2);
        // A session taken over: the old connection counts until it is gone.
        let a2 = sim.open(connect("a", ProtocolVersion::V311, 0));
        sim.r.connection_lost(sim.now, a, "taken over");
        assert_eq!(sim.r.connected, 2);
        sim.r.connection_lost(sim.now, a2, "gone");
        sim.r.connection_lost(sim.now, waiting, "gone");
        assert_eq!(sim.r.connected, 1);
        // Refused: never counted.
        let mut bad = connect("", ProtocolVersion::V31, 0);
        bad.clean_start = false;
        let refused = sim.r.accept(sim.now, ([127, 0, 0, 1], 1885).into());
        sim.r
            .handle(sim.now, refused, Packet::Connect(Box::new(bad)));
        assert_eq!(sim.r.connected, 1);
        sim.r.connection_lost(sim.now, refused, "refused");
        assert_eq!(sim.r.connected, 1);
        // The same figure the scan of sessions gave.
        let scanned = sim.r.sessions.values().filter(|s| s.conn.is_some()).count();
        assert_eq!(sim.r.connected, scanned);
    }
}
