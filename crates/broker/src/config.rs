//! Broker configuration, read from TOML or from a Mosquitto configuration file.
//!
//! [`Config::read`] tells the two apart by their content, whatever the file's name (see
//! [`crate::Format`]); Mosquitto's format is read by [`crate::mosquitto_conf`]. Every key, its
//! default and its Mosquitto equivalent are listed in `docs/configuration.md`.
//!
//! ```toml
//! sys_interval = 10            # seconds between $SYS updates; 0 turns them off
//!
//! [[listeners]]
//! address = "127.0.0.1"
//! port = 1883
//!
//! # max_connections = 1000    # this listener's own cap (default: none besides limits')
//! # protocols = ["3.1.1", "5.0"] # MQTT versions accepted (default: 3.1, 3.1.1 and 5.0)
//! # mount_point = "tenant-a/"  # its clients' topics live under this prefix
//! # max_topic_alias = 10       # default: limits.topic_alias_maximum
//!
//! [[listeners]]                # TLS; also "websocket" and "websocket-tls" (see the docs)
//! address = "::1"
//! port = 8883
//! transport = "tls"
//! certfile = "/etc/tinsel/server.crt"
//! keyfile = "/etc/tinsel/server.key"
//!
//! [limits]
//! max_packet_size = 268435455  # bytes, both directions
//! max_inflight = 100           # Receive Maximum: unacknowledged QoS 1/2 per client, each way
//! max_queued_messages = 1000   # per session, offline or waiting for Receive Maximum
//! max_queued_bytes = 67108864  # per session (payload bytes)
//! max_keep_alive = 65535       # seconds; MQTT 5 clients asking for more are told this,
//!                              # MQTT 3 clients asking for more are refused
//! max_connections = 10000      # further TCP connections are closed on accept
//! connect_timeout = 10         # seconds to wait for CONNECT after accept
//! topic_alias_maximum = 10     # topic aliases a client may use towards the broker
//! packet_timeout = 30          # seconds a packet may take once its first byte is in; 0: none
//! max_publish_rate = 0         # PUBLISH packets per second per client; 0: no limit
//! publish_burst = 0            # PUBLISHes at once above the rate; 0: one second's worth
//! max_publish_bytes_rate = 0   # payload bytes per second per client; 0: no limit
//! publish_rate_action = "throttle"  # or "disconnect" (MQTT 5: DISCONNECT 0x96)
//! max_subscriptions = 0        # per session; 0: no limit (beyond: SUBACK 0x97 / 0x80)
//! max_topic_length = 65535     # bytes in a topic name or filter
//! max_topic_levels = 200       # levels in a topic name or filter
//!
//! [logging]
//! level = "info"               # tracing filter, e.g. "debug" or "info,tinsel_broker=trace"
//! verbose = false              # log every packet in and out (same as `-v`)
//! format = "text"              # "text" (Mosquitto-like lines) or "json" (one object a line)
//! # file = "/var/log/tinsel.log" # append to this file instead of standard error
//!
//! [http]                       # the operations listener: off unless `address` is set
//! # address = "127.0.0.1:9090" # /metrics, /healthz, /readyz, and the admin API
//! # token = "s3cret"           # bearer token of the admin API (/api/v1/...); off without one
//!
//! [access]                     # who may connect and what they may do (docs/security/)
//! # allow_anonymous = true
//! # password_file = "/etc/tinsel/passwd"
//! # acl_file = "/etc/tinsel/acl"
//! # per_listener_settings = false # true: each listener's [listeners.access] instead
//! # clientid_prefixes = ["dev-"] # client ids must start with one of these
//! # auto_id_prefix = "auto-"   # prefix of the ids given to clients that send none
//!
//! [mqtt]                       # broker-wide protocol behaviour
//! # retain_available = true    # false: retained messages are refused
//! # upgrade_outgoing_qos = false # true: deliver at the subscription's QoS
//!
//! [persistence]                # off unless enabled (or `tinsel broker --data DIR`)
//! # enabled = false
//! # location = "/var/lib/tinsel"
//! # file = "tinsel.log"        # the log's name in `location`
//! # mode = "sync"              # "sync", "periodic" or "none" (see docs/persistence.md)
//! # sync_interval_ms = 1000    # periodic mode: time between syncs
//!
//! [[bridges]]                  # a bridge to another broker (see docs/bridges.md)
//! name = "hq"
//! addresses = ["192.0.2.10:1883", "192.0.2.11:1883"]   # fail-over in turn
//! topics = ["sensors/# out 1 site1/ hq/site1/", "commands/# in 1"]
//! cleansession = false         # persistent sessions: no QoS 1/2 loss while away
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;
pub use tinsel_core::Limits;

