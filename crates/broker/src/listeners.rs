//! Listeners other than plain TCP: TLS, WebSocket, WebSocket over TLS, and Unix sockets.
//!
//! Each accepts in a tokio task of its own (the parking lot accepts plain TCP only) and
//! gives every new connection a task that runs its handshakes (TLS, then the HTTP upgrade)
//! within `limits.connect_timeout`, then serves it with [`connection::serve`] like a TCP
//! connection. A handshake that fails or runs out of time closes that connection only.
//! The connection counts against `limits.max_connections` and its listener's own
//! `max_connections` from its accept on.
//!
//! A Unix socket listener needs no handshake. Its socket file is replaced if one is left
//! from an earlier run, and removed when the broker stops. Its connections have no network
//! address: the core and the logs see `0.0.0.0:0`.
//!
//! A TLS listener's certificate and key are read again on SIGHUP: new connections get the
//! new ones, open ones keep theirs; if the files cannot be read, the old ones stay (logged).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tinsel_core::ListenerId;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::capture::Capture;
use crate::config::{ListenerConfig, Transport};
use crate::shared::Shared;
use crate::tls::{IdentityRule, TlsTransport};
use crate::websocket::{DEFAULT_PATH, WsTransport};
use crate::wire::Wire;
use crate::{Error, connection, tls, websocket};

/// A bound listener of a kind that needs a handshake, or a Unix socket.
pub(crate) struct Listener {
    socket: Socket,
    kind: Kind,
    /// Its index in the configuration.
    id: ListenerId,
}

enum Socket {
    Tcp(TcpListener, SocketAddr),
    Unix(UnixListener, std::path::PathBuf),
}

/// The address a Unix socket's connections are known by.
const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// What a listener's connections go through before MQTT.
#[derive(Clone)]
struct Kind {
    transport: Transport,
    tls: Option<Arc<Reloadable>>,
    rule: IdentityRule,
    path: Arc<str>,
    /// Connections start with a PROXY protocol header (see `proxy.rs`).
    proxy: bool,
}

/// A TLS listener's acceptor, replaced when its files are read again.
struct Reloadable {
    config: ListenerConfig,
    current: RwLock<TlsAcceptor>,
}

impl Reloadable {
    fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the certificate, key and CA files again; keeps the old ones on failure.
    fn reload(&self, local: &str) {
        match tls::server_config(&self.config) {
            Ok(c) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = TlsAcceptor::from(c);
                info!("listener {local}: TLS certificate and key read again");
            }
            Err(e) => warn!("listener {local}: keeping the old TLS certificate: {e}"),
        }
    }
}

impl Listener {
    /// A TCP listener whose connections need a handshake; reads its TLS files (errors
    /// name them).
    pub(crate) fn new(
        l: &ListenerConfig,
        listener: TcpListener,
        local: SocketAddr,
        id: ListenerId,
    ) -> Result<Listener, Error> {
        Ok(Listener {
            socket: Socket::Tcp(listener, local),
            kind: Kind::of(l)?,
            id,
        })
    }

    /// Binds a Unix socket listener on the path in `l.address`, replacing a socket file
    /// left by an earlier run.
    pub(crate) fn unix(l: &ListenerConfig, id: ListenerId) -> Result<Listener, Error> {
        let path = std::path::PathBuf::from(&l.address);
        let bind_error = |source| Error::Bind {
            addr: l.address.clone(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(&path).map_err(bind_error)?;
            }
        }
        let listener = UnixListener::bind(&path).map_err(bind_error)?;
        Ok(Listener {
            socket: Socket::Unix(listener, path),
            kind: Kind::of(l)?,
            id,
        })
    }

