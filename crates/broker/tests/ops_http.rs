//! The operations HTTP listener against real TCP: metrics after real MQTT traffic, health
//! checks, and the admin API (token, pages, disconnect with 0x98, publish).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::{Peer, WAIT, connect_packet, publish};
use tinsel_broker::{Broker, Config, ListenerConfig};
use tinsel_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const V5: ProtocolVersion = ProtocolVersion::V5;

struct Running {
    mqtt: SocketAddr,
    http: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

async fn start(token: Option<&str>) -> Running {
    let mut config = Config {
        listeners: vec![ListenerConfig {
            port: 0,
            ..ListenerConfig::default()
        }],
        sys_interval: 0,
        ..Config::default()
    };
    config.http.address = Some("127.0.0.1:0".into());
    config.http.token = token.map(Into::into);
    let broker = Broker::bind(config).await.expect("bind");
    let mqtt = broker.local_addrs()[0];
    let http = broker.http_addr().expect("the HTTP listener is bound");
    let (stop, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        broker
            .run(async move {
                let _ = rx.await;
            })
            .await
            .expect("run");
    });
    Running {
        mqtt,
        http,
        stop,
        done,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.done)
            .await
            .expect("the broker stops in time")
            .expect("the broker task ends well");
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("the response comes in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split(' ').nth(1).expect("a status").parse().unwrap();
    (status, body.to_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The samples of a text-format page, by name with labels; checks that every sample's
/// family has HELP and TYPE lines before it.
fn samples(page: &str) -> HashMap<String, u64> {
    let mut typed = Vec::new();
    let mut out = HashMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            if kind == "histogram" {
                for part in ["_bucket", "_sum", "_count"] {
                    typed.push(format!("{name}{part}"));
                }
            }
            typed.push(name.to_owned());
        } else if line.starts_with('#') {
            assert!(line.starts_with("# HELP tinsel_"), "{line}");
        } else {
            let (key, value) = line.rsplit_once(' ').unwrap();
            let family = key.split('{').next().unwrap();
            assert!(typed.iter().any(|t| t == family), "no TYPE before {line}");
            let value: f64 = value.parse().unwrap();
            out.insert(key.to_owned(), value as u64);
        }
    }
    out
}

#[tokio::test]
async fn metrics_count_what_clients_do() {
    let b = start(None).await;
    let mut sub = Peer::connect(b.mqtt, "sub", V5).await;
    sub.subscribe("m/#", QoS::AtMostOnce).await;
    let mut publisher = Peer::connect(b.mqtt, "pub", V5).await;
    for i in 0..3 {
        publisher
            .send(publish("m/x", &format!("{i}"), QoS::AtMostOnce, i == 0, 0))
            .await;
        sub.recv_publish().await;
    }

    let (status, page) = http(b.http, "GET", "/metrics", None, "").await;
    assert_eq!(status, 200);
    let m = samples(&page);
    assert_eq!(m["tinsel_messages_received_total{qos=\"0\"}"], 3, "{page}");
    assert_eq!(m["tinsel_messages_received_total{qos=\"1\"}"], 0, "{page}");
    assert_eq!(m["tinsel_messages_sent_total{qos=\"0\"}"], 3, "{page}");
    // Payloads "0", "1", "2": one byte each.
    assert_eq!(m["tinsel_payload_bytes_received_total{qos=\"0\"}"], 3);
    assert_eq!(m["tinsel_payload_bytes_sent_total{qos=\"0\"}"], 3);
    for cause in [
        "queue_full",
        "slow_subscriber",
        "too_large",
        "expired",
        "other",
    ] {
        assert_eq!(
            m[&format!("tinsel_messages_dropped_total{{cause=\"{cause}\"}}")],
            0
        );
    }
    // Sent at once: every delivery is in the first bucket.
    assert_eq!(
        m["tinsel_delivery_latency_seconds_bucket{le=\"0.00005\"}"],
        3
    );
    assert_eq!(m["tinsel_delivery_latency_seconds_count"], 3);
    assert_eq!(m["tinsel_queued_messages"], 0);
    assert!(
        !page.contains("tinsel_store_sync_seconds"),
        "persistence is off"
    );
    assert_eq!(m["tinsel_connections"], 2);
    assert_eq!(m["tinsel_connections_open"], 2);
    assert_eq!(m["tinsel_connections_accepted_total"], 2);
    assert_eq!(
        m["tinsel_connections_refused_total{reason=\"max_connections\"}"],
        0
    );
    assert_eq!(m["tinsel_sessions{state=\"connected\"}"], 2);
    assert_eq!(m["tinsel_sessions{state=\"offline\"}"], 0);
    assert_eq!(m["tinsel_subscriptions"], 1);
    assert_eq!(m["tinsel_retained_messages"], 1);
    assert!(m["tinsel_bytes_received_total"] > 0);
    assert!(m["tinsel_bytes_sent_total"] > 0);
    b.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let b = start(None).await;
    assert_eq!(http(b.http, "GET", "/healthz", None, "").await.0, 200);
    let (status, body) = http(b.http, "GET", "/readyz", None, "").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    b.stop().await;
}

#[tokio::test]
async fn the_admin_api_needs_a_configured_token() {
    let b = start(None).await;
    let (status, body) = http(b.http, "GET", "/api/v1/clients", Some("x"), "").await;
    assert_eq!(status, 403);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("http.token")
    );
    b.stop().await;

