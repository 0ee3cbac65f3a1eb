//! What one record looks like on disk.
//!
//! An entry is a tag byte and its fields: strings and byte strings with a `u32` length,
//! integers little-endian, messages as MQTT 5 PUBLISH packets (so every property is
//! kept). [`Record::Sent`] keeps a 64-bit key of the message (CRC-32 of its topic and of
//! its payload) instead of the message: the message itself was written once, by its
//! [`Record::Accepted`]. Snapshots written by compaction use their own tags (a message by
//! number, and the sessions' references to it).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tinsel_codec::{
    ByteStr, Packet, ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions, Will,
};
use tinsel_core::Record;

/// A record as the store reads it back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    /// Any record of the core but `Sent`.
    Core(Record),
    /// `Record::Sent` without the message: its key.
    Sent {
        client: Arc<str>,
        packet_id: u16,
        key: u64,
        qos: QoS,
    },
    /// Snapshot: message number `id`.
    Message { id: u64, publish: Publish },
    /// Snapshot: `client` waits for message `id`.
    Pending { client: Arc<str>, id: u64 },
    /// Snapshot: message `id` is in flight to `client` with `packet_id` at `qos`.
    InflightPublish {
        client: Arc<str>,
        packet_id: u16,
        id: u64,
        qos: QoS,
    },
    /// Snapshot: `client`'s `packet_id` is past PUBREC.
    InflightRelease { client: Arc<str>, packet_id: u16 },
    /// `Record::Retained` with a message, kept as it was written.
    Retained(Kept),
}

/// A retained message as the store keeps it: the bytes of its `Retained` entry, exactly as
/// they were written, which compaction writes again. One allocation per message, and no
/// decoded copy beside the core's: the message is decoded only when the store opens.
///
/// Two are equal when their topics are, and they sort by topic: a set of them holds one
/// per topic, in the order of their names.
#[derive(Debug, Clone)]
pub(crate) struct Kept(Box<[u8]>);

/// Bytes of a `Retained` entry before its topic: the tag and the topic's length.
const KEPT_TOPIC_AT: usize = 5;

impl Kept {
    /// Keeps `entry`, the encoding of a `Retained` record with a message.
    pub(crate) fn new(entry: &[u8]) -> Kept {
        Kept(entry.into())
    }

    /// Keeps the retained message `p` of `topic`.
    pub(crate) fn encode(topic: &str, p: &Publish) -> Kept {
        let mut out = Vec::new();
        put_retained(&mut out, topic, Some(p));
        Kept(out.into_boxed_slice())
    }

    /// The bytes written for it.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its topic's bytes (UTF-8: they were written from a topic name).
    pub(crate) fn topic(&self) -> &[u8] {
        let b = &self.0;
        let len = b
            .get(1..KEPT_TOPIC_AT)
            .and_then(|l| l.try_into().ok())
            .map_or(0, |l| u32::from_le_bytes(l) as usize);
        b.get(KEPT_TOPIC_AT..KEPT_TOPIC_AT + len).unwrap_or(&[])
    }

    /// The message, for the core. Its topic and payload share one fresh allocation (the
    /// core copies what it keeps).
    pub(crate) fn publish(&self) -> Result<Publish, Malformed> {
        let mut r = Reader::new(Bytes::copy_from_slice(&self.0));
        match r.entry()? {
            Entry::Core(Record::Retained {
                message: Some(p), ..
            }) => Ok(p),
            _ => Err(Malformed("bad retained message")),
        }
    }
}

impl PartialEq for Kept {
    fn eq(&self, other: &Kept) -> bool {
        self.topic() == other.topic()
    }
}

impl Eq for Kept {}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Kept) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kept {
    /// By topic, as `[u8]` (and `str`) order: a set of them is searched by topic.
    fn cmp(&self, other: &Kept) -> std::cmp::Ordering {
        self.topic().cmp(other.topic())
    }
}

impl std::borrow::Borrow<[u8]> for Kept {
    fn borrow(&self) -> &[u8] {
        self.topic()
    }
}

/// The key `Sent` keeps of a message.
pub(crate) fn key(topic: &str, payload: &[u8]) -> u64 {
    (u64::from(crc32fast::hash(topic.as_bytes())) << 32) | u64::from(crc32fast::hash(payload))
}

