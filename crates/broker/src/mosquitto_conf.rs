//! Mosquitto's configuration format (`mosquitto.conf`), read unchanged into a [`Config`].
//!
//! A line is `directive value`; `#` starts a comment line. Directives keep Mosquitto 2's
//! meanings and defaults (see `mosquitto.conf(5)`): settings before the first `listener`
//! line belong to the default listener (`port`, `bind_address`), which exists only when
//! one of them is set; a file with no listener at all listens on localhost:1883; the limits
//! start from Mosquitto's defaults (`max_inflight_messages 20`, no byte limit on queues),
//! not Tinsel's.
//!
//! Every directive falls in one of four groups, each decided in one place:
//!
//! - **read**: mapped onto [`Config`] (listeners, limits, `$SYS`, logging);
//! - **kept** ([`KEPT`]): read into [`Config::access`] (acted on by
//!   [`crate::FileAccess`]) and [`Config::persistence`] (acted on by the store);
//! - **refused**: what Tinsel cannot serve yet (`bind_interface`, `http_dir`, and the TLS settings rustls cannot honour: `crlfile`,
//!   `psk_hint`, `tls_engine`...): an error naming the file and line, as Tinsel would
//!   otherwise serve something other than what the file asks for (TLS listeners, from
//!   `certfile`/`keyfile`/`cafile`/`capath`, and `protocol websockets` are read);
//! - **ignored**: other valid Mosquitto directives (plugins, ...): a warning naming
//!   the file and line.
//!
//! Bridges (`connection NAME` and the lines after it) are read into [`Config::bridges`]
//! (see [`crate::bridge`]).
//!
//! A name Mosquitto does not know either, and a malformed value, are errors naming the file
//! and line ([`Error::ConfigLine`]), as Mosquitto refuses them too. Values are read more
//! strictly than Mosquitto's `atoi`: `port 18x3` is an error, not port 18.
//!
//! `include_dir DIR` reads every `*.conf` file of DIR in Mosquitto's order (upper case
//! before the same letter in lower case), from the main file only.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{AccessConfig, ListenerAccess, ListenerConfig, LoggingConfig, Transport};
use crate::{Config, Error, Limits};

/// The access directives Tinsel reads into [`Config::access`] (acted on: see
/// [`crate::FileAccess`]).
pub const KEPT: [&str; 4] = [
    "allow_anonymous",
    "password_file",
    "acl_file",
    "per_listener_settings",
];

/// Valid Mosquitto 2 directives that Tinsel reads and ignores, with a warning.
const IGNORED: &[&str] = &[
    "allow_duplicate_messages",
    "auth_plugin",
    "auth_plugin_deny_special_chars",
    "autosave_interval",
    "autosave_on_changes",
    "check_retain_source",
    "connection_messages",
    "log_facility",
    "log_timestamp",
    "log_timestamp_format",
    "max_inflight_bytes",
    "memory_limit",
    "persistent_client_expiration",
    "pid_file",
    "plugin",
    "psk_file",
    "queue_qos0_messages",
    "retained_persistence",
    "retry_interval",
    "set_tcp_nodelay",
    "use_username_as_clientid",
    "websockets_headers_size",
    "websockets_log_level",
];

/// Directives that configure a bridge (after `connection NAME`).
const BRIDGE: &[&str] = &[
    "address",
    "addresses",
    "bridge_alpn",
    "bridge_attempt_unsubscribe",
    "bridge_bind_address",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_identity",
    "bridge_insecure",
    "bridge_keyfile",
    "bridge_max_packet_size",
    "bridge_outgoing_retain",
    "bridge_protocol_version",
    "bridge_psk",
    "bridge_require_ocsp",
    "bridge_tls_version",
    "cleansession",
    "clientid",
    "idle_timeout",
    "keepalive_interval",
    "local_cleansession",
    "local_clientid",
    "local_password",
    "local_username",
    "notification_topic",
    "notifications",
    "notifications_local_only",
    "password",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "restart_timeout",
    "round_robin",
    "start_type",
    "threshold",
    "topic",
    "try_private",
    "username",
];

/// TLS directives Tinsel cannot honour, refused: ignoring them would weaken the listener
/// (a revocation list, PSK, an engine holding the key).
const TLS_REFUSED: &[&str] = &[
    "crlfile",
    "psk_hint",
    "tls_engine",
    "tls_engine_kpass_sha1",
    "tls_keyform",
];

/// TLS directives whose choice rustls makes itself (its cipher suites and key exchanges
/// are all strong ones): ignored with a warning.
const TLS_IGNORED: &[&str] = &["ciphers", "ciphers_tls1.3", "dhparamfile"];

/// `max_queued_messages 0`: no limit, as in Mosquitto (the largest value TOML can write).
const NO_LIMIT: usize = i64::MAX as usize;

/// Something in a configuration file that Tinsel reads but does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub file: PathBuf,
    /// The line, counted from 1; 0 when the warning is about the whole file.
    pub line: usize,
    /// What is ignored, and what Tinsel does instead.
    pub message: String,
}

impl Warning {
    pub(crate) fn whole_file(file: &Path, message: &str) -> Warning {
        Warning {
            file: file.to_owned(),
            line: 0,
            message: message.to_owned(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// Whether `text` looks like Mosquitto's format: at least one directive, and every line
/// that is not blank or a comment is a lower-case name, then nothing or a space and a value.
pub fn looks_like_mosquitto(text: &str) -> bool {
    let mut directives = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_ascii_whitespace();
        let name = words.next().unwrap_or_default();
        let is_name = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
            && name.starts_with(|c: char| c.is_ascii_lowercase());
        if !is_name || words.next().is_some_and(|w| w.starts_with('=')) {
            return false;
        }
        directives += 1;
    }
    directives > 0
}

/// Reads a Mosquitto configuration file (and the files its `include_dir` lines name).
pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    parse_str(&text, path)
}

/// Parses `text`, the content of the Mosquitto configuration file `file` (named in errors
/// and warnings; `include_dir` lines read their files from disk).
pub fn parse_str(text: &str, file: &Path) -> Result<(Config, Vec<Warning>), Error> {
    let mut p = Parser::default();
    p.file(text, file, 0)?;
    p.finish(file)
}

/// How a listener's socket is chosen when it has no bind address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Domain {
    V4,
    V6,
}

/// A listener while its lines are read.
#[derive(Debug, Default)]
struct Draft {
    port: Option<u16>,
    host: Option<String>,
    domain: Option<Domain>,
    /// `max_connections`; None: no limit (Mosquitto's -1).
    max_connections: Option<usize>,
    max_topic_alias: Option<u16>,
    mount_point: Option<String>,
    /// `accept_protocol_versions` (Mosquitto 2.1); empty: all.
    protocols: Vec<crate::config::MqttVersion>,
    access: ListenerAccess,
    /// `protocol websockets`.
    websockets: bool,
    /// `listener 0 PATH`: a Unix socket.
    unix: bool,
    certfile: Option<PathBuf>,
    keyfile: Option<PathBuf>,
    cafile: Option<PathBuf>,
    capath: Option<PathBuf>,
    require_certificate: bool,
    use_identity_as_username: bool,
    use_subject_as_username: bool,
    tls_version: Option<String>,
    /// Where it was declared (the `listener` line; for the default listener, the first
    /// line that made it exist).
    line: usize,
    /// For the default listener: whether a line made it exist.
    used: bool,
}

/// One line of a file, split into its directive and the rest.
struct Line<'a> {
    file: &'a Path,
    no: usize,
    name: &'a str,
    rest: &'a str,
}

