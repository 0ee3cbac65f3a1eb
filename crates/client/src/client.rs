//! The client handle, its event stream, and the connection task behind them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Buf;
use bytes::{Bytes, BytesMut};
use tinsel_codec::{
    ByteStr, ConnAck, Connect, Disconnect, Packet, Properties, Publish, QoS, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, decode_packet, encode_packet, topic,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::session::{Session, Waiter};
use crate::transport::{self, Io};
use crate::{Backoff, ClientOptions, Error};

/// Commands waiting for the connection task. When full, callers wait (backpressure).
const COMMAND_QUEUE: usize = 64;
/// Events waiting for the application. When full, the connection task waits before reading
/// more from the socket, so a slow reader slows the broker down instead of growing memory.
/// An application must therefore keep calling [`Events::recv`] (or drop [`Events`]).
const EVENT_QUEUE: usize = 1024;

/// Publishes taken beyond the in-flight window while an event waits for the application.
/// When full, further such publishes fail at once with [`Error::Overloaded`]: blocking
/// instead could deadlock an application that publishes from its event loop.
const BACKLOG: usize = 4096;

/// Something that happened on the connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection was accepted by the broker (the first one, and each reconnection).
    Connected(ConnAck),
    /// A message arrived on a subscription (topic aliases already resolved).
    Message(Publish),
    /// The connection was lost or closed by the broker. With reconnection on, a
    /// [`Event::Connected`] follows once it is back; without, this is the last event.
    Disconnected(Error),
}

/// Receives [`Event`]s from the connection task.
///
/// Keep calling [`recv`](Events::recv) (or drop this): while 1,024 events wait unread, the
/// connection task stops reading from the broker, so acknowledgements stop arriving too.
/// Publishing from the event loop is fine with [`Client::send_publish`]; awaiting a QoS 1/2
/// acknowledgement there holds up the events behind it.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has shut down for good.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// A cheap, cloneable handle to a connected client. The connection lives in a background
/// task; it ends after [`Client::disconnect`], when every handle is dropped, or (without
/// reconnection) when the connection is lost.
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
}

/// Resolves once a publish handed to [`Client::send_publish`] is complete: written (QoS 0)
/// or acknowledged (QoS 1 and 2).
#[derive(Debug)]
pub struct PublishToken(oneshot::Receiver<Result<(), Error>>);

impl PublishToken {
    /// Waits for the outcome.
    pub async fn wait(self) -> Result<(), Error> {
        self.0.await.unwrap_or(Err(Error::Closed))
    }
}

/// Checks a topic filter given to subscribe or unsubscribe and converts it for the packet.
fn checked_filter(f: String) -> Result<ByteStr, Error> {
    if !topic::valid_topic_filter(&f) {
        return Err(Error::InvalidFilter(f));
    }
    ByteStr::try_from(f.as_str()).map_err(|_| Error::InvalidFilter(f.clone()))
}

#[derive(Debug)]
enum Command {
    Publish(Publish, Waiter<()>),
    Subscribe(Subscribe, Waiter<SubAck>),
    Unsubscribe(Unsubscribe, Waiter<UnsubAck>),
    Disconnect(Disconnect, Waiter<()>),
}

impl Client {
    /// Connects to the broker. Fails if this first connection fails (unreachable, refused,
    /// TLS error); later losses are reported as [`Event::Disconnected`] and, with
    /// [`ClientOptions::reconnect`], repaired in the background. The first event is the
    /// [`Event::Connected`] of this connection.
    pub async fn connect(opts: ClientOptions) -> Result<(Client, Events), Error> {
        let (conn, connack) = establish(&opts).await?;
        let (tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let alias_max = if opts.version.is_v5() {
            opts.connect_properties.topic_alias_maximum.unwrap_or(0)
        } else {
            0
        };
        let mut task = Task {
            session: Session::new(alias_max),
            window: usize::from(opts.max_inflight.max(1)),
            keep_alive: opts.keep_alive,
            opts,
            cmd_rx,
            events: ev_tx,
            subs: Vec::new(),
            pending_sub: HashMap::new(),
            pending_unsub: HashMap::new(),
            written: Vec::new(),
            limits: ServerLimits::default(),
            closing: None,
            backlog: VecDeque::new(),
        };
        let mut conn = conn;
        task.after_connect(&mut conn, connack).await;
        tokio::spawn(task.run(conn));
        Ok((Client { tx }, Events { rx: ev_rx }))
    }

    /// Publishes `payload` to `topic`. At QoS 0 it resolves once written; at QoS 1 and 2
    /// once the broker acknowledged it.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), Error> {
        let topic_str = ByteStr::try_from(topic).map_err(|_| Error::InvalidTopic(topic.into()))?;
        self.publish_with(Publish {
            dup: false,
            qos,
            retain,
            topic: topic_str,
            packet_id: 0,
            properties: Properties::default(),
            payload: payload.into(),
        })
        .await
    }

