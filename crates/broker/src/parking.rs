//! The parking lot: idle TCP connections wait here without a task or a tokio registration.
//!
//! A connection task costs two 256-byte blocks in tokio (the task, and the I/O
//! registration that wakes it), more than everything the broker itself keeps for a
//! connection. Most IoT connections are idle nearly all the time, so a connection with
//! nothing to do (see `ConnTask`'s parking rule) gives its socket back to the parking lot
//! and its task ends. The lot keeps the socket, the connection's id, protocol version and
//! outbox (about 40 bytes) and watches every parked socket with one epoll set of its own
//! (mio), on a thread of its own that sleeps in that set.
//!
//! A parked connection is taken out again (a new task, a new registration) when its socket
//! becomes readable (bytes, end of stream or an error) or when the router queues output for
//! it (its outbox reports the wake-up to [`ParkingLot::wanted`]).

use std::net::TcpStream as StdTcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use tinsel_codec::ProtocolVersion;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tracing::{debug, warn};

use crate::FastMap;
use crate::capture::ConnCapture;
use crate::connection::{self, ConnTask};
use crate::outbox::Outbox;
use crate::router::ConnId;
use crate::server::Shared;

/// What the lot keeps of a parked connection.
pub(crate) struct Parked {
    pub(crate) stream: StdTcpStream,
    pub(crate) version: ProtocolVersion,
    pub(crate) seen_connect: bool,
    pub(crate) outbox: Outbox,
    pub(crate) capture: Option<Box<ConnCapture>>,
}

/// Parked connections and the requests to take some out.
pub(crate) struct ParkingLot {
    registry: Registry,
    /// Bounded by the connection limit: each open connection is parked at most once.
    parked: Mutex<FastMap<ConnId, Parked>>,
    /// Connections the router has output for. Bounded by the parked connections (a
    /// connection is asked for once per parking; duplicates are skipped).
    wanted: Mutex<Vec<ConnId>>,
    /// Wakes the lot's thread for `wanted` and for shutdown.
    waker: Waker,
    /// The broker stops: the thread ends once nothing is parked.
    stopping: AtomicBool,
}

/// The token of [`ParkingLot::waker`]; connection ids are the other tokens (they start at
/// 1 and never get near this).
const WAKE: Token = Token(usize::MAX);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ParkingLot {
    /// A lot with its own epoll set; the caller runs [`ParkingLot::run`] with the poll.
    pub(crate) fn new() -> std::io::Result<(ParkingLot, Poll)> {
        let poll = Poll::new()?;
        let lot = ParkingLot {
            registry: poll.registry().try_clone()?,
            parked: Mutex::new(FastMap::default()),
            wanted: Mutex::new(Vec::new()),
            waker: Waker::new(poll.registry(), WAKE)?,
            stopping: AtomicBool::new(false),
        };
        Ok((lot, poll))
    }

    /// The broker stops: the lot's thread ends once every parked connection is taken out
    /// (the router closes them all).
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake();
    }

    /// Parks connection `id`. Err gives the connection back when it cannot wait here.
    pub(crate) fn park(&self, id: ConnId, p: Parked) -> Result<(), Parked> {
        let fd = p.stream.as_raw_fd();
        let outbox = p.outbox.clone();
        lock(&self.parked).insert(id, p);
        // Edge-triggered, but registering a socket that is readable already reports it.
        let token = Token(id as usize);
        let registered = self
            .registry
            .register(&mut SourceFd(&fd), token, Interest::READABLE);
        if registered.is_err() {
            // Nothing can have taken it out: no event or wake-up reaches the lot for it yet.
            return match lock(&self.parked).remove(&id) {
                Some(p) => Err(p),
                None => Ok(()),
            };
        }
        // From now on a wake-up of the outbox comes here; output queued before is seen now.
        if !outbox.park() {
            self.want(id);
            self.wake();
        }
        Ok(())
    }

    /// Asks for connection `id` to be taken out (the router has output for it). Call
    /// [`ParkingLot::wake`] after a batch of these.
    pub(crate) fn want(&self, id: ConnId) {
        lock(&self.wanted).push(id);
    }

    /// Wakes the lot's thread for what [`ParkingLot::want`] asked.
    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            warn!("parking lot: cannot wake its thread: {e}");
        }
    }

    /// Takes connection `id` out and gives it a task again, on `rt`.
    fn unpark(&self, shared: &Arc<Shared>, rt: &Handle, id: ConnId) {
        let Some(p) = lock(&self.parked).remove(&id) else {
            // Taken out already (readable and wanted at once).
            return;
        };
        let fd = p.stream.as_raw_fd();
        if let Err(e) = self.registry.deregister(&mut SourceFd(&fd)) {
            debug!("connection {id}: leaving the parking lot: {e}");
        }
        p.outbox.unpark();
        let _rt = rt.enter();
        match TcpStream::from_std(p.stream) {
            Ok(stream) => {
                rt.spawn(ConnTask::resume(
                    shared.clone(),
                    stream,
                    id,
                    p.version,
                    p.seen_connect,
                    p.outbox,
                    p.capture,
                ));
            }
            Err(e) => {
                warn!("connection {id}: cannot resume from the parking lot: {e}");
                connection::end(shared, id, &format!("cannot resume: {e}"));
            }
        }
    }

    /// The lot's thread: sleeps in the epoll set of the parked sockets and the waker, and
    /// takes connections out on `rt`, until the broker stops and nothing is parked.
    pub(crate) fn run(self: Arc<Self>, mut poll: Poll, shared: Arc<Shared>, rt: Handle) {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                warn!("parking lot: {e}");
                return;
            }
            for event in events.iter() {
                if event.token() == WAKE {
                    let wanted = std::mem::take(&mut *lock(&self.wanted));
                    for id in wanted {
                        self.unpark(&shared, &rt, id);
                    }
                } else {
                    self.unpark(&shared, &rt, event.token().0 as ConnId);
                }
            }
            if self.stopping.load(Ordering::Acquire) && lock(&self.parked).is_empty() {
                return;
            }
        }
    }
}
