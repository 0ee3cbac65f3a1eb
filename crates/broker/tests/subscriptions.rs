//! Filters, wildcards, overlapping subscriptions, MQTT 5 options, shared subscriptions.
#![allow(clippy::field_reassign_with_default)] // packets are built up field by field

mod common;

use std::time::Duration;

use common::*;
use tinsel_codec::{
    Packet, Properties, ProtocolVersion::*, QoS, ReasonCode, RetainHandling, Subscribe,
    SubscriptionOptions, Unsubscribe,
};

const QUIET: Duration = Duration::from_millis(250);

#[tokio::test]
async fn wildcards_and_dollar_topics() {
    let b = TestBroker::start().await;
    let mut sub = Peer::connect(b.addr, "wild", V311).await;
    sub.subscribe("#", QoS::AtMostOnce).await;
    sub.subscribe_opts(2, "+/x", opts(QoS::AtMostOnce)).await;
    let mut publ = Peer::connect(b.addr, "p", V311).await;
    publ.publish(publish("$foo/x", "no", QoS::AtMostOnce, false, 0))
        .await;
    sub.expect_nothing(QUIET).await;
    publ.publish(publish("a/b/c", "yes", QoS::AtMostOnce, false, 0))
        .await;
    assert_eq!(sub.recv_publish().await.topic, "a/b/c");

    let mut dollar = Peer::connect(b.addr, "dollar", V311).await;
    dollar.subscribe("$foo/+", QoS::AtMostOnce).await;
    publ.publish(publish("$foo/x", "yes", QoS::AtMostOnce, false, 0))
        .await;
    assert_eq!(dollar.recv_publish().await.topic, "$foo/x");
    sub.expect_nothing(QUIET).await;
    b.stop().await;
}

#[tokio::test]
async fn invalid_filter() {
    let b = TestBroker::start().await;
    // MQTT 5: that filter is refused with 0x8F, the others are granted.
    let mut p = Peer::connect(b.addr, "bad", V5).await;
    let ack = p
        .subscribe_with(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![
                (s("a/#/b"), opts(QoS::AtMostOnce)),
                (s("a+"), opts(QoS::AtMostOnce)),
                (s("$share/g/"), opts(QoS::AtMostOnce)),
                (s("ok/#"), opts(QoS::AtLeastOnce)),
            ],
        })
        .await;
    let f = ReasonCode::TOPIC_FILTER_INVALID;
    assert_eq!(ack.reasons, vec![f, f, f, ReasonCode::GRANTED_QOS_1]);
    // 3.1.1: malformed, the connection closes.
    let mut p = Peer::connect(b.addr, "bad3", V311).await;
    p.send(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![(s("a/#/b"), opts(QoS::AtMostOnce))],
    })
    .await;
    assert!(p.expect_closed().await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn overlapping_v311_one_delivery_at_max_qos() {
    let b = TestBroker::start().await;
    let mut sub = Peer::connect(b.addr, "over", V311).await;
    sub.subscribe("o/#", QoS::AtMostOnce).await;
    sub.subscribe_opts(2, "o/+", opts(QoS::ExactlyOnce)).await;
    sub.subscribe_opts(3, "o/a", opts(QoS::AtLeastOnce)).await;
    let mut publ = Peer::connect(b.addr, "p", V311).await;
    publ.publish(publish("o/a", "m", QoS::ExactlyOnce, false, 1))
        .await;
    let m = sub.recv_publish().await;
    assert_eq!(m.qos, QoS::ExactlyOnce);
    sub.ack(&m).await;
    sub.expect_nothing(QUIET).await;
    b.stop().await;
}

fn sub_with_id(pid: u16, filter: &str, id: u32, o: SubscriptionOptions) -> Subscribe {
    Subscribe {
        packet_id: pid,
        properties: Properties::from(tinsel_codec::PropertyValues {
            subscription_identifiers: vec![id],
            ..Default::default()
        }),
        filters: vec![(s(filter), o)],
    }
}

#[tokio::test]
async fn overlapping_v5_one_delivery_with_every_identifier() {
    let b = TestBroker::start().await;
    let mut sub = Peer::connect(b.addr, "ids", V5).await;
    sub.subscribe_with(sub_with_id(1, "i/#", 11, opts(QoS::AtMostOnce)))
        .await;
    sub.subscribe_with(sub_with_id(2, "i/+", 22, opts(QoS::AtLeastOnce)))
        .await;
    let mut publ = Peer::connect(b.addr, "p", V5).await;
    publ.publish(publish("i/x", "m", QoS::AtLeastOnce, false, 1))
        .await;
    let m = sub.recv_publish().await;
    assert_eq!(m.qos, QoS::AtLeastOnce);
    let mut ids = m.properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, vec![11, 22]);
    sub.ack(&m).await;
    sub.expect_nothing(QUIET).await;
    b.stop().await;
}

#[tokio::test]
async fn no_local() {
    let b = TestBroker::start().await;
    let mut me = Peer::connect(b.addr, "me", V5).await;
    let o = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtMostOnce)
    };
    me.subscribe_opts(1, "nl", o).await;
    me.publish(publish("nl", "mine", QoS::AtMostOnce, false, 0))
        .await;
    me.expect_nothing(QUIET).await;
    let mut other = Peer::connect(b.addr, "other", V5).await;
    other
        .publish(publish("nl", "theirs", QoS::AtMostOnce, false, 0))
        .await;
    assert_eq!(&me.recv_publish().await.payload[..], b"theirs");
    b.stop().await;
}

