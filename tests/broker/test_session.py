"""Persistent sessions: resume with queued QoS 1/2 messages, clean session, v5 session expiry, resend."""

import time

import pytest

import rawmqtt as raw
from brokertest import V5, V31, V311, prop, props, topic_base, uid
from paho.mqtt.packettypes import PacketTypes


def _queue_while_offline(server, connected, base):
    pub = connected(server)
    pub.publish(f"{base}/q1", b"one", qos=1)
    pub.publish(f"{base}/q2", b"two", qos=2)
    pub.publish(f"{base}/q1", b"three", qos=2)  # downgraded to 1 for the q1 subscription
    pub.publish(f"{base}/q2", b"four", qos=1)
    return pub


def _check_queued(sub, base):
    got = [(m.topic, m.payload, m.qos) for m in sub.expect_n(4)]
    assert sorted(got) == sorted(
        [
            (f"{base}/q1", b"one", 1),
            (f"{base}/q2", b"two", 2),
            (f"{base}/q1", b"three", 1),
            (f"{base}/q2", b"four", 1),
        ]
    )
    # Order is kept per topic and QoS (the spec's ordering guarantee).
    assert [p for t, p, q in got if t == f"{base}/q1"] == [b"one", b"three"]
    sub.expect_none()


@pytest.mark.parametrize("protocol", [V31, V311], ids=["v31", "v311"])
def test_v311_persistent_session_resume_with_queued_messages(any_broker, connected, peers, protocol):
    base = topic_base()
    cid = uid("persist")
    sub = peers(any_broker, client_id=cid, protocol=protocol, clean=False)
    flags, _, _ = sub.connect()
    assert flags.session_present is False
    sub.subscribe(f"{base}/q1", qos=1)
    sub.subscribe(f"{base}/q2", qos=2)
    sub.disconnect()
    _queue_while_offline(any_broker, connected, base)
    back = peers(any_broker, client_id=cid, protocol=protocol, clean=False)
    flags, _, _ = back.connect()
    assert flags.session_present is (protocol == V311)  # MQTT 3.1 has no session present flag
    _check_queued(back, base)
    # The subscriptions are part of the session: live messages flow without re-subscribing.
    pub = connected(any_broker)
    pub.publish(f"{base}/q2", b"live", qos=2)
    m = back.expect()
    assert (m.payload, m.qos) == (b"live", 2)


def test_v311_qos0_not_queued_for_offline_session(any_broker, connected, peers):
    base = topic_base()
    cid = uid("persist")
    sub = peers(any_broker, client_id=cid, protocol=V311, clean=False)
    sub.connect()
    sub.subscribe(f"{base}/q0", qos=0)
    sub.subscribe(f"{base}/q1", qos=1)
    sub.disconnect()
    pub = connected(any_broker)
    pub.publish(f"{base}/q0", b"zero", qos=1)  # granted QoS 0: not queued
    pub.publish(f"{base}/q1", b"one", qos=1)
    back = peers(any_broker, client_id=cid, protocol=V311, clean=False)
    back.connect()
    m = back.expect()
    assert (m.topic, m.payload, m.qos) == (f"{base}/q1", b"one", 1)
    back.expect_none()


def test_v311_clean_session_discards_state(any_broker, connected, peers):
    base = topic_base()
    cid = uid("clean")
    sub = peers(any_broker, client_id=cid, protocol=V311, clean=False)
    sub.connect()
    sub.subscribe(f"{base}/q1", qos=1)
    sub.disconnect()
    _queue_while_offline(any_broker, connected, base)
    fresh = peers(any_broker, client_id=cid, protocol=V311, clean=True)
    flags, _, _ = fresh.connect()
    assert flags.session_present is False
    fresh.expect_none()
    fresh.disconnect()
    # ...and a later clean-session-0 connect starts from an empty session.
    again = peers(any_broker, client_id=cid, protocol=V311, clean=False)
    flags, _, _ = again.connect()
    assert flags.session_present is False
    connected(any_broker).publish(f"{base}/q1", b"x", qos=1)
    again.expect_none()


def test_v5_session_expiry_resume_with_queued_messages(any_broker, connected, peers):
    base = topic_base()
    cid = uid("expiry")
    sub = peers(any_broker, client_id=cid, protocol=V5, clean=True, session_expiry=60)
    sub.connect()
    sub.subscribe(f"{base}/q1", qos=1)
    sub.subscribe(f"{base}/q2", qos=2)
    sub.disconnect()
    _queue_while_offline(any_broker, connected, base)
    back = peers(any_broker, client_id=cid, protocol=V5, clean=False, session_expiry=60)
    flags, _, _ = back.connect()
    assert flags.session_present is True
    _check_queued(back, base)


