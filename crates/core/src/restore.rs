//! Recovery: the state a store kept, put back into a router that has just started.
//!
//! The store folds its records (see [`crate::Record`]) into a [`Restored`]: plain data, no
//! connections. [`Router::restore`] puts it back before the first connection arrives:
//! every session is disconnected as of the restart and starts expiring from then, its
//! subscriptions are in the tree again, its queued and in-flight messages wait for the
//! client to resume (in-flight ones are resent with DUP and their packet ids, PUBRELs
//! resent for those past PUBREC), and incoming QoS 2 ids still wait for their PUBREL.
//! Times the store did not keep count from the restart: a message's expiry interval, a
//! session's expiry interval and a pending will's delay start anew.
//!
//! Restoring makes no records: what is restored is on disk already.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tinsel_codec::{Publish, QoS, SubscriptionOptions, Will, topic};

use crate::router::Router;
use crate::session::{Inflight, Queued, Session, SubEntry};

/// What a store kept, as plain data.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Restored {
    /// Persistent sessions.
    pub sessions: Vec<RestoredSession>,
    /// Retained messages (topic in each).
    pub retained: Vec<Publish>,
    /// Wills of clients that were connected when the broker died (killed, power lost):
    /// their connections ended without DISCONNECT. Each delay is the will's own Will Delay
    /// Interval; it is capped by its session's expiry on restore (0 without a session).
    pub wills: Vec<(Arc<str>, RestoredWill)>,
}

/// One persistent session as the store kept it.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RestoredSession {
    /// Its client id.
    pub client: Arc<str>,
    /// Session Expiry Interval in seconds (`u32::MAX`: never; 0 ends it at once).
    pub expiry: u32,
    /// Subscriptions: filter as the client wrote it, options, identifier.
    pub subscriptions: Vec<(Arc<str>, SubscriptionOptions, Option<u32>)>,
    /// Messages not yet sent, oldest first, as published (QoS is capped on restore by the
    /// session's matching subscriptions).
    pub queued: Vec<Publish>,
    /// Outgoing messages in flight, by packet id.
    pub inflight: Vec<(u16, RestoredInflight)>,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub incoming_qos2: Vec<u16>,
    /// Its will, if one was waiting for its delay.
    pub will: Option<RestoredWill>,
}

/// A will that was waiting for its delay when the broker stopped, or whose client was
/// connected when it died.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RestoredWill {
    /// The identity its rights are checked with when it is sent.
    pub username: Option<Arc<str>>,
    /// The will as the client sent it.
    pub will: Box<Will>,
    /// Seconds it waits, counted from the restart.
    pub delay: u32,
}

impl RestoredWill {
    /// A will of `username` that goes out `delay` seconds after the restart.
    pub fn new(username: Option<Arc<str>>, will: Box<Will>, delay: u32) -> RestoredWill {
        RestoredWill {
            username,
            will,
            delay,
        }
    }
}

impl RestoredSession {
    /// An empty session of `client` with `expiry`.
    pub fn new(client: Arc<str>, expiry: u32) -> RestoredSession {
        RestoredSession {
            client,
            expiry,
            ..RestoredSession::default()
        }
    }
}

/// An outgoing QoS 1/2 flow in progress.
#[derive(Debug, Clone, PartialEq)]
pub enum RestoredInflight {
    /// PUBLISH sent, no PUBACK/PUBREC yet: resent with DUP at this QoS.
    Publish(Publish),
    /// PUBREC received, PUBREL sent, no PUBCOMP yet.
    Release,
}

impl Restored {
    /// Builds one from its parts.
    pub fn new(sessions: Vec<RestoredSession>, retained: Vec<Publish>) -> Restored {
        Restored {
            sessions,
            retained,
            wills: Vec::new(),
        }
    }
}

impl Router {
    /// Puts back what a store kept, at start (before any connection). Sessions are
    /// disconnected as of `now`; a session with expiry 0 is not restored.
    pub fn restore(&mut self, now: Instant, state: Restored) {
        let limits = self.settings.limits.clone();
        for p in &state.retained {
            self.retained.store(self.clock, now, p);
        }
        for r in state.sessions {
            if r.expiry == 0 {
                continue;
            }
            let mut session = Session::new(r.expiry, now);
            for (filter, options, id) in &r.subscriptions {
                let entry = SubEntry {
                    options: *options,
                    id: *id,
                };
                session.subscriptions.insert(filter, entry);
                self.subs.insert(filter, &r.client, entry);
            }
            for (pid, flow) in r.inflight {
                let inflight = match flow {
                    RestoredInflight::Publish(mut p) => {
                        p.packet_id = pid;
                        Inflight::Publish {
                            publish: p,
                            received: now,
                        }
                    }
                    RestoredInflight::Release => Inflight::Release,
                };
                if pid != 0 {
                    session.inflight.insert(pid, inflight);
                }
            }
            for mut p in r.queued {
                let Some(qos) = granted(&r.subscriptions, &p) else {
                    continue;
                };
                p.qos = p.qos.min(qos);
                p.dup = false;
                if p.qos == QoS::AtMostOnce {
                    continue;
                }
                let q = Queued {
                    publish: p,
                    received: now,
                };
                session.enqueue(q, limits.max_queued_messages, limits.max_queued_bytes);
            }
            session.incoming_qos2.extend(r.incoming_qos2);
            if let Some(w) = r.will {
                self.restore_will(now, r.client.clone(), w, r.expiry);
            }
            self.sessions
                .insert_disconnected(self.clock, r.client, session, now);
        }
        // The connections of these clients ended with the process: their wills go out as
        // for any connection lost, at the first tick or after their delay.
        for (client, w) in state.wills {
            let expiry = self.sessions.get(&client).map_or(0, |s| s.expiry);
            self.restore_will(now, client, w, expiry);
        }
    }

    /// Schedules a will the store kept: its delay starts anew, capped by its session's
    /// expiry as when it began.
    fn restore_will(&mut self, now: Instant, client: Arc<str>, w: RestoredWill, expiry: u32) {
        let delay = w.delay.min(expiry);
        let due = now + Duration::from_secs(u64::from(delay));
        // The store keeps no listener: per-listener rights are listener 0's.
        let owner = crate::wills::WillOwner {
            username: w.username,
            listener: 0,
        };
        self.wills
            .schedule(self.clock, (client, owner, w.will), due);
    }
}

/// The highest QoS among the subscriptions in `subs` that match `p` (None: none does).
fn granted(subs: &[(Arc<str>, SubscriptionOptions, Option<u32>)], p: &Publish) -> Option<QoS> {
    subs.iter()
        .filter(|(f, _, _)| {
            let f = topic::parse_shared(f).map_or(&**f, |(_, f)| f);
            topic::matches(f, &p.topic)
        })
        .map(|(_, o, _)| o.qos)
        .max()
}
