//! Mosquitto-style argument parsing for `tinsel pub`, `sub` and `rr`, including the
//! defaults file (`$XDG_CONFIG_HOME/tinsel/{pub,sub,rr}`).

use std::ffi::OsString;
use std::path::PathBuf;

use tinsel_codec::{ProtocolVersion, QoS, topic};

use super::props::{self, PropSet};

/// Which client is parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Pub,
    Sub,
    Rr,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Pub => "pub",
            Kind::Sub => "sub",
            Kind::Rr => "rr",
        }
    }
}

/// Where `tinsel pub`'s (and `rr`'s) message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// `-m`
    Text(String),
    /// `-f`
    File(PathBuf),
    /// `-s`: all of standard input.
    Stdin,
    /// `-l`: one message per line of standard input.
    Lines,
    /// `-n`: an empty message.
    Null,
}

/// Everything the three clients accept. Fields a client does not use stay at defaults.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) kind: Kind,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) unix: Option<PathBuf>,
    pub(crate) bind_address: Option<String>,
    pub(crate) nodelay: bool,
    pub(crate) id: Option<String>,
    pub(crate) id_prefix: Option<String>,
    pub(crate) keepalive: u16,
    pub(crate) clean: bool,
    pub(crate) session_expiry: Option<u32>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) version: ProtocolVersion,
    pub(crate) will_topic: Option<String>,
    pub(crate) will_payload: Option<String>,
    pub(crate) will_qos: QoS,
    pub(crate) will_retain: bool,
    pub(crate) cafile: Option<PathBuf>,
    pub(crate) capath: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) insecure: bool,
    pub(crate) tls_version: Option<String>,
    pub(crate) alpn: Option<String>,
    /// `mqtts://` or `wss://` in `-L`.
    pub(crate) tls_url: bool,
    /// `ws://` or `wss://` in `-L`: MQTT over WebSocket on this path.
    pub(crate) ws_path: Option<String>,
    pub(crate) debug: bool,
    pub(crate) quiet: bool,
    pub(crate) props: PropSet,
    pub(crate) qos: QoS,
    // pub / rr
    pub(crate) topic: Option<String>,
    pub(crate) message: Option<Message>,
    pub(crate) retain: bool,
    pub(crate) repeat: u32,
    pub(crate) repeat_delay: f64,
    pub(crate) max_inflight: u16,
    // sub / rr
    pub(crate) topics: Vec<String>,
    pub(crate) filter_out: Vec<String>,
    pub(crate) unsubscribe: Vec<String>,
    pub(crate) count: u32,
    pub(crate) exit_after_sub: bool,
    pub(crate) timeout: Option<u32>,
    pub(crate) no_retain: bool,
    pub(crate) retained_only: bool,
    pub(crate) remove_retained: bool,
    pub(crate) retain_as_published: bool,
    pub(crate) no_local: bool,
    pub(crate) verbose: bool,
    pub(crate) eol: bool,
    pub(crate) format: Option<String>,
    pub(crate) pretty: bool,
    pub(crate) random_filter: f64,
    pub(crate) response_topic: Option<String>,
}

/// The outcome of parsing.
#[derive(Debug)]
pub(crate) enum Parsed {
    Run(Box<Config>),
    Help,
}

/// A parse error: the message (without "Error: "), and whether to add the usage line
/// (instead of the "see --help" hint).
#[derive(Debug, PartialEq)]
pub(crate) struct ArgError {
    pub(crate) message: String,
    pub(crate) usage: bool,
}

fn err(message: impl Into<String>) -> ArgError {
    ArgError {
        message: message.into(),
        usage: false,
    }
}

