//! What lies between a benchmark connection's MQTT bytes and its TCP socket: nothing (plain
//! TCP), TLS (rustls), WebSocket framing (MQTT's chapter 6: binary frames on the path the
//! broker serves, subprotocol `mqtt`), or WebSocket over TLS.
//!
//! The hot loops keep reading and writing the TCP socket without blocking; a [`Layer`] turns
//! what they read into MQTT bytes ([`Layer::unwrap`]) and MQTT bytes into what they write
//! ([`Layer::wrap`]). The handshakes (TLS, the HTTP upgrade) use tokio-rustls and
//! tokio-tungstenite before the layer takes over the connection's state.

use std::io::{Cursor, Read, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::BenchError;
use crate::config::Transport;

/// Plaintext taken out of TLS per read call; what the broker sent is drained in such steps.
const TLS_READ_STEP: usize = 16 * 1024;

/// How to wrap every connection of a run: built once from the run's settings.
#[derive(Clone)]
pub(crate) struct WireOpts {
    pub(crate) transport: Transport,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// `ws://host:port/path` for the upgrade request.
    ws_url: String,
}

impl std::fmt::Debug for WireOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireOpts")
            .field("transport", &self.transport)
            .field("ws_url", &self.ws_url)
            .finish_non_exhaustive()
    }
}

impl WireOpts {
    /// Reads the CA file once (TLS transports). `server_name` is checked against the broker's
    /// certificate; `ws_path` is the WebSocket listener's path.
    pub(crate) fn new(
        transport: Transport,
        broker: std::net::SocketAddr,
        cafile: Option<&Path>,
        server_name: &str,
        ws_path: &str,
    ) -> Result<WireOpts, BenchError> {
        let tls = if transport.is_tls() {
            let cafile = cafile.ok_or_else(|| {
                BenchError::Config(format!(
                    "--transport {} needs --cafile FILE (the CA that signed the broker's certificate)",
                    transport.name()
                ))
            })?;
            let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
                BenchError::Config(format!("invalid TLS server name {server_name:?}"))
            })?;
            Some((TlsConnector::from(Arc::new(client_config(cafile)?)), name))
        } else {
            None
        };
        let host = match broker.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let path = if ws_path.starts_with('/') {
            ws_path.to_owned()
        } else {
            format!("/{ws_path}")
        };
        Ok(WireOpts {
            transport,
            tls,
            ws_url: format!("ws://{host}:{}{path}", broker.port()),
        })
    }

    /// Runs the handshakes on a connected socket; `None` for plain TCP.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<(TcpStream, Option<Box<Layer>>), BenchError> {
        let ws = self.transport.is_websocket();
        let (tcp, tls) = match &self.tls {
            None => {
                let mut tcp = tcp;
                if ws {
                    self.upgrade(&mut tcp).await?;
                }
                (tcp, None)
            }
            Some((connector, name)) => {
                let mut stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| BenchError::Refused(format!("TLS handshake: {e}")))?;
                if ws {
                    self.upgrade(&mut stream).await?;
                }
                let (tcp, conn) = stream.into_inner();
                (tcp, Some(Box::new(conn)))
            }
        };
        if tls.is_none() && !ws {
            return Ok((tcp, None));
        }
        Ok((
            tcp,
            Some(Box::new(Layer {
                raw_in: BytesMut::new(),
                raw_out: BytesMut::new(),
                tls,
                ws,
                deframe: BytesMut::new(),
                mask: 0x9E37_79B9,
            })),
        ))
    }

    /// The HTTP upgrade to a WebSocket with the subprotocol `mqtt`. The broker sends nothing
    /// after its `101` until it has a CONNECT, so no bytes are left behind in the handshake's
    /// buffer when the layer takes over.
    async fn upgrade<S>(&self, stream: &mut S) -> Result<(), BenchError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut request = self
            .ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| BenchError::Config(format!("{}: {e}", self.ws_url)))?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| BenchError::Refused(format!("WebSocket upgrade: {e}")))?;
        drop(ws);
        Ok(())
    }
}

