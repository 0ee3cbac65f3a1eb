//! `-D command identifier value`: MQTT 5 properties in Mosquitto's syntax.

use bytes::Bytes;
use tinsel_codec::{ByteStr, Properties};

/// Properties given with `-D`, per packet they go into.
#[derive(Debug, Default, Clone)]
pub(crate) struct PropSet {
    pub(crate) connect: Properties,
    pub(crate) publish: Properties,
    pub(crate) subscribe: Properties,
    pub(crate) unsubscribe: Properties,
    pub(crate) disconnect: Properties,
    pub(crate) will: Properties,
    /// True once any property was given (they need MQTT 5).
    pub(crate) any: bool,
}

/// How many values a property identifier takes (`user-property` takes two).
pub(crate) fn arity(identifier: &str) -> usize {
    if identifier == "user-property" { 2 } else { 1 }
}

fn s(v: &str) -> Result<ByteStr, String> {
    ByteStr::try_from(v).map_err(|_| format!("Invalid string value '{v}'."))
}

fn num<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, String> {
    v.parse::<T>()
        .map_err(|_| format!("Invalid value '{v}' for property {what}."))
}

impl PropSet {
    /// Adds one `-D` property. `values` has [`arity`] entries.
    pub(crate) fn add(
        &mut self,
        command: &str,
        identifier: &str,
        values: &[String],
    ) -> Result<(), String> {
        const CONNECT: &[&str] = &[
            "authentication-data",
            "authentication-method",
            "maximum-packet-size",
            "receive-maximum",
            "request-problem-information",
            "request-response-information",
            "session-expiry-interval",
            "topic-alias-maximum",
            "user-property",
        ];
        const PUBLISH: &[&str] = &[
            "content-type",
            "correlation-data",
            "message-expiry-interval",
            "payload-format-indicator",
            "response-topic",
            "topic-alias",
            "user-property",
        ];
        const SUBSCRIBE: &[&str] = &["subscription-identifier", "user-property"];
        const UNSUBSCRIBE: &[&str] = &["user-property"];
        const DISCONNECT: &[&str] = &["session-expiry-interval", "reason-string", "user-property"];
        const WILL: &[&str] = &[
            "content-type",
            "correlation-data",
            "message-expiry-interval",
            "payload-format-indicator",
            "response-topic",
            "user-property",
            "will-delay-interval",
        ];
        let (allowed, props) = match command {
            "connect" => (CONNECT, &mut self.connect),
            "publish" => (PUBLISH, &mut self.publish),
            "subscribe" => (SUBSCRIBE, &mut self.subscribe),
            "unsubscribe" => (UNSUBSCRIBE, &mut self.unsubscribe),
            "disconnect" => (DISCONNECT, &mut self.disconnect),
            "will" => (WILL, &mut self.will),
            _ => return Err(format!("Invalid command '{command}' given in property.")),
        };
        if !ALL.contains(&identifier) {
            return Err(format!("Invalid property name '{identifier}'."));
        }
        if !allowed.contains(&identifier) {
            return Err(format!(
                "{identifier} property not allowed for {command} in --property argument."
            ));
        }
        let v = values[0].as_str();
        match identifier {
            "authentication-data" => {
                props.make_mut().authentication_data = Some(Bytes::copy_from_slice(v.as_bytes()))
            }
            "authentication-method" => props.make_mut().authentication_method = Some(s(v)?),
            "maximum-packet-size" => {
                props.make_mut().maximum_packet_size =
                    Some(nonzero(num(v, identifier)?, identifier)?)
            }
            "receive-maximum" => {
                props.make_mut().receive_maximum = Some(nonzero(num(v, identifier)?, identifier)?)
            }
            "request-problem-information" => {
                props.make_mut().request_problem_information =
                    Some(flag(num(v, identifier)?, identifier)?)
            }
            "request-response-information" => {
                props.make_mut().request_response_information =
                    Some(flag(num(v, identifier)?, identifier)?)
            }
            "session-expiry-interval" => {
                props.make_mut().session_expiry_interval = Some(num(v, identifier)?)
            }
            "topic-alias-maximum" => {
                props.make_mut().topic_alias_maximum = Some(num(v, identifier)?)
            }
            "content-type" => props.make_mut().content_type = Some(s(v)?),
            "correlation-data" => {
                props.make_mut().correlation_data = Some(Bytes::copy_from_slice(v.as_bytes()))
            }
            "message-expiry-interval" => {
                props.make_mut().message_expiry_interval = Some(num(v, identifier)?)
            }
            "payload-format-indicator" => {
                props.make_mut().payload_format_indicator =
                    Some(flag(num(v, identifier)?, identifier)?)
            }
            "response-topic" => props.make_mut().response_topic = Some(s(v)?),
            "topic-alias" => {
                props.make_mut().topic_alias = Some(nonzero(num(v, identifier)?, identifier)?)
            }
            "subscription-identifier" => {
                let id: u32 = num(v, identifier)?;
                if id == 0 || id > 268_435_455 {
                    return Err(format!("Invalid value '{v}' for property {identifier}."));
                }
                props.make_mut().subscription_identifiers = vec![id];
            }
            "reason-string" => props.make_mut().reason_string = Some(s(v)?),
            "will-delay-interval" => {
                props.make_mut().will_delay_interval = Some(num(v, identifier)?)
            }
            "user-property" => props
                .make_mut()
                .user_properties
                .push((s(v)?, s(&values[1])?)),
            _ => return Err(format!("Invalid property name '{identifier}'.")),
        }
        self.any = true;
        Ok(())
    }
}

const ALL: &[&str] = &[
    "authentication-data",
    "authentication-method",
    "maximum-packet-size",
    "receive-maximum",
    "request-problem-information",
    "request-response-information",
    "session-expiry-interval",
    "topic-alias-maximum",
    "content-type",
    "correlation-data",
    "message-expiry-interval",
    "payload-format-indicator",
    "response-topic",
    "topic-alias",
    "subscription-identifier",
    "reason-string",
    "will-delay-interval",
    "user-property",
];

fn nonzero<T: Default + PartialEq>(v: T, what: &str) -> Result<T, String> {
    if v == T::default() {
        Err(format!("Invalid value 0 for property {what}."))
    } else {
        Ok(v)
    }
}

fn flag(v: u8, what: &str) -> Result<u8, String> {
    if v > 1 {
        Err(format!("Invalid value {v} for property {what}."))
    } else {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_rejects() {
        let mut p = PropSet::default();
        p.add("publish", "user-property", &["k".into(), "v".into()])
            .unwrap();
        p.add("publish", "message-expiry-interval", &["30".into()])
            .unwrap();
        p.add("subscribe", "subscription-identifier", &["7".into()])
            .unwrap();
        assert_eq!(p.publish.user_properties.len(), 1);
        assert_eq!(p.publish.message_expiry_interval, Some(30));
        assert_eq!(p.subscribe.subscription_identifiers, vec![7]);
        assert!(p.add("publish", "receive-maximum", &["3".into()]).is_err());
        assert!(p.add("publish", "nonsense", &["3".into()]).is_err());
        assert!(
            p.add("bogus", "user-property", &["a".into(), "b".into()])
                .is_err()
        );
        assert!(p.add("connect", "receive-maximum", &["0".into()]).is_err());
        assert!(
            p.add("publish", "message-expiry-interval", &["x".into()])
                .is_err()
        );
    }
}
