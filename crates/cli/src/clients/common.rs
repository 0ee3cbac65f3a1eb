//! What the three clients share: building the connection options, reporting errors with
//! Mosquitto's wording and exit codes, and `-d` packet logging.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tinsel_client::{ClientOptions, Error, PacketLog, TlsOptions};
use tinsel_codec::{ByteStr, Packet, ProtocolVersion, ReasonCode, Will};

use super::args::Config;

/// The client id to use: `-i`, `-I` + pid, or (3.1 only, which requires one) a generated
/// one; otherwise empty for the broker to assign.
pub(crate) fn client_id(c: &Config) -> String {
    if let Some(id) = &c.id {
        return id.clone();
    }
    if let Some(prefix) = &c.id_prefix {
        return format!("{prefix}{}", std::process::id());
    }
    if c.version == ProtocolVersion::V31 {
        return format!("tinsel_{}_{}", c.kind.name(), std::process::id());
    }
    String::new()
}

/// Builds the client options; `Err` is a one-line message.
pub(crate) fn options(c: &Config) -> Result<ClientOptions, String> {
    let mut o = ClientOptions::new(c.host.clone(), c.port());
    o.unix_path = c.unix.clone();
    if let Some(a) = &c.bind_address {
        let ip: std::net::IpAddr = a
            .parse()
            .map_err(|_| format!("Invalid bind address '{a}': give an IP address."))?;
        o.bind_address = Some(std::net::SocketAddr::new(ip, 0));
    }
    o.nodelay = c.nodelay;
    o.client_id = client_id(c);
    o.version = c.version;
    o.keep_alive = Duration::from_secs(u64::from(c.keepalive));
    o.clean_start = c.clean;
    o.username = c.username.clone();
    o.password = c.password.clone().map(Bytes::from);
    o.max_inflight = c.max_inflight;
    if let Some(t) = &c.will_topic {
        o.will = Some(Will {
            topic: ByteStr::try_from(t.as_str())
                .map_err(|_| format!("Invalid will topic '{t}'."))?,
            payload: Bytes::from(c.will_payload.clone().unwrap_or_default()),
            qos: c.will_qos,
            retain: c.will_retain,
            properties: if c.version.is_v5() {
                c.props.will.clone()
            } else {
                Default::default()
            },
        });
    }
    if c.version.is_v5() {
        let mut p = c.props.connect.clone();
        match c.session_expiry {
            Some(x) => p.make_mut().session_expiry_interval = Some(x),
            None if !c.clean => p.make_mut().session_expiry_interval = Some(u32::MAX),
            None => {}
        }
        o.connect_properties = p;
    }
    if c.tls() {
        o.tls = Some(TlsOptions {
            ca_file: c.cafile.clone(),
            ca_path: c.capath.clone(),
            cert_file: c.cert.clone(),
            key_file: c.key.clone(),
            insecure: c.insecure,
            version: c.tls_version.clone(),
            alpn: c.alpn.clone(),
            server_name: None,
        });
    }
    o.websocket = c.ws_path.clone();
    if c.debug {
        let id = if o.client_id.is_empty() {
            "(null)".to_string()
        } else {
            o.client_id.clone()
        };
        let state = std::sync::Mutex::new((id, 0u16));
        o.packet_log = Some(PacketLog(Arc::new(move |sent, p| {
            let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
            let (id, last_mid) = &mut *guard;
            // Like libmosquitto, name the client by the id the broker assigned, once known.
            if let Packet::ConnAck(a) = p {
                if let Some(assigned) = &a.properties.assigned_client_identifier {
                    *id = assigned.to_string();
                }
            }
            // libmosquitto numbers QoS 0 publishes too (the number never goes on the wire).
            let shown;
            let p = match p {
                Packet::Publish(m) if sent && m.packet_id == 0 => {
                    *last_mid = last_mid.wrapping_add(1).max(1);
                    let mut m = m.clone();
                    m.packet_id = *last_mid;
                    shown = Packet::Publish(m);
                    &shown
                }
                Packet::Publish(m) if sent => {
                    *last_mid = m.packet_id;
                    p
                }
                Packet::Subscribe(s) => {
                    *last_mid = s.packet_id;
                    p
                }
                Packet::Unsubscribe(u) => {
                    *last_mid = u.packet_id;
                    p
                }
                _ => p,
            };
            debug_line(id, sent, p);
        })));
    }
    Ok(o)
}

