//! TLS listeners: the rustls configuration a listener's settings make (certificate chain
//! and key, client certificates checked against a CA file or directory, lowest version,
//! ALPN), and [`TlsTransport`], a connection's TLS stream as a [`Transport`].
//!
//! A TLS connection never parks: rustls keeps the session's keys and buffers, so the
//! connection keeps its task (and that state) while it is idle. That costs a task, the
//! connection's future and rustls' `ServerConnection` per idle client, a few KiB more than
//! a parked plain connection (see `docs/architecture.md`).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::AsyncWrite;
use tokio_rustls::server::TlsStream;

use crate::Error;
use crate::config::ListenerConfig;
use crate::transport::Transport;
use crate::wire::Wire;
use crate::x509::{Certificate, format_time};

/// A listener's error about one of its files, naming the file.
fn file_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Config(format!("{}: {what}", path.display()))
}

/// Reads every PEM certificate of `path`.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let file = File::open(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))
}

/// Reads the server certificate chain and refuses one whose leaf is not valid now.
fn server_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let chain = read_certs(path)?;
    let Some(leaf) = chain.first() else {
        return Err(file_error(path, "no PEM certificate in it"));
    };
    let Some(cert) = Certificate::parse(leaf) else {
        return Err(file_error(path, "the first certificate is not valid X.509"));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if now > cert.not_after {
        return Err(file_error(
            path,
            format!(
                "the certificate expired on {}; renew it",
                format_time(cert.not_after)
            ),
        ));
    }
    if now < cert.not_before {
        return Err(file_error(
            path,
            format!(
                "the certificate is not valid before {}; check the clock",
                format_time(cert.not_before)
            ),
        ));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let file = File::open(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    match rustls_pemfile::private_key(&mut BufReader::new(file)) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(file_error(path, "no PEM private key in it")),
        Err(e) => Err(file_error(path, format!("not a PEM key file: {e}"))),
    }
}

/// The authorities client certificates are checked against: `cafile`'s and those of every
/// file in `capath`.
fn client_roots(l: &ListenerConfig) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let mut add = |path: &Path, certs: Vec<CertificateDer<'static>>| -> Result<(), Error> {
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| file_error(path, format!("unusable CA certificate: {e}")))?;
        }
        Ok(())
    };
    if let Some(cafile) = &l.cafile {
        let certs = read_certs(cafile)?;
        if certs.is_empty() {
            return Err(file_error(cafile, "no PEM certificate in it"));
        }
        add(cafile, certs)?;
    }
    if let Some(capath) = &l.capath {
        let entries = std::fs::read_dir(capath)
            .map_err(|e| file_error(capath, format!("cannot read the directory: {e}")))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                // Files that hold no certificate (an index, a CRL) are skipped, as OpenSSL's
                // hashed directories may have them.
                if let Ok(certs) = read_certs(&path) {
                    add(&path, certs)?;
                }
            }
        }
    }
    Ok(roots)
}

