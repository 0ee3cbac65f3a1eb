//! A simulated MQTT client: the state a correct client keeps (its half of the session) and
//! the packets it sends. It never touches the router; the world carries its packets.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use tinsel_codec::{
    ByteStr, Connect, Packet, Properties, PropertyValues, ProtocolVersion, PubResp, Publish, QoS,
    Will,
};

use super::model::MsgId;

/// Where a client's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// No connection (or one the client gave up on).
    Idle,
    /// CONNECT sent, CONNACK not yet read.
    Connecting,
    /// CONNACK read.
    Connected,
}

/// An outgoing QoS 1/2 message the client has not finished.
#[derive(Debug, Clone)]
pub(crate) struct OutMsg {
    pub(crate) id: MsgId,
    pub(crate) publish: Publish,
    /// PUBREC received, PUBREL sent: waiting for PUBCOMP.
    pub(crate) released: bool,
    /// Send order, for resending in the original order.
    pub(crate) order: u64,
}

/// One simulated client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) idx: usize,
    pub(crate) id: String,
    pub(crate) version: ProtocolVersion,
    /// The Receive Maximum it announces (MQTT 3: the broker's own limit applies).
    pub(crate) receive_max: u16,
    pub(crate) conn: Option<u64>,
    pub(crate) link: Link,
    /// Not reading its socket, not sending anything.
    pub(crate) lazy: bool,
    /// Bytes from the broker not yet read, and whether the broker closed after them.
    pub(crate) inbox: BytesMut,
    pub(crate) eof: bool,
    pub(crate) last_sent_ms: u64,
    pub(crate) keep_alive: u16,
    /// Session expiry asked at the last CONNECT (MQTT 3: 0 clean, else never).
    pub(crate) expiry: u32,
    // The client's half of the session.
    pub(crate) out: BTreeMap<u16, OutMsg>,
    /// Incoming QoS 2 packet identifiers between PUBLISH and PUBREL.
    pub(crate) in_qos2: BTreeSet<u16>,
    next_pid: u16,
    next_order: u64,
    pub(crate) seq: u32,
    pub(crate) wills: u32,
    /// Its subscriptions as it believes them (filter -> QoS), and its one shared one.
    pub(crate) subs: BTreeMap<String, QoS>,
    pub(crate) shared: Option<String>,
    /// SUBSCRIBEs waiting for their SUBACK: the QoS asked for each filter.
    pub(crate) sub_pending: BTreeMap<u16, Vec<QoS>>,
}

pub(crate) fn s(x: &str) -> ByteStr {
    ByteStr::try_from(x).expect("valid string")
}

impl Client {
    pub(crate) fn new(idx: usize, version: ProtocolVersion, receive_max: u16) -> Client {
        Client {
            idx,
            id: format!("c{idx}"),
            version,
            receive_max,
            conn: None,
            link: Link::Idle,
            lazy: false,
            inbox: BytesMut::new(),
            eof: false,
            last_sent_ms: 0,
            keep_alive: 0,
            expiry: 0,
            out: BTreeMap::new(),
            in_qos2: BTreeSet::new(),
            next_pid: 1,
            next_order: 0,
            seq: 0,
            wills: 0,
            subs: BTreeMap::new(),
            shared: None,
            sub_pending: BTreeMap::new(),
        }
    }

    pub(crate) fn v5(&self) -> bool {
        self.version.is_v5()
    }

    /// Forgets the client's half of the session (clean start, or the broker had none).
    pub(crate) fn discard_session(&mut self) {
        self.out.clear();
        self.in_qos2.clear();
        self.subs.clear();
        self.shared = None;
        self.sub_pending.clear();
    }

    /// A free packet identifier.
    pub(crate) fn alloc_pid(&mut self) -> u16 {
        loop {
            let pid = self.next_pid;
            self.next_pid = if pid == u16::MAX { 1 } else { pid + 1 };
            if !self.out.contains_key(&pid) && !self.sub_pending.contains_key(&pid) {
                return pid;
            }
        }
    }

    /// The CONNECT for a new connection.
    pub(crate) fn connect(
        &self,
        clean: bool,
        will: Option<(String, u32, QoS, bool, u32)>,
    ) -> Connect {
        let mut properties = Properties::default();
        if self.v5() {
            let p = properties.make_mut();
            p.session_expiry_interval = (self.expiry != 0).then_some(self.expiry);
            p.receive_maximum = (self.receive_max != u16::MAX).then_some(self.receive_max);
        }
        Connect {
            protocol: self.version,
            clean_start: clean,
            keep_alive: self.keep_alive,
            properties,
            client_id: s(&self.id),
            will: will.map(|(topic, n, qos, retain, delay)| Will {
                topic: s(&topic),
                payload: Bytes::from(
                    MsgId::Will {
                        client: self.idx,
                        n,
                    }
                    .payload(),
                ),
                qos,
                retain,
                properties: if self.v5() && delay > 0 {
                    Properties::from(PropertyValues {
                        will_delay_interval: Some(delay),
                        ..PropertyValues::default()
                    })
                } else {
                    Properties::default()
                },
            }),
            username: None,
            password: None,
            bridge: false,
        }
    }

    /// A new PUBLISH of the next sequence number (remembered if QoS > 0).
    pub(crate) fn publish(&mut self, topic: &str, qos: QoS, retain: bool) -> (MsgId, Publish) {
        self.seq += 1;
        let id = MsgId::Pub {
            client: self.idx,
            seq: self.seq,
        };
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            self.alloc_pid()
        };
        let p = Publish {
            dup: false,
            qos,
            retain,
            topic: s(topic),
            packet_id,
            properties: Properties::default(),
            payload: Bytes::from(id.payload()),
        };
        if qos != QoS::AtMostOnce {
            self.next_order += 1;
            self.out.insert(
                packet_id,
                OutMsg {
                    id,
                    publish: p.clone(),
                    released: false,
                    order: self.next_order,
                },
            );
        }
        (id, p)
    }

    /// What to resend after resuming a session, in the original order [MQTT-4.4.0-1].
    pub(crate) fn resends(&self) -> Vec<Packet> {
        let mut v: Vec<&OutMsg> = self.out.values().collect();
        v.sort_by_key(|m| m.order);
        v.into_iter()
            .map(|m| {
                if m.released {
                    Packet::PubRel(PubResp::new(m.publish.packet_id))
                } else {
                    let mut p = m.publish.clone();
                    p.dup = true;
                    Packet::Publish(p)
                }
            })
            .collect()
    }
}
