//! The model: what the broker must have done, kept independently of it.
//!
//! It knows each session (by a session id that changes whenever a session ends), its
//! subscriptions, the retained message of each topic, and the wills that are pending. Each
//! message the broker routes (seen by the observer, which subscribes to `#`) is expanded into
//! the copies each session should get; a copy is *owed* once the publisher got its PUBACK or
//! PUBREC (a will: once routed), its effective QoS is 1 or 2, and the session's queue surely
//! had room.

use std::collections::{BTreeMap, BTreeSet};

use tinsel_codec::QoS;

/// A message's identity, carried in its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum MsgId {
    /// Sequence number `seq` of client `client`.
    Pub { client: usize, seq: u32 },
    /// The `n`th will client `client` left.
    Will { client: usize, n: u32 },
}

impl MsgId {
    pub(crate) fn payload(self) -> String {
        match self {
            MsgId::Pub { client, seq } => format!("P:{client}:{seq}"),
            MsgId::Will { client, n } => format!("W:{client}:{n}"),
        }
    }

    pub(crate) fn parse(b: &[u8]) -> Option<MsgId> {
        let s = std::str::from_utf8(b).ok()?;
        let mut it = s.split(':');
        let kind = it.next()?;
        let client = it.next()?.parse().ok()?;
        let n = it.next()?.parse().ok()?;
        match kind {
            "P" => Some(MsgId::Pub { client, seq: n }),
            "W" => Some(MsgId::Will { client, n }),
            _ => None,
        }
    }
}

/// The model's own topic matching (not the broker's): `+` one level, `#` the rest.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return !topic.starts_with('$'),
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Splits `$share/{group}/{filter}`.
pub(crate) fn shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    rest.split_once('/')
}

pub(crate) type Sid = u64;

/// A subscription's options as the model keeps them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SubOpts {
    pub(crate) qos: QoS,
    pub(crate) no_local: bool,
    pub(crate) rap: bool,
}

/// A session as the model knows it.
#[derive(Debug)]
pub(crate) struct SessionM {
    pub(crate) sid: Sid,
    pub(crate) expiry: u32,
    pub(crate) attached: Option<u64>,
    pub(crate) detached_ms: u64,
    /// Filters as written (`$share/...` included).
    pub(crate) subs: BTreeMap<String, SubOpts>,
    /// Copies of QoS 1/2 routed to it and not yet received once: an upper bound on what
    /// its queue holds.
    pub(crate) unreceived: usize,
}

impl SessionM {
    /// When a detached session with an expiry ends, in ms (None: never or attached).
    pub(crate) fn ends_ms(&self) -> Option<u64> {
        if self.attached.is_some() || self.expiry == u32::MAX || self.expiry == 0 {
            return None;
        }
        Some(self.detached_ms + u64::from(self.expiry) * 1000)
    }
}

/// How a copy reaches a session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Via {
    /// Its ordinary subscriptions (merged: one copy at the highest QoS).
    Ordinary { rap: bool },
    /// Shared subscription (group, filter).
    Shared(String, String),
    /// Sent as retained when it subscribed.
    Retained,
}

/// One copy a routing gives a session.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) client: usize,
    pub(crate) sid: Sid,
    pub(crate) via: Via,
    pub(crate) qos: QoS,
    /// The session's queue surely had room.
    pub(crate) room: bool,
}

/// One time the broker routed a message (or sent it as retained).
#[derive(Debug, Clone, Default)]
pub(crate) struct Routing {
    pub(crate) at_ms: u64,
    pub(crate) routes: Vec<Route>,
}

/// What the model knows of one message.
#[derive(Debug)]
pub(crate) struct MsgRec {
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) routings: Vec<Routing>,
    /// Routings whose copies are owed.
    pub(crate) owed: Vec<usize>,
}

/// The copies of one message for one session.
#[derive(Debug, Default)]
pub(crate) struct Copies {
    pub(crate) vias: Vec<(Via, QoS)>,
    pub(crate) received: u32,
    /// Deliveries at QoS 2 to the application.
    pub(crate) qos2: u32,
}

/// A will the broker holds for a closed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WillState {
    /// Must be published at `due_ms` (at the first tick after it).
    Due(u64),
    /// May or may not be published (a clean start came before it was due).
    Either,
    /// Must never be published (the session resumed in time).
    Cancelled,
    /// Published.
    Sent,
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) next_sid: Sid,
    pub(crate) sessions: BTreeMap<usize, SessionM>,
    /// Sessions whose expiry is exactly now: ended or not, the next CONNACK says.
    pub(crate) retained: BTreeMap<String, (MsgId, QoS)>,
    pub(crate) msgs: BTreeMap<MsgId, MsgRec>,
    pub(crate) copies: BTreeMap<(Sid, MsgId), Copies>,
    /// Distinct members that received each (group, filter, message).
    pub(crate) shared_recv: BTreeMap<(String, String, MsgId), BTreeSet<usize>>,
    pub(crate) wills: BTreeMap<MsgId, WillState>,
    /// Last first-time delivery per (session, publisher, topic, published QoS, delivered QoS).
    pub(crate) order: BTreeMap<(Sid, usize, String, u8, u8), u32>,
    pub(crate) max_queued: usize,
}

