//! Broker configuration, read from TOML or from a Mosquitto configuration file.
//!
//! [`Config::read`] tells the two apart by their content, whatever the file's name (see
//! [`Format`]); Mosquitto's format is read by [`crate::mosquitto_conf`]. Every key, its
//! default and its Mosquitto equivalent are listed in `docs/configuration.md`.
//!
//! ```toml
//! sys_interval = 10            # seconds between $SYS updates; 0 turns them off
//!
//! [[listeners]]
//! address = "127.0.0.1"
//! port = 1883
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
//!
//! [logging]
//! level = "info"               # tracing filter, e.g. "debug" or "info,tinsel_broker=trace"
//! verbose = false              # log every packet in and out (same as `-v`)
//!
//! [access]                     # read and kept, not enforced yet
//! # allow_anonymous = true
//! # password_file = "/etc/tinsel/passwd"
//! # acl_file = "/etc/tinsel/acl"
//!
//! [persistence]                # off unless enabled (or `tinsel broker --data DIR`)
//! # enabled = false
//! # location = "/var/lib/tinsel"
//! # file = "tinsel.log"        # the log's name in `location`
//! # mode = "sync"              # "sync", "periodic" or "none" (see docs/persistence.md)
//! # sync_interval_ms = 1000    # periodic mode: time between syncs
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
    /// Authentication and access-control settings: read and kept, not enforced yet.
    pub access: AccessConfig,
    /// Durability: what is kept across restarts, where, and when it is synced.
    pub persistence: PersistenceConfig,
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
            persistence: PersistenceConfig::default(),
        }
    }
}

/// The transport a listener speaks. Only plain TCP today; TLS and WebSocket come later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Transport {
    /// MQTT over plain TCP.
    #[default]
    Tcp,
}

/// One listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// IP address to bind, e.g. `"127.0.0.1"` or `"0.0.0.0"`.
    pub address: String,
    /// TCP port; 0 picks a free one.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
    /// This listener's own access settings (Mosquitto's `per_listener_settings true`):
    /// read and kept, not enforced yet.
    pub access: ListenerAccess,
}

impl Default for ListenerConfig {
    fn default() -> ListenerConfig {
        ListenerConfig {
            address: "127.0.0.1".to_owned(),
            port: 1883,
            transport: Transport::Tcp,
            access: ListenerAccess::default(),
        }
    }
}

/// Authentication and access control, as Mosquitto's directives of the same names.
///
/// Read and kept so that the access layer can take them up; nothing here is enforced yet
/// (every client is allowed), and loading a file that sets one says so.
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
    /// default: true (Tinsel's behaviour today).
    pub allow_zero_length_clientid: Option<bool>,
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
}

impl Default for LoggingConfig {
    fn default() -> LoggingConfig {
        LoggingConfig {
            level: "info".to_owned(),
            verbose: false,
        }
    }
}

/// The two file formats `tinsel broker -c FILE` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Tinsel's own TOML.
    Toml,
    /// Mosquitto's `directive value` lines, read with Mosquitto's meanings.
    Mosquitto,
}

impl Format {
    /// Tells the formats apart by content: text that parses as TOML with only Tinsel's
    /// top-level keys is TOML; text whose every line is a comment or `directive [value]`
    /// is Mosquitto's; anything else is taken as TOML, so that its errors are TOML's.
    pub fn detect(text: &str) -> Format {
        const KEYS: [&str; 7] = [
            "listeners",
            "capture",
            "sys_interval",
            "limits",
            "logging",
            "access",
            "persistence",
        ];
        if let Ok(table) = text.parse::<toml::Table>() {
            if table.keys().all(|k| KEYS.contains(&k.as_str())) {
                return Format::Toml;
            }
        }
        if crate::mosquitto_conf::looks_like_mosquitto(text) {
            Format::Mosquitto
        } else {
            Format::Toml
        }
    }
}

/// A configuration file as read: the configuration, the format it was in, and what in
/// it Tinsel ignores (each warning names the file and line).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// The file's format.
    pub format: Format,
    /// Directives read but ignored, or kept but not acted on yet.
    pub warnings: Vec<crate::mosquitto_conf::Warning>,
}

impl Config {
    /// Parses a TOML configuration.
    pub fn from_toml_str(s: &str) -> Result<Config, Error> {
        let config: Config = toml::from_str(s).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a configuration file in either format (see [`Format::detect`]), keeping the
    /// warnings for the caller to show.
    pub fn read(path: &Path) -> Result<Loaded, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        match Format::detect(&text) {
            Format::Mosquitto => {
                let (config, warnings) = crate::mosquitto_conf::parse_str(&text, path)?;
                config.validate()?;
                Ok(Loaded {
                    config,
                    format: Format::Mosquitto,
                    warnings,
                })
            }
            Format::Toml => {
                let config = Config::from_toml_str(&text).map_err(|e| match e {
                    // Name the file once, ahead of the parser's message (which has its own
                    // line/column).
                    Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
                    other => other,
                })?;
                let mut warnings = Vec::new();
                config.warn_not_enforced(path, &mut warnings);
                Ok(Loaded {
                    config,
                    format: Format::Toml,
                    warnings,
                })
            }
        }
    }

    /// Reads a configuration file in either format; its warnings are logged.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let loaded = Config::read(path)?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        Ok(loaded.config)
    }

    /// Warnings for settings a TOML file sets that nothing acts on yet.
    fn warn_not_enforced(&self, path: &Path, out: &mut Vec<crate::mosquitto_conf::Warning>) {
        let access = &self.access;
        let listener_access = self.listeners.iter().any(|l| !l.access.is_empty());
        if access.allow_anonymous.is_some()
            || access.password_file.is_some()
            || access.acl_file.is_some()
            || access.allow_zero_length_clientid.is_some()
            || listener_access
        {
            out.push(crate::mosquitto_conf::Warning::whole_file(
                path,
                "the [access] settings are read but not enforced yet: every client is allowed",
            ));
        }
    }

    /// The configuration as TOML that [`Config::from_toml_str`] reads back to the same
    /// settings, every key written out (what `tinsel broker --check` prints).
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
            let transport = match l.transport {
                Transport::Tcp => "tcp",
            };
            let _ = writeln!(o, "transport = {}", quoted(transport));
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
        let _ = writeln!(o, "\n[logging]");
        let _ = writeln!(o, "level = {}", quoted(&self.logging.level));
        let _ = writeln!(o, "verbose = {}", self.logging.verbose);
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
        }
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
        o
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
        Ok(())
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
    }
}
