//! `tinsel bench`: a load generator that measures MQTT brokers, and the side-by-side
//! comparison of Tinsel, Mosquitto and rumqttd built on it.
//!
//! A run ([`run`]) opens its connections, starts every publisher at the same instant,
//! and reports throughput, loss, duplicates, reordering, end-to-end latency percentiles
//! and, given the broker's pid, the broker's CPU seconds and memory read from `/proc`.
//! Each payload carries its publisher, a sequence number and a send timestamp
//! ([`payload`]), so the subscribers can check every delivery.
//!
//! The generator is meant to be cheaper per message than any broker it measures: it
//! talks to tokio sockets directly, batches writes and reads, pre-encodes each
//! publisher's PUBLISH once and patches sequence numbers into copies, and parses only
//! the fields it needs on the hot path. It does not reconnect or persist. Connections
//! go over plain TCP, TLS, WebSocket or WebSocket over TLS ([`Transport`]).
//!
//! [`compare`] starts brokers, runs a fixed suite against each, and writes a Markdown
//! table and an SVG chart.

mod config;
mod conn;
mod error;
mod load;
pub mod payload;
pub mod procstat;
mod progress;
mod report;
mod runner;
mod tracker;
mod wire;

pub mod compare;

pub use config::{BenchConfig, Scenario, Transport};
pub use error::BenchError;
pub use report::{BrokerStats, ConnectStats, Latency, Report};
pub use runner::run;
