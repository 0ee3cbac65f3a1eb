//! One benchmark connection: a TCP socket, its read and write buffers, the CONNECT and
//! SUBSCRIBE handshakes, and the few bytes of packet parsing the hot loops need.
//!
//! Setup packets go through the codec in full. On the hot path a PUBLISH is framed by
//! [`tinsel_codec::check_frame`] and then only the fields the benchmark needs are read
//! (packet id, payload), so the generator spends its time in system calls, not in parsing.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tinsel_codec::{
    ByteStr, Connect, FixedHeader, Packet, PacketType, Properties, ProtocolVersion, QoS, Subscribe,
    SubscriptionOptions, check_frame, decode_packet, encode_packet,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::BenchError;
use crate::wire::{Layer, WireOpts};

/// Largest packet accepted from the broker.
pub(crate) const MAX_PACKET: u32 = 32 * 1024 * 1024;

/// Free space kept in a read buffer before each read: one read takes up to this much.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Space reserved for each read while waiting for a handshake answer (CONNACK, SUBACK).
const HANDSHAKE_READ: usize = 128;

/// A publisher stops adding messages to its write buffer at this size, writes, and goes on
/// when the socket takes more: the bound on a connection's write buffer.
pub(crate) const WRITE_BATCH: usize = 64 * 1024;

/// An open, accepted MQTT connection.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
    pub(crate) version: ProtocolVersion,
    /// The broker's Receive Maximum (MQTT 5 CONNACK), 65,535 when it sets none.
    pub(crate) receive_maximum: u16,
    pub(crate) keep_alive: Duration,
    pub(crate) last_send: Instant,
    /// The session outlives the connection (MQTT 5: ended by the DISCONNECT at the end).
    pub(crate) persistent: bool,
    /// TLS and/or WebSocket between `rbuf`/`wbuf` and the socket; `None` on plain TCP.
    pub(crate) layer: Option<Box<Layer>>,
}

/// How to open connections.
#[derive(Debug, Clone)]
pub(crate) struct ConnOpts {
    pub(crate) broker: SocketAddr,
    pub(crate) version: ProtocolVersion,
    pub(crate) keep_alive: u16,
    /// CONNECT without Clean Session / Clean Start (see [`crate::BenchConfig::persistent`]).
    pub(crate) persistent: bool,
    /// User name and password of every CONNECT.
    pub(crate) username: Option<ByteStr>,
    pub(crate) password: Option<bytes::Bytes>,
    pub(crate) wire: std::sync::Arc<WireOpts>,
}

impl Conn {
    /// Opens a TCP connection (from `source` when given), sends CONNECT with a clean
    /// session and waits for a successful CONNACK.
    /// `source` is a local address and a port to try first: binding port 0 makes the
    /// kernel search for a free port, which costs more with every connection already open
    /// (at 20,000 connections it dominated the connect rate), so the caller spreads
    /// connections over explicit ports and port 0 is only the fallback.
    pub(crate) async fn open(
        opts: &ConnOpts,
        source: Option<(IpAddr, u16)>,
        client_id: &str,
    ) -> Result<Conn, BenchError> {
        let addr = opts.broker;
        let connect_err = |source| BenchError::Connect { addr, source };
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(connect_err)?;
        if let Some((ip, port)) = source {
            // Reuse lets a port whose old connection is in TIME_WAIT be bound again.
            sock.set_reuseaddr(true).map_err(connect_err)?;
            if sock.bind(SocketAddr::new(ip, port)).is_err() {
                sock.bind(SocketAddr::new(ip, 0)).map_err(connect_err)?;
            }
        }
        let stream = sock.connect(addr).await.map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let (stream, layer) = opts.wire.handshake(stream).await?;
        let mut conn = Conn {
            stream,
            layer,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::with_capacity(256),
            version: opts.version,
            receive_maximum: u16::MAX,
            keep_alive: Duration::from_secs(u64::from(opts.keep_alive)),
            last_send: Instant::now(),
            persistent: opts.persistent,
        };
        let mut properties = Properties::default();
        if opts.version.is_v5() {
            // Generous: let the broker send as many QoS 1/2 messages as it likes.
            properties.make_mut().receive_maximum = Some(u16::MAX);
            properties.make_mut().maximum_packet_size = Some(MAX_PACKET);
            if opts.persistent {
                properties.make_mut().session_expiry_interval =
                    Some(crate::config::PERSISTENT_EXPIRY_S);
            }
        }
        let connect = Connect {
            protocol: opts.version,
            clean_start: !opts.persistent,
            keep_alive: opts.keep_alive,
            properties,
            client_id: ByteStr::try_from(client_id)
                .map_err(|_| BenchError::Config(format!("invalid client id {client_id:?}")))?,
            will: None,
            username: opts.username.clone(),
            password: opts.password.clone(),
            bridge: false,
        };
        conn.send(&connect.into()).await?;
        match conn.next_packet().await? {
            Packet::ConnAck(ack) if ack.reason.is_success() => {
                if let Some(max) = ack.properties.receive_maximum {
                    conn.receive_maximum = max;
                }
                Ok(conn)
            }
            Packet::ConnAck(ack) => Err(BenchError::Refused(format!(
                "CONNACK {} for {client_id}",
                reason_text(ack.reason)
            ))),
            other => Err(BenchError::Protocol(format!(
                "expected CONNACK, got {}",
                other.packet_type().name()
            ))),
        }
    }

