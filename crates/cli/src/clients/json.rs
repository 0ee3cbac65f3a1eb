//! The JSON of `-F %j` / `%J`, written the way mosquitto_sub's cJSON writes it (field
//! order, number format, escaping, `--pretty` layout), and a small parser for `%J`
//! payloads that keeps the order of object members.

use chrono::{DateTime, Local};
use tinsel_codec::Publish;

/// A JSON value; objects keep their member order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(f64),
    /// Raw bytes, escaped when written (cJSON does not check UTF-8).
    String(Vec<u8>),
    Array(Vec<Json>),
    Object(Vec<(Vec<u8>, Json)>),
}

/// The `%j` / `%J` object for a message. `Err` when `%J` and the payload is not JSON.
pub(crate) fn message(m: &Publish, now: &DateTime<Local>, raw_payload: bool) -> Result<Json, ()> {
    let mut o: Vec<(Vec<u8>, Json)> = Vec::new();
    let tst = format!(
        "{}.{:06}Z{}",
        now.format("%Y-%m-%dT%H:%M:%S"),
        now.timestamp_subsec_micros(),
        now.format("%z")
    );
    o.push((b"tst".to_vec(), Json::String(tst.into_bytes())));
    o.push((b"topic".to_vec(), Json::String(m.topic.as_bytes().to_vec())));
    o.push((b"qos".to_vec(), Json::Number(f64::from(m.qos.as_u8()))));
    o.push((
        b"retain".to_vec(),
        Json::Number(if m.retain { 1.0 } else { 0.0 }),
    ));
    o.push((b"payloadlen".to_vec(), Json::Number(m.payload.len() as f64)));
    if m.qos.as_u8() > 0 {
        o.push((b"mid".to_vec(), Json::Number(f64::from(m.packet_id))));
    }
    let p = &m.properties;
    // The codec does not keep the wire order of properties; this is the order Mosquitto's
    // broker forwards them in for a publisher that sends them in this order (subscription
    // identifier first, message expiry last).
    let mut props: Vec<(Vec<u8>, Json)> = Vec::new();
    for v in &p.subscription_identifiers {
        props.push((
            b"subscription-identifier".to_vec(),
            Json::Number(f64::from(*v)),
        ));
    }
    if let Some(v) = p.payload_format_indicator {
        props.push((
            b"payload-format-indicator".to_vec(),
            Json::Number(f64::from(v)),
        ));
    }
    if let Some(v) = &p.content_type {
        props.push((
            b"content-type".to_vec(),
            Json::String(v.as_bytes().to_vec()),
        ));
    }
    if let Some(v) = &p.response_topic {
        props.push((
            b"response-topic".to_vec(),
            Json::String(v.as_bytes().to_vec()),
        ));
    }
    if let Some(v) = &p.correlation_data {
        props.push((b"correlation-data".to_vec(), Json::String(v.to_vec())));
    }
    if !p.user_properties.is_empty() {
        let up = p
            .user_properties
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), Json::String(v.as_bytes().to_vec())))
            .collect();
        props.push((b"user-properties".to_vec(), Json::Object(up)));
    }
    if let Some(v) = p.topic_alias {
        props.push((b"topic-alias".to_vec(), Json::Number(f64::from(v))));
    }
    if let Some(v) = p.message_expiry_interval {
        props.push((
            b"message-expiry-interval".to_vec(),
            Json::Number(f64::from(v)),
        ));
    }
    if !props.is_empty() {
        o.push((b"properties".to_vec(), Json::Object(props)));
    }
    let payload = if m.payload.is_empty() {
        Json::Null
    } else if raw_payload {
        parse(&m.payload).ok_or(())?
    } else {
        // Mosquitto hands the payload to cJSON as a C string: it ends at the first NUL.
        let end = m
            .payload
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(m.payload.len());
        Json::String(m.payload[..end].to_vec())
    };
    o.push((b"payload".to_vec(), payload));
    Ok(Json::Object(o))
}

impl Json {
    /// Writes the value minimised, or in cJSON's formatted layout (tabs).
    pub(crate) fn write(&self, out: &mut Vec<u8>, pretty: bool) {
        self.write_at(out, pretty, 1);
    }

    fn write_at(&self, out: &mut Vec<u8>, pretty: bool, depth: usize) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Number(n) => out.extend_from_slice(number(*n).as_bytes()),
            Json::String(s) => string(out, s),
            Json::Array(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                        if pretty {
                            out.push(b' ');
                        }
                    }
                    v.write_at(out, pretty, depth + 1);
                }
                out.push(b']');
            }
            Json::Object(members) => {
                out.push(b'{');
                if pretty {
                    out.push(b'\n');
                }
                for (i, (k, v)) in members.iter().enumerate() {
                    if pretty {
                        out.extend(std::iter::repeat_n(b'\t', depth));
                    }
                    string(out, k);
                    out.push(b':');
                    if pretty {
                        out.push(b'\t');
                    }
                    v.write_at(out, pretty, depth + 1);
                    if i + 1 < members.len() {
                        out.push(b',');
                    }
                    if pretty {
                        out.push(b'\n');
                    }
                }
                if pretty {
                    out.extend(std::iter::repeat_n(b'\t', depth - 1));
                }
                out.push(b'}');
            }
        }
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.push(b'"');
}

