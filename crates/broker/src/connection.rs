//! One task per connection: read, decode, hand packets to the router, write its output.
//!
//! The task is a hand-written future, [`ConnTask`], that polls its transport and its
//! outbox directly, so the task holds the connection's state and nothing else: no future
//! state machines for every select branch. An idle connection owns no read or write
//! buffer: it waits for readability, borrows a read buffer while bytes are in flight and
//! lets it go once every whole packet is handled; the router encodes the connection's
//! output straight into its outbox, and the task writes that buffer as it is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tinsel_codec::{Packet, ProtocolVersion, decode_packet};
use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;
use tracing::debug;

use crate::capture::ConnCapture;
use crate::outbox::{Outbox, Taken};
use crate::router::ConnId;
use crate::server::Shared;
use crate::transport::Transport;

/// Read buffer size for a fresh read.
const READ_CHUNK: u32 = 8192;

/// Largest read buffer a busy connection grows to between decodes.
const MAX_READ: u32 = 64 * 1024;

/// A connection task lets other tasks run after this many reads that returned bytes.
/// (Reads also count against tokio's cooperative budget, which alone is too coarse: a task
/// woken by this one would wait on this worker long enough to count as stalled. Yielding
/// after every read costs fan-out throughput: subscribers then write smaller batches.)
const YIELD_READS: u8 = 8;

/// While a publisher waits for a congested subscriber, how often it looks again.
const PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// Registers a connection from `peer` with the router and returns the task that serves it
/// until it closes. The caller has counted it in `shared.live`.
pub(crate) fn serve<S: Transport>(
    shared: Arc<Shared>,
    stream: S,
    peer: std::net::SocketAddr,
    capture: Option<ConnCapture>,
) -> ConnTask<S> {
    let (id, outbox) = {
        let mut state = shared.lock();
        let id = state.router.accept(Instant::now(), peer);
        (id, state.router.outbox(id).unwrap_or_default())
    };
    debug!(%peer, "accepted connection {id}");
    ConnTask {
        stream,
        conn: Conn {
            id,
            shared,
            rbuf: BytesMut::new(),
            version: ProtocolVersion::V311,
            seen_connect: false,
            outbox,
            read_hint: READ_CHUNK,
            reads: 0,
            paused: false,
        },
        capture: capture.map(Box::new),
        wbuf: BytesMut::new(),
        closing: false,
        pause: None,
    }
}

/// A connection's task. Polled by tokio like any future; finishes when the connection
/// ends, after telling the router.
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
}

/// What a paused publisher waits for: its next look, or a congested subscriber taking its
/// backlog.
struct Pause {
    timer: Pin<Box<Sleep>>,
    eased: Pin<Box<OwnedNotified>>,
}

impl<S: Transport> Future for ConnTask<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let task = self.get_mut();
        let why = ready!(task.drive(cx));
        task.finish(&why);
        Poll::Ready(())
    }
}

impl<S: Transport> ConnTask<S> {
    /// Runs the connection as far as it can without waiting; ready with why it ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<String> {
        loop {
            // Write what the router encoded, all of it before anything else: a client that
            // does not read stops being read (and its outbox is bounded by the router).
            while !self.wbuf.is_empty() {
                match ready!(self.stream.poll_write(cx, &self.wbuf)) {
                    Ok(0) => return Poll::Ready("write error: connection closed".to_owned()),
                    Ok(n) => self.wbuf.advance(n),
                    Err(e) => return Poll::Ready(format!("write error: {e}")),
                }
            }
            if self.wbuf.capacity() > 0 {
                // Idle connections hold no buffer.
                self.wbuf = BytesMut::new();
            }
            if self.closing {
                let _ = ready!(self.stream.poll_shutdown(cx));
                return Poll::Ready("closed by the broker".to_owned());
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
                self.conn.process();
                continue;
            }
            if let Err(e) = ready!(self.stream.poll_read_ready(cx)) {
                return Poll::Ready(format!("read error: {e}"));
            }
            if let Err(why) = self
                .conn
                .read(&mut self.stream, self.capture.as_deref_mut())
            {
                return Poll::Ready(why);
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

    /// Tells the router the connection is gone, and shutdown that one fewer is open.
    fn finish(&mut self, why: &str) {
        let conn = &self.conn;
        debug!("connection {} ended: {why}", conn.id);
        {
            let mut state = conn.shared.lock();
            state.router.connection_lost(Instant::now(), conn.id, why);
            state.router.wake(None);
        }
        conn.shared.connection_closed();
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
    /// Reads that returned bytes since the task last yielded (see [`YIELD_READS`]).
    reads: u8,
    /// Not reading: a subscriber of this publisher is congested (backpressure instead of
    /// dropping its messages). What was read stays undecoded in `rbuf` meanwhile.
    paused: bool,
}

impl Conn {
    /// Reads what is buffered in the socket and hands every whole packet to the router.
    /// Err: the connection ended, and why.
    fn read(
        &mut self,
        stream: &mut impl Transport,
        capture: Option<&mut ConnCapture>,
    ) -> Result<(), String> {
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
            Ok(0) => return Err("connection closed by the client".to_owned()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if self.rbuf.is_empty() {
                    self.rbuf = BytesMut::new();
                }
                return Ok(());
            }
            Err(e) => return Err(format!("read error: {e}")),
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
        loop {
            match decode_packet(&mut self.rbuf, self.version, self.shared.max_packet_size) {
                Ok(Some(packet)) => {
                    if let Packet::Connect(c) = &packet
                        && !self.seen_connect
                    {
                        self.seen_connect = true;
                        self.version = c.protocol;
                    }
                    let publish = matches!(packet, Packet::Publish(_));
                    state.router.handle(now, self.id, packet);
                    if publish && state.router.take_pressure() {
                        self.paused = true;
                        self.read_hint = READ_CHUNK;
                        break;
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
        state.router.wake(Some(self.id));
        drop(state);
        if self.rbuf.is_empty() {
            // Idle connections hold no buffer.
            self.rbuf = BytesMut::new();
        }
    }
}
