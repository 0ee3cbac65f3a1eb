//! End to end: the broker facing bad input.
//!
//! Each test starts the real `tinsel broker -p PORT` on a free 127.0.0.1 port, connects an
//! observer that subscribes to `obs/#` and stays connected the whole time, then opens raw
//! TCP connections that send exact, hand-written bytes and checks what comes back: an
//! MQTT 5 client that sends a malformed packet gets a DISCONNECT with the reason code the
//! specification calls for and then the connection closes; an MQTT 3.1.1 client is just
//! closed. At the end the observer must still receive a publish and the broker process must
//! still be running.
//!
//! To check the tests themselves against another broker, set `TINSEL_TEST_BROKER_CMD` to a
//! command line with `{port}` (and optionally `{conf}`, replaced by the path of a Mosquitto
//! configuration file that listens on that port), e.g.
//! `TINSEL_TEST_BROKER_CMD='/usr/sbin/mosquitto -c {conf}'`. A case accepts every reason
//! code the specification allows. The specification says a server SHOULD send the
//! DISCONNECT before closing (section 4.13.1): tinsel must, another broker may just close,
//! and a few checks the specification does not require of a receiver run against tinsel
//! only.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any single read waits for the broker.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

const MALFORMED: u8 = 0x81;
const PROTOCOL_ERROR: u8 = 0x82;
const TOPIC_NAME_INVALID: u8 = 0x90;
const PACKET_TOO_LARGE: u8 = 0x95;

// ---------------------------------------------------------------------------------------
// The broker process
// ---------------------------------------------------------------------------------------

/// A running broker; killed when dropped.
struct Broker {
    child: Child,
    port: u16,
    /// True when this is tinsel (not a `TINSEL_TEST_BROKER_CMD` override).
    tinsel: bool,
    log: PathBuf,
    conf: Option<PathBuf>,
}

