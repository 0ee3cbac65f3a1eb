//! The client side of an MQTT session, without I/O: packet identifiers, the QoS 1 and 2
//! flows of outgoing and incoming publishes, and topic aliases of received messages.
//!
//! Outgoing QoS 1: PUBLISH -> PUBACK. Outgoing QoS 2: PUBLISH -> PUBREC -> PUBREL -> PUBCOMP.
//! Incoming QoS 2 is delivered when the PUBLISH arrives and its identifier is remembered
//! until PUBREL, so a redelivered PUBLISH (DUP) is not delivered twice.

use std::collections::{HashMap, HashSet};

use tinsel_codec::{ByteStr, Packet, PubResp, Publish, QoS, ReasonCode};
use tokio::sync::oneshot;

use crate::Error;

/// Where a waiting caller is told the outcome.
pub(crate) type Waiter<T> = oneshot::Sender<Result<T, Error>>;

/// The state of one outgoing QoS 1 or 2 publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Each variant names the acknowledgement awaited.
pub(crate) enum OutState {
    /// Sent (or queued to send) at QoS 1, awaiting PUBACK.
    Ack,
    /// Sent at QoS 2, awaiting PUBREC.
    Rec,
    /// PUBREL sent, awaiting PUBCOMP.
    Comp,
}

#[derive(Debug)]
struct Outgoing {
    seq: u64,
    publish: Publish,
    state: OutState,
    waiter: Option<Waiter<()>>,
}

/// A publish that could not be registered, with its waiter handed back.
pub(crate) type Refused = (Error, Option<Waiter<()>>);

/// What to do with a received PUBLISH.
#[derive(Debug, PartialEq)]
pub(crate) struct Incoming {
    /// Hand this to the application (with the alias resolved), unless it is a duplicate.
    pub(crate) deliver: Option<Publish>,
    /// Send this back (PUBACK or PUBREC), if anything.
    pub(crate) reply: Option<Packet>,
}

/// The session state that survives reconnections (when the broker keeps the session) and
/// the per-connection topic aliases.
#[derive(Debug, Default)]
pub(crate) struct Session {
    last_id: u16,
    seq: u64,
    /// Outgoing QoS 1/2 publishes: bounded by the client's in-flight window (the connection
    /// task stops taking publishes while it is full).
    outgoing: HashMap<u16, Outgoing>,
    /// Identifiers used by SUBSCRIBE/UNSUBSCRIBE awaiting their acknowledgement.
    other_ids: HashSet<u16>,
    /// Incoming QoS 2 messages awaiting PUBREL, by identifier: bounded by the 65,535
    /// identifiers, each message by the maximum packet size.
    incoming_qos2: HashMap<u16, Publish>,
    /// Topic aliases from the broker: bounded by `alias_max` (an alias above it is refused).
    aliases: HashMap<u16, ByteStr>,
    /// The broker's Topic Alias Maximum for aliases it may send us (ours, from CONNECT).
    alias_max: u16,
}

impl Session {
    /// A fresh session accepting up to `alias_max` topic aliases from the broker.
    pub(crate) fn new(alias_max: u16) -> Session {
        Session {
            alias_max,
            ..Session::default()
        }
    }

    /// Number of outgoing QoS 1/2 publishes not yet complete.
    pub(crate) fn inflight(&self) -> usize {
        self.outgoing.len()
    }

