//! What the access tests share: real peers (Mosquitto and its clients) found or a failure
//! with a hint, a Tinsel broker on port 0 with [`FileAccess`] installed, a Mosquitto broker
//! on the same files, and a small MQTT client that reports exact reason codes.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tinsel_auth::{HashKind, PasswordHash};
use tinsel_broker::{AccessFiles, Broker, Config, FileAccess, ListenerConfig};
use tinsel_codec::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{Peer, TestBroker, connect_packet, publish, s};

/// The installed peer program `name`; panics with a hint when it is missing, so the tests
/// fail rather than pass unchecked on a machine without Mosquitto.
pub fn peer_program(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        return sbin;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run scripts/install-test-peers \
                 (Debian: apt-get install mosquitto mosquitto-clients)"
            )
        })
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinsel-access-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a password file (`$7$`, 101 iterations, as `mosquitto_passwd` writes by default).
pub fn password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let mut text = String::new();
    for (user, pw) in users {
        let hash = PasswordHash::new(HashKind::Sha512Pbkdf2, 101, pw.as_bytes()).unwrap();
        text.push_str(&format!("{user}:{hash}\n"));
    }
    let path = dir.join("passwords");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Tinsel broker on 127.0.0.1, port 0, with `access` as authenticator and authorizer.
pub struct AccessBroker {
    pub addr: SocketAddr,
    pub access: FileAccess,
    broker: TestBroker,
}

impl AccessBroker {
    pub async fn start(files: AccessFiles) -> AccessBroker {
        let access = FileAccess::load(files).expect("access files load");
        Self::with(access).await
    }

    pub async fn with(access: FileAccess) -> AccessBroker {
        let config = Config {
            listeners: vec![ListenerConfig {
                address: "127.0.0.1".into(),
                port: 0,
                ..ListenerConfig::default()
            }],
            sys_interval: 0,
            ..Config::default()
        };
        let broker = Broker::bind(config)
            .await
            .expect("bind")
            .with_authenticator(access.clone())
            .with_authorizer(access.clone());
        let broker = TestBroker::serve(broker);
        AccessBroker {
            addr: broker.addr,
            access,
            broker,
        }
    }

    pub async fn stop(self) {
        self.broker.stop().await;
    }
}

/// A real Mosquitto on 127.0.0.1 with `extra` appended to its configuration.
pub struct Mosquitto {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Mosquitto {
    pub fn start(dir: &Path, extra: &str) -> Mosquitto {
        let exe = peer_program("mosquitto");
        let port = free_port();
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
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "mosquitto did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MQTT client that reports exact reason codes and decides "was it delivered" without
/// timing: [`Client::drain`] sends PINGREQ and collects what comes before PINGRESP, since a
/// broker answers a connection's packets in order.
pub struct Client {
    pub peer: Peer,
    next_id: u16,
}

impl Client {
    /// Connects; Err(reason) when the CONNACK refuses (3.1.1 return codes come back as their
    /// MQTT 5 reason codes: 4 as 0x86, 5 as 0x87).
    pub async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        id: &str,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Client, ReasonCode> {
        Self::connect_from(
            addr,
            IpAddr::from([127, 0, 0, 1]),
            version,
            id,
            user,
            password,
        )
        .await
    }

    /// [`Client::connect`] from a socket bound to `source` (any 127.x.y.z works on Linux),
    /// so that a broker counting failures per source address sees different sources.
    pub async fn connect_from(
        addr: SocketAddr,
        source: IpAddr,
        version: ProtocolVersion,
        id: &str,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Client, ReasonCode> {
        let mut c = connect_packet(id, version, true);
        c.username = user.map(s);
        c.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let mut peer = Peer {
            stream: socket.connect(addr).await.expect("tcp connect"),
            buf: BytesMut::new(),
            version,
        };
        peer.send(c).await;
        let ack = match peer.recv().await {
            Packet::ConnAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        if ack.reason == ReasonCode::SUCCESS {
            Ok(Client { peer, next_id: 1 })
        } else {
            Err(ack.reason)
        }
    }

    fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// Subscribes to one filter at QoS 0; returns the SUBACK's code.
    pub async fn subscribe(&mut self, filter: &str) -> ReasonCode {
        let pid = self.id();
        let ack = self
            .peer
            .subscribe_opts(pid, filter, crate::common::opts(QoS::AtMostOnce))
            .await;
        ack.reasons[0]
    }

    pub async fn publish0(&mut self, topic: &str, payload: &str, retain: bool) {
        self.peer
            .send(publish(topic, payload, QoS::AtMostOnce, retain, 0))
            .await;
    }

    /// Publishes at QoS 1; returns the PUBACK's code.
    pub async fn publish1(&mut self, topic: &str, payload: &str) -> ReasonCode {
        let pid = self.id();
        self.peer
            .send(publish(topic, payload, QoS::AtLeastOnce, false, pid))
            .await;
        loop {
            match self.peer.recv().await {
                Packet::PubAck(a) if a.packet_id == pid => return a.reason,
                Packet::Publish(_) => {}
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
    }

    /// The payloads of the messages that arrive before the answer to a PINGREQ sent now.
    pub async fn drain(&mut self) -> Vec<String> {
        self.peer.send(Packet::PingReq).await;
        let mut got = Vec::new();
        loop {
            match self.peer.recv().await {
                Packet::PingResp => return got,
                Packet::Publish(p) => got.push(String::from_utf8_lossy(&p.payload).into_owned()),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// A loopback address not handed out before in this process (127.1.0.1, 127.1.0.2, ...).
pub fn fresh_source() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::from(std::net::Ipv4Addr::from_bits(0x7f01_0000 + n))
}
