//! A client certificate's identity, end to end: `mosquitto_pub` presents a certificate made
//! at test time (`tests/broker/make-certs.sh`, openssl) to a TLS listener, and the
//! authenticator sees its common name or subject, as the listener is configured.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinsel_broker::config::Transport;
use tinsel_broker::{AuthDecision, Authenticator, Broker, Config, ConnectInfo, ListenerConfig};

/// What the authenticator was shown: (user name, certificate identity).
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

struct Recorder(Seen);

impl Authenticator for Recorder {
    fn authenticate(&self, info: &ConnectInfo) -> AuthDecision {
        let user = info.username.as_deref().map(str::to_owned);
        let cert = info.tls_identity.as_deref().map(str::to_owned);
        self.0.lock().unwrap().push((user, cert));
        AuthDecision::Allow(info.username.as_deref().map(Arc::from))
    }
}

fn make_certs() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinsel-tls-identity-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/broker/make-certs.sh");
    let status = Command::new(script)
        .arg(&dir)
        .status()
        .expect("run make-certs.sh (needs bash and openssl)");
    assert!(status.success(), "make-certs.sh failed");
    dir
}

fn tls_listener(certs: &Path, subject: bool, as_username: bool) -> ListenerConfig {
    ListenerConfig {
        port: 0,
        transport: Transport::Tls,
        certfile: Some(certs.join("server.crt")),
        keyfile: Some(certs.join("server.key")),
        cafile: Some(certs.join("ca.crt")),
        require_certificate: true,
        use_identity_as_username: as_username && !subject,
        use_subject_as_username: as_username && subject,
        ..ListenerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authenticator_sees_the_certificate_and_the_listener_may_make_it_the_user_name() {
    let certs = make_certs();
    let config = Config {
        listeners: vec![
            tls_listener(&certs, false, false),
            tls_listener(&certs, false, true),
            tls_listener(&certs, true, true),
        ],
        sys_interval: 0,
        ..Config::default()
    };
    let seen: Seen = Arc::default();
    let broker = Broker::bind(config)
        .await
        .expect("bind")
        .with_authenticator(Recorder(seen.clone()));
    let ports: Vec<u16> = broker.local_addrs().iter().map(|a| a.port()).collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(broker.run(async {
        let _ = stopped.await;
    }));

    for port in &ports {
        let out = tokio::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "localhost",
                "-p",
                &port.to_string(),
                "-t",
                "t",
                "-m",
                "x",
            ])
            .args(["-u", "typed", "-P", "secret"])
            .arg("--cafile")
            .arg(certs.join("ca.crt"))
            .arg("--cert")
            .arg(certs.join("client.crt"))
            .arg("--key")
            .arg(certs.join("client.key"))
            .output();
        let out = tokio::time::timeout(Duration::from_secs(10), out)
            .await
            .expect("mosquitto_pub finished")
            .expect("run mosquitto_pub (scripts/install-test-peers)");
        assert!(out.status.success(), "{out:?}");
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
    let _ = std::fs::remove_dir_all(&certs);

    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (some("typed"), some("dev1")),
            (some("dev1"), some("dev1")),
            (
                some("CN=dev1,O=Example,C=GB"),
                some("CN=dev1,O=Example,C=GB")
            ),
        ]
    );
}
