//! One task per connection: read, decode, hand packets to the router, write its output.
//!
//! An idle connection owns no read or write buffer: it waits for readability, borrows a
//! buffer while bytes are in flight, and lets it go once every whole packet is decoded.
//! All packets the router has for the connection are encoded into one buffer and written
//! with one call.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use tinsel_codec::{DecodeError, Packet, ProtocolVersion, decode_packet};
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tokio::time::Sleep;
use tracing::{debug, warn};

use crate::capture::ConnCapture;
use crate::outbox::{Out, Outbox};
use crate::router::{ConnId, Output};
use crate::server::Shared;
use crate::transport::Transport;

/// Read buffer size for a fresh read.
const READ_CHUNK: usize = 8192;

/// Largest read buffer a busy connection grows to between decodes.
const MAX_READ: usize = 64 * 1024;

/// A connection task lets other tasks run after this many reads that returned bytes.
const YIELD_READS: u8 = 8;

/// While a publisher waits for a congested subscriber, how often it looks again.
const PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// Everything a connection task needs.
pub(crate) struct ConnParams<S> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stream: S,
    pub(crate) peer: SocketAddr,
    pub(crate) capture: Option<ConnCapture>,
    /// Released when the task ends: frees a slot under the connection cap.
    pub(crate) permit: OwnedSemaphorePermit,
    /// Dropped when the task ends: lets shutdown know.
    pub(crate) done: mpsc::Sender<()>,
}

enum Event {
    Readable(std::io::Result<()>),
    Wake,
    /// Paused for a congested subscriber: time to look again, or a congested subscriber
    /// took its backlog.
    Recheck,
}

/// A connection task's state, kept in one place so the task's future holds it once.
struct Task<S> {
    stream: S,
    capture: Option<ConnCapture>,
    notify: Arc<Notify>,
    conn: Conn,
    /// While paused: when to look again (boxed: idle connections never need it).
    pause_timer: Option<Pin<Box<Sleep>>>,
    /// Held for the task's life: frees a slot under the connection cap when dropped.
    _permit: OwnedSemaphorePermit,
    /// Held for the task's life: shutdown waits until every one is dropped.
    _done: mpsc::Sender<()>,
}

/// Registers the connection with the router and returns the task that serves it until it
/// closes.
pub(crate) fn serve<S: Transport>(params: ConnParams<S>) -> impl Future<Output = ()> + Send {
    let ConnParams {
        shared,
        stream,
        peer,
        capture,
        permit,
        done,
    } = params;
    let notify = Arc::new(Notify::new());
    let (id, outbox) = {
        let mut state = shared.lock();
        let id = state.router.accept(Instant::now(), peer.to_string());
        state.register(id, notify.clone());
        (id, state.router.outbox(id).unwrap_or_default())
    };
    debug!(%peer, "accepted connection {id}");
    let conn = Conn {
        id,
        peer,
        shared,
        rbuf: BytesMut::new(),
        version: ProtocolVersion::V311,
        seen_connect: false,
        outbox,
        read_hint: READ_CHUNK,
        reads: 0,
        paused: false,
        pending: VecDeque::new(),
        error: None,
    };
    let mut task = Task {
        stream,
        capture,
        notify,
        conn,
        pause_timer: None,
        _permit: permit,
        _done: done,
    };
    // The task state is captured once by this block and borrowed by `run` (an `async fn`
    // taking it by value would hold it twice).
    async move {
        let why = task.run().await;
        task.finish(&why);
    }
}

impl<S: Transport> Task<S> {
    /// Serves until the connection ends; returns why.
    async fn run(&mut self) -> String {
        let t = self;
        loop {
            let event = tokio::select! {
                r = t.stream.readable(), if !t.conn.paused => Event::Readable(r),
                _ = recheck(&mut t.pause_timer), if t.conn.paused => Event::Recheck,
                _ = t.conn.shared.eased.notified(), if t.conn.paused => Event::Recheck,
                _ = t.notify.notified() => Event::Wake,
            };
            let out = match event {
                Event::Recheck => {
                    t.conn.paused = t.conn.shared.lock().router.congested(Instant::now());
                    if t.conn.paused {
                        continue;
                    }
                    t.pause_timer = None;
                    t.conn.process()
                }
                Event::Readable(Err(e)) => break format!("read error: {e}"),
                Event::Readable(Ok(())) => match t.conn.read(&mut t.stream, t.capture.as_mut()) {
                    ReadResult::Packets(out) => out,
                    ReadResult::WouldBlock => continue,
                    ReadResult::Closed(why) => break why,
                },
                // Only this connection's outbox lock, not the router's.
                Event::Wake => t.conn.take(),
            };
            // Boxed: the write's state lives on the heap only while a write is under way, so an
            // idle connection's task stays small.
            match Box::pin(t.conn.write(&mut t.stream, t.capture.as_mut(), out)).await {
                Ok(false) => {}
                Ok(true) => {
                    let _ = Box::pin(t.stream.shutdown()).await;
                    break "closed by the broker".to_owned();
                }
                Err(e) => break format!("write error: {e}"),
            }
            // Readiness and wake-ups do not count against tokio's cooperative budget: a
            // client that always has more bytes buffered would keep this task running, and
            // every other task on its worker (its subscribers among them) waiting, for as
            // long as it sends. Let the others run after a few reads, and at the
            // latest when the budget runs out. (The budget alone is too coarse: a task woken
            // by this one waits on this worker until it yields, long enough to count as
            // stalled. Yielding after every full read costs fan-out throughput: subscribers
            // then write smaller batches.)
            if t.conn.reads >= YIELD_READS {
                t.conn.reads = 0;
                tokio::task::yield_now().await;
            } else {
                tokio::task::coop::consume_budget().await;
            }
        }
    }

