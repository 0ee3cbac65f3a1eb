//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Why a password file, an ACL file or a password hash could not be used.
///
/// Variants are split by who is at fault: the file's content ([`Error::Syntax`]), a hash
/// string or username handed in by the caller ([`Error::InvalidHash`],
/// [`Error::InvalidUsername`]), or the environment ([`Error::Io`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that was being read or written.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A line of a password file or ACL file cannot be used.
    #[error("{origin}:{line}: {message}")]
    Syntax {
        /// Where the text came from: a path, or whatever the caller named it.
        origin: String,
        /// The line number, counting from 1.
        line: usize,
        /// What is wrong with the line and, where it helps, what to do.
        message: String,
    },
    /// A password hash string is not in Mosquitto's `$6$` or `$7$` form.
    #[error("invalid password hash: {0}")]
    InvalidHash(&'static str),
    /// A username cannot be written to a password file.
    #[error("{0}")]
    InvalidUsername(&'static str),
}

impl Error {
    pub(crate) fn syntax(origin: &str, line: usize, message: impl Into<String>) -> Self {
        Error::Syntax {
            origin: origin.to_owned(),
            line,
            message: message.into(),
        }
    }
}
