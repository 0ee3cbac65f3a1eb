//! How to reach the broker and what to ask of it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tinsel_codec::{Properties, ProtocolVersion, Will};

/// Connection options. Fields are public; the `with_*` builders are shorthands.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Connect through this Unix domain socket instead of TCP (`host`/`port` are then unused).
    pub unix_path: Option<PathBuf>,
    /// Bind the outgoing socket to this local address (`-A`).
    pub bind_address: Option<SocketAddr>,
    /// Disable Nagle's algorithm (`--nodelay`).
    pub nodelay: bool,
    /// Client identifier; may be empty (the broker assigns one in 3.1.1 and 5.0 with clean start).
    pub client_id: String,
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Keep alive; zero turns it off. Sent in whole seconds.
    pub keep_alive: Duration,
    /// Clean session (3.1/3.1.1) or clean start (5.0).
    pub clean_start: bool,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Will message.
    pub will: Option<Will>,
    /// MQTT 5 CONNECT properties (session expiry, receive maximum, user properties, ...).
    pub connect_properties: Properties,
    /// TLS; `None` for plain TCP.
    pub tls: Option<TlsOptions>,
    /// MQTT over WebSocket, upgrading on this HTTP path (e.g. `/mqtt`) with the subprotocol
    /// `mqtt`, over TCP or over TLS as `tls` says; `None` for MQTT straight on the stream.
    pub websocket: Option<String>,
    /// Reconnect after a lost connection. `None`: the client closes when the connection is lost.
    pub reconnect: Option<Backoff>,
    /// How many QoS 1 and 2 publishes may await acknowledgement at once (further publishes
    /// wait). Lowered to the broker's Receive Maximum when it sends one. Minimum 1.
    pub max_inflight: u16,
    /// How long to wait for the TCP/TLS connection and CONNACK.
    pub connect_timeout: Duration,
    /// Largest packet accepted from the broker, fixed header included.
    pub max_packet_size: u32,
    /// Called for every packet sent and received (used for `-d` debug output).
    pub packet_log: Option<PacketLog>,
    /// Tell the broker this client is a bridge: the protocol level's top bit in CONNECT
    /// (Mosquitto's `try_private`). A broker that knows it treats MQTT 3 subscriptions as
    /// No Local with Retain As Published; one that does not refuses the connection.
    pub bridge: bool,
}

/// The function behind a [`PacketLog`].
pub type PacketLogFn = dyn Fn(bool, &tinsel_codec::Packet) + Send + Sync;

/// A callback that sees every packet: `(sent, packet)`; `sent` is false for received ones.
#[derive(Clone)]
pub struct PacketLog(pub std::sync::Arc<PacketLogFn>);

impl std::fmt::Debug for PacketLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PacketLog(..)")
    }
}

/// Exponential back-off between reconnection attempts, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first attempt.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before attempt `n` (0-based): `initial * 2^n`, capped at `max`, with up to
    /// 25 % random jitter subtracted so many clients do not reconnect in lock step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let jitter = rand::random_range(0.0..0.25);
        base.mul_f64(1.0 - jitter)
    }
}

/// TLS settings. Without `ca_file`/`ca_path` and without `insecure`, the connection fails:
/// there is no built-in trust store.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of trusted CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Directory of PEM CA certificates.
    pub ca_path: Option<PathBuf>,
    /// Client certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate and host name. Testing only.
    pub insecure: bool,
    /// Restrict to one TLS version: `"tlsv1.2"` or `"tlsv1.3"`.
    pub version: Option<String>,
    /// ALPN protocol to offer.
    pub alpn: Option<String>,
    /// Server name to verify instead of the host.
    pub server_name: Option<String>,
}

impl ClientOptions {
    /// Options for `host:port` with MQTT 3.1.1, an empty client id, 60 s keep alive,
    /// clean start, no reconnection.
    pub fn new(host: impl Into<String>, port: u16) -> ClientOptions {
        ClientOptions {
            host: host.into(),
            port,
            unix_path: None,
            bind_address: None,
            nodelay: false,
            client_id: String::new(),
            version: ProtocolVersion::V311,
            keep_alive: Duration::from_secs(60),
            clean_start: true,
            username: None,
            password: None,
            will: None,
            connect_properties: Properties::default(),
            tls: None,
            websocket: None,
            reconnect: None,
            max_inflight: 20,
            connect_timeout: Duration::from_secs(30),
            max_packet_size: 268_435_460,
            packet_log: None,
            bridge: false,
        }
    }

    /// Sets the client identifier.
    pub fn with_client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }
    /// Sets the protocol version.
    pub fn with_version(mut self, version: ProtocolVersion) -> Self {
        self.version = version;
        self
    }
    /// Sets the keep alive.
    pub fn with_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }
    /// Sets clean session / clean start.
    pub fn with_clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }
    /// Sets user name and password.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: Option<Bytes>,
    ) -> Self {
        self.username = Some(username.into());
        self.password = password;
        self
    }
    /// Sets the will message.
    pub fn with_will(mut self, will: Will) -> Self {
        self.will = Some(will);
        self
    }
    /// Sets the MQTT 5 CONNECT properties.
    pub fn with_connect_properties(mut self, properties: Properties) -> Self {
        self.connect_properties = properties;
        self
    }
    /// Enables TLS.
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
    /// Enables automatic reconnection.
    pub fn with_reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }
    /// Sets the in-flight window for QoS 1 and 2 publishes.
    pub fn with_max_inflight(mut self, n: u16) -> Self {
        self.max_inflight = n.max(1);
        self
    }
    /// Sets the connection timeout.
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }
}