    /// Tells the router the connection is gone. Dropping the task afterwards frees its slot
    /// under the connection cap and lets shutdown know.
    fn finish(&mut self, why: &str) {
        let conn = &self.conn;
        debug!(peer = %conn.peer, "connection {} ended: {why}", conn.id);
        let mut state = conn.shared.lock();
        state.router.connection_lost(Instant::now(), conn.id, why);
        state.unregister(conn.id);
        state.wake(None);
    }
}

/// Waits [`PAUSE_POLL`] on the connection's pause timer, arming it first.
async fn recheck(timer: &mut Option<Pin<Box<Sleep>>>) {
    let deadline = tokio::time::Instant::now() + PAUSE_POLL;
    match timer {
        Some(sleep) => sleep.as_mut().reset(deadline),
        None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
    }
    if let Some(sleep) = timer {
        sleep.as_mut().await;
    }
}

enum ReadResult {
    Packets(Output),
    WouldBlock,
    Closed(String),
}

struct Conn {
    id: ConnId,
    peer: SocketAddr,
    shared: Arc<Shared>,
    rbuf: BytesMut,
    version: ProtocolVersion,
    seen_connect: bool,
    outbox: Outbox,
    /// How much to read next time (adapts between READ_CHUNK and MAX_READ).
    read_hint: usize,
    /// Reads that returned bytes since the task last yielded (see [`YIELD_READS`]).
    reads: u8,
    /// Not reading: a subscriber of this publisher is congested (backpressure instead of
    /// dropping its messages).
    paused: bool,
    /// Decoded packets not yet handed to the router (only while paused; at most one read's
    /// worth).
    pending: VecDeque<Packet>,
    /// A decode error found after `pending`: reported once they are handled.
    error: Option<DecodeError>,
}

impl Conn {
    /// What the router queued for this connection.
    fn take(&self) -> Output {
        let (packets, close, watched) = self.outbox.take();
        if watched {
            // Publishers paused for this backlog may go on.
            self.shared.eased.notify_waiters();
        }
        Output {
            packets,
            version: Some(self.version),
            close,
        }
    }

