//! The Tinsel MQTT broker (MQTT 3.1, 3.1.1 and 5.0 over TCP).
//!
//! Two layers:
//!
//! - a sans-IO core (`router`, `session`, [`topic_tree`], [`retained`]) that holds every
//!   connection's protocol state, the sessions, subscriptions, retained messages and wills.
//!   It does no I/O and reads no clock: packets and the time go in, packets to write come out.
//! - a thin tokio layer ([`Broker`]) around it: listeners, one task per connection, a
//!   connection cap, timers, shutdown by a watch signal, optional packet capture.
//!
//! What it does not do yet: TLS, WebSocket, authentication and persistence. Their places
//! are ready: [`config::Transport`] for listeners, [`AuthHook`] for authentication and ACLs,
//! [`SessionStore`] for a disk store.
//!
//! ```no_run
//! # async fn f() -> Result<(), tinsel_broker::Error> {
//! use tinsel_broker::{Broker, Config};
//! let broker = Broker::bind(Config::default()).await?;
//! println!("listening on {:?}", broker.local_addrs());
//! broker.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod capture;
pub mod config;
mod connection;
mod error;
mod hooks;
mod outbox;
pub mod retained;
mod router;
mod server;
mod session;
mod sys;
pub mod topic_tree;
mod transport;

pub use config::{Config, Limits, ListenerConfig, LoggingConfig};
pub use error::Error;
pub use hooks::{AllowAll, AuthHook, ConnectInfo, MemoryStore, SessionStore};
pub use server::Broker;
