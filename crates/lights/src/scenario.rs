//! Scenario files: what a lab is about, in TOML.
//!
//! A scenario names the control topic and the words that switch the lights, the flag the
//! learner wins, how the lights look, the story shown on the page, what the saboteur does
//! at the start, whether the broker wants a login, and who uses a TLS listener. Every field has a default, and the defaults are the Wareville scenario, so an
//! empty file (or no file) is Wareville. The format is documented in `docs/lab/scenarios.md`.
//!
//! ```
//! let s = tinsel_lights::Scenario::from_toml_str(r#"
//!     title = "The lighthouse of Port Byte"
//!     flag = "FLAG{keep_the_lamp_lit}"
//!     [mqtt]
//!     control_topic = "harbour/lamp"
//! "#).unwrap();
//! assert_eq!(s.mqtt.control_topic, "harbour/lamp");
//! assert_eq!(s.words.on, ["on"]); // not given: Wareville's default
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// The Wareville control topic: base64 of `wareville` / `christmaslights`.
pub const WAREVILLE_CONTROL_TOPIC: &str = "d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz";
/// The Wareville status topic: base64 of `wareville` / `status`.
pub const WAREVILLE_STATUS_TOPIC: &str = "d2FyZXZpbGxl/c3RhdHVz";
/// The default flag of the Wareville scenario.
pub const WAREVILLE_FLAG: &str = "THM{wareville_shines_again_over_mqtt}";

/// Most lights a string may have.
pub const MAX_LIGHTS: usize = 200;
/// Longest flag, title, word or topic accepted, in bytes.
const MAX_TEXT: usize = 1024;
/// Longest story, in bytes.
const MAX_STORY: usize = 16 * 1024;
/// Most saboteur actions.
const MAX_ACTIONS: usize = 100;

const WAREVILLE_STORY: &str = "\
Wareville has strung its Christmas lights along the town square, and this year they are smart: \
a little device on the lamp post listens to the town's MQTT broker and switches them on and off.

Tonight, just as the carol singers gathered, the lights went dark. Someone on the network told \
them to switch off, and nobody at the town hall knows how to tell them to come back on.

The town's network engineer left one clue: a recording of the broker's traffic from the moment \
the lights went out. Read it, find how the lights are controlled, and switch them back on.";

/// A lab scenario. Build one with [`Scenario::from_toml_str`], [`Scenario::load`] or
/// [`Scenario::default`] (Wareville), then [`Scenario::validate`] it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Scenario {
    /// Title of the page and of the lab.
    pub title: String,
    /// Story shown on the page; blank lines separate paragraphs.
    pub story: String,
    /// The secret shown on the page once the lights are on. Never sent over MQTT.
    pub flag: String,
    /// What the page says next to the flag.
    pub success: String,
    /// MQTT names and credentials.
    pub mqtt: MqttSettings,
    /// The words that switch the lights.
    pub words: Words,
    /// How the lights look.
    pub lights: LightsLook,
    /// The villain's client.
    pub saboteur: Saboteur,
    /// What the broker `tinsel lab` starts asks of clients.
    pub broker: BrokerSettings,
    /// A TLS listener beside the plain one, and who uses it. None: no TLS.
    pub tls: Option<TlsSettings>,
}

/// The broker of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BrokerSettings {
    /// Whether clients without a user name may connect, as Mosquitto's `allow_anonymous`.
    /// `false`: `tinsel lab` writes a password file holding the device's user name and
    /// password (and the saboteur's), and the broker refuses everybody else; the learner must
    /// find the credentials in the capture.
    pub allow_anonymous: bool,
}

/// The lab's TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsSettings {
    /// Its port (0 picks a free one).
    pub port: u16,
    /// The lights connect over TLS: their subscription and the commands they receive are
    /// encrypted in the capture.
    pub lights: bool,
    /// The saboteur connects over TLS: what it sends is encrypted in the capture.
    pub saboteur: bool,
    /// The server's certificate chain (PEM). None: `tinsel lab` makes a CA and a certificate
    /// for `localhost` in its output directory at each start.
    pub certfile: Option<PathBuf>,
    /// The server's private key (PEM), with `certfile`.
    pub keyfile: Option<PathBuf>,
    /// The CA certificate clients verify the server with (what `--cafile` names). Default:
    /// the generated CA, or `certfile` when that is given.
    pub cafile: Option<PathBuf>,
}

