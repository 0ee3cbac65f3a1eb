//! The client against a real `tinsel-broker` on 127.0.0.1, over TCP: QoS flows, retained
//! messages, unsubscribe, and reconnection with re-subscription after the broker restarts.

use std::net::SocketAddr;
use std::time::Duration;

use tinsel_broker::{Broker, Config, ListenerConfig};
use tinsel_client::{
    Backoff, Client, ClientOptions, Error, Event, Events, ProtocolVersion, Publish, QoS,
    SubscriptionOptions,
};
use tokio::sync::oneshot;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// A broker on `port` (0: any free one), stopped when the returned sender is dropped.
async fn broker(port: u16) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let mut config = Config {
        listeners: vec![ListenerConfig {
            port,
            ..ListenerConfig::default()
        }],
        ..Config::default()
    };
    // Floods in these tests must not be cut by the broker's per-session queue limit.
    config.limits.max_queued_messages = 1_000_000;
    let broker = Broker::bind(config).await.expect("bind");
    let addr = broker.local_addrs()[0];
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = broker
            .run(async move {
                let _ = rx.await;
            })
            .await;
    });
    (addr, tx, task)
}

fn opts(addr: SocketAddr, version: ProtocolVersion) -> ClientOptions {
    ClientOptions::new("127.0.0.1", addr.port()).with_version(version)
}

async fn next_message(events: &mut Events) -> Publish {
    loop {
        match timeout(WAIT, events.recv()).await.expect("timed out") {
            Some(Event::Message(m)) => return m,
            Some(_) => {}
            None => panic!("client closed"),
        }
    }
}

async fn next_connected(events: &mut Events) {
    loop {
        match timeout(WAIT, events.recv()).await.expect("timed out") {
            Some(Event::Connected(_)) => return,
            Some(_) => {}
            None => panic!("client closed"),
        }
    }
}

#[tokio::test]
async fn publish_and_receive_every_qos_and_version() {
    let (addr, _stop, _task) = broker(0).await;
    for version in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        let (sub, mut events) =
            Client::connect(opts(addr, version).with_client_id(format!("sub-{version}")))
                .await
                .unwrap();
        next_connected(&mut events).await;
        let ack = sub
            .subscribe(vec![(
                "q/#".into(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..Default::default()
                },
            )])
            .await
            .unwrap();
        assert!(ack.reasons.iter().all(|r| r.is_success()));
        let (publisher, _pe) =
            Client::connect(opts(addr, version).with_client_id(format!("pub-{version}")))
                .await
                .unwrap();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            publisher
                .publish("q/x", format!("{qos:?}"), qos, false)
                .await
                .unwrap();
            let m = next_message(&mut events).await;
            assert_eq!(m.topic, "q/x");
            assert_eq!(m.qos, qos);
            assert_eq!(&m.payload[..], format!("{qos:?}").as_bytes());
        }
        publisher.disconnect().await.unwrap();
        sub.disconnect().await.unwrap();
        assert!(matches!(
            publisher
                .publish("q/x", "late", QoS::AtMostOnce, false)
                .await,
            Err(Error::Closed)
        ));
    }
}

