//! A bridge's settings: `[[bridges]]` in TOML, `connection NAME` and the lines after it in
//! `mosquitto.conf` (read by [`super::conf`]). The names are Mosquitto's, and so are the
//! defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::topics::{Direction, TopicRule};

/// One bridge to a remote broker. Only `name`, `addresses` and `topics` need setting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// The bridge's name (Mosquitto's `connection NAME`).
    #[serde(alias = "connection")]
    pub name: String,
    /// The remote broker, `host[:port]` (port 1883 when left out), and the addresses to
    /// fail over to, tried in turn after a failure.
    #[serde(alias = "address")]
    pub addresses: Vec<String>,
    /// What to carry: a table (`{ pattern, direction, qos, local_prefix, remote_prefix }`)
    /// or Mosquitto's line as a string (`"sensors/# out 1 local/ remote/"`).
    #[serde(default, alias = "topic")]
    pub topics: Vec<TopicLine>,
    /// Clean session on the remote broker (false: the remote keeps the bridge's
    /// subscriptions and queues its messages while it is away).
    #[serde(default)]
    pub cleansession: bool,
    /// Clean session of the bridge's session on this broker (default: `cleansession`).
    #[serde(default)]
    pub local_cleansession: Option<bool>,
    /// Keep alive towards the remote broker, seconds.
    #[serde(default = "default_keepalive")]
    pub keepalive_interval: u16,
    /// Client identifier on the remote broker (default: `HOSTNAME.NAME`).
    #[serde(default, alias = "clientid")]
    pub remote_clientid: Option<String>,
    /// Client identifier of the bridge's session here (default: `local.` + the remote one).
    #[serde(default)]
    pub local_clientid: Option<String>,
    /// User name on the remote broker.
    #[serde(default, alias = "username")]
    pub remote_username: Option<String>,
    /// Password on the remote broker.
    #[serde(default, alias = "password")]
    pub remote_password: Option<String>,
    /// TLS to the remote broker, trusting the CA certificates in this PEM file.
    #[serde(default)]
    pub bridge_cafile: Option<PathBuf>,
    /// TLS, trusting the CA certificates in this directory.
    #[serde(default)]
    pub bridge_capath: Option<PathBuf>,
    /// TLS client certificate (PEM) shown to the remote broker.
    #[serde(default)]
    pub bridge_certfile: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub bridge_keyfile: Option<PathBuf>,
    /// Do not check the remote certificate's host name. Testing only.
    #[serde(default)]
    pub bridge_insecure: bool,
    /// `tlsv1.2` or `tlsv1.3` (default: either).
    #[serde(default)]
    pub bridge_tls_version: Option<String>,
    /// ALPN protocol to offer.
    #[serde(default)]
    pub bridge_alpn: Option<String>,
    /// `mqttv311` (default), `mqttv31` or `mqttv50`.
    #[serde(default = "default_protocol")]
    pub bridge_protocol_version: String,
    /// Send the bridge bit in CONNECT (MQTT 3 only), so that a remote Mosquitto or Tinsel
    /// does not send back what the bridge forwards. A remote that refuses it is tried again
    /// without.
    #[serde(default = "yes")]
    pub try_private: bool,
    /// Publish the bridge's state, `1` connected and `0` not, retained, here and on the
    /// remote broker (the remote's through the bridge's will).
    #[serde(default = "yes")]
    pub notifications: bool,
    /// Publish the state on this broker only.
    #[serde(default)]
    pub notifications_local_only: bool,
    /// The state's topic (default: `$SYS/broker/connection/REMOTE_CLIENTID/state`).
    #[serde(default)]
    pub notification_topic: Option<String>,
    /// Seconds to wait before connecting again after a failure: `N`, or `[BASE, CAP]` for
    /// a randomised back-off from BASE growing up to CAP (Mosquitto's `restart_timeout
    /// BASE CAP`). Default `[5, 30]`.
    #[serde(default)]
    pub restart_timeout: Option<RestartTimeout>,
    /// Forward the retain flag of outgoing messages (false: always clear).
    #[serde(default = "yes")]
    pub bridge_outgoing_retain: bool,
    /// Largest packet accepted from the remote broker (0: no limit of the bridge's own).
    #[serde(default)]
    pub bridge_max_packet_size: u32,
    /// Unsubscribe on the remote broker from the filters of `out` lines (a bridge that
    /// carried them inwards before may still be subscribed to them there).
    #[serde(default = "yes")]
    pub bridge_attempt_unsubscribe: bool,
    /// false (Mosquitto's default): the first address is the main one; while connected to
    /// another, the bridge looks every 5 seconds whether the first answers again and goes
    /// back to it. true: it stays until that connection fails. Either way, a failure moves
    /// on to the next address.
    #[serde(default)]
    pub round_robin: bool,
    /// User name of the bridge's session on this broker, for the access rules.
    #[serde(default)]
    pub local_username: Option<String>,
    /// Its password.
    #[serde(default)]
    pub local_password: Option<String>,
}

