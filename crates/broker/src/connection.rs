//! One task per connection: read, decode, hand packets to the router, write its output.
//!
//! The task is a hand-written future, [`ConnTask`], that polls its transport and its
//! outbox directly, so the task holds the connection's state and nothing else: no future
//! state machines for every select branch. An idle connection owns no read or write
//! buffer: it waits for readability, borrows a read buffer while bytes are in flight and
//! lets it go once every whole packet is handled; the router encodes the connection's
//! output straight into its outbox, and the task writes that buffer as it is.
//!
//! A connection with nothing to do parks (see [`crate::parking`]): right after its CONNACK,
//! and whenever it has been idle for [`PARK_IDLE`]. Its task ends; the parking lot gives it
//! a new one when the client sends something or the router has output for it.
//!
//! A connection the broker closes lingers (see [`LINGER`]): its last packets written, the
//! write side shut, what the client still sends is read and thrown away for a bounded time,
//! so that the client reads why it was closed instead of a reset.

use std::borrow::Cow;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tinsel_codec::{Packet, ProtocolVersion, decode_packet};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;
use tracing::{debug, warn};

use tinsel_core::{ConnId, ListenerId, Origin, Outbox, Taken};

use crate::capture::ConnCapture;
use crate::linger::{Linger, client_closed};
use crate::parking::{Host, Parked, ParkingLot};
use crate::shared::Shared;
use crate::transport::Transport;

/// Read buffer size for a fresh read.
const READ_CHUNK: u32 = 8192;

/// Largest read buffer a busy connection grows to between decodes.
const MAX_READ: u32 = 64 * 1024;

/// A connection task lets other tasks run after this many reads that returned bytes in one
/// poll. (Reads also count against tokio's cooperative budget, which alone is too coarse: a
/// task woken by this one would wait on this worker long enough to count as stalled.
/// Yielding after every read costs fan-out throughput: subscribers then write smaller
/// batches.) Only reads of the same poll count: a task that waited for its socket has let
/// the others run already, and a yield costs a pass through the scheduler and, on a runtime
/// with several workers, wakes another worker to steal the task (counted across polls, a
/// paced connection, one read per poll, yielded on every 8th message).
const YIELD_READS: u8 = 8;

/// While a publisher waits for a congested subscriber, how often it looks again.
const PAUSE_POLL: Duration = Duration::from_millis(2);

/// A connection that neither read nor wrote for this long parks.
const PARK_IDLE: Duration = Duration::from_secs(1);

/// Registers a connection from `peer` with the router and returns the task that serves it
/// until it closes or parks. The caller has counted it in `shared.live`.
pub(crate) fn serve<S: Transport>(
    shared: Arc<Shared>,
    stream: S,
    peer: std::net::SocketAddr,
    listener: ListenerId,
    capture: Option<ConnCapture>,
) -> ConnFuture<S> {
    let mut stream = stream;
    let (id, outbox) = register(&shared, peer, listener, stream.take_identity());
    let conn = Conn::new(id, shared, ProtocolVersion::V311, false, outbox);
    ConnFuture(Stage::Serving(ConnTask::new(
        stream,
        conn,
        capture.map(Box::new),
    )))
}

/// Registers a connection from `peer` with the router: its id and outbox. `identity`: its
/// TLS certificate's name, and whether that is its user name.
fn register(
    shared: &Shared,
    peer: SocketAddr,
    listener: ListenerId,
    identity: Option<(Arc<str>, bool)>,
) -> (ConnId, Outbox) {
    let (id, outbox) = {
        let mut state = shared.lock();
        let origin = Origin::Network(peer);
        let (id, outbox) = state.router.accept_on(Instant::now(), origin, listener);
        if let Some((name, as_username)) = identity {
            state.router.set_tls_identity(id, name, as_username);
        }
        (id, outbox)
    };
    debug!(%peer, "accepted connection {id}");
    (id, outbox)
}

/// Size of the first read of a connection the parking lot accepted: a CONNECT is rarely
/// larger (a bigger one, or more bytes, go to a task).
const WELCOME_READ: usize = 1024;

/// The parking lot serves connections with the code of this file.
impl Host for Arc<Shared> {
    fn connection_opened(&self, listener: ListenerId) -> bool {
        Shared::connection_opened(self, listener)
    }

    fn outbox(&self, id: ConnId) -> Option<Outbox> {
        self.lock().router.outbox(id)
    }

