//! The operations HTTP listener: Prometheus metrics, health checks and the admin API.
//!
//! Off unless `http.address` is configured. It runs on the broker's tokio runtime, is
//! bound with the MQTT listeners (so a taken port fails `Broker::bind`) and stops with the
//! broker. Routes:
//!
//! - `GET /metrics`: the counters in Prometheus' text format ([`metrics`]);
//! - `GET /healthz`: 200 while the process serves HTTP;
//! - `GET /readyz`: 200 while the MQTT listeners accept and the core answers a lock within
//!   [`READY_LOCK_BOUND`], 503 otherwise (while shutting down, or the core is stuck);
//! - `/api/v1/...`: the admin API ([`admin`]), behind `Authorization: Bearer TOKEN`;
//! - `GET /dashboard`: a live page of connections, message rates, the busiest topics and
//!   the deepest queues, polling `GET /dashboard/data` ([`dashboard`]; no token).
//!
//! Every response is bounded: metrics are a fixed set, admin lists are pages, the
//! dashboard lists at most ten topics and ten clients.

mod admin;
mod dashboard;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::Error;
use crate::config::HttpConfig;
use crate::shared::Shared;

/// How long `/readyz` waits for the router's lock before it says the core is stuck. The
/// lock is held for one batch of packets at a time, far below this.
pub(crate) const READY_LOCK_BOUND: Duration = Duration::from_secs(1);

/// The operations listener, bound and not yet serving.
pub(crate) struct OpsListener {
    listener: TcpListener,
    local: SocketAddr,
    token: Option<Arc<str>>,
}

/// What every handler shares.
#[derive(Clone)]
struct Ops {
    shared: Arc<Shared>,
    /// None: the admin API is disabled.
    token: Option<Arc<str>>,
}

impl OpsListener {
    /// Binds `http.address`; None when it is not set.
    pub(crate) async fn bind(config: &HttpConfig) -> Result<Option<OpsListener>, Error> {
        let Some(addr) = &config.address else {
            return Ok(None);
        };
        let bind_error = |source| Error::Bind {
            addr: addr.clone(),
            source,
        };
        let listener = TcpListener::bind(addr.as_str()).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        Ok(Some(OpsListener {
            listener,
            local,
            token: config.token.as_deref().map(Arc::from),
        }))
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `stop` turns true; holds `done` until the server has stopped.
    pub(crate) fn spawn(
        self,
        shared: Arc<Shared>,
        mut stop: watch::Receiver<bool>,
        done: mpsc::Sender<()>,
    ) {
        let admin_on = self.token.is_some();
        let ops = Ops {
            shared,
            token: self.token,
        };
        let app = Router::new()
            .route("/metrics", get(metrics::handler))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .nest("/api/v1", admin::routes(ops.clone()))
            .merge(dashboard::routes())
            .with_state(ops);
        let local = self.local;
        info!(
            "operations HTTP listener on http://{local} (admin API {})",
            if admin_on { "on" } else { "off: no token" }
        );
        tokio::spawn(async move {
            let _done = done;
            let served = axum::serve(self.listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|&s| s).await;
                })
                .await;
            if let Err(e) = served {
                warn!("operations HTTP listener on {local} failed: {e}");
            }
        });
    }
}

/// The process is up and serves HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The MQTT listeners accept (they were started before this server) and the core answers.
async fn readyz(axum::extract::State(ops): axum::extract::State<Ops>) -> (StatusCode, String) {
    if ops.shared.stopping.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".into(),
        );
    }
    let deadline = Instant::now() + READY_LOCK_BOUND;
    loop {
        if ops.shared.try_lock().is_some() {
            return (StatusCode::OK, "ready\n".into());
        }
        if Instant::now() >= deadline {
            let ms = READY_LOCK_BOUND.as_millis();
            let why = format!("not ready: the broker core did not answer within {ms} ms\n");
            return (StatusCode::SERVICE_UNAVAILABLE, why);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
