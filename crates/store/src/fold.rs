//! The log folded into what it means: the store's own picture of the broker's durable
//! state, kept up to date by the store's thread as it writes, turned into the core's
//! [`Restored`] at start and into a snapshot when the log is compacted.
//!
//! A message is kept once, by number, with a count of the sessions that refer to it.
//! Each session holds the numbers of the messages it waits for (oldest first) and its
//! flows in flight by packet id. `Sent` names its message by key (topic and payload): it
//! is the oldest waiting message with that key; older ones it passes were dropped by the
//! broker (queue full, expired). A `Sent` made before its message's `Accepted` (a message
//! sent at once) waits in `early` for it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use tinsel_codec::{Publish, QoS, SubscriptionOptions, Will};
use tinsel_core::{Record, Restored, RestoredInflight, RestoredSession, RestoredWill};

use crate::entry::{Entry, Kept, key};

#[derive(Debug, Clone)]
struct Message {
    publish: Publish,
    key: u64,
    refs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flight {
    Publish { id: u64, qos: QoS },
    Release,
}

#[derive(Debug, Default, Clone)]
struct Session {
    expiry: u32,
    subs: BTreeMap<Arc<str>, (SubscriptionOptions, Option<u32>)>,
    pending: VecDeque<u64>,
    inflight: BTreeMap<u16, Flight>,
    early: Vec<(u16, u64, QoS)>,
    incoming: BTreeSet<u16>,
    /// A will waiting for its delay: its owner's identity, the will, the delay.
    will: Option<(Option<Arc<str>>, Box<Will>, u32)>,
}

/// The will of a connected client: its owner's identity, the will.
type ConnectedWill = (Option<Arc<str>>, Box<Will>);

/// The durable state.
#[derive(Debug, Default, Clone)]
pub(crate) struct State {
    sessions: BTreeMap<Arc<str>, Session>,
    /// Retained messages as written: the core holds them decoded. In topic order, which is
    /// the order the core's tree fills fastest in at start.
    retained: BTreeSet<Kept>,
    messages: HashMap<u64, Message>,
    next_id: u64,
    /// Wills of connected clients (see [`Record::WillSet`]): their owner's identity, the will.
    connected_wills: BTreeMap<Arc<str>, ConnectedWill>,
}

impl State {
    fn unref(messages: &mut HashMap<u64, Message>, id: u64) {
        if let Some(m) = messages.get_mut(&id) {
            m.refs = m.refs.saturating_sub(1);
            if m.refs == 0 {
                messages.remove(&id);
            }
        }
    }

    fn add_ref(&mut self, id: u64) {
        if let Some(m) = self.messages.get_mut(&id) {
            m.refs += 1;
        }
    }

    fn end(&mut self, client: &str) {
        if let Some(s) = self.sessions.remove(client) {
            for id in s.pending {
                State::unref(&mut self.messages, id);
            }
            for f in s.inflight.into_values() {
                if let Flight::Publish { id, .. } = f {
                    State::unref(&mut self.messages, id);
                }
            }
        }
    }

    /// Puts `flight` in `client`'s window at `pid`, dropping what it replaces.
    fn fly(&mut self, client: &str, pid: u16, flight: Flight) {
        let Some(s) = self.sessions.get_mut(client) else {
            if let Flight::Publish { id, .. } = flight {
                State::unref(&mut self.messages, id);
            }
            return;
        };
        if let Some(Flight::Publish { id, .. }) = s.inflight.insert(pid, flight) {
            State::unref(&mut self.messages, id);
        }
    }