/// Topics, client id and credentials of the lights device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MqttSettings {
    /// The topic the lights subscribe to and obey.
    pub control_topic: String,
    /// Where the lights publish their state (`on`, `off`), retained; their will sets it to
    /// `offline`.
    pub status_topic: String,
    /// The device's client id.
    pub client_id: String,
    /// User name for the broker, if it asks for one.
    pub username: Option<String>,
    /// Password for the broker.
    pub password: Option<String>,
}

/// Which payloads switch the lights.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Words {
    /// Payloads that switch the lights on.
    pub on: Vec<String>,
    /// Payloads that switch the lights off.
    pub off: Vec<String>,
    /// Compare without regard to ASCII case (`ON` works like `on`).
    pub ignore_case: bool,
    /// Ignore leading and trailing white space (`"on\n"` works like `on`).
    pub trim: bool,
}

/// The string of lights on the page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LightsLook {
    /// Number of bulbs.
    pub count: usize,
    /// Bulb colours, repeated along the string: `#rgb` or `#rrggbb`.
    pub colours: Vec<String>,
}

/// The saboteur: a client that publishes once at the start of `tinsel lab`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Saboteur {
    /// The saboteur's client id (it appears in the capture).
    pub client_id: String,
    /// User name; the device's when not given.
    pub username: Option<String>,
    /// Password; the device's when not given.
    pub password: Option<String>,
    /// What it publishes, in order.
    pub actions: Vec<Action>,
}

/// One publish by the saboteur.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Action {
    /// Wait this long (after the lights are connected, or after the previous action).
    pub after_ms: u64,
    /// Topic; the control topic when not given.
    pub topic: Option<String>,
    /// Payload.
    pub payload: String,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
}

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario {
            title: "Wareville's Christmas lights".into(),
            story: WAREVILLE_STORY.into(),
            flag: WAREVILLE_FLAG.into(),
            success: "The lights are back on and Wareville is shining again. Here is your flag:"
                .into(),
            mqtt: MqttSettings::default(),
            words: Words::default(),
            lights: LightsLook::default(),
            saboteur: Saboteur::default(),
            broker: BrokerSettings::default(),
            tls: None,
        }
    }
}

impl Default for BrokerSettings {
    fn default() -> BrokerSettings {
        BrokerSettings {
            allow_anonymous: true,
        }
    }
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            port: 8883,
            lights: true,
            saboteur: false,
            certfile: None,
            keyfile: None,
            cafile: None,
        }
    }
}

impl Default for MqttSettings {
    fn default() -> MqttSettings {
        MqttSettings {
            control_topic: WAREVILLE_CONTROL_TOPIC.into(),
            status_topic: WAREVILLE_STATUS_TOPIC.into(),
            client_id: "wareville-lights".into(),
            username: None,
            password: None,
        }
    }
}

impl Default for Words {
    fn default() -> Words {
        Words {
            on: vec!["on".into()],
            off: vec!["off".into()],
            ignore_case: false,
            trim: false,
        }
    }
}