#[tokio::test]
async fn retain_as_published_and_retain_handling() {
    let b = TestBroker::start().await;
    let mut publ = Peer::connect(b.addr, "p", V5).await;
    publ.publish(publish("rh", "kept", QoS::AtMostOnce, true, 0))
        .await;

    let mut rap = Peer::connect(b.addr, "rap", V5).await;
    let o = SubscriptionOptions {
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
        ..opts(QoS::AtMostOnce)
    };
    rap.subscribe_opts(1, "rh", o).await;
    rap.expect_nothing(QUIET).await; // retain handling 2: nothing on subscribe
    let mut plain = Peer::connect(b.addr, "plain", V5).await;
    let m = {
        plain.subscribe("rh", QoS::AtMostOnce).await;
        plain.recv_publish().await
    };
    assert!(m.retain, "retained message on subscribe has RETAIN set");

    publ.publish(publish("rh", "live", QoS::AtMostOnce, true, 0))
        .await;
    assert!(
        rap.recv_publish().await.retain,
        "retain as published keeps the flag"
    );
    assert!(
        !plain.recv_publish().await.retain,
        "otherwise cleared on forward"
    );

    // Retain handling 1: only when the subscription is new.
    let mut once = Peer::connect(b.addr, "once", V5).await;
    let o = SubscriptionOptions {
        retain_handling: RetainHandling::SendIfNew,
        ..opts(QoS::AtMostOnce)
    };
    once.subscribe_opts(1, "rh", o).await;
    assert_eq!(&once.recv_publish().await.payload[..], b"live");
    once.subscribe_opts(2, "rh", o).await;
    once.expect_nothing(QUIET).await;
    // Retain handling 0 sends again on a repeated subscribe.
    once.subscribe_opts(3, "rh", opts(QoS::AtMostOnce)).await;
    assert_eq!(&once.recv_publish().await.payload[..], b"live");
    b.stop().await;
}

#[tokio::test]
async fn shared_subscriptions_round_robin() {
    let b = TestBroker::start().await;
    let mut a = Peer::connect(b.addr, "a", V5).await;
    let mut c = Peer::connect(b.addr, "c", V311).await;
    a.subscribe("$share/g/sh/+", QoS::AtLeastOnce).await;
    c.subscribe("$share/g/sh/+", QoS::AtLeastOnce).await;
    let mut normal = Peer::connect(b.addr, "n", V311).await;
    normal.subscribe("sh/+", QoS::AtMostOnce).await;
    let mut publ = Peer::connect(b.addr, "p", V311).await;
    for i in 0..6u16 {
        publ.publish(publish(
            "sh/x",
            &i.to_string(),
            QoS::AtLeastOnce,
            false,
            i + 1,
        ))
        .await;
    }
    let mut got_a = Vec::new();
    let mut got_c = Vec::new();
    for _ in 0..3 {
        let m = a.recv_publish().await;
        a.ack(&m).await;
        got_a.push(m.payload);
        let m = c.recv_publish().await;
        c.ack(&m).await;
        got_c.push(m.payload);
    }
    a.expect_nothing(QUIET).await;
    c.expect_nothing(Duration::from_millis(10)).await;
    // Round robin: the members take turns, so one has the even messages and the other the odd.
    let (evens, odds) = (["0", "2", "4"], ["1", "3", "5"]);
    assert!(
        (got_a == evens && got_c == odds) || (got_a == odds && got_c == evens),
        "a got {got_a:?}, c got {got_c:?}"
    );
    // The non-shared subscriber gets every one, in order.
    let mut got_normal = Vec::new();
    for _ in 0..6 {
        got_normal.push(normal.recv_publish().await.payload);
    }
    assert_eq!(got_normal, ["0", "1", "2", "3", "4", "5"]);
    // No Local on a shared subscription is a protocol error.
    let o = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtMostOnce)
    };
    a.send(Subscribe {
        packet_id: 9,
        properties: Properties::default(),
        filters: vec![(s("$share/g/z"), o)],
    })
    .await;
    let seen = a.expect_closed().await;
    assert!(matches!(&seen[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::PROTOCOL_ERROR));
    b.stop().await;
}

#[tokio::test]
async fn unsubscribe() {
    let b = TestBroker::start().await;
    let mut sub = Peer::connect(b.addr, "u", V5).await;
    sub.subscribe("u/1", QoS::AtMostOnce).await;
    sub.send(Unsubscribe {
        packet_id: 5,
        properties: Properties::default(),
        filters: vec![s("u/1"), s("u/2")],
    })
    .await;
    match sub.recv().await {
        Packet::UnsubAck(a) => {
            assert_eq!(a.packet_id, 5);
            assert_eq!(
                a.reasons,
                vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
            );
        }
        other => panic!("{other:?}"),
    }
    let mut publ = Peer::connect(b.addr, "p", V5).await;
    publ.publish(publish("u/1", "x", QoS::AtMostOnce, false, 0))
        .await;
    sub.expect_nothing(QUIET).await;
    b.stop().await;
}