    fn welcome(
        &self,
        lot: &ParkingLot,
        rt: &Handle,
        stream: StdTcpStream,
        peer: SocketAddr,
        listener: ListenerId,
    ) {
        welcome(self, lot, rt, stream, peer, listener);
    }

    fn resume_plain(
        &self,
        lot: &ParkingLot,
        rt: &Handle,
        id: ConnId,
        outbox: Outbox,
        p: Parked,
        closed: bool,
    ) {
        resume_plain(lot, rt, self, id, outbox, p, closed);
    }

    fn resume_task(&self, rt: &Handle, id: ConnId, outbox: Outbox, p: Parked) {
        resume_task(rt, self, id, outbox, p);
    }
}

/// A connection the parking lot's thread accepted (and counted in `shared.live`): served
/// there first (see `serve_plain`).
fn welcome(
    shared: &Arc<Shared>,
    lot: &ParkingLot,
    rt: &Handle,
    stream: StdTcpStream,
    peer: SocketAddr,
    listener: ListenerId,
) {
    // TCP_NODELAY comes from the listening socket (Linux copies it to accepted ones).
    let (id, outbox) = register(shared, peer, listener, None);
    // The listener defers accepting until the first bytes are in (see `sockopt`), so the
    // CONNECT is normally here: read it now. Nothing yet (the deferral ran out, or the
    // option is not available): the connection parks and its CONNECT comes as a
    // readiness event like any other.
    let conn = Conn::new(id, shared.clone(), ProtocolVersion::V311, false, outbox);
    serve_plain(lot, rt, conn, stream, false, false);
}

/// A parked connection whose socket became readable: served on the lot's thread first
/// (see `serve_plain`); its socket is still in the lot's epoll set. `closed`: the client
/// closed its side (or the socket failed) after what it sent.
fn resume_plain(
    lot: &ParkingLot,
    rt: &Handle,
    shared: &Arc<Shared>,
    id: ConnId,
    outbox: Outbox,
    p: Parked,
    closed: bool,
) {
    let conn = Conn::new(id, shared.clone(), p.version, p.seen_connect, outbox);
    serve_plain(lot, rt, conn, p.stream, true, closed);
}