/// The whole broker configuration. Every field has a default; an empty file is valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where to listen. Default: one TCP listener on 127.0.0.1:1883.
    pub listeners: Vec<ListenerConfig>,
    /// Record every packet in and out to this pcapng file.
    pub capture: Option<PathBuf>,
    /// Seconds between `$SYS` topic updates; 0 turns them off.
    pub sys_interval: u64,
    /// Resource limits.
    pub limits: Limits,
    /// Log settings (used by the `tinsel broker` command).
    pub logging: LoggingConfig,
    /// Authentication and access control.
    pub access: AccessConfig,
    /// Broker-wide protocol behaviour (retained messages, QoS upgrades).
    pub mqtt: MqttConfig,
    /// Durability: what is kept across restarts, where, and when it is synced.
    pub persistence: PersistenceConfig,
    /// The operations HTTP listener (metrics, health, admin API): off by default.
    pub http: HttpConfig,
    /// Bridges to other brokers (`[[bridges]]`; see `docs/bridges.md`).
    pub bridges: Vec<crate::bridge::BridgeConfig>,
}

/// The operations HTTP listener: Prometheus metrics, health checks and the admin API.
///
/// Off unless `address` is set. Its endpoints are listed in `docs/operations.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to listen, as `IP:PORT` (e.g. `"127.0.0.1:9090"`; port 0 picks a free one).
    /// None: no HTTP listener.
    pub address: Option<String>,
    /// The bearer token the admin API (`/api/v1/...`) asks for. None: the admin API is
    /// disabled (its routes answer 403), while metrics and health stay open.
    pub token: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listeners: vec![ListenerConfig::default()],
            capture: None,
            sys_interval: 10,
            limits: Limits::default(),
            logging: LoggingConfig::default(),
            access: AccessConfig::default(),
            mqtt: MqttConfig::default(),
            persistence: PersistenceConfig::default(),
            http: HttpConfig::default(),
            bridges: Vec::new(),
        }
    }
}

/// Broker-wide protocol behaviour, as Mosquitto's directives of the same names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Whether retained messages are supported. False: MQTT 5 clients are told so in
    /// CONNACK (Retain Available 0); a PUBLISH with the retain flag closes its connection
    /// (MQTT 5: DISCONNECT 0x9A first), a retained will is refused. Default: true.
    pub retain_available: bool,
    /// Deliver each message at the QoS of the subscription that matched it, even above the
    /// QoS it was published with (against the MQTT specification). Default: false.
    pub upgrade_outgoing_qos: bool,
}

impl Default for MqttConfig {
    fn default() -> MqttConfig {
        MqttConfig {
            retain_available: true,
            upgrade_outgoing_qos: false,
        }
    }
}

/// The transport a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[non_exhaustive]
pub enum Transport {
    /// MQTT over plain TCP.
    #[default]
    #[serde(rename = "tcp")]
    Tcp,
    /// MQTT over TLS 1.2 or 1.3 (`certfile` and `keyfile` needed).
    #[serde(rename = "tls")]
    Tls,
    /// MQTT over WebSocket (RFC 6455, subprotocol `mqtt`, binary frames) on `path`.
    #[serde(rename = "websocket")]
    WebSocket,
    /// MQTT over WebSocket over TLS (`wss://`).
    #[serde(rename = "websocket-tls")]
    WebSocketTls,
    /// MQTT over a Unix domain socket; `address` is the socket's path (`port` is unused).
    #[serde(rename = "unix")]
    Unix,
}

