//! The Tinsel broker's store: what the core must not lose, on disk.
//!
//! The core makes a [`tinsel_core::Record`] for every change that must survive (a message
//! accepted into persistent sessions, a subscription, a QoS 2 receipt...) and holds the
//! acknowledgement of it until the host says the record is synced. This crate is that
//! host's disk: an append-only log of those records, written by a thread of its own.
//!
//! - **Group commit.** The store's thread takes every batch of records queued since its
//!   last write, writes them as one checksummed frame and syncs once (`fdatasync`), then
//!   reports the last batch's ticket: one write and one sync serve everything that
//!   arrived meanwhile. The queue to the thread is bounded ([`Options::queue`]); a full
//!   queue makes the submitter wait (the disk is then the bottleneck).
//! - **Modes** ([`Mode`]): `Sync` reports a ticket only once it is synced; `Periodic`
//!   syncs every interval (the host does not wait); `None` leaves syncing to the OS.
//! - **Recovery.** [`Store::open`] reads the log, cuts a torn last frame (a crash while
//!   writing) with a warning, refuses a log damaged elsewhere with an error naming the
//!   file and the offset, and folds the records into a [`tinsel_core::Restored`] for
//!   [`tinsel_core::Router::restore`].
//! - **Compaction.** Delivered messages and ended sessions leave the store's picture at
//!   once; when the log has grown past [`Options::compact_at`] and twice its last compacted
//!   size, the thread writes the picture as a new log and renames it over the old one.
//! - **Failures.** A write or sync that fails (disk full, I/O error) is logged, the log is
//!   cut back to its last synced length and the same records are written again a second
//!   later: nothing synced is harmed, nothing is reported synced that is not, and the store
//!   goes on by itself when space returns. Meanwhile [`Running::failing`] is true.
//!
//! Files go through the [`FileSystem`] trait: the real one in the broker, the power-loss
//! layer [`sim::LossyFs`] in tests. This crate starts no async runtime.

mod entry;
mod error;
mod fold;
pub mod fs;
mod log;
pub mod sim;
mod store;

pub use error::Error;
pub use fs::{FileSystem, LogFile, StdFs};
pub use store::{Mode, Options, Running, Store};