/// The rustls configuration of a TLS listener, its files read now. Errors name the file.
pub(crate) fn server_config(l: &ListenerConfig) -> Result<Arc<ServerConfig>, Error> {
    let (Some(certfile), Some(keyfile)) = (&l.certfile, &l.keyfile) else {
        return Err(Error::Config(format!(
            "listener {}:{}: a TLS listener needs certfile and keyfile",
            l.address, l.port
        )));
    };
    let chain = server_chain(certfile)?;
    let key = private_key(keyfile)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match l.tls_version.as_deref() {
        Some("tlsv1.3") => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let builder = if l.cafile.is_some() || l.capath.is_some() {
        let roots = client_roots(l)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if l.require_certificate {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let verifier = verifier
            .build()
            .map_err(|e| Error::Config(format!("TLS client certificates: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        Error::Config(format!(
            "{} and {}: {e}",
            certfile.display(),
            keyfile.display()
        ))
    })?;
    config.alpn_protocols = l.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// How a listener names a client by its certificate, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdentityRule {
    /// The whole subject instead of the common name.
    pub(crate) subject: bool,
    /// The name replaces the CONNECT's user name.
    pub(crate) as_username: bool,
}

impl IdentityRule {
    pub(crate) fn of(l: &ListenerConfig) -> IdentityRule {
        IdentityRule {
            subject: l.use_subject_as_username,
            as_username: l.use_identity_as_username || l.use_subject_as_username,
        }
    }

    /// The identity of the client certificate of `stream`, if it presented one. Err: the
    /// listener takes the name as the user name and there is none, so the connection is
    /// refused.
    pub(crate) fn identity<IO>(self, stream: &TlsStream<IO>) -> Result<Option<Arc<str>>, String> {
        let Some(leaf) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        else {
            return if self.as_username {
                Err(
                    "no client certificate, and the listener takes its name as the user name"
                        .into(),
                )
            } else {
                Ok(None)
            };
        };
        let cert = Certificate::parse(leaf);
        let name = match (cert, self.subject) {
            (Some(c), true) => Some(c.subject()),
            (Some(c), false) => c.common_name(),
            (None, _) => None,
        };
        match name {
            Some(n) => Ok(Some(Arc::from(n))),
            None if self.as_username => {
                Err("the client certificate has no common name to use as the user name".into())
            }
            None => Ok(None),
        }
    }
}

/// A connection's TLS stream (over TCP), read without a buffer of its own: rustls holds
/// the records, and the plaintext is read straight into the connection's read buffer. A
/// capture records the encrypted bytes of the [`Wire`] under it, never the plaintext.
pub(crate) struct TlsTransport {
    stream: TlsStream<Wire>,
    /// rustls may hold plaintext that no socket readiness would announce: after the last
    /// read filled the caller's buffer, and at the start, when the records that finished
    /// the handshake came with the first packets (a client that sends CONNECT right behind
    /// its Finished would otherwise wait until it sent something more).
    more: bool,
    /// The client certificate's identity, until the connection registers.
    identity: Option<(Arc<str>, bool)>,
}

impl TlsTransport {
    pub(crate) fn new(stream: TlsStream<Wire>, identity: Option<(Arc<str>, bool)>) -> Self {
        TlsTransport {
            stream,
            more: true,
            identity,
        }
    }
}

impl Transport for TlsTransport {
    fn take_identity(&mut self) -> Option<(Arc<str>, bool)> {
        self.identity.take()
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Records a write left in rustls (the socket did not take them at once) go out
        // now: the task comes here whenever it has nothing else to do.
        if self.stream.get_ref().1.wants_write() {
            if let Poll::Ready(Err(e)) = Pin::new(&mut self.stream).poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
        }
        if self.more {
            return Poll::Ready(Ok(()));
        }
        self.stream.get_ref().0.poll_read_ready(cx)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        // Reads until rustls and the socket have nothing more, or `buf` is full. Without
        // waiting: a `Pending` read left the socket's readiness cleared, and the next
        // `poll_read_ready` registers the task's waker.
        let mut cx = Context::from_waker(Waker::noop());
        let mut total = 0;
        loop {
            if buf.len() == buf.capacity() {
                self.more = true;
                return Ok(total);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), &mut cx, buf) {
                Poll::Ready(Ok(0)) => {
                    // The end of the stream: reported now, or by the next read.
                    self.more = total > 0;
                    return Ok(total);
                }
                Poll::Ready(Ok(n)) => total += n,
                // A client that closes TCP without close_notify (many do, after their
                // DISCONNECT) has ended the stream like any other: MQTT's own framing shows
                // a cut packet.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.more = total > 0;
                    return Ok(total);
                }
                // The plaintext read before an error is handled first; the next read
                // reports the error.
                Poll::Ready(Err(_)) if total > 0 => {
                    self.more = true;
                    return Ok(total);
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    self.more = false;
                    return if total > 0 {
                        Ok(total)
                    } else {
                        Err(io::ErrorKind::WouldBlock.into())
                    };
                }
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.stream).poll_write(cx, buf))?;
        // rustls may keep records the socket did not take; `poll_read_ready` sends them.
        if let Poll::Ready(Err(e)) = Pin::new(&mut self.stream).poll_flush(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Sends close_notify, then shuts the socket's sending side.
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