/// Serves a connection on the parking lot's thread, without a task or a tokio
/// registration, when that is simple: what the client sent fits one small read (a new
/// connection's CONNECT is usually there already; later, a PINGREQ), the answer goes out
/// with one write, and the connection parks again. Nothing to read yet: it parks and waits.
/// An end of stream or error ends it here. Anything less simple (a partial packet, more
/// than one read's worth, a write that does not go through at once) gets a task, and so
/// does a connection that sent a message (see `Conn::busy`: it is handled here, the ones
/// after it by the task). `registered`: its socket is in the lot's epoll set already. `closed`: the client
/// closed its side after what this read takes (the lot's event said so, once), so the
/// connection ends instead of parking again.
fn serve_plain(
    lot: &ParkingLot,
    rt: &Handle,
    mut conn: Conn,
    stream: StdTcpStream,
    registered: bool,
    closed: bool,
) {
    let (shared, id) = (conn.shared.clone(), conn.id);
    let shared = &shared;
    let mut buf = [0u8; WELCOME_READ];
    let full = match (&stream).read(&mut buf) {
        Ok(0) => return end(shared, id, "connection closed by the client"),
        Ok(n) => {
            shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            conn.rbuf.extend_from_slice(&buf[..n]);
            conn.process();
            n == buf.len()
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => return end(shared, id, &io_failure(Io::Read, &e)),
    };
    let mut pending = BytesMut::new();
    let mut close = false;
    if !full && conn.rbuf.is_empty() && !conn.paused && conn.throttled.is_none() {
        let mut taken = conn.outbox.take(None);
        if taken.watched {
            shared.eased.notify_waiters();
        }
        if !taken.bytes.is_empty() {
            match (&stream).write(&taken.bytes) {
                Ok(n) => {
                    shared.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    taken.bytes.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return end(shared, id, &io_failure(Io::Write, &e)),
            }
        }
        (pending, close) = (taken.bytes, taken.close);
        if pending.is_empty() && close {
            if registered {
                lot.forget(id, &stream);
            }
            // The client closed its side and this read took all it sent: nothing is left
            // to cause a reset, so no need to linger.
            let linger = !closed;
            return close_plain(rt, shared, id, stream, linger);
        }
        if pending.is_empty() && closed {
            return end(shared, id, "connection closed by the client");
        }
        if pending.is_empty() && !conn.busy {
            let parked = Parked {
                stream,
                version: conn.version,
                seen_connect: conn.seen_connect,
                capture: None,
            };
            match lot.park(id, &conn.outbox, parked, registered) {
                Ok(()) => return,
                Err(p) => {
                    if registered {
                        lot.forget(id, &p.stream);
                    }
                    return spawn_task(rt, p.stream, conn, None, BytesMut::new(), false);
                }
            }
        }
    }
    if registered {
        lot.forget(id, &stream);
    }
    spawn_task(rt, stream, conn, None, pending, close);
}

/// Ends connection `id`, closed by the broker on the lot's thread once its last packets are
/// written: shuts the write side and, with `linger`, hands the socket to a task that
/// lingers (see [`LINGER`]): the lot's thread never waits.
fn close_plain(rt: &Handle, shared: &Arc<Shared>, id: ConnId, stream: StdTcpStream, linger: bool) {
    let lingering = if linger
        && stream.shutdown(std::net::Shutdown::Write).is_ok()
        && !client_closed(&stream)
    {
        let _rt = rt.enter();
        TcpStream::from_std(stream)
            .ok()
            .and_then(|s| Linger::start(shared, s))
    } else {
        None
    };
    end(shared, id, "closed by the broker");
    if let Some(l) = lingering {
        rt.spawn(l);
    }
}

/// A parked connection the router has output for (or one that cannot be served on the
/// lot's thread): a task again.
fn resume_task(rt: &Handle, shared: &Arc<Shared>, id: ConnId, outbox: Outbox, p: Parked) {
    let conn = Conn::new(id, shared.clone(), p.version, p.seen_connect, outbox);
    spawn_task(rt, p.stream, conn, p.capture, BytesMut::new(), false);
}

/// Gives a connection a task on `rt`, with `pending` bytes to write first (and to close
/// after them if `close`).
fn spawn_task(
    rt: &Handle,
    stream: StdTcpStream,
    conn: Conn,
    capture: Option<Box<ConnCapture>>,
    pending: BytesMut,
    close: bool,
) {
    let _rt = rt.enter();
    match TcpStream::from_std(stream) {
        Ok(stream) => {
            let mut task = ConnTask::new(stream, conn, capture);
            task.wbuf = pending;
            task.closing = close;
            rt.spawn(ConnFuture(Stage::Serving(task)));
        }
        Err(e) => {
            warn!("connection {}: cannot give it a task: {e}", conn.id);
            end(&conn.shared, conn.id, &format!("cannot serve: {e}"));
        }
    }
}

/// Which way a socket call failed, for [`io_failure`].
#[derive(Debug, Clone, Copy)]
enum Io {
    Read,
    Write,
}

/// Why a connection ended after a failed read or write. The usual failures (a client that
/// reset or went away, which a storm of disconnects is made of) are fixed strings: the OS
/// error's text costs a `strerror` call and two allocations per connection.
fn io_failure(io: Io, e: &io::Error) -> Cow<'static, str> {
    use io::ErrorKind as K;
    let fixed = match (io, e.kind()) {
        (Io::Read, K::ConnectionReset) => "read error: connection reset by the client",
        (Io::Write, K::ConnectionReset) => "write error: connection reset by the client",
        (Io::Write, K::BrokenPipe) => "write error: connection closed by the client",
        (Io::Read, K::TimedOut) => "read error: connection timed out",
        (Io::Write, K::TimedOut) => "write error: connection timed out",
        (Io::Read, _) => return Cow::Owned(format!("read error: {e}")),
        (Io::Write, _) => return Cow::Owned(format!("write error: {e}")),
    };
    Cow::Borrowed(fixed)
}

/// Tells the router that connection `id` is gone, and shutdown and its listener that one
/// fewer is open.
pub(crate) fn end(shared: &Arc<Shared>, id: ConnId, why: &str) {
    debug!("connection {id} ended: {why}");
    let listener = {
        let mut state = shared.lock();
        let listener = state.router.listener_of(id);
        state.router.connection_lost(Instant::now(), id, why);
        shared.wake(&mut state, None);
        listener
    };
    shared.connection_closed(listener);
}

/// A connection's task: finishes when the connection ends (after telling the router) and
/// its socket has lingered, or when it parks.
pub(crate) struct ConnFuture<S>(Stage<S>);

/// Where a connection's task is.
enum Stage<S> {
    /// Serving the connection.
    Serving(ConnTask<S>),
    /// The broker closed it; the router has forgotten it; its socket lingers.
    Lingering(Linger<S>),
    /// Ended, or parked.
    Done,
}

impl<S: Transport> Future for ConnFuture<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Stage::Serving(task) = &mut this.0 {
            let how = ready!(task.drive(cx));
            if let Stage::Serving(task) = std::mem::replace(&mut this.0, Stage::Done) {
                this.0 = task.finish(how);
            }
        }
        if let Stage::Lingering(linger) = &mut this.0 {
            ready!(Pin::new(linger).poll(cx));
        }
        this.0 = Stage::Done;
        Poll::Ready(())
    }
}

