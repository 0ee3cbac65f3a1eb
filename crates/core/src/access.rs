//! The access seam: who may connect, and what a connected client may do.
//!
//! Two small traits, each optional (none installed: everybody may do everything, like
//! Mosquitto with `allow_anonymous true` and no ACL file, at no cost per message):
//!
//! - an [`Authenticator`], asked once per CONNECT with what the client presented
//!   ([`ConnectInfo`]). It answers at once ([`AuthDecision::Allow`] or
//!   [`AuthDecision::Deny`]) or [`AuthDecision::Defer`]s: the core then holds the
//!   connection in an *authenticating* state, hands the host a [`crate::Work::authenticate`]
//!   (password hashing must not run while the router is locked) and continues when the
//!   host calls [`crate::Router::authenticated`]. Packets that arrive meanwhile wait, up to
//!   [`crate::MAX_EARLY`].
//! - an [`Authorizer`], asked at each point where a client's rights matter. Each method says
//!   who asks, what the answer changes and which reason code a refusal produces.
//!
//! Implementations are called while the router handles a packet: they must be quick, must
//! not block, and should cache what they decide (the core calls [`Authorizer::deliver`] for
//! every message to every subscriber when an authorizer is installed).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tinsel_codec::{ByteStr, ProtocolVersion, ReasonCode};

use crate::listener::ListenerId;

/// What a client presented in its CONNECT, and where it comes from.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    /// The client identifier (after the broker assigned one, if it was empty).
    pub client_id: Arc<str>,
    /// The user name, if any.
    pub username: Option<ByteStr>,
    /// The password, if any.
    pub password: Option<Bytes>,
    /// The protocol version of the CONNECT.
    pub protocol: ProtocolVersion,
    /// The peer's address (None for an in-process link such as a bridge).
    pub peer: Option<SocketAddr>,
    /// The identity from the client's TLS certificate (its CN or whole subject, as the
    /// listener is configured), when there is one.
    pub tls_identity: Option<Arc<str>>,
    /// The listener it came through (for per-listener rules, Mosquitto's
    /// `per_listener_settings`).
    pub listener: ListenerId,
    /// The user name is `tls_identity`, put there by the listener (Mosquitto's
    /// `use_identity_as_username` / `use_subject_as_username`) in place of the CONNECT's own
    /// user name and password: the certificate has authenticated the client, and an
    /// authenticator that checks passwords lets it in as Mosquitto does.
    pub username_from_certificate: bool,
}

/// An authenticator's answer to a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Accepted, as this identity (the user name rights are looked up by; None: anonymous).
    Allow(Option<Arc<str>>),
    /// Refused with this CONNACK reason code (the core maps it to the 3.1.1 return code
    /// for older clients), e.g. [`ReasonCode::BAD_USER_NAME_OR_PASSWORD`] or
    /// [`ReasonCode::NOT_AUTHORIZED`].
    Deny(ReasonCode),
    /// Decided off the event loop: the host gets a [`crate::Work::authenticate`] and answers
    /// with [`crate::Router::authenticated`]. No CONNACK leaves before.
    Defer,
}

/// Decides who may connect. See the module docs.
pub trait Authenticator: Send + Sync + 'static {
    /// Called for each CONNECT, after the client identifier is settled and before any
    /// session is touched. A refusal sends CONNACK with the reason code and closes.
    fn authenticate(&self, info: &ConnectInfo) -> AuthDecision;

    /// Decides a CONNECT that [`Authenticator::authenticate`] deferred. The host calls it
    /// off the event loop (a bounded pool of threads), so it may be slow: hash a password,
    /// ask a server. `Defer` here counts as a refusal.
    fn authenticate_slowly(&self, info: &ConnectInfo) -> AuthDecision {
        let _ = info;
        AuthDecision::Deny(ReasonCode::UNSPECIFIED_ERROR)
    }

    /// True if this MQTT 5 extended authentication method is supported. A CONNECT naming
    /// an unsupported method is refused with CONNACK 0x8C (Bad authentication method).
    fn supports_auth_method(&self, method: &str) -> bool {
        let _ = method;
        false
    }
}

