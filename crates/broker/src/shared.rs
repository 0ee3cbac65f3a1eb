//! What every connection task shares: the router behind its lock, the byte counters, the
//! connection count, the parking lot and the authentication pool.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use tinsel_codec::ReasonCode;
use tinsel_core::{AuthDecision, ConnId, ListenerId, Router};
use tinsel_store::{Mode, Store};
use tokio::sync::Notify;

use crate::Error;
use crate::auth::AuthPool;
use crate::parking::ParkingLot;
use crate::store::Durable;

/// State shared by every connection task.
///
/// The router is one state machine behind one mutex. A connection locks it once per read
/// (for every packet decoded from that read), not per message, and never across I/O:
/// decoding, encoding and socket writes run outside it, on every core.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Largest packet accepted.
    pub(crate) max_packet_size: u32,
    /// How long a packet may take to arrive once its first byte has (`limits.packet_timeout`;
    /// None: no limit).
    pub(crate) packet_timeout: Option<Duration>,
    /// Bytes read from all sockets, for `$SYS`.
    pub(crate) bytes_in: AtomicU64,
    /// Bytes written to all sockets, for `$SYS`.
    pub(crate) bytes_out: AtomicU64,
    /// Wakes the publishers paused for congested subscribers when one of those takes its
    /// QoS 0 backlog, so that they look again at once rather than at their next poll.
    pub(crate) eased: Arc<Notify>,
    /// Open connections (bounded by `max_connections`).
    live: AtomicUsize,
    /// Cap of `live` (`limits.max_connections`).
    max_connections: usize,
    /// Open connections of each listener, by listener id, with its own cap.
    listeners: Box<[ListenerGauge]>,
    /// Connections accepted so far, for metrics.
    accepted: AtomicU64,
    /// Connections closed on accept because `max_connections` were open, for metrics.
    refused_full: AtomicU64,
    /// Connections closed on accept because their listener's own `max_connections` were
    /// open, for metrics.
    refused_listener: AtomicU64,
    /// Sockets the broker closed that still linger (see `connection::LINGER`). They are no
    /// connections any more (not in `live`, so they keep no new client out), but they hold
    /// a file descriptor each: at most `max_connections` of them linger at once.
    lingering: AtomicUsize,
    /// Cap of `lingering`.
    max_lingering: usize,
    /// The broker stops: sockets linger only briefly from now on ...
    pub(crate) stopping: AtomicBool,
    /// ... and those lingering already are told (after `stopping` is set).
    pub(crate) stop_lingering: Arc<Notify>,
    /// Where idle connections wait without a task; set once its thread runs (never if
    /// its epoll set or thread could not be made: connections then keep their tasks).
    pub(crate) parking: OnceLock<Arc<ParkingLot>>,
    /// Told when the last open connection closes or the last lingering socket ends.
    all_closed: Notify,
    /// Where deferred authentications run (None: no authenticator).
    auth: Option<AuthPool>,
    /// The store, when persistence is on (set once at start, before any connection).
    pub(crate) store: OnceLock<Durable>,
}

/// One listener's open connections and its cap (`usize::MAX`: none of its own).
#[derive(Debug)]
struct ListenerGauge {
    live: AtomicUsize,
    max: usize,
}

/// Connections as the shell counts them (see [`Shared::connection_counts`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionCounts {
    /// Open now, CONNECT sent or not.
    pub(crate) open: usize,
    /// Accepted so far.
    pub(crate) accepted: u64,
    /// Closed on accept because `max_connections` were open.
    pub(crate) refused_max_connections: u64,
    /// Closed on accept because their listener's own `max_connections` were open.
    pub(crate) refused_listener_max_connections: u64,
}

/// What the mutex protects.
pub(crate) struct State {
    /// The core.
    pub(crate) router: Router,
}

impl Shared {
    /// The state around `router`: packets up to `max_packet_size` are read, up to
    /// `max_connections` are open at once (and as many closed sockets linger), each
    /// listener's at most its entry of `listener_caps` (by listener id; None: no cap of its
    /// own); `auth` runs deferred authentications.
    pub(crate) fn new(
        router: Router,
        max_packet_size: u32,
        max_connections: usize,
        listener_caps: &[Option<usize>],
        auth: Option<AuthPool>,
    ) -> Shared {
        let packet_timeout = match router.limits().packet_timeout {
            0 => None,
            s => Some(Duration::from_secs(s)),
        };
        Shared {
            state: Mutex::new(State { router }),
            max_packet_size,
            packet_timeout,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            eased: Arc::new(Notify::new()),
            live: AtomicUsize::new(0),
            max_connections,
            listeners: listener_caps
                .iter()
                .map(|cap| ListenerGauge {
                    live: AtomicUsize::new(0),
                    max: cap.unwrap_or(usize::MAX),
                })
                .collect(),
            accepted: AtomicU64::new(0),
            refused_full: AtomicU64::new(0),
            refused_listener: AtomicU64::new(0),
            lingering: AtomicUsize::new(0),
            max_lingering: max_connections,
            stopping: AtomicBool::new(false),
            stop_lingering: Arc::new(Notify::new()),
            all_closed: Notify::new(),
            parking: OnceLock::new(),
            auth,
            store: OnceLock::new(),
        }
    }