    /// Applies one entry.
    pub(crate) fn apply(&mut self, e: Entry) {
        match e {
            Entry::Core(r) => self.apply_record(r),
            Entry::Sent {
                client,
                packet_id,
                key,
                qos,
            } => {
                let Some(s) = self.sessions.get_mut(&client) else {
                    return;
                };
                let messages = &self.messages;
                let Some(at) = s
                    .pending
                    .iter()
                    .position(|id| messages.get(id).is_some_and(|m| m.key == key))
                else {
                    s.early.push((packet_id, key, qos));
                    return;
                };
                let passed: Vec<u64> = s.pending.drain(..=at).collect();
                let (id, dropped) = passed.split_last().unwrap_or((&0, &[]));
                let id = *id;
                for &d in dropped {
                    State::unref(&mut self.messages, d);
                }
                self.fly(&client, packet_id, Flight::Publish { id, qos });
            }
            Entry::Message { id, publish } => {
                let key = key(&publish.topic, &publish.payload);
                self.messages.insert(
                    id,
                    Message {
                        publish,
                        key,
                        refs: 0,
                    },
                );
                self.next_id = self.next_id.max(id + 1);
            }
            Entry::Pending { client, id } => {
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.pending.push_back(id);
                    self.add_ref(id);
                }
            }
            Entry::InflightPublish {
                client,
                packet_id,
                id,
                qos,
            } => {
                if self.sessions.contains_key(&client) {
                    self.add_ref(id);
                    self.fly(&client, packet_id, Flight::Publish { id, qos });
                }
            }
            Entry::InflightRelease { client, packet_id } => {
                self.fly(&client, packet_id, Flight::Release);
            }
            Entry::Retained(k) => {
                self.retained.replace(k);
            }
        }
    }