    /// Subscribes to `filter` and waits for the SUBACK.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), BenchError> {
        let sub = Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(
                ByteStr::try_from(filter)
                    .map_err(|_| BenchError::Config(format!("invalid filter {filter:?}")))?,
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            )],
        };
        self.send(&sub.into()).await?;
        loop {
            match self.next_packet().await? {
                Packet::SubAck(ack) => {
                    return match ack.reasons.first() {
                        Some(r) if r.0 <= 2 => Ok(()),
                        Some(r) => Err(BenchError::Refused(format!(
                            "SUBACK {} for {filter}",
                            reason_text(*r)
                        ))),
                        None => Err(BenchError::Protocol("SUBACK without reason codes".into())),
                    };
                }
                // Nothing is published on this run's topics yet; anything else (a retained
                // message on a user-chosen filter) is skipped.
                _ => continue,
            }
        }
    }

    /// Encodes and writes one packet, waiting until it is written (setup only).
    pub(crate) async fn send(&mut self, packet: &Packet) -> Result<(), BenchError> {
        encode_packet(packet, self.version, &mut self.wbuf).map_err(|e| {
            BenchError::Config(format!(
                "cannot encode {}: {e}",
                packet.packet_type().name()
            ))
        })?;
        self.flush_all().await
    }

    /// Writes the write buffer out, waiting for the socket as needed (setup and close).
    async fn flush_all(&mut self) -> Result<(), BenchError> {
        while !self.try_flush(Instant::now())? {
            self.stream.writable().await?;
        }
        Ok(())
    }

    /// Whether anything waits to be written: MQTT bytes, or what the layer made of them.
    pub(crate) fn wants_write(&self) -> bool {
        !self.wbuf.is_empty() || self.layer.as_ref().is_some_and(|l| !l.raw_out.is_empty())
    }

    /// After a read into [`read_target`]: what arrived, as MQTT bytes in `rbuf`.
    pub(crate) fn after_read(&mut self) -> Result<(), BenchError> {
        match self.layer.as_deref_mut() {
            Some(layer) => layer.unwrap(&mut self.rbuf),
            None => Ok(()),
        }
    }

    /// Reads until one whole packet is buffered and decodes it (setup only).
    async fn next_packet(&mut self) -> Result<Packet, BenchError> {
        loop {
            if let Some(p) = decode_packet(&mut self.rbuf, self.version, MAX_PACKET)
                .map_err(|e| BenchError::Protocol(e.to_string()))?
            {
                return Ok(p);
            }
            // Small: a handshake answer is a few bytes, and 20,000 idle connections each
            // keeping 4 KiB cost the generator a page fault per connection. Larger
            // packets take more rounds of this loop.
            let target = read_target(&mut self.rbuf, &mut self.layer);
            target.reserve(HANDSHAKE_READ);
            if self.stream.read_buf(target).await? == 0 {
                return Err(BenchError::Closed("during the handshake".into()));
            }
            self.after_read()?;
        }
    }

    /// Writes as much of the write buffer as the socket takes without blocking.
    /// Returns false when the socket is full.
    pub(crate) fn try_flush(&mut self, now: Instant) -> Result<bool, BenchError> {
        if let Some(layer) = self.layer.as_deref_mut() {
            return layer_flush(
                &self.stream,
                layer,
                &mut self.wbuf,
                &mut self.last_send,
                now,
            );
        }
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(0) => return Err(BenchError::Closed("write returned 0".into())),
                Ok(n) => {
                    self.wbuf.advance(n);
                    self.last_send = now;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        // An empty BytesMut that was advanced keeps its capacity once cleared.
        self.wbuf.clear();
        Ok(true)
    }

    /// Queues a PINGREQ when nothing was sent for half the keep alive.
    pub(crate) fn ping_if_idle(&mut self, now: Instant) {
        if now.duration_since(self.last_send) >= self.keep_alive / 2 {
            self.wbuf.put_slice(&[0xC0, 0x00]);
            // Counted as sent now so a full socket does not queue a ping per loop.
            self.last_send = now;
        }
    }

    /// When the next keep-alive ping is due.
    pub(crate) fn ping_due(&self) -> Instant {
        self.last_send + self.keep_alive / 2
    }

    /// Sends DISCONNECT (best effort) and closes.
    pub(crate) async fn disconnect(mut self) {
        // DISCONNECT: 0xE0 0x00 in 3.1.1; in MQTT 5 a remaining length of 0 means Normal
        // disconnection with no properties, the same two bytes.
        self.wbuf.clear();
        if self.persistent && self.version.is_v5() {
            // Normal disconnection, Session Expiry Interval 0: the broker drops the session.
            self.wbuf
                .put_slice(&[0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00]);
        } else {
            self.wbuf.put_slice(&[0xE0, 0x00]);
        }
        let close = async {
            self.flush_all().await?;
            if let Some(layer) = self.layer.as_deref_mut() {
                layer.close()?;
                self.flush_all().await?;
            }
            Ok::<_, BenchError>(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
        let _ = self.stream.shutdown().await;
    }
}

/// Where a read from the socket goes: the MQTT read buffer on plain TCP, the layer's input
/// otherwise (then [`Conn::after_read`] moves it on). A free function so the hot loops can
/// borrow it beside the socket.
pub(crate) fn read_target<'a>(
    rbuf: &'a mut BytesMut,
    layer: &'a mut Option<Box<Layer>>,
) -> &'a mut BytesMut {
    match layer {
        Some(layer) => &mut layer.raw_in,
        None => rbuf,
    }
}