impl Default for LightsLook {
    fn default() -> LightsLook {
        LightsLook {
            count: 28,
            colours: [
                "#ff4d4d", "#ffd447", "#4dff88", "#4db8ff", "#ff7ae0", "#ffa14d",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Default for Saboteur {
    fn default() -> Saboteur {
        Saboteur {
            client_id: "mayor-malware".into(),
            username: None,
            password: None,
            actions: vec![Action::default()],
        }
    }
}

impl Default for Action {
    fn default() -> Action {
        Action {
            after_ms: 1000,
            topic: None,
            payload: "off".into(),
            qos: 0,
            retain: false,
        }
    }
}

/// What a payload asks of the lights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Switch on.
    On,
    /// Switch off.
    Off,
}

impl Words {
    /// The command a payload stands for, or `None` for anything else.
    pub fn parse(&self, payload: &[u8]) -> Option<Command> {
        let text = std::str::from_utf8(payload).ok()?;
        let text = if self.trim { text.trim() } else { text };
        let same = |word: &String| {
            if self.ignore_case {
                word.eq_ignore_ascii_case(text)
            } else {
                word == text
            }
        };
        // Off wins if a word is in both lists (validate() rejects that anyway).
        if self.off.iter().any(same) {
            Some(Command::Off)
        } else if self.on.iter().any(same) {
            Some(Command::On)
        } else {
            None
        }
    }
}

impl Action {
    /// The topic this action publishes to.
    pub fn topic<'a>(&'a self, scenario: &'a Scenario) -> &'a str {
        self.topic
            .as_deref()
            .unwrap_or(&scenario.mqtt.control_topic)
    }
}

impl Scenario {
    /// Parses and validates a scenario.
    pub fn from_toml_str(text: &str) -> Result<Scenario, Error> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            Error::Scenario(format!("{at}{}", e.message()))
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and validates a scenario file. Relative file names in it (the TLS
    /// certificate and keys) are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Scenario(format!("cannot read {}: {e}", path.display())))?;
        let mut scenario = Scenario::from_toml_str(&text)
            .map_err(|e| Error::Scenario(format!("{}: {}", path.display(), e.detail())))?;
        if let (Some(tls), Some(dir)) = (&mut scenario.tls, path.parent()) {
            for file in [&mut tls.certfile, &mut tls.keyfile, &mut tls.cafile]
                .into_iter()
                .flatten()
            {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(scenario)
    }

    /// Adds a TLS listener on `port` (for `--tls-port`), or moves the scenario's there.
    pub fn with_tls_port(mut self, port: u16) -> Scenario {
        self.tls.get_or_insert_with(TlsSettings::default).port = port;
        self
    }

    /// The user names and passwords the lab's clients log in with (the device's, then the
    /// saboteur's if it has its own), for the password file of a broker that refuses
    /// anonymous clients.
    pub fn logins(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        let device = (self.mqtt.username.as_deref(), self.mqtt.password.as_deref());
        let saboteur = (
            self.saboteur.username.as_deref().or(device.0),
            self.saboteur.password.as_deref().or(device.1),
        );
        for login in [device, saboteur] {
            if let (Some(user), Some(password)) = login {
                if !out.iter().any(|(u, _)| *u == user) {
                    out.push((user, password));
                }
            }
        }
        out
    }

    /// Replaces the flag (for `--flag`) and validates again.
    pub fn with_flag(mut self, flag: impl Into<String>) -> Result<Scenario, Error> {
        self.flag = flag.into();
        self.validate()?;
        Ok(self)
    }

    /// Checks that the scenario is usable and cannot give its flag away.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Scenario(msg));
        if self.flag.trim().is_empty() {
            return bad("the flag is empty".into());
        }
        for (name, text, max) in [
            ("title", &self.title, MAX_TEXT),
            ("flag", &self.flag, MAX_TEXT),
            ("success", &self.success, MAX_TEXT),
            ("story", &self.story, MAX_STORY),
        ] {
            if text.len() > max {
                return bad(format!("the {name} is longer than {max} bytes"));
            }
        }
        let m = &self.mqtt;
        for (name, topic) in [
            ("mqtt.control_topic", &m.control_topic),
            ("mqtt.status_topic", &m.status_topic),
        ] {
            if !tinsel_codec::topic::valid_topic_name(topic) || topic.len() > MAX_TEXT {
                return bad(format!(
                    "{name} {topic:?} is not a valid topic name (non-empty, no + or #)"
                ));
            }
        }
        if m.control_topic == m.status_topic {
            return bad("mqtt.control_topic and mqtt.status_topic must differ".into());
        }
        if self.words.on.is_empty() || self.words.off.is_empty() {
            return bad("words.on and words.off each need at least one word".into());
        }
        for word in self.words.on.iter().chain(&self.words.off) {
            if word.is_empty() || word.len() > MAX_TEXT {
                return bad(format!("the word {word:?} is empty or too long"));
            }
        }
        let probe = |w: &String| self.words.parse(w.as_bytes());
        if self.words.on.iter().any(|w| probe(w) != Some(Command::On)) {
            return bad("a word is in both words.on and words.off".into());
        }
        if self.lights.count == 0 || self.lights.count > MAX_LIGHTS {
            return bad(format!("lights.count must be 1 to {MAX_LIGHTS}"));
        }
        if self.lights.colours.is_empty() {
            return bad("lights.colours needs at least one colour".into());
        }
        if let Some(c) = self.lights.colours.iter().find(|c| !is_hex_colour(c)) {
            return bad(format!("lights.colours: {c:?} is not #rgb or #rrggbb"));
        }
        if !self.broker.allow_anonymous && (m.username.is_none() || m.password.is_none()) {
            return bad(
                "broker.allow_anonymous = false needs mqtt.username and mqtt.password \
                 (the lights log in with them)"
                    .into(),
            );
        }
        if let Some(tls) = self
            .tls
            .as_ref()
            .filter(|t| t.certfile.is_some() != t.keyfile.is_some())
        {
            return bad(format!(
                "tls.certfile and tls.keyfile go together (only {} is given)",
                if tls.certfile.is_some() {
                    "certfile"
                } else {
                    "keyfile"
                }
            ));
        }
        if self.saboteur.actions.len() > MAX_ACTIONS {
            return bad(format!("the saboteur has more than {MAX_ACTIONS} actions"));
        }
        for action in &self.saboteur.actions {
            let topic = action.topic(self);
            if !tinsel_codec::topic::valid_topic_name(topic) {
                return bad(format!(
                    "saboteur topic {topic:?} is not a valid topic name"
                ));
            }
            if action.qos > 2 {
                return bad(format!("saboteur qos {} is not 0, 1 or 2", action.qos));
            }
        }
        // The flag must never be on the page while the lights are off, nor on the wire.
        let flag = self.flag.as_str();
        let mut public: Vec<(&str, &str)> = vec![
            ("title", &self.title),
            ("story", &self.story),
            ("success", &self.success),
            ("mqtt.control_topic", &m.control_topic),
            ("mqtt.status_topic", &m.status_topic),
            ("mqtt.client_id", &m.client_id),
            ("saboteur.client_id", &self.saboteur.client_id),
        ];
        for opt in [
            &m.username,
            &m.password,
            &self.saboteur.username,
            &self.saboteur.password,
        ]
        .into_iter()
        .flatten()
        {
            public.push(("a user name or password", opt));
        }
        for word in self.words.on.iter().chain(&self.words.off) {
            public.push(("words", word));
        }
        for action in &self.saboteur.actions {
            public.push(("a saboteur action", &action.payload));
            public.push(("a saboteur action", action.topic(self)));
        }
        if let Some((name, _)) = public.iter().find(|(_, text)| text.contains(flag)) {
            return bad(format!(
                "the flag appears in {name}: it would leak before the lights are on"
            ));
        }
        Ok(())
    }
}

fn is_hex_colour(c: &str) -> bool {
    let Some(hex) = c.strip_prefix('#') else {
        return false;
    };
    matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_wareville() {
        let s = Scenario::default();
        s.validate().unwrap();
        assert_eq!(s.mqtt.control_topic, "d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz");
        assert_eq!(s.words.on, ["on"]);
        assert_eq!(s.words.off, ["off"]);
        assert_eq!(s.saboteur.actions.len(), 1);
        assert_eq!(s.saboteur.actions[0].payload, "off");
        assert_eq!(s.saboteur.actions[0].topic(&s), s.mqtt.control_topic);
        // An empty file is Wareville too.
        assert_eq!(Scenario::from_toml_str("").unwrap(), s);
    }

    #[test]
    fn the_control_topic_is_base64_of_wareville_christmaslights() {
        use base64::Engine as _;
        let parts: Vec<String> = WAREVILLE_CONTROL_TOPIC
            .split('/')
            .map(|p| {
                let raw = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
                String::from_utf8(raw).unwrap()
            })
            .collect();
        assert_eq!(parts, ["wareville", "christmaslights"]);
    }

    #[test]
    fn words_are_exact_by_default() {
        let w = Words::default();
        assert_eq!(w.parse(b"on"), Some(Command::On));
        assert_eq!(w.parse(b"off"), Some(Command::Off));
        for other in [
            &b"ON"[..],
            b"On",
            b" on",
            b"on\n",
            b"onn",
            b"",
            b"of",
            b"\xff",
        ] {
            assert_eq!(w.parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn words_can_ignore_case_and_white_space() {
        let w = Words {
            on: vec!["LIGHTS:ON".into(), "shine".into()],
            off: vec!["LIGHTS:OFF".into()],
            ignore_case: true,
            trim: true,
        };
        assert_eq!(w.parse(b" lights:on\n"), Some(Command::On));
        assert_eq!(w.parse(b"SHINE"), Some(Command::On));
        assert_eq!(w.parse(b"Lights:Off"), Some(Command::Off));
        assert_eq!(w.parse(b"on"), None);
    }

    #[test]
    fn a_second_scenario_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scenarios/port-byte-lighthouse.toml"
        ))
        .unwrap();
        let s = Scenario::from_toml_str(&text).unwrap();
        assert_ne!(s.mqtt.control_topic, WAREVILLE_CONTROL_TOPIC);
        assert!(s.mqtt.username.is_some());
        let wareville = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scenarios/wareville.toml"
        ))
        .unwrap();
        assert_eq!(
            Scenario::from_toml_str(&wareville).unwrap(),
            Scenario::default()
        );
    }

    #[test]
    fn a_locked_broker_and_a_tls_listener() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scenarios/frostfield-rink.toml"
        ))
        .unwrap();
        let s = Scenario::from_toml_str(&text).unwrap();
        assert!(!s.broker.allow_anonymous);
        assert!(s.tls.is_none());
        // The saboteur logs in with the device's credentials: one login in the file.
        assert_eq!(s.logins(), [("rink-controller", "zamb0ni-n1ghts")]);
        assert!(Scenario::default().broker.allow_anonymous);