def test_v5_session_expiry_zero_ends_session_at_disconnect(any_broker, connected, peers):
    base = topic_base()
    cid = uid("expiry0")
    sub = peers(any_broker, client_id=cid, protocol=V5, clean=True)
    sub.connect()
    sub.subscribe(f"{base}/q1", qos=1)
    sub.disconnect()
    back = peers(any_broker, client_id=cid, protocol=V5, clean=False)
    flags, _, _ = back.connect()
    assert flags.session_present is False
    connected(any_broker).publish(f"{base}/q1", b"x", qos=1)
    back.expect_none()


def test_v5_session_expires_after_interval(any_broker, connected, peers):
    base = topic_base()
    cid = uid("expiry1")
    sub = peers(any_broker, client_id=cid, protocol=V5, clean=True, session_expiry=1)
    sub.connect()
    sub.subscribe(f"{base}/q1", qos=1)
    sub.disconnect()
    time.sleep(2.2)
    back = peers(any_broker, client_id=cid, protocol=V5, clean=False, session_expiry=60)
    flags, _, _ = back.connect()
    assert flags.session_present is False


def test_v5_session_expiry_changed_at_disconnect(any_broker, connected, peers):
    base = topic_base()
    cid = uid("expiry-change")
    sub = peers(any_broker, client_id=cid, protocol=V5, clean=True, session_expiry=60)
    sub.connect()
    sub.subscribe(f"{base}/q1", qos=1)
    sub.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    back = peers(any_broker, client_id=cid, protocol=V5, clean=False, session_expiry=60)
    flags, _, _ = back.connect()
    assert flags.session_present is False


def test_v5_clean_start_discards_session(any_broker, connected, peers):
    base = topic_base()
    cid = uid("cleanstart")
    sub = peers(any_broker, client_id=cid, protocol=V5, clean=True, session_expiry=60)
    sub.connect()
    sub.subscribe(f"{base}/q1", qos=1)
    sub.disconnect()
    _queue_while_offline(any_broker, connected, base)
    fresh = peers(any_broker, client_id=cid, protocol=V5, clean=True, session_expiry=60)
    flags, _, _ = fresh.connect()
    assert flags.session_present is False
    fresh.expect_none()


def test_v5_queued_message_expiry_counted_down(any_broker, connected, peers):
    base = topic_base()
    cid = uid("msgexp")
    sub = peers(any_broker, client_id=cid, protocol=V5, session_expiry=60)
    sub.connect()
    sub.subscribe(f"{base}/#", qos=1)
    sub.disconnect()
    pub = connected(any_broker, protocol=V5)
    pub.publish(f"{base}/short", b"short", qos=1, properties=props(MessageExpiryInterval=1))
    pub.publish(f"{base}/long", b"long", qos=1, properties=props(MessageExpiryInterval=30))
    pub.publish(f"{base}/none", b"none", qos=1)
    time.sleep(2.2)
    back = peers(any_broker, client_id=cid, protocol=V5, clean=False, session_expiry=60)
    back.connect()
    got = back.expect_n(2)
    assert [(m.topic, m.payload) for m in got] == [(f"{base}/long", b"long"), (f"{base}/none", b"none")]
    assert 25 <= prop(got[0], "MessageExpiryInterval") <= 28, "expiry not counted down while queued"
    assert prop(got[1], "MessageExpiryInterval") is None
    back.expect_none()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_unacknowledged_qos1_resent_with_dup(any_broker, connected, peers, protocol):
    base = topic_base()
    cid = uid("dup")
    extra = {"session_expiry": 60} if protocol == V5 else {}
    sub = peers(any_broker, client_id=cid, protocol=protocol, clean=False, manual_ack=True, **extra)
    sub.connect()
    sub.subscribe(f"{base}/t", qos=1)
    connected(any_broker).publish(f"{base}/t", b"unacked", qos=1)
    m = sub.expect()
    assert (m.payload, m.dup) == (b"unacked", False)
    sub.drop()  # never acknowledged
    back = peers(any_broker, client_id=cid, protocol=protocol, clean=False, **extra)
    flags, _, _ = back.connect()
    assert flags.session_present is True
    m = back.expect()
    assert (m.topic, m.payload, m.qos, m.dup) == (f"{base}/t", b"unacked", 1, True)
    back.expect_none()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_pubrel_resent_after_reconnect(any_broker, connected, version):
    """QoS 2 to the client: PUBREC sent, connection lost before PUBCOMP -> the broker resends PUBREL."""
    t = topic_base() + "/rel"
    cid = uid("rel")
    cprops = raw.props((0x11, raw.u32(60))) if version == 5 else b""
    c = raw.RawClient(any_broker.port, version=version)
    assert c.connect(cid, clean=False, connect_props=cprops).return_code == 0
    c.send(raw.subscribe(1, [(t, 2)], version=version))
    c.expect(raw.SUBACK)
    connected(any_broker).publish(t, b"q2", qos=2)
    topic, qos, _, dup, pid, payload = c.expect(raw.PUBLISH).publish_fields()
    assert (topic, qos, dup, payload) == (t, 2, False, b"q2")
    c.send(raw.ack(raw.PUBREC, pid))
    assert c.expect(raw.PUBREL).packet_id == pid
    c.close()  # without PUBCOMP
    c2 = raw.RawClient(any_broker.port, version=version)
    ack = c2.connect(cid, clean=False, connect_props=cprops)
    assert (ack.return_code, ack.session_present) == (0, True)
    rel = c2.expect(raw.PUBREL)
    assert rel.packet_id == pid
    c2.send(raw.ack(raw.PUBCOMP, pid))
    with pytest.raises(TimeoutError):
        c2.recv(timeout=0.5)
    c2.close()