    /// Reads what is buffered in the socket, decodes every whole packet and hands them to
    /// the router under one lock. Returns the connection's output.
    fn read(
        &mut self,
        stream: &mut impl Transport,
        capture: Option<&mut ConnCapture>,
    ) -> ReadResult {
        // A partial packet grows the buffer geometrically; a busy connection (the last read
        // filled the buffer) reads more per call, up to MAX_READ; an idle one borrows little.
        let want = if self.rbuf.is_empty() {
            self.read_hint
        } else {
            (self.rbuf.len() * 2).max(self.read_hint)
        };
        self.rbuf.reserve(want);
        let before = self.rbuf.len();
        let spare = self.rbuf.capacity() - before;
        match stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => return ReadResult::Closed("connection closed by the client".to_owned()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if self.rbuf.is_empty() {
                    self.rbuf = BytesMut::new();
                }
                return ReadResult::WouldBlock;
            }
            Err(e) => return ReadResult::Closed(format!("read error: {e}")),
        }
        let n = self.rbuf.len() - before;
        self.reads = self.reads.saturating_add(1);
        self.read_hint = if n >= spare {
            (self.read_hint * 2).min(MAX_READ)
        } else if n < self.read_hint / 4 {
            (self.read_hint / 2).max(READ_CHUNK)
        } else {
            self.read_hint
        };
        self.shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(c) = capture {
            c.inbound(&self.rbuf[before..]);
        }
        loop {
            match decode_packet(&mut self.rbuf, self.version, self.shared.max_packet_size) {
                Ok(Some(packet)) => {
                    if let Packet::Connect(c) = &packet
                        && !self.seen_connect
                    {
                        self.seen_connect = true;
                        self.version = c.protocol;
                    }
                    debug!(peer = %self.peer, "<- {}", summary(&packet));
                    self.pending.push_back(packet);
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(peer = %self.peer, "<- malformed: {e}");
                    self.error = Some(e);
                    break;
                }
            }
        }
        if self.rbuf.is_empty() {
            // Idle connections hold no buffer.
            self.rbuf = BytesMut::new();
        }
        ReadResult::Packets(self.process())
    }

    /// Hands decoded packets to the router under one lock, stopping early when one of them
    /// found a congested subscriber (the rest wait until it catches up).
    fn process(&mut self) -> Output {
        let mut state = self.shared.lock();
        let now = Instant::now();
        // Pressure raised by something else (a will, $SYS) is not this publisher's.
        state.router.take_pressure();
        while let Some(p) = self.pending.pop_front() {
            let publish = matches!(p, Packet::Publish(_));
            state.router.handle(now, self.id, p);
            if publish && state.router.take_pressure() {
                self.paused = true;
                self.read_hint = READ_CHUNK;
                break;
            }
        }
        if self.pending.is_empty() {
            // Give the memory back while idle.
            self.pending = VecDeque::new();
            if let Some(e) = self.error.take() {
                state.router.decode_error(now, self.id, &e);
            }
        }
        state.wake(Some(self.id));
        drop(state);
        self.take()
    }

    /// Encodes every packet of `out` into one buffer and writes it with one call.
    /// Returns whether the connection should close now.
    async fn write(
        &mut self,
        stream: &mut impl Transport,
        capture: Option<&mut ConnCapture>,
        out: Output,
    ) -> std::io::Result<bool> {
        if out.packets.is_empty() {
            return Ok(out.close);
        }
        let version = out.version.unwrap_or(self.version);
        let mut wbuf = BytesMut::new();
        for o in &out.packets {
            match o {
                Out::Packet(p) => {
                    debug!(peer = %self.peer, "-> {}", summary(p));
                    if let Err(e) = p.encode(version, &mut wbuf) {
                        warn!(peer = %self.peer, "cannot encode {}: {e}", p.packet_type().name());
                    }
                }
                Out::Shared {
                    publish,
                    packet_id,
                    topic,
                    payload,
                    qos,
                } => {
                    debug!(
                        peer = %self.peer,
                        "-> PUBLISH topic={:?} qos={} pid={packet_id} {} bytes {:?}",
                        topic.as_str(),
                        qos.as_u8(),
                        payload.len(),
                        preview(payload),
                    );
                    if let Err(e) = publish.write_to(*packet_id, false, &mut wbuf) {
                        warn!(peer = %self.peer, "cannot encode PUBLISH: {e}");
                    }
                }
            }
        }
        stream.write_all(&wbuf).await?;
        self.shared
            .bytes_out
            .fetch_add(wbuf.len() as u64, Ordering::Relaxed);
        if let Some(c) = capture {
            c.outbound(&wbuf);
        }
        Ok(out.close)
    }
}

/// A one-line description of a packet for the packet log (`-v`).
fn summary(p: &Packet) -> String {
    use std::fmt::Write;
    let mut s = p.packet_type().name().to_owned();
    let _ = match p {
        Packet::Connect(c) => write!(
            s,
            " id={:?} v{} clean={} keep_alive={}{}{}",
            c.client_id.as_str(),
            c.protocol,
            c.clean_start,
            c.keep_alive,
            if c.will.is_some() { " will" } else { "" },
            if c.username.is_some() { " user" } else { "" },
        ),
        Packet::ConnAck(a) => write!(s, " session_present={} {}", a.session_present, a.reason),
        Packet::Publish(m) => write!(
            s,
            " topic={:?} qos={} pid={}{}{}{} {} bytes {:?}",
            m.topic.as_str(),
            m.qos.as_u8(),
            m.packet_id,
            if m.retain { " retain" } else { "" },
            if m.dup { " dup" } else { "" },
            m.properties
                .topic_alias
                .map(|a| format!(" alias={a}"))
                .unwrap_or_default(),
            m.payload.len(),
            preview(&m.payload),
        ),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            write!(s, " pid={} {}", r.packet_id, r.reason)
        }
        Packet::Subscribe(x) => {
            let f: Vec<String> = x
                .filters
                .iter()
                .map(|(f, o)| format!("{}@{}", f.as_str(), o.qos.as_u8()))
                .collect();
            write!(s, " pid={} {}", x.packet_id, f.join(" "))
        }
        Packet::SubAck(a) => {
            let r: Vec<String> = a.reasons.iter().map(|r| format!("0x{:02X}", r.0)).collect();
            write!(s, " pid={} {}", a.packet_id, r.join(" "))
        }
        Packet::Unsubscribe(u) => {
            let f: Vec<&str> = u.filters.iter().map(|f| f.as_str()).collect();
            write!(s, " pid={} {}", u.packet_id, f.join(" "))
        }
        Packet::UnsubAck(a) => write!(s, " pid={}", a.packet_id),
        Packet::Disconnect(d) => write!(s, " {}", d.reason),
        Packet::Auth(a) => write!(s, " {}", a.reason),
        Packet::PingReq | Packet::PingResp => Ok(()),
    };
    s
}

/// The start of a payload, as text, for the packet log.
fn preview(payload: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s = String::from_utf8_lossy(&payload[..payload.len().min(MAX)]).into_owned();
    if payload.len() > MAX {
        s.push_str("...");
    }
    s
}