    /// Publishes a prepared PUBLISH (properties included; the packet identifier is
    /// assigned here). Resolves like [`publish`](Self::publish).
    pub async fn publish_with(&self, publish: Publish) -> Result<(), Error> {
        self.send_publish(publish).await?.wait().await
    }

    /// Queues a publish and returns as soon as the connection task took it, without waiting
    /// for it to complete: for pipelining many messages. At most
    /// [`ClientOptions::max_inflight`] QoS 1/2 publishes are in flight; beyond that this
    /// waits.
    pub async fn send_publish(&self, publish: Publish) -> Result<PublishToken, Error> {
        let ok = if publish.topic.is_empty() {
            publish.properties.topic_alias.is_some()
        } else {
            topic::valid_topic_name(&publish.topic)
        };
        if !ok {
            return Err(Error::InvalidTopic(publish.topic.to_string()));
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Publish(publish, tx))
            .await
            .map_err(|_| Error::Closed)?;
        Ok(PublishToken(rx))
    }

    /// Subscribes to topic filters; resolves with the broker's SUBACK (check its reason
    /// codes: a filter may be refused). Accepted subscriptions are restored after a
    /// reconnection when the broker did not keep the session.
    pub async fn subscribe(
        &self,
        filters: Vec<(String, SubscriptionOptions)>,
    ) -> Result<SubAck, Error> {
        self.subscribe_with(filters, Properties::default()).await
    }

    /// [`subscribe`](Self::subscribe) with MQTT 5 properties (subscription identifier,
    /// user properties).
    pub async fn subscribe_with(
        &self,
        filters: Vec<(String, SubscriptionOptions)>,
        properties: Properties,
    ) -> Result<SubAck, Error> {
        let mut list = Vec::with_capacity(filters.len());
        for (f, o) in filters {
            list.push((checked_filter(f)?, o));
        }
        if list.is_empty() {
            return Err(Error::InvalidFilter(String::new()));
        }
        let sub = Subscribe {
            packet_id: 0,
            properties,
            filters: list,
        };
        self.request(|tx| Command::Subscribe(sub, tx)).await
    }

    /// Unsubscribes; resolves with the broker's UNSUBACK.
    pub async fn unsubscribe(&self, filters: Vec<String>) -> Result<UnsubAck, Error> {
        self.unsubscribe_with(filters, Properties::default()).await
    }

    /// [`unsubscribe`](Self::unsubscribe) with MQTT 5 properties.
    pub async fn unsubscribe_with(
        &self,
        filters: Vec<String>,
        properties: Properties,
    ) -> Result<UnsubAck, Error> {
        let list = filters
            .into_iter()
            .map(checked_filter)
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(Error::InvalidFilter(String::new()));
        }
        let unsub = Unsubscribe {
            packet_id: 0,
            properties,
            filters: list,
        };
        self.request(|tx| Command::Unsubscribe(unsub, tx)).await
    }

    /// Hands `command` to the connection task and waits for its answer.
    async fn request<T>(&self, command: impl FnOnce(Waiter<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(command(tx)).await.map_err(|_| Error::Closed)?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Sends a normal DISCONNECT (the broker discards the will) and closes the client.
    /// Publishes queued before it are written first.
    pub async fn disconnect(&self) -> Result<(), Error> {
        self.disconnect_with(Disconnect::default()).await
    }

    /// [`disconnect`](Self::disconnect) with a reason code and MQTT 5 properties (e.g. a
    /// session expiry interval, or reason 0x04 to have the will sent).
    pub async fn disconnect_with(&self, disconnect: Disconnect) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Disconnect(disconnect, tx))
            .await
            .is_err()
        {
            return Ok(()); // already closed
        }
        rx.await.unwrap_or(Ok(()))
    }
}

