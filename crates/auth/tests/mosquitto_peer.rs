//! tinsel-auth against the real Mosquitto: files made by `mosquitto_passwd` verify here, and
//! one ACL file gives the same publish and receive decisions in a running `mosquitto` as in
//! [`AclFile::check`].
//!
//! Needs `mosquitto` and `mosquitto_passwd` (scripts/install-test-peers installs them); each
//! test fails with that hint when they are missing. The broker listens on 127.0.0.1 only.
//! No assertion depends on time: whether a message was delivered is decided by a PINGREQ sent
//! after it, since Mosquitto answers a connection's packets in order and writes a client's
//! packets in the order it queued them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tinsel_auth::{Access, AclFile, PasswordFile, Verdict};

mod cases;
use cases::{ACL, CASES};

/// The installed peer program `name`; panics with a hint when it is missing, so a machine
/// without Mosquitto fails these tests instead of passing them unchecked.
fn peer(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| {
        panic!("{name} is not installed: run scripts/install-test-peers (Debian: apt-get install mosquitto mosquitto-clients)")
    })
}

fn find(name: &str) -> Option<PathBuf> {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        return Some(sbin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.exists())
    })
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinsel-auth-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn files_from_mosquitto_passwd_verify() {
    let exe = peer("mosquitto_passwd");
    let dir = temp_dir("passwd");
    let file = dir.join("pw");
    let users: [(&str, &str, &[&str]); 5] = [
        ("alice", "correct horse battery", &["-c"]),
        ("bob", "s3cr3t!", &["-H", "sha512"]),
        ("carol", "pässwörd:with colon", &["-I", "1000"]),
        ("dave", "x", &["-H", "sha512-pbkdf2", "-I", "1"]),
        ("eve with space", " leading and trailing ", &[]),
    ];
    for (user, pw, opts) in users {
        let status = Command::new(&exe)
            .args(opts)
            .arg("-b")
            .arg(&file)
            .args([user, pw])
            .status()
            .unwrap();
        assert!(status.success(), "mosquitto_passwd for {user}");
    }
    let f = PasswordFile::load(&file).unwrap();
    assert_eq!(f.len(), 5);
    for (user, pw, _) in users {
        assert_eq!(f.verify(user, Some(pw.as_bytes())), Verdict::Ok, "{user}");
        assert_eq!(
            f.verify(user, Some(b"not it")),
            Verdict::BadPassword,
            "{user}"
        );
    }
    assert_eq!(f.verify("mallory", Some(b"x")), Verdict::UnknownUser);
    let _ = std::fs::remove_dir_all(dir);
}

// ---- A minimal MQTT 3.1.1 client: just enough bytes to ask Mosquitto its decisions ----

struct Peer {
    stream: TcpStream,
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
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
    out.extend_from_slice(body);
    out
}

impl Peer {
    fn connect(port: u16, client_id: &str, username: Option<&str>) -> Peer {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // A safety net against a hung broker, not a timed assertion.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut body = Vec::new();
        string(&mut body, b"MQTT");
        body.push(4);
        body.push(0x02 | if username.is_some() { 0x80 } else { 0 });
        body.extend_from_slice(&60u16.to_be_bytes());
        string(&mut body, client_id.as_bytes());
        if let Some(u) = username {
            string(&mut body, u.as_bytes());
        }
        let mut peer = Peer { stream };
        peer.send(&packet(0x10, &body));
        let (kind, body) = peer.read();
        assert_eq!(kind, 0x20, "CONNACK expected");
        assert_eq!(body[1], 0, "CONNACK refused {client_id}/{username:?}");
        peer
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn read(&mut self) -> (u8, Vec<u8>) {
        let mut first = [0u8; 1];
        self.stream.read_exact(&mut first).unwrap();
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let mut b = [0u8; 1];
            self.stream.read_exact(&mut b).unwrap();
            len |= ((b[0] & 0x7f) as usize) << shift;
            shift += 7;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).unwrap();
        (first[0] & 0xf0, body)
    }

