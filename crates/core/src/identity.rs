//! What a connection's transport proved about the client before its CONNECT: the identity
//! in its TLS client certificate.
//!
//! The host reads the certificate (the core parses no X.509) and hands the core a name
//! with [`Router::set_tls_identity`] right after [`Router::accept`]. The core passes it to
//! the [`crate::Authenticator`] in [`crate::ConnectInfo::tls_identity`] and, when the
//! listener says so (Mosquitto's `use_identity_as_username` / `use_subject_as_username`),
//! puts it in place of the CONNECT's user name and drops its password: the client is then
//! who its certificate says, whatever it wrote in its CONNECT.

use std::sync::Arc;

use crate::connections::{ConnId, TlsIdentity};
use crate::router::Router;

impl Router {
    /// Records the identity of connection `conn`'s TLS client certificate, before its
    /// CONNECT. With `as_username`, the CONNECT's user name becomes `name` and its
    /// password is ignored. Does nothing if the connection is gone.
    pub fn set_tls_identity(&mut self, conn: ConnId, name: Arc<str>, as_username: bool) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.tls = Some(Box::new(TlsIdentity { name, as_username }));
        }
    }
}
