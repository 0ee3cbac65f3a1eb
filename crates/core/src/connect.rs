//! CONNECT and CONNACK: the client identifier, authentication, keep alive, session
//! takeover and resumption [MQTT-3.1.4].
//!
//! ```text
//! CONNECT -> id settled -> authenticated -------------------------------> session attached, CONNACK
//!                          (or deferred: Authenticating, packets wait) -/
//!                       \-> refused: CONNACK with the reason, close
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use tinsel_codec::{
    ByteStr, ConnAck, Connect, Packet, Properties, ProtocolVersion, PubResp, ReasonCode,
};
use tracing::info;

use crate::access::{AuthDecision, ConnectInfo};
use crate::connections::{Authenticating, ConnId, ConnState, MAX_EARLY, Origin};
use crate::deliver::{drain, emit, prepare};
use crate::durable::Record;
use crate::router::{Router, refusal};
use crate::session::{Inflight, NEVER_EXPIRES};
use crate::timers::keep_alive_limit;
use crate::wills::detach_will;

impl Router {
    fn refuse(&mut self, now: Instant, conn: ConnId, reason: ReasonCode, why: &str) {
        self.sys.refused(reason);
        let c = self.conns.handling(conn);
        let ack = refusal(reason, c.version.is_v5().then_some(why));
        c.push(conn, ack, &mut self.woken);
        info!(peer = %c.origin, "CONNECT refused ({reason}): {why}");
        self.close(now, conn, None, false, why);
    }

    pub(crate) fn on_connect(&mut self, now: Instant, conn: ConnId, mut connect: Connect) {
        let v5 = connect.protocol.is_v5();
        let c = self.conns.handling(conn);
        c.version = connect.protocol;
        c.bridge = connect.bridge;
        let listener = self.settings.listener(c.listener);
        if !listener.protocols.allows(connect.protocol) {
            let why = format!("MQTT {} is not accepted on this listener", connect.protocol);
            return self.refuse(now, conn, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, &why);
        }
        if !self.settings.retain_available && connect.will.as_ref().is_some_and(|w| w.retain) {
            // As Mosquitto: MQTT 5 is told why, older clients are closed without a CONNACK.
            let why = "retained will, but retained messages are not available";
            if v5 {
                return self.refuse(now, conn, ReasonCode::RETAIN_NOT_SUPPORTED, why);
            }
            info!(peer = %c.origin, "CONNECT refused: {why}");
            return self.close(now, conn, None, false, why);
        }
        if let (Some(mount), Some(will)) = (c.mount.clone(), &mut connect.will) {
            match crate::listener::mount(&mount, &will.topic) {
                Some(topic) => will.topic = topic,
                None => {
                    let why = "will topic too long under the mount point";
                    return self.refuse(now, conn, ReasonCode::TOPIC_NAME_INVALID, why);
                }
            }
        }
        let username_from_certificate = c.tls.as_ref().is_some_and(|t| t.as_username);
        let tls_identity = c.tls.as_ref().map(|t| {
            if t.as_username {
                // The certificate says who the client is (see `identity.rs`).
                connect.username = ByteStr::try_from(&*t.name).ok();
                connect.password = None;
            }
            t.name.clone()
        });

        if v5 && let Some(method) = &connect.properties.authentication_method {
            let supported = self
                .access
                .authenticator
                .as_ref()
                .is_some_and(|a| a.supports_auth_method(method));
            if !supported {
                let why = format!("unsupported authentication method {method:?}");
                return self.refuse(now, conn, ReasonCode::BAD_AUTHENTICATION_METHOD, &why);
            }
        }

        // "It is a Protocol Error to include Authentication Data if there is no
        // Authentication Method" (MQTT 5 section 3.1.2.11.10).
        if v5
            && connect.properties.authentication_data.is_some()
            && connect.properties.authentication_method.is_none()
        {
            let why = "Authentication Data without an Authentication Method";
            return self.refuse(now, conn, ReasonCode::PROTOCOL_ERROR, why);
        }
        // A will topic the broker would refuse in a PUBLISH (MQTT 5: CONNACK 0x90, "the
        // Will Topic Name is not malformed, but is not accepted by this Server").
        if let Some(w) = &connect.will
            && !self.settings.limits.topic_within(&w.topic, &w.topic)
        {
            let why = "will topic longer than max_topic_length or deeper than max_topic_levels";
            return self.refuse(now, conn, ReasonCode::TOPIC_NAME_INVALID, why);
        }

        let assigned = connect.client_id.is_empty();
        let client: Arc<str> = if assigned {
            // [MQTT-3.1.3-8] 3.1.1 allows an empty id only with clean session; 3.1 never.
            let allowed = v5 || (connect.protocol == ProtocolVersion::V311 && connect.clean_start);
            if !allowed {
                let why = "empty client id without clean session";
                return self.refuse(now, conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, why);
            }
            if listener.refuse_empty_client_id {
                let why = "empty client id, and this listener assigns none";
                return self.refuse(now, conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, why);
            }
            Arc::from(self.ids.next())
        } else {
            Arc::from(connect.client_id.as_str())
        };
        let prefixes = &self.settings.clientid_prefixes;
        if !prefixes.is_empty() && !prefixes.iter().any(|p| client.starts_with(p.as_str())) {
            // Mosquitto's answer: not authorized (not "identifier rejected").
            let why = "client id without an allowed prefix";
            return self.refuse(now, conn, ReasonCode::NOT_AUTHORIZED, why);
        }

        let Some(authenticator) = self.access.authenticator.clone() else {
            let identity = connect.username.as_ref().map(|u| Arc::from(u.as_str()));
            return self.admit(now, conn, connect, client, assigned, identity);
        };
        let c = self.conns.handling(conn);
        let info = ConnectInfo {
            client_id: client.clone(),
            username: connect.username.clone(),
            password: connect.password.clone(),
            protocol: connect.protocol,
            peer: match &c.origin {
                Origin::Network(a) => Some(*a),
                Origin::Link(_) => None,
            },
            tls_identity,
            listener: c.listener,
            username_from_certificate,
        };
        match authenticator.authenticate(&info) {
            AuthDecision::Allow(identity) => {
                self.admit(now, conn, connect, client, assigned, identity);
            }
            AuthDecision::Deny(reason) => {
                self.refuse(now, conn, reason, "refused by the authenticator");
            }
            AuthDecision::Defer => {
                c.state = ConnState::Authenticating(Box::new(Authenticating {
                    connect,
                    client,
                    assigned,
                    early: Vec::new(),
                }));
                self.to_authenticate.push((conn, info));
            }
        }
    }

