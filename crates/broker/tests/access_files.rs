//! FileAccess through real peers: Tinsel on port 0 with a password file and an ACL file,
//! driven by `mosquitto_pub` / `mosquitto_sub` and by a scripted client that reports exact
//! reason codes. Needs mosquitto-clients (scripts/install-test-peers); fails with that hint
//! without them.

mod access_support;
mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use access_support::{AccessBroker, Client, fresh_source, password_file, peer_program, temp_dir};
use bytes::Bytes;
use tinsel_broker::{AccessFiles, AuthDecision, Authenticator, ConnectInfo, FileAccess};
use tinsel_codec::ProtocolVersion::{self, V5, V311};
use tinsel_codec::{ByteStr, ReasonCode};
use tokio::io::AsyncBufReadExt;

const USERS: &[(&str, &str)] = &[
    ("alice", "pw-alice"),
    ("admin", "pw-admin"),
    ("carol", "pw-carol"),
];

const ACL: &str = "\
user alice
topic readwrite home/#
topic deny home/safe/#

user admin
topic readwrite #

pattern readwrite devices/%c/#
pattern read users/%u/inbox
";

async fn broker(tag: &str, allow_anonymous: bool) -> (AccessBroker, std::path::PathBuf) {
    let dir = temp_dir(tag);
    let acl = dir.join("acl");
    std::fs::write(&acl, ACL).unwrap();
    let files = AccessFiles {
        allow_anonymous,
        password_file: Some(password_file(&dir, USERS)),
        acl_file: Some(acl),
    };
    (AccessBroker::start(files).await, dir)
}

/// Runs a mosquitto client program (`mosquitto_pub` or `mosquitto_sub`) to completion.
async fn run(program: &str, port: u16, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(peer_program(program));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("the mosquitto client finished")
        .expect("the mosquitto client ran")
}