/// How a connection task ends.
enum End {
    /// The connection is closed, for this reason.
    Closed(Cow<'static, str>),
    /// The broker closed it: its last packets are written and its write side is shut.
    Shut,
    /// It has nothing to do: to the parking lot.
    Park,
}

/// A connection's state while it has a task.
pub(crate) struct ConnTask<S> {
    stream: S,
    conn: Conn,
    /// Boxed: most connections are not captured.
    capture: Option<Box<ConnCapture>>,
    /// Bytes being written; empty and without capacity when there are none.
    wbuf: BytesMut,
    /// Close once `wbuf` is written.
    closing: bool,
    /// While paused for a congested subscriber (boxed: idle connections never are).
    pause: Option<Box<Pause>>,
    /// Fires when the connection may have been idle for [`PARK_IDLE`].
    park_timer: Option<Pin<Box<Sleep>>>,
    /// Fires when a publisher over its rate may be read again (see `Conn::throttled`).
    throttle_timer: Option<Pin<Box<Sleep>>>,
    /// Fires when a packet that started arriving may be late (see `Conn::partial_since`).
    packet_timer: Option<Pin<Box<Sleep>>>,
}

/// What a paused publisher waits for: its next look, or a congested subscriber taking its
/// backlog.
struct Pause {
    timer: Pin<Box<Sleep>>,
    eased: Pin<Box<OwnedNotified>>,
}

impl<S: Transport> ConnTask<S> {
    fn new(stream: S, conn: Conn, capture: Option<Box<ConnCapture>>) -> ConnTask<S> {
        ConnTask {
            stream,
            conn,
            capture,
            wbuf: BytesMut::new(),
            closing: false,
            pause: None,
            park_timer: None,
            throttle_timer: None,
            packet_timer: None,
        }
    }

    /// What the task does after `drive` ended with `how`.
    fn finish(self, how: End) -> Stage<S> {
        match how {
            End::Closed(why) => end(&self.conn.shared, self.conn.id, &why),
            End::Park => self.park(),
            End::Shut => {
                // Counted as lingering before it stops counting as a connection, so that
                // shutdown never sees neither.
                let ConnTask { stream, conn, .. } = self;
                let linger = Linger::start(&conn.shared, stream);
                end(&conn.shared, conn.id, "closed by the broker");
                if let Some(linger) = linger {
                    return Stage::Lingering(linger);
                }
            }
        }
        Stage::Done
    }

    /// Hands the connection to the parking lot; its task ends.
    fn park(self) {
        let ConnTask {
            stream,
            conn,
            capture,
            ..
        } = self;
        let Some(lot) = conn.shared.parking.get().cloned() else {
            return end(&conn.shared, conn.id, "cannot park");
        };
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => return end(&conn.shared, conn.id, &format!("cannot park: {e}")),
        };
        let parked = Parked {
            stream,
            version: conn.version,
            seen_connect: conn.seen_connect,
            capture,
        };
        if let Err(p) = lot.park(conn.id, &conn.outbox, parked, false) {
            // Output came meanwhile, or no room in the lot's epoll set: a task again.
            resume_task(&Handle::current(), &conn.shared, conn.id, conn.outbox, p);
        }
    }

