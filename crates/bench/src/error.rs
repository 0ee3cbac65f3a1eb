//! What can stop a benchmark run.

use std::net::SocketAddr;

/// Why a run failed. Split by who is at fault: the settings, the broker, or the machine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The settings do not fit together (the message says which flag to change).
    #[error("{0}")]
    Config(String),
    /// A TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source} (is the broker running?)")]
    Connect {
        /// The broker's address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The broker answered with a refusal (CONNACK or SUBACK failure code).
    #[error("broker refused: {0}")]
    Refused(String),
    /// The broker sent something the benchmark cannot follow.
    #[error("protocol error from broker: {0}")]
    Protocol(String),
    /// The broker closed a connection in the middle of the run.
    #[error("broker closed a connection during the run ({0})")]
    Closed(String),
    /// The broker stopped taking part: it read nothing, or acknowledged nothing, for too long.
    #[error("broker stalled: {0}")]
    Stalled(String),
    /// A socket or process error on this machine.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The run did not finish within its hard time limit.
    #[error("the run exceeded its time limit of {0} s")]
    TimeLimit(u64),
}
