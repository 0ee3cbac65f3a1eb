//! The little of X.509 the broker reads itself: a certificate's validity period (a server
//! certificate that expired is refused at start) and its subject (a client certificate's
//! common name or whole subject can be its user name). Only DER as rustls hands it over;
//! signatures and chains are rustls' and webpki's business.

use std::fmt::Write as _;

/// What the broker reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Certificate {
    /// Seconds since the Unix epoch before which it is not valid.
    pub(crate) not_before: i64,
    /// Seconds since the Unix epoch after which it is not valid.
    pub(crate) not_after: i64,
    /// The subject's relative distinguished names in certificate order, each a set of
    /// (attribute OID, value tag, value bytes).
    subject: Vec<Vec<Attribute>>,
}

/// One attribute of a name: its OID, its value's tag and its value.
type Attribute = (Vec<u8>, u8, Vec<u8>);

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version` in a TBSCertificate.
const VERSION: u8 = 0xA0;

/// Splits one DER element off `input`: (tag, content, rest). Only definite lengths (DER).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The content of an element of tag `want` at the front of `input`, and what follows.
fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = element(input)?;
    (tag == want).then_some((content, rest))
}

impl Certificate {
    /// Reads a DER certificate; None if it is not one.
    pub(crate) fn parse(der: &[u8]) -> Option<Certificate> {
        let (cert, _) = expect(der, SEQUENCE)?;
        let (tbs, _) = expect(cert, SEQUENCE)?;
        let mut rest = tbs;
        if let Some((VERSION, _, after)) = element(rest) {
            rest = after;
        }
        let (_serial, _, rest) = element(rest)?;
        let (_signature, rest) = expect(rest, SEQUENCE)?;
        let (_issuer, rest) = expect(rest, SEQUENCE)?;
        let (validity, rest) = expect(rest, SEQUENCE)?;
        let (subject, _) = expect(rest, SEQUENCE)?;
        let (not_before, after) = time(validity)?;
        let (not_after, _) = time(after)?;
        let mut rdns = Vec::new();
        let mut names = subject;
        while !names.is_empty() {
            let (mut set, after) = expect(names, SET)?;
            names = after;
            let mut rdn = Vec::new();
            while !set.is_empty() {
                let (atv, after) = expect(set, SEQUENCE)?;
                set = after;
                let (oid, value) = expect(atv, OID)?;
                let (tag, value, _) = element(value)?;
                rdn.push((oid.to_vec(), tag, value.to_vec()));
            }
            rdns.push(rdn);
        }
        Some(Certificate {
            not_before,
            not_after,
            subject: rdns,
        })
    }

    /// The subject's first common name (Mosquitto's `use_identity_as_username`).
    pub(crate) fn common_name(&self) -> Option<String> {
        self.subject
            .iter()
            .flatten()
            .find(|(oid, _, _)| oid.as_slice() == [0x55, 0x04, 0x03])
            .map(|(_, _, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The whole subject as RFC 2253 writes it, last name first, as OpenSSL's
    /// `XN_FLAG_RFC2253` does for Mosquitto's `use_subject_as_username`:
    /// `CN=dev1,O=Example,C=GB`.
    pub(crate) fn subject(&self) -> String {
        let mut out = String::new();
        for (i, rdn) in self.subject.iter().rev().enumerate() {
            if i > 0 {
                out.push(',');
            }
            for (j, (oid, tag, value)) in rdn.iter().enumerate() {
                if j > 0 {
                    out.push('+');
                }
                match short_name(oid) {
                    Some(name) => out.push_str(name),
                    None => out.push_str(&dotted(oid)),
                }
                out.push('=');
                if is_string(*tag) {
                    escape(&mut out, value);
                } else {
                    // Not a string: `#` and the hex of its DER encoding (RFC 2253 2.4).
                    out.push('#');
                    let _ = write!(out, "{tag:02X}");
                    let len = value.len();
                    if len < 0x80 {
                        let _ = write!(out, "{len:02X}");
                    }
                    for b in value {
                        let _ = write!(out, "{b:02X}");
                    }
                }
            }
        }
        out
    }
}