/// Why an entry could not be read.
#[derive(Debug)]
pub(crate) struct Malformed(pub(crate) &'static str);

const SESSION_OPENED: u8 = 1;
const SESSION_ENDED: u8 = 2;
const SUBSCRIBED: u8 = 3;
const UNSUBSCRIBED: u8 = 4;
const ACCEPTED: u8 = 5;
const QOS2_RECEIVED: u8 = 6;
const QOS2_RELEASED: u8 = 7;
const RETAINED: u8 = 8;
const SENT: u8 = 9;
const DELIVERED: u8 = 10;
const WILL_PENDING: u8 = 11;
const WILL_TAKEN: u8 = 12;
const WILL_SET: u8 = 13;
const MESSAGE: u8 = 20;
const PENDING: u8 = 21;
const INFLIGHT_PUBLISH: u8 = 22;
const INFLIGHT_RELEASE: u8 = 23;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_publish(out: &mut Vec<u8>, p: &Publish) {
    let mut p = p.clone();
    if p.qos != QoS::AtMostOnce && p.packet_id == 0 {
        // A packet id is needed to encode it at QoS 1/2; it is not what is kept.
        p.packet_id = 1;
    }
    let mut buf = BytesMut::new();
    // A message the broker accepted encodes; a failure here is a bug, kept visible as an
    // empty message rather than a panic in the store's thread.
    if Packet::Publish(p)
        .encode(ProtocolVersion::V5, &mut buf)
        .is_err()
    {
        buf.clear();
    }
    put_bytes(out, &buf);
}

/// A will kept as the message it becomes (its delay is kept beside it).
fn will_publish(w: &Will) -> Publish {
    let mut properties = w.properties.clone();
    if let Some(p) = properties.get_mut() {
        p.will_delay_interval = None;
    }
    Publish {
        dup: false,
        qos: w.qos,
        retain: w.retain,
        topic: w.topic.clone(),
        packet_id: 0,
        properties,
        payload: w.payload.clone(),
    }
}

/// The will `p` was made from with [`will_publish`], with its delay.
fn publish_will(p: Publish, delay: u32) -> Will {
    let mut properties = p.properties;
    properties.make_mut().will_delay_interval = Some(delay);
    Will {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties,
    }
}

/// A will's fields after its tag: client, user name, the will as a message, a delay.
type WillFields = (Arc<str>, Option<Arc<str>>, Box<Will>, u32);

/// Writes a will's fields (see [`WillFields`]).
fn put_will(out: &mut Vec<u8>, client: &str, username: Option<&str>, will: &Will, delay: u32) {
    put_bytes(out, client.as_bytes());
    match username {
        Some(u) => {
            out.push(1);
            put_bytes(out, u.as_bytes());
        }
        None => out.push(0),
    }
    put_publish(out, &will_publish(will));
    out.extend_from_slice(&delay.to_le_bytes());
}

fn put_retained(out: &mut Vec<u8>, topic: &str, message: Option<&Publish>) {
    out.push(RETAINED);
    put_bytes(out, topic.as_bytes());
    match message {
        Some(p) => {
            out.push(1);
            put_publish(out, p);
        }
        None => out.push(0),
    }
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    let rh = match o.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendIfNew => 1,
        RetainHandling::DoNotSend => 2,
    };
    o.qos as u8 | u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3 | rh << 4
}

/// Appends the encoding of `r` to `out`. Records the store does not know (the enum is
/// open) are skipped: false.
pub(crate) fn encode_record(r: &Record, out: &mut Vec<u8>) -> bool {
    match r {
        Record::SessionOpened { client, expiry } => {
            out.push(SESSION_OPENED);
            put_bytes(out, client.as_bytes());
            out.extend_from_slice(&expiry.to_le_bytes());
        }
        Record::SessionEnded { client } => {
            out.push(SESSION_ENDED);
            put_bytes(out, client.as_bytes());
        }
        Record::Subscribed {
            client,
            filter,
            options,
            id,
        } => {
            out.push(SUBSCRIBED);
            put_bytes(out, client.as_bytes());
            put_bytes(out, filter.as_bytes());
            out.push(options_byte(options));
            out.extend_from_slice(&id.unwrap_or(0).to_le_bytes());
        }
        Record::Unsubscribed { client, filter } => {
            out.push(UNSUBSCRIBED);
            put_bytes(out, client.as_bytes());
            put_bytes(out, filter.as_bytes());
        }
        Record::Accepted { message, sessions } => {
            out.push(ACCEPTED);
            put_publish(out, message);
            out.extend_from_slice(&(sessions.len() as u32).to_le_bytes());
            for s in sessions {
                put_bytes(out, s.as_bytes());
            }
        }
        Record::Qos2Received { client, packet_id } => {
            out.push(QOS2_RECEIVED);
            put_bytes(out, client.as_bytes());
            out.extend_from_slice(&packet_id.to_le_bytes());
        }
        Record::Qos2Released { client, packet_id } => {
            out.push(QOS2_RELEASED);
            put_bytes(out, client.as_bytes());
            out.extend_from_slice(&packet_id.to_le_bytes());
        }
        Record::Retained { topic, message } => put_retained(out, topic, message.as_ref()),
        Record::Sent {
            client,
            packet_id,
            topic,
            payload,
            qos,
        } => {
            out.push(SENT);
            put_bytes(out, client.as_bytes());
            out.extend_from_slice(&packet_id.to_le_bytes());
            out.extend_from_slice(&key(topic, payload).to_le_bytes());
            out.push(*qos as u8);
        }
        Record::Delivered {
            client,
            packet_id,
            released,
        } => {
            out.push(DELIVERED);
            put_bytes(out, client.as_bytes());
            out.extend_from_slice(&packet_id.to_le_bytes());
            out.push(u8::from(*released));
        }
        Record::WillPending {
            client,
            username,
            will,
            delay,
        } => {
            out.push(WILL_PENDING);
            put_will(out, client, username.as_deref(), will, *delay);
        }
        Record::WillSet {
            client,
            username,
            will,
        } => {
            out.push(WILL_SET);
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            put_will(out, client, username.as_deref(), will, delay);
        }
        Record::WillTaken { client } => {
            out.push(WILL_TAKEN);
            put_bytes(out, client.as_bytes());
        }
        _ => return false,
    }
    true
}

