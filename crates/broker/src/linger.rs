//! Closing so the client can read why: after the broker closed a connection, its socket
//! lingers, reading and throwing away what the client still sends, so that the kernel
//! sends no reset before the client has read the packet that says why.

use std::future::Future;
use std::io::{self, Read};
use std::net::TcpStream as StdTcpStream;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;
use tracing::debug;

use crate::shared::Shared;
use crate::transport::Transport;

/// How long a socket lingers after the broker closed its connection (a DISCONNECT with a
/// reason code, a refusing CONNACK, a shutdown): the last packets are written and the write
/// side shut (the client reads them, then the end of the stream), and what the client still
/// sends is read and thrown away. Closing a socket with unread input makes the kernel answer
/// with a reset instead: the client's next write fails before it has read the packet that
/// says why, and the reset can discard that packet unread. A client that sees the end of
/// the stream usually closes too, which ends the linger at once; a client still sending
/// after this long is not reading, and its socket closes anyway (with a reset, as before).
/// Well below the shutdown grace period, so that shutdown still finishes within it.
const LINGER: Duration = Duration::from_secs(2);

/// How long a socket lingers once the broker stops (also one that started lingering
/// before): long enough to read what the
/// client had in flight when it was told (so that it reads its DISCONNECT 0x8B, then the
/// end of the stream), short because the process is about to close every socket anyway and
/// a stop should not wait [`LINGER`] for each client that does not close its side.
const SHUTDOWN_LINGER: Duration = Duration::from_millis(200);

/// At most this much input is thrown away while a socket lingers: a few socket buffers'
/// worth, more than a client that was mid-burst when it was told to go still has in flight.
/// A client that sends more is not reading; at the bound its socket closes (with a reset).
const LINGER_BYTES: usize = 4 << 20;

/// Read size while lingering (the bytes are thrown away; the buffer is held only while
/// reading).
const LINGER_READ: usize = 16 * 1024;

/// A socket whose connection the broker closed, lingering (see [`LINGER`]): it reads and
/// throws away what the client still sends, until the client closes its side or the socket
/// fails (then closing sends no reset), or [`LINGER`] ([`SHUTDOWN_LINGER`]) has passed or
/// [`LINGER_BYTES`] were read (then it closes all the same, with a reset if input is still
/// coming, as it did before lingering existed). It is no connection any more: the router has forgotten it
/// and it does not count against the connection limit (a client reconnecting at once is
/// not kept out), but it holds a file descriptor: `Shared::lingering` counts it until it is
/// dropped, and caps how many linger at once (at the cap a socket closes at once).
pub(crate) struct Linger<S> {
    stream: S,
    shared: Arc<Shared>,
    deadline: Pin<Box<Sleep>>,
    /// Fires when the broker stops: the deadline moves up to [`SHUTDOWN_LINGER`] from then.
    stop: Option<Pin<Box<OwnedNotified>>>,
    /// Bytes still to throw away before giving up.
    left: usize,
}

impl<S: Transport> Linger<S> {
    /// Starts lingering on `stream`, whose write side is shut; None (and `stream` closed)
    /// when as many sockets linger already as connections may be open. Within a runtime.
    pub(crate) fn start(shared: &Arc<Shared>, stream: S) -> Option<Linger<S>> {
        if !shared.linger_started() {
            debug!("too many sockets linger: closing one at once");
            return None;
        }
        // Made before the look at `stopping`: a stop told after the look still reaches it
        // (`notify_waiters` reaches every `Notified` made before it).
        let stop = Box::pin(shared.stop_lingering.clone().notified_owned());
        let (limit, stop) = if shared.stopping.load(Ordering::Acquire) {
            (SHUTDOWN_LINGER, None)
        } else {
            (LINGER, Some(stop))
        };
        Some(Linger {
            stream,
            shared: shared.clone(),
            stop,
            deadline: Box::pin(tokio::time::sleep(limit)),
            left: LINGER_BYTES,
        })
    }
}

impl<S: Transport> Future for Linger<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(stop) = &mut this.stop
            && stop.as_mut().poll(cx).is_ready()
        {
            this.stop = None;
            let soon = tokio::time::Instant::now() + SHUTDOWN_LINGER;
            if soon < this.deadline.deadline() {
                this.deadline.as_mut().reset(soon);
            }
        }
        // Allocated at the first read: a lingering socket with nothing to read holds none.
        let mut scratch = BytesMut::new();
        loop {
            if this.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if ready!(this.stream.poll_read_ready(cx)).is_err() {
                return Poll::Ready(());
            }
            scratch.clear();
            scratch.reserve(LINGER_READ);
            match this.stream.try_read_buf(&mut scratch) {
                // The client closed its side: nothing is left unread, no reset.
                Ok(0) => return Poll::Ready(()),
                Ok(n) => {
                    this.left = this.left.saturating_sub(n);
                    if this.left == 0 {
                        return Poll::Ready(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(()),
            }
        }
    }
}

impl<S> Drop for Linger<S> {
    fn drop(&mut self) {
        // Also when the runtime drops the task.
        self.shared.linger_ended();
    }
}

/// One read that throws away what it gets: true when the client has closed its side after
/// it (or the socket failed), so that closing now sends no reset. A client that already
/// closed (the usual end after a DISCONNECT it sent) then costs no lingering task.
pub(crate) fn client_closed(stream: &StdTcpStream) -> bool {
    let mut buf = [0u8; 512];
    match (&*stream).read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}
