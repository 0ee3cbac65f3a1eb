//! Inbound PUBLISH: topic aliases from the client, the publish right, retained messages,
//! and the acknowledgement of each QoS.
//!
//! ```text
//! QoS 0: PUBLISH -> route
//! QoS 1: PUBLISH -> route -> PUBACK
//! QoS 2: PUBLISH -> route -> PUBREC (packet id remembered)   PUBLISH again -> PUBREC only
//!        PUBREL -> PUBCOMP (packet id forgotten)
//! ```
//!
//! QoS 2 is handled with method A of the specification (forward on PUBLISH, remember the
//! packet identifier until PUBREL), so a repeated PUBLISH is never forwarded twice.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tinsel_codec::{ByteStr, Packet, Properties, PubResp, Publish, QoS, ReasonCode};

use crate::access::Identity;
use crate::connections::{ConnId, Origin};
use crate::durable::{Record, Ticket};
use crate::rate::RateVerdict;
use crate::router::Router;
use crate::settings::RateAction;

impl Router {
    pub(crate) fn on_publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        client: &Arc<str>,
        mut p: Publish,
    ) {
        let mark = self.durable.made();
        let max_inflight = self.settings.limits.max_inflight;
        if p.retain && !self.settings.retain_available {
            // As Mosquitto: MQTT 5 is told why (0x9A), older clients are closed.
            let why = "retained PUBLISH, but retained messages are not available";
            let reason = Some(ReasonCode::RETAIN_NOT_SUPPORTED);
            return self.close(now, conn, reason, true, why);
        }
        let listener = self.conns.handling(conn).listener;
        let alias_max = self.alias_max_of(listener);
        let c = self.conns.handling(conn);
        let v5 = c.version.is_v5();
        // The topic as sent (one an alias stands for was checked when the alias was set).
        if !p.topic.is_empty() && !self.settings.limits.topic_within(&p.topic, &p.topic) {
            return self.topic_refused(now, conn, mark, &p);
        }
        // Subscription Identifiers are the server's to send [MQTT-3.3.4-6].
        if !p.properties.subscription_identifiers.is_empty() {
            let why = "Subscription Identifier in a PUBLISH from a client";
            return self.protocol_error(now, conn, why);
        }
        // Topic alias from the client [MQTT-3.3.2-7] .. [MQTT-3.3.2-12].
        if let Some(alias) = p.properties.get_mut().and_then(|v| v.topic_alias.take()) {
            if alias == 0 || alias > alias_max {
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
        if let Some(mount) = &c.mount {
            // After the alias: the alias table holds topics as the client names them.
            match crate::listener::mount(mount, &p.topic) {
                Some(topic) => p.topic = topic,
                None => {
                    let why = "topic too long under the mount point";
                    let reason = Some(ReasonCode::TOPIC_NAME_INVALID);
                    return self.close(now, conn, reason, true, why);
                }
            }
        }
        let limits = &self.settings.limits;
        // Links (bridges) are the operator's own: not rate limited.
        if (limits.max_publish_rate > 0 || limits.max_publish_bytes_rate > 0)
            && matches!(c.origin, Origin::Network(_))
        {
            let throttle = limits.publish_rate_action == RateAction::Throttle;
            let payload = p.payload.len();
            match c.rate.publish(limits, self.clock, now, payload, throttle) {
                RateVerdict::Within => {}
                RateVerdict::Over(until) if throttle => self.throttled = Some(until),
                RateVerdict::Over(_) => {
                    let why = "publishing faster than max_publish_rate or max_publish_bytes_rate";
                    let reason = Some(ReasonCode::MESSAGE_RATE_TOO_HIGH);
                    return self.close(now, conn, reason, true, why);
                }
            }
        }
        p.dup = false;
        let username = c.username.clone();
        let qos = p.qos;
        let pid = p.packet_id;
        self.sys.stats.received(qos, p.payload.len());
        self.sys.topics.count(&p.topic);

        if qos == QoS::ExactlyOnce {
            let Some(session) = self.sessions.get_mut(client) else {
                return;
            };
            if session.incoming_qos2.contains(&pid) {
                // A resend before PUBREL: acknowledge again, do not forward again.
                let ack = Packet::PubRec(PubResp::new(pid));
                return self.acknowledge(now, conn, mark, ack);
            }
            if session.incoming_qos2.len() >= usize::from(max_inflight) {
                let reason = Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
                return self.close(now, conn, reason, true, "receive maximum exceeded");
            }
        }

        if qos != QoS::AtMostOnce && self.durable.refusing {
            // The store cannot keep it (see `Router::store_failing`).
            if !v5 {
                let why = "the store cannot write: QoS 1/2 messages refused";
                return self.close(now, conn, None, true, why);
            }
            let mut ack = PubResp::new(pid);
            ack.reason = ReasonCode::QUOTA_EXCEEDED;
            let ack = match qos {
                QoS::ExactlyOnce => Packet::PubRec(ack),
                _ => Packet::PubAck(ack),
            };
            return self.acknowledge(now, conn, mark, ack);
        }

        // After the alias is resolved: an alias cannot reach a topic the client could not
        // name.
        let who = Identity {
            client_id: client,
            username: username.as_deref(),
            listener,
        };
        let allowed = match self.conns.get(conn) {
            Some(c) => self.access.may_publish_again(who, &p.topic, &c.last_write),
            None => self.access.may_publish(who, &p.topic),
        };
        let mut matched = false;
        if allowed {
            if p.retain {
                self.store_retained(now, &p);
            }
            self.flow.publishing(Some(client.clone()));
            matched = self.route(now, Some(client), p);
            self.flow.publishing(None);
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
            QoS::AtLeastOnce => self.acknowledge(now, conn, mark, Packet::PubAck(ack)),
            QoS::ExactlyOnce => {
                if reason.is_success()
                    && let Some(session) = self.sessions.get_mut(client)
                {
                    session.incoming_qos2.insert(pid);
                    self.durable.record(|| Record::Qos2Received {
                        client: client.clone(),
                        packet_id: pid,
                    });
                }
                self.acknowledge(now, conn, mark, Packet::PubRec(ack));
            }
        }
    }

    /// A PUBLISH whose topic is longer or deeper than `max_topic_length` or
    /// `max_topic_levels`. The topic is well formed, so this is not a protocol error: MQTT 5
    /// has 0x90 Topic Name invalid ("correctly formed, but not accepted by this Server") for
    /// the PUBACK and PUBREC, so a QoS 1/2 publisher is told and stays connected; a QoS 0
    /// one has no acknowledgement to read it in and gets it in the DISCONNECT. MQTT 3 has no
    /// way to say it but closing the connection.
    fn topic_refused(&mut self, now: Instant, conn: ConnId, mark: Ticket, p: &Publish) {
        let v5 = self.conns.handling(conn).version.is_v5();
        let l = &self.settings.limits;
        let why = format!(
            "topic of {} bytes is longer than max_topic_length ({}) or deeper than \
             max_topic_levels ({})",
            p.topic.len(),
            l.max_topic_length,
            l.max_topic_levels
        );
        if v5 && p.qos != QoS::AtMostOnce {
            let mut ack = PubResp::new(p.packet_id);
            // No Reason String: a client may have asked for none [MQTT-3.1.2-29].
            ack.reason = ReasonCode::TOPIC_NAME_INVALID;
            let ack = match p.qos {
                QoS::ExactlyOnce => Packet::PubRec(ack),
                _ => Packet::PubAck(ack),
            };
            return self.acknowledge(now, conn, mark, ack);
        }
        self.close(now, conn, Some(ReasonCode::TOPIC_NAME_INVALID), true, &why);
    }

    pub(crate) fn on_pubrel(&mut self, now: Instant, conn: ConnId, client: &Arc<str>, r: PubResp) {
        let mark = self.durable.made();
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let mut comp = PubResp::new(r.packet_id);
        if session.incoming_qos2.remove(&r.packet_id) {
            self.durable.record(|| Record::Qos2Released {
                client: client.clone(),
                packet_id: r.packet_id,
            });
        } else {
            comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        self.acknowledge(now, conn, mark, Packet::PubComp(comp));
    }
}

impl Router {
    /// Stores, replaces or deletes the retained message of `p.topic`.
    pub(crate) fn store_retained(&mut self, now: Instant, p: &Publish) {
        self.retained.store(self.clock, now, p);
        // `$SYS` is the broker's own and made anew after a restart.
        if !p.topic.starts_with('$') {
            self.durable.record(|| crate::durable::Record::Retained {
                topic: p.topic.clone(),
                message: (!p.payload.is_empty()).then(|| p.clone()),
            });
        }
    }
}