    /// True when the idle connection should park now: after its CONNACK, or once it has
    /// neither read nor written for [`PARK_IDLE`]. Otherwise the park timer wakes the task
    /// when it may be time.
    fn should_park(&mut self, cx: &mut Context<'_>) -> bool {
        if !S::PARKABLE || !self.conn.rbuf.is_empty() || self.conn.shared.parking.get().is_none() {
            return false;
        }
        if self.conn.park_now {
            return true;
        }
        let due = |c: &Conn| tokio::time::Instant::from_std(c.last_active + PARK_IDLE);
        let timer = self
            .park_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due(&self.conn))));
        // The timer is not moved on every read (busy connections would pay for it): when it
        // fires early, it is set again from the last activity.
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = due(&self.conn);
            if due <= tokio::time::Instant::now() {
                return true;
            }
            timer.as_mut().reset(due);
        }
    }

    /// Runs the connection as far as it can without waiting; ready when it ends or parks.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        self.conn.reads = 0;
        loop {
            // Write what the router encoded, all of it before anything else: a client that
            // does not read stops being read (and its outbox is bounded by the router).
            while !self.wbuf.is_empty() {
                match ready!(self.stream.poll_write(cx, &self.wbuf)) {
                    Ok(0) => {
                        return Poll::Ready(End::Closed(Cow::Borrowed(
                            "write error: connection closed",
                        )));
                    }
                    Ok(n) => self.wbuf.advance(n),
                    Err(e) => return Poll::Ready(End::Closed(io_failure(Io::Write, &e))),
                }
            }
            if self.wbuf.capacity() > 0 {
                // Idle connections hold no buffer.
                self.wbuf = BytesMut::new();
            }
            if self.closing {
                return Poll::Ready(match ready!(self.stream.poll_shutdown(cx)) {
                    Ok(()) => End::Shut,
                    // The client is gone already: nothing to linger for.
                    Err(_) => End::Closed(Cow::Borrowed("closed by the broker")),
                });
            }
            if self.conn.reads >= YIELD_READS {
                // Let the other tasks on this worker run (its subscribers among them): tokio
                // polls this task again after them.
                self.conn.reads = 0;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Output the router queued for this connection. Only the outbox's own lock.
            let taken = self.conn.outbox.take(Some(cx.waker()));
            if taken.watched {
                // Publishers paused for this backlog may go on.
                self.conn.shared.eased.notify_waiters();
            }
            if !taken.bytes.is_empty() || taken.close {
                self.start_write(taken);
                continue;
            }
            if self.conn.paused {
                ready!(self.poll_pause(cx));
                // Resumed: handle what was read before the pause.
                self.conn.partial_since = None;
                self.conn.process();
                continue;
            }
            if let Some(until) = self.conn.throttled {
                ready!(self.poll_throttle(cx, until));
                self.conn.throttled = None;
                self.conn.partial_since = None;
                self.conn.process();
                continue;
            }
            match self.stream.poll_read_ready(cx) {
                Poll::Pending if self.should_park(cx) => return Poll::Ready(End::Park),
                Poll::Pending if self.packet_late(cx) => {
                    self.conn.packet_timed_out();
                    continue;
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(End::Closed(io_failure(Io::Read, &e)));
                }
                Poll::Ready(Ok(())) => {}
            }
            let capture = self.capture.as_deref_mut();
            if let Err(why) = self.conn.read(&mut self.stream, capture) {
                return Poll::Ready(End::Closed(why));
            }
        }
    }

    fn start_write(&mut self, taken: Taken) {
        let n = taken.bytes.len();
        self.conn
            .shared
            .bytes_out
            .fetch_add(n as u64, Ordering::Relaxed);
        if let Some(c) = &mut self.capture {
            c.outbound(&taken.bytes);
        }
        self.wbuf = taken.bytes;
        self.closing = taken.close;
        self.conn.last_active = Instant::now();
    }

    /// Ready once a publisher over its rate may be read again, at `until`. Meanwhile
    /// nothing is read from it: its socket's receive buffer fills and TCP's flow control
    /// makes the client wait (its output is still written).
    fn poll_throttle(&mut self, cx: &mut Context<'_>, until: Instant) -> Poll<()> {
        let until = tokio::time::Instant::from_std(until);
        let timer = self
            .throttle_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if timer.deadline() != until {
            timer.as_mut().reset(until);
        }
        timer.as_mut().poll(cx)
    }

    /// True when the packet that started arriving at `Conn::partial_since` is still not
    /// whole after `packet_timeout`. Otherwise the packet timer wakes the task when it may be.
    /// Like the park timer, it is not moved on every read: when it fires early it is set
    /// again from the packet's start.
    fn packet_late(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(since), Some(limit)) = (self.conn.partial_since, self.conn.shared.packet_timeout)
        else {
            return false;
        };
        let due = tokio::time::Instant::from_std(since + limit);
        let timer = self
            .packet_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if due <= tokio::time::Instant::now() {
                return true;
            }
            timer.as_mut().reset(due);
        }
    }

    /// Ready when the publisher may read again: the pause timer ran out or a congested
    /// subscriber took its backlog, and no subscriber is congested any more.
    fn poll_pause(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let eased = &self.conn.shared.eased;
            let pause = self.pause.get_or_insert_with(|| {
                Box::new(Pause {
                    timer: Box::pin(tokio::time::sleep(PAUSE_POLL)),
                    eased: Box::pin(eased.clone().notified_owned()),
                })
            });
            // Both polled, so that either wakes the task.
            let timer = pause.timer.as_mut().poll(cx).is_ready();
            let eased_now = pause.eased.as_mut().poll(cx).is_ready();
            if !timer && !eased_now {
                return Poll::Pending;
            }
            let congested = self.conn.shared.lock().router.congested(Instant::now());
            if !congested {
                self.conn.paused = false;
                self.pause = None;
                return Poll::Ready(());
            }
            if timer {
                let next = tokio::time::Instant::now() + PAUSE_POLL;
                pause.timer.as_mut().reset(next);
            }
            if eased_now {
                pause.eased = Box::pin(eased.clone().notified_owned());
            }
        }
    }
}