    /// Locks the router. A panic elsewhere cannot poison the broker for good: the state is
    /// taken as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the router if nobody holds it (for the readiness check, which must not wait
    /// on a stuck core).
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, State>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Wakes the connections with new output (see [`Router::wake`]), parked ones through
    /// the parking lot.
    pub(crate) fn wake(self: &Arc<Self>, state: &mut State, me: Option<ConnId>) {
        if let Some(store) = self.store.get() {
            state.router.store_failing(store.failing());
        }
        if state.router.has_work() {
            self.dispatch_work(state);
        }
        let mut any = false;
        let lot = self.parking.get();
        state.router.wake(me, |id, outbox| {
            if let Some(lot) = lot {
                lot.want(id, outbox);
                any = true;
            }
        });
        if any && let Some(lot) = lot {
            lot.wake();
        }
    }

    /// Hands the core's work to whoever does it: deferred authentications to the pool,
    /// records to the store (see `store.rs`).
    fn dispatch_work(self: &Arc<Self>, state: &mut State) {
        let work = state.router.take_work();
        if !work.records.is_empty() {
            match self.store.get() {
                Some(store) => store.submit(&mut state.router, work.records, work.ticket),
                // No store: nothing is kept, so nothing needs to wait.
                None => state.router.durable(work.ticket),
            }
        }
        for (conn, info) in work.authenticate {
            match &self.auth {
                Some(pool) => {
                    let shared = self.clone();
                    pool.submit(info, move |decision| {
                        let mut state = shared.lock();
                        state.router.authenticated(Instant::now(), conn, decision);
                        shared.wake(&mut state, None);
                    });
                }
                None => {
                    let refused = AuthDecision::Deny(ReasonCode::UNSPECIFIED_ERROR);
                    state.router.authenticated(Instant::now(), conn, refused);
                }
            }
        }
    }

    /// Counts a new connection on `listener`; false (not counted: close it) when its
    /// listener's own cap or `max_connections` are open, as Mosquitto closes a connection
    /// over its listener's `max_connections` right after accept.
    pub(crate) fn connection_opened(&self, listener: ListenerId) -> bool {
        let increment = |max: usize| move |n: usize| (n < max).then_some(n + 1);
        let gauge = self.listeners.get(usize::from(listener));
        if let Some(g) = gauge
            && g.live
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, increment(g.max))
                .is_err()
        {
            self.refused_listener.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let opened = self
            .live
            .fetch_update(
                Ordering::AcqRel,
                Ordering::Acquire,
                increment(self.max_connections),
            )
            .is_ok();
        if opened {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            if let Some(g) = gauge {
                g.live.fetch_sub(1, Ordering::AcqRel);
            }
            self.refused_full.fetch_add(1, Ordering::Relaxed);
        }
        opened
    }

    /// The connection counters, for metrics.
    pub(crate) fn connection_counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            open: self.live.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused_max_connections: self.refused_full.load(Ordering::Relaxed),
            refused_listener_max_connections: self.refused_listener.load(Ordering::Relaxed),
        }
    }

    /// A connection of `listener` ended (None: its listener is not known any more, which
    /// does not happen: the router forgets a connection only when told it ended).
    pub(crate) fn connection_closed(&self, listener: Option<ListenerId>) {
        if let Some(g) = listener.and_then(|l| self.listeners.get(usize::from(l))) {
            g.live.fetch_sub(1, Ordering::AcqRel);
        }
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_one();
        }
    }

    /// Counts a socket that starts lingering; false (not counted: close it at once) when
    /// as many linger as connections may be open.
    pub(crate) fn linger_started(&self) -> bool {
        self.lingering
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_lingering).then_some(n + 1)
            })
            .is_ok()
    }

    /// A lingering socket closed.
    pub(crate) fn linger_ended(&self) {
        if self.lingering.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_one();
        }
    }

    /// Waits until no connection is open and no socket lingers. (A connection that starts
    /// to linger is counted there before it leaves `live`.)
    pub(crate) async fn all_closed(&self) {
        while self.live.load(Ordering::Acquire) > 0 || self.lingering.load(Ordering::Acquire) > 0 {
            self.all_closed.notified().await;
        }
    }
}

/// Starts the store's thread and the task that releases what it synced.
pub(crate) fn start_store(shared: &Arc<Shared>, store: Store, mode: Mode) -> Result<(), Error> {
    let synced = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    let running = store.start({
        let (synced, notify) = (synced.clone(), notify.clone());
        move |t| {
            synced.fetch_max(t, Ordering::AcqRel);
            notify.notify_one();
        }
    })?;
    let _ = shared.store.set(Durable { running, mode });
    if mode == Mode::Sync {
        tokio::spawn(release(Arc::downgrade(shared), synced, notify));
    }
    Ok(())
}

async fn release(shared: Weak<Shared>, synced: Arc<AtomicU64>, notify: Arc<Notify>) {
    loop {
        notify.notified().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let ticket = synced.load(Ordering::Acquire);
        let mut state = shared.lock();
        state.router.durable(ticket);
        shared.wake(&mut state, None);
    }
}
