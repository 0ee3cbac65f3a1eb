//! Delivery: a routed message to each subscriber, in the form that subscriber gets it.
//!
//! For each target (see [`crate::subscriptions`]) the message is downgraded to the
//! subscription's QoS, checked against the subscriber's read right, and then:
//!
//! - QoS 0 to a connected subscriber: appended to its outbox from one shared encoding per
//!   form (protocol version, QoS, retain), bounded by `max_queued_messages` (dropped
//!   beyond); never queued for an offline one;
//! - QoS 1/2: sent at once with a packet identifier while the subscriber's Receive Maximum
//!   allows (remembered in the session's in-flight window until acknowledged), else
//!   queued in the session (bounded; the newest is dropped when full).
//!
//! Outgoing flows, one entry per packet identifier in the session's window:
//!
//! ```text
//! QoS 1: PUBLISH ->            <- PUBACK                        (entry removed, queue drained)
//! QoS 2: PUBLISH -> (Publish)  <- PUBREC  PUBREL -> (Release)   <- PUBCOMP (entry removed)
//! ```
//!
//! A link (a bridge, later another node) is a connection like any other: it gets its
//! messages through this same path.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinsel_codec::{
    ByteStr, EncodedPublish, Packet, ProtocolVersion, PubResp, Publish, QoS, ReasonCode,
};
use tracing::debug;

use crate::access::Identity;
use crate::backpressure::{STALLED, high_water};
use crate::connections::{Conn, ConnId};
use crate::durable::{Durability, Record};
use crate::message::{for_subscriber, into_subscriber, publish_size};
use crate::packet_log::{summary, summary_publish};
use crate::router::Router;
use crate::session::{Inflight, Queued, Session};
use crate::subscriptions::Target;
use crate::sys::{DropCause, Stats};

/// Shared encodings of one message, by form: MQTT 5 or not, QoS, retain. Most messages
/// go out in one form: it is kept inline (nothing to allocate, little to drop), others in a
/// list.
#[derive(Default)]
pub(crate) struct FormCache {
    first: Option<(usize, EncodedPublish)>,
    more: Vec<(usize, EncodedPublish)>,
}

impl FormCache {
    fn slot(version: ProtocolVersion, qos: QoS, retain: bool) -> usize {
        usize::from(version.is_v5()) * 6 + usize::from(qos.as_u8()) * 2 + usize::from(retain)
    }

    fn find(&self, slot: usize) -> Option<&EncodedPublish> {
        match &self.first {
            Some((s, e)) if *s == slot => Some(e),
            _ => self.more.iter().find(|(s, _)| *s == slot).map(|(_, e)| e),
        }
    }

    /// The encoding of form `slot`, made from `p()` on first use. None if it cannot be
    /// encoded.
    fn get_or_encode(
        &mut self,
        slot: usize,
        p: impl FnOnce() -> Option<EncodedPublish>,
    ) -> Option<&EncodedPublish> {
        if self.find(slot).is_none() {
            let encoded = p()?;
            if self.first.is_none() {
                self.first = Some((slot, encoded));
            } else {
                self.more.push((slot, encoded));
            }
        }
        self.find(slot)
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
        let slot = FormCache::slot(version, qos, retain);
        self.get_or_encode(slot, || {
            let p = for_subscriber(msg, qos, retain, Vec::new());
            EncodedPublish::new(&p, version).ok()
        })
    }
}

impl Router {
    /// May `client` receive a message on `topic`? Asked only when an authorizer is
    /// installed.
    fn may_receive(&self, client: &Arc<str>, topic: &str) -> bool {
        if self.access.authorizer.is_none() {
            return true;
        }
        let Some(session) = self.sessions.get(client) else {
            let who = Identity {
                client_id: client,
                username: None,
                listener: 0,
            };
            return self.access.may_receive(who, topic);
        };
        let who = Identity {
            client_id: client,
            username: session.username.as_deref(),
            listener: session.listener,
        };
        self.access
            .may_receive_again(who, topic, &session.last_read)
    }