    /// A packet that came while the CONNECT is being authenticated: kept for later.
    pub(crate) fn early_packet(&mut self, now: Instant, conn: ConnId, packet: Packet) {
        let c = self.conns.handling(conn);
        if let ConnState::Authenticating(a) = &mut c.state {
            if a.early.len() >= MAX_EARLY {
                let why = "too many packets before CONNACK";
                return self.close(now, conn, None, false, why);
            }
            a.early.push(packet);
        }
    }

    /// The host's answer for a CONNECT it was asked to authenticate
    /// ([`crate::Work::authenticate`]). Does nothing if the connection is gone.
    pub fn authenticated(&mut self, now: Instant, conn: ConnId, decision: AuthDecision) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.closing || !matches!(c.state, ConnState::Authenticating(_)) {
            return;
        }
        let ConnState::Authenticating(a) =
            std::mem::replace(&mut c.state, ConnState::AwaitingConnect)
        else {
            return;
        };
        let a = *a;
        match decision {
            AuthDecision::Allow(identity) => {
                self.admit(now, conn, a.connect, a.client, a.assigned, identity);
                for packet in a.early {
                    self.handle(now, conn, packet);
                }
            }
            AuthDecision::Deny(reason) => {
                self.refuse(now, conn, reason, "refused by the authenticator");
            }
            AuthDecision::Defer => {
                let why = "the authenticator deferred twice";
                self.refuse(now, conn, ReasonCode::UNSPECIFIED_ERROR, why);
            }
        }
    }

    /// The CONNECT is authenticated: keep alive, takeover, session, CONNACK.
    fn admit(
        &mut self,
        now: Instant,
        conn: ConnId,
        connect: Connect,
        client: Arc<str>,
        assigned: bool,
        identity: Option<Arc<str>>,
    ) {
        let limits = self.settings.limits.clone();
        let v5 = connect.protocol.is_v5();
        let mark = self.durable.made();
        // Keep alive above the broker's maximum (as Mosquitto's max_keepalive): MQTT 5 clients
        // are told the value to use (also when they asked for none); MQTT 3 clients cannot be
        // told, so they are refused.
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        let max = limits.max_keep_alive;
        if max > 0 && max < u16::MAX {
            if v5 && (keep_alive > max || keep_alive == 0) {
                keep_alive = max;
                server_keep_alive = Some(max);
            } else if !v5 && keep_alive > max {
                let why = format!("keep alive {keep_alive} s is above the maximum of {max} s");
                return self.refuse(now, conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, &why);
            }
        }

        let expiry = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            NEVER_EXPIRES
        };

        // A new client id (the usual case) has nothing to take over, end or resume: one
        // lookup here and the attachment below.
        let mut session_present = false;
        if let Some(old_conn) = self.sessions.get(&client).map(|s| s.conn) {
            // Session takeover [MQTT-3.1.4-3].
            if let Some(old) = old_conn {
                let why = "session taken over by a new connection";
                self.close(now, old, Some(ReasonCode::SESSION_TAKEN_OVER), true, why);
            }
            if connect.clean_start {
                self.end_session(now, &client);
            }
            session_present = self.sessions.contains(&client);
        }
        // A will waiting for its delay: the session continues (drop it) or ends (publish it).
        if let Some(pending) = self.take_pending_will(&client)
            && connect.clean_start
        {
            self.publish_will(now, pending);
        }
        let listener = self.conns.handling(conn).listener;
        let alias_max = self.alias_max_of(listener);
        let session = self.sessions.attach(self.clock, &client, conn, expiry, now);
        session.username = identity.clone();
        session.listener = listener;
        session.last_read.clear();
        // The will of a client connected: a crash ends its connection without DISCONNECT,
        // so a restart sends it. The CONNACK of a new session waits for it with the rest;
        // that of a resumed one does not (see below).
        let will = connect.will.map(|w| Box::new(detach_will(w)));
        if let Some(w) = &will {
            self.durable.record(|| Record::WillSet {
                client: client.clone(),
                username: identity.clone(),
                will: w.clone(),
            });
        }
        // A new persistent session is on disk before its CONNACK. A resumed one is there
        // already: its CONNACK is not held (what it resends must follow the CONNACK), and
        // the record of its new expiry interval follows.
        let record = expiry != 0 || session_present;
        let mark = if session_present {
            self.durable.made()
        } else {
            if record {
                self.durable.record(|| Record::SessionOpened {
                    client: client.clone(),
                    expiry,
                });
            }
            mark
        };

        let c = self.conns.connected(conn, client.clone());
        c.keep_alive = keep_alive;
        c.will = will;
        c.username = identity;
        if v5 {
            let p = &connect.properties;
            c.receive_max = p.receive_maximum.unwrap_or(u16::MAX).max(1);
            c.max_packet = p.maximum_packet_size.unwrap_or(u32::MAX).max(1);
            c.alias_max = p.topic_alias_maximum.unwrap_or(0);
        } else {
            // MQTT 3 has no Receive Maximum: the broker's own limit bounds what is in flight.
            c.receive_max = limits.max_inflight;
        }
        let mut properties = Properties::default();
        if v5 {
            let properties = properties.make_mut();
            properties.receive_maximum = Some(limits.max_inflight);
            properties.maximum_packet_size = Some(limits.max_packet_size);
            if alias_max > 0 {
                properties.topic_alias_maximum = Some(alias_max);
            }
            if !self.settings.retain_available {
                properties.retain_available = Some(0);
            }
            properties.server_keep_alive = server_keep_alive;
            if assigned {
                properties.assigned_client_identifier = ByteStr::try_from(&*client).ok();
            }
        }
        // Mosquitto's line, which log watchers already parse: p = Mosquitto's number for
        // the protocol (1: MQTT 3.1, 2: 3.1.1, 5: 5.0; not the protocol level), c = clean
        // start, k = keep alive, u = user name.
        let user = match &connect.username {
            Some(u) => format!(", u'{u}'"),
            None => String::new(),
        };
        let p = match connect.protocol {
            ProtocolVersion::V31 => 1,
            ProtocolVersion::V311 => 2,
            ProtocolVersion::V5 => 5,
        };
        info!(
            "New client connected from {} as {client} (p{p}, c{}, k{keep_alive}{user}).",
            c.origin,
            u8::from(connect.clean_start),
        );
        let ack = Packet::ConnAck(ConnAck {
            session_present,
            reason: ReasonCode::SUCCESS,
            properties,
        });
        self.acknowledge(now, conn, mark, ack);
        if record && session_present {
            self.durable.record(|| Record::SessionOpened {
                client: client.clone(),
                expiry,
            });
        }
        let limit = keep_alive_limit(keep_alive);
        if keep_alive > 0 && limit < Duration::from_secs(limits.connect_timeout) {
            // Due before its CONNECT-timeout entry comes up (that one looks at it then).
            self.set_conn_timer(conn, now + limit);
        }
        if session_present {
            self.resume(now, conn, &client);
        }
    }

    /// Resends unacknowledged PUBLISHes with DUP and PUBRELs, then sends queued messages
    /// [MQTT-4.4.0-1].
    fn resume(&mut self, now: Instant, conn: ConnId, client: &Arc<str>) {
        let Some(session) = self.sessions.get_mut(client) else {
            return;
        };
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let mut expired = Vec::new();
        for pid in session.inflight_in_order() {
            let Some(inflight) = session.inflight.get(&pid) else {
                continue;
            };
            match inflight {
                Inflight::Publish { publish, received } => {
                    let mut p = publish.clone();
                    p.dup = true;
                    match prepare(c, p, now, *received) {
                        Ok(p) => emit(c, conn, p, &mut self.sys.stats, &mut self.woken, None),
                        Err(cause) => expired.push((pid, cause)),
                    }
                }
                Inflight::Release => {
                    c.push(conn, Packet::PubRel(PubResp::new(pid)), &mut self.woken);
                }
            }
        }
        for (pid, cause) in expired {
            session.inflight.remove(&pid);
            self.sys.stats.drop(cause);
        }
        drain(
            session,
            c,
            conn,
            now,
            &mut self.sys.stats,
            &mut self.durable,
            &mut self.woken,
        );
    }
}