/// Mosquitto's 3.1.1 CONNACK strings.
fn connack_string(code: u8) -> &'static str {
    match code {
        0 => "Connection Accepted.",
        1 => "Connection Refused: unacceptable protocol version.",
        2 => "Connection Refused: identifier rejected.",
        3 => "Connection Refused: broker unavailable.",
        4 => "Connection Refused: bad user name or password.",
        5 => "Connection Refused: not authorised.",
        _ => "Connection Refused: unknown reason.",
    }
}

/// A reason code's name, as Mosquitto prints it.
pub(crate) fn reason_text(r: ReasonCode) -> String {
    r.description()
        .map(str::to_string)
        .unwrap_or_else(|| format!("Unknown reason code 0x{:02X}", r.0))
}

/// Prints a failed connection and returns Mosquitto's exit code for it.
pub(crate) fn connect_error(c: &Config, e: &Error) -> ExitCode {
    let (line, code) = match e {
        Error::ConnectionRefused {
            reason,
            reason_string,
        } => {
            if c.version.is_v5() {
                let mut l = format!("Connection error: {}", reason_text(*reason));
                if let Some(s) = reason_string {
                    l.push_str(&format!(" ({s})"));
                }
                (l, reason.0)
            } else {
                let v3 = reason.to_v3_connack();
                (format!("Connection error: {}", connack_string(v3)), v3)
            }
        }
        Error::Unreachable { addr, source } => {
            let l = match source.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    format!("Error: Connection refused (nothing is listening on {addr})")
                }
                _ if source.to_string().contains("lookup")
                    || source.to_string().contains("resolve")
                    || source.to_string().contains("Name or service") =>
                {
                    format!("Error: Unable to connect to {addr} (Lookup error: {source}).")
                }
                _ => format!("Error: Unable to connect to {addr}: {source}"),
            };
            (l, 1)
        }
        other => (format!("Error: {other}"), 1),
    };
    if !c.quiet {
        eprintln!("{line}");
    }
    ExitCode::from(code)
}

/// Prints an error (unless `--quiet`) and returns exit code 1.
pub(crate) fn fail(c: &Config, line: impl std::fmt::Display) -> ExitCode {
    if !c.quiet {
        eprintln!("{line}");
    }
    ExitCode::FAILURE
}

/// Resolves on SIGINT or SIGTERM (never, if the handlers cannot be installed).
pub(crate) async fn stop_signal() {
    let int = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut t) => {
                t.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = int => {}
        () = term => {}
    }
}

/// `-d`: one line per packet, in Mosquitto's style, on standard output.
fn debug_line(id: &str, sent: bool, p: &Packet) {
    let dir = if sent { "sending" } else { "received" };
    let detail = match p {
        Packet::ConnAck(a) => format!(" ({})", a.reason.0),
        Packet::Publish(m) => format!(
            " (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
            u8::from(m.dup),
            m.qos.as_u8(),
            u8::from(m.retain),
            m.packet_id,
            m.topic,
            m.payload.len()
        ),
        // The same wording as libmosquitto's debug log, packet by packet.
        Packet::PubAck(r) | Packet::PubComp(r) if !sent => {
            format!(" (Mid: {}, RC:{})", r.packet_id, r.reason.0)
        }
        Packet::PubRec(r) | Packet::PubRel(r) if !sent => format!(" (Mid: {})", r.packet_id),
        Packet::PubAck(r) | Packet::PubRec(r) => format!(" (m{}, rc{})", r.packet_id, r.reason.0),
        Packet::PubRel(r) | Packet::PubComp(r) => format!(" (m{})", r.packet_id),
        Packet::Subscribe(s) => s
            .filters
            .iter()
            .map(|(f, o)| {
                let opts = o.qos.as_u8()
                    | (u8::from(o.no_local) << 2)
                    | (u8::from(o.retain_as_published) << 3);
                format!(
                    " (Mid: {}, Topic: {}, QoS: {}, Options: 0x{:02x})",
                    s.packet_id,
                    f,
                    o.qos.as_u8(),
                    opts & 0xfc
                )
            })
            .collect::<Vec<_>>()
            .join(""),
        Packet::Unsubscribe(u) => u
            .filters
            .iter()
            .map(|f| format!(" (Mid: {}, Topic: {})", u.packet_id, f))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Client {id} {dir} {}{detail}", p.packet_type().name());
    let _ = out.flush();
}