struct Conn {
    id: ConnId,
    shared: Arc<Shared>,
    rbuf: BytesMut,
    version: ProtocolVersion,
    seen_connect: bool,
    outbox: Outbox,
    /// How much to read next time (adapts between READ_CHUNK and MAX_READ).
    read_hint: u32,
    /// Reads that returned bytes in this poll of the task (see [`YIELD_READS`]).
    reads: u8,
    /// Not reading: a subscriber of this publisher is congested (backpressure instead of
    /// dropping its messages). What was read stays undecoded in `rbuf` meanwhile.
    paused: bool,
    /// Park as soon as idle (the CONNACK is out).
    park_now: bool,
    /// Handled a packet that carries or acknowledges a message (PUBLISH, PUBACK, PUBREC,
    /// PUBREL, PUBCOMP): the connection is in use, so the parking lot gives it a task
    /// instead of serving its next packets on the lot's thread too (each message would then
    /// cross from the lot's thread to the tasks of its subscribers). CONNECT, SUBSCRIBE,
    /// UNSUBSCRIBE, PINGREQ, AUTH and DISCONNECT are served on the lot's thread: a device
    /// that connects, subscribes and waits never costs a task.
    busy: bool,
    /// When the connection last read or wrote.
    last_active: Instant,
    /// Not reading until then: the client published faster than its rate limits allow
    /// (`publish_rate_action = "throttle"`, see [`tinsel_core::Router::take_throttle`]).
    /// What was read stays undecoded in `rbuf` meanwhile.
    throttled: Option<Instant>,
    /// When the first byte of the incomplete packet at the start of `rbuf` was read (None:
    /// no incomplete packet). A packet not whole within `packet_timeout` closes the
    /// connection: a client cannot hold a buffer by sending a byte at a time.
    partial_since: Option<Instant>,
}

impl Conn {
    fn new(
        id: ConnId,
        shared: Arc<Shared>,
        version: ProtocolVersion,
        seen_connect: bool,
        outbox: Outbox,
    ) -> Conn {
        Conn {
            id,
            shared,
            rbuf: BytesMut::new(),
            version,
            seen_connect,
            outbox,
            read_hint: READ_CHUNK,
            reads: 0,
            paused: false,
            park_now: false,
            busy: false,
            last_active: Instant::now(),
            throttled: None,
            partial_since: None,
        }
    }

