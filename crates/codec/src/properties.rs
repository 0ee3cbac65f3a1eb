//! MQTT 5 properties: one struct for every packet type.
//!
//! Each packet type allows its own subset; decoding rejects a property the packet does not
//! allow, and one repeated that may appear once. Encoding writes what is set. Before
//! MQTT 5 properties are neither read nor written.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::{BufMut, Bytes};

use crate::primitives::{
    MAX_VARINT, binary_len, read_binary, read_bytes, read_string, read_u8, read_u16, read_u32,
    read_varint, string_len, varint_len, write_binary, write_string, write_varint,
};
use crate::{ByteStr, DecodeError, EncodeError};

/// A user property: a name/value pair that may repeat, order preserved.
pub type UserProperty = (ByteStr, ByteStr);

/// The values of a packet's MQTT 5 properties. `None` (or empty) means absent.
///
/// Read them through [`Properties`] (which derefs to this), set them with
/// [`Properties::make_mut`], or build a set and convert it with `Properties::from`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PropertyValues {
    /// 0x01 Payload Format Indicator (PUBLISH, will): 0 bytes, 1 UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval in seconds (PUBLISH, will).
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type (PUBLISH, will).
    pub content_type: Option<ByteStr>,
    /// 0x08 Response Topic (PUBLISH, will).
    pub response_topic: Option<ByteStr>,
    /// 0x09 Correlation Data (PUBLISH, will).
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifier: at most one in SUBSCRIBE, any number in PUBLISH.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval in seconds (CONNECT, CONNACK, DISCONNECT).
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier (CONNACK).
    pub assigned_client_identifier: Option<ByteStr>,
    /// 0x13 Server Keep Alive (CONNACK).
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method (CONNECT, CONNACK, AUTH).
    pub authentication_method: Option<ByteStr>,
    /// 0x16 Authentication Data (CONNECT, CONNACK, AUTH).
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information (CONNECT).
    pub request_problem_information: Option<u8>,
    /// 0x18 Will Delay Interval in seconds (will).
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information (CONNECT).
    pub request_response_information: Option<u8>,
    /// 0x1A Response Information (CONNACK).
    pub response_information: Option<ByteStr>,
    /// 0x1C Server Reference (CONNACK, DISCONNECT).
    pub server_reference: Option<ByteStr>,
    /// 0x1F Reason String (every acknowledgement, DISCONNECT, AUTH).
    pub reason_string: Option<ByteStr>,
    /// 0x21 Receive Maximum (CONNECT, CONNACK); never 0.
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum (CONNECT, CONNACK).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias (PUBLISH); never 0.
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS (CONNACK): 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available (CONNACK).
    pub retain_available: Option<u8>,
    /// 0x26 User Property (every packet with properties); may repeat.
    pub user_properties: Vec<UserProperty>,
    /// 0x27 Maximum Packet Size (CONNECT, CONNACK); never 0.
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available (CONNACK).
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29 Subscription Identifier Available (CONNACK).
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A Shared Subscription Available (CONNACK).
    pub shared_subscription_available: Option<u8>,
}

impl PropertyValues {
    /// No property set.
    pub const EMPTY: PropertyValues = PropertyValues {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };
}

/// The MQTT 5 properties of a packet: most packets carry none, so an empty set is a null
/// pointer and a set is shared, not copied, when the packet is cloned (a PUBLISH
/// delivered to many subscribers). Moving a packet moves 8 bytes of properties, not 400.
///
/// Reading derefs to [`PropertyValues`]; [`Properties::make_mut`] gives the values to
/// change (allocating or unsharing them), [`Properties::get_mut`] only if some are set.
#[derive(Clone, Default)]
pub struct Properties(Option<Arc<PropertyValues>>);

/// What an empty [`Properties`] reads as.
static NO_PROPERTIES: PropertyValues = PropertyValues::EMPTY;

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.0
            .as_deref()
            .is_none_or(|v| *v == PropertyValues::EMPTY)
    }

    /// The values, to change: allocated when there were none, copied when shared.
    pub fn make_mut(&mut self) -> &mut PropertyValues {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }

    /// The values to change, when any are set (copied when shared); None costs nothing.
    pub fn get_mut(&mut self) -> Option<&mut PropertyValues> {
        self.0.as_mut().map(Arc::make_mut)
    }
}

