//! What the core is told at start: limits and intervals.

use std::time::Duration;

use serde::Deserialize;

use crate::listener::ListenerSettings;

/// Limits that bound memory and protect the broker from misbehaving clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest packet accepted or sent, in bytes (whole packet).
    pub max_packet_size: u32,
    /// Unacknowledged QoS 1 and 2 messages per client in each direction (MQTT 5 Receive
    /// Maximum the broker announces; MQTT 3 clients get the same treatment).
    pub max_inflight: u16,
    /// Messages a session may queue (offline, or waiting for the client's Receive Maximum).
    /// When full, new messages for that session are dropped (and counted).
    pub max_queued_messages: usize,
    /// Payload bytes a session may queue; same drop policy. 0 means no byte limit.
    pub max_queued_bytes: usize,
    /// Largest keep alive the broker accepts, in seconds (65535: no limit). MQTT 5 clients
    /// asking for more (or for none) are given this value through Server Keep Alive; MQTT 3
    /// clients asking for more are refused (CONNACK identifier rejected), as in Mosquitto.
    pub max_keep_alive: u16,
    /// Concurrent TCP connections; more are closed right after accept. `tinsel broker`
    /// raises its open-file limit toward this (up to the hard limit, with a warning when
    /// that is lower).
    pub max_connections: usize,
    /// Seconds a new connection has to send CONNECT, counted from when the listener
    /// hands it over: a connection that sends nothing at all is handed over only after
    /// the listener's own wait for first bytes (Linux `TCP_DEFER_ACCEPT`, 1 to 3 s).
    pub connect_timeout: u64,
    /// Topic aliases an MQTT 5 client may use towards the broker.
    pub topic_alias_maximum: u16,
    /// Seconds a packet may take to arrive once its first byte has (0: no limit). A
    /// connection whose packet is not complete by then is closed (MQTT 5: DISCONNECT 0x8D
    /// after CONNECT): a client cannot hold a buffer by sending a byte at a time. Enforced by
    /// the host, which sees the bytes; the core only reads the setting.
    pub packet_timeout: u64,
    /// PUBLISH packets a client may send per second, on average (0: no limit).
    pub max_publish_rate: u32,
    /// PUBLISH packets a client may send at once above `max_publish_rate` (the token
    /// bucket's size; 0: one second's worth).
    pub publish_burst: u32,
    /// Payload bytes a client may publish per second, averaged over one second (0: no
    /// limit). A single message larger than that is let through when the client has been
    /// within the limit.
    pub max_publish_bytes_rate: u64,
    /// What happens to a client publishing faster than the limits above.
    pub publish_rate_action: RateAction,
    /// Subscriptions one session may hold (0: no limit). Further filters are refused in the
    /// SUBACK (MQTT 5: 0x97 Quota exceeded; MQTT 3: 0x80).
    pub max_subscriptions: usize,
    /// Longest topic name or filter, in bytes (65535: the protocol's own limit).
    pub max_topic_length: usize,
    /// Most levels in a topic name or filter (a shared subscription's filter without
    /// `$share/{group}/`).
    pub max_topic_levels: usize,
}

/// What happens to a client that publishes faster than its rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateAction {
    /// The broker stops reading from the client until it is within its limits again: TCP's
    /// flow control then slows the client down. Nothing is refused or lost.
    #[default]
    Throttle,
    /// The client is disconnected (MQTT 5: DISCONNECT 0x96 Message rate too high; MQTT 3:
    /// the connection is closed); the message over the limit is not published.
    Disconnect,
}

impl RateAction {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            RateAction::Throttle => "throttle",
            RateAction::Disconnect => "disconnect",
        }
    }
}

impl Limits {
    /// True if `topic` (a name, or a filter's levels) is within `max_topic_length` and
    /// `max_topic_levels`. `levels_of`: the part whose levels count (a shared
    /// subscription's filter without its prefix).
    pub(crate) fn topic_within(&self, topic: &str, levels_of: &str) -> bool {
        if topic.len() > self.max_topic_length {
            return false;
        }
        // A topic has at most one level more than it has bytes: short topics need no count.
        levels_of.len() < self.max_topic_levels
            || levels_of.bytes().filter(|&b| b == b'/').count() < self.max_topic_levels
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_packet_size: 268_435_455,
            max_inflight: 100,
            max_queued_messages: 1000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_keep_alive: 65_535,
            max_connections: 10_000,
            connect_timeout: 10,
            topic_alias_maximum: 10,
            packet_timeout: 30,
            max_publish_rate: 0,
            publish_burst: 0,
            max_publish_bytes_rate: 0,
            publish_rate_action: RateAction::Throttle,
            max_subscriptions: 0,
            max_topic_length: 65_535,
            max_topic_levels: 200,
        }
    }
}

/// Settings the core needs besides its limits.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Limits from the configuration.
    pub limits: Limits,
    /// Time between `$SYS` updates; None turns them off.
    pub sys_interval: Option<Duration>,
    /// Seed for the client identifiers the broker assigns (the host picks it at random;
    /// tests fix it, so a run can be replayed).
    pub id_seed: u64,
    /// Acknowledgements of what must be durable (PUBACK and PUBREC of accepted messages,
    /// SUBACK, the CONNACK of a new persistent session, retained messages) wait until the
    /// host reports the records before them synced ([`crate::Router::durable`]). Off: no
    /// records are made and acknowledgements leave at once.
    pub durable_acks: bool,
    /// Each listener's settings, by [`crate::ListenerId`] (see [`crate::Router::accept_on`]).
    /// A listener not in the list gets [`ListenerSettings::default`].
    pub listeners: Vec<ListenerSettings>,
    /// Client ids must start with one of these (Mosquitto's `clientid_prefixes`, which has
    /// one); others are refused with CONNACK 0x87 Not authorized (return code 5 before
    /// MQTT 5), as Mosquitto refuses them. Empty: any client id.
    pub clientid_prefixes: Vec<String>,
    /// The prefix of the client ids the broker assigns (Mosquitto's `auto_id_prefix`).
    pub auto_id_prefix: String,
    /// Whether retained messages are supported (Mosquitto's `retain_available`). When not:
    /// CONNACK says Retain Available 0 (MQTT 5); a PUBLISH with the retain flag closes the
    /// connection (MQTT 5: DISCONNECT 0x9A Retain not supported first); a CONNECT with a
    /// retained will is refused (MQTT 5: CONNACK 0x9A; before: closed without a CONNACK).
    pub retain_available: bool,
    /// Deliver at the subscription's QoS rather than the lower of the message's and the
    /// subscription's (Mosquitto's `upgrade_outgoing_qos`; against the MQTT specification).
    pub upgrade_outgoing_qos: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            limits: Limits::default(),
            sys_interval: None,
            id_seed: 0,
            durable_acks: false,
            listeners: Vec::new(),
            clientid_prefixes: Vec::new(),
            auto_id_prefix: "auto-".to_owned(),
            retain_available: true,
            upgrade_outgoing_qos: false,
        }
    }
}

impl Settings {
    /// The settings of listener `id`.
    pub(crate) fn listener(&self, id: crate::ListenerId) -> ListenerSettings {
        self.listeners
            .get(usize::from(id))
            .cloned()
            .unwrap_or_default()
    }
}
