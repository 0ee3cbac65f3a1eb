//! Authentication off the event loop: the CONNECTs an [`Authenticator`] deferred (it must
//! hash a password, say) are decided on tokio's blocking threads, a bounded number at a
//! time, and the answer goes back to the router.
//!
//! Bounds: at most [`MAX_PARALLEL`] decisions run at once; the others wait for a permit.
//! Waiting requests are bounded by the connections (a connection has at most one CONNECT
//! being authenticated; the core closes one that sends more than `tinsel_core::MAX_EARLY`
//! packets meanwhile), and each waits at most until its CONNECT timeout closes it.

use std::sync::Arc;
use std::time::Instant;

use tinsel_core::{Authenticator, ConnId, ConnectInfo};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::server::Shared;

/// Authentications that run at once (each may hash for milliseconds on one core).
pub(crate) const MAX_PARALLEL: usize = 4;

/// The authenticator and the permits of its pool.
pub(crate) struct AuthPool {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    permits: Arc<Semaphore>,
    rt: Handle,
}

impl AuthPool {
    pub(crate) fn new(authenticator: Arc<dyn Authenticator>, rt: Handle) -> AuthPool {
        AuthPool {
            authenticator,
            permits: Arc::new(Semaphore::new(MAX_PARALLEL)),
            rt,
        }
    }

    /// Decides `info` for connection `conn` in the pool, then tells the router.
    pub(crate) fn submit(&self, shared: &Arc<Shared>, conn: ConnId, info: ConnectInfo) {
        let (permits, authenticator) = (self.permits.clone(), self.authenticator.clone());
        let shared = shared.clone();
        self.rt.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let decided =
                tokio::task::spawn_blocking(move || authenticator.authenticate_slowly(&info)).await;
            let decision = decided.unwrap_or(tinsel_core::AuthDecision::Deny(
                tinsel_codec::ReasonCode::UNSPECIFIED_ERROR,
            ));
            let mut state = shared.lock();
            state.router.authenticated(Instant::now(), conn, decision);
            shared.wake(&mut state, None);
        });
    }
}
