//! Broker configuration, read from TOML.
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
//! ```

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
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listeners: vec![ListenerConfig::default()],
            capture: None,
            sys_interval: 10,
            limits: Limits::default(),
            logging: LoggingConfig::default(),
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
}

impl Default for ListenerConfig {
    fn default() -> ListenerConfig {
        ListenerConfig {
            address: "127.0.0.1".to_owned(),
            port: 1883,
            transport: Transport::Tcp,
        }
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

impl Config {
    /// Parses a TOML configuration.
    pub fn from_toml_str(s: &str) -> Result<Config, Error> {
        let config: Config = toml::from_str(s).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML configuration file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml_str(&text).map_err(|e| match e {
            // Name the file once, ahead of the parser's message (which has its own line/column).
            Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    fn validate(&self) -> Result<(), Error> {
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