impl Config {
    fn new(kind: Kind) -> Config {
        Config {
            kind,
            host: "localhost".into(),
            port: None,
            unix: None,
            bind_address: None,
            nodelay: false,
            id: None,
            id_prefix: None,
            keepalive: 60,
            clean: true,
            session_expiry: None,
            username: None,
            password: None,
            version: if kind == Kind::Rr {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V311
            },
            will_topic: None,
            will_payload: None,
            will_qos: QoS::AtMostOnce,
            will_retain: false,
            cafile: None,
            capath: None,
            cert: None,
            key: None,
            insecure: false,
            tls_version: None,
            alpn: None,
            tls_url: false,
            ws_path: None,
            debug: false,
            quiet: false,
            props: PropSet::default(),
            qos: QoS::AtMostOnce,
            topic: None,
            message: None,
            retain: false,
            repeat: 1,
            repeat_delay: 0.0,
            max_inflight: 20,
            topics: Vec::new(),
            filter_out: Vec::new(),
            unsubscribe: Vec::new(),
            count: 0,
            exit_after_sub: false,
            timeout: None,
            no_retain: false,
            retained_only: false,
            remove_retained: false,
            retain_as_published: false,
            no_local: false,
            verbose: false,
            eol: true,
            format: None,
            pretty: false,
            random_filter: 100.0,
            response_topic: None,
        }
    }

    /// True when TLS is in use.
    pub(crate) fn tls(&self) -> bool {
        self.tls_url
            || self.cafile.is_some()
            || self.capath.is_some()
            || self.insecure
            || self.cert.is_some()
    }

    /// The port to use: given, or 8883 with TLS, else 1883.
    pub(crate) fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls() { 8883 } else { 1883 })
    }
}

/// The defaults file: `$XDG_CONFIG_HOME/tinsel/<kind>` or `~/.config/tinsel/<kind>`.
pub(crate) fn defaults_path(kind: Kind) -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("tinsel").join(kind.name()))
}

/// Reads the defaults file into arguments: one option per line, `-opt value` with the
/// value being the rest of the line; blank lines and `#` comments are skipped.
pub(crate) fn defaults_args(kind: Kind) -> Result<Vec<String>, ArgError> {
    let Some(path) = defaults_path(kind) else {
        return Ok(Vec::new());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(err(format!(
                "Unable to read defaults file {}: {e}.",
                path.display()
            )));
        }
    };
    Ok(split_defaults(&text))
}

pub(crate) fn split_defaults(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some((opt, rest)) => {
                out.push(opt.to_string());
                let rest = rest.trim();
                if !rest.is_empty() {
                    out.push(rest.to_string());
                }
            }
            None => out.push(line.to_string()),
        }
    }
    out
}

/// Parses the defaults file and then the command line (later options win).
pub(crate) fn parse(kind: Kind, args: Vec<OsString>) -> Result<Parsed, ArgError> {
    let mut all = defaults_args(kind)?;
    for a in args {
        all.push(a.into_string().map_err(|a| {
            err(format!(
                "Argument '{}' is not valid UTF-8.",
                a.to_string_lossy()
            ))
        })?);
    }
    parse_list(kind, all)
}

fn parse_qos(v: &str) -> Result<QoS, ArgError> {
    v.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| err(format!("Invalid QoS given: {v}")))
}