    /// Forwards `msg` to every matching subscription. True if anybody subscribes.
    pub(crate) fn route(
        &mut self,
        now: Instant,
        publisher: Option<&Arc<str>>,
        msg: Publish,
    ) -> bool {
        let sessions = &self.sessions;
        let matches = self
            .subs
            .matches(&msg.topic, publisher, |c| sessions.is_online(c));
        let matched = !matches.targets.is_empty() || !matches.shared.is_empty();
        let mut cache = FormCache::default();
        // One subscriber: its copy is encoded straight into its outbox; a shared encoding
        // pays only when several copies are made from it.
        let share = matches.targets.len() + matches.shared.len() > 1;
        let mut targets = matches.targets;
        // The last subscriber takes the message itself when nothing reads it afterwards
        // (no shared subscription, no record of it to make).
        let last = if matches.shared.is_empty() && !self.durable.enabled() {
            targets.pop()
        } else {
            None
        };
        for t in targets.drain(..) {
            self.offer(now, Cow::Borrowed(&msg), t, true, &mut cache, share);
        }
        for t in matches.shared {
            self.offer(now, Cow::Borrowed(&msg), t, false, &mut cache, share);
        }
        self.subs.recycle(targets);
        if !self.durable.accepted_by.is_empty() {
            let sessions = std::mem::take(&mut self.durable.accepted_by);
            self.durable.record(|| Record::Accepted {
                message: msg.clone(),
                sessions,
            });
        }
        if let Some(t) = last {
            self.offer(now, Cow::Owned(msg), t, true, &mut cache, share);
        }
        matched
    }

    /// Gives `msg` to one target (`plain`: not a shared subscription's; `share`: other
    /// targets get it too, so encodings are kept in `cache`).
    fn offer(
        &mut self,
        now: Instant,
        msg: Cow<'_, Publish>,
        t: Target,
        plain: bool,
        cache: &mut FormCache,
        share: bool,
    ) {
        if !self.may_receive(&t.client, &msg.topic) {
            return;
        }
        // Mosquitto's `upgrade_outgoing_qos`: the subscription's QoS, whatever the message's.
        let qos = if self.settings.upgrade_outgoing_qos {
            t.qos
        } else {
            msg.qos.min(t.qos)
        };
        let expires = msg.properties.message_expiry_interval.is_some();
        if plain && qos == QoS::AtMostOnce && t.ids.is_empty() && !expires {
            let retain = t.retain_as_published && msg.retain;
            return self.deliver_qos0(now, &t.client, &msg, retain, cache);
        }
        let p = match msg {
            Cow::Borrowed(m) => for_subscriber(m, qos, t.retain_as_published, t.ids),
            Cow::Owned(m) => into_subscriber(m, qos, t.retain_as_published, t.ids),
        };
        self.deliver(now, &t.client, p, now, share.then_some(cache));
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
        let Some(id) = self.sessions.conn_of(client) else {
            return;
        };
        let Some(c) = self.conns.get(id) else {
            return;
        };
        if (c.version.is_v5() && c.alias_max > 0) || c.mount.is_some() {
            // Topic aliases are chosen per connection, a mount point changes the topic:
            // the general path.
            let p = for_subscriber(msg, QoS::AtMostOnce, retain, Vec::new());
            return self.deliver(now, client, p, now, Some(cache));
        }
        let Some(publish) = cache.get(msg, QoS::AtMostOnce, retain, c.version) else {
            self.sys.stats.drop(DropCause::Other);
            return;
        };
        if publish.len() > c.max_packet as usize {
            // [MQTT-3.1.2-25] Larger than the client accepts.
            self.sys.stats.drop(DropCause::TooLarge);
            return;
        }
        let limits = &self.settings.limits;
        let watch = self.flow.may_hold(client).then(|| high_water(limits));
        let offer = c
            .out
            .offer_qos0(now, publish, limits.max_queued_messages, watch, STALLED);
        if offer.congested {
            self.flow.note(client);
        }
        if !offer.pushed {
            // The connection is not keeping up: QoS 0 is dropped.
            self.sys.stats.drop(DropCause::SlowSubscriber);
            return;
        }
        debug!(
            peer = %c.origin,
            "-> {}",
            summary_publish(&for_subscriber(msg, QoS::AtMostOnce, retain, Vec::new()))
        );
        let stats = &mut self.sys.stats;
        stats.sent(QoS::AtMostOnce, msg.payload.len());
        // Routed and sent in the same call: no time passed.
        stats.delivery_latency.record(Duration::ZERO);
        if offer.was_empty {
            self.woken.push(id);
        }
    }