impl Broker {
    /// Starts a broker on a free port; tries another port if the one picked was taken in
    /// the meantime (the broker exits at once then).
    fn start(name: &str) -> Broker {
        let mut attempt = 1;
        loop {
            let mut broker = Broker::spawn(name);
            match broker.wait_until_accepting() {
                Ok(()) => return broker,
                Err(e) if attempt < 3 => {
                    eprintln!("broker start attempt {attempt} failed: {e}; retrying");
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn spawn(name: &str) -> Broker {
        let port = free_port();
        let dir = std::env::temp_dir();
        let log = dir.join(format!("tinsel-malformed-{name}-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("create broker log file");
        let (mut cmd, tinsel, conf) = match std::env::var("TINSEL_TEST_BROKER_CMD") {
            Ok(template) => {
                let mut conf = None;
                let line = template.replace("{port}", &port.to_string());
                let line = if line.contains("{conf}") {
                    let path = dir.join(format!("tinsel-malformed-{name}-{port}.conf"));
                    std::fs::write(
                        &path,
                        format!(
                            "listener {port} 127.0.0.1\nallow_anonymous true\n\
                             max_packet_size 65536\n"
                        ),
                    )
                    .expect("write broker config");
                    let replaced = line.replace("{conf}", &path.display().to_string());
                    conf = Some(path);
                    replaced
                } else {
                    line
                };
                let mut words = line.split_whitespace();
                let program = words.next().expect("TINSEL_TEST_BROKER_CMD is empty");
                let mut cmd = Command::new(program);
                cmd.args(words);
                (cmd, false, conf)
            }
            Err(_) => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_tinsel"));
                cmd.args(["broker", "-p", &port.to_string()]);
                (cmd, true, None)
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawn the broker");
        Broker {
            child,
            port,
            tinsel,
            log,
            conf,
        }
    }

    fn wait_until_accepting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!(
                    "broker exited before accepting connections on port {} ({status}): {}",
                    self.port,
                    log.trim()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "broker did not accept connections on port {} within 20 s",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with every failure (and where the broker's log is) if there are any.
    fn assert_no_failures(&self, failures: &[String]) {
        assert!(
            failures.is_empty(),
            "\n{}\nbroker log: {}",
            failures.join("\n"),
            self.log.display()
        );
    }

    /// Panics if the broker process has exited.
    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the broker process died ({status}); log: {}",
                self.log.display()
            );
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(conf) = &self.conf {
            let _ = std::fs::remove_file(conf);
        }
        // The log is kept when the test fails; its path is in the failure message.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------------------
// Hand-written packets
// ---------------------------------------------------------------------------------------

/// A fixed header: first byte, then the remaining length as a variable byte integer.
fn fixed_header(first: u8, remaining: usize) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = remaining;
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out
}

/// A packet: first byte, remaining length, body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = fixed_header(first, body.len());
    out.extend_from_slice(body);
    out
}

/// A length-prefixed field (UTF-8 string or binary data), written byte for byte.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Version {
    V311,
    V5,
}

/// CONNECT with Clean Start, keep alive off, no will, no credentials.
fn connect(version: Version, client_id: &str) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.push(match version {
        Version::V311 => 4,
        Version::V5 => 5,
    });
    body.push(0x02); // Clean Start
    body.extend_from_slice(&[0, 0]); // keep alive off: the observer idles
    if version == Version::V5 {
        body.push(0); // no properties
    }
    body.extend(field(client_id.as_bytes()));
    packet(0x10, &body)
}

/// SUBSCRIBE to one filter at QoS 0.
fn subscribe(version: Version, packet_id: u16, filter: &str) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if version == Version::V5 {
        body.push(0);
    }
    body.extend(field(filter.as_bytes()));
    body.push(0x00);
    packet(0x82, &body)
}

/// MQTT 5 SUBSCRIBE with raw properties, one filter and a raw options byte.
fn subscribe_v5_raw(packet_id: u16, props: &[u8], filter: &[u8], options: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend(field(filter));
    body.push(options);
    packet(0x82, &body)
}

/// PUBLISH with the given first byte, raw topic bytes, optional packet id and raw
/// properties (written only when `props` is `Some`, i.e. for MQTT 5).
fn publish_raw(first: u8, topic: &[u8], packet_id: Option<u16>, props: Option<&[u8]>) -> Vec<u8> {
    let mut body = field(topic);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    if let Some(props) = props {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(b"payload");
    packet(first, &body)
}

/// A well-formed QoS 0 PUBLISH.
fn publish(version: Version, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic.as_bytes());
    if version == Version::V5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30, &body)
}

/// Properties as `None` for 3.1.1 and the empty list for 5.0.
fn no_props(version: Version) -> Option<&'static [u8]> {
    match version {
        Version::V311 => None,
        Version::V5 => Some(&[]),
    }
}

// ---------------------------------------------------------------------------------------
// A raw client
// ---------------------------------------------------------------------------------------

/// What a read from the broker produced.
#[derive(Debug)]
enum Incoming {
    /// A whole packet: first byte and body.
    Packet(u8, Vec<u8>),
    /// The broker closed the connection (EOF or reset) before a packet started.
    Closed,
    /// Nothing within the read timeout, or a packet cut short.
    Failed(String),
}

struct Raw {
    stream: TcpStream,
}

impl Raw {
    fn open(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the broker");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set timeout");
        stream.set_nodelay(true).expect("set nodelay");
        Raw { stream }
    }

    /// Connects and completes the CONNECT / CONNACK exchange; returns the client and the
    /// CONNACK's properties (empty for 3.1.1).
    fn connected(port: u16, version: Version, client_id: &str) -> (Raw, Vec<(u8, Vec<u8>)>) {
        let mut c = Raw::open(port);
        c.send(&connect(version, client_id));
        match c.read() {
            Incoming::Packet(0x20, body) => {
                assert!(body.len() >= 2, "short CONNACK {body:02X?}");
                assert_eq!(body[1], 0, "CONNACK refused {client_id}: {body:02X?}");
                let props = if version == Version::V5 {
                    parse_properties(&body[2..])
                        .unwrap_or_else(|e| panic!("CONNACK properties {body:02X?}: {e}"))
                } else {
                    Vec::new()
                };
                (c, props)
            }
            other => panic!("expected CONNACK for {client_id}, got {other:?}"),
        }
    }

    /// Writes bytes; a write error is ignored (the broker may already have closed).
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Incoming> {
        match self.stream.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof || is_reset(&e) => Err(Incoming::Closed),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(
                Incoming::Failed(format!("nothing from the broker within {READ_TIMEOUT:?}")),
            ),
            Err(e) => Err(Incoming::Failed(format!("read error: {e}"))),
        }
    }

    /// Reads one packet.
    fn read(&mut self) -> Incoming {
        let mut first = [0u8];
        if let Err(e) = self.read_exact(&mut first) {
            return e;
        }
        let mut len = 0usize;
        for i in 0..4 {
            let mut b = [0u8];
            if self.read_exact(&mut b).is_err() {
                return Incoming::Failed("connection ended inside a fixed header".into());
            }
            len |= usize::from(b[0] & 0x7F) << (7 * i);
            if b[0] & 0x80 == 0 {
                let mut body = vec![0u8; len];
                if self.read_exact(&mut body).is_err() {
                    return Incoming::Failed(format!(
                        "connection ended inside a packet 0x{:02X} of {len} bytes",
                        first[0]
                    ));
                }
                return Incoming::Packet(first[0], body);
            }
        }
        Incoming::Failed("broker sent a remaining length of more than 4 bytes".into())
    }