/// Parses a complete argument list.
pub(crate) fn parse_list(kind: Kind, args: Vec<String>) -> Result<Parsed, ArgError> {
    let mut c = Config::new(kind);
    let mut it = args.into_iter();
    let is_pub = kind == Kind::Pub;
    let is_sub = kind == Kind::Sub;
    let is_rr = kind == Kind::Rr;
    let mut message_count = 0;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<String, ArgError> {
            it.next()
                .ok_or_else(|| err(format!("{name} argument given but no value specified.")))
        };
        let a = arg.as_str();
        match a {
            "--help" => return Ok(Parsed::Help),
            "-h" | "--host" => c.host = value(a)?,
            "-p" | "--port" => {
                let v = value(a)?;
                c.port = Some(match v.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(err(format!("Invalid port given: {v}"))),
                });
            }
            "--unix" => c.unix = Some(value(a)?.into()),
            "-A" => c.bind_address = Some(value(a)?),
            "--nodelay" => c.nodelay = true,
            "-i" | "--id" => {
                let v = value(a)?;
                if v.len() > 65_535 {
                    return Err(err("Client id too long."));
                }
                c.id = Some(v);
            }
            "-I" | "--id-prefix" => c.id_prefix = Some(value(a)?),
            "-k" | "--keepalive" => {
                let v = value(a)?;
                c.keepalive = match v.parse::<u32>() {
                    Ok(k) if k == 0 || (5..=65_535).contains(&k) => k as u16,
                    _ => {
                        return Err(err(
                            "Invalid keepalive given, it must be between 5 and 65535 inclusive.",
                        ));
                    }
                };
            }
            "-c" | "--disable-clean-session" => c.clean = false,
            "-x" => {
                let v = value(a)?;
                c.session_expiry = Some(match v.as_str() {
                    "-1" | "∞" => u32::MAX,
                    _ => v
                        .parse::<u32>()
                        .map_err(|_| err(format!("Invalid session-expiry-interval '{v}'.")))?,
                });
            }
            "-u" | "--username" => c.username = Some(value(a)?),
            "-P" | "--pw" => c.password = Some(value(a)?),
            "-V" | "--protocol-version" => {
                c.version = match value(a)?.as_str() {
                    "31" | "mqttv31" => ProtocolVersion::V31,
                    "311" | "mqttv311" => ProtocolVersion::V311,
                    "5" | "mqttv5" => ProtocolVersion::V5,
                    _ => return Err(err("Invalid protocol version argument given.")),
                }
            }
            "-L" | "--url" => parse_url(&mut c, &value(a)?)?,
            "--will-topic" => {
                let v = value(a)?;
                if !topic::valid_topic_name(&v) {
                    return Err(err(format!(
                        "Invalid will topic '{v}', does it contain '+' or '#'?"
                    )));
                }
                c.will_topic = Some(v);
            }
            "--will-payload" => c.will_payload = Some(value(a)?),
            "--will-qos" => c.will_qos = parse_qos(&value(a)?)?,
            "--will-retain" => c.will_retain = true,
            "--cafile" => c.cafile = Some(value(a)?.into()),
            "--capath" => c.capath = Some(value(a)?.into()),
            "--cert" => c.cert = Some(value(a)?.into()),
            "--key" => c.key = Some(value(a)?.into()),
            "--insecure" => c.insecure = true,
            "--tls-version" => {
                let v = value(a)?;
                if !matches!(v.as_str(), "tlsv1.3" | "tlsv1.2") {
                    return Err(err(format!(
                        "Unsupported TLS version '{v}': use tlsv1.3 or tlsv1.2."
                    )));
                }
                c.tls_version = Some(v);
            }
            "--tls-alpn" => c.alpn = Some(value(a)?),
            "--ciphers"
            | "--keyform"
            | "--tls-engine"
            | "--tls-engine-kpass-sha1"
            | "--psk"
            | "--psk-identity"
            | "--proxy" => {
                let _ = value(a)?;
                return Err(err(format!("{a} is not supported by tinsel.")));
            }
            "--tls-use-os-certs" => {
                // The system trust store, as Debian and Fedora lay it out.
                let bundle = [
                    "/etc/ssl/certs/ca-certificates.crt",
                    "/etc/pki/tls/certs/ca-bundle.crt",
                ]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| err("--tls-use-os-certs: no system CA bundle found."))?;
                c.cafile.get_or_insert(bundle);
            }
            "-d" | "--debug" => c.debug = true,
            "--quiet" => c.quiet = true,
            "-D" | "--property" => {
                let command = value(a)?;
                let identifier = value(a)?;
                let mut vals = Vec::new();
                for _ in 0..props::arity(&identifier) {
                    vals.push(value(a)?);
                }
                c.props.add(&command, &identifier, &vals).map_err(err)?;
            }
            "-q" | "--qos" => c.qos = parse_qos(&value(a)?)?,
            "-t" | "--topic" => {
                let v = value(a)?;
                if is_sub {
                    if !topic::valid_topic_filter(&v) {
                        return Err(err(format!(
                            "Invalid subscription topic '{v}', are all '+' and '#' wildcards correct?"
                        )));
                    }
                    c.topics.push(v);
                } else {
                    if !topic::valid_topic_name(&v) {
                        return Err(err(format!(
                            "Invalid publish topic '{v}', does it contain '+' or '#'?"
                        )));
                    }
                    if c.topic.is_some() && is_pub {
                        return Err(err("Only one topic may be given."));
                    }
                    c.topic = Some(v);
                }
            }
            // pub / rr
            "-m" | "--message" if !is_sub => {
                c.message = Some(Message::Text(value(a)?));
                message_count += 1;
            }
            "-f" | "--file" if !is_sub => {
                c.message = Some(Message::File(value(a)?.into()));
                message_count += 1;
            }
            "-s" | "--stdin-file" if !is_sub => {
                c.message = Some(Message::Stdin);
                message_count += 1;
            }
            "-l" | "--stdin-line" if is_pub => {
                c.message = Some(Message::Lines);
                message_count += 1;
            }
            "-n" | "--null-message" if !is_sub => {
                c.message = Some(Message::Null);
                message_count += 1;
            }
            "-r" | "--retain" if is_pub => c.retain = true,
            "--repeat" if is_pub => {
                let v = value(a)?;
                c.repeat = match v.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(err("--repeat argument must be a positive integer.")),
                };
            }
            "--repeat-delay" if is_pub => {
                let v = value(a)?;
                c.repeat_delay = match v.parse::<f64>() {
                    Ok(d) if d >= 0.0 && d.is_finite() => d,
                    _ => return Err(err("--repeat-delay argument must be a positive number.")),
                };
            }
            "-M" if is_pub => {
                let v = value(a)?;
                c.max_inflight = match v.parse::<u16>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(err(
                            "Maximum inflight messages must be between 1 and 65535.",
                        ));
                    }
                };
            }
            // sub / rr
            "-e" if is_rr => {
                let v = value(a)?;
                if !topic::valid_topic_name(&v) {
                    return Err(err(format!(
                        "Invalid response topic '{v}', does it contain '+' or '#'?"
                    )));
                }
                c.response_topic = Some(v);
            }
            "-T" | "--filter-out" if is_sub => {
                let v = value(a)?;
                if !topic::valid_topic_filter(&v) {
                    return Err(err(format!(
                        "Invalid filter topic '{v}', are all '+' and '#' wildcards correct?"
                    )));
                }
                c.filter_out.push(v);
            }
            "-U" | "--unsubscribe" if is_sub => {
                let v = value(a)?;
                if !topic::valid_topic_filter(&v) {
                    return Err(err(format!(
                        "Invalid unsubscribe topic '{v}', are all '+' and '#' wildcards correct?"
                    )));
                }
                c.unsubscribe.push(v);
            }
            "-C" if is_sub => {
                let v = value(a)?;
                c.count = match v.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(err("Invalid message count, it must be at least 1.")),
                };
            }
            "-E" if is_sub => c.exit_after_sub = true,
            "-W" if !is_pub => {
                let v = value(a)?;
                c.timeout = match v.parse::<u32>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => return Err(err(format!("Invalid timeout \"{v}\"."))),
                };
            }
            "-R" | "--no-retain" if !is_pub => c.no_retain = true,
            "--retained-only" if is_sub => c.retained_only = true,
            "--remove-retained" if is_sub => c.remove_retained = true,
            "--retain-as-published" if is_sub => c.retain_as_published = true,
            "--nolocal" if is_sub => c.no_local = true,
            "-v" | "--verbose" if !is_pub => c.verbose = true,
            "-N" if !is_pub => c.eol = false,
            "-F" if !is_pub => {
                let v = value(a)?;
                super::format::validate(&v).map_err(err)?;
                c.format = Some(v);
            }
            "--pretty" if !is_pub => c.pretty = true,
            "--random-filter" if is_sub => {
                let v = value(a)?;
                c.random_filter = match v.parse::<f64>() {
                    Ok(f) if (0.1..=100.0).contains(&f) => f,
                    _ => return Err(err("Invalid random filter, must be between 0.1 and 100.")),
                };
            }
            _ => return Err(err(format!("Unknown option '{a}'."))),
        }
    }
    check(&mut c, message_count)?;
    Ok(Parsed::Run(Box::new(c)))
}