    fn apply_record(&mut self, r: Record) {
        match r {
            // Expiry 0: the session ends with its connection (the core makes no other record
            // of that end).
            Record::SessionOpened { client, expiry: 0 } => self.end(&client),
            Record::SessionOpened { client, expiry } => {
                self.sessions.entry(client).or_default().expiry = expiry;
            }
            Record::SessionEnded { client } => self.end(&client),
            Record::Subscribed {
                client,
                filter,
                options,
                id,
            } => {
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.subs.insert(filter, (options, id));
                }
            }
            Record::Unsubscribed { client, filter } => {
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.subs.remove(&filter);
                }
            }
            Record::Accepted { message, sessions } => {
                let id = self.next_id;
                self.next_id += 1;
                let key = key(&message.topic, &message.payload);
                let mut refs = 0;
                let mut flights = Vec::new();
                for client in sessions {
                    let Some(s) = self.sessions.get_mut(&client) else {
                        continue;
                    };
                    refs += 1;
                    match s.early.iter().position(|&(_, k, _)| k == key) {
                        Some(i) => {
                            let (pid, _, qos) = s.early.remove(i);
                            flights.push((client, pid, qos));
                        }
                        None => s.pending.push_back(id),
                    }
                    // What is early and unmatched now was no message of the log (a
                    // retained one sent on subscribe).
                    s.early.clear();
                }
                if refs > 0 {
                    self.messages.insert(
                        id,
                        Message {
                            publish: message,
                            key,
                            refs,
                        },
                    );
                }
                for (client, pid, qos) in flights {
                    self.fly(&client, pid, Flight::Publish { id, qos });
                }
            }
            Record::Qos2Received { client, packet_id } => {
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.incoming.insert(packet_id);
                }
            }
            Record::Qos2Released { client, packet_id } => {
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.incoming.remove(&packet_id);
                }
            }
            Record::Retained { topic, message } => match message {
                Some(p) => {
                    self.retained.replace(Kept::encode(&topic, &p));
                }
                None => {
                    self.retained.remove(topic.as_bytes().as_ref());
                }
            },
            Record::Delivered {
                client,
                packet_id,
                released,
            } => {
                let Some(s) = self.sessions.get_mut(&client) else {
                    return;
                };
                if released {
                    if s.inflight.contains_key(&packet_id) {
                        self.fly(&client, packet_id, Flight::Release);
                    }
                } else if let Some(Flight::Publish { id, .. }) = s.inflight.remove(&packet_id) {
                    State::unref(&mut self.messages, id);
                }
            }
            Record::WillPending {
                client,
                username,
                will,
                delay,
            } => {
                self.connected_wills.remove(&client);
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.will = Some((username, will, delay));
                }
            }
            Record::WillSet {
                client,
                username,
                will,
            } => {
                self.connected_wills.insert(client, (username, will));
            }
            Record::WillTaken { client } => {
                self.connected_wills.remove(&client);
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.will = None;
                }
            }
            // `Sent` is read back as `Entry::Sent`; records this store does not know are
            // not written.
            _ => {}
        }
    }

    /// Messages kept.
    pub(crate) fn messages(&self) -> usize {
        self.messages.len()
    }

    /// The state as the core restores it.
    pub(crate) fn restored(&self) -> Restored {
        let msg = |id: &u64| self.messages.get(id).map(|m| m.publish.clone());
        let sessions = self
            .sessions
            .iter()
            .map(|(client, s)| {
                let mut r = RestoredSession::new(client.clone(), s.expiry);
                r.subscriptions = s
                    .subs
                    .iter()
                    .map(|(f, (o, id))| (f.clone(), *o, *id))
                    .collect();
                r.queued = s.pending.iter().filter_map(msg).collect();
                r.inflight = s
                    .inflight
                    .iter()
                    .filter_map(|(&pid, f)| match f {
                        Flight::Publish { id, qos } => msg(id).map(|mut p| {
                            p.qos = *qos;
                            (pid, RestoredInflight::Publish(p))
                        }),
                        Flight::Release => Some((pid, RestoredInflight::Release)),
                    })
                    .collect();
                r.incoming_qos2 = s.incoming.iter().copied().collect();
                r.will = s.will.as_ref().map(|(username, will, delay)| {
                    RestoredWill::new(username.clone(), will.clone(), *delay)
                });
                r
            })
            .collect();
        let retained = self
            .retained
            .iter()
            .filter_map(|k| match k.publish() {
                Ok(p) => Some(p),
                Err(e) => {
                    // Its frame's checksum was right: a message the store wrote but cannot
                    // read is a bug, not damage.
                    tracing::error!(topic = %String::from_utf8_lossy(k.topic()), "retained message unreadable ({})", e.0);
                    None
                }
            })
            .collect();
        let mut restored = Restored::new(sessions, retained);
        restored.wills = self
            .connected_wills
            .iter()
            .map(|(client, (username, will))| {
                let delay = will.properties.will_delay_interval.unwrap_or(0);
                let w = RestoredWill::new(username.clone(), will.clone(), delay);
                (client.clone(), w)
            })
            .collect();
        restored
    }

    /// The retained messages, for a compacted log.
    pub(crate) fn retained(&self) -> impl Iterator<Item = &Kept> {
        self.retained.iter()
    }

    /// Entries that fold into this same state but the retained messages
    /// ([`State::retained`]), for a compacted log.
    pub(crate) fn snapshot(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for (client, (username, will)) in &self.connected_wills {
            out.push(Entry::Core(Record::WillSet {
                client: client.clone(),
                username: username.clone(),
                will: will.clone(),
            }));
        }
        let mut ids: Vec<&u64> = self.messages.keys().collect();
        ids.sort_unstable();
        for id in ids {
            out.push(Entry::Message {
                id: *id,
                publish: self.messages[id].publish.clone(),
            });
        }
        for (client, s) in &self.sessions {
            out.push(Entry::Core(Record::SessionOpened {
                client: client.clone(),
                expiry: s.expiry,
            }));
            for (filter, (options, id)) in &s.subs {
                out.push(Entry::Core(Record::Subscribed {
                    client: client.clone(),
                    filter: filter.clone(),
                    options: *options,
                    id: *id,
                }));
            }
            if let Some((username, will, delay)) = &s.will {
                out.push(Entry::Core(Record::WillPending {
                    client: client.clone(),
                    username: username.clone(),
                    will: will.clone(),
                    delay: *delay,
                }));
            }
            for &packet_id in &s.incoming {
                out.push(Entry::Core(Record::Qos2Received {
                    client: client.clone(),
                    packet_id,
                }));
            }
            for &id in &s.pending {
                out.push(Entry::Pending {
                    client: client.clone(),
                    id,
                });
            }
            for (&packet_id, f) in &s.inflight {
                out.push(match *f {
                    Flight::Publish { id, qos } => Entry::InflightPublish {
                        client: client.clone(),
                        packet_id,
                        id,
                        qos,
                    },
                    Flight::Release => Entry::InflightRelease {
                        client: client.clone(),
                        packet_id,
                    },
                });
            }
        }
        out
    }

    /// Drops messages nobody refers to any more (a snapshot's messages come before the
    /// references to them).
    pub(crate) fn settle(&mut self) {
        self.messages.retain(|_, m| m.refs > 0);
    }
}