/// Who asks an [`Authorizer`]: a connected client, as authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The client identifier.
    pub client_id: &'a str,
    /// The user name rights are looked up by (None: anonymous).
    pub username: Option<&'a str>,
    /// The listener it connected through (for an offline session, the one it last
    /// connected through).
    pub listener: ListenerId,
}

/// An authorizer's answer to a SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Granted (each delivery is still checked with [`Authorizer::deliver`]).
    Grant,
    /// Refused: SUBACK 0x87 Not authorized (MQTT 5) or 0x80 Failure (3.1.1).
    Refuse,
}

/// Decides what a connected client may do. See the module docs.
pub trait Authorizer: Send + Sync + 'static {
    /// A client publishes to `topic` (after its topic alias is resolved, so an alias cannot
    /// reach a topic the client could not name). Refused: the message goes nowhere and is
    /// not retained; a QoS 1/2 PUBLISH is acknowledged with 0x87 (Not authorized) in
    /// MQTT 5, and acknowledged as if accepted before MQTT 5 (as Mosquitto does).
    fn publish(&self, who: Identity<'_>, topic: &str) -> bool;

    /// A client subscribes to `filter` (a shared subscription is asked with its filter,
    /// `$share/{group}/` removed). See [`Verdict`].
    fn subscribe(&self, who: Identity<'_>, filter: &str) -> Verdict;

    /// A message on `topic` is about to be delivered to a subscriber, retained messages
    /// included. Refused: that subscriber does not get it (nobody is told).
    fn deliver(&self, who: Identity<'_>, topic: &str) -> bool;

    /// A client's will is about to be published to `topic`, when its connection is gone.
    /// Refused: the will is dropped. By default the publish right decides.
    fn will(&self, who: Identity<'_>, topic: &str) -> bool {
        self.publish(who, topic)
    }
}

/// Everybody may connect and do everything, like Mosquitto with `allow_anonymous true`
/// and no ACL file. Installing no authenticator or authorizer has the same effect without
/// a call per decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, info: &ConnectInfo) -> AuthDecision {
        AuthDecision::Allow(info.username.as_ref().map(|u| Arc::from(u.as_str())))
    }
}

impl Authorizer for AllowAll {
    fn publish(&self, _: Identity<'_>, _: &str) -> bool {
        true
    }

    fn subscribe(&self, _: Identity<'_>, _: &str) -> Verdict {
        Verdict::Grant
    }

    fn deliver(&self, _: Identity<'_>, _: &str) -> bool {
        true
    }
}

/// The seams installed in a router.
#[derive(Clone, Default)]
pub(crate) struct Access {
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    pub(crate) authorizer: Option<Arc<dyn Authorizer>>,
}

/// `$SYS` is the broker's own, whatever the authorizer says, except a bridge's state
/// (`$SYS/broker/connection/NAME/state`), which a bridge publishes and leaves as its will
/// on the broker it connects to (as Mosquitto allows).
fn sys_refused(topic: &str) -> bool {
    topic.starts_with("$SYS")
        && !tinsel_codec::topic::matches("$SYS/broker/connection/+/state", topic)
}

impl Access {
    /// May `who` publish to `topic`? See [`sys_refused`] for `$SYS`.
    pub(crate) fn may_publish(&self, who: Identity<'_>, topic: &str) -> bool {
        !sys_refused(topic)
            && self
                .authorizer
                .as_ref()
                .is_none_or(|a| a.publish(who, topic))
    }

    pub(crate) fn may_subscribe(&self, who: Identity<'_>, filter: &str) -> bool {
        self.authorizer
            .as_ref()
            .is_none_or(|a| a.subscribe(who, filter) == Verdict::Grant)
    }

    pub(crate) fn may_receive(&self, who: Identity<'_>, topic: &str) -> bool {
        self.authorizer
            .as_ref()
            .is_none_or(|a| a.deliver(who, topic))
    }

    pub(crate) fn may_will(&self, who: Identity<'_>, topic: &str) -> bool {
        !sys_refused(topic) && self.authorizer.as_ref().is_none_or(|a| a.will(who, topic))
    }
}