/// Appends the encoding of a snapshot entry (or any entry) to `out`.
pub(crate) fn encode_entry(e: &Entry, out: &mut Vec<u8>) {
    match e {
        Entry::Core(r) => {
            encode_record(r, out);
        }
        Entry::Sent {
            client,
            packet_id,
            key,
            qos,
        } => {
            out.push(SENT);
            put_bytes(out, client.as_bytes());
            out.extend_from_slice(&packet_id.to_le_bytes());
            out.extend_from_slice(&key.to_le_bytes());
            out.push(*qos as u8);
        }
        Entry::Message { id, publish } => {
            out.push(MESSAGE);
            out.extend_from_slice(&id.to_le_bytes());
            put_publish(out, publish);
        }
        Entry::Pending { client, id } => {
            out.push(PENDING);
            put_bytes(out, client.as_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        Entry::InflightPublish {
            client,
            packet_id,
            id,
            qos,
        } => {
            out.push(INFLIGHT_PUBLISH);
            put_bytes(out, client.as_bytes());
            out.extend_from_slice(&packet_id.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
            out.push(*qos as u8);
        }
        Entry::InflightRelease { client, packet_id } => {
            out.push(INFLIGHT_RELEASE);
            put_bytes(out, client.as_bytes());
            out.extend_from_slice(&packet_id.to_le_bytes());
        }
        Entry::Retained(k) => out.extend_from_slice(k.bytes()),
    }
}

/// Reads entries from a frame's bytes.
pub(crate) struct Reader {
    buf: Bytes,
    /// Messages are copied out of `buf` (see [`Reader::log_entry`]).
    copy: bool,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf, copy: false }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<Bytes, Malformed> {
        if self.buf.len() < n {
            return Err(Malformed("entry cut short"));
        }
        Ok(self.buf.split_to(n))
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<Bytes, Malformed> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<Arc<str>, Malformed> {
        let b = self.bytes()?;
        std::str::from_utf8(&b)
            .map(Arc::from)
            .map_err(|_| Malformed("string is not UTF-8"))
    }

    fn qos(&mut self) -> Result<QoS, Malformed> {
        QoS::from_u8(self.u8()?).ok_or(Malformed("bad QoS"))
    }

    /// A message: its topic and payload are slices of this reader's bytes.
    fn publish(&mut self) -> Result<Publish, Malformed> {
        let b = self.bytes()?;
        let header = match tinsel_codec::check_frame(&b, u32::MAX) {
            Ok(Some(h)) if h.frame_len() == b.len() => h,
            _ => return Err(Malformed("bad message")),
        };
        match tinsel_codec::decode_body(header, b.slice(header.header_len..), ProtocolVersion::V5) {
            Ok(Packet::Publish(p)) => Ok(p),
            _ => Err(Malformed("bad message")),
        }
    }

    /// A message kept for long: copied out of this reader's bytes (a log read whole must
    /// not stay pinned by the few messages still waiting in it).
    fn publish_copied(&mut self) -> Result<Publish, Malformed> {
        let b = self.bytes()?;
        let mut buf = BytesMut::from(&b[..]);
        match tinsel_codec::decode_packet(&mut buf, ProtocolVersion::V5, u32::MAX) {
            Ok(Some(Packet::Publish(p))) if buf.is_empty() => Ok(p),
            _ => Err(Malformed("bad message")),
        }
    }

    /// The fields [`put_will`] wrote.
    fn will(&mut self) -> Result<WillFields, Malformed> {
        let client = self.string()?;
        let username = match self.u8()? {
            0 => None,
            _ => Some(self.string()?),
        };
        let message = self.message()?;
        let delay = self.u32()?;
        Ok((
            client,
            username,
            Box::new(publish_will(message, delay)),
            delay,
        ))
    }

    fn message(&mut self) -> Result<Publish, Malformed> {
        if self.copy {
            self.publish_copied()
        } else {
            self.publish()
        }
    }

    /// The next entry of a log: what is kept stays independent of the log's bytes.
    pub(crate) fn log_entry(&mut self) -> Result<Entry, Malformed> {
        let whole = self.buf.clone();
        match self.buf.first() {
            Some(&RETAINED) => {
                // Checked whole here; kept as bytes, decoded when the store opens.
                let e = self.entry()?;
                let used = whole.len() - self.buf.len();
                Ok(match e {
                    Entry::Core(Record::Retained {
                        message: Some(_), ..
                    }) => Entry::Retained(Kept::new(&whole[..used])),
                    other => other,
                })
            }
            _ => {
                self.copy = true;
                let e = self.entry();
                self.copy = false;
                e
            }
        }
    }

    fn options(&mut self) -> Result<SubscriptionOptions, Malformed> {
        let b = self.u8()?;
        let mut o = SubscriptionOptions::new(QoS::from_u8(b & 3).ok_or(Malformed("bad QoS"))?);
        o.no_local = b & 4 != 0;
        o.retain_as_published = b & 8 != 0;
        o.retain_handling = match b >> 4 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            _ => RetainHandling::DoNotSend,
        };
        Ok(o)
    }

    /// The next entry.
    pub(crate) fn entry(&mut self) -> Result<Entry, Malformed> {
        let tag = self.u8()?;
        let core = |r| Ok(Entry::Core(r));
        match tag {
            SESSION_OPENED => core(Record::SessionOpened {
                client: self.string()?,
                expiry: self.u32()?,
            }),
            SESSION_ENDED => core(Record::SessionEnded {
                client: self.string()?,
            }),
            SUBSCRIBED => core(Record::Subscribed {
                client: self.string()?,
                filter: self.string()?,
                options: self.options()?,
                id: Some(self.u32()?).filter(|&id| id != 0),
            }),
            UNSUBSCRIBED => core(Record::Unsubscribed {
                client: self.string()?,
                filter: self.string()?,
            }),
            ACCEPTED => {
                let message = self.message()?;
                let n = self.u32()?;
                let mut sessions = Vec::new();
                for _ in 0..n {
                    sessions.push(self.string()?);
                }
                core(Record::Accepted { message, sessions })
            }
            QOS2_RECEIVED => core(Record::Qos2Received {
                client: self.string()?,
                packet_id: self.u16()?,
            }),
            QOS2_RELEASED => core(Record::Qos2Released {
                client: self.string()?,
                packet_id: self.u16()?,
            }),
            RETAINED => {
                let topic = self.bytes()?;
                let topic = ByteStr::from_utf8(topic).ok_or(Malformed("bad topic"))?;
                let message = match self.u8()? {
                    0 => None,
                    _ => Some(self.message()?),
                };
                core(Record::Retained { topic, message })
            }
            SENT => Ok(Entry::Sent {
                client: self.string()?,
                packet_id: self.u16()?,
                key: self.u64()?,
                qos: self.qos()?,
            }),
            DELIVERED => core(Record::Delivered {
                client: self.string()?,
                packet_id: self.u16()?,
                released: self.u8()? != 0,
            }),
            WILL_PENDING => {
                let (client, username, will, delay) = self.will()?;
                core(Record::WillPending {
                    client,
                    username,
                    will,
                    delay,
                })
            }
            WILL_SET => {
                let (client, username, will, _) = self.will()?;
                core(Record::WillSet {
                    client,
                    username,
                    will,
                })
            }
            WILL_TAKEN => core(Record::WillTaken {
                client: self.string()?,
            }),
            MESSAGE => Ok(Entry::Message {
                id: self.u64()?,
                publish: self.message()?,
            }),
            PENDING => Ok(Entry::Pending {
                client: self.string()?,
                id: self.u64()?,
            }),
            INFLIGHT_PUBLISH => Ok(Entry::InflightPublish {
                client: self.string()?,
                packet_id: self.u16()?,
                id: self.u64()?,
                qos: self.qos()?,
            }),
            INFLIGHT_RELEASE => Ok(Entry::InflightRelease {
                client: self.string()?,
                packet_id: self.u16()?,
            }),
            _ => Err(Malformed("unknown entry type")),
        }
    }
}
