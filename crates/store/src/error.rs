//! The store's errors.

use std::path::PathBuf;

/// Why the store could not open or recover.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The environment failed: a file could not be read, written or created.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file or directory.
        file: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The log is damaged somewhere other than at its torn end.
    #[error("{}: corrupt at byte offset {offset}: {why}; move the file away to start empty, or restore it from a backup", file.display())]
    Corrupt {
        /// The log file.
        file: PathBuf,
        /// Where the damaged frame starts.
        offset: u64,
        /// What is wrong with it.
        why: &'static str,
    },
}
