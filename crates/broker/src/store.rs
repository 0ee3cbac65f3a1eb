//! The store in the shell: opened at start (what it kept goes back into the router before
//! the first connection), fed the core's records by [`crate::shared::Shared`], and, in
//! sync mode, answered by a task that releases the acknowledgements it synced.
//!
//! The store's thread never takes the router's lock: it publishes the last synced ticket
//! and wakes the releasing task. A full queue to the store makes the connection that
//! submits wait under the lock (the disk is the bottleneck then), which cannot deadlock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinsel_core::{Record, Restored, Router, Ticket};
use tinsel_store::{Mode, Options, Running, StdFs, Store};

use crate::Error;
use crate::config::{DurabilityMode, PersistenceConfig};

/// The running store and when acknowledgements may leave.
pub(crate) struct Durable {
    pub(crate) running: Running,
    pub(crate) mode: Mode,
}

impl Durable {
    /// Hands `records` to the store; outside sync mode their acknowledgements leave now.
    pub(crate) fn submit(&self, router: &mut Router, records: Vec<Record>, ticket: Ticket) {
        self.running.submit(records, ticket);
        if self.mode != Mode::Sync {
            router.durable(ticket);
        }
    }

    /// True while the store cannot write (QoS 1/2 publishes are then refused).
    pub(crate) fn failing(&self) -> bool {
        self.running.failing()
    }

    /// Writes and syncs what is queued and stops the store's thread.
    pub(crate) fn stop(&self) {
        self.running.stop();
    }
}

/// The store's options from the configuration (None: persistence is off).
pub(crate) fn options(config: &PersistenceConfig) -> Option<Options> {
    if !config.is_enabled() {
        return None;
    }
    let dir = config
        .location
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let mut o = Options::new(dir);
    if let Some(f) = &config.file {
        o.file.clone_from(f);
    }
    o.mode = match config.mode.unwrap_or_default() {
        DurabilityMode::Sync => Mode::Sync,
        DurabilityMode::Periodic => Mode::Periodic(Duration::from_millis(
            config.sync_interval_ms.unwrap_or(1000),
        )),
        DurabilityMode::None => Mode::None,
    };
    Some(o)
}

/// Opens the store and reads back what it kept.
pub(crate) fn open(options: Options) -> Result<(Store, Restored, Mode), Error> {
    let mode = options.mode;
    let started = Instant::now();
    let (store, restored) = Store::open(Arc::new(StdFs), options)?;
    tracing::info!(
        sessions = restored.sessions.len(),
        retained = restored.retained.len(),
        ms = started.elapsed().as_millis() as u64,
        "persistence on: state restored"
    );
    Ok((store, restored, mode))
}
