//! WebSocket listeners (RFC 6455, MQTT's chapter 6): the HTTP upgrade on the listener's
//! path with the subprotocol `mqtt`, and [`WsTransport`], a WebSocket as the byte stream
//! MQTT runs on.
//!
//! MQTT packets travel in binary messages [MQTT-6.0.0-1]; a message may hold part of a
//! packet, or several [MQTT-6.0.0-2]: the messages' payloads are read as one stream, and
//! the connection's decoder finds the packets in it. A text message closes the connection.
//! Messages and frames are bounded by the broker's `max_packet_size` (plus a little for a
//! packet split oddly), so a client cannot make the broker buffer more than one packet's
//! worth in one message.
//!
//! Like TLS, a WebSocket connection never parks: tungstenite holds its state.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::transport::Transport;

/// The path a WebSocket listener upgrades on unless configured.
pub(crate) const DEFAULT_PATH: &str = "/mqtt";

/// The path that stands for every path (what Mosquitto's WebSocket listeners accept).
pub(crate) const ANY_PATH: &str = "*";

/// tungstenite's read buffer per connection (its default, 128 KiB, would be held by every
/// idle client).
const READ_BUFFER: usize = 4096;

/// The largest message the broker writes: a bigger batch of packets is split across
/// messages, as MQTT allows.
const MAX_WRITE_MESSAGE: usize = 64 * 1024;

/// The subprotocols the broker speaks, preferred first: `mqtt`, and `mqttv3.1` of old
/// MQTT 3.1 clients.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Accepts the HTTP upgrade of a new connection on `path`: a request for another path
/// gets 404, one that offers subprotocols but not MQTT's gets 400. A client that offers no
/// subprotocol at all is served (some do not send one).
pub(crate) async fn accept<S>(
    stream: S,
    path: Arc<str>,
    max_packet_size: u32,
) -> Result<WebSocketStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // A message holds at most one whole packet and the parts of two split ones.
    let max = (max_packet_size as usize).saturating_mul(2).max(1024);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    // tungstenite's callback type decides the error's size.
    #[allow(clippy::result_large_err)]
    let check = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if &*path != ANY_PATH && req.uri().path() != &*path {
            return Err(refusal(StatusCode::NOT_FOUND, "no MQTT here: wrong path"));
        }
        let offered: Vec<&str> = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if !offered.is_empty() {
            let Some(chosen) = SUBPROTOCOLS
                .into_iter()
                .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
            else {
                return Err(refusal(
                    StatusCode::BAD_REQUEST,
                    "the subprotocol must be mqtt",
                ));
            };
            resp.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static(chosen));
        }
        Ok(resp)
    };
    tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await
}

fn refusal(status: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_owned()));
    *r.status_mut() = status;
    r
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

/// A WebSocket carrying MQTT: the payloads of its binary messages as one byte stream.
pub(crate) struct WsTransport<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last message read.
    pending: Bytes,
    /// The client closed the WebSocket (or the stream ended).
    eof: bool,
    /// The client certificate's identity (WebSocket over TLS), until the connection
    /// registers.
    identity: Option<(Arc<str>, bool)>,
}

impl<S> WsTransport<S> {
    pub(crate) fn new(ws: WebSocketStream<S>, identity: Option<(Arc<str>, bool)>) -> Self {
        WsTransport {
            ws,
            pending: Bytes::new(),
            eof: false,
            identity,
        }
    }
}

impl<S> Transport for WsTransport<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    fn take_identity(&mut self) -> Option<(Arc<str>, bool)> {
        self.identity.take()
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames queued but not written (an answer to a ping, the tail of a write the
        // socket did not take at once) go out now.
        if let Poll::Ready(Err(e)) = self.ws.poll_flush_unpin(cx) {
            return Poll::Ready(Err(io_error(e)));
        }
        loop {
            if !self.pending.is_empty() || self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.ws.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Text(_))) => {
                    // [MQTT-6.0.0-1]
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text WebSocket message (MQTT needs binary ones)",
                    )));
                }
                // tungstenite answers pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => self.eof = true,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => self.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if self.pending.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = self.pending.len().min(buf.capacity() - buf.len()).max(1);
        buf.extend_from_slice(&self.pending[..n]);
        self.pending.advance(n);
        if self.pending.is_empty() {
            // Let the message's buffer go.
            self.pending = Bytes::new();
        }
        Ok(n)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(Sink::<Message>::poll_ready(
            std::pin::Pin::new(&mut self.ws),
            cx
        ))
        .map_err(io_error)?;
        let n = buf.len().min(MAX_WRITE_MESSAGE);
        let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
        self.ws.start_send_unpin(message).map_err(io_error)?;
        // What the socket does not take now goes with the next `poll_read_ready`.
        if let Poll::Ready(Err(e)) = self.ws.poll_flush_unpin(cx) {
            return Poll::Ready(Err(io_error(e)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A close frame, then the end of the stream.
        match ready!(self.ws.poll_close_unpin(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
            Err(e) => return Poll::Ready(Err(io_error(e))),
        }
        std::pin::Pin::new(self.ws.get_mut()).poll_shutdown(cx)
    }
}