/// `-L mqtt(s)://[user[:pass]@]host[:port]/topic`, or `-L ws(s)://[user[:pass]@]host[:port][/path]`
/// (MQTT over WebSocket on `path`, `/mqtt` if none; the topic then comes from `-t`).
fn parse_url(c: &mut Config, url: &str) -> Result<(), ArgError> {
    let websocket = [("ws://", false, 80), ("wss://", true, 443)]
        .into_iter()
        .find_map(|(scheme, tls, port)| url.strip_prefix(scheme).map(|r| (r, tls, port)));
    if let Some((rest, tls, default_port)) = websocket {
        c.tls_url = tls;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/mqtt"),
        };
        c.ws_path = Some(path.to_string());
        authority_part(c, authority)?;
        c.port.get_or_insert(default_port);
        return Ok(());
    }
    let rest = if let Some(r) = url.strip_prefix("mqtt://") {
        c.tls_url = false;
        r
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        c.tls_url = true;
        r
    } else {
        return Err(err("Unsupported URL scheme."));
    };
    c.ws_path = None;
    let (authority, topic) = match rest.split_once('/') {
        Some((a, t)) => (a, t),
        None => {
            return Err(err(
                "Invalid URL for -L argument specified - topic missing.",
            ));
        }
    };
    authority_part(c, authority)?;
    url_topic(c, topic)
}