    /// Reads what is buffered in the socket and hands every whole packet to the router.
    /// Err: the connection ended, and why.
    fn read(
        &mut self,
        stream: &mut impl Transport,
        capture: Option<&mut ConnCapture>,
    ) -> Result<(), Cow<'static, str>> {
        // A partial packet grows the buffer geometrically; a busy connection (the last read
        // filled the buffer) reads more per call, up to MAX_READ; an idle one borrows little.
        let hint = self.read_hint as usize;
        let want = if self.rbuf.is_empty() {
            hint
        } else {
            (self.rbuf.len() * 2).max(hint)
        };
        self.rbuf.reserve(want);
        let before = self.rbuf.len();
        let spare = self.rbuf.capacity() - before;
        match stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => return Err(Cow::Borrowed("connection closed by the client")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if self.rbuf.is_empty() {
                    self.rbuf = BytesMut::new();
                }
                return Ok(());
            }
            Err(e) => return Err(io_failure(Io::Read, &e)),
        }
        let n = self.rbuf.len() - before;
        self.reads = self.reads.saturating_add(1);
        self.read_hint = if n >= spare {
            (self.read_hint * 2).min(MAX_READ)
        } else if (n as u32) < self.read_hint / 4 {
            (self.read_hint / 2).max(READ_CHUNK)
        } else {
            self.read_hint
        };
        self.shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(c) = capture {
            c.inbound(&self.rbuf[before..]);
        }
        self.process();
        Ok(())
    }

    /// Decodes every whole packet in the read buffer and hands each to the router, all
    /// under one lock; stops early when one found a congested subscriber (the rest wait in
    /// the buffer until it catches up). Its output waits in the outbox.
    fn process(&mut self) {
        let mut state = self.shared.lock();
        let now = Instant::now();
        // Pressure raised by something else (a will, $SYS) is not this publisher's.
        state.router.take_pressure();
        state.router.take_throttle();
        let mut decoded = false;
        loop {
            match decode_packet(&mut self.rbuf, self.version, self.shared.max_packet_size) {
                Ok(Some(packet)) => {
                    decoded = true;
                    if let Packet::Connect(c) = &packet
                        && !self.seen_connect
                    {
                        self.seen_connect = true;
                        self.version = c.protocol;
                        self.park_now = true;
                    }
                    let publish = matches!(packet, Packet::Publish(_));
                    self.busy |= matches!(
                        packet,
                        Packet::Publish(_)
                            | Packet::PubAck(_)
                            | Packet::PubRec(_)
                            | Packet::PubRel(_)
                            | Packet::PubComp(_)
                    );
                    state.router.handle(now, self.id, packet);
                    if publish {
                        self.throttled = state.router.take_throttle();
                        if state.router.take_pressure() {
                            self.paused = true;
                        }
                        if self.paused || self.throttled.is_some() {
                            self.read_hint = READ_CHUNK;
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    state.router.decode_error(now, self.id, &e);
                    // The router closes the connection: nothing more is read from it.
                    self.rbuf.clear();
                    break;
                }
            }
        }
        self.shared.wake(&mut state, Some(self.id));
        drop(state);
        self.last_active = now;
        if self.rbuf.is_empty() {
            // Idle connections hold no buffer.
            self.rbuf = BytesMut::new();
            self.partial_since = None;
        } else if decoded || self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
    }

    /// The packet being read took longer than `packet_timeout`: the router closes the
    /// connection (MQTT 5 after CONNECT: DISCONNECT 0x8D first); nothing more is read.
    fn packet_timed_out(&mut self) {
        let why = "packet not complete within packet_timeout";
        {
            let mut state = self.shared.lock();
            let now = Instant::now();
            let reason = tinsel_codec::ReasonCode::KEEP_ALIVE_TIMEOUT;
            state.router.close_connection(now, self.id, reason, why);
            self.shared.wake(&mut state, Some(self.id));
        }
        debug!("connection {}: {why}", self.id);
        self.rbuf = BytesMut::new();
        self.partial_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_socket_failures_are_fixed_strings_and_others_keep_the_os_text() {
        let reset = io::Error::from_raw_os_error(libc::ECONNRESET);
        let why = io_failure(Io::Read, &reset);
        assert!(matches!(why, Cow::Borrowed(_)));
        assert_eq!(why, "read error: connection reset by the client");
        let pipe = io::Error::from_raw_os_error(libc::EPIPE);
        assert_eq!(
            io_failure(Io::Write, &pipe),
            "write error: connection closed by the client"
        );
        let other = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        let why = io_failure(Io::Read, &other);
        assert!(matches!(why, Cow::Owned(_)));
        assert!(why.starts_with("read error: "), "{why}");
        assert!(why.contains("os error"), "{why}");
    }
}