impl Model {
    pub(crate) fn new_sid(&mut self) -> Sid {
        self.next_sid += 1;
        self.next_sid
    }

    pub(crate) fn sid_of(&self, client: usize) -> Option<Sid> {
        self.sessions.get(&client).map(|s| s.sid)
    }

    /// The copies a message on `topic` gets, by the sessions' subscriptions now.
    /// `publisher` is skipped where its subscription says No Local.
    pub(crate) fn route(
        &mut self,
        at_ms: u64,
        topic: &str,
        qos: QoS,
        publisher: Option<usize>,
    ) -> Routing {
        let mut routes = Vec::new();
        for (&client, s) in &mut self.sessions {
            let mut ordinary: Option<(QoS, bool)> = None;
            let mut groups: Vec<Route> = Vec::new();
            for (filter, o) in &s.subs {
                if let Some((group, inner)) = shared(filter) {
                    if matches(inner, topic) {
                        groups.push(Route {
                            client,
                            sid: s.sid,
                            via: Via::Shared(group.to_string(), inner.to_string()),
                            qos: qos.min(o.qos),
                            room: false,
                        });
                    }
                } else if matches(filter, topic) && !(o.no_local && publisher == Some(client)) {
                    let (q, rap) = ordinary.unwrap_or((QoS::AtMostOnce, false));
                    ordinary = Some((q.max(qos.min(o.qos)), rap | o.rap));
                }
            }
            let ord = ordinary.map(|(q, rap)| Route {
                client,
                sid: s.sid,
                via: Via::Ordinary { rap },
                qos: q,
                room: false,
            });
            for mut r in ord.into_iter().chain(groups) {
                r.room = s.unreceived < self.max_queued;
                if r.qos != QoS::AtMostOnce {
                    s.unreceived += 1;
                }
                routes.push(r);
            }
        }
        Routing { at_ms, routes }
    }

    /// Records a routing of `id`: every copy it makes.
    pub(crate) fn add_routing(&mut self, id: MsgId, routing: Routing) -> usize {
        for r in &routing.routes {
            self.copies
                .entry((r.sid, id))
                .or_default()
                .vias
                .push((r.via.clone(), r.qos));
        }
        let rec = self.msgs.get_mut(&id).expect("message recorded");
        rec.routings.push(routing);
        rec.routings.len() - 1
    }

    /// Ends `client`'s session: its copies are no longer owed.
    pub(crate) fn end_session(&mut self, client: usize) {
        self.sessions.remove(&client);
    }

    /// Owed copies that did not arrive: checked once every client is connected and idle.
    pub(crate) fn lost(&self) -> Vec<String> {
        let mut lost = Vec::new();
        let alive = |client: usize, sid: Sid| self.sid_of(client) == Some(sid);
        for (id, rec) in &self.msgs {
            for &i in &rec.owed {
                let routing = &rec.routings[i];
                let mut groups: BTreeMap<&Via, (bool, u32, Vec<usize>)> = BTreeMap::new();
                for r in &routing.routes {
                    let eligible = r.qos != QoS::AtMostOnce && r.room && alive(r.client, r.sid);
                    let got = self.copies.get(&(r.sid, *id)).map_or(0, |c| c.received);
                    match &r.via {
                        Via::Shared(..) => {
                            let g = groups.entry(&r.via).or_insert((true, 0, Vec::new()));
                            g.0 &= eligible;
                            g.1 += got;
                            g.2.push(r.client);
                        }
                        via => {
                            if eligible && got == 0 {
                                lost.push(format!(
                                    "{id:?} ({} q{} routed at {} ms) owed to c{} (session {}, via {via:?}, q{}) never arrived",
                                    rec.topic,
                                    rec.qos.as_u8(),
                                    routing.at_ms,
                                    r.client,
                                    r.sid,
                                    r.qos.as_u8()
                                ));
                            }
                        }
                    }
                }
                for (via, (eligible, got, members)) in groups {
                    if eligible && got == 0 {
                        lost.push(format!(
                            "{id:?} ({} routed at {} ms) owed to shared {via:?} (members {members:?}) reached none of them",
                            rec.topic, routing.at_ms
                        ));
                    }
                }
            }
        }
        lost
    }
}
