//! The parking lot: idle TCP connections wait here without a task or a tokio registration.
//!
//! A connection task costs two 256-byte blocks in tokio (the task, and the I/O
//! registration that wakes it), more than everything the broker itself keeps for a
//! connection. Most IoT connections are idle nearly all the time, so a connection with
//! nothing to do (see `ConnTask`'s parking rule) parks: its socket, protocol version and
//! capture (16 bytes, [`Parked`]) move into its outbox, the socket joins one epoll set of
//! the lot's own (mio) and its task ends. A thread of the lot sleeps in that set.
//!
//! Without packet capture, the lot's thread also accepts the connections: a new connection
//! is read, answered and parked there when its CONNECT is already in (see
//! `Host::welcome`), so a connection that connects and then idles never costs a tokio
//! task or registration at all.
//!
//! A parked connection is taken out again (a new task, a new registration) when its socket
//! becomes readable (bytes, end of stream or an error) or when the router queues output for
//! it (its outbox's wake-up reports it, and the lot is asked through [`ParkingLot::want`]).
//!
//! Locks: parking registers the socket under the outbox's lock, so a wake-up or a
//! readiness event sees either the connection's task or the parked socket, never neither.

use std::net::TcpStream as StdTcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use tinsel_codec::ProtocolVersion;
use tokio::runtime::Handle;
use tracing::{debug, warn};

use crate::capture::ConnCapture;
use tinsel_core::{ConnId, ListenerId, Outbox};

/// What a parked connection keeps besides its router state (in its outbox's parked slot).
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) stream: StdTcpStream,
    pub(crate) version: ProtocolVersion,
    pub(crate) seen_connect: bool,
    pub(crate) capture: Option<Box<ConnCapture>>,
}

impl Parked {
    /// The form the outbox keeps (inline: an idle connection allocates nothing for it).
    fn into_slot(self) -> tinsel_core::Parked {
        let level = match self.version {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            _ => 5,
        };
        tinsel_core::Parked {
            socket: self.stream.into(),
            tag: level | (u16::from(self.seen_connect) << 8),
            extra: self
                .capture
                .map(|c| Box::new(c) as Box<dyn std::any::Any + Send>),
        }
    }

    /// What [`Parked::into_slot`] made.
    fn from_slot(slot: tinsel_core::Parked) -> Parked {
        let version = match slot.tag & 0xff {
            3 => ProtocolVersion::V31,
            4 => ProtocolVersion::V311,
            _ => ProtocolVersion::V5,
        };
        Parked {
            stream: slot.socket.into(),
            version,
            seen_connect: slot.tag >> 8 != 0,
            capture: slot
                .extra
                .and_then(|e| e.downcast::<Box<ConnCapture>>().ok())
                .map(|c| *c),
        }
    }
}

/// What the lot needs from the broker it serves: the connection count, the router's
/// outboxes and the code that serves a connection (in `connection.rs`). A trait, so that
/// the lot depends on nothing above it.
pub(crate) trait Host: Send + Sync + 'static {
    /// Counts a new connection of `listener`; false (not counted: close it) when as many
    /// are open as it or the broker takes.
    fn connection_opened(&self, listener: ListenerId) -> bool;
    /// The outbox of connection `id` (None once the router forgot it).
    fn outbox(&self, id: ConnId) -> Option<Outbox>;
    /// A connection the lot accepted (and counted): serve it, on the lot's thread first.
    fn welcome(
        &self,
        lot: &ParkingLot,
        rt: &Handle,
        stream: StdTcpStream,
        peer: std::net::SocketAddr,
        listener: ListenerId,
    );
    /// A parked connection whose socket became readable: serve it on the lot's thread
    /// first (its socket is still in the lot's epoll set). `closed`: the client closed its
    /// side after what it sent.
    fn resume_plain(
        &self,
        lot: &ParkingLot,
        rt: &Handle,
        id: ConnId,
        outbox: Outbox,
        p: Parked,
        closed: bool,
    );
    /// A parked connection the router has output for: a task again.
    fn resume_task(&self, rt: &Handle, id: ConnId, outbox: Outbox, p: Parked);
}

/// The lot: an epoll set, the requests to take connections out, and a thread.
pub(crate) struct ParkingLot {
    registry: Registry,
    /// Connections the router has output for. Bounded by the parked connections (a
    /// connection is asked for at most once per wake-up batch; duplicates are skipped).
    wanted: Mutex<Vec<(ConnId, Outbox)>>,
    /// Wakes the lot's thread for `wanted` and for shutdown.
    waker: Waker,
    /// Connections parked now.
    parked: AtomicUsize,
    /// The broker stops: the thread ends once nothing is parked.
    stopping: AtomicBool,
}

/// The token of [`ParkingLot::waker`]; listeners count down from [`LISTEN`]; connection ids
/// are the other tokens (they start at 1 and never get near these).
const WAKE: Token = Token(usize::MAX);

/// The token of the first listener the lot accepts on.
const LISTEN: usize = usize::MAX - 1;