    fn subscribe(&mut self, filter: &str) {
        let mut body = vec![0, 1];
        string(&mut body, filter.as_bytes());
        body.push(0);
        self.send(&packet(0x82, &body));
        let (kind, _) = self.read();
        assert_eq!(kind, 0x90, "SUBACK expected");
    }

    fn publish(&mut self, topic: &str, payload: &str) {
        let mut body = Vec::new();
        string(&mut body, topic.as_bytes());
        body.extend_from_slice(payload.as_bytes());
        self.send(&packet(0x30, &body));
    }

    /// Sends PINGREQ and returns the payloads of the PUBLISH packets that came before
    /// PINGRESP: everything the broker had queued for this client when it read the PINGREQ.
    fn drain(&mut self) -> Vec<String> {
        self.send(&[0xc0, 0]);
        let mut got = Vec::new();
        loop {
            let (kind, body) = self.read();
            match kind {
                0xd0 => return got,
                0x30 => {
                    let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
                    got.push(String::from_utf8_lossy(&body[2 + tlen..]).into_owned());
                }
                other => panic!("unexpected packet {other:#x}"),
            }
        }
    }
}

struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Mosquitto {
    fn start(exe: &Path, dir: &Path, extra: &str) -> Mosquitto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\npersistence false\n{extra}\n"),
        )
        .unwrap();
        let log = dir.join("mosquitto.log");
        let child = Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "mosquitto did not start: {}",
                std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mosquitto { child, port, log }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn acl_decisions_match_mosquitto() {
    let exe = peer("mosquitto");
    let dir = temp_dir("acl");
    let acl_path = dir.join("acl");
    std::fs::write(&acl_path, ACL).unwrap();
    let broker = Mosquitto::start(
        &exe,
        &dir,
        &format!("allow_anonymous true\nacl_file {}", acl_path.display()),
    );
    let ours = AclFile::load(&acl_path).unwrap();

    let mut spy = Peer::connect(broker.port, "spy", Some("spy"));
    spy.subscribe("#");
    spy.subscribe("$SYS/broker/connection/+/state");
    spy.subscribe("$other/#");

    let mut mismatches = Vec::new();
    let mut outcomes = [0usize; 2];
    for (n, &(client, user, topic)) in CASES.iter().enumerate() {
        // Write: the client publishes; did the spy receive it?
        let payload = format!("w{n}");
        let mut c = Peer::connect(broker.port, client, user);
        c.publish(topic, &payload);
        c.drain();
        let theirs_w = spy.drain().contains(&payload);
        // Read: the client subscribes to the topic itself; the spy publishes to it.
        let payload = format!("r{n}");
        c.subscribe(topic);
        let theirs_r = if topic.starts_with('$') {
            None // the spy cannot publish to $ topics either; covered by the write case.
        } else {
            spy.publish(topic, &payload);
            spy.drain();
            Some(c.drain().contains(&payload))
        };
        drop(c);

        let ours_w = ours.check(client, user, topic, Access::Write);
        let ours_r = ours.check(client, user, topic, Access::Read);
        outcomes[usize::from(ours_w)] += 1;
        if ours_w != theirs_w {
            mismatches.push(format!(
                "write {topic:?} by {client}/{user:?}: mosquitto {theirs_w}, tinsel {ours_w}"
            ));
        }
        if let Some(theirs_r) = theirs_r {
            outcomes[usize::from(ours_r)] += 1;
            if ours_r != theirs_r {
                mismatches.push(format!(
                    "read {topic:?} by {client}/{user:?}: mosquitto {theirs_r}, tinsel {ours_r}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of the cases differ:\n{}\nmosquitto log: {}",
        mismatches.len(),
        mismatches.join("\n"),
        broker.log.display()
    );
    assert!(
        outcomes[0] > 10 && outcomes[1] > 10,
        "the table should allow and refuse: {outcomes:?}"
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}