    /// The broker sends DISCONNECT with one of `codes`, then closes the connection. With
    /// `may_just_close`, closing without a DISCONNECT passes too: the specification says a
    /// server SHOULD send one (section 4.13.1), tinsel always does.
    fn expect_disconnect(&mut self, codes: &[u8], may_just_close: bool) -> Result<(), String> {
        match self.read() {
            Incoming::Packet(0xE0, body) => {
                // An empty body means Normal disconnection (0x00).
                let code = body.first().copied().unwrap_or(0);
                if !codes.contains(&code) {
                    return Err(format!(
                        "DISCONNECT reason 0x{code:02X}, expected {}",
                        hex_list(codes)
                    ));
                }
                self.expect_closed()
                    .map_err(|e| format!("after DISCONNECT 0x{code:02X}: {e}"))
            }
            Incoming::Packet(first, body) => Err(format!(
                "expected DISCONNECT {}, got packet 0x{first:02X} {body:02X?}",
                hex_list(codes)
            )),
            Incoming::Closed if may_just_close => Ok(()),
            Incoming::Closed => Err(format!(
                "connection closed without DISCONNECT {}",
                hex_list(codes)
            )),
            Incoming::Failed(e) => Err(format!("expected DISCONNECT {}: {e}", hex_list(codes))),
        }
    }

    /// The broker closes the connection without sending anything.
    fn expect_closed(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 256];
        match self.stream.read(&mut buf) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!(
                "expected the connection to close, got {n} bytes {:02X?}",
                &buf[..n]
            )),
            Err(e) if is_reset(&e) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(
                format!("connection still open {READ_TIMEOUT:?} after the bad packet"),
            ),
            Err(e) => Err(format!("read error: {e}")),
        }
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

fn hex_list(codes: &[u8]) -> String {
    let v: Vec<String> = codes.iter().map(|c| format!("0x{c:02X}")).collect();
    v.join(" or ")
}

/// Splits an MQTT 5 property list (with its length prefix) into (identifier, value bytes).
fn parse_properties(mut b: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let (len, n) = varint(b).ok_or("bad property length")?;
    b = &b[n..];
    if b.len() != len {
        return Err(format!(
            "property length {len} but {} bytes follow",
            b.len()
        ));
    }
    let mut out = Vec::new();
    while let Some((&id, rest)) = b.split_first() {
        let size = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0B => varint(rest).ok_or("bad varint property")?.1,
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                2 + usize::from(u16::from_be_bytes([
                    *rest.first().ok_or("short")?,
                    *rest.get(1).ok_or("short")?,
                ]))
            }
            0x26 => {
                let k = 2 + usize::from(u16::from_be_bytes([
                    *rest.first().ok_or("short")?,
                    *rest.get(1).ok_or("short")?,
                ]));
                let v = rest.get(k..k + 2).ok_or("short")?;
                k + 2 + usize::from(u16::from_be_bytes([v[0], v[1]]))
            }
            other => return Err(format!("unknown property 0x{other:02X}")),
        };
        let value = rest.get(..size).ok_or("property runs past the end")?;
        out.push((id, value.to_vec()));
        b = &rest[size..];
    }
    Ok(out)
}

fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        v |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// The observer: a well-behaved subscriber that must keep working
// ---------------------------------------------------------------------------------------

struct Observer {
    client: Raw,
    checks: u32,
}

impl Observer {
    fn start(broker: &Broker) -> Observer {
        let (mut client, _) = Raw::connected(broker.port, Version::V5, "observer");
        client.send(&subscribe(Version::V5, 1, "obs/#"));
        match client.read() {
            Incoming::Packet(0x90, body) => {
                assert_eq!(
                    body.last(),
                    Some(&0),
                    "observer's SUBACK refused: {body:02X?}"
                )
            }
            other => panic!("expected SUBACK for the observer, got {other:?}"),
        }
        Observer { client, checks: 0 }
    }

