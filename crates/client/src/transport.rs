//! Opening the byte stream to the broker: TCP, Unix socket, or TLS over TCP; WebSocket over
//! either of the last two (see [`crate::websocket`]).

use std::io::BufReader;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

use crate::{ClientOptions, Error, TlsOptions};

/// A connected byte stream, whatever carries it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Opens the stream `opts` describes (no MQTT yet).
pub(crate) async fn open(opts: &ClientOptions) -> Result<Box<dyn Io>, Error> {
    #[cfg(unix)]
    if let Some(path) = &opts.unix_path {
        let s = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| Error::Unreachable {
                addr: path.display().to_string(),
                source,
            })?;
        return Ok(Box::new(s));
    }
    let addr = format!("{}:{}", opts.host, opts.port);
    let tcp = open_tcp(opts).await.map_err(|source| Error::Unreachable {
        addr: addr.clone(),
        source,
    })?;
    let io: Box<dyn Io> = match &opts.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let config = client_config(tls)?;
            let name = tls.server_name.clone().unwrap_or_else(|| opts.host.clone());
            let name = ServerName::try_from(name)
                .map_err(|e| Error::Tls(format!("invalid server name: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let s = connector
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Tls(e.to_string()))?;
            Box::new(s)
        }
    };
    match &opts.websocket {
        None => Ok(io),
        Some(path) => crate::websocket::upgrade(io, opts, path).await,
    }
}

async fn open_tcp(opts: &ClientOptions) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((opts.host.as_str(), opts.port)).await? {
        let attempt = async {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(bind) = opts.bind_address {
                socket.bind(bind)?;
            }
            let s = socket.connect(addr).await?;
            s.set_nodelay(opts.nodelay)?;
            Ok::<_, std::io::Error>(s)
        };
        match attempt.await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "host name did not resolve")
    }))
}

fn tls_err(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what} {}: {e}", path.display()))
}

fn load_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let file = std::fs::File::open(path).map_err(|e| tls_err("cannot open", path, e))?;
    rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("cannot read certificates from", path, e))
}

/// Builds the rustls client configuration for `tls`.
pub(crate) fn client_config(tls: &TlsOptions) -> Result<rustls::ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    if let Some(ca) = &tls.ca_file {
        for cert in load_certs(ca)? {
            roots
                .add(cert)
                .map_err(|e| tls_err("bad CA certificate in", ca, e))?;
        }
    }
    if let Some(dir) = &tls.ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| tls_err("cannot read", dir, e))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_file() {
                // A directory of CA files may hold other things (hash links, READMEs):
                // take what parses, skip the rest.
                for cert in load_certs(&p).unwrap_or_default() {
                    let _ = roots.add(cert);
                }
            }
        }
    }
    if roots.is_empty() && !tls.insecure {
        return Err(Error::Tls(
            "no trusted CA certificates: give a CA file or directory".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match tls.version.as_deref() {
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        Some("tlsv1.3") => vec![&rustls::version::TLS13],
        Some("tlsv1.2") => vec![&rustls::version::TLS12],
        Some(v) => return Err(Error::Tls(format!("unsupported TLS version '{v}'"))),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = if tls.insecure {
        let inner = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::Tls(e.to_string()))?,
            )
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Insecure { inner, provider }))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert)?;
            let file = std::fs::File::open(key).map_err(|e| tls_err("cannot open", key, e))?;
            let key_der = rustls_pemfile::private_key(&mut BufReader::new(file))
                .map_err(|e| tls_err("cannot read key from", key, e))?
                .ok_or_else(|| tls_err("no private key in", key, "empty"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::Tls(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::Tls(
                "a client certificate needs its key and the other way round".into(),
            ));
        }
    };
    if let Some(alpn) = &tls.alpn {
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    }
    Ok(config)
}

/// `--insecure`: the chain is still checked against the given CAs when there are any, but
/// a host name mismatch is accepted; with no CA at all, any certificate is accepted.
#[derive(Debug)]
struct Insecure {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Insecure {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            })) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