/// Reads a UTCTime or GeneralizedTime as seconds since the Unix epoch.
fn time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (tag, content, rest) = element(input)?;
    let text = std::str::from_utf8(content).ok()?;
    let text = text.strip_suffix('Z')?;
    let (year, digits) = match tag {
        UTC_TIME if text.len() == 12 => {
            let yy: i64 = text[..2].parse().ok()?;
            // RFC 5280 4.1.2.5.1: 50 and later are 19xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { digits.get(i..i + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Years counted from March, so that the leap day ends the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A date and time (UTC) for messages, from seconds since the Unix epoch.
pub(crate) fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    // The inverse of `days_from_civil`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The short names OpenSSL writes for the usual subject attributes.
fn short_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x04] => "SN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "street",
        [0x55, 0x04, 0x0A] => "O",
        [0x55, 0x04, 0x0B] => "OU",
        [0x55, 0x04, 0x0C] => "title",
        [0x55, 0x04, 0x2A] => "GN",
        [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

/// An OID in dotted form.
fn dotted(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut value: u64 = 0;
    let mut first = true;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if first {
                let (a, b) = if value < 80 {
                    (value / 40, value % 40)
                } else {
                    (2, value - 80)
                };
                let _ = write!(out, "{a}.{b}");
                first = false;
            } else {
                let _ = write!(out, ".{value}");
            }
            value = 0;
        }
    }
    out
}

/// The string types of a directory name's values.
fn is_string(tag: u8) -> bool {
    // UTF8String, NumericString, PrintableString, T61String, IA5String, UniversalString,
    // BMPString.
    matches!(tag, 0x0C | 0x12 | 0x13 | 0x14 | 0x16 | 0x1C | 0x1E)
}

/// Writes a value escaped as RFC 2253 asks; bytes outside printable ASCII as `\XX`.
fn escape(out: &mut String, value: &[u8]) {
    let last = value.len().saturating_sub(1);
    for (i, &b) in value.iter().enumerate() {
        let special = matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';')
            || (i == 0 && (b == b'#' || b == b' '))
            || (i == last && b == b' ');
        if special {
            out.push('\\');
            out.push(char::from(b));
        } else if (0x20..0x7F).contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_both_ways() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        let (t, _) = time(b"\x17\x0d491231235959Z").unwrap();
        assert_eq!(format_time(t), "2049-12-31 23:59:59 UTC");
        let (t, _) = time(b"\x18\x0f99991231235959Z").unwrap();
        assert_eq!(format_time(t), "9999-12-31 23:59:59 UTC");
    }

    #[test]
    fn subjects_as_rfc_2253() {
        let cert = Certificate {
            not_before: 0,
            not_after: 0,
            subject: vec![
                vec![(vec![0x55, 4, 6], 0x13, b"GB".to_vec())],
                vec![(vec![0x55, 4, 0x0A], 0x0C, b"Ex, Inc".to_vec())],
                vec![
                    (vec![0x55, 4, 3], 0x0C, b"dev1".to_vec()),
                    (vec![0x2B, 6, 1, 4, 1, 0x82, 0x37], 0x0C, b" x".to_vec()),
                ],
            ],
        };
        assert_eq!(cert.common_name().as_deref(), Some("dev1"));
        assert_eq!(
            cert.subject(),
            "CN=dev1+1.3.6.1.4.1.311=\\ x,O=Ex\\, Inc,C=GB"
        );
    }

    #[test]
    fn truncated_input_is_no_certificate() {
        assert_eq!(Certificate::parse(b""), None);
        assert_eq!(Certificate::parse(b"\x30\x82\xff\xff\x30"), None);
        assert_eq!(element(b"\x04\x85\x01\x02\x03\x04\x05"), None);
    }
}