    /// Where it listens, for logs.
    fn name(&self) -> String {
        match &self.socket {
            Socket::Tcp(_, local) => local.to_string(),
            Socket::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

impl Kind {
    /// Reads the listener's TLS files (errors name them).
    fn of(l: &ListenerConfig) -> Result<Kind, Error> {
        let tls = if l.transport.is_tls() {
            let acceptor = TlsAcceptor::from(tls::server_config(l)?);
            Some(Arc::new(Reloadable {
                config: l.clone(),
                current: RwLock::new(acceptor),
            }))
        } else {
            None
        };
        Ok(Kind {
            transport: l.transport,
            tls,
            rule: IdentityRule::of(l),
            path: Arc::from(l.path.as_deref().unwrap_or(DEFAULT_PATH)),
            proxy: l.proxy_protocol,
        })
    }
}

impl Listener {
    /// Accepts until the broker stops.
    pub(crate) async fn run(
        self,
        shared: Arc<Shared>,
        connect_timeout: Duration,
        stop: watch::Sender<bool>,
        done: mpsc::Sender<()>,
        capture: Option<Capture>,
    ) {
        let name = self.name();
        let Listener { socket, kind, id } = self;
        info!("listening on {name} ({})", kind.transport.name());
        if let Some(tls) = &kind.tls {
            tokio::spawn(reload_on_hangup(
                tls.clone(),
                name.clone(),
                stop.subscribe(),
            ));
        }
        let mut stop_rx = stop.subscribe();
        loop {
            let accepted = tokio::select! {
                r = socket.accept() => r,
                _ = stop_rx.wait_for(|&s| s) => break,
            };
            let incoming = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!("accept on {name} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !shared.connection_opened(id) {
                warn!("connection limit reached, closing a connection to {name}");
                continue;
            }
            let (stream, peer, local) = match incoming {
                Incoming::Tcp(stream, peer, local) => (stream, peer, local),
                Incoming::Unix(stream) => {
                    let shared = shared.clone();
                    tokio::spawn(connection::serve(shared, stream, UNIX_PEER, id, None));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let capture = capture.clone();
            let (shared, kind, stop_rx) = (shared.clone(), kind.clone(), stop.subscribe());
            // The task's future holds only boxes: the handshake's state (a TLS or WebSocket
            // handshake is large) is freed once it is done, and each transport's connection
            // state is as large as that transport needs, not as the largest of them (an
            // idle TLS connection held 12 KiB of future otherwise).
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(
                    connect_timeout,
                    Box::pin(kind.handshake(
                        stream,
                        peer,
                        local,
                        capture.as_ref(),
                        shared.max_packet_size,
                    )),
                );
                let mut stop_rx = stop_rx;
                let outcome = tokio::select! {
                    r = handshake => r,
                    _ = stop_rx.wait_for(|&s| s) => {
                        return shared.connection_closed(Some(id));
                    }
                };
                drop(stop_rx);
                // Plain TCP and WebSocket connections are captured as the MQTT bytes their
                // task reads and writes; TLS ones in their `Wire`, as the encrypted bytes.
                let cap = |peer| capture.as_ref().map(|c| c.connection(peer, local));
                match outcome {
                    Ok(Ok((Accepted::Tcp(s), peer))) => {
                        Box::pin(connection::serve(shared, s, peer, id, cap(peer))).await;
                    }
                    Ok(Ok((Accepted::Tls(t), peer))) => {
                        Box::pin(connection::serve(shared, t, peer, id, None)).await;
                    }
                    Ok(Ok((Accepted::Ws(w), peer))) => {
                        Box::pin(connection::serve(shared, w, peer, id, cap(peer))).await;
                    }
                    Ok(Ok((Accepted::Wss(w), peer))) => {
                        Box::pin(connection::serve(shared, w, peer, id, None)).await;
                    }
                    Ok(Err(why)) => {
                        debug!(%peer, "listener {local}: handshake failed: {why}");
                        shared.connection_closed(Some(id));
                    }
                    Err(_) => {
                        debug!(%peer, "listener {local}: handshake not done within the connect timeout");
                        shared.connection_closed(Some(id));
                    }
                }
            });
        }
        if let Socket::Unix(_, path) = &socket {
            let _ = std::fs::remove_file(path);
        }
        drop(done);
    }
}

/// A connection just accepted.
enum Incoming {
    /// With its peer's and its listener's addresses.
    Tcp(TcpStream, SocketAddr, SocketAddr),
    Unix(tokio::net::UnixStream),
}

impl Socket {
    async fn accept(&self) -> std::io::Result<Incoming> {
        match self {
            Socket::Tcp(l, local) => {
                let (s, peer) = l.accept().await?;
                Ok(Incoming::Tcp(s, peer, *local))
            }
            Socket::Unix(l, _) => Ok(Incoming::Unix(l.accept().await?.0)),
        }
    }
}

/// A connection whose handshakes are done.
// Made once per connection and moved into its task at once: boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
enum Accepted {
    /// Plain TCP after a PROXY header (it may park like any TCP connection).
    Tcp(TcpStream),
    Tls(TlsTransport),
    Ws(WsTransport<TcpStream>),
    Wss(WsTransport<tokio_rustls::server::TlsStream<Wire>>),
}

impl Kind {
    async fn tls(
        &self,
        stream: Wire,
    ) -> Result<
        (
            tokio_rustls::server::TlsStream<Wire>,
            Option<(Arc<str>, bool)>,
        ),
        String,
    > {
        let Some(tls) = &self.tls else {
            return Err("no TLS configuration".into());
        };
        let stream = tls
            .acceptor()
            .accept(stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let identity = self.rule.identity(&stream)?;
        Ok((stream, identity.map(|n| (n, self.rule.as_username))))
    }

    /// Runs the connection's handshakes: the PROXY header, TLS, the WebSocket upgrade, as
    /// the listener has them. Ok: the stream to serve, and the client's address.
    ///
    /// With a capture, a TLS connection (WebSocket over TLS too) is recorded from the end of
    /// the PROXY header on, below TLS (see `wire.rs`): its handshake and its records as
    /// sent, encrypted.
    async fn handshake(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        capture: Option<&Capture>,
        max_packet_size: u32,
    ) -> Result<(Accepted, SocketAddr), String> {
        let peer = if self.proxy {
            crate::proxy::read_header(&mut stream)
                .await?
                .unwrap_or(peer)
        } else {
            peer
        };
        let wire = |stream| Wire::new(stream, capture.map(|c| c.connection(peer, local)));
        let path = self.path.clone();
        let ws_error = |e| format!("WebSocket upgrade: {e}");
        let accepted = match self.transport {
            Transport::Tls => {
                let (s, identity) = self.tls(wire(stream)).await?;
                Accepted::Tls(TlsTransport::new(s, identity))
            }
            Transport::WebSocketTls => {
                let (s, identity) = self.tls(wire(stream)).await?;
                let ws = websocket::accept(s, path, max_packet_size)
                    .await
                    .map_err(ws_error)?;
                Accepted::Wss(WsTransport::new(ws, identity))
            }
            Transport::WebSocket => {
                let ws = websocket::accept(stream, path, max_packet_size)
                    .await
                    .map_err(ws_error)?;
                Accepted::Ws(WsTransport::new(ws, None))
            }
            Transport::Tcp => Accepted::Tcp(stream),
            Transport::Unix => return Err("a Unix socket listener has no handshake".into()),
        };
        Ok((accepted, peer))
    }
}

/// Reads a TLS listener's files again on each SIGHUP, until the broker stops.
async fn reload_on_hangup(tls: Arc<Reloadable>, local: String, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!("listener {local}: no certificate reload on SIGHUP: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => tls.reload(&local),
            _ = stop.wait_for(|&s| s) => break,
        }
    }
}

impl ListenerConfig {
    /// Checks that the transport's settings fit together.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let at = format!("listener {}:{}", self.address, self.port);
        self.validate_mqtt(&at)?;
        let fail = |msg: String| Err(Error::Config(format!("{at}: {msg}")));
        let t = self.transport;
        let tls_keys = [
            ("certfile", self.certfile.is_some()),
            ("keyfile", self.keyfile.is_some()),
            ("cafile", self.cafile.is_some()),
            ("capath", self.capath.is_some()),
            ("require_certificate", self.require_certificate),
            ("use_identity_as_username", self.use_identity_as_username),
            ("use_subject_as_username", self.use_subject_as_username),
            ("tls_version", self.tls_version.is_some()),
            ("alpn", !self.alpn.is_empty()),
        ];
        if !t.is_tls() {
            if let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set) {
                return fail(format!(
                    "{key} is a TLS setting, but the transport is {}; use transport = \"tls\" \
                     or \"websocket-tls\"",
                    t.name()
                ));
            }
        } else if self.certfile.is_none() || self.keyfile.is_none() {
            return fail("a TLS listener needs certfile and keyfile".into());
        }
        if t == Transport::Unix && self.proxy_protocol {
            return fail("proxy_protocol is for TCP-based listeners, not Unix sockets".into());
        }
        if t == Transport::Unix && self.address.is_empty() {
            return fail("a Unix socket listener needs its path in address".into());
        }
        let checks_clients = self.cafile.is_some() || self.capath.is_some();
        if (self.require_certificate
            || self.use_identity_as_username
            || self.use_subject_as_username)
            && !checks_clients
        {
            return fail(
                "client certificates need cafile or capath (the authorities to check them \
                 against)"
                    .into(),
            );
        }
        if self.use_identity_as_username && self.use_subject_as_username {
            return fail(
                "use_identity_as_username and use_subject_as_username exclude each other; \
                 choose one"
                    .into(),
            );
        }
        if let Some(v) = &self.tls_version {
            if v != "tlsv1.2" && v != "tlsv1.3" {
                return fail(format!(
                    "tls_version must be \"tlsv1.2\" or \"tlsv1.3\", not \"{v}\""
                ));
            }
        }
        if let Some(p) = &self.path {
            if !t.is_websocket() {
                return fail(format!(
                    "path is a WebSocket setting, but the transport is {}",
                    t.name()
                ));
            }
            if !p.starts_with('/') && p != websocket::ANY_PATH {
                return fail(format!(
                    "path must start with / (or be \"*\": any path), not \"{p}\""
                ));
            }
        }
        Ok(())
    }

    /// Writes the transport's settings that are set, as TOML keys.
    pub(crate) fn write_tls(&self, o: &mut String) {
        let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let paths = [
            ("certfile", &self.certfile),
            ("keyfile", &self.keyfile),
            ("cafile", &self.cafile),
            ("capath", &self.capath),
        ];
        for (key, value) in paths {
            if let Some(p) = value {
                let _ = writeln!(o, "{key} = {}", quoted(&p.to_string_lossy()));
            }
        }
        let switches = [
            ("require_certificate", self.require_certificate),
            ("use_identity_as_username", self.use_identity_as_username),
            ("use_subject_as_username", self.use_subject_as_username),
        ];
        for (key, value) in switches {
            if value {
                let _ = writeln!(o, "{key} = true");
            }
        }
        if let Some(v) = &self.tls_version {
            let _ = writeln!(o, "tls_version = {}", quoted(v));
        }
        if !self.alpn.is_empty() {
            let list: Vec<String> = self.alpn.iter().map(|p| quoted(p)).collect();
            let _ = writeln!(o, "alpn = [{}]", list.join(", "));
        }
        if let Some(p) = &self.path {
            let _ = writeln!(o, "path = {}", quoted(p));
        }
        if self.proxy_protocol {
            let _ = writeln!(o, "proxy_protocol = true");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::config::Transport;

    fn config_error(listener: &str) -> String {
        let text = format!("[[listeners]]\nport = 8883\n{listener}");
        Config::from_toml_str(&text).unwrap_err().to_string()
    }

    #[test]
    fn transports_and_their_keys() {
        let c = Config::from_toml_str(
            r#"
            [[listeners]]
            port = 8883
            transport = "tls"
            certfile = "s.crt"
            keyfile = "s.key"
            cafile = "ca.crt"
            require_certificate = true
            use_subject_as_username = true
            tls_version = "tlsv1.3"
            alpn = ["mqtt"]
            [[listeners]]
            port = 8080
            transport = "websocket"
            [[listeners]]
            port = 8081
            transport = "websocket-tls"
            certfile = "s.crt"
            keyfile = "s.key"
            path = "/ws"
            "#,
        )
        .unwrap();
        let [tls, ws, wss] = &c.listeners[..] else {
            panic!("{:?}", c.listeners);
        };
        assert_eq!(tls.transport, Transport::Tls);
        assert!(tls.require_certificate && tls.use_subject_as_username);
        assert_eq!(tls.alpn, ["mqtt"]);
        assert_eq!(ws.transport, Transport::WebSocket);
        assert_eq!(ws.path, None);
        assert_eq!(wss.transport, Transport::WebSocketTls);
        assert_eq!(wss.path.as_deref(), Some("/ws"));
        let back = Config::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(back.listeners[0].tls_version.as_deref(), Some("tlsv1.3"));
        assert_eq!(back.listeners[0].alpn, ["mqtt"]);
        assert_eq!(back.listeners[2].path.as_deref(), Some("/ws"));
    }

    #[test]
    fn settings_that_do_not_fit_the_transport_are_errors() {
        let cases = [
            ("certfile = \"s.crt\"", "certfile is a TLS setting"),
            (
                "transport = \"tls\"\ncertfile = \"s.crt\"",
                "needs certfile and keyfile",
            ),
            (
                "transport = \"tls\"\ncertfile = \"s\"\nkeyfile = \"k\"\nrequire_certificate = true",
                "need cafile or capath",
            ),
            (
                "transport = \"tls\"\ncertfile = \"s\"\nkeyfile = \"k\"\ntls_version = \"tlsv1.1\"",
                "tls_version must be",
            ),
            ("path = \"/mqtt\"", "path is a WebSocket setting"),
            (
                "transport = \"tls\"\ncertfile = \"s\"\nkeyfile = \"k\"\ncafile = \"c\"\n\
                 use_identity_as_username = true\nuse_subject_as_username = true",
                "exclude each other",
            ),
            (
                "transport = \"websocket\"\npath = \"mqtt\"",
                "path must start with /",
            ),
            ("transport = \"quic\"", "unknown variant"),
            (
                "transport = \"unix\"\naddress = \"\"",
                "needs its path in address",
            ),
            (
                "transport = \"unix\"\ncafile = \"c\"",
                "cafile is a TLS setting",
            ),
            (
                "transport = \"unix\"\naddress = \"/s\"\nproxy_protocol = true",
                "proxy_protocol is for TCP-based listeners",
            ),
        ];
        for (listener, part) in cases {
            let e = config_error(listener);
            assert!(e.contains(part), "{listener}: {e}");
        }
    }
}
