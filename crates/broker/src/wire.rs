//! The TCP socket under a TLS connection, with the capture of the bytes that actually
//! cross the wire.
//!
//! A plain TCP connection's capture is made from the MQTT bytes its task reads and writes
//! (they are the wire's bytes). A TLS connection's task only sees MQTT after rustls has
//! decrypted it, so recording there would put plaintext in the capture of an encrypted
//! listener. [`Wire`] records below rustls instead: the TLS handshake and the encrypted
//! records (with WebSocket over TLS, the upgrade and the frames inside them), exactly as
//! sent and received. The capture of a TLS listener therefore holds no plaintext, which is
//! what a packet capture of the real network would show.
//!
//! A plain WebSocket connection is captured like plain TCP, as the MQTT it carries (which
//! Wireshark decodes as MQTT), not as its HTTP upgrade and frames.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::capture::ConnCapture;

/// A TCP stream whose reads and writes go to the connection's capture, if it has one.
pub(crate) struct Wire {
    tcp: TcpStream,
    /// Boxed: most connections are not captured.
    capture: Option<Box<ConnCapture>>,
}

impl Wire {
    pub(crate) fn new(tcp: TcpStream, capture: Option<ConnCapture>) -> Wire {
        Wire {
            tcp,
            capture: capture.map(Box::new),
        }
    }

    /// Ready when the socket has bytes to read (or an error), as
    /// [`TcpStream::poll_read_ready`].
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        if let Some(c) = &mut this.capture {
            c.inbound(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.tcp).poll_write(cx, buf))?;
        if let Some(c) = &mut this.capture {
            c.outbound(&buf[..n]);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs))?;
        if let Some(c) = &mut this.capture {
            // The first `n` bytes of the slices, in order: what the socket took.
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(b.len());
                c.outbound(&b[..take]);
                left -= take;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