/// A topic line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TopicLine {
    /// Mosquitto's syntax: `PATTERN [DIRECTION [QOS [LOCAL_PREFIX [REMOTE_PREFIX]]]]`.
    Line(String),
    /// The same as a table.
    Table(TopicTable),
}

/// A topic line as a table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicTable {
    /// The topic filter, or `""` with both prefixes set.
    pub pattern: String,
    /// `out` (default), `in` or `both`.
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// The QoS of the subscriptions (and so the most a message gets), 0 by default.
    #[serde(default)]
    pub qos: u8,
    /// Prefix of the topic here.
    #[serde(default)]
    pub local_prefix: Option<String>,
    /// Prefix of the topic on the remote broker.
    #[serde(default)]
    pub remote_prefix: Option<String>,
}

/// `restart_timeout`: fixed, or a randomised back-off between a base and a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RestartTimeout {
    /// Always this many seconds.
    Fixed(u64),
    /// `[BASE, CAP]` seconds.
    Backoff([u64; 2]),
}

fn default_keepalive() -> u16 {
    60
}
fn default_protocol() -> String {
    "mqttv311".into()
}
fn default_direction() -> Direction {
    Direction::Out
}
fn yes() -> bool {
    true
}

impl BridgeConfig {
    /// A bridge named `name` with Mosquitto's defaults and nothing to carry yet.
    pub fn new(name: impl Into<String>) -> BridgeConfig {
        BridgeConfig {
            name: name.into(),
            addresses: Vec::new(),
            topics: Vec::new(),
            cleansession: false,
            local_cleansession: None,
            keepalive_interval: default_keepalive(),
            remote_clientid: None,
            local_clientid: None,
            remote_username: None,
            remote_password: None,
            bridge_cafile: None,
            bridge_capath: None,
            bridge_certfile: None,
            bridge_keyfile: None,
            bridge_insecure: false,
            bridge_tls_version: None,
            bridge_alpn: None,
            bridge_protocol_version: default_protocol(),
            try_private: true,
            notifications: true,
            notifications_local_only: false,
            notification_topic: None,
            restart_timeout: None,
            bridge_outgoing_retain: true,
            bridge_max_packet_size: 0,
            bridge_attempt_unsubscribe: true,
            round_robin: false,
            local_username: None,
            local_password: None,
        }
    }
}

/// Parses a topic line in Mosquitto's syntax (after the word `topic`).
pub(crate) fn parse_topic_line(line: &str) -> Result<TopicRule, String> {
    // As Mosquitto: words after a `#` in the QoS or prefix position are a comment.
    let mut words = line.split_ascii_whitespace();
    let Some(pattern) = words.next() else {
        return Err("topic needs a pattern, e.g. `topic sensors/# out 1`".into());
    };
    let direction = match words.next() {
        None => Direction::Out,
        Some(w) => Direction::parse(w).ok_or_else(|| {
            format!("the direction of a bridge topic is out, in or both, not \"{w}\"")
        })?,
    };
    let mut rest = words.take_while(|w| !w.starts_with('#'));
    let qos = match rest.next() {
        None => 0,
        Some(w) => w
            .parse::<u8>()
            .map_err(|_| format!("the QoS of a bridge topic is 0, 1 or 2, not \"{w}\""))?,
    };
    let local = rest.next();
    let remote = rest.next();
    TopicRule::new(pattern, direction, qos, local, remote)
}

