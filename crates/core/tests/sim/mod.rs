//! The simulated world: one [`Router`], simulated clients, a network that carries whole
//! packets, a virtual clock, and the model the broker's behaviour is checked against.
//!
//! Each step picks a random action from the seed's generator. The router's output is taken
//! after every call (`flush`): the observer's share is read at once (it subscribes to `#` at
//! QoS 2 and tells the model what was routed, and when), the clients' share waits in their
//! sockets until they read it (`settle`; a lazy client reads nothing). Invariants are checked
//! as packets arrive and after every step; once in a while, and at the end, every client is
//! brought back and made to read everything (`quiesce`), and then every owed copy must have
//! arrived.

mod client;
mod model;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tinsel_codec::{
    Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, ReasonCode,
    RetainHandling, Subscribe, SubscriptionOptions, Unsubscribe,
};
use tinsel_core::{Limits, Origin, Outbox, Router, Settings};

use client::{Client, Link, s};
use model::{Model, MsgId, MsgRec, Route, Routing, SessionM, SubOpts, Via, WillState};

/// Who reads a connection's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Client(usize),
    Observer,
    Probe,
    /// The client gave up on it (half-open): its output goes nowhere.
    Gone,
}

/// A connection as the host sees it (until it is gone).
#[derive(Debug)]
struct Host {
    out: Outbox,
    owner: Owner,
    client: Option<usize>,
    last_rx_ms: u64,
    keep_alive: u16,
    v5: bool,
    /// The will its CONNECT left, with its delay.
    will: Option<(MsgId, u32)>,
    /// The reason of the DISCONNECT the client sent on it.
    disconnect: Option<u8>,
    /// A newer CONNECT of the same client (clean start or not) takes it over.
    superseded: Option<bool>,
}

const ORDINARY: &[&str] = &[
    "t/a", "t/b", "t/a/x", "t/+", "t/#", "t/+/x", "+/+/x", "will/+", "will/#", "t/a/#",
];
/// Shared subscriptions live on `s/...`, which no ordinary filter of a client matches: a
/// copy a member receives is then known to come from its group.
const SHARED: &[&str] = &[
    "$share/g1/s/#",
    "$share/g1/s/a",
    "$share/g2/s/+",
    "$share/g2/s/b",
];
const TOPICS: &[&str] = &["t/a", "t/b", "t/a/x", "t/b/x", "s/a", "s/b"];

fn qos(n: u8) -> QoS {
    QoS::from_u8(n).expect("QoS 0..2")
}

/// One run: a seed, its settings, and the state of the world.
pub(crate) struct World {
    seed: u64,
    rng: StdRng,
    r: Router,
    base: Instant,
    now_ms: u64,
    limits: Limits,
    clients: Vec<Client>,
    hosts: BTreeMap<u64, Host>,
    m: Model,
    log: Vec<String>,
    step: usize,
    observer: u64,
    obs_in: BytesMut,
    obs_qos2: std::collections::BTreeSet<u16>,
    probe_in: BytesMut,
    next_port: u16,
    /// Connections the client opened and the clean start asked, until its CONNACK.
    clean_asked: BTreeMap<u64, bool>,
    /// The session each client connection was attached to by its CONNACK: what it reads
    /// belongs to that session, even after the session ended.
    conn_sid: BTreeMap<u64, model::Sid>,
    /// Sessions that end with the connections closed in this flush.
    ending: Vec<usize>,
}

impl World {
    pub(crate) fn new(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let limits = Limits {
            max_inflight: [2, 5, 100][rng.random_range(0..3)],
            max_queued_messages: [4, 1000][rng.random_range(0..2)],
            max_queued_bytes: 0,
            ..Limits::default()
        };
        let settings = Settings {
            limits: limits.clone(),
            sys_interval: None,
            id_seed: seed,
            ..Settings::default()
        };
        let base = Instant::now();
        let n = rng.random_range(3..=8);
        let clients = (0..n)
            .map(|i| {
                let v5 = rng.random_bool(0.5);
                let (version, rm) = if v5 {
                    (
                        ProtocolVersion::V5,
                        [1, 2, 3, u16::MAX][rng.random_range(0..4)],
                    )
                } else {
                    (ProtocolVersion::V311, limits.max_inflight)
                };
                Client::new(i, version, rm)
            })
            .collect();
        let m = Model {
            max_queued: limits.max_queued_messages,
            ..Model::default()
        };
        let mut w = World {
            seed,
            rng,
            r: Router::new(settings, base),
            base,
            now_ms: 0,
            limits,
            clients,
            hosts: BTreeMap::new(),
            m,
            log: Vec::new(),
            step: 0,
            observer: 0,
            obs_in: BytesMut::new(),
            obs_qos2: Default::default(),
            probe_in: BytesMut::new(),
            next_port: 1000,
            clean_asked: BTreeMap::new(),
            conn_sid: BTreeMap::new(),
            ending: Vec::new(),
        };
        w.say(format!(
            "seed {seed}: {n} clients {:?}, max_inflight {}, max_queued_messages {}",
            w.clients
                .iter()
                .map(|c| format!("{}:{}:rm{}", c.id, c.version, c.receive_max))
                .collect::<Vec<_>>(),
            w.limits.max_inflight,
            w.limits.max_queued_messages
        ));
        w.start_observer();
        w
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    fn say(&mut self, line: String) {
        let t = self.now_ms;
        self.log.push(format!("[{:>4} t={t}ms] {line}", self.step));
    }

    /// Stops the run with the seed, the violation and the step log.
    #[track_caller]
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        let mut report = String::new();
        // Replaying one seed (SIM_SEED) prints the whole log; a run of many, its end.
        let keep = if std::env::var_os("SIM_SEED").is_some() {
            usize::MAX
        } else {
            150
        };
        let first = self.log.len().saturating_sub(keep);
        for line in &self.log[first..] {
            let _ = writeln!(report, "  {line}");
        }
        panic!(
            "\nsimulation seed {} failed at step {} (t={} ms):\n  {what}\nlast {} log lines:\n{report}\nreplay: SIM_SEED={} cargo test -p tinsel-core --test simulation -- --nocapture\n",
            self.seed,
            self.step,
            self.now_ms,
            self.log.len() - first,
            self.seed
        );
    }