/// After a failed `accept` (out of file descriptors, usually), when to try again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Listeners the lot's thread accepts on.
pub(crate) struct Listeners {
    /// The sockets, already in the lot's epoll set, with their listener ids.
    sockets: Vec<(mio::net::TcpListener, ListenerId)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ParkingLot {
    /// A lot with its own epoll set; the caller runs [`ParkingLot::run`] with the poll.
    pub(crate) fn new() -> std::io::Result<(ParkingLot, Poll)> {
        let poll = Poll::new()?;
        let lot = ParkingLot {
            registry: poll.registry().try_clone()?,
            wanted: Mutex::new(Vec::new()),
            waker: Waker::new(poll.registry(), WAKE)?,
            parked: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        };
        Ok((lot, poll))
    }

    /// Puts `listeners` in the lot's epoll set, for [`ParkingLot::run`] to accept on.
    pub(crate) fn listen(
        poll: &Poll,
        listeners: Vec<(std::net::TcpListener, ListenerId)>,
    ) -> std::io::Result<Listeners> {
        let mut sockets = Vec::with_capacity(listeners.len());
        for (i, (l, id)) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            // Accepted sockets inherit it (Linux): no setsockopt per connection.
            socket2::SockRef::from(&l).set_tcp_nodelay(true)?;
            let mut l = mio::net::TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, Token(LISTEN - i), Interest::READABLE)?;
            sockets.push((l, id));
        }
        Ok(Listeners { sockets })
    }

    /// Accepts every pending connection of `listener`; false if `accept` failed (try
    /// again later: the listener is edge-triggered).
    fn accept_all(
        &self,
        host: &impl Host,
        rt: &Handle,
        (listener, id): &(mio::net::TcpListener, ListenerId),
    ) -> bool {
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if !host.connection_opened(*id) {
                        warn!("connection limit reached, closing connection from {peer}");
                        continue;
                    }
                    host.welcome(self, rt, stream.into(), peer, *id);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("accept failed: {e}");
                    return false;
                }
            }
        }
    }

    /// The broker stops: the lot's thread ends once every parked connection is taken out
    /// (the router closes them all).
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake();
    }

    /// Parks connection `id`. Err gives the connection back when it cannot wait here:
    /// output is waiting for it, or its socket cannot join the epoll set. With
    /// `registered`, the socket is in the epoll set already (it never left: the lot's
    /// thread served it without a task).
    pub(crate) fn park(
        &self,
        id: ConnId,
        outbox: &Outbox,
        p: Parked,
        registered: bool,
    ) -> Result<(), Parked> {
        // Edge-triggered, but registering a socket that is readable already reports it.
        let register = |slot: &tinsel_core::Parked| {
            if registered {
                return true;
            }
            let token = Token(id as usize);
            let fd = slot.socket.as_raw_fd();
            let registry = &self.registry;
            registry
                .register(&mut SourceFd(&fd), token, Interest::READABLE)
                .is_ok()
        };
        outbox
            .park(p.into_slot(), register)
            .map_err(Parked::from_slot)?;
        self.parked.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Takes `stream` out of the lot's epoll set.
    pub(crate) fn forget(&self, id: ConnId, stream: &StdTcpStream) {
        let fd = stream.as_raw_fd();
        if let Err(e) = self.registry.deregister(&mut SourceFd(&fd)) {
            debug!("connection {id}: leaving the parking lot: {e}");
        }
    }

    /// Asks for connection `id` to be taken out (the router has output for it). Call
    /// [`ParkingLot::wake`] after a batch of these.
    pub(crate) fn want(&self, id: ConnId, outbox: &Outbox) {
        lock(&self.wanted).push((id, outbox.clone()));
    }

    /// Wakes the lot's thread for what [`ParkingLot::want`] asked.
    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            warn!("parking lot: cannot wake its thread: {e}");
        }
    }

    /// Takes connection `id` out and gives it a task again, on `rt`.
    /// `readable`: its socket is, and whether the client closed its side or the socket
    /// failed (the event says so once: edge-triggered); None: the router has output for it.
    fn unpark(
        &self,
        host: &impl Host,
        rt: &Handle,
        id: ConnId,
        outbox: Outbox,
        readable: Option<bool>,
    ) {
        let Some(p) = outbox.unpark().map(Parked::from_slot) else {
            // Taken out already (readable and wanted at once).
            return;
        };
        self.parked.fetch_sub(1, Ordering::AcqRel);
        if let Some(closed) = readable
            && p.capture.is_none()
        {
            // Usually a CONNECT, SUBSCRIBE, PINGREQ or the end: served here first.
            return host.resume_plain(self, rt, id, outbox, p, closed);
        }
        self.forget(id, &p.stream);
        host.resume_task(rt, id, outbox, p);
    }

    /// The lot's thread: sleeps in the epoll set of the parked sockets, the listeners and
    /// the waker; accepts connections and takes parked ones out on `rt`, until the broker
    /// stops and nothing is parked.
    pub(crate) fn run(
        self: Arc<Self>,
        mut poll: Poll,
        host: impl Host,
        rt: Handle,
        mut listeners: Listeners,
    ) {
        let mut events = Events::with_capacity(256);
        let mut retry = false;
        loop {
            let timeout = retry.then_some(ACCEPT_RETRY);
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                warn!("parking lot: {e}");
                return;
            }
            if retry && events.is_empty() {
                retry = false;
                for l in &listeners.sockets {
                    retry |= !self.accept_all(&host, &rt, l);
                }
            }
            for event in events.iter() {
                let token = event.token().0;
                if let Some(l) = LISTEN
                    .checked_sub(token)
                    .and_then(|i| listeners.sockets.get(i))
                {
                    retry |= !self.accept_all(&host, &rt, l);
                    continue;
                }
                if event.token() == WAKE {
                    let wanted = std::mem::take(&mut *lock(&self.wanted));
                    for (id, outbox) in wanted {
                        self.unpark(&host, &rt, id, outbox, None);
                    }
                    continue;
                }
                let id = event.token().0 as ConnId;
                let closed = event.is_read_closed() || event.is_error();
                let outbox = host.outbox(id);
                if let Some(outbox) = outbox {
                    self.unpark(&host, &rt, id, outbox, Some(closed));
                }
            }
            if self.stopping.load(Ordering::Acquire) {
                // No more connections: the listeners close.
                listeners.sockets.clear();
                retry = false;
                if self.parked.load(Ordering::Acquire) == 0 {
                    return;
                }
            }
        }
    }
}
