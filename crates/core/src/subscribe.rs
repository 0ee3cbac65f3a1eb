//! SUBSCRIBE and UNSUBSCRIBE: filter checks, the subscribe right, shared subscriptions,
//! and retained messages sent on subscribe as the Retain Handling option asks.

use std::sync::Arc;
use std::time::Instant;

use tinsel_codec::topic::{parse_shared, valid_topic_filter};
use tinsel_codec::{
    Packet, Properties, Publish, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};

use crate::access::Identity;
use crate::connections::ConnId;
use crate::durable::Record;
use crate::listener::mount_filter;
use crate::router::Router;
use crate::session::SubEntry;

impl Router {
    pub(crate) fn on_subscribe(
        &mut self,
        now: Instant,
        conn: ConnId,
        client: &Arc<str>,
        s: Subscribe,
    ) {
        let mark = self.durable.made();
        let c = self.conns.handling(conn);
        let v5 = c.version.is_v5();
        // As Mosquitto: an MQTT 3 bridge cannot ask for No Local and Retain As Published,
        // and a bridge needs both (no loops; retained messages stay retained downstream).
        let bridge = c.bridge && !v5;
        let username = c.username.clone();
        let (listener, mount) = (c.listener, c.mount.clone());
        let upgrade = self.settings.upgrade_outgoing_qos;
        let sub_id = if v5 {
            s.properties.subscription_identifiers.first().copied()
        } else {
            None
        };
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut to_send: Vec<(Publish, Instant)> = Vec::new();
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
            if v5 && parse_shared(filter).is_some() && opts.no_local {
                // [MQTT-3.8.3-4]
                return self.protocol_error(now, conn, "No Local on a shared subscription");
            }
            let Some(mounted) = mount_filter(mount.as_deref(), filter) else {
                reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            };
            let filter = &*mounted;
            let shared = parse_shared(filter);
            // A shared subscription is checked on its filter, without `$share/{group}/`.
            let checked = shared.map_or(filter.as_str(), |(_, inner)| inner);
            // Well formed but longer or deeper than the broker takes: this filter only.
            if !self.settings.limits.topic_within(filter, checked) {
                reasons.push(if v5 {
                    ReasonCode::TOPIC_FILTER_INVALID
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let who = Identity {
                client_id: client,
                username: username.as_deref(),
                listener,
            };
            if !self.access.may_subscribe(who, checked) {
                reasons.push(if v5 {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let max = self.settings.limits.max_subscriptions;
            if max > 0
                && let Some(session) = self.sessions.get(client)
                && session.subscriptions.len() >= max
                && !session.subscriptions.contains(filter)
            {
                // A new filter beyond the quota; one the session holds is replaced.
                reasons.push(if v5 {
                    ReasonCode::QUOTA_EXCEEDED
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
                    no_local: bridge && shared.is_none(),
                    retain_as_published: bridge,
                    ..SubscriptionOptions::default()
                }
            };
            let entry = SubEntry {
                options,
                id: sub_id,
            };
            let existed = self.subs.insert(filter, client, entry);
            if let Some(session) = self.sessions.get_mut(client) {
                session.subscriptions.insert(filter.as_str(), entry);
                if session.expiry != 0 {
                    self.durable.record(|| Record::Subscribed {
                        client: client.clone(),
                        filter: Arc::from(filter.as_str()),
                        options,
                        id: sub_id,
                    });
                }
            }
            reasons.push(ReasonCode(options.qos.as_u8()));
            let send_retained = shared.is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                self.retained.for_each_match(filter, |topic, m| {
                    let mut p = m.publish(topic);
                    p.qos = if upgrade {
                        options.qos
                    } else {
                        p.qos.min(options.qos)
                    };
                    if let Some(id) = sub_id {
                        p.properties.make_mut().subscription_identifiers = vec![id];
                    }
                    to_send.push((p, m.received));
                });
            }
        }
        let ack = Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Properties::default(),
            reasons,
        });
        self.acknowledge(now, conn, mark, ack);
        // Retained messages follow the SUBACK, with the retain flag set; each is checked
        // against the read right like any delivery (a subscription to `#` does not leak
        // what the subscriber may not read).
        for (p, received) in to_send {
            let who = Identity {
                client_id: client,
                username: username.as_deref(),
                listener,
            };
            if self.access.may_receive(who, &p.topic) {
                self.deliver(now, client, p, received, None);
            }
        }
        // Retained copies are the store's already: no record of them.
        self.durable.accepted_by.clear();
    }

    pub(crate) fn on_unsubscribe(
        &mut self,
        now: Instant,
        conn: ConnId,
        client: &Arc<str>,
        u: Unsubscribe,
    ) {
        let mark = self.durable.made();
        let c = self.conns.handling(conn);
        let (v5, mount) = (c.version.is_v5(), c.mount.clone());
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
            let Some(mounted) = mount_filter(mount.as_deref(), filter) else {
                reasons.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
                continue;
            };
            let filter = &*mounted;
            let existed = self.subs.remove(filter, client);
            if let Some(session) = self.sessions.get_mut(client) {
                session.subscriptions.remove(filter.as_str());
                if existed && session.expiry != 0 {
                    self.durable.record(|| Record::Unsubscribed {
                        client: client.clone(),
                        filter: Arc::from(filter.as_str()),
                    });
                }
            }
            reasons.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        let ack = Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Properties::default(),
            reasons,
        });
        self.acknowledge(now, conn, mark, ack);
    }
}