impl Line<'_> {
    fn error(&self, message: impl Into<String>) -> Error {
        Error::ConfigLine {
            file: self.file.to_owned(),
            line: self.no,
            message: message.into(),
        }
    }

    fn warning(&self, message: impl Into<String>) -> Warning {
        Warning {
            file: self.file.to_owned(),
            line: self.no,
            message: message.into(),
        }
    }

    /// The first word of the value (Mosquitto reads numbers, switches and keywords so);
    /// other words are ignored with a warning, unless they are a comment.
    fn word(&self, warnings: &mut Vec<Warning>) -> Result<&str, Error> {
        let mut words = self.rest.split_ascii_whitespace();
        let Some(word) = words.next() else {
            return Err(self.error(format!("{} needs a value", self.name)));
        };
        if let Some(extra) = words.next() {
            if !extra.starts_with('#') {
                warnings.push(self.warning(format!(
                    "{}: only the first word of the value is read; \"{extra}\" and what \
                     follows are ignored",
                    self.name
                )));
            }
        }
        Ok(word)
    }

    /// The whole value, as Mosquitto reads strings (paths may contain spaces).
    fn string(&self) -> Result<&str, Error> {
        let value = self.rest.trim();
        if value.is_empty() {
            return Err(self.error(format!("{} needs a value", self.name)));
        }
        Ok(value)
    }

    fn int(&self, warnings: &mut Vec<Warning>) -> Result<i64, Error> {
        let word = self.word(warnings)?;
        word.parse::<i64>().map_err(|_| {
            self.error(format!(
                "{} expects a whole number, not \"{word}\"",
                self.name
            ))
        })
    }

    fn int_in(&self, warnings: &mut Vec<Warning>, lo: i64, hi: i64) -> Result<i64, Error> {
        let v = self.int(warnings)?;
        if v < lo || v > hi {
            return Err(self.error(format!(
                "{} must be between {lo} and {hi}, not {v}",
                self.name
            )));
        }
        Ok(v)
    }

    fn boolean(&self, warnings: &mut Vec<Warning>) -> Result<bool, Error> {
        match self.word(warnings)? {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(self.error(format!(
                "{} expects true or false, not \"{other}\"",
                self.name
            ))),
        }
    }

    fn port(&self, word: &str) -> Result<u16, Error> {
        match word.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(self.error(format!(
                "{}: the port must be a number from 1 to 65535, not \"{word}\"",
                self.name
            ))),
        }
    }
}

/// Log verbosity as Tinsel's filter levels, from Mosquitto's `log_type` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn filter(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

#[derive(Default)]
struct Parser {
    warnings: Vec<Warning>,
    /// Settings before the first `listener` line.
    default: Draft,
    listeners: Vec<Draft>,
    /// The bridge being configured (`connection NAME`): an index in `bridges`.
    bridge: Option<usize>,
    /// Every bridge, with the file and line of its `connection`.
    bridges: Vec<(crate::bridge::BridgeConfig, PathBuf, usize)>,
    limits: MosquittoLimits,
    sys_interval: Option<u64>,
    log_level: Option<Level>,
    log_none: bool,
    /// `log_dest file PATH` (Tinsel writes one destination: this file, if set).
    log_file: Option<std::path::PathBuf>,
    /// `log_dest stderr` was given too.
    log_stderr: bool,
    access: AccessConfig,
    mqtt: crate::config::MqttConfig,
    /// The first access line, for `per_listener_settings` that comes after it.
    first_access_line: Option<usize>,
    persistence: crate::config::PersistenceConfig,
}

/// Mosquitto's general limits, as set by the file (None: Mosquitto's default).
#[derive(Default)]
struct MosquittoLimits {
    max_keepalive: Option<u16>,
    max_packet_size: Option<u32>,
    max_inflight_messages: Option<u16>,
    max_queued_messages: Option<usize>,
    max_queued_bytes: Option<usize>,
}

impl Parser {
    fn file(&mut self, text: &str, file: &Path, level: usize) -> Result<(), Error> {
        for (i, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            // Mosquitto treats only a `#` in the first column as a comment; indented ones
            // are read as comments too, rather than as an unknown directive.
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (name, rest) = trimmed
                .split_once(|c: char| c.is_ascii_whitespace())
                .unwrap_or((trimmed, ""));
            let line = Line {
                file,
                no: i + 1,
                name,
                rest,
            };
            self.directive(&line, level)?;
        }
        Ok(())
    }

    /// The listener that listener-scoped lines apply to now.
    fn current(&mut self) -> &mut Draft {
        self.listeners.last_mut().unwrap_or(&mut self.default)
    }

    /// Marks the default listener as wanted, when no `listener` line has come yet (a
    /// listener-scoped setting then applies to it).
    fn touch_default(&mut self, line: usize) {
        if self.listeners.is_empty() {
            self.use_default(line);
        }
    }

    /// Marks the default listener as wanted (`port` and `bind_address` do, wherever they are).
    fn use_default(&mut self, line: usize) {
        if !self.default.used {
            self.default.used = true;
            self.default.line = line;
        }
    }