/// [`Conn::try_flush`] through a layer: wraps the MQTT bytes only once what was wrapped
/// before is written, so `raw_out` stays within about one write batch.
fn layer_flush(
    stream: &TcpStream,
    layer: &mut Layer,
    wbuf: &mut BytesMut,
    last_send: &mut Instant,
    now: Instant,
) -> Result<bool, BenchError> {
    loop {
        if layer.raw_out.is_empty() {
            if wbuf.is_empty() {
                return Ok(true);
            }
            layer.wrap(wbuf)?;
        }
        match stream.try_write(&layer.raw_out) {
            Ok(0) => return Err(BenchError::Closed("write returned 0".into())),
            Ok(n) => {
                layer.raw_out.advance(n);
                *last_send = now;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A reason code as `0x87 (Not authorized)`.
fn reason_text(r: tinsel_codec::ReasonCode) -> String {
    match r.description() {
        Some(d) => format!("0x{:02X} ({d})", r.0),
        None => format!("0x{:02X}", r.0),
    }
}

/// Appends a PUBACK, PUBREC, PUBREL or PUBCOMP with success and no properties: in MQTT 5
/// the reason code may be left out when it is Success and there are no properties
/// [MQTT-3.4.2.1], so these four bytes are right for every version.
pub(crate) fn put_ack(dst: &mut BytesMut, kind: PacketType, packet_id: u16) {
    let first = match kind {
        PacketType::PubAck => 0x40,
        PacketType::PubRec => 0x50,
        PacketType::PubRel => 0x62,
        _ => 0x70, // PUBCOMP
    };
    let [hi, lo] = packet_id.to_be_bytes();
    dst.put_slice(&[first, 0x02, hi, lo]);
}

/// The fields of an incoming packet the hot loops look at.
pub(crate) enum Incoming<'a> {
    /// A PUBLISH: its QoS, packet id (0 at QoS 0) and payload.
    Publish {
        qos: u8,
        packet_id: u16,
        payload: &'a [u8],
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP with its packet id.
    Ack(PacketType, u16),
    /// PINGRESP, SUBACK and the like: nothing to do.
    Other,
    /// The broker is closing the connection (MQTT 5 DISCONNECT).
    Disconnect,
}

/// Splits the next whole frame off `buf[*pos..]`, advancing `pos`; `Ok(None)` when the
/// rest is an incomplete frame.
pub(crate) fn next_incoming<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    version: ProtocolVersion,
) -> Result<Option<Incoming<'a>>, BenchError> {
    let rest = &buf[*pos..];
    let Some(h): Option<FixedHeader> =
        check_frame(rest, MAX_PACKET).map_err(|e| BenchError::Protocol(e.to_string()))?
    else {
        return Ok(None);
    };
    let frame_len = h.frame_len();
    let body = &rest[h.header_len..frame_len];
    *pos += frame_len;
    let short = || BenchError::Protocol(format!("short {}", h.packet_type.name()));
    Ok(Some(match h.packet_type {
        PacketType::Publish => {
            let qos = (h.flags >> 1) & 0x03;
            let topic_len = usize::from(u16::from_be_bytes([
                *body.first().ok_or_else(short)?,
                *body.get(1).ok_or_else(short)?,
            ]));
            let mut i = 2 + topic_len;
            let mut packet_id = 0;
            if qos > 0 {
                let b = body.get(i..i + 2).ok_or_else(short)?;
                packet_id = u16::from_be_bytes([b[0], b[1]]);
                i += 2;
            }
            if version.is_v5() {
                let (len, n) = varint(body.get(i..).ok_or_else(short)?).ok_or_else(short)?;
                i += n + len;
            }
            Incoming::Publish {
                qos,
                packet_id,
                payload: body.get(i..).ok_or_else(short)?,
            }
        }
        t
        @ (PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp) => {
            let b = body.get(0..2).ok_or_else(short)?;
            if let Some(&reason) = body.get(2) {
                if reason >= 0x80 {
                    return Err(BenchError::Refused(format!(
                        "{} with reason code 0x{reason:02X}",
                        t.name()
                    )));
                }
            }
            Incoming::Ack(t, u16::from_be_bytes([b[0], b[1]]))
        }
        PacketType::Disconnect => Incoming::Disconnect,
        _ => Incoming::Other,
    }))
}

/// A variable byte integer: (value, bytes used), `None` if malformed or cut short.
fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &byte) in b.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Drops the first `n` bytes of a read buffer (the frames already handled).
pub(crate) fn consume(buf: &mut BytesMut, n: usize) {
    buf.advance(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x00]), Some((0, 1)));
        assert_eq!(varint(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(varint(&[0x80, 0x80]), None);
    }

    #[test]
    fn acks_are_four_bytes() {
        let mut b = BytesMut::new();
        put_ack(&mut b, PacketType::PubRel, 0x1234);
        assert_eq!(&b[..], &[0x62, 0x02, 0x12, 0x34]);
    }
}