/// An open stream with its buffers. Split in two so the connection task can write and
/// read at the same time: writing while not reading could deadlock with a broker that is
/// itself blocked writing to us.
struct Conn {
    rd: ReadHalf<Box<dyn Io>>,
    wr: WriteHalf<Box<dyn Io>>,
    rbuf: BytesMut,
    /// Encoded packets not yet written. Bounded: commands are not taken above
    /// [`BATCH`], and the socket is not read above [`WBUF_LIMIT`].
    wbuf: BytesMut,
    /// Bytes were written since the last flush (TLS holds records until flushed).
    unflushed: bool,
}

/// Commands are taken until this much is waiting to be written.
const BATCH: usize = 64 * 1024;
/// Above this much waiting to be written (answers to what we read), reading pauses until
/// the broker takes some.
const WBUF_LIMIT: usize = 4 * 1024 * 1024;

/// Free space wanted in the read buffer before each read, so one read takes in many packets.
const READ_CHUNK: usize = 16 * 1024;

impl Conn {
    /// Writes what is pending (a final DISCONNECT) and closes; errors do not matter now.
    async fn close(&mut self) {
        let _ = self.wr.write_all(&self.wbuf).await;
        self.wbuf.clear();
        let _ = self.wr.flush().await;
        let _ = self.wr.shutdown().await;
    }

    /// Ensures room for a large read. The buffer holds at most one partial packet beyond
    /// what was just read, and a packet is at most `max_packet_size` ([`check_frame`]
    /// rejects larger ones from the header), so it stays bounded.
    ///
    /// [`check_frame`]: tinsel_codec::check_frame
    fn make_room(&mut self) {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
    }
}

/// Opens the stream, sends CONNECT and waits for a successful CONNACK.
async fn establish(opts: &ClientOptions) -> Result<(Conn, ConnAck), Error> {
    let attempt = async {
        let io = transport::open(opts).await?;
        let (rd, wr) = tokio::io::split(io);
        let mut conn = Conn {
            rd,
            wr,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(256),
            unflushed: false,
        };
        let connect = Packet::from(Connect {
            protocol: opts.version,
            clean_start: opts.clean_start,
            keep_alive: u16::try_from(opts.keep_alive.as_secs()).unwrap_or(u16::MAX),
            properties: if opts.version.is_v5() {
                opts.connect_properties.clone()
            } else {
                Properties::default()
            },
            client_id: ByteStr::try_from(opts.client_id.as_str())?,
            will: opts.will.clone(),
            username: match &opts.username {
                Some(u) => Some(ByteStr::try_from(u.as_str())?),
                None => None,
            },
            password: opts.password.clone(),
            bridge: opts.bridge,
        });
        log(opts, true, &connect);
        encode_packet(&connect, opts.version, &mut conn.wbuf)?;
        conn.wr.write_all(&conn.wbuf).await?;
        conn.wr.flush().await?;
        conn.wbuf.clear();
        loop {
            if let Some(p) = decode_packet(&mut conn.rbuf, opts.version, opts.max_packet_size)? {
                log(opts, false, &p);
                return match p {
                    Packet::ConnAck(ack) if ack.reason.is_success() => Ok((conn, ack)),
                    Packet::ConnAck(ack) => Err(Error::ConnectionRefused {
                        reason: ack.reason,
                        reason_string: ack.properties.reason_string.as_ref().map(|s| s.to_string()),
                    }),
                    Packet::Disconnect(d) => Err(Error::ServerDisconnect {
                        reason: d.reason,
                        reason_string: d.properties.reason_string.as_ref().map(|s| s.to_string()),
                    }),
                    other => Err(Error::Protocol(format!(
                        "expected CONNACK, got {}",
                        other.packet_type().name()
                    ))),
                };
            }
            conn.make_room();
            if conn.rd.read_buf(&mut conn.rbuf).await? == 0 {
                return Err(Error::ConnectionClosed);
            }
        }
    };
    match tokio::time::timeout(opts.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(Error::ConnectTimeout),
    }
}

fn log(opts: &ClientOptions, sent: bool, p: &Packet) {
    if let Some(l) = &opts.packet_log {
        (l.0)(sent, p);
    }
}

/// A subscription to restore after a reconnection without session.
struct SubRecord {
    filter: ByteStr,
    options: SubscriptionOptions,
    properties: Properties,
}

/// Why [`Task::serve`] returned.
enum Ended {
    /// The application closed the client.
    Closed,
    /// The connection failed.
    Lost(Error),
}

