//! What each listener asks of its clients (connections, versions, mount point, topic
//! aliases, and under `per_listener_settings` its access rules), from the configuration to
//! the core's [`Settings`]; and the checks of those keys.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tinsel_codec::ProtocolVersion;
use tinsel_codec::topic::valid_topic_name;
use tinsel_core::{ListenerSettings, Protocols, Settings};

use crate::Error;
use crate::config::{Config, ListenerConfig, MqttVersion};

impl MqttVersion {
    /// The name `protocols` uses.
    pub fn name(self) -> &'static str {
        match self {
            MqttVersion::V31 => "3.1",
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5.0",
        }
    }

    fn protocol(self) -> ProtocolVersion {
        match self {
            MqttVersion::V31 => ProtocolVersion::V31,
            MqttVersion::V311 => ProtocolVersion::V311,
            MqttVersion::V5 => ProtocolVersion::V5,
        }
    }
}

impl Config {
    /// The core's settings: limits, intervals, each listener's settings and the
    /// broker-wide behaviours. `id_seed` and `durable_acks` are the host's to choose.
    pub(crate) fn core_settings(&self, id_seed: u64, durable_acks: bool) -> Settings {
        let a = &self.access;
        let per_listener = a.per_listener_settings == Some(true);
        let listeners = self
            .listeners
            .iter()
            .map(|l| {
                let zero_length = if per_listener {
                    l.access.allow_zero_length_clientid
                } else {
                    a.allow_zero_length_clientid
                };
                l.core_settings(zero_length == Some(false))
            })
            .collect();
        let defaults = Settings::default();
        Settings {
            limits: self.limits.clone(),
            sys_interval: (self.sys_interval > 0).then(|| Duration::from_secs(self.sys_interval)),
            id_seed,
            durable_acks,
            listeners,
            clientid_prefixes: a.clientid_prefixes.clone(),
            auto_id_prefix: a.auto_id_prefix.clone().unwrap_or(defaults.auto_id_prefix),
            retain_available: self.mqtt.retain_available,
            upgrade_outgoing_qos: self.mqtt.upgrade_outgoing_qos,
        }
    }

    /// Checks the access keys: the ones `per_listener_settings` turns off must not be set
    /// where they would be ignored.
    pub(crate) fn validate_access(&self) -> Result<(), Error> {
        let a = &self.access;
        if a.per_listener_settings == Some(true) {
            let global = [
                ("allow_anonymous", a.allow_anonymous.is_some()),
                ("password_file", a.password_file.is_some()),
                ("acl_file", a.acl_file.is_some()),
                (
                    "allow_zero_length_clientid",
                    a.allow_zero_length_clientid.is_some(),
                ),
            ];
            if let Some((key, _)) = global.iter().find(|(_, set)| *set) {
                return Err(Error::Config(format!(
                    "access.{key} has no effect with access.per_listener_settings = true: \
                     set it in each listener's [listeners.access]"
                )));
            }
        } else if let Some(l) = self.listeners.iter().find(|l| !l.access.is_empty()) {
            return Err(Error::Config(format!(
                "listener {}:{}: [listeners.access] is used only with \
                 access.per_listener_settings = true; set that, or move the keys to [access]",
                l.address, l.port
            )));
        }
        if let Some(p) = a.clientid_prefixes.iter().find(|p| p.is_empty()) {
            return Err(Error::Config(format!(
                "access.clientid_prefixes: {p:?} is empty and would allow every client id; \
                 remove it, or leave the list empty to allow all"
            )));
        }
        if let Some(p) = &a.auto_id_prefix
            && (p.len() > 65_535 - 40 || p.contains('\0'))
        {
            return Err(Error::Config(
                "access.auto_id_prefix must be a short string without NUL characters".into(),
            ));
        }
        Ok(())
    }
}

