//! What can go wrong talking to a broker.

use tinsel_codec::{DecodeError, EncodeError, ReasonCode};

/// Why an operation failed. Variants are split by who is at fault: the environment
/// (I/O, TLS setup), the broker (it refused, disconnected or broke the protocol), or the
/// caller (an invalid topic, a closed client).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP (or Unix socket) connection could not be opened.
    #[error("unable to connect to {addr}: {source}")]
    Unreachable {
        /// The address tried (`host:port` or a socket path).
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Reading from or writing to the connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up (bad CA file, certificate or key) or the handshake failed.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The WebSocket upgrade failed (wrong path, no `mqtt` subprotocol, not a WebSocket
    /// server).
    #[error("WebSocket error: {0}")]
    WebSocket(String),
    /// The broker answered CONNECT with a failure reason code.
    #[error("connection refused: {}", refused_text(*.reason, .reason_string.as_deref()))]
    ConnectionRefused {
        /// The CONNACK reason code (3.1.1 return codes are mapped to MQTT 5 codes).
        reason: ReasonCode,
        /// The broker's reason string (MQTT 5), if any.
        reason_string: Option<String>,
    },
    /// The broker sent DISCONNECT (MQTT 5) with this reason.
    #[error("disconnected by the broker: {}", refused_text(*.reason, .reason_string.as_deref()))]
    ServerDisconnect {
        /// The DISCONNECT reason code.
        reason: ReasonCode,
        /// The broker's reason string, if any.
        reason_string: Option<String>,
    },
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    ConnectionClosed,
    /// No PINGRESP (or anything else) arrived within the keep-alive period.
    #[error("keep alive timeout: the broker stopped answering")]
    KeepAliveTimeout,
    /// No CONNACK arrived in time.
    #[error("timed out waiting for CONNACK")]
    ConnectTimeout,
    /// The broker sent bytes that do not decode.
    #[error("malformed packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (a field is too long).
    #[error("cannot encode packet: {0}")]
    Encode(#[from] EncodeError),
    /// The broker broke the protocol in some other way.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker refused a publish (MQTT 5 PUBACK/PUBREC with a failure reason code).
    #[error("publish {packet_id} refused: {}", refused_text(*.reason, .reason_string.as_deref()))]
    PublishRefused {
        /// The packet identifier the publish was sent with.
        packet_id: u16,
        /// The reason code.
        reason: ReasonCode,
        /// The broker's reason string, if any.
        reason_string: Option<String>,
    },
    /// A topic name is not valid for PUBLISH (empty, or holds `+` or `#`).
    #[error("invalid topic '{0}'")]
    InvalidTopic(String),
    /// A topic filter is not valid for SUBSCRIBE/UNSUBSCRIBE.
    #[error("invalid subscription topic '{0}'")]
    InvalidFilter(String),
    /// The broker does not support what was asked (MQTT 5 CONNACK limits: maximum QoS,
    /// retain available, maximum packet size).
    #[error("not supported by the broker: {0}")]
    NotSupported(String),
    /// Too many publishes are waiting: the application publishes faster than the broker
    /// acknowledges while not reading its events. The publish was dropped.
    #[error("too many publishes waiting for the broker; this one was dropped")]
    Overloaded,
    /// The client is between connections (reconnecting) and the operation cannot wait.
    #[error("not connected")]
    NotConnected,
    /// The client has shut down (after `disconnect`, or the connection was lost without
    /// reconnection).
    #[error("the client is closed")]
    Closed,
}

impl Error {
    /// The reason code, when the broker gave one (refused CONNECT, DISCONNECT, refused
    /// publish).
    pub fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            Error::ConnectionRefused { reason, .. }
            | Error::ServerDisconnect { reason, .. }
            | Error::PublishRefused { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

fn refused_text(reason: ReasonCode, reason_string: Option<&str>) -> String {
    let base = match reason.description() {
        Some(d) => format!("{d} (0x{:02X})", reason.0),
        None => format!("reason code 0x{:02X}", reason.0),
    };
    match reason_string {
        Some(s) => format!("{base}: {s}"),
        None => base,
    }
}