    fn accept(&mut self, owner: Owner) -> (u64, Outbox) {
        self.next_port = self.next_port.wrapping_add(1).max(1000);
        let origin = Origin::Network(([127, 0, 0, 1], self.next_port).into());
        let (id, out) = self.r.accept(self.now(), origin);
        self.hosts.insert(
            id,
            Host {
                out: out.clone(),
                owner,
                client: None,
                last_rx_ms: self.now_ms,
                keep_alive: 0,
                v5: true,
                will: None,
                disconnect: None,
                superseded: None,
            },
        );
        (id, out)
    }

    fn start_observer(&mut self) {
        let (id, _) = self.accept(Owner::Observer);
        self.observer = id;
        let mut c = Client::new(usize::MAX, ProtocolVersion::V5, u16::MAX).connect(true, None);
        c.client_id = s("observer");
        self.r.handle(self.now(), id, Packet::Connect(Box::new(c)));
        let mut opts = SubscriptionOptions::new(QoS::ExactlyOnce);
        opts.retain_as_published = true;
        self.r.handle(
            self.now(),
            id,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties::default(),
                filters: vec![(s("#"), opts)],
            }),
        );
        self.flush();
    }

    // ---- the network -------------------------------------------------------------------

    /// Takes every connection's output until nothing moves: bytes to their readers, closes
    /// to `connection_lost`, and the observer's share read at once.
    fn flush(&mut self) {
        loop {
            self.r.wake(None, |_, _| {});
            let _ = self.r.take_work();
            let mut closed = Vec::new();
            for (&id, h) in &self.hosts {
                let taken = h.out.take(None);
                match h.owner {
                    Owner::Client(i) => {
                        if self.clients[i].conn == Some(id) {
                            self.clients[i].inbox.extend_from_slice(&taken.bytes);
                            if taken.close {
                                self.clients[i].eof = true;
                            }
                        }
                    }
                    Owner::Observer => self.obs_in.extend_from_slice(&taken.bytes),
                    Owner::Probe => self.probe_in.extend_from_slice(&taken.bytes),
                    Owner::Gone => {}
                }
                if taken.close {
                    closed.push(id);
                }
            }
            for id in &closed {
                self.closed_by_broker(*id);
            }
            let moved = self.read_observer();
            for i in std::mem::take(&mut self.ending) {
                if self
                    .m
                    .sessions
                    .get(&i)
                    .is_some_and(|s| s.attached.is_none())
                {
                    self.m.end_session(i);
                    self.say(format!("model: c{i}'s session ends with its connection"));
                }
            }
            if closed.is_empty() && !moved {
                break;
            }
        }
    }

    fn closed_by_broker(&mut self, id: u64) {
        if id == self.observer {
            self.fail("the broker closed the observer");
        }
        let now = self.now_ms;
        let h = &self.hosts[&id];
        if let Some(i) = h.client {
            let expected = h.disconnect.is_some()
                || h.superseded.is_some()
                || (h.keep_alive > 0 && now - h.last_rx_ms > u64::from(h.keep_alive) * 1500);
            if !expected {
                let idle = now - h.last_rx_ms;
                self.fail(format!(
                    "the broker closed c{i}'s connection {id} for no reason the model knows (keep alive {} s, idle {idle} ms)",
                    h.keep_alive
                ));
            }
        }
        self.say(format!("broker closed connection {id}"));
        self.on_closed(id);
        self.r
            .connection_lost(self.now(), id, "closed by the broker");
    }

    /// Connection `id` is gone: the model detaches its session and starts its will.
    fn on_closed(&mut self, id: u64) {
        let Some(h) = self.hosts.remove(&id) else {
            return;
        };
        let Some(i) = h.client else {
            return;
        };
        let now = self.now_ms;
        let mut expiry = 0;
        if let Some(sess) = self.m.sessions.get_mut(&i)
            && sess.attached == Some(id)
        {
            sess.attached = None;
            sess.detached_ms = now;
            expiry = sess.expiry;
            if expiry == 0 {
                // Ended once the observer has read what this flush routed: the broker may
                // have routed a will to this session before closing it in the same tick.
                self.ending.push(i);
            }
        } else if let Some(sess) = self.m.sessions.get(&i) {
            expiry = sess.expiry;
        }
        if let Some((will, delay)) = h.will
            && h.disconnect != Some(0)
        {
            let delay = if h.v5 { delay.min(expiry) } else { 0 };
            let state = match h.superseded {
                Some(clean) if delay > 0 => {
                    if clean {
                        WillState::Either
                    } else {
                        WillState::Cancelled
                    }
                }
                _ => WillState::Due(now + u64::from(delay) * 1000),
            };
            self.say(format!("model: will {will:?} -> {state:?}"));
            self.m.wills.insert(will, state);
        }
    }

    /// Sends `packet` from client `i` on its connection (lost if the socket is dead).
    fn send(&mut self, i: usize, packet: Packet) {
        let Some(conn) = self.clients[i].conn else {
            return;
        };
        self.clients[i].last_sent_ms = self.now_ms;
        let Some(h) = self.hosts.get_mut(&conn) else {
            self.say(format!("c{i} -> {} (socket dead: lost)", name(&packet)));
            return;
        };
        h.last_rx_ms = self.now_ms;
        self.say(format!("c{i} -> {}", describe(&packet)));
        self.r.handle(self.now(), conn, packet);
        self.flush();
    }

    // ---- the observer --------------------------------------------------------------------

    fn read_observer(&mut self) -> bool {
        let mut moved = false;
        loop {
            let p = match tinsel_codec::decode_packet(
                &mut self.obs_in,
                ProtocolVersion::V5,
                u32::MAX,
            ) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => self.fail(format!("observer got malformed bytes: {e}")),
            };
            moved = true;
            let reply = match p {
                Packet::ConnAck(a) if a.reason.is_success() => None,
                Packet::SubAck(_) => None,
                Packet::Publish(p) => {
                    let pid = p.packet_id;
                    match p.qos {
                        QoS::AtMostOnce => {
                            self.observed(&p);
                            None
                        }
                        QoS::AtLeastOnce => {
                            self.observed(&p);
                            Some(Packet::PubAck(PubResp::new(pid)))
                        }
                        QoS::ExactlyOnce => {
                            if self.obs_qos2.insert(pid) {
                                self.observed(&p);
                            }
                            Some(Packet::PubRec(PubResp::new(pid)))
                        }
                    }
                }
                Packet::PubRel(r) => {
                    self.obs_qos2.remove(&r.packet_id);
                    Some(Packet::PubComp(PubResp::new(r.packet_id)))
                }
                other => self.fail(format!("observer got {other:?}")),
            };
            if let Some(reply) = reply {
                self.r.handle(self.now(), self.observer, reply);
                self.r.wake(None, |_, _| {});
                let taken = self.hosts[&self.observer].out.take(None);
                self.obs_in.extend_from_slice(&taken.bytes);
            }
        }
        moved
    }

    /// The broker routed `p`: the model expands it into copies.
    fn observed(&mut self, p: &Publish) {
        let topic = p.topic.as_str().to_string();
        if p.payload.is_empty() {
            if p.retain {
                self.m.retained.remove(&topic);
            }
            return;
        }
        let Some(id) = MsgId::parse(&p.payload) else {
            self.fail(format!(
                "observer got a payload nobody sent: {:?}",
                p.payload
            ));
        };
        if p.retain {
            self.m.retained.insert(topic.clone(), (id, p.qos));
        }
        let now = self.now_ms;
        let publisher = match id {
            MsgId::Pub { client, .. } => {
                let Some(rec) = self.m.msgs.get(&id) else {
                    self.fail(format!("{id:?} routed but never published"));
                };
                if rec.topic != topic || rec.qos != p.qos || rec.retain != p.retain {
                    self.fail(format!(
                        "{id:?} routed as {topic} q{} r{} but published as {} q{} r{}",
                        p.qos.as_u8(),
                        p.retain,
                        rec.topic,
                        rec.qos.as_u8(),
                        rec.retain
                    ));
                }
                if rec.qos == QoS::ExactlyOnce && !rec.routings.is_empty() {
                    self.fail(format!(
                        "QoS 2 message {id:?} routed twice (a resend with DUP was forwarded again)"
                    ));
                }
                Some(client)
            }
            MsgId::Will { .. } => {
                match self.m.wills.get(&id).copied() {
                    None => self.fail(format!("will {id:?} published but none was due (normal DISCONNECT, or still connected)")),
                    Some(WillState::Due(d)) if now < d => {
                        self.fail(format!("will {id:?} published at {now} ms, before it was due at {d} ms"))
                    }
                    Some(WillState::Cancelled) => self.fail(format!(
                        "will {id:?} published although its session resumed before the will delay"
                    )),
                    Some(WillState::Sent) => self.fail(format!("will {id:?} published twice")),
                    Some(_) => {}
                }
                self.m.wills.insert(id, WillState::Sent);
                self.m.msgs.entry(id).or_insert_with(|| MsgRec {
                    topic: topic.clone(),
                    qos: p.qos,
                    retain: p.retain,
                    routings: Vec::new(),
                    owed: Vec::new(),
                });
                None
            }
        };
        let routing = self.m.route(now, &topic, p.qos, publisher);
        let copies: Vec<String> = routing
            .routes
            .iter()
            .map(|r| {
                format!(
                    "c{}/s{}:{:?}:q{}{}",
                    r.client,
                    r.sid,
                    r.via,
                    r.qos.as_u8(),
                    if r.room { "" } else { ":noroom" }
                )
            })
            .collect();
        self.say(format!(
            "routed {id:?} {topic} q{} r{} to {copies:?}",
            p.qos.as_u8(),
            u8::from(p.retain)
        ));
        let idx = self.m.add_routing(id, routing);
        if matches!(id, MsgId::Will { .. }) {
            self.m.msgs.get_mut(&id).expect("recorded").owed.push(idx);
        }
    }

    // ---- clients reading -----------------------------------------------------------------

    /// Lets every client that is not lazy read what it has, until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.clients.len() {
                let c = &self.clients[i];
                if c.lazy || c.conn.is_none() || (c.inbox.is_empty() && !c.eof) {
                    continue;
                }
                moved = true;
                self.read_client(i);
            }
            if !moved {
                break;
            }
        }
    }

    fn read_client(&mut self, i: usize) {
        let version = self.clients[i].version;
        let mut packets = Vec::new();
        loop {
            match tinsel_codec::decode_packet(&mut self.clients[i].inbox, version, u32::MAX) {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => break,
                Err(e) => self.fail(format!("c{i} got malformed bytes: {e}")),
            }
        }
        if !self.clients[i].inbox.is_empty() {
            self.fail(format!("c{i} got a partial packet"));
        }
        let conn = self.clients[i].conn;
        for p in packets {
            if self.clients[i].conn != conn {
                break;
            }
            self.client_packet(i, p);
        }
        let c = &mut self.clients[i];
        if c.conn == conn && c.eof && c.inbox.is_empty() {
            c.conn = None;
            c.link = Link::Idle;
            c.eof = false;
            self.say(format!("c{i} sees its connection closed"));
        }
    }

    fn client_packet(&mut self, i: usize, p: Packet) {
        self.say(format!("c{i} <- {}", describe(&p)));
        match p {
            Packet::ConnAck(a) => self.on_connack(i, a.session_present, a.reason),
            Packet::Publish(p) => self.on_publish(i, p),
            Packet::PubAck(r) => {
                let c = &mut self.clients[i];
                match c.out.get(&r.packet_id) {
                    Some(m) if m.publish.qos == QoS::AtLeastOnce => {
                        let id = m.id;
                        c.out.remove(&r.packet_id);
                        if !r.reason.is_success() {
                            self.fail(format!(
                                "c{i}: PUBACK {} refused {id:?}: {}",
                                r.packet_id, r.reason
                            ));
                        }
                        self.acked(id);
                    }
                    _ => self.fail(format!(
                        "c{i}: PUBACK for packet id {} not in flight",
                        r.packet_id
                    )),
                }
            }
            Packet::PubRec(r) => {
                let c = &mut self.clients[i];
                match c.out.get_mut(&r.packet_id) {
                    Some(m) if m.publish.qos == QoS::ExactlyOnce => {
                        let id = m.id;
                        let first = !m.released;
                        m.released = true;
                        if !r.reason.is_success() {
                            self.fail(format!(
                                "c{i}: PUBREC {} refused {id:?}: {}",
                                r.packet_id, r.reason
                            ));
                        }
                        if first {
                            self.acked(id);
                        }
                        self.send(i, Packet::PubRel(PubResp::new(r.packet_id)));
                    }
                    _ => self.fail(format!(
                        "c{i}: PUBREC for packet id {} not in flight",
                        r.packet_id
                    )),
                }
            }
            Packet::PubComp(r) => {
                let c = &mut self.clients[i];
                match c.out.get(&r.packet_id) {
                    Some(m) if m.released => {
                        c.out.remove(&r.packet_id);
                    }
                    _ => self.fail(format!(
                        "c{i}: PUBCOMP for packet id {} not released",
                        r.packet_id
                    )),
                }
            }
            Packet::PubRel(r) => {
                self.clients[i].in_qos2.remove(&r.packet_id);
                self.send(i, Packet::PubComp(PubResp::new(r.packet_id)));
            }
            Packet::SubAck(a) => {
                let Some(asked) = self.clients[i].sub_pending.remove(&a.packet_id) else {
                    self.fail(format!(
                        "c{i}: SUBACK for unknown packet id {}",
                        a.packet_id
                    ));
                };
                let granted: Vec<u8> = a.reasons.iter().map(|r| r.0).collect();
                let want: Vec<u8> = asked.iter().map(|q| q.as_u8()).collect();
                if granted != want {
                    self.fail(format!("c{i}: SUBACK granted {granted:?}, asked {want:?}"));
                }
            }
            Packet::UnsubAck(a) => {
                self.clients[i].sub_pending.remove(&a.packet_id);
            }
            Packet::PingResp | Packet::Disconnect(_) => {}
            other => self.fail(format!("c{i} got {other:?}")),
        }
    }

    fn on_connack(&mut self, i: usize, present: bool, reason: ReasonCode) {
        if !reason.is_success() {
            self.fail(format!("c{i}: CONNECT refused: {reason}"));
        }
        let conn = self.clients[i].conn.expect("connected");
        let clean = self.clean_asked.remove(&conn).expect("CONNECT sent");
        let now = self.now_ms;
        let expected = if clean {
            Some(false)
        } else {
            match self.m.sessions.get(&i) {
                None => Some(false),
                Some(s) if s.ends_ms() == Some(now) => None,
                Some(_) => Some(true),
            }
        };
        if let Some(e) = expected
            && e != present
        {
            let s = self.m.sessions.get(&i);
            self.fail(format!(
                "c{i}: CONNACK session present {present}, the model expects {e} (clean start {clean}, model session {:?})",
                s.map(|s| (s.sid, s.expiry, s.attached, s.detached_ms))
            ));
        }
        let expiry = self.clients[i].expiry;
        if present {
            let s = self.m.sessions.get_mut(&i).expect("present session");
            s.attached = Some(conn);
            s.expiry = expiry;
        } else {
            if self.m.sessions.contains_key(&i) {
                self.m.end_session(i);
            }
            let sid = self.m.new_sid();
            self.m.sessions.insert(
                i,
                SessionM {
                    sid,
                    expiry,
                    attached: Some(conn),
                    detached_ms: 0,
                    subs: BTreeMap::new(),
                    unreceived: 0,
                },
            );
            self.clients[i].discard_session();
            self.say(format!("model: c{i} starts session {sid}"));
        }
        let sid = self.m.sid_of(i).expect("attached");
        self.conn_sid.insert(conn, sid);
        self.clients[i].link = Link::Connected;
        if present {
            for p in self.clients[i].resends() {
                self.send(i, p);
            }
        }
    }

    /// The publisher got PUBACK or PUBREC: the copies of the routing that answered are owed.
    fn acked(&mut self, id: MsgId) {
        let Some(rec) = self.m.msgs.get_mut(&id) else {
            self.fail(format!("{id:?} acknowledged but unknown"));
        };
        if rec.routings.is_empty() {
            self.fail(format!("{id:?} acknowledged but never routed"));
        }
        let last = rec.routings.len() - 1;
        if !rec.owed.contains(&last) {
            rec.owed.push(last);
        }
    }

    fn on_publish(&mut self, i: usize, p: Publish) {
        let pid = p.packet_id;
        let limit = if self.clients[i].v5() {
            self.clients[i].receive_max
        } else {
            self.limits.max_inflight
        };
        let reply = match p.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(PubResp::new(pid))),
            QoS::ExactlyOnce => Some(Packet::PubRec(PubResp::new(pid))),
        };
        if p.qos == QoS::ExactlyOnce && self.clients[i].in_qos2.contains(&pid) {
            if !p.dup {
                self.fail(format!(
                    "c{i}: QoS 2 PUBLISH with packet id {pid} still awaiting PUBREL, without DUP"
                ));
            }
        } else {
            if p.qos != QoS::AtMostOnce && self.clients[i].in_qos2.len() >= usize::from(limit) {
                self.fail(format!(
                    "c{i}: broker sent a QoS {} PUBLISH with {} QoS 2 messages unfinished: above its Receive Maximum {limit}",
                    p.qos.as_u8(),
                    self.clients[i].in_qos2.len()
                ));
            }
            if p.qos == QoS::ExactlyOnce {
                self.clients[i].in_qos2.insert(pid);
            }
            self.deliver(i, &p);
        }
        if let Some(reply) = reply {
            self.send(i, reply);
        }
    }

    /// Client `i`'s application gets `p`: the delivery checks.
    fn deliver(&mut self, i: usize, p: &Publish) {
        if p.payload.is_empty() {
            return;
        }
        let Some(id) = MsgId::parse(&p.payload) else {
            self.fail(format!("c{i} got a payload nobody sent: {:?}", p.payload));
        };
        let Some(sid) = self.clients[i]
            .conn
            .and_then(|c| self.conn_sid.get(&c).copied())
        else {
            self.fail(format!("c{i} got {id:?} before its CONNACK"));
        };
        let rec = &self.m.msgs[&id];
        let (rec_qos, rec_retain) = (rec.qos, rec.retain);
        let Some(copies) = self.m.copies.get_mut(&(sid, id)) else {
            self.fail(format!(
                "c{i} (session {sid}) got {id:?} on {}, which was never routed to its session",
                p.topic
            ));
        };
        if !copies.vias.iter().any(|(_, q)| *q == p.qos) {
            let vias = copies.vias.clone();
            self.fail(format!(
                "c{i} got {id:?} at QoS {}, but its copies are {vias:?}",
                p.qos.as_u8()
            ));
        }
        if p.retain
            && !copies.vias.iter().any(|(v, _)| {
                *v == Via::Retained
                    || (rec_retain && matches!(v, Via::Ordinary { rap: true } | Via::Shared(..)))
            })
        {
            let vias = copies.vias.clone();
            self.fail(format!(
                "c{i} got {id:?} with RETAIN set, but its copies are {vias:?}"
            ));
        }
        let first = copies.received == 0;
        copies.received += 1;
        if p.qos == QoS::ExactlyOnce {
            copies.qos2 += 1;
            let allowed = copies
                .vias
                .iter()
                .filter(|(_, q)| *q == QoS::ExactlyOnce)
                .count();
            if copies.qos2 as usize > allowed {
                let n = copies.qos2;
                self.fail(format!(
                    "c{i} got QoS 2 message {id:?} {n} times (copies routed at QoS 2: {allowed})"
                ));
            }
        }
        let vias = copies.vias.clone();
        // Only QoS 1/2 copies were counted (QoS 0 is never queued).
        if first
            && p.qos != QoS::AtMostOnce
            && let Some(s) = self.m.sessions.get_mut(&i)
            && s.sid == sid
        {
            s.unreceived = s.unreceived.saturating_sub(1);
        }
        for via in vias.iter().map(|(v, _)| v) {
            if let Via::Shared(g, f) = via {
                let shared_routings = self.m.msgs[&id]
                    .routings
                    .iter()
                    .filter(|r| r.routes.iter().any(|x| x.via == *via))
                    .count();
                let members = self
                    .m
                    .shared_recv
                    .entry((g.clone(), f.clone(), id))
                    .or_default();
                members.insert(i);
                if members.len() > shared_routings {
                    let members = members.clone();
                    self.fail(format!(
                        "{id:?} reached members {members:?} of $share/{g}/{f}, routed there {shared_routings} time(s)"
                    ));
                }
            }
        }
        // [MQTT-4.6.0-6]: per publisher, topic and QoS, in the order received. Retained
        // copies sent on subscribe are old messages; shared groups promise no order.
        let ordered = vias.iter().all(|(v, _)| matches!(v, Via::Ordinary { .. }));
        if first
            && ordered
            && let MsgId::Pub { client, seq } = id
        {
            let key = (
                sid,
                client,
                p.topic.as_str().to_string(),
                rec_qos.as_u8(),
                p.qos.as_u8(),
            );
            if let Some(&last) = self.m.order.get(&key)
                && last >= seq
            {
                self.fail(format!(
                    "c{i} got {id:?} on {} after seq {last} of the same publisher (QoS {} -> {}): out of order",
                    p.topic,
                    rec_qos.as_u8(),
                    p.qos.as_u8()
                ));
            }
            self.m.order.insert(key, seq);
        }
    }

    // ---- actions -------------------------------------------------------------------------

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn connect(&mut self, i: usize, clean: bool, with_will: bool) {
        let v5 = self.clients[i].v5();
        self.clients[i].keep_alive = self.pick(&[0, 0, 5, 10, 30]);
        self.clients[i].expiry = if v5 {
            self.pick(&[0, 5, 30, 300, u32::MAX])
        } else if clean {
            0
        } else {
            u32::MAX
        };
        let will = if with_will {
            self.clients[i].wills += 1;
            let n = self.clients[i].wills;
            let q = qos(self.rng.random_range(1..=2));
            let retain = self.rng.random_bool(0.3);
            let delay = if v5 { self.pick(&[0, 0, 2, 5, 30]) } else { 0 };
            Some((format!("will/c{i}"), n, q, retain, delay))
        } else {
            None
        };
        let packet = self.clients[i].connect(clean, will.clone());
        let (conn, _) = self.accept(Owner::Client(i));
        let h = self.hosts.get_mut(&conn).expect("just accepted");
        h.client = Some(i);
        h.keep_alive = self.clients[i].keep_alive;
        h.v5 = v5;
        h.will = will.map(|(_, n, _, _, delay)| (MsgId::Will { client: i, n }, delay));
        // Every older connection of this client is taken over by this CONNECT.
        for (&id, h) in self.hosts.iter_mut() {
            if id != conn && h.client == Some(i) {
                h.superseded = Some(clean);
                if h.owner == Owner::Client(i) {
                    h.owner = Owner::Gone;
                }
            }
        }
        // A will waiting for its delay: the new connection comes first.
        for (id, st) in self.m.wills.iter_mut() {
            if matches!(id, MsgId::Will { client, .. } if *client == i)
                && matches!(st, WillState::Due(_))
            {
                *st = if clean {
                    WillState::Either
                } else {
                    WillState::Cancelled
                };
            }
        }
        let c = &mut self.clients[i];
        c.conn = Some(conn);
        c.link = Link::Connecting;
        c.lazy = false;
        c.inbox.clear();
        c.eof = false;
        if clean {
            c.discard_session();
        }
        self.clean_asked.insert(conn, clean);
        self.send(i, Packet::Connect(Box::new(packet)));
    }

    fn publish(&mut self, i: usize) {
        let topic = self.pick(TOPICS);
        let mut q = qos(self.rng.random_range(0..=2));
        if q != QoS::AtMostOnce
            && self.clients[i].out.len() >= usize::from(self.limits.max_inflight)
        {
            q = QoS::AtMostOnce;
        }
        if self.rng.random_bool(0.04) {
            // Deletes the topic's retained message.
            let mut p = Publish::new(s(topic), Bytes::new());
            p.retain = true;
            return self.send(i, Packet::Publish(p));
        }
        let retain = self.rng.random_bool(0.15);
        let (id, p) = self.clients[i].publish(topic, q, retain);
        self.m.msgs.insert(
            id,
            MsgRec {
                topic: topic.to_string(),
                qos: q,
                retain,
                routings: Vec::new(),
                owed: Vec::new(),
            },
        );
        self.send(i, Packet::Publish(p));
    }

    fn subscribe(&mut self, i: usize) {
        let v5 = self.clients[i].v5();
        let mut filters = Vec::new();
        let n = self.rng.random_range(1..=2);
        for _ in 0..n {
            let shared = self.clients[i].shared.is_none()
                && filters
                    .iter()
                    .all(|(f, _): &(String, _)| !f.starts_with('$'))
                && self.rng.random_bool(0.25);
            let filter = if shared {
                self.pick(SHARED)
            } else {
                self.pick(ORDINARY)
            };
            if filters.iter().any(|(f, _)| f == filter) {
                continue;
            }
            let mut o = SubscriptionOptions::new(qos(self.rng.random_range(0..=2)));
            if v5 {
                o.no_local = !shared && self.rng.random_bool(0.2);
                o.retain_as_published = self.rng.random_bool(0.3);
                o.retain_handling = self.pick(&[
                    RetainHandling::SendAtSubscribe,
                    RetainHandling::SendIfNew,
                    RetainHandling::DoNotSend,
                ]);
            }
            filters.push((filter.to_string(), o));
        }
        let pid = self.clients[i].alloc_pid();
        self.clients[i]
            .sub_pending
            .insert(pid, filters.iter().map(|(_, o)| o.qos).collect());
        // The model: subscriptions, then the retained messages each filter gets.
        let now = self.now_ms;
        let max_queued = self.m.max_queued;
        let mut retained_routes: Vec<(MsgId, Route)> = Vec::new();
        if let Some(sess) = self.m.sessions.get_mut(&i) {
            for (filter, o) in &filters {
                let existed = sess
                    .subs
                    .insert(
                        filter.clone(),
                        SubOpts {
                            qos: o.qos,
                            no_local: o.no_local,
                            rap: o.retain_as_published,
                        },
                    )
                    .is_some();
                let send = model::shared(filter).is_none()
                    && match o.retain_handling {
                        RetainHandling::SendAtSubscribe => true,
                        RetainHandling::SendIfNew => !existed,
                        RetainHandling::DoNotSend => false,
                    };
                if send {
                    for (topic, (id, q)) in &self.m.retained {
                        if model::matches(filter, topic) {
                            let q = (*q).min(o.qos);
                            if q != QoS::AtMostOnce {
                                sess.unreceived += 1;
                            }
                            retained_routes.push((
                                *id,
                                Route {
                                    client: i,
                                    sid: sess.sid,
                                    via: Via::Retained,
                                    qos: q,
                                    room: false,
                                },
                            ));
                        }
                    }
                }
            }
        }
        // The broker sends a SUBSCRIBE's retained messages in an order of its own (its
        // retained tree's): each had room only if the whole batch had.
        let room = self
            .m
            .sessions
            .get(&i)
            .is_some_and(|s| s.unreceived <= max_queued);
        for (id, mut route) in retained_routes {
            route.room = room;
            let idx = self.m.add_routing(
                id,
                Routing {
                    at_ms: now,
                    routes: vec![route],
                },
            );
            self.m.msgs.get_mut(&id).expect("recorded").owed.push(idx);
        }
        for (f, o) in &filters {
            if f.starts_with('$') {
                self.clients[i].shared = Some(f.clone());
            } else {
                self.clients[i].subs.insert(f.clone(), o.qos);
            }
        }
        self.send(
            i,
            Packet::Subscribe(Subscribe {
                packet_id: pid,
                properties: Properties::default(),
                filters: filters.into_iter().map(|(f, o)| (s(&f), o)).collect(),
            }),
        );
    }

    fn unsubscribe(&mut self, i: usize) {
        let c = &self.clients[i];
        let mut all: Vec<String> = c.subs.keys().cloned().collect();
        all.extend(c.shared.clone());
        if all.is_empty() {
            return;
        }
        let filter = all[self.rng.random_range(0..all.len())].clone();
        if let Some(sess) = self.m.sessions.get_mut(&i) {
            sess.subs.remove(&filter);
        }
        let c = &mut self.clients[i];
        c.subs.remove(&filter);
        if c.shared.as_deref() == Some(filter.as_str()) {
            c.shared = None;
        }
        let pid = c.alloc_pid();
        c.sub_pending.insert(pid, Vec::new());
        self.send(
            i,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid,
                properties: Properties::default(),
                filters: vec![s(&filter)],
            }),
        );
    }

    fn disconnect(&mut self, i: usize) {
        let conn = self.clients[i].conn.expect("connected");
        let v5 = self.clients[i].v5();
        let mut d = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
        if v5 && self.rng.random_bool(0.25) {
            d.reason = ReasonCode::DISCONNECT_WITH_WILL;
        }
        if v5 && self.clients[i].expiry != 0 && self.rng.random_bool(0.3) {
            let e = self.pick(&[0, 5, 60, u32::MAX]);
            d.properties.make_mut().session_expiry_interval = Some(e);
            self.clients[i].expiry = e;
            if let Some(sess) = self.m.sessions.get_mut(&i) {
                sess.expiry = e;
            }
        }
        if let Some(h) = self.hosts.get_mut(&conn) {
            h.disconnect = Some(d.reason.0);
        }
        self.send(i, Packet::Disconnect(d));
        let c = &mut self.clients[i];
        c.conn = None;
        c.link = Link::Idle;
        c.inbox.clear();
        c.eof = false;
    }

    /// The connection breaks; both ends notice at once (`half_open`: only the client does).
    fn lose(&mut self, i: usize, half_open: bool) {
        let Some(conn) = self.clients[i].conn.take() else {
            return;
        };
        let c = &mut self.clients[i];
        c.link = Link::Idle;
        c.inbox.clear();
        c.eof = false;
        c.lazy = false;
        if half_open {
            if let Some(h) = self.hosts.get_mut(&conn) {
                h.owner = Owner::Gone;
            }
        } else if self.hosts.contains_key(&conn) {
            self.on_closed(conn);
            self.r.connection_lost(self.now(), conn, "connection reset");
            self.flush();
        }
    }

    /// Time passes: responsive clients keep their connections alive; the router ticks.
    fn advance(&mut self, ms: u64) {
        let mut left = ms;
        while left > 0 {
            let d = left.min(1000);
            left -= d;
            self.now_ms += d;
            for i in 0..self.clients.len() {
                let c = &self.clients[i];
                if c.link == Link::Connected
                    && !c.lazy
                    && c.keep_alive > 0
                    && self.now_ms - c.last_sent_ms >= u64::from(c.keep_alive) * 500
                {
                    self.send(i, Packet::PingReq);
                }
            }
            self.r.tick(self.now(), 0, 0);
            self.flush();
            self.after_tick();
            self.settle();
        }
    }

    /// The model's own timers, after the router's tick at `now`.
    fn after_tick(&mut self) {
        let now = self.now_ms;
        let ended: Vec<usize> = self
            .m
            .sessions
            .iter()
            .filter(|(_, s)| s.ends_ms().is_some_and(|e| now > e))
            .map(|(&i, _)| i)
            .collect();
        for i in ended {
            self.say(format!("model: c{i}'s session expires"));
            self.m.end_session(i);
        }
    }

    /// Checks that hold after every step.
    fn check(&mut self) {
        let now = self.now_ms;
        for (id, st) in &self.m.wills {
            if let WillState::Due(d) = st
                && now > d + 1
            {
                self.fail(format!(
                    "will {id:?} was due at {d} ms and is not published"
                ));
            }
        }
        for (id, h) in &self.hosts {
            if h.client.is_some()
                && h.keep_alive > 0
                && now - h.last_rx_ms >= u64::from(h.keep_alive) * 1500 + 2
            {
                self.fail(format!(
                    "connection {id} (c{:?}) idle {} ms with keep alive {} s is still open",
                    h.client,
                    now - h.last_rx_ms,
                    h.keep_alive
                ));
            }
        }
    }

    /// A new client subscribes to one filter and compares the retained messages it gets
    /// with the model's.
    fn probe(&mut self) {
        let filter = if self.rng.random_bool(0.3) {
            "#"
        } else {
            self.pick(ORDINARY)
        };
        let version = if self.rng.random_bool(0.5) {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        };
        let (conn, _) = self.accept(Owner::Probe);
        let c = Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 0,
            properties: Properties::default(),
            client_id: s("probe"),
            will: None,
            username: None,
            password: None,
            bridge: false,
        };
        self.probe_in.clear();
        self.r
            .handle(self.now(), conn, Packet::Connect(Box::new(c)));
        self.r.handle(
            self.now(),
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties::default(),
                filters: vec![(s(filter), SubscriptionOptions::new(QoS::AtMostOnce))],
            }),
        );
        self.flush();
        let mut got = BTreeMap::new();
        loop {
            match tinsel_codec::decode_packet(&mut self.probe_in, version, u32::MAX) {
                Ok(Some(Packet::Publish(p))) => {
                    if !p.retain {
                        self.fail(format!("probe got {} without RETAIN", p.topic));
                    }
                    let id = MsgId::parse(&p.payload);
                    if got.insert(p.topic.as_str().to_string(), id).is_some() {
                        self.fail(format!("probe got two retained messages on {}", p.topic));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => self.fail(format!("probe got malformed bytes: {e}")),
            }
        }
        let want: BTreeMap<String, Option<MsgId>> = self
            .m
            .retained
            .iter()
            .filter(|(t, _)| model::matches(filter, t))
            .map(|(t, (id, _))| (t.clone(), Some(*id)))
            .collect();
        if got != want {
            self.fail(format!(
                "retained messages for {filter}: broker {got:?}, model {want:?}"
            ));
        }
        self.say(format!(
            "probe {filter}: {} retained, as the model says",
            got.len()
        ));
        self.r.handle(
            self.now(),
            conn,
            Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
        );
        self.flush();
    }

    /// Brings every client back and lets everything flow; then every owed copy must have
    /// arrived and every publisher must have its acknowledgements.
    pub(crate) fn quiesce(&mut self) {
        self.say("quiesce: every client reconnects and reads".to_string());
        for _ in 0..3 {
            for c in &mut self.clients {
                c.lazy = false;
            }
            self.settle();
            for i in 0..self.clients.len() {
                if self.clients[i].link == Link::Idle {
                    self.connect(i, false, false);
                }
            }
            self.settle();
        }
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            if c.link != Link::Connected {
                self.fail(format!(
                    "c{i} is not connected after quiesce ({:?})",
                    c.link
                ));
            }
            if !c.out.is_empty() {
                let out: Vec<MsgId> = c.out.values().map(|m| m.id).collect();
                self.fail(format!(
                    "c{i}'s messages {out:?} are still unacknowledged after quiesce"
                ));
            }
        }
        let lost = self.m.lost();
        if !lost.is_empty() {
            self.fail(format!("owed messages lost:\n  {}", lost.join("\n  ")));
        }
    }

    /// One random step.
    pub(crate) fn step(&mut self) {
        self.step += 1;
        let i = self.rng.random_range(0..self.clients.len());
        let (link, lazy) = (self.clients[i].link, self.clients[i].lazy);
        let roll = self.rng.random_range(0..100);
        match (roll, link) {
            (_, Link::Idle) if roll < 40 => {
                let clean = self.rng.random_bool(0.3);
                let will = self.rng.random_bool(0.4);
                self.connect(i, clean, will);
            }
            (0..=34, Link::Connected) if !lazy => {
                self.publish(i);
                if self.rng.random_bool(0.05) {
                    // Lost before the client reads the acknowledgement.
                    self.say(format!("c{i}: connection lost right after publishing"));
                    self.lose(i, false);
                }
            }
            (35..=46, Link::Connected) if !lazy => self.subscribe(i),
            (47..=50, Link::Connected) if !lazy => self.unsubscribe(i),
            (51..=54, Link::Connected) if !lazy => self.disconnect(i),
            (55..=59, Link::Connected) => {
                self.say(format!("c{i}: connection lost"));
                self.lose(i, false);
            }
            (60..=61, Link::Connected) => {
                self.say(format!("c{i}: gives up on its connection (half-open)"));
                self.lose(i, true);
            }
            (62..=67, Link::Connected) => {
                self.clients[i].lazy = !lazy;
                self.say(format!("c{i}: lazy {}", !lazy));
            }
            (68..=70, _) => self.probe(),
            (71, _) => self.quiesce(),
            _ => {
                let ms = match self.rng.random_range(0..20) {
                    0..=9 => self.rng.random_range(1..1000),
                    10..=16 => self.rng.random_range(1000..10_000),
                    _ => self.rng.random_range(10_000..70_000),
                };
                self.say(format!("time +{ms} ms"));
                self.advance(ms);
            }
        }
        self.settle();
        self.check();
    }
}

