//! The end of a connection and of a session: DISCONNECT from the client, closing by the
//! broker (with a DISCONNECT reason for MQTT 5 clients), the socket gone, shutdown.
//!
//! Closing a connection detaches it from its session, publishes or schedules its will
//! (unless the client disconnected normally) and ends the session if its expiry interval
//! is 0. The connection itself is forgotten only when the host reports it gone.

use std::sync::Arc;
use std::time::Instant;

use tinsel_codec::{ByteStr, Disconnect, Packet, Properties, ReasonCode};
use tracing::{debug, info};

use crate::connections::{ConnId, ConnState};
use crate::durable::Record;
use crate::packet_log::summary;
use crate::router::Router;
use crate::wills::WillOwner;

/// The line Mosquitto logs when a client's connection ends, for the same cause, so that log
/// watchers written for Mosquitto keep working.
fn mosquitto_line(client: &str, reason: Option<ReasonCode>, why: &str) -> String {
    if why.starts_with("client sent DISCONNECT") {
        return format!("Client {client} disconnected.");
    }
    let Some(reason) = reason else {
        // The host's words for a socket that reached its end (see the broker's connection.rs).
        return if why == "connection closed by the client" {
            format!("Client {client} closed its connection.")
        } else {
            format!("Client {client} disconnected: {why}.")
        };
    };
    let what = if reason == ReasonCode::KEEP_ALIVE_TIMEOUT {
        "has exceeded timeout, disconnecting"
    } else if reason == ReasonCode::PROTOCOL_ERROR {
        "disconnected due to protocol error"
    } else if reason == ReasonCode::MALFORMED_PACKET {
        "disconnected due to malformed packet"
    } else if reason == ReasonCode::PACKET_TOO_LARGE {
        "disconnected due to oversize packet"
    } else if reason == ReasonCode::SESSION_TAKEN_OVER {
        "already connected, closing old connection"
    } else if reason == ReasonCode::ADMINISTRATIVE_ACTION {
        // Mosquitto's words, as its watchers match them.
        "been disconnected by administrative action"
    } else {
        return format!("Client {client} disconnected: {why}.");
    };
    format!("Client {client} {what}.")
}

impl Router {
    /// The socket of `conn` is gone: publishes the will if the client did not disconnect
    /// normally and forgets the connection.
    pub fn connection_lost(&mut self, now: Instant, conn: ConnId, why: &str) {
        if self.conns.get(conn).is_some_and(|c| !c.closing) {
            self.close(now, conn, None, true, why);
        }
        if let Some(c) = self.conns.remove(conn) {
            self.timers.forget(conn, c.timer);
        }
    }

