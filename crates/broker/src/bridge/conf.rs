//! The bridge lines of `mosquitto.conf`: everything after `connection NAME` that configures
//! that bridge, read into a [`BridgeConfig`] with Mosquitto's meanings.

use super::config::{BridgeConfig, RestartTimeout, TopicLine, parse_topic_line};

/// What became of one line.
pub(crate) enum Read {
    /// Taken.
    Done,
    /// Taken, with a warning for the user.
    Warn(String),
}

fn one<'a>(name: &str, rest: &'a str) -> Result<&'a str, String> {
    let mut words = rest.split_ascii_whitespace();
    match (words.next(), words.next()) {
        (Some(w), None) => Ok(w),
        (Some(w), Some(c)) if c.starts_with('#') => Ok(w),
        (None, _) => Err(format!("{name} needs a value")),
        _ => Err(format!("{name} takes one value, not \"{}\"", rest.trim())),
    }
}

fn boolean(name: &str, rest: &str) -> Result<bool, String> {
    match one(name, rest)? {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{name} is true or false, not \"{other}\"")),
    }
}

fn number<T: std::str::FromStr>(name: &str, word: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("{name} expects a whole number, not \"{word}\""))
}

/// Reads one bridge directive into `b`. Errors say what is wrong with the value.
pub(crate) fn directive(b: &mut BridgeConfig, name: &str, rest: &str) -> Result<Read, String> {
    let text = || rest.trim().to_owned();
    match name {
        "address" | "addresses" => {
            let words: Vec<String> = rest
                .split_ascii_whitespace()
                .take_while(|w| !w.starts_with('#'))
                .map(str::to_owned)
                .collect();
            if words.is_empty() {
                return Err(format!(
                    "{name} needs host[:port], e.g. `address 192.0.2.1:1883`"
                ));
            }
            b.addresses = words;
            // Checked here so that the error names this line.
            b.check_addresses()?;
        }
        "topic" => {
            parse_topic_line(rest)?;
            b.topics.push(TopicLine::Line(text()));
        }
        "cleansession" => b.cleansession = boolean(name, rest)?,
        "local_cleansession" => b.local_cleansession = Some(boolean(name, rest)?),
        "try_private" => b.try_private = boolean(name, rest)?,
        "notifications" => b.notifications = boolean(name, rest)?,
        "notifications_local_only" => b.notifications_local_only = boolean(name, rest)?,
        "notification_topic" => b.notification_topic = Some(one(name, rest)?.to_owned()),
        "bridge_insecure" => b.bridge_insecure = boolean(name, rest)?,
        "bridge_outgoing_retain" => b.bridge_outgoing_retain = boolean(name, rest)?,
        "bridge_attempt_unsubscribe" => b.bridge_attempt_unsubscribe = boolean(name, rest)?,
        "round_robin" => b.round_robin = boolean(name, rest)?,
        "keepalive_interval" => {
            let k: u16 = number(name, one(name, rest)?)?;
            // As Mosquitto: below 5 seconds is raised to 5.
            b.keepalive_interval = k.max(5);
        }
        "clientid" | "remote_clientid" => b.remote_clientid = Some(one(name, rest)?.to_owned()),
        "local_clientid" => b.local_clientid = Some(one(name, rest)?.to_owned()),
        "username" | "remote_username" => b.remote_username = Some(one(name, rest)?.to_owned()),
        "password" | "remote_password" => b.remote_password = Some(one(name, rest)?.to_owned()),
        "local_username" => b.local_username = Some(one(name, rest)?.to_owned()),
        "local_password" => b.local_password = Some(one(name, rest)?.to_owned()),
        "bridge_cafile" => b.bridge_cafile = Some(one(name, rest)?.into()),
        "bridge_capath" => b.bridge_capath = Some(one(name, rest)?.into()),
        "bridge_certfile" => b.bridge_certfile = Some(one(name, rest)?.into()),
        "bridge_keyfile" => b.bridge_keyfile = Some(one(name, rest)?.into()),
        "bridge_tls_version" => {
            let v = one(name, rest)?;
            if v != "tlsv1.2" && v != "tlsv1.3" {
                return Err(format!(
                    "bridge_tls_version is tlsv1.2 or tlsv1.3 (rustls has no older ones), not \"{v}\""
                ));
            }
            b.bridge_tls_version = Some(v.to_owned());
        }
        "bridge_alpn" => b.bridge_alpn = Some(one(name, rest)?.to_owned()),
        "bridge_protocol_version" => match one(name, rest)? {
            v @ ("mqttv31" | "mqttv311" | "mqttv50") => b.bridge_protocol_version = v.to_owned(),
            other => {
                return Err(format!(
                    "bridge_protocol_version is mqttv31, mqttv311 or mqttv50, not \"{other}\""
                ));
            }
        },
        "bridge_max_packet_size" => b.bridge_max_packet_size = number(name, one(name, rest)?)?,
        "restart_timeout" => {
            let words: Vec<&str> = rest
                .split_ascii_whitespace()
                .take_while(|w| !w.starts_with('#'))
                .collect();
            b.restart_timeout = Some(match words[..] {
                [n] => RestartTimeout::Fixed(number(name, n)?),
                [base, cap] => RestartTimeout::Backoff([number(name, base)?, number(name, cap)?]),
                _ => return Err("restart_timeout is `SECONDS` or `BASE CAP`".into()),
            });
        }
        "start_type" => match one(name, rest)? {
            "automatic" => {}
            other @ ("lazy" | "once") => {
                return Err(format!(
                    "start_type {other} is not supported yet: Tinsel's bridges start \
                     automatically (remove the line, or use `start_type automatic`)"
                ));
            }
            other => {
                return Err(format!(
                    "start_type is automatic, lazy or once, not \"{other}\""
                ));
            }
        },
        "idle_timeout" | "threshold" => {
            one(name, rest)?;
            return Ok(Read::Warn(format!(
                "{name} applies to lazy bridges, which Tinsel does not have; ignored"
            )));
        }
        "bridge_bind_address" | "bridge_identity" | "bridge_psk" | "bridge_require_ocsp" => {
            return Err(format!(
                "{name} is not supported yet (Tinsel's bridges use TLS with certificates, \
                 from the system's choice of local address)"
            ));
        }
        other => return Err(format!("{other} does not configure a bridge")),
    }
    Ok(Read::Done)
}