/// A bridge's settings, checked: what the bridge's task runs with.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub(crate) name: String,
    pub(crate) addresses: Vec<(String, u16)>,
    pub(crate) rules: Vec<TopicRule>,
    pub(crate) remote_clientid: String,
    pub(crate) local_clientid: String,
    pub(crate) version: tinsel_codec::ProtocolVersion,
    pub(crate) notification_topic: String,
    /// Base and cap of the back-off (equal: a fixed timeout).
    pub(crate) restart: (Duration, Duration),
    pub(crate) config: BridgeConfig,
}

/// Splits `host[:port]` (an IPv6 address needs its port, as in Mosquitto).
fn address(a: &str) -> Result<(String, u16), String> {
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("invalid port in bridge address \"{a}\""))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Ok((host.to_owned(), port))
        }
        None if !a.is_empty() => Ok((a.to_owned(), 1883)),
        _ => Err(format!("invalid bridge address \"{a}\"")),
    }
}

/// This machine's name, for the default remote client identifier.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tinsel".into())
}

impl BridgeConfig {
    /// The addresses as host and port.
    pub(crate) fn check_addresses(&self) -> Result<Vec<(String, u16)>, String> {
        self.addresses
            .iter()
            .flat_map(|a| a.split_ascii_whitespace())
            .map(address)
            .collect()
    }

