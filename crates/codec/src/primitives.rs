//! Primitive readers and writers: variable byte integer, two-byte integer, UTF-8 string,
//! binary data. Each rejects over-long lengths and truncated input in one place.
//!
//! Readers take the packet body as a [`Bytes`] and split fields off its front, so a string
//! or a payload read here shares the buffer it came from. Writers are infallible: the
//! packet's length pass (`*_len` functions) has already checked every limit.

use bytes::{Buf, BufMut, Bytes};

use crate::{ByteStr, DecodeError, EncodeError};

/// The largest value a variable byte integer can hold (four bytes) [MQTT-1.5.5-1].
pub(crate) const MAX_VARINT: u32 = 268_435_455;

/// The largest string or binary field: its length is a two-byte integer.
pub(crate) const MAX_FIELD: usize = 65_535;

/// Reads one byte.
pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::UnexpectedEof);
    }
    Ok(buf.get_u8())
}

/// Reads a big-endian two-byte integer.
pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    if buf.len() < 2 {
        return Err(DecodeError::UnexpectedEof);
    }
    Ok(buf.get_u16())
}

/// Reads a big-endian four-byte integer.
pub(crate) fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::UnexpectedEof);
    }
    Ok(buf.get_u32())
}

/// Outcome of parsing a variable byte integer from a slice that may be incomplete.
pub(crate) enum VarInt {
    /// The value and how many bytes encoded it.
    Value(u32, usize),
    /// The slice ended while the continuation bit was still set.
    Incomplete,
}

/// Parses a variable byte integer at the start of `bytes`. A fifth byte is never read: a
/// continuation bit on the fourth is malformed [MQTT-1.5.5-1]. Non-minimal encodings
/// (`0x80 0x00`) are accepted, as most implementations do.
pub(crate) fn parse_varint(bytes: &[u8]) -> Result<VarInt, DecodeError> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(VarInt::Value(value, i + 1));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::MalformedVarInt)
    } else {
        Ok(VarInt::Incomplete)
    }
}

/// Reads a variable byte integer from a packet body, where running out is an error.
pub(crate) fn read_varint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    match parse_varint(buf)? {
        VarInt::Value(v, n) => {
            buf.advance(n);
            Ok(v)
        }
        VarInt::Incomplete => Err(DecodeError::UnexpectedEof),
    }
}

/// Splits `len` bytes off the front of `buf`.
pub(crate) fn read_bytes(buf: &mut Bytes, len: usize) -> Result<Bytes, DecodeError> {
    if buf.len() < len {
        return Err(DecodeError::UnexpectedEof);
    }
    Ok(buf.split_to(len))
}

/// Reads binary data: a two-byte length, then that many bytes.
pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = read_u16(buf)?;
    read_bytes(buf, usize::from(len))
}

/// Reads a UTF-8 string: binary data that must be valid UTF-8 without U+0000
/// [MQTT-1.5.4-1] [MQTT-1.5.4-2].
pub(crate) fn read_string(buf: &mut Bytes) -> Result<ByteStr, DecodeError> {
    ByteStr::from_utf8(read_binary(buf)?).ok_or(DecodeError::InvalidString)
}

/// Fails with `TrailingBytes` unless `buf` has been read to its end.
pub(crate) fn finish(buf: &Bytes) -> Result<(), DecodeError> {
    if buf.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes(buf.len()))
    }
}

/// Reads a non-zero packet identifier [MQTT-2.2.1-3].
pub(crate) fn read_packet_id(buf: &mut Bytes) -> Result<u16, DecodeError> {
    match read_u16(buf)? {
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

/// How many bytes the variable byte integer `v` takes.
pub(crate) fn varint_len(v: u32) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a variable byte integer in the fewest bytes. `v` must not exceed [`MAX_VARINT`]
/// (the length pass checked it).
pub(crate) fn write_varint(dst: &mut impl BufMut, mut v: u32) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            dst.put_u8(byte);
            return;
        }
        dst.put_u8(byte | 0x80);
    }
}

