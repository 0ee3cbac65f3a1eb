//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in front of the broker
//! says, in a header before anything else on the connection, which client it carries. The
//! broker then knows the client by that address (logs, the authenticator, `$SYS`).
//!
//! A listener with `proxy_protocol = true` requires the header on every connection; a
//! connection without a valid one is closed. The header is read without reading past it
//! (what follows is TLS, HTTP or MQTT), within the connect timeout. `LOCAL` (v2) and
//! `UNKNOWN` (v1) headers, a proxy's own health checks, keep the socket's address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes that start a version 2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 header, CRLF included.
const V1_MAX: usize = 107;

/// The most address and TLV bytes a version 2 header may carry here (its TLVs are skipped).
const V2_MAX_BODY: usize = 1024;

/// Reads the header at the start of `stream`: the client's address, or None for a `LOCAL` /
/// `UNKNOWN` header. Err: no valid header (the connection is then closed).
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, String> {
    let io = |e: std::io::Error| format!("PROXY header: {e}");
    // 8 bytes are in every header (a version 1 header has at least 15, version 2 at least 16).
    let mut start = [0u8; 16];
    stream.read_exact(&mut start[..8]).await.map_err(io)?;
    if start.starts_with(b"PROXY ") {
        let mut line = start[..8].to_vec();
        // Byte by byte, so as to read nothing after the CRLF.
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err("PROXY header (version 1) longer than 107 bytes".into());
            }
            line.push(stream.read_u8().await.map_err(io)?);
        }
        return parse_v1(&line[..line.len() - 2]);
    }
    if start[..8] != V2_SIGNATURE[..8] {
        return Err("no PROXY header: the listener requires one".into());
    }
    stream.read_exact(&mut start[8..]).await.map_err(io)?;
    if start[..12] != V2_SIGNATURE {
        return Err("no PROXY header: the listener requires one".into());
    }
    let len = usize::from(u16::from_be_bytes([start[14], start[15]]));
    if len > V2_MAX_BODY {
        return Err(format!(
            "PROXY header (version 2) of {len} bytes is too long"
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(io)?;
    parse_v2(start[12], start[13], &body)
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT` or `PROXY UNKNOWN ...`, without the CRLF.
fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, String> {
    let bad = || "malformed PROXY header (version 1)".to_owned();
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let words: Vec<&str> = text.split(' ').collect();
    match words.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        [
            "PROXY",
            family @ ("TCP4" | "TCP6"),
            src,
            _dst,
            sport,
            _dport,
        ] => {
            let ip: IpAddr = src.parse().map_err(|_| bad())?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(bad());
            }
            let port: u16 = sport.parse().map_err(|_| bad())?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(bad()),
    }
}

/// A version 2 header after its signature: version and command, family and protocol, and
/// the addresses (then TLVs, ignored).
fn parse_v2(version_command: u8, family: u8, body: &[u8]) -> Result<Option<SocketAddr>, String> {
    if version_command >> 4 != 2 {
        return Err(format!(
            "PROXY header of version {}, not 2",
            version_command >> 4
        ));
    }
    match version_command & 0x0F {
        // LOCAL: the proxy's own connection.
        0 => return Ok(None),
        1 => {}
        c => return Err(format!("PROXY header (version 2) with unknown command {c}")),
    }
    let short = || "PROXY header (version 2) too short for its addresses".to_owned();
    match family {
        // TCP or UDP over IPv4.
        0x11 | 0x12 => {
            let a: [u8; 12] = body
                .get(..12)
                .ok_or_else(short)?
                .try_into()
                .unwrap_or_default();
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([a[8], a[9]]),
            )))
        }
        // TCP or UDP over IPv6.
        0x21 | 0x22 => {
            let a = body.get(..36).ok_or_else(short)?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Ok(Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port)))
        }
        // Unspecified or a Unix socket: no network address to take.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, String>, Vec<u8>) {
        let mut input = bytes;
        let r = read_header(&mut input).await;
        (r, input.to_vec())
    }

    #[tokio::test]
    async fn version_1_and_what_follows_is_left_unread() {
        let (r, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 1883\r\n\x10\x00").await;
        assert_eq!(r, Ok(Some("203.0.113.7:4242".parse().unwrap())));
        assert_eq!(rest, b"\x10\x00");
        let (r, _) = read(b"PROXY TCP6 2001:db8::1 ::1 5555 8883\r\n").await;
        assert_eq!(r, Ok(Some("[2001:db8::1]:5555".parse().unwrap())));
        let (r, rest) = read(b"PROXY UNKNOWN\r\nX").await;
        assert_eq!((r, rest), (Ok(None), b"X".to_vec()));
        for bad in [
            &b"PROXY TCP4 ::1 ::1 1 2\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
            b"PROXY TCP4 1.2.3.4\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c",
        ] {
            assert!(read(bad).await.0.is_err(), "{bad:?}");
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert!(read(&long).await.0.unwrap_err().contains("longer"));
    }

    #[tokio::test]
    async fn version_2() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12 + 3]);
        h.extend_from_slice(&[198, 51, 100, 9, 10, 0, 0, 1, 0x10, 0x92, 0x07, 0x5B]);
        h.extend_from_slice(&[0x04, 0, 0]); // a TLV, skipped
        h.push(0x10);
        let (r, rest) = read(&h).await;
        assert_eq!(r, Ok(Some("198.51.100.9:4242".parse().unwrap())));
        assert_eq!(rest, [0x10]);

        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).await.0, Ok(None));

        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x21, 0, 4, 1, 2, 3, 4]);
        assert!(read(&short).await.0.is_err());
        let mut v3 = V2_SIGNATURE.to_vec();
        v3.extend_from_slice(&[0x31, 0x11, 0, 0]);
        assert!(read(&v3).await.0.is_err());
    }
}