/// A running `mosquitto_sub -v`, read line by line.
struct Sub {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Sub {
    fn start(port: u16, args: &[&str]) -> Sub {
        let mut child = tokio::process::Command::new(peer_program("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-v"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        Sub {
            _child: child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(common::WAIT, self.lines.next_line())
            .await
            .expect("mosquitto_sub printed a line in time")
            .unwrap()
            .expect("mosquitto_sub still running")
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn login(b: &AccessBroker, v: ProtocolVersion, user: Option<&str>, pw: Option<&str>) -> u8 {
    match Client::connect(b.addr, v, "c", user, pw).await {
        Ok(_) => 0,
        Err(r) => r.0,
    }
}

#[tokio::test]
async fn logins_give_mosquittos_codes() {
    let (b, _) = broker("logins", false).await;
    for v in [V311, V5] {
        // 3.1.1 return code 5 reads back as 0x87; both are what Mosquitto 2.0 sends.
        assert_eq!(
            login(&b, v, Some("alice"), Some("pw-alice")).await,
            0,
            "{v:?}"
        );
        assert_eq!(
            login(&b, v, Some("alice"), Some("nope")).await,
            0x87,
            "{v:?}"
        );
        assert_eq!(login(&b, v, Some("alice"), None).await, 0x87, "{v:?}");
        assert_eq!(
            login(&b, v, Some("eve"), Some("pw-alice")).await,
            0x87,
            "{v:?}"
        );
        assert_eq!(login(&b, v, None, None).await, 0x87, "{v:?}");
    }
    let port = b.addr.port();
    for v in ["mqttv311", "mqttv5"] {
        let ok = run(
            "mosquitto_pub",
            port,
            &[
                "-V", v, "-u", "alice", "-P", "pw-alice", "-t", "home/x", "-m", "1",
            ],
        )
        .await;
        assert!(ok.status.success(), "{v}: {}", text(&ok));
        let bad = run(
            "mosquitto_pub",
            port,
            &[
                "-V", v, "-u", "alice", "-P", "wrong", "-t", "home/x", "-m", "1",
            ],
        )
        .await;
        assert!(!bad.status.success(), "{v}: {}", text(&bad));
        assert!(
            text(&bad).to_lowercase().contains("not authori"),
            "{v}: {}",
            text(&bad)
        );
        let anon = run("mosquitto_pub", port, &["-V", v, "-t", "home/x", "-m", "1"]).await;
        assert!(!anon.status.success(), "{v}: {}", text(&anon));
    }
    b.stop().await;

    let (b, _) = broker("anonymous", true).await;
    for v in [V311, V5] {
        assert_eq!(login(&b, v, None, None).await, 0, "{v:?}");
        assert_eq!(
            login(&b, v, Some("alice"), Some("nope")).await,
            0x87,
            "{v:?}"
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn refused_publish_is_acknowledged_and_dropped() {
    let (b, _) = broker("publish", false).await;
    let mut admin = Client::connect(b.addr, V5, "admin2", Some("admin"), Some("pw-admin"))
        .await
        .unwrap();
    // A retained message tells when mosquitto_sub's subscription is in place.
    admin.publish0("ready", "1", true).await;
    admin.drain().await;
    let mut spy = Sub::start(b.addr.port(), &["-u", "admin", "-P", "pw-admin", "-t", "#"]);
    assert_eq!(spy.line().await, "ready 1");
    let mut alice5 = Client::connect(b.addr, V5, "a5", Some("alice"), Some("pw-alice"))
        .await
        .unwrap();
    let mut alice3 = Client::connect(b.addr, V311, "a3", Some("alice"), Some("pw-alice"))
        .await
        .unwrap();
    assert_eq!(
        alice5.publish1("home/safe/door", "no").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        alice5.publish1("garden", "no").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        alice3.publish1("home/safe/door", "no").await,
        ReasonCode::SUCCESS
    );
    alice3.publish0("garden", "no", true).await;
    assert_eq!(alice5.publish1("home/ok", "yes").await, ReasonCode::SUCCESS);
    // Nothing refused came before it.
    assert_eq!(spy.line().await, "home/ok yes");
    // The refused retained message was not kept either.
    let mut late = Client::connect(b.addr, V5, "late", Some("admin"), Some("pw-admin"))
        .await
        .unwrap();
    late.subscribe("garden").await;
    assert!(late.drain().await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn subscriptions_and_deliveries_follow_the_acl() {
    let (b, _) = broker("subscribe", false).await;
    let mut alice5 = Client::connect(b.addr, V5, "dev1", Some("alice"), Some("pw-alice"))
        .await
        .unwrap();
    let mut alice3 = Client::connect(b.addr, V311, "dev3", Some("alice"), Some("pw-alice"))
        .await
        .unwrap();
    // Refused: nothing readable; granted: %c and %u patterns, and wider filters.
    assert_eq!(
        alice5.subscribe("garden/#").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(alice3.subscribe("garden/#").await.0, 0x80);
    assert_eq!(
        alice5.subscribe("home/safe/#").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        alice5.subscribe("devices/dev2/#").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(alice5.subscribe("devices/dev1/#").await.0, 0);
    assert_eq!(alice5.subscribe("users/alice/inbox").await.0, 0);
    assert_eq!(
        alice5.subscribe("users/bob/inbox").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(alice3.subscribe("#").await.0, 0);

    // Retained messages before the wide subscription, then live ones: only readable ones
    // arrive, for mosquitto_sub too.
    let mut admin = Client::connect(b.addr, V5, "admin", Some("admin"), Some("pw-admin"))
        .await
        .unwrap();
    for t in [
        "home/r",
        "home/safe/r",
        "garden/r",
        "devices/dev1/r",
        "users/alice/inbox",
    ] {
        admin.publish0(t, &format!("retained {t}"), true).await;
    }
    admin.drain().await;
    let mut sub = Sub::start(
        b.addr.port(),
        &["-i", "dev1", "-u", "alice", "-P", "pw-alice", "-t", "#"],
    );
    // The retained ones it may read come first (in no set order), then live ones.
    let mut retained = vec![sub.line().await, sub.line().await, sub.line().await];
    retained.sort();
    assert_eq!(
        retained,
        [
            "devices/dev1/r retained devices/dev1/r",
            "home/r retained home/r",
            "users/alice/inbox retained users/alice/inbox"
        ]
    );
    for t in ["garden/live", "home/safe/live", "devices/dev2/live"] {
        admin.publish0(t, "secret", false).await;
    }
    admin.publish0("home/live", "end", false).await;
    assert_eq!(sub.line().await, "home/live end");
    // The scripted 3.1.1 client (subscribed to `#` before any of it) got what it may read.
    assert_eq!(
        alice3.drain().await,
        ["retained home/r", "retained users/alice/inbox", "end"]
    );
    b.stop().await;
}

#[tokio::test]
async fn a_bystander_is_served_during_a_flood_of_bad_passwords() {
    let (b, _) = broker("flood", false).await;
    let mut bystander = Client::connect(b.addr, V311, "bystander", Some("admin"), Some("pw-admin"))
        .await
        .unwrap();
    bystander.subscribe("news").await;
    let mut publisher = Client::connect(b.addr, V5, "publisher", Some("admin"), Some("pw-admin"))
        .await
        .unwrap();
    let addr = b.addr;
    let flood = tokio::spawn(async move {
        let mut refused = 0;
        for round in 0..10 {
            let tries = (0..50).map(|i| {
                tokio::spawn(async move {
                    Client::connect(
                        addr,
                        V311,
                        &format!("f{round}-{i}"),
                        Some("alice"),
                        Some("guess"),
                    )
                    .await
                    .is_err()
                })
            });
            for t in tries.collect::<Vec<_>>() {
                refused += usize::from(t.await.unwrap());
            }
        }
        refused
    });
    let started = Instant::now();
    let mut received = 0;
    for n in 0..200 {
        publisher.publish0("news", &n.to_string(), false).await;
        if n % 20 == 19 {
            received += bystander.drain().await.len();
            // A client never seen before, from another address, logs in meanwhile.
            let fresh = Client::connect_from(
                addr,
                fresh_source(),
                V5,
                &format!("fresh{n}"),
                Some("alice"),
                Some("pw-alice"),
            )
            .await;
            assert!(fresh.is_ok(), "a good login during the flood");
        }
    }
    received += bystander.drain().await.len();
    assert_eq!(received, 200);
    assert_eq!(flood.await.unwrap(), 500, "every bad password refused");
    assert!(started.elapsed() < Duration::from_secs(15));
    // The flooded address is limited now: even a good password not seen before is refused
    // at once (no hashing), while a login verified before is still let in from the cache.
    assert_eq!(login(&b, V5, Some("carol"), Some("pw-carol")).await, 0x87);
    assert_eq!(login(&b, V5, Some("admin"), Some("pw-admin")).await, 0);
    let elsewhere = Client::connect_from(
        addr,
        fresh_source(),
        V5,
        "c2",
        Some("carol"),
        Some("pw-carol"),
    )
    .await;
    assert!(elsewhere.is_ok(), "other addresses are not limited");
    b.stop().await;
}

fn info(user: &str, pw: &str) -> ConnectInfo {
    ConnectInfo {
        client_id: Arc::from("c"),
        username: Some(ByteStr::try_from(user).unwrap()),
        password: Some(Bytes::copy_from_slice(pw.as_bytes())),
        protocol: V5,
        peer: Some("127.0.0.1:1".parse().unwrap()),
        tls_identity: None,
        listener: 0,
        username_from_certificate: false,
    }
}

#[test]
fn a_repeated_good_login_is_not_hashed_again() {
    let dir = temp_dir("cache");
    let access = FileAccess::load(AccessFiles {
        password_file: Some(password_file(&dir, USERS)),
        ..AccessFiles::default()
    })
    .unwrap();
    let good = info("alice", "pw-alice");
    assert_eq!(access.authenticate(&good), AuthDecision::Defer);
    assert_eq!(
        access.authenticate_slowly(&good),
        AuthDecision::Allow(Some("alice".into()))
    );
    assert_eq!(
        access.authenticate(&good),
        AuthDecision::Allow(Some("alice".into()))
    );
    // Another password for the same user is checked (and refused).
    let bad = info("alice", "pw-admin");
    assert_eq!(access.authenticate(&bad), AuthDecision::Defer);
    assert_eq!(
        access.authenticate_slowly(&bad),
        AuthDecision::Deny(ReasonCode::NOT_AUTHORIZED)
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn reload_swaps_rules_and_keeps_them_when_a_file_is_broken() {
    let (b, dir) = broker("reload", false).await;
    let mut alice = Client::connect(b.addr, V5, "a", Some("alice"), Some("pw-alice"))
        .await
        .unwrap();
    assert_eq!(alice.subscribe("#").await.0, 0);
    let mut admin = Client::connect(b.addr, V5, "admin", Some("admin"), Some("pw-admin"))
        .await
        .unwrap();
    admin.publish0("garden/x", "before", false).await;
    admin.drain().await;
    assert!(alice.drain().await.is_empty());

    // A broken ACL: the old rules stay, the error names the file and line.
    write(
        &dir.join("acl"),
        "user alice\ntopic readwrite garden/#\ntopic maybe x\n",
    );
    let err = b.access.reload().unwrap_err().to_string();
    assert!(err.contains("acl:3"), "{err}");
    admin.publish0("garden/x", "still refused", false).await;
    admin.drain().await;
    assert!(alice.drain().await.is_empty());

    // A good one, delivered by SIGHUP: the next delivery follows it.
    let _watch = b.access.reload_on_hangup().unwrap();
    write(
        &dir.join("acl"),
        "user alice\ntopic readwrite garden/#\nuser admin\ntopic readwrite #\n",
    );
    hang_up_self();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        admin.publish0("garden/x", "after", false).await;
        admin.drain().await;
        if alice.drain().await == ["after"] {
            break;
        }
        assert!(Instant::now() < deadline, "the reload never took effect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the next SUBSCRIBE: home is no longer alice's.
    assert_eq!(alice.subscribe("home/#").await, ReasonCode::NOT_AUTHORIZED);
    b.stop().await;
}

/// Sends SIGHUP to this process, as `kill -HUP` would (the handler must be installed).
fn hang_up_self() {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