/// `[user[:pass]@]host[:port]` of a `-L` URL.
fn authority_part(c: &mut Config, authority: &str) -> Result<(), ArgError> {
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            match userinfo.split_once(':') {
                Some((u, p)) => {
                    c.username = Some(u.to_string());
                    c.password = Some(p.to_string());
                }
                None => c.username = Some(userinfo.to_string()),
            }
            hp
        }
        None => authority,
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| err(format!("Invalid port in URL: {p}")))?;
            (h, Some(port))
        }
        _ => (hostport, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(err("Invalid URL for -L argument specified - host missing."));
    }
    c.host = host.to_string();
    if port.is_some() {
        c.port = port;
    }
    Ok(())
}

/// The topic of an `mqtt(s)://` URL.
fn url_topic(c: &mut Config, topic: &str) -> Result<(), ArgError> {
    if topic.is_empty() {
        return Err(err(
            "Invalid URL for -L argument specified - topic missing.",
        ));
    }
    if c.kind == Kind::Sub {
        if !topic::valid_topic_filter(topic) {
            return Err(err(format!(
                "Invalid subscription topic '{topic}', are all '+' and '#' wildcards correct?"
            )));
        }
        c.topics.push(topic.to_string());
    } else {
        if !topic::valid_topic_name(topic) {
            return Err(err(format!(
                "Invalid publish topic '{topic}', does it contain '+' or '#'?"
            )));
        }
        c.topic = Some(topic.to_string());
    }
    Ok(())
}