impl Transport {
    /// The name TOML uses.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::WebSocket => "websocket",
            Transport::WebSocketTls => "websocket-tls",
            Transport::Unix => "unix",
        }
    }

    /// Whether the transport runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::WebSocketTls)
    }

    /// Whether the transport is WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::WebSocket | Transport::WebSocketTls)
    }
}

/// One listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// IP address or host name to bind, e.g. `"127.0.0.1"`, `"::1"` or `"0.0.0.0"`; for a
    /// Unix socket listener, the socket's path.
    pub address: String,
    /// TCP port; 0 picks a free one. Unused by Unix socket listeners.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
    /// TLS: the server's certificate chain (PEM), leaf first.
    pub certfile: Option<PathBuf>,
    /// TLS: the server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub keyfile: Option<PathBuf>,
    /// TLS: certificates (PEM) of the authorities client certificates are checked against.
    pub cafile: Option<PathBuf>,
    /// TLS: a directory of such certificates (every PEM file in it).
    pub capath: Option<PathBuf>,
    /// TLS: refuse clients without a valid certificate (needs `cafile` or `capath`).
    /// Without it, a certificate is asked for, checked if given, and optional.
    pub require_certificate: bool,
    /// TLS: the client certificate's common name (CN) is the client's user name; its
    /// CONNECT's user name and password are ignored.
    pub use_identity_as_username: bool,
    /// TLS: the client certificate's whole subject (RFC 2253, as Mosquitto writes it:
    /// `CN=dev1,O=Example,C=GB`) is the client's user name.
    pub use_subject_as_username: bool,
    /// TLS: the lowest version accepted, `"tlsv1.2"` (default) or `"tlsv1.3"`.
    pub tls_version: Option<String>,
    /// TLS: the ALPN protocols offered, e.g. `["mqtt"]` (default: none, no ALPN).
    pub alpn: Vec<String>,
    /// WebSocket: the HTTP path clients upgrade on. Default `/mqtt`.
    pub path: Option<String>,
    /// Every connection starts with a PROXY protocol header (v1 or v2) naming the client
    /// (the listener is behind a load balancer); connections without one are closed.
    pub proxy_protocol: bool,
    /// Connections this listener holds at once; further ones are closed right after
    /// accept (Mosquitto's per-listener `max_connections`). None: only
    /// `limits.max_connections`, which caps all listeners together, applies.
    pub max_connections: Option<usize>,
    /// The MQTT versions accepted: `"3.1"`, `"3.1.1"`, `"5.0"`. Others are refused with
    /// CONNACK 0x84 (MQTT 5) or return code 1 (3.1.x). Empty: all three.
    pub protocols: Vec<MqttVersion>,
    /// A topic prefix for this listener's clients (Mosquitto's `mount_point`): added to
    /// every topic and filter they send, removed from every topic they are sent.
    pub mount_point: Option<String>,
    /// Topic aliases this listener's MQTT 5 clients may use towards the broker (Mosquitto's
    /// `max_topic_alias`). None: `limits.topic_alias_maximum`.
    pub max_topic_alias: Option<u16>,
    /// This listener's own access settings, used when `access.per_listener_settings` is
    /// true (Mosquitto's `per_listener_settings true`).
    pub access: ListenerAccess,
}

/// An MQTT protocol version, as a listener's `protocols` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MqttVersion {
    /// MQTT 3.1 (protocol level 3).
    #[serde(rename = "3.1")]
    V31,
    /// MQTT 3.1.1 (protocol level 4).
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.0 (protocol level 5).
    #[serde(rename = "5.0")]
    V5,
}

impl Default for ListenerConfig {
    fn default() -> ListenerConfig {
        ListenerConfig {
            address: "127.0.0.1".to_owned(),
            port: 1883,
            transport: Transport::Tcp,
            certfile: None,
            keyfile: None,
            cafile: None,
            capath: None,
            require_certificate: false,
            use_identity_as_username: false,
            use_subject_as_username: false,
            tls_version: None,
            alpn: Vec::new(),
            path: None,
            proxy_protocol: false,
            max_connections: None,
            protocols: Vec::new(),
            mount_point: None,
            max_topic_alias: None,
            access: ListenerAccess::default(),
        }
    }
}