    fn directive(&mut self, l: &Line<'_>, level: usize) -> Result<(), Error> {
        let w = &mut self.warnings;
        match l.name {
            "listener" => {
                let mut words = l.rest.split_ascii_whitespace();
                let Some(port) = words.next() else {
                    return Err(l.error("listener needs a port, e.g. `listener 1883`"));
                };
                let host = words.next().filter(|h| !h.starts_with('#'));
                if port == "0" {
                    let Some(path) = host else {
                        return Err(l.error("a listener on port 0 must name a Unix socket path"));
                    };
                    self.listeners.push(Draft {
                        port: Some(0),
                        host: Some(path.to_owned()),
                        unix: true,
                        line: l.no,
                        ..Draft::default()
                    });
                    return Ok(());
                }
                let port = l.port(port)?;
                self.listeners.push(Draft {
                    port: Some(port),
                    host: host.map(str::to_owned),
                    line: l.no,
                    ..Draft::default()
                });
            }
            "port" => {
                let port = l.word(w)?;
                let port = l.port(port)?;
                self.default.port = Some(port);
                self.use_default(l.no);
            }
            "bind_address" => {
                let host = l.string()?.to_owned();
                self.default.host = Some(host);
                self.use_default(l.no);
            }
            "socket_domain" => {
                let domain = match l.word(w)? {
                    "ipv4" => Domain::V4,
                    "ipv6" => Domain::V6,
                    other => {
                        return Err(l.error(format!(
                            "socket_domain expects ipv4 or ipv6, not \"{other}\""
                        )));
                    }
                };
                self.current().domain = Some(domain);
                self.touch_default(l.no);
            }
            "protocol" => match l.word(w)? {
                "mqtt" => {
                    self.current().websockets = false;
                    self.touch_default(l.no);
                }
                "websockets" => {
                    self.current().websockets = true;
                    self.touch_default(l.no);
                }
                other => {
                    return Err(l.error(format!(
                        "protocol expects mqtt or websockets, not \"{other}\""
                    )));
                }
            },
            "http_dir" => {
                l.string()?;
                return Err(l.error(
                    "http_dir (files served over HTTP beside WebSockets) is not supported; \
                     serve them from a web server",
                ));
            }
            "bind_interface" => {
                let name = l.string()?;
                return Err(l.error(format!(
                    "bind_interface is not supported yet; give the address of {name} to \
                     `listener PORT ADDRESS` instead"
                )));
            }
            "mount_point" => {
                let v = l.string()?;
                if self.listeners.is_empty() {
                    // As Mosquitto.
                    return Err(l.error("mount_point needs a `listener` line before it"));
                }
                if !tinsel_codec::topic::valid_topic_name(v) || v.starts_with('$') {
                    return Err(l.error(format!(
                        "mount_point must be a topic without wildcards (+, #) that does not \
                         start with $, not \"{v}\""
                    )));
                }
                self.current().mount_point = Some(v.to_owned());
            }
            "accept_protocol_versions" => {
                let mut versions = Vec::new();
                for v in l.string()?.split(',').map(str::trim) {
                    versions.push(match v {
                        "3" => crate::config::MqttVersion::V31,
                        "4" => crate::config::MqttVersion::V311,
                        "5" => crate::config::MqttVersion::V5,
                        other => {
                            return Err(l.error(format!(
                                "accept_protocol_versions takes 3, 4 and 5 separated by \
                                 commas (3.1, 3.1.1 and 5.0), not \"{other}\""
                            )));
                        }
                    });
                }
                self.touch_default(l.no);
                self.current().protocols = versions;
            }
            "certfile" | "keyfile" | "cafile" | "capath" => {
                let v = Some(PathBuf::from(l.string()?));
                self.touch_default(l.no);
                let cur = self.current();
                match l.name {
                    "certfile" => cur.certfile = v,
                    "keyfile" => cur.keyfile = v,
                    "cafile" => cur.cafile = v,
                    _ => cur.capath = v,
                }
            }
            "require_certificate" | "use_identity_as_username" | "use_subject_as_username" => {
                let v = l.boolean(w)?;
                self.touch_default(l.no);
                let cur = self.current();
                match l.name {
                    "require_certificate" => cur.require_certificate = v,
                    "use_identity_as_username" => cur.use_identity_as_username = v,
                    _ => cur.use_subject_as_username = v,
                }
            }
            "tls_version" => {
                let v = match l.word(w)? {
                    v @ ("tlsv1.2" | "tlsv1.3") => v,
                    "tlsv1.1" => {
                        w.push(l.warning(
                            "tls_version tlsv1.1: TLS 1.1 is not offered (rustls speaks 1.2 \
                             and 1.3); the lowest version is TLS 1.2",
                        ));
                        "tlsv1.2"
                    }
                    other => {
                        return Err(l.error(format!(
                            "tls_version expects tlsv1.3, tlsv1.2 or tlsv1.1, not \"{other}\""
                        )));
                    }
                };
                self.touch_default(l.no);
                self.current().tls_version = Some(v.to_owned());
            }
            name if TLS_REFUSED.contains(&name) => {
                l.string()?;
                return Err(l.error(format!(
                    "{name} is not supported: Tinsel's TLS (rustls) cannot honour it, and \
                     ignoring it would make the listener less safe than the file asks; \
                     remove it"
                )));
            }
            name if TLS_IGNORED.contains(&name) => {
                l.string()?;
                w.push(l.warning(format!(
                    "{name} is ignored: rustls chooses among its own cipher suites and key \
                     exchanges, all of them strong"
                )));
            }
            "max_connections" => {
                let v = l.int(w)?;
                if v == 0 {
                    return Err(l.error(
                        "max_connections 0 would refuse every client; use -1 for no limit",
                    ));
                }
                let v = (v > 0).then(|| usize::try_from(v).unwrap_or(usize::MAX));
                if v.is_some() {
                    self.touch_default(l.no);
                }
                self.current().max_connections = v;
            }
            "max_topic_alias" => {
                let v = l.int_in(w, 0, 65_535)?;
                self.current().max_topic_alias = Some(v as u16);
            }
            "clientid_prefixes" => {
                let v = l.string()?;
                self.access.clientid_prefixes = vec![v.to_owned()];
            }
            "auto_id_prefix" => {
                let v = l.string()?;
                if self.access.per_listener_settings == Some(true) && !self.listeners.is_empty() {
                    w.push(l.warning(
                        "auto_id_prefix: Tinsel has one prefix for the whole broker; this \
                         one applies to every listener",
                    ));
                }
                self.access.auto_id_prefix = Some(v.to_owned());
            }
            "retain_available" => self.mqtt.retain_available = l.boolean(w)?,
            "upgrade_outgoing_qos" => self.mqtt.upgrade_outgoing_qos = l.boolean(w)?,
            "max_qos" | "maximum_qos" => {
                let v = l.int_in(w, 0, 2)?;
                if v != 2 {
                    self.touch_default(l.no);
                    let w = &mut self.warnings;
                    w.push(l.warning(format!(
                        "{}: Tinsel does not limit QoS per listener yet; QoS up to 2 is \
                         accepted",
                        l.name
                    )));
                }
            }

            "max_keepalive" => {
                self.limits.max_keepalive = Some(l.int_in(w, 0, 65_535)? as u16);
            }
            "max_packet_size" => {
                let v = l
                    .int_in(w, 20, 268_435_455)
                    .map_err(|_| l.error("max_packet_size must be from 20 to 268435455 bytes"))?;
                self.limits.max_packet_size = Some(v as u32);
            }
            "message_size_limit" => {
                let v = l.int_in(w, 0, 268_435_455)?;
                if v > 0 {
                    w.push(l.warning(format!(
                        "message_size_limit {v} is not enforced: Tinsel limits whole packets, \
                         not payloads; set max_packet_size to bound message sizes"
                    )));
                }
            }
            "max_inflight_messages" => {
                let v = l.int(w)?;
                if v > 65_535 {
                    return Err(l.error("max_inflight_messages must be at most 65535"));
                }
                // 0 (and anything negative) means no limit, which is MQTT 5's largest
                // Receive Maximum.
                let v = if v <= 0 { 65_535 } else { v as u16 };
                self.limits.max_inflight_messages = Some(v);
            }
            "max_queued_messages" => {
                let v = l.int(w)?;
                let v = if v <= 0 { NO_LIMIT } else { v as usize };
                self.limits.max_queued_messages = Some(v);
            }
            "max_queued_bytes" => {
                let v = l.int(w)?;
                self.limits.max_queued_bytes = Some(v.max(0) as usize);
            }
            "sys_interval" => {
                self.sys_interval = Some(l.int_in(w, 0, 65_535)? as u64);
            }
            "log_type" => {
                let level = match l.word(w)? {
                    "none" => {
                        self.log_level = Some(Level::Off);
                        return Ok(());
                    }
                    "error" => Level::Error,
                    "warning" => Level::Warn,
                    "notice" | "information" => Level::Info,
                    "debug" | "all" => Level::Debug,
                    // Categories Tinsel's log has no counterpart for; the level stays.
                    "subscribe" | "unsubscribe" | "websockets" | "internal" => return Ok(()),
                    other => {
                        return Err(l.error(format!(
                            "log_type expects one of none, error, warning, notice, \
                             information, debug, subscribe, unsubscribe, websockets, all; \
                             not \"{other}\""
                        )));
                    }
                };
                self.log_level = Some(self.log_level.unwrap_or(Level::Off).max(level));
            }
            "log_dest" => match l.rest.split_ascii_whitespace().next().unwrap_or_default() {
                "stderr" => {
                    self.log_stderr = true;
                    if let Some(file) = &self.log_file {
                        self.warnings.push(l.warning(format!(
                            "log_dest stderr is ignored: Tinsel logs to one destination, \
                             the file {}",
                            file.display()
                        )));
                    }
                }
                "none" => self.log_none = true,
                dest @ ("stdout" | "syslog" | "topic" | "dlt") => {
                    self.warnings.push(l.warning(format!(
                        "log_dest {dest} is ignored: Tinsel logs to standard error"
                    )));
                }
                "file" => {
                    let path = l.rest.trim().strip_prefix("file").unwrap_or("").trim();
                    if path.is_empty() {
                        return Err(l.error("log_dest file needs a file name"));
                    }
                    if let Some(old) = &self.log_file {
                        self.warnings.push(l.warning(format!(
                            "log_dest file {} is replaced: Tinsel logs to one file, {path}",
                            old.display()
                        )));
                    } else if self.log_stderr {
                        self.warnings.push(l.warning(format!(
                            "log_dest stderr is dropped: Tinsel logs to one destination, \
                             the file {path}"
                        )));
                    }
                    self.log_file = Some(path.into());
                }
                "" => return Err(l.error("log_dest needs a value")),
                other => {
                    return Err(l.error(format!(
                        "log_dest expects stdout, stderr, syslog, topic, file, dlt or none, \
                         not \"{other}\""
                    )));
                }
            },
            "allow_zero_length_clientid" => {
                let v = l.boolean(w)?;
                self.access_line(l.no);
                if self.access.per_listener_settings == Some(true) {
                    self.touch_default(l.no);
                    self.current().access.allow_zero_length_clientid = Some(v);
                } else {
                    self.access.allow_zero_length_clientid = Some(v);
                }
            }
            "user" => {
                // Tinsel never changes user: it is run as the user it should run as.
                l.string()?;
            }

            // Kept for the access and durability layers (see KEPT).
            "per_listener_settings" => {
                let v = l.boolean(w)?;
                if let (true, Some(first)) = (v, self.first_access_line) {
                    return Err(l.error(format!(
                        "per_listener_settings must come before any access setting (line \
                         {first} has one)"
                    )));
                }
                self.access.per_listener_settings = Some(v);
            }
            "allow_anonymous" => {
                let v = l.boolean(w)?;
                self.access_line(l.no);
                if self.access.per_listener_settings == Some(true) {
                    self.current().access.allow_anonymous = Some(v);
                } else {
                    self.access.allow_anonymous = Some(v);
                }
            }
            "password_file" | "acl_file" => {
                let v = PathBuf::from(l.string()?);
                self.access_line(l.no);
                let per_listener = self.access.per_listener_settings == Some(true);
                if per_listener {
                    self.touch_default(l.no);
                }
                let slot = match (per_listener, l.name) {
                    (true, "password_file") => &mut self.current().access.password_file,
                    (true, _) => &mut self.current().access.acl_file,
                    (false, "password_file") => &mut self.access.password_file,
                    (false, _) => &mut self.access.acl_file,
                };
                if slot.is_some() {
                    return Err(l.error(format!("{} is given twice", l.name)));
                }
                *slot = Some(v);
            }
            "persistence" => {
                let v = l.boolean(w)?;
                self.persistence.enabled = Some(v);
            }
            "persistence_location" => {
                let v = PathBuf::from(l.string()?);
                if self.persistence.location.is_some() {
                    return Err(l.error("persistence_location is given twice"));
                }
                self.persistence.location = Some(v);
            }
            "persistence_file" => {
                let v = l.string()?.to_owned();
                if self.persistence.file.is_some() {
                    return Err(l.error("persistence_file is given twice"));
                }
                self.persistence.file = Some(v);
            }

            "include_dir" => {
                let dir = l.string()?;
                if level > 0 {
                    // As Mosquitto: only the main file includes.
                    w.push(l.warning("include_dir is read from the main file only; ignored"));
                    return Ok(());
                }
                self.include_dir(l, Path::new(dir))?;
            }
            "connection" => {
                let name = l.word(w)?;
                if self.bridges.iter().any(|(b, _, _)| b.name == name) {
                    return Err(l.error(format!("a bridge named \"{name}\" is configured already")));
                }
                self.bridge = Some(self.bridges.len());
                let b = crate::bridge::BridgeConfig::new(name);
                self.bridges.push((b, l.file.to_owned(), l.no));
            }
            name if BRIDGE.contains(&name) => {
                let Some(i) = self.bridge else {
                    return Err(l.error(format!(
                        "{name} configures a bridge: put it after a `connection NAME` line"
                    )));
                };
                match crate::bridge::directive(&mut self.bridges[i].0, name, l.rest) {
                    Ok(crate::bridge::Read::Done) => {}
                    Ok(crate::bridge::Read::Warn(m)) => w.push(l.warning(m)),
                    Err(m) => return Err(l.error(m)),
                }
            }
            name if IGNORED.contains(&name)
                || name.starts_with("auth_opt_")
                || name.starts_with("plugin_opt_") =>
            {
                w.push(l.warning(format!("Tinsel does not support {name} yet; ignored")));
            }
            name => {
                return Err(l.error(format!(
                    "unknown directive \"{name}\" (neither Tinsel nor Mosquitto knows it)"
                )));
            }
        }
        Ok(())
    }