    /// Checks the settings and fills in the defaults. The error says what is wrong, without
    /// the bridge's name (the caller adds where).
    pub(crate) fn check(&self) -> Result<Checked, String> {
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            return Err(format!("invalid bridge name \"{}\"", self.name));
        }
        if self.addresses.is_empty() {
            return Err("a bridge needs an address, e.g. `address 192.0.2.1:1883`".into());
        }
        let addresses = self.check_addresses()?;
        if self.topics.is_empty() {
            return Err("a bridge needs at least one topic line, e.g. `topic # both 0`".into());
        }
        let rules = self
            .topics
            .iter()
            .map(|t| match t {
                TopicLine::Line(l) => parse_topic_line(l),
                TopicLine::Table(t) => TopicRule::new(
                    &t.pattern,
                    t.direction,
                    t.qos,
                    t.local_prefix.as_deref(),
                    t.remote_prefix.as_deref(),
                ),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let version = match self.bridge_protocol_version.as_str() {
            "mqttv31" => tinsel_codec::ProtocolVersion::V31,
            "mqttv311" => tinsel_codec::ProtocolVersion::V311,
            "mqttv50" => tinsel_codec::ProtocolVersion::V5,
            other => {
                return Err(format!(
                    "bridge_protocol_version is mqttv31, mqttv311 or mqttv50, not \"{other}\""
                ));
            }
        };
        let remote_clientid = self
            .remote_clientid
            .clone()
            .unwrap_or_else(|| format!("{}.{}", hostname(), self.name));
        let local_clientid = self
            .local_clientid
            .clone()
            .unwrap_or_else(|| format!("local.{remote_clientid}"));
        let notification_topic = self
            .notification_topic
            .clone()
            .unwrap_or_else(|| format!("$SYS/broker/connection/{remote_clientid}/state"));
        if !tinsel_codec::topic::valid_topic_name(&notification_topic) {
            return Err(format!(
                "invalid notification_topic \"{notification_topic}\""
            ));
        }
        let restart = match self.restart_timeout {
            None => (5, 30),
            Some(RestartTimeout::Fixed(n)) => (n.max(1), n.max(1)),
            Some(RestartTimeout::Backoff([base, cap])) => {
                if cap < base {
                    return Err(format!(
                        "restart_timeout {base} {cap}: the cap is lower than the base"
                    ));
                }
                (base.max(1), cap.max(1))
            }
        };
        let tls = self.bridge_cafile.is_some() || self.bridge_capath.is_some();
        if !tls
            && (self.bridge_certfile.is_some()
                || self.bridge_keyfile.is_some()
                || self.bridge_insecure
                || self.bridge_tls_version.is_some()
                || self.bridge_alpn.is_some())
        {
            return Err("bridge TLS settings need bridge_cafile or bridge_capath \
                        (the CA that signed the remote broker's certificate)"
                .into());
        }
        if self.bridge_certfile.is_some() != self.bridge_keyfile.is_some() {
            return Err("bridge_certfile and bridge_keyfile go together".into());
        }
        if let Some(v) = &self.bridge_tls_version
            && v != "tlsv1.2"
            && v != "tlsv1.3"
        {
            return Err(format!(
                "bridge_tls_version is tlsv1.2 or tlsv1.3 (rustls has no older ones), not \"{v}\""
            ));
        }
        Ok(Checked {
            name: self.name.clone(),
            addresses,
            rules,
            remote_clientid,
            local_clientid,
            version,
            notification_topic,
            restart: (
                Duration::from_secs(restart.0),
                Duration::from_secs(restart.1),
            ),
            config: self.clone(),
        })
    }
}

impl BridgeConfig {
    /// Writes the bridge as a `[[bridges]]` table that reads back to the same settings,
    /// except the passwords: secrets, only said to be set.
    pub(crate) fn write_toml(&self, o: &mut String) {
        use std::fmt::Write as _;
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |v: Vec<String>| format!("[{}]", v.join(", "));
        let _ = writeln!(o, "\n[[bridges]]");
        let _ = writeln!(o, "name = {}", q(&self.name));
        let _ = writeln!(
            o,
            "addresses = {}",
            list(self.addresses.iter().map(|a| q(a)).collect())
        );
        let topics = self
            .topics
            .iter()
            .map(|t| match t {
                TopicLine::Line(l) => q(l),
                TopicLine::Table(t) => {
                    let dir = match t.direction {
                        Direction::Out => "out",
                        Direction::In => "in",
                        Direction::Both => "both",
                    };
                    let mut s = format!(
                        "{{ pattern = {}, direction = \"{dir}\", qos = {}",
                        q(&t.pattern),
                        t.qos
                    );
                    if let Some(p) = &t.local_prefix {
                        let _ = write!(s, ", local_prefix = {}", q(p));
                    }
                    if let Some(p) = &t.remote_prefix {
                        let _ = write!(s, ", remote_prefix = {}", q(p));
                    }
                    s + " }"
                }
            })
            .collect();
        let _ = writeln!(o, "topics = {}", list(topics));
        let _ = writeln!(o, "cleansession = {}", self.cleansession);
        if let Some(v) = self.local_cleansession {
            let _ = writeln!(o, "local_cleansession = {v}");
        }
        let _ = writeln!(o, "keepalive_interval = {}", self.keepalive_interval);
        let strings = [
            ("remote_clientid", &self.remote_clientid),
            ("local_clientid", &self.local_clientid),
            ("remote_username", &self.remote_username),
            ("local_username", &self.local_username),
            ("bridge_tls_version", &self.bridge_tls_version),
            ("bridge_alpn", &self.bridge_alpn),
            ("notification_topic", &self.notification_topic),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                let _ = writeln!(o, "{k} = {}", q(v));
            }
        }
        for (k, v) in [
            ("remote_password", &self.remote_password),
            ("local_password", &self.local_password),
        ] {
            if v.is_some() {
                let _ = writeln!(o, "# {k} is set (not shown)");
            }
        }
        let paths = [
            ("bridge_cafile", &self.bridge_cafile),
            ("bridge_capath", &self.bridge_capath),
            ("bridge_certfile", &self.bridge_certfile),
            ("bridge_keyfile", &self.bridge_keyfile),
        ];
        for (k, v) in paths {
            if let Some(v) = v {
                let _ = writeln!(o, "{k} = {}", q(&v.to_string_lossy()));
            }
        }
        let _ = writeln!(
            o,
            "bridge_protocol_version = {}",
            q(&self.bridge_protocol_version)
        );
        for (k, v) in [
            ("bridge_insecure", self.bridge_insecure),
            ("try_private", self.try_private),
            ("notifications", self.notifications),
            ("notifications_local_only", self.notifications_local_only),
            ("bridge_outgoing_retain", self.bridge_outgoing_retain),
            (
                "bridge_attempt_unsubscribe",
                self.bridge_attempt_unsubscribe,
            ),
            ("round_robin", self.round_robin),
        ] {
            let _ = writeln!(o, "{k} = {v}");
        }
        match self.restart_timeout {
            None => {}
            Some(RestartTimeout::Fixed(n)) => {
                let _ = writeln!(o, "restart_timeout = {n}");
            }
            Some(RestartTimeout::Backoff([b, c])) => {
                let _ = writeln!(o, "restart_timeout = [{b}, {c}]");
            }
        }
        if self.bridge_max_packet_size > 0 {
            let _ = writeln!(
                o,
                "bridge_max_packet_size = {}",
                self.bridge_max_packet_size
            );
        }
    }
}

