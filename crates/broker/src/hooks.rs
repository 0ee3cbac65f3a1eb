//! Extension points: authentication / authorisation and session storage.
//!
//! Today the broker allows everything and keeps sessions in memory. Later work plugs in
//! password files, ACLs and a disk store by implementing these traits; the core calls them
//! at the points named in each method's docs. Implementations must be quick and must not
//! block: they are called while the router handles a packet.

use bytes::Bytes;
use tinsel_codec::{ByteStr, ReasonCode};

/// What a client presented in its CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct ConnectInfo<'a> {
    /// The client identifier (after the broker assigned one, if it was empty).
    pub client_id: &'a str,
    /// The user name, if any.
    pub username: Option<&'a ByteStr>,
    /// The password, if any.
    pub password: Option<&'a Bytes>,
}

/// Decides who may connect, publish and subscribe.
pub trait AuthHook: Send + Sync + 'static {
    /// Called for each CONNECT. `Err(code)` refuses it with that CONNACK reason code
    /// (mapped to the 3.1.1 return code for older clients), e.g.
    /// [`ReasonCode::BAD_USER_NAME_OR_PASSWORD`] or [`ReasonCode::NOT_AUTHORIZED`].
    fn authenticate(&self, info: &ConnectInfo<'_>) -> Result<(), ReasonCode> {
        let _ = info;
        Ok(())
    }

    /// True if this MQTT 5 extended authentication method is supported. A CONNECT naming
    /// an unsupported method is refused with CONNACK 0x8C (Bad authentication method).
    fn supports_auth_method(&self, method: &str) -> bool {
        let _ = method;
        false
    }

    /// May `client_id` publish to `topic`? A refused QoS 1/2 PUBLISH is acknowledged with
    /// 0x87 (Not authorized) in MQTT 5, and silently dropped before.
    fn authorize_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        let _ = (client_id, username, topic);
        true
    }

    /// May `client_id` subscribe to `filter`? A refused filter gets SUBACK 0x87 (MQTT 5)
    /// or 0x80 (3.1.1).
    fn authorize_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        let _ = (client_id, username, filter);
        true
    }
}

/// The default hook: everybody may do everything, like Mosquitto with
/// `allow_anonymous true` and no ACL file.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl AuthHook for AllowAll {}

/// Where sessions live between connections. The router keeps the live state in memory and
/// tells the store about lifecycle events, so a disk store can persist them later.
pub trait SessionStore: Send + Sync + 'static {
    /// A session was created or resumed by a connection.
    fn session_opened(&self, client_id: &str, expiry_interval: u32) {
        let _ = (client_id, expiry_interval);
    }

    /// A session ended (clean start, expiry, or expiry interval 0 at disconnect).
    fn session_ended(&self, client_id: &str) {
        let _ = client_id;
    }
}

/// Sessions live only in memory and are lost when the broker stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStore;

impl SessionStore for MemoryStore {}