    /// Allocates a free packet identifier (never 0), or `None` if all 65,535 are in use.
    pub(crate) fn next_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.last_id = self.last_id.wrapping_add(1);
            if self.last_id == 0 {
                self.last_id = 1;
            }
            let id = self.last_id;
            if !self.outgoing.contains_key(&id) && !self.other_ids.contains(&id) {
                return Some(id);
            }
        }
        None
    }

    /// Reserves an identifier for a SUBSCRIBE or UNSUBSCRIBE.
    pub(crate) fn reserve_id(&mut self) -> Option<u16> {
        let id = self.next_id()?;
        self.other_ids.insert(id);
        Some(id)
    }

    /// Frees an identifier reserved with [`reserve_id`](Self::reserve_id).
    pub(crate) fn release_id(&mut self, id: u16) {
        self.other_ids.remove(&id);
    }

    /// Registers an outgoing publish. For QoS 0 nothing is stored and the waiter is handed
    /// back to be told once the packet is written. For QoS 1 and 2 an identifier is
    /// assigned and the waiter is kept until the flow completes.
    pub(crate) fn send_publish(
        &mut self,
        mut publish: Publish,
        waiter: Option<Waiter<()>>,
    ) -> Result<(Publish, Option<Waiter<()>>), Refused> {
        if publish.qos == QoS::AtMostOnce {
            publish.packet_id = 0;
            return Ok((publish, waiter));
        }
        let Some(id) = self.next_id() else {
            return Err((
                Error::Protocol("all 65,535 packet identifiers are in use".into()),
                waiter,
            ));
        };
        publish.packet_id = id;
        publish.dup = false;
        let state = if publish.qos == QoS::AtLeastOnce {
            OutState::Ack
        } else {
            OutState::Rec
        };
        self.seq += 1;
        self.outgoing.insert(
            id,
            Outgoing {
                seq: self.seq,
                publish: publish.clone(),
                state,
                waiter,
            },
        );
        Ok((publish, None))
    }

    /// PUBACK: completes a QoS 1 publish. Unknown identifiers are ignored (a late duplicate).
    pub(crate) fn on_puback(&mut self, ack: &PubResp) {
        if self
            .outgoing
            .get(&ack.packet_id)
            .is_some_and(|o| o.state == OutState::Ack)
        {
            if let Some(o) = self.outgoing.remove(&ack.packet_id) {
                finish(o.waiter, ack);
            }
        }
    }

    /// PUBREC: moves a QoS 2 publish on to PUBREL, or ends it if the broker refused it.
    /// Returns the PUBREL to send, if any.
    pub(crate) fn on_pubrec(&mut self, rec: &PubResp) -> Option<Packet> {
        match self.outgoing.get_mut(&rec.packet_id) {
            Some(o) if o.state == OutState::Rec || o.state == OutState::Comp => {
                if rec.reason.0 >= 0x80 {
                    let o = self.outgoing.remove(&rec.packet_id)?;
                    finish(o.waiter, rec);
                    return None;
                }
                o.state = OutState::Comp;
                Some(Packet::PubRel(PubResp::new(rec.packet_id)))
            }
            // A PUBREC for an identifier we do not know: answer so the broker can free it.
            _ => Some(Packet::PubRel(PubResp {
                packet_id: rec.packet_id,
                reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                properties: Default::default(),
            })),
        }
    }

    /// PUBCOMP: completes a QoS 2 publish.
    pub(crate) fn on_pubcomp(&mut self, comp: &PubResp) {
        if self
            .outgoing
            .get(&comp.packet_id)
            .is_some_and(|o| o.state == OutState::Comp)
        {
            if let Some(Outgoing {
                waiter: Some(w), ..
            }) = self.outgoing.remove(&comp.packet_id)
            {
                let _ = w.send(Ok(()));
            }
        }
    }

    /// A PUBLISH from the broker: resolves its topic alias (MQTT 5), decides whether to
    /// deliver it and what to answer.
    pub(crate) fn on_publish(&mut self, mut p: Publish) -> Result<Incoming, Error> {
        if let Some(alias) = p.properties.topic_alias {
            if alias == 0 || alias > self.alias_max {
                return Err(Error::Protocol(format!("topic alias {alias} out of range")));
            }
            if p.topic.is_empty() {
                match self.aliases.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        return Err(Error::Protocol(format!("unknown topic alias {alias}")));
                    }
                }
            } else {
                self.aliases.insert(alias, p.topic.clone());
            }
        } else if p.topic.is_empty() {
            return Err(Error::Protocol("PUBLISH without topic or alias".into()));
        }
        match p.qos {
            QoS::AtMostOnce => Ok(Incoming {
                deliver: Some(p),
                reply: None,
            }),
            QoS::AtLeastOnce => {
                let reply = Packet::PubAck(PubResp::new(p.packet_id));
                Ok(Incoming {
                    deliver: Some(p),
                    reply: Some(reply),
                })
            }
            QoS::ExactlyOnce => {
                // Held until its PUBREL, as libmosquitto does: a QoS 0 message that overtakes
                // the release is handed over first, so `tinsel sub` prints what
                // `mosquitto_sub` prints, in its order. A resend (DUP) replaces nothing.
                let reply = Packet::PubRec(PubResp::new(p.packet_id));
                self.incoming_qos2.entry(p.packet_id).or_insert(p);
                Ok(Incoming {
                    deliver: None,
                    reply: Some(reply),
                })
            }
        }
    }

    /// PUBREL: the broker releases an incoming QoS 2 message: the PUBCOMP to answer, and
    /// the message to deliver now (None if the packet id is unknown: released before).
    pub(crate) fn on_pubrel(&mut self, rel: &PubResp) -> (Packet, Option<Publish>) {
        let held = self.incoming_qos2.remove(&rel.packet_id);
        let comp = Packet::PubComp(PubResp {
            packet_id: rel.packet_id,
            reason: if held.is_some() {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
            },
            properties: Default::default(),
        });
        (comp, held)
    }

    /// A new connection was accepted. Topic aliases never outlive a connection; without a
    /// session on the broker the incoming QoS 2 state is gone too. Returns what to
    /// (re)send, in the original order: unacknowledged publishes with DUP set (MQTT 3
    /// requires it only for resends; a publish never sent goes out the same way, which is
    /// harmless), and PUBREL for those past PUBREC.
    pub(crate) fn on_connected(&mut self, session_present: bool) -> Vec<Packet> {
        self.aliases.clear();
        self.other_ids.clear();
        if !session_present {
            self.incoming_qos2.clear();
        }
        let mut out: Vec<&Outgoing> = self.outgoing.values().collect();
        out.sort_by_key(|o| o.seq);
        out.into_iter()
            .map(|o| match o.state {
                OutState::Comp => Packet::PubRel(PubResp::new(o.publish.packet_id)),
                _ => {
                    let mut p = o.publish.clone();
                    p.dup = true;
                    Packet::Publish(p)
                }
            })
            .collect()
    }

    /// Forgets an outgoing publish that could not be sent, telling its waiter `err`.
    pub(crate) fn abandon(&mut self, packet_id: u16, err: Error) {
        if let Some(Outgoing {
            waiter: Some(w), ..
        }) = self.outgoing.remove(&packet_id)
        {
            let _ = w.send(Err(err));
        }
    }

    /// The client is closing for good: every waiting publish fails with `err()`.
    pub(crate) fn fail_all(&mut self, err: impl Fn() -> Error) {
        for (_, o) in self.outgoing.drain() {
            if let Some(w) = o.waiter {
                let _ = w.send(Err(err()));
            }
        }
    }
}

