//! The Tinsel MQTT broker (MQTT 3.1, 3.1.1 and 5.0 over TCP, TLS and WebSocket): the tokio
//! shell around [`tinsel_core`].
//!
//! The core decides everything MQTT says; this crate owns what it does not: sockets and
//! listeners, one task per busy connection, a parking lot (one thread with an epoll set of
//! its own) that accepts connections, answers their CONNECT and keeps idle connections
//! without a task, a connection cap, the timer driver, shutdown by a watch signal, and
//! optional packet capture (with capture, tokio tasks accept), and the operations HTTP
//! listener (Prometheus metrics, health checks, the admin API; off unless configured).
//!
//! Listeners speak plain TCP, TLS 1.2/1.3 (rustls; client certificates optional or
//! required, their name usable as the user name), WebSocket and WebSocket over TLS (see
//! [`config::Transport`]); only plain TCP connections park.
//!
//! Unix socket listeners are served too, and TCP-based listeners may take the PROXY
//! protocol (v1/v2) from a load balancer.
//!
//! Access: password files and ACL files in Mosquitto's formats ([`FileAccess`], from the
//! configuration's `[access]`, or each listener's own with `per_listener_settings`), through
//! the core's [`tinsel_core::Authenticator`] and
//! [`tinsel_core::Authorizer`] seams. Persistence: the core's durability records go to
//! `tinsel-store` (from `[persistence]`), and acknowledgements wait for them in `sync`
//! mode. Bridges ([`bridge`]) carry messages to and from other brokers, with Mosquitto's
//! semantics.
//!
//! # Bounds
//!
//! Every queue is bounded and says what happens when it is full:
//!
//! - per session, messages waiting for an offline client or for its Receive Maximum:
//!   `limits.max_queued_messages` and `limits.max_queued_bytes`; when full the newest
//!   message is dropped (QoS 0 is never queued for an offline client);
//! - per connection, QoS 0 messages not yet written: `limits.max_queued_messages`; further
//!   ones are dropped (a reader too slow for QoS 0 loses messages, never memory). Before
//!   that, from half of it, the publishers feeding a subscriber that is still reading stop
//!   being read until it catches up, so TCP slows them down; a subscriber whose connection
//!   wrote nothing for half a second (its client does not read) holds nobody back;
//! - messages in flight: the client's Receive Maximum (MQTT 5) or `limits.max_inflight`;
//! - incoming QoS 2 awaiting PUBREL: `limits.max_inflight`, beyond that DISCONNECT 0x93;
//! - a connection's own replies: the task stops reading while it writes, so a client that
//!   does not read is slowed down by TCP, not buffered;
//! - connections: `limits.max_connections` over all listeners, and a listener's own
//!   `max_connections`; further ones are closed on accept;
//! - the parking lot's requests to take connections out: at most one per parked connection
//!   per wake-up batch.
//!
//! Dropped messages are counted in `$SYS/broker/messages/dropped`.
//!
//! ```no_run
//! # async fn f() -> Result<(), tinsel_broker::Error> {
//! use tinsel_broker::{Broker, Config};
//! let broker = Broker::bind(Config::default()).await?;
//! println!("listening on {:?}", broker.local_addrs());
//! broker.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod access_rules;
mod auth;
pub mod bridge;
pub mod capture;
pub mod config;
mod config_file;
mod connection;
mod error;
pub mod file_access;
mod linger;
mod listener_settings;
mod listeners;
pub mod mosquitto_conf;
mod ops;
mod parking;
mod proxy;
mod server;
mod shared;
mod sockopt;
mod store;
mod tls;
mod transport;
mod websocket;
mod wire;
mod x509;

pub use bridge::BridgeConfig;
pub use config::{
    Config, HttpConfig, Limits, ListenerConfig, LogFormat, LoggingConfig, MqttConfig, MqttVersion,
};
pub use config_file::{Format, Loaded};
pub use error::Error;
pub use file_access::{AccessFiles, FileAccess};
pub use server::Broker;
pub use tinsel_core::{
    AllowAll, AuthDecision, Authenticator, Authorizer, ConnectInfo, Identity, Verdict,
};
