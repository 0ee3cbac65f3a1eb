//! Mosquitto-compatible authentication and authorization files for Tinsel.
//!
//! What it does:
//!
//! - **Password files** ([`PasswordFile`]): reads Mosquitto's `username:hash` files, with
//!   `$7$` (PBKDF2-HMAC-SHA512) and `$6$` (salted SHA-512) hashes, and decides whether a
//!   CONNECT's username and password log in ([`Verdict`]). Comparison of digests is constant
//!   time.
//! - **Hashing** ([`PasswordHash`]): makes and reads the hash strings `mosquitto_passwd`
//!   writes, byte for byte the same given the same salt.
//! - **Editing** ([`PasswordEditor`]): adds, changes and deletes users and converts plain-text
//!   files, keeping every other line as it was; what `tinsel passwd` uses.
//! - **ACL files** ([`AclFile`], [`ClientAcl`]): reads Mosquitto's `user` / `topic` /
//!   `pattern` files and answers "may this client publish to / receive from this topic" with
//!   Mosquitto 2.0's rules, from a topic tree rather than a scan of every line; and decides
//!   SUBSCRIBE filters ([`SubscribeDecision`]), where Tinsel deliberately differs from
//!   Mosquitto (see [`acl`]).
//!
//! What it does not do: no network, no async runtime, no clock, no logging. The only I/O is
//! reading the file handed to [`PasswordFile::load`] or [`AclFile::load`] and, in
//! [`PasswordEditor`], reading and atomically replacing the password file it edits. It does
//! not watch files for changes (a broker reloads by loading again and swapping), decide
//! `allow_anonymous`, or hold connection state; a broker calls it through its access seam.
//!
//! ```
//! use tinsel_auth::{Access, AclFile, HashKind, PasswordFile, PasswordHash, Verdict};
//!
//! let hash = PasswordHash::new(HashKind::Sha512Pbkdf2, 101, b"s3cret")?;
//! let passwords = PasswordFile::parse(&format!("alice:{hash}\n"), "example")?;
//! assert_eq!(passwords.verify("alice", Some(b"s3cret")), Verdict::Ok);
//! assert_eq!(passwords.verify("alice", Some(b"guess")), Verdict::BadPassword);
//!
//! let acl = AclFile::parse("user alice\ntopic readwrite home/#\ntopic deny home/safe\n", "example")?;
//! let alice = acl.client("phone-1", Some("alice"));
//! assert!(alice.check("home/lights", Access::Write));
//! assert!(!alice.check("home/safe", Access::Read));
//! # Ok::<(), tinsel_auth::Error>(())
//! ```

pub mod acl;
mod acl_tree;
mod error;
pub mod hash;
pub mod password_edit;
pub mod password_file;
mod text;
pub mod topic;

pub use acl::{Access, AclFile, ClientAcl, SubscribeDecision};
pub use error::Error;
pub use hash::{DEFAULT_ITERATIONS, HashKind, PasswordHash};
pub use password_edit::PasswordEditor;
pub use password_file::{PasswordFile, Verdict};
