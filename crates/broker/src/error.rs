//! The broker's error type.

use std::net::SocketAddr;

/// What can stop the broker from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (the user's to fix).
    #[error("configuration: {0}")]
    Config(String),
    /// A line of a configuration file is wrong (the user's to fix): printed as
    /// `FILE:LINE: message`.
    #[error("{}:{line}: {message}", file.display())]
    ConfigLine {
        /// The file.
        file: std::path::PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// What is wrong, and what to do if that is not obvious.
        message: String,
    },
    /// A listener could not be bound (port taken, address not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened or recovered (its message names the file, and the
    /// offset of a corruption).
    #[error("persistence: {0}")]
    Store(#[from] tinsel_store::Error),
    /// The capture file could not be created.
    #[error("cannot create capture file {path}: {source}")]
    Capture {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another I/O failure of the environment.
    #[error("I/O error on {addr:?}: {source}")]
    Io {
        /// The socket concerned, if any.
        addr: Option<SocketAddr>,
        /// Why.
        source: std::io::Error,
    },
}