    /// The broker is shutting down: tells every connection (MQTT 5: DISCONNECT 0x8B) and
    /// closes it; connections accepted from now on are closed at once.
    ///
    /// As in Mosquitto, every will is published now: those of the connections it closes
    /// (their clients did not send DISCONNECT) and those still waiting for their delay,
    /// which would otherwise be lost with the process. A will that reaches a persistent
    /// session is queued there and, with a store, recorded like any other message.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        for conn in self.conns.ids() {
            let reason = Some(ReasonCode::SERVER_SHUTTING_DOWN);
            self.close(now, conn, reason, true, "broker shutting down");
        }
        for will in self.wills.take_all() {
            // It leaves the store's pending wills too: a restart must not send it again.
            self.durable.record(|| Record::WillTaken {
                client: will.0.clone(),
            });
            self.publish_will(now, will);
        }
    }

    /// The host closes `conn` for a reason only it can see (a packet that took longer than
    /// `limits.packet_timeout` to arrive): a connected MQTT 5 client is sent DISCONNECT
    /// `reason` first; the will is published as for any connection lost.
    pub fn close_connection(&mut self, now: Instant, conn: ConnId, reason: ReasonCode, why: &str) {
        self.close(now, conn, Some(reason), true, why);
    }

    pub(crate) fn protocol_error(&mut self, now: Instant, conn: ConnId, why: &str) {
        let why = format!("protocol error: {why}");
        self.close(now, conn, Some(ReasonCode::PROTOCOL_ERROR), true, &why);
    }

    /// Closes `conn`: sends DISCONNECT `reason` first (MQTT 5, after CONNECT), detaches its
    /// session, publishes or schedules the will if `will`, and ends a session that expires
    /// with its connection.
    pub(crate) fn close(
        &mut self,
        now: Instant,
        conn: ConnId,
        reason: Option<ReasonCode>,
        will: bool,
        why: &str,
    ) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.closing {
            return;
        }
        c.closing = true;
        self.woken.push(conn);
        if let Some(reason) = reason
            && c.version.is_v5()
            && matches!(c.state, ConnState::Connected(_))
        {
            let mut properties = Properties::default();
            if let Ok(s) = ByteStr::try_from(why) {
                properties.make_mut().reason_string = Some(s);
            }
            let packet = Packet::Disconnect(Disconnect { reason, properties });
            debug!(peer = %c.origin, "-> {}", summary(&packet));
            c.out.push_packet(&packet, c.version);
        }
        // After the last packet: the connection task may take the outbox at any moment.
        c.out.close();
        let Some(client) = c.client().cloned() else {
            debug!(peer = %c.origin, "connection closed before CONNECT: {why}");
            return;
        };
        let will_msg = c.will.take();
        let owner = WillOwner {
            username: c.username.clone(),
            listener: c.listener,
        };
        // Mosquitto's line alone (watchers anchor their patterns at its end); the details
        // at debug level.
        info!("{}", mosquitto_line(&client, reason, why));
        debug!(client = %client, peer = %c.origin, "connection ended: {why}");
        let expiry = self.sessions.detach(self.clock, &client, conn, now);
        match (will_msg, expiry) {
            (Some(w), Some(expiry)) if will => {
                self.will_after_close(now, (client.clone(), owner, w), expiry);
            }
            // Discarded (a normal DISCONNECT): the store forgets it too.
            (Some(_), _) => self.durable.record(|| Record::WillTaken {
                client: client.clone(),
            }),
            (None, _) => {}
        }
        let Some(expiry) = expiry else {
            return;
        };
        if expiry == 0 {
            self.end_session(now, &client);
        }
    }

    /// Removes a session and its subscriptions; publishes its pending will.
    pub(crate) fn end_session(&mut self, now: Instant, client: &Arc<str>) {
        if let Some(session) = self.sessions.remove(self.clock, client) {
            for filter in session.subscriptions.filters() {
                self.subs.remove(filter, client);
            }
            if session.expiry != 0 {
                self.durable.record(|| Record::SessionEnded {
                    client: client.clone(),
                });
            }
            debug!(client = %client, "session ended");
        }
        if let Some(will) = self.take_pending_will(client) {
            self.publish_will(now, will);
        }
    }

    pub(crate) fn on_disconnect(
        &mut self,
        now: Instant,
        conn: ConnId,
        client: &Arc<str>,
        d: Disconnect,
    ) {
        let v5 = self.conns.handling(conn).version.is_v5();
        if v5 && let Some(expiry) = d.properties.session_expiry_interval {
            if let Some(session) = self.sessions.get_mut(client) {
                if session.expiry == 0 && expiry != 0 {
                    // [MQTT-3.14.2-2]
                    let why = "session expiry set at DISCONNECT after 0 at CONNECT";
                    return self.protocol_error(now, conn, why);
                }
                if session.expiry != expiry {
                    session.expiry = expiry;
                    // The store keeps the new interval (0: the session ends with this
                    // connection, and leaves the store with it).
                    self.durable.record(|| Record::SessionOpened {
                        client: client.clone(),
                        expiry,
                    });
                }
            }
        }
        let with_will = v5 && d.reason == ReasonCode::DISCONNECT_WITH_WILL;
        let why = if with_will {
            "client sent DISCONNECT with will"
        } else {
            "client sent DISCONNECT"
        };
        self.close(now, conn, None, with_will, why);
    }
}
