//! Decodes arbitrary bytes in every protocol version. Whatever decodes must re-encode,
//! decode again to the same packet, and re-encode to the same bytes (stable encoding).
//! Nothing may panic.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tinsel_codec::{ProtocolVersion, decode_packet, encode_packet};

fuzz_target!(|data: &[u8]| {
    for version in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        let mut buf = BytesMut::from(data);
        // Decode every packet in the input, as a connection's read loop would.
        while let Ok(Some(packet)) = decode_packet(&mut buf, version, 1 << 20) {
            let mut first = BytesMut::new();
            encode_packet(&packet, version, &mut first).expect("a decoded packet encodes");
            assert_eq!(packet.encoded_len(version), Ok(first.len()));
            let mut copy = first.clone();
            let again = decode_packet(&mut copy, version, u32::MAX)
                .expect("re-encoding decodes")
                .expect("re-encoding is a whole packet");
            assert!(copy.is_empty(), "re-encoding has trailing bytes");
            assert_eq!(again, packet, "decode(encode(p)) != p");
            let mut second = BytesMut::new();
            encode_packet(&again, version, &mut second).expect("encodes twice");
            assert_eq!(first, second, "encoding is not stable");
        }
    }
});
