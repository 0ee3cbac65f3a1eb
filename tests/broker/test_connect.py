"""CONNECT / CONNACK, client identifiers, session takeover, protocol errors at connect time."""

import pytest

import rawmqtt as raw
from brokertest import V5, V31, V311, prop, uid, xfail_on_mosquitto


@pytest.mark.parametrize("protocol", [V31, V311, V5], ids=["v31", "v311", "v5"])
def test_connack_accepted_each_version(any_broker, peers, protocol):
    p = peers(any_broker, protocol=protocol)
    flags, rc, _ = p.connect()
    assert rc == 0
    assert flags.session_present is False
    # The connection is usable: a round trip through the broker.
    p.subscribe("rt/" + p.client_id, qos=1)
    p.publish("rt/" + p.client_id, b"hello", qos=1)
    m = p.expect()
    assert (m.topic, m.payload, m.qos) == ("rt/" + p.client_id, b"hello", 1)


def test_v5_empty_client_id_gets_assigned_id(any_broker, peers):
    p = peers(any_broker, client_id="", protocol=V5)
    _, rc, props = p.connect()
    assert rc == 0
    assigned = prop(props, "AssignedClientIdentifier")
    assert isinstance(assigned, str) and len(assigned) > 0
    # Two anonymous clients get different identifiers.
    q = peers(any_broker, client_id="", protocol=V5)
    _, _, props2 = q.connect()
    assert prop(props2, "AssignedClientIdentifier") != assigned


def test_v311_empty_client_id_clean_session_accepted(any_broker):
    c = raw.RawClient(any_broker.port, version=4)
    ack = c.connect(client_id="", clean=True)
    assert ack.return_code == 0
    assert ack.session_present is False
    c.close()


def test_v311_empty_client_id_persistent_session_refused(any_broker):
    c = raw.RawClient(any_broker.port, version=4)
    ack = c.connect(client_id="", clean=False)
    assert ack.return_code == 2, "identifier rejected"
    assert ack.session_present is False
    assert c.wait_closed() == []
    c.close()


def test_v31_empty_client_id_refused(any_broker):
    # MQTT 3.1 requires a client identifier of 1..23 characters.
    c = raw.RawClient(any_broker.port, version=3)
    ack = c.connect(client_id="", clean=True)
    assert ack.return_code == 2
    assert c.wait_closed() == []
    c.close()


def test_unacceptable_protocol_level_refused(any_broker):
    c = raw.RawClient(any_broker.port, version=4)
    c.send(_connect_with_level(9))
    p = c.expect(raw.CONNACK)
    assert p.return_code == 1, "unacceptable protocol version"
    assert c.wait_closed() == []
    c.close()


def _connect_with_level(level: int) -> bytes:
    body = raw.utf8("MQTT") + bytes([level, 0x02]) + raw.u16(60) + raw.utf8("bad-level")
    return raw.packet(raw.CONNECT, 0, body)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_second_connect_is_protocol_error(any_broker, version):
    c = raw.RawClient(any_broker.port, version=version)
    assert c.connect(client_id=uid()).return_code == 0
    c.send(raw.connect(uid(), version=version))
    seen = c.wait_closed()
    if version == 5 and seen:
        assert [p.type for p in seen] == [raw.DISCONNECT]
        assert seen[0].reason == 0x82, "protocol error"
    else:
        assert seen == []
    c.close()


def test_packet_before_connect_closes(any_broker):
    c = raw.RawClient(any_broker.port, version=4)
    c.send(raw.publish("x/y", b"early"))
    assert c.wait_closed() == []
    c.close()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_session_takeover_closes_old_connection(request, any_broker, peers, protocol):
    if protocol == V5:
        xfail_on_mosquitto(request, any_broker, "closes a taken-over MQTT 5 connection without DISCONNECT 0x8E")
    cid = uid("takeover")
    first = peers(any_broker, client_id=cid, protocol=protocol)
    first.connect()
    first.subscribe("takeover/" + cid, qos=1)
    second = peers(any_broker, client_id=cid, protocol=protocol)
    second.connect()
    rc, _ = first.expect_disconnect()
    if protocol == V5:
        assert rc == 0x8E, f"expected Session taken over (0x8E), got {rc}"
    # The new connection works and owns the client id.
    second.subscribe("takeover/" + cid, qos=1)
    second.publish("takeover/" + cid, b"after", qos=1)
    m = second.expect()
    assert m.payload == b"after"
    second.expect_none()


def test_takeover_keeps_persistent_session(any_broker, peers):
    """A takeover with clean session 0 keeps the session: the subscription survives."""
    cid = uid("keep")
    first = peers(any_broker, client_id=cid, protocol=V311, clean=False)
    first.connect()
    first.subscribe("keep/" + cid, qos=1)
    second = peers(any_broker, client_id=cid, protocol=V311, clean=False)
    flags, _, _ = second.connect()
    assert flags.session_present is True
    first.expect_disconnect()
    pub = peers(any_broker)
    pub.connect()
    pub.publish("keep/" + cid, b"still-subscribed", qos=1)
    m = second.expect()
    assert (m.payload, m.qos) == (b"still-subscribed", 1)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_two_empty_client_ids_are_different_clients(any_broker, connected, version):
    """Each empty-id client gets its own identity: the second does not take over the first."""
    t = "anon/" + uid()
    a = raw.RawClient(any_broker.port, version=version)
    b = raw.RawClient(any_broker.port, version=version)
    assert a.connect("", clean=True).return_code == 0
    assert b.connect("", clean=True).return_code == 0
    for c in (a, b):
        c.send(raw.subscribe(1, [(t, 0)], version=version))
        c.expect(raw.SUBACK)
    connected(any_broker).publish(t, b"both", qos=1)
    for c in (a, b):
        topic, qos, _, _, _, payload = c.expect(raw.PUBLISH).publish_fields()
        assert (topic, payload) == (t, b"both")
        c.close()


def test_username_password_accepted_without_auth(any_broker, peers):
    """With no authentication configured (Mosquitto: allow_anonymous), credentials are ignored."""
    p = peers(any_broker, protocol=V311)
    p.c.username_pw_set("someone", "secret")
    _, rc, _ = p.connect()
    assert rc == 0