/// Authentication and access control, as Mosquitto's directives of the same names
/// (enforced by [`crate::FileAccess`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Whether each listener has its own access settings ([`ListenerConfig::access`])
    /// instead of these. Mosquitto's default: false.
    pub per_listener_settings: Option<bool>,
    /// Whether clients without a user name may connect. Mosquitto's default: true when
    /// the file configures no listener (local only), false otherwise.
    pub allow_anonymous: Option<bool>,
    /// Mosquitto password file (`mosquitto_passwd` format).
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file.
    pub acl_file: Option<PathBuf>,
    /// Whether a client may connect with an empty client id and be given one. Mosquitto's
    /// default: true.
    pub allow_zero_length_clientid: Option<bool>,
    /// Client ids must start with one of these (Mosquitto's `clientid_prefixes`, which
    /// takes one); others are refused as not authorized. Empty: any client id.
    pub clientid_prefixes: Vec<String>,
    /// The prefix of the client ids given to clients that send none. Default `auto-`.
    pub auto_id_prefix: Option<String>,
}

/// One listener's access settings, used when `access.per_listener_settings` is true.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerAccess {
    /// As [`AccessConfig::allow_anonymous`], for this listener.
    pub allow_anonymous: Option<bool>,
    /// As [`AccessConfig::password_file`], for this listener.
    pub password_file: Option<PathBuf>,
    /// As [`AccessConfig::acl_file`], for this listener.
    pub acl_file: Option<PathBuf>,
    /// As [`AccessConfig::allow_zero_length_clientid`], for this listener.
    pub allow_zero_length_clientid: Option<bool>,
}

impl ListenerAccess {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == ListenerAccess::default()
    }
}

/// Durability, as Mosquitto's `persistence`, `persistence_location` and
/// `persistence_file`, plus when the store syncs (see `docs/persistence.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistenceConfig {
    /// Keep sessions and retained messages across restarts. Mosquitto's default: false.
    pub enabled: Option<bool>,
    /// Directory of the store (default: the working directory, as Mosquitto).
    pub location: Option<PathBuf>,
    /// The log's file name in `location` (default `tinsel.log`).
    pub file: Option<String>,
    /// When acknowledgements leave (default: sync).
    pub mode: Option<DurabilityMode>,
    /// Periodic mode: milliseconds between syncs (default 1000).
    pub sync_interval_ms: Option<u64>,
}

/// When acknowledgements of what must be kept leave; see `docs/persistence.md`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Only once what they acknowledge is synced to disk (group commit).
    #[default]
    Sync,
    /// At once; the store syncs every `sync_interval_ms`.
    Periodic,
    /// At once; the store writes at once and leaves syncing to the OS.
    None,
}

impl PersistenceConfig {
    /// True if the store is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled == Some(true)
    }
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// A tracing filter, e.g. `"info"` or `"info,tinsel_broker=debug"`.
    pub level: String,
    /// Log every packet in and out.
    pub verbose: bool,
    /// How each line is written.
    pub format: LogFormat,
    /// Append the log to this file instead of writing it to standard error.
    pub file: Option<PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (connections as Mosquitto writes them).
    #[default]
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

impl LogFormat {
    /// The name the configuration and `--log-format` use.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> LoggingConfig {
        LoggingConfig {
            level: "info".to_owned(),
            verbose: false,
            format: LogFormat::Text,
            file: None,
        }
    }
}