def test_v5_inflight_and_queued_all_delivered_after_reconnect(any_broker, connected, peers):
    """Receive Maximum 2, five QoS 1 messages: two in flight unacknowledged, three queued; after a
    connection loss everything arrives, the two in-flight ones with DUP."""
    t = topic_base() + "/rm"
    cid = uid("rmq")
    rm = props(PacketTypes.CONNECT, ReceiveMaximum=2, SessionExpiryInterval=60)
    sub = peers(any_broker, client_id=cid, protocol=V5, manual_ack=True, connect_props=rm)
    sub.connect()
    sub.subscribe(t, qos=1)
    pub = connected(any_broker)
    for i in range(5):
        pub.publish(t, str(i).encode(), qos=1)
    first = sub.expect_n(2)
    assert [m.payload for m in first] == [b"0", b"1"]
    sub.drop()
    back = peers(any_broker, client_id=cid, protocol=V5, clean=False, session_expiry=60)
    flags, _, _ = back.connect()
    assert flags.session_present is True
    got = back.expect_n(5)
    assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]
    assert [m.dup for m in got[:2]] == [True, True]
    assert [m.dup for m in got[2:]] == [False, False, False]
    back.expect_none()


def test_queued_retained_publish_has_retain_0(any_broker, connected, peers):
    """A retained PUBLISH that matched an existing (offline) subscription is not 'retained' to it."""
    t = topic_base() + "/qr"
    cid = uid("qr")
    sub = peers(any_broker, client_id=cid, protocol=V311, clean=False)
    sub.connect()
    sub.subscribe(t, qos=1)
    sub.disconnect()
    connected(any_broker).publish(t, b"was-retained", qos=1, retain=True)
    back = peers(any_broker, client_id=cid, protocol=V311, clean=False)
    back.connect()
    m = back.expect()
    assert (m.payload, m.retain) == (b"was-retained", False)
    back.expect_none()


def test_v5_subscription_identifier_survives_session_resume(any_broker, connected, peers):
    t = topic_base() + "/sid"
    cid = uid("sid")
    sub = peers(any_broker, client_id=cid, protocol=V5, session_expiry=60)
    sub.connect()
    sub.subscribe(t, qos=1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=9))
    sub.disconnect()
    pub = connected(any_broker)
    pub.publish(t, b"queued", qos=1)
    back = peers(any_broker, client_id=cid, protocol=V5, clean=False, session_expiry=60)
    back.connect()
    m = back.expect()
    assert m.payload == b"queued"
    assert prop(m, "SubscriptionIdentifier") == [9]
    pub.publish(t, b"live", qos=1)
    m = back.expect()
    assert (m.payload, prop(m, "SubscriptionIdentifier")) == (b"live", [9])