/// cJSON's number format: integers that fit an `int` as integers, others as `%1.15g`
/// (or `%1.17g` when 15 digits do not round-trip).
pub(crate) fn number(d: f64) -> String {
    if !d.is_finite() {
        return "null".into();
    }
    let valueint = if d >= f64::from(i32::MAX) {
        i32::MAX
    } else if d <= f64::from(i32::MIN) {
        i32::MIN
    } else {
        d as i32
    };
    if d == f64::from(valueint) {
        return valueint.to_string();
    }
    let s = fmt_g(d, 15);
    if s.parse::<f64>().ok() == Some(d) {
        s
    } else {
        fmt_g(d, 17)
    }
}

/// C's `%.{prec}g`.
fn fmt_g(d: f64, prec: usize) -> String {
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{:.*e}", prec - 1, d);
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = strip_zeros(mant);
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{d:.decimals$}")).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Parses a JSON document (surrounding whitespace allowed); `None` if it is not JSON.
pub(crate) fn parse(input: &[u8]) -> Option<Json> {
    let mut p = Parser {
        s: input,
        i: 0,
        depth: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    /// Parses the comma-separated items of an array or object, from its opening byte up to
    /// and including `close`; `item` reads one item.
    fn sequence<T>(
        &mut self,
        close: &[u8],
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        self.i += 1;
        self.depth += 1;
        let mut items = Vec::new();
        self.ws();
        if !self.eat(close) {
            loop {
                self.ws();
                items.push(item(self)?);
                self.ws();
                if self.eat(b",") {
                    continue;
                }
                if self.eat(close) {
                    break;
                }
                return None;
            }
        }
        self.depth -= 1;
        Some(items)
    }

    fn value(&mut self) -> Option<Json> {
        // Bounded nesting: a hostile payload cannot overflow the stack.
        if self.depth > 1000 {
            return None;
        }
        match *self.s.get(self.i)? {
            b'n' => self.eat(b"null").then_some(Json::Null),
            b't' => self.eat(b"true").then_some(Json::Bool(true)),
            b'f' => self.eat(b"false").then_some(Json::Bool(false)),
            b'"' => self.string().map(Json::String),
            b'[' => self.sequence(b"]", Self::value).map(Json::Array),
            b'{' => self
                .sequence(b"}", |p| {
                    if p.s.get(p.i) != Some(&b'"') {
                        return None;
                    }
                    let k = p.string()?;
                    p.ws();
                    if !p.eat(b":") {
                        return None;
                    }
                    p.ws();
                    Some((k, p.value()?))
                })
                .map(Json::Object),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                text.parse::<f64>().ok().map(Json::Number)
            }
            _ => None,
        }
    }

    fn string(&mut self) -> Option<Vec<u8>> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) && self.eat(b"\\u") {
                                let lo = self.hex4()?;
                                cp = 0x10000
                                    + ((cp - 0xD800) << 10)
                                    + (lo.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                b => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(s: &str) -> String {
        let mut out = Vec::new();
        parse(s.as_bytes()).unwrap().write(&mut out, false);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn reserialises_like_cjson() {
        // Captured from mosquitto_sub 2.0.11 -F %J.
        assert_eq!(
            roundtrip(
                r#"{"a":27.0,"b":1e20,"c":0.1,"d":-3,"e":[1,"x",true,null,{}],"f":"\u00e9\n","g":12345678901,"h":1.5e-7}"#
            ),
            "{\"a\":27,\"b\":1e+20,\"c\":0.1,\"d\":-3,\"e\":[1,\"x\",true,null,{}],\"f\":\"\u{e9}\\n\",\"g\":12345678901,\"h\":1.5e-07}"
        );
        assert!(parse(b"a\0b").is_none());
        assert!(parse(b"{\"a\":1} x").is_none());
    }

    #[test]
    fn pretty_layout() {
        let v = parse(br#"{"a":1,"b":{"c":"d"}}"#).unwrap();
        let mut out = Vec::new();
        v.write(&mut out, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n\t\"a\":\t1,\n\t\"b\":\t{\n\t\t\"c\":\t\"d\"\n\t}\n}"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(3e-5), "3e-05");
        assert_eq!(number(4294967295.0), "4294967295");
    }
}