/// Checks every bridge and that no two share a name or a local client identifier.
pub(crate) fn check_all(bridges: &[BridgeConfig]) -> Result<Vec<Checked>, String> {
    let mut out: Vec<Checked> = Vec::with_capacity(bridges.len());
    for b in bridges {
        let c = b
            .check()
            .map_err(|e| format!("bridge \"{}\": {e}", b.name))?;
        if out.iter().any(|o| o.name == c.name) {
            return Err(format!("two bridges are named \"{}\"", c.name));
        }
        if let Some(o) = out.iter().find(|o| o.local_clientid == c.local_clientid) {
            return Err(format!(
                "bridges \"{}\" and \"{}\" have the same local_clientid \"{}\"; set \
                 local_clientid for one of them",
                o.name, c.name, c.local_clientid
            ));
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_tables_and_mosquitto_lines() {
        let b: BridgeConfig = toml::from_str(
            r#"
            name = "hq"
            addresses = ["192.0.2.1:1884", "backup.example"]
            topics = [
                "sensors/# out 1 site/ hq/site/",
                { pattern = "cmd/#", direction = "in", qos = 2 },
            ]
            restart_timeout = [2, 10]
            remote_clientid = "site1"
            "#,
        )
        .unwrap();
        let c = b.check().unwrap();
        assert_eq!(
            c.addresses,
            vec![("192.0.2.1".into(), 1884), ("backup.example".into(), 1883)]
        );
        assert_eq!(c.rules[0].local, "site/sensors/#");
        assert_eq!(c.rules[0].remote, "hq/site/sensors/#");
        assert_eq!(c.rules[1].direction, Direction::In);
        assert_eq!(c.local_clientid, "local.site1");
        assert_eq!(c.notification_topic, "$SYS/broker/connection/site1/state");
        assert_eq!(c.restart, (Duration::from_secs(2), Duration::from_secs(10)));
        assert!(b.try_private && b.notifications && !b.cleansession);
    }

    #[test]
    fn printed_toml_reads_back() {
        let text = r#"
            name = "hq"
            addresses = ["h1:1884", "h2"]
            topics = ["a/# both 1 l/ r/", { pattern = "b", direction = "in", qos = 2, remote_prefix = "x/" }]
            restart_timeout = [1, 4]
            bridge_cafile = "/tmp/ca.pem"
            remote_username = "u"
            remote_password = "p"
        "#;
        let b: BridgeConfig = toml::from_str(text).unwrap();
        let mut o = String::new();
        b.write_toml(&mut o);
        assert!(!o.contains("\"p\""), "{o}");
        #[derive(Deserialize)]
        struct Top {
            bridges: Vec<BridgeConfig>,
        }
        let back: Top = toml::from_str(&o).unwrap();
        let mut want = b;
        want.remote_password = None;
        assert_eq!(back.bridges, vec![want]);
    }

    #[test]
    fn mistakes_are_named() {
        let mut b = BridgeConfig::new("x");
        assert!(b.check().unwrap_err().contains("address"));
        b.addresses = vec!["h:0".into()];
        assert!(b.check().unwrap_err().contains("port"));
        b.addresses = vec!["h:1883".into()];
        assert!(b.check().unwrap_err().contains("topic"));
        b.topics = vec![TopicLine::Line("# sideways".into())];
        assert!(b.check().unwrap_err().contains("sideways"));
        b.topics = vec![TopicLine::Line("# both 1".into())];
        b.bridge_protocol_version = "mqttv6".into();
        assert!(b.check().unwrap_err().contains("mqttv6"));
        b.bridge_protocol_version = "mqttv50".into();
        b.bridge_certfile = Some("c.pem".into());
        assert!(b.check().unwrap_err().contains("bridge_cafile"));
        b.bridge_certfile = None;
        b.restart_timeout = Some(RestartTimeout::Backoff([10, 2]));
        assert!(b.check().unwrap_err().contains("cap"));
        b.restart_timeout = Some(RestartTimeout::Fixed(0));
        assert_eq!(b.check().unwrap().restart.0, Duration::from_secs(1));
        let twice = check_all(&[b.clone(), b]).unwrap_err();
        assert!(twice.contains("two bridges"), "{twice}");
    }
}