/// A TLS client configuration trusting the certificates in `cafile` (PEM).
fn client_config(cafile: &Path) -> Result<rustls::ClientConfig, BenchError> {
    let unreadable =
        |e: &dyn std::fmt::Display| BenchError::Config(format!("{}: {e}", cafile.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cafile).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"no certificate in the file"));
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The TLS and WebSocket state of one connection.
pub(crate) struct Layer {
    /// Read from the socket, not yet through the layer.
    pub(crate) raw_in: BytesMut,
    /// Through the layer, not yet written to the socket. Bounded by the caller: it wraps
    /// more only when this is empty.
    pub(crate) raw_out: BytesMut,
    tls: Option<Box<rustls::ClientConnection>>,
    ws: bool,
    /// WebSocket: bytes out of TLS, not yet split into frames (unused without TLS, where
    /// `raw_in` holds them).
    deframe: BytesMut,
    /// The state of the masks' generator (client frames are masked, RFC 6455 5.3).
    mask: u32,
}

impl Layer {
    /// Moves what arrived in `raw_in` through TLS and the WebSocket framing into `rbuf`.
    pub(crate) fn unwrap(&mut self, rbuf: &mut BytesMut) -> Result<(), BenchError> {
        let framed = match self.tls.as_deref_mut() {
            None => &mut self.raw_in,
            Some(tls) => {
                let out = if self.ws {
                    &mut self.deframe
                } else {
                    &mut *rbuf
                };
                while !self.raw_in.is_empty() {
                    let mut src = &self.raw_in[..];
                    let n = tls.read_tls(&mut src)?;
                    self.raw_in.advance(n);
                    tls.process_new_packets()
                        .map_err(|e| BenchError::Protocol(format!("TLS: {e}")))?;
                    drain_plaintext(tls, out)?;
                }
                // Alerts, key updates: written with the next flush.
                while tls.wants_write() {
                    tls.write_tls(&mut (&mut self.raw_out).writer())?;
                }
                if !self.ws {
                    return Ok(());
                }
                &mut self.deframe
            }
        };
        if self.ws {
            deframe(framed, rbuf, &mut self.raw_out, &mut self.mask)?;
        }
        Ok(())
    }

    /// Moves all of `wbuf` through the WebSocket framing and TLS into `raw_out`.
    pub(crate) fn wrap(&mut self, wbuf: &mut BytesMut) -> Result<(), BenchError> {
        if wbuf.is_empty() {
            return Ok(());
        }
        match self.tls.as_deref_mut() {
            None => {
                if self.ws {
                    put_frame(&mut self.raw_out, 0x2, wbuf, &mut self.mask);
                } else {
                    self.raw_out.extend_from_slice(wbuf);
                }
            }
            Some(tls) => {
                let framed;
                let mut rest: &[u8] = if self.ws {
                    let mut f = BytesMut::with_capacity(wbuf.len() + 14);
                    put_frame(&mut f, 0x2, wbuf, &mut self.mask);
                    framed = f;
                    &framed
                } else {
                    wbuf
                };
                // rustls takes at most its buffer limit at a time; its records move to
                // `raw_out` after each step.
                while !rest.is_empty() {
                    let n = tls.writer().write(rest)?;
                    rest = &rest[n..];
                    if n == 0 && !tls.wants_write() {
                        return Err(BenchError::Closed("TLS took no more data".into()));
                    }
                    while tls.wants_write() {
                        tls.write_tls(&mut (&mut self.raw_out).writer())?;
                    }
                }
            }
        }
        wbuf.clear();
        Ok(())
    }
}

impl Layer {
    /// Queues TLS's close_notify in `raw_out` (nothing without TLS).
    pub(crate) fn close(&mut self) -> Result<(), BenchError> {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            while tls.wants_write() {
                tls.write_tls(&mut (&mut self.raw_out).writer())?;
            }
        }
        Ok(())
    }
}

