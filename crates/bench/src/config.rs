//! What to run: the scenario, its shape, and the limits that keep every run bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tinsel_codec::{ProtocolVersion, QoS};

use crate::BenchError;

/// The traffic pattern of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Open N connections, hold them, report the connect rate (and the broker's memory).
    Conn,
    /// N publishers and no subscriber: the broker's ingest cost.
    Pub,
    /// N subscribers to one filter; the messages come from another process (`pub` run).
    Sub,
    /// N publisher/subscriber pairs, each pair on its own topic.
    P2p,
    /// N publishers, one wildcard subscriber.
    Fanin,
    /// One publisher (or `publishers`), N subscribers on the same topic.
    Fanout,
    /// N publishers, `subscribers` members of one `$share` group.
    Shared,
}

impl Scenario {
    /// The scenario's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Conn => "conn",
            Scenario::Pub => "pub",
            Scenario::Sub => "sub",
            Scenario::P2p => "p2p",
            Scenario::Fanin => "fanin",
            Scenario::Fanout => "fanout",
            Scenario::Shared => "shared",
        }
    }
}

/// How the run's connections reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP (the CA from [`BenchConfig::cafile`]).
    Tls,
    /// WebSocket on [`BenchConfig::ws_path`].
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Transport {
    /// Every transport, in the order of [`Transport::name`]'s list.
    pub const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// The transport's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether MQTT travels in WebSocket frames.
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

/// A whole run's settings. [`BenchConfig::new`] gives the defaults; every run is bounded by
/// `count` and/or `duration`, and always by `time_limit`.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The pattern.
    pub scenario: Scenario,
    /// The broker's address (loopback only is checked by the CLI, not here).
    pub broker: SocketAddr,
    /// The scenario's N: connections, pairs, publishers or subscribers (see [`Scenario`]).
    pub clients: u32,
    /// Publishers where the scenario has a second dimension (`fanout`, `shared`, `pub`).
    pub publishers: Option<u32>,
    /// Subscribers where the scenario has a second dimension (`shared`, `sub`).
    pub subscribers: Option<u32>,
    /// QoS of publishes and subscriptions.
    pub qos: QoS,
    /// Payload size in bytes (at least [`crate::payload::HEADER_LEN`]).
    pub payload_size: usize,
    /// Messages per second per publisher; `None` is as fast as the broker takes them.
    pub rate: Option<f64>,
    /// Unacknowledged QoS 1/2 publishes allowed per publisher (capped by the broker's
    /// Receive Maximum in MQTT 5).
    pub window: u16,
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Messages per publisher.
    pub count: Option<u64>,
    /// How long publishers publish (or `conn` holds, or `sub` listens).
    pub duration: Option<Duration>,
    /// Hard cap on the whole run, setup and drain included; exceeding it is an error.
    pub time_limit: Duration,
    /// After the publishers finish, how long subscribers may stay silent before the run
    /// ends with what arrived.
    pub drain_timeout: Duration,
    /// Source addresses to spread connections over (127.0.0.1, 127.0.0.2, ...); 0 picks
    /// one per 10,000 connections.
    pub source_addrs: u8,
    /// Connections being opened at the same time.
    pub connect_concurrency: u32,
    /// Keep alive sent in CONNECT (never 0: some brokers refuse it); idle connections ping.
    pub keep_alive: u16,
    /// Topic prefix; the run's topics live under `<prefix>/<run id>/`.
    pub topic_prefix: String,
    /// The `sub` scenario's filter (default `<prefix>/#`).
    pub filter: Option<String>,
    /// Broker process to observe in /proc (CPU seconds, RSS).
    pub broker_pid: Option<u32>,
    /// Worker threads of the load generator; 0 uses the CPUs this process may run on.
    pub threads: usize,
    /// Draw a progress bar on stderr (the CLI sets it only on a terminal).
    pub progress: bool,
    /// How connections reach the broker.
    pub transport: Transport,
    /// TLS transports: the CA certificate(s) (PEM) that signed the broker's certificate.
    pub cafile: Option<PathBuf>,
    /// TLS transports: the name the broker's certificate must carry.
    pub tls_server_name: String,
    /// WebSocket transports: the listener's path.
    pub ws_path: String,
    /// Persistent sessions: CONNECT without Clean Session / Clean Start (MQTT 5: with a
    /// session expiry of 300 s), so a broker with persistence stores
    /// them. MQTT 5 sessions are ended at the end of the run; MQTT 3.1.1 ones stay on the
    /// broker, offline, until it drops them.
    pub persistent: bool,
    /// User name every connection sends in its CONNECT (none: anonymous).
    pub username: Option<String>,
    /// Password every connection sends with its user name.
    pub password: Option<String>,
}

