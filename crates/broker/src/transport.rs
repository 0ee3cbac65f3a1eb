//! The byte stream under a connection: plain TCP and Unix sockets here; TLS
//! ([`crate::tls`]) and WebSocket ([`crate::websocket`]) implement the same trait.
//!
//! The connection task is a hand-written future that polls its transport directly: it
//! waits for readability and then reads what is buffered without blocking, so an idle
//! connection owns no read buffer, and no future state of its own. A transport with its
//! own buffering (TLS) reports readable when it has plaintext or the socket has bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;

/// A bidirectional byte stream carrying MQTT.
pub(crate) trait Transport: Send + Unpin + 'static {
    /// Whether an idle connection on this transport can wait in the parking lot (it keeps
    /// no state of its own beyond the socket).
    const PARKABLE: bool = false;

    /// The plain socket, without its tokio registration, for the parking lot. Only called
    /// when [`Transport::PARKABLE`].
    fn into_std(self) -> io::Result<std::net::TcpStream>
    where
        Self: Sized,
    {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// What the transport proved about the client before its CONNECT: its TLS certificate's
    /// name, and whether that replaces the CONNECT's user name. Taken once, when the
    /// connection registers with the router.
    fn take_identity(&mut self) -> Option<(std::sync::Arc<str>, bool)> {
        None
    }

    /// Ready when a read may make progress (data, end of stream or an error); otherwise
    /// wakes the task when it may.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Reads what is available into the spare capacity of `buf` without waiting;
    /// `WouldBlock` if nothing is (the next [`Transport::poll_read_ready`] then waits),
    /// `Ok(0)` at the end of the stream. A read that returns less than the spare capacity
    /// took everything there was: the stream is then no longer readable until new bytes
    /// come, which saves the read that would only return `WouldBlock`.
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize>;

    /// Writes some of `buf`, or wakes the task when the stream takes more.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Closes the sending side after everything written.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Transport for TcpStream {
    const PARKABLE: bool = true;

    fn into_std(self) -> io::Result<std::net::TcpStream> {
        TcpStream::into_std(self)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let spare = buf.capacity() - buf.len();
        let mut n = 0;
        // `try_io` notes the readiness (and its tick) before the read, and clears it when the
        // closure says `WouldBlock`, as a short read does. Bytes that arrive after that note
        // raise a new readiness event (edge-triggered), which the clearing keeps.
        let stream = &*self;
        let r = stream.try_io(Interest::READABLE, || {
            n = TcpStream::try_read_buf(stream, buf)?;
            if n > 0 && n < spare {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => Ok(n),
            r => r,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(self), cx, buf)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(self), cx)
    }
}

/// A Unix domain socket connection: read like TCP, but it never parks (the parking lot
/// holds TCP sockets only), so an idle one keeps its task.
impl Transport for tokio::net::UnixStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::UnixStream::poll_read_ready(self, cx)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let spare = buf.capacity() - buf.len();
        let mut n = 0;
        // As for TCP: a short read clears the readiness (see `TcpStream`'s impl).
        let stream = &*self;
        let r = stream.try_io(Interest::READABLE, || {
            n = tokio::net::UnixStream::try_read_buf(stream, buf)?;
            if n > 0 && n < spare {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => Ok(n),
            r => r,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(self), cx, buf)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(self), cx)
    }
}