/// Reads every plaintext byte rustls holds into `out`.
fn drain_plaintext(
    tls: &mut rustls::ClientConnection,
    out: &mut BytesMut,
) -> Result<(), BenchError> {
    let mut step = [0u8; TLS_READ_STEP];
    loop {
        match tls.reader().read(&mut step) {
            Ok(0) => return Err(BenchError::Closed("the broker closed TLS".into())),
            Ok(n) => out.extend_from_slice(&step[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Splits whole WebSocket frames off `src`: binary and continuation payloads go to `dst`,
/// a ping is answered in `out`, a close ends the connection.
fn deframe(
    src: &mut BytesMut,
    dst: &mut BytesMut,
    out: &mut BytesMut,
    mask: &mut u32,
) -> Result<(), BenchError> {
    loop {
        let mut cur = Cursor::new(&src[..]);
        let Some((header, len)) = FrameHeader::parse(&mut cur)
            .map_err(|e| BenchError::Protocol(format!("WebSocket: {e}")))?
        else {
            return Ok(());
        };
        let start = cur.position() as usize;
        let len = usize::try_from(len)
            .map_err(|_| BenchError::Protocol("WebSocket frame too large".into()))?;
        if src.len() - start < len {
            return Ok(());
        }
        let payload = &src[start..start + len];
        match header.opcode {
            OpCode::Data(Data::Binary | Data::Continue) => {
                let at = dst.len();
                dst.extend_from_slice(payload);
                if let Some(m) = header.mask {
                    apply_mask(&mut dst[at..], m);
                }
            }
            OpCode::Control(Control::Ping) => {
                let mut body = payload.to_vec();
                if let Some(m) = header.mask {
                    apply_mask(&mut body, m);
                }
                put_frame(out, 0xA, &body, mask);
            }
            OpCode::Control(Control::Pong) => {}
            OpCode::Control(Control::Close) => {
                return Err(BenchError::Closed("the broker closed the WebSocket".into()));
            }
            other => {
                return Err(BenchError::Protocol(format!(
                    "WebSocket: unexpected {other} frame"
                )));
            }
        }
        src.advance(start + len);
    }
}

/// Appends one final, masked frame with `opcode` holding `payload`.
fn put_frame(out: &mut BytesMut, opcode: u8, payload: &[u8], mask: &mut u32) {
    // xorshift32: masks differ frame to frame; they need not be secret here.
    *mask ^= *mask << 13;
    *mask ^= *mask >> 17;
    *mask ^= *mask << 5;
    let key = mask.to_be_bytes();
    out.put_u8(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.put_u8(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.put_u8(0x80 | 126);
        out.put_u16(short);
    } else {
        out.put_u8(0x80 | 127);
        out.put_u64(len as u64);
    }
    out.put_slice(&key);
    let at = out.len();
    out.put_slice(payload);
    apply_mask(&mut out[at..], key);
}

fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_deframe() {
        let mut wire = BytesMut::new();
        let mut mask = 1;
        let big = vec![7u8; 70_000];
        put_frame(&mut wire, 0x2, b"\x10\x02ab", &mut mask);
        put_frame(&mut wire, 0x2, &big, &mut mask);
        put_frame(&mut wire, 0x9, b"hi", &mut mask); // a ping
        let mut dst = BytesMut::new();
        let mut out = BytesMut::new();
        // Byte by byte: nothing is taken before a frame is whole.
        let mut src = BytesMut::new();
        for b in wire.iter() {
            src.put_u8(*b);
            deframe(&mut src, &mut dst, &mut out, &mut mask).unwrap();
        }
        assert!(src.is_empty());
        assert_eq!(&dst[..4], b"\x10\x02ab");
        assert_eq!(&dst[4..], &big[..]);
        // The pong carries the ping's payload, masked.
        assert_eq!(out[0], 0x8A);
        assert_eq!(out[1], 0x80 | 2);
        let key = [out[2], out[3], out[4], out[5]];
        let mut body = out[6..].to_vec();
        apply_mask(&mut body, key);
        assert_eq!(body, b"hi");
    }

    #[test]
    fn a_close_frame_ends_the_connection() {
        let mut src = BytesMut::from(&[0x88u8, 0x00][..]);
        let err = deframe(&mut src, &mut BytesMut::new(), &mut BytesMut::new(), &mut 1);
        assert!(matches!(err, Err(BenchError::Closed(_))));
    }
}
