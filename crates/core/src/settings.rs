//! What the core is told at start: limits and intervals.

use std::time::Duration;

use serde::Deserialize;

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
        }
    }
}

/// Settings the core needs besides its limits.
#[derive(Debug, Clone, Default)]
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
}