impl ListenerConfig {
    /// The core's view of this listener.
    fn core_settings(&self, refuse_empty_client_id: bool) -> ListenerSettings {
        let protocols = if self.protocols.is_empty() {
            Protocols::ALL
        } else {
            self.protocols
                .iter()
                .fold(Protocols::NONE, |p, v| p.with(v.protocol()))
        };
        ListenerSettings {
            protocols,
            mount_point: self.mount_point.as_deref().map(Arc::from),
            max_topic_alias: self.max_topic_alias,
            refuse_empty_client_id,
        }
    }

    /// Checks the keys of this file; `at` names the listener.
    pub(crate) fn validate_mqtt(&self, at: &str) -> Result<(), Error> {
        if self.max_connections == Some(0) {
            return Err(Error::Config(format!(
                "{at}: max_connections = 0 would refuse every client; remove the key for no \
                 limit of its own"
            )));
        }
        if let Some(m) = &self.mount_point
            && (m.is_empty() || !valid_topic_name(m) || m.starts_with('$'))
        {
            return Err(Error::Config(format!(
                "{at}: mount_point must be a topic without wildcards (+, #) that does not \
                 start with $, e.g. \"tenant-a/\"; not {m:?}"
            )));
        }
        Ok(())
    }

    /// Writes this file's keys that are set, as TOML.
    pub(crate) fn write_mqtt(&self, o: &mut String) {
        let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
        if let Some(v) = self.max_connections {
            let _ = writeln!(o, "max_connections = {v}");
        }
        if !self.protocols.is_empty() {
            let list: Vec<String> = self.protocols.iter().map(|v| quoted(v.name())).collect();
            let _ = writeln!(o, "protocols = [{}]", list.join(", "));
        }
        if let Some(m) = &self.mount_point {
            let _ = writeln!(o, "mount_point = {}", quoted(m));
        }
        if let Some(v) = self.max_topic_alias {
            let _ = writeln!(o, "max_topic_alias = {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::config::MqttVersion;

    #[test]
    fn listener_keys_round_trip() {
        let c = Config::from_toml_str(
            r#"
            [access]
            clientid_prefixes = ["dev-", "svc-"]
            auto_id_prefix = "gen-"
            [mqtt]
            retain_available = false
            upgrade_outgoing_qos = true
            [[listeners]]
            port = 1883
            max_connections = 5
            protocols = ["3.1.1", "5.0"]
            mount_point = "a/"
            max_topic_alias = 3
            "#,
        )
        .unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.max_connections, Some(5));
        assert_eq!(l.protocols, [MqttVersion::V311, MqttVersion::V5]);
        let back = Config::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(back.listeners[0].protocols, l.protocols);
        assert_eq!(back.listeners[0].mount_point.as_deref(), Some("a/"));
        assert_eq!(back.listeners[0].max_topic_alias, Some(3));
        assert_eq!(back.access.clientid_prefixes, ["dev-", "svc-"]);
        assert!(!back.mqtt.retain_available && back.mqtt.upgrade_outgoing_qos);
        let s = back.core_settings(0, false);
        assert_eq!(s.auto_id_prefix, "gen-");
        assert_eq!(s.listeners[0].max_topic_alias, Some(3));
    }

    #[test]
    fn bad_listener_and_access_keys_are_errors() {
        let cases = [
            ("[[listeners]]\nmax_connections = 0", "max_connections = 0"),
            ("[[listeners]]\nprotocols = [\"4\"]", "unknown variant"),
            (
                "[[listeners]]\nmount_point = \"a/#\"",
                "mount_point must be",
            ),
            (
                "[[listeners]]\nmount_point = \"$SYS/\"",
                "mount_point must be",
            ),
            (
                "[access]\nper_listener_settings = true\npassword_file = \"p\"",
                "has no effect",
            ),
            (
                "[[listeners]]\n[listeners.access]\nallow_anonymous = false",
                "only with access.per_listener_settings",
            ),
            ("[access]\nclientid_prefixes = [\"\"]", "is empty"),
        ];
        for (text, part) in cases {
            let e = Config::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains(part), "{text}: {e}");
        }
    }
}