struct Task {
    opts: ClientOptions,
    session: Session,
    window: usize,
    keep_alive: Duration,
    cmd_rx: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    subs: Vec<SubRecord>,
    /// SUBSCRIBEs awaiting SUBACK: the request (to record what was granted) and who waits
    /// (nobody for automatic re-subscriptions).
    pending_sub: HashMap<u16, (Subscribe, Option<Waiter<SubAck>>)>,
    pending_unsub: HashMap<u16, Waiter<UnsubAck>>,
    /// QoS 0 publishes encoded into the write buffer, told once it is written.
    written: Vec<Waiter<()>>,
    /// What the broker's CONNACK allows (MQTT 5).
    limits: ServerLimits,
    /// QoS 1/2 publishes taken while the window was full, during [`Task::emit`]; sent in
    /// order as the window frees up. Bounded by [`BACKLOG`].
    backlog: VecDeque<(Publish, Waiter<()>)>,
    /// Set when the application asked to close (its DISCONNECT waiter; `None` when every
    /// handle was dropped) while the task was busy handing it an event.
    closing: Option<Option<Waiter<()>>>,
}

/// The limits an MQTT 5 broker announces in CONNACK; a publish beyond them is refused
/// locally with [`Error::NotSupported`] instead of getting the connection closed.
#[derive(Debug, Clone, Copy)]
struct ServerLimits {
    max_packet_size: Option<u32>,
    max_qos: QoS,
    retain_available: bool,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            max_packet_size: None,
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
        }
    }
}

impl ServerLimits {
    fn from_connack(p: &Properties) -> ServerLimits {
        ServerLimits {
            max_packet_size: p.maximum_packet_size,
            max_qos: p
                .maximum_qos
                .and_then(QoS::from_u8)
                .unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available != Some(0),
        }
    }

    fn check(&self, p: &Publish, version: tinsel_codec::ProtocolVersion) -> Result<(), Error> {
        if p.qos > self.max_qos {
            return Err(Error::NotSupported(format!(
                "the broker accepts QoS {} at most",
                self.max_qos.as_u8()
            )));
        }
        if p.retain && !self.retain_available {
            return Err(Error::NotSupported(
                "the broker does not support retained messages".into(),
            ));
        }
        if let Some(max) = self.max_packet_size {
            // The identifier is assigned later; any non-zero one has the same size.
            let mut sized = p.clone();
            if sized.qos != QoS::AtMostOnce {
                sized.packet_id = 1;
            }
            let len = Packet::Publish(sized).encoded_len(version)?;
            if len > max as usize {
                return Err(Error::NotSupported(format!(
                    "a {len}-byte packet exceeds the broker's maximum packet size of {max} bytes"
                )));
            }
        }
        Ok(())
    }
}

impl Task {
    async fn run(mut self, mut conn: Conn) {
        loop {
            let err = match self.serve(&mut conn).await {
                Ended::Closed => {
                    self.fail_pending(|| Error::Closed);
                    self.fail_backlog(|| Error::Closed);
                    self.session.fail_all(|| Error::Closed);
                    return;
                }
                Ended::Lost(e) => e,
            };
            self.fail_pending(|| Error::ConnectionClosed);
            self.emit(Event::Disconnected(err), None).await;
            if let Some(w) = self.closing.take() {
                if let Some(w) = w {
                    let _ = w.send(Ok(()));
                }
                self.fail_backlog(|| Error::Closed);
                self.session.fail_all(|| Error::Closed);
                return;
            }
            let Some(backoff) = self.opts.reconnect else {
                self.fail_backlog(|| Error::ConnectionClosed);
                self.session.fail_all(|| Error::ConnectionClosed);
                return;
            };
            match self.reconnect(backoff).await {
                Some(c) => conn = c,
                None => {
                    self.fail_backlog(|| Error::Closed);
                    self.session.fail_all(|| Error::Closed);
                    return;
                }
            }
        }
    }

    /// Fails the publishes waiting in the backlog (the client is closing for good).
    fn fail_backlog(&mut self, err: impl Fn() -> Error) {
        for (_, w) in self.backlog.drain(..) {
            let _ = w.send(Err(err()));
        }
    }

    fn fail_pending(&mut self, err: impl Fn() -> Error) {
        for (_, (_, w)) in self.pending_sub.drain() {
            if let Some(w) = w {
                let _ = w.send(Err(err()));
            }
        }
        for (_, w) in self.pending_unsub.drain() {
            let _ = w.send(Err(err()));
        }
        for w in self.written.drain(..) {
            let _ = w.send(Err(err()));
        }
    }