impl Deref for Properties {
    type Target = PropertyValues;
    fn deref(&self) -> &PropertyValues {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

impl From<PropertyValues> for Properties {
    fn from(v: PropertyValues) -> Properties {
        if v == PropertyValues::EMPTY {
            Properties(None)
        } else {
            Properties(Some(Arc::new(v)))
        }
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The set of properties one packet type allows, and its name for errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allowed {
    /// Bit `n` set: property identifier `n` is allowed.
    mask: u64,
    /// The packet's name, for [`DecodeError::PropertyNotAllowed`].
    packet: &'static str,
    /// PUBLISH may carry several Subscription Identifiers, SUBSCRIBE at most one.
    many_subscription_ids: bool,
}

const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

// Property identifiers (MQTT 5 section 2.2.2.2).
const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
const SERVER_KEEP_ALIVE: u8 = 0x13;
const AUTHENTICATION_METHOD: u8 = 0x15;
const AUTHENTICATION_DATA: u8 = 0x16;
const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
const WILL_DELAY_INTERVAL: u8 = 0x18;
const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
const RESPONSE_INFORMATION: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const RECEIVE_MAXIMUM: u8 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const TOPIC_ALIAS: u8 = 0x23;
const MAXIMUM_QOS: u8 = 0x24;
const RETAIN_AVAILABLE: u8 = 0x25;
const USER_PROPERTY: u8 = 0x26;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

impl Allowed {
    const fn new(packet: &'static str, ids: &[u8]) -> Allowed {
        Allowed {
            mask: mask(ids),
            packet,
            many_subscription_ids: false,
        }
    }

    fn allows(self, id: u8) -> bool {
        id < 64 && self.mask & (1 << id) != 0
    }

    pub(crate) const CONNECT: Allowed = Allowed::new(
        "CONNECT",
        &[
            SESSION_EXPIRY_INTERVAL,
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
            REQUEST_PROBLEM_INFORMATION,
            REQUEST_RESPONSE_INFORMATION,
            RECEIVE_MAXIMUM,
            TOPIC_ALIAS_MAXIMUM,
            USER_PROPERTY,
            MAXIMUM_PACKET_SIZE,
        ],
    );
    pub(crate) const WILL: Allowed = Allowed::new(
        "CONNECT will",
        &[
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            CONTENT_TYPE,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            WILL_DELAY_INTERVAL,
            USER_PROPERTY,
        ],
    );
    pub(crate) const CONNACK: Allowed = Allowed::new(
        "CONNACK",
        &[
            SESSION_EXPIRY_INTERVAL,
            ASSIGNED_CLIENT_IDENTIFIER,
            SERVER_KEEP_ALIVE,
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
            RESPONSE_INFORMATION,
            SERVER_REFERENCE,
            REASON_STRING,
            RECEIVE_MAXIMUM,
            TOPIC_ALIAS_MAXIMUM,
            MAXIMUM_QOS,
            RETAIN_AVAILABLE,
            USER_PROPERTY,
            MAXIMUM_PACKET_SIZE,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            SHARED_SUBSCRIPTION_AVAILABLE,
        ],
    );
    pub(crate) const PUBLISH: Allowed = Allowed {
        many_subscription_ids: true,
        ..Allowed::new(
            "PUBLISH",
            &[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                SUBSCRIPTION_IDENTIFIER,
                TOPIC_ALIAS,
                USER_PROPERTY,
            ],
        )
    };
    pub(crate) const PUBACK: Allowed = Allowed::new("PUBACK", &[REASON_STRING, USER_PROPERTY]);
    pub(crate) const PUBREC: Allowed = Allowed::new("PUBREC", &[REASON_STRING, USER_PROPERTY]);
    pub(crate) const PUBREL: Allowed = Allowed::new("PUBREL", &[REASON_STRING, USER_PROPERTY]);
    pub(crate) const PUBCOMP: Allowed = Allowed::new("PUBCOMP", &[REASON_STRING, USER_PROPERTY]);
    pub(crate) const SUBSCRIBE: Allowed =
        Allowed::new("SUBSCRIBE", &[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]);
    pub(crate) const SUBACK: Allowed = Allowed::new("SUBACK", &[REASON_STRING, USER_PROPERTY]);
    pub(crate) const UNSUBSCRIBE: Allowed = Allowed::new("UNSUBSCRIBE", &[USER_PROPERTY]);
    pub(crate) const UNSUBACK: Allowed = Allowed::new("UNSUBACK", &[REASON_STRING, USER_PROPERTY]);
    pub(crate) const DISCONNECT: Allowed = Allowed::new(
        "DISCONNECT",
        &[
            SESSION_EXPIRY_INTERVAL,
            SERVER_REFERENCE,
            REASON_STRING,
            USER_PROPERTY,
        ],
    );
    pub(crate) const AUTH: Allowed = Allowed::new(
        "AUTH",
        &[
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
            REASON_STRING,
            USER_PROPERTY,
        ],
    );
}

/// One property value on the wire, borrowed from a [`PropertyValues`].
enum Prop<'a> {
    Byte(u8, u8),
    U16(u8, u16),
    U32(u8, u32),
    VarInt(u8, u32),
    Str(u8, &'a ByteStr),
    Bin(u8, &'a Bytes),
    Pair(&'a ByteStr, &'a ByteStr),
}

impl Prop<'_> {
    fn id(&self) -> u8 {
        match *self {
            Prop::Byte(id, _)
            | Prop::U16(id, _)
            | Prop::U32(id, _)
            | Prop::VarInt(id, _)
            | Prop::Str(id, _)
            | Prop::Bin(id, _) => id,
            Prop::Pair(..) => USER_PROPERTY,
        }
    }

    /// Encoded size, identifier included.
    fn len(&self) -> Result<usize, EncodeError> {
        Ok(1 + match *self {
            Prop::Byte(..) => 1,
            Prop::U16(..) => 2,
            Prop::U32(..) => 4,
            Prop::VarInt(_, v) => {
                if v > MAX_VARINT {
                    return Err(EncodeError::PacketTooLarge);
                }
                varint_len(v)
            }
            Prop::Str(_, s) => string_len(s),
            Prop::Bin(_, b) => binary_len(b)?,
            Prop::Pair(k, v) => string_len(k) + string_len(v),
        })
    }

    fn write(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.id());
        match *self {
            Prop::Byte(_, v) => dst.put_u8(v),
            Prop::U16(_, v) => dst.put_u16(v),
            Prop::U32(_, v) => dst.put_u32(v),
            Prop::VarInt(_, v) => write_varint(dst, v),
            Prop::Str(_, s) => write_string(dst, s),
            Prop::Bin(_, b) => write_binary(dst, b),
            Prop::Pair(k, v) => {
                write_string(dst, k);
                write_string(dst, v);
            }
        }
    }
}

impl PropertyValues {
    /// Calls `f` for every set property that `allowed` permits, in identifier order.
    /// The single list of fields both the length pass and the write pass use.
    fn visit<'a>(&'a self, allowed: Allowed, mut f: impl FnMut(Prop<'a>)) {
        let mut put = |p: Prop<'a>| {
            if allowed.allows(p.id()) {
                f(p);
            }
        };
        if let Some(v) = self.payload_format_indicator {
            put(Prop::Byte(PAYLOAD_FORMAT_INDICATOR, v));
        }
        if let Some(v) = self.message_expiry_interval {
            put(Prop::U32(MESSAGE_EXPIRY_INTERVAL, v));
        }
        if let Some(v) = &self.content_type {
            put(Prop::Str(CONTENT_TYPE, v));
        }
        if let Some(v) = &self.response_topic {
            put(Prop::Str(RESPONSE_TOPIC, v));
        }
        if let Some(v) = &self.correlation_data {
            put(Prop::Bin(CORRELATION_DATA, v));
        }
        let ids = if allowed.many_subscription_ids {
            &self.subscription_identifiers[..]
        } else {
            // SUBSCRIBE carries at most one [MQTT-3.8.2.1.2]; extra ones are not written.
            self.subscription_identifiers.get(..1).unwrap_or_default()
        };
        for &v in ids {
            put(Prop::VarInt(SUBSCRIPTION_IDENTIFIER, v));
        }
        if let Some(v) = self.session_expiry_interval {
            put(Prop::U32(SESSION_EXPIRY_INTERVAL, v));
        }
        if let Some(v) = &self.assigned_client_identifier {
            put(Prop::Str(ASSIGNED_CLIENT_IDENTIFIER, v));
        }
        if let Some(v) = self.server_keep_alive {
            put(Prop::U16(SERVER_KEEP_ALIVE, v));
        }
        if let Some(v) = &self.authentication_method {
            put(Prop::Str(AUTHENTICATION_METHOD, v));
        }
        if let Some(v) = &self.authentication_data {
            put(Prop::Bin(AUTHENTICATION_DATA, v));
        }
        if let Some(v) = self.request_problem_information {
            put(Prop::Byte(REQUEST_PROBLEM_INFORMATION, v));
        }
        if let Some(v) = self.will_delay_interval {
            put(Prop::U32(WILL_DELAY_INTERVAL, v));
        }
        if let Some(v) = self.request_response_information {
            put(Prop::Byte(REQUEST_RESPONSE_INFORMATION, v));
        }
        if let Some(v) = &self.response_information {
            put(Prop::Str(RESPONSE_INFORMATION, v));
        }
        if let Some(v) = &self.server_reference {
            put(Prop::Str(SERVER_REFERENCE, v));
        }
        if let Some(v) = &self.reason_string {
            put(Prop::Str(REASON_STRING, v));
        }
        if let Some(v) = self.receive_maximum {
            put(Prop::U16(RECEIVE_MAXIMUM, v));
        }
        if let Some(v) = self.topic_alias_maximum {
            put(Prop::U16(TOPIC_ALIAS_MAXIMUM, v));
        }
        if let Some(v) = self.topic_alias {
            put(Prop::U16(TOPIC_ALIAS, v));
        }
        if let Some(v) = self.maximum_qos {
            put(Prop::Byte(MAXIMUM_QOS, v));
        }
        if let Some(v) = self.retain_available {
            put(Prop::Byte(RETAIN_AVAILABLE, v));
        }
        for (k, v) in &self.user_properties {
            put(Prop::Pair(k, v));
        }
        if let Some(v) = self.maximum_packet_size {
            put(Prop::U32(MAXIMUM_PACKET_SIZE, v));
        }
        if let Some(v) = self.wildcard_subscription_available {
            put(Prop::Byte(WILDCARD_SUBSCRIPTION_AVAILABLE, v));
        }
        if let Some(v) = self.subscription_identifier_available {
            put(Prop::Byte(SUBSCRIPTION_IDENTIFIER_AVAILABLE, v));
        }
        if let Some(v) = self.shared_subscription_available {
            put(Prop::Byte(SHARED_SUBSCRIPTION_AVAILABLE, v));
        }
    }

    /// Size of the properties alone (without the property length), counting only those
    /// `allowed` permits.
    pub(crate) fn body_len(&self, allowed: Allowed) -> Result<usize, EncodeError> {
        let mut total = 0usize;
        let mut err = None;
        self.visit(allowed, |p| match p.len() {
            Ok(n) => total += n,
            Err(e) => err = Some(e),
        });
        match err {
            Some(e) => Err(e),
            None if total > MAX_VARINT as usize => Err(EncodeError::PacketTooLarge),
            None => Ok(total),
        }
    }

    /// Size of the property length plus the properties.
    pub(crate) fn encoded_len(&self, allowed: Allowed) -> Result<usize, EncodeError> {
        let n = self.body_len(allowed)?;
        Ok(varint_len(n as u32) + n)
    }

    /// Writes the property length and the properties `allowed` permits. Properties the
    /// packet type does not allow are skipped, so a will's properties can be reused for the
    /// PUBLISH that delivers it.
    pub(crate) fn encode(&self, allowed: Allowed, dst: &mut impl BufMut) {
        // The length pass has run: this cannot fail, and the value fits a varint.
        let n = self.body_len(allowed).unwrap_or(0);
        write_varint(dst, n as u32);
        self.visit(allowed, |p| p.write(dst));
    }
}

impl Properties {
    /// Reads a property length and the properties that follow it, checking each against
    /// `allowed` [MQTT-2.2.2-2] (MQTT 5 section 2.2.2.2: an identifier not valid for the
    /// packet type is a Malformed Packet).
    pub(crate) fn decode(buf: &mut Bytes, allowed: Allowed) -> Result<Properties, DecodeError> {
        let len = read_varint(buf)?;
        let mut body = read_bytes(buf, len as usize)?;
        if body.is_empty() {
            return Ok(Properties::default());
        }
        let mut p = PropertyValues::default();
        while !body.is_empty() {
            let id = read_varint(&mut body)?;
            let id = u8::try_from(id).map_err(|_| DecodeError::UnknownProperty(0xFF))?;
            if !known(id) {
                return Err(DecodeError::UnknownProperty(id));
            }
            if !allowed.allows(id) {
                return Err(DecodeError::PropertyNotAllowed {
                    property: id,
                    packet: allowed.packet,
                });
            }
            p.decode_one(id, &mut body, allowed)?;
        }
        Ok(Properties::from(p))
    }
}

impl PropertyValues {
    fn decode_one(&mut self, id: u8, b: &mut Bytes, allowed: Allowed) -> Result<(), DecodeError> {
        // Each property except User Property (and Subscription Identifier in PUBLISH) may
        // appear once: "It is a Protocol Error to include ... more than once".
        fn once<T>(slot: &mut Option<T>, id: u8, v: T) -> Result<(), DecodeError> {
            if slot.is_some() {
                return Err(DecodeError::DuplicateProperty(id));
            }
            *slot = Some(v);
            Ok(())
        }
        // Flag bytes: "a value other than 0 or 1" is a Protocol Error.
        fn flag(b: &mut Bytes, id: u8) -> Result<u8, DecodeError> {
            match read_u8(b)? {
                v @ (0 | 1) => Ok(v),
                _ => Err(DecodeError::InvalidPropertyValue(id)),
            }
        }
        fn non_zero_u16(b: &mut Bytes, id: u8) -> Result<u16, DecodeError> {
            match read_u16(b)? {
                0 => Err(DecodeError::InvalidPropertyValue(id)),
                v => Ok(v),
            }
        }
        match id {
            PAYLOAD_FORMAT_INDICATOR => once(&mut self.payload_format_indicator, id, flag(b, id)?),
            MESSAGE_EXPIRY_INTERVAL => once(&mut self.message_expiry_interval, id, read_u32(b)?),
            CONTENT_TYPE => once(&mut self.content_type, id, read_string(b)?),
            RESPONSE_TOPIC => {
                let t = read_string(b)?;
                // The Response Topic is a topic name: no wildcards [MQTT-3.3.2-14].
                if !crate::topic::valid_topic_name(&t) {
                    return Err(DecodeError::InvalidPropertyValue(id));
                }
                once(&mut self.response_topic, id, t)
            }
            CORRELATION_DATA => once(&mut self.correlation_data, id, read_binary(b)?),
            SUBSCRIPTION_IDENTIFIER => {
                // "It is a Protocol Error if the Subscription Identifier has a value of 0."
                let v = read_varint(b)?;
                if v == 0 {
                    return Err(DecodeError::InvalidPropertyValue(id));
                }
                if !allowed.many_subscription_ids && !self.subscription_identifiers.is_empty() {
                    return Err(DecodeError::DuplicateProperty(id));
                }
                self.subscription_identifiers.push(v);
                Ok(())
            }
            SESSION_EXPIRY_INTERVAL => once(&mut self.session_expiry_interval, id, read_u32(b)?),
            ASSIGNED_CLIENT_IDENTIFIER => {
                once(&mut self.assigned_client_identifier, id, read_string(b)?)
            }
            SERVER_KEEP_ALIVE => once(&mut self.server_keep_alive, id, read_u16(b)?),
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, id, read_string(b)?),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, id, read_binary(b)?),
            REQUEST_PROBLEM_INFORMATION => {
                once(&mut self.request_problem_information, id, flag(b, id)?)
            }
            WILL_DELAY_INTERVAL => once(&mut self.will_delay_interval, id, read_u32(b)?),
            REQUEST_RESPONSE_INFORMATION => {
                once(&mut self.request_response_information, id, flag(b, id)?)
            }
            RESPONSE_INFORMATION => once(&mut self.response_information, id, read_string(b)?),
            SERVER_REFERENCE => once(&mut self.server_reference, id, read_string(b)?),
            REASON_STRING => once(&mut self.reason_string, id, read_string(b)?),
            // "It is a Protocol Error to include the value 0."
            RECEIVE_MAXIMUM => once(&mut self.receive_maximum, id, non_zero_u16(b, id)?),
            TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, id, read_u16(b)?),
            // "A Topic Alias of 0 is not permitted" [MQTT-3.3.2-8].
            TOPIC_ALIAS => once(&mut self.topic_alias, id, non_zero_u16(b, id)?),
            MAXIMUM_QOS => once(&mut self.maximum_qos, id, flag(b, id)?),
            RETAIN_AVAILABLE => once(&mut self.retain_available, id, flag(b, id)?),
            USER_PROPERTY => {
                let k = read_string(b)?;
                let v = read_string(b)?;
                self.user_properties.push((k, v));
                Ok(())
            }
            MAXIMUM_PACKET_SIZE => {
                // "It is a Protocol Error to include ... the value zero."
                let v = read_u32(b)?;
                if v == 0 {
                    return Err(DecodeError::InvalidPropertyValue(id));
                }
                once(&mut self.maximum_packet_size, id, v)
            }
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                once(&mut self.wildcard_subscription_available, id, flag(b, id)?)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => once(
                &mut self.subscription_identifier_available,
                id,
                flag(b, id)?,
            ),
            SHARED_SUBSCRIPTION_AVAILABLE => {
                once(&mut self.shared_subscription_available, id, flag(b, id)?)
            }
            _ => Err(DecodeError::UnknownProperty(id)),
        }
    }
}

