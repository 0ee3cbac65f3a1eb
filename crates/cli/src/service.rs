//! How the broker process talks to whoever runs it: the signals that stop it, and the
//! readiness and stopping it reports to systemd (`Type=notify`).

use std::future::Future;
use std::pin::Pin;

/// The stop signals (SIGTERM, what `systemctl stop` and `docker stop` send, and SIGINT,
/// Ctrl-C), caught from the moment they are installed: one that arrives while the broker
/// binds its listeners or reads its store stops it cleanly instead of killing it.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers. Must be called inside a tokio runtime.
    pub(crate) fn install() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Resolves at the first stop signal (one that came before this is called counts), and
    /// tells systemd the service is stopping.
    pub(crate) fn wait(mut self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            #[cfg(unix)]
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
            #[cfg(not(unix))]
            {
                let _ = &mut self;
                let _ = tokio::signal::ctrl_c().await;
            }
            #[cfg(unix)]
            notify(&[sd_notify::NotifyState::Stopping]);
        })
    }
}

/// Tells systemd the broker is ready: its listeners are bound and accept, its store is
/// read. `status` is shown by `systemctl status`.
pub(crate) fn ready(status: &str) {
    #[cfg(unix)]
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
    #[cfg(not(unix))]
    let _ = status;
}

/// Sends `states` to `$NOTIFY_SOCKET` (a Unix datagram socket; nothing when the variable
/// is unset, i.e. not started by systemd with `Type=notify`). A failure is logged: the
/// broker serves all the same, though systemd may then time out waiting for it.
#[cfg(unix)]
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager through $NOTIFY_SOCKET: {e}");
    }
}