    /// Called on each accepted connection: adopts the broker's limits, resends what is in
    /// flight, restores subscriptions if the session is new, and reports the connection.
    async fn after_connect(&mut self, conn: &mut Conn, connack: ConnAck) {
        let p = &connack.properties;
        self.limits = ServerLimits::from_connack(p);
        self.window = usize::from(self.opts.max_inflight.max(1));
        if let Some(rm) = p.receive_maximum {
            self.window = self.window.min(usize::from(rm.max(1)));
        }
        self.keep_alive = match p.server_keep_alive {
            Some(k) => Duration::from_secs(u64::from(k)),
            None => self.opts.keep_alive,
        };
        if let Some(id) = &p.assigned_client_identifier {
            // Reconnect as the same client so a persistent session is found again.
            self.opts.client_id = id.to_string();
        }
        let mut out = self.session.on_connected(connack.session_present);
        if !connack.session_present && !self.subs.is_empty() {
            // Group the recorded subscriptions by their properties (subscription identifier).
            let mut groups: Vec<Subscribe> = Vec::new();
            for s in &self.subs {
                match groups.iter_mut().find(|g| g.properties == s.properties) {
                    Some(g) => g.filters.push((s.filter.clone(), s.options)),
                    None => groups.push(Subscribe {
                        packet_id: 0,
                        properties: s.properties.clone(),
                        filters: vec![(s.filter.clone(), s.options)],
                    }),
                }
            }
            for mut g in groups {
                if let Some(id) = self.session.reserve_id() {
                    g.packet_id = id;
                    out.push(Packet::Subscribe(g.clone()));
                    self.pending_sub.insert(id, (g, None));
                }
            }
        }
        for p in &out {
            self.encode(p, &mut conn.wbuf);
        }
        self.emit(Event::Connected(connack), Some(&mut conn.wbuf))
            .await;
    }

    fn encode(&self, p: &Packet, wbuf: &mut BytesMut) {
        log(&self.opts, true, p);
        if let Err(e) = encode_packet(p, self.opts.version, wbuf) {
            // Only reachable for a packet the caller built with oversized fields; checked
            // again in `command`, which reports it to the caller.
            tracing::warn!("cannot encode {}: {e}", p.packet_type().name());
        }
    }

