//! Authentication off the event loop: the CONNECTs an [`Authenticator`] deferred (it must
//! hash a password, say) are decided on tokio's blocking threads, a bounded number at a
//! time, and the answer goes back to the router.
//!
//! Bounds: at most [`MAX_PARALLEL`] decisions run at once; the others wait for a permit.
//! Waiting requests are bounded by the connections (a connection has at most one CONNECT
//! being authenticated; the core closes one that sends more than `tinsel_core::MAX_EARLY`
//! packets meanwhile), and each waits at most until its CONNECT timeout closes it.

use std::sync::Arc;

use tinsel_core::{AuthDecision, Authenticator, ConnectInfo};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

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

    /// Decides `info` in the pool, then calls `done` with the decision (on a tokio thread).
    pub(crate) fn submit(
        &self,
        info: ConnectInfo,
        done: impl FnOnce(AuthDecision) + Send + 'static,
    ) {
        let (permits, authenticator) = (self.permits.clone(), self.authenticator.clone());
        self.rt.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let decided =
                tokio::task::spawn_blocking(move || authenticator.authenticate_slowly(&info)).await;
            // A decision that panicked refuses the client rather than leaving it waiting.
            done(decided.unwrap_or(AuthDecision::Deny(
                tinsel_codec::ReasonCode::UNSPECIFIED_ERROR,
            )));
        });
    }
}