fn name(p: &Packet) -> &'static str {
    p.packet_type().name()
}

fn describe(p: &Packet) -> String {
    match p {
        Packet::Publish(p) => format!(
            "PUBLISH {} q{} r{} d{} pid {} {}",
            p.topic,
            p.qos.as_u8(),
            u8::from(p.retain),
            u8::from(p.dup),
            p.packet_id,
            String::from_utf8_lossy(&p.payload)
        ),
        Packet::Connect(c) => format!(
            "CONNECT {} clean {} ka {} expiry {:?} will {:?}",
            c.protocol,
            c.clean_start,
            c.keep_alive,
            c.properties.session_expiry_interval,
            c.will.as_ref().map(|w| (
                w.topic.as_str().to_string(),
                String::from_utf8_lossy(&w.payload).into_owned(),
                w.qos.as_u8(),
                w.properties.will_delay_interval
            ))
        ),
        Packet::ConnAck(a) => format!("CONNACK present {} {}", a.session_present, a.reason),
        Packet::Subscribe(s) => format!(
            "SUBSCRIBE pid {} {:?}",
            s.packet_id,
            s.filters
                .iter()
                .map(|(f, o)| format!(
                    "{f} q{} nl{} rap{} rh{:?}",
                    o.qos.as_u8(),
                    u8::from(o.no_local),
                    u8::from(o.retain_as_published),
                    o.retain_handling
                ))
                .collect::<Vec<_>>()
        ),
        Packet::Unsubscribe(u) => format!("UNSUBSCRIBE pid {} {:?}", u.packet_id, u.filters),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            format!("{} {} {}", name(p), r.packet_id, r.reason)
        }
        Packet::Disconnect(d) => format!(
            "DISCONNECT {} expiry {:?}",
            d.reason, d.properties.session_expiry_interval
        ),
        other => name(other).to_string(),
    }
}

/// Runs one seed for `steps` steps, then brings everything to rest and checks.
pub(crate) fn run(seed: u64, steps: usize) {
    let mut w = World::new(seed);
    for _ in 0..steps {
        w.step();
    }
    w.quiesce();
}