#[tokio::test]
async fn many_qos1_publishes_pipelined_past_the_id_space() {
    let (addr, _stop, _task) = broker(0).await;
    let (client, _events) =
        Client::connect(opts(addr, ProtocolVersion::V311).with_max_inflight(50))
            .await
            .unwrap();
    let mut tokens = std::collections::VecDeque::new();
    for i in 0..70_000u32 {
        let p = Publish {
            qos: QoS::AtLeastOnce,
            ..Publish::new("bulk".try_into().unwrap(), i.to_string())
        };
        tokens.push_back(client.send_publish(p).await.unwrap());
        if tokens.len() > 500 {
            tokens.pop_front().unwrap().wait().await.unwrap();
        }
    }
    for t in tokens {
        t.wait().await.unwrap();
    }
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn retained_and_unsubscribe() {
    let (addr, _stop, _task) = broker(0).await;
    let (client, mut events) = Client::connect(opts(addr, ProtocolVersion::V5))
        .await
        .unwrap();
    client
        .publish("r/1", "kept", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    client
        .subscribe(vec![("r/#".into(), SubscriptionOptions::default())])
        .await
        .unwrap();
    let m = next_message(&mut events).await;
    assert!(m.retain);
    assert_eq!(&m.payload[..], b"kept");
    client.unsubscribe(vec!["r/#".into()]).await.unwrap();
    client
        .publish("r/1", "", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    client
        .publish("r/2", "after", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    // Nothing arrives after the unsubscribe.
    let quiet = timeout(Duration::from_millis(300), async {
        loop {
            if let Some(Event::Message(m)) = events.recv().await {
                return m;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "unexpected message {quiet:?}");
}

#[tokio::test]
async fn invalid_topics_are_refused_locally() {
    let (addr, _stop, _task) = broker(0).await;
    let (client, _events) = Client::connect(opts(addr, ProtocolVersion::V311))
        .await
        .unwrap();
    assert!(matches!(
        client.publish("a/#", "x", QoS::AtMostOnce, false).await,
        Err(Error::InvalidTopic(_))
    ));
    assert!(matches!(
        client
            .subscribe(vec![("a/#/b".into(), SubscriptionOptions::default())])
            .await,
        Err(Error::InvalidFilter(_))
    ));
}

#[tokio::test]
async fn unreachable_broker_fails_first_connect() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Client::connect(ClientOptions::new("127.0.0.1", port))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn reconnects_and_resubscribes_after_broker_restart() {
    let (addr, stop, task) = broker(0).await;
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let (lights, mut events) = Client::connect(
        opts(addr, ProtocolVersion::V311)
            .with_client_id("lights")
            .with_keep_alive(Duration::from_secs(5))
            .with_reconnect(backoff),
    )
    .await
    .unwrap();
    next_connected(&mut events).await;
    lights
        .subscribe(vec![(
            "wareville/lights".into(),
            SubscriptionOptions::default(),
        )])
        .await
        .unwrap();

    // The broker goes away...
    drop(stop);
    task.await.unwrap();
    loop {
        match timeout(WAIT, events.recv())
            .await
            .expect("no Disconnected event")
        {
            Some(Event::Disconnected(_)) => break,
            Some(_) => {}
            None => panic!("client closed instead of reconnecting"),
        }
    }
    // ...a QoS 1 publish made meanwhile is queued...
    let queued = {
        let lights = lights.clone();
        tokio::spawn(async move {
            lights
                .publish("wareville/status", "queued", QoS::AtLeastOnce, true)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and comes back on the same port, with no memory of the session.
    let (_addr2, _stop2, _task2) = broker(addr.port()).await;
    next_connected(&mut events).await;
    timeout(WAIT, queued).await.unwrap().unwrap().unwrap();

    let (switch, _se) = Client::connect(opts(addr, ProtocolVersion::V311))
        .await
        .unwrap();
    // The re-subscription races with this publish: retry until the lights hear it.
    let heard = timeout(WAIT, async {
        loop {
            switch
                .publish("wareville/lights", "on", QoS::AtLeastOnce, false)
                .await
                .unwrap();
            if let Ok(Some(Event::Message(m))) =
                timeout(Duration::from_millis(200), events.recv()).await
            {
                return m;
            }
        }
    })
    .await
    .expect("the subscription was not restored");
    assert_eq!(&heard.payload[..], b"on");
    // The queued status publish reached the new broker.
    let (check, mut ce) = Client::connect(opts(addr, ProtocolVersion::V311))
        .await
        .unwrap();
    check
        .subscribe(vec![(
            "wareville/status".into(),
            SubscriptionOptions::default(),
        )])
        .await
        .unwrap();
    assert_eq!(&next_message(&mut ce).await.payload[..], b"queued");
}

/// An application that publishes from its event loop (without waiting for the
/// acknowledgements) while a flood arrives must never deadlock with the connection task,
/// even when both the event queue and the in-flight window are full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_from_the_event_loop_under_a_flood_does_not_deadlock() {
    let (addr, _stop, _task) = broker(0).await;
    let (app, mut events) = Client::connect(
        opts(addr, ProtocolVersion::V5)
            .with_client_id("echo")
            .with_max_inflight(2),
    )
    .await
    .unwrap();
    app.subscribe(vec![
        (
            "echo/in".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        ),
        ("echo/out".into(), SubscriptionOptions::default()),
    ])
    .await
    .unwrap();
    const N: usize = 5_000;
    let (flooder, _fe) = Client::connect(opts(addr, ProtocolVersion::V5).with_max_inflight(100))
        .await
        .unwrap();
    let flood = tokio::spawn(async move {
        let mut tokens = Vec::with_capacity(N);
        for i in 0..N {
            let p = Publish {
                qos: QoS::AtLeastOnce,
                ..Publish::new("echo/in".try_into().unwrap(), i.to_string())
            };
            tokens.push(flooder.send_publish(p).await.unwrap());
        }
        for t in tokens {
            t.wait().await.unwrap();
        }
    });
    let mut echoed = 0;
    let mut requests = 0;
    let mut tokens = Vec::with_capacity(N);
    timeout(Duration::from_secs(20), async {
        while requests < N {
            match events.recv().await {
                Some(Event::Message(m)) if m.topic == "echo/in" => {
                    requests += 1;
                    let mut out = m.clone();
                    out.topic = "echo/out".try_into().unwrap();
                    out.properties = Default::default();
                    tokens.push(app.send_publish(out).await.unwrap());
                }
                Some(Event::Message(_)) => echoed += 1,
                Some(_) => {}
                None => panic!("client closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("deadlock: the echo stalled at {requests} requests, {echoed} echoes")
    });
    flood.await.unwrap();
    // Keep reading events while the acknowledgements come in (an application must).
    let counter = tokio::spawn(async move {
        let mut echoed = echoed;
        while let Ok(Some(e)) = timeout(Duration::from_secs(3), events.recv()).await {
            if let Event::Message(m) = e {
                if m.topic == "echo/out" {
                    echoed += 1;
                }
            }
        }
        echoed
    });
    let mut delivered = 0;
    let total = tokens.len();
    for (i, t) in tokens.into_iter().enumerate() {
        let r = timeout(WAIT, t.wait())
            .await
            .unwrap_or_else(|_| panic!("token {i} of {total} unresolved"));
        match r {
            Ok(()) => delivered += 1,
            Err(Error::Overloaded) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(delivered > 0);
    assert_eq!(counter.await.unwrap(), delivered);
}