def test_v5_topic_aliases_reset_on_new_connection(any_broker, connected, peers):
    """Outgoing topic aliases belong to one network connection: after a reconnect with the same
    session, every message must still resolve using only the new connection's aliases."""
    base = topic_base()
    cid = uid("alias")
    cp = props(PacketTypes.CONNECT, TopicAliasMaximum=5, SessionExpiryInterval=60)
    pub = connected(any_broker, protocol=V5)

    def check(peer, rounds):
        aliases = {}
        for m in peer.expect_n(2 * rounds):
            alias, topic = prop(m, "TopicAlias"), m.topic
            if alias is not None and topic:
                aliases[alias] = topic
            elif alias is not None:
                assert alias in aliases, f"alias {alias} not set on this connection"
                topic = aliases[alias]
            assert m.payload.decode().startswith(topic + "|"), (topic, m.payload)

    sub = peers(any_broker, client_id=cid, protocol=V5, connect_props=cp)
    sub.connect()
    sub.subscribe(f"{base}/#", qos=1)
    for i in range(3):
        for t in ("a", "b"):
            pub.publish(f"{base}/{t}", f"{base}/{t}|{i}".encode(), qos=1)
    check(sub, 3)
    sub.disconnect()
    cp2 = props(PacketTypes.CONNECT, TopicAliasMaximum=5, SessionExpiryInterval=60)
    back = peers(any_broker, client_id=cid, protocol=V5, clean=False, connect_props=cp2)
    back.connect()
    for i in range(3):
        for t in ("a", "b"):
            pub.publish(f"{base}/{t}", f"{base}/{t}|{i}".encode(), qos=1)
    check(back, 3)


def test_v5_disconnect_cannot_set_expiry_when_connect_had_zero(any_broker):
    """MQTT-3.14.2-2: Session Expiry 0 at CONNECT and non-zero at DISCONNECT is a protocol error."""
    c = raw.RawClient(any_broker.port, version=5)
    assert c.connect(uid("de")).return_code == 0
    c.send(raw.disconnect(5, 0, raw.props((0x11, raw.u32(60)))))
    seen = c.wait_closed()
    assert [(p.type, p.reason) for p in seen] == [(raw.DISCONNECT, 0x82)]
    c.close()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_takeover_resends_in_flight_messages(any_broker, connected, peers, protocol):
    """Unacknowledged QoS 1 messages of the old connection are resent (DUP) on the new one."""
    t = topic_base() + "/tk"
    cid = uid("tk")
    extra = {"session_expiry": 60} if protocol == V5 else {}
    old = peers(any_broker, client_id=cid, protocol=protocol, clean=False, manual_ack=True, **extra)
    old.connect()
    old.subscribe(t, qos=1)
    pub = connected(any_broker)
    pub.publish(t, b"a", qos=1)
    pub.publish(t, b"b", qos=1)
    assert [m.payload for m in old.expect_n(2)] == [b"a", b"b"]
    new = peers(any_broker, client_id=cid, protocol=protocol, clean=False, **extra)
    flags, _, _ = new.connect()
    assert flags.session_present is True
    got = new.expect_n(2)
    assert [(m.payload, m.dup) for m in got] == [(b"a", True), (b"b", True)]
    new.expect_none()


def test_v5_resent_messages_do_not_use_old_connection_aliases(any_broker, connected, peers):
    base = topic_base()
    cid = uid("ra")
    cp = props(PacketTypes.CONNECT, TopicAliasMaximum=5, SessionExpiryInterval=60)
    sub = peers(any_broker, client_id=cid, protocol=V5, manual_ack=True, connect_props=cp)
    sub.connect()
    sub.subscribe(f"{base}/#", qos=1)
    pub = connected(any_broker)
    for i in range(3):
        pub.publish(f"{base}/same", str(i).encode(), qos=1)
    sub.expect_n(3)
    sub.drop()  # none acknowledged
    cp2 = props(PacketTypes.CONNECT, TopicAliasMaximum=5, SessionExpiryInterval=60)
    back = peers(any_broker, client_id=cid, protocol=V5, clean=False, connect_props=cp2)
    back.connect()
    aliases = {}
    for m in back.expect_n(3):
        alias, topic = prop(m, "TopicAlias"), m.topic
        if alias is not None and topic:
            aliases[alias] = topic
        elif alias is not None:
            assert alias in aliases, f"resent message uses alias {alias} from the old connection"
            topic = aliases[alias]
        assert topic == f"{base}/same"
        assert m.dup is True