/// Length of a binary field (two-byte length plus data); fails over 65,535 bytes.
pub(crate) fn binary_len(data: &[u8]) -> Result<usize, EncodeError> {
    if data.len() > MAX_FIELD {
        return Err(EncodeError::InvalidString);
    }
    Ok(2 + data.len())
}

/// Length of a string field. A [`ByteStr`] is at most 65,535 bytes by construction.
pub(crate) fn string_len(s: &ByteStr) -> usize {
    2 + s.as_bytes().len()
}

/// Writes binary data (or a string's bytes) with its two-byte length. The length pass has
/// checked that it fits.
pub(crate) fn write_binary(dst: &mut impl BufMut, data: &[u8]) {
    dst.put_u16(data.len() as u16);
    dst.put_slice(data);
}

/// Writes a UTF-8 string with its two-byte length.
pub(crate) fn write_string(dst: &mut impl BufMut, s: &ByteStr) {
    write_binary(dst, s.as_bytes());
}

/// Checks that a packet identifier which the packet requires is non-zero.
pub(crate) fn check_packet_id(id: u16) -> Result<(), EncodeError> {
    if id == 0 {
        Err(EncodeError::ZeroPacketId)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn varint_boundaries_round_trip() {
        // The spec's table of boundaries (section 1.5.5).
        for (v, n) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (MAX_VARINT, 4),
        ] {
            let mut b = BytesMut::new();
            write_varint(&mut b, v);
            assert_eq!(b.len(), n, "{v}");
            assert_eq!(varint_len(v), n);
            let mut bytes = b.freeze();
            assert_eq!(read_varint(&mut bytes).unwrap(), v);
            assert!(bytes.is_empty());
        }
    }

    #[test]
    fn varint_golden() {
        let mut b = BytesMut::new();
        write_varint(&mut b, 321);
        assert_eq!(&b[..], &[0xC1, 0x02]);
        write_varint(&mut b, MAX_VARINT);
        assert_eq!(&b[2..], &[0xFF, 0xFF, 0xFF, 0x7F]);
    }

    #[test]
    fn varint_rejects_five_bytes_and_truncation() {
        assert!(matches!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::MalformedVarInt)
        ));
        assert!(matches!(
            parse_varint(&[0x80, 0x80]),
            Ok(VarInt::Incomplete)
        ));
        let mut b = Bytes::from_static(&[0x80]);
        assert_eq!(read_varint(&mut b), Err(DecodeError::UnexpectedEof));
    }

    #[test]
    fn strings() {
        let mut b = Bytes::from_static(b"\x00\x03abcrest");
        assert_eq!(read_string(&mut b).unwrap(), "abc");
        assert_eq!(&b[..], b"rest");
        let mut b = Bytes::from_static(b"\x00\x05abc");
        assert_eq!(read_string(&mut b), Err(DecodeError::UnexpectedEof));
        let mut b = Bytes::from_static(b"\x00\x02a\x00");
        assert_eq!(read_string(&mut b), Err(DecodeError::InvalidString));
        let mut b = Bytes::from_static(b"\x00\x02\xC3\x28");
        assert_eq!(read_string(&mut b), Err(DecodeError::InvalidString));
        // An encoded UTF-16 surrogate (U+D800) is not valid UTF-8 [MQTT-1.5.4-1].
        let mut b = Bytes::from_static(b"\x00\x03\xED\xA0\x80");
        assert_eq!(read_string(&mut b), Err(DecodeError::InvalidString));
        let mut b = Bytes::from_static(b"\x00");
        assert_eq!(read_string(&mut b), Err(DecodeError::UnexpectedEof));
    }

    #[test]
    fn binary_limit() {
        assert!(binary_len(&[0; 65_535]).is_ok());
        assert_eq!(binary_len(&[0; 65_536]), Err(EncodeError::InvalidString));
    }
}
