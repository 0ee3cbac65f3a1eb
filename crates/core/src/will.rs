//! Sending wills: when a connection is gone without a DISCONNECT, its will is published at
//! once or waits (in `wills.rs`) for its delay; it is checked against the publish right
//! when it is sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tinsel_codec::Publish;
use tracing::debug;

use crate::access::Identity;
use crate::durable::Record;
use crate::router::Router;
use crate::wills::OwnedWill;

impl Router {
    /// Publishes `client`'s will now, if the authorizer lets it (checked when it is sent,
    /// with the rights the client has then).
    pub(crate) fn publish_will(&mut self, now: Instant, (client, owner, will): OwnedWill) {
        let who = Identity {
            client_id: &client,
            username: owner.username.as_deref(),
            listener: owner.listener,
        };
        if !self.access.may_will(who, &will.topic) {
            debug!(client = %client, topic = %will.topic, "will not authorized: dropped");
            return;
        }
        let will = *will;
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
        self.route(now, None, p);
    }

    /// What becomes of the will of a connection that is gone: published now, or after its
    /// delay (capped by the session's expiry).
    pub(crate) fn will_after_close(&mut self, now: Instant, will: OwnedWill, expiry: u32) {
        let delay = will
            .2
            .properties
            .will_delay_interval
            .unwrap_or(0)
            .min(expiry);
        if delay == 0 {
            // It leaves the store's wills of connected clients.
            self.durable.record(|| Record::WillTaken {
                client: will.0.clone(),
            });
            self.publish_will(now, will);
        } else {
            self.durable.record(|| Record::WillPending {
                client: will.0.clone(),
                username: will.1.username.clone(),
                will: will.2.clone(),
                delay,
            });
            let due = now + Duration::from_secs(u64::from(delay));
            self.wills.schedule(self.clock, will, due);
        }
    }

    /// Takes `client`'s will that waits for its delay, if any: its session resumes or ends.
    pub(crate) fn take_pending_will(&mut self, client: &Arc<str>) -> Option<OwnedWill> {
        let will = self.wills.take(client)?;
        self.durable.record(|| Record::WillTaken {
            client: client.clone(),
        });
        Some(will)
    }

    /// Publishes the wills whose delay has passed.
    pub(crate) fn publish_due_wills(&mut self, now: Instant) {
        for will in self.wills.due(self.clock, now) {
            self.durable.record(|| Record::WillTaken {
                client: will.0.clone(),
            });
            self.publish_will(now, will);
        }
    }
}
