//! UNSUBSCRIBE.

use bytes::{BufMut, Bytes};

use crate::primitives::{read_string, string_len, write_string};
use crate::properties::Allowed;
use crate::subscribe::{decode_filter_list, encode_header, header_len};
use crate::{ByteStr, DecodeError, EncodeError, Properties, ProtocolVersion};

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier; never 0.
    pub packet_id: u16,
    /// MQTT 5 properties (user properties).
    pub properties: Properties,
    /// Topic filters; at least one.
    pub filters: Vec<ByteStr>,
}

impl Unsubscribe {
    pub(crate) fn decode(b: Bytes, version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
        // Strings only; the broker judges filter syntax.
        let (packet_id, properties, filters) =
            decode_filter_list(b, version, Allowed::UNSUBSCRIBE, read_string)?;
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let n = header_len(
            self.packet_id,
            &self.properties,
            version,
            Allowed::UNSUBSCRIBE,
        )?;
        Ok(n + self.filters.iter().map(string_len).sum::<usize>())
    }

    pub(crate) fn encode(&self, version: ProtocolVersion, dst: &mut impl BufMut) {
        encode_header(
            self.packet_id,
            &self.properties,
            version,
            Allowed::UNSUBSCRIBE,
            dst,
        );
        for f in &self.filters {
            write_string(dst, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{encode, reject, round_trip};
    use crate::{Packet, ProtocolVersion::*, ReasonCode};

    #[test]
    fn golden() {
        let mut u = Unsubscribe {
            packet_id: 2,
            properties: Properties::default(),
            filters: vec![ByteStr::from_static("a/b"), ByteStr::from_static("#")],
        };
        let p = Packet::Unsubscribe(u.clone());
        let want = [0xA2, 10, 0, 2, 0, 3, b'a', b'/', b'b', 0, 1, b'#'];
        assert_eq!(encode(&p, V311), want);
        round_trip(&p, V311);
        round_trip(&p, V5);
        u.properties
            .make_mut()
            .user_properties
            .push((ByteStr::from_static("k"), ByteStr::new()));
        round_trip(&Packet::Unsubscribe(u), V5);
    }

    #[test]
    fn malformed() {
        use DecodeError as E;
        let mal = ReasonCode::MALFORMED_PACKET;
        // No filters [MQTT-3.10.3-2].
        reject(
            &[0xA2, 2, 0, 1],
            V311,
            E::NoTopicFilters,
            ReasonCode::PROTOCOL_ERROR,
        );
        // Flags 0010 [MQTT-3.10.1-1].
        reject(
            &[0xA0, 5, 0, 1, 0, 1, b'a'],
            V311,
            E::InvalidHeaderFlags {
                packet: "UNSUBSCRIBE",
                flags: 0,
            },
            mal,
        );
        reject(&[0xA2, 5, 0, 0, 0, 1, b'a'], V311, E::ZeroPacketId, mal);
        reject(&[0xA2, 5, 0, 1, 0, 2, b'a'], V311, E::UnexpectedEof, mal);
        // Only user properties.
        reject(
            &[0xA2, 9, 0, 1, 3, 0x1F, 0, 0, 0, 1, b'a'],
            V5,
            E::PropertyNotAllowed {
                property: 0x1F,
                packet: "UNSUBSCRIBE",
            },
            mal,
        );
    }
}