    /// A fresh client publishes to `obs/check`; the observer must receive it, and the broker
    /// must still be running. Nothing else may reach the observer first: a PUBLISH the tests
    /// sent where it must never be delivered (`obs/sneaky` before CONNECT, the cut-short
    /// `obs/half`) would have been routed before this one.
    fn check(&mut self, broker: &mut Broker) {
        broker.assert_alive();
        self.checks += 1;
        let payload = format!("alive-{}", self.checks);
        let (mut publisher, _) = Raw::connected(
            broker.port,
            Version::V311,
            &format!("publisher-{}", self.checks),
        );
        publisher.send(&publish(Version::V311, "obs/check", payload.as_bytes()));
        publisher.send(&[0xE0, 0x00]); // DISCONNECT
        // What the observer (MQTT 5, QoS 0) must get: exactly this PUBLISH.
        let expected = publish(Version::V5, "obs/check", payload.as_bytes());
        loop {
            match self.client.read() {
                Incoming::Packet(first, body) if first >> 4 == 3 => {
                    let got = [fixed_header(first, body.len()), body.clone()].concat();
                    assert!(
                        got == expected,
                        "before {payload}, the observer received a PUBLISH that must never be \
                         delivered: {:?} (broker log: {})",
                        String::from_utf8_lossy(&body),
                        broker.log.display()
                    );
                    break;
                }
                Incoming::Packet(..) => {}
                other => panic!("the observer lost its connection or messages: {other:?}"),
            }
        }
        broker.assert_alive();
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// A bad packet sent after a successful CONNECT.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// The reason code that fits best (MQTT 5).
    code: u8,
    /// Other reason codes the specification allows for it.
    also: &'static [u8],
    /// Only checked against tinsel: the specification does not require the receiver to
    /// reject this, or Mosquitto 2 (the reference used to check these tests) answers
    /// differently from what the specification says (0x81 for several Protocol Errors, a
    /// SUBACK for a shared subscription with No Local).
    tinsel_only: bool,
}

fn cases(version: Version) -> Vec<Case> {
    let v5 = version == Version::V5;
    let mut cases = vec![
        Case {
            // Four length bytes all with the continuation bit [MQTT-1.5.5-1].
            name: "remaining length of 5 bytes",
            bytes: vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        },
        Case {
            // SUBSCRIBE flags must be 0010 [MQTT-3.8.1-1].
            name: "SUBSCRIBE with reserved flags 0000",
            bytes: {
                let mut p = subscribe(version, 7, "a/b");
                p[0] = 0x80;
                p
            },
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        },
        Case {
            name: "SUBSCRIBE with reserved flags 0011",
            bytes: {
                let mut p = subscribe(version, 7, "a/b");
                p[0] = 0x83;
                p
            },
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        },
        Case {
            // UNSUBSCRIBE flags must be 0010 [MQTT-3.10.1-1].
            name: "UNSUBSCRIBE with reserved flags 0000",
            bytes: {
                let mut p = subscribe(version, 7, "a/b");
                p.pop(); // no options byte in UNSUBSCRIBE
                p[0] = 0xA0;
                p[1] -= 1;
                p
            },
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        },
        Case {
            // PUBREL flags must be 0010 [MQTT-3.6.1-1].
            name: "PUBREL with reserved flags 0000",
            bytes: vec![0x60, 0x02, 0x00, 0x01],
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        },
        Case {
            // Ill-formed UTF-8 is a Malformed Packet [MQTT-1.5.4-1].
            name: "PUBLISH topic not UTF-8",
            bytes: publish_raw(0x30, b"a/\xFF\xFE", None, no_props(version)),
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        },
        Case {
            // U+0000 in a string is a Malformed Packet [MQTT-1.5.4-2].
            name: "PUBLISH topic with U+0000",
            bytes: publish_raw(0x30, b"a/\0b", None, no_props(version)),
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        },
        Case {
            // No wildcards in a topic name [MQTT-3.3.2-2]; the specification names no reason
            // code, Topic Name invalid fits, Malformed Packet is also seen.
            name: "PUBLISH topic with +",
            bytes: publish_raw(0x30, b"a/+/b", None, no_props(version)),
            code: TOPIC_NAME_INVALID,
            also: &[MALFORMED, PROTOCOL_ERROR],
            tinsel_only: false,
        },
        Case {
            name: "PUBLISH topic with #",
            bytes: publish_raw(0x30, b"a/#", None, no_props(version)),
            code: TOPIC_NAME_INVALID,
            also: &[MALFORMED, PROTOCOL_ERROR],
            tinsel_only: false,
        },
        Case {
            // A non-zero packet identifier is required at QoS > 0 [MQTT-2.2.1-3]; the
            // specification names no reason code for breaking it.
            name: "QoS 1 PUBLISH with packet id 0",
            bytes: publish_raw(0x32, b"a/b", Some(0), no_props(version)),
            code: MALFORMED,
            also: &[PROTOCOL_ERROR],
            tinsel_only: false,
        },
        Case {
            // Both QoS bits set is a Malformed Packet [MQTT-3.3.1-4].
            name: "PUBLISH with QoS 3",
            bytes: publish_raw(0x36, b"a/b", Some(1), no_props(version)),
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        },
        Case {
            // DUP set at QoS 0 [MQTT-3.3.1-2].
            name: "QoS 0 PUBLISH with DUP",
            bytes: publish_raw(0x38, b"a/b", None, no_props(version)),
            code: MALFORMED,
            also: &[PROTOCOL_ERROR],
            tinsel_only: true,
        },
        Case {
            // "The Server MUST process a second CONNECT packet sent from a Client as a
            // Protocol Error and close the Network Connection" [MQTT-3.1.0-2].
            name: "second CONNECT",
            bytes: connect(version, "second"),
            code: PROTOCOL_ERROR,
            also: &[],
            tinsel_only: false,
        },
        Case {
            // Packet type 0 is reserved (section 2.1.2).
            name: "reserved packet type 0",
            bytes: vec![0x00, 0x00],
            code: MALFORMED,
            also: &[PROTOCOL_ERROR],
            tinsel_only: false,
        },
        Case {
            // A CONNACK is never sent by a client.
            name: "client sends CONNACK",
            bytes: packet(0x20, &[0x00, 0x00, 0x00]),
            code: PROTOCOL_ERROR,
            also: &[MALFORMED],
            tinsel_only: false,
        },
    ];
    if v5 {
        cases.push(Case {
            // "It is a Protocol Error to include the Payload Format Indicator more than
            // once" (section 3.3.2.3.2).
            name: "PUBLISH with a duplicate property",
            bytes: publish_raw(0x30, b"a/b", None, Some(&[0x01, 0x00, 0x01, 0x00])),
            code: PROTOCOL_ERROR,
            also: &[],
            tinsel_only: false,
        });
        cases.push(Case {
            // "A SUBSCRIBE packet with no Payload is a Protocol Error" (section 3.8.3).
            name: "SUBSCRIBE without any filter",
            bytes: packet(0x82, &[0x00, 0x07, 0x00]),
            code: PROTOCOL_ERROR,
            also: &[],
            tinsel_only: true,
        });
        cases.push(Case {
            // "An UNSUBSCRIBE packet with no Payload is a Protocol Error" (section 3.10.3).
            name: "UNSUBSCRIBE without any filter",
            bytes: packet(0xA2, &[0x00, 0x07, 0x00]),
            code: PROTOCOL_ERROR,
            also: &[],
            tinsel_only: true,
        });
        cases.push(Case {
            // Reserved bits 6 and 7 of the subscription options [MQTT-3.8.3-5].
            name: "SUBSCRIBE with reserved option bits",
            bytes: {
                let mut p = subscribe(version, 7, "a/b");
                *p.last_mut().expect("options byte") = 0xC0;
                p
            },
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        });
        cases.push(Case {
            // The property length runs past the end of the packet.
            name: "PUBLISH property length past the end",
            bytes: packet(0x30, &[0x00, 0x01, b'a', 0x20, 0x01]),
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        });
        cases.push(Case {
            // "It is a Protocol Error if the Topic Name is zero length and there is no
            // Topic Alias" (section 3.3.2.1).
            name: "PUBLISH with an empty topic and no alias",
            bytes: publish_raw(0x30, b"", None, Some(&[])),
            code: PROTOCOL_ERROR,
            also: &[],
            tinsel_only: false,
        });
        cases.push(Case {
            // Above any Topic Alias Maximum the server can announce below 65,535
            // (section 3.2.2.3.8): Topic Alias invalid.
            name: "PUBLISH with topic alias 65535",
            bytes: publish_raw(0x30, b"a/b", None, Some(&[0x23, 0xFF, 0xFF])),
            code: 0x94,
            also: &[PROTOCOL_ERROR],
            tinsel_only: false,
        });
        cases.push(Case {
            // "A Topic Alias of 0 is not permitted" [MQTT-3.3.2-8].
            name: "PUBLISH with topic alias 0",
            bytes: publish_raw(0x30, b"a/b", None, Some(&[0x23, 0x00, 0x00])),
            code: 0x94,
            also: &[PROTOCOL_ERROR, MALFORMED],
            tinsel_only: false,
        });
        cases.push(Case {
            // An empty topic with an alias that was never set has no topic.
            name: "PUBLISH with an empty topic and an unknown alias",
            bytes: publish_raw(0x30, b"", None, Some(&[0x23, 0x00, 0x01])),
            code: PROTOCOL_ERROR,
            also: &[0x94],
            tinsel_only: false,
        });
        cases.push(Case {
            // "A Control Packet which contains an Identifier which is not valid for its
            // packet type ... is a Malformed Packet" (section 2.2.2.2).
            name: "PUBLISH with a Session Expiry Interval property",
            bytes: publish_raw(0x30, b"a/b", None, Some(&[0x11, 0, 0, 0, 1])),
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        });
        cases.push(Case {
            // "It is a Protocol Error if the Subscription Identifier has a value of 0"
            // (section 3.8.2.1.2).
            name: "SUBSCRIBE with subscription identifier 0",
            bytes: subscribe_v5_raw(7, &[0x0B, 0x00], b"a/b", 0x00),
            code: PROTOCOL_ERROR,
            also: &[],
            tinsel_only: true,
        });
        cases.push(Case {
            // "It is a Protocol Error to send a Retain Handling value of 3" (section 3.8.3.1).
            name: "SUBSCRIBE with Retain Handling 3",
            bytes: subscribe_v5_raw(7, &[], b"a/b", 0x30),
            code: PROTOCOL_ERROR,
            also: &[],
            tinsel_only: true,
        });
        cases.push(Case {
            // "It is a Protocol Error if the Maximum QoS field has the value 3" (section 3.8.3.1).
            name: "SUBSCRIBE with Maximum QoS 3",
            bytes: subscribe_v5_raw(7, &[], b"a/b", 0x03),
            code: PROTOCOL_ERROR,
            also: &[],
            tinsel_only: true,
        });
        cases.push(Case {
            // "It is a Protocol Error to set the No Local bit to 1 on a Shared Subscription"
            // [MQTT-3.8.3-4].
            name: "shared SUBSCRIBE with No Local",
            bytes: subscribe_v5_raw(7, &[], b"$share/g/a/b", 0x04),
            code: PROTOCOL_ERROR,
            also: &[],
            tinsel_only: true,
        });
        cases.push(Case {
            // A client that sent no Authentication Method in its CONNECT must not send AUTH
            // (section 4.12).
            name: "AUTH without an authentication method",
            bytes: vec![0xF0, 0x00],
            code: PROTOCOL_ERROR,
            also: &[0x8C],
            tinsel_only: false,
        });
    } else {
        cases.push(Case {
            // Everything above the QoS bits is reserved in 3.1.1 [MQTT-3-8.3-4].
            name: "SUBSCRIBE with reserved option bits",
            bytes: {
                let mut p = subscribe(version, 7, "a/b");
                *p.last_mut().expect("options byte") = 0x04;
                p
            },
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        });
        cases.push(Case {
            // Packet type 15 does not exist before MQTT 5.
            name: "AUTH in 3.1.1",
            bytes: vec![0xF0, 0x00],
            code: MALFORMED,
            also: &[],
            tinsel_only: false,
        });
    }
    cases
}

/// Runs every case on its own connection; returns the failures.
fn run_cases(broker: &mut Broker, observer: &mut Observer, version: Version) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, case) in cases(version).into_iter().enumerate() {
        if case.tinsel_only && !broker.tinsel {
            continue;
        }
        let (mut client, _) = Raw::connected(broker.port, version, &format!("bad-{i}"));
        client.send(&case.bytes);
        let result = match version {
            Version::V5 => {
                client.expect_disconnect(&[&[case.code][..], case.also].concat(), !broker.tinsel)
            }
            Version::V311 => client.expect_closed(),
        };
        if let Err(e) = result {
            failures.push(format!(
                "{version:?} {}: sent {:02X?}: {e}",
                case.name, case.bytes
            ));
        }
        observer.check(broker);
    }
    failures
}