fn finish(waiter: Option<Waiter<()>>, ack: &PubResp) {
    let Some(w) = waiter else { return };
    let result = if ack.reason.0 >= 0x80 {
        Err(Error::PublishRefused {
            packet_id: ack.packet_id,
            reason: ack.reason,
            reason_string: ack.properties.reason_string.as_ref().map(|s| s.to_string()),
        })
    } else {
        Ok(())
    };
    let _ = w.send(result);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tinsel_codec::Properties;

    use super::*;

    fn publish(topic: &str, qos: QoS) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: ByteStr::try_from(topic).unwrap(),
            packet_id: 0,
            properties: Properties::default(),
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn qos1_flow_resolves_waiter() {
        let mut s = Session::new(0);
        let (tx, mut rx) = oneshot::channel();
        let (p, w) = s
            .send_publish(publish("a", QoS::AtLeastOnce), Some(tx))
            .unwrap();
        assert!(w.is_none());
        assert_eq!(p.packet_id, 1);
        assert_eq!(s.inflight(), 1);
        assert!(rx.try_recv().is_err());
        s.on_puback(&PubResp::new(1));
        assert_eq!(s.inflight(), 0);
        assert!(rx.try_recv().unwrap().is_ok());
    }

    #[test]
    fn qos2_flow() {
        let mut s = Session::new(0);
        let (tx, mut rx) = oneshot::channel();
        let (p, _) = s
            .send_publish(publish("a", QoS::ExactlyOnce), Some(tx))
            .unwrap();
        // PUBCOMP before PUBREC is ignored.
        s.on_pubcomp(&PubResp::new(p.packet_id));
        assert_eq!(s.inflight(), 1);
        let rel = s.on_pubrec(&PubResp::new(p.packet_id)).unwrap();
        assert_eq!(rel, Packet::PubRel(PubResp::new(p.packet_id)));
        // A duplicate PUBREC gets another PUBREL.
        assert!(s.on_pubrec(&PubResp::new(p.packet_id)).is_some());
        s.on_pubcomp(&PubResp::new(p.packet_id));
        assert_eq!(s.inflight(), 0);
        assert!(rx.try_recv().unwrap().is_ok());
    }

    #[test]
    fn refused_publish_fails_waiter() {
        let mut s = Session::new(0);
        let (tx, mut rx) = oneshot::channel();
        let (p, _) = s
            .send_publish(publish("a", QoS::ExactlyOnce), Some(tx))
            .unwrap();
        let rec = PubResp {
            packet_id: p.packet_id,
            reason: ReasonCode::NOT_AUTHORIZED,
            properties: Properties::default(),
        };
        assert!(s.on_pubrec(&rec).is_none());
        assert_eq!(s.inflight(), 0);
        let err = rx.try_recv().unwrap().unwrap_err();
        assert_eq!(err.reason_code(), Some(ReasonCode::NOT_AUTHORIZED));
    }

    #[test]
    fn ids_wrap_past_65535_and_skip_ids_in_use() {
        let mut s = Session::new(0);
        let (held, _) = s
            .send_publish(publish("a", QoS::AtLeastOnce), None)
            .unwrap();
        assert_eq!(held.packet_id, 1);
        for _ in 0..70_000u32 {
            let (p, _) = s
                .send_publish(publish("a", QoS::AtLeastOnce), None)
                .unwrap();
            assert_ne!(p.packet_id, 0);
            assert_ne!(p.packet_id, 1, "id 1 is still in flight");
            s.on_puback(&PubResp::new(p.packet_id));
        }
        assert_eq!(s.inflight(), 1);
    }

    #[test]
    fn ids_exhausted() {
        let mut s = Session::new(0);
        for _ in 0..65_535u32 {
            s.send_publish(publish("a", QoS::AtLeastOnce), None)
                .unwrap();
        }
        assert!(
            s.send_publish(publish("a", QoS::AtLeastOnce), None)
                .is_err()
        );
        assert!(s.reserve_id().is_none());
    }

    #[test]
    fn incoming_qos2_delivered_once() {
        let mut s = Session::new(0);
        let mut p = publish("t", QoS::ExactlyOnce);
        p.packet_id = 7;
        let first = s.on_publish(p.clone()).unwrap();
        assert!(first.deliver.is_none(), "held until PUBREL");
        assert_eq!(first.reply, Some(Packet::PubRec(PubResp::new(7))));
        p.dup = true;
        let again = s.on_publish(p.clone()).unwrap();
        assert!(again.deliver.is_none(), "duplicate must not be delivered");
        assert_eq!(again.reply, Some(Packet::PubRec(PubResp::new(7))));
        let (comp, msg) = s.on_pubrel(&PubResp::new(7));
        assert_eq!(comp, Packet::PubComp(PubResp::new(7)));
        assert_eq!(msg.map(|m| m.topic), Some(p.topic.clone()));
        // A second PUBREL delivers nothing.
        let (comp, msg) = s.on_pubrel(&PubResp::new(7));
        assert!(msg.is_none());
        assert!(matches!(comp, Packet::PubComp(c) if c.reason != ReasonCode::SUCCESS));
        // After PUBREL the identifier may be reused for a new message.
        s.on_publish(p).unwrap();
        assert!(s.on_pubrel(&PubResp::new(7)).1.is_some());
    }

    #[test]
    fn topic_aliases_resolve_and_reset() {
        let mut s = Session::new(10);
        let mut p = publish("long/topic", QoS::AtMostOnce);
        p.properties.make_mut().topic_alias = Some(3);
        assert_eq!(
            s.on_publish(p.clone()).unwrap().deliver.unwrap().topic,
            "long/topic"
        );
        p.topic = ByteStr::new();
        assert_eq!(
            s.on_publish(p.clone()).unwrap().deliver.unwrap().topic,
            "long/topic"
        );
        p.properties.make_mut().topic_alias = Some(11);
        assert!(s.on_publish(p.clone()).is_err(), "alias above the maximum");
        s.on_connected(true);
        p.properties.make_mut().topic_alias = Some(3);
        assert!(
            s.on_publish(p).is_err(),
            "aliases do not survive a reconnection"
        );
    }

    #[test]
    fn resend_in_order_with_dup_and_pubrel() {
        let mut s = Session::new(0);
        let (a, _) = s
            .send_publish(publish("a", QoS::ExactlyOnce), None)
            .unwrap();
        let (b, _) = s
            .send_publish(publish("b", QoS::AtLeastOnce), None)
            .unwrap();
        s.on_pubrec(&PubResp::new(a.packet_id));
        let out = s.on_connected(true);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Packet::PubRel(PubResp::new(a.packet_id)));
        match &out[1] {
            Packet::Publish(p) => {
                assert!(p.dup);
                assert_eq!(p.packet_id, b.packet_id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fail_all_tells_waiters() {
        let mut s = Session::new(0);
        let (tx, mut rx) = oneshot::channel();
        s.send_publish(publish("a", QoS::AtLeastOnce), Some(tx))
            .unwrap();
        s.fail_all(|| Error::Closed);
        assert!(matches!(rx.try_recv().unwrap(), Err(Error::Closed)));
    }
}
