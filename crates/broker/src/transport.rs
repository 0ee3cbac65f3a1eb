//! The byte stream under a connection: plain TCP today; TLS and WebSocket implement the
//! same trait later.
//!
//! The connection task waits for readability and then reads what is buffered without
//! blocking, so an idle connection owns no read buffer. A transport with its own
//! buffering (TLS) reports readable when it has plaintext or the socket has bytes.

use std::future::Future;
use std::io;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A bidirectional byte stream carrying MQTT.
pub(crate) trait Transport: Send + 'static {
    /// Resolves when a read may make progress (data, end of stream or an error).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// Reads what is available into the spare capacity of `buf` without waiting;
    /// `WouldBlock` if nothing is, `Ok(0)` at the end of the stream.
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize>;

    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;

    /// Closes the sending side after everything written.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

impl Transport for TcpStream {
    async fn readable(&self) -> io::Result<()> {
        TcpStream::readable(self).await
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(self, buf).await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        AsyncWriteExt::shutdown(self).await
    }
}
