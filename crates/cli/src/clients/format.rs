//! Printing received messages the way `mosquitto_sub` does: payload only, `-v`
//! (`topic payload`), or `-F` with Mosquitto's format language.

use chrono::{DateTime, Local};
use tinsel_codec::Publish;

use super::json;

/// How a message is printed.
#[derive(Debug, Clone)]
pub(crate) enum Output {
    /// The payload alone.
    Payload,
    /// `topic payload`.
    Verbose,
    /// `-F`.
    Format(Vec<Token>),
}

/// One piece of a parsed `-F` format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// Literal bytes.
    Lit(Vec<u8>),
    /// `%[flags][width][.precision]c`
    Field(Spec),
    /// `@c`: strftime's `%c`.
    Time(char),
    /// `@N`: nanoseconds within the second.
    Nanos,
}

/// A `%` field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spec {
    pub(crate) conv: char,
    pub(crate) left: bool,
    pub(crate) zero: bool,
    pub(crate) width: usize,
    pub(crate) precision: Option<usize>,
}

const FIELDS: &str = "%ACDEFIjJlmPpqRrStUxX";

/// Checks a format string, with Mosquitto's error messages.
pub(crate) fn validate(format: &str) -> Result<(), String> {
    parse(format).map(|_| ())
}

/// Parses a format string into tokens.
pub(crate) fn parse(format: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = format.chars().collect();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let flush = |lit: &mut String, out: &mut Vec<Token>| {
        if !lit.is_empty() {
            out.push(Token::Lit(std::mem::take(lit).into_bytes()));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '%' => {
                let mut spec = Spec {
                    conv: '%',
                    left: false,
                    zero: false,
                    width: 0,
                    precision: None,
                };
                while i < chars.len() && (chars[i] == '-' || chars[i] == '0') {
                    if chars[i] == '-' {
                        spec.left = true;
                    } else {
                        spec.zero = true;
                    }
                    i += 1;
                }
                while i < chars.len() && chars[i].is_ascii_digit() {
                    spec.width = spec
                        .width
                        .saturating_mul(10)
                        .saturating_add(chars[i] as usize - '0' as usize);
                    i += 1;
                }
                if i < chars.len() && chars[i] == '.' {
                    i += 1;
                    let mut p = 0usize;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        p = p
                            .saturating_mul(10)
                            .saturating_add(chars[i] as usize - '0' as usize);
                        i += 1;
                    }
                    spec.precision = Some(p);
                }
                let Some(&conv) = chars.get(i) else {
                    return Err("Incomplete format specifier.".into());
                };
                i += 1;
                if !FIELDS.contains(conv) {
                    return Err(format!("Invalid format specifier '{conv}'."));
                }
                if conv == '%' {
                    lit.push('%');
                } else {
                    flush(&mut lit, &mut out);
                    spec.conv = conv;
                    if spec.left {
                        spec.zero = false;
                    }
                    out.push(Token::Field(spec));
                }
            }
            '@' => {
                let Some(&t) = chars.get(i) else {
                    return Err("Incomplete format specifier.".into());
                };
                i += 1;
                match t {
                    '@' => lit.push('@'),
                    'N' => {
                        flush(&mut lit, &mut out);
                        out.push(Token::Nanos);
                    }
                    _ => {
                        let f = format!("%{t}");
                        let bad = chrono::format::StrftimeItems::new(&f)
                            .any(|it| matches!(it, chrono::format::Item::Error));
                        if bad {
                            return Err(format!("Invalid format specifier '{t}'."));
                        }
                        flush(&mut lit, &mut out);
                        out.push(Token::Time(t));
                    }
                }
            }
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err("Incomplete escape specifier.".into());
                };
                i += 1;
                lit.push(match e {
                    '\\' => '\\',
                    '0' => '\0',
                    'a' => '\x07',
                    'e' => '\x1b',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\x0b',
                    _ => return Err(format!("Invalid escape specifier '{e}'.")),
                });
            }
            _ => lit.push(c),
        }
    }
    flush(&mut lit, &mut out);
    Ok(out)
}

fn pad(out: &mut Vec<u8>, n: usize, c: u8) {
    out.extend(std::iter::repeat_n(c, n));
}

/// A string field: cut to the precision, padded to the width (always with blanks).
fn string_field(out: &mut Vec<u8>, s: &[u8], spec: &Spec) {
    let s = match spec.precision {
        Some(p) if p < s.len() => &s[..p],
        _ => s,
    };
    let n = spec.width.saturating_sub(s.len());
    if !spec.left {
        pad(out, n, b' ');
    }
    out.extend_from_slice(s);
    if spec.left {
        pad(out, n, b' ');
    }
}