/// Cross-option checks, after everything is read.
fn check(c: &mut Config, message_count: u32) -> Result<(), ArgError> {
    match c.kind {
        Kind::Pub | Kind::Rr => {
            if c.topic.is_none() {
                return Err(ArgError {
                    message: "No topic given: use -t TOPIC (or -L URL).".into(),
                    usage: true,
                });
            }
            if message_count > 1 {
                return Err(err("Only one type of message can be sent at once."));
            }
            if c.message.is_none() {
                return Err(ArgError {
                    message: "No message given: use one of -m, -f, -s, -l or -n.".into(),
                    usage: true,
                });
            }
            if c.kind == Kind::Rr && c.response_topic.is_none() {
                return Err(ArgError {
                    message: "No response topic given: use -e TOPIC.".into(),
                    usage: true,
                });
            }
        }
        Kind::Sub => {
            if c.topics.is_empty() {
                return Err(ArgError {
                    message: "You must specify a topic to subscribe to.".into(),
                    usage: true,
                });
            }
        }
    }
    if c.will_topic.is_none() && (c.will_payload.is_some() || c.will_retain) {
        return Err(err(
            "Will payload or retain given, but no will topic given.",
        ));
    }
    if c.password.is_some() && c.username.is_none() {
        return Err(err("Password given, but no username given."));
    }
    if c.key.is_some() != c.cert.is_some() {
        return Err(err(
            "Both certificate and key must be provided if one of them is.",
        ));
    }
    if !c.clean && c.id.is_none() && c.id_prefix.is_none() {
        return Err(err(
            "You must provide a client id if you are using the -c option.",
        ));
    }
    if c.props.any && c.version != ProtocolVersion::V5 {
        return Err(err(
            "You must use MQTT v5 (-V 5) to use properties with -D.",
        ));
    }
    if c.session_expiry.is_some() && c.version != ProtocolVersion::V5 {
        return Err(err(
            "You must use MQTT v5 (-V 5) to use -x (session expiry interval).",
        ));
    }
    if c.retain_as_published && c.version != ProtocolVersion::V5 {
        return Err(err(
            "You must use MQTT v5 (-V 5) to use --retain-as-published.",
        ));
    }
    if c.kind == Kind::Rr && c.version != ProtocolVersion::V5 && c.response_topic.is_none() {
        return Err(err("No response topic given."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: Kind, args: &[&str]) -> Result<Config, ArgError> {
        match parse_list(kind, args.iter().map(|s| s.to_string()).collect())? {
            Parsed::Run(c) => Ok(*c),
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn scenario_command() {
        let c = p(
            Kind::Pub,
            &[
                "-h",
                "localhost",
                "-t",
                "d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz",
                "-m",
                "on",
            ],
        )
        .unwrap();
        assert_eq!(c.host, "localhost");
        assert_eq!(c.port(), 1883);
        assert_eq!(c.message, Some(Message::Text("on".into())));
    }

    #[test]
    fn versions_and_url() {
        for (v, want) in [
            ("31", ProtocolVersion::V31),
            ("mqttv311", ProtocolVersion::V311),
            ("5", ProtocolVersion::V5),
        ] {
            assert_eq!(p(Kind::Sub, &["-t", "a", "-V", v]).unwrap().version, want);
        }
        let c = p(Kind::Pub, &["-L", "mqtts://u:pw@example:1234/a/b", "-n"]).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port(), c.tls()),
            ("example", 1234, true)
        );
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.topic.as_deref(), Some("a/b"));
        let c = p(Kind::Sub, &["-L", "mqtts://h/x/#"]).unwrap();
        assert_eq!(c.port(), 8883);
        assert_eq!(c.topics, vec!["x/#"]);
    }

    #[test]
    fn websocket_urls() {
        let c = p(
            Kind::Pub,
            &["-L", "ws://u@[::1]:9001/ws/mqtt", "-t", "a", "-n"],
        )
        .unwrap();
        assert_eq!((c.host.as_str(), c.port(), c.tls()), ("::1", 9001, false));
        assert_eq!(c.ws_path.as_deref(), Some("/ws/mqtt"));
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.topic.as_deref(), Some("a"));
        let c = p(Kind::Sub, &["-L", "wss://h", "-t", "x/#"]).unwrap();
        assert_eq!((c.port(), c.tls()), (443, true));
        assert_eq!(c.ws_path.as_deref(), Some("/mqtt"));
        // A topic is still needed, from -t.
        assert!(p(Kind::Pub, &["-L", "ws://h:1/mqtt", "-n"]).is_err());
    }

    #[test]
    fn errors() {
        let e = p(Kind::Pub, &["-m", "x"]).unwrap_err();
        assert!(e.usage);
        assert!(p(Kind::Pub, &["-t", "a/#", "-m", "x"]).is_err());
        assert!(p(Kind::Sub, &["-t", "a/#/b"]).is_err());
        assert!(p(Kind::Sub, &["-t", "a", "-q", "3"]).is_err());
        assert!(p(Kind::Sub, &["-t", "a", "-zz"]).is_err());
        assert!(p(Kind::Pub, &["-t", "a", "-m", "x", "-k", "3"]).is_err());
        assert!(p(Kind::Pub, &["-t", "a", "-m", "x", "-n"]).is_err());
        assert!(p(Kind::Sub, &["-t", "a", "-c"]).is_err());
        assert!(
            p(
                Kind::Sub,
                &["-t", "a", "-D", "subscribe", "subscription-identifier", "3"]
            )
            .is_err()
        );
        assert!(p(Kind::Sub, &["-t", "a", "-p"]).is_err());
        assert!(p(Kind::Sub, &["-t", "a", "-F", "%z"]).is_err());
    }

    #[test]
    fn defaults_file_lines() {
        let args = split_defaults(
            "# comment\n-h broker.example\n\n-p 1884\n--will-payload two words\n-d\n",
        );
        assert_eq!(
            args,
            vec![
                "-h",
                "broker.example",
                "-p",
                "1884",
                "--will-payload",
                "two words",
                "-d"
            ]
        );
    }
}