    fn access_line(&mut self, line: usize) {
        self.first_access_line.get_or_insert(line);
    }

    fn include_dir(&mut self, l: &Line<'_>, dir: &Path) -> Result<(), Error> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| l.error(format!("cannot read include_dir {}: {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
            .collect();
        // Mosquitto's order: alphabetical, an upper-case letter before its lower case.
        files.sort_by_key(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .chars()
                .map(|c| (c.to_ascii_lowercase(), c.is_ascii_lowercase()))
                .collect::<Vec<_>>()
        });
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| l.error(format!("cannot read {}: {e}", file.display())))?;
            self.file(&text, &file, 1)?;
        }
        Ok(())
    }

    fn finish(mut self, file: &Path) -> Result<(Config, Vec<Warning>), Error> {
        let mut drafts = std::mem::take(&mut self.listeners);
        if self.default.used {
            // Mosquitto adds the default listener after the others.
            drafts.push(std::mem::take(&mut self.default));
        } else if !self.default.access.is_empty() {
            self.warnings.push(Warning::whole_file(
                file,
                "access settings before the first listener apply to the default listener, \
                 which this file does not start (set `port` to start it); Mosquitto \
                 ignores them too",
            ));
        }

        let mut limits = Limits {
            max_inflight: self.limits.max_inflight_messages.unwrap_or(20),
            max_queued_bytes: self.limits.max_queued_bytes.unwrap_or(0),
            ..Limits::default()
        };
        if let Some(v) = self.limits.max_keepalive {
            limits.max_keep_alive = v;
        }
        if let Some(v) = self.limits.max_packet_size {
            limits.max_packet_size = v;
        }
        if let Some(v) = self.limits.max_queued_messages {
            limits.max_queued_messages = v;
        }

        // Mosquitto has no cap over all listeners; Tinsel's (limits.max_connections) is
        // raised to what the listeners' own caps add up to, if that is more.
        let capped: usize = drafts
            .iter()
            .filter_map(|d| d.max_connections)
            .fold(0usize, usize::saturating_add);
        limits.max_connections = limits.max_connections.max(capped);

        // Mosquitto 2: anonymous clients are refused unless said otherwise, except in its
        // local-only mode (no listener configured). Per listener, each listener's own
        // setting decides.
        if !drafts.is_empty() {
            if self.access.per_listener_settings != Some(true) {
                self.access.allow_anonymous.get_or_insert(false);
            } else {
                for d in &mut drafts {
                    d.access.allow_anonymous.get_or_insert(false);
                }
            }
        }
        for d in &drafts {
            let tls = d.certfile.is_some()
                || d.keyfile.is_some()
                || d.cafile.is_some()
                || d.capath.is_some();
            if d.unix && (tls || d.websockets) {
                return Err(Error::ConfigLine {
                    file: file.to_owned(),
                    line: d.line,
                    message: "a Unix socket listener speaks plain MQTT: TLS and WebSocket \
                              settings do not apply to it"
                        .into(),
                });
            }
            if tls && (d.certfile.is_none() || d.keyfile.is_none()) {
                return Err(Error::ConfigLine {
                    file: file.to_owned(),
                    line: d.line,
                    message: "this listener has TLS settings but not both certfile and keyfile, \
                              which TLS needs"
                        .into(),
                });
            }
        }
        let listeners: Vec<ListenerConfig> = if drafts.is_empty() {
            // Mosquitto 2 with no listener configured listens on the local host only.
            vec![ListenerConfig::default()]
        } else {
            drafts
                .into_iter()
                .map(|d| ListenerConfig {
                    transport: match (
                        d.unix,
                        d.websockets,
                        d.certfile.is_some()
                            || d.keyfile.is_some()
                            || d.cafile.is_some()
                            || d.capath.is_some(),
                    ) {
                        (true, _, _) => Transport::Unix,
                        (false, false, false) => Transport::Tcp,
                        (false, false, true) => Transport::Tls,
                        (false, true, false) => Transport::WebSocket,
                        (false, true, true) => Transport::WebSocketTls,
                    },
                    // Mosquitto's WebSocket listeners serve MQTT on every path.
                    path: d.websockets.then(|| crate::websocket::ANY_PATH.to_owned()),
                    certfile: d.certfile,
                    keyfile: d.keyfile,
                    cafile: d.cafile,
                    capath: d.capath,
                    require_certificate: d.require_certificate,
                    use_identity_as_username: d.use_identity_as_username,
                    use_subject_as_username: d.use_subject_as_username,
                    tls_version: d.tls_version,
                    alpn: Vec::new(),
                    proxy_protocol: false,
                    address: d.host.unwrap_or_else(|| {
                        match d.domain {
                            Some(Domain::V6) => "::",
                            // No bind address: every interface (IPv4 only, see the docs).
                            _ => "0.0.0.0",
                        }
                        .to_owned()
                    }),
                    port: d.port.unwrap_or(1883),
                    max_connections: d.max_connections,
                    protocols: d.protocols,
                    mount_point: d.mount_point,
                    max_topic_alias: d.max_topic_alias,
                    access: d.access,
                })
                .collect()
        };

        let level = if self.log_none {
            Level::Off
        } else {
            self.log_level.unwrap_or(Level::Info)
        };
        let config = Config {
            listeners,
            capture: None,
            sys_interval: self.sys_interval.unwrap_or(10),
            limits,
            logging: LoggingConfig {
                level: level.filter().to_owned(),
                file: self.log_file,
                ..LoggingConfig::default()
            },
            access: self.access,
            mqtt: self.mqtt,
            persistence: self.persistence,
            http: Default::default(),
            bridges: Vec::with_capacity(self.bridges.len()),
        };
        let mut config = config;
        for (b, file, line) in self.bridges {
            // Named by its `connection` line: what is missing is missing there (and a
            // local_clientid already used is found at the second bridge).
            config.bridges.push(b);
            crate::bridge::check_all(&config.bridges).map_err(|message| Error::ConfigLine {
                file,
                line,
                message,
            })?;
        }
        Ok((config, self.warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Config, Vec<Warning>) {
        parse_str(text, Path::new("m.conf")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error's `FILE:LINE: message`.
    fn error(text: &str) -> String {
        parse_str(text, Path::new("m.conf"))
            .unwrap_err()
            .to_string()
    }

    fn warned(warnings: &[Warning], line: usize, part: &str) -> bool {
        warnings
            .iter()
            .any(|w| w.line == line && w.message.contains(part))
    }

    #[test]
    fn detects_formats_by_content() {
        use crate::config_file::Format;
        assert_eq!(Format::detect("listener 1883\n"), Format::Mosquitto);
        assert_eq!(
            Format::detect("# c\n\nport 1883\nuser x\n"),
            Format::Mosquitto
        );
        assert_eq!(Format::detect("sys_interval = 5\n"), Format::Toml);
        assert_eq!(Format::detect("[[listeners]]\nport = 1\n"), Format::Toml);
        assert_eq!(Format::detect(""), Format::Toml);
        // A TOML typo stays TOML, so that TOML's error is shown.
        assert_eq!(Format::detect("port = 1883\n"), Format::Toml);
        assert_eq!(Format::detect("Port 1883\n"), Format::Toml);
    }

    #[test]
    fn no_listener_is_localhost_with_mosquitto_defaults() {
        let (c, w) = parse("sys_interval 3\n");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].address, "127.0.0.1");
        assert_eq!(c.listeners[0].port, 1883);
        assert_eq!(c.sys_interval, 3);
        assert_eq!(c.limits.max_inflight, 20);
        assert_eq!(c.limits.max_queued_messages, 1000);
        assert_eq!(c.limits.max_queued_bytes, 0);
        assert_eq!(c.limits.max_keep_alive, 65_535);
        assert_eq!(c.logging.level, "info");
    }

    #[test]
    fn listeners_each_with_their_settings() {
        let (c, w) = parse(
            "listener 1884 127.0.0.2\nmax_connections 5\nlistener 1885 # comment\n\
             socket_domain ipv6\nmax_connections 7\nlistener 1886\nsocket_domain ipv4\n\
             max_connections 8\nprotocol mqtt\n",
        );
        let got: Vec<_> = c
            .listeners
            .iter()
            .map(|l| (l.address.as_str(), l.port))
            .collect();
        assert_eq!(got, [("127.0.0.2", 1884), ("::", 1885), ("0.0.0.0", 1886)]);
        // Each listener its own cap; the broker's stays at Tinsel's default.
        let caps: Vec<_> = c.listeners.iter().map(|l| l.max_connections).collect();
        assert_eq!(caps, [Some(5), Some(7), Some(8)]);
        assert_eq!(c.limits.max_connections, Limits::default().max_connections);
        assert!(w.is_empty(), "{w:?}");
        // Caps that add up to more raise the broker's.
        let (c, _) = parse(
            "listener 1
max_connections 9000
listener 2
max_connections 9000
",
        );
        assert_eq!(c.limits.max_connections, 18_000);
    }

    #[test]
    fn default_listener_from_port_and_bind_address() {
        let (c, _) = parse("port 2883\nbind_address 127.0.0.3\n");
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(
            (c.listeners[0].address.as_str(), c.listeners[0].port),
            ("127.0.0.3", 2883)
        );
        // The default listener comes after explicit ones, on every address.
        let (c, _) = parse("port 2883\nlistener 2884 127.0.0.1\n");
        let got: Vec<_> = c
            .listeners
            .iter()
            .map(|l| (l.address.as_str(), l.port))
            .collect();
        assert_eq!(got, [("127.0.0.1", 2884), ("0.0.0.0", 2883)]);
        // bind_address alone: port 1883.
        let (c, _) = parse("bind_address localhost\n");
        assert_eq!(c.listeners[0].port, 1883);
        // -1 is no limit of the listener's own.
        let (c, w) = parse("listener 1\nmax_connections 3\nlistener 2\nmax_connections -1\n");
        assert_eq!(c.listeners[0].max_connections, Some(3));
        assert_eq!(c.listeners[1].max_connections, None);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn general_limits() {
        let (c, w) = parse(
            "max_keepalive 60\nmax_packet_size 1000\nmax_inflight_messages 5\n\
             max_queued_messages 7\nmax_queued_bytes 9000\nlistener 1\nmax_topic_alias 4\n",
        );
        assert!(w.is_empty(), "{w:?}");
        let l = &c.limits;
        assert_eq!(
            (
                l.max_keep_alive,
                l.max_packet_size,
                l.max_inflight,
                l.max_queued_messages,
                l.max_queued_bytes,
                l.topic_alias_maximum
            ),
            (60, 1000, 5, 7, 9000, 10)
        );
        assert_eq!(c.listeners[0].max_topic_alias, Some(4));
    }

    #[test]
    fn listener_and_client_id_directives() {
        let (c, w) = parse(
            "clientid_prefixes dev-\nauto_id_prefix gen-\nretain_available false\n\
             upgrade_outgoing_qos true\nlistener 1\nmount_point tenant/a/\n\
             accept_protocol_versions 4, 5\nlistener 2\n",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.access.clientid_prefixes, ["dev-"]);
        assert_eq!(c.access.auto_id_prefix.as_deref(), Some("gen-"));
        assert!(!c.mqtt.retain_available && c.mqtt.upgrade_outgoing_qos);
        let l = &c.listeners[0];
        assert_eq!(l.mount_point.as_deref(), Some("tenant/a/"));
        use crate::config::MqttVersion::{V5, V311};
        assert_eq!(l.protocols, [V311, V5]);
        assert_eq!(c.listeners[1].mount_point, None);
        assert!(c.listeners[1].protocols.is_empty());
        let back = Config::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(back.listeners[0].mount_point, l.mount_point);
        assert_eq!(back.access.clientid_prefixes, ["dev-"]);
        for (text, part) in [
            ("mount_point a/\n", "needs a `listener` line before it"),
            ("listener 1\nmount_point a/#\n", "mount_point must be"),
            ("listener 1\naccept_protocol_versions 4,6\n", "not \"6\""),
            ("retain_available maybe\n", "expects true or false"),
        ] {
            let e = error(text);
            assert!(e.contains(part), "{text}: {e}");
        }
    }

    #[test]
    fn zero_means_no_limit_as_in_mosquitto() {
        let (c, _) = parse("max_queued_messages 0\nmax_inflight_messages 0\nmax_queued_bytes -3\n");
        assert_eq!(c.limits.max_queued_messages, NO_LIMIT);
        assert_eq!(c.limits.max_inflight, 65_535);
        assert_eq!(c.limits.max_queued_bytes, 0);
        let (c, _) = parse("max_inflight_messages 65535\nmax_keepalive 0\n");
        assert_eq!(c.limits.max_inflight, 65_535);
        assert_eq!(c.limits.max_keep_alive, 0);
        // And the TOML printed for it reads back.
        let back = Config::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(back.to_toml(), c.to_toml());
    }

    #[test]
    fn message_size_limit_is_warned_not_enforced() {
        let (c, w) = parse("message_size_limit 100\n");
        assert!(warned(&w, 1, "not enforced"), "{w:?}");
        assert_eq!(c.limits.max_packet_size, Limits::default().max_packet_size);
        let (_, w) = parse("message_size_limit 0\n");
        assert!(w.is_empty());
        assert_eq!(
            error("message_size_limit 268435456"),
            "m.conf:1: message_size_limit must be between 0 and 268435455, not 268435456"
        );
    }

    #[test]
    fn logging() {
        let (c, _) = parse("log_type error\nlog_type warning\nlog_type subscribe\n");
        assert_eq!(c.logging.level, "warn");
        let (c, _) = parse("log_type all\n");
        assert_eq!(c.logging.level, "debug");
        let (c, _) = parse("log_type information\nlog_type none\n");
        assert_eq!(c.logging.level, "off");
        let (c, w) = parse("log_dest stderr\nlog_dest file /var/log/m.log\nlog_dest syslog\n");
        assert_eq!(c.logging.level, "info");
        assert_eq!(c.logging.file.as_deref(), Some(Path::new("/var/log/m.log")));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(warned(&w, 2, "log_dest stderr is dropped"));
        assert!(warned(&w, 3, "log_dest syslog is ignored"));
        // Debian's stock mosquitto.conf.
        let (c, w) = parse("log_dest file /var/log/mosquitto/mosquitto.log\n");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.logging.file.as_deref(),
            Some(Path::new("/var/log/mosquitto/mosquitto.log"))
        );
        let (c, _) = parse("log_dest none\nlog_type debug\n");
        assert_eq!(c.logging.level, "off");
        assert_eq!(
            error("log_type loud"),
            "m.conf:1: log_type expects one of none, error, warning, notice, information, debug, subscribe, unsubscribe, websockets, all; not \"loud\""
        );
        assert!(error("\n\nlog_dest file").starts_with("m.conf:3: log_dest file needs"));
    }

    #[test]
    fn accepted_without_effect() {
        let (_, w) = parse(
            "user mosquitto\nallow_zero_length_clientid true\nrequire_certificate false\nuse_identity_as_username false\nuse_subject_as_username 0\n",
        );
        assert!(w.is_empty(), "{w:?}");
        let (c, w) = parse("allow_zero_length_clientid false\n");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.access.allow_zero_length_clientid, Some(false));
    }

    #[test]
    fn kept_directives_are_stored_raw_with_a_warning() {
        let (c, w) = parse(
            "listener 1883\nallow_anonymous false\npassword_file /etc/m/passwd\n\
             acl_file /etc/m/a cl\npersistence true\npersistence_location /var/lib/m/\n",
        );
        assert_eq!(c.access.allow_anonymous, Some(false));
        assert_eq!(c.access.password_file, Some(PathBuf::from("/etc/m/passwd")));
        assert_eq!(c.access.acl_file, Some(PathBuf::from("/etc/m/a cl")));
        assert_eq!(c.persistence.enabled, Some(true));
        assert_eq!(c.persistence.location, Some(PathBuf::from("/var/lib/m/")));
        // Access and persistence settings are acted on: read without a warning.
        for line in 2..=6 {
            assert!(!w.iter().any(|x| x.line == line), "line {line}: {w:?}");
        }
        let (c, w) = parse(
            "persistence_file kept.db
",
        );
        assert_eq!(c.persistence.file.as_deref(), Some("kept.db"));
        assert!(w.is_empty(), "{w:?}");
        // Mosquitto 2 refuses anonymous clients once a listener is configured...
        let (c, _) = parse(
            "listener 1883
",
        );
        assert_eq!(c.access.allow_anonymous, Some(false));
        // ...but not in its local-only mode, without any listener.
        let (c, _) = parse(
            "sys_interval 5
",
        );
        assert_eq!(c.access.allow_anonymous, None);
        assert_eq!(
            error("password_file a\npassword_file b\n"),
            "m.conf:2: password_file is given twice"
        );
    }

    #[test]
    fn per_listener_access() {
        let (c, _) = parse(
            "per_listener_settings true\nlistener 1\nallow_anonymous true\n\
             listener 2\npassword_file /p\nallow_anonymous false\n",
        );
        assert_eq!(c.access.per_listener_settings, Some(true));
        assert_eq!(c.access.allow_anonymous, None);
        assert_eq!(c.listeners[0].access.allow_anonymous, Some(true));
        assert_eq!(
            c.listeners[1].access.password_file,
            Some(PathBuf::from("/p"))
        );
        assert_eq!(c.listeners[1].access.allow_anonymous, Some(false));
        assert_eq!(
            error("allow_anonymous true\nper_listener_settings true\n"),
            "m.conf:2: per_listener_settings must come before any access setting (line 1 has one)"
        );
        let back = Config::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(back.listeners[1].access, c.listeners[1].access);
    }

    #[test]
    fn refused_listener_settings_name_the_line() {
        let cases = [
            ("http_dir /srv/www", "http_dir"),
            ("crlfile /crl.pem", "crlfile is not supported"),
            ("psk_hint x", "psk_hint is not supported"),
            ("tls_engine pkcs11", "tls_engine is not supported"),
            (
                "tls_version sslv3",
                "tls_version expects tlsv1.3, tlsv1.2 or tlsv1.1",
            ),
            ("bind_interface eth0", "bind_interface is not supported yet"),
        ];
        for (line, part) in cases {
            let e = error(&format!("# x\nlistener 1883\n{line}\n"));
            assert!(e.starts_with("m.conf:3: "), "{line}: {e}");
            assert!(e.contains(part), "{line}: {e}");
        }
        let e = error("listener 0\n");
        assert!(e.contains("must name a Unix socket path"), "{e}");
        let e = error("listener 0 /run/m.sock\nprotocol websockets\n");
        assert!(
            e.starts_with("m.conf:1: a Unix socket listener speaks plain MQTT"),
            "{e}"
        );
        let (c, _) = parse("listener 0 /run/m.sock\n");
        assert_eq!(c.listeners[0].transport, Transport::Unix);
        assert_eq!(c.listeners[0].address, "/run/m.sock");
    }

    #[test]
    fn tls_and_websocket_listeners() {
        let (c, w) = parse(
            "listener 8883\ncertfile /s.crt\nkeyfile /s.key\ncafile /ca.crt\n\
             require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.3\n\
             ciphers HIGH\nlistener 8080\nprotocol websockets\n\
             listener 8081\nprotocol websockets\ncertfile /s.crt\nkeyfile /s.key\n\
             capath /cas\nuse_subject_as_username true\ntls_version tlsv1.1\n",
        );
        let [tls, ws, wss] = &c.listeners[..] else {
            panic!("{:?}", c.listeners);
        };
        assert_eq!(tls.transport, Transport::Tls);
        assert_eq!(tls.certfile.as_deref(), Some(Path::new("/s.crt")));
        assert_eq!(tls.keyfile.as_deref(), Some(Path::new("/s.key")));
        assert_eq!(tls.cafile.as_deref(), Some(Path::new("/ca.crt")));
        assert!(tls.require_certificate && tls.use_identity_as_username);
        assert_eq!(tls.tls_version.as_deref(), Some("tlsv1.3"));
        assert!(warned(&w, 8, "ciphers is ignored"), "{w:?}");
        assert_eq!(ws.transport, Transport::WebSocket);
        assert_eq!(ws.path.as_deref(), Some("*"), "Mosquitto serves every path");
        assert_eq!(wss.transport, Transport::WebSocketTls);
        assert_eq!(wss.capath.as_deref(), Some(Path::new("/cas")));
        assert!(wss.use_subject_as_username && !wss.use_identity_as_username);
        assert_eq!(wss.tls_version.as_deref(), Some("tlsv1.2"));
        assert!(warned(&w, 17, "TLS 1.1 is not offered"), "{w:?}");
        // Round trip through TOML.
        let back = Config::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(back.listeners[0].transport, Transport::Tls);
        assert_eq!(back.listeners[2].capath, wss.capath);
        assert_eq!(back.listeners[1].path, ws.path);
        // A TLS listener without its key is an error naming the listener's line.
        let e = error("listener 1\nlistener 8883\ncafile /ca.crt\ncertfile /s.crt\n");
        assert!(e.starts_with("m.conf:2: "), "{e}");
        assert!(e.contains("not both certfile and keyfile"), "{e}");
    }

    #[test]
    fn malformed_values_name_the_line() {
        let cases = [
            (
                "listener 70000",
                "the port must be a number from 1 to 65535, not \"70000\"",
            ),
            ("listener abc", "not \"abc\""),
            ("listener", "listener needs a port"),
            ("listener 0", "must name a Unix socket path"),
            ("port 0", "port: the port must be"),
            ("protocol mqttsn", "protocol expects mqtt or websockets"),
            ("socket_domain ipv5", "socket_domain expects ipv4 or ipv6"),
            (
                "max_keepalive 70000",
                "max_keepalive must be between 0 and 65535",
            ),
            (
                "max_keepalive soon",
                "max_keepalive expects a whole number, not \"soon\"",
            ),
            ("max_packet_size 10", "max_packet_size must be from 20"),
            ("max_inflight_messages 65536", "at most 65535"),
            ("max_queued_messages x", "expects a whole number"),
            ("max_queued_bytes 1.5", "expects a whole number"),
            ("max_connections 0", "use -1 for no limit"),
            (
                "sys_interval -1",
                "sys_interval must be between 0 and 65535",
            ),
            (
                "allow_anonymous yes",
                "allow_anonymous expects true or false, not \"yes\"",
            ),
            ("allow_zero_length_clientid", "needs a value"),
            ("persistence maybe", "expects true or false"),
            ("user", "user needs a value"),
            ("max_qos 3", "between 0 and 2"),
            ("lisener 1883", "unknown directive \"lisener\""),
        ];
        for (line, part) in cases {
            let e = error(&format!("sys_interval 10\n\n{line}\n"));
            assert!(e.starts_with("m.conf:3: "), "{line}: {e}");
            assert!(e.contains(part), "{line}: {e}");
        }
    }

    #[test]
    fn unknown_to_tinsel_is_a_warning_naming_the_line() {
        let (c, w) = parse(
            "autosave_interval 10\npid_file /run/m.pid\nplugin /x.so\nplugin_opt_a b\n\
             connection b1\naddress 10.0.0.1:1883\ntopic # both 0\nlistener 1\n\
             max_qos 1\nidle_timeout 5\nport 1883 extra\n",
        );
        assert_eq!(c.listeners.len(), 2);
        for (line, part) in [
            (1, "autosave_interval"),
            (2, "pid_file"),
            (3, "plugin"),
            (4, "plugin_opt_a"),
            (9, "does not limit QoS"),
            (10, "lazy bridges"),
            (11, "\"extra\" and what follows are ignored"),
        ] {
            assert!(warned(&w, line, part), "line {line}: {w:?}");
        }
        // The bridge's own lines are read.
        assert!(
            !w.iter().any(|w| w.line == 5 || w.line == 6 || w.line == 7),
            "{w:?}"
        );
        assert_eq!(c.bridges.len(), 1);
        assert_eq!(
            w[0].to_string(),
            "m.conf:1: Tinsel does not support autosave_interval yet; ignored"
        );
    }

    #[test]
    fn include_dir_reads_conf_files_in_mosquitto_order() {
        let dir = std::env::temp_dir().join(format!("tinsel-conf-{}", std::process::id()));
        let inc = dir.join("conf.d");
        std::fs::create_dir_all(&inc).unwrap();
        std::fs::write(inc.join("b.conf"), "listener 3\n").unwrap();
        std::fs::write(inc.join("B.conf"), "listener 2\n").unwrap();
        std::fs::write(inc.join("01.conf"), "listener 1\n").unwrap();
        std::fs::write(inc.join("skip.txt"), "listener 9\n").unwrap();
        std::fs::write(inc.join("x.conf"), "\nmax_qos 7\n").unwrap();
        let main = dir.join("main.conf");
        let text = format!("include_dir {}\n", inc.display());
        let e = parse_str(&text, &main).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2: max_qos must be between 0 and 2, not 7",
                inc.join("x.conf").display()
            )
        );
        std::fs::remove_file(inc.join("x.conf")).unwrap();
        let (c, _) = parse_str(&text, &main).unwrap();
        let ports: Vec<u16> = c.listeners.iter().map(|l| l.port).collect();
        assert_eq!(ports, [1, 2, 3]);
        let e = parse_str("include_dir /nonexistent/dir\n", &main)
            .unwrap_err()
            .to_string();
        assert!(e.contains("main.conf:1: cannot read include_dir"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_kept_list_is_handled() {
        for name in KEPT {
            let e = parse_str(&format!("{name} ???\n"), Path::new("m.conf"));
            // Each is parsed (bad booleans are errors; strings are accepted), never
            // reported as unknown.
            if let Err(e) = e {
                assert!(!e.to_string().contains("unknown directive"), "{name}: {e}");
            }
        }
    }
}