    async fn serve(&mut self, conn: &mut Conn) -> Ended {
        let mut last_sent = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        loop {
            if let Some(waiter) = self.closing.take() {
                // The application closed the client while an event was being handed over.
                if waiter.is_none() {
                    self.encode(&Packet::Disconnect(Disconnect::default()), &mut conn.wbuf);
                }
                conn.close().await;
                for w in self.written.drain(..) {
                    let _ = w.send(Ok(()));
                }
                if let Some(w) = waiter {
                    let _ = w.send(Ok(()));
                }
                return Ended::Closed;
            }
            while self.session.inflight() < self.window {
                let Some((p, w)) = self.backlog.pop_front() else {
                    break;
                };
                // A publish never yields a DISCONNECT waiter.
                let _ = self.command(Command::Publish(p, w), &mut conn.wbuf);
            }
            if conn.wbuf.is_empty() && !conn.unflushed {
                for w in self.written.drain(..) {
                    let _ = w.send(Ok(()));
                }
            }
            let ka = self.keep_alive;
            let deadline = match ping_sent {
                Some(t) => t + ka,
                None => last_sent + ka,
            };
            let can_take = self.session.inflight() < self.window
                && self.backlog.is_empty()
                && conn.wbuf.len() < BATCH;
            let can_read = conn.wbuf.len() < WBUF_LIMIT;
            let can_write = !conn.wbuf.is_empty();
            let can_flush = !can_write && conn.unflushed;
            conn.make_room();
            tokio::select! {
                r = conn.rd.read_buf(&mut conn.rbuf), if can_read => {
                    match r {
                        Ok(0) => return Ended::Lost(Error::ConnectionClosed),
                        Ok(_) => {}
                        Err(e) => return Ended::Lost(e.into()),
                    }
                    loop {
                        let p = match decode_packet(&mut conn.rbuf, self.opts.version, self.opts.max_packet_size) {
                            Ok(Some(p)) => p,
                            Ok(None) => break,
                            Err(e) => return Ended::Lost(e.into()),
                        };
                        log(&self.opts, false, &p);
                        if matches!(p, Packet::PingResp) {
                            ping_sent = None;
                        }
                        if let Err(e) = self.incoming(p, &mut conn.wbuf).await {
                            return Ended::Lost(e);
                        }
                    }
                }
                // Write what is pending (cancel safe: `write` either wrote `n` bytes or
                // nothing), then flush once it is all out.
                w = async {
                    if can_write {
                        conn.wr.write(&conn.wbuf).await.map(Some)
                    } else {
                        conn.wr.flush().await.map(|()| None)
                    }
                }, if can_write || can_flush => match w {
                    Ok(Some(0)) => return Ended::Lost(Error::ConnectionClosed),
                    Ok(Some(n)) => {
                        conn.wbuf.advance(n);
                        conn.unflushed = true;
                        last_sent = Instant::now();
                    }
                    Ok(None) => conn.unflushed = false,
                    Err(e) => return Ended::Lost(e.into()),
                },
                cmd = self.cmd_rx.recv(), if can_take => {
                    let Some(cmd) = cmd else {
                        // Every handle is gone: close politely.
                        self.encode(&Packet::Disconnect(Disconnect::default()), &mut conn.wbuf);
                        conn.close().await;
                        return Ended::Closed;
                    };
                    let mut next = Some(cmd);
                    // Batch what is already queued into one write.
                    while let Some(cmd) = next.take() {
                        if let Some(done) = self.command(cmd, &mut conn.wbuf) {
                            conn.close().await;
                            for w in self.written.drain(..) {
                                let _ = w.send(Ok(()));
                            }
                            let _ = done.send(Ok(()));
                            return Ended::Closed;
                        }
                        if self.session.inflight() < self.window && conn.wbuf.len() < BATCH {
                            next = self.cmd_rx.try_recv().ok();
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline), if !ka.is_zero() => {
                    if ping_sent.is_some() {
                        return Ended::Lost(Error::KeepAliveTimeout);
                    }
                    self.encode(&Packet::PingReq, &mut conn.wbuf);
                    ping_sent = Some(Instant::now());
                }
            }
        }
    }

    /// Handles an application command. Returns the waiter of a DISCONNECT, after which the
    /// connection is closed.
    fn command(&mut self, cmd: Command, wbuf: &mut BytesMut) -> Option<Waiter<()>> {
        match cmd {
            Command::Publish(mut p, w) => {
                if !self.opts.version.is_v5() {
                    p.properties = Properties::default();
                }
                if let Err(e) = self.limits.check(&p, self.opts.version) {
                    // Sending it anyway would get the connection closed by the broker.
                    let _ = w.send(Err(e));
                    return None;
                }
                match self.session.send_publish(p, Some(w)) {
                    Ok((p, qos0_waiter)) => {
                        let p = Packet::Publish(p);
                        let mark = wbuf.len();
                        log(&self.opts, true, &p);
                        if let Err(e) = encode_packet(&p, self.opts.version, wbuf) {
                            wbuf.truncate(mark);
                            // The stored QoS 1/2 entry must go too.
                            if let Packet::Publish(p) = &p {
                                self.session.abandon(p.packet_id, e.into());
                            }
                            if let Some(w) = qos0_waiter {
                                let _ = w.send(Err(Error::Protocol("cannot encode".into())));
                            }
                        } else if let Some(w) = qos0_waiter {
                            self.written.push(w);
                        }
                    }
                    Err((e, w)) => {
                        if let Some(w) = w {
                            let _ = w.send(Err(e));
                        }
                    }
                }
                None
            }
            Command::Subscribe(mut s, w) => {
                let encoded = self.encode_with_new_id(wbuf, |id| {
                    s.packet_id = id;
                    Packet::Subscribe(s.clone())
                });
                match encoded {
                    Ok(id) => {
                        self.pending_sub.insert(id, (s, Some(w)));
                    }
                    Err(e) => {
                        let _ = w.send(Err(e));
                    }
                }
                None
            }
            Command::Unsubscribe(mut u, w) => {
                let encoded = self.encode_with_new_id(wbuf, |id| {
                    u.packet_id = id;
                    Packet::Unsubscribe(u.clone())
                });
                match encoded {
                    Ok(id) => {
                        self.subs.retain(|s| !u.filters.contains(&s.filter));
                        self.pending_unsub.insert(id, w);
                    }
                    Err(e) => {
                        let _ = w.send(Err(e));
                    }
                }
                None
            }
            Command::Disconnect(d, w) => {
                self.encode(&Packet::Disconnect(d), wbuf);
                Some(w)
            }
        }
    }

    /// Reserves a packet identifier, gives it to the packet `make` builds and encodes that
    /// packet into `wbuf`. On failure nothing is written and the identifier is free again.
    fn encode_with_new_id(
        &mut self,
        wbuf: &mut BytesMut,
        make: impl FnOnce(u16) -> Packet,
    ) -> Result<u16, Error> {
        let id = self
            .session
            .reserve_id()
            .ok_or_else(|| Error::Protocol("no free packet identifier".into()))?;
        let p = make(id);
        let mark = wbuf.len();
        log(&self.opts, true, &p);
        if let Err(e) = encode_packet(&p, self.opts.version, wbuf) {
            wbuf.truncate(mark);
            self.session.release_id(id);
            return Err(e.into());
        }
        Ok(id)
    }

    /// Handles a packet from the broker, appending any answer to `wbuf`.
    async fn incoming(&mut self, p: Packet, wbuf: &mut BytesMut) -> Result<(), Error> {
        match p {
            Packet::Publish(p) => {
                let inc = self.session.on_publish(p)?;
                if let Some(r) = &inc.reply {
                    self.encode(r, wbuf);
                }
                if let Some(msg) = inc.deliver {
                    // Nobody listening is fine: the message is dropped.
                    self.emit(Event::Message(msg), Some(wbuf)).await;
                }
            }
            Packet::PubAck(a) => self.session.on_puback(&a),
            Packet::PubRec(r) => {
                if let Some(rel) = self.session.on_pubrec(&r) {
                    self.encode(&rel, wbuf);
                }
            }
            Packet::PubRel(r) => {
                let (comp, msg) = self.session.on_pubrel(&r);
                self.encode(&comp, wbuf);
                if let Some(msg) = msg {
                    self.emit(Event::Message(msg), Some(wbuf)).await;
                }
            }
            Packet::PubComp(c) => self.session.on_pubcomp(&c),
            Packet::SubAck(ack) => {
                self.session.release_id(ack.packet_id);
                if let Some((req, w)) = self.pending_sub.remove(&ack.packet_id) {
                    for ((filter, options), reason) in req.filters.iter().zip(&ack.reasons) {
                        if reason.is_success() {
                            self.subs.retain(|s| s.filter != *filter);
                            self.subs.push(SubRecord {
                                filter: filter.clone(),
                                options: *options,
                                properties: req.properties.clone(),
                            });
                        }
                    }
                    if let Some(w) = w {
                        let _ = w.send(Ok(ack));
                    }
                }
            }
            Packet::UnsubAck(ack) => {
                self.session.release_id(ack.packet_id);
                if let Some(w) = self.pending_unsub.remove(&ack.packet_id) {
                    let _ = w.send(Ok(ack));
                }
            }
            Packet::PingResp => {}
            Packet::Disconnect(d) => {
                return Err(Error::ServerDisconnect {
                    reason: d.reason,
                    reason_string: d.properties.reason_string.as_ref().map(|s| s.to_string()),
                });
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected {} from the broker",
                    other.packet_type().name()
                )));
            }
        }
        Ok(())
    }

    /// Hands an event to the application. While the event queue is full it keeps taking
    /// commands (into `wbuf` when connected), so an application that publishes from its
    /// event loop can never deadlock with this task: it waits for us, we wait for it.
    /// A request to close is noted in `closing` and acted on by the caller.
    async fn emit(&mut self, event: Event, mut wbuf: Option<&mut BytesMut>) {
        let mut event = Some(event);
        // A second handle, so the permit does not borrow `self` while commands are handled.
        let events = self.events.clone();
        while event.is_some() {
            let can_take = self.closing.is_none();
            tokio::select! {
                biased;
                permit = events.reserve() => {
                    // Err: the application dropped `Events`; the event is dropped too.
                    if let (Ok(permit), Some(e)) = (permit, event.take()) {
                        permit.send(e);
                    }
                    event = None;
                }
                cmd = self.cmd_rx.recv(), if can_take => match (cmd, wbuf.as_deref_mut()) {
                    (None, _) => self.closing = Some(None),
                    (Some(Command::Disconnect(d, w)), Some(buf)) => {
                        self.encode(&Packet::Disconnect(d), buf);
                        self.closing = Some(Some(w));
                    }
                    (Some(Command::Publish(p, w)), Some(_))
                        if p.qos != QoS::AtMostOnce
                            && (self.session.inflight() >= self.window || !self.backlog.is_empty()) =>
                    {
                        if self.backlog.len() < BACKLOG {
                            self.backlog.push_back((p, w));
                        } else {
                            let _ = w.send(Err(Error::Overloaded));
                        }
                    }
                    (Some(cmd), Some(buf)) => {
                        // Never `Some`: DISCONNECT is matched above.
                        let _ = self.command(cmd, buf);
                    }
                    (Some(cmd), None) => self.offline_command(cmd),
                },
            }
        }
    }

    /// A command while there is no connection: QoS 1/2 publishes are queued (sent once
    /// connected) while the window has room; the rest fail with [`Error::NotConnected`]. A
    /// DISCONNECT is noted in `closing`.
    fn offline_command(&mut self, cmd: Command) {
        match cmd {
            Command::Disconnect(_, w) => self.closing = Some(Some(w)),
            Command::Publish(p, w)
                if p.qos != QoS::AtMostOnce && self.session.inflight() < self.window =>
            {
                if let Err((e, Some(w))) = self.session.send_publish(p, Some(w)) {
                    let _ = w.send(Err(e));
                }
            }
            Command::Publish(_, w) => {
                let _ = w.send(Err(Error::NotConnected));
            }
            Command::Subscribe(_, w) => {
                let _ = w.send(Err(Error::NotConnected));
            }
            Command::Unsubscribe(_, w) => {
                let _ = w.send(Err(Error::NotConnected));
            }
        }
    }

    /// Waits and reconnects with back-off. Meanwhile QoS 1/2 publishes are queued (sent
    /// once connected) and other commands fail with [`Error::NotConnected`]. `None` if the
    /// application closed the client meanwhile.
    async fn reconnect(&mut self, backoff: Backoff) -> Option<Conn> {
        let mut attempt = 0u32;
        loop {
            let sleep = tokio::time::sleep(backoff.delay(attempt));
            attempt = attempt.saturating_add(1);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.cmd_rx.recv() => match cmd {
                        None => return None,
                        Some(cmd) => {
                            self.offline_command(cmd);
                            if let Some(w) = self.closing.take() {
                                if let Some(w) = w {
                                    let _ = w.send(Ok(()));
                                }
                                return None;
                            }
                        }
                    }
                }
            }
            match establish(&self.opts).await {
                Ok((mut conn, connack)) => {
                    self.after_connect(&mut conn, connack).await;
                    return Some(conn);
                }
                Err(e) => tracing::debug!("reconnect attempt {attempt} failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tinsel_codec::ProtocolVersion;

    use super::*;

    fn publish(qos: QoS, retain: bool, len: usize) -> Publish {
        Publish {
            dup: false,
            qos,
            retain,
            topic: ByteStr::from_static("t"),
            packet_id: 0,
            properties: Properties::default(),
            payload: Bytes::from(vec![b'x'; len]),
        }
    }

    #[test]
    fn connack_limits_are_enforced_locally() {
        let props = Properties::from(tinsel_codec::PropertyValues {
            maximum_qos: Some(1),
            retain_available: Some(0),
            maximum_packet_size: Some(100),
            ..Default::default()
        });
        let l = ServerLimits::from_connack(&props);
        let v = ProtocolVersion::V5;
        assert!(l.check(&publish(QoS::AtLeastOnce, false, 10), v).is_ok());
        assert!(matches!(
            l.check(&publish(QoS::ExactlyOnce, false, 10), v),
            Err(Error::NotSupported(_))
        ));
        assert!(l.check(&publish(QoS::AtMostOnce, true, 10), v).is_err());
        // 2 (fixed header) + 3 (topic) + 2 (id) + 1 (properties) + 92 = 100 bytes: allowed.
        assert!(l.check(&publish(QoS::AtLeastOnce, false, 92), v).is_ok());
        assert!(l.check(&publish(QoS::AtLeastOnce, false, 93), v).is_err());
        assert!(
            ServerLimits::default()
                .check(&publish(QoS::ExactlyOnce, true, 1000), v)
                .is_ok()
        );
    }
}