#[cfg(test)]
impl Properties {
    /// These properties without those `allowed` does not permit: what a decoder of an
    /// encoding of them returns.
    pub(crate) fn only(self, allowed: Allowed) -> Properties {
        Properties::from((*self).clone().only(allowed))
    }
}

#[cfg(test)]
impl PropertyValues {
    /// These properties without those `allowed` does not permit: what a decoder of an
    /// encoding of them returns.
    fn only(mut self, allowed: Allowed) -> PropertyValues {
        fn keep<T>(slot: &mut Option<T>, allowed: Allowed, id: u8) {
            if !allowed.allows(id) {
                *slot = None;
            }
        }
        keep(
            &mut self.payload_format_indicator,
            allowed,
            PAYLOAD_FORMAT_INDICATOR,
        );
        keep(
            &mut self.message_expiry_interval,
            allowed,
            MESSAGE_EXPIRY_INTERVAL,
        );
        keep(&mut self.content_type, allowed, CONTENT_TYPE);
        keep(&mut self.response_topic, allowed, RESPONSE_TOPIC);
        keep(&mut self.correlation_data, allowed, CORRELATION_DATA);
        if !allowed.allows(SUBSCRIPTION_IDENTIFIER) {
            self.subscription_identifiers.clear();
        } else if !allowed.many_subscription_ids {
            self.subscription_identifiers.truncate(1);
        }
        keep(
            &mut self.session_expiry_interval,
            allowed,
            SESSION_EXPIRY_INTERVAL,
        );
        keep(
            &mut self.assigned_client_identifier,
            allowed,
            ASSIGNED_CLIENT_IDENTIFIER,
        );
        keep(&mut self.server_keep_alive, allowed, SERVER_KEEP_ALIVE);
        keep(
            &mut self.authentication_method,
            allowed,
            AUTHENTICATION_METHOD,
        );
        keep(&mut self.authentication_data, allowed, AUTHENTICATION_DATA);
        keep(
            &mut self.request_problem_information,
            allowed,
            REQUEST_PROBLEM_INFORMATION,
        );
        keep(&mut self.will_delay_interval, allowed, WILL_DELAY_INTERVAL);
        keep(
            &mut self.request_response_information,
            allowed,
            REQUEST_RESPONSE_INFORMATION,
        );
        keep(
            &mut self.response_information,
            allowed,
            RESPONSE_INFORMATION,
        );
        keep(&mut self.server_reference, allowed, SERVER_REFERENCE);
        keep(&mut self.reason_string, allowed, REASON_STRING);
        keep(&mut self.receive_maximum, allowed, RECEIVE_MAXIMUM);
        keep(&mut self.topic_alias_maximum, allowed, TOPIC_ALIAS_MAXIMUM);
        keep(&mut self.topic_alias, allowed, TOPIC_ALIAS);
        keep(&mut self.maximum_qos, allowed, MAXIMUM_QOS);
        keep(&mut self.retain_available, allowed, RETAIN_AVAILABLE);
        if !allowed.allows(USER_PROPERTY) {
            self.user_properties.clear();
        }
        keep(&mut self.maximum_packet_size, allowed, MAXIMUM_PACKET_SIZE);
        keep(
            &mut self.wildcard_subscription_available,
            allowed,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
        );
        keep(
            &mut self.subscription_identifier_available,
            allowed,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        );
        keep(
            &mut self.shared_subscription_available,
            allowed,
            SHARED_SUBSCRIPTION_AVAILABLE,
        );
        self
    }
}

