//! MQTT over WebSocket (MQTT's chapter 6): the HTTP upgrade with the subprotocol `mqtt`,
//! then the payloads of binary messages as the byte stream the client reads and writes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::transport::Io;
use crate::{ClientOptions, Error};

/// Upgrades `io` (TCP or TLS to the broker) to a WebSocket on `path`.
pub(crate) async fn upgrade(
    io: Box<dyn Io>,
    opts: &ClientOptions,
    path: &str,
) -> Result<Box<dyn Io>, Error> {
    let scheme = if opts.tls.is_some() { "wss" } else { "ws" };
    let host = if opts.host.contains(':') {
        format!("[{}]", opts.host)
    } else {
        opts.host.clone()
    };
    let url = format!("{scheme}://{host}:{}{path}", opts.port);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::WebSocket(format!("{url}: {e}")))?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(opts.max_packet_size as usize * 2))
        .max_frame_size(Some(opts.max_packet_size as usize * 2));
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
        .await
        .map_err(|e| Error::WebSocket(format!("{url}: {e}")))?;
    Ok(Box::new(WsIo {
        ws,
        pending: Bytes::new(),
    }))
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// A WebSocket as a byte stream: what is read is the payloads of binary messages in
/// order; each write is one binary message.
struct WsIo {
    ws: WebSocketStream<Box<dyn Io>>,
    /// What is left of the last message read.
    pending: Bytes,
}

impl AsyncRead for WsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.pending.is_empty() {
            match ready!(this.ws.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(b))) => this.pending = b,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text WebSocket message (MQTT uses binary ones)",
                    )));
                }
                // The end of the stream.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(()));
                }
                // tungstenite answers pings itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = &mut self.ws;
        ready!(Sink::<Message>::poll_ready(Pin::new(&mut *ws), cx)).map_err(io_error)?;
        let message = Message::Binary(Bytes::copy_from_slice(buf));
        ws.start_send_unpin(message).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ws.poll_flush_unpin(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(self.ws.poll_close_unpin(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}