    /// Sends `p` (QoS already downgraded) to `client` now, or queues it.
    pub(crate) fn deliver(
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
        if p.qos != QoS::AtMostOnce && self.durable.enabled() && session.expiry != 0 {
            self.durable.accepted_by.push(client.clone());
        }
        let conn = session
            .conn
            .and_then(|id| self.conns.get_mut(id).map(|c| (id, c)));
        match conn {
            Some((id, c)) if p.qos == QoS::AtMostOnce => {
                let (waiting, since) = c.out.qos0_backlog(now);
                // A subscriber whose connection keeps taking its packets, but slower than
                // they come: ask the publishers to wait, so that TCP slows them down instead
                // of their messages being dropped. One that took nothing for `STALLED` (its
                // client does not read) only loses messages.
                if waiting + 1 >= high_water(limits)
                    && self.flow.may_hold(client)
                    && now.saturating_duration_since(since) < STALLED
                {
                    self.flow.note(client);
                    c.out.watch();
                }
                if waiting >= limits.max_queued_messages {
                    // The connection is not keeping up: QoS 0 is dropped.
                    self.sys.stats.drop(DropCause::SlowSubscriber);
                    return;
                }
                let stats = &mut self.sys.stats;
                match prepare(c, p, now, received) {
                    Ok(p) => {
                        let waited = now.saturating_duration_since(received);
                        stats.delivery_latency.record(waited);
                        emit(c, id, p, stats, &mut self.woken, cache);
                    }
                    Err(cause) => stats.drop(cause),
                }
            }
            Some((id, c))
                if session.queue.is_empty()
                    && session.inflight.len() < usize::from(c.receive_max) =>
            {
                let stats = &mut self.sys.stats;
                send_inflight(
                    session,
                    c,
                    id,
                    p,
                    now,
                    received,
                    stats,
                    &mut self.durable,
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
                    self.sys.stats.drop(DropCause::QueueFull);
                }
                // A connected subscriber that acknowledges, but slower than messages come:
                // ask the publishers to wait rather than drop later.
                if online
                    && self.flow.may_hold(client)
                    && session.queue.len() >= high_water(limits)
                    && now.saturating_duration_since(session.last_progress) < STALLED
                {
                    self.flow.note(client);
                }
            }
        }
    }

    pub(crate) fn on_puback(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, r: PubResp) {
        self.acknowledged(
            now,
            conn,
            client,
            r.packet_id,
            |i| matches!(i, Inflight::Publish { publish, .. } if publish.qos == QoS::AtLeastOnce),
        );
    }