/// A number field: padded to the width with zeros (`0` flag) or blanks; an absent value
/// prints as padding alone.
fn number_field(out: &mut Vec<u8>, v: Option<u64>, spec: &Spec) {
    let s = v.map(|v| v.to_string()).unwrap_or_default();
    let n = spec.width.saturating_sub(s.len());
    let c = if spec.zero { b'0' } else { b' ' };
    if !spec.left {
        pad(out, n, c);
    }
    out.extend_from_slice(s.as_bytes());
    if spec.left {
        pad(out, n, b' ');
    }
}

/// The payload, raw or in hex, as Mosquitto writes it: with a width, the payload is cut
/// to the width (in hex, to half of it, in bytes) and padded.
fn payload_field(out: &mut Vec<u8>, payload: &[u8], hex: u8, spec: &Spec) {
    let mut len = payload.len();
    let padlen;
    if spec.width > 0 {
        len = len.min(spec.width);
        if hex > 0 {
            len /= 2;
            padlen = spec.width - len * 2;
        } else {
            padlen = spec.width - len;
        }
    } else {
        padlen = 0;
    }
    let c = if spec.zero { b'0' } else { b' ' };
    if !spec.left {
        pad(out, padlen, c);
    }
    let p = &payload[..len];
    match hex {
        0 => out.extend_from_slice(p),
        1 => {
            for b in p {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
        _ => {
            for b in p {
                out.extend_from_slice(format!("{b:02X}").as_bytes());
            }
        }
    }
    if spec.left {
        pad(out, padlen, c);
    }
}

fn strftime(now: &DateTime<Local>, f: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    // Validated when parsed; a failure here prints nothing rather than panicking.
    if write!(s, "{}", now.format(f)).is_err() {
        s.clear();
    }
    s
}

/// A message and what is needed to print it.
pub(crate) struct Printer {
    pub(crate) output: Output,
    pub(crate) eol: bool,
    pub(crate) pretty: bool,
}

impl Printer {
    /// Renders one message into `out`. Errors (a `%J` payload that is not JSON) are
    /// returned as text for standard error; the rest of the message is still printed.
    pub(crate) fn render(
        &self,
        m: &Publish,
        now: &DateTime<Local>,
        out: &mut Vec<u8>,
    ) -> Option<String> {
        let mut error = None;
        match &self.output {
            Output::Payload => {
                if !m.payload.is_empty() {
                    out.extend_from_slice(&m.payload);
                    if self.eol {
                        out.push(b'\n');
                    }
                }
            }
            Output::Verbose => {
                if !m.payload.is_empty() {
                    out.extend_from_slice(m.topic.as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(&m.payload);
                    if self.eol {
                        out.push(b'\n');
                    }
                } else if self.eol {
                    out.extend_from_slice(m.topic.as_bytes());
                    out.extend_from_slice(b" (null)\n");
                }
            }
            Output::Format(tokens) => {
                for t in tokens {
                    match t {
                        Token::Lit(b) => out.extend_from_slice(b),
                        Token::Nanos => out.extend_from_slice(
                            format!("{:09}", now.timestamp_subsec_nanos()).as_bytes(),
                        ),
                        Token::Time(c) => {
                            out.extend_from_slice(strftime(now, &format!("%{c}")).as_bytes())
                        }
                        Token::Field(spec) => {
                            if let Err(e) = self.field(m, now, spec, out) {
                                error = Some(e);
                            }
                        }
                    }
                }
                if self.eol {
                    out.push(b'\n');
                }
            }
        }
        error
    }

    fn field(
        &self,
        m: &Publish,
        now: &DateTime<Local>,
        spec: &Spec,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let p = &m.properties;
        match spec.conv {
            'A' => number_field(out, p.topic_alias.map(u64::from), spec),
            'C' => string_field(
                out,
                p.content_type
                    .as_ref()
                    .map(|s| s.as_bytes().as_ref())
                    .unwrap_or(b""),
                spec,
            ),
            'D' => {
                if let Some(d) = &p.correlation_data {
                    out.extend_from_slice(d);
                }
            }
            'E' => number_field(out, p.message_expiry_interval.map(u64::from), spec),
            'F' => number_field(out, p.payload_format_indicator.map(u64::from), spec),
            'I' => string_field(out, strftime(now, "%Y-%m-%dT%H:%M:%S%z").as_bytes(), spec),
            'j' | 'J' => {
                let v = json::message(m, now, spec.conv == 'J').map_err(|()| {
                    format!(
                        "Error: Message payload is not valid JSON on topic {}.",
                        m.topic
                    )
                })?;
                v.write(out, self.pretty);
            }
            'l' => number_field(out, Some(m.payload.len() as u64), spec),
            'm' => number_field(out, Some(u64::from(m.packet_id)), spec),
            'P' => {
                for (i, (k, v)) in p.user_properties.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(k.as_bytes());
                    out.push(b':');
                    out.extend_from_slice(v.as_bytes());
                }
            }
            'p' => payload_field(out, &m.payload, 0, spec),
            'q' => out.extend_from_slice(m.qos.as_u8().to_string().as_bytes()),
            // Unlike %C, an absent response topic prints nothing, not even padding.
            'R' if p.response_topic.is_none() => {}
            'R' => string_field(
                out,
                p.response_topic
                    .as_ref()
                    .map(|s| s.as_bytes().as_ref())
                    .unwrap_or(b""),
                spec,
            ),
            'r' => out.push(if m.retain { b'1' } else { b'0' }),
            'S' => number_field(
                out,
                p.subscription_identifiers.first().map(|&v| u64::from(v)),
                spec,
            ),
            't' => string_field(out, m.topic.as_bytes(), spec),
            'U' => out.extend_from_slice(
                format!("{}.{:09}", now.timestamp(), now.timestamp_subsec_nanos()).as_bytes(),
            ),
            'x' => payload_field(out, &m.payload, 1, spec),
            'X' => payload_field(out, &m.payload, 2, spec),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::TimeZone;
    use tinsel_codec::{ByteStr, Properties, QoS};

    use super::*;

    fn msg(topic: &str, payload: &'static [u8]) -> Publish {
        Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: ByteStr::try_from(topic).unwrap(),
            packet_id: 1,
            properties: Properties::default(),
            payload: Bytes::from_static(payload),
        }
    }

    fn render(f: &str, m: &Publish) -> Vec<u8> {
        let p = Printer {
            output: Output::Format(parse(f).unwrap()),
            eol: true,
            pretty: false,
        };
        let now = Local.timestamp_opt(1_700_000_000, 5).unwrap();
        let mut out = Vec::new();
        p.render(m, &now, &mut out);
        out
    }

    #[test]
    fn widths_match_mosquitto() {
        // Expected values captured from mosquitto_sub 2.0.11.
        let mut m = msg("b/topic", b"hi");
        m.properties.make_mut().content_type = Some(ByteStr::try_from("text/plain").unwrap());
        m.properties.make_mut().message_expiry_interval = Some(100);
        m.properties.make_mut().user_properties = vec![
            (
                ByteStr::try_from("k").unwrap(),
                ByteStr::try_from("v").unwrap(),
            ),
            (
                ByteStr::try_from("k2").unwrap(),
                ByteStr::try_from("v2").unwrap(),
            ),
        ];
        let got = render(
            "[%5t][%-5t][%.2t][%3.4t][%05l][%-5l][%m][%05m][%q][%r][%x][%X][%010x][%-6X][%A][%C][%D][%E][%F][%P][%R][%S][%3p][%%][\\\\][\\t]\\e|%l|%-3A|%05E|%.3C|\\0|\\a|\\n|",
            &m,
        );
        assert_eq!(
            got,
            b"[b/topic][b/topic][b/][b/to][00002][2    ][1][00001][2][0][6869][6869][0000000068][68    ][][text/plain][][100][][k:v k2:v2][][][ hi][%][\\][\t]\x1b|2|   |00100|tex|\0|\x07|\n|\n".to_vec()
        );
        let m = msg("b/t2", b"x");
        assert_eq!(
            render("[%5t][%010x][%-6X][%05E][%05p]", &m),
            b"[ b/t2][0000000000][      ][00000][0000x]\n".to_vec()
        );
    }

    #[test]
    fn time_fields() {
        let m = msg("t", b"x");
        let got = String::from_utf8(render("%U @@ @Y @N", &m)).unwrap();
        assert_eq!(got, "1700000000.000000005 @ 2023 000000005\n");
    }

    #[test]
    fn errors_match_mosquitto() {
        assert_eq!(parse("%z").unwrap_err(), "Invalid format specifier 'z'.");
        assert_eq!(parse("\\z").unwrap_err(), "Invalid escape specifier 'z'.");
        assert_eq!(parse("%").unwrap_err(), "Incomplete format specifier.");
        assert_eq!(parse("%-").unwrap_err(), "Incomplete format specifier.");
        assert_eq!(parse("x@").unwrap_err(), "Incomplete format specifier.");
        assert_eq!(parse("x\\").unwrap_err(), "Incomplete escape specifier.");
    }

    #[test]
    fn verbose_and_payload() {
        let now = Local::now();
        let mut out = Vec::new();
        let v = Printer {
            output: Output::Verbose,
            eol: true,
            pretty: false,
        };
        v.render(&msg("a/b", b"on"), &now, &mut out);
        v.render(&msg("a/e", b""), &now, &mut out);
        let p = Printer {
            output: Output::Payload,
            eol: true,
            pretty: false,
        };
        p.render(&msg("a/e", b""), &now, &mut out);
        p.render(&msg("a/b", b"x"), &now, &mut out);
        assert_eq!(out, b"a/b on\na/e (null)\nx\n".to_vec());
    }
}
