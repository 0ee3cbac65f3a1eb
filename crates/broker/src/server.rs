//! The tokio layer: listeners, the shared router, timers and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tinsel_core::{Authenticator, Authorizer, ListenerId, Router};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::auth::AuthPool;
use crate::capture::Capture;
use crate::config::{Config, Transport};
use crate::ops::OpsListener;
use crate::parking::ParkingLot;
use crate::shared::Shared;
use crate::{Error, connection};

/// How often the router's timers run (keep alive, will delay, session expiry, `$SYS`).
const TICK: Duration = Duration::from_millis(250);

/// How long [`Broker::run`] waits for connections to close after shutdown, their sockets'
/// linger included: from the shutdown on, sockets linger at most `connection::SHUTDOWN_LINGER`,
/// well below this.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A bound plain TCP listener: its socket, its address and its listener id.
type Bound = (TcpListener, SocketAddr, ListenerId);

/// A bound broker, ready to [`run`](Broker::run).
pub struct Broker {
    /// Plain TCP listeners, with their listener ids.
    listeners: Vec<Bound>,
    /// TLS and WebSocket listeners (see `listeners.rs`).
    handshaking: Vec<crate::listeners::Listener>,
    /// Every TCP listener's address, in listener order.
    addrs: Vec<SocketAddr>,
    config: Config,
    authenticator: Option<Arc<dyn Authenticator>>,
    authorizer: Option<Arc<dyn Authorizer>>,
    capture: Option<Capture>,
    ops: Option<OpsListener>,
    /// The bridges, checked at bind.
    bridges: Vec<crate::bridge::Checked>,
    on_ready: Option<OnReady>,
}

/// What [`Broker::on_ready`] was given.
type OnReady = Box<dyn FnOnce(&[SocketAddr]) + Send>;

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("local_addrs", &self.local_addrs())
            .field("http_addr", &self.http_addr())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Binds every listener (port 0 picks a free port), the operations HTTP listener
    /// included when `http.address` is set. Errors if an address cannot be bound, or the
    /// capture file cannot be created.
    pub async fn bind(config: Config) -> Result<Broker, Error> {
        let bridges = crate::bridge::check_all(&config.bridges).map_err(Error::Config)?;
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let (mut handshaking, mut addrs) = (Vec::new(), Vec::new());
        for (id, l) in config.listeners.iter().enumerate() {
            let id = ListenerId::try_from(id)
                .ok()
                .filter(|&id| id != tinsel_core::NO_LISTENER)
                .ok_or_else(|| Error::Config("more than 65,535 listeners".into()))?;
            if l.transport == Transport::Unix {
                handshaking.push(crate::listeners::Listener::unix(l, id)?);
                continue;
            }
            let addr = format!("{}:{}", l.address, l.port);
            let listener = TcpListener::bind((l.address.as_str(), l.port))
                .await
                .map_err(|source| Error::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            let local = listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            if let Err(e) = crate::sockopt::defer_accept(&listener) {
                // Still correct: new connections are read when their CONNECT comes.
                warn!("listener {local}: cannot defer accepting until data arrives: {e}");
            }
            addrs.push(local);
            if l.transport != Transport::Tcp || l.proxy_protocol {
                handshaking.push(crate::listeners::Listener::new(l, listener, local, id)?);
                continue;
            }
            listeners.push((listener, local, id));
        }
        let capture = match &config.capture {
            Some(path) => Some(Capture::create(path).map_err(|source| Error::Capture {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let ops = OpsListener::bind(&config.http).await?;
        let mut broker = Broker {
            listeners,
            handshaking,
            addrs,
            config,
            authenticator: None,
            authorizer: None,
            capture,
            ops,
            bridges,
            on_ready: None,
        };
        if let Some(rules) = crate::access_rules::load(&broker.config)? {
            broker.authenticator = Some(rules.authenticator);
            broker.authorizer = Some(rules.authorizer);
        }
        Ok(broker)
    }

    /// Decides who may connect (default: everybody). It is asked on the event loop: one
    /// that must hash passwords answers [`tinsel_core::AuthDecision::Defer`].
    pub fn with_authenticator(mut self, a: impl Authenticator) -> Broker {
        self.authenticator = Some(Arc::new(a));
        self
    }

    /// Decides what clients may publish, subscribe to and receive (default: everything).
    pub fn with_authorizer(mut self, a: impl Authorizer) -> Broker {
        self.authorizer = Some(Arc::new(a));
        self
    }

    /// Calls `f` with the bound addresses once [`run`](Broker::run) has read the store and
    /// every listener accepts: the moment a service manager may be told the broker is ready.
    pub fn on_ready(mut self, f: impl FnOnce(&[SocketAddr]) + Send + 'static) -> Broker {
        self.on_ready = Some(Box::new(f));
        self
    }

    /// The bound addresses, in listener order (Unix socket listeners have none).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// The bound address of the operations HTTP listener (None: not configured).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(OpsListener::local_addr)
    }

    /// Serves until `shutdown` resolves, then closes every connection (MQTT 5 clients get
    /// DISCONNECT 0x8B) and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let store = match crate::store::options(&self.config.persistence) {
            Some(o) => Some(crate::store::open(o)?),
            None => None,
        };
        // Records are made whenever there is a store; outside sync mode the shell releases
        // their acknowledgements as soon as it has handed them over.
        let settings = self.config.core_settings(rand::random(), store.is_some());
        let mut router = Router::new(settings, Instant::now());
        let store = store.map(|(store, restored, mode)| {
            router.restore(Instant::now(), restored);
            (store, mode)
        });
        let auth = self.authenticator.map(|a| {
            router.set_authenticator(a.clone());
            AuthPool::new(a, tokio::runtime::Handle::current())
        });
        if let Some(a) = self.authorizer {
            router.set_authorizer(a);
        }
        let caps: Vec<Option<usize>> = self
            .config
            .listeners
            .iter()
            .map(|l| l.max_connections)
            .collect();
        let shared = Arc::new(Shared::new(
            router,
            self.config.limits.max_packet_size,
            self.config.limits.max_connections,
            &caps,
            auth,
        ));
        if let Some((store, mode)) = store {
            crate::shared::start_store(&shared, store, mode)?;
        }
        // A watch channel: a task that subscribes late still sees that the broker stops.
        let (stop_tx, _) = watch::channel(false);
        // The listener and timer tasks hold a clone of `done_tx`; `done_rx` ends when all of
        // them are gone. Connections are counted in `Shared::live`.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        for (_, local, _) in &self.listeners {
            info!("listening on {local}");
        }
        // Without capture the parking lot's thread accepts (a connection that idles after
        // its CONNACK then never needs a task); with capture, tokio accept loops do.
        let accept_in_lot = self.capture.is_none();
        let listeners = start_parking(&shared, self.listeners, accept_in_lot);
        for bound in listeners {
            tokio::spawn(accept_loop(
                bound,
                shared.clone(),
                stop_tx.clone(),
                done_tx.clone(),
                self.capture.clone(),
            ));
        }
        let connect_timeout = Duration::from_secs(self.config.limits.connect_timeout);
        for l in self.handshaking {
            tokio::spawn(l.run(
                shared.clone(),
                connect_timeout,
                stop_tx.clone(),
                done_tx.clone(),
                self.capture.clone(),
            ));
        }
        tokio::spawn(ticker(shared.clone(), stop_tx.subscribe(), done_tx.clone()));
        if !self.bridges.is_empty() {
            crate::bridge::start_all(
                &shared,
                self.bridges,
                self.config.limits.max_inflight,
                &stop_tx,
                &done_tx,
            );
        }
        // After the MQTT listeners: from its first request on, /readyz may say ready.
        if let Some(ops) = self.ops {
            ops.spawn(shared.clone(), stop_tx.subscribe(), done_tx.clone());
        }
        if let Some(ready) = self.on_ready {
            ready(&self.addrs);
        }

        shutdown.await;
        info!("shutting down");
        shared.stopping.store(true, Ordering::Release);
        shared.stop_lingering.notify_waiters();
        {
            // Every connection gets DISCONNECT 0x8B (MQTT 5) through its outbox and closes;
            // one accepted from now on is closed at once.
            let mut state = shared.lock();
            state.router.shutdown(Instant::now());
            shared.wake(&mut state, None);
        }
        if let Some(lot) = shared.parking.get() {
            lot.stop();
        }
        stop_tx.send_replace(true);
        drop(done_tx);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            done_rx.recv().await;
            shared.all_closed().await;
        })
        .await;
        if let Some(c) = &self.capture {
            let _ = c.flush();
        }
        if let Some(store) = shared.store.get() {
            store.stop();
        }
        Ok(())
    }
}