    let b = start(Some("s3cret")).await;
    assert_eq!(
        http(b.http, "GET", "/api/v1/clients", None, "").await.0,
        401
    );
    assert_eq!(
        http(b.http, "GET", "/api/v1/clients", Some("s3cres"), "")
            .await
            .0,
        401
    );
    assert_eq!(
        http(b.http, "GET", "/api/v1/clients", Some("s3cret"), "")
            .await
            .0,
        200
    );
    // Metrics stay open.
    assert_eq!(http(b.http, "GET", "/metrics", None, "").await.0, 200);
    b.stop().await;
}

#[tokio::test]
async fn clients_come_in_pages() {
    let b = start(Some("t")).await;
    let mut peers = Vec::new();
    for id in ["c3", "c1", "other", "c2"] {
        peers.push(Peer::connect(b.mqtt, id, V5).await);
    }
    // An offline session: a 3.1.1 client without clean session that left.
    let (mut gone, _) =
        Peer::connect_with(b.mqtt, connect_packet("c0", ProtocolVersion::V311, false)).await;
    gone.send(Packet::Disconnect(Default::default())).await;
    gone.expect_closed().await;

    let get = |q: &'static str| http(b.http, "GET", q, Some("t"), "");
    let (status, body) = get("/api/v1/clients?prefix=c&limit=2").await;
    assert_eq!(status, 200, "{body}");
    let page = json(&body);
    let ids: Vec<_> = page["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["client_id"].as_str().unwrap(),
                c["connected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(ids, [("c0", false), ("c1", true)]);
    assert_eq!(page["next"], "c1");

    let page = json(&get("/api/v1/clients?prefix=c&limit=2&after=c1").await.1);
    let ids: Vec<_> = page["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c2", "c3"]);
    assert_eq!(page["next"], serde_json::Value::Null);

    let page = json(&get("/api/v1/clients").await.1);
    assert_eq!(page["clients"].as_array().unwrap().len(), 5);
    b.stop().await;
}

#[tokio::test]
async fn disconnect_sends_administrative_action() {
    let b = start(Some("t")).await;
    let mut victim = Peer::connect(b.mqtt, "victim", V5).await;
    let (status, body) = http(
        b.http,
        "POST",
        "/api/v1/clients/victim/disconnect",
        Some("t"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = victim.expect_closed().await;
    match seen.as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    let (status, body) = http(
        b.http,
        "POST",
        "/api/v1/clients/victim/disconnect",
        Some("t"),
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    b.stop().await;
}

#[tokio::test]
async fn publish_reaches_subscribers_and_retains() {
    let b = start(Some("t")).await;
    let mut sub = Peer::connect(b.mqtt, "sub", V5).await;
    sub.subscribe("ops/#", QoS::AtLeastOnce).await;
    let body = r#"{"topic":"ops/a","payload":"hello","qos":1,"retain":true}"#;
    let (status, resp) = http(b.http, "POST", "/api/v1/publish", Some("t"), body).await;
    assert_eq!(status, 200, "{resp}");
    let p = sub.recv_publish().await;
    assert_eq!(
        (&*p.topic, &p.payload[..], p.qos),
        ("ops/a", &b"hello"[..], QoS::AtLeastOnce)
    );

    let (_, resp) = http(b.http, "GET", "/api/v1/retained?prefix=ops/", Some("t"), "").await;
    assert_eq!(json(&resp)["topics"], serde_json::json!(["ops/a"]));
    let (_, resp) = http(b.http, "GET", "/api/v1/retained?prefix=nope", Some("t"), "").await;
    assert_eq!(json(&resp)["topics"], serde_json::json!([]));

    let bad = r##"{"topic":"ops/#","payload":"x"}"##;
    let (status, resp) = http(b.http, "POST", "/api/v1/publish", Some("t"), bad).await;
    assert_eq!(status, 400, "{resp}");
    let bad = r#"{"topic":"ops/a","qos":3}"#;
    assert_eq!(
        http(b.http, "POST", "/api/v1/publish", Some("t"), bad)
            .await
            .0,
        400
    );
    b.stop().await;
}

#[tokio::test]
async fn metrics_count_refusals_queues_and_latency() {
    let b = start(None).await;
    // Refused: MQTT 3.1.1 with an empty client id and no clean session.
    let (_refused, ack) =
        Peer::connect_with(b.mqtt, connect_packet("", ProtocolVersion::V311, false)).await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);

    // A persistent session subscribed at QoS 1, offline: its messages wait in its queue.
    let (mut sub, _) = Peer::connect_with(
        b.mqtt,
        connect_packet("keeper", ProtocolVersion::V311, false),
    )
    .await;
    sub.subscribe("q/#", QoS::AtLeastOnce).await;
    sub.send(Packet::Disconnect(Default::default())).await;
    sub.expect_closed().await;
    let mut publisher = Peer::connect(b.mqtt, "pub", V5).await;
    for i in 1..=2 {
        publisher
            .publish(publish("q/a", "xy", QoS::AtLeastOnce, false, i))
            .await;
    }

    let m = samples(&http(b.http, "GET", "/metrics", None, "").await.1);
    assert_eq!(
        m["tinsel_connections_refused_total{reason=\"client_identifier_not_valid\"}"],
        1
    );
    assert_eq!(
        m["tinsel_connections_refused_total{reason=\"bad_user_name_or_password\"}"],
        0
    );
    assert_eq!(m["tinsel_messages_received_total{qos=\"1\"}"], 2);
    assert_eq!(m["tinsel_payload_bytes_received_total{qos=\"1\"}"], 4);
    assert_eq!(m["tinsel_queued_messages"], 2);
    assert_eq!(m["tinsel_queued_messages_max"], 2);
    assert_eq!(m["tinsel_delivery_latency_seconds_count"], 0);

    // Back online: both leave the queue, and their wait is in the latency histogram.
    let (mut sub, _) = Peer::connect_with(
        b.mqtt,
        connect_packet("keeper", ProtocolVersion::V311, false),
    )
    .await;
    for _ in 0..2 {
        let p = sub.recv_publish().await;
        sub.ack(&p).await;
    }
    let m = samples(&http(b.http, "GET", "/metrics", None, "").await.1);
    assert_eq!(m["tinsel_queued_messages"], 0);
    assert_eq!(m["tinsel_messages_sent_total{qos=\"1\"}"], 2);
    assert_eq!(m["tinsel_delivery_latency_seconds_count"], 2);
    assert_eq!(m["tinsel_delivery_latency_seconds_bucket{le=\"+Inf\"}"], 2);
    b.stop().await;
}

#[tokio::test]
async fn admin_views_of_clients_subscriptions_and_retained_messages() {
    let b = start(Some("t")).await;
    let mut c = connect_packet("dev-1", V5, true);
    c.username = Some(common::s("alice"));
    let (mut dev1, ack) = Peer::connect_with(b.mqtt, c).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    dev1.subscribe("a/#", QoS::AtLeastOnce).await;
    let _dev2 = Peer::connect(b.mqtt, "dev-2", V5).await;
    let get = |q: String| async move { http(b.http, "GET", &q, Some("t"), "").await };

    let page = json(&get("/api/v1/clients?username=alice".into()).await.1);
    let ids: Vec<_> = page["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["dev-1"]);

    let (status, body) = get("/api/v1/clients/dev-1".into()).await;
    assert_eq!(status, 200, "{body}");
    let d = json(&body);
    assert_eq!(d["protocol"], "5.0");
    assert_eq!(d["username"], "alice");
    assert!(
        d["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{d}"
    );
    assert_eq!(d["queued"], 0);
    assert_eq!(d["inflight"], 0);
    assert_eq!(d["subscriptions"][0]["filter"], "a/#");
    assert_eq!(d["subscriptions"][0]["qos"], 1);
    let (status, body) = get("/api/v1/clients/nobody".into()).await;
    assert_eq!(status, 404);
    assert!(json(&body)["error"].as_str().unwrap().contains("nobody"));

    let page = json(&get("/api/v1/subscriptions?client=dev".into()).await.1);
    assert_eq!(page["subscriptions"].as_array().unwrap().len(), 1);
    assert_eq!(page["subscriptions"][0]["client_id"], "dev-1");
    let page = json(&get("/api/v1/subscriptions?filter=b/".into()).await.1);
    assert_eq!(page["subscriptions"], serde_json::json!([]));
    // Pages of subscriptions follow the cursor (client id and filter joined by U+0000).
    dev1.subscribe("c/1", QoS::AtMostOnce).await;
    dev1.subscribe("c/2", QoS::AtMostOnce).await;
    let mut seen = Vec::new();
    let mut query = "/api/v1/subscriptions?client=dev-1&limit=2".to_owned();
    loop {
        let page = json(&get(query.clone()).await.1);
        for s in page["subscriptions"].as_array().unwrap() {
            seen.push(s["filter"].as_str().unwrap().to_owned());
        }
        let Some(next) = page["next"].as_str() else {
            break;
        };
        assert_eq!(next, "dev-1\0c/1");
        query = "/api/v1/subscriptions?client=dev-1&limit=2&after=dev-1%00c%2F1".to_owned();
    }
    assert_eq!(seen, ["a/#", "c/1", "c/2"]);

    let body = r#"{"topic":"ops/a/b","payload":"kept","qos":1,"retain":true}"#;
    let (status, _) = http(b.http, "POST", "/api/v1/publish", Some("t"), body).await;
    assert_eq!(status, 200);
    let (status, body) = get("/api/v1/retained/ops/a/b".into()).await;
    assert_eq!(status, 200, "{body}");
    let r = json(&body);
    assert_eq!(
        (r["topic"].as_str(), r["payload"].as_str()),
        (Some("ops/a/b"), Some("kept"))
    );
    assert_eq!(r["payload_base64"], "a2VwdA==");
    let del = http(b.http, "DELETE", "/api/v1/retained/ops/a/b", Some("t"), "").await;
    assert_eq!(del.0, 200, "{}", del.1);
    assert_eq!(get("/api/v1/retained/ops/a/b".into()).await.0, 404);
    let del = http(b.http, "DELETE", "/api/v1/retained/ops/a/b", Some("t"), "").await;
    assert_eq!(del.0, 404);

    // Mistakes get a JSON error that says what is wrong.
    for (method, path, body, want) in [
        ("GET", "/api/v1/clients?limit=many", "", 400),
        ("GET", "/api/v1/clients?colour=red", "", 400),
        ("POST", "/api/v1/publish", "{not json", 400),
        ("POST", "/api/v1/publish", r#"{"payload":"no topic"}"#, 422),
        ("GET", "/api/v1/nothing-here", "", 404),
        ("DELETE", "/api/v1/clients", "", 405),
    ] {
        let (status, body) = http(b.http, method, path, Some("t"), body).await;
        assert_eq!(status, want, "{method} {path}: {body}");
        let e = json(&body);
        assert!(!e["error"].as_str().unwrap().is_empty(), "{body}");
    }
    b.stop().await;
}