    /// A PUBACK or a PUBCOMP: the flow of `pid` ends if its in-flight entry is one `ends`
    /// accepts. One lookup of the session per acknowledgement.
    fn acknowledged(
        &mut self,
        now: Instant,
        conn: ConnId,
        client: &Arc<str>,
        pid: u16,
        ends: impl Fn(&Inflight) -> bool,
    ) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.last_progress = now;
        if session.inflight.get(&pid).is_some_and(ends) {
            let c = self.conns.handling(conn);
            let (stats, durable) = (&mut self.sys.stats, &mut self.durable);
            done(
                session,
                c,
                conn,
                client,
                pid,
                now,
                stats,
                durable,
                &mut self.woken,
            );
        }
    }

    pub(crate) fn on_pubrec(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, r: PubResp) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        session.last_progress = now;
        let c = self.conns.handling(conn);
        let rel = Packet::PubRel(PubResp::new(r.packet_id));
        let mark = self.durable.made();
        match session.inflight.get(&r.packet_id) {
            Some(Inflight::Publish { publish, .. })
                if publish.qos == QoS::ExactlyOnce && r.reason.is_success() =>
            {
                session.inflight.insert(r.packet_id, Inflight::Release);
                self.durable.record(|| Record::Delivered {
                    client: client.clone(),
                    packet_id: r.packet_id,
                    released: true,
                });
                release(c, conn, mark, rel, &mut self.durable, &mut self.woken);
            }
            // The client refused it: the flow ends here.
            Some(Inflight::Publish { publish, .. }) if publish.qos == QoS::ExactlyOnce => {
                self.delivery_done(now, conn, client, r.packet_id);
            }
            Some(Inflight::Release) => {
                release(c, conn, mark, rel, &mut self.durable, &mut self.woken);
            }
            _ => {
                let mut rel = PubResp::new(r.packet_id);
                rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                c.push(conn, Packet::PubRel(rel), &mut self.woken);
            }
        }
    }

    pub(crate) fn on_pubcomp(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, r: PubResp) {
        self.acknowledged(now, conn, client, r.packet_id, |i| {
            matches!(i, Inflight::Release)
        });
    }

    /// `client` is done with message `pid` (PUBACK, PUBCOMP, or a refusing PUBREC): it
    /// leaves the in-flight window, the store is told, and queued messages take its place.
    fn delivery_done(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, pid: u16) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let c = self.conns.handling(conn);
        let (stats, durable) = (&mut self.sys.stats, &mut self.durable);
        done(
            session,
            c,
            conn,
            client,
            pid,
            now,
            stats,
            durable,
            &mut self.woken,
        );
    }
}

/// [`Router::delivery_done`] for a session the caller has found already (a PUBACK or a
/// PUBCOMP: one lookup of the session per acknowledgement).
#[allow(clippy::too_many_arguments)]
fn done(
    session: &mut Session,
    c: &mut Conn,
    conn: ConnId,
    client: &Arc<str>,
    pid: u16,
    now: Instant,
    stats: &mut Stats,
    durable: &mut Durability,
    woken: &mut Vec<ConnId>,
) {
    session.inflight.remove(&pid);
    durable.record(|| Record::Delivered {
        client: client.clone(),
        packet_id: pid,
        released: false,
    });
    drain(session, c, conn, now, stats, durable, woken);
}

/// Sends a PUBREL for a PUBREC that made records (see `durable.rs`) once they are synced:
/// a client may hand the message to its application on PUBREL, and a restart before the
/// store knows the PUBREC would send the message again. Held like an acknowledgement, but
/// not counted against `max_inflight`: the subscriber's in-flight window bounds them.
fn release(
    c: &mut Conn,
    conn: ConnId,
    mark: u64,
    rel: Packet,
    durable: &mut Durability,
    woken: &mut Vec<ConnId>,
) {
    if durable.must_hold(mark, c.held) {
        c.held += 1;
        durable.hold(conn, rel);
    } else {
        c.push(conn, rel, woken);
    }
}