impl Config {
    /// Parses a TOML configuration.
    pub fn from_toml_str(s: &str) -> Result<Config, Error> {
        let config: Config = toml::from_str(s).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML that [`Config::from_toml_str`] reads back to the same
    /// settings, every key written out (what `tinsel broker --check` prints), except
    /// `http.token`: a secret, only said to be set.
    pub fn to_toml(&self) -> String {
        fn quoted(s: &str) -> String {
            toml::Value::String(s.to_owned()).to_string()
        }
        let mut o = String::new();
        let _ = writeln!(o, "sys_interval = {}", self.sys_interval);
        if let Some(c) = &self.capture {
            let _ = writeln!(o, "capture = {}", toml_path(c));
        }
        for l in &self.listeners {
            let _ = writeln!(o, "\n[[listeners]]");
            let _ = writeln!(o, "address = {}", quoted(&l.address));
            let _ = writeln!(o, "port = {}", l.port);
            let _ = writeln!(o, "transport = {}", quoted(l.transport.name()));
            l.write_tls(&mut o);
            l.write_mqtt(&mut o);
            if !l.access.is_empty() {
                let _ = writeln!(o, "[listeners.access]");
                write_access(
                    &mut o,
                    None,
                    l.access.allow_anonymous,
                    l.access.password_file.as_deref(),
                    l.access.acl_file.as_deref(),
                    l.access.allow_zero_length_clientid,
                );
            }
        }
        let l = &self.limits;
        let _ = writeln!(o, "\n[limits]");
        let _ = writeln!(o, "max_packet_size = {}", l.max_packet_size);
        let _ = writeln!(o, "max_inflight = {}", l.max_inflight);
        let _ = writeln!(o, "max_queued_messages = {}", l.max_queued_messages);
        let _ = writeln!(o, "max_queued_bytes = {}", l.max_queued_bytes);
        let _ = writeln!(o, "max_keep_alive = {}", l.max_keep_alive);
        let _ = writeln!(o, "max_connections = {}", l.max_connections);
        let _ = writeln!(o, "connect_timeout = {}", l.connect_timeout);
        let _ = writeln!(o, "topic_alias_maximum = {}", l.topic_alias_maximum);
        let _ = writeln!(o, "packet_timeout = {}", l.packet_timeout);
        let _ = writeln!(o, "max_publish_rate = {}", l.max_publish_rate);
        let _ = writeln!(o, "publish_burst = {}", l.publish_burst);
        let _ = writeln!(o, "max_publish_bytes_rate = {}", l.max_publish_bytes_rate);
        let _ = writeln!(
            o,
            "publish_rate_action = {}",
            quoted(l.publish_rate_action.name())
        );
        let _ = writeln!(o, "max_subscriptions = {}", l.max_subscriptions);
        let _ = writeln!(o, "max_topic_length = {}", l.max_topic_length);
        let _ = writeln!(o, "max_topic_levels = {}", l.max_topic_levels);
        let _ = writeln!(o, "\n[logging]");
        let _ = writeln!(o, "level = {}", quoted(&self.logging.level));
        let _ = writeln!(o, "verbose = {}", self.logging.verbose);
        let _ = writeln!(o, "format = {}", quoted(self.logging.format.name()));
        if let Some(f) = &self.logging.file {
            let _ = writeln!(o, "file = {}", toml_path(f));
        }
        let h = &self.http;
        if *h != HttpConfig::default() {
            let _ = writeln!(o, "\n[http]");
            if let Some(a) = &h.address {
                let _ = writeln!(o, "address = {}", quoted(a));
            }
            if h.token.is_some() {
                // Never printed: `--check` output ends up in tickets and chat.
                let _ = writeln!(o, "# token is set (not shown)");
            }
        }
        let a = &self.access;
        if *a != AccessConfig::default() {
            let _ = writeln!(o, "\n[access]");
            write_access(
                &mut o,
                a.per_listener_settings,
                a.allow_anonymous,
                a.password_file.as_deref(),
                a.acl_file.as_deref(),
                a.allow_zero_length_clientid,
            );
            if !a.clientid_prefixes.is_empty() {
                let list: Vec<String> = a.clientid_prefixes.iter().map(|p| quoted(p)).collect();
                let _ = writeln!(o, "clientid_prefixes = [{}]", list.join(", "));
            }
            if let Some(p) = &a.auto_id_prefix {
                let _ = writeln!(o, "auto_id_prefix = {}", quoted(p));
            }
        }
        let m = &self.mqtt;
        let _ = writeln!(o, "\n[mqtt]");
        let _ = writeln!(o, "retain_available = {}", m.retain_available);
        let _ = writeln!(o, "upgrade_outgoing_qos = {}", m.upgrade_outgoing_qos);
        let p = &self.persistence;
        if *p != PersistenceConfig::default() {
            let _ = writeln!(o, "\n[persistence]");
            if let Some(v) = p.enabled {
                let _ = writeln!(o, "enabled = {v}");
            }
            if let Some(v) = &p.location {
                let _ = writeln!(o, "location = {}", toml_path(v));
            }
            if let Some(v) = &p.file {
                let _ = writeln!(o, "file = {}", toml_path(Path::new(v)));
            }
            if let Some(v) = p.mode {
                let v = match v {
                    DurabilityMode::Sync => "sync",
                    DurabilityMode::Periodic => "periodic",
                    DurabilityMode::None => "none",
                };
                let _ = writeln!(o, "mode = \"{v}\"");
            }
            if let Some(v) = p.sync_interval_ms {
                let _ = writeln!(o, "sync_interval_ms = {v}");
            }
        }
        for b in &self.bridges {
            b.write_toml(&mut o);
        }
        o
    }

    /// Checks a configuration built or changed in code (as the command-line flags do) the
    /// way a file's is checked.
    pub fn check(&self) -> Result<(), Error> {
        self.validate()
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.listeners.is_empty() {
            return Err(Error::Config("at least one listener is needed".into()));
        }
        let l = &self.limits;
        if l.max_packet_size < 16 {
            return Err(Error::Config(
                "limits.max_packet_size must be at least 16".into(),
            ));
        }
        if l.max_inflight == 0 {
            return Err(Error::Config(
                "limits.max_inflight must be at least 1".into(),
            ));
        }
        if l.max_connections == 0 {
            return Err(Error::Config(
                "limits.max_connections must be at least 1".into(),
            ));
        }
        if !(1..=65_535).contains(&l.max_topic_length) {
            return Err(Error::Config(
                "limits.max_topic_length must be between 1 and 65535".into(),
            ));
        }
        if l.max_topic_levels == 0 {
            return Err(Error::Config(
                "limits.max_topic_levels must be at least 1".into(),
            ));
        }
        if let Some(a) = &self.http.address
            && a.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(Error::Config(format!(
                "http.address must be IP:PORT, e.g. \"127.0.0.1:9090\"; not {a:?}"
            )));
        }
        if self.http.token.as_deref() == Some("") {
            return Err(Error::Config(
                "http.token is empty: set a secret or remove the key".into(),
            ));
        }
        for l in &self.listeners {
            l.validate()?;
        }
        crate::bridge::check_all(&self.bridges).map_err(Error::Config)?;
        self.validate_access()
    }
}