/// Session expiry of persistent MQTT 5 benchmark sessions, in seconds.
pub(crate) const PERSISTENT_EXPIRY_S: u32 = 300;

impl BenchConfig {
    /// Defaults for `scenario` against `broker`: 10 clients, QoS 0, 64-byte payloads,
    /// unlimited rate, window 100, MQTT 3.1.1, 10 seconds, 300-second hard cap.
    pub fn new(scenario: Scenario, broker: SocketAddr) -> BenchConfig {
        BenchConfig {
            scenario,
            broker,
            clients: 10,
            publishers: None,
            subscribers: None,
            qos: QoS::AtMostOnce,
            payload_size: 64,
            rate: None,
            window: 100,
            version: ProtocolVersion::V311,
            count: None,
            duration: None,
            time_limit: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(2),
            source_addrs: 0,
            connect_concurrency: 100,
            keep_alive: 300,
            topic_prefix: "tinsel-bench".into(),
            filter: None,
            broker_pid: None,
            threads: 0,
            progress: false,
            transport: Transport::Tcp,
            cafile: None,
            tls_server_name: "localhost".into(),
            ws_path: "/mqtt".into(),
            persistent: false,
            username: None,
            password: None,
        }
    }

    /// The default broker address, 127.0.0.1:1883.
    pub fn default_broker() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883)
    }

    /// Checks the settings against each other; the message says what to change.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Config(m.to_string()));
        if self.clients == 0 {
            return bad("-n must be at least 1");
        }
        if self.payload_size < crate::payload::HEADER_LEN {
            return Err(BenchError::Config(format!(
                "--size must be at least {} bytes (sequence number, timestamp and publisher id)",
                crate::payload::HEADER_LEN
            )));
        }
        if self.payload_size > 16 * 1024 * 1024 {
            return bad("--size above 16 MiB is not supported");
        }
        if self.window == 0 {
            return bad("--window must be at least 1");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return bad("--rate must be a positive number of messages per second");
        }
        if self.count == Some(0) {
            return bad("--count must be at least 1");
        }
        match self.scenario {
            Scenario::Conn | Scenario::Sub if self.count.is_some() => {
                return bad("this scenario takes --duration, not --count");
            }
            Scenario::Sub if self.duration.is_none() => {
                return bad("the sub scenario listens for --duration seconds: give one");
            }
            Scenario::Pub
            | Scenario::P2p
            | Scenario::Fanin
            | Scenario::Fanout
            | Scenario::Shared
                if self.count.is_none() && self.duration.is_none() =>
            {
                return bad("give --count and/or --duration: every run is bounded");
            }
            _ => {}
        }
        if self
            .duration
            .is_some_and(|d| d + self.drain_timeout + Duration::from_secs(1) >= self.time_limit)
        {
            return bad("--time-limit must exceed --duration plus --drain by more than 1 s");
        }
        if self.scenario == Scenario::Conn
            && self
                .duration
                .is_some_and(|d| d.as_secs() >= u64::from(self.keep_alive))
        {
            return bad(
                "the conn scenario holds idle connections: --duration must be below --keep-alive",
            );
        }
        if self.keep_alive == 0 {
            return bad("--keep-alive must be at least 1 second");
        }
        if self.connect_concurrency == 0 {
            return bad("--connect-concurrency must be at least 1");
        }
        Ok(())
    }

    /// Connections this run opens.
    pub fn connection_count(&self) -> u64 {
        match self.scenario {
            Scenario::Conn => u64::from(self.clients),
            _ => u64::from(self.publisher_count()) + u64::from(self.subscriber_count()),
        }
    }

    /// Publishers in this run.
    pub fn publisher_count(&self) -> u32 {
        match self.scenario {
            Scenario::Conn | Scenario::Sub => 0,
            Scenario::Pub | Scenario::P2p | Scenario::Fanin => {
                self.publishers.unwrap_or(self.clients)
            }
            Scenario::Fanout => self.publishers.unwrap_or(1),
            Scenario::Shared => self.publishers.unwrap_or(self.clients),
        }
    }

    /// Subscribers in this run.
    pub fn subscriber_count(&self) -> u32 {
        match self.scenario {
            Scenario::Conn | Scenario::Pub => 0,
            Scenario::Sub | Scenario::Fanout => self.subscribers.unwrap_or(self.clients),
            Scenario::P2p => self.publisher_count(),
            Scenario::Fanin => self.subscribers.unwrap_or(1),
            Scenario::Shared => self.subscribers.unwrap_or(self.clients.clamp(2, 4)),
        }
    }
}