/// Readies `p` for `c`: counts message expiry down to what is left [MQTT-3.3.2-6] and
/// applies the client's Maximum Packet Size [MQTT-3.1.2-25]. Err: do not send it, why.
pub(crate) fn prepare(
    c: &Conn,
    mut p: Publish,
    now: Instant,
    received: Instant,
) -> Result<Publish, DropCause> {
    if let Some(e) = p.properties.message_expiry_interval {
        let elapsed = now.saturating_duration_since(received).as_secs();
        if elapsed >= u64::from(e) {
            return Err(DropCause::Expired);
        }
        p.properties.make_mut().message_expiry_interval = Some(e - elapsed as u32);
    }
    if publish_size(&p, c.version) > c.max_packet as usize {
        return Err(DropCause::TooLarge);
    }
    Ok(p)
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
    durable: &mut Durability,
    woken: &mut Vec<ConnId>,
    cache: Option<&mut FormCache>,
) {
    let mut p = match prepare(c, p, now, received) {
        Ok(p) => p,
        Err(cause) => return stats.drop(cause),
    };
    let Some(pid) = session.alloc_pid() else {
        stats.drop(DropCause::Other);
        return;
    };
    stats
        .delivery_latency
        .record(now.saturating_duration_since(received));
    p.packet_id = pid;
    if session.expiry != 0
        && let Some(client) = c.client()
    {
        durable.record(|| Record::Sent {
            client: client.clone(),
            packet_id: pid,
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            qos: p.qos,
        });
    }
    if (c.version.is_v5() && c.alias_max > 0) || c.mount.is_some() {
        // A topic alias or a mount point changes what is sent: the in-flight copy keeps
        // the topic.
        let publish = p.clone();
        session.inflight.insert(
            pid,
            Inflight::Publish {
                publish,
                received: now,
            },
        );
        return emit(c, id, p, stats, woken, cache);
    }
    // Encoded from the message, which then moves into the in-flight window: no copy.
    let publish = send(c, id, p, stats, woken, cache);
    session.inflight.insert(
        pid,
        Inflight::Publish {
            publish,
            received: now,
        },
    );
}

/// Sends queued messages while the client's Receive Maximum allows.
pub(crate) fn drain(
    session: &mut Session,
    c: &mut Conn,
    id: ConnId,
    now: Instant,
    stats: &mut Stats,
    durable: &mut Durability,
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
            session, c, id, q.publish, now, q.received, stats, durable, woken, None,
        );
    }
}

/// Queues a PUBLISH on `c`: without its listener's mount point (a message outside it is
/// dropped), its topic replaced by an alias when the client allows aliases (the first use
/// of a topic sends both and sets the alias). With a `cache`, a PUBLISH without
/// per-subscriber properties reuses the encoding of the same form.
pub(crate) fn emit(
    c: &mut Conn,
    id: ConnId,
    mut p: Publish,
    stats: &mut Stats,
    woken: &mut Vec<ConnId>,
    mut cache: Option<&mut FormCache>,
) {
    if let Some(mount) = &c.mount {
        let Some(topic) = crate::listener::unmount(mount, &p.topic) else {
            debug!(peer = %c.origin, topic = %p.topic, "not under the mount point: dropped");
            stats.drop(DropCause::Other);
            return;
        };
        p.topic = topic;
        // The shared encodings carry the whole topic.
        cache = None;
    }
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
    send(c, id, p, stats, woken, cache);
}

/// Queues `p` on `c` as it is (from the shared encoding of its form when there is a
/// `cache` and `p` has no per-subscriber properties) and gives it back.
fn send(
    c: &mut Conn,
    id: ConnId,
    p: Publish,
    stats: &mut Stats,
    woken: &mut Vec<ConnId>,
    cache: Option<&mut FormCache>,
) -> Publish {
    stats.sent(p.qos, p.payload.len());
    if let Some(cache) = cache
        && !p.dup
        && p.properties.topic_alias.is_none()
        && p.properties.subscription_identifiers.is_empty()
    {
        let slot = FormCache::slot(c.version, p.qos, p.retain);
        let version = c.version;
        if let Some(publish) = cache.get_or_encode(slot, || EncodedPublish::new(&p, version).ok()) {
            debug!(peer = %c.origin, "-> {}", summary_publish(&p));
            if c.out.push_publish(publish, p.packet_id) {
                woken.push(id);
            }
            return p;
        }
    }
    let packet = Packet::Publish(p);
    debug!(peer = %c.origin, "-> {}", summary(&packet));
    if c.out.push_packet(&packet, c.version) {
        woken.push(id);
    }
    let Packet::Publish(p) = packet else {
        unreachable!("built as a PUBLISH above");
    };
    p
}