/// A path as a TOML string.
fn toml_path(p: &Path) -> String {
    toml::Value::String(p.to_string_lossy().into_owned()).to_string()
}

/// Writes the keys of an access table that are set.
fn write_access(
    o: &mut String,
    per_listener_settings: Option<bool>,
    allow_anonymous: Option<bool>,
    password_file: Option<&Path>,
    acl_file: Option<&Path>,
    allow_zero_length_clientid: Option<bool>,
) {
    if let Some(v) = per_listener_settings {
        let _ = writeln!(o, "per_listener_settings = {v}");
    }
    if let Some(v) = allow_anonymous {
        let _ = writeln!(o, "allow_anonymous = {v}");
    }
    if let Some(v) = password_file {
        let _ = writeln!(o, "password_file = {}", toml_path(v));
    }
    if let Some(v) = acl_file {
        let _ = writeln!(o, "acl_file = {}", toml_path(v));
    }
    if let Some(v) = allow_zero_length_clientid {
        let _ = writeln!(o, "allow_zero_length_clientid = {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        let c = Config::from_toml_str("").unwrap();
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].port, 1883);
        assert_eq!(c.listeners[0].address, "127.0.0.1");
        assert_eq!(c.sys_interval, 10);
    }

    #[test]
    fn full_file() {
        let c = Config::from_toml_str(
            r#"
            sys_interval = 2
            capture = "x.pcapng"
            [[listeners]]
            address = "0.0.0.0"
            port = 1999
            [[listeners]]
            port = 0
            [limits]
            max_packet_size = 1000
            max_inflight = 5
            max_queued_messages = 7
            max_keep_alive = 60
            [logging]
            level = "debug"
            "#,
        )
        .unwrap();
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.listeners[1].address, "127.0.0.1");
        assert_eq!(c.limits.max_inflight, 5);
        assert_eq!(c.limits.max_keep_alive, 60);
        assert_eq!(c.limits.connect_timeout, 10);
        assert_eq!(c.logging.level, "debug");
    }

    #[test]
    fn example_file_parses() {
        let c = Config::from_toml_str(include_str!("../examples/broker.toml")).unwrap();
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.limits.max_queued_messages, 1000);
    }

    #[test]
    fn rejects_unknown_and_bad() {
        assert!(Config::from_toml_str("bogus = 1").is_err());
        assert!(Config::from_toml_str("listeners = []").is_err());
        assert!(Config::from_toml_str("[limits]\nmax_inflight = 0").is_err());
        assert!(Config::from_toml_str("[limits]\nmax_topic_levels = 0").is_err());
        assert!(Config::from_toml_str("[limits]\nmax_topic_length = 70000").is_err());
        assert!(Config::from_toml_str("[limits]\npublish_rate_action = \"drop\"").is_err());
    }

    #[test]
    fn client_limits_read_and_print_back() {
        let c = Config::from_toml_str(
            "[limits]\nmax_publish_rate = 50\npublish_burst = 10\n\
             max_publish_bytes_rate = 100000\npublish_rate_action = \"disconnect\"\n\
             max_subscriptions = 20\nmax_topic_length = 100\nmax_topic_levels = 8\n\
             packet_timeout = 5\n",
        )
        .unwrap();
        let l = &c.limits;
        assert_eq!(l.max_publish_rate, 50);
        assert_eq!(l.publish_rate_action, tinsel_core::RateAction::Disconnect);
        let again = Config::from_toml_str(&c.to_toml()).unwrap();
        let m = &again.limits;
        assert_eq!(
            (
                m.max_publish_rate,
                m.publish_burst,
                m.max_publish_bytes_rate
            ),
            (50, 10, 100_000)
        );
        assert_eq!(m.publish_rate_action, tinsel_core::RateAction::Disconnect);
        assert_eq!(
            (m.max_subscriptions, m.max_topic_length, m.max_topic_levels),
            (20, 100, 8)
        );
        assert_eq!(m.packet_timeout, 5);
        let d = Config::from_toml_str("").unwrap().limits;
        assert_eq!((d.packet_timeout, d.max_topic_levels), (30, 200));
    }

    #[test]
    fn http_section() {
        let c = Config::from_toml_str("[http]\naddress = \"127.0.0.1:0\"\ntoken = \"t\"").unwrap();
        assert_eq!(c.http.address.as_deref(), Some("127.0.0.1:0"));
        let printed = c.to_toml();
        assert!(printed.contains("address = \"127.0.0.1:0\""), "{printed}");
        assert!(
            !printed.contains("\"t\""),
            "the token is never printed: {printed}"
        );
        assert_eq!(
            crate::Format::detect("[http]\naddress = \"127.0.0.1:9090\""),
            crate::Format::Toml
        );
        assert!(Config::from_toml_str("[http]\naddress = \"9090\"").is_err());
        assert!(Config::from_toml_str("[http]\ntoken = \"\"").is_err());
        assert!(Config::from_toml_str("[http]\nport = 1").is_err());
        let c =
            Config::from_toml_str("[logging]\nformat = \"json\"\nfile = \"/tmp/x.log\"").unwrap();
        assert_eq!(c.logging.format, LogFormat::Json);
        assert!(Config::from_toml_str("[logging]\nformat = \"xml\"").is_err());
    }
}