/// Starts the parking lot's thread (without it, idle connections keep their tasks). With
/// `accept`, the lot accepts on the listeners; returns the listeners left for tokio
/// accept loops (all of them if the lot does not accept or cannot start).
fn start_parking(shared: &Arc<Shared>, listeners: Vec<Bound>, accept: bool) -> Vec<Bound> {
    let (lot, poll) = match ParkingLot::new() {
        Ok((lot, poll)) => (Arc::new(lot), poll),
        Err(e) => {
            warn!("no parking lot for idle connections: {e}");
            return listeners;
        }
    };
    // The lot gets duplicates of the listening sockets; the originals stay here until the
    // lot's thread runs, so that nothing is lost if it cannot start.
    let lot_listeners = if accept {
        listeners
            .iter()
            .map(|(l, _, id)| {
                let dup = socket2::SockRef::from(l).try_clone()?;
                Ok((dup.into(), *id))
            })
            .collect::<std::io::Result<Vec<(std::net::TcpListener, ListenerId)>>>()
            .and_then(|ls| ParkingLot::listen(&poll, ls))
    } else {
        ParkingLot::listen(&poll, Vec::new())
    };
    let lot_listeners = match lot_listeners {
        Ok(l) => l,
        Err(e) => {
            warn!("no parking lot for idle connections: {e}");
            return listeners;
        }
    };
    let (thread_lot, thread_shared) = (lot.clone(), shared.clone());
    let rt = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("tinsel-parking".into())
        .spawn(move || thread_lot.run(poll, thread_shared, rt, lot_listeners));
    match spawned {
        Ok(_) => {
            let _ = shared.parking.set(lot);
            if accept { Vec::new() } else { listeners }
        }
        Err(e) => {
            warn!("no parking lot for idle connections: {e}");
            listeners
        }
    }
}

async fn accept_loop(
    (listener, local, id): Bound,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    _done: mpsc::Sender<()>,
    capture: Option<Capture>,
) {
    let mut stop_rx = stop.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop_rx.wait_for(|&s| s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!("accept on {local} failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !shared.connection_opened(id) {
            warn!("connection limit reached, closing connection from {peer}");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let cap = capture.as_ref().map(|c| c.connection(peer, local));
        tokio::spawn(connection::serve(shared.clone(), stream, peer, id, cap));
    }
}

async fn ticker(shared: Arc<Shared>, mut stop: watch::Receiver<bool>, _done: mpsc::Sender<()>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|&s| s) => break,
        }
        let bytes_in = shared.bytes_in.load(Ordering::Relaxed);
        let bytes_out = shared.bytes_out.load(Ordering::Relaxed);
        let mut state = shared.lock();
        state.router.tick(Instant::now(), bytes_in, bytes_out);
        shared.wake(&mut state, None);
    }
}