/// True for the identifiers MQTT 5 defines.
fn known(id: u8) -> bool {
    matches!(
        id,
        0x01..=0x03
            | 0x08
            | 0x09
            | 0x0B
            | 0x11..=0x13
            | 0x15..=0x1A
            | 0x1C
            | 0x1F
            | 0x21..=0x2A
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_properties_hold_no_values_and_read_as_none() {
        let p = Properties::default();
        assert!(p.is_empty());
        assert_eq!(p.0, None);
        assert_eq!(p.message_expiry_interval, None);
        assert!(p.user_properties.is_empty());
        assert_eq!(std::mem::size_of::<Properties>(), 8);
        // A set built with nothing in it is empty too, and equal to the default.
        let built = Properties::from(PropertyValues::default());
        assert_eq!(built.0, None);
        assert_eq!(built, p);
    }

    #[test]
    fn get_mut_allocates_nothing_but_make_mut_does() {
        let mut p = Properties::default();
        assert!(p.get_mut().is_none());
        assert_eq!(p.0, None);
        p.make_mut().topic_alias = Some(3);
        assert!(!p.is_empty());
        assert_eq!(p.get_mut().map(|v| v.topic_alias), Some(Some(3)));
        // Cleared again, it is empty although it still has its values allocated.
        p.make_mut().topic_alias = None;
        assert!(p.is_empty());
        assert_eq!(p, Properties::default());
    }

    #[test]
    fn clones_share_values_until_one_changes() {
        let mut a = Properties::default();
        a.make_mut().message_expiry_interval = Some(60);
        let mut b = a.clone();
        assert!(Arc::ptr_eq(a.0.as_ref().unwrap(), b.0.as_ref().unwrap()));
        b.make_mut().message_expiry_interval = Some(30);
        assert_eq!(a.message_expiry_interval, Some(60));
        assert_eq!(b.message_expiry_interval, Some(30));
        assert_ne!(a, b);
    }
}