#[test]
fn v5_malformed_packets_get_disconnect_with_reason_then_close() {
    let mut broker = Broker::start("v5");
    let mut observer = Observer::start(&broker);
    let failures = run_cases(&mut broker, &mut observer, Version::V5);
    observer.check(&mut broker);
    broker.assert_no_failures(&failures);
}

#[test]
fn v311_malformed_packets_close_the_connection() {
    let mut broker = Broker::start("v311");
    let mut observer = Observer::start(&broker);
    let failures = run_cases(&mut broker, &mut observer, Version::V311);
    observer.check(&mut broker);
    broker.assert_no_failures(&failures);
}

#[test]
fn packet_over_the_maximum_size_gets_packet_too_large() {
    let mut broker = Broker::start("too-large");
    let mut observer = Observer::start(&broker);
    let (mut client, props) = Raw::connected(broker.port, Version::V5, "big");
    let max = props
        .iter()
        .find(|(id, _)| *id == 0x27)
        .map(|(_, v)| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
    let Some(max) = max else {
        // No Maximum Packet Size means no limit below the protocol's 268,435,455 bytes
        // (section 3.2.2.3.6); a broker that limits packets must announce it.
        assert!(
            !broker.tinsel,
            "tinsel announced no Maximum Packet Size in CONNACK"
        );
        return;
    };
    // A PUBLISH one byte over the limit: header first, then the body while the broker
    // still reads (it may decide from the header alone and close early).
    let remaining = max as usize; // with the fixed header the packet is > max
    client.send(&fixed_header(0x30, remaining));
    if remaining <= 1 << 20 {
        let mut body = field(b"a/b");
        body.push(0);
        body.resize(remaining, b'x');
        client.send(&body);
    }
    let result = client.expect_disconnect(&[PACKET_TOO_LARGE], !broker.tinsel);
    observer.check(&mut broker);
    if let Err(e) = result {
        panic!("PUBLISH of {remaining} + header bytes, maximum {max}: {e}");
    }
}

/// A CONNECT from its parts: protocol name, level, flags, properties (MQTT 5: written when
/// `Some`) and the payload after the properties (client id, will, credentials).
fn connect_raw(name: &[u8], level: u8, flags: u8, props: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    let mut body = field(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&[0, 0]);
    if let Some(props) = props {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    packet(0x10, &body)
}

/// A bad CONNECT: the server may answer with a CONNACK carrying a failure reason code
/// (one of `codes`; 3.1.1-style return codes count for 3.1.1) or just close, and must then
/// close; it must never accept the connection [MQTT-3.1.4-1] [MQTT-3.1.4-2].
#[test]
fn malformed_connect_is_refused_and_closed() {
    let mut broker = Broker::start("connect");
    let mut observer = Observer::start(&broker);
    let id = field(b"bad-connect");
    let with_will = |topic: &[u8], v5: bool| {
        let mut p = id.clone();
        if v5 {
            p.push(0); // will properties
        }
        p.extend(field(topic));
        p.extend(field(b"bye"));
        p
    };
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        (
            // "If the Protocol Version is not 5 and the Server does not want to accept the
            // CONNECT packet, the Server MAY send a CONNACK packet with Reason Code 0x84"
            // [MQTT-3.1.2-2]; a 3.1.1-style CONNACK 0x01 is what older clients understand.
            "protocol level 6",
            connect_raw(b"MQTT", 6, 0x02, None, &id),
            &[0x84, 0x01],
        ),
        (
            "protocol level 0",
            connect_raw(b"MQTT", 0, 0x02, None, &id),
            &[0x84, 0x01],
        ),
        (
            // The reserved flag must be 0 [MQTT-3.1.2-3].
            "v5 reserved CONNECT flag",
            connect_raw(b"MQTT", 5, 0x03, Some(&[]), &id),
            &[MALFORMED],
        ),
        (
            "v3.1.1 reserved CONNECT flag",
            connect_raw(b"MQTT", 4, 0x03, None, &id),
            &[],
        ),
        (
            // Will QoS 3 [MQTT-3.1.2-12].
            "v5 will QoS 3",
            connect_raw(
                b"MQTT",
                5,
                0x02 | 0x04 | 0x18,
                Some(&[]),
                &with_will(b"w", true),
            ),
            &[MALFORMED, 0x9B],
        ),
        (
            // Will Retain without a will [MQTT-3.1.2-13].
            "v5 will retain without a will",
            connect_raw(b"MQTT", 5, 0x22, Some(&[]), &id),
            &[MALFORMED],
        ),
        (
            // A will topic is a topic name: no wildcards [MQTT-3.1.3-11].
            "v5 will topic with a wildcard",
            connect_raw(b"MQTT", 5, 0x06, Some(&[]), &with_will(b"a/#", true)),
            &[TOPIC_NAME_INVALID, MALFORMED, PROTOCOL_ERROR],
        ),
        (
            // Ill-formed UTF-8 [MQTT-1.5.4-1].
            "v5 client id not UTF-8",
            connect_raw(b"MQTT", 5, 0x02, Some(&[]), &field(b"\xC3\x28")),
            &[MALFORMED, 0x85],
        ),
        (
            // "It is a Protocol Error to include the Session Expiry Interval more than once"
            // (section 3.1.2.11.2).
            "v5 duplicate Session Expiry Interval",
            connect_raw(
                b"MQTT",
                5,
                0x02,
                Some(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]),
                &id,
            ),
            &[PROTOCOL_ERROR],
        ),
        (
            // "It is a Protocol Error to include the Receive Maximum value more than once or
            // for it to have the value 0" (section 3.1.2.11.3).
            "v5 Receive Maximum 0",
            connect_raw(b"MQTT", 5, 0x02, Some(&[0x21, 0, 0]), &id),
            &[PROTOCOL_ERROR],
        ),
        (
            // "It is a Protocol Error to include the Maximum Packet Size more than once, or
            // for the value to be set to zero" (section 3.1.2.11.4).
            "v5 Maximum Packet Size 0",
            connect_raw(b"MQTT", 5, 0x02, Some(&[0x27, 0, 0, 0, 0]), &id),
            &[PROTOCOL_ERROR],
        ),
        (
            // An authentication method the server does not support: CONNACK 0x8C or 0x87,
            // then close [MQTT-4.12.0-1].
            "v5 unknown authentication method",
            connect_raw(
                b"MQTT",
                5,
                0x02,
                Some(&[0x15, 0x00, 0x05, b'N', b'O', b'P', b'E', b'!']),
                &id,
            ),
            &[0x8C, 0x87],
        ),
        (
            // 3.1.1: no password without a user name [MQTT-3.1.2-22].
            "v3.1.1 password without user name",
            connect_raw(b"MQTT", 4, 0x42, None, &[id.clone(), field(b"pw")].concat()),
            &[],
        ),
        (
            // The CONNECT ends before its client id.
            "v5 CONNECT cut short",
            connect_raw(b"MQTT", 5, 0x02, Some(&[]), &[0x00]),
            &[MALFORMED],
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, codes) in cases {
        let mut client = Raw::open(broker.port);
        client.send(&bytes);
        let result = match client.read() {
            Incoming::Closed => Ok(()),
            Incoming::Packet(0x20, body) => match body.get(1).copied() {
                Some(code) if code != 0 && (codes.is_empty() || codes.contains(&code)) => {
                    client.expect_closed()
                }
                Some(0) => Err("the connection was accepted".to_string()),
                other => Err(format!(
                    "CONNACK {body:02X?} (reason {other:02X?}), expected {} or a plain close",
                    hex_list(codes)
                )),
            },
            other => Err(format!("expected CONNACK or close, got {other:?}")),
        };
        if let Err(e) = result {
            failures.push(format!("{name}: sent {bytes:02X?}: {e}"));
        }
        observer.check(&mut broker);
    }
    broker.assert_no_failures(&failures);
}

#[test]
fn first_packet_must_be_connect() {
    let mut broker = Broker::start("first");
    let mut observer = Observer::start(&broker);
    let mut failures = Vec::new();
    let firsts: [(&str, Vec<u8>); 4] = [
        ("PINGREQ", vec![0xC0, 0x00]),
        ("PUBLISH", publish(Version::V311, "obs/sneaky", b"x")),
        ("SUBSCRIBE", subscribe(Version::V311, 1, "#")),
        ("DISCONNECT", vec![0xE0, 0x00]),
    ];
    for (name, bytes) in firsts {
        let mut client = Raw::open(broker.port);
        client.send(&bytes);
        // Before its CONNACK the server sends nothing else [MQTT-3.2.0-1]: just close.
        if let Err(e) = client.expect_closed() {
            failures.push(format!("{name} first: {e}"));
        }
        observer.check(&mut broker);
    }
    broker.assert_no_failures(&failures);
}

#[test]
fn garbage_and_half_packets_do_not_hurt_the_broker() {
    let mut broker = Broker::start("garbage");
    let mut observer = Observer::start(&broker);
    let mut failures = Vec::new();

    // Not MQTT at all: 'G' is packet type 4 with flags 7.
    let mut http = Raw::open(broker.port);
    http.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    if let Err(e) = http.expect_closed() {
        failures.push(format!("HTTP request: {e}"));
    }
    observer.check(&mut broker);

    // A CONNECT with an unknown protocol name.
    let mut bad_name = Raw::open(broker.port);
    let mut body = field(b"XMPP");
    body.extend_from_slice(&[5, 0x02, 0, 0, 0]);
    body.extend(field(b"x"));
    bad_name.send(&packet(0x10, &body));
    // A CONNACK 0x84 / 0x01 or a plain close are both allowed [MQTT-3.1.2-1].
    match bad_name.read() {
        Incoming::Closed => {}
        Incoming::Packet(0x20, _) => {
            if let Err(e) = bad_name.expect_closed() {
                failures.push(format!("CONNECT with protocol XMPP, after CONNACK: {e}"));
            }
        }
        other => failures.push(format!("CONNECT with protocol XMPP: {other:?}")),
    }
    observer.check(&mut broker);

    // Half a CONNECT, then close.
    let mut half = Raw::open(broker.port);
    let c = connect(Version::V5, "half");
    half.send(&c[..c.len() / 2]);
    drop(half);
    observer.check(&mut broker);

    // Half a PUBLISH after a good CONNECT, then close; and the same with a write shutdown
    // only (the broker sees EOF but may still write).
    for shutdown_only in [false, true] {
        let (mut client, _) = Raw::connected(broker.port, Version::V5, "half-publish");
        let p = publish(Version::V5, "obs/half", b"never delivered");
        client.send(&p[..p.len() - 5]);
        if shutdown_only {
            let _ = client.stream.shutdown(Shutdown::Write);
            // The broker closes its side too; it may say nothing or DISCONNECT.
            match client.read() {
                Incoming::Closed => {}
                Incoming::Packet(0xE0, _) => {
                    if let Err(e) = client.expect_closed() {
                        failures.push(format!("half PUBLISH then EOF: {e}"));
                    }
                }
                other => failures.push(format!("half PUBLISH then EOF: {other:?}")),
            }
        }
        drop(client);
        observer.check(&mut broker);
    }

    // A CONNECT that claims a huge body and never sends it, closed at once.
    let mut liar = Raw::open(broker.port);
    liar.send(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x04, b'M']);
    drop(liar);
    observer.check(&mut broker);

    broker.assert_no_failures(&failures);
}

/// A small deterministic PRNG (xorshift64*), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn burst_of_random_bytes_does_not_kill_the_broker() {
    let mut broker = Broker::start("burst");
    let mut observer = Observer::start(&broker);
    let mut rng = Rng(0x7153_E1C0_FFEE_0001);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut open = Vec::new();
    for i in 0..100 {
        if Instant::now() > deadline {
            break;
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", broker.port)) else {
            continue;
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let mut bytes = Vec::new();
        if i % 3 == 1 {
            // Past the CONNECT, so the random bytes reach the packet parser.
            bytes.extend(connect(Version::V5, &format!("burst-{i}")));
        } else if i % 3 == 2 {
            bytes.extend(connect(Version::V311, &format!("burst-{i}")));
        }
        let n = (rng.next() % 512) as usize;
        bytes.extend(rng.bytes(n));
        let _ = stream.write_all(&bytes);
        if i % 4 == 0 {
            open.push(stream); // keep some open until the end
        }
    }
    observer.check(&mut broker);
    drop(open);
    std::thread::sleep(Duration::from_millis(200));
    observer.check(&mut broker);
}