        let err = |t: &str| Scenario::from_toml_str(t).unwrap_err().to_string();
        assert!(err("[broker]\nallow_anonymous = false").contains("mqtt.username"));
        assert!(err("[tls]\ncertfile = \"c.pem\"").contains("keyfile"));
        assert!(err("[tls]\nport = 1\nportt = 2").contains("portt"));

        let s = Scenario::from_toml_str(
            "[mqtt]\nusername = \"u\"\npassword = \"p\"\n\
             [saboteur]\nusername = \"villain\"\n\
             [tls]\nsaboteur = true\ncertfile = \"certs/c.pem\"\nkeyfile = \"/abs/k.pem\"",
        )
        .unwrap();
        let tls = s.tls.clone().unwrap();
        assert_eq!((tls.port, tls.lights, tls.saboteur), (8883, true, true));
        assert_eq!(s.logins(), [("u", "p"), ("villain", "p")]);
        // `--tls-port` adds a listener with the defaults, or moves the scenario's.
        assert_eq!(
            Scenario::default().with_tls_port(9999).tls.unwrap().port,
            9999
        );
        assert!(Scenario::default().with_tls_port(1).tls.unwrap().lights);

        // A file's relative paths are taken from its directory.
        let dir = std::env::temp_dir().join(format!("tinsel-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lab.toml");
        std::fs::write(
            &path,
            "[tls]\ncertfile = \"certs/c.pem\"\nkeyfile = \"/abs/k.pem\"",
        )
        .unwrap();
        let tls = Scenario::load(&path).unwrap().tls.unwrap();
        assert_eq!(tls.certfile.unwrap(), dir.join("certs/c.pem"));
        assert_eq!(tls.keyfile.unwrap(), PathBuf::from("/abs/k.pem"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_values_are_clear_errors() {
        let err = |t: &str| Scenario::from_toml_str(t).unwrap_err().to_string();
        assert!(err("titel = \"x\"").contains("titel"));
        assert!(
            err("title = \"x\"\n\n[lights]\ncount = \"many\"").starts_with("scenario: line 4: ")
        );
        assert!(err("[mqtt]\ncontrol_topic = \"a/#\"").contains("not a valid topic"));
        assert!(err("[lights]\ncount = 0").contains("lights.count"));
        assert!(err("[lights]\ncolours = [\"red; background: url(x)\"]").contains("#rgb"));
        assert!(err("[words]\non = [\"go\"]\noff = [\"go\"]").contains("both"));
        assert!(err("flag = \"  \"").contains("empty"));
        assert!(err("[[saboteur.actions]]\nqos = 3").contains("qos"));
    }

    #[test]
    fn a_flag_that_would_leak_is_refused() {
        let err = |t: &str| Scenario::from_toml_str(t).unwrap_err().to_string();
        assert!(err("flag = \"Wareville\"").contains("title"));
        assert!(
            err("flag = \"X{1}\"\n[[saboteur.actions]]\npayload = \"X{1}\"").contains("saboteur")
        );
        assert!(err("flag = \"xyzzy\"\n[words]\non = [\"xyzzy\"]").contains("words"));
        // Short flags are caught wherever they hide.
        assert!(err("flag = \"on\"").contains("story"));
        assert!(
            Scenario::default()
                .with_flag("wareville-lights")
                .unwrap_err()
                .to_string()
                .contains("client_id")
        );
        Scenario::default().with_flag("FLAG{other}").unwrap();
    }
}
