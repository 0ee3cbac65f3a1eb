//! Helpers shared by the unit tests beside each packet.

use bytes::BytesMut;

use crate::{DecodeError, Packet, ProtocolVersion, decode_packet, encode_packet};

/// Encodes `p`, checks `encoded_len`, decodes it back and compares.
pub(crate) fn round_trip(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_packet(p, v, &mut buf).expect("encode");
    assert_eq!(p.encoded_len(v).unwrap(), buf.len());
    let bytes = buf.clone();
    let back = decode_packet(&mut buf, v, u32::MAX)
        .expect("decode")
        .expect("complete");
    assert!(buf.is_empty(), "left over");
    assert_eq!(&back, p);
    bytes
}

/// Decodes exactly `bytes` as one packet.
pub(crate) fn decode(bytes: &[u8], v: ProtocolVersion) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let p = decode_packet(&mut buf, v, u32::MAX)?.expect("complete frame");
    assert!(buf.is_empty());
    Ok(p)
}

/// Encodes `p` for `v`.
pub(crate) fn encode(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_packet(p, v, &mut buf).expect("encode");
    buf.to_vec()
}

/// Asserts that `bytes` fail to decode with `err`, and that its reason code is `code`.
pub(crate) fn reject(bytes: &[u8], v: ProtocolVersion, err: DecodeError, code: crate::ReasonCode) {
    let got = decode(bytes, v).expect_err("should be rejected");
    assert_eq!(got, err);
    assert_eq!(got.reason_code(), code, "{got:?}");
}
